"""cffi (API mode) build of the VMM: `ktstr_vmm._kvm`.

setup.py names this file in `cffi_modules`, so `pip install -e .` compiles native/vmm/*.c
into the extension. The cdef is the CDEF section of ktvmm.h, so the header stays the one
source of truth. Run it directly (`python native/vmm/build_ffi.py`) to build in place.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
SOURCES = ["vm.c", "control.c", "vcpu.c", "serial.c", "i8042.c", "testdev.c", "bus.c", "cpuid.c", "acpi.c", "boot.c"]


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


ffibuilder = FFI()
ffibuilder.cdef(_cdef())
ffibuilder.set_source(
    "ktstr_vmm._kvm",
    '#include "ktvmm.h"',
    sources=[_rel(HERE / s) for s in SOURCES],
    include_dirs=[_rel(HERE)],
    depends=[_rel(HERE / "ktvmm.h"), _rel(HERE / "internal.h")],
    extra_compile_args=["-std=gnu11", "-O2", "-Wall", "-Wno-unused-parameter"],
    libraries=["pthread"],
)

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=str(HERE.parent.parent), verbose=True)
