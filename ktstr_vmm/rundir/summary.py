"""Reading one run directory into a RunSummary, tolerant of anything on disk.

A run directory is written by other processes (the runner, a crashed runner, a person with
an editor), so every file is outside input: a truncated or non-UTF-8 JSON file, a field of
the wrong type or a verdict nobody knows makes the run `corrupt` with a one-line reason;
it is never skipped and never raises. A run with no result yet shows its phase, and one
whose writer is gone without a result shows `interrupted`.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .layout import LIVE_PHASES, PHASES, RESULT, SPEC, STATUS, VERDICTS

CORRUPT = "corrupt"
INTERRUPTED = "interrupted"
# Every value the verdict column can hold.
ALL_VERDICTS = (*VERDICTS, CORRUPT, INTERRUPTED, *LIVE_PHASES)


@dataclass(frozen=True)
class RunSummary:
    """One line of `ktstr runs`: what a run is and how it ended (or where it is now)."""

    run_id: str
    path: Path
    started: float
    name: str
    scheduler: str
    topology: str
    preset: str | None
    verdict: str  # pass|fail|inconclusive|skip, corrupt, interrupted, or a live phase
    duration_s: float | None
    first_line: str
    parent: str | None
    phase: str | None
    error: str | None  # why the run is corrupt; None otherwise
    gauntlet: str | None = None  # spec.json `gauntlet`: the gauntlet this run is a cell of
    gauntlet_cell: str | None = None  # spec.json `gauntlet_cell`: its key there

    @property
    def is_live(self) -> bool:
        return self.verdict in LIVE_PHASES

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "path": str(self.path), "started": self.started,
            "name": self.name, "scheduler": self.scheduler, "topology": self.topology,
            "preset": self.preset, "verdict": self.verdict, "duration_s": self.duration_s,
            "first_line": self.first_line, "parent": self.parent, "phase": self.phase,
            "error": self.error, "gauntlet": self.gauntlet, "gauntlet_cell": self.gauntlet_cell,
        }


class BadFile(Exception):
    """A run file that cannot be used; str() is the one-line reason."""


_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", int: "a number",
               float: "a number", bool: "a boolean", type(None): "null"}


def json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def load_json_object(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`; None when the file does not exist; BadFile otherwise."""
    name = path.name
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise BadFile(f"{name}: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadFile(f"{name}: not UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start})") from None
    if not text.strip():
        raise BadFile(f"{name}: empty")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        if e.pos >= len(text.rstrip()) or e.msg.startswith("Unterminated string"):
            raise BadFile(f"{name}: truncated JSON ({len(data)} bytes)") from None
        raise BadFile(f"{name}: invalid JSON ({e.msg}, line {e.lineno} column {e.colno})") from None
    except RecursionError:
        raise BadFile(f"{name}: invalid JSON: nested too deeply") from None
    if not isinstance(obj, dict):
        raise BadFile(f"{name}: expected a JSON object, found {json_type(obj)}")
    return obj


def field(obj: dict[str, Any], fname: str, key: str, kind: type | tuple[type, ...],
          *, required: bool = False) -> Any:
    """obj[key] checked against `kind` (None allowed unless required); BadFile names it."""
    if key not in obj or obj[key] is None:
        if required:
            raise BadFile(f"{fname}: '{key}' is missing")
        return None
    value = obj[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # bool is an int in Python but not a number in JSON.
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        want = " or ".join(dict.fromkeys(_JSON_TYPES.get(k, k.__name__) for k in kinds))
        raise BadFile(f"{fname}: '{key}' is {json_type(value)}, expected {want}")
    return value


def pid_alive(pid: int | None) -> bool:
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    return True


def started_from_run_id(run_id: str) -> float | None:
    """The local time encoded at the start of a run id (YYYYMMDD-HHMMSS-...)."""
    try:
        return time.mktime(time.strptime(run_id[:15], "%Y%m%d-%H%M%S"))
    except (ValueError, OverflowError):
        return None


def first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def summarize(path: Path, run_id: str | None = None) -> RunSummary:
    """Read spec.json, status.json and result.json of one run directory. Never raises."""
    run_id = run_id or path.name
    info: dict[str, Any] = {"name": "", "scheduler": "", "topology": "", "preset": None,
                            "parent": None, "gauntlet": None, "gauntlet_cell": None}
    started: float | None = None
    phase: str | None = None
    try:
        status_error: str | None = None
        status: dict[str, Any] | None = None
        try:
            status = load_json_object(path / STATUS)
            if status is not None:
                phase = field(status, STATUS, "phase", str, required=True)
                if phase not in PHASES:
                    raise BadFile(f"{STATUS}: unknown phase '{phase}'")
                started = field(status, STATUS, "started", (int, float))
        except BadFile as e:
            # A result makes the status moot; without one the run cannot be placed.
            status_error, phase, started = str(e), None, None
        if started is None:
            started = started_from_run_id(run_id)

        spec = load_json_object(path / SPEC)
        if spec is None:
            raise BadFile(f"{SPEC}: missing")
        info["name"] = field(spec, SPEC, "name", str, required=True)
        info["scheduler"] = field(spec, SPEC, "scheduler", str, required=True)
        info["topology"] = field(spec, SPEC, "topology", str, required=True)
        info["preset"] = field(spec, SPEC, "preset", str)
        info["parent"] = field(spec, SPEC, "parent", str)
        info["gauntlet"] = field(spec, SPEC, "gauntlet", str)
        info["gauntlet_cell"] = field(spec, SPEC, "gauntlet_cell", str)

        result = load_json_object(path / RESULT)
        if result is not None:
            verdict = field(result, RESULT, "verdict", str, required=True)
            if verdict not in VERDICTS:
                raise BadFile(f"{RESULT}: unknown verdict '{verdict}'")
            message = field(result, RESULT, "message", str) or ""
            headline = field(result, RESULT, "headline", str) or ""
            timings = field(result, RESULT, "timings", dict) or {}
            duration = field(timings, RESULT, "total_s", (int, float))
            info["parent"] = info["parent"] or field(result, RESULT, "parent", str)
            return _summary(run_id, path, started, info, verdict,
                            float(duration) if duration is not None else None,
                            headline or first_line(message), phase, None)
        if status_error:
            raise BadFile(status_error)
        if status is None:
            raise BadFile(f"{STATUS}: missing")
        if phase == "done":
            raise BadFile(f"{RESULT}: missing although the run is done")
        if phase == INTERRUPTED:
            why = next((v for v in (status.get("error"), status.get("reason"))
                        if isinstance(v, str) and v), "")
            return _summary(run_id, path, started, info, INTERRUPTED, None, first_line(why),
                            phase, None)
        pid = field(status, STATUS, "pid", int)
        if not pid_alive(pid):
            return _summary(run_id, path, started, info, INTERRUPTED, None,
                            f"writer (pid {pid}) is gone; last phase {phase}", phase, None)
        return _summary(run_id, path, started, info, phase, None, "", phase, None)
    except BadFile as e:
        reason = str(e)
        return _summary(run_id, path, started, info, CORRUPT, None, reason, phase, reason)


def _summary(run_id: str, path: Path, started: float | None, info: dict[str, Any],
             verdict: str, duration: float | None, line: str, phase: str | None,
             error: str | None) -> RunSummary:
    if started is None:
        started = started_from_run_id(run_id)
    if started is None:
        try:
            started = path.stat().st_mtime
        except OSError:
            started = 0.0
    return RunSummary(
        run_id=run_id, path=path, started=float(started), name=info["name"],
        scheduler=info["scheduler"], topology=info["topology"], preset=info["preset"],
        verdict=verdict, duration_s=duration, first_line=line, parent=info["parent"],
        phase=phase, error=error, gauntlet=info.get("gauntlet"),
        gauntlet_cell=info.get("gauntlet_cell"),
    )
