"""The monitor inside real runs: the runner samples the live guest's run queues from the
host and freezes the VM for a real failure dump when the scheduler dies."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ktstr_vmm.run.orchestrate import run
from ktstr_vmm.rundir.dumps import load_failure_dump
from ktstr_vmm.spec import RunSpec, parse_topology

pytestmark = [pytest.mark.vm, pytest.mark.slow]


def spec(sched: str, *args: str, duration: float = 5.0) -> RunSpec:
    return RunSpec(name="mon", scheduler=sched, topology=parse_topology("tiny-2llc"),
                   topology_requested="tiny-2llc", sched_args=args, duration_s=duration,
                   auto_repro=False)


@pytest.fixture
def env(store, kernel, schedulers):
    return store


def test_scx_simple_samples_live_run_queues(env):
    r = run(spec("scx_simple", duration=6.0))
    assert r["verdict"] == "pass", r["message"]
    samples = [json.loads(x) for x in (Path(r["run_dir"]) / "monitor.jsonl").read_text().splitlines()]
    assert len(samples) >= 20
    assert all(len(s["cpus"]) == 4 for s in samples)
    ext = [s for s in samples if s["scx"]["state"] == "enabled"]
    assert ext, "never saw sched_ext enabled"
    busy = [c for s in ext for c in s["cpus"] if c["nr_running"] > 0]
    assert busy, "no CPU had runnable tasks while the spinners ran"
    assert any(c.get("curr_class") == "ext" and c.get("curr_comm") for c in busy)
    assert samples[-1]["cpus"][0]["clock_ns"] > samples[0]["cpus"][0]["clock_ns"]
    assert "select_cpu_fallback" in ext[-1]["scx"]["events"]
    assert not [f for s in samples for f in s["flags"] if f.startswith("read_error cpu")]
    assert r["sections"]["monitor"].splitlines()[-1] == "verdict: monitor OK"
    # The scheduler's globals, read live about once a second: scx_simple's vtime_now moves
    lines = [json.loads(x) for x in (Path(r["run_dir"]) / "bpf.jsonl").read_text().splitlines()]
    assert len(lines) >= 3, lines
    assert "uei" in lines[0]["maps"]["scx_simp.data"]
    vtimes = [ln["maps"]["scx_simp.bss"]["vtime_now"] for ln in lines
              if "vtime_now" in ln["maps"].get("scx_simp.bss", {})]
    assert len(vtimes) >= 3 and vtimes == sorted(vtimes) and vtimes[-1] > vtimes[0], vtimes


def test_error_after_freezes_the_vm_for_a_real_dump(env):
    r = run(spec("scx_ktstr", "--error-after", "2500", duration=8.0))
    assert r["verdict"] == "fail"
    d = load_failure_dump(Path(r["run_dir"]) / "mon.failure-dump.json")
    assert not d.is_placeholder
    assert d.scx_sched_state is not None and d.scx_sched_state.exit_kind == 1025
    assert "injected error" in (d.scx_sched_state.exit_msg or "")
    assert [q.cpu for q in d.rq_scx_states] == [0, 1, 2, 3]
    assert all(q.rq_clock > 0 and q.curr_pid is not None for q in d.rq_scx_states)
    assert d.task_enrichments
    # The scheduler's BPF maps at the freeze, rendered with its own BTF.
    maps = {m.name: m for m in d.maps}
    assert d.active_obj_name == "scx_ktst"  # libbpf's "<obj>.bss" prefix, 8 characters here
    bss = maps["scx_ktst.bss"].value
    assert bss["injected"] & 1 and bss["start_ns"] > 0  # INJ_ERROR fired
    stats = maps["stats"]  # PERCPU_ARRAY without BTF types: u64 counters per CPU
    assert stats.percpu_entries and all(len(e["per_cpu"]) == 4 for e in stats.percpu_entries)
    assert all(isinstance(v, int) for e in stats.percpu_entries for v in e["per_cpu"])
    assert maps["ktstr_ops"].error == "map type STRUCT_OPS is not rendered"
    events = (Path(r["run_dir"]) / "events.jsonl").read_text()
    assert '"kind":"failure_dump"' in events and '"exit_kind":1025' in events


def test_stall_after_flags_a_stuck_cpu(env):
    r = run(spec("scx_ktstr", "--stall-after", "2500", duration=9.0))
    assert r["verdict"] == "fail"
    monitor = r["sections"]["monitor"]
    stuck = int(re.search(r"\bstuck=(\d+)", monitor).group(1))
    assert stuck > 0, monitor
    assert "stuck cpu" in monitor
    # The frozen guest's dump names the tasks the watchdog counted and how long each waited
    # (scx_ktstr sets ops.timeout_ms=3000; the watchdog fires once one waited longer).
    d = load_failure_dump(Path(r["run_dir"]) / "mon.failure-dump.json")
    waited = {t.comm: t.runnable_for_ms for t in d.task_enrichments if t.runnable_for_ms}
    assert any(comm.startswith("spin-") for comm in waited), waited
    assert max(waited.values()) >= 2900, waited
    # scx_ktstr's own maps say the same from the scheduler's side: the spinners' enqueues
    # went to STALL_DSQ (1) - a HASH map and a PERCPU_HASH map read from the frozen guest.
    maps = {m.name: m for m in d.maps}
    tasks = [e["value"] for e in maps["task_enq"].entries]
    assert any(t["comm"].startswith("spin-") and t["stalled"] >= 1 for t in tasks), tasks
    dsqs = {e["key"]: e["per_cpu"] for e in maps["dsq_inserts"].percpu_hash_entries}
    assert 1 in dsqs and sum(dsqs[1]) >= 1 and len(dsqs[1]) == 4, dsqs
    # Every dispatch queue is walked: the global one, the user DSQs (scx_ktstr's 0 and its
    # STALL_DSQ 1) and the bypass queues the disable path moves the stalled tasks to.
    queues = {(q.origin, q.id) for q in d.dsq_states}
    assert {("global node 0", 2**63 + 1), ("user", 0), ("user", 1)} <= queues, queues
    assert any(q.nr for q in d.dsq_states if q.origin.startswith("bypass") or
               (q.origin, q.id) == ("user", 1)), d.dsq_states
