"""--engine auto|qemu|kvm against what the KVM probe found (crafted probes: every case
runs on any host that has QEMU; the kvm cases also need the built extension)."""

from __future__ import annotations

import pytest

from ktstr_vmm.engine.kvmprobe import KvmProbe
from ktstr_vmm.engine.select import select_engine
from ktstr_vmm.errors import EngineError, UsageError

HARDWARE = KvmProbe("hardware", "hardware KVM (vmx, kvm_intel)")
EMULATED = KvmProbe("emulated", "KVM is PVM (kvm_pvm)")
ABSENT = KvmProbe("absent", "no /dev/kvm: KVM is not available (QEMU TCG is used)")

needs_ext = pytest.mark.skipif(
    not __import__("importlib").util.find_spec("ktstr_vmm._kvm"),
    reason="the KVM extension is not built (pip install -e .)")


@needs_ext
def test_auto_takes_the_kvm_engine_on_hardware_kvm():
    engine, warning = select_engine("auto", HARDWARE)
    assert (engine.name, warning) == ("kvm", None)


def test_auto_falls_back_to_qemu_tcg_on_emulated_kvm_and_says_why():
    engine, warning = select_engine("auto", EMULATED)
    assert (engine.name, engine.accel) == ("qemu", "tcg")
    assert warning == "engine auto chose QEMU TCG: KVM is PVM (kvm_pvm)"


def test_auto_without_kvm_uses_qemu_tcg():
    engine, warning = select_engine("auto", ABSENT)
    assert (engine.name, engine.accel) == ("qemu", "tcg")
    assert warning == f"engine auto chose QEMU TCG: {ABSENT.detail}"


@needs_ext
def test_kvm_on_emulated_kvm_runs_with_a_one_line_warning():
    engine, warning = select_engine("kvm", EMULATED)
    assert engine.name == "kvm"
    assert warning == ("--engine kvm on an emulated KVM (KVM is PVM (kvm_pvm)): guest kernel "
                       "code is instruction-emulated, so expect a very slow boot that may stop "
                       "with an emulation failure")
    assert "\n" not in warning


def test_kvm_without_kvm_is_an_error_naming_the_cause_and_the_fix():
    with pytest.raises(EngineError) as e:
        select_engine("kvm", ABSENT)
    assert e.value.one_line() == (
        "--engine kvm needs /dev/kvm, and this host has none usable: no /dev/kvm: KVM is not "
        "available (QEMU TCG is used) (load kvm_intel/kvm_amd and check /dev/kvm permissions "
        "(kvm group), or use --engine qemu)")


def test_qemu_uses_kvm_acceleration_only_on_hardware_kvm():
    assert select_engine("qemu", HARDWARE)[0].accel == "kvm"
    assert select_engine("qemu", EMULATED)[0].accel == "tcg"


def test_an_unknown_engine_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown engine 'firecracker'"):
        select_engine("firecracker", HARDWARE)


def test_missing_extension_is_an_engine_error_with_the_fix(monkeypatch):
    import sys

    import ktstr_vmm
    from ktstr_vmm.engine import kvm

    monkeypatch.setitem(sys.modules, "ktstr_vmm._kvm", None)  # import now fails
    monkeypatch.delattr(ktstr_vmm, "_kvm", raising=False)
    with pytest.raises(EngineError) as e:
        kvm.KvmEngine()
    assert e.value.message.startswith("the KVM engine's C extension ktstr_vmm._kvm is not built")
    assert e.value.hint == kvm.BUILD_HINT
