"""Cost of a periodic capture: how long the VM stays frozen per capture, against one monitor
sample (the peer: the unfrozen read the monitor does every 100 ms) measured in the same run.

Boots scx_simple under the real kernel with `ktstr run --capture-every` (one VM at a time,
an isolated store under /tmp) and reads the run's own records: `frozen_ms` of every capture
in captures.jsonl, and the monitor's `sample_ms` / `samples` from its `stopped` event.

Usage: .venv/bin/python benchmarks/bench_capture.py [--topology 1n1l2c1t,1n2l2c1t]
                                                    [--every 250ms] [--duration 8s]
Goal: a capture freezes the VM for under 50 ms at 4 vCPUs (mean), so a capture every second
costs the workload under 5% of its time.
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

ROOT = Path(__file__).resolve().parent.parent


def one(topology: str, every: str, duration: str, home: Path) -> dict:
    p = subprocess.run(
        [sys.executable, "-m", "ktstr_cli", "run", "--json", "-s", "scx_simple", "-t", topology,
         "-d", duration, "--capture-every", every, "--no-auto-repro"],
        capture_output=True, text=True, env={**os.environ, "KTSTR_HOME": str(home)},
        timeout=600, cwd=ROOT)
    r = json.loads(p.stdout)
    run_dir = Path(r["run_dir"])
    frozen = [c["frozen_ms"] for c in r["captures"]["items"] if "frozen_ms" in c]
    stopped = [e for e in (json.loads(x) for x in
                           (run_dir / "events.jsonl").read_text().splitlines())
               if e.get("kind") == "monitor" and e.get("state") == "stopped"][-1]
    sample_ms = stopped["sample_ms"] / max(1, stopped["samples"])
    sizes = [(run_dir / c["file"]).stat().st_size for c in r["captures"]["items"] if "file" in c]
    return {"topology": topology, "verdict": r["verdict"], "fired": r["captures"]["fired"],
            "target": r["captures"]["target"], "frozen": frozen, "sample_ms": sample_ms,
            "kb": statistics.mean(sizes) / 1024 if sizes else 0.0}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--topology", default="1n1l2c1t,1n2l2c1t")
    ap.add_argument("--every", default="250ms")
    ap.add_argument("--duration", default="8s")
    a = ap.parse_args()
    print(f"{'topology':10} {'captures':>9} {'frozen mean':>12} {'p50':>7} {'max':>7} "
          f"{'sample':>8} {'ratio':>7} {'file':>8}")
    with tempfile.TemporaryDirectory(prefix="ktstr-bench-capture-") as tmp:
        for topo in a.topology.split(","):
            r = one(topo, a.every, a.duration, Path(tmp))
            f = r["frozen"]
            mean = statistics.mean(f) if f else float("nan")
            print(f"{topo:10} {r['fired']:>4}/{r['target']:<4} {mean:>9.1f} ms "
                  f"{statistics.median(f) if f else float('nan'):>5.1f}ms {max(f, default=0):>5.1f}ms "
                  f"{r['sample_ms']:>6.2f}ms {mean / r['sample_ms']:>6.0f}x {r['kb']:>5.0f} KB")
    print("ratio = mean frozen time per capture / mean monitor sample (the peer, same run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
