"""The per-CPU scheduling timeline on real recorded traces: a scx_ktstr --stall-after run
(tests/data/trace_stall: the kernel's watchdog ends the scheduler after spin-1 waited
3.4 s for CPU 0) and a scx_simple run with spin and pipe workers. Pilot tests drive keys
and the mouse; one whole-screen snapshot."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import wait_for
from textual.app import App, ComposeResult
from textual.widgets import Input

from ktstr_tui.widgets.sched_timeline import (
    LABEL,
    SchedTimeline,
    TimelinePane,
    TimelineScreen,
    parse_time,
)

pytestmark = [pytest.mark.tui]
async_test = pytest.mark.asyncio
DATA = Path(__file__).resolve().parents[1] / "data"
SNAPSHOT_RUN = Path("/tmp/ktstr-tui-snapshots/trace_stall")


class Host(App):
    def __init__(self, path: Path, **kw) -> None:
        super().__init__()
        self.path, self.kw = path, kw

    def compose(self) -> ComposeResult:
        yield TimelinePane(self.path, **self.kw)

    def on_mount(self) -> None:
        self.query_one(SchedTimeline).focus()


@pytest.fixture
def stall(tmp_path):
    shutil.copytree(DATA / "trace_stall", tmp_path / "run")
    return tmp_path / "run"


@pytest.fixture
def simple(tmp_path):
    shutil.copytree(DATA / "trace_scx_simple", tmp_path / "run")
    return tmp_path / "run"


async def _loaded(pilot):
    pane = pilot.app.screen.query_one(TimelinePane)
    await wait_for(pilot, lambda: pane.loaded and pane.model is not None, what="timeline")
    return pilot.app.screen.query_one(SchedTimeline)


def _lane(tl: SchedTimeline, cpu: int) -> str:
    return next(ln for ln in tl.render().plain.splitlines() if ln.startswith(f"cpu {cpu} "))


@async_test
async def test_opens_at_the_failure_with_lanes_grouped_by_llc_and_the_exit_marked(stall):
    async with Host(stall, at="failure").run_test(size=(150, 20)) as pilot:
        tl = await _loaded(pilot)
        text = tl.render().plain
        assert " node 0 · llc 0" in text and " node 0 · llc 1" in text
        assert [ln[:6] for ln in text.splitlines() if ln.startswith("cpu")] == \
            ["cpu 0 ", "cpu 1 ", "cpu 2 ", "cpu 3 "]
        t_exit = tl.model.scx_exits[0][0]
        assert tl.model.scx_exits[0][2] == 1026  # SCX_EXIT_ERROR_STALL
        assert tl.view.t0 < t_exit < tl.view.t1
        events = next(ln for ln in text.splitlines() if ln.startswith("events"))
        assert "✖" in events  # the exit on the run-event row
        # the stall: CPU 0 idle for most of the window before the exit
        assert _lane(tl, 0).count("·") > 60


@async_test
async def test_selecting_the_stalled_task_shows_it_waiting_for_cpu0_until_the_exit(stall):
    async with Host(stall, at="failure").run_test(size=(150, 20)) as pilot:
        tl = await _loaded(pilot)
        spin1 = next(pid for pid, n in tl.model.names.items() if n == "spin-1")
        while tl.view.selected != spin1:
            await pilot.press("n")
        status = tl.render().plain.splitlines()[0]
        assert status.endswith(f"task spin-1 [{spin1}]")
        waits = [m for m in tl.marks if m.kind == "wait"]
        stall_wait = max(waits, key=lambda m: m.end - m.ts)
        assert stall_wait.cpu == 0 and stall_wait.end - stall_wait.ts > 3e9
        assert stall_wait.ts < tl.model.scx_exits[0][0] < stall_wait.end
        assert _lane(tl, 0).count("░") > 60  # hatched: waiting for cpu 0
        await pilot.press("c")
        assert tl.view.selected is None and "░" not in _lane(tl, 0)


@async_test
async def test_zoom_pan_whole_and_typed_time(stall):
    async with Host(stall).run_test(size=(150, 20)) as pilot:
        tl = await _loaded(pilot)
        lo, hi = tl.view.t0, tl.view.t1
        assert (lo, hi) == (tl.model.t_first, tl.model.t_last)
        await pilot.press("plus")
        assert tl.view.t1 - tl.view.t0 == pytest.approx((hi - lo) / 2, rel=1e-6)
        t0 = tl.view.t0
        await pilot.press("right")
        assert tl.view.t0 == t0 + (tl.view.t1 - tl.view.t0) // 8
        await pilot.press("0")
        assert (tl.view.t0, tl.view.t1) == (lo, hi)
        await pilot.press("g")
        box = pilot.app.query_one("#tl-goto", Input)
        assert box.has_focus
        await pilot.press(*"18.25s", "enter")
        assert (tl.view.t0 + tl.view.t1) // 2 == pytest.approx(18.25e9, abs=2)
        await pilot.press("g", *"soon", "enter")  # not a time: said, view kept
        assert (tl.view.t0 + tl.view.t1) // 2 == pytest.approx(18.25e9, abs=2)


@async_test
async def test_a_click_on_a_span_selects_its_task_and_the_wheel_zooms(simple):
    async with Host(simple).run_test(size=(150, 14)) as pilot:
        tl = await _loaded(pilot)
        lines = tl.render().plain.splitlines()
        row = next(i for i, ln in enumerate(lines) if ln.startswith("cpu 1 "))
        col = next(i for i, ch in enumerate(lines[row]) if i > LABEL and ch not in " ·")
        await pilot.click(SchedTimeline, offset=(col, row))
        assert tl.view.selected not in (None, 0)
        assert tl.model.name(tl.view.selected) in tl.render().plain.splitlines()[0]
        span = tl.view.t1 - tl.view.t0
        from textual import events

        tl.post_message(events.MouseScrollUp(tl, LABEL + 10, row, 0, -1, 0, False, False, False))
        await pilot.pause()
        assert tl.view.t1 - tl.view.t0 == pytest.approx(span / 2, rel=1e-6)
        t0 = tl.view.t0  # shift+wheel pans
        tl.post_message(events.MouseScrollDown(tl, LABEL + 10, row, 0, 1, 0, True, False, False))
        await pilot.pause()
        assert tl.view.t0 == t0 + (tl.view.t1 - tl.view.t0) // 8


@async_test
async def test_guest_task_names_are_text_never_markup(simple):
    from ktstr_vmm.trace.files import TASKS, build_index

    build_index(simple)
    tasks = json.loads((simple / TASKS).read_text())
    for pid, name in list(tasks.items()):
        if name.startswith("spin"):
            tasks[pid] = "[/]" if name == "spin-0" else "[bold red]x"
    (simple / TASKS).write_text(json.dumps(tasks))
    async with Host(simple).run_test(size=(150, 14)) as pilot:
        tl = await _loaded(pilot)
        pid = next(p for p, n in tl.model.names.items() if n == "[/]")
        tl.select(pid)
        await pilot.pause()
        assert "task [/] [" in tl.render().plain.splitlines()[0]


@async_test
async def test_a_run_without_a_trace_says_so(tmp_path):
    (tmp_path / "run").mkdir()
    async with Host(tmp_path / "run").run_test(size=(100, 10)) as pilot:
        pane = pilot.app.query_one(TimelinePane)
        await wait_for(pilot, lambda: pane.loaded, what="load")
        assert "has no scheduling trace" in str(pilot.app.query_one("#tl-info").render())


@async_test
async def test_live_pane_follows_pages_as_they_arrive(stall, tmp_path):
    """The live pane reads trace/cpu*.pages as the recorder appends them."""
    live = tmp_path / "live"
    (live / "trace").mkdir(parents=True)
    shutil.copy(stall / "trace" / "formats.json", live / "trace" / "formats.json")
    src = (stall / "trace" / "cpu000.pages").read_bytes()
    half = _page_boundary(src, len(src) // 2)
    (live / "trace" / "cpu000.pages").write_bytes(src[:half])
    async with Host(live, live=True).run_test(size=(150, 12)) as pilot:
        tl = await _loaded(pilot)
        first_last = tl.model.t_last
        assert tl.view.follow
        with open(live / "trace" / "cpu000.pages", "ab") as f:
            f.write(src[half:])
        await wait_for(pilot, lambda: tl.model.t_last > first_last, what="new pages")
        assert tl.view.t1 == tl.model.t_last  # following the present


def _page_boundary(data: bytes, near: int) -> int:
    pos = 0
    while pos < near:
        pos += 4 + int.from_bytes(data[pos:pos + 4], "little")
    return pos


def test_parse_time():
    assert parse_time("12.5") == 12_500_000_000 and parse_time("800ms") == 800_000_000
    assert parse_time("7us") == 7000 and parse_time("x") is None and parse_time("-1") is None


def test_snapshot_timeline_at_the_stall(snap_compare, fixed_paths):
    if SNAPSHOT_RUN.exists():
        shutil.rmtree(SNAPSHOT_RUN)
    shutil.copytree(DATA / "trace_stall", SNAPSHOT_RUN)

    class ScreenHost(App):
        def on_mount(self) -> None:
            self.push_screen(TimelineScreen(SNAPSHOT_RUN, at="failure"))

    async def ready(pilot):
        await wait_for(pilot, lambda: pilot.app.screen.query_one(TimelinePane).loaded,
                       what="timeline")
        tl = pilot.app.screen.query_one(SchedTimeline)
        spin1 = next(pid for pid, n in tl.model.names.items() if n == "spin-1")
        tl.select(spin1)
        await pilot.pause()

    assert snap_compare(ScreenHost(), terminal_size=(120, 22), run_before=ready)


@async_test
async def test_result_screen_t_opens_the_timeline_of_its_run(runs, store_root):
    """`t` on a result: the run's timeline (here the pass run, given the stall's trace)."""
    from conftest import make_app

    from ktstr_tui.screens.result import ResultScreen

    shutil.copytree(DATA / "trace_stall" / "trace", runs["pass"] / "trace")
    app = make_app(store_root, open_path=runs["pass"])
    async with app.run_test(size=(140, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ResultScreen)
                       and app.screen.view is not None, what="result")
        await pilot.press("T")
        await wait_for(pilot, lambda: isinstance(app.screen, TimelineScreen), what="screen")
        tl = await _loaded(pilot)
        assert tl.view.t0 < tl.model.scx_exits[0][0] < tl.view.t1  # at the failure
        await pilot.press("escape")
        assert isinstance(app.screen, ResultScreen)


@async_test
async def test_worst_waits_link_into_the_timeline(stall):
    async with Host(stall).run_test(size=(150, 30)) as pilot:
        tl = await _loaded(pilot)
        pane = pilot.app.query_one(TimelinePane)
        from textual.widgets import OptionList

        box = pilot.app.query_one("#tl-worst", OptionList)
        assert pane.worst and box.option_count == len(pane.worst) + 1
        worst = pane.worst[0]
        assert worst["ns"] > 3e9  # the stall
        box.focus()
        box.highlighted = 1
        await pilot.press("enter")
        assert tl.view.selected == worst["pid"]
        assert tl.view.t0 < worst["since_ns"] and worst["ran_ns"] < tl.view.t1
        assert tl.has_focus


@async_test
async def test_live_screen_t_opens_the_timeline_following_the_run(runs, store_root):
    from conftest import make_app

    from ktstr_tui.screens.live_run import LiveRunScreen

    live = runs["live"]
    (live / "trace").mkdir()
    for name in ("formats.json", "cpu000.pages", "cpu001.pages"):
        shutil.copy(DATA / "trace_stall" / "trace" / name, live / "trace" / name)
    app = make_app(store_root, open_path=live)
    async with app.run_test(size=(140, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, LiveRunScreen), what="live screen")
        await pilot.press("t")
        await wait_for(pilot, lambda: isinstance(app.screen, TimelineScreen), what="timeline")
        tl = await _loaded(pilot)
        assert tl.view.follow and tl.view.t1 == tl.model.t_last
        assert sorted(tl.model.lanes) == [0, 1]


@async_test
async def test_s_steps_through_the_periodic_captures_on_the_timeline(stall):
    """issue 16: the TUI steps through a run's captures on the timeline - each `capture`
    event is a ◇ on the run-event row, and s jumps to the next one."""
    events = stall / "events.jsonl"
    first = json.loads(events.read_text().splitlines()[6])  # sched_started: both clocks
    offset = first["guest_ms"] / 1000 - first["t"]
    caps = [first["t"] + 4.0, first["t"] + 6.0]
    with open(events, "a") as f:
        for i, t in enumerate(caps):
            f.write(json.dumps({"t": t, "kind": "capture", "tag": f"periodic_{i:03d}",
                                "status": "taken"}) + "\n")
    async with Host(stall).run_test(size=(150, 20)) as pilot:
        tl = await _loaded(pilot)
        guest = [int((t + offset) * 1e9) for t in caps]
        assert [(t, label) for t, label in tl.run_events if label == "capture"] == \
            [(g, "capture") for g in guest]
        tl.jump(guest[0] - 2_000_000_000, 1_000_000_000)  # a 1 s window before the first
        for g in guest:
            await pilot.press("s")
            assert tl.view.t0 < g < tl.view.t1
            assert (tl.view.t0 + tl.view.t1) // 2 == g
        events_row = next(ln for ln in tl.render().plain.splitlines() if ln.startswith("events"))
        assert "◇" in events_row
