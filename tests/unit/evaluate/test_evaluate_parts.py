"""Evaluation's parts: scheduler-log tail and cycle collapse, BUG SUMMARY extraction,
kernel-log exits, colour, result.json fields, and evaluate() on arbitrary input."""

from __future__ import annotations

import io
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ktstr_vmm.evaluate.console import console_diagnostics, parse_kmsg_exits
from ktstr_vmm.evaluate.fingerprint import extract_bug_summary, extract_debug_dump, strip_ansi
from ktstr_vmm.evaluate.judge import (
    CgroupStats,
    Detail,
    MonitorReport,
    MonitorSummary,
    MonitorVerdict,
    RunOutcome,
    ScenarioStats,
    SchedExit,
    TestResult,
    Timings,
    color_enabled,
    colorize,
    evaluate,
    result_json,
)
from ktstr_vmm.evaluate.schedlog import collapse_cycles, extract_sched_log, sched_log_body
from ktstr_vmm.evaluate.sections import fmt_duration

# --------------------------------------------------------------------------- scheduler log


def test_long_log_keeps_last_200_lines_with_truncation_note():
    log = "\n".join(f"tick {i}" for i in range(250))
    body = sched_log_body(log)
    lines = body.split("\n")
    assert lines[0] == "[50 lines truncated]"
    assert lines[1] == "tick 50" and lines[-1] == "tick 249" and len(lines) == 201


def test_verifier_output_is_kept_whole():
    log = "\n".join(f"{i}: (b7) r{i % 10} = {i}" for i in range(300)) + \
        "\nprocessed 300 insns (limit 1000000) max_states_per_insn 0"
    body = sched_log_body(log)
    assert "lines truncated" not in body
    assert body.split("\n")[0] == "0: (b7) r0 = 0" and len(body.split("\n")) == 301


def test_repeating_cycles_are_collapsed():
    block = ["loop: enter dispatch", "loop: pick cpu", "loop: insert dsq", "loop: kick cpu",
             "loop: leave dispatch"]
    log = "\n".join(["start"] + block * 6 + ["end"])
    assert collapse_cycles(log) == "\n".join(
        ["start", "--- 6x of the following 5 lines ---", *block,
         "--- 4 identical iterations omitted ---", *block, "--- end repeat ---", "end"]) + "\n"


def test_verifier_register_annotations_do_not_break_cycles():
    it = ["{a}: (07) r9 += 1  ; frame1: R9_w={n}", "{b}: (bf) r1 = r9  ; R1_w={n}",
          "{c}: (85) call bpf_loop#181", "{d}: (15) if r0 == 0x0 goto pc+2", "{e}: (05) goto pc-6"]
    lines = []
    for k in range(4):
        base = 100 + 5 * k
        lines += [t.format(a=base, b=base + 1, c=base + 2, d=base + 3, e=base + 4, n=k) for t in it]
    out = collapse_cycles("\n".join(lines))
    assert out.startswith("--- 4x of the following 5 lines ---\n100: (07) r9 += 1  ; frame1: R9_w=0\n")
    assert "--- 2 identical iterations omitted ---" in out and out.endswith("--- end repeat ---\n")


def test_sched_log_markers_and_plain_text():
    assert extract_sched_log("a\n===SCHED_OUTPUT_START===\n x \n===SCHED_OUTPUT_END===\nb") == "x"
    assert extract_sched_log("===SCHED_OUTPUT_START===\n\n===SCHED_OUTPUT_END===") is None
    assert extract_sched_log("  plain scheduler output\n") == "plain scheduler output"
    assert extract_sched_log(" \n\t") is None


# --------------------------------------------------------------------------- hoisted lines

def test_bug_summary_takes_same_cpu_body_across_interleaved_lines():
    dump = ("t-1 [002] d..1. 1.0: sched_ext_dump: swapper/2[0] triggered exit kind 1025:\n"
            "t-2 [000] d..1. 1.0: sched_ext_dump: unrelated line from cpu 0\n"
            "t-1 [002] d..1. 1.0: sched_ext_dump:   scx_bpf_error (a.bpf.c:7: bad dsq)\n")
    assert extract_bug_summary("", dump) == "scx_bpf_error (a.bpf.c:7: bad dsq)"


def test_bug_summary_falls_back_to_scheduler_log_and_strips_colour():
    log = "ok\n\x1b[31mscx_bpf_error: task 5 bad\x1b[0m\nmore scx_bpf_error"
    assert extract_bug_summary(log, "") == "scx_bpf_error: task 5 bad"
    assert extract_bug_summary("nothing here", "") is None
    assert strip_ansi("\x1b[1;31mred\x1b[0m") == "red"


def test_debug_dump_block_is_found_in_scheduler_output():
    out = "x\nDEBUG DUMP\n" + "=" * 80 + "\n\nroot\n" + "=" * 80 + "\n\nEXIT: done"
    assert extract_debug_dump(out) == "DEBUG DUMP\n" + "=" * 80 + "\n\nroot\n" + "=" * 80
    assert extract_debug_dump("DEBUG DUMP\n" + "=" * 80 + "\ncut off mid-") == \
        "DEBUG DUMP\n" + "=" * 80 + "\ncut off mid-"
    assert extract_debug_dump("no dump") is None


def test_kernel_log_exit_with_stack_and_message():
    log = ("[ 9.55] sched_ext: BPF scheduler \"errsim\" disabled (scx_bpf_error)\n"
           "[ 9.56] sched_ext: errsim: a.bpf.c:74: injected\n"
           "[ 9.57]    scx_exit_bstr+0xdd/0x110\n"
           "[ 9.58] random other driver line\n"
           "[ 9.60] sched_ext: BPF scheduler \"rusty\" disabled (runnable task stall)\n")
    first, second = parse_kmsg_exits(log)
    assert first == SchedExit("errsim", "scx_bpf_error sched_ext: errsim: a.bpf.c:74: injected",
                              None, "error")
    assert (second.scheduler_name, second.message, second.kind_name) == \
        ("rusty", "runnable task stall", "stall")


def test_console_diagnostics_flags_partial_last_line_and_window():
    console = "\n".join(f"l{i}" for i in range(30))
    body = console_diagnostics(console, -2, "init_started")
    assert body.split("\n")[:3] == [
        "stage: init started but payload never ran (cgroup/scheduler setup failed)",
        "exit_code=-2 (ENOENT)",
        "console (20 lines, window-truncated, last line incomplete):"]
    assert body.endswith("l29 [partial]")
    assert console_diagnostics("", 0, None) == ""


def test_rust_style_durations():
    assert [fmt_duration(x) for x in (0, 1.5, 30, 0.25, 0.0000125, 90.000000001)] == \
        ["0ns", "1.5s", "30s", "250ms", "12.5µs", "90.000000001s"]


# --------------------------------------------------------------------------- colour, json

FAILED = RunOutcome("c", "scx_simple", "1n1l2c1t", timed_out=True,
                    sched_log="scx_bpf_error (x)\nlast line")


def test_colorize_marks_fingerprint_and_bug_summary_only_when_enabled():
    msg = evaluate(FAILED).message
    assert colorize(msg, False) == msg
    lines = colorize(msg, True).split("\n")
    assert lines[0] == "\x1b[1;31mlast line\x1b[0m"
    assert lines[1] == "\x1b[1;31mBUG SUMMARY:\x1b[0m scx_bpf_error (x)"
    assert lines[2].startswith("ktstr_test 'c'") and "\x1b" not in "".join(lines[2:])


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_color_only_on_a_terminal_and_never_with_no_color(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert color_enabled(_Tty()) and not color_enabled(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not color_enabled(_Tty())


def test_result_json_fields():
    v = evaluate(FAILED)
    doc = result_json(v, stats={"workers": 2})
    assert list(doc) == ["verdict", "reason", "message", "sections", "fingerprint", "bug_summary", "headline",
                         "expected_failure", "stats"]
    assert doc["verdict"] == "fail" and doc["fingerprint"] == "last line"
    assert doc["sections"]["scheduler log"] == "scx_bpf_error (x)\nlast line"
    assert json.loads(json.dumps(doc)) == doc


# --------------------------------------------------------------------------- never raises

_text = st.text(max_size=400)
_lines = st.lists(st.sampled_from([
    "", "sched_ext: BPF scheduler \"x\" disabled (", "triggered exit kind 1025:",
    "t-1 [002] d..1. 1.0: sched_ext_dump: a", "DEBUG DUMP", "=" * 40, "PANIC: boom",
    "===SCHED_OUTPUT_START===", "===SCHED_OUTPUT_END===", "scx_bpf_error", "f+0x1/0x2",
    "processed 5 insns", "\x1b[31m", "\r", "goto pc+", "1: R0=1",
]) | _text, max_size=30).map("\n".join)
_detail = st.builds(Detail, message=_text, kind=st.sampled_from(["other", "scheduler_crashed"]),
                    outcome=st.sampled_from(["fail", "inconclusive", "skip"]))
_stats = st.builds(ScenarioStats, total_workers=st.integers(0, 10**6),
                   worst_spread=st.floats(allow_nan=True, allow_infinity=True),
                   cgroups=st.lists(st.builds(CgroupStats, spread=st.floats()), max_size=3).map(tuple))
_result = st.builds(TestResult, outcome=st.sampled_from(["pass", "fail", "inconclusive", "skip"]),
                    details=st.lists(_detail, max_size=3).map(tuple),
                    info_notes=st.lists(_text, max_size=2).map(tuple),
                    stats=st.none() | _stats)
_monitor = st.builds(MonitorReport,
                     summary=st.builds(MonitorSummary, max_imbalance_ratio=st.floats()),
                     verdict=st.builds(MonitorVerdict,
                                       kind=st.sampled_from(["pass", "fail", "inconclusive"]),
                                       summary=_text, details=st.lists(_text, max_size=2).map(tuple)),
                     thresholds_enabled=st.booleans())
_outcome = st.builds(
    RunOutcome, test=_text, scheduler=st.none() | _text, topology=_text,
    test_result=st.none() | _result,
    sched_exit=st.none() | st.builds(SchedExit, scheduler_name=_text, message=_text),
    sched_log=_lines, console=_lines, guest_output=_lines, crash_message=st.none() | _text,
    timed_out=st.booleans(), exit_code=st.none() | st.integers(-(2**31), 2**31),
    init_stage=st.none() | st.sampled_from(["init_started", "payload_started", "bogus"]),
    monitor=st.none() | _monitor, timeline=_text,
    timings=st.builds(Timings, elapsed_s=st.floats(), vm_timeout_s=st.floats()),
    sched_ext_dump=st.none() | _lines, repro=st.none() | _text, expect_err=st.booleans(),
    skip_reason=st.none() | _text, verbose=st.booleans())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_outcome)
def test_evaluate_never_raises_and_is_serialisable(outcome):
    v = evaluate(outcome)
    assert v.kind in ("pass", "fail", "inconclusive", "skip")
    json.dumps(result_json(v))
    if v.kind == "fail":
        assert f"ktstr_test '{outcome.test}'" in v.message


def test_enabled_line_is_not_an_exit_and_agent_notes_end_the_exit_message():
    from ktstr_vmm.evaluate.console import parse_kmsg_exits

    console = ('[    3.8] sched_ext: BPF scheduler "simple" enabled\n'
               "ktstr-init: lifecycle scx_enabled\n")
    assert parse_kmsg_exits(console) == []
    console += ('[    9.1] sched_ext: BPF scheduler "simple" disabled (scx_bpf_error)\n'
                "[    9.1] sched_ext: simple: boom\n"
                "ktstr-init: scheduler failed: scx_disabled (state disabled) sched_ext: x\n")
    (ev,) = parse_kmsg_exits(console)
    assert ev.message == "scx_bpf_error sched_ext: simple: boom"
