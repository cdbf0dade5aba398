"""The scheduler log's cycle collapse against ktstr's own: the anchor keeps instruction
addresses first and strips them only when nothing repeats that way.

The first test runs on real verifier output (tests/data/kernel_tools/README.md): scx_loopy's
loop body calls bpf_get_prandom_u32() at four addresses per iteration, so with addresses
stripped that call outnumbers every once-per-iteration line and no period is found. The
rest are ktstr's src/verifier.rs unit tests (normalize_*, detect_cycle_*, collapse_cycles_*,
the unrolled-loop and three-program cases) with their strings.
"""

from __future__ import annotations

from support import DATA

from ktstr_vmm.evaluate.schedlog import (
    collapse_cycles,
    detect_cycle,
    normalize_verifier_line,
    sched_log_body,
    text_lines,
)

DATA = DATA / "kernel_tools"


def _loopy() -> list[str]:
    return text_lines((DATA / "scx_loopy.verifier-loop.sched.txt").read_text())


def test_real_verifier_loop_with_one_instruction_at_four_addresses_collapses():
    lines = _loopy()
    assert sum("(85) call bpf_get_prandom_u32#7" in ln for ln in lines[6:41]) == 4
    assert detect_cycle(lines) == (6, 35, 6)
    out = text_lines(collapse_cycles("\n".join(lines)))
    assert out[:6] == lines[:6]
    assert out[6] == "--- 6x of the following 35 lines ---"
    # first and last iterations keep their own register annotations
    assert out[7:42] == lines[6:41] and out[41].endswith("; R6=5")
    assert out[42] == "--- 4 identical iterations omitted ---"
    assert out[43:78] == lines[181:216] and out[77].endswith("; R6=0")
    assert out[78] == "--- end repeat ---"
    assert out[79:] == lines[216:]
    assert out[81] == "R7 invalid mem access 'scalar'"


def test_real_verifier_loop_section_is_kept_whole_after_collapse():
    body = sched_log_body("\n".join(_loopy()))
    lines = text_lines(body)
    assert len(lines) == 226 - 6 * 35 + 2 * 35 + 3
    assert "lines truncated" not in body
    assert lines[-1] == "Failed to load skel"


# --------------------------------------------------------------------------- ktstr's tests

def test_normalize_verifier_line_as_ktstr():
    cases = {
        "100: (07) r1 += 8": "100: (07) r1 += 8",
        "3006: (07) r9 += 1  ; frame1: R9_w=2": "3006: (07) r9 += 1",
        "42: (bf) r6 = r1 ; R1=ctx() R6_w=ctx()": "42: (bf) r6 = r1",
        "3041: frame1: R0_w=scalar()": "3041:",
        "3026: (b5) if r6 <= 0x11dc0 goto pc+2 3029: frame1: R0=1 R6=scalar()":
            "3026: (b5) if r6 <= 0x11dc0 goto pc+2",
        "50: (05) goto pc+10": "50: (05) goto pc+10",
        "func#0 @0": "func#0 @0",
        "": "",
        "50: (05) goto pc-10 60: frame1: R0=1": "50: (05) goto pc-10",
        "100: (07) r1 += 8 ; for (int j = 0; j < n; j++)":
            "100: (07) r1 += 8 ; for (int j = 0; j < n; j++)",
        "200: (b7) r0 = 0 ; Return value": "200: (b7) r0 = 0 ; Return value",
        "3029: R0=1 R6=scalar(id=1)": "3029:",
        "42: R10=fp0": "42:",
    }
    for line, want in cases.items():
        assert normalize_verifier_line(line) == want, line


def test_normalize_trims_as_rust_does():
    # Rust's trim() keeps the ASCII separators \x1c-\x1f that Python's strip() removes
    assert normalize_verifier_line("\x1c5: (07) r1 += 8") == "\x1c5: (07) r1 += 8"
    assert normalize_verifier_line("\u3000 7: (07) r1 += 8 \u2028") == "7: (07) r1 += 8"


def _repeating_log(prefix: int, period: int, reps: int, suffix: int) -> str:
    lines = [f"{1000 + i}: (07) r1 += {i}" for i in range(prefix)]
    for rep in range(reps):
        for j in range(period):
            lines.append(f"{100 + j}: (bf) r{j % 10} = r{(j + 1) % 10} ; "
                         f"frame1: R{j % 10}_w={rep * 100 + j}")
    lines += [f"{2000 + i}: (95) exit_{i}" for i in range(suffix)]
    return "\n".join(lines)


def test_detect_cycle_basic_and_with_prefix_suffix():
    assert detect_cycle(text_lines(_repeating_log(0, 10, 8, 0))) == (0, 10, 8)
    assert detect_cycle(text_lines(_repeating_log(5, 10, 8, 5))) == (5, 10, 8)


def test_detect_cycle_needs_three_repeats_and_fifteen_lines():
    assert detect_cycle(text_lines(_repeating_log(0, 10, 2, 0))) is None
    assert detect_cycle([f"{100 + i % 3}: (07) r1 += {i}" for i in range(20)]) is None
    assert detect_cycle([f"{i}: unique_insn_{i}" for i in range(100)]) is None
    assert detect_cycle([]) is None


def test_detect_cycle_exact_boundary():
    lines = text_lines(_repeating_log(0, 5, 6, 0))
    assert len(lines) == 30
    assert detect_cycle(lines) == (0, 5, 6)


def test_collapse_cycles_basic_empty_and_no_cycle():
    log = _repeating_log(2, 10, 8, 2)
    out = collapse_cycles(log)
    assert "--- 8x of the following 10 lines ---" in out
    assert "--- 6 identical iterations omitted ---" in out and "--- end repeat ---" in out
    assert len(text_lines(out)) == 2 + 1 + 10 + 1 + 10 + 1 + 2
    assert collapse_cycles("") == ""
    assert collapse_cycles("line 1\nline 2\nline 3\n") == "line 1\nline 2\nline 3\n"


def test_collapse_cycles_keeps_the_stats_line():
    log = _repeating_log(0, 10, 8, 0) + ("\nprocessed 1000 insns (limit 1000000) "
                                         "max_states_per_insn 5 total_states 100 "
                                         "peak_states 30 mark_read 10\n")
    assert text_lines(collapse_cycles(log))[-1].startswith("processed 1000 insns")


def test_collapse_cycles_with_register_annotations():
    lines = ["0: (07) r1 += 1"]
    for rep in range(8):
        for j in range(6):
            lines.append(f"{100 + j}: (bf) r{j % 10} = r{(j + 1) % 10} ; "
                         f"frame1: R{j % 10}_w={rep * 100 + j}")
    lines.append("200: (95) exit")
    out = collapse_cycles("\n".join(lines))
    assert "--- 8x of the following 6 lines ---" in out
    assert "--- 6 identical iterations omitted ---" in out


def _unrolled_verifier_log(copies: int, body_len: int) -> str:
    ops = ["(85) call bpf_ktime_get_ns#5", "(bf) r2 = r0", "(77) r0 >>= 16", "(af) r1 ^= r0",
           "(77) r2 >>= 32", "(0f) r1 += r2", "(24) w1 *= 7", "(04) w1 += 1"]
    lines = ["func#0 @0", "0: R1=ctx() R10=fp0"]
    addr = 10
    for copy in range(copies):
        for j, op in enumerate(ops[:body_len]):
            lines.append(f"{addr}: {op} ; R0_w=scalar(id={copy * 100 + j})")
            addr += 1
    lines.append(f"{addr}: (05) goto pc-1")
    lines.append("processed 1000 insns (limit 1000000) max_states_per_insn 3 "
                 "total_states 50 peak_states 20 mark_read 5")
    return "\n".join(lines)


def test_unrolled_loop_falls_back_to_addresses_stripped():
    # every address is unique, so no anchor repeats with addresses kept
    log = _unrolled_verifier_log(8, 6)
    assert detect_cycle(text_lines(log)) == (2, 6, 8)
    out = collapse_cycles(log)
    assert "--- 8x of the following 6 lines ---" in out
    assert len(text_lines(out)) < len(text_lines(log))


def test_three_distinct_program_logs_are_not_collapsed():
    blob = """libbpf: prog 'init': BPF program load failed: -22
libbpf: -- BEGIN PROG LOAD LOG --
func#0 @0
0: R1=ctx() R10=fp0
1: (bf) r6 = r1
2: (07) r6 += 8
3: (61) r0 = *(u32 *)(r6 + 0)
4: (95) exit
processed 5 insns (limit 1000000) max_states_per_insn 1 total_states 3 peak_states 1 mark_read 0
libbpf: -- END PROG LOAD LOG --
libbpf: prog 'dispatch': BPF program load failed: -22
libbpf: -- BEGIN PROG LOAD LOG --
func#1 @10
10: R1=ctx() R10=fp0
11: (bf) r7 = r1
12: (85) call bpf_ktime_get_ns#5
13: (77) r0 >>= 32
14: (95) exit
processed 5 insns (limit 1000000) max_states_per_insn 1 total_states 3 peak_states 1 mark_read 0
libbpf: -- END PROG LOAD LOG --
libbpf: prog 'enqueue': BPF program load failed: -22
libbpf: -- BEGIN PROG LOAD LOG --
func#2 @20
20: R1=ctx() R10=fp0
21: (b7) r0 = 0
22: (63) *(u32 *)(r10 - 4) = r0
23: (61) r1 = *(u32 *)(r10 - 4)
24: (95) exit
processed 5 insns (limit 1000000) max_states_per_insn 1 total_states 3 peak_states 1 mark_read 0
libbpf: -- END PROG LOAD LOG --
libbpf: failed to load BPF skeleton 'ktstr_ops': -22
"""
    assert collapse_cycles(blob) == blob
