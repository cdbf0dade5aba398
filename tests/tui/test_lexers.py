"""The pygments lexers on the recorded real artifacts (tests/data/eval)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pygments.token import Comment, Generic, Keyword, Name, Number, Operator
from support import DATA

from ktstr_tui.lexers import LEXERS, get_lexer, highlight_line

pytestmark = pytest.mark.tui
EVAL = DATA / "eval"


def tokens(lexer: str, line: str) -> list[tuple[object, str]]:
    return [(t, v) for _, t, v in get_lexer(lexer).get_tokens_unprocessed(line) if v.strip()]


def test_scxdump_cpu_header_task_dsq_and_counters():
    assert tokens("scxdump", "CPU 2   : nr_run=2 flags=0x1 cpu_rel=0 ksync=470")[:4] == [
        (Keyword, "CPU"), (Number.Integer, "2"), (Operator, "   :"), (Name.Attribute, "nr_run=")]
    task = tokens("scxdump", "  R kcompactd0[58] *root +0ms")
    assert task[:3] == [(Keyword.Type, "R"), (Name.Class, "kcompactd0"), (Number.Integer, "[58]")]
    dsq = tokens("scxdump", "      sticky/holding_cpu=-1/-1 dsq_id=0x8000000000000002")
    assert (Name.Tag, "0x8000000000000002") in dsq
    ev = tokens("scxdump", "               SCX_EV_DISPATCH_KEEP_LAST:              438")
    assert ev[0] == (Name.Constant, "SCX_EV_DISPATCH_KEEP_LAST")
    assert tokens("scxdump", "Event counters") == [(Generic.Heading, "Event counters")]


def test_scxdump_through_the_tracefs_prefix():
    line = ("            init-1       [003] d..2.     7.507772: sched_ext_dump:  *R init[128] "
            "*root -136ms")
    toks = tokens("scxdump", line)
    assert toks[0][0] is Comment and toks[1] == (Comment.Special, "sched_ext_dump: ")
    assert (Keyword.Type, "*R") in toks and (Name.Class, "init") in toks


def test_schedlog_exit_line_and_errors_are_errors():
    assert tokens("schedlog", "EXIT: scx_bpf_error (scx_errsim.bpf.c:74: errsim: injected)") == [
        (Generic.Error, "EXIT: scx_bpf_error (scx_errsim.bpf.c:74: errsim: injected)")]
    assert tokens("schedlog", "libbpf: prog 'enqueue': failed to load: -13") == [
        (Name.Namespace, "libbpf:"), (Generic.Error, " prog 'enqueue': failed to load: -13")]
    assert tokens("schedlog", "libbpf: loaded 3 maps")[1][0] is Generic.Traceback
    assert (Generic.Error, "error") in tokens("schedlog", "scheduler error: oops")


def test_verifier_rejection_lines_stand_out():
    log = (EVAL.parent / "kernel_tools" / "scx_qmap.verifier-reject.sched.txt").read_text()
    lines = log.splitlines()
    assert tokens("schedlog", lines[95]) == [(Generic.Error, "R7 invalid mem access 'scalar'")]
    assert tokens("schedlog", lines[97])[0][0] is Generic.Error  # Verification failed: ...
    assert tokens("schedlog", lines[318])[0][0] is Generic.Strong  # processed 71 insns
    assert tokens("schedlog", lines[319]) == [(Generic.Heading, "-- END PROG LOAD LOG --")]
    assert tokens("schedlog", lines[0])[1][0] is Generic.Error  # libbpf: ... load failed
    assert all(highlight_line(ln, "schedlog").plain == ln for ln in lines)


def test_kernel_console_timestamps_sched_ext_and_bugs():
    toks = tokens("kconsole", '[    3.931856] sched_ext: BPF scheduler "errsim" enabled')
    assert toks[0] == (Comment, "[    3.931856]")
    assert (Name.Namespace, "sched_ext") in toks and (Generic.Inserted, "enabled") in toks
    assert tokens("kconsole", "[   12.0] BUG: kernel NULL pointer dereference")[1][0] is Generic.Error
    assert tokens("kconsole", "[   12.0] WARNING: CPU: 1 PID: 0 at kernel/sched/ext.c")[1][0] \
        is Generic.Strong
    assert (Generic.Heading, "Call Trace:") in tokens("kconsole", "[   12.1] Call Trace:")


@pytest.mark.parametrize("name,lexer", [
    ("scx_bpf_error.scheduler-output.txt", "schedlog"),
    ("sched_ext_dump.sysrq-d.trace.txt", "scxdump"),
    ("scx_bpf_error.kernel-log-and-trace.txt", "kconsole"),
])
def test_every_recorded_line_highlights_losslessly(name, lexer):
    for line in (EVAL / name).read_text().splitlines():
        assert highlight_line(line, lexer).plain == line


@given(st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=300),
       st.sampled_from(sorted(LEXERS)))
def test_highlighting_never_changes_or_loses_text(line, lexer):
    # control characters never reach a lexer: the log reader replaces them first
    assert highlight_line(line, lexer).plain == line


def test_a_shell_log_is_read_as_a_terminal_left_it():
    """`ktstr tui RUN/shell.log`: the terminal lexer, the log file's lines cleaned."""
    from pathlib import Path

    from ktstr_tui.lexers import TERMINAL
    from ktstr_tui.log_file import decode_terminal
    from ktstr_tui.screens.log_screen import lexer_for

    assert lexer_for(Path("runs/x/shell.log")) == TERMINAL
    line = decode_terminal(b"ktstr:/# \x1b[6nls \x1b[1;34mroot\x1b[m\r")
    assert line == "ktstr:/# ls \x1b[1;34mroot\x1b[0m"
    text = highlight_line(line, TERMINAL)
    assert text.plain == "ktstr:/# ls root" and text.spans[0].start == 12
