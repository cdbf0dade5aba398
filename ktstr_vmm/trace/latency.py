"""Scheduling latency from the trace (tracefiles.Trace): per task and per CPU.

Definitions (all from the guest kernel's own tracepoints, guest CLOCK_MONOTONIC):
- wakeup latency: sched_wakeup / sched_wakeup_new of a task that is not on a CPU, to the
  sched_switch that puts it on one (any CPU);
- runnable wait: every stretch a task spends runnable but not running - after a wakeup, or
  after being switched out while still runnable (preempted or yielded);
- running: from a sched_switch onto a CPU to the one off it;
- preemptions: switches off a CPU while still runnable (prev_state R or R+);
- migrations: sched_migrate_task events.
A task that was already waiting or running when the trace began counts from its first
event. Idle (pid 0) is no task. `analyse` reads the records once, in time order.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field, replace

from .ftrace import KIND_EXIT, KIND_MIGRATE, KIND_SWITCH, KIND_WAKEUP, KIND_WAKEUP_NEW

WORST_KEPT = 10
_RUNNABLE_STATE_MASK = 0xFF  # prev_state: 0 = R (yield), 0x100 = R+ (preempted)


@dataclass(frozen=True)
class Wait:
    """One stretch a task waited for a CPU."""

    ns: int
    pid: int
    name: str
    why: str  # "wakeup" | "preempted"
    since_ns: int  # woken / switched out at
    ran_ns: int  # put on a CPU at
    ran_cpu: int
    from_cpu: int  # the wakeup's target CPU, or the CPU it was switched off


def _pct(sorted_vals: list[int], p: float) -> int:
    if not sorted_vals:
        return 0
    k = min(len(sorted_vals) - 1, max(0, int(round(p / 100 * (len(sorted_vals) - 1)))))
    return sorted_vals[k]


@dataclass(frozen=True)
class Dist:
    n: int = 0
    p50_ns: int = 0
    p99_ns: int = 0
    max_ns: int = 0
    total_ns: int = 0

    @classmethod
    def of(cls, vals: list[int]) -> Dist:
        if not vals:
            return cls()
        s = sorted(vals)
        return cls(n=len(s), p50_ns=_pct(s, 50), p99_ns=_pct(s, 99), max_ns=s[-1], total_ns=sum(s))

    def to_json(self) -> dict:
        return {"n": self.n, "p50_ns": self.p50_ns, "p99_ns": self.p99_ns, "max_ns": self.max_ns,
                "total_ns": self.total_ns}


@dataclass(frozen=True)
class TaskLatency:
    pid: int
    name: str
    wakeup: Dist
    runnable: Dist
    running_ns: int
    switches_in: int
    preemptions: int
    migrations: int


@dataclass(frozen=True)
class CpuLatency:
    cpu: int
    wakeup: Dist  # of the tasks put on this CPU
    runnable: Dist
    busy_ns: int
    switches: int
    migrations_in: int


@dataclass(frozen=True)
class LatencyReport:
    window_ns: tuple[int, int]  # what was analysed
    events: int
    tasks: tuple[TaskLatency, ...]
    cpus: tuple[CpuLatency, ...]
    wakeup: Dist
    runnable: Dist
    worst: tuple[Wait, ...]  # the longest waits, longest first
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {
            "window_ns": list(self.window_ns), "events": self.events,
            "wakeup": self.wakeup.to_json(), "runnable": self.runnable.to_json(),
            "tasks": [{"pid": t.pid, "name": t.name, "wakeup": t.wakeup.to_json(),
                       "runnable": t.runnable.to_json(), "running_ns": t.running_ns,
                       "switches_in": t.switches_in, "preemptions": t.preemptions,
                       "migrations": t.migrations} for t in self.tasks],
            "cpus": [{"cpu": c.cpu, "wakeup": c.wakeup.to_json(), "runnable": c.runnable.to_json(),
                      "busy_ns": c.busy_ns, "switches": c.switches,
                      "migrations_in": c.migrations_in} for c in self.cpus],
            "worst": [w.__dict__ for w in self.worst], "notes": list(self.notes)}


@dataclass
class _Task:
    wake: list[int] = field(default_factory=list)
    runnable: list[int] = field(default_factory=list)
    running_ns: int = 0
    switches_in: int = 0
    preemptions: int = 0
    migrations: int = 0


def analyse(trace, t0: int | None = None, t1: int | None = None) -> LatencyReport:
    """The latency report of `trace` (tracefiles.Trace) between t0 and t1 (ns, guest
    clock; None = the whole trace). Waits are counted where they end (the switch-in)."""
    lo = t0 if t0 is not None else -1
    hi = t1 if t1 is not None else 1 << 64
    streams = [r.all() for r in trace.cpus.values()]
    tasks: dict[int, _Task] = {}
    runnable_since: dict[int, tuple[int, str, int]] = {}
    on_cpu: dict[int, tuple[int, int]] = {}  # pid -> (since, cpu)
    cpu_wake: dict[int, list[int]] = {c: [] for c in trace.cpus}
    cpu_run: dict[int, list[int]] = {c: [] for c in trace.cpus}
    cpu_busy = dict.fromkeys(trace.cpus, 0)
    cpu_busy_since: dict[int, int] = {}
    cpu_switches = dict.fromkeys(trace.cpus, 0)
    cpu_mig_in = dict.fromkeys(trace.cpus, 0)
    worst: list[tuple[int, int, Wait | None]] = []  # a min-heap of the longest waits
    seq = 0
    n = 0
    first = last = None

    def task(pid: int) -> _Task:
        t = tasks.get(pid)
        if t is None:
            t = tasks[pid] = _Task()
        return t

    for ts, kind, cpu, pid, a, b, _c, _eid in heapq.merge(*streams):
        if ts >= hi:
            break
        inside = ts >= lo
        if inside:
            n += 1
            first = ts if first is None else first
            last = ts
        if kind == KIND_SWITCH:
            prev, nxt = a, pid
            if prev:
                since = on_cpu.pop(prev, None)
                if since is not None and inside:
                    task(prev).running_ns += ts - max(since[0], lo)
                if not (b & _RUNNABLE_STATE_MASK):
                    runnable_since[prev] = (ts, "preempted", cpu)
                    if inside:
                        task(prev).preemptions += 1
            if cpu in cpu_busy_since and inside:
                cpu_busy[cpu] = cpu_busy.get(cpu, 0) + ts - max(cpu_busy_since[cpu], lo)
            cpu_busy_since.pop(cpu, None)
            if nxt:
                cpu_busy_since[cpu] = ts
                on_cpu[nxt] = (ts, cpu)
                r = runnable_since.pop(nxt, None)
                if inside:
                    t = task(nxt)
                    t.switches_in += 1
                    cpu_switches[cpu] = cpu_switches.get(cpu, 0) + 1
                    if r is not None and r[0] >= lo:
                        wait = ts - r[0]
                        t.runnable.append(wait)
                        cpu_run.setdefault(cpu, []).append(wait)
                        if r[1] == "wakeup":
                            t.wake.append(wait)
                            cpu_wake.setdefault(cpu, []).append(wait)
                        if len(worst) < WORST_KEPT or wait > worst[0][0]:
                            seq += 1
                            w = Wait(ns=wait, pid=nxt, name=trace.name(nxt), why=r[1],
                                     since_ns=r[0], ran_ns=ts, ran_cpu=cpu, from_cpu=r[2])
                            if len(worst) < WORST_KEPT:
                                heapq.heappush(worst, (wait, seq, w))
                            else:
                                heapq.heapreplace(worst, (wait, seq, w))
        elif kind in (KIND_WAKEUP, KIND_WAKEUP_NEW):
            if pid and pid not in on_cpu and pid not in runnable_since:
                runnable_since[pid] = (ts, "wakeup", a)
        elif kind == KIND_MIGRATE:
            if inside and pid:
                task(pid).migrations += 1
                cpu_mig_in[b] = cpu_mig_in.get(b, 0) + 1
        elif kind == KIND_EXIT:
            runnable_since.pop(pid, None)
    end = min(hi, last) if last is not None else 0
    for pid, (since, _cpu) in on_cpu.items():  # still running at the end
        if pid in tasks and since < end:
            tasks[pid].running_ns += end - max(since, lo)
    for cpu, since in cpu_busy_since.items():
        if since < end:
            cpu_busy[cpu] = cpu_busy.get(cpu, 0) + end - max(since, lo)
    all_wake = [w for t in tasks.values() for w in t.wake]
    all_run = [w for t in tasks.values() for w in t.runnable]
    tl = tuple(sorted((TaskLatency(pid=pid, name=trace.name(pid), wakeup=Dist.of(t.wake),
                                   runnable=Dist.of(t.runnable), running_ns=t.running_ns,
                                   switches_in=t.switches_in, preemptions=t.preemptions,
                                   migrations=t.migrations) for pid, t in tasks.items()),
                      key=lambda x: (-x.runnable.max_ns, x.pid)))
    cl = tuple(CpuLatency(cpu=c, wakeup=Dist.of(cpu_wake.get(c, [])),
                          runnable=Dist.of(cpu_run.get(c, [])), busy_ns=cpu_busy.get(c, 0),
                          switches=cpu_switches.get(c, 0), migrations_in=cpu_mig_in.get(c, 0))
               for c in sorted(set(cpu_wake) | set(cpu_switches)))
    notes = tuple(trace.index.get("notes") or ())
    return LatencyReport(window_ns=(first or 0, last or 0), events=n, tasks=tl, cpus=cl,
                         wakeup=Dist.of(all_wake), runnable=Dist.of(all_run),
                         worst=tuple(w for _, _, w in sorted(worst, key=lambda x: (-x[0], x[1]))),
                         notes=notes)


def summary_json(r: LatencyReport) -> dict:
    """result.json's "latency": the run's numbers `ktstr compare` and --fail-on read (ms)."""
    def v(ns: int) -> float:
        return round(ns / 1e6, 3)

    return {"wakeup_p50_ms": v(r.wakeup.p50_ns), "wakeup_p99_ms": v(r.wakeup.p99_ns),
            "wakeup_max_ms": v(r.wakeup.max_ns), "runnable_p50_ms": v(r.runnable.p50_ns),
            "runnable_p99_ms": v(r.runnable.p99_ns), "runnable_max_ms": v(r.runnable.max_ns),
            "wakeups": r.wakeup.n, "events": r.events}


# ----------------------------------------------------------------------------- text


def ms(ns: int) -> str:
    return f"{ns / 1e6:.3f}ms" if ns < 10_000_000 else f"{ns / 1e6:.1f}ms"


def sec(ns: int) -> str:
    return f"{ns / 1e9:.3f}s"


def wait_line(w: Wait) -> str:
    where = (f"woken for cpu {w.from_cpu}" if w.why == "wakeup"
             else f"preempted on cpu {w.from_cpu}")
    return (f"{ms(w.ns)} pid {w.pid} ({w.name}) {where} at {sec(w.since_ns)}, "
            f"ran on cpu {w.ran_cpu} at {sec(w.ran_ns)}")


def _d(d: Dist, ns: int) -> str:
    return ms(ns) if d.n else "-"


def report_text(r: LatencyReport, *, tasks: int = 12,
                more: str = "ktstr trace RUN --summary --tasks N") -> str:
    """The `--- latency ---` section: totals, per CPU, the busiest waiters, worst waits."""
    lines = [f"window {sec(r.window_ns[0])}-{sec(r.window_ns[1])} (guest clock), "
             f"{r.events} events",
             f"wakeup latency  p50 {ms(r.wakeup.p50_ns)}  p99 {ms(r.wakeup.p99_ns)}  "
             f"max {ms(r.wakeup.max_ns)}  (n={r.wakeup.n})",
             f"runnable wait   p50 {ms(r.runnable.p50_ns)}  p99 {ms(r.runnable.p99_ns)}  "
             f"max {ms(r.runnable.max_ns)}  (n={r.runnable.n})",
             "",
             f"{'cpu':>4} {'wake p50':>10} {'wake p99':>10} {'wake max':>10} {'wait max':>10} "
             f"{'busy':>8} {'switches':>8} {'mig in':>6}"]
    for c in r.cpus:
        lines.append(f"{c.cpu:>4} {_d(c.wakeup, c.wakeup.p50_ns):>10} "
                     f"{_d(c.wakeup, c.wakeup.p99_ns):>10} {_d(c.wakeup, c.wakeup.max_ns):>10} "
                     f"{_d(c.runnable, c.runnable.max_ns):>10} "
                     f"{sec(c.busy_ns):>8} {c.switches:>8} {c.migrations_in:>6}")
    lines += ["", f"{'pid':>7} {'task':<16} {'wake p50':>10} {'wake p99':>10} {'wake max':>10} "
              f"{'wait max':>10} {'running':>8} {'preempt':>7} {'migr':>5}"]
    for t in r.tasks[:tasks]:
        lines.append(f"{t.pid:>7} {t.name[:16]:<16} {_d(t.wakeup, t.wakeup.p50_ns):>10} "
                     f"{_d(t.wakeup, t.wakeup.p99_ns):>10} {_d(t.wakeup, t.wakeup.max_ns):>10} "
                     f"{_d(t.runnable, t.runnable.max_ns):>10} {sec(t.running_ns):>8} {t.preemptions:>7} "
                     f"{t.migrations:>5}")
    if len(r.tasks) > tasks:
        lines.append(f"... {len(r.tasks) - tasks} more tasks ({more})")
    if r.worst:
        lines += ["", "worst waits:"] + [f"  {wait_line(w)}" for w in r.worst]
    lines += [f"note: {n}" for n in r.notes]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- thresholds


@dataclass(frozen=True)
class Violation:
    what: str  # "wakeup latency" | "runnable wait"
    limit_ms: float
    wait: Wait

    def line(self) -> str:
        w = self.wait
        where = (f"woken at {sec(w.since_ns)} for cpu {w.from_cpu}" if w.why == "wakeup"
                 else f"preempted at {sec(w.since_ns)} on cpu {w.from_cpu}")
        return (f"{self.what} {ms(w.ns)} > {self.limit_ms:g}ms: pid {w.pid} ({w.name}) {where}, "
                f"ran on cpu {w.ran_cpu} at {sec(w.ran_ns)}")


def check(r: LatencyReport, max_wakeup_ms: float | None,
          max_runnable_ms: float | None) -> tuple[Violation, ...]:
    """The worst wait over each limit (one line per limit)."""
    out = []
    if max_wakeup_ms is not None:
        over = [w for w in r.worst if w.why == "wakeup" and w.ns > max_wakeup_ms * 1e6]
        if over:
            out.append(Violation("wakeup latency", max_wakeup_ms, over[0]))
        elif r.wakeup.max_ns > max_wakeup_ms * 1e6:  # the worst wakeup fell off the list
            out.append(Violation("wakeup latency", max_wakeup_ms, _find_worst(r, "wakeup")))
    if max_runnable_ms is not None and r.worst and r.worst[0].ns > max_runnable_ms * 1e6:
        out.append(Violation("runnable wait", max_runnable_ms, r.worst[0]))
    return tuple(out)


def _find_worst(r: LatencyReport, why: str) -> Wait:
    t = max(r.tasks, key=lambda t: t.wakeup.max_ns)
    return Wait(ns=t.wakeup.max_ns, pid=t.pid, name=t.name, why=why, since_ns=0, ran_ns=0,
                ran_cpu=-1, from_cpu=-1)


ERR_LATENCY_FAILED = "passed scenario but latency failed"


def apply_to_verdict(verdict, report: LatencyReport | None, violations: tuple[Violation, ...],
                     header: str):
    """The verdict with a `--- latency ---` section (in a failure's message too) and, when a
    threshold was crossed on an otherwise passing run, a failure naming task, CPU and time."""
    if report is None:
        return verdict
    body = report_text(report)
    sections = _before_repro(verdict.sections, "latency", body)
    if violations and verdict.kind == "pass" and not verdict.expected_failure:
        details = "\n".join(v.line() for v in violations)
        message = (f"{header}{ERR_LATENCY_FAILED}:\n  " + "\n  ".join(v.line() for v in violations)
                   + f"\n\n--- latency ---\n{body}")
        return replace(verdict, kind="fail", reason=ERR_LATENCY_FAILED, message=message,
                       sections={"details": details, **sections})
    message = verdict.message
    if message and verdict.kind != "pass":
        block = f"\n\n--- latency ---\n{body}"
        at = message.find(REPRO_HEADER)
        # the seed's auto-repro section stays the message's last: latency goes before it
        message = message + block if at < 0 else message[:at] + block + message[at:]
    return replace(verdict, message=message, sections=sections)


REPRO_HEADER = "\n\n--- auto-repro ---\n"


def _before_repro(sections: dict, key: str, body: str) -> dict:
    """`sections` with key: body added just before "auto-repro" (or at the end without it)."""
    out = {}
    for k, v in sections.items():
        if k == "auto-repro":
            out[key] = body
        if k != key:
            out[k] = v
    out.setdefault(key, body)
    return out
