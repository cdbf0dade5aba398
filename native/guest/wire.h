/* Wire frames, the C twin of ktstr_vmm/wire.py (docs/wire.md):
 *   magic u32 "KTSW" | type u16 | flags u16 | length u32 | crc32 u32 | payload
 * little-endian; crc32 is zlib's CRC32 of the payload. */
#ifndef KTSTR_WIRE_H
#define KTSTR_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define WIRE_MAGIC 0x5753544bu /* "KTSW" read as a little-endian u32 */
#define WIRE_HEADER 16
#define WIRE_MAX_PAYLOAD (1u << 20)

#define FLAG_STDERR 0x0001
#define FLAG_TRUNCATED 0x0002

enum msg_type {
	MSG_TEST_RESULT = 1,
	MSG_EXIT = 2,
	MSG_SCHED_EXIT = 3,
	MSG_SCENARIO_START = 4,
	MSG_SCENARIO_END = 5,
	MSG_SCENARIO_PAUSE = 6,
	MSG_SCENARIO_RESUME = 7,
	MSG_STDOUT = 8,
	MSG_STDERR = 9,
	MSG_SCHED_LOG = 10,
	MSG_LIFECYCLE = 11,
	MSG_EXEC_EXIT = 12,
	MSG_DMESG = 13,
	MSG_PROBE_OUTPUT = 14,
	MSG_SNAPSHOT_REQUEST = 15,
	MSG_SNAPSHOT_REPLY = 16,
	MSG_CRASH = 17,
	MSG_KERNEL_OP_REQUEST = 18,
	MSG_KERNEL_OP_REPLY = 19,
	MSG_SYS_RDY = 20,
	MSG_PAYLOAD_METRICS = 21,
	MSG_RAW_PAYLOAD_OUTPUT = 22,
	MSG_STIMULUS = 23,
	MSG_PROFRAW = 24,
	MSG_WPROF_TRACE = 25,
	MSG_TRACE_FORMATS = 32, /* 32-39: the scheduling trace (trace.c) */
	MSG_TRACE_PAGES = 33,
	MSG_TRACE_STATS = 34,
	MSG_BENCH_OUTPUT = 40, /* workloads block 40-47 */
	/* 48-55: shells, on their own port (shell.h) */
	MSG_SHELL_OPEN = 48,
	MSG_SHELL_OPENED = 49,
	MSG_SHELL_DATA = 50,
	MSG_SHELL_RESIZE = 51,
	MSG_SHELL_EOF = 52,
	MSG_SHELL_CLOSE = 53,
	MSG_SHELL_EXIT = 54,
	MSG_BPF_PROGS = 56, /* 56-63: gauntlet / verifier */
	MSG_TYPE_MAX = 56,
};

uint32_t crc32(const void *data, size_t len);

/* Open the wire port (a tty: raw mode, 115200 nominal, non-blocking). 0 or -errno. */
int wire_open(const char *path);
/* A serial port (a UART's tty) made a raw byte pipe: no echo, no line discipline, no flow
 * control; nothing happens for a port that is not a tty (a virtio-serial port). */
void port_raw(int port);
int wire_fd(void);
/* Send one frame; a payload over the cap is cut and flagged FLAG_TRUNCATED. A frame the
 * host does not drain within the write deadline is dropped (counted). Never blocks long. */
void wire_send(uint16_t type, uint16_t flags, const void *payload, size_t len);
void wire_send_str(uint16_t type, const char *s);
unsigned long wire_dropped(void);
unsigned long long wire_bytes_sent(void);

/* Incoming frames (host -> guest). wire_poll_in() reads what is there and returns 1 and
 * fills type, payload and len (payload NUL-terminated, valid until the next call) for the
 * next good frame, 0 when there is none yet. Garbage and bad frames are skipped. */
int wire_poll_in(uint16_t *type, const char **payload, size_t *len);

#endif
