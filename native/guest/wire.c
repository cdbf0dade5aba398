#include "wire.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "util.h"

#define WRITE_DEADLINE_MS 3000   /* a host that stops reading costs us this, once */
#define STALLED_DEADLINE_MS 200  /* ...and this per frame while it stays stalled */
#define IN_BUF 65536

static int fd = -1;
static int stalled;
static size_t owed; /* see pay_debt() */
static unsigned long dropped;
static unsigned long long sent_bytes;
static unsigned char inbuf[IN_BUF];
static size_t inlen;
static char frame[IN_BUF + 1]; /* the last payload handed out, NUL-terminated */

static uint32_t crc_table[256];

uint32_t crc32(const void *data, size_t len)
{
	const unsigned char *p = data;
	uint32_t c = 0xffffffffu;

	if (!crc_table[1]) {
		for (uint32_t i = 0; i < 256; i++) {
			uint32_t v = i;

			for (int k = 0; k < 8; k++)
				v = v & 1 ? 0xedb88320u ^ (v >> 1) : v >> 1;
			crc_table[i] = v;
		}
	}
	while (len--)
		c = crc_table[(c ^ *p++) & 0xff] ^ (c >> 8);
	return c ^ 0xffffffffu;
}

void port_raw(int port)
{
	struct termios t;

	if (tcgetattr(port, &t) == 0) {
		cfmakeraw(&t);
		cfsetispeed(&t, B115200);
		cfsetospeed(&t, B115200);
		t.c_cflag |= CLOCAL | CREAD;
		t.c_cflag &= ~(tcflag_t)CRTSCTS;
		t.c_cc[VMIN] = 0;
		t.c_cc[VTIME] = 0;
		tcsetattr(port, TCSANOW, &t);
	}
}

int wire_open(const char *path)
{
	fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	port_raw(fd);
	return 0;
}

int wire_fd(void)
{
	return fd;
}

unsigned long wire_dropped(void)
{
	return dropped;
}

unsigned long long wire_bytes_sent(void)
{
	return sent_bytes;
}

/* Write buf by the deadline; returns the bytes written (len on success). */
static size_t write_some(const unsigned char *buf, size_t len, uint64_t deadline)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = write(fd, buf + done, len - done);

		if (n > 0) {
			done += (size_t)n;
			sent_bytes += (unsigned long long)n;
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			break;
		uint64_t now = now_ms();
		if (now >= deadline)
			break;
		struct pollfd p = { .fd = fd, .events = POLLOUT };
		poll(&p, 1, (int)(deadline - now));
	}
	return done;
}

/* Filler bytes (0xff) still owed to a frame that was cut short: once they are written,
 * the host's decoder sees the torn frame complete (or a header with an impossible type or
 * length), drops it and resynchronises at once, instead of taking the next frames for the
 * torn one's payload. 0 when paid. */
static int pay_debt(uint64_t deadline)
{
	static unsigned char filler[256];

	if (!filler[0])
		memset(filler, 0xff, sizeof(filler));

	while (owed) {
		size_t chunk = owed < sizeof(filler) ? owed : sizeof(filler);
		size_t n = write_some(filler, chunk, deadline);

		owed -= n;
		if (n < chunk)
			return -1;
	}
	return 0;
}

static void put_le(unsigned char *p, uint64_t v, int bytes)
{
	for (int i = 0; i < bytes; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

void wire_send(uint16_t type, uint16_t flags, const void *payload, size_t len)
{
	unsigned char hdr[WIRE_HEADER];
	uint64_t deadline;

	if (fd < 0)
		return;
	if (len > WIRE_MAX_PAYLOAD) {
		len = WIRE_MAX_PAYLOAD;
		flags |= FLAG_TRUNCATED;
	}
	put_le(hdr, WIRE_MAGIC, 4);
	put_le(hdr + 4, type, 2);
	put_le(hdr + 6, flags, 2);
	put_le(hdr + 8, len, 4);
	put_le(hdr + 12, crc32(payload, len), 4);
	deadline = now_ms() + (stalled ? STALLED_DEADLINE_MS : WRITE_DEADLINE_MS);
	if (pay_debt(deadline)) {
		stalled = 1;
		dropped++;
		return;
	}
	size_t h = write_some(hdr, sizeof(hdr), deadline);
	size_t p = h == sizeof(hdr) ? write_some(payload, len, deadline) : 0;

	if (h + p < sizeof(hdr) + len) {
		if (h) /* torn: owe the rest of its claimed length */
			owed = sizeof(hdr) + len - h - p;
		stalled = 1;
		dropped++;
		return;
	}
	stalled = 0;
}

void wire_send_str(uint16_t type, const char *s)
{
	wire_send(type, 0, s, strlen(s));
}

static uint32_t get_le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void drop_front(size_t n)
{
	memmove(inbuf, inbuf + n, inlen - n);
	inlen -= n;
}

int wire_poll_in(uint16_t *type, const char **payload, size_t *len)
{
	static const unsigned char magic[4] = { 'K', 'T', 'S', 'W' };

	if (fd < 0)
		return 0;
	for (;;) {
		ssize_t n = read(fd, inbuf + inlen, IN_BUF - inlen);

		if (n <= 0)
			break;
		inlen += (size_t)n;
		if (inlen == IN_BUF)
			break;
	}
	for (;;) {
		size_t i = 0;

		while (i + 4 <= inlen && memcmp(inbuf + i, magic, 4))
			i++;
		if (i + 4 > inlen) /* keep a possible partial magic */
			i = inlen > 3 ? inlen - 3 : 0;
		drop_front(i);
		if (inlen < WIRE_HEADER) {
			if (inlen == IN_BUF) /* cannot happen, but never wedge */
				inlen = 0;
			return 0;
		}
		uint16_t t = (uint16_t)(inbuf[4] | inbuf[5] << 8);
		uint32_t l = get_le32(inbuf + 8), c = get_le32(inbuf + 12);

		if (t < 1 || t > MSG_TYPE_MAX || l > IN_BUF - WIRE_HEADER - 1) {
			drop_front(4);
			continue;
		}
		if (inlen < WIRE_HEADER + l)
			return 0;
		if (crc32(inbuf + WIRE_HEADER, l) != c) {
			drop_front(4);
			continue;
		}
		memcpy(frame, inbuf + WIRE_HEADER, l);
		frame[l] = '\0';
		drop_front(WIRE_HEADER + l);
		*type = t;
		*payload = frame;
		*len = l;
		return 1;
	}
}
