# Jumps into guest-physical space with no memory behind it (0xe0000000): the CPU must
# fetch instructions from what KVM treats as MMIO, which it cannot emulate. Hardware KVM
# reports an emulation failure (KVM_EXIT_INTERNAL_ERROR); the VMM stops the VM with the
# vCPU's registers instead of hanging.
        .include "guest.inc"
        .code16
        .globl  _start
_start:
        REAL_MODE_SETUP
        ENTER_PM32
        .code32
pm32:   mov     $0x10, %ax
        mov     %ax, %ds
        mov     %ax, %ss
        ljmp    $0x08, $0xe0000000
        FLAT_GDT
        .code16
        RESET_VECTOR
