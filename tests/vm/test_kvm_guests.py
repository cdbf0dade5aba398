"""KvmEngine on the synthetic guests (native/testguests): every exit kind, serial output,
port and MMIO round trips, topology seen through CPUID, pause/resume/kill from Python,
GuestMemory reads, resource hygiene over 100 start/kill cycles, and bad input.

They need /dev/kvm (the emulated PVM one here is fine: these guests are a few
instructions each) and the built extension; about 10 s in all on an idle 2-core host."""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path

import pytest
from support.kvm_oracle import cpuid_view, linux_ids, same_partition
from support.testguests import SPIN_MARKER, SPIN_MARKER_GPA, guest_image

from ktstr_vmm.engine.kvmprobe import probe_kvm
from ktstr_vmm.errors import EngineError
from ktstr_vmm.spec import parse_topology

pytest.importorskip("ktstr_vmm._kvm", reason="the KVM extension is not built (pip install -e .)")
_probe = probe_kvm()
pytestmark = [pytest.mark.kvm,
              pytest.mark.skipif(_probe.kind == "absent", reason=_probe.detail)]

ONE = parse_topology("1n1l1c1t")


@pytest.fixture(scope="module")
def engine():
    from ktstr_vmm.engine.kvm import KvmEngine

    return KvmEngine()


@pytest.fixture
def run(engine, tmp_path):
    """run(guest, topology) -> stopped machine (closed at teardown) and its console text."""
    machines = []

    def go(name: str, topo=ONE, timeout: float = 20.0, **kw):
        console = tmp_path / f"{name}.console"
        m = engine.start_firmware(guest_image(name), topo, console_path=console, **kw)
        machines.append(m)
        status = m.wait(timeout)
        return m, status, console.read_bytes().decode(errors="replace")

    yield go
    for m in machines:
        m.close()


def test_real_mode_hello_prints_and_exits_with_its_code(run):
    m, status, console = run("rm_hello")
    assert console == "hello from real mode\n"
    assert (status, m.exit_reason()) == (0x21, "exit-port")


def test_long_mode_hello_prints_from_64_bit_code(run):
    m, status, console = run("lm_hello")
    assert console == "hello from long mode\n"
    assert (status, m.exit_reason()) == (0x42, "exit-port")
    assert m.stop_event().efer & 0x400, "the exit came from long mode (EFER.LMA)"


def test_exit_port_code_is_the_vm_status(run):
    m, status, _ = run("exit")
    assert (status, m.exit_reason()) == (42, "exit-port")


def test_port_io_and_mmio_round_trips(run):
    m, status, _ = run("io_mmio")
    assert m.reports() == {0: [0xA5, 0x1235]}
    assert status == 0x13


def test_the_wire_carries_bytes_both_ways(engine):
    with engine.start_firmware(guest_image("wire_echo"), ONE) as m:
        m.write_wire(b"ping over COM2")
        got = b""
        deadline = time.monotonic() + 10
        while len(got) < 14 and time.monotonic() < deadline:
            got += m.read_wire(0.2) or b""
        assert got == b"ping over COM2"
        m.write_wire(b"\0")
        assert (m.wait(10), m.exit_reason()) == (0x33, "exit-port")
        assert m.read_wire(0.1) is None, "a stopped VM's wire reads as closed"


def _read_n(read, n: int) -> bytes:
    got = b""
    deadline = time.monotonic() + 60  # a bound for a broken channel, not a speed check
    while len(got) < n and time.monotonic() < deadline:
        got += read(0.2) or b""
    return got


def test_the_shell_port_com3_is_a_channel_of_its_own(engine):
    with engine.start_firmware(guest_image("wire_echo"), ONE) as m:
        assert m.has_shell
        m.write_shell(b"ls /sys/kernel/sched_ext\n")
        m.write_wire(b"wire")
        assert _read_n(m.read_shell, 25) == b"ls /sys/kernel/sched_ext\n"
        assert _read_n(m.read_wire, 4) == b"wire"
        big = bytes(range(1, 256)) * 400  # 102 KB: more than the UART's 64 KiB FIFO
        m.write_shell(big)
        assert _read_n(m.read_shell, len(big)) == big
        assert m.read_wire(0.1) == b"", "shell bytes never reach the wire"
        m.write_shell(b"\0")
        assert (m.wait(10), m.exit_reason()) == (0x33, "exit-port")
        assert m.read_shell(0.1) is None, "a stopped VM's shell port reads as closed"


def test_the_kvm_engine_names_com3_to_the_agent(tmp_path):
    from ktstr_vmm.engine.base import BootSpec
    from ktstr_vmm.engine.kvm import shell_cmdline
    from ktstr_vmm.spec import parse_topology

    boot = BootSpec(kernel=tmp_path / "k", initramfs=tmp_path / "i", cmdline="console=ttyS0 "
                    "8250.nr_uarts=2", topology=parse_topology("1n1l1c1t"), memory_mib=256,
                    console_path=tmp_path / "c", workdir=tmp_path)
    assert shell_cmdline(boot) == ("console=ttyS0 8250.nr_uarts=2 8250.nr_uarts=3 "
                                   "ktstr.shell=/dev/ttyS2")
    from dataclasses import replace

    assert shell_cmdline(replace(boot, extra={"shell": "0"})) == boot.cmdline


def test_ktstr_kvm_shell_port_0_boots_without_the_shells_port(tmp_path, monkeypatch):
    from ktstr_vmm.engine.base import BootSpec
    from ktstr_vmm.engine.kvm import shell_cmdline
    from ktstr_vmm.spec import parse_topology

    monkeypatch.setenv("KTSTR_KVM_SHELL_PORT", "0")
    boot = BootSpec(kernel=tmp_path / "k", initramfs=tmp_path / "i", cmdline="console=ttyS0",
                    topology=parse_topology("1n1l1c1t"), memory_mib=256,
                    console_path=tmp_path / "c", workdir=tmp_path)
    assert shell_cmdline(boot) == "console=ttyS0"


@pytest.mark.parametrize("guest", ["poweroff", "reset"])
def test_acpi_power_off_and_i8042_reset_stop_the_vm_with_their_reason(run, guest):
    m, status, _ = run(guest)
    assert (status, m.exit_reason()) == (0, guest)


def test_hlt_with_interrupts_off_stops_the_vm_as_halted(run):
    m, status, _ = run("hlt")
    assert (status, m.exit_reason()) == (0, "halted")
    assert m.stop_event().rip == 0x2  # the instruction after `cli; hlt`


def test_triple_fault_is_reported_as_a_crash_with_registers(run):
    m, status, _ = run("triple")
    assert (status, m.exit_reason()) == (1, "triple fault")
    report = m.crash_report()
    assert report.startswith("triple fault: vCPU 0 at RIP 0xf0035 (CS 0x0008), bytes 0f 0b")
    assert "CR0=0x" in report and "RSP=0x0000000000007000" in report


def test_an_emulation_failure_is_a_crash_with_registers_not_a_hang(run):
    m, status, _ = run("emulfail")
    assert status == 1
    assert m.exit_reason() == "crashed: emulation failure: vCPU 0 at RIP 0xe0000000 (CS 0x0008)"
    assert "RIP=0x00000000e0000000" in m.crash_report()


def test_a_missing_kvm_device_says_which_and_the_fix(monkeypatch, tmp_path):
    from ktstr_vmm import _kvm

    err = _kvm.ffi.new("char[512]")
    monkeypatch.setenv("KTSTR_KVM_DEVICE", str(tmp_path / "kvm"))
    assert _kvm.lib.kt_kvm_check(err, 512) < 0
    assert _kvm.ffi.string(err).decode() == (f"{tmp_path}/kvm is missing (load the kvm_intel "
                                             "or kvm_amd module, or use --engine qemu)")
    (tmp_path / "kvm").write_bytes(b"")
    assert _kvm.lib.kt_kvm_check(err, 512) < 0
    assert _kvm.ffi.string(err).decode() == (f"{tmp_path}/kvm is not a KVM device "
                                             "(KVM_GET_API_VERSION answered -1, not 12)")


def test_spin_forever_is_ended_by_kill(engine):
    with engine.start_firmware(guest_image("spin"), ONE) as m:
        assert m.wait(0.3) is None and m.exit_reason() is None
        m.kill()
        assert m.wait(5) == -9
        assert m.exit_reason() == "killed"
        m.kill()  # idempotent
        assert m.exit_reason() == "killed"


def test_each_vcpu_threads_host_time_is_known_while_it_spins(engine):
    """The monitor's preemption exemption reads these: every vCPU thread's host run time
    grows while the guest spins, and a closed VM has none."""
    topo = parse_topology("1n1l2c1t")
    with engine.start_firmware(guest_image("spin"), topo) as m:
        first = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            first = m.vcpu_host_times()
            if first is not None:
                break
            time.sleep(0.05)
        assert first is not None and len(first) == 2
        deadline = time.monotonic() + 20
        later = first
        while time.monotonic() < deadline and not all(
                b[0] > a[0] for a, b in zip(first, later, strict=True)):
            time.sleep(0.05)
            later = m.vcpu_host_times()
        assert all(b[0] > a[0] for a, b in zip(first, later, strict=True)), (first, later)
        m.kill()
    assert m.vcpu_host_times() is None


def test_close_of_a_running_guest_leaves_it_killed(engine):
    m = engine.start_firmware(guest_image("spin"), ONE)
    m.close()
    assert (m.wait(0), m.exit_reason(), m.state()) == (-9, "killed", "closed")
    assert m.read_wire(0) is None and m.ram() == []
    m.close()  # idempotent


def test_spin_forever_is_ended_by_the_watchdog(engine):
    from support.watchdog import Watchdog

    with engine.start_firmware(guest_image("spin"), ONE) as m:
        with Watchdog(m, timeout_s=0.3) as dog:
            status = m.wait(10)
        assert dog.fired and status == -9
        assert m.exit_reason() == "watchdog"


def _counter(m) -> int:
    return struct.unpack("<I", m.read_phys(SPIN_MARKER_GPA + 16, 4))[0]


def _wait_marker(m) -> None:
    deadline = time.monotonic() + 10
    while m.read_phys(SPIN_MARKER_GPA, 16) != SPIN_MARKER:
        assert time.monotonic() < deadline, "the spin guest never wrote its marker"
        time.sleep(0.01)


def test_guest_memory_reads_what_the_guest_wrote(engine):
    with engine.start_firmware(guest_image("spin"), ONE) as m:
        _wait_marker(m)
        (region,) = m.ram()
        assert (region.gpa, region.size) == (0, 16 << 20)
        assert bytes(region.buf[SPIN_MARKER_GPA:SPIN_MARKER_GPA + 16]) == SPIN_MARKER
        with pytest.raises(TypeError):
            region.buf[0] = 1  # the host's view is read-only
        from ktstr_vmm.introspect.memory import GuestMemory

        gm = GuestMemory(m.ram())  # the monitor's reader over the engine's mapping
        assert gm.read_phys(SPIN_MARKER_GPA, 16) == SPIN_MARKER
        first = gm.phys_u64(SPIN_MARKER_GPA + 16) & 0xFFFFFFFF
        deadline = time.monotonic() + 10
        while gm.phys_u64(SPIN_MARKER_GPA + 16) & 0xFFFFFFFF == first:
            assert time.monotonic() < deadline, "the guest's counter never moved"
            time.sleep(0.01)


def test_pause_freezes_the_guest_and_resume_continues_it(engine):
    with engine.start_firmware(guest_image("spin"), parse_topology("1n1l2c1t")) as m:
        _wait_marker(m)
        m.pause()
        assert m.state() == "paused"
        frozen = _counter(m)
        time.sleep(0.2)
        assert _counter(m) == frozen, "the counter moved while paused"
        m.resume()
        assert m.state() == "running"
        deadline = time.monotonic() + 10
        while _counter(m) == frozen:
            assert time.monotonic() < deadline, "the guest did not run again after resume"
            time.sleep(0.01)
        kinds = [e.kind for e in m.events()]
        assert kinds == ["paused", "resumed"]
        m.kill()
        assert m.wait(5) == -9


SHAPES = ["1n2l2c1t", "1n1l2c2t", "2n2l2c1t", "2n4l1c2t", "1n3l3c1t"]


@pytest.mark.parametrize("shape", SHAPES)
def test_every_vcpu_reports_the_requested_topology(run, shape):
    topo = parse_topology(shape)
    m, status, _ = run("topology", topo, timeout=60)
    assert (status, m.exit_reason()) == (0, "halted")
    reports = m.reports()
    assert sorted(reports) == list(range(topo.vcpus)), "a vCPU did not report"
    ids = {cpu: linux_ids(cpuid_view(reports[cpu])) for cpu in range(topo.vcpus)}
    assert len({v["apic"] for v in ids.values()}) == topo.vcpus
    assert same_partition(topo, ids, "package", 0), "NUMA nodes differ from the request"
    assert same_partition(topo, ids, "llc", 1), "L3 sharing differs from the request"
    assert same_partition(topo, ids, "core", 2), "SMT siblings differ from the request"


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


def _guest_maps() -> int:
    return Path("/proc/self/maps").read_text().count("ktstr-guest-ram")


def test_100_start_kill_cycles_leave_nothing_behind(engine):
    img = guest_image("spin")
    topo = parse_topology("1n1l2c1t")
    with engine.start_firmware(img, topo) as warm:  # first-use allocations out of the way
        warm.ram()
    before = (_fds(), _threads(), _guest_maps())
    for _ in range(100):
        m = engine.start_firmware(img, topo)
        m.ram()
        m.kill()
        assert m.wait(5) == -9
        m.close()
    assert (_fds(), _threads(), _guest_maps()) == before


def test_more_vcpus_than_the_host_allows_is_refused(engine):
    from ktstr_vmm import _kvm

    limit = _kvm.lib.kt_kvm_max_vcpus()
    topo = parse_topology("1n1l1c1t").__class__(1, limit + 1, 1, 1)
    with pytest.raises(EngineError) as e:
        engine.start_firmware(guest_image("exit"), topo)
    assert e.value.message == (f"topology {topo} has {limit + 1} vCPUs, more than this "
                               f"host's KVM allows ({limit})")


def test_memory_the_host_does_not_have_is_refused(engine):
    with pytest.raises(EngineError) as e:
        engine.start_firmware(guest_image("exit"), ONE, memory_mib=1 << 30)
    assert e.value.message.startswith("guest memory 1073741824 MiB is more than this host has")


def test_a_firmware_image_of_the_wrong_size_is_refused(engine):
    with pytest.raises(EngineError) as e:
        engine.start_firmware(b"\xf4" * 100, ONE)
    assert e.value.message == ("firmware: firmware image must be 4 KiB to 256 KiB in whole "
                               "4 KiB pages (got 100 bytes)")
