"""Build the guest agent (native/guest/*.c -> a static ktstr-init), cached by the hash of
its sources and the compiler, so a change to any source file rebuilds it. $KTSTR_AGENT names
a prebuilt binary instead (for a machine without gcc, such as the nested test bed's L1)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .. import paths
from ..errors import BuildError
from ..progress import Progress

CC = "gcc"
CFLAGS = ("-static", "-O2", "-Wall", "-Wextra")
BUILD_TIMEOUT_S = 300


def agent_sources() -> list[Path]:
    src = paths.native_dir() / "guest"
    files = sorted([*src.glob("*.c"), *src.glob("*.h")])
    if not any(f.suffix == ".c" for f in files):
        raise BuildError(f"no agent sources in {src}", "run from a full ktstr checkout")
    return files


def _compiler() -> tuple[str, str]:
    cc = shutil.which(CC)
    if not cc:
        raise BuildError("gcc not found: the guest agent is built from C",
                         "install it: apt-get install gcc libc6-dev")
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BuildError(f"cannot run {cc} --version: {e}") from e
    return cc, out.stdout.splitlines()[0] if out.stdout else ""


def source_hash(files: list[Path], compiler_version: str) -> str:
    h = hashlib.sha256()
    h.update(compiler_version.encode() + b"\0" + " ".join(CFLAGS).encode() + b"\0")
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def build_agent(progress: Progress | None = None) -> Path:
    """The path of a static ktstr-init built from the current sources (cached)."""
    progress = progress or Progress()
    prebuilt = os.environ.get("KTSTR_AGENT")
    if prebuilt:  # a host without gcc given a binary built elsewhere (the nested test bed)
        if not os.path.isfile(prebuilt):
            raise BuildError(f"KTSTR_AGENT={prebuilt} is not a file",
                             "unset it, or point it at a built ktstr-init")
        return Path(prebuilt)
    files = agent_sources()
    cc, version = _compiler()
    root = paths.cache_dir() / "agent"
    final = root / source_hash(files, version)
    binary = final / "ktstr-init"
    if binary.is_file():
        return binary
    root.mkdir(parents=True, exist_ok=True)
    progress.step("building the guest agent (ktstr-init)")
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=root))
    try:
        cmd = [cc, *CFLAGS, "-o", str(tmp / "ktstr-init"),
               *[f.name for f in files if f.suffix == ".c"]]
        env = {**os.environ, "LC_ALL": "C"}  # plain quotes in the compiler's messages
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S,
                                 cwd=files[0].parent, env=env)
        except subprocess.TimeoutExpired as e:
            raise BuildError(f"building the guest agent took over {BUILD_TIMEOUT_S}s") from e
        if res.returncode != 0:
            lines = (res.stderr or res.stdout).strip().splitlines()
            tail = " | ".join([x for x in lines if ": error:" in x][:3] or lines[-5:])
            hint = ("install the static C library: apt-get install libc6-dev"
                    if "cannot find -lc" in res.stderr else None)
            raise BuildError(f"building the guest agent failed: {tail}", hint)
        try:
            tmp.rename(final)
        except OSError:
            if not binary.is_file():  # not someone else's finished build
                raise BuildError(f"cannot install the agent into {final}") from None
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
    progress.done(f"guest agent built: {binary}")
    return binary
