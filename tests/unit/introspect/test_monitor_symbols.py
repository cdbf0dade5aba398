"""symbols.py: kallsyms, System.map and ELF symtab sources, the per-build-id cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from ktstr_vmm.introspect.symbols import (
    kernel_symbols,
    parse_system_map,
    read_elf_symbols,
    read_system_map,
)


def test_system_map_lines():
    text = ("ffffffff81000000 T _text\nffffffff83cf65c0 D runqueues\n"
            "garbage line\nffffffff829340e0 R __per_cpu_offset\n")
    assert parse_system_map(text) == {"_text": 0xFFFFFFFF81000000,
                                      "runqueues": 0xFFFFFFFF83CF65C0,
                                      "__per_cpu_offset": 0xFFFFFFFF829340E0}


def test_stub_system_map_is_ignored(tmp_path):
    stub = tmp_path / "System.map"
    stub.write_text("ffffffffffffffff B The real System.map is in the linux-image-<version>-dbg "
                    "package\n")
    assert read_system_map(stub) == {}
    real = tmp_path / "real.map"
    real.write_text("".join(f"{0xffffffff81000000 + i:016x} T f{i}\n" for i in range(1500)))
    assert len(read_system_map(real)) == 1500
    assert read_system_map(tmp_path / "absent") == {}


def test_elf_symtab_of_a_host_binary_and_a_stripped_kernel(kernel):
    assert read_elf_symbols(kernel.vmlinux) == {}  # Debian's vmlinux is stripped
    assert read_elf_symbols(Path("/nonexistent")) == {}
    assert isinstance(read_elf_symbols(Path(shutil.which("python3"))), dict)


def test_kallsyms_win_and_are_cached_per_build_id(tmp_path, monkeypatch):
    monkeypatch.setenv("KTSTR_CACHE", str(tmp_path))
    kernel_symbols("abc", kallsyms={"runqueues": 0x1000})  # not vouched for: not cached
    assert not (tmp_path / "symbols" / "abc.json").exists()
    s = kernel_symbols("abc", kallsyms={"runqueues": 0x1000, "bad": -1}, remember=True)
    assert s.get("runqueues") == 0x1000 and "bad" not in s
    assert s.sources == ("kallsyms",)
    cached = json.loads((tmp_path / "symbols" / "abc.json").read_text())
    assert cached == {"runqueues": 0x1000}
    later = kernel_symbols("abc", kallsyms={"scx_root": 0x2000}, remember=True)
    assert later.get("runqueues") == 0x1000 and later.get("scx_root") == 0x2000
    assert later.sources == ("kallsyms", "cache")
    assert later.missing(["runqueues", "jiffies"]) == ["jiffies"]
    (tmp_path / "symbols" / "abc.json").write_text("{broken")
    assert kernel_symbols("abc").addrs == {}


@given(st.text(max_size=300))
def test_system_map_parser_never_raises(text):
    assert isinstance(parse_system_map(text), dict)
