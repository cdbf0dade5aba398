# Spins forever (only kill or a watchdog ends it), after saying so on COM1 and leaving a
# marker in RAM at 0x5000 that the host reads through GuestMemory: "KTSTR-GUEST-MEM!"
# followed by a dword counter the loop keeps incrementing.
        .include "guest.inc"
        .code16
        .globl  _start
_start:
        REAL_MODE_SETUP
        xor     %ax, %ax
        mov     %ax, %es
        mov     $marker, %si
        mov     $0x5000, %di
        mov     $16, %cx
        rep movsb
        PUTS16  msg
        xor     %ebx, %ebx
1:      incl    %es:0x5010
        jmp     1b
marker: .ascii  "KTSTR-GUEST-MEM!"
msg:    .asciz  "spinning\n"
        RESET_VECTOR
