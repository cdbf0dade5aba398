"""The benchmark programs a run puts into the guest (hackbench, cyclictest from Debian's
rt-tests, stress-ng): found on this machine, where `make setup` installs them with apt
(APT_PACKAGES), and copied into the initramfs with their shared-library closure like the
scheduler. KTSTR_BENCH_DIR points at another directory holding them."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UsageError
from ..workloads import KINDS, WorkloadGroup

DEFAULT_DIR = "/usr/bin"


def bench_dir() -> Path:
    return Path(os.environ.get("KTSTR_BENCH_DIR") or DEFAULT_DIR)


def bench_files(groups: tuple[WorkloadGroup, ...], guest_path) -> dict[str, Path]:
    """{guest path: host binary} for every benchmark the workload names. A missing
    binary is a UsageError naming it and the package that provides it."""
    files: dict[str, Path] = {}
    for g in groups:
        if not g.is_bench:
            continue
        kind = KINDS[g.kind]
        host = bench_dir() / kind.binary
        if not (host.is_file() and os.access(host, os.X_OK)):
            raise UsageError(
                f"benchmark {g.kind} is not installed: {host} is missing",
                f"install the Debian package {kind.package}: make setup, or apt-get install "
                f"{kind.package}; or point KTSTR_BENCH_DIR at a directory holding {kind.binary}")
        files[guest_path(g.kind)] = host
    return files
