"""Headlines: one line per kind of failure, from the demo store's real recorded runs."""

from __future__ import annotations

from dataclasses import replace

import pytest
from support.stored_outcome import demo_run, stored_outcome

from ktstr_vmm.evaluate import types as ev
from ktstr_vmm.evaluate.headline import verifier_reject
from ktstr_vmm.evaluate.judge import evaluate, needs_repro, result_json
from ktstr_vmm.evaluate.sections import watchdog_body

EXPECTED = {
    "error": "scx_bpf_error: scx_ktstr.bpf.c:114: scx_ktstr: injected error after 1500ms "
             "(--error-after)",
    "stall": "runnable task stall: spin-3[120] waited 3.544 s on CPU 0 (kernel watchdog)",
    "verifier": "verifier rejected qmap_dequeue: R7 invalid mem access 'scalar' at "
                "scx_qmap.bpf.c:336",
    "timeout": "timed out after 30 s in phase workload (host watchdog, --timeout 30s)",
}


@pytest.mark.parametrize("label", sorted(EXPECTED))
def test_headline_per_failure_kind(label):
    v = evaluate(stored_outcome(demo_run(label)))
    assert v.kind == "fail"
    assert v.headline == EXPECTED[label]
    assert result_json(v)["headline"] == EXPECTED[label]


def test_seed_lines_stay_as_ktstr_prints_them():
    """The fingerprint and BUG SUMMARY keep ktstr's rules (last log line; first
    scx_bpf_error line) - the headline is a separate field, not a rewrite."""
    v = evaluate(stored_outcome(demo_run("verifier")))
    assert v.message.startswith("Failed to load skel\nBUG SUMMARY: 207 |")
    t = evaluate(stored_outcome(demo_run("timeout")))
    assert t.message.startswith("local=18 global=172\n")


def test_pass_has_no_headline():
    assert evaluate(stored_outcome(demo_run("pass"))).headline == ""


def test_monitor_threshold_and_crash_headlines():
    base = stored_outcome(demo_run("pass"))
    mon = ev.MonitorReport(summary=ev.MonitorSummary(), thresholds_enabled=True,
                           verdict=ev.MonitorVerdict(kind="fail", summary="monitor failed",
                                                     details=("imbalance 4.0 > 3.0 for 5 samples",
                                                              "stuck CPU 2")))
    v = evaluate(replace(base, monitor=mon))
    assert v.headline == "monitor threshold: imbalance 4.0 > 3.0 for 5 samples"
    c = evaluate(replace(base, test_result=None, crash_message="BUG: kernel NULL pointer "
                         "dereference, address: 0\nRIP: x"))
    assert c.headline == "guest crashed: BUG: kernel NULL pointer dereference, address: 0"


def test_load_failure_without_a_verifier_log():
    o = stored_outcome(demo_run("verifier"))
    o = replace(o, sched_log="libbpf: failed to find BTF for extern 'foo'\nFailed to load skel\n")
    assert evaluate(o).headline == "scheduler failed to load: Failed to load skel (exit status 1)"


def test_verifier_error_without_the_explanation_block():
    log = ("libbpf: prog 'p_enqueue': BPF program load failed: -EACCES\n"
           "libbpf: prog 'p_enqueue': -- BEGIN PROG LOAD LOG --\n"
           "0: R1=ctx() R10=fp0\n"
           "; int BPF_PROG(p_enqueue) @ sched.bpf.c:40\n"
           "func 'enqueue' arg0 has btf_id 1 type STRUCT 'task_struct'\n"
           "; v = *p; @ sched.bpf.c:41\n"
           "3: (61) r0 = *(u32 *)(r1 +0)\n"
           "R1 invalid mem access 'scalar'\n"
           "processed 4 insns (limit 1000000) max_states_per_insn 0 total_states 0\n"
           "-- END PROG LOAD LOG --\n")
    r = verifier_reject(log)
    assert (r.program, r.error, r.location) == ("p_enqueue", "R1 invalid mem access 'scalar'",
                                                "sched.bpf.c:41")


def test_no_auto_repro_for_a_scheduler_that_never_loaded():
    o = stored_outcome(demo_run("verifier"))
    assert not needs_repro(o, evaluate(o))
    e = stored_outcome(demo_run("error"))
    assert needs_repro(e, evaluate(e))


def test_watchdog_hint_for_a_duration_longer_than_the_timeout():
    body = watchdog_body(ev.Timings(elapsed_s=30, vm_timeout_s=30, duration_s=600,
                                    timeout_set=True))
    assert "vm_timeout=30s (host watchdog deadline, set with --timeout)" in body
    assert body.endswith("hint: the workload duration (600s) is not shorter than the --timeout "
                         "(30s), so the run could not finish: raise --timeout above the duration "
                         "plus boot time, or shorten --duration")
    assert "increase duration" not in body


def test_runs_and_browser_rows_read_the_headline(tmp_path):
    """`ktstr runs` and the browser row show result.json's headline; a run recorded
    before headlines keeps its message's first line."""
    import json
    import shutil

    from ktstr_vmm.rundir.summary import summarize

    run = tmp_path / demo_run("verifier").name
    shutil.copytree(demo_run("verifier"), run)
    assert summarize(run).first_line == EXPECTED["verifier"]
    result = json.loads((run / "result.json").read_text())
    del result["headline"]  # as recorded before headlines existed
    (run / "result.json").write_text(json.dumps(result))
    assert summarize(run).first_line == "Failed to load skel"


def test_show_prints_the_debug_dump_once_and_the_summary(capsys):
    from ktstr_cli.main import main

    run = demo_run("error")
    assert main(["show", str(run)]) == 0
    out = capsys.readouterr().out
    assert out.count("\nDEBUG DUMP\n") == 1
    assert ("--- sched_ext dump ---\n(the scheduler's DEBUG DUMP, printed in the scheduler log "
            "above)") in out


def test_ktstr_repro_refuses_a_scheduler_that_never_loaded(tmp_path, capsys):
    import shutil

    from ktstr_cli.main import main

    store = tmp_path / "store"
    shutil.copytree(demo_run("verifier").parent.parent, store)
    assert main(["repro", "--store", str(store), "demo_verifier"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ktstr: error: run ") and "the scheduler never loaded (verifier " \
        "rejected qmap_dequeue: R7 invalid mem access 'scalar' at scx_qmap.bpf.c:336)" in err
    assert not (demo_run("verifier") / "repro").exists()
