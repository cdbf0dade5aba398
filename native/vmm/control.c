/*
 * control.c - a running VM seen from the host: the event ring (vCPU threads post, Python
 * drains when the eventfd fires), stop with a reason, pause/resume/kill (flag, then
 * immediate_exit + signal to every vCPU thread), the host channels (wire, shells), RAM regions and
 * vCPU registers for the monitor and crash reports.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* Kicks hold the lock, so kt_vm_destroy never joins (and frees) a thread that another
 * thread is about to signal: a vCPU thread that stops the VM kicks its siblings while the
 * host may be tearing the VM down (pthread_kill on a joined thread is undefined). */
static void kick_all(struct kt_vm *vm)
{
    pthread_mutex_lock(&vm->lock);
    if (!vm->joining)
        for (int i = 0; i < vm->nvcpus; i++)
            kt_vcpu_kick(&vm->vcpus[i]);
    pthread_mutex_unlock(&vm->lock);
}

/* Queue an event; caller holds vm->lock. */
static void post_locked(struct kt_vm *vm, const struct kt_event *ev)
{
    if (vm->ring_len == KT_EVENT_RING) {
        vm->ring_dropped++;
        return;
    }
    uint32_t slot = (vm->ring_head + vm->ring_len) % KT_EVENT_RING;
    vm->ring[slot] = *ev;
    if (!vm->ring[slot].ns)
        vm->ring[slot].ns = kt_now_ns();
    vm->ring_len++;
    uint64_t one = 1;
    ssize_t n = write(vm->event_fd, &one, sizeof(one));
    (void)n;
}

void kt_vm_post(struct kt_vm *vm, const struct kt_event *ev)
{
    pthread_mutex_lock(&vm->lock);
    post_locked(vm, ev);
    pthread_mutex_unlock(&vm->lock);
}

void kt_vm_stop_with(struct kt_vm *vm, const struct kt_event *ev)
{
    pthread_mutex_lock(&vm->lock);
    bool first = !vm->stop;
    if (first) {
        vm->stop = true;
        post_locked(vm, ev); /* the first stop reason is the VM's exit reason */
    }
    pthread_cond_broadcast(&vm->cond);
    pthread_mutex_unlock(&vm->lock);
    if (first)
        kick_all(vm);
}

void kt_vm_set_irq(struct kt_vm *vm, int irq, int src, int level)
{
    if (!vm->cfg.irqchip || irq < 0 || irq >= KT_ISA_IRQS)
        return;
    /* Under the lock so that two devices' calls reach KVM in the order their levels were
     * computed: otherwise a lowered line could overtake a raised one. */
    pthread_mutex_lock(&vm->irq_lock);
    if (level)
        vm->irq_src[irq] |= 1u << src;
    else
        vm->irq_src[irq] &= ~(1u << src);
    struct kvm_irq_level l = {.irq = (uint32_t)irq, .level = vm->irq_src[irq] != 0};
    ioctl(vm->vm_fd, KVM_IRQ_LINE, &l);
    pthread_mutex_unlock(&vm->irq_lock);
}

int kt_vm_pause(struct kt_vm *vm)
{
    pthread_mutex_lock(&vm->lock);
    if (vm->state != KT_STATE_RUNNING || vm->stop) {
        int rc = vm->state == KT_STATE_PAUSED ? 0 : -EINVAL;
        pthread_mutex_unlock(&vm->lock);
        return rc;
    }
    vm->pause_req = true;
    pthread_mutex_unlock(&vm->lock);
    kick_all(vm);
    pthread_mutex_lock(&vm->lock);
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 5;
    int rc = 0;
    while (!vm->stop && vm->paused_vcpus + vm->halted_vcpus < vm->live_vcpus) {
        if (pthread_cond_timedwait(&vm->cond, &vm->lock, &dl) == ETIMEDOUT) {
            rc = -ETIMEDOUT;
            break;
        }
    }
    if (!rc && !vm->stop) {
        vm->state = KT_STATE_PAUSED;
        struct kt_event ev = {.kind = KT_EV_PAUSED, .vcpu = -1};
        post_locked(vm, &ev);
    }
    pthread_mutex_unlock(&vm->lock);
    return rc;
}

int kt_vm_resume(struct kt_vm *vm)
{
    pthread_mutex_lock(&vm->lock);
    int rc = -EINVAL;
    if (vm->state == KT_STATE_PAUSED || vm->pause_req) {
        vm->pause_req = false;
        if (!vm->stop) {
            vm->state = KT_STATE_RUNNING;
            struct kt_event ev = {.kind = KT_EV_RESUMED, .vcpu = -1};
            post_locked(vm, &ev);
        }
        pthread_cond_broadcast(&vm->cond);
        rc = 0;
    }
    pthread_mutex_unlock(&vm->lock);
    return rc;
}

int kt_vm_kill(struct kt_vm *vm)
{
    struct kt_event ev = {.kind = KT_EV_KILLED, .vcpu = -1};
    kt_vm_stop_with(vm, &ev);
    return 0;
}

int kt_vm_state(struct kt_vm *vm)
{
    pthread_mutex_lock(&vm->lock);
    int s = vm->state;
    if (vm->stop)
        s = KT_STATE_STOPPED;
    pthread_mutex_unlock(&vm->lock);
    return s;
}

int kt_vm_event_fd(struct kt_vm *vm) { return vm->event_fd; }
int kt_vm_chan_fd(struct kt_vm *vm, int chan)
{
    return chan >= 0 && chan < KT_CHANS ? vm->chan[chan].rd : -1;
}
int kt_vm_mem_fd(struct kt_vm *vm) { return vm->mem_fd; }

int kt_vm_next_event(struct kt_vm *vm, struct kt_event *ev)
{
    pthread_mutex_lock(&vm->lock);
    int got = 0;
    if (vm->ring_len) {
        *ev = vm->ring[vm->ring_head];
        vm->ring_head = (vm->ring_head + 1) % KT_EVENT_RING;
        vm->ring_len--;
        got = 1;
    }
    if (!vm->ring_len) {
        uint64_t n;
        ssize_t r = read(vm->event_fd, &n, sizeof(n));
        (void)r;
    }
    pthread_mutex_unlock(&vm->lock);
    return got;
}

int kt_vm_chan_write(struct kt_vm *vm, int chan, const uint8_t *data, size_t len)
{
    if (chan < 0 || chan >= KT_CHANS)
        return -EINVAL;
    return (int)kt_uart_rx_push(vm, &vm->chan[chan].uart, data, len);
}

int kt_vm_ram_regions(struct kt_vm *vm, uint64_t *gpa, uint64_t *offset, uint64_t *size, int max)
{
    int n = 0;
    if (n < max) {
        gpa[n] = 0;
        offset[n] = 0;
        size[n] = vm->low_size;
        n++;
    }
    if (vm->high_size && n < max) {
        gpa[n] = KT_HIGH_MEM_BASE;
        offset[n] = vm->low_size;
        size[n] = vm->high_size;
        n++;
    }
    return n;
}

int kt_vm_vcpu_regs(struct kt_vm *vm, int vcpu, struct kt_event *out)
{
    if (vcpu < 0 || vcpu >= vm->nvcpus)
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    out->ns = kt_now_ns();
    kt_vcpu_fill_regs(&vm->vcpus[vcpu], out);
    return 0;
}

int kt_vm_vcpu_tid(struct kt_vm *vm, int vcpu)
{
    if (vcpu < 0 || vcpu >= vm->nvcpus)
        return -EINVAL;
    return __atomic_load_n(&vm->vcpus[vcpu].tid, __ATOMIC_ACQUIRE);
}

int kt_vm_boot_info(struct kt_vm *vm, uint64_t *entry, uint64_t *rsdp, int *kind)
{
    *entry = vm->entry;
    *rsdp = vm->rsdp;
    *kind = vm->boot_kind;
    return 0;
}

