"""The scheduler log as the failure message shows it: extracted, cycles collapsed, tailed.

Port of ktstr's `parse_sched_output`, `collapse_cycles` (with `detect_cycle` and the
verifier-line normalisation) and the `--- scheduler log ---` tail rule of
`evaluate_vm_result`: the last 200 lines with a `[N lines truncated]` line in front, except
for BPF verifier output, which is kept whole because the rejected instruction is usually in
the middle.
"""

from __future__ import annotations

SCHED_OUTPUT_START = "===SCHED_OUTPUT_START==="
SCHED_OUTPUT_END = "===SCHED_OUTPUT_END==="

TAIL_LINES = 200
# Cycle detection looks at no more than this many trailing lines: a scheduler that logged
# for an hour must not make evaluation quadratic. Dropped lines count as truncated.
COLLAPSE_WINDOW = 50_000

_MIN_PERIOD = 5
_MIN_REPS = 3
_MAX_PASSES = 5

# Rust's str::trim() set (Unicode White_Space). Python's str.strip() also strips
# \x1c-\x1f, which Rust keeps.
_WS = ("\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
       "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")


def text_lines(text: str) -> list[str]:
    """Lines as Rust's str::lines() gives them: split on \\n, a trailing \\r dropped, no
    empty last line. (str.splitlines would also split on \\x0b, \\x1c, U+2028, ...)"""
    parts = text.split("\n")
    if parts and parts[-1] == "":
        parts.pop()
    return [p[:-1] if p.endswith("\r") else p for p in parts]


def extract_sched_log(text: str) -> str | None:
    """The scheduler log proper, or None when there is nothing to show.

    sched.log holds the scheduler's output directly; text in the seed's shape (between
    ===SCHED_OUTPUT_START=== and the last ===SCHED_OUTPUT_END===) is cut out as the seed's
    parse_sched_output does. Surrounding whitespace is trimmed; empty means None.
    """
    start = text.find(SCHED_OUTPUT_START)
    if start >= 0:
        end = text.rfind(SCHED_OUTPUT_END)
        after = start + len(SCHED_OUTPUT_START)
        if end < 0 or after >= end:
            return None
        content = text[after:end].strip(_WS)
    else:
        content = text.strip(_WS)
    return content or None


def normalize_verifier_line(line: str) -> str:
    """Strip the per-iteration register annotations of a verifier log line so lines of
    different loop iterations compare equal (the seed's normalize_verifier_line)."""
    t = line.strip(_WS)
    if not t or not t[0].isascii() or not t[0].isdigit():
        return t
    colon = t.find(": ")
    if colon >= 0:
        after = t[colon + 2:]
        if after.startswith("frame") or (
                len(after) > 1 and after[0] == "R" and after[1].isascii() and after[1].isdigit()):
            return t[:colon + 1]
    pos = t.find("; frame")
    if pos >= 0:
        return t[:pos].rstrip(_WS)
    pos = t.find("; R")
    if pos >= 0 and pos + 3 < len(t) and t[pos + 3].isascii() and t[pos + 3].isdigit():
        return t[:pos].rstrip(_WS)
    goto = t.find("goto pc")
    if goto >= 0:
        rest = t[goto + 7:]
        end = 0
        while end < len(rest) and (rest[end] in "+-" or (rest[end].isascii() and rest[end].isdigit())):
            end += 1
        insn_end = goto + 7 + end
        if insn_end < len(t):
            return t[:insn_end].rstrip(_WS)
    return t


def _strip_address(normalized: str) -> str:
    """A normalized verifier line without its leading `NNN: ` instruction address (the
    seed's normalize_for_cycle_detection after normalize_verifier_line)."""
    colon = normalized.find(": ")
    if colon > 0 and normalized[:colon].isascii() and normalized[:colon].isdigit():
        return normalized[colon + 2:]
    return normalized


def _most_frequent(norms: list[str]) -> str | None:
    """The line (at least 10 bytes) seen most often, at least _MIN_REPS times; ties go to the
    first in sorted order, as the seed's scan over its sorted lines does."""
    counts: dict[str, int] = {}
    for ln in norms:
        if len(ln.encode()) >= 10:
            counts[ln] = counts.get(ln, 0) + 1
    best: tuple[str, int] | None = None
    for ln in sorted(counts):
        c = counts[ln]
        if c >= _MIN_REPS and (best is None or c > best[1]):
            best = (ln, c)
    return best[0] if best else None


def detect_cycle(lines: list[str]) -> tuple[int, int, int] | None:
    """(start, period, count) of the most prominent repeating block, or None.

    As the seed's detect_cycle: the anchor is the most frequent line with its instruction
    address kept (register annotations stripped), so an instruction the loop body holds at
    several addresses does not outnumber a line seen once per iteration; only when no line
    repeats that way (an unrolled loop, every address unique) is the anchor chosen with
    addresses stripped. Blocks always compare with addresses stripped.
    """
    n = len(lines)
    if n < _MIN_PERIOD * _MIN_REPS:
        return None
    anchor_norms = [normalize_verifier_line(ln) for ln in lines]
    block_norms = [_strip_address(ln) for ln in anchor_norms]
    anchor, pos_norms = _most_frequent(anchor_norms), anchor_norms
    if anchor is None:
        anchor, pos_norms = _most_frequent(block_norms), block_norms
        if anchor is None:
            return None
    positions = [i for i, ln in enumerate(pos_norms) if ln == anchor]

    for stride in (1, 2, 3):
        if len(positions) <= stride:
            continue
        gaps = sorted(g for g in (positions[i + stride] - positions[i]
                                  for i in range(len(positions) - stride)) if g >= _MIN_PERIOD)
        period, best_count = 0, 0
        i = 0
        while i < len(gaps):
            j = i + 1
            while j < len(gaps) and gaps[j] == gaps[i]:
                j += 1
            if j - i > best_count:
                best_count, period = j - i, gaps[i]
            i = j
        if period == 0 or best_count < _MIN_REPS - 1:
            continue
        for pos in positions:
            if pos + 2 * period > n:
                break
            count = _repeats(block_norms, pos, period)
            if count < 2:
                continue
            best_start, best_reps = pos, count
            for offset in range(1, period):
                cand = pos - offset
                if cand < 0:
                    break
                if cand + 2 * period > n:
                    continue
                c = _repeats(block_norms, cand, period)
                if c < 2:
                    continue
                if c > best_reps:
                    best_start, best_reps = cand, c
            if best_reps >= _MIN_REPS:
                return best_start, period, best_reps
    return None


def collapse_cycles(log: str) -> str:
    """Replace each repeating block (up to 5 nested passes) by its first and last iteration:

        --- Nx of the following M lines ---
        <first iteration>
        --- K identical iterations omitted ---
        <last iteration>
        --- end repeat ---
    """
    text = log
    for _ in range(_MAX_PASSES):
        lines = text_lines(text)
        found = detect_cycle(lines)
        if found is None:
            break
        start, period, count = found
        out = lines[:start]
        out.append(f"--- {count}x of the following {period} lines ---")
        out.extend(lines[start:start + period])
        out.append(f"--- {count - 2} identical iterations omitted ---")
        last = start + (count - 1) * period
        out.extend(lines[last:last + period])
        out.append("--- end repeat ---")
        out.extend(lines[start + count * period:])
        text = "\n".join(out) + "\n"
    return text


def is_verifier_output(text: str) -> bool:
    """The seed's test: verifier output mentions both 'processed' and 'insns'."""
    return "processed" in text and "insns" in text


def sched_log_body(log: str) -> str:
    """Body of the `--- scheduler log ---` section for an extracted log (see module doc)."""
    lines = text_lines(log)
    dropped = 0
    if len(lines) > COLLAPSE_WINDOW:
        dropped = len(lines) - COLLAPSE_WINDOW
        log = "\n".join(lines[dropped:])
    collapsed = collapse_cycles(log)
    if is_verifier_output(collapsed):
        return collapsed if not dropped else f"[{dropped} lines truncated]\n{collapsed}"
    clines = text_lines(collapsed)
    if len(clines) > TAIL_LINES:
        skipped = len(clines) - TAIL_LINES + dropped
        return f"[{skipped} lines truncated]\n" + "\n".join(clines[-TAIL_LINES:])
    if dropped:
        return f"[{dropped} lines truncated]\n{collapsed}"
    return collapsed


def fingerprint(log: str | None) -> str | None:
    """The last non-empty line of the scheduler log: identical failures cluster by it."""
    if not log:
        return None
    for line in reversed(text_lines(log)):
        if line.strip():
            return line
    return None


def _repeats(norm: list[str], start: int, period: int) -> int:
    """How many times the block of `period` lines at `start` repeats back to back."""
    block, n, count = norm[start:start + period], len(norm), 1
    while start + (count + 1) * period <= n and norm[start + count * period:start + (count + 1) * period] == block:
        count += 1
    return count
