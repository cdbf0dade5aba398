"""Shell frames: wire frames (wire.py) of the types 48-54, on the guest's shell port and on
a control-socket connection that carries a shell (docs/shell.md).

Every payload starts with the session id, a u32 little-endian. The C twin is
native/guest/shell.c. On a control connection the id is whatever the runner gave the
session; the runner rewrites it on the way to and from the guest.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .wire import FLAG_STDERR, Frame, MsgType, encode

FLAG_TTY = 1
FLAG_PRIMARY = 2
DATA_CHUNK = 4096  # host -> guest data frames carry at most this much (the guest reads 16 KiB)
TERM_MAX = 63
SHELL_TYPES = frozenset({MsgType.ShellOpen, MsgType.ShellOpened, MsgType.ShellData,
                         MsgType.ShellResize, MsgType.ShellEof, MsgType.ShellClose,
                         MsgType.ShellExit})

_SID = struct.Struct("<I")
_SIZE = struct.Struct("<HH")


def _clamp(n: int) -> int:
    return max(0, min(int(n), 0xFFFF))


def clean_term(term: str | None) -> str:
    """$TERM as the guest accepts it ([A-Za-z0-9._+-], 63 characters), or ""."""
    term = term or ""
    ok = all(c.isascii() and (c.isalnum() or c in "._+-") for c in term)
    return term[:TERM_MAX] if ok else ""


def open_frame(sid: int, rows: int, cols: int, *, tty: bool, primary: bool = False,
               term: str = "") -> bytes:
    flags = (FLAG_TTY if tty else 0) | (FLAG_PRIMARY if primary else 0)
    return encode(MsgType.ShellOpen, _SID.pack(sid) + _SIZE.pack(_clamp(rows), _clamp(cols))
                  + bytes([flags]) + clean_term(term).encode())


def data_frames(sid: int, data: bytes, *, stderr: bool = False) -> bytes:
    """ShellData frames for `data`, in DATA_CHUNK pieces."""
    flags = FLAG_STDERR if stderr else 0
    return b"".join(encode(MsgType.ShellData, _SID.pack(sid) + data[i:i + DATA_CHUNK], flags)
                    for i in range(0, len(data), DATA_CHUNK))


def resize_frame(sid: int, rows: int, cols: int) -> bytes:
    return encode(MsgType.ShellResize, _SID.pack(sid) + _SIZE.pack(_clamp(rows), _clamp(cols)))


def eof_frame(sid: int) -> bytes:
    return encode(MsgType.ShellEof, _SID.pack(sid))


def close_frame(sid: int) -> bytes:
    return encode(MsgType.ShellClose, _SID.pack(sid))


def opened_frame(sid: int, pid: int, why: str = "") -> bytes:
    return encode(MsgType.ShellOpened, _SID.pack(sid) + _SID.pack(pid) + why.encode())


def exit_frame(sid: int, code: int, why: str) -> bytes:
    return encode(MsgType.ShellExit, _SID.pack(sid) + _SID.pack(code & 0xFFFFFFFF) + why.encode())


@dataclass(frozen=True)
class ShellMsg:
    """One shell frame, parsed. `data` for ShellData; rows/cols for Open and Resize;
    pid (0 = refused) for Opened; code for Exit; why (text) for Opened and Exit."""

    type: MsgType
    sid: int
    data: bytes = b""
    stderr: bool = False
    rows: int = 0
    cols: int = 0
    tty: bool = False
    primary: bool = False
    term: str = ""
    pid: int = 0
    code: int = 0
    why: str = ""


def parse(frame: Frame) -> ShellMsg | None:
    """A shell frame's fields, or None for a frame that is not one or is too short
    (nothing from the guest is trusted: text is decoded with replacement)."""
    if frame.type not in SHELL_TYPES or len(frame.payload) < 4:
        return None
    (sid,) = _SID.unpack_from(frame.payload)
    rest = frame.payload[4:]
    t = frame.type
    if t is MsgType.ShellData:
        return ShellMsg(t, sid, data=rest, stderr=bool(frame.flags & FLAG_STDERR))
    if t in (MsgType.ShellOpen, MsgType.ShellResize):
        if len(rest) < 4 or (t is MsgType.ShellOpen and len(rest) < 5):
            return None
        rows, cols = _SIZE.unpack_from(rest)
        if t is MsgType.ShellResize:
            return ShellMsg(t, sid, rows=rows, cols=cols)
        return ShellMsg(t, sid, rows=rows, cols=cols, tty=bool(rest[4] & FLAG_TTY),
                        primary=bool(rest[4] & FLAG_PRIMARY),
                        term=clean_term(rest[5:].decode("ascii", "replace")))
    if t in (MsgType.ShellOpened, MsgType.ShellExit):
        if len(rest) < 4:
            return None
        (n,) = _SID.unpack_from(rest)
        why = rest[4:].decode("utf-8", "replace")[:300]
        if t is MsgType.ShellOpened:
            return ShellMsg(t, sid, pid=n, why=why)
        return ShellMsg(t, sid, code=n, why=why)
    return ShellMsg(t, sid)


def with_sid(msg: ShellMsg, sid: int) -> bytes:
    """`msg` encoded again under another session id (the runner's relabelling)."""
    t = msg.type
    if t is MsgType.ShellData:
        return data_frames(sid, msg.data, stderr=msg.stderr)
    if t is MsgType.ShellResize:
        return resize_frame(sid, msg.rows, msg.cols)
    if t is MsgType.ShellEof:
        return eof_frame(sid)
    if t is MsgType.ShellClose:
        return close_frame(sid)
    if t is MsgType.ShellOpened:
        return opened_frame(sid, msg.pid, msg.why)
    if t is MsgType.ShellExit:
        return exit_frame(sid, msg.code, msg.why)
    return open_frame(sid, msg.rows, msg.cols, tty=msg.tty, primary=msg.primary, term=msg.term)
