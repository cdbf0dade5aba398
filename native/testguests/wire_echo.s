# Wire echo: polls COM2 (0x2f8) for received bytes and sends each back; a NUL byte ends
# the guest through the exit port with 0x33. Proves both directions of the wire.
        .include "guest.inc"
        .set COM2, 0x2f8
        .code16
        .globl  _start
_start:
        REAL_MODE_SETUP
1:      mov     $(COM2 + 5), %dx        # LSR
        in      %dx, %al
        test    $1, %al                 # data ready
        jz      1b
        mov     $COM2, %dx
        in      %dx, %al
        test    %al, %al
        jz      2f
        out     %al, %dx
        jmp     1b
2:      EXIT16  0x33
        hlt
        RESET_VECTOR
