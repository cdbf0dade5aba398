#define _GNU_SOURCE
#include "spec.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

const char *const wkind_names[W_NKINDS] = {
	"spin", "yield", "sleep", "fork", "pipe",
	"mixed", "bursty", "futex", "fanout", "fanin", "forkexec", "thread", "rt", "pagefault",
	"membw", "timer", "io", "bench",
};

static int parse_u64(const char *v, uint64_t *out)
{
	char *end;
	unsigned long long n;

	if (!*v)
		return -1;
	n = strtoull(v, &end, 10);
	if (*end)
		return -1;
	*out = n;
	return 0;
}

static void group_defaults(struct group *g, enum wkind kind, int count)
{
	memset(g, 0, sizeof(*g));
	g->kind = kind;
	g->count = count;
	g->policy = -1;
	g->node = -1;
}

static int kind_of(const char *name)
{
	for (int k = 0; k < W_NKINDS; k++)
		if (!strcmp(name, wkind_names[k]))
			return k;
	return -1;
}

static int parse_i64(const char *v, long long lo, long long hi, long long *out)
{
	char *end;
	long long n;

	if (!*v)
		return -1;
	n = strtoll(v, &end, 10);
	if (*end || n < lo || n > hi)
		return -1;
	*out = n;
	return 0;
}

/* `group=kind:count key=value ... [-- argv...]`: one group with its attributes. */
static int parse_group(char *v, struct spec *s, int *total, char *err, int errlen)
{
	char *save = NULL, *tok = strtok_r(v, " ", &save), *colon;
	struct group *g;
	long long n = 0;
	int k;

	if (!tok || !(colon = strchr(tok, ':'))) {
		snprintf(err, (size_t)errlen, "group line without kind:count");
		return -1;
	}
	*colon = '\0';
	k = kind_of(tok);
	if (k < 0 || parse_i64(colon + 1, 1, MAX_WORKERS, &n) || s->ngroups == MAX_GROUPS ||
	    *total + n > MAX_WORKERS) {
		snprintf(err, (size_t)errlen, "bad or too many workload groups at '%s'", tok);
		return -1;
	}
	g = &s->groups[s->ngroups];
	group_defaults(g, (enum wkind)k, (int)n);
	while ((tok = strtok_r(NULL, " ", &save))) {
		char *eq = strchr(tok, '=');
		const char *key = tok, *val;
		long long x;

		if (!strcmp(tok, "--")) {
			int a = 0;

			while (a < BENCH_ARGS && (tok = strtok_r(NULL, " ", &save)))
				g->argv[a++] = tok;
			g->argv[a] = NULL;
			break;
		}
		if (!eq) {
			snprintf(err, (size_t)errlen, "group attribute '%.40s' without '='", tok);
			return -1;
		}
		*eq = '\0';
		val = eq + 1;
#define NUM(field, lo, hi) \
	do { if (parse_i64(val, lo, hi, &x)) goto bad; g->field = x; } while (0)
		if (!strcmp(key, "nice")) {
			NUM(nice, -20, 19);
			g->has_nice = 1;
		} else if (!strcmp(key, "policy")) {
			if (!strcmp(val, "fifo")) g->policy = SCHED_FIFO;
			else if (!strcmp(val, "rr")) g->policy = SCHED_RR;
			else if (!strcmp(val, "other")) g->policy = SCHED_OTHER;
			else if (!strcmp(val, "batch")) g->policy = SCHED_BATCH;
			else if (!strcmp(val, "idle")) g->policy = SCHED_IDLE;
			else goto bad;
		} else if (!strcmp(key, "prio")) NUM(prio, 0, 99);
		else if (!strcmp(key, "cpus")) g->cpus = val;
		else if (!strcmp(key, "cgroup")) g->cgroup = val;
		else if (!strcmp(key, "weight")) NUM(weight, 1, 10000);
		else if (!strcmp(key, "cpuset")) g->cpuset = val;
		else if (!strcmp(key, "mems")) g->mems = val;
		else if (!strcmp(key, "start_ms")) NUM(start_ms, 0, 86400000);
		else if (!strcmp(key, "stop_ms")) NUM(stop_ms, 0, 86400000);
		else if (!strcmp(key, "timeout_ms")) NUM(timeout_ms, 0, 86400000);
		else if (!strcmp(key, "burst_us")) NUM(burst_us, 0, 60000000);
		else if (!strcmp(key, "sleep_us")) NUM(sleep_us, 0, 60000000);
		else if (!strcmp(key, "spin")) NUM(spin, 0, 1000000000);
		else if (!strcmp(key, "fan_out")) NUM(fan_out, 1, MAX_WORKERS);
		else if (!strcmp(key, "kib")) NUM(kib, 4, 4194304);
		else if (!strcmp(key, "interval_us")) NUM(interval_us, 10, 60000000);
		else if (!strcmp(key, "node")) NUM(node, -1, 1023);
		else if (!strcmp(key, "name")) g->name = val;
		else if (!strcmp(key, "file")) g->file = val;
		else
			warn("spec: unknown group attribute '%s' ignored", key);
#undef NUM
		continue;
bad:
		snprintf(err, (size_t)errlen, "group attribute %s=%.40s is out of range", key, val);
		return -1;
	}
	if (g->kind == W_BENCH && (!g->argv[0] || !g->name)) {
		snprintf(err, (size_t)errlen, "bench group without name= or '-- argv'");
		return -1;
	}
	s->ngroups++;
	*total += (int)n;
	return 0;
}

int spec_parse_workload(char *v, struct spec *s, char *err, int errlen)
{
	int total = 0;

	for (int g = 0; g < s->ngroups; g++)
		total += s->groups[g].count;
	for (char *part = strtok(v, ","); part; part = strtok(NULL, ",")) {
		char *colon = strchr(part, ':');
		uint64_t n = 0;
		int k;

		if (!colon || parse_u64(colon + 1, &n) || n < 1 || n > MAX_WORKERS) {
			snprintf(err, (size_t)errlen, "bad workload group '%s'", part);
			return -1;
		}
		*colon = '\0';
		k = kind_of(part);
		if (k < 0 || k == W_BENCH || s->ngroups == MAX_GROUPS || total + (int)n > MAX_WORKERS) {
			snprintf(err, (size_t)errlen, "bad or too many workload groups at '%s'", part);
			return -1;
		}
		group_defaults(&s->groups[s->ngroups], (enum wkind)k, (int)n);
		s->ngroups++;
		total += (int)n;
	}
	return 0;
}

int spec_parse(char *text, struct spec *s, char *err, int errlen)
{
	int version = 0;
	uint64_t n;

	memset(s, 0, sizeof(*s));
	s->name = "ktstr";
	s->scheduler = "";
	s->duration_ms = 5000;
	s->enable_timeout_ms = 30000;
	s->stop_timeout_ms = 5000;
	s->args[0] = NULL;
	for (char *line = text, *next; line && *line; line = next) {
		char *eq;

		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		if (!*line || *line == '#')
			continue;
		eq = strchr(line, '=');
		if (!eq) {
			snprintf(err, (size_t)errlen, "line without '=': %.60s", line);
			return -1;
		}
		*eq = '\0';
		char *key = line, *val = eq + 1;

		if (!strcmp(key, "version")) {
			version = atoi(val);
		} else if (!strcmp(key, "name")) {
			s->name = val;
		} else if (!strcmp(key, "scheduler")) {
			s->scheduler = val;
		} else if (!strcmp(key, "sched_arg")) {
			if (s->nargs == MAX_ARGS) {
				snprintf(err, (size_t)errlen, "more than %d sched_arg lines", MAX_ARGS);
				return -1;
			}
			s->args[1 + s->nargs++] = val;
		} else if (!strcmp(key, "duration_ms") || !strcmp(key, "enable_timeout_ms") ||
			   !strcmp(key, "stop_timeout_ms") || !strcmp(key, "vcpus") ||
			   !strcmp(key, "cgroups") || !strcmp(key, "wire_selftest_kib") ||
			   !strcmp(key, "shell_hold_ms")) {
			if (parse_u64(val, &n) || n > 86400000ull) {
				snprintf(err, (size_t)errlen, "%s=%.40s is not a number", key, val);
				return -1;
			}
			if (!strcmp(key, "duration_ms"))
				s->duration_ms = n;
			else if (!strcmp(key, "enable_timeout_ms"))
				s->enable_timeout_ms = n;
			else if (!strcmp(key, "stop_timeout_ms"))
				s->stop_timeout_ms = n;
			else if (!strcmp(key, "vcpus"))
				s->vcpus = (int)n;
			else if (!strcmp(key, "wire_selftest_kib"))
				s->wire_selftest_kib = n;
			else if (!strcmp(key, "shell_hold_ms"))
				s->shell_hold_ms = n;
			else
				s->cgroups = n != 0;
		} else if (!strcmp(key, "workload")) {
			if (spec_parse_workload(val, s, err, errlen))
				return -1;
		} else if (!strcmp(key, "group")) {
			int total = 0;

			for (int g = 0; g < s->ngroups; g++)
				total += s->groups[g].count;
			if (parse_group(val, s, &total, err, errlen))
				return -1;
		} else if (!strcmp(key, "kallsym")) {
			if (s->nsyms < MAX_SYMS)
				s->syms[s->nsyms++] = val;
		} else if (!strncmp(key, "trace", 5)) {
			if (s->ntrace_kv < MAX_TRACE_KV) {
				s->trace_kv[s->ntrace_kv].key = key;
				s->trace_kv[s->ntrace_kv++].val = val;
			}
		} else if (!strcmp(key, "probe")) {
			if (s->nprobes < MAX_PROBES)
				s->probes[s->nprobes++] = val;
		} else {
			warn("spec: unknown key '%s' ignored", key);
		}
	}
	if (version != 1) {
		snprintf(err, (size_t)errlen, "spec version %d, this agent reads version 1", version);
		return -1;
	}
	s->args[0] = s->scheduler;
	s->args[1 + s->nargs] = NULL;
	return 0;
}
