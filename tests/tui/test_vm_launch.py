"""End to end: the launcher starts a real `ktstr run` (real kernel, real scx_simple, QEMU)
and the app follows it live to its result screen."""

from __future__ import annotations

import pytest
from conftest import make_app, wait_for
from textual.widgets import Input

from ktstr_cli.main import COMMAND_MODULES
from ktstr_tui.screens.launcher import LauncherScreen
from ktstr_tui.screens.live_run import LiveRunScreen
from ktstr_tui.screens.result import ResultScreen

pytestmark = [pytest.mark.tui, pytest.mark.vm, pytest.mark.slow, pytest.mark.asyncio,
              pytest.mark.skipif("run" not in COMMAND_MODULES,
                                 reason="`ktstr run` is not registered in ktstr_cli.main yet")]


async def test_launcher_run_reaches_the_result_screen(store, schedulers, tmp_path, monkeypatch):
    assert "scx_simple" in schedulers
    app = make_app(store)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("n")
        assert isinstance(app.screen, LauncherScreen)
        app.screen.query_one("#f-topology", Input).value = "tiny-1llc"
        app.screen.query_one("#f-duration", Input).value = "2s"
        await pilot.pause()
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, LiveRunScreen), timeout=120,
                       what="the live screen of the new run")
        live = app.screen
        await wait_for(pilot, lambda: live.status is not None and live.status.phase == "running",
                       timeout=300, what="the guest running")
        await wait_for(pilot, lambda: isinstance(app.screen, ResultScreen)
                       and app.screen.view is not None, timeout=600, what="the result screen")
        result = app.screen.view.result
        assert result is not None, app.screen.view.result_error
        # the verdict is the pipeline's business (TCG timing can fail a monitor threshold);
        # the TUI's is to get there and show it
        assert app.screen.query_one("#verdict").verdict == result.verdict
        assert result.verdict in ("pass", "fail", "inconclusive"), result.message
