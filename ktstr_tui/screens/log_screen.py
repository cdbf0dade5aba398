"""`ktstr tui FILE.log`: one log file in the indexed log view (follows it as it grows)."""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header

from ktstr_vmm.rundir.layout import SHELL_LOG

from ..keys import SCREEN_KEYS
from ..lexers import TERMINAL
from ..widgets.log_view import LogPane, LogView

CHROME_DELAY_S = 0.15


def lexer_for(path: Path) -> str | None:
    name = path.name
    if name.endswith(SHELL_LOG):
        return TERMINAL
    if "sched_ext_dump" in name or name.endswith(".scxdump"):
        return "scxdump"
    if name.startswith("console") or "kernel" in name or "dmesg" in name:
        return "kconsole"
    if name.startswith("sched") or "scheduler" in name:
        return "schedlog"
    return None


class LogScreen(Screen):
    BINDINGS = [*SCREEN_KEYS, Binding("escape", "back", "Back")]

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = Path(path)

    def compose(self) -> ComposeResult:
        yield LogPane(self.path, lexer_for(self.path), id="log-pane")

    def on_mount(self) -> None:
        self.title = str(self.path)
        self.query_one(LogPane).view.focus()
        self._chrome = False

    @on(LogView.Indexed)
    def _first_lines(self) -> None:
        # The header and footer cost a few hundred ms of layout in a real terminal: the
        # file's first screen goes out first and they follow a moment later (measured:
        # after_refresh is still before the frame reaches the terminal; 0.15 s is after).
        if not self._chrome:
            self._chrome = True
            self.set_timer(CHROME_DELAY_S, self._mount_chrome)

    def _mount_chrome(self) -> None:
        self.mount(Header(), before=self.query_one(LogPane))
        self.mount(Footer())

    def action_back(self) -> None:
        self.app.pop_screen()
