"""Temporal assertions over a run's periodic captures and monitor samples.

ktstr's `src/assert/temporal.rs` patterns, declared on the command line
(`ktstr run --assert 'rate_within(bpf.vtime_now, 0, 1e6)'`) instead of in Rust test code,
with the same failure messages (each names the sample tag, its time and the values):

    nondecreasing(F)                    v[i] <= v[i+1]
    strictly_increasing(F)              v[i] <  v[i+1]
    rate_within(F, LO, HI)              every (dv / dms) between consecutive samples in [LO, HI]
    steady_within(F, WARMUP, TOL)       after WARMUP, every sample within mean*(1 +- TOL)
    converges_to(F, TARGET, TOL, BY)    three consecutive samples in TARGET +- TOL by BY
    ratio_within(F, G, LO, HI)          every F/G in [LO, HI]
    at_least(F, X) / at_most(F, X) / between(F, LO, HI)   every sample (ktstr's `.each`)
    always(P[, AFTER])                  P holds at every sample (from AFTER on); P is a
                                        boolean field or `F OP NUMBER`
    eventually(P[, BY])                 P holds at some sample (at or before BY)

Fields: `bpf.NAME[.KEY...]` - a scheduler global (its `.bss`/`.data`/`.rodata` maps) in each
periodic capture; `scx.nr_running`, `scx.nr_queued`, `scx.exit_kind`, `scx.aborting`,
`scx.bypass_depth` - the frozen run queues, DSQs and scx_sched of each capture;
`monitor.nr_running`, `monitor.scx_nr_running`, `monitor.local_dsq_nr` (summed over CPUs),
`monitor.enabled`, `monitor.events.NAME` - each monitor sample. Capture tags are
`periodic_NNN`, monitor sample tags `sample_NNNN`; times are ms since the workload started
(samples before it are not judged). WARMUP, BY and AFTER are durations (`500ms`, `2s`) or ms.

Everything here is pure: `parse_assertion` validates one declaration (UsageError with one
line naming what is wrong), `evaluate_assertions` judges them over the series.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from ..errors import UsageError
from . import types as ev

SOURCES = ("bpf", "scx", "monitor")
SCX_FIELDS = ("nr_running", "nr_queued", "exit_kind", "aborting", "bypass_depth")
MONITOR_FIELDS = ("nr_running", "scx_nr_running", "local_dsq_nr", "enabled")
OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b, "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b, "<": lambda a, b: a < b, ">": lambda a, b: a > b,
}
# kind -> argument shapes: F field, N number, D duration (ms), P predicate
KINDS: dict[str, tuple[str, ...]] = {
    "nondecreasing": ("F",), "strictly_increasing": ("F",),
    "rate_within": ("F", "N", "N"), "steady_within": ("F", "D", "N"),
    "converges_to": ("F", "N", "N", "D"), "ratio_within": ("F", "F", "N", "N"),
    "at_least": ("F", "N"), "at_most": ("F", "N"), "between": ("F", "N", "N"),
    "always": ("P", "D?"), "eventually": ("P", "D?"),
}
USAGE: dict[str, str] = {
    "nondecreasing": "FIELD", "strictly_increasing": "FIELD", "rate_within": "FIELD, LO, HI",
    "steady_within": "FIELD, WARMUP, TOLERANCE", "converges_to": "FIELD, TARGET, TOLERANCE, BY",
    "ratio_within": "FIELD, OTHER_FIELD, LO, HI", "at_least": "FIELD, MIN",
    "at_most": "FIELD, MAX", "between": "FIELD, LO, HI",
    "always": "FIELD [OP NUMBER][, AFTER]", "eventually": "FIELD [OP NUMBER][, BY]",
}
_FIELD_RE = re.compile(r"^(bpf|scx|monitor)\.[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$")
_CALL_RE = re.compile(r"^\s*([a-z_]+)\s*\((.*)\)\s*$", re.S)
_PRED_RE = re.compile(r"^\s*(\S+?)\s*(<=|>=|==|!=|<|>)\s*(\S+)\s*$")
_DUR_RE = re.compile(r"^(\d+(?:\.\d+)?)(ms|s)?$")

Number = int | float


# ----------------------------------------------------------------------------- declarations

@dataclass(frozen=True)
class Assertion:
    """One declared assertion. `fields` are the series it reads (two for ratio_within),
    `args` its numbers (durations in ms), `op`/`rhs` the predicate of always/eventually
    (`op` None = the field itself is the boolean)."""

    text: str
    kind: str
    fields: tuple[str, ...]
    args: tuple[Number, ...] = ()
    op: str | None = None
    rhs: Number | None = None


def _number(s: str, what: str, text: str) -> Number:
    try:
        v: Number = int(s) if re.fullmatch(r"[+-]?\d+", s) else float(s)
    except ValueError:
        raise UsageError(f"--assert {text!r}: {what} {s!r} is not a number",
                         "write numbers as 3, 0.5 or 1e6") from None
    if isinstance(v, float) and not math.isfinite(v):
        raise UsageError(f"--assert {text!r}: {what} {s!r} is not a finite number")
    return v


def _duration_ms(s: str, what: str, text: str) -> int:
    m = _DUR_RE.match(s)
    if not m:
        raise UsageError(f"--assert {text!r}: {what} {s!r} is not a duration",
                         "write durations as 500ms, 2s or a number of ms")
    v = float(m.group(1)) * (1000 if m.group(2) == "s" else 1)
    return int(round(v))


def _field(s: str, text: str) -> str:
    if not _FIELD_RE.match(s):
        raise UsageError(f"--assert {text!r}: {s!r} is not a field",
                         "fields are bpf.NAME, scx.NAME or monitor.NAME (see ktstr run --help)")
    src, name = s.split(".", 1)
    if src == "scx" and name not in SCX_FIELDS:
        raise UsageError(f"--assert {text!r}: unknown field {s!r}",
                         f"scx fields: {', '.join('scx.' + f for f in SCX_FIELDS)}")
    if src == "monitor" and name not in MONITOR_FIELDS and not re.fullmatch(
            r"events\.[A-Za-z0-9_]+", name):
        raise UsageError(f"--assert {text!r}: unknown field {s!r}",
                         "monitor fields: " + ", ".join(
                             ["monitor." + f for f in MONITOR_FIELDS] + ["monitor.events.NAME"]))
    return s


def _split_args(body: str) -> list[str]:
    parts = [p.strip() for p in body.split(",")]
    return [] if parts == [""] else parts


def parse_assertion(text: str) -> Assertion:
    """Validate one `--assert` declaration; UsageError (one line) when it is malformed."""
    m = _CALL_RE.match(text)
    if not m:
        raise UsageError(f"--assert {text!r}: not KIND(ARGS)",
                         "e.g. --assert 'nondecreasing(bpf.nr_dispatched)'")
    kind, args = m.group(1), _split_args(m.group(2))
    shape = KINDS.get(kind)
    if shape is None:
        raise UsageError(f"--assert {text!r}: unknown kind {kind!r}",
                         f"kinds: {', '.join(KINDS)}")
    need = sum(1 for s in shape if not s.endswith("?"))
    if not need <= len(args) <= len(shape):
        raise UsageError(f"--assert {text!r}: {kind} takes {kind}({USAGE[kind]}), got "
                         f"{len(args)} argument{'s' if len(args) != 1 else ''}")
    fields: list[str] = []
    nums: list[Number] = []
    op = rhs = None
    for a, s in zip(args, shape, strict=False):
        s = s.rstrip("?")
        if s == "F":
            fields.append(_field(a, text))
        elif s == "N":
            nums.append(_number(a, "argument", text))
        elif s == "D":
            nums.append(_duration_ms(a, "duration", text))
        else:  # P
            pm = _PRED_RE.match(a)
            if pm:
                fields.append(_field(pm.group(1), text))
                op, rhs = pm.group(2), _number(pm.group(3), "comparison value", text)
            else:
                fields.append(_field(a, text))
    if kind in ("rate_within", "between", "ratio_within") and nums[0] > nums[1]:
        raise UsageError(f"--assert {text!r}: lo={fmt(nums[0])} > hi={fmt(nums[1])}")
    if kind in ("steady_within", "converges_to") and nums[-1 if kind == "steady_within" else 1] < 0:
        raise UsageError(f"--assert {text!r}: the tolerance is negative")
    return Assertion(text=text.strip(), kind=kind, fields=tuple(fields), args=tuple(nums),
                     op=op, rhs=rhs)


def parse_assertions(texts: Sequence[str]) -> tuple[Assertion, ...]:
    return tuple(parse_assertion(t) for t in texts)


def sources(assertions: Sequence[Assertion]) -> set[str]:
    """Which series the assertions read: {"bpf", "scx", "monitor"}."""
    return {f.split(".", 1)[0] for a in assertions for f in a.fields}


# ----------------------------------------------------------------------------- series

@dataclass(frozen=True)
class Missing:
    """A sample the field could not be read from (ktstr's SnapshotError)."""

    reason: str

    def __str__(self) -> str:
        return self.reason


Value = Number | bool | Missing


@dataclass(frozen=True)
class Series:
    """One field over the samples: parallel tags, ms since workload start, values."""

    label: str
    tags: tuple[str, ...]
    elapsed_ms: tuple[int, ...]
    values: tuple[Value, ...]


@dataclass(frozen=True)
class Capture:
    """One periodic capture as judged: its tag, ms since the workload started, and the
    capture's JSON (a FailureDump in ktstr's shape)."""

    tag: str
    elapsed_ms: int
    dump: Mapping[str, Any]


@dataclass(frozen=True)
class MonitorSample:
    tag: str
    elapsed_ms: int
    sample: Mapping[str, Any]


def _globals(dump: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for m in dump.get("maps") or ():
        if not isinstance(m, Mapping):
            continue
        name = str(m.get("name", ""))
        if name.rsplit(".", 1)[-1] in ("bss", "data", "rodata") and isinstance(m.get("value"), Mapping):
            for k, v in m["value"].items():
                out.setdefault(k, v)
    return out


def _scalar(v: Any, label: str) -> Value:
    if isinstance(v, bool | int) or (isinstance(v, float) and math.isfinite(v)):
        return v
    if isinstance(v, float):
        return v   # NaN / inf: the patterns report it
    kind = "a string" if isinstance(v, str) else "a structure" if isinstance(v, dict | list) \
        else "null" if v is None else type(v).__name__
    return Missing(f"{label} is {kind}, not a number")


def _lookup_path(root: Any, path: list[str], label: str, what: str) -> Value:
    """The scalar at `path` (dict keys, list indices) under `root`, or Missing naming the
    first step that is not there."""
    cur = root
    for i, key in enumerate(path):
        if isinstance(cur, Mapping) and key in cur:
            cur = cur[key]
        elif isinstance(cur, list) and key.isdigit() and int(key) < len(cur):
            cur = cur[int(key)]
        else:
            where = ".".join(path[:i]) or what
            have = ", ".join(sorted(map(str, cur)))[:200] if isinstance(cur, Mapping) else ""
            return Missing(f"{label}: no {key!r} in {where}" + (f" (have: {have})" if have else ""))
    return _scalar(cur, label)


def project_capture(field_: str, dump: Mapping[str, Any]) -> Value:
    src, name = field_.split(".", 1)
    if dump.get("is_placeholder"):
        return Missing(f"{field_}: placeholder capture ({dump.get('scx_walker_unavailable')})")
    if src == "bpf":
        return _lookup_path(_globals(dump), name.split("."), field_, "the scheduler's globals")
    rqs = dump.get("rq_scx_states") or ()
    sched = dump.get("scx_sched_state") or {}
    if name == "nr_running":
        return sum(int(r.get("nr_running", 0)) for r in rqs) if rqs else \
            Missing(f"{field_}: no run queue in the capture")
    if name == "nr_queued":
        return sum(int(d.get("nr", 0)) for d in dump.get("dsq_states") or ())
    if not sched:
        return Missing(f"{field_}: no scheduler attached at the capture")
    if name == "aborting":
        return bool(sched.get("aborting", False))
    return int(sched.get(name, 0))


def project_sample(field_: str, sample: Mapping[str, Any]) -> Value:
    name = field_.split(".", 1)[1]
    if name == "enabled":
        return (sample.get("scx") or {}).get("state") == "enabled"
    if name.startswith("events."):
        ev = (sample.get("scx") or {}).get("events") or {}
        key = name.split(".", 1)[1]
        if key not in ev:
            return Missing(f"{field_}: no event {key!r} in the sample")
        return _scalar(ev[key], field_)
    cpus = [c for c in sample.get("cpus") or () if isinstance(c, Mapping) and name in c]
    if not cpus:
        return Missing(f"{field_}: no CPU could be read")
    return sum(int(c[name]) for c in cpus)


def series(field_: str, captures: Sequence[Capture], samples: Sequence[MonitorSample]) -> Series:
    if field_.startswith("monitor."):
        rows = [(s.tag, s.elapsed_ms, project_sample(field_, s.sample)) for s in samples]
    else:
        rows = [(c.tag, c.elapsed_ms, project_capture(field_, c.dump)) for c in captures]
    return Series(field_, tuple(r[0] for r in rows), tuple(r[1] for r in rows),
                  tuple(r[2] for r in rows))


# ----------------------------------------------------------------------------- formatting

def fmt(v: Any) -> str:
    """A number as Rust's `{}` Display prints it: integers without `.0`, floats in their
    shortest round-trip form and never in exponent notation; bools as true/false."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        if v.is_integer():
            return str(int(v))
        r = repr(v)
        if "e" in r or "E" in r:
            r = format(Decimal(r), "f")
        return r
    return str(v)


# ----------------------------------------------------------------------------- judging

@dataclass
class Findings:
    """What the assertions found: (outcome, message) per violation, notes, and per
    assertion its verdict for result.json."""

    details: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    verdicts: list[dict[str, Any]] = field(default_factory=list)

    def fail(self, msg: str) -> None:
        self.details.append(("fail", msg))

    def inconclusive(self, msg: str) -> None:
        self.details.append(("inconclusive", msg))


def _num(v: Value) -> float | None:
    return None if isinstance(v, Missing) else float(v)


def _monotonic(f: Findings, s: Series, strict: bool) -> None:
    pat = "strictly_increasing" if strict else "nondecreasing"
    n = len(s.values)
    if n < 2:
        f.notes.append(f"{s.label} ({pat}): only {n} samples — pattern vacuously holds; "
                       "ensure at least 2 captures (--capture-every) for meaningful coverage")
        return
    skipped = []
    for i in range(n - 1):
        left, right = s.values[i], s.values[i + 1]
        if isinstance(left, Missing):
            skipped.append(f"{s.tags[i]}(+{s.elapsed_ms[i]}ms): {left}")
            continue
        if isinstance(right, Missing):
            continue
        ok = right > left if strict else right >= left
        if not ok:
            f.fail(f"{s.label} ({pat}): regression at sample {s.tags[i + 1]} "
                   f"(+{s.elapsed_ms[i + 1]}ms): value {fmt(right)} after prior value "
                   f"{fmt(left)} at sample {s.tags[i]} (+{s.elapsed_ms[i]}ms)")
    if isinstance(s.values[-1], Missing):
        skipped.append(f"{s.tags[-1]}(+{s.elapsed_ms[-1]}ms): {s.values[-1]}")
    if skipped:
        f.notes.append(f"{s.label} ({pat}): skipped {len(skipped)} sample(s) with projection "
                       f"errors: {', '.join(skipped)}")


def _rate_within(f: Findings, s: Series, lo: Number, hi: Number) -> None:
    n = len(s.values)
    if n < 2:
        f.notes.append(f"{s.label} (rate_within): only {n} samples — pattern vacuously holds")
        return
    gaps = []
    for i in range(n - 1):
        a, b = s.values[i], s.values[i + 1]
        if isinstance(a, Missing) or isinstance(b, Missing):
            ends = [f"{s.tags[j]}(+{s.elapsed_ms[j]}ms): {v}" for j, v in ((i, a), (i + 1, b))
                    if isinstance(v, Missing)]
            gaps.append(" | ".join(ends))
            continue
        dt = max(0, s.elapsed_ms[i + 1] - s.elapsed_ms[i])
        if dt <= 0:
            f.inconclusive(
                f"{s.label} (rate_within): zero-time delta between sample {s.tags[i]} "
                f"(+{s.elapsed_ms[i]}ms) and {s.tags[i + 1]} (+{s.elapsed_ms[i + 1]}ms) — "
                "denominator is INSTRUMENT-derived; rate is neither pass nor fail")
            continue
        rate = (float(b) - float(a)) / dt
        head = (f"{s.label} (rate_within [{fmt(lo)}, {fmt(hi)}]): ")
        pair = (f"samples {s.tags[i]} (+{s.elapsed_ms[i]}ms, value {fmt(a)}) and "
                f"{s.tags[i + 1]} (+{s.elapsed_ms[i + 1]}ms, value {fmt(b)})")
        if not math.isfinite(rate):
            f.fail(f"{head}non-finite rate between {pair} — endpoint is NaN or produced inf "
                   "in the delta")
        elif rate < lo or rate > hi:
            f.fail(f"{head}rate {rate:.4f}/ms between {pair}")
    if gaps:
        f.notes.append(f"{s.label} (rate_within): {len(gaps)} consecutive-pair gap(s) skipped "
                       "due to projection errors on at least one endpoint: " + ", ".join(gaps))


def _steady_within(f: Findings, s: Series, warmup_ms: int, tol: Number) -> None:
    active, skipped, any_post = [], [], False
    for i, v in enumerate(s.values):
        if s.elapsed_ms[i] < warmup_ms:
            continue
        any_post = True
        x = _num(v)
        if x is not None and math.isfinite(x):
            active.append((i, x))
        elif x is not None:
            skipped.append(f"{s.tags[i]}(+{s.elapsed_ms[i]}ms): non-finite value {fmt(v)}")
        else:
            skipped.append(f"{s.tags[i]}(+{s.elapsed_ms[i]}ms): {v}")
    if skipped:
        f.notes.append(f"{s.label} (steady_within): skipped {len(skipped)} post-warmup "
                       f"sample(s) with projection errors: {', '.join(skipped)}")
    if not active:
        if not any_post:
            f.notes.append(f"{s.label} (steady_within): no samples beyond warmup_ms={warmup_ms}"
                           " — pattern vacuously holds")
        return
    mean = sum(x for _, x in active) / len(active)
    lo, hi = sorted((mean * (1 - tol), mean * (1 + tol)))
    for i, x in active:
        if x < lo or x > hi:
            f.fail(f"{s.label} (steady_within mean {mean:.4f} ±{tol * 100:.1f}%): sample "
                   f"{s.tags[i]} (+{s.elapsed_ms[i]}ms): value {fmt(s.values[i])} outside "
                   f"[{lo:.4f}, {hi:.4f}]")


def _converges_to(f: Findings, s: Series, target: Number, tol: Number, deadline: int) -> None:
    head = f"{s.label} (converges_to {fmt(target)} ±{fmt(tol)}, deadline_ms={deadline})"
    in_window = [(i, v) for i, v in enumerate(s.values) if s.elapsed_ms[i] <= deadline]
    errors = [f"{s.tags[i]}(+{s.elapsed_ms[i]}ms): {v}" for i, v in in_window
              if isinstance(v, Missing)]
    have = len(in_window) - len(errors)
    if have < 3:
        suffix = f"; errored sample(s): {', '.join(errors)}" if errors else ""
        f.notes.append(f"{head}: insufficient samples for converges_to (need ≥3, have {have})"
                       f"{suffix}")
        return
    lo, hi = target - tol, target + tol
    run, interrupted = 0, []
    for i, v in enumerate(s.values):
        if s.elapsed_ms[i] > deadline:
            run = 0
            continue
        if isinstance(v, Missing):
            if run:
                interrupted.append(f"{s.tags[i]}(+{s.elapsed_ms[i]}ms): {v}")
            run = 0
            continue
        run = run + 1 if lo <= v <= hi else 0
        if run >= 3:
            return
    suffix = (f"; in-progress runs interrupted by errored sample(s): {', '.join(interrupted)}"
              if interrupted else "")
    f.fail(f"{head}: no 3-consecutive-in-band witness before deadline "
           f"({len(s.values)} samples evaluated){suffix}")


def _ratio_within(f: Findings, s: Series, o: Series, lo: Number, hi: Number) -> None:
    if len(s.values) != len(o.values):
        f.fail(f"{s.label} (ratio_within {o.label}): caller error: length mismatch "
               f"(this {len(s.values)}, other {len(o.values)})")
        return
    gaps = []
    for i, (a, b) in enumerate(zip(s.values, o.values, strict=True)):
        if isinstance(a, Missing) or isinstance(b, Missing):
            ends = [f"{side} {ser.tags[i]}(+{ser.elapsed_ms[i]}ms): {v}"
                    for side, ser, v in (("lhs", s, a), ("rhs", o, b)) if isinstance(v, Missing)]
            gaps.append(" | ".join(ends))
            continue
        if float(b) == 0.0:
            f.inconclusive(f"{s.label} (ratio_within): rhs == 0 at sample {s.tags[i]} "
                           f"(+{s.elapsed_ms[i]}ms) — denominator is INSTRUMENT-derived; "
                           "ratio is neither pass nor fail")
            continue
        r = float(a) / float(b)
        head = f"{s.label} (ratio_within {o.label} [{fmt(lo)}, {fmt(hi)}]): "
        if not math.isfinite(r):
            f.fail(f"{head}non-finite ratio at sample {s.tags[i]} (+{s.elapsed_ms[i]}ms) — "
                   f"lhs={fmt(a)} rhs={fmt(b)}")
        elif r < lo or r > hi:
            f.fail(f"{head}ratio {r:.4f} at sample {s.tags[i]} (+{s.elapsed_ms[i]}ms) — "
                   f"lhs={fmt(a)} rhs={fmt(b)}")
    if gaps:
        f.notes.append(f"{s.label} (ratio_within): {len(gaps)} pair(s) skipped due to "
                       f"projection errors on lhs or rhs: {', '.join(gaps)}")


def _each(f: Findings, s: Series, kind: str, args: tuple[Number, ...]) -> None:
    if kind == "between":
        lo, hi = args
        head = f"{s.label} (each.between [{fmt(lo)}, {fmt(hi)}])"

        def bad(x: float) -> bool:
            return x < lo or x > hi
    else:
        (bound,) = args
        head = f"{s.label} (each.{kind} {fmt(bound)})"

        def bad(x: float) -> bool:
            return x < bound if kind == "at_least" else x > bound
    for i, v in enumerate(s.values):
        where = f"sample {s.tags[i]} (+{s.elapsed_ms[i]}ms)"
        if isinstance(v, Missing):
            f.fail(f"{head}: {where}: projection error: {v}")
        elif isinstance(v, float) and math.isnan(v):
            f.fail(f"{head}: {where}: value {fmt(v)} is incomparable (NaN)")
        elif bad(float(v)):
            f.fail(f"{head}: {where}: value {fmt(v)}")


def _pred(a: Assertion) -> Callable[[float], bool]:
    if a.op is None:
        return bool
    rhs = float(a.rhs if a.rhs is not None else 0)
    cmp = OPS[a.op]
    return lambda x: cmp(x, rhs)


def _always(f: Findings, s: Series, a: Assertion) -> None:
    after = int(a.args[0]) if a.args else 0
    test = _pred(a)
    if a.op is None:
        head = f"{s.label} (always_true)"
    else:
        head = f"{s.label} (always {a.op} {fmt(a.rhs)}" + (f", after {after}ms)" if after else ")")
    for i, v in enumerate(s.values):
        if s.elapsed_ms[i] < after:
            continue
        where = f"sample {s.tags[i]} (+{s.elapsed_ms[i]}ms)"
        if isinstance(v, Missing):
            f.fail(f"{head}: {where}: projection error: {v}")
        elif not test(float(v)):
            f.fail(f"{head}: {where}: value {fmt(v)}")


def _eventually(f: Findings, s: Series, a: Assertion) -> None:
    by = int(a.args[0]) if a.args else None
    test = _pred(a)
    cond = "true" if a.op is None else f"{a.op} {fmt(a.rhs)}"
    head = f"{s.label} (eventually {cond}" + (f", by {by}ms)" if by is not None else ")")
    window = [(i, v) for i, v in enumerate(s.values) if by is None or s.elapsed_ms[i] <= by]
    for _i, v in window:
        if not isinstance(v, Missing) and test(float(v)):
            return
    seen = [(i, v) for i, v in window if not isinstance(v, Missing)]
    if not window:
        f.inconclusive(f"{head}: no sample in the window")
    elif not seen:
        f.fail(f"{head}: not reached in {len(window)} samples; every one failed to project: "
               f"{window[-1][1]}")
    else:
        i, v = seen[-1]
        f.fail(f"{head}: not reached in {len(window)} samples; last value {fmt(v)} at "
               f"sample {s.tags[i]} (+{s.elapsed_ms[i]}ms)")


def evaluate_assertions(assertions: Sequence[Assertion], captures: Sequence[Capture],
                        samples: Sequence[MonitorSample]) -> Findings:
    """Judge every assertion over the captures / monitor samples. Pure."""
    out = Findings()
    cache: dict[str, Series] = {}

    def get(name: str) -> Series:
        if name not in cache:
            cache[name] = series(name, captures, samples)
        return cache[name]

    for a in assertions:
        before = len(out.details)
        s = get(a.fields[0])
        k = a.kind
        if k in ("nondecreasing", "strictly_increasing"):
            _monotonic(out, s, k == "strictly_increasing")
        elif k == "rate_within":
            _rate_within(out, s, *a.args)
        elif k == "steady_within":
            _steady_within(out, s, int(a.args[0]), a.args[1])
        elif k == "converges_to":
            _converges_to(out, s, a.args[0], a.args[1], int(a.args[2]))
        elif k == "ratio_within":
            _ratio_within(out, s, get(a.fields[1]), *a.args)
        elif k in ("at_least", "at_most", "between"):
            _each(out, s, k, a.args)
        elif k == "always":
            _always(out, s, a)
        elif k == "eventually":
            _eventually(out, s, a)
        mine = out.details[before:]
        verdict = ("fail" if any(o == "fail" for o, _ in mine)
                   else "inconclusive" if mine else "pass")
        out.verdicts.append({"assertion": a.text, "verdict": verdict, "samples": len(s.values),
                             "details": [m for _, m in mine]})
    return out


def merge_findings(tr: ev.TestResult, f: Findings) -> ev.TestResult:
    """The guest's result with the findings folded in: violations become `temporal`
    details (a failed one fails a passing run, an inconclusive one makes it
    inconclusive), notes become info notes."""
    details = tr.details + tuple(ev.Detail(m, kind="temporal", outcome=o)  # type: ignore[arg-type]
                                 for o, m in f.details)
    outcome = tr.outcome
    if any(o == "fail" for o, _ in f.details) and outcome in ("pass", "inconclusive"):
        outcome = "fail"
    elif f.details and outcome == "pass":
        outcome = "inconclusive"
    return replace(tr, outcome=outcome, details=details, info_notes=tr.info_notes + tuple(f.notes))
