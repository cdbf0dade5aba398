"""The generic kernel walkers (introspect/walkers.py) over synthetic guest memory built here:
list_head (normal, empty, capped, cyclic, broken), hlist_nulls chains, an rhashtable's
buckets, XArrays (empty, one entry, two levels, corrupt) and IDRs, per-CPU pointers. Struct
offsets come from the real kernel's BTF, as the domain readers get them."""

from __future__ import annotations

import struct

import pytest

from ktstr_vmm.engine.base import RamRegion
from ktstr_vmm.introspect import btf_load
from ktstr_vmm.introspect.memory import GuestMemory, is_bad
from ktstr_vmm.introspect.walkers import (
    RhtLayout,
    XaLayout,
    hlist_nulls_for_each,
    idr_for_each,
    list_for_each,
    list_for_each_entry,
    per_cpu_offsets,
    per_cpu_ptr,
    per_cpu_ptrs,
    rhashtable_walk,
    rht_buckets,
    rht_for_each,
    xa_for_each,
)

POB = 0xFFFF888000000000
SIZE = 0x100000


class Ram:
    """A guest's RAM (SIZE bytes at physical 0) seen through the direct map at POB."""

    def __init__(self) -> None:
        self.buf = bytearray(SIZE)
        self.mem = GuestMemory([RamRegion(0, SIZE, memoryview(self.buf))], [(0, SIZE - 1)],
                               page_offset_base=POB)

    def q(self, pa: int, *vals: int) -> None:
        struct.pack_into(f"<{len(vals)}Q", self.buf, pa, *vals)

    def link(self, head: int, nodes: list[int], close: bool = True) -> None:
        """list_head `next` pointers head -> nodes... (-> head when `close`)."""
        seq = [head, *nodes]
        for a, b in zip(seq, seq[1:] + ([head] if close else []), strict=False):
            self.q(a, POB + b)


@pytest.fixture(scope="module")
def kbtf(kernel):
    return btf_load.load_btf(kernel.vmlinux, kernel.build_id)


# ---------------------------------------------------------------------------- list_head

def test_list_for_each_entry_yields_containers_in_order():
    ram = Ram()
    nodes = [0x2000 + 0x100 * i + 0x18 for i in range(3)]
    ram.link(0x1000, nodes)
    walk = list_for_each_entry(ram.mem, POB + 0x1000, 0x18)
    assert list(walk) == [POB + 0x2000 + 0x100 * i for i in range(3)]
    assert not walk.truncated and not walk.broken
    assert list(list_for_each(ram.mem, POB + 0x1000)) == [POB + n for n in nodes]


def test_empty_list_is_complete():
    ram = Ram()
    ram.link(0x1000, [])
    walk = list_for_each(ram.mem, POB + 0x1000)
    assert list(walk) == [] and not walk.truncated and not walk.broken


def test_a_list_longer_than_its_limit_is_truncated():
    ram = Ram()
    ram.link(0x1000, [0x2000 + 0x20 * i for i in range(11)])
    walk = list_for_each(ram.mem, POB + 0x1000, limit=10)
    assert len(list(walk)) == 10 and walk.truncated and not walk.broken
    exact = list_for_each(ram.mem, POB + 0x1000, limit=11)
    assert len(list(exact)) == 11 and not exact.truncated  # all there: not truncated


def test_a_cycle_that_misses_the_head_ends_truncated_or_broken():
    """A corrupt list whose tail loops back into itself (never to the head) cannot run
    forever: a cycle longer than the limit stops there, truncated; a shorter one ends at
    the first node seen twice, broken, with each node yielded once."""
    ram = Ram()
    nodes = [0x2000 + 0x20 * i for i in range(300)]
    ram.link(0x1000, nodes, close=False)
    ram.q(nodes[-1], POB + nodes[5])
    walk = list_for_each(ram.mem, POB + 0x1000, limit=256)
    assert len(list(walk)) == 256 and walk.truncated
    ram.link(0x1000, nodes[:4], close=False)
    ram.q(nodes[3], POB + nodes[1])
    walk = list_for_each(ram.mem, POB + 0x1000, limit=256)
    assert list(walk) == [POB + n for n in nodes[:4]]
    assert walk.broken and not walk.truncated


def test_a_null_or_unreadable_next_ends_the_walk_broken():
    ram = Ram()
    ram.link(0x1000, [0x2000, 0x3000], close=False)  # 0x3000's next is 0 (NULL)
    walk = list_for_each(ram.mem, POB + 0x1000)
    assert list(walk) == [POB + 0x2000, POB + 0x3000] and walk.broken
    ram.q(0x3000, POB + SIZE + 0x1000)  # past the end of RAM
    walk = list_for_each(ram.mem, POB + 0x1000)
    assert len(list(walk)) == 3 and walk.broken and not walk.truncated
    head_unreadable = list_for_each(ram.mem, POB + SIZE)
    assert list(head_unreadable) == [] and head_unreadable.broken


# ---------------------------------------------------------------------------- nulls chains

def test_hlist_nulls_chain_ends_at_the_nulls_marker():
    ram = Ram()
    ram.q(0x2000, POB + 0x2100)
    ram.q(0x2100, POB + 0x2200)
    ram.q(0x2200, (7 << 1) | 1)  # NULLS_MARKER(7)
    assert list(hlist_nulls_for_each(ram.mem, POB + 0x2000)) == [
        POB + 0x2000, POB + 0x2100, POB + 0x2200]
    assert list(hlist_nulls_for_each(ram.mem, POB + 0x2000, limit=2)) == [
        POB + 0x2000, POB + 0x2100]
    assert list(hlist_nulls_for_each(ram.mem, 0)) == []
    assert list(hlist_nulls_for_each(ram.mem, 3)) == []  # an empty bucket's marker
    ram.q(0x2000, POB + 0x2000)  # a node pointing at itself: bounded by the limit
    assert len(list(hlist_nulls_for_each(ram.mem, POB + 0x2000, limit=50))) == 50


def _rhashtable(ram: Ram, L: RhtLayout, tbl: int, buckets: list[list[int]],
                locked: int | None = None) -> int:
    """An rhashtable at 0x1000 whose bucket_table at `tbl` has these chains (rhash_head
    physical addresses); bucket `locked` has its bit-0 lock set. Returns the table's va."""
    ram.q(0x1000 + L.tbl, POB + tbl)
    struct.pack_into("<I", ram.buf, tbl + L.size, len(buckets))
    struct.pack_into("<I", ram.buf, tbl + L.nest, 0)
    for b, chain in enumerate(buckets):
        slot = tbl + L.buckets + 8 * b
        marker = (POB + slot) | 1  # RHT_NULLS_MARKER(&tbl->buckets[b])
        ram.q(slot, (POB + chain[0] if chain else 0) | (1 if b == locked else 0))
        for node, nxt in zip(chain, [*chain[1:], None], strict=False):
            ram.q(node, POB + nxt if nxt is not None else marker)
    return POB + 0x1000


def test_rhashtable_walk_visits_every_bucket_in_order(kbtf):
    ram, L = Ram(), RhtLayout.from_btf(kbtf)
    chains = [[0x5000, 0x5100], [], [0x5200], [0x5300, 0x5400, 0x5500]]
    ht = _rhashtable(ram, L, 0x4000, chains, locked=2)
    assert rht_buckets(ram.mem, ht, L) == [POB + 0x5000, 0, POB + 0x5200, POB + 0x5300]
    assert list(rhashtable_walk(ram.mem, ht, L)) == [
        POB + n for chain in chains for n in chain]
    assert list(rht_for_each(ram.mem, POB + 0x5300)) == [POB + 0x5300, POB + 0x5400,
                                                          POB + 0x5500]


def test_rhashtable_without_a_walkable_table_yields_nothing(kbtf):
    ram, L = Ram(), RhtLayout.from_btf(kbtf)
    ht = _rhashtable(ram, L, 0x4000, [[0x5000]])
    struct.pack_into("<I", ram.buf, 0x4000 + L.nest, 1)  # a nested table
    assert rht_buckets(ram.mem, ht, L) == []
    struct.pack_into("<II", ram.buf, 0x4000 + L.size, 0, 0)
    struct.pack_into("<I", ram.buf, 0x4000 + L.nest, 0)
    assert rht_buckets(ram.mem, ht, L) == []  # size 0
    struct.pack_into("<I", ram.buf, 0x4000 + L.size, 1 << 20)
    assert rht_buckets(ram.mem, ht, L) == []  # implausible
    ram.q(0x1000 + L.tbl, 0)
    assert list(rhashtable_walk(ram.mem, ht, L)) == []  # no table


# ---------------------------------------------------------------------------- XArray / IDR

def _node(ram: Ram, L: XaLayout, pa: int, shift: int, slots: dict[int, int]) -> int:
    ram.buf[pa + L.shift] = shift
    for i, v in slots.items():
        ram.q(pa + L.slots + 8 * i, v)
    return POB + pa + 2  # the internal entry pointing at it


def test_empty_xarray_and_one_entry_at_the_head(kbtf):
    ram, L = Ram(), XaLayout.from_btf(kbtf)
    assert list(xa_for_each(ram.mem, POB + 0x1000, L)) == []
    ram.q(0x1000 + L.head, POB + 0x9000)  # a single entry at index 0 lives in xa_head
    assert list(xa_for_each(ram.mem, POB + 0x1000, L)) == [(0, POB + 0x9000)]
    assert list(xa_for_each(ram.mem, POB + SIZE, L)) == []  # unreadable xarray


def test_two_level_xarray_in_index_order(kbtf):
    """A root node (shift 6) over two leaves (shift 0): indices are slot << shift summed
    down the tree; siblings, retry and zero entries are not entries, values are."""
    ram, L = Ram(), XaLayout.from_btf(kbtf)
    leaf0 = _node(ram, L, 0x3000, 0, {3: POB + 0xA000, 4: (2 << 2) | 2, 7: (21 << 1) | 1})
    leaf2 = _node(ram, L, 0x4000, 0, {0: 0x402, 1: 0x406, 63: POB + 0xB000})
    root = _node(ram, L, 0x2000, 6, {0: leaf0, 2: leaf2})
    ram.q(0x1000 + L.head, root)
    assert list(xa_for_each(ram.mem, POB + 0x1000, L)) == [
        (3, POB + 0xA000), (7, (21 << 1) | 1), (2 * 64 + 63, POB + 0xB000)]


def test_a_corrupt_xarray_is_bounded(kbtf):
    """A node whose every slot points back at itself: depth and node budget end it."""
    ram, L = Ram(), XaLayout.from_btf(kbtf)
    me = POB + 0x2000 + 2
    _node(ram, L, 0x2000, 0, {i: me for i in range(64)})
    ram.q(0x1000 + L.head, me)
    assert list(xa_for_each(ram.mem, POB + 0x1000, L, max_nodes=500)) == []
    ram.q(0x2000 + L.slots + 8 * 5, POB + 0xC000)  # one real entry, reachable at every level
    got = list(xa_for_each(ram.mem, POB + 0x1000, L, max_nodes=20))
    assert got and all(e == POB + 0xC000 for _i, e in got) and len(got) <= 20
    # a node pointer past the end of RAM ends that branch only
    slots = {i: 0 for i in range(64)} | {0: POB + SIZE + 2, 5: POB + 0xC000}
    _node(ram, L, 0x2000, 0, slots)
    assert list(xa_for_each(ram.mem, POB + 0x1000, L)) == [(5, POB + 0xC000)]


def test_idr_for_each_skips_value_entries(kbtf):
    ram, L = Ram(), XaLayout.from_btf(kbtf)
    idr_rt = kbtf.member("idr", "idr_rt").offset
    leaf = _node(ram, L, 0x3000, 0, {1: POB + 0xA000, 2: 0x11, 9: POB + 0xA100})
    ram.q(0x1000 + idr_rt + L.head, leaf)
    assert list(idr_for_each(ram.mem, POB + 0x1000, idr_rt, L)) == [
        (1, POB + 0xA000), (9, POB + 0xA100)]


# ---------------------------------------------------------------------------- per-CPU

def test_per_cpu_pointers():
    ram = Ram()
    base = 0xFFFFFFFF82000000  # a per-CPU symbol: offsets wrap it into the direct map
    offs = [(POB + 0x10000 * (c + 1) - base) & (2**64 - 1) for c in range(3)]
    ram.q(0x800, *offs)
    got = per_cpu_offsets(ram.mem, POB + 0x800, 3)
    assert got == offs
    assert per_cpu_ptr(base + 0x40, 1, got) == POB + 0x20040
    assert per_cpu_ptrs(base, got, 3) == [POB + 0x10000, POB + 0x20000, POB + 0x30000]
    assert is_bad(per_cpu_offsets(ram.mem, POB + SIZE - 8, 3))
    assert per_cpu_offsets(ram.mem, POB + 0x800, 0) == []
