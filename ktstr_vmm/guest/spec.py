"""The guest-facing spec, `/ktstr/spec` in the initramfs: a `key=value` line format the
agent (native/guest/spec.c) reads without a JSON parser. docs/wire.md lists the keys."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import UsageError
from ..spec import WORKLOAD_KINDS, RunSpec
from ..workloads import (
    KINDS,
    WorkloadGroup,
    bench_argv,
    bench_timeout_s,
    parse_dur_us,
    parse_size_kib,
)

VERSION = 1
STOP_TIMEOUT_MS = 5000
# The scheduling trace's events (native/guest/trace.c): GROUP/* is every event of the group
# the kernel offers; -GROUP/NAME leaves one out (sched_ext_dump is a text dump, not a
# timeline event).
TRACE_EVENTS = ("sched/sched_switch", "sched/sched_wakeup", "sched/sched_wakeup_new",
                "sched/sched_migrate_task", "sched/sched_process_fork",
                "sched/sched_process_exit", "sched_ext/*", "-sched_ext/sched_ext_dump")
TRACE_BUFFER_KB = 2048  # per CPU
TRACE_CAP_MB = 256  # streamed by the guest before only the ring buffers' last contents go
# The wire budget of the trace, KiB/s: a virtio-serial port carries ~13 MB/s under TCG,
# COM2 (the KVM engine) ~0.15 MB/s, which must stay free for logs and dumps.
TRACE_RATE_KIB = {"virtio": 6144, "serial": 48}


@dataclass(frozen=True)
class GuestSpec:
    """What the agent will read, parsed back (for tests and for the host's own records)."""

    name: str
    scheduler: str  # "" = baseline
    sched_args: tuple[str, ...]
    duration_ms: int
    enable_timeout_ms: int
    stop_timeout_ms: int
    workload: tuple[tuple[str, int], ...]
    cgroups: bool
    kallsyms: tuple[str, ...]
    probes: tuple[str, ...]
    vcpus: int
    wire_selftest_kib: int = 0
    trace: tuple[tuple[str, str], ...] = ()  # the trace* keys in order
    groups: tuple[str, ...] = ()  # the `group=` lines, verbatim
    shell_hold_ms: int = 0


BENCH_GUEST_DIR = "/usr/bin"  # benchmark binaries sit at the same path as on the host
PAIRED = ("pipe", "futex")    # ping-pong kinds: an odd count gets one more worker
# -w parameter -> (guest attribute, converter)
_GUEST_ATTR = {
    "nice": ("nice", str), "cpus": ("cpus", str), "policy": ("policy", str),
    "prio": ("prio", str), "cgroup": ("cgroup", str), "weight": ("weight", str),
    "cpuset": ("cpuset", str), "mems": ("mems", str),
    "start": ("start_ms", lambda v: str(parse_dur_us(v) // 1000)),
    "stop": ("stop_ms", lambda v: str(max(1, parse_dur_us(v) // 1000))),
    "spin": ("spin", str), "fan_out": ("fan_out", str), "node": ("node", str),
    "burst": ("burst_us", lambda v: str(parse_dur_us(v))),
    "sleep": ("sleep_us", lambda v: str(parse_dur_us(v))),
    "interval": ("interval_us", lambda v: str(max(10, parse_dur_us(v)))),
    "size": ("kib", lambda v: str(parse_size_kib(v))),
}


def bench_guest_path(kind: str) -> str:
    return f"{BENCH_GUEST_DIR}/{KINDS[kind].binary}"


def _plain(g: WorkloadGroup) -> bool:
    return g.kind in ("spin", "yield", "sleep", "fork", "pipe") and not g.params


def group_line(g: WorkloadGroup, index: int, vcpus: int, duration_s: float) -> str:
    """One `group=` line: kind:count, the attributes, and for a benchmark its command."""
    n = g.resolved_count(vcpus)
    if g.kind in PAIRED and n % 2:
        n += 1
    kind = "bench" if g.is_bench else g.kind
    words = [f"{kind}:{n}"]
    for key, value in g.params:
        if key in _GUEST_ATTR:
            attr, conv = _GUEST_ATTR[key]
            words.append(f"{attr}={conv(value)}")
    if g.is_bench:
        argv, out = bench_argv(g, index, vcpus, duration_s, bench_guest_path(g.kind))
        words.append(f"name={g.kind}")
        words.append(f"timeout_ms={round(bench_timeout_s(g, duration_s) * 1000)}")
        if out:
            words.append(f"file={out}")
        words += ["--", *argv]
    for w in words:
        if not w or any(c.isspace() for c in w):
            raise UsageError(f"guest spec: group word {w!r} is empty or holds a space")
    return " ".join(words)


def enable_timeout_ms(vcpus: int) -> int:
    """Deadline for sched_ext to become enabled: a BPF load under TCG takes seconds, and
    verification slows down with more vCPUs. $KTSTR_ENABLE_TIMEOUT_S replaces it where
    everything is slower (the nested test bed's L1 sets 150: the verifier there took over
    30 s on a loaded host)."""
    forced = os.environ.get("KTSTR_ENABLE_TIMEOUT_S")
    if forced:
        try:
            return max(1, round(float(forced) * 1000))
        except ValueError:
            raise UsageError(f"KTSTR_ENABLE_TIMEOUT_S={forced!r} is not a number of seconds",
                             "unset it or give seconds, like 150") from None
    return 30_000 + 500 * vcpus


def _value(key: str, value: str) -> str:
    if "\n" in value or "\r" in value or "\0" in value:
        raise UsageError(f"guest spec: {key} value {value[:40]!r} holds a newline or NUL",
                         "scheduler arguments and probes must be single-line")
    return value


def render_guest_spec(spec: RunSpec, scheduler_guest_path: str | None,
                      kallsyms_wanted: list[str], *, wire_selftest_kib: int = 0,
                      wire: str = "virtio", shell_hold_ms: int = 0) -> str:
    """The text of `/ktstr/spec` for `spec`. `scheduler_guest_path` None (or "") runs a
    baseline under the default class. `wire_selftest_kib` makes the agent send that much
    filler right after SysRdy (a throughput measurement). `shell_hold_ms` (`ktstr shell`)
    keeps the run going, scheduler enabled, until the primary shell ends or that time has
    passed; with an empty workload no workers run. Raises UsageError for values the format
    cannot hold."""
    vcpus = spec.topology.vcpus
    groups = []
    extended = not all(_plain(g) for g in spec.workload)
    for g in spec.workload:
        n = g.resolved_count(vcpus)
        if g.kind in PAIRED and n % 2:
            n += 1  # ping-pong pairs
        groups.append(f"{g.kind}:{n}")
    if extended:  # every group on its own line with its attributes
        groups = [group_line(g, i, vcpus, spec.duration_s) for i, g in enumerate(spec.workload)]
    lines = [
        "# ktstr guest spec (docs/wire.md)",
        f"version={VERSION}",
        f"name={_value('name', spec.name)}",
        f"scheduler={_value('scheduler', scheduler_guest_path or '')}",
    ]
    lines += [f"sched_arg={_value('sched_arg', a)}" for a in spec.sched_args]
    lines += [
        f"duration_ms={max(1, round(spec.duration_s * 1000))}",
        f"enable_timeout_ms={enable_timeout_ms(vcpus)}",
        f"stop_timeout_ms={STOP_TIMEOUT_MS}",
        *([f"group={x}" for x in groups] if extended else [f"workload={','.join(groups)}"]),
        "cgroups=1",
        f"vcpus={vcpus}",
    ]
    for sym in kallsyms_wanted:
        if not sym or any(c.isspace() for c in sym) or "=" in sym:
            raise UsageError(f"guest spec: bad kallsyms name {sym!r}")
        lines.append(f"kallsym={sym}")
    lines += [f"probe={_value('probe', p)}" for p in spec.probes]
    if wire_selftest_kib:
        lines.append(f"wire_selftest_kib={int(wire_selftest_kib)}")
    lines += trace_lines(spec, wire)
    if shell_hold_ms:
        lines.append(f"shell_hold_ms={int(shell_hold_ms)}")
    return "\n".join(lines) + "\n"


def trace_lines(spec: RunSpec, wire: str) -> list[str]:
    if not spec.trace:
        return []
    out = ["trace=1", f"trace_buffer_kb={TRACE_BUFFER_KB}",
           f"trace_rate_kib={TRACE_RATE_KIB.get(wire, TRACE_RATE_KIB['serial'])}",
           f"trace_cap_mb={TRACE_CAP_MB}"]
    events = list(TRACE_EVENTS) + [e for e in spec.trace_events if e not in TRACE_EVENTS]
    return out + [f"trace_event={_value('trace_event', e)}" for e in events]


def parse_guest_spec(text: str) -> GuestSpec:
    """The inverse of render_guest_spec, with the agent's rules (unknown keys ignored)."""
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {"sched_arg": [], "kallsym": [], "probe": [], "group": []}
    trace: list[tuple[str, str]] = []
    for line in text.split("\n"):
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise UsageError(f"guest spec: line without '=': {line[:60]!r}")
        if key.startswith("trace"):
            trace.append((key, value))
        elif key in multi:
            multi[key].append(value)
        else:
            single[key] = value
    if single.get("version") != str(VERSION):
        raise UsageError(f"guest spec: version {single.get('version')!r}, expected {VERSION}")
    workload = []
    for part in filter(None, single.get("workload", "").split(",")):
        kind, _, n = part.partition(":")
        if kind not in WORKLOAD_KINDS or not n.isdigit():
            raise UsageError(f"guest spec: bad workload group {part!r}")
        workload.append((kind, int(n)))
    for line in multi["group"]:
        kind, _, n = line.split(" ", 1)[0].partition(":")
        if kind not in (*WORKLOAD_KINDS, "bench") or not n.isdigit():
            raise UsageError(f"guest spec: bad group line {line[:60]!r}")
        workload.append((kind, int(n)))

    def num(key: str, default: int = 0) -> int:
        v = single.get(key, str(default))
        if not v.isdigit():
            raise UsageError(f"guest spec: {key}={v!r} is not a number")
        return int(v)

    return GuestSpec(
        name=single.get("name", ""), scheduler=single.get("scheduler", ""),
        sched_args=tuple(multi["sched_arg"]), duration_ms=num("duration_ms"),
        enable_timeout_ms=num("enable_timeout_ms"), stop_timeout_ms=num("stop_timeout_ms"),
        workload=tuple(workload), cgroups=single.get("cgroups") == "1",
        kallsyms=tuple(multi["kallsym"]), probes=tuple(multi["probe"]), vcpus=num("vcpus"),
        wire_selftest_kib=num("wire_selftest_kib"), trace=tuple(trace),
        groups=tuple(multi["group"]),
        shell_hold_ms=num("shell_hold_ms"))
