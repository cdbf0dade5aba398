"""The kernel cache on disk: one directory per kernel under cache_dir()/kernels/.

A kernel directory is complete iff its `kernel.json` manifest exists. Entries are built in a
temp directory next to the final one (same file system) and renamed into place under an
exclusive lock, so a half-finished fetch or import never looks complete, and a crashed one
leaves only a `.tmp-*` directory that the next locked writer removes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import FetchError, KtstrError
from ..fsutil import dir_lock
from ..paths import cache_dir

MANIFEST = "kernel.json"
MANIFEST_FORMAT = 1
LOCK_TIMEOUT_S = 1800.0


class CacheFullError(FetchError):
    """The cache's disk filled up while a kernel was being written (nothing was kept)."""

    exit_code = 2


def kernels_dir() -> Path:
    return cache_dir() / "kernels"


@contextlib.contextmanager
def locked(timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Exclusive lock on kernels/.lock (blocks other fetches/imports, any process)."""
    root = kernels_dir()
    with dir_lock(root, timeout, FetchError, "kernel cache",
                  on_open_error=lambda e: _cache_error(e, root)):
        yield


@contextlib.contextmanager
def building(name: str) -> Iterator[Path]:
    """A fresh temp directory next to kernels/<name>; removed unless install() moved it.

    A full disk (ENOSPC/EDQUOT) anywhere inside becomes CacheFullError; the temp dir is gone
    before the error reaches the caller."""
    root = kernels_dir()
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=root))
    except OSError as e:
        raise _cache_error(e, root) from e
    try:
        yield tmp
    except OSError as e:
        raise _cache_error(e, root, name) from e
    except KtstrError as e:
        if "No space left" in e.message:  # from dpkg-deb, apt-get or an atomic write
            raise _cache_error(OSError(errno.ENOSPC, e.message), root, name) from e
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def install(tmp: Path, name: str) -> Path:
    """Rename a finished temp dir (its manifest written last) to kernels/<name>."""
    final = kernels_dir() / name
    if (final / MANIFEST).exists():
        return final  # someone else finished the same kernel first; ours is discarded
    if final.exists():
        shutil.rmtree(final)  # an incomplete leftover (no manifest): never complete
    os.rename(tmp, final)
    _fsync_dir(final.parent)
    return final


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _cache_error(e: OSError, root: Path, name: str | None = None) -> KtstrError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        what = f" (while writing kernel {name})" if name else ""
        return CacheFullError(f"the disk holding {root} is full{what}; nothing was kept",
                              "free some space, or set KTSTR_CACHE to another disk")
    return FetchError(f"cannot write the kernel cache {root}: {e.strerror or e}",
                      "set KTSTR_CACHE to a writable directory")
