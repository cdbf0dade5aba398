"""Fixtures of the TUI tests: a run store built from real recorded artifacts, the app on it,
and a helper that waits for a condition by pausing the app (never by sleeping)."""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fixture_store import RUN_IDS, make_store  # noqa: E402

# Snapshots show absolute paths and local times: a fixed store path and UTC keep them
# the same on every machine.
SNAPSHOT_STORE = Path("/tmp/ktstr-tui-snapshots/store")


@pytest.fixture(autouse=True)
def _utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def runs(tmp_path, monkeypatch):
    """{key: run dir} of a fresh fixture store at tmp_path/store (KTSTR_HOME too)."""
    root = tmp_path / "store"
    monkeypatch.setenv("KTSTR_HOME", str(root))
    monkeypatch.setenv("KTSTR_CACHE", str(tmp_path / "cache"))
    return make_store(root)


@pytest.fixture
def store_root(runs) -> Path:
    return next(iter(runs.values())).parent.parent


@pytest.fixture
def fixed_paths():
    """Hold /tmp/ktstr-tui-snapshots for this test. Snapshots need fixed paths there, so two
    test processes on one machine (two worktrees, a developer and CI) would delete each
    other's store mid-test; an exclusive lock makes the second wait its turn."""
    SNAPSHOT_STORE.parent.mkdir(parents=True, exist_ok=True)
    with open(SNAPSHOT_STORE.parent.with_suffix(".lock"), "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield SNAPSHOT_STORE.parent


@pytest.fixture
def snapshot_runs(monkeypatch, tmp_path, fixed_paths):
    if SNAPSHOT_STORE.exists():
        shutil.rmtree(SNAPSHOT_STORE)
    monkeypatch.setenv("KTSTR_CACHE", str(tmp_path / "cache"))
    return make_store(SNAPSHOT_STORE)


def make_app(store_root: Path, **kw):
    from ktstr_tui.app import KtstrApp

    kw.setdefault("watch", False)
    return KtstrApp(store_root, **kw)


async def wait_for(pilot, predicate, timeout: float = 120.0, what="condition"):
    """Pause the app until predicate() is true; fail naming `what` after timeout. The
    timeout only turns a hang into a failure that says what never happened: it is far above
    any wait on a machine loaded by other work, so timing never decides a test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await pilot.pause(0.02)
        try:
            if predicate():
                if os.environ.get("KTSTR_TUI_TEST_TIMING"):
                    print(f"wait_for {what() if callable(what) else what}: {timeout - (deadline - time.monotonic()):.2f}s")
                return
        except Exception:  # noqa: BLE001 - widgets may not be mounted yet
            pass
    raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")


async def steady_cursors(pilot, focused=None) -> None:
    """Stop every Input's cursor from blinking (shown steadily), so a screenshot does not
    depend on when, in the 0.5 s blink, a loaded machine got round to taking it. With
    `focused` (a widget), first wait until it has the focus: focus() only asks for it, and
    a screen or a loaded dialog gets it on a later turn of the event loop - a picture taken
    before then shows no cursor at all."""
    from textual.widgets import Input

    if focused is not None:
        await wait_for(pilot, lambda: pilot.app.focused is focused,
                       what=lambda: f"focus on #{focused.id} (it is on {pilot.app.focused})")
    boxes = list(pilot.app.screen.query(Input))
    for box in boxes:
        box.cursor_blink = False
    await wait_for(pilot, lambda: all(getattr(b, "_cursor_visible", True) for b in boxes),
                   what="steady cursors")


__all__ = ["RUN_IDS", "make_app", "steady_cursors", "wait_for", "os"]

