"""Lists and tables with vim motions: j/k down/up, g/G first/last (the arrows, Home/End
and PageUp/PageDown keep working). Every list-like widget of the app is one of these, so
the same keys move in the browser, the stats and dump tables, the dump sources and the
dump tree."""

from __future__ import annotations

from textual.binding import Binding
from textual.widgets import DataTable, OptionList, Tree

VIM_HELP = "j/k down/up · g/G first/last"


class VimDataTable(DataTable):
    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("g", "first_row", "First", show=False),
        Binding("G", "last_row", "Last", show=False),
    ]

    def action_first_row(self) -> None:
        if self.row_count:
            self.move_cursor(row=0)

    def action_last_row(self) -> None:
        if self.row_count:
            self.move_cursor(row=self.row_count - 1)


class VimOptionList(OptionList):
    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("g", "first", "First", show=False),
        Binding("G", "last", "Last", show=False),
    ]


class VimTree(Tree):
    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("g", "first_node", "First", show=False),
        Binding("G", "last_node", "Last", show=False),
    ]

    def action_first_node(self) -> None:
        self.cursor_line = 0

    def action_last_node(self) -> None:
        self.cursor_line = max(0, self.last_line)
