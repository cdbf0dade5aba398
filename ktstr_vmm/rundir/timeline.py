"""The `--- timeline ---` section: what happened when, from events.jsonl.

Times are host seconds since the VM started (the `phase booting` event), so the boot, the
scheduler's attach, the workload and the failure line up with console.log and the monitor.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def read_events(path: Path) -> list[dict[str, Any]]:
    """events.jsonl -> dicts; bad lines are skipped (the file is appended live)."""
    out = []
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if isinstance(ev, dict) and isinstance(ev.get("t"), int | float):
            out.append(ev)
    return out


def _label(ev: dict[str, Any]) -> str | None:
    kind = ev.get("kind")
    if kind == "phase":
        return {"booting": "boot", "evaluating": None}.get(ev.get("phase"), None)
    if kind == "sysrdy":
        return f"guest ready (kernel {ev.get('release')}, observed {ev.get('observed')})"
    if kind == "lifecycle":
        phase, detail = ev.get("phase"), ev.get("detail")
        text = {
            "sched_started": f"scheduler started (pid {ev.get('pid')})",
            "scx_enabled": f"sched_ext enabled ({ev.get('ops')})",
            "sched_enable_timeout": "sched_ext never enabled (timed out)",
            "baseline": "baseline: no scheduler",
            "workload_started": "workload started",
            "workload_done": "workload done",
            "sched_stopped": "scheduler stopped",
            "shell_hold": "the run waits for its shell",
            "shell_released": "the run's shell released it",
        }.get(phase, str(phase))
        return f"{text}{f' - {detail}' if detail and phase != 'sched_started' else ''}"
    if kind == "sched_exit":
        return f"scheduler exit: {ev.get('reason')} (sched_ext state {ev.get('state')})"
    if kind == "kmsg" and "disabled" in str(ev.get("text", "")):
        return str(ev["text"])
    if kind == "failure_dump":
        extra = "".join(f", {label}" for label in (
            f"{ev['maps']} BPF maps" if isinstance(ev.get("maps"), int) else "",
            f"frozen {ev['capture_ms']} ms" if isinstance(ev.get("capture_ms"), int | float)
            else "") if label)
        return f"VM frozen, failure dump captured (exit kind {ev.get('exit_kind')}{extra})"
    if kind == "shell":
        action, sid = ev.get("action"), ev.get("sid")
        if action == "opened":
            how = "pty" if ev.get("tty") else "pipes"
            return f"shell {sid} opened by {ev.get('by')} (guest pid {ev.get('pid')}, {how})"
        if action == "ended":
            return f"shell {sid} ended: {ev.get('why')}"
        return f"shell {action}: {ev.get('why')}"
    if kind == "snapshot":
        return f"snapshot {ev.get('file')}"
    if kind == "capture":
        if ev.get("skipped"):
            return f"capture {ev.get('tag')} skipped: {ev['skipped']}"
        frozen = ev.get("frozen_ms")
        return f"capture {ev.get('tag')}" + (
            f" (frozen {frozen} ms)" if isinstance(frozen, int | float) else "")
    if kind == "bench":
        code, wall = ev.get("exit"), ev.get("wall_ms")
        how = "ok" if code == 0 else "never ran" if code == -1 else f"exit {code}"
        ran = f", ran {wall / 1000:.1f}s" if isinstance(wall, int | float) else ""
        return f"benchmark {str(ev.get('name'))[:40]} (cg{ev.get('group')}): {how}{ran}"
    if kind in ("pause", "resume"):
        return f"guest {kind}d"
    if kind == "boot_retry":
        return f"no word from the guest after {ev.get('after_s')}s: kernel hung booting, booted again"
    if kind == "watchdog":
        return f"host watchdog fired after {ev.get('timeout_s')}s"
    if kind == "stopped":
        return "stopped by the user"
    if kind == "exit":
        return f"agent exit {ev.get('code')} ({ev.get('reason')})"
    if kind == "vm_exit":
        return f"VM exit: {ev.get('reason')}"
    return None


def render_timeline(events: Iterable[dict[str, Any]], header: str = "") -> str:
    """The section body (without the `--- timeline ---` line); "" when nothing happened."""
    events = list(events)
    t0 = next((e["t"] for e in events if e.get("kind") == "phase" and e.get("phase") == "booting"),
              None)
    if t0 is None:
        return ""
    rows = []
    for ev in events:
        label = _label(ev)
        if label:
            rows.append(f"  {'+' if ev['t'] >= t0 else '-'}{abs(ev['t'] - t0):6.1f}s  {label}")
    if not rows:
        return ""
    return "\n".join(([header] if header else []) + rows)
