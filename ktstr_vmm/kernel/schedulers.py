"""sched_ext scheduler binaries: build them for a kernel, list them, resolve a name or path.

`build_schedulers(kernel)` builds the kernel's own tools/sched_ext schedulers (whatever
its Makefile's `c-sched-targets` lists: scx_simple, scx_qmap, ...) from the matching
linux-source tree (kernelsource.py), plus the project's scx_ktstr (native/schedulers/,
copied into the same tree for the build), with clang against the kernel's vmlinux BTF.
Binaries are cached per kernel build id; a second build returns at once. scx_ktstr is
rebuilt alone when its sources change.

Cache layout under paths.cache_dir()/"schedulers"/:
    .lock                     fcntl lock held while building (any kernel)
    <build_id>/bin/<name>     the binaries (host executables, dynamically linked)
    <build_id>/work/          make's O= directory (objects, libbpf, bpftool)
    <build_id>/build.log      output of the last make
    <build_id>/manifest.json  written last:
        {"format": 1, "kernel": "<build id>", "kernel_version": "7.3.4+deb13-cloud-amd64",
         "source": "linux-source-7.3 7.3.4-1~bpo13+1", "clang": "clang-19",
         "ktstr_digest": "<sha256 of native/schedulers/scx_ktstr.*>",
         "schedulers": [{"name": "scx_simple", "path": "bin/scx_simple",
                         "kernel": "<build id>", "built_at": <unix time>,
                         "origin": "kernel-tools" | "ktstr"}, ...]}
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import BuildError, SchedulerError
from ..fsutil import atomic_write_json, dir_lock
from ..paths import cache_dir, native_dir
from ..progress import Progress

if TYPE_CHECKING:
    from .kernels import Kernel

ORIGIN_KERNEL_TOOLS = "kernel-tools"
ORIGIN_KTSTR = "ktstr"
ORIGIN_PATH = "path"
KTSTR = "scx_ktstr"
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
BUILD_TIMEOUT_S = 1800.0
LOCK_TIMEOUT_S = 3600.0
TAIL_LINES = 20
CLANGS = (("clang-19", "llvm-strip-19"), ("clang", "llvm-strip"))
BUILD_HINT = "run ktstr schedulers build"
PATH_HINT = "or pass a path to a scheduler binary"


@dataclass(frozen=True)
class Scheduler:
    name: str            # "scx_simple", "scx_ktstr", or the file name of a user path
    path: Path
    kernel: str          # kernel build id it was built against ("" for user paths)
    built_at: float | None
    origin: str          # "kernel-tools" | "ktstr" | "path"


class SchedulerBuildError(BuildError):
    """make failed; `tail` holds the last lines of its output (the compiler's errors)."""

    def __init__(self, message: str, hint: str | None, tail: Sequence[str], log: Path) -> None:
        super().__init__(message, hint)
        self.tail = tuple(tail)
        self.log = log


# --- where things are --------------------------------------------------------------------

def schedulers_dir() -> Path:
    return cache_dir() / "schedulers"


def kernel_schedulers_dir(kernel: Kernel) -> Path:
    if not kernel.build_id:
        raise SchedulerError(f"kernel {kernel.version} has no build id to key its schedulers by",
                             PATH_HINT.removeprefix("or "))
    return schedulers_dir() / kernel.build_id


def ktstr_sources() -> tuple[Path, Path]:
    d = native_dir() / "schedulers"
    return d / f"{KTSTR}.bpf.c", d / f"{KTSTR}.c"


def sources_digest(paths: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


# --- the manifest ------------------------------------------------------------------------

def _read_manifest(d: Path) -> dict | None:
    try:
        m = json.loads((d / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return m if isinstance(m, dict) and m.get("format") == MANIFEST_FORMAT else None


def _entries(d: Path, m: dict | None) -> list[Scheduler]:
    out: list[Scheduler] = []
    for e in (m or {}).get("schedulers", []):
        try:
            s = Scheduler(name=str(e["name"]), path=d / str(e["path"]), kernel=str(e["kernel"]),
                          built_at=float(e["built_at"]), origin=str(e["origin"]))
        except (KeyError, TypeError, ValueError):
            continue
        if s.path.is_file():
            out.append(s)
    return sorted(out, key=lambda s: s.name)


def list_schedulers(kernel: Kernel) -> list[Scheduler]:
    """The schedulers built for `kernel` (empty until `build_schedulers`), sorted by name."""
    d = kernel_schedulers_dir(kernel)
    return _entries(d, _read_manifest(d))


def _up_to_date(d: Path, m: dict | None, digest: str) -> list[Scheduler] | None:
    """The cached list when nothing needs building, else None."""
    if m is None or m.get("ktstr_digest") != digest or m.get("missing"):
        return None
    have = _entries(d, m)
    names = {s.name for s in have}
    if KTSTR not in names or len(have) != len(m.get("schedulers", [])):
        return None
    return have


# --- resolving ---------------------------------------------------------------------------

def resolve_scheduler(name_or_path: str, kernel: Kernel) -> Scheduler:
    """A built scheduler by name (`scx_simple`, or `simple`) or any binary by path (a
    value with a '/'). Unknown names raise SchedulerError listing the known ones."""
    if "/" in name_or_path:
        p = Path(name_or_path).expanduser()
        if not p.is_file():
            raise SchedulerError(f"scheduler binary {name_or_path} does not exist",
                                 f"pass a scheduler name ({BUILD_HINT} to build them) or the "
                                 "path of a scheduler binary")
        if not os.access(p, os.X_OK):
            raise SchedulerError(f"scheduler binary {name_or_path} is not executable",
                                 f"chmod +x {name_or_path}")
        return Scheduler(name=p.name, path=p.resolve(), kernel="", built_at=None,
                         origin=ORIGIN_PATH)
    have = list_schedulers(kernel)
    for s in have:
        if name_or_path in (s.name, s.name.removeprefix("scx_")):
            return s
    if not have:
        raise SchedulerError(f"unknown scheduler '{name_or_path}': no schedulers are built for "
                             f"kernel {kernel.version}", f"{BUILD_HINT}, {PATH_HINT}")
    known = ", ".join(s.name for s in have)
    raise SchedulerError(f"unknown scheduler '{name_or_path}'", f"known: {known}; {PATH_HINT}")


# --- building ----------------------------------------------------------------------------

def build_schedulers(kernel: Kernel, progress: Progress | None = None) -> list[Scheduler]:
    """Build (or return the cached) schedulers for `kernel`; see the module docstring."""
    progress = progress or Progress()
    d = kernel_schedulers_dir(kernel)
    srcs = ktstr_sources()
    digest = sources_digest(srcs)
    if (have := _up_to_date(d, _read_manifest(d), digest)) is not None:
        return have
    with build_lock():
        m = _read_manifest(d)
        if (have := _up_to_date(d, m, digest)) is not None:
            return have
        from .source import fetch_source  # apt and the source tree only when building

        src = fetch_source(kernel, progress)
        tools = kernel_tool_targets(src.sched_ext_dir)
        built = {s.name: s for s in _entries(d, m)}
        targets = [t for t in tools if t not in built]
        if m is None or m.get("ktstr_digest") != digest or KTSTR not in built:
            targets.append(KTSTR)
        clang, strip = find_clang()
        progress.step(f"building {len(targets)} sched_ext schedulers for {kernel.version} "
                      f"with {clang} (about a minute the first time)")
        t0 = time.time()
        error: SchedulerBuildError | None = None
        try:
            for t in targets:  # a failed target must not leave last build's binary behind
                built.pop(t, None)
                (d / "bin" / t).unlink(missing_ok=True)
                (d / "work" / "build" / "bin" / t).unlink(missing_ok=True)
            make_schedulers(src.sched_ext_dir, d / "work", kernel.vmlinux, targets,
                            extra_sources=srcs, log=d / "build.log", clang=clang,
                            llvm_strip=strip, progress=progress)
        except SchedulerBuildError as e:
            error = e  # keep what did build; the manifest below records it
        except OSError as e:
            raise BuildError(f"cannot write the scheduler cache {d}: {e.strerror or e}",
                             "free some space, or set KTSTR_CACHE to another disk") from e
        now = time.time()
        try:
            _install(d, targets, kernel, now, built)
            missing = [t for t in [*tools, KTSTR] if t not in built]
            _write_manifest(d, kernel, src.label, clang, digest, built.values(), missing)
        except OSError as e:
            raise BuildError(f"cannot write the scheduler cache {d}: {e.strerror or e}",
                             "free some space, or set KTSTR_CACHE to another disk") from e
        if error is not None:
            raise error
        if missing:
            raise BuildError(f"make succeeded but did not produce {', '.join(missing)}",
                             f"see {d / 'build.log'}")
        progress.done(f"built {len(targets)} schedulers in {now - t0:.0f}s: {d / 'bin'}")
        return _entries(d, _read_manifest(d))


def _install(d: Path, targets: Sequence[str], kernel: Kernel, now: float,
             built: dict[str, Scheduler]) -> None:
    """Copy what make produced into d/bin (atomically per file); record it in `built`."""
    (d / "bin").mkdir(parents=True, exist_ok=True)
    for t in targets:
        out = d / "work" / "build" / "bin" / t
        if out.is_file():
            tmp = d / "bin" / f".{t}.tmp"
            shutil.copy2(out, tmp)
            os.replace(tmp, d / "bin" / t)
            built[t] = Scheduler(t, d / "bin" / t, kernel.build_id, now,
                                 ORIGIN_KTSTR if t == KTSTR else ORIGIN_KERNEL_TOOLS)


def _write_manifest(d: Path, kernel: Kernel, source: str, clang: str, digest: str,
                    built: Iterator[Scheduler] | Sequence[Scheduler], missing: list[str]) -> None:
    atomic_write_json(d / MANIFEST, {
        "format": MANIFEST_FORMAT, "kernel": kernel.build_id, "kernel_version": kernel.version,
        "source": source, "clang": clang, "ktstr_digest": digest, "missing": missing,
        "schedulers": [{"name": s.name, "path": str(s.path.relative_to(d)), "kernel": s.kernel,
                        "built_at": s.built_at, "origin": s.origin}
                       for s in sorted(built, key=lambda s: s.name)],
    })


def kernel_tool_targets(sched_ext_dir: Path) -> list[str]:
    """The schedulers the tree's tools/sched_ext/Makefile builds (`c-sched-targets = ...`)."""
    try:
        text = (sched_ext_dir / "Makefile").read_text(errors="replace")
    except OSError as e:
        raise BuildError(f"no tools/sched_ext/Makefile in {sched_ext_dir.parent.parent}",
                         "the kernel source tree is incomplete; remove it from the cache") from e
    m = re.search(r"^c-sched-targets\s*:?=\s*(.+)$", text, re.M)
    if not m:
        raise BuildError(f"{sched_ext_dir / 'Makefile'} names no c-sched-targets",
                         "this kernel's tools/sched_ext is too old or too new for ktstr")
    return m.group(1).split()


def find_clang() -> tuple[str, str]:
    for clang, strip in CLANGS:
        if shutil.which(clang) and shutil.which(strip):
            return clang, strip
    raise BuildError("clang-19 (or clang) and llvm-strip not found",
                     "apt-get install clang-19 llvm-19 lld-19 libelf-dev zlib1g-dev "
                     "pkg-config libcap-dev")


def make_schedulers(sched_ext_dir: Path, work: Path, vmlinux: Path, targets: Sequence[str], *,
                    extra_sources: Sequence[Path] = (), log: Path, clang: str = "clang-19",
                    llvm_strip: str = "llvm-strip-19", progress: Progress | None = None,
                    timeout: float = BUILD_TIMEOUT_S) -> Path:
    """`make` `targets` in a tools/sched_ext directory with O=`work`; returns the bin dir.

    `extra_sources` (NAME.bpf.c + NAME.c pairs, e.g. scx_ktstr's) are copied into the
    directory for the build and removed after. A failure raises SchedulerBuildError with
    the first compiler error as its message and the output's last lines as `tail`."""
    progress = progress or Progress()
    if shutil.which("make") is None:
        raise BuildError("make not found", "apt-get install make gcc")
    work.mkdir(parents=True, exist_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    copied = []
    try:
        for f in extra_sources:
            dst = sched_ext_dir / f.name
            shutil.copyfile(f, dst)
            copied.append(dst)
        cmd = ["make", "--no-print-directory", "-C", str(sched_ext_dir),
               f"-j{os.cpu_count() or 2}", "-k",
               f"CLANG={clang}", f"LLVM_STRIP={llvm_strip}", f"VMLINUX_BTF={vmlinux}",
               f"O={work}", f"c-sched-targets={' '.join(targets)}", "all"]
        rc = _run_logged(cmd, log, timeout, work / "build" / "bin", targets, progress)
    finally:
        for p in copied:
            p.unlink(missing_ok=True)
    bindir = work / "build" / "bin"
    if rc != 0:
        lines = log.read_text(errors="replace").splitlines()
        first = next((ln.strip() for ln in lines if re.search(r"\berror\b:", ln)), None)
        failed = [t for t in targets if not (bindir / t).is_file()]
        what = ", ".join(failed) or "schedulers"
        raise SchedulerBuildError(
            f"building {what} failed: {first or (lines[-1] if lines else f'make exit {rc}')}",
            f"the compiler's last lines are above; full log: {log}",
            lines[-TAIL_LINES:], log)
    return bindir


def _run_logged(cmd: list[str], log: Path, timeout: float, bindir: Path,
                targets: Sequence[str], progress: Progress) -> int:
    env = {**os.environ, "LC_ALL": "C"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        started, done = time.time(), 0
        try:
            while True:
                try:
                    return proc.wait(timeout=1.0)
                except subprocess.TimeoutExpired:
                    now_done = sum(_built_since(bindir / t, started) for t in targets)
                    if now_done != done:
                        done = now_done
                        progress.step(f"built {done} of {len(targets)} schedulers")
                    if time.monotonic() > deadline:
                        raise BuildError(f"building schedulers took more than {timeout:.0f}s",
                                         f"see {log}") from None
        finally:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)


def _built_since(p: Path, t: float) -> bool:
    try:
        return p.stat().st_mtime >= t - 1
    except OSError:
        return False


@contextlib.contextmanager
def build_lock(timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    with dir_lock(schedulers_dir(), timeout, BuildError, "scheduler cache", clear_temps=False):
        yield
