/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A scheduler the verifier rejects after walking a bounded loop: each of the
 * six iterations calls bpf_get_prandom_u32() at four addresses, then the
 * sum is dereferenced as a pointer. Test data for the scheduler-log
 * cycle collapse only.
 */
#include <scx/common.bpf.h>

char _license[] SEC("license") = "GPL";

UEI_DEFINE(uei);

s32 BPF_STRUCT_OPS_SLEEPABLE(loopy_init)
{
	u64 sum = 0;
	u32 i;

#pragma clang loop unroll(disable)
	for (i = 0; i < 6; i++) {
		sum += bpf_get_prandom_u32();
		sum ^= sum >> 7;
		sum += bpf_get_prandom_u32();
		sum *= 3;
		sum ^= sum >> 11;
		sum *= 5;
		sum += bpf_get_prandom_u32();
		sum ^= sum >> 13;
		sum += bpf_get_prandom_u32();
	}
	return *(s32 *)sum;
}

void BPF_STRUCT_OPS(loopy_exit, struct scx_exit_info *ei)
{
	UEI_RECORD(uei, ei);
}

SCX_OPS_DEFINE(loopy_ops,
	       .init			= (void *)loopy_init,
	       .exit			= (void *)loopy_exit,
	       .name			= "loopy");
