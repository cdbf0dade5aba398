"""The line index behind the log panes: offsets, lazy reads, growth, truncation, search."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ktstr_tui.log_file import LogFile

pytestmark = pytest.mark.tui


def index(path) -> LogFile:
    lf = LogFile(path)
    assert lf.open()
    for _ in lf.scan():
        pass
    return lf


def expected_lines(data: bytes) -> list[str]:
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [b.decode("utf-8", "replace").rstrip("\r").expandtabs(8) for b in lines]


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=2000))
def test_index_matches_splitting_the_bytes(tmp_path_factory, data):
    p = tmp_path_factory.mktemp("lf") / "x.log"
    p.write_bytes(data)
    lf = index(p)
    want = expected_lines(data)
    assert lf.line_count == len(want)
    got = lf.read_lines(0, len(want) + 5)
    clean = ["".join(c if ord(c) >= 32 else "\ufffd" for c in w) for w in want]
    assert got == clean
    lf.close()


def test_partial_last_line_then_growth_then_truncation(tmp_path):
    p = tmp_path / "sched.log"
    p.write_bytes(b"one\ntw")
    lf = index(p)
    assert lf.line_count == 2 and lf.read_lines(0, 5) == ["one", "tw"]
    with open(p, "ab") as f:
        f.write(b"o\nthree\n")
    assert lf.poll() == "grown"
    for _ in lf.scan():
        pass
    assert lf.read_lines(0, 5) == ["one", "two", "three"]
    p.write_bytes(b"new\n")  # truncated in place (rotated by a writer)
    assert lf.poll() == "reset"
    for _ in lf.scan():
        pass
    assert lf.read_lines(0, 5) == ["new"]
    os.unlink(p)
    assert lf.poll() == "deleted"
    assert lf.read_lines(0, 1) == ["new"]  # what is open stays readable
    lf.close()


def test_missing_file_is_waited_for(tmp_path):
    lf = LogFile(tmp_path / "console.log")
    assert lf.poll() is None
    (tmp_path / "console.log").write_text("[    0.1] hello\n")
    assert lf.poll() == "grown"
    for _ in lf.scan():
        pass
    assert lf.read_line(0) == "[    0.1] hello"
    lf.close()


def test_find_forward_backward_and_wrapping(tmp_path):
    p = tmp_path / "s.log"
    p.write_text("".join(f"line {i}{' EXIT: boom' if i in (3, 7) else ''}\n" for i in range(10)))
    lf = index(p)
    assert lf.find("exit:", -1) == 3
    assert lf.find("EXIT:", 3) == 7
    assert lf.find("EXIT:", 7) == 3  # wraps
    assert lf.find("EXIT:", 7, backwards=True) == 3
    assert lf.find("EXIT:", 3, backwards=True) == 7  # wraps backwards
    assert lf.find("nowhere", 0) is None
    lf.close()


def test_a_long_line_is_cut_not_read_whole(tmp_path):
    p = tmp_path / "long.log"
    p.write_bytes(b"x" * 200_000 + b"\nshort\n")
    lf = index(p)
    assert len(lf.read_line(0)) == 64 << 10
    assert lf.read_lines(0, 2)[1] == "short"
    lf.close()
