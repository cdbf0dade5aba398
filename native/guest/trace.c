#define _GNU_SOURCE
#include "trace.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "json.h"
#include "tracefs.h"
#include "util.h"
#include "wire.h"

#define INST TRACEFS "/instances/ktstr_trace"
#define TRACE_TICK_MS 500         /* how often the buffers are read while the run goes on */
#define FRAME_BYTES (256u << 10) /* pages are batched into TracePages frames this big */
#define FINAL_SECONDS 5          /* the last drain may take this much wire time */
#define MAX_EVENTS 128
#define RB_MISSED_EVENTS (1ull << 31)
#define RB_MISSED_STORED (1ull << 30)
#define RB_FLAGS (RB_MISSED_EVENTS | RB_MISSED_STORED)

static struct {
	int on, ncpu, page;
	int fds[MAX_CPUS];
	uint64_t rate;   /* wire budget, bytes per second (0 = no limit) */
	uint64_t cap;    /* bytes streamed before the run ends (0 = no limit) */
	uint64_t budget, last_tick_ms;
	uint64_t sent_bytes, sent_pages, empty_pages, starved_ticks, final_skipped;
	uint64_t cpu_ns; /* the agent's own CPU time spent streaming (thread CPU clock) */
	uint64_t read_ns, send_ns;
	int capped;
	unsigned char *frame, *pagebuf;
	size_t flen;
	char enabled[MAX_EVENTS][96], missing[MAX_EVENTS][96];
	int nenabled, nmissing;
	char clock[16];
	unsigned long buffer_kb;
} tr;

static const char *kv(const struct spec *s, const char *key, const char *dflt)
{
	for (int i = 0; i < s->ntrace_kv; i++)
		if (!strcmp(s->trace_kv[i].key, key))
			return s->trace_kv[i].val;
	return dflt;
}

static void add_name(char (*list)[96], int *n, const char *name)
{
	if (*n < MAX_EVENTS)
		snprintf(list[(*n)++], sizeof(list[0]), "%s", name);
}

static int skipped(const struct spec *s, const char *name)
{
	for (int i = 0; i < s->ntrace_kv; i++)
		if (!strcmp(s->trace_kv[i].key, "trace_event") && s->trace_kv[i].val[0] == '-' &&
		    !strcmp(s->trace_kv[i].val + 1, name))
			return 1;
	return 0;
}

static void enable_one(const char *name)
{
	char path[256];

	snprintf(path, sizeof(path), INST "/events/%s/enable", name);
	if (write_str(path, "1"))
		add_name(tr.missing, &tr.nmissing, name);
	else
		add_name(tr.enabled, &tr.nenabled, name);
}

/* "group/name", or "group/ *" for every event of the group the kernel offers. */
static void enable_events(const struct spec *s)
{
	for (int i = 0; i < s->ntrace_kv; i++) {
		const char *v = s->trace_kv[i].val;
		size_t n = strlen(v);

		if (strcmp(s->trace_kv[i].key, "trace_event") || v[0] == '-' || !n || strstr(v, ".."))
			continue;
		if (n > 2 && !strcmp(v + n - 2, "/*")) {
			char dir[256], name[96];
			struct dirent *d;
			DIR *dp;
			int found = 0;

			snprintf(dir, sizeof(dir), INST "/events/%.*s", (int)(n - 2), v);
			dp = opendir(dir);
			while (dp && (d = readdir(dp))) {
				if (d->d_name[0] == '.' || d->d_type != DT_DIR)
					continue;
				snprintf(name, sizeof(name), "%.*s/%.60s", (int)(n - 2), v, d->d_name);
				if (!skipped(s, name)) {
					enable_one(name);
					found++;
				}
			}
			if (dp)
				closedir(dp);
			if (!found)
				add_name(tr.missing, &tr.nmissing, v);
		} else {
			enable_one(v);
		}
	}
}

static void send_formats(void)
{
	char path[256];
	struct jbuf j;
	size_t len;
	char *text;

	jb_init(&j);
	jb_open(&j, '{');
	jb_kstr(&j, "clock", tr.clock);
	jb_ku64(&j, "page_size", (uint64_t)tr.page);
	jb_ku64(&j, "cpus", (uint64_t)tr.ncpu);
	jb_ku64(&j, "buffer_kb", tr.buffer_kb);
	jb_ku64(&j, "rate_bytes_s", tr.rate);
	jb_ku64(&j, "cap_bytes", tr.cap);
	jb_ku64(&j, "t_ms", now_ms());
	jb_key(&j, "enabled");
	jb_open(&j, '[');
	for (int i = 0; i < tr.nenabled; i++)
		jb_str(&j, tr.enabled[i]);
	jb_close(&j, ']');
	jb_key(&j, "missing");
	jb_open(&j, '[');
	for (int i = 0; i < tr.nmissing; i++)
		jb_str(&j, tr.missing[i]);
	jb_close(&j, ']');
	jb_key(&j, "formats");
	jb_open(&j, '{');
	for (int i = -2; i < tr.nenabled; i++) {
		const char *name = i == -2 ? "header_page" : i == -1 ? "header_event" : tr.enabled[i];

		snprintf(path, sizeof(path), TRACEFS "/events/%s%s", name, i < 0 ? "" : "/format");
		text = read_all(path, 64 << 10, &len);
		if (!text)
			continue;
		jb_key(&j, name);
		jb_strn(&j, text, len);
		free(text);
	}
	jb_close(&j, '}');
	jb_close(&j, '}');
	if (j.oom)
		warn("trace: out of memory building TraceFormats");
	else
		wire_send(MSG_TRACE_FORMATS, 0, j.s, j.len);
	jb_free(&j);
}

void trace_start(const struct spec *s)
{
	char path[256], val[32];
	struct stat st;

	if (strcmp(kv(s, "trace", "0"), "1"))
		return;
	tr.page = (int)sysconf(_SC_PAGESIZE);
	tr.ncpu = (int)sysconf(_SC_NPROCESSORS_CONF);
	if (tr.ncpu > MAX_CPUS)
		tr.ncpu = MAX_CPUS;
	tr.rate = strtoull(kv(s, "trace_rate_kib", "0"), NULL, 10) << 10;
	tr.cap = strtoull(kv(s, "trace_cap_mb", "0"), NULL, 10) << 20;
	tr.buffer_kb = strtoul(kv(s, "trace_buffer_kb", "2048"), NULL, 10);
	tr.frame = malloc(FRAME_BYTES);
	tr.pagebuf = malloc((size_t)tr.page);
	if (!tr.frame || !tr.pagebuf || stat(TRACEFS "/instances", &st)) {
		warn("trace: no tracefs instances here (%s): running without the trace",
		     TRACEFS "/instances");
		return;
	}
	if (mkdir(INST, 0755) && errno != EEXIST) {
		warn("trace: cannot create %s: %s; running without the trace", INST, strerror(errno));
		return;
	}
	write_str(INST "/tracing_on", "0");
	snprintf(val, sizeof(val), "%lu", tr.buffer_kb);
	if (write_str(INST "/buffer_size_kb", val))
		warn("trace: cannot set buffer_size_kb to %s", val);
	if (read_small(INST "/buffer_size_kb", val, sizeof(val)) > 0)
		tr.buffer_kb = strtoul(val, NULL, 10);
	snprintf(tr.clock, sizeof(tr.clock), "mono");
	if (write_str(INST "/trace_clock", "mono")) {
		warn("trace: the mono trace clock is refused; timestamps are the local clock");
		snprintf(tr.clock, sizeof(tr.clock), "local");
	}
	write_str(INST "/options/overwrite", "1"); /* keep the newest when the wire is short */
	enable_events(s);
	for (int i = 0; i < tr.nmissing; i++)
		warn("trace: this kernel has no tracepoint %s; tracing without it", tr.missing[i]);
	for (int c = 0; c < tr.ncpu; c++) {
		snprintf(path, sizeof(path), INST "/per_cpu/cpu%d/trace_pipe_raw", c);
		tr.fds[c] = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	}
	tr.on = 1;
	tr.last_tick_ms = now_ms();
	tr.budget = tr.rate ? tr.rate / 4 : 0;
	send_formats();
	write_str(INST "/tracing_on", "1");
	note("trace: %d events on %d cpus, %lu KiB per cpu, clock %s, wire budget %llu KiB/s",
	     tr.nenabled, tr.ncpu, tr.buffer_kb, tr.clock, (unsigned long long)(tr.rate >> 10));
}

static uint64_t thread_cpu_ns(void);

static void flush_frame(void)
{
	uint64_t t0 = thread_cpu_ns();

	if (tr.flen)
		wire_send(MSG_TRACE_PAGES, 0, tr.frame, tr.flen);
	tr.flen = 0;
	tr.send_ns += thread_cpu_ns() - t0;
}

/* One page read from trace_pipe_raw: how many of its bytes carry anything (the header,
 * the committed data and, when the kernel stored it, the missed-events count after it). */
static size_t page_used(const unsigned char *p, size_t got)
{
	uint64_t commit;
	size_t used;

	if (got < 16)
		return 0;
	memcpy(&commit, p + 8, 8);
	used = 16 + (size_t)(commit & ~RB_FLAGS & 0xffffffffull);
	if (commit & RB_MISSED_STORED)
		used += 8;
	if (used > got)
		used = got;
	if (used == 16 && !(commit & RB_FLAGS))
		return 0; /* nothing in it */
	return used;
}

static void add_page(int cpu, const unsigned char *p, size_t used)
{
	uint32_t hdr[2] = { (uint32_t)cpu, (uint32_t)used };

	if (tr.flen + sizeof(hdr) + used > FRAME_BYTES)
		flush_frame();
	memcpy(tr.frame + tr.flen, hdr, sizeof(hdr));
	memcpy(tr.frame + tr.flen + sizeof(hdr), p, used);
	tr.flen += sizeof(hdr) + used;
	tr.sent_bytes += sizeof(hdr) + used;
	tr.sent_pages++;
}

/* Read one page of cpu; its used length, 0 for an empty page, -1 when there is none. */
static ssize_t read_page(int cpu)
{
	ssize_t n;

	uint64_t t0 = thread_cpu_ns();

	if (tr.fds[cpu] < 0)
		return -1;
	n = read(tr.fds[cpu], tr.pagebuf, (size_t)tr.page);
	tr.read_ns += thread_cpu_ns() - t0;
	if (n <= 0)
		return -1;
	return (ssize_t)page_used(tr.pagebuf, (size_t)n);
}

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void pump_pages(void);

void trace_pump(void)
{
	uint64_t t0;

	if (!tr.on || tr.capped || now_ms() - tr.last_tick_ms < TRACE_TICK_MS)
		return;
	t0 = thread_cpu_ns();
	pump_pages();
	tr.cpu_ns += thread_cpu_ns() - t0;
}

static void pump_pages(void)
{
	uint64_t now = now_ms();
	int more = 1;

	if (tr.rate) {
		tr.budget += tr.rate * (now - tr.last_tick_ms) / 1000;
		if (tr.budget > tr.rate)
			tr.budget = tr.rate;
	}
	tr.last_tick_ms = now;
	/* Round robin, a page of each cpu at a time, while the budget lasts. */
	while (more) {
		more = 0;
		for (int c = 0; c < tr.ncpu; c++) {
			ssize_t used;

			if (tr.rate && tr.budget < (uint64_t)tr.page) {
				tr.starved_ticks++;
				goto out;
			}
			if (tr.cap && tr.sent_bytes >= tr.cap) {
				tr.capped = 1;
				warn("trace: %llu MiB streamed, the cap: the rest of the run keeps only "
				     "what the ring buffers hold at the end",
				     (unsigned long long)(tr.cap >> 20));
				goto out;
			}
			used = read_page(c);
			if (used < 0)
				continue;
			more = 1;
			if (used == 0) {
				tr.empty_pages++;
				continue;
			}
			add_page(c, tr.pagebuf, (size_t)used);
			if (tr.rate)
				tr.budget -= (uint64_t)used < tr.budget ? (uint64_t)used : tr.budget;
		}
	}
out:
	flush_frame();
}

static void send_stats(void)
{
	char path[256];
	struct jbuf j;
	size_t len;
	char *text;

	jb_init(&j);
	jb_open(&j, '{');
	jb_ku64(&j, "t_ms", now_ms());
	jb_ku64(&j, "pages", tr.sent_pages);
	jb_ku64(&j, "bytes", tr.sent_bytes);
	jb_ku64(&j, "empty_pages", tr.empty_pages);
	jb_ku64(&j, "starved_ticks", tr.starved_ticks);
	jb_ku64(&j, "final_skipped_pages", tr.final_skipped);
	jb_ku64(&j, "agent_cpu_us", tr.cpu_ns / 1000);
	jb_ku64(&j, "read_us", tr.read_ns / 1000);
	jb_ku64(&j, "send_us", tr.send_ns / 1000);
	jb_key(&j, "capped");
	jb_bool(&j, tr.capped);
	jb_key(&j, "cpus");
	jb_open(&j, '{');
	for (int c = 0; c < tr.ncpu; c++) {
		char key[16];

		snprintf(path, sizeof(path), INST "/per_cpu/cpu%d/stats", c);
		text = read_all(path, 8192, &len);
		if (!text)
			continue;
		snprintf(key, sizeof(key), "%d", c);
		jb_key(&j, key);
		jb_strn(&j, text, len);
		free(text);
	}
	jb_close(&j, '}');
	jb_close(&j, '}');
	if (!j.oom)
		wire_send(MSG_TRACE_STATS, 0, j.s, j.len);
	jb_free(&j);
}

/* The end: recording stops, and the newest pages each cpu still holds go out (those are
 * the lead-up to the end, a stall say), as many as FINAL_SECONDS of the wire budget take;
 * older ones are skipped and counted. */
void trace_stop(void)
{
	size_t keep, slot = (size_t)tr.page + 8;
	unsigned char *ring;

	uint64_t t0;

	if (!tr.on)
		return;
	t0 = thread_cpu_ns();
	write_str(INST "/tracing_on", "0");
	keep = tr.rate ? tr.rate * FINAL_SECONDS / (uint64_t)tr.ncpu / (uint64_t)tr.page : 0;
	if (!keep || keep > (tr.buffer_kb << 10) / (size_t)tr.page + 2)
		keep = (tr.buffer_kb << 10) / (size_t)tr.page + 2;
	ring = malloc(keep * slot);
	for (int c = 0; ring && c < tr.ncpu; c++) {
		size_t n = 0;
		ssize_t used;

		while ((used = read_page(c)) >= 0) {
			if (used == 0)
				continue;
			unsigned char *s = ring + (n % keep) * slot;
			uint64_t u = (uint64_t)used;

			memcpy(s, &u, 8);
			memcpy(s + 8, tr.pagebuf, (size_t)used);
			n++;
		}
		if (n > keep)
			tr.final_skipped += n - keep;
		for (size_t i = n > keep ? n - keep : 0; i < n; i++) {
			unsigned char *s = ring + (i % keep) * slot;
			uint64_t u;

			memcpy(&u, s, 8);
			add_page(c, s + 8, (size_t)u);
		}
	}
	free(ring);
	flush_frame();
	tr.cpu_ns += thread_cpu_ns() - t0; /* the last drain counts too */
	send_stats();
	for (int i = 0; i < tr.nenabled; i++) {
		char path[256];

		snprintf(path, sizeof(path), INST "/events/%s/enable", tr.enabled[i]);
		write_str(path, "0");
	}
	for (int c = 0; c < tr.ncpu; c++)
		if (tr.fds[c] >= 0)
			close(tr.fds[c]);
	note("trace: %llu pages (%llu KiB) sent, %llu skipped at the end%s; streaming took the "
	     "agent %llu ms of CPU",
	     (unsigned long long)tr.sent_pages, (unsigned long long)(tr.sent_bytes >> 10),
	     (unsigned long long)tr.final_skipped, tr.capped ? ", cap reached" : "",
	     (unsigned long long)(tr.cpu_ns / 1000000));
	note("trace: of which reading the buffers %llu ms, sending %llu ms",
	     (unsigned long long)(tr.read_ns / 1000000),
	     (unsigned long long)(tr.send_ns / 1000000));
	tr.on = 0;
}
