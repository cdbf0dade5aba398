"""What kind of KVM this machine has: absent, hardware (vmx/svm) or emulated (PVM, or no
virtualisation extensions). Everything is read relative to `root` so tests can craft a
sysfs/procfs tree; /dev/kvm is only opened (and asked its API version) when root is "/"."""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

KVM_GET_API_VERSION = 0xAE00


@dataclass(frozen=True)
class KvmProbe:
    kind: str    # "absent" | "hardware" | "emulated"
    detail: str


def _cpu_flags(cpuinfo: Path) -> set[str]:
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return set()


def _open_kvm(dev: Path) -> str:
    """'' when /dev/kvm opens and answers KVM_GET_API_VERSION, else why not."""
    try:
        fd = os.open(dev, os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        return f"cannot open {dev}: {e.strerror}"
    try:
        api = fcntl.ioctl(fd, KVM_GET_API_VERSION)
    except OSError as e:
        return f"{dev} does not answer KVM_GET_API_VERSION: {e.strerror}"
    finally:
        os.close(fd)
    return "" if api == 12 else f"{dev} has KVM API version {api}, not 12"


def probe_kvm(root: Path = Path("/")) -> KvmProbe:
    root = Path(root)
    dev = root / "dev/kvm"
    if not dev.exists():
        return KvmProbe("absent", f"no {dev}: KVM is not available (QEMU TCG is used)")
    if root == Path("/"):
        why = _open_kvm(dev)
        if why:
            return KvmProbe("absent", f"{why} (QEMU TCG is used)")
    if (root / "sys/module/kvm_pvm").exists():
        return KvmProbe("emulated", "KVM is PVM (kvm_pvm): guest kernel code is "
                                    "instruction-emulated, so full runs use QEMU TCG")
    flags = _cpu_flags(root / "proc/cpuinfo")
    if "vmx" not in flags and "svm" not in flags:
        return KvmProbe("emulated", "the CPU has neither vmx nor svm: KVM here cannot run "
                                    "guests at full speed, so full runs use QEMU TCG")
    ext = "vmx" if "vmx" in flags else "svm"
    module = "kvm_intel" if ext == "vmx" else "kvm_amd"
    loaded = (root / "sys/module" / module).exists()
    return KvmProbe("hardware", f"hardware KVM ({ext}" + (f", {module})" if loaded else ")"))
