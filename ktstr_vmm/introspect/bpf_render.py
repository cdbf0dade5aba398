"""A BPF map value as JSON, typed by the map's own BTF (the scheduler's program BTF).

`render(btf, tid, buf, off)` turns the bytes of one value into plain JSON: objects for
structs, unions and data sections (`.bss`/`.data` maps: one key per global variable),
lists for arrays, strings for char arrays that hold text, enumerator names for enums,
`"0x..."` for pointers, numbers for the rest. Bitfields are extracted. It never raises on
the bytes: a value cut short renders what is there and marks the rest `null`.
"""

from __future__ import annotations

import struct
from typing import Any

from .btf import Btf
from .btf_types import (
    ARRAY,
    DATASEC,
    ENUM,
    ENUM64,
    FLOAT,
    INT,
    PTR,
    STRUCT,
    UNION,
    VAR,
    BtfError,
)

MAX_DEPTH = 24
MAX_ELEMS = 512  # array elements rendered; longer arrays end with a note


def _uint(buf: bytes, off: int, size: int) -> int | None:
    if off < 0 or off + size > len(buf):
        return None
    return int.from_bytes(buf[off:off + size], "little")


def _text(raw: bytes) -> str | None:
    """A char array as text when it holds text (up to its NUL: printable, newlines and
    tabs allowed), else None."""
    s = raw.split(b"\0", 1)[0]
    try:
        text = s.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if text.replace("\n", "").replace("\t", "").isprintable() else None


def render(btf: Btf, tid: int, buf: bytes, off: int = 0, depth: int = 0) -> Any:
    """The value of BTF type `tid` at `buf[off:]` as JSON."""
    if depth > MAX_DEPTH:
        return "<nested too deeply>"
    try:
        rt = btf.resolve(tid)
        t = btf.type(rt) if rt else None
    except BtfError:
        return None
    if t is None:
        return None
    if t.kind == INT:
        return _render_int(t, buf, off)
    if t.kind == PTR:
        v = _uint(buf, off, 8)
        return None if v is None else f"{v:#x}"
    if t.kind in (ENUM, ENUM64):
        v = _uint(buf, off, t.size)
        if v is None:
            return None
        if t.signed and v >= 1 << (8 * t.size - 1):
            v -= 1 << (8 * t.size)
        return next((name for name, val in t.values if val == v), v)
    if t.kind == FLOAT:
        if t.size in (4, 8) and off + t.size <= len(buf):
            return struct.unpack_from("<f" if t.size == 4 else "<d", buf, off)[0]
        return None
    if t.kind == ARRAY:
        return _render_array(btf, t, buf, off, depth)
    if t.kind in (STRUCT, UNION):
        return _render_struct(btf, t, buf, off, depth)
    if t.kind == DATASEC:
        out: dict[str, Any] = {}
        for var_tid, var_off, _size in t.vars:
            try:
                var = btf.type(var_tid)
            except BtfError:
                continue
            if var.kind == VAR:
                out[var.name] = render(btf, var.type_id, buf, off + var_off, depth + 1)
        return out
    return None


def _render_int(t: Any, buf: bytes, off: int) -> Any:
    size = t.size
    if size > 16:
        return None
    v = _uint(buf, off, size)
    if v is None:
        return None
    if t.int_bits and t.int_bits < 8 * size or t.int_offset:
        v = (v >> t.int_offset) & ((1 << t.int_bits) - 1)
    if t.signed and v >= 1 << (8 * size - 1):
        v -= 1 << (8 * size)
    if t.name in ("_Bool", "bool"):
        return bool(v)
    return v


def _render_array(btf: Btf, t: Any, buf: bytes, off: int, depth: int) -> Any:
    try:
        et_id = btf.resolve(t.elem_type)
        et = btf.type(et_id)
        es = btf.size_of(t.elem_type)
    except BtfError:
        return None
    if et.kind == INT and es == 1 and t.nelems:
        raw = buf[off:off + t.nelems]
        text = _text(raw)
        if text is not None:
            return text
    if es <= 0:
        return []
    n = min(t.nelems, MAX_ELEMS)
    out = [render(btf, t.elem_type, buf, off + i * es, depth + 1) for i in range(n)]
    if t.nelems > n:
        out.append(f"<{t.nelems - n} more elements>")
    return out


def _render_struct(btf: Btf, t: Any, buf: bytes, off: int, depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, m in enumerate(t.members):
        if m.bit_size:
            byte = off + m.bit_offset // 8
            shift = m.bit_offset % 8
            raw = _uint(buf, byte, (shift + m.bit_size + 7) // 8)
            value: Any = None if raw is None else (raw >> shift) & ((1 << m.bit_size) - 1)
        else:
            value = render(btf, m.type_id, buf, off + m.bit_offset // 8, depth + 1)
        if not m.name and isinstance(value, dict):
            out.update(value)  # anonymous struct/union: its members belong to this level
        else:
            out[m.name or f"<anon {i}>"] = value
    return out
