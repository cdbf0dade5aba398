/*
 * boot.c - getting the first instruction to run:
 *   firmware  a raw image mapped just below 4 GiB (its tail also at 1 MiB - size), run from
 *             the x86 reset vector in real mode; the synthetic test guests use this, and
 *             QEMU runs the same image with -bios.
 *   PVH       an ELF vmlinux with the XEN_ELFNOTE_PHYS32_ENTRY note: PT_LOAD segments at
 *             their physical addresses, hvm_start_info (memory map, command line,
 *             initramfs module, RSDP), entry in 32-bit protected mode with paging off.
 *   bzImage   the 64-bit boot protocol: boot_params (setup header, e820, command line,
 *             ramdisk, RSDP), identity-mapped 4 GiB, entry at the 64-bit start + 0x200.
 * Kernel boots also get the ACPI tables at 0xE0000 (kt_acpi_build).
 */
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include "internal.h"

#define GDT_ADDR 0x500
#define START_INFO_ADDR 0x6000
#define MEMMAP_ADDR 0x6100
#define MODLIST_ADDR 0x6400
#define ZERO_PAGE_ADDR 0x7000
#define PML4_ADDR 0x9000
#define CMDLINE_ADDR 0x20000
#define CMDLINE_MAX 0x10000
#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define HVM_START_MAGIC 0x336ec578

struct hvm_start_info {
    uint32_t magic, version, flags, nr_modules;
    uint64_t modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr;
    uint32_t memmap_entries, reserved;
};
struct hvm_modlist_entry { uint64_t paddr, size, cmdline_paddr, reserved; };
struct hvm_memmap_entry { uint64_t addr, size; uint32_t type, reserved; };
struct e820 { uint64_t addr, size; uint32_t type; } __attribute__((packed));

/* ------------------------------------------------------------------ firmware */

int kt_vm_load_firmware(struct kt_vm *vm, const uint8_t *img, size_t len, char *err, size_t errlen)
{
    if (vm->boot_kind)
        return kt_err(err, errlen, -EINVAL, "something was already loaded into this VM");
    if (!len || len > KT_FIRMWARE_MAX || (len & 0xfff))
        return kt_err(err, errlen, -EINVAL, "firmware image must be 4 KiB to %u KiB in whole "
                      "4 KiB pages (got %zu bytes)", KT_FIRMWARE_MAX >> 10, len);
    if (vm->low_size < 0x100000)
        return kt_err(err, errlen, -EINVAL, "firmware boot needs at least 1 MiB of RAM");
    vm->fw = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (vm->fw == MAP_FAILED) {
        vm->fw = NULL;
        return kt_err(err, errlen, -errno, "mmap firmware: %s", strerror(errno));
    }
    vm->fw_size = len;
    memcpy(vm->fw, img, len);
    struct kvm_userspace_memory_region r = {
        .slot = 2, .guest_phys_addr = 0x100000000ULL - len, .memory_size = len,
        .userspace_addr = (uint64_t)(uintptr_t)vm->fw,
    };
    if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
        return kt_err(err, errlen, -errno, "KVM_SET_USER_MEMORY_REGION firmware: %s",
                      strerror(errno));
    /* The legacy BIOS window: the image's last 128 KiB also appear just below 1 MiB. */
    size_t lo = len < 0x20000 ? len : 0x20000;
    memcpy(vm->mem + 0x100000 - lo, img + len - lo, lo);
    vm->boot_kind = KT_BOOT_FIRMWARE;
    vm->entry = 0xfffffff0ULL;
    return 0;
}

/* ------------------------------------------------------------------ common */

static int build_acpi(struct kt_vm *vm, char *err, size_t errlen)
{
    struct kt_acpi_layout lay;
    int rc = kt_acpi_build(&vm->cfg.topo, vm->low_size, vm->high_size, KT_ACPI_BASE,
                           vm->mem + KT_ACPI_BASE, KT_ACPI_SIZE, &lay);
    if (rc < 0)
        return kt_err(err, errlen, rc, "ACPI tables for %u vCPUs do not fit in %llu KiB",
                      vm->nvcpus, KT_ACPI_SIZE >> 10);
    vm->rsdp = lay.rsdp;
    return 0;
}

/* RAM and holes in guest-physical order; type 1 = RAM, 2 = reserved. */
static int memory_map(struct kt_vm *vm, struct e820 *m)
{
    int n = 0;
    m[n++] = (struct e820){0, 0x9fc00, 1};
    m[n++] = (struct e820){0x9fc00, 0x400, 2};
    m[n++] = (struct e820){0xe0000, 0x20000, 2};
    m[n++] = (struct e820){0x100000, vm->low_size - 0x100000, 1};
    if (vm->high_size)
        m[n++] = (struct e820){KT_HIGH_MEM_BASE, vm->high_size, 1};
    return n;
}

static int put_cmdline(struct kt_vm *vm, const char *cmdline, char *err, size_t errlen)
{
    size_t n = strlen(cmdline);
    if (n >= CMDLINE_MAX)
        return kt_err(err, errlen, -E2BIG, "kernel command line is %zu bytes, over %d", n,
                      CMDLINE_MAX - 1);
    memcpy(vm->mem + CMDLINE_ADDR, cmdline, n + 1);
    return 0;
}

static int put_initrd(struct kt_vm *vm, const uint8_t *initrd, size_t len, uint64_t floor,
                      uint64_t ceiling, uint64_t *addr, char *err, size_t errlen)
{
    *addr = 0;
    if (!len)
        return 0;
    uint64_t top = vm->low_size < ceiling ? vm->low_size : ceiling;
    if (len > top || ((top - len) & ~0xfffULL) < floor)
        return kt_err(err, errlen, -ENOMEM, "the initramfs (%zu KiB) does not fit in guest "
                      "memory above the kernel: give the VM more memory", len >> 10);
    *addr = (top - len) & ~0xfffULL;
    memcpy(vm->mem + *addr, initrd, len);
    return 0;
}

static void write_gdt(struct kt_vm *vm, uint64_t code)
{
    uint64_t gdt[4] = {0, 0, code, 0x00cf93000000ffffULL};
    memcpy(vm->mem + GDT_ADDR, gdt, sizeof(gdt));
}

static void seg(struct kvm_segment *s, uint16_t sel, uint8_t type, bool l, bool db)
{
    memset(s, 0, sizeof(*s));
    s->base = 0;
    s->limit = 0xffffffff;
    s->selector = sel;
    s->type = type;
    s->present = 1;
    s->s = 1;
    s->dpl = 0;
    s->db = db;
    s->l = l;
    s->g = 1;
}

/* The register state both direct-boot paths start a vCPU in: flat 4 GiB segments from our
 * GDT, then either 32-bit protected mode without paging (PVH) or 64-bit long mode on the
 * identity map at PML4_ADDR (bzImage's 64-bit entry). The caller adds its boot-info pointer. */
static void flat_entry(struct kt_vm *vm, int kind, uint64_t rip)
{
    bool lm = kind == KT_BOOT_BZIMAGE;
    write_gdt(vm, lm ? 0x00af9b000000ffffULL : 0x00cf9b000000ffffULL);
    memset(&vm->boot_regs, 0, sizeof(vm->boot_regs));
    vm->boot_regs.rip = rip;
    vm->boot_regs.rflags = 2;
    struct kvm_sregs *s = &vm->boot_sregs;
    seg(&s->cs, 0x10, 0xb, lm, !lm);
    seg(&s->ds, 0x18, 0x3, false, true);
    s->es = s->fs = s->gs = s->ss = s->ds;
    s->gdt.base = GDT_ADDR;
    s->gdt.limit = 31;
    s->cr0 = lm ? 0x80000011 : 0x11; /* (PG |) PE | ET */
    s->cr3 = lm ? PML4_ADDR : 0;
    s->cr4 = lm ? 0x20 : 0;          /* PAE */
    s->efer = lm ? 0x500 : 0;        /* LME | LMA */
    vm->entry = rip;
    vm->boot_kind = kind;
}

/* ------------------------------------------------------------------ PVH */

static int elf_pvh_entry(const uint8_t *img, size_t len, const Elf64_Phdr *ph, uint64_t *entry)
{
    if (ph->p_offset > len || ph->p_filesz > len - ph->p_offset)
        return -EINVAL;
    const uint8_t *p = img + ph->p_offset, *end = p + ph->p_filesz;
    while (p + sizeof(Elf64_Nhdr) <= end) {
        const Elf64_Nhdr *nh = (const Elf64_Nhdr *)p;
        size_t name = (nh->n_namesz + 3) & ~3u, desc = (nh->n_descsz + 3) & ~3u;
        const uint8_t *np = p + sizeof(*nh), *dp = np + name;
        if (dp + desc > end)
            return -EINVAL;
        if (nh->n_type == XEN_ELFNOTE_PHYS32_ENTRY && nh->n_namesz == 4 &&
            !memcmp(np, "Xen", 4)) {
            uint64_t e = 0;
            memcpy(&e, dp, nh->n_descsz >= 8 ? 8 : 4);
            *entry = nh->n_descsz >= 8 ? e : (uint32_t)e;
            return 1;
        }
        p = dp + desc;
    }
    return 0;
}

static int load_pvh(struct kt_vm *vm, const uint8_t *img, size_t len, const char *cmdline,
                    const uint8_t *initrd, size_t initrd_len, char *err, size_t errlen)
{
    const Elf64_Ehdr *eh = (const Elf64_Ehdr *)img;
    if (len < sizeof(*eh) || eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_machine != EM_X86_64)
        return kt_err(err, errlen, -ENOEXEC, "the kernel is an ELF file but not an x86_64 one");
    if (eh->e_phoff > len || eh->e_phnum > 64 ||
        eh->e_phoff + (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr) > len)
        return kt_err(err, errlen, -ENOEXEC, "the kernel ELF has a broken program header table");
    const Elf64_Phdr *ph = (const Elf64_Phdr *)(img + eh->e_phoff);
    uint64_t entry = 0, kend = 0;
    int found = 0;
    for (int i = 0; i < eh->e_phnum; i++)
        if (ph[i].p_type == PT_NOTE && !found)
            found = elf_pvh_entry(img, len, &ph[i], &entry) == 1;
    if (!found)
        return kt_err(err, errlen, -ENOEXEC, "the vmlinux has no PVH entry note "
                      "(XEN_ELFNOTE_PHYS32_ENTRY): build it with CONFIG_PVH=y or pass a bzImage");
    for (int i = 0; i < eh->e_phnum; i++) {
        const Elf64_Phdr *p = &ph[i];
        if (p->p_type != PT_LOAD)
            continue;
        if (p->p_offset > len || p->p_filesz > len - p->p_offset || p->p_filesz > p->p_memsz)
            return kt_err(err, errlen, -ENOEXEC, "the kernel ELF segment %d lies outside the file", i);
        uint8_t *dst = p->p_paddr >= 0x100000 ? kt_gpa(vm, p->p_paddr, p->p_memsz) : NULL;
        if (!dst)
            return kt_err(err, errlen, -ENOMEM, "the kernel segment at 0x%llx (%llu KiB) does not "
                          "fit in %llu MiB of guest memory", (unsigned long long)p->p_paddr,
                          (unsigned long long)(p->p_memsz >> 10),
                          (unsigned long long)(vm->mem_size >> 20));
        memcpy(dst, img + p->p_offset, p->p_filesz);
        memset(dst + p->p_filesz, 0, p->p_memsz - p->p_filesz);
        if (p->p_paddr + p->p_memsz > kend)
            kend = p->p_paddr + p->p_memsz;
    }
    int rc = put_cmdline(vm, cmdline, err, errlen);
    uint64_t initrd_addr = 0;
    if (!rc)
        rc = put_initrd(vm, initrd, initrd_len, kend, 0xffffffffULL, &initrd_addr, err, errlen);
    if (!rc)
        rc = build_acpi(vm, err, errlen);
    if (rc)
        return rc;

    struct e820 m[8];
    int nm = memory_map(vm, m);
    struct hvm_memmap_entry *mm = (struct hvm_memmap_entry *)(vm->mem + MEMMAP_ADDR);
    for (int i = 0; i < nm; i++)
        mm[i] = (struct hvm_memmap_entry){m[i].addr, m[i].size, m[i].type, 0};
    struct hvm_start_info *si = (struct hvm_start_info *)(vm->mem + START_INFO_ADDR);
    memset(si, 0, sizeof(*si));
    si->magic = HVM_START_MAGIC;
    si->version = 1;
    si->cmdline_paddr = CMDLINE_ADDR;
    si->rsdp_paddr = vm->rsdp;
    si->memmap_paddr = MEMMAP_ADDR;
    si->memmap_entries = (uint32_t)nm;
    if (initrd_len) {
        struct hvm_modlist_entry *mod = (struct hvm_modlist_entry *)(vm->mem + MODLIST_ADDR);
        *mod = (struct hvm_modlist_entry){initrd_addr, initrd_len, 0, 0};
        si->nr_modules = 1;
        si->modlist_paddr = MODLIST_ADDR;
    }
    flat_entry(vm, KT_BOOT_PVH, entry);
    vm->boot_regs.rbx = START_INFO_ADDR;
    return 0;
}

/* ------------------------------------------------------------------ bzImage */

static int load_bzimage(struct kt_vm *vm, const uint8_t *img, size_t len, const char *cmdline,
                        const uint8_t *initrd, size_t initrd_len, char *err, size_t errlen)
{
    uint16_t version;
    memcpy(&version, img + 0x206, 2);
    if (version < 0x020c || !(img[0x236] & 1))
        return kt_err(err, errlen, -ENOEXEC, "the bzImage (boot protocol %u.%02u) has no 64-bit "
                      "entry point: need protocol 2.12+ with XLF_KERNEL_64", version >> 8,
                      version & 0xff);
    size_t setup = ((size_t)(img[0x1f1] ? img[0x1f1] : 4) + 1) * 512;
    if (setup >= len)
        return kt_err(err, errlen, -ENOEXEC, "the bzImage is truncated (setup %zu >= file %zu)",
                      setup, len);
    uint64_t pref;
    uint32_t init_size, initrd_max;
    memcpy(&pref, img + 0x258, 8);
    memcpy(&init_size, img + 0x260, 4);
    memcpy(&initrd_max, img + 0x22c, 4);
    if (pref < 0x100000)
        pref = 0x1000000;
    uint64_t need = init_size > len - setup ? init_size : len - setup;
    uint8_t *dst = kt_gpa(vm, pref, need);
    if (!dst)
        return kt_err(err, errlen, -ENOMEM, "the kernel needs %llu MiB at 0x%llx: give the VM "
                      "more memory", (unsigned long long)(need >> 20), (unsigned long long)pref);
    memcpy(dst, img + setup, len - setup);
    int rc = put_cmdline(vm, cmdline, err, errlen);
    uint64_t initrd_addr = 0;
    if (!rc)
        rc = put_initrd(vm, initrd, initrd_len, pref + need, initrd_max ? initrd_max : 0x37ffffff,
                        &initrd_addr, err, errlen);
    if (!rc)
        rc = build_acpi(vm, err, errlen);
    if (rc)
        return rc;

    uint8_t *zp = vm->mem + ZERO_PAGE_ADDR;
    memset(zp, 0, 4096);
    size_t hdr_end = 0x202 + img[0x201];
    if (hdr_end > len || hdr_end > 4096)
        hdr_end = 0x280;
    memcpy(zp + 0x1f1, img + 0x1f1, hdr_end - 0x1f1);
    zp[0x210] = 0xff;                  /* type_of_loader: undefined */
    zp[0x211] |= 0x01 | 0x80;          /* LOADED_HIGH | CAN_USE_HEAP */
    uint16_t heap_end = 0xfe00 - 0x200;
    memcpy(zp + 0x224, &heap_end, 2);
    uint32_t v32 = CMDLINE_ADDR;
    memcpy(zp + 0x228, &v32, 4);
    v32 = (uint32_t)initrd_addr;
    memcpy(zp + 0x218, &v32, 4);
    v32 = (uint32_t)initrd_len;
    memcpy(zp + 0x21c, &v32, 4);
    memcpy(zp + 0x070, &vm->rsdp, 8);
    struct e820 m[8];
    int nm = memory_map(vm, m);
    zp[0x1e8] = (uint8_t)nm;
    memcpy(zp + 0x2d0, m, sizeof(struct e820) * (size_t)nm);

    /* Identity map of the first 4 GiB with 2 MiB pages. */
    uint64_t *pml4 = (uint64_t *)(vm->mem + PML4_ADDR);
    uint64_t *pdpt = pml4 + 512;
    uint64_t *pd = pdpt + 512;
    memset(pml4, 0, 6 * 4096);
    pml4[0] = (PML4_ADDR + 0x1000) | 3;
    for (int i = 0; i < 4; i++)
        pdpt[i] = (PML4_ADDR + 0x2000 + 0x1000 * (uint64_t)i) | 3;
    for (int i = 0; i < 4 * 512; i++)
        pd[i] = ((uint64_t)i << 21) | 0x83;
    flat_entry(vm, KT_BOOT_BZIMAGE, pref + 0x200);
    vm->boot_regs.rsi = ZERO_PAGE_ADDR;
    return 0;
}

int kt_vm_load_kernel(struct kt_vm *vm, const uint8_t *img, size_t len, const char *cmdline,
                      const uint8_t *initrd, size_t initrd_len, char *err, size_t errlen)
{
    if (vm->boot_kind)
        return kt_err(err, errlen, -EINVAL, "something was already loaded into this VM");
    if (!vm->cfg.irqchip)
        return kt_err(err, errlen, -EINVAL, "a kernel boot needs the in-kernel irqchip");
    if (vm->low_size < 0x200000)
        return kt_err(err, errlen, -ENOMEM, "a kernel needs more than 2 MiB of guest memory");
    if (len >= 4 && !memcmp(img, ELFMAG, SELFMAG))
        return load_pvh(vm, img, len, cmdline, initrd, initrd_len, err, errlen);
    if (len > 0x280 && !memcmp(img + 0x202, "HdrS", 4))
        return load_bzimage(vm, img, len, cmdline, initrd, initrd_len, err, errlen);
    return kt_err(err, errlen, -ENOEXEC, "the kernel image is neither a PVH vmlinux (ELF) nor a "
                  "bzImage (no HdrS boot header)");
}

/* ------------------------------------------------------------------ vCPU state */

int kt_boot_setup_vcpu(struct kt_vm *vm, struct kt_vcpu *v, char *err, size_t errlen)
{
    if (vm->boot_kind == KT_BOOT_FIRMWARE) {
        if (vm->cfg.irqchip && v->id) {
            /* With a LAPIC the APs would wait for INIT/SIPI; test guests start them all. */
            struct kvm_mp_state mp = {.mp_state = KVM_MP_STATE_RUNNABLE};
            if (ioctl(v->fd, KVM_SET_MP_STATE, &mp) < 0)
                return kt_err(err, errlen, -errno, "KVM_SET_MP_STATE vCPU %d: %s", v->id,
                              strerror(errno));
        }
        return 0;
    }
    if (v->id)
        return 0; /* APs wait for the kernel's INIT/SIPI */
    struct kvm_sregs s;
    if (ioctl(v->fd, KVM_GET_SREGS, &s) < 0)
        return kt_err(err, errlen, -errno, "KVM_GET_SREGS: %s", strerror(errno));
    const struct kvm_sregs *b = &vm->boot_sregs;
    s.cs = b->cs;
    s.ds = b->ds;
    s.es = b->es;
    s.fs = b->fs;
    s.gs = b->gs;
    s.ss = b->ss;
    s.gdt = b->gdt;
    s.cr0 = b->cr0;
    s.cr3 = b->cr3;
    s.cr4 = b->cr4;
    s.efer = b->efer;
    if (ioctl(v->fd, KVM_SET_SREGS, &s) < 0)
        return kt_err(err, errlen, -errno, "KVM_SET_SREGS (boot CPU): %s", strerror(errno));
    if (ioctl(v->fd, KVM_SET_REGS, &vm->boot_regs) < 0)
        return kt_err(err, errlen, -errno, "KVM_SET_REGS (boot CPU): %s", strerror(errno));
    return 0;
}
