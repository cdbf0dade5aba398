"""The per-CPU scheduling timeline: one lane per CPU (grouped by node and LLC), the tasks
that held each CPU as coloured spans with their names, idle as a dim dotted line, the run's
events (attach, workload, exit, snapshots, dumps) and the kernel's sched_ext exits on the
same axis above.

Keys: left/right pan, shift+left/right pan a whole window, + / - zoom (the mouse wheel zooms at
the pointer, shift+wheel pans), 0 the whole run, end follow the present (live), f the failure, s the next
snapshot or periodic capture, g a typed time, n / N the next / previous task, c clear the selection; a click on
a span selects its task: its spans stand out on every CPU, its wakeups (↑) and migrations
(⇄) are marked. Drawing asks the model (ktstr_vmm.trace.view) a few bisections per
column: a frame costs the same for a thousand events as for millions. Task names are guest
text: they go into Text, never into markup.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Header, Input, OptionList, Static
from textual.widgets.option_list import Option

from ktstr_vmm.trace.view import IDLE, UNKNOWN, Mark, MarkIndex, TimelineModel

LABEL = 9  # "cpu 12 │"
PALETTE = ("on #1f5f8b", "on #7a3b69", "on #2e7d32", "on #8d5524", "on #4527a0", "on #00695c",
           "on #9e2a2b", "on #5d4037", "on #37474f", "on #6a1b9a", "on #1565c0", "on #827717")
SELECTED = "bold black on #ffd54f"
EVENT_MARKS = {"scx_enabled": ("●", "green"), "workload_started": ("▶", "green"),
               "workload_done": ("■", "green"), "sched_stopped": ("○", "cyan"),
               "sched_exit": ("✖", "bold red"), "snapshot": ("◆", "magenta"),
               "capture": ("◇", "magenta"),
               "failure_dump": ("✖", "red"), "scx_exit": ("✖", "bold red"),
               "sched_started": ("·", "cyan"), "pause": ("‖", "yellow"),
               "resume": ("▶", "yellow")}
MIN_SPAN_NS = 10_000  # 10 us across the whole width: the deepest zoom


def fmt_t(ns: float) -> str:
    return f"{ns / 1e9:.3f}s"


def fmt_span(ns: float) -> str:
    if ns >= 1e9:
        return f"{ns / 1e9:.2f}s"
    if ns >= 1e6:
        return f"{ns / 1e6:.1f}ms"
    return f"{ns / 1e3:.0f}us"


def color(pid: int) -> str:
    return PALETTE[(pid * 2654435761 >> 7) % len(PALETTE)]


@dataclass(frozen=True)
class Group:
    title: str
    cpus: tuple[int, ...]


def groups_from_notation(notation: str | None, cpus: list[int]) -> list[Group]:
    """CPU lanes grouped by node and LLC from a topology like 1n2l2c1t (CPUs numbered in
    order, as the guest enumerates them); one group when unknown."""
    import re

    m = re.match(r"^(\d+)n(\d+)l(\d+)c(\d+)t$", notation or "")
    if not m:
        return [Group("cpus", tuple(cpus))]
    n, llc, c, t = (int(x) for x in m.groups())
    per_llc = max(1, c * t)
    out: dict[tuple[int, int], list[int]] = {}
    for cpu in cpus:
        g = cpu // per_llc
        out.setdefault((g // max(1, llc), g), []).append(cpu)
    return [Group(f"node {node} · llc {g}", tuple(v)) for (node, g), v in sorted(out.items())]


@dataclass
class View:
    t0: int
    t1: int
    selected: int | None = None
    follow: bool = False


def draw(model: TimelineModel, view: View, width: int, groups: list[Group],
         run_events: list[tuple[int, str]] | tuple = (), marks: MarkIndex | list[Mark] = ()) -> Text:
    """One frame as Text: the status line, the event row, the axis, then the lanes."""
    cols = max(10, width - LABEL)
    t0, t1 = view.t0, max(view.t1, view.t0 + 1)
    step = (t1 - t0) / cols
    out = Text(no_wrap=True, overflow="crop")
    sel = view.selected
    status = f" {fmt_t(t0)} – {fmt_t(t1)}  ({fmt_span(t1 - t0)}, {fmt_span(step)}/col)"
    if view.follow:
        status += "  following"
    out.append(status, style="bold")
    if sel is not None:
        out.append("  task ")
        out.append(f"{model.name(sel)}", style=SELECTED)
        out.append(f" [{sel}]")
    out.append("\n")

    def col_of(t: int, clamp: bool = False) -> int | None:
        c = int((t - t0) / step)
        if clamp:
            return min(cols - 1, max(0, c))
        return c if 0 <= c < cols else None

    row = [" "] * cols
    styles: list[str] = [""] * cols
    exits = model.scx_exits  # sorted by time, like run_events: only the window's
    lo, hi = bisect.bisect_left(exits, (t0,)), bisect.bisect_left(exits, (t1,))
    shown = [(t, "scx_exit") for t, _c, _k in exits[lo:min(hi, lo + 2 * cols)]]
    lo, hi = bisect.bisect_left(run_events, (t0,)), bisect.bisect_left(run_events, (t1,))
    for t, label in list(run_events)[lo:min(hi, lo + 2 * cols)] + shown:
        c = col_of(t)
        if c is not None and label in EVENT_MARKS:
            row[c], styles[c] = EVENT_MARKS[label]
    out.append(f"{'events':<{LABEL - 1}}│", style="dim")
    _append_cells(out, row, styles)
    out.append("\n")
    axis = ["─"] * cols
    labels: list[tuple[int, str]] = []
    every = max(14, cols // 6)
    for c in range(0, cols, every):
        axis[c] = "┬"
        labels.append((c, fmt_t(t0 + c * step)))
    out.append(" " * (LABEL - 1) + "└", style="dim")
    out.append("".join(axis), style="dim")
    out.append("\n")
    lab = [" "] * cols
    for c, s in labels:
        for i, ch in enumerate(s):
            if c + i < cols:
                lab[c + i] = ch
    out.append(" " * LABEL + "".join(lab), style="dim")
    out.append("\n")
    marks_by_cpu: dict[int, list[Mark]] = {}
    index = marks if isinstance(marks, MarkIndex) else MarkIndex(list(marks))
    visible = index.in_window(t0, t1, limit=2 * cols)
    for m in visible:
        marks_by_cpu.setdefault(m.cpu, []).append(m)
    for g in groups:
        out.append(f" {g.title}", style="bold dim")
        out.append("\n")
        for cpu in g.cpus:
            cells = model.cells(cpu, t0, t1, cols)
            out.append(f"cpu {cpu:<3} ", style="bold")
            out.append("│", style="dim")
            _append_lane(out, model, cells, sel, marks_by_cpu.get(cpu, ()), col_of)
            out.append("\n")
    if model.notes:
        out.append(" note: " + model.notes[0], style="yellow")
    return out


def _append_cells(out: Text, chars: list[str], styles: list[str]) -> None:
    i = 0
    while i < len(chars):
        j = i
        while j < len(chars) and styles[j] == styles[i]:
            j += 1
        out.append("".join(chars[i:j]), style=styles[i] or None)
        i = j


def _append_lane(out: Text, model: TimelineModel, cells: list[int], sel: int | None,
                 marks, col_of) -> None:
    n = len(cells)
    chars = [" "] * n
    styles = [""] * n
    i = 0
    while i < n:
        pid = cells[i]
        j = i
        while j < n and cells[j] == pid:
            j += 1
        if pid == UNKNOWN:
            style, fill = "", " "
        elif pid == IDLE:
            style, fill = "dim", "·"
        else:
            style = SELECTED if pid == sel else (color(pid) + (" dim" if sel is not None else ""))
            fill = " "
        run = [fill] * (j - i)
        if pid not in (UNKNOWN, IDLE) and j - i >= 4:
            name = model.name(pid)[: j - i - 1]
            run[1:1 + len(name)] = list(name)
        elif pid not in (UNKNOWN, IDLE) and j - i < 4:
            run = ["▌" if k == 0 else " " for k in range(j - i)] if j - i > 1 else ["▌"]
        chars[i:j] = run
        styles[i:j] = [style] * (j - i)
        i = j
    for m in marks:
        if m.kind == "wait":  # the selected task waiting for this CPU: hatched
            a, b = col_of(m.ts, clamp=True), col_of(m.end, clamp=True)
            for c in range(a, min(n, b + 1)):
                if cells[c] != sel:
                    chars[c] = "░"
                    styles[c] = "bold #ffd54f"
    for m in marks:
        if m.kind == "wait":
            continue
        c = col_of(m.ts)
        if c is not None:
            chars[c] = "↑" if m.kind == "wakeup" else "⇄"
            styles[c] = "bold red on #ffd54f"
    _append_cells(out, chars, styles)


class SchedTimeline(Widget, can_focus=True):
    """Give it a TimelineModel (`set_model`); `follow=True` keeps the present in view."""

    DEFAULT_CSS = """
    SchedTimeline { height: auto; min-height: 6; }
    SchedTimeline:focus { background: $boost; }
    """
    BINDINGS = [
        Binding("left", "pan(-0.125)", "Pan", show=False),
        Binding("right", "pan(0.125)", "Pan", show=False),
        Binding("shift+left", "pan(-1)", "Pan", show=False),
        Binding("shift+right", "pan(1)", "Pan", show=False),
        Binding("plus,equals_sign", "zoom(0.5)", "Zoom in"),
        Binding("minus", "zoom(2)", "Zoom out"),
        Binding("0", "whole", "Whole run"),
        Binding("end", "follow", "Follow", show=False),
        Binding("f", "failure", "Failure"),
        Binding("s", "next_snapshot", "Next snapshot or capture", show=False),
        Binding("g", "goto", "Go to time"),
        Binding("n", "next_task(1)", "Next task"),
        Binding("N", "next_task(-1)", "Prev task", show=False),
        Binding("c", "clear", "Clear", show=False),
    ]

    class GotoRequested(Message):
        """The user asked to type a time (the screen shows an input and calls jump())."""

    def __init__(self, *, follow: bool = False, notation: str | None = None,
                 id: str | None = None) -> None:
        super().__init__(id=id)
        self.model: TimelineModel | None = None
        self.view = View(0, 1, follow=follow)
        self.notation = notation
        self.run_events: list[tuple[int, str]] = []
        self.marks: MarkIndex = MarkIndex([])
        self.message = "no scheduling trace yet"

    # ------------------------------------------------------------------ data
    def set_model(self, model: TimelineModel | None, *, keep_view: bool = False) -> None:
        self.model = model
        if model is not None and not keep_view and model.t_first is not None:
            self.view.t0, self.view.t1 = model.t_first, max(model.t_last or 0, model.t_first + 1)
        self._follow_now()
        self.refresh(layout=True)

    def set_events(self, run_events: list[tuple[int, str]]) -> None:
        self.run_events = sorted(run_events)
        self.refresh()

    def model_grew(self) -> None:
        self._follow_now()
        self.refresh(layout=True)

    def _follow_now(self) -> None:
        m = self.model
        if self.view.follow and m is not None and m.t_last is not None:
            span = self.view.t1 - self.view.t0
            if span <= 1:
                span = 5_000_000_000
            self.view.t1 = m.t_last
            self.view.t0 = max(m.t_first or 0, m.t_last - span)

    def jump(self, t_ns: int, span_ns: int | None = None) -> None:
        """Centre the view on t_ns (keeping the zoom unless span_ns is given)."""
        span = span_ns or (self.view.t1 - self.view.t0)
        self.view.follow = False
        self.view.t0 = int(t_ns - span / 2)
        self.view.t1 = int(t_ns + span / 2)
        self.refresh()

    def select(self, pid: int | None) -> None:
        self.view.selected = pid
        self.marks = MarkIndex(self.model.task_marks(pid) if (pid is not None and self.model)
                               else [])
        self.refresh()

    # ------------------------------------------------------------------ drawing
    def groups(self) -> list[Group]:
        cpus = sorted(self.model.lanes) if self.model else []
        return groups_from_notation(self.notation, cpus)

    def get_content_height(self, container, viewport, width: int) -> int:
        if self.model is None or not self.model.lanes:
            return 1
        g = self.groups()
        return 4 + len(g) + sum(len(x.cpus) for x in g) + (1 if self.model.notes else 0)

    def render(self) -> Text:
        if self.model is None or self.model.t_first is None:
            return Text(self.message, style="dim")
        return draw(self.model, self.view, self.size.width or 80, self.groups(),
                    self.run_events, self.marks)

    # ------------------------------------------------------------------ actions
    def _bounds(self) -> tuple[int, int]:
        m = self.model
        if m is None or m.t_first is None:
            return 0, 1
        return m.t_first, max(m.t_last or 0, m.t_first + 1)

    def action_pan(self, fraction: float) -> None:
        span = self.view.t1 - self.view.t0
        shift = int(span * float(fraction))
        self.view.follow = False
        self.view.t0 += shift
        self.view.t1 += shift
        self.refresh()

    def action_zoom(self, factor: float, at: float = 0.5) -> None:
        span = self.view.t1 - self.view.t0
        lo, hi = self._bounds()
        new = int(min(max(MIN_SPAN_NS, span * float(factor)), max(hi - lo, MIN_SPAN_NS) * 2))
        pivot = self.view.t0 + span * at
        self.view.t0 = int(pivot - new * at)
        self.view.t1 = self.view.t0 + new
        if self.view.follow and self.model and self.model.t_last:
            self._follow_now()
        self.refresh()

    def action_whole(self) -> None:
        self.view.t0, self.view.t1 = self._bounds()
        self.view.follow = False
        self.refresh()

    def action_follow(self) -> None:
        self.view.follow = True
        self._follow_now()
        self.refresh()

    def failure_time(self) -> int | None:
        if self.model and self.model.scx_exits:
            return self.model.scx_exits[0][0]
        for t, label in self.run_events:
            if label in ("sched_exit", "failure_dump"):
                return t
        return None

    def action_failure(self) -> None:
        t = self.failure_time()
        if t is None:
            self.notify("no failure in this run", severity="warning")
            return
        # the lead-up: the exit near the right edge of a 4 s window
        self.view.follow = False
        self.view.t1 = t + 500_000_000
        self.view.t0 = t - 3_500_000_000
        self.refresh()

    def action_next_snapshot(self) -> None:
        """The next snapshot or periodic capture (`ktstr run --capture-every`) after the
        window's centre: s steps through a run's captures on the timeline."""
        centre = (self.view.t0 + self.view.t1) // 2
        for t, label in self.run_events:
            if label in ("snapshot", "capture") and t > centre + 1:
                self.jump(t)
                return
        self.notify("no snapshot or capture after this point", severity="information")

    def action_goto(self) -> None:
        self.post_message(self.GotoRequested())

    def action_next_task(self, direction: int) -> None:
        if self.model is None:
            return
        order = self.model.tasks_by_running()
        if not order:
            return
        cur = self.view.selected
        i = order.index(cur) + int(direction) if cur in order else 0
        self.select(order[i % len(order)])

    def action_clear(self) -> None:
        self.select(None)

    # ------------------------------------------------------------------ mouse
    def _hit(self, x: int, y: int) -> tuple[int | None, float]:
        """(cpu of the lane under the pointer or None, fraction across the lanes)."""
        cols = max(10, (self.size.width or 80) - LABEL)
        frac = min(1.0, max(0.0, (x - LABEL) / cols))
        row = 4
        for g in self.groups():
            row += 1
            for cpu in g.cpus:
                if y == row:
                    return cpu, frac
                row += 1
        return None, frac

    def on_click(self, event: events.Click) -> None:
        cpu, frac = self._hit(event.x, event.y)
        if cpu is None or self.model is None or event.x < LABEL:
            return
        t = int(self.view.t0 + (self.view.t1 - self.view.t0) * frac)
        pid = self.model.lanes[cpu].pid_at(t)
        self.select(None if pid in (IDLE, UNKNOWN) else pid)

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        """The wheel zooms in at the pointer; with shift it pans back in time."""
        _cpu, frac = self._hit(event.x, event.y)
        if event.shift:
            self.action_pan(-0.125)
        else:
            self.action_zoom(0.5, frac)
        event.stop()

    def on_mouse_scroll_down(self, event: events.MouseScrollDown) -> None:
        _cpu, frac = self._hit(event.x, event.y)
        if event.shift:
            self.action_pan(0.125)
        else:
            self.action_zoom(2, frac)
        event.stop()


# ---------------------------------------------------------------------------- the pane

# A live timeline re-reads the run's trace pages on a timer, not on file notifications:
# the pages grow continuously while a run traces (a notification would come as often), and
# a timer needs no watch (none of the app's file watcher's inotify budget).
LIVE_REFRESH_S = 0.5


def parse_time(text: str) -> int | None:
    """'12.5', '12.5s', '800ms' (guest clock) -> ns; None if it is no time."""
    t = text.strip().lower()
    scale = 1e9
    for suffix, s in (("ms", 1e6), ("us", 1e3), ("s", 1e9)):
        if t.endswith(suffix):
            t, scale = t[: -len(suffix)], s
            break
    try:
        v = float(t)
    except ValueError:
        return None
    return int(v * scale) if v >= 0 else None


class TimelinePane(Vertical):
    """The timeline of one run directory, loaded off the UI thread; live=True follows the
    run's raw pages as they arrive. `at="failure"` opens at the failure once loaded."""

    DEFAULT_CSS = """
    TimelinePane { height: auto; }
    TimelinePane #tl-goto { display: none; }
    TimelinePane #tl-goto.shown { display: block; }
    TimelinePane #tl-info { color: $text-muted; }
    TimelinePane #tl-worst { height: auto; max-height: 12; }
    TimelinePane #tl-worst.empty { display: none; }
    """

    def __init__(self, path: Path, *, live: bool = False, at: str | None = None,
                 notation: str | None = None, id: str | None = None) -> None:
        super().__init__(id=id)
        self.path = Path(path)
        self.live = live
        self.at = at
        self.notation = notation
        self.model: TimelineModel | None = None
        self.loaded = False
        self.worst: list[dict] = []

    def compose(self) -> ComposeResult:
        yield Static(Text("loading the scheduling trace...", style="dim"), id="tl-info")
        yield SchedTimeline(follow=self.live, notation=self.notation, id="tl")
        yield Input(placeholder="go to time (guest clock), e.g. 12.5s", id="tl-goto")
        yield OptionList(id="tl-worst", classes="empty")

    def on_mount(self) -> None:
        self.load()
        if self.live:
            self.set_interval(LIVE_REFRESH_S, self.load)

    @work(thread=True, exclusive=True, group="timeline-load")
    def load(self) -> None:
        from ktstr_vmm.trace.view import guest_clock_events

        events = guest_clock_events(self.path)
        notation = self.notation or _observed_notation(self.path)
        if self.live:
            model = self.model or TimelineModel.live(self.path)
            grew = model.refresh() if (model is not None and model is self.model) else True
            info = None if model is not None else "no scheduling trace yet"
        else:
            from ktstr_vmm.trace.files import has_trace, open_or_build

            model, grew, info = None, True, None
            if not has_trace(self.path):
                info = "this run has no scheduling trace (run without --no-trace to record one)"
            else:
                try:
                    trace = open_or_build(self.path)
                except (OSError, ValueError) as e:
                    trace, info = None, f"the trace cannot be read: {e}"
                if trace is not None:
                    model = TimelineModel.from_trace(trace)
                elif info is None:
                    info = "the trace's index is damaged; delete trace/index.json to rebuild it"
        worst = [] if self.live else _worst_waits(self.path)
        self.app.call_from_thread(self._show, model, events, notation, grew, info, worst)

    def _show(self, model, events, notation, grew, info, worst=()) -> None:
        tl = self.query_one(SchedTimeline)
        first = self.model is None
        tl.notation = notation
        tl.set_events(events)
        if model is not None and (first or grew):
            self.model = model
            if first:
                tl.set_model(model)
            else:
                tl.model_grew()
        if info:
            tl.message = info
            tl.refresh()
        self.query_one("#tl-info", Static).update(self._info_text(info))
        if first and model is not None and self.at == "failure":
            tl.action_failure()
        if first and worst:
            box = self.query_one("#tl-worst", OptionList)
            box.clear_options()
            box.add_option(Option(Text("worst waits (enter: show in the timeline)", style="bold"),
                                  disabled=True))
            for i, w in enumerate(worst):
                box.add_option(Option(_wait_text(w), id=f"w{i}"))
            box.remove_class("empty")
            self.worst = list(worst)
        self.loaded = True

    @on(OptionList.OptionSelected, "#tl-worst")
    def _worst_selected(self, event: OptionList.OptionSelected) -> None:
        """Show a worst wait: its task selected, the wait in the middle of the view."""
        w = self.worst[int(event.option.id[1:])]
        tl = self.query_one(SchedTimeline)
        span = max(w["ran_ns"] - w["since_ns"], 1_000_000) * 3
        tl.select(int(w["pid"]))
        tl.jump((w["since_ns"] + w["ran_ns"]) // 2, span)
        tl.focus()

    def _info_text(self, info: str | None) -> Text:
        if info:
            return Text(info, style="yellow")
        m = self.model
        if m is None:
            return Text("")
        t = Text(f"{len(m.lanes)} cpus, {m.switches} context switches", style="dim")
        t.append("   ←/→ pan  +/- zoom  0 all  f failure  s snapshot  g go to  n/N task  "
                 "click a span", style="dim")
        return t

    @on(SchedTimeline.GotoRequested)
    def _goto(self) -> None:
        box = self.query_one("#tl-goto", Input)
        box.add_class("shown")
        box.focus()

    @on(Input.Submitted, "#tl-goto")
    def _goto_submitted(self, event: Input.Submitted) -> None:
        box = self.query_one("#tl-goto", Input)
        t = parse_time(event.value)
        box.remove_class("shown")
        box.value = ""
        tl = self.query_one(SchedTimeline)
        tl.focus()
        if t is None:
            self.notify(f"not a time: {event.value!r} (try 12.5s)", severity="warning",
                        markup=False)
            return
        tl.jump(t)


def _worst_waits(path: Path) -> list[dict]:
    """trace/latency.json's worst waits (written after the run), well-formed ones only."""
    import json

    try:
        d = json.loads((path / "trace" / "latency.json").read_text())
    except (OSError, ValueError):
        return []
    out = []
    for w in (d.get("worst") or []) if isinstance(d, dict) else []:
        if isinstance(w, dict) and all(isinstance(w.get(k), int) for k in
                                       ("ns", "pid", "since_ns", "ran_ns", "ran_cpu", "from_cpu")):
            out.append(w)
    return out[:20]


def _wait_text(w: dict) -> Text:
    t = Text(f"{w['ns'] / 1e6:9.1f}ms  ")
    t.append(str(w.get("name", "?")), style="bold")  # guest text: Text, never markup
    why = (f" woken for cpu {w['from_cpu']}" if w.get("why") == "wakeup"
           else f" preempted on cpu {w['from_cpu']}")
    t.append(f" [{w['pid']}]{why} at {fmt_t(w['since_ns'])}, ran on cpu {w['ran_cpu']} "
             f"at {fmt_t(w['ran_ns'])}")
    return t


def _observed_notation(path: Path) -> str | None:
    import json

    for name in ("result.json",):
        try:
            d = json.loads((path / name).read_text())
            obs = (d.get("topology") or {}).get("observed")
            if isinstance(obs, str):
                return obs
        except (OSError, ValueError, AttributeError):
            pass
    try:
        d = json.loads((path / "spec.json").read_text())
        topo = d.get("topology")
        return topo if isinstance(topo, str) else None
    except (OSError, ValueError, AttributeError):
        return None


class TimelineScreen(Screen):
    """The timeline on a screen of its own: `t` on the result screen (`T` at the failure),
    on the live screen (following the present), and on the failure-dump viewer."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]

    def __init__(self, path: Path, *, at: str | None = "failure", live: bool = False) -> None:
        super().__init__()
        self.path = Path(path)
        self.at = at
        self.live = live

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll():
            yield TimelinePane(self.path, at=self.at, live=self.live, id="timeline-pane")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(SchedTimeline).focus()
