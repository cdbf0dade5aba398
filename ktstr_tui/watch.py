"""The app's one file watcher: a single watchdog Observer that every screen shares.

`WatchHub.subscribe(path, callback, recursive=False, on_error=None) -> Subscription`
asks for `callback(event)` on every watchdog event under `path`; `unsubscribe(sub)` ends
it. Both only queue the request and return at once (safe on the event loop): the hub's
own thread starts the Observer on the first subscription and schedules and unschedules
watches in request order, because scheduling a recursive watch walks the tree (a big
store takes a moment). Subscribers of the same (path, recursive) share one watch; the
watch goes when its last subscriber leaves.

Callbacks run on the Observer's thread: a screen forwards with post_message or sets a
threading.Event, never touches widgets. An exception in a callback is logged and does not
stop the Observer. When a watch cannot be set up (inotify limits), `on_error(text)` is
called on the hub's thread and `sub.error` says why; subscribers keep their polling
fallbacks for exactly that case. `sub.ready` is set once the request was carried out
(scheduled or failed), for tests that wait on it.

The app owns one hub (KtstrApp.watch_hub) and closes it on exit.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import ObservedWatch

log = logging.getLogger(__name__)


class Subscription(FileSystemEventHandler):
    """One subscriber's watch: the handler scheduled on the shared Observer."""

    def __init__(self, path: Path, callback: Callable[[FileSystemEvent], None],
                 recursive: bool, on_error: Callable[[str], None] | None) -> None:
        self.path = Path(path)
        self.callback = callback
        self.recursive = recursive
        self.on_error = on_error
        self.ready = threading.Event()
        self.error: str | None = None
        self.watch: ObservedWatch | None = None

    def on_any_event(self, event: FileSystemEvent) -> None:
        try:
            self.callback(event)
        except Exception:  # one subscriber's bug must not end the shared Observer
            log.exception("file watch callback failed on %s", event)


class WatchHub:
    def __init__(self) -> None:
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.observer: Observer | None = None  # the one Observer, once someone subscribed
        self.subscriptions: set[Subscription] = set()  # scheduled ones (hub thread writes)
        self._users: dict[ObservedWatch, int] = {}

    def subscribe(self, path: Path, callback: Callable[[FileSystemEvent], None], *,
                  recursive: bool = False,
                  on_error: Callable[[str], None] | None = None) -> Subscription:
        sub = Subscription(path, callback, recursive, on_error)
        self._request("add", sub)
        return sub

    def unsubscribe(self, sub: Subscription | None) -> None:
        if sub is not None:
            self._request("remove", sub)

    def close(self) -> None:
        """Stop the Observer and the hub's thread (the app calls it on exit)."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._requests.put(("close", None))
            thread.join(timeout=10)

    def _request(self, op: str, sub: Subscription) -> None:
        with self._lock:
            if self._closed:
                sub.ready.set()
                return
            self._requests.put((op, sub))
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="ktstr-watch-hub",
                                                daemon=True)
                self._thread.start()

    def _serve(self) -> None:
        while True:
            op, sub = self._requests.get()
            if op == "close":
                break
            try:
                if op == "add":
                    self._add(sub)
                else:
                    self._remove(sub)
            except Exception:  # the hub serves the others whatever one request did
                log.exception("file watch %s of %s failed", op, sub.path)
            finally:
                sub.ready.set()
        observer, self.observer = self.observer, None
        if observer is not None:
            observer.stop()
            observer.join(timeout=5)

    def _add(self, sub: Subscription) -> None:
        try:
            if self.observer is None:
                observer = Observer()
                observer.daemon = True
                observer.start()
                self.observer = observer
            sub.watch = self.observer.schedule(sub, str(sub.path), recursive=sub.recursive)
        except OSError as e:
            sub.error = (f"cannot watch {sub.path}: {e.strerror or e} (too many watches? "
                         "raise fs.inotify.max_user_watches)")
            if sub.on_error is not None:
                sub.on_error(sub.error)
            return
        self._users[sub.watch] = self._users.get(sub.watch, 0) + 1
        self.subscriptions.add(sub)

    def _remove(self, sub: Subscription) -> None:
        if sub not in self.subscriptions or self.observer is None:
            return  # never scheduled (it failed)
        self.subscriptions.discard(sub)
        watch = sub.watch
        left = self._users[watch] - 1
        try:
            if left:
                self._users[watch] = left
                self.observer.remove_handler_for_watch(sub, watch)
            else:
                del self._users[watch]
                self.observer.unschedule(watch)
        except (KeyError, OSError):  # the watched directory is gone: so is its watch
            pass

    def watched(self) -> list[tuple[str, bool]]:
        """(path, recursive) of the watches on the Observer now (for tests)."""
        return sorted((w.path, w.is_recursive) for w in list(self._users))
