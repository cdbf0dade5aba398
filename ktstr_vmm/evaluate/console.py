"""What evaluation reads from the kernel console and the guest's own output.

Ports of ktstr's `parse_kmsg_window` (the kernel's `sched_ext: BPF scheduler "NAME"
disabled (...)` lines), `extract_panic_message`, `classify_init_stage` and
`format_console_diagnostics` (the `--- diagnostics ---` section body).
"""

from __future__ import annotations

import errno
import re
from dataclasses import dataclass

from .schedlog import text_lines
from .types import SchedExit

STAGE_INIT_NOT_STARTED = "init script never started (kernel or mount failure)"
STAGE_INIT_STARTED_NO_PAYLOAD = "init started but payload never ran (cgroup/scheduler setup failed)"
STAGE_PAYLOAD_STARTED_NO_RESULT = "payload started but produced no test result"

# RunOutcome.init_stage values (deepest Lifecycle phase reached) -> label.
_STAGES = {
    "payload_started": STAGE_PAYLOAD_STARTED_NO_RESULT,
    "init_started": STAGE_INIT_STARTED_NO_PAYLOAD,
    "not_started": STAGE_INIT_NOT_STARTED,
}
STAGE_KEYS = frozenset(_STAGES)

CONSOLE_TAIL_LINES = 20
# `[    9.559612] ` printk timestamp: dropped from continuation lines of an exit message
# (the seed keeps it; it only makes the header harder to read).
_PRINTK_TS = re.compile(r"^\[\s*\d+\.\d+\]\s*")
_ANCHOR = 'sched_ext: BPF scheduler "'
AGENT_PREFIX = "ktstr-init:"  # lines the guest agent writes to the console
_SYM_CHARS = re.compile(r"^[A-Za-z0-9_.$]+$")
_HEXONLY = re.compile(r"^[0-9a-fA-F]{1,16}$")


def init_stage_label(stage: str | None) -> str:
    return _STAGES.get(stage or "not_started", STAGE_INIT_NOT_STARTED)


@dataclass(frozen=True)
class StackFrame:
    name: str
    offset: int
    size: int | None
    raw: str


def _rstrip_nonhex(s: str) -> str:
    end = len(s)
    while end > 0 and s[end - 1] not in "0123456789abcdefABCDEF":
        end -= 1
    return s[:end]


def _hex(s: str) -> int | None:
    return int(s, 16) if s and _HEXONLY.match(s) else None


def stack_frames(line: str) -> list[StackFrame]:
    """`func+0xoff/0xsize` tokens of one kernel line (the `%pS` format)."""
    frames = []
    for token in line.split():
        plus = token.find("+0x")
        if plus <= 0 or not _SYM_CHARS.match(token[:plus]):
            continue
        rest = token[plus + 3:]
        if "/" in rest:
            off_s, size_s = rest.split("/", 1)
            size_s = _rstrip_nonhex(size_s[2:] if size_s.startswith("0x") else size_s)
            size = _hex(size_s)
        else:
            off_s, size = _rstrip_nonhex(rest), None
        offset = _hex(off_s)
        if offset is None:
            continue
        frames.append(StackFrame(token[:plus], offset, size, token))
    return frames


def _classify(message: str, frames: list[StackFrame]) -> str:
    low = message.lower()
    if ("watchdog" in low or "stall" in low or "stuck" in low
            or any(f.name in ("check_rq_for_timeouts", "scx_watchdog_workfn") for f in frames)):
        return "stall"
    if "aborting" in low or "error" in low or "ebpf" in low or ("enabled" in low and "disabled" in low):
        return "error"
    if ("unloaded" in low or "removed" in low or "done" in low) and not frames:
        return "normal"
    return "error" if frames else "other"


def parse_kmsg_exits(console: str) -> list[SchedExit]:
    """Every scheduler-disable event of a kernel log, in order.

    The anchor line gives the name and the parenthesised reason; following lines that carry
    `%pS` frames are the stack, and narrative lines mentioning sched_ext / scx_ / bpf extend
    the message (as the seed's parse_kmsg_window does). `Call Trace:` / `<TASK>` lines are
    skipped; any other line ends the event.
    """
    events = []
    lines = text_lines(console)
    i = 0
    while i < len(lines):
        pos = lines[i].find(_ANCHOR)
        if pos < 0:
            i += 1
            continue
        after = lines[i][pos + len(_ANCHOR):]
        name, _, verb = after.partition('"')
        if not verb.lstrip().startswith("disabled"):  # `... "simple" enabled` is no exit
            i += 1
            continue
        _, paren, tail = after.partition("(")
        message = tail.rstrip(")").strip() if paren else ""
        frames: list[StackFrame] = []
        j = i + 1
        while j < len(lines):
            nxt = lines[j]
            if _ANCHOR in nxt:
                break
            found = stack_frames(nxt)
            if found:
                frames.extend(found)
            elif nxt.strip():
                t = nxt.strip()
                if t.endswith("Call Trace:") or t.endswith("<TASK>") or t.endswith("</TASK>"):
                    j += 1
                    continue
                low = nxt.lower()
                if not ("sched_ext" in low or "scx_" in low or "bpf" in low):
                    break
                if t.startswith(AGENT_PREFIX):  # our guest agent's own console notes
                    break
                t = _PRINTK_TS.sub("", t)
                message = f"{message} {t}" if message else t
            j += 1
        events.append(SchedExit(scheduler_name=name, message=message,
                                kind_name=_classify(message, frames)))
        i = j
    return events


def extract_panic_message(output: str) -> str | None:
    """Text after `PANIC:` on the first line that starts with it (after trimming)."""
    for line in text_lines(output):
        t = line.strip()
        if t.startswith("PANIC:"):
            return t[len("PANIC:"):].lstrip()
    return None


def _exit_label(exit_code: int | None) -> str:
    if exit_code is None:
        return "exit_code=unknown"
    if exit_code < 0:
        name = errno.errorcode.get(-exit_code)
        if name:
            return f"exit_code={exit_code} ({name})"
    return f"exit_code={exit_code}"


def console_diagnostics(console: str, exit_code: int | None, init_stage: str | None) -> str:
    """Body of `--- diagnostics ---` ("" when there is nothing to show): the init stage, the
    exit code (negative codes named as errno), and the console's last 20 lines (all of them
    when a `PANIC:` line is present), flagging a dropped window and an incomplete last line.
    """
    trimmed = console.strip()
    if not trimmed and (exit_code or 0) == 0:
        return ""
    parts = [f"stage: {init_stage_label(init_stage)}", _exit_label(exit_code)]
    if trimmed:
        lines = text_lines(trimmed)
        limit = len(lines) if any("PANIC:" in ln for ln in lines) else CONSOLE_TAIL_LINES
        start = max(0, len(lines) - limit)
        tail = lines[start:]
        dropped = start > 0
        incomplete = not console.endswith("\n")
        suffix = {(True, True): ", window-truncated, last line incomplete",
                  (True, False): ", window-truncated",
                  (False, True): ", last line incomplete",
                  (False, False): ""}[(dropped, incomplete)]
        body = "\n".join(tail) + (" [partial]" if incomplete else "")
        parts.append(f"console ({len(tail)} lines{suffix}):\n{body}")
    return "\n".join(parts)
