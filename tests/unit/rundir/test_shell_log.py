"""shell.log as a person reads it: terminal control bytes applied, never shown."""

from __future__ import annotations

import pytest
from support import DATA

from ktstr_vmm.rundir.shell_log import clean_line, read_text, shell_log_path


@pytest.mark.parametrize(("raw", "shown"), [
    ("--- shell 1 output ---", "--- shell 1 output ---"),  # markers and plain text as they are
    ("ktstr:/# \x1b[6nls\r", "ktstr:/# ls"),  # the prompt's cursor query, the pty's CR
    ("ab\b \bc", "ac"),  # a backspace erased on screen
    ("abcd\x1b[2Dx\x1b[K", "abx"),  # cursor left, erase to the end (line editing)
    ("long old line\rnew", "newg old line"),  # a redraw over what was there
    ("\x1b]0;title\x07a\tb", "a       b"),  # a window title; a tab to column 8
    ("\x1b[1;34mroot\x1b[m  x\x07", "root  x"),  # colours dropped, the bell too
    ("a\x1b[3Cb", "a   b"),  # cursor right past the end pads
    ("half\x1b[", "half"),  # a sequence cut at the end of the line
])
def test_clean_line_plays_the_line_on_a_screen(raw, shown):
    assert clean_line(raw) == shown


def test_clean_line_keeps_colour_when_asked():
    assert clean_line("\x1b[0;0mstate\x1b[m \x1b[1;34mroot\x1b[m\r", color=True) == (
        "state \x1b[1;34mroot\x1b[0m")
    assert clean_line("\x1b[31mred\x1b[0m \x1b[1mbold", color=True) == (
        "\x1b[31mred\x1b[0m \x1b[1mbold\x1b[0m")


def test_the_recorded_pty_log_keeps_its_lines(tmp_path):
    path = DATA / "shell" / "pty.shell.log"
    raw = path.read_bytes().decode()
    text = read_text(path)
    assert len(text.split("\n")) == len(raw.split("\n"))  # line N is line N of the file
    assert "\x1b" not in text and "\r" not in text
    assert "\x1b[1;34mroot\x1b[0m" in read_text(path, color=True)
    assert shell_log_path(tmp_path) is None
    (tmp_path / "shell.log").write_bytes(b"")
    assert shell_log_path(tmp_path) == tmp_path / "shell.log"
