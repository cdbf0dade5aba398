#define _GNU_SOURCE
#include "workload.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SPIN_CHUNK 512          /* arithmetic steps between two clock stamps */
#define SLEEP_NS 1000000ull     /* sleep workload: 1 ms asleep ... */
#define SLEEP_SPIN_NS 100000ull /* ... then 100 us busy */
#define PIPE_POLL_MS 100

/* ----------------------------------------------------------------- inside a worker */

struct meter {
	struct wrec *r;
	uint64_t prev_ns;
	int last_cpu;
	uint64_t cpu_changes;
};

static void meter_start(struct meter *m, struct wrec *r)
{
	m->r = r;
	m->prev_ns = now_ns();
	m->last_cpu = sched_getcpu();
	m->cpu_changes = 0;
	mask_set(r->cpus, m->last_cpu);
}

/* One iteration done at `now`; `expected_ns` is time the iteration meant to spend off
 * the CPU (the sleep), so only the excess counts as a gap. */
static void meter_tick(struct meter *m, uint64_t now, uint64_t expected_ns)
{
	uint64_t gap = now - m->prev_ns;
	int cpu = sched_getcpu();

	gap = gap > expected_ns ? gap - expected_ns : 0;
	if (gap > m->r->max_gap_ns)
		m->r->max_gap_ns = gap;
	m->prev_ns = now;
	m->r->iterations++;
	if (cpu != m->last_cpu) {
		m->cpu_changes++;
		m->last_cpu = cpu;
		mask_set(m->r->cpus, cpu);
	}
}

static int keep_going(const struct wshared *sh, uint64_t now)
{
	return !sh->stop && now < sh->end_ns;
}

static uint64_t sched_migrations(uint64_t fallback)
{
	char buf[8192], *p;

	if (read_small("/proc/self/sched", buf, sizeof(buf)) <= 0)
		return fallback;
	p = strstr(buf, "se.nr_migrations");
	if (!p || !(p = strchr(p, ':')))
		return fallback;
	return strtoull(p + 1, NULL, 10);
}

static void spin_for(uint64_t ns)
{
	uint64_t end = now_ns() + ns;

	while (now_ns() < end)
		;
}

static volatile uint64_t sink;

static void run_spin(struct wshared *sh, struct meter *m)
{
	uint64_t x = (uint64_t)m->r->index + 1, now;

	do {
		for (int i = 0; i < SPIN_CHUNK; i++)
			x = x * 6364136223846793005ull + 1442695040888963407ull;
		sink = x;
		now = now_ns();
		meter_tick(m, now, 0);
	} while (keep_going(sh, now));
}

static void run_yield(struct wshared *sh, struct meter *m)
{
	uint64_t now;

	do {
		sched_yield();
		now = now_ns();
		meter_tick(m, now, 0);
	} while (keep_going(sh, now));
}

static void run_sleep(struct wshared *sh, struct meter *m)
{
	uint64_t now;

	do {
		struct timespec ts = { 0, (long)SLEEP_NS };

		spin_for(SLEEP_SPIN_NS);
		m->prev_ns = now_ns(); /* the gap we measure is the wake-up latency */
		nanosleep(&ts, NULL);
		now = now_ns();
		meter_tick(m, now, SLEEP_NS);
	} while (keep_going(sh, now));
}

static void run_fork(struct wshared *sh, struct meter *m)
{
	uint64_t now;

	do {
		pid_t pid = fork();

		if (pid == 0)
			_exit(0);
		if (pid > 0)
			while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
				;
		else
			sleep_ms(1);
		now = now_ns();
		meter_tick(m, now, 0);
	} while (keep_going(sh, now));
}

/* Wait up to PIPE_POLL_MS for one byte; 1 got it, 0 timeout, -1 peer gone. */
static int pipe_recv(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char c;

	if (poll(&p, 1, PIPE_POLL_MS) <= 0)
		return 0;
	return read(fd, &c, 1) == 1 ? 1 : -1;
}

/* The leader of a pair sends a byte and waits for it to come back (one round trip per
 * iteration); the follower echoes. A closed pipe (partner done) ends the loop. */
static void run_pipe(struct wshared *sh, struct meter *m, int rfd, int wfd, int leader)
{
	uint64_t now = now_ns();

	while (keep_going(sh, now)) {
		int got;

		if (leader && write(wfd, "x", 1) != 1)
			break;
		while ((got = pipe_recv(rfd)) == 0 && keep_going(sh, now_ns()))
			;
		if (got < 0 || (!leader && got == 1 && write(wfd, "x", 1) != 1))
			break;
		now = now_ns();
		if (got == 1)
			meter_tick(m, now, 0);
	}
}

static void worker_main(struct wshared *sh, struct wrec *r, int start_fd, int rfd, int wfd,
			int cgroup)
{
	struct meter m;
	struct timespec cpu;
	char c, path[64], pid[16], comm[16];

	/* A name the monitor, the dumps and the probes can tell apart from the agent. */
	snprintf(comm, sizeof(comm), "%s-%d", wkind_names[r->kind], r->index);
	prctl(PR_SET_NAME, comm, 0, 0, 0);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	if (cgroup >= 0) {
		snprintf(path, sizeof(path), "/sys/fs/cgroup/cg%d/cgroup.procs", cgroup);
		snprintf(pid, sizeof(pid), "%d", (int)getpid());
		write_str(path, pid);
	}
	/* Released when the agent closes the pipe's write end. */
	while (read(start_fd, &c, 1) < 0 && errno == EINTR)
		;
	close(start_fd);
	meter_start(&m, r);
	switch (r->kind) {
	case W_SPIN: run_spin(sh, &m); break;
	case W_YIELD: run_yield(sh, &m); break;
	case W_SLEEP: run_sleep(sh, &m); break;
	case W_FORK: run_fork(sh, &m); break;
	case W_PIPE: run_pipe(sh, &m, rfd, wfd, r->index % 2 == 0); break;
	default: break;
	}
	r->wall_ns = now_ns() - sh->start_ns;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu);
	r->cpu_ns = (uint64_t)cpu.tv_sec * 1000000000ull + (uint64_t)cpu.tv_nsec;
	r->migrations = sched_migrations(m.cpu_changes);
	if (read_small("/proc/self/cgroup", path, sizeof(path)) > 3 && !strncmp(path, "0::", 3))
		snprintf(r->cgroup, sizeof(r->cgroup), "%s", path + 3);
	__atomic_store_n(&r->done, 1, __ATOMIC_RELEASE);
	_exit(0);
}

/* ----------------------------------------------------------------- the agent's side */

static pid_t spawn(struct workload *wl, struct wrec *r, int start[2], int rfd, int wfd,
		   int close1, int close2, int cgroup)
{
	pid_t pid = fork();

	if (pid == 0) {
		close(start[1]);
		if (close1 >= 0)
			close(close1);
		if (close2 >= 0)
			close(close2);
		worker_main(wl->sh, r, start[0], rfd, wfd, cgroup);
	}
	r->pid = pid;
	return pid;
}

int workload_start(struct workload *wl, const struct spec *s, int vcpus, char *err, int errlen)
{
	struct group deflt = { W_SPIN, vcpus > 0 ? vcpus : 1 };
	const struct group *groups = s->ngroups ? s->groups : &deflt;
	int ngroups = s->ngroups ? s->ngroups : 1, n = 0, start[2];

	memset(wl, 0, sizeof(*wl));
	for (int g = 0; g < ngroups; g++)
		n += groups[g].count;
	wl->maplen = sizeof(struct wshared) + (size_t)n * sizeof(struct wrec);
	wl->sh = mmap(NULL, wl->maplen, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (wl->sh == MAP_FAILED) {
		wl->sh = NULL;
		snprintf(err, (size_t)errlen, "mmap of worker records: %s", strerror(errno));
		return -1;
	}
	if (pipe2(start, O_CLOEXEC) < 0) {
		snprintf(err, (size_t)errlen, "pipe: %s", strerror(errno));
		return -1;
	}
	wl->ngroups = ngroups;
	wl->sh->end_ns = UINT64_MAX;
	for (int g = 0, i = 0; g < ngroups; g++) {
		int cg = s->cgroups ? g : -1;

		if (cg >= 0) {
			char path[64];

			snprintf(path, sizeof(path), "/sys/fs/cgroup/cg%d", g);
			if (mkdir(path, 0755) < 0 && errno != EEXIST) {
				warn("cannot create cgroup %s: %s; group %d runs in the root cgroup",
				     path, strerror(errno), g);
				cg = -1;
			}
		}
		for (int k = 0; k < groups[g].count; k++, i++) {
			struct wrec *r = &wl->sh->w[i];
			pid_t pid;

			r->group = g;
			r->index = k;
			r->kind = groups[g].kind;
			if (r->kind == W_PIPE && k % 2 == 0 && k + 1 < groups[g].count) {
				int ab[2], ba[2];

				if (pipe(ab) < 0 || pipe(ba) < 0) {
					snprintf(err, (size_t)errlen, "pipe: %s", strerror(errno));
					goto fail;
				}
				/* leader reads ba, writes ab; follower reads ab, writes ba */
				pid = spawn(wl, r, start, ba[0], ab[1], ab[0], ba[1], cg);
				if (pid > 0) {
					wl->n = i + 1;
					i++, k++;
					r = &wl->sh->w[i];
					r->group = g;
					r->index = k;
					r->kind = W_PIPE;
					pid = spawn(wl, r, start, ab[0], ba[1], ab[1], ba[0], cg);
				}
				close(ab[0]), close(ab[1]), close(ba[0]), close(ba[1]);
			} else {
				/* an unpaired pipe worker has no partner: it just times out */
				pid = spawn(wl, r, start, -1, -1, -1, -1, cg);
			}
			if (pid < 0) {
				snprintf(err, (size_t)errlen, "fork of worker %d: %s", i, strerror(errno));
				goto fail;
			}
			wl->n = i + 1;
		}
	}
	close(start[0]);
	wl->started_ns = now_ns();
	wl->sh->start_ns = wl->started_ns;
	wl->sh->end_ns = wl->started_ns + s->duration_ms * 1000000ull;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	close(start[1]); /* go */
	return 0;
fail:
	close(start[0]);
	close(start[1]);
	workload_stop(wl);
	workload_kill(wl);
	return -1;
}

void workload_stop(struct workload *wl)
{
	if (wl->sh)
		wl->sh->stop = 1;
}

int workload_reaped(struct workload *wl, pid_t pid)
{
	for (int i = 0; i < wl->n; i++) {
		if (wl->sh->w[i].pid == pid && !wl->sh->w[i].reaped) {
			wl->sh->w[i].reaped = 1;
			if (!workload_running(wl))
				wl->ended_ns = now_ns();
			return 1;
		}
	}
	return 0;
}

int workload_running(const struct workload *wl)
{
	int running = 0;

	for (int i = 0; i < wl->n; i++)
		running += wl->sh->w[i].pid > 0 && !wl->sh->w[i].reaped;
	return running;
}

void workload_kill(struct workload *wl)
{
	for (int i = 0; i < wl->n; i++) {
		struct wrec *r = &wl->sh->w[i];

		if (r->pid > 0 && !r->reaped) {
			kill(r->pid, SIGKILL);
			wl->killed++;
		}
	}
}

static int popcount_mask(const uint64_t *mask)
{
	int n = 0;

	for (int i = 0; i < MAX_CPUS / 64; i++)
		n += __builtin_popcountll(mask[i]);
	return n;
}

void workload_json(const struct workload *wl, struct jbuf *j)
{
	jb_key(j, "workers");
	jb_open(j, '[');
	for (int i = 0; wl->sh && i < wl->n; i++) {
		const struct wrec *r = &wl->sh->w[i];

		if (!r->done)
			continue;
		jb_open(j, '{');
		jb_ku64(j, "group", (uint64_t)r->group);
		jb_kstr(j, "kind", wkind_names[r->kind]);
		jb_ku64(j, "index", (uint64_t)r->index);
		jb_ku64(j, "pid", (uint64_t)r->pid);
		jb_kstr(j, "cgroup", r->cgroup);
		jb_ku64(j, "cpu_ns", r->cpu_ns);
		jb_ku64(j, "wall_ns", r->wall_ns);
		jb_ku64(j, "iterations", r->iterations);
		jb_ku64(j, "migrations", r->migrations);
		jb_key(j, "cpus");
		jb_open(j, '[');
		for (int c = 0; c < MAX_CPUS; c++)
			if (mask_test(r->cpus, c))
				jb_u64(j, (uint64_t)c);
		jb_close(j, ']');
		jb_ku64(j, "max_gap_ns", r->max_gap_ns);
		jb_close(j, '}');
	}
	jb_close(j, ']');

	jb_key(j, "groups");
	jb_open(j, '[');
	for (int g = 0; wl->sh && g < wl->ngroups; g++) {
		uint64_t mask[MAX_CPUS / 64] = { 0 }, lo = UINT64_MAX, hi = 0, gap = 0, mig = 0, it = 0;
		int workers = 0;
		enum wkind kind = W_SPIN;

		for (int i = 0; i < wl->n; i++) {
			const struct wrec *r = &wl->sh->w[i];

			if (r->group != g || !r->done)
				continue;
			workers++;
			kind = r->kind;
			for (int w = 0; w < MAX_CPUS / 64; w++)
				mask[w] |= r->cpus[w];
			lo = r->cpu_ns < lo ? r->cpu_ns : lo;
			hi = r->cpu_ns > hi ? r->cpu_ns : hi;
			gap = r->max_gap_ns > gap ? r->max_gap_ns : gap;
			mig += r->migrations;
			it += r->iterations;
		}
		jb_open(j, '{');
		jb_ku64(j, "group", (uint64_t)g);
		jb_kstr(j, "kind", wkind_names[kind]);
		jb_ku64(j, "workers", (uint64_t)workers);
		jb_ku64(j, "cpus", (uint64_t)popcount_mask(mask));
		jb_key(j, "spread");
		jb_double(j, hi ? (double)(hi - lo) * 100.0 / (double)hi : 0.0);
		jb_ku64(j, "max_gap_ms", gap / 1000000ull);
		jb_ku64(j, "migrations", mig);
		jb_ku64(j, "iterations", it);
		jb_close(j, '}');
	}
	jb_close(j, ']');
}
