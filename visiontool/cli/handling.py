"""Turns a VisiontoolError into one line on stderr and its exit code, for every command."""

from __future__ import annotations

import functools
import sys

import typer

from visiontool.errors import VisiontoolError

state = {"debug": False}  # set by the root callback's --debug


def command(func):
    """Wrap a command function; register the wrapper with `app.command()`.

    Done per command (not around app()) so that Typer's test runner sees the same exit codes
    as a user's shell. functools.wraps keeps the signature Typer reads the options from.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except VisiontoolError as err:
            if state["debug"]:
                raise
            print(f"error: {err}", file=sys.stderr)
            raise typer.Exit(err.exit_code) from None

    return wrapper
