/*
 * ktstr-init: PID 1 of a ktstr guest.
 *
 * main() below runs the phases of one run in order:
 *
 *   mount the file systems -> open the wire (COM2) -> read /ktstr/spec -> SysRdy
 *   -> arm probes -> start the scheduler and wait for sched_ext to be enabled
 *   -> run the workload -> stop the scheduler -> TestResult, Exit -> power off
 *
 * While any phase waits, pump() keeps the guest's streams moving: kernel messages
 * (/dev/kmsg -> Dmesg), the scheduler's output (-> SchedLog), children to reap, host
 * requests on the wire (SnapshotRequest -> SnapshotReply), and the watch for a scheduler
 * that dies or a sched_ext state that leaves "enabled" (-> SchedExit).
 *
 * Every wait has a deadline. Nothing here blocks without one; the host's watchdog is
 * the last line of defence. Messages and their payloads: docs/wire.md.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bpfprogs.h"
#include "json.h"
#include "shell.h"
#include "spec.h"
#include "sysinfo.h"
#include "trace.h"
#include "tracefs.h"
#include "util.h"
#include "wire.h"
#include "workload.h"
#include "workfam.h"

#define SPEC_PATH "/ktstr/spec"
#define WIRE_PATH "/dev/ttyS1"
#define SCX_STATE "/sys/kernel/sched_ext/state"
#define SCX_OPS "/sys/kernel/sched_ext/root/ops"
#define TICK_MS 50           /* the longest pump() sleeps before looking around again */
#define STATE_POLL_MS 100    /* how often the sched_ext state is read */
#define WORKLOAD_GRACE_MS 10000
#define KILL_GRACE_MS 2000
#define LINE_MAX_BYTES 4096

enum exit_code { EXIT_OK = 0, EXIT_SCHED_FAILED = 1, EXIT_BAD_SPEC = 2, EXIT_AGENT_ERROR = 3 };

struct linebuf {
	int fd;
	uint16_t flags; /* FLAG_STDERR for the scheduler's stderr */
	size_t len;
	char buf[LINE_MAX_BYTES];
};

/* Everything the phases share. One run per boot, so one instance. */
static struct {
	struct spec spec;
	char *spec_text;
	int kmsg_fd;
	char last_scx_kmsg[1024];  /* the last kernel line with "sched_ext:" */
	char scx_exit_kmsg[2048];  /* from its "disabled (reason)" line on: the kernel's words */
	uint64_t scx_disabled_ms;  /* when that line arrived */
	uint64_t scx_gone_ms;      /* when we first saw the scheduler gone or scx not enabled */

	pid_t sched_pid;
	int sched_exited;        /* reaped */
	int sched_status;        /* wait status once reaped */
	struct linebuf out, err;
	int watching;            /* between scx_enabled and the agent stopping it */
	int sched_exit_sent;
	char scx_state[64];
	uint64_t state_read_ms;

	struct workload wl;
	int wl_started;

	uint64_t pump_max_gap_ms; /* the longest time between two looks around in pump() */

	int exit_code;
	char exit_reason[256];
	char notes[8][256];
	int nnotes;
} run = { .kmsg_fd = -1, .sched_pid = -1, .out.fd = -1, .err.fd = -1 };

static void add_note(const char *fmt, const char *arg)
{
	if (run.nnotes < 8)
		snprintf(run.notes[run.nnotes++], sizeof(run.notes[0]), fmt, arg);
}

static void fail(enum exit_code code, const char *reason)
{
	if (run.exit_code == EXIT_OK) {
		run.exit_code = code;
		snprintf(run.exit_reason, sizeof(run.exit_reason), "%s", reason);
	}
}

/* ---------------------------------------------------------------- messages */

static void send_json(uint16_t type, struct jbuf *j)
{
	if (j->oom)
		warn("out of memory building message type %u", type);
	else
		wire_send(type, 0, j->s, j->len);
	jb_free(j);
}

static void lifecycle(const char *phase, pid_t pid, const char *ops, const char *detail)
{
	struct jbuf j;

	jb_init(&j);
	jb_open(&j, '{');
	jb_kstr(&j, "phase", phase);
	jb_ku64(&j, "t_ms", now_ms());
	if (pid > 0)
		jb_ku64(&j, "pid", (uint64_t)pid);
	if (ops)
		jb_kstr(&j, "ops", ops);
	if (detail)
		jb_kstr(&j, "detail", detail);
	jb_close(&j, '}');
	note("lifecycle %s%s%s", phase, detail ? ": " : "", detail ? detail : "");
	send_json(MSG_LIFECYCLE, &j);
}

static void scenario(uint16_t type)
{
	struct jbuf j;

	jb_init(&j);
	jb_open(&j, '{');
	jb_kstr(&j, "name", run.spec.name);
	jb_ku64(&j, "t_ms", now_ms());
	jb_close(&j, '}');
	send_json(type, &j);
}

static void status_json(struct jbuf *j, int status)
{
	if (WIFEXITED(status))
		jb_ku64(j, "code", (uint64_t)WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		jb_ku64(j, "signal", (uint64_t)WTERMSIG(status));
}

/* ---------------------------------------------------------------- phase: mounts */

static void mount_fs(const char *src, const char *dir, const char *type, const char *opts)
{
	mkdir(dir, 0755);
	if (mount(src, dir, type, MS_NOSUID, opts) < 0 && errno != EBUSY)
		fprintf(stderr, "ktstr-init: mount %s on %s: %s\n", type, dir, strerror(errno));
}

static void phase_mount(void)
{
	mount_fs("proc", "/proc", "proc", NULL);
	mount_fs("sysfs", "/sys", "sysfs", NULL);
	mount_fs("devtmpfs", "/dev", "devtmpfs", "mode=0755");
	/* The kernel may have started us without stdio: give 0-2 the console. */
	for (int fd = 0; fd < 3; fd++) {
		if (fcntl(fd, F_GETFD) < 0) {
			int c = open("/dev/console", O_RDWR | O_NOCTTY);

			if (c >= 0 && c != fd) {
				dup2(c, fd);
				close(c);
			}
		}
	}
	setvbuf(stderr, NULL, _IOLBF, 0);
	mount_fs("cgroup2", "/sys/fs/cgroup", "cgroup2", NULL);
	mount_fs("debugfs", "/sys/kernel/debug", "debugfs", NULL);
	mount_fs("tracefs", TRACEFS, "tracefs", NULL);
	mount_fs("tmpfs", "/tmp", "tmpfs", "mode=1777");
	mount_fs("tmpfs", "/run", "tmpfs", "mode=0755");
}

/* ---------------------------------------------------------------- the wire's device */

/* COM2 unless the engine put `ktstr.wire=/dev/NAME` on the kernel command line (a
 * virtio-serial port, say). The kernel ignores the parameter; /proc/cmdline keeps it. */
static const char *wire_path(void)
{
	static char path[64];
	char cmdline[4096], *p;

	if (path[0])
		return path;
	snprintf(path, sizeof(path), "%s", WIRE_PATH);
	if (read_small("/proc/cmdline", cmdline, sizeof(cmdline)) <= 0)
		return path;
	for (p = strstr(cmdline, "ktstr.wire="); p; p = strstr(p + 1, "ktstr.wire=")) {
		if (p != cmdline && p[-1] != ' ')
			continue;
		p += strlen("ktstr.wire=");
		size_t n = strcspn(p, " \n");

		if (n > 5 && n < sizeof(path) && !strncmp(p, "/dev/", 5) && !memmem(p, n, "..", 2))
			snprintf(path, sizeof(path), "%.*s", (int)n, p);
		break;
	}
	return path;
}

/* ---------------------------------------------------------------- phase: spec */

static int phase_spec(void)
{
	size_t len;
	char err[256];

	run.spec_text = read_all(SPEC_PATH, 1 << 20, &len);
	if (!run.spec_text) {
		snprintf(err, sizeof(err), "cannot read %s: %s", SPEC_PATH, strerror(errno));
	} else if (spec_parse(run.spec_text, &run.spec, err, sizeof(err)) == 0) {
		return 0;
	}
	fprintf(stderr, "ktstr-init: %s\n", err);
	wire_send_str(MSG_CRASH, err);
	fail(EXIT_BAD_SPEC, err);
	return -1;
}

/* ---------------------------------------------------------------- the pump */

static void kmsg_drain(void)
{
	char rec[8192];

	for (;;) {
		ssize_t n = read(run.kmsg_fd, rec, sizeof(rec) - 1);

		if (n < 0 && errno == EPIPE)
			continue; /* records overwritten before we read them */
		if (n <= 0)
			return;
		while (n > 0 && rec[n - 1] == '\n')
			n--;
		rec[n] = '\0';
		wire_send(MSG_DMESG, 0, rec, (size_t)n);
		char *msg = strchr(rec, ';');
		if (msg && strstr(msg, "sched_ext:")) {
			size_t l = strcspn(msg + 1, "\n"), used = strlen(run.scx_exit_kmsg);

			snprintf(run.last_scx_kmsg, sizeof(run.last_scx_kmsg), "%.*s", (int)l, msg + 1);
			if (strstr(run.last_scx_kmsg, "disabled (")) {
				run.scx_disabled_ms = now_ms();
				used = 0;
			}
			if (run.scx_disabled_ms && used + l + 2 < sizeof(run.scx_exit_kmsg))
				snprintf(run.scx_exit_kmsg + used, sizeof(run.scx_exit_kmsg) - used, "%s%s",
					 used ? "\n" : "", run.last_scx_kmsg);
		}
	}
}

/* Forward whole lines of the scheduler's output; close the stream at EOF. */
static void lines_drain(struct linebuf *lb)
{
	for (;;) {
		ssize_t n = read(lb->fd, lb->buf + lb->len, sizeof(lb->buf) - lb->len);
		size_t start = 0;

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0 || errno != EAGAIN) { /* EOF: flush the last partial line */
				if (lb->len)
					wire_send(MSG_SCHED_LOG, lb->flags, lb->buf, lb->len);
				lb->len = 0;
				close(lb->fd);
				lb->fd = -1;
			}
			return;
		}
		lb->len += (size_t)n;
		for (size_t i = 0; i < lb->len; i++) {
			if (lb->buf[i] == '\n') {
				wire_send(MSG_SCHED_LOG, lb->flags, lb->buf + start, i - start);
				start = i + 1;
			}
		}
		if (start == 0 && lb->len == sizeof(lb->buf)) { /* an overlong line: cut it */
			wire_send(MSG_SCHED_LOG, lb->flags, lb->buf, lb->len);
			start = lb->len;
		}
		memmove(lb->buf, lb->buf + start, lb->len - start);
		lb->len -= start;
	}
}

static void reap_children(void)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (pid == run.sched_pid) {
			run.sched_exited = 1;
			run.sched_status = status;
		} else if (shell_reaped(pid, status)) {
			continue;
		} else if (run.wl_started) {
			workload_reaped(&run.wl, pid);
		}
		/* anything else is an orphan re-parented to us: reaped, nothing to do */
	}
}

static const char *scx_state(void)
{
	if (now_ms() - run.state_read_ms >= STATE_POLL_MS || !run.scx_state[0]) {
		if (read_small(SCX_STATE, run.scx_state, sizeof(run.scx_state)) < 0)
			snprintf(run.scx_state, sizeof(run.scx_state), "unknown");
		run.state_read_ms = now_ms();
	}
	return run.scx_state;
}

#define KERNEL_WORDS_WAIT_MS 2000 /* for the kernel's "disabled (reason)" line */
#define KERNEL_WORDS_TAIL_MS 200  /* for the error lines that follow it */

/* A scheduler that died or a sched_ext that left "enabled" while we were watching:
 * SchedExit, once, with the kernel's words (they follow the state change by a moment,
 * so the report waits for them, boundedly). */
static void watch_scheduler(void)
{
	const char *state, *reason;
	uint64_t now = now_ms();
	struct jbuf j;

	if (!run.watching || run.sched_exit_sent)
		return;
	state = scx_state();
	if (!run.sched_exited && !strcmp(state, "enabled"))
		return;
	if (!run.scx_gone_ms)
		run.scx_gone_ms = now;
	kmsg_drain();
	if (!(run.scx_disabled_ms && now - run.scx_disabled_ms >= KERNEL_WORDS_TAIL_MS) &&
	    now - run.scx_gone_ms < KERNEL_WORDS_WAIT_MS)
		return;
	run.state_read_ms = 0; /* report the state as it is now */
	state = scx_state();
	reason = run.sched_exited ? "process_exited" : "scx_disabled";
	run.sched_exit_sent = 1;
	run.watching = 0;
	jb_init(&j);
	jb_open(&j, '{');
	jb_kstr(&j, "reason", reason);
	jb_kstr(&j, "state", state);
	if (run.sched_exited)
		status_json(&j, run.sched_status);
	jb_kstr(&j, "kmsg", run.scx_exit_kmsg[0] ? run.scx_exit_kmsg : run.last_scx_kmsg);
	jb_ku64(&j, "t_ms", now_ms());
	jb_close(&j, '}');
	warn("scheduler failed: %s (state %s) %s", reason, state, run.last_scx_kmsg);
	send_json(MSG_SCHED_EXIT, &j);
	{
		char news[200];

		snprintf(news, sizeof(news), "the scheduler failed (%s, sched_ext %s): %.120s", reason,
			 state, run.last_scx_kmsg);
		shell_tell_all(news);
	}
	fail(EXIT_SCHED_FAILED, "the scheduler failed during the run");
	if (run.wl_started)
		workload_stop(&run.wl);
}

static void serve_wire(void)
{
	uint16_t type;
	const char *payload;
	size_t len;

	while (wire_poll_in(&type, &payload, &len)) {
		if (type == MSG_SNAPSHOT_REQUEST)
			tracefs_snapshot(payload);
		else
			warn("ignoring host message type %u (%zu bytes)", type, len);
	}
}

/* Keep everything moving until done() says so or the deadline (ms, monotonic) passes.
 * Returns 1 if done() became true, 0 on the deadline. */
static int pump(uint64_t deadline_ms, int (*done)(void))
{
	uint64_t last = 0;

	for (;;) {
		struct pollfd fds[4 + SHELL_POLLFDS];
		int n = 0, shell_at, shell_n;
		uint64_t now;

		now = now_ms();
		if (last && now - last > run.pump_max_gap_ms)
			run.pump_max_gap_ms = now - last;
		last = now;
		reap_children();
		watch_scheduler();
		if (done && done())
			return 1;
		now = now_ms();
		if (now >= deadline_ms)
			return 0;
		if (wire_fd() >= 0)
			fds[n++] = (struct pollfd){ .fd = wire_fd(), .events = POLLIN };
		if (run.kmsg_fd >= 0)
			fds[n++] = (struct pollfd){ .fd = run.kmsg_fd, .events = POLLIN };
		if (run.out.fd >= 0)
			fds[n++] = (struct pollfd){ .fd = run.out.fd, .events = POLLIN };
		if (run.err.fd >= 0)
			fds[n++] = (struct pollfd){ .fd = run.err.fd, .events = POLLIN };
		shell_at = n;
		shell_n = shell_pollfds(fds + n);
		n += shell_n;
		uint64_t wait = deadline_ms - now < TICK_MS ? deadline_ms - now : TICK_MS;
		poll(fds, (nfds_t)n, (int)wait);
		if (run.kmsg_fd >= 0)
			kmsg_drain();
		if (run.out.fd >= 0)
			lines_drain(&run.out);
		if (run.err.fd >= 0)
			lines_drain(&run.err);
		serve_wire();
		trace_pump();
		shell_service(fds + shell_at, shell_n);
	}
}

/* ---------------------------------------------------------------- phase: SysRdy */

static void phase_sysrdy(void)
{
	struct jbuf j;

	run.kmsg_fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (run.kmsg_fd < 0)
		warn("cannot open /dev/kmsg: %s; no Dmesg frames", strerror(errno));
	jb_init(&j);
	sysinfo_json(&run.spec, &j);
	send_json(MSG_SYS_RDY, &j);
}

/* Wire throughput test: `wire_selftest_kib` KiB of RawPayloadOutput in 4 KiB frames. */
static void phase_wire_selftest(void)
{
	static char chunk[4096];
	uint64_t t0 = now_ms();

	if (!run.spec.wire_selftest_kib)
		return;
	memset(chunk, 'w', sizeof(chunk));
	for (uint64_t i = 0; i < run.spec.wire_selftest_kib / 4; i++)
		wire_send(MSG_RAW_PAYLOAD_OUTPUT, 0, chunk, sizeof(chunk));
	note("wire selftest: %llu KiB in %llu ms", (unsigned long long)run.spec.wire_selftest_kib,
	     (unsigned long long)(now_ms() - t0));
}

/* ---------------------------------------------------------------- phase: scheduler */

static int sched_gone(void)
{
	return run.sched_exited;
}

static int sched_exit_sent(void)
{
	return run.sched_exit_sent;
}

static int scx_enabled_or_sched_gone(void)
{
	return run.sched_exited || !strcmp(scx_state(), "enabled");
}

static int start_scheduler(void)
{
	int out[2], err[2];
	pid_t pid;

	if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) {
		warn("pipe: %s", strerror(errno));
		return -1;
	}
	pid = fork();
	if (pid == 0) {
		static char *envp[] = { "PATH=/bin:/sbin:/usr/bin:/usr/sbin", "HOME=/", "TERM=dumb",
					NULL };
		struct rlimit inf = { RLIM_INFINITY, RLIM_INFINITY };

		setrlimit(RLIMIT_MEMLOCK, &inf);
		dup2(out[1], 1);
		dup2(err[1], 2);
		execve(run.spec.scheduler, run.spec.args, envp);
		dprintf(2, "ktstr-init: cannot execute %s: %s\n", run.spec.scheduler, strerror(errno));
		_exit(127);
	}
	close(out[1]);
	close(err[1]);
	if (pid < 0) {
		close(out[0]);
		close(err[0]);
		warn("fork: %s", strerror(errno));
		return -1;
	}
	run.sched_pid = pid;
	run.out = (struct linebuf){ .fd = out[0] };
	run.err = (struct linebuf){ .fd = err[0], .flags = FLAG_STDERR };
	fcntl(out[0], F_SETFL, O_NONBLOCK);
	fcntl(err[0], F_SETFL, O_NONBLOCK);
	return 0;
}

/* 0 once sched_ext is enabled with our scheduler; -1 if it never got there. */
static int phase_scheduler(void)
{
	char ops[128], detail[256];

	if (!run.spec.scheduler[0]) {
		lifecycle("baseline", 0, NULL, "no scheduler: the workload runs under the default class");
		add_note("%s", "baseline: no scheduler");
		return 0;
	}
	if (start_scheduler()) {
		fail(EXIT_AGENT_ERROR, "cannot start the scheduler");
		return -1;
	}
	lifecycle("sched_started", run.sched_pid, NULL, run.spec.scheduler);
	pump(now_ms() + run.spec.enable_timeout_ms, scx_enabled_or_sched_gone);
	if (!run.sched_exited && !strcmp(scx_state(), "enabled")) {
		if (read_small(SCX_OPS, ops, sizeof(ops)) < 0)
			ops[0] = '\0';
		lifecycle("scx_enabled", run.sched_pid, ops, NULL);
		report_bpf_progs("scx_enabled");
		run.watching = 1;
		return 0;
	}
	if (run.sched_exited) {
		run.watching = 1; /* let watch_scheduler() report it with the kernel's words */
		pump(now_ms() + KERNEL_WORDS_WAIT_MS + TICK_MS, sched_exit_sent);
	} else {
		snprintf(detail, sizeof(detail), "state '%s' after %llu ms", scx_state(),
			 (unsigned long long)run.spec.enable_timeout_ms);
		lifecycle("sched_enable_timeout", run.sched_pid, NULL, detail);
	}
	fail(EXIT_SCHED_FAILED, "the scheduler did not enable sched_ext");
	add_note("%s", "no workload: the scheduler did not enable sched_ext");
	return -1;
}

static void stop_scheduler(void)
{
	const char *how = "exited";
	struct jbuf j;

	if (run.sched_pid <= 0)
		return;
	run.watching = 0;
	if (!run.sched_exited && strcmp(scx_state(), "enabled")) {
		/* sched_ext already left: the loader is printing its dump and exiting. */
		pump(now_ms() + run.spec.stop_timeout_ms, sched_gone);
	}
	if (!run.sched_exited) {
		how = "sigint";
		kill(run.sched_pid, SIGINT);
		if (!pump(now_ms() + run.spec.stop_timeout_ms, sched_gone)) {
			how = "sigkill";
			kill(run.sched_pid, SIGKILL);
			pump(now_ms() + KILL_GRACE_MS, sched_gone);
		}
	}
	/* Its last words: read the pipes to EOF (bounded). */
	for (uint64_t end = now_ms() + 1000; (run.out.fd >= 0 || run.err.fd >= 0) && now_ms() < end;)
		pump(now_ms() + TICK_MS, NULL);
	lifecycle("sched_stopped", run.sched_pid, NULL, how);
	jb_init(&j);
	jb_open(&j, '{');
	jb_ku64(&j, "pid", (uint64_t)run.sched_pid);
	if (run.sched_exited)
		status_json(&j, run.sched_status);
	jb_kstr(&j, "how", run.sched_exited ? how : "lost");
	jb_ku64(&j, "t_ms", now_ms());
	jb_close(&j, '}');
	send_json(MSG_EXEC_EXIT, &j);
}

/* ---------------------------------------------------------------- phase: workload */

static int workers_done(void)
{
	return !workload_running(&run.wl);
}

/* `ktstr shell`: the run goes on until its primary shell ends, or for shell_hold_ms. */
static void hold_for_shell(void)
{
	char why[160];

	if (!shell_available()) {
		add_note("%s", "no shell channel: the run did not wait for a shell");
		return;
	}
	lifecycle("shell_hold", 0, NULL, NULL);
	if (!pump(now_ms() + run.spec.shell_hold_ms, shell_primary_done)) {
		snprintf(why, sizeof(why), "the run's time is up after %llu s; the shell ends with it",
			 (unsigned long long)(run.spec.shell_hold_ms / 1000));
		add_note("%s", why);
		shell_shutdown(why);
	}
	lifecycle("shell_released", 0, NULL, shell_primary_done() ? "the shell exited" : "time is up");
	workload_stop(&run.wl);
}

static void phase_workload(void)
{
	char err[256];
	int vcpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
	uint64_t deadline;

	scenario(MSG_SCENARIO_START);
	if (run.spec.shell_hold_ms && !run.spec.ngroups) {
		add_note("%s", "a shell without a workload: no workers ran");
	} else {
		if (workload_start(&run.wl, &run.spec, vcpus, err, sizeof(err))) {
			warn("workload: %s", err);
			fail(EXIT_AGENT_ERROR, err);
			add_note("workload failed to start: %s", err);
		}
		run.wl_started = 1;
	}
	lifecycle("workload_started", 0, NULL, run.wl_started ? NULL : "no workers (a shell)");
	shell_ready();
	if (run.spec.shell_hold_ms)
		hold_for_shell();
	deadline = now_ms() + workload_span_ms(&run.spec) + WORKLOAD_GRACE_MS;
	if (!pump(deadline, workers_done)) {
		warn("workers overran their deadline by %d ms: killing them", WORKLOAD_GRACE_MS);
		workload_kill(&run.wl);
		pump(now_ms() + KILL_GRACE_MS, workers_done);
		add_note("%s", "some workers overran their deadline and were killed");
	}
	lifecycle("workload_done", 0, NULL, run.sched_exit_sent ? "stopped early" : NULL);
	workload_send_benches(&run.wl);
	if (run.sched_exit_sent) {
		const char *why = run.scx_exit_kmsg[0] ? run.scx_exit_kmsg : run.last_scx_kmsg;
		char first[200];

		snprintf(first, sizeof(first), "%.*s", (int)strcspn(why, "\n"), why);
		add_note("stopped early: %s", first[0] ? first : "the scheduler failed");
	}
	scenario(MSG_SCENARIO_END);
}

/* ---------------------------------------------------------------- phase: result */

static void phase_result(void)
{
	struct jbuf j;
	uint64_t dur = run.wl.ended_ns > run.wl.started_ns ? run.wl.ended_ns - run.wl.started_ns : 0;

	jb_init(&j);
	jb_open(&j, '{');
	jb_kstr(&j, "scheduler", run.spec.scheduler);
	jb_ku64(&j, "duration_ms", dur / 1000000ull);
	if (run.wl_started) {
		workload_json(&run.wl, &j);
	} else {
		jb_key(&j, "workers");
		jb_open(&j, '[');
		jb_close(&j, ']');
	}
	jb_key(&j, "notes");
	jb_open(&j, '[');
	for (int i = 0; i < run.nnotes; i++)
		jb_str(&j, run.notes[i]);
	jb_close(&j, ']');
	jb_close(&j, '}');
	send_json(MSG_TEST_RESULT, &j);
}

static void send_exit(void)
{
	struct jbuf j;

	jb_init(&j);
	jb_open(&j, '{');
	jb_ku64(&j, "code", (uint64_t)run.exit_code);
	jb_kstr(&j, "reason", run.exit_code ? run.exit_reason : "ok");
	jb_close(&j, '}');
	note("done: exit %d (%s), %llu wire bytes, %lu frames dropped, longest agent stall %llu ms",
	     run.exit_code, run.exit_code ? run.exit_reason : "ok", wire_bytes_sent(), wire_dropped(),
	     (unsigned long long)run.pump_max_gap_ms);
	send_json(MSG_EXIT, &j);
}

/* ---------------------------------------------------------------- phase: power off */

static void power_off(void)
{
	/* Let the UART drain what is queued (the host reads until Exit), for a while. */
	for (uint64_t end = now_ms() + 2000; wire_fd() >= 0 && now_ms() < end; sleep_ms(10)) {
		int queued = 0;

		if (ioctl(wire_fd(), TIOCOUTQ, &queued) < 0 || queued == 0)
			break;
	}
	sync();
	reboot(RB_POWER_OFF);
	/* Not reached unless poweroff failed: exiting PID 1 panics, and panic=-1 resets. */
	fprintf(stderr, "ktstr-init: poweroff failed: %s\n", strerror(errno));
	_exit(1);
}

/* The agent runs SCHED_FIFO so that a busy or broken scheduler under test cannot starve
 * the streams and the watch; RESET_ON_FORK gives the scheduler and the workers the
 * normal class. The agent sleeps in poll() nearly all the time. */
static void agent_priority(void)
{
	struct sched_param sp = { .sched_priority = 1 };

	if (sched_setscheduler(0, SCHED_FIFO | SCHED_RESET_ON_FORK, &sp) < 0)
		fprintf(stderr, "ktstr-init: cannot run SCHED_FIFO: %s\n", strerror(errno));
}

int main(int argc, char **argv)
{
	int rc;

	if (argc > 0 && !strcmp(argv[0], EXEC_CHILD_NAME))
		return 0; /* the forkexec workload's child: exec, exit */
	phase_mount();
	agent_priority();
	rc = wire_open(wire_path());
	if (rc)
		fprintf(stderr, "ktstr-init: cannot open %s: %s; the host will see nothing\n",
			wire_path(), strerror(-rc));
	if (phase_spec() == 0) {
		shell_init(run.spec.shell_hold_ms != 0);
		phase_sysrdy();
		phase_wire_selftest();
		tracefs_arm_probes(&run.spec);
		trace_start(&run.spec);
		if (phase_scheduler() == 0)
			phase_workload();
		stop_scheduler();
		trace_stop();
		tracefs_send_probe_output(&run.spec);
		phase_result();
		/* the last kernel messages (the scheduler's exit) */
		if (run.kmsg_fd >= 0)
			kmsg_drain();
	}
	{
		char why[300];

		snprintf(why, sizeof(why), "the run is over (%s); the shell is closed",
			 run.exit_code ? run.exit_reason : "ok");
		shell_shutdown(why);
	}
	send_exit();
	power_off();
	return 0;
}
