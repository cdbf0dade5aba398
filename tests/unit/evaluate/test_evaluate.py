"""The seed's pinned evaluation cases (ktstr's eval_tests_eval.rs), table-driven.

Each case is a RunOutcome, the verdict kind, the header reason and strings the message must
contain, in order. Whole messages are pinned where a person reads them top to bottom.
"""

from __future__ import annotations

import pytest
from support import DATA

from ktstr_vmm.evaluate.console import (
    STAGE_INIT_NOT_STARTED,
    STAGE_INIT_STARTED_NO_PAYLOAD,
    STAGE_PAYLOAD_STARTED_NO_RESULT,
)
from ktstr_vmm.evaluate.judge import (
    ERR_EXPECTED_ERROR_INCONCLUSIVE,
    ERR_EXPECTED_ERROR_PASSED,
    ERR_GUEST_CRASHED_PREFIX,
    ERR_MONITOR_FAILED_AFTER_SCENARIO,
    ERR_NO_TEST_FUNCTION_OUTPUT,
    ERR_NO_TEST_RESULT_FROM_GUEST,
    ERR_TIMED_OUT_NO_RESULT,
    CgroupStats,
    Detail,
    EventDeltas,
    MonitorReport,
    MonitorSummary,
    MonitorVerdict,
    RunOutcome,
    ScenarioStats,
    SchedExit,
    TestResult,
    Timings,
    evaluate,
    needs_repro,
)

DATA = DATA / "eval"
S, E = "===SCHED_OUTPUT_START===", "===SCHED_OUTPUT_END==="
TOPO = "1n1l2c1t"
SCHED = "test_sched_bin"


def eevdf(name: str, **kw) -> RunOutcome:
    return RunOutcome(test=name, scheduler=None, topology=TOPO, **kw)


def sched(name: str, **kw) -> RunOutcome:
    return RunOutcome(test=name, scheduler=SCHED, topology=TOPO, **kw)


def failed(*details: Detail, **kw) -> TestResult:
    return TestResult(outcome="fail", details=details, **kw)


PASSED = TestResult(outcome="pass")
IMBALANCE = MonitorReport(
    summary=MonitorSummary(total_samples=10, max_imbalance_ratio=10.0, max_local_dsq_depth=0,
                           avg_imbalance_ratio=10.0, avg_nr_running=5.5),
    verdict=MonitorVerdict("fail", "monitor FAILED",
                           ("imbalance ratio 10.0 exceeded limit 4.0 for 10 samples",)))

# (id, outcome, kind, reason, substrings in order, substrings that must be absent)
CASES = [
    ("eval_eevdf_no_com2_output",
     eevdf("__eval_eevdf_no_out__", console="boot log line\nKernel panic", exit_code=1),
     "fail", ERR_NO_TEST_FUNCTION_OUTPUT,
     [ERR_NO_TEST_FUNCTION_OUTPUT, "exit_code=1", "Kernel panic"],
     ["no test result received from guest"]),
    ("eval_sched_exits_no_com2_output",
     sched("__eval_sched_exits__", console="boot ok", exit_code=1),
     "fail", ERR_NO_TEST_RESULT_FROM_GUEST, [ERR_NO_TEST_RESULT_FROM_GUEST],
     ["test function produced no output"]),
    ("eval_sched_exits_with_sched_log",
     sched("__eval_sched_log__", exit_code=-1,
           sched_log=f"noise\n{S}\ndo_enqueue_task+0x1a0\nbalance_one+0x50\n{E}\nmore"),
     "fail", ERR_NO_TEST_RESULT_FROM_GUEST,
     [ERR_NO_TEST_RESULT_FROM_GUEST, "--- scheduler log ---", "do_enqueue_task"], ["noise"]),
    ("eval_sched_mid_test_exit_triggers_repro",
     sched("__eval_mid_exit_repro__", exit_code=1, repro="repro data",
           sched_log=f"{S}\nError: BPF program error\n{E}"),
     "fail", ERR_NO_TEST_RESULT_FROM_GUEST, ["--- auto-repro ---\nrepro data"], []),
    ("eval_timeout_no_result",
     eevdf("__eval_timeout__", console="booting...\nstill booting...", exit_code=0,
           timed_out=True),
     "fail", ERR_TIMED_OUT_NO_RESULT,
     ["[topo=1n1l2c1t] " + ERR_TIMED_OUT_NO_RESULT, "--- watchdog ---", "booting"], []),
    ("eval_payload_exits_no_check_result",
     eevdf("__eval_no_check__", guest_output="some output but no delimiters",
           console="Linux version 6.14.0\nboot complete", exit_code=0),
     "fail", ERR_NO_TEST_FUNCTION_OUTPUT, [ERR_NO_TEST_FUNCTION_OUTPUT],
     ["no test result received from guest"]),
    ("eval_sched_ext_dump_included",
     sched("__eval_dump__", console="ktstr-0 [001] 0.5: sched_ext_dump: Debug dump line",
           exit_code=-1),
     "fail", ERR_NO_TEST_RESULT_FROM_GUEST,
     ["--- sched_ext dump ---\nktstr-0 [001] 0.5: sched_ext_dump: Debug dump line"], []),
    ("eval_check_result_failed_includes_details",
     eevdf("__eval_fail_details__", test_result=failed(Detail("stuck 3000ms", "stuck"),
                                                        Detail("spread 45%", "unfair"))),
     "fail", "failed",
     ["ktstr_test '__eval_fail_details__' [topo=1n1l2c1t] failed:\n  stuck 3000ms\n  spread 45%"],
     ["--- diagnostics ---"]),
    ("eval_assert_failure_includes_sched_log",
     sched("__eval_fail_sched_log__", test_result=failed(Detail("worker 0 stuck 5000ms", "stuck")),
           sched_log=f"{S}\nscheduler noise line\n{E}"),
     "fail", "failed", ["worker 0 stuck 5000ms", "--- scheduler log ---\nscheduler noise line"], []),
    ("eval_assert_failure_has_fingerprint",
     sched("__eval_fingerprint__", test_result=failed(Detail("stuck 3000ms", "stuck")),
           sched_log=f"{S}\nstarting\nError: apply_cell_config BPF program returned error -2\n{E}"),
     "fail", "failed",
     ["Error: apply_cell_config BPF program returned error -2\nktstr_test '__eval_fingerprint__'"], []),
    ("eval_timeout_has_fingerprint",
     sched("__eval_timeout_fp__", timed_out=True, sched_log=f"{S}\nError: scheduler panicked\n{E}"),
     "fail", ERR_TIMED_OUT_NO_RESULT, ["Error: scheduler panicked\nktstr_test '__eval_timeout_fp__'"], []),
    ("eval_no_result_has_fingerprint",
     sched("__eval_no_result_fp__", exit_code=1,
           sched_log=f"{S}\nstartup log\nError: fatal scheduler crash\n{E}"),
     "fail", ERR_NO_TEST_RESULT_FROM_GUEST,
     ["Error: fatal scheduler crash\nktstr_test '__eval_no_result_fp__'"], []),
    ("eval_monitor_fail_has_fingerprint",
     sched("__eval_monitor_fp__", test_result=PASSED, monitor=IMBALANCE,
           sched_log=f"{S}\nstarting\nError: imbalance detected internally\n{E}"),
     "fail", ERR_MONITOR_FAILED_AFTER_SCENARIO,
     ["Error: imbalance detected internally\nktstr_test '__eval_monitor_fp__'",
      ERR_MONITOR_FAILED_AFTER_SCENARIO + ":\n  imbalance ratio 10.0 exceeded limit 4.0",
      "--- monitor ---", "--- scheduler log ---"], []),
    ("eval_timeout_with_sched_includes_diagnostics",
     sched("__eval_timeout_sched__", console="Linux version 6.14.0\nkernel panic here",
           exit_code=-1, timed_out=True),
     "fail", ERR_TIMED_OUT_NO_RESULT,
     ["[sched=test_sched_bin]", ERR_TIMED_OUT_NO_RESULT, "--- diagnostics ---", "kernel panic here"], []),
    ("eval_no_sentinels_shows_initramfs_failure",
     eevdf("__eval_no_sentinel__", console="Kernel panic", exit_code=1),
     "fail", ERR_NO_TEST_FUNCTION_OUTPUT, [STAGE_INIT_NOT_STARTED], []),
    ("eval_init_started_but_no_payload",
     eevdf("__eval_init_only__", console="boot log", exit_code=1, init_stage="init_started"),
     "fail", ERR_NO_TEST_FUNCTION_OUTPUT, [STAGE_INIT_STARTED_NO_PAYLOAD], []),
    ("eval_payload_started_no_result",
     eevdf("__eval_payload_start__", exit_code=1, init_stage="payload_started"),
     "fail", ERR_NO_TEST_FUNCTION_OUTPUT, [STAGE_PAYLOAD_STARTED_NO_RESULT], []),
    ("eval_crash_in_output_says_guest_crashed",
     sched("__eval_crash_detect__", exit_code=1,
           guest_output="KTSTR_INIT_STARTED\nPANIC: panicked at src/foo.rs:42: assertion failed"),
     "fail", "guest crashed: panicked at src/foo.rs:42: assertion failed",
     ["] guest crashed: panicked at src/foo.rs:42: assertion failed"], []),
    ("eval_crash_eevdf_says_guest_crashed",
     eevdf("__eval_crash_eevdf__", exit_code=1,
           guest_output="PANIC: panicked at src/bar.rs:10: index out of bounds"),
     "fail", "guest crashed: panicked at src/bar.rs:10: index out of bounds", ["index out of bounds"], []),
    ("eval_crash_message_from_field",
     sched("__eval_crash_field__", exit_code=1,
           guest_output="PANIC: panicked at src/test.rs:42: assertion failed",
           crash_message="PANIC: panicked at src/test.rs:42: assertion failed\n"
                         "   0: ktstr::vmm::rust_init::ktstr_guest_init\n"),
     "fail", "guest crashed:\nPANIC: panicked at src/test.rs:42: assertion failed\n"
             "   0: ktstr::vmm::rust_init::ktstr_guest_init\n",
     ["guest crashed:\nPANIC:", "0: ktstr::vmm::rust_init::ktstr_guest_init"], []),
    ("eval_sched_exit_includes_console",
     sched("__eval_sched_exit_console__", exit_code=1, console="kernel panic\nsched_ext: disabled",
           test_result=failed(Detail("scheduler process died unexpectedly after completing step 1 "
                                     "of 2 (0.5s into test)", "scheduler_crashed"))),
     "fail", "failed", ["--- diagnostics ---", "kernel panic"], []),
    ("eval_sched_exit_includes_monitor",
     sched("__eval_sched_exit_monitor__", exit_code=1,
           monitor=MonitorReport(MonitorSummary(total_samples=5, max_imbalance_ratio=3.0,
                                                max_local_dsq_depth=2)),
           test_result=failed(Detail("scheduler process died unexpectedly during workload "
                                     "(2.0s into test)", "scheduler_crashed"))),
     "fail", "failed",
     ["--- monitor ---\nsamples=5 max_imbalance=3.00 max_dsq_depth=2 stuck=0\n"
      "avg: imbalance=0.00 nr_running/cpu=0.0 dsq/cpu=0.0\nverdict: monitor OK"], []),
    ("eval_monitor_fail_includes_sched_log",
     sched("__eval_monitor_fail_sched__", test_result=PASSED, monitor=IMBALANCE,
           sched_log=f"{S}\nscheduler debug output here\n{E}"),
     "fail", ERR_MONITOR_FAILED_AFTER_SCENARIO, ["--- scheduler log ---\nscheduler debug output here"], []),
    ("timeout_with_scheduler_exit_message",
     sched("t", timed_out=True, console='[ 9.5] sched_ext: BPF scheduler "errsim" disabled (scx_bpf_error)\n'),
     "fail", "timed out (scheduler exited: scx_bpf_error)", [], []),
    ("timeout_with_scheduler_exit_no_message",
     sched("t", timed_out=True, console='[ 9.5] sched_ext: BPF scheduler "errsim" disabled\n'),
     "fail", "timed out (scheduler errsim exited)", [], []),
    ("timeout_with_crash_keeps_both",
     sched("t", timed_out=True, exit_code=1, crash_message="BUG: kernel NULL pointer dereference"),
     "fail", ERR_TIMED_OUT_NO_RESULT,
     ["--- watchdog ---", "\n\nguest crashed:\nBUG: kernel NULL pointer dereference", "--- diagnostics ---"], []),
    ("scheduler_exit_from_frame_without_message",
     sched("t", sched_exit=SchedExit(scheduler_name="simple")),
     "fail", "scheduler exited (simple)", [], []),
    ("scheduler_exit_from_dump_trace",
     sched("t", console="x-1 [002] d..1. 9.4: sched_ext_dump: swapper/2[0] triggered exit kind 1025:\n"
                        "x-1 [001] d..1. 9.4: sched_ext_dump: other cpu\n"
                        "x-1 [002] d..1. 9.4: sched_ext_dump:   scx_bpf_error (boom)\n"),
     "fail", "scheduler exited: scx_bpf_error (boom)", ["BUG SUMMARY: scx_bpf_error (boom)\nktstr_test"], []),
    ("guest_inconclusive_result",
     sched("t", test_result=TestResult("inconclusive", (Detail("no samples", "other", "inconclusive"),))),
     "inconclusive", "inconclusive", ["inconclusive:\n  no samples"], []),
    ("monitor_inconclusive",
     sched("t", test_result=PASSED, monitor=MonitorReport(
         verdict=MonitorVerdict("inconclusive", "no monitor samples"))),
     "inconclusive", "monitor evaluation inconclusive: no monitor samples",
     ["inconclusive:\n  monitor evaluation inconclusive: no monitor samples"], []),
    ("monitor_fail_ignored_without_scheduler",
     eevdf("t", test_result=PASSED, monitor=IMBALANCE), "pass", "", [], []),
    ("skip_before_run",
     sched("t", skip_reason="host has no KVM"), "skip", "host has no KVM",
     ["ktstr_test 't' [sched=test_sched_bin] [topo=1n1l2c1t] skipped: host has no KVM"], []),
]


@pytest.mark.parametrize(("outcome", "kind", "reason", "present", "absent"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_seed_case(outcome, kind, reason, present, absent):
    v = evaluate(outcome)
    assert v.kind == kind
    assert v.reason == reason
    pos = 0
    for s in present:
        found = v.message.find(s, pos)
        assert found >= 0, f"{s!r} missing (in order) from:\n{v.message}"
        pos = found + len(s)
    for s in absent:
        assert s not in v.message


def test_passing_result_has_no_message():
    v = evaluate(eevdf("__eval_pass__", test_result=PASSED))
    assert (v.kind, v.message, v.reason) == ("pass", "", "")


def test_no_scheduler_output_means_no_fingerprint():
    v = evaluate(eevdf("__eval_no_fp__", test_result=failed(Detail("stuck", "stuck"))))
    assert v.message == "ktstr_test '__eval_no_fp__' [topo=1n1l2c1t] failed:\n  stuck"
    assert v.fingerprint is None and v.bug_summary is None


def test_timeout_message_whole():
    v = evaluate(eevdf("__eval_timeout__", console="booting...\nstill booting...\n", exit_code=0,
                       timed_out=True, timings=Timings(12.5, 30, 20, 10)))
    assert v.message == (
        "ktstr_test '__eval_timeout__' [topo=1n1l2c1t] timed out (no result via bulk port or COM2)\n"
        "\n--- watchdog ---\n"
        "elapsed=12.5s (VM run wall-clock)\n"
        "vm_timeout=30s (host watchdog deadline = duration + boot allowance (60s + 1s per "
        "vCPU))\n"
        "watchdog_timeout=20s (scx_sched.watchdog_timeout override)\n"
        "duration=10s (workload duration)\n"
        "hint: the deadline already covers the duration plus boot, so the guest hung or ran "
        "slow: read the timeline and diagnostics; `ktstr run --timeout` allows more wall time "
        "(raising --duration lengthens the workload too)\n"
        "\n--- diagnostics ---\n"
        "stage: init script never started (kernel or mount failure)\n"
        "exit_code=0\n"
        "console (2 lines):\nbooting...\nstill booting...")
    assert list(v.sections) == ["watchdog", "diagnostics"]


def test_failed_result_with_stats_info_and_repro_message_whole():
    stats = ScenarioStats(4, 2, 10, 45.0, 3000, (CgroupStats(2, 2, 40.0, 3000, 5, 100),
                                                 CgroupStats(2, 2, 45.04, 12, 5, 200)))
    v = evaluate(sched("stall", test_result=failed(Detail("worker 3 stuck 3000ms", "stuck"),
                                                   info_notes=("cpu 1 offline",), stats=stats),
                       repro="probe data"))
    assert v.message == (
        "ktstr_test 'stall' [sched=test_sched_bin] [topo=1n1l2c1t] failed:\n  worker 3 stuck 3000ms"
        "\n\n--- info ---\n  cpu 1 offline"
        "\n\n--- stats ---\n4 workers, 2 cpus, 10 migrations, worst_spread=45.0%, worst_gap=3000ms\n"
        "  cg0: workers=2 cpus=2 spread=40.0% gap=3000ms migrations=5 iter=100\n"
        "  cg1: workers=2 cpus=2 spread=45.0% gap=12ms migrations=5 iter=200"
        "\n\n--- auto-repro ---\nprobe data")
    assert list(v.sections) == ["details", "info", "stats", "auto-repro"]
    assert v.sections["details"] == "worker 3 stuck 3000ms"


def test_monitor_section_with_event_counters():
    mon = MonitorReport(
        MonitorSummary(30, 10.0, 3, 1, 6.25, 5.5, 0.5,
                       EventDeltas(total_fallback=12, fallback_rate=1.25, total_dispatch_keep_last=3,
                                   keep_last_rate=0.5, total_bypass_duration=900)),
        MonitorVerdict("fail", "monitor FAILED", ("imbalance 10.0 > 4.0", "stuck cpu 1")))
    v = evaluate(sched("m", test_result=PASSED, monitor=mon))
    assert v.sections["monitor"] == (
        "samples=30 max_imbalance=10.00 max_dsq_depth=3 stuck=1\n"
        "avg: imbalance=6.25 nr_running/cpu=5.5 dsq/cpu=0.5\n"
        "events: fallback=12 (1.2/s) keep_last=3 (0.5/s) offline=0\n"
        "events+: bypass_duration=900ns\n"
        "verdict: monitor FAILED: imbalance 10.0 > 4.0; stuck cpu 1")
    assert v.message.startswith("ktstr_test 'm' [sched=test_sched_bin] [topo=1n1l2c1t] "
                                "passed scenario but monitor failed:\n  imbalance 10.0 > 4.0\n  stuck cpu 1")


def test_real_scx_bpf_error_run():
    """The recorded scx_errsim failure: scheduler output with its DEBUG DUMP and the
    kernel's disable lines."""
    out = sched("errsim_basic", init_stage="payload_started", exit_code=0,
                sched_log=(DATA / "scx_bpf_error.scheduler-output.txt").read_text(),
                console=(DATA / "scx_bpf_error.kernel-log-and-trace.txt").read_text())
    v = evaluate(out)
    head = v.message.split("\n")[:3]
    assert head == [
        "EXIT: scx_bpf_error (scx_errsim.bpf.c:74: errsim: injected error after 60 enqueues "
        "(pid 31)) on CPU 2",
        "BUG SUMMARY: scx_bpf_error (scx_errsim.bpf.c:74: errsim: injected error after 60 "
        "enqueues (pid 31))",
        "ktstr_test 'errsim_basic' [sched=test_sched_bin] [topo=1n1l2c1t] scheduler exited: "
        "scx_bpf_error sched_ext: errsim: scx_errsim.bpf.c:74: errsim: injected error after 60 "
        "enqueues (pid 31)",
    ]
    assert list(v.sections) == ["diagnostics", "scheduler log", "sched_ext dump"]
    dump = v.sections["sched_ext dump"]
    assert dump.startswith("DEBUG DUMP\n====") and dump.endswith("=" * 80)
    assert "CPU 2   : nr_run=2 flags=0x1 cpu_rel=0 ksync=470" in dump
    assert v.sections["scheduler log"].endswith("on CPU 2")
    assert v.sections["diagnostics"].startswith(
        "stage: payload started but produced no test result\nexit_code=0\nconsole (10 lines):\n")


def test_real_sysrq_trace_dump_goes_to_dump_section():
    trace = (DATA / "sched_ext_dump.sysrq-d.trace.txt").read_text()
    v = evaluate(sched("sysrq", timed_out=True, console=trace))
    body = v.sections["sched_ext dump"]
    assert body.splitlines()[0] == "            init-1       [003] d..1.     7.507006: sched_ext_dump: simple: root"
    assert all("sched_ext_dump:" in ln for ln in body.splitlines())
    assert len(body.splitlines()) == 68   # every sched_ext_dump: line of the trace
    assert v.bug_summary is None   # SysRq-D is not an exit: nothing to hoist


# --------------------------------------------------------------------------- expect_err

def test_expect_err_failure_becomes_pass_keeping_the_message():
    base = sched("xe", timed_out=True)
    v = evaluate(RunOutcome(**{**base.__dict__, "expect_err": True}))
    assert (v.kind, v.expected_failure, v.reason) == ("pass", True, ERR_TIMED_OUT_NO_RESULT)
    assert v.message == evaluate(base).message


def test_expect_err_pass_fails():
    v = evaluate(sched("xe", test_result=PASSED, expect_err=True))
    assert (v.kind, v.reason) == ("fail", ERR_EXPECTED_ERROR_PASSED)
    assert v.message == ("ktstr_test 'xe' [sched=test_sched_bin] [topo=1n1l2c1t] "
                         "expected error but test passed")


def test_expect_err_inconclusive_fails():
    v = evaluate(sched("xe", expect_err=True, test_result=TestResult(
        "inconclusive", (Detail("no data", outcome="inconclusive"),))))
    assert (v.kind, v.reason) == ("fail", ERR_EXPECTED_ERROR_INCONCLUSIVE)
    assert v.message.startswith("ktstr_test 'xe' [sched=test_sched_bin] [topo=1n1l2c1t] expected "
                                "error but test produced an Inconclusive verdict — zero-denominator "
                                "gate could not evaluate; expect_err is unsatisfied\n\n")


def test_expect_err_skip_stays_skip():
    v = evaluate(sched("xe", expect_err=True, skip_reason="no kvm"))
    assert v.kind == "skip"


# --------------------------------------------------------------------------- repro slot

def test_needs_repro_only_for_failing_scheduler_runs():
    fail = sched("r", exit_code=1)
    assert needs_repro(fail, evaluate(fail))
    assert not needs_repro(eevdf("r"), evaluate(eevdf("r")))
    mon = sched("r", test_result=PASSED, monitor=IMBALANCE)
    assert not needs_repro(mon, evaluate(mon))
    done = sched("r", repro="x")
    assert not needs_repro(done, evaluate(done))
    assert ERR_GUEST_CRASHED_PREFIX == "guest crashed:"
