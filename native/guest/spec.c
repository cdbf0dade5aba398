#include "spec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

const char *const wkind_names[W_NKINDS] = { "spin", "yield", "sleep", "fork", "pipe" };

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

static int parse_workload(char *v, struct spec *s, char *err, int errlen)
{
	int total = 0;

	for (char *part = strtok(v, ","); part; part = strtok(NULL, ",")) {
		char *colon = strchr(part, ':');
		uint64_t n = 0;
		int k;

		if (!colon || parse_u64(colon + 1, &n) || n < 1 || n > MAX_WORKERS) {
			snprintf(err, (size_t)errlen, "bad workload group '%s'", part);
			return -1;
		}
		*colon = '\0';
		for (k = 0; k < W_NKINDS && strcmp(part, wkind_names[k]); k++)
			;
		if (k == W_NKINDS || s->ngroups == MAX_GROUPS || total + (int)n > MAX_WORKERS) {
			snprintf(err, (size_t)errlen, "bad or too many workload groups at '%s'", part);
			return -1;
		}
		s->groups[s->ngroups].kind = (enum wkind)k;
		s->groups[s->ngroups].count = (int)n;
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
			   !strcmp(key, "cgroups") || !strcmp(key, "wire_selftest_kib")) {
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
			else
				s->cgroups = n != 0;
		} else if (!strcmp(key, "workload")) {
			if (parse_workload(val, s, err, errlen))
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
