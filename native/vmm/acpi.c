/*
 * acpi.c - ACPI tables from a Topology (pure: fills a buffer, unit-tested via cffi).
 *
 * RSDP -> XSDT -> FADT (hardware-reduced, reset register = i8042 0xFE, sleep control port
 * for S5 power-off) -> DSDT (only \_S5), MADT (one LAPIC per vCPU, IOAPIC, IRQ0->GSI2),
 * SRAT (vCPU and memory affinity per NUMA node) and SLIT (10 local, 20 remote).
 * Everything lives in one buffer that the VMM copies to guest-physical base_gpa.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "ktvmm.h"

#define IOAPIC_ADDR 0xFEC00000u
#define LAPIC_ADDR 0xFEE00000u
#define HIGH_BASE 0x100000000ull

struct out {
    uint8_t *buf;
    size_t len, pos;
    int err;
};

static uint8_t *take(struct out *o, size_t n, size_t align)
{
    size_t at = (o->pos + align - 1) & ~(align - 1);
    if (at + n > o->len) {
        o->err = -ENOSPC;
        return NULL;
    }
    memset(o->buf + at, 0, n);
    o->pos = at + n;
    return o->buf + at;
}

static void w8(uint8_t *p, size_t off, uint8_t v) { p[off] = v; }
static void w16(uint8_t *p, size_t off, uint16_t v) { p[off] = (uint8_t)v; p[off + 1] = (uint8_t)(v >> 8); }
static void w32(uint8_t *p, size_t off, uint32_t v) { for (int i = 0; i < 4; i++) p[off + i] = (uint8_t)(v >> (8 * i)); }
static void w64(uint8_t *p, size_t off, uint64_t v) { for (int i = 0; i < 8; i++) p[off + i] = (uint8_t)(v >> (8 * i)); }

static uint8_t checksum(const uint8_t *p, size_t n)
{
    uint8_t s = 0;
    for (size_t i = 0; i < n; i++)
        s = (uint8_t)(s + p[i]);
    return (uint8_t)(0 - s);
}

static void header(uint8_t *p, const char *sig, uint32_t len, uint8_t rev)
{
    memcpy(p, sig, 4);
    w32(p, 4, len);
    w8(p, 8, rev);
    memcpy(p + 10, "KTSTR ", 6);
    memcpy(p + 16, "KTSTRVMM", 8);
    w32(p, 24, 1);
    memcpy(p + 28, "KTST", 4);
    w32(p, 32, 1);
}

static void finish(uint8_t *p, uint32_t len) { p[9] = 0; p[9] = checksum(p, len); }

/* Generic Address Structure: system I/O, byte access. */
static void gas_io(uint8_t *p, size_t off, uint16_t port)
{
    w8(p, off, 1);
    w8(p, off + 1, 8);
    w8(p, off + 2, 0);
    w8(p, off + 3, 1);
    w64(p, off + 4, port);
}

/*
 * AML for Scope (\_SB) { Device (COM1) {...} Device (COM2) {...} Device (COM3) {...} }: each
 * a PNP0501 with its I/O ports and ISA IRQ. A hardware-reduced ACPI system has no legacy
 * PIC, so Linux maps ISA IRQs only for devices ACPI describes; without these the 8250
 * driver's legacy ports get IRQ numbers wired to nothing and interrupt-driven transmit
 * never starts. COM1 and COM3 share IRQ 4 (as on a PC), so theirs is marked shared.
 */
static size_t uart_device(uint8_t *p, const char *name, uint8_t uid, uint16_t port, uint8_t irq,
                          bool shared)
{
    uint8_t body[64];
    size_t n = 0;
    memcpy(body + n, name, 4), n += 4;
    static const uint8_t hid[] = {0x08, '_', 'H', 'I', 'D', 0x0c, 0x41, 0xd0, 0x05, 0x01};
    memcpy(body + n, hid, sizeof(hid)), n += sizeof(hid); /* EisaId ("PNP0501") */
    static const uint8_t uidn[] = {0x08, '_', 'U', 'I', 'D', 0x0a};
    memcpy(body + n, uidn, sizeof(uidn)), n += sizeof(uidn);
    body[n++] = uid;
    uint8_t res = shared ? 14 : 13; /* the IRQ descriptor with its flags byte is one longer */
    const uint8_t crs[] = {
        0x08, '_', 'C', 'R', 'S', 0x11, (uint8_t)(res + 3), 0x0a, res, /* Buffer (res) */
        0x47, 0x01, (uint8_t)port, (uint8_t)(port >> 8),             /* IO (Decode16, */
        (uint8_t)port, (uint8_t)(port >> 8), 0x01, 0x08,             /*   port, port, 1, 8) */
    };
    memcpy(body + n, crs, sizeof(crs)), n += sizeof(crs);
    body[n++] = shared ? 0x23 : 0x22; /* IRQ (Edge, ActiveHigh, Shared) or IRQNoFlags () */
    body[n++] = (uint8_t)(1u << irq);
    body[n++] = (uint8_t)((1u << irq) >> 8);
    if (shared)
        body[n++] = 0x11; /* edge-triggered, active-high, shared */
    body[n++] = 0x79; /* EndTag */
    body[n++] = 0x00;
    p[0] = 0x5b; /* DeviceOp */
    p[1] = 0x82;
    p[2] = (uint8_t)(n + 1); /* PkgLength (one byte: < 64) */
    memcpy(p + 3, body, n);
    return n + 3;
}

#define UART_AML_MAX (8 + 3 * 50)

static size_t uart_devices(uint8_t *out)
{
    uint8_t devs[3 * 50];
    size_t n = uart_device(devs, "COM1", 1, 0x3f8, 4, true);
    n += uart_device(devs + n, "COM2", 2, 0x2f8, 3, false);
    n += uart_device(devs + n, "COM3", 3, 0x3e8, 4, true);
    size_t pkg = 2 + 5 + n; /* itself (two bytes), the name, the devices */
    out[0] = 0x10;          /* ScopeOp */
    out[1] = (uint8_t)(0x40 | (pkg & 0x0f));
    out[2] = (uint8_t)(pkg >> 4);
    memcpy(out + 3, "\\_SB_", 5);
    memcpy(out + 8, devs, n);
    return 8 + n;
}

static uint64_t gpa_of(uint64_t addr, const uint8_t *base, const uint8_t *p) { return addr + (uint64_t)(p - base); }

int kt_acpi_build(const struct kt_topology *t, uint64_t low_mem, uint64_t high_mem,
                  uint64_t base_gpa, uint8_t *buf, size_t len, struct kt_acpi_layout *lay)
{
    if (!t->nodes || !t->llcs || !t->cores || !t->threads || t->llcs % t->nodes)
        return -EINVAL;
    struct out o = {.buf = buf, .len = len};
    uint32_t ncpu = t->llcs * t->cores * t->threads;
    uint32_t per_node = ncpu / t->nodes;

    uint8_t *rsdp = take(&o, 36, 16);
    uint8_t *xsdt = take(&o, 36 + 5 * 8, 16);
    uint8_t *fadt = take(&o, 276, 16);
    static const uint8_t s5[] = {0x08, '_', 'S', '5', '_', 0x12, 0x08, 0x04,
                                 0x0a, 0x05, 0x0a, 0x05, 0x00, 0x00};
    uint8_t uarts[UART_AML_MAX];
    size_t uarts_len = uart_devices(uarts);
    uint8_t *dsdt = take(&o, 36 + sizeof(s5) + uarts_len, 16);
    if (o.err)
        return o.err;

    /* MADT */
    size_t madt_len = 44;
    for (uint32_t c = 0; c < ncpu; c++)
        madt_len += kt_apic_id(t, c) < 255 ? 8 : 16;
    madt_len += 12 + 10 + 6;
    uint8_t *madt = take(&o, madt_len, 16);
    /* SRAT: one processor entry per vCPU, up to two memory entries per node. */
    size_t srat_len = 48;
    for (uint32_t c = 0; c < ncpu; c++)
        srat_len += kt_apic_id(t, c) < 255 ? 16 : 24;
    srat_len += (size_t)t->nodes * 2 * 40;
    uint8_t *srat = take(&o, srat_len, 16);
    size_t slit_len = 44 + (size_t)t->nodes * t->nodes;
    uint8_t *slit = take(&o, slit_len, 16);
    if (o.err)
        return o.err;

    /* DSDT */
    uint32_t dsdt_len = (uint32_t)(36 + sizeof(s5) + uarts_len);
    header(dsdt, "DSDT", dsdt_len, 2);
    memcpy(dsdt + 36, s5, sizeof(s5));
    memcpy(dsdt + 36 + sizeof(s5), uarts, uarts_len);
    finish(dsdt, dsdt_len);

    /* FADT, revision 6, hardware-reduced */
    header(fadt, "FACP", 276, 6);
    w32(fadt, 40, (uint32_t)gpa_of(base_gpa, buf, dsdt));
    w16(fadt, 109, (1u << 2) | (1u << 3) | (1u << 5)); /* no VGA, no MSI, no CMOS RTC */
    w32(fadt, 112, (1u << 4) | (1u << 5) | (1u << 10) | (1u << 20)); /* pwr/slp button, reset reg, HW-reduced */
    gas_io(fadt, 116, 0x64);
    w8(fadt, 128, 0xfe);
    w8(fadt, 131, 3); /* FADT minor version: 6.3 */
    w64(fadt, 140, gpa_of(base_gpa, buf, dsdt));
    gas_io(fadt, 244, KT_PORT_SLEEP_CTL);
    gas_io(fadt, 256, KT_PORT_SLEEP_STS);
    memcpy(fadt + 268, "KTSTRVMM", 8);
    finish(fadt, 276);

    /* MADT */
    header(madt, "APIC", (uint32_t)madt_len, 4);
    w32(madt, 36, LAPIC_ADDR);
    w32(madt, 40, 1); /* PCAT_COMPAT: there is a PIC */
    size_t p = 44;
    for (uint32_t c = 0; c < ncpu; c++) {
        uint32_t id = kt_apic_id(t, c);
        if (id < 255) {
            w8(madt, p, 0);
            w8(madt, p + 1, 8);
            w8(madt, p + 2, (uint8_t)c);
            w8(madt, p + 3, (uint8_t)id);
            w32(madt, p + 4, 1);
            p += 8;
        } else {
            w8(madt, p, 9);
            w8(madt, p + 1, 16);
            w32(madt, p + 4, id);
            w32(madt, p + 8, 1);
            w32(madt, p + 12, c);
            p += 16;
        }
    }
    w8(madt, p, 1); w8(madt, p + 1, 12); w8(madt, p + 2, 0);
    w32(madt, p + 4, IOAPIC_ADDR); w32(madt, p + 8, 0);
    p += 12;
    w8(madt, p, 2); w8(madt, p + 1, 10); w8(madt, p + 2, 0); w8(madt, p + 3, 0);
    w32(madt, p + 4, 2); w16(madt, p + 8, 0);
    p += 10;
    w8(madt, p, 4); w8(madt, p + 1, 6); w8(madt, p + 2, 0xff); w16(madt, p + 3, 0); w8(madt, p + 5, 1);
    finish(madt, (uint32_t)madt_len);

    /* SRAT */
    header(srat, "SRAT", 0, 3);
    w32(srat, 36, 1);
    p = 48;
    for (uint32_t c = 0; c < ncpu; c++) {
        uint32_t id = kt_apic_id(t, c), node = c / per_node;
        if (id < 255) {
            w8(srat, p, 0); w8(srat, p + 1, 16); w8(srat, p + 2, (uint8_t)node);
            w8(srat, p + 3, (uint8_t)id); w32(srat, p + 4, 1);
            p += 16;
        } else {
            w8(srat, p, 2); w8(srat, p + 1, 24); w32(srat, p + 4, node);
            w32(srat, p + 8, id); w32(srat, p + 12, 1);
            p += 24;
        }
    }
    uint64_t total = low_mem + high_mem;
    uint64_t share = (total / t->nodes) & ~((2ull << 20) - 1);
    for (uint32_t nd = 0; nd < t->nodes; nd++) {
        uint64_t start = share * nd;
        uint64_t end = nd + 1 == t->nodes ? total : start + share;
        /* RAM offsets -> guest-physical: [0, low) at 0, the rest at 4 GiB. */
        uint64_t pieces[2][2];
        int np = 0;
        if (start < low_mem) {
            pieces[np][0] = start;
            pieces[np][1] = (end < low_mem ? end : low_mem) - start;
            np++;
        }
        if (end > low_mem) {
            uint64_t s = start > low_mem ? start : low_mem;
            pieces[np][0] = HIGH_BASE + (s - low_mem);
            pieces[np][1] = end - s;
            np++;
        }
        for (int i = 0; i < np; i++) {
            w8(srat, p, 1); w8(srat, p + 1, 40); w32(srat, p + 2, nd);
            w64(srat, p + 8, pieces[i][0]); w64(srat, p + 16, pieces[i][1]);
            w32(srat, p + 28, 1);
            p += 40;
        }
    }
    w32(srat, 4, (uint32_t)p);
    finish(srat, (uint32_t)p);

    /* SLIT */
    header(slit, "SLIT", (uint32_t)slit_len, 1);
    w64(slit, 36, t->nodes);
    for (uint32_t i = 0; i < t->nodes; i++)
        for (uint32_t j = 0; j < t->nodes; j++)
            slit[44 + i * t->nodes + j] = i == j ? 10 : 20;
    finish(slit, (uint32_t)slit_len);

    /* XSDT */
    uint8_t *tables[] = {fadt, madt, srat, slit};
    uint32_t xlen = 36 + 4 * 8;
    header(xsdt, "XSDT", xlen, 1);
    for (int i = 0; i < 4; i++)
        w64(xsdt, 36 + 8 * (size_t)i, gpa_of(base_gpa, buf, tables[i]));
    finish(xsdt, xlen);

    /* RSDP v2 */
    memcpy(rsdp, "RSD PTR ", 8);
    memcpy(rsdp + 9, "KTSTR ", 6);
    w8(rsdp, 15, 2);
    w32(rsdp, 20, 36);
    w64(rsdp, 24, gpa_of(base_gpa, buf, xsdt));
    rsdp[8] = checksum(rsdp, 20);
    rsdp[32] = checksum(rsdp, 36);

    lay->rsdp = gpa_of(base_gpa, buf, rsdp);
    lay->size = (uint32_t)o.pos;
    return 0;
}
