"""Whole-file writes that never leave a half-written file, and line appends for logs."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .errors import KtstrError, StoreError


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write `data` to `path` through a temp file in the same directory, fsync, rename.

    On any failure (full disk, read-only file system) the temp file is removed, the old
    content of `path` stays as it was, and a StoreError names the path and the reason.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise StoreError(f"cannot write {path}: {os.strerror(e.errno or errno.EIO)}",
                         hint_for(e)) from e
    _fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def append_line(path: Path, line: str) -> None:
    """Append one line (a newline is added) so a tailing reader sees whole lines."""
    data = (line.rstrip("\n") + "\n").encode("utf-8", "replace")
    try:
        with open(path, "ab", buffering=0) as f:
            f.write(data)
    except OSError as e:
        raise StoreError(f"cannot append to {path}: {os.strerror(e.errno or errno.EIO)}",
                         hint_for(e)) from e


def append_json_line(path: Path, obj: Any) -> None:
    append_line(path, json.dumps(obj, separators=(",", ":")))


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def hint_for(e: OSError) -> str | None:
    if e.errno == errno.ENOSPC:
        return "the disk is full: free some space and retry"
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return "the location is not writable: set KTSTR_HOME / KTSTR_CACHE to a writable directory"
    return None


@contextlib.contextmanager
def dir_lock(root: Path, timeout: float, error: type[KtstrError], what: str,
             on_open_error: Callable[[OSError], KtstrError] | None = None,
             clear_temps: bool = True) -> Iterator[None]:
    """Exclusive fcntl lock on `root/.lock` across processes, waiting up to `timeout`.

    `what` names the cache in messages ("kernel cache"); `error` is the exception family
    raised when the lock cannot be had. With the lock held, `.tmp-*` directories left by a
    process that died mid-way are removed (none can be live). Closing the fd drops the lock.
    """
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd = os.open(root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        if on_open_error is not None:
            raise on_open_error(e) from e
        raise error(f"cannot write the {what} {root}: {e.strerror or e}",
                    "set KTSTR_CACHE to a writable directory") from e
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise error(f"another ktstr has held {root / '.lock'} for "
                                f"{timeout:.0f}s", "wait for it, or stop it") from None
                time.sleep(0.2)
        if clear_temps:
            for d in root.glob(".tmp-*"):
                shutil.rmtree(d, ignore_errors=True)
        yield
    finally:
        os.close(fd)
