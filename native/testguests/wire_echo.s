# Wire echo: polls COM2 (0x2f8, the wire) and COM3 (0x3e8, the shells' port) for received
# bytes and sends each back on the port it came from; a NUL byte on either ends the guest
# through the exit port with 0x33. Proves both directions of both host channels, apart.
        .include "guest.inc"
        .set COM2, 0x2f8
        .set COM3, 0x3e8
        .code16
        .globl  _start
_start:
        REAL_MODE_SETUP
1:      mov     $COM2, %bx
        call    echo_one
        mov     $COM3, %bx
        call    echo_one
        jmp     1b

# echo_one: the port base in %bx; one received byte (if any) goes back out of it.
echo_one:
        lea     5(%bx), %dx             # LSR
        in      %dx, %al
        test    $1, %al                 # data ready
        jz      3f
        mov     %bx, %dx
        in      %dx, %al
        test    %al, %al
        jz      2f
        out     %al, %dx
3:      ret
2:      EXIT16  0x33
        hlt
        RESET_VECTOR
