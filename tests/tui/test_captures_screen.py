"""The periodic-capture view: steps through a real run's captures (tests/data/captures)."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import make_app, wait_for
from support import DATA as SUPPORT_DATA
from textual.widgets import OptionList, Static

from ktstr_tui.screens.captures import CapturesScreen
from ktstr_tui.widgets.failure_dump_view import FailureDumpView

pytestmark = [pytest.mark.tui, pytest.mark.asyncio]
DATA = SUPPORT_DATA / "captures" / "scx_simple-every-1s"


async def test_captures_step_with_n_and_p_and_a_skipped_one_says_why(tmp_path, store_root):
    run = tmp_path / "run"
    shutil.copytree(DATA, run)
    with open(run / "captures.jsonl", "a") as f:
        f.write(json.dumps({"tag": "periodic_005", "at_ms": 5000,
                            "skipped": "the workload ended [first]"}) + "\n")
    async with make_app(store_root).run_test(size=(120, 40)) as pilot:
        screen = CapturesScreen(run)
        await pilot.app.push_screen(screen)
        await wait_for(pilot, lambda: screen.loaded, what="capture list")
        ol = screen.query_one("#capture-list", OptionList)
        assert [str(ol.get_option_at_index(i).prompt) for i in range(ol.option_count)] == [
            "periodic_000  +0ms  frozen 9.3 ms", "periodic_001  +1000ms  frozen 6.9 ms",
            "periodic_002  +2006ms  frozen 55.9 ms", "periodic_003  +3000ms  frozen 6.2 ms",
            "periodic_004  +4001ms  frozen 4.1 ms",
            "periodic_005  at 5000ms  skipped: the workload ended [first]"]
        view = screen.query_one(FailureDumpView)
        assert view.path.name == "periodic_000.json"
        await pilot.press("n")
        await pilot.press("n")
        await wait_for(pilot, lambda: screen.query(FailureDumpView)
                       and screen.query_one(FailureDumpView).path.name == "periodic_002.json",
                       what="third capture")
        await pilot.press("p")
        await wait_for(pilot, lambda: screen.query_one(FailureDumpView).path.name
                       == "periodic_001.json", what="back to the second")
        view = screen.query_one(FailureDumpView)
        await wait_for(pilot, lambda: view.doc is not None, what="capture loaded")
        for _ in range(5):
            await pilot.press("n")
        await wait_for(pilot, lambda: not screen.query(FailureDumpView), what="skipped capture")
        assert str(screen.query_one("#capture-view").query_one(Static).render()) == \
            "periodic_005  at 5000ms  skipped: the workload ended [first]"
        await pilot.press("escape")
        assert not isinstance(pilot.app.screen, CapturesScreen)


async def test_a_run_without_captures_says_so(tmp_path, store_root):
    async with make_app(store_root).run_test(size=(120, 40)) as pilot:
        screen = CapturesScreen(tmp_path)
        await pilot.app.push_screen(screen)
        await wait_for(pilot, lambda: screen.loaded, what="empty list")
        assert str(screen.query_one("#capture-view").query_one(Static).render()) == \
            "this run has no periodic captures (ktstr run --capture-every)"
