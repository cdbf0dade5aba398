/*
 * device.c - the device registry (kvmtool's util/init.c and its dev_init()). Each device
 * file declares itself with KT_DEVICE (internal.h), whose constructor puts it on one list
 * when the extension is loaded, so adding a device is adding its file: vm.c, internal.h
 * and build_ffi.py (which compiles every *.c here) do not change. kvmtool orders by a
 * priority level and, within one, by constructor (= link) order; here the order is
 * explicit: ascending `order`, then name, the same on every build.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Written only by the constructors, which all run before Python can create a VM. */
static struct kt_device *registry;

void kt_device_register(struct kt_device *d)
{
    d->next = registry;
    registry = d;
}

static int by_order(const void *a, const void *b)
{
    const struct kt_device *x = ((const struct kt_device_slot *)a)->dev;
    const struct kt_device *y = ((const struct kt_device_slot *)b)->dev;
    if (x->order != y->order)
        return x->order < y->order ? -1 : 1;
    return strcmp(x->name, y->name);
}

int kt_devices_init(struct kt_vm *vm, char *err, size_t errlen)
{
    int n = 0;
    for (const struct kt_device *d = registry; d; d = d->next)
        n++;
    vm->devs = calloc((size_t)(n ? n : 1), sizeof(*vm->devs));
    if (!vm->devs)
        return kt_err(err, errlen, -ENOMEM, "out of memory for %d devices", n);
    int i = 0;
    for (const struct kt_device *d = registry; d; d = d->next)
        vm->devs[i++].dev = d;
    vm->ndevs = n;
    qsort(vm->devs, (size_t)n, sizeof(*vm->devs), by_order);
    for (i = 1; i < n; i++) /* errors and the order go by name: one device per name */
        for (int j = 0; j < i; j++)
            if (!strcmp(vm->devs[i].dev->name, vm->devs[j].dev->name))
                return kt_err(err, errlen, -EEXIST, "two devices are named %s",
                              vm->devs[i].dev->name);
    int rc = 0;
    for (i = 0; i < n && rc == 0; i++) {
        const struct kt_device *d = vm->devs[i].dev;
        char why[256] = "";
        vm->pio_bus.owner = vm->mmio_bus.owner = d->name;
        rc = d->init(vm, &vm->devs[i].state, why, sizeof(why));
        if (rc < 0)
            kt_err(err, errlen, rc, "device %s: %s", d->name, why[0] ? why : strerror(-rc));
        else
            vm->ndevs_live = i + 1;
    }
    vm->pio_bus.owner = vm->mmio_bus.owner = NULL;
    return rc < 0 ? rc : 0;
}

void kt_devices_exit(struct kt_vm *vm)
{
    for (int i = vm->ndevs_live - 1; i >= 0; i--)
        if (vm->devs[i].dev->exit)
            vm->devs[i].dev->exit(vm, vm->devs[i].state);
    vm->ndevs_live = 0;
    free(vm->devs);
    vm->devs = NULL;
}
