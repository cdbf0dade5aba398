"""Live change notification over a run store (watchdog).

`StoreEvents(root, callback)` turns raw watchdog events under `<root>/runs/` into typed
store events for `callback`; whoever owns a watchdog Observer feeds it (it is a
FileSystemEventHandler): the TUI schedules it on the app's one Observer
(ktstr_tui/watch.py). `StoreWatcher(root, callback)` is StoreEvents with an Observer of its
own, for a caller that has none. Either way `<root>/runs/` is watched recursively and
`callback` gets:
  RunAdded(run_id)                 a run directory appeared (created or renamed into place)
  RunRemoved(run_id)               a run directory went away (deleted or renamed out)
  RunStatusChanged(run_id, file)   spec.json / status.json / result.json was written
  LogAppended(run_id, file)        console.log, sched.log, events.jsonl or monitor.jsonl grew
  FileChanged(run_id, file)        any other file (failure dump, snapshot, ...) was written
`file` is relative to the run directory (`repro/status.json` for the nested auto-repro).

Events are coalesced: raw file-system events are collected for `latency` seconds and each
distinct event is delivered once, in first-seen order, so a log growing a thousand lines a
second is one LogAppended per interval. Temp files (dot names, as the atomic writers use)
are ignored; their rename into place is the event. The callback runs on the delivery
thread (a Textual app forwards with `call_from_thread`); an exception in it is logged
and does not stop the watcher. Directories created after start are watched too.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from ..errors import StoreError
from ..rundir.layout import CONSOLE, EVENTS, MONITOR, RESULT, SCHED_LOG, SPEC, STATUS

log = logging.getLogger(__name__)

STATUS_FILES = frozenset({SPEC, STATUS, RESULT})
LOG_FILES = frozenset({CONSOLE, SCHED_LOG, EVENTS, MONITOR})
DEFAULT_LATENCY_S = 0.15


@dataclass(frozen=True)
class StoreEvent:
    run_id: str


@dataclass(frozen=True)
class RunAdded(StoreEvent):
    pass


@dataclass(frozen=True)
class RunRemoved(StoreEvent):
    pass


@dataclass(frozen=True)
class RunStatusChanged(StoreEvent):
    file: str


@dataclass(frozen=True)
class LogAppended(StoreEvent):
    file: str


@dataclass(frozen=True)
class FileChanged(StoreEvent):
    file: str


def classify(runs_dir: Path, path: str, *, is_dir: bool, removed: bool) -> StoreEvent | None:
    """The store event for one raw change at `path` (None when it is not interesting)."""
    try:
        parts = Path(os.fsdecode(path)).relative_to(runs_dir).parts
    except ValueError:
        return None
    if not parts or parts[0].startswith("."):
        return None
    run_id = parts[0]
    if len(parts) == 1:
        if not is_dir:
            return None
        return RunRemoved(run_id) if removed else RunAdded(run_id)
    if removed or is_dir or parts[-1].startswith("."):
        return None
    rel = "/".join(parts[1:])
    name = parts[-1]
    if name in STATUS_FILES:
        return RunStatusChanged(run_id, rel)
    if name in LOG_FILES:
        return LogAppended(run_id, rel)
    return FileChanged(run_id, rel)


class StoreEvents(FileSystemEventHandler):
    """Raw events under `<root>/runs/` -> coalesced StoreEvents for `callback`.

    `open()` makes `runs/` if missing, starts the delivery thread and returns the directory
    to watch (resolved: watchdog reports paths as scheduled); `close()` stops delivering.
    The observer that calls `dispatch` belongs to the caller.
    """

    def __init__(self, root: Path, callback: Callable[[StoreEvent], None], *,
                 latency: float = DEFAULT_LATENCY_S) -> None:
        self.root = Path(root)
        self.runs_dir = self.root / "runs"
        self.callback = callback
        self.latency = latency
        self._pending: dict[StoreEvent, None] = {}
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def open(self) -> Path:
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot watch {self.runs_dir}: {e.strerror}") from e
        # watchdog reports paths as given; resolve so relative_to() matches.
        self.runs_dir = self.runs_dir.resolve()
        if self._thread is None:
            self._stopping = False
            self._thread = threading.Thread(target=self._deliver, name="ktstr-store-watch",
                                            daemon=True)
            self._thread.start()
        return self.runs_dir

    def close(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            if self._thread is not threading.current_thread():  # close() from a callback
                self._thread.join(timeout=5)
            self._thread = None

    def on_any_event(self, event: FileSystemEvent) -> None:
        runs = self.runs_dir
        out: list[StoreEvent | None] = []
        is_dir = event.is_directory
        if isinstance(event, (FileMovedEvent, DirMovedEvent)):
            out.append(classify(runs, event.src_path, is_dir=is_dir, removed=True))
            out.append(classify(runs, event.dest_path, is_dir=is_dir, removed=False))
        elif isinstance(event, (DirCreatedEvent, FileCreatedEvent, FileModifiedEvent,
                                FileClosedEvent)):
            if isinstance(event, FileModifiedEvent) and is_dir:
                return
            out.append(classify(runs, event.src_path, is_dir=is_dir, removed=False))
        elif isinstance(event, DirDeletedEvent):
            out.append(classify(runs, event.src_path, is_dir=True, removed=True))
        for ev in out:
            if ev is not None:
                self._post(ev)

    def _post(self, ev: StoreEvent) -> None:
        with self._cond:
            self._pending.setdefault(ev, None)
            self._cond.notify_all()

    def _deliver(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
            # Let a burst settle, then hand over everything gathered at once.
            with self._cond:
                self._cond.wait_for(lambda: self._stopping, timeout=self.latency)
                if self._stopping:
                    return
                batch, self._pending = list(self._pending), {}
            for ev in batch:
                try:
                    self.callback(ev)
                except Exception:
                    log.exception("store watcher callback failed on %s", ev)


class StoreWatcher(StoreEvents):
    """StoreEvents on an Observer of its own; `start()` and `stop()` belong to the caller
    (also a context manager).

    start() walks the store to set up watches, which takes a moment on a big store; a UI
    calls it from a worker thread (the TUI uses StoreEvents on its one shared Observer).
    """

    def __init__(self, root: Path, callback: Callable[[StoreEvent], None], *,
                 latency: float = DEFAULT_LATENCY_S) -> None:
        super().__init__(root, callback, latency=latency)
        self._observer: Observer | None = None

    def start(self) -> None:
        if self._observer is not None:
            return
        runs_dir = self.open()
        observer = Observer()
        observer.daemon = True
        try:
            observer.schedule(self, str(runs_dir), recursive=True)
            observer.start()
        except OSError as e:
            self.stop()
            raise StoreError(f"cannot watch {runs_dir}: {e.strerror or e}",
                             "raise fs.inotify.max_user_watches for a very large store") from e
        self._observer = observer

    def stop(self) -> None:
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            observer.join(timeout=5)
        self.close()

    def __enter__(self) -> StoreWatcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
