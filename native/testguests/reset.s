# Resets the machine the way Linux's reboot=k (and our FADT reset register) does: the
# i8042 pulse command 0xFE on port 0x64.
        .include "guest.inc"
        .code16
        .globl  _start
_start:
        mov     $0xfe, %al
        out     %al, $0x64
        hlt
        RESET_VECTOR
