"""A reader for the kernel's BTF (the `.BTF` section of vmlinux): types, member offsets,
enum values. Nothing about a kernel's layout is hard-coded here or by its users: every
offset the monitor uses comes from the kernel's own BTF.

`Btf.from_bytes(data)` parses a raw BTF blob (header, type section, string section) and
indexes every type record (all kinds 1-19: int, ptr, array, struct, union, enum, fwd,
typedef, volatile, const, restrict, func, func_proto, var, datasec, float, decl_tag,
type_tag, enum64); records are decoded lazily into frozen `BtfType` values. Bad input
raises `BtfError` and nothing else. `btf_load.load_btf(vmlinux)` reads the section from the ELF and
caches the index (a pickle under paths.cache_dir()/"btf"/<build id>.pickle) so later runs
skip the type walk.

Lookups: `find(name, kind)`, `member(struct, "scx.local_dsq.nr")` (dotted paths through
nested and anonymous structs/unions; bitfields in `Field.bit_offset`/`bit_size`),
`size_of`, `resolve` (through typedef/const/volatile/restrict/type_tag), `enum(name)`,
`enumerator(name)` (a constant from any enum, anonymous ones included).
"""

from __future__ import annotations

import struct
from array import array

from .btf_types import (  # noqa: F401  (re-exported: btf.INT, btf.Field, ...)
    _MAX_DEPTH,
    _MODIFIERS,
    _SIZED,
    ARRAY,
    BTF_MAGIC,
    CONST,
    DATASEC,
    DECL_TAG,
    ENUM,
    ENUM64,
    FLOAT,
    FUNC,
    FUNC_PROTO,
    FWD,
    INT,
    KIND_NAMES,
    PTR,
    RESTRICT,
    STRUCT,
    TYPE_TAG,
    TYPEDEF,
    UNION,
    VAR,
    VOLATILE,
    BtfError,
    BtfType,
    Field,
    Member,
    _cstr,
    _record_len,
)

CACHE_VERSION = 1  # of the index cache (btf_load)


class Btf:
    """Parsed BTF: `types` are decoded on demand from the raw bytes."""

    def __init__(self, data: bytes, offsets: array, names: dict[str, tuple[int, ...]],
                 endian: str, type_start: int, strings: bytes) -> None:
        self._data = data
        self._offsets = offsets  # offsets[i] = byte offset of type id i+1's record
        self._names = names
        self._e = endian
        self._type_start = type_start
        self._strings = strings
        self._cache: dict[int, BtfType] = {}
        self._enumerators: dict[str, int] | None = None
        self._fields: dict[tuple[int, str], Field] = {}

    # ------------------------------------------------------------------ parsing

    @staticmethod
    def _header(data: bytes) -> tuple[str, int, int, int, int]:
        if len(data) < 24:
            raise BtfError(f"BTF is truncated: {len(data)} bytes, the header alone needs 24")
        endian = "<" if struct.unpack_from("<H", data, 0)[0] == BTF_MAGIC else ">"
        magic, version, _flags, hdr_len, type_off, type_len, str_off, str_len = \
            struct.unpack_from(endian + "HBBIIIII", data, 0)
        if magic != BTF_MAGIC:
            raise BtfError(f"not BTF: magic {magic:#06x}, expected {BTF_MAGIC:#06x}")
        if version != 1:
            raise BtfError(f"BTF version {version} is not supported (only 1)")
        if hdr_len < 24 or hdr_len > len(data):
            raise BtfError(f"BTF header length {hdr_len} is invalid")
        ts, ss = hdr_len + type_off, hdr_len + str_off
        if ts + type_len > len(data) or ss + str_len > len(data):
            raise BtfError(f"BTF is truncated: sections end past {len(data)} bytes")
        return endian, ts, type_len, ss, str_len

    @classmethod
    def from_bytes(cls, data: bytes) -> Btf:
        """Parse and index a raw BTF blob; BtfError on anything malformed."""
        data = bytes(data)
        endian, ts, tlen, ss, slen = cls._header(data)
        strings = data[ss:ss + slen]
        offsets = array("I")
        names: dict[str, list[int]] = {}
        hdr = struct.Struct(endian + "III")
        pos, end = ts, ts + tlen
        unpack = hdr.unpack_from
        tid = 0
        while pos < end:
            if pos + 12 > end:
                raise BtfError(f"BTF type {tid + 1} is truncated at byte {pos - ts}")
            name_off, info, _ = unpack(data, pos)
            kind = (info >> 24) & 0x1F
            vlen = info & 0xFFFF
            tid += 1
            offsets.append(pos)
            nxt = pos + 12 + _record_len(kind, vlen)
            if nxt > end:
                raise BtfError(f"BTF type {tid} ({KIND_NAMES.get(kind, kind)}) runs past "
                               "the type section")
            if name_off:
                if name_off >= slen:
                    raise BtfError(f"BTF type {tid} has a name offset past the strings")
                z = strings.find(b"\0", name_off)
                if z < 0:
                    raise BtfError(f"BTF type {tid} has an unterminated name")
                nm = strings[name_off:z].decode("utf-8", "replace")
                lst = names.get(nm)
                if lst is None:
                    names[nm] = [tid]
                else:
                    lst.append(tid)
            pos = nxt
        frozen = {k: tuple(v) for k, v in names.items()}
        return cls(data, offsets, frozen, endian, ts, strings)

    @property
    def nr_types(self) -> int:
        return len(self._offsets)

    def index_state(self) -> tuple:
        """What the cache stores (everything but the raw bytes)."""
        return (self._offsets.tobytes(), self._names, self._e, self._type_start)

    @classmethod
    def from_index(cls, data: bytes, state: tuple) -> Btf:
        raw_off, names, endian, ts = state
        endian2, ts2, _tl, ss, slen = cls._header(data)
        if (endian2, ts2) != (endian, ts):
            raise BtfError("BTF cache does not match the kernel's BTF")
        offsets = array("I")
        offsets.frombytes(raw_off)
        return cls(data, offsets, names, endian, ts, data[ss:ss + slen])

    # ------------------------------------------------------------------ types

    def type(self, tid: int) -> BtfType:
        """The decoded type `tid` (0 is void)."""
        t = self._cache.get(tid)
        if t is not None:
            return t
        if tid == 0:
            t = BtfType(0, 0, "void")
        elif not 0 < tid <= len(self._offsets):
            raise BtfError(f"BTF type id {tid} is out of range (1..{len(self._offsets)})")
        else:
            t = self._decode(tid)
        self._cache[tid] = t
        return t

    def _decode(self, tid: int) -> BtfType:
        d, e, s = self._data, self._e, self._strings
        pos = self._offsets[tid - 1]
        name_off, info, st = struct.unpack_from(e + "III", d, pos)
        kind, vlen, kflag = (info >> 24) & 0x1F, info & 0xFFFF, bool(info >> 31)
        name = _cstr(s, name_off) if name_off else ""
        p = pos + 12
        if kind == INT:
            (enc,) = struct.unpack_from(e + "I", d, p)
            return BtfType(tid, kind, name, size=st, signed=bool((enc >> 24) & 1),
                           int_offset=(enc >> 16) & 0xFF, int_bits=enc & 0xFF)
        if kind == ARRAY:
            elem, idx, n = struct.unpack_from(e + "III", d, p)
            return BtfType(tid, kind, name, elem_type=elem, index_type=idx, nelems=n)
        if kind in (STRUCT, UNION):
            mem = []
            for i in range(vlen):
                mo, mt, off = struct.unpack_from(e + "III", d, p + 12 * i)
                bits, boff = (off >> 24, off & 0xFFFFFF) if kflag else (0, off)
                mem.append(Member(_cstr(s, mo) if mo else "", mt, boff, bits))
            return BtfType(tid, kind, name, size=st, members=tuple(mem), kind_flag=kflag)
        if kind == ENUM:
            vals = []
            for i in range(vlen):
                vo, v = struct.unpack_from(e + ("Ii" if kflag else "II"), d, p + 8 * i)
                vals.append((_cstr(s, vo), v))
            return BtfType(tid, kind, name, size=st, values=tuple(vals), signed=kflag,
                           kind_flag=kflag)
        if kind == ENUM64:
            vals = []
            for i in range(vlen):
                vo, lo, hi = struct.unpack_from(e + "III", d, p + 12 * i)
                v = (hi << 32) | lo
                if kflag and v >= 1 << 63:
                    v -= 1 << 64
                vals.append((_cstr(s, vo), v))
            return BtfType(tid, kind, name, size=st, values=tuple(vals), signed=kflag,
                           kind_flag=kflag)
        if kind == FUNC_PROTO:
            params = []
            for i in range(vlen):
                po, pt = struct.unpack_from(e + "II", d, p + 8 * i)
                params.append((_cstr(s, po) if po else "", pt))
            return BtfType(tid, kind, name, type_id=st, params=tuple(params))
        if kind == VAR:
            (link,) = struct.unpack_from(e + "I", d, p)
            return BtfType(tid, kind, name, type_id=st, linkage=link)
        if kind == DATASEC:
            vs = tuple(struct.unpack_from(e + "III", d, p + 12 * i) for i in range(vlen))
            return BtfType(tid, kind, name, size=st, vars=vs)
        if kind == DECL_TAG:
            (ci,) = struct.unpack_from(e + "i", d, p)
            return BtfType(tid, kind, name, type_id=st, component_idx=ci)
        if kind == FUNC:
            return BtfType(tid, kind, name, type_id=st, linkage=vlen)
        if kind == FLOAT:
            return BtfType(tid, kind, name, size=st)
        # PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG
        return BtfType(tid, kind, name, type_id=st, kind_flag=kflag)

    def ids(self, name: str) -> tuple[int, ...]:
        return self._names.get(name, ())

    def find(self, name: str, kind: int | None = None) -> int:
        """The id of the type called `name` (of `kind` if given); BtfError when absent.
        A full definition wins over a forward declaration."""
        for tid in self._names.get(name, ()):
            t = self.type(tid)
            if kind is None and t.kind not in (FWD, FUNC, VAR, DECL_TAG):
                return tid
            if t.kind == kind:
                return tid
        what = f"{KIND_NAMES.get(kind, kind)} {name}" if kind else name
        raise BtfError(f"the kernel's BTF has no {what}")

    def struct(self, name: str) -> BtfType:
        for tid in self._names.get(name, ()):
            t = self.type(tid)
            if t.kind in (STRUCT, UNION):
                return t
        raise BtfError(f"the kernel's BTF has no struct {name}")

    def resolve(self, tid: int) -> int:
        """Follow typedef/const/volatile/restrict/type_tag to the underlying type."""
        for _ in range(_MAX_DEPTH):
            t = self.type(tid)
            if t.kind not in _MODIFIERS:
                return tid
            tid = t.type_id
        raise BtfError(f"BTF type {tid}: modifier chain is too long (a loop?)")

    def size_of(self, tid: int) -> int:
        """Size in bytes of a type (pointers are 8; arrays elem * n; void/func 0)."""
        scale = 1  # arrays of arrays multiply; walked in a loop so a self-referencing
        for _ in range(_MAX_DEPTH):  # array in corrupt BTF ends in BtfError, not recursion
            tid = self.resolve(tid)
            t = self.type(tid)
            if t.kind in _SIZED:
                return scale * t.size
            if t.kind == PTR:
                return scale * 8
            if t.kind == ARRAY:
                n = t.nelems
                if n == 0:
                    return 0
                scale *= n
                tid = t.elem_type
                continue
            if t.kind == VAR:
                tid = t.type_id
                continue
            return 0
        raise BtfError(f"BTF type {tid}: nesting is too deep")

    # ------------------------------------------------------------------ members

    def _find_member(self, tid: int, name: str, depth: int = 0) -> tuple[Member, int] | None:
        """(member, bit offset from tid's start), searching anonymous members too."""
        if depth > _MAX_DEPTH:
            return None
        t = self.type(self.resolve(tid))
        if t.kind not in (STRUCT, UNION):
            return None
        for m in t.members:
            if m.name == name:
                return m, m.bit_offset
        for m in t.members:
            if m.name == "":
                hit = self._find_member(m.type_id, name, depth + 1)
                if hit is not None:
                    return hit[0], m.bit_offset + hit[1]
        return None

    def member(self, struct_name: str | int, path: str) -> Field:
        """The member at dotted `path` of a struct/union (by name or id).

        `member("rq", "scx.local_dsq.nr")`: the byte offset from the start of `struct rq`.
        Anonymous structs/unions are looked through; `a[3]` indexes an array member.
        """
        tid = self.struct(struct_name).id if isinstance(struct_name, str) else struct_name
        key = (tid, path)
        hit = self._fields.get(key)
        if hit is not None:
            return hit
        cur, bits, bsize = tid, 0, 0
        for part in path.split("."):
            index = None
            if part.endswith("]") and "[" in part:
                part, _, idx = part[:-1].partition("[")
                try:
                    index = int(idx, 0)
                except ValueError as e:
                    raise BtfError(f"bad index in member path {path!r}") from e
            found = self._find_member(cur, part)
            if found is None:
                raise BtfError(f"{self._label(tid)} has no member {path!r} "
                               f"({self._label(cur)} lacks {part!r})")
            m, off = found
            bits += off
            bsize = m.bit_size
            cur = m.type_id
            if index is not None:
                at = self.type(self.resolve(cur))
                if at.kind != ARRAY:
                    raise BtfError(f"member {part!r} of {path!r} is not an array")
                if not 0 <= index < max(at.nelems, 1):
                    raise BtfError(f"index {index} is out of {part}[{at.nelems}]")
                bits += 8 * index * self.size_of(at.elem_type)
                cur = at.elem_type
        f = Field(path, bits // 8, bits, bsize, cur, 0 if bsize else self.size_of(cur))
        self._fields[key] = f
        return f

    def flat_members(self, tid: int, base: int = 0, depth: int = 0) -> list[Member]:
        """Members in declaration order with anonymous structs/unions expanded in place
        (bit offsets from the outer struct's start), as `pahole -C` lists them."""
        t = self.type(self.resolve(tid))
        out: list[Member] = []
        if t.kind not in (STRUCT, UNION) or depth > _MAX_DEPTH:
            return out
        for m in t.members:
            if m.name == "":
                out.extend(self.flat_members(m.type_id, base + m.bit_offset, depth + 1))
            else:
                out.append(Member(m.name, m.type_id, base + m.bit_offset, m.bit_size))
        return out

    def _label(self, tid: int) -> str:
        t = self.type(self.resolve(tid))
        return f"{t.kind_name} {t.name or '(anon)'}"

    # ------------------------------------------------------------------ enums

    def enum(self, name: str) -> dict[str, int]:
        """Enumerators of `enum name` (enum or enum64)."""
        for tid in self._names.get(name, ()):
            t = self.type(tid)
            if t.kind in (ENUM, ENUM64):
                return dict(t.values)
        raise BtfError(f"the kernel's BTF has no enum {name}")

    def enumerator(self, name: str) -> int:
        """The value of an enum constant from any enum (SCX_DSQ_LOCAL, SCX_ENQ_WAKEUP...)."""
        if self._enumerators is None:
            table: dict[str, int] = {}
            for tid in range(1, len(self._offsets) + 1):
                info = struct.unpack_from(self._e + "I", self._data,
                                          self._offsets[tid - 1] + 4)[0]
                if ((info >> 24) & 0x1F) in (ENUM, ENUM64):
                    for k, v in self.type(tid).values:
                        table.setdefault(k, v)
            self._enumerators = table
        try:
            return self._enumerators[name]
        except KeyError:
            raise BtfError(f"the kernel's BTF has no enum constant {name}") from None

    def type_name(self, tid: int) -> str:
        """A C-ish spelling of a type (for messages and tests)."""
        t = self.type(tid)
        if t.kind == PTR:
            return self.type_name(t.type_id) + " *"
        if t.kind in (STRUCT, UNION, ENUM, ENUM64, FWD) and t.name:
            kw = {STRUCT: "struct", UNION: "union", ENUM: "enum", ENUM64: "enum"}.get(t.kind)
            return f"{kw} {t.name}" if kw else t.name
        return t.name or t.kind_name
