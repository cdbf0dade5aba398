#include "tracefs.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"
#include "util.h"
#include "wire.h"

/* A trace instance of our own, so a snapshot neither clears nor fills the main buffer
 * that probes write to. */
#define DUMP_INSTANCE TRACEFS "/instances/ktstr_dump"

static void send_reply(struct jbuf *j)
{
	if (j->oom)
		warn("out of memory building a SnapshotReply");
	else
		wire_send(MSG_SNAPSHOT_REPLY, 0, j->s, j->len);
	jb_free(j);
}

/* SysRq-D with the sched_ext_dump trace event enabled in our instance: the kernel's own
 * dump of every CPU's state, without disturbing the scheduler. */
void tracefs_snapshot(const char *req)
{
	const char *p = strstr(req, "\"id\"");
	unsigned long id = 0;
	char enable[256], *dump = NULL, err[512] = "";
	size_t len = 0;
	struct jbuf j;
	int fd;

	if (p && (p = strchr(p, ':')))
		id = strtoul(p + 1, NULL, 10);
	snprintf(enable, sizeof(enable), "%s/events/sched_ext/sched_ext_dump/enable", DUMP_INSTANCE);
	mkdir(DUMP_INSTANCE, 0755);
	fd = open(DUMP_INSTANCE "/trace", O_WRONLY | O_TRUNC);
	if (fd >= 0)
		close(fd);
	if (write_str(enable, "1")) {
		snprintf(err, sizeof(err), "cannot enable the sched_ext_dump trace event (%s)", enable);
	} else if (write_str("/proc/sysrq-trigger", "D")) {
		snprintf(err, sizeof(err), "cannot write D to /proc/sysrq-trigger");
	} else if (!(dump = read_all(DUMP_INSTANCE "/trace", WIRE_MAX_PAYLOAD - 4096, &len))) {
		snprintf(err, sizeof(err), "cannot read the trace buffer");
	}
	write_str(enable, "0");
	jb_init(&j);
	jb_open(&j, '{');
	jb_ku64(&j, "id", id);
	jb_key(&j, "ok");
	jb_bool(&j, !err[0]);
	jb_key(&j, "dump");
	jb_strn(&j, dump ? dump : "", len);
	jb_kstr(&j, "error", err);
	jb_key(&j, "truncated");
	jb_bool(&j, len >= WIRE_MAX_PAYLOAD - 4096);
	jb_close(&j, '}');
	free(dump);
	if (j.len > WIRE_MAX_PAYLOAD) { /* escaping grew it past the cap: send it without */
		jb_free(&j);
		jb_init(&j);
		jb_open(&j, '{');
		jb_ku64(&j, "id", id);
		jb_key(&j, "ok");
		jb_bool(&j, 0);
		jb_kstr(&j, "dump", "");
		jb_kstr(&j, "error", "dump too large for one frame");
		jb_close(&j, '}');
	}
	send_reply(&j);
}

/* A probe line ">FILE VALUE" writes VALUE to the tracefs file FILE, relative to the
 * tracefs root (auto-repro: `>buffer_size_kb 64`, `>events/sched_ext/sched_ext_exit/enable 1`,
 * `>events/sched_ext/sched_ext_exit/trigger traceoff`, which freezes the buffer at the exit). */
static void probe_tracefs_write(const char *line)
{
	const char *sp = strchr(line, ' ');
	char path[320], log[1024];
	int rc;

	if (!sp || sp == line + 1 || sp - line > 256 || strstr(line, "..")) {
		warn("probe refused: %s: not >FILE VALUE", line);
		return;
	}
	snprintf(path, sizeof(path), TRACEFS "/%.*s", (int)(sp - line - 1), line + 1);
	rc = write_str(path, sp + 1);
	if (rc) {
		if (read_small(TRACEFS "/error_log", log, sizeof(log)) < 0)
			log[0] = '\0';
		warn("probe refused: %s: %s %s", line, strerror(-rc), log);
	}
}

/* "f:grp/name args" -> enable events/grp/name after adding the line to dynamic_events. */
void tracefs_arm_probes(const struct spec *s)
{
	for (int i = 0; i < s->nprobes; i++) {
		const char *line = s->probes[i], *colon = strchr(line, ':');
		char event[128] = "", path[256], log[1024];
		int fd, ok;

		if (line[0] == '>') {
			probe_tracefs_write(line);
			continue;
		}
		fd = open(TRACEFS "/dynamic_events", O_WRONLY | O_APPEND | O_CLOEXEC);
		ok = fd >= 0 && write(fd, line, strlen(line)) == (ssize_t)strlen(line);

		if (fd >= 0)
			close(fd);
		if (!ok) {
			if (read_small(TRACEFS "/error_log", log, sizeof(log)) < 0)
				log[0] = '\0';
			warn("probe refused: %s: %s", line, log);
			continue;
		}
		if (colon)
			sscanf(colon + 1, "%127[^ ]", event);
		snprintf(path, sizeof(path), TRACEFS "/events/%s/enable", event);
		if (!event[0] || write_str(path, "1"))
			warn("probe added but not enabled: %s", line);
	}
}

void tracefs_send_probe_output(const struct spec *s)
{
	size_t len;
	char *trace;

	if (!s->nprobes)
		return;
	/* The tail is what matters (the lead-up to the exit): read up to 16 MiB and send the
	 * last lines that fit one frame. */
	trace = read_all(TRACEFS "/trace", 16u << 20, &len);
	if (trace) {
		size_t max = WIRE_MAX_PAYLOAD - 4096, off = 0;

		if (len > max) {
			char *nl = memchr(trace + len - max, '\n', max);

			off = nl ? (size_t)(nl + 1 - trace) : len - max;
		}
		wire_send(MSG_PROBE_OUTPUT, off ? FLAG_TRUNCATED : 0, trace + off, len - off);
	}
	free(trace);
}
