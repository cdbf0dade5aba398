"""Per-CPU scheduler state, grouped by NUMA node and LLC, with a sparkline of history.

Gets samples through `add_samples` (the screen routes RunUpdate messages here) and keeps
a bounded history per CPU. Cells are coloured by thresholds: a deep local DSQ, runnable
work on an idle CPU, and CPUs named by the monitor's threshold flags; each such CPU also
carries a mark (`!` stuck / flagged, `~` idle with runnable tasks, `+` deep DSQ) so the
grid reads the same without colour.

With `steppable=True` (the result screen) every sample is kept and a cursor steps through
them: `[`/`]` (or h/l, left/right) one sample, `{`/`}` ten, g/G first/last, `e` the last
sample before the scheduler's exit.
"""

from __future__ import annotations

import re
from collections import deque

from rich.text import Text
from textual.binding import Binding
from textual.widgets import Static

from ktstr_vmm.introspect.scx import exit_kind_name
from ktstr_vmm.rundir.records import MonitorSample
from ktstr_vmm.spec import Topology

HISTORY = 48
BARS = "▁▂▃▄▅▆▇█"
DSQ_WARN = 4
DSQ_BAD = 16
_FLAG_CPU = re.compile(r"\bcpu\s*(\d+)\b", re.IGNORECASE)


def sparkline(values: list[int] | deque[int], width: int) -> str:
    vals = list(values)[-width:]
    if not vals:
        return ""
    top = max(max(vals), 1)
    return "".join(BARS[min(len(BARS) - 1, (v * (len(BARS) - 1) + top - 1) // top)] for v in vals)


DUMP_DSQS = "DSQs in the failure dump (frozen at the exit): "
LEGEND = ("nr: runnable tasks of every class · scx: sched_ext tasks · dsq: local DSQ depth · "
          "marks: ! stuck or flagged by the monitor, ~ idle with runnable tasks, "
          "+ local DSQ ≥ 4 · history: nr per sample")
STEP_HELP = "[ ] step · { } ten · g G first/last · e the exit"
ERROR_KIND = 1024


def failure_index(samples: list[MonitorSample]) -> int | None:
    """The last sample before the scheduler's exit shows (an exit kind of SCX_EXIT_ERROR
    or above, else any exit kind, else a state past `enabled`); None without an exit."""
    def kind(s: MonitorSample) -> int:
        return int(s.exit_kind) if s.exit_kind.isdigit() else 0

    for pred in (lambda s: kind(s) >= ERROR_KIND, lambda s: kind(s) > 0,
                 lambda s: s.scx_state in ("disabling", "disabled")):
        enabled = False
        for i, s in enumerate(samples):
            enabled = enabled or s.scx_state == "enabled"
            if enabled and pred(s):
                return max(0, i - 1)
    return None


class MonitorGrid(Static):
    """The live monitor pane; also shows a whole history on the result screen."""
    DEFAULT_CSS = """
    MonitorGrid { width: auto; padding: 0 1; }
    """

    BINDINGS = [
        Binding("left_square_bracket,left", "step(-1)", "Earlier sample", show=False),
        Binding("right_square_bracket,right", "step(1)", "Later sample", show=False),
        Binding("left_curly_bracket", "step(-10)", "10 samples back", show=False),
        Binding("right_curly_bracket", "step(10)", "10 samples on", show=False),
        Binding("g,home", "step_to(0)", "First sample", show=False),
        Binding("G,end", "step_to(-1)", "Last sample", show=False),
        Binding("e", "jump_failure", "Jump to failure sample", show=False),
    ]

    def __init__(self, topology: Topology | None = None, *, history: int = HISTORY,
                 steppable: bool = False, id: str | None = None) -> None:
        super().__init__(id=id)
        self.can_focus = steppable
        self.steppable = steppable
        self.topology = topology
        self.history_len = history
        self.latest: MonitorSample | None = None
        self.samples = 0
        self.history: dict[int, deque[int]] = {}
        self.flags: tuple[str, ...] = ()
        self.flag_count: dict[str, int] = {}
        self.all: list[MonitorSample] = []   # every sample (steppable only)
        self.cursor: int | None = None        # shown sample (steppable); None = the last
        self.failure: int | None = None
        self.dump_dsqs: tuple[tuple[str, int], ...] = ()  # (origin, tasks) at the exit

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("step", "step_to", "jump_failure"):
            return self.steppable
        return True

    def action_step(self, n: int) -> None:
        if self.all:
            now = self.cursor if self.cursor is not None else len(self.all) - 1
            self.step_to(now + n)

    def action_step_to(self, i: int) -> None:
        self.step_to(i if i >= 0 else len(self.all) - 1)

    def step_to(self, i: int) -> None:
        if not self.all:
            return
        self.cursor = min(max(0, i), len(self.all) - 1)
        self._render_grid()

    def set_dump_dsqs(self, dsqs: tuple[tuple[str, int], ...]) -> None:
        """The global, user and bypass DSQs of the failure dump with their depths: samples
        hold only each CPU's local DSQ, so these are shown from the exit on (where known)."""
        self.dump_dsqs = tuple(dsqs)
        self._render_grid()

    def action_jump_failure(self) -> None:
        self.jump_to_failure()

    def jump_to_failure(self) -> bool:
        """Show the last sample before the exit; False when no sample shows one."""
        if self.failure is None:
            return False
        self.step_to(self.failure)
        return True

    @property
    def spark_width(self) -> int:
        return 24 if self.history_len <= HISTORY else 72

    def on_mount(self) -> None:
        self._render_grid()

    def set_topology(self, topology: Topology) -> None:
        """Group the CPUs by node and LLC from now on (redrawn at once: the spec may be read
        after the first samples arrived)."""
        self.topology = topology
        if self.is_mounted:
            self._render_grid()

    def add_samples(self, samples: tuple[MonitorSample, ...] | list[MonitorSample]) -> None:
        if not samples:
            return
        if self.steppable:
            self.all.extend(samples)
            self.failure = failure_index(self.all)
        for s in samples:
            self.samples += 1
            for c in s.cpus:
                self.history.setdefault(c.cpu, deque(maxlen=self.history_len)).append(
                    c.nr_running)
            for f in s.flags:
                self.flag_count[f] = self.flag_count.get(f, 0) + 1
        self.latest = samples[-1]
        self.flags = self.latest.flags
        self._render_grid()

    def _groups(self, cpus: list[int]) -> list[tuple[str, list[int]]]:
        topo = self.topology
        if topo is None or not cpus or max(cpus) >= topo.vcpus:
            return [("cpus", cpus)]
        groups: list[tuple[str, list[int]]] = []
        for llc in range(topo.llcs):
            node = llc // topo.llcs_per_node
            members = [c for c in topo.llc_cpus(llc) if c in cpus]
            if members:
                groups.append((f"node {node} · llc {llc}", members))
        return groups

    def _shown(self) -> tuple[MonitorSample | None, int]:
        """The sample to draw and its index (the cursor's, or the latest)."""
        if self.steppable and self.all:
            i = self.cursor if self.cursor is not None else len(self.all) - 1
            return self.all[i], i
        return self.latest, self.samples - 1

    def _history_upto(self, cpu: int, index: int) -> list[int]:
        if self.steppable and self.all:
            lo = max(0, index + 1 - self.spark_width)
            return [next((c.nr_running for c in s.cpus if c.cpu == cpu), 0)
                    for s in self.all[lo:index + 1]]
        return list(self.history.get(cpu, deque()))

    def _render_grid(self) -> None:
        s, index = self._shown()
        if s is None:
            self.update(Text("no monitor samples yet", style="dim"))
            return
        flagged = {int(m.group(1)) for f in s.flags for m in _FLAG_CPU.finditer(f)}
        by_cpu = {c.cpu: c for c in s.cpus}
        out = Text(no_wrap=True)
        head = f"scx {s.scx_state or '?'}"
        if s.exit_kind:
            kind = s.exit_kind
            head += f" · exit {exit_kind_name(int(kind)) if kind.isdigit() else kind} ({kind})"
        if self.steppable:
            head += f" · sample {index + 1}/{len(self.all)} at {s.t:.1f} s"
            if self.failure is not None:
                head += (" · the last before the exit" if index == self.failure
                         else f" · exit after sample {self.failure + 1} (e)")
        else:
            head += f" · {self.samples} samples"
        out.append(head + "\n", style="bold")
        out.append("   cpu  nr scx dsq  current               history\n", style="dim underline")
        for label, cpus in self._groups(sorted(by_cpu)):
            out.append(label + "\n", style="cyan")
            for cpu in cpus:
                c = by_cpu[cpu]
                style, mark = "", " "
                idle_with_work = c.nr_running > 0 and c.curr_pid == 0
                if c.local_dsq_nr >= DSQ_BAD or cpu in flagged:
                    style, mark = "bold red", "!"
                elif idle_with_work:
                    style, mark = "bold yellow", "~"
                elif c.local_dsq_nr >= DSQ_WARN:
                    style, mark = "yellow", "+"
                elif c.nr_running == 0:
                    style = "dim"
                curr = f"{c.curr_comm}[{c.curr_pid}]" if c.curr_comm or c.curr_pid else "-"
                cls = c.curr_class.replace("_sched_class", "")
                out.append(f" {mark} {cpu:>3} {c.nr_running:>3} {c.scx_nr_running:>3} "
                           f"{c.local_dsq_nr:>3}  {curr[:16]:<16} {cls[:4]:<4} ", style=style)
                out.append(sparkline(self._history_upto(cpu, index), self.spark_width),
                           style="green")
                out.append("\n")
        at_exit = self.failure is None or index >= self.failure
        if self.steppable and self.dump_dsqs and at_exit:
            out.append(DUMP_DSQS, style="bold")
            out.append(" · ".join(f"{origin} {nr}" for origin, nr in self.dump_dsqs) + "\n",
                       style="bold yellow" if any(nr for _, nr in self.dump_dsqs) else "")
        if self.flag_count:
            out.append("threshold flags: ", style="bold red")
            out.append(", ".join(f"{f} ×{n}" for f, n in sorted(self.flag_count.items())),
                       style="red")
            out.append("\n")
        if self.steppable:
            out.append(LEGEND + "\n", style="dim")
            out.append(STEP_HELP, style="dim")
        out.rstrip()
        self.update(out)
