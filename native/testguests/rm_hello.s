# Real-mode hello: prints a line on COM1, leaves through the exit port with 0x21.
        .include "guest.inc"
        .code16
        .globl  _start
_start:
        REAL_MODE_SETUP
        PUTS16  msg
        EXIT16  0x21
        hlt
msg:    .asciz  "hello from real mode\n"
        RESET_VECTOR
