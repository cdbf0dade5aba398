"""What a finished run produced -> evaluate.RunOutcome (the seed's VmResult in our terms).

Guest values (guestmsg) are mapped to the evaluation's types here, in one place, so
evaluate.py stays a pure function over plain values and guestmsg stays about the wire.
"""

from __future__ import annotations

import re

from ..evaluate import types as ev
from ..evaluate.workstats import scenario_stats
from ..introspect.scx import EXIT_KIND_VALUES
from .recorder import GuestState

_DISABLED = re.compile(r'sched_ext: BPF scheduler "([^"]*)" disabled \(([^)]*)\)')
# The exit kind by the words the kernel prints for it (kernel/sched/ext.c scx_exit_reason();
# "unregistered" and "sysrq-S" as older kernels and ktstr write them).
_REASONS = {"done": "SCX_EXIT_NONE", "unregistered": "SCX_EXIT_UNREG",
            "unregistered from user space": "SCX_EXIT_UNREG",
            "unregistered from BPF": "SCX_EXIT_UNREG_BPF",
            "unregistered from the main kernel": "SCX_EXIT_UNREG_KERN",
            "disabled by sysrq-S": "SCX_EXIT_SYSRQ", "sysrq-S": "SCX_EXIT_SYSRQ",
            "runtime error": "SCX_EXIT_ERROR", "scx_bpf_error": "SCX_EXIT_ERROR_BPF",
            "runnable task stall": "SCX_EXIT_ERROR_STALL"}
EXIT_KINDS = {words: EXIT_KIND_VALUES[name] for words, name in _REASONS.items()}


def sched_exit_from(state: GuestState, console: str) -> ev.SchedExit | None:
    """The scheduler's exit: the kernel's own words (`disabled (REASON)` + the error text
    on the next line) from the agent's kmsg stream or the console."""
    se = state.sched_exit
    lines = state.dmesg_sched_ext + ([se.kmsg] if se and se.kmsg else [])
    lines += [ln for ln in console.splitlines() if "sched_ext:" in ln]
    for line in lines:
        m = _DISABLED.search(line)
        if m:
            name, why = m.groups()
            message = _error_text_after(console, m.group(0)) or why
            return ev.SchedExit(scheduler_name=name, message=message, kind=EXIT_KINDS.get(why),
                                kind_name=_kind_name(why))
    if se is not None:
        how = (f"exit status {se.code}" if se.code is not None
               else f"killed by signal {se.signal}" if se.signal is not None
               else f"sched_ext state {se.state}")
        if not state.phase_reached("scx_enabled"):
            how += " before sched_ext was enabled (see the scheduler log)"
        return ev.SchedExit(message=how, kind_name="other")
    return None


def _error_text_after(console: str, disabled_line: str) -> str | None:
    """The kernel prints the exit message on the line after `disabled (...)`:
    `sched_ext: NAME: <msg>` (or an indented `<msg>` on older kernels)."""
    lines = console.splitlines()
    for i, line in enumerate(lines):
        if disabled_line in line and i + 1 < len(lines):
            nxt = re.sub(r"^\[\s*\d+\.\d+\]\s*", "", lines[i + 1]).strip()
            nxt = re.sub(r"^sched_ext: [^: ]+: ", "", nxt)
            if nxt and not nxt.startswith(("sched_ext:", "CPU:")) and "+0x" not in nxt:
                return nxt
    return None


def _kind_name(why: str) -> str:
    if why in ("scx_bpf_error", "runtime error"):
        return "error"
    if "stall" in why:
        return "stall"
    if why.startswith("unregistered") or why == "done":
        return "normal"
    return "other"


def build_outcome(*, test: str, scheduler: str | None, topology: str, state: GuestState,
                  sched_log: str, console: str, timed_out: bool, timings: ev.Timings,
                  expect_err: bool, monitor: ev.MonitorReport | None = None,
                  repro: str | None = None, extra_notes: tuple[str, ...] = (),
                  timeline: str = "") -> ev.RunOutcome:
    tr = None
    enabled = state.phase_reached("scx_enabled") or state.phase_reached("baseline")
    if state.test_result is not None and (enabled or state.sched_exit is None):
        g = state.test_result
        details = []
        if state.sched_exit is not None:
            se = sched_exit_from(state, console)
            kind = ("scheduler_exited_cleanly" if se and se.kind_name == "normal"
                    else "scheduler_crashed" if se and se.kind_name in ("error", "stall")
                    else "scheduler_died_unknown_reason")
            into = _seconds_into_workload(state)
            when = f" ({into:.1f}s into test)" if into is not None else ""
            words = se.message if se else state.sched_exit.reason
            if se is not None and se.kind_name == "stall":
                # The scheduler process is alive: the kernel's watchdog disabled it.
                text = (f"the kernel's watchdog disabled the scheduler during the workload"
                        f"{when}: runnable task stall: {words}")
            else:
                text = f"scheduler process died unexpectedly during the workload{when}: {words}"
            details.append(ev.Detail(message=text, kind=kind))
        never = next((lc for lc in state.lifecycle if lc.phase == "sched_enable_timeout"), None)
        if never is not None and not enabled:
            # The agent ran no workload: a scheduler that never enabled sched_ext is a
            # failure, never a pass of an empty scenario.
            details.append(ev.Detail(
                message=f"the scheduler never enabled sched_ext ({never.detail or 'timed out'}); "
                        "no workload ran", kind="other"))
        tr = ev.TestResult(outcome="fail" if details else "pass", details=tuple(details),
                           info_notes=tuple(g.notes) + extra_notes, stats=scenario_stats(g, state.measure_lines()))
    crash = "\n".join(state.crash) or None
    return ev.RunOutcome(
        test=test, scheduler=scheduler, topology=topology, test_result=tr,
        sched_exit=sched_exit_from(state, console), sched_log=sched_log, console=console,
        guest_output="\n".join(state.agent_output), crash_message=crash, timed_out=timed_out,
        exit_code=state.exit.code if state.exit else None, init_stage=state.init_stage,
        last_phase=state.lifecycle[-1].phase if state.lifecycle else None,
        monitor=monitor, timeline=timeline, timings=timings, repro=repro, expect_err=expect_err)


def _seconds_into_workload(state: GuestState) -> float | None:
    start = next((lc.t_ms for lc in state.lifecycle if lc.phase == "workload_started"), None)
    if start is None or state.sched_exit is None:
        return None
    return max(0, state.sched_exit.t_ms - start) / 1000.0
