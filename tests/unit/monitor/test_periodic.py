"""Periodic capture: the plan from --capture-every / --capture-at, the records a capture
and a skipped capture leave, and the summary result.json carries. The real-guest test (five
tagged captures in a 5 s run) is in tests/test_run_vm.py."""

from __future__ import annotations

import pytest

from ktstr_vmm.errors import UsageError
from ktstr_vmm.monitor.periodic import Hooks, PeriodicCapturer, capture_plan, summary


def test_plan_every_second_of_a_five_second_workload_is_five_captures():
    assert capture_plan(5000, 1000, ()) == (0, 1000, 2000, 3000, 4000)
    assert capture_plan(5000, None, (4000, 2000, 2000)) == (2000, 4000)
    assert capture_plan(5000, 2000, (500,)) == (0, 500, 2000, 4000)
    assert capture_plan(5000, None, ()) == ()


@pytest.mark.parametrize("args,error", [
    ((5000, None, (5000,)),
     "--capture-at 5000ms is not inside the workload (0 to 5000ms, --duration)"),
    ((5000, 0, ()), "--capture-every must be more than 0"),
    ((60_000, 10, ()), "6000 periodic captures asked for; at most 100"),
])
def test_plan_errors_are_one_line(args, error):
    with pytest.raises(UsageError) as e:
        capture_plan(*args)
    assert e.value.message == error


class FakeVm:
    def __init__(self, fail=False):
        self.calls, self.lines, self.fail = [], [], fail
        self.now = 100.0

    def clock(self):
        return self.now

    def hooks(self):
        def capture():
            self.calls.append("capture")
            self.now += 0.04
            if self.fail:
                raise OSError("guest memory is gone")
            return {"maps": []}
        return Hooks(pause=lambda: self.calls.append("pause"),
                     resume=lambda: self.calls.append("resume"),
                     capture=capture,
                     write=lambda tag, dump: f"captures/{tag}.json",
                     record=self.lines.append)


def test_a_capture_freezes_reads_thaws_and_records():
    vm = FakeVm()
    cap = PeriodicCapturer((0, 1000), vm.hooks(), clock=vm.clock)
    cap._t0 = 100.0
    cap._take(0, 0)
    assert vm.calls == ["pause", "capture", "resume"]
    assert vm.lines == [{"tag": "periodic_000", "at_ms": 0, "elapsed_ms": 0, "frozen_ms": 40.0,
                         "file": "captures/periodic_000.json"}]
    # frozen time is not guest time
    vm.now += 1.0
    assert cap.elapsed_ms() == 1000
    records = cap.finish("the workload ended first")
    assert records[1] == {"tag": "periodic_001", "at_ms": 1000,
                          "skipped": "the workload ended first"}
    assert (cap.target, cap.fired) == (2, 1)
    s = summary(records)
    assert (s["target"], s["fired"], s["frozen_ms_max"]) == (2, 1, 40.0)


def test_a_failed_capture_is_skipped_and_the_vm_resumed():
    vm = FakeVm(fail=True)
    cap = PeriodicCapturer((0,), vm.hooks(), clock=vm.clock)
    cap._t0 = 100.0
    cap._take(0, 0)
    assert vm.calls == ["pause", "capture", "resume"]
    assert vm.lines == [{"tag": "periodic_000", "at_ms": 0, "elapsed_ms": 0,
                         "skipped": "capture failed: guest memory is gone"}]
    assert cap.fired == 0


def test_captures_appear_on_the_timeline():
    from ktstr_vmm.rundir.timeline import render_timeline

    events = [{"t": 10.0, "kind": "phase", "phase": "booting"},
              {"t": 22.3, "kind": "capture", "tag": "periodic_000", "at_ms": 0, "elapsed_ms": 0,
               "frozen_ms": 9.3, "file": "captures/periodic_000.json"},
              {"t": 27.4, "kind": "capture", "tag": "periodic_001", "at_ms": 5000,
               "skipped": "the workload ended first"}]
    assert render_timeline(events) == (
        "  +   0.0s  boot\n"
        "  +  12.3s  capture periodic_000 (frozen 9.3 ms)\n"
        "  +  17.4s  capture periodic_001 skipped: the workload ended first")
