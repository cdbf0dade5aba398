#define _GNU_SOURCE
#include "workload.h"
#include "workfam.h"
#include "wire.h"

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
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SPIN_CHUNK 512          /* arithmetic steps between two clock stamps */
#define SLEEP_NS 1000000ull     /* sleep workload: 1 ms asleep ... */
#define SLEEP_SPIN_NS 100000ull /* ... then 100 us busy */
#define PIPE_POLL_MS 100

/* ----------------------------------------------------------------- inside a worker */

void wc_tick(struct wctx *c, uint64_t now, uint64_t expected_ns)
{
	uint64_t gap = now - c->prev_ns;
	int cpu = sched_getcpu();

	gap = gap > expected_ns ? gap - expected_ns : 0;
	if (gap > c->r->max_gap_ns)
		c->r->max_gap_ns = gap;
	c->prev_ns = now;
	c->r->iterations++;
	if (cpu != c->last_cpu) {
		c->cpu_changes++;
		c->last_cpu = cpu;
		mask_set(c->r->cpus, cpu);
	}
}

int wc_going(const struct wctx *c, uint64_t now)
{
	return !c->sh->stop && now < c->end_ns;
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

static void run_spin(struct wctx *m)
{
	uint64_t x = (uint64_t)m->r->index + 1, now;

	do {
		for (int i = 0; i < SPIN_CHUNK; i++)
			x = x * 6364136223846793005ull + 1442695040888963407ull;
		sink = x;
		now = now_ns();
		wc_tick(m, now, 0);
	} while (wc_going(m, now));
}

static void run_yield(struct wctx *m)
{
	uint64_t now;

	do {
		sched_yield();
		now = now_ns();
		wc_tick(m, now, 0);
	} while (wc_going(m, now));
}

static void run_sleep(struct wctx *m)
{
	uint64_t now;

	do {
		struct timespec ts = { 0, (long)SLEEP_NS };

		spin_for(SLEEP_SPIN_NS);
		m->prev_ns = now_ns(); /* the gap we measure is the wake-up latency */
		nanosleep(&ts, NULL);
		now = now_ns();
		wc_tick(m, now, SLEEP_NS);
	} while (wc_going(m, now));
}

static void run_fork(struct wctx *m)
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
		wc_tick(m, now, 0);
	} while (wc_going(m, now));
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
static void run_pipe(struct wctx *m, int rfd, int wfd, int leader)
{
	uint64_t now = now_ns();

	while (wc_going(m, now)) {
		int got;

		if (leader && write(wfd, "x", 1) != 1)
			break;
		while ((got = pipe_recv(rfd)) == 0 && wc_going(m, now_ns()))
			;
		if (got < 0 || (!leader && got == 1 && write(wfd, "x", 1) != 1))
			break;
		now = now_ns();
		if (got == 1)
			wc_tick(m, now, 0);
	}
}

/* The group's per-worker attributes: nice, scheduling policy, CPU affinity. A refusal is
 * counted (attr_errors, reported) and the worker runs without that attribute. */
static void apply_attributes(struct wrec *r, const struct group *g)
{
	if (g->has_nice && setpriority(PRIO_PROCESS, 0, g->nice) < 0)
		r->attr_errors++;
	if (g->cpus) {
		uint64_t mask[MAX_CPUS / 64] = { 0 };
		cpu_set_t set;

		CPU_ZERO(&set);
		if (cpulist_parse(g->cpus, mask) > 0) {
			for (int c = 0; c < CPU_SETSIZE && c < MAX_CPUS; c++)
				if (mask_test(mask, c))
					CPU_SET(c, &set);
			if (sched_setaffinity(0, sizeof(set), &set) < 0)
				r->attr_errors++;
		} else {
			r->attr_errors++;
		}
	}
	int policy = g->policy;

	if (policy < 0 && g->kind == W_RT)
		policy = SCHED_FIFO;
	if (policy >= 0) {
		int rt = policy == SCHED_FIFO || policy == SCHED_RR;
		struct sched_param sp = { .sched_priority = rt ? (g->prio ? g->prio : 10) : 0 };

		if (sched_setscheduler(0, policy, &sp) < 0)
			r->attr_errors++;
	}
}

static void worker_main(struct wshared *sh, struct wrec *r, const struct group *g,
			const char *cgpath, int start_fd, int rfd, int wfd)
{
	struct wctx m = { .sh = sh, .r = r, .g = g, .wi = (int)(r - sh->w) };
	struct timespec cpu;
	char c, path[128], pid[16], comm[16];

	/* A name the monitor, the dumps and the probes can tell apart from the agent. */
	snprintf(comm, sizeof(comm), "%s-%d", g->kind == W_BENCH && g->name ? g->name :
		 wkind_names[r->kind], r->index);
	prctl(PR_SET_NAME, comm, 0, 0, 0);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	if (cgpath[0]) {
		snprintf(path, sizeof(path), "%s/cgroup.procs", cgpath);
		snprintf(pid, sizeof(pid), "%d", (int)getpid());
		if (write_str(path, pid))
			r->attr_errors++;
	}
	apply_attributes(r, g);
	/* Released when the agent closes the pipe's write end. */
	while (read(start_fd, &c, 1) < 0 && errno == EINTR)
		;
	close(start_fd);
	/* this worker's window inside the run (a scenario phase) */
	m.begin_ns = sh->start_ns + g->start_ms * 1000000ull;
	m.end_ns = g->stop_ms ? sh->start_ns + g->stop_ms * 1000000ull : sh->end_ns;
	while (!sh->stop && now_ns() < m.begin_ns)
		sleep_ms(5);
	m.prev_ns = now_ns();
	m.last_cpu = sched_getcpu();
	mask_set(r->cpus, m.last_cpu);
	switch (r->kind) {
	case W_SPIN: run_spin(&m); break;
	case W_YIELD: run_yield(&m); break;
	case W_SLEEP: run_sleep(&m); break;
	case W_FORK: run_fork(&m); break;
	case W_PIPE: run_pipe(&m, rfd, wfd, r->index % 2 == 0); break;
	default: workfam_run(&m); break;
	}
	r->wall_ns = now_ns() - (m.begin_ns > sh->start_ns ? m.begin_ns : sh->start_ns);
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu);
	r->cpu_ns = (uint64_t)cpu.tv_sec * 1000000000ull + (uint64_t)cpu.tv_nsec;
	r->migrations = sched_migrations(m.cpu_changes);
	if (read_small("/proc/self/cgroup", path, sizeof(path)) > 3 && !strncmp(path, "0::", 3))
		snprintf(r->cgroup, sizeof(r->cgroup), "%.63s", path + 3);
	__atomic_store_n(&r->done, 1, __ATOMIC_RELEASE);
	_exit(0);
}

/* ----------------------------------------------------------------- the agent's side */

static pid_t spawn(struct workload *wl, struct wrec *r, const struct group *g, int start[2],
		   int rfd, int wfd, int close1, int close2)
{
	pid_t pid = fork();

	if (pid == 0) {
		close(start[1]);
		if (close1 >= 0)
			close(close1);
		if (close2 >= 0)
			close(close2);
		worker_main(wl->sh, r, g, wl->cgpath[r->group], start[0], rfd, wfd);
	}
	r->pid = pid;
	return pid;
}

/* The group's cgroup: its own name, or cg<N> when the spec asks for one per group; its
 * cpu.weight, cpuset.cpus and cpuset.mems written once. "" = the root cgroup. */
static void group_cgroup(struct workload *wl, const struct spec *s, int gi)
{
	const struct group *g = &s->groups[gi];
	char *path = wl->cgpath[gi], knob[160], val[24];

	path[0] = '\0';
	if (g->cgroup)
		snprintf(path, sizeof(wl->cgpath[0]), "/sys/fs/cgroup/%s", g->cgroup);
	else if (s->cgroups)
		snprintf(path, sizeof(wl->cgpath[0]), "/sys/fs/cgroup/cg%d", gi);
	else
		return;
	if (mkdir(path, 0755) < 0 && errno != EEXIST) {
		warn("cannot create cgroup %s: %s; group %d runs in the root cgroup",
		     path, strerror(errno), gi);
		path[0] = '\0';
		return;
	}
	if (g->weight) {
		snprintf(knob, sizeof(knob), "%s/cpu.weight", path);
		snprintf(val, sizeof(val), "%d", g->weight);
		if (write_str(knob, val))
			warn("cannot set %s to %s", knob, val);
	}
	if (g->cpuset) {
		snprintf(knob, sizeof(knob), "%s/cpuset.cpus", path);
		if (write_str(knob, g->cpuset))
			warn("cannot set %s to %s", knob, g->cpuset);
	}
	if (g->mems) {
		snprintf(knob, sizeof(knob), "%s/cpuset.mems", path);
		if (write_str(knob, g->mems))
			warn("cannot set %s to %s", knob, g->mems);
	}
}

uint64_t workload_span_ms(const struct spec *s)
{
	uint64_t span = s->duration_ms;

	for (int g = 0; g < s->ngroups; g++) {
		uint64_t end = s->groups[g].kind == W_BENCH ?
			s->groups[g].start_ms + s->groups[g].timeout_ms : 0;

		span = end > span ? end : span;
	}
	return span;
}

int workload_start(struct workload *wl, const struct spec *s, int vcpus, char *err, int errlen)
{
	static struct spec deflt_spec;
	int n = 0, start[2];

	memset(wl, 0, sizeof(*wl));
	if (!s->ngroups) { /* no workload named: one spinner per vCPU */
		char line[32];

		deflt_spec = *s;
		snprintf(line, sizeof(line), "spin:%d", vcpus > 0 ? vcpus : 1);
		deflt_spec.ngroups = 0;
		spec_parse_workload(line, &deflt_spec, err, errlen);
		s = &deflt_spec;
	}
	wl->spec = s;
	for (int g = 0; g < s->ngroups; g++)
		n += s->groups[g].count;
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
	wl->ngroups = s->ngroups;
	wl->sh->end_ns = UINT64_MAX;
	/* cpu.weight and cpuset.* need their controllers enabled for the children */
	write_str("/sys/fs/cgroup/cgroup.subtree_control", "+cpu");
	write_str("/sys/fs/cgroup/cgroup.subtree_control", "+cpuset");
	for (int g = 0, i = 0; g < s->ngroups; g++) {
		const struct group *grp = &s->groups[g];

		group_cgroup(wl, s, g);
		for (int k = 0; k < grp->count; k++, i++) {
			struct wrec *r = &wl->sh->w[i];
			pid_t pid;

			r->group = g;
			r->index = k;
			r->kind = grp->kind;
			r->exit_status = -1;
			if (r->kind == W_PIPE && k % 2 == 0 && k + 1 < grp->count) {
				int ab[2], ba[2];

				if (pipe(ab) < 0 || pipe(ba) < 0) {
					snprintf(err, (size_t)errlen, "pipe: %s", strerror(errno));
					goto fail;
				}
				/* leader reads ba, writes ab; follower reads ab, writes ba */
				pid = spawn(wl, r, grp, start, ba[0], ab[1], ab[0], ba[1]);
				if (pid > 0) {
					wl->n = i + 1;
					i++, k++;
					r = &wl->sh->w[i];
					r->group = g;
					r->index = k;
					r->kind = W_PIPE;
					r->exit_status = -1;
					pid = spawn(wl, r, grp, start, ab[0], ba[1], ab[1], ba[0]);
				}
				close(ab[0]), close(ab[1]), close(ba[0]), close(ba[1]);
			} else {
				/* an unpaired pipe worker has no partner: it just times out */
				pid = spawn(wl, r, grp, start, -1, -1, -1, -1);
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

/* A benchmark's records carry its program's name (hackbench), the others their kind. */
static const char *kind_name(const struct workload *wl, int group, enum wkind kind)
{
	const struct group *g = wl->spec && group < wl->spec->ngroups ? &wl->spec->groups[group] : NULL;

	return kind == W_BENCH && g && g->name ? g->name : wkind_names[kind];
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
		jb_kstr(j, "kind", kind_name(wl, r->group, r->kind));
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
		if (r->kind >= W_MIXED) {
			jb_ku64(j, "ops", r->ops);
			jb_ku64(j, "bytes", r->bytes);
			jb_ku64(j, "lat_n", r->lat_n);
			jb_ku64(j, "lat_max_ns", r->lat_max_ns);
		}
		if (r->attr_errors)
			jb_ku64(j, "attr_errors", (uint64_t)r->attr_errors);
		jb_close(j, '}');
	}
	jb_close(j, ']');

	jb_key(j, "groups");
	jb_open(j, '[');
	for (int g = 0; wl->sh && g < wl->ngroups; g++) {
		uint64_t mask[MAX_CPUS / 64] = { 0 }, lo = UINT64_MAX, hi = 0, gap = 0, mig = 0, it = 0;
		uint64_t ops = 0, bytes = 0, wall = 0, ln = 0, lsum = 0, lmax = 0, hist[LAT_BUCKETS] = { 0 };
		int workers = 0, attr_errors = 0;
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
			ops += r->ops;
			bytes += r->bytes;
			wall = r->wall_ns > wall ? r->wall_ns : wall;
			ln += r->lat_n;
			lsum += r->lat_sum_ns;
			lmax = r->lat_max_ns > lmax ? r->lat_max_ns : lmax;
			for (int b = 0; b < LAT_BUCKETS; b++)
				hist[b] += r->lat_hist[b];
			attr_errors += r->attr_errors;
		}
		jb_open(j, '{');
		jb_ku64(j, "group", (uint64_t)g);
		jb_kstr(j, "kind", kind_name(wl, g, kind));
		jb_ku64(j, "workers", (uint64_t)workers);
		jb_ku64(j, "cpus", (uint64_t)popcount_mask(mask));
		jb_key(j, "spread");
		jb_double(j, hi ? (double)(hi - lo) * 100.0 / (double)hi : 0.0);
		jb_ku64(j, "max_gap_ms", gap / 1000000ull);
		jb_ku64(j, "migrations", mig);
		jb_ku64(j, "iterations", it);
		{
			/* the family's own measure: the host names it (ops/s, MB/s, latency) */
			jb_ku64(j, "ops", ops);
			jb_ku64(j, "bytes", bytes);
			jb_ku64(j, "wall_ns", wall);
			jb_ku64(j, "lat_n", ln);
			if (ln) {
				uint64_t want = ln - ln / 100, seen = 0; /* the 99th percentile */
				int b = 0;

				for (; b < LAT_BUCKETS - 1 && (seen += hist[b]) < want; b++)
					;
				jb_ku64(j, "lat_avg_ns", lsum / ln);
				jb_ku64(j, "lat_p99_ns", lat_bucket_hi(b) < lmax ? lat_bucket_hi(b) : lmax);
				jb_ku64(j, "lat_max_ns", lmax);
			}
		}
		if (attr_errors)
			jb_ku64(j, "attr_errors", (uint64_t)attr_errors);
		jb_close(j, '}');
	}
	jb_close(j, ']');
}

#define BENCH_OUTPUT_CAP (384u << 10) /* per file: escaped, two fit under WIRE_MAX_PAYLOAD */

void workload_send_benches(const struct workload *wl)
{
	for (int i = 0; wl->sh && i < wl->n; i++) {
		const struct wrec *r = &wl->sh->w[i];
		const struct group *g = &wl->spec->groups[r->group];
		char path[64], *text;
		size_t len = 0;
		struct jbuf j;

		if (r->kind != W_BENCH)
			continue;
		jb_init(&j);
		jb_open(&j, '{');
		jb_ku64(&j, "group", (uint64_t)r->group);
		jb_ku64(&j, "index", (uint64_t)r->index);
		jb_kstr(&j, "name", g->name ? g->name : "");
		jb_ki64(&j, "exit", r->done ? r->exit_status : -1);
		jb_ku64(&j, "wall_ns", r->stamp_ns);
		snprintf(path, sizeof(path), "/tmp/ktstr-bench-%d.out", i);
		text = read_all(path, BENCH_OUTPUT_CAP, &len);
		jb_key(&j, "output");
		jb_strn(&j, text ? text : "", text ? len : 0);
		free(text);
		if (g->file) {
			len = 0;
			text = read_all(g->file, BENCH_OUTPUT_CAP, &len);
			jb_key(&j, "file");
			jb_strn(&j, text ? text : "", text ? len : 0);
			free(text);
		}
		jb_close(&j, '}');
		if (j.oom)
			warn("out of memory building a BenchOutput message");
		else
			wire_send(MSG_BENCH_OUTPUT, 0, j.s, j.len);
		jb_free(&j);
	}
}
