"""The live screen's shell key in a real terminal: `ktstr tui --run ...` under tmux starts a
real run (QEMU TCG, the sched_ext kernel, scx_simple); `!` suspends the app and hands the
terminal to a shell in the guest; `exit` brings the live screen back with the shell on its
timeline. docs/shell.md."""

from __future__ import annotations

import json
import os
import shutil
import sys

import pytest
from test_tmux import Tmux

pytestmark = [pytest.mark.vm, pytest.mark.slow, pytest.mark.tui,
              pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")]


@pytest.fixture
def tmux():
    t = Tmux(f"ktstr-shell-key-{os.getpid()}")
    yield t
    t.kill()


def test_the_shell_key_hands_the_terminal_to_a_guest_shell_and_back(tmux, tmp_path, kernel,
                                                                     schedulers):
    store = tmp_path / "store"
    store.mkdir()
    tmux.start([sys.executable, "-m", "ktstr_cli", "tui", "--run", "--scheduler", "scx_simple",
                "--topology", "tiny-1llc", "--duration", "600s", "--no-auto-repro"],
               {"KTSTR_HOME": str(store), "TERM": "xterm-256color"}, width=160)
    tmux.wait_for("scx enabled", timeout=300)
    # the footer offers the shell while the run is live (its control socket up)
    screen = tmux.wait_for("! Shell", timeout=120)
    tmux.keys("!")
    screen = tmux.wait_for("ktstr:/#", timeout=120)  # (capture-pane drops trailing blanks)
    assert "ktstr: shell 1 on " in screen and "exit or Ctrl-] returns to the live screen" in screen
    tmux.keys("cat /sys/kernel/sched_ext/state; stty size", "Enter")
    screen = tmux.wait_for("40 160")  # the guest's pty has the terminal's size
    assert "\nenabled\n" in screen
    tmux.keys("exit", "Enter")
    screen = tmux.wait_for("shell 1 ended: exited 0", timeout=60)
    assert "RUNNING" in screen  # back on the live screen, the run goes on
    tmux.keys("x")
    tmux.wait_for("Stop run")
    tmux.keys("y")
    tmux.wait_for("Message  Stats", timeout=120)  # the result screen (a stopped run fails)
    runs = list((store / "runs").iterdir())
    assert len(runs) == 1
    log = (runs[0] / "shell.log").read_text()
    assert "opened by ktstr tui: pty 160x40" in log and "enabled" in log
    events = [json.loads(line) for line in (runs[0] / "events.jsonl").read_text().splitlines()]
    assert [(e["action"], e.get("by")) for e in events if e["kind"] == "shell"] == [
        ("opened", "ktstr tui"), ("ended", None)]
