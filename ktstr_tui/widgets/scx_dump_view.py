"""The sched_ext dump viewer: highlighted, with jumps between CPU blocks and task lines."""

from __future__ import annotations

import re

from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Static

from ..lexers import highlight_line

_CPU = re.compile(r"(?:^|sched_ext_dump: )CPU\s+\d+\s*:")
_TASK = re.compile(r"(?:^|sched_ext_dump: )\s*\*?R\s+\S+\[\d+\]|(?:^|sched_ext_dump: )\s*[SDIT]\s+\S+\[\d+\]")


def landmarks(lines: list[str]) -> tuple[list[int], list[int]]:
    cpus = [i for i, line in enumerate(lines) if _CPU.search(line)]
    tasks = [i for i, line in enumerate(lines) if _TASK.search(line)]
    return cpus, tasks


class ScxDumpView(VerticalScroll, can_focus=True):
    DEFAULT_CSS = """
    ScxDumpView { height: 1fr; }
    ScxDumpView .scx-dump-body { width: auto; }
    """
    BINDINGS = [
        Binding("c", "jump('cpu', 1)", "Next CPU"),
        Binding("C", "jump('cpu', -1)", "Prev CPU"),
        Binding("t", "jump('task', 1)", "Next task"),
        Binding("T", "jump('task', -1)", "Prev task"),
    ]

    def __init__(self, text: str = "", *, id: str | None = None) -> None:
        super().__init__(id=id, classes="scx-dump")
        self.lines: list[str] = []
        self.cpus: list[int] = []
        self.tasks: list[int] = []
        self.pointer: int | None = None
        self._body = Static("", classes="scx-dump-body")
        self._pending = text

    def compose(self):
        yield self._body

    def on_mount(self) -> None:
        self.set_text(self._pending)

    def set_text(self, text: str) -> None:
        self.lines = text.split("\n") if text else []
        self.cpus, self.tasks = landmarks(self.lines)
        self.pointer = None
        self._draw()

    def _draw(self) -> None:
        if not self.lines:
            self._body.update(Text("no sched_ext dump in this run", style="dim"))
            return
        out = Text(no_wrap=True, end="")
        for i, line in enumerate(self.lines):
            t = highlight_line(line, "scxdump")
            if i == self.pointer:
                t.stylize(Style(reverse=True))
            out.append_text(t)
            if i + 1 < len(self.lines):
                out.append("\n")
        self._body.update(out)

    def jump_to_text(self, text: str) -> bool:
        """Point at the first CPU block or task line containing `text` (else any line
        containing it); False when no line has it."""
        marks = sorted({*self.cpus, *self.tasks})  # a CPU block or a task line first
        i = next((n for n in marks if text in self.lines[n]), None)
        if i is None:
            i = next((n for n, line in enumerate(self.lines) if text in line), None)
        if i is None:
            return False
        self.pointer = i
        self._draw()
        self.call_after_refresh(self.scroll_to, y=max(0, i - 2), animate=False)
        return True

    def action_jump(self, what: str, step: int) -> None:
        marks = self.cpus if what == "cpu" else self.tasks
        if not marks:
            self.notify(f"no {what} lines in this dump", severity="warning")
            return
        cur = self.pointer if self.pointer is not None else (-1 if step > 0 else len(self.lines))
        if step > 0:
            nxt = next((m for m in marks if m > cur), marks[0])
        else:
            nxt = next((m for m in reversed(marks) if m < cur), marks[-1])
        self.pointer = nxt
        self._draw()
        self.scroll_to(y=max(0, nxt - 2), animate=False)
