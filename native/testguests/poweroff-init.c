/*
 * poweroff-init: a tiny static PID 1 for engine tests and the boot benchmark.
 *
 * Build: gcc -static -O2 -o poweroff-init poweroff-init.c
 *
 * What it does is chosen by `ktmode=` on the kernel command line (the kernel hands
 * unknown name=value parameters to init as environment variables):
 *
 *   (unset), poweroff  print one line and power off at once (the benchmark's guest)
 *   topo               print the CPU topology sysfs files, L3 shared_cpu_list and the
 *                      NUMA node cpulists as "KT name=value" lines, then power off
 *   hang               print one line and sleep forever (for the host's watchdog)
 *   exec               run `ktexec=PATH` with the argument -h (a dynamically linked
 *                      program proves its library closure loads), print its exit
 *                      status as "KT exec status=N", then power off
 *   exit               print one line and return from main: the kernel panics
 *                      ("Attempted to kill init"), and with panic=-1 it resets
 *   wire               write a known byte pattern of `ktwire=` bytes (default 65536) to
 *                      `ktwiredev=` (default /dev/ttyS1; raw mode when it is a tty),
 *                      read `ktecho=` bytes (default 4096) back from it and echo them,
 *                      then power off
 *
 * Every line this program prints starts with "KT " so tests can find it in the console.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

static void say(const char *fmt, const char *a, const char *b)
{
	char line[1024];
	int n = snprintf(line, sizeof(line), fmt, a, b);

	if (n > 0)
		(void)!write(1, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

static void power_off(void)
{
	tcdrain(1); /* let our last lines leave the UART before the kernel's own */
	sync();
	reboot(RB_POWER_OFF);
	/* reboot() only returns on failure; PID 1 must not exit. */
	for (;;)
		pause();
}

static void print_file(const char *path)
{
	char buf[256];
	int fd = open(path, O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = 0;
	buf[strcspn(buf, "\n")] = 0;
	say("KT %s=%s\n", path, buf);
}

static int numeric_suffix(const char *name, const char *prefix)
{
	size_t len = strlen(prefix);

	if (strncmp(name, prefix, len) || !name[len])
		return 0;
	for (const char *p = name + len; *p; p++)
		if (*p < '0' || *p > '9')
			return 0;
	return 1;
}

static void dump_topology(void)
{
	static const char *const topo_files[] = {
		"physical_package_id", "die_id", "core_id", "thread_siblings_list",
		"core_siblings_list", "cluster_id",
	};
	char path[512];
	struct dirent *de;
	DIR *d;

	mount("sysfs", "/sys", "sysfs", 0, NULL);
	d = opendir("/sys/devices/system/cpu");
	while (d && (de = readdir(d))) {
		if (!numeric_suffix(de->d_name, "cpu"))
			continue;
		for (size_t i = 0; i < sizeof(topo_files) / sizeof(topo_files[0]); i++) {
			snprintf(path, sizeof(path), "/sys/devices/system/cpu/%s/topology/%s",
				 de->d_name, topo_files[i]);
			print_file(path);
		}
		snprintf(path, sizeof(path),
			 "/sys/devices/system/cpu/%s/cache/index3/shared_cpu_list", de->d_name);
		print_file(path);
	}
	if (d)
		closedir(d);
	d = opendir("/sys/devices/system/node");
	while (d && (de = readdir(d))) {
		if (!numeric_suffix(de->d_name, "node"))
			continue;
		snprintf(path, sizeof(path), "/sys/devices/system/node/%s/cpulist", de->d_name);
		print_file(path);
	}
	if (d)
		closedir(d);
	say("KT topology done%s%s\n", "", "");
}

static int write_all(int fd, const unsigned char *p, size_t len)
{
	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static long env_long(const char *name, long dflt)
{
	const char *v = getenv(name);

	return v && *v ? strtol(v, NULL, 10) : dflt;
}

/* The pattern tests expect: byte i = (i * 7 + i / 251) & 0xff, every value occurs. */
static void wire_test(void)
{
	long total = env_long("ktwire", 65536), echo = env_long("ktecho", 4096);
	const char *dev = getenv("ktwiredev");
	unsigned char buf[4096];
	struct termios tio;
	int fd;

	mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
	fd = open(dev && *dev ? dev : "/dev/ttyS1", O_RDWR | O_NOCTTY);
	if (fd < 0) {
		say("KT wire open failed: %s%s\n", strerror(errno), "");
		return;
	}
	if (tcgetattr(fd, &tio) == 0) {
		cfmakeraw(&tio);
		tio.c_cc[VMIN] = 1;
		tio.c_cc[VTIME] = 0;
		tcsetattr(fd, TCSANOW, &tio);
	}
	for (long off = 0; off < total;) {
		size_t n = 0;

		for (; n < sizeof(buf) && off < total; n++, off++)
			buf[n] = (unsigned char)((off * 7 + off / 251) & 0xff);
		if (write_all(fd, buf, n)) {
			say("KT wire write failed: %s%s\n", strerror(errno), "");
			return;
		}
	}
	tcdrain(fd);
	say("KT wire sent%s%s\n", "", "");
	for (long got = 0; got < echo;) {
		ssize_t n = read(fd, buf, sizeof(buf) < (size_t)(echo - got) ? sizeof(buf)
									      : (size_t)(echo - got));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (write_all(fd, buf, (size_t)n))
			break;
		got += n;
	}
	tcdrain(fd);
	say("KT wire echoed%s%s\n", "", "");
}

static void exec_test(void)
{
	const char *path = getenv("ktexec");
	char status[32];
	int st = 0;
	pid_t pid;

	if (!path)
		return;
	pid = fork();
	if (pid == 0) {
		char *const argv[] = { (char *)path, "-h", NULL };

		dup2(1, 2);
		execv(path, argv);
		say("KT exec failed: %s%s\n", strerror(errno), "");
		_exit(127);
	}
	if (pid < 0 || waitpid(pid, &st, 0) < 0)
		return;
	snprintf(status, sizeof(status), "%d", WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
	say("KT exec status=%s%s\n", status, "");
}

int main(void)
{
	const char *mode = getenv("ktmode");

	if (!mode || !*mode)
		mode = "poweroff";
	say("KT init mode=%s%s\n", mode, "");
	if (!strcmp(mode, "topo"))
		dump_topology();
	else if (!strcmp(mode, "wire"))
		wire_test();
	else if (!strcmp(mode, "exec"))
		exec_test();
	else if (!strcmp(mode, "hang"))
		for (;;)
			pause();
	else if (!strcmp(mode, "exit"))
		return 3;
	power_off();
	return 0;
}
