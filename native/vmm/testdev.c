/*
 * testdev.c - devices for synthetic guests and power control:
 *   KT_PORT_EXIT (0xf4)    a write stops the VM with the value as exit code
 *                          (the same port as QEMU's isa-debug-exit, so one payload runs on both)
 *   KT_PORT_REPORT (0xf8)  a dword write becomes a KT_EV_REPORT event tagged with the vCPU
 *   KT_PORT_SLEEP_CTL      ACPI hardware-reduced sleep control: SLP_EN with SLP_TYP 5 = off
 *   KT_MMIO_TESTDEV        4 KiB MMIO window: reads return the last value written + 1
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static uint64_t load_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static void store_le(uint8_t *p, int n, uint64_t v)
{
    for (int i = 0; i < n; i++, v >>= 8)
        p[i] = (uint8_t)v;
}

static bool exit_io(struct kt_vcpu *v, void *dev, uint64_t off, bool is_write, uint8_t *data,
                    int size)
{
    if (is_write) {
        struct kt_event ev = {.kind = KT_EV_EXIT_PORT, .code = load_le(data, size)};
        kt_vcpu_fill_regs(v, &ev);
        kt_vm_stop_with(v->vm, &ev);
    } else {
        memset(data, 0, (size_t)size);
    }
    return true;
}

static bool report_io(struct kt_vcpu *v, void *dev, uint64_t off, bool is_write, uint8_t *data,
                      int size)
{
    if (is_write) {
        struct kt_event ev = {.kind = KT_EV_REPORT, .vcpu = v->id, .code = load_le(data, size)};
        kt_vm_post(v->vm, &ev);
    } else {
        store_le(data, size, (uint64_t)v->id);
    }
    return true;
}

/* off 0 = KT_PORT_SLEEP_CTL, off 1 = KT_PORT_SLEEP_STS (reads as 0). */
static bool sleep_io(struct kt_vcpu *v, void *dev, uint64_t off, bool is_write, uint8_t *data,
                     int size)
{
    if (is_write && off == 0 && (data[0] & 0x20) && ((data[0] >> 2) & 7) == 5) {
        struct kt_event ev = {.kind = KT_EV_POWEROFF};
        kt_vcpu_fill_regs(v, &ev);
        kt_vm_stop_with(v->vm, &ev);
    } else if (!is_write) {
        memset(data, 0, (size_t)size);
    }
    return true;
}

/* dev: the VM's last value written (the device's state, allocated by testdev_init). */
static bool testdev_mmio(struct kt_vcpu *v, void *dev, uint64_t off, bool is_write,
                         uint8_t *data, int len)
{
    uint64_t *value = dev;
    if (len > 8)
        return false;
    if (is_write)
        __atomic_store_n(value, load_le(data, len), __ATOMIC_SEQ_CST);
    else
        store_le(data, len, __atomic_load_n(value, __ATOMIC_SEQ_CST) + 1);
    return true;
}

static void testdev_exit(struct kt_vm *vm, void *state)
{
    free(state);
}

static int testdev_init(struct kt_vm *vm, void **state, char *err, size_t errlen)
{
    uint64_t *value = calloc(1, sizeof(*value));
    if (!value)
        return kt_err(err, errlen, -ENOMEM, "out of memory");
    int rc = kt_bus_register(&vm->pio_bus, KT_PORT_EXIT, 1, exit_io, NULL, err, errlen);
    if (rc == 0)
        rc = kt_bus_register(&vm->pio_bus, KT_PORT_REPORT, 1, report_io, NULL, err, errlen);
    if (rc == 0)
        rc = kt_bus_register(&vm->pio_bus, KT_PORT_SLEEP_CTL, 2, sleep_io, NULL, err, errlen);
    if (rc == 0)
        rc = kt_bus_register(&vm->mmio_bus, KT_MMIO_TESTDEV, 0x1000, testdev_mmio, value, err,
                             errlen);
    if (rc < 0)
        free(value);
    else
        *state = value;
    return rc;
}

KT_DEVICE(testdev, .init = testdev_init, .exit = testdev_exit);
