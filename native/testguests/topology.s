# Every vCPU (all start at the reset vector) runs CPUID for the leaves in `queries` and
# writes EAX, EBX, ECX, EDX of each to the report port, then halts. The host tags each
# report with the vCPU that wrote it and checks the values against the Topology.
        .include "guest.inc"
        .code16
        .globl  _start
_start:
        REAL_MODE_SETUP
        mov     $queries, %si
1:      mov     (%si), %eax
        cmp     $0xffffffff, %eax
        je      2f
        mov     4(%si), %ecx
        cpuid
        mov     %edx, %edi              # DX is about to hold the port
        mov     $REPORT_PORT, %dx
        outl    %eax, %dx
        mov     %ebx, %eax
        outl    %eax, %dx
        mov     %ecx, %eax
        outl    %eax, %dx
        mov     %edi, %eax
        outl    %eax, %dx
        add     $8, %si
        jmp     1b
2:      cli
        hlt
        jmp     2b
        .p2align 2
# (leaf, subleaf) pairs; keep in step with ktstr_vmm/testguests.py TOPOLOGY_QUERIES.
queries:
        .long   0x1, 0
        .long   0x4, 0, 0x4, 1, 0x4, 2, 0x4, 3
        .long   0xb, 0, 0xb, 1, 0xb, 2
        .long   0x1f, 0, 0x1f, 1, 0x1f, 2, 0x1f, 3
        .long   0xffffffff, 0
        RESET_VECTOR
