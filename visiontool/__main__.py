from visiontool.cli.app import main

main()
