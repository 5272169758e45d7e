"""The root of the CLI: wires commands, handles --debug and turns errors into exit codes."""

from __future__ import annotations

import sys

import typer

from visiontool import __version__
from visiontool.cli.handling import command, state
from visiontool.cli.help import Command, Group, examples
from visiontool.errors import EXIT_FATAL

app = typer.Typer(
    name="visiontool",
    help="Classify, detect, segment and stylize with any CNN, train one on your own dataset, export it to ONNX.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: nothing cut off at 80 columns (visiontool/cli/help.py)
    cls=Group,
    epilog=examples([
        "visiontool classify samples/digits --model lenet5-mnist",
        "visiontool train data/ --model resnet18 --image-size 64",
        "visiontool export runs/train/resnet18-1/best.safetensors",
        "visiontool COMMAND --help             every command's options and examples",
    ]),
)


def _version(value: bool) -> None:
    if value:
        print(f"visiontool {__version__}")
        raise typer.Exit()

@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    state["debug"] = debug

def _register() -> None:
    # Each module defines its command with Typer's public API and keeps its EXAMPLES (and, when
    # the default usage line would mislead, its USAGE); none imports torch at import.
    # One line per command, in the order `--help` lists them.
    from visiontool.cli import benchmark, classify, detect, export, merge, models, segment, stylize, train, val, weights

    def add(name: str, module, func) -> None:
        usage = getattr(module, "USAGE", None)
        cls = Command.with_usage(usage) if usage else Command
        app.command(name, cls=cls, epilog=examples(module.EXAMPLES))(command(func))

    add("classify", classify, classify.classify)
    add("detect", detect, detect.detect)
    add("segment", segment, segment.segment)
    add("stylize", stylize, stylize.stylize)
    add("models", models, models.models)
    app.add_typer(weights.app, name="weights")
    add("export", export, export.export)
    add("benchmark", benchmark, benchmark.benchmark)
    add("train", train, train.train)
    add("val", val, val.val)
    add("merge", merge, merge.merge)

_register()

def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as err:  # an unexpected failure: still one line unless --debug
        if state["debug"]:
            raise
        print(f"error: {type(err).__name__}: {err} (rerun with --debug for the traceback)", file=sys.stderr)
        sys.exit(EXIT_FATAL)
