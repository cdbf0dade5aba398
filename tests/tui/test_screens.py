"""Pilot tests: every screen and action key of the workstation on the fixture store."""

from __future__ import annotations

import shutil

import pytest
from conftest import RUN_IDS, make_app, wait_for
from textual.widgets import Collapsible, DataTable, Input, Static, Tree

from ktstr_tui.screens.browser import BrowserScreen
from ktstr_tui.screens.confirm import ConfirmScreen
from ktstr_tui.screens.dump_screen import DumpScreen
from ktstr_tui.screens.help_screen import HelpScreen
from ktstr_tui.screens.launcher import LauncherScreen
from ktstr_tui.screens.live_run import LiveRunScreen
from ktstr_tui.screens.rerun_dialog import RerunDialog
from ktstr_tui.screens.result import ResultScreen
from ktstr_tui.screens.too_small import TooSmallScreen
from ktstr_tui.widgets.failure_dump_view import FailureDumpView
from ktstr_tui.widgets.log_view import LogPane
from ktstr_tui.widgets.scx_dump_view import ScxDumpView
from ktstr_tui.widgets.verdict_banner import VerdictBanner

pytestmark = [pytest.mark.tui, pytest.mark.asyncio]
SIZE = (120, 40)


def text(widget) -> str:
    return str(widget.render())


def table_column(table: DataTable, col: str) -> list[str]:
    return [str(table.get_cell(row_key, col)) for row_key in table.rows]


class Launches:
    """Records app.launch calls instead of spawning `ktstr` (spawning has its own test)."""

    def __init__(self, app) -> None:
        self.calls: list[list[str]] = []
        app.launch = lambda args, **kw: self.calls.append(list(args))


async def open_browser(pilot):
    screen = pilot.app.screen
    assert isinstance(screen, BrowserScreen)
    await wait_for(pilot, lambda: screen.query_one("#runs", DataTable).row_count > 0,
                   what="runs listed")
    return screen


async def select_run(pilot, browser: BrowserScreen, run_id: str) -> None:
    table = browser.query_one("#runs", DataTable)
    row = next(i for i, s in enumerate(browser.runs) if s.run_id == run_id)
    table.move_cursor(row=row)
    await pilot.pause()


async def open_result(pilot, key: str) -> ResultScreen:
    browser = await open_browser(pilot)
    await select_run(pilot, browser, RUN_IDS[key])
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, ResultScreen)
                   and pilot.app.screen.view is not None, what=f"result of {key}")
    return pilot.app.screen


# ----------------------------------------------------------------------------- browser


async def test_a_big_unindexed_store_lists_its_newest_runs_then_the_index(tmp_path):
    """520 runs, never indexed: the newest may be on screen first (read straight from their
    directories: Store.peek_newest, tested in test_store), and the indexed listing takes
    over with every run, newest first."""
    from support.store_helpers import T0, make_run

    ids = [f"20261120-{i // 60:02d}{i % 60:02d}00-basic-tiny-2llc-{i:04x}" for i in range(520)]
    for i, rid in enumerate(ids):
        make_run(tmp_path, rid, started=T0 + i)
    async with make_app(tmp_path).run_test(size=SIZE) as pilot:
        browser = pilot.app.screen
        await wait_for(pilot, lambda: len(browser.runs) == 520 and not browser.provisional,
                       what="the indexed listing")
        assert [s.run_id for s in browser.runs[:3]] == ids[:-4:-1]
        assert text(browser.query_one("#browser-status", Static)).startswith("520 runs · ")
    assert (tmp_path / "index.sqlite").exists()


async def test_browser_lists_runs_newest_first_with_verdicts(store_root):
    async with make_app(store_root).run_test(size=SIZE) as pilot:
        browser = await open_browser(pilot)
        table = browser.query_one("#runs", DataTable)
        assert [s.run_id for s in browser.runs] == sorted(RUN_IDS.values(), reverse=True)
        assert table_column(table, "verdict") == ["running", "corrupt", "fail", "fail", "pass"]
        assert text(browser.query_one("#browser-status", Static)).startswith("5 runs · ")


async def test_browser_filters_by_text_and_cycles_verdicts(store_root):
    async with make_app(store_root).run_test(size=SIZE) as pilot:
        browser = await open_browser(pilot)
        table = browser.query_one("#runs", DataTable)
        await pilot.press("v")  # -> fail
        await wait_for(pilot, lambda: table.row_count == 2, what="fail filter")
        assert text(browser.query_one("#verdict-filter", Static)) == "verdict: fail (v)"
        await pilot.press("v")  # -> pass
        await wait_for(pilot, lambda: table.row_count == 1, what="pass filter")
        for _ in range(4):  # inconclusive, skip, running, all
            await pilot.press("v")
        await wait_for(pilot, lambda: table.row_count == 5, what="all again")
        await pilot.press("slash")
        await pilot.press(*"smt-2llc")
        await wait_for(pilot, lambda: table.row_count == 2, what="text filter")
        await pilot.press("escape")
        await wait_for(pilot, lambda: table.row_count == 5, what="filter cleared")


async def test_browser_updates_live_when_a_run_appears(runs, store_root):
    async with make_app(store_root, watch=True).run_test(size=SIZE) as pilot:
        browser = await open_browser(pilot)
        await wait_for(pilot, lambda: browser._watch.ready.is_set(), what="watch set up")
        assert browser._watch.error is None
        new = store_root / "runs" / "20261118-103000-late-tiny-2llc-7777"
        shutil.copytree(runs["pass"], new)
        await wait_for(pilot, lambda: browser.query_one("#runs", DataTable).row_count == 6,
                       what="new run listed by the watcher")
        assert new.name in [s.run_id for s in browser.runs]


async def test_browser_delete_asks_and_removes(runs, store_root):
    async with make_app(store_root).run_test(size=SIZE) as pilot:
        browser = await open_browser(pilot)
        await select_run(pilot, browser, RUN_IDS["pass"])
        await pilot.press("d")
        assert isinstance(pilot.app.screen, ConfirmScreen)
        await pilot.press("n")
        assert runs["pass"].exists()
        await pilot.press("d")
        await pilot.press("y")
        await wait_for(pilot, lambda: not runs["pass"].exists(), what="run deleted")
        await wait_for(pilot, lambda: browser.query_one("#runs", DataTable).row_count == 4,
                       what="table reloaded")


async def test_browser_new_run_opens_launcher_and_launches_ktstr_run(store_root):
    app = make_app(store_root)
    launches = Launches(app)
    async with app.run_test(size=SIZE) as pilot:
        await open_browser(pilot)
        await pilot.press("n")
        assert isinstance(app.screen, LauncherScreen)
        launcher = app.screen
        topo = launcher.query_one("#f-topology", Input)
        topo.value = "1n3l2c1t"
        await pilot.pause()
        assert text(launcher.query_one("#err-topology", Static)) == ""
        assert "1n3l2c1t: 1 node(s), 3 LLC(s)" in text(launcher.query_one("#topo-drawing"))
        topo.value = "2n3l2c1t"
        await pilot.pause()
        assert text(launcher.query_one("#err-topology", Static)) == (
            "topology '2n3l2c1t': LLCs (3) must be a multiple of NUMA nodes (2)")
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, LauncherScreen)  # refused while a field is bad
        launcher.query_one("#f-duration", Input).value = "10x"
        await pilot.pause()
        assert "duration" in text(launcher.query_one("#err-duration", Static))
        launcher.query_one("#f-duration", Input).value = "3s"
        topo.value = "smt-2llc"
        launcher.query_one("#f-workload", Input).value = "spin:2,sleep:1"
        await pilot.pause()
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: launches.calls, what="launch")
        assert launches.calls == [["run", "--scheduler", "scx_simple", "--topology", "smt-2llc",
                                   "--workload", "spin:2,sleep:1", "--duration", "3s"]]
        assert isinstance(app.screen, BrowserScreen)


async def test_browser_rerun_dialog_validates_and_launches_rerun(store_root):
    app = make_app(store_root)
    launches = Launches(app)
    async with app.run_test(size=SIZE) as pilot:
        browser = await open_browser(pilot)
        await select_run(pilot, browser, RUN_IDS["fail"])
        await pilot.press("r")
        assert isinstance(app.screen, RerunDialog)
        dialog = app.screen
        box = dialog.query_one("#rerun-topology", Input)
        await wait_for(pilot, lambda: box.value == "tiny-2llc", what="parent topology prefilled")
        assert "scheduler: scx_errsim" in text(dialog.query_one("#rerun-settings", Static))
        box.value = "tiny-9llc"
        await pilot.pause()
        assert text(dialog.query_one("#rerun-error", Static)).startswith(
            "unknown topology 'tiny-9llc' (did you mean")
        assert dialog.query_one("#rerun-go").disabled
        box.value = "smt-3llc"
        await pilot.pause()
        await pilot.press("enter")
        await wait_for(pilot, lambda: launches.calls, what="rerun launch")
        assert launches.calls == [["rerun", RUN_IDS["fail"], "--topology", "smt-3llc"]]


# ----------------------------------------------------------------------------- result


async def test_result_shows_verdict_sections_and_stats(store_root):
    async with make_app(store_root).run_test(size=SIZE) as pilot:
        screen = await open_result(pilot, "fail")
        banner = screen.query_one("#verdict", VerdictBanner)
        assert banner.verdict == "fail"
        assert banner.has_class("-fail")
        assert text(banner).startswith(" FAIL   ktstr_test 'errsim' [sched=scx_errsim]")
        titles = [c.title for c in screen.query_one("#sections").query(Collapsible)]
        assert titles == ["--- info ---", "--- stats ---", "--- scheduler log ---",
                          "--- sched_ext dump ---"]
        stats = screen.query_one("#stats", DataTable)
        rows = [[str(c) for c in stats.get_row(k)] for k in stats.rows]
        assert ["stats.workers", "4"] in rows
        assert ["measure.hackbench.time_s", "5.717"] in rows  # a workload's own number
        assert not [r for r in rows if r[0].startswith("stats.measure")]
        info = text(screen.query_one("#run-info", Static))
        assert "observed 1n2l2c1t" in info and "1 child run(s) (o)" in info


async def test_result_tabs_logs_and_sched_ext_dump_jumps(store_root):
    async with make_app(store_root).run_test(size=SIZE) as pilot:
        screen = await open_result(pilot, "fail")
        await pilot.press("l")
        pane = screen.query_one("#tab-sched LogPane", LogPane)
        await wait_for(pilot, lambda: pane.view.line_count == 110, what="sched.log indexed")
        await pilot.press("D")
        dump = screen.query_one("#scx-dump", ScxDumpView)
        await wait_for(pilot, lambda: dump.cpus, what="dump landmarks")
        dump.focus()
        await pilot.press("c")
        assert dump.lines[dump.pointer].startswith("CPU 2   :")
        await pilot.press("c")
        assert dump.lines[dump.pointer].startswith("CPU 0   :")
        await pilot.press("t")
        assert dump.lines[dump.pointer].strip().startswith("*R init[123]")
        await pilot.press("C")
        assert dump.lines[dump.pointer].startswith("CPU 0   :")


async def test_result_opens_the_shell_log_of_a_run_that_had_a_shell(runs, store_root):
    """`9` shows shell.log (recorded from a real guest through a pty) in the log view, the
    terminal's control bytes applied and ls's colours kept; a run without one has no such
    tab and `9` does nothing."""
    from support import DATA

    shutil.copy(DATA / "shell" / "pty.shell.log", runs["pass"] / "shell.log")
    async with make_app(store_root).run_test(size=SIZE) as pilot:
        screen = await open_result(pilot, "pass")
        await wait_for(pilot, lambda: screen.query("#tab-shell"), what="the shell tab")
        await pilot.press("9")
        tabs = screen.query_one("#result-tabs")
        assert tabs.active == "tab-shell"
        pane = screen.query_one("#tab-shell LogPane", LogPane)
        await wait_for(pilot, lambda: pane.view.line_count == 18, what=lambda: f"shell.log indexed ({pane.view.line_count})")
        assert pane.view.has_focus
        lines = [pane.view._line_text(i) for i in range(pane.view.line_count)]
        assert [t.plain for t in lines[6:12]] == [
            "ktstr:/# ",
            "--- shell 1 +9.9s: opened by ktstr shell: pty 120x40, pid 117 ---",
            "--- shell 1 output ---",
            "ls --color=always /sys/kernel/sched_ext",
            "enable_seq   hotplug_seq  nr_rejected  root         state        switch_all",
            "ktstr:/# scx | head -3"]
        root = lines[10].plain.index("root")
        assert [(sp.start, sp.end, str(sp.style)) for sp in lines[10].spans
                if sp.start == root] == [(root, root + 4, "bold color(4)")]  # ESC[1;34m
        await pilot.press("escape")
        screen = await open_result(pilot, "fail")
        assert not screen.query("#tab-shell") and screen.check_action("show_tab", ("tab-shell",)) is None
        await pilot.press("9")
        assert screen.query_one("#result-tabs").active == "tab-message"


async def test_result_failure_dump_tree_and_per_cpu_table(store_root):
    async with make_app(store_root).run_test(size=SIZE) as pilot:
        screen = await open_result(pilot, "fail")
        await pilot.press("F")
        view = screen.query_one(FailureDumpView)
        await wait_for(pilot, lambda: view.has_class("loaded"), what="dump loaded")
        table = view.query_one(".dump-cpus", DataTable)
        assert [tuple(map(str, table.get_row_at(i))) for i in range(table.row_count)] == [
            ("0", "init[123]", "ext", "1", "", "", "", ""),
            ("1", "init[124]", "ext", "1", "", "", "", ""),
            ("2", "swapper/2[0]", "idle", "2", "", "1", "", "")]
        summary = text(view.query_one(".dump-summary"))
        assert summary.startswith("exit      SCX_EXIT_ERROR_BPF (1025)  scx_bpf_error: "
                                  "scx_errsim.bpf.c:74: errsim: injected error after 60 "
                                  "enqueues (pid 31)")
        maps = view.query_one(".dump-maps", DataTable)
        assert [tuple(map(str, maps.get_row_at(i))) for i in range(maps.row_count)] == [
            ("errsim.bss", "ARRAY", "16 B x 1", "nr_enqueued=60 inject_after=60"),
            ("errsim_pcpu", "PERCPU_ARRAY", "8 B x 1", "1 entries: [0] 21 17 22 null")]
        tree = view.query_one(Tree)
        assert [str(c.label).split(":")[0] for c in tree.root.children][:3] == [
            "schema", "maps", "rq_scx_states"]


async def test_result_shows_the_schedulers_last_globals(store_root):
    async with make_app(store_root).run_test(size=SIZE) as pilot:
        screen = await open_result(pilot, "fail")
        await pilot.press("8")
        assert screen.query_one("#result-tabs").active == "tab-globals"
        table = screen.query_one("#globals", DataTable)
        assert [tuple(map(str, table.get_row_at(i))) for i in range(table.row_count)] == [
            ("scx_errs.bss", "injected", "true"), ("scx_errs.bss", "nr_enqueued", "60")]
        assert text(screen.query_one("#globals-note", Static)).startswith(
            "the scheduler's global variables as last read while it ran (2 reads")
        await pilot.press("escape")
        screen = await open_result(pilot, "pass")
        await pilot.press("8")
        assert text(screen.query_one("#globals-note", Static)).startswith(
            "no BPF globals recorded for this run")


async def test_placeholder_dump_says_so_and_parent_child_navigation(store_root):
    async with make_app(store_root).run_test(size=SIZE) as pilot:
        screen = await open_result(pilot, "rerun")
        await pilot.press("F")
        view = screen.query_one(FailureDumpView)
        await wait_for(pilot, lambda: view.query(".placeholder-note"), what="placeholder note")
        note = text(view.query_one(".placeholder-note"))
        assert note.startswith("placeholder dump: the VM's state was not captured: test failed "
                               "at stage `scheduler attach`")
        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, ResultScreen)
                       and pilot.app.screen.path.name == RUN_IDS["fail"]
                       and pilot.app.screen.view is not None, what="parent opened")
        await pilot.press("o")
        await wait_for(pilot, lambda: pilot.app.screen.path.name == RUN_IDS["rerun"],
                       what="child opened")


async def test_result_actions_auto_repro_and_rerun(store_root):
    app = make_app(store_root)
    launches = Launches(app)
    async with app.run_test(size=SIZE) as pilot:
        await open_result(pilot, "fail")
        await pilot.press("a")
        await pilot.press("r")
        assert isinstance(app.screen, RerunDialog)
        box = app.screen.query_one("#rerun-topology", Input)
        await wait_for(pilot, lambda: box.value == "tiny-2llc", what="prefilled")
        box.value = "1n2l2c2t"
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(launches.calls) == 2, what="launches")
        assert launches.calls == [["repro", RUN_IDS["fail"]],
                                  ["rerun", RUN_IDS["fail"], "--topology", "1n2l2c2t"]]


async def test_corrupt_result_opens_as_error_view(store_root):
    async with make_app(store_root).run_test(size=SIZE) as pilot:
        screen = await open_result(pilot, "corrupt")
        assert screen.query_one("#verdict", VerdictBanner).verdict == "error"
        err = text(screen.query_one(".error-view"))
        assert "result.json: truncated JSON (" in err
        await pilot.press("escape")
        assert isinstance(pilot.app.screen, BrowserScreen)


async def test_command_palette_runs_screen_actions(store_root):
    app = make_app(store_root)
    launches = Launches(app)
    async with app.run_test(size=SIZE) as pilot:
        await open_result(pilot, "fail")
        await pilot.press("ctrl+p")
        await pilot.press(*"Auto-repro")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_for(pilot, lambda: launches.calls, what="palette action")
        assert launches.calls == [["repro", RUN_IDS["fail"]]]


async def test_help_lists_keys_of_the_screen(store_root):
    async with make_app(store_root).run_test(size=SIZE) as pilot:
        await open_result(pilot, "fail")
        await pilot.press("question_mark")
        assert isinstance(pilot.app.screen, HelpScreen)
        keys = text(pilot.app.screen.query_one("#help-keys", Static))
        assert keys.startswith("Result screen\n  q             Quit\n  ?             Help\n"
                               "  esc           Back\n  a             Auto-repro\n")
        for line in ("  r             Rerun", "  1 m           Message", "Logs\n",
                     "  f             Follow", "Lists and tables\n  j             Down"):
            assert line in keys
        assert "question_mark" not in keys and "slash" not in keys
        textual = text(pilot.app.screen.query_one("#help-textual", Static))
        assert "Input:" not in keys and "DataTable: " in textual
        await pilot.press("escape")
        assert isinstance(pilot.app.screen, ResultScreen)


# ----------------------------------------------------------------------------- other inputs


async def test_terminal_too_small_says_so_and_recovers(store_root):
    async with make_app(store_root).run_test(size=(50, 12)) as pilot:
        await pilot.pause()
        assert isinstance(pilot.app.screen, TooSmallScreen)
        assert text(pilot.app.screen.query_one("#too-small")) == (
            "Terminal too small: 50x12, ktstr tui needs at least 60x16. Enlarge the window "
            "(q quits).")
        await pilot.resize_terminal(100, 30)
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, BrowserScreen),
                       what="browser back")


async def test_dump_file_opens_viewer_and_corrupt_dump_is_an_error_view(tmp_path, store_root):
    from fixture_store import DUMPS

    async with make_app(store_root, open_path=DUMPS / "badtypes.failure-dump.json").run_test(
            size=SIZE) as pilot:
        assert isinstance(pilot.app.screen, DumpScreen)
        view = pilot.app.screen.query_one(FailureDumpView)
        await wait_for(pilot, lambda: view.query(".error-view"), what="error view")
        assert text(view.query_one(".error-view")).startswith(
            f"cannot show this dump: failure dump {DUMPS / 'badtypes.failure-dump.json'}: "
            "maps must be an array, got string")
    truncated = tmp_path / "t.failure-dump.json"
    truncated.write_text('{"schema": "single", "maps": [')
    async with make_app(store_root, open_path=truncated).run_test(size=SIZE) as pilot:
        view = pilot.app.screen.query_one(FailureDumpView)
        await wait_for(pilot, lambda: view.query(".error-view"), what="error view")
        assert text(view.query_one(".error-view")).endswith(
            f"failure dump {truncated}: truncated JSON (30 bytes)")
        await pilot.press("escape")
        assert isinstance(pilot.app.screen, BrowserScreen)


async def test_a_log_file_opens_in_the_log_view_and_back_goes_to_the_browser(runs, store_root):
    from textual.widgets import Footer, Header

    from ktstr_tui.screens.log_screen import LogScreen

    async with make_app(store_root, open_path=runs["fail"] / "sched.log").run_test(
            size=SIZE) as pilot:
        screen = pilot.app.screen
        assert isinstance(screen, LogScreen)
        pane = screen.query_one(LogPane)
        await wait_for(pilot, lambda: pane.view.line_count == 110, what="indexed")
        assert pane.view.lexer == "schedlog"
        await wait_for(pilot, lambda: screen.query(Header) and screen.query(Footer),
                       what="header and footer after the first lines")
        await pilot.press("slash", *"EXIT:", "enter")
        await wait_for(pilot, lambda: pane.view.pointer == 109, what="search hit")
        await pilot.press("escape", "escape")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, BrowserScreen),
                       what="the browser built on the way back")
        await open_browser(pilot)


async def test_artifact_directory_opens_its_failure_dump(store_root):
    from fixture_store import REPO

    arts = REPO / "tests" / "data" / "store" / "ktstr-artifacts"
    async with make_app(store_root, open_path=arts).run_test(size=SIZE) as pilot:
        assert isinstance(pilot.app.screen, DumpScreen)
        view = pilot.app.screen.query_one(FailureDumpView)
        await wait_for(pilot, lambda: view.query(".placeholder-note"), what="placeholder")


async def test_launch_of_a_command_that_makes_no_run_is_reported(store_root):
    """Real spawn: `ktstr --version` exits at once without a run directory."""
    app = make_app(store_root)
    notes = []
    async with app.run_test(size=SIZE) as pilot:
        orig = app.notify
        app.notify = lambda msg, **kw: (notes.append(msg), orig(msg, **kw))
        app.launch(["--version"])
        await wait_for(pilot, lambda: any("before a run appeared" in n for n in notes),
                       timeout=120, what="launch failure")
    assert any(n.startswith("ktstr --version exited (0) before a run appeared: ktstr ")
               for n in notes), notes


async def test_result_json_written_after_open_is_not_needed_for_logs(runs, store_root):
    """A run directory deleted while its result is open: the app stays up and says so."""
    async with make_app(store_root, open_path=runs["live"]).run_test(size=SIZE) as pilot:
        assert isinstance(pilot.app.screen, LiveRunScreen)
        screen = pilot.app.screen
        await wait_for(pilot, lambda: screen.status is not None, what="status read")
        shutil.rmtree(runs["live"])
        await wait_for(pilot, lambda: screen.gone, what="gone noticed")
        assert text(screen.query_one("#live-status")).startswith(" run directory deleted ")
        assert screen.check_action("snapshot", ()) is None


async def test_compare_key_shows_rerun_beside_its_parent_with_differences(store_root):
    from ktstr_tui.screens.compare_screen import CompareScreen

    async with make_app(store_root).run_test(size=SIZE) as pilot:
        await open_result(pilot, "rerun")
        await pilot.press("equals_sign")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, CompareScreen)
                       and pilot.app.screen.rows, what="compare rows")
        screen = pilot.app.screen
        table = screen.query_one("#compare", DataTable)
        rows = {str(table.get_row_at(i)[1]): (str(table.get_row_at(i)[0]), str(table.get_row_at(i)[2]),
                                              str(table.get_row_at(i)[3]))
                for i in range(table.row_count)}
        mark, a, b = rows["topology.requested"]
        assert (mark, a, b) == ("*", "tiny-2llc", "smt-2llc")
        await pilot.press("d")
        assert all(str(table.get_row_at(i)[0]) == "*" for i in range(table.row_count))
        await pilot.press("escape")
        assert not isinstance(pilot.app.screen, CompareScreen)


async def test_compare_key_is_off_without_a_parent(store_root):
    from ktstr_tui.screens.compare_screen import CompareScreen

    async with make_app(store_root).run_test(size=SIZE) as pilot:
        await open_result(pilot, "pass")
        await pilot.press("equals_sign")
        await pilot.pause()
        assert not isinstance(pilot.app.screen, CompareScreen)
