"""ktstr's summary of the guest's per-worker measurements: the `--- stats ---` section
(`4 workers, 4 cpus, 2 migrations, worst_spread=0.0%, worst_gap=21ms` and one `  cgN: ...`
line per workload group), recomputed here from the worker records of a TestResult
(guest/messages.py), never taken from the guest.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..guest.messages import TestResult
from .sections import stats_body
from .types import CgroupStats, ScenarioStats
from .types import WorkerStats as EvalWorker


@dataclass(frozen=True)
class GroupStats:
    """ktstr's per-cgroup summary (the `  cgN: ...` lines of `--- stats ---`)."""

    index: int
    kind: str
    workers: int
    cpus: int
    spread: float  # (max - min) / max of per-worker CPU time, percent
    max_gap_ms: int
    migrations: int
    iterations: int


def groups(tr: TestResult) -> tuple[GroupStats, ...]:
    out = []
    for g in sorted({w.group for w in tr.workers}):
        ws = [w for w in tr.workers if w.group == g]
        times = [w.cpu_ns for w in ws]
        spread = (max(times) - min(times)) / max(times) * 100.0 if max(times) > 0 else 0.0
        out.append(GroupStats(
            index=g, kind=ws[0].kind, workers=len(ws),
            cpus=len(set().union(*(w.cpus for w in ws))), spread=spread,
            max_gap_ms=max(w.max_gap_ns for w in ws) // 1_000_000,
            migrations=sum(w.migrations for w in ws),
            iterations=sum(w.iterations for w in ws)))
    return tuple(out)


def scenario_stats(tr: TestResult, extra_lines: tuple[str, ...] = ()) -> ScenarioStats:
    """The evaluation's view of these measurements (the seed's ScenarioStats);
    `extra_lines` (the workloads' measures) follow the seed's lines in the section."""
    gs = groups(tr)
    cpus = set().union(*(w.cpus for w in tr.workers)) if tr.workers else set()
    return ScenarioStats(
        total_workers=len(tr.workers), total_cpus=len(cpus),
        total_migrations=sum(w.migrations for w in tr.workers),
        worst_spread=max((g.spread for g in gs), default=0.0),
        worst_gap_ms=max((g.max_gap_ms for g in gs), default=0),
        cgroups=tuple(CgroupStats(num_workers=g.workers, num_cpus=g.cpus, spread=g.spread,
                                  max_gap_ms=g.max_gap_ms, total_migrations=g.migrations,
                                  total_iterations=g.iterations) for g in gs),
        workers=tuple(
            EvalWorker(worker=i, cgroup=w.group, kind=w.kind, cpu_time_ns=w.cpu_ns,
                       wall_time_ns=w.wall_ns, iterations=w.iterations,
                       migrations=w.migrations, max_gap_ms=w.max_gap_ns // 1_000_000,
                       cpus=w.cpus)
            for i, w in enumerate(tr.workers)),
        extra_lines=extra_lines)


def stats_section(tr: TestResult) -> str:
    """The body of the seed's `--- stats ---` section (evaluation's own formatter)."""
    return stats_body(scenario_stats(tr))


def stats_line(tr: TestResult) -> str:
    """`4 workers, 4 cpus, 2 migrations, worst_spread=0.0%, worst_gap=21ms`"""
    return stats_section(tr).split("\n", 1)[0]
