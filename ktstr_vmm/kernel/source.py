"""The kernel's own source tree, as much of it as building tools/sched_ext needs.

For a kernel X.Y.Z we take Debian's newest `linux-source-X.Y` (private apt state under
sources/.apt, the archive URI read from this machine's apt configuration), keep the .deb in
sources/debs/, and extract only the parts the tools/sched_ext build reads (EXTRACT_PARTS) into
sources/linux-source-X.Y_<version>/, renamed into place when complete. Once a tree for the
series is cached, nothing touches the network.

Cache layout under paths.cache_dir()/"sources"/:
    .apt/                                  private apt state (sources.list, lists, cache)
    .lock                                  fcntl lock held while fetching or extracting
    debs/linux-source-7.3_<version>_all.deb
    linux-source-7.3_<safe version>/       the tree; complete iff it holds SOURCE_MANIFEST
        .ktstr-source.json                 {"format": 1, "package", "version", "series",
                                            "parts", "extracted_at"}
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import FetchError
from ..fsutil import atomic_write_json, dir_lock
from ..paths import cache_dir
from ..progress import Progress
from .debian import PrivateApt, archive_uri, debian_version_key, extract_deb

if TYPE_CHECKING:
    from .kernels import Kernel

SOURCE_MANIFEST = ".ktstr-source.json"
SOURCE_FORMAT = 1
# What `make -C tools/sched_ext` reads (verified: nothing else is needed).
EXTRACT_PARTS = ("tools", "include", "kernel/bpf", "arch/x86/include", "arch/x86/lib", "lib",
                 "scripts", "Makefile")
LOCK_TIMEOUT_S = 1800.0
TAR_TIMEOUT_S = 900.0
NO_SOURCE_HINT = "pass the path of a scheduler binary you built yourself instead of a name"


@dataclass(frozen=True)
class KernelSource:
    tree: Path        # the top of the extracted tree (holds tools/sched_ext)
    package: str      # "linux-source-7.3"
    version: str      # Debian version, "7.3.4-1~bpo13+1"

    @property
    def sched_ext_dir(self) -> Path:
        return self.tree / "tools" / "sched_ext"

    @property
    def label(self) -> str:
        return f"{self.package} {self.version}"


def sources_dir() -> Path:
    return cache_dir() / "sources"


def source_series(kernel: Kernel) -> str:
    """'7.3' for a kernel whose release (or version) starts with 7.3."""
    for text in (kernel.release, kernel.version):
        m = re.match(r"(\d+)\.(\d+)", text or "")
        if m:
            return f"{m.group(1)}.{m.group(2)}"
    raise FetchError(f"cannot tell the version of kernel {kernel.version}, so not which "
                     "linux-source package to build its schedulers from", NO_SOURCE_HINT)


def _safe(version: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", version)


def _load(d: Path) -> KernelSource | None:
    try:
        m = json.loads((d / SOURCE_MANIFEST).read_text())
        return KernelSource(tree=d, package=m["package"], version=m["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def cached_source(series: str) -> KernelSource | None:
    """The newest complete cached tree of linux-source-<series>, or None."""
    root = sources_dir()
    if not root.is_dir():
        return None
    found = [s for d in root.glob(f"linux-source-{series}_*") if d.is_dir()
             if (s := _load(d)) is not None and s.package == f"linux-source-{series}"]
    return max(found, key=lambda s: debian_version_key(s.version), default=None)


def fetch_source(kernel: Kernel, progress: Progress | None = None) -> KernelSource:
    """The cached source tree for `kernel`'s X.Y series, downloaded and extracted if needed."""
    progress = progress or Progress()
    series = source_series(kernel)
    if (s := cached_source(series)) is not None:
        return s
    with _locked():
        if (s := cached_source(series)) is not None:
            return s
        package = f"linux-source-{series}"
        try:
            deb, version = _newest_deb(package, kernel, progress)
        except FetchError:
            # Offline, or the archive moved on: a .deb we downloaded before still does.
            cached = _cached_debs(package)
            if not cached:
                raise
            version, deb = max(cached, key=lambda vd: debian_version_key(vd[0]))
        try:
            return _extract(deb, package, version, series, progress)
        except OSError as e:
            raise FetchError(f"cannot write the source cache {sources_dir()}: "
                             f"{e.strerror or e}",
                             "free some space, or set KTSTR_CACHE to another disk") from e


def _newest_deb(package: str, kernel: Kernel, progress: Progress) -> tuple[Path, str]:
    """(the .deb, its version) of the archive's newest `package`, downloaded if not cached."""
    uri = archive_uri()
    apt = PrivateApt(sources_dir() / ".apt", uri)
    progress.step(f"updating package lists from {uri} ({', '.join(apt.suites)})")
    apt.update()
    if package not in apt.search(f"^{re.escape(package)}$"):
        raise FetchError(f"no {package} package in {uri} ({', '.join(apt.suites)}) for "
                         f"kernel {kernel.version}; is the archive reachable?", NO_SOURCE_HINT)
    version = apt.version(package)
    deb = dict(_cached_debs(package)).get(version)
    if deb is None:
        try:
            deb = _download(apt, package, version, progress)
        except OSError as e:
            raise FetchError(f"cannot write the source cache {sources_dir()}: "
                             f"{e.strerror or e}",
                             "free some space, or set KTSTR_CACHE to another disk") from e
    return deb, version


def _cached_debs(package: str) -> list[tuple[str, Path]]:
    """(version, path) of every downloaded `package` .deb (apt writes an epoch's ':' as %3a)."""
    debs = sources_dir() / "debs"
    return [(p.name.split("_")[1].replace("%3a", ":"), p)
            for p in debs.glob(f"{package}_*.deb") if p.name.count("_") >= 2]


def _download(apt: PrivateApt, package: str, version: str, progress: Progress) -> Path:
    progress.step(f"downloading {package} {version} (about 170 MB)")
    debs = sources_dir() / "debs"
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=sources_dir()))
    try:
        deb = apt.download(package, tmp)
        debs.mkdir(parents=True, exist_ok=True)
        final = debs / deb.name
        os.replace(deb, final)
        return final
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _extract(deb: Path, package: str, version: str, series: str,
             progress: Progress) -> KernelSource:
    root = sources_dir()
    final = root / f"{package}_{_safe(version)}"
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        progress.step(f"unpacking {deb.name}")
        extract_deb(deb, tmp / "deb")
        tarballs = sorted((tmp / "deb" / "usr" / "src").glob(f"{package}.tar*"))
        if not tarballs:
            raise FetchError(f"{deb.name} holds no usr/src/{package}.tar.*", NO_SOURCE_HINT)
        top = package  # the tarball's top directory: linux-source-X.Y/
        progress.step(f"extracting {', '.join(EXTRACT_PARTS)} from {tarballs[0].name}")
        _tar_extract(tarballs[0], tmp / "tree", [f"{top}/{p}" for p in EXTRACT_PARTS])
        tree = tmp / "tree" / top
        atomic_write_json(tree / SOURCE_MANIFEST, {
            "format": SOURCE_FORMAT, "package": package, "version": version, "series": series,
            "parts": list(EXTRACT_PARTS), "extracted_at": time.time()})
        if final.exists():
            shutil.rmtree(final)  # incomplete leftover (we hold the lock)
        os.rename(tree, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    s = _load(final)
    if s is None:
        raise FetchError(f"extracted {package} but {final} is unreadable", NO_SOURCE_HINT)
    return s


def _tar_extract(tarball: Path, dest: Path, members: list[str]) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    try:
        p = subprocess.run(["tar", "-xf", str(tarball), "-C", str(dest), *members],
                           capture_output=True, text=True, timeout=TAR_TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        raise FetchError(f"extracting {tarball.name} took more than {TAR_TIMEOUT_S:.0f}s") from e
    if p.returncode != 0:
        tail = " ".join(p.stderr.strip().splitlines()[-2:])
        raise FetchError(f"cannot extract {tarball.name}: {tail}", NO_SOURCE_HINT)


@contextlib.contextmanager
def _locked(timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    with dir_lock(sources_dir(), timeout, FetchError, "source cache"):
        yield
