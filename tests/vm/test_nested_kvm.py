"""The KVM engine under a real kvm_amd: L1 boots under QEMU TCG (-cpu max: svm, npt) with
the kernel's own kvm/kvm-amd modules, and the product's `ktstr run --engine kvm` boots the
same kernel as L2 inside it (ktstr_vmm/nested, docs/kvm-engine.md).

L1 boots once per session (the `nested` fixture) and does every run in one batch; the
tests then read the run directories it brought back, as a user would: result.json,
events.jsonl, the failure dump, the control socket's replies.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ktstr_vmm.errors import EngineError, UsageError
from ktstr_vmm.nested.bed import NestedRun, check_host, run_bed

# pytest-timeout's default (900 s) must not cut the session's one L1 short: the bed has its
# own deadline (L1_TIMEOUT_S), and a loaded host can take longer than 900 s for the batch.
pytestmark = [pytest.mark.nested_kvm, pytest.mark.vm, pytest.mark.slow,
              pytest.mark.timeout(1800)]

# Nested runs are slow (L2 is translated by TCG twice over, on a shared host): 300 s each.
RUN = ("--engine", "kvm", "--no-auto-repro", "--timeout", "300s")
# L1 has one vCPU (bed.L1_VCPUS); these L2 runs have one too (docs/kvm-engine.md: an L2
# with several vCPUs on L1's single vCPU stopped L1 altogether in 2 of 3 tries).
BATCH = [
    NestedRun("simple", (*RUN, "--scheduler", "scx_simple", "--topology", "1n1l1c1t",
                         "--duration", "3s")),
    NestedRun("error", (*RUN, "--scheduler", "scx_ktstr", "--sched-args", "--error-after 1500",
                        "--topology", "1n1l1c1t", "--duration", "6s")),
    # (its own watchdog is longer: a snapshot may wait up to KTSTR_SNAPSHOT_WAIT_S=200 in L1)
    NestedRun("control", ("--engine", "kvm", "--no-auto-repro", "--timeout", "480s",
                          "--scheduler", "scx_simple", "--topology", "1n1l1c1t",
                          "--duration", "60s"), control=True),
    # a guest that never finishes its workload: the host's watchdog ends it
    NestedRun("hung", ("--engine", "kvm", "--no-auto-repro", "--timeout", "150s",
                       "--scheduler", "scx_simple", "--topology", "1n1l1c1t",
                       "--duration", "10m")),
    # a piped `ktstr shell`: the script goes over COM3 (the KVM engine's shells' port)
    NestedRun("shell", ("--engine", "kvm", "--timeout", "300s", "--scheduler", "scx_simple",
                        "--topology", "1n1l1c1t"), command="shell",
              stdin="cat /sys/kernel/sched_ext/state\nscx | head -3\nexit 7\n"),
]
L1_TIMEOUT_S = 1500


@pytest.fixture(scope="session")
def nested(kernel, schedulers, tmp_path_factory):
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("no qemu-system-x86_64: the nested test bed runs L1 under QEMU TCG")
    out = tmp_path_factory.mktemp("nested")
    return run_bed(BATCH, out, kernel=kernel, timeout_s=L1_TIMEOUT_S)


def _result(nested, label: str) -> dict:
    r = nested.run(label)
    assert r.get("result"), (f"run {label} printed no result.json (exit {r.get('rc')}): "
                             f"{r.get('stderr', '')[-800:]}")
    return r["result"]


def _events(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines() if x]


def test_l1_has_a_real_kvm_amd_and_doctor_calls_it_hardware(nested):
    l1 = nested.report["l1"]
    assert l1["dev_kvm"] and not l1["kvm_pvm"]
    assert {"svm", "npt"} <= set(l1["cpu_flags"])
    assert l1["kvm_amd"]["nested"] == "1" and l1["kvm_amd"]["npt"] == "Y"
    doctor = (nested.out_dir / "doctor.txt").read_text()
    assert "ok    kvm: hardware: hardware KVM (svm, kvm_amd)" in doctor


def test_scx_simple_passes_through_the_kvm_engine(nested):
    r = _result(nested, "simple")
    assert r["engine"] == "kvm/kvm"
    assert r["verdict"] == "pass", r.get("message")
    assert r["topology"]["requested"] == r["topology"]["observed"] == "1n1l1c1t"
    run_dir = nested.runs["simple"]
    assert 'sched_ext: BPF scheduler "simple" enabled' in (run_dir / "console.log").read_text()
    kinds = [e["kind"] for e in _events(run_dir)]
    assert "monitor" in kinds  # the host-side monitor read guest memory through the memfd
    started = [e for e in _events(run_dir) if e["kind"] == "monitor"][0]
    assert started["state"] == "started"
    assert r["exit_reason"] == "poweroff"


def test_an_injected_error_gives_a_real_failure_dump_with_the_schedulers_maps(nested):
    r = _result(nested, "error")
    assert r["verdict"] == "fail"
    assert "injected error after 1500ms (--error-after)" in r["message"]
    run_dir = nested.runs["error"]
    dumps = list(run_dir.glob("*.failure-dump.json"))
    assert len(dumps) == 1
    dump = json.loads(dumps[0].read_text())
    assert dump.get("is_placeholder") is not True
    names = {m["name"] for m in dump.get("maps", [])}
    assert any(n.endswith(".bss") or n.endswith(".data") for n in names), names
    assert any(e["kind"] == "failure_dump" for e in _events(run_dir))


def test_pause_resume_snapshot_and_stop_through_the_control_socket(nested):
    run = nested.run("control")
    log = {c["cmd"]: c for c in run["control"]}
    assert [c["cmd"] for c in run["control"]] == ["pause", "resume", "snapshot", "stop"], \
        run["control"]
    assert all(c["ok"] for c in run["control"]), run["control"]
    assert log["pause"]["reply"]["paused"] is True
    snap = Path(log["snapshot"]["reply"]["file"]).name
    run_dir = nested.runs["control"]
    assert (run_dir / "snapshots" / snap).read_text().strip()
    kinds = [e["kind"] for e in _events(run_dir)]
    assert "pause" in kinds and "resume" in kinds and "snapshot" in kinds
    assert {"kind": "stopped", "by": "user"}.items() <= next(
        e for e in _events(run_dir) if e["kind"] == "stopped").items()
    status = json.loads((run_dir / "status.json").read_text())
    assert status["phase"] == "done"
    assert run["result"]["exit_reason"] == "stopped"


def test_a_hung_guest_is_ended_by_the_watchdog_and_nothing_is_left(nested):
    run = nested.run("hung")
    r = _result(nested, "hung")
    assert run["rc"] == 1 and r["engine"] == "kvm/kvm"
    assert r["exit_reason"] == "watchdog", r.get("message")
    assert "--- watchdog ---" in r["message"]
    status = json.loads((nested.runs["hung"] / "status.json").read_text())
    assert status["phase"] == "done"
    # after every run of the batch: no ktstr process and no /dev/shm file left in L1
    assert {x["label"]: x["leftovers"] for x in nested.report["runs"]} == {
        x["label"]: [] for x in nested.report["runs"]}


def test_a_piped_shell_runs_in_the_guest_over_com3_and_the_run_is_judged(nested):
    run = nested.run("shell")
    assert run["rc"] == 7, run.get("stderr", "")[-800:]  # the script's `exit 7`
    lines = run["stdout"].splitlines()
    assert lines[0] == "enabled", run["stdout"]
    assert any(line.startswith("state") and "enabled" in line for line in lines[1:]), lines
    r = _result(nested, "shell")
    assert r["engine"] == "kvm/kvm" and r["verdict"] == "pass", r.get("message")
    run_dir = nested.runs["shell"]
    assert "enabled" in (run_dir / "shell.log").read_text(errors="replace")
    shells = [e for e in _events(run_dir) if e["kind"] == "shell"]
    assert [e.get("action") for e in shells][:1] == ["opened"], shells


# ----------------------------------------------------------------------------- bad input
# (no L1 boots here)

def test_a_host_without_qemu_is_a_one_line_error(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(EngineError) as e:
        check_host(256)
    assert e.value.one_line() == ("qemu-system-x86_64 not found: the nested test bed runs L1 "
                                  "under QEMU TCG (apt-get install qemu-system-x86)")


def test_l1_larger_than_the_hosts_free_memory_is_refused_before_booting(tmp_path, kernel):
    with pytest.raises(UsageError) as e:
        run_bed([], tmp_path / "out", kernel=kernel, memory_mib=1 << 30)
    assert e.value.message.startswith(f"L1 needs {1 << 30} MiB and this host has ")
    assert not (tmp_path / "out").exists()


def test_a_kernel_without_a_modules_package_is_refused(tmp_path, kernel):
    from dataclasses import replace

    from ktstr_vmm.nested.modules import fetch_modules

    user = replace(kernel, origin="user", version="user-0123456789ab", dir=tmp_path)
    with pytest.raises(UsageError) as e:
        fetch_modules(user)
    assert e.value.one_line() == (
        "kernel user-0123456789ab is not a Debian kernel: the nested test bed needs its "
        "kvm/kvm-amd modules from linux-modules-<version> (use the Debian kernel (ktstr "
        "kernel fetch))")
