"""The root of the CLI: wires commands, handles --debug and turns errors into exit codes."""

from __future__ import annotations

import sys

import typer

from visiontool import __version__
from visiontool.cli.handling import command, state
from visiontool.errors import EXIT_FATAL

app = typer.Typer(
    name="visiontool",
    help="Classify and detect with any CNN, train one on your own dataset, export it to ONNX.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
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
    # Each module defines its command with Typer's public API; none imports torch at import.
    # One line per command, in the order `--help` lists them.
    from visiontool.cli import benchmark, classify, detect, export, models, train, val, weights

    app.command("classify")(command(classify.classify))
    app.command("detect")(command(detect.detect))
    app.command("models")(command(models.models))
    app.add_typer(weights.app, name="weights")
    app.command("export")(command(export.export))
    app.command("benchmark")(command(benchmark.benchmark))
    app.command("train")(command(train.train))
    app.command("val")(command(val.val))

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
