"""The runner's side of the guest's shells (docs/shell.md).

A ShellHub belongs to one VM. A reader thread decodes the guest's shell port; each shell
a client asks for through the control socket (`{"cmd": "shell", ...}`) gets a session id,
a ShellOpen to the guest and, once the guest answers, a thread that forwards the client's
frames to the guest. The guest's frames go to the session's client. What the sessions
print (and, without a pty, what they were given) is appended to shell.log; opens and ends
are events.

Nothing here runs on the runner's main loop, the monitor or the watchdog: a client that
stops reading is dropped after CLIENT_SEND_TIMEOUT_S, a guest that stops answering refuses
the open after OPEN_TIMEOUT_S. When the VM is gone, close() ends every session with the
reason.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import KtstrError
from ..guest.shellframes import (
    ShellMsg,
    close_frame,
    exit_frame,
    open_frame,
    parse,
    with_sid,
)
from ..guest.wire import Decoder, MsgType

OPEN_TIMEOUT_S = 30.0
CLIENT_SEND_TIMEOUT_S = 10.0
LOG_CAP = 16 << 20
ROWS_COLS_MAX = 1000
PORT_GONE_GRACE_S = 10.0  # the port closed: the runner's close(why) is expected by then


@dataclass
class _Session:
    sid: int
    conn: socket.socket
    tty: bool
    primary: bool
    by: str
    size: str = ""  # "COLSxROWS" as asked for
    opened: threading.Event = field(default_factory=threading.Event)
    pid: int = 0
    refused: str = ""
    ended: bool = False
    send_lock: threading.Lock = field(default_factory=threading.Lock)
    replied: bool = False  # the reply line went out: frames may follow
    early: list[bytes] = field(default_factory=list)  # frames that came before the reply


class ShellLog:
    """shell.log: session bytes with a marker line whenever the session or direction
    changes; capped at LOG_CAP bytes (one line says where it stopped)."""

    def __init__(self, path: Path, t0: float) -> None:
        self.path, self.t0 = path, t0
        self._f = None
        self._lock = threading.Lock()
        self._last: tuple[int, str] | None = None
        self._size = 0
        self._capped = False

    def _write(self, data: bytes) -> None:
        if self._capped:
            return
        try:
            if self._f is None:
                self._f = open(self.path, "ab")  # noqa: SIM115 - held for the run
            if self._size + len(data) > LOG_CAP:
                self._capped = True
                data = b"\n--- shell.log reached its cap; the rest is not kept ---\n"
            self._f.write(data)
            self._f.flush()
            self._size += len(data)
        except OSError:
            self._capped = True

    def note(self, sid: int, text: str) -> None:
        with self._lock:
            nl = b"" if self._last is None else b"\n"
            self._write(nl + f"--- shell {sid} +{time.monotonic() - self.t0:.1f}s: {text} ---\n".encode())
            self._last = None

    def bytes(self, sid: int, direction: str, data: bytes) -> None:
        with self._lock:
            if self._last != (sid, direction):
                nl = b"" if self._last is None else b"\n"
                self._write(nl + f"--- shell {sid} {direction} ---\n".encode())
                self._last = (sid, direction)
            self._write(data)

    def close(self) -> None:
        with self._lock:
            if self._f is not None:
                with contextlib.suppress(OSError):
                    self._f.close()
                self._f = None


class ShellHub:
    def __init__(self, machine: Any, log: ShellLog,
                 event: Callable[..., None], open_timeout_s: float = OPEN_TIMEOUT_S) -> None:
        self.m = machine
        self.log = log
        self.event = event
        self.open_timeout_s = open_timeout_s
        self._lock = threading.Lock()
        self._sessions: dict[int, _Session] = {}
        self._next_sid = 1
        self._closed: str | None = None
        self._closed_event = threading.Event()
        self._reader = threading.Thread(target=self._read_guest, name="ktstr-shells", daemon=True)
        self._reader.start()

    # ------------------------------------------------------------------ clients
    def attach(self, conn: socket.socket, req: dict[str, Any], primary_timeout_s: float) -> None:
        """Take over `conn` (a control connection that asked for a shell) on a thread of
        its own; the reply line and the frames follow there."""
        threading.Thread(target=self._serve, args=(conn, req, primary_timeout_s),
                         name="ktstr-shell", daemon=True).start()

    def _serve(self, conn: socket.socket, req: dict[str, Any], primary_timeout_s: float) -> None:
        with conn:
            try:
                s = self._open(conn, req, primary_timeout_s)
            except KtstrError as e:
                _reply(conn, {"ok": False, "error": e.one_line()})
                return
            if s is None:
                return
            try:
                self._pump_client(s)
            finally:
                self._client_gone(s)

    def _open(self, conn: socket.socket, req: dict[str, Any], primary_timeout_s: float) -> _Session | None:
        tty = bool(req.get("tty", True))
        primary = bool(req.get("primary", False))
        rows, cols = _size(req.get("rows")), _size(req.get("cols"))
        by = str(req.get("by") or "a client")[:60]
        with self._lock:
            if self._closed is not None:
                _reply(conn, {"ok": False, "error": self._closed})
                return None
            sid = self._next_sid
            self._next_sid += 1
            s = _Session(sid, conn, tty, primary, by, size=f"{cols}x{rows}")
            self._sessions[sid] = s
        try:
            self.m.write_shell(open_frame(sid, rows, cols, tty=tty, primary=primary,
                                          term=str(req.get("term") or "")))
        except KtstrError as e:
            self._forget(sid)
            _reply(conn, {"ok": False, "error": f"cannot reach the guest's shell port: {e.one_line()}"})
            return None
        timeout = primary_timeout_s if primary else self.open_timeout_s
        if not s.opened.wait(timeout):
            self._forget(sid)
            with contextlib.suppress(KtstrError):
                self.m.write_shell(close_frame(sid))
            _reply(conn, {"ok": False, "error": self._closed or
                          f"the guest did not open a shell within {timeout:.0f}s"})
            return None
        if s.refused or not s.pid:
            self._forget(sid)
            why = s.refused or "no reason given"
            self.event("shell", action="refused", sid=sid, why=why, by=by)
            _reply(conn, {"ok": False, "error": f"the guest refused the shell: {why}"})
            return None
        self.event("shell", action="opened", sid=sid, pid=s.pid, tty=tty, primary=primary, by=by)
        conn.settimeout(CLIENT_SEND_TIMEOUT_S)
        with s.send_lock:  # the guest's first words may be here already: after the reply
            ok = _reply(conn, {"ok": True, "sid": sid, "pid": s.pid})
            s.replied = True
            try:
                for data in s.early if ok else ():
                    conn.sendall(data)
            except OSError:
                pass  # the client is gone: _pump_client sees it and _client_gone hangs up
            s.early.clear()
        return s

    def _pump_client(self, s: _Session) -> None:
        """Client -> guest, until the client hangs up or the session ends."""
        dec = Decoder(max_payload=1 << 16)
        while not s.ended:
            try:
                data = s.conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            for frame in dec.feed(data):
                msg = parse(frame)
                if msg is None or msg.type not in (MsgType.ShellData, MsgType.ShellResize,
                                                   MsgType.ShellEof, MsgType.ShellClose):
                    continue
                if msg.type is MsgType.ShellData and not s.tty:
                    self.log.bytes(s.sid, "input", msg.data)
                try:
                    self.m.write_shell(with_sid(msg, s.sid))
                except KtstrError:
                    return

    def _client_gone(self, s: _Session) -> None:
        if not s.ended:  # the client left first: hang the shell up
            with contextlib.suppress(KtstrError):
                self.m.write_shell(close_frame(s.sid))

    def _forget(self, sid: int) -> None:
        with self._lock:
            self._sessions.pop(sid, None)

    # ------------------------------------------------------------------ the guest
    def _read_guest(self) -> None:
        dec = Decoder(max_payload=1 << 20)
        while True:
            try:
                data = self.m.read_shell(0.5)
            except (KtstrError, OSError):
                data = None
            if data is None:
                # the runner says why the VM stopped (close()); this is a backstop
                if not self._closed_event.wait(PORT_GONE_GRACE_S):
                    self.close("the VM has stopped; the shell is closed")
                return
            for frame in dec.feed(data):
                msg = parse(frame)
                if msg is not None:
                    self._from_guest(msg, frame)

    def _from_guest(self, msg: ShellMsg, frame) -> None:
        with self._lock:
            s = self._sessions.get(msg.sid)
        if s is None:
            return
        if msg.type is MsgType.ShellOpened:
            s.pid, s.refused = msg.pid, msg.why if not msg.pid else ""
            if s.pid:  # here, on the reader thread: before any of the session's output
                self.log.note(s.sid, f"opened by {s.by}: {'pty' if s.tty else 'pipes'} "
                                     f"{s.size}, pid {s.pid}")
            s.opened.set()
        elif msg.type is MsgType.ShellData:
            self.log.bytes(s.sid, "output", msg.data)
            self._to_client(s, with_sid(msg, s.sid))
        elif msg.type is MsgType.ShellExit:
            self._end(s, msg.code, msg.why)

    def _to_client(self, s: _Session, data: bytes) -> None:
        if not s.opened.is_set():
            return
        with s.send_lock:
            if not s.replied:
                s.early.append(data)
                return
            try:
                s.conn.sendall(data)
            except OSError:  # gone, or not reading for CLIENT_SEND_TIMEOUT_S: drop it
                with contextlib.suppress(OSError):
                    s.conn.shutdown(socket.SHUT_RDWR)

    def _end(self, s: _Session, code: int, why: str) -> None:
        if s.ended:
            return
        s.ended = True
        self._forget(s.sid)
        if not s.opened.is_set():  # refused by the shutdown that ended the run
            s.refused = why
            s.opened.set()
            return
        self.log.note(s.sid, f"ended: {why}")
        self.event("shell", action="ended", sid=s.sid, code=code, why=why)
        self._to_client(s, exit_frame(s.sid, code, why))
        with contextlib.suppress(OSError):
            s.conn.shutdown(socket.SHUT_RDWR)

    # ------------------------------------------------------------------ the end
    def close(self, why: str) -> None:
        """The VM is gone: every session still open ends with `why` (code 255)."""
        with self._lock:
            if self._closed is None:
                self._closed = why
            self._closed_event.set()
            sessions = list(self._sessions.values())
        for s in sessions:
            self._end(s, 255, why)
        self.log.close()

    @property
    def sessions(self) -> int:
        with self._lock:
            return sum(1 for s in self._sessions.values() if s.opened.is_set())


def _size(v: Any) -> int:
    return v if isinstance(v, int) and 0 < v <= ROWS_COLS_MAX else 0


def _reply(conn: socket.socket, obj: dict[str, Any]) -> bool:
    try:
        conn.sendall((json.dumps(obj) + "\n").encode())
        return True
    except OSError:
        return False


# ---------------------------------------------------------------------- `ktstr shell` runs

SHELL_KIND = "shell"  # RunSpec.kind of a `ktstr shell` run
SHELL_TIMEOUT_S = 3600.0  # its default --timeout
HOLD_MARGIN_S = 20.0  # the guest ends the hold this long before the host's watchdog


def boot_allowance_s(vcpus: int) -> float:
    """What RunSpec.timeout adds to the duration for booting and stopping."""
    return 60.0 + 1.0 * vcpus


def hold_ms(timeout_s: float, vcpus: int) -> int:
    """How long the guest keeps a `ktstr shell` run going for its primary shell: the
    timeout less the boot allowance, so the guest ends it (and says so) before the
    host's watchdog would have to."""
    return max(0, round((timeout_s - boot_allowance_s(vcpus) - HOLD_MARGIN_S) * 1000))


def min_shell_timeout_s(vcpus: int) -> float:
    return boot_allowance_s(vcpus) + HOLD_MARGIN_S + 10.0
