/* The scheduling trace: the kernel's sched tracepoints recorded into per-CPU ring buffers
 * of a tracefs instance of our own, streamed to the host as raw ring-buffer pages while
 * the run goes on (docs/wire.md: TraceFormats, TracePages, TraceStats). The host decodes
 * them with the formats the kernel publishes (ktstr_vmm trace decoder). */
#ifndef KTSTR_TRACE_H
#define KTSTR_TRACE_H

#include "spec.h"

/* Set up the instance, enable the events (a missing one is named in a warning and left
 * out), send TraceFormats. Does nothing when the spec turned the trace off. */
void trace_start(const struct spec *s);
/* Stream what the ring buffers hold, within the spec's wire budget (called from pump()). */
void trace_pump(void);
/* Stop recording, send what is left in the buffers and TraceStats. */
void trace_stop(void);

#endif
