"""Progress bars and messages on stderr, so stdout stays machine-readable."""

from __future__ import annotations

import contextlib
from typing import Iterator

from rich.console import Console

stderr = Console(stderr=True, highlight=False)


def warn(message: str) -> None:
    stderr.print(f"[yellow]warning:[/] {message}", markup=True, soft_wrap=True)


def info(message: str, quiet: bool = False) -> None:
    if not quiet:
        stderr.print(message, markup=False, soft_wrap=True)


class _NoBar:
    def advance(self, n: int = 1) -> None:
        pass

    def update(self, **_: object) -> None:
        pass


class _Bar:
    def __init__(self, progress, task) -> None:
        self._progress, self._task = progress, task

    def advance(self, n: int = 1) -> None:
        self._progress.advance(self._task, n)

    def update(self, **fields: object) -> None:
        self._progress.update(self._task, **fields)


@contextlib.contextmanager
def bar(description: str, total: int | None, quiet: bool = False, unit: str = "img",
        transient: bool = False) -> Iterator[_Bar | _NoBar]:
    """A rich progress bar on stderr; a no-op when quiet. `update(info=...)` sets the text
    shown after it; a transient bar disappears when done."""
    if quiet:
        yield _NoBar()
        return
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn,
                               TextColumn, TimeElapsedColumn, TimeRemainingColumn)
    from rich.text import Text

    class Speed(ProgressColumn):
        def render(self, task) -> Text:
            return Text(f"{task.speed:.1f} {unit}/s" if task.speed else "")

    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        Speed(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
    ]
    with Progress(*columns, console=stderr, transient=transient) as progress:
        yield _Bar(progress, progress.add_task(description, total=total, info=""))
