"""`ktstr tui FILE.log`: one log file in the indexed log view (follows it as it grows)."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header

from ..widgets.log_view import LogPane


def lexer_for(path: Path) -> str | None:
    name = path.name
    if "sched_ext_dump" in name or name.endswith(".scxdump"):
        return "scxdump"
    if name.startswith("console") or "kernel" in name or "dmesg" in name:
        return "kconsole"
    if name.startswith("sched") or "scheduler" in name:
        return "schedlog"
    return None


class LogScreen(Screen):
    BINDINGS = [Binding("escape", "back", "Back")]

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = Path(path)

    def compose(self) -> ComposeResult:
        yield Header()
        yield LogPane(self.path, lexer_for(self.path), id="log-pane")
        yield Footer()

    def on_mount(self) -> None:
        self.title = str(self.path)
        self.query_one(LogPane).view.focus()

    def action_back(self) -> None:
        self.app.pop_screen()
