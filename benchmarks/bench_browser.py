"""Two workstation measurements, headless (Textual's run_test), same machine, same run:

1. First screen of a 10,000-run store: app start until the run table shows rows, cold
   (no index.sqlite yet: the newest runs are read straight from their directories while
   the store indexes every run; also when that indexed listing replaces them) and warm
   (index exists).
2. Live ingest: a writer appends scheduler-log lines as fast as it can while the live
   screen follows; lines/s the log view indexes and shows (its line count reaching the
   writer's) - the rate the view keeps up with.

    .venv/bin/python benchmarks/bench_browser.py [--runs 10000] [--lines 500000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ktstr_tui.app import KtstrApp  # noqa: E402
from ktstr_tui.widgets.log_view import LogPane  # noqa: E402

VERDICTS = ("pass", "fail", "inconclusive", "skip")


def make_store(root: Path, n: int) -> None:
    runs = root / "runs"
    runs.mkdir(parents=True)
    t0 = 1795000000
    for i in range(n):
        rid = time.strftime("%Y%m%d-%H%M%S", time.gmtime(t0 + i * 7)) + f"-bench-tiny-2llc-{i:04x}"
        d = runs / rid
        d.mkdir()
        (d / "spec.json").write_text(json.dumps({
            "name": "bench", "scheduler": "scx_simple", "topology": "1n2l2c1t",
            "preset": "tiny-2llc", "duration_s": 5.0}))
        (d / "status.json").write_text(json.dumps({
            "phase": "done", "pid": 1, "started": t0 + i * 7, "updated": t0 + i * 7 + 10}))
        v = VERDICTS[i % 4]
        (d / "result.json").write_text(json.dumps({
            "run_id": rid, "verdict": v, "message": f"run {i}: {v}", "reason": "",
            "sections": {}, "timings": {"total_s": 10.0}}))
        # A real store's runs are days old: give the files their run's time, so the index
        # does not treat 10,000 just-written directories as still settling.
        when = t0 + i * 7 + 10
        for f in (*d.iterdir(), d):
            os.utime(f, (when, when))


async def first_screen(root: Path) -> tuple[float, int]:
    t = time.monotonic()
    app = KtstrApp(root, watch=False)
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.screen.query_one("#runs")
        while table.row_count == 0:
            await pilot.pause(0.01)
            if time.monotonic() - t > 300:
                raise RuntimeError("no rows after 300s")
        first = time.monotonic() - t
        while app.screen.provisional:  # the newest runs shown while the index builds
            await pilot.pause(0.01)
            if time.monotonic() - t > 300:
                raise RuntimeError("the index never finished")
        return first, time.monotonic() - t, table.row_count


async def bare_first_screen() -> float:
    """Baseline: a Textual app with one empty DataTable, started the same way."""
    from textual.app import App
    from textual.widgets import DataTable

    class Bare(App):
        def compose(self):
            yield DataTable()

    t = time.monotonic()
    async with Bare().run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        return time.monotonic() - t


async def ingest(root: Path, lines: int) -> float:
    run = root / "runs" / "20261125-120000-live-tiny-2llc-0001"
    run.mkdir(parents=True)
    (run / "spec.json").write_text(json.dumps({"name": "live", "scheduler": "scx_simple",
                                               "topology": "1n2l2c1t"}))
    (run / "status.json").write_text(json.dumps({"phase": "running", "pid": 1,
                                                 "started": time.time()}))
    app = KtstrApp(root, open_path=run, watch=False)
    async with app.run_test(size=(120, 40)) as pilot:
        pane = app.screen.query_one("#sched-pane", LogPane)
        await pilot.pause(0.5)
        line = b"local=%d global=%d | scx_simple: dispatched to local dsq of cpu 3\n"

        def writer() -> None:
            with open(run / "sched.log", "ab", buffering=0) as f:
                for start in range(0, lines, 1000):
                    f.write(b"".join(line % (i, i // 2) for i in range(start, start + 1000)))

        t = time.monotonic()
        th = threading.Thread(target=writer)
        th.start()
        while pane.view.line_count < lines:
            await pilot.pause(0.02)
            if time.monotonic() - t > 300:
                raise RuntimeError(f"view at {pane.view.line_count} of {lines} after 300s")
        elapsed = time.monotonic() - t
        th.join()
        return lines / elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--lines", type=int, default=500_000)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ktstr-bench-store-"))
    try:
        t = time.monotonic()
        make_store(work / "store", args.runs)
        print(f"bench: made {args.runs} runs in {time.monotonic() - t:.1f}s")
        cold, cold_full, rows = asyncio.run(first_screen(work / "store"))
        warm, _, _ = asyncio.run(first_screen(work / "store"))
        bare = asyncio.run(bare_first_screen())
        print(f"first screen of a {args.runs}-run store ({rows} rows shown): "
              f"cold {cold:.2f}s (newest runs read directly; the indexed listing at "
              f"{cold_full:.2f}s), warm {warm:.2f}s (goal < 0.5s); "
              f"a bare Textual app with an empty DataTable: {bare:.2f}s")
        rate = asyncio.run(ingest(work / "live", args.lines))
        print(f"live ingest: {rate:,.0f} lines/s followed by the log view (goal >= 50,000)")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
