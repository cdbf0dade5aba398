#!/usr/bin/env python3
"""Re-make the README's screenshots (Textual's SVG export) from the demo store and a live run.

    .venv/bin/python assets/screenshots.py        # writes assets/screenshots/*.svg

browser.svg   the run browser on assets/demo-store
failure.svg   the result screen of the demo's injected scx_bpf_error
dump.svg      that run's failure dump read as a story (exit, trigger, CPUs, queues, maps)
live.svg      a real run (scx_simple on tiny-2llc) watched live: per-CPU grid, timeline, logs
gauntlet.svg  a real verifier gauntlet (3 schedulers x 2 topologies on 2 Dask workers), its matrix
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "screenshots"
SIZE = (130, 42)


async def until(pilot, pred, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        await pilot.pause(0.1)
        try:
            if pred():
                return
        except Exception:  # noqa: BLE001 - widgets may not be mounted yet
            pass
    raise SystemExit(f"screenshots: timed out waiting for {what}")


async def demo_store_shots(store: Path) -> None:
    from textual.widgets import DataTable

    from ktstr_tui.app import KtstrApp
    from ktstr_tui.screens.result import ResultScreen

    app = KtstrApp(store, watch=False)
    async with app.run_test(size=SIZE) as pilot:
        browser = pilot.app.screen
        await until(pilot, lambda: browser.query_one("#runs", DataTable).row_count > 0, 20, "runs")
        await pilot.pause(0.5)
        app.save_screenshot("browser.svg", str(OUT))
        row = next(i for i, s in enumerate(browser.runs) if s.name == "demo_error")
        browser.query_one("#runs", DataTable).move_cursor(row=row)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, ResultScreen)
                    and pilot.app.screen.view is not None, 20, "result screen")
        await pilot.pause(1.0)
        app.save_screenshot("failure.svg", str(OUT))
        await pilot.press("F")
        await pilot.pause(2.0)
        app.save_screenshot("dump.svg", str(OUT))


async def live_shot(store: Path) -> None:
    from ktstr_tui.app import KtstrApp
    from ktstr_tui.screens.live_run import LiveRunScreen

    app = KtstrApp(store, launch_args=["run", "--scheduler", "scx_simple", "--topology",
                                       "tiny-2llc", "--duration", "20s", "--no-auto-repro"])
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(pilot.app.screen, LiveRunScreen), 120, "live screen")
        live = pilot.app.screen
        run_dir = Path(live.path)
        await until(pilot, lambda: (run_dir / "monitor.jsonl").exists()
                    and len((run_dir / "monitor.jsonl").read_text().splitlines()) > 40,
                    180, "monitor samples")
        await pilot.pause(2.0)
        app.save_screenshot("live.svg", str(OUT))
        await pilot.press("x")  # stop the run: the screenshot is taken
        await pilot.pause(3.0)


def gauntlet_shot(store: Path) -> None:
    """Run a real gauntlet into `store`, then screenshot its matrix."""
    import json
    import subprocess

    p = subprocess.run([sys.executable, "-m", "ktstr_cli", "gauntlet", "--json", "--verifier",
                        "-s", "scx_simple,scx_qmap,scx_flatcg", "-t", "tiny-1llc,tiny-2llc",
                        "-d", "2s", "--workers", "2"], capture_output=True, text=True,
                       env={**os.environ, "KTSTR_HOME": str(store)})
    try:
        gid = json.loads(p.stdout)["gauntlet"]
    except (ValueError, KeyError):
        raise SystemExit(f"screenshots: the gauntlet failed: {p.stderr.strip()[-300:]}") from None
    asyncio.run(_gauntlet_screen(store, gid))


async def _gauntlet_screen(store: Path, gid: str) -> None:
    from textual.widgets import DataTable

    from ktstr_tui.app import KtstrApp
    from ktstr_tui.screens.gauntlet_screen import GauntletScreen

    app = KtstrApp(store, open_gauntlet=gid, watch=False)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(pilot.app.screen, GauntletScreen)
                    and pilot.app.screen.loaded, 20, "gauntlet screen")
        screen = pilot.app.screen
        screen.query_one("#matrix", DataTable).move_cursor(row=0, column=2)
        await pilot.pause(1.0)
        app.save_screenshot("gauntlet.svg", str(OUT))


def main() -> int:
    sys.path.insert(0, str(HERE.parent))
    OUT.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ktstr-shots-"))
    try:
        demo = work / "demo"
        shutil.copytree(HERE / "demo-store", demo)
        asyncio.run(demo_store_shots(demo))
        live_store = work / "live"
        live_store.mkdir()
        os.environ["KTSTR_HOME"] = str(live_store)
        asyncio.run(live_shot(live_store))
        gauntlet_store = work / "gauntlet"
        gauntlet_store.mkdir()
        gauntlet_shot(gauntlet_store)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"screenshots written to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
