"""QemuEngine: a qemu-system-x86_64 subprocess behind the Machine protocol.

Wiring (all verified with QEMU 7.2):
- COM1 -> `-chardev file,append=on` on BootSpec.console_path: QEMU writes each byte as
  the guest sends it, so the console is complete even when the guest or QEMU dies.
- COM2 -> the wire (or, with wire="virtio", a virtio-serial port named to the agent with
  `ktstr.wire=/dev/vport0p1`): a socketpair; QEMU gets one end as `-chardev socket,fd=N`. The
  connection exists before QEMU starts, so not one early byte is lost, and nothing on
  disk has to be cleaned up. A drain thread empties it so a slow reader never stalls
  the guest's UART (up to WIRE_BUFFER_CAP bytes, then back-pressure).
- shells -> a third socketpair on port 2 of the virtio-serial device (`ktstr.shell=
  /dev/vport0p2`), drained the same way: read_shell()/write_shell() (docs/shell.md).
- QMP -> another socketpair (`-mon chardev=qmp,mode=control`) for stop/cont/quit and
  the SHUTDOWN event that tells a guest power-off from a reset.
- RAM -> one `memory-backend-file` per NUMA node in /dev/shm, created by us with mode
  0600 and unlinked as soon as QEMU has opened it (after the QMP greeting), so a
  crashed host process leaves no file behind. We keep read-only mappings (ram()).

The command line and the guest-physical RAM layout are in qemucmd.py.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import secrets
import select
import shutil
import signal
import socket
import subprocess
import threading
import time
import weakref
from pathlib import Path

from ..errors import EngineError
from .base import WIRE_WRITE_TIMEOUT, BootSpec, RamRegion
from .qemucmd import (
    WIRE_KINDS,
    MiB,
    build_command,
    cpu_model,
    is_pvm,
    node_sizes_mib,
    ram_layout,
)
from .qmp import QmpClient

WIRE_BUFFER_CAP = 64 * MiB
START_TIMEOUT = 30.0  # QEMU start-up to QMP greeting (a loaded 2-core host is slow)
QUIT_GRACE = 2.0  # QMP quit -> SIGKILL
SHUTDOWN_REASONS = {
    "guest-shutdown": "poweroff",
    "guest-reset": "reset",
    "guest-panic": "panic",
    "host-qmp-quit": "killed",
    "host-signal": "killed",
}
PR_SET_PDEATHSIG = 1


# Resolved once in the parent: the child between fork and exec must not dlopen (another
# thread of ours may hold the loader's lock at fork time).
_prctl = ctypes.CDLL(None, use_errno=True).prctl


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: SIGKILL when the parent goes away.

    Linux delivers it when the *thread* that forked exits, so a Machine must be started
    from a thread that outlives it (the runner's main or worker thread does)."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


# ----------------------------------------------------------------------------- the wire

class _WireDrain:
    """Empties the host end of the wire socket into a buffer on a thread."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buf = bytearray()
        self._eof = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="ktstr-wire", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                while len(self._buf) >= WIRE_BUFFER_CAP:
                    self._cond.wait()
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                chunk = b""
            with self._cond:
                if not chunk:
                    self._eof = True
                else:
                    self._buf += chunk
                self._cond.notify_all()
            if not chunk:
                return

    def read(self, timeout: float) -> bytes | None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._buf and not self._eof:
                left = deadline - time.monotonic()
                if left <= 0:
                    return b""
                self._cond.wait(left)
            if not self._buf:
                return None
            data = bytes(self._buf)
            self._buf.clear()
            self._cond.notify_all()
            return data

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        with self._cond:
            self._buf.clear()
            self._cond.notify_all()
        self._thread.join(timeout=5)
        with contextlib.suppress(OSError):
            self.sock.close()


def _send_all(sock: socket.socket, lock: threading.Lock, data: bytes, what: str) -> None:
    """Non-blocking sends (the socket's own timeout must stay None: a drain thread is
    blocked in recv on it); EngineError when the guest takes nothing for
    WIRE_WRITE_TIMEOUT seconds or QEMU is gone."""
    view = memoryview(data)
    with lock:
        while view:
            try:
                sent = sock.send(view, socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL)
            except BlockingIOError:
                _, writable, _ = select.select([], [sock], [], WIRE_WRITE_TIMEOUT)
                if not writable:
                    raise EngineError(f"the guest took no {what} bytes for "
                                      f"{WIRE_WRITE_TIMEOUT:.0f}s") from None
                continue
            except OSError as e:
                raise EngineError(f"cannot write to the guest's {what}: "
                                  f"{e.strerror or e}") from e
            view = view[sent:]


# ----------------------------------------------------------------------------- machine

def _reap(proc: subprocess.Popen, ram_paths: list[Path], pidfd: int | None) -> None:
    """Finaliser: the QEMU process group is killed and reaped, RAM files are gone."""
    if pidfd is not None:
        with contextlib.suppress(OSError):
            os.close(pidfd)
    if proc.poll() is None:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
    for p in ram_paths:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


class QemuMachine:
    engine = "qemu"

    def __init__(self, boot: BootSpec, accel: str, qemu: str, cpu: str | None = None,
                 wire: str = "serial", shell: bool = True) -> None:
        self.accel = accel
        self.wire = wire
        self.boot = boot
        self._reason: str | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._maps: list[mmap.mmap] = []
        self._regions: list[RamRegion] = []
        workdir = Path(boot.workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        Path(boot.console_path).parent.mkdir(parents=True, exist_ok=True)
        shm = Path("/dev/shm") if Path("/dev/shm").is_dir() else workdir
        tag = f"ktstr-{os.getpid()}-{secrets.token_hex(4)}"
        self._node_mib = node_sizes_mib(boot.memory_mib, boot.topology.nodes)
        self._ram_paths = [shm / f"{tag}-m{i}" for i in range(boot.topology.nodes)]
        self._stderr_path = workdir / "qemu.stderr"
        fds: list[int] = []
        wire_host, wire_qemu = socket.socketpair()
        qmp_host, qmp_qemu = socket.socketpair()
        shell_host, shell_qemu = socket.socketpair() if shell else (None, None)
        qemu_fds = [wire_qemu.fileno(), qmp_qemu.fileno()]
        if shell_qemu is not None:
            qemu_fds.append(shell_qemu.fileno())
        try:
            for path, mib in zip(self._ram_paths, self._node_mib, strict=True):
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                fds.append(fd)
                os.ftruncate(fd, mib * MiB)
            self.command = build_command(
                qemu, boot, accel=accel, cpu=cpu or cpu_model(accel, is_pvm()),
                ram_paths=self._ram_paths, node_mib=self._node_mib,
                wire_fd=wire_qemu.fileno(), qmp_fd=qmp_qemu.fileno(), wire=wire,
                shell_fd=shell_qemu.fileno() if shell_qemu is not None else None)
            with open(self._stderr_path, "wb") as err:
                self._proc = subprocess.Popen(
                    self.command, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                    pass_fds=tuple(qemu_fds),
                    start_new_session=True, preexec_fn=_die_with_parent)
        except OSError as e:
            for fd in fds:
                os.close(fd)
            for p in self._ram_paths:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
            wire_host.close()
            qmp_host.close()
            if shell_host is not None:
                shell_host.close()
            raise EngineError(f"cannot start QEMU: {e.strerror or e}") from e
        finally:
            wire_qemu.close()
            qmp_qemu.close()
            if shell_qemu is not None:
                shell_qemu.close()
        self.pid: int | None = self._proc.pid
        try:
            self._pidfd: int | None = os.pidfd_open(self._proc.pid)
        except (AttributeError, OSError):
            self._pidfd = None
        self._finalizer = weakref.finalize(self, _reap, self._proc, list(self._ram_paths),
                                           self._pidfd)
        self._wire = _WireDrain(wire_host)
        self._wire_lock = threading.Lock()
        self._shell = _WireDrain(shell_host) if shell_host is not None else None
        self._shell_lock = threading.Lock()
        self._qmp = QmpClient(qmp_host)
        try:
            self._qmp.handshake(START_TIMEOUT)
            # QEMU has opened its backends before it greets: map ours, drop the names.
            for fd, mib in zip(fds, self._node_mib, strict=True):
                self._maps.append(mmap.mmap(fd, mib * MiB, mmap.MAP_SHARED, mmap.PROT_READ))
        except EngineError as e:
            self.close()
            raise EngineError(f"QEMU did not start: {self._stderr_tail() or e.message}",
                              "check the kernel, initramfs and QEMU installation") from e
        except OSError as e:  # mapping the RAM files failed
            self.close()
            raise EngineError(f"cannot map the guest's RAM: {e.strerror or e}",
                              "free memory or lower --memory") from e
        finally:
            for fd in fds:
                os.close(fd)
            for p in self._ram_paths:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
        for s in ram_layout([m * MiB for m in self._node_mib]):
            view = memoryview(self._maps[s.node])[s.offset:s.offset + s.size]
            self._regions.append(RamRegion(gpa=s.gpa, size=s.size, buf=view))

    # ------------------------------------------------------------------ protocol

    def read_wire(self, timeout: float) -> bytes | None:
        return self._wire.read(timeout)

    def write_wire(self, data: bytes) -> None:
        """Send all of `data`; EngineError if the guest takes none of it for
        WIRE_WRITE_TIMEOUT seconds or QEMU is gone."""
        _send_all(self._wire.sock, self._wire_lock, data, "wire")

    @property
    def has_shell(self) -> bool:
        return self._shell is not None

    def read_shell(self, timeout: float) -> bytes | None:
        """Bytes from the shells' port: b"" on timeout, None once it is closed or absent."""
        return self._shell.read(timeout) if self._shell is not None else None

    def write_shell(self, data: bytes) -> None:
        """Send all of `data` to the shells' port (EngineError as write_wire)."""
        if self._shell is None:
            raise EngineError("this VM has no shell port")
        _send_all(self._shell.sock, self._shell_lock, data, "shell port")

    def ram(self) -> list[RamRegion]:
        return list(self._regions)

    def pause(self) -> None:
        self._qmp.command("stop")

    def resume(self) -> None:
        self._qmp.command("cont")

    def hmp(self, command_line: str) -> str:
        """A human-monitor command's output (diagnostics: "info mtree -f", "info cpus")."""
        return self._qmp.hmp(command_line)

    def kill(self, reason: str = "killed") -> None:
        with self._lock:
            if self._proc.poll() is not None:
                return
            if self._reason is None:
                self._reason = reason
        if not self._qmp.closed:
            with contextlib.suppress(EngineError):
                self._qmp.command("quit", timeout=QUIT_GRACE)
        try:
            self._proc.wait(timeout=QUIT_GRACE)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=10)

    def wait(self, timeout: float) -> int | None:
        if self._proc.poll() is None and timeout > 0:
            # A pidfd wakes us the moment QEMU exits (Popen.wait(timeout) polls in steps
            # of up to 50 ms); fall back to Popen's polling where pidfds are missing.
            if self._pidfd is not None:
                with contextlib.suppress(OSError, ValueError):  # closed meanwhile
                    select.select([self._pidfd], [], [], timeout)
            else:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._proc.wait(timeout=timeout)
        rc = self._proc.poll()
        if rc is None:
            return None
        self._qmp.wait_closed(2.0)  # let the SHUTDOWN event arrive
        return rc

    def exit_reason(self) -> str | None:
        rc = self._proc.poll()
        if rc is None:
            return None
        if self._reason is not None:
            return self._reason
        ev = self._qmp.event("SHUTDOWN")
        if ev is not None:
            why = str((ev.get("data") or {}).get("reason", "shutdown"))
            return SHUTDOWN_REASONS.get(why, why)
        if rc < 0:
            return f"crashed: qemu killed by {signal.Signals(-rc).name}"
        tail = self._stderr_tail()
        return f"crashed: qemu exited with status {rc}" + (f": {tail}" if tail else "")

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.kill()
        self._wire.close()
        if self._shell is not None:
            self._shell.close()
        self._qmp.close()
        self._regions.clear()
        for m in self._maps:
            with contextlib.suppress(BufferError):  # a caller still holds a view
                m.close()
        self._pidfd = None  # closed by the finaliser
        self._finalizer()
        with contextlib.suppress(OSError):
            self.stderr_text = self._stderr_path.read_text(errors="replace")
            self._stderr_path.unlink()
        with contextlib.suppress(OSError):
            Path(self.boot.workdir).rmdir()

    def __enter__(self) -> QemuMachine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _stderr_tail(self) -> str:
        try:
            text = self._stderr_path.read_text(errors="replace")
        except OSError:
            text = getattr(self, "stderr_text", "")
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        return lines[-1] if lines else ""


class QemuEngine:
    """accel: "tcg" (default) or "kvm". wire: "serial" (COM2, default) or "virtio" (a
    virtio-serial port, ~200x faster under TCG; BootSpec.extra["wire"] overrides).
    cpu: the -cpu model (default: cpu_model(); BootSpec.extra["cpu"] overrides)."""

    name = "qemu"

    def __init__(self, accel: str = "tcg", qemu: str | None = None, cpu: str | None = None,
                 wire: str = "serial") -> None:
        if accel not in ("tcg", "kvm"):
            raise EngineError(f"unknown QEMU accelerator {accel!r}", "use tcg or kvm")
        if wire not in WIRE_KINDS:
            raise EngineError(f"unknown wire transport {wire!r}", "use serial or virtio")
        self.accel = accel
        self.cpu = cpu
        self.wire = wire
        self.qemu = qemu or shutil.which("qemu-system-x86_64") or ""
        if not self.qemu:
            raise EngineError("qemu-system-x86_64 not found",
                              "install the qemu-system-x86 package")

    def start(self, boot: BootSpec) -> QemuMachine:
        return QemuMachine(boot, self.accel, self.qemu, boot.extra.get("cpu", self.cpu),
                           boot.extra.get("wire", self.wire),
                           shell=boot.extra.get("shell", "1") != "0")
