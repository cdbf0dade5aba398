"""--engine auto|qemu|kvm -> an Engine, from what `probe_kvm` says this host has.

auto  KvmEngine only on hardware KVM; else QemuEngine (TCG) and the reason why.
kvm   KvmEngine on hardware KVM; on emulated KVM (PVM) too, with a one-line warning;
      on a host without usable /dev/kvm, an EngineError naming the cause and the fix.
qemu  QemuEngine: accel kvm on hardware KVM, else TCG.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import EngineError, UsageError
from .base import Engine
from .kvmprobe import KvmProbe, probe_kvm

EMULATED_WARNING = ("--engine kvm on an emulated KVM ({detail}): guest kernel code is "
                    "instruction-emulated, so expect a very slow boot that may stop with an "
                    "emulation failure")


def _qemu(accel: str) -> Engine:
    from .qemu import QemuEngine  # only the engine asked for is loaded

    return QemuEngine(accel=accel)


def _kvm() -> Engine:
    from .kvm import KvmEngine  # the cffi extension stays optional

    return KvmEngine()


def select_engine(requested: str, probe: KvmProbe | None = None,
                  root: Path = Path("/")) -> tuple[Engine, str | None]:
    """(engine, warning or None). `probe` defaults to probe_kvm(root)."""
    if requested not in ("auto", "qemu", "kvm"):
        raise UsageError(f"unknown engine '{requested}'", "use auto, qemu or kvm")
    p = probe or probe_kvm(root)
    if requested == "qemu":
        return _qemu("kvm" if p.kind == "hardware" else "tcg"), None
    if requested == "auto":
        if p.kind == "hardware":
            return _kvm(), None
        return _qemu("tcg"), f"engine auto chose QEMU TCG: {p.detail}"
    if p.kind == "absent":
        raise EngineError(f"--engine kvm needs /dev/kvm, and this host has none usable: "
                          f"{p.detail}",
                          "load kvm_intel/kvm_amd and check /dev/kvm permissions "
                          "(kvm group), or use --engine qemu")
    if p.kind == "emulated":
        return _kvm(), EMULATED_WARNING.format(detail=p.detail)
    return _kvm(), None
