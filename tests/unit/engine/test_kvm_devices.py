"""VMM devices register themselves (KT_DEVICE, native/vmm/device.c): a copy of the extension
is built with one more C file holding two test devices - and nothing else edited - and
kt_vm_create initialises them in (order, name) order, not link order; a device whose init
fails (a port range across COM1's) fails kt_vm_create with one line naming both ranges,
after undoing every device initialised before it and leaking no memory, fd or mapping.

Needs /dev/kvm (the emulated PVM one is fine: no guest runs) and a C compiler; the copy is
built once per session with -O0 (a few seconds)."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

from ktstr_vmm.engine.kvmprobe import probe_kvm
from ktstr_vmm.paths import native_dir

pytest.importorskip("ktstr_vmm._kvm", reason="the KVM extension is not built")
_probe = probe_kvm()
pytestmark = [pytest.mark.kvm,
              pytest.mark.skipif(_probe.kind == "absent", reason=_probe.detail),
              pytest.mark.skipif(not shutil.which("cc"), reason="no C compiler")]

# Two devices in one file. probe keeps per-VM state; clash, when kt_test_clash is set,
# claims ports 0x3fc-0x403, across COM1 (0x3f8-0x3ff). Both log their init and exit.
# Every malloc/calloc/free of the VMM is counted (the link wraps them).
DEVICES_C = r"""
#include <stdlib.h>
#include <string.h>
#include "internal.h"

char kt_test_log[256];
int kt_test_clash;
long kt_test_live_allocs;

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void __real_free(void *p);
void *__wrap_malloc(size_t n)
{
    void *p = __real_malloc(n);
    if (p)
        __atomic_add_fetch(&kt_test_live_allocs, 1, __ATOMIC_RELAXED);
    return p;
}
void *__wrap_calloc(size_t n, size_t size)
{
    void *p = __real_calloc(n, size);
    if (p)
        __atomic_add_fetch(&kt_test_live_allocs, 1, __ATOMIC_RELAXED);
    return p;
}
void __wrap_free(void *p)
{
    if (p)
        __atomic_sub_fetch(&kt_test_live_allocs, 1, __ATOMIC_RELAXED);
    __real_free(p);
}

static void note(const char *what)
{
    strncat(kt_test_log, what, sizeof(kt_test_log) - strlen(kt_test_log) - 1);
}

static int probe_init(struct kt_vm *vm, void **state, char *err, size_t errlen)
{
    note("+probe ");
    *state = malloc(64);
    return *state ? 0 : -12;
}
static void probe_exit(struct kt_vm *vm, void *state)
{
    note("-probe ");
    free(state);
}
KT_DEVICE(probe, .init = probe_init, .exit = probe_exit);

static bool clash_io(struct kt_vcpu *v, void *dev, uint64_t off, bool is_write, uint8_t *data,
                     int size)
{
    return false;
}
static int clash_init(struct kt_vm *vm, void **state, char *err, size_t errlen)
{
    note("+clash ");
    if (!kt_test_clash)
        return 0;
    return kt_bus_register(&vm->pio_bus, 0x3fc, 8, clash_io, NULL, err, errlen);
}
static void clash_exit(struct kt_vm *vm, void *state)
{
    note("-clash ");
}
KT_DEVICE(clash, .order = 1, .init = clash_init, .exit = clash_exit);

int kt_test_devices(struct kt_vm *vm, char *out, size_t len)
{
    out[0] = 0;
    for (int i = 0; i < vm->ndevs; i++) {
        strncat(out, vm->devs[i].dev->name, len - strlen(out) - 1);
        strncat(out, " ", len - strlen(out) - 1);
    }
    return vm->ndevs;
}
"""

DECLS = """
extern char kt_test_log[256];
extern int kt_test_clash;
extern long kt_test_live_allocs;
int kt_test_devices(struct kt_vm *vm, char *out, size_t len);
"""


def _build_ffi():
    """native/vmm/build_ffi.py, the extension's build (not a package: loaded by path)."""
    spec = importlib.util.spec_from_file_location("ktvmm_build_ffi",
                                                  native_dir() / "vmm" / "build_ffi.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    return build


@pytest.fixture(scope="module")
def devtest(tmp_path_factory):
    """(ffi, lib) of the extension built with DEVICES_C added."""
    out = tmp_path_factory.mktemp("devtest")
    (out / "devtest.c").write_text(DEVICES_C)
    ffi = _build_ffi().make_builder("_kvm_devtest", extra_sources=(out / "devtest.c",),
                             extra_decls=DECLS, cflags=("-O0",),
                             ldflags=("-Wl,--wrap=malloc,--wrap=calloc,--wrap=free",),
                             absolute=True)
    so = ffi.compile(tmpdir=str(out), verbose=False)
    spec = importlib.util.spec_from_file_location("_kvm_devtest", so)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.ffi, mod.lib


def _config(ffi):
    cfg = ffi.new("struct kt_config *")
    cfg.topo.nodes = cfg.topo.llcs = cfg.topo.cores = cfg.topo.threads = 1
    cfg.mem_bytes = 16 << 20
    cfg.irqchip = 1
    cfg.console_fd = -1
    return cfg


def _held() -> tuple[int, int, int]:
    """Open fds, threads and guest-RAM mappings of this process."""
    maps = Path("/proc/self/maps").read_text().count("ktstr-guest-ram")
    return len(os.listdir("/proc/self/fd")), len(os.listdir("/proc/self/task")), maps


def _reset(lib) -> None:
    lib.kt_test_log[0] = b"\0"


def test_the_build_compiles_every_c_file_of_native_vmm():
    build = _build_ffi()
    assert build.SOURCES == sorted(p.name for p in (native_dir() / "vmm").glob("*.c"))
    assert {"device.c", "serial.c", "i8042.c", "testdev.c"} <= set(build.SOURCES)


def test_a_device_file_alone_adds_a_device_in_order_and_name_order(devtest):
    ffi, lib = devtest
    err = ffi.new("char[512]")
    _reset(lib)
    lib.kt_test_clash = 0
    allocs, held = lib.kt_test_live_allocs, _held()
    vm = lib.kt_vm_create(_config(ffi), err, 512)
    assert vm != ffi.NULL, ffi.string(err).decode()
    names = ffi.new("char[256]")
    assert lib.kt_test_devices(vm, names, 256) == 5
    # devtest.c links last; the order is `order`, then name: serial is -1, clash 1
    assert ffi.string(names).decode() == "serial i8042 probe testdev clash "
    lib.kt_vm_destroy(vm)
    assert ffi.string(lib.kt_test_log).decode() == "+probe +clash -clash -probe "
    assert (lib.kt_test_live_allocs, _held()) == (allocs, held)


def test_a_failing_device_init_fails_create_naming_both_ranges_and_leaks_nothing(devtest):
    ffi, lib = devtest
    err = ffi.new("char[512]")
    lib.kt_test_clash = 1
    for _ in range(3):
        _reset(lib)
        allocs, held = lib.kt_test_live_allocs, _held()
        assert lib.kt_vm_create(_config(ffi), err, 512) == ffi.NULL
        assert ffi.string(err).decode() == ("device clash: port range 0x3fc+0x8 overlaps "
                                            "serial's 0x3f8+0x8")
        # every device before it was undone (probe's state freed); its own exit not called
        assert ffi.string(lib.kt_test_log).decode() == "+probe +clash -probe "
        assert (lib.kt_test_live_allocs, _held()) == (allocs, held)
