"""Start `ktstr run|rerun|repro` as a process of its own and find the run it creates.

The TUI never drives an engine: it spawns the CLI in a new session (a TUI that quits or
crashes leaves the run going), keeps the child's output in a log under the cache dir, reaps
it from a thread, and recognises the new run directory by the pid in its status.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ktstr_vmm import paths
from ktstr_vmm.errors import UsageError
from ktstr_vmm.rundir import layout as rundir

FIND_TIMEOUT_S = 120.0


@dataclass
class Launched:
    argv: list[str]
    proc: subprocess.Popen
    log: Path
    started: float

    @property
    def pid(self) -> int:
        return self.proc.pid

    def exit_code(self) -> int | None:
        return self.proc.poll()

    def log_tail(self, lines: int = 5) -> str:
        try:
            data = self.log.read_bytes()[-4096:]
        except OSError:
            return ""
        return "\n".join(data.decode("utf-8", "replace").strip().splitlines()[-lines:])


def ktstr_argv(*args: str) -> list[str]:
    """How to run the `ktstr` CLI of this very installation."""
    return [sys.executable, "-m", "ktstr_cli", *args]


def spawn(args: list[str], store_root: Path) -> Launched:
    """Start `ktstr ARGS` detached, output to a log file; a thread reaps it."""
    logs = paths.cache_dir() / "tui-launches"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{time.strftime('%Y%m%d-%H%M%S')}-{args[0] if args else 'ktstr'}-{os.getpid()}.log"
    env = dict(os.environ, KTSTR_HOME=str(store_root))
    argv = ktstr_argv(*args)
    with open(log, "wb") as out:
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, env=env, start_new_session=True)
        except OSError as e:
            raise UsageError(f"cannot start {' '.join(argv[2:])}: {e.strerror}") from e
    threading.Thread(target=_reap, args=(proc,), name=f"reap-{proc.pid}", daemon=True).start()
    return Launched(argv=list(args), proc=proc, log=log, started=time.time())


def _reap(proc: subprocess.Popen) -> None:
    # A run may last long; the owner waits for it in slices so the thread ends with it.
    while True:
        try:
            proc.wait(timeout=3600)
            return
        except subprocess.TimeoutExpired:
            continue


def find_run(runs_dir: Path, launched: Launched, stop: threading.Event,
             timeout: float = FIND_TIMEOUT_S) -> Path | None:
    """The run directory whose status.json names the launched pid; None when the child
    exited first, the caller stopped waiting, or nothing appeared within `timeout`."""
    deadline = time.monotonic() + timeout
    while not stop.is_set() and time.monotonic() < deadline:
        exited = launched.exit_code() is not None
        try:
            candidates = [p for p in runs_dir.iterdir()
                          if p.is_dir() and p.stat().st_mtime >= launched.started - 2]
        except OSError:
            candidates = []
        # `ktstr repro RUN` makes its run inside the primary's directory (RUN/repro).
        candidates += [p / rundir.REPRO for p in candidates if (p / rundir.REPRO).is_dir()]
        for p in candidates:
            try:
                st = json.loads((p / rundir.STATUS).read_bytes())
            except (OSError, ValueError):
                continue
            if isinstance(st, dict) and st.get("pid") == launched.pid:
                return p
        if exited:  # scanned once more after the child ended: it made no run
            return None
        stop.wait(0.2)
    return None
