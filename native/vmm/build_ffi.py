"""cffi (API mode) build of the VMM: `ktstr_vmm._kvm`.

setup.py names this file in `cffi_modules`, so `pip install -e .` compiles every
native/vmm/*.c into the extension: a new device is one new file (it registers itself with
KT_DEVICE, internal.h), nothing here changes. The cdef is the CDEF section of ktvmm.h, so the
header stays the one source of truth. Run it directly (`python native/vmm/build_ffi.py`) to
build in place.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
SOURCES = sorted(p.name for p in HERE.glob("*.c"))
HEADERS = sorted(p.name for p in HERE.glob("*.h"))
CFLAGS = ["-std=gnu11", "-O2", "-Wall", "-Wno-unused-parameter"]


def _cdef() -> str:
    text = (HERE / "ktvmm.h").read_text()
    m = re.search(r"/\* CDEF BEGIN \*/(.*)/\* CDEF END \*/", text, re.S)
    if not m:
        raise RuntimeError("ktvmm.h has no CDEF BEGIN/END section")
    body = re.sub(r"/\*.*?\*/", "", m.group(1), flags=re.S)
    return re.sub(r"__attribute__\(\(.*?\)\)", "", body)


def _rel(p: Path) -> str:
    """setuptools wants source paths relative to the project root when it can have them."""
    try:
        return os.path.relpath(p)
    except ValueError:
        return str(p)


def make_builder(module: str, *, extra_sources: tuple[Path, ...] = (), extra_decls: str = "",
                 cflags: tuple[str, ...] = (), ldflags: tuple[str, ...] = (),
                 absolute: bool = False) -> FFI:
    """An FFI for `module` built from every native/vmm source (plus `extra_sources`).

    The extension is `make_builder("ktstr_vmm._kvm")`; tests build a copy with a device
    file of their own added and its `extra_decls` (C declarations, also the cdef) exposed.
    `absolute` paths are for FFI.compile, which changes directory.
    """
    path = str if absolute else _rel
    ffi = FFI()
    ffi.cdef(_cdef() + extra_decls)
    ffi.set_source(
        module,
        '#include "ktvmm.h"\n' + extra_decls,
        sources=[path(HERE / s) for s in SOURCES] + [path(p) for p in extra_sources],
        include_dirs=[path(HERE)],
        depends=[path(HERE / h) for h in HEADERS],
        extra_compile_args=[*CFLAGS, *cflags],
        extra_link_args=list(ldflags),
        libraries=["pthread"],
    )
    return ffi


ffibuilder = make_builder("ktstr_vmm._kvm")

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=str(HERE.parent.parent), verbose=True)
