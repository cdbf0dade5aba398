"""`ktstr tui DUMP.json`: the failure-dump viewer on its own."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header, Static, TabbedContent, TabPane

from ..keys import SCREEN_KEYS
from ..widgets.failure_dump_view import FailureDumpView


class DumpScreen(Screen):
    BINDINGS = [*SCREEN_KEYS, Binding("escape", "back", "Back"),
                Binding("t", "timeline", "Timeline at the failure", show=False)]

    def __init__(self, path: Path, others: list[Path] | tuple[Path, ...] = ()) -> None:
        super().__init__()
        self.paths = [Path(path), *others]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(Text(f"failure dump: {self.paths[0]}"), id="dump-path")
        if len(self.paths) == 1:
            yield FailureDumpView(self.paths[0])
        else:
            with TabbedContent():
                for p in self.paths:
                    with TabPane(p.name):
                        yield FailureDumpView(p)
        yield Footer()

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_timeline(self) -> None:
        """The run's scheduling timeline, opened at the failure (the dump's directory is
        the run directory)."""
        from ..widgets.sched_timeline import TimelineScreen

        run = self.paths[0].parent
        if not (run / "trace").is_dir():
            self.notify("this dump's run has no scheduling trace", severity="warning")
            return
        self.app.push_screen(TimelineScreen(run, at="failure"))
