/*
 * serial.c - a 16550-style UART, enough for Linux's 8250 driver and early console:
 * divisor latch, IER/IIR with receive-data and THR-empty interrupts, LSR, scratch register.
 * Transmit is instant: each THR write goes to out_fd (COM1: the console file; COM2 and
 * COM3: a host channel's pipe, where we wait for room instead of dropping bytes). Receive
 * comes from kt_uart_rx_push (the host writing to the channel).
 *
 * The UARTs are one registered device ("serial", first in order) like every other, so
 * vm.c has no device code and every device is created and torn down on one path. Their
 * state is the one device state kt_vm names (com1, chan[]) rather than a KT_DEVICE slot:
 * the public interface reaches it directly - kt_config.console_fd, kt_vm_chan_fd and
 * kt_vm_chan_write (control.c) - and that interface is fixed whatever devices exist.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define IER_RDI 0x01
#define IER_THRI 0x02
#define IIR_NONE 0x01
#define IIR_THRI 0x02
#define IIR_RDI 0x04
#define LCR_DLAB 0x80
#define LSR_DR 0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define MSR_DEFAULT 0xb0 /* DCD | DSR | CTS */

static bool uart_io(struct kt_vcpu *v, void *dev, uint64_t off, bool is_write, uint8_t *data,
                    int size);

/* base..base+7 */
static int uart_init(struct kt_vm *vm, struct kt_uart *u, uint16_t base, int irq, int irq_src,
                     int out_fd, bool out_nonblock, char *err, size_t errlen)
{
    memset(u, 0, sizeof(*u));
    pthread_mutex_init(&u->lock, NULL);
    u->base = base;
    u->irq = irq;
    u->irq_src = irq_src;
    u->out_fd = out_fd;
    u->out_nonblock = out_nonblock;
    u->dll = 12; /* 9600 baud */
    return kt_bus_register(&vm->pio_bus, base, 8, uart_io, u, err, errlen);
}

static void uart_destroy(struct kt_uart *u)
{
    if (u->base)
        pthread_mutex_destroy(&u->lock);
    u->base = 0;
}

static uint8_t iir_locked(struct kt_uart *u)
{
    if ((u->ier & IER_RDI) && u->rx_len)
        return IIR_RDI;
    if ((u->ier & IER_THRI) && u->thr_ipending)
        return IIR_THRI;
    return IIR_NONE;
}

static void update_irq(struct kt_vm *vm, struct kt_uart *u, uint8_t iir)
{
    kt_vm_set_irq(vm, u->irq, u->irq_src, iir != IIR_NONE);
}

static void transmit(struct kt_vm *vm, struct kt_uart *u, uint8_t c)
{
    if (u->out_fd < 0)
        return;
    for (;;) {
        ssize_t n = write(u->out_fd, &c, 1);
        if (n == 1)
            return;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN && u->out_nonblock) {
            /* The reader is behind: wait for room, but never past a stop. */
            if (__atomic_load_n(&vm->stop, __ATOMIC_RELAXED))
                return;
            struct pollfd p = {.fd = u->out_fd, .events = POLLOUT};
            poll(&p, 1, 50);
            continue;
        }
        return; /* reader gone (EPIPE) or a real error: drop the byte */
    }
}

static bool uart_io(struct kt_vcpu *vcpu, void *dev, uint64_t off, bool is_write, uint8_t *data,
                    int size)
{
    struct kt_vm *vm = vcpu->vm;
    struct kt_uart *u = dev;
    bool tx = false;
    uint8_t txc = 0;
    pthread_mutex_lock(&u->lock);
    bool dlab = u->lcr & LCR_DLAB;
    if (is_write) {
        uint8_t v = *data;
        switch (off) {
        case 0:
            if (dlab) {
                u->dll = v;
            } else {
                tx = true;
                txc = v;
                u->thr_ipending = true; /* sent at once, so the THR is empty again */
            }
            break;
        case 1:
            if (dlab) {
                u->dlm = v;
            } else {
                if ((v & IER_THRI) && !(u->ier & IER_THRI))
                    u->thr_ipending = true;
                u->ier = v & 0x0f;
            }
            break;
        case 2:
            u->fcr = v;
            if (v & 0x02) { /* clear receive FIFO */
                u->rx_head = 0;
                u->rx_len = 0;
            }
            break;
        case 3: u->lcr = v; break;
        case 4: u->mcr = v; break;
        case 7: u->scr = v; break;
        default: break;
        }
    } else {
        uint8_t v = 0;
        switch (off) {
        case 0:
            if (dlab) {
                v = u->dll;
            } else if (u->rx_len) {
                v = u->rx[u->rx_head];
                u->rx_head = (u->rx_head + 1) % KT_WIRE_RX_MAX;
                u->rx_len--;
            }
            break;
        case 1: v = dlab ? u->dlm : u->ier; break;
        case 2:
            v = iir_locked(u);
            if (v == IIR_THRI)
                u->thr_ipending = false;
            if (u->fcr & 0x01)
                v |= 0xc0;
            break;
        case 3: v = u->lcr; break;
        case 4: v = u->mcr; break;
        case 5: v = LSR_THRE | LSR_TEMT | (u->rx_len ? LSR_DR : 0); break;
        case 6: v = MSR_DEFAULT; break;
        case 7: v = u->scr; break;
        default: v = 0xff; break;
        }
        *data = v;
    }
    uint8_t iir = iir_locked(u);
    pthread_mutex_unlock(&u->lock);
    if (tx)
        transmit(vm, u, txc);
    update_irq(vm, u, iir);
    return true;
}

size_t kt_uart_rx_push(struct kt_vm *vm, struct kt_uart *u, const uint8_t *data, size_t len)
{
    pthread_mutex_lock(&u->lock);
    size_t n = 0;
    while (n < len && u->rx_len < KT_WIRE_RX_MAX) {
        u->rx[(u->rx_head + u->rx_len) % KT_WIRE_RX_MAX] = data[n++];
        u->rx_len++;
    }
    uint8_t iir = iir_locked(u);
    pthread_mutex_unlock(&u->lock);
    update_irq(vm, u, iir);
    return n;
}

/* The host channels' UARTs at the PC's legacy COM ports, where Linux's 8250 driver looks
 * for ttyS1 and ttyS2 (COM3 shares IRQ 4 with COM1 there; kt_vm_set_irq ORs the sources). */
static const struct {
    int com;
    uint16_t base;
    int irq;
} chan_ports[KT_CHANS] = {
    [KT_CHAN_WIRE] = {2, 0x2f8, 3},
    [KT_CHAN_SHELL] = {3, 0x3e8, 4},
};

/* Undoes whatever serial_init did, also half of it (a uart's base says it was set up). */
static void serial_exit(struct kt_vm *vm, void *state)
{
    uart_destroy(&vm->com1);
    for (int c = 0; c < KT_CHANS; c++) {
        uart_destroy(&vm->chan[c].uart);
        if (vm->chan[c].rd >= 0)
            close(vm->chan[c].rd);
        if (vm->chan[c].wr >= 0)
            close(vm->chan[c].wr);
        vm->chan[c].rd = vm->chan[c].wr = -1;
    }
}

/* COM1 (0x3f8, IRQ 4) -> the console fd; each host channel's UART -> a pipe of its own. */
static int serial_init(struct kt_vm *vm, void **state, char *err, size_t errlen)
{
    for (int c = 0; c < KT_CHANS; c++)
        vm->chan[c].rd = vm->chan[c].wr = -1;
    int rc = uart_init(vm, &vm->com1, 0x3f8, 4, 0, vm->cfg.console_fd, false, err, errlen);
    for (int c = 0; c < KT_CHANS && rc == 0; c++) {
        struct kt_chan *ch = &vm->chan[c];
        int pipefd[2];
        if (pipe2(pipefd, O_CLOEXEC | O_NONBLOCK) < 0) {
            rc = kt_err(err, errlen, -errno, "pipe for COM%d: %s", chan_ports[c].com,
                        strerror(errno));
            break;
        }
        ch->rd = pipefd[0];
        ch->wr = pipefd[1];
        fcntl(ch->wr, F_SETPIPE_SZ, 1 << 20);
        rc = uart_init(vm, &ch->uart, chan_ports[c].base, chan_ports[c].irq, 1 + c, ch->wr, true,
                       err, errlen);
    }
    if (rc < 0)
        serial_exit(vm, NULL);
    return rc;
}

KT_DEVICE(serial, .order = -1, .init = serial_init, .exit = serial_exit);
