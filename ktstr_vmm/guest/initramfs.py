"""The guest's initramfs: a gzip-compressed cpio "newc" archive written by us.

It holds only what a run needs: the agent at /init, the run's guest spec at /ktstr/spec,
the files the caller asks for (the scheduler binary, typically at /bin/sched) and their
shared-library closure (see elfdeps.py), plus /dev/console and a few empty mount points.
Archives are cached by the sha256 of their uncompressed bytes under
`cache_dir()/initramfs/`, so the same inputs give the same file and no second gzip pass.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import posixpath
import stat
from pathlib import Path

from .. import paths
from ..errors import BuildError
from ..fsutil import atomic_write_bytes
from .elfdeps import library_closure

CPIO_MAGIC = b"070701"
TRAILER = "TRAILER!!!"
# Bump when the archive layout changes so old cache entries are not mistaken for new ones.
LAYOUT_VERSION = 1
EMPTY_DIRS = ("/dev", "/proc", "/sys", "/tmp", "/run", "/ktstr")
LD_SO_CACHE = Path("/etc/ld.so.cache")
CACHE_KEEP = 64  # archives kept in cache_dir()/initramfs, most recently used first


class CpioWriter:
    """An in-memory cpio newc archive with deterministic headers (uid/gid 0, mtime 0,
    inode numbers in insertion order). Parent directories are added on demand."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._ino = 1
        self._paths: dict[str, str] = {}  # archive name -> kind ("dir", "file", ...)

    def _entry(self, name: str, mode: int, data: bytes = b"", nlink: int = 1,
               rdev: tuple[int, int] = (0, 0)) -> None:
        encoded = name.encode("utf-8") + b"\0"
        fields = (self._ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1],
                  len(encoded), 0)
        header = CPIO_MAGIC + b"".join(b"%08X" % v for v in fields)
        self._ino += 1
        self._chunks.append(header + encoded + _pad(len(header) + len(encoded)))
        if data:
            self._chunks.append(data + _pad(len(data)))

    def _name(self, path: str, kind: str) -> str:
        parts = path.split("/")
        if not path.startswith("/") or "\0" in path or ".." in parts or "." in parts:
            raise BuildError(f"bad guest path {path!r}", "use an absolute path without '..'")
        norm = posixpath.normpath(path)
        name = norm.lstrip("/")
        if not name:
            raise BuildError("bad guest path '/'", "name a file below /")
        if name == TRAILER:  # this name ends a cpio archive: everything after it is lost
            raise BuildError(f"bad guest path {path!r}", "the name is reserved by cpio")
        if name in self._paths:
            if kind == "dir" and self._paths[name] == "dir":
                return ""
            raise BuildError(f"guest path {norm} is given twice")
        parent = posixpath.dirname(name)
        if parent and self._paths.get(parent) != "dir":
            self.dir("/" + parent)
        self._paths[name] = kind
        return name

    def dir(self, path: str, mode: int = 0o755) -> None:
        name = self._name(path, "dir")
        if name:
            self._entry(name, stat.S_IFDIR | mode, nlink=2)

    def file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(self._name(path, "file"), stat.S_IFREG | (mode & 0o7777), data)

    def symlink(self, path: str, target: str) -> None:
        self._entry(self._name(path, "symlink"), stat.S_IFLNK | 0o777, target.encode("utf-8"))

    def chardev(self, path: str, major: int, minor: int, mode: int = 0o600) -> None:
        self._entry(self._name(path, "chardev"), stat.S_IFCHR | mode, rdev=(major, minor))

    def __contains__(self, path: str) -> bool:
        return posixpath.normpath("/" + path.lstrip("/")).lstrip("/") in self._paths

    def getvalue(self) -> bytes:
        """The archive with its trailer (the writer stays usable; the trailer is not kept)."""
        encoded = TRAILER.encode() + b"\0"
        fields = (0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, len(encoded), 0)
        header = CPIO_MAGIC + b"".join(b"%08X" % v for v in fields)
        tail = header + encoded + _pad(len(header) + len(encoded))
        return b"".join(self._chunks) + tail


def _pad(n: int) -> bytes:
    return b"\0" * (-n % 4)


def _read(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise BuildError(f"cannot read {what} {path}: {e.strerror}") from e


def _host_mode(path: Path) -> int:
    try:
        return os.stat(path).st_mode & 0o777
    except OSError as e:
        raise BuildError(f"cannot read {path}: {e.strerror}") from e


def build_archive(agent: Path, spec_text: str, files: dict[str, Path], *,
                  links: dict[str, str] | None = None,
                  data: dict[str, tuple[bytes, int]] | None = None) -> bytes:
    """The uncompressed cpio archive (see the module docstring for what it holds).
    `links` maps guest paths to symlink targets, `data` guest paths to (bytes, mode);
    a link or data path that `files` also names is left out (files win)."""
    w = CpioWriter()
    for d in EMPTY_DIRS:
        w.dir(d)
    w.chardev("/dev/console", 5, 1)
    w.file("/init", _read(agent, "agent"), 0o755)
    w.file("/ktstr/spec", spec_text.encode("utf-8"), 0o644)
    extra: dict[str, Path] = {}
    needs_ld_cache = False
    for guest in sorted(files):
        host = Path(files[guest])
        if guest in w or guest in extra:
            raise BuildError(f"guest path {guest} is given twice")
        extra[guest] = host
    libs: dict[str, Path] = {}
    for guest, host in [("/init", Path(agent)), *sorted(extra.items())]:
        closure = library_closure(host, guest)
        needs_ld_cache |= closure.needs_ld_cache
        for lib_guest, lib_host in closure.files.items():
            prev = libs.get(lib_guest) or extra.get(lib_guest)
            if prev is not None and os.path.realpath(prev) != os.path.realpath(lib_host):
                raise BuildError(f"guest path {lib_guest} would hold both {prev} and {lib_host}")
            libs.setdefault(lib_guest, lib_host)
    for guest, host in sorted(extra.items()):
        w.file(guest, _read(host, "file"), _host_mode(host))
    for guest, host in sorted(libs.items()):
        if guest not in extra:
            w.file(guest, _read(host, "shared library"), _host_mode(host))
    if needs_ld_cache and LD_SO_CACHE.is_file():
        w.file(str(LD_SO_CACHE), _read(LD_SO_CACHE, "loader cache"), 0o644)
    for guest, (blob, mode) in sorted((data or {}).items()):
        if guest not in w:
            w.file(guest, blob, mode)
    for guest, target in sorted((links or {}).items()):
        if guest not in w:
            w.symlink(guest, target)
    return w.getvalue()


def build_initramfs(agent: Path, spec_text: str, files: dict[str, Path],
                    out: Path | None = None, *, links: dict[str, str] | None = None,
                    data: dict[str, tuple[bytes, int]] | None = None) -> Path:
    """Write the gzip-compressed initramfs and return its path.

    `files` maps guest paths to host files (e.g. {"/bin/sched": scx_simple}); each comes
    with its shared libraries and ELF interpreter. With `out`, the archive is written
    there; otherwise it is cached by content under cache_dir()/initramfs/ and an
    existing identical archive is returned as is. A missing library raises BuildError
    naming the binary and the library."""
    archive = build_archive(Path(agent), spec_text, dict(files), links=links, data=data)
    if out is None:
        digest = hashlib.sha256(b"ktstr-initramfs-%d\0" % LAYOUT_VERSION + archive).hexdigest()
        cache = paths.cache_dir() / "initramfs"
        out = cache / f"{digest[:40]}.cpio.gz"
        if out.is_file():
            with contextlib.suppress(OSError):
                os.utime(out)  # most recently used: pruned last
            return out
        try:
            cache.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise BuildError(f"cannot create {cache}: {e.strerror}",
                             "set KTSTR_CACHE to a writable directory") from e
        atomic_write_bytes(out, gzip.compress(archive, compresslevel=6, mtime=0))
        prune_cache(cache)
        return out
    out = Path(out)
    atomic_write_bytes(out, gzip.compress(archive, compresslevel=6, mtime=0))
    return out


def prune_cache(cache: Path, keep: int | None = None) -> None:
    """Keep the `keep` most recently used archives (every run's spec differs a little,
    so the cache would otherwise grow by one archive per new spec)."""
    keep = CACHE_KEEP if keep is None else keep
    try:
        entries = sorted(((p.stat().st_mtime, p) for p in cache.glob("*.cpio.gz")),
                         reverse=True)
    except OSError:
        return
    for _, p in entries[keep:]:
        with contextlib.suppress(OSError):
            p.unlink()
