"""Typed payloads of wire frames, parsed at the edge. Nothing from the guest is trusted:
`parse_payload(frame)` returns a frozen value or a PayloadError, and never raises.

Structured messages carry one JSON object (UTF-8); log messages carry UTF-8 text (bad
bytes replaced); Profraw / WprofTrace / RawPayloadOutput carry raw bytes. docs/wire.md
lists every field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..spec import Topology
from .wire import FLAG_STDERR, FLAG_TRUNCATED, Frame, MsgType

MAX_CPU = 4095
_MAX_ITEMS = 4096  # list lengths accepted from the guest (workers, ranges, symbols)


@dataclass(frozen=True)
class WorkerStats:
    group: int
    kind: str
    index: int
    pid: int
    cpu_ns: int
    wall_ns: int
    iterations: int
    migrations: int
    cpus: tuple[int, ...]
    max_gap_ns: int
    cgroup: str = ""  # as the worker read /proc/self/cgroup, e.g. "/cg0"


@dataclass(frozen=True)
class TestResult:
    """The guest's measurements of one test; evaluate/workstats.py summarises them."""

    __test__ = False  # not a pytest class

    scheduler: str  # guest path of the scheduler, "" for a baseline run
    duration_ms: int
    workers: tuple[WorkerStats, ...]
    notes: tuple[str, ...] = ()
    measures: tuple[GroupMeasure, ...] = ()  # the groups' own counters (evaluate/measures)

    @property
    def baseline(self) -> bool:
        return not self.scheduler


class _Bad(Exception):
    pass


@dataclass(frozen=True)
class PayloadError:
    """A frame whose payload did not parse; `reason` says why in one line."""

    type: MsgType
    reason: str


# --------------------------------------------------------------------------- text-ish


@dataclass(frozen=True)
class Text:
    """Stdout, Stderr, ProbeOutput, Crash: text (invalid UTF-8 replaced)."""

    type: MsgType
    text: str


@dataclass(frozen=True)
class SchedLogLine:
    stream: str  # "stdout" | "stderr"
    text: str


@dataclass(frozen=True)
class DmesgRecord:
    """One /dev/kmsg record: `PRI,SEQ,TS_US,FLAGS[,..];MESSAGE`."""

    level: int
    facility: int
    seq: int
    ts_us: int
    text: str

    def console_line(self) -> str:
        return f"[{self.ts_us // 1_000_000:5d}.{self.ts_us % 1_000_000:06d}] {self.text}"


@dataclass(frozen=True)
class Blob:
    """Profraw, WprofTrace, RawPayloadOutput: opaque bytes."""

    type: MsgType
    data: bytes


@dataclass(frozen=True)
class JsonMessage:
    """KernelOpRequest/Reply, PayloadMetrics, Stimulus: a JSON object kept as is."""

    type: MsgType
    data: dict[str, Any]


# --------------------------------------------------------------------------- structured


@dataclass(frozen=True)
class RamRange:
    start: int
    end: int  # inclusive, as /proc/iomem prints it


@dataclass(frozen=True)
class SysRdy:
    release: str
    online: tuple[int, ...]
    nodes: tuple[tuple[int, ...], ...]  # cpus of each NUMA node, by node id
    llcs: tuple[tuple[int, ...], ...]  # distinct L3 shared_cpu_lists
    siblings: tuple[tuple[int, ...], ...]  # distinct thread_siblings_lists
    ram: tuple[RamRange, ...]
    kallsyms: dict[str, int] = field(default_factory=dict)
    scx_state: str = ""
    uptime_ms: int = 0

    def observed_topology(self) -> Topology | None:
        """The topology in ktstr's terms, or None when it is not a regular shape
        (uneven LLCs, an LLC spanning nodes, offline CPUs...)."""
        cpus = set(self.online)
        if not cpus:
            return None
        nodes = [set(n) for n in self.nodes if n] or [cpus]
        llcs = [set(x) for x in self.llcs if x] or [set(n) for n in nodes]
        sibs = [set(s) for s in self.siblings if s] or [{c} for c in cpus]
        for groups in (nodes, llcs, sibs):
            if set().union(*groups) != cpus or sum(map(len, groups)) != len(cpus):
                return None
        threads = len(sibs[0])
        per_llc = len(llcs[0])
        if any(len(s) != threads for s in sibs) or any(len(x) != per_llc for x in llcs):
            return None
        if per_llc % threads or len(llcs) % len(nodes):
            return None
        if any(not any(x <= n for n in nodes) for x in llcs):
            return None
        if any(not any(s <= x for x in llcs) for s in sibs):
            return None
        return Topology(len(nodes), len(llcs), per_llc // threads, threads)

    def observed_notation(self) -> str:
        t = self.observed_topology()
        return t.notation if t else "irregular"


@dataclass(frozen=True)
class Lifecycle:
    """A step of the guest's run: sched_started, scx_enabled, sched_enable_timeout,
    baseline, workload_started, workload_done, sched_stopped."""

    phase: str
    t_ms: int
    pid: int | None = None
    ops: str = ""
    detail: str = ""


@dataclass(frozen=True)
class SchedExit:
    """The scheduler died or sched_ext left `enabled` while the workload ran."""

    reason: str  # "process_exited" | "scx_disabled"
    state: str  # /sys/kernel/sched_ext/state at that moment
    code: int | None  # the scheduler's exit status, if it exited
    signal: int | None  # the signal that killed it, if one did
    kmsg: str  # last kernel `sched_ext:` line seen
    t_ms: int


@dataclass(frozen=True)
class ExecExit:
    """The scheduler process has been reaped."""

    pid: int
    code: int | None
    signal: int | None
    how: str  # "exited" (on its own), "sigint", "sigkill"
    t_ms: int


@dataclass(frozen=True)
class Exit:
    code: int
    reason: str


@dataclass(frozen=True)
class SnapshotRequest:
    id: int
    kind: str = "dump"


@dataclass(frozen=True)
class SnapshotReply:
    id: int
    ok: bool
    dump: str
    error: str = ""
    truncated: bool = False


@dataclass(frozen=True)
class Scenario:
    """ScenarioStart / End / Pause / Resume."""

    type: MsgType
    name: str
    t_ms: int


@dataclass(frozen=True)
class BpfProg:
    """One loaded BPF program as the guest's BPF_OBJ_GET_INFO_BY_FD saw it."""

    id: int
    name: str
    type: int
    verified_insns: int
    xlated_len: int
    jited_len: int


@dataclass(frozen=True)
class BpfProgs:
    """Every BPF program the guest kernel held at `when` (scx_enabled)."""

    when: str
    t_ms: int
    progs: tuple[BpfProg, ...]
    more: int = 0
    error: str = ""


@dataclass(frozen=True)
class GroupMeasure:
    """A family group's counters as the guest summed them (TestResult groups[]; evaluate/measures names them)."""

    index: int
    kind: str
    workers: int
    iterations: int
    ops: int
    bytes: int
    wall_ns: int
    lat_n: int = 0
    lat_avg_ns: int = 0
    lat_p99_ns: int = 0
    lat_max_ns: int = 0
    attr_errors: int = 0


@dataclass(frozen=True)
class BenchOutput:
    """One benchmark program's run (BenchOutput message, type 40)."""

    group: int
    name: str
    exit: int          # exit code, 128+signal, -1 never ran
    wall_ns: int
    output: str        # stdout + stderr
    file: str = ""     # the output file it wrote (cyclictest json, stress-ng yaml)



Payload = (PayloadError | Text | SchedLogLine | DmesgRecord | Blob | JsonMessage | SysRdy
           | Lifecycle | SchedExit | ExecExit | TestResult | Exit | SnapshotRequest
           | SnapshotReply | Scenario | BpfProgs | BenchOutput)


# --------------------------------------------------------------------------- field readers


def _get(d: dict, key: str, kind: type | tuple[type, ...], default: Any = _Bad) -> Any:
    if key not in d or d[key] is None:
        if default is _Bad:
            raise _Bad(f"missing field '{key}'")
        return default
    v = d[key]
    if kind is int and (isinstance(v, bool) or not isinstance(v, int)):
        raise _Bad(f"field '{key}' is not an integer")
    if not isinstance(v, kind):
        raise _Bad(f"field '{key}' is not {getattr(kind, '__name__', kind)}")
    return v


def _int(d: dict, key: str, default: Any = _Bad, lo: int = 0, hi: int = (1 << 64) - 1) -> Any:
    v = _get(d, key, int, default)
    if v is not None and v is not default and not lo <= v <= hi:
        raise _Bad(f"field '{key}' = {v} is out of range")
    return v


def _str(d: dict, key: str, default: Any = _Bad, limit: int = 1 << 20) -> str:
    v = _get(d, key, str, default)
    return v[:limit] if isinstance(v, str) else v


def _list(d: dict, key: str, default: Any = _Bad) -> list:
    v = _get(d, key, list, default)
    if v is not None and len(v) > _MAX_ITEMS:
        raise _Bad(f"field '{key}' has {len(v)} items, over {_MAX_ITEMS}")
    return v


def parse_cpulist(text: str) -> tuple[int, ...]:
    """'0-3,8,10-11' -> (0, 1, 2, 3, 8, 10, 11); raises _Bad on anything else."""
    if not isinstance(text, str):
        raise _Bad("cpu list is not a string")
    cpus: set[int] = set()
    text = text.strip()
    if not text:
        return ()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()) or len(lo) > 5 or len(hi) > 5:
            raise _Bad(f"bad cpu list '{text[:40]}'")
        a, b = int(lo), int(hi or lo)
        if a > b or b > MAX_CPU:
            raise _Bad(f"bad cpu range '{part}'")
        cpus.update(range(a, b + 1))
    return tuple(sorted(cpus))


def _cpulists(d: dict, key: str) -> tuple[tuple[int, ...], ...]:
    return tuple(parse_cpulist(x) for x in _list(d, key, []))


def _hex(text: Any, what: str) -> int:
    if not isinstance(text, str) or not 0 < len(text) <= 16:
        raise _Bad(f"bad {what}")
    try:
        return int(text, 16)
    except ValueError:
        raise _Bad(f"bad {what} '{text}'") from None


# --------------------------------------------------------------------------- parsers


def _sysrdy(d: dict) -> SysRdy:
    ram = []
    for r in _list(d, "ram", []):
        if not isinstance(r, list) or len(r) != 2:
            raise _Bad("bad ram range")
        a, b = _hex(r[0], "ram address"), _hex(r[1], "ram address")
        if a > b:
            raise _Bad("bad ram range")
        ram.append(RamRange(a, b))
    syms = _get(d, "kallsyms", dict, {})
    if len(syms) > _MAX_ITEMS:
        raise _Bad("too many kallsyms")
    kallsyms = {str(k)[:200]: _hex(v, f"address of {k}") for k, v in syms.items()}
    nodes = _get(d, "nodes", dict, {})
    node_ids = []
    for k in nodes:
        if not isinstance(k, str) or not k.isdigit() or int(k) > MAX_CPU:
            raise _Bad(f"bad node id '{str(k)[:20]}'")
        node_ids.append(int(k))
    return SysRdy(
        release=_str(d, "release", "", 200),
        online=parse_cpulist(_str(d, "online")),
        nodes=tuple(parse_cpulist(nodes[str(k)]) for k in sorted(node_ids)),
        llcs=_cpulists(d, "llcs"),
        siblings=_cpulists(d, "siblings"),
        ram=tuple(ram),
        kallsyms=kallsyms,
        scx_state=_str(d, "scx_state", "", 40),
        uptime_ms=_int(d, "uptime_ms", 0),
    )


def _status(d: dict) -> tuple[int | None, int | None]:
    return _int(d, "code", None, 0, 255), _int(d, "signal", None, 0, 64)


def _worker(w: Any) -> WorkerStats:
    if not isinstance(w, dict):
        raise _Bad("worker record is not an object")
    cpus = tuple(sorted({_int({"cpu": c}, "cpu", hi=MAX_CPU) for c in _list(w, "cpus", [])}))
    return WorkerStats(
        group=_int(w, "group", hi=1023), kind=_str(w, "kind", limit=20),
        index=_int(w, "index", hi=1 << 20), pid=_int(w, "pid", 0, hi=1 << 31),
        cpu_ns=_int(w, "cpu_ns"), wall_ns=_int(w, "wall_ns"),
        iterations=_int(w, "iterations"), migrations=_int(w, "migrations"),
        cpus=cpus, max_gap_ns=_int(w, "max_gap_ns"), cgroup=_str(w, "cgroup", "", 200))


def _measure(g: Any) -> GroupMeasure | None:
    """A group's counters; None for a group record without them (an older agent)."""
    if not isinstance(g, dict) or "ops" not in g:
        return None
    return GroupMeasure(
        index=_int(g, "group", hi=1023), kind=_str(g, "kind", limit=20),
        workers=_int(g, "workers", 0, hi=1 << 20), iterations=_int(g, "iterations", 0),
        ops=_int(g, "ops", 0), bytes=_int(g, "bytes", 0), wall_ns=_int(g, "wall_ns", 0),
        lat_n=_int(g, "lat_n", 0), lat_avg_ns=_int(g, "lat_avg_ns", 0),
        lat_p99_ns=_int(g, "lat_p99_ns", 0), lat_max_ns=_int(g, "lat_max_ns", 0),
        attr_errors=_int(g, "attr_errors", 0, hi=1 << 20))


def _testresult(d: dict) -> TestResult:
    notes = tuple(str(n)[:1000] for n in _list(d, "notes", []))
    measures = tuple(m for m in (_measure(g) for g in _list(d, "groups", [])) if m)
    return TestResult(
        scheduler=_str(d, "scheduler", "", 4096),
        duration_ms=_int(d, "duration_ms", 0),
        workers=tuple(_worker(w) for w in _list(d, "workers")),
        notes=notes, measures=measures)


def _bench(d: dict) -> BenchOutput:
    return BenchOutput(group=_int(d, "group", hi=1023), name=_str(d, "name", limit=40),
                       exit=_int(d, "exit", -1, lo=-1, hi=1 << 16), wall_ns=_int(d, "wall_ns", 0),
                       output=_str(d, "output", ""), file=_str(d, "file", ""))


def _bpfprog(p: Any) -> BpfProg:
    if not isinstance(p, dict):
        raise _Bad("a program is not a JSON object")
    return BpfProg(id=_int(p, "id", hi=(1 << 32) - 1), name=_str(p, "name", "", 64),
                   type=_int(p, "type", 0, hi=(1 << 32) - 1),
                   verified_insns=_int(p, "verified_insns", 0, hi=(1 << 32) - 1),
                   xlated_len=_int(p, "xlated_len", 0, hi=(1 << 32) - 1),
                   jited_len=_int(p, "jited_len", 0, hi=(1 << 32) - 1))


def _bpfprogs(d: dict) -> BpfProgs:
    return BpfProgs(when=_str(d, "when", "", 40), t_ms=_int(d, "t_ms", 0),
                    progs=tuple(_bpfprog(p) for p in _list(d, "progs", [])),
                    more=_int(d, "more", 0, hi=1 << 32), error=_str(d, "error", "", 200))


def _json(frame: Frame) -> dict:
    try:
        obj = json.loads(frame.payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise _Bad(f"payload is not JSON ({type(e).__name__})") from None
    if not isinstance(obj, dict):
        raise _Bad("payload is not a JSON object")
    return obj


def _text(frame: Frame) -> str:
    return frame.payload.decode("utf-8", "replace")


def _dmesg(raw: str) -> DmesgRecord:
    head, sep, msg = raw.partition(";")
    fields = head.split(",")
    if not sep or len(fields) < 3 or not all(f.isdigit() and len(f) < 20 for f in fields[:3]):
        return DmesgRecord(level=6, facility=0, seq=0, ts_us=0, text=raw.rstrip("\n"))
    pri, seq, ts = (int(f) for f in fields[:3])
    text = msg.split("\n", 1)[0]  # continuation lines (" KEY=VALUE") are dropped
    return DmesgRecord(level=pri & 7, facility=pri >> 3, seq=seq, ts_us=ts, text=text)


_SCENARIO = (MsgType.ScenarioStart, MsgType.ScenarioEnd, MsgType.ScenarioPause,
             MsgType.ScenarioResume)
_TEXT = (MsgType.Stdout, MsgType.Stderr, MsgType.ProbeOutput, MsgType.Crash)
_BLOB = (MsgType.Profraw, MsgType.WprofTrace, MsgType.RawPayloadOutput, MsgType.TracePages)
_OPAQUE_JSON = (MsgType.KernelOpRequest, MsgType.KernelOpReply, MsgType.PayloadMetrics,
                MsgType.Stimulus, MsgType.TraceFormats, MsgType.TraceStats)


def _parse(frame: Frame) -> Payload:
    t = frame.type
    if t in _TEXT:
        return Text(t, _text(frame))
    if t is MsgType.SchedLog:
        return SchedLogLine("stderr" if frame.flags & FLAG_STDERR else "stdout", _text(frame))
    if t is MsgType.Dmesg:
        return _dmesg(_text(frame))
    if t in _BLOB:
        return Blob(t, frame.payload)
    d = _json(frame)
    if t in _OPAQUE_JSON:
        return JsonMessage(t, d)
    if t in _SCENARIO:
        return Scenario(t, _str(d, "name", "", 200), _int(d, "t_ms", 0))
    if t is MsgType.SysRdy:
        return _sysrdy(d)
    if t is MsgType.Lifecycle:
        return Lifecycle(phase=_str(d, "phase", limit=40), t_ms=_int(d, "t_ms", 0),
                         pid=_int(d, "pid", None, hi=1 << 31), ops=_str(d, "ops", "", 200),
                         detail=_str(d, "detail", "", 4096))
    if t is MsgType.SchedExit:
        code, sig = _status(d)
        return SchedExit(reason=_str(d, "reason", limit=40), state=_str(d, "state", "", 40),
                         code=code, signal=sig, kmsg=_str(d, "kmsg", "", 4096),
                         t_ms=_int(d, "t_ms", 0))
    if t is MsgType.ExecExit:
        code, sig = _status(d)
        return ExecExit(pid=_int(d, "pid", 0, hi=1 << 31), code=code, signal=sig,
                        how=_str(d, "how", "", 20), t_ms=_int(d, "t_ms", 0))
    if t is MsgType.TestResult:
        return _testresult(d)
    if t is MsgType.BenchOutput:
        return _bench(d)
    if t is MsgType.Exit:
        return Exit(code=_int(d, "code", hi=255), reason=_str(d, "reason", "", 4096))
    if t is MsgType.SnapshotRequest:
        return SnapshotRequest(id=_int(d, "id", hi=(1 << 32) - 1), kind=_str(d, "kind", "dump", 40))
    if t is MsgType.SnapshotReply:
        return SnapshotReply(id=_int(d, "id", hi=(1 << 32) - 1), ok=bool(_get(d, "ok", bool)),
                             dump=_str(d, "dump", ""), error=_str(d, "error", "", 4096),
                             truncated=bool(frame.flags & FLAG_TRUNCATED)
                             or bool(_get(d, "truncated", bool, False)))
    if t is MsgType.BpfProgs:
        return _bpfprogs(d)
    raise _Bad(f"no parser for {t.name}")


def parse_payload(frame: Frame) -> Payload:
    """The typed value of `frame`'s payload, or a PayloadError saying why not. Never raises."""
    try:
        return _parse(frame)
    except _Bad as e:
        return PayloadError(frame.type, str(e))
    except (ValueError, TypeError, OverflowError, RecursionError) as e:  # belt and braces
        return PayloadError(frame.type, f"{type(e).__name__}: {e}"[:200])

