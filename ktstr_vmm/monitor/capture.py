"""A real failure dump read from the frozen guest: per-CPU run queues and their local DSQs,
the current and runnable tasks, the attached scheduler's exit (kind, reason, message) and
the event-counter timeline of the monitor's samples. docs/failure-dump.md lists the fields.

Lists, the DSQ rhashtable and per-CPU copies are walked with introspect/walkers.py; every
walk is capped (a corrupt list cannot loop forever) and every read may fail: what could not
be read is left out, as absent means "not captured" in the format.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from ..introspect.bpf_maps import active_obj_name, read_maps
from ..introspect.btf_types import BtfError
from ..introspect.memory import is_bad
from ..introspect.walkers import (
    RhtLayout,
    list_for_each_entry,
    per_cpu_ptr,
    rht_buckets,
    rht_for_each,
)
from ..rundir.dumps import (
    REASON_NO_NUMA_WALKER,
    REASON_PROG_ACCESSOR_UNAVAILABLE,
    REASON_SCX_ROOT_NULL,
    DsqState,
    EventCounterSample,
    FailureDump,
    FailureDumpMap,
    RqScxState,
    ScxSchedState,
    TaskEnrichment,
)
from .sampler import MAX_PID, Sampler, real_exit_kind

LIST_CAP = 256

# Every kernel member the capture reads beyond the sampler's: name -> (struct, member path),
# byte offsets from the kernel's own BTF, resolved once per sampler; a member this kernel
# lacks is None and its dump field is left out. A new dump field is a line here, its read
# below and its field in rundir/dumps.py.
CAPTURE_MEMBERS: dict[str, tuple[str, str]] = {
    "rq_cpu_released": ("rq", "scx.cpu_released"),
    "rq_runnable_list": ("rq", "scx.runnable_list"),
    "rq_ops_qseq": ("rq", "scx.ops_qseq"),
    "rq_kick_sync": ("rq", "scx.kick_sync"),
    "rq_nr_immed": ("rq", "scx.nr_immed"),
    "rq_local_dsq": ("rq", "scx.local_dsq"),
    "task_runnable_node": ("task_struct", "scx.runnable_node"),
    "task_dsq_node": ("task_struct", "scx.dsq_list.node"),
    "task_runnable_at": ("task_struct", "scx.runnable_at"),
    "task_weight": ("task_struct", "scx.weight"),
    "task_prio": ("task_struct", "prio"),
    "task_nvcsw": ("task_struct", "nvcsw"),
    "task_nivcsw": ("task_struct", "nivcsw"),
    "task_real_parent": ("task_struct", "real_parent"),
    "task_group_leader": ("task_struct", "group_leader"),
    "task_cpu": ("task_struct", "thread_info.cpu"),
    "dsq_nr": ("scx_dispatch_q", "nr"),
    "dsq_seq": ("scx_dispatch_q", "seq"),
    "dsq_id": ("scx_dispatch_q", "id"),
    "dsq_list": ("scx_dispatch_q", "list"),
    "dsq_hash_node": ("scx_dispatch_q", "hash_node"),
    "sch_pnode": ("scx_sched", "pnode"),
    "sch_dsq_hash": ("scx_sched", "dsq_hash"),
    "rht_tbl": ("rhashtable", "tbl"),
    "pnode_global_dsq": ("scx_sched_pnode", "global_dsq"),
    "pcpu_bypass_dsq": ("scx_sched_pcpu", "bypass_dsq"),
    "tbl_size": ("bucket_table", "size"),
    "tbl_nest": ("bucket_table", "nest"),
    "tbl_buckets": ("bucket_table", "buckets"),
    "ei_reason": ("scx_exit_info", "reason"),
    "ei_msg": ("scx_exit_info", "msg"),
}


def offsets(s: Sampler) -> dict[str, int | None]:
    """CAPTURE_MEMBERS' byte offsets in this kernel (resolved on the first capture)."""
    got = s.capture_offsets
    if got is None:
        btf = s.mem.btf
        got = s.capture_offsets = {k: _member_offset(btf, st, path)
                                   for k, (st, path) in CAPTURE_MEMBERS.items()}
    return got


def _member_offset(btf, struct_name: str, path: str) -> int | None:
    try:
        return btf.member(struct_name, path).offset
    except (BtfError, AttributeError):  # no such member / no BTF
        return None
REASON_NO_SDT = "sdt_alloc views are not captured by ktstr-vmm"
_EV_FIELDS = {f.name for f in dataclasses.fields(EventCounterSample)} - {"elapsed_ms"}
_CLASS_NAMES = {"ext": "ext_sched_class", "fair": "fair_sched_class",
                "idle": "idle_sched_class", "rt": "rt_sched_class", "dl": "dl_sched_class",
                "stop": "stop_sched_class"}


def _int(mem, va: int, size: int, signed: bool = False) -> int | None:
    b = mem.read(va, size)
    return None if is_bad(b) else int.from_bytes(b, "little", signed=signed)


def _list_entries(mem, head: int, node_off: int | None) -> tuple[list[int], bool]:
    """The containers on the list_head at `head` (node - `node_off`), at most LIST_CAP, and
    whether the walk stopped at that cap; ([], False) when this kernel lacks the member."""
    if node_off is None:
        return [], False
    walk = list_for_each_entry(mem, head, node_off, limit=LIST_CAP)
    return list(walk), walk.truncated


def _task(s: Sampler, va: int, cpu: int | None = None,
          waiting_ms: Callable[[int], int | None] | None = None) -> TaskEnrichment | None:
    """One task's enrichment; `waiting_ms(va)` gives runnable_for_ms for a task on a
    runnable list (None elsewhere: a running task's runnable_at is stale)."""
    mem, L, x = s.mem, s.L, offsets(s)
    t = s._task(va)
    if is_bad(t) or not 0 <= t[0] <= MAX_PID:
        return None
    pid, comm, cls = t
    kw: dict[str, Any] = {"pid": pid, "comm": comm,
                          "sched_class": _CLASS_NAMES.get(cls, cls), "kva": va}
    tgid = _int(mem, va + L.task_tgid, 4, True)
    kw["tgid"] = tgid if tgid is not None else 0
    for key, off, size, signed in (("prio", x["task_prio"], 4, True),
                                   ("scx_weight", x["task_weight"], 4, False),
                                   ("nvcsw", x["task_nvcsw"], 8, False),
                                   ("nivcsw", x["task_nivcsw"], 8, False),
                                   ("cpu", x["task_cpu"], 4, False)):
        if off is not None:
            v = _int(mem, va + off, size, signed)
            if v is not None:
                kw[key] = v
    if cpu is not None and "cpu" not in kw:
        kw["cpu"] = cpu
    if waiting_ms is not None:
        ms = waiting_ms(va)
        if ms is not None:
            kw["runnable_for_ms"] = ms
    for key, off in (("real_parent", x["task_real_parent"]),
                     ("group_leader", x["task_group_leader"])):
        p = _int(mem, va + off, 8) if off is not None else None
        if p:
            pt = s._task(p)
            if not is_bad(pt):
                kw[f"{key}_pid"] = pt[0]
                if key == "real_parent":
                    kw["real_parent_comm"] = pt[1]
    return TaskEnrichment(**kw)


def _waiting(s: Sampler, hz: int | None) -> Callable[[int], int | None] | None:
    """jiffies - p->scx.runnable_at in ms, as the kernel's watchdog and dump count it
    (runnable_at is set when a task is put on its run queue's runnable list and reset
    when it runs). None without the kernel's HZ, jiffies or the member."""
    off, sym = offsets(s).get("task_runnable_at"), s.L.sym.get("jiffies")
    now = _int(s.mem, sym, 8) if sym is not None else None
    if not hz or hz <= 0 or off is None or now is None:
        return None

    def waiting_ms(va: int) -> int | None:
        at = _int(s.mem, va + off, 8)
        if at is None:
            return None
        delta = (now - at) & (2**64 - 1)
        return None if delta >= 2**63 else delta * 1000 // hz  # "after now": not waiting
    return waiting_ms


def _rq(s: Sampler, cpu: int, tasks: dict[int, TaskEnrichment],
        waiting_ms: Callable[[int], int | None] | None = None) -> tuple[RqScxState, DsqState]:
    mem, L, x = s.mem, s.L, offsets(s)
    rq = s.rq_addrs[cpu]
    c = s.read_cpu(cpu)
    runnable, trunc = _list_entries(mem, rq + x["rq_runnable_list"], x["task_runnable_node"]) \
        if x["rq_runnable_list"] is not None else ([], False)
    kw: dict[str, Any] = {"cpu": cpu, "runnable_task_kvas": tuple(runnable),
                          "runnable_truncated": trunc}
    if "error" not in c:
        kw.update(nr_running=c["scx_nr_running"], flags=c["scx_flags"], rq_clock=c["clock_ns"],
                  rq_nr_running=c["nr_running"], local_dsq_depth=c["local_dsq_nr"],
                  curr_pid=c.get("curr_pid"), curr_comm=c.get("curr_comm"),
                  curr_class=_CLASS_NAMES.get(c.get("curr_class"), c.get("curr_class")))
    for key, off, size in (("cpu_released", x["rq_cpu_released"], 1),
                           ("ops_qseq", x["rq_ops_qseq"], 8), ("kick_sync", x["rq_kick_sync"], 8),
                           ("nr_immed", x["rq_nr_immed"], 4)):
        if off is not None:
            v = _int(mem, rq + off, size)
            if v is not None:
                kw[key] = bool(v) if key == "cpu_released" else v
    curr = _int(mem, rq + L.rq_curr, 8)
    for va in ([curr] if curr else []) + runnable:
        if va not in tasks:
            t = _task(s, va, cpu, waiting_ms if va != curr else None)
            if t is not None:
                tasks[va] = t
    origin = f"local cpu {cpu}"
    d = (_dsq(s, rq + x["rq_local_dsq"], origin) if x["rq_local_dsq"] is not None else None) \
        or DsqState(id=0, origin=origin, nr=c.get("local_dsq_nr", 0))
    return RqScxState(**kw), d


def _dsq(s: Sampler, dsq: int, origin: str) -> DsqState | None:
    """A `struct scx_dispatch_q` at `dsq`: id, nr, seq and the queued tasks (its list)."""
    x = offsets(s)
    if None in (x.get("dsq_nr"), x.get("dsq_seq"), x.get("dsq_id"), x.get("dsq_list")):
        return None
    head = [_int(s.mem, dsq + x[k], n) for k, n in (("dsq_nr", 4), ("dsq_seq", 4),
                                                     ("dsq_id", 8))]
    if None in head:
        return None
    nr, seq, dsq_id = head
    queued, trunc = _list_entries(s.mem, dsq + x["dsq_list"], x["task_dsq_node"])
    return DsqState(id=dsq_id, origin=origin, nr=nr, seq=seq, task_kvas=tuple(queued),
                    truncated=trunc)


def _shared_dsqs(s: Sampler, sch: int) -> list[DsqState]:
    """The attached scheduler's queues besides the local ones: bypass, global, user."""
    return _bypass_dsqs(s, sch) + _global_dsqs(s, sch) + _user_dsqs(s, sch)


def _bypass_dsqs(s: Sampler, sch: int) -> list[DsqState]:
    """`sch->pcpu->bypass_dsq` of each CPU that holds tasks (the disable path re-queues
    every runnable task there)."""
    x = offsets(s)
    if None in (s.L.sch_pcpu, x.get("pcpu_bypass_dsq")):
        return []
    pcpu = _int(s.mem, sch + s.L.sch_pcpu, 8)
    out = []
    for cpu in range(s.ncpus) if pcpu else ():
        d = _dsq(s, per_cpu_ptr(pcpu + x["pcpu_bypass_dsq"], cpu, s.per_cpu_offsets),
                 f"bypass cpu {cpu}")
        if d is not None and (d.nr or d.task_kvas):  # idle bypass queues say nothing
            out.append(d)
    return out


def _global_dsqs(s: Sampler, sch: int) -> list[DsqState]:
    """`sch->pnode[n]->global_dsq` for each of the kernel's `nr_node_ids` nodes."""
    x = offsets(s)
    if None in (x.get("sch_pnode"), x.get("pnode_global_dsq")):
        return []
    pnode = _int(s.mem, sch + x["sch_pnode"], 8)
    nodes = _int(s.mem, s.L.sym["nr_node_ids"], 4) if "nr_node_ids" in s.L.sym else 1
    out = []
    for n in range(min(nodes or 1, 64)) if pnode else ():
        node = _int(s.mem, pnode + 8 * n, 8)
        d = _dsq(s, node + x["pnode_global_dsq"], f"global node {n}") if node else None
        if d is not None:
            out.append(d)
    return out


def _user_dsqs(s: Sampler, sch: int) -> list[DsqState]:
    """The DSQs the scheduler created, from the `sch->dsq_hash` rhashtable, bucket by bucket
    (a nested (huge) table is not walked); a DSQ that cannot be read ends its bucket."""
    x = offsets(s)
    keys = ("sch_dsq_hash", "dsq_hash_node", "rht_tbl", "tbl_size", "tbl_nest", "tbl_buckets")
    if any(x.get(k) is None for k in keys):
        return []
    layout = RhtLayout(tbl=x["rht_tbl"], size=x["tbl_size"], nest=x["tbl_nest"],
                       buckets=x["tbl_buckets"])
    out: list[DsqState] = []
    for first in rht_buckets(s.mem, sch + x["sch_dsq_hash"], layout):
        for node in rht_for_each(s.mem, first):
            if len(out) >= LIST_CAP:
                return out
            d = _dsq(s, node - x["dsq_hash_node"], "user")
            if d is None:
                break
            out.append(d)
    return out


def _current_sch(s: Sampler) -> int:
    """*scx_root, or the last scx_sched the monitor saw (freed at disable, but its memory
    usually still holds the exit and the queues)."""
    root = s.L.sym.get("scx_root")
    sch = _int(s.mem, root, 8) if root is not None else None
    return sch or s.last_sch


def _sched(s: Sampler, sch: int) -> ScxSchedState | None:
    mem, L, x = s.mem, s.L, offsets(s)
    if not sch:
        return None
    kind = real_exit_kind(mem, L, sch) if L.sch_exit_kind is not None else None
    if kind is None or kind > 0xFFFF:
        return None
    kw: dict[str, Any] = {"exit_kind": kind}
    if L.sch_aborting is not None:
        kw["aborting"] = bool(_int(mem, sch + L.sch_aborting, 1))
    if L.sch_bypass_depth is not None:
        kw["bypass_depth"] = _int(mem, sch + L.sch_bypass_depth, 4, True) or 0
    if L.sch_watchdog_timeout is not None:
        kw["watchdog_timeout"] = _int(mem, sch + L.sch_watchdog_timeout, 8)
    ei = _int(mem, sch + L.sch_exit_info, 8) if L.sch_exit_info is not None else None
    if ei:
        for key, off in (("exit_reason", x["ei_reason"]), ("exit_msg", x["ei_msg"])):
            p = _int(mem, ei + off, 8) if off is not None else None
            if p:
                text = mem.cstr(p, 1024)
                if not is_bad(text) and text:
                    kw[key] = text
    return ScxSchedState(**kw)


def _timeline(samples: list[dict]) -> tuple[EventCounterSample, ...]:
    out = []
    for smp in samples:
        ev = (smp.get("scx") or {}).get("events")
        if not isinstance(ev, dict):
            continue
        kw = {k: v for k, v in ev.items() if k in _EV_FIELDS and isinstance(v, int)}
        if "reenq_repeat" in ev and "reenq_local_repeat" not in kw:
            kw["reenq_local_repeat"] = ev["reenq_repeat"]
        out.append(EventCounterSample(elapsed_ms=int(float(smp.get("t", 0)) * 1000), **kw))
    return tuple(out)


def capture(s: Sampler, samples: list[dict], hz: int | None = None) -> FailureDump:
    """`hz`: the kernel's CONFIG_HZ (from its config); without it runnable_for_ms is left
    out."""
    tasks: dict[int, TaskEnrichment] = {}
    rqs, dsqs = [], []
    waiting_ms = _waiting(s, hz)
    for cpu in range(s.ncpus):
        r, d = _rq(s, cpu, tasks, waiting_ms)
        rqs.append(r)
        dsqs.append(d)
    sch = _current_sch(s)
    sched = _sched(s, sch)
    if sch:
        for d in _shared_dsqs(s, sch):
            dsqs.append(d)
            for va in d.task_kvas:
                if va not in tasks:
                    t = _task(s, va, None, waiting_ms)
                    if t is not None:
                        tasks[va] = t
    maps = tuple(FailureDumpMap(**vars(m)) for m in
                 read_maps(s.mem, s.mem.btf, s.L.sym.get("map_idr"), s.per_cpu_offsets, s.ncpus))
    return FailureDump(
        maps=maps, active_obj_name=active_obj_name(maps), rq_scx_states=tuple(rqs),
        dsq_states=tuple(dsqs), scx_sched_state=sched,
        scx_walker_unavailable=None if sched is not None else REASON_SCX_ROOT_NULL,
        task_enrichments=tuple(tasks.values()),
        task_enrichments_unavailable=None if tasks else "no task could be read",
        event_counter_timeline=_timeline(samples),
        prog_runtime_stats_unavailable=REASON_PROG_ACCESSOR_UNAVAILABLE,
        per_node_numa_unavailable=REASON_NO_NUMA_WALKER, sdt_alloc_unavailable=REASON_NO_SDT)
