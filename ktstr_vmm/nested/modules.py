"""The modules of a cached Debian kernel that L1 needs: virtio_blk.ko (the cloud kernel
builds ext4 in but virtio-blk as a module, so L1's root disk needs it first) and the KVM
modules irqbypass.ko, kvm.ko, kvm-amd.ko.

They come from Debian's `linux-modules-<version>` package (the same version as the kernel
image), fetched with the kernel fetch's private apt state, cache and lock, decompressed (the
package ships .ko.xz/.ko.zst; busybox insmod wants plain ELF) and installed atomically as
kernels/<version>/kvm-modules/. A cached set is used without touching the network.
"""

from __future__ import annotations

import lzma
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import FetchError, UsageError
from ..kernel import cache as kernelcache
from ..kernel.debian import PrivateApt, archive_uri, extract_deb
from ..kernel.kernels import Kernel
from ..progress import Progress

MODULES = ("virtio_blk", "irqbypass", "kvm", "kvm-amd")  # in load order
SUBDIR = "kvm-modules"
SUITE = "trixie-backports"


def modules_package(kernel: Kernel) -> str:
    return f"linux-modules-{kernel.version}"


def cached_modules(kernel: Kernel) -> dict[str, Path] | None:
    d = kernel.dir / SUBDIR
    files = {m: d / f"{m}.ko" for m in MODULES}
    return files if all(p.is_file() for p in files.values()) else None


def _decompress(src: Path, dst: Path) -> None:
    data = src.read_bytes()
    if src.name.endswith(".xz"):
        data = lzma.decompress(data)
    elif src.name.endswith(".zst"):
        import zstandard  # only for a kernel packaged with zstd modules (Debian's are xz)

        data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
    elif src.name.endswith(".gz"):
        import gzip  # likewise, gzip-compressed modules

        data = gzip.decompress(data)
    if data[:4] != b"\x7fELF":
        raise FetchError(f"{src.name} is not a kernel module (no ELF header after decompressing)")
    dst.write_bytes(data)


def fetch_modules(kernel: Kernel, progress: Progress | None = None) -> dict[str, Path]:
    """{module: path of the plain .ko}, fetching linux-modules-<version> the first time."""
    progress = progress or Progress()
    if (have := cached_modules(kernel)) is not None:
        return have
    if kernel.origin != "debian":
        raise UsageError(f"kernel {kernel.version} is not a Debian kernel: the nested test bed "
                         "needs its kvm/kvm-amd modules from linux-modules-<version>",
                         "use the Debian kernel (ktstr kernel fetch)")
    pkg = modules_package(kernel)
    with kernelcache.locked():
        if (have := cached_modules(kernel)) is not None:
            return have
        apt = PrivateApt(kernelcache.kernels_dir() / ".apt", archive_uri(), (SUITE,))
        if not list((apt.root / "lists").glob("*Packages*")):
            progress.step(f"updating package lists from {apt.uri} {SUITE}")
            apt.update()
        if pkg not in apt.search(f"^{pkg.replace('+', '[+]')}$"):
            raise FetchError(f"kernel {kernel.version} has no modules package {pkg} in "
                             f"{apt.uri} {SUITE}",
                             "ktstr kernel fetch --refresh for a kernel the archive still has")
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-kvm-modules-", dir=kernel.dir))
        try:
            progress.step(f"downloading {pkg}")
            deb = apt.download(pkg, tmp / "debs")
            progress.step(f"unpacking {deb.name}")
            extract_deb(deb, tmp / "root")
            found = {m: next(iter(sorted((tmp / "root").rglob(f"{m}.ko*"))), None)
                     for m in MODULES}
            missing = [m for m, p in found.items() if p is None]
            if missing:
                raise FetchError(f"{pkg} has no {', '.join(m + '.ko' for m in missing)} "
                                 "(the kernel must have CONFIG_KVM=m and CONFIG_KVM_AMD=m)")
            out = tmp / SUBDIR
            out.mkdir()
            for m, src in found.items():
                _decompress(src, out / f"{m}.ko")
            final = kernel.dir / SUBDIR
            if final.exists():
                shutil.rmtree(final)
            os.rename(out, final)
        except OSError as e:
            raise FetchError(f"cannot store the KVM modules under {kernel.dir}: {e}") from e
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    have = cached_modules(kernel)
    assert have is not None
    return have
