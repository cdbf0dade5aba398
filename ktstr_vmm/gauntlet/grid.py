"""A gauntlet as a matrix: rows are topologies, columns scheduler (x kernel), each cell
the runs of that (scheduler, topology, kernel) - every repeat's newest run - and its
verdict, the worst of them. The workstation's gauntlet screen draws this; cells that
have no run yet are queued. Pure: a record's cells and RunSummary rows in, a Grid out.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..rundir.summary import RunSummary
from .matrix import Cell

QUEUED = "queued"
# Worst first: the verdict a cell shows when its repeats disagree, and the order of
# "failures first".
SEVERITY = ("fail", "corrupt", "interrupted", "inconclusive", "running", QUEUED, "skip", "pass")


def severity(verdict: str) -> int:
    v = "running" if verdict not in SEVERITY else verdict
    return SEVERITY.index(v)


@dataclass(frozen=True)
class GridCell:
    scheduler: str
    topology: str
    kernel: str | None
    keys: tuple[str, ...]  # the record's cell keys (one per repeat)
    runs: tuple[RunSummary, ...]  # the newest run of each repeat that has one

    @property
    def verdict(self) -> str:
        """Worst verdict of the repeats; a repeat without a run counts as queued."""
        vs = [r.verdict for r in self.runs]
        if len(self.runs) < len(self.keys):
            vs.append(QUEUED)
        return min(vs, key=severity) if vs else QUEUED

    @property
    def newest(self) -> RunSummary | None:
        return max(self.runs, key=lambda r: r.started, default=None)

    @property
    def worst_run(self) -> RunSummary | None:
        """The run to open: the worst repeat (the newest of those)."""
        if not self.runs:
            return None
        return min(self.runs, key=lambda r: (severity(r.verdict), -r.started))

    def text(self) -> str:
        v = self.verdict
        if len(self.keys) == 1:
            r = self.runs[0] if self.runs else None
            return r.phase if r is not None and r.is_live and r.phase else v
        same = sum(1 for r in self.runs if r.verdict == v)
        return f"{v} {same}/{len(self.keys)}" if v != QUEUED else f"{len(self.runs)}/{len(self.keys)}"


@dataclass(frozen=True)
class Grid:
    topologies: tuple[str, ...]
    columns: tuple[tuple[str, str | None], ...]  # (scheduler, kernel)
    cells: dict[tuple[str, str, str | None], GridCell]  # (topology, scheduler, kernel)

    def cell(self, topology: str, column: tuple[str, str | None]) -> GridCell:
        return self.cells[(topology, *column)]

    def column_label(self, column: tuple[str, str | None]) -> str:
        sched, kernel = column
        name = sched.rsplit("/", 1)[-1]
        kernels = {k for _, k in self.columns}
        return f"{name} @ {kernel or 'newest'}" if len(kernels) > 1 else name

    def rows(self, failures_first: bool) -> list[str]:
        """Topologies, those with the worst cells first when asked (stable otherwise)."""
        if not failures_first:
            return list(self.topologies)
        worst = {t: min(severity(self.cell(t, c).verdict) for c in self.columns)
                 for t in self.topologies}
        return sorted(self.topologies, key=lambda t: worst[t])

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self.cells.values():
            out[c.verdict] = out.get(c.verdict, 0) + 1
        return out


def build_grid(cells: list[Cell], runs: list[RunSummary]) -> Grid:
    newest: dict[str, RunSummary] = {}
    for r in runs:
        if r.gauntlet_cell and (r.gauntlet_cell not in newest
                                or r.started >= newest[r.gauntlet_cell].started):
            newest[r.gauntlet_cell] = r
    topologies: list[str] = []
    columns: list[tuple[str, str | None]] = []
    keys: dict[tuple[str, str, str | None], list[str]] = {}
    for c in cells:
        if c.topology not in topologies:
            topologies.append(c.topology)
        if (c.scheduler, c.kernel) not in columns:
            columns.append((c.scheduler, c.kernel))
        keys.setdefault((c.topology, c.scheduler, c.kernel), []).append(c.key)
    grid = {k: GridCell(k[1], k[0], k[2], tuple(ks),
                        tuple(newest[x] for x in ks if x in newest))
            for k, ks in keys.items()}
    return Grid(tuple(topologies), tuple(columns), grid)
