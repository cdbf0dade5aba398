"""A terminal's end of a guest shell (docs/shell.md): `ktstr shell` and the TUI's shell key.

connect() asks a live run for a shell through its control socket; bridge() then moves
bytes between the caller's file descriptors and the session until the shell ends. On a
terminal the session has a pty in the guest: the local terminal goes to raw mode (so
Ctrl-C, Ctrl-Z and the like reach the guest's foreground job), window size changes are
sent on SIGWINCH, and Ctrl-] detaches (hangs the shell up). Without a terminal the guest
shell reads the input as a script (no prompt, no echo), its stdout and stderr stay
apart, and the end of the input ends it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import selectors
import signal
import socket
import struct
import termios
import threading
import tty as ttymod
from dataclasses import dataclass
from pathlib import Path

from ..guest.shellframes import close_frame, data_frames, eof_frame, parse, resize_frame
from ..guest.wire import Decoder, MsgType
from .control import open_stream

DETACH = 0x1D  # Ctrl-]
OPEN_TIMEOUT_S = 180.0  # a `ktstr shell` primary waits for the scheduler to be enabled
HELPERS_LINE = "helpers: scx scxmaps rqs help"


@dataclass(frozen=True)
class ShellEnd:
    code: int  # the shell's exit code (128 + signal; 255 when the run ended it)
    why: str
    detached: bool = False


def window_size(fd: int) -> tuple[int, int]:
    """(rows, cols) of the terminal on fd, (0, 0) when it is none."""
    try:
        rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
        return rows, cols
    except OSError:
        return 0, 0


def connect(run_dir: Path, *, tty: bool, rows: int = 0, cols: int = 0, term: str = "",
            primary: bool = False, by: str = "ktstr shell",
            timeout: float = OPEN_TIMEOUT_S) -> tuple[socket.socket, dict]:
    """A shell session on the live run in run_dir: (socket, reply with sid and pid).
    UsageError with the run's reason when there is none (ended, no shell port, ...)."""
    return open_stream(run_dir, "shell", timeout, tty=tty, rows=rows, cols=cols, term=term,
                       primary=primary, by=by)


def bridge(sock: socket.socket, *, stdin_fd: int = 0, stdout_fd: int = 1, stderr_fd: int = 2,
           tty: bool) -> ShellEnd:
    """Carry the session on `sock` until it ends; returns how it ended. Restores the
    terminal and the SIGWINCH handler it changed."""
    sel = selectors.PollSelector()  # epoll refuses regular files (`ktstr shell < script`)
    dec = Decoder(max_payload=1 << 20)
    saved = None
    wake_r = wake_w = -1
    old_winch = None
    if tty:
        with contextlib.suppress(termios.error):
            saved = termios.tcgetattr(stdin_fd)
            ttymod.setraw(stdin_fd)
        if threading.current_thread() is threading.main_thread():
            wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            old_winch = signal.signal(signal.SIGWINCH, lambda *_: _poke(wake_w))
            sel.register(wake_r, selectors.EVENT_READ, "winch")
    sel.register(stdin_fd, selectors.EVENT_READ, "in")
    sel.register(sock, selectors.EVENT_READ, "sock")
    try:
        while True:
            for key, _ in sel.select():
                if key.data == "winch":
                    with contextlib.suppress(OSError):
                        os.read(wake_r, 512)
                    rows, cols = window_size(stdin_fd)
                    if rows and cols:
                        _send(sock, resize_frame(0, rows, cols))
                elif key.data == "in":
                    try:
                        data = os.read(stdin_fd, 4096)
                    except OSError:
                        data = b""
                    if not data:
                        sel.unregister(stdin_fd)
                        if not _send(sock, eof_frame(0)):
                            return ShellEnd(255, "the run's control connection closed")
                        continue
                    if tty and DETACH in data:
                        before = data[:data.index(DETACH)]
                        if before:
                            _send(sock, data_frames(0, before))
                        _send(sock, close_frame(0))
                        return ShellEnd(255, "detached (Ctrl-])", detached=True)
                    if not _send(sock, data_frames(0, data)):
                        return ShellEnd(255, "the run's control connection closed")
                else:
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        data = b""
                    if not data:
                        return ShellEnd(255, "the run's control connection closed")
                    for frame in dec.feed(data):
                        msg = parse(frame)
                        if msg is None:
                            continue
                        if msg.type is MsgType.ShellData:
                            _write_all(stderr_fd if msg.stderr else stdout_fd, msg.data)
                        elif msg.type is MsgType.ShellExit:
                            return ShellEnd(msg.code, msg.why)
    finally:
        sel.close()
        if saved is not None:
            with contextlib.suppress(termios.error):
                termios.tcsetattr(stdin_fd, termios.TCSAFLUSH, saved)
        if old_winch is not None:
            signal.signal(signal.SIGWINCH, old_winch)
        for fd in (wake_r, wake_w):
            if fd >= 0:
                os.close(fd)
        with contextlib.suppress(OSError):
            sock.close()


def _poke(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, b"w")


def _send(sock: socket.socket, data: bytes) -> bool:
    try:
        sock.sendall(data)
        return True
    except OSError:
        return False


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            continue
        except OSError:  # the reader went away (a closed pipe): drop the rest
            return
        view = view[n:]
