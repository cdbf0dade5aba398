# The smallest guest: its first instruction pair writes 42 to the exit port. Used by the
# start-to-first-exit benchmark, on our VMM and on qemu -bios with isa-debug-exit.
        .include "guest.inc"
        .code16
        .globl  _start
_start:
        mov     $42, %al
        out     %al, $EXIT_PORT
        hlt
        RESET_VECTOR
