/* Workers: spin, yield, sleep, fork, pipe, ktstr's families (workfam.c) and real
 * benchmark programs (kind bench). Each worker is a process that measures itself
 * (CPU time, wall time, iterations, migrations, CPUs used, longest off-CPU gap) and
 * writes its record into a shared mapping the agent reads after reaping it. */
#ifndef KTSTR_WORKLOAD_H
#define KTSTR_WORKLOAD_H

#include <stdint.h>
#include <sys/types.h>

#include "json.h"
#include "spec.h"
#include "util.h"

#define LAT_BUCKETS 160 /* 4 buckets per power of two, up to 2^40 ns */

struct wrec {
	int group, index;
	enum wkind kind;
	pid_t pid;
	int done;    /* the worker wrote its record */
	int reaped;  /* the agent collected its exit */
	uint64_t cpu_ns, wall_ns, iterations, migrations, max_gap_ns;
	uint64_t cpus[MAX_CPUS / 64];
	char cgroup[64]; /* the worker's cgroup as it read it from /proc/self/cgroup */
	/* the families' own measures (workfam.c) */
	uint64_t ops, bytes;            /* operations (wakeups, faults, forks...) and bytes */
	uint64_t lat_n, lat_sum_ns, lat_max_ns;
	uint32_t lat_hist[LAT_BUCKETS]; /* log-scale latency histogram (lat_bucket) */
	uint32_t fx, fx2;               /* futex words shared with partners */
	uint64_t stamp_ns;              /* the waker's clock at the wake-up */
	int exit_status;                /* bench: exit code, 128+signal, -1 not run */
	int attr_errors;                /* attributes (nice, affinity, policy) refused */
};

struct wshared {
	volatile int stop;
	uint64_t start_ns, end_ns;
	struct wrec w[];
};

struct workload {
	struct wshared *sh;
	size_t maplen;
	int n;
	int ngroups;
	int killed;
	uint64_t started_ns, ended_ns;
	const struct spec *spec;
	char cgpath[MAX_GROUPS][96]; /* each group's cgroup directory, "" = root */
};

/* Fork every worker (they wait on a start pipe), then release them all at once for
 * duration_ms. 0, or -1 with a reason in err (workers already started are killed). */
int workload_start(struct workload *wl, const struct spec *s, int vcpus, char *err, int errlen);
/* Ask the workers to stop early (they notice within one iteration). */
void workload_stop(struct workload *wl);
/* A child exited: 1 if it was one of ours. */
int workload_reaped(struct workload *wl, pid_t pid);
int workload_running(const struct workload *wl);
/* SIGKILL workers still running (after their deadline passed). */
void workload_kill(struct workload *wl);
/* How long the workload phase may take: the run's duration or the longest benchmark
 * timeout, whichever is later (ms from the start). */
uint64_t workload_span_ms(const struct spec *s);
/* One BenchOutput message per benchmark worker: its exit, wall time and output. */
void workload_send_benches(const struct workload *wl);
/* "workers": [...], "groups": [...] members of the TestResult object. */
void workload_json(const struct workload *wl, struct jbuf *j);

#endif
