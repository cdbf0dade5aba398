"""Running a gauntlet on Dask distributed: one task per cell, gathered as they finish.

Dask is the only scheduler of work here. The client submits every cell that is not
already judged (resume) as a task with retries=1; an embedded LocalCluster (one worker
process per VM the machine can hold, one thread each) runs them, or a real cluster at
`scheduler_address`. Cells report "started"/"finished" through the scheduler's event log
(Worker.log_event -> Client.subscribe_topic), which is where running/queued and the
attempts per cell come from.

Faults:
- a worker that dies mid-cell: the scheduler gives the task to another worker
  (allowed-failures=1 on the embedded cluster); a second death makes it KilledWorker and
  the cell is reported lost with the workers that died. On a cluster whose
  allowed-failures is higher, the client cancels a cell at its third start itself.
- `ktstr run` ending without a result: CellError, retried once (retries=1), then the
  cell is an error with the run's last stderr line.
- Ctrl-C / SIGTERM: every queued task is cancelled, each worker ends its running cells
  (Client.run(end_cells): SIGTERM, the run stops QEMU and marks itself interrupted), and
  every cell that had finished is already in the store.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError
from ..store.store import Store
from .cell import CellError, end_cells, run_cell
from .matrix import Cell
from .record import GauntletRecord, judged_cells, unpack_run

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, LOST, ERROR, SKIPPED, INTERRUPTED = (
    "queued", "running", "done", "lost", "error", "skipped", "interrupted")
MAX_STARTS = 2  # a cell is tried at most twice (the first run and one retry)
VM_OVERHEAD_MIB = 384  # QEMU, the `ktstr run` process and its monitor, beside guest RAM
POLL_S = 0.5  # how often the progress line is redrawn while nothing finishes


@dataclass
class CellState:
    cell: Cell
    status: str = QUEUED
    verdict: str | None = None
    run_id: str | None = None
    worker: str | None = None
    host: str | None = None
    workers_tried: list[str] = field(default_factory=list)
    reason: str = ""
    started: float | None = None
    wall_s: float | None = None
    first_line: str = ""
    via: str | None = None  # "store": written straight into it; "sent": came back via Dask

    @property
    def attempts(self) -> int:
        return len(self.workers_tried)

    def to_json(self) -> dict[str, Any]:
        return {**self.cell.to_json(), "status": self.status, "verdict": self.verdict,
                "run_id": self.run_id, "worker": self.worker, "host": self.host,
                "attempts": self.attempts, "workers_tried": self.workers_tried,
                "reason": self.reason, "wall_s": self.wall_s, "first_line": self.first_line,
                "via": self.via}


@dataclass(frozen=True)
class Progress:
    """What the terminal shows: counts, the newest finished cell, an ETA."""

    total: int
    done: int
    running: int
    queued: int
    verdicts: dict[str, int]
    elapsed_s: float
    eta_s: float | None
    workers: int
    finished: CellState | None = None  # the cell that just finished, if any


ProgressCallback = Callable[[Progress], None]


def default_workers(cells: list[Cell], memory_mib: Callable[[str], int]) -> int:
    """Worker processes for the embedded cluster: one per CPU (a TCG VM keeps one busy),
    no more than the RAM holds for the biggest cell's guest, no more than the cells."""
    cpus = len(os.sched_getaffinity(0))
    avail = _mem_available_mib()
    biggest = max((memory_mib(c.topology) for c in cells), default=256) + VM_OVERHEAD_MIB
    by_mem = max(1, avail // biggest) if avail else cpus
    return max(1, min(cpus, by_mem, len(cells) or 1))


def _mem_available_mib() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def open_cluster(workers: int | None, scheduler_address: str | None):
    """(client, cluster or None). The embedded cluster: processes, one thread each, no
    dashboard, allowed-failures=1, worker-saturation=1.0 (a worker never queues a second
    VM behind its first)."""
    import dask
    from distributed import Client, LocalCluster

    if not log.isEnabledFor(logging.DEBUG):  # -v shows Dask's own chatter
        for name in ("distributed", "bokeh", "tornado"):
            logging.getLogger(name).setLevel(logging.ERROR)
    if scheduler_address:
        try:
            return Client(scheduler_address, timeout="20s"), None
        except (OSError, TimeoutError) as e:
            raise UsageError(f"cannot reach the Dask scheduler at {scheduler_address}: {e}",
                             "start one with dask scheduler, or drop --scheduler-address") from e
    with dask.config.set({"distributed.scheduler.allowed-failures": 1,
                          "distributed.scheduler.worker-saturation": 1.0,
                          "distributed.admin.log-events": 10_000}):
        cluster = LocalCluster(n_workers=workers or 1, threads_per_worker=1, processes=True,
                               dashboard_address=None, memory_limit=0,
                               silence_logs=logging.ERROR)
        try:
            client = Client(cluster)
        except BaseException:
            cluster.close()
            raise
    return client, cluster


class GauntletRun:
    """One pass over a gauntlet's cells on a connected client."""

    def __init__(self, client, store: Store, record: GauntletRecord, *,
                 judged: dict[str, str] | None = None, no_auto_repro: bool = True,
                 send_runs: bool = False, on_progress: ProgressCallback | None = None) -> None:
        self.client, self.store, self.record = client, store, record
        self.gid = record.id
        self.topic = f"ktstr-gauntlet-{self.gid}"
        self.on_progress = on_progress or (lambda p: None)
        self.no_auto_repro = no_auto_repro
        self.send_runs = send_runs
        self.states: dict[str, CellState] = {}
        for cell in record.matrix.cells():
            st = CellState(cell)
            if judged and cell.key in judged:
                st.status, st.run_id = SKIPPED, judged[cell.key]
                st.verdict = _verdict_of(store, judged[cell.key])
            self.states[cell.key] = st
        self.events: list[dict[str, Any]] = []  # appended by the client's event-loop thread
        self.futures: dict[Any, str] = {}
        self.t0 = time.monotonic()
        self.interrupted = False

    # ------------------------------------------------------------------ run
    def run(self) -> list[CellState]:
        from distributed import wait

        m = self.record.matrix
        ctx = {"gauntlet": self.gid, "token": self.record.token, "store": str(self.store.root),
               "topic": self.topic, "duration_s": m.duration_s, "workload": m.workload,
               "sched_args": m.sched_args, "no_auto_repro": self.no_auto_repro,
               "send_runs": self.send_runs}
        self.client.subscribe_topic(self.topic, self.events.append)
        try:
            for i, st in enumerate(self.states.values()):
                if st.status == SKIPPED:
                    continue
                fut = self.client.submit(run_cell, st.cell.to_json(), ctx, retries=1,
                                         pure=False, key=f"ktstr-cell-{self.gid}-{i}")
                self.futures[fut] = st.cell.key
            pending = set(self.futures)
            self._report(None)
            while pending:
                try:
                    done, pending = wait(list(pending), timeout=POLL_S,
                                         return_when="FIRST_COMPLETED")
                except TimeoutError:  # nothing finished within POLL_S: redraw and wait on
                    done = set()
                self._drain_events(pending)
                for fut in done:
                    self._report(self._finish(fut))
                if not done:
                    self._report(None)
        except KeyboardInterrupt:
            self.interrupted = True
            self.cancel()
        finally:
            with contextlib.suppress(Exception):
                self.client.unsubscribe_topic(self.topic)
        return list(self.states.values())

    def cancel(self) -> None:
        """Cancel every task, end the cells still running on the workers, keep the rest."""
        futs = list(self.futures)
        with contextlib.suppress(Exception):
            self.client.cancel(futs, force=True)
        with contextlib.suppress(Exception):
            self.client.run(end_cells, self.gid)
        for fut, key in self.futures.items():
            st = self.states[key]
            if st.status in (QUEUED, RUNNING):
                if fut.status == "finished":
                    with contextlib.suppress(Exception):
                        self._finish(fut)
                        continue
                st.status, st.reason = INTERRUPTED, "cancelled (Ctrl-C)"
        # A cell that finished on its worker just before the cancel but whose result had
        # not reached us yet is in the store already (a shared store): it counts as done.
        with contextlib.suppress(Exception):
            judged = judged_cells(self.store, self.gid)
            for st in self.states.values():
                if st.status == INTERRUPTED and st.cell.key in judged:
                    st.status, st.reason, st.run_id = DONE, "", judged[st.cell.key]
                    st.verdict, st.via = _verdict_of(self.store, st.run_id), "store"

    # ------------------------------------------------------------------ internals
    def _drain_events(self, pending: set) -> None:
        while self.events:
            _, msg = self.events.pop(0)
            if not isinstance(msg, dict) or msg.get("cell") not in self.states:
                continue
            st = self.states[msg["cell"]]
            if msg.get("event") == "started" and st.status in (QUEUED, RUNNING):
                st.status, st.started = RUNNING, time.monotonic()
                st.worker, st.host = msg.get("worker"), msg.get("host")
                st.workers_tried.append(str(msg.get("worker")))
                if st.attempts > MAX_STARTS:
                    # A cluster that allows more worker deaths than we do: stop it here.
                    for fut, key in self.futures.items():
                        if key == st.cell.key:
                            self.client.cancel([fut], force=True)
                            pending.discard(fut)
                    st.status = LOST
                    st.reason = self._lost_reason(st)

    def _finish(self, fut) -> CellState:
        from distributed import KilledWorker

        st = self.states[self.futures[fut]]
        if st.status in (LOST, DONE):
            return st
        if st.started is not None:
            st.wall_s = round(time.monotonic() - st.started, 3)
        if fut.status == "cancelled":
            st.status = INTERRUPTED if self.interrupted else LOST
            st.reason = st.reason or "cancelled"
            return st
        exc = fut.exception() if fut.status == "error" else None
        if isinstance(exc, KilledWorker):
            self._drain_events(set())
            st.status, st.reason = LOST, self._lost_reason(st, exc)
            return st
        if exc is not None:
            st.status = ERROR
            st.reason = str(exc) if isinstance(exc, CellError) else f"{type(exc).__name__}: {exc}"
            return st
        res = fut.result()
        st.run_id, st.verdict = res.get("run_id"), res.get("verdict")
        st.worker, st.host = res.get("worker") or st.worker, res.get("host") or st.host
        st.wall_s = res.get("wall_s", st.wall_s)
        st.first_line = res.get("first_line") or ""
        if res.get("packed"):
            st.run_id, st.via = unpack_run(self.store, res["packed"]), "sent"
        else:
            st.via = "store"
            self.store.refresh_run(st.run_id)
        if res.get("phase") == "interrupted":
            st.status, st.verdict = INTERRUPTED, None
            st.reason = "the run was interrupted on the worker"
        else:
            st.status = DONE
        return st

    def _lost_reason(self, st: CellState, exc: Exception | None = None) -> str:
        tried = [w for w in st.workers_tried if w and w != "None"]
        if not tried and exc is not None:
            tried = [getattr(getattr(exc, "last_worker", None), "address", "?")]
        return (f"lost: the worker running it died {len(tried) or 'more than once'} time(s) "
                f"({', '.join(tried)}); see the Dask workers' logs")

    def _report(self, finished: CellState | None) -> None:
        states = list(self.states.values())
        done = [s for s in states if s.status not in (QUEUED, RUNNING)]
        running = sum(1 for s in states if s.status == RUNNING)
        queued = sum(1 for s in states if s.status == QUEUED)
        verdicts: dict[str, int] = {}
        for s in done:
            k = s.verdict or s.status
            verdicts[k] = verdicts.get(k, 0) + 1
        walls = [s.wall_s for s in done if s.wall_s and s.status == DONE]
        try:
            workers = max(1, sum(self.client.nthreads().values()))
        except Exception:  # the scheduler went away; the loop notices on its own
            workers = 1
        eta = None
        if walls and (running or queued):
            avg = sum(walls) / len(walls)
            eta = avg * (queued + running) / min(workers, queued + running)
            now = time.monotonic()
            eta -= min(avg, sum(now - s.started for s in states
                                if s.status == RUNNING and s.started) / max(1, running))
            eta = max(0.0, eta)
        self.on_progress(Progress(len(states), len(done), running, queued, verdicts,
                                  time.monotonic() - self.t0, eta, workers, finished))


def _verdict_of(store: Store, run_id: str) -> str | None:
    with contextlib.suppress(Exception):
        return store.get(run_id).verdict
    return None


def summary_exit_code(states: list[CellState], interrupted: bool) -> int:
    """0 every cell passed (or skipped by its scheduler); 1 any failed, was lost or erred;
    3 only inconclusive ones besides passes; 130 interrupted."""
    if interrupted:
        return 130
    if any(s.status in (LOST, ERROR, INTERRUPTED) or s.verdict == "fail" for s in states):
        return 1
    if any(s.verdict == "inconclusive" for s in states):
        return 3
    return 0
