"""The workstation app: top-level bindings, what opens first, launching runs.

`KtstrApp(store_root, open_path=None, launch_args=None)`:
- no path: the run browser of the store;
- a run directory: its live or result screen (the browser of its store underneath);
- a failure-dump file (*.json): the dump viewer; any other file: the log view;
- a directory of artifacts (Rust ktstr output: *.failure-dump.json, no spec): its dumps;
- launch_args: spawn `ktstr run ARGS` and open the new run live.
"""

from __future__ import annotations

import threading
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from textual import events, on, work
from textual.app import App
from textual.binding import Binding
from textual.screen import Screen

from ktstr_vmm.errors import KtstrError
from ktstr_vmm.rundir import layout as rundir
from ktstr_vmm.rundir.records import failure_dumps, is_run_dir

from . import launch as launcher
from .commands import ScreenActionsProvider
from .messages import LaunchFailed, OpenRun
from .screens.help_screen import HelpScreen
from .screens.too_small import TooSmallScreen
from .watch import WatchHub

if TYPE_CHECKING:
    from .screens.browser import BrowserScreen
    from .store_access import Store

class HomeScreen(Screen):
    """Stands in for the run browser under a directly opened run or file, so opening a
    200 MB log does not also build the browser; becomes the browser when shown."""

    def on_screen_resume(self) -> None:
        if self.app.screen is self:
            self.app.push_screen(self.app.browser_screen())


MIN_WIDTH = 60
MIN_HEIGHT = 16


class KtstrApp(App[int]):
    CSS_PATH = Path(__file__).parent / "app.tcss"
    TITLE = "ktstr"
    SUB_TITLE = "sched_ext workstation"
    COMMANDS = App.COMMANDS | {ScreenActionsProvider}
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help"),
        Binding("ctrl+p", "command_palette", "Commands", show=False),
    ]

    def __init__(self, store_root: Path, *, open_path: Path | None = None,
                 launch_args: list[str] | None = None, watch: bool = True,
                 index_path: Path | None = None, open_gauntlet: str | None = None) -> None:
        super().__init__()
        self.store_root = Path(store_root)
        self.index_path = index_path
        self.open_path = Path(open_path) if open_path else None
        self.launch_args = launch_args
        self.watch_store = watch
        self.open_gauntlet = open_gauntlet
        self._stop = threading.Event()

    @cached_property
    def store(self) -> Store:
        """The run store, opened on first use (a directly opened log never needs it)."""
        from .store_access import Store

        return Store(self.store_root, index_path=self.index_path)

    @cached_property
    def watch_hub(self) -> WatchHub:
        """The app's one file watcher (one watchdog Observer, started on first use); the
        store screens and the live screen subscribe to it (watch.py)."""
        return WatchHub()

    # ------------------------------------------------------------------ startup
    def get_default_screen(self) -> Screen:
        if (self.open_path is not None or self.launch_args is not None
                or self.open_gauntlet is not None):
            return HomeScreen()  # the browser is built when someone goes back to it
        return self.browser_screen()

    def browser_screen(self) -> BrowserScreen:
        from .screens.browser import BrowserScreen

        return BrowserScreen(self.store, watch=self.watch_store)

    def on_mount(self) -> None:
        self._check_size(self.size.width, self.size.height)
        if self.open_path is not None:
            self.open_target(self.open_path)
        if self.launch_args is not None:
            self.launch(self.launch_args)
        if self.open_gauntlet is not None:
            from .screens.gauntlet_screen import GauntletScreen

            self.push_screen(GauntletScreen(self.store, self.open_gauntlet,
                                            watch=self.watch_store))

    def on_unmount(self) -> None:
        self._stop.set()
        if "watch_hub" in self.__dict__:  # only if someone started it
            self.watch_hub.close()

    def open_target(self, path: Path) -> None:
        if is_run_dir(path):
            self.open_run(path)
        elif path.is_file() and path.name.endswith(".json"):
            from .screens.dump_screen import DumpScreen

            self.push_screen(DumpScreen(path))
        elif path.is_file():
            from .screens.log_screen import LogScreen

            self.push_screen(LogScreen(path))
        elif path.is_dir():
            dumps = failure_dumps(path)
            if dumps:
                from .screens.dump_screen import DumpScreen

                self.push_screen(DumpScreen(dumps[0], others=dumps[1:]))
            elif not (path / "runs").is_dir():
                self.notify(f"{path} holds no run, store or failure dump", severity="error",
                            markup=False)

    # ------------------------------------------------------------------ navigation
    def open_run(self, path: Path, live: bool | None = None) -> None:
        from .screens.live_run import LiveRunScreen
        from .screens.result import ResultScreen

        if live is None:
            live = not (path / rundir.RESULT).exists()
        self.push_screen(LiveRunScreen(path) if live else ResultScreen(path))

    @on(OpenRun)
    def _open_run_message(self, message: OpenRun) -> None:
        self.open_run(message.path, message.live)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    # ------------------------------------------------------------------ launching
    def launch(self, args: list[str], *, open_live: bool = True) -> None:
        """Spawn `ktstr ARGS` (run, rerun, repro) and open the run it makes."""
        try:
            launched = launcher.spawn(args, self.store_root)
        except KtstrError as e:  # shown; the app stays up
            self.notify(e.one_line(), severity="error", markup=False)
            return
        self.notify(f"started ktstr {' '.join(args)} (pid {launched.pid})", markup=False)
        if open_live:
            self._await_run(launched)

    @work(thread=True, group="launch")
    def _await_run(self, launched: launcher.Launched) -> None:
        path = launcher.find_run(self.store.runs_dir, launched, self._stop)
        if path is not None:
            self.post_message(OpenRun(path, live=True))
        elif not self._stop.is_set():
            code = launched.exit_code()
            self.post_message(LaunchFailed(launched.argv, -1 if code is None else code,
                                           launched.log_tail()))

    @on(LaunchFailed)
    def _launch_failed(self, message: LaunchFailed) -> None:
        what = " ".join(message.argv[:1])
        detail = message.tail.splitlines()[-1] if message.tail else "no output"
        self.notify(f"ktstr {what} exited ({message.code}) before a run appeared: {detail}",
                    severity="error", timeout=15, markup=False)

    # ------------------------------------------------------------------ terminal size
    def on_resize(self, event: events.Resize) -> None:
        self._check_size(event.size.width, event.size.height)

    def _check_size(self, width: int, height: int) -> None:
        small = width < MIN_WIDTH or height < MIN_HEIGHT
        showing = isinstance(self.screen, TooSmallScreen)
        if small and not showing:
            self.push_screen(TooSmallScreen(MIN_WIDTH, MIN_HEIGHT))
        elif small and showing:
            self.screen.show_size(width, height)
        elif not small and showing:
            self.pop_screen()
