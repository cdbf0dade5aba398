/*
 * i8042.c - the PC keyboard controller, reduced to what a VMM needs: status reads that say
 * "no data, ready for input", and the 0xFE command pulse on port 0x64 that resets the
 * machine (Linux's reboot=k path). A reset stops the VM with KT_EV_RESET.
 */
#include "internal.h"

bool kt_i8042_io(struct kt_vm *vm, struct kt_vcpu *v, uint16_t port, bool is_write, uint8_t *data)
{
    if (port != 0x64 && port != 0x60)
        return false;
    if (!is_write) {
        *data = port == 0x64 ? 0x00 : 0x00; /* status: output empty, input empty */
        return true;
    }
    if (port == 0x64 && *data == 0xfe) {
        struct kt_event ev = {.kind = KT_EV_RESET};
        kt_vcpu_fill_regs(v, &ev);
        kt_vm_stop_with(vm, &ev);
    }
    return true;
}
