"""The kernel's ftrace ring-buffer pages, decoded with the formats the kernel publishes.

The guest agent streams raw pages of each CPU's `trace_pipe_raw` (native/guest/trace.c)
and, once, the text of `events/header_page`, `events/header_event` and every enabled
event's `events/GROUP/NAME/format`. A page is

    u64 timestamp | local_t commit (data bytes; bit 31 = events were lost before this page,
                    bit 30 = their count is stored as a u64 right after the data) | data

and the data a run of events, each a u32 header `type_len:5 | time_delta:27` and a body:
type_len 1..28 = a record of type_len*4 bytes; 0 = a record whose length is the next u32
(that word included); 29 = padding (its length in the next u32; time_delta 0 = the rest
of the page); 30 = time extend (delta += next u32 << 27); 31 = an absolute time stamp.
The record starts with `common_type` (the event's ID) and the fields at the offsets its
format names.

Nothing from the guest is trusted: a malformed page stops at the bad byte and says where
(DecodeError in `PageDecoder.errors`), never raises.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

TYPE_PADDING, TYPE_TIME_EXTEND, TYPE_TIME_STAMP, TYPE_DATA_MAX = 29, 30, 31, 28
MISSED_EVENTS, MISSED_STORED = 1 << 31, 1 << 30
COMMIT_MASK = (1 << 30) - 1

# What the trace keeps of each sched event, as fixed-size records (tracefiles.RECORD):
KIND_SWITCH, KIND_WAKEUP, KIND_WAKEUP_NEW, KIND_WAKING, KIND_MIGRATE = 1, 2, 3, 4, 5
KIND_FORK, KIND_EXIT, KIND_SCX_EXIT, KIND_OTHER = 6, 7, 8, 9
KIND_NAMES = {KIND_SWITCH: "sched_switch", KIND_WAKEUP: "sched_wakeup",
              KIND_WAKEUP_NEW: "sched_wakeup_new", KIND_WAKING: "sched_waking",
              KIND_MIGRATE: "sched_migrate_task", KIND_FORK: "sched_process_fork",
              KIND_EXIT: "sched_process_exit", KIND_SCX_EXIT: "sched_ext_exit",
              KIND_OTHER: "other"}

# event name -> (kind, the fields that fill the record's pid, a, b, c; comm fields by pid)
_WANTED: dict[str, tuple[int, tuple[str, ...], tuple[tuple[str, str], ...]]] = {
    "sched_switch": (KIND_SWITCH, ("next_pid", "prev_pid", "prev_state", "prev_prio"),
                     (("prev_pid", "prev_comm"), ("next_pid", "next_comm"))),
    "sched_wakeup": (KIND_WAKEUP, ("pid", "target_cpu", "prio", ""), (("pid", "comm"),)),
    "sched_wakeup_new": (KIND_WAKEUP_NEW, ("pid", "target_cpu", "prio", ""), (("pid", "comm"),)),
    "sched_waking": (KIND_WAKING, ("pid", "target_cpu", "prio", ""), (("pid", "comm"),)),
    "sched_migrate_task": (KIND_MIGRATE, ("pid", "orig_cpu", "dest_cpu", "prio"),
                           (("pid", "comm"),)),
    "sched_process_fork": (KIND_FORK, ("child_pid", "parent_pid", "", ""),
                           (("child_pid", "child_comm"), ("parent_pid", "parent_comm"))),
    "sched_process_exit": (KIND_EXIT, ("pid", "prio", "", ""), (("pid", "comm"),)),
    "sched_ext_exit": (KIND_SCX_EXIT, ("", "kind", "", ""), ()),
}


class FormatError(ValueError):
    """A format file this decoder cannot use."""


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    offset: int
    size: int
    signed: bool

    @property
    def is_string(self) -> bool:
        return self.type.startswith("char") or self.type.startswith("__data_loc")


@dataclass(frozen=True)
class EventFormat:
    system: str
    name: str
    id: int
    fields: tuple[Field, ...]

    def field(self, name: str) -> Field | None:
        for f in self.fields:
            if f.name == name:
                return f
        return None


_FIELD = re.compile(r"field:\s*(.+?);\s*offset:(\d+);\s*size:(\d+);\s*signed:(\d+);")


def _fields(text: str) -> tuple[Field, ...]:
    out = []
    for m in _FIELD.finditer(text):
        decl, off, size, signed = m.group(1).strip(), int(m.group(2)), int(m.group(3)), m.group(4)
        decl = re.sub(r"\[[^\]]*\]$", "", decl).strip()
        ftype, _, name = decl.rpartition(" ")
        if not name:
            continue
        out.append(Field(name=name, type=ftype.strip() + ("[]" if "[" in m.group(1) else ""),
                         offset=off, size=size, signed=signed == "1"))
    return tuple(out)


def parse_event_format(system: str, text: str) -> EventFormat:
    """One `events/SYSTEM/NAME/format` file; FormatError when it has no name or ID."""
    name = re.search(r"^name:\s*(\S+)", text, re.M)
    ident = re.search(r"^ID:\s*(\d+)", text, re.M)
    if not name or not ident:
        raise FormatError(f"format of {system} has no name or ID line")
    return EventFormat(system=system, name=name.group(1), id=int(ident.group(1)),
                       fields=_fields(text))


@dataclass(frozen=True)
class PageLayout:
    """From `events/header_page`: where the timestamp, commit and data are."""

    commit_offset: int = 8
    commit_size: int = 8
    data_offset: int = 16

    @classmethod
    def parse(cls, text: str) -> PageLayout:
        f = {x.name: x for x in _fields(text)}
        if "commit" not in f or "data" not in f:
            return cls()
        return cls(commit_offset=f["commit"].offset, commit_size=f["commit"].size,
                   data_offset=f["data"].offset)


@dataclass(frozen=True)
class Formats:
    page: PageLayout
    events: dict[int, EventFormat]
    clock: str = "mono"
    enabled: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, d: dict) -> Formats:
        """The agent's TraceFormats payload (or the stored formats.json). Unusable event
        formats are left out (their events decode as unknown)."""
        files = d.get("formats") if isinstance(d.get("formats"), dict) else {}
        page = PageLayout.parse(str(files.get("header_page", "")))
        events = {}
        for key, text in files.items():
            if key in ("header_page", "header_event") or not isinstance(text, str):
                continue
            try:
                ev = parse_event_format(key.split("/")[0], text)
            except FormatError:
                continue
            events[ev.id] = ev
        strs = lambda k: tuple(str(x) for x in d.get(k) or () if isinstance(x, str))  # noqa: E731
        return cls(page=page, events=events, clock=str(d.get("clock", "mono")),
                   enabled=strs("enabled"), missing=strs("missing"))


@dataclass(frozen=True)
class DecodeError:
    cpu: int
    page: int  # index of the page in that CPU's stream
    offset: int  # byte offset inside the page
    reason: str


_INT = {(1, False): "B", (1, True): "b", (2, False): "H", (2, True): "h", (4, False): "I",
        (4, True): "i", (8, False): "Q", (8, True): "q"}
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_HDR = struct.Struct("<QQ")


@dataclass
class _Plan:
    kind: int
    unpack: object  # struct.Struct.unpack_from for (pid, a, b, c) where present
    slots: tuple[int, ...]  # which of pid, a, b, c each unpacked value fills
    comms: tuple[tuple[int, int, int], ...]  # (slot of the pid, comm offset, comm size)
    min_len: int
    name: str


def _plan(ev: EventFormat) -> _Plan:
    kind, want, comms = _WANTED.get(ev.name, (KIND_OTHER, ("", "", "", ""), ()))
    fmt, slots, min_len = "<", [], 8 if kind == KIND_OTHER else 4
    picks = []
    for slot, fname in enumerate(want):
        f = ev.field(fname) if fname else None
        if f is None or (f.size, f.signed) not in _INT:
            continue
        picks.append((f.offset, slot, _INT[(f.size, f.signed)], f.size))
    picks.sort()
    pos = 0
    for off, slot, code, size in picks:
        if off < pos:
            continue
        if off > pos:
            fmt += f"{off - pos}x"
        fmt += code
        pos = off + size
        slots.append(slot)
    min_len = max(min_len, pos)
    cm = []
    for pid_field, comm_field in comms:
        f = ev.field(comm_field)
        if f is None or not f.type.startswith("char") or pid_field not in want:
            continue
        cm.append((want.index(pid_field), f.offset, f.size))
        min_len = max(min_len, f.offset + f.size)
    return _Plan(kind=kind, unpack=struct.Struct(fmt).unpack_from, slots=tuple(slots),
                 comms=tuple(cm), min_len=min_len, name=ev.name)


@dataclass
class PageDecoder:
    """Decodes pages into (ts, kind, cpu, pid, a, b, c, event id) tuples via `sink`,
    remembering task names (comms) and what was lost. One per trace."""

    formats: Formats
    comms: dict[int, bytes] = field(default_factory=dict)
    errors: list[DecodeError] = field(default_factory=list)
    missed: dict[int, int] = field(default_factory=dict)  # cpu -> events the kernel lost
    missed_unknown: dict[int, int] = field(default_factory=dict)  # pages with an uncounted loss
    events: int = 0
    unknown_ids: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._plans = {i: _plan(ev) for i, ev in self.formats.events.items()}

    def decode_page(self, cpu: int, page_no: int, page: bytes | memoryview, out: list) -> int:
        """Append the page's events to `out` as tuples; returns the page's last time stamp
        (its header stamp when it is empty). A malformed page stops where it goes wrong."""
        lay = self.formats.page
        if len(page) < lay.data_offset:
            self.errors.append(DecodeError(cpu, page_no, 0, f"page of {len(page)} bytes"))
            return 0
        ts = _U64.unpack_from(page, 0)[0]
        commit = int.from_bytes(page[lay.commit_offset:lay.commit_offset + lay.commit_size],
                                "little")
        size = commit & COMMIT_MASK
        start = lay.data_offset
        end = start + size
        if commit & MISSED_EVENTS:
            if commit & MISSED_STORED and end + 8 <= len(page):
                self.missed[cpu] = self.missed.get(cpu, 0) + _U64.unpack_from(page, end)[0]
            else:
                self.missed_unknown[cpu] = self.missed_unknown.get(cpu, 0) + 1
        if end > len(page):
            self.errors.append(DecodeError(cpu, page_no, lay.commit_offset,
                                           f"commit {size} runs past the page's {len(page)} bytes"))
            end = len(page)
        plans, comms, u32 = self._plans, self.comms, _U32.unpack_from
        append = out.append
        pos, n = start, 0
        while pos + 4 <= end:
            h = u32(page, pos)[0]
            tl = h & 31
            delta = h >> 5
            if tl == 0:
                if pos + 8 > end:
                    break
                length = u32(page, pos + 4)[0]
                body, nxt = pos + 8, pos + 4 + length
                if length < 4:
                    self.errors.append(DecodeError(cpu, page_no, pos, f"record length {length}"))
                    break
            elif tl <= TYPE_DATA_MAX:
                body, nxt = pos + 4, pos + 4 + tl * 4
            elif tl == TYPE_PADDING:
                if delta == 0:
                    break  # the rest of the page is empty
                if pos + 8 > end:
                    break
                ts += delta
                pos = pos + 4 + u32(page, pos + 4)[0]
                continue
            elif tl == TYPE_TIME_EXTEND:
                if pos + 8 > end:
                    break
                ts += (u32(page, pos + 4)[0] << 27) + delta
                pos += 8
                continue
            else:  # absolute time stamp: the low 59 bits
                if pos + 8 > end:
                    break
                ts = (ts & ~((1 << 59) - 1)) | (u32(page, pos + 4)[0] << 27) | delta
                pos += 8
                continue
            if nxt > end:
                self.errors.append(DecodeError(cpu, page_no, pos,
                                               f"record of {nxt - pos} bytes runs past the data"))
                break
            ts += delta
            etype = page[body] | page[body + 1] << 8
            plan = plans.get(etype)
            if plan is None:
                self.unknown_ids[etype] = self.unknown_ids.get(etype, 0) + 1
            elif nxt - body >= plan.min_len:
                vals = plan.unpack(page, body)
                rec = [ts, plan.kind, cpu, 0, 0, 0, 0, etype]
                for slot, v in zip(plan.slots, vals, strict=True):
                    rec[3 + slot] = v
                if plan.kind == KIND_OTHER:
                    rec[3] = int.from_bytes(page[body + 4:body + 8], "little", signed=True)
                for slot, off, sz in plan.comms:  # the last name seen wins (exec renames)
                    comms[rec[3 + slot]] = bytes(page[body + off:body + off + sz])
                append(tuple(rec))
                n += 1
            pos = nxt
        self.events += n
        return ts


def comm_text(raw: bytes) -> str:
    """A task name from a record: up to the NUL, bad bytes replaced (guest data)."""
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")
