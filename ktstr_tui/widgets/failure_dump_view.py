"""The failure-dump viewer, read as a story: a summary first (the exit, who triggered it,
who waited longest and where, what the kernel drained, when each piece was read), then one
row per CPU, the dispatch queues with their tasks, the scheduler's BPF maps (Enter shows a
map's whole value) and, folded, the whole dump as a JSON tree.

Enter on a CPU or a queued task shows it in the sched_ext dump; `M` shows the monitor at
the last sample before the exit. Loads in a worker; a corrupt or truncated file shows as
an error line naming the problem; a placeholder dump says so and why.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Collapsible, DataTable, LoadingIndicator, Static, Tabs

from ktstr_vmm.errors import KtstrError
from ktstr_vmm.rundir.dumpstory import DumpStory, Task, story

from ..dumpdata import DumpDoc, load_dump, map_table_rows
from ..messages import ShowInScxDump, ShowMonitorAtFailure
from ..plain import plain
from .json_tree import JsonTree
from .tabs import first_focusable
from .vim import VimDataTable

CPU_COLUMNS = ("cpu", "current", "class", "scx", "nr", "local dsq", "longest waiting",
               "waited")
DSQ_COLUMNS = ("queue", "id", "nr", "tasks (waited)")


def task_text(t: Task | str) -> str:
    if isinstance(t, str):
        return t
    return f"{t.label} {t.waited}".strip() if t.waited else t.label


class ValueScreen(ModalScreen[None]):
    """One map's whole value, pretty-printed; Esc closes."""

    DEFAULT_CSS = """
    ValueScreen { align: center middle; }
    ValueScreen > VerticalScroll { width: 90%; height: 80%; border: thick $accent;
                                   background: $surface; padding: 0 1; }
    """
    BINDINGS = [Binding("escape,q,enter", "close", "Close")]

    def __init__(self, title: str, value: object) -> None:
        super().__init__()
        self.title_text = title
        self.value = value

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(Text(self.title_text, style="bold"))
            yield Static(Text(json.dumps(self.value, indent=2, default=str)), id="map-value")

    def action_close(self) -> None:
        self.dismiss(None)


class FailureDumpView(Vertical):
    DEFAULT_CSS = """
    FailureDumpView { height: 1fr; min-height: 10; }
    FailureDumpView .dump-title { padding: 0 1; background: $panel; }
    FailureDumpView .placeholder-note { height: auto; padding: 0 1; color: $warning; }
    FailureDumpView .dump-cpus { width: 1fr; }
    FailureDumpView .dump-story { height: 1fr; }
    FailureDumpView .dump-summary { padding: 0 1; margin-bottom: 1; }
    FailureDumpView .dump-story DataTable { height: auto; max-height: 20; }
    FailureDumpView .dump-section { padding: 0 1; background: $panel; }
    FailureDumpView JsonTree { height: auto; max-height: 30; }
    FailureDumpView .dump-story DataTable.dump-maps { max-height: 12; }
    """
    BINDINGS = [Binding("M", "monitor", "Monitor at the failure")]

    class Loaded(Message):
        def __init__(self, doc: DumpDoc | None, error: str | None) -> None:
            super().__init__()
            self.doc, self.error = doc, error

    def __init__(self, path: Path, *, sched_ext_dump: str = "",
                 globals_last_t: float | None = None, id: str | None = None) -> None:
        super().__init__(id=id, classes="failure-dump")
        self.path = Path(path)
        self.doc: DumpDoc | None = None
        self.error: str | None = None
        self.stories: list[tuple[str, DumpStory]] = []
        self.sched_ext_dump = sched_ext_dump
        self.globals_last_t = globals_last_t
        self._maps: list[tuple[str, dict]] = []

    def compose(self) -> ComposeResult:
        yield Static(Text(str(self.path.name), style="bold"), classes="dump-title")
        yield LoadingIndicator()

    def on_mount(self) -> None:
        self._load()

    @work(thread=True, exclusive=True)
    def _load(self) -> None:
        try:
            self.post_message(self.Loaded(load_dump(self.path), None))
        except KtstrError as e:
            self.post_message(self.Loaded(None, e.one_line()))

    def action_monitor(self) -> None:
        self.post_message(ShowMonitorAtFailure())

    @on(Loaded)
    async def _loaded(self, message: Loaded) -> None:
        message.stop()
        self.doc, self.error = message.doc, message.error
        await self.query(LoadingIndicator).remove()
        if message.error:
            await self.mount(Static(Text(f"cannot show this dump: {message.error}",
                                         style="bold red"), classes="error-view"))
            return
        doc = message.doc
        assert doc is not None
        widgets: list = []
        if doc.is_placeholder:
            widgets.append(Static(Text(
                f"placeholder dump: the VM's state was not captured"
                f"{': ' + doc.reason if doc.reason else ''}", style="bold yellow"),
                classes="placeholder-note"))
        cpus = VimDataTable(classes="dump-cpus", cursor_type="row", zebra_stripes=True)
        dsqs = VimDataTable(classes="dump-dsqs", cursor_type="row", zebra_stripes=True)
        maps = VimDataTable(classes="dump-maps", cursor_type="row", zebra_stripes=True)
        self.stories = [(label, story(report, sched_ext_dump=self.sched_ext_dump,
                                      globals_last_t=self.globals_last_t))
                        for label, report in doc.reports()]
        summary = Text()
        for label, st in self.stories:
            if st.placeholder is not None and doc.is_placeholder:
                continue
            if label:
                summary.append(f"{label}\n", style="bold")
            for line in st.summary_lines():
                head, _, rest = line.partition(" ")
                summary.append(head, style="bold")
                summary.append(f" {rest}\n" if rest else "\n")
        summary.rstrip()
        body = [Static(summary, classes="dump-summary")] if summary.plain else []
        if any(st.cpus for _, st in self.stories):
            body += [Static(Text("CPUs: enter shows the CPU in the sched_ext dump · M the "
                                 "monitor at the failure"), classes="dump-section"), cpus]
        if any(st.dsqs for _, st in self.stories):
            body += [Static(Text("dispatch queues: enter shows a queued task in the sched_ext "
                                 "dump"), classes="dump-section"), dsqs]
        map_rows = map_table_rows(doc)
        if map_rows:
            body += [Static(Text(f"BPF maps ({len(map_rows)}): enter shows the whole value"),
                            classes="dump-section"), maps]
        body.append(Collapsible(JsonTree(self.path.name, doc.data), title="the dump as JSON",
                                collapsed=True, classes="dump-json"))
        widgets.append(VerticalScroll(*body, classes="dump-story"))
        await self.mount_all(widgets)  # one mount: nothing sees half a viewer
        self._fill(cpus, dsqs, maps, doc, map_rows)
        self.add_class("loaded")
        if not self._focus_story():
            # its widgets are not focusable until laid out (seen on a loaded machine)
            self.call_after_refresh(self._focus_story)

    def _focus_story(self) -> bool:
        """Focus the story's first table unless the user already focused something else;
        False when nothing in it can take the focus yet."""
        focused = self.app.focused
        if not ((focused is None or isinstance(focused, Tabs)) and self.region.area):
            return True
        target = first_focusable(self.query_one(".dump-story"))
        if target is None:
            return False
        target.focus(scroll_visible=False)
        return True

    def _fill(self, cpus: DataTable, dsqs: DataTable, maps: DataTable, doc: DumpDoc,
              map_rows: list[tuple[str, str, str, str]]) -> None:
        several = len(self.stories) > 1
        cpus.add_columns(*CPU_COLUMNS)
        dsqs.add_columns(*DSQ_COLUMNS)
        for label, st in self.stories:
            prefix = f"{label}: " if several and label else ""
            for c in st.cpus:
                lw = c.longest
                cpus.add_row(*plain(f"{prefix}{c.cpu}", c.current, c.current_class,
                                    _n(c.nr_running), _n(c.rq_nr_running), _n(c.local_dsq),
                                    lw.label if lw else "", lw.waited if lw else ""),
                             key=f"cpu:{label}:{c.cpu}")
            for i, d in enumerate(st.dsqs):
                tasks = ", ".join(task_text(t) for t in d.tasks) or "-"
                if d.truncated:
                    tasks += " (walk stopped at its cap)"
                cpus_key = f"dsq:{label}:{i}"
                dsqs.add_row(*plain(f"{prefix}{d.name}", d.dsq_id, str(d.nr), tasks),
                             key=cpus_key)
        maps.add_columns("map", "type", "size", "contents")
        by_name: dict[str, dict] = {}
        for label, report in doc.reports():
            prefix = f"{label}: " if label else ""
            for m in report.get("maps") or ():
                if isinstance(m, dict):
                    by_name.setdefault(f"{prefix}{m.get('name', '?')}", m)
        self._maps = [(row[0], by_name.get(row[0], {})) for row in map_rows]
        for row in map_rows:
            maps.add_row(*plain(*row))

    @on(DataTable.RowSelected, ".dump-cpus")
    def _cpu_chosen(self, event: DataTable.RowSelected) -> None:
        event.stop()
        key = str(event.row_key.value or "")
        cpu = key.rsplit(":", 1)[-1]
        if cpu.isdigit():
            self.post_message(ShowInScxDump(f"CPU {cpu} "))

    @on(DataTable.RowSelected, ".dump-dsqs")
    def _dsq_chosen(self, event: DataTable.RowSelected) -> None:
        event.stop()
        _, label, idx = str(event.row_key.value or "::").split(":")
        st = next((s for lbl, s in self.stories if lbl == label), None)
        if st is None or not idx.isdigit() or int(idx) >= len(st.dsqs):
            return
        first = next((t for t in st.dsqs[int(idx)].tasks if isinstance(t, Task)), None)
        if first is not None:
            self.post_message(ShowInScxDump(first.label))
        else:
            self.notify("no task in this queue to show", severity="warning")

    @on(DataTable.RowSelected, ".dump-maps")
    def _map_chosen(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if 0 <= event.cursor_row < len(self._maps):
            name, m = self._maps[event.cursor_row]
            value = {k: v for k, v in m.items() if k not in ("name",)}
            self.app.push_screen(ValueScreen(f"BPF map {name}", value))


def _n(v: int | None) -> str:
    return "" if v is None else str(v)
