"""The failure-dump viewer: the JSON as a tree beside a per-CPU table, and the scheduler's
BPF maps one row each below.

Loads in a worker; a corrupt or truncated file shows as an error line naming the problem;
a placeholder dump says so and why.
"""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import DataTable, LoadingIndicator, Static

from ktstr_vmm.errors import KtstrError

from ..dumpdata import DumpDoc, load_dump, map_table_rows, per_cpu_rows
from ..plain import plain
from .json_tree import JsonTree


class FailureDumpView(Vertical):
    class Loaded(Message):
        def __init__(self, doc: DumpDoc | None, error: str | None) -> None:
            super().__init__()
            self.doc, self.error = doc, error

    def __init__(self, path: Path, *, id: str | None = None) -> None:
        super().__init__(id=id, classes="failure-dump")
        self.path = Path(path)
        self.doc: DumpDoc | None = None
        self.error: str | None = None

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
        if doc.is_placeholder:
            await self.mount(Static(Text(
                f"placeholder dump: the VM's state was not captured"
                f"{': ' + doc.reason if doc.reason else ''}", style="bold yellow"),
                classes="placeholder-note"))
        table = DataTable(classes="dump-cpus", cursor_type="row", zebra_stripes=True)
        widgets = [Horizontal(JsonTree(self.path.name, doc.data, id=None), table,
                              classes="dump-body")]
        maps = map_table_rows(doc)
        mt = DataTable(classes="dump-maps", cursor_type="row", zebra_stripes=True)
        if maps:
            widgets += [Static(Text(f"BPF maps ({len(maps)})", style="bold"),
                               classes="dump-title"), mt]
        await self.mount(*widgets)  # one mount: nothing sees half a viewer
        table.add_columns("cpu", "what", "value")
        rows = per_cpu_rows(doc)
        for cpu, what, value in rows:
            table.add_row(*plain(str(cpu), what, value))
        if not rows:
            table.add_row("-", "no per-CPU data in this dump", "")
        if maps:
            mt.add_columns("map", "type", "size", "contents")
            for row in maps:
                mt.add_row(*plain(*row))
        self.add_class("loaded")
