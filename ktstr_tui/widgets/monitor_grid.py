"""Per-CPU scheduler state, grouped by NUMA node and LLC, with a sparkline of history.

Gets samples through `add_samples` (the screen routes RunUpdate messages here) and keeps
a bounded history per CPU. Cells are coloured by thresholds: a deep local DSQ, runnable
work on an idle CPU, and CPUs named by the monitor's threshold flags.
"""

from __future__ import annotations

import re
from collections import deque

from rich.text import Text
from textual.widgets import Static

from ktstr_vmm.introspect.scx import exit_kind_name
from ktstr_vmm.spec import Topology

from ..rundata import MonitorSample

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


class MonitorGrid(Static):
    """The live monitor pane; also shows a whole history on the result screen."""

    def __init__(self, topology: Topology | None = None, *, history: int = HISTORY,
                 id: str | None = None) -> None:
        super().__init__(id=id)
        self.topology = topology
        self.history_len = history
        self.latest: MonitorSample | None = None
        self.samples = 0
        self.history: dict[int, deque[int]] = {}
        self.flags: tuple[str, ...] = ()
        self.flag_count: dict[str, int] = {}

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

    def _render_grid(self) -> None:
        s = self.latest
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
        head += f" · {self.samples} samples"
        out.append(head + "\n", style="bold")
        out.append(" cpu  nr scx dsq  current               history\n", style="dim underline")
        for label, cpus in self._groups(sorted(by_cpu)):
            out.append(label + "\n", style="cyan")
            for cpu in cpus:
                c = by_cpu[cpu]
                style = ""
                if c.local_dsq_nr >= DSQ_BAD or cpu in flagged:
                    style = "bold red"
                elif c.local_dsq_nr >= DSQ_WARN or (c.nr_running > 0 and c.curr_pid == 0):
                    style = "yellow"
                elif c.nr_running == 0:
                    style = "dim"
                curr = f"{c.curr_comm}[{c.curr_pid}]" if c.curr_comm or c.curr_pid else "-"
                cls = c.curr_class.replace("_sched_class", "")
                out.append(f" {cpu:>3} {c.nr_running:>3} {c.scx_nr_running:>3} "
                           f"{c.local_dsq_nr:>3}  {curr[:16]:<16} {cls[:4]:<4} ", style=style)
                out.append(sparkline(self.history.get(cpu, deque()), self.spark_width),
                           style="green")
                out.append("\n")
        if self.flag_count:
            out.append("threshold flags: ", style="bold red")
            out.append(", ".join(f"{f} ×{n}" for f, n in sorted(self.flag_count.items())),
                       style="red")
        out.rstrip()
        self.update(out)
