"""Scenario files: a workload in phases, in TOML, validated before anything boots.

    name = "pressure"                 # optional: the run's name
    duration = "12s"                  # optional: default the sum of the phases
    capture_every = "1s"              # optional: periodic captures (--capture-every)
    capture_at = ["2s", "7s"]         # optional: captures at these times (--capture-at)
    assert = ["nondecreasing(bpf.vtime_now)", "always(monitor.nr_running <= 8)"]
                                      # optional: temporal assertions (--assert), added to
                                      # the command line's; checked by the run's parser

    [cgroups.fg]                      # cgroups the workloads name with cgroup=fg
    weight = 200                      # cpu.weight
    cpuset = "0-1"                    # cpuset.cpus
    mems = "0"                        # cpuset.mems

    [[phase]]
    name = "warmup"                   # optional
    duration = "2s"
    workloads = ["spin:2", "futex:4,cgroup=fg,nice=5"]

    [[phase]]
    duration = "10s"
    workloads = ["hackbench:groups=2,loops=100,cgroup=fg", "cyclictest:threads=2"]

Each phase's workloads use the `-w` syntax (ktstr workloads) and run from the phase's
start to its end; the whole scenario compiles to one workload (groups with start/stop).
Every error is one line naming the file and the field: `scenario s.toml: phase[2].workloads[1]:
hackbench has no parameter 'grups'`.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UsageError
from .workloads import KINDS, WorkloadGroup, check_param, parse_dur_us, parse_workloads

TOP_KEYS = ("name", "duration", "cgroups", "phase", "capture_every", "capture_at", "assert")
PHASE_KEYS = ("name", "duration", "workloads")
CGROUP_KEYS = ("weight", "cpuset", "mems")


@dataclass(frozen=True)
class Scenario:
    name: str
    duration_s: float
    workload: tuple[WorkloadGroup, ...]
    phases: tuple[tuple[str, float, float], ...]  # (name, start s, end s)
    capture_every_ms: int | None = None
    capture_at_ms: tuple[int, ...] = ()
    assertions: tuple[str, ...] = ()  # `assert`: their syntax is checked by the run's parser


def _bad(where: str, what: str, hint: str | None = None) -> UsageError:
    return UsageError(f"{where}: {what}", hint)


def _dur(value: Any, where: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = f"{value}s"
    if not isinstance(value, str):
        raise _bad(where, f"must be a duration like \"2s\", not {type(value).__name__}")
    try:
        us = parse_dur_us(value.strip())
    except ValueError:
        raise _bad(where, f"bad duration {value!r}", "use a duration like 500ms, 2s or 1m") from None
    if us < 1000:
        raise _bad(where, f"duration {value!r} is under 1ms")
    return us / 1e6


def _fmt_s(s: float) -> str:
    return f"{round(s * 1000)}ms"


def _keys(d: dict, allowed: tuple[str, ...], where: str) -> None:
    for k in d:
        if k not in allowed:
            raise _bad(where, f"unknown key '{k}'", f"keys here: {', '.join(allowed)}")


def parse_scenario(text: str, label: str) -> Scenario:
    where = f"scenario {label}"
    try:
        d = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise _bad(where, f"not valid TOML: {e}") from None
    _keys(d, TOP_KEYS, where)
    name = d.get("name", "")
    if not isinstance(name, str):
        raise _bad(f"{where}: name", "must be a string")
    cgroups = d.get("cgroups", {})
    if not isinstance(cgroups, dict):
        raise _bad(f"{where}: cgroups", "must be a table of [cgroups.NAME] tables")
    cg_params: dict[str, list[tuple[str, str]]] = {}
    probe = KINDS["spin"]
    for cg, attrs in cgroups.items():
        w = f"{where}: cgroups.{cg}"
        check_param(probe, "cgroup", cg, w)
        if not isinstance(attrs, dict):
            raise _bad(w, "must be a table")
        _keys(attrs, CGROUP_KEYS, w)
        cg_params[cg] = [(k, check_param(probe, k, str(v), f"{w}.{k}")) for k, v in attrs.items()]
    phases = d.get("phase")
    if not isinstance(phases, list) or not phases:
        raise _bad(where, "no [[phase]] tables", "add at least one [[phase]] with duration and workloads")
    groups: list[WorkloadGroup] = []
    spans = []
    t = 0.0
    for i, ph in enumerate(phases, 1):
        w = f"{where}: phase[{i}]"
        if not isinstance(ph, dict):
            raise _bad(w, "must be a table")
        _keys(ph, PHASE_KEYS, w)
        if "duration" not in ph:
            raise _bad(w, "has no duration")
        length = _dur(ph["duration"], f"{w}.duration")
        wl = ph.get("workloads")
        if not isinstance(wl, list) or not wl or not all(isinstance(x, str) for x in wl):
            raise _bad(f"{w}.workloads", "must be a non-empty list of strings like \"spin:2\"")
        for j, text_ in enumerate(wl, 1):
            for g in parse_workloads(text_, f"{w}.workloads[{j}]"):
                if g.get("start") or g.get("stop"):
                    raise _bad(f"{w}.workloads[{j}]", "start/stop are set by the phase",
                               "split the phase instead")
                params = list(g.params)
                cg = g.get("cgroup")
                if cg:
                    if cg not in cg_params and cgroups:
                        raise _bad(f"{w}.workloads[{j}]", f"cgroup '{cg}' is not declared",
                                   f"declared: {', '.join(cg_params) or 'none'} ([cgroups.NAME])")
                    have = {k for k, _ in params}
                    params += [(k, v) for k, v in cg_params.get(cg, []) if k not in have]
                if t > 0:
                    params.append(("start", _fmt_s(t)))
                params.append(("stop", _fmt_s(t + length)))
                groups.append(WorkloadGroup(g.kind, g.count, tuple(params)))
        spans.append((str(ph.get("name") or f"phase{i}"), t, t + length))
        t += length
    duration = _dur(d["duration"], f"{where}: duration") if "duration" in d else t
    if duration + 1e-9 < t:
        raise _bad(f"{where}: duration", f"{_fmt_s(duration)} is shorter than the phases ({_fmt_s(t)})")
    every = (round(_dur(d["capture_every"], f"{where}: capture_every") * 1000)
             if "capture_every" in d else None)
    at = d.get("capture_at", [])
    if not isinstance(at, list):
        raise _bad(f"{where}: capture_at", "must be a list of times like [\"1s\", \"3s\"]")
    at_ms = tuple(0 if v in (0, "0", "0s", "0ms") else
                  round(_dur(v, f"{where}: capture_at[{i}]") * 1000) for i, v in enumerate(at, 1))
    asserts = d.get("assert", [])
    if not isinstance(asserts, list) or not all(isinstance(x, str) and x.strip() for x in asserts):
        raise _bad(f"{where}: assert", "must be a list of assertions like "
                   "[\"nondecreasing(bpf.vtime_now)\"]")
    # round trip through the -w text: what spec.json stores must parse back the same
    text_all = ",".join(str(g) for g in groups)
    return Scenario(name=name, duration_s=duration,
                    workload=parse_workloads(text_all, where), phases=tuple(spans),
                    capture_every_ms=every, capture_at_ms=at_ms,
                    assertions=tuple(x.strip() for x in asserts))


def load_scenario(path: str | Path) -> Scenario:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        why = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
        raise UsageError(f"cannot read scenario {path}: {why}") from None
    return parse_scenario(text, p.name)
