"""Temporal assertions: each kind's pass and violation with ktstr's message text (its
src/assert/temporal.rs formats), declaration errors, and the projection of capture and
monitor-sample fields."""

from __future__ import annotations

import math

import pytest

from ktstr_vmm.errors import UsageError
from ktstr_vmm.evaluate.temporal import (
    Capture,
    MonitorSample,
    evaluate_assertions,
    fmt,
    parse_assertion,
    parse_assertions,
)


def caps(values, var="vtime_now", step_ms=1000, extra=None):
    """Captures periodic_000.. one second apart holding `var` in the scheduler's .bss."""
    out = []
    for i, v in enumerate(values):
        bss = {var: v} if v is not None else {}
        dump = {"maps": [{"name": "scx_simp.bss", "value": bss},
                         {"name": "scx_simp.data", "value": {"uei": {"kind": 0}}}],
                "rq_scx_states": [{"cpu": 0, "nr_running": 1}, {"cpu": 1, "nr_running": i}],
                "dsq_states": [{"id": 1, "origin": "global", "nr": 2 * i}],
                "scx_sched_state": {"aborting": False, "exit_kind": 0}}
        if extra:
            dump.update(extra)
        out.append(Capture(f"periodic_{i:03d}", i * step_ms, dump))
    return out


def judge(text, captures=(), samples=()):
    return evaluate_assertions(parse_assertions([text]), captures, samples)


def messages(f):
    return [m for _, m in f.details]


def test_nondecreasing_and_strictly_increasing():
    assert judge("nondecreasing(bpf.vtime_now)", caps([1, 2, 2, 5])).details == []
    f = judge("nondecreasing(bpf.vtime_now)", caps([1, 3, 2, 5]))
    assert messages(f) == ["bpf.vtime_now (nondecreasing): regression at sample periodic_002 "
                           "(+2000ms): value 2 after prior value 3 at sample periodic_001 "
                           "(+1000ms)"]
    f = judge("strictly_increasing(bpf.vtime_now)", caps([1, 2, 2]))
    assert messages(f) == ["bpf.vtime_now (strictly_increasing): regression at sample "
                           "periodic_002 (+2000ms): value 2 after prior value 2 at sample "
                           "periodic_001 (+1000ms)"]
    assert f.verdicts == [{"assertion": "strictly_increasing(bpf.vtime_now)", "verdict": "fail",
                           "samples": 3, "details": messages(f)}]


def test_monotonic_vacuous_and_missing_samples_are_notes_not_failures():
    f = judge("nondecreasing(bpf.vtime_now)", caps([7]))
    assert f.details == [] and f.notes == [
        "bpf.vtime_now (nondecreasing): only 1 samples — pattern vacuously holds; ensure at "
        "least 2 captures (--capture-every) for meaningful coverage"]
    f = judge("nondecreasing(bpf.vtime_now)", caps([1, None, 3]))
    assert f.details == []
    assert f.notes[0].startswith("bpf.vtime_now (nondecreasing): skipped 1 sample(s) with "
                                 "projection errors: periodic_001(+1000ms): bpf.vtime_now: no "
                                 "'vtime_now' in the scheduler's globals (have: uei)")


def test_rate_within_per_ms():
    assert judge("rate_within(bpf.vtime_now, 0.5, 2)", caps([0, 1000, 2500])).details == []
    f = judge("rate_within(bpf.vtime_now, 0.5, 2)", caps([0, 1000, 4000]))
    assert messages(f) == ["bpf.vtime_now (rate_within [0.5, 2]): rate 3.0000/ms between "
                           "samples periodic_001 (+1000ms, value 1000) and periodic_002 "
                           "(+2000ms, value 4000)"]
    same_time = [Capture("periodic_000", 5, caps([1])[0].dump),
                 Capture("periodic_001", 5, caps([2])[0].dump)]
    f = judge("rate_within(bpf.vtime_now, 0, 1)", same_time)
    assert f.details[0][0] == "inconclusive"
    assert "zero-time delta between sample periodic_000 (+5ms) and periodic_001 (+5ms)" in \
        f.details[0][1]


def test_steady_within_after_warmup():
    assert judge("steady_within(bpf.vtime_now, 1s, 0.1)", caps([0, 100, 104, 96])).details == []
    f = judge("steady_within(bpf.vtime_now, 1s, 0.1)", caps([0, 100, 100, 160]))
    assert messages(f) == ["bpf.vtime_now (steady_within mean 120.0000 ±10.0%): sample "
                           "periodic_001 (+1000ms): value 100 outside [108.0000, 132.0000]",
                           "bpf.vtime_now (steady_within mean 120.0000 ±10.0%): sample "
                           "periodic_002 (+2000ms): value 100 outside [108.0000, 132.0000]",
                           "bpf.vtime_now (steady_within mean 120.0000 ±10.0%): sample "
                           "periodic_003 (+3000ms): value 160 outside [108.0000, 132.0000]"]


def test_converges_to_needs_three_in_band_before_deadline():
    assert judge("converges_to(bpf.vtime_now, 10, 1, 4s)", caps([50, 10, 11, 9, 30])).details == []
    f = judge("converges_to(bpf.vtime_now, 10, 1, 4s)", caps([50, 10, 11, 30, 9]))
    assert messages(f) == ["bpf.vtime_now (converges_to 10 ±1, deadline_ms=4000): no "
                           "3-consecutive-in-band witness before deadline (5 samples evaluated)"]
    f = judge("converges_to(bpf.vtime_now, 10, 1, 1s)", caps([10, 10, 10]))
    assert f.details == [] and "insufficient samples for converges_to (need ≥3, have 2)" in f.notes[0]


def test_ratio_within_two_fields():
    cs = caps([2, 4, 9])
    # scx.nr_running is 1 + i: ratios 2, 2, 3
    assert judge("ratio_within(bpf.vtime_now, scx.nr_running, 1, 4)", cs).details == []
    # scx.nr_queued is 2 * i: 2/0 has no ratio, 4/2 = 2, 9/4 = 2.25
    f = judge("ratio_within(bpf.vtime_now, scx.nr_queued, 1, 2)", cs)
    assert f.details == [
        ("inconclusive", "bpf.vtime_now (ratio_within): rhs == 0 at sample periodic_000 (+0ms) "
                         "— denominator is INSTRUMENT-derived; ratio is neither pass nor fail"),
        ("fail", "bpf.vtime_now (ratio_within scx.nr_queued [1, 2]): ratio 2.2500 at sample "
                 "periodic_002 (+2000ms) — lhs=9 rhs=4")]
    assert f.verdicts[0]["verdict"] == "fail"


def test_each_at_least_at_most_between():
    cs = caps([5, 1, 9])
    assert messages(judge("at_least(bpf.vtime_now, 2)", cs)) == [
        "bpf.vtime_now (each.at_least 2): sample periodic_001 (+1000ms): value 1"]
    assert messages(judge("at_most(bpf.vtime_now, 8)", cs)) == [
        "bpf.vtime_now (each.at_most 8): sample periodic_002 (+2000ms): value 9"]
    assert messages(judge("between(bpf.vtime_now, 2, 8)", cs)) == [
        "bpf.vtime_now (each.between [2, 8]): sample periodic_001 (+1000ms): value 1",
        "bpf.vtime_now (each.between [2, 8]): sample periodic_002 (+2000ms): value 9"]
    assert messages(judge("at_least(bpf.vtime_now, 0)", caps([1, None]))) == [
        "bpf.vtime_now (each.at_least 0): sample periodic_001 (+1000ms): projection error: "
        "bpf.vtime_now: no 'vtime_now' in the scheduler's globals (have: uei)"]


def test_always_and_eventually_over_a_window():
    cs = caps([0, 0, 3, 4])
    assert messages(judge("always(scx.aborting)", cs)) == [
        f"scx.aborting (always_true): sample periodic_00{i} (+{i * 1000}ms): value false"
        for i in range(4)]
    assert judge("always(scx.nr_queued < 100)", cs).details == []
    assert messages(judge("always(scx.nr_queued <= 2)", cs)) == [
        "scx.nr_queued (always <= 2): sample periodic_002 (+2000ms): value 4",
        "scx.nr_queued (always <= 2): sample periodic_003 (+3000ms): value 6"]
    assert judge("always(scx.nr_queued <= 2, 3s)", cs).details != []
    assert judge("always(scx.nr_queued >= 4, 2s)", cs).details == []
    assert judge("eventually(bpf.vtime_now >= 3)", cs).details == []
    assert messages(judge("eventually(bpf.vtime_now >= 3, 1s)", cs)) == [
        "bpf.vtime_now (eventually >= 3, by 1000ms): not reached in 2 samples; last value 0 "
        "at sample periodic_001 (+1000ms)"]


def test_monitor_sample_fields():
    samples = [MonitorSample(f"sample_{i:04d}", i * 100,
                             {"cpus": [{"cpu": 0, "nr_running": 1, "local_dsq_nr": 0},
                                       {"cpu": 1, "nr_running": 2 + i, "local_dsq_nr": i}],
                              "scx": {"state": "enabled" if i < 3 else "disabled",
                                      "events": {"select_cpu_fallback": i * i}}})
               for i in range(4)]
    assert judge("nondecreasing(monitor.events.select_cpu_fallback)", (), samples).details == []
    assert judge("always(monitor.nr_running <= 6)", (), samples).details == []
    assert messages(judge("always(monitor.enabled)", (), samples)) == [
        "monitor.enabled (always_true): sample sample_0003 (+300ms): value false"]
    assert messages(judge("at_most(monitor.local_dsq_nr, 2)", (), samples)) == [
        "monitor.local_dsq_nr (each.at_most 2): sample sample_0003 (+300ms): value 3"]


def test_placeholder_capture_is_a_projection_error():
    cs = caps([1, 2], extra={"is_placeholder": True, "scx_walker_unavailable": "VM gone"})
    assert messages(judge("at_least(bpf.vtime_now, 0)", cs))[0].endswith(
        "projection error: bpf.vtime_now: placeholder capture (VM gone)")


@pytest.mark.parametrize("text,error", [
    ("rate_within(bpf.x, 2)",
     "--assert 'rate_within(bpf.x, 2)': rate_within takes rate_within(FIELD, LO, HI), got 2 "
     "arguments"),
    ("sometimes(bpf.x)", "--assert 'sometimes(bpf.x)': unknown kind 'sometimes'"),
    ("nondecreasing(x)", "--assert 'nondecreasing(x)': 'x' is not a field"),
    ("nondecreasing(scx.foo)", "--assert 'nondecreasing(scx.foo)': unknown field 'scx.foo'"),
    ("between(bpf.x, 5, 1)", "--assert 'between(bpf.x, 5, 1)': lo=5 > hi=1"),
    ("at_least(bpf.x, many)", "--assert 'at_least(bpf.x, many)': argument 'many' is not a number"),
    ("steady_within(bpf.x, soon, 0.1)",
     "--assert 'steady_within(bpf.x, soon, 0.1)': duration 'soon' is not a duration"),
    ("nondecreasing bpf.x", "--assert 'nondecreasing bpf.x': not KIND(ARGS)"),
])
def test_bad_declarations_are_one_line_usage_errors(text, error):
    with pytest.raises(UsageError) as e:
        parse_assertion(text)
    assert e.value.message == error and "\n" not in e.value.one_line()


def test_declarations_parse_durations_and_predicates():
    a = parse_assertion("always(monitor.nr_running < 10, 500ms)")
    assert (a.kind, a.fields, a.op, a.rhs, a.args) == ("always", ("monitor.nr_running",), "<", 10,
                                                       (500,))
    assert parse_assertion("converges_to(bpf.x, 1.5, 0.1, 2s)").args == (1.5, 0.1, 2000)


def test_numbers_print_as_rust_display():
    assert [fmt(v) for v in (2.0, 0.5, 1e-7, 1e21, 3, True, math.inf, math.nan)] == \
        ["2", "0.5", "0.0000001", "1000000000000000000000", "3", "true", "inf", "NaN"]


def test_a_violated_assertion_fails_a_passing_run_and_heads_it():
    from dataclasses import replace

    from ktstr_vmm.evaluate.judge import RunOutcome, SchedExit, TestResult, evaluate
    from ktstr_vmm.evaluate.temporal import merge_findings

    f = judge("at_most(bpf.vtime_now, 1)", caps([0, 1, 5]))
    tr = merge_findings(TestResult(outcome="pass", info_notes=("context",)), f)
    assert tr.outcome == "fail" and tr.info_notes == ("context",)
    o = RunOutcome(test="t", scheduler="scx_simple", topology="1n1l2c1t", test_result=tr,
                   periodic_target=3, periodic_fired=3,
                   sched_exit=SchedExit("simple", "unregistered from user space", 64, "other"))
    v = evaluate(o)
    assert v.kind == "fail"
    assert v.headline == ("temporal assertion: bpf.vtime_now (each.at_most 1): sample "
                          "periodic_002 (+2000ms): value 5")
    # an inconclusive finding alone makes a passing run inconclusive
    g = judge("rate_within(bpf.vtime_now, 0, 1)",
              [Capture("periodic_000", 5, caps([1])[0].dump),
               Capture("periodic_001", 5, caps([2])[0].dump)])
    assert merge_findings(TestResult(outcome="pass"), g).outcome == "inconclusive"
    assert evaluate(replace(o, test_result=merge_findings(TestResult(outcome="pass"), g))).kind \
        == "inconclusive"
