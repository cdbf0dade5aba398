"""A big-log view: indexed by line offset in a worker thread, visible lines read on demand.

LogView (a ScrollView with the line API) shows a LogFile: the worker scans line breaks in
batches and posts LogView.Indexed; only the lines on screen are read (one os.pread per
screenful) and highlighted. The worker keeps polling the file for growth (live tail),
truncation and deletion; `wake()` (the live screen's subscription to the app's file
watcher, ktstr_tui/watch.py) makes it look at once. The polling stays for correctness: a
file opened on its own is not watched, and a watch may be refused (inotify limits). LogPane wraps a LogView with a search bar and a status line.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Input, Static

from ..lexers import TERMINAL, highlight_line
from ..log_file import LogFile, decode_terminal

POLL_SECONDS = 0.2
CACHE_LINES = 4000


class LogView(ScrollView, can_focus=True):
    """Lines of one file; follow mode keeps the end in view as the file grows."""
    DEFAULT_CSS = """
    LogView { height: 1fr; scrollbar-gutter: stable; }
    LogView:focus { background-tint: $foreground 3%; }
    """

    BINDINGS = [
        Binding("f", "toggle_follow", "Follow"),
        Binding("j", "scroll_down", "Down", show=False),
        Binding("k", "scroll_up", "Up", show=False),
        Binding("g,home", "scroll_home", "Top", show=False),
        Binding("G,end", "scroll_end", "Bottom", show=False),
        Binding("n", "search_next", "Next match", show=False),
        Binding("N", "search_prev", "Prev match", show=False),
    ]

    follow: reactive[bool] = reactive(False)
    pointer: reactive[int | None] = reactive(None, always_update=True)

    class Indexed(Message):
        """The index grew (or was reset); posted by the scan worker."""

        def __init__(self, view: LogView, lines: int, fraction: float, reset: bool) -> None:
            super().__init__()
            self.view, self.lines, self.fraction, self.reset = view, lines, fraction, reset

    class FileGone(Message):
        def __init__(self, view: LogView) -> None:
            super().__init__()
            self.view = view

    class Found(Message):
        def __init__(self, view: LogView, line: int | None, pattern: str) -> None:
            super().__init__()
            self.view, self.line, self.pattern = view, line, pattern

    def __init__(self, path: Path, lexer: str | None = None, *, follow: bool = False,
                 tail: bool = True, name: str | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        # the terminal lexer reads raw terminal bytes: control sequences applied, not shown
        self.log_file = LogFile(path, decode_terminal if lexer == TERMINAL else None)
        self.lexer = lexer
        self.tail = tail
        self.set_reactive(LogView.follow, follow)
        self.search_text = ""
        self.scan_fraction = 0.0
        self.line_count = 0
        self.gone = False
        self._cache: OrderedDict[int, Text] = OrderedDict()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._painted = threading.Event()  # set once the first lines are on screen

    # ------------------------------------------------------------------ worker
    def on_mount(self) -> None:
        self._scan_worker()

    def on_unmount(self) -> None:
        self._stop.set()
        self._wake.set()
        self._painted.set()

    def wake(self) -> None:
        """Nudge the worker (a file notification arrived)."""
        self._wake.set()

    @work(thread=True, exclusive=True, group="scan")
    def _scan_worker(self) -> None:
        lf = self.log_file
        try:
            while not self._stop.is_set():
                change = lf.poll()
                if change == "deleted":
                    self.post_message(self.FileGone(self))
                if change in ("grown", "reset"):
                    reset = change == "reset"
                    for progress in lf.scan(first_shown=self._painted):
                        if self._stop.is_set():
                            return
                        self.post_message(self.Indexed(self, progress.lines, progress.fraction,
                                                       reset))
                        reset = False
                if not self.tail:  # a finished run's log: indexed once (or absent)
                    if lf.fd is None:
                        self.post_message(self.Indexed(self, 0, 1.0, False))
                    return
                self._wake.wait(POLL_SECONDS)
                self._wake.clear()
        finally:
            if self._stop.is_set():
                lf.close()

    # ------------------------------------------------------------------ index updates
    @on(Indexed)
    def _on_indexed(self, event: Indexed) -> None:
        if event.view is not self:
            return
        if event.reset:
            self._cache.clear()
            self.pointer = None
        else:
            # the last line may have been partial; drop it so it is re-read
            self._cache.pop(self.line_count - 1, None)
        self.line_count = event.lines
        self.scan_fraction = event.fraction
        self.virtual_size = Size(self.log_file.max_width + 1, self.line_count)
        if self.follow:  # after layout, when the new virtual size bounds the scroll
            self.call_after_refresh(self._follow_end)
        self.refresh()
        if not self._painted.is_set():
            self.call_after_refresh(self._painted.set)

    def _follow_end(self) -> None:
        if self.follow:
            self.action_scroll_end()

    @on(FileGone)
    def _on_gone(self, event: FileGone) -> None:
        if event.view is self:
            self.gone = True

    # ------------------------------------------------------------------ rendering
    def _line_text(self, index: int) -> Text:
        text = self._cache.get(index)
        if text is None:
            height = max(1, self.scrollable_content_region.height)
            first = max(0, index)
            lines = self.log_file.read_lines(first, height)
            for i, raw in enumerate(lines):
                self._cache[first + i] = highlight_line(raw, self.lexer)
            while len(self._cache) > CACHE_LINES:
                self._cache.popitem(last=False)
            text = self._cache.get(index) or Text("")
        else:
            self._cache.move_to_end(index)
        return text

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self.scrollable_content_region.width
        base = self.rich_style
        if index >= self.line_count:
            return Strip.blank(width, base)
        text = self._line_text(index)
        if self.search_text:
            text = text.copy()
            text.highlight_words([self.search_text], "reverse", case_sensitive=False)
        if index == self.pointer:
            text = text.copy()
            text.stylize(Style(reverse=True, bold=True))
        segments = [Segment(s.text, base + s.style if s.style else base)
                    for s in text.render(self.app.console)]
        strip = Strip(segments)
        return strip.crop(scroll_x, scroll_x + width).extend_cell_length(width, base)

    # ------------------------------------------------------------------ actions
    def watch_follow(self, follow: bool) -> None:
        if follow:
            self.action_scroll_end()

    def action_toggle_follow(self) -> None:
        self.follow = not self.follow

    def action_scroll_end(self) -> None:
        # force: Textual drops a scroll while the vertical scrollbar is not shown yet, and it
        # is shown only by the layout pass after the new virtual size - which may come after
        # this runs (a busy machine), leaving a follow at the top with nothing to retry it.
        # scroll_y is still clamped to max_scroll_y, computed from the virtual size.
        self.scroll_to(y=max(0, self.line_count - self.scrollable_content_region.height),
                       animate=False, force=True, immediate=True)

    def action_scroll_home(self) -> None:
        self.follow = False
        self.scroll_to(y=0, animate=False)

    def on_mouse_scroll_up(self) -> None:
        self.follow = False

    def search(self, pattern: str, backwards: bool = False) -> None:
        self.search_text = pattern
        self._cache_search(pattern, backwards)
        self.refresh()

    def action_search_next(self) -> None:
        if self.search_text:
            self._cache_search(self.search_text, False)

    def action_search_prev(self) -> None:
        if self.search_text:
            self._cache_search(self.search_text, True)

    def _cache_search(self, pattern: str, backwards: bool) -> None:
        start = self.pointer if self.pointer is not None else self.scroll_offset.y - 1
        self._find_worker(pattern, start, backwards)

    @work(thread=True, exclusive=True, group="find")
    def _find_worker(self, pattern: str, start: int, backwards: bool) -> None:
        line = self.log_file.find(pattern, start, backwards)
        self.post_message(self.Found(self, line, pattern))

    @on(Found)
    def _on_found(self, event: Found) -> None:
        if event.view is not self:
            return
        if event.line is None:
            self.notify(f"'{event.pattern}' not found", severity="warning", markup=False)
            return
        self.follow = False
        self.pointer = event.line
        self.scroll_to(y=max(0, event.line - self.scrollable_content_region.height // 2),
                       animate=False)
        self.refresh()

    def jump_to(self, line: int) -> None:
        self.follow = False
        self.pointer = line
        self.scroll_to(y=max(0, line - 2), animate=False)
        self.refresh()


class LogPane(Vertical):
    """A LogView with a search bar (`/`) and a status line (lines, follow, scan progress)."""
    DEFAULT_CSS = """
    LogPane { height: 1fr; }
    LogPane .log-search { dock: bottom; margin-bottom: 1; }
    LogPane .log-status { dock: bottom; height: 1; color: $text-muted; background: $panel; padding: 0 1; }
    """

    BINDINGS = [Binding("slash", "search", "Search"),
                Binding("escape", "close_search", "Close search", show=False)]

    def __init__(self, path: Path, lexer: str | None = None, *, follow: bool = False,
                 tail: bool = True, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.path = Path(path)
        self._view = LogView(self.path, lexer, follow=follow, tail=tail)

    @property
    def view(self) -> LogView:
        return self._view

    def compose(self) -> ComposeResult:
        yield self._view
        yield Input(placeholder="search (enter: next, shift+enter/N: previous, esc: close)",
                    classes="log-search")
        yield Static("", classes="log-status")

    def on_mount(self) -> None:
        self.query_one(".log-search", Input).display = False
        self._update_status()
        self.watch(self._view, "follow", lambda _: self._update_status())

    @on(LogView.Indexed)
    @on(LogView.FileGone)
    def _status_changed(self) -> None:
        self.call_after_refresh(self._update_status)

    def _update_status(self) -> None:
        v = self._view
        parts = [self.path.name]
        if v.log_file.fd is None and not v.line_count:
            parts.append("waiting for the file" if v.tail else "no such file")
        else:
            parts.append(f"{v.line_count:,} lines")
        if v.scan_fraction < 1.0 and v.line_count:
            parts.append(f"indexing {v.scan_fraction:.0%}")
        parts.append("following" if v.follow else "not following (f)")
        if v.gone:
            parts.append("file deleted")
        self.query_one(".log-status", Static).update(Text(" · ".join(parts)))

    def action_search(self) -> None:
        box = self.query_one(".log-search", Input)
        box.display = True
        box.focus()

    @on(Input.Submitted, ".log-search")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.value:
            self._view.search(event.value)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "close_search":  # otherwise Esc goes on to the screen (back)
            return bool(self.is_mounted and self.query_one(".log-search", Input).display)
        return True

    def action_close_search(self) -> None:
        """Esc closes the search bar first; the next Esc leaves the screen."""
        box = self.query_one(".log-search", Input)
        box.display = False
        self._view.focus()
