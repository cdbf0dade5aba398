"""GuestMemory: read the guest kernel's memory from the host (offsets come from its BTF:
`btf` rides along for the readers built on this, monitor/sampler.py and bpf_maps.py).

Physical reads go through the engine's RAM mappings (`Machine.ram()` RamRegions), limited
to the guest's own System RAM ranges (SysRdy.ram, from /proc/iomem) when known. Kernel
virtual addresses translate as the kernel does: the image (`va - __START_KERNEL_map +
phys_base`), the direct map (`va - page_offset_base`) and, for anything else (vmalloc'd
per-CPU chunks...), a walk of the kernel's page tables from `init_top_pgt` (4- or 5-level).

Nothing from the guest is trusted: a read at a bad address returns a `BadRead` (falsy,
with the reason) and bumps `errors`; no read raises.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .btf import Btf

START_KERNEL_MAP = 0xFFFFFFFF80000000
LA57_THRESHOLD = 0xFFFF800000000000  # page_offset_base below this => 5-level paging
_PTE_ADDR = 0x000FFFFFFFFFF000
_MAX_READ = 1 << 24


@dataclass(frozen=True)
class BadRead:
    """A read that could not be done: falsy, carries the address and the reason."""

    addr: int
    reason: str

    def __bool__(self) -> bool:
        return False


def is_bad(v: Any) -> bool:
    return isinstance(v, BadRead)


class GuestMemory:
    def __init__(self, regions: Sequence[Any], ram_ranges: Sequence[tuple[int, int]] | None = None,
                 *, page_offset_base: int | None = None, phys_base: int = 0,
                 pgd_kva: int | None = None, btf: Btf | None = None) -> None:
        """`regions`: RamRegion(gpa, size, buf); `ram_ranges`: (start, end inclusive) of
        the guest's System RAM; `pgd_kva`: address of init_top_pgt for page walks."""
        regs = sorted((r for r in regions if r.size > 0), key=lambda r: r.gpa)
        self._regions = [(r.gpa, r.gpa + min(r.size, len(r.buf)), r.buf) for r in regs]
        self._ram = sorted((int(a), int(b) + 1) for a, b in ram_ranges) if ram_ranges else None
        self.page_offset_base = page_offset_base
        self.phys_base = phys_base
        self.pgd_kva = pgd_kva
        self.btf = btf
        self.errors = 0
        top = max((e for _s, e, _b in self._regions), default=0)
        if self._ram:
            top = min(top, max(e for _s, e in self._ram))
        self.phys_top = top
        self._u64 = struct.Struct("<Q")
        self._window: tuple[int, int, Any, int] | None = None

    # ------------------------------------------------------------------ physical

    def _locate(self, pa: int, n: int) -> tuple[Any, int] | None:
        if pa < 0 or n < 0 or n > _MAX_READ:
            return None
        if self._ram is not None:
            for s, e in self._ram:
                if s <= pa and pa + n <= e:
                    break
            else:
                return None
        for s, e, buf in self._regions:
            if s <= pa and pa + n <= e:
                return buf, pa - s
        return None

    def fast_window(self) -> tuple[int, int, Any, int]:
        """(lo, hi, buf, gpa): the largest physical range that is both System RAM and one
        mapping, for unchecked fast reads of `lo <= pa < hi` (buf offset `pa - gpa`)."""
        if self._window is None:
            best = (0, 0, b"", 0)
            ram = self._ram or [(s, e) for s, e, _b in self._regions]
            for s, e, buf in self._regions:
                for rs, re_ in ram:
                    lo, hi = max(s, rs), min(e, re_)
                    if hi - lo > best[1] - best[0]:
                        best = (lo, hi, buf, s)
            self._window = best
        return self._window

    def locate_kva(self, va: int, n: int) -> tuple[Any, int] | None:
        """(buffer, offset) holding `n` bytes at kernel virtual `va`, or None (counted as
        an error): the monitor's fast path for unpacking straight from the mapping."""
        pob = self.page_offset_base
        if pob is not None and pob <= va < pob + self.phys_top:
            pa = va - pob
        else:
            pa = self.kva_to_pa(va)
            if pa.__class__ is BadRead:
                return None
            if (va & 0xFFF) + n > 0x1000 and va < START_KERNEL_MAP:
                self.errors += 1  # a walked mapping is only contiguous within its page
                return None
        loc = self._locate(pa, n)
        if loc is None:
            self.errors += 1
        return loc

    def read_phys(self, pa: int, n: int) -> bytes | BadRead:
        loc = self._locate(pa, n)
        if loc is None:
            self.errors += 1
            return BadRead(pa, f"physical {pa:#x}+{n} is not guest RAM")
        buf, off = loc
        return bytes(buf[off:off + n])

    def phys_u64(self, pa: int) -> int | BadRead:
        loc = self._locate(pa, 8)
        if loc is None:
            self.errors += 1
            return BadRead(pa, f"physical {pa:#x} is not guest RAM")
        return self._u64.unpack_from(loc[0], loc[1])[0]

    # ------------------------------------------------------------------ virtual

    def kva_to_pa(self, va: int) -> int | BadRead:
        """Kernel virtual -> guest physical; BadRead for an address that maps nowhere."""
        if va >= START_KERNEL_MAP:
            return va - START_KERNEL_MAP + self.phys_base
        pob = self.page_offset_base
        if pob is not None and pob <= va < pob + self.phys_top:
            return va - pob
        if self.pgd_kva is not None and pob is not None and va >= 1 << 63:
            return self._page_walk(va)
        self.errors += 1
        return BadRead(va, f"{va:#x} is not a kernel address this reader can map")

    def _page_walk(self, va: int) -> int | BadRead:
        """`va` through the kernel's page tables from init_top_pgt (4 or 5 levels, 1 GiB
        and 2 MiB pages), as the MMU would."""
        levels = (48, 39, 30, 21, 12) if self.page_offset_base < LA57_THRESHOLD else (
            39, 30, 21, 12)
        table = self.pgd_kva - START_KERNEL_MAP + self.phys_base
        for i, shift in enumerate(levels):
            e = self.phys_u64(table + ((va >> shift) & 0x1FF) * 8)
            if is_bad(e):
                return e
            if not e & 1:
                self.errors += 1
                return BadRead(va, f"{va:#x} is not mapped")
            base = e & _PTE_ADDR
            if shift in (30, 21) and e & 0x80:  # 1 GiB / 2 MiB page
                return (base & ~((1 << shift) - 1)) | (va & ((1 << shift) - 1))
            if i == len(levels) - 1:
                return base | (va & 0xFFF)
            table = base
        return BadRead(va, "page walk fell through")  # not reached

    def read(self, va: int, n: int) -> bytes | BadRead:
        """`n` bytes at kernel virtual `va` (split across pages for walked addresses)."""
        pa = self.kva_to_pa(va)
        if is_bad(pa):
            return pa
        direct = va >= START_KERNEL_MAP or (
            self.page_offset_base is not None and va >= self.page_offset_base
            and va - self.page_offset_base < self.phys_top)
        if direct or (va & 0xFFF) + n <= 0x1000:
            return self.read_phys(pa, n)
        out = bytearray()
        while n > 0:
            chunk = min(n, 0x1000 - (va & 0xFFF))
            pa = self.kva_to_pa(va)
            if is_bad(pa):
                return pa
            b = self.read_phys(pa, chunk)
            if is_bad(b):
                return b
            out += b
            va += chunk
            n -= chunk
        return bytes(out)

    def u64(self, va: int) -> int | BadRead:
        b = self.read(va, 8)
        return b if is_bad(b) else self._u64.unpack(b)[0]

    def u32(self, va: int) -> int | BadRead:
        b = self.read(va, 4)
        return b if is_bad(b) else struct.unpack("<I", b)[0]

    def cstr(self, va: int, limit: int = 256) -> str | BadRead:
        """A NUL-terminated string (at most `limit` bytes, stops at a page end)."""
        if va == 0:
            return BadRead(0, "NULL string pointer")
        n = min(limit, 0x1000 - (va & 0xFFF))
        b = self.read(va, n)
        if is_bad(b):
            return b
        return b.split(b"\0", 1)[0].decode("utf-8", "replace")
