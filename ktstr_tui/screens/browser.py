"""Home: every run of the store, newest first; filter, open, start, rerun, delete.

Store queries run in a worker; the store's watcher (a watchdog thread) posts StoreChanged
and the table reloads (debounced), keeping the cursor on the same run.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Input, Static
from textual.widgets.data_table import CellDoesNotExist

from ktstr_vmm.errors import KtstrError

from ..keys import SCREEN_KEYS
from ..messages import OpenRun, StoreChanged
from ..plain import plain
from ..store_access import RunSummary, Store
from ..widgets.vim import VimDataTable
from .store_screen import StoreScreen

PAGE = 1000
FIRST_PAGE = 60  # what a screen shows: listed first, the rest of the page follows
VERDICT_FILTERS = (None, "fail", "pass", "inconclusive", "skip", "running")
VERDICT_STYLES = {
    "pass": "bold green",
    "fail": "bold red",
    "inconclusive": "bold yellow",
    "skip": "dim",
    "corrupt": "bold magenta",
    "interrupted": "magenta",
}
COLUMNS = ("time", "name", "scheduler", "topology", "verdict", "duration", "message")
# Column widths below WIDE terminal columns (the message column takes the rest, at least
# MIN_MESSAGE): an 80x24 terminal still shows what failed.
WIDE = 120
NARROW_WIDTHS = {"time": 5, "name": 11, "scheduler": 10, "topology": 9, "verdict": 7}
WIDE_WIDTHS = {"time": 19, "name": 20, "scheduler": 14, "topology": 12, "verdict": 12,
               "duration": 8}
MIN_MESSAGE = 16
# Under NO_COLOR (Textual draws in greys) a verdict still reads at a glance: a mark and,
# for a failure, reverse video.
NO_COLOR_VERDICTS = {"pass": ("✓ pass", "bold"), "fail": ("✗ FAIL", "bold reverse"),
                     "inconclusive": ("? inconcl.", "bold underline"), "skip": ("- skip", ""),
                     "corrupt": ("! corrupt", "bold reverse"),
                     "interrupted": ("! interrupted", "bold")}


def no_color() -> bool:
    return "NO_COLOR" in os.environ


GAUNTLET_KEY = "gauntlet:"  # row keys of gauntlet groups (':' is never in a run id)


@dataclass(frozen=True)
class GauntletGroup:
    """The runs of one gauntlet, shown as one row where its newest run would be."""

    gauntlet: str
    runs: tuple[RunSummary, ...]

    @property
    def key(self) -> str:
        return GAUNTLET_KEY + self.gauntlet


def group_gauntlets(runs: list[RunSummary]) -> list[RunSummary | GauntletGroup]:
    """Runs in order, each gauntlet's runs folded into one group at its newest run."""
    members: dict[str, list[RunSummary]] = {}
    for s in runs:
        if s.gauntlet:
            members.setdefault(s.gauntlet, []).append(s)
    out: list[RunSummary | GauntletGroup] = []
    for s in runs:
        if not s.gauntlet:
            out.append(s)
        elif members.get(s.gauntlet):
            out.append(GauntletGroup(s.gauntlet, tuple(members.pop(s.gauntlet))))
    return out


def group_row(g: GauntletGroup, widths: dict[str, int] | None = None) -> tuple:
    from ktstr_vmm.gauntlet.grid import severity

    newest = g.runs[0]
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(newest.started))
    counts: dict[str, int] = {}
    for r in g.runs:
        counts[r.verdict] = counts.get(r.verdict, 0) + 1
    worst = min(counts, key=severity)
    scheds = sorted({r.scheduler.rsplit("/", 1)[-1] for r in g.runs})
    topos = {r.preset or r.topology for r in g.runs}
    style = VERDICT_STYLES.get(worst, "bold cyan")
    cells = {"time": when, "name": f"gauntlet {g.gauntlet}",
             "scheduler": ",".join(scheds)[:40], "topology": f"{len(topos)} topologies",
             "verdict": Text(worst, style=style), "duration": "",
             "message": Text(f"{len(g.runs)} runs: " + ", ".join(
                 f"{n} {v}" for v, n in sorted(counts.items())))}
    w = widths or column_widths(200)
    if w["time"] < 19:
        cells["time"] = _when(newest.started, w["time"])
    return tuple(cells[c] for c in COLUMNS if c in w)


def verdict_text(s: RunSummary) -> Text:
    if no_color() and s.verdict in NO_COLOR_VERDICTS:
        return Text(*NO_COLOR_VERDICTS[s.verdict])
    if s.verdict in VERDICT_STYLES:
        return Text(s.verdict, style=VERDICT_STYLES[s.verdict])
    return Text(s.phase or s.verdict, style="bold cyan")  # live: its phase


def column_widths(width: int) -> dict[str, int]:
    """The columns shown on a terminal `width` columns wide and their widths: below WIDE
    the time is the day (MM-DD; the run id has the rest) and the duration is left out."""
    fixed = dict(NARROW_WIDTHS if width < WIDE else WIDE_WIDTHS)
    used = sum(fixed.values()) + 2 * (len(fixed) + 1) + 2  # cell padding, scrollbar
    fixed["message"] = max(MIN_MESSAGE, width - used)
    return fixed


def _when(started: float, width: int) -> str:
    if not started:
        return "?"
    t = time.localtime(started)
    if width >= 19:
        return time.strftime("%Y-%m-%d %H:%M:%S", t)
    if width >= 11:
        return time.strftime("%m-%d %H:%M", t)
    return time.strftime("%m-%d", t)


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[:max(1, width - 1)] + "…"


def row_of(s: RunSummary, widths: dict[str, int] | None = None) -> tuple:
    """The cells of a run's row, for the columns in `widths` (all of them by default)."""
    w = widths or column_widths(200)
    duration = f"{s.duration_s:.1f}s" if s.duration_s is not None else ""
    first = s.error or s.first_line
    verdict = verdict_text(s)
    verdict.truncate(w["verdict"], overflow="ellipsis")
    cells = {"time": _when(s.started, w["time"]), "name": _fit(s.name, w["name"]),
             "scheduler": _fit(s.scheduler, w["scheduler"]),
             "topology": _fit(s.preset or s.topology, w["topology"]), "verdict": verdict,
             "duration": duration,
             "message": Text(_fit(first, w["message"]), style="red" if s.error else "")}
    return tuple(cells[c] for c in COLUMNS if c in w)


class BrowserScreen(StoreScreen):
    DEFAULT_CSS = """
    #browser-filters { height: 3; }
    #filter { width: 1fr; }
    #verdict-filter { width: 24; padding: 1 1 0 1; color: $text-muted; }
    #runs { height: 1fr; }
    """
    BINDINGS = [
        *SCREEN_KEYS,
        Binding("enter", "open", "Open"),
        Binding("n", "new_run", "New run"),
        Binding("r", "rerun", "Rerun"),
        Binding("d", "delete", "Delete"),
        Binding("slash", "filter", "Filter"),
        Binding("v", "cycle_verdict", "Verdict filter"),
        Binding("space", "mark", "Mark", tooltip="mark this run to compare another with it"),
        Binding("equals_sign", "compare", "Compare",
                tooltip="compare the marked run with this one (mark with space)"),
        Binding("ctrl+r", "reload", "Reload", show=False),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    class Loaded(Message):
        def __init__(self, runs: list[RunSummary], error: str | None, limit: int,
                     provisional: bool = False) -> None:
            super().__init__()
            self.runs, self.error, self.limit = runs, error, limit
            self.provisional = provisional  # the newest runs, read while the index builds

    def __init__(self, store: Store, *, watch: bool = True) -> None:
        super().__init__(store, watch=watch)
        self.verdict_filter: str | None = None
        self.runs: list[RunSummary] = []
        self.groups: dict[str, GauntletGroup] = {}
        self.provisional = False  # the table shows the newest runs while the index builds
        self.marked: RunSummary | None = None  # the run `=` compares the cursor's run with

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="browser-filters"):
            yield Input(placeholder="filter: name, scheduler, topology, message text", id="filter")
            yield Static("verdict: all (v)", id="verdict-filter")
        yield VimDataTable(id="runs", cursor_type="row", zebra_stripes=True)
        yield Static("", id="browser-status")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#runs", DataTable)
        self.widths = column_widths(self.app.size.width)
        for col in (c for c in COLUMNS if c in self.widths):
            table.add_column(col, key=col, width=self.widths[col])
        table.focus()
        self.reload()
        self.follow_store()

    def on_resize(self) -> None:
        widths = column_widths(self.app.size.width)
        if widths != getattr(self, "widths", None):
            self.widths = widths
            table = self.query_one("#runs", DataTable)
            table.clear(columns=True)
            for col in (c for c in COLUMNS if c in widths):
                table.add_column(col, key=col, width=widths[col])
            self.reload()

    # ------------------------------------------------------------------ loading
    def reload(self, limit: int = FIRST_PAGE) -> None:
        text = self.query_one("#filter", Input).value.strip() or None
        self._load(text, self.verdict_filter, limit)

    @work(thread=True, exclusive=True, group="load")
    def _load(self, text: str | None, verdict: str | None, limit: int) -> None:
        try:
            if text is None and verdict is None and limit == FIRST_PAGE and not self.runs:
                quick = self.store.peek_newest(limit)
                if quick is not None:
                    self.post_message(self.Loaded(quick, None, limit, provisional=True))
            runs = self.store.list_runs(verdict=verdict, text=text, limit=limit + 1)
            self.post_message(self.Loaded(runs, None, limit))
        except KtstrError as e:  # a broken store shows as a status line
            self.post_message(self.Loaded([], f"cannot read the store: {e.one_line()}", limit))

    @on(Loaded)
    def _loaded(self, message: Loaded) -> None:
        table = self.query_one("#runs", DataTable)
        keep = self.selected_run_id()
        runs = message.runs[:message.limit]
        more = len(message.runs) > message.limit
        self.provisional = message.provisional
        if message.provisional:
            more = False
        elif more and message.limit < PAGE:  # a screenful is up; fetch the rest of the page
            self.reload(PAGE)
        rows = group_gauntlets(runs)
        self.runs = [r for r in rows if isinstance(r, RunSummary)]
        self.groups = {g.key: g for g in rows if isinstance(g, GauntletGroup)}
        table.clear()
        for r in rows:
            if isinstance(r, GauntletGroup):
                table.add_row(*plain(*group_row(r, self.widths)), key=r.key)
            else:
                table.add_row(*plain(*row_of(r, self.widths)), key=r.run_id,
                              label=Text("=", style="bold reverse")
                              if self.marked and r.run_id == self.marked.run_id else None)
        if keep is not None:
            for i, r in enumerate(rows):
                if (r.key if isinstance(r, GauntletGroup) else r.run_id) == keep:
                    table.move_cursor(row=i, animate=False)
                    break
        status = self.query_one("#browser-status", Static)
        if message.error:
            status.update(Text(message.error, style="bold red"))
        elif message.provisional:
            status.update(Text(f"newest {len(runs)} runs · indexing the store "
                               f"(once, about 1 s per 10,000 runs) · {self.store.runs_dir}"))
        elif not runs:
            status.update(Text(f"no runs in {self.store.runs_dir} match · n starts a new run"))
        else:
            note = ("" if not more else f" (first {PAGE}; filter to narrow)"
                    if message.limit >= PAGE else " (loading more)")
            status.update(Text(f"{len(runs)} runs{note} · {self.store.runs_dir}"))

    @on(Input.Changed, "#filter")
    def _filter_changed(self) -> None:
        self.reload()

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        self.query_one("#runs", DataTable).focus()

    # ------------------------------------------------------------------ selection
    def selected_run_id(self) -> str | None:
        table = self.query_one("#runs", DataTable)
        if not table.row_count:
            return None
        try:
            return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        except CellDoesNotExist:  # an empty or refreshing table
            return None

    def selected(self) -> RunSummary | None:
        rid = self.selected_run_id()
        return next((s for s in self.runs if s.run_id == rid), None)

    @on(DataTable.RowSelected, "#runs")
    def _row_selected(self) -> None:
        self.action_open()

    # ------------------------------------------------------------------ actions
    def action_open(self) -> None:
        group = self.groups.get(self.selected_run_id() or "")
        if group is not None:
            from .gauntlet_screen import GauntletScreen

            self.app.push_screen(GauntletScreen(self.store, group.gauntlet,
                                                watch=self.watch_enabled))
            return
        s = self.selected()
        if s is not None:
            self.post_message(OpenRun(s.path))

    def action_new_run(self) -> None:
        from .launcher import LauncherScreen

        def launched(args: list[str] | None) -> None:
            if args:
                self.app.launch(args)

        self.app.push_screen(LauncherScreen(), launched)

    def action_rerun(self) -> None:
        s = self.selected()
        if s is None:
            return
        from .rerun_dialog import RerunDialog

        def chosen(topology: str | None) -> None:
            if topology:
                self.app.launch(["rerun", s.run_id, "--topology", topology])

        self.app.push_screen(RerunDialog(s.path), chosen)

    def action_delete(self) -> None:
        s = self.selected()
        if s is None:
            return
        from .confirm import ConfirmScreen

        def answer(yes: bool | None) -> None:
            if yes:
                self._delete(s.run_id)

        self.app.push_screen(ConfirmScreen(f"Delete run {s.run_id} and all its files?",
                                           yes="Delete"), answer)

    @work(thread=True, group="delete")
    def _delete(self, run_id: str) -> None:
        try:
            self.store.delete_run(run_id)
        except KtstrError as e:  # shown; the app stays up
            self.app.call_from_thread(self.notify, f"cannot delete {run_id}: {e.one_line()}",
                                      severity="error")
            return
        self.app.call_from_thread(self.notify, f"deleted {run_id}")
        self.post_message(StoreChanged(run_id, "run deleted"))

    def action_mark(self) -> None:
        s = self.selected()
        if s is None:
            return
        table = self.query_one("#runs", DataTable)
        self.marked = None if self.marked and self.marked.run_id == s.run_id else s
        table.show_row_labels = self.marked is not None
        self.reload()
        self.notify(f"marked {s.run_id}: move to another run and press = to compare"
                    if self.marked else f"unmarked {s.run_id}", markup=False)

    def action_compare(self) -> None:
        from .compare_screen import CompareScreen

        s = self.selected()
        if s is None:
            return
        if self.marked is None:
            self.notify("mark a run with space first, then press = on another",
                        severity="warning")
            return
        self.app.push_screen(CompareScreen(self.marked.path, s.path))

    def action_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        if box.value:
            box.value = ""
        self.query_one("#runs", DataTable).focus()

    def action_cycle_verdict(self) -> None:
        i = VERDICT_FILTERS.index(self.verdict_filter)
        self.verdict_filter = VERDICT_FILTERS[(i + 1) % len(VERDICT_FILTERS)]
        self.query_one("#verdict-filter", Static).update(
            f"verdict: {self.verdict_filter or 'all'} (v)")
        self.reload()

    def action_reload(self) -> None:
        self.reload()
