"""Rerun on another topology: the parent's settings shown, its topology prefilled and
validated as you type (with the drawing); returns the topology text or None."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from ktstr_vmm.errors import KtstrError
from ktstr_vmm.rundir.records import load_spec
from ktstr_vmm.spec import parse_topology

from ..widgets.topology_view import TopologyView

SHOWN = ("name", "scheduler", "sched_args", "topology", "duration_s", "workload", "engine",
         "kernel")


class RerunDialog(ModalScreen[str | None]):
    DEFAULT_CSS = """
    #rerun-drawing { height: auto; max-height: 14; margin: 0 0 1 16; color: $text-muted; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    class SpecLoaded(Message):
        def __init__(self, spec: dict | None, error: str | None) -> None:
            super().__init__()
            self.spec, self.error = spec, error

    def __init__(self, run: Path) -> None:
        super().__init__()
        self.run = Path(run)

    def compose(self) -> ComposeResult:
        with Vertical(id="rerun", classes="dialog"):
            yield Static(Text(f"Rerun {self.run.name}", style="bold"))
            yield Static("loading the run's settings...", id="rerun-settings")
            yield Input(placeholder="topology: preset or notation like 1n2l2c1t",
                        id="rerun-topology")
            yield Static("", id="rerun-error", classes="form-error")
            yield TopologyView(id="rerun-drawing")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Rerun (enter)", variant="primary", id="rerun-go")
                yield Button("Cancel (esc)", id="rerun-cancel")

    def on_mount(self) -> None:
        self._load()

    @work(thread=True)
    def _load(self) -> None:
        try:
            self.post_message(self.SpecLoaded(load_spec(self.run), None))
        except KtstrError as e:
            self.post_message(self.SpecLoaded(None, e.one_line()))

    @on(SpecLoaded)
    def _loaded(self, message: SpecLoaded) -> None:
        settings = self.query_one("#rerun-settings", Static)
        box = self.query_one("#rerun-topology", Input)
        if message.spec is None:
            settings.update(Text(message.error or f"{self.run} has no spec.json",
                                 style="bold red"))
        else:
            spec = message.spec
            settings.update(Text("\n".join(f"{k}: {spec[k]}" for k in SHOWN
                                           if spec.get(k) not in (None, "", []))))
            box.value = str(spec.get("topology_requested") or spec.get("preset")
                            or spec.get("topology") or "")
        box.focus()
        self._validate()

    @on(Input.Changed, "#rerun-topology")
    def _validate(self) -> str | None:
        text = self.query_one("#rerun-topology", Input).value
        try:
            topo = parse_topology(text)
            error = None
        except KtstrError as e:
            topo, error = None, e.one_line()
        self.query_one("#rerun-error", Static).update(Text(error or ""))
        self.query_one("#rerun-drawing", TopologyView).show(topo, None)
        self.query_one("#rerun-go", Button).disabled = error is not None
        return error

    @on(Input.Submitted, "#rerun-topology")
    @on(Button.Pressed, "#rerun-go")
    def _go(self) -> None:
        if self._validate() is None:
            self.dismiss(self.query_one("#rerun-topology", Input).value.strip())

    @on(Button.Pressed, "#rerun-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
