"""The workload catalog: every kind a run can name (ktstr's families plus real benchmarks
from Debian packages), its parameters, and the `-w` syntax.

    -w spin:4,pipe:2                         two groups; a number after the colon is the count
    -w hackbench:groups=4,loops=200          parameters as key=value, after the colon or a comma
    -w futex:4,nice=5,cpus=0-1,cgroup=a,weight=200

A part `kind` or `kind:...` starts a new group; a part `key=value` belongs to the group
before it. Every group takes the common parameters (count, nice, cpus, policy, prio,
cgroup, weight, cpuset, mems, start, stop); a kind adds its own. The text round-trips:
str(group) parses back to the same group (spec.json stores it that way).

Families report their own measure (see MEASURES); benchmarks run a program in the guest
and their output is parsed on the host (evaluate/benchmarks).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .errors import UsageError

MAX_WORKERS = 1024


@dataclass(frozen=True)
class Param:
    name: str
    type: str       # count int dur size cpus choice name bool
    help: str
    default: str = ""
    lo: int = 0
    hi: int = 0
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Kind:
    name: str
    family: str
    help: str
    params: tuple[Param, ...] = ()
    measure: str = "iter_s"      # the family's own headline measure (MEASURES)
    latency: bool = False        # it records wake-up latencies (avg/p99/max)
    bench: bool = False          # a real program (Debian package) run inside the guest
    package: str = ""
    binary: str = ""


COMMON = (
    Param("count", "count", "workers in the group (default: one per vCPU; benchmarks: 1)",
          lo=1, hi=MAX_WORKERS),
    Param("nice", "int", "nice level of every worker", lo=-20, hi=19),
    Param("cpus", "cpus", "CPU affinity of every worker, a list like 0-1,3"),
    Param("policy", "choice", "scheduling policy", choices=("other", "batch", "idle", "fifo", "rr")),
    Param("prio", "int", "RT priority for policy fifo/rr", lo=1, hi=99),
    Param("cgroup", "name", "the group's cgroup (groups may share one); default cg<N>"),
    Param("weight", "int", "the cgroup's cpu.weight", lo=1, hi=10000),
    Param("cpuset", "cpus", "the cgroup's cpuset.cpus"),
    Param("mems", "cpus", "the cgroup's cpuset.mems (NUMA nodes)"),
    Param("start", "dur", "start this long after the workload starts (a scenario phase)"),
    Param("stop", "dur", "stop this long after the workload starts (default: the end)"),
)
_SPIN = Param("spin", "int", "LCG steps of work per iteration", lo=1, hi=1_000_000_000)
_INTERVAL = Param("interval", "dur", "period between wake-ups", "1ms")

KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("spin", "cpu", "tight arithmetic loop (ktstr SpinWait)"),
    Kind("yield", "cpu", "sched_yield in a loop (YieldHeavy)"),
    Kind("mixed", "cpu", "spin burst then sched_yield (Mixed)", (_SPIN,)),
    Kind("bursty", "cpu", "work for burst, sleep for sleep: a duty cycle (Bursty)",
         (Param("burst", "dur", "work time per cycle", "50ms"),
          Param("sleep", "dur", "sleep time per cycle", "100ms")), "cycles_s", True),
    Kind("sleep", "cpu", "1 ms asleep, 100 us busy"),
    Kind("pipe", "wakeup", "1-byte pipe ping-pong between worker pairs (PipeIo)",
         measure="wakeups_s"),
    Kind("futex", "wakeup", "futex ping-pong between worker pairs (FutexPingPong)", (_SPIN,),
         "wakeups_s", True),
    Kind("fanout", "wakeup", "one messenger wakes fan_out receivers (FutexFanOut)",
         (Param("fan_out", "int", "receivers per messenger", "4", 1, MAX_WORKERS - 1), _SPIN),
         "wakeups_s", True),
    Kind("fanin", "wakeup", "fan_out wakers each wake one waiter every interval (N:1)",
         (Param("fan_out", "int", "wakers per waiter", "4", 1, MAX_WORKERS - 1), _SPIN,
          _INTERVAL), "wakeups_s", True),
    Kind("fork", "churn", "fork + _exit + wait (ForkExit)", measure="forks_s"),
    Kind("forkexec", "churn", "fork + exec + exit + wait", measure="execs_s"),
    Kind("thread", "churn", "pthread create + join", measure="threads_s"),
    Kind("rt", "rt", "periodic SCHED_FIFO wake-ups (policy fifo, prio 10 unless given)",
         (_INTERVAL,), "wakeups_s", True),
    Kind("pagefault", "memory", "touch every page of a region, zap it (PageFaultChurn)",
         (Param("size", "size", "region size", "4M"),), "faults_s"),
    Kind("membw", "memory", "memcpy within a buffer bound to a NUMA node",
         (Param("size", "size", "buffer size", "16M"),
          Param("node", "int", "NUMA node of the buffer (default: worker index mod nodes)",
                lo=0, hi=1023)), "mb_s"),
    Kind("timer", "irq", "periodic timerfd expiries (hrtimer interrupts)", (_INTERVAL,),
         "expiries_s", True),
    Kind("io", "irq", "pipe I/O loop: write size per iteration, a thread drains it",
         (Param("size", "size", "bytes per iteration", "1M"),), "mb_s"),
    Kind("hackbench", "bench", "hackbench (rt-tests): groups of senders/receivers",
         (Param("groups", "int", "sender/receiver groups (-g)", "4", 1, 256),
          Param("loops", "int", "messages per sender (-l)", "100", 1, 10_000_000),
          Param("fds", "int", "senders and receivers per group (-f)", "20", 1, 128),
          Param("datasize", "int", "bytes per message (-s)", "100", 1, 1 << 20),
          Param("threads", "bool", "threads instead of processes (-T)", "no"),
          Param("pipe", "bool", "pipes instead of sockets (-p)", "no")),
         "time_s", bench=True, package="rt-tests", binary="hackbench"),
    Kind("cyclictest", "bench", "cyclictest (rt-tests): RT wake-up latency per thread",
         (Param("threads", "int", "measuring threads (-t; default one per vCPU)", "", 1, 1024),
          Param("interval", "dur", "base interval (-i)", "1ms"),
          Param("priority", "int", "SCHED_FIFO priority (-p)", "80", 1, 99)),
         "max_us", bench=True, package="rt-tests", binary="cyclictest"),
    Kind("stress-ng", "bench", "stress-ng: STRESSOR=INSTANCES (cpu=2,switch=1); bogo ops/s",
         (), "ops_s", bench=True, package="stress-ng", binary="stress-ng"),
)}

FAMILIES = ("cpu", "wakeup", "churn", "rt", "memory", "irq", "bench")

# ready-made -w texts, one per family and benchmark (the launcher offers them)
EXAMPLES: dict[str, str] = {
    "cpu: spin, duty cycle": "spin:2,bursty:2,burst=20ms,sleep=20ms",
    "wakeup: futex ping-pong, fan-out, fan-in": "futex:2,fanout:3,fan_out=2,fanin:3,fan_out=2",
    "churn: fork+exec, threads": "forkexec:2,thread:2",
    "rt: SCHED_FIFO beside sched_ext": "rt:2,interval=1ms,spin:2",
    "memory: page faults, bandwidth": "pagefault:2,size=4M,membw:2,size=8M",
    "irq/io: timers, pipe I/O": "timer:2,io:2",
    "cgroups: weights and cpusets": "spin:2,cgroup=hi,weight=400,spin:2,cgroup=lo,weight=50,cpuset=0-1",
    "hackbench": "hackbench:groups=4,loops=200",
    "cyclictest": "cyclictest:threads=4,interval=1ms",
    "stress-ng": "stress-ng:cpu=2,switch=1",
}

# measure -> (label, unit) for the stats lines and --fail-on
MEASURES = {
    "iter_s": ("iterations/s", "/s"), "cycles_s": ("cycles/s", "/s"),
    "wakeups_s": ("wakeups/s", "/s"), "forks_s": ("forks/s", "/s"),
    "execs_s": ("execs/s", "/s"), "threads_s": ("threads/s", "/s"),
    "faults_s": ("faults/s", "/s"), "expiries_s": ("expiries/s", "/s"),
    "mb_s": ("MB/s", "MB/s"), "time_s": ("time", "s"),
    "max_us": ("latency min/avg/max/p99, overall and per thread", "us"),
    "ops_s": ("bogo ops/s", "/s"),
}

_STRESSOR = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
_CPUS = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")
_NAME = re.compile(r"^[a-z0-9_][a-z0-9_-]{0,31}$")
_DUR = re.compile(r"^(\d+(?:\.\d+)?)(us|ms|s|m)?$")
_SIZE = re.compile(r"^(\d+)([KMG])?$", re.IGNORECASE)


def param_of(kind: Kind, name: str) -> Param | None:
    for p in (*COMMON, *kind.params):
        if p.name == name:
            return p
    return None


def parse_dur_us(text: str) -> int:
    """'1ms', '500us', '2s', '1.5m', '10' (seconds) -> microseconds."""
    m = _DUR.match(text)
    if not m:
        raise ValueError("a duration like 500us, 1ms or 2s")
    us = float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6, "m": 60e6, None: 1e6}[m.group(2)]
    return int(round(us))


def parse_size_kib(text: str) -> int:
    m = _SIZE.match(text)
    if not m:
        raise ValueError("a size like 64K, 16M or 1G")
    n = int(m.group(1)) * {"K": 1, "M": 1024, "G": 1024 * 1024, None: 1 / 1024}[
        (m.group(2) or "").upper() or None]
    if not 4 <= n <= 4 * 1024 * 1024:
        raise ValueError("a size from 4K to 4G")
    return int(n)


def _at(where: str) -> str:
    """`where` as a message prefix: "" stays "", "x" and "x: " become "x: "."""
    return "" if not where else where if where.endswith(": ") else f"{where}: "


def check_param(kind: Kind, key: str, value: str, where: str) -> str:
    """The normalised value of key=value for kind, or UsageError naming both."""
    p = param_of(kind, key)
    if p is None:
        if kind.name == "stress-ng" and _STRESSOR.match(key):
            p = Param(key, "int", "", lo=1, hi=MAX_WORKERS)  # a stressor and its instances
        else:
            names = ", ".join(x.name for x in (*kind.params, *COMMON))
            raise UsageError(f"{_at(where)}{kind.name} has no parameter '{key}'",
                             f"its parameters: {names}")
    try:
        if p.type in ("count", "int"):
            if not re.fullmatch(r"-?\d+", value) or not p.lo <= int(value) <= p.hi:
                raise ValueError(f"a whole number from {p.lo} to {p.hi}")
            return str(int(value))
        if p.type == "dur":
            us = parse_dur_us(value)
            if not 10 <= us <= 86_400_000_000 and not (p.name == "start" and us == 0):
                raise ValueError("from 10us to 24h")
            return value
        if p.type == "size":
            parse_size_kib(value)
            return value
        if p.type == "cpus":
            if not _CPUS.match(value):
                raise ValueError("a list like 0-3,6")
            return value
        if p.type == "choice":
            if value not in p.choices:
                raise ValueError("one of " + ", ".join(p.choices))
            return value
        if p.type == "name":
            if not _NAME.match(value):
                raise ValueError("1-32 of a-z 0-9 _ - (not starting with -)")
            return value
        if p.type == "bool":
            if value not in ("yes", "no", "1", "0", "true", "false"):
                raise ValueError("yes or no")
            return "yes" if value in ("yes", "1", "true") else "no"
    except ValueError as e:
        raise UsageError(f"{_at(where)}bad {kind.name} {key}={value!r}", f"use {e}") from None
    raise AssertionError(p.type)


@dataclass(frozen=True)
class WorkloadGroup:
    """`count` workers of one kind (count 0: one per vCPU; a benchmark is one program)
    with its parameters as normalised (key, value) text pairs, in the order given."""

    kind: str
    count: int = 0
    params: tuple[tuple[str, str], ...] = ()

    def resolved_count(self, vcpus: int) -> int:
        if KINDS[self.kind].bench:
            return 1
        return self.count or vcpus

    def get(self, key: str, default: str = "") -> str:
        for k, v in self.params:
            if k == key:
                return v
        return default

    @property
    def is_bench(self) -> bool:
        return KINDS[self.kind].bench

    def start_s(self) -> float:
        return parse_dur_us(self.get("start", "0")) / 1e6

    def stop_s(self) -> float | None:
        v = self.get("stop")
        return parse_dur_us(v) / 1e6 if v else None

    def __str__(self) -> str:
        head = f"{self.kind}:{self.count}" if self.count else self.kind
        if not self.params:
            return head
        sep = "," if self.count else ":"
        return head + sep + ",".join(f"{k}={v}" for k, v in self.params)


def parse_workloads(text: str, where: str = "") -> tuple[WorkloadGroup, ...]:
    """The `-w` text -> groups (see the module docstring); UsageError names the part,
    prefixed with `where` (a scenario file's field) when given."""
    text = (text or "").strip()
    at = f"{where}: " if where else ""
    if not text:
        return (WorkloadGroup("spin", 0),)
    groups: list[WorkloadGroup] = []
    cur: tuple[str, int, list[tuple[str, str]]] | None = None

    def close() -> None:
        if cur is not None:
            groups.append(_finish(cur[0], cur[1], tuple(cur[2]), at))

    for raw in text.split(","):
        part = raw.strip()
        head, colon, rest = part.partition(":")
        if "=" not in head:  # a new group: kind, kind:N or kind:key=value
            if head not in KINDS:
                raise UsageError(f"{at}unknown workload kind '{head}' in '{text}'",
                                 "`ktstr workloads` lists the kinds and their parameters")
            close()
            cur = (head, 0, [])
            if colon and "=" not in rest:
                cur = (head, _count(rest, text, at), [])
            elif colon:
                cur[2].append(tuple(rest.split("=", 1)))  # type: ignore[arg-type]
            continue
        if cur is None:
            raise UsageError(f"{at}'{part}' comes before any workload kind",
                             "start with a kind, like hackbench:groups=4")
        key, _, value = part.partition("=")
        cur[2].append((key.strip(), value.strip()))
    close()
    if sum(g.resolved_count(1) for g in groups) > MAX_WORKERS:
        raise UsageError(f"{at}more than {MAX_WORKERS} workers in '{text}'")
    return tuple(groups)


def _count(n: str, text: str, at: str) -> int:
    if not n.isdigit() or not 1 <= int(n) <= MAX_WORKERS:
        raise UsageError(f"{at}bad worker count '{n}' in workload '{text}'",
                         f"use a number from 1 to {MAX_WORKERS}")
    return int(n)


def _finish(kind_name: str, count: int, raw: tuple[tuple[str, str], ...],
            at: str) -> WorkloadGroup:
    kind = KINDS[kind_name]
    params: list[tuple[str, str]] = []
    seen: set[str] = set()
    for key, value in raw:
        if key in seen:
            raise UsageError(f"{at}{kind_name} parameter '{key}' given twice")
        seen.add(key)
        v = check_param(kind, key, value, at)
        if key == "count":
            count = int(v)
        else:
            params.append((key, v))
    if kind.bench and count > 1:
        raise UsageError(f"{at}{kind_name} runs as one program, count {count} makes no sense",
                         "use its own parameters (groups=, threads=, STRESSOR=N)")
    if kind.name == "stress-ng" and not any(param_of(kind, k) is None for k, _ in params):
        raise UsageError(f"{at}stress-ng needs at least one STRESSOR=INSTANCES",
                         "e.g. -w stress-ng:cpu=2,switch=1")
    g = WorkloadGroup(kind_name, count, tuple(params))
    start, stop = g.start_s(), g.stop_s()
    if stop is not None and stop <= start:
        raise UsageError(f"{at}{kind_name} stop={g.get('stop')} is not after "
                         f"start={g.get('start', '0')}")
    return g


def format_workloads(groups: tuple[WorkloadGroup, ...]) -> str:
    return ",".join(str(g) for g in groups)


def span_s(groups: tuple[WorkloadGroup, ...], duration_s: float) -> float:
    """How long the workload phase may last: the duration, or a benchmark's allowance."""
    return max([duration_s, *(bench_timeout_s(g, duration_s) + g.start_s()
                              for g in groups if g.is_bench)])


def bench_timeout_s(g: WorkloadGroup, duration_s: float) -> float:
    """How long a benchmark may run before the guest kills it: time-bound ones (cyclictest,
    stress-ng) their duration plus 30 s; hackbench, bounded by loops, 120 s more."""
    own = (g.stop_s() or duration_s) - g.start_s()
    return max(own, 1.0) + (120.0 if g.kind == "hackbench" else 30.0)


def bench_argv(g: WorkloadGroup, index: int, vcpus: int, duration_s: float,
               binary: str) -> tuple[list[str], str]:
    """The guest command line of benchmark group `index` and the output file it writes
    ("" for none)."""
    own = max(1, math.ceil((g.stop_s() or duration_s) - g.start_s()))
    if g.kind == "hackbench":
        argv = [binary, "-g", g.get("groups", "4"), "-l", g.get("loops", "100"),
                "-f", g.get("fds", "20"), "-s", g.get("datasize", "100")]
        if g.get("threads") == "yes":
            argv.append("-T")
        if g.get("pipe") == "yes":
            argv.append("-p")
        return argv, ""
    if g.kind == "cyclictest":
        out = f"/tmp/cyclictest-{index}.json"
        iv = max(1, parse_dur_us(g.get("interval", "1ms")))
        threads = g.get("threads") or str(vcpus)
        return [binary, "-q", "-m", "-t", threads, "-i", str(iv), "-p", g.get("priority", "80"),
                "-D", f"{own}s", "-h", "100000", "--histfile=/dev/null", f"--json={out}"], out
    if g.kind == "stress-ng":
        out = f"/tmp/stress-ng-{index}.yaml"
        argv = [binary]
        for k, v in g.params:
            if param_of(KINDS["stress-ng"], k) is None:
                argv += [f"--{k}", v]
        return argv + ["--timeout", f"{own}s", "--metrics-brief", "--yaml", out,
                       "--temp-path", "/tmp"], out
    raise AssertionError(g.kind)


def describe() -> str:
    """`ktstr workloads`: every kind by family with its parameters."""
    lines = []
    for fam in FAMILIES:
        lines.append(f"{fam}:")
        for k in (k for k in KINDS.values() if k.family == fam):
            measure = MEASURES[k.measure][0] + (", latency avg/p99/max" if k.latency else "")
            pkg = f" [Debian package {k.package}]" if k.package else ""
            lines.append(f"  {k.name:<11} {k.help}{pkg}")
            lines.append(f"  {'':<11} measure: {measure}")
            for p in k.params:
                dflt = f" (default {p.default})" if p.default else ""
                lines.append(f"  {'':<11}   {p.name}={_shape(p)}  {p.help}{dflt}")
    lines.append("every kind also takes:")
    for p in COMMON:
        lines.append(f"  {p.name}={_shape(p)}  {p.help}")
    lines.append("syntax: -w spin:4,pipe:2   -w hackbench:groups=4,loops=200   "
                 "-w futex:4,nice=5,cgroup=a,weight=200")
    return "\n".join(lines)


def _shape(p: Param) -> str:
    return {"count": "N", "int": "N", "dur": "DUR", "size": "SIZE", "cpus": "LIST",
            "name": "NAME", "bool": "yes|no"}.get(p.type, "|".join(p.choices))
