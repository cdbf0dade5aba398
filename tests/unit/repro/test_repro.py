"""Auto-repro without a VM: the seed's gate, the section rendered from a recorded real repro
run (tests/data/probes/), the result.json update, and `ktstr repro` / `ktstr rerun` refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import DATA as SUPPORT_DATA
from support.store_helpers import make_run

from ktstr_vmm.evaluate import types as ev
from ktstr_vmm.repro.auto import (
    NO_PROBE_DATA,
    NOT_REACHED,
    Primary,
    ReproRun,
    effective_auto_repro,
    primary_reached_workload,
    render_section,
    result_with_section,
)
from ktstr_vmm.repro.probes import DecodeTables, ProbeSet
from ktstr_vmm.run.orchestrate import repro_gate
from ktstr_vmm.rundir.layout import RunDir
from ktstr_vmm.spec import RunSpec, parse_topology

DATA = SUPPORT_DATA / "probes"
KTSTR = [sys.executable, "-m", "ktstr_cli"]
HINT = "(ktstr repro takes a finished failing run (`ktstr runs --verdict fail`))"
ERR = ev.SchedExit("ktstr", "scx_ktstr.bpf.c:114: scx_ktstr: injected error after 1500ms (--error-after)",
                   1025, "error")


def _spec(**kw) -> RunSpec:
    kw.setdefault("scheduler", "scx_ktstr")
    return RunSpec(name="scx_ktstr", topology=parse_topology("tiny-1llc"), **kw)


@pytest.mark.parametrize("kw,on", [
    ({}, True),
    ({"auto_repro": False}, False),
    ({"expect_err": True}, False),
    ({"kind": "repro"}, False),
    ({"scheduler": "eevdf"}, False),
])
def test_the_seeds_gate(kw, on):
    assert effective_auto_repro(_spec(**kw)) is on


def test_no_repro_for_a_pass_or_a_gated_run(tmp_path):
    outcome = ev.RunOutcome(test="scx_ktstr", scheduler="scx_ktstr")
    assert repro_gate(tmp_path, _spec(), outcome, ev.Verdict("pass")) is None
    failed = ev.Verdict("fail", reason="failed")
    assert repro_gate(tmp_path, _spec(auto_repro=False), outcome, failed) is None


def test_workload_reached_from_events(tmp_path):
    assert not primary_reached_workload(tmp_path)
    (tmp_path / "events.jsonl").write_text(
        '{"t": 1, "kind": "lifecycle", "phase": "scx_enabled"}\nnot json\n'
        '{"t": 2, "kind": "lifecycle", "phase": "workload_started"}\n')
    assert primary_reached_workload(tmp_path)


def _repro_dir(tmp_path: Path) -> RunDir:
    d = tmp_path / "primary" / "repro"
    d.mkdir(parents=True)
    (d / "sched.log").write_text("".join(f"sched line {i}\n" for i in range(60)))
    (d / "console.log").write_text("".join(f"[ {i}.0] console line {i}\n" for i in range(60)))
    return RunDir(d)


def _probes() -> ProbeSet:
    from ktstr_vmm.repro.probes import Probe

    funcs = ("enqueue_task_scx", "scx_dsq_insert_commit", "find_dsq_for_dispatch",
             "scx_dispatch_enqueue", "scx_bpf_error_bstr", "scx_exit_bstr", "bpf_timer_cb")
    return ProbeSet(tuple(Probe(f, f"f:ktstr/{f} {f}", "sched_ext") for f in funcs),
                    (("kthread", "hot generic frame"),))


def test_section_from_a_recorded_error_after_repro(tmp_path):
    rd = _repro_dir(tmp_path)
    primary = Primary("20261125-180932-x", ERR, 1025, "failed", True, "")
    repro = ReproRun(rd, {"verdict": "fail", "reason": "failed", "timings": {"vm_s": 69.63}},
                     ERR, (DATA / "error-after-trace.txt").read_text(), (), False, False)
    text = render_section(primary, repro, _probes(), DecodeTables())
    lines = text.splitlines()
    assert lines[0] == ("reproduced: the repro VM failed the same way (SCX_EXIT_ERROR_BPF: "
                        "scx_ktstr.bpf.c:114: scx_ktstr: injected error after 1500ms (--error-after))")
    assert lines[1] == "repro run: 20261125-180932-x/repro (7 probes armed)"
    assert lines[2] == "repro VM duration: 69.6s"
    assert lines[4].startswith("--- probe chain (40 of ")
    assert lines[4].endswith(" hits, time order, ending at the exit) ---")
    chain = lines[5:45]
    assert chain[-1].split() == ["54.484185", "cpu3", "init[120]", "sched_ext_exit", "sched=ktstr",
                                 "kind=SCX_EXIT_ERROR_BPF"]
    assert any("scx_bpf_error_bstr" in ln and "fmt=scx_ktstr.bpf.c:114: scx_ktstr: injected error"
               in ln for ln in chain)
    assert any("dsq_id=SCX_DSQ_LOCAL" in ln for ln in chain)
    assert "\n--- not probed ---\nkthread: hot generic frame\n" in text
    assert "\n--- repro scheduler log ---\nsched line 20\n" in text
    assert text.endswith("console line 59")
    assert "console line 19\n" not in text


def test_section_without_probe_data_and_workload_not_reached(tmp_path):
    rd = _repro_dir(tmp_path)
    primary = Primary("p", None, None, "scheduler exited: x", False, "")
    repro = ReproRun(rd, {"verdict": "fail", "reason": "scheduler exited: x",
                          "timings": {"vm_s": 20.0}, "guest_exit_code": 1}, None, "", (), False, False)
    text = render_section(primary, repro, _probes(), DecodeTables())
    assert text.splitlines()[:4] == [
        NOT_REACHED,
        "reproduced: the repro VM failed the same way (scheduler exited: x)",
        NO_PROBE_DATA,
        "repro VM: scheduler exited: x",
    ]
    assert NOT_REACHED.startswith("PRIMARY DID NOT REACH WORKLOAD — auto-repro is not load-bearing")
    assert NO_PROBE_DATA.startswith("auto-repro: no probe data — the scheduler may have exited")


def test_not_reproduced_and_timed_out(tmp_path):
    rd = _repro_dir(tmp_path)
    primary = Primary("p", ERR, 1025, "failed", True, "")
    repro = ReproRun(rd, {"verdict": "fail", "reason": "timed out (no result via bulk port or COM2)",
                          "timed_out": True}, None, "", (), True, False)
    lines = render_section(primary, repro, _probes(), DecodeTables()).splitlines()
    assert lines[0] == ("not reproduced: the primary exited with SCX_EXIT_ERROR_BPF: "
                        "scx_ktstr.bpf.c:114: scx_ktstr: injected error after 1500ms (--error-after); "
                        "repro VM: timed out")
    assert lines[2] == "repro VM: timed out"
    assert lines[4] == "repro VM duration: unknown"


def test_result_gets_the_section_last_and_a_second_repro_replaces_it():
    result = {"message": "head\n\n--- scheduler log ---\nx", "sections": {"scheduler log": "x"}}
    once = result_with_section(result, "one")
    assert once["message"] == "head\n\n--- scheduler log ---\nx\n\n--- auto-repro ---\none"
    twice = result_with_section(once, "two")
    assert twice["message"] == "head\n\n--- scheduler log ---\nx\n\n--- auto-repro ---\ntwo"
    assert twice["sections"] == {"scheduler log": "x", "auto-repro": "two"}


def _ktstr(store: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*KTSTR, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "KTSTR_HOME": str(store)})


def test_repro_refuses_a_passed_run_and_names_a_missing_one(store):
    make_run(store, "20261125-173942-basic-scx_simple-tiny-2llc-aaaa", verdict="pass")
    p = _ktstr(store, "repro", "20261125-173942-basic")
    assert p.returncode == 2
    assert p.stderr.splitlines()[0] == (
        "ktstr: error: run 20261125-173942-basic-scx_simple-tiny-2llc-aaaa passed; "
        f"there is no failure to reproduce {HINT}")
    p = _ktstr(store, "repro", "nosuchrun")
    assert p.returncode == 2
    assert p.stderr.splitlines()[0] == (f"ktstr: error: no run 'nosuchrun' in {store / 'runs'} "
                                        "(`ktstr runs` lists the runs)")


def test_repro_refuses_an_unfinished_or_scheduler_less_run(store):
    make_run(store, "20261125-173942-a-eevdf-tiny-2llc-bbbb", scheduler="eevdf", verdict="fail")
    make_run(store, "20261125-173943-b-scx_simple-tiny-2llc-cccc", verdict=None, phase="running")
    p = _ktstr(store, "repro", "bbbb")
    assert "ran no sched_ext scheduler" in p.stderr.splitlines()[0] and p.returncode == 2
    p = _ktstr(store, "repro", "cccc")
    assert p.stderr.splitlines()[0] == (
        f"ktstr: error: run 20261125-173943-b-scx_simple-tiny-2llc-cccc has not finished (phase running) {HINT}")


def test_rerun_with_a_bad_topology_starts_nothing(store):
    make_run(store, "20261125-173942-basic-scx_simple-tiny-2llc-aaaa")
    p = _ktstr(store, "rerun", "aaaa", "--topology", "3x3")
    assert p.returncode == 2
    assert p.stderr.startswith("ktstr: error: ")
    assert sorted(x.name for x in (store / "runs").iterdir()) == [
        "20261125-173942-basic-scx_simple-tiny-2llc-aaaa"]


def test_rerun_spec_links_the_parent_and_takes_overrides(store):
    import argparse

    from ktstr_cli.commands.rerun import rerun_spec
    from ktstr_cli.commands.run import add_run_options
    from ktstr_vmm.store.store import Store

    make_run(store, "20261125-173942-basic-scx_simple-tiny-2llc-aaaa")
    p = argparse.ArgumentParser()
    p.add_argument("run")
    add_run_options(p, defaults=False)
    spec = rerun_spec(p.parse_args(["aaaa", "--topology", "2n2l2c1t", "--duration", "2s"]), Store(store))
    assert (spec.parent, spec.kind) == ("20261125-173942-basic-scx_simple-tiny-2llc-aaaa", "rerun")
    assert spec.topology.notation == "2n2l2c1t" and spec.duration_s == 2.0
    assert (spec.name, spec.scheduler) == ("basic", "scx_simple")
    assert spec.memory == spec.topology.default_memory_mib()
    assert json.loads(json.dumps(spec.to_json()))["parent"] == spec.parent


def test_rerun_can_turn_auto_repro_back_on(store):
    import argparse

    from ktstr_cli.commands.rerun import rerun_spec
    from ktstr_cli.commands.run import add_run_options
    from ktstr_vmm.store.store import Store

    d = make_run(store, "20261125-173942-basic-scx_simple-tiny-2llc-aaaa")
    data = json.loads((d / "spec.json").read_text())
    (d / "spec.json").write_text(json.dumps({**data, "auto_repro": False}))
    p = argparse.ArgumentParser()
    p.add_argument("run")
    add_run_options(p, defaults=False)
    p.add_argument("--auto-repro", action="store_true")
    assert rerun_spec(p.parse_args(["aaaa"]), Store(store)).auto_repro is False
    assert rerun_spec(p.parse_args(["aaaa", "--auto-repro"]), Store(store)).auto_repro is True


def test_a_stall_with_other_pids_and_times_is_the_same_failure(tmp_path):
    rd = _repro_dir(tmp_path)
    p = ev.SchedExit("ktstr", "init[118] failed to run for 3.024s", 1026, "stall")
    r = ev.SchedExit("ktstr", "init[115] failed to run for 3.060s", 1026, "stall")
    repro = ReproRun(rd, {"verdict": "fail", "reason": "failed"}, r, "", (), False, False)
    text = render_section(Primary("p", p, 1026, "failed", True, ""), repro, _probes(), DecodeTables())
    assert text.splitlines()[0] == ("reproduced: the repro VM failed the same way "
                                    "(SCX_EXIT_ERROR_STALL: init[115] failed to run for 3.060s)")
    assert text.splitlines()[3].startswith("primary exit: SCX_EXIT_ERROR_STALL (the watchdog's exit")


def test_primary_exit_kind_prefers_an_error_kind(tmp_path):
    from ktstr_vmm.repro.auto import primary_exit_kind

    stall = ev.SchedExit("ktstr", "x", 1026, "stall")
    assert primary_exit_kind(tmp_path, "t", stall) == 1026
    (tmp_path / "t.failure-dump.json").write_text('{"scx_sched_state": {"exit_kind": 1}}')
    assert primary_exit_kind(tmp_path, "t", stall) == 1026
    assert primary_exit_kind(tmp_path, "t", None) == 1
    (tmp_path / "t.failure-dump.json").write_text('{"scx_sched_state": {"exit_kind": 1025}}')
    assert primary_exit_kind(tmp_path, "t", stall) == 1025
    (tmp_path / "t.failure-dump.json").write_text('[1, 2')
    assert primary_exit_kind(tmp_path, "t", None) is None


def test_the_repro_run_takes_no_periodic_captures_and_judges_no_assertions():
    from ktstr_vmm.repro.auto import repro_spec
    from ktstr_vmm.repro.probes import ProbeSet
    from ktstr_vmm.spec import RunSpec, parse_topology

    primary = RunSpec(name="t", scheduler="scx_simple", topology=parse_topology("1n1l2c1t"),
                      capture_every_ms=1000, capture_at_ms=(500,),
                      assertions=("nondecreasing(bpf.vtime_now)",))
    r = repro_spec(primary, "run-1", ProbeSet(()))
    assert (r.kind, r.parent, r.auto_repro) == ("repro", "run-1", False)
    assert (r.capture_every_ms, r.capture_at_ms, r.assertions) == (None, (), ())
