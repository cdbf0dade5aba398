"""Kernel symbol addresses: from the guest's /proc/kallsyms (sent at SysRdy), an ELF symtab
or a System.map, cached per kernel build id.

With `nokaslr` a build's addresses are the same on every boot, so the guest's kallsyms are
kept in paths.cache_dir()/"symbols"/<build id>.json and merged with what later boots send.
The Debian vmlinux is stripped and its System.map is a stub: both are used only when they
really hold symbols (a user's own kernel build usually does).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import StoreError
from ..fsutil import atomic_write_json
from ..paths import cache_dir

log = logging.getLogger(__name__)

_MAP_LINE = re.compile(r"^([0-9a-fA-F]{8,16})\s+([A-Za-z])\s+(\S+)")
_MIN_REAL_MAP = 1000  # a stub System.map has a handful of lines


@dataclass(frozen=True)
class Symbols:
    """name -> kernel virtual address; `sources` says where they came from."""

    addrs: Mapping[str, int] = field(default_factory=dict)
    sources: tuple[str, ...] = ()

    def get(self, name: str) -> int | None:
        return self.addrs.get(name)

    def __contains__(self, name: str) -> bool:
        return name in self.addrs

    def missing(self, names: Iterable[str]) -> list[str]:
        return [n for n in names if n not in self.addrs]


def parse_system_map(text: str) -> dict[str, int]:
    """`ADDR TYPE NAME` lines (System.map and /proc/kallsyms share the format)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        m = _MAP_LINE.match(line)
        if m:
            out.setdefault(m[3], int(m[1], 16))
    return out


def read_system_map(path: Path) -> dict[str, int]:
    """A System.map's symbols, or {} for a stub or an unreadable file."""
    try:
        syms = parse_system_map(Path(path).read_text("utf-8", "replace"))
    except OSError:
        return {}
    return syms if len(syms) >= _MIN_REAL_MAP else {}


def read_elf_symbols(path: Path) -> dict[str, int]:
    """Object and function symbols of an ELF's .symtab ({} when stripped or unreadable)."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection

    out: dict[str, int] = {}
    try:
        with open(path, "rb") as f:
            sec = ELFFile(f).get_section_by_name(".symtab")
            if not isinstance(sec, SymbolTableSection):
                return {}
            for sym in sec.iter_symbols():
                if sym.name and sym["st_value"]:
                    out.setdefault(sym.name, sym["st_value"])
    except (OSError, ELFError, ValueError):
        return {}
    return out


def _cache_path(build_id: str) -> Path:
    return cache_dir() / "symbols" / f"{build_id}.json"


def _load_cache(build_id: str) -> dict[str, int]:
    try:
        data = json.loads(_cache_path(build_id).read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, int)
            and not isinstance(v, bool) and 0 <= v < 1 << 64}


def _save_cache(build_id: str, syms: Mapping[str, int]) -> None:
    path = _cache_path(build_id)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, dict(sorted(syms.items())))
    except (OSError, StoreError) as e:
        log.info("cannot write symbol cache %s: %s", path, e)


def kernel_symbols(build_id: str = "", *, kallsyms: Mapping[str, int] | None = None,
                   vmlinux: Path | None = None, system_map: Path | None = None,
                   remember: bool = False) -> Symbols:
    """Every address known for this build: the live kallsyms win, then the cache, the ELF
    symtab and the System.map. With `remember` (the caller vouches that `kallsyms` came
    from a real guest of this build), new kallsyms are merged into the cache: the cache
    lets later runs skip the guest's /proc/kallsyms scan, so nothing else may write it."""
    merged: dict[str, int] = {}
    sources: list[str] = []
    layers: list[tuple[str, Mapping[str, int]]] = []
    if system_map is not None:
        layers.append(("system.map", read_system_map(system_map)))
    if vmlinux is not None:
        layers.append(("elf", read_elf_symbols(vmlinux)))
    cached = _load_cache(build_id) if build_id else {}
    layers.append(("cache", cached))
    live = {k: v for k, v in (kallsyms or {}).items()
            if isinstance(k, str) and isinstance(v, int) and 0 < v < 1 << 64}
    layers.append(("kallsyms", live))
    for name, syms in layers:  # later layers win
        if syms:
            merged.update(syms)
            sources.append(name)
    if remember and build_id and live and any(cached.get(k) != v for k, v in live.items()):
        _save_cache(build_id, {**cached, **live})
    return Symbols(merged, tuple(reversed(sources)))
