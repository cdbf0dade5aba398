"""The base of screens that show what is in the run store (the browser, a gauntlet).

`StoreScreen.reload()` re-reads the store. When `watch` is on, the screen follows the store
through the app's one file watcher (ktstr_tui/watch.py: StoreEvents on the shared
Observer, subscribed on mount, unsubscribed on unmount); the store's events and the screen
itself (after a delete) post StoreChanged, and the screen reloads once per burst
(RELOAD_DELAY_S after the first change), not once per file.
"""

from __future__ import annotations

from textual import on
from textual.screen import Screen

from ktstr_vmm.errors import KtstrError

from ..messages import StoreChanged, WatchFailed
from ..store_access import LogAppended, Store, StoreEvent, StoreEvents
from ..watch import Subscription

RELOAD_DELAY_S = 0.3


class StoreScreen(Screen):
    def __init__(self, store: Store, *, watch: bool = True) -> None:
        super().__init__()
        self.store = store
        self.watch_enabled = watch
        self._events: StoreEvents | None = None
        self._watch: Subscription | None = None
        self._reload_pending = False

    def reload(self) -> None:
        raise NotImplementedError

    def follow_store(self) -> None:
        """Start following the store (when `watch` is on); the screen calls it on mount."""
        if not self.watch_enabled:
            return

        def changed(event: StoreEvent) -> None:
            if not isinstance(event, LogAppended):  # post_message is thread-safe
                self.post_message(StoreChanged(event.run_id, type(event).__name__))

        events = StoreEvents(self.store.root, changed)
        try:
            runs_dir = events.open()
        except KtstrError as e:  # live updates are a bonus; say so and go on
            self._watch_failed(WatchFailed(e.one_line()))
            return
        self._events = events
        # The hub schedules the recursive watch (a walk of the store) off the event loop.
        self._watch = self.app.watch_hub.subscribe(
            runs_dir, events.dispatch, recursive=True,
            on_error=lambda error: self.post_message(WatchFailed(error)))

    def on_unmount(self) -> None:
        if self._watch is not None:
            self.app.watch_hub.unsubscribe(self._watch)
            self._watch = None
        if self._events is not None:
            self._events.close()
            self._events = None

    @on(WatchFailed)
    def _watch_failed(self, message: WatchFailed) -> None:
        self.notify(f"live updates off: {message.error}", severity="warning", markup=False)

    @on(StoreChanged)
    def _store_changed(self) -> None:
        if not self._reload_pending:
            self._reload_pending = True
            self.set_timer(RELOAD_DELAY_S, self._debounced_reload)

    def _debounced_reload(self) -> None:
        self._reload_pending = False
        self.reload()
