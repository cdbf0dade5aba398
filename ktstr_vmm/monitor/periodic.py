"""Periodic capture: freeze the VM at planned moments of the workload and read its state.

`ktstr run --capture-every 1s` / `--capture-at 2s,4s` plan captures at offsets from the
workload's start (the guest's `workload_started` lifecycle frame). At each one the
capturer pauses the VM, reads the same state a failure dump holds (run queues, DSQs,
scx_sched, the scheduler's BPF maps and globals; monitor/capture.py), resumes, and writes it
as `captures/periodic_NNN.json` with one line per planned capture in `captures.jsonl`:

    {"tag": "periodic_000", "at_ms": 0, "elapsed_ms": 3, "frozen_ms": 41.2,
     "file": "captures/periodic_000.json"}
    {"tag": "periodic_004", "at_ms": 4000, "skipped": "the workload ended first"}

Times are ms since the workload started, counted in guest time: the host clock minus the
time the VM spent frozen, so later captures do not drift by the earlier ones' cost.
The tag numbering follows ktstr's (`periodic_NNN`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError

log = logging.getLogger(__name__)

MAX_CAPTURES = 100


def capture_plan(duration_ms: int, every_ms: int | None, at_ms: Sequence[int]) -> tuple[int, ...]:
    """Offsets (ms since the workload started) of the captures: 0, every, 2*every, ...
    while inside the workload, plus each `at` time; sorted, without repeats. UsageError
    (one line) for a time at or past the workload's end or more than MAX_CAPTURES."""
    plan: set[int] = set()
    if every_ms is not None:
        if every_ms <= 0:
            raise UsageError("--capture-every must be more than 0", "e.g. --capture-every 1s")
        plan.update(range(0, duration_ms, every_ms))
    for t in at_ms:
        if t < 0 or t >= duration_ms:
            raise UsageError(f"--capture-at {t}ms is not inside the workload "
                             f"(0 to {duration_ms}ms, --duration)",
                             "give times shorter than --duration")
        plan.add(t)
    if len(plan) > MAX_CAPTURES:
        raise UsageError(f"{len(plan)} periodic captures asked for; at most {MAX_CAPTURES}",
                         "capture less often (--capture-every) or run shorter")
    return tuple(sorted(plan))


def tag(i: int) -> str:
    return f"periodic_{i:03d}"


@dataclass(frozen=True)
class Hooks:
    """What the capturer needs from the run: freeze/thaw the VM, read the state (VM
    frozen) as a FailureDump, and write/record the result."""

    pause: Callable[[], None]
    resume: Callable[[], None]
    capture: Callable[[], Any]                    # -> FailureDump
    write: Callable[[str, Any], str]              # (tag, dump) -> file name in the run dir
    record: Callable[[dict[str, Any]], None]      # one captures.jsonl line


class PeriodicCapturer:
    """Runs the plan in its own thread once `start()` is called at the workload's start.
    `finish(reason)` records the captures not taken (skipped, with the reason)."""

    def __init__(self, plan: Sequence[int], hooks: Hooks,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.plan = tuple(plan)
        self.hooks, self.clock = hooks, clock
        self.records: list[dict[str, Any]] = []
        self.frozen_s = 0.0
        self._next = 0
        self._t0: float | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def target(self) -> int:
        return len(self.plan)

    @property
    def fired(self) -> int:
        with self._lock:
            return sum(1 for r in self.records if "file" in r)

    @property
    def started(self) -> bool:
        return self._t0 is not None

    def start(self, t0: float | None = None) -> None:
        if self._t0 is not None or not self.plan:
            return
        self._t0 = self.clock() if t0 is None else t0
        self._thread = threading.Thread(target=self._run, name="ktstr-capture", daemon=True)
        self._thread.start()

    def note_frozen(self, seconds: float) -> None:
        """The VM was frozen `seconds` by someone else (a user's pause, the failure dump):
        guest time did not advance, so later captures move by as much."""
        self.frozen_s += max(0.0, seconds)

    def elapsed_ms(self, now: float | None = None) -> int:
        """Guest-time ms since the workload started (frozen time taken out)."""
        if self._t0 is None:
            return 0
        now = self.clock() if now is None else now
        return max(0, round((now - self._t0 - self.frozen_s) * 1000))

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                if self._next >= len(self.plan):
                    return
                i = self._next
            at = self.plan[i]
            wait = (at - self.elapsed_ms()) / 1000
            if wait > 0 and self._stop.wait(min(wait, 0.05)):
                return
            if wait > 0.05:
                continue
            self._take(i, at)

    def _take(self, i: int, at: int) -> None:
        h = self.hooks
        rec: dict[str, Any] = {"tag": tag(i), "at_ms": at}
        paused = False
        t0 = self.clock()
        try:
            h.pause()
            paused = True
            rec["elapsed_ms"] = self.elapsed_ms(t0)
            dump = h.capture()
            rec["frozen_ms"] = round((self.clock() - t0) * 1000, 1)
            rec["file"] = h.write(tag(i), dump)
        except Exception as e:   # the VM went away, a read failed: the capture is skipped
            rec.pop("frozen_ms", None)
            rec["skipped"] = f"capture failed: {e}"
            log.warning("periodic capture %s failed: %s", tag(i), e)
        finally:
            if paused:
                try:
                    h.resume()
                except Exception as e:
                    rec.setdefault("skipped", f"could not resume the VM: {e}")
            self.frozen_s += self.clock() - t0
        with self._lock:
            self._next = i + 1
            self.records.append(rec)
        self._emit(rec)

    def _emit(self, rec: dict[str, Any]) -> None:
        try:
            self.hooks.record(rec)
        except Exception as e:
            log.warning("cannot record periodic capture %s: %s", rec.get("tag"), e)

    def finish(self, reason: str) -> list[dict[str, Any]]:
        """Stop; every planned capture not taken is recorded as skipped with `reason`."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        with self._lock:
            rest = range(self._next, len(self.plan))
            self._next = len(self.plan)
            late = [{"tag": tag(i), "at_ms": self.plan[i], "skipped": reason} for i in rest]
            self.records.extend(late)
        for r in late:
            self._emit(r)
        return list(self.records)


def summary(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """result.json's `captures`: target, fired, frozen ms, and the records."""
    taken = [r for r in records if "file" in r]
    frozen = [float(r["frozen_ms"]) for r in taken if "frozen_ms" in r]
    return {"target": len(records), "fired": len(taken),
            "frozen_ms_max": max(frozen) if frozen else None,
            "frozen_ms_mean": round(sum(frozen) / len(frozen), 1) if frozen else None,
            "items": list(records)}
