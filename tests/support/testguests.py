"""Synthetic test guests: tiny firmware images assembled from native/testguests/*.s.

Each is a 64 KiB image that starts at the x86 reset vector (see guest.inc). They are
built with GNU as and ld on first use and cached by the hash of their sources under
<cache>/testguests/, never committed. Both engines can run them: KvmEngine.start_firmware
and `qemu-system-x86_64 -bios IMAGE -device isa-debug-exit,iobase=0xf4`.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

from ktstr_vmm.errors import BuildError
from ktstr_vmm.fsutil import atomic_write_bytes
from ktstr_vmm.paths import cache_dir, native_dir

GUESTS = ("exit", "rm_hello", "lm_hello", "hlt", "triple", "spin", "io_mmio", "topology",
          "wire_echo", "emulfail", "poweroff", "reset")

# (leaf, subleaf) pairs the topology guest queries, in order; 4 dwords (EAX..EDX) each.
TOPOLOGY_QUERIES = ((0x1, 0), (0x4, 0), (0x4, 1), (0x4, 2), (0x4, 3), (0xB, 0), (0xB, 1),
                    (0xB, 2), (0x1F, 0), (0x1F, 1), (0x1F, 2), (0x1F, 3))
SPIN_MARKER_GPA = 0x5000
SPIN_MARKER = b"KTSTR-GUEST-MEM!"
BUILD_TIMEOUT = 60


def source_dir() -> Path:
    return native_dir() / "testguests"


def _key(src: Path) -> str:
    h = hashlib.sha256()
    for p in (source_dir() / "guest.inc", src):
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def _run(argv: list[str], cwd: Path) -> None:
    try:
        r = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        raise BuildError(f"{argv[0]} took more than {BUILD_TIMEOUT} s") from e
    if r.returncode:
        tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
        raise BuildError(f"{Path(argv[0]).name} failed on a test guest: {' | '.join(tail)}")


def build_guest(name: str) -> Path:
    """Path of the assembled image of guest `name` (built and cached on first use)."""
    if name not in GUESTS:
        raise BuildError(f"unknown test guest '{name}'", f"known: {', '.join(GUESTS)}")
    src = source_dir() / f"{name}.s"
    out = cache_dir() / "testguests" / _key(src) / f"{name}.bin"
    if out.is_file():
        return out
    as_, ld = shutil.which("as"), shutil.which("ld")
    if not as_ or not ld:
        raise BuildError("building the test guests needs GNU as and ld",
                         "install binutils (apt-get install binutils)")
    with tempfile.TemporaryDirectory(prefix="ktstr-guest-") as tmp:
        obj, binary = Path(tmp) / f"{name}.o", Path(tmp) / f"{name}.bin"
        _run([as_, "--64", "-I", str(source_dir()), "-o", str(obj), str(src)], source_dir())
        _run([ld, "-m", "elf_x86_64", "-Ttext", "0", "--oformat", "binary", "-e", "_start",
              "-o", str(binary), str(obj)], source_dir())
        data = binary.read_bytes()
    if len(data) != 0x10000:
        raise BuildError(f"test guest '{name}' assembled to {len(data)} bytes, not 64 KiB")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, data)
    return out


def guest_image(name: str) -> bytes:
    return build_guest(name).read_bytes()
