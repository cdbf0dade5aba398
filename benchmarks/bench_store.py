"""How fast is the first page of a 10,000-run store, next to `ls` of the same tree?

Builds a store of synthetic runs in the real run-directory format (spec.json from RunSpec,
status.json, result.json with a failure message and sections, console.log) in a temp dir,
then times, as separate processes the way a person runs them:
  ls RUNS            names only
  ls -R RUNS         every file of every run
  ktstr runs --limit 50, cold (no index.sqlite: builds the index from 10,000 directories)
  ktstr runs --limit 50, warm (index up to date: one scandir + stat per run, one query)
and, in process, Store.list_runs(limit=50) warm (what the TUI's run browser pays) and
StoreWatcher.start() (one inotify watch per directory of the store).

Usage: python benchmarks/bench_store.py [--runs N] [--repeat R] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ktstr_vmm.spec import PRESETS, RunSpec  # noqa: E402
from ktstr_vmm.store.store import Store  # noqa: E402
from ktstr_vmm.store.watch import StoreWatcher  # noqa: E402

SCHEDULERS = ("scx_simple", "scx_lavd", "scx_rusty", "scx_bpfland", "ktstr_faulty")
VERDICTS = ("pass", "pass", "pass", "fail", "inconclusive", "skip")
MESSAGE = ("scx_bpfland: runnable task stall (kworker/1:1[83] failed to run for 6.2s)\n"
           "BUG SUMMARY: runnable task stall\n"
           "ktstr_test '{name}' [sched={sched}] [topo={topo}] failed:\n\n--- stats ---\n"
           "8 workers, 8 cpus, 41 migrations, worst_spread=3.1%, worst_gap=6200ms\n")


def make_store(root: Path, n: int) -> None:
    runs = root / "runs"
    runs.mkdir(parents=True)
    presets = list(PRESETS)
    t0 = time.time() - n * 60
    for i in range(n):
        started = t0 + i * 60
        sched = SCHEDULERS[i % len(SCHEDULERS)]
        preset = presets[i % len(presets)]
        spec = RunSpec(name=f"test_{i % 37}", scheduler=sched, topology=PRESETS[preset],
                       topology_requested=preset)
        run_id = (time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
                  + f"-{spec.name}-{sched}-{preset}-{i:04x}")
        d = runs / run_id
        d.mkdir()
        verdict = VERDICTS[i % len(VERDICTS)]
        msg = "" if verdict == "pass" else MESSAGE.format(name=spec.name, sched=sched, topo=preset)
        (d / "spec.json").write_text(json.dumps(spec.to_json(), indent=2))
        (d / "status.json").write_text(json.dumps(
            {"phase": "done", "pid": 1, "started": started, "updated": started + 20,
             "engine": "qemu"}))
        (d / "result.json").write_text(json.dumps(
            {"run_id": run_id, "run_dir": str(d), "verdict": verdict, "message": msg,
             "reason": "" if verdict == "pass" else "failed", "sections": {"stats": msg[-80:]},
             "engine": "qemu", "topology": {"preset": preset, "requested": preset,
                                            "observed": spec.topology.notation},
             "scheduler": sched, "kernel": "7.3.4", "stats": {},
             "timings": {"boot_to_ready_s": 4.0, "total_s": 20.0 + i % 50}, "parent": None,
             "artifacts": ["console.log"]}, indent=2))
        (d / "console.log").write_text("[    0.000000] Linux version 7.3.4\n" * 20)
        old = started + 30
        os.utime(d, (old, old))


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    t = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, check=True, timeout=600, env=env)
    return time.perf_counter() - t


def median(fn, repeat: int) -> float:
    return statistics.median(fn() for _ in range(repeat))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--keep", action="store_true", help="keep the temp store and print its path")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="ktstr-bench-store-"))
    try:
        t = time.perf_counter()
        make_store(tmp, args.runs)
        print(f"made {args.runs} runs in {tmp} in {time.perf_counter() - t:.1f}s")
        runs = str(tmp / "runs")
        env = {**os.environ, "KTSTR_HOME": str(tmp), "NO_COLOR": "1"}
        ktstr = [sys.executable, "-m", "ktstr_cli", "runs", "--limit", "50"]

        ls = median(lambda: timed(["ls", runs]), args.repeat)
        ls_r = median(lambda: timed(["ls", "-R", runs]), args.repeat)

        def cold() -> float:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{tmp}/index.sqlite{suffix}").unlink(missing_ok=True)
            return timed(ktstr, env)

        cold_s = median(cold, max(1, args.repeat // 2))
        timed(ktstr, env)
        warm = median(lambda: timed(ktstr, env), args.repeat)
        startup = median(lambda: timed([sys.executable, "-m", "ktstr_cli", "--version"], env),
                         args.repeat)
        store = Store(tmp)
        store.list_runs(limit=50)

        def in_process() -> float:
            t = time.perf_counter()
            page = store.list_runs(limit=50)
            assert len(page) == 50
            return time.perf_counter() - t

        lib = median(in_process, args.repeat)
        store.close()
        watcher = StoreWatcher(tmp, lambda ev: None)
        t = time.perf_counter()
        watcher.start()
        watch_s = time.perf_counter() - t
        watcher.stop()

        print(f"{'ls RUNS':<42}{ls * 1000:8.1f} ms")
        print(f"{'ls -R RUNS':<42}{ls_r * 1000:8.1f} ms")
        print(f"{'ktstr runs --limit 50 (cold index build)':<42}{cold_s * 1000:8.1f} ms"
              f"   {cold_s / ls:5.1f}x ls")
        print(f"{'ktstr runs --limit 50 (warm)':<42}{warm * 1000:8.1f} ms"
              f"   {warm / ls:5.1f}x ls, {warm / ls_r:4.2f}x ls -R")
        print(f"{'  of which python + ktstr start-up':<42}{startup * 1000:8.1f} ms")
        print(f"{'Store.list_runs(limit=50) in process (warm)':<42}{lib * 1000:8.1f} ms"
              f"   {lib / ls:5.1f}x ls")
        print(f"{'StoreWatcher.start() (watches every run)':<42}{watch_s * 1000:8.1f} ms")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
