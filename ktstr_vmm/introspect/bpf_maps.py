"""The guest's BPF maps read out of the frozen VM: the scheduler's state at its failure.

Every map the kernel holds is in the `map_idr` IDR (an XArray of `struct bpf_map *`).
For each one this reads its name, type and sizes, and renders the contents with the map's
own BTF (`map->btf`, the program's BTF blob, parsed with btf.py) when it has one, hex
otherwise:
  ARRAY          one entry: `value` (a `.bss`/`.data` map becomes one key per global
                 variable); more: `entries` [{"key": i, "value": ...}] for non-zero ones
  PERCPU_ARRAY   `percpu_entries` [{"key": i, "per_cpu": [per CPU]}] for non-zero ones
  HASH, LRU_HASH `entries` [{"key", "key_hex", "value", "value_hex"}] through the buckets
  PERCPU_HASH    `percpu_hash_entries` [{"key", "key_hex", "per_cpu": [per CPU]}]
(ktstr's MapDump shapes).
  anything else  `error` saying the type is not rendered
Layouts (bpf_map, bpf_array, bpf_htab, htab_elem, idr, xa_node, struct btf) come from the
kernel's BTF; the IDR, the hash chains and the per-CPU copies are walked with walkers.py.
Every walk is capped and every read may fail: a map that cannot be read carries its reason
in `error`; nothing raises.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import islice
from typing import Any

from .bpf_render import render
from .bpf_types import (
    ARRAY,
    HASH,
    LRU_HASH,
    LRU_PERCPU_HASH,
    MAP_TYPES,
    PERCPU_ARRAY,
    PERCPU_HASH,
)
from .btf import Btf
from .btf_types import BtfError
from .memory import GuestMemory, is_bad
from .walkers import XaLayout, hlist_nulls_for_each, idr_for_each, per_cpu_ptr

MAX_MAPS = 64
MAX_ENTRIES = 256  # rendered entries per map
MAX_VALUE_BYTES = 1 << 20  # bytes read for one map's values
MAX_BTF_BYTES = 8 << 20
MAX_BUCKET_BYTES = 4 << 20  # of a hash map's bucket array scanned for elements
CHUNK = 64 << 10
MAX_MAP_TYPE = 255


def _pointee_size(btf: Btf, s: str, path: str) -> int:
    """Size of what the pointer member `s.path` points to (`struct bucket` for buckets)."""
    ptr = btf.type(btf.resolve(btf.member(s, path).type_id))
    return btf.size_of(ptr.type_id)


# MapLayout field -> (kernel struct, member path): byte offsets from the kernel's BTF.
_OFFSETS = {
    "idr_rt": ("idr", "idr_rt"),
    "m_name": ("bpf_map", "name"), "m_type": ("bpf_map", "map_type"),
    "m_key_size": ("bpf_map", "key_size"), "m_value_size": ("bpf_map", "value_size"),
    "m_max_entries": ("bpf_map", "max_entries"), "m_btf": ("bpf_map", "btf"),
    "m_key_tid": ("bpf_map", "btf_key_type_id"), "m_value_tid": ("bpf_map", "btf_value_type_id"),
    "arr_elem_size": ("bpf_array", "elem_size"), "arr_value": ("bpf_array", "value"),
    "htab_buckets": ("bpf_htab", "buckets"), "htab_n_buckets": ("bpf_htab", "n_buckets"),
    "elem_key": ("htab_elem", "key"), "btf_data": ("btf", "data"),
    "btf_data_size": ("btf", "data_size"),
}


@dataclass(frozen=True)
class MapLayout:
    """Offsets from the kernel's BTF (see _OFFSETS; `xa`: the XArray's); `build` raises
    BtfError when one is missing."""

    idr_rt: int
    m_name: int
    m_type: int
    m_key_size: int
    m_value_size: int
    m_max_entries: int
    m_btf: int
    m_key_tid: int
    m_value_tid: int
    arr_elem_size: int
    arr_value: int
    htab_buckets: int
    htab_n_buckets: int
    elem_key: int
    btf_data: int
    btf_data_size: int
    bucket_size: int
    map_types: dict[int, str]
    xa: XaLayout

    @classmethod
    def build(cls, kbtf: Btf) -> MapLayout:
        try:
            types = {v: k.removeprefix("BPF_MAP_TYPE_")
                     for k, v in kbtf.enum("bpf_map_type").items()}
        except BtfError:
            types = dict(MAP_TYPES)
        offsets = {k: kbtf.member(st, path).offset for k, (st, path) in _OFFSETS.items()}
        return cls(**offsets, bucket_size=_pointee_size(kbtf, "bpf_htab", "buckets"),
                   map_types=types, xa=XaLayout.from_btf(kbtf))


@dataclass(frozen=True)
class MapDump:
    """One BPF map as read from the frozen guest: its rendered contents (any JSON: `value`
    for arrays, `entries` for hashes, `percpu_entries` for per-CPU maps) or why it could not
    be read. The failure dump stores it as rundir/dumps.FailureDumpMap (same fields)."""

    name: str
    map_type: int = 0
    value_size: int = 0
    max_entries: int = 0
    value: Any = None
    entries: Any = None
    percpu_entries: Any = None
    percpu_hash_entries: Any = None
    error: str | None = None


class MapReader:
    """Reads every BPF map of the frozen guest."""

    def __init__(self, mem: GuestMemory, kbtf: Btf, map_idr: int,
                 per_cpu_offsets: Sequence[int], ncpus: int) -> None:
        self.mem, self.map_idr = mem, map_idr
        self.L = MapLayout.build(kbtf)
        self.per_cpu_offsets, self.ncpus = list(per_cpu_offsets), ncpus
        self._btfs: dict[int, Btf | str] = {}

    # ------------------------------------------------------------------ walking

    def map_addresses(self) -> list[int]:
        """The first MAX_MAPS `struct bpf_map *` in `map_idr`, in id order."""
        maps = idr_for_each(self.mem, self.map_idr, self.L.idr_rt, self.L.xa)
        return [va for _id, va in islice(maps, MAX_MAPS)]

    def globals(self, max_bytes: int = 64 << 10) -> dict[str, Any]:
        """The scheduler's global variables now: each one-entry ARRAY map named
        `<obj>.bss` or `<obj>.data` (libbpf's global-data maps; not `.rodata`, which
        cannot change, nor libbpf-internal ones named `.data.*`) rendered by its BTF, by
        map name. Read while the guest runs: a value may be mid-update."""
        out: dict[str, Any] = {}
        for va in self.map_addresses():
            try:
                got = self._header(va)
                if got is None:
                    continue
                base, extra = got
                if (base.error or base.map_type != ARRAY or base.max_entries != 1
                        or base.value_size > max_bytes or base.name.startswith(".")
                        or not base.name.endswith((".bss", ".data"))):
                    continue
                m = self._contents(va, base, extra)
                if m.error is None:
                    out[m.name] = m.value
            except Exception:  # one unreadable map must not stop the others
                continue
        return out

    def read_all(self) -> tuple[MapDump, ...]:
        out = []
        for va in self.map_addresses():
            try:
                out.append(self.read_map(va))
            except Exception as e:  # garbage (a corrupt program BTF, say) costs one map,
                # never the dump
                out.append(MapDump(name=f"<map at {va:#x}>",
                                          error=f"could not be read: {type(e).__name__}: {e}"))
        return tuple(out)

    # ------------------------------------------------------------------ one map

    def _header(self, va: int) -> tuple[MapDump, tuple[int, int, int, int]] | None:
        """The map's MapDump shell (name, type, sizes; `error` set when the header
        is unreadable or implausible) and (key size, key type id, value type id, btf
        pointer); None when its name cannot be read at all."""
        L, mem = self.L, self.mem
        name = mem.cstr(va + L.m_name, 16)
        if is_bad(name):
            return None
        head = [mem.u32(va + o) for o in (L.m_type, L.m_key_size, L.m_value_size,
                                          L.m_max_entries, L.m_key_tid, L.m_value_tid)]
        btf_ptr = mem.u64(va + L.m_btf)
        if not name.isprintable() or not name:
            name = f"<map at {va:#x}>"
        if any(is_bad(x) for x in head) or is_bad(btf_ptr):
            return MapDump(name=name, error="map header unreadable"), (0, 0, 0, 0)
        mtype, ksize, vsize, max_entries, ktid, vtid = head
        base = MapDump(name=name, map_type=mtype, value_size=vsize,
                              max_entries=max_entries)
        if mtype > MAX_MAP_TYPE or ksize > MAX_VALUE_BYTES or vsize > MAX_VALUE_BYTES:
            base = _with(base, error="implausible map header (not a bpf_map?)")
        return base, (ksize, ktid, vtid, btf_ptr)

    def read_map(self, va: int) -> MapDump:
        got = self._header(va)
        if got is None:
            return MapDump(name=f"<map at {va:#x}>", error="unreadable map name")
        return self._contents(va, *got)

    def _contents(self, va: int, base: MapDump,
                  extra: tuple[int, int, int, int]) -> MapDump:
        """The map's contents rendered into its header shell (or `error` saying why not)."""
        L = self.L
        ksize, ktid, vtid, btf_ptr = extra
        if base.error:
            return base
        mtype, vsize = base.map_type, base.value_size
        btf = self._btf(btf_ptr) if btf_ptr else None
        if isinstance(btf, str):
            btf, btf_err = None, btf
        else:
            btf_err = None
        kv = _Typed(btf, ktid, ksize), _Typed(btf, vtid, vsize)
        try:
            if mtype == ARRAY:
                return self._array(va, base, kv[1])
            if mtype == PERCPU_ARRAY:
                return self._percpu_array(va, base, kv[1])
            if mtype in (HASH, LRU_HASH, PERCPU_HASH, LRU_PERCPU_HASH):
                return self._hash(va, base, *kv,
                                  percpu=mtype in (PERCPU_HASH, LRU_PERCPU_HASH))
        except _Unreadable as e:
            return _with(base, error=str(e) + (f" (map BTF: {btf_err})" if btf_err else ""))
        tname = L.map_types.get(mtype, str(mtype))
        return _with(base, error=f"map type {tname} is not rendered")

    def _btf(self, ptr: int) -> Btf | str:
        """The program BTF `struct btf` at `ptr` parsed (cached), or why not."""
        got = self._btfs.get(ptr)
        if got is None:
            got = self._btfs[ptr] = self._load_btf(ptr)
        return got

    def _load_btf(self, ptr: int) -> Btf | str:
        data, size = self.mem.u64(ptr + self.L.btf_data), self.mem.u32(ptr + self.L.btf_data_size)
        if is_bad(data) or is_bad(size) or not data or not 24 <= size <= MAX_BTF_BYTES:
            return "struct btf unreadable"
        raw = self.mem.read(data, size)
        if is_bad(raw):
            return f"BTF data unreadable: {raw.reason}"
        try:
            return Btf.from_bytes(raw)
        except BtfError as e:
            return e.message

    def _read(self, va: int, n: int, what: str) -> bytes:
        raw = self.mem.read(va, n)
        if is_bad(raw):
            raise _Unreadable(f"{what} unreadable: {raw.reason}")
        return raw

    def _array(self, va: int, base: MapDump, val: _Typed) -> MapDump:
        es = self.mem.u32(va + self.L.arr_elem_size)
        if is_bad(es) or es < val.size or es > MAX_VALUE_BYTES:
            raise _Unreadable("bpf_array.elem_size unreadable or implausible")
        n = min(base.max_entries, MAX_VALUE_BYTES // max(es, 1))
        if base.max_entries == 1:
            return _with(base, value=val.render(self._read(va + self.L.arr_value, val.size,
                                                           "array value"), 0))
        raw = self._read(va + self.L.arr_value, n * es, "array values")
        entries = [{"key": i, "value": val.render(raw, i * es)} for i in range(n)
                   if any(raw[i * es:i * es + val.size])][:MAX_ENTRIES]
        return _with(base, entries=entries)

    def _percpu(self, pptr: int, val: _Typed) -> list[Any]:
        out = []
        for cpu in range(self.ncpus):
            raw = self.mem.read(per_cpu_ptr(pptr, cpu, self.per_cpu_offsets), val.size)
            out.append(None if is_bad(raw) else val.render(raw, 0))
        return out

    def _percpu_array(self, va: int, base: MapDump, val: _Typed) -> MapDump:
        n = min(base.max_entries, MAX_ENTRIES * 4)
        raw = self._read(va + self.L.arr_value, 8 * n, "per-CPU pointers")
        entries = []
        for i in range(n):
            pptr = int.from_bytes(raw[8 * i:8 * i + 8], "little")
            values = self._percpu(pptr, val)
            if any(_nonzero(v) for v in values):
                entries.append({"key": i, "per_cpu": values})
                if len(entries) >= MAX_ENTRIES:
                    break
        return _with(base, percpu_entries=entries)

    def _bucket_heads(self, buckets: int, nb: int):
        """Each bucket's first element pointer, the bucket array read 64 KiB at a time and
        at most MAX_BUCKET_BYTES of it (a huge, sparse map must not keep the VM frozen)."""
        stride = self.L.bucket_size
        total = min(nb * stride, MAX_BUCKET_BYTES)
        for off in range(0, total, CHUNK):
            raw = self.mem.read(buckets + off, min(CHUNK, total - off))
            if is_bad(raw):
                return
            for b in range(0, len(raw) - 7, stride):
                yield int.from_bytes(raw[b:b + 8], "little")

    def _hash(self, va: int, base: MapDump, key: _Typed, val: _Typed,
              percpu: bool) -> MapDump:
        L, mem = self.L, self.mem
        buckets, nb = mem.u64(va + L.htab_buckets), mem.u32(va + L.htab_n_buckets)
        if is_bad(buckets) or is_bad(nb) or not buckets or not 0 < nb <= 1 << 24:
            raise _Unreadable("bpf_htab buckets unreadable or implausible")
        ksz = (key.size + 7) & ~7
        entries: list[dict[str, Any]] = []
        for first in self._bucket_heads(buckets, nb):
            for node in hlist_nulls_for_each(mem, first, limit=MAX_ENTRIES):
                raw = mem.read(node + L.elem_key, ksz + (8 if percpu else val.size))
                if is_bad(raw):
                    break
                e = {"key": key.render(raw, 0), "key_hex": raw[:key.size].hex()}
                if percpu:
                    pptr = int.from_bytes(raw[ksz:ksz + 8], "little")
                    e["per_cpu"] = self._percpu(pptr, val)
                else:
                    e["value"] = val.render(raw, ksz)
                    e["value_hex"] = raw[ksz:ksz + val.size].hex()
                entries.append(e)
                if len(entries) >= MAX_ENTRIES:
                    break
            if len(entries) >= MAX_ENTRIES:
                break
        return _with(base, **({"percpu_hash_entries": entries} if percpu
                              else {"entries": entries}))


@dataclass(frozen=True)
class _Typed:
    """A key or value type: BTF-rendered when the map has BTF; without it a 1/2/4/8-byte
    one is a little-endian unsigned integer (counters, ids), anything else hex."""

    btf: Btf | None
    tid: int
    size: int

    def render(self, raw: bytes, off: int) -> Any:
        if self.btf is not None and self.tid:
            v = render(self.btf, self.tid, raw, off)
            if v is not None:
                return v
        raw = raw[off:off + self.size]
        if self.size in (1, 2, 4, 8) and len(raw) == self.size:
            return int.from_bytes(raw, "little")
        return raw.hex()


class _Unreadable(Exception):
    pass


def _nonzero(v: Any) -> bool:
    if isinstance(v, dict):
        return any(_nonzero(x) for x in v.values())
    if isinstance(v, list):
        return any(_nonzero(x) for x in v)
    if isinstance(v, str):
        return bool(v.strip("0")) if all(c in "0123456789abcdef" for c in v) else bool(v)
    return bool(v)


def _with(base: MapDump, **kw: Any) -> MapDump:
    return replace(base, **kw)


def read_maps(mem: GuestMemory, kbtf: Btf | None, map_idr: int | None,
              per_cpu_offsets: Sequence[int], ncpus: int) -> tuple[MapDump, ...]:
    """Every BPF map in the guest; () when the kernel's BTF or `map_idr` is unknown."""
    if kbtf is None or map_idr is None:
        return ()
    try:
        reader = MapReader(mem, kbtf, map_idr, per_cpu_offsets, ncpus)
    except BtfError:
        return ()
    return reader.read_all()


DATA_SECTIONS = (".bss", ".data", ".rodata")


def active_obj_name(maps: Sequence[MapDump]) -> str | None:
    """The scheduler's BPF object name from its global-data maps (`scx_simple` for
    `scx_simple.bss`; libbpf names them `<obj>.<section>`), when exactly one object has
    them."""
    objs = {m.name.rsplit(".", 1)[0] for m in maps
            if any(m.name.endswith(sec) for sec in DATA_SECTIONS) and "." in m.name[1:]}
    return objs.pop() if len(objs) == 1 else None
