"""`ktstr tui DUMP.json`: the failure-dump viewer on its own."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header, Static, TabbedContent, TabPane

from ..widgets.failure_dump_view import FailureDumpView


class DumpScreen(Screen):
    BINDINGS = [Binding("escape", "back", "Back")]

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
