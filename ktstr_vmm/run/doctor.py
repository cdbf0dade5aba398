"""`ktstr doctor`: can this machine run ktstr, and if not, what to do about it.

`ok` means a QEMU run can start: qemu-system-x86_64 runs and a cached (or given) kernel has
sched_ext and BTF. KVM, schedulers and the compiler are reported but not required (runs use
QEMU TCG without hardware KVM; schedulers are built by `ktstr schedulers build`).
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..engine.kvmprobe import KvmProbe, probe_kvm
from ..errors import KtstrError
from ..kernel.kernels import Kernel, resolve_kernel
from ..paths import cache_dir

QEMU = "qemu-system-x86_64"
MIN_FREE_BYTES = 512 << 20


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True


@dataclass(frozen=True)
class Report:
    ok: bool
    kvm: KvmProbe
    qemu: dict
    kernel: dict
    schedulers: dict
    checks: list[Check] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"ok": self.ok, "kvm": asdict(self.kvm), "qemu": self.qemu,
                "kernel": self.kernel, "schedulers": self.schedulers,
                "checks": [asdict(c) for c in self.checks]}


def _kvm_check(p: KvmProbe) -> Check:
    if p.kind == "hardware":
        return Check("kvm", True, f"hardware: {p.detail}", required=False)
    fix = ("full-speed KVM runs need a host with vmx/svm and no kvm_pvm; "
           "QEMU TCG runs work without it")
    return Check("kvm", p.kind != "absent", f"{p.kind}: {p.detail}", fix, required=False)


def probe_qemu() -> tuple[dict, Check]:
    path = shutil.which(QEMU)
    if path is None:
        info = {"path": None, "version": None, "ok": False}
        return info, Check("qemu", False, f"{QEMU} not found on PATH",
                           "install the qemu-system-x86 package (make apt)")
    try:
        p = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=20)
        out = p.stdout if p.returncode == 0 else ""
    except (OSError, subprocess.TimeoutExpired) as e:
        out, err = "", str(e)
    else:
        err = (p.stderr or "").strip()[-200:]
    m = re.search(r"version\s+(\S+)", out)
    if not m:
        info = {"path": path, "version": None, "ok": False}
        return info, Check("qemu", False, f"{path} --version failed: {err or 'no version'}",
                           "reinstall the qemu-system-x86 package")
    info = {"path": path, "version": m.group(1), "ok": True}
    return info, Check("qemu", True, f"{path} (QEMU {m.group(1)})")


def probe_kernel(spec: str | None) -> tuple[Kernel | None, dict, Check]:
    try:
        k = resolve_kernel(spec)
    except KtstrError as e:
        return None, {"ok": False, "error": e.message}, Check(
            "kernel", False, e.message, e.hint or "run ktstr kernel fetch")
    info = {"ok": True, "version": k.version, "release": k.release, "origin": k.origin,
            "dir": str(k.dir), "build_id": k.build_id, "sched_ext": k.sched_ext,
            "btf": k.has_btf}
    return k, info, Check("kernel", True, f"{k.version} (sched_ext, BTF) in {k.dir}")


def probe_schedulers(k: Kernel | None) -> tuple[dict, Check]:
    fix = "run ktstr schedulers build"
    if k is None:
        return ({"ok": False, "built": []},
                Check("schedulers", False, "no kernel to build them for",
                      "run ktstr kernel fetch, then ktstr schedulers build", required=False))
    try:
        mod = importlib.import_module("ktstr_vmm.kernel.schedulers")
    except ModuleNotFoundError as e:
        if e.name != "ktstr_vmm.kernel.schedulers":
            raise
        return ({"ok": False, "built": []},
                Check("schedulers", False, "not built", fix, required=False))
    try:
        scheds = mod.list_schedulers(k)
    except KtstrError as e:
        return ({"ok": False, "built": [], "error": e.message},
                Check("schedulers", False, e.message, e.hint or fix, required=False))
    built = [{"name": s.name, "path": str(s.path)} for s in scheds]
    if not built:
        return ({"ok": False, "built": []},
                Check("schedulers", False, "not built", fix, required=False))
    names = ", ".join(s["name"] for s in built)
    return ({"ok": True, "built": built},
            Check("schedulers", True, f"{len(built)} built for {k.version}: {names}",
                  required=False))


def _cache_check() -> Check:
    d = cache_dir()
    probe = d
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        return Check("cache", False, f"{d} is not writable",
                     "set KTSTR_CACHE to a writable directory")
    free = shutil.disk_usage(probe).free
    if free < MIN_FREE_BYTES:
        return Check("cache", False, f"{d}: only {free >> 20} MiB free",
                     "free some space, or set KTSTR_CACHE to another disk")
    return Check("cache", True, f"{d} ({free >> 30} GiB free)")


def _clang_check() -> Check:
    for name in ("clang-19", "clang"):
        if path := shutil.which(name):
            return Check("clang", True, f"{path} (for ktstr schedulers build)", required=False)
    return Check("clang", False, "clang-19 not found (needed by ktstr schedulers build)",
                 "install clang-19 llvm-19 lld-19 (make apt)", required=False)


def _kvm_engine_check() -> Check:
    """Whether the cffi KVM engine (ktstr_vmm._kvm) was compiled at install."""
    try:
        importlib.import_module("ktstr_vmm._kvm")
    except ImportError as e:
        return Check("kvm-engine", False, f"ktstr_vmm._kvm is not built ({e})",
                     "install gcc and re-run pip install -e . (make venv); QEMU runs work without it",
                     required=False)
    return Check("kvm-engine", True, "ktstr_vmm._kvm built (cffi KVM engine)", required=False)


def run_doctor(kernel_spec: str | None = None, root: Path = Path("/")) -> Report:
    kvm = probe_kvm(root)
    qemu, qemu_check = probe_qemu()
    k, kernel, kernel_check = probe_kernel(kernel_spec)
    scheds, sched_check = probe_schedulers(k)
    checks = [_kvm_check(kvm), qemu_check, kernel_check, sched_check, _cache_check(),
              _clang_check(), _kvm_engine_check()]
    ok = all(c.ok for c in checks if c.required)
    return Report(ok, kvm, qemu, kernel, scheds, checks)
