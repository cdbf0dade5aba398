"""Control socket of a live run: `control.sock` in the run directory, JSON lines.

Request  {"cmd": "pause" | "resume" | "snapshot" | "stop" | "status"}
Reply    {"ok": true, ...} or {"ok": false, "error": "..."}

A stream command ({"cmd": "shell", ...}, docs/shell.md) keeps its connection: the handler
takes it over on a thread of its own, answers the reply line there and then carries frames.

The runner serves it (ControlServer, one thread, one request per connection line);
`ktstr pause|resume|snapshot|stop RUN` and the TUI are clients (send_command). A request
never blocks the runner for long: handlers get a deadline and report their own errors.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import KtstrError, UsageError
from ..rundir.layout import CONTROL

log = logging.getLogger(__name__)

COMMANDS = ("pause", "resume", "snapshot", "stop", "status")
STREAMS = ("shell",)
MAX_REQUEST = 4096

Handler = Callable[[dict[str, Any]], dict[str, Any]]
StreamHandler = Callable[[dict[str, Any], socket.socket], None]  # owns (and closes) the socket


class ControlServer:
    """Serves control.sock for one run until close(). Handlers run on the server thread."""

    def __init__(self, run_dir: Path, handlers: dict[str, Handler],
                 streams: dict[str, StreamHandler] | None = None) -> None:
        self.path = Path(run_dir) / CONTROL
        self.handlers = handlers
        self.streams = streams or {}
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with _short_path(self.path) as short:
            self._sock.bind(short)
        self._sock.listen(8)
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="ktstr-control", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(5.0)
            try:
                line = _read_line(conn, "request")
                stream = self._stream_handler(line)
                if stream is not None:
                    self._start_stream(stream, conn)
                    continue
                reply = self._handle(line)
            except (OSError, ValueError) as e:
                reply = {"ok": False, "error": f"bad request: {e}"}
            with conn, contextlib.suppress(OSError):
                conn.sendall((json.dumps(reply) + "\n").encode())

    def _stream_handler(self, line: bytes):
        try:
            req = json.loads(line.decode("utf-8"))
        except ValueError:
            return None
        if not isinstance(req, dict) or req.get("cmd") not in STREAMS:
            return None
        return req

    def _start_stream(self, req: dict[str, Any], conn: socket.socket) -> None:
        handler = self.streams.get(req["cmd"])
        if handler is None:
            with conn, contextlib.suppress(OSError):
                conn.sendall((json.dumps({"ok": False, "error": f"'{req['cmd']}' is not available "
                                          "for this run"}) + "\n").encode())
            return
        try:
            handler(req, conn)
        except Exception as e:  # noqa: BLE001 - the server thread must outlive any request
            if not isinstance(e, KtstrError):
                log.exception("control stream %r failed", req["cmd"])
            msg = e.one_line() if isinstance(e, KtstrError) else f"internal error: {e}"
            with conn, contextlib.suppress(OSError):
                conn.sendall((json.dumps({"ok": False, "error": msg}) + "\n").encode())

    def _handle(self, line: bytes) -> dict[str, Any]:
        req = json.loads(line.decode("utf-8"))
        if not isinstance(req, dict) or req.get("cmd") not in COMMANDS:
            return {"ok": False, "error": f"unknown command; use one of {', '.join(COMMANDS + STREAMS)}"}
        handler = self.handlers.get(req["cmd"])
        if handler is None:
            return {"ok": False, "error": f"'{req['cmd']}' is not available for this run"}
        try:
            return {"ok": True, **handler(req)}
        except KtstrError as e:
            return {"ok": False, "error": e.one_line()}

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._sock.close()
        self._thread.join(timeout=2)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


@contextlib.contextmanager
def _short_path(path: Path):
    """A socket address for `path` that fits sun_path's 108 bytes however deep the store is:
    /proc/self/fd/N/NAME through an O_PATH descriptor of the directory. (chdir would do it
    too, but the working directory is process-wide and the TUI and the runner are threaded.)"""
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def _read_line(conn: socket.socket, what: str) -> bytes:
    """One line without its newline, read a byte at a time so that whatever follows it (a
    stream's frames) stays in the socket. ValueError '<what> too long' past MAX_REQUEST bytes."""
    buf = bytearray()
    while not buf.endswith(b"\n"):
        b = conn.recv(1)
        if not b:
            break
        buf += b
        if len(buf) > MAX_REQUEST:
            raise ValueError(f"{what} too long")
    return bytes(buf).rstrip(b"\n")


def _connect(run_dir: Path, cmd: str, timeout: float, fields: dict[str, Any]) -> tuple[socket.socket, dict[str, Any]]:
    """Send one request to a live run and read its reply line: the still-open socket (with
    `timeout` set) and the reply (ok true). UsageError with a clear reason otherwise (no
    socket: the run has finished; refused; timed out; a bad reply; the run's own refusal),
    and the socket is closed then."""
    path = Path(run_dir) / CONTROL
    name = Path(run_dir).name
    if not path.exists():
        raise UsageError(f"run {name} is not live (no control socket)",
                         "the run has finished or was interrupted")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        try:
            with _short_path(path) as short:
                s.connect(short)
            s.sendall((json.dumps({"cmd": cmd, **fields}) + "\n").encode())
            line = _read_line(s, "reply")
        except (ConnectionRefusedError, FileNotFoundError) as e:
            raise UsageError(f"run {name} is not live (control socket refused)",
                             "the run has finished or was interrupted") from e
        except TimeoutError as e:
            raise UsageError(f"run {name} did not answer '{cmd}' within {timeout:.0f}s") from e
        except (OSError, ValueError) as e:
            raise UsageError(f"run {name}: {cmd} failed: {getattr(e, 'strerror', None) or e}") from e
        try:
            reply = json.loads(line.decode("utf-8"))
        except ValueError:
            reply = None
        if not isinstance(reply, dict):
            raise UsageError(f"run {name} sent a bad control reply")
        if not reply.get("ok"):
            raise UsageError(f"{cmd} refused: {reply.get('error', 'no reason given')}")
    except BaseException:
        s.close()
        raise
    return s, reply


def open_stream(run_dir: Path, cmd: str, timeout: float, **fields: Any) -> tuple[socket.socket, dict[str, Any]]:
    """Start a stream command on a live run: the connected socket (blocking, no timeout)
    and the reply (ok true). UsageError as send_command, with the run's own refusal."""
    s, reply = _connect(run_dir, cmd, timeout, fields)
    s.settimeout(None)
    return s, reply


def send_command(run_dir: Path, cmd: str, timeout: float = 30.0, **fields: Any) -> dict[str, Any]:
    """Send one command to a live run; returns the reply dict (ok true) or raises UsageError
    with a clear reason (no socket: the run has finished; refused; timed out)."""
    if cmd not in COMMANDS:
        raise UsageError(f"unknown control command '{cmd}'", f"use one of {', '.join(COMMANDS)}")
    s, reply = _connect(run_dir, cmd, timeout, fields)
    s.close()
    return reply
