"""L1's root disk: a read-only ext4 image (`mkfs.ext4 -d`) holding everything the product
needs to run `ktstr run --engine kvm` inside L1, at the same paths as on this host.

  /init, /bin/busybox (+ applet links)   the L1 init (init_script()), from busybox-static
  /kvm/{irqbypass,kvm,kvm-amd}.ko        the kernel's own KVM modules (modules.py)
  <python prefix>                        the interpreter, its shared-library closure and
                                         the standard library (no tests, no site-packages)
  <repo>/.venv, <repo>/ktstr_vmm ...     the project's venv (with the compiled cffi module)
                                         and sources, so the editable install resolves
  /ktstr-cache/{kernels,schedulers,agent,btf,symbols}   the caches a run reads
  /ktstr-agent                           the guest agent, built here (L1 has no gcc)

Images are cached under cache_dir()/nested/ by a key over every file's (path, size,
mtime) and the init script, so an unchanged tree boots the same image with no rebuild.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .. import paths
from ..errors import BuildError
from ..fsutil import atomic_write_bytes
from ..guest.elfdeps import library_closure, read_elf
from ..guest.initramfs import CpioWriter
from ..kernel.kernels import Kernel
from ..progress import Progress

IMAGE_FORMAT = 1
KEEP = 3  # images kept in the cache, newest first
BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "mount", "umount", "insmod", "mkdir", "cat", "ln", "cp", "poweroff", "sync",
           "echo", "sleep", "dmesg", "ls", "rm", "uname", "env", "tail", "head", "grep", "tr")
STDLIB_SKIP = {"site-packages", "test", "idlelib", "tkinter", "turtledemo", "ensurepip",
               "lib2to3", "__phello__", "unittest/test"}
SITE_SKIP_PREFIXES = ("ruff", "pip", "hypothesis", "_hypothesis", "pytest", "_pytest", "syrupy",
                      "jinja2", "markupsafe", "iniconfig", "pluggy", "py.py")
CACHE_PARTS = ("schedulers", "agent", "btf", "symbols")
GUEST_CACHE = "/ktstr-cache"
GUEST_AGENT = "/ktstr-agent"
QEMU_DATA = ("/usr/share/qemu", "/usr/share/seabios")


@dataclass(frozen=True)
class Image:
    path: Path
    key: str
    built: bool  # False: it came from the cache
    size_mib: int


def init_script() -> str:
    """L1's PID 1 (busybox sh): mounts, loads the KVM modules, runs the batch, powers off.
    The timings it prints are read back by bed.py from the console."""
    return f"""#!/bin/sh
export PATH=/bin:/usr/bin HOME=/run/ktstr LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/shm /dev/pts
mount -t tmpfs -o mode=1777 shm /dev/shm
# A checkout (and its venv) under /tmp is in the image at its own path: a tmpfs over a
# non-empty /tmp would hide it. L1's writable space is /run/ktstr either way.
[ -z "$(ls -A /tmp 2>/dev/null)" ] && mount -t tmpfs -o mode=1777 tmp /tmp
mount -t tmpfs run /run
mkdir -p /run/ktstr/tmp
export TMPDIR=/run/ktstr/tmp
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
(while sleep 30; do echo "<2>ktstr-nested: heartbeat load $(cat /proc/loadavg)" > /dev/kmsg; done) &
read up0 _ < /proc/uptime
echo "ktstr-nested: init at $up0 s"
amd_args=""
for w in $(cat /proc/cmdline); do
  case "$w" in ktstr.kvm_amd=*) amd_args=$(echo "${{w#ktstr.kvm_amd=}}" | tr , ' ');; esac
done
insmod /kvm/irqbypass.ko || echo "ktstr-nested: insmod irqbypass.ko failed"
insmod /kvm/kvm.ko || echo "ktstr-nested: insmod kvm.ko failed"
insmod /kvm/kvm-amd.ko $amd_args || echo "ktstr-nested: insmod kvm-amd.ko $amd_args failed"
read up1 _ < /proc/uptime
echo "ktstr-nested: kvm modules loaded at $up1 s"
[ -e /dev/kvm ] || echo "ktstr-nested: no /dev/kvm after loading the modules"
echo advise > /sys/kernel/mm/transparent_hugepage/shmem_enabled 2>/dev/null
echo madvise > /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null
mkdir -p /run/ktstr/cache /run/ktstr/store
ln -s {GUEST_CACHE}/kernels /run/ktstr/cache/kernels
for d in {' '.join(CACHE_PARTS)}; do
  [ -d {GUEST_CACHE}/$d ] && cp -a {GUEST_CACHE}/$d /run/ktstr/cache/$d
done
export KTSTR_CACHE=/run/ktstr/cache KTSTR_HOME=/run/ktstr/store KTSTR_AGENT={GUEST_AGENT}
export KTSTR_BOOT_STALL_S=240 KTSTR_SNAPSHOT_WAIT_S=200 KTSTR_ENABLE_TIMEOUT_S=150
export KTSTR_NESTED_UPTIME_INIT=$up0 KTSTR_NESTED_UPTIME_KVM=$up1
{{python}} -m ktstr_vmm.nested.inside /dev/vdb
echo "ktstr-nested: inside exited with $?"
sync
poweroff -f
"""


BOOT_INIT = """#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /newroot
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t devtmpfs dev /dev
/bin/busybox insmod /virtio_blk.ko
for i in 1 2 3 4 5 6 7 8 9 10; do [ -b /dev/vda ] && break; /bin/busybox sleep 0.2; done
/bin/busybox mount -t ext4 -o ro /dev/vda /newroot || echo "ktstr-nested: cannot mount L1's root disk"
/bin/busybox umount /proc
/bin/busybox umount /dev
exec /bin/busybox switch_root /newroot /init
"""


def boot_initramfs(modules: dict[str, Path]) -> Path:
    """The small initramfs that loads virtio_blk and switches to the root image (cached)."""
    w = CpioWriter()
    w.file("/bin/busybox", BUSYBOX.read_bytes(), 0o755)
    w.file("/virtio_blk.ko", modules["virtio_blk"].read_bytes())
    w.file("/init", BOOT_INIT.encode(), 0o755)
    data = w.getvalue()
    key = hashlib.sha256(data).hexdigest()[:24]
    root = paths.cache_dir() / "nested"
    out = root / f"boot-{key}.cpio"
    if not out.is_file():
        root.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out, data)
    return out


def _python() -> tuple[Path, Path, Path]:
    """(interpreter file, its prefix, stdlib dir) of the Python running us (the venv's)."""
    exe = Path(os.path.realpath(sys._base_executable if hasattr(sys, "_base_executable")
                                else sys.executable))
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return exe, Path(sys.base_prefix), stdlib


def _venv() -> Path:
    if sys.prefix == sys.base_prefix:
        raise BuildError("the nested test bed needs ktstr installed in a venv (make setup)",
                         "run it with the checkout's .venv/bin/ktstr")
    return Path(sys.prefix)


def _files(kernel: Kernel, modules: dict[str, Path], agent: Path) -> dict[str, Path]:
    """guest path -> host file, for every regular file in the image."""
    out: dict[str, Path] = {"/bin/busybox": BUSYBOX}
    for name, p in modules.items():
        if name != "virtio_blk":
            out[f"/kvm/{name}.ko"] = p
    exe, _prefix, stdlib = _python()
    out[str(exe)] = exe
    for p in _regular_files(stdlib, STDLIB_SKIP):
        out[str(p)] = p
    venv = _venv()
    site = Path(sysconfig.get_paths()["purelib"])
    out[str(venv / "pyvenv.cfg")] = venv / "pyvenv.cfg"
    for p in _regular_files(site, set()):
        top = p.relative_to(site).parts[0]
        if not top.startswith(SITE_SKIP_PREFIXES):
            out[str(p)] = p
    repo = paths.repo_root()
    for part in ("ktstr_vmm", "ktstr_cli", "ktstr_tui", "native", "benchmarks"):
        for p in _regular_files(repo / part, set()):
            out[str(p)] = p
    for p in (kernel.bzimage, kernel.vmlinux, kernel.config, kernel.system_map,
              kernel.dir / "kernel.json"):
        if p is not None and p.is_file():
            out[f"{GUEST_CACHE}/kernels/{kernel.dir.name}/{p.name}"] = p
    cache = paths.cache_dir()
    for part in CACHE_PARTS:
        for p in _regular_files(cache / part, set()):
            out[f"{GUEST_CACHE}/{p.relative_to(cache)}"] = p
    out[GUEST_AGENT] = agent
    # QEMU too, for the benchmark's `qemu-system-x86_64 -accel kvm` beside our engine.
    qemu = shutil.which("qemu-system-x86_64")
    if qemu:
        out[os.path.realpath(qemu)] = Path(os.path.realpath(qemu))
        if os.path.realpath(qemu) != qemu:
            out[qemu] = Path(os.path.realpath(qemu))
        for d in QEMU_DATA:
            for p in _regular_files(Path(d), set(), follow=True):
                out[str(p)] = Path(os.path.realpath(p))
    # The loader and libraries every ELF here needs (python, libpython, cffi modules, ...).
    for guest, host in list(out.items()):
        shared = host.suffix == ".so" or ".so." in host.name
        if guest.endswith(".ko") or not (shared or os.access(host, os.X_OK)):
            continue
        try:
            if read_elf(host) is None:
                continue
            closure = library_closure(host, guest)
        except BuildError:
            continue  # a stray ELF in a package we never load
        for g, h in closure.files.items():
            out.setdefault(g, h)
    return out


def _regular_files(root: Path, skip: set[str], follow: bool = False) -> list[Path]:
    """Every regular file under `root` (symlinks to files only with `follow`), leaving out
    the directories in `skip` (relative to `root`), .git and .pytest_cache."""
    found: list[Path] = []
    if not root.is_dir():
        return found
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        dirnames[:] = [d for d in dirnames
                       if os.path.normpath(os.path.join(rel, d)) not in skip
                       and d not in (".git", ".pytest_cache")]
        for f in filenames:
            p = Path(dirpath) / f
            if p.is_file() and (follow or not p.is_symlink()):
                found.append(p)
    return found


def _symlinks() -> dict[str, str]:
    """The few symlinks L1 needs: busybox applets, the venv's python, /init's python."""
    links = {f"/bin/{a}": "busybox" for a in APPLETS}
    venv = _venv()
    for name in ("python", "python3", "python3.11"):
        p = venv / "bin" / name
        for _ in range(8):  # the whole chain: venv -> pyenv's python3 -> python3.11
            if not p.is_symlink():
                break
            target = os.readlink(p)
            links[str(p)] = target
            p = p.parent / target
    return links


def _key(files: dict[str, Path], links: dict[str, str], init: str) -> str:
    h = hashlib.sha256(f"{IMAGE_FORMAT}\0{init}\0".encode())
    for guest in sorted(files):
        st = files[guest].stat()
        h.update(f"{guest}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    for guest in sorted(links):
        h.update(f"L{guest}\0{links[guest]}\0".encode())
    return h.hexdigest()[:24]


def build_image(kernel: Kernel, modules: dict[str, Path], agent: Path,
                progress: Progress | None = None) -> Image:
    """L1's root image for `kernel` (cached by content)."""
    progress = progress or Progress()
    if not BUSYBOX.is_file():
        raise BuildError(f"{BUSYBOX} is missing: the nested test bed's L1 init is busybox",
                         "apt-get install busybox-static")
    mkfs = shutil.which("mkfs.ext4") or ("/sbin/mkfs.ext4" if Path("/sbin/mkfs.ext4").exists()
                                         else None)
    if mkfs is None:
        raise BuildError("mkfs.ext4 not found: L1's root image is an ext4 file system",
                         "apt-get install e2fsprogs")
    progress.step("collecting L1's files (python, venv, caches, modules)")
    venv_python = _venv() / "bin" / "python"
    init = init_script().replace("{python}", str(venv_python))
    files = _files(kernel, modules, agent)
    links = _symlinks()
    key = _key(files, links, init)
    root = paths.cache_dir() / "nested"
    final = root / f"l1-{key}.ext4"
    if final.is_file():
        os.utime(final)
        return Image(final, key, False, final.stat().st_size >> 20)
    root.mkdir(parents=True, exist_ok=True)
    total = sum(p.stat().st_size for p in files.values())
    size_mib = int(total * 1.25 / (1 << 20)) + 64
    progress.step(f"building L1's root image ({len(files)} files, {total >> 20} MiB)")
    stage = Path(tempfile.mkdtemp(prefix=".stage-", dir=root))
    tmp_img = root / f".tmp-{key}-{os.getpid()}.ext4"
    try:
        for guest, host in files.items():
            dst = stage / guest.lstrip("/")
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(host, dst)
            except OSError:
                shutil.copy2(host, dst)
        for guest, target in links.items():
            dst = stage / guest.lstrip("/")
            dst.parent.mkdir(parents=True, exist_ok=True)
            if not dst.exists():
                os.symlink(target, dst)
        for d in ("proc", "sys", "dev", "tmp", "run", "etc"):
            (stage / d).mkdir(exist_ok=True)
        (stage / "etc/passwd").write_text("root:x:0:0:root:/run/ktstr:/bin/sh\n")
        (stage / "etc/group").write_text("root:x:0:\nkvm:x:993:\n")
        (stage / "init").write_text(init)
        (stage / "init").chmod(0o755)
        p = subprocess.run([mkfs, "-q", "-F", "-t", "ext4", "-L", "ktstr-l1", "-E",
                            "root_owner=0:0", "-O", "^has_journal", "-d", str(stage),
                            str(tmp_img), f"{size_mib}M"],
                           capture_output=True, text=True, timeout=600)
        if p.returncode != 0:
            raise BuildError(f"mkfs.ext4 -d failed: {(p.stderr or p.stdout).strip()[-300:]}")
        os.rename(tmp_img, final)
    except OSError as e:
        raise BuildError(f"cannot build L1's root image in {root}: {e}",
                         "free some disk space, or set KTSTR_CACHE to another disk") from e
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        tmp_img.unlink(missing_ok=True)
    _prune(root, KEEP)
    return Image(final, key, True, size_mib)


def _prune(root: Path, keep: int) -> None:
    for pattern in ("l1-*.ext4", "boot-*.cpio"):
        found = sorted(root.glob(pattern), key=lambda p: p.stat().st_mtime, reverse=True)
        for p in found[keep:]:
            p.unlink(missing_ok=True)
