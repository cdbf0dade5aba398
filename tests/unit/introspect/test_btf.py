"""btf.py: offsets equal pahole's on the real kernel; every kind decodes; bad bytes give
BtfError and nothing else."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ktstr_vmm.introspect import btf as B
from ktstr_vmm.introspect import btf_load as L
from ktstr_vmm.introspect.btf import Btf, BtfError

PAHOLE_STRUCTS = ("rq", "scx_rq", "task_struct", "sched_ext_entity", "scx_dispatch_q")
_LINE = re.compile(r"^\s+(?P<decl>[^/]*?)\s*;\s*/\*\s*(?P<off>\d+)(?::\s*(?P<bit>\d+))?\s+"
                   r"(?P<size>\d+)\s*\*/\s*$")
_NAME = re.compile(r"(\w+)\s*(?:\[\d*\])*\s*(?::\s*\d+)?$")


def parse_pahole(text: str) -> list[tuple[str, int, int | None]]:
    """(member name, byte offset, bit within the storage unit) of every member line,
    anonymous unions/structs' closing lines skipped."""
    out = []
    for line in text.splitlines():
        m = _LINE.match(line)
        if not m or m["decl"].startswith("}"):
            continue
        decl = re.sub(r"\s*__attribute__\(\(.*\)\)", "", m["decl"])
        if "(*" in decl:  # function pointer: `void (*fn)(...)`
            name = re.search(r"\(\*\s*(\w+)\)", decl)[1]
        else:
            name = _NAME.search(decl)[1]
        out.append((name, int(m["off"]), int(m["bit"]) if m["bit"] is not None else None))
    return out


def ours(b: Btf, name: str) -> list[tuple[str, int, int | None]]:
    out = []
    for m in b.flat_members(b.struct(name).id):
        if m.bit_size:
            unit = b.size_of(m.type_id) * 8
            out.append((m.name, (m.bit_offset // unit) * unit // 8, m.bit_offset % unit))
        else:
            out.append((m.name, m.bit_offset // 8, None))
    return out


@pytest.fixture(scope="module")
def kbtf(kernel):
    return L.load_btf(kernel.vmlinux, kernel.build_id)


@pytest.mark.skipif(shutil.which("pahole") is None, reason="pahole (dwarves) is not installed")
@pytest.mark.parametrize("name", PAHOLE_STRUCTS)
def test_member_offsets_equal_pahole(kernel, kbtf, name):
    r = subprocess.run(["pahole", "-C", name, str(kernel.vmlinux)], capture_output=True,
                       text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr[-500:]
    theirs = parse_pahole(r.stdout)
    assert len(theirs) > 5
    assert ours(kbtf, name) == theirs
    size = re.search(r"/\* size: (\d+)", r.stdout)
    assert kbtf.size_of(kbtf.struct(name).id) == int(size[1])


def test_dotted_paths_through_nested_and_anonymous(kbtf):
    rq_scx = kbtf.member("rq", "scx").offset
    assert kbtf.member("rq", "scx.nr_running").offset == rq_scx + kbtf.member(
        "scx_rq", "nr_running").offset
    assert kbtf.member("rq", "scx.local_dsq.nr").offset == rq_scx + kbtf.member(
        "scx_rq", "local_dsq").offset + kbtf.member("scx_dispatch_q", "nr").offset
    # rq.curr lives in an anonymous union with rq.donor
    assert kbtf.member("rq", "curr").offset == kbtf.member("rq", "donor").offset
    f = kbtf.member("task_struct", "comm")
    assert f.size == 16 and kbtf.type(kbtf.resolve(f.type_id)).kind == B.ARRAY
    assert kbtf.member("task_struct", "comm[3]").offset == f.offset + 3
    with pytest.raises(BtfError, match=r"struct rq has no member 'scx.nope'"):
        kbtf.member("rq", "scx.nope")


def test_enums_and_constants(kbtf):
    kinds = kbtf.enum("scx_exit_kind")
    assert kinds["SCX_EXIT_ERROR_BPF"] == 1025 and kinds["SCX_EXIT_ERROR_STALL"] == 1026
    assert kbtf.enumerator("SCX_DSQ_LOCAL") == 0x8000000000000002
    assert kbtf.enumerator("SCX_DSQ_GLOBAL") == 0x8000000000000001
    assert "SCX_ENQ_WAKEUP" in kbtf.enum("scx_enq_flags")
    assert "SCX_TASK_QUEUED" in kbtf.enum("scx_ent_flags")
    with pytest.raises(BtfError, match="no enum constant NOPE_X"):
        kbtf.enumerator("NOPE_X")


def test_every_kind_in_the_kernel_decodes(kbtf):
    seen = set()
    for tid in range(1, kbtf.nr_types + 1):
        seen.add(kbtf.type(tid).kind)
    # the 7.3 kernel has every kind but maybe float/enum64-specific ones; these must be there
    assert {B.INT, B.PTR, B.ARRAY, B.STRUCT, B.UNION, B.ENUM, B.FWD, B.TYPEDEF, B.VOLATILE,
            B.CONST, B.FUNC, B.FUNC_PROTO, B.VAR, B.DATASEC, B.DECL_TAG, B.TYPE_TAG} <= seen


def test_cache_is_used_and_fast(kernel, tmp_path, monkeypatch):
    monkeypatch.setenv("KTSTR_CACHE", str(tmp_path))
    L._LOADED.clear()
    t0 = time.perf_counter()
    cold = L.load_btf(kernel.vmlinux, kernel.build_id)
    t_cold = time.perf_counter() - t0
    assert list((tmp_path / "btf").glob(f"{kernel.build_id}*.pickle"))
    L._LOADED.clear()
    t0 = time.perf_counter()
    warm = L.load_btf(kernel.vmlinux, kernel.build_id)
    t_warm = time.perf_counter() - t0
    assert warm.member("rq", "clock") == cold.member("rq", "clock")
    assert t_warm < t_cold
    # a damaged cache is rebuilt
    for p in (tmp_path / "btf").glob("*.pickle"):
        p.write_bytes(b"garbage")
    L._LOADED.clear()
    assert L.load_btf(kernel.vmlinux, kernel.build_id).member("rq", "clock").offset > 0


def test_elf_without_btf_is_a_clear_error(tmp_path):
    sh = shutil.which("true")
    with pytest.raises(BtfError, match=r"has no \.BTF section"):
        L.elf_btf_bytes(sh)
    bad = tmp_path / "x"
    bad.write_bytes(b"not an elf")
    with pytest.raises(BtfError, match="cannot read"):
        L.elf_btf_bytes(bad)


# --------------------------------------------------------------------------- synthetic

class Enc:
    """A tiny BTF encoder for hand-made blobs."""

    def __init__(self) -> None:
        self.strs = bytearray(b"\0")
        self.types = bytearray()
        self.n = 0

    def s(self, name: str) -> int:
        if not name:
            return 0
        off = len(self.strs)
        self.strs += name.encode() + b"\0"
        return off

    def t(self, name: str, kind: int, vlen: int, st: int, extra: bytes = b"",
          kflag: bool = False) -> int:
        info = (kind << 24) | vlen | (1 << 31 if kflag else 0)
        self.types += struct.pack("<III", self.s(name), info, st) + extra
        self.n += 1
        return self.n

    def blob(self) -> bytes:
        hdr = struct.pack("<HBBIIIII", B.BTF_MAGIC, 1, 0, 24, 0, len(self.types),
                          len(self.types), len(self.strs))
        return hdr + bytes(self.types) + bytes(self.strs)


def synthetic() -> tuple[bytes, dict[str, int]]:
    e = Enc()
    ids = {}
    ids["u32"] = e.t("u32", B.INT, 0, 4, struct.pack("<I", 32))
    ids["s64"] = e.t("s64", B.INT, 0, 8, struct.pack("<I", (1 << 24) | 64))
    ids["ptr"] = e.t("", B.PTR, 0, ids["u32"])
    ids["arr"] = e.t("", B.ARRAY, 0, 0, struct.pack("<III", ids["u32"], ids["u32"], 5))
    ids["td"] = e.t("u32_t", B.TYPEDEF, 0, ids["u32"])
    ids["const"] = e.t("", B.CONST, 0, ids["td"])
    ids["vol"] = e.t("", B.VOLATILE, 0, ids["const"])
    ids["restrict"] = e.t("", B.RESTRICT, 0, ids["ptr"])
    ids["ttag"] = e.t("user", B.TYPE_TAG, 0, ids["vol"])
    inner = struct.pack("<III", e.s("a"), ids["u32"], 0) + struct.pack("<III", e.s("b"),
                                                                       ids["s64"], 64)
    ids["inner"] = e.t("", B.UNION, 2, 8, inner)
    mem = (struct.pack("<III", e.s("x"), ids["ttag"], 0)
           + struct.pack("<III", 0, ids["inner"], 64)
           + struct.pack("<III", e.s("bits"), ids["u32"], (3 << 24) | 133)
           + struct.pack("<III", e.s("arr"), ids["arr"], 160))
    ids["outer"] = e.t("outer", B.STRUCT, 4, 40, mem, kflag=True)
    ids["enum"] = e.t("color", B.ENUM, 2, 4, struct.pack("<Ii", e.s("RED"), -1)
                      + struct.pack("<Ii", e.s("BLUE"), 7), kflag=True)
    ids["enum64"] = e.t("big", B.ENUM64, 1, 8, struct.pack("<III", e.s("HUGE"), 2, 0x80000000))
    ids["fwd"] = e.t("outer", B.FWD, 0, 0)
    ids["proto"] = e.t("", B.FUNC_PROTO, 2, ids["u32"], struct.pack("<II", e.s("p"), ids["ptr"])
                       + struct.pack("<II", 0, 0))
    ids["func"] = e.t("f", B.FUNC, 1, ids["proto"])
    ids["var"] = e.t("v", B.VAR, 0, ids["outer"], struct.pack("<I", 1))
    ids["sec"] = e.t(".data", B.DATASEC, 1, 40, struct.pack("<III", ids["var"], 0, 40))
    ids["float"] = e.t("double", B.FLOAT, 0, 8)
    ids["dtag"] = e.t("tag", B.DECL_TAG, 0, ids["outer"], struct.pack("<i", 2))
    return e.blob(), ids


def test_synthetic_every_kind():
    data, ids = synthetic()
    b = Btf.from_bytes(data)
    assert b.nr_types == len(ids)
    assert b.find("outer") == ids["outer"]  # the definition, not the fwd
    assert b.find("outer", B.FWD) == ids["fwd"]
    assert b.resolve(ids["ttag"]) == ids["u32"]
    assert b.member("outer", "b") == B.Field("b", 16, 128, 0, ids["s64"], 8)
    f = b.member("outer", "bits")
    assert (f.offset, f.bit_offset, f.bit_size) == (16, 133, 3)
    assert b.member("outer", "arr[2]").offset == 28
    assert b.size_of(ids["arr"]) == 20 and b.size_of(ids["ptr"]) == 8
    assert b.enum("color") == {"RED": -1, "BLUE": 7}
    assert b.enum("big") == {"HUGE": (0x80000000 << 32) | 2}
    assert b.enumerator("BLUE") == 7
    assert b.type(ids["proto"]).params == (("p", ids["ptr"]), ("", 0))
    assert b.type(ids["func"]).linkage == 1
    assert b.type(ids["sec"]).vars == ((ids["var"], 0, 40),)
    assert b.type(ids["dtag"]).component_idx == 2
    assert b.type(ids["s64"]).signed and b.type(ids["s64"]).int_bits == 64
    assert b.type(ids["float"]).size == 8
    assert b.type_name(ids["ptr"]) == "u32 *"
    assert [m.name for m in b.flat_members(ids["outer"])] == ["x", "a", "b", "bits", "arr"]


def test_a_self_referencing_array_is_a_btf_error_not_a_recursion():
    """Corrupt program BTF (seen from Hypothesis): an array whose element type is itself.
    Sizing it must end in a one-line BtfError, never RecursionError."""
    e = Enc()
    u32 = e.t("u32", B.INT, 0, 4, struct.pack("<I", 32))
    loop = e.t("", B.ARRAY, 0, 0, struct.pack("<III", 2, u32, 3))  # elem = itself (id 2)
    nested = e.t("", B.ARRAY, 0, 0, struct.pack("<III", u32, u32, 4))
    outer = e.t("", B.ARRAY, 0, 0, struct.pack("<III", nested, u32, 2))
    b = Btf.from_bytes(e.blob())
    with pytest.raises(BtfError, match="nesting is too deep"):
        b.size_of(loop)
    assert b.size_of(outer) == 2 * 4 * 4  # arrays of arrays still multiply


@pytest.mark.parametrize("data, message", [
    (b"", "BTF is truncated: 0 bytes"),
    (b"\x00" * 24, "not BTF: magic 0x0000"),
    (struct.pack("<HBBIIIII", B.BTF_MAGIC, 2, 0, 24, 0, 0, 0, 1) + b"\0", "version 2"),
    (struct.pack("<HBBIIIII", B.BTF_MAGIC, 1, 0, 24, 0, 100, 0, 1) + b"\0",
     "sections end past"),
    (struct.pack("<HBBIIIII", B.BTF_MAGIC, 1, 0, 24, 0, 12, 12, 1)
     + struct.pack("<III", 0, 25 << 24, 0) + b"\0", "unknown BTF kind 25"),
])
def test_bad_blobs(data, message):
    with pytest.raises(BtfError, match=message):
        Btf.from_bytes(data)


def _exercise(b: Btf) -> None:
    for tid in range(0, min(b.nr_types, 50) + 1):
        t = b.type(tid)
        b.size_of(tid)
        b.resolve(tid)
        b.type_name(tid)
        if t.kind in (B.STRUCT, B.UNION):
            b.flat_members(tid)
            for m in t.members[:5]:
                if m.name:
                    b.member(tid, m.name)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_random_bytes_only_raise_btf_error(data):
    try:
        _exercise(Btf.from_bytes(data))
    except BtfError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_and_truncated_blobs_only_raise_btf_error(d):
    data = bytearray(synthetic()[0])
    cut = d.draw(st.integers(0, len(data)))
    for _ in range(d.draw(st.integers(0, 8))):
        i = d.draw(st.integers(24, len(data) - 1))
        data[i] = d.draw(st.integers(0, 255))
    try:
        _exercise(Btf.from_bytes(bytes(data[:cut])))
    except BtfError:
        pass
