# Powers off the way Linux does with our ACPI tables: SLP_TYP 5 (from the DSDT's \_S5)
# and SLP_EN written to the hardware-reduced sleep control register.
        .include "guest.inc"
        .code16
        .globl  _start
_start:
        mov     $((5 << 2) | 0x20), %al
        mov     $0x600, %dx             # KT_PORT_SLEEP_CTL
        out     %al, %dx
        hlt
        RESET_VECTOR
