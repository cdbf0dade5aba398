"""Failure dumps: `<test>.failure-dump.json` in ktstr's FailureDumpReport shape.

A failed run leaves one dump next to its other artifacts: the real one (scheduler state read
from the frozen guest by the monitor, written through `write_failure_dump`) or, when no state
could be captured, a placeholder (`is_placeholder: true`, the reason in every
`*_unavailable` field, as ktstr's `FailureDumpReport::placeholder` does). Stale dumps of a
test are cleared before it runs. Every write is atomic (fsutil); the test name is validated
before it becomes a file name; `load_failure_dump` validates every field it knows and fails
with one line naming the bad one. Field reference: docs/failure-dump.md.

JSON follows ktstr's serde rules: lists and optional fields that are empty are left out,
`is_placeholder` only appears when true, `schema` and `maps` always appear. Top-level keys
this module does not model (ktstr's `vcpu_regs`, `per_cpu_time`, ...) are kept in
`FailureDump.extra` and written back unchanged.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import StoreError
from ..evaluate.console import STAGE_KEYS, init_stage_label
from ..fsutil import atomic_write_json
from .layout import failure_dump_name, repro_failure_dump_name

log = logging.getLogger(__name__)

SCHEMA_SINGLE = "single"
SCHEMA_DUAL = "dual"
SCHEMA_DEGRADED = "degraded"
# ktstr's reasons for an empty capture, verbatim.
REASON_NO_SCX_WALKER = "no scx walker capture"
REASON_NO_TASK_WALKER = "no task walker available"
REASON_NO_NUMA_WALKER = "no NUMA walker (host-side walker pending)"
REASON_PROG_ACCESSOR_UNAVAILABLE = "prog accessor unavailable"
REASON_SCX_ROOT_NULL = "scx_root is NULL (no scheduler attached)"


class DumpError(StoreError):
    """A failure-dump file that cannot be read or does not have the expected shape."""


def _omit(default: Any = None) -> Any:
    """A field serde skips when empty/None/false (skip_serializing_if)."""
    return field(default=default, metadata={"omit": True})


@dataclass(frozen=True)
class RqScxState:
    """One CPU's run queue at freeze time (ktstr RqScxState + the monitor's rq fields)."""

    cpu: int
    nr_running: int = 0                     # rq->scx.nr_running
    flags: int = 0                          # rq->scx.flags
    cpu_released: bool = False
    ops_qseq: int = 0
    rq_clock: int = 0                       # rq->clock, ns
    runnable_task_kvas: tuple[int, ...] = ()
    kick_sync: int | None = _omit()
    nr_immed: int | None = _omit()
    curr_pid: int | None = _omit()
    curr_comm: str | None = _omit()
    runnable_truncated: bool = _omit(False)
    rq_nr_running: int | None = _omit()     # rq->nr_running (all classes)   [ktstr-vmm]
    local_dsq_depth: int | None = _omit()   # rq->scx.local_dsq.nr           [ktstr-vmm]
    curr_class: str | None = _omit()        # rq->curr's sched_class name    [ktstr-vmm]


@dataclass(frozen=True)
class DsqState:
    """One dispatch queue: local, bypass, global or user."""

    id: int
    origin: str                             # "local cpu N", "global node N", "user", ...
    nr: int = 0
    seq: int = 0
    task_kvas: tuple[int, ...] = ()
    truncated: bool = _omit(False)


@dataclass(frozen=True)
class ScxSchedState:
    """The attached scheduler (`*scx_root`): abort state and the latched exit."""

    aborting: bool = False
    bypass_depth: int = 0
    exit_kind: int = 0                      # enum scx_exit_kind; 0 = not exited
    watchdog_timeout: int | None = _omit()  # jiffies
    exit_reason: str | None = _omit()       # scx_exit_info.reason            [ktstr-vmm]
    exit_msg: str | None = _omit()          # scx_exit_info.msg               [ktstr-vmm]


@dataclass(frozen=True)
class TaskEnrichment:
    """One task reached by the walkers (subset of ktstr's TaskEnrichment)."""

    pid: int
    tgid: int = 0
    comm: str = ""
    group_leader_pid: int | None = _omit()
    real_parent_pid: int | None = _omit()
    real_parent_comm: str | None = _omit()
    sched_class: str | None = _omit()
    prio: int | None = _omit()
    scx_weight: int | None = _omit()
    nvcsw: int | None = _omit()
    nivcsw: int | None = _omit()
    cpu: int | None = _omit()               # task_cpu()                      [ktstr-vmm]
    runnable_for_ms: int | None = _omit()   # jiffies since runnable_at, ms   [ktstr-vmm]
    kva: int | None = _omit()               # the task_struct's address (DSQ task_kvas) [ktstr-vmm]


@dataclass(frozen=True)
class EventCounterSample:
    """SCX_EV_* counters summed over CPUs at one monitor tick."""

    elapsed_ms: int = 0
    select_cpu_fallback: int = 0
    dispatch_local_dsq_offline: int = 0
    dispatch_keep_last: int = 0
    enq_skip_exiting: int = 0
    enq_skip_migration_disabled: int = 0
    reenq_immed: int = 0
    reenq_local_repeat: int = 0
    refill_slice_dfl: int = 0
    bypass_duration: int = 0
    bypass_dispatch: int = 0
    bypass_activate: int = 0
    insert_not_owned: int = 0
    sub_bypass_dispatch: int = 0


@dataclass(frozen=True)
class FailureDumpMap:
    """One BPF map: its rendered contents (any JSON: `value` for arrays, `entries` for
    hashes, `percpu_entries` for per-CPU maps) or why it could not be read."""

    name: str
    map_type: int = 0
    value_size: int = 0
    max_entries: int = 0
    value: Any = _omit()
    entries: Any = _omit()
    percpu_entries: Any = _omit()
    percpu_hash_entries: Any = _omit()
    error: str | None = _omit()


@dataclass(frozen=True)
class FailureDump:
    """ktstr's FailureDumpReport (schema "single")."""

    schema: str = SCHEMA_SINGLE
    maps: tuple[FailureDumpMap, ...] = ()
    rq_scx_states: tuple[RqScxState, ...] = _omit(())
    dsq_states: tuple[DsqState, ...] = _omit(())
    scx_sched_state: ScxSchedState | None = _omit()
    scx_walker_unavailable: str | None = _omit()
    task_enrichments: tuple[TaskEnrichment, ...] = _omit(())
    task_enrichments_unavailable: str | None = _omit()
    event_counter_timeline: tuple[EventCounterSample, ...] = _omit(())
    prog_runtime_stats_unavailable: str | None = _omit()
    per_node_numa_unavailable: str | None = _omit()
    sdt_alloc_unavailable: str | None = _omit()
    dump_truncated_at_us: int | None = _omit()
    active_obj_name: str | None = _omit()
    is_placeholder: bool = _omit(False)
    extra: dict[str, Any] = field(default_factory=dict, metadata={"extra": True})

    @classmethod
    def placeholder(cls, reason: str) -> FailureDump:
        """ktstr's placeholder: every `*_unavailable` field carries the reason."""
        return cls(prog_runtime_stats_unavailable=reason, per_node_numa_unavailable=reason,
                   task_enrichments_unavailable=reason, scx_walker_unavailable=reason,
                   sdt_alloc_unavailable=reason, is_placeholder=True)

    @property
    def reason(self) -> str | None:
        """Why state is missing (the placeholder's reason), if any."""
        return (self.scx_walker_unavailable or self.task_enrichments_unavailable
                or self.sdt_alloc_unavailable)


def placeholder_reason(stage_label: str, bug_summary: str | None = None) -> str:
    """The seed's placeholder reason for a failure before any state could be captured.

    `stage_label` is the stage text (eval_console.STAGE_*) or a RunOutcome.init_stage
    value ("not_started", "init_started", "payload_started"), which is mapped to its text.
    """
    if stage_label in STAGE_KEYS:
        stage_label = init_stage_label(stage_label)
    base = (f"test failed at stage `{stage_label}`; no BPF state captured "
            "(probe did not attach before failure)")
    return f"{base}. BUG SUMMARY: {bug_summary}" if bug_summary else base


# --------------------------------------------------------------------------- encode

def dump_to_json(dump: FailureDump) -> dict[str, Any]:
    out = _encode(dump)
    assert isinstance(out, dict)
    return out


def _is_default(v: Any, default: Any) -> bool:
    """serde's skip test: None, False for a bool field, an empty tuple for a list field
    (a JSON `false` or `[]` held in an any-JSON field is a value, not absence)."""
    if v is None or v is default:
        return True
    return isinstance(v, tuple) and not v and isinstance(default, tuple)


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            v = getattr(value, f.name)
            if f.metadata.get("extra"):
                for k, x in v.items():
                    out.setdefault(k, x)
                continue
            if f.metadata.get("omit") and _is_default(v, f.default):
                continue
            out[f.name] = _encode(v)
        return out
    if isinstance(value, tuple):
        return [_encode(v) for v in value]
    return value


# --------------------------------------------------------------------------- decode

def _type_name(v: Any) -> str:
    if v is None:
        return "null"
    return {bool: "boolean", int: "integer", float: "number", str: "string",
            list: "array", dict: "object"}.get(type(v), type(v).__name__)


def _decode(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _decode(value, args[0], where)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where} must be a boolean, got {_type_name(value)}")
        return value
    if tp is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{where} must be an integer, got {_type_name(value)}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"{where} must be a string, got {_type_name(value)}")
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise ValueError(f"{where} must be an array, got {_type_name(value)}")
        (item,) = typing.get_args(tp)[:1]
        return tuple(_decode(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        return _decode_record(value, tp, where)
    raise TypeError(f"unsupported field type {tp!r}")   # a bug in this module


_HINTS: dict[type, dict[str, Any]] = {}


def _decode_record(value: Any, cls: type, where: str) -> Any:
    if not isinstance(value, dict):
        raise ValueError(f"{where or 'the file'} must be an object, got {_type_name(value)}")
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    known = set()
    extra_field = None
    for f in dataclasses.fields(cls):
        if f.metadata.get("extra"):
            extra_field = f.name
            continue
        known.add(f.name)
        path = f"{where}.{f.name}" if where else f.name
        if f.name in value:
            kwargs[f.name] = _decode(value[f.name], hints[f.name], path)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ValueError(f"{path} is missing")
    if extra_field is not None:
        kwargs[extra_field] = {k: v for k, v in value.items() if k not in known}
    return cls(**kwargs)


def failure_dump_from_json(obj: Any) -> FailureDump:
    """Validate a parsed JSON value; ValueError names the first bad field."""
    if isinstance(obj, dict) and obj.get("schema", "") == "":
        obj = {"schema": SCHEMA_SINGLE, **obj}   # dumps older than the schema tag
    dump = _decode_record(obj, FailureDump, "")
    if dump.schema != SCHEMA_SINGLE:
        raise ValueError(f"schema {dump.schema!r} is not supported (only {SCHEMA_SINGLE!r})")
    return dump


def load_failure_dump(path: Path) -> FailureDump:
    """Read and validate a dump. Any problem raises DumpError with one line naming the file
    and the bad field (the TUI and `ktstr show` print it as is)."""
    path = Path(path)
    hint = "the file is damaged or was not written by ktstr; rerun the test to get a new dump"
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DumpError(f"cannot read failure dump {path}: {e.strerror or e}") from e
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DumpError(f"failure dump {path} is not UTF-8 (byte {e.start})", hint) from e
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise DumpError(f"failure dump {path} is not valid JSON (truncated?): {e.msg} at "
                        f"line {e.lineno} column {e.colno}", hint) from e
    except RecursionError as e:
        raise DumpError(f"failure dump {path} is nested too deeply", hint) from e
    try:
        return failure_dump_from_json(obj)
    except ValueError as e:
        raise DumpError(f"failure dump {path}: {e}", hint) from e


# --------------------------------------------------------------------------- files

def failure_dump_path(run_dir: Path, test: str) -> Path:
    """`<run_dir>/<test>.failure-dump.json`; refuses a bad test name (UsageError)."""
    return Path(run_dir) / failure_dump_name(test)


def write_failure_dump(run_dir: Path, test: str, dump: FailureDump) -> Path:
    """Atomically write `dump` as the test's failure dump; returns its path."""
    path = failure_dump_path(run_dir, test)
    atomic_write_json(path, dump_to_json(dump))
    return path


def write_placeholder_failure_dump_if_missing(run_dir: Path, test: str, reason: str) -> Path | None:
    """Write a placeholder dump unless one (real or placeholder) is already there.

    Returns the path written, or None when a dump existed or the write failed (logged: the
    dump is a best-effort addition to a failure that is reported anyway, as in the seed).
    A bad test name raises UsageError before anything is written.
    """
    path = failure_dump_path(run_dir, test)
    if path.exists():
        return None
    try:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, dump_to_json(FailureDump.placeholder(reason)))
    except (StoreError, OSError) as e:
        log.warning("cannot write placeholder failure dump %s: %s", path, e)
        return None
    return path


def clear_stale_dumps(run_dir: Path, test: str) -> list[Path]:
    """Remove the test's primary and repro dumps left by an earlier run; returns what was
    removed. A missing file is fine; other errors are logged and the run goes on."""
    removed = []
    for name in (failure_dump_name(test), repro_failure_dump_name(test)):
        path = Path(run_dir) / name
        try:
            os.unlink(path)
        except FileNotFoundError:
            continue
        except OSError as e:
            log.warning("cannot remove stale failure dump %s: %s", path, e.strerror or e)
            continue
        removed.append(path)
    return removed
