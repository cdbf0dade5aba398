"""`ktstr repro RUN`: run auto-repro now on a finished failing run (also one recorded with
--no-auto-repro) and put its `--- auto-repro ---` section into the run's result.json."""

from __future__ import annotations

import argparse
import json

from ktstr_vmm.errors import UsageError
from ktstr_vmm.fsutil import atomic_write_json
from ktstr_vmm.rundir.layout import EVENTS, RESULT, SPEC
from ktstr_vmm.rundir.timeline import read_events
from ktstr_vmm.spec import RunSpec

from . import add_store_option, open_store


def register(sub) -> None:
    p = sub.add_parser("repro", help="reproduce a failed run in a second VM with probes on the crash path",
                       description="Boot a second VM with the failed run's spec and probes on the "
                       "crash path (the same as auto-repro), write it to RUN/repro/ and add the "
                       "--- auto-repro --- section to the run's result.")
    p.add_argument("run", metavar="RUN", help="run id, unique prefix or substring")
    p.add_argument("--json", action="store_true", help="print the updated result.json")
    add_store_option(p)
    p.set_defaults(func=cmd_repro)


def refusal(run_id: str, spec: RunSpec, result: dict | None, phase: str | None,
            loaded: bool = True) -> str | None:
    """Why `ktstr repro` will not run on this run, or None. `loaded`: the scheduler got as
    far as sched_ext being enabled (a verifier reject or a load failure never does, and a
    second VM with probes on the crash path cannot reproduce it)."""
    if result is None:
        return f"run {run_id} has not finished (phase {phase or 'unknown'})"
    if spec.kind == "repro":
        return f"run {run_id} is itself an auto-repro run"
    verdict = result.get("verdict")
    if result.get("expected_failure"):
        return f"run {run_id} failed as expected (--expect-err); there is nothing to reproduce"
    if verdict == "pass":
        return f"run {run_id} passed; there is no failure to reproduce"
    if verdict not in ("fail", "inconclusive"):
        return f"run {run_id} has verdict '{verdict}'; only a failed or inconclusive run can be reproduced"
    if spec.scheduler in ("", "none", "eevdf"):
        return f"run {run_id} ran no sched_ext scheduler; auto-repro probes a scheduler's failure"
    if not loaded:
        why = result.get("headline") or "see its scheduler log"
        return (f"run {run_id}: the scheduler never loaded ({why}); auto-repro probes a "
                "running scheduler's failure")
    return None


def scheduler_loaded(run_dir) -> bool:
    """Did the run's scheduler get sched_ext enabled (a `scx_enabled` lifecycle event)?"""
    return any(e.get("kind") == "lifecycle" and e.get("phase") in ("scx_enabled", "baseline")
               for e in read_events(run_dir / EVENTS))


def cmd_repro(args: argparse.Namespace) -> int:
    from ktstr_vmm.repro.auto import result_with_section
    from ktstr_vmm.run.orchestrate import auto_repro_section, primary_from_run_dir

    from .run import LivePhase

    store = open_store(args)
    summary = store.get(args.run)
    rd = store.run_dir(args.run)
    spec_data = rd.read_json(SPEC)
    if spec_data is None:
        raise UsageError(f"run {summary.run_id} has no readable {SPEC}")
    spec = RunSpec.from_json(spec_data)
    result = rd.read_json(RESULT)
    why = refusal(summary.run_id, spec, result, (rd.read_json("status.json") or {}).get("phase"),
                  loaded=scheduler_loaded(rd.path))
    if why:
        raise UsageError(why, "ktstr repro takes a finished failing run (`ktstr runs --verdict fail`)")
    assert result is not None
    live = None if args.json else LivePhase()
    body = auto_repro_section(rd.path, spec.with_changes(auto_repro=True),
                              primary_from_run_dir(rd.path, spec, result),
                              on_phase=live.update if live else None)
    if live:
        live.finish()
    updated = result_with_section(result, body)
    updated["artifacts"] = sorted({*updated.get("artifacts", []),
                                   *(p.name for p in rd.path.iterdir()
                                     if p.is_file() and not p.name.startswith("."))})
    atomic_write_json(rd / RESULT, updated)
    if args.json:
        print(json.dumps(updated, indent=2))
    else:
        print(f"--- auto-repro --- ({summary.run_id})")
        print(body)
        print(f"\nresult updated: {rd / RESULT}")
    return 0
