"""A small QMP (QEMU Machine Protocol) client over an already connected stream socket.

One reader thread parses QEMU's JSON lines: command replies are matched to callers by
"id", asynchronous events (SHUTDOWN, STOP, RESUME, ...) are kept in order. Commands
have deadlines; a QEMU that goes away makes every waiter return at once.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import socket
import threading
import time
from typing import Any

from ..errors import EngineError

log = logging.getLogger(__name__)

MAX_LINE = 16 << 20  # a reply longer than this is a broken QEMU, not data


class QmpClient:
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._sock.settimeout(None)
        self._cond = threading.Condition()
        self._replies: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        self._greeting: dict[str, Any] | None = None
        self._closed = False
        self.events: list[dict[str, Any]] = []
        self._thread = threading.Thread(target=self._reader, name="ktstr-qmp", daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- reader thread

    def _reader(self) -> None:
        buf = b""
        try:
            while True:
                try:
                    chunk = self._sock.recv(65536)
                except OSError:
                    break
                if not chunk:
                    break
                buf += chunk
                if len(buf) > MAX_LINE and b"\n" not in buf:
                    log.warning("QMP: line over %d bytes, closing", MAX_LINE)
                    break
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    self._dispatch(line)
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()

    def _dispatch(self, line: bytes) -> None:
        line = line.strip()
        if not line:
            return
        try:
            msg = json.loads(line)
        except ValueError:
            log.warning("QMP: unparsable line %r", line[:200])
            return
        if not isinstance(msg, dict):
            return
        with self._cond:
            if "QMP" in msg:
                self._greeting = msg
            elif "event" in msg:
                self.events.append(msg)
            elif "id" in msg:
                self._replies[str(msg["id"])] = msg
            self._cond.notify_all()

    # ---------------------------------------------------------------- API

    @property
    def closed(self) -> bool:
        return self._closed

    def handshake(self, timeout: float) -> dict[str, Any]:
        """Wait for QEMU's greeting and enter command mode; returns the greeting."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._greeting is None and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise EngineError(f"QEMU sent no QMP greeting within {timeout:.0f}s")
                self._cond.wait(left)
            if self._greeting is None:
                raise EngineError("QEMU closed its QMP socket before greeting")
            greeting = self._greeting
        self.command("qmp_capabilities", timeout=max(1.0, deadline - time.monotonic()))
        return greeting

    def command(self, name: str, arguments: dict[str, Any] | None = None,
                timeout: float = 10.0) -> Any:
        """Run one QMP command and return its "return" value; EngineError on an error
        reply, a closed socket or no reply within `timeout`."""
        ident = str(next(self._ids))
        msg: dict[str, Any] = {"execute": name, "id": ident}
        if arguments:
            msg["arguments"] = arguments
        data = json.dumps(msg).encode() + b"\n"
        try:
            self._sock.sendall(data)
        except OSError as e:
            raise EngineError(f"QMP {name}: QEMU is gone ({e.strerror or e})") from e
        deadline = time.monotonic() + timeout
        with self._cond:
            while ident not in self._replies:
                if self._closed:
                    raise EngineError(f"QMP {name}: QEMU closed the connection")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise EngineError(f"QMP {name}: no reply within {timeout:.0f}s")
                self._cond.wait(left)
            reply = self._replies.pop(ident)
        if "error" in reply:
            err = reply["error"]
            desc = err.get("desc", err) if isinstance(err, dict) else err
            raise EngineError(f"QMP {name} failed: {desc}")
        return reply.get("return")

    def hmp(self, command_line: str, timeout: float = 10.0) -> str:
        """A human monitor command (e.g. "info mtree -f") through QMP; its text output."""
        out = self.command("human-monitor-command", {"command-line": command_line}, timeout)
        return out if isinstance(out, str) else ""

    def event(self, name: str) -> dict[str, Any] | None:
        """The first event called `name` seen so far."""
        with self._cond:
            return next((e for e in self.events if e.get("event") == name), None)

    def wait_closed(self, timeout: float) -> bool:
        """Wait until QEMU has closed the socket (it does so as it exits)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)
        with contextlib.suppress(OSError):
            self._sock.close()
