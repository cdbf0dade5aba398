"""Verdict and failure message of one run (port of ktstr's `evaluate_vm_result`).

`evaluate(outcome)` is a pure function: it reads a RunOutcome and returns a Verdict whose
message is built exactly as the seed builds it:

    <fingerprint: last scheduler-log line>
    BUG SUMMARY: <first actionable scx_bpf_error-class line>
    ktstr_test 'NAME' [sched=S] [topo=T] REASON
    <sections, in the seed's order for the branch taken>

Branches, in the seed's order:
1. a TestResult arrived and is not a pass: `failed:` / `inconclusive:` + the details, then
   info, stats, diagnostics (scheduler died or verbose), timeline, periodic samples,
   temporal assertions, scheduler log, monitor, sched_ext dump, auto-repro;
2. it passed but the monitor thresholds failed: `passed scenario but monitor failed:` +
   the violations, then timeline, monitor, scheduler log, sched_ext dump; an inconclusive
   monitor makes the run inconclusive (`monitor evaluation inconclusive: ...`);
3. no TestResult and the host watchdog fired: `timed out (...)`, then watchdog, guest
   crashed, diagnostics, timeline, scheduler log, sched_ext dump, monitor, auto-repro;
4. no TestResult otherwise: `guest crashed: ...`, `scheduler exited: ...` or the
   no-result reasons, then diagnostics, timeline, scheduler log, sched_ext dump, monitor,
   auto-repro.
`expect_err` then inverts the verdict as the seed's dispatcher does. Messages are plain
text; `colorize` adds the seed's red for a terminal.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import IO, Any

from .console import console_diagnostics, extract_panic_message, parse_kmsg_exits
from .fingerprint import extract_bug_summary, extract_exit_from_dump_trace, find_sched_ext_dump
from .headline import headline
from .schedlog import extract_sched_log, fingerprint, sched_log_body
from .sections import (
    info_body,
    monitor_body,
    periodic_body,
    scheduler_label,
    stats_body,
    temporal_body,
    watchdog_body,
)
from .types import (  # noqa: F401  (public re-exports)
    SCHEDULER_DEATH_KINDS,
    CgroupStats,
    Detail,
    EventDeltas,
    MonitorReport,
    MonitorSummary,
    MonitorVerdict,
    RunOutcome,
    ScenarioStats,
    SchedExit,
    TestResult,
    Timings,
    Verdict,
    WorkerStats,
)

ERR_TIMED_OUT_NO_RESULT = "timed out (no result via bulk port or COM2)"
ERR_MONITOR_FAILED_AFTER_SCENARIO = "passed scenario but monitor failed"
ERR_NO_TEST_RESULT_FROM_GUEST = (
    "no test result received from guest (no AssertResult arrived via bulk port or COM2; "
    "check kernel log and scheduler exit status)")
ERR_NO_TEST_FUNCTION_OUTPUT = "test function produced no output (no test result found)"
ERR_GUEST_CRASHED_PREFIX = "guest crashed:"
ERR_MONITOR_INCONCLUSIVE_PREFIX = "monitor evaluation inconclusive:"
ERR_EXPECTED_ERROR_PASSED = "expected error but test passed"
ERR_EXPECTED_ERROR_INCONCLUSIVE = (
    "expected error but test produced an Inconclusive verdict — zero-denominator gate "
    "could not evaluate; expect_err is unsatisfied")

_RED = "\x1b[1;31m"
_RESET = "\x1b[0m"


class _Message:
    """Accumulates sections in order: the rendered text for the message and the body for
    Verdict.sections."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.sections: dict[str, str] = {}

    def section(self, name: str, body: str | None) -> None:
        if body:
            self.text.append(f"\n\n--- {name} ---\n{body}")
            self.sections[name] = body

    def raw(self, name: str, rendered: str, body: str) -> None:
        """A section with its own heading (timeline, `guest crashed:`)."""
        if body:
            self.text.append(rendered)
            self.sections[name] = body


class _Context:
    """What every branch shares, computed once from the outcome."""

    def __init__(self, o: RunOutcome) -> None:
        self.o = o
        self.active = bool(o.scheduler)
        self.log = extract_sched_log(o.sched_log)
        self.dump = (o.sched_ext_dump if o.sched_ext_dump is not None
                     else find_sched_ext_dump(o.console, o.sched_log)) or ""
        self.fingerprint = fingerprint(self.log)
        self.bug_summary = extract_bug_summary(o.sched_log, self.dump)
        self.log_body = sched_log_body(self.log) if self.log else ""
        self.header = (f"ktstr_test '{o.test}'{scheduler_label(o.scheduler)} "
                       f"[topo={o.topology}] ")

    def prefix(self) -> str:
        out = f"{self.fingerprint}\n" if self.fingerprint else ""
        if self.bug_summary:
            out += f"BUG SUMMARY: {self.bug_summary}\n"
        return out

    def monitor(self, m: _Message) -> None:
        if self.active and self.o.monitor is not None:
            m.section("monitor", monitor_body(self.o.monitor))

    def timeline(self, m: _Message) -> None:
        t = self.o.timeline.strip("\n")
        m.raw("timeline", f"\n\n{t}", t)

    def repro(self, m: _Message) -> None:
        if self.active and self.o.repro:
            m.section("auto-repro", self.o.repro)

    def diagnostics(self, m: _Message) -> None:
        o = self.o
        m.section("diagnostics", console_diagnostics(o.console, o.exit_code, o.init_stage))

    def verdict(self, kind: str, reason: str, header_tail: str, m: _Message,
                details: str | None = None) -> Verdict:
        sections = {"details": details} if details else {}
        sections.update(m.sections)
        message = self.prefix() + self.header + header_tail + "".join(m.text)
        return Verdict(kind=kind, message=message, reason=reason, sections=sections,  # type: ignore[arg-type]
                       fingerprint=self.fingerprint, bug_summary=self.bug_summary)


def evaluate(outcome: RunOutcome) -> Verdict:
    """Judge one run. Pure; never raises on a well-typed RunOutcome."""
    if outcome.skip_reason is not None:
        return _skip(outcome, outcome.skip_reason)
    ctx = _Context(outcome)
    tr = outcome.test_result
    if tr is not None:
        verdict = _judge_result(ctx, tr)
    elif outcome.timed_out:
        verdict = _judge_timeout(ctx)
    else:
        verdict = _judge_no_result(ctx)
    if outcome.expect_err:
        verdict = _apply_expect_err(ctx, verdict)
    return replace(verdict, headline=headline(outcome, verdict, _sched_exit(ctx), ctx.dump))


def _skip(o: RunOutcome, reason: str) -> Verdict:
    message = (f"ktstr_test '{o.test}'{scheduler_label(o.scheduler)} [topo={o.topology}] "
               f"skipped: {reason}")
    return Verdict(kind="skip", message=message, reason=reason)


def _judge_result(ctx: _Context, tr: TestResult) -> Verdict:
    o = ctx.o
    if tr.outcome == "skip":
        return _skip(o, "; ".join(d.message for d in tr.details if d.outcome == "skip")
                     or "skipped by the guest")
    if tr.outcome != "pass":
        return _result_failed(ctx, tr)
    mon = o.monitor
    if ctx.active and mon is not None and mon.thresholds_enabled:
        if mon.verdict.kind == "fail":
            m = _Message()
            ctx.timeline(m)
            m.section("monitor", monitor_body(mon))
            m.section("scheduler log", ctx.log_body)
            m.section("sched_ext dump", ctx.dump)
            details = "\n  ".join(mon.verdict.details)
            return ctx.verdict("fail", ERR_MONITOR_FAILED_AFTER_SCENARIO,
                               f"{ERR_MONITOR_FAILED_AFTER_SCENARIO}:\n  {details}", m,
                               "\n".join(mon.verdict.details))
        if mon.verdict.kind == "inconclusive":
            reason = f"{ERR_MONITOR_INCONCLUSIVE_PREFIX} {mon.verdict.summary}"
            m = _Message()
            m.section("monitor", monitor_body(mon))
            return ctx.verdict("inconclusive", reason, f"inconclusive:\n  {reason}", m, reason)
    m = _Message()   # a pass: no message, but the sections a viewer may want
    if tr.stats is not None:
        m.section("stats", stats_body(tr.stats))
    m.section("scheduler log", ctx.log_body)
    ctx.monitor(m)
    return Verdict(kind="pass", sections=m.sections, fingerprint=ctx.fingerprint)


def _result_failed(ctx: _Context, tr: TestResult) -> Verdict:
    o = ctx.o
    ordered = ([d for d in tr.details if d.outcome == "fail"]
               + [d for d in tr.details if d.outcome == "inconclusive"]
               + [d for d in tr.details if d.outcome == "skip"])
    messages = [d.message for d in ordered]
    word = "inconclusive" if tr.outcome == "inconclusive" else "failed"
    m = _Message()
    m.section("info", info_body(tr.info_notes))
    if tr.stats is not None:
        m.section("stats", stats_body(tr.stats))
    died = any(d.outcome == "fail" and d.kind in SCHEDULER_DEATH_KINDS for d in tr.details)
    if died or o.verbose:
        ctx.diagnostics(m)
    ctx.timeline(m)
    m.section("periodic samples", periodic_body(o.periodic_fired, o.periodic_target))
    m.section("temporal assertions", temporal_body(
        [d.message for d in tr.details if d.outcome == "fail" and d.kind == "temporal"]))
    m.section("scheduler log", ctx.log_body)
    ctx.monitor(m)
    m.section("sched_ext dump", ctx.dump)
    ctx.repro(m)
    kind = "inconclusive" if word == "inconclusive" else "fail"
    return ctx.verdict(kind, word, f"{word}:\n  " + "\n  ".join(messages), m,
                       "\n".join(messages))


def _sched_exit(ctx: _Context) -> SchedExit | None:
    if ctx.o.sched_exit is not None:
        return ctx.o.sched_exit
    exits = parse_kmsg_exits(ctx.o.console)
    return exits[-1] if exits else None


def _exit_name(ctx: _Context, ev: SchedExit) -> str:
    return ev.scheduler_name or ctx.o.scheduler or "?"


def _no_result_sections(ctx: _Context, m: _Message) -> None:
    o = ctx.o
    if not o.sched_log.strip() or o.verbose or ctx.active:
        ctx.diagnostics(m)
    ctx.timeline(m)
    m.section("scheduler log", ctx.log_body)
    m.section("sched_ext dump", ctx.dump)
    ctx.monitor(m)
    ctx.repro(m)


def _judge_timeout(ctx: _Context) -> Verdict:
    o = ctx.o
    ev = _sched_exit(ctx)
    if ev is None:
        reason = ERR_TIMED_OUT_NO_RESULT
    elif not ev.message:
        reason = f"timed out (scheduler {_exit_name(ctx, ev)} exited)"
    else:
        reason = f"timed out (scheduler exited: {ev.message})"
    m = _Message()
    m.section("watchdog", watchdog_body(o.timings))
    if o.crash_message:
        m.raw("guest crashed", f"\n\n{ERR_GUEST_CRASHED_PREFIX}\n{o.crash_message}", o.crash_message)
    _no_result_sections(ctx, m)
    return ctx.verdict("fail", reason, reason, m)


def _judge_no_result(ctx: _Context) -> Verdict:
    o = ctx.o
    panic = extract_panic_message(o.guest_output) if not o.crash_message else None
    if o.crash_message:
        reason = f"{ERR_GUEST_CRASHED_PREFIX}\n{o.crash_message}"
    elif panic is not None:
        reason = f"{ERR_GUEST_CRASHED_PREFIX} {panic}"
    elif ctx.active:
        ev = _sched_exit(ctx)
        trace_reason = extract_exit_from_dump_trace(o.console) if ev is None else None
        if ev is not None and not ev.message:
            reason = f"scheduler exited ({_exit_name(ctx, ev)})"
        elif ev is not None:
            reason = f"scheduler exited: {ev.message}"
        elif trace_reason is not None:
            reason = f"scheduler exited: {trace_reason}"
        else:
            reason = ERR_NO_TEST_RESULT_FROM_GUEST
    else:
        reason = ERR_NO_TEST_FUNCTION_OUTPUT
    m = _Message()
    _no_result_sections(ctx, m)
    return ctx.verdict("fail", reason, reason, m)


def _apply_expect_err(ctx: _Context, v: Verdict) -> Verdict:
    """The seed's dispatcher: a skip stays a skip; an expected failure passes (message
    kept); a pass or an inconclusive run fails because the expected error did not happen."""
    if v.kind == "skip":
        return v
    if v.kind == "fail":
        return replace(v, kind="pass", expected_failure=True)
    reason = ERR_EXPECTED_ERROR_INCONCLUSIVE if v.kind == "inconclusive" else ERR_EXPECTED_ERROR_PASSED
    message = ctx.prefix() + ctx.header + reason
    if v.message:
        message += "\n\n" + v.message
    return replace(v, kind="fail", reason=reason, message=message)


def needs_repro(outcome: RunOutcome, verdict: Verdict) -> bool:
    """True when the verdict's branch has an `--- auto-repro ---` slot the runner should
    fill (a second evaluate with `outcome.repro` set): a failed or inconclusive run with a
    sched_ext scheduler that got as far as being enabled (a verifier reject or a load
    failure reproduces by running the loader, not by booting a VM with probes), not
    expected to fail, not a monitor-only failure, no repro yet."""
    loaded = outcome.init_stage is None or outcome.init_stage == "payload_started"
    return (bool(outcome.scheduler) and loaded and not outcome.expect_err
            and outcome.repro is None
            and verdict.kind in ("fail", "inconclusive")
            and verdict.reason != ERR_MONITOR_FAILED_AFTER_SCENARIO
            and not verdict.reason.startswith(ERR_MONITOR_INCONCLUSIVE_PREFIX))


def color_enabled(stream: IO[Any]) -> bool:
    """Colour only for a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (OSError, ValueError):
        return False


def colorize(message: str, enabled: bool) -> str:
    """The seed's terminal rendering: the fingerprint line bold red and the `BUG SUMMARY:`
    label bold red. Only the lines above the `ktstr_test '` header are touched; with
    enabled False the message comes back unchanged (files are always plain)."""
    if not enabled or not message:
        return message
    lines = message.split("\n")
    for i, line in enumerate(lines):
        if line.startswith("ktstr_test '"):
            break
        if line.startswith("BUG SUMMARY:"):
            lines[i] = f"{_RED}BUG SUMMARY:{_RESET}{line[len('BUG SUMMARY:'):]}"
        elif line:
            lines[i] = f"{_RED}{line}{_RESET}"
    return "\n".join(lines)


def result_json(verdict: Verdict, **extra: Any) -> dict[str, Any]:
    """result.json's judgement fields; `extra` (stats, timings, artifacts, ...) is merged
    in after them by the caller's choice of keys."""
    out: dict[str, Any] = {
        "verdict": verdict.kind,
        "reason": verdict.reason,
        "message": verdict.message,
        "sections": dict(verdict.sections),
        "fingerprint": verdict.fingerprint,
        "bug_summary": verdict.bug_summary,
        "headline": verdict.headline,
        "expected_failure": verdict.expected_failure,
    }
    out.update(extra)
    return out
