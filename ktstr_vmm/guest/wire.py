"""Wire frames between the host and the guest agent (ktstr-init), over the guest's COM2.

A frame is a 16-byte little-endian header and a payload:

    magic u32 | type u16 | flags u16 | length u32 | crc32 u32 | payload[length]

`magic` is the bytes b"KTSW"; `crc32` is zlib's (IEEE 802.3) CRC32 of the payload. The C
twin is native/guest/wire.h; docs/wire.md documents every message and its payload.

`Decoder.feed()` takes whatever bytes arrived and returns the whole frames in them. It
never raises: garbage before a magic is skipped and counted, a frame whose CRC fails or
whose type is unknown is dropped and counted (and scanning resumes just after its magic,
so a good frame hidden inside a bad one's claimed length is still found), and a header
claiming more than MAX_PAYLOAD is dropped and counted. Typed payloads are in messages.py
(`parse_payload`).
"""

from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import dataclass

MAGIC_BYTES = b"KTSW"
MAGIC = int.from_bytes(MAGIC_BYTES, "little")
HEADER = struct.Struct("<IHHII")
HEADER_SIZE = HEADER.size  # 16
MAX_PAYLOAD = 1 << 20  # 1 MiB; the guest truncates longer payloads and sets FLAG_TRUNCATED

FLAG_STDERR = 0x0001  # SchedLog / ExecExit output line came from stderr
FLAG_TRUNCATED = 0x0002  # the sender cut the payload to fit MAX_PAYLOAD


class MsgType(enum.IntEnum):
    """Every message type; the numbers are the wire values (u16). See docs/wire.md."""

    TestResult = 1
    Exit = 2
    SchedExit = 3
    ScenarioStart = 4
    ScenarioEnd = 5
    ScenarioPause = 6
    ScenarioResume = 7
    Stdout = 8
    Stderr = 9
    SchedLog = 10
    Lifecycle = 11
    ExecExit = 12
    Dmesg = 13
    ProbeOutput = 14
    SnapshotRequest = 15
    SnapshotReply = 16
    Crash = 17
    KernelOpRequest = 18
    KernelOpReply = 19
    SysRdy = 20
    PayloadMetrics = 21
    RawPayloadOutput = 22
    Stimulus = 23
    Profraw = 24
    WprofTrace = 25
    # 32-39: the scheduling trace (native/guest/trace.c, ktstr_vmm/trace/files.py)
    TraceFormats = 32
    TracePages = 33
    TraceStats = 34
    BenchOutput = 40  # workloads block 40-47: a benchmark program's output
    # 48-55: shells, on their own port (docs/shell.md; payloads start with a u32 session id)
    ShellOpen = 48
    ShellOpened = 49
    ShellData = 50
    ShellResize = 51
    ShellEof = 52
    ShellClose = 53
    ShellExit = 54
    BpfProgs = 56  # 56-63: gauntlet / verifier sweep


_KNOWN_TYPES = frozenset(int(t) for t in MsgType)


@dataclass(frozen=True)
class Frame:
    type: MsgType
    payload: bytes
    flags: int = 0

    @property
    def truncated(self) -> bool:
        return bool(self.flags & FLAG_TRUNCATED)

    def __repr__(self) -> str:
        return f"Frame({self.type.name}, flags={self.flags:#x}, {len(self.payload)} bytes)"


def crc32(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def encode(type: MsgType | int, payload: bytes | str = b"", flags: int = 0) -> bytes:
    """One frame's bytes. A str payload is encoded as UTF-8. Raises ValueError for a
    payload over MAX_PAYLOAD or an unknown type (a host-side bug, not guest input)."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    if int(type) not in _KNOWN_TYPES:
        raise ValueError(f"unknown message type {type!r}")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes is over the {MAX_PAYLOAD} byte cap")
    if not 0 <= flags <= 0xFFFF:
        raise ValueError(f"flags {flags:#x} do not fit in u16")
    return HEADER.pack(MAGIC, int(type), flags, len(payload), crc32(payload)) + payload


class Decoder:
    """Incremental, resynchronising frame decoder. Feed it bytes; get whole frames.

    Counters (see stats()): frames, bytes_in, garbage_bytes (bytes skipped while looking
    for a magic), bad_crc, unknown_type, oversized (frames dropped for each reason),
    pending (bytes held waiting for the rest of a frame).
    """

    def __init__(self, max_payload: int = MAX_PAYLOAD) -> None:
        self.max_payload = max_payload
        self._buf = bytearray()
        self.frames = 0
        self.bytes_in = 0
        self.garbage_bytes = 0
        self.bad_crc = 0
        self.unknown_type = 0
        self.oversized = 0

    def stats(self) -> dict[str, int]:
        return {
            "frames": self.frames,
            "bytes_in": self.bytes_in,
            "garbage_bytes": self.garbage_bytes,
            "bad_crc": self.bad_crc,
            "unknown_type": self.unknown_type,
            "oversized": self.oversized,
            "pending": len(self._buf),
        }

    def feed(self, data: bytes) -> list[Frame]:
        if data:
            self.bytes_in += len(data)
            self._buf += data
        return self._drain(final=False)

    def finish(self) -> list[Frame]:
        """End of stream: a frame left incomplete is dropped (its bytes counted as
        garbage) and any whole frames behind it are still returned."""
        out = self._drain(final=True)
        self.garbage_bytes += len(self._buf)
        self._buf.clear()
        return out

    def _skip(self, n: int) -> None:
        del self._buf[:n]

    def _drain(self, final: bool) -> list[Frame]:
        out: list[Frame] = []
        buf = self._buf
        while True:
            start = buf.find(MAGIC_BYTES)
            if start < 0:
                # Keep a tail that may be the start of a magic split across feeds.
                keep = 0 if final else min(len(buf), len(MAGIC_BYTES) - 1)
                while keep and not MAGIC_BYTES.startswith(bytes(buf[len(buf) - keep:])):
                    keep -= 1
                self.garbage_bytes += len(buf) - keep
                self._skip(len(buf) - keep)
                return out
            if start:
                self.garbage_bytes += start
                self._skip(start)
            if len(buf) < HEADER_SIZE:
                if final:
                    self.garbage_bytes += len(MAGIC_BYTES)
                    self._skip(len(MAGIC_BYTES))
                    continue
                return out
            _magic, mtype, flags, length, crc = HEADER.unpack_from(buf, 0)
            if mtype not in _KNOWN_TYPES:
                self.unknown_type += 1
                self.garbage_bytes += len(MAGIC_BYTES)
                self._skip(len(MAGIC_BYTES))
                continue
            if length > self.max_payload:
                self.oversized += 1
                self.garbage_bytes += len(MAGIC_BYTES)
                self._skip(len(MAGIC_BYTES))
                continue
            end = HEADER_SIZE + length
            if len(buf) < end:
                if final:
                    self.garbage_bytes += len(MAGIC_BYTES)
                    self._skip(len(MAGIC_BYTES))
                    continue
                return out
            payload = bytes(buf[HEADER_SIZE:end])
            if crc32(payload) != crc:
                self.bad_crc += 1
                self.garbage_bytes += len(MAGIC_BYTES)
                self._skip(len(MAGIC_BYTES))
                continue
            self._skip(end)
            self.frames += 1
            out.append(Frame(MsgType(mtype), payload, flags))


def decode_all(data: bytes) -> list[Frame]:
    """Every good frame in a complete byte string (a recorded wire log)."""
    d = Decoder()
    return d.feed(data) + d.finish()
