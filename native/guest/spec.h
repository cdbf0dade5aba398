/* /ktstr/spec: the run's guest-facing spec, `key=value` lines (docs/wire.md). */
#ifndef KTSTR_SPEC_H
#define KTSTR_SPEC_H

#include <stdint.h>

#define MAX_ARGS 64
#define MAX_SYMS 64
#define MAX_PROBES 64
#define MAX_GROUPS 32
#define MAX_WORKERS 1024
#define MAX_TRACE_KV 64
#define BENCH_ARGS 48

/* The first five are the original kinds; the rest are ktstr's families (workfam.c) and
 * W_BENCH, a real benchmark program the worker runs and whose output it keeps. */
enum wkind {
	W_SPIN, W_YIELD, W_SLEEP, W_FORK, W_PIPE,
	W_MIXED, W_BURSTY, W_FUTEX, W_FANOUT, W_FANIN, W_FORKEXEC, W_THREAD, W_RT, W_PAGEFAULT,
	W_MEMBW, W_TIMER, W_IO, W_BENCH, W_NKINDS
};

/* One worker group: `workload=kind:n,...` (kind and count only) or a `group=` line with
 * attributes (docs/wire.md). 0 / NULL fields mean "leave as inherited" / the default. */
struct group {
	enum wkind kind;
	int count;
	int has_nice, nice;       /* setpriority */
	int policy, prio;         /* -1 = inherit; SCHED_FIFO/RR/OTHER/BATCH/IDLE */
	const char *cpus;         /* sched_setaffinity list */
	const char *cgroup;       /* cgroup name under /sys/fs/cgroup */
	int weight;               /* that cgroup's cpu.weight */
	const char *cpuset, *mems;
	uint64_t start_ms, stop_ms; /* active window from the workload's start (stop 0 = end) */
	uint64_t timeout_ms;      /* bench: how long it may run before it is killed */
	uint64_t burst_us, sleep_us, spin, fan_out, kib, interval_us;
	int node;                 /* membw: NUMA node, -1 = spread by worker index */
	const char *name;         /* bench: its name */
	const char *file;         /* bench: an output file it writes, kept with its stdout */
	char *argv[BENCH_ARGS + 1];
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
	uint64_t shell_hold_ms;     /* `ktstr shell`: the run waits for its primary shell */
};

extern const char *const wkind_names[W_NKINDS];

/* Parse the spec text (modified in place; the spec points into it). 0, or -1 with a
 * one-line reason in err. */
int spec_parse(char *text, struct spec *s, char *err, int errlen);

/* Add the groups of a `workload=` value ("spin:4,pipe:2"); modified in place. */
int spec_parse_workload(char *v, struct spec *s, char *err, int errlen);

#endif
