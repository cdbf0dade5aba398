"""The app's one file watcher (ktstr_tui/watch.py): one watchdog Observer for every screen,
watches shared per (path, recursive) and dropped when their last subscriber leaves."""

from __future__ import annotations

import threading

import pytest
from conftest import make_app, wait_for
from watchdog.observers.api import BaseObserver

from ktstr_tui.messages import OpenRun
from ktstr_tui.screens.browser import BrowserScreen
from ktstr_tui.screens.live_run import LiveRunScreen
from ktstr_tui.watch import WatchHub

pytestmark = pytest.mark.tui

WAIT_S = 120.0  # turns a hang into a failure; never what a test waits for


def observer_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if isinstance(t, BaseObserver) and t.is_alive()}


def test_hub_shares_one_observer_and_one_watch_per_path(tmp_path):
    hub = WatchHub()
    before = observer_threads()
    got_a, got_b = threading.Event(), threading.Event()
    try:
        a = hub.subscribe(tmp_path, lambda ev: got_a.set())
        b = hub.subscribe(tmp_path, lambda ev: got_b.set())
        deep = hub.subscribe(tmp_path, lambda ev: None, recursive=True)
        for sub in (a, b, deep):
            assert sub.ready.wait(WAIT_S) and sub.error is None
        assert len(observer_threads() - before) == 1
        assert hub.watched() == [(str(tmp_path), False), (str(tmp_path), True)]

        (tmp_path / "f").write_text("x")
        assert got_a.wait(WAIT_S) and got_b.wait(WAIT_S)

        hub.unsubscribe(a)  # b still needs the watch
        hub.unsubscribe(deep)
        probe = hub.subscribe(tmp_path / "nowhere", lambda ev: None)  # queued after them
        assert probe.ready.wait(WAIT_S) and probe.error and "cannot watch" in probe.error
        assert hub.watched() == [(str(tmp_path), False)]
        assert hub.subscriptions == {b}

        got_a.clear()
        got_b.clear()
        (tmp_path / "g").write_text("y")
        assert got_b.wait(WAIT_S)
        hub.unsubscribe(b)
        last = hub.subscribe(tmp_path / "nowhere", lambda ev: None)
        assert last.ready.wait(WAIT_S)
        assert hub.watched() == [] and not got_a.is_set()
    finally:
        hub.close()
    assert observer_threads() - before == set()


def test_a_failing_callback_does_not_stop_the_observer(tmp_path):
    hub = WatchHub()
    got = threading.Event()

    def boom(ev) -> None:
        raise RuntimeError("subscriber bug")

    try:
        bad = hub.subscribe(tmp_path, boom)
        assert bad.ready.wait(WAIT_S)
        (tmp_path / "f").write_text("x")
        good = hub.subscribe(tmp_path, lambda ev: got.set())
        assert good.ready.wait(WAIT_S)
        (tmp_path / "g").write_text("y")
        assert got.wait(WAIT_S)
        assert hub.observer is not None and hub.observer.is_alive()
    finally:
        hub.close()


@pytest.mark.asyncio
async def test_browser_and_live_screen_share_the_apps_one_observer(runs, store_root):
    """The browser (following the store) and a live run screen on top of it: one Observer
    in the app, holding the store's recursive watch and the run directory's."""
    before = observer_threads()
    app = make_app(store_root, watch=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, BrowserScreen), what="browser")
        browser = app.screen
        await wait_for(pilot, lambda: browser._watch.ready.is_set(), what="store watch")
        app.post_message(OpenRun(runs["live"], live=True))
        await wait_for(pilot, lambda: isinstance(app.screen, LiveRunScreen), what="live")
        live = app.screen
        await wait_for(pilot, lambda: live._watch.ready.is_set(), what="run watch")
        assert browser._watch.error is None and live._watch.error is None
        assert len(observer_threads() - before) == 1
        assert observer_threads() - before == {app.watch_hub.observer}
        runs_dir = str((store_root / "runs").resolve())
        assert app.watch_hub.watched() == sorted([(runs_dir, True),
                                                  (str(runs["live"]), False)])
    assert observer_threads() - before == set()  # the app's exit joined it (hub.close)


@pytest.mark.asyncio
async def test_live_screen_unsubscribes_when_popped(runs, store_root):
    app = make_app(store_root, open_path=runs["live"])
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, LiveRunScreen), what="live")
        live = app.screen
        sub = live._watch
        await wait_for(pilot, lambda: sub.ready.is_set(), what="run watch")
        hub = app.watch_hub
        assert sub in hub.subscriptions
        assert (str(runs["live"]), False) in hub.watched()
        await pilot.press("escape")
        await wait_for(pilot, lambda: sub not in hub.subscriptions, what="unsubscribed")
        await wait_for(pilot, lambda: (str(runs["live"]), False) not in hub.watched(),
                       what="watch dropped")
        assert live._watch is None

