"""One exception family with user-facing one-line messages.

Every error a person can cause (bad input, missing kernel, a scheduler that does not load)
is a KtstrError carrying a message and, where one exists, a hint that says how to fix it.
The CLI prints `ktstr: error: MESSAGE (HINT)` on one line and exits with `exit_code`.
Tracebacks are for bugs only.
"""

from __future__ import annotations


class KtstrError(Exception):
    """Base of every expected failure. exit_code: 2 = bad input / usage, 1 = failure."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        text = self.message if not self.hint else f"{self.message} ({self.hint})"
        return " ".join(text.split())


class UsageError(KtstrError):
    """Bad input from the user: options, topology, names, durations."""

    exit_code = 2


class KernelError(UsageError):
    """A kernel that is missing, not a kernel, or lacks sched_ext/BTF."""


class SchedulerError(UsageError):
    """An unknown scheduler name or a scheduler binary that cannot be used."""


class BuildError(KtstrError):
    """A build (schedulers, agent, native code) failed; message carries the compiler's tail."""


class FetchError(KtstrError):
    """Downloading a kernel or source package failed."""


class EngineError(KtstrError):
    """A VM engine could not start or control a guest."""


class StoreError(KtstrError):
    """The run store cannot be read or written."""


class Interrupted(KtstrError):
    """The user interrupted a long operation (Ctrl-C / SIGTERM)."""

    exit_code = 130
