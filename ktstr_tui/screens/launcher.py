"""New run: scheduler, args, topology (validated as you type, drawn), kernel, workload,
duration, flags. Each field's error shows next to it; Launch is refused while any field
is bad. The screen returns the `ktstr run` arguments; the app spawns the process.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Checkbox, Footer, Header, Input, Label, Select, Static

from ktstr_vmm.errors import KtstrError, UsageError
from ktstr_vmm.spec import (
    DEFAULT_TOPOLOGY,
    ENGINES,
    PRESETS,
    parse_duration,
    parse_topology,
    parse_workload,
    validate_name,
)
from ktstr_vmm.workloads import EXAMPLES

from ..widgets.topology_view import TopologyView


def _check_scheduler(text: str) -> None:
    if not text.strip():
        raise UsageError("give a built scheduler's name or a path to a binary")
    if "/" in text and not Path(text).expanduser().is_file():
        raise UsageError(f"no scheduler binary at {text}")


def _check_args(text: str) -> None:
    try:
        shlex.split(text)
    except ValueError as e:
        raise UsageError(f"bad quoting: {e}") from e


def _check_kernel(text: str) -> None:
    if text.strip() and not Path(text).expanduser().exists():
        raise UsageError(f"no kernel at {text}", "leave empty for the newest cached kernel")


def _check_scenario(text: str) -> None:
    if text.strip():
        from ktstr_vmm.scenario import load_scenario

        load_scenario(Path(text.strip()).expanduser())


def _check_fail_on(text: str) -> None:
    if text.strip():
        from ktstr_vmm.evaluate.compare import parse_fail_on

        if not parse_fail_on(text.strip()).op:
            raise UsageError("a run takes a bound like cyclictest.max:>500us")


def _check_name(text: str) -> None:
    if text.strip():
        validate_name(text.strip(), "name")


# field id -> (label, default, validator, `ktstr run` option)
FIELDS: dict[str, tuple[str, str, Callable[[str], object], str]] = {
    "scheduler": ("Scheduler", "scx_simple", _check_scheduler, "--scheduler"),
    "sched_args": ("Scheduler args", "", _check_args, "--sched-args"),
    "topology": ("Topology", DEFAULT_TOPOLOGY, parse_topology, "--topology"),
    "kernel": ("Kernel", "", _check_kernel, "--kernel"),
    "workload": ("Workload", "", parse_workload, "--workload"),
    "scenario": ("Scenario file", "", _check_scenario, "--scenario"),
    "fail_on": ("Fail on", "", _check_fail_on, "--fail-on"),
    "duration": ("Duration", "5s", parse_duration, "--duration"),
    "name": ("Name", "", _check_name, "--name"),
}


def field_error(field: str, value: str) -> str | None:
    try:
        FIELDS[field][2](value)
    except KtstrError as e:
        return e.one_line()
    return None


def run_args(values: dict[str, str], engine: str, expect_err: bool, no_auto_repro: bool) -> list[str]:
    """The `ktstr run` argument list for the form's values (empty optional fields left out)."""
    args = ["run"]
    for key, (_, default, _, option) in FIELDS.items():
        v = values.get(key, "").strip()
        if key == "duration" and v == default and values.get("scenario", "").strip():
            continue  # a scenario's phases set the duration unless the user changed it
        if v:
            args += [option, v]
    if engine != "auto":
        args += ["--engine", engine]
    if expect_err:
        args.append("--expect-err")
    if no_auto_repro:
        args.append("--no-auto-repro")
    return args


class LauncherScreen(Screen[list[str] | None]):
    DEFAULT_CSS = """
    #launcher { padding: 1 2; }
    .form-row { height: auto; margin-bottom: 0; }
    .form-label { width: 16; padding: 1 1 0 0; }
    .form-input { width: 40; }
    Input.-invalid-field { border: tall $error; }
    #topo-drawing { height: auto; max-height: 14; margin: 0 0 1 16; color: $text-muted; }
    """
    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "launch", "Launch"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="launcher"):
            for key, (label, default, _, _) in FIELDS.items():
                with Horizontal(classes="form-row"):
                    yield Label(label, classes="form-label")
                    yield Input(default, id=f"f-{key}", classes="form-input")
                    yield Static("", id=f"err-{key}", classes="form-error")
            with Horizontal(classes="form-row"):
                yield Label("Workloads", classes="form-label")
                yield Select([(k, v) for k, v in EXAMPLES.items()], id="workload-example",
                             prompt="an example per family (ktstr workloads)",
                             classes="form-input")
            with Horizontal(classes="form-row"):
                yield Label("Preset", classes="form-label")
                yield Select([(n, n) for n in PRESETS], id="preset", prompt="choose a preset",
                             classes="form-input")
            yield TopologyView(id="topo-drawing")
            with Horizontal(classes="form-row"):
                yield Label("Engine", classes="form-label")
                yield Select([(e, e) for e in ENGINES], value="auto", allow_blank=False,
                             id="engine", classes="form-input")
            with Horizontal(classes="form-row"):
                yield Checkbox("expect an error (--expect-err)", id="expect-err")
                yield Checkbox("no auto-repro", id="no-auto-repro")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Launch (ctrl+s)", variant="primary", id="launch")
                yield Button("Cancel (esc)", id="cancel")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "new run"
        for key in FIELDS:
            self._validate(key)
        self.query_one("#f-scheduler", Input).focus()

    def _validate(self, key: str) -> str | None:
        value = self.query_one(f"#f-{key}", Input).value
        error = field_error(key, value)
        self.query_one(f"#err-{key}", Static).update(Text(error or ""))
        self.query_one(f"#f-{key}", Input).set_class(error is not None, "-invalid-field")
        if key == "topology":
            view = self.query_one("#topo-drawing", TopologyView)
            view.show(None if error else parse_topology(value), error)
        return error

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        if event.input.id and event.input.id.startswith("f-"):
            self._validate(event.input.id[2:])

    @on(Select.Changed, "#preset")
    def _preset(self, event: Select.Changed) -> None:
        if isinstance(event.value, str):
            self.query_one("#f-topology", Input).value = event.value

    @on(Select.Changed, "#workload-example")
    def _workload_example(self, event: Select.Changed) -> None:
        if isinstance(event.value, str):
            self.query_one("#f-workload", Input).value = event.value

    @on(Button.Pressed, "#launch")
    def _launch_pressed(self) -> None:
        self.action_launch()

    @on(Button.Pressed, "#cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel()

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.action_launch()

    def values(self) -> dict[str, str]:
        return {k: self.query_one(f"#f-{k}", Input).value for k in FIELDS}

    def action_launch(self) -> None:
        bad = [k for k in FIELDS if self._validate(k)]
        if bad:
            self.notify(f"fix {', '.join(FIELDS[k][0].lower() for k in bad)} first",
                        severity="error")
            self.query_one(f"#f-{bad[0]}", Input).focus()
            return
        engine = self.query_one("#engine", Select).value
        self.dismiss(run_args(self.values(), str(engine),
                              self.query_one("#expect-err", Checkbox).value,
                              self.query_one("#no-auto-repro", Checkbox).value))

    def action_cancel(self) -> None:
        self.dismiss(None)
