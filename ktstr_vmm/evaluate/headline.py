"""One line that says what happened to a run, built for its kind of failure.

The seed's failure message starts with its fingerprint (the scheduler log's last line) and
BUG SUMMARY (the first line mentioning `scx_bpf_error`), exactly as ktstr prints them
(`sched_log_fingerprint` / `extract_bug_summary` in ktstr's test_support/output.rs, which
have no special case for a verifier reject or a timeout). Those lines stay in the message.
For the browser row, `ktstr runs` and the result banner they mislead - a verifier reject
reads `Failed to load skel`, a timeout the scheduler's last statistics line - so the
verdict also carries a headline made here, one per kind:

    scheduler error    scx_bpf_error: <the kernel's exit message, with its file:line>
    stall              runnable task stall: T waited N s on CPU C (kernel watchdog)
    verifier reject    verifier rejected PROG: <the verifier's error> at FILE:LINE
    load failure       scheduler failed to load: <its last error line> (exit status N)
    timeout            timed out after N s in phase P (host watchdog, --timeout T)
    crash              guest crashed: <first line of the crash>
    monitor threshold  monitor threshold: <first violation>
    temporal           temporal assertion: <first violated assertion, naming tag and values>

`classify` names the kind; `headline` builds the line. Both are pure functions of the
RunOutcome and its Verdict.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..introspect.scx import SCX_EXIT_ERROR, SCX_EXIT_ERROR_STALL, exit_kind_name
from .schedlog import text_lines
from .types import RunOutcome, SchedExit, Verdict

SCHEDULER_ERROR, STALL, VERIFIER_REJECT, LOAD_FAILURE = (
    "scheduler error", "stall", "verifier reject", "load failure")
TIMEOUT, CRASH, MONITOR_THRESHOLD, SCHEDULER_EXIT, OTHER = (
    "timeout", "crash", "monitor threshold", "scheduler exit", "other")
TEMPORAL = "temporal"
# Every kind a failing verdict can be classified as.
FAILURE_KINDS = (SCHEDULER_ERROR, STALL, VERIFIER_REJECT, LOAD_FAILURE, TIMEOUT, CRASH,
                 MONITOR_THRESHOLD, TEMPORAL, SCHEDULER_EXIT, OTHER)

MAX_LEN = 200

# Lifecycle phases (the agent's, in order) -> the words a headline uses for them.
PHASE_WORDS = {"": "boot", "sched_started": "scheduler start",
               "scx_enabled": "scheduler enabled, before the workload",
               "baseline": "baseline", "workload_started": "workload",
               "workload_done": "after the workload", "sched_stopped": "scheduler stop"}

_PROG_FAILED = re.compile(r"libbpf: prog '([^']+)': BPF program load failed")
_LOAD_LOG_BEGIN = "-- BEGIN PROG LOAD LOG --"
_LOAD_LOG_END = "-- END PROG LOAD LOG --"
_INSN = re.compile(r"^\d+: ")
_FROM_TO = re.compile(r"^from \d+ to \d+: ")
_NOT_ERROR = (";", "func '", "func#", "mark_precise", "last_idx", "regs=", "parent ",
              "frame", "Validating ", "Func#", "Live regs")
_SRC_AT = re.compile(r"@ ([\w./-]+:\d+)\s*$")
_AT_LINE = re.compile(r"^\s*\S+ @ ([\w./-]+:\d+)(?::\d+)?\s*$")
_STALL = re.compile(r"(?P<task>\S+\[\d+\]) failed to run for (?P<secs>[\d.]+)s")
_DUMP_CPU = re.compile(r"^CPU\s+(\d+)\s*:")
_TRIGGER_CPU = re.compile(r"triggered exit kind \d+ on CPU (\d+)")


@dataclass(frozen=True)
class VerifierReject:
    """The verifier's own words about a rejected program."""

    program: str      # the BPF program libbpf failed to load ("" when unnamed)
    error: str        # the verifier's error line ("R7 invalid mem access 'scalar'")
    location: str     # "scx_qmap.bpf.c:336", "" when the log has no source lines


def verifier_reject(sched_log: str) -> VerifierReject | None:
    """The first program load log in the scheduler log, or None when there is none.

    The error is the last line of the load log that is neither an instruction
    (`97: (7b) ...`), a source annotation (`; ... @ file:line`) nor register state, before
    the kernel's explanation or the `processed N insns` line; the location is the source
    annotation the rejected instruction belongs to (or the explanation's `At:` line).
    """
    lines = text_lines(sched_log)
    start = next((i for i, ln in enumerate(lines) if _LOAD_LOG_BEGIN in ln), None)
    if start is None:
        return None
    prog = ""
    for ln in lines[:start + 1]:
        m = _PROG_FAILED.search(ln)
        if m:
            prog = m.group(1)
    end = next((i for i in range(start + 1, len(lines)) if _LOAD_LOG_END in lines[i]),
               len(lines))
    body = lines[start + 1:end]
    error, error_at, location = "", -1, ""
    for i, raw in enumerate(body):
        ln = raw.strip()
        if ln.startswith("processed ") and " insns" in ln or ln.startswith("Verification failed"):
            break
        if not ln or ln.startswith(_NOT_ERROR) or _INSN.match(ln) or _FROM_TO.match(ln) \
                or ln.startswith("R") and "=" in ln.split(" ")[0]:
            continue
        error, error_at = ln, i
    if not error:
        return None
    for raw in reversed(body[:error_at]):
        m = _SRC_AT.search(raw) if raw.lstrip().startswith(";") else None
        if m:
            location = m.group(1)
            break
    for i, raw in enumerate(body[error_at + 1:], start=error_at + 1):
        if raw.strip() == "At:" and i + 1 < len(body):
            m = _AT_LINE.match(body[i + 1])
            if m:
                location = m.group(1)
            break
    return VerifierReject(program=prog, error=error, location=location)


def phase_words(phase: str | None) -> str:
    """The headline's name for the guest's last lifecycle phase."""
    return PHASE_WORDS.get(phase or "", (phase or "boot").replace("_", " "))


def stall_cpu(dump: str, task: str) -> str | None:
    """The CPU whose run queue held `task` in the sched_ext dump (the `CPU N :` block it is
    listed under), else the CPU the exit was triggered on, else None."""
    cpu = None
    for ln in text_lines(dump):
        m = _DUMP_CPU.match(ln.strip())
        if m:
            cpu = m.group(1)
        elif cpu is not None and task in ln and ln.lstrip().startswith(("R ", "*R ")):
            return cpu
    m = _TRIGGER_CPU.search(dump)
    return m.group(1) if m else None


def _seconds(s: float) -> str:
    return f"{s:.3f}".rstrip("0").rstrip(".") if s < 10 else f"{s:.0f}"


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_LEN else text[:MAX_LEN - 1] + "…"


def _never_enabled(o: RunOutcome) -> bool:
    return bool(o.scheduler) and o.init_stage != "payload_started"


def classify(o: RunOutcome, v: Verdict, se: SchedExit | None) -> str:
    """The failure kind of a failing or inconclusive verdict (FAILURE_KINDS)."""
    if v.reason.startswith("passed scenario but monitor failed"):
        return MONITOR_THRESHOLD
    if o.crash_message or v.reason.startswith("guest crashed:"):
        return CRASH
    if se is not None and (se.kind == SCX_EXIT_ERROR_STALL or se.kind_name == "stall"):
        return STALL
    if se is not None and (se.kind is not None and se.kind >= SCX_EXIT_ERROR
                           or se.kind_name == "error"):
        return SCHEDULER_ERROR
    if o.timed_out:
        return TIMEOUT
    if _never_enabled(o) and o.sched_log:
        return VERIFIER_REJECT if verifier_reject(o.sched_log) else LOAD_FAILURE
    if _temporal(o):
        return TEMPORAL
    if se is not None:
        return SCHEDULER_EXIT
    return OTHER


def _temporal(o: RunOutcome) -> list[str]:
    """The violated temporal assertions' messages (`ktstr run --assert`)."""
    tr = o.test_result
    return [d.message for d in tr.details if d.kind == "temporal" and d.outcome == "fail"] \
        if tr is not None else []


def headline(o: RunOutcome, v: Verdict, se: SchedExit | None, dump: str = "") -> str:
    """The one-line summary of a verdict ("" for a pass or a skip). `se` is the
    scheduler's exit as evaluate found it; `dump` the sched_ext dump text."""
    if v.kind in ("pass", "skip") and not v.expected_failure:
        return ""
    kind = classify(o, v, se)
    if kind == MONITOR_THRESHOLD:
        first = v.sections.get("details", "").split("\n")[0]
        return _clip(f"monitor threshold: {first or 'failed'}")
    if kind == CRASH:
        text = o.crash_message or v.reason[len("guest crashed:"):]
        return _clip(f"guest crashed: {next((ln for ln in text_lines(text) if ln.strip()), '?')}")
    if kind == STALL and se is not None:
        m = _STALL.search(se.message)
        if m:
            cpu = stall_cpu(dump, m.group("task"))
            where = f" on CPU {cpu}" if cpu is not None else ""
            return _clip(f"runnable task stall: {m.group('task')} waited "
                         f"{_seconds(float(m.group('secs')))} s{where} (kernel watchdog)")
        return _clip(f"runnable task stall: {se.message or '?'} (kernel watchdog)")
    if kind == SCHEDULER_ERROR and se is not None:
        name = exit_kind_name(se.kind) if se.kind is not None else "error"
        label = "scx_bpf_error" if se.kind in (None, 1025) else name
        return _clip(f"{label}: {se.message or '(no message)'}")
    if kind == TIMEOUT:
        t = o.timings
        limit = f", --timeout {_seconds(t.vm_timeout_s)}s" if t.vm_timeout_s else ""
        return _clip(f"timed out after {_seconds(t.elapsed_s)} s in phase "
                     f"{phase_words(o.last_phase)} (host watchdog{limit})")
    if kind == VERIFIER_REJECT:
        r = verifier_reject(o.sched_log)
        assert r is not None
        prog = f" {r.program}" if r.program else ""
        at = f" at {r.location}" if r.location else ""
        return _clip(f"verifier rejected{prog}: {r.error}{at}")
    if kind == LOAD_FAILURE:
        last = v.fingerprint or ""
        status = f" (exit status {o.exit_code})" if o.exit_code not in (None, 0) else ""
        how = se.message.split(" before ")[0] if se and se.message else ""
        if how.startswith("exit status ") or how.startswith("killed by signal "):
            status = f" ({how})"
        return _clip(f"scheduler failed to load: {last or 'no output'}{status}")
    if kind == TEMPORAL:
        return _clip(f"temporal assertion: {_temporal(o)[0]}")
    if kind == SCHEDULER_EXIT and se is not None:
        name = f" ({exit_kind_name(se.kind)})" if se.kind is not None else ""
        return _clip(f"scheduler exited{name}: {se.message or se.scheduler_name or '?'}")
    first = v.sections.get("details", "").split("\n")[0]
    return _clip(first or v.reason or v.kind)
