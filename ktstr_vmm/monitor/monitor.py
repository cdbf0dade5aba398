"""The host-side monitor: samples the guest's run queues and sched_ext state from its
memory every `interval_s`, writes monitor.jsonl, and judges the samples at the end.

    mon = Monitor.create(ram, sysrdy, vmlinux, out, interval_s, vcpus)
    if isinstance(mon, MonitorUnavailable): report = mon.report()   # says why
    else: mon.start(on_exit=callback); ...; report = mon.stop()

monitor.jsonl holds one JSON object per sample:
`{"t": s since start, "cpus": [{"cpu", "nr_running", "scx_nr_running", "local_dsq_nr",
"clock_ns", "scx_flags", "curr_pid", "curr_comm", "curr_class"}, ...],
"scx": {"state", "root", "exit_kind", "events": {...}}, "flags": [...]}`. A CPU that could
not be read has `"error"` instead of the curr_* fields; `flags` lists read errors and
implausible values. `capture()` (VM paused) reads the full state as a FailureDump.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..introspect.btf import BtfError
from ..introspect.btf_load import load_btf
from ..introspect.memory import GuestMemory, is_bad
from ..introspect.scx import is_error_kind
from ..introspect.symbols import kernel_symbols
from ..rundir.dumps import FailureDump
from .bpf_globals import GlobalsRecorder
from .capture import capture
from .sampler import (
    OPTIONAL_SYMBOLS,
    REQUIRED_SYMBOLS,
    Layout,
    Sampler,
    exit_info_written,
    real_exit_kind,
)

log = logging.getLogger(__name__)

# kallsyms the monitor uses (the runner asks the guest for these at SysRdy).
# every symbol the monitor reads: the guest is asked for those its build's cache lacks
KALLSYMS = REQUIRED_SYMBOLS + OPTIONAL_SYMBOLS
EXIT_POLL_S = 0.01  # how often the thread checks the exit kind between samples


@dataclass(frozen=True)
class MonitorUnavailable:
    """The monitor cannot run on this kernel/guest; `reason` says why (one line)."""

    reason: str


class Monitor:
    def __init__(self, mem: GuestMemory, sampler: Sampler, out: Path, interval_s: float) -> None:
        self.mem, self.sampler, self.out = mem, sampler, Path(out)
        self.hz: int | None = None  # the kernel's CONFIG_HZ, for runnable_for_ms (create())
        self.globals_recorder: GlobalsRecorder | None = None  # bpf.jsonl (create())
        self.interval_s = max(0.005, float(interval_s))
        self.samples: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._t0 = time.monotonic()
        self._exited = False
        self._exit_kind: int | None = None
        self._seen_enabled = False
        self._on_exit: Callable[[], None] | None = None
        self.sample_seconds = 0.0  # total time spent reading samples
        # The engine's per-vCPU host thread times (KvmMachine.vcpu_host_times), if it has
        # them: each CPU of a sample then carries host_run_ns/host_wait_ns, so the judge can
        # tell a vCPU the host did not run from a stuck one.
        self.host_vcpus: Callable[[], list[tuple[int, int]] | None] | None = None

    # ------------------------------------------------------------------ creation

    @classmethod
    def create(cls, ram: Sequence[Any], sysrdy: Any, vmlinux: Path | None, out: Path,
               interval_s: float = 0.1, vcpus: int = 0, *, build_id: str | None = None,
               hz: int | None = None,
               globals_out: Path | None = None,
               remember_symbols: bool = False) -> Monitor | MonitorUnavailable:
        """A ready Monitor, or MonitorUnavailable(reason) when BTF, symbols or RAM are
        missing or the guest's memory does not look like its kernel. Never raises."""
        try:
            mon = cls._create(ram, sysrdy, vmlinux, out, interval_s, vcpus, build_id,
                              remember_symbols)
            if isinstance(mon, Monitor):
                mon.hz = hz
                if globals_out is not None:
                    mon.globals_recorder = GlobalsRecorder.create(mon.sampler, Path(globals_out),
                                                          max(1, round(1.0 / mon.interval_s)))
            return mon
        except Exception as e:  # the run must go on without a monitor
            log.warning("monitor unavailable", exc_info=True)
            return MonitorUnavailable(f"{type(e).__name__}: {e}")

    @classmethod
    def _create(cls, ram, sysrdy, vmlinux, out, interval_s, vcpus, build_id, remember_symbols):
        if not ram:
            return MonitorUnavailable("the VM engine does not share guest RAM")
        if vmlinux is None:
            return MonitorUnavailable("no vmlinux for this kernel (BTF needed)")
        try:
            btf = load_btf(Path(vmlinux), build_id)
        except BtfError as e:
            return MonitorUnavailable(e.message)
        syms = kernel_symbols(build_id or "", kallsyms=getattr(sysrdy, "kallsyms", None) or {},
                              remember=remember_symbols)
        missing = syms.missing(REQUIRED_SYMBOLS)
        if missing:
            return MonitorUnavailable(f"kernel symbols missing: {', '.join(missing)} (kallsyms "
                                      "from the guest did not include them)")
        try:
            layout = Layout.build(btf, syms)
        except BtfError as e:
            return MonitorUnavailable(e.message)
        ranges = [(r.start, r.end) for r in getattr(sysrdy, "ram", ())] or None
        mem = GuestMemory(ram, ranges, btf=btf)
        pob_sym = layout.sym["page_offset_base"]
        pob = mem.u64(pob_sym)
        if is_bad(pob) or not pob >> 63 or pob & 0xFFF:
            why = pob.reason if is_bad(pob) else f"implausible value {pob:#x}"
            return MonitorUnavailable(f"cannot read page_offset_base: {why}")
        mem.page_offset_base = pob
        mem.pgd_kva = layout.sym.get("init_top_pgt")
        online = tuple(getattr(sysrdy, "online", ()) or ())
        ncpus = vcpus or (max(online) + 1 if online else 0)
        if ncpus <= 0:
            return MonitorUnavailable("the number of CPUs is unknown")
        sampler = Sampler(mem, layout, ncpus)
        err = sampler.prepare()
        if err:
            return MonitorUnavailable(err)
        return cls(mem, sampler, out, interval_s)

    # ------------------------------------------------------------------ sampling

    def sample_once(self) -> dict[str, Any]:
        """Take one sample now, record and write it (also used by tests)."""
        t0 = time.perf_counter()
        s = self.sampler.sample(time.monotonic() - self._t0)
        host = self.host_vcpus() if self.host_vcpus is not None else None
        if host:
            for c in s["cpus"]:
                if 0 <= c.get("cpu", -1) < len(host):
                    c["host_run_ns"], c["host_wait_ns"] = host[c["cpu"]]
        self.sample_seconds += time.perf_counter() - t0
        self._note_scx(s["scx"])
        with self._lock:
            self.samples.append(s)
            n = len(self.samples)
        self._write(s)
        if self.globals_recorder is not None and not self._exited:
            self.globals_recorder.maybe_record(n, s["t"])
        return s

    def _note_scx(self, scx: dict[str, Any]) -> None:
        state, kind = scx.get("state"), scx.get("exit_kind")
        if state == "enabled" and not kind:
            self._seen_enabled = True
        fire = False
        with self._lock:
            if kind:
                self._exit_kind = kind
            if not self._exited and (kind or (self._seen_enabled and state != "enabled")):
                self._exited = fire = True
        if fire and self._on_exit is not None:
            try:
                self._on_exit()
            except Exception:
                log.exception("monitor on_exit callback failed")

    def _poll_exit(self) -> None:
        """Cheap check between samples: exit kind of *scx_root."""
        L, mem = self.sampler.L, self.mem
        root = L.sym.get("scx_root")
        if root is None or L.sch_exit_kind is None:
            return
        sch = mem.u64(root)
        if is_bad(sch):
            return
        if not sch:
            if self._seen_enabled:
                self._note_scx({"state": "disabled", "exit_kind": None})
            return
        self.sampler.last_sch = sch
        k = real_exit_kind(mem, L, sch)
        if k:
            self._note_scx({"state": "exiting", "exit_kind": k})

    def _write(self, s: dict[str, Any]) -> None:
        try:
            with open(self.out, "a", encoding="utf-8") as f:
                f.write(json.dumps(s, separators=(",", ":")) + "\n")
        except OSError as e:
            log.warning("cannot append to %s: %s", self.out, e)

    def _run(self) -> None:
        nxt = time.monotonic()
        while not self._stop.is_set():
            try:
                self.sample_once()
            except Exception:  # a bug must not kill the run
                log.exception("monitor sample failed")
            nxt += self.interval_s
            while not self._stop.is_set():
                left = nxt - time.monotonic()
                if left <= 0:
                    break
                self._stop.wait(min(left, EXIT_POLL_S))
                if not self._exited:
                    try:
                        self._poll_exit()
                    except Exception:
                        log.exception("monitor exit poll failed")
            if time.monotonic() - nxt > self.interval_s:  # fell behind: do not burst
                nxt = time.monotonic()

    def start(self, on_exit: Callable[[], None] | None = None) -> None:
        """Sample in a thread. `on_exit` runs (in that thread, once) as soon as the
        scheduler's exit kind is set or its state leaves enabled."""
        self._on_exit = on_exit
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="ktstr-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> list[dict[str, Any]]:
        """Stop sampling; every sample taken, in order (the judge applies the thresholds:
        evaluate/thresholds.report)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        with self._lock:
            return list(self.samples)

    # ------------------------------------------------------------------ exit

    @property
    def started_at(self) -> float:
        """time.monotonic() when sampling started: the zero of the samples' `t`."""
        return self._t0

    def scheduler_exited(self) -> bool:
        """The scheduler's exit kind is set, or its state left `enabled` after being
        enabled (any exit, normal or error)."""
        return self._exited

    def exit_kind(self) -> int | None:
        """The latched `enum scx_exit_kind` value, once seen (1025 = scx_bpf_error)."""
        return self._exit_kind

    def scheduler_failed(self) -> bool:
        """Exited with an error kind (>= SCX_EXIT_ERROR = 1024)."""
        return is_error_kind(self._exit_kind)

    def wait_exit_info(self, limit_s: float = 1.0) -> bool:
        """Wait (at most `limit_s` of host time, polling guest memory) until the kernel has
        written the exit's message and reason - microseconds of guest time after the exit
        kind the monitor fired on. True when written; False when the limit passed first
        (the dump is then taken anyway, its message possibly empty)."""
        deadline = time.monotonic() + limit_s
        while True:
            if exit_info_written(self.mem, self.sampler.L, self.sampler.last_sch):
                return True
            if time.monotonic() >= deadline or self._stop.is_set():
                return False
            time.sleep(0.002)

    def capture(self) -> FailureDump:
        """The full state read now (pause the VM first) as a real FailureDump."""
        with self._lock:
            samples = list(self.samples)
        return capture(self.sampler, samples, self.hz)
