"""Shown instead of everything else while the terminal is below the minimum size."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Static


class TooSmallScreen(Screen):
    DEFAULT_CSS = """
    #too-small {
        width: 100%;
        height: 100%;
        content-align: center middle;
        text-style: bold;
        color: $warning;
    }
    """
    def __init__(self, min_width: int, min_height: int) -> None:
        super().__init__()
        self.min_width, self.min_height = min_width, min_height

    def compose(self) -> ComposeResult:
        yield Static(id="too-small")

    def on_mount(self) -> None:
        self.show_size(self.app.size.width, self.app.size.height)

    def show_size(self, width: int, height: int) -> None:
        self.query_one("#too-small", Static).update(
            f"Terminal too small: {width}x{height}, ktstr tui needs at least "
            f"{self.min_width}x{self.min_height}. Enlarge the window (q quits).")
