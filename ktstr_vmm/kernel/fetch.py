"""`ktstr kernel fetch`: the newest sched_ext kernel from Debian's trixie-backports.

Downloads `linux-binary-unsigned-<ver>-cloud-amd64` (the bzImage) and
`linux-base-<ver>-cloud-amd64` (config, System.map) with private apt state under
kernels/.apt (the archive URI read from this machine's apt configuration), extracts the
vmlinux from the bzImage, checks sched_ext and BTF, and installs kernels/<ver>/ atomically
(kernelcache.py). With a complete kernel cached and no `refresh`, nothing touches the network.
"""

from __future__ import annotations

import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import FetchError
from ..progress import Progress
from . import cache as kernelcache
from . import vmlinux
from .debian import APT_ETC, PrivateApt, archive_uri, debian_version_key, extract_deb
from .kernels import Kernel, cached_kernels, load_kernel, probe_features, write_manifest

SUITE = "trixie-backports"
BINARY_PREFIX = "linux-binary-unsigned-"
BINARY_REGEX = r"^linux-binary-unsigned-.*-cloud-amd64$"
NO_KERNEL_HINT = "pass --kernel PATH with your own sched_ext kernel"


@dataclass(frozen=True)
class FetchOutcome:
    kernel: Kernel
    downloaded: bool      # False: it was already in the cache
    seconds: float


def newest_debian() -> Kernel | None:
    return next((k for k in cached_kernels() if k.origin == "debian"), None)


def fetch(progress: Progress, refresh: bool = False, apt_etc: Path = APT_ETC) -> Kernel:
    return fetch_outcome(progress, refresh=refresh, apt_etc=apt_etc).kernel


def fetch_kernel(progress: Progress | None = None, refresh: bool = False) -> Kernel:
    """The newest Debian sched_ext kernel, fetched once and cached."""
    return fetch(progress or Progress(), refresh=refresh)


def fetch_outcome(progress: Progress, refresh: bool = False,
                  apt_etc: Path = APT_ETC) -> FetchOutcome:
    t0 = time.monotonic()
    if not refresh and (k := newest_debian()) is not None:
        return FetchOutcome(k, False, time.monotonic() - t0)
    with kernelcache.locked():
        # Whoever held the lock before us may have fetched it meanwhile.
        if not refresh and (k := newest_debian()) is not None:
            return FetchOutcome(k, False, time.monotonic() - t0)
        uri = archive_uri(apt_etc)
        apt = PrivateApt(kernelcache.kernels_dir() / ".apt", uri, (SUITE,))
        progress.step(f"updating package lists from {uri} {SUITE}")
        try:
            apt.update()
        except OSError as e:
            raise kernelcache._cache_error(e, kernelcache.kernels_dir()) from e
        binary = _newest_binary(apt, uri)
        version = binary[len(BINARY_PREFIX):]
        final = kernelcache.kernels_dir() / version
        if (k := load_kernel(final)) is not None:
            progress.done()  # the caller says "already cached"
            return FetchOutcome(k, False, time.monotonic() - t0)
        with kernelcache.building(version) as tmp:
            _build(apt, uri, binary, version, tmp, progress)
            kernelcache.install(tmp, version)
    k = load_kernel(final)
    if k is None:
        raise FetchError(f"kernel {version} was fetched but its cache entry is unreadable",
                         "run ktstr kernel fetch --refresh")
    progress.done()  # the caller reports the result
    return FetchOutcome(k, True, time.monotonic() - t0)


def _newest_binary(apt: PrivateApt, uri: str) -> str:
    names = [n for n in apt.search(BINARY_REGEX) if n.startswith(BINARY_PREFIX)]
    if not names:
        raise FetchError(f"no linux-binary-unsigned-*-cloud-amd64 package in {uri} {SUITE}",
                         NO_KERNEL_HINT)
    return max(names, key=lambda n: debian_version_key(n[len(BINARY_PREFIX):]))


def _show(apt: PrivateApt, package: str) -> tuple[str, int | None]:
    """(version, size in bytes) of the candidate `package`."""
    fields = apt.show(package)
    if not fields.get("Version"):
        raise FetchError(f"no version for {package} in {apt.uri} {SUITE}", NO_KERNEL_HINT)
    size = fields.get("Size", "")
    return fields["Version"], int(size) if size.isdigit() else None


def _dir_bytes(d: Path) -> int:
    total = 0
    for p in d.rglob("*"):
        try:
            total += p.stat().st_size if p.is_file() else 0
        except OSError:  # apt renames partial files as it goes
            pass
    return total


def _download(apt: PrivateApt, package: str, dest: Path,
              progress: Progress) -> tuple[Path, str]:
    """apt-get download (in this thread, so Ctrl-C kills and reaps it) while a watcher
    thread reports the bytes that have arrived."""
    version, size = _show(apt, package)
    progress.step(f"downloading {package} {version}"
                  + (f" ({size / 1e6:.1f} MB)" if size else ""))
    dest.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.25):
            progress.advance(_dir_bytes(dest), size)

    watcher = threading.Thread(target=watch, name=f"watch-{package}", daemon=True)
    watcher.start()
    try:
        deb = apt.download(package, dest)
    finally:
        stop.set()
        watcher.join(5)
    progress.advance(deb.stat().st_size, size or deb.stat().st_size)
    return deb, version


def _build(apt: PrivateApt, uri: str, binary: str, version: str, tmp: Path,
           progress: Progress) -> None:
    """Download, unpack and check one kernel into `tmp`; the manifest is written last."""
    base = f"linux-base-{version}"
    debs = tmp / "debs"
    packages: dict[str, str] = {}
    for pkg in (binary, base):
        deb, packages[pkg] = _download(apt, pkg, debs, progress)
        progress.step(f"unpacking {deb.name}")
        extract_deb(deb, tmp / "root")
        deb.unlink()
    mod = tmp / "root/usr/lib/modules" / version
    img = mod / "vmlinuz.unsigned"
    if not img.is_file():
        img = next((p for p in (tmp / "root/boot").glob("vmlinuz-*")), img)
    if not img.is_file():
        raise FetchError(f"{binary} holds no kernel image (no vmlinuz.unsigned)",
                         NO_KERNEL_HINT)
    shutil.move(img, tmp / "bzImage")
    files: dict[str, str | None] = {"bzimage": "bzImage", "vmlinux": "vmlinux",
                                    "config": None, "system_map": None}
    for src, name, key in (("config", "config", "config"),
                           ("System.map", "System.map", "system_map")):
        if (mod / src).is_file():
            shutil.move(mod / src, tmp / name)
            files[key] = name
    shutil.rmtree(tmp / "root")
    shutil.rmtree(debs, ignore_errors=True)
    progress.step("extracting vmlinux from the bzImage")
    try:
        vmlinux.extract_vmlinux(tmp / "bzImage", tmp / "vmlinux")
        build_id = vmlinux.elf_build_id(tmp / "vmlinux")
    except vmlinux.ImageError as e:
        raise FetchError(f"{binary}: cannot extract vmlinux ({e})", NO_KERNEL_HINT) from e
    feats = probe_features(tmp / "vmlinux", tmp / "config" if files["config"] else None)
    if not (feats.sched_ext and feats.btf):
        raise FetchError(f"the newest Debian kernel {version} has no sched_ext or BTF "
                         f"({feats.sched_ext_why or feats.btf_why})", NO_KERNEL_HINT)
    with open(tmp / "bzImage", "rb") as f:
        release = vmlinux.read_bzimage_header(f.read(0x10000)).release.split(" ")[0]
    write_manifest(tmp, version=version, release=release or version, origin="debian",
                   build_id=build_id, files=files, source={"archive": uri, "suite": SUITE},
                   packages=packages, features=feats)
