"""Kernel resolution (--kernel PATH), the sched_ext/BTF checks and bzImage -> vmlinux, against
the real cached Debian kernel (fixture `kernel`) and copies of it changed on purpose."""

from __future__ import annotations

import gzip
import lzma
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import zstandard
from elftools.elf.elffile import ELFFile
from hypothesis import given, settings
from hypothesis import strategies as st

from ktstr_vmm.errors import KernelError
from ktstr_vmm.kernel import vmlinux
from ktstr_vmm.kernel.kernels import cached_kernels, check_kernel, read_config, resolve_kernel

HINT_PATH = ("pass --kernel with a bzImage, a vmlinux or a kernel build tree, "
             "or run ktstr kernel fetch")
HINT_SCX = ("pass --kernel with a kernel built with CONFIG_SCHED_CLASS_EXT=y, "
            "or run ktstr kernel fetch")
HINT_BTF = ("pass --kernel with a kernel built with CONFIG_DEBUG_INFO_BTF=y, "
            "or run ktstr kernel fetch")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty kernel cache (KTSTR_CACHE) for user-kernel imports."""
    root = tmp_path / "cache"
    monkeypatch.setenv("KTSTR_CACHE", str(root))
    return root


def ktstr(*args: str, cache: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, KTSTR_CACHE=str(cache), CI="true")
    return subprocess.run([sys.executable, "-m", "ktstr_cli", *args], capture_output=True,
                          text=True, timeout=120, env=env)


def build_tree(root: Path, kernel, config_text: str | None = None) -> Path:
    """A kernel build tree layout whose files are the real kernel's (symlinks)."""
    (root / "arch/x86/boot").mkdir(parents=True)
    (root / "arch/x86/boot/bzImage").symlink_to(kernel.bzimage)
    (root / "vmlinux").symlink_to(kernel.vmlinux)
    if config_text is None:
        (root / ".config").symlink_to(kernel.config)
    else:
        (root / ".config").write_text(config_text)
    return root


def leftovers(cache: Path) -> list[str]:
    d = cache / "kernels"
    return sorted(p.name for p in d.iterdir() if p.name not in (".lock",)) if d.is_dir() else []


# --- the real kernel ----------------------------------------------------------------------

def test_fetched_kernel_has_its_files_and_passes_checks(kernel):
    assert kernel.origin == "debian"
    assert kernel.version.endswith("-cloud-amd64")
    assert (kernel.dir / "kernel.json").is_file()
    for p in (kernel.bzimage, kernel.vmlinux, kernel.config, kernel.system_map):
        assert p.is_file() and p.parent == kernel.dir
    assert read_config(kernel.config.read_text())["CONFIG_SCHED_CLASS_EXT"] == "y"
    assert kernel.sched_ext and kernel.has_btf
    assert len(kernel.build_id) == 40
    check_kernel(kernel)


def test_vmlinux_extracted_from_the_real_bzimage_is_the_btf_elf_with_its_build_id(
        kernel, tmp_path):
    out = tmp_path / "vmlinux"
    vmlinux.extract_vmlinux(kernel.bzimage, out)
    assert out.read_bytes()[:4] == b"\x7fELF"
    assert vmlinux.elf_build_id(out) == kernel.build_id
    with open(out, "rb") as f:
        elf = ELFFile(f)
        assert elf.get_section_by_name(".BTF") is not None
        xen_types = {n["n_type"] for s in elf.iter_sections() if s["sh_type"] == "SHT_NOTE"
                     for n in s.iter_notes() if n["n_name"] == "Xen"}
    assert 18 in xen_types  # XEN_ELFNOTE_PHYS32_ENTRY: bootable through PVH
    strings = vmlinux.btf_strings(out)
    assert vmlinux.btf_has_name(strings, "sched_ext_ops")
    assert not vmlinux.btf_has_name(strings, "sched_ext_op")


def test_bzimage_header_names_the_release(kernel):
    hdr = vmlinux.read_bzimage_header(kernel.bzimage.read_bytes()[:0x10000])
    assert hdr.release.split(" ")[0] == kernel.release
    assert hdr.protocol >= 0x208


# --- --kernel PATH -------------------------------------------------------------------------

def test_bare_bzimage_gets_a_user_entry_with_the_vmlinux_extracted(kernel, cache, tmp_path):
    bz = tmp_path / "bzImage"
    shutil.copyfile(kernel.bzimage, bz)
    k = resolve_kernel(str(bz))
    assert k.origin == "user" and k.version.startswith("user-") and len(k.version) == 17
    assert k.dir == cache / "kernels" / k.version
    assert k.build_id == kernel.build_id
    assert k.config is None  # no config: sched_ext and BTF were read from the BTF
    assert k.release == kernel.release
    assert k.source == str(bz)
    assert resolve_kernel(str(bz)) == k  # second time: the same cache entry
    assert [c.version for c in cached_kernels()] == [k.version]


def test_vmlinux_alone_is_a_kernel_booted_through_pvh(kernel, cache, tmp_path):
    vm = tmp_path / "vmlinux"
    vm.symlink_to(kernel.vmlinux)
    k = resolve_kernel(str(vm))
    assert k.origin == "user"
    assert k.bzimage == k.vmlinux == k.dir / "vmlinux"
    assert k.build_id == kernel.build_id


def test_build_tree_and_its_bzimage_resolve_to_the_same_kernel(kernel, cache, tmp_path):
    tree = build_tree(tmp_path / "linux", kernel)
    k = resolve_kernel(str(tree))
    assert k.config is not None
    assert k.config.read_text() == kernel.config.read_text()
    assert k.vmlinux.read_bytes()[:4] == b"\x7fELF" and k.build_id == kernel.build_id
    assert resolve_kernel(str(tree / "arch/x86/boot/bzImage")).version == k.version


def test_cached_version_name_is_accepted(kernel):
    assert resolve_kernel(kernel.version) == kernel


def test_a_cached_kernels_own_files_resolve_to_it(kernel):
    assert resolve_kernel(str(kernel.bzimage)) == kernel
    assert resolve_kernel(str(kernel.vmlinux)) == kernel
    assert resolve_kernel(str(kernel.dir)) == kernel


def test_config_without_sched_ext_is_refused_and_nothing_is_cached(kernel, cache, tmp_path):
    text = kernel.config.read_text().replace("CONFIG_SCHED_CLASS_EXT=y",
                                             "# CONFIG_SCHED_CLASS_EXT is not set")
    tree = build_tree(tmp_path / "linux", kernel, text)
    with pytest.raises(KernelError) as e:
        resolve_kernel(str(tree))
    assert e.value.one_line() == (
        f"kernel {tree} has no sched_ext (CONFIG_SCHED_CLASS_EXT is not set) ({HINT_SCX})")
    assert leftovers(cache) == []
    r = ktstr("kernel", "info", "--kernel", str(tree), cache=cache)
    assert r.returncode == 2
    assert r.stderr == (f"ktstr: error: kernel {tree} has no sched_ext "
                        f"(CONFIG_SCHED_CLASS_EXT is not set) ({HINT_SCX})\n")
    assert leftovers(cache) == []


def test_config_without_btf_is_refused(kernel, cache, tmp_path):
    text = kernel.config.read_text().replace("CONFIG_DEBUG_INFO_BTF=y",
                                             "# CONFIG_DEBUG_INFO_BTF is not set")
    tree = build_tree(tmp_path / "linux", kernel, text)
    with pytest.raises(KernelError) as e:
        resolve_kernel(str(tree))
    assert e.value.one_line() == (
        f"kernel {tree} has no BTF (CONFIG_DEBUG_INFO_BTF is not set) ({HINT_BTF})")


def test_a_changed_config_is_another_kernel(kernel, cache, tmp_path):
    a = resolve_kernel(str(build_tree(tmp_path / "a", kernel)))
    b = resolve_kernel(str(build_tree(tmp_path / "b", kernel,
                                      kernel.config.read_text() + "# local change\n")))
    assert a.version != b.version


@pytest.mark.parametrize("content, why", [
    (b"hello, I am a text file\n", "neither a bzImage nor an ELF vmlinux"),
    (b"", "neither a bzImage nor an ELF vmlinux"),
])
def test_a_file_that_is_not_a_kernel_is_refused_with_exit_2(cache, tmp_path, content, why):
    f = tmp_path / "notakernel"
    f.write_bytes(content)
    r = ktstr("kernel", "path", "--kernel", str(f), cache=cache)
    assert r.returncode == 2
    assert r.stderr == f"ktstr: error: {f} is not a kernel ({why}) ({HINT_PATH})\n"
    assert leftovers(cache) == []


def test_an_elf_program_is_not_a_kernel(cache):
    true = shutil.which("true")
    with pytest.raises(KernelError) as e:
        resolve_kernel(true)
    assert e.value.message == f"{true} is not a kernel (an ELF file without a Linux version banner)"


def test_a_bzimage_with_a_broken_payload_is_refused_and_nothing_is_cached(cache, tmp_path):
    f = tmp_path / "bzImage"
    f.write_bytes(fake_bzimage(b"\x28\xb5\x2f\xfd" + b"garbage" * 100))
    with pytest.raises(KernelError) as e:
        resolve_kernel(str(f))
    assert e.value.message.startswith(f"{f} is not a kernel (corrupt compressed kernel: ")
    assert leftovers(cache) == []


def test_missing_path_and_empty_cache(cache, tmp_path):
    with pytest.raises(KernelError) as e:
        resolve_kernel(str(tmp_path / "nope"))
    assert e.value.one_line() == f"kernel {tmp_path / 'nope'} does not exist ({HINT_PATH})"
    r = ktstr("kernel", "path", cache=cache)
    assert r.returncode == 2
    assert r.stderr == ("ktstr: error: no kernel in the cache "
                        "(run ktstr kernel fetch, or pass --kernel PATH)\n")


def test_directory_without_kernel_files_is_not_a_build_tree(cache, tmp_path):
    with pytest.raises(KernelError) as e:
        resolve_kernel(str(tmp_path))
    assert e.value.message == (f"{tmp_path} is not a kernel build tree "
                               "(no arch/x86/boot/bzImage and no vmlinux)")


def test_incomplete_cache_dir_never_counts(kernel, cache):
    half = cache / "kernels" / "99.0.0+deb13-cloud-amd64"
    half.mkdir(parents=True)
    shutil.copyfile(kernel.bzimage, half / "bzImage")  # no kernel.json: a fetch that died
    assert cached_kernels() == []


# --- bzImage payloads ------------------------------------------------------------------------

def fake_bzimage(payload: bytes, setup_sects: int = 1, trailer: bytes = b"\0\0\0\0pad") -> bytes:
    """A minimal bzImage: boot sector + setup header (protocol 2.15) + payload + trailer."""
    setup = bytearray((setup_sects + 1) * 512)
    setup[0x1F1] = setup_sects
    setup[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", setup, 0x206, 0x20F)
    struct.pack_into("<II", setup, 0x248, 0x100, len(payload))
    pm = bytearray(0x100) + payload + trailer
    return bytes(setup) + bytes(pm)


@pytest.mark.parametrize("compress", [
    zstandard.ZstdCompressor().compress, gzip.compress,
    lambda b: lzma.compress(b, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32),
], ids=["zstd", "gzip", "xz"])
def test_each_compression_extracts_the_exact_elf_despite_trailing_bytes(tmp_path, compress):
    elf = Path(shutil.which("true")).read_bytes()
    bz = tmp_path / "bzImage"
    bz.write_bytes(fake_bzimage(compress(elf)))
    vmlinux.extract_vmlinux(bz, tmp_path / "vmlinux")
    assert (tmp_path / "vmlinux").read_bytes() == elf


def test_payload_found_by_magic_when_the_header_is_old(tmp_path):
    elf = Path(shutil.which("true")).read_bytes()
    data = bytearray(fake_bzimage(zstandard.ZstdCompressor().compress(elf)))
    struct.pack_into("<H", data, 0x206, 0x206)  # protocol 2.06: no payload_offset field
    bz = tmp_path / "bzImage"
    bz.write_bytes(bytes(data))
    vmlinux.extract_vmlinux(bz, tmp_path / "vmlinux")
    assert (tmp_path / "vmlinux").read_bytes() == elf


def test_a_payload_that_is_not_elf_is_refused(tmp_path):
    bz = tmp_path / "bzImage"
    bz.write_bytes(fake_bzimage(gzip.compress(b"not an elf" * 50)))
    with pytest.raises(vmlinux.ImageError, match="not an ELF kernel"):
        vmlinux.extract_vmlinux(bz, tmp_path / "vmlinux")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=0x400), st.booleans())
def test_header_parser_takes_any_bytes(data, plant):
    if plant and len(data) >= 0x206:
        data = data[:0x202] + b"HdrS" + data[0x206:]
    try:
        hdr = vmlinux.read_bzimage_header(data)
    except vmlinux.ImageError:
        return
    assert isinstance(hdr.release, str)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=4096))
def test_extraction_fails_only_with_image_error(tmp_path_factory, payload):
    d = tmp_path_factory.mktemp("x")
    bz = d / "bzImage"
    bz.write_bytes(fake_bzimage(b"\x1f\x8b\x08" + payload))
    with pytest.raises(vmlinux.ImageError):
        vmlinux.extract_vmlinux(bz, d / "vmlinux")


@given(st.text())
def test_config_parser_takes_any_text(text):
    opts = read_config(text)
    assert all(k.startswith("CONFIG_") for k in opts)


# --- a full disk -------------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A 24 MiB tmpfs (root only): too small for the 62 MB vmlinux."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)],
                       capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", str(mnt)], capture_output=True, timeout=30)


def test_full_disk_while_importing_leaves_nothing(kernel, small_disk, tmp_path):
    bz = tmp_path / "bzImage"
    shutil.copyfile(kernel.bzimage, bz)
    r = ktstr("kernel", "info", "--kernel", str(bz), cache=small_disk)
    assert r.returncode == 2
    assert r.stderr.startswith(f"ktstr: error: the disk holding {small_disk}/kernels is full "
                               "(while writing kernel user-")
    assert r.stderr.endswith("); nothing was kept (free some space, or set KTSTR_CACHE to "
                             "another disk)\n")
    assert leftovers(small_disk) == []
