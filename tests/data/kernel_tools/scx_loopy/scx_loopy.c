/* SPDX-License-Identifier: GPL-2.0 */
#include <stdio.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <scx/common.h>
#include "scx_loopy.bpf.skel.h"

static int libbpf_print_fn(enum libbpf_print_level level, const char *format, va_list args)
{
	if (level == LIBBPF_DEBUG)
		return 0;
	return vfprintf(stderr, format, args);
}

int main(int argc, char **argv)
{
	struct scx_loopy *skel;
	struct bpf_link *link;

	libbpf_set_print(libbpf_print_fn);
	skel = SCX_OPS_OPEN(loopy_ops, scx_loopy);
	SCX_OPS_LOAD(skel, loopy_ops, scx_loopy, uei);
	link = SCX_OPS_ATTACH(skel, loopy_ops, scx_loopy);
	sleep(1);
	bpf_link__destroy(link);
	scx_loopy__destroy(skel);
	return 0;
}
