# Jumps into guest-physical space with no memory behind it (0xe0000000): the CPU must
# fetch instructions from what KVM treats as MMIO, which it cannot emulate. Hardware KVM
# reports an emulation failure (KVM_EXIT_INTERNAL_ERROR); the VMM stops the VM with the
# vCPU's registers instead of hanging.
        .include "guest.inc"
        .code16
        .globl  _start
_start:
        REAL_MODE_SETUP
        lgdtl   %cs:gdt_desc
        mov     %cr0, %eax
        or      $1, %eax
        mov     %eax, %cr0
        ljmpl   $0x08, $(pm32 + BASE)
        .code32
pm32:   mov     $0x10, %ax
        mov     %ax, %ds
        mov     %ax, %ss
        ljmp    $0x08, $0xe0000000
        .p2align 3
gdt:    .quad   0
        .quad   0x00cf9a000000ffff      # 0x08 flat 32-bit code
        .quad   0x00cf92000000ffff      # 0x10 flat data
gdt_desc:
        .word   gdt_desc - gdt - 1
        .long   gdt + BASE
        .code16
        RESET_VECTOR
