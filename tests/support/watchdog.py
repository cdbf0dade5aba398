"""The host's last line of defence: end a guest that overruns its deadline.

    with Watchdog(machine, timeout_s=60) as dog:
        status = machine.wait(...)
    if dog.fired: ...   # machine.exit_reason() == "watchdog"

The guest agent has deadlines of its own; this covers a guest that hangs anyway (a
kernel stuck with interrupts off, an agent that never powers off, a wedged QEMU).
The default deadline of a run is RunSpec.timeout (duration + a per-vCPU boot allowance).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class Watchdog:
    """Calls `machine.kill(reason="watchdog")` once `timeout_s` has passed, unless
    cancelled or the machine has stopped by itself. Runs on a daemon thread."""

    def __init__(self, machine, timeout_s: float,
                 on_fire: Callable[[], None] | None = None) -> None:
        self.machine = machine
        self.timeout_s = timeout_s
        self.deadline = time.monotonic() + timeout_s  # reset by start()
        self._on_fire = on_fire
        self._cancel = threading.Event()
        self._fired = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def fired(self) -> bool:
        return self._fired.is_set()

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def start(self) -> Watchdog:
        if self._thread is None:
            self.deadline = time.monotonic() + self.timeout_s
            self._thread = threading.Thread(target=self._run, name="ktstr-watchdog",
                                            daemon=True)
            self._thread.start()
        return self

    def cancel(self) -> None:
        self._cancel.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)

    def _run(self) -> None:
        if self._cancel.wait(self.remaining()):
            return
        if self.machine.wait(0) is not None:  # it stopped on its own just in time
            return
        log.warning("watchdog: guest overran its %.1fs deadline; killing it", self.timeout_s)
        self._fired.set()
        try:
            self.machine.kill(reason="watchdog")
        finally:
            if self._on_fire is not None:
                self._on_fire()

    def __enter__(self) -> Watchdog:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cancel()
