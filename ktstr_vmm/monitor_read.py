"""What the monitor reads from guest memory, laid out by the kernel's own BTF.

`Layout.build(btf, symbols)` resolves every offset and address once (BtfError / a missing
symbol makes the monitor unavailable, with the reason); `Sampler.sample()` reads one
sample: per CPU `rq.nr_running`, `rq.scx.nr_running`, `rq.scx.local_dsq.nr`, `rq.clock`,
`rq.scx.flags` and the current task (pid, comm, sched_class), plus `*scx_root` (exit kind,
per-CPU `scx_event_stats`) and the sched_ext enable state. Reads that fail are recorded in
the sample's `flags`; nothing raises.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from .btf import Btf, BtfError
from .guestmem import START_KERNEL_MAP, BadRead, GuestMemory, is_bad
from .symbols import Symbols

REQUIRED_SYMBOLS = ("runqueues", "__per_cpu_offset", "page_offset_base")
OPTIONAL_SYMBOLS = ("scx_root", "scx_enable_state_var", "init_top_pgt", "phys_base",
                    "ext_sched_class", "fair_sched_class", "idle_sched_class",
                    "rt_sched_class", "dl_sched_class", "stop_sched_class", "jiffies",
                    "nr_cpu_ids")
CLASS_SYMBOLS = {"ext_sched_class": "ext", "fair_sched_class": "fair",
                 "idle_sched_class": "idle", "rt_sched_class": "rt", "dl_sched_class": "dl",
                 "stop_sched_class": "stop"}
MAX_PID = 4 * 1024 * 1024
DSQ_PLAUSIBILITY_CEILING = 10_000  # the seed's: deeper means uninitialised memory
NR_RUNNING_CEILING = 100_000

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_I32 = struct.Struct("<i")


def _opt(btf: Btf, s: str, path: str) -> int | None:
    try:
        return btf.member(s, path).offset
    except BtfError:
        return None


@dataclass(frozen=True)
class Layout:
    """Offsets (bytes) and symbol addresses the sampler needs."""

    rq_nr_running: int
    rq_curr: int
    rq_clock: int
    scx_nr_running: int
    local_dsq_nr: int
    scx_flags: int
    task_pid: int
    task_tgid: int
    task_comm: int
    task_comm_len: int
    task_sched_class: int
    sym: dict[str, int]
    classes: dict[int, str]
    events: tuple[str, ...] = ()  # scx_event_stats members, lowercased without SCX_EV_
    ev_offset: int | None = None  # scx_sched_pcpu.event_stats
    sch_pcpu: int | None = None
    sch_exit_kind: int | None = None
    sch_exit_info: int | None = None
    sch_aborting: int | None = None
    sch_bypass_depth: int | None = None
    sch_watchdog_timeout: int | None = None
    enable_states: dict[int, str] = field(default_factory=dict)
    extra: dict[str, int | None] = field(default_factory=dict)  # capture-only offsets

    @classmethod
    def build(cls, btf: Btf, symbols: Symbols) -> Layout:
        """BtfError / KeyError (missing symbol, message = name) when the basics are absent."""
        missing = symbols.missing(REQUIRED_SYMBOLS)
        if missing:
            raise KeyError(", ".join(missing))
        m = btf.member
        sym = {n: symbols.get(n) for n in REQUIRED_SYMBOLS + OPTIONAL_SYMBOLS
               if symbols.get(n) is not None}
        classes = {symbols.get(s): name for s, name in CLASS_SYMBOLS.items()
                   if symbols.get(s) is not None}
        kw: dict[str, Any] = {}
        try:
            ev = btf.struct("scx_event_stats")
            kw["events"] = tuple(x.name.removeprefix("SCX_EV_").lower() for x in ev.members)
            kw["ev_offset"] = m("scx_sched_pcpu", "event_stats").offset
            kw["sch_pcpu"] = m("scx_sched", "pcpu").offset
        except BtfError:
            pass
        for key, path in (("sch_exit_kind", "exit_kind"), ("sch_exit_info", "exit_info"),
                          ("sch_aborting", "aborting"), ("sch_bypass_depth", "bypass_depth"),
                          ("sch_watchdog_timeout", "watchdog_timeout")):
            kw[key] = _opt(btf, "scx_sched", path)
        try:
            kw["enable_states"] = {v: k.removeprefix("SCX_").lower()
                                   for k, v in btf.enum("scx_enable_state").items()}
        except BtfError:
            pass
        extra = {
            "rq_cpu_released": _opt(btf, "rq", "scx.cpu_released"),
            "rq_runnable_list": _opt(btf, "rq", "scx.runnable_list"),
            "rq_ops_qseq": _opt(btf, "rq", "scx.ops_qseq"),
            "rq_kick_sync": _opt(btf, "rq", "scx.kick_sync"),
            "rq_nr_immed": _opt(btf, "rq", "scx.nr_immed"),
            "local_dsq_seq": _opt(btf, "rq", "scx.local_dsq.seq"),
            "local_dsq_id": _opt(btf, "rq", "scx.local_dsq.id"),
            "local_dsq_list": _opt(btf, "rq", "scx.local_dsq.list"),
            "task_runnable_node": _opt(btf, "task_struct", "scx.runnable_node"),
            "task_dsq_node": _opt(btf, "task_struct", "scx.dsq_list.node"),
            "task_runnable_at": _opt(btf, "task_struct", "scx.runnable_at"),
            "task_weight": _opt(btf, "task_struct", "scx.weight"),
            "task_prio": _opt(btf, "task_struct", "prio"),
            "task_nvcsw": _opt(btf, "task_struct", "nvcsw"),
            "task_nivcsw": _opt(btf, "task_struct", "nivcsw"),
            "task_real_parent": _opt(btf, "task_struct", "real_parent"),
            "task_group_leader": _opt(btf, "task_struct", "group_leader"),
            "task_cpu": _opt(btf, "task_struct", "thread_info.cpu"),
            "ei_kind": _opt(btf, "scx_exit_info", "kind"),
            "ei_reason": _opt(btf, "scx_exit_info", "reason"),
            "ei_msg": _opt(btf, "scx_exit_info", "msg"),
        }
        comm = m("task_struct", "comm")
        return cls(
            rq_nr_running=m("rq", "nr_running").offset, rq_curr=m("rq", "curr").offset,
            rq_clock=m("rq", "clock").offset, scx_nr_running=m("rq", "scx.nr_running").offset,
            local_dsq_nr=m("rq", "scx.local_dsq.nr").offset,
            scx_flags=m("rq", "scx.flags").offset, task_pid=m("task_struct", "pid").offset,
            task_tgid=m("task_struct", "tgid").offset, task_comm=comm.offset,
            task_comm_len=comm.size or 16,
            task_sched_class=m("task_struct", "sched_class").offset,
            sym=sym, classes=classes, extra=extra, **kw)


class Sampler:
    """Reads samples; `rq_addrs[cpu]` are the per-CPU run queue addresses."""

    def __init__(self, mem: GuestMemory, layout: Layout, ncpus: int) -> None:
        self.mem, self.L, self.ncpus = mem, layout, ncpus
        self._ev = struct.Struct(f"<{len(layout.events)}q") if layout.events else None
        self.per_cpu_offsets: list[int] = []
        self.rq_addrs: list[int] = []
        self._rq_loc: list[tuple[Any, int] | None] = []
        self.last_sch = 0

    def prepare(self) -> str | None:
        """Read __per_cpu_offset and locate each run queue; the reason when it fails."""
        offs = self.mem.per_cpu_offsets(self.L.sym["__per_cpu_offset"], self.ncpus)
        if is_bad(offs):
            return f"cannot read __per_cpu_offset: {offs.reason}"
        self.per_cpu_offsets = offs
        self.rq_addrs = [self.mem.per_cpu(self.L.sym["runqueues"], offs, c)
                         for c in range(self.ncpus)]
        self._rq_loc = []
        span = self.L.rq_clock + 8
        for va in self.rq_addrs:
            pa = self.mem.kva_to_pa(va)
            self._rq_loc.append(None if is_bad(pa) else self.mem._locate(pa, span))
        if all(loc is None for loc in self._rq_loc):
            return "no CPU's run queue is in guest RAM (wrong symbols or page_offset_base?)"
        return None

    def _task(self, va: int) -> tuple[int, str, str] | BadRead:
        L, mem = self.L, self.mem
        pa = mem.kva_to_pa(va)
        if is_bad(pa):
            return pa
        loc = mem._locate(pa, L.task_comm + L.task_comm_len)
        if loc is None:
            mem.errors += 1
            return BadRead(va, f"task {va:#x} is not in guest RAM")
        buf, o = loc
        pid = _I32.unpack_from(buf, o + L.task_pid)[0]
        comm = bytes(buf[o + L.task_comm:o + L.task_comm + L.task_comm_len])
        cls = _U64.unpack_from(buf, o + L.task_sched_class)[0]
        return pid, comm.split(b"\0", 1)[0].decode("utf-8", "replace"), \
            L.classes.get(cls, "other" if cls else "none")

    def read_cpu(self, cpu: int) -> dict[str, Any]:
        L = self.L
        loc = self._rq_loc[cpu]
        if loc is None:
            return {"cpu": cpu, "error": "run queue is not in guest RAM"}
        buf, o = loc
        nr = _U32.unpack_from(buf, o + L.rq_nr_running)[0]
        snr = _U32.unpack_from(buf, o + L.scx_nr_running)[0]
        dsq = _U32.unpack_from(buf, o + L.local_dsq_nr)[0]
        clock = _U64.unpack_from(buf, o + L.rq_clock)[0]
        flags = _U32.unpack_from(buf, o + L.scx_flags)[0]
        curr = _U64.unpack_from(buf, o + L.rq_curr)[0]
        out: dict[str, Any] = {"cpu": cpu, "nr_running": nr, "scx_nr_running": snr,
                               "local_dsq_nr": dsq, "clock_ns": clock, "scx_flags": flags}
        t = self._task(curr) if curr else BadRead(0, "rq->curr is NULL")
        if is_bad(t):
            out["error"] = f"curr: {t.reason}"
        else:
            pid, comm, cls = t
            out["curr_pid"], out["curr_comm"], out["curr_class"] = pid, comm, cls
        return out

    def scx(self) -> tuple[dict[str, Any], list[str]]:
        """The scx block of a sample: state, exit_kind, summed events; and flags."""
        L, mem = self.L, self.mem
        flags: list[str] = []
        out: dict[str, Any] = {}
        st = L.sym.get("scx_enable_state_var")
        if st is not None:
            v = mem.u32(st)
            out["state"] = L.enable_states.get(v, str(v)) if not is_bad(v) else None
        root = L.sym.get("scx_root")
        sch = mem.u64(root) if root is not None else 0
        if is_bad(sch):
            flags.append(f"read_error scx_root: {sch.reason}")
            sch = 0
        out["root"] = sch
        if "state" not in out:
            out["state"] = "enabled" if sch else "disabled"
        if not sch:
            out["exit_kind"] = None
            return out, flags
        self.last_sch = sch
        if L.sch_exit_kind is not None:
            k = mem.u32(sch + L.sch_exit_kind)
            out["exit_kind"] = None if is_bad(k) else k
            if is_bad(k):
                flags.append(f"read_error exit_kind: {k.reason}")
        if self._ev is not None and L.sch_pcpu is not None:
            pcpu = mem.u64(sch + L.sch_pcpu)
            if is_bad(pcpu) or not pcpu:
                flags.append("read_error scx_sched.pcpu")
            else:
                tot = [0] * len(L.events)
                for c in range(self.ncpus):
                    raw = mem.read(mem.per_cpu(pcpu + L.ev_offset, self.per_cpu_offsets, c),
                                   self._ev.size)
                    if is_bad(raw):
                        flags.append(f"read_error events cpu{c}: {raw.reason}")
                        continue
                    for i, v in enumerate(self._ev.unpack(raw)):
                        tot[i] += v
                out["events"] = dict(zip(L.events, tot, strict=True))
        return out, flags

    def sample(self, t: float) -> dict[str, Any]:
        cpus = [self.read_cpu(c) for c in range(self.ncpus)]
        scx, flags = self.scx()
        for c in cpus:
            if "error" in c:
                flags.append(f"read_error cpu{c['cpu']}: {c['error']}")
            elif (c["local_dsq_nr"] > DSQ_PLAUSIBILITY_CEILING
                  or c["nr_running"] > NR_RUNNING_CEILING
                  or not 0 <= c.get("curr_pid", 0) <= MAX_PID):
                flags.append(f"implausible cpu{c['cpu']}")
        return {"t": round(t, 4), "cpus": cpus, "scx": scx, "flags": flags}


def kernel_image_pa(va: int) -> int:
    return va - START_KERNEL_MAP
