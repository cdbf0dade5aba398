"""Verdict and failure message of one run (port of ktstr's evaluate_vm_result).

Work in progress: the types are stable (see eval_types.py); evaluate() lands next.
"""

from __future__ import annotations

from .eval_types import (  # noqa: F401  (public re-exports)
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
