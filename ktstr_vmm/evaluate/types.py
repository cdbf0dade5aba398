"""The values evaluation works on: what a run produced (RunOutcome) and the judgement (Verdict).

RunOutcome is everything the runner collects from one run, already parsed from the guest's
wire frames, the console and the monitor into plain values. `evaluate.evaluate(outcome)`
turns it into a Verdict; nothing here does I/O.

Field names follow the seed (`VmResult`, `AssertResult`, `MonitorReport`) where there is
one, so a reader of ktstr's eval.rs finds the same words here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

VerdictKind = Literal["pass", "fail", "inconclusive", "skip"]
VERDICT_KINDS: tuple[str, ...] = ("pass", "fail", "inconclusive", "skip")

# Kinds of a TestResult detail (the seed's DetailKind, snake_case). The three
# scheduler-death kinds switch the console diagnostics section on in a failed result.
DETAIL_KINDS: tuple[str, ...] = (
    "other", "stuck", "unfair", "monitor", "temporal",
    "scheduler_crashed", "scheduler_exited_cleanly", "scheduler_died_unknown_reason",
)
SCHEDULER_DEATH_KINDS = frozenset(
    {"scheduler_crashed", "scheduler_exited_cleanly", "scheduler_died_unknown_reason"})


@dataclass(frozen=True)
class Detail:
    """One finding of the guest's checks: its outcome (fail, inconclusive, skip) and text."""

    message: str
    kind: str = "other"
    outcome: Literal["fail", "inconclusive", "skip"] = "fail"


@dataclass(frozen=True)
class CgroupStats:
    """Per-cgroup summary of one scenario (the seed's CgroupStats)."""

    num_workers: int = 0
    num_cpus: int = 0
    spread: float = 0.0          # percent
    max_gap_ms: int = 0
    total_migrations: int = 0
    total_iterations: int = 0


@dataclass(frozen=True)
class WorkerStats:
    """One worker's measurements from the guest agent."""

    worker: int
    cgroup: int = 0
    kind: str = ""
    cpu_time_ns: int = 0
    wall_time_ns: int = 0
    iterations: int = 0
    migrations: int = 0
    max_gap_ms: int = 0
    cpus: tuple[int, ...] = ()


@dataclass(frozen=True)
class ScenarioStats:
    """Run-wide totals plus per-cgroup and per-worker records (the seed's ScenarioStats)."""

    total_workers: int = 0
    total_cpus: int = 0
    total_migrations: int = 0
    worst_spread: float = 0.0    # percent
    worst_gap_ms: int = 0
    cgroups: tuple[CgroupStats, ...] = ()
    workers: tuple[WorkerStats, ...] = ()
    extra_lines: tuple[str, ...] = ()  # ours: workload measures, after the seed's lines


@dataclass(frozen=True)
class TestResult:
    """The guest's own verdict (TestResult frame), decoded.

    outcome is the merged outcome of `details` as the guest computed it; `info_notes` are
    context lines that are not failures (rendered in `--- info ---`).
    """

    __test__ = False  # not a pytest test class

    outcome: Literal["pass", "fail", "inconclusive", "skip"] = "pass"
    details: tuple[Detail, ...] = ()
    info_notes: tuple[str, ...] = ()
    stats: ScenarioStats | None = None


@dataclass(frozen=True)
class SchedExit:
    """How the scheduler went away, when it did.

    From a SchedExit wire frame (the guest reads the exit info) or, when the runner has none,
    parsed from the kernel console's `sched_ext: BPF scheduler "NAME" disabled (...)` line.
    `message` is the exit message (may be empty), `kind` the SCX_EXIT_* value when known
    (1025 = SCX_EXIT_ERROR_BPF, ...), `kind_name` a word for it (error, stall, normal, other).
    """

    scheduler_name: str = ""
    message: str = ""
    kind: int | None = None
    kind_name: str = ""


@dataclass(frozen=True)
class EventDeltas:
    """scx event counter totals and rates over the evaluation window (seed ScxEventDeltas)."""

    total_fallback: int = 0
    fallback_rate: float = 0.0
    total_dispatch_keep_last: int = 0
    keep_last_rate: float = 0.0
    total_dispatch_offline: int = 0
    total_reenq_immed: int = 0
    total_reenq_local_repeat: int = 0
    total_refill_slice_dfl: int = 0
    total_bypass_activate: int = 0
    total_bypass_dispatch: int = 0
    total_bypass_duration: int = 0
    total_insert_not_owned: int = 0
    total_sub_bypass_dispatch: int = 0


@dataclass(frozen=True)
class MonitorSummary:
    """The monitor's summary after boot-settle trimming (seed MonitorSummary)."""

    total_samples: int = 0
    max_imbalance_ratio: float = 0.0
    max_local_dsq_depth: int = 0
    stuck_count: int = 0
    avg_imbalance_ratio: float = 0.0
    avg_nr_running: float = 0.0
    avg_local_dsq_depth: float = 0.0
    event_deltas: EventDeltas | None = None


@dataclass(frozen=True)
class MonitorVerdict:
    """The monitor thresholds' judgement: kind pass|fail|inconclusive, a summary line and the
    violated thresholds (one line each)."""

    kind: Literal["pass", "fail", "inconclusive"] = "pass"
    summary: str = "monitor OK"
    details: tuple[str, ...] = ()


@dataclass(frozen=True)
class MonitorReport:
    """What the host-side monitor saw. `thresholds_enabled` mirrors the seed's
    `has_monitor_thresholds()`: only then does a failing verdict fail the run."""

    summary: MonitorSummary = field(default_factory=MonitorSummary)
    verdict: MonitorVerdict = field(default_factory=MonitorVerdict)
    thresholds_enabled: bool = True


@dataclass(frozen=True)
class Timings:
    """Wall-clock facts for the `--- watchdog ---` section, in seconds."""

    elapsed_s: float = 0.0           # VM run wall-clock
    vm_timeout_s: float = 0.0        # host watchdog deadline
    watchdog_timeout_s: float = 0.0  # scx_sched.watchdog_timeout override
    duration_s: float = 0.0          # workload duration
    timeout_set: bool = False        # vm_timeout came from --timeout, not the duration


@dataclass(frozen=True)
class RunOutcome:
    """Everything one run produced, as the runner collected it.

    test            test / run name (validated by the runner)
    scheduler       scheduler display name; None = no sched_ext scheduler (EEVDF): the
                    header then has no `[sched=...]` and the no-result reason is the
                    test-function one
    topology        topology label for `[topo=...]` (e.g. "1n2l2c1t")
    test_result     the guest's TestResult, None when none arrived over COM2
    sched_exit      how the scheduler exited (None = it did not, or unknown; evaluate then
                    parses `console` for the kernel's disable line)
    sched_log       scheduler stdout/stderr (sched.log). Text between
                    ===SCHED_OUTPUT_START=== / ===SCHED_OUTPUT_END=== is used when present
    console         kernel console (COM1) text, incl. trace_pipe lines
    guest_output    guest agent's own stdout (Stdout frames), scanned for `PANIC:` lines
    crash_message   structured crash text (Crash frame / console panic), multi-line
    timed_out       the host watchdog fired before the guest finished
    exit_code       guest exit code (Exit frame); None when unknown (shown as -1)
    init_stage      the deepest lifecycle stage reached: "not_started", "init_started",
                    "payload_started" (Lifecycle frames); None = not_started
    last_phase      the guest's last lifecycle phase ("workload_started", ...); None = none
    monitor         the monitor's report; None until the monitor ran / when disabled
    timeline        pre-rendered timeline section text ("" = none)
    timings         wall-clock facts for the watchdog section
    sched_ext_dump  the sched_ext dump text: the scheduler's DEBUG DUMP block or the
                    trace_pipe `sched_ext_dump:` lines. None = evaluate extracts it from
                    `console` then `sched_log`
    periodic_target periodic captures the run asked for (`--capture-every` / `--capture-at`);
                    0 = none asked, no `--- periodic samples ---` section
    periodic_fired  periodic captures actually taken
    repro           auto-repro section text (the runner fills it on a second evaluate after
                    the repro run; see evaluate.needs_repro); None = no section
    expect_err      the test is expected to fail: the verdict is inverted
    skip_reason     the run was skipped before it produced anything (verdict skip)
    verbose         force the console diagnostics section on, as the seed's verbose()
    """

    test: str
    scheduler: str | None = None
    topology: str = ""
    test_result: TestResult | None = None
    sched_exit: SchedExit | None = None
    sched_log: str = ""
    console: str = ""
    guest_output: str = ""
    crash_message: str | None = None
    timed_out: bool = False
    exit_code: int | None = None
    init_stage: str | None = None
    last_phase: str | None = None
    monitor: MonitorReport | None = None
    timeline: str = ""
    timings: Timings = field(default_factory=Timings)
    sched_ext_dump: str | None = None
    periodic_target: int = 0
    periodic_fired: int = 0
    repro: str | None = None
    expect_err: bool = False
    skip_reason: str | None = None
    verbose: bool = False


@dataclass(frozen=True)
class Verdict:
    """The judgement of one run.

    kind        pass | fail | inconclusive | skip (after expect_err inversion)
    message     the full plain-text failure message ("" on a plain pass)
    reason      the header's reason ("timed out (no result via bulk port or COM2)",
                "failed", "scheduler exited: ...", ...) or the skip reason
    sections    ordered section name -> body text, in message order; names:
                details, watchdog, guest crashed, diagnostics, timeline, info, stats,
                periodic samples, temporal assertions, scheduler log, monitor,
                sched_ext dump, auto-repro
    fingerprint last non-empty scheduler-log line, or None
    bug_summary first actionable scx_bpf_error-class line, or None
    headline    one line built for the failure's kind (headline.py); "" for a pass
    expected_failure  expect_err was set and the run failed as expected
    """

    kind: VerdictKind
    message: str = ""
    reason: str = ""
    sections: dict[str, str] = field(default_factory=dict)
    fingerprint: str | None = None
    bug_summary: str | None = None
    expected_failure: bool = False
    headline: str = ""

    @property
    def passed(self) -> bool:
        return self.kind == "pass"
