"""Pilot tests of the gauntlet screen: the browser folds a gauntlet's runs into one row,
enter shows the matrix (topologies x schedulers) coloured by verdict, failures first,
enter on a cell opens its run, m + c compares two cells, r reruns one, and a run that
lands in the store fills its cell in without a key press."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import make_app, wait_for
from support.store_helpers import T0, make_run, write_json  # noqa: E402
from textual.widgets import DataTable

from ktstr_tui.screens.browser import BrowserScreen
from ktstr_tui.screens.compare_screen import CompareScreen
from ktstr_tui.screens.gauntlet_screen import GauntletScreen
from ktstr_tui.screens.result import ResultScreen
from ktstr_vmm.gauntlet.matrix import matrix_from_options
from ktstr_vmm.gauntlet.record import write_record
from ktstr_vmm.store.store import Store

pytestmark = [pytest.mark.tui, pytest.mark.asyncio]
SIZE = (120, 40)
GID = "g-20261125-173942-abcd"


def gauntlet_run(root: Path, run_id: str, sched: str, topo: str, verdict: str,
                 started: float) -> Path:
    d = make_run(root, run_id, name=sched, scheduler=sched, topology=topo, verdict=verdict,
                 started=started, message="" if verdict == "pass" else "scheduler died")
    spec = json.loads((d / "spec.json").read_text())
    spec.update(gauntlet=GID, gauntlet_cell=f"{sched}|{topo}|newest|1")
    write_json(d / "spec.json", spec)
    return d


@pytest.fixture
def gstore(tmp_path, monkeypatch):
    root = tmp_path / "store"
    monkeypatch.setenv("KTSTR_HOME", str(root))
    store = Store(root)
    m = matrix_from_options("scx_simple,scx_qmap", "tiny-1llc,tiny-2llc", None, None, "2s",
                            None, None, False)
    write_record(store, GID, m)
    runs = {
        "simple-1": gauntlet_run(root, "20261125-173950-scx_simple-tiny-1llc-0001",
                                 "scx_simple", "tiny-1llc", "pass", T0 + 8),
        "qmap-1": gauntlet_run(root, "20261125-173951-scx_qmap-tiny-1llc-0002",
                               "scx_qmap", "tiny-1llc", "pass", T0 + 9),
        "simple-2": gauntlet_run(root, "20261125-173952-scx_simple-tiny-2llc-0003",
                                 "scx_simple", "tiny-2llc", "fail", T0 + 10),
        "other": make_run(root, "20261125-180000-basic-tiny-2llc-0004", started=T0 + 1000),
    }
    return root, runs


def cells(table: DataTable) -> list[list[str]]:
    return [[str(c) for c in table.get_row(k)] for k in table.rows]


async def open_gauntlet(pilot) -> GauntletScreen:
    browser = pilot.app.screen
    assert isinstance(browser, BrowserScreen)
    table = browser.query_one("#runs", DataTable)
    await wait_for(pilot, lambda: table.row_count == 2, what="two rows: a run and a gauntlet")
    row = [str(k.value) for k in table.rows].index(f"gauntlet:{GID}")
    table.move_cursor(row=row)
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, GauntletScreen)
                   and pilot.app.screen.loaded, what="gauntlet screen loaded")
    return pilot.app.screen


async def test_the_browser_folds_a_gauntlet_into_one_row(gstore):
    root, runs = gstore
    async with make_app(root).run_test(size=SIZE) as pilot:
        browser = pilot.app.screen
        table = browser.query_one("#runs", DataTable)
        await wait_for(pilot, lambda: table.row_count == 2, what="rows")
        rows = {str(k.value): [str(c) for c in table.get_row(k)] for k in table.rows}
        assert list(rows) == [runs["other"].name, f"gauntlet:{GID}"]  # newest first
        group = rows[f"gauntlet:{GID}"]
        assert group[1] == f"gauntlet {GID}"
        assert group[2] == "scx_qmap,scx_simple"
        assert group[3] == "2 topologies"
        assert group[4] == "fail"  # the worst of its runs
        assert group[6] == "3 runs: 1 fail, 2 pass"


async def test_the_matrix_shows_each_cell_by_verdict_failures_first(gstore):
    root, runs = gstore
    async with make_app(root).run_test(size=SIZE) as pilot:
        screen = await open_gauntlet(pilot)
        table = screen.query_one("#matrix", DataTable)
        assert [str(c.label) for c in table.columns.values()] == [
            "topology", "scx_simple", "scx_qmap"]
        # tiny-2llc has the failure: it comes first; its scx_qmap cell has no run yet
        assert cells(table) == [["tiny-2llc", "fail", "queued"],
                                ["tiny-1llc", "pass", "pass"]]
        assert table.get_row("tiny-2llc")[1].style == "bold white on red"
        await pilot.press("f")
        assert cells(table)[0][0] == "tiny-1llc"
        head = str(screen.query_one("#gauntlet-head").render())
        assert "2 topologies x 2 columns · 1 fail · 2 pass · 1 queued" in head


async def test_enter_on_a_cell_opens_its_run(gstore):
    root, runs = gstore
    async with make_app(root).run_test(size=SIZE) as pilot:
        screen = await open_gauntlet(pilot)
        table = screen.query_one("#matrix", DataTable)
        table.move_cursor(row=0, column=1)  # tiny-2llc x scx_simple: the failure
        await pilot.pause()
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, ResultScreen),
                       what="result screen")
        assert pilot.app.screen.path == runs["simple-2"]


async def test_two_marked_cells_compare(gstore):
    root, runs = gstore
    async with make_app(root).run_test(size=SIZE) as pilot:
        screen = await open_gauntlet(pilot)
        table = screen.query_one("#matrix", DataTable)
        await pilot.press("c")  # nothing marked yet: a warning, no screen
        assert pilot.app.screen is screen
        table.move_cursor(row=0, column=1)
        await pilot.pause()
        await pilot.press("m")
        table.move_cursor(row=1, column=1)
        await pilot.pause()
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, CompareScreen),
                       what="compare screen")
        assert (pilot.app.screen.a, pilot.app.screen.b) == (runs["simple-2"],
                                                            runs["simple-1"])


async def test_rerun_starts_an_ordinary_run_in_the_same_cell(gstore):
    root, runs = gstore
    async with make_app(root).run_test(size=SIZE) as pilot:
        calls: list[list[str]] = []
        pilot.app.launch = lambda args, **kw: calls.append(list(args))
        screen = await open_gauntlet(pilot)
        table = screen.query_one("#matrix", DataTable)
        table.move_cursor(row=0, column=2)  # tiny-2llc x scx_qmap, still queued
        await pilot.pause()
        await pilot.press("r")
        assert calls == [["run", "--scheduler", "scx_qmap", "--topology", "tiny-2llc",
                          "--duration", "2.0s", "--gauntlet", GID, "--gauntlet-cell",
                          "scx_qmap|tiny-2llc|newest|1", "--no-auto-repro"]]


async def test_a_run_landing_in_the_store_fills_its_cell_live(gstore):
    root, runs = gstore
    async with make_app(root, watch=True).run_test(size=SIZE) as pilot:
        screen = await open_gauntlet(pilot)
        table = screen.query_one("#matrix", DataTable)
        assert cells(table)[0] == ["tiny-2llc", "fail", "queued"]
        gauntlet_run(root, "20261125-174100-scx_qmap-tiny-2llc-0005", "scx_qmap",
                     "tiny-2llc", "pass", T0 + 80)
        await wait_for(pilot, lambda: cells(table)[0] == ["tiny-2llc", "fail", "pass"],
                       what="the new run's cell", timeout=120)


async def test_the_app_can_open_straight_on_a_gauntlet(gstore):
    root, runs = gstore
    async with make_app(root, open_gauntlet=GID).run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, GauntletScreen)
                       and pilot.app.screen.loaded, what="gauntlet screen")
        assert cells(pilot.app.screen.query_one("#matrix", DataTable))[0][0] == "tiny-2llc"
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, BrowserScreen),
                       what="the browser under it")


async def test_a_verifier_sweep_shows_each_cells_programs_or_its_first_error(tmp_path,
                                                                            monkeypatch):
    root = tmp_path / "store"
    monkeypatch.setenv("KTSTR_HOME", str(root))
    data = Path(__file__).resolve().parents[1] / "data" / "gauntlet"
    write_record(Store(root), GID, matrix_from_options("scx_simple,scx_qmap", "tiny-1llc",
                                                       None, None, None, None, None, True))
    ok = gauntlet_run(root, "20261125-173950-scx_simple-tiny-1llc-0001", "scx_simple",
                      "tiny-1llc", "pass", T0 + 8)
    (ok / "bpf-progs.json").write_bytes((data / "scx_simple.bpf-progs.json").read_bytes())
    bad = gauntlet_run(root, "20261125-173951-scx_qmap-tiny-1llc-0002", "scx_qmap",
                       "tiny-1llc", "fail", T0 + 9)
    (bad / "sched.log").write_bytes((data / "scx_qmap-verifier.sched.log").read_bytes())
    async with make_app(root, open_gauntlet=GID).run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, GauntletScreen)
                       and pilot.app.screen.loaded, what="gauntlet screen")
        screen = pilot.app.screen
        table = screen.query_one("#matrix", DataTable)
        detail = screen.query_one("#gauntlet-cell")
        table.move_cursor(row=0, column=1)
        await pilot.pause()
        assert "verifier: 9 programs, 197 verified insns: scx_lib_init_pr 23" in str(
            detail.render())
        table.move_cursor(row=0, column=2)
        await pilot.pause()
        assert ("verifier: FAILED to load in qmap_dequeue: R7 invalid mem access 'scalar'"
                in str(detail.render()))
