"""What a run is: Topology (ktstr's {n}n{l}l{c}c{t}t notation and presets), workloads,
durations and sizes, and the RunSpec that ties them together.

Parsing happens here, at the edge; everything downstream takes these frozen values.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from .errors import UsageError
from .workloads import KINDS, WorkloadGroup, format_workloads, parse_workloads, span_s

# --------------------------------------------------------------------------- topology

_NOTATION = re.compile(r"^(\d+)n(\d+)l(\d+)c(\d+)t$")


@dataclass(frozen=True)
class Topology:
    """NUMA nodes, LLCs in total (a multiple of nodes), cores per LLC, threads per core."""

    nodes: int
    llcs: int
    cores: int
    threads: int

    @property
    def vcpus(self) -> int:
        return self.llcs * self.cores * self.threads

    @property
    def llcs_per_node(self) -> int:
        return self.llcs // self.nodes

    @property
    def notation(self) -> str:
        return f"{self.nodes}n{self.llcs}l{self.cores}c{self.threads}t"

    def __str__(self) -> str:
        return self.notation

    def cpu_location(self, cpu: int) -> tuple[int, int, int, int]:
        """(node, llc, core-in-llc, thread) of a vCPU, numbering threads fastest as
        QEMU and Linux do (cpu = ((llc * cores) + core) * threads + thread)."""
        thread = cpu % self.threads
        core_global = cpu // self.threads
        core = core_global % self.cores
        llc = core_global // self.cores
        node = llc // self.llcs_per_node
        return node, llc, core, thread

    def llc_cpus(self, llc: int) -> list[int]:
        per = self.cores * self.threads
        return list(range(llc * per, (llc + 1) * per))

    def node_cpus(self, node: int) -> list[int]:
        per = self.llcs_per_node * self.cores * self.threads
        return list(range(node * per, (node + 1) * per))

    def default_memory_mib(self) -> int:
        return max(self.vcpus * 64, 256)

    def min_memory_mib(self) -> int:
        """Below this the guest kernel will not boot its initramfs reliably."""
        return max(128 * self.nodes, 32 * self.vcpus, 192)


# name -> (nodes, llcs, cores per llc, threads per core); shapes as in ktstr's presets.
PRESETS: dict[str, Topology] = {
    name: Topology(*shape)
    for name, shape in [
        ("tiny-1llc", (1, 1, 4, 1)),
        ("tiny-2llc", (1, 2, 2, 1)),
        ("odd-3llc", (1, 3, 3, 1)),
        ("odd-5llc", (1, 5, 3, 1)),
        ("odd-7llc", (1, 7, 2, 1)),
        ("smt-2llc", (1, 2, 2, 2)),
        ("smt-3llc", (1, 3, 2, 2)),
        ("medium-4llc", (1, 4, 4, 2)),
        ("medium-8llc", (1, 8, 4, 2)),
        ("large-4llc", (1, 4, 16, 2)),
        ("large-8llc", (1, 8, 8, 2)),
        ("near-max-llc", (1, 15, 8, 2)),
        ("max-cpu", (1, 14, 9, 2)),
        ("medium-4llc-nosmt", (1, 4, 8, 1)),
        ("medium-8llc-nosmt", (1, 8, 8, 1)),
        ("large-4llc-nosmt", (1, 4, 32, 1)),
        ("large-8llc-nosmt", (1, 8, 16, 1)),
        ("near-max-llc-nosmt", (1, 15, 16, 1)),
        ("max-cpu-nosmt", (1, 14, 18, 1)),
        ("numa2-4llc", (2, 4, 4, 1)),
        ("numa2-8llc", (2, 8, 8, 2)),
        ("numa2-8llc-nosmt", (2, 8, 16, 1)),
        ("numa4-8llc", (4, 8, 4, 1)),
        ("numa4-12llc", (4, 12, 8, 2)),
    ]
}

DEFAULT_TOPOLOGY = "tiny-2llc"
MAX_VCPUS = 255  # x2APIC-free xAPIC ids; QEMU's pc machine and our VMM both cap here


def preset_name(topo: Topology) -> str | None:
    for name, t in PRESETS.items():
        if t == topo:
            return name
    return None


def parse_topology(text: str) -> Topology:
    """A preset name or {n}n{l}l{c}c{t}t notation -> Topology, or a one-line UsageError."""
    text = text.strip()
    if text in PRESETS:
        return PRESETS[text]
    m = _NOTATION.match(text)
    if not m:
        close = difflib.get_close_matches(text, PRESETS.keys(), n=3, cutoff=0.5)
        hint = (f"did you mean {', '.join(close)}?" if close
                else "use a preset (ktstr topologies) or notation like 1n2l2c1t")
        raise UsageError(f"unknown topology '{text}'", hint)
    nodes, llcs, cores, threads = (int(g) for g in m.groups())
    for label, v in (("NUMA nodes", nodes), ("LLCs", llcs), ("cores per LLC", cores),
                     ("threads per core", threads)):
        if v < 1:
            raise UsageError(f"topology '{text}': {label} must be at least 1")
    if llcs % nodes:
        raise UsageError(f"topology '{text}': LLCs ({llcs}) must be a multiple of NUMA nodes ({nodes})")
    if threads > 2:
        raise UsageError(f"topology '{text}': threads per core ({threads}) must be 1 or 2")
    topo = Topology(nodes, llcs, cores, threads)
    if topo.vcpus > MAX_VCPUS:
        raise UsageError(f"topology '{text}' has {topo.vcpus} vCPUs, over the limit of {MAX_VCPUS}",
                         "use fewer LLCs, cores or threads")
    return topo


# --------------------------------------------------------------------------- units

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_SIZE = re.compile(r"^(\d+)([KMGT]i?B?|[kmgt])?$", re.IGNORECASE)


def parse_duration(text: str, what: str = "duration") -> float:
    """'5s', '500ms', '2m', '1.5s', '10' (seconds) -> seconds as float."""
    m = _DURATION.match(str(text).strip())
    if not m:
        raise UsageError(f"bad {what} '{text}'", "use a number with ms, s, m or h, like 5s, 500ms or 2m")
    value = float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]
    if value <= 0:
        raise UsageError(f"bad {what} '{text}': must be more than zero")
    return value


def format_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{seconds:.1f}s"


def parse_size_mib(text: str) -> int:
    """'512M', '1G', '2048' (MiB) -> MiB."""
    m = _SIZE.match(str(text).strip())
    if not m:
        raise UsageError(f"bad memory size '{text}'", "use a size like 512M or 2G")
    n = int(m.group(1))
    unit = (m.group(2) or "M")[0].upper()
    mib = {"K": n / 1024, "M": n, "G": n * 1024, "T": n * 1024 * 1024}[unit]
    if mib < 1:
        raise UsageError(f"bad memory size '{text}': less than 1 MiB")
    return int(mib)


# --------------------------------------------------------------------------- names

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


def validate_name(name: str, what: str = "--name") -> str:
    """A test/run name that will become part of file names: [A-Za-z0-9_.-]{1,100}, no
    leading dot. Anything else (a slash, '..', NUL, control characters) is refused."""
    if not isinstance(name, str) or not _NAME.match(name) or name.startswith("."):
        shown = repr(name) if isinstance(name, str) else type(name).__name__
        raise UsageError(f"bad {what} {shown}",
                         "use 1-100 of A-Z a-z 0-9 _ . - and do not start with a dot")
    return name


# --------------------------------------------------------------------------- workloads

WORKLOAD_KINDS = tuple(KINDS)


def parse_workload(text: str) -> tuple[WorkloadGroup, ...]:
    """'spin', 'spin:4,sleep:2', 'hackbench:groups=4,loops=200' -> groups (workloads.py).
    Default (empty) = one spinner per vCPU."""
    return parse_workloads(text)


def format_workload(groups: tuple[WorkloadGroup, ...]) -> str:
    return format_workloads(groups)


# --------------------------------------------------------------------------- trace

_TRACE_EVENT = re.compile(r"^[A-Za-z0-9_]{1,64}/(?:[A-Za-z0-9_]{1,64}|\*)$")


def validate_trace_event(name: str) -> str:
    """A tracepoint as GROUP/NAME (or GROUP/* for all of a group's events)."""
    if not _TRACE_EVENT.match(name):
        raise UsageError(f"bad trace event {name!r}",
                         "name it GROUP/NAME or GROUP/* as under /sys/kernel/tracing/events, "
                         "e.g. irq/irq_handler_entry")
    return name


def _opt_float(v: Any) -> float | None:
    return None if v is None else float(v)


# --------------------------------------------------------------------------- run spec

ENGINES = ("auto", "qemu", "kvm")


@dataclass(frozen=True)
class RunSpec:
    """Everything that defines one run. Stored as spec.json in the run directory."""

    name: str
    scheduler: str  # a built scheduler's name or a path to a binary
    topology: Topology
    topology_requested: str = ""  # what the user typed (preset name or notation)
    sched_args: tuple[str, ...] = ()
    memory_mib: int = 0  # 0 = topology default
    duration_s: float = 5.0
    workload: tuple[WorkloadGroup, ...] = field(default_factory=lambda: (WorkloadGroup("spin"),))
    engine: str = "auto"
    kernel: str | None = None  # None = newest cached kernel
    timeout_s: float | None = None  # None = duration + boot allowance
    expect_err: bool = False
    auto_repro: bool = True
    monitor_interval_ms: int = 100
    parent: str | None = None  # run id of the run this one reruns / reproduces
    kind: str = "run"  # run | rerun | repro
    probes: tuple[str, ...] = ()  # tracefs dynamic_events lines armed before the scheduler
    trace: bool = True  # the scheduling trace (tracefiles.py); --no-trace
    trace_events: tuple[str, ...] = ()  # GROUP/NAME or GROUP/* beyond the default set
    max_wakeup_latency_ms: float | None = None  # latency thresholds (latency.py)
    max_runnable_wait_ms: float | None = None
    gauntlet: str | None = None  # the gauntlet id this run is a cell of (ktstr gauntlet)
    gauntlet_cell: str | None = None  # the cell's key in that gauntlet
    capture_every_ms: int | None = None  # periodic capture every N ms of the workload
    capture_at_ms: tuple[int, ...] = ()  # periodic captures at these ms of the workload
    assertions: tuple[str, ...] = ()  # temporal assertions (temporal.py syntax)
    fail_on: tuple[str, ...] = ()  # --fail-on bounds on the run's own numbers (compare.FailOn)

    @property
    def preset(self) -> str | None:
        return preset_name(self.topology)

    @property
    def memory(self) -> int:
        return self.memory_mib or self.topology.default_memory_mib()

    @property
    def timeout(self) -> float:
        """Watchdog: duration plus a boot allowance that scales with vCPUs (TCG boots
        ~4 s for 2 vCPUs; each vCPU adds roughly 0.5 s of SMP bring-up under TCG)."""
        if self.timeout_s is not None:
            return self.timeout_s
        return span_s(self.workload, self.duration_s) + 60.0 + 1.0 * self.topology.vcpus

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["topology"] = self.topology.notation
        d["preset"] = self.preset
        d["sched_args"] = list(self.sched_args)
        d["workload"] = format_workload(self.workload)
        d["probes"] = list(self.probes)
        d["trace_events"] = list(self.trace_events)
        d["capture_at_ms"] = list(self.capture_at_ms)
        d["assertions"] = list(self.assertions)
        d["fail_on"] = list(self.fail_on)
        d["memory_mib"] = self.memory
        d["timeout_s"] = self.timeout
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RunSpec:
        """Inverse of to_json; raises UsageError naming the bad field."""
        try:
            return cls(
                name=validate_name(d["name"], "test name"),
                scheduler=str(d["scheduler"]),
                topology=parse_topology(str(d["topology"])),
                topology_requested=str(d.get("topology_requested") or d["topology"]),
                sched_args=tuple(str(a) for a in d.get("sched_args") or ()),
                memory_mib=int(d.get("memory_mib") or 0),
                duration_s=float(d.get("duration_s", 5.0)),
                workload=parse_workload(d.get("workload") or ""),
                engine=str(d.get("engine", "auto")),
                kernel=d.get("kernel"),
                timeout_s=float(d["timeout_s"]) if d.get("timeout_s") is not None else None,
                expect_err=bool(d.get("expect_err", False)),
                auto_repro=bool(d.get("auto_repro", True)),
                monitor_interval_ms=int(d.get("monitor_interval_ms", 100)),
                parent=d.get("parent"),
                kind=str(d.get("kind", "run")),
                probes=tuple(str(p) for p in d.get("probes") or ()),
                trace=bool(d.get("trace", True)),
                trace_events=tuple(validate_trace_event(str(e)) for e in d.get("trace_events") or ()),
                max_wakeup_latency_ms=_opt_float(d.get("max_wakeup_latency_ms")),
                max_runnable_wait_ms=_opt_float(d.get("max_runnable_wait_ms")),
                gauntlet=validate_name(d["gauntlet"], "gauntlet id") if d.get("gauntlet") else None,
                gauntlet_cell=str(d["gauntlet_cell"]) if d.get("gauntlet_cell") else None,
                capture_every_ms=(int(d["capture_every_ms"]) if d.get("capture_every_ms")
                                  is not None else None),
                capture_at_ms=tuple(int(t) for t in d.get("capture_at_ms") or ()),
                assertions=tuple(str(a) for a in d.get("assertions") or ()),
                fail_on=tuple(str(p) for p in d.get("fail_on") or ()),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise UsageError(f"bad run spec: {type(e).__name__}: {e}") from e

    def with_changes(self, **kw: Any) -> RunSpec:
        return replace(self, **kw)
