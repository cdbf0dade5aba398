"""The workloads' own measures, from what the guest sent: family groups (ops, bytes,
latency histogram summary in the TestResult's groups) and real benchmarks (their output in
BenchOutput messages: hackbench's `Time:`, cyclictest's --json, stress-ng's --yaml).

Three views of the same numbers: `lines()` for the lines after the seed's `--- stats ---`
body, `to_json()` for result.json's stats.measures, and `flatten()` (`name.field` ->
number) for `--fail-on` and `ktstr compare`. Guest text is data: every number is checked,
a parse failure becomes that benchmark's `error`, never an exception.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from ..guest.messages import BenchOutput, GroupMeasure
from ..workloads import KINDS

# field -> unit, for rendering and for --fail-on's unit conversion
UNITS = {"time_s": "s", "min_us": "us", "avg_us": "us", "max_us": "us", "p99_us": "us",
         "mb_s": "MB/s", "ops_s": "/s", "iter_s": "/s", "cycles_s": "/s", "wakeups_s": "/s",
         "forks_s": "/s", "execs_s": "/s", "threads_s": "/s", "faults_s": "/s",
         "expiries_s": "/s", "exit": "", "bogo_ops": ""}


@dataclass(frozen=True)
class Measure:
    """One line of measures: `name` (kind or benchmark), its numbers, per-part rows
    (cyclictest threads, stress-ng stressors) and an error when the output made no sense."""

    group: int
    name: str
    values: dict[str, float] = field(default_factory=dict)
    parts: dict[str, dict[str, float]] = field(default_factory=dict)
    error: str = ""


# --------------------------------------------------------------------------- families

def family_measure(g: GroupMeasure) -> Measure:
    kind = KINDS.get(g.kind)
    secs = g.wall_ns / 1e9
    vals: dict[str, float] = {}
    if kind is None or secs <= 0:
        return Measure(g.index, g.kind, vals, error="no wall time")
    key = kind.measure
    if key == "mb_s":
        vals[key] = g.bytes / secs / 1e6
    else:  # the original kinds count iterations; the families count their operations
        n = g.iterations if g.kind in ("spin", "yield", "sleep", "fork", "pipe") else g.ops
        vals[key] = n / secs
    if kind.latency and g.lat_n:
        vals["avg_us"] = g.lat_avg_ns / 1e3
        vals["p99_us"] = g.lat_p99_ns / 1e3
        vals["max_us"] = g.lat_max_ns / 1e3
    return Measure(g.index, g.kind, vals,
                   error=f"{g.attr_errors} attribute(s) refused" if g.attr_errors else "")


# --------------------------------------------------------------------------- benchmarks

_HB_TIME = re.compile(r"^Time:\s*(\d+(?:\.\d+)?)\s*$", re.M)


def _finite(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        return None
    return float(v)


def parse_hackbench(out: str) -> dict[str, float]:
    m = _HB_TIME.findall(out)
    if not m:
        raise ValueError("no 'Time:' line in its output")
    return {"time_s": float(m[-1])}


def _percentile(hist: dict[int, int], cycles: int, q: float, cap: float) -> float:
    """The smallest bucket (us) holding the q-th sample; past the histogram (overflows):
    `cap` (the thread's max)."""
    want = math.ceil(cycles * q)
    seen = 0
    for us in sorted(hist):
        seen += hist[us]
        if seen >= want:
            return float(us)
    return cap


def parse_cyclictest(text: str) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """cyclictest --json: per thread min/avg/max (us) and p99 from its histogram; overall
    min of mins, mean of avgs, max of maxes and p99s."""
    try:
        d = json.loads(text)
    except ValueError:
        raise ValueError("its --json file is not JSON") from None
    threads = d.get("thread") if isinstance(d, dict) else None
    if not isinstance(threads, dict) or not threads:
        raise ValueError("its --json file has no threads")
    parts: dict[str, dict[str, float]] = {}
    for tid in sorted(threads, key=lambda t: int(t) if str(t).isdigit() else 1 << 30)[:1024]:
        t = threads[tid]
        if not isinstance(t, dict):
            raise ValueError(f"thread {str(tid)[:10]} is not an object")
        nums = {k: _finite(t.get(k)) for k in ("cycles", "min", "avg", "max")}
        if any(v is None for v in nums.values()) or not nums["cycles"]:
            raise ValueError(f"thread {str(tid)[:10]} has no cycles/min/avg/max")
        hist: dict[int, int] = {}
        raw = t.get("histogram") if isinstance(t.get("histogram"), dict) else {}
        for k, v in raw.items():
            if str(k).isdigit() and isinstance(v, int) and v > 0:
                hist[int(k)] = v
        cycles = int(nums["cycles"])  # type: ignore[arg-type]
        parts[f"t{tid}"] = {"min_us": nums["min"], "avg_us": nums["avg"], "max_us": nums["max"],
                            "p99_us": _percentile(hist, cycles, 0.99, nums["max"]),  # type: ignore[arg-type]
                            "cycles": float(cycles)}
    rows = list(parts.values())
    overall = {"min_us": min(r["min_us"] for r in rows),
               "avg_us": sum(r["avg_us"] for r in rows) / len(rows),
               "max_us": max(r["max_us"] for r in rows),
               "p99_us": max(r["p99_us"] for r in rows)}
    return overall, parts


_YAML_ITEM = re.compile(r"^\s*-\s*stressor:\s*(\S+)\s*$")
_YAML_KV = re.compile(r"^\s+([a-z0-9-]+):\s*(-?\d+(?:\.\d+)?(?:e[+-]?\d+)?)\s*$")


def parse_stress_ng(text: str) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """stress-ng --yaml metrics: bogo ops and bogo ops/s (real time) per stressor."""
    parts: dict[str, dict[str, float]] = {}
    cur: dict[str, float] | None = None
    in_metrics = False
    for line in text.splitlines():
        if line.startswith("metrics:"):
            in_metrics = True
            continue
        if in_metrics and line and not line[0].isspace():
            in_metrics = False
        if not in_metrics:
            continue
        m = _YAML_ITEM.match(line)
        if m:
            name = re.sub(r"[^a-z0-9-]", "_", m.group(1).lower())[:32]
            cur = parts.setdefault(name, {})
            continue
        m = _YAML_KV.match(line)
        if m and cur is not None:
            key, val = m.groups()
            if key == "bogo-ops":
                cur["bogo_ops"] = float(val)
            elif key == "bogo-ops-per-second-real-time":
                cur["ops_s"] = float(val)
    parts = {k: v for k, v in parts.items() if "ops_s" in v}
    if not parts:
        raise ValueError("no stressor metrics in its --yaml file")
    return {"ops_s": sum(p["ops_s"] for p in parts.values())}, parts


def bench_measure(b: BenchOutput) -> Measure:
    try:
        if b.exit != 0:
            tail = b.output.strip().splitlines()[-1:] or [""]
            how = "never ran" if b.exit < 0 else f"exited {b.exit}"
            raise ValueError(f"{how}: {tail[0][:160]}".rstrip(": "))
        if b.name == "hackbench":
            vals, parts = parse_hackbench(b.output), {}
        elif b.name == "cyclictest":
            vals, parts = parse_cyclictest(b.file)
        elif b.name == "stress-ng":
            vals, parts = parse_stress_ng(b.file)
        else:
            raise ValueError("unknown benchmark")
    except ValueError as e:
        return Measure(b.group, b.name, error=str(e))
    return Measure(b.group, b.name, vals, parts)


# --------------------------------------------------------------------------- views

def measures(groups: tuple[GroupMeasure, ...], benches: tuple[BenchOutput, ...]) -> list[Measure]:
    out = [family_measure(g) for g in groups if g.kind in KINDS and not KINDS[g.kind].bench]
    out += [bench_measure(b) for b in benches]
    return sorted(out, key=lambda m: m.group)


def _num(v: float, unit: str) -> str:
    if unit == "us":
        return f"{v:.0f}us" if v >= 10 else f"{v:.1f}us"
    if unit == "s":
        return f"{v:.3f}s"
    if unit == "MB/s":
        return f"{v:.0f}MB/s" if v >= 100 else f"{v:.1f}MB/s"
    if unit == "/s":
        return f"{v:.0f}/s" if v >= 100 else f"{v:.1f}/s"
    return f"{v:g}"


def _pairs(vals: dict[str, float]) -> str:
    words = []
    for k, v in vals.items():
        if k in ("cycles", "bogo_ops"):
            continue
        unit = UNITS.get(k, "")
        name = "bw" if k == "mb_s" else k.rsplit("_", 1)[0] if unit else k
        words.append(f"{name}={_num(v, unit)}")
    return " ".join(words)


def lines(ms: list[Measure]) -> list[str]:
    """`  cg3 futex: wakeups=12345/s avg=37us p99=655us max=17504us`, one per group, plus
    `    t0: ...` rows for a benchmark's threads or stressors."""
    out = []
    for m in ms:
        head = f"  cg{m.group} {m.name}:"
        if m.error and not m.values:
            out.append(f"{head} error: {m.error}")
            continue
        body = _pairs(m.values)
        out.append(f"{head} {body}".rstrip() + (f" ({m.error})" if m.error else ""))
        for name, vals in m.parts.items():
            out.append(f"    {name}: {_pairs(vals)}")
    return out


def to_json(ms: list[Measure]) -> list[dict[str, Any]]:
    return [{"group": m.group, "name": m.name, "values": m.values, "parts": m.parts,
             **({"error": m.error} if m.error else {})} for m in ms]


def flatten(items: Any) -> dict[str, float]:
    """result.json's stats.measures -> {"cyclictest.max_us": 612.0, "futex.p99_us": ..,
    "stress-ng.cpu.ops_s": .., "cg2.futex.wakeups_s": ..}. The kind-level name holds the
    worst (latency: max; rates and times: the first group of that kind)."""
    flat: dict[str, float] = {}
    if not isinstance(items, list):
        return flat
    for m in items:
        if not isinstance(m, dict) or not isinstance(m.get("name"), str):
            continue
        name, vals = m["name"], m.get("values")
        if not isinstance(vals, dict):
            continue
        for k, v in vals.items():
            f = _finite(v)
            if f is None:
                continue
            flat[f"cg{m.get('group')}.{name}.{k}"] = f
            key = f"{name}.{k}"
            if key not in flat or (k.endswith("_us") and f > flat[key]):
                flat[key] = f
        parts = m.get("parts") if isinstance(m.get("parts"), dict) else {}
        for part, pv in parts.items():
            if isinstance(pv, dict):
                for k, v in pv.items():
                    f = _finite(v)
                    if f is not None:
                        flat.setdefault(f"{name}.{part}.{k}", f)
    return flat


def resolve_metric(flat: dict[str, float], metric: str) -> tuple[str, float] | None:
    """`cyclictest.max` finds `cyclictest.max_us`; `hackbench.time` finds `time_s`."""
    if metric in flat:
        return metric, flat[metric]
    for suffix in ("_us", "_s", "_mb_s"):
        if metric + suffix in flat:
            return metric + suffix, flat[metric + suffix]
    return None
