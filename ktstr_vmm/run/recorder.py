"""Guest frames -> the run directory, while the run is live.

The runner feeds every decoded wire frame here. The recorder appends scheduler output to
sched.log, writes one event per lifecycle step to events.jsonl, and keeps what evaluation
needs (SysRdy, TestResult, SchedExit, Exit, the agent's own output). Every payload has
already been validated by guestmsg.parse_payload; bad ones are counted, never raised.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from ..evaluate.measures import lines, measures
from ..evaluate.workstats import stats_line
from ..fsutil import append_line
from ..guest import messages as gm
from ..guest.messages import parse_payload
from ..guest.wire import Frame, MsgType
from ..rundir import bpf_progs
from ..rundir.layout import SCHED_LOG, RunDir, write_bench_output
from ..trace.files import TraceWriter

log = logging.getLogger(__name__)

# Init stages in the seed's words (RunOutcome.init_stage).
STAGE_NOT_STARTED, STAGE_INIT, STAGE_PAYLOAD = "not_started", "init_started", "payload_started"


@dataclass
class GuestState:
    sysrdy: gm.SysRdy | None = None
    sysrdy_at: float | None = None
    test_result: gm.TestResult | None = None
    sched_exit: gm.SchedExit | None = None
    exec_exit: gm.ExecExit | None = None
    exit: gm.Exit | None = None
    crash: list[str] = field(default_factory=list)
    agent_output: list[str] = field(default_factory=list)
    lifecycle: list[gm.Lifecycle] = field(default_factory=list)
    probe_output: list[str] = field(default_factory=list)
    bad_payloads: int = 0
    dmesg_sched_ext: list[str] = field(default_factory=list)
    benches: list[gm.BenchOutput] = field(default_factory=list)

    def measure_lines(self) -> tuple[str, ...]:
        """The workloads' measures after the seed's stats lines (evaluate/measures)."""

        tr = self.test_result
        return tuple(lines(measures(tr.measures if tr else (), tuple(self.benches))))

    @property
    def init_stage(self) -> str:
        phases = {lc.phase for lc in self.lifecycle}
        if phases & {"workload_started", "scx_enabled", "baseline"}:
            return STAGE_PAYLOAD
        return STAGE_INIT if self.sysrdy else STAGE_NOT_STARTED

    def phase_reached(self, phase: str) -> bool:
        return any(lc.phase == phase for lc in self.lifecycle)


class Recorder:
    """Dispatches frames; thread-safe for the snapshot waiters (control thread)."""

    def __init__(self, run: RunDir) -> None:
        self.run = run
        self.state = GuestState()
        self._lock = threading.Lock()
        self._replies: dict[int, gm.SnapshotReply] = {}
        self._reply_cv = threading.Condition(self._lock)
        self.trace = TraceWriter(run.path)

    def handle(self, frame: Frame) -> None:
        p = parse_payload(frame)
        s = self.state
        if isinstance(p, gm.PayloadError):
            s.bad_payloads += 1
            log.debug("bad payload: %s", p)
            return
        if isinstance(p, gm.Blob) and p.type == MsgType.TracePages:
            self.trace.pages(p.data)
        elif isinstance(p, gm.JsonMessage) and p.type == MsgType.TraceFormats:
            self.trace.formats(p.data)
            missing = [str(x) for x in p.data.get("missing") or ()][:20]
            self.run.append_event("trace", state="started",
                                  events=len(p.data.get("enabled") or ()), missing=missing)
        elif isinstance(p, gm.JsonMessage) and p.type == MsgType.TraceStats:
            self.trace.stats(p.data)
        elif isinstance(p, gm.SchedLogLine):
            append_line(self.run / SCHED_LOG, p.text)
        elif isinstance(p, gm.DmesgRecord):
            if "sched_ext" in p.text:
                s.dmesg_sched_ext.append(p.text)
                self.run.append_event("kmsg", text=p.text[:500])
        elif isinstance(p, gm.SysRdy):
            s.sysrdy, s.sysrdy_at = p, time.monotonic()
            self.run.append_event("sysrdy", release=p.release, observed=p.observed_notation(),
                                  scx_state=p.scx_state)
        elif isinstance(p, gm.Lifecycle):
            s.lifecycle.append(p)
            self.run.append_event("lifecycle", phase=p.phase, guest_ms=p.t_ms,
                                  **{k: v for k, v in (("pid", p.pid), ("ops", p.ops),
                                                       ("detail", p.detail)) if v})
        elif isinstance(p, gm.Scenario):
            kind = {MsgType.ScenarioStart: "scenario_start", MsgType.ScenarioEnd: "scenario_end",
                    MsgType.ScenarioPause: "scenario_pause"}.get(p.type, "scenario_resume")
            self.run.append_event(kind, name=p.name, guest_ms=p.t_ms)
        elif isinstance(p, gm.SchedExit):
            if s.sched_exit is None:
                s.sched_exit = p
            self.run.append_event("sched_exit", reason=p.reason, state=p.state, code=p.code,
                                  signal=p.signal, kmsg=p.kmsg, guest_ms=p.t_ms)
        elif isinstance(p, gm.ExecExit):
            s.exec_exit = p
            self.run.append_event("exec_exit", pid=p.pid, code=p.code, signal=p.signal, how=p.how)
        elif isinstance(p, gm.TestResult):
            s.test_result = p
            self.run.append_event("test_result", stats=stats_line(p))
        elif isinstance(p, gm.BenchOutput):
            if len(s.benches) < 64:
                s.benches.append(p)
                write_bench_output(self.run, p.group, p)
            self.run.append_event("bench", name=p.name, group=p.group, exit=p.exit,
                                  wall_ms=p.wall_ns // 1_000_000)
        elif isinstance(p, gm.Exit):
            s.exit = p
            self.run.append_event("exit", code=p.code, reason=p.reason)
        elif isinstance(p, gm.BpfProgs):
            bpf_progs.write(self.run.path, p)
        elif isinstance(p, gm.SnapshotReply):
            with self._reply_cv:
                self._replies[p.id] = p
                self._reply_cv.notify_all()
        elif isinstance(p, gm.Text):
            if frame.type == MsgType.Crash:
                s.crash.append(p.text)
                self.run.append_event("crash", text=p.text[:2000])
            elif frame.type == MsgType.ProbeOutput:
                s.probe_output.append(p.text)
            else:
                s.agent_output.append(p.text)

    def wait_reply(self, req_id: int, timeout: float) -> gm.SnapshotReply | None:
        deadline = time.monotonic() + timeout
        with self._reply_cv:
            while req_id not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._reply_cv.wait(left)
            return self._replies.pop(req_id)
