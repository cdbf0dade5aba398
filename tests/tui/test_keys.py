"""Keys a scheduler developer predicts, on every screen, driven through the real app with
Pilot: tab keys focus the content and work from every widget (the failure-dump tree too);
Esc closes the innermost thing first; j/k/g/G move in lists, tables, trees and logs;
parent/child on p/o; marking and comparing two runs; the monitor history steps to the
failure; the failure dump links to the sched_ext dump and shows a map's whole value; the
command palette finds every action by name. Real data: the fixture store (recorded
artifacts) and a copy of the demo store (real runs)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import RUN_IDS, make_app, wait_for
from textual.command import CommandPalette
from textual.widgets import DataTable, Input, OptionList, TabbedContent, Tabs, Tree

from ktstr_tui.screens.browser import BrowserScreen
from ktstr_tui.screens.compare_screen import CompareScreen
from ktstr_tui.screens.help_screen import HelpScreen
from ktstr_tui.screens.rerun_dialog import RerunDialog
from ktstr_tui.screens.result import TABS, ResultScreen
from ktstr_tui.widgets.failure_dump_view import FailureDumpView, ValueScreen
from ktstr_tui.widgets.log_view import LogPane, LogView
from ktstr_tui.widgets.monitor_grid import MonitorGrid
from ktstr_tui.widgets.scx_dump_view import ScxDumpView

pytestmark = [pytest.mark.tui, pytest.mark.asyncio]
SIZE = (140, 44)
DEMO = Path(__file__).resolve().parents[2] / "assets" / "demo-store"


@pytest.fixture
def demo(tmp_path) -> Path:
    root = tmp_path / "demo-store"
    shutil.copytree(DEMO, root, ignore=shutil.ignore_patterns("index.sqlite*"))
    return root


def demo_run(root: Path, label: str) -> Path:
    return next((root / "runs").glob(f"*-demo_{label}-*"))


async def result_ready(pilot) -> ResultScreen:
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, ResultScreen)
                   and pilot.app.screen.view is not None, what="result loaded")
    return pilot.app.screen


async def dumps_loaded(pilot, screen) -> list[FailureDumpView]:
    await wait_for(pilot, lambda: screen.query(FailureDumpView)
                   and all(v.has_class("loaded") for v in screen.query(FailureDumpView)),
                   what="failure dumps loaded")
    return list(screen.query(FailureDumpView))


def pane_of(widget) -> str | None:
    for node in widget.ancestors_with_self:
        if node.id and node.id.startswith("tab-"):
            return node.id
    return None


async def open_fixture_result(pilot, key: str) -> ResultScreen:
    table = pilot.app.screen.query_one("#runs", DataTable)
    await wait_for(pilot, lambda: table.row_count == 5, what="runs listed")
    row = next(i for i in range(table.row_count)
               if table.coordinate_to_cell_key((i, 0)).row_key.value == RUN_IDS[key])
    table.move_cursor(row=row)
    await pilot.press("enter")
    return await result_ready(pilot)


# ----------------------------------------------------------------------------- result tabs


async def test_number_keys_switch_tabs_and_focus_the_content_from_every_tab(demo):
    async with make_app(demo, open_path=demo_run(demo, "stall")).run_test(size=SIZE) as pilot:
        screen = await result_ready(pilot)
        tabs = screen.query_one("#result-tabs", TabbedContent)
        for from_key, from_tab, _ in TABS:
            await pilot.press(from_key)
            await wait_for(pilot, lambda t=from_tab: pane_of(pilot.app.focused) == t,
                           what=f"focus inside {from_tab}")
            for key, tab, _ in TABS:
                if key == from_key:
                    continue
                await pilot.press(key)
                await wait_for(pilot, lambda t=tab: tabs.active == t
                               and pane_of(pilot.app.focused) == t
                               and not isinstance(pilot.app.focused, Tabs),
                               what=f"{key} from {from_tab} focuses {tab}")
                await pilot.press(from_key)
                await wait_for(pilot, lambda t=from_tab: pane_of(pilot.app.focused) == t,
                               what=f"back in {from_tab}")


async def test_letter_tab_keys_focus_the_content(demo):
    async with make_app(demo, open_path=demo_run(demo, "error")).run_test(size=SIZE) as pilot:
        screen = await result_ready(pilot)
        for key, tab, focused in (("l", "tab-sched", LogView), ("D", "tab-dump", ScxDumpView),
                                  ("m", "tab-message", None)):
            await pilot.press(key)
            await wait_for(pilot, lambda t=tab: pane_of(pilot.app.focused) == t, what=tab)
            assert screen.query_one("#result-tabs", TabbedContent).active == tab
            if focused is not None:
                assert isinstance(pilot.app.focused, focused)
        await pilot.press("l", "slash")  # keys of the content work at once
        assert isinstance(pilot.app.focused, Input)


async def test_tab_keys_work_from_inside_the_failure_dump_tree(demo):
    async with make_app(demo, open_path=demo_run(demo, "error")).run_test(size=SIZE) as pilot:
        screen = await result_ready(pilot)
        await pilot.press("7")
        views = await dumps_loaded(pilot, screen)
        tree = views[0].query_one(Tree)
        tree.parent.parent.collapsed = False  # the folded "dump as JSON"
        await pilot.pause()
        tree.focus()
        await pilot.press("j", "j", "k")
        assert pilot.app.focused is tree and tree.cursor_line == 1
        await pilot.press("3")
        await wait_for(pilot, lambda: isinstance(pilot.app.focused, MonitorGrid),
                       what="monitor from the tree")
        assert screen.query_one("#result-tabs", TabbedContent).active == "tab-monitor"


# ----------------------------------------------------------------------------- Esc


async def test_esc_closes_the_log_search_before_the_screen(demo):
    async with make_app(demo, open_path=demo_run(demo, "error")).run_test(size=SIZE) as pilot:
        screen = await result_ready(pilot)
        await pilot.press("4")
        await wait_for(pilot, lambda: isinstance(pilot.app.focused, LogView), what="log")
        await pilot.press("slash")
        box = screen.query_one("#tab-sched LogPane", LogPane).query_one(".log-search", Input)
        assert box.display and pilot.app.focused is box
        await pilot.press("escape")
        assert pilot.app.screen is screen and not box.display
        assert isinstance(pilot.app.focused, LogView)
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, BrowserScreen),
                       what="browser after the second Esc")


async def test_esc_closes_dialogs_before_the_screen(runs, store_root):
    async with make_app(store_root).run_test(size=SIZE) as pilot:
        screen = await open_fixture_result(pilot, "fail")
        for key, dialog in (("question_mark", HelpScreen), ("r", RerunDialog)):
            await pilot.press(key)
            await wait_for(pilot, lambda d=dialog: isinstance(pilot.app.screen, d), what=key)
            await pilot.press("escape")
            await wait_for(pilot, lambda: pilot.app.screen is screen, what=f"{key} closed")


async def test_esc_closes_a_map_value_then_the_screen(demo):
    async with make_app(demo, open_path=demo_run(demo, "stall")).run_test(size=SIZE) as pilot:
        screen = await result_ready(pilot)
        await pilot.press("7")
        view = (await dumps_loaded(pilot, screen))[0]
        maps = view.query_one(".dump-maps", DataTable)
        maps.focus()
        await pilot.press("g", "enter")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, ValueScreen), what="value")
        shown = str(pilot.app.screen.query_one("#map-value").render())
        assert '"start_ns": 13108911259' in shown and '"injected": 2' in shown
        await pilot.press("escape")
        await wait_for(pilot, lambda: pilot.app.screen is screen, what="value closed")


# ----------------------------------------------------------------------------- vim motions


async def test_browser_j_k_g_G(runs, store_root):
    async with make_app(store_root).run_test(size=SIZE) as pilot:
        table = pilot.app.screen.query_one("#runs", DataTable)
        await wait_for(pilot, lambda: table.row_count == 5, what="runs")
        assert pilot.app.focused is table and table.cursor_row == 0
        await pilot.press("j", "j")
        assert table.cursor_row == 2
        await pilot.press("k")
        assert table.cursor_row == 1
        await pilot.press("G")
        assert table.cursor_row == 4
        await pilot.press("g")
        assert table.cursor_row == 0


async def test_log_j_k_g_G(demo):
    async with make_app(demo, open_path=demo_run(demo, "verifier")).run_test(
            size=SIZE) as pilot:
        await result_ready(pilot)
        await pilot.press("4")
        await wait_for(pilot, lambda: isinstance(pilot.app.focused, LogView)
                       and pilot.app.focused.line_count > 100, what="log indexed")
        log = pilot.app.focused
        await pilot.press("j", "j", "j")
        assert log.scroll_offset.y == 3
        await pilot.press("k")
        assert log.scroll_offset.y == 2
        await pilot.press("G")
        assert log.scroll_offset.y == log.line_count - log.scrollable_content_region.height
        await pilot.press("g")
        assert log.scroll_offset.y == 0


async def test_tables_and_lists_j_k(demo):
    async with make_app(demo, open_path=demo_run(demo, "stall")).run_test(size=SIZE) as pilot:
        screen = await result_ready(pilot)
        await pilot.press("2")
        stats = screen.query_one("#stats", DataTable)
        await wait_for(pilot, lambda: pilot.app.focused is stats, what="stats focused")
        await pilot.press("j", "j", "k")
        assert stats.cursor_row == 1
        await pilot.press("G")
        assert stats.cursor_row == stats.row_count - 1
        await pilot.press("7")
        view = (await dumps_loaded(pilot, screen))[0]
        cpus = view.query_one(".dump-cpus", DataTable)
        await wait_for(pilot, lambda: pilot.app.focused is cpus, what="cpu table focused")
        await pilot.press("j", "j")
        assert cpus.cursor_row == 2
        await pilot.press("6")
        sources = screen.query_one("#dump-sources", OptionList)
        assert "j" in sources._bindings.key_to_bindings


async def test_parent_is_p_child_is_o_and_k_is_up(runs, store_root):
    async with make_app(store_root).run_test(size=SIZE) as pilot:
        screen = await open_fixture_result(pilot, "fail")
        await pilot.press("2")
        await wait_for(pilot, lambda: isinstance(pilot.app.focused, DataTable), what="stats")
        await pilot.press("j", "k")  # up in the table: no child run opens
        assert pilot.app.screen is screen
        await pilot.press("o")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, ResultScreen)
                       and pilot.app.screen.path.name == RUN_IDS["rerun"], what="child")
        await pilot.press("p")
        await wait_for(pilot, lambda: pilot.app.screen.path.name == RUN_IDS["fail"],
                       what="parent")


# ----------------------------------------------------------------------------- compare


async def test_mark_one_run_then_compare_with_another(demo):
    async with make_app(demo).run_test(size=SIZE) as pilot:
        table = pilot.app.screen.query_one("#runs", DataTable)
        await wait_for(pilot, lambda: table.row_count == 6, what="demo runs")
        await pilot.press("equals_sign")  # nothing marked: a hint, no screen
        assert isinstance(pilot.app.screen, BrowserScreen)
        first = table.coordinate_to_cell_key((0, 0)).row_key.value
        await pilot.press("space", "j", "j")
        third = table.coordinate_to_cell_key((2, 0)).row_key.value
        await pilot.press("equals_sign")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, CompareScreen)
                       and pilot.app.screen.rows, what="compare")
        cmp = pilot.app.screen
        assert (cmp.a.name, cmp.b.name) == (first, third)
        ids = next(r for r in cmp.rows if r.field == "id")
        assert (ids.a, ids.b) == (first, third)
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, BrowserScreen), what="back")


# ----------------------------------------------------------------------------- monitor, dump links


async def test_monitor_history_steps_to_the_failure(demo):
    async with make_app(demo, open_path=demo_run(demo, "stall")).run_test(size=SIZE) as pilot:
        screen = await result_ready(pilot)
        await pilot.press("3")
        grid = screen.query_one("#monitor-history", MonitorGrid)
        await wait_for(pilot, lambda: pilot.app.focused is grid, what="grid focused")
        assert grid.failure is not None
        failure = grid.failure
        assert grid.all[failure + 1].exit_kind == "1026"
        await pilot.press("e")
        assert grid.cursor == failure
        shown = str(grid.render())
        assert f"sample {failure + 1}/{len(grid.all)}" in shown
        assert "the last before the exit" in shown
        assert " ~   2 " in shown  # CPU 2 idle with runnable tasks, marked without colour
        assert "~ idle with runnable tasks" in shown  # the legend
        # the DSQs samples do not hold, from the failure dump, from the exit on
        assert ("DSQs in the failure dump (frozen at the exit): bypass cpu 0 1 · bypass cpu 2 2"
                " · global node 0 0 · user 0x0 0 · user 0x1 0") in shown  # named as the dump names them
        await pilot.press("left_square_bracket")
        assert grid.cursor == failure - 1
        assert "DSQs in the failure dump" not in str(grid.render())
        await pilot.press("right_square_bracket", "right_square_bracket")
        assert grid.cursor == failure + 1
        await pilot.press("left_curly_bracket")
        assert grid.cursor == failure - 9
        await pilot.press("g")
        assert grid.cursor == 0
        await pilot.press("G")
        assert grid.cursor == len(grid.all) - 1
        await pilot.press("1", "e")  # the screen's key: the monitor at the failure
        await wait_for(pilot, lambda: pilot.app.focused is grid, what="monitor again")
        assert grid.cursor == failure


async def test_failure_dump_links_to_the_sched_ext_dump_and_the_monitor(demo):
    async with make_app(demo, open_path=demo_run(demo, "stall")).run_test(size=SIZE) as pilot:
        screen = await result_ready(pilot)
        await pilot.press("7")
        views = await dumps_loaded(pilot, screen)
        cpus = views[0].query_one(".dump-cpus", DataTable)
        await wait_for(pilot, lambda: pilot.app.focused is cpus, what="cpus focused")
        await pilot.press("j", "j", "enter")  # CPU 2
        dump = screen.query_one("#scx-dump", ScxDumpView)
        await wait_for(pilot, lambda: pilot.app.focused is dump, what="sched_ext dump")
        assert dump.lines[dump.pointer].startswith("CPU 2   :")
        await pilot.press("7")
        await wait_for(pilot, lambda: pilot.app.focused is cpus, what="back to the dump")
        dsqs = views[0].query_one(".dump-dsqs", DataTable)
        dsqs.focus()
        await pilot.press("g", "j", "j", "j", "j", "enter")  # bypass cpu 0: spin-3
        await wait_for(pilot, lambda: pilot.app.focused is dump, what="task in dump")
        assert dump.lines[dump.pointer].strip().startswith("R spin-3[120]")
        await pilot.press("7")
        await wait_for(pilot, lambda: pane_of(pilot.app.focused) == "tab-failure", what="dump")
        await pilot.press("M")
        grid = screen.query_one("#monitor-history", MonitorGrid)
        await wait_for(pilot, lambda: pilot.app.focused is grid, what="monitor at failure")
        assert grid.cursor == grid.failure


async def test_primary_and_repro_dumps_are_separate_sub_tabs(demo):
    async with make_app(demo, open_path=demo_run(demo, "error")).run_test(size=SIZE) as pilot:
        screen = await result_ready(pilot)
        await pilot.press("7")
        await dumps_loaded(pilot, screen)
        sub = screen.query_one("#dump-tabs", TabbedContent)
        labels = [str(t.label) for t in sub.query("ContentTab")]
        assert labels == ["primary", "repro"]
        assert [v.path.name for v in screen.query(FailureDumpView)] == [
            "demo_error.failure-dump.json", "demo_error.repro.failure-dump.json"]


# ----------------------------------------------------------------------------- palette


@pytest.mark.parametrize("query,title", [
    ("compare", "Compare with parent"), ("failure", "Jump to failure"),
    ("error", "Jump to failure"), ("dump", "Open failure dump"),
    ("auto", "Auto-repro"), ("rerun", "Rerun")])
async def test_command_palette_offers_every_action_by_name(runs, store_root, query, title):
    async with make_app(store_root).run_test(size=SIZE) as pilot:
        await open_fixture_result(pilot, "rerun")  # has a parent: compare is available
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, CommandPalette),
                       what="palette")
        await pilot.press(*query)
        options = pilot.app.screen.query_one("CommandList", OptionList)
        await wait_for(pilot, lambda: any(title in str(options.get_option_at_index(i).prompt)
                                          for i in range(options.option_count)),
                       what=f"'{title}' for '{query}'")
        await pilot.press("escape")


async def test_browser_palette_offers_compare(runs, store_root):
    async with make_app(store_root).run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, CommandPalette),
                       what="palette")
        await pilot.press(*"compare")
        options = pilot.app.screen.query_one("CommandList", OptionList)
        await wait_for(pilot, lambda: any("Compare" in str(options.get_option_at_index(i).prompt)
                                          for i in range(options.option_count)),
                       what="Compare in the browser")


async def test_live_screen_tab_keys_focus_the_content_and_esc_closes_search(store_root):
    from ktstr_tui.screens.live_run import LiveRunScreen
    from ktstr_vmm.fsutil import atomic_write_json
    from ktstr_vmm.rundir.layout import RunDir

    run = RunDir(store_root / "runs" / "20261125-120000-scx_simple-tiny-2llc-beef")
    run.path.mkdir()
    atomic_write_json(run / "spec.json", {"name": "scx_simple", "scheduler": "scx_simple",
                                          "topology": "1n2l2c1t", "preset": "tiny-2llc"})
    run.write_status("running")
    (run.path / "sched.log").write_text("scx_simple: started\n")
    async with make_app(store_root, open_path=run.path).run_test(size=SIZE) as pilot:
        screen = pilot.app.screen
        assert isinstance(screen, LiveRunScreen)
        tabs = screen.query_one("#live-tabs", TabbedContent)
        for key in ("2", "3", "1"):
            await pilot.press(key)
            await wait_for(pilot, lambda: pilot.app.focused is not None
                           and tabs.active in {n.id for n in pilot.app.focused.ancestors}
                           and not isinstance(pilot.app.focused, Tabs), what=f"live tab {key}")
        assert isinstance(pilot.app.focused, LogView)
        await pilot.press("slash")
        assert isinstance(pilot.app.focused, Input)
        await pilot.press("escape")
        assert pilot.app.screen is screen and isinstance(pilot.app.focused, LogView)
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, BrowserScreen), what="back")
