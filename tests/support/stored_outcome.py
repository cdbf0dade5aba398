"""A RunOutcome rebuilt from a recorded run directory (the demo store's real runs), for
tests of evaluation parts that read logs: the scheduler log, the console, the lifecycle
phases from events.jsonl and the timings from spec.json / result.json. The guest's
TestResult is not stored, so a run that reached its workload gets a failed TestResult
with the detail outcome.build_outcome would have written."""

from __future__ import annotations

import json
from pathlib import Path

from ktstr_vmm.evaluate import types as ev
from ktstr_vmm.run.outcome import sched_exit_from
from ktstr_vmm.run.recorder import GuestState
from support import REPO

DEMO = REPO / "assets" / "demo-store" / "runs"


def demo_run(label: str) -> Path:
    return next(DEMO.glob(f"*-demo_{label}-*"))


def stored_outcome(run: Path) -> ev.RunOutcome:
    spec = json.loads((run / "spec.json").read_text())
    result = json.loads((run / "result.json").read_text())
    events = [json.loads(ln) for ln in (run / "events.jsonl").read_text().splitlines() if ln]
    phases = [e["phase"] for e in events if e.get("kind") == "lifecycle"]
    console = (run / "console.log").read_text(errors="replace")
    sched_log = (run / "sched.log").read_text(errors="replace")
    stage = ("payload_started" if {"scx_enabled", "workload_started"} & set(phases)
             else "init_started")
    se = sched_exit_from(GuestState(), console)
    if se is None and stage == "init_started" and result.get("guest_exit_code"):
        se = ev.SchedExit(message="exit status 1 before sched_ext was enabled (see the "
                          "scheduler log)", kind_name="other")
    tr = None
    if "workload_started" in phases and not result.get("timed_out"):
        failed = se is not None and se.kind is not None and se.kind >= 1024
        tr = ev.TestResult(outcome="fail" if failed else "pass", details=(
            ev.Detail(message=se.message, kind="scheduler_crashed"),) if failed else ())
        se = se if failed else None
    return ev.RunOutcome(
        test=spec["name"], scheduler=result.get("scheduler"), topology=spec["topology"],
        test_result=tr, sched_exit=se, sched_log=sched_log, console=console,
        timed_out=bool(result.get("timed_out")), exit_code=result.get("guest_exit_code"),
        init_stage=stage, last_phase=phases[-1] if phases else None,
        timings=ev.Timings(elapsed_s=result["timings"]["vm_s"], vm_timeout_s=spec["timeout_s"],
                           duration_s=spec["duration_s"], timeout_set=True))
