"""`ktstr trace RUN [--summary] [--json] [--perfetto OUT] [--from T --to T]`: a run's
scheduling trace - the latency table, or a Perfetto file for ui.perfetto.dev."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ktstr_vmm.errors import UsageError
from ktstr_vmm.spec import parse_duration

from . import add_store_option, open_store


def register(sub) -> None:
    p = sub.add_parser("trace", help="a run's scheduling trace: latency summary, Perfetto export",
                       description="Read a run's scheduling trace (recorded by default; "
                       "`ktstr run --no-trace` turns it off). --summary prints wakeup latency, "
                       "runnable wait, running time, preemptions and migrations per CPU and "
                       "per task with the worst waits; --perfetto writes a Perfetto trace.")
    p.add_argument("run", metavar="RUN", help="run id (prefix or substring) or run directory")
    p.add_argument("--summary", action="store_true", help="the latency table (the default)")
    p.add_argument("--perfetto", metavar="OUT", help="write a Perfetto protobuf trace to OUT")
    p.add_argument("--from", dest="t_from", metavar="T",
                   help="start of the window, guest clock (e.g. 12.5s)")
    p.add_argument("--to", dest="t_to", metavar="T", help="end of the window, guest clock")
    p.add_argument("--tasks", type=int, default=12, metavar="N", help="tasks listed (default 12)")
    p.add_argument("--json", action="store_true", help="the summary as JSON")
    add_store_option(p)
    p.set_defaults(func=cmd_trace)


def run_path(ref: str, args: argparse.Namespace) -> Path:
    p = Path(ref)
    if p.is_dir():
        return p.resolve()
    store = open_store(args)
    store.get(ref)  # the one-line error for an unknown or ambiguous run
    return store.run_dir(ref).path


def _ns(text: str | None, flag: str) -> int | None:
    if text is None:
        return None
    if text.strip() in ("0", "0s"):
        return 0
    return int(parse_duration(text, flag) * 1e9)


def cmd_trace(args: argparse.Namespace) -> int:
    from ktstr_vmm.trace.files import has_trace, open_or_build

    path = run_path(args.run, args)
    if not has_trace(path):
        raise UsageError(f"run {path.name} has no scheduling trace",
                         "it was run with --no-trace, by an older ktstr, or failed before "
                         "the guest started")
    trace = open_or_build(path)
    if trace is None:
        raise UsageError(f"the trace of run {path.name} cannot be read",
                         f"its index is damaged: delete {path}/trace/index.json to rebuild it")
    t0, t1 = _ns(args.t_from, "--from"), _ns(args.t_to, "--to")
    try:
        if args.perfetto:
            from ktstr_vmm.trace.perfetto import export

            n = export(trace, Path(args.perfetto), t0, t1)
            print(f"wrote {n} events to {args.perfetto} (open it in ui.perfetto.dev)")
            for note in trace.index.get("notes") or ():
                print(f"note: {note}")
            if not args.summary:
                return 0
        from ktstr_vmm.trace.latency import analyse, report_text

        report = analyse(trace, t0, t1)
    finally:
        trace.close()
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(report_text(report, tasks=max(1, args.tasks), more="--tasks N lists more"))
    return 0
