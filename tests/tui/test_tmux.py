"""The real app in a real terminal: `ktstr tui` under tmux, driven by send-keys and read
back with capture-pane. Waits poll the pane until the text shows (with a deadline)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time

import pytest
from conftest import RUN_IDS

pytestmark = [pytest.mark.tui,
              pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")]


class Tmux:
    def __init__(self, name: str) -> None:
        self.name = name

    def run(self, *args: str) -> str:
        # a private server (-L): other tmux users' options and clients cannot resize us
        return subprocess.run(["tmux", "-L", self.name, *args], capture_output=True, text=True,
                              timeout=20, check=True).stdout

    def start(self, argv: list[str], env: dict[str, str], width: int = 120,
              height: int = 40) -> None:
        exports = " ".join(f"{k}={v}" for k, v in env.items())
        cmd = f"env {exports} {' '.join(argv)}; echo EXITED $?; sleep 30"
        self.run("new-session", "-d", "-s", self.name, "-x", str(width), "-y", str(height), cmd)

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", self.name, *keys)

    def screen(self, escapes: bool = False) -> str:
        return self.run("capture-pane", "-p", *(["-e"] if escapes else []), "-t", self.name)

    def wait_for(self, text: str, timeout: float = 120.0) -> str:
        # a hang guard, not a speed check: a loaded machine may take long to start the app
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"'{text}' never showed; the pane:\n{self.screen()}")

    def wait_re(self, pattern: str, timeout: float = 120.0) -> str:
        """wait_for with a regular expression (a row whose cells fill in one by one)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if re.search(pattern, screen):
                return screen
            time.sleep(0.1)
        raise AssertionError(f"/{pattern}/ never showed; the pane:\n{self.screen()}")

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.name, "kill-server"], capture_output=True,
                       timeout=20)


@pytest.fixture
def tmux():
    t = Tmux(f"ktstr-tui-test-{os.getpid()}")
    yield t
    t.kill()


def test_tui_in_tmux_browses_opens_a_failure_and_quits(tmux, runs, store_root, tmp_path):
    tmux.start([sys.executable, "-m", "ktstr_cli", "tui"],
               {"KTSTR_HOME": str(store_root), "KTSTR_CACHE": str(tmp_path / "cache"),
                "TZ": "UTC", "TERM": "xterm-256color"})
    tmux.wait_for("5 runs")
    tmux.wait_for("verdict  message")  # 80 columns: the message column keeps its room
    tmux.keys("Down", "Down", "Down", "Enter")  # newest first: live, corrupt, rerun, fail
    screen = tmux.wait_for("--- scheduler log ---")
    assert f"run {RUN_IDS['fail']}" in screen and " FAIL " in screen
    tmux.keys("F")
    tmux.wait_for("CPUs: enter shows")
    # the CPU rows fill in after the table mounts, cell by cell on a busy machine
    screen = tmux.wait_re(r"\b2\s+swapper/2\[0\]\s+idle\b")
    assert "SCX_EXIT_ERROR_BPF (1025)" in screen
    tmux.keys("q")
    tmux.wait_for("EXITED 0")


def _chromatic(sgr: str) -> bool:
    """True for an SGR colour that is not a grey (NO_COLOR in Textual means greyscale)."""
    params = [int(p) for p in sgr[2:-1].split(";") if p.isdigit()]
    i = 0
    while i < len(params):
        p = params[i]
        if p in (38, 48) and i + 2 < len(params) and params[i + 1] == 5:
            n = params[i + 2]
            if 16 < n < 232:  # the 6x6x6 cube holds greys only on its diagonal
                r, g, b = (n - 16) // 36, (n - 16) // 6 % 6, (n - 16) % 6
                if not r == g == b:
                    return True
            elif 1 <= n <= 6 or 9 <= n <= 14:
                return True
            i += 3
            continue
        if p in (38, 48) and i + 4 < len(params) and params[i + 1] == 2:
            if not params[i + 2] == params[i + 3] == params[i + 4]:
                return True
            i += 5
            continue
        if 31 <= p <= 36 or 41 <= p <= 46 or 91 <= p <= 96 or 101 <= p <= 106:
            return True
        i += 1
    return False


def test_no_color_renders_without_colours(tmux, runs, store_root, tmp_path):
    tmux.start([sys.executable, "-m", "ktstr_cli", "tui", str(runs["fail"])],
               {"KTSTR_HOME": str(store_root), "KTSTR_CACHE": str(tmp_path / "cache"),
                "NO_COLOR": "1", "TERM": "xterm-256color"})
    tmux.wait_for(" FAIL ")
    sgrs = re.findall(r"\x1b\[[0-9;]*m", tmux.screen(escapes=True))
    assert sgrs, "the capture has no attributes at all"
    assert [c for c in sgrs if _chromatic(c)] == []
    tmux.keys("q")
    tmux.wait_for("EXITED 0")
