"""Auto-repro probes: which kernel functions to probe, the tracefs lines that arm them, and
the decoding of what they recorded.

A probe is a tracefs fprobe event with BTF-named arguments (`f:ktstr/NAME FUNC cpu=rq->cpu
pid=p->pid ...`), armed by the guest agent before the scheduler starts (a `probe=` line of
the guest spec, docs/wire.md). Members that BTF-argument syntax cannot reach (a task's
`comm`, a DSQ's `id`) are read through `+OFFSET($argN)` with offsets from the kernel's own
BTF. Lines starting with `>` are tracefs writes the agent performs in order: the buffer size,
the `sched_ext_exit` event and its `traceoff` trigger, which freezes the ring buffer at the
scheduler's exit so the buffer's tail is the lead-up to the failure. The agent returns the
trace text (its tail) as ProbeOutput frames.

`decode_trace(text, tables)` turns that text into ProbeHit values (time order, as tracefs
merges the per-CPU buffers); `render_hit` prints one with symbolic fields: DSQ ids
(`SCX_DSQ_LOCAL`, `SCX_DSQ_GLOBAL`, `SCX_DSQ_LOCAL_ON|3`), enqueue flag names, slices in
ms, exit kinds. The names come from the kernel's BTF (`DecodeTables.from_btf`); the
built-in defaults are the 7.3 kernel's values, for traces read without a kernel at hand.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..introspect.btf import FUNC, PTR, STRUCT, UNION, BtfError
from ..introspect.scx import exit_kind_name

GROUP = "ktstr"
MAX_BACKTRACE_FUNCS = 6
MAX_ARGS = 6

# The sched_ext enqueue -> dispatch -> exit path, probed whenever the kernel has it.
SCHED_EXT_PATH = (
    "enqueue_task_scx", "scx_dsq_insert_commit", "find_dsq_for_dispatch",
    "scx_dispatch_enqueue", "dispatch_to_local_dsq", "scx_bpf_error_bstr", "scx_exit_bstr",
    "__scx_exit",
)
# Frames of a backtrace that are plumbing, never the story (and some cannot be probed).
_SKIP_FRAMES = re.compile(r"^(bpf_prog_|bpf_trampoline_|ret_from_fork|asm_|entry_SYSCALL|"
                          r"do_syscall_64$|dump_stack|show_stack|__warn|warn_slowpath)")
# Hot generic frames: probing them floods the ring buffer and says nothing about the bug.
_HOT_FRAMES = frozenset({
    "kthread", "worker_thread", "process_one_work", "handle_softirqs", "__local_bh_enable_ip",
    "irq_exit_rcu", "__irq_exit_rcu", "do_softirq", "cpu_startup_entry", "do_idle",
    "schedule", "__schedule", "hrtimer_interrupt", "__sysvec_apic_timer_interrupt",
    "sysvec_apic_timer_interrupt", "__hrtimer_run_queues", "hrtimer_run_softirq",
    "run_ksoftirqd", "smpboot_thread_fn", "common_startup_64", "start_secondary",
})
_FRAME = re.compile(r"^(?:\[\s*\d+\.\d+\]\s+)?\s*(?:\?\s+)?([A-Za-z_][A-Za-z0-9_.]*)"
                    r"\+0x[0-9a-f]+/0x[0-9a-f]+")
_DISABLED = re.compile(r'sched_ext: BPF scheduler "[^"]*" disabled')

# enum scx_dsq_id_flags / scx_enq_flags of the 7.3 kernel (BTF replaces these when known).
DEFAULT_DSQ = {
    "SCX_DSQ_FLAG_BUILTIN": 1 << 63, "SCX_DSQ_FLAG_LOCAL_ON": 1 << 62,
    "SCX_DSQ_INVALID": 1 << 63, "SCX_DSQ_GLOBAL": (1 << 63) | 1, "SCX_DSQ_LOCAL": (1 << 63) | 2,
    "SCX_DSQ_BYPASS": (1 << 63) | 3, "SCX_DSQ_REJECT": (1 << 63) | 4,
    "SCX_DSQ_RESCUE": (1 << 63) | 5, "SCX_DSQ_LOCAL_ON": (1 << 63) | (1 << 62),
    "SCX_DSQ_LOCAL_CPU_MASK": 0xFFFFFFFF,
}
DEFAULT_ENQ = {
    "SCX_ENQ_WAKEUP": 0x1, "SCX_ENQ_HEAD": 0x10000, "SCX_ENQ_CPU_SELECTED": 0x100000,
    "SCX_ENQ_PREEMPT": 1 << 32, "SCX_ENQ_IMMED": 1 << 33, "SCX_ENQ_RESCUE": 1 << 34,
    "SCX_ENQ_REENQ": 1 << 40, "SCX_ENQ_LAST": 1 << 41, "SCX_ENQ_CLEAR_OPSS": 1 << 56,
    "SCX_ENQ_DSQ_PRIQ": 1 << 57, "SCX_ENQ_NESTED": 1 << 58, "SCX_ENQ_GDSQ_FALLBACK": 1 << 59,
    "SCX_ENQ_IGNORE_CAPS": 1 << 60, "SCX_ENQ_APPLY_SLICE": 1 << 61, "SCX_ENQ_SLICE_DFL": 1 << 62,
}
U64_MAX = (1 << 64) - 1


# --------------------------------------------------------------------------- probe set

@dataclass(frozen=True)
class Probe:
    function: str
    line: str     # the dynamic_events line (or a `>FILE VALUE` tracefs write)
    source: str   # "sched_ext" | "backtrace" | "tracefs"


@dataclass(frozen=True)
class ProbeSet:
    probes: tuple[Probe, ...]
    skipped: tuple[tuple[str, str], ...] = ()  # (function, why not probed)

    @property
    def lines(self) -> tuple[str, ...]:
        return tuple(p.line for p in self.probes)

    @property
    def functions(self) -> tuple[str, ...]:
        return tuple(p.function for p in self.probes if p.source != "tracefs")

    def to_json(self) -> dict[str, Any]:
        return {"probes": [p.__dict__ for p in self.probes],
                "skipped": [{"function": f, "why": w} for f, w in self.skipped]}


def backtrace_functions(console: str) -> list[str]:
    """Kernel functions of the backtrace the kernel printed with the scheduler's exit
    (`   scx_exit_bstr+0xdd/0x110` lines after `disabled (...)`), innermost first; only
    the first backtrace after the first disable line. Compiler clones (`.part.0`) and BPF
    programs are left out."""
    lines = console.splitlines()
    start = next((i for i, ln in enumerate(lines) if _DISABLED.search(ln)), None)
    if start is None:
        return []
    out: list[str] = []
    seen_frame = False
    for ln in lines[start + 1:start + 200]:
        m = _FRAME.match(ln)
        if not m:
            if seen_frame:
                break
            continue
        seen_frame = True
        name = m.group(1)
        if "." in name or _SKIP_FRAMES.match(name) or name in out:
            continue
        out.append(name)
    return out


def _fetchargs(btf: Any, func: str) -> list[str]:
    """`name=fetcharg` items for `func`'s parameters, from its BTF prototype."""

    proto = btf.type(btf.type(btf.find(func, FUNC)).type_id)
    args: list[str] = []
    used: set[str] = set()

    def add(name: str, fetch: str) -> None:
        base, n = name, 2
        while name in used:
            name, n = f"{base}{n}", n + 1
        used.add(name)
        args.append(f"{name}={fetch}")

    for i, (pname, tid) in enumerate(proto.params[:MAX_ARGS], start=1):
        if not pname:
            break  # varargs
        t = btf.type(btf.resolve(tid))
        if t.kind == PTR:
            target = btf.type(btf.resolve(t.type_id)) if t.type_id else None
            tname = target.name if target is not None and target.kind in (STRUCT, UNION) else ""
            if tname == "rq":
                add("cpu", f"{pname}->cpu")
            elif tname == "task_struct":
                comm = btf.member("task_struct", "comm").offset
                add("pid", f"{pname}->pid")
                add("comm", f"+{comm}($arg{i}):string")
            elif tname == "scx_dispatch_q":
                add("dsq_id", f"+{btf.member('scx_dispatch_q', 'id').offset}($arg{i}):u64")
            elif target is not None and target.kind == 1 and target.size == 1 and pname == "fmt":
                add("fmt", f"{pname}:string")
            continue
        if t.kind in (STRUCT, UNION):
            continue
        add("enq_flags" if pname == "core_enq_flags" else pname, pname)
    return args


def probe_line(btf: Any, func: str) -> str:
    return " ".join([f"f:{GROUP}/{func} {func}", *_fetchargs(btf, func)])


def build_probe_set(btf: Any, backtrace: Iterable[str], vcpus: int,
                    include_backtrace: bool = True) -> ProbeSet:
    """The probes for a repro VM: the sched_ext path plus the primary's backtrace functions
    that the kernel's BTF knows as functions (inlined ones have no FUNC record and cannot be
    probed); then the tracefs set-up that keeps the lead-up to the exit."""

    probes: list[Probe] = [Probe("", f">buffer_size_kb {max(32, 1024 // max(1, vcpus))}", "tracefs")]
    skipped: list[tuple[str, str]] = []
    wanted = [(f, "sched_ext") for f in SCHED_EXT_PATH]
    if include_backtrace:
        extra = []
        for f in backtrace:
            if f in SCHED_EXT_PATH:
                continue
            if f in _HOT_FRAMES:
                skipped.append((f, "hot generic frame"))
            elif len(extra) < MAX_BACKTRACE_FUNCS:
                extra.append(f)
        wanted += [(f, "backtrace") for f in extra]
    for func, source in wanted:
        try:
            btf.find(func, FUNC)
        except BtfError:
            if source == "backtrace":
                skipped.append((func, "not a function in the kernel's BTF (inlined?)"))
            continue
        try:
            probes.append(Probe(func, probe_line(btf, func), source))
        except BtfError as e:
            skipped.append((func, str(e)))
    probes += [Probe("", ">events/sched_ext/sched_ext_exit/enable 1", "tracefs"),
               Probe("", ">events/sched_ext/sched_ext_exit/trigger traceoff", "tracefs")]
    return ProbeSet(tuple(probes), tuple(skipped))


# --------------------------------------------------------------------------- decoding

@dataclass(frozen=True)
class DecodeTables:
    dsq: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_DSQ))
    enq: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_ENQ))

    @classmethod
    def from_btf(cls, btf: Any) -> DecodeTables:

        try:
            dsq = dict(btf.enum("scx_dsq_id_flags"))
        except BtfError:
            dsq = dict(DEFAULT_DSQ)
        try:
            enq = {k: v for k, v in btf.enum("scx_enq_flags").items() if not k.startswith("__")}
        except BtfError:
            enq = dict(DEFAULT_ENQ)
        return cls(dsq, enq)

    def to_json(self) -> dict[str, Any]:
        return {"dsq": self.dsq, "enq": self.enq}

    @classmethod
    def from_json(cls, d: Any) -> DecodeTables:
        try:
            return cls({str(k): int(v) for k, v in d["dsq"].items()},
                       {str(k): int(v) for k, v in d["enq"].items()})
        except (KeyError, TypeError, ValueError, AttributeError):
            return cls()

    def dsq_name(self, v: int) -> str:
        local_on = self.dsq.get("SCX_DSQ_LOCAL_ON", DEFAULT_DSQ["SCX_DSQ_LOCAL_ON"])
        builtin = self.dsq.get("SCX_DSQ_FLAG_BUILTIN", 1 << 63)
        if v & local_on == local_on:
            return f"SCX_DSQ_LOCAL_ON|{v & self.dsq.get('SCX_DSQ_LOCAL_CPU_MASK', 0xFFFFFFFF)}"
        if v & builtin:
            for name, value in self.dsq.items():
                if value == v and "FLAG" not in name and "MASK" not in name:
                    return name
            return f"SCX_DSQ_FLAG_BUILTIN|{v & ~builtin:#x}"
        return f"{v:#x}"

    def enq_names(self, v: int) -> str:
        if v == 0:
            return "0"
        names, rest = [], v
        for name, bit in sorted(self.enq.items(), key=lambda kv: kv[1]):
            if bit and bit & (bit - 1) == 0 and v & bit:
                names.append(name.removeprefix("SCX_ENQ_"))
                rest &= ~bit
        if rest:
            names.append(f"{rest:#x}")
        return "|".join(names)


@dataclass(frozen=True)
class ProbeHit:
    ts: float
    cpu: int
    task: str
    tpid: int
    event: str
    fields: tuple[tuple[str, str], ...]

    @property
    def is_exit(self) -> bool:
        return self.event == "sched_ext_exit"

    def get(self, key: str) -> str | None:
        return next((v for k, v in self.fields if k == key), None)


_LINE = re.compile(r"^\s*(?P<task>.+?)-(?P<tpid>\d+)\s+(?:\(\s*[\d-]+\)\s+)?\[(?P<cpu>\d+)\]\s+"
                   r"(?:\S{4,5}\s+)?(?P<ts>\d+\.\d+):\s+(?P<event>[\w.]+):\s?(?P<rest>.*)$")
_KV = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')
_IP = re.compile(r"^\([\w.]+\+0x[0-9a-f]+/0x[0-9a-f]+\)\s*")


def parse_trace_line(line: str) -> ProbeHit | None:
    """One line of tracefs `trace` output, or None for headers and anything else."""
    if line.startswith("#"):
        return None
    m = _LINE.match(line)
    if not m:
        return None
    rest = _IP.sub("", m.group("rest"))
    event = m.group("event")
    if event == "sched_ext_exit":
        words = rest.split()
        fields = tuple((words[i], words[i + 1]) for i in range(0, len(words) - 1, 2))
    else:
        fields = tuple((k, v[1:-1] if v.startswith('"') and v.endswith('"') else v)
                       for k, v in _KV.findall(rest))
    try:
        return ProbeHit(float(m.group("ts")), int(m.group("cpu")), m.group("task").strip(),
                        int(m.group("tpid")), event, fields)
    except ValueError:
        return None


def decode_trace(text: str) -> list[ProbeHit]:
    """Every probe hit of a trace, in time order (stable for equal timestamps)."""
    hits = [h for h in map(parse_trace_line, text.splitlines()) if h is not None]
    return sorted(hits, key=lambda h: h.ts)


def chain_to_exit(hits: list[ProbeHit], limit: int = 40) -> list[ProbeHit]:
    """The last `limit` hits up to and including the first sched_ext_exit (or the last
    hits when the exit was not recorded)."""
    end = next((i for i, h in enumerate(hits) if h.is_exit), None)
    upto = hits[:end + 1] if end is not None else hits
    return upto[-limit:]


def _int(v: str) -> int | None:
    try:
        return int(v, 0)
    except ValueError:
        return None


def decode_value(key: str, value: str, tables: DecodeTables) -> str:
    """A field's value with its symbolic meaning; unknown keys and bad numbers as given."""
    n = _int(value)
    if n is None:
        return value
    if key in ("dsq_id", "dsq"):
        return tables.dsq_name(n & U64_MAX)
    if key == "enq_flags":
        return tables.enq_names(n & U64_MAX)
    if key == "slice":
        n &= U64_MAX
        if n == U64_MAX:
            return "SCX_SLICE_INF"
        return f"{n / 1e6:g}ms" if n else "0"
    if key == "kind":

        return exit_kind_name(n)
    if key == "exit_code":
        return str(n - (1 << 64) if n >= 1 << 63 else n)
    return value


def render_hit(hit: ProbeHit, tables: DecodeTables) -> str:
    fields = " ".join(f"{k}={decode_value(k, v, tables)}" for k, v in hit.fields
                      if k not in ("level", "sub_cgroup_id", "cgrp_path"))
    who = f"{hit.task}[{hit.tpid}]"
    return f"{hit.ts:12.6f}  cpu{hit.cpu:<3} {who:<22} {hit.event:<24} {fields}".rstrip()


def refused_probes(agent_output: Iterable[str]) -> list[str]:
    """The agent's `probe refused: LINE: error_log` notes, one line each."""
    out = []
    for text in agent_output:
        if text.startswith("probe refused: "):
            lines = [ln.strip() for ln in text.splitlines() if ln.strip() and ln.strip() != "^"]
            out.append(" ".join(lines)[:400])
    return out
