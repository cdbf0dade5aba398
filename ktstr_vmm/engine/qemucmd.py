"""QEMU's command line for a BootSpec, and where QEMU puts guest RAM (pure functions).

Guest-physical layout of the pc machine (checked with `info mtree -f`): the node
backends are concatenated in node order into one RAM block; its first `below_4g` bytes
appear at guest-physical 0 and the rest at 4 GiB. below_4g is all of RAM when RAM is
under 3.5 GiB, else exactly 3 GiB (the PCI hole starts there). See ram_layout().

Verified with QEMU 7.2's pc machine: 512+512 MiB -> node 0 at 0, node 1 at 512 MiB;
2+2 GiB -> node 0 at 0, node 1's first GiB at 2 GiB and its second at 4 GiB; 3.25 GiB
stays below 4 GiB; 3.5 GiB is split at 3 GiB. (The legacy VGA/BIOS window at
0xa0000-0xfffff overlays low RAM for the guest; the file still holds those bytes.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import EngineError
from ..spec import Topology
from .base import BootSpec

GiB = 1 << 30
MiB = 1 << 20
LOWMEM_LIMIT = 0xE0000000  # pc machine: max-ram-below-4g default (3.5 GiB)
LOWMEM_SPLIT = 0xC0000000  # with RAM >= 3.5 GiB, gigabyte alignment puts 3 GiB low


@dataclass(frozen=True)
class RamSlice:
    """Bytes [offset, offset+size) of node `node`'s backend at guest-physical `gpa`."""

    node: int
    offset: int
    size: int
    gpa: int


def node_sizes_mib(memory_mib: int, nodes: int) -> list[int]:
    """RAM split evenly over nodes (the last node takes the remainder)."""
    if memory_mib < nodes:
        raise EngineError(f"{memory_mib} MiB of RAM cannot be split over {nodes} NUMA nodes")
    base = memory_mib // nodes
    return [base] * (nodes - 1) + [memory_mib - base * (nodes - 1)]


def ram_layout(node_bytes: list[int]) -> list[RamSlice]:
    """Where each node backend lands in guest-physical memory on QEMU's pc machine."""
    total = sum(node_bytes)
    below = total if total < LOWMEM_LIMIT else LOWMEM_SPLIT
    out: list[RamSlice] = []
    start = 0  # offset of this node in the concatenated RAM block
    for node, size in enumerate(node_bytes):
        low_part = max(0, min(size, below - start))
        if low_part:
            out.append(RamSlice(node, 0, low_part, start))
        if size > low_part:
            ram_off = start + low_part
            out.append(RamSlice(node, low_part, size - low_part, 4 * GiB + ram_off - below))
        start += size
    return out


def cpu_model(accel: str, pvm: bool) -> str:
    if accel == "kvm":
        return "host,-arch-capabilities" if pvm else "host"
    return "max,vendor=GenuineIntel"


WIRE_KINDS = ("serial", "virtio")
# Where the guest finds a virtio-serial wire: the first port of the only virtio-serial
# device (the agent reads `ktstr.wire=` from the kernel command line; devtmpfs names it).
VIRTIO_WIRE_DEV = "/dev/vport0p1"
# The shells' port (docs/shell.md): port 2 of the same virtio-serial device, named to the
# agent with `ktstr.shell=`.
VIRTIO_SHELL_DEV = "/dev/vport0p2"


def build_command(qemu: str, boot: BootSpec, *, accel: str, cpu: str, ram_paths: list[Path],
                  node_mib: list[int], wire_fd: int, qmp_fd: int,
                  wire: str = "serial", shell_fd: int | None = None) -> list[str]:
    """The qemu-system-x86_64 argument list for `boot` (no side effects).

    wire "serial": COM2 (the guest's /dev/ttyS1, ~0.1-0.2 MB/s under TCG). wire "virtio":
    a virtio-serial port (~25 MB/s), announced to the agent by appending
    `ktstr.wire=/dev/vport0p1` to the kernel command line; COM2 is then absent.
    shell_fd: the host end of the shells' channel, a virtio-serial port announced with
    `ktstr.shell=/dev/vport0p2` (None: no shell port)."""
    topo: Topology = boot.topology
    cmd = [
        qemu, "-name", "ktstr", "-machine", "pc", "-no-user-config", "-nodefaults",
        "-display", "none", "-no-reboot",
        "-accel", "kvm" if accel == "kvm" else "tcg,thread=single",
        "-cpu", cpu,
        "-smp", (f"cpus={topo.vcpus},sockets={topo.nodes},dies={topo.llcs_per_node},"
                 f"cores={topo.cores},threads={topo.threads}"),
        "-m", f"{sum(node_mib)}M",
    ]
    for i, (path, mib) in enumerate(zip(ram_paths, node_mib, strict=True)):
        cmd += ["-object", f"memory-backend-file,id=m{i},size={mib}M,mem-path={path},share=on"]
    if topo.nodes == 1:
        cmd[cmd.index("pc")] = "pc,memory-backend=m0"
    else:
        for i in range(topo.nodes):
            cpus = topo.node_cpus(i)
            cmd += ["-numa", f"node,nodeid={i},cpus={cpus[0]}-{cpus[-1]},memdev=m{i}"]
    console = str(boot.console_path).replace(",", ",,")
    cmdline = boot.cmdline
    cmd += [
        "-chardev", f"file,id=con,path={console},append=on",
        "-chardev", f"socket,id=wire,fd={wire_fd}",
        "-chardev", f"socket,id=qmp,fd={qmp_fd}",
        "-serial", "chardev:con",
    ]
    if wire not in WIRE_KINDS:
        raise EngineError(f"unknown wire transport {wire!r}", "use serial or virtio")
    if wire == "virtio" or shell_fd is not None:
        cmd += ["-device", "virtio-serial-pci,id=vser0"]
    if wire == "virtio":
        cmd += ["-device", "virtserialport,bus=vser0.0,nr=1,chardev=wire,name=ktstr.wire"]
        cmdline = f"{cmdline} ktstr.wire={VIRTIO_WIRE_DEV}".strip()
    else:
        cmd += ["-serial", "chardev:wire"]
    if shell_fd is not None:
        cmd += ["-chardev", f"socket,id=shell,fd={shell_fd}",
                "-device", "virtserialport,bus=vser0.0,nr=2,chardev=shell,name=ktstr.shell"]
        cmdline = f"{cmdline} ktstr.shell={VIRTIO_SHELL_DEV}".strip()
    cmd += [
        "-mon", "chardev=qmp,mode=control",
        "-kernel", str(boot.kernel), "-initrd", str(boot.initramfs),
        "-append", cmdline,
    ]
    return cmd


def is_pvm() -> bool:
    return Path("/sys/module/kvm_pvm").exists()
