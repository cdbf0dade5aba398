"""The topology a guest reports (sysfs cpulists in SysRdy) -> a Topology to compare with
the requested one. Guest data is untrusted: anything malformed gives None, never raises."""

from __future__ import annotations

from collections.abc import Iterable

from .spec import Topology

MAX_CPUS = 4096


def parse_cpulist(text: str) -> frozenset[int] | None:
    """'0-3,6,8-9' -> {0,1,2,3,6,8,9}; None when malformed or absurd."""
    cpus: set[int] = set()
    text = (text or "").strip()
    if not text:
        return frozenset()
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            return None
        a, b = int(lo), int(hi) if sep else int(lo)
        if a > b or b >= MAX_CPUS:
            return None
        cpus.update(range(a, b + 1))
    return frozenset(cpus)


def observed_topology(online: str, nodes: Iterable[str], llcs: Iterable[str],
                      siblings: Iterable[str]) -> Topology | None:
    """Build {n}n{l}l{c}c{t}t from the guest's view:
    online: /sys/devices/system/cpu/online; nodes: each node's cpulist;
    llcs: each CPU's L3 shared_cpu_list (duplicates fine); siblings: each CPU's
    thread_siblings_list. Returns None when the shape is not uniform (a Topology cannot
    describe it) or the data is malformed."""
    try:
        cpus = parse_cpulist(online)
        node_sets = {s for s in (parse_cpulist(n) for n in nodes)}
        llc_sets = {s for s in (parse_cpulist(x) for x in llcs)}
        sib_sets = {s for s in (parse_cpulist(x) for x in siblings)}
    except (TypeError, AttributeError):
        return None
    if not cpus or None in node_sets or None in llc_sets or None in sib_sets:
        return None
    node_sets.discard(frozenset())
    llc_sets.discard(frozenset())
    if not node_sets:
        node_sets = {cpus}
    if not llc_sets:  # no L3 reported: one LLC per node
        llc_sets = set(node_sets)
    threads = {len(s) for s in sib_sets} or {1}
    if len(threads) != 1:
        return None
    t = threads.pop()
    n, llc = len(node_sets), len(llc_sets)
    if len(cpus) % (llc * t) or llc % n:
        return None
    return Topology(nodes=n, llcs=llc, cores=len(cpus) // (llc * t), threads=t)
