"""Orchestration: a primary run, then - when the auto-repro gate says so - a second VM with
probes on the crash path, and the primary judged again with its `--- auto-repro ---` section.

    run(spec)  ->  Run(...).execute()        the primary: boot, record, monitor
                   Run.judge: evaluate()      the verdict (evaluate/)
                   repro_gate()               effective_auto_repro + needs_repro (repro/, evaluate/)
                   run_repro()                the repro VM: a Run of its own in <primary>/repro/
                   render_section()           the section (repro/auto.py)
                   Run.judge: evaluate()      the primary judged again with the section

Evaluation and auto-repro are called from here; neither imports the runner (import-linter
contracts in `make lint`). `ktstr repro RUN` calls auto_repro_section for a finished run.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

from ..errors import KtstrError
from ..evaluate import types as ev
from ..evaluate.judge import needs_repro
from ..fsutil import atomic_write_bytes, atomic_write_json, atomic_write_text
from ..introspect.btf_load import load_btf
from ..introspect.scx import SCX_EXIT_ERROR_STALL
from ..kernel.kernels import resolve_kernel
from ..repro.auto import (
    NOT_REACHED,
    PROBES_FILE,
    TRACE_FILE,
    PhaseCallback,
    Primary,
    ReproRun,
    create_repro_dir,
    effective_auto_repro,
    primary_exit_kind,
    primary_from_outcome,
    primary_reached_workload,
    render_section,
    repro_spec,
)
from ..repro.probes import (
    DecodeTables,
    ProbeSet,
    backtrace_functions,
    build_probe_set,
    refused_probes,
)
from ..rundir.layout import CONSOLE, REPRO, RESULT, failure_dump_name, repro_failure_dump_name
from ..spec import RunSpec
from .outcome import sched_exit_from
from .recorder import GuestState
from .runner import Run, prepare

log = logging.getLogger(__name__)


def run(spec: RunSpec, *, store=None, on_phase: PhaseCallback | None = None) -> dict[str, Any]:
    """Run `spec` (with auto-repro when the gate says so); returns result.json's content
    (also written to the run directory). On interruption the status says so and the
    returned dict has phase 'interrupted'."""
    from ..store.store import Store  # sqlite3 and the index only when a run really starts

    prep = prepare(spec)
    store = store or Store()
    rd = store.create_run(spec)
    return Run(prep, rd, on_phase, repro=repro_gate).execute()


def repro_gate(primary_run_dir: Path, spec: RunSpec, outcome: ev.RunOutcome,
               verdict: ev.Verdict, on_phase: PhaseCallback | None = None) -> str | None:
    """The runner's hook after judging a primary: the section text, or None when the seed's
    gate says no repro (then evaluate is not repeated)."""
    if not effective_auto_repro(spec) or not needs_repro(outcome, verdict):
        return None
    primary = primary_from_outcome(primary_run_dir, spec, outcome, verdict)
    return auto_repro_section(primary_run_dir, spec, primary, on_phase)


def auto_repro_section(primary_dir: Path, spec: RunSpec, primary: Primary,
                       on_phase: PhaseCallback | None = None) -> str:
    """Run the repro VM and return the section text (never raises a KtstrError: a repro
    that cannot start is said in the section)."""
    try:
        repro, probes, tables = run_repro(primary_dir, spec, primary, on_phase)
    except KtstrError as e:
        text = f"auto-repro: could not start the repro VM: {e.message}"
        return f"{NOT_REACHED}\n{text}" if not primary.reached_workload else text
    except Exception as e:  # the primary's verdict stands whatever happens to its repro
        log.exception("auto-repro failed")
        return f"auto-repro: the repro run failed internally: {type(e).__name__}: {e}"
    return render_section(primary, repro, probes, tables)


def primary_from_run_dir(primary_dir: Path, spec: RunSpec, result: dict[str, Any]) -> Primary:
    """The same facts from a finished run's files (for `ktstr repro RUN`)."""
    console = _read(Path(primary_dir) / CONSOLE)
    se = sched_exit_from(GuestState(), console)
    return Primary(run_id=Path(primary_dir).name, exit=se,
                   exit_kind=primary_exit_kind(primary_dir, spec.name, se),
                   reason=str(result.get("reason") or ""),
                   reached_workload=primary_reached_workload(primary_dir), console=console)


def run_repro(primary_dir: Path, spec: RunSpec, primary: Primary,
              on_phase: PhaseCallback | None = None) -> tuple[ReproRun, ProbeSet, DecodeTables]:
    """Prepare, probe and run the repro VM; raises KtstrError when it cannot start."""
    kernel = resolve_kernel(spec.kernel)
    btf = load_btf(kernel.vmlinux, kernel.build_id)
    stall = primary.exit_kind == SCX_EXIT_ERROR_STALL
    probes = build_probe_set(btf, backtrace_functions(primary.console), spec.topology.vcpus,
                             include_backtrace=not stall)
    tables = DecodeTables.from_btf(btf)
    rspec = repro_spec(spec, primary.run_id, probes)
    prep = prepare(rspec)  # the guest spec (with the probes) is rendered from rspec
    rd = create_repro_dir(primary_dir, rspec)
    label = f"{primary.run_id}/{REPRO}"
    cb = (lambda _rid, phase, detail: on_phase(label, phase, detail)) if on_phase else None
    run = Run(prep, rd, cb)
    result = run.execute()
    st = run.recorder.state
    trace = "".join(st.probe_output)
    refused = tuple(refused_probes(st.agent_output))
    atomic_write_text(rd / TRACE_FILE, trace)
    atomic_write_json(rd / PROBES_FILE, {**probes.to_json(), "refused": list(refused),
                                         "tables": tables.to_json(),
                                         "primary_exit_kind": primary.exit_kind})
    res = rd.read_json(RESULT)
    if res is not None:  # the repro's own result lists the files written after it
        res["artifacts"] = sorted({*res.get("artifacts", []), TRACE_FILE, PROBES_FILE})
        atomic_write_json(rd / RESULT, res)
    dump = rd / failure_dump_name(spec.name)
    if dump.is_file():
        with contextlib.suppress(OSError, KtstrError):
            atomic_write_bytes(Path(primary_dir) / repro_failure_dump_name(spec.name),
                               dump.read_bytes())
    console = _read(rd / CONSOLE)
    return (ReproRun(rd=rd, result=result, exit=sched_exit_from(st, console), trace=trace,
                     refused=refused, timed_out=bool(result.get("timed_out")),
                     interrupted=result.get("phase") == "interrupted"), probes, tables)


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8", "replace")
    except OSError:
        return ""
