"""GuestMemory: the real RAM layout, address translation (image, direct map, page walk),
typed reads through the kernel's BTF, and bad pointers that never raise."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import monitor_image as MI

from ktstr_vmm.engine.base import RamRegion
from ktstr_vmm.introspect import btf_load as L
from ktstr_vmm.introspect.memory import BadRead, GuestMemory, is_bad

POB4 = 0xFFFF888000000000


def two_blocks() -> tuple[bytearray, bytearray, GuestMemory]:
    low, high = bytearray(0x10000), bytearray(0x10000)
    low[0x100:0x108] = (0x1122334455667788).to_bytes(8, "little")
    high[0x10:0x18] = (42).to_bytes(8, "little")
    regions = [RamRegion(0x100000000, len(high), memoryview(high)),
               RamRegion(0, len(low), memoryview(low))]
    # System RAM ranges leave the first page out (as /proc/iomem does for the BIOS area)
    mem = GuestMemory(regions, [(0x1000, 0xFFFF), (0x100000000, 0x10000FFFF)],
                      page_offset_base=POB4)
    return low, high, mem


def test_physical_reads_follow_the_real_layout():
    _low, _high, mem = two_blocks()
    assert mem.phys_u64(0x100000010) == 42
    bad = mem.phys_u64(0x100)  # mapped, but not System RAM
    assert isinstance(bad, BadRead) and not bad
    assert bad.reason == "physical 0x100 is not guest RAM"
    assert is_bad(mem.read_phys(0xFFFC, 8))  # straddles the end of a range
    assert is_bad(mem.read_phys(0x20000, 8))  # the hole
    assert mem.errors == 3


def test_image_and_direct_map_translation():
    _low, _high, mem = two_blocks()
    assert mem.kva_to_pa(0xFFFFFFFF81000000) == 0x1000000
    assert mem.u64(POB4 + 0x100000010) == 42
    r = mem.u64(0x4000)
    assert is_bad(r) and r.reason == "0x4000 is not a kernel address this reader can map"
    assert mem.cstr(0) == BadRead(0, "NULL string pointer")


@pytest.mark.parametrize("la57", [False, True])
def test_page_walk_4k_2m_and_1g(la57):
    ram = bytearray(0x400000)
    pob = 0xFF11000000000000 if la57 else POB4
    pgd_pa, nxt = 0x1000, 0x2000
    tables = {}

    def set_entry(tpa, idx, val):
        struct.pack_into("<Q", ram, tpa + idx * 8, val)

    shifts = (48, 39, 30, 21, 12) if la57 else (39, 30, 21, 12)
    va = 0xFFFFC90000123456  # vmalloc-like
    cur = pgd_pa
    for s in shifts[:-1]:
        tables[s] = cur
        set_entry(cur, (va >> s) & 0x1FF, nxt | 3)
        cur, nxt = nxt, nxt + 0x1000
    set_entry(cur, (va >> 12) & 0x1FF, 0x300000 | 3)  # 4 KiB page at 0x300000
    ram[0x300456:0x30045E] = (777).to_bytes(8, "little")
    mem = GuestMemory([RamRegion(0, len(ram), memoryview(ram))], page_offset_base=pob,
                      pgd_kva=0xFFFFFFFF80000000 + pgd_pa)
    assert mem.kva_to_pa(va) == 0x300456
    assert mem.u64(va) == 777
    # a 2 MiB page one level up
    va2 = va + (1 << 21)
    set_entry(cur - 0x1000, (va2 >> 21) & 0x1FF, 0x200000 | 0x83)  # in the PMD table
    assert mem.kva_to_pa(va2) == 0x200000 | (va2 & 0x1FFFFF)
    # unmapped
    r = mem.kva_to_pa(va + (1 << 30) * 3)
    assert is_bad(r) and r.reason.endswith("is not mapped")


@pytest.fixture(scope="module")
def kbtf(kernel):
    return L.load_btf(kernel.vmlinux, kernel.build_id)


@settings(max_examples=200, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.binary(min_size=0, max_size=4096), ptr=st.integers(0, 2**64 - 1),
       pob=st.sampled_from([MI.POB, POB4, 0, 2**64 - 4096]),
       path=st.sampled_from(["nr_running", "curr", "clock", "scx.local_dsq.nr", "scx",
                             "scx.runnable_list", "cpu"]))
def test_reads_over_random_memory_never_raise(kbtf, data, ptr, pob, path):
    ram = bytearray(0x20000)
    ram[: len(data)] = data
    mem = GuestMemory([RamRegion(0, len(ram), memoryview(ram))], [(0, len(ram) - 1)],
                      page_offset_base=pob, pgd_kva=0xFFFFFFFF80000000 + 0x1000, btf=kbtf)
    f = kbtf.member("rq", path)
    v = mem.u64(ptr + f.offset)
    assert isinstance(v, (int, BadRead))
    curr = mem.u64((pob + 0x100 if pob else ptr) + kbtf.member("rq", "curr").offset)
    if isinstance(curr, int):
        pid = mem.u32(curr + kbtf.member("task_struct", "pid").offset)
        comm = mem.cstr(curr + kbtf.member("task_struct", "comm").offset, 16)
        assert isinstance(comm, (str, BadRead)) and isinstance(pid, (int, BadRead))
    mem.cstr(ptr)
    mem.read(ptr, 0x3000)
