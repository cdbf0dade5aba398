/*
 * ktvmm.h - public interface of the ktstr VMM (native/vmm), the C core of KvmEngine.
 *
 * Layering (after kvmtool and Firecracker), one file per concern, listed in
 * docs/kvm-engine.md: vm.c (lifetime), control.c (a running VM from the host), vcpu.c,
 * device.c (the registry: every device file, e.g. serial.c, registers itself with
 * KT_DEVICE), bus.c, boot.c, and the pure builders cpuid.c and acpi.c.
 *
 * Everything between CDEF BEGIN and CDEF END is read by build_ffi.py as the cffi cdef,
 * so it must stay plain declarations and integer #defines.
 */
#ifndef KTVMM_H
#define KTVMM_H

#include <stddef.h>
#include <stdint.h>

/* CDEF BEGIN */
#define KT_PORT_EXIT 0xf4       /* write a byte/dword: the VM stops with that code */
#define KT_PORT_REPORT 0xf8     /* write a dword: delivered as a KT_EV_REPORT event */
#define KT_PORT_SLEEP_CTL 0x600 /* ACPI hw-reduced sleep control (S5 = power off) */
#define KT_PORT_SLEEP_STS 0x601
#define KT_MMIO_TESTDEV 0xd0000000 /* 4 KiB: a read returns the last value written + 1 */
#define KT_FIRMWARE_MAX 0x40000    /* firmware images are mapped below 4 GiB and at 0xF0000 */

/* What stopped a vCPU or the VM, or what happened on the way. */
#define KT_EV_EXIT_PORT 1      /* code = value written to KT_PORT_EXIT */
#define KT_EV_HLT 2            /* every vCPU halted with interrupts unusable */
#define KT_EV_SHUTDOWN 3       /* triple fault (KVM_EXIT_SHUTDOWN) */
#define KT_EV_FAIL_ENTRY 4     /* code = hardware entry failure reason */
#define KT_EV_INTERNAL_ERROR 5 /* code = suberror (1 = emulation failure) */
#define KT_EV_RESET 6          /* i8042 reset pulse */
#define KT_EV_POWEROFF 7       /* ACPI S5 through the sleep control register */
#define KT_EV_KILLED 8         /* kt_vm_kill */
#define KT_EV_REPORT 9         /* code = dword a vCPU wrote to KT_PORT_REPORT */
#define KT_EV_PAUSED 10
#define KT_EV_RESUMED 11
#define KT_EV_ERROR 12         /* code = errno of a failed ioctl in a vCPU thread */
#define KT_EV_UNHANDLED 13     /* code = KVM exit reason the VMM does not know */

#define KT_STATE_CREATED 0
#define KT_STATE_RUNNING 1
#define KT_STATE_PAUSED 2
#define KT_STATE_STOPPED 3

#define KT_CPUID_HIDE_PVM 1    /* hide what PVM cannot emulate (xsave/avx, bmi2, cx16, ...) */
#define KT_CPUID_VENDOR_INTEL 2 /* present GenuineIntel so leaves 4/0xB/0x1F drive topology */
#define KT_CPUID_HIDE_XSAVE 4  /* no xsave/AVX/PKU: KVM nested under QEMU TCG's SVM cannot
                                  track the guest's XCR0 (Linux panics in fpstate_reset) */

struct kt_topology {
    uint32_t nodes;   /* NUMA nodes (packages) */
    uint32_t llcs;    /* LLCs in total (dies); a multiple of nodes */
    uint32_t cores;   /* cores per LLC */
    uint32_t threads; /* threads per core */
};

struct kt_cpuid_entry { /* same layout as struct kvm_cpuid_entry2 */
    uint32_t function;
    uint32_t index;
    uint32_t flags;
    uint32_t eax;
    uint32_t ebx;
    uint32_t ecx;
    uint32_t edx;
    uint32_t padding[3];
};

struct kt_event {
    uint32_t kind;     /* KT_EV_* */
    int32_t vcpu;      /* -1 for VM-wide events */
    uint64_t code;
    uint64_t ns;       /* CLOCK_MONOTONIC when it happened */
    uint64_t rip;
    uint64_t rsp;
    uint64_t rax, rbx, rcx, rdx;
    uint64_t cr0, cr3, cr4, efer;
    uint16_t cs;
    uint16_t pad0;
    uint32_t insn_len; /* bytes valid in insn (emulation failures) */
    uint8_t insn[16];
};

struct kt_config {
    struct kt_topology topo;
    uint64_t mem_bytes;
    int irqchip;        /* 1: in-kernel PIC/IOAPIC/LAPIC + PIT (Linux); 0: HLT exits to us */
    int console_fd;     /* COM1 transmit bytes are written here; -1 discards */
    uint32_t cpuid_flags; /* KT_CPUID_* */
};

struct kt_acpi_layout {
    uint64_t rsdp;  /* guest-physical address of the RSDP */
    uint32_t size;  /* bytes used in the buffer */
};

struct kt_vm;

/* Lifetime. err receives a one-line reason on failure (NULL return / negative errno). */
struct kt_vm *kt_vm_create(const struct kt_config *cfg, char *err, size_t errlen);
int kt_vm_load_firmware(struct kt_vm *vm, const uint8_t *img, size_t len, char *err, size_t errlen);
int kt_vm_load_kernel(struct kt_vm *vm, const uint8_t *img, size_t len, const char *cmdline,
                      const uint8_t *initrd, size_t initrd_len, char *err, size_t errlen);
int kt_vm_start(struct kt_vm *vm, char *err, size_t errlen);
int kt_vm_pause(struct kt_vm *vm);
int kt_vm_resume(struct kt_vm *vm);
int kt_vm_kill(struct kt_vm *vm);
int kt_vm_state(struct kt_vm *vm);
void kt_vm_destroy(struct kt_vm *vm);

/* Events: the fd (an eventfd) becomes readable when events are queued. */
int kt_vm_event_fd(struct kt_vm *vm);
int kt_vm_next_event(struct kt_vm *vm, struct kt_event *ev); /* 1 = got one, 0 = empty */

/* Host channels: a UART whose guest -> host bytes appear on a pipe (the fd) and whose
 * receive FIFO host -> guest bytes are queued into (the write returns the bytes taken). */
#define KT_CHAN_WIRE 0  /* COM2, the guest's /dev/ttyS1: the agent's wire (docs/wire.md) */
#define KT_CHAN_SHELL 1 /* COM3, the guest's /dev/ttyS2: the shells' port (docs/shell.md) */
#define KT_CHANS 2
int kt_vm_chan_fd(struct kt_vm *vm, int chan);  /* -1 for an unknown channel */
int kt_vm_chan_write(struct kt_vm *vm, int chan, const uint8_t *data, size_t len);

/* RAM: a memfd; regions map guest-physical ranges onto file offsets. */
int kt_vm_mem_fd(struct kt_vm *vm);
int kt_vm_ram_regions(struct kt_vm *vm, uint64_t *gpa, uint64_t *offset, uint64_t *size, int max);
/* Registers of a vCPU; meaningful while paused or stopped. */
int kt_vm_vcpu_regs(struct kt_vm *vm, int vcpu, struct kt_event *out);
int kt_vm_boot_info(struct kt_vm *vm, uint64_t *entry, uint64_t *rsdp, int *kind);
/* The host thread id of a vCPU (0 before its thread started): the monitor reads its
 * /proc schedstat to tell a vCPU the host did not run from one that is stuck. */
int kt_vm_vcpu_tid(struct kt_vm *vm, int vcpu);

/* Host facts. */
int kt_kvm_check(char *err, size_t errlen);          /* 0 or -errno with the reason */
int kt_kvm_max_vcpus(void);

/* Pure builders, unit-tested from Python. */
uint32_t kt_apic_id(const struct kt_topology *t, uint32_t cpu);
int kt_cpuid_build(const struct kt_topology *t, uint32_t cpu, const struct kt_cpuid_entry *base,
                   int nbase, uint32_t flags, struct kt_cpuid_entry *out, int max);
int kt_acpi_build(const struct kt_topology *t, uint64_t low_mem, uint64_t high_mem,
                  uint64_t base_gpa, uint8_t *buf, size_t len, struct kt_acpi_layout *out);
/* CDEF END */

#endif
