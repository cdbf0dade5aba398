"""`ktstr doctor`: the KVM kinds from crafted /dev, /sys and /proc trees, and the real report."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ktstr_vmm.engine.kvmprobe import KvmProbe, probe_kvm
from ktstr_vmm.run.doctor import probe_schedulers, run_doctor

CPUINFO = "processor\t: 0\nvendor_id\t: {vendor}\nflags\t\t: fpu vme de pse tsc msr {ext} sse2\n\n"


def fake_root(tmp_path: Path, *, kvm: bool, pvm: bool = False, ext: str = "",
              module: str | None = None) -> Path:
    root = tmp_path / "root"
    (root / "dev").mkdir(parents=True)
    (root / "proc").mkdir()
    (root / "sys/module").mkdir(parents=True)
    if kvm:
        (root / "dev/kvm").write_text("")
    if pvm:
        (root / "sys/module/kvm_pvm/parameters").mkdir(parents=True)
    if module:
        (root / "sys/module" / module).mkdir()
    vendor = "GenuineIntel" if ext == "vmx" else "AuthenticAMD"
    (root / "proc/cpuinfo").write_text(CPUINFO.format(vendor=vendor, ext=ext))
    return root


def test_no_dev_kvm_is_absent(tmp_path):
    root = fake_root(tmp_path, kvm=False, ext="vmx")
    assert probe_kvm(root) == KvmProbe(
        "absent", f"no {root}/dev/kvm: KVM is not available (QEMU TCG is used)")


def test_pvm_module_is_emulated_even_with_svm(tmp_path):
    root = fake_root(tmp_path, kvm=True, pvm=True, ext="svm")
    assert probe_kvm(root) == KvmProbe(
        "emulated", "KVM is PVM (kvm_pvm): guest kernel code is instruction-emulated, "
                    "so full runs use QEMU TCG")


def test_cpu_without_vmx_or_svm_is_emulated(tmp_path):
    root = fake_root(tmp_path, kvm=True, ext="")
    assert probe_kvm(root) == KvmProbe(
        "emulated", "the CPU has neither vmx nor svm: KVM here cannot run guests at full "
                    "speed, so full runs use QEMU TCG")


@pytest.mark.parametrize("ext, module, detail", [
    ("vmx", "kvm_intel", "hardware KVM (vmx, kvm_intel)"),
    ("svm", "kvm_amd", "hardware KVM (svm, kvm_amd)"),
    ("vmx", None, "hardware KVM (vmx)"),
])
def test_vmx_or_svm_without_pvm_is_hardware(tmp_path, ext, module, detail):
    root = fake_root(tmp_path, kvm=True, ext=ext, module=module)
    assert probe_kvm(root) == KvmProbe("hardware", detail)


@given(st.text(max_size=400))
def test_any_cpuinfo_gives_one_of_the_kinds(text):
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        (root / "dev").mkdir()
        (root / "dev/kvm").write_text("")
        (root / "proc").mkdir()
        (root / "proc/cpuinfo").write_text(text)
        assert probe_kvm(root).kind in ("hardware", "emulated")


def test_this_machine_is_probed_by_opening_dev_kvm():
    p = probe_kvm()
    assert p.kind in ("absent", "hardware", "emulated")
    if Path("/sys/module/kvm_pvm").exists() and os.access("/dev/kvm", os.R_OK | os.W_OK):
        assert p.kind == "emulated"


def doctor(*args: str, cache: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, CI="true")
    if cache is not None:
        env["KTSTR_CACHE"] = str(cache)
    return subprocess.run([sys.executable, "-m", "ktstr_cli", "doctor", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_doctor_json_on_this_machine(kernel):
    r = doctor("--json")
    report = json.loads(r.stdout)
    assert set(report) == {"ok", "kvm", "qemu", "kernel", "schedulers", "checks"}
    assert report["kvm"]["kind"] == probe_kvm().kind
    if Path("/sys/module/kvm_pvm").exists():
        assert report["kvm"]["kind"] == "emulated"
    assert report["kernel"]["version"] == kernel.version
    assert report["kernel"]["sched_ext"] is True
    assert report["qemu"]["ok"] is (report["qemu"]["path"] is not None)
    assert [c["name"] for c in report["checks"]] == ["kvm", "qemu", "kernel", "schedulers",
                                                     "cache", "clang", "kvm-engine"]
    for c in report["checks"]:
        assert set(c) == {"name", "ok", "detail", "fix", "required"}
    assert report["ok"] is report["qemu"]["ok"]
    assert r.returncode == (0 if report["ok"] else 1)


def test_doctor_human_output_one_line_per_check(kernel):
    r = doctor()
    lines = r.stdout.splitlines()
    assert len(lines) == 8
    assert lines[6].startswith(("ok    kvm-engine: ", "warn  kvm-engine: "))
    assert lines[2] == f"ok    kernel: {kernel.version} (sched_ext, BTF) in {kernel.dir}"
    assert lines[3].startswith(("ok    schedulers: ", "warn  schedulers: "))
    assert lines[-1].startswith("doctor: ok: QEMU runs can start (KVM " if r.returncode == 0
                                else "doctor: not ready: fix the FAIL lines above (KVM ")


def test_doctor_without_a_kernel_fails_with_the_fix(tmp_path):
    r = doctor(cache=tmp_path / "empty")
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    assert lines[2] == ("FAIL  kernel: no kernel in the cache "
                        "(run ktstr kernel fetch, or pass --kernel PATH)")
    assert lines[3] == ("warn  schedulers: no kernel to build them for "
                        "(run ktstr kernel fetch, then ktstr schedulers build)")
    report = json.loads(doctor("--json", cache=tmp_path / "empty").stdout)
    assert report["ok"] is False
    assert report["kernel"] == {"ok": False, "error": "no kernel in the cache"}


def test_doctor_refuses_a_given_kernel_that_is_not_one(tmp_path):
    f = tmp_path / "bzImage"
    f.write_text("nope")
    report = run_doctor(str(f))
    assert report.ok is False
    check = next(c for c in report.checks if c.name == "kernel")
    assert check.detail == f"{f} is not a kernel (neither a bzImage nor an ELF vmlinux)"


def test_schedulers_not_built_when_the_module_is_absent(kernel):
    info, check = probe_schedulers(kernel)
    if importlib.util.find_spec("ktstr_vmm.kernel.schedulers") is not None:
        assert check.name == "schedulers" and check.required is False
        assert info["ok"] is bool(info["built"])
        return
    assert info == {"ok": False, "built": []}
    assert (check.ok, check.detail, check.fix) == (False, "not built",
                                                   "run ktstr schedulers build")
