"""`ktstr show` for files that are not our runs: a failure dump (ours or the Rust ktstr's
`<test>.failure-dump.json`, schema "single" or "dual", placeholder or real) and a directory
of the Rust ktstr's artifacts (`*.ktstr.json` sidecars, one level of subdirectories deep as
ktstr's collect_sidecars reads them, and `*.failure-dump.json`).

Everything here is outside input: a field of the wrong type becomes a `warning:` line, an
unreadable file a `corrupt` row; nothing raises except for a path that holds nothing we
know how to show.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ktstr_vmm.errors import UsageError
from ktstr_vmm.introspect.scx import exit_kind_name
from ktstr_vmm.rundir.dumpstory import story
from ktstr_vmm.rundir.dumptext import map_rows
from ktstr_vmm.rundir.summary import BadFile, json_type, load_json_object

SIDECAR_SUFFIX = ".ktstr.json"
DUMP_SUFFIX = ".failure-dump.json"
MAX_TABLE_ROWS = 64
MAX_TABLE_COLS = 8


def render_file(path: Path, *, as_json: bool = False) -> str:
    try:
        obj = load_json_object(path)
    except BadFile as e:
        raise UsageError(f"cannot show {path}: {e}") from None
    if obj is None:
        raise UsageError(f"cannot show {path}: no such file")
    if as_json:
        return json.dumps(obj, indent=2)
    if path.name.endswith(SIDECAR_SUFFIX) or "test_name" in obj and "passed" in obj:
        return "\n".join(render_sidecar(obj, path))
    if path.name.endswith(DUMP_SUFFIX) or obj.get("schema") in ("single", "dual") \
            or "is_placeholder" in obj:
        return "\n".join(render_dump(obj, path))
    raise UsageError(f"cannot show {path}: not a run, a failure dump or a ktstr sidecar",
                     "give a run id, a run directory, a *.failure-dump.json or a *.ktstr.json")


# ---------------------------------------------------------------------- failure dumps


def render_dump(obj: dict[str, Any], path: Path | None = None) -> list[str]:
    lines = [f"failure dump  {path}"] if path else []
    schema = obj.get("schema", "single")
    lines.append(f"schema        {schema}")
    if schema == "dual":
        for key in ("early_max_age_jiffies", "early_threshold_jiffies"):
            if key in obj:
                lines.append(f"{key}  {obj[key]}")
        for part in ("early", "late"):
            sub = obj.get(part)
            if sub is None:
                lines.append(f"{part}: (none)")
            elif not isinstance(sub, dict):
                lines.append(f"warning: '{part}' is {json_type(sub)}, expected an object")
            else:
                lines += ["", f"{part}:"] + [("  " + ln).rstrip() for ln in _render_report(sub)]
        return lines
    return lines + _render_report(obj)


_LIST_FIELDS = ("maps", "vcpu_regs", "sdt_allocations", "prog_runtime_stats", "per_cpu_time",
                "task_enrichments", "event_counter_timeline", "rq_scx_states", "dsq_states",
                "vcpu_perf_at_freeze")
_TABLES = ("rq_scx_states", "dsq_states", "per_cpu_time")


def story_lines(obj: dict[str, Any]) -> list[str]:
    """The dump's story (dumpstory): the summary, then one row per CPU."""
    st = story(obj)
    out = st.summary_lines()
    if st.cpus:
        out.append("cpus:")
        out.append("  cpu  current               class  scx  nr  dsq  longest waiting")
        for c in st.cpus:
            lw = f"{c.longest.label} {c.longest.waited}" if c.longest else ""
            out.append(f"  {c.cpu:<4} {c.current[:21]:<21} {c.current_class[:5]:<6} "
                       f"{'' if c.nr_running is None else c.nr_running:<4} "
                       f"{'' if c.rq_nr_running is None else c.rq_nr_running:<3} "
                       f"{'' if c.local_dsq is None else c.local_dsq:<4} {lw}".rstrip())
    return [*out, ""] if out else []


def _render_report(obj: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    # ktstr puts a placeholder's reason in every `*_unavailable` field; ours adds `reason`.
    unavailable = {k: v for k, v in obj.items() if k.endswith("_unavailable") and isinstance(v, str)}
    reason = obj.get("reason")
    if reason is not None and not isinstance(reason, str):
        lines.append(f"warning: 'reason' is {json_type(reason)}, expected a string")
        reason = None
    placeholder = obj.get("is_placeholder", False)
    if not isinstance(placeholder, bool):
        lines.append(f"warning: 'is_placeholder' is {json_type(placeholder)}, expected a boolean")
    elif placeholder:
        lines.append("placeholder   yes: no BPF state was captured")
        reason = reason or next(iter(unavailable.values()), None)
        if len(set(unavailable.values())) == 1 and reason in unavailable.values():
            unavailable = {}
    if reason:
        lines.append(f"reason        {reason}")
    if placeholder is False:
        lines += story_lines(obj)
    for key in _LIST_FIELDS:
        if key not in obj:
            continue
        value = obj[key]
        if not isinstance(value, list):
            lines.append(f"warning: '{key}' is {json_type(value)}, expected an array")
            continue
        detail = ""
        if key == "maps":
            names = [m.get("name") for m in value if isinstance(m, dict) and isinstance(m.get("name"), str)]
            detail = f" ({', '.join(names[:8])}{', ...' if len(names) > 8 else ''})" if names else ""
        lines.append(f"{key:<21} {len(value)}{detail}")
    for key, value in unavailable.items():
        lines.append(f"{key:<21} {value}")
    state = obj.get("scx_sched_state")
    if isinstance(state, dict):
        kind = state.get("exit_kind")
        if isinstance(kind, int) and not isinstance(kind, bool):
            state = {**state, "exit_kind": f"{kind} ({exit_kind_name(kind)})"}
        lines.append("scx_sched_state       " + _scalars(state))
    elif state is not None:
        lines.append(f"warning: 'scx_sched_state' is {json_type(state)}, expected an object")
    known = {"schema", "is_placeholder", "reason", "scx_sched_state", *_LIST_FIELDS}
    for key, value in obj.items():
        if key not in known and not key.endswith("_unavailable") \
                and not isinstance(value, (dict, list)):
            lines.append(f"{key:<21} {value}")
    maps = obj.get("maps")
    if isinstance(maps, list) and any(isinstance(m, dict) for m in maps):
        lines += ["", "maps:"] + map_lines([m for m in maps if isinstance(m, dict)])
    for key in _TABLES:
        rows = obj.get(key)
        if isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows):
            if key == "dsq_states":  # ids are u64 with the top bits as flags: read in hex
                rows = [{**r, "id": f"{r['id']:#x}"} if isinstance(r.get("id"), int) else r
                        for r in rows]
            lines += ["", f"{key}:"] + table(rows)
    return lines


def map_lines(maps: list[dict[str, Any]]) -> list[str]:
    """One aligned line per BPF map (dumptext.map_rows)."""
    rows = map_rows(maps)
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return [("  " + "  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True))
             + "  " + r[3]).rstrip() for r in rows]


def _scalars(d: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in d.items() if not isinstance(v, (dict, list)))


def table(rows: list[dict[str, Any]]) -> list[str]:
    """Rows of dicts as an aligned table of their scalar columns (first MAX_TABLE_COLS)."""
    cols: list[str] = []
    for r in rows:
        for k, v in r.items():
            if k not in cols and not isinstance(v, (dict, list)):
                cols.append(k)
    cols = cols[:MAX_TABLE_COLS]
    shown = rows[:MAX_TABLE_ROWS]
    cells = [[_cell(r.get(c)) for c in cols] for r in shown]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    out = ["  " + "  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip()]
    out += ["  " + "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
            for row in cells]
    if len(rows) > len(shown):
        out.append(f"  ... {len(rows) - len(shown)} more")
    return out


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


# ---------------------------------------------------------------------- sidecars


def sidecar_verdict(obj: dict[str, Any]) -> str:
    """ktstr's 4-state encoding: skipped, inconclusive, passed bits; all false = fail."""
    for key in ("passed", "skipped", "inconclusive"):
        if not isinstance(obj.get(key), bool):
            raise BadFile(f"'{key}' is {json_type(obj.get(key)) if key in obj else 'missing'}, expected a boolean")
    if obj["skipped"]:
        return "skip"
    if obj["inconclusive"]:
        return "inconclusive"
    return "pass" if obj["passed"] else "fail"


def stats_line(stats: Any) -> str:
    """The seed's stats line: N workers, N cpus, N migrations, worst_spread=X.X%, worst_gap=Nms."""
    if not isinstance(stats, dict):
        return ""
    try:
        return (f"{int(stats['total_workers'])} workers, {int(stats['total_cpus'])} cpus, "
                f"{int(stats['total_migrations'])} migrations, "
                f"worst_spread={float(stats['worst_spread']):.1f}%, "
                f"worst_gap={int(stats['worst_gap_ms'])}ms")
    except (KeyError, TypeError, ValueError):
        return ""


def render_sidecar(obj: dict[str, Any], path: Path | None = None) -> list[str]:
    lines = [f"ktstr sidecar  {path}"] if path else []
    try:
        verdict = sidecar_verdict(obj)
    except BadFile as e:
        verdict = f"corrupt: {e}"
    lines.append(f"verdict        {verdict}")
    for key in ("test_name", "scheduler", "topology", "work_type", "kernel_version",
                "kernel_commit", "project_commit", "timestamp", "run_id", "vcpus", "cpu_budget",
                "run_source"):
        if obj.get(key) is not None:
            lines.append(f"{key:<15}{obj[key]}")
    stats = stats_line(obj.get("stats"))
    if stats:
        lines.append(f"{'stats':<15}{stats}")
    cgroups = obj.get("stats", {}).get("cgroups") if isinstance(obj.get("stats"), dict) else None
    if isinstance(cgroups, list) and cgroups and all(isinstance(c, dict) for c in cgroups):
        lines += ["", "cgroups:"] + table(cgroups)
    return lines


def _sidecar_files(root: Path) -> list[Path]:
    """`*.ktstr.json` in root and one level of (non-dot) subdirectories."""
    found = [p for p in root.glob(f"*{SIDECAR_SUFFIX}") if p.is_file()]
    for sub in sorted(root.iterdir()):
        if sub.is_dir() and not sub.name.startswith("."):
            found += [p for p in sub.glob(f"*{SIDECAR_SUFFIX}") if p.is_file()]
    return sorted(found)


def render_dir(root: Path, *, as_json: bool = False) -> str:
    sidecars = _sidecar_files(root)
    dumps = sorted(p for p in root.rglob(f"*{DUMP_SUFFIX}") if p.is_file())
    if not sidecars and not dumps:
        raise UsageError(f"nothing to show in {root}",
                         "expected a run directory or the Rust ktstr's *.ktstr.json / "
                         "*.failure-dump.json files")
    rows: list[dict[str, Any]] = []
    for p in sidecars:
        rel = str(p.relative_to(root))
        try:
            obj = load_json_object(p)
            assert obj is not None
            verdict = sidecar_verdict(obj)
            for key in ("test_name", "scheduler", "topology"):
                if not isinstance(obj.get(key), str):
                    raise BadFile(f"'{key}' is {json_type(obj.get(key))}, expected a string")
            rows.append({"verdict": verdict, "test": obj["test_name"], "scheduler": obj["scheduler"],
                         "topology": obj["topology"], "stats": stats_line(obj.get("stats")),
                         "file": rel})
        except (BadFile, AssertionError) as e:
            rows.append({"verdict": "corrupt", "test": "-", "scheduler": "-", "topology": "-",
                         "stats": str(e), "file": rel})
    dump_rows: list[dict[str, Any]] = []
    for p in dumps:
        rel = str(p.relative_to(root))
        try:
            obj = load_json_object(p) or {}
            placeholder = obj.get("is_placeholder") is True
            reason = obj.get("reason") if isinstance(obj.get("reason"), str) else next(
                (v for k, v in obj.items() if k.endswith("_unavailable") and isinstance(v, str)), "")
            dump_rows.append({"file": rel, "schema": str(obj.get("schema", "single")),
                              "placeholder": placeholder, "reason": reason})
        except BadFile as e:
            dump_rows.append({"file": rel, "schema": "corrupt", "placeholder": False,
                              "reason": str(e)})
    if as_json:
        return json.dumps({"path": str(root), "sidecars": rows, "failure_dumps": dump_rows}, indent=2)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
    summary = ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
    lines = [f"ktstr artifacts  {root}",
             f"{len(rows)} test result{'s' if len(rows) != 1 else ''}"
             + (f" ({summary})" if summary else "")
             + f", {len(dump_rows)} failure dump{'s' if len(dump_rows) != 1 else ''}"]
    if rows:
        lines += [""] + [ln[2:] for ln in table([{k.upper(): v for k, v in r.items()} for r in rows])]
    if dump_rows:
        lines += ["", "failure dumps:"]
        for d in dump_rows:
            kind = "placeholder" if d["placeholder"] else d["schema"]
            lines.append(f"  {d['file']}  {kind}" + (f": {d['reason']}" if d["reason"] else ""))
    return "\n".join(lines)
