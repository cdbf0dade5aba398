"""One run end to end (the port of ktstr's run_ktstr_test_inner_impl), kept thin: each
phase's work lives in its own module (kernel, schedulers, agent, initramfs, engine,
recorder, outcome, evaluate, dumps); this module orders them and owns the run directory's
status.

Phases (status.json): pending -> building -> booting -> running -> evaluating -> done,
or interrupted on Ctrl-C / SIGTERM / `ktstr stop`. Bad input is refused before the run
directory exists, so a usage error never leaves a half-made run behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..engine.base import BootSpec, Machine
from ..engine.select import select_engine
from ..errors import Interrupted, KtstrError, UsageError
from ..evaluate import thresholds, workstats
from ..evaluate import types as ev
from ..evaluate.compare import bound_failures, parse_fail_on
from ..evaluate.judge import evaluate, result_json
from ..evaluate.measures import measures, to_json
from ..evaluate.sections import scheduler_label
from ..fsutil import atomic_write_json, atomic_write_text
from ..guest.agent import build_agent
from ..guest.benchtools import bench_files
from ..guest.initramfs import build_initramfs
from ..guest.spec import bench_guest_path, render_guest_spec
from ..guest.userland import guest_userland
from ..guest.wire import Decoder, MsgType, encode
from ..introspect.symbols import kernel_symbols
from ..kernel.kernels import Kernel, check_kernel, kernel_hz, resolve_kernel
from ..kernel.schedulers import Scheduler, resolve_scheduler
from ..monitor.monitor import KALLSYMS, Monitor, MonitorUnavailable
from ..rundir.dumps import (
    clear_stale_dumps,
    dump_to_json,
    placeholder_reason,
    write_failure_dump,
    write_placeholder_failure_dump_if_missing,
)
from ..rundir.layout import (
    BPF_GLOBALS,
    CONSOLE,
    EVENTS,
    MONITOR,
    RESULT,
    SCHED_LOG,
    SHELL_LOG,
    SNAPSHOTS,
    RunDir,
)
from ..rundir.timeline import read_events, render_timeline
from ..spec import RunSpec
from ..trace.files import LATENCY, Trace, build_index
from ..trace.latency import analyse, apply_to_verdict, check, summary_json
from .captures import VM_GONE, CaptureSession, check_spec
from .control import ControlServer
from .outcome import build_outcome
from .recorder import Recorder
from .shellhub import SHELL_KIND, ShellHub, ShellLog, hold_ms

log = logging.getLogger(__name__)

PhaseCallback = Callable[[str, str, str], None]  # (run_id, phase, detail)
# (primary run dir, spec, outcome, verdict, on_phase) -> the auto-repro section or None
ReproHook = Callable[[Path, RunSpec, ev.RunOutcome, ev.Verdict, PhaseCallback], str | None]

CMDLINE = ("console=ttyS0 panic=-1 nokaslr oops=panic panic_on_warn=0 8250.nr_uarts=2 "
           "no_timer_check")  # TCG on a busy host can trip the IO-APIC timer check
# QEMU carries the wire on a virtio-serial port: ~13 MB/s under TCG against ~0.15 MB/s
# for COM2 (one interrupt per 16-byte FIFO), which matters for dumps and probe traces.
# The KVM engine has only the two UARTs and ignores this knob.
WIRE = "virtio"
POWEROFF_GRACE_S = 15.0
# + 1 s per vCPU: no wire byte by then means the guest kernel hung. $KTSTR_BOOT_STALL_S
# raises it where every boot is slow (the nested test bed: L2 under kvm_amd under TCG).
BOOT_STALL_S = float(os.environ.get("KTSTR_BOOT_STALL_S") or 45.0)
# How long a snapshot waits for the agent's dump; $KTSTR_SNAPSHOT_WAIT_S where the wire is
# slow (nested, L1 sets 80: a dump over COM2 took longer than 20 s there).
SNAPSHOT_WAIT_S = float(os.environ.get("KTSTR_SNAPSHOT_WAIT_S") or 20.0)
BOOT_RETRIES = 1  # after the agent's Exit frame, the guest has this long to power off
CONSOLE_TAIL = 4 << 20


@dataclass(frozen=True)
class Prepared:
    spec: RunSpec
    kernel: Kernel
    scheduler: Scheduler | None
    engine: Any
    engine_warning: str | None
    initramfs: Path
    guest_spec: str
    userland_missing: tuple[str, ...] = ()  # the guest shell's parts the host lacks


def prepare(spec: RunSpec) -> Prepared:
    """Resolve and build everything a run needs (kernel, scheduler, engine, agent,
    initramfs); raises the one-line errors before any run directory exists."""

    check_spec(spec)
    kernel = resolve_kernel(spec.kernel)
    check_kernel(kernel)
    sched = None if spec.scheduler in ("", "none", "eevdf") else resolve_scheduler(spec.scheduler, kernel)
    engine, warning = select_engine(spec.engine)
    files: dict[str, Path] = {}
    guest_path = None
    if sched is not None:
        guest_path = f"/usr/bin/{sched.path.name}"
        files[guest_path] = sched.path
    files.update(bench_files(spec.workload, bench_guest_path))
    hold = hold_ms(spec.timeout, spec.topology.vcpus) if spec.kind == SHELL_KIND else 0
    text = render_guest_spec(spec, guest_path, kallsyms_to_ask(kernel),
                             wire=WIRE if getattr(engine, "name", "") == "qemu" else "serial",
                             shell_hold_ms=hold)
    userland = guest_userland()
    for guest, host in userland.files.items():
        files.setdefault(guest, host)
    initrd = build_initramfs(build_agent(), text, files, links=userland.links, data=userland.data)
    return Prepared(spec, kernel, sched, engine, warning, initrd, text, userland.missing)


def kallsyms_to_ask(kernel: Kernel) -> list[str]:
    """The monitor's symbols this kernel build has not told us yet. With nokaslr they
    are the same on every boot, so once cached (symbols.py, by build id) the guest is
    spared its ~1.5-3 s scan of /proc/kallsyms."""

    return kernel_symbols(kernel.build_id).missing(KALLSYMS)


class Run:
    """One VM run: boot, record, monitor, judge. `repro` is the orchestrator's hook after the
    first judgement (run/orchestrate.repro_gate): the `--- auto-repro ---` section, or None."""

    def __init__(self, prep: Prepared, rd: RunDir, on_phase: PhaseCallback | None,
                 repro: ReproHook | None = None) -> None:
        self.prep, self.spec, self.rd = prep, prep.spec, rd
        self.repro = repro
        self.on_phase = on_phase or (lambda *_: None)
        self.machine: Machine | None = None
        self.recorder = Recorder(rd)
        self.stop_requested = threading.Event()
        self.t0 = time.monotonic()
        self.boot_started: float | None = None
        self.snapshot_seq = 0
        self.wire_lock = threading.Lock()
        self.monitor: Monitor | MonitorUnavailable | None = None
        self.real_dump: Path | None = None
        self.freeze_lock = threading.Lock()  # one freeze at a time (captures, dumps, pause)
        self.user_paused_at: float | None = None
        self.captures = CaptureSession(rd, self.spec, lambda: self.machine, self.freeze_lock)
        self.monitor_samples: list[dict] = []
        self.monitor_t0: float | None = None
        self.shells: ShellHub | None = None
        self.shell_log = ShellLog(rd / SHELL_LOG, self.t0)

    # ------------------------------------------------------------------ phases
    def phase(self, phase: str, detail: str = "", **fields: Any) -> None:
        self.rd.write_status(phase, **fields)
        self.rd.append_event("phase", phase=phase, **({"detail": detail} if detail else {}))
        self.on_phase(self.rd.run_id, phase, detail)

    def execute(self) -> dict[str, Any]:
        old = _install_term_handler()
        control = None
        try:
            clear_stale_dumps(self.rd.path, self.spec.name)
            if self.prep.engine_warning:
                self.rd.append_event("warning", text=self.prep.engine_warning)
            for text in self.prep.userland_missing:
                self.rd.append_event("warning", text=text)
            atomic_write_text(self.rd / "guest-spec.txt", self.prep.guest_spec)
            control = ControlServer(self.rd.path, {
                "pause": self.ctl_pause, "resume": self.ctl_resume,
                "snapshot": self.ctl_snapshot, "stop": self.ctl_stop, "status": self.ctl_status},
                streams={"shell": self.ctl_shell})
            timed_out, elapsed = self.boot_and_drive(self.prep.initramfs)
            self.phase("evaluating")
            result = self.judge(timed_out, elapsed)
            self.phase("done", result["verdict"])
            return result
        except (KeyboardInterrupt, Interrupted):
            self.close_machine()
            self.rd.write_status("interrupted")
            self.rd.append_event("interrupted")
            self.on_phase(self.rd.run_id, "interrupted", "")
            return {"run_id": self.rd.run_id, "run_dir": str(self.rd.path), "phase": "interrupted",
                    "verdict": "interrupted"}
        except BaseException:
            self.close_machine()
            with contextlib.suppress(Exception):
                self.rd.write_status("interrupted", error="internal error; see the traceback")
            raise
        finally:
            if control is not None:
                control.close()
            self.close_machine()
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, old)

    def boot_and_drive(self, initrd: Path) -> tuple[bool, float]:
        spec, k = self.spec, self.prep.kernel
        workdir = Path(f"/dev/shm/ktstr-{self.rd.run_id}")
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        cmdline = " ".join([CMDLINE, os.environ.get("KTSTR_GUEST_CMDLINE_EXTRA", "")]).strip()
        boot = BootSpec(kernel=k.bzimage, vmlinux=k.vmlinux, initramfs=initrd, cmdline=cmdline,
                        topology=spec.topology, memory_mib=spec.memory,
                        console_path=self.rd / CONSOLE, workdir=workdir,
                        extra={"wire": WIRE})
        (self.rd / SCHED_LOG).touch()
        retries = BOOT_RETRIES
        stall_s = BOOT_STALL_S + spec.topology.vcpus
        m, decoder, deadline = self.start_machine(boot)
        timed_out = False
        exit_seen_at = None
        running = False
        while True:
            data = m.read_wire(0.1)
            if data:
                for frame in decoder.feed(data):
                    self.recorder.handle(frame)
            st = self.recorder.state
            self.captures.on_guest(st)
            if (not running and retries and stall_s < spec.timeout
                    and time.monotonic() - self.boot_started > stall_s
                    and decoder.stats()["bytes_in"] == 0):
                # Not a word from the agent: the guest kernel hung while booting (seen about
                # once in a few hundred TCG boots, at SMP or ACPI bring-up). That is no verdict
                # on the scheduler: boot again, once, and say so.
                retries -= 1
                self.rd.append_event("boot_retry", after_s=round(stall_s, 1),
                                     console=_last_line(self.rd / CONSOLE))
                m.kill(reason="boot hang")
                m.close()
                m, decoder, deadline = self.start_machine(boot)
                continue
            if not running and st.sysrdy is not None:
                running = True
                self.start_monitor(st.sysrdy)
                self.phase("running", f"guest ready in {st.sysrdy_at - self.boot_started:.1f}s")
            if st.exit is not None and exit_seen_at is None:
                exit_seen_at = time.monotonic()
            if m.wait(0) is not None:
                break
            now = time.monotonic()
            if self.stop_requested.is_set():
                self.rd.append_event("stopped", by="user")
                m.kill(reason="stopped")
                break
            if exit_seen_at is not None and now - exit_seen_at > POWEROFF_GRACE_S:
                self.rd.append_event("warning", text="guest did not power off after Exit; killed")
                m.kill()
                break
            if now > deadline and exit_seen_at is None:
                timed_out = True
                where = m.vcpu_rips() if hasattr(m, "vcpu_rips") else []
                self.rd.append_event("watchdog", timeout_s=spec.timeout,
                                     **({"vcpu_rips": [f"{r:#x}" for r in where]} if where else {}))
                m.kill(reason="watchdog")
                break
        # drain what is left on the wire
        for _ in range(20):
            data = m.read_wire(0.05)
            if not data:
                break
            for frame in decoder.feed(data):
                self.recorder.handle(frame)
        for frame in decoder.finish():
            self.recorder.handle(frame)
        self.wire_stats = decoder.stats()
        self.recorder.trace.close()
        self.captures.on_guest(self.recorder.state)
        self.captures.finish(VM_GONE)
        self.monitor_report = self.stop_monitor()
        self.exit_reason = m.exit_reason()
        if timed_out:
            why = f"the watchdog ended the run after {spec.timeout:.0f}s"
        elif self.exit_reason == "stopped":
            why = "the run was stopped"
        else:
            why = f"the run is over (VM {self.exit_reason})"
        self.close_shells(f"{why}; the shell is closed")
        self.rd.append_event("vm_exit", reason=self.exit_reason, wire=self.wire_stats)
        elapsed = time.monotonic() - self.boot_started
        self.close_machine()
        return timed_out, elapsed

    def start_machine(self, boot: BootSpec) -> tuple[Machine, Decoder, float]:
        spec = self.spec
        self.boot_started = time.monotonic()
        self.close_shells("the guest is booted again; the shell is closed")
        self.machine = m = self.prep.engine.start(boot)
        if getattr(m, "has_shell", False):
            self.shells = ShellHub(m, self.shell_log, self.rd.append_event)
        self.phase("booting", f"{m.engine}/{m.accel}", engine=f"{m.engine}/{m.accel}",
                   watchdog_deadline=time.time() + spec.timeout,
                   **({"vm_pid": m.pid} if m.pid else {}))
        return m, Decoder(), self.boot_started + spec.timeout

    # ------------------------------------------------------------------ monitor
    def start_monitor(self, sysrdy) -> None:
        """Host-side sampling of the guest's run queues from the engine's RAM mapping."""
        m, spec, k = self.machine, self.spec, self.prep.kernel
        try:
            mon = Monitor.create(m.ram(), sysrdy, k.vmlinux, self.rd / MONITOR,
                                 spec.monitor_interval_ms / 1000, spec.topology.vcpus,
                                 build_id=k.build_id, hz=kernel_hz(k),
                                 globals_out=self.rd / BPF_GLOBALS, remember_symbols=True)
        except KtstrError as e:
            mon = MonitorUnavailable(e.one_line())
        if not isinstance(mon, MonitorUnavailable):
            mon.host_vcpus = getattr(m, "vcpu_host_times", None)
        self.monitor = mon
        self.captures.monitor_ready(mon)
        if isinstance(mon, MonitorUnavailable):
            self.rd.append_event("monitor", state="unavailable", reason=mon.reason)
            return
        self.rd.append_event("monitor", state="started", interval_ms=spec.monitor_interval_ms)
        mon.start(on_exit=self.on_scheduler_exit)

    def on_scheduler_exit(self) -> None:
        """The monitor saw the scheduler leave (exit kind set): freeze the VM at once, read
        its state as the real failure dump, let the guest finish. Monitor thread."""
        mon, m = self.monitor, self.machine
        if not isinstance(mon, Monitor) or m is None or not mon.scheduler_failed():
            return
        paused = False
        if self.user_paused_at is None:
            mon.wait_exit_info()  # the exit's message is written just after its kind
        self.freeze_lock.acquire()
        t0 = time.monotonic()
        try:
            if self.user_paused_at is None:
                m.pause()
                paused = True
            t0 = time.monotonic()
            dump = mon.capture()
            frozen_ms = round((time.monotonic() - t0) * 1000, 1)
            self.real_dump = write_failure_dump(self.rd.path, self.spec.name, dump)
            self.rd.append_event("failure_dump", file=self.real_dump.name,
                                 exit_kind=mon.exit_kind(), maps=len(dump.maps),
                                 capture_ms=frozen_ms)
        except (KtstrError, OSError) as e:
            self.rd.append_event("warning", text=f"could not capture the failure dump: {e}")
        finally:
            if paused:
                with contextlib.suppress(KtstrError, OSError):
                    m.resume()
                self.captures.frozen_by_others(time.monotonic() - t0)
            self.freeze_lock.release()

    def stop_monitor(self) -> ev.MonitorReport | None:
        mon, self.monitor = self.monitor, None
        if mon is None:
            return None
        if isinstance(mon, MonitorUnavailable):
            return thresholds.unavailable_report(mon.reason, thresholds_enabled=False)
        samples = mon.stop()
        report = thresholds.report(samples, thresholds.Thresholds.for_vcpus(self.spec.topology.vcpus))
        self.monitor_samples, self.monitor_t0 = samples, mon.started_at
        g = mon.globals_recorder
        self.rd.append_event(
            "monitor", state="stopped", samples=len(mon.samples),
            sample_ms=round(mon.sample_seconds * 1000, 1),
            globals_reads=g.reads if g else 0,
            globals_ms=round(g.seconds * 1000, 1) if g else 0.0)
        return report

    def index_trace(self) -> dict[str, Any] | None:
        """Decode the streamed trace pages into the indexed records (tracefiles.py)."""

        t0 = time.monotonic()
        try:
            index = build_index(self.rd.path)
        except (OSError, ValueError) as e:
            self.rd.append_event("warning", text=f"could not index the trace: {e}")
            return None
        if index is not None:
            self.rd.append_event("trace", state="indexed", events=index["events"],
                                 index_s=round(time.monotonic() - t0, 3), lost=index["lost"],
                                 notes=index["notes"])
        return index

    def judge(self, timed_out: bool, elapsed: float) -> dict[str, Any]:
        spec, st = self.spec, self.recorder.state
        self.trace_index = self.index_trace()
        console = _tail(self.rd / CONSOLE, CONSOLE_TAIL)
        sched_log = _tail(self.rd / SCHED_LOG, CONSOLE_TAIL)
        requested = spec.topology.notation
        observed = st.sysrdy.observed_notation() if st.sysrdy else None
        notes: tuple[str, ...] = ()
        if observed and observed != requested:
            notes = (f"topology mismatch: requested {requested}, guest observed {observed}",)
        outcome = build_outcome(
            test=spec.name, scheduler=self.prep.scheduler.name if self.prep.scheduler else None,
            topology=requested, state=st, sched_log=sched_log, console=console,
            timed_out=timed_out,
            timings=ev.Timings(elapsed_s=elapsed, vm_timeout_s=spec.timeout,
                               duration_s=spec.duration_s,
                               timeout_set=spec.timeout_s is not None),
            expect_err=spec.expect_err, extra_notes=notes, timeline=self.timeline_text(elapsed),
            monitor=getattr(self, "monitor_report", None) if self.prep.scheduler else None)
        findings = self.captures.judge(self.monitor_samples, self.monitor_t0)
        outcome = self.captures.outcome(outcome, findings)
        verdict = evaluate(outcome)
        if notes and verdict.kind == "pass":
            reason = notes[0]
            verdict = replace(verdict, kind="inconclusive", reason=reason,
                              message=f"ktstr_test '{spec.name}' [topo={requested}] inconclusive:\n  {reason}",
                              sections={"info": reason, **verdict.sections})
        section = (self.repro(self.rd.path, spec, outcome, verdict, self.on_phase)
                   if self.repro is not None else None)
        if section is not None:
            outcome = replace(outcome, repro=section)
            verdict = evaluate(outcome)
        verdict = self.judge_latency(verdict, requested)
        verdict = _apply_fail_on(verdict, spec, st)
        artifacts = []
        if verdict.kind == "fail" or (verdict.expected_failure):
            stage = outcome.init_stage or "not_started"
            p = write_placeholder_failure_dump_if_missing(
                self.rd.path, spec.name, placeholder_reason(stage, verdict.bug_summary))
            if p:
                artifacts.append(p.name)
        tr = st.test_result
        result = result_json(
            verdict,
            run_id=self.rd.run_id, run_dir=str(self.rd.path), name=spec.name,
            engine=self.machine_engine(), topology={"preset": spec.preset,
                                                   "requested": requested, "observed": observed},
            scheduler=self.prep.scheduler.name if self.prep.scheduler else None,
            sched_args=list(spec.sched_args),
            kernel={"version": self.prep.kernel.version, "build_id": self.prep.kernel.build_id},
            stats=_stats_json(tr, st) if tr else None,
            timings={"boot_to_ready_s": round(st.sysrdy_at - self.boot_started, 3)
                     if st.sysrdy_at and self.boot_started else None,
                     "total_s": round(time.monotonic() - self.t0, 3),
                     "vm_s": round(elapsed, 3)},
            timed_out=timed_out, exit_reason=self.exit_reason,
            guest_exit_code=st.exit.code if st.exit else None,
            wire=self.wire_stats, parent=spec.parent, kind=spec.kind,
            **self.captures.result_fields(findings),
            artifacts=sorted({*artifacts, *(p.name for p in self.rd.path.iterdir()
                                            if p.is_file() and not p.name.startswith("."))}))
        if getattr(self, "latency_summary", None):
            result["latency"] = self.latency_summary
        atomic_write_json(self.rd / RESULT, result)
        return result

    def judge_latency(self, verdict, topo: str):
        """The trace's latency section and thresholds (latency.py), over the workload."""

        if getattr(self, "trace_index", None) is None:
            return verdict
        trace = Trace.open(self.rd.path)
        if trace is None:
            return verdict
        try:
            st = self.recorder.state
            t0 = next((lc.t_ms for lc in st.lifecycle if lc.phase == "workload_started"), None)
            t1 = next((lc.t_ms for lc in st.lifecycle if lc.phase == "workload_done"), None)
            report = analyse(trace, t0 * 1_000_000 if t0 else None,
                             t1 * 1_000_000 if t1 else None)
        finally:
            trace.close()
        atomic_write_json(self.rd / LATENCY, report.to_json())
        self.latency_summary = summary_json(report)
        violations = check(report, self.spec.max_wakeup_latency_ms, self.spec.max_runnable_wait_ms)
        sched = self.prep.scheduler.name if self.prep.scheduler else None
        header = f"ktstr_test '{self.spec.name}'{scheduler_label(sched)} [topo={topo}] "
        return apply_to_verdict(verdict, report, violations, header)

    def timeline_text(self, elapsed: float) -> str:
        spec, k = self.spec, self.prep.kernel
        header = (f"kernel {k.version}, topology {spec.topology.notation} "
                  f"({spec.topology.vcpus} cpus), scheduler "
                  f"{self.prep.scheduler.name if self.prep.scheduler else 'none'}, "
                  f"scenario {spec.name}, {elapsed:.1f}s")
        body = render_timeline(read_events(self.rd / EVENTS), header)
        return f"--- timeline ---\n{body}" if body else ""

    def machine_engine(self) -> str:
        return getattr(self, "_engine_label", None) or (
            f"{self.machine.engine}/{self.machine.accel}" if self.machine else "?")

    def close_shells(self, why: str) -> None:
        hub, self.shells = self.shells, None
        if hub is not None:
            hub.close(why)

    def close_machine(self) -> None:
        self.close_shells("the run is over; the shell is closed")
        with contextlib.suppress(KtstrError, OSError):
            self.stop_monitor()
        m = self.machine
        if m is not None:
            self._engine_label = f"{m.engine}/{m.accel}"
            with contextlib.suppress(Exception):
                m.close()
        wd = getattr(self, "workdir", None)
        if wd is not None:
            shutil.rmtree(wd, ignore_errors=True)

    # ------------------------------------------------------------------ control
    def _live(self) -> Machine:
        m = self.machine
        if m is None or m.wait(0) is not None:

            raise UsageError("the guest is not running")
        return m

    def ctl_pause(self, req: dict) -> dict:
        with self.freeze_lock:
            self._live().pause()
            if self.user_paused_at is None:
                self.user_paused_at = time.monotonic()
                self.captures.user_paused = True
        self.rd.append_event("pause")
        return {"paused": True}

    def ctl_resume(self, req: dict) -> dict:
        with self.freeze_lock:
            self._live().resume()
            if self.user_paused_at is not None:
                self.captures.frozen_by_others(time.monotonic() - self.user_paused_at)
                self.user_paused_at = None
                self.captures.user_paused = False
        self.rd.append_event("resume")
        return {"paused": False}

    def ctl_stop(self, req: dict) -> dict:
        self.stop_requested.set()
        return {"stopping": True}

    def ctl_shell(self, req: dict, conn) -> None:
        """A shell on the guest for a control client (docs/shell.md); takes over `conn`."""
        from ..errors import UsageError
        from ..guest.spec import enable_timeout_ms

        hub, m = self.shells, self.machine
        phase = (self.rd.read_json("status.json") or {}).get("phase")
        if phase in ("evaluating", "done", "interrupted"):
            raise UsageError(f"run {self.rd.run_id} has ended ({phase}); there is no guest for a shell")
        if m is not None and not getattr(m, "has_shell", False):
            raise UsageError(f"this run's {m.engine} VM was started without a shell channel",
                             "start the run again (shells need the port it is booted with)")
        if hub is None or self.recorder.state.sysrdy is None:
            raise UsageError("the guest is not ready yet; try again in a moment")
        # a primary shell waits for the scheduler to be enabled
        primary_s = enable_timeout_ms(self.spec.topology.vcpus) / 1000 + 30
        hub.attach(conn, req, primary_s)

    def ctl_status(self, req: dict) -> dict:
        return {"run_id": self.rd.run_id, **(self.rd.read_json("status.json") or {})}

    def ctl_snapshot(self, req: dict) -> dict:
        """Ask the agent for the kernel's own sched_ext dump (SysRq-D via the trace event)."""
        m = self._live()
        if self.recorder.state.sysrdy is None:

            raise UsageError("the guest is not ready yet; try again in a moment")
        with self.wire_lock:
            self.snapshot_seq += 1
            req_id = self.snapshot_seq
            m.write_wire(encode(MsgType.SnapshotRequest, f'{{"id": {req_id}, "kind": "dump"}}'))
        reply = self.recorder.wait_reply(req_id, SNAPSHOT_WAIT_S)
        if reply is None:

            raise UsageError(f"the guest did not answer the snapshot request within "
                             f"{SNAPSHOT_WAIT_S:.0f}s")
        if not reply.ok:

            raise UsageError(f"the guest could not take a dump: {reply.error}")
        stamp = f"{time.time() - self._start_wall():.3f}"
        (self.rd / SNAPSHOTS).mkdir(exist_ok=True)
        state_file = self.snapshot_state(stamp)
        txt = self.rd / SNAPSHOTS / f"{stamp}.sched_ext_dump.txt"
        atomic_write_text(txt, reply.dump)
        self.rd.append_event("snapshot", file=f"{SNAPSHOTS}/{txt.name}", truncated=reply.truncated)
        return {"file": str(txt), "bytes": len(reply.dump),
                **({"state": str(state_file)} if state_file else {})}

    def snapshot_state(self, stamp: str) -> Path | None:
        """snapshots/<t>.json: the same state as a failure dump, read with the VM paused."""
        mon, m = self.monitor, self.machine
        if not isinstance(mon, Monitor) or m is None:
            return None

        with self.freeze_lock:
            t0 = time.monotonic()
            if self.user_paused_at is None:
                m.pause()
            try:
                dump = mon.capture()
            finally:
                if self.user_paused_at is None:
                    m.resume()
                    self.captures.frozen_by_others(time.monotonic() - t0)
        path = self.rd / SNAPSHOTS / f"{stamp}.json"
        atomic_write_json(path, dump_to_json(dump))
        return path

    def _start_wall(self) -> float:
        return (self.rd.read_json("status.json") or {}).get("started", time.time())


def _apply_fail_on(verdict, spec: RunSpec, st) -> Any:
    """`--fail-on METRIC:>N` bounds on the run's own numbers: a pass that breaks one
    becomes a fail whose message names the number (`cyclictest.max_us 612us > 500us`)."""

    rules = [parse_fail_on(t) for t in spec.fail_on]
    if not rules or verdict.kind != "pass" or st.test_result is None:
        return verdict
    broken = bound_failures({"stats": _stats_json(st.test_result, st)}, rules)
    if not broken:
        return verdict
    reason = f"--fail-on {broken[0]}"
    body = "\n".join(f"  {b}" for b in broken)
    sections = {"details": body, **verdict.sections}
    message = (f"ktstr_test '{spec.name}' [topo={spec.topology.notation}] failed:\n{body}")
    if sections.get("stats"):
        message += f"\n\n--- stats ---\n{sections['stats']}"
    return replace(verdict, kind="fail", reason=reason, message=message, sections=sections)


def _stats_json(tr, st) -> dict[str, Any]:

    return {"summary": workstats.stats_line(tr), "duration_ms": tr.duration_ms, "notes": list(tr.notes),
            "groups": [g.__dict__ for g in workstats.groups(tr)],
            "measures": to_json(measures(tr.measures, tuple(st.benches))),
            "measure_lines": list(st.measure_lines()),
            "workers": [{**w.__dict__, "cpus": list(w.cpus)} for w in tr.workers]}


def _last_line(path: Path) -> str:
    lines = _tail(path, 4096).strip().splitlines()
    return lines[-1][:300] if lines else ""


def _tail(path: Path, limit: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - limit))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _install_term_handler():
    """SIGTERM behaves like Ctrl-C: the run is torn down and marked interrupted."""
    def handler(signum, frame):
        # One is enough: the teardown runs once. A second SIGTERM in the middle of it (a
        # gauntlet cell's PR_SET_PDEATHSIG fires once per dying thread of a killed worker
        # as the orphan is handed from thread to thread) left status.json saying "running".
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        return signal.signal(signal.SIGTERM, handler)
    return signal.getsignal(signal.SIGTERM)
