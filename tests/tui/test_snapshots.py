"""Whole-screen snapshots (pytest-textual-snapshot) of each screen on the fixture store.

Update after a deliberate UI change with `pytest tests/tui/test_snapshots.py
--snapshot-update` and review the SVGs. The store lives at a fixed path and times are UTC
(conftest), the live screen's clock is pinned, so the pictures are the same everywhere.
"""

from __future__ import annotations

import pytest
from conftest import RUN_IDS, SNAPSHOT_STORE, make_app, steady_cursors, wait_for
from textual.widgets import DataTable, Input

from ktstr_tui.screens.help_screen import HelpScreen
from ktstr_tui.screens.live_run import LiveRunScreen
from ktstr_tui.screens.result import ResultScreen
from ktstr_tui.widgets.failure_dump_view import FailureDumpView
from ktstr_tui.widgets.log_view import LogPane

pytestmark = pytest.mark.tui
SIZE = (120, 40)


def app_on(run: str | None = None, **kw):
    path = SNAPSHOT_STORE / "runs" / RUN_IDS[run] if run else None
    return make_app(SNAPSHOT_STORE, open_path=path, **kw)


async def _browser_ready(pilot):
    screen = pilot.app.screen
    table = screen.query_one("#runs", DataTable)
    # loaded: the store's index answered (the first, provisional rows come from a quick peek
    # while it builds, with a status line saying so)
    await wait_for(pilot, lambda: table.row_count == 5 and not screen.provisional,
                   what="runs (indexed)")


async def _result_ready(pilot):
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, ResultScreen)
                   and pilot.app.screen.view is not None, what="result")


def test_browser(snap_compare, snapshot_runs):
    assert snap_compare(app_on(), terminal_size=SIZE, run_before=_browser_ready)


def test_result_failure_message(snap_compare, snapshot_runs):
    assert snap_compare(app_on("fail"), terminal_size=SIZE, run_before=_result_ready)


def test_result_sched_ext_dump_after_cpu_jump(snap_compare, snapshot_runs):
    async def run_before(pilot):
        await _result_ready(pilot)
        await pilot.press("D")
        pilot.app.screen.query_one("#scx-dump").focus()
        await pilot.press("c", "c")

    assert snap_compare(app_on("fail"), terminal_size=SIZE, run_before=run_before)


def test_result_failure_dump_viewer(snap_compare, snapshot_runs):
    async def run_before(pilot):
        await _result_ready(pilot)
        await pilot.press("F")
        view = pilot.app.screen.query_one(FailureDumpView)
        await wait_for(pilot, lambda: view.has_class("loaded"), what="dump")

    assert snap_compare(app_on("fail"), terminal_size=SIZE, run_before=run_before)


def test_result_sched_log_search(snap_compare, snapshot_runs):
    async def run_before(pilot):
        await _result_ready(pilot)
        await pilot.press("l")
        pane = pilot.app.screen.query_one("#tab-sched LogPane", LogPane)
        await wait_for(pilot, lambda: pane.view.line_count == 110, what="indexed")
        pane.view.focus()
        await pilot.press("slash", *"SCX_EV_BYPASS", "enter")
        await wait_for(pilot, lambda: pane.view.pointer is not None, what="found")

    assert snap_compare(app_on("fail"), terminal_size=SIZE, run_before=run_before)


def test_result_corrupt(snap_compare, snapshot_runs):
    assert snap_compare(app_on("corrupt"), terminal_size=SIZE, run_before=_result_ready)


def test_live_run(snap_compare, snapshot_runs, monkeypatch):
    from fixture_store import T0

    monkeypatch.setattr(LiveRunScreen, "clock", staticmethod(lambda: T0 + 1200 + 12.5))

    async def run_before(pilot):
        screen = pilot.app.screen
        from ktstr_tui.widgets.monitor_grid import MonitorGrid
        from ktstr_tui.widgets.timeline import Timeline

        await wait_for(pilot, lambda: screen.status is not None
                       and screen.query_one("#sched-pane", LogPane).view.line_count == 1
                       and screen.query_one("#console-pane", LogPane).view.line_count == 1
                       and screen.query_one("#monitor", MonitorGrid).samples == 5
                       and screen.query_one("#monitor", MonitorGrid).topology is not None
                       and len(screen.query_one("#timeline", Timeline).events) == 3,
                       what="live state (logs, monitor samples, timeline events)")
        await pilot.pause()

    # pid 1 stands for a live writer in the fixture
    assert snap_compare(app_on("live"), terminal_size=SIZE, run_before=run_before)


def test_launcher_with_topology_error(snap_compare, snapshot_runs):
    async def run_before(pilot):
        await _browser_ready(pilot)
        await pilot.press("n")
        screen = pilot.app.screen
        screen.query_one("#f-topology", Input).value = "2n3l2c1t"
        await wait_for(pilot, lambda: "must be a multiple" in str(
            screen.query_one("#err-topology").render()), what="topology error shown")
        await steady_cursors(pilot, focused=screen.query_one("#f-scheduler", Input))

    assert snap_compare(app_on(), terminal_size=SIZE, run_before=run_before)


def test_rerun_dialog(snap_compare, snapshot_runs):
    async def run_before(pilot):
        await _result_ready(pilot)
        await pilot.press("r")
        box = pilot.app.screen.query_one("#rerun-topology", Input)
        await wait_for(pilot, lambda: box.value == "tiny-2llc", what="prefilled")
        box.value = "numa2-4llc"
        await steady_cursors(pilot, focused=box)

    assert snap_compare(app_on("fail"), terminal_size=SIZE, run_before=run_before)


def test_help(snap_compare, snapshot_runs):
    async def run_before(pilot):
        await _browser_ready(pilot)
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, HelpScreen)
                       and pilot.app.screen.query_one("#help-keys").is_mounted, what="help")

    assert snap_compare(app_on(), terminal_size=SIZE, run_before=run_before)


# ----------------------------------------------------------------------- the demo store
# Real recorded runs (assets/demo-store). Re-recording it (assets/record_demo_store.py)
# changes these pictures: update them with --snapshot-update and review.

DEMO_STORE = SNAPSHOT_STORE.parent / "demo-store"


@pytest.fixture
def demo_store(fixed_paths):
    import shutil
    from pathlib import Path

    src = Path(__file__).resolve().parents[2] / "assets" / "demo-store"
    if DEMO_STORE.exists():
        shutil.rmtree(DEMO_STORE)
    shutil.copytree(src, DEMO_STORE, ignore=shutil.ignore_patterns("index.sqlite*"))
    return DEMO_STORE


def _demo_run(name: str):
    return next(p for p in (DEMO_STORE / "runs").iterdir() if f"-{name}-" in p.name)


def test_demo_browser(snap_compare, demo_store):
    async def run_before(pilot):
        table = pilot.app.screen.query_one("#runs", DataTable)
        await wait_for(pilot, lambda: table.row_count == 6 and not pilot.app.screen.provisional,
                       what="demo runs (indexed)")

    assert snap_compare(make_app(demo_store), terminal_size=SIZE, run_before=run_before)


def test_demo_injected_error_result(snap_compare, demo_store):
    app = make_app(demo_store, open_path=_demo_run("demo_error"))
    assert snap_compare(app, terminal_size=SIZE, run_before=_result_ready)


def test_demo_injected_error_real_failure_dump(snap_compare, demo_store):
    async def run_before(pilot):
        await _result_ready(pilot)
        await pilot.press("F")
        await _dumps_loaded(pilot)

    app = make_app(demo_store, open_path=_demo_run("demo_error"))
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


async def _dumps_loaded(pilot):
    screen = pilot.app.screen
    await wait_for(pilot, lambda: screen.query(FailureDumpView)
                   and all(v.has_class("loaded") for v in screen.query(FailureDumpView)),
                   what="real dumps loaded")
    await pilot.pause()


# The headline of each kind of failure (banner and browser row), from real recorded runs.
@pytest.mark.parametrize("label", ["demo_error", "demo_stall", "demo_verifier", "demo_timeout"])
def test_demo_headline_per_failure_kind(snap_compare, demo_store, label):
    app = make_app(demo_store, open_path=_demo_run(label))
    assert snap_compare(app, terminal_size=(120, 16), run_before=_result_ready)


def test_demo_stall_dump_story(snap_compare, demo_store):
    """The failure dump of a real stall read as a story: exit, trigger, the stalled and
    longest-waiting tasks, the queues the kernel drained, one row per CPU."""
    async def run_before(pilot):
        await _result_ready(pilot)
        await pilot.press("7")
        await _dumps_loaded(pilot)

    app = make_app(demo_store, open_path=_demo_run("demo_stall"))
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_demo_stall_monitor_at_the_failure(snap_compare, demo_store):
    async def run_before(pilot):
        await _result_ready(pilot)
        await pilot.press("e")
        await pilot.pause()

    app = make_app(demo_store, open_path=_demo_run("demo_stall"))
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


async def _demo_browser_ready(pilot):
    table = pilot.app.screen.query_one("#runs", DataTable)
    await wait_for(pilot, lambda: table.row_count == 6, what="demo runs")


def test_demo_browser_no_color(snap_compare, demo_store, monkeypatch):
    """NO_COLOR: Textual draws in greys; failures still stand out (a mark, reverse)."""
    monkeypatch.setenv("NO_COLOR", "1")
    assert snap_compare(make_app(demo_store), terminal_size=SIZE,
                        run_before=_demo_browser_ready)


def test_demo_message_no_color(snap_compare, demo_store, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    app = make_app(demo_store, open_path=_demo_run("demo_stall"))
    assert snap_compare(app, terminal_size=SIZE, run_before=_result_ready)


def test_demo_browser_80x24(snap_compare, demo_store):
    """80x24: the message column keeps its room, the footer keeps Quit and Help."""
    assert snap_compare(make_app(demo_store), terminal_size=(80, 24),
                        run_before=_demo_browser_ready)


def test_demo_result_80x24(snap_compare, demo_store):
    app = make_app(demo_store, open_path=_demo_run("demo_stall"))
    assert snap_compare(app, terminal_size=(80, 24), run_before=_result_ready)
