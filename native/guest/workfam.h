/* ktstr's workload families, ported (the behaviour, not the code): CPU (mixed, bursty),
 * wakeup (futex ping-pong, futex fan-out), churn (fork+exec, thread create/join), RT
 * (periodic SCHED_FIFO/RR wake-ups), memory (page-fault churn, NUMA memory bandwidth),
 * IRQ/IO (timerfd expiries, a pipe I/O loop) and bench (a real benchmark program).
 * Each worker counts its own measure into its wrec: ops, bytes, latency histogram. */
#ifndef KTSTR_WORKFAM_H
#define KTSTR_WORKFAM_H

#include <stdint.h>

#include "workload.h"

/* A worker's view of itself while it runs. */
struct wctx {
	struct wshared *sh;
	struct wrec *r;
	const struct group *g;
	int wi;                  /* index of r in sh->w */
	uint64_t begin_ns, end_ns; /* this worker's window */
	uint64_t prev_ns;
	int last_cpu;
	uint64_t cpu_changes;
};

/* Still inside the window and not told to stop. */
int wc_going(const struct wctx *c, uint64_t now);
/* One iteration done at `now`; `expected_ns` of it was meant to be off the CPU. */
void wc_tick(struct wctx *c, uint64_t now, uint64_t expected_ns);
/* Record one latency sample. */
void wc_lat(struct wrec *r, uint64_t ns);
/* The histogram bucket of `ns`, and the upper bound of bucket `b` in ns. */
int lat_bucket(uint64_t ns);
uint64_t lat_bucket_hi(int b);
/* Run the worker's kind (W_MIXED and later). */
void workfam_run(struct wctx *c);
/* argv[0] of a process that only exits: the forkexec workload execs /init under it. */
#define EXEC_CHILD_NAME "ktstr-exec-child"

#endif
