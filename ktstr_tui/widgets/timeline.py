"""Phases and events of a run on a time axis, then the event list with offsets."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from ktstr_vmm.rundir.records import Event

from ..rundata import event_label

MARKS = {
    "lifecycle": ("●", "cyan"),
    "phase": ("●", "cyan"),
    "sysrdy": ("●", "green"),
    "monitor": ("◇", "blue"),
    "warning": ("⚠", "yellow"),
    "error": ("✖", "red"),
    "scenario_start": ("▶", "green"),
    "scenario_end": ("■", "green"),
    "scenario_pause": ("‖", "yellow"),
    "scenario_resume": ("▶", "yellow"),
    "sched_exit": ("✖", "red"),
    "crash": ("✖", "bold red"),
    "snapshot": ("◆", "magenta"),
    "exit": ("⏹", "bold"),
}
MAX_LISTED = 200


class Timeline(Static):
    """Call `set_events(events, t0, now)`; width comes from the widget's size."""
    DEFAULT_CSS = """
    Timeline { width: auto; padding: 0 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.events: list[Event] = []
        self.t0: float | None = None
        self.t_end: float | None = None

    def on_mount(self) -> None:
        self._draw()

    def on_resize(self) -> None:
        self._draw()

    def add_events(self, events, t0: float | None = None, now: float | None = None) -> None:
        self.events.extend(events)
        if t0 is not None:
            self.t0 = t0
        if now is not None:
            self.t_end = now
        self._draw()

    def _draw(self) -> None:
        if not self.events:
            self.update(Text("no events yet", style="dim"))
            return
        t0 = self.t0 if self.t0 is not None else self.events[0].t
        t_end = max(self.t_end or 0, self.events[-1].t, t0 + 1e-3)
        width = max(20, (self.size.width or 60) - 2)
        span = t_end - t0
        axis = ["─"] * width
        styles = [""] * width
        for e in self.events:
            mark, style = MARKS.get(e.kind, ("·", ""))
            x = min(width - 1, max(0, int((e.t - t0) / span * (width - 1))))
            axis[x], styles[x] = mark, style
        out = Text(no_wrap=True)
        for ch, st in zip(axis, styles, strict=True):
            out.append(ch, style=st)
        out.append("\n")
        out.append("0s", style="dim")
        right = f"{span:.1f}s"
        out.append(" " * max(1, width - 2 - len(right)) + right + "\n", style="dim")
        shown = self.events[-MAX_LISTED:]
        for e in shown:
            mark, style = MARKS.get(e.kind, ("·", ""))
            out.append(f"{e.t - t0:>8.2f}s ", style="dim")
            out.append(mark + " ", style=style)
            out.append(event_label(e) + "\n")
        out.rstrip()
        self.update(out)
