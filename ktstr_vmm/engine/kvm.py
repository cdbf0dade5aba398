"""KvmEngine: our own VMM (native/vmm, C) driven through cffi, behind the Machine protocol.

The C side owns the vCPU threads, the devices and the boot; Python only asks it to start,
pause, resume and kill, and reads what happened from an event ring whose eventfd wakes
`wait()`. COM1 bytes go straight from the vCPU thread to `BootSpec.console_path`; COM2
(the wire, the guest's ttyS1) and COM3 (the shells' port, ttyS2, named to the agent with
`ktstr.shell=/dev/ttyS2`) arrive on pipes; guest RAM is a memfd that `ram()` maps read-only.

The extension `ktstr_vmm._kvm` is built by `pip install -e .` (setup.py, cffi API mode);
it is imported lazily so the rest of ktstr works without it.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import select
import struct
import threading
import time
from pathlib import Path

from ..errors import EngineError
from ..spec import Topology
from .base import WIRE_WRITE_TIMEOUT, BootSpec, RamRegion
from .kvmevents import CRASH_NAMES, STOP_NAMES, KvmEvent, event_from_c
from .kvmprobe import probe_kvm

MiB = 1 << 20
XEN_ELFNOTE_PHYS32_ENTRY = 18
BUILD_HINT = "install gcc and run `pip install -e .` in the ktstr checkout, or use --engine qemu"

TCG_MODEL = "QEMU TCG CPU"  # /proc/cpuinfo's model name of QEMU's -cpu max under TCG


def host_cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    with contextlib.suppress(OSError):
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    return ""


def needs_xsave_hidden(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """KVM nested under QEMU TCG's SVM (the nested test bed's L1) cannot give a guest
    XSAVE: TCG does not raise the XSETBV intercept, so KVM never learns the guest's XCR0
    and Linux panics in fpstate_reset. $KTSTR_KVM_HIDE_XSAVE=1/0 forces the choice."""
    forced = os.environ.get("KTSTR_KVM_HIDE_XSAVE")
    if forced in ("0", "1"):
        return forced == "1"
    return host_cpu_model(cpuinfo).startswith(TCG_MODEL)


def load_native():
    """(ffi, lib) of the compiled VMM, or an EngineError that says how to build it."""
    try:
        from .. import _kvm  # the cffi extension stays optional (built by pip install)
    except ImportError as e:
        raise EngineError(f"the KVM engine's C extension ktstr_vmm._kvm is not built ({e})",
                          BUILD_HINT) from e
    return _kvm.ffi, _kvm.lib


def host_memory_mib() -> int:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    return 1 << 30


def has_pvh_note(path: Path) -> bool:
    """Whether an ELF vmlinux carries XEN_ELFNOTE_PHYS32_ENTRY (so it can boot via PVH)."""
    try:
        with open(path, "rb") as f:
            ehdr = f.read(64)
            if ehdr[:4] != b"\x7fELF" or ehdr[4] != 2:
                return False
            phoff, = struct.unpack_from("<Q", ehdr, 32)
            phentsize, phnum = struct.unpack_from("<HH", ehdr, 54)
            f.seek(phoff)
            phdrs = f.read(phentsize * min(phnum, 64))
            for i in range(len(phdrs) // phentsize):
                p_type, _, off, _, _, filesz = struct.unpack_from("<IIQQQQ", phdrs, i * phentsize)
                if p_type != 4 or filesz > 1 << 20:  # PT_NOTE
                    continue
                f.seek(off)
                notes, pos = f.read(filesz), 0
                while pos + 12 <= len(notes):
                    namesz, descsz, ntype = struct.unpack_from("<III", notes, pos)
                    name = notes[pos + 12:pos + 12 + namesz]
                    if ntype == XEN_ELFNOTE_PHYS32_ENTRY and name == b"Xen\0":
                        return True
                    pos += 12 + (namesz + 3) // 4 * 4 + (descsz + 3) // 4 * 4
    except OSError:
        return False
    return False


_LIMITS: tuple[int, int] | None = None


def _host_limits(lib, ffi) -> tuple[int, int]:
    """(KVM_CAP_MAX_VCPUS, host MiB), asked once per process; /dev/kvm problems raise."""
    global _LIMITS
    if _LIMITS is None:
        err = ffi.new("char[512]")
        if lib.kt_kvm_check(err, 512) < 0:
            raise EngineError(ffi.string(err).decode(errors="replace"))
        _LIMITS = (lib.kt_kvm_max_vcpus(), host_memory_mib())
    return _LIMITS


def _check(rc: int, err, ffi, what: str, hint: str | None = None) -> None:
    if rc < 0:
        msg = ffi.string(err).decode(errors="replace") or os.strerror(-rc)
        raise EngineError(f"{what}: {msg}", hint)


class KvmMachine:
    """A running VM of our VMM. Thread-safe: wait/kill/pause may come from other threads."""

    engine = "kvm"
    accel = "kvm"
    pid = None

    def __init__(self, topology: Topology, memory_mib: int, console_path: Path | None,
                 *, irqchip: bool, cpuid_flags: int) -> None:
        """Checks the request against the host (vCPU limit, memory), then creates the VM."""
        self._ffi, self._lib = load_native()
        ffi, lib = self._ffi, self._lib
        self.topology = topology
        self._lock = threading.Lock()
        self._events: list[KvmEvent] = []
        self._stop: KvmEvent | None = None
        self._maps: list[mmap.mmap] = []
        self._closed = False
        self._kill_reason: str | None = None
        self.workdir: Path | None = None  # BootSpec.workdir, removed (if empty) by close()
        self.started_ns = time.monotonic_ns()
        err = ffi.new("char[512]")
        max_vcpus, host = _host_limits(lib, ffi)
        if topology.vcpus > max_vcpus:
            raise EngineError(f"topology {topology} has {topology.vcpus} vCPUs, more than this "
                              f"host's KVM allows ({max_vcpus})", "choose a smaller topology")
        if memory_mib > host:
            raise EngineError(f"guest memory {memory_mib} MiB is more than this host has "
                              f"({host} MiB)", "ask for less memory (--memory)")
        self._console_fd = -1
        if console_path is not None:
            self._console_fd = os.open(console_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND
                                       | os.O_CLOEXEC, 0o644)
        cfg = ffi.new("struct kt_config *")
        cfg.topo.nodes, cfg.topo.llcs = topology.nodes, topology.llcs
        cfg.topo.cores, cfg.topo.threads = topology.cores, topology.threads
        cfg.mem_bytes = memory_mib * MiB
        cfg.irqchip = int(irqchip)
        cfg.console_fd = self._console_fd
        cfg.cpuid_flags = cpuid_flags
        self._vm = lib.kt_vm_create(cfg, err, 512)
        if self._vm == ffi.NULL:
            self._vm = None
            self._close_console()
            raise EngineError("cannot create the VM: " + ffi.string(err).decode(errors="replace"))
        self._err = err

    # -------------------------------------------------------------- loading / starting

    def _load(self, fn, *args, what: str) -> None:
        rc = fn(self._vm, *args, self._err, 512)
        if rc < 0:
            self.close()
            _check(rc, self._err, self._ffi, what)

    def load_firmware(self, image: bytes) -> None:
        self._load(self._lib.kt_vm_load_firmware, image, len(image), what="firmware")

    def load_kernel(self, kernel: Path, cmdline: str, initramfs: Path | None) -> None:
        ffi = self._ffi
        try:
            with open(kernel, "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as img:
                rd = initramfs.read_bytes() if initramfs else b""
                buf = ffi.from_buffer(img)
                try:
                    self._load(self._lib.kt_vm_load_kernel, buf, len(img),
                               cmdline.encode(), rd, len(rd), what=f"cannot boot {kernel}")
                finally:
                    ffi.release(buf)
        except (OSError, ValueError) as e:
            self.close()
            raise EngineError(f"cannot read {kernel}: {e}") from e

    def start(self) -> None:
        self.started_ns = time.monotonic_ns()
        rc = self._lib.kt_vm_start(self._vm, self._err, 512)
        if rc < 0:
            msg = self._ffi.string(self._err).decode(errors="replace")
            self.close()
            raise EngineError(f"cannot start the VM: {msg}")

    # -------------------------------------------------------------- events

    def _drain(self) -> None:
        with self._lock:
            if self._vm is None:
                return
            ev = self._ffi.new("struct kt_event *")
            while self._lib.kt_vm_next_event(self._vm, ev):
                e = event_from_c(ev)
                self._events.append(e)
                if e.kind in STOP_NAMES and self._stop is None:
                    self._stop = e

    def events(self) -> list[KvmEvent]:
        self._drain()
        return list(self._events)

    def reports(self) -> dict[int, list[int]]:
        """Dwords each vCPU wrote to the report port, in order."""
        out: dict[int, list[int]] = {}
        for e in self.events():
            if e.kind == "report":
                out.setdefault(e.vcpu, []).append(e.code)
        return out

    def stop_event(self) -> KvmEvent | None:
        self._drain()
        return self._stop

    def wait(self, timeout: float) -> int | None:
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            self._drain()
            if self._stop is not None:
                return self._status(self._stop)
            left = deadline - time.monotonic()
            if left <= 0 or self._vm is None:
                return None
            with self._lock:
                fd = self._lib.kt_vm_event_fd(self._vm) if self._vm is not None else -1
            if fd < 0:
                return None
            with contextlib.suppress(OSError, ValueError):  # closed under us by close()
                select.select([fd], [], [], min(left, 0.1))

    @staticmethod
    def _status(ev: KvmEvent) -> int:
        if ev.kind == "exit-port":
            return ev.code
        if ev.kind == "killed":
            return -9
        return 1 if ev.kind in CRASH_NAMES else 0

    def exit_reason(self) -> str | None:
        ev = self.stop_event()
        if ev is None:
            return None
        if ev.kind in CRASH_NAMES and ev.kind != "triple fault":
            return "crashed: " + ev.describe()
        if ev.kind == "killed":
            return self._kill_reason or "killed"
        return ev.kind

    def crash_report(self) -> str | None:
        """For a guest that crashed: what happened, where, and the vCPU's registers."""
        ev = self.stop_event()
        if ev is None or ev.kind not in CRASH_NAMES:
            return None
        return ev.describe() + "\n" + ev.registers()

    # -------------------------------------------------------------- control

    def _call(self, fn, what: str) -> None:
        with self._lock:
            if self._vm is None:
                raise EngineError(f"cannot {what}: the VM is closed")
            rc = fn(self._vm)
        if rc == -errno.ETIMEDOUT:
            raise EngineError(f"cannot {what}: the vCPUs did not stop within 5 s")
        if rc < 0 and self.stop_event() is None:
            raise EngineError(f"cannot {what}: the VM is not running")

    def vcpu_registers(self, vcpu: int) -> KvmEvent:
        """A vCPU's registers (pause first for a consistent picture)."""
        ev = self._ffi.new("struct kt_event *")
        with self._lock:
            if self._vm is None or self._lib.kt_vm_vcpu_regs(self._vm, vcpu, ev) < 0:
                raise EngineError(f"no vCPU {vcpu} to read registers from")
        return event_from_c(ev)

    def vcpu_rips(self) -> list[int]:
        """Where each vCPU is (RIP), read with the VM paused; [] when it cannot pause."""
        try:
            self.pause()
        except EngineError:
            return []
        try:
            return [self.vcpu_registers(i).rip for i in range(self.topology.vcpus)]
        finally:
            with contextlib.suppress(EngineError):
                self.resume()

    def vcpu_host_times(self) -> list[tuple[int, int]] | None:
        """Per vCPU, the host thread's (run ns, runqueue-wait ns) from its schedstat: a
        vCPU whose thread waited for a host CPU instead of running was preempted by the
        host, not stuck in the guest. None when the VM is closed or a thread is unknown."""
        with self._lock:
            if self._vm is None:
                return None
            tids = [self._lib.kt_vm_vcpu_tid(self._vm, i) for i in range(self.topology.vcpus)]
        out = []
        for tid in tids:
            if tid <= 0:
                return None
            try:
                run, wait, _ = Path(f"/proc/self/task/{tid}/schedstat").read_text().split()
                out.append((int(run), int(wait)))
            except (OSError, ValueError):
                return None
        return out

    def pause(self) -> None:
        self._call(self._lib.kt_vm_pause, "pause")

    def resume(self) -> None:
        self._call(self._lib.kt_vm_resume, "resume")

    def kill(self, reason: str = "killed") -> None:
        """Stop the guest now (idempotent). `reason` becomes exit_reason() unless the
        guest had already stopped by itself ("watchdog" from the Watchdog)."""
        self._drain()
        with self._lock:
            if self._vm is not None:
                if self._stop is None and self._kill_reason is None:
                    self._kill_reason = reason
                self._lib.kt_vm_kill(self._vm)

    def state(self) -> str:
        with self._lock:
            if self._vm is None:
                return "closed"
            s = self._lib.kt_vm_state(self._vm)
        return ("created", "running", "paused", "stopped")[s]

    # -------------------------------------------------------------- wire and memory

    def _chan_read(self, chan: int, timeout: float) -> bytes | None:
        with self._lock:
            fd = self._lib.kt_vm_chan_fd(self._vm, chan) if self._vm is not None else -1
        if fd < 0:
            return None
        try:
            r, _, _ = select.select([fd], [], [], max(0.0, timeout))
            if r:
                return os.read(fd, 65536)
        except BlockingIOError:
            pass
        except (OSError, ValueError):  # closed under us by close()
            return None
        return None if self.stop_event() is not None else b""

    def _chan_write(self, chan: int, data: bytes, what: str,
                    stall_s: float | None = None) -> None:
        """Queue all of `data` into the channel's receive FIFO, waiting while it is full;
        EngineError once the VM is closed or stopped, or (stall_s) when the guest took no
        byte for that long."""
        view = memoryview(data)
        last = time.monotonic()
        while view:
            with self._lock:
                if self._vm is None:
                    raise EngineError(f"cannot write to the {what}: the VM is closed")
                n = self._lib.kt_vm_chan_write(self._vm, chan, bytes(view[:65536]),
                                               min(len(view), 65536))
            view = view[n:]
            if n:
                last = time.monotonic()
            if view:
                if self.stop_event() is not None:
                    raise EngineError(f"cannot write to the {what}: the VM has stopped")
                if stall_s is not None and time.monotonic() - last > stall_s:
                    raise EngineError(f"the guest took no {what} bytes for {stall_s:.0f}s")
                time.sleep(0.001)

    def read_wire(self, timeout: float) -> bytes | None:
        return self._chan_read(self._lib.KT_CHAN_WIRE, timeout)

    def write_wire(self, data: bytes) -> None:
        self._chan_write(self._lib.KT_CHAN_WIRE, data, "wire")

    has_shell = True  # COM3 is always there; the agent uses it when told ktstr.shell=

    def read_shell(self, timeout: float) -> bytes | None:
        """Bytes from the shells' port (COM3): b"" on timeout, None once the VM is gone."""
        return self._chan_read(self._lib.KT_CHAN_SHELL, timeout)

    def write_shell(self, data: bytes) -> None:
        """Send all of `data` to the shells' port; EngineError as write_wire, or when the
        guest takes nothing for WIRE_WRITE_TIMEOUT seconds (a shell never wedges the hub)."""
        self._chan_write(self._lib.KT_CHAN_SHELL, data, "shell port", WIRE_WRITE_TIMEOUT)

    def ram(self) -> list[RamRegion]:
        ffi = self._ffi
        with self._lock:
            if self._vm is None:
                return []
            gpa, off, size = (ffi.new("uint64_t[4]") for _ in range(3))
            n = self._lib.kt_vm_ram_regions(self._vm, gpa, off, size, 4)
            fd = self._lib.kt_vm_mem_fd(self._vm)
            if not self._maps:
                for i in range(n):
                    self._maps.append(mmap.mmap(fd, size[i], mmap.MAP_SHARED, mmap.PROT_READ,
                                                offset=off[i]))
            return [RamRegion(gpa[i], size[i], self._maps[i]) for i in range(n)]

    def read_phys(self, gpa: int, length: int) -> bytes:
        """Guest-physical bytes (within one RAM region)."""
        for r in self.ram():
            if r.gpa <= gpa and gpa + length <= r.gpa + r.size:
                return bytes(r.buf[gpa - r.gpa:gpa - r.gpa + length])
        raise EngineError(f"guest-physical range {gpa:#x}+{length:#x} is not RAM")

    # -------------------------------------------------------------- teardown

    def _close_console(self) -> None:
        if self._console_fd >= 0:
            os.close(self._console_fd)
            self._console_fd = -1

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.kill()  # so the stop reason is in the ring before it goes away
        self._drain()
        with self._lock:
            vm, self._vm = self._vm, None
            if vm is not None:
                self._lib.kt_vm_destroy(vm)  # kills, joins the vCPU threads, frees all
            for m in self._maps:
                with contextlib.suppress(BufferError):  # a caller still holds a view
                    m.close()
            self._maps.clear()
        self._close_console()
        if self.workdir is not None:
            with contextlib.suppress(OSError):  # we put nothing there; others may have
                self.workdir.rmdir()

    def __enter__(self) -> KvmMachine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


SHELL_DEV = "/dev/ttyS2"  # COM3 (native/vmm/vm.c chan_ports)


def shell_cmdline(boot: BootSpec) -> str:
    """The kernel command line with the shells' port named to the agent: one more legacy
    UART for the 8250 driver (the last `8250.nr_uarts=` wins) and `ktstr.shell=`;
    unchanged with `extra["shell"] == "0"` or KTSTR_KVM_SHELL_PORT=0 in the environment
    (a guest kernel whose 8250 driver misbehaves with a third UART still boots)."""
    if boot.extra.get("shell", "1") == "0" or os.environ.get("KTSTR_KVM_SHELL_PORT") == "0":
        return boot.cmdline
    return f"{boot.cmdline} 8250.nr_uarts=3 ktstr.shell={SHELL_DEV}".strip()


class KvmEngine:
    """Boots kernels (PVH vmlinux preferred, else bzImage) and firmware images."""

    name = "kvm"

    def __init__(self, hide_pvm: bool | None = None) -> None:
        _, lib = load_native()  # KT_CPUID_* come from the compiled ktvmm.h, not re-typed
        if hide_pvm is None:

            hide_pvm = probe_kvm().kind == "emulated"
        self.cpuid_flags = (lib.KT_CPUID_VENDOR_INTEL
                            | (lib.KT_CPUID_HIDE_PVM if hide_pvm else 0)
                            | (lib.KT_CPUID_HIDE_XSAVE if needs_xsave_hidden() else 0))

    def start(self, boot: BootSpec) -> KvmMachine:
        """Boot a kernel, the shells' port (COM3) named on its command line (shell_cmdline):
        `extra["kvm.boot"]` = "auto" (BootSpec.vmlinux through PVH when it
        has the PVH note, else BootSpec.kernel, a bzImage or a PVH vmlinux), "pvh" or
        "bzimage"."""
        mode = boot.extra.get("kvm.boot", "auto")
        kernel = boot.kernel
        if mode == "pvh" and boot.vmlinux is not None:
            kernel = boot.vmlinux
        elif mode == "auto" and boot.vmlinux is not None and has_pvh_note(boot.vmlinux):
            kernel = boot.vmlinux
        Path(boot.workdir).mkdir(parents=True, exist_ok=True)
        m = KvmMachine(boot.topology, boot.memory_mib, boot.console_path, irqchip=True,
                       cpuid_flags=self.cpuid_flags)
        m.workdir = Path(boot.workdir)
        initrd = boot.initramfs if boot.initramfs and Path(boot.initramfs).is_file() else None
        m.load_kernel(kernel, shell_cmdline(boot), initrd)
        m.start()
        return m

    def start_firmware(self, image: bytes, topology: Topology, memory_mib: int = 16,
                       console_path: Path | None = None, irqchip: bool = False) -> KvmMachine:
        """Run a raw firmware image from the reset vector (the synthetic test guests)."""
        m = KvmMachine(topology, memory_mib, console_path, irqchip=irqchip,
                       cpuid_flags=self.cpuid_flags)
        m.load_firmware(image)
        m.start()
        return m
