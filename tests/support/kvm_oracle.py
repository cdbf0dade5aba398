"""What Linux derives from CPUID and ACPI, written independently of native/vmm so the
KVM engine's tests can check "the guest sees the topology that was asked for"."""

from __future__ import annotations

import struct

from ktstr_vmm.spec import Topology
from support.testguests import TOPOLOGY_QUERIES


def cpuid_view(dwords: list[int]) -> dict[tuple[int, int], tuple[int, int, int, int]]:
    """The topology guest's report stream -> {(leaf, subleaf): (eax, ebx, ecx, edx)}."""
    assert len(dwords) == 4 * len(TOPOLOGY_QUERIES), f"got {len(dwords)} dwords"
    return {q: tuple(dwords[4 * i:4 * i + 4]) for i, q in enumerate(TOPOLOGY_QUERIES)}


def linux_ids(view) -> dict[str, int]:
    """APIC id and the ids Linux computes from it: core (SMT siblings share it), LLC
    (leaf 4 L3 sharing), die (0x1F), package (0x1F die level shift)."""
    apic = view[(0xB, 0)][3]
    smt_shift = view[(0xB, 0)][0] & 0x1F
    core_shift = view[(0x1F, 1)][0] & 0x1F
    pkg_shift = view[(0x1F, 2)][0] & 0x1F
    l3_eax = view[(0x4, 3)][0]
    assert (l3_eax >> 5) & 7 == 3, "leaf 4 subleaf 3 is not the L3"
    l3_sharing = ((l3_eax >> 14) & 0xFFF) + 1
    l3_shift = (l3_sharing - 1).bit_length()
    return {"apic": apic, "core": apic >> smt_shift, "llc": apic >> l3_shift,
            "die": apic >> core_shift, "package": apic >> pkg_shift,
            "leaf1_apic": view[(0x1, 0)][1] >> 24}


def same_partition(topo: Topology, ids: dict[int, dict[str, int]], key: str, pos: int) -> bool:
    """vCPUs share ids[key] exactly when they share cpu_location()[..pos] of the Topology."""
    cpus = range(topo.vcpus)
    for a in cpus:
        for b in cpus:
            want = topo.cpu_location(a)[:pos + 1] == topo.cpu_location(b)[:pos + 1]
            if (ids[a][key] == ids[b][key]) != want:
                return False
    return True


# ------------------------------------------------------------------ ACPI parsing

def tables(buf: bytes, base: int, rsdp: int) -> dict[str, bytes]:
    """RSDP -> XSDT -> {signature: table bytes}; asserts every checksum."""
    def at(gpa: int, n: int) -> bytes:
        return buf[gpa - base:gpa - base + n]

    r = at(rsdp, 36)
    assert r[:8] == b"RSD PTR ", "no RSDP signature"
    assert sum(r[:20]) & 0xFF == 0 and sum(r) & 0xFF == 0, "bad RSDP checksum"
    xsdt_addr = struct.unpack_from("<Q", r, 24)[0]
    out = {}

    def table(gpa: int) -> bytes:
        length = struct.unpack_from("<I", at(gpa, 8), 4)[0]
        t = at(gpa, length)
        assert sum(t) & 0xFF == 0, f"bad checksum in {t[:4]!r}"
        return t

    x = table(xsdt_addr)
    for i in range((len(x) - 36) // 8):
        t = table(struct.unpack_from("<Q", x, 36 + 8 * i)[0])
        out[t[:4].decode()] = t
    fadt = out["FACP"]
    out["DSDT"] = table(struct.unpack_from("<Q", fadt, 140)[0])
    return out


def madt_apic_ids(madt: bytes) -> list[int]:
    ids, p = [], 44
    while p < len(madt):
        kind, length = madt[p], madt[p + 1]
        if kind == 0 and struct.unpack_from("<I", madt, p + 4)[0] & 1:
            ids.append(madt[p + 3])
        elif kind == 9 and struct.unpack_from("<I", madt, p + 8)[0] & 1:
            ids.append(struct.unpack_from("<I", madt, p + 4)[0])
        p += length
    return ids


def srat_affinity(srat: bytes) -> tuple[dict[int, int], list[tuple[int, int, int]]]:
    """({apic id: node}, [(node, base, length)])."""
    cpus, mem, p = {}, [], 48
    while p < len(srat):
        kind, length = srat[p], srat[p + 1]
        if kind == 0:
            dom = srat[p + 2] | (int.from_bytes(srat[p + 9:p + 12], "little") << 8)
            cpus[srat[p + 3]] = dom
        elif kind == 2:
            cpus[struct.unpack_from("<I", srat, p + 8)[0]] = struct.unpack_from("<I", srat, p + 4)[0]
        elif kind == 1:
            dom, = struct.unpack_from("<I", srat, p + 2)
            base, size = struct.unpack_from("<QQ", srat, p + 8)
            mem.append((dom, base, size))
        p += length
    return cpus, mem


def slit_matrix(slit: bytes) -> list[list[int]]:
    n = struct.unpack_from("<Q", slit, 36)[0]
    return [list(slit[44 + i * n:44 + (i + 1) * n]) for i in range(n)]
