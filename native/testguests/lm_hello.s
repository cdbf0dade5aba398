# Long-mode hello: real mode -> protected mode -> long mode (identity-mapped 2 MiB page
# built at 0x1000), then prints on COM1 from 64-bit code and exits with 0x42.
        .include "guest.inc"
        .code16
        .globl  _start
_start:
        REAL_MODE_SETUP
        xor     %ax, %ax
        mov     %ax, %es
        mov     $0x1000, %di
        xor     %eax, %eax
        mov     $(3 * 1024), %cx
        rep stosl
        movl    $0x2003, %es:0x1000     # PML4[0] -> PDPT
        movl    $0x3003, %es:0x2000     # PDPT[0] -> PD
        movl    $0x83, %es:0x3000       # PD[0]: 2 MiB page at 0
        ENTER_PM32
        .code32
pm32:   mov     $0x10, %ax
        mov     %ax, %ds
        mov     %ax, %es
        mov     %ax, %ss
        mov     $0x1000, %eax
        mov     %eax, %cr3
        mov     %cr4, %eax
        or      $0x20, %eax             # PAE
        mov     %eax, %cr4
        mov     $0xc0000080, %ecx       # EFER
        rdmsr
        or      $0x100, %eax            # LME
        wrmsr
        mov     %cr0, %eax
        or      $0x80000000, %eax       # PG
        mov     %eax, %cr0
        ljmp    $0x18, $(lm64 + BASE)
        .code64
lm64:   lea     msg(%rip), %rsi
        mov     $COM1, %dx
1:      lodsb
        test    %al, %al
        jz      2f
        out     %al, %dx
        jmp     1b
2:      mov     $0x42, %al
        out     %al, $EXIT_PORT
        hlt
msg:    .asciz  "hello from long mode\n"
        FLAT_GDT
        .code16
        RESET_VECTOR
