"""A run's scheduling trace as a Perfetto trace (ui.perfetto.dev, trace_processor).

The records become ftrace events exactly as Perfetto's own ftrace importer models them: one
TracePacket per chunk of a CPU's events holding an FtraceEventBundle (cpu = that CPU) of
FtraceEvents with sched_switch, sched_wakeup, sched_wakeup_new, sched_migrate_task,
sched_process_fork and sched_process_exit, so the UI draws its own CPU tracks and thread
state tracks. Built with the `perfetto` package's StreamingTraceProtoBuilder and the
protobuf classes it ships (no hand-built protobuf). The common pid of an event is the
task that was on the CPU at the time (from the switches before it).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..errors import UsageError
from .ftrace import (
    KIND_EXIT,
    KIND_FORK,
    KIND_MIGRATE,
    KIND_SWITCH,
    KIND_WAKEUP,
    KIND_WAKEUP_NEW,
)

BUNDLE_EVENTS = 2000


def _builder_classes():
    try:
        from perfetto.trace_builder.proto_builder import StreamingTraceProtoBuilder
    except ImportError as e:
        raise UsageError(f"the perfetto package is not installed ({e})",
                         "pip install perfetto (it is a dependency of ktstr-workstation; "
                         "re-run make setup)") from None
    return StreamingTraceProtoBuilder


def export(trace, out: Path, t0: int | None = None, t1: int | None = None) -> int:
    """Write `trace` (tracefiles.Trace) to `out` atomically; returns the events written."""
    builder_cls = _builder_classes()
    out = Path(out)
    if out.is_dir():
        raise UsageError(f"{out} is a directory", "give a file name, e.g. run.pftrace")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    n = 0
    try:
        with os.fdopen(fd, "wb") as f:
            b = builder_cls(f)
            name = trace.name
            for cpu, recs in sorted(trace.cpus.items()):
                cur = 0
                packet = None
                count = 0
                i = recs.find(t0) if t0 is not None else 0
                while i < len(recs):
                    ts, kind, _cpu, pid, a, bb, c, _eid = recs[i]
                    i += 1
                    if t1 is not None and ts >= t1:
                        break
                    if kind not in (KIND_SWITCH, KIND_WAKEUP, KIND_WAKEUP_NEW, KIND_MIGRATE,
                                    KIND_FORK, KIND_EXIT):
                        continue
                    if packet is None:
                        packet = b.create_packet()
                        packet.trusted_packet_sequence_id = 1
                        bundle = packet.ftrace_events
                        bundle.cpu = cpu
                        count = 0
                    ev = bundle.event.add()
                    ev.timestamp = ts
                    if kind == KIND_SWITCH:
                        ev.pid = a
                        s = ev.sched_switch
                        s.prev_comm, s.prev_pid, s.prev_prio, s.prev_state = name(a), a, c, bb
                        s.next_comm, s.next_pid = name(pid), pid
                        cur = pid
                    else:
                        ev.pid = cur
                        if kind in (KIND_WAKEUP, KIND_WAKEUP_NEW):
                            w = ev.sched_wakeup if kind == KIND_WAKEUP else ev.sched_wakeup_new
                            w.comm, w.pid, w.prio, w.target_cpu = name(pid), pid, bb, a
                            if kind == KIND_WAKEUP:
                                w.success = 1
                        elif kind == KIND_MIGRATE:
                            m = ev.sched_migrate_task
                            m.comm, m.pid, m.prio, m.orig_cpu, m.dest_cpu = name(pid), pid, c, a, bb
                        elif kind == KIND_FORK:
                            fk = ev.sched_process_fork
                            fk.parent_comm, fk.parent_pid = name(a), a
                            fk.child_comm, fk.child_pid = name(pid), pid
                        else:
                            ex = ev.sched_process_exit
                            ex.comm, ex.pid, ex.prio = name(pid), pid, a
                    n += 1
                    count += 1
                    if count >= BUNDLE_EVENTS:
                        b.write_packet(packet)
                        packet = None
                if packet is not None:
                    b.write_packet(packet)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return n
