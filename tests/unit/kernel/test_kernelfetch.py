"""`ktstr kernel fetch` for real: from the archive this machine's apt configuration names."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ktstr_vmm.errors import FetchError, UsageError
from ktstr_vmm.kernel import cache as kernelcache
from ktstr_vmm.kernel.fetch import fetch_kernel, fetch_outcome
from ktstr_vmm.progress import Progress


def ktstr_popen(*args: str, cache: Path) -> subprocess.Popen:
    env = dict(os.environ, KTSTR_CACHE=str(cache), CI="true")
    return subprocess.Popen([sys.executable, "-m", "ktstr_cli", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def holds_open(pid: int, path: Path) -> bool:
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    for fd in fds:
        try:
            if Path(os.readlink(fd)) == path:
                return True
        except OSError:
            pass
    return False


def test_cached_fetch_returns_at_once_without_the_network(kernel):
    apt_lists = kernel.dir.parent / ".apt" / "lists"
    before = {p: p.stat().st_mtime for p in apt_lists.glob("*")} if apt_lists.is_dir() else {}
    t0 = time.monotonic()
    k = fetch_kernel()
    assert time.monotonic() - t0 < 1.0
    assert k == kernel
    after = {p: p.stat().st_mtime for p in apt_lists.glob("*")} if apt_lists.is_dir() else {}
    assert after == before  # no apt-get update


def test_cached_fetch_cli_says_already_cached(kernel):
    env = dict(os.environ, CI="true")
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "ktstr_cli", "kernel", "fetch"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"kernel {kernel.version} (already cached): {kernel.dir}\n"
    assert time.monotonic() - t0 < 5.0  # interpreter start-up included


def test_no_apt_configuration_says_to_pass_kernel(tmp_path, monkeypatch):
    monkeypatch.setenv("KTSTR_CACHE", str(tmp_path / "cache"))
    etc = tmp_path / "etc-apt"
    etc.mkdir()
    with pytest.raises(UsageError) as e:
        fetch_outcome(Progress(), apt_etc=etc)
    assert e.value.exit_code == 2
    assert e.value.one_line() == (f"no Debian archive URI in the apt configuration under {etc} "
                                  "(pass --kernel PATH with your own sched_ext kernel)")
    assert sorted(p.name for p in (tmp_path / "cache/kernels").iterdir()) == [".lock"]


@pytest.mark.slow
def test_unreachable_archive_is_a_clear_fetch_error(tmp_path, monkeypatch):
    monkeypatch.setenv("KTSTR_CACHE", str(tmp_path / "cache"))
    etc = tmp_path / "etc-apt"
    etc.mkdir()
    (etc / "sources.list").write_text("deb http://127.0.0.1:9/debian bookworm main\n")
    with pytest.raises(FetchError) as e:
        fetch_outcome(Progress(), apt_etc=etc)
    assert e.value.one_line() == (
        "cannot reach the Debian archive http://127.0.0.1:9/debian (apt-get update got no "
        "package list for trixie-backports) (check the network and the apt configuration, "
        "or pass --kernel PATH)")
    kernels = tmp_path / "cache/kernels"
    assert not [p for p in kernels.iterdir() if not p.name.startswith(".")]
    assert not list(kernels.glob(".tmp-*"))


@pytest.mark.slow
def test_two_concurrent_fetches_download_once_and_both_succeed(kernel, tmp_path, monkeypatch):
    """Both processes wait on the lock we hold, then exactly one downloads."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("KTSTR_CACHE", str(cache))
    lock = cache / "kernels" / ".lock"
    with kernelcache.locked():
        procs = [ktstr_popen("kernel", "fetch", cache=cache) for _ in range(2)]
        deadline = time.monotonic() + 60
        while not all(holds_open(p.pid, lock) for p in procs):
            assert time.monotonic() < deadline, "the fetches never reached the lock"
            assert all(p.poll() is None for p in procs), "a fetch ended while we held the lock"
            time.sleep(0.05)
        assert not (cache / "kernels" / kernel.version).exists()
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e for _, e in outs]
    stdouts = sorted(o for o, _ in outs)
    final = cache / "kernels" / kernel.version
    assert stdouts[0] == f"kernel {kernel.version} (already cached): {final}\n"
    assert stdouts[1].startswith(f"kernel {kernel.version} (fetched in ")
    assert stdouts[1].endswith(f"): {final}\n")
    downloads = [line for _, e in outs for line in e.splitlines()
                 if line.startswith("ktstr: downloading linux-binary-unsigned-") and "%" not in line]
    assert len(downloads) == 1
    assert sorted(p.name for p in (cache / "kernels").iterdir()) == [".apt", ".lock",
                                                                      kernel.version]
    assert (final / "kernel.json").is_file()
    assert (final / "vmlinux").read_bytes() == kernel.vmlinux.read_bytes()


@pytest.mark.slow
def test_full_disk_during_fetch_keeps_nothing(kernel, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(mnt)],
                       capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        p = ktstr_popen("kernel", "fetch", cache=mnt)
        out, err = p.communicate(timeout=600)
        assert p.returncode == 2, err
        assert err.splitlines()[-1] == (
            f"ktstr: error: the disk holding {mnt}/kernels is full (while writing kernel "
            f"{kernel.version}); nothing was kept (free some space, or set KTSTR_CACHE to "
            "another disk)")
        assert sorted(p.name for p in (mnt / "kernels").iterdir()) == [".apt", ".lock"]
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True, timeout=30)
