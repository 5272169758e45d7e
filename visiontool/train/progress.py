"""Progress of a training run on stderr: bars, one summary line per epoch, warnings.

Only the process that reports (rank 0 of a torchrun job) prints; `quiet` keeps the bars and
epoch lines away but never hides warnings or errors. Drawing is visiontool.progress's.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

from visiontool import progress


class Reporter:
    def __init__(self, quiet: bool, active: bool = True):
        self.quiet = quiet
        self.active = active

    def line(self, text: str) -> None:
        """An informational line (silenced by quiet)."""
        if self.active:
            progress.info(text, self.quiet)

    def warn(self, text: str) -> None:
        if self.active:
            progress.warn(text)

    @contextlib.contextmanager
    def bar(self, description: str, total: int, unit: str = "img") -> Iterator[Callable[..., None]]:
        """Yields advance(n=1, info=None); the bar disappears when done (the summary line stays)."""
        # Bars only on a terminal: in a log file the epoch lines say it all.
        hidden = not self.active or self.quiet or total <= 0 or not progress.stderr.is_terminal
        with progress.bar(description, total, quiet=hidden, unit=unit, transient=True) as shown:

            def advance(n: int = 1, info: str | None = None) -> None:
                if info is None:
                    shown.advance(n)
                else:
                    shown.update(advance=n, info=info)

            yield advance
