/*
 * bus.c - the port (PIO) and MMIO range tables (Firecracker's vstate/bus.rs, kvmtool's
 * ioport registration). Each device registers the ranges it owns from its init (device.c);
 * the vCPU loop does one lookup and hands the device its offset into the range. Tables are
 * filled during kt_vm_create, before any vCPU runs, and only read afterwards: no lock.
 * An overlap is refused with both ranges and the earlier one's device named.
 */
#include <errno.h>

#include "internal.h"

int kt_bus_register(struct kt_bus *bus, uint64_t base, uint64_t len, kt_bus_handler handler,
                    void *dev, char *err, size_t errlen)
{
    if (len == 0 || base + len < base)
        return kt_err(err, errlen, -EINVAL, "%s range %#llx+%#llx is empty or wraps", bus->name,
                      (unsigned long long)base, (unsigned long long)len);
    for (int i = 0; i < bus->n; i++) {
        const struct kt_bus_range *r = &bus->ranges[i];
        if (base < r->base + r->len && r->base < base + len)
            return kt_err(err, errlen, -EEXIST, "%s range %#llx+%#llx overlaps %s%s%#llx+%#llx",
                          bus->name, (unsigned long long)base, (unsigned long long)len,
                          r->owner ? r->owner : "", r->owner ? "'s " : "",
                          (unsigned long long)r->base, (unsigned long long)r->len);
    }
    if (bus->n >= KT_BUS_MAX)
        return kt_err(err, errlen, -ENOSPC, "%s has no room for range %#llx (max %d ranges)",
                      bus->name, (unsigned long long)base, KT_BUS_MAX);
    bus->ranges[bus->n++] = (struct kt_bus_range){base, len, handler, dev, bus->owner};
    return 0;
}

const struct kt_bus_range *kt_bus_find(const struct kt_bus *bus, uint64_t addr)
{
    for (int i = 0; i < bus->n; i++) {
        const struct kt_bus_range *r = &bus->ranges[i];
        if (addr >= r->base && addr - r->base < r->len)
            return r;
    }
    return NULL;
}
