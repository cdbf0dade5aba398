/* See bpfprogs.h. At most MAX_PROGS programs are listed; more are counted in "more". */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/bpf.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bpfprogs.h"
#include "json.h"
#include "util.h"
#include "wire.h"

#define MAX_PROGS 512

static long sys_bpf(int cmd, union bpf_attr *attr)
{
	return syscall(__NR_bpf, cmd, attr, sizeof(*attr));
}

/* The next program id after `id`, 0 when there is none, -errno on error. */
static long next_prog_id(__u32 id)
{
	union bpf_attr attr;

	memset(&attr, 0, sizeof(attr));
	attr.start_id = id;
	if (sys_bpf(BPF_PROG_GET_NEXT_ID, &attr) < 0)
		return errno == ENOENT ? 0 : -errno;
	return attr.next_id;
}

/* Fill `info` for program `id`; 0 or -errno (a program that went away: -ENOENT). */
static int prog_info(__u32 id, struct bpf_prog_info *info)
{
	union bpf_attr attr;
	int fd, err = 0;

	memset(&attr, 0, sizeof(attr));
	attr.prog_id = id;
	fd = (int)sys_bpf(BPF_PROG_GET_FD_BY_ID, &attr);
	if (fd < 0)
		return -errno;
	memset(info, 0, sizeof(*info));
	memset(&attr, 0, sizeof(attr));
	attr.info.bpf_fd = fd;
	attr.info.info_len = sizeof(*info);
	attr.info.info = (__u64)(unsigned long)info;
	if (sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &attr) < 0)
		err = -errno;
	close(fd);
	return err;
}

void report_bpf_progs(const char *when)
{
	struct bpf_prog_info info;
	struct jbuf j;
	unsigned listed = 0, more = 0;
	long id = 0;
	char name[sizeof(info.name) + 1];

	jb_init(&j);
	jb_open(&j, '{');
	jb_kstr(&j, "when", when);
	jb_ku64(&j, "t_ms", now_ms());
	jb_key(&j, "progs");
	jb_open(&j, '[');
	for (;;) {
		id = next_prog_id((__u32)id);
		if (id <= 0)
			break;
		if (prog_info((__u32)id, &info) < 0)
			continue; /* unloaded between the two calls */
		if (listed >= MAX_PROGS) {
			more++;
			continue;
		}
		memcpy(name, info.name, sizeof(info.name));
		name[sizeof(info.name)] = '\0';
		jb_open(&j, '{');
		jb_ku64(&j, "id", info.id);
		jb_kstr(&j, "name", name);
		jb_ku64(&j, "type", info.type);
		jb_ku64(&j, "verified_insns", info.verified_insns);
		jb_ku64(&j, "xlated_len", info.xlated_prog_len);
		jb_ku64(&j, "jited_len", info.jited_prog_len);
		jb_close(&j, '}');
		listed++;
	}
	jb_close(&j, ']');
	if (more)
		jb_ku64(&j, "more", more);
	if (id < 0)
		jb_kstr(&j, "error", strerror((int)-id));
	jb_close(&j, '}');
	if (!j.oom)
		wire_send(MSG_BPF_PROGS, 0, j.s, j.len);
	jb_free(&j);
}
