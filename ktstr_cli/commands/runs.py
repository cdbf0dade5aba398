"""`ktstr runs` (list, filter, reindex, delete) and `ktstr show` (one run, one section,
a failure-dump file, or a directory of the Rust ktstr's artifacts)."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from ktstr_vmm.errors import StoreError, UsageError
from ktstr_vmm.rundir.bpf_globals import merge, read_lines
from ktstr_vmm.rundir.dumptext import short
from ktstr_vmm.rundir.layout import BPF_GLOBALS, RESULT, SHELL_LOG, SPEC, STATUS
from ktstr_vmm.rundir.shell_log import NO_SHELL, read_text, shell_log_path
from ktstr_vmm.rundir.summary import (
    ALL_VERDICTS,
    CORRUPT,
    BadFile,
    RunSummary,
    load_json_object,
    summarize,
)
from ktstr_vmm.store.store import Store

from . import add_store_option, open_store, showartifacts


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("runs", help="list the runs in the store, newest first",
                       description="List runs newest first: time, id, name, scheduler, "
                       "topology, verdict, duration and the first line of the message.")
    p.add_argument("--verdict", metavar="V",
                   help=f"only runs with this verdict ({', '.join(ALL_VERDICTS)}; "
                   "'running' matches every live phase)")
    p.add_argument("--scheduler", metavar="S", help="only runs of this scheduler")
    p.add_argument("--topology", metavar="T", help="only runs on this topology (preset or notation)")
    p.add_argument("--since", metavar="DATE",
                   help="only runs started at or after DATE (2026-11-25, '2026-11-25 17:00', 3h, 2d)")
    p.add_argument("--grep", metavar="TEXT", help="only runs whose id, name, scheduler, "
                   "topology or first message line contains TEXT")
    p.add_argument("--gauntlet", metavar="ID", help="only the runs of this gauntlet (ktstr gauntlet)")
    p.add_argument("--limit", metavar="N", type=_positive_int, help="at most N runs")
    p.add_argument("--json", action="store_true", help="print a JSON array of run summaries")
    p.add_argument("--reindex", action="store_true", help="rebuild index.sqlite from the run directories")
    p.add_argument("--delete", metavar="RUN", help="delete a finished run (id, prefix or substring)")
    add_store_option(p)
    p.set_defaults(func=cmd_runs)

    s = sub.add_parser("show", help="show a run, one section of it, a failure dump, or ktstr artifacts",
                       description="Show a run's verdict and failure message (or one section of "
                       "it), a *.failure-dump.json file, or a directory of the Rust ktstr's "
                       "artifacts (*.ktstr.json sidecars, *.failure-dump.json).")
    s.add_argument("target", metavar="RUN|PATH", help="run id, unique prefix or substring; or a path")
    s.add_argument("--section", metavar="NAME", help="print only this section of the failure "
                   "message; `shell`: what the run's guest shells typed and printed (shell.log)")
    s.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_store_option(s)
    s.set_defaults(func=cmd_show)


# ---------------------------------------------------------------------- runs


def cmd_runs(args: argparse.Namespace) -> int:
    store = open_store(args)
    if args.reindex:
        t0 = time.monotonic()
        n = store.reindex()
        print(f"indexed {n} run{'s' if n != 1 else ''} in {store.root} ({time.monotonic() - t0:.2f}s)")
        return 0
    if args.delete:
        run_id = store.get(args.delete).run_id
        store.delete_run(run_id)
        print(f"deleted {run_id}")
        return 0
    since = parse_since(args.since) if args.since else None
    runs = store.list_runs(verdict=args.verdict, scheduler=args.scheduler, topology=args.topology,
                           since=since, text=args.grep, limit=args.limit,
                           gauntlet=args.gauntlet)
    if store.index.degraded:
        print(f"ktstr: note: {store.index.degraded}", file=sys.stderr)
    if args.json:
        print(json.dumps([r.to_json() for r in runs], indent=2))
        return 0
    if not runs:
        filtered = any((args.verdict, args.scheduler, args.topology, args.since, args.grep))
        print("no runs match" if filtered else
              f"no runs in {store.root} (start one with `ktstr run`)")
        return 0
    width = os.get_terminal_size().columns if sys.stdout.isatty() else None
    for line in format_table(runs, width=width, color=_use_color()):
        print(line)
    return 0


_HEADER = ("TIME", "RUN", "NAME", "SCHEDULER", "TOPOLOGY", "VERDICT", "DURATION", "MESSAGE")
_COLORS = {"pass": "32", "fail": "31", "corrupt": "35", "interrupted": "33",
           "inconclusive": "33", "skip": "2"}


def format_table(runs: list[RunSummary], *, width: int | None = None,
                 color: bool = False) -> list[str]:
    """The `ktstr runs` table: aligned columns, the message cut to `width` when given."""
    rows = [(format_time(r.started), r.run_id, r.name or "-", _short_sched(r.scheduler) or "-",
             r.preset or r.topology or "-", r.verdict, format_duration(r.duration_s),
             r.first_line) for r in runs]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(_HEADER[:-1])]
    at = sum(widths[:5]) + 2 * 5  # where the verdict column starts
    out = []
    for n, row in enumerate([_HEADER, *rows]):
        line = "  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[7]]).rstrip()
        if width and len(line) > width:
            line = line[: width - 1] + "…"
        if color and n and len(line) >= at + len(row[5]):
            code = _COLORS.get(row[5], "36")
            line = f"{line[:at]}\x1b[{code}m{row[5]}\x1b[0m{line[at + len(row[5]):]}"
        out.append(line)
    return out


def format_time(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def format_duration(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 60:
        return f"{s:.1f}s"
    m, sec = divmod(int(round(s)), 60)
    if m < 60:
        return f"{m}m{sec:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


def _short_sched(s: str) -> str:
    return os.path.basename(s) if "/" in s else s


_RELATIVE = re.compile(r"^(\d+)\s*(m|min|h|d|w)$")
_DATE_FORMATS = ("%Y-%m-%d", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M",
                 "%Y-%m-%dT%H:%M:%S", "%Y%m%d", "%Y%m%d-%H%M%S")


def parse_since(text: str, now: float | None = None) -> float:
    """A date/time (local), 'today', 'yesterday', or an age like 30m, 3h, 2d, 1w -> Unix time."""
    now = time.time() if now is None else now
    t = text.strip().lower()
    if t in ("today", "yesterday"):
        midnight = datetime.fromtimestamp(now).replace(hour=0, minute=0, second=0, microsecond=0)
        return midnight.timestamp() - (86400 if t == "yesterday" else 0)
    m = _RELATIVE.match(t)
    if m:
        unit = {"m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}[m.group(2)]
        return now - int(m.group(1)) * unit
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(text.strip(), fmt).timestamp()
        except ValueError:
            continue
    raise UsageError(f"--since: cannot read '{text}' as a date",
                     "use 2026-11-25, '2026-11-25 17:00', today, or an age like 3h or 2d")


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return n


def _use_color() -> bool:
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


# ---------------------------------------------------------------------- show


def cmd_show(args: argparse.Namespace) -> int:
    target = Path(args.target)
    if target.exists():
        return _show_path(target, args)
    store = open_store(args)
    s = store.get(args.target)
    return show_run(s, store=store, section=args.section, as_json=args.json)


def _show_path(path: Path, args: argparse.Namespace) -> int:
    if path.is_dir():
        if any((path / f).exists() for f in (SPEC, STATUS, RESULT)):
            return show_run(summarize(path.resolve()), store=None, section=args.section,
                            as_json=args.json)
        text = showartifacts.render_dir(path, as_json=args.json)
    elif path.name in (SPEC, STATUS, RESULT):
        return show_run(summarize(path.resolve().parent), store=None, section=args.section,
                        as_json=args.json)
    else:
        text = showartifacts.render_file(path, as_json=args.json)
    if args.section:
        raise UsageError("--section applies to runs", f"{path} is not a run directory")
    print(text, end="" if text.endswith("\n") else "\n")
    return 0


def _norm_section(name: str) -> str:
    return re.sub(r"[\s_-]+", " ", name.strip().strip("-").strip()).lower()


def find_section(sections: dict[str, str], name: str) -> str | None:
    if name in sections:
        return name
    want = _norm_section(name)
    for key in sections:
        if _norm_section(key) == want:
            return key
    return None


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return load_json_object(path)
    except BadFile:
        return None


SHELL_SECTIONS = ("shell", "shell log", "shell.log")  # `--section` names of shell.log


def show_shell(s: RunSummary, *, as_json: bool) -> int:
    """`--section shell`: shell.log with its session markers, the terminal's control bytes
    applied (colour kept on a terminal); a run without one says so and succeeds - no shell
    is not an error, and shell.log is not a section of the failure message."""
    path = shell_log_path(s.path)
    try:
        text = read_text(path, color=_use_color() and not as_json) if path else None
    except OSError as e:
        raise StoreError(f"cannot read {path}: {e.strerror}") from None
    if as_json:
        print(json.dumps({"run_id": s.run_id, "section": "shell",
                          "path": str(path) if path else None, "text": text,
                          **({} if path else {"note": NO_SHELL})}, indent=2))
    elif text is None:
        print(NO_SHELL)
    else:
        print(text, end="" if text.endswith("\n") else "\n")
    return 0


def show_run(s: RunSummary, *, store: Store | None, section: str | None, as_json: bool) -> int:
    if section is not None and _norm_section(section) in SHELL_SECTIONS:
        return show_shell(s, as_json=as_json)
    result = _read(s.path / RESULT)
    if section is not None:
        if s.verdict == CORRUPT:
            raise StoreError(f"run {s.run_id} is corrupt: {s.error}")
        sections = result.get("sections") if result else None
        if not result:
            raise UsageError(f"run {s.run_id} has no result yet ({s.verdict})")
        if not isinstance(sections, dict) or not sections:
            raise UsageError(f"run {s.run_id} has no sections", "its message has none")
        key = find_section(sections, section)
        if key is None:
            raise UsageError(f"run {s.run_id} has no section '{section}'",
                             f"sections: {', '.join(map(str, sections))}")
        text = sections[key] if isinstance(sections[key], str) else json.dumps(sections[key])
        if as_json:
            print(json.dumps({"run_id": s.run_id, "section": key, "text": text}, indent=2))
        else:
            print(text, end="" if text.endswith("\n") else "\n")
        return 0
    kids = store.children(s.run_id) if store is not None and "/" not in s.run_id else []
    globals_now = merge(read_lines(s.path / BPF_GLOBALS))
    if as_json:
        nested: dict[str, dict[str, Any]] = {}
        for (name, var), value in globals_now.items():
            nested.setdefault(name, {})[var] = value
        print(json.dumps({"summary": s.to_json(), "spec": _read(s.path / SPEC),
                          "status": _read(s.path / STATUS), "result": result,
                          "children": [k.run_id for k in kids], "bpf_globals": nested,
                          "shell_log": str(shell) if (shell := shell_log_path(s.path)) else None},
                         indent=2))
        return 0
    for line in format_run(s, result, _read(s.path / STATUS), kids, globals_now):
        print(line)
    return 0


def format_run(s: RunSummary, result: dict[str, Any] | None, status: dict[str, Any] | None,
               kids: list[RunSummary],
               globals_now: dict[tuple[str, str], Any] | None = None) -> list[str]:
    topo = s.topology + (f" ({s.preset})" if s.preset else "")
    observed = (result or {}).get("topology")
    if isinstance(observed, dict) and isinstance(observed.get("observed"), str) \
            and observed["observed"] not in (s.topology, ""):
        topo += f", guest saw {observed['observed']}"
    verdict = s.verdict
    if s.error:
        verdict += f": {s.error}"
    elif result and isinstance(result.get("reason"), str) \
            and result["reason"] not in ("", "failed", s.verdict):
        verdict += f" ({result['reason']})"
    lines = [
        f"run       {s.run_id}",
        f"path      {s.path}",
        f"name      {s.name or '-'}    scheduler {s.scheduler or '-'}",
        f"topology  {topo or '-'}",
        f"started   {format_time(s.started)}    duration {format_duration(s.duration_s)}",
        f"verdict   {verdict}",
    ]
    headline = (result or {}).get("headline")
    if isinstance(headline, str) and headline:
        lines.append(f"summary   {headline}")
    if s.is_live and status:
        pid, updated = status.get("pid"), status.get("updated")
        live = f"phase     {s.phase} (pid {pid}"
        if isinstance(updated, (int, float)):
            live += f", updated {max(0.0, time.time() - updated):.0f}s ago"
        deadline = status.get("watchdog_deadline")
        if isinstance(deadline, (int, float)):
            live += f", watchdog in {max(0.0, deadline - time.time()):.0f}s"
        lines.append(live + ")")
    elif s.verdict == "interrupted" and s.first_line:
        lines.append(f"note      {s.first_line}")
    if s.parent:
        lines.append(f"parent    {s.parent}")
    if kids:
        lines.append(f"children  {', '.join(k.run_id for k in kids)}")
    artifacts = (result or {}).get("artifacts")
    names = [str(a) for a in artifacts] if isinstance(artifacts, list) else []
    shell = shell_log_path(s.path)
    if shell is not None and SHELL_LOG not in names:  # a live run's, before result.json
        names.append(SHELL_LOG)
    if names:
        lines.append("artifacts " + ", ".join(
            f"{n} ({_size(shell)}, --section shell)" if n == SHELL_LOG and shell else n
            for n in names))
    lines += _capture_lines(result or {})
    stats = (result or {}).get("stats")
    measured = stats.get("measure_lines") if isinstance(stats, dict) else None
    if isinstance(measured, list) and measured:
        lines.append("measures  the workloads' own numbers (ktstr workloads):")
        lines += [str(m)[:300] for m in measured[:200]]
    if globals_now:
        lines.append("globals   the scheduler's BPF globals as last read (bpf.jsonl):")
        width = max(len(f"{n}.{v}") for n, v in globals_now)
        for (name, var), value in sorted(globals_now.items()):
            text = short(value)
            lines.append(f"  {f'{name}.{var}':<{width}}  "
                         f"{text if len(text) <= 100 else text[:97] + '...'}")
    message = (result or {}).get("message")
    if isinstance(message, str) and message.strip():
        lines += ["", without_repeated_dump(message, (result or {}).get("sections")).rstrip("\n")]
    return lines


def _size(path: Path) -> str:
    try:
        n = path.stat().st_size
    except OSError:
        return "unreadable"
    if n < 1024:
        return f"{n} B"
    return f"{n / 1024:.1f} KiB" if n < 1 << 20 else f"{n / (1 << 20):.1f} MiB"


def _capture_lines(result: dict[str, Any]) -> list[str]:
    """`captures` (periodic captures taken / planned, frozen time) and `temporal` (one line
    per declared assertion with its verdict) from result.json."""
    out = []
    c = result.get("captures")
    if isinstance(c, dict) and isinstance(c.get("target"), int) and isinstance(c.get("fired"), int):
        mean, top = c.get("frozen_ms_mean"), c.get("frozen_ms_max")
        frozen = (f", VM frozen {mean} ms each on average, {top} ms at most"
                  if isinstance(mean, int | float) and isinstance(top, int | float) else "")
        out.append(f"captures  {c['fired']}/{c['target']} periodic captures taken{frozen} "
                   "(captures.jsonl)")
    t = result.get("temporal")
    if isinstance(t, list):
        rows = [r for r in t if isinstance(r, dict) and isinstance(r.get("assertion"), str)]
        for i, r in enumerate(rows):
            out.append(f"{'temporal' if i == 0 else '':<9} {str(r.get('verdict', '?')):<12} "
                       f"{r['assertion']}")
    return out


DUMP_IN_LOG = "(the scheduler's DEBUG DUMP, printed in the scheduler log above)"


def without_repeated_dump(message: str, sections: Any) -> str:
    """The message with its `--- sched_ext dump ---` body replaced by a pointer when that
    dump is the scheduler's DEBUG DUMP already shown whole in `--- scheduler log ---`
    (the seed prints both; a reader should not page through the same dump twice).
    result.json keeps the seed's message unchanged."""
    if not isinstance(sections, dict):
        return message
    dump, log = sections.get("sched_ext dump"), sections.get("scheduler log")
    if not isinstance(dump, str) or not isinstance(log, str) or not dump.strip() \
            or dump.strip() not in log:
        return message
    block = f"\n\n--- sched_ext dump ---\n{dump}"
    return message.replace(block, f"\n\n--- sched_ext dump ---\n{DUMP_IN_LOG}", 1)
