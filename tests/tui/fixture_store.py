"""A run store in the exact run-directory contract, built from real recorded artifacts
(tests/data/eval: scheduler output with DEBUG DUMP, kernel log, SysRq-D dump; tests/data/
store/dumps: failure dumps). Times are fixed so screens are reproducible.

Runs (ids sort by time, newest last here):
  pass      scx_simple on tiny-2llc, passed
  fail      scx_errsim on tiny-2llc, scx_bpf_error, real failure dump + SysRq-D snapshot
  rerun     a rerun of `fail` on smt-2llc (parent = fail), failed with a placeholder dump
  corrupt   result.json truncated mid-write
  live      scx_simple on smt-2llc still running (no result yet)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EVAL = REPO / "tests" / "data" / "eval"
DUMPS = REPO / "tests" / "data" / "store" / "dumps"

T0 = 1795000000.0  # 2026-11-18 ~ fixed
SCHED_OUT = (EVAL / "scx_bpf_error.scheduler-output.txt").read_text()
KERNEL_LOG = (EVAL / "scx_bpf_error.kernel-log-and-trace.txt").read_text()
SYSRQ_DUMP = (EVAL / "sched_ext_dump.sysrq-d.trace.txt").read_text()

RUN_IDS = {
    "pass": "20261118-100000-scx_simple-tiny-2llc-a1b2",
    "fail": "20261118-100500-errsim-tiny-2llc-c3d4",
    "rerun": "20261118-101000-errsim-smt-2llc-e5f6",
    "corrupt": "20261118-101500-scx_simple-tiny-1llc-0a0b",
    "live": "20261118-102000-scx_simple-smt-2llc-9f9f",
}


def _spec(name, scheduler, topology, notation, parent=None, kind="run"):
    return {"name": name, "scheduler": scheduler, "topology": notation,
            "topology_requested": topology, "preset": topology, "sched_args": [],
            "memory_mib": 256, "duration_s": 5.0, "workload": "spin", "engine": "qemu",
            "kernel": None, "timeout_s": 69.0, "expect_err": False, "auto_repro": True,
            "monitor_interval_ms": 100, "parent": parent, "kind": kind, "probes": []}


def _write(p: Path, obj) -> None:
    p.write_text(json.dumps(obj, indent=2) + "\n")


def _jsonl(p: Path, rows) -> None:
    p.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows))


def _samples(t0: float, vcpus: int, n: int, stuck_cpu: int | None = None) -> list[dict]:
    out = []
    for i in range(n):
        cpus = []
        for c in range(vcpus):
            nr = (i + c) % 4
            cpus.append({"cpu": c, "nr_running": nr, "scx_nr_running": nr,
                         "local_dsq_nr": 5 if c == stuck_cpu and i > n // 2 else nr // 2,
                         "curr_pid": 120 + c if nr else 0,
                         "curr_comm": f"spin-{c}" if nr else f"swapper/{c}",
                         "curr_class": "ext_sched_class" if nr else "idle_sched_class",
                         "clock_ns": int((i * 0.1) * 1e9)})
        out.append({"t": t0 + 4 + i * 0.1, "cpus": cpus,
                    "scx": {"state": "enabled", "exit_kind": None, "events": {}},
                    "flags": ([f"dsq depth cpu {stuck_cpu}"] if stuck_cpu is not None
                              and i > n // 2 else [])})
    return out


def _events(t0: float, fail: bool) -> list[dict]:
    ev = [{"t": t0 + 0.1, "kind": "lifecycle", "phase": "booting"},
          {"t": t0 + 3.9, "kind": "lifecycle", "phase": "scheduler enabled"},
          {"t": t0 + 4.0, "kind": "scenario_start", "name": "spin"}]
    if fail:
        ev += [{"t": t0 + 9.5, "kind": "sched_exit", "reason": "scx_bpf_error"},
               {"t": t0 + 9.6, "kind": "snapshot", "path": "snapshots/9.6.json"}]
    else:
        ev += [{"t": t0 + 9.0, "kind": "scenario_end", "name": "spin"}]
    ev.append({"t": t0 + 10.0, "kind": "exit", "code": 1 if fail else 0})
    return ev


def _status(t0, phase="done", live=False):
    return {"phase": phase, "pid": 999999 if not live else 1, "started": t0,
            "updated": t0 + 10.2, "engine": "qemu",
            "watchdog_deadline": t0 + 69.0}


FAIL_HEAD = ("ktstr_test 'errsim' [sched=scx_errsim] [topo={topo}] failed:\n"
             "  scheduler died: scx_bpf_error (scx_errsim.bpf.c:74: errsim: injected error "
             "after 60 enqueues (pid 31))")


def _dump_section() -> str:
    start = SCHED_OUT.index("errsim: root")
    end = SCHED_OUT.index("EXIT:")
    return SCHED_OUT[start:end].strip("=\n ")


def _fail_result(run_id: str, topo: str, notation: str, parent: str | None) -> dict:
    sections = {
        "info": f"kernel 7.3.4+deb13-cloud-amd64 · engine qemu (TCG) · topology {topo} ({notation})",
        "stats": "workers 4 · cpu time 3.71s · migrations 12 · max off-cpu gap 88ms",
        "scheduler log": SCHED_OUT.rstrip(),
        "sched_ext dump": _dump_section(),
    }
    message = FAIL_HEAD.format(topo=topo) + "\n\n" + "\n\n".join(f"--- {k} ---\n{v}" for k, v in sections.items())
    return {"run_id": run_id, "verdict": "fail", "message": message,
            "reason": "scx_bpf_error", "sections": sections, "engine": "qemu",
            "topology": {"preset": topo, "requested": topo, "observed": notation},
            "scheduler": "scx_errsim", "kernel": "7.3.4+deb13-cloud-amd64",
            "stats": {"workers": 4, "cpu_time_s": 3.71, "migrations": 12,
                      "max_gap_ms": 88,
                      "measures": [{"group": 1, "name": "hackbench", "values": {"time_s": 5.717},
                                    "parts": {}}],
                      "measure_lines": ["  cg1 hackbench: time=5.717s"]},
            "timings": {"boot_to_ready_s": 3.9, "total_s": 10.2}, "parent": parent,
            "artifacts": ["errsim.failure-dump.json"]}


def real_dump_json() -> dict:
    """A failure dump written by ktstr_vmm.rundir.dumps from the state in the recorded
    scx_bpf_error DEBUG DUMP (CPU 2 with kcompactd0/ksoftirqd queued, CPUs 0/1 in init)."""
    from ktstr_vmm.rundir.dumps import (
        DsqState,
        FailureDump,
        FailureDumpMap,
        RqScxState,
        ScxSchedState,
        TaskEnrichment,
        dump_to_json,
    )

    dump = FailureDump(
        maps=(FailureDumpMap(name="errsim.bss", map_type=2, value_size=16, max_entries=1,
                             value={"nr_enqueued": 60, "inject_after": 60}),
              FailureDumpMap(name="errsim_pcpu", map_type=6, value_size=8, max_entries=1,
                             percpu_entries=[{"key": 0, "per_cpu": [21, 17, 22, None]}])),
        rq_scx_states=(
            RqScxState(cpu=0, nr_running=1, flags=0x101, ops_qseq=264, rq_clock=9559000000,
                       curr_pid=123, curr_comm="init", curr_class="ext_sched_class"),
            RqScxState(cpu=1, nr_running=1, flags=0x101, ops_qseq=235, rq_clock=9559000000,
                       curr_pid=124, curr_comm="init", curr_class="ext_sched_class"),
            RqScxState(cpu=2, nr_running=2, flags=0x1, ops_qseq=470, rq_clock=9559000000,
                       curr_pid=0, curr_comm="swapper/2", curr_class="idle_sched_class",
                       local_dsq_depth=1),
        ),
        dsq_states=(DsqState(id=0x8000000000000002, origin="local cpu2", nr=1, seq=12),
                    DsqState(id=0, origin="user", nr=1, seq=3)),
        scx_sched_state=ScxSchedState(aborting=True, exit_kind=1025,
                                      exit_reason="scx_bpf_error",
                                      exit_msg="scx_errsim.bpf.c:74: errsim: injected error "
                                               "after 60 enqueues (pid 31)"),
        task_enrichments=(TaskEnrichment(pid=58, comm="kcompactd0", cpu=2),
                          TaskEnrichment(pid=31, comm="ksoftirqd/2", cpu=2)),
    )
    return dump_to_json(dump)


def make_store(root: Path) -> dict[str, Path]:
    """Build the store under root (root/runs/...); returns {key: run dir}."""
    runs = root / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    out = {}

    # pass
    d = runs / RUN_IDS["pass"]
    d.mkdir()
    t0 = T0
    _write(d / "spec.json", _spec("scx_simple", "scx_simple", "tiny-2llc", "1n2l2c1t"))
    _write(d / "status.json", _status(t0))
    (d / "console.log").write_text(
        "[    0.000000] Linux version 7.3.4+deb13-cloud-amd64\n"
        "[    3.931856] sched_ext: BPF scheduler \"simple\" enabled\n"
        "[    9.990000] sched_ext: BPF scheduler \"simple\" disabled (unregistered from user space)\n")
    (d / "sched.log").write_text("".join(f"local={i * 3} global={i}\n" for i in range(40)))
    _jsonl(d / "events.jsonl", _events(t0, fail=False))
    _jsonl(d / "monitor.jsonl", _samples(t0, 4, 50))
    _write(d / "result.json", {
        "run_id": d.name, "verdict": "pass", "message": "", "reason": "",
        "sections": {}, "engine": "qemu",
        "topology": {"preset": "tiny-2llc", "requested": "tiny-2llc", "observed": "1n2l2c1t"},
        "scheduler": "scx_simple", "kernel": "7.3.4+deb13-cloud-amd64",
        "stats": {"workers": 4, "cpu_time_s": 3.98, "migrations": 3, "max_gap_ms": 21},
        "timings": {"boot_to_ready_s": 3.9, "total_s": 10.2}, "parent": None, "artifacts": []})
    out["pass"] = d

    # fail
    d = runs / RUN_IDS["fail"]
    d.mkdir()
    t0 = T0 + 300
    _write(d / "spec.json", _spec("errsim", "scx_errsim", "tiny-2llc", "1n2l2c1t"))
    _write(d / "status.json", _status(t0))
    (d / "console.log").write_text(KERNEL_LOG)
    (d / "sched.log").write_text(SCHED_OUT)
    _jsonl(d / "events.jsonl", _events(t0, fail=True))
    _jsonl(d / "monitor.jsonl", _samples(t0, 4, 55, stuck_cpu=2))
    _jsonl(d / "bpf.jsonl", [
        {"t": 0.9, "maps": {"scx_errs.bss": {"nr_enqueued": 12, "injected": False}}},
        {"t": 1.9, "maps": {"scx_errs.bss": {"nr_enqueued": 60, "injected": True}}}])
    _write(d / "result.json", _fail_result(d.name, "tiny-2llc", "1n2l2c1t", None))
    _write(d / "errsim.failure-dump.json", real_dump_json())
    (d / "snapshots").mkdir()
    _write(d / "snapshots" / "9.6.json", {"t": t0 + 9.6, "trigger": "sysrq-d"})
    (d / "snapshots" / "9.6.sched_ext_dump.txt").write_text(SYSRQ_DUMP)
    out["fail"] = d

    # rerun of fail on smt-2llc, placeholder dump
    d = runs / RUN_IDS["rerun"]
    d.mkdir()
    t0 = T0 + 600
    _write(d / "spec.json", _spec("errsim", "scx_errsim", "smt-2llc", "1n2l2c2t",
                                  parent=RUN_IDS["fail"], kind="rerun"))
    _write(d / "status.json", _status(t0))
    (d / "console.log").write_text(KERNEL_LOG)
    (d / "sched.log").write_text(SCHED_OUT)
    _jsonl(d / "events.jsonl", _events(t0, fail=True))
    _jsonl(d / "monitor.jsonl", _samples(t0, 8, 30))
    _write(d / "result.json", _fail_result(d.name, "smt-2llc", "1n2l2c2t", RUN_IDS["fail"]))
    shutil.copy(DUMPS / "placeholder.failure-dump.json", d / "errsim.failure-dump.json")
    out["rerun"] = d

    # corrupt result
    d = runs / RUN_IDS["corrupt"]
    d.mkdir()
    t0 = T0 + 900
    _write(d / "spec.json", _spec("scx_simple", "scx_simple", "tiny-1llc", "1n1l4c1t"))
    _write(d / "status.json", _status(t0))
    (d / "sched.log").write_text("local=1 global=0\n")
    (d / "result.json").write_text('{"run_id": "x", "verdict": "pa')
    out["corrupt"] = d

    # live (no result)
    d = runs / RUN_IDS["live"]
    d.mkdir()
    t0 = T0 + 1200
    _write(d / "spec.json", _spec("scx_simple", "scx_simple", "smt-2llc", "1n2l2c2t"))
    _write(d / "status.json", {**_status(t0, "running", live=True)})
    (d / "console.log").write_text("[    3.900000] sched_ext: BPF scheduler \"simple\" enabled\n")
    (d / "sched.log").write_text("local=3 global=2\n")
    _jsonl(d / "events.jsonl", _events(t0, fail=False)[:3])
    _jsonl(d / "monitor.jsonl", _samples(t0, 8, 5))
    out["live"] = d
    return out
