"""Auto-repro: the gate, the repro run's spec and directory, and the `--- auto-repro ---`
section made from what the probes recorded. Booting the second VM is orchestration
(run/orchestrate.py calls this module; this module imports no runner or engine).

The gate is the seed's (`run_ktstr_test_inner_impl`): on when the run asked for it
(`--no-auto-repro` turns it off), a sched_ext scheduler ran and the run did not expect an
error; the primary's exit kind (its failure dump's `scx_sched_state.exit_kind`, else the
kernel's disable line) decides stall handling: a watchdog stall's backtrace is the
watchdog's own, so only the sched_ext path is probed. The repro run is a run directory of
its own at `<primary>/repro/` (spec kind "repro", parent = the primary's id), its failure
dump is copied to `<primary>/<test>.repro.failure-dump.json`.

The section says whether the failure reproduced (same exit kind and reason), how long the
repro VM ran, the decoded probe chain in time order ending at the exit, and the last 40
lines of the repro's scheduler log and console; the seed's texts when no probe data came
back and when the primary never reached its workload.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import KtstrError
from ..evaluate import types as ev
from ..fsutil import atomic_write_json
from ..introspect.scx import SCX_EXIT_ERROR, SCX_EXIT_ERROR_STALL, exit_kind_name
from ..rundir.layout import (
    CONSOLE,
    EVENTS,
    REPRO,
    SCHED_LOG,
    SPEC,
    RunDir,
    failure_dump_name,
)
from ..spec import RunSpec
from .probes import (
    DecodeTables,
    ProbeSet,
    chain_to_exit,
    decode_trace,
    render_hit,
)

log = logging.getLogger(__name__)

PhaseCallback = Callable[[str, str, str], None]

REPRO_TAIL_LINES = 40
CHAIN_LINES = 40
PROBE_DRAIN_GRACE_S = 30.0  # the seed's PROBE_DRAIN_GRACE: the repro VM's extra watchdog time
TRACE_FILE = "trace.txt"
PROBES_FILE = "probes.json"

NO_PROBE_DATA = (
    "auto-repro: no probe data — the scheduler may have exited before probes could capture "
    "events, or the crash did not reproduce in the repro VM. Re-run with `ktstr repro RUN` "
    "and read repro/trace.txt for probe pipeline diagnostics. Check the sched_ext dump and "
    "scheduler log sections above for crash details.")
NOT_REACHED = (
    "PRIMARY DID NOT REACH WORKLOAD — auto-repro is not load-bearing (the primary VM's "
    "failure prevented the bug from being exercised, so the repro's verdict below should not "
    "be read as evidence about bug reproducibility — the bug was never exercised by either run)")


# --------------------------------------------------------------------------- the gate

def effective_auto_repro(spec: RunSpec) -> bool:
    """The seed's gate: asked for, a sched_ext scheduler, no expected error; never for a
    repro run itself."""
    active = spec.scheduler not in ("", "none", "eevdf")
    return spec.auto_repro and active and not spec.expect_err and spec.kind != "repro"


def primary_exit_kind(primary_dir: Path, test: str, sched_exit: ev.SchedExit | None) -> int | None:
    """The primary's SCX exit kind: the failure dump's latched `exit_kind` when it is an
    error kind (>= SCX_EXIT_ERROR), else the kind the kernel's disable line named, else
    whatever the dump has."""
    line_kind = sched_exit.kind if sched_exit is not None else None
    dump_kind = None
    try:
        data = json.loads((Path(primary_dir) / failure_dump_name(test)).read_bytes())
        kind = data.get("scx_sched_state", {}).get("exit_kind")
        if isinstance(kind, int) and not isinstance(kind, bool) and kind:
            dump_kind = kind
    except (OSError, ValueError, AttributeError, KtstrError):
        pass
    if dump_kind is not None and dump_kind >= SCX_EXIT_ERROR:
        return dump_kind
    return line_kind if line_kind is not None else dump_kind


def primary_reached_workload(primary_dir: Path) -> bool:
    """Did the primary's guest start its workload (a `workload_started` lifecycle event)?"""
    try:
        with open(Path(primary_dir) / EVENTS, "rb") as f:
            for raw in f:
                if b"workload_started" not in raw:
                    continue
                with contextlib.suppress(ValueError):
                    e = json.loads(raw)
                    if e.get("kind") == "lifecycle" and e.get("phase") == "workload_started":
                        return True
    except OSError:
        pass
    return False


@dataclass(frozen=True)
class Primary:
    """What the section compares against: the primary's exit and verdict reason."""

    run_id: str
    exit: ev.SchedExit | None
    exit_kind: int | None
    reason: str
    reached_workload: bool
    console: str


def primary_from_outcome(primary_dir: Path, spec: RunSpec, outcome: ev.RunOutcome,
                         verdict: ev.Verdict) -> Primary:
    return Primary(run_id=Path(primary_dir).name, exit=outcome.sched_exit,
                   exit_kind=primary_exit_kind(primary_dir, spec.name, outcome.sched_exit),
                   reason=verdict.reason, reached_workload=primary_reached_workload(primary_dir),
                   console=outcome.console)


# --------------------------------------------------------------------------- the repro run

def create_repro_dir(primary_dir: Path, spec: RunSpec) -> RunDir:
    """`<primary>/repro/` holding spec.json and a pending status (an earlier repro's
    directory is replaced). Built under a dot name and renamed into place."""
    primary_dir = Path(primary_dir)
    final = primary_dir / REPRO
    tmp = primary_dir / f".{REPRO}-new-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        atomic_write_json(tmp / SPEC, spec.to_json())
        RunDir(tmp).write_status("pending")
        if final.exists():
            old = primary_dir / f".{REPRO}-old-{secrets.token_hex(4)}"
            os.rename(final, old)
            shutil.rmtree(old, ignore_errors=True)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return RunDir(final)


def repro_spec(spec: RunSpec, primary_id: str, probes: ProbeSet) -> RunSpec:
    """The primary's spec with the probes; no periodic captures or temporal assertions (a
    freeze would perturb the crash being reproduced, and the repro is judged by its probes,
    not by the primary's assertions)."""
    return spec.with_changes(kind="repro", parent=primary_id, probes=probes.lines,
                             auto_repro=False, timeout_s=spec.timeout + PROBE_DRAIN_GRACE_S,
                             capture_every_ms=None, capture_at_ms=(), assertions=())


@dataclass(frozen=True)
class ReproRun:
    rd: RunDir
    result: dict[str, Any]
    exit: ev.SchedExit | None
    trace: str
    refused: tuple[str, ...]
    timed_out: bool
    interrupted: bool


# --------------------------------------------------------------------------- the section

def reproduced(primary: Primary, repro: ReproRun) -> tuple[bool, str]:
    """(same failure?, one line saying so). Same exit kind and message (numbers aside), or -
    when neither run's scheduler exited - the same verdict reason."""
    p, r = primary.exit, repro.exit
    if p is not None and r is not None:
        same = p.kind == r.kind and _shape(p.message) == _shape(r.message)
        what = _exit_words(r)
        if same:
            return True, f"reproduced: the repro VM failed the same way ({what})"
        return False, f"not reproduced: the primary exited with {_exit_words(p)}; the repro VM with {what}"
    rreason = str(repro.result.get("reason") or "")
    if p is None and r is None and repro.result.get("verdict") in ("fail", "inconclusive"):
        if rreason.split("\n")[0] == primary.reason.split("\n")[0]:
            return True, f"reproduced: the repro VM failed the same way ({rreason.splitlines()[0]})"
    if p is not None:
        return False, f"not reproduced: the primary exited with {_exit_words(p)}; {_repro_status(repro)}"
    return False, f"not reproduced: the primary failed with '{primary.reason.splitlines()[0] if primary.reason else '?'}'; {_repro_status(repro)}"


def _shape(message: str) -> str:
    """An exit message without its numbers (pids, times, CPUs differ between two runs of
    the same failure: `init[118] failed to run for 3.024s`)."""
    return re.sub(r"\d+(?:\.\d+)?", "#", message)


def _exit_words(se: ev.SchedExit) -> str:

    if se.kind is None:
        return se.message or "an exit of unknown kind"
    kind = exit_kind_name(se.kind)
    return f"{kind}: {se.message}" if se.message else kind


def _repro_status(repro: ReproRun) -> str:
    """The seed's classify_repro_vm_status, from the repro run's result."""
    res = repro.result
    if repro.interrupted:
        return "repro VM: interrupted"
    if repro.timed_out:
        return "repro VM: timed out"
    reason = str(res.get("reason") or "")
    code = res.get("guest_exit_code")
    code = -1 if code is None else code
    if repro.exit is not None or reason.startswith("guest crashed"):
        clause = ("exited cleanly" if code == 0 else
                  "VM host reported no final exit status (the scheduler did not deliver an exit "
                  "signal before the VM ended)" if code == -1 else
                  f"exited with non-zero status ({code})")
        return f"repro VM: scheduler crashed — {clause}"
    if res.get("verdict") == "pass":
        return "repro VM: scheduler ran normally (crash did not reproduce)"
    return f"repro VM: {reason.splitlines()[0] if reason else f'exited abnormally (exit code {code})'}"


def _tail(text: str, n: int) -> str:
    lines = text.rstrip("\n").splitlines()
    return "\n".join(lines[-n:])


def render_section(primary: Primary, repro: ReproRun, probes: ProbeSet, tables: DecodeTables) -> str:
    out: list[str] = []
    hits = decode_trace(repro.trace)
    ours = [h for h in hits if h.event == "sched_ext_exit" or h.event in probes.functions]
    if not primary.reached_workload:
        out.append(NOT_REACHED)
    same, line = reproduced(primary, repro)
    out.append(line)
    if not ours:
        out.append(NO_PROBE_DATA)
        out.append(_repro_status(repro))
    if primary.exit_kind == SCX_EXIT_ERROR_STALL:
        out.append("primary exit: SCX_EXIT_ERROR_STALL (the watchdog's exit; its backtrace is "
                   "not probed, the chain shows the last scheduling events before it)")
    nprobes = len(probes.functions)
    out.append(f"repro run: {primary.run_id}/{REPRO} ({nprobes} probes armed"
               f"{f', {len(repro.refused)} refused' if repro.refused else ''})")
    vm_s = (repro.result.get("timings") or {}).get("vm_s")
    out.append(f"repro VM duration: {vm_s:.1f}s" if isinstance(vm_s, (int, float))
               else "repro VM duration: unknown")
    if ours:
        chain = chain_to_exit(ours, CHAIN_LINES)
        ends = "ending at the exit" if chain and chain[-1].is_exit else "no exit recorded"
        out.append(f"\n--- probe chain ({len(chain)} of {len(ours)} hits, time order, {ends}) ---")
        out += [render_hit(h, tables) for h in chain]
    if repro.refused:
        out.append("\n--- probes refused ---")
        out += list(repro.refused)
    if probes.skipped:
        out.append("\n--- not probed ---")
        out += [f"{f}: {why}" for f, why in probes.skipped]
    sched = _tail(_read(repro.rd / SCHED_LOG), REPRO_TAIL_LINES)
    if sched:
        out.append("\n--- repro scheduler log ---")
        out.append(sched)
    console = _tail(_read(repro.rd / CONSOLE), REPRO_TAIL_LINES)
    out.append("\n--- repro console ---")
    out.append(console or "empty (no console output from the repro VM)")
    return "\n".join(out)


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8", "replace")
    except OSError:
        return ""


def result_with_section(result: dict[str, Any], body: str) -> dict[str, Any]:
    """result.json's content with `--- auto-repro ---` set to `body` (an earlier one
    replaced). The section is always the message's last, as evaluate renders it."""
    message = str(result.get("message") or "")
    sections = dict(result.get("sections") or {})
    old = sections.get("auto-repro")
    if old is not None:
        suffix = f"\n\n--- auto-repro ---\n{old}"
        if message.endswith(suffix):
            message = message[: -len(suffix)]
    sections["auto-repro"] = body
    out = dict(result)
    out["message"] = f"{message}\n\n--- auto-repro ---\n{body}"
    out["sections"] = sections
    return out
