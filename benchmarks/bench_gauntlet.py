"""The same 8-cell gauntlet with 1 worker and with 2 workers: wall time and the ratio.

Each cell is a real VM (scx_simple on tiny-1llc / tiny-2llc, 4 repeats each, a 2 s spin
workload) started by `ktstr gauntlet --workers N --json` on its embedded Dask
LocalCluster, in a fresh temporary store each time. A TCG guest keeps one host CPU busy,
so on a 2-core machine two workers can at best halve the wall time (goal: ratio >= 1.8).
The load average before and after is printed: other work on the machine eats into the
second worker's core and shows up as a lower ratio.

How it scales with hosts, on paper: cells are independent and a worker runs one VM at a
time, so the wall time of an N-cell gauntlet on W workers is about ceil(N / W) x the cell
time + one cluster start-up (~1-2 s embedded, nothing for a running cluster) + moving
run directories (nothing on a shared store; a few MB per cell otherwise). With
`--scheduler-address` every host's workers join: 24 presets x 4 schedulers = 96 cells at
~20 s each is ~32 min on one 2-core host and ~1 min on 16 such hosts (32 workers, 3
rounds), until
the client's unpacking (~10 ms per run directory) or the scheduler's per-task overhead
(~1 ms) - both far below a VM's run - become the limit.

Usage: python benchmarks/bench_gauntlet.py [--duration 2s] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CELLS = ["-s", "scx_simple", "-t", "tiny-1llc,tiny-2llc", "--repeat", "4"]  # 8 cells


def run(workers: int, duration: str, store: Path) -> tuple[float, dict]:
    env = {**os.environ, "KTSTR_HOME": str(store)}
    cmd = [sys.executable, "-m", "ktstr_cli", "gauntlet", "--json", *CELLS,
           "-d", duration, "--workers", str(workers)]
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.monotonic() - t0
    try:
        out = json.loads(p.stdout)
    except ValueError:
        sys.exit(f"bench_gauntlet: gauntlet with {workers} worker(s) failed "
                 f"({p.returncode}): {p.stderr.strip().splitlines()[-1:]}")
    return wall, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", default="2s")
    ap.add_argument("--keep", action="store_true", help="keep the temporary stores")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-gauntlet-"))
    try:
        load0 = os.getloadavg()
        results = {}
        for workers in (1, 2):
            wall, out = run(workers, args.duration, tmp / f"store-{workers}")
            verdicts = [c["verdict"] or c["status"] for c in out["cells"]]
            per_cell = [c["wall_s"] for c in out["cells"] if c.get("wall_s")]
            results[workers] = wall
            print(f"{workers} worker{'s' if workers > 1 else ' '}: {wall:6.1f} s wall for "
                  f"{len(verdicts)} cells ({verdicts.count('pass')} pass), cell "
                  f"{min(per_cell):.1f}-{max(per_cell):.1f} s, "
                  f"workers used {len({c['worker'] for c in out['cells']})}")
        load1 = os.getloadavg()
        ratio = results[1] / results[2]
        print(f"ratio 1 worker / 2 workers: {ratio:.2f}x (goal >= 1.8x) on "
              f"{len(os.sched_getaffinity(0))} CPUs")
        print(f"load average before {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}, "
              f"after {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}"
              + ("  (the machine was busy: other work shares the two cores)"
                 if load0[0] > 1.0 else ""))
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
