/* Small helpers of the guest agent: clocks, files, cpu lists, logging to the console. */
#ifndef KTSTR_UTIL_H
#define KTSTR_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define MAX_CPUS 1024

uint64_t now_ns(void);                 /* CLOCK_MONOTONIC */
uint64_t now_ms(void);
void sleep_ms(unsigned ms);

/* Read up to size-1 bytes of a (small, sysfs/proc) file, NUL-terminated, trailing
 * whitespace stripped. Returns the length, or -1 (errno set) if it cannot be read. */
ssize_t read_small(const char *path, char *buf, size_t size);
/* Read a whole file into a malloc'd NUL-terminated buffer (at most `cap` bytes). */
char *read_all(const char *path, size_t cap, size_t *len);
/* Write a string to a file (sysfs/proc knobs). 0 or -errno. */
int write_str(const char *path, const char *s);

/* "0-3,8" -> bitmap of MAX_CPUS bits; returns the number of cpus or -1 on bad syntax. */
int cpulist_parse(const char *s, uint64_t *mask);
int mask_test(const uint64_t *mask, int cpu);
void mask_set(uint64_t *mask, int cpu);

/* The agent's own diagnostics: to the console (stderr) and, once open, the wire. */
void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
