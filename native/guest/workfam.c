#define _GNU_SOURCE
#include "workfam.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

/* Defaults when the group leaves a parameter at 0 (ktstr's defaults where it has them). */
#define MIXED_SPIN 2048          /* LCG steps between two yields */
#define BURSTY_BURST_US 50000    /* 50 ms of work ... */
#define BURSTY_SLEEP_US 100000   /* ... then 100 ms asleep */
#define FUTEX_SPIN 1024          /* work before waking the partner */
#define FANOUT_N 4               /* receivers per messenger */
#define RT_INTERVAL_US 1000
#define PF_KIB 4096              /* page-fault region */
#define MEMBW_KIB 16384          /* memory-bandwidth buffer (two halves copied) */
#define TIMER_INTERVAL_US 1000
#define IO_CHUNK 65536
#define IO_KIB 1024              /* bytes per iteration through the pipe */
#define WAIT_MS 100              /* futex waits time out so a stop is noticed */

static volatile uint64_t sink;

static uint64_t spin_steps(uint64_t n, uint64_t x)
{
	for (uint64_t i = 0; i < n; i++)
		x = x * 6364136223846793005ull + 1442695040888963407ull;
	sink = x;
	return x;
}

static uint64_t or_default(uint64_t v, uint64_t d)
{
	return v ? v : d;
}

/* ---------------------------------------------------------------- latency histogram */

int lat_bucket(uint64_t ns)
{
	int b;

	if (ns < 4)
		return (int)ns;
	b = 63 - __builtin_clzll(ns);                  /* floor(log2) */
	b = b * 4 + (int)((ns >> (b - 2)) & 3);         /* two mantissa bits */
	return b < LAT_BUCKETS ? b : LAT_BUCKETS - 1;
}

uint64_t lat_bucket_hi(int b)
{
	int e = b / 4, m = b % 4;

	if (b < 4)
		return (uint64_t)b;
	if (e >= 63)
		return UINT64_MAX;
	return ((uint64_t)(4 + m + 1) << (e - 2)) - 1;
}

void wc_lat(struct wrec *r, uint64_t ns)
{
	r->lat_n++;
	r->lat_sum_ns += ns;
	if (ns > r->lat_max_ns)
		r->lat_max_ns = ns;
	r->lat_hist[lat_bucket(ns)]++;
}

/* ---------------------------------------------------------------- futex helpers */

static long futex(uint32_t *uaddr, int op, uint32_t val, const struct timespec *ts)
{
	return syscall(SYS_futex, uaddr, op, val, ts, NULL, 0);
}

static void futex_wait_ms(uint32_t *w, uint32_t val, unsigned ms)
{
	struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };

	futex(w, FUTEX_WAIT, val, &ts);
}

static void futex_wake_all(uint32_t *w)
{
	futex(w, FUTEX_WAKE, INT_MAX, NULL);
}

/* ---------------------------------------------------------------- CPU */

/* A spin burst, then sched_yield (ktstr's Mixed). */
static void run_mixed(struct wctx *c)
{
	uint64_t n = or_default(c->g->spin, MIXED_SPIN), x = (uint64_t)c->wi + 1, now;

	do {
		x = spin_steps(n, x);
		sched_yield();
		c->r->ops++;
		now = now_ns();
		wc_tick(c, now, 0);
	} while (wc_going(c, now));
}

/* Work for burst_us, sleep for sleep_us (a duty cycle); the wake-up overshoot is the
 * latency measure. */
static void run_bursty(struct wctx *c)
{
	uint64_t burst = or_default(c->g->burst_us, BURSTY_BURST_US) * 1000ull;
	uint64_t sleep = or_default(c->g->sleep_us, BURSTY_SLEEP_US) * 1000ull, now, x = 1;

	do {
		uint64_t end = now_ns() + burst, t0;
		struct timespec ts = { (time_t)(sleep / 1000000000ull), (long)(sleep % 1000000000ull) };

		while (now_ns() < end && wc_going(c, now_ns()))
			x = spin_steps(256, x);
		t0 = now_ns();
		c->prev_ns = t0;
		if (!wc_going(c, t0))
			break;
		nanosleep(&ts, NULL);
		now = now_ns();
		wc_lat(c->r, now - t0 > sleep ? now - t0 - sleep : 0);
		c->r->ops++;
		wc_tick(c, now, sleep);
	} while (wc_going(c, now));
}

/* ---------------------------------------------------------------- wakeup */

/* Paired futex ping-pong (ktstr's FutexPingPong): the pair shares the leader's fx word;
 * whoever holds the turn does `spin` steps, stamps the clock, hands the turn over and
 * wakes the partner, then waits for the turn to come back. The latency is the partner's
 * stamp to this worker running. */
static void run_futex(struct wctx *c)
{
	int leader = c->r->index % 2 == 0;
	struct wrec *pair = leader ? c->r : c->r - 1, *peer = leader ? c->r + 1 : c->r - 1;
	uint32_t me = leader ? 0 : 1, *turn = &pair->fx;
	uint64_t n = or_default(c->g->spin, FUTEX_SPIN), x = 1, now = now_ns();

	if (leader && (c->r->index + 1 >= c->g->count || peer->group != c->r->group)) {
		/* an unpaired worker: nobody to wake it, it just spins */
		while (wc_going(c, now = now_ns()))
			x = spin_steps(n, x), wc_tick(c, now, 0);
		return;
	}
	while (wc_going(c, now)) {
		uint32_t t = __atomic_load_n(turn, __ATOMIC_ACQUIRE);

		if (t != me) {
			futex_wait_ms(turn, t, WAIT_MS);
			now = now_ns();
			continue;
		}
		now = now_ns();
		if (peer->stamp_ns && now > peer->stamp_ns) {
			wc_lat(c->r, now - peer->stamp_ns);
			c->r->ops++; /* a wake-up received */
		}
		x = spin_steps(n, x);
		c->r->stamp_ns = now_ns();
		__atomic_store_n(turn, 1 - me, __ATOMIC_RELEASE);
		futex_wake_all(turn);
		now = now_ns();
		wc_tick(c, now, 0);
	}
	/* let a partner that waits for the turn see it and notice the end */
	__atomic_store_n(turn, 1 - me, __ATOMIC_RELEASE);
	futex_wake_all(turn);
}

/* 1:N fan-out (ktstr's FutexFanOut): the first worker of every fan_out+1 is the
 * messenger; it spins, stamps, advances the generation word and wakes all receivers,
 * then waits (bounded) until they all saw it. Receivers measure stamp-to-run latency and
 * count the wake-ups (ops); the messenger counts rounds (iterations). */
static void run_fanout(struct wctx *c)
{
	int n_out = (int)or_default(c->g->fan_out, FANOUT_N), pos = c->r->index % (n_out + 1);
	struct wrec *msgr = c->r - pos;
	uint64_t n = or_default(c->g->spin, FUTEX_SPIN), x = 1, now = now_ns();
	int receivers = 0;

	for (int i = 1; i <= n_out && c->r->index - pos + i < c->g->count; i++)
		receivers++;
	if (pos == 0) {
		while (wc_going(c, now)) {
			uint32_t acks;

			x = spin_steps(n, x);
			__atomic_store_n(&msgr->fx2, 0, __ATOMIC_RELEASE);
			msgr->stamp_ns = now_ns();
			__atomic_add_fetch(&msgr->fx, 1, __ATOMIC_RELEASE);
			futex_wake_all(&msgr->fx);
			while ((acks = __atomic_load_n(&msgr->fx2, __ATOMIC_ACQUIRE)) <
			       (uint32_t)receivers && wc_going(c, now_ns()))
				futex_wait_ms(&msgr->fx2, acks, WAIT_MS);
			now = now_ns();
			wc_tick(c, now, 0);
		}
		__atomic_add_fetch(&msgr->fx, 1, __ATOMIC_RELEASE);
		futex_wake_all(&msgr->fx);
		return;
	}
	/* 0, not the word's value now: the messenger may have started a round already,
	 * and it waits for this receiver's ack before the next one */
	uint32_t seen = 0;

	while (wc_going(c, now)) {
		uint32_t gen = __atomic_load_n(&msgr->fx, __ATOMIC_ACQUIRE);

		if (gen == seen) {
			futex_wait_ms(&msgr->fx, gen, WAIT_MS);
			now = now_ns();
			continue;
		}
		now = now_ns();
		seen = gen;
		if (now > msgr->stamp_ns)
			wc_lat(c->r, now - msgr->stamp_ns);
		c->r->ops++;
		if (__atomic_add_fetch(&msgr->fx2, 1, __ATOMIC_ACQ_REL) >= (uint32_t)receivers)
			futex_wake_all(&msgr->fx2);
		wc_tick(c, now, 0);
	}
}

/* N:1 (many wakers, one waiter, like clients of one server): the first worker of every
 * fan_out+1 waits on its generation word; each of the others spins, stamps the clock,
 * advances the word, wakes it and sleeps interval_us. The waiter counts the wake-ups it
 * saw (ops) and their stamp-to-run latency. */
static void run_fanin(struct wctx *c)
{
	int n_in = (int)or_default(c->g->fan_out, FANOUT_N), pos = c->r->index % (n_in + 1);
	struct wrec *waiter = c->r - pos;
	uint64_t n = or_default(c->g->spin, FUTEX_SPIN), x = 1, now = now_ns();
	uint64_t iv = or_default(c->g->interval_us, RT_INTERVAL_US) * 1000ull;

	if (pos == 0) {
		uint32_t seen = 0; /* the word starts at 0; wakers may be ahead already */

		while (wc_going(c, now)) {
			uint32_t gen = __atomic_load_n(&waiter->fx, __ATOMIC_ACQUIRE);

			if (gen == seen) {
				futex_wait_ms(&waiter->fx, gen, WAIT_MS);
				now = now_ns();
				continue;
			}
			now = now_ns();
			c->r->ops += gen - seen; /* wake-ups that arrived, maybe several at once */
			seen = gen;
			if (now > waiter->stamp_ns)
				wc_lat(c->r, now - waiter->stamp_ns);
			wc_tick(c, now, 0);
		}
		return;
	}
	while (wc_going(c, now)) {
		struct timespec ts = { (time_t)(iv / 1000000000ull), (long)(iv % 1000000000ull) };

		x = spin_steps(n, x);
		__atomic_store_n(&waiter->stamp_ns, now_ns(), __ATOMIC_RELEASE);
		__atomic_add_fetch(&waiter->fx, 1, __ATOMIC_RELEASE);
		futex(&waiter->fx, FUTEX_WAKE, 1, NULL);
		nanosleep(&ts, NULL);
		now = now_ns();
		wc_tick(c, now, iv);
	}
}

/* ---------------------------------------------------------------- churn */

/* fork, exec /init under EXEC_CHILD_NAME (it exits at once), wait: a full exec storm. */
static void run_forkexec(struct wctx *c)
{
	char *argv[] = { EXEC_CHILD_NAME, NULL }, *envp[] = { NULL };
	uint64_t now;

	do {
		pid_t pid = fork();

		if (pid == 0) {
			execve("/init", argv, envp);
			_exit(127);
		}
		if (pid > 0) {
			int st = 0;

			while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
				;
			if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
				c->r->ops++;
		} else {
			sleep_ms(1);
		}
		now = now_ns();
		wc_tick(c, now, 0);
	} while (wc_going(c, now));
}

static void *thread_noop(void *arg)
{
	return arg;
}

/* pthread_create + join of a thread that returns at once. */
static void run_thread(struct wctx *c)
{
	uint64_t now;

	do {
		pthread_t t;

		if (pthread_create(&t, NULL, thread_noop, NULL) == 0) {
			pthread_join(t, NULL);
			c->r->ops++;
		} else {
			sleep_ms(1);
		}
		now = now_ns();
		wc_tick(c, now, 0);
	} while (wc_going(c, now));
}

/* ---------------------------------------------------------------- RT */

/* A cyclictest-like thread: absolute-deadline sleeps every interval_us (under the
 * group's policy, SCHED_FIFO 10 unless it says otherwise); the lateness of each wake-up
 * is the latency measure. */
static void run_rt(struct wctx *c)
{
	uint64_t iv = or_default(c->g->interval_us, RT_INTERVAL_US) * 1000ull, next = now_ns(), now;

	do {
		struct timespec ts;

		next += iv;
		ts.tv_sec = (time_t)(next / 1000000000ull);
		ts.tv_nsec = (long)(next % 1000000000ull);
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
			;
		now = now_ns();
		wc_lat(c->r, now > next ? now - next : 0);
		c->r->ops++;
		c->prev_ns = now; /* the gap measure would only repeat the interval */
		wc_tick(c, now, 0);
		if (now > next + 100 * iv)
			next = now; /* far behind (a stall): do not burst to catch up */
	} while (wc_going(c, now));
}

/* ---------------------------------------------------------------- memory */

/* mmap a region without huge pages, write-touch every page (a fault each), zap it with
 * MADV_DONTNEED, repeat (ktstr's PageFaultChurn). ops = faults taken. */
static void run_pagefault(struct wctx *c)
{
	size_t len = (size_t)or_default(c->g->kib, PF_KIB) * 1024, page = (size_t)getpagesize();
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t now = now_ns();

	if (p == MAP_FAILED)
		return;
	madvise(p, len, MADV_NOHUGEPAGE);
	while (wc_going(c, now)) {
		for (size_t off = 0; off < len && wc_going(c, now_ns()); off += page) {
			p[off] = 1;
			c->r->ops++;
		}
		madvise(p, len, MADV_DONTNEED);
		now = now_ns();
		wc_tick(c, now, 0);
	}
	munmap(p, len);
}

static int numa_nodes(void)
{
	char buf[64];
	uint64_t mask[MAX_CPUS / 64] = { 0 };
	int n;

	if (read_small("/sys/devices/system/node/online", buf, sizeof(buf)) <= 0)
		return 1;
	n = cpulist_parse(buf, mask);
	return n > 0 ? n : 1;
}

/* memcpy between the two halves of a buffer bound to one NUMA node (mbind; the node is
 * the group's `node`, or spread by worker index), so workers on other nodes pull their
 * data across. bytes = bytes copied. */
static void run_membw(struct wctx *c)
{
	size_t len = (size_t)or_default(c->g->kib, MEMBW_KIB) * 1024, half = len / 2;
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int nodes = numa_nodes(), node = c->g->node >= 0 ? c->g->node : c->r->index % nodes;
	uint64_t now = now_ns();

	if (p == MAP_FAILED)
		return;
	if (node < 64) {
		unsigned long nodemask = 1ul << node;

		/* MPOL_BIND = 2; refused (no such node, no NUMA) = the default policy */
		if (syscall(SYS_mbind, p, len, 2, &nodemask, 64, 0) < 0)
			c->r->attr_errors++;
	}
	memset(p, 1, len);
	while (wc_going(c, now)) {
		memcpy(p + half, p, half);
		memcpy(p, p + half, half);
		c->r->bytes += 2 * half;
		c->r->ops++;
		now = now_ns();
		wc_tick(c, now, 0);
	}
	munmap(p, len);
}

/* ---------------------------------------------------------------- IRQ / IO */

/* A periodic timerfd (hrtimer interrupts); the lateness of each read past the expected
 * expiry is the latency, missed expiries count as ops too. */
static void run_timer(struct wctx *c)
{
	uint64_t iv = or_default(c->g->interval_us, TIMER_INTERVAL_US) * 1000ull, now, first;
	int fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
	struct itimerspec its;

	if (fd < 0)
		return;
	first = now_ns() + iv;
	its.it_value.tv_sec = (time_t)(first / 1000000000ull);
	its.it_value.tv_nsec = (long)(first % 1000000000ull);
	its.it_interval.tv_sec = (time_t)(iv / 1000000000ull);
	its.it_interval.tv_nsec = (long)(iv % 1000000000ull);
	if (timerfd_settime(fd, TFD_TIMER_ABSTIME, &its, NULL) < 0) {
		close(fd);
		return;
	}
	uint64_t expect = first;

	do {
		struct pollfd pf = { .fd = fd, .events = POLLIN };
		uint64_t n = 0;

		if (poll(&pf, 1, WAIT_MS) > 0 && read(fd, &n, sizeof(n)) == sizeof(n) && n) {
			now = now_ns();
			expect += (n - 1) * iv; /* the latest expiry this read covers */
			wc_lat(c->r, now > expect ? now - expect : 0);
			expect += iv;
			c->r->ops += n;
			c->prev_ns = now;
			wc_tick(c, now, 0);
		}
		now = now_ns();
	} while (wc_going(c, now));
	close(fd);
}

struct io_reader {
	int fd;
	uint64_t bytes;
};

static void *io_drain(void *arg)
{
	struct io_reader *rd = arg;
	static char buf[IO_CHUNK];
	ssize_t n;

	while ((n = read(rd->fd, buf, sizeof(buf))) > 0)
		rd->bytes += (uint64_t)n;
	return NULL;
}

/* A pipe I/O loop: the worker writes kib KiB per iteration into a pipe a second thread
 * drains (each full pipe blocks the writer and wakes the reader). bytes = bytes read. */
static void run_io(struct wctx *c)
{
	static char buf[IO_CHUNK];
	size_t per = (size_t)or_default(c->g->kib, IO_KIB) * 1024;
	struct io_reader rd = { -1, 0 };
	int fds[2];
	pthread_t t;
	uint64_t now = now_ns();

	if (pipe(fds) < 0)
		return;
	rd.fd = fds[0];
	if (pthread_create(&t, NULL, io_drain, &rd)) {
		close(fds[0]);
		close(fds[1]);
		return;
	}
	memset(buf, 'k', sizeof(buf));
	while (wc_going(c, now)) {
		for (size_t done = 0; done < per;) {
			size_t want = per - done < sizeof(buf) ? per - done : sizeof(buf);
			ssize_t w = write(fds[1], buf, want);

			if (w <= 0)
				break;
			done += (size_t)w;
		}
		c->r->ops++;
		now = now_ns();
		wc_tick(c, now, 0);
	}
	close(fds[1]);
	pthread_join(t, NULL);
	close(fds[0]);
	c->r->bytes = rd.bytes;
}

/* ---------------------------------------------------------------- bench */

/* Run the group's program with stdout and stderr into /tmp/ktstr-bench-<i>.out (the
 * agent sends it afterwards), in its own process group, killed with its whole group if
 * the run stops or its timeout passes. */
static void run_bench(struct wctx *c)
{
	char out[64], *envp[] = { "PATH=/usr/bin:/bin:/usr/sbin:/sbin", "HOME=/tmp", "TMPDIR=/tmp",
				  "LC_ALL=C", NULL };
	uint64_t t0 = now_ns(), limit = c->g->timeout_ms ? c->g->timeout_ms * 1000000ull : 0;
	int st = 0, killed = 0;
	pid_t pid;

	snprintf(out, sizeof(out), "/tmp/ktstr-bench-%d.out", c->wi);
	c->r->exit_status = -1;
	pid = fork();
	if (pid == 0) {
		int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);

		setpgid(0, 0);
		prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
		if (nul >= 0)
			dup2(nul, 0);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		chdir("/tmp");
		execve(c->g->argv[0], c->g->argv, envp);
		dprintf(2, "ktstr-init: cannot execute %s: %s\n", c->g->argv[0], strerror(errno));
		_exit(127);
	}
	if (pid < 0)
		return;
	setpgid(pid, pid);
	for (;;) {
		pid_t w = waitpid(pid, &st, WNOHANG);
		uint64_t now = now_ns();

		if (w == pid)
			break;
		if (w < 0 && errno != EINTR)
			break;
		if (!killed && (c->sh->stop || (limit && now - t0 > limit))) {
			kill(-pid, SIGTERM);
			killed = 1;
		} else if (killed && limit && now - t0 > limit + 2000000000ull) {
			kill(-pid, SIGKILL);
		}
		sleep_ms(10);
	}
	kill(-pid, SIGKILL); /* stragglers of its process group */
	if (WIFEXITED(st))
		c->r->exit_status = WEXITSTATUS(st);
	else if (WIFSIGNALED(st))
		c->r->exit_status = 128 + WTERMSIG(st);
	c->r->ops = c->r->exit_status == 0;
	c->r->iterations = 1;
	c->r->stamp_ns = now_ns() - t0; /* the program's own wall time */
}

void workfam_run(struct wctx *c)
{
	switch (c->r->kind) {
	case W_MIXED: run_mixed(c); break;
	case W_BURSTY: run_bursty(c); break;
	case W_FUTEX: run_futex(c); break;
	case W_FANOUT: run_fanout(c); break;
	case W_FANIN: run_fanin(c); break;
	case W_FORKEXEC: run_forkexec(c); break;
	case W_THREAD: run_thread(c); break;
	case W_RT: run_rt(c); break;
	case W_PAGEFAULT: run_pagefault(c); break;
	case W_MEMBW: run_membw(c); break;
	case W_TIMER: run_timer(c); break;
	case W_IO: run_io(c); break;
	case W_BENCH: run_bench(c); break;
	default: break;
	}
}
