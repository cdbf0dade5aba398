"""QemuEngine against the real sched_ext kernel under QEMU: console, power-off, topology
as the guest sees it, the wire, QMP pause/resume, kill, the watchdog, and no process or
shared-memory file left behind. The guest is native/testguests/poweroff-init.c.

Time: ~60 s of TCG boots in all (each ~4 s), one guest at a time."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from support import REPO
from support.watchdog import Watchdog

from ktstr_vmm.engine.base import BootSpec
from ktstr_vmm.engine.qemu import QemuEngine
from ktstr_vmm.engine.qemucmd import GiB, MiB, RamSlice, build_command, node_sizes_mib, ram_layout
from ktstr_vmm.errors import EngineError
from ktstr_vmm.guest.initramfs import build_initramfs
from ktstr_vmm.spec import PRESETS, Topology

CMDLINE = "console=ttyS0 panic=-1 nokaslr"
needs_qemu = pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None,
                                reason="qemu-system-x86_64 is not installed")


def shm_files() -> set[str]:
    return {p.name for p in Path("/dev/shm").glob(f"ktstr-{os.getpid()}-*")}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_for(path: Path, text: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return True
        time.sleep(0.1)
    return False


@pytest.fixture(scope="module")
def initrd(tmp_path_factory) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed")
    d = tmp_path_factory.mktemp("guest")
    init = d / "poweroff-init"
    subprocess.run([gcc, "-static", "-O2", "-o", str(init),
                    str(REPO / "native/testguests/poweroff-init.c")], check=True, timeout=120)
    return build_initramfs(init, "", {}, out=d / "initramfs.cpio.gz")


@pytest.fixture
def boot(kernel, initrd, tmp_path):
    """boot(mode, topology=tiny-2llc, memory_mib=256, cmdline_extra="") -> a started
    QemuMachine; every machine is closed at the end of the test."""
    machines = []

    def start(mode: str, topology: Topology = PRESETS["tiny-2llc"], memory_mib: int = 256,
              extra: str = "", kernel_path: Path | None = None, accel: str = "tcg",
              wire: str = "serial"):
        spec = BootSpec(kernel=kernel_path or kernel.bzimage, initramfs=initrd,
                        cmdline=f"{CMDLINE} ktmode={mode} {extra}".strip(),
                        topology=topology, memory_mib=memory_mib,
                        console_path=tmp_path / f"console-{len(machines)}.log",
                        workdir=tmp_path / f"work-{len(machines)}")
        m = QemuEngine(accel, wire=wire).start(spec)
        machines.append(m)
        return m

    yield start
    for m in machines:
        m.close()
    assert shm_files() == set()


# ----------------------------------------------------------------------------- no VM

def test_command_line_follows_the_topology_recipe(tmp_path):
    topo = PRESETS["numa2-4llc"]
    spec = BootSpec(kernel=Path("/k/bzImage"), initramfs=Path("/i.gz"), cmdline="console=ttyS0",
                    topology=topo, memory_mib=1025, console_path=tmp_path / "c,1.log",
                    workdir=tmp_path)
    cmd = build_command("qemu-system-x86_64", spec, accel="tcg", cpu="max,vendor=GenuineIntel",
                        ram_paths=[Path("/dev/shm/r-m0"), Path("/dev/shm/r-m1")],
                        node_mib=node_sizes_mib(1025, 2), wire_fd=5, qmp_fd=7)
    text = " ".join(cmd)
    assert "-accel tcg,thread=single -cpu max,vendor=GenuineIntel" in text
    assert "-smp cpus=16,sockets=2,dies=2,cores=4,threads=1 -m 1025M" in text
    assert ("-object memory-backend-file,id=m0,size=512M,mem-path=/dev/shm/r-m0,share=on "
            "-object memory-backend-file,id=m1,size=513M,mem-path=/dev/shm/r-m1,share=on") in text
    assert "-numa node,nodeid=0,cpus=0-7,memdev=m0 -numa node,nodeid=1,cpus=8-15,memdev=m1" in text
    assert f"file,id=con,path={tmp_path}/c,,1.log,append=on" in text
    assert "-serial chardev:con -serial chardev:wire" in text
    assert "-no-reboot" in cmd and "-nodefaults" in cmd and "-display" in cmd


def test_single_node_uses_the_backend_as_machine_ram(tmp_path):
    spec = BootSpec(kernel=Path("/k"), initramfs=Path("/i"), cmdline="", topology=PRESETS["smt-2llc"],
                    memory_mib=512, console_path=tmp_path / "c", workdir=tmp_path)
    cmd = build_command("q", spec, accel="kvm", cpu="host", ram_paths=[Path("/dev/shm/x-m0")],
                        node_mib=[512], wire_fd=3, qmp_fd=4)
    assert cmd[cmd.index("-machine") + 1] == "pc,memory-backend=m0"
    assert cmd[cmd.index("-accel") + 1] == "kvm"
    assert cmd[cmd.index("-smp") + 1] == "cpus=8,sockets=1,dies=2,cores=2,threads=2"
    assert "-numa" not in cmd


def test_the_shell_port_is_port_2_of_the_virtio_serial_device_with_either_wire(tmp_path):
    spec = BootSpec(kernel=Path("/k"), initramfs=Path("/i"), cmdline="console=ttyS0",
                    topology=PRESETS["tiny-1llc"], memory_mib=256, console_path=tmp_path / "c",
                    workdir=tmp_path)
    for wire in ("serial", "virtio"):
        cmd = build_command("q", spec, accel="tcg", cpu="max", ram_paths=[Path("/dev/shm/x")],
                            node_mib=[256], wire_fd=3, qmp_fd=4, wire=wire, shell_fd=9)
        text = " ".join(cmd)
        assert text.count("virtio-serial-pci,id=vser0") == 1
        assert ("-chardev socket,id=shell,fd=9 -device "
                "virtserialport,bus=vser0.0,nr=2,chardev=shell,name=ktstr.shell") in text
        assert cmd[cmd.index("-append") + 1].endswith(" ktstr.shell=/dev/vport0p2")
        assert ("-serial chardev:wire" in text) == (wire == "serial")
    cmd = build_command("q", spec, accel="tcg", cpu="max", ram_paths=[Path("/dev/shm/x")],
                        node_mib=[256], wire_fd=3, qmp_fd=4)
    assert "virtio-serial-pci,id=vser0" not in " ".join(cmd)
    assert "ktstr.shell" not in " ".join(cmd)


def test_ram_layout_matches_what_qemu_7_2_maps():
    # Seen in `info mtree -f`: under 3.5 GiB everything is low RAM, in node order.
    assert ram_layout([512 * MiB, 512 * MiB]) == [
        RamSlice(0, 0, 512 * MiB, 0), RamSlice(1, 0, 512 * MiB, 512 * MiB)]
    # 2+2 GiB: 3 GiB below the PCI hole, the last GiB of node 1 at 4 GiB.
    assert ram_layout([2 * GiB, 2 * GiB]) == [
        RamSlice(0, 0, 2 * GiB, 0), RamSlice(1, 0, GiB, 2 * GiB),
        RamSlice(1, GiB, GiB, 4 * GiB)]
    # 3.25 GiB stays below 4 GiB; 3.5 GiB is split at 3 GiB.
    assert ram_layout([3328 * MiB]) == [RamSlice(0, 0, 3328 * MiB, 0)]
    assert ram_layout([1792 * MiB, 1792 * MiB]) == [
        RamSlice(0, 0, 1792 * MiB, 0), RamSlice(1, 0, 1280 * MiB, 1792 * MiB),
        RamSlice(1, 1280 * MiB, 512 * MiB, 4 * GiB)]


# ----------------------------------------------------------------------------- VMs

@pytest.mark.vm
@needs_qemu
def test_guest_powers_off_and_console_has_the_boot(boot):
    m = boot("poweroff")
    assert m.accel == "tcg" and m.engine == "qemu"
    with Watchdog(m, timeout_s=120) as dog:
        assert m.wait(90) == 0
    assert not dog.fired
    assert m.exit_reason() == "poweroff"
    console = Path(m.boot.console_path).read_text()
    assert "Linux version 7." in console
    assert "KT init mode=poweroff" in console
    assert "reboot: Power down" in console
    m.close()
    assert not alive(m.pid)
    assert shm_files() == set()


@pytest.mark.vm
@needs_qemu
def test_init_that_exits_panics_the_kernel_and_resets(boot):
    m = boot("exit")
    assert m.wait(90) == 0
    assert m.exit_reason() == "reset"
    assert "Attempted to kill init" in Path(m.boot.console_path).read_text()


def parse_cpulist(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += range(int(lo), int(hi or lo) + 1)
    return out


def check_topology(m, topo: Topology) -> None:
    assert m.wait(120) == 0 and m.exit_reason() == "poweroff"
    console = Path(m.boot.console_path).read_text()
    assert "KT topology done" in console
    facts = dict(re.findall(r"^KT (/sys/\S+)=(\S+)\s*$", console, re.MULTILINE))
    cpu = "/sys/devices/system/cpu/cpu{}/"
    for n in range(topo.vcpus):
        node, llc, core, thread = topo.cpu_location(n)
        assert parse_cpulist(facts[cpu.format(n) + "cache/index3/shared_cpu_list"]) == \
            topo.llc_cpus(llc), f"cpu{n} L3"
        siblings = [n - thread + t for t in range(topo.threads)]
        assert parse_cpulist(facts[cpu.format(n) + "topology/thread_siblings_list"]) == siblings
        assert facts[cpu.format(n) + "topology/physical_package_id"] == str(node)
    for node in range(topo.nodes):
        got = facts.get(f"/sys/devices/system/node/node{node}/cpulist")
        assert got is not None and parse_cpulist(got) == topo.node_cpus(node)
    assert f"/sys/devices/system/node/node{topo.nodes}/cpulist" not in facts


@pytest.mark.vm
@pytest.mark.slow
@needs_qemu
@pytest.mark.parametrize("preset", ["tiny-2llc", "smt-2llc", "numa2-4llc"])
def test_guest_sees_the_requested_topology(boot, preset):
    topo = PRESETS[preset]
    check_topology(boot("topo", topo, memory_mib=max(256, 64 * topo.vcpus), extra="quiet"), topo)


@pytest.mark.vm
@pytest.mark.hardware_kvm
@needs_qemu
@pytest.mark.parametrize("preset", ["tiny-2llc", "smt-2llc", "numa2-4llc"])
def test_guest_sees_the_requested_topology_under_kvm(boot, preset):
    from ktstr_vmm.engine.kvmprobe import probe_kvm

    probe = probe_kvm()
    if probe.kind != "hardware":
        pytest.skip(f"needs hardware KVM: {probe.detail}")
    topo = PRESETS[preset]
    m = boot("topo", topo, memory_mib=max(256, 64 * topo.vcpus), extra="quiet", accel="kvm")
    assert m.accel == "kvm"
    check_topology(m, topo)


@pytest.mark.vm
@needs_qemu
def test_pause_stops_the_guest_and_resume_lets_it_finish(boot):
    m = boot("poweroff")
    console = Path(m.boot.console_path)
    assert wait_for(console, "Linux version", 60)
    m.pause()
    assert "VM status: paused" in m.hmp("info status")
    size = console.stat().st_size
    time.sleep(1.5)
    assert console.stat().st_size == size, "a paused guest printed"
    assert m.wait(0) is None
    m.resume()
    assert "VM status: running" in m.hmp("info status")
    assert m.wait(90) == 0 and m.exit_reason() == "poweroff"
    assert "KT init mode=poweroff" in console.read_text()


@pytest.mark.vm
@needs_qemu
def test_kill_leaves_no_qemu_and_no_shm_file_and_ram_was_readable(boot):
    m = boot("hang", Topology(nodes=2, llcs=2, cores=1, threads=1), memory_mib=4096)
    assert wait_for(Path(m.boot.console_path), "KT init mode=hang", 90)
    # The RAM files were unlinked as soon as QEMU had them open; QEMU still maps them.
    assert shm_files() == set()
    maps = Path(f"/proc/{m.pid}/maps").read_text()
    assert f"/dev/shm/ktstr-{os.getpid()}-" in maps and "(deleted)" in maps
    # Our mapping matches QEMU's own view of guest-physical RAM ...
    mtree = m.hmp("info mtree -f").split("FlatView")
    system = next(s for s in mtree if "Root memory region: system" in s)
    seen = [(int(a, 16), int(b, 16) + 1, name, int(off or "0", 16)) for a, b, name, off in
            re.findall(r"([0-9a-f]{16})-([0-9a-f]{16}) \(prio 0, ram\): (m\d)(?: @([0-9a-f]+))?",
                       system)]
    regions = m.ram()
    assert [(r.gpa, r.size) for r in regions] == [(0, 2 * GiB), (2 * GiB, GiB), (4 * GiB, GiB)]
    for start, end, _name, _off in seen:
        assert any(r.gpa <= start and end <= r.gpa + r.size for r in regions), hex(start)
    # ... and holds the running kernel (loaded at 16 MiB with nokaslr).
    low = regions[0].buf
    assert bytes(low[0x1000000:0x1000000 + 64 * MiB]).find(b"Linux version 7.") >= 0
    del low
    pid = m.pid
    m.kill()
    assert m.exit_reason() == "killed"
    assert m.wait(0) is not None
    assert not alive(pid)
    m.close()
    assert shm_files() == set()


@pytest.mark.vm
@needs_qemu
def test_qemu_dies_with_its_parent_process(kernel, initrd, tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from ktstr_vmm.engine.base import BootSpec
        from ktstr_vmm.engine.qemu import QemuEngine
        from ktstr_vmm.spec import PRESETS
        m = QemuEngine().start(BootSpec(kernel=Path({str(kernel.bzimage)!r}),
            initramfs=Path({str(initrd)!r}), cmdline="console=ttyS0 ktmode=hang",
            topology=PRESETS["tiny-1llc"], memory_mib=256,
            console_path=Path({str(tmp_path / 'c.log')!r}), workdir=Path({str(tmp_path / 'w')!r})))
        print(m.pid, flush=True)
        time.sleep(120)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                              cwd=REPO, text=True)
    try:
        qemu_pid = int(parent.stdout.readline())
        assert alive(qemu_pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while alive(qemu_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(qemu_pid), "QEMU outlived the process that started it"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(timeout=10)
        parent.stdout.close()


@pytest.mark.vm
@needs_qemu
def test_hung_guest_is_ended_by_the_watchdog_within_its_deadline(boot):
    m = boot("hang")
    assert wait_for(Path(m.boot.console_path), "KT init mode=hang", 90)
    t0 = time.monotonic()
    with Watchdog(m, timeout_s=5) as dog:
        status = m.wait(5 + 5 + 5)
    elapsed = time.monotonic() - t0
    assert status is not None, "the watchdog did not end the guest"
    assert dog.fired
    assert elapsed <= 5 + 5
    assert m.exit_reason() == "watchdog"


def exchange_wire(m, total: int) -> None:
    """The test init's wire mode: `total` pattern bytes out, then 4096 bytes echoed."""
    got = bytearray()
    deadline = time.monotonic() + 90
    while len(got) < total and time.monotonic() < deadline:
        data = m.read_wire(1.0)
        assert data is not None, "wire closed early"
        got += data
    expected = bytes((i * 7 + i // 251) & 0xFF for i in range(total))
    assert bytes(got[:total]) == expected
    payload = os.urandom(4096)
    m.write_wire(payload)
    echo = bytearray(got[total:])
    while len(echo) < len(payload) and time.monotonic() < deadline:
        data = m.read_wire(1.0)
        assert data is not None, "wire closed before the echo"
        echo += data
    assert bytes(echo) == payload
    assert m.wait(60) == 0 and m.exit_reason() == "poweroff"
    assert m.read_wire(1.0) is None  # QEMU is gone: the wire reports closed


@pytest.mark.vm
@needs_qemu
def test_wire_carries_every_byte_in_order_both_ways(boot):
    m = boot("wire", extra="ktwire=65536 ktecho=4096")
    assert "-serial chardev:wire" in " ".join(m.command)
    exchange_wire(m, 65536)


@pytest.mark.vm
@needs_qemu
def test_virtio_wire_is_announced_to_the_guest_and_carries_every_byte(boot, tmp_path):
    m = boot("wire", extra="ktwire=4194304 ktecho=4096 ktwiredev=/dev/vport0p1", wire="virtio")
    cmdline = m.command[m.command.index("-append") + 1]
    assert "ktstr.wire=/dev/vport0p1" in cmdline.split()
    assert "ktstr.shell=/dev/vport0p2" in cmdline.split()
    assert "chardev:wire" not in m.command
    exchange_wire(m, 4 << 20)
    assert "KT wire open failed" not in Path(m.boot.console_path).read_text()


@pytest.mark.vm
@needs_qemu
def test_a_guest_that_never_reads_the_wire_fails_the_write_instead_of_hanging(boot, monkeypatch):
    import ktstr_vmm.engine.qemu as qemu_mod

    monkeypatch.setattr(qemu_mod, "WIRE_WRITE_TIMEOUT", 2.0)
    m = boot("hang")
    t0 = time.monotonic()
    with pytest.raises(EngineError) as e:
        m.write_wire(b"x" * (16 << 20))
    assert e.value.one_line() == "the guest took no wire bytes for 2s"
    assert time.monotonic() - t0 < 30
    assert m.wait(0) is None  # the guest itself is unharmed


@pytest.mark.vm
@needs_qemu
def test_a_machine_dropped_without_close_takes_qemu_with_it(initrd, kernel, tmp_path):
    import gc

    spec = BootSpec(kernel=kernel.bzimage, initramfs=initrd, cmdline=f"{CMDLINE} ktmode=hang",
                    topology=PRESETS["tiny-1llc"], memory_mib=256,
                    console_path=tmp_path / "c.log", workdir=tmp_path / "w")
    m = QemuEngine().start(spec)
    pid = m.pid
    assert alive(pid)
    del m
    gc.collect()
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(pid)
    assert shm_files() == set()


@needs_qemu
def test_qemu_that_cannot_start_is_a_one_line_engine_error(initrd, tmp_path):
    spec = BootSpec(kernel=tmp_path / "no-such-bzImage", initramfs=initrd, cmdline=CMDLINE,
                    topology=PRESETS["tiny-1llc"], memory_mib=256,
                    console_path=tmp_path / "c.log", workdir=tmp_path / "w")
    with pytest.raises(EngineError) as e:
        QemuEngine().start(spec)
    assert e.value.one_line() == (
        f"QEMU did not start: qemu: could not open kernel file '{tmp_path / 'no-such-bzImage'}': "
        "No such file or directory (check the kernel, initramfs and QEMU installation)")
    assert shm_files() == set()
