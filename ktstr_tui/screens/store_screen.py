"""The base of screens that show what is in the run store (the browser, a gauntlet).

`StoreScreen.reload()` re-reads the store; the store's watcher (a watchdog thread, when
`watch` is on) and the screen itself (after a delete) post StoreChanged, and the screen
reloads once per burst (RELOAD_DELAY_S after the first change), not once per file.
"""

from __future__ import annotations

from textual import on, work
from textual.screen import Screen

from ktstr_vmm.errors import KtstrError

from ..messages import StoreChanged
from ..store_access import LogAppended, Store, StoreEvent, StoreWatcher

RELOAD_DELAY_S = 0.3


class StoreScreen(Screen):
    def __init__(self, store: Store, *, watch: bool = True) -> None:
        super().__init__()
        self.store = store
        self.watch_enabled = watch
        self._watcher: StoreWatcher | None = None
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

        self._watcher = StoreWatcher(self.store.root, changed)
        self._start_watcher(self._watcher)

    def on_unmount(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None

    @work(thread=True, group="watch")
    def _start_watcher(self, watcher: StoreWatcher) -> None:
        try:
            watcher.start()  # walks the store: off the event loop
        except KtstrError as e:  # live updates are a bonus; say so and go on
            self.app.call_from_thread(self.notify, f"live updates off: {e}",
                                      severity="warning", markup=False)

    @on(StoreChanged)
    def _store_changed(self) -> None:
        if not self._reload_pending:
            self._reload_pending = True
            self.set_timer(RELOAD_DELAY_S, self._debounced_reload)

    def _debounced_reload(self) -> None:
        self._reload_pending = False
        self.reload()
