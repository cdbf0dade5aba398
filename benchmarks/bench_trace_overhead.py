"""What the scheduling trace costs the workload: the same run traced and with --no-trace.

Runs `ktstr run --json` (QEMU, the real kernel, scx_simple) --reps times each way,
alternating, in a private store: spinners and pipe ping-pong pairs for --duration. Reports
the median total work iterations per way and the share lost with the trace on, plus
the trace's own numbers (events, stored bytes). Goal (issue 13): <= 3% iterations lost.
TCG on a shared 2-core machine is noisy: the spread between runs of the same way is
printed too, so a difference inside it reads as noise.

    .venv/bin/python benchmarks/bench_trace_overhead.py [--reps 3] [--duration 5s]
        [--workload spin:2,pipe:2] [--topology tiny-2llc] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def one(store: Path, traced: bool, args) -> dict:
    cmd = [sys.executable, "-m", "ktstr_cli", "run", "--json", "--scheduler", "scx_simple",
           "--topology", args.topology, "--workload", args.workload, "--duration",
           args.duration, "--no-auto-repro"] + ([] if traced else ["--no-trace"])
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO,
                       env={**os.environ, "KTSTR_HOME": str(store)})
    r = json.loads(p.stdout or "{}")
    groups = (r.get("stats") or {}).get("groups") or []
    if not groups:
        raise SystemExit(f"bench_trace_overhead: a run has no workload stats: {r.get('reason')} "
                         f"{p.stderr[-300:]}")
    out = {"iterations": sum(int(g.get("iterations") or 0) for g in groups),
           "run_dir": r["run_dir"], "verdict": r.get("verdict")}
    tdir = Path(r["run_dir"]) / "trace"
    if traced and tdir.is_dir():
        index = json.loads((tdir / "index.json").read_text())
        out["events"] = index["events"]
        out["stored_kib"] = sum(f.stat().st_size for f in tdir.glob("cpu*.pages")) >> 10
        out["lost"] = index["lost"]
        stats = json.loads((tdir / "stats.json").read_text())
        out["agent_cpu_ms"] = ((stats.get("guest") or {}).get("agent_cpu_us") or 0) / 1000
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", default="5s")
    ap.add_argument("--workload", default="spin:2,pipe:2")
    ap.add_argument("--topology", default="tiny-2llc")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    runs: dict[bool, list[dict]] = {True: [], False: []}
    with tempfile.TemporaryDirectory(prefix="ktstr-bench-overhead-") as tmp:
        for rep in range(args.reps):
            for traced in ((False, True) if rep % 2 == 0 else (True, False)):  # both orders
                runs[traced].append(one(Path(tmp), traced, args))
                if not args.json:
                    r = runs[traced][-1]
                    print(f"  {'traced  ' if traced else 'untraced'} {r['iterations']:>12,} "
                          f"iterations" + (f", {r['events']:,} events, {r['stored_kib']} KiB "
                                           f"stored, agent streaming CPU {r['agent_cpu_ms']:.0f} ms"
                                           if traced else "")
                          + ("" if r["verdict"] == "pass" else f" (verdict {r['verdict']})"),
                          flush=True)
    med = {k: statistics.median(r["iterations"] for r in v) for k, v in runs.items()}
    spread = {k: (max(r["iterations"] for r in v) - min(r["iterations"] for r in v))
              / max(1, statistics.median(r["iterations"] for r in v)) * 100
              for k, v in runs.items()}
    lost = (med[False] - med[True]) / max(1, med[False]) * 100
    out = {"untraced_iterations": med[False], "traced_iterations": med[True],
           "lost_percent": round(lost, 2), "ratio_traced_vs_untraced": round(med[True] / max(1, med[False]), 4),
           "spread_percent": {"untraced": round(spread[False], 2), "traced": round(spread[True], 2)},
           "events_median": statistics.median(r.get("events", 0) for r in runs[True]),
           "agent_cpu_ms_median": statistics.median(r.get("agent_cpu_ms", 0) for r in runs[True]),
           "goal_lost_percent": 3.0, "reps": args.reps}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"median iterations: untraced {med[False]:,.0f}, traced {med[True]:,.0f}; "
              f"ratio traced/untraced {out['ratio_traced_vs_untraced']}; lost "
              f"{lost:.2f}% (goal <= 3%); run-to-run spread untraced {spread[False]:.1f}%, "
              f"traced {spread[True]:.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
