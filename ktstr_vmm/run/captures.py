"""A run's periodic captures and temporal assertions: the runner's side of periodic.py and
temporal.py.

    cs = CaptureSession(rd, spec, machine=lambda: run.machine, freeze_lock=lock)
    cs.monitor_ready(monitor)          # once the monitor runs (or could not)
    cs.on_guest(state)                 # after each batch of frames: starts at the
                                       # workload_started frame, stops at workload_done
    cs.finish("the VM stopped first")  # when the VM is gone
    findings = cs.judge(samples, monitor_t0)   # temporal assertions, for the judge

Captures go to `captures/<tag>.json` (FailureDump JSON) and `captures.jsonl`, and each is an
event in events.jsonl (`capture`) so the timeline can place it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from ..errors import EngineError, UsageError
from ..evaluate import types as ev
from ..evaluate.temporal import (
    Capture,
    Findings,
    MonitorSample,
    evaluate_assertions,
    merge_findings,
    parse_assertions,
    sources,
)
from ..fsutil import append_line, atomic_write_json
from ..monitor.periodic import Hooks, PeriodicCapturer, capture_plan, summary
from ..rundir.captures import capture_file
from ..rundir.dumps import dump_to_json
from ..rundir.layout import CAPTURES, CAPTURES_INDEX, RunDir
from ..spec import RunSpec

ENDED = "the workload ended first"
VM_GONE = "the VM stopped first"


def plan_for(spec: RunSpec) -> tuple[int, ...]:
    return capture_plan(round(spec.duration_s * 1000), spec.capture_every_ms, spec.capture_at_ms)


def check_spec(spec: RunSpec) -> None:
    """UsageError (one line) for bad capture times or assertions, before anything boots."""
    plan = plan_for(spec)
    assertions = parse_assertions(spec.assertions)
    if not plan:
        needs = sorted(sources(assertions) - {"monitor"})
        if needs:
            first = next(a for a in assertions
                         if any(f.split(".", 1)[0] in needs for f in a.fields))
            raise UsageError(f"--assert {first.text!r} reads periodic captures, but none are "
                             "planned", "add --capture-every DUR or --capture-at T1,T2")


class CaptureSession:
    def __init__(self, rd: RunDir, spec: RunSpec, machine: Callable[[], Any],
                 freeze_lock: threading.Lock) -> None:
        self.rd, self.spec = rd, spec
        self.plan = plan_for(spec)
        self.assertions = parse_assertions(spec.assertions)
        self.machine = machine
        self.freeze_lock = freeze_lock
        self.capturer: PeriodicCapturer | None = None
        self.unavailable: str | None = None
        self.workload_t0: float | None = None
        self.records: list[dict[str, Any]] = []
        self.done = False
        self.user_paused = False  # the user froze the VM: a capture reads it as it is

    @property
    def active(self) -> bool:
        return bool(self.plan or self.assertions)

    # ------------------------------------------------------------------ capture
    def monitor_ready(self, mon: Any) -> None:
        if not self.plan:
            return
        if not hasattr(mon, "capture"):
            self.unavailable = f"monitor unavailable: {getattr(mon, 'reason', '?')}"
            return
        self.capturer = PeriodicCapturer(self.plan, self._hooks(mon))

    def _hooks(self, mon: Any) -> Hooks:
        held = {"paused": False}

        def pause() -> None:
            self.freeze_lock.acquire()
            try:
                m = self.machine()
                if m is None:
                    raise EngineError("the VM is gone")
                if not self.user_paused:
                    m.pause()
                    held["paused"] = True
            except BaseException:
                self.freeze_lock.release()
                raise

        def resume() -> None:
            try:
                if held["paused"]:
                    held["paused"] = False
                    m = self.machine()
                    if m is not None:
                        m.resume()
            finally:
                self.freeze_lock.release()

        (self.rd / CAPTURES).mkdir(exist_ok=True)
        seen = {"n": 0}

        def capture() -> Any:
            # The monitor's event-counter timeline runs from its start; a capture keeps only
            # the samples since the previous capture (else N captures store it N times).
            dump = mon.capture()
            tl = dump.event_counter_timeline
            new, seen["n"] = tl[seen["n"]:], len(tl)
            return replace(dump, event_counter_timeline=new)

        return Hooks(pause=pause, resume=resume, capture=capture, write=self._write,
                     record=self._record)

    def _write(self, tag: str, dump: Any) -> str:
        name = f"{CAPTURES}/{tag}.json"
        atomic_write_json(self.rd / name, dump_to_json(dump))
        return name

    def _record(self, rec: dict[str, Any]) -> None:
        append_line(self.rd / CAPTURES_INDEX, json.dumps(rec, separators=(",", ":")))
        self.rd.append_event("capture", **rec)

    def on_guest(self, state: Any) -> None:
        if self.workload_t0 is None and state.phase_reached("workload_started"):
            self.workload_t0 = time.monotonic()
            if self.capturer is not None:
                self.capturer.start(self.workload_t0)
        if self.workload_t0 is not None and not self.done and state.phase_reached("workload_done"):
            self.finish(ENDED)

    def frozen_by_others(self, seconds: float) -> None:
        if self.capturer is not None:
            self.capturer.note_frozen(seconds)

    def finish(self, reason: str) -> None:
        if self.done:
            return
        self.done = True
        if self.capturer is not None:
            if not self.capturer.started:
                reason = "the workload never started"
            self.records = self.capturer.finish(reason)
        elif self.plan:
            why = self.unavailable or "the workload never started"
            self.records = [{"tag": f"periodic_{i:03d}", "at_ms": at, "skipped": why}
                            for i, at in enumerate(self.plan)]
            for r in self.records:
                self._record(r)

    # ------------------------------------------------------------------ judge
    def captures(self) -> list[Capture]:
        """The captures taken, read back from the run directory."""
        out = []
        for r in self.records:
            path = capture_file(self.rd.path, r)
            if path is None:
                continue
            try:
                raw = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            out.append(Capture(r["tag"], int(r.get("elapsed_ms", r["at_ms"])), raw))
        return out

    def judge(self, samples: Sequence[dict[str, Any]], monitor_t0: float | None) -> Findings | None:
        if not self.assertions:
            return None
        ms: list[MonitorSample] = []
        if self.workload_t0 is not None and monitor_t0 is not None:
            off = self.workload_t0 - monitor_t0
            for i, s in enumerate(samples):
                e = round((float(s.get("t", 0.0)) - off) * 1000)
                if e >= 0:
                    ms.append(MonitorSample(f"sample_{i:04d}", e, s))
        return evaluate_assertions(self.assertions, self.captures(), ms)

    def outcome(self, o: ev.RunOutcome, findings: Findings | None) -> ev.RunOutcome:
        """The RunOutcome with the capture counts and the temporal findings folded into
        the guest's result (a violated assertion fails a passing run)."""
        fired = sum(1 for r in self.records if "file" in r)
        o = replace(o, periodic_target=len(self.plan), periodic_fired=fired)
        if findings is None or o.test_result is None:
            return o
        return replace(o, test_result=merge_findings(o.test_result, findings))

    def result_fields(self, findings: Findings | None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.plan:
            out["captures"] = summary(self.records)
        if findings is not None:
            out["temporal"] = findings.verdicts
        return out
