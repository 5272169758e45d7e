"""Errors a user can act on. The CLI prints them as one line and exits with `exit_code`."""

import re

# Exit codes (README, "Exit codes").
EXIT_OK = 0
EXIT_FATAL = 1
EXIT_USAGE = 2
EXIT_SKIPPED = 3


class VisiontoolError(Exception):
    """A failure explained in one line; no traceback is shown unless --debug."""

    exit_code = EXIT_FATAL


class UsageError(VisiontoolError):
    """The command line or an input named on it is wrong (missing file, bad option value)."""

    exit_code = EXIT_USAGE


class DatasetError(UsageError):
    """A dataset folder that cannot be trained on as it is."""


class WeightsError(VisiontoolError):
    """Weights that cannot be found, fetched, verified or loaded."""


def one_line(err: object, limit: int = 300) -> str:
    """The first non-blank line of an exception's message (its type name when it has none),
    cut to `limit` characters: libraries' multi-line errors become one readable line."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))  # terminal colours some libraries put in messages
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    text = lines[0] if lines else type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
