"""A run while it runs: monitor grid, timeline, scheduler log, console, the scheduler's BPF
globals, status bar; keys to pause/resume the guest, take a snapshot, stop, open a shell.

A tail worker follows the run directory (status.json, events.jsonl, monitor.jsonl,
bpf.jsonl, result.json, control.sock), woken by file notifications (a subscription to the
app's one file watcher, ktstr_tui/watch.py, for as long as the screen is mounted) and
polling as a fallback, and posts RunUpdate; the screen only renders. Control commands go through
ktstr_vmm.run.control.send_command on a worker thread. When the run finishes the result screen
replaces this one.

The shell key (!) asks the run for a guest shell on a worker thread, then suspends the app
and hands the terminal to the shell (App.suspend): the user's own terminal drives the
guest's pty, so job control, Ctrl-C and full-screen programs (top, vi) work as in any
terminal, with no terminal emulator inside the app. The runner keeps monitoring meanwhile;
on `exit` (or Ctrl-]) the live screen comes back and catches up from the run directory.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Static, TabbedContent, TabPane

from ktstr_vmm.errors import KtstrError
from ktstr_vmm.rundir import layout as rundir
from ktstr_vmm.rundir.bpf_globals import parse_line as parse_globals
from ktstr_vmm.rundir.jsonl import JsonlTail
from ktstr_vmm.rundir.records import (
    RunStatus,
    load_spec,
    load_status,
    parse_event,
    parse_sample,
)
from ktstr_vmm.rundir.summary import pid_alive
from ktstr_vmm.spec import parse_topology

from ..keys import SCREEN_KEYS
from ..messages import RunUpdate
from ..rundata import event_label
from ..widgets.bpf_globals import BpfGlobals
from ..widgets.log_view import LogPane
from ..widgets.monitor_grid import MonitorGrid
from ..widgets.tabs import show_tab
from ..widgets.timeline import Timeline

POLL_SECONDS = 0.25
NO_CONTROL = "control socket gone: run finished"


def _fmt_secs(s: float) -> str:
    s = max(0.0, s)
    return f"{int(s // 60)}m{s % 60:04.1f}s" if s >= 60 else f"{s:.1f}s"


class LiveRunScreen(Screen):
    DEFAULT_CSS = """
    #live-body { height: 1fr; }
    #live-left { width: 62; min-width: 40; }
    #monitor-scroll { height: 2fr; border-bottom: solid $panel; }
    #timeline-scroll { height: 1fr; }
    #live-tabs { width: 1fr; }
    """
    clock = staticmethod(time.time)  # tests pin it for reproducible screens

    BINDINGS = [
        *SCREEN_KEYS,
        Binding("escape", "back", "Back"),
        Binding("space", "pause", "Pause"),  # (pauses and resumes: short, so that the footer
        # holds every live key at 80 columns, ^p Commands left out: see compose)
        Binding("s", "snapshot", "Snapshot"),
        Binding("x", "stop", "Stop"),
        Binding("exclamation_mark", "shell", "Shell"),
        Binding("enter", "open_result", "Result"),
        Binding("1", "show_tab('tab-sched')", "Sched log", show=False),
        Binding("2", "show_tab('tab-console')", "Console", show=False),
        Binding("3", "show_tab('tab-globals')", "BPF globals", show=False),
        Binding("t", "timeline", "Timeline", show=False),
    ]

    def __init__(self, path: Path, *, auto_result: bool = True) -> None:
        super().__init__()
        self.path = Path(path)
        self.auto_result = auto_result
        self.status: RunStatus | None = None
        self.control = False
        self.paused = False
        self.gone = False
        self.result_ready = False
        self.error: str | None = None
        self.last_event: str = ""
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._watch = None  # the subscription to the app's file watcher
        self._switched = False
        self._sched_pane = LogPane(self.path / rundir.SCHED_LOG, "schedlog", follow=True,
                                   id="sched-pane")
        self._console_pane = LogPane(self.path / rundir.CONSOLE, "kconsole", follow=True,
                                     id="console-pane")

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="live-status")
        with Horizontal(id="live-body"):
            with Vertical(id="live-left"):
                with VerticalScroll(id="monitor-scroll"):
                    yield MonitorGrid(id="monitor")
                with VerticalScroll(id="timeline-scroll"):
                    yield Timeline(id="timeline")
            with TabbedContent(id="live-tabs"):
                with TabPane("Sched log", id="tab-sched"):
                    yield self._sched_pane
                with TabPane("Console", id="tab-console"):
                    yield self._console_pane
                with TabPane("BPF globals", id="tab-globals"):
                    yield BpfGlobals(id="globals")
        # Every key of a live run fits an 80-column footer only without "^p Commands" (ctrl+p
        # still opens the palette; help lists it): at 80 columns Shell and Result were cut off.
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        self.title = f"live {self.path.name}"
        self._start_notifications()
        self._tail()
        self.set_interval(1.0, self._draw_status)
        self._draw_status()

    def on_unmount(self) -> None:
        self._stop.set()
        self._wake.set()
        self.app.watch_hub.unsubscribe(self._watch)
        self._watch = None

    # ------------------------------------------------------------------ following
    def _start_notifications(self) -> None:
        """Wake the tail worker and the log views on file changes in the run directory."""
        wake_run = self._wake
        # LogView.wake only sets a threading.Event: safe from watchdog's thread
        wake_log = {rundir.SCHED_LOG: self._sched_pane.view.wake,
                    rundir.CONSOLE: self._console_pane.view.wake}

        def wake(event) -> None:  # on the watcher's thread
            wake_run.set()
            wake_view = wake_log.get(Path(str(event.src_path)).name)
            if wake_view is not None:
                wake_view()

        # No inotify left (the hub cannot set the watch up): the tail worker's and the log
        # views' polling still follow the run, a little later; so a failure is not shown.
        self._watch = self.app.watch_hub.subscribe(self.path, wake)

    @work(thread=True, exclusive=True, group="tail")
    def _tail(self) -> None:
        events = JsonlTail(self.path / rundir.EVENTS)
        samples = JsonlTail(self.path / rundir.MONITOR)
        bpf = JsonlTail(self.path / rundir.BPF_GLOBALS)
        first = True
        last: tuple | None = None
        while not self._stop.is_set():
            if not self.path.is_dir():
                self.post_message(RunUpdate(gone=True))
                return
            status, error = None, None
            try:
                status = load_status(self.path)
            except KtstrError as e:
                error = e.one_line()
            new_events = [e for e in map(parse_event, events.read()) if e]
            new_samples = [s for s in map(parse_sample, samples.read()) if s]
            new_globals = [g for g in map(parse_globals, bpf.read()) if g]
            result_ready = (self.path / rundir.RESULT).exists()
            control = (self.path / rundir.CONTROL).exists()
            state = (status, result_ready, control, error)
            if new_events or new_samples or new_globals or state != last:  # news only
                last = state
                self.post_message(RunUpdate(status=status, events=new_events,
                                            samples=new_samples, result_ready=result_ready,
                                            control_live=control, error=error,
                                            globals=new_globals))
            if first:
                first = False
                self._load_topology()
            if result_ready and status is not None and not status.live:
                return
            self._wake.wait(POLL_SECONDS)
            self._wake.clear()

    def _load_topology(self) -> None:
        try:
            spec = load_spec(self.path) or {}
            topo = parse_topology(str(spec.get("topology", "")))
        except KtstrError:
            return
        self.app.call_from_thread(self.query_one("#monitor", MonitorGrid).set_topology, topo)

    def _binding_state(self) -> tuple[bool, bool, bool]:
        """Everything check_action reads: the footer is redrawn when any of it changes."""
        return (self.control, self.gone, self.result_ready)

    @on(RunUpdate)
    def _update(self, u: RunUpdate) -> None:
        before = self._binding_state()
        self._apply(u)
        if self._binding_state() != before:
            self.refresh_bindings()

    def _apply(self, u: RunUpdate) -> None:
        if u.gone:
            self.gone = True
            self.control = False
            self.notify(f"run directory deleted: {self.path}", severity="error", timeout=10,
                        markup=False)
            self._draw_status()
            return
        if u.status is not None:
            self.status = u.status
        self.error = u.error
        if (self.status is not None and self.status.live and self.status.pid
                and not u.control_live and not pid_alive(self.status.pid)):
            self.error = (f"the run's process {self.status.pid} is gone without a result "
                          "(interrupted)")
        if u.samples:
            self.query_one("#monitor", MonitorGrid).add_samples(u.samples)
        if u.globals:
            self.query_one("#globals", BpfGlobals).add_lines(list(u.globals))
        if u.events:
            self.last_event = event_label(u.events[-1])
            for e in u.events:
                if e.kind == "scenario_pause":
                    self.paused = True
                elif e.kind == "scenario_resume":
                    self.paused = False
        t0 = self.status.started if self.status else None
        if u.events or u.status is not None:
            self.query_one("#timeline", Timeline).add_events(u.events, t0=t0, now=self.clock()
                                                             if self.status and self.status.live
                                                             else None)
        self.control = u.control_live
        self.result_ready = u.result_ready
        self._draw_status()
        if (u.result_ready and self.status is not None and not self.status.live
                and self.auto_result and not self._switched):
            self._switched = True
            self.action_open_result()

    def _draw_status(self) -> None:
        st = self.status
        out = Text(no_wrap=True)
        if self.gone:
            out.append(" run directory deleted ", style="bold reverse red")
            out.append(f" {self.path}")
            self.query_one("#live-status", Static).update(out)
            return
        phase = st.phase if st else "waiting for status.json"
        out.append(f" {phase.upper()} ", style="bold reverse " + (
            "cyan" if st and st.live else "green" if phase == "done" else "yellow"))
        if self.paused:
            out.append(" PAUSED ", style="bold reverse yellow")
        now = self.clock()
        if st and st.started:
            end = now if st.live else (st.updated or now)
            out.append(f"  elapsed {_fmt_secs(end - st.started)}")
        if st and st.watchdog_deadline and st.live:
            left = st.watchdog_deadline - now
            out.append(f"  watchdog {_fmt_secs(left)} left",
                       style="bold red" if left < 10 else "")
        if st and st.engine:
            out.append(f"  engine {st.engine}")
        if self.last_event:
            out.append(f"  last: {self.last_event}", style="dim")
        if not self.control:
            out.append(f"  [{NO_CONTROL if st and not st.live else 'no control socket yet'}]",
                       style="dim")
        if self.error:
            out.append(f"  {self.error}", style="bold red")
        if self.result_ready:
            out.append("  result ready (enter)", style="bold green")
        self.query_one("#live-status", Static).update(out)

    # ------------------------------------------------------------------ actions
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # reads only _binding_state(); _update refreshes the footer when that changes
        if action in ("pause", "snapshot", "stop", "shell"):
            return self.control and not self.gone or None
        if action == "open_result":
            return self.result_ready or None
        return True

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_timeline(self) -> None:
        """The per-CPU scheduling timeline following the present (sched_timeline.py)."""
        from ..widgets.sched_timeline import TimelineScreen

        self.app.push_screen(TimelineScreen(self.path, at=None, live=True))

    def action_show_tab(self, tab: str) -> None:
        show_tab(self.query_one("#live-tabs", TabbedContent), tab)

    def action_pause(self) -> None:
        self._control("resume" if self.paused else "pause")

    def action_snapshot(self) -> None:
        self._control("snapshot")

    def action_stop(self) -> None:
        from .confirm import ConfirmScreen

        def answer(yes: bool | None) -> None:
            if yes:
                self._control("stop")

        self.app.push_screen(ConfirmScreen(f"Stop run {self.path.name}?", yes="Stop"), answer)

    @work(thread=True, group="control")
    def _control(self, cmd: str) -> None:
        if not (self.path / rundir.CONTROL).exists():
            self.app.call_from_thread(self.notify, NO_CONTROL, severity="warning")
            return
        try:
            from ktstr_vmm.run.control import send_command

            reply = send_command(self.path, cmd, timeout=10.0)
        except KtstrError as e:
            self.app.call_from_thread(self.notify, f"{cmd}: {e.one_line()}", severity="error")
            return
        if cmd in ("pause", "resume"):
            self.paused = cmd == "pause"
        detail = reply.get("path") or reply.get("detail") or ""
        self.app.call_from_thread(self.notify, f"{cmd}: ok {detail}".strip())
        self._wake.set()

    def action_shell(self) -> None:
        self._open_shell()

    @work(thread=True, exclusive=True, group="shell")
    def _open_shell(self) -> None:
        """Ask for the shell off the UI thread (the guest may take a moment)."""
        from ktstr_vmm.run.shellclient import connect, window_size

        if not (self.path / rundir.CONTROL).exists():
            self.app.call_from_thread(self.notify, NO_CONTROL, severity="warning")
            return
        rows, cols = window_size(0)
        try:
            sock, reply = connect(self.path, tty=True, rows=rows, cols=cols,
                                  term=os.environ.get("TERM", ""), by="ktstr tui",
                                  timeout=30.0)
        except KtstrError as e:
            self.app.call_from_thread(self.notify, f"shell: {e.one_line()}", severity="error",
                                      markup=False)
            return
        self.app.call_from_thread(self._hand_over, sock, reply)

    def _hand_over(self, sock, reply: dict) -> None:
        """The terminal belongs to the guest shell until it ends (UI thread, suspended)."""
        from textual.app import SuspendNotSupported

        from ktstr_vmm.run.shellclient import HELPERS_LINE, bridge

        try:
            with self.app.suspend():
                os.write(1, (f"ktstr: shell {reply.get('sid')} on {self.path.name} (guest pid "
                             f"{reply.get('pid')})\r\n{HELPERS_LINE}; exit or Ctrl-] returns "
                             "to the live screen\r\n").encode())
                end = bridge(sock, tty=True)
        except SuspendNotSupported:
            sock.close()
            self.notify("shell: this terminal cannot hand itself over (no suspend here)",
                        severity="error")
            return
        self.notify(f"shell {reply.get('sid')} ended: {end.why}", markup=False)
        self._wake.set()

    def action_open_result(self) -> None:
        from .result import ResultScreen

        if (self.path / rundir.RESULT).exists():
            self.app.switch_screen(ResultScreen(self.path))
