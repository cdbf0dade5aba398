"""The run directory contract (DESIGN.md "The run directory is the contract").

`<store>/runs/<run-id>/` holds everything one run produced. This module names the files
and owns the few writes every writer shares (status, events); the store indexes these
directories and the views read them. Whole files are written atomically; logs are appended
line by line so a reader can tail them.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..fsutil import append_json_line, atomic_write_json, atomic_write_text
from ..spec import validate_name

SPEC = "spec.json"
STATUS = "status.json"
CONSOLE = "console.log"
SCHED_LOG = "sched.log"
EVENTS = "events.jsonl"
MONITOR = "monitor.jsonl"
BPF_GLOBALS = "bpf.jsonl"
BPF_PROGS = "bpf-progs.json"  # the verifier's numbers per loaded BPF program (gauntlet --verifier)
RESULT = "result.json"
CONTROL = "control.sock"
SNAPSHOTS = "snapshots"
CAPTURES = "captures"            # periodic captures: captures/periodic_NNN.json
CAPTURES_INDEX = "captures.jsonl"  # one line per planned periodic capture
SHELL_LOG = "shell.log"  # what the run's guest shells printed (docs/shell.md)
REPRO = "repro"
TRACE = "trace"  # the scheduling trace's directory; its files: ktstr_vmm/trace/files.py
BENCH = "bench"  # bench/cg<group>-<name>.txt: a benchmark's raw output (and its output file)

# Store level, beside runs/: <store>/gauntlets/<gauntlet-id>.json, the record of one
# gauntlet (its matrix and cells; ktstr_vmm/gauntlet/record.py). Its runs are ordinary run
# directories whose spec.json carries `gauntlet` and `gauntlet_cell`.
GAUNTLETS = "gauntlets"

PHASES = ("pending", "building", "booting", "running", "evaluating", "done", "interrupted")
LIVE_PHASES = tuple(p for p in PHASES if p not in ("done", "interrupted"))
# result.json "verdict"; a RunSummary adds "corrupt", "interrupted" and the live phases.
VERDICTS = ("pass", "fail", "inconclusive", "skip")


def bench_output_name(index: int, name: str) -> str:
    """`bench/cg8-hackbench.txt` (the workload group); the guest-given name is reduced to [a-z0-9-]."""
    safe = "".join(c if c.isalnum() or c == "-" else "_" for c in name.lower())[:32] or "bench"
    return f"{BENCH}/cg{int(index)}-{safe}.txt"


def write_bench_output(run: RunDir, index: int, b: Any) -> None:
    """A benchmark's stdout+stderr, then its output file after a `--- file ---` line."""
    path = run.path / bench_output_name(index, b.name)
    path.parent.mkdir(exist_ok=True)
    text = b.output + (f"\n--- file ---\n{b.file}" if b.file else "")
    atomic_write_text(path, text)


def failure_dump_name(test: str) -> str:
    return f"{validate_name(test, 'test name')}.failure-dump.json"


def repro_failure_dump_name(test: str) -> str:
    return f"{validate_name(test, 'test name')}.repro.failure-dump.json"


def new_run_id(name: str, scheduler: str, topology: str, now: float | None = None) -> str:
    """Sortable by time and readable: 20261125-173942-scx_simple-tiny-2llc-3f9a."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now if now is not None else time.time()))
    parts = [stamp]
    for p in (name, os.path.basename(scheduler), topology):
        p = "".join(c if c.isalnum() or c in "_.-" else "_" for c in p)[:40].strip(".")
        if p and p not in parts:
            parts.append(p)
    parts.append(secrets.token_hex(2))
    return "-".join(parts)


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def run_id(self) -> str:
        return self.path.name

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def write_status(self, phase: str, **fields: Any) -> None:
        """Atomically replace status.json; keeps `started` from the first write."""
        assert phase in PHASES, phase
        now = time.time()
        prev = self.read_json(STATUS) or {}
        status = {
            "phase": phase,
            "pid": os.getpid(),
            "started": prev.get("started", now),
            "updated": now,
        }
        for k in ("engine", "watchdog_deadline", "qemu_pid"):
            if k in prev:
                status[k] = prev[k]
        status.update(fields)
        atomic_write_json(self.path / STATUS, status)

    def append_event(self, kind: str, **fields: Any) -> None:
        append_json_line(self.path / EVENTS, {"t": time.time(), "kind": kind, **fields})

    def read_json(self, name: str) -> dict[str, Any] | None:
        """A JSON object file of this directory, or None when missing/unreadable."""
        import json

        try:
            data = json.loads((self.path / name).read_bytes())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None
