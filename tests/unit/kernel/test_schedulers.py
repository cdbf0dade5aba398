"""`ktstr schedulers`: real builds against the real kernel, real binaries on the host."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ktstr_cli import main as cli
from ktstr_vmm.errors import FetchError, SchedulerError
from ktstr_vmm.kernel import source as kernelsource
from ktstr_vmm.kernel.kernels import Kernel
from ktstr_vmm.kernel.schedulers import (
    KTSTR,
    SchedulerBuildError,
    build_lock,
    build_schedulers,
    kernel_schedulers_dir,
    kernel_tool_targets,
    ktstr_sources,
    list_schedulers,
    make_schedulers,
    resolve_scheduler,
)
from ktstr_vmm.kernel.source import EXTRACT_PARTS, cached_source, fetch_source, source_series

HOST_HAS_SCHED_EXT = Path("/sys/kernel/sched_ext").is_dir()
# What the kernel's own loaders say on a host kernel without sched_ext (they probe the
# running kernel's BTF before they parse options).
NO_SCHED_EXT_COMPLAINTS = ("sched_ext_ops.dump() missing, kernel too old?",
                           "sched_ext_ops_cid.dump() missing, kernel too old?",
                           "Failed to set scheduler to SCHED_EXT")


def _fake_kernel(version: str = "7.3.4+deb13-cloud-amd64", release: str = "",
                 build_id: str = "00" * 20) -> Kernel:
    d = Path("/nonexistent")
    return Kernel(version=version, dir=d, bzimage=d / "bzImage", vmlinux=d / "vmlinux",
                  config=None, build_id=build_id, origin="debian", release=release)


def _run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


# --- the build ----------------------------------------------------------------------------

@pytest.mark.slow
def test_build_gives_every_kernel_tools_scheduler_and_scx_ktstr(kernel, schedulers):
    src = cached_source(source_series(kernel))
    assert src is not None
    tools = kernel_tool_targets(src.sched_ext_dir)
    assert "scx_simple" in tools
    assert sorted(schedulers) == sorted([*tools, KTSTR])
    for s in schedulers.values():
        assert s.kernel == kernel.build_id
        assert s.origin == ("ktstr" if s.name == KTSTR else "kernel-tools")
        assert s.path == kernel_schedulers_dir(kernel) / "bin" / s.name
        assert os.access(s.path, os.X_OK)
        assert s.built_at is not None and s.built_at <= time.time()


@pytest.mark.slow
def test_second_build_is_cached_and_fast(kernel, schedulers):
    t0 = time.monotonic()
    again = build_schedulers(kernel)
    assert time.monotonic() - t0 < 0.5
    assert {s.name: s for s in again} == schedulers


@pytest.mark.slow
def test_scx_ktstr_help_works_on_the_host(schedulers):
    p = subprocess.run([schedulers[KTSTR].path, "--help"], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == ("scx_ktstr: a global vtime (or FIFO) sched_ext scheduler that fails "
                        "on demand.")
    for opt in ("      --error-after MS    call scx_bpf_error() MS milliseconds after start",
                "      --exit-code CODE    the code --exit-after exits with (default 0)",
                "  -f, --fifo              FIFO scheduling instead of weighted vtime"):
        assert opt in lines
    for flag in ("--stall-after MS", "--exit-after MS", "--bad-dsq-after MS", "--timeout-ms MS"):
        assert flag in p.stdout


@pytest.mark.slow
def test_scx_ktstr_refuses_a_bad_delay_with_exit_2(schedulers):
    p = subprocess.run([schedulers[KTSTR].path, "--error-after", "soon"], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 2
    assert p.stderr == "scx_ktstr: bad value 'soon' for --error-after\n"


@pytest.mark.slow
def test_every_built_scheduler_runs_help_on_the_host(schedulers):
    """They are host binaries: the dynamic loader finds their libraries and they start.
    The kernel's own loaders check the running kernel for sched_ext before parsing options,
    so on a host without it they say so instead of printing their usage."""
    for s in schedulers.values():
        p = subprocess.run([s.path, "-h"], capture_output=True, text=True, timeout=30)
        text = p.stdout + p.stderr
        assert "error while loading shared libraries" not in text, s.name
        if s.name == KTSTR or HOST_HAS_SCHED_EXT:
            assert p.returncode == 0 and "Usage:" in text, (s.name, text)
        else:
            assert p.returncode == 1, (s.name, text)
            assert any(c in text for c in NO_SCHED_EXT_COMPLAINTS), (s.name, text)


# --- list / path --------------------------------------------------------------------------

@pytest.mark.slow
def test_list_shows_name_origin_kernel_build_time_and_path(capsys, kernel, schedulers):
    rc, out, _ = _run_cli(capsys, "schedulers", "list")
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "ORIGIN", "KERNEL", "BUILT", "(UTC)", "PATH"]
    rows = {ln.split()[0]: ln.split() for ln in lines[1:]}
    assert sorted(rows) == sorted(schedulers)
    name, origin, build_id, day, clock, path = rows["scx_simple"]
    assert (origin, build_id, path) == ("kernel-tools", kernel.build_id[:12],
                                        str(schedulers["scx_simple"].path))
    assert time.strptime(f"{day} {clock}", "%Y-%m-%d %H:%M:%S")
    assert rows[KTSTR][1] == "ktstr"


@pytest.mark.slow
def test_path_prints_the_binary_by_name_or_short_name(capsys, schedulers):
    rc, out, _ = _run_cli(capsys, "schedulers", "path", "scx_simple")
    assert (rc, out) == (0, f"{schedulers['scx_simple'].path}\n")
    rc, out, _ = _run_cli(capsys, "schedulers", "path", "ktstr")
    assert (rc, out) == (0, f"{schedulers[KTSTR].path}\n")


@pytest.mark.slow
def test_unknown_scheduler_names_the_known_ones_and_exits_2(capsys, schedulers):
    rc, out, err = _run_cli(capsys, "schedulers", "path", "scx_nope")
    assert (rc, out) == (2, "")
    known = ", ".join(sorted(schedulers))
    assert err == (f"ktstr: error: unknown scheduler 'scx_nope' (known: {known}; or pass a "
                   "path to a scheduler binary)\n")


def test_nothing_built_yet_says_how_to_build(tmp_path, monkeypatch):
    monkeypatch.setenv("KTSTR_CACHE", str(tmp_path))
    k = _fake_kernel()
    assert list_schedulers(k) == []
    with pytest.raises(SchedulerError) as e:
        resolve_scheduler("scx_simple", k)
    assert e.value.one_line() == ("unknown scheduler 'scx_simple': no schedulers are built for "
                                  "kernel 7.3.4+deb13-cloud-amd64 (run ktstr schedulers build, "
                                  "or pass a path to a scheduler binary)")
    assert e.value.exit_code == 2


def test_a_path_is_used_as_is(tmp_path):
    exe = tmp_path / "my_sched"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    s = resolve_scheduler(str(exe), _fake_kernel())
    assert (s.name, s.path, s.kernel, s.built_at, s.origin) == ("my_sched", exe, "", None,
                                                                  "path")
    exe.chmod(0o644)
    with pytest.raises(SchedulerError, match="is not executable"):
        resolve_scheduler(str(exe), _fake_kernel())
    with pytest.raises(SchedulerError) as e:
        resolve_scheduler(str(tmp_path / "gone"), _fake_kernel())
    assert e.value.message == f"scheduler binary {tmp_path / 'gone'} does not exist"


# --- a failed build -----------------------------------------------------------------------

@pytest.mark.slow
def test_failed_build_shows_the_compilers_last_lines(tmp_path, capsys, monkeypatch, kernel,
                                                     schedulers):
    """A broken copy of scx_ktstr through the same make as the real build: the error names
    the compiler's complaint and carries its last lines; the CLI prints them, no traceback."""
    bpf, loader = ktstr_sources()
    broken = tmp_path / "scx_ktbroken.bpf.c"
    broken.write_text(bpf.read_text().replace(
        "scx_bpf_dsq_move_to_local(SHARED_DSQ, 0);",
        "scx_bpf_dsq_move_to_local(SHARED_DSQ, 0);\n\tktstr_no_such_var++;"))
    (tmp_path / "scx_ktbroken.c").write_text(loader.read_text())
    src = cached_source(source_series(kernel))
    with build_lock(), pytest.raises(SchedulerBuildError) as e:
        make_schedulers(src.sched_ext_dir, kernel_schedulers_dir(kernel) / "work",
                        kernel.vmlinux, ["scx_ktbroken"],
                        extra_sources=[broken, tmp_path / "scx_ktbroken.c"],
                        log=tmp_path / "build.log")
    err = e.value
    assert err.message.startswith("building scx_ktbroken failed: scx_ktbroken.bpf.c:")
    assert err.message.endswith("error: use of undeclared identifier 'ktstr_no_such_var'")
    assert any("ktstr_no_such_var++;" in ln for ln in err.tail)
    assert "Error" in err.tail[-1] or "not remade" in err.tail[-1]
    assert err.hint == f"the compiler's last lines are above; full log: {tmp_path / 'build.log'}"
    assert not (src.sched_ext_dir / "scx_ktbroken.bpf.c").exists()  # the tree stays clean

    def fail(*a, **k):
        raise err

    monkeypatch.setattr("ktstr_cli.commands.schedulers.build_schedulers", fail)
    rc, out, stderr = _run_cli(capsys, "schedulers", "build")
    lines = stderr.splitlines()
    assert rc == 1
    assert lines[:-1] == list(err.tail)
    assert lines[-1] == f"ktstr: error: {err.one_line()}"
    assert "Traceback" not in stderr


# --- parsing ------------------------------------------------------------------------------

@given(x=st.integers(0, 99), y=st.integers(0, 99), rest=st.from_regex(r"([.+~\-][.+~\-a-z0-9]*)?",
                                                                       fullmatch=True))
def test_source_series_is_major_dot_minor(x, y, rest):
    assert source_series(_fake_kernel(version=f"{x}.{y}{rest}")) == f"{x}.{y}"
    assert source_series(_fake_kernel(version="user-abc", release=f"{x}.{y}{rest}")) == \
        f"{x}.{y}"


def test_kernel_tool_targets_read_the_makefile(tmp_path):
    (tmp_path / "Makefile").write_text(
        "all: all_targets\n\nc-sched-targets = scx_simple scx_cpu0  scx_qmap\n\n"
        "$(c-sched-targets): %: $(BINDIR)/%\n")
    assert kernel_tool_targets(tmp_path) == ["scx_simple", "scx_cpu0", "scx_qmap"]


# --- the kernel source cache ----------------------------------------------------------------

def _tiny_source_deb(tmp_path: Path, debs: Path) -> Path:
    """A real (small) linux-source-9.9 .deb: usr/src/linux-source-9.9.tar.xz holding every
    part the build extracts, plus one part it must leave out (drivers/)."""
    top = tmp_path / "t" / "linux-source-9.9"
    for part in EXTRACT_PARTS:
        (top / part).parent.mkdir(parents=True, exist_ok=True)
        if part == "Makefile":
            (top / part).write_text("VERSION = 9\n")
        else:
            (top / part).mkdir(exist_ok=True)
            (top / part / "README").write_text(part)
    (top / "tools/sched_ext").mkdir()
    (top / "tools/sched_ext/Makefile").write_text("c-sched-targets = scx_a scx_b\n")
    (top / "drivers").mkdir()
    (top / "drivers/x.c").write_text("")
    pkg = tmp_path / "pkg"
    (pkg / "usr/src").mkdir(parents=True)
    (pkg / "DEBIAN").mkdir()
    (pkg / "DEBIAN/control").write_text(
        "Package: linux-source-9.9\nVersion: 9.9.1-1\nArchitecture: all\n"
        "Maintainer: ktstr tests <t@example.org>\nDescription: tiny test source\n")
    subprocess.run(["tar", "-cJf", str(pkg / "usr/src/linux-source-9.9.tar.xz"), "-C",
                    str(top.parent), top.name], check=True, timeout=60)
    debs.mkdir(parents=True)
    deb = debs / "linux-source-9.9_9.9.1-1_all.deb"
    subprocess.run(["dpkg-deb", "--build", str(pkg), str(deb)], check=True, timeout=60,
                    capture_output=True)
    return deb


def test_source_tree_comes_from_a_downloaded_deb_when_the_archive_is_unreachable(
        tmp_path, monkeypatch):
    monkeypatch.setenv("KTSTR_CACHE", str(tmp_path / "cache"))
    _tiny_source_deb(tmp_path, tmp_path / "cache/sources/debs")

    def unreachable(*a, **k):
        raise FetchError("cannot reach the Debian archive")

    monkeypatch.setattr(kernelsource, "_newest_deb", unreachable)
    k = _fake_kernel(version="9.9.1+test-amd64")
    src = fetch_source(k)
    assert (src.package, src.version, src.label) == ("linux-source-9.9", "9.9.1-1",
                                                     "linux-source-9.9 9.9.1-1")
    assert src.tree == tmp_path / "cache/sources/linux-source-9.9_9.9.1-1"
    assert kernel_tool_targets(src.sched_ext_dir) == ["scx_a", "scx_b"]
    assert (src.tree / "kernel/bpf/README").read_text() == "kernel/bpf"
    assert not (src.tree / "drivers").exists()
    assert not list((tmp_path / "cache/sources").glob(".tmp-*"))
    assert fetch_source(k) == src  # cached: not even the fallback runs again


def test_no_source_and_no_archive_is_a_fetch_error(tmp_path, monkeypatch):
    monkeypatch.setenv("KTSTR_CACHE", str(tmp_path / "cache"))

    def unreachable(*a, **k):
        raise FetchError("cannot reach the Debian archive")

    monkeypatch.setattr(kernelsource, "_newest_deb", unreachable)
    with pytest.raises(FetchError, match="cannot reach the Debian archive"):
        fetch_source(_fake_kernel(version="9.9.1+test-amd64"))
