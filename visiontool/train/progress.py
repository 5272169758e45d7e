"""Progress on stderr: rich bars for long steps, one summary line per epoch, warnings.

Only the process that reports (rank 0 of a torchrun job) prints; `quiet` keeps the bars and
epoch lines away but never hides warnings or errors.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator


class Reporter:
    def __init__(self, quiet: bool, active: bool = True):
        self.quiet = quiet
        self.active = active
        self._console = None

    @property
    def console(self):
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True, highlight=False)
        return self._console

    def line(self, text: str) -> None:
        """An informational line (silenced by quiet)."""
        if self.active and not self.quiet:
            self.console.print(text, markup=False, soft_wrap=True)

    def warn(self, text: str) -> None:
        if self.active:
            self.console.print(f"warning: {text}", markup=False, style="yellow", soft_wrap=True)

    @contextlib.contextmanager
    def bar(self, description: str, total: int) -> Iterator[Callable[..., None]]:
        """Yields advance(n=1, **fields); the bar disappears when done (the summary line stays)."""
        # Bars only on a terminal: in a log file the epoch lines say it all.
        if not self.active or self.quiet or total <= 0 or not self.console.is_terminal:
            yield lambda n=1, **fields: None
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"),
        )
        with Progress(*columns, console=self.console, transient=True) as progress:
            task = progress.add_task(description, total=total, info="")

            def advance(n: int = 1, info: str | None = None) -> None:
                if info is None:
                    progress.advance(task, n)
                else:
                    progress.update(task, advance=n, info=info)

            yield advance
