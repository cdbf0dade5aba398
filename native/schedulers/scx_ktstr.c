/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Loader of scx_ktstr (see scx_ktstr.bpf.c): parses options, arms the fault
 * injections in .rodata, attaches, prints `local=N global=M` once a second,
 * and on exit prints the kernel's debug dump and `EXIT: ...` the way the
 * kernel's tools/sched_ext loaders do (UEI_REPORT).
 *
 * Exit status: 0 after a clean unregistration (SIGINT/SIGTERM), the low byte
 * of the code given to scx_bpf_exit() (--exit-after/--exit-code), 1 when the
 * kernel disabled the scheduler with an error, 2 for bad options.
 *
 * Options are parsed before anything touches BPF so that --help works on a
 * host without sched_ext.
 */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <scx/common.h>
#include "scx_ktstr.bpf.skel.h"

/* Bits of the BPF side's `injected`; keep in sync with scx_ktstr.bpf.c. */
#define INJ_ERROR	(1u << 0)
#define INJ_STALL	(1u << 1)
#define INJ_EXIT	(1u << 2)
#define INJ_BAD_DSQ	(1u << 3)

/* enum scx_exit_kind: kinds from SCX_EXIT_ERROR up are errors. */
#define EXIT_KIND_ERROR	1024

/* ops.timeout_ms when a stall is injected: the watchdog fires within seconds. */
#define STALL_TIMEOUT_MS 3000

#define NR_STATS 3

const char help_fmt[] =
"scx_ktstr: a global vtime (or FIFO) sched_ext scheduler that fails on demand.\n"
"\n"
"Usage: %s [OPTIONS]\n"
"\n"
"  -f, --fifo              FIFO scheduling instead of weighted vtime\n"
"      --error-after MS    call scx_bpf_error() MS milliseconds after start\n"
"      --stall-after MS    stop dispatching user tasks MS milliseconds after start;\n"
"                          the kernel's watchdog reports the stall\n"
"      --exit-after MS     exit cleanly through scx_bpf_exit() after MS milliseconds\n"
"      --exit-code CODE    the code --exit-after exits with (default 0)\n"
"      --bad-dsq-after MS  insert tasks into a DSQ that does not exist after MS\n"
"                          milliseconds (the kernel's \"non-existent DSQ\" error)\n"
"      --timeout-ms MS     ops.timeout_ms, the watchdog's limit (default: the kernel's,\n"
"                          %d with --stall-after)\n"
"  -v, --verbose           print libbpf debug messages\n"
"  -h, --help              display this help and exit\n"
"\n"
"Prints `local=N global=M` once a second (N: direct dispatches to idle CPUs,\n"
"M: tasks queued on the shared DSQ; ` stalled=K` is added with --stall-after).\n"
"Exit status: 0 on SIGINT/SIGTERM, the --exit-code on --exit-after, 1 when the\n"
"kernel disabled the scheduler with an error, 2 for bad options.\n";

enum {
	OPT_ERROR_AFTER = 256,
	OPT_STALL_AFTER,
	OPT_EXIT_AFTER,
	OPT_EXIT_CODE,
	OPT_BAD_DSQ_AFTER,
	OPT_TIMEOUT_MS,
};

static const struct option long_opts[] = {
	{ "fifo",		no_argument,		NULL, 'f' },
	{ "error-after",	required_argument,	NULL, OPT_ERROR_AFTER },
	{ "stall-after",	required_argument,	NULL, OPT_STALL_AFTER },
	{ "exit-after",		required_argument,	NULL, OPT_EXIT_AFTER },
	{ "exit-code",		required_argument,	NULL, OPT_EXIT_CODE },
	{ "bad-dsq-after",	required_argument,	NULL, OPT_BAD_DSQ_AFTER },
	{ "timeout-ms",		required_argument,	NULL, OPT_TIMEOUT_MS },
	{ "verbose",		no_argument,		NULL, 'v' },
	{ "help",		no_argument,		NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

struct config {
	bool fifo;
	__u64 error_after_ms;
	__u64 stall_after_ms;
	__u64 exit_after_ms;
	__u64 bad_dsq_after_ms;
	__s64 exit_code;
	__u32 timeout_ms;
};

static bool verbose;
static volatile int exit_req;

static int libbpf_print_fn(enum libbpf_print_level level, const char *format, va_list args)
{
	if (level == LIBBPF_DEBUG && !verbose)
		return 0;
	return vfprintf(stderr, format, args);
}

static void sigint_handler(int sig)
{
	exit_req = 1;
}

/* A whole non-negative decimal number, or -1. */
static long long parse_num(const char *s, long long max)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || end == s || *end != '\0' || v < 0 || v > max)
		return -1;
	return v;
}

static int parse_args(int argc, char **argv, struct config *cfg)
{
	int opt;
	long long v;

	while ((opt = getopt_long(argc, argv, "fvh", long_opts, NULL)) != -1) {
		v = 0;
		if (opt >= OPT_ERROR_AFTER) {
			v = parse_num(optarg, opt == OPT_TIMEOUT_MS ? 3600000 : 1LL << 40);
			if (v < 0 || (v == 0 && opt != OPT_EXIT_CODE)) {
				fprintf(stderr, "scx_ktstr: bad value '%s' for --%s\n", optarg,
					long_opts[opt - OPT_ERROR_AFTER + 1].name);
				return 2;
			}
		}
		switch (opt) {
		case 'f':
			cfg->fifo = true;
			break;
		case 'v':
			verbose = true;
			break;
		case OPT_ERROR_AFTER:
			cfg->error_after_ms = v;
			break;
		case OPT_STALL_AFTER:
			cfg->stall_after_ms = v;
			break;
		case OPT_EXIT_AFTER:
			cfg->exit_after_ms = v;
			break;
		case OPT_EXIT_CODE:
			cfg->exit_code = v;
			break;
		case OPT_BAD_DSQ_AFTER:
			cfg->bad_dsq_after_ms = v;
			break;
		case OPT_TIMEOUT_MS:
			cfg->timeout_ms = v;
			break;
		case 'h':
			printf(help_fmt, basename(argv[0]), STALL_TIMEOUT_MS);
			return 0;
		default:
			fprintf(stderr, help_fmt, basename(argv[0]), STALL_TIMEOUT_MS);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "scx_ktstr: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (cfg->stall_after_ms && !cfg->timeout_ms)
		cfg->timeout_ms = STALL_TIMEOUT_MS;
	return -1;
}

static void read_stats(struct scx_ktstr *skel, __u64 *stats)
{
	int nr_cpus = libbpf_num_possible_cpus();
	__u32 idx;

	SCX_BUG_ON(nr_cpus <= 0, "libbpf_num_possible_cpus()");
	__u64 cnts[nr_cpus];

	memset(stats, 0, sizeof(stats[0]) * NR_STATS);
	for (idx = 0; idx < NR_STATS; idx++) {
		int cpu;

		if (bpf_map_lookup_elem(bpf_map__fd(skel->maps.stats), &idx, cnts) < 0)
			continue;
		for (cpu = 0; cpu < nr_cpus; cpu++)
			stats[idx] += cnts[cpu];
	}
}

/* Say once which injected faults have fired (the kernel's message for a stall
 * or a bad DSQ does not name the injection). */
static void report_injections(struct scx_ktstr *skel, const struct config *cfg, __u32 *seen)
{
	__u32 now = __atomic_load_n(&skel->bss->injected, __ATOMIC_ACQUIRE);
	__u32 fresh = now & ~*seen;

	if (fresh & INJ_ERROR)
		printf("scx_ktstr: injected error after %llums (--error-after)\n",
		       (unsigned long long)cfg->error_after_ms);
	if (fresh & INJ_STALL)
		printf("scx_ktstr: injected stall after %llums (--stall-after): user tasks are no longer dispatched\n",
		       (unsigned long long)cfg->stall_after_ms);
	if (fresh & INJ_BAD_DSQ)
		printf("scx_ktstr: injected dispatch to non-existent DSQ 0xbad0d5c after %llums (--bad-dsq-after)\n",
		       (unsigned long long)cfg->bad_dsq_after_ms);
	if (fresh & INJ_EXIT)
		printf("scx_ktstr: exiting with code %lld after %llums (--exit-after)\n",
		       (long long)cfg->exit_code, (unsigned long long)cfg->exit_after_ms);
	if (fresh)
		fflush(stdout);
	*seen = now;
}

static void print_armed(const struct config *cfg)
{
	if (cfg->error_after_ms)
		printf("scx_ktstr: armed --error-after %llums\n",
		       (unsigned long long)cfg->error_after_ms);
	if (cfg->stall_after_ms)
		printf("scx_ktstr: armed --stall-after %llums (timeout_ms=%u)\n",
		       (unsigned long long)cfg->stall_after_ms, cfg->timeout_ms);
	if (cfg->exit_after_ms)
		printf("scx_ktstr: armed --exit-after %llums (code %lld)\n",
		       (unsigned long long)cfg->exit_after_ms, (long long)cfg->exit_code);
	if (cfg->bad_dsq_after_ms)
		printf("scx_ktstr: armed --bad-dsq-after %llums\n",
		       (unsigned long long)cfg->bad_dsq_after_ms);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	struct config cfg = {};
	struct scx_ktstr *skel;
	struct bpf_link *link;
	__u32 seen = 0;
	__u64 ecode;
	int kind, ret;

	ret = parse_args(argc, argv, &cfg);
	if (ret >= 0)
		return ret;

	libbpf_set_print(libbpf_print_fn);
	signal(SIGINT, sigint_handler);
	signal(SIGTERM, sigint_handler);
restart:
	skel = SCX_OPS_OPEN(ktstr_ops, scx_ktstr);
	skel->rodata->fifo_sched = cfg.fifo;
	skel->rodata->error_after_ns = cfg.error_after_ms * 1000000ULL;
	skel->rodata->stall_after_ns = cfg.stall_after_ms * 1000000ULL;
	skel->rodata->exit_after_ns = cfg.exit_after_ms * 1000000ULL;
	skel->rodata->bad_dsq_after_ns = cfg.bad_dsq_after_ms * 1000000ULL;
	skel->rodata->exit_code = cfg.exit_code;
	if (cfg.timeout_ms)
		skel->struct_ops.ktstr_ops->timeout_ms = cfg.timeout_ms;

	SCX_OPS_LOAD(skel, ktstr_ops, scx_ktstr, uei);
	link = SCX_OPS_ATTACH(skel, ktstr_ops, scx_ktstr);
	print_armed(&cfg);

	while (!exit_req && !UEI_EXITED(skel, uei)) {
		__u64 stats[NR_STATS];

		read_stats(skel, stats);
		if (cfg.stall_after_ms)
			printf("local=%llu global=%llu stalled=%llu\n", stats[0], stats[1],
			       stats[2]);
		else
			printf("local=%llu global=%llu\n", stats[0], stats[1]);
		fflush(stdout);
		report_injections(skel, &cfg, &seen);
		sleep(1);
	}
	report_injections(skel, &cfg, &seen);

	bpf_link__destroy(link);
	kind = skel->data->uei.kind;
	ecode = UEI_REPORT(skel, uei);
	scx_ktstr__destroy(skel);

	if (!exit_req && UEI_ECODE_RESTART(ecode))
		goto restart;
	if (kind >= EXIT_KIND_ERROR)
		return 1;
	return UEI_ECODE_USER(ecode) & 0xff;
}
