"""`ktstr compare A B [--json] [--fail-on METRIC:+N%]`: two runs side by side."""

from __future__ import annotations

import argparse
import json

from ktstr_vmm.errors import UsageError
from ktstr_vmm.rundir.layout import RESULT
from ktstr_vmm.store.store import Store

from . import add_store_option, open_store

EXIT_SAME, EXIT_REGRESSED = 0, 1


def register(sub) -> None:
    from ktstr_vmm.evaluate.compare import METRICS

    p = sub.add_parser("compare", help="two runs side by side (verdicts, topologies, stats, monitor)",
                       description="Show two runs side by side with the differences marked '*'. "
                       "With --fail-on, exit 1 when B regressed against A on that metric. "
                       f"Metrics: {', '.join(METRICS)}, monitor.<summary field>, "
                       "latency.<wakeup|runnable>_<p50|p99|max>_ms (from the scheduling trace).")
    p.add_argument("a", metavar="A", help="the baseline run (id, prefix or substring)")
    p.add_argument("b", metavar="B", help="the run compared against A")
    p.add_argument("--fail-on", action="append", default=[], metavar="METRIC:+N%",
                   help="exit 1 when B is worse than A by more than this (repeatable), "
                   "e.g. migrations:+20%%, iterations:-10%%, gap:+50")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    add_store_option(p)
    p.set_defaults(func=cmd_compare)


def load_result(store: Store, ref: str) -> dict:
    summary = store.get(ref)
    result = store.run_dir(ref).read_json(RESULT)
    if result is None:
        raise UsageError(f"run {summary.run_id} has no result yet (phase {summary.phase})",
                         "compare finished runs")
    result.setdefault("run_id", summary.run_id)
    return result


def cmd_compare(args: argparse.Namespace) -> int:
    from ktstr_vmm.evaluate.compare import compare, parse_fail_on, regressions, render, to_json

    rules = [parse_fail_on(t) for t in args.fail_on]
    store = open_store(args)
    a, b = load_result(store, args.a), load_result(store, args.b)
    rows = compare(a, b)
    regress = regressions(a, b, rules)
    if args.json:
        print(json.dumps(to_json(rows, regress), indent=2))
    else:
        print(render(rows))
        for line in regress:
            print(f"REGRESSION {line}")
    return EXIT_REGRESSED if regress else EXIT_SAME
