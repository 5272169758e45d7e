"""Ctrl-C that lets the work in flight end cleanly: the first one only asks to stop, and the
loop stops at its next safe point (after a batch of rows, after a training step); a second
one interrupts at once, as usual."""

from __future__ import annotations

import signal
import sys
import threading


class StopRequest:
    """`with StopRequest() as stop:` ... `if stop.requested: ...` at each safe point."""

    def __init__(self) -> None:
        self.requested = False
        self._before = None

    def __enter__(self) -> "StopRequest":
        # Signal handlers can only be set from the main thread (a library caller may be elsewhere).
        if sys.platform != "win32" and threading.current_thread() is threading.main_thread():
            self._before = signal.signal(signal.SIGINT, self._ask)
        return self

    def _ask(self, signum, frame) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __exit__(self, *exc) -> None:
        if self._before is not None:
            signal.signal(signal.SIGINT, self._before)
