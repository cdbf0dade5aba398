"""Two runs side by side: verdicts, topologies, stats (run-wide and per cgroup), the
monitor's summary and the first failure line, from their result.json files; and the
regression check `--fail-on METRIC:+N%` for scripts.

Pure functions over result.json dicts; commands/compare.py reads the files and prints.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError
from .measures import UNITS as MEASURE_UNITS
from .measures import flatten, resolve_metric

# metric -> (path in result.json, unit); "higher is worse" for all but iterations/workers.
METRICS: dict[str, str] = {
    "workers": "worker count",
    "cpus": "CPUs the workers ran on",
    "migrations": "worker migrations, total",
    "spread": "worst per-cgroup CPU-time spread, percent",
    "gap": "worst scheduling gap, ms",
    "iterations": "work iterations, total",
    "duration": "workload duration, ms",
    "boot": "boot to guest ready, s",
    "vm": "VM wall time, s",
}
# The unit each metric is shown in ("" = a count).
UNITS: dict[str, str] = {"spread": "%", "gap": "ms", "duration": "ms", "boot": "s", "vm": "s",
                         "max_gap_ms": "ms"}
# result.json "latency" (from the scheduling trace, latency.summary_json): all in ms
LATENCY_FIELDS = ("wakeup_p50_ms", "wakeup_p99_ms", "wakeup_max_ms", "runnable_p50_ms",
                  "runnable_p99_ms", "runnable_max_ms")
UNITS.update({f"latency.{k}": "ms" for k in LATENCY_FIELDS})


@dataclass(frozen=True)
class Row:
    """One compared field: A's and B's values as shown (with units) and, for numbers,
    B's change against A (`+12 (+8.3%)`, `-0.5 s (-10.0%)`; "" when equal or not numeric)."""

    group: str
    field: str
    a: str
    b: str
    delta: str = ""

    @property
    def differs(self) -> bool:
        return self.a != self.b


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.1f}" if not v.is_integer() else str(int(v))
    if isinstance(v, (list, tuple)):
        return " ".join(str(x) for x in v) or "-"
    return str(v)


def _with_unit(v: Any, unit: str) -> str:
    text = _fmt(v)
    if not unit or text == "-":
        return text
    return f"{text}{unit}" if unit == "%" else f"{text} {unit}"


def delta(va: Any, vb: Any, unit: str = "") -> str:
    """B's change against A for two numbers: `+12`, `-0.5 s (-10.0%)`; "" otherwise."""
    a, b = _num(va), _num(vb)
    if a is None or b is None or a == b:
        return ""
    diff = b - a
    text = f"{diff:+.1f}" if not float(diff).is_integer() else f"{int(diff):+d}"
    if unit:
        text += unit if unit == "%" else f" {unit}"
    if unit == "%":
        return text.replace("%", " pt")  # a change of a percentage is in points
    return f"{text} ({diff / abs(a) * 100.0:+.1f}%)" if a else text


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def metrics(result: dict[str, Any]) -> dict[str, float | None]:
    """The comparable numbers of one run (None when the run has no such number)."""
    stats = _dict(result.get("stats"))
    groups = [g for g in _list(stats.get("groups")) if isinstance(g, dict)]
    workers = [w for w in _list(stats.get("workers")) if isinstance(w, dict)]
    timings = _dict(result.get("timings"))
    cpus: set[Any] = set()
    for w in workers:
        if isinstance(w.get("cpus"), list):
            cpus.update(c for c in w["cpus"] if isinstance(c, int))
    has = bool(stats)

    def total(key: str) -> float | None:
        vals = [_num(g.get(key)) for g in groups]
        return sum(v for v in vals if v is not None) if has else None

    def worst(key: str) -> float | None:
        vals = [v for v in (_num(g.get(key)) for g in groups) if v is not None]
        return max(vals, default=0.0) if has else None

    out: dict[str, float | None] = {
        "workers": float(len(workers)) if has else None,
        "cpus": float(len(cpus)) if has else None,
        "migrations": total("migrations"),
        "spread": worst("spread"),
        "gap": worst("max_gap_ms"),
        "iterations": total("iterations"),
        "duration": _num(stats.get("duration_ms")),
        "boot": _num(timings.get("boot_to_ready_s")),
        "vm": _num(timings.get("vm_s")),
    }
    for k, v in monitor_summary(result).items():
        out[f"monitor.{k}"] = _num(v)
    lat = _dict(result.get("latency"))
    for k in LATENCY_FIELDS:
        if k in lat:
            out[f"latency.{k}"] = _num(lat[k])
    out.update(flatten(stats.get("measures")))
    return out


def monitor_summary(result: dict[str, Any]) -> dict[str, Any]:
    """The monitor's scalar summary fields, when result.json has a monitor block."""
    mon = _dict(result.get("monitor"))
    summary = _dict(mon.get("summary")) or mon
    return {k: v for k, v in summary.items()
            if isinstance(v, (int, float, str)) and not isinstance(v, bool) or v is None}


def first_failure_line(result: dict[str, Any]) -> str:
    if result.get("verdict") == "pass" and not result.get("expected_failure"):
        return ""
    headline = result.get("headline")
    if isinstance(headline, str) and headline.strip():
        return headline.strip()
    details = _dict(result.get("sections")).get("details")
    if isinstance(details, str) and details.strip():
        return details.strip().splitlines()[0]
    reason = str(result.get("reason") or "")
    return reason.splitlines()[0] if reason else ""


def compare(a: dict[str, Any], b: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []

    def add(group: str, field: str, va: Any, vb: Any, unit: str | None = None) -> None:
        if unit is None:
            rows.append(Row(group, field, _fmt(va), _fmt(vb)))
        else:
            rows.append(Row(group, field, _with_unit(va, unit), _with_unit(vb, unit),
                            delta(va, vb, unit)))

    add("run", "id", a.get("run_id"), b.get("run_id"))
    add("run", "kind", a.get("kind") or "run", b.get("kind") or "run")
    add("run", "parent", a.get("parent"), b.get("parent"))
    add("run", "scheduler", a.get("scheduler"), b.get("scheduler"))
    add("run", "sched_args", a.get("sched_args"), b.get("sched_args"))
    add("run", "kernel", _dict(a.get("kernel")).get("version"), _dict(b.get("kernel")).get("version"))
    add("run", "engine", a.get("engine"), b.get("engine"))
    add("verdict", "verdict", a.get("verdict"), b.get("verdict"))
    add("verdict", "reason", str(a.get("reason") or "").split("\n")[0],
        str(b.get("reason") or "").split("\n")[0])
    add("verdict", "first failure", first_failure_line(a), first_failure_line(b))
    ta, tb = _dict(a.get("topology")), _dict(b.get("topology"))
    for key in ("preset", "requested", "observed"):
        add("topology", key, ta.get(key), tb.get(key))
    ma, mb = metrics(a), metrics(b)
    for key in METRICS:
        add("stats", key, ma.get(key), mb.get(key), UNITS.get(key, ""))
    ga = {_fmt(g.get("index")): g for g in _list(_dict(a.get("stats")).get("groups"))
          if isinstance(g, dict)}
    gb = {_fmt(g.get("index")): g for g in _list(_dict(b.get("stats")).get("groups"))
          if isinstance(g, dict)}
    for idx in sorted(set(ga) | set(gb), key=lambda i: (not i.isdigit(), i.zfill(8))):
        x, y = _dict(ga.get(idx)), _dict(gb.get(idx))
        for key in ("kind", "workers", "cpus", "migrations", "spread", "max_gap_ms", "iterations"):
            add(f"cg{idx}", key, x.get(key), y.get(key),
                None if key == "kind" else UNITS.get(key, ""))
    fa = flatten(_dict(a.get("stats")).get("measures"))
    fb = flatten(_dict(b.get("stats")).get("measures"))
    for key in sorted(k for k in set(fa) | set(fb) if not k.startswith("cg")):
        add("measures", key, fa.get(key), fb.get(key), MEASURE_UNITS.get(key.rsplit(".", 1)[-1], ""))
    sa, sb = monitor_summary(a), monitor_summary(b)
    for key in sorted(set(sa) | set(sb)):
        add("monitor", key, sa.get(key), sb.get(key), "")
    la, lb = _dict(a.get("latency")), _dict(b.get("latency"))
    for key in LATENCY_FIELDS:
        if key in la or key in lb:
            add("latency", key.removesuffix("_ms"), la.get(key), lb.get(key), "ms")
    return rows


# --------------------------------------------------------------------------- --fail-on

@dataclass(frozen=True)
class FailOn:
    metric: str
    amount: float
    percent: bool
    sign: int  # +1: fail when B rose by more than amount; -1: fail when B fell by more
    op: str = ""    # ">" / "<": a bound on one run's own value (amount in `unit`)
    unit: str = ""  # as written: us ms s k M or ""

    def __str__(self) -> str:
        if self.op:
            return f"{self.metric}:{self.op}{self.amount:g}{self.unit}"
        return f"{self.metric}:{'+' if self.sign > 0 else '-'}{self.amount:g}{'%' if self.percent else ''}"

    def bound(self, field: str) -> float:
        """The bound in the unit of `field` (cyclictest.max_us: 1ms -> 1000)."""
        scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "k": 1e3, "M": 1e6, "": None}[self.unit]
        if field.endswith("_us") and scale is not None and self.unit in ("us", "ms", "s"):
            return self.amount * scale * 1e6
        if field.endswith("time_s") and self.unit in ("us", "ms", "s"):
            return self.amount * (scale or 1.0)
        return self.amount * (scale if self.unit in ("k", "M") else 1.0)


_FAIL_ON = re.compile(r"^([a-z0-9_.-]+):([+-])(\d+(?:\.\d+)?)(%?)$")
_BOUND = re.compile(r"^([a-z0-9_.-]+):([<>])(\d+(?:\.\d+)?)(us|ms|s|k|M)?$")
_MEASURE = re.compile(r"^(cg\d+\.)?[a-z][a-z0-9-]*(\.[a-z0-9_-]+){1,2}$")


def parse_fail_on(text: str) -> FailOn:
    """`migrations:+20%` (B more than 20% above A fails), `iterations:-10%`, `gap:+50`
    (absolute change), and a bound on a run's own value: `cyclictest.max:>500us`,
    `hackbench.time:>2s`, `futex.wakeups:<1000`. Unknown metrics are refused with the
    list; a workload measure (`NAME.FIELD`) is checked against the run when it is known."""
    t = text.strip()
    b = _BOUND.match(t)
    m = _FAIL_ON.match(t)
    if not m and not b:
        raise UsageError(f"bad --fail-on '{text}'",
                         "use METRIC:+N% or METRIC:-N% (or an absolute METRIC:+N), e.g. migrations:+20%, "
                         "or a bound METRIC:>N[us|ms|s|k|M], e.g. cyclictest.max:>500us")
    metric = (b or m).group(1)  # type: ignore[union-attr]
    if metric not in METRICS and not metric.startswith(("monitor.", "latency.")) and not _MEASURE.match(metric):
        raise UsageError(f"unknown metric '{metric}' in --fail-on",
                         f"metrics: {', '.join(METRICS)}, monitor.<summary field>, "
                         f"latency.<{'|'.join(LATENCY_FIELDS)}>, "
                         "or a workload measure like cyclictest.max (ktstr workloads)")
    if b:
        _, op, amount, unit = b.groups()
        return FailOn(metric, float(amount), False, 1 if op == ">" else -1, op, unit or "")
    _, sign, amount, pct = m.groups()  # type: ignore[union-attr]
    return FailOn(metric, float(amount), bool(pct), 1 if sign == "+" else -1)


def check_rules(a: dict[str, Any], b: dict[str, Any], rules: list[FailOn]) -> None:
    """UsageError (exit 2) naming the field when a rule asks about a metric the runs cannot
    answer: a `monitor.` field or workload measure neither run has, or a metric missing in
    one run (for a bound `>`/`<`: missing in B). A CI gate must not pass or fail on missing
    data; it must say the gate is wrong."""
    ma, mb = metrics(a), metrics(b)
    for r in rules:
        _, va = _lookup(ma, r.metric)
        _, vb = _lookup(mb, r.metric)
        if r.metric not in ma and r.metric not in mb and va is None and vb is None:
            known = sorted(k for k in {*ma, *mb} if k.startswith("monitor.")
                           or ("." in k and not k.startswith("cg")))
            raise UsageError(f"--fail-on {r}: unknown field '{r.metric}' (neither run has it)",
                             f"fields: {', '.join([*METRICS, *known])}")
        if vb is None or (va is None and not r.op):
            side, res = ("A", a) if vb is not None else ("B", b)
            raise UsageError(f"--fail-on {r}: run {side} ({res.get('run_id') or '?'}) has no "
                             f"value for '{r.metric}'",
                             "gate on a metric both runs recorded (see `ktstr compare A B`)")


def _lookup(values: dict[str, float | None], metric: str) -> tuple[str, float | None]:
    if metric in values:
        return metric, values[metric]
    found = resolve_metric({k: v for k, v in values.items() if v is not None}, metric)
    return found if found else (metric, None)


def bound_failures(result: dict[str, Any], rules: list[FailOn]) -> list[str]:
    """One line per bound (`>`/`<`) the run breaks: `cyclictest.max_us 612us > 500us`; a
    measure the run does not have is a failure too (`... is missing`)."""
    vals = metrics(result)
    out = []
    for r in rules:
        if not r.op:
            continue
        name, v = _lookup(vals, r.metric)
        if v is None:
            out.append(f"{r}: {r.metric} is missing in this run")
            continue
        limit = r.bound(name)
        if (v > limit) if r.op == ">" else (v < limit):
            unit = _unit_of(name)
            out.append(f"{r}: {name} {_show(v, unit)} {r.op} {_show(limit, unit)}")
    return out


def _unit_of(name: str) -> str:
    return "us" if name.endswith("_us") else "s" if name.endswith("time_s") else ""


def _show(v: float, unit: str) -> str:
    return f"{v:.3f}{unit}" if unit == "s" else f"{v:.0f}{unit}" if unit else f"{v:g}"


def regressions(a: dict[str, Any], b: dict[str, Any], rules: list[FailOn]) -> list[str]:
    """One line per rule B breaks against A. A rule on a missing or unknown metric is a
    UsageError (check_rules), never a regression."""
    check_rules(a, b, rules)
    ma, mb = metrics(a), metrics(b)
    out = [f"B: {line}" for line in bound_failures(b, [r for r in rules if r.op])]
    for r in rules:
        if r.op:
            continue
        va, vb = _lookup(ma, r.metric)[1], _lookup(mb, r.metric)[1]
        assert va is not None and vb is not None
        delta = (vb - va) * r.sign
        if r.percent:
            limit = abs(va) * r.amount / 100.0
            change = f"{(vb - va) / abs(va) * 100.0:+.1f}%" if va else "from 0"
        else:
            limit = r.amount
            change = f"{vb - va:+g}"
        if delta > limit:
            unit = UNITS.get(r.metric, "")
            out.append(f"{r}: {r.metric} {_with_unit(va, unit)} -> {_with_unit(vb, unit)} "
                       f"({change})")
    return out


def render(rows: list[Row], a_label: str = "A", b_label: str = "B") -> str:
    """A table FIELD / A / B / CHANGE; differing rows marked with `*` in the first column."""
    wf = max([len(f"{r.group}.{r.field}") for r in rows] + [5])
    wa = min(max([len(r.a) for r in rows] + [len(a_label)]), 48)
    wb = min(max([len(r.b) for r in rows if r.delta] + [len(b_label)]), 32)
    lines = [f"  {'FIELD':<{wf}}  {a_label:<{wa}}  {b_label:<{wb}}  CHANGE".rstrip()]
    for r in rows:
        mark = "*" if r.differs else " "
        b = f"{r.b:<{wb}}  {r.delta}" if r.delta else r.b
        lines.append(f"{mark} {r.group + '.' + r.field:<{wf}}  {r.a:<{wa}}  {b}".rstrip())
    n = sum(r.differs for r in rows)
    lines.append(f"{n} difference{'s' if n != 1 else ''}" if n else "no differences")
    return "\n".join(lines)


def to_json(rows: list[Row], regress: list[str]) -> dict[str, Any]:
    return {"rows": [{"group": r.group, "field": r.field, "a": r.a, "b": r.b,
                      "delta": r.delta, "differs": r.differs} for r in rows],
            "differences": sum(r.differs for r in rows), "regressions": regress}
