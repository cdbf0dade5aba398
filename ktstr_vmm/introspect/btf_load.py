"""Loading the kernel's BTF: the `.BTF` section of a vmlinux ELF, with the parsed index
cached per build id (in memory and as a pickle under paths.cache_dir()/"btf"/)."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

from ..errors import StoreError
from ..fsutil import atomic_write_bytes
from ..kernel.vmlinux import ImageError, elf_build_id
from ..paths import cache_dir
from .btf import CACHE_VERSION, Btf, BtfError

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------- ELF + cache

def elf_btf_bytes(path: Path) -> bytes:
    """The `.BTF` section of an ELF; BtfError when the file has none."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    try:
        with open(path, "rb") as f:
            sec = ELFFile(f).get_section_by_name(".BTF")
            data = sec.data() if sec is not None else None
    except (OSError, ELFError, ValueError) as e:
        raise BtfError(f"cannot read {path}: {e}",
                       "pass a vmlinux ELF (the kernel's own, with .BTF)") from e
    if data is None:
        raise BtfError(f"{path} has no .BTF section",
                       "build the kernel with CONFIG_DEBUG_INFO_BTF=y")
    return data


def _cache_path(build_id: str) -> Path:
    return cache_dir() / "btf" / f"{build_id}.v{CACHE_VERSION}.pickle"


_LOADED: dict[str, Btf] = {}


def load_btf(vmlinux: Path, build_id: str | None = None) -> Btf:
    """The kernel's BTF, index cached per build id (in memory and on disk)."""

    vmlinux = Path(vmlinux)
    if build_id is None:
        try:
            build_id = elf_build_id(vmlinux)
        except (ImageError, OSError) as e:
            raise BtfError(f"cannot read {vmlinux}: {e}") from e
    if build_id and build_id in _LOADED:
        return _LOADED[build_id]
    data = elf_btf_bytes(vmlinux)
    btf = None
    cpath = _cache_path(build_id) if build_id else None
    if cpath is not None and cpath.is_file():
        try:
            state = pickle.loads(cpath.read_bytes())
            if state[0] == len(data):
                btf = Btf.from_index(data, state[1])
        except Exception as e:  # a damaged cache is rebuilt, never fatal
            log.info("BTF cache %s unusable (%s); rebuilding", cpath, e)
            btf = None
    if btf is None:
        btf = Btf.from_bytes(data)
        if cpath is not None:
            try:
                cpath.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(cpath, pickle.dumps((len(data), btf.index_state()),
                                                       protocol=pickle.HIGHEST_PROTOCOL))
            except (OSError, StoreError) as e:
                log.info("cannot write BTF cache %s: %s", cpath, e)
    if build_id:
        _LOADED[build_id] = btf
    return btf
