# Triple fault: flat 32-bit protected mode with an empty IDT, then an invalid opcode
# (#GP -> #DF -> shutdown, which KVM reports as KVM_EXIT_SHUTDOWN).
        .include "guest.inc"
        .code16
        .globl  _start
_start:
        REAL_MODE_SETUP
        lidtl   %cs:empty_idt
        ENTER_PM32
        .code32
pm32:   mov     $0x10, %ax
        mov     %ax, %ds
        mov     %ax, %ss
        ud2
        mov     $0x7f, %al              # never reached
        out     %al, $EXIT_PORT
        hlt
        FLAT_GDT
empty_idt:
        .word   0
        .long   0
        .code16
        RESET_VECTOR
