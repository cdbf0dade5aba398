"""The kernel's generic data structures walked from the host, named after the kernel's own
macros and functions (include/linux/list.h, list_nulls.h, rhashtable.h, xarray.h, idr.h,
percpu-defs.h), the way drgn's helpers/linux/ are written. The domain readers are built on
these and hold no walking code of their own: the failure capture (monitor/capture.py: run
queue and DSQ lists, the `sch->dsq_hash` rhashtable, per-CPU bypass queues), the BPF map
reader (bpf_maps.py: `map_idr`, hash-map buckets, per-CPU values) and the monitor sampler's
per-CPU locations (monitor/sampler.py, resolved once, outside its per-sample hot path).

    list_for_each, list_for_each_entry   a list_head; `.truncated` / `.broken` once done
    hlist_nulls_for_each                 an hlist_nulls chain (ends at an odd "nulls" marker)
    rht_buckets, rht_for_each,           a `struct rhashtable`'s bucket_table, bucket by
    rhashtable_walk                      bucket (bit 0 of a bucket pointer is its lock)
    xa_for_each, idr_for_each            an XArray (multi-level xa_node trees) / an IDR
    per_cpu_offsets, per_cpu_ptr,        `__per_cpu_offset[]` and `ptr + __per_cpu_offset[cpu]`
    per_cpu_ptrs

Contract of every walker: `mem` is an introspect.memory.GuestMemory (anything with its
`read`/`u64`); nothing read from the guest is trusted and nothing raises on guest data - an
unreadable pointer ends the walk, the entries so far stand; every walk is bounded (entries,
visited nodes, depth, table size). The walkers are lazy: what the caller does not consume is
not read. Member offsets come from the caller, resolved from the kernel's BTF (the `Layout`
dataclasses below have `from_btf`; capture.CAPTURE_MEMBERS and bpf_maps.MapLayout resolve
the same members); the only layout assumed is the kernel's ABI: `next` is the first member
of list_head, hlist_nulls_node and rhash_head, and XArray's entry encoding (xarray.h).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .memory import BadRead, is_bad

LIST_LIMIT = 256  # entries a list walk yields before it stops as truncated
CHAIN_LIMIT = 1 << 16  # nodes of one hash chain
RHT_MAX_BUCKETS = 1 << 16  # a bigger bucket_table is taken for garbage
XA_CHUNK = 64  # XA_CHUNK_SIZE: slots per xa_node
XA_MAX_DEPTH = 11  # a node this deep (64-bit indices need 11 levels) ends that branch
XA_MAX_NODES = 4096  # xa_nodes one walk reads (a corrupt tree can point back at itself)
_U64_MASK = (1 << 64) - 1


def _u64(mem: Any, va: int) -> int | None:
    b = mem.read(va, 8)
    return None if is_bad(b) else int.from_bytes(b, "little")


def _u32(mem: Any, va: int) -> int | None:
    b = mem.read(va, 4)
    return None if is_bad(b) else int.from_bytes(b, "little")


# ---------------------------------------------------------------------------- list_head

class ListWalk:
    """One walk of a `struct list_head` (list_for_each / list_for_each_entry): iterate it
    once; then `truncated` says it stopped at its limit with more entries to come (the
    failure dump's `truncated` fields), `broken` that the list did not lead back to its
    head (a node seen twice, a NULL or unreadable `next`): what was yielded stands."""

    __slots__ = ("broken", "head", "limit", "member_offset", "mem", "truncated")

    def __init__(self, mem: Any, head: int, member_offset: int, limit: int) -> None:
        self.mem, self.head, self.member_offset, self.limit = mem, head, member_offset, limit
        self.truncated = False
        self.broken = False

    def __iter__(self) -> Iterator[int]:
        mem, head, off = self.mem, self.head, self.member_offset
        nxt = _u64(mem, head)
        seen = {head}
        n = 0
        while nxt and nxt not in seen:
            if n >= self.limit:
                self.truncated = True
                return
            seen.add(nxt)
            n += 1
            yield nxt - off
            nxt = _u64(mem, nxt)
        self.broken = nxt != head


def list_for_each(mem: Any, head: int, *, limit: int = LIST_LIMIT) -> ListWalk:
    """The `struct list_head` nodes after `head` (not `head` itself), in list order."""
    return ListWalk(mem, head, 0, limit)


def list_for_each_entry(mem: Any, head: int, member_offset: int, *,
                        limit: int = LIST_LIMIT) -> ListWalk:
    """The containers on the list at `head`: each node minus `member_offset` (the byte
    offset of the list_head member in the container, from BTF), in list order."""
    return ListWalk(mem, head, member_offset, limit)


# ---------------------------------------------------------------------------- nulls chains

def hlist_nulls_for_each(mem: Any, first: int, *, limit: int = CHAIN_LIMIT) -> Iterator[int]:
    """The nodes of an hlist_nulls chain from `first` (`hlist_nulls_head.first`): it ends at
    an odd "nulls" marker, NULL, an unreadable `next`, or after `limit` nodes."""
    node, n = first, 0
    while node and not node & 1 and n < limit:
        yield node
        n += 1
        nxt = mem.u64(node)
        node = 0 if is_bad(nxt) else nxt


@dataclass(frozen=True)
class RhtLayout:
    """Byte offsets of `struct rhashtable.tbl` and of `struct bucket_table`'s size, nest and
    buckets members."""

    tbl: int
    size: int
    nest: int
    buckets: int

    @classmethod
    def from_btf(cls, btf: Any) -> RhtLayout:
        """BtfError when this kernel lacks one of them."""
        m = btf.member
        return cls(tbl=m("rhashtable", "tbl").offset, size=m("bucket_table", "size").offset,
                   nest=m("bucket_table", "nest").offset,
                   buckets=m("bucket_table", "buckets").offset)


def rht_buckets(mem: Any, ht: int, L: RhtLayout) -> list[int]:
    """Each bucket's first `rhash_head` (lock bit 0 cleared; 0 for an empty bucket) in the
    current `bucket_table` (`ht->tbl`) of the `struct rhashtable` at `ht`, the bucket array
    read in one piece; [] for no table, a nested (huge) table, which is not walked, or an
    implausible size."""
    tbl = _u64(mem, ht + L.tbl)
    size = _u32(mem, tbl + L.size) if tbl else None
    nest = _u32(mem, tbl + L.nest) if tbl else None
    if not size or nest or size > RHT_MAX_BUCKETS:
        return []
    raw = mem.read(tbl + L.buckets, 8 * size)
    if is_bad(raw):
        return []
    return [v & ~1 for v in struct.unpack(f"<{size}Q", raw)]


def rht_for_each(mem: Any, first: int, *, limit: int = CHAIN_LIMIT) -> Iterator[int]:
    """The `rhash_head`s of one bucket's chain from `first` (it ends at an odd nulls
    marker, as an hlist_nulls chain does)."""
    return hlist_nulls_for_each(mem, first, limit=limit)


def rhashtable_walk(mem: Any, ht: int, L: RhtLayout, *,
                    limit: int = CHAIN_LIMIT) -> Iterator[int]:
    """Every `rhash_head` of the `struct rhashtable` at `ht` (its current `tbl`), bucket by
    bucket; the container is the node minus the rhash_head member's offset."""
    for first in rht_buckets(mem, ht, L):
        yield from rht_for_each(mem, first, limit=limit)


# ---------------------------------------------------------------------------- XArray / IDR

@dataclass(frozen=True)
class XaLayout:
    """Byte offsets of `struct xarray.xa_head` and `struct xa_node`'s shift and slots."""

    head: int
    shift: int
    slots: int

    @classmethod
    def from_btf(cls, btf: Any) -> XaLayout:
        m = btf.member
        return cls(head=m("xarray", "xa_head").offset, shift=m("xa_node", "shift").offset,
                   slots=m("xa_node", "slots").offset)


def xa_is_internal(entry: int) -> bool:
    return entry & 3 == 2


def xa_is_node(entry: int) -> bool:
    """An internal entry above 4096 is an `xa_node *` + 2 (below: sibling, retry, zero)."""
    return entry & 3 == 2 and entry > 4096


def xa_is_value(entry: int) -> bool:
    return bool(entry & 1)


def xa_for_each(mem: Any, xa: int, L: XaLayout, *,
                max_nodes: int = XA_MAX_NODES) -> Iterator[tuple[int, int]]:
    """(index, entry) of every present entry of the `struct xarray` at `xa`, in index
    order: internal entries (nodes, siblings, retry, zero) are not entries; value entries
    (bit 0 set) are. Each node is read once (shift and slots in one read); an unreadable
    node, one deeper than XA_MAX_DEPTH or past `max_nodes` read ends its branch only."""
    head = _u64(mem, xa + L.head)
    if head:
        yield from _xa_entries(mem, head, L, 0, 0, [max_nodes])


def _xa_entries(mem: Any, entry: int, L: XaLayout, index: int, depth: int,
                budget: list[int]) -> Iterator[tuple[int, int]]:
    if not entry & 2 or entry & 1:  # a pointer or a value entry (an odd one is never internal)
        yield index, entry
        return
    if entry <= 4096 or depth > XA_MAX_DEPTH or budget[0] <= 0:
        return  # sibling/retry/zero entry, or a corrupt tree
    budget[0] -= 1
    node = entry - 2
    lo = min(L.shift, L.slots)
    raw = mem.read(node + lo, L.slots + 8 * XA_CHUNK - lo)
    if is_bad(raw):
        return
    shift = raw[L.shift - lo]
    slots = struct.unpack_from(f"<{XA_CHUNK}Q", raw, L.slots - lo)
    for i, child in enumerate(slots):
        if child:
            yield from _xa_entries(mem, child, L, index + (i << shift), depth + 1, budget)


def idr_for_each(mem: Any, idr: int, idr_rt: int, L: XaLayout, *,
                 max_nodes: int = XA_MAX_NODES) -> Iterator[tuple[int, int]]:
    """(id, pointer) of every entry of the `struct idr` at `idr` (`idr_rt` = the byte offset
    of its XArray, from BTF), in id order; value entries (an IDR holds pointers) are
    skipped. Ids are XArray indices: `idr_base` (0 for DEFINE_IDR) is not added."""
    for index, entry in xa_for_each(mem, idr + idr_rt, L, max_nodes=max_nodes):
        if not entry & 1:
            yield index, entry


# ---------------------------------------------------------------------------- per-CPU

def per_cpu_offsets(mem: Any, per_cpu_offset: int, ncpus: int) -> list[int] | BadRead:
    """`__per_cpu_offset[0..ncpus)` read from the array at `per_cpu_offset` (its symbol)."""
    raw = mem.read(per_cpu_offset, 8 * ncpus)
    if is_bad(raw):
        return raw
    return list(struct.unpack(f"<{ncpus}Q", raw))


def per_cpu_ptr(ptr: int, cpu: int, offsets: Sequence[int]) -> int:
    """per_cpu_ptr(ptr, cpu): the address of `cpu`'s copy of the per-CPU `ptr` (a per-CPU
    symbol or an alloc_percpu() pointer): `ptr + __per_cpu_offset[cpu]`, mod 2**64."""
    return (ptr + offsets[cpu]) & _U64_MASK


def per_cpu_ptrs(ptr: int, offsets: Sequence[int], ncpus: int) -> list[int]:
    """per_cpu_ptr(ptr, cpu) for each possible CPU 0..ncpus-1 (for_each_possible_cpu)."""
    return [(ptr + offsets[cpu]) & _U64_MASK for cpu in range(ncpus)]
