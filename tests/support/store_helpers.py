"""Run directories in the real on-disk format with fixed ids and times, for store tests."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ktstr_vmm.spec import RunSpec, parse_topology

# 2026-11-25 17:39:42 UTC
T0 = 1795628382.0


def make_run(root: Path, run_id: str, *, name: str = "basic", scheduler: str = "scx_simple",
             topology: str = "tiny-2llc", verdict: str | None = "pass", message: str = "",
             sections: dict[str, str] | None = None, started: float = T0,
             total_s: float | None = 12.5, phase: str = "done", pid: int | None = None,
             parent: str | None = None, kind: str = "run") -> Path:
    """Write runs/<run_id>/ with spec.json, status.json and (when verdict) result.json."""
    d = root / "runs" / run_id
    d.mkdir(parents=True)
    spec = RunSpec(name=name, scheduler=scheduler, topology=parse_topology(topology),
                   topology_requested=topology, parent=parent, kind=kind)
    write_json(d / "spec.json", spec.to_json())
    write_json(d / "status.json", {"phase": phase, "pid": pid or 1_999_999_999, "started": started,
                                   "updated": started + (total_s or 0), "engine": "qemu"})
    if verdict is not None:
        write_json(d / "result.json", {
            "run_id": run_id, "run_dir": str(d), "verdict": verdict, "message": message,
            "reason": "" if verdict == "pass" else "failed", "sections": sections or {},
            "engine": "qemu", "topology": {"preset": spec.preset, "requested": topology,
                                           "observed": spec.topology.notation},
            "scheduler": scheduler, "kernel": "7.3.4+deb13-cloud-amd64", "stats": {},
            "timings": {"boot_to_ready_s": 4.1, "total_s": total_s}, "parent": parent,
            "artifacts": ["console.log", "sched.log"],
        })
    return d


def write_json(path: Path, obj: Any) -> None:
    """Replace a file by rename, as every writer of the run directory contract does."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    tmp.replace(path)


def replace_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def wait_until(predicate, timeout: float = 120.0, what: str = "condition") -> None:
    """Poll `predicate` with a deadline (for things that happen in other threads). The
    deadline is a hang guard far above any wait on a loaded machine, never a speed check."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)
