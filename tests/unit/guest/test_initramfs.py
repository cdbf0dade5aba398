"""initramfs.py / elfdeps.py: the archive parses back exactly, carries a real binary's
library closure with its interpreter, is cached by content, and fails in one line."""

from __future__ import annotations

import gzip
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import REPO

from ktstr_vmm.errors import BuildError
from ktstr_vmm.guest.elfdeps import ld_conf_dirs, library_closure, read_elf
from ktstr_vmm.guest.initramfs import CpioWriter, build_initramfs

GCC = shutil.which("gcc")
needs_gcc = pytest.mark.skipif(GCC is None, reason="gcc is not installed")


def read_cpio(data: bytes) -> dict[str, tuple[int, bytes, tuple[int, int]]]:
    """A strict newc reader: name -> (mode, data, (rdevmajor, rdevminor))."""
    out: dict[str, tuple[int, bytes, tuple[int, int]]] = {}
    pos = 0
    while True:
        assert data[pos:pos + 6] == b"070701", f"bad magic at {pos}"
        fields = [int(data[pos + 6 + 8 * i: pos + 14 + 8 * i], 16) for i in range(13)]
        mode, filesize, rmaj, rmin, namesize = (fields[1], fields[6], fields[9], fields[10],
                                                fields[11])
        name_start = pos + 110
        name = data[name_start:name_start + namesize - 1].decode()
        assert data[name_start + namesize - 1] == 0
        body = name_start + namesize + (-(110 + namesize) % 4)
        assert body % 4 == 0
        if name == "TRAILER!!!":
            assert data[body:].strip(b"\0") == b""
            return out
        assert name not in out, f"{name} twice"
        out[name] = (mode, data[body:body + filesize], (rmaj, rmin))
        pos = body + filesize + (-filesize % 4)


def unpack(path: Path) -> dict[str, tuple[int, bytes, tuple[int, int]]]:
    return read_cpio(gzip.decompress(path.read_bytes()))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KTSTR_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def static_agent(tmp_path_factory) -> Path:
    """A real static binary standing in for the agent (the engine tests' init)."""
    if GCC is None:
        pytest.skip("gcc is not installed")
    src = REPO / "native/testguests/poweroff-init.c"
    out = tmp_path_factory.mktemp("agent") / "init"
    subprocess.run([GCC, "-static", "-O2", "-o", str(out), str(src)], check=True, timeout=120)
    return out


def test_archive_holds_init_spec_console_and_mount_points(cache, static_agent):
    out = build_initramfs(static_agent, "topology 1n2l2c1t\n", {})
    entries = unpack(out)
    mode, body, _ = entries["init"]
    assert mode == stat.S_IFREG | 0o755
    assert body == static_agent.read_bytes()
    assert entries["ktstr/spec"][:2] == (stat.S_IFREG | 0o644, b"topology 1n2l2c1t\n")
    assert entries["dev/console"][0] == stat.S_IFCHR | 0o600
    assert entries["dev/console"][2] == (5, 1)
    for d in ("dev", "proc", "sys", "tmp", "run", "ktstr"):
        assert entries[d][0] == stat.S_IFDIR | 0o755
    # A static agent brings no libraries and no loader.
    assert not any(n.startswith(("lib", "usr")) for n in entries)


def test_dynamic_binary_brings_its_library_closure_and_interpreter(cache, static_agent):
    qemu_img = Path("/usr/bin/qemu-img")
    if not qemu_img.exists():
        pytest.skip("qemu-img (qemu-utils) is not installed")
    entries = unpack(build_initramfs(static_agent, "", {"/bin/sched": qemu_img}))
    assert entries["bin/sched"] == (stat.S_IFREG | 0o755, qemu_img.read_bytes(), (0, 0))
    info = read_elf(qemu_img)
    assert info is not None and info.interp
    interp = entries[info.interp.lstrip("/")]
    assert stat.S_ISREG(interp[0]) and interp[1] == Path(info.interp).resolve().read_bytes()
    names = {Path(n).name: n for n in entries}
    for soname in ("libc.so.6", "libglib-2.0.so.0", "libz.so.1"):
        mode, body, _ = entries[names[soname]]
        assert stat.S_ISREG(mode), f"{soname} must be a real file, not a symlink"
        host = Path("/" + names[soname])
        assert body == host.resolve().read_bytes()
    # Every DT_NEEDED of every packed library is packed too (the closure is closed).
    packed = set(names)
    for name, (mode, _, _) in entries.items():
        if stat.S_ISREG(mode) and name.startswith(("lib", "usr/lib")):
            needed = read_elf(Path("/" + name).resolve())
            assert needed is not None
            assert set(needed.needed) <= packed | {Path(info.interp).name}, name


def test_same_inputs_give_the_same_cached_file(cache, static_agent):
    a = build_initramfs(static_agent, "spec\n", {})
    first = (a.stat().st_ino, a.read_bytes())
    b = build_initramfs(static_agent, "spec\n", {})
    c = build_initramfs(static_agent, "other spec\n", {})
    assert a == b and (b.stat().st_ino, b.read_bytes()) == first  # not rewritten
    assert c != a
    assert a.parent == cache / "initramfs"
    assert sorted(p.name for p in a.parent.iterdir()) == sorted([a.name, c.name])


def test_the_cache_keeps_the_most_recently_used_archives(cache, static_agent, monkeypatch):
    import ktstr_vmm.guest.initramfs as initramfs

    monkeypatch.setattr(initramfs, "CACHE_KEEP", 2)
    a = build_initramfs(static_agent, "a\n", {})
    b = build_initramfs(static_agent, "b\n", {})
    os.utime(a, (1, 1))
    os.utime(b, (2, 2))
    assert build_initramfs(static_agent, "a\n", {}) == a  # a hit makes `a` the newest
    c = build_initramfs(static_agent, "c\n", {})
    assert sorted(p.name for p in (cache / "initramfs").iterdir()) == sorted([a.name, c.name])


def test_explicit_out_path_is_written_there(tmp_path, cache, static_agent):
    out = build_initramfs(static_agent, "x\n", {}, out=tmp_path / "i.cpio.gz")
    assert out == tmp_path / "i.cpio.gz"
    assert unpack(out)["ktstr/spec"][1] == b"x\n"
    assert not (cache / "initramfs").exists()


def _cc(args: list[str], cwd: Path) -> None:
    subprocess.run([GCC, *args], cwd=cwd, check=True, timeout=120, capture_output=True)


@needs_gcc
def test_missing_library_is_a_one_line_error_naming_binary_and_library(tmp_path, cache,
                                                                        static_agent):
    (tmp_path / "m.c").write_text("int ktstr_missing(void) { return 1; }\n")
    (tmp_path / "main.c").write_text("int ktstr_missing(void);\n"
                                     "int main(void) { return ktstr_missing(); }\n")
    _cc(["-shared", "-fPIC", "-o", "libktstrmissing.so", "m.c"], tmp_path)
    _cc(["-o", "prog", "main.c", "-L.", "-lktstrmissing"], tmp_path)
    (tmp_path / "libktstrmissing.so").unlink()
    with pytest.raises(BuildError) as e:
        build_initramfs(static_agent, "", {"/bin/sched": tmp_path / "prog"})
    assert e.value.one_line() == (
        f"{tmp_path / 'prog'}: shared library libktstrmissing.so not found "
        "(install it on this host or link the binary statically)")


@needs_gcc
def test_origin_runpath_is_resolved_where_the_binary_sits_in_the_guest(tmp_path, cache,
                                                                       static_agent):
    (tmp_path / "lib").mkdir()
    (tmp_path / "bin").mkdir()
    (tmp_path / "m.c").write_text("int ktstr_dep(void) { return 0; }\n")
    (tmp_path / "main.c").write_text("int ktstr_dep(void);\nint main(void) { return ktstr_dep(); }\n")
    _cc(["-shared", "-fPIC", "-o", "lib/libktstrdep.so", "m.c"], tmp_path)
    _cc(["-o", "bin/prog", "main.c", "-Llib", "-lktstrdep", "-Wl,--enable-new-dtags",
         "-Wl,-rpath,$ORIGIN/../lib"], tmp_path)
    closure = library_closure(tmp_path / "bin/prog", "/opt/sched/bin/prog")
    assert closure.files["/opt/sched/lib/libktstrdep.so"] == tmp_path / "lib/libktstrdep.so"
    entries = unpack(build_initramfs(static_agent, "", {"/opt/sched/bin/prog": tmp_path / "bin/prog"}))
    assert entries["opt/sched/lib/libktstrdep.so"][1] == (tmp_path / "lib/libktstrdep.so").read_bytes()


def test_non_elf_files_are_copied_with_their_mode(tmp_path, cache, static_agent):
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o750)
    entries = unpack(build_initramfs(static_agent, "", {"/usr/local/bin/run.sh": script}))
    assert entries["usr/local/bin/run.sh"][:2] == (stat.S_IFREG | 0o750, script.read_bytes())
    assert entries["usr/local/bin"][0] == stat.S_IFDIR | 0o755


@pytest.mark.parametrize("bad", ["relative/x", "/a/../etc/x", "/a/./b", "/", "/TRAILER!!!"])
def test_bad_guest_paths_are_refused(bad, cache, static_agent, tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(BuildError, match="bad guest path"):
        build_initramfs(static_agent, "", {bad: f})


def test_a_guest_path_cannot_be_given_twice(cache, static_agent):
    with pytest.raises(BuildError, match=r"guest path /init is given twice"):
        build_initramfs(static_agent, "", {"/init": static_agent})


def test_symlinks_and_devices_round_trip():
    w = CpioWriter()
    w.symlink("/lib64", "usr/lib64")
    w.file("/usr/lib64/x", b"abc", 0o4755)
    w.chardev("/dev/null", 1, 3, 0o666)
    entries = read_cpio(w.getvalue())
    assert entries["lib64"] == (stat.S_IFLNK | 0o777, b"usr/lib64", (0, 0))
    assert entries["usr/lib64/x"][:2] == (stat.S_IFREG | 0o4755, b"abc")
    assert entries["usr"][0] == stat.S_IFDIR | 0o755
    assert entries["dev/null"] == (stat.S_IFCHR | 0o666, b"", (1, 3))


_segment = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FF,
                                          blacklist_characters="/"),
                   min_size=1, max_size=12).filter(lambda s: s not in (".", ".."))


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.lists(_segment, min_size=1, max_size=4).map(lambda p: "/" + "/".join(p)),
                       st.binary(max_size=300), max_size=8))
def test_any_tree_of_files_round_trips(files):
    w = CpioWriter()
    written = {}
    for path, data in sorted(files.items()):
        try:
            w.file(path, data, 0o640)
        except BuildError:  # a file where another entry needs a directory, cpio's
            # end marker "TRAILER!!!" as a top-level name: refused
            continue
        written[path.lstrip("/")] = data
    entries = read_cpio(w.getvalue())
    for name, data in written.items():
        assert entries[name] == (stat.S_IFREG | 0o640, data, (0, 0))


def test_ld_so_conf_includes_are_followed_in_order(tmp_path):
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d/b.conf").write_text("/opt/b/lib\n")
    (tmp_path / "conf.d/a.conf").write_text("# comment\n/opt/a/lib/  \n")
    (tmp_path / "ld.so.conf").write_text(f"/first\ninclude {tmp_path}/conf.d/*.conf\n/last\n")
    assert ld_conf_dirs(tmp_path / "ld.so.conf") == ["/first", "/opt/a/lib", "/opt/b/lib", "/last"]


def test_unreadable_elf_is_a_build_error(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x7fELF" + b"\xff" * 40)
    with pytest.raises(BuildError, match="cannot read ELF file"):
        read_elf(bad)


@pytest.mark.vm
@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None,
                    reason="qemu-system-x86_64 is not installed")
def test_a_built_scheduler_loads_its_libraries_in_the_guest(kernel, schedulers, static_agent,
                                                             tmp_path):
    """The closure is not just packed but right: the guest's loader starts scx_simple
    (run as `scx_simple -h` by the test init)."""
    from ktstr_vmm.engine.base import BootSpec
    from ktstr_vmm.engine.qemu import QemuEngine
    from ktstr_vmm.spec import PRESETS

    sched = schedulers["scx_simple"].path
    initrd = build_initramfs(static_agent, "", {"/usr/bin/scx_simple": sched},
                             out=tmp_path / "initramfs.cpio.gz")
    names = set(unpack(initrd))
    assert {"lib64/ld-linux-x86-64.so.2", "lib/x86_64-linux-gnu/libc.so.6",
            "lib/x86_64-linux-gnu/libelf.so.1", "lib/x86_64-linux-gnu/libz.so.1"} <= names
    spec = BootSpec(kernel=kernel.bzimage, initramfs=initrd,
                    cmdline="console=ttyS0 panic=-1 nokaslr quiet ktmode=exec "
                            "ktexec=/usr/bin/scx_simple",
                    topology=PRESETS["tiny-1llc"], memory_mib=256,
                    console_path=tmp_path / "console.log", workdir=tmp_path / "work")
    with QemuEngine().start(spec) as m:
        assert m.wait(120) == 0
    console = (tmp_path / "console.log").read_text(errors="replace")
    # The loader found every library: scx_simple's own code ran (libbpf looks for the
    # kernel's BTF in sysfs, which this bare init does not mount, and gives up).
    assert "error while loading shared libraries" not in console
    assert "libbpf: kernel BTF is missing at '/sys/kernel/btf/vmlinux'" in console, console[-2000:]
    assert "KT exec status=1" in console
