"""The monitor against a live guest: the real kernel under QEMU with real schedulers.

The harness runs ktstr's Runner in a thread (the runner does not start the monitor yet)
and attaches a Monitor to the VM's RAM once the guest's SysRdy arrives, as the runner
will.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from ktstr_vmm import monitor as M
from ktstr_vmm import runner
from ktstr_vmm.dumps import (
    dump_to_json,
    failure_dump_from_json,
    load_failure_dump,
    write_failure_dump,
)
from ktstr_vmm.spec import RunSpec, parse_topology

pytestmark = [pytest.mark.vm, pytest.mark.slow]


class Live:
    def __init__(self, spec: RunSpec, out: Path) -> None:
        from ktstr_vmm.store import Store
        self.prep = runner.prepare(spec)
        self.rd = Store().create_run(spec)
        self.run = runner.Run(self.prep, self.rd, None)
        self.result: list = []
        self.thread = threading.Thread(target=lambda: self.result.append(self.run.execute()),
                                       daemon=True)
        self.out = out

    def __enter__(self) -> Live:
        self.thread.start()
        return self

    def monitor(self, timeout: float = 180.0) -> M.Monitor:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            m, st = self.run.machine, self.run.recorder.state
            if m is not None and st.sysrdy is not None:
                mon = M.Monitor.create(m.ram(), st.sysrdy, self.prep.kernel.vmlinux, self.out,
                                       0.1, self.prep.spec.topology.vcpus,
                                       build_id=self.prep.kernel.build_id)
                assert not isinstance(mon, M.MonitorUnavailable), mon.reason
                return mon
            assert self.thread.is_alive(), f"run ended before SysRdy: {self.result}"
            time.sleep(0.05)
        raise AssertionError("no SysRdy in time")

    def __exit__(self, *exc) -> None:
        self.run.stop_requested.set()
        self.thread.join(timeout=120)


def spec(sched: str, *args: str, duration: float = 5.0) -> RunSpec:
    return RunSpec(name="mon", scheduler=sched, topology=parse_topology("tiny-2llc"),
                   topology_requested="tiny-2llc", sched_args=args, duration_s=duration,
                   auto_repro=False)


@pytest.fixture
def live_env(store, kernel, schedulers, monkeypatch, tmp_path):
    monkeypatch.setattr(runner, "KALLSYMS", M.KALLSYMS)
    return tmp_path


def _enabled(mon: M.Monitor) -> int:
    return sum(s["scx"].get("state") == "enabled" for s in list(mon.samples))


def _wait(cond, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return False


def test_scx_simple_samples_live_run_queues(live_env):
    out = live_env / "monitor.jsonl"
    with Live(spec("scx_simple", duration=6.0), out) as live:
        mon = live.monitor()
        mon.start()
        _wait(lambda: _enabled(mon) >= 30 or not live.thread.is_alive(), 150)
        report = mon.stop()
    lines = out.read_text().splitlines()
    samples = [json.loads(x) for x in lines]
    assert len(samples) >= 20
    assert all(len(s["cpus"]) == 4 for s in samples)
    ext = [s for s in samples if s["scx"]["state"] == "enabled"]
    assert ext, "never saw sched_ext enabled"
    busy = [c for s in ext for c in s["cpus"] if c["nr_running"] > 0]
    assert busy, "no CPU had runnable tasks while the spinners ran"
    assert any(c.get("curr_class") == "ext" and c.get("curr_comm") for c in busy)
    clocks = [s["cpus"][0]["clock_ns"] for s in samples]
    assert clocks[-1] > clocks[0]
    assert "events" in ext[-1]["scx"] and "select_cpu_fallback" in ext[-1]["scx"]["events"]
    assert report.summary.total_samples >= 1
    assert report.verdict.kind in ("pass", "fail")
    assert not [f for s in samples for f in s["flags"] if f.startswith("read_error cpu")]


def test_error_after_capture_gives_real_dump(live_env):
    dumps = []

    with Live(spec("scx_ktstr", "--error-after", "2500", duration=8.0),
              live_env / "monitor.jsonl") as live:
        mon = live.monitor()

        def on_exit():
            m = live.run.machine
            m.pause()
            try:
                dumps.append(mon.capture())
            finally:
                m.resume()

        mon.start(on_exit=on_exit)
        _wait(lambda: dumps or not live.thread.is_alive(), 150)
        mon.stop()
    assert dumps, "the monitor never saw the scheduler exit"
    d = dumps[0]
    assert not d.is_placeholder
    assert d.scx_sched_state is not None and d.scx_sched_state.exit_kind == 1025
    assert mon.exit_kind() == 1025 and mon.scheduler_failed()
    assert "injected error" in (d.scx_sched_state.exit_msg or "")
    # the kernel sets exit_info.reason in its disable work, after the exit kind: a freeze
    # that fast may come before it
    assert d.scx_sched_state.exit_reason in (None, "scx_bpf_error")
    assert [r.cpu for r in d.rq_scx_states] == [0, 1, 2, 3]
    assert all(r.rq_clock > 0 and r.curr_pid is not None for r in d.rq_scx_states)
    assert d.task_enrichments
    assert failure_dump_from_json(json.loads(json.dumps(dump_to_json(d)))) == d
    path = write_failure_dump(live.rd.path, "mon", d)
    assert load_failure_dump(path) == d


def test_stall_after_flags_a_stuck_cpu(live_env):
    with Live(spec("scx_ktstr", "--stall-after", "2500", duration=9.0),
              live_env / "monitor.jsonl") as live:
        mon = live.monitor()
        mon.start()
        _wait(lambda: _enabled(mon) >= 70 or mon.scheduler_exited()
              or not live.thread.is_alive(), 150)
        report = mon.stop()
    assert report.summary.stuck_count > 0
    assert report.verdict.kind == "fail"
    assert any(d.startswith("stuck cpu") for d in report.verdict.details), report.verdict
