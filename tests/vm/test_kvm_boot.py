"""Real kernels through KvmEngine.

- The early-boot smoke (kvm, slow) runs here on the PVM /dev/kvm. What it proves: our
  VMM loads the product's real vmlinux through PVH (ELF note entry, hvm_start_info,
  memory map, command line), the kernel's early console reaches BootSpec.console_path
  through our COM1, and Linux reads our ACPI tables (RSDP, XSDT, FADT, MADT, SRAT, SLIT)
  and CPUID and derives exactly the topology asked for (2 NUMA nodes, one LLC die each,
  2 cores per die). It does not prove a boot to init: PVM emulates guest kernel code (and
  keeps the host's xsave/AVX/BMI2 bits in CPUID whatever we ask), so we stop after the CPU
  topology lines.
  Its time is capped (KTSTR_KVM_SMOKE_CAP seconds, default 300; ~40 s on an idle core).
- The full runs (hardware_kvm) need hardware KVM and are skipped elsewhere with the
  probe's reason, as `ktstr doctor` reports it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ktstr_vmm.engine.base import BootSpec
from ktstr_vmm.engine.kvmprobe import probe_kvm
from ktstr_vmm.errors import EngineError
from ktstr_vmm.spec import parse_topology

_probe = probe_kvm()
SMOKE_CAP = float(os.environ.get("KTSTR_KVM_SMOKE_CAP", "300"))
SMOKE_TOPOLOGY = "2n2l2c1t"
SMOKE_CMDLINE = "earlyprintk=serial,ttyS0,115200 console=ttyS0 nokaslr panic=-1"
TOPO_DONE = re.compile(r"CPU topo: Allowing (\d+) present CPUs")


def _topo_line(console: str, label: str) -> int:
    m = re.search(rf"CPU topo: {re.escape(label)}:\s+(\d+)", console)
    assert m, f"no 'CPU topo: {label}' line on the console"
    return int(m.group(1))


@pytest.mark.kvm
@pytest.mark.slow
@pytest.mark.timeout(SMOKE_CAP + 120)
@pytest.mark.skipif(_probe.kind == "absent", reason=_probe.detail)
def test_linux_early_boot_through_pvh_shows_the_requested_topology(kernel, tmp_path):
    pytest.importorskip("ktstr_vmm._kvm", reason="the KVM extension is not built")
    from ktstr_vmm.engine.kvm import KvmEngine

    topo = parse_topology(SMOKE_TOPOLOGY)
    console_path = tmp_path / "console.log"
    boot = BootSpec(kernel=kernel.vmlinux, initramfs=tmp_path / "none", cmdline=SMOKE_CMDLINE,
                    topology=topo, memory_mib=512, console_path=console_path,
                    workdir=tmp_path / "work")
    t0 = time.monotonic()
    with KvmEngine().start(boot) as m:
        console = ""
        while time.monotonic() - t0 < SMOKE_CAP:
            status = m.wait(0.5)
            console = console_path.read_text(errors="replace")
            if TOPO_DONE.search(console) or status is not None:
                break
        m.kill()
        reason = m.exit_reason()
    elapsed = time.monotonic() - t0
    assert reason == "killed", f"the kernel stopped by itself: {reason}\n{console[-2000:]}"
    assert "Linux version" in console, f"no early console within {SMOKE_CAP:.0f} s"
    assert TOPO_DONE.search(console), (f"no CPU topology lines within {SMOKE_CAP:.0f} s "
                                       f"({elapsed:.0f} s); console ends:\n{console[-1500:]}")
    assert "Command line: " + SMOKE_CMDLINE in console
    assert "ACPI: SRAT" in console and "ACPI: SLIT" in console
    assert "ACPI: SRAT: Node 1 PXM 1" in console
    assert TOPO_DONE.search(console).group(1) == str(topo.vcpus)
    assert _topo_line(console, "Max. logical packages") == topo.nodes
    assert _topo_line(console, "Max. logical dies") == topo.llcs
    assert _topo_line(console, "Num. cores per package") == topo.cores * topo.llcs_per_node
    assert _topo_line(console, "Max. threads per core") == topo.threads


def test_pvh_note_detection_picks_what_can_boot_via_pvh(kernel, tmp_path):
    from ktstr_vmm.engine.kvm import has_pvh_note

    assert has_pvh_note(kernel.vmlinux)
    assert not has_pvh_note(Path("/bin/true"))  # an ELF, but no Xen note
    assert not has_pvh_note(kernel.bzimage)
    assert not has_pvh_note(tmp_path / "missing")


# ----------------------------------------------------------------------------- bad kernels

needs_kvm = pytest.mark.skipif(_probe.kind == "absent", reason=_probe.detail)


def _boot(tmp_path, kernel_path, memory_mib=64, cmdline="console=ttyS0", **extra):
    pytest.importorskip("ktstr_vmm._kvm", reason="the KVM extension is not built")
    from ktstr_vmm.engine.kvm import KvmEngine

    return KvmEngine().start(BootSpec(
        kernel=kernel_path, initramfs=tmp_path / "none", cmdline=cmdline,
        topology=parse_topology("1n1l1c1t"), memory_mib=memory_mib,
        console_path=tmp_path / "console.log", workdir=tmp_path / "work", extra=extra))


@pytest.mark.kvm
@needs_kvm
def test_an_image_that_is_no_kernel_is_refused(tmp_path):
    junk = tmp_path / "junk.img"
    junk.write_bytes(b"\x00" * 4096)
    with pytest.raises(EngineError) as e:
        _boot(tmp_path, junk)
    assert e.value.message == (f"cannot boot {junk}: the kernel image is neither a PVH vmlinux "
                               "(ELF) nor a bzImage (no HdrS boot header)")


@pytest.mark.kvm
@needs_kvm
def test_an_elf_without_the_pvh_note_is_refused(tmp_path):
    with pytest.raises(EngineError) as e:
        _boot(tmp_path, Path("/bin/true"))
    assert e.value.message == ("cannot boot /bin/true: the vmlinux has no PVH entry note "
                               "(XEN_ELFNOTE_PHYS32_ENTRY): build it with CONFIG_PVH=y or pass "
                               "a bzImage")


@pytest.mark.kvm
@needs_kvm
def test_a_kernel_larger_than_guest_memory_is_refused(tmp_path, kernel):
    with pytest.raises(EngineError) as e:
        _boot(tmp_path, kernel.vmlinux, memory_mib=32)
    assert "does not fit in 32 MiB of guest memory" in e.value.message


@pytest.mark.kvm
@pytest.mark.slow
@needs_kvm
@pytest.mark.timeout(300)
def test_a_bzimage_boots_through_the_64_bit_protocol(tmp_path, kernel):
    """boot_params (setup header, command line, e820), identity page tables and the 64-bit
    entry: the kernel's decompressor reads our command line and says so on COM1. On PVM
    it then stops on a BMI2 instruction PVM cannot emulate: that must come back as a crash
    with the vCPU's RIP and instruction bytes, never a hang (on hardware KVM it goes on)."""
    t0 = time.monotonic()
    with _boot(tmp_path, kernel.bzimage, memory_mib=256, cmdline=SMOKE_CMDLINE,
               **{"kvm.boot": "bzimage"}) as m:
        console = ""
        while time.monotonic() - t0 < 120:
            status = m.wait(0.5)
            console = (tmp_path / "console.log").read_text(errors="replace")
            if "Decompressing Linux" in console or status is not None:
                break
        assert "KASLR disabled: 'nokaslr' on cmdline." in console
        if m.exit_reason() is not None:  # PVM: the emulation failure
            assert m.exit_reason().startswith("crashed: emulation failure: vCPU 0 at RIP 0x")
            report = m.crash_report()
            assert ", bytes " in report and "CR3=0x" in report and "EFER=0x500" in report
        m.kill()
        assert m.wait(5) is not None


# ----------------------------------------------------------------------------- hardware KVM

hardware_only = pytest.mark.skipif(_probe.kind != "hardware",
                                   reason=f"needs hardware KVM: {_probe.kind}: {_probe.detail}")


def _run(engine: str, topology: str, store) -> dict:
    r = subprocess.run([sys.executable, "-m", "ktstr_cli", "run", "--engine", engine,
                        "--scheduler", "scx_simple", "--topology", topology, "--duration", "3s",
                        "--no-auto-repro", "--json"],
                       capture_output=True, text=True, timeout=900, check=False)
    assert r.stdout.strip(), f"ktstr run --engine {engine} printed nothing: {r.stderr[-500:]}"
    return json.loads(r.stdout)


@pytest.mark.hardware_kvm
@pytest.mark.slow
@hardware_only
@pytest.mark.parametrize("topology", ["tiny-2llc", "numa2-4llc"])
def test_full_run_on_the_kvm_engine_matches_qemu(topology, store, kernel):
    kvm = _run("kvm", topology, store)
    qemu = _run("qemu", topology, store)
    assert kvm["engine"].startswith("kvm/")
    assert kvm["topology"]["observed"] == kvm["topology"]["requested"]
    assert kvm["verdict"] == qemu["verdict"]
