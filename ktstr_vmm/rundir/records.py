"""What the views read from a run directory, parsed at the edge into frozen values: the
status (RunStatus), the result (RunResult), the spec (a dict), the events and monitor
samples (Event, MonitorSample), the failure dumps and snapshots present.

A file that is missing gives None; a file that is present but corrupt or truncated raises
a one-line StoreError naming the file and the problem, so a view can show it as an error.
JSON-lines files go through jsonl.JsonlTail (whole lines only; bad lines counted). Callers
read from worker threads (the TUI), never from an event loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import StoreError
from . import layout, summary
from .jsonl import JsonlTail
from .layout import LIVE_PHASES, VERDICTS


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _int(v: Any, default: int = 0) -> int:
    return int(v) if isinstance(v, int | float) and not isinstance(v, bool) else default


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def load_json_object(path: Path, what: str) -> dict[str, Any] | None:
    """A JSON object file; None when absent; StoreError naming the file and the problem when
    it is unreadable, empty, truncated, not JSON or not an object (summary.py's one reader,
    the same words `ktstr runs` uses; it raises BadFile, this a StoreError for a view)."""
    try:
        return summary.load_json_object(Path(path))
    except summary.BadFile as e:
        detail = str(e).removeprefix(f"{Path(path).name}: ")
        raise StoreError(f"{what} {path}: {detail}") from None


# --------------------------------------------------------------------------- status


@dataclass(frozen=True)
class RunStatus:
    phase: str
    pid: int | None = None
    started: float | None = None
    updated: float | None = None
    engine: str | None = None
    watchdog_deadline: float | None = None

    @property
    def live(self) -> bool:
        return self.phase in LIVE_PHASES

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RunStatus:
        phase = _str(d.get("phase")) or "pending"
        pid = d.get("pid")
        return cls(phase=phase, pid=pid if isinstance(pid, int) else None,
                   started=_num(d.get("started")), updated=_num(d.get("updated")),
                   engine=_str(d.get("engine")), watchdog_deadline=_num(d.get("watchdog_deadline")))


def load_status(run: Path) -> RunStatus | None:
    d = load_json_object(run / layout.STATUS, "status file")
    return RunStatus.from_json(d) if d is not None else None


# --------------------------------------------------------------------------- result


@dataclass(frozen=True)
class RunResult:
    run_id: str
    verdict: str
    message: str
    reason: str
    sections: tuple[tuple[str, str], ...]
    engine: str
    topology: dict[str, Any]
    scheduler: str
    kernel: str
    stats: dict[str, Any]
    timings: dict[str, Any]
    parent: str | None
    artifacts: tuple[str, ...]
    headline: str = ""

    @property
    def first_line(self) -> str:
        """The verdict's headline (built for its kind of failure), else the message's
        first line (runs recorded before headlines), else the reason."""
        if self.headline:
            return self.headline
        for line in self.message.splitlines():
            if line.strip():
                return line.strip()
        return self.reason

    def section(self, name: str) -> str | None:
        for n, text in self.sections:
            if n == name:
                return text
        return None

    @classmethod
    def from_json(cls, d: dict[str, Any], path: Path) -> RunResult:
        verdict = d.get("verdict")
        if verdict not in VERDICTS:
            raise StoreError(f"result file {path} has no valid verdict (got {verdict!r})")
        raw_sections = d.get("sections") or {}
        if isinstance(raw_sections, dict):
            sections = tuple((str(k), str(v)) for k, v in raw_sections.items())
        elif isinstance(raw_sections, list):
            sections = tuple((str(s.get("name")), str(s.get("text", "")))
                             for s in raw_sections if isinstance(s, dict))
        else:
            raise StoreError(f"result file {path}: 'sections' is {type(raw_sections).__name__}")
        topo = d.get("topology")
        if isinstance(topo, str):
            topo = {"requested": topo}
        artifacts = d.get("artifacts") or ()
        return cls(
            run_id=_str(d.get("run_id")) or path.parent.name,
            verdict=verdict,
            message=_str(d.get("message")) or "",
            reason=_str(d.get("reason")) or "",
            sections=sections,
            engine=_str(d.get("engine")) or "",
            topology=topo if isinstance(topo, dict) else {},
            scheduler=_str(d.get("scheduler")) or "",
            kernel=_str(d.get("kernel")) or "",
            stats=d.get("stats") if isinstance(d.get("stats"), dict) else {},
            timings=d.get("timings") if isinstance(d.get("timings"), dict) else {},
            parent=_str(d.get("parent")),
            artifacts=tuple(str(a) for a in artifacts) if isinstance(artifacts, list) else (),
            headline=_str(d.get("headline")) or "",
        )


def load_result(run: Path) -> RunResult | None:
    d = load_json_object(run / layout.RESULT, "result file")
    return RunResult.from_json(d, run / layout.RESULT) if d is not None else None


def load_spec(run: Path) -> dict[str, Any] | None:
    """spec.json as a dict (RunSpec.to_json shape); the views only display it."""
    return load_json_object(run / layout.SPEC, "spec file")


# --------------------------------------------------------------------------- events, samples


@dataclass(frozen=True)
class Event:
    t: float
    kind: str
    fields: tuple[tuple[str, Any], ...] = ()

    def get(self, key: str, default: Any = None) -> Any:
        for k, v in self.fields:
            if k == key:
                return v
        return default


@dataclass(frozen=True)
class CpuState:
    """One CPU of a monitor sample. The fields every view uses are typed; every other scalar
    the sampler wrote for the CPU comes along in `extra` (`get(name)` reads either), so a
    new monitor field needs no change here: the sampler writes it, a view reads it."""

    cpu: int
    nr_running: int = 0
    scx_nr_running: int = 0
    local_dsq_nr: int = 0
    curr_pid: int = 0
    curr_comm: str = ""
    curr_class: str = ""
    extra: tuple[tuple[str, int | float | str], ...] = ()

    def get(self, name: str, default: Any = None) -> Any:
        if name in _CPU_TYPED:
            return getattr(self, name)
        return next((v for k, v in self.extra if k == name), default)


_CPU_TYPED = frozenset(f for f in CpuState.__dataclass_fields__ if f != "extra")


@dataclass(frozen=True)
class MonitorSample:
    t: float
    cpus: tuple[CpuState, ...]
    scx_state: str = ""
    exit_kind: str = ""
    flags: tuple[str, ...] = ()


def parse_event(d: dict[str, Any]) -> Event | None:
    t, kind = _num(d.get("t")), _str(d.get("kind"))
    if t is None or not kind:
        return None
    return Event(t, kind, tuple((k, v) for k, v in d.items() if k not in ("t", "kind")))


def parse_sample(d: dict[str, Any]) -> MonitorSample | None:
    t = _num(d.get("t"))
    cpus_raw = d.get("cpus")
    if t is None or not isinstance(cpus_raw, list):
        return None
    cpus = []
    for c in cpus_raw:
        if not isinstance(c, dict) or not isinstance(c.get("cpu"), int):
            continue
        extra = tuple((k, v) for k, v in c.items() if k not in _CPU_TYPED
                      and isinstance(v, (int, float, str)) and not isinstance(v, bool))
        cpus.append(CpuState(cpu=c["cpu"], nr_running=_int(c.get("nr_running")),
                             scx_nr_running=_int(c.get("scx_nr_running")),
                             local_dsq_nr=_int(c.get("local_dsq_nr")),
                             curr_pid=_int(c.get("curr_pid")),
                             curr_comm=_str(c.get("curr_comm")) or "",
                             curr_class=_str(c.get("curr_class")) or "", extra=extra))
    scx = d.get("scx") if isinstance(d.get("scx"), dict) else {}
    flags = d.get("flags") if isinstance(d.get("flags"), list) else []
    return MonitorSample(t=t, cpus=tuple(cpus), scx_state=_str(scx.get("state")) or "",
                         exit_kind=str(scx.get("exit_kind") or ""),
                         flags=tuple(str(f) for f in flags))


def read_events(run: Path) -> list[Event]:
    return [e for e in map(parse_event, JsonlTail(run / layout.EVENTS).read(64 << 20)) if e]


def read_samples(run: Path) -> list[MonitorSample]:
    return [s for s in map(parse_sample, JsonlTail(run / layout.MONITOR).read(256 << 20)) if s]


# --------------------------------------------------------------------------- artifacts


def failure_dumps(run: Path) -> list[Path]:
    try:
        return sorted(p for p in run.iterdir() if p.name.endswith(".failure-dump.json"))
    except OSError:
        return []


def snapshot_files(run: Path) -> list[Path]:
    d = run / layout.SNAPSHOTS
    try:
        return sorted(d.iterdir())
    except OSError:
        return []


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and any((path / n).exists()
                                 for n in (layout.SPEC, layout.STATUS, layout.RESULT))
