"""Frame time of the per-CPU timeline with a big trace against a small one.

Two run directories are made from the real pages in tests/data/trace_scx_simple (repeated,
later copies shifted in time, as bench_trace.py does): about --big events and about
--small events. For each, the model is opened once (TimelineModel.from_trace) and frames
are drawn (`draw`, exactly what the widget renders) at a 200-column width: the whole run,
a 1 s window in the middle and a 1 ms window, each --frames times; the median is reported.

Goal (issue 13): <= 50 ms per frame with 1M events, and flat (the big trace's frame about
the small one's).

    .venv/bin/python benchmarks/bench_timeline.py [--big 1000000] [--small 1000] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_trace import make_run  # noqa: E402

from ktstr_tui.widgets.sched_timeline import View, draw, groups_from_notation  # noqa: E402
from ktstr_vmm.trace.files import Trace, build_index  # noqa: E402
from ktstr_vmm.trace.view import MarkIndex, TimelineModel  # noqa: E402

WIDTH = 200


def frames(root: Path, n: int) -> dict:
    build_index(root)
    t_open = time.perf_counter()
    trace = Trace.open(root)
    model = TimelineModel.from_trace(trace)
    open_s = time.perf_counter() - t_open
    groups = groups_from_notation("1n1l2c1t", sorted(model.lanes))
    lo, hi = model.t_first, model.t_last
    mid = (lo + hi) // 2
    out = {"events": trace.index["events"], "switches": model.switches,
           "open_s": round(open_s, 3)}
    sel = model.tasks_by_running()[0]
    marks = MarkIndex(model.task_marks(sel))
    for name, (a, b) in {"whole": (lo, hi), "1s": (mid - 500_000_000, mid + 500_000_000),
                         "1ms": (mid - 500_000, mid + 500_000)}.items():
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            draw(model, View(a, b, selected=sel), WIDTH, groups, [], marks)
            times.append(time.perf_counter() - t0)
        out[f"{name}_ms"] = round(statistics.median(times) * 1000, 2)
    model.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--big", type=int, default=1_000_000, help="events (about) of the big trace")
    ap.add_argument("--mid", type=int, default=100_000, help="events (about) of a middle one")
    ap.add_argument("--small", type=int, default=1_000, help="events (about) of the small one")
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ktstr-bench-timeline-") as tmp:
        make_run(Path(tmp) / "big", args.big // 2)
        make_run(Path(tmp) / "mid", args.mid // 2)
        make_run(Path(tmp) / "small", args.small // 2)
        big = frames(Path(tmp) / "big", args.frames)
        mid = frames(Path(tmp) / "mid", args.frames)
        small = frames(Path(tmp) / "small", args.frames)
    worst = max(big[k] for k in ("whole_ms", "1s_ms", "1ms_ms"))
    keys = ("whole_ms", "1s_ms", "1ms_ms")
    ratio = {k: round(big[k] / max(small[k], 1e-3), 2) for k in keys}
    ratio_mid = {k: round(big[k] / max(mid[k], 1e-3), 2) for k in keys}
    out = {"big": big, "mid": mid, "small": small, "big_vs_small": ratio, "big_vs_mid": ratio_mid,
           "worst_big_frame_ms": worst, "goal_ms": 50}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"timeline frames at {WIDTH} columns, 2 CPUs (median of {args.frames}):")
    for label, r in (("big", big), ("mid", mid), ("small", small)):
        print(f"  {label:5} {r['events']:>9,} events ({r['switches']:,} switches, opened in "
              f"{r['open_s']:.2f} s): whole run {r['whole_ms']:.2f} ms, 1 s window "
              f"{r['1s_ms']:.2f} ms, 1 ms window {r['1ms_ms']:.2f} ms")
    print(f"  ratio big / mid (10x the events): whole {ratio_mid['whole_ms']}x, "
          f"1 s {ratio_mid['1s_ms']}x, 1 ms {ratio_mid['1ms_ms']}x")
    print(f"  ratio big / small: whole {ratio['whole_ms']}x, 1 s {ratio['1s_ms']}x, "
          f"1 ms {ratio['1ms_ms']}x; worst big frame {worst:.2f} ms "
          f"(goal <= 50 ms: {'met' if worst <= 50 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
