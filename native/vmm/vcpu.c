/*
 * vcpu.c - one host thread per vCPU running KVM_RUN and dispatching its exits to the
 * devices. Pause and kill set a flag, then set kvm_run->immediate_exit and send the
 * thread a signal, so a vCPU inside KVM_RUN (or about to enter it) comes back at once.
 * No Python runs here: what Python needs to know goes through the event ring.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "internal.h"

#define KICK_SIGNAL (SIGRTMIN + 4)

static void kick_handler(int sig) { (void)sig; }

int kt_vcpu_signal_init(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = kick_handler; /* no SA_RESTART: KVM_RUN must return EINTR */
    sigemptyset(&sa.sa_mask);
    return sigaction(KICK_SIGNAL, &sa, NULL);
}

int kt_vcpu_create(struct kt_vm *vm, int id, char *err, size_t errlen)
{
    struct kt_vcpu *v = &vm->vcpus[id];
    v->vm = vm;
    v->id = id;
    /* The APIC id is the vCPU id, so the in-kernel LAPIC matches CPUID and MADT. */
    uint32_t apic = kt_apic_id(&vm->cfg.topo, (uint32_t)id);
    v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)apic);
    if (v->fd < 0)
        return kt_err(err, errlen, -errno, "KVM_CREATE_VCPU %d (APIC id %u): %s", id, apic,
                      strerror(errno));
    int sz = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (sz <= 0)
        return kt_err(err, errlen, -errno, "KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
    v->run_size = (size_t)sz;
    v->run = mmap(NULL, v->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
    if (v->run == MAP_FAILED) {
        v->run = NULL;
        return kt_err(err, errlen, -errno, "mmap kvm_run of vCPU %d: %s", id, strerror(errno));
    }
    return 0;
}

/* KVM_GET_SUPPORTED_CPUID answers the same for the life of the process: ask once. */
static pthread_mutex_t cpuid_cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct kvm_cpuid2 *cpuid_cache;

static int supported_cpuid(int kvm_fd, struct kvm_cpuid2 **out, char *err, size_t errlen)
{
    pthread_mutex_lock(&cpuid_cache_lock);
    int nbase = 256, rc = 0;
    while (!cpuid_cache) {
        struct kvm_cpuid2 *sup =
            calloc(1, sizeof(*sup) + (size_t)nbase * sizeof(struct kvm_cpuid_entry2));
        if (!sup) {
            rc = kt_err(err, errlen, -ENOMEM, "out of memory");
            break;
        }
        sup->nent = (uint32_t)nbase;
        if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, sup) == 0) {
            cpuid_cache = sup;
            break;
        }
        int e = errno;
        free(sup);
        if (e != E2BIG || nbase > 4096) {
            rc = kt_err(err, errlen, -e, "KVM_GET_SUPPORTED_CPUID: %s", strerror(e));
            break;
        }
        nbase *= 2;
    }
    *out = cpuid_cache;
    pthread_mutex_unlock(&cpuid_cache_lock);
    return rc;
}

static int set_cpuid(struct kt_vcpu *v, char *err, size_t errlen)
{
    struct kt_vm *vm = v->vm;
    struct kvm_cpuid2 *sup;
    int rc0 = supported_cpuid(vm->kvm_fd, &sup, err, errlen);
    if (rc0 < 0)
        return rc0;
    int max = (int)sup->nent + 64;
    struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + (size_t)max * sizeof(struct kvm_cpuid_entry2));
    if (!c)
        return kt_err(err, errlen, -ENOMEM, "out of memory");
    int n = kt_cpuid_build(&vm->cfg.topo, (uint32_t)v->id,
                           (const struct kt_cpuid_entry *)sup->entries, (int)sup->nent,
                           vm->cfg.cpuid_flags, (struct kt_cpuid_entry *)c->entries, max);
    if (n < 0) {
        free(c);
        return kt_err(err, errlen, n, "building CPUID for vCPU %d failed", v->id);
    }
    c->nent = (uint32_t)n;
    int rc = ioctl(v->fd, KVM_SET_CPUID2, c);
    int e = errno;
    free(c);
    if (rc < 0)
        return kt_err(err, errlen, -e, "KVM_SET_CPUID2 on vCPU %d: %s", v->id, strerror(e));
    return 0;
}

int kt_vcpu_setup(struct kt_vcpu *v, char *err, size_t errlen)
{
    int rc = set_cpuid(v, err, errlen);
    if (rc < 0)
        return rc;
    return kt_boot_setup_vcpu(v->vm, v, err, errlen);
}

void kt_vcpu_kick(struct kt_vcpu *v)
{
    if (!v->run)
        return;
    __atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
    if (v->started)
        pthread_kill(v->thread, KICK_SIGNAL);
}

void kt_vcpu_fill_regs(struct kt_vcpu *v, struct kt_event *ev)
{
    struct kvm_regs r;
    struct kvm_sregs s;
    ev->vcpu = v->id;
    if (ioctl(v->fd, KVM_GET_REGS, &r) == 0) {
        ev->rip = r.rip;
        ev->rsp = r.rsp;
        ev->rax = r.rax;
        ev->rbx = r.rbx;
        ev->rcx = r.rcx;
        ev->rdx = r.rdx;
    }
    if (ioctl(v->fd, KVM_GET_SREGS, &s) == 0) {
        ev->cr0 = s.cr0;
        ev->cr3 = s.cr3;
        ev->cr4 = s.cr4;
        ev->efer = s.efer;
        ev->cs = s.cs.selector;
        /* Instruction bytes at CS:RIP, through the guest's page tables when paging is on. */
        uint64_t lin = s.cs.base + ev->rip, gpa = lin;
        bool ok = true;
        if (s.cr0 & 0x80000000u) {
            struct kvm_translation tr = {.linear_address = lin};
            ok = ioctl(v->fd, KVM_TRANSLATE, &tr) == 0 && tr.valid;
            gpa = tr.physical_address;
        }
        uint32_t n = (uint32_t)(0x1000 - (gpa & 0xfff));
        if (n > sizeof(ev->insn))
            n = sizeof(ev->insn);
        uint8_t *p = ok && !ev->insn_len ? kt_gpa(v->vm, gpa, n) : NULL;
        if (p) {
            memcpy(ev->insn, p, n);
            ev->insn_len = n;
        }
    }
}

static void crash(struct kt_vcpu *v, uint32_t kind, uint64_t code)
{
    struct kt_event ev = {.kind = kind, .code = code};
    kt_vcpu_fill_regs(v, &ev);
    kt_vm_stop_with(v->vm, &ev);
}

/* One bus lookup per access; the device gets its offset. Unclaimed reads float high. */
static void handle_io(struct kt_vcpu *v)
{
    struct kvm_run *run = v->run;
    uint8_t *data = (uint8_t *)run + run->io.data_offset;
    bool wr = run->io.direction == KVM_EXIT_IO_OUT;
    int size = run->io.size;
    uint16_t port = run->io.port;
    const struct kt_bus_range *r = kt_bus_find(&v->vm->pio_bus, port);
    for (uint32_t i = 0; i < run->io.count; i++, data += size) {
        if (r && r->handler(v, r->dev, port - r->base, wr, data, size))
            continue;
        if (!wr)
            memset(data, 0xff, (size_t)size); /* nothing there: the bus floats high */
    }
}

static void handle_mmio(struct kt_vcpu *v)
{
    struct kvm_run *run = v->run;
    uint64_t a = run->mmio.phys_addr;
    const struct kt_bus_range *r = kt_bus_find(&v->vm->mmio_bus, a);
    if (r && r->handler(v, r->dev, a - r->base, run->mmio.is_write, run->mmio.data,
                        (int)run->mmio.len))
        return;
    if (!run->mmio.is_write)
        memset(run->mmio.data, 0xff, run->mmio.len);
}

/* Park a vCPU that halted without an in-kernel irqchip; the VM stops when all have. */
static void park_halted(struct kt_vcpu *v)
{
    struct kt_vm *vm = v->vm;
    struct kt_event ev = {.kind = KT_EV_HLT};
    kt_vcpu_fill_regs(v, &ev);
    pthread_mutex_lock(&vm->lock);
    vm->halted_vcpus++;
    bool all = vm->halted_vcpus == vm->live_vcpus;
    pthread_cond_broadcast(&vm->cond);
    pthread_mutex_unlock(&vm->lock);
    if (all)
        kt_vm_stop_with(vm, &ev);
    pthread_mutex_lock(&vm->lock);
    while (!vm->stop)
        pthread_cond_wait(&vm->cond, &vm->lock);
    pthread_mutex_unlock(&vm->lock);
}

/* Returns false when the thread must leave. */
static bool wait_while_paused(struct kt_vcpu *v)
{
    struct kt_vm *vm = v->vm;
    pthread_mutex_lock(&vm->lock);
    if (vm->pause_req && !vm->stop) {
        vm->paused_vcpus++;
        pthread_cond_broadcast(&vm->cond);
        while (vm->pause_req && !vm->stop)
            pthread_cond_wait(&vm->cond, &vm->lock);
        vm->paused_vcpus--;
    }
    bool go = !vm->stop;
    pthread_mutex_unlock(&vm->lock);
    return go;
}

static void *vcpu_thread(void *arg)
{
    struct kt_vcpu *v = arg;
    struct kt_vm *vm = v->vm;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, KICK_SIGNAL);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    char name[16];
    snprintf(name, sizeof(name), "ktstr-vcpu%d", v->id);
    prctl(PR_SET_NAME, name, 0, 0, 0);
    __atomic_store_n(&v->tid, (int)gettid(), __ATOMIC_RELEASE);

    for (;;) {
        __atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
        if (!wait_while_paused(v))
            break;
        if (ioctl(v->fd, KVM_RUN, 0) < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            struct kt_event ev = {.kind = KT_EV_ERROR, .code = (uint64_t)errno};
            kt_vcpu_fill_regs(v, &ev);
            kt_vm_stop_with(vm, &ev);
            break;
        }
        switch (v->run->exit_reason) {
        case KVM_EXIT_IO:
            handle_io(v);
            break;
        case KVM_EXIT_MMIO:
            handle_mmio(v);
            break;
        case KVM_EXIT_HLT:
            park_halted(v);
            break;
        case KVM_EXIT_SHUTDOWN:
            crash(v, KT_EV_SHUTDOWN, 0);
            break;
        case KVM_EXIT_FAIL_ENTRY:
            crash(v, KT_EV_FAIL_ENTRY, v->run->fail_entry.hardware_entry_failure_reason);
            break;
        case KVM_EXIT_INTERNAL_ERROR:
            crash(v, KT_EV_INTERNAL_ERROR, v->run->internal.suberror);
            break;
        case KVM_EXIT_INTR:
            break;
        case KVM_EXIT_SYSTEM_EVENT: {
            uint32_t t = v->run->system_event.type;
            struct kt_event ev = {.kind = t == KVM_SYSTEM_EVENT_RESET ? KT_EV_RESET
                                          : t == KVM_SYSTEM_EVENT_SHUTDOWN ? KT_EV_POWEROFF
                                                                            : KT_EV_UNHANDLED,
                                  .code = t};
            kt_vcpu_fill_regs(v, &ev);
            kt_vm_stop_with(vm, &ev);
            break;
        }
        default:
            crash(v, KT_EV_UNHANDLED, v->run->exit_reason);
            break;
        }
    }
    pthread_mutex_lock(&vm->lock);
    vm->live_vcpus--;
    if (!vm->live_vcpus)
        vm->state = KT_STATE_STOPPED;
    pthread_cond_broadcast(&vm->cond);
    pthread_mutex_unlock(&vm->lock);
    return NULL;
}

int kt_vcpu_spawn(struct kt_vcpu *v, char *err, size_t errlen)
{
    /* vCPU threads take no signals but the kick: Ctrl-C stays with Python's main thread. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    pthread_mutex_lock(&v->vm->lock); /* kick_all reads thread + started under the lock */
    int rc = pthread_create(&v->thread, NULL, vcpu_thread, v);
    if (!rc)
        v->started = true;
    pthread_mutex_unlock(&v->vm->lock);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc)
        return kt_err(err, errlen, -rc, "cannot start the thread of vCPU %d: %s", v->id,
                      strerror(rc));
    return 0;
}
