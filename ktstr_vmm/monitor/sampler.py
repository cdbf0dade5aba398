"""What the monitor reads from guest memory, laid out by the kernel's own BTF.

`Layout.build(btf, symbols)` resolves every offset and address once (BtfError / a missing
symbol makes the monitor unavailable, with the reason); `Sampler.sample()` reads one
sample: per CPU `rq.nr_running`, `rq.scx.nr_running`, `rq.scx.local_dsq.nr`, `rq.clock`,
`rq.scx.flags` and the current task (pid, comm, sched_class), plus `*scx_root` (exit kind,
per-CPU `scx_event_stats`) and the sched_ext enable state. Reads that fail are recorded in
the sample's `flags`; nothing raises.
"""

from __future__ import annotations

import functools
import operator
import struct
from dataclasses import dataclass, field
from typing import Any

from ..evaluate.thresholds import DSQ_PLAUSIBILITY_CEILING
from ..introspect.btf import Btf, BtfError
from ..introspect.memory import START_KERNEL_MAP, BadRead, GuestMemory, is_bad
from ..introspect.scx import EXIT_KINDS, SCX_EXIT_DONE, exit_kinds
from ..introspect.symbols import Symbols
from ..introspect.walkers import per_cpu_offsets, per_cpu_ptrs

REQUIRED_SYMBOLS = ("runqueues", "__per_cpu_offset", "page_offset_base")
OPTIONAL_SYMBOLS = ("scx_root", "scx_enable_state_var", "init_top_pgt", "phys_base",
                    "ext_sched_class", "fair_sched_class", "idle_sched_class",
                    "rt_sched_class", "dl_sched_class", "stop_sched_class", "jiffies",
                    "nr_cpu_ids", "map_idr", "nr_node_ids")
CLASS_SYMBOLS = {"ext_sched_class": "ext", "fair_sched_class": "fair",
                 "idle_sched_class": "idle", "rt_sched_class": "rt", "dl_sched_class": "dl",
                 "stop_sched_class": "stop"}
MAX_PID = 4 * 1024 * 1024
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
NR_RUNNING_CEILING = 100_000



def _add_rows(acc, row):
    return map(operator.add, acc, row)


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
    exit_kinds: dict[int, str] = field(default_factory=lambda: dict(EXIT_KINDS))  # the BTF's
    exit_done: int = SCX_EXIT_DONE  # the BTF's SCX_EXIT_DONE
    extra: dict[str, int | None] = field(default_factory=dict)  # the sampler's optional offsets

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
        try:
            kinds = exit_kinds(btf)
            kw["exit_kinds"] = kinds
            kw["exit_done"] = next(v for v, name in kinds.items() if name == "SCX_EXIT_DONE")
        except (BtfError, StopIteration):
            pass
        extra = {"ei_kind": _opt(btf, "scx_exit_info", "kind")}
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


def compile_fields(fields: list[tuple[str, int, str]]) -> tuple[struct.Struct, tuple[str, ...]]:
    """One Struct reading several members at once: (name, byte offset, format) sorted by
    offset, the gaps as pad bytes. Returns the Struct and the names in its order."""
    fmt, pos, names = "<", 0, []
    for name, off, f in sorted(fields, key=lambda x: x[1]):
        if off < pos:
            raise BtfError(f"member {name} at {off} overlaps the previous one")
        if off > pos:
            fmt += f"{off - pos}x"
        fmt += f
        pos = off + struct.calcsize("<" + f)
        names.append(name)
    return struct.Struct(fmt), tuple(names)


class Sampler:
    """Reads samples; `rq_addrs[cpu]` are the per-CPU run queue addresses.

    The hot path unpacks each run queue and each current task with one precompiled Struct
    (offsets from BTF) straight out of the RAM mapping; per-CPU event-stat locations are
    resolved once per `scx_sched.pcpu` value."""

    def __init__(self, mem: GuestMemory, layout: Layout, ncpus: int) -> None:
        L = layout
        self.capture_offsets: dict[str, int | None] | None = None  # capture.offsets()
        self.mem, self.L, self.ncpus = mem, layout, ncpus
        self._ev = struct.Struct(f"<{len(L.events)}q") if L.events else None
        self.per_cpu_offsets: list[int] = []
        self.rq_addrs: list[int] = []
        self._rq_loc: list[tuple[Any, int] | None] = []
        self.last_sch = 0
        self._rq_s, rq_names = compile_fields([
            ("nr_running", L.rq_nr_running, "I"), ("curr", L.rq_curr, "Q"),
            ("clock_ns", L.rq_clock, "Q"), ("scx_nr_running", L.scx_nr_running, "I"),
            ("local_dsq_nr", L.local_dsq_nr, "I"), ("scx_flags", L.scx_flags, "I")])
        self._rq_idx = [rq_names.index(n) for n in (
            "nr_running", "scx_nr_running", "local_dsq_nr", "clock_ns", "scx_flags", "curr")]
        self._task_s, t_names = compile_fields([
            ("pid", L.task_pid, "i"), ("sched_class", L.task_sched_class, "Q"),
            ("comm", L.task_comm, f"{L.task_comm_len}s")])
        self._task_idx = [t_names.index(n) for n in ("pid", "comm", "sched_class")]
        self._comm_cache: dict[bytes, str] = {}
        self._static: dict[tuple[int, int], tuple[Any, int] | None] = {}
        self._sch = 0  # the scx_sched whose locations below are resolved
        self._kind_loc: tuple[Any, int] | None = None
        self._pcpu: int | None = None
        self._ev_locs: list[tuple[Any, int] | None] = []

    def prepare(self) -> str | None:
        """Read __per_cpu_offset and locate each run queue; the reason when it fails."""
        offs = per_cpu_offsets(self.mem, self.L.sym["__per_cpu_offset"], self.ncpus)
        if is_bad(offs):
            return f"cannot read __per_cpu_offset: {offs.reason}"
        self.per_cpu_offsets = offs
        self.rq_addrs = per_cpu_ptrs(self.L.sym["runqueues"], offs, self.ncpus)
        self._rq_loc = [self.mem.locate_kva(va, self._rq_s.size) for va in self.rq_addrs]
        if all(loc is None for loc in self._rq_loc):
            return "no CPU's run queue is in guest RAM (wrong symbols or page_offset_base?)"
        return None

    def _comm(self, raw: bytes) -> str:
        c = self._comm_cache.get(raw)
        if c is None:
            c = raw.split(b"\0", 1)[0].decode("utf-8", "replace")
            if len(self._comm_cache) < 4096:
                self._comm_cache[raw] = c
        return c

    def _task(self, va: int) -> tuple[int, str, str] | BadRead:
        loc = self.mem.locate_kva(va, self._task_s.size)
        if loc is None:
            return BadRead(va, f"task {va:#x} is not in guest RAM")
        v = self._task_s.unpack_from(*loc)
        ip, ic, ik = self._task_idx
        cls = v[ik]
        return v[ip], self._comm(v[ic]), self.L.classes.get(cls, "other" if cls else "none")

    def read_cpu(self, cpu: int) -> dict[str, Any]:
        loc = self._rq_loc[cpu]
        if loc is None:
            return {"cpu": cpu, "error": "run queue is not in guest RAM"}
        v = self._rq_s.unpack_from(*loc)
        a, b, c, d, e, f = self._rq_idx
        out: dict[str, Any] = {"cpu": cpu, "nr_running": v[a], "scx_nr_running": v[b],
                               "local_dsq_nr": v[c], "clock_ns": v[d], "scx_flags": v[e]}
        curr = v[f]
        t = self._task(curr) if curr else BadRead(0, "rq->curr is NULL")
        if t.__class__ is BadRead:
            out["error"] = f"curr: {t.reason}"
        else:
            out["curr_pid"], out["curr_comm"], out["curr_class"] = t
        return out

    def _u(self, fmt: struct.Struct, va: int | None) -> int | None:
        """One integer at `va` via the fast locator; None when it cannot be read."""
        if va is None:
            return None
        if va >= START_KERNEL_MAP:  # kernel image: the location never changes
            key = (va, fmt.size)
            loc = self._static.get(key)
            if loc is None:
                loc = self._static[key] = self.mem.locate_kva(va, fmt.size)
        else:
            loc = self.mem.locate_kva(va, fmt.size)
        return None if loc is None else fmt.unpack_from(*loc)[0]

    def _sch_locs(self, sch: int) -> tuple[Any, int] | None:
        """Where `sch->exit_kind` is, resolved once per scheduler instance (a slab object
        in the direct map: its location never changes while it lives), and the per-CPU
        event-stat locations under its `pcpu` pointer (set at enable, never changed)."""
        if sch != self._sch:
            L, mem = self.L, self.mem
            self._sch = sch
            self._kind_loc = (mem.locate_kva(sch + L.sch_exit_kind, 4)
                              if L.sch_exit_kind is not None else None)
            self._pcpu = (self._u(_U64, sch + L.sch_pcpu)
                          if self._ev is not None and L.sch_pcpu is not None else None)
            if self._pcpu:
                self._ev_locs = [
                    mem.locate_kva(va, self._ev.size)
                    for va in per_cpu_ptrs(self._pcpu + L.ev_offset, self.per_cpu_offsets,
                                           self.ncpus)]
        return self._kind_loc

    def _events(self, flags: list[str]) -> dict[str, int]:
        ev, rows = self._ev, []
        for c, loc in enumerate(self._ev_locs):
            if loc is None:
                flags.append(f"read_error events cpu{c}")
            else:
                rows.append(ev.unpack_from(*loc))
        if not rows:
            return {}
        # Column sums. Few CPUs: chained lazy element-wise adds (twice as fast as summing
        # zip(*rows)); many: the chain gets deep and zip(*rows) wins.
        sums = functools.reduce(_add_rows, rows) if len(rows) <= 8 else map(sum, zip(*rows, strict=True))
        return dict(zip(self.L.events, sums, strict=True))

    def scx(self) -> tuple[dict[str, Any], list[str]]:
        """The scx block of a sample: state, exit_kind, summed events; and flags."""
        L = self.L
        flags: list[str] = []
        out: dict[str, Any] = {}
        st = L.sym.get("scx_enable_state_var")
        if st is not None:
            v = self._u(_U32, st)
            out["state"] = None if v is None else L.enable_states.get(v, str(v))
        root = L.sym.get("scx_root")
        sch = self._u(_U64, root) if root is not None else 0
        if sch is None:
            flags.append("read_error scx_root")
            sch = 0
        out["root"] = sch
        if "state" not in out:
            out["state"] = "enabled" if sch else "disabled"
        if not sch:
            out["exit_kind"] = None
            self._sch = 0  # a scheduler loaded later may reuse the address
            return out, flags
        self.last_sch = sch
        kind_loc = self._sch_locs(sch)
        if L.sch_exit_kind is not None:
            k = _U32.unpack_from(*kind_loc)[0] if kind_loc is not None else None
            if k == L.exit_done:  # late poll: the real kind is in exit_info
                k = real_exit_kind(self.mem, L, sch)
            out["exit_kind"] = k
            if k is None:
                flags.append(f"read_error exit_kind of scx_sched {sch:#x}")
        if self._ev is not None and L.sch_pcpu is not None:
            if not self._pcpu:
                flags.append("read_error scx_sched.pcpu")
            else:
                events = self._events(flags)
                if events:
                    out["events"] = events
        return out, flags

    def read_cpus(self) -> list[dict[str, Any]]:
        """Every CPU in one tight loop: run queue and current task unpacked straight from
        the RAM mapping (the direct map's fast window), slow path only when needed."""
        mem, rq_s, task_s = self.mem, self._rq_s, self._task_s
        a, b, c, d, e, f = self._rq_idx
        ip, ic, ik = self._task_idx
        tsize = task_s.size
        classes, comm_cache = self.L.classes, self._comm_cache
        pob = mem.page_offset_base or 0
        wlo, whi, wbuf, wgpa = mem.fast_window()
        lo, hi = pob + wlo, pob + whi - tsize
        out = []
        for cpu, loc in enumerate(self._rq_loc):
            if loc is None:
                out.append({"cpu": cpu, "error": "run queue is not in guest RAM"})
                continue
            v = rq_s.unpack_from(*loc)
            row = {"cpu": cpu, "nr_running": v[a], "scx_nr_running": v[b],
                   "local_dsq_nr": v[c], "clock_ns": v[d], "scx_flags": v[e]}
            curr = v[f]
            if lo <= curr <= hi:
                t = task_s.unpack_from(wbuf, curr - pob - wgpa)
            else:
                tl = mem.locate_kva(curr, tsize) if curr else None
                if tl is None:
                    row["error"] = f"curr: task {curr:#x} is not in guest RAM"
                    out.append(row)
                    continue
                t = task_s.unpack_from(*tl)
            comm = comm_cache.get(t[ic])
            if comm is None:
                comm = self._comm(t[ic])
            cls = t[ik]
            row["curr_pid"], row["curr_comm"] = t[ip], comm
            row["curr_class"] = classes.get(cls) or ("other" if cls else "none")
            out.append(row)
        return out

    def sample(self, t: float) -> dict[str, Any]:
        cpus = self.read_cpus()
        scx, flags = self.scx()
        for c in cpus:
            if "error" in c:
                flags.append(f"read_error cpu{c['cpu']}: {c['error']}")
            elif (c["local_dsq_nr"] > DSQ_PLAUSIBILITY_CEILING
                  or c["nr_running"] > NR_RUNNING_CEILING
                  or not 0 <= c["curr_pid"] <= MAX_PID):
                flags.append(f"implausible cpu{c['cpu']}")
        return {"t": round(t, 4), "cpus": cpus, "scx": scx, "flags": flags}


def exit_info_written(mem: Any, L: Any, sch: int) -> bool:
    """Has the kernel finished writing scx_sched->exit_info? scx_vexit() sets exit_kind first
    (the cmpxchg the monitor fires on), then formats ei->msg and only then stores ei->kind
    and ei->reason - a freeze in between reads an empty message. True when ei->kind is set,
    or when this kernel/layout cannot tell (nothing to wait for)."""
    ei_kind = L.extra.get("ei_kind")
    if L.sch_exit_info is None or ei_kind is None or not sch:
        return True
    ei = mem.u64(sch + L.sch_exit_info)
    if is_bad(ei) or not ei:
        return True
    k = mem.u32(ei + ei_kind)
    return is_bad(k) or bool(k)


def real_exit_kind(mem: Any, L: Any, sch: int) -> int | None:
    """scx_sched->exit_kind, or the exit_info's kind once the kernel's disable work has
    swapped exit_kind to SCX_EXIT_DONE (1) - a poll that comes late would otherwise see
    DONE for what was an scx_bpf_error (1025) or a stall (1026)."""
    k = mem.u32(sch + L.sch_exit_kind)
    if is_bad(k):
        return None
    ei_kind = L.extra.get("ei_kind")
    if k == L.exit_done and L.sch_exit_info is not None and ei_kind is not None:
        ei = mem.u64(sch + L.sch_exit_info)
        if not is_bad(ei) and ei:
            real = mem.u32(ei + ei_kind)
            if not is_bad(real) and real:
                return real
    return k


