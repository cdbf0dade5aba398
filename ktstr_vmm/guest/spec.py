"""The guest-facing spec, `/ktstr/spec` in the initramfs: a `key=value` line format the
agent (native/guest/spec.c) reads without a JSON parser. docs/wire.md lists the keys."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError
from ..spec import WORKLOAD_KINDS, RunSpec

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


def enable_timeout_ms(vcpus: int) -> int:
    """Deadline for sched_ext to become enabled: a BPF load under TCG takes seconds, and
    verification slows down with more vCPUs."""
    return 30_000 + 500 * vcpus


def _value(key: str, value: str) -> str:
    if "\n" in value or "\r" in value or "\0" in value:
        raise UsageError(f"guest spec: {key} value {value[:40]!r} holds a newline or NUL",
                         "scheduler arguments and probes must be single-line")
    return value


def render_guest_spec(spec: RunSpec, scheduler_guest_path: str | None,
                      kallsyms_wanted: list[str], *, wire_selftest_kib: int = 0,
                      wire: str = "virtio") -> str:
    """The text of `/ktstr/spec` for `spec`. `scheduler_guest_path` None (or "") runs a
    baseline under the default class. `wire_selftest_kib` makes the agent send that much
    filler right after SysRdy (a throughput measurement). Raises UsageError for values the
    format cannot hold."""
    vcpus = spec.topology.vcpus
    groups = []
    for g in spec.workload:
        n = g.resolved_count(vcpus)
        if g.kind == "pipe" and n % 2:
            n += 1  # ping-pong pairs
        groups.append(f"{g.kind}:{n}")
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
        f"workload={','.join(groups)}",
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
    multi: dict[str, list[str]] = {"sched_arg": [], "kallsym": [], "probe": []}
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
        wire_selftest_kib=num("wire_selftest_kib"), trace=tuple(trace))
