/* internal.h - shared between the VMM's own files; not part of the cffi interface. */
#ifndef KTVMM_INTERNAL_H
#define KTVMM_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <linux/kvm.h>

#include "ktvmm.h"

struct kt_vcpu;
struct kt_vm;

#define KT_LOW_MEM_MAX 0xC0000000ULL /* RAM above 3 GiB moves to 4 GiB (PCI hole) */
#define KT_HIGH_MEM_BASE 0x100000000ULL
#define KT_ACPI_BASE 0xE0000ULL
#define KT_ACPI_SIZE 0x10000ULL
#define KT_IOAPIC_ADDR 0xFEC00000U
#define KT_LAPIC_ADDR 0xFEE00000U
#define KT_EVENT_RING 4096
#define KT_WIRE_RX_MAX 65536

enum kt_boot_kind { KT_BOOT_NONE = 0, KT_BOOT_FIRMWARE = 1, KT_BOOT_PVH = 2, KT_BOOT_BZIMAGE = 3 };

/* A device's access to one of its ranges: `off` is relative to the range base. Returns
 * false when the device declines the access (an unclaimed read then floats to 0xff). */
typedef bool (*kt_bus_handler)(struct kt_vcpu *v, void *dev, uint64_t off, bool is_write,
                               uint8_t *data, int size);
struct kt_bus_range {
    uint64_t base, len;
    kt_bus_handler handler;
    void *dev;
    const char *owner; /* the device's name, for overlap errors */
};
#define KT_BUS_MAX 16
struct kt_bus {
    const char *name;  /* "port" or "MMIO", for errors */
    const char *owner; /* the device registering now (set around each device's init) */
    int n;
    struct kt_bus_range ranges[KT_BUS_MAX];
};

/*
 * A device of the VM (kvmtool's dev_init()): its own file declares it with KT_DEVICE and
 * nothing else names it. Every VM initialises every registered device after RAM, irqchip
 * and eventfd, before the vCPUs, in ascending `order` and then by name (constructors run
 * in link order, which must not decide anything); kt_vm_destroy calls `exit` in reverse,
 * after the vCPU threads are joined, for the devices whose init succeeded.
 *   init  registers the device's ranges on vm->pio_bus/mmio_bus; per-VM state it allocates
 *         goes in *state (handed back to exit; handlers get it as their bus `dev`). On
 *         failure it returns -errno with a one-line reason in err (kt_vm_create prefixes
 *         "device NAME: ") and leaves nothing behind: its exit is not called.
 *   exit  may be NULL (nothing to undo: bus ranges go with the VM).
 */
struct kt_device {
    const char *name;
    int order; /* 0 unless a device must come before (<0) or after (>0) the others */
    int (*init)(struct kt_vm *vm, void **state, char *err, size_t errlen);
    void (*exit)(struct kt_vm *vm, void *state);
    struct kt_device *next; /* the registry's list (device.c) */
};
void kt_device_register(struct kt_device *d); /* from KT_DEVICE's constructor only */

/* KT_DEVICE(name, .init = ..., [.exit = ..., .order = ...]); at file scope. */
#define KT_DEVICE(ident, ...)                                                              \
    static struct kt_device kt_device_##ident;                                             \
    __attribute__((constructor)) static void kt_device_register_##ident(void)              \
    {                                                                                      \
        kt_device_register(&kt_device_##ident);                                            \
    }                                                                                      \
    static struct kt_device kt_device_##ident = {.name = #ident, __VA_ARGS__}

struct kt_device_slot {
    const struct kt_device *dev;
    void *state;
};

struct kt_uart {
    pthread_mutex_t lock;
    uint16_t base;
    int irq;
    int irq_src;       /* this device's bit in the line's sources (lines are shared) */
    uint8_t ier, lcr, mcr, scr, dll, dlm, fcr;
    bool thr_ipending; /* THR-empty interrupt pending until IIR read or THR write */
    uint8_t rx[KT_WIRE_RX_MAX];
    uint32_t rx_head, rx_len;
    int out_fd;        /* transmit bytes go here (-1 = discard) */
    bool out_nonblock; /* a pipe: wait for room rather than drop */
};

/* A host channel (KT_CHAN_*): its UART and the pipe its transmit bytes go to. */
struct kt_chan {
    struct kt_uart uart;
    int rd, wr;
};

#define KT_ISA_IRQS 16

struct kt_vcpu {
    struct kt_vm *vm;
    int id;
    int fd;
    struct kvm_run *run;
    size_t run_size;
    pthread_t thread;
    bool started;
    struct kt_cpuid_entry *cpuid;
    int ncpuid;
    int tid; /* host thread id, set by the thread itself */
};

struct kt_vm {
    struct kt_config cfg;
    int kvm_fd, vm_fd, mem_fd, event_fd;
    uint8_t *mem;          /* all RAM: [0, low) at gpa 0, [low, low+high) at 4 GiB */
    uint64_t mem_size, low_size, high_size;
    uint8_t *fw;           /* firmware image mapping (reset vector), if any */
    size_t fw_size;
    int nvcpus;
    struct kt_vcpu *vcpus;

    pthread_mutex_t lock;  /* state, events, halted count */
    pthread_cond_t cond;
    int state;
    bool stop;             /* vCPUs must leave */
    bool joining;          /* kt_vm_destroy is joining the vCPU threads: no more kicks */
    bool pause_req;
    int paused_vcpus;
    int halted_vcpus;
    int live_vcpus;
    struct kt_event ring[KT_EVENT_RING];
    uint32_t ring_head, ring_len, ring_dropped;

    struct kt_bus pio_bus, mmio_bus; /* filled by the devices as they are created */
    struct kt_device_slot *devs;     /* every registered device, in init order */
    int ndevs, ndevs_live;           /* registered; initialised (exit these in reverse) */
    struct kt_uart com1;             /* the console; serial.c's, see there why it is here */
    struct kt_chan chan[KT_CHANS];   /* COM2 wire, COM3 shells (serial.c) */
    pthread_mutex_t irq_lock;        /* irq_src and the KVM_IRQ_LINE calls, in order */
    uint32_t irq_src[KT_ISA_IRQS];   /* per ISA line: the devices asserting it */

    int boot_kind;
    uint64_t entry, boot_arg, rsdp;
    struct kvm_regs boot_regs;
    struct kvm_sregs boot_sregs;
    bool have_boot_regs;
};

/* util */
int kt_err(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
uint64_t kt_now_ns(void);
uint8_t *kt_gpa(struct kt_vm *vm, uint64_t gpa, uint64_t len); /* NULL when not RAM */

/* bus.c */
int kt_bus_register(struct kt_bus *bus, uint64_t base, uint64_t len, kt_bus_handler handler,
                    void *dev, char *err, size_t errlen);
const struct kt_bus_range *kt_bus_find(const struct kt_bus *bus, uint64_t addr);

/* vm.c, control.c */
void kt_vm_post(struct kt_vm *vm, const struct kt_event *ev);
void kt_vm_stop_with(struct kt_vm *vm, const struct kt_event *ev); /* post + stop all */
/* A device (src: its bit) raises or lowers an ISA line; the line is high while any of its
 * devices asserts it (COM1 and COM3 share IRQ 4, as on a PC). */
void kt_vm_set_irq(struct kt_vm *vm, int irq, int src, int level);

/* vcpu.c */
int kt_vcpu_create(struct kt_vm *vm, int id, char *err, size_t errlen);
int kt_vcpu_setup(struct kt_vcpu *v, char *err, size_t errlen);
int kt_vcpu_spawn(struct kt_vcpu *v, char *err, size_t errlen);
void kt_vcpu_kick(struct kt_vcpu *v);
void kt_vcpu_fill_regs(struct kt_vcpu *v, struct kt_event *ev);
int kt_vcpu_signal_init(void);

/* device.c */
int kt_devices_init(struct kt_vm *vm, char *err, size_t errlen);
void kt_devices_exit(struct kt_vm *vm);

/* serial.c (the host channels' receive side, for control.c) */
size_t kt_uart_rx_push(struct kt_vm *vm, struct kt_uart *u, const uint8_t *data, size_t len);

/* boot.c */
int kt_boot_setup_vcpu(struct kt_vm *vm, struct kt_vcpu *v, char *err, size_t errlen);

#endif
