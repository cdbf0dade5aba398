#include "sysinfo.h"

#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "util.h"

#define MAX_DISTINCT 512

/* Add the distinct values of /sys/devices/system/cpu/cpuN/<rel> over the online cpus. */
static void distinct_cpulists(struct jbuf *j, const uint64_t *online, const char *rel)
{
	static char seen[MAX_DISTINCT][64];
	int nseen = 0;

	jb_open(j, '[');
	for (int cpu = 0; cpu < MAX_CPUS; cpu++) {
		char path[128], val[64];
		int dup = 0;

		if (!mask_test(online, cpu))
			continue;
		snprintf(path, sizeof(path), "/sys/devices/system/cpu/cpu%d/%s", cpu, rel);
		if (read_small(path, val, sizeof(val)) <= 0)
			continue;
		for (int k = 0; k < nseen && !dup; k++)
			dup = !strcmp(seen[k], val);
		if (dup || nseen == MAX_DISTINCT)
			continue;
		strcpy(seen[nseen++], val);
		jb_str(j, val);
	}
	jb_close(j, ']');
}

static void nodes(struct jbuf *j)
{
	DIR *d = opendir("/sys/devices/system/node");
	struct dirent *e;

	jb_key(j, "nodes");
	jb_open(j, '{');
	while (d && (e = readdir(d))) {
		char path[300], val[256];

		if (strncmp(e->d_name, "node", 4) || !isdigit((unsigned char)e->d_name[4]))
			continue;
		snprintf(path, sizeof(path), "/sys/devices/system/node/%s/cpulist", e->d_name);
		if (read_small(path, val, sizeof(val)) <= 0)
			continue; /* memory-only node */
		jb_kstr(j, e->d_name + 4, val);
	}
	if (d)
		closedir(d);
	jb_close(j, '}');
}

/* Top-level "System RAM" lines of /proc/iomem: "00100000-1ffdffff : System RAM". */
static void ram(struct jbuf *j)
{
	FILE *f = fopen("/proc/iomem", "re");
	char line[256];

	jb_key(j, "ram");
	jb_open(j, '[');
	while (f && fgets(line, sizeof(line), f)) {
		char a[24], b[24];
		int end = 0;

		if (line[0] == ' ' || sscanf(line, "%23[0-9a-f]-%23[0-9a-f] : System RAM%n", a, b, &end) != 2 ||
		    !end || (line[end] != '\n' && line[end] != '\0'))
			continue;
		jb_open(j, '[');
		jb_str(j, a);
		jb_str(j, b);
		jb_close(j, ']');
	}
	if (f)
		fclose(f);
	jb_close(j, ']');
}

/* One /proc/kallsyms line "ffffffff83cf65c0 D runqueues" (a module symbol adds
 * "\t[mod]"): 1 if it is one of the wanted names, added to the JSON. */
static int kallsyms_line(const struct spec *s, struct jbuf *j, char *line, size_t len)
{
	char *sp1 = memchr(line, ' ', len), *name, *end;

	if (!sp1 || (size_t)(sp1 - line) + 3 >= len || sp1[2] != ' ')
		return 0;
	name = sp1 + 3;
	end = memchr(name, '\t', len - (size_t)(name - line));
	if (!end)
		end = line + len;
	for (int i = 0; i < s->nsyms; i++) {
		size_t n = strlen(s->syms[i]);

		if ((size_t)(end - name) == n && !memcmp(name, s->syms[i], n)) {
			*end = '\0';
			*sp1 = '\0';
			jb_kstr(j, name, line);
			return 1;
		}
	}
	return 0;
}

/* The wanted kallsyms names; stops when all are found. The file is ~10 MB and the
 * kernel's side of reading it dominates (seconds under TCG), so it is read in big
 * chunks and scanned in place. */
static void kallsyms(const struct spec *s, struct jbuf *j)
{
	static char buf[1 << 18];
	size_t have = 0;
	int found = 0, fd;
	uint64_t t0 = now_ms();

	jb_key(j, "kallsyms");
	jb_open(j, '{');
	if (!s->nsyms) {
		jb_close(j, '}');
		return;
	}
	if (write_str("/proc/sys/kernel/kptr_restrict", "0"))
		warn("cannot set kernel.kptr_restrict=0; kallsyms addresses may read as zero");
	fd = open("/proc/kallsyms", O_RDONLY | O_CLOEXEC);
	while (fd >= 0 && found < s->nsyms) {
		ssize_t n = read(fd, buf + have, sizeof(buf) - have);
		char *line = buf, *nl;

		if (n <= 0)
			break;
		have += (size_t)n;
		while ((nl = memchr(line, '\n', have - (size_t)(line - buf)))) {
			found += kallsyms_line(s, j, line, (size_t)(nl - line));
			line = nl + 1;
		}
		have -= (size_t)(line - buf);
		memmove(buf, line, have);
		if (have == sizeof(buf)) /* a line longer than the buffer: not kallsyms */
			have = 0;
	}
	if (fd >= 0)
		close(fd);
	if (found < s->nsyms)
		warn("kallsyms: found %d of the %d symbols asked for", found, s->nsyms);
	note("kallsyms: %d symbols in %llu ms", found, (unsigned long long)(now_ms() - t0));
	jb_close(j, '}');
}

void sysinfo_json(const struct spec *s, struct jbuf *j)
{
	struct utsname u;
	char online_s[1024], state[64];
	uint64_t online[MAX_CPUS / 64];

	uname(&u);
	if (read_small("/sys/devices/system/cpu/online", online_s, sizeof(online_s)) <= 0 ||
	    cpulist_parse(online_s, online) <= 0) {
		strcpy(online_s, "0");
		cpulist_parse(online_s, online);
	}
	if (read_small("/sys/kernel/sched_ext/state", state, sizeof(state)) < 0)
		state[0] = '\0';
	jb_open(j, '{');
	jb_kstr(j, "release", u.release);
	jb_ku64(j, "uptime_ms", now_ms());
	jb_kstr(j, "online", online_s);
	nodes(j);
	jb_key(j, "llcs");
	distinct_cpulists(j, online, "cache/index3/shared_cpu_list");
	jb_key(j, "siblings");
	distinct_cpulists(j, online, "topology/thread_siblings_list");
	ram(j);
	kallsyms(s, j);
	jb_kstr(j, "scx_state", state);
	jb_close(j, '}');
}
