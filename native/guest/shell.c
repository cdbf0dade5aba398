/* Shells in the guest: sessions on ptys (or pipes) bridged to the shell port. See shell.h
 * for the frames and docs/shell.md for the whole picture. */
#define _GNU_SOURCE
#include "shell.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "util.h"
#include "wire.h"

#define SHELL_BIN "/bin/sh"
#define SHELL_RC "/etc/ktstr/shrc"
#define OUT_CAP (256 * 1024)     /* frames queued for the host */
#define OUT_ROOM (16 * 1024)     /* read session output only while this much is free */
#define READ_CHUNK 4096
#define IN_CAP 65536             /* a session's input not yet taken by its shell */
#define PORT_IN_CAP (64 * 1024)
#define HOST_FRAME_MAX 16384
#define HANGUP_KILL_MS 2000      /* SIGKILL a session this long after SIGHUP */
#define SHUTDOWN_FLUSH_MS 1000
#define EXIT_GRACE_MS 1000       /* after its shell exits, a session's last output */
#define HUP_RETRY_MS 1000        /* a port whose host side is gone is polled this often */
#define PENDING_MAX 4

struct session {
	uint32_t sid;
	pid_t pid;          /* 0: free slot */
	int tty;
	int primary;
	int in_fd, out_fd, err_fd; /* pty: in_fd == out_fd == master; -1 when closed */
	int exited, status;
	uint64_t exited_ms;
	int eof;            /* host input ended: close stdin (pipes) once `in` is written */
	uint64_t hup_ms;    /* when we hung it up (0: not) */
	char why[128];      /* why it ended, when we ended it */
	unsigned char in[IN_CAP];
	size_t inlen;
};

struct pending_open { /* a primary ShellOpen waiting for shell_ready() */
	int used;
	unsigned char payload[96];
	size_t len;
};

static struct {
	int fd;
	uint64_t port_hup_ms; /* the host side of the port was gone at this time */
	int hold;
	int ready;
	int primary_opened, primary_done;
	struct session s[SHELL_MAX];
	struct pending_open pending[PENDING_MAX];
	unsigned char out[OUT_CAP];
	size_t outlen;
	unsigned char inbuf[PORT_IN_CAP];
	size_t inlen;
	unsigned long dropped;
} sh = { .fd = -1 };

static void put_le(unsigned char *p, uint64_t v, int bytes)
{
	for (int i = 0; i < bytes; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_le(const unsigned char *p, int bytes)
{
	uint32_t v = 0;

	for (int i = 0; i < bytes; i++)
		v |= (uint32_t)p[i] << (8 * i);
	return v;
}

/* ------------------------------------------------------------------ to the host */

/* Queue one frame: sid, then `a` and `b` (either may be empty). -1 if it does not fit. */
static int queue(uint16_t type, uint16_t flags, uint32_t sid, const void *a, size_t alen,
		 const void *b, size_t blen)
{
	size_t len = 4 + alen + blen;
	unsigned char *p = sh.out + sh.outlen;

	if (sh.fd < 0)
		return -1;
	if (sh.outlen + WIRE_HEADER + len > OUT_CAP) {
		sh.dropped++;
		return -1;
	}
	put_le(p + WIRE_HEADER, sid, 4);
	if (alen)
		memcpy(p + WIRE_HEADER + 4, a, alen);
	if (blen)
		memcpy(p + WIRE_HEADER + 4 + alen, b, blen);
	put_le(p, WIRE_MAGIC, 4);
	put_le(p + 4, type, 2);
	put_le(p + 6, flags, 2);
	put_le(p + 8, len, 4);
	put_le(p + 12, crc32(p + WIRE_HEADER, len), 4);
	sh.outlen += WIRE_HEADER + len;
	return 0;
}

static void flush_out(void)
{
	size_t done = 0;

	while (done < sh.outlen) {
		ssize_t n = write(sh.fd, sh.out + done, sh.outlen - done);

		if (n <= 0) {
			if (n < 0 && errno == EINTR)
				continue;
			break; /* EAGAIN: the host has not read yet; the rest goes later */
		}
		done += (size_t)n;
	}
	memmove(sh.out, sh.out + done, sh.outlen - done);
	sh.outlen -= done;
}

static void opened(uint32_t sid, pid_t pid, const char *why)
{
	unsigned char p[4];

	put_le(p, (uint64_t)(pid > 0 ? pid : 0), 4);
	queue(MSG_SHELL_OPENED, 0, sid, p, 4, why, why ? strlen(why) : 0);
}

static void tell(struct session *s, const char *text)
{
	char line[512];
	int n = snprintf(line, sizeof(line), "%sktstr: %s\r\n", s->tty ? "\r\n" : "", text);

	if (n > (int)sizeof(line) - 1)
		n = (int)sizeof(line) - 1;
	/* without a pty the words go to stderr, so a script's stdout stays its own */
	queue(MSG_SHELL_DATA, s->tty ? 0 : FLAG_STDERR, s->sid, line, (size_t)n, NULL, 0);
}

/* ------------------------------------------------------------------ sessions */

static struct session *find(uint32_t sid)
{
	for (int i = 0; i < SHELL_MAX; i++)
		if (sh.s[i].pid && sh.s[i].sid == sid)
			return &sh.s[i];
	return NULL;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void close_io(struct session *s)
{
	if (s->in_fd == s->out_fd)
		s->in_fd = -1;
	close_fd(&s->in_fd);
	close_fd(&s->out_fd);
	close_fd(&s->err_fd);
}

static void hang_up(struct session *s, const char *why)
{
	if (why && !s->why[0])
		snprintf(s->why, sizeof(s->why), "%s", why);
	if (!s->hup_ms) {
		s->hup_ms = now_ms() ? now_ms() : 1;
		if (!s->exited) {
			kill(-s->pid, SIGHUP);
			kill(-s->pid, SIGCONT);
		}
	}
}

static void child_exec(int tty, const char *term)
{
	char term_env[96];
	char *envp[] = { "PATH=/usr/local/bin:/bin:/sbin:/usr/bin:/usr/sbin", "HOME=/",
			 "SHELL=" SHELL_BIN, "ENV=" SHELL_RC, term_env, NULL };
	char *argv_tty[] = { "sh", "-i", NULL }, *argv_pipe[] = { "sh", "-s", NULL };
	struct rlimit inf = { RLIM_INFINITY, RLIM_INFINITY };
	sigset_t none;

	snprintf(term_env, sizeof(term_env), "TERM=%s", term[0] ? term : (tty ? "vt100" : "dumb"));
	for (int sig = 1; sig < NSIG; sig++)
		signal(sig, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	setrlimit(RLIMIT_MEMLOCK, &inf); /* bpftool map dumps */
	if (chdir("/") < 0)
		_exit(126);
	execve(SHELL_BIN, tty ? argv_tty : argv_pipe, envp);
	dprintf(2, "ktstr: cannot run %s in the guest: %s\r\n", SHELL_BIN, strerror(errno));
	_exit(127);
}

/* The pty pair: the master (ours) and the peer's fd for the child. 0 or -errno. */
static int open_pty(int *master, int *peer, uint16_t rows, uint16_t cols)
{
	struct winsize ws = { .ws_row = rows ? rows : 24, .ws_col = cols ? cols : 80 };
	int unlock = 0, m, p;

	m = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (m < 0)
		return -errno;
	if (ioctl(m, TIOCSPTLCK, &unlock) < 0) {
		int e = errno;

		close(m);
		return -e;
	}
	p = ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY);
	if (p < 0) {
		int e = errno;

		close(m);
		return -e;
	}
	ioctl(m, TIOCSWINSZ, &ws);
	*master = m;
	*peer = p;
	return 0;
}

static void do_open(uint32_t sid, const unsigned char *p, size_t len)
{
	uint16_t rows = (uint16_t)get_le(p, 2), cols = (uint16_t)get_le(p + 2, 2);
	int flags = p[4], tty = flags & 1;
	char term[64] = "", why[160];
	struct session *s = NULL;
	int fds[6] = { -1, -1, -1, -1, -1, -1 };
	pid_t pid;

	for (size_t i = 5, k = 0; i < len && k < sizeof(term) - 1; i++) {
		unsigned char c = p[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_' || c == '.' || c == '+'))
			break;
		term[k++] = (char)c;
		term[k] = '\0';
	}
	if (find(sid)) {
		opened(sid, 0, "a session with this id is already open");
		return;
	}
	if (access(SHELL_BIN, X_OK) < 0) {
		opened(sid, 0, "no " SHELL_BIN " in the guest (the host has no busybox-static)");
		return;
	}
	for (int i = 0; i < SHELL_MAX && !s; i++)
		if (!sh.s[i].pid)
			s = &sh.s[i];
	if (!s) {
		snprintf(why, sizeof(why), "%d shells are open already; close one first", SHELL_MAX);
		opened(sid, 0, why);
		return;
	}
	int rc = 0;

	if (tty) {
		rc = open_pty(&fds[0], &fds[1], rows, cols);
	} else if (pipe2(fds, O_CLOEXEC) < 0 || pipe2(fds + 2, O_CLOEXEC) < 0 ||
		   pipe2(fds + 4, O_CLOEXEC) < 0) {
		rc = -errno;
	}
	if (rc) {
		snprintf(why, sizeof(why), "cannot make a %s: %s", tty ? "pty" : "pipe", strerror(-rc));
		for (int i = 0; i < 6; i++)
			if (fds[i] >= 0)
				close(fds[i]);
		opened(sid, 0, why);
		return;
	}
	pid = fork();
	if (pid == 0) {
		setsid();
		if (tty) {
			ioctl(fds[1], TIOCSCTTY, 0);
			dup2(fds[1], 0);
			dup2(fds[1], 1);
			dup2(fds[1], 2);
		} else {
			dup2(fds[0], 0); /* stdin: read end of pipe 0 */
			dup2(fds[3], 1);
			dup2(fds[5], 2);
		}
		child_exec(tty, term);
	}
	if (tty) {
		close(fds[1]);
	} else {
		close(fds[0]);
		close(fds[3]);
		close(fds[5]);
	}
	if (pid < 0) {
		snprintf(why, sizeof(why), "fork: %s", strerror(errno));
		if (tty) {
			close(fds[0]);
		} else {
			close(fds[1]);
			close(fds[2]);
			close(fds[4]);
		}
		opened(sid, 0, why);
		return;
	}
	memset(s, 0, offsetof(struct session, in));
	s->sid = sid;
	s->pid = pid;
	s->tty = tty;
	s->primary = (flags & 2) != 0;
	if (tty) {
		s->in_fd = s->out_fd = fds[0];
		s->err_fd = -1;
	} else {
		s->in_fd = fds[1];
		s->out_fd = fds[2];
		s->err_fd = fds[4];
		fcntl(s->in_fd, F_SETFL, O_NONBLOCK);
		fcntl(s->out_fd, F_SETFL, O_NONBLOCK);
		fcntl(s->err_fd, F_SETFL, O_NONBLOCK);
	}
	s->inlen = 0;
	if (s->primary)
		sh.primary_opened = 1;
	note("shell %u opened: pid %d, %s %ux%u", sid, (int)pid, tty ? "pty" : "pipes", cols, rows);
	opened(sid, pid, NULL);
}

static void add_input(struct session *s, const unsigned char *p, size_t len)
{
	if (s->hup_ms || s->in_fd < 0)
		return;
	if (len > IN_CAP - s->inlen) {
		sh.dropped++;
		len = IN_CAP - s->inlen;
	}
	memcpy(s->in + s->inlen, p, len);
	s->inlen += len;
}

static void write_input(struct session *s)
{
	size_t done = 0;

	while (s->in_fd >= 0 && done < s->inlen) {
		ssize_t n = write(s->in_fd, s->in + done, s->inlen - done);

		if (n <= 0) {
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && errno != EAGAIN) /* the shell closed its stdin */
				done = s->inlen;
			break;
		}
		done += (size_t)n;
	}
	memmove(s->in, s->in + done, s->inlen - done);
	s->inlen -= done;
	if (s->eof && !s->inlen && !s->tty)
		close_fd(&s->in_fd);
}

/* Read what a session printed (while the queue has room); closes a stream at its end. */
static void read_output(struct session *s, int *fd, uint16_t flags)
{
	unsigned char buf[READ_CHUNK];

	while (*fd >= 0 && OUT_CAP - sh.outlen >= OUT_ROOM) {
		ssize_t n = read(*fd, buf, sizeof(buf));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) { /* EOF, or EIO once a pty's other side is closed */
			if (s->in_fd == *fd)
				s->in_fd = -1;
			close_fd(fd);
			return;
		}
		queue(MSG_SHELL_DATA, flags, s->sid, buf, (size_t)n, NULL, 0);
	}
}

/* A session whose shell has been reaped and whose output is read (its streams ended, or
 * EXIT_GRACE_MS passed: a background job may hold them; or it was hung up) is reported
 * and its slot freed. */
static void maybe_finish(struct session *s)
{
	unsigned char code[4];
	uint32_t c;
	const char *why = s->why;
	char buf[64];

	if (!s->exited)
		return;
	if ((s->out_fd >= 0 || s->err_fd >= 0) && !s->hup_ms &&
	    now_ms() - s->exited_ms < EXIT_GRACE_MS)
		return;
	if (OUT_CAP - sh.outlen < 1024)
		return; /* room for the exit frame comes as the host reads */
	close_io(s);
	c = WIFEXITED(s->status) ? (uint32_t)WEXITSTATUS(s->status)
				 : 128u + (uint32_t)WTERMSIG(s->status);
	if (!why[0]) {
		snprintf(buf, sizeof(buf), WIFEXITED(s->status) ? "exited %u" : "killed by signal %u",
			 WIFEXITED(s->status) ? c : c - 128u);
		why = buf;
	}
	put_le(code, c, 4);
	queue(MSG_SHELL_EXIT, 0, s->sid, code, 4, why, strlen(why));
	note("shell %u ended: %s", s->sid, why);
	if (s->primary && sh.ready)
		sh.primary_done = 1;
	s->pid = 0;
}

/* ------------------------------------------------------------------ from the host */

static void handle(uint16_t type, const unsigned char *p, size_t len)
{
	uint32_t sid;
	struct session *s;

	if (len < 4)
		return;
	sid = get_le(p, 4);
	p += 4;
	len -= 4;
	if (type == MSG_SHELL_OPEN) {
		if (len < 5)
			return;
		if ((p[4] & 2) && !sh.ready) { /* a primary shell waits for the scheduler */
			for (int i = 0; i < PENDING_MAX; i++) {
				if (!sh.pending[i].used && len + 4 <= sizeof(sh.pending[i].payload)) {
					sh.pending[i].used = 1;
					put_le(sh.pending[i].payload, sid, 4);
					memcpy(sh.pending[i].payload + 4, p, len);
					sh.pending[i].len = len + 4;
					return;
				}
			}
			opened(sid, 0, "too many shells waiting for the scheduler");
			return;
		}
		do_open(sid, p, len);
		return;
	}
	s = find(sid);
	if (!s)
		return; /* ended meanwhile */
	switch (type) {
	case MSG_SHELL_DATA:
		add_input(s, p, len);
		break;
	case MSG_SHELL_RESIZE:
		if (len >= 4 && s->tty && s->out_fd >= 0) {
			struct winsize ws = { .ws_row = (uint16_t)get_le(p, 2),
					      .ws_col = (uint16_t)get_le(p + 2, 2) };

			ioctl(s->out_fd, TIOCSWINSZ, &ws); /* SIGWINCH to the foreground job */
		}
		break;
	case MSG_SHELL_EOF:
		s->eof = 1;
		if (s->tty)
			add_input(s, (const unsigned char *)"\x04", 1);
		break;
	case MSG_SHELL_CLOSE:
		hang_up(s, "closed by the host");
		break;
	}
}

static int input_pending(void)
{
	for (int i = 0; i < SHELL_MAX; i++)
		if (sh.s[i].pid && sh.s[i].inlen)
			return 1;
	return 0;
}

static void read_port(void)
{
	static const unsigned char magic[4] = { 'K', 'T', 'S', 'W' };

	for (;;) {
		ssize_t n = read(sh.fd, sh.inbuf + sh.inlen, sizeof(sh.inbuf) - sh.inlen);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		sh.inlen += (size_t)n;
		if (sh.inlen == sizeof(sh.inbuf))
			break;
	}
	/* Frames are handled while no session's input is backed up: a shell that does not
	 * read its input stalls the port (and so the host's writer), never the agent. */
	while (!input_pending()) {
		size_t i = 0;

		while (i + 4 <= sh.inlen && memcmp(sh.inbuf + i, magic, 4))
			i++;
		if (i + 4 > sh.inlen)
			i = sh.inlen > 3 ? sh.inlen - 3 : 0;
		memmove(sh.inbuf, sh.inbuf + i, sh.inlen - i);
		sh.inlen -= i;
		if (sh.inlen < WIRE_HEADER)
			return;
		uint16_t t = (uint16_t)get_le(sh.inbuf + 4, 2);
		uint32_t l = get_le(sh.inbuf + 8, 4), c = get_le(sh.inbuf + 12, 4);

		if (t < MSG_SHELL_OPEN || t > MSG_SHELL_EXIT || l > HOST_FRAME_MAX) {
			memmove(sh.inbuf, sh.inbuf + 4, sh.inlen - 4);
			sh.inlen -= 4;
			continue;
		}
		if (sh.inlen < WIRE_HEADER + l)
			return;
		if (crc32(sh.inbuf + WIRE_HEADER, l) == c)
			handle(t, sh.inbuf + WIRE_HEADER, l);
		size_t used = WIRE_HEADER + l;

		memmove(sh.inbuf, sh.inbuf + used, sh.inlen - used);
		sh.inlen -= used;
	}
}

/* ------------------------------------------------------------------ the agent's hooks */

static const char *cmdline_dev(const char *key, char *path, size_t size)
{
	char cmdline[4096], *p;
	size_t klen = strlen(key);

	if (read_small("/proc/cmdline", cmdline, sizeof(cmdline)) <= 0)
		return NULL;
	for (p = strstr(cmdline, key); p; p = strstr(p + 1, key)) {
		if (p != cmdline && p[-1] != ' ')
			continue;
		p += klen;
		size_t n = strcspn(p, " \n");

		if (n > 5 && n < size && !strncmp(p, "/dev/", 5) && !memmem(p, n, "..", 2)) {
			snprintf(path, size, "%.*s", (int)n, p);
			return path;
		}
		return NULL;
	}
	return NULL;
}

void shell_init(int hold)
{
	char path[64];

	sh.hold = hold;
	mkdir("/dev/pts", 0755);
	if (mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "ptmxmode=0666,mode=0620") < 0 &&
	    errno != EBUSY)
		warn("mount devpts: %s; shells get no pty", strerror(errno));
	if (access("/dev/ptmx", F_OK) < 0)
		symlink("pts/ptmx", "/dev/ptmx");
	if (!cmdline_dev("ktstr.shell=", path, sizeof(path))) {
		note("no shell channel (the engine named none with ktstr.shell=)");
		return;
	}
	sh.fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (sh.fd < 0)
		warn("cannot open the shell channel %s: %s; no shells", path, strerror(errno));
	else
		port_raw(sh.fd); /* COM3 under the KVM engine: a tty that must pass bytes as they are */
}

int shell_available(void)
{
	return sh.fd >= 0;
}

int shell_pollfds(struct pollfd *fds)
{
	int n = 0, room = OUT_CAP - sh.outlen >= OUT_ROOM;

	if (sh.fd < 0)
		return 0;
	if (sh.port_hup_ms && now_ms() - sh.port_hup_ms < HUP_RETRY_MS)
		fds[n++] = (struct pollfd){ .fd = -1 }; /* poll() skips it */
	else
		fds[n++] = (struct pollfd){ .fd = sh.fd,
				    .events = (short)((input_pending() ? 0 : POLLIN) |
						      (sh.outlen ? POLLOUT : 0)) };
	for (int i = 0; i < SHELL_MAX; i++) {
		struct session *s = &sh.s[i];

		if (!s->pid)
			continue;
		if (s->out_fd >= 0 && (room || s->inlen))
			fds[n++] = (struct pollfd){ .fd = s->out_fd,
						    .events = (short)((room ? POLLIN : 0) |
								      (s->inlen && s->in_fd == s->out_fd ? POLLOUT : 0)) };
		if (s->err_fd >= 0 && room)
			fds[n++] = (struct pollfd){ .fd = s->err_fd, .events = POLLIN };
		if (s->in_fd >= 0 && s->in_fd != s->out_fd && s->inlen)
			fds[n++] = (struct pollfd){ .fd = s->in_fd, .events = POLLOUT };
	}
	return n;
}

void shell_service(const struct pollfd *fds, int n)
{
	uint64_t now;

	if (sh.fd < 0)
		return;
	/* A virtio port whose host side is closed polls POLLHUP at once, forever: look at it
	 * again a while later rather than spinning. */
	if (n > 0 && fds[0].fd == sh.fd)
		sh.port_hup_ms = (fds[0].revents & POLLHUP) && !(fds[0].revents & POLLIN) ? now_ms() : 0;
	read_port();
	now = now_ms();
	for (int i = 0; i < SHELL_MAX; i++) {
		struct session *s = &sh.s[i];

		if (!s->pid)
			continue;
		write_input(s);
		read_output(s, &s->out_fd, 0);
		read_output(s, &s->err_fd, FLAG_STDERR);
		if (s->hup_ms && !s->exited && now - s->hup_ms > HANGUP_KILL_MS)
			kill(-s->pid, SIGKILL);
		if (s->hup_ms && s->tty && s->out_fd >= 0 && !s->exited) {
			/* hung up: close the master so every holder of the pty sees the hangup */
			s->in_fd = -1;
			close_fd(&s->out_fd);
		}
		maybe_finish(s);
	}
	read_port(); /* frames held back while input was pending */
	flush_out();
}

int shell_reaped(pid_t pid, int status)
{
	for (int i = 0; i < SHELL_MAX; i++) {
		struct session *s = &sh.s[i];

		if (s->pid == pid && !s->exited) {
			s->exited = 1;
			s->status = status;
			s->exited_ms = now_ms();
			maybe_finish(s);
			return 1;
		}
	}
	return 0;
}

void shell_ready(void)
{
	sh.ready = 1;
	for (int i = 0; i < PENDING_MAX; i++) {
		struct pending_open *po = &sh.pending[i];

		if (po->used) {
			po->used = 0;
			do_open(get_le(po->payload, 4), po->payload + 4, po->len - 4);
		}
	}
	flush_out();
}

int shell_primary_done(void)
{
	return sh.primary_done;
}

void shell_tell_all(const char *text)
{
	for (int i = 0; i < SHELL_MAX; i++)
		if (sh.s[i].pid && !sh.s[i].hup_ms)
			tell(&sh.s[i], text);
	if (sh.fd >= 0)
		flush_out();
}

void shell_shutdown(const char *why)
{
	int live = 0;

	if (sh.fd < 0)
		return;
	for (int i = 0; i < PENDING_MAX; i++) {
		if (sh.pending[i].used) {
			sh.pending[i].used = 0;
			opened(get_le(sh.pending[i].payload, 4), 0, why);
		}
	}
	for (int i = 0; i < SHELL_MAX; i++) {
		struct session *s = &sh.s[i];

		if (!s->pid)
			continue;
		live++;
		if (!s->hup_ms)
			tell(s, why);
		hang_up(s, why);
	}
	/* The sessions end (reaped by the agent's pump or here) and their ends reach the
	 * host, within a bounded time. */
	for (uint64_t end = now_ms() + HANGUP_KILL_MS + SHUTDOWN_FLUSH_MS; now_ms() < end;) {
		int status, left = 0;
		pid_t pid;

		while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
			shell_reaped(pid, status);
		shell_service(NULL, 0);
		for (int i = 0; i < SHELL_MAX; i++)
			left += sh.s[i].pid != 0;
		if (!left && !sh.outlen)
			break;
		struct pollfd p = { .fd = sh.fd, .events = POLLOUT };

		poll(&p, 1, 20);
	}
	if (live)
		note("shells closed: %s", why);
}
