/* The verifier's numbers for every loaded BPF program (gauntlet --verifier, docs/wire.md
 * "BpfProgs"): walked with BPF_PROG_GET_NEXT_ID + BPF_PROG_GET_FD_BY_ID and read with
 * BPF_OBJ_GET_INFO_BY_FD, sent as one BpfProgs frame. */
#ifndef KTSTR_BPFPROGS_H
#define KTSTR_BPFPROGS_H

/* Send a BpfProgs frame describing every BPF program the kernel holds now. `when` says at
 * which point of the run ("scx_enabled", "sched_failed"). Never fails the run: a syscall
 * that is refused becomes the frame's "error" field. */
void report_bpf_progs(const char *when);

#endif
