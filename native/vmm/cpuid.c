/*
 * cpuid.c - per-vCPU CPUID from a Topology (pure: no KVM calls, unit-tested via cffi).
 *
 * APIC id layout, as QEMU builds it for -smp sockets=N,dies=D,cores=C,threads=T:
 *   [ package = NUMA node | die = LLC within the node | core | thread ]
 * each field as wide as the next power of two of its count. The caches come from leaf 4
 * (L1d/L1i/L2 per core, L3 shared by the threads of one LLC), the levels from leaf 0xB
 * (SMT, core) and 0x1F (SMT, core, die). With KT_CPUID_VENDOR_INTEL the vendor string is
 * GenuineIntel so Linux reads exactly these leaves (on AMD it reads 0x8000001E instead);
 * on an AMD host that vendor string costs the KVM PV features that make hypercalls (below).
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "ktvmm.h"

#define FLAG_INDEX 1 /* KVM_CPUID_FLAG_SIGNIFCANT_INDEX */

static uint32_t clog2(uint32_t n)
{
    uint32_t b = 0;
    while ((1u << b) < n)
        b++;
    return b;
}

struct shape {
    uint32_t smt, core, die; /* bit widths */
    uint32_t node, llc_in_node, core_id, thread;
};

static struct shape shape_of(const struct kt_topology *t, uint32_t cpu)
{
    struct shape s;
    uint32_t lpn = t->llcs / t->nodes;
    s.smt = clog2(t->threads);
    s.core = clog2(t->cores);
    s.die = clog2(lpn);
    s.thread = cpu % t->threads;
    uint32_t core_global = cpu / t->threads;
    s.core_id = core_global % t->cores;
    uint32_t llc = core_global / t->cores;
    s.node = llc / lpn;
    s.llc_in_node = llc % lpn;
    return s;
}

uint32_t kt_apic_id(const struct kt_topology *t, uint32_t cpu)
{
    struct shape s = shape_of(t, cpu);
    return (s.node << (s.smt + s.core + s.die)) | (s.llc_in_node << (s.smt + s.core)) |
           (s.core_id << s.smt) | s.thread;
}

static int put(struct kt_cpuid_entry *out, int *n, int max, uint32_t fn, uint32_t idx,
               uint32_t flags, uint32_t a, uint32_t b, uint32_t c, uint32_t d)
{
    if (*n >= max)
        return -ENOSPC;
    struct kt_cpuid_entry *e = &out[(*n)++];
    memset(e, 0, sizeof(*e));
    e->function = fn;
    e->index = idx;
    e->flags = flags;
    e->eax = a;
    e->ebx = b;
    e->ecx = c;
    e->edx = d;
    return 0;
}

/* Leaf 4: type (1 data, 2 code, 3 unified), level, threads sharing, size from the rest. */
static uint32_t cache_eax(uint32_t type, uint32_t level, uint32_t sharing, uint32_t cores_pkg)
{
    if (cores_pkg > 64)
        cores_pkg = 64;
    if (sharing > 4096)
        sharing = 4096;
    return type | (level << 5) | (1u << 8) | ((sharing - 1) << 14) | ((cores_pkg - 1) << 26);
}

static uint32_t cache_ebx(uint32_t ways, uint32_t line) { return ((ways - 1) << 22) | (line - 1); }

int kt_cpuid_build(const struct kt_topology *t, uint32_t cpu, const struct kt_cpuid_entry *base,
                   int nbase, uint32_t flags, struct kt_cpuid_entry *out, int max)
{
    if (!t->nodes || !t->llcs || !t->cores || !t->threads || t->llcs % t->nodes ||
        cpu >= t->llcs * t->cores * t->threads)
        return -EINVAL;
    struct shape s = shape_of(t, cpu);
    uint32_t apic = kt_apic_id(t, cpu);
    uint32_t lpn = t->llcs / t->nodes;
    uint32_t core_shift = s.smt + s.core;
    uint32_t pkg_shift = core_shift + s.die;
    bool hide = flags & KT_CPUID_HIDE_PVM;
    bool noxsave = hide || (flags & KT_CPUID_HIDE_XSAVE);
    int n = 0, rc;
    /* An AMD (or Hygon) host under an Intel vendor string: the guest would make KVM
     * hypercalls with VMCALL, which AMD's SVM turns into #UD; KVM then patches the call to
     * VMMCALL by writing the guest's read-only kernel text, and the guest oopses
     * ("unable to handle page fault" at kvm_kick_cpu's hypercall, found in nested L2s with
     * 2+ vCPUs: pv spinlock kicks). So the PV features that make hypercalls are hidden. */
    bool amd_host = false;
    for (int i = 0; i < nbase; i++)
        if (base[i].function == 0x0) {
            char v[12];
            memcpy(v, &base[i].ebx, 4), memcpy(v + 4, &base[i].edx, 4), memcpy(v + 8, &base[i].ecx, 4);
            amd_host = !memcmp(v, "AuthenticAMD", 12) || !memcmp(v, "HygonGenuine", 12);
        }
    bool no_hypercalls = amd_host && (flags & KT_CPUID_VENDOR_INTEL);

    for (int i = 0; i < nbase; i++) {
        struct kt_cpuid_entry e = base[i];
        switch (e.function) {
        case 0x0:
            if (e.eax < 0x1f)
                e.eax = 0x1f;
            if (flags & KT_CPUID_VENDOR_INTEL) {
                memcpy(&e.ebx, "Genu", 4);
                memcpy(&e.edx, "ineI", 4);
                memcpy(&e.ecx, "ntel", 4);
            }
            break;
        case 0x1: {
            uint32_t logical = 1u << pkg_shift;
            if (logical > 255)
                logical = 255;
            e.ebx = (e.ebx & 0xffff) | (logical << 16) | ((apic & 0xff) << 24);
            e.edx |= 1u << 28; /* HTT: the count in EBX[23:16] is valid */
            e.edx |= 1u << 9;  /* APIC */
            e.ecx |= 1u << 31; /* hypervisor */
            if (hide) /* fma, cx16, xsave, osxsave, avx, f16c */
                e.ecx &= ~((1u << 12) | (1u << 13) | (1u << 26) | (1u << 27) | (1u << 28) |
                           (1u << 29));
            else if (noxsave) /* xsave, osxsave, avx, f16c, fma (AVX encodings) */
                e.ecx &= ~((1u << 12) | (1u << 26) | (1u << 27) | (1u << 28) | (1u << 29));
            break;
        }
        case 0x4:
        case 0xb:
        case 0x1f:
            continue; /* rebuilt below from the topology */
        case 0x7:
            if (hide && e.index == 0) {
                /* avx2, bmi2, avx512 f/dq/ifma/pf/er/cd/bw/vl */
                e.ebx &= ~((1u << 5) | (1u << 8) | (1u << 16) | (1u << 17) | (1u << 21) |
                           (1u << 26) | (1u << 27) | (1u << 28) | (1u << 30) | (1u << 31));
                /* avx512 vbmi/vbmi2, vaes, vpclmulqdq, vnni, bitalg, vpopcntdq */
                e.ecx &= ~((1u << 1) | (1u << 6) | (1u << 9) | (1u << 10) | (1u << 11) |
                           (1u << 12) | (1u << 14));
                e.edx &= ~((1u << 2) | (1u << 3) | (1u << 8) | (1u << 23));
            } else if (hide) {
                e.eax = e.ebx = e.ecx = e.edx = 0;
            } else if (noxsave && e.index == 0) {
                /* avx2, avx512 f/dq/ifma/pf/er/cd/bw/vl */
                e.ebx &= ~((1u << 5) | (1u << 16) | (1u << 17) | (1u << 21) | (1u << 26) |
                           (1u << 27) | (1u << 28) | (1u << 30) | (1u << 31));
                /* avx512 vbmi/vbmi2, pku, ospke, vaes, vpclmulqdq, vnni, bitalg, vpopcntdq */
                e.ecx &= ~((1u << 1) | (1u << 3) | (1u << 4) | (1u << 6) | (1u << 9) |
                           (1u << 10) | (1u << 11) | (1u << 12) | (1u << 14));
                e.edx &= ~((1u << 2) | (1u << 3) | (1u << 8) | (1u << 23));
            } else if (noxsave && e.index == 1) {
                e.eax &= ~((1u << 4) | (1u << 5)); /* avx-vnni, avx512-bf16 */
            }
            break;
        case 0x40000001: /* KVM_CPUID_FEATURES */
            if (no_hypercalls) /* PV_UNHALT, PV_SEND_IPI, PV_SCHED_YIELD, HC_MAP_GPA_RANGE */
                e.eax &= ~((1u << 7) | (1u << 11) | (1u << 13) | (1u << 16));
            break;
        case 0x80000001:
            if (noxsave) /* xop, fma4: AVX encodings */
                e.ecx &= ~((1u << 11) | (1u << 16));
            break;
        case 0xd:
            if (noxsave)
                continue; /* no xsave: no xsave state leaves */
            break;
        default:
            break;
        }
        if ((rc = put(out, &n, max, e.function, e.index, e.flags, e.eax, e.ebx, e.ecx, e.edx)))
            return rc;
    }

    uint32_t cores_pkg = 1u << (s.core + s.die);
    uint32_t smt_share = 1u << s.smt;
    uint32_t llc_share = 1u << core_shift;
    struct { uint32_t eax, ebx, ecx, edx; } c4[] = {
        {cache_eax(1, 1, smt_share, cores_pkg), cache_ebx(8, 64), 64 - 1, 0},      /* 32K L1d */
        {cache_eax(2, 1, smt_share, cores_pkg), cache_ebx(8, 64), 64 - 1, 0},      /* 32K L1i */
        {cache_eax(3, 2, smt_share, cores_pkg), cache_ebx(16, 64), 1024 - 1, 0},   /* 1M L2 */
        {cache_eax(3, 3, llc_share, cores_pkg), cache_ebx(16, 64), 32768 - 1, 2},  /* 32M L3 */
        {0, 0, 0, 0},
    };
    for (uint32_t i = 0; i < 5; i++)
        if ((rc = put(out, &n, max, 0x4, i, FLAG_INDEX, c4[i].eax, c4[i].ebx, c4[i].ecx,
                      c4[i].edx)))
            return rc;

    uint32_t per_core = t->threads, per_llc = t->threads * t->cores, per_pkg = per_llc * lpn;
    /* 0xB: SMT, then core reaching the package (0xB has no die level). */
    if ((rc = put(out, &n, max, 0xb, 0, FLAG_INDEX, s.smt, per_core, (1u << 8) | 0, apic)) ||
        (rc = put(out, &n, max, 0xb, 1, FLAG_INDEX, pkg_shift, per_pkg, (2u << 8) | 1, apic)) ||
        (rc = put(out, &n, max, 0xb, 2, FLAG_INDEX, 0, 0, 2, apic)))
        return rc;
    /* 0x1F: SMT, core, die (= LLC), then the end. */
    if ((rc = put(out, &n, max, 0x1f, 0, FLAG_INDEX, s.smt, per_core, (1u << 8) | 0, apic)) ||
        (rc = put(out, &n, max, 0x1f, 1, FLAG_INDEX, core_shift, per_llc, (2u << 8) | 1, apic)) ||
        (rc = put(out, &n, max, 0x1f, 2, FLAG_INDEX, pkg_shift, per_pkg, (5u << 8) | 2, apic)) ||
        (rc = put(out, &n, max, 0x1f, 3, FLAG_INDEX, 0, 0, 3, apic)))
        return rc;
    return n;
}
