"""ktstr's newer evaluation unit tests (src/test_support/eval/eval_tests_*.rs: the
section-by-section cases) that express behaviour the seed has, with their pinned strings.

Where ktstr's newer code differs from the seed (the seed's `spread={:.1}%` against a later
`spread=n/a`, cleanup budgets, post_vm callbacks, scx_bpf_error matchers, phase buckets),
the seed wins; docs/evaluation-parity.md lists those differences.
"""

from __future__ import annotations

from ktstr_vmm.evaluate.judge import (
    ERR_GUEST_CRASHED_PREFIX,
    ERR_NO_TEST_FUNCTION_OUTPUT,
    ERR_NO_TEST_RESULT_FROM_GUEST,
    ERR_TIMED_OUT_NO_RESULT,
    CgroupStats,
    Detail,
    RunOutcome,
    ScenarioStats,
    TestResult,
    evaluate,
)
from ktstr_vmm.evaluate.sections import periodic_body, temporal_body

S, E = "===SCHED_OUTPUT_START===", "===SCHED_OUTPUT_END==="
TOPO = "1n1l2c1t"


def eevdf(name: str, **kw) -> RunOutcome:
    return RunOutcome(test=name, scheduler=None, topology=TOPO, **kw)


def sched(name: str, **kw) -> RunOutcome:
    return RunOutcome(test=name, scheduler="test_sched_bin", topology=TOPO, **kw)


def failed(*details: Detail, **kw) -> TestResult:
    return TestResult(outcome="fail", details=details, **kw)


# --------------------------------------------------------------------- periodic / temporal

def test_periodic_samples_section_renders_coverage_and_missing_count():
    v = evaluate(eevdf("__eval_periodic_section__", test_result=failed(Detail("stuck", "stuck")),
                       periodic_target=4, periodic_fired=2))
    assert "\n\n--- periodic samples ---\nfired 2/4 periodic snapshots (50% coverage)\n" \
           "missing 2 sample(s) — see captures.jsonl in the run directory for skip / " \
           "timeout reasons" in v.message


def test_periodic_samples_section_only_when_captures_were_asked_for():
    assert periodic_body(0, 0) == ""
    assert periodic_body(5, 5) == "fired 5/5 periodic snapshots (100% coverage)"
    assert periodic_body(0, 3) == ("fired 0/3 periodic snapshots (0% coverage)\nmissing 3 "
                                   "sample(s) — see captures.jsonl in the run directory for "
                                   "skip / timeout reasons")
    v = evaluate(eevdf("__eval_no_periodic__", test_result=failed(Detail("stuck", "stuck"))))
    assert "periodic samples" not in v.message


def test_temporal_assertions_section_exact_text_and_place():
    tr = failed(Detail("sample tag p3 violated rate_within", kind="temporal"),
                Detail("worker 0 stuck 5000ms", kind="stuck"))
    v = evaluate(sched("__eval_temporal_section__", test_result=tr, periodic_target=3,
                       periodic_fired=3, sched_log=f"{S}\nscheduler noise line\n{E}"))
    assert ("\n\n--- temporal assertions ---\n1 temporal assertion violation(s):\n"
            "  sample tag p3 violated rate_within") in v.message
    # between the periodic-samples section and the scheduler log, as the seed orders them
    order = [v.message.index(f"--- {n} ---") for n in
             ("periodic samples", "temporal assertions", "scheduler log")]
    assert order == sorted(order)
    # the detail is still in the failure list above
    assert v.message.index("  sample tag p3 violated rate_within") < order[0]
    names = list(v.sections)
    assert names.index("periodic samples") + 1 == names.index("temporal assertions")
    assert names.index("temporal assertions") + 1 == names.index("scheduler log")


def test_temporal_section_lists_only_failed_temporal_details():
    assert temporal_body([]) == ""
    assert temporal_body(["a", "b"]) == "2 temporal assertion violation(s):\n  a\n  b"
    tr = TestResult(outcome="inconclusive",
                    details=(Detail("not enough samples", kind="temporal", outcome="inconclusive"),))
    assert "temporal assertions" not in evaluate(eevdf("__t__", test_result=tr)).message


# --------------------------------------------------------------------- failure sections

def test_info_notes_section_follows_the_failures():
    tr = failed(Detail("stuck 9000ms", kind="stuck"), info_notes=("context: ran under cgroup cgA",))
    msg = evaluate(eevdf("__eval_info_section__", test_result=tr)).message
    assert "\n\n--- info ---\n  context: ran under cgroup cgA" in msg
    assert msg.index("stuck 9000ms") < msg.index("--- info ---")


def test_stats_section_header_and_per_cgroup_lines():
    stats = ScenarioStats(total_workers=6, total_cpus=4, total_migrations=11, worst_spread=12.5,
                          worst_gap_ms=33, cgroups=(
                              CgroupStats(2, 2, 12.5, 33, 7, 900), CgroupStats(1, 1, 0.0, 5, 4, 42)))
    msg = evaluate(eevdf("__eval_stats_section__",
                         test_result=failed(Detail("spread too wide", kind="unfair"),
                                            stats=stats))).message
    assert ("\n\n--- stats ---\n6 workers, 4 cpus, 11 migrations, worst_spread=12.5%, "
            "worst_gap=33ms\n"
            "  cg0: workers=2 cpus=2 spread=12.5% gap=33ms migrations=7 iter=900\n"
            "  cg1: workers=1 cpus=1 spread=0.0% gap=5ms migrations=4 iter=42") in msg


def test_repro_section_on_guest_fail_only_with_a_scheduler():
    tr = failed(Detail("worker 0 stuck", kind="stuck"))
    with_sched = evaluate(sched("__eval_fail_repro_section__", test_result=tr,
                                repro="REPRO-PAYLOAD-X")).message
    assert "\n\n--- auto-repro ---\nREPRO-PAYLOAD-X" in with_sched
    without = evaluate(eevdf("__eval_fail_no_repro_section__", test_result=tr,
                             repro="REPRO-PAYLOAD-X")).message
    assert "--- auto-repro ---" not in without


def test_inconclusive_verdict_word_in_header():
    tr = TestResult(outcome="inconclusive",
                    details=(Detail("zero-denominator metric", outcome="inconclusive"),))
    v = evaluate(eevdf("__eval_inconclusive_word__", test_result=tr))
    assert v.kind == "inconclusive"
    assert "] inconclusive:\n  zero-denominator metric" in v.message
    assert "] failed:" not in v.message


def test_sched_log_over_200_distinct_lines_keeps_the_last_200():
    body = "\n".join(f"frame_{i}+0x10" for i in range(250))
    msg = evaluate(sched("__eval_sched_log_trunc__", sched_log=f"{S}\n{body}\n{E}",
                         exit_code=1)).message
    assert "--- scheduler log ---\n[50 lines truncated]\nframe_50+0x10\n" in msg
    assert "frame_249+0x10" in msg and "frame_0+0x10\n" not in msg


def test_bug_summary_line_precedes_the_header():
    tr = failed(Detail("stuck", kind="stuck"))
    msg = evaluate(sched("__eval_bug_summary_closure__", test_result=tr,
                         sched_log=f"{S}\nscx_bpf_error: cell config invalid\n{E}")).message
    assert msg.startswith("scx_bpf_error: cell config invalid\n"
                          "BUG SUMMARY: scx_bpf_error: cell config invalid\n"
                          "ktstr_test '__eval_bug_summary_closure__' [sched=test_sched_bin]")


def test_scheduler_without_monitor_has_no_monitor_section():
    msg = evaluate(sched("__eval_no_monitor_section__",
                         test_result=failed(Detail("worker 0 stuck", kind="stuck")))).message
    assert "--- monitor ---" not in msg


def test_no_result_eevdf_with_scheduler_output_suppresses_diagnostics():
    v = evaluate(eevdf("__eval_console_suppress__", sched_log=f"{S}\nnoise\n{E}",
                       console="Kernel panic", exit_code=1))
    assert v.reason == ERR_NO_TEST_FUNCTION_OUTPUT
    assert "--- diagnostics ---" not in v.message
    verbose = evaluate(eevdf("__eval_console_suppress__", sched_log=f"{S}\nnoise\n{E}",
                             console="Kernel panic", exit_code=1, verbose=True))
    assert "--- diagnostics ---" in verbose.message


# --------------------------------------------------------------------- reasons from kmsg

def test_timeout_reason_from_the_kernel_disable_line():
    v = evaluate(sched("__eval_timeout_sched_exited__", timed_out=True, exit_code=-1,
                       console='[1.0] sched_ext: BPF scheduler "scx_test" disabled '
                               '(runnable task stall)\n'))
    assert v.reason == "timed out (scheduler exited: runnable task stall)"
    assert ERR_TIMED_OUT_NO_RESULT not in v.message and "--- watchdog ---" in v.message
    empty = evaluate(sched("__eval_timeout_sched_exited_empty__", timed_out=True,
                           console='[1.0] sched_ext: BPF scheduler "scx_test" disabled ()\n'))
    assert empty.reason == "timed out (scheduler scx_test exited)"


def test_no_result_reason_from_the_kernel_disable_line():
    v = evaluate(sched("__eval_noresult_sched_exited__", exit_code=1,
                       console='[1.0] sched_ext: BPF scheduler "scx_test" disabled '
                               '(BPF runtime error)\n'))
    assert v.reason == "scheduler exited: BPF runtime error"
    assert ERR_NO_TEST_RESULT_FROM_GUEST not in v.message
    empty = evaluate(sched("__eval_noresult_sched_exited_empty__", exit_code=1,
                           console='[1.0] sched_ext: BPF scheduler "scx_test" disabled ()\n'))
    assert empty.reason == "scheduler exited (scx_test)"


def test_timeout_with_crash_renders_both_timeout_first():
    v = evaluate(eevdf("__eval_timeout_with_crash__", timed_out=True, console="booting...",
                       crash_message="PANIC: panicked at src/x.rs:7: boom\n   0: frame_one"))
    assert v.reason == ERR_TIMED_OUT_NO_RESULT
    assert f"\n\n{ERR_GUEST_CRASHED_PREFIX}\nPANIC: panicked at src/x.rs:7: boom" in v.message
    assert v.message.index(ERR_TIMED_OUT_NO_RESULT) < v.message.index("frame_one")
