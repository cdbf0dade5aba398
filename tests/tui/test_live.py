"""The live screen follows a run directory that a writer is filling, and drives the run's
real control socket (ktstr_vmm.run.control.ControlServer)."""

from __future__ import annotations

import time

import pytest
from conftest import make_app, wait_for
from textual.widgets._footer import FooterKey

from ktstr_tui.screens.confirm import ConfirmScreen
from ktstr_tui.screens.live_run import NO_CONTROL, LiveRunScreen
from ktstr_tui.screens.result import ResultScreen
from ktstr_tui.widgets.bpf_globals import BpfGlobals
from ktstr_tui.widgets.log_view import LogPane
from ktstr_tui.widgets.monitor_grid import MonitorGrid
from ktstr_tui.widgets.timeline import Timeline
from ktstr_vmm.fsutil import append_json_line, atomic_write_json
from ktstr_vmm.run.control import ControlServer
from ktstr_vmm.rundir.layout import RunDir

pytestmark = [pytest.mark.tui, pytest.mark.asyncio]


def status_text(screen) -> str:
    return str(screen.query_one("#live-status").render())


def footer(screen) -> list[str]:
    """What the footer offers now, left to right: its keys not dimmed (check_action None
    dims a key, as every screen here does for an action that cannot run now)."""
    return [k.description for k in screen.query(FooterKey) if not k.has_class("-disabled")]


def sample(t: float, n: int) -> dict:
    return {"t": t, "cpus": [{"cpu": c, "nr_running": n, "scx_nr_running": n,
                              "local_dsq_nr": 0, "curr_pid": 100 + c, "curr_comm": f"spin-{c}",
                              "curr_class": "ext_sched_class", "clock_ns": 1}
                             for c in range(4)],
            "scx": {"state": "enabled", "exit_kind": None, "events": {}}, "flags": []}


async def test_live_screen_follows_a_writer_and_controls_the_run(store_root):
    run = RunDir(store_root / "runs" / "20261125-120000-scx_simple-tiny-2llc-beef")
    run.path.mkdir()
    atomic_write_json(run / "spec.json", {"name": "scx_simple", "scheduler": "scx_simple",
                                          "topology": "1n2l2c1t", "preset": "tiny-2llc"})
    run.write_status("pending")
    calls: list[str] = []
    server = ControlServer(run.path, {c: (lambda req, c=c: calls.append(c) or {})
                                      for c in ("pause", "resume", "snapshot", "stop")})
    try:
        async with make_app(store_root, open_path=run.path).run_test(size=(120, 40)) as pilot:
            screen = pilot.app.screen
            assert isinstance(screen, LiveRunScreen)
            run.write_status("booting", engine="qemu", watchdog_deadline=time.time() + 60)
            await wait_for(pilot, lambda: " BOOTING " in status_text(screen), what="booting")
            assert "watchdog 5" in status_text(screen) or "watchdog 6" in status_text(screen)

            run.append_event("lifecycle", phase="scheduler enabled")
            run.append_event("scenario_start", name="spin")
            timeline = screen.query_one("#timeline", Timeline)
            await wait_for(pilot, lambda: len(timeline.events) == 2, what="events")
            assert "scenario start: spin" in str(timeline.render())

            now = time.time()
            for i in range(5):
                append_json_line(run / "monitor.jsonl", sample(now + i * 0.1, i % 3))
            grid = screen.query_one("#monitor", MonitorGrid)
            await wait_for(pilot, lambda: grid.samples == 5, what="samples")
            assert "node 0 · llc 1" in str(grid.render())

            # the scheduler's globals: lines hold what changed, merged in order; "3" shows them
            append_json_line(run / "bpf.jsonl", {"t": 0.9, "maps": {
                "scx_simp.bss": {"vtime_now": 100, "nr_queued": 0},
                "scx_simp.data": {"uei": {"kind": 0, "reason": ""},
                                  "simple_init.___fmt": "failed to create DSQ %d",
                                  "odd[/]": "[/][bold]"}}})  # guest text is not markup
            append_json_line(run / "bpf.jsonl", {"t": 1.9, "maps": {
                "scx_simp.bss": {"vtime_now": 250}}})
            glob = screen.query_one("#globals", BpfGlobals)
            await wait_for(pilot, lambda: glob.updates == 2, what="globals")
            rows = [tuple(str(c) for c in glob.get_row_at(i)) for i in range(glob.row_count)]
            assert rows == [("scx_simp.bss", "nr_queued", "0"),
                            ("scx_simp.bss", "vtime_now", "250"),
                            ("scx_simp.data", "odd[/]", "[/][bold]"),
                            ("scx_simp.data", "uei", '{"kind":0,"reason":""}')]
            assert glob.get_row_at(1)[2].style == "bold yellow"  # changed in the last line
            await pilot.press("3")
            assert screen.query_one("#live-tabs").active == "tab-globals"
            await pilot.pause()  # drawn: a markup error would have crashed the app here
            await pilot.press("1")

            with open(run / "sched.log", "ab") as f:
                f.write(b"".join(b"local=%d global=%d\n" % (i, i // 2) for i in range(1000)))
            pane = screen.query_one("#sched-pane", LogPane)
            await wait_for(pilot, lambda: pane.view.line_count == 1000, what="log lines")
            height = pane.view.scrollable_content_region.height
            await wait_for(pilot, lambda: pane.view.scroll_offset.y == 1000 - height,
                           what=lambda: f"follow to the end ({pane.view.max_scroll_y=} "
                                        f"{pane.view.scroll_offset=} {height=} "
                                        f"{pane.view.follow=})")

            await pilot.press("space")
            await wait_for(pilot, lambda: calls == ["pause"], what="pause sent")
            await wait_for(pilot, lambda: " PAUSED " in status_text(screen), what="paused")
            await pilot.press("space")
            await wait_for(pilot, lambda: calls == ["pause", "resume"], what="resume sent")
            await pilot.press("s")
            await wait_for(pilot, lambda: calls[-1] == "snapshot", what="snapshot sent")
            await pilot.press("x")
            assert isinstance(pilot.app.screen, ConfirmScreen)
            await pilot.press("y")
            await wait_for(pilot, lambda: calls[-1] == "stop", what="stop sent")

            server.close()
            run.write_status("evaluating")
            await wait_for(pilot, lambda: screen.check_action("snapshot", ()) is None,
                           what="actions disabled without the socket")
            run.write_status("done")
            await wait_for(pilot, lambda: NO_CONTROL in status_text(screen), what="said why")

            atomic_write_json(run / "result.json", {
                "run_id": run.run_id, "verdict": "pass", "message": "", "reason": "",
                "sections": {}, "engine": "qemu", "topology": {"preset": "tiny-2llc"},
                "scheduler": "scx_simple", "kernel": "k", "stats": {}, "timings": {},
                "parent": None, "artifacts": []})
            await wait_for(pilot, lambda: isinstance(pilot.app.screen, ResultScreen)
                           and pilot.app.screen.view is not None, what="result opened")
            assert pilot.app.screen.query_one("#verdict").verdict == "pass"
    finally:
        server.close()


def _running_with_control(store_root, run_id: str) -> tuple[RunDir, ControlServer]:
    """A run directory of a running scx_simple run with its control socket up."""
    run = RunDir(store_root / "runs" / run_id)
    run.path.mkdir()
    atomic_write_json(run / "spec.json", {"name": "scx_simple", "scheduler": "scx_simple",
                                          "topology": "1n2l2c1t", "preset": "tiny-2llc"})
    run.write_status("running", engine="qemu")
    return run, ControlServer(run.path, {"pause": lambda req: {}})


async def test_footer_shows_result_once_it_is_written_and_no_shell_without_the_socket(
        store_root):
    """The footer follows what check_action reads: Result is offered when result.json
    appears (the run still evaluating, so the screen stays), Shell and the controls are
    dimmed when the control socket goes - each without a key press or a focus change to
    redraw the footer."""
    run, server = _running_with_control(store_root, "20261125-121000-scx_simple-tiny-2llc-f00d")
    try:
        async with make_app(store_root, open_path=run.path).run_test(size=(120, 40)) as pilot:
            screen = pilot.app.screen
            assert isinstance(screen, LiveRunScreen)
            await wait_for(pilot, lambda: "Shell" in footer(screen), what="Shell in the footer")
            assert "Result" not in footer(screen)  # dimmed: no result yet

            run.write_status("evaluating")
            atomic_write_json(run / "result.json", {"run_id": run.run_id, "verdict": "pass",
                                                    "message": "", "sections": {}})
            offered = ["Quit", "Help", "Back", "Pause", "Snapshot", "Stop", "Shell"]
            await wait_for(pilot, lambda: footer(screen) == [*offered, "Result"],
                           what=lambda: f"Result in the footer ({footer(screen)})")
            assert pilot.app.screen is screen

            server.close()
            await wait_for(pilot, lambda: footer(screen) == ["Quit", "Help", "Back", "Result"],
                           what=lambda: f"no Shell in the footer ({footer(screen)})")
    finally:
        server.close()


async def test_every_live_key_fits_an_80_column_footer(store_root):
    """At 80x24 the footer still shows Shell and Result (a real run at 80 columns cut the
    footer off after Stop)."""
    run, server = _running_with_control(store_root, "20261125-121500-scx_simple-tiny-2llc-f00e")
    try:
        async with make_app(store_root, open_path=run.path).run_test(size=(80, 24)) as pilot:
            screen = pilot.app.screen
            await wait_for(pilot, lambda: "Shell" in footer(screen), what="Shell in the footer")
            run.write_status("evaluating")
            atomic_write_json(run / "result.json", {"run_id": run.run_id, "verdict": "pass",
                                                    "message": "", "sections": {}})
            await wait_for(pilot, lambda: footer(screen)[-2:] == ["Shell", "Result"],
                           what=lambda: f"Shell and Result offered ({footer(screen)})")
            await pilot.pause()
            keys = list(screen.query(FooterKey))
            assert [k.description for k in keys][-2:] == ["Shell", "Result"]
            assert all(k.region.right <= 80 and k.region.width > 0 for k in keys), \
                [(k.description, k.region) for k in keys]
    finally:
        server.close()


async def test_interrupted_run_without_result_says_so(store_root):
    run = RunDir(store_root / "runs" / "20261125-120500-scx_simple-tiny-2llc-dead")
    run.path.mkdir()
    atomic_write_json(run / "spec.json", {"name": "x", "scheduler": "scx_simple",
                                          "topology": "1n2l2c1t"})
    dead = 2 ** 22 + 12345  # above pid_max on this machine: no such process
    atomic_write_json(run / "status.json", {"phase": "running", "pid": dead,
                                            "started": time.time(), "updated": time.time()})
    async with make_app(store_root, open_path=run.path).run_test(size=(120, 40)) as pilot:
        screen = pilot.app.screen
        await wait_for(pilot, lambda: "(interrupted)" in status_text(screen), what="interrupted")
        assert f"the run's process {dead} is gone without a result" in status_text(screen)
        assert screen.check_action("pause", ()) is None
