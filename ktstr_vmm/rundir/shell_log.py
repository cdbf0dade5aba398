"""`shell.log` as a person reads it: what the run's guest shells typed and printed
(written by the runner's shell hub, ktstr_vmm/run/shellhub.py ShellLog; the format is in
docs/run-directory.md), with the terminal's control bytes applied instead of shown.

A pty shell's output is raw terminal bytes: busybox's line editing asks for the cursor
position (`ESC[6n`), redraws with carriage returns, backspaces and erase-to-end, and `ls`
colours its names. Printed as they are, a terminal would answer the query into the user's
input; shown escaped, they are noise. `clean_line` plays each line on a one-line screen
(carriage return, backspace, cursor left/right, erase to the end, tabs) and keeps only the
colour (SGR) sequences when asked to. Lines never merge or split, so line N of the cleaned
text is line N of the file (the TUI's log view cleans the lines it shows). Marker lines
(`--- shell N ... ---`) and a piped shell's text pass unchanged.
"""

from __future__ import annotations

import re
from pathlib import Path

from .layout import SHELL_LOG

# One escape sequence: CSI (parameters, intermediates, final byte), OSC (ended by BEL or
# ST), a charset selection (`ESC ( B`), any other two-byte escape; or one control byte.
_TOKEN = re.compile(r"\x1b\[([0-?]*)[ -/]*([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
                    r"|\x1b[()][0-~]|\x1b[ -~]?|[\x00-\x1f\x7f]")
_RESET = "\x1b[0m"
TAB = 8
NO_SHELL = "no shell was opened on this run"


def clean_line(line: str, *, color: bool = False) -> str:
    """One line of shell.log (without its newline) as a terminal would leave it on screen;
    with `color`, the SGR sequences that style what is left are kept (`ESC[...m`)."""
    if not _TOKEN.search(line):
        return line
    cells: list[tuple[str, str]] = []  # (character, the SGR sequences in force)
    sgr, col, pos = "", 0, 0

    def put(text: str) -> None:
        nonlocal col
        for ch in text:
            if col < len(cells):
                cells[col] = (ch, sgr)
            else:
                cells.extend([(" ", "")] * (col - len(cells)))
                cells.append((ch, sgr))
            col += 1

    for m in _TOKEN.finditer(line):
        put(line[pos:m.start()])
        pos = m.end()
        tok = m.group(0)
        if m.group(2) is not None:  # CSI
            params, final = m.group(1), m.group(2)
            count = int(params) if params.isdigit() else 1
            if final == "m":
                reset = all(c in ("", "0") for c in params.split(";"))
                sgr = "" if reset else sgr + tok
            elif final == "D":
                col = max(0, col - count)
            elif final == "C":
                col += count
            elif final == "G":
                col = max(0, count - 1)
            elif final in "KJ" and params in ("", "0"):
                del cells[col:]
        elif tok == "\r":
            col = 0
        elif tok == "\b":
            col = max(0, col - 1)
        elif tok == "\t":
            put(" " * (TAB - col % TAB))
    put(line[pos:])
    if not color:
        return "".join(ch for ch, _ in cells)
    out, last = [], ""
    for ch, style in cells:
        if style != last:
            out.append(_RESET + style if last else style)
            last = style
        out.append(ch)
    if last:
        out.append(_RESET)
    return "".join(out)


def shell_log_path(run_dir: Path) -> Path | None:
    """The run's shell.log, or None when no shell was opened on it."""
    path = Path(run_dir) / SHELL_LOG
    return path if path.is_file() else None


def read_text(path: Path, *, color: bool = False) -> str:
    """The whole log cleaned line by line (it is at most 16 MiB, the hub's cap)."""
    raw = Path(path).read_bytes().decode("utf-8", "replace")
    return "\n".join(clean_line(line, color=color) for line in raw.split("\n"))
