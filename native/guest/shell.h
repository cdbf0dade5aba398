/* Shells in the guest over their own channel (docs/shell.md).
 *
 * The engine gives the guest a second port for shells and names it on the kernel command
 * line (`ktstr.shell=/dev/vport0p2` under QEMU). It carries wire frames (wire.h) of the
 * shell types only; every payload starts with the session id (u32 little-endian):
 *
 *   ShellOpen   H->G  sid, rows u16, cols u16, flags u8 (1 = pty, 2 = primary), TERM
 *   ShellOpened G->H  sid, pid u32 (0 = refused, then the reason as text)
 *   ShellData   both  sid, bytes (G->H with FLAG_STDERR: the stderr of a session without
 *                     a pty)
 *   ShellResize H->G  sid, rows u16, cols u16
 *   ShellEof    H->G  sid (the host's input ended)
 *   ShellClose  H->G  sid (hang up)
 *   ShellExit   G->H  sid, code u32 (exit code, or 128 + signal), why (text)
 *
 * The agent never blocks on a shell: output is read only while the queue to the host has
 * room, and the queue is written only when the port takes bytes. */
#ifndef KTSTR_SHELL_H
#define KTSTR_SHELL_H

#include <poll.h>
#include <stdint.h>
#include <sys/types.h>

#define SHELL_MAX 8
#define SHELL_POLLFDS (1 + 3 * SHELL_MAX)

/* Open the shell port named by `ktstr.shell=` on the kernel command line (a note says so
 * when there is none). `hold` is 1 when this run waits for its primary shell. */
void shell_init(int hold);
int shell_available(void);
/* The poll set for pump(): fills at most SHELL_POLLFDS entries, returns how many. */
int shell_pollfds(struct pollfd *fds);
/* After poll() on what shell_pollfds() gave (fds, n): move bytes between the port and the
 * sessions, answer host requests, finish ended sessions. */
void shell_service(const struct pollfd *fds, int n);
/* A child exited: 1 if it was a session's shell. */
int shell_reaped(pid_t pid, int status);

/* Primary sessions are answered once the run is ready for them (the scheduler enabled);
 * until then their ShellOpen waits. */
void shell_ready(void);
/* 1 once a primary session has been opened and has ended since shell_ready(). */
int shell_primary_done(void);
/* A line to every open session's terminal (the run's news: the scheduler failed, ...). */
void shell_tell_all(const char *text);
/* The run ends: every session is told `why`, hung up and reported ended; pending primary
 * opens are refused with `why`. Bounded in time. */
void shell_shutdown(const char *why);

#endif
