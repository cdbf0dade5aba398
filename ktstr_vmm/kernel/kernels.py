"""Kernels: the cached ones, resolving `--kernel PATH`, and the sched_ext/BTF checks.

A kernel is a directory in the cache (kernelcache.py) with bzImage, vmlinux, config and a
`kernel.json` manifest. Debian kernels come from `ktstr kernel fetch` (kernelfetch.py); a
user's kernel (a bzImage, a vmlinux or a build tree) gets an entry keyed by content hash the
first time it is resolved, so later runs reuse the extracted vmlinux.

Manifest (`kernel.json`, format 1):
    {"format": 1, "version": "7.3.4+deb13-cloud-amd64" | "user-<hash12>",
     "release": "<uname -r of the kernel>", "origin": "debian" | "user",
     "build_id": "<hex>", "files": {"bzimage": "bzImage", "vmlinux": "vmlinux",
     "config": "config" | null, "system_map": "System.map" | null},
     "fetched_at": "<ISO 8601 UTC>", "source": {"archive": URI, "suite": S} | {"path": P},
     "packages": {"<deb name>": "<deb version>", ...}, "has_btf": bool, "sched_ext": bool}
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..errors import KernelError
from ..fsutil import atomic_write_json, atomic_write_text
from . import cache as kernelcache
from . import vmlinux
from .debian import debian_version_key

FETCH_HINT = "run ktstr kernel fetch, or pass --kernel PATH"
PATH_HINT = ("pass --kernel with a bzImage, a vmlinux or a kernel build tree, "
             "or run ktstr kernel fetch")


@dataclass(frozen=True)
class Kernel:
    version: str          # "7.3.4+deb13-cloud-amd64" or "user-<hash12>"
    dir: Path             # its cache directory
    bzimage: Path         # bootable image (for a vmlinux-only user kernel: the vmlinux, PVH)
    vmlinux: Path         # always present (extracted if needed)
    config: Path | None
    build_id: str         # hex
    origin: str           # "debian" | "user"
    system_map: Path | None = None
    release: str = ""     # the kernel's own release string (uname -r)
    package_version: str | None = None  # Debian package version, e.g. "7.3.4-1~bpo13+1"
    source: str = ""      # archive URI (debian) or the path the user gave (user)
    fetched_at: str = ""
    has_btf: bool = True
    sched_ext: bool = True

    @property
    def label(self) -> str:
        """How errors name this kernel: the user's path, else the cached bzImage."""
        return self.source if self.origin == "user" and self.source else str(self.bzimage)


@dataclass(frozen=True)
class Features:
    sched_ext: bool
    btf: bool
    sched_ext_why: str    # how we know, e.g. "CONFIG_SCHED_CLASS_EXT is not set"
    btf_why: str


def add_kernel_option(parser: argparse.ArgumentParser) -> None:
    """The shared `--kernel` option (every command that boots or inspects a kernel)."""
    parser.add_argument("--kernel", metavar="PATH", default=None,
                        help="a bzImage, a vmlinux, a kernel build tree, or a cached kernel's "
                             "version (default: the newest cached kernel)")


# --- the cache --------------------------------------------------------------------------

def load_kernel(d: Path) -> Kernel | None:
    """The kernel in cache directory `d`, or None when it is incomplete or unreadable."""
    try:
        m = json.loads((d / kernelcache.MANIFEST).read_text())
        files = m["files"]
        pkgs = m.get("packages") or {}
        src = m.get("source") or {}
        return Kernel(
            version=m["version"], dir=d, bzimage=d / files["bzimage"],
            vmlinux=d / files["vmlinux"],
            config=d / files["config"] if files.get("config") else None,
            build_id=m.get("build_id", ""), origin=m.get("origin", "debian"),
            system_map=d / files["system_map"] if files.get("system_map") else None,
            release=m.get("release", ""),
            package_version=next(iter(pkgs.values()), None),
            source=src.get("path") or src.get("archive") or "",
            fetched_at=m.get("fetched_at", ""),
            has_btf=bool(m.get("has_btf", True)), sched_ext=bool(m.get("sched_ext", True)),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def cached_kernels() -> list[Kernel]:
    """Complete cached kernels, newest first: Debian ones by version, then users' by time."""
    root = kernelcache.kernels_dir()
    if not root.is_dir():
        return []
    ks = [k for d in root.iterdir() if not d.name.startswith(".") and d.is_dir()
          if (k := load_kernel(d)) is not None]
    deb = sorted((k for k in ks if k.origin != "user"),
                 key=lambda k: debian_version_key(k.version), reverse=True)
    user = sorted((k for k in ks if k.origin == "user"), key=lambda k: k.fetched_at,
                  reverse=True)
    return deb + user


# --- checks ------------------------------------------------------------------------------

def read_config(text: str) -> dict[str, str]:
    opts: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("CONFIG_") and "=" in line:
            k, v = line.split("=", 1)
            opts[k] = v
        elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
            opts[line[2:-len(" is not set")]] = "n"
    return opts


def kernel_hz(k: Kernel) -> int | None:
    """CONFIG_HZ from the kernel's config (jiffies per second); None without a config."""
    if k.config is None:
        return None
    try:
        v = read_config(k.config.read_text(errors="replace")).get("CONFIG_HZ", "")
    except OSError:
        return None
    return int(v) if v.isdigit() and int(v) > 0 else None


def probe_features(vmlinux_path: Path, config: Path | None) -> Features:
    """sched_ext and BTF from the config when there is one, else from the ELF's BTF."""
    strings = vmlinux.btf_strings(vmlinux_path)
    if config is not None:
        opts = read_config(config.read_text(errors="replace"))
        scx = opts.get("CONFIG_SCHED_CLASS_EXT") == "y"
        btf = opts.get("CONFIG_DEBUG_INFO_BTF") == "y"
        btf_why = "" if btf else "CONFIG_DEBUG_INFO_BTF is not set"
        if btf and strings is None:
            btf, btf_why = False, "its vmlinux has no .BTF section"
        return Features(scx, btf, "" if scx else "CONFIG_SCHED_CLASS_EXT is not set", btf_why)
    if strings is None:
        return Features(False, False, "no config, and no BTF to look in",
                        "no config, and no .BTF section in its vmlinux")
    scx = vmlinux.btf_has_name(strings, "sched_ext_ops")
    return Features(scx, True, "" if scx else "no config, and no sched_ext_ops type in its BTF",
                    "")


def _refuse(label: str, f: Features) -> None:
    if not f.sched_ext:
        raise KernelError(f"kernel {label} has no sched_ext ({f.sched_ext_why})",
                          "pass --kernel with a kernel built with CONFIG_SCHED_CLASS_EXT=y, "
                          "or run ktstr kernel fetch")
    if not f.btf:
        raise KernelError(f"kernel {label} has no BTF ({f.btf_why})",
                          "pass --kernel with a kernel built with CONFIG_DEBUG_INFO_BTF=y, "
                          "or run ktstr kernel fetch")


def check_kernel(k: Kernel) -> None:
    """Refuse a kernel without its files, sched_ext or BTF (KernelError names what)."""
    for p in (k.bzimage, k.vmlinux):
        if not p.is_file():
            raise KernelError(f"kernel {k.version} is missing {p}",
                              "run ktstr kernel fetch --refresh, or pass --kernel PATH")
    try:
        f = probe_features(k.vmlinux, k.config if k.config and k.config.is_file() else None)
    except vmlinux.ImageError as e:
        raise KernelError(f"kernel {k.label} has an unreadable vmlinux ({e})", PATH_HINT) from e
    _refuse(k.label, f)


# --- resolution ------------------------------------------------------------------------

def resolve_kernel(spec: str | None = None) -> Kernel:
    """None: the newest cached kernel. Otherwise a path (bzImage, vmlinux, build tree, a
    cache entry) or a cached kernel's version. The result has passed check_kernel()."""
    if spec is None:
        ks = cached_kernels()
        if not ks:
            raise KernelError("no kernel in the cache", FETCH_HINT)
        check_kernel(ks[0])
        return ks[0]
    p = Path(spec).expanduser()
    if not p.exists():
        for k in cached_kernels():
            if spec in (k.version, k.release):
                check_kernel(k)
                return k
        raise KernelError(f"kernel {spec} does not exist", PATH_HINT)
    p = p.absolute()  # not resolve(): a build tree may hold symlinks
    if p.is_dir():
        if (p / kernelcache.MANIFEST).is_file() and (k := load_kernel(p)) is not None:
            check_kernel(k)
            return k
        bz, vm, cfg = p / "arch/x86/boot/bzImage", p / "vmlinux", p / ".config"
        if not bz.is_file() and not vm.is_file():
            raise KernelError(f"{spec} is not a kernel build tree (no arch/x86/boot/bzImage "
                              "and no vmlinux)", PATH_HINT)
        return _import_user(spec, bz if bz.is_file() else None, vm if vm.is_file() else None,
                            cfg if cfg.is_file() else None)
    if (k := load_kernel(p.parent)) is not None and p in (k.bzimage, k.vmlinux):
        check_kernel(k)  # a file of a cached kernel: that kernel, not a copy of it
        return k
    try:
        if vmlinux.is_bzimage(p):
            tree = p.parents[3] if p.parts[-4:-1] == ("arch", "x86", "boot") else None
            vm = tree / "vmlinux" if tree and (tree / "vmlinux").is_file() else None
            cfg = tree / ".config" if tree and (tree / ".config").is_file() else None
            return _import_user(spec, p, vm, cfg)
        if vmlinux.is_elf(p):
            if not vmlinux.is_linux_elf(p):
                raise KernelError(f"{spec} is not a kernel (an ELF file without a Linux "
                                  "version banner)", PATH_HINT)
            cfg = p.parent / ".config"
            return _import_user(spec, None, p, cfg if cfg.is_file() else None)
    except OSError as e:
        raise KernelError(f"cannot read kernel {spec}: {e.strerror or e}", PATH_HINT) from e
    raise KernelError(f"{spec} is not a kernel (neither a bzImage nor an ELF vmlinux)",
                      PATH_HINT)


def _content_key(*paths: Path | None) -> str:
    """sha256 over the boot image and the config (a changed config is another kernel)."""
    h = hashlib.sha256()
    for path in paths:
        if path is None:
            continue
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()[:12]


def _import_user(spec: str, bz: Path | None, vm: Path | None, cfg: Path | None) -> Kernel:
    """A cache entry for a user's kernel, keyed by the content hash of its boot image."""
    version = "user-" + _content_key(bz or vm, cfg)
    final = kernelcache.kernels_dir() / version
    if (k := load_kernel(final)) is not None:
        _refuse(spec, probe_features(k.vmlinux, k.config))
        return k
    with kernelcache.locked():
        if (k := load_kernel(final)) is not None:
            return k
        with kernelcache.building(version) as tmp:
            files: dict[str, str | None] = {"bzimage": "bzImage", "vmlinux": "vmlinux",
                                            "config": None, "system_map": None}
            try:
                if vm is not None:
                    shutil.copyfile(vm, tmp / "vmlinux")
                else:
                    vmlinux.extract_vmlinux(bz, tmp / "vmlinux")  # type: ignore[arg-type]
                build_id = vmlinux.elf_build_id(tmp / "vmlinux")
            except vmlinux.ImageError as e:
                raise KernelError(f"{spec} is not a kernel ({e})", PATH_HINT) from e
            if bz is not None:
                shutil.copyfile(bz, tmp / "bzImage")
            else:
                files["bzimage"] = "vmlinux"
            if cfg is not None:
                shutil.copyfile(cfg, tmp / "config")
                files["config"] = "config"
            elif (text := vmlinux.embedded_config(tmp / "vmlinux")) is not None:
                atomic_write_text(tmp / "config", text)
                files["config"] = "config"
            feats = probe_features(tmp / "vmlinux", tmp / "config" if files["config"] else None)
            _refuse(spec, feats)
            release = ""
            if bz is not None:
                with open(bz, "rb") as f:
                    release = vmlinux.read_bzimage_header(f.read(0x10000)).release.split(" ")[0]
            write_manifest(tmp, version=version, release=release, origin="user",
                           build_id=build_id, files=files, source={"path": spec},
                           packages={}, features=feats)
            kernelcache.install(tmp, version)
    k = load_kernel(final)
    if k is None:
        raise KernelError(f"kernel {spec} could not be added to the cache", PATH_HINT)
    return k


def write_manifest(d: Path, *, version: str, release: str, origin: str, build_id: str,
                   files: dict[str, str | None], source: dict[str, str],
                   packages: dict[str, str], features: Features) -> None:
    """Write kernel.json last: its presence is what makes the directory complete."""
    atomic_write_json(d / kernelcache.MANIFEST, {
        "format": kernelcache.MANIFEST_FORMAT, "version": version, "release": release,
        "origin": origin, "build_id": build_id, "files": files,
        "fetched_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": source, "packages": packages,
        "has_btf": features.btf, "sched_ext": features.sched_ext,
    })
