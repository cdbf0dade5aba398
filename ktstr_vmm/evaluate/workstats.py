"""Per-worker measurements from the guest and ktstr's summary of them: the `--- stats ---`
section (`4 workers, 4 cpus, 2 migrations, worst_spread=0.0%, worst_gap=21ms` and one
`  cgN: ...` line per workload group). Built by guestmsg.parse_payload from TestResult
frames; the summary is recomputed here from the worker records, not taken from the guest.
"""

from __future__ import annotations

from dataclasses import dataclass

from .sections import stats_body
from .types import CgroupStats, ScenarioStats
from .types import WorkerStats as EvalWorker


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


@dataclass(frozen=True)
class TestResult:
    __test__ = False  # not a pytest class

    scheduler: str  # guest path of the scheduler, "" for a baseline run
    duration_ms: int
    workers: tuple[WorkerStats, ...]
    notes: tuple[str, ...] = ()

    @property
    def baseline(self) -> bool:
        return not self.scheduler

    def groups(self) -> tuple[GroupStats, ...]:
        out = []
        for g in sorted({w.group for w in self.workers}):
            ws = [w for w in self.workers if w.group == g]
            times = [w.cpu_ns for w in ws]
            spread = (max(times) - min(times)) / max(times) * 100.0 if max(times) > 0 else 0.0
            out.append(GroupStats(
                index=g, kind=ws[0].kind, workers=len(ws),
                cpus=len(set().union(*(w.cpus for w in ws))), spread=spread,
                max_gap_ms=max(w.max_gap_ns for w in ws) // 1_000_000,
                migrations=sum(w.migrations for w in ws),
                iterations=sum(w.iterations for w in ws)))
        return tuple(out)

    def scenario_stats(self) -> ScenarioStats:
        """The evaluation's view of these measurements (the seed's ScenarioStats)."""
        groups = self.groups()
        cpus = set().union(*(w.cpus for w in self.workers)) if self.workers else set()
        return ScenarioStats(
            total_workers=len(self.workers), total_cpus=len(cpus),
            total_migrations=sum(w.migrations for w in self.workers),
            worst_spread=max((g.spread for g in groups), default=0.0),
            worst_gap_ms=max((g.max_gap_ms for g in groups), default=0),
            cgroups=tuple(CgroupStats(num_workers=g.workers, num_cpus=g.cpus, spread=g.spread,
                                      max_gap_ms=g.max_gap_ms, total_migrations=g.migrations,
                                      total_iterations=g.iterations) for g in groups),
            workers=tuple(
                EvalWorker(worker=i, cgroup=w.group, kind=w.kind, cpu_time_ns=w.cpu_ns,
                           wall_time_ns=w.wall_ns, iterations=w.iterations,
                           migrations=w.migrations, max_gap_ms=w.max_gap_ns // 1_000_000,
                           cpus=w.cpus)
                for i, w in enumerate(self.workers)))

    def stats_section(self) -> str:
        """The body of the seed's `--- stats ---` section (evaluation's own formatter)."""
        return stats_body(self.scenario_stats())

    def stats_line(self) -> str:
        """`4 workers, 4 cpus, 2 migrations, worst_spread=0.0%, worst_gap=21ms`"""
        return self.stats_section().split("\n", 1)[0]
