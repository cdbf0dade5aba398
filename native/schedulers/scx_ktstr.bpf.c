/* SPDX-License-Identifier: GPL-2.0 */
/*
 * scx_ktstr: a plain global scheduler that can fail on demand.
 *
 * Scheduling is scx_simple's: one shared DSQ, weighted vtime ordering (or FIFO
 * with --fifo), direct dispatch to an idle CPU's local DSQ from select_cpu.
 * Per-CPU counters of local and global queueing feed the loader's
 * `local=N global=M` lines.
 *
 * Fault injection, for tests and demos of a debugging workstation. Each fault
 * is armed with a delay in milliseconds from the scheduler's start (set in
 * .rodata by the loader); a BPF timer fires at the earliest pending deadline:
 *
 *   error_after_ns    scx_bpf_error() with a message naming the injection
 *   stall_after_ns    user tasks (not kernel threads) go to a DSQ that is never
 *                     consumed; the kernel's watchdog reports the stall after
 *                     ops.timeout_ms (the loader sets it short)
 *   exit_after_ns     scx_bpf_exit(exit_code, ...): a clean, BPF-initiated exit
 *   bad_dsq_after_ns  the next enqueue inserts into a DSQ id that was never
 *                     created; the kernel itself reports "non-existent DSQ"
 *
 * `injected` (a bitmask in .bss) tells the loader which faults have fired.
 */
#include <scx/common.bpf.h>

char _license[] SEC("license") = "GPL";

/* Shared vtime/FIFO queue and the queue that stalled tasks never leave. */
#define SHARED_DSQ	0
#define STALL_DSQ	1
/* Never created: inserting into it is the kernel's "non-existent DSQ" error. */
#define BAD_DSQ		0xbad0d5cULL

/* Bits of `injected`; keep in sync with scx_ktstr.c. */
#define INJ_ERROR	(1u << 0)
#define INJ_STALL	(1u << 1)
#define INJ_EXIT	(1u << 2)
#define INJ_BAD_DSQ	(1u << 3)

#define NSEC_PER_MSEC	1000000ULL

const volatile bool fifo_sched;
const volatile u64 error_after_ns;
const volatile u64 stall_after_ns;
const volatile u64 exit_after_ns;
const volatile u64 bad_dsq_after_ns;
const volatile s64 exit_code;

static u64 vtime_now;
u64 start_ns;		/* set in init: the origin of every *_after_ns */
u32 injected;		/* INJ_* bits of the faults that have fired */
u32 timer_started;	/* u32: BPF cmpxchg needs a 4- or 8-byte word */

UEI_DEFINE(uei);

enum stat_idx {
	KTSTR_STAT_LOCAL,	/* direct dispatch to an idle CPU */
	KTSTR_STAT_GLOBAL,	/* queued on the shared DSQ */
	KTSTR_STAT_STALLED,	/* held back on STALL_DSQ */
	KTSTR_NR_STATS,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(key_size, sizeof(u32));
	__uint(value_size, sizeof(u64));
	__uint(max_entries, KTSTR_NR_STATS);
} stats SEC(".maps");

struct fault_timer {
	struct bpf_timer timer;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct fault_timer);
} fault_timer SEC(".maps");

static void stat_inc(u32 idx)
{
	u64 *cnt_p = bpf_map_lookup_elem(&stats, &idx);

	if (cnt_p)
		(*cnt_p)++;
}

static bool fired(u32 bit)
{
	return READ_ONCE(injected) & bit;
}

/* A stalled task: any user task once the stall has been injected. Kernel
 * threads keep running so the kernel (and its watchdog) stays healthy. */
static bool stall_victim(const struct task_struct *p)
{
	return fired(INJ_STALL) && !(p->flags & PF_KTHREAD);
}

/*
 * Fire every fault whose deadline has passed; return the delay until the next
 * pending one (0: nothing left to arm).
 */
static u64 fire_due_faults(void)
{
	u64 elapsed = bpf_ktime_get_ns() - start_ns;
	u64 next = 0;

	if (error_after_ns && !fired(INJ_ERROR)) {
		if (elapsed >= error_after_ns) {
			__sync_fetch_and_or(&injected, INJ_ERROR);
			scx_bpf_error("scx_ktstr: injected error after %llums (--error-after)",
				      error_after_ns / NSEC_PER_MSEC);
		} else if (!next || error_after_ns - elapsed < next) {
			next = error_after_ns - elapsed;
		}
	}
	if (stall_after_ns && !fired(INJ_STALL)) {
		if (elapsed >= stall_after_ns)
			__sync_fetch_and_or(&injected, INJ_STALL);
		else if (!next || stall_after_ns - elapsed < next)
			next = stall_after_ns - elapsed;
	}
	if (bad_dsq_after_ns && !fired(INJ_BAD_DSQ)) {
		if (elapsed >= bad_dsq_after_ns)
			__sync_fetch_and_or(&injected, INJ_BAD_DSQ);
		else if (!next || bad_dsq_after_ns - elapsed < next)
			next = bad_dsq_after_ns - elapsed;
	}
	if (exit_after_ns && !fired(INJ_EXIT)) {
		if (elapsed >= exit_after_ns) {
			__sync_fetch_and_or(&injected, INJ_EXIT);
			scx_bpf_exit(exit_code, "scx_ktstr: exit after %llums (--exit-after)",
				     exit_after_ns / NSEC_PER_MSEC);
		} else if (!next || exit_after_ns - elapsed < next) {
			next = exit_after_ns - elapsed;
		}
	}
	return next;
}

static int fault_timerfn(void *map, int *key, struct bpf_timer *timer)
{
	u64 next = fire_due_faults();

	if (next)
		bpf_timer_start(timer, next, 0);
	return 0;
}

/* Timers cannot be started from the sleepable ops.init: the first dispatch
 * arms it (the same pattern as scx_central). */
static void arm_fault_timer(void)
{
	struct fault_timer *ft;
	u32 key = 0;
	u64 next;
	int ret;

	if (likely(timer_started))
		return;
	if (!error_after_ns && !stall_after_ns && !exit_after_ns && !bad_dsq_after_ns)
		return;
	if (__sync_val_compare_and_swap(&timer_started, 0, 1))
		return;

	ft = bpf_map_lookup_elem(&fault_timer, &key);
	if (!ft) {
		scx_bpf_error("scx_ktstr: fault timer lookup failed");
		return;
	}
	next = fire_due_faults();
	if (!next)
		return;
	ret = bpf_timer_start(&ft->timer, next, 0);
	if (ret)
		scx_bpf_error("scx_ktstr: bpf_timer_start failed (%d)", ret);
}

/*
 * What a failure dump shows of the scheduler's own state besides .bss: every
 * task's enqueue history (a HASH map with BTF types) and how many inserts each
 * CPU sent to each DSQ (a PERCPU_HASH map keyed by DSQ id).
 */
struct task_enq {
	u64 enqueues;
	u64 stalled;
	s32 last_cpu;
	char comm[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, s32);
	__type(value, struct task_enq);
} task_enq SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16);
	__type(key, u64);
	__type(value, u64);
} dsq_inserts SEC(".maps");

static void note_enqueue(struct task_struct *p, u64 dsq, bool stalled)
{
	struct task_enq *te;
	s32 pid = p->pid;
	u64 one = 1, *cnt;

	te = bpf_map_lookup_elem(&task_enq, &pid);
	if (!te) {
		struct task_enq init = {};

		bpf_probe_read_kernel_str(init.comm, sizeof(init.comm), p->comm);
		bpf_map_update_elem(&task_enq, &pid, &init, BPF_NOEXIST);
		te = bpf_map_lookup_elem(&task_enq, &pid);
	}
	if (te) {
		__sync_fetch_and_add(&te->enqueues, 1);
		if (stalled)
			__sync_fetch_and_add(&te->stalled, 1);
		te->last_cpu = bpf_get_smp_processor_id();
	}
	cnt = bpf_map_lookup_elem(&dsq_inserts, &dsq);
	if (cnt)
		(*cnt)++;
	else
		bpf_map_update_elem(&dsq_inserts, &dsq, &one, BPF_NOEXIST);
}

s32 BPF_STRUCT_OPS(ktstr_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
	bool is_idle = false;
	s32 cpu;

	cpu = scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &is_idle);
	/* Faulty paths all go through ops.enqueue. */
	if (is_idle && !stall_victim(p) && !fired(INJ_BAD_DSQ)) {
		stat_inc(KTSTR_STAT_LOCAL);
		scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, SCX_SLICE_DFL, 0);
	}
	return cpu;
}

void BPF_STRUCT_OPS(ktstr_enqueue, struct task_struct *p, u64 enq_flags)
{
	u64 vtime = p->scx.dsq_vtime;

	if (fired(INJ_BAD_DSQ)) {
		note_enqueue(p, BAD_DSQ, false);
		scx_bpf_dsq_insert(p, BAD_DSQ, SCX_SLICE_DFL, enq_flags);
		return;
	}
	if (stall_victim(p)) {
		stat_inc(KTSTR_STAT_STALLED);
		note_enqueue(p, STALL_DSQ, true);
		scx_bpf_dsq_insert(p, STALL_DSQ, SCX_SLICE_DFL, enq_flags);
		return;
	}

	stat_inc(KTSTR_STAT_GLOBAL);
	note_enqueue(p, SHARED_DSQ, false);
	if (fifo_sched) {
		scx_bpf_dsq_insert(p, SHARED_DSQ, SCX_SLICE_DFL, enq_flags);
		return;
	}
	/* An idle task accumulates at most one slice of budget. */
	if (time_before(vtime, vtime_now - SCX_SLICE_DFL))
		vtime = vtime_now - SCX_SLICE_DFL;
	scx_bpf_dsq_insert_vtime(p, SHARED_DSQ, SCX_SLICE_DFL, vtime, enq_flags);
}

void BPF_STRUCT_OPS(ktstr_dispatch, s32 cpu, struct task_struct *prev)
{
	arm_fault_timer();
	scx_bpf_dsq_move_to_local(SHARED_DSQ, 0);
}

void BPF_STRUCT_OPS(ktstr_running, struct task_struct *p)
{
	if (fifo_sched)
		return;
	if (time_before(vtime_now, p->scx.dsq_vtime))
		vtime_now = p->scx.dsq_vtime;
}

void BPF_STRUCT_OPS(ktstr_stopping, struct task_struct *p, bool runnable)
{
	if (fifo_sched)
		return;
	scx_bpf_task_set_dsq_vtime(p, p->scx.dsq_vtime +
				   scale_by_task_weight_inverse(p, SCX_SLICE_DFL - p->scx.slice));
}

void BPF_STRUCT_OPS(ktstr_enable, struct task_struct *p)
{
	scx_bpf_task_set_dsq_vtime(p, vtime_now);
}

/* Shown in the kernel's debug dump (and so in the loader's DEBUG DUMP). */
void BPF_STRUCT_OPS(ktstr_dump, struct scx_dump_ctx *dctx)
{
	scx_bpf_dump("scx_ktstr: elapsed=%llums injected=0x%x stalled_queued=%d\n",
		     (bpf_ktime_get_ns() - start_ns) / NSEC_PER_MSEC, injected,
		     scx_bpf_dsq_nr_queued(STALL_DSQ));
}

s32 BPF_STRUCT_OPS_SLEEPABLE(ktstr_init)
{
	struct fault_timer *ft;
	u32 key = 0;
	int ret;

	start_ns = bpf_ktime_get_ns();

	ret = scx_bpf_create_dsq(SHARED_DSQ, -1);
	if (ret) {
		scx_bpf_error("failed to create DSQ %d (%d)", SHARED_DSQ, ret);
		return ret;
	}
	ret = scx_bpf_create_dsq(STALL_DSQ, -1);
	if (ret) {
		scx_bpf_error("failed to create DSQ %d (%d)", STALL_DSQ, ret);
		return ret;
	}

	ft = bpf_map_lookup_elem(&fault_timer, &key);
	if (!ft)
		return -ESRCH;
	bpf_timer_init(&ft->timer, &fault_timer, CLOCK_MONOTONIC);
	bpf_timer_set_callback(&ft->timer, fault_timerfn);
	return 0;
}

void BPF_STRUCT_OPS(ktstr_exit, struct scx_exit_info *ei)
{
	UEI_RECORD(uei, ei);
}

SCX_OPS_DEFINE(ktstr_ops,
	       .select_cpu		= (void *)ktstr_select_cpu,
	       .enqueue			= (void *)ktstr_enqueue,
	       .dispatch		= (void *)ktstr_dispatch,
	       .running			= (void *)ktstr_running,
	       .stopping		= (void *)ktstr_stopping,
	       .enable			= (void *)ktstr_enable,
	       .dump			= (void *)ktstr_dump,
	       .init			= (void *)ktstr_init,
	       .exit			= (void *)ktstr_exit,
	       .name			= "ktstr");
