"""A run's periodic captures, one at a time: the list of planned captures (taken or
skipped) on the left, the selected capture's state (the failure-dump viewer: JSON tree,
per-CPU table, BPF maps) on the right. `n` / `p` step through them.

Reads captures.jsonl in a worker; each capture file loads in the viewer's own worker. Text
from the run (tags, skip reasons) is shown as plain Text, never as markup.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, OptionList, Static
from textual.widgets.option_list import Option

from ktstr_vmm.rundir.captures import capture_file, describe, read_index

from ..widgets.failure_dump_view import FailureDumpView


class CapturesScreen(Screen):
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("n", "step(1)", "Next capture"),
        Binding("p", "step(-1)", "Previous capture"),
    ]
    DEFAULT_CSS = """
    #capture-list { width: 44; }
    #capture-view { width: 1fr; }
    """

    class Loaded(Message):
        def __init__(self, records: list[dict[str, Any]]) -> None:
            super().__init__()
            self.records = records

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.records: list[dict[str, Any]] = []
        self.shown: int | None = None
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(Text(f"periodic captures: {self.run_dir.name}"), id="captures-title")
        with Horizontal():
            yield OptionList(id="capture-list")
            yield Vertical(id="capture-view")
        yield Footer()

    def on_mount(self) -> None:
        self._load()

    @work(thread=True, exclusive=True)
    def _load(self) -> None:
        self.post_message(self.Loaded(read_index(self.run_dir)))

    @on(Loaded)
    async def _loaded(self, message: Loaded) -> None:
        self.records = message.records
        ol = self.query_one("#capture-list", OptionList)
        ol.add_options([Option(Text(describe(r))) for r in self.records])
        if not self.records:
            await self.query_one("#capture-view").mount(
                Static(Text("this run has no periodic captures (ktstr run --capture-every)")))
        else:
            ol.highlighted = 0
            await self.show(0)
        self.loaded = True

    @on(OptionList.OptionHighlighted, "#capture-list")
    async def _highlighted(self, event: OptionList.OptionHighlighted) -> None:
        await self.show(event.option_index)

    async def show(self, i: int) -> None:
        if i == self.shown or not 0 <= i < len(self.records):
            return
        self.shown = i
        view = self.query_one("#capture-view", Vertical)
        await view.remove_children()
        rec = self.records[i]
        path = capture_file(self.run_dir, rec)
        if path is None:
            await view.mount(Static(Text(describe(rec))))
        else:
            await view.mount(FailureDumpView(path))

    async def action_step(self, delta: int) -> None:
        if not self.records:
            return
        i = min(max(0, (self.shown or 0) + delta), len(self.records) - 1)
        self.query_one("#capture-list", OptionList).highlighted = i
        await self.show(i)

    def action_back(self) -> None:
        self.app.pop_screen()
