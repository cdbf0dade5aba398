"""Where things live: the cache (kernels, schedulers, initramfs) and the run store."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import platformdirs

APP = "ktstr"


def cache_dir() -> Path:
    """Root of cached downloads and builds: $KTSTR_CACHE, else the user cache dir."""
    env = os.environ.get("KTSTR_CACHE")
    return Path(env) if env else Path(platformdirs.user_cache_dir(APP))


def store_dir() -> Path:
    """Root of the run store: $KTSTR_HOME, else the user data dir."""
    env = os.environ.get("KTSTR_HOME")
    return Path(env) if env else Path(platformdirs.user_data_dir(APP))


def demo_index(store_root: Path) -> Path:
    """The demo store's index: in the cache, never inside the (maybe read-only) package;
    one per demo store location."""
    tag = hashlib.sha1(str(Path(store_root).resolve()).encode()).hexdigest()[:12]
    return cache_dir() / "demo-index" / f"{tag}.sqlite"


def repo_root() -> Path:
    """The source checkout (for native/ sources); the package lives one level below it."""
    return Path(__file__).resolve().parent.parent


def native_dir() -> Path:
    return repo_root() / "native"
