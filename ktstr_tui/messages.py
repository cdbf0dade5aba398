"""The app's own messages, in one place (toolong's messages.py is the model)."""

from __future__ import annotations

from pathlib import Path

from textual.message import Message


class OpenRun(Message):
    """Open a run directory: the live screen while it runs, else its result."""

    def __init__(self, path: Path, *, live: bool | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self.live = live


class StoreChanged(Message):
    """The run store changed (a run appeared, changed phase or was removed)."""

    def __init__(self, run_id: str, kind: str) -> None:
        super().__init__()
        self.run_id = run_id
        self.kind = kind


class WatchFailed(Message):
    """A file watch could not be set up (posted from the watch hub's thread)."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class LaunchFailed(Message):
    """A spawned `ktstr` command exited before a run directory appeared."""

    def __init__(self, argv: list[str], code: int, tail: str) -> None:
        super().__init__()
        self.argv = argv
        self.code = code
        self.tail = tail


class RunUpdate(Message):
    """New state of a watched run directory (posted by the live tail worker)."""

    def __init__(self, status=None, events=(), samples=(), result_ready: bool = False,
                 gone: bool = False, control_live: bool = False, error: str | None = None,
                 globals=()) -> None:
        super().__init__()
        self.status = status
        self.events = tuple(events)
        self.samples = tuple(samples)
        self.globals = tuple(globals)  # bpf.jsonl lines' changed variables, in order
        self.result_ready = result_ready
        self.gone = gone
        self.control_live = control_live
        self.error = error


class ShowInScxDump(Message):
    """Show the sched_ext dump at the first line containing `text` ("CPU 3 ", "spin-0[116]")."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class ShowMonitorAtFailure(Message):
    """Show the monitor history at the last sample before the scheduler's exit."""
