"""Bodies of the failure message's fixed-format sections (ports of ktstr's reporting.rs and
the section builders inside evaluate_vm_result). Each returns the body without the
`--- name ---` header; evaluate.py assembles headers and order."""

from __future__ import annotations

from .types import MonitorReport, ScenarioStats, Timings


def scheduler_label(scheduler: str | None) -> str:
    """` [sched=NAME]`, or "" without a sched_ext scheduler (the seed's EEVDF case)."""
    return f" [sched={scheduler}]" if scheduler else ""


def fmt_duration(seconds: float) -> str:
    """A duration as Rust's `{:?}` prints std::time::Duration: `1.5s`, `30s`, `250ms`,
    `12.5µs`, `0ns` (all significant digits, trailing zeros dropped)."""
    try:
        ns = max(0, round(float(seconds) * 1e9))
    except (OverflowError, ValueError):
        ns = 0
    for unit, scale in (("s", 10**9), ("ms", 10**6), ("µs", 10**3)):
        if ns >= scale:
            whole, frac = divmod(ns, scale)
            digits = len(str(scale)) - 1
            text = f"{whole}.{frac:0{digits}d}".rstrip("0").rstrip(".") if frac else str(whole)
            return text + unit
    return f"{ns}ns"


def watchdog_body(t: Timings) -> str:
    """The `--- watchdog ---` body: the four numbers the host watchdog consulted.

    Same lines as the seed (elapsed=, vm_timeout=, watchdog_timeout=, duration=, hint:);
    the notes say how this tool derives the deadline (`--timeout`, or the duration plus a
    boot allowance) and the hint names the knob that helps for this run: with a duration
    longer than an explicit `--timeout`, raising the duration would only make it worse.
    """
    if t.timeout_set:
        how = "host watchdog deadline, set with --timeout"
    else:
        how = "host watchdog deadline = duration + boot allowance (60s + 1s per vCPU)"
    if t.timeout_set and t.duration_s >= t.vm_timeout_s:
        hint = (f"the workload duration ({fmt_duration(t.duration_s)}) is not shorter than "
                f"the --timeout ({fmt_duration(t.vm_timeout_s)}), so the run could not finish: "
                "raise --timeout above the duration plus boot time, or shorten --duration")
    elif t.timeout_set:
        hint = ("the workload fits in the --timeout, so the guest hung or ran slow (boot under "
                "TCG, a stalled scheduler): read the timeline and diagnostics; raise --timeout "
                "only if the guest was still making progress")
    else:
        hint = ("the deadline already covers the duration plus boot, so the guest hung or ran "
                "slow: read the timeline and diagnostics; `ktstr run --timeout` allows more "
                "wall time (raising --duration lengthens the workload too)")
    return (
        f"elapsed={fmt_duration(t.elapsed_s)} (VM run wall-clock)\n"
        f"vm_timeout={fmt_duration(t.vm_timeout_s)} ({how})\n"
        f"watchdog_timeout={fmt_duration(t.watchdog_timeout_s)} "
        "(scx_sched.watchdog_timeout override)\n"
        f"duration={fmt_duration(t.duration_s)} (workload duration)\n"
        f"hint: {hint}"
    )


def stats_body(s: ScenarioStats) -> str:
    """`N workers, N cpus, N migrations, worst_spread=X.X%, worst_gap=Nms` and one
    `  cgN: ...` line per cgroup. "" when there are no cgroups (the seed's gate)."""
    if not s.cgroups:
        return ""
    lines = [f"{s.total_workers} workers, {s.total_cpus} cpus, {s.total_migrations} migrations, "
             f"worst_spread={s.worst_spread:.1f}%, worst_gap={s.worst_gap_ms}ms"]
    for i, cg in enumerate(s.cgroups):
        lines.append(f"  cg{i}: workers={cg.num_workers} cpus={cg.num_cpus} "
                     f"spread={cg.spread:.1f}% gap={cg.max_gap_ms}ms "
                     f"migrations={cg.total_migrations} iter={cg.total_iterations}")
    return "\n".join([*lines, *s.extra_lines])


def periodic_body(fired: int, target: int) -> str:
    """The `--- periodic samples ---` body (the seed's format_periodic_samples_section):
    coverage, and how many captures are missing. "" when none were asked for. The hint on
    the missing line names this tool's record (captures.jsonl) instead of ktstr's
    freeze-coordinator traces."""
    if target <= 0:
        return ""
    lines = [f"fired {fired}/{target} periodic snapshots ({100.0 * fired / target:.0f}% coverage)"]
    if fired < target:
        lines.append(f"missing {target - fired} sample(s) — see captures.jsonl in the run "
                     "directory for skip / timeout reasons")
    return "\n".join(lines)


def temporal_body(messages: list[str]) -> str:
    """The `--- temporal assertions ---` body (the seed's
    format_temporal_assertions_section): a count line and one indented line per violated
    temporal assertion. "" when none failed."""
    if not messages:
        return ""
    return "\n".join([f"{len(messages)} temporal assertion violation(s):",
                      *(f"  {m}" for m in messages)])


def info_body(notes: tuple[str, ...]) -> str:
    return "\n".join(f"  {n}" for n in notes)


def monitor_body(m: MonitorReport) -> str:
    """The `--- monitor ---` body: peaks, averages, event counters, verdict."""
    s, v = m.summary, m.verdict
    if v.kind == "fail":
        verdict_line = f"{v.summary}: {'; '.join(v.details)}"
    else:
        verdict_line = v.summary
    lines = [
        f"samples={s.total_samples} max_imbalance={s.max_imbalance_ratio:.2f} "
        f"max_dsq_depth={s.max_local_dsq_depth} stuck={s.stuck_count}",
        f"avg: imbalance={s.avg_imbalance_ratio:.2f} nr_running/cpu={s.avg_nr_running:.1f} "
        f"dsq/cpu={s.avg_local_dsq_depth:.1f}",
    ]
    ev = s.event_deltas
    if ev is not None:
        lines.append(f"events: fallback={ev.total_fallback} ({ev.fallback_rate:.1f}/s) "
                     f"keep_last={ev.total_dispatch_keep_last} ({ev.keep_last_rate:.1f}/s) "
                     f"offline={ev.total_dispatch_offline}")
        extra = [f"{name}={value}{unit}" for name, value, unit in (
            ("reenq_immed", ev.total_reenq_immed, ""),
            ("reenq_local_repeat", ev.total_reenq_local_repeat, ""),
            ("refill_slice_dfl", ev.total_refill_slice_dfl, ""),
            ("bypass_activate", ev.total_bypass_activate, ""),
            ("bypass_dispatch", ev.total_bypass_dispatch, ""),
            ("bypass_duration", ev.total_bypass_duration, "ns"),
            ("insert_not_owned", ev.total_insert_not_owned, ""),
            ("sub_bypass_dispatch", ev.total_sub_bypass_dispatch, ""),
        ) if value != 0]
        if extra:
            lines.append("events+: " + " ".join(extra))
    lines.append(f"verdict: {verdict_line}")
    return "\n".join(lines)
