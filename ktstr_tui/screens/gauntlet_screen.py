"""A gauntlet as a matrix: topologies down, schedulers (x kernels) across, each cell
coloured by its verdict and filling in live as the store's watcher sees runs arrive.

enter opens the cell's run (the worst repeat), f toggles failures first, m marks a cell
and c compares the cell under the cursor with the marked one, r reruns the cell (an
ordinary `ktstr run` in the same gauntlet cell, opened live).
"""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Static
from textual.widgets.data_table import CellDoesNotExist

from ktstr_vmm.errors import KtstrError
from ktstr_vmm.gauntlet.grid import Grid, GridCell, build_grid
from ktstr_vmm.gauntlet.record import GauntletRecord, read_record

from ..messages import OpenRun
from ..plain import plain
from ..store_access import Store
from .store_screen import StoreScreen

STYLES = {"pass": "bold green", "fail": "bold white on red", "inconclusive": "bold yellow",
          "skip": "dim", "corrupt": "bold magenta", "interrupted": "magenta",
          "queued": "dim"}
RUNNING_STYLE = "bold cyan"


def cell_text(cell: GridCell) -> Text:
    return Text(cell.text(), style=STYLES.get(cell.verdict, RUNNING_STYLE))


class GauntletScreen(StoreScreen):
    BINDINGS = [
        Binding("enter", "open", "Open run"),
        Binding("f", "toggle_failures", "Failures first"),
        Binding("m", "mark", "Mark"),
        Binding("c", "compare", "Compare with mark"),
        Binding("r", "rerun", "Rerun cell"),
        Binding("escape", "back", "Back"),
    ]

    class Loaded(Message):
        def __init__(self, record: GauntletRecord | None, grid: Grid | None,
                     error: str = "", verifier: dict | None = None) -> None:
            super().__init__()
            self.record, self.grid, self.error = record, grid, error
            self.verifier = verifier or {}  # run id -> VerifierCell (verifier sweeps)

    def __init__(self, store: Store, gauntlet_id: str, *, watch: bool = True) -> None:
        super().__init__(store, watch=watch)
        self.gid = gauntlet_id
        self.record: GauntletRecord | None = None
        self.grid: Grid | None = None
        self.failures_first = True
        self.marked: tuple[str, tuple[str, str | None]] | None = None
        self.loaded = False
        self.verifier: dict = {}

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(Text(f"gauntlet {self.gid}"), id="gauntlet-head")
        yield DataTable(id="matrix", cursor_type="cell", zebra_stripes=False)
        yield Static("", id="gauntlet-cell")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#matrix", DataTable).focus()
        self.reload()
        self.follow_store()

    # ------------------------------------------------------------------ loading
    def reload(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, group="load")
    def _load(self) -> None:
        try:
            record = self.record or read_record(self.store, self.gid)
            runs = self.store.list_runs(gauntlet=self.gid)
            verifier = {}
            if record.matrix.verifier:
                from ktstr_vmm.gauntlet.verifier import read_cell

                verifier = {r.run_id: read_cell(r.path) for r in runs if not r.is_live}
            self.post_message(self.Loaded(record, build_grid(record.matrix.cells(), runs),
                                          verifier=verifier))
        except KtstrError as e:
            self.post_message(self.Loaded(None, None, e.one_line()))

    @on(Loaded)
    def _loaded(self, message: Loaded) -> None:
        head = self.query_one("#gauntlet-head", Static)
        if message.error or message.grid is None:
            head.update(Text(message.error or "no gauntlet", style="bold red"))
            self.loaded = True
            return
        self.record, self.grid = message.record, message.grid
        self.verifier = message.verifier
        self._draw()
        self.loaded = True

    def _draw(self) -> None:
        grid = self.grid
        assert grid is not None
        table = self.query_one("#matrix", DataTable)
        keep = self.selected_key()
        table.clear(columns=True)
        table.add_column("topology", key="topology")
        for col in grid.columns:
            table.add_column(plain(grid.column_label(col))[0], key=_col_key(col))
        for topo in grid.rows(self.failures_first):
            table.add_row(*plain(topo), *(cell_text(grid.cell(topo, c)) for c in grid.columns),
                          key=topo)
        if keep is not None:
            self._move_to(*keep)
        counts = grid.counts()
        summary = " · ".join(f"{n} {v}" for v, n in sorted(counts.items()))
        m = self.record.matrix if self.record else None
        what = (f"{len(grid.topologies)} topologies x {len(grid.columns)} columns"
                + (f" x {m.repeat} repeats" if m and m.repeat > 1 else ""))
        self.query_one("#gauntlet-head", Static).update(Text(
            f"gauntlet {self.gid}: {what} · {summary}"
            f"{' · failures first (f)' if self.failures_first else ''}"))
        self._show_cell()

    def _move_to(self, topo: str, col: tuple[str, str | None]) -> None:
        table = self.query_one("#matrix", DataTable)
        try:
            row = table.get_row_index(topo)
            column = table.get_column_index(_col_key(col))
        except Exception:  # the cell is gone (another record): stay where we are
            return
        table.move_cursor(row=row, column=column, animate=False)

    # ------------------------------------------------------------------ selection
    def selected_key(self) -> tuple[str, tuple[str, str | None]] | None:
        table = self.query_one("#matrix", DataTable)
        if self.grid is None or not table.row_count:
            return None
        try:
            keys = table.coordinate_to_cell_key(table.cursor_coordinate)
        except CellDoesNotExist:
            return None
        topo, col = keys.row_key.value, keys.column_key.value
        for c in self.grid.columns:
            if _col_key(c) == col:
                return topo, c
        return None

    def selected(self) -> GridCell | None:
        key = self.selected_key()
        return self.grid.cell(*key) if key and self.grid else None

    @on(DataTable.CellHighlighted, "#matrix")
    def _show_cell(self) -> None:
        cell = self.selected()
        box = self.query_one("#gauntlet-cell", Static)
        if cell is None:
            box.update("")
            return
        lines = [Text(f"{cell.scheduler} on {cell.topology}"
                      f"{' kernel ' + cell.kernel if cell.kernel else ''}: {cell.verdict}",
                      style=STYLES.get(cell.verdict, RUNNING_STYLE))]
        for r in sorted(cell.runs, key=lambda r: r.started):
            lines.append(Text(f"  {r.run_id}  {r.verdict}  {r.first_line[:100]}"))
            v = self.verifier.get(r.run_id)
            if v is not None and v.loaded:
                lines.append(Text(f"    verifier: {len(v.progs)} programs, {v.total_insns} "
                                  "verified insns: " + ", ".join(
                                      f"{p.name} {p.verified_insns}" for p in v.progs)[:300]))
            elif v is not None:
                where = f" in {v.failed_prog}" if v.failed_prog else ""
                lines.append(Text(f"    verifier: FAILED to load{where}: {v.error}",
                                  style="red"))
        missing = len(cell.keys) - len(cell.runs)
        if missing:
            lines.append(Text(f"  {missing} run{'s' if missing != 1 else ''} not started yet",
                              style="dim"))
        if self.marked:
            lines.append(Text(f"marked: {self.marked[1][0]} on {self.marked[0]} (c compares)",
                              style="italic"))
        box.update(Text("\n").join(lines))

    @on(DataTable.CellSelected, "#matrix")
    def _cell_selected(self) -> None:
        self.action_open()

    # ------------------------------------------------------------------ actions
    def action_open(self) -> None:
        cell = self.selected()
        run = cell.worst_run if cell else None
        if run is None:
            self.notify("no run in this cell yet", severity="warning")
            return
        self.post_message(OpenRun(run.path))

    def action_toggle_failures(self) -> None:
        self.failures_first = not self.failures_first
        if self.grid is not None:
            self._draw()

    def action_mark(self) -> None:
        key = self.selected_key()
        cell = self.selected()
        if key is None or cell is None or cell.worst_run is None:
            self.notify("mark a cell that has a run", severity="warning")
            return
        self.marked = key
        self._show_cell()
        self.notify(f"marked {cell.scheduler} on {cell.topology}; c on another cell compares",
                    markup=False)

    def action_compare(self) -> None:
        cell = self.selected()
        if self.marked is None or self.grid is None:
            self.notify("mark a cell first (m)", severity="warning")
            return
        other = self.grid.cell(*self.marked)
        if cell is None or cell.worst_run is None or other.worst_run is None:
            self.notify("both cells need a run", severity="warning")
            return
        if cell.worst_run.run_id == other.worst_run.run_id:
            self.notify("that is the marked cell; move to another", severity="warning")
            return
        from .compare_screen import CompareScreen

        self.app.push_screen(CompareScreen(other.worst_run.path, cell.worst_run.path))

    def action_rerun(self) -> None:
        cell = self.selected()
        if cell is None or self.record is None:
            return
        from ktstr_vmm.gauntlet.cell import run_args
        from ktstr_vmm.gauntlet.matrix import Cell

        key = cell.worst_run.gauntlet_cell if cell.worst_run else cell.keys[0]
        one = Cell.from_key(key or cell.keys[0])
        if one is None:
            return
        m = self.record.matrix
        self.app.launch(run_args(one.to_json(), {
            "gauntlet": self.gid, "duration_s": m.duration_s, "workload": m.workload,
            "sched_args": m.sched_args, "no_auto_repro": True}, as_json=False))

    def action_back(self) -> None:
        self.app.pop_screen()


def _col_key(col: tuple[str, str | None]) -> str:
    return f"{col[0]}|{col[1] or ''}"
