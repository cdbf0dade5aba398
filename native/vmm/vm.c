/*
 * vm.c - VM lifetime: open /dev/kvm, create the VM and its memfd-backed RAM, the in-kernel
 * irqchip and PIT, the devices (every registered one, device.c) and vCPUs; start them; tear
 * everything down. What happens while it runs (events, pause, kill) is in control.c.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

int kt_err(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

uint64_t kt_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

uint8_t *kt_gpa(struct kt_vm *vm, uint64_t gpa, uint64_t len)
{
    if (gpa + len < gpa)
        return NULL;
    if (gpa + len <= vm->low_size)
        return vm->mem + gpa;
    if (vm->high_size && gpa >= KT_HIGH_MEM_BASE &&
        gpa + len <= KT_HIGH_MEM_BASE + vm->high_size)
        return vm->mem + vm->low_size + (gpa - KT_HIGH_MEM_BASE);
    return NULL;
}

/* $KTSTR_KVM_DEVICE overrides the path (tests of the error messages). */
static int open_kvm(char *err, size_t errlen)
{
    const char *dev = getenv("KTSTR_KVM_DEVICE");
    if (!dev || !*dev)
        dev = "/dev/kvm";
    int fd = open(dev, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT)
            return kt_err(err, errlen, -e, "%s is missing (load the kvm_intel or kvm_amd "
                          "module, or use --engine qemu)", dev);
        if (e == EACCES || e == EPERM)
            return kt_err(err, errlen, -e, "%s is not permitted for this user (add yourself "
                          "to the kvm group, or use --engine qemu)", dev);
        return kt_err(err, errlen, -e, "cannot open %s: %s", dev, strerror(e));
    }
    int api = ioctl(fd, KVM_GET_API_VERSION, 0);
    if (api != KVM_API_VERSION) {
        close(fd);
        return kt_err(err, errlen, -EINVAL, "%s is not a KVM device (KVM_GET_API_VERSION "
                      "answered %d, not %d)", dev, api, KVM_API_VERSION);
    }
    return fd;
}

int kt_kvm_check(char *err, size_t errlen)
{
    int fd = open_kvm(err, errlen);
    if (fd < 0)
        return fd;
    close(fd);
    return 0;
}

int kt_kvm_max_vcpus(void)
{
    int fd = open_kvm(NULL, 0);
    if (fd < 0)
        return fd;
    int n = ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
    if (n <= 0)
        n = ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
    close(fd);
    return n > 0 ? n : 4;
}

static int add_slot(struct kt_vm *vm, int slot, uint64_t gpa, uint64_t size, void *host,
                    char *err, size_t errlen)
{
    struct kvm_userspace_memory_region r = {
        .slot = (uint32_t)slot, .guest_phys_addr = gpa, .memory_size = size,
        .userspace_addr = (uint64_t)(uintptr_t)host,
    };
    if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
        return kt_err(err, errlen, -errno, "KVM_SET_USER_MEMORY_REGION slot %d (%llu MiB at "
                      "0x%llx): %s", slot, (unsigned long long)(size >> 20),
                      (unsigned long long)gpa, strerror(errno));
    return 0;
}

/*
 * GSI routing as QEMU's pc machine sets it, matching our MADT's override IRQ0 -> GSI 2:
 * GSI 0-15 reach the PICs (except the cascade, 2), GSI 0 reaches IOAPIC pin 2 (where the
 * PIT's IRQ0 is expected) and GSI 1-23 their own pins.
 */
static int setup_gsi_routing(struct kt_vm *vm, char *err, size_t errlen)
{
    struct {
        struct kvm_irq_routing r;
        struct kvm_irq_routing_entry e[64];
    } rt;
    memset(&rt, 0, sizeof(rt));
    uint32_t n = 0;
    for (uint32_t i = 0; i < 16; i++) {
        if (i == 2)
            continue;
        rt.e[n].gsi = i;
        rt.e[n].type = KVM_IRQ_ROUTING_IRQCHIP;
        rt.e[n].u.irqchip.irqchip = i < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE;
        rt.e[n].u.irqchip.pin = i % 8;
        n++;
    }
    for (uint32_t i = 0; i < 24; i++) {
        if (i == 2)
            continue;
        rt.e[n].gsi = i;
        rt.e[n].type = KVM_IRQ_ROUTING_IRQCHIP;
        rt.e[n].u.irqchip.irqchip = KVM_IRQCHIP_IOAPIC;
        rt.e[n].u.irqchip.pin = i == 0 ? 2 : i;
        n++;
    }
    rt.r.nr = n;
    if (ioctl(vm->vm_fd, KVM_SET_GSI_ROUTING, &rt) < 0)
        return kt_err(err, errlen, -errno, "KVM_SET_GSI_ROUTING: %s", strerror(errno));
    return 0;
}

/*
 * The memfd mapped at a 2 MiB-aligned address and advised MADV_HUGEPAGE, so that where
 * shmem THP is allowed (/sys/kernel/mm/transparent_hugepage/shmem_enabled = advise) KVM
 * maps guest RAM with 2 MiB pages: nested under QEMU TCG this cut nested-paging faults
 * from ~25,000 to ~50 per Linux boot. Without THP it is an ordinary shared mapping.
 */
static void *map_ram(int fd, uint64_t size)
{
    const uint64_t huge = 2ULL << 20;
    uint8_t *res = mmap(NULL, size + huge, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                        -1, 0);
    if (res == MAP_FAILED)
        return MAP_FAILED;
    uint8_t *at = (uint8_t *)(((uintptr_t)res + huge - 1) & ~(uintptr_t)(huge - 1));
    void *p = mmap(at, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE | MAP_FIXED, fd, 0);
    if (p == MAP_FAILED) {
        int e = errno;
        munmap(res, size + huge);
        errno = e;
        return MAP_FAILED;
    }
    if (at > res)
        munmap(res, (size_t)(at - res));
    uint8_t *end = at + size, *rend = res + size + huge;
    if (rend > end)
        munmap(end, (size_t)(rend - end));
    madvise(p, size, MADV_HUGEPAGE);
    return p;
}

static int setup_memory(struct kt_vm *vm, char *err, size_t errlen)
{
    uint64_t size = vm->cfg.mem_bytes;
    if (size < (2ULL << 20) || (size & 0xfff))
        return kt_err(err, errlen, -EINVAL, "guest memory must be a multiple of 4 KiB and at "
                      "least 2 MiB (got %llu bytes)", (unsigned long long)size);
    vm->mem_fd = memfd_create("ktstr-guest-ram", MFD_CLOEXEC);
    if (vm->mem_fd < 0)
        return kt_err(err, errlen, -errno, "memfd_create: %s", strerror(errno));
    if (ftruncate(vm->mem_fd, (off_t)size) < 0)
        return kt_err(err, errlen, -errno, "cannot size guest memory to %llu MiB: %s",
                      (unsigned long long)(size >> 20), strerror(errno));
    void *p = map_ram(vm->mem_fd, size);
    if (p == MAP_FAILED)
        return kt_err(err, errlen, -errno, "cannot map %llu MiB of guest memory: %s",
                      (unsigned long long)(size >> 20), strerror(errno));
    vm->mem = p;
    vm->mem_size = size;
    vm->low_size = size < KT_LOW_MEM_MAX ? size : KT_LOW_MEM_MAX;
    vm->high_size = size - vm->low_size;
    int rc = add_slot(vm, 0, 0, vm->low_size, vm->mem, err, errlen);
    if (!rc && vm->high_size)
        rc = add_slot(vm, 1, KT_HIGH_MEM_BASE, vm->high_size, vm->mem + vm->low_size, err, errlen);
    return rc;
}

struct kt_vm *kt_vm_create(const struct kt_config *cfg, char *err, size_t errlen)
{
    const struct kt_topology *t = &cfg->topo;
    if (!t->nodes || !t->llcs || !t->cores || !t->threads || t->llcs % t->nodes) {
        kt_err(err, errlen, -EINVAL, "bad topology %un%ul%uc%ut", t->nodes, t->llcs, t->cores,
               t->threads);
        return NULL;
    }
    if (kt_vcpu_signal_init() < 0) {
        kt_err(err, errlen, -errno, "sigaction for the vCPU kick signal: %s", strerror(errno));
        return NULL;
    }
    struct kt_vm *vm = calloc(1, sizeof(*vm));
    if (!vm) {
        kt_err(err, errlen, -ENOMEM, "out of memory");
        return NULL;
    }
    vm->cfg = *cfg;
    vm->kvm_fd = vm->vm_fd = vm->mem_fd = vm->event_fd = -1;
    pthread_mutex_init(&vm->lock, NULL);
    pthread_mutex_init(&vm->irq_lock, NULL);
    pthread_cond_init(&vm->cond, NULL);
    vm->nvcpus = (int)(t->llcs * t->cores * t->threads);

    int rc = open_kvm(err, errlen);
    if (rc < 0)
        goto fail;
    vm->kvm_fd = rc;
    int max = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
    if (max > 0 && vm->nvcpus > max) {
        kt_err(err, errlen, -E2BIG, "topology %un%ul%uc%ut has %d vCPUs, more than this "
               "host's KVM_CAP_MAX_VCPUS (%d)", t->nodes, t->llcs, t->cores, t->threads,
               vm->nvcpus, max);
        goto fail;
    }
    vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
    if (vm->vm_fd < 0) {
        kt_err(err, errlen, -errno, "KVM_CREATE_VM: %s", strerror(errno));
        goto fail;
    }
    /* Needed by VMX for real mode; harmless elsewhere. */
    ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, 0xfffbd000UL);
    if (setup_memory(vm, err, errlen) < 0)
        goto fail;
    if (cfg->irqchip) {
        if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
            kt_err(err, errlen, -errno, "KVM_CREATE_IRQCHIP: %s", strerror(errno));
            goto fail;
        }
        if (setup_gsi_routing(vm, err, errlen) < 0)
            goto fail;
        struct kvm_pit_config pit = {.flags = 0};
        if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
            kt_err(err, errlen, -errno, "KVM_CREATE_PIT2: %s", strerror(errno));
            goto fail;
        }
    }
    vm->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (vm->event_fd < 0) {
        kt_err(err, errlen, -errno, "eventfd: %s", strerror(errno));
        goto fail;
    }
    /* Every registered device (KT_DEVICE in its own file) registers the ports/MMIO it owns
     * on the buses the vCPU loop consults. */
    vm->pio_bus.name = "port";
    vm->mmio_bus.name = "MMIO";
    if (kt_devices_init(vm, err, errlen) < 0)
        goto fail;

    vm->vcpus = calloc((size_t)vm->nvcpus, sizeof(*vm->vcpus));
    if (!vm->vcpus) {
        kt_err(err, errlen, -ENOMEM, "out of memory for %d vCPUs", vm->nvcpus);
        goto fail;
    }
    for (int i = 0; i < vm->nvcpus; i++)
        vm->vcpus[i].fd = -1;
    for (int i = 0; i < vm->nvcpus; i++)
        if (kt_vcpu_create(vm, i, err, errlen) < 0)
            goto fail;
    vm->state = KT_STATE_CREATED;
    return vm;
fail:
    kt_vm_destroy(vm);
    return NULL;
}

int kt_vm_start(struct kt_vm *vm, char *err, size_t errlen)
{
    if (vm->state != KT_STATE_CREATED)
        return kt_err(err, errlen, -EINVAL, "the VM was already started");
    if (vm->boot_kind == KT_BOOT_NONE)
        return kt_err(err, errlen, -EINVAL, "nothing to boot: load firmware or a kernel first");
    for (int i = 0; i < vm->nvcpus; i++) {
        int rc = kt_vcpu_setup(&vm->vcpus[i], err, errlen);
        if (rc < 0)
            return rc;
    }
    pthread_mutex_lock(&vm->lock);
    vm->state = KT_STATE_RUNNING;
    vm->live_vcpus = vm->nvcpus; /* all of them count before the first can halt */
    pthread_mutex_unlock(&vm->lock);
    for (int i = 0; i < vm->nvcpus; i++) {
        int rc = kt_vcpu_spawn(&vm->vcpus[i], err, errlen);
        if (rc < 0) {
            pthread_mutex_lock(&vm->lock);
            vm->live_vcpus -= vm->nvcpus - i; /* the ones that never started */
            pthread_mutex_unlock(&vm->lock);
            kt_vm_kill(vm);
            return rc;
        }
    }
    return 0;
}

void kt_vm_destroy(struct kt_vm *vm)
{
    if (!vm)
        return;
    if (vm->vcpus) {
        kt_vm_kill(vm);
        pthread_mutex_lock(&vm->lock); /* after this, no thread kicks (control.c kick_all) */
        vm->joining = true;
        pthread_mutex_unlock(&vm->lock);
        for (int i = 0; i < vm->nvcpus; i++) {
            struct kt_vcpu *v = &vm->vcpus[i];
            if (v->started)
                pthread_join(v->thread, NULL);
        }
        for (int i = 0; i < vm->nvcpus; i++) {
            struct kt_vcpu *v = &vm->vcpus[i];
            if (v->run)
                munmap(v->run, v->run_size);
            if (v->fd >= 0)
                close(v->fd);
            free(v->cpuid);
        }
        free(vm->vcpus);
    }
    kt_devices_exit(vm); /* after the vCPU threads: their handlers use the devices */
    if (vm->mem)
        munmap(vm->mem, vm->mem_size);
    if (vm->fw)
        munmap(vm->fw, vm->fw_size);
    int fds[] = {vm->event_fd, vm->mem_fd, vm->vm_fd, vm->kvm_fd};
    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
        if (fds[i] >= 0)
            close(fds[i]);
    pthread_cond_destroy(&vm->cond);
    pthread_mutex_destroy(&vm->irq_lock);
    pthread_mutex_destroy(&vm->lock);
    free(vm);
}
