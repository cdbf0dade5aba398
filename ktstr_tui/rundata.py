"""How the screens word what they read from a run directory.

The reading and parsing belong to the run-directory contract's owner:
ktstr_vmm.rundir.records (RunStatus, RunResult, Event, MonitorSample, the loaders) and
ktstr_vmm.rundir.jsonl (the incremental JSON-lines reader). What is left here is only
for display.
"""

from __future__ import annotations

from ktstr_vmm.rundir.records import Event

DETAIL_KEYS = ("phase", "state", "name", "what", "reason", "detail", "msg", "text", "message")


def event_label(event: Event) -> str:
    """A short human label: 'lifecycle: booted', 'scenario start: spin'."""
    if event.kind == "shell":  # a guest shell opened or ended (docs/shell.md)
        f = dict(event.fields)
        if f.get("action") == "opened":
            return f"shell {f.get('sid')} opened by {f.get('by')}"
        return f"shell {f.get('sid')} {f.get('action')}: {f.get('why')}"
    detail = next((str(v) for k, v in event.fields if k in DETAIL_KEYS), "")
    kind = event.kind.replace("_", " ")
    return f"{kind}: {detail}" if detail else kind
