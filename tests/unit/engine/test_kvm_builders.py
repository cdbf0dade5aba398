"""The VMM's pure C builders (CPUID per vCPU, ACPI tables) called through cffi: no /dev/kvm
needed. The checks read the results the way Linux does (tests/support/kvm_oracle.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.kvm_oracle import (
    cpuid_view,
    linux_ids,
    madt_apic_ids,
    same_partition,
    slit_matrix,
    srat_affinity,
    tables,
)
from support.testguests import TOPOLOGY_QUERIES

from ktstr_vmm.spec import Topology, parse_topology

native = pytest.importorskip("ktstr_vmm._kvm", reason="the KVM extension is not built")
ffi, lib = native.ffi, native.lib

ACPI_BASE = 0xE0000


def ctopo(t: Topology):
    c = ffi.new("struct kt_topology *")
    c.nodes, c.llcs, c.cores, c.threads = t.nodes, t.llcs, t.cores, t.threads
    return c


HOST_BASE = [  # a plausible KVM_GET_SUPPORTED_CPUID subset (AMD host, as here)
    (0x0, 0, 0x10, 0x68747541, 0x444D4163, 0x69746E65),
    (0x1, 0, 0x00A10F11, 0x00040800, 0xF7F83203 | (1 << 26) | (1 << 13), 0x178BFBFF),
    (0x7, 0, 0, (1 << 5) | (1 << 8) | (1 << 3), 0, 0),
    (0xD, 0, 7, 0x340, 0x340, 0),
    (0x40000001, 0, 0x01FFFFFB, 0, 0, 0),  # KVM_CPUID_FEATURES: every PV feature
]


def build_cpuid(t: Topology, cpu: int, flags: int = 2) -> dict[tuple[int, int], tuple]:
    base = ffi.new("struct kt_cpuid_entry[]", len(HOST_BASE))
    for e, (fn, idx, a, b, c, d) in zip(base, HOST_BASE, strict=True):
        e.function, e.index, e.eax, e.ebx, e.ecx, e.edx = fn, idx, a, b, c, d
    out = ffi.new("struct kt_cpuid_entry[]", 64)
    n = lib.kt_cpuid_build(ctopo(t), cpu, base, len(HOST_BASE), flags, out, 64)
    assert n > 0
    return {(e.function, e.index): (e.eax, e.ebx, e.ecx, e.edx) for e in out[0:n]}


def guest_view(t: Topology, cpu: int) -> dict:
    leaves = build_cpuid(t, cpu)
    return cpuid_view([r for q in TOPOLOGY_QUERIES for r in leaves[q]])


SHAPES = ["1n1l1c1t", "1n2l2c1t", "1n1l4c2t", "2n2l2c1t", "2n4l1c2t", "1n3l3c1t",
          "numa2-4llc", "smt-3llc", "4n8l3c2t"]


@pytest.mark.parametrize("shape", SHAPES)
def test_cpuid_topology_reads_back_as_requested(shape):
    t = parse_topology(shape)
    ids = {cpu: linux_ids(guest_view(t, cpu)) for cpu in range(t.vcpus)}
    assert len({v["apic"] for v in ids.values()}) == t.vcpus, "APIC ids are not unique"
    assert all(v["leaf1_apic"] == v["apic"] & 0xFF for v in ids.values())
    # cpu_location = (node, llc, core, thread): package <-> node, LLC/die <-> llc, core.
    assert same_partition(t, ids, "package", 0)
    assert same_partition(t, ids, "llc", 1)
    assert same_partition(t, ids, "die", 1)
    assert same_partition(t, ids, "core", 2)


def test_cpuid_level_types_and_vendor():
    leaves = build_cpuid(parse_topology("1n2l2c2t"), 5)
    assert [(leaves[(0xB, i)][2] >> 8) & 0xFF for i in range(3)] == [1, 2, 0]
    assert [(leaves[(0x1F, i)][2] >> 8) & 0xFF for i in range(4)] == [1, 2, 5, 0]
    vendor = b"".join(leaves[(0, 0)][i].to_bytes(4, "little") for i in (1, 3, 2))
    assert vendor == b"GenuineIntel"
    assert leaves[(0, 0)][0] >= 0x1F
    assert leaves[(1, 0)][3] & (1 << 28), "HTT must be set"


def test_cpuid_hide_pvm_removes_what_pvm_cannot_emulate():
    t = parse_topology("1n1l1c1t")
    plain, hidden = build_cpuid(t, 0, flags=2), build_cpuid(t, 0, flags=3)
    assert plain[(1, 0)][2] & (1 << 26) and plain[(7, 0)][1] & (1 << 8)
    assert not hidden[(1, 0)][2] & ((1 << 26) | (1 << 13) | (1 << 28)), "xsave/cx16/avx left"
    assert not hidden[(7, 0)][1] & ((1 << 8) | (1 << 5)), "bmi2/avx2 left"
    assert hidden[(7, 0)][1] & (1 << 3), "bmi1 should stay"
    assert (0xD, 0) not in hidden


def test_an_amd_host_under_an_intel_vendor_string_offers_no_hypercall_pv_features():
    """VMCALL on AMD is #UD, which KVM 'fixes' by writing the guest's read-only kernel text:
    a nested L2 with 2 vCPUs oopsed in kvm_kick_cpu. PV_UNHALT, PV_SEND_IPI,
    PV_SCHED_YIELD and HC_MAP_GPA_RANGE go; the PV features without hypercalls stay."""
    hypercalls = (1 << 7) | (1 << 11) | (1 << 13) | (1 << 16)
    t = parse_topology("1n2l2c1t")
    intel_on_amd = build_cpuid(t, 1, flags=2)[(0x40000001, 0)][0]
    assert intel_on_amd & hypercalls == 0
    assert intel_on_amd == 0x01FFFFFB & ~hypercalls  # clocksource2, steal time, pv tlb flush...
    assert build_cpuid(t, 1, flags=0)[(0x40000001, 0)][0] == 0x01FFFFFB  # AMD's own vendor


def test_cpuid_rejects_a_vcpu_outside_the_topology():
    out = ffi.new("struct kt_cpuid_entry[]", 64)
    assert lib.kt_cpuid_build(ctopo(parse_topology("1n1l2c1t")), 2, ffi.NULL, 0, 0, out, 64) < 0


def build_acpi(t: Topology, low: int, high: int = 0) -> dict[str, bytes]:
    buf = ffi.new("uint8_t[]", 0x10000)
    lay = ffi.new("struct kt_acpi_layout *")
    assert lib.kt_acpi_build(ctopo(t), low, high, ACPI_BASE, buf, 0x10000, lay) == 0
    assert lay.rsdp == ACPI_BASE
    return tables(bytes(ffi.buffer(buf, lay.size)), ACPI_BASE, lay.rsdp)


def test_acpi_tables_for_numa2_4llc():
    t = parse_topology("numa2-4llc")
    tb = build_acpi(t, 512 << 20)
    assert sorted(tb) == ["APIC", "DSDT", "FACP", "SLIT", "SRAT"]
    apics = madt_apic_ids(tb["APIC"])
    assert apics == [lib.kt_apic_id(ctopo(t), c) for c in range(16)]
    cpus, mem = srat_affinity(tb["SRAT"])
    assert {c: cpus[apics[c]] for c in range(16)} == {c: c // 8 for c in range(16)}
    assert mem == [(0, 0, 256 << 20), (1, 256 << 20, 256 << 20)]
    assert slit_matrix(tb["SLIT"]) == [[10, 20], [20, 10]]
    assert b"_S5_" in tb["DSDT"], "no S5 object: the guest could not power off"


def _uarts(dsdt: bytes) -> list[tuple[bytes, int, int, bool]]:
    """(name, port, IRQ, shared) of each PNP0501 device in the DSDT's AML."""
    out = []
    for name in (b"COM1", b"COM2", b"COM3", b"COM4"):
        i = dsdt.find(name)
        if i < 0:
            continue
        crs = dsdt.index(b"_CRS", i)
        io = dsdt.index(b"\x47\x01", crs)
        port = int.from_bytes(dsdt[io + 2:io + 4], "little")
        irq_tag = dsdt[io + 8]
        mask = int.from_bytes(dsdt[io + 9:io + 11], "little")
        shared = irq_tag == 0x23 and bool(dsdt[io + 11] & 0x10)
        out.append((name, port, mask.bit_length() - 1, shared))
    return out


def test_acpi_describes_the_three_uarts_the_engine_has():
    """COM1 console, COM2 wire, COM3 shells (docs/shell.md): Linux maps an ISA IRQ only
    for a device ACPI describes; COM1 and COM3 share IRQ 4, so both say shared."""
    tb = build_acpi(parse_topology("1n1l1c1t"), 256 << 20)
    assert _uarts(tb["DSDT"]) == [(b"COM1", 0x3f8, 4, True), (b"COM2", 0x2f8, 3, False),
                                  (b"COM3", 0x3e8, 4, True)]


def test_acpi_memory_above_the_hole_is_split_per_node():
    t = parse_topology("2n2l1c1t")
    _, mem = srat_affinity(build_acpi(t, 3 << 30, 1 << 30)["SRAT"])
    assert mem == [(0, 0, 2 << 30), (1, 2 << 30, 1 << 30), (1, 4 << 30, 1 << 30)]


def test_acpi_uses_x2apic_entries_past_xapic_ids():
    t = parse_topology("max-cpu")  # 14 LLCs x 9 cores x 2 threads: ids beyond 254
    apics = madt_apic_ids(build_acpi(t, 1 << 30)["APIC"])
    assert len(apics) == 252 and max(apics) > 254 and len(set(apics)) == 252


def test_acpi_too_small_buffer_is_refused():
    buf = ffi.new("uint8_t[]", 256)
    lay = ffi.new("struct kt_acpi_layout *")
    assert lib.kt_acpi_build(ctopo(parse_topology("tiny-2llc")), 1 << 28, 0, ACPI_BASE,
                             buf, 256, lay) < 0


@settings(max_examples=40, deadline=None)
@given(nodes=st.sampled_from([1, 2, 4]), per_node=st.integers(1, 3), cores=st.integers(1, 5),
       threads=st.integers(1, 2))
def test_acpi_and_cpuid_agree_for_any_shape(nodes, per_node, cores, threads):
    t = Topology(nodes, nodes * per_node, cores, threads)
    tb = build_acpi(t, 1 << 30)
    apics = madt_apic_ids(tb["APIC"])
    assert apics == [linux_ids(guest_view(t, c))["apic"] for c in range(t.vcpus)]
    cpus, _ = srat_affinity(tb["SRAT"])
    assert [cpus[a] for a in apics] == [t.cpu_location(c)[0] for c in range(t.vcpus)]
