"""The Engine / Machine protocol every VM engine implements.

`Engine.start(BootSpec) -> Machine`. A Machine appends the guest's COM1 console to
`BootSpec.console_path` live, carries the wire (COM2) in both directions, exposes guest
RAM for host-side reads, and can be paused, resumed, killed and waited for. The runner
only talks to this protocol; it never knows which engine it has.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..spec import Topology

# A write to the guest (wire or shells' port) that the guest takes no byte of for this long
# fails with an EngineError instead of blocking its caller for ever.
WIRE_WRITE_TIMEOUT = 30.0


@dataclass(frozen=True)
class BootSpec:
    kernel: Path  # bzImage (or a PVH vmlinux for engines that boot it)
    initramfs: Path
    cmdline: str
    topology: Topology
    memory_mib: int
    console_path: Path  # COM1 bytes are appended here as they arrive
    workdir: Path  # run-private scratch: sockets, RAM backing files; removed by the engine
    vmlinux: Path | None = None
    extra: dict[str, str] = field(default_factory=dict)  # engine-specific knobs


@dataclass
class RamRegion:
    """A range of guest-physical RAM and a host mapping of it (read-only)."""

    gpa: int
    size: int
    buf: mmap.mmap | memoryview


class Machine(Protocol):
    engine: str  # "qemu" or "kvm"
    accel: str  # "tcg", "kvm", ... (what actually runs the guest)
    pid: int | None  # host process of the VM, when it is a separate process

    def read_wire(self, timeout: float) -> bytes | None:
        """Bytes from the guest's wire port; b"" on timeout, None once the port is closed."""

    def write_wire(self, data: bytes) -> None:
        """Send bytes to the guest's wire port (host -> agent requests)."""

    def ram(self) -> list[RamRegion]:
        """Guest RAM mappings for GuestMemory; empty when the engine cannot share RAM."""

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def kill(self, reason: str = "killed") -> None:
        """Stop the guest now; idempotent; never raises for an already-dead guest.
        `reason` becomes exit_reason() unless the guest had already stopped (the
        watchdog passes "watchdog")."""

    def wait(self, timeout: float) -> int | None:
        """The VM's exit status once it has stopped, None if still running after timeout."""

    def exit_reason(self) -> str | None:
        """Why the VM stopped ("poweroff", "reset", "killed", "triple fault", ...)."""

    def close(self) -> None:
        """Release everything (kill if needed, remove workdir files). Idempotent."""


class Engine(Protocol):
    name: str

    def start(self, boot: BootSpec) -> Machine: ...
