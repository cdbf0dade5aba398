/* /ktstr/spec: the run's guest-facing spec, `key=value` lines (docs/wire.md). */
#ifndef KTSTR_SPEC_H
#define KTSTR_SPEC_H

#include <stdint.h>

#define MAX_ARGS 64
#define MAX_SYMS 64
#define MAX_PROBES 64
#define MAX_GROUPS 16
#define MAX_WORKERS 1024
#define MAX_TRACE_KV 64

enum wkind { W_SPIN, W_YIELD, W_SLEEP, W_FORK, W_PIPE, W_NKINDS };

struct group {
	enum wkind kind;
	int count;
};

struct spec {
	char *name;
	char *scheduler;              /* "" = baseline, default class */
	char *args[MAX_ARGS + 2];     /* argv: scheduler, args..., NULL */
	int nargs;
	uint64_t duration_ms;
	uint64_t enable_timeout_ms;
	uint64_t stop_timeout_ms;
	struct group groups[MAX_GROUPS];
	int ngroups;
	int cgroups;
	const char *syms[MAX_SYMS];
	int nsyms;
	const char *probes[MAX_PROBES];
	int nprobes;
	int vcpus;
	uint64_t wire_selftest_kib; /* send this much filler after SysRdy (throughput test) */
	struct { const char *key, *val; } trace_kv[MAX_TRACE_KV]; /* `trace*` keys: trace.c */
	int ntrace_kv;
};

extern const char *const wkind_names[W_NKINDS];

/* Parse the spec text (modified in place; the spec points into it). 0, or -1 with a
 * one-line reason in err. */
int spec_parse(char *text, struct spec *s, char *err, int errlen);

#endif
