"""BTF kinds and the frozen values btf.py decodes records into (split from btf.py)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import KernelError

BTF_MAGIC = 0xEB9F

(INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC,
 FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64) = range(1, 20)
KIND_NAMES = {0: "void", INT: "int", PTR: "ptr", ARRAY: "array", STRUCT: "struct",
              UNION: "union", ENUM: "enum", FWD: "fwd", TYPEDEF: "typedef",
              VOLATILE: "volatile", CONST: "const", RESTRICT: "restrict", FUNC: "func",
              FUNC_PROTO: "func_proto", VAR: "var", DATASEC: "datasec", FLOAT: "float",
              DECL_TAG: "decl_tag", TYPE_TAG: "type_tag", ENUM64: "enum64"}
_MODIFIERS = frozenset({TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG})
_SIZED = frozenset({INT, STRUCT, UNION, ENUM, DATASEC, FLOAT, ENUM64})
_MAX_DEPTH = 64  # chains of typedefs / nested anonymous members


class BtfError(KernelError):
    """BTF that is missing, truncated or malformed, or a type/member it does not have."""


@dataclass(frozen=True)
class Member:
    name: str  # "" for an anonymous struct/union member
    type_id: int
    bit_offset: int  # from the start of the enclosing struct
    bit_size: int  # 0 unless a bitfield


@dataclass(frozen=True)
class BtfType:
    id: int
    kind: int
    name: str
    size: int = 0  # INT/STRUCT/UNION/ENUM/ENUM64/DATASEC/FLOAT
    type_id: int = 0  # PTR/TYPEDEF/modifiers/FUNC/VAR/DECL_TAG/FUNC_PROTO (return type)
    members: tuple[Member, ...] = ()  # STRUCT/UNION
    values: tuple[tuple[str, int], ...] = ()  # ENUM/ENUM64
    signed: bool = False  # INT (encoding), ENUM/ENUM64 (kind_flag)
    int_bits: int = 0  # INT: nr_bits
    int_offset: int = 0  # INT: bit offset
    elem_type: int = 0  # ARRAY
    index_type: int = 0  # ARRAY
    nelems: int = 0  # ARRAY
    params: tuple[tuple[str, int], ...] = ()  # FUNC_PROTO
    linkage: int = 0  # FUNC (vlen) / VAR
    vars: tuple[tuple[int, int, int], ...] = ()  # DATASEC: (type, offset, size)
    component_idx: int = -1  # DECL_TAG
    kind_flag: bool = False

    @property
    def kind_name(self) -> str:
        return KIND_NAMES.get(self.kind, str(self.kind))


@dataclass(frozen=True)
class Field:
    """A member reached by a dotted path: byte offset from the outer struct's start."""

    path: str
    offset: int  # bytes (bit_offset // 8)
    bit_offset: int  # bits from the outer struct's start
    bit_size: int  # 0 unless a bitfield
    type_id: int  # the member's declared type
    size: int  # bytes of the resolved type (0 for a bitfield's storage is not used)


def _cstr(strings: bytes, off: int) -> str:
    if off >= len(strings):
        raise BtfError(f"BTF string offset {off} is past the string section ({len(strings)})")
    end = strings.find(b"\0", off)
    if end < 0:
        raise BtfError(f"BTF string at {off} is not terminated")
    return strings[off:end].decode("utf-8", "replace")


def _record_len(kind: int, vlen: int) -> int:
    """Bytes of a type record after its 12-byte common header."""
    if kind in (INT, VAR, DECL_TAG):
        return 4
    if kind == ARRAY:
        return 12
    if kind in (STRUCT, UNION, DATASEC):
        return 12 * vlen
    if kind in (ENUM, FUNC_PROTO):
        return 8 * vlen
    if kind == ENUM64:
        return 12 * vlen
    if kind in (PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG):
        return 0
    raise BtfError(f"unknown BTF kind {kind}")


