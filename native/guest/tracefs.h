/* tracefs: the kernel's sched_ext debug dump on the host's request (SnapshotRequest ->
 * SnapshotReply), the run's probes (dynamic events and tracefs writes from the spec), and
 * the tail of the trace buffer after the run (ProbeOutput). */
#ifndef KTSTR_TRACEFS_H
#define KTSTR_TRACEFS_H

#include "spec.h"

#define TRACEFS "/sys/kernel/tracing"

/* Serve one SnapshotRequest (its JSON payload): reply with SnapshotReply. */
void tracefs_snapshot(const char *req);
/* Arm the spec's `probe=` lines before the scheduler starts. */
void tracefs_arm_probes(const struct spec *s);
/* After the scheduler stopped: the trace tail as ProbeOutput (if probes were armed). */
void tracefs_send_probe_output(const struct spec *s);

#endif
