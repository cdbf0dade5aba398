"""The verifier sweep's numbers: per cell (topology x kernel x scheduler), each BPF
program's `verified_insns` as the guest agent read it (bpf-progs.json), or - when the
scheduler did not load - the first verifier error from its log (sched.log, libbpf's
"-- BEGIN PROG LOAD LOG --" block).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..rundir import bpf_progs
from ..rundir.bpf_progs import ProgInfo
from ..rundir.layout import SCHED_LOG

_LOAD_FAILED = re.compile(r"libbpf: prog '([^']+)': (?:BPF program load failed|failed to load)"
                          r":?\s*(.*)")
_BEGIN = re.compile(r"libbpf: prog '([^']+)': -- BEGIN PROG LOAD LOG --")
_END = "-- END PROG LOAD LOG --"
# Lines of a verifier log that are not its error: the instruction trace and register
# states, source comments, precision tracking, the closing counts, the headers of the
# explained report newer kernels append (its indented body is skipped as indented).
_NOISE = re.compile(r"^(processed \d+ insns|verification time|stack depth|mark_precise|"
                    r"last_idx|regs=|parent |frame\d|\d+: |; |R\d+(_w)?=|from \d+ to \d+|"
                    r"func '|Validating |Func#|Reason:|At:|Causal path:|Suggestion:|"
                    r"Verification failed:)")
_EXPLAINED = re.compile(r"^Verification failed: (.+)")
_MAX_LOG_LINES = 200_000
_COMPLAINT = re.compile(r"fail|error|invalid|unknown|not found|unsupported", re.IGNORECASE)


@dataclass(frozen=True)
class VerifierCell:
    """What one cell's run says about loading its scheduler."""

    loaded: bool  # bpf-progs.json was written (sched_ext got enabled)
    progs: tuple[ProgInfo, ...]
    failed_prog: str | None = None
    error: str | None = None  # the first verifier error, or why we cannot tell

    @property
    def total_insns(self) -> int:
        return sum(p.verified_insns for p in self.progs)


def read_cell(run_dir: Path) -> VerifierCell:
    info = bpf_progs.read(run_dir)
    if info is not None:
        return VerifierCell(True, info.progs)
    prog, err = first_verifier_error(run_dir / SCHED_LOG)
    return VerifierCell(False, (), prog, err or "the scheduler did not load (no verifier log "
                        "in sched.log; see the run's scheduler log)")


def first_verifier_error(log_path: Path) -> tuple[str | None, str | None]:
    """(program, error line) of the first program libbpf failed to load, from its
    verifier log; (None, None) when the log holds no such block."""
    try:
        with open(log_path, encoding="utf-8", errors="replace") as f:
            lines = [ln.rstrip("\n") for _, ln in zip(range(_MAX_LOG_LINES), f, strict=False)]
    except OSError:
        return None, None
    prog: str | None = None
    block: list[str] | None = None
    for line in lines:
        text = line.split("libbpf: ", 1)[-1] if "libbpf: " in line else line
        if block is None:
            m = _BEGIN.search(line)
            if m:
                prog, block = m.group(1), []
                continue
            m = _LOAD_FAILED.search(line)
            if m and prog is None:
                prog = m.group(1)
            continue
        if _END in text:
            err = next((b.strip() for b in block
                        if b.strip() and not b[:1].isspace() and not _NOISE.match(b)), None)
            why = next((m.group(1).strip() for b in block if (m := _EXPLAINED.match(b))), None)
            if err or why:
                text = err or why
                if err and why:
                    text = f"{err} ({why})"
                return prog, text[:500]
            block = None
            continue
        block.append(text)
    if prog is not None:
        failed = next((m.group(2) for ln in lines if (m := _LOAD_FAILED.search(ln))), "")
        return prog, (failed.strip() or "load failed")[:500]
    # No program got as far as the verifier (a Kconfig extern, a missing BTF type...):
    # libbpf's first complaint is the cause.
    first = next((ln.strip() for ln in lines
                  if "libbpf:" in ln and _COMPLAINT.search(ln)), None)
    return None, first[:500] if first else None


def render_table(rows: list[tuple[str, str, str, VerifierCell]]) -> str:
    """rows: (topology, kernel, scheduler, cell) -> the text table, one block per
    topology x kernel: each program's verified_insns, or FAILED and the error."""
    out: list[str] = []
    groups: dict[tuple[str, str], list[tuple[str, VerifierCell]]] = {}
    for topo, kern, sched, cell in rows:
        groups.setdefault((topo, kern), []).append((sched, cell))
    for (topo, kern), cells in groups.items():
        out.append(f"== {topo}  kernel {kern}")
        for sched, cell in cells:
            if not cell.loaded:
                where = f" in {cell.failed_prog}" if cell.failed_prog else ""
                out.append(f"  {sched:<20} FAILED to load{where}: {cell.error}")
                continue
            out.append(f"  {sched:<20} loaded, {len(cell.progs)} programs, "
                       f"{cell.total_insns} verified insns")
            for p in cell.progs:
                out.append(f"    {p.name:<18} {p.type:<13} {p.verified_insns:>9} insns "
                           f"({p.xlated_len} B xlated)")
    return "\n".join(out)
