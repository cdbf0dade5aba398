#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "wire.h"

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t now_ms(void)
{
	return now_ns() / 1000000ull;
}

void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

ssize_t read_small(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n, total = 0;

	if (fd < 0)
		return -1;
	while ((size_t)total < size - 1) {
		n = read(fd, buf + total, size - 1 - (size_t)total);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		total += n;
	}
	close(fd);
	while (total > 0 && (buf[total - 1] == '\n' || buf[total - 1] == ' '))
		total--;
	buf[total] = '\0';
	return total;
}

char *read_all(const char *path, size_t cap, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t size = 65536, total = 0;
	char *buf;
	ssize_t n;

	*len = 0;
	if (fd < 0)
		return NULL;
	buf = malloc(size + 1);
	while (buf && total < cap) {
		if (total == size) {
			char *nb;

			size = size * 2 > cap ? cap : size * 2;
			nb = realloc(buf, size + 1);
			if (!nb)
				break;
			buf = nb;
		}
		n = read(fd, buf + total, size - total);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		total += (size_t)n;
	}
	close(fd);
	if (buf) {
		buf[total] = '\0';
		*len = total;
	}
	return buf;
}

int write_str(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	size_t len = strlen(s);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = write(fd, s, len);
	if (n < 0) {
		int e = errno;

		close(fd);
		return -e;
	}
	close(fd);
	return (size_t)n == len ? 0 : -EIO;
}

int mask_test(const uint64_t *mask, int cpu)
{
	return cpu >= 0 && cpu < MAX_CPUS && (mask[cpu / 64] >> (cpu % 64)) & 1;
}

void mask_set(uint64_t *mask, int cpu)
{
	if (cpu >= 0 && cpu < MAX_CPUS)
		mask[cpu / 64] |= 1ull << (cpu % 64);
}

int cpulist_parse(const char *s, uint64_t *mask)
{
	int count = 0;

	memset(mask, 0, MAX_CPUS / 8);
	while (*s && *s != '\n') {
		char *end;
		long a = strtol(s, &end, 10), b;

		if (end == s || a < 0 || a >= MAX_CPUS)
			return -1;
		b = a;
		s = end;
		if (*s == '-') {
			b = strtol(s + 1, &end, 10);
			if (end == s + 1 || b < a || b >= MAX_CPUS)
				return -1;
			s = end;
		}
		for (long c = a; c <= b; c++) {
			if (!mask_test(mask, (int)c))
				count++;
			mask_set(mask, (int)c);
		}
		if (*s == ',')
			s++;
		else if (*s && *s != '\n')
			return -1;
	}
	return count;
}

static void vlog(uint16_t type, const char *fmt, va_list ap)
{
	char msg[1024];
	int n = vsnprintf(msg, sizeof(msg), fmt, ap);

	if (n < 0)
		return;
	if ((size_t)n >= sizeof(msg))
		n = sizeof(msg) - 1;
	fprintf(stderr, "ktstr-init: %s\n", msg);
	wire_send(type, 0, msg, (size_t)n);
}

void note(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(MSG_STDOUT, fmt, ap);
	va_end(ap);
}

void warn(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(MSG_STDERR, fmt, ap);
	va_end(ap);
}
