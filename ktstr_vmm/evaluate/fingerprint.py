"""The lines a failure message hoists to its top, and the sched_ext dump they come from.

Port of ktstr's `extract_bug_summary`, `extract_exit_from_dump_trace`,
`extract_sched_ext_dump` and their trace_pipe helpers. The sched_ext dump reaches us in two
shapes, both handled:
- trace_pipe lines `<task>-<pid> [<cpu>] <flags> <ts>: sched_ext_dump: <body>` on the
  console (SysRq-D or an error exit with the tracepoint enabled);
- the scheduler's own `DEBUG DUMP` block, which scx loaders print from the exit info
  (between a `DEBUG DUMP` line with a `====` rule under it and the closing `====` rule).
"""

from __future__ import annotations

import re

from .schedlog import text_lines

SCHED_EXT_DUMP_MARKER = "sched_ext_dump:"
EXIT_ANCHOR = "triggered exit kind"
_CSI = re.compile(r"\x1b\[[\x20-\x3f]*[\x40-\x7e]?")
_RULE = re.compile(r"^={20,}\s*$")


def strip_ansi(text: str) -> str:
    """Remove ANSI CSI sequences (ESC [ params final) so coloured logs still match."""
    return _CSI.sub("", text) if "\x1b" in text else text


def parse_trace_cpu(line: str) -> str | None:
    """The `[NNN]` CPU token of a trace_pipe `sched_ext_dump:` line, else None.

    Only the text before `: sched_ext_dump:` is searched, and the last bracket there wins,
    so a task name containing brackets cannot shadow it. 1-5 ASCII digits.
    """
    pos = line.find(": " + SCHED_EXT_DUMP_MARKER)
    if pos < 0:
        return None
    prefix = line[:pos]
    open_ = prefix.rfind("[")
    if open_ < 0:
        return None
    close = prefix.find("]", open_ + 1)
    if close < 0:
        return None
    inner = prefix[open_ + 1:close]
    if not (1 <= len(inner) <= 5) or not (inner.isascii() and inner.isdigit()):
        return None
    return prefix[open_:close + 1]


def _same_cpu_body_after(lines: list[str], after: int, cpu: str | None) -> str | None:
    """First line after `after` on the same trace CPU (any line when cpu is None), stopping
    at the next exit anchor: its body was lost and must not borrow the next one's."""
    for nxt in lines[after + 1:]:
        if cpu is not None and parse_trace_cpu(nxt) != cpu:
            continue
        if EXIT_ANCHOR in nxt:
            return None
        return nxt
    return None


def _body(line: str) -> str:
    pos = line.find(SCHED_EXT_DUMP_MARKER)
    return (line[pos + len(SCHED_EXT_DUMP_MARKER):] if pos >= 0 else line).strip()


def extract_bug_summary(sched_log: str, dump: str) -> str | None:
    """The first actionable line: the body under the first `triggered exit kind` anchor of
    the dump, else the first scheduler-log line mentioning `scx_bpf_error`. ANSI-free,
    trimmed; None when there is nothing to say."""
    lines = text_lines(strip_ansi(dump))
    for i, line in enumerate(lines):
        if EXIT_ANCHOR in line:
            nxt = _same_cpu_body_after(lines, i, parse_trace_cpu(line))
            if nxt is not None:
                body = _body(nxt)
                if body:
                    return body
    for line in text_lines(strip_ansi(sched_log)):
        if "scx_bpf_error" in line and line.strip():
            return line.strip()
    return None


def extract_exit_from_dump_trace(console: str) -> str | None:
    """Exit reason from trace_pipe dump lines when the kernel's `disabled (...)` line is
    missing (truncated console): the same-CPU body under a `triggered exit kind` anchor."""
    lines = text_lines(console)
    for i, line in enumerate(lines):
        if SCHED_EXT_DUMP_MARKER in line and EXIT_ANCHOR in line:
            nxt = _same_cpu_body_after(lines, i, parse_trace_cpu(line))
            if nxt is not None and SCHED_EXT_DUMP_MARKER in nxt:
                body = _body(nxt)
                if body:
                    return body
    return None


def extract_trace_dump(console: str) -> str | None:
    """All `sched_ext_dump:` lines of the console, joined; None when there are none."""
    lines = [ln for ln in text_lines(console) if SCHED_EXT_DUMP_MARKER in ln]
    return "\n".join(lines) if lines else None


def extract_debug_dump(sched_output: str) -> str | None:
    """The scheduler's `DEBUG DUMP` block (rules included), or None.

    Ends at the closing `====` rule; an unterminated block (the scheduler died mid-print)
    runs to the end of the output.
    """
    lines = text_lines(sched_output)
    for i, line in enumerate(lines):
        if line.strip() == "DEBUG DUMP" and i + 1 < len(lines) and _RULE.match(lines[i + 1]):
            for j in range(i + 2, len(lines)):
                if _RULE.match(lines[j]):
                    return "\n".join(lines[i:j + 1])
            return "\n".join(lines[i:]).rstrip() or None
    return None


def find_sched_ext_dump(console: str, sched_output: str) -> str | None:
    """The run's sched_ext dump: trace_pipe lines on the console first (the seed's source),
    else the DEBUG DUMP block of the scheduler output."""
    return extract_trace_dump(console) or extract_debug_dump(sched_output)
