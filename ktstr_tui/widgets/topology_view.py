"""A small drawing of a topology: nodes, LLCs, cores and their thread CPU numbers."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from ktstr_vmm.spec import Topology

MAX_LLCS_DRAWN = 8
MAX_CORES_DRAWN = 8


def draw_topology(topo: Topology) -> Text:
    out = Text(no_wrap=True)
    out.append(f"{topo.notation}: {topo.nodes} node(s), {topo.llcs} LLC(s), "
               f"{topo.cores} core(s)/LLC, {topo.threads} thread(s)/core = {topo.vcpus} vCPUs\n",
               style="bold")
    llcs_drawn = 0
    for node in range(topo.nodes):
        out.append(f"node {node}\n", style="cyan")
        for i in range(topo.llcs_per_node):
            llc = node * topo.llcs_per_node + i
            if llcs_drawn >= MAX_LLCS_DRAWN:
                break
            llcs_drawn += 1
            out.append(f"  llc {llc:<2} ", style="magenta")
            cpus = topo.llc_cpus(llc)
            for core in range(min(topo.cores, MAX_CORES_DRAWN)):
                threads = cpus[core * topo.threads:(core + 1) * topo.threads]
                out.append("[" + " ".join(str(c) for c in threads) + "]")
            if topo.cores > MAX_CORES_DRAWN:
                out.append(f" +{topo.cores - MAX_CORES_DRAWN} cores", style="dim")
            out.append("\n")
    if topo.llcs > llcs_drawn:
        out.append(f"  ... {topo.llcs - llcs_drawn} more LLC(s)\n", style="dim")
    out.rstrip()
    return out


class TopologyView(Static):
    """Shows draw_topology(topology), or an error line when the text does not parse."""

    def show(self, topo: Topology | None, error: str | None = None) -> None:
        if topo is None:
            self.update(Text(error or "", style="red"))
        else:
            self.update(draw_topology(topo))
