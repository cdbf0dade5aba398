"""Two runs side by side, field by field, differences marked, numbers with their units and
B's change against A - the TUI face of `ktstr compare`. Opened by `=` on a result (the run
beside its parent) or in the browser (the marked run beside the cursor's)."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from ktstr_vmm.errors import StoreError
from ktstr_vmm.evaluate.compare import Row, compare
from ktstr_vmm.rundir.layout import RESULT
from ktstr_vmm.rundir.records import load_json_object

from ..keys import SCREEN_KEYS
from ..widgets.vim import VimDataTable


class CompareScreen(Screen):
    BINDINGS = [*SCREEN_KEYS, Binding("escape", "back", "Back"),
                Binding("d", "toggle_diff", "Only differences")]

    class Loaded(Message):
        def __init__(self, rows: list[Row] | None, error: str = "") -> None:
            super().__init__()
            self.rows, self.error = rows, error

    def __init__(self, a: Path, b: Path) -> None:
        super().__init__()
        self.a, self.b = Path(a), Path(b)
        self.rows: list[Row] = []
        self.only_diff = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(Text(f"A {self.a.name}\nB {self.b.name}"), id="compare-head")
        yield VimDataTable(id="compare", zebra_stripes=True, cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "compare"
        self.query_one(DataTable).add_columns("", "field", "A", "B", "change")
        self.load()

    @work(thread=True, exclusive=True)
    def load(self) -> None:
        try:
            a, b = (load_json_object(run / RESULT, "result file") for run in (self.a, self.b))
            if a is None or b is None:
                missing = self.a if a is None else self.b
                raise StoreError(f"run {missing.name} has no result yet")
            self.post_message(self.Loaded(compare(a, b)))
        except StoreError as e:
            self.post_message(self.Loaded(None, f"cannot compare: {e}"))

    def on_compare_screen_loaded(self, message: Loaded) -> None:
        if message.rows is None:
            self.query_one("#compare-head", Static).update(Text(message.error or ""))
            return
        self.rows = message.rows
        self.refill()

    def refill(self) -> None:
        table = self.query_one(DataTable)
        table.clear()
        for r in self.rows:
            if self.only_diff and not r.differs:
                continue
            style = "bold yellow" if r.differs else ""
            table.add_row(Text("*" if r.differs else " ", style), Text(f"{r.group}.{r.field}", style),
                          Text(r.a, style), Text(r.b, style), Text(r.delta, style))
        n = sum(r.differs for r in self.rows)
        self.query_one("#compare-head", Static).update(
            Text(f"A {self.a.name}\nB {self.b.name}\n{n} difference(s) marked *"))

    def action_toggle_diff(self) -> None:
        self.only_diff = not self.only_diff
        self.refill()

    def action_back(self) -> None:
        self.app.pop_screen()
