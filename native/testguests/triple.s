# Triple fault: flat 32-bit protected mode with an empty IDT, then an invalid opcode
# (#GP -> #DF -> shutdown, which KVM reports as KVM_EXIT_SHUTDOWN).
        .include "guest.inc"
        .code16
        .globl  _start
_start:
        REAL_MODE_SETUP
        lidtl   %cs:empty_idt
        lgdtl   %cs:gdt_desc
        mov     %cr0, %eax
        or      $1, %eax
        mov     %eax, %cr0
        ljmpl   $0x08, $(pm32 + BASE)
        .code32
pm32:   mov     $0x10, %ax
        mov     %ax, %ds
        mov     %ax, %ss
        ud2
        mov     $0x7f, %al              # never reached
        out     %al, $EXIT_PORT
        hlt
        .p2align 3
gdt:    .quad   0
        .quad   0x00cf9a000000ffff      # 0x08 flat 32-bit code
        .quad   0x00cf92000000ffff      # 0x10 flat data
gdt_desc:
        .word   gdt_desc - gdt - 1
        .long   gdt + BASE
empty_idt:
        .word   0
        .long   0
        .code16
        RESET_VECTOR
