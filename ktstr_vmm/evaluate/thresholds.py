"""The monitor's judgement over its samples, ported from ktstr (src/monitor/mod.rs
MonitorSummary / MonitorThresholds, src/test_support/eval/reporting.rs trim_settle_samples).

Samples are the dicts written to monitor.jsonl (see monitor_read.Sampler.sample). The first
20 samples (boot settle, ~2 s at 100 ms) are dropped when there are more than 20, as the
seed does. Thresholds hold only when violated for `sustained_samples` consecutive samples:
run-queue imbalance (max nr_running / max(1, min nr_running)) above 4.0, a local DSQ deeper
than 50, a stuck CPU (runnable work and either its rq clock not advancing or its current
task idle/unchanged), select_cpu_fallback above 200/s, dispatch_keep_last above 100/s. The
scheduler leaving `enabled` with an error exit kind (>= SCX_EXIT_ERROR) is a violation at
once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..introspect.scx import SCX_EXIT_ERROR, exit_kind_name
from .types import EventDeltas, MonitorReport, MonitorSummary, MonitorVerdict

MONITOR_WARMUP_SAMPLES = 20
DSQ_PLAUSIBILITY_CEILING = 10_000  # the seed's: a deeper local DSQ means uninitialised memory


@dataclass(frozen=True)
class Thresholds:
    max_imbalance_ratio: float = 4.0
    max_local_dsq_depth: int = 50
    fail_on_stall: bool = True
    sustained_samples: int = 5
    max_fallback_rate: float = 200.0
    max_keep_last_rate: float = 100.0
    fail_on_scx_exit: bool = True

    @classmethod
    def for_vcpus(cls, vcpus: int) -> Thresholds:
        """ktstr's defaults, with the event-rate caps per CPU rather than per run.

        ktstr tunes its rate caps for its own scenarios; our default workload (one
        spinner per vCPU) keeps every CPU busy, where a healthy scheduler such as
        scx_simple keeps the last task at each slice end (50/s per CPU at 20 ms slices).
        A run-wide 100/s then fails every healthy run from 3 CPUs on; per CPU it marks
        what it is meant to: a CPU that keeps re-running its task more than 100 times
        a second."""
        n = max(1, vcpus)
        return cls(max_fallback_rate=200.0 * n, max_keep_last_rate=100.0 * n)


class _Tracker:
    """ktstr's SustainedViolationTracker: the worst run of consecutive violations."""

    def __init__(self) -> None:
        self.consecutive = self.worst_run = self.worst_at = 0
        self.worst_value = 0.0

    def record(self, violated: bool, value: float, at: int) -> None:
        if violated:
            self.consecutive += 1
            if self.consecutive > self.worst_run:
                self.worst_run, self.worst_value, self.worst_at = self.consecutive, value, at
        else:
            self.consecutive = 0

    def sustained(self, n: int) -> bool:
        return self.worst_run >= n


def trim_settle_samples(samples: Sequence[dict]) -> list[dict]:
    return list(samples[MONITOR_WARMUP_SAMPLES:]) if len(samples) > MONITOR_WARMUP_SAMPLES \
        else list(samples)


def _cpus(s: dict) -> list[dict]:
    c = s.get("cpus")
    return c if isinstance(c, list) else []


def sample_ok(s: dict) -> bool:
    """Every CPU read and plausible (the seed's sample_looks_valid, plus read errors)."""
    cpus = _cpus(s)
    return bool(cpus) and all("error" not in c and isinstance(c.get("nr_running"), int)
                              and c.get("local_dsq_nr", 0) <= DSQ_PLAUSIBILITY_CEILING
                              for c in cpus)


def imbalance_ratio(s: dict) -> float:
    nrs = [c["nr_running"] for c in _cpus(s)]
    if not nrs:
        return 1.0
    return max(nrs) / max(1, min(nrs))


def cpu_stuck(prev: dict, cur: dict, vm_ran: bool = True) -> bool:
    """Runnable work on the CPU in both samples, and either its rq clock frozen while the
    VM ran (another CPU's clock advanced: a paused or host-starved VM freezes every clock
    at once and proves nothing - ktstr exempts preempted vCPUs the same way), or its
    current task the idle task with the clock advancing (work queued, nothing picked)."""
    if prev.get("nr_running", 0) == 0 or cur.get("nr_running", 0) == 0:
        return False
    if host_preempted(prev, cur):
        return False
    clock = cur.get("clock_ns", 0)
    if clock and clock == prev.get("clock_ns"):
        return vm_ran
    if clock <= prev.get("clock_ns", 0) or cur.get("curr_pid") != prev.get("curr_pid"):
        return False
    return cur.get("curr_class") == "idle"


def host_preempted(prev: dict, cur: dict) -> bool:
    """The vCPU's host thread waited for a host CPU and hardly ran between the two samples
    (engines that know their vCPU threads add host_run_ns/host_wait_ns: the KVM engine). Its
    rq clock cannot advance then, and that says nothing about the scheduler - as ktstr
    exempts vCPUs the host preempted."""
    keys = ("host_run_ns", "host_wait_ns")
    if not all(k in prev and k in cur for k in keys):
        return False
    ran = cur["host_run_ns"] - prev["host_run_ns"]
    waited = cur["host_wait_ns"] - prev["host_wait_ns"]
    return waited > 0 and ran < waited


def vm_ran_between(prev: dict, cur: dict) -> list[bool]:
    """Per CPU: did some *other* CPU's rq clock advance between the two samples?"""
    adv = [bool(b.get("clock_ns", 0) > a.get("clock_ns", 0))
           for a, b in zip(_cpus(prev), _cpus(cur), strict=False)]
    total = sum(adv)
    return [total - a > 0 for a in adv]


def _events(s: dict) -> dict[str, int] | None:
    ev = (s.get("scx") or {}).get("events")
    return ev if isinstance(ev, dict) else None


def event_deltas(samples: Sequence[dict]) -> EventDeltas | None:
    with_ev = [s for s in samples if _events(s)]
    if not with_ev:
        return None
    first, last = with_ev[0], with_ev[-1]
    f, lst = _events(first), _events(last)

    def d(*names: str) -> int:
        for n in names:
            if n in lst:
                return max(0, lst.get(n, 0) - f.get(n, 0))
        return 0

    secs = max(0.0, float(last.get("t", 0)) - float(first.get("t", 0)))
    fb, kl = d("select_cpu_fallback"), d("dispatch_keep_last")
    return EventDeltas(
        total_fallback=fb, fallback_rate=fb / secs if secs > 0 else 0.0,
        total_dispatch_keep_last=kl, keep_last_rate=kl / secs if secs > 0 else 0.0,
        total_dispatch_offline=d("dispatch_local_dsq_offline"),
        total_reenq_immed=d("reenq_immed"),
        total_reenq_local_repeat=d("reenq_local_repeat", "reenq_repeat"),
        total_refill_slice_dfl=d("refill_slice_dfl"),
        total_bypass_activate=d("bypass_activate"), total_bypass_dispatch=d("bypass_dispatch"),
        total_bypass_duration=d("bypass_duration"), total_insert_not_owned=d("insert_not_owned"),
        total_sub_bypass_dispatch=d("sub_bypass_dispatch"))


def summarize(samples: Sequence[dict]) -> MonitorSummary:
    if not samples:
        return MonitorSummary()
    valid = [s for s in samples if sample_ok(s)]
    ratios = [imbalance_ratio(s) for s in valid]
    readings = [c for s in valid for c in _cpus(s)]
    stuck = 0
    for prev, cur in zip(valid, valid[1:], strict=False):
        ran = vm_ran_between(prev, cur)
        for a, b, r in zip(_cpus(prev), _cpus(cur), ran, strict=False):
            stuck += cpu_stuck(a, b, r)
    n = len(readings)
    return MonitorSummary(
        total_samples=len(samples),
        max_imbalance_ratio=max([1.0, *ratios]),
        max_local_dsq_depth=max((c.get("local_dsq_nr", 0) for c in readings), default=0),
        stuck_count=stuck,
        avg_imbalance_ratio=sum(ratios) / len(ratios) if ratios else 0.0,
        avg_nr_running=sum(c["nr_running"] for c in readings) / n if n else 0.0,
        avg_local_dsq_depth=sum(c.get("local_dsq_nr", 0) for c in readings) / n if n else 0.0,
        event_deltas=event_deltas(samples))


def _inconclusive(summary: str) -> MonitorVerdict:
    return MonitorVerdict(kind="inconclusive", summary=summary)


def evaluate(samples: Sequence[dict], th: Thresholds = Thresholds()) -> MonitorVerdict:
    if not samples:
        return _inconclusive("no monitor samples")
    valid = [s for s in samples if sample_ok(s)]
    if not valid:
        why = next((f for s in samples for f in s.get("flags", ())), "no CPU could be read")
        return _inconclusive(f"no usable monitor samples ({len(samples)} read, none "
                             f"plausible: {why})")
    clocks = {c.get("clock_ns") for s in valid for c in _cpus(s)}
    if len(clocks) == 1 and sum(len(_cpus(s)) for s in valid) > 1:
        return _inconclusive("monitor data not yet initialized")
    details: list[str] = []
    imb, dsq = _Tracker(), _Tracker()
    worst_dsq_cpu = 0
    for i, s in enumerate(samples):
        if not sample_ok(s):
            imb.record(False, 0.0, i)
            dsq.record(False, 0.0, i)
            continue
        r = imbalance_ratio(s)
        imb.record(r > th.max_imbalance_ratio, r, i)
        worst, worst_cpu = 0, 0
        for c in _cpus(s):
            if c["local_dsq_nr"] > th.max_local_dsq_depth and c["local_dsq_nr"] > worst:
                worst, worst_cpu = c["local_dsq_nr"], c["cpu"]
        dsq.record(worst > 0, float(worst), i)
        if worst and dsq.worst_value == worst:
            worst_dsq_cpu = worst_cpu
    if imb.sustained(th.sustained_samples):
        details.append(f"imbalance ratio {imb.worst_value:.1f} exceeded threshold "
                       f"{th.max_imbalance_ratio:.1f} for {imb.worst_run} consecutive samples "
                       f"(ending at sample {imb.worst_at})")
    if dsq.sustained(th.sustained_samples):
        details.append(f"local DSQ depth {int(dsq.worst_value)} on cpu{worst_dsq_cpu} exceeded "
                       f"threshold {th.max_local_dsq_depth} for {dsq.worst_run} consecutive "
                       f"samples (ending at sample {dsq.worst_at})")
    if th.fail_on_stall:
        ncpu = max(len(_cpus(s)) for s in samples)
        stall = [_Tracker() for _ in range(ncpu)]
        for i in range(1, len(samples)):
            prev, cur = samples[i - 1], samples[i]
            ok = sample_ok(prev) and sample_ok(cur)
            ran = vm_ran_between(prev, cur)
            for cpu, (a, b, r) in enumerate(zip(_cpus(prev), _cpus(cur), ran, strict=False)):
                stall[cpu].record(ok and cpu_stuck(a, b, r), float(b.get("clock_ns", 0)), i)
        for cpu, tr in enumerate(stall):
            if tr.sustained(th.sustained_samples):
                details.append(f"stuck cpu{cpu} for {tr.worst_run} consecutive samples (ending "
                               f"at sample {tr.worst_at}, clock={int(tr.worst_value)})")
    details += _rate_violations(samples, th)
    if th.fail_on_scx_exit:
        details += _scx_exit(samples)
    if details:
        return MonitorVerdict(kind="fail", summary=f"monitor FAILED: {len(details)} violation(s)",
                              details=tuple(details))
    return MonitorVerdict()


def _rate_violations(samples: Sequence[dict], th: Thresholds) -> list[str]:
    out = []
    for name, limit, label in (("select_cpu_fallback", th.max_fallback_rate, "fallback"),
                               ("dispatch_keep_last", th.max_keep_last_rate, "keep_last")):
        tr = _Tracker()
        for i in range(1, len(samples)):
            a, b = _events(samples[i - 1]), _events(samples[i])
            dt = float(samples[i].get("t", 0)) - float(samples[i - 1].get("t", 0))
            if a is None or b is None or dt <= 0 or name not in a or name not in b:
                tr.record(False, 0.0, i)
                continue
            rate = (b[name] - a[name]) / dt
            tr.record(rate > limit, rate, i)
        if tr.sustained(th.sustained_samples):
            out.append(f"{label} rate {tr.worst_value:.1f}/s exceeded threshold {limit:.1f}/s "
                       f"for {tr.worst_run} consecutive intervals (ending at sample "
                       f"{tr.worst_at})")
    return out


def _scx_exit(samples: Sequence[dict]) -> list[str]:
    """The scheduler leaving `enabled` with an error exit kind latched. A normal
    unregistration (DONE, UNREG*, SYSRQ) at the end of a run is not a violation."""
    seen_enabled = False
    for i, s in enumerate(samples):
        scx = s.get("scx") or {}
        state, kind = scx.get("state"), scx.get("exit_kind")
        if state == "enabled" and not kind:
            seen_enabled = True
        elif isinstance(kind, int) and kind >= SCX_EXIT_ERROR:
            where = "" if seen_enabled else " (already at the first sample)"
            return [f"scheduler state left enabled: {state} ({exit_kind_name(kind)}) at "
                    f"sample {i}{where}"]
    return []


def report(samples: Sequence[dict], th: Thresholds = Thresholds(), *,
           thresholds_enabled: bool = True, unavailable: str | None = None) -> MonitorReport:
    """The MonitorReport of a run: settle samples trimmed, then summary and verdict."""
    if unavailable:
        return MonitorReport(verdict=_inconclusive(unavailable),
                             thresholds_enabled=thresholds_enabled)
    trimmed = trim_settle_samples(samples)
    return MonitorReport(summary=summarize(trimmed), verdict=evaluate(trimmed, th),
                         thresholds_enabled=thresholds_enabled)


def unavailable_report(reason: str, thresholds_enabled: bool = True) -> MonitorReport:
    """The report of a run whose monitor could not run (`reason`, one line)."""
    return report([], thresholds_enabled=thresholds_enabled,
                  unavailable=f"monitor unavailable: {reason}")
