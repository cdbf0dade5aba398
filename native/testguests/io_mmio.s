# Port I/O and MMIO round trips. Port: the UART scratch register (0x3ff) must read back
# what was written. MMIO: in flat 32-bit protected mode, the VMM's test device at
# 0xd0000000 must answer a write of 0x1234 with 0x1235. Each result is reported on the
# report port; the exit code is 0x10 | port ok | mmio ok << 1 (0x13 = both fine).
        .include "guest.inc"
        .code16
        .globl  _start
_start:
        REAL_MODE_SETUP
        xor     %bx, %bx
        mov     $0x3ff, %dx
        mov     $0xa5, %al
        out     %al, %dx
        xor     %al, %al
        in      %dx, %al
        movzbl  %al, %eax
        mov     $REPORT_PORT, %dx
        outl    %eax, %dx
        cmp     $0xa5, %al
        jne     1f
        or      $1, %bx
1:
        ENTER_PM32
        .code32
pm32:   mov     $0x10, %ax
        mov     %ax, %ds
        mov     %ax, %es
        mov     %ax, %ss
        movl    $0x1234, MMIO_TESTDEV
        movl    MMIO_TESTDEV, %eax
        mov     $REPORT_PORT, %dx
        outl    %eax, %dx
        cmp     $0x1235, %eax
        jne     2f
        or      $2, %bx
2:      mov     %bl, %al
        or      $0x10, %al
        out     %al, $EXIT_PORT
        hlt
        FLAT_GDT
        .code16
        RESET_VECTOR
