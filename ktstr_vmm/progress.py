"""Progress for long work (fetching, building, booting): a rich bar on a terminal, plain
lines otherwise (CI logs, pipes). Library code reports through a Progress object that the
caller passes in; the default one is silent, so the library never prints by itself."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Silent base: library functions call these; front ends override them."""

    def step(self, message: str) -> None:  # a phase starts ("downloading linux-source")
        pass

    def advance(self, done: int, total: int | None = None) -> None:  # bytes or items
        pass

    def done(self, message: str | None = None) -> None:
        pass


class LineProgress(Progress):
    """Plain lines, at most one per second for advance(); good for logs."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self._last = 0.0
        self._step = ""

    def step(self, message: str) -> None:
        self._step = message
        print(f"ktstr: {message}", file=self.stream, flush=True)

    def advance(self, done: int, total: int | None = None) -> None:
        now = time.monotonic()
        if now - self._last < 1.0 and (total is None or done < total):
            return
        self._last = now
        if total:
            print(f"ktstr: {self._step}: {done * 100 // max(total, 1)}% "
                  f"({done >> 20}/{total >> 20} MiB)", file=self.stream, flush=True)

    def done(self, message: str | None = None) -> None:
        if message:
            print(f"ktstr: {message}", file=self.stream, flush=True)


class RichProgress(Progress):
    """A rich progress bar on stderr (only used when stderr is a terminal)."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, TextColumn
        from rich.progress import Progress as RP

        self._console = Console(stderr=True)
        self._rp = RP(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                      console=self._console, transient=True)
        self._task = None

    def step(self, message: str) -> None:
        if self._task is None:
            self._rp.start()
        else:
            self._rp.remove_task(self._task)
        self._task = self._rp.add_task(message, total=None)

    def advance(self, done: int, total: int | None = None) -> None:
        if self._task is not None:
            self._rp.update(self._task, completed=done, total=total)

    def done(self, message: str | None = None) -> None:
        if self._task is not None:
            self._rp.stop()
            self._task = None
        if message:
            self._console.print(message)


def for_terminal() -> Progress:
    """RichProgress on an interactive stderr (and not CI), LineProgress otherwise."""
    import os

    if sys.stderr.isatty() and not os.environ.get("CI"):
        return RichProgress()
    return LineProgress()
