"""The shared-library closure of a dynamically linked ELF, resolved the way ld.so would.

`library_closure(binary)` returns every file the guest's dynamic loader needs to start
`binary`: its ELF interpreter (PT_INTERP) and each DT_NEEDED library, recursively, found
in DT_RPATH / DT_RUNPATH (with $ORIGIN), the directories of /etc/ld.so.conf(.d) and the
loader's default directories. Each entry is (guest path, host file): the guest path is
the name the loader will open (a search directory + the soname, not the symlink target),
the host file is the real file behind it.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile

from ..errors import BuildError

# glibc's built-in search directories (multiarch Debian first, then the RPM layout).
DEFAULT_DIRS = (
    "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
    "/lib64", "/usr/lib64", "/lib", "/usr/lib",
)


@dataclass(frozen=True)
class ElfInfo:
    elfclass: int  # 32 or 64
    machine: str  # e_machine, e.g. "EM_X86_64"
    interp: str | None
    needed: tuple[str, ...]
    rpath: tuple[str, ...]
    runpath: tuple[str, ...]


@dataclass(frozen=True)
class Closure:
    """What the loader needs: guest path -> host file, and whether any library came
    from a directory only ld.so.cache knows (then the guest needs /etc/ld.so.cache too)."""

    files: dict[str, Path]
    needs_ld_cache: bool


def read_elf(path: Path) -> ElfInfo | None:
    """ELF facts that matter for loading, or None when `path` is not an ELF file."""
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"\x7fELF":
                return None
            f.seek(0)
            elf = ELFFile(f)
            interp = None
            for seg in elf.iter_segments():
                if seg["p_type"] == "PT_INTERP":
                    interp = seg.get_interp_name()
            needed: list[str] = []
            rpath: list[str] = []
            runpath: list[str] = []
            for sec in elf.iter_sections():
                if not isinstance(sec, DynamicSection):
                    continue
                for tag in sec.iter_tags():
                    if tag.entry.d_tag == "DT_NEEDED":
                        needed.append(tag.needed)
                    elif tag.entry.d_tag == "DT_RPATH":
                        rpath.extend(p for p in tag.rpath.split(":") if p)
                    elif tag.entry.d_tag == "DT_RUNPATH":
                        runpath.extend(p for p in tag.runpath.split(":") if p)
            return ElfInfo(elf.elfclass, elf["e_machine"], interp, tuple(needed),
                           tuple(rpath), tuple(runpath))
    except (ELFError, OSError, ValueError, KeyError) as e:
        raise BuildError(f"cannot read ELF file {path}: {e}") from e


def ld_conf_dirs(conf: Path = Path("/etc/ld.so.conf")) -> list[str]:
    """Directories listed in ld.so.conf and the files it includes, in order."""
    out: list[str] = []
    seen: set[Path] = set()

    def parse(p: Path) -> None:
        if p in seen or not p.is_file():
            return
        seen.add(p)
        try:
            lines = p.read_text(errors="replace").splitlines()
        except OSError:
            return
        for raw in lines:
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            if line.startswith("include"):
                pattern = line.split(None, 1)[1] if len(line.split(None, 1)) > 1 else ""
                if not os.path.isabs(pattern):
                    pattern = str(p.parent / pattern)
                for inc in sorted(glob.glob(pattern)):
                    parse(Path(inc))
            elif line.startswith("hwcap"):
                continue
            elif line.startswith("/"):
                out.append(line.rstrip("/"))

    parse(conf)
    return out


def _expand_origin(dirs: tuple[str, ...], host_origin: str,
                   guest_origin: str) -> list[tuple[str, str]]:
    """RPATH/RUNPATH entries -> (host dir, guest dir); $ORIGIN differs between the two
    when a file sits elsewhere in the guest than on the host."""
    out = []
    for d in dirs:
        for k, v in (("$LIB", "lib64"), ("${LIB}", "lib64"), ("$PLATFORM", "x86_64"),
                     ("${PLATFORM}", "x86_64")):
            d = d.replace(k, v)
        host = d.replace("${ORIGIN}", host_origin).replace("$ORIGIN", host_origin)
        guest = d.replace("${ORIGIN}", guest_origin).replace("$ORIGIN", guest_origin)
        out.append((os.path.normpath(host), os.path.normpath(guest)))
    return out


def _compatible(path: Path, want: ElfInfo) -> bool:
    try:
        info = read_elf(path)
    except BuildError:
        return False
    return info is not None and info.elfclass == want.elfclass and info.machine == want.machine


def library_closure(binary: Path, guest_path: str | None = None,
                    conf_dirs: list[str] | None = None) -> Closure:
    """Interpreter and DT_NEEDED closure of `binary`. Static or non-ELF files have none.

    `guest_path` is where `binary` sits in the guest (for $ORIGIN; default: its host
    path). A library that cannot be found raises a one-line BuildError naming the binary
    and the library. `conf_dirs` overrides the /etc/ld.so.conf directories (tests)."""
    binary = Path(binary)
    top = read_elf(binary)
    files: dict[str, Path] = {}
    if top is None or (top.interp is None and not top.needed):
        return Closure(files, False)
    conf = [(d, d) for d in (ld_conf_dirs() if conf_dirs is None else conf_dirs)]
    defaults = [(d, d) for d in DEFAULT_DIRS]
    needs_cache = False
    if top.interp:
        real = Path(os.path.realpath(top.interp))
        if not real.is_file():
            raise BuildError(f"{binary}: ELF interpreter {top.interp} not found on this host",
                             "install the C library the binary was built against")
        files[top.interp] = real
    # Sonames already resolved; the loader itself answers to its own soname (libc's
    # DT_NEEDED on ld-linux-x86-64.so.2 needs no second copy).
    loaded: set[str] = {os.path.basename(top.interp)} if top.interp else set()
    # Work list: (host path, guest path, its ELF info, DT_RPATH chain of its loaders).
    todo: list[tuple[str, str, ElfInfo, list[tuple[str, str]]]] = [
        (str(binary), guest_path or str(binary), top, [])]
    while todo:
        host_obj, guest_obj, info, inherited = todo.pop(0)
        origins = (os.path.dirname(host_obj), os.path.dirname(guest_obj))
        runpath = _expand_origin(info.runpath, *origins)
        rpath_chain = (_expand_origin(info.rpath, *origins) if not runpath else []) + inherited
        for name in info.needed:
            if name in loaded:
                continue
            if "/" in name:
                search = [("", "")]
                rel = [(os.path.normpath(os.path.join(origins[0], name)),
                        os.path.normpath(os.path.join(origins[1], name)))]
            else:
                search = (rpath_chain if not runpath else []) + runpath + conf + defaults
                rel = [(f"{h}/{name}", f"{g}/{name}") for h, g in search]
            found = next(((h, g) for h, g in rel
                          if Path(h).is_file() and _compatible(Path(h), top)), None)
            if found is None:
                raise BuildError(f"{binary}: shared library {name} not found",
                                 "install it on this host or link the binary statically")
            host_dir = os.path.dirname(found[0])
            if (host_dir, host_dir) in conf and host_dir not in DEFAULT_DIRS:
                needs_cache = True
            loaded.add(name)
            real = Path(os.path.realpath(found[0]))
            files.setdefault(found[1], real)
            lib_info = read_elf(real)
            if lib_info is not None and lib_info.needed:
                todo.append((found[0], found[1], lib_info, rpath_chain))
    return Closure(files, needs_cache)
