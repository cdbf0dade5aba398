/*
 * i8042.c - the PC keyboard controller, reduced to what a VMM needs: status reads that say
 * "no data, ready for input", and the 0xFE command pulse on port 0x64 that resets the
 * machine (Linux's reboot=k path). A reset stops the VM with KT_EV_RESET.
 */
#include "internal.h"

#define I8042_DATA 0x60
#define I8042_CMD 0x64

static bool i8042_io(struct kt_vcpu *v, void *dev, uint64_t off, bool is_write, uint8_t *data,
                     int size)
{
    bool cmd = dev == (void *)I8042_CMD;
    if (!is_write) {
        *data = 0x00; /* data: nothing; status: output empty, input empty */
        return true;
    }
    if (cmd && *data == 0xfe) {
        struct kt_event ev = {.kind = KT_EV_RESET};
        kt_vcpu_fill_regs(v, &ev);
        kt_vm_stop_with(v->vm, &ev);
    }
    return true;
}

static int i8042_init(struct kt_vm *vm, void **state, char *err, size_t errlen)
{
    /* Two one-port ranges (0x61-0x63 stay unclaimed); dev tells the handler which. */
    int rc = kt_bus_register(&vm->pio_bus, I8042_DATA, 1, i8042_io, (void *)I8042_DATA, err,
                             errlen);
    return rc < 0 ? rc : kt_bus_register(&vm->pio_bus, I8042_CMD, 1, i8042_io,
                                         (void *)I8042_CMD, err, errlen);
}

KT_DEVICE(i8042, .init = i8042_init);
