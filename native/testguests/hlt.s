# Halts with interrupts off: without an in-kernel irqchip this is a KVM_EXIT_HLT.
        .include "guest.inc"
        .code16
        .globl  _start
_start:
        cli
        hlt
        jmp     _start
        RESET_VECTOR
