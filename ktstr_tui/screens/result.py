"""A finished run: verdict, message by section, stats, monitor history, logs (and the guest
shells' shell.log, a tab of its own when the run has one), dumps; and what to do next (auto-repro, rerun on another topology, parent/child runs).

Everything is read in a worker; a corrupt result.json is an error view naming the problem
while the logs and dumps stay available. A run directory deleted while open says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import (
    Collapsible,
    DataTable,
    Footer,
    Header,
    OptionList,
    Static,
    TabbedContent,
    TabPane,
)

from ktstr_vmm.errors import KtstrError
from ktstr_vmm.evaluate.measures import flatten as flatten_measures
from ktstr_vmm.rundir import layout as rundir
from ktstr_vmm.rundir.bpf_globals import read_lines
from ktstr_vmm.rundir.dumps import load_failure_dump
from ktstr_vmm.rundir.dumpstory import dsq_name
from ktstr_vmm.rundir.records import (
    MonitorSample,
    RunResult,
    failure_dumps,
    load_result,
    load_spec,
    read_samples,
    snapshot_files,
)
from ktstr_vmm.rundir.shell_log import shell_log_path
from ktstr_vmm.spec import parse_topology

from ..keys import SCREEN_KEYS
from ..lexers import TERMINAL, highlight_text
from ..messages import OpenRun, ShowInScxDump, ShowMonitorAtFailure
from ..plain import plain
from ..widgets.bpf_globals import BpfGlobals
from ..widgets.failure_dump_view import FailureDumpView
from ..widgets.log_view import LogPane
from ..widgets.monitor_grid import MonitorGrid
from ..widgets.scx_dump_view import ScxDumpView
from ..widgets.tabs import show_tab
from ..widgets.verdict_banner import VerdictBanner
from ..widgets.vim import VimDataTable, VimOptionList

# (key, tab id, title): number keys switch tabs from any widget and focus the tab's content.
TABS = (("1", "tab-message", "Message"), ("2", "tab-stats", "Stats"),
        ("3", "tab-monitor", "Monitor"), ("4", "tab-sched", "Sched log"),
        ("5", "tab-console", "Console"), ("6", "tab-dump", "sched_ext dump"),
        ("7", "tab-failure", "Failure dump"), ("8", "tab-globals", "BPF globals"))
SHELL_TAB = "tab-shell"  # `9`: added once the run is loaded, only when it has a shell.log

HISTORY_SAMPLES = 72  # the result's monitor tab: the run's last 72 samples per CPU

SECTION_LEXERS = {"scheduler log": "schedlog", "sched_ext dump": "scxdump",
                  "auto-repro": "schedlog", "watchdog": "kconsole"}


@dataclass(frozen=True)
class RunView:
    """Everything the result screen shows, loaded at once off the UI thread."""

    result: RunResult | None
    result_error: str | None
    spec: dict
    samples: tuple[MonitorSample, ...]
    dumps: tuple[Path, ...]
    snapshots: tuple[Path, ...]
    children: tuple[tuple[str, Path], ...] = field(default=())
    parent_path: Path | None = None
    globals: tuple[dict, ...] = ()  # bpf.jsonl lines (what changed each time), in order
    globals_last_t: float | None = None  # when the live globals were last read (monitor clock)
    shell_log: Path | None = None  # the guest shells' log, when a shell was opened
    dump_dsqs: tuple[tuple[str, int], ...] = ()  # (origin, tasks) of the primary dump's
    #   non-local DSQs (global, user, bypass): the monitor history shows them at the exit


def _dump_dsqs(run: Path) -> tuple[tuple[str, int], ...]:
    """The primary failure dump's global, user and bypass DSQs with their depths (the
    samples carry only each CPU's local DSQ); () without a readable dump."""
    for path in failure_dumps(run):
        if path.name.endswith(".repro.failure-dump.json"):
            continue
        try:
            dump = load_failure_dump(path)
        except KtstrError:
            return ()
        return tuple((dsq_name(d.origin, d.id), d.nr)
                     for d in dump.dsq_states if not d.origin.startswith("local"))
    return ()


def last_read_t(path: Path, tail: int = 64 << 10) -> float | None:
    """The `t` of the last whole line of a JSON-lines file (its newest read), or None."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - tail))
            lines = f.read().splitlines()
    except OSError:
        return None
    for raw in reversed(lines):
        try:
            t = json.loads(raw).get("t")
        except (ValueError, AttributeError):
            continue
        if isinstance(t, int | float) and not isinstance(t, bool):
            return float(t)
    return None


def message_head(message: str) -> str:
    """The message up to its first `--- section ---` line."""
    head = []
    for line in message.splitlines():
        if line.startswith("--- ") and line.rstrip().endswith(" ---"):
            break
        head.append(line)
    return "\n".join(head).strip()


def section_body(name: str, text: str) -> str:
    """A section's text without a repeated `--- name ---` first line (the title shows it)."""
    lines = text.rstrip("\n").split("\n")
    if lines and lines[0].strip() == f"--- {name} ---":
        lines = lines[1:]
    return "\n".join(lines)


class ResultScreen(Screen):
    DEFAULT_CSS = """
    #result-tabs { height: 1fr; }
    #result-tabs TabPane { padding: 0; }
    #sections Collapsible.section { padding: 0; }
    .message-head { padding: 0 1 1 1; }
    .section-body { width: auto; }
    #dump-sources { height: auto; max-height: 6; }
    #stats-box DataTable { height: auto; max-height: 24; }
    #stats-box .stats-title { padding: 0 1; background: $panel; }
    """
    BINDINGS = [
        *SCREEN_KEYS,
        Binding("escape", "back", "Back"),
        Binding("a", "auto_repro", "Auto-repro", tooltip="run the failure again with probes"),
        Binding("r", "rerun", "Rerun", tooltip="rerun on another topology"),
        Binding("p", "open_parent", "Parent run"),
        Binding("o", "open_child", "Child run"),
        Binding("equals_sign", "compare_parent", "Compare with parent"),
        Binding("e", "jump_failure", "Jump to failure",
                tooltip="the monitor at the scheduler's exit (error, stall)"),
        *[Binding(key, f"show_tab('{tab}')", title, show=False) for key, tab, title in TABS],
        Binding("9", f"show_tab('{SHELL_TAB}')", "Shell log", show=False,
                tooltip="what the guest shells typed and printed (shell.log)"),
        Binding("l", "show_tab('tab-sched')", "Sched log", show=False),
        Binding("m", "show_tab('tab-message')", "Message", show=False),
        Binding("D", "show_tab('tab-dump')", "Open sched_ext dump", show=False),
        Binding("F", "show_tab('tab-failure')", "Open failure dump", show=False,
                tooltip="exit, CPUs, dispatch queues, BPF maps at the error"),
        Binding("t", "timeline", "Timeline", show=False),
        Binding("T", "timeline('failure')", "Timeline at the failure", show=False),
        Binding("c", "captures", "Captures", show=False),
    ]

    class Loaded(Message):
        def __init__(self, view: RunView) -> None:
            super().__init__()
            self.view = view

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = Path(path)
        self.view: RunView | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield VerdictBanner("loading", id="verdict")
        yield Static("", id="run-info")
        with TabbedContent(id="result-tabs"):
            with TabPane("Message", id="tab-message"):
                yield VerticalScroll(id="sections")
            with TabPane("Stats", id="tab-stats"), VerticalScroll(id="stats-box"):
                yield VimDataTable(id="stats", cursor_type="row", zebra_stripes=True)
                yield Static(Text("workload groups", style="bold"), classes="stats-title",
                             id="stats-groups-title")
                yield VimDataTable(id="stats-groups", cursor_type="row", zebra_stripes=True)
                yield Static(Text("workers", style="bold"), classes="stats-title",
                             id="stats-workers-title")
                yield VimDataTable(id="stats-workers", cursor_type="row", zebra_stripes=True)
            with TabPane("Monitor", id="tab-monitor"):
                with VerticalScroll():
                    yield MonitorGrid(history=HISTORY_SAMPLES, steppable=True,
                                      id="monitor-history")
            with TabPane("Sched log", id="tab-sched"):
                yield LogPane(self.path / rundir.SCHED_LOG, "schedlog", tail=False)
            with TabPane("Console", id="tab-console"):
                yield LogPane(self.path / rundir.CONSOLE, "kconsole", tail=False)
            with TabPane("sched_ext dump", id="tab-dump"):
                yield VimOptionList(id="dump-sources")
                yield ScxDumpView(id="scx-dump")
            with TabPane("Failure dump", id="tab-failure"):
                yield Vertical(id="failure-dumps")
            with TabPane("BPF globals", id="tab-globals"):
                yield Static("", id="globals-note")
                yield BpfGlobals(id="globals")
        yield Footer()

    def on_mount(self) -> None:
        self.title = f"run {self.path.name}"
        self._load()

    # ------------------------------------------------------------------ loading
    @work(thread=True, exclusive=True, group="load")
    def _load(self) -> None:
        result, error, spec = None, None, {}
        try:
            result = load_result(self.path)
            if result is None:
                error = f"no result.json in {self.path} (the run did not finish)"
        except KtstrError as e:
            error = e.one_line()
        try:
            spec = load_spec(self.path) or {}
        except KtstrError as e:
            error = error or e.one_line()
        children: list[tuple[str, Path]] = []
        parent_path = None
        store = getattr(self.app, "store", None)
        if store is not None:
            try:
                children = [(c.run_id, c.path) for c in store.children(self.path.name)]
            except KtstrError:
                children = []
            parent = (result.parent if result else None) or spec.get("parent")
            if parent:
                try:
                    parent_path = store.get(str(parent)).path
                except KtstrError:
                    parent_path = None
        self.post_message(self.Loaded(RunView(
            result=result, result_error=error, spec=spec,
            samples=tuple(read_samples(self.path)), dumps=tuple(failure_dumps(self.path)),
            snapshots=tuple(p for p in snapshot_files(self.path)
                            if p.name.endswith(".sched_ext_dump.txt")),
            children=tuple(children), parent_path=parent_path,
            globals=tuple(read_lines(self.path / rundir.BPF_GLOBALS)),
            globals_last_t=last_read_t(self.path / rundir.BPF_GLOBALS),
            shell_log=shell_log_path(self.path), dump_dsqs=_dump_dsqs(self.path))))

    @on(Loaded)
    async def _loaded(self, message: Loaded) -> None:
        v = self.view = message.view
        r = v.result
        banner = self.query_one("#verdict", VerdictBanner)
        if r is None:
            banner.verdict = "error" if v.result_error and "no result.json" not in v.result_error \
                else "running"
            banner.detail = v.result_error or ""
        else:
            banner.verdict = r.verdict
            banner.detail = r.first_line
        self.query_one("#run-info", Static).update(self._info_line(v))
        await self._fill_sections(v)
        self._fill_stats(v)
        self._fill_monitor(v)
        self._fill_dumps(v)
        await self._fill_failure_dumps(v)
        self._fill_globals(v)
        await self._add_shell_tab(v)
        self.refresh_bindings()

    async def _add_shell_tab(self, v: RunView) -> None:
        """shell.log in the log view, as the scheduler log and console are, with the
        terminal's control bytes applied (ktstr_vmm/rundir/shell_log.py)."""
        tabs = self.query_one("#result-tabs", TabbedContent)
        if v.shell_log is None or tabs.query(f"#{SHELL_TAB}"):
            return
        await tabs.add_pane(TabPane("Shell log", LogPane(v.shell_log, TERMINAL, tail=False),
                                    id=SHELL_TAB))

    def _fill_globals(self, v: RunView) -> None:
        note = self.query_one("#globals-note", Static)
        if not v.globals:
            note.update("no BPF globals recorded for this run (no bpf.jsonl: the scheduler "
                        "has no .bss/.data maps, or the monitor was off)")
            return
        note.update(f"the scheduler's global variables as last read while it ran "
                    f"({len(v.globals)} reads that changed something; the last read's "
                    "changes highlighted)")
        self.query_one("#globals", BpfGlobals).add_lines(list(v.globals))

    def _info_line(self, v: RunView) -> Text:
        r, spec = v.result, v.spec
        topo = (r.topology if r else {}) or {}
        parts = [self.path.name,
                 f"sched {(r.scheduler if r else '') or spec.get('scheduler', '?')}",
                 f"topo {topo.get('preset') or topo.get('requested') or spec.get('topology', '?')}"]
        if topo.get("observed"):
            parts.append(f"observed {topo['observed']}")
        if r and r.engine:
            parts.append(f"engine {r.engine}")
        if r and r.kernel:
            parts.append(f"kernel {r.kernel}")
        if r and isinstance(r.timings.get("total_s"), int | float):
            parts.append(f"{r.timings['total_s']:.1f}s")
        if v.parent_path:
            parts.append(f"parent {v.parent_path.name} (p)")
        if v.children:
            parts.append(f"{len(v.children)} child run(s) (o)")
        return Text(" · ".join(parts), style="dim")

    async def _fill_sections(self, v: RunView) -> None:
        box = self.query_one("#sections", VerticalScroll)
        await box.remove_children()
        r = v.result
        if r is None:
            await box.mount(Static(Text(v.result_error or "no result", style="bold red"),
                                   classes="error-view"))
            return
        widgets = []
        head = message_head(r.message)
        if head:
            widgets.append(Static(highlight_text(head, "schedlog"), classes="message-head"))
        for i, (name, text) in enumerate(r.sections):
            text = section_body(name, text)
            body = Static(highlight_text(text, SECTION_LEXERS.get(name)),
                          classes="section-body")
            widgets.append(Collapsible(body, title=f"--- {name} ---", collapsed=i >= 3,
                                       classes="section"))
        if not widgets:
            widgets.append(Static(Text(f"{r.verdict}: {r.reason or 'no message'}")))
        await box.mount_all(widgets)

    def _fill_stats(self, v: RunView) -> None:
        """The run's numbers as tables: scalars (stats, timings, topology, spec) as
        what/value rows, workload groups and workers one row each - never a Python repr."""
        table = self.query_one("#stats", DataTable)
        table.clear(columns=True)
        table.add_columns("what", "value")
        r = v.result
        if r is None:
            table.add_row(*plain("result", v.result_error or "none"))
            return
        for group, d in (("stats", r.stats), ("timings", r.timings), ("topology", r.topology)):
            for k, val in _flatten(d):
                if group == "stats" and k in ("measures", "measure_lines"):
                    continue
                if isinstance(val, list):
                    if k == "notes":
                        for note in val:
                            table.add_row(*plain(f"{group}.note", str(note)))
                    continue  # groups and workers have their own tables
                table.add_row(*plain(f"{group}.{k}", _cell(val, k)))
        measures = flatten_measures(r.stats.get("measures") if isinstance(r.stats, dict) else None)
        for k, val in measures.items():
            if not k.startswith("cg"):
                table.add_row(*plain(f"measure.{k}", f"{val:.6g}"))
        for k in ("name", "scheduler", "topology", "duration_s", "workload", "engine", "kernel"):
            if k in v.spec:
                table.add_row(*plain(f"spec.{k}", _cell(v.spec[k], k)))
        for name, columns in (("groups", GROUP_COLUMNS), ("workers", WORKER_COLUMNS)):
            shown = _fill_rows(self.query_one(f"#stats-{name}", DataTable),
                               r.stats.get(name), columns)
            self.query_one(f"#stats-{name}-title", Static).display = shown

    def _fill_monitor(self, v: RunView) -> None:
        grid = self.query_one("#monitor-history", MonitorGrid)
        try:
            grid.topology = parse_topology(str(v.spec.get("topology", "")))
        except KtstrError:
            grid.topology = None
        grid.add_samples(v.samples)
        grid.set_dump_dsqs(v.dump_dsqs)

    def _fill_dumps(self, v: RunView) -> None:
        sources = self.query_one("#dump-sources", OptionList)
        sources.clear_options()
        self._dump_texts: list[tuple[str, str | Path]] = []
        if v.result and v.result.section("sched_ext dump"):
            self._dump_texts.append(("failure message: sched_ext dump",
                                     v.result.section("sched_ext dump") or ""))
        for p in v.snapshots:
            self._dump_texts.append((f"snapshot {p.name}", p))
        for label, _ in self._dump_texts:
            sources.add_option(label)
        sources.display = len(self._dump_texts) > 1
        if self._dump_texts:
            self._show_dump(0)

    @on(OptionList.OptionSelected, "#dump-sources")
    def _dump_chosen(self, event: OptionList.OptionSelected) -> None:
        self._show_dump(event.option_index)

    def _show_dump(self, index: int) -> None:
        _, src = self._dump_texts[index]
        if isinstance(src, Path):
            self._read_snapshot(src)
        else:
            self.query_one("#scx-dump", ScxDumpView).set_text(src)

    @work(thread=True, group="snapshot")
    def _read_snapshot(self, path: Path) -> None:
        try:
            text = path.read_text(errors="replace")
        except OSError as e:
            text = f"cannot read {path}: {e.strerror}"
        self.app.call_from_thread(self.query_one("#scx-dump", ScxDumpView).set_text, text)

    async def _fill_failure_dumps(self, v: RunView) -> None:
        box = self.query_one("#failure-dumps", Vertical)
        await box.remove_children()
        if not v.dumps:
            await box.mount(Static(Text("no failure dump in this run", style="dim")))
            return
        scx = (v.result.section("sched_ext dump") if v.result else None) or ""
        last_t = v.globals_last_t
        views = [FailureDumpView(p, sched_ext_dump=scx if ".repro." not in p.name else "",
                                 globals_last_t=last_t if ".repro." not in p.name else None)
                 for p in v.dumps]
        if len(views) == 1:
            await box.mount(views[0])
            return
        tabs = TabbedContent(id="dump-tabs")
        await box.mount(tabs)
        for i, (p, view) in enumerate(zip(v.dumps, views, strict=True)):
            title = "repro" if ".repro." in p.name else "primary" if i == 0 else p.name
            await tabs.add_pane(TabPane(title, view, id=f"dump-{i}"))

    @on(ShowInScxDump)
    def _show_in_scx_dump(self, message: ShowInScxDump) -> None:
        message.stop()
        tabs = self.query_one("#result-tabs", TabbedContent)
        show_tab(tabs, "tab-dump")
        if not self.query_one("#scx-dump", ScxDumpView).jump_to_text(message.text):
            self.notify(f"'{message.text.strip()}' is not in the sched_ext dump",
                        severity="warning", markup=False)

    @on(ShowMonitorAtFailure)
    def _show_monitor(self, message: ShowMonitorAtFailure) -> None:
        message.stop()
        self.action_jump_failure()

    # ------------------------------------------------------------------ actions
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        v = self.view
        if action == "open_parent":
            return bool(v and v.parent_path) or None
        if action == "open_child":
            return bool(v and v.children) or None
        if action == "compare_parent":
            return bool(v and v.parent_path) or None
        if action == "auto_repro":
            return bool(v and v.result and v.result.verdict == "fail") or None
        if action == "show_tab" and parameters == (SHELL_TAB,):
            return bool(v and v.shell_log) or None
        return True

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_captures(self) -> None:
        from .captures import CapturesScreen

        self.app.push_screen(CapturesScreen(self.path))

    def action_show_tab(self, tab: str) -> None:
        show_tab(self.query_one("#result-tabs", TabbedContent), tab)

    def action_jump_failure(self) -> None:
        show_tab(self.query_one("#result-tabs", TabbedContent), "tab-monitor")
        grid = self.query_one("#monitor-history", MonitorGrid)
        if not grid.jump_to_failure():
            self.notify("no monitor sample shows the scheduler's exit", severity="warning")

    def action_timeline(self, at: str | None = None) -> None:
        """The run's per-CPU scheduling timeline (widgets/sched_timeline.py)."""
        from ..widgets.sched_timeline import TimelineScreen

        self.app.push_screen(TimelineScreen(self.path, at=at))

    def action_auto_repro(self) -> None:
        if not self.path.exists():
            self.notify("the run directory is gone", severity="error")
            return
        self.app.launch(["repro", self.path.name])

    def action_rerun(self) -> None:
        from .rerun_dialog import RerunDialog

        def chosen(topology: str | None) -> None:
            if topology:
                self.app.launch(["rerun", self.path.name, "--topology", topology])

        self.app.push_screen(RerunDialog(self.path), chosen)

    def action_open_parent(self) -> None:
        if self.view and self.view.parent_path:
            self.post_message(OpenRun(self.view.parent_path))

    def action_compare_parent(self) -> None:
        from .compare_screen import CompareScreen

        if self.view and self.view.parent_path:
            self.app.push_screen(CompareScreen(Path(self.view.parent_path), self.path))

    def action_open_child(self) -> None:
        if self.view and self.view.children:
            self.post_message(OpenRun(self.view.children[-1][1]))


# (key in result.json, column title, unit): how the stats tables show a group / a worker.
GROUP_COLUMNS = (("index", "group", ""), ("kind", "kind", ""), ("workers", "workers", ""),
                 ("cpus", "cpus", ""), ("spread", "spread", "%"), ("max_gap_ms", "max gap", "ms"),
                 ("migrations", "migrations", ""), ("iterations", "iterations", ""))
WORKER_COLUMNS = (("group", "group", ""), ("index", "worker", ""), ("kind", "kind", ""),
                  ("pid", "pid", ""), ("cpu_ns", "cpu time", "ns"), ("wall_ns", "wall", "ns"),
                  ("iterations", "iterations", ""), ("migrations", "migrations", ""),
                  ("cpus", "cpus", ""), ("max_gap_ns", "max gap", "ns"),
                  ("cgroup", "cgroup", ""))


def _cell(value: object, key: str = "", unit: str = "") -> str:
    """A value as a table shows it: ns as ms/s, floats rounded, lists space-separated."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if unit == "ns" and isinstance(value, int | float):
        return f"{value / 1e9:.3f} s" if value >= 1e9 else f"{value / 1e6:.1f} ms"
    if isinstance(value, float):
        text = f"{value:.1f}" if abs(value) < 1e6 else f"{value:.0f}"
    elif isinstance(value, list | tuple):
        text = " ".join(str(x) for x in value)
    elif isinstance(value, dict):
        text = " ".join(f"{k}={_cell(x)}" for k, x in value.items())
    else:
        text = str(value)
    return f"{text}{unit}" if unit == "%" else f"{text} {unit}" if unit else text


def _fill_rows(table: DataTable, rows: object, columns: tuple) -> bool:
    table.clear(columns=True)
    items = [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []
    table.display = bool(items)
    for title in (t for _, t, _ in columns):
        table.add_column(title)
    for item in items:
        table.add_row(*plain(*(_cell(item.get(k), k, u) for k, _, u in columns)))
    return bool(items)


def _flatten(d: dict, prefix: str = "") -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.extend(_flatten(v, key + "."))
        else:
            out.append((key, v))
    return out
