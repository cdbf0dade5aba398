"""BPF map values rendered by the program's own BTF: a real clang-built BPF object's
.BTF (tests/data/bpf/render_types.bpf.c, compiled here with clang-19 -target bpf)."""

from __future__ import annotations

import shutil
import struct
import subprocess

import pytest
from elftools.elf.elffile import ELFFile
from hypothesis import given, settings
from hypothesis import strategies as st
from support import DATA

from ktstr_vmm.introspect.bpf_maps import active_obj_name
from ktstr_vmm.introspect.bpf_render import render
from ktstr_vmm.introspect.btf import Btf
from ktstr_vmm.rundir.dumps import FailureDumpMap

SRC = DATA / "bpf/render_types.bpf.c"


@pytest.fixture(scope="module")
def btf(tmp_path_factory) -> Btf:
    clang = shutil.which("clang-19") or shutil.which("clang")
    if clang is None:
        pytest.skip("clang is not installed (make installs clang-19)")
    obj = tmp_path_factory.mktemp("bpf") / "t.o"
    subprocess.run([clang, "-g", "-O2", "-target", "bpf", "-c", str(SRC), "-o", str(obj)],
                   check=True, timeout=120)
    with open(obj, "rb") as f:
        return Btf.from_bytes(ELFFile(f).get_section_by_name(".BTF").data())


def task_ctx_bytes(btf: Btf) -> bytes:
    tid = btf.find("task_ctx")
    buf = bytearray(btf.size_of(tid))

    def put(path: str, fmt: str, *v) -> None:
        struct.pack_into("<" + fmt, buf, btf.member(tid, path).offset, *v)

    put("vtime", "Q", 123456789)
    put("delta", "i", -42)
    put("boosted", "B", 1)
    off = btf.member(tid, "comm").offset
    buf[off:off + 16] = b"kworker/0:1\0\0\0\0\0"
    put("mode", "I", 3)
    f = btf.member(tid, "f").offset
    struct.pack_into("<I", buf, f, 5 | (17 << 3))  # a:3 = 5, b:5 = 17
    put("f.c", "I", 7)
    put("as_u32", "I", 0x04030201)
    put("owner", "Q", 0xFFFF888012345678)
    put("hist", "III", 1, 2, 3)
    return bytes(buf)


def test_a_struct_renders_field_by_field(btf):
    v = render(btf, btf.find("task_ctx"), task_ctx_bytes(btf))
    assert v == {
        "vtime": 123456789, "delta": -42, "boosted": True, "comm": "kworker/0:1",
        "mode": "MODE_BUSY", "f": {"a": 5, "b": 17, "c": 7},
        "as_u32": 0x04030201, "bytes": [1, 2, 3, 4],  # the anonymous union, flattened
        "owner": "0xffff888012345678", "hist": [1, 2, 3]}


def test_unknown_enum_values_and_binary_chars_stay_numbers(btf):
    tid = btf.find("task_ctx")
    buf = bytearray(task_ctx_bytes(btf))
    struct.pack_into("<I", buf, btf.member(tid, "mode").offset, 9)
    off = btf.member(tid, "comm").offset
    buf[off:off + 3] = b"\xff\x01\x00"
    v = render(btf, tid, bytes(buf))
    assert v["mode"] == 9
    assert v["comm"][:3] == [-1, 1, 0]  # char is signed on the BPF target


def test_a_value_cut_short_renders_what_is_there(btf):
    v = render(btf, btf.find("task_ctx"), task_ctx_bytes(btf)[:12])
    assert v["vtime"] == 123456789 and v["delta"] == -42
    assert v["owner"] is None and v["hist"] == [None, None, None]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 40))
def test_random_bytes_never_raise(btf, data, tid):
    render(btf, tid, data)


def test_the_objects_name_comes_from_its_global_data_maps():
    maps = [FailureDumpMap("stats", 6), FailureDumpMap("scx_ktst.bss", 2),
            FailureDumpMap("scx_ktst.rodata", 2), FailureDumpMap(".data.uei_dump", 2)]
    assert active_obj_name(maps) == "scx_ktst"
    assert active_obj_name(maps + [FailureDumpMap("other.bss", 2)]) is None


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_a_corrupt_program_btf_is_refused_or_renders_without_raising(btf, data):
    """A guest's map BTF is untrusted: flip bytes anywhere in a real one; parsing either
    refuses it with BtfError or gives types whose rendering never raises."""
    from ktstr_vmm.introspect.btf_types import BtfError

    raw = bytearray(btf._data)
    for _ in range(data.draw(st.integers(1, 8))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    try:
        bad = Btf.from_bytes(bytes(raw))
    except BtfError:
        return
    value = data.draw(st.binary(max_size=128))
    for tid in range(bad.nr_types + 1):
        render(bad, tid, value)
