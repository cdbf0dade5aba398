"""`ktstr gauntlet` end to end: a Dask LocalCluster of two worker processes runs real VMs.

Each test drives the CLI as a user does (a subprocess with --json and an isolated store)
and checks what the user sees: every cell judged and in the store under the gauntlet id,
a worker killed -9 mid-cell costing nothing but a retry, no QEMU left behind. VM count is
kept low (tiny presets, 1-2 s workloads): the machine has two cores.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.vm, pytest.mark.slow]

KTSTR = [sys.executable, "-m", "ktstr_cli"]
WAIT_S = 600  # an upper bound for a condition to come true, never a decision


def gauntlet(store: Path, *args: str, timeout: float = 900) -> tuple[int, dict, str]:
    env = {**os.environ, "KTSTR_HOME": str(store)}
    p = subprocess.run([*KTSTR, "gauntlet", "--json", *args], capture_output=True, text=True,
                       timeout=timeout, env=env)
    try:
        out = json.loads(p.stdout) if p.stdout.strip() else {}
    except ValueError:
        out = {}
    return p.returncode, out, p.stderr


def qemus_of(store: Path) -> list[str]:
    """Command lines of QEMU processes started for runs of this store (none may be left)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "qemu-system" in cmd and str(store) in cmd:
            found.append(cmd)
    return found


def eventually(cond, what: str) -> None:
    """Wait (bounded) for a condition a finished gauntlet guarantees soon after."""
    deadline = time.monotonic() + WAIT_S
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def phase_of(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / "status.json").read_text()).get("phase")
    except (OSError, ValueError):
        return None


def spec_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "spec.json").read_text())


@pytest.fixture
def gstore(tmp_path, kernel, schedulers):
    root = tmp_path / "store"
    root.mkdir()
    return root


def test_four_cells_on_two_workers_land_in_the_store_under_the_gauntlet_id(gstore):
    code, out, err = gauntlet(gstore, "-s", "scx_simple", "-t", "tiny-1llc,tiny-2llc",
                              "--repeat", "2", "-d", "1s", "--workers", "2")
    assert code == 0, err
    gid = out["gauntlet"]
    cells = out["cells"]
    assert len(cells) == 4
    assert {c["status"] for c in cells} == {"done"}
    assert {c["verdict"] for c in cells} == {"pass"}
    # two worker processes shared the work (each cell says which ran it)
    assert len({c["worker"] for c in cells}) == 2
    from ktstr_vmm.store.store import Store

    store = Store(gstore)
    runs = store.list_runs(gauntlet=gid)
    assert sorted(r.run_id for r in runs) == sorted(c["run_id"] for c in cells)
    assert {r.gauntlet_cell for r in runs} == {c["key"] for c in cells}
    for r in runs:
        assert r.verdict == "pass"
        assert spec_of(r.path)["gauntlet"] == gid
        assert (r.path / "bpf-progs.json").is_file()  # the verifier's numbers, every run
    # the record names every cell; the same id again resumes and starts no VM
    record = json.loads((gstore / "gauntlets" / f"{gid}.json").read_text())
    assert sorted(c["key"] for c in record["cells"]) == sorted(c["key"] for c in cells)
    code, again, err = gauntlet(gstore, "--resume", gid)
    assert code == 0, err
    assert {c["status"] for c in again["cells"]} == {"skipped"}
    assert {c["run_id"] for c in again["cells"]} == {c["run_id"] for c in cells}
    assert len(store.list_runs(gauntlet=gid)) == 4
    assert not qemus_of(gstore)


def test_a_worker_killed_mid_cell_is_retried_and_the_cell_still_judged(gstore):
    env = {**os.environ, "KTSTR_HOME": str(gstore)}
    proc = subprocess.Popen([*KTSTR, "gauntlet", "--json", "-s", "scx_simple", "-t",
                             "tiny-1llc", "-d", "2s", "--workers", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        # Wait until the cell's VM is running, then kill -9 the worker process running it.
        first = None
        deadline = time.monotonic() + WAIT_S
        while first is None and proc.poll() is None and time.monotonic() < deadline:
            for status in (gstore / "runs").glob("*/status.json"):
                try:
                    st = json.loads(status.read_text())
                except (OSError, ValueError):
                    continue
                if st.get("phase") == "running":
                    first = status.parent, st["pid"]
            time.sleep(0.2)
        assert first is not None, "the cell never reached its running phase"
        run_dir, run_pid = first
        worker_pid = int(Path(f"/proc/{run_pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        os.kill(worker_pid, signal.SIGKILL)
        out_text, err = proc.communicate(timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    out = json.loads(out_text)
    (cell,) = out["cells"]
    assert cell["status"] == "done" and cell["verdict"] == "pass"
    assert cell["attempts"] == 2
    assert cell["run_id"] != run_dir.name
    assert cell["worker"] != cell["workers_tried"][0]
    # the killed attempt tears its VM down and says so; nothing is left running
    eventually(lambda: phase_of(run_dir) == "interrupted", "the killed attempt's run "
               f"still says {phase_of(run_dir)}")
    assert spec_of(run_dir)["gauntlet_cell"] == cell["key"]
    eventually(lambda: not qemus_of(gstore), "a QEMU of the killed attempt is still running")


def test_run_directories_sent_back_through_dask_land_like_any_run(gstore):
    code, out, err = gauntlet(gstore, "-s", "scx_simple", "-t", "tiny-1llc", "-d", "1s",
                              "--workers", "1", "--send-runs")
    assert code == 0, err
    (cell,) = out["cells"]
    assert (cell["status"], cell["verdict"], cell["via"]) == ("done", "pass", "sent")
    from ktstr_vmm.store.store import Store

    (run,) = Store(gstore).list_runs(gauntlet=out["gauntlet"])
    assert run.run_id == cell["run_id"] and run.verdict == "pass"
    assert run.path == gstore / "runs" / cell["run_id"]
    for name in ("spec.json", "status.json", "console.log", "sched.log", "events.jsonl",
                 "result.json", "bpf-progs.json"):
        assert (run.path / name).is_file(), name
    assert not [p for p in (gstore / "runs").iterdir() if p.name.startswith(".")]


def test_ctrl_c_cancels_keeps_finished_cells_and_leaves_no_qemu(gstore):
    """Two cells on one worker: once the first is judged and the second runs, SIGINT."""
    env = {**os.environ, "KTSTR_HOME": str(gstore)}
    proc = subprocess.Popen([*KTSTR, "gauntlet", "--json", "-s", "scx_simple", "-t",
                             "tiny-1llc,tiny-2llc", "-d", "10s", "--workers", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        def phases() -> list[str | None]:
            return [phase_of(d) for d in sorted((gstore / "runs").glob("2*"))]

        deadline = time.monotonic() + WAIT_S
        while phases() != ["done", "running"] and proc.poll() is None:
            assert time.monotonic() < deadline, f"runs stayed {phases()}"
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out_text, err = proc.communicate(timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    out = json.loads(out_text)
    assert out["interrupted"] is True
    first, second = out["cells"]
    assert (first["status"], first["verdict"]) == ("done", "pass")
    assert second["status"] == "interrupted"
    done_dir, cut_dir = sorted((gstore / "runs").glob("2*"))
    assert done_dir.name == first["run_id"] and phase_of(done_dir) == "done"
    eventually(lambda: phase_of(cut_dir) == "interrupted",
               f"the cancelled run still says {phase_of(cut_dir)}")
    eventually(lambda: not qemus_of(gstore), "a QEMU is still running")
    assert "interrupted; finished cells are kept" not in err  # --json: no human summary


def test_verifier_sweep_reports_verified_insns_and_the_first_verifier_error(gstore):
    """scx_simple loads: each program with the kernel's verified_insns. scx_qmap, as the
    kernel's tools/sched_ext builds it here (clang-19, 7.3.4), is rejected by the verifier
    in qmap_dequeue - a real rejection, so the sweep must name the program and the error."""
    code, out, err = gauntlet(gstore, "--verifier", "-s", "scx_simple,scx_qmap",
                              "-t", "tiny-1llc", "--workers", "2")
    assert code == 1, err  # a scheduler that does not load fails its cell
    by_sched = {v["scheduler"]: v for v in out["verifier"]}
    simple, qmap = by_sched["scx_simple"], by_sched["scx_qmap"]
    assert simple["loaded"] and simple["error"] is None
    progs = {p["name"]: p for p in simple["progs"]}
    assert {"simple_enqueue", "simple_dispatch", "simple_init"} <= set(progs)
    assert all(p["verified_insns"] > 0 for p in progs.values())
    assert progs["simple_enqueue"]["type"] == "struct_ops"
    assert not qmap["loaded"] and qmap["progs"] == []
    assert qmap["failed_prog"] == "qmap_dequeue"
    assert qmap["error"].startswith("R7 invalid mem access 'scalar'")
    cells = {c["scheduler"]: c for c in out["cells"]}
    assert cells["scx_qmap"]["verdict"] == "fail" and cells["scx_simple"]["verdict"] == "pass"


def test_a_running_dask_cluster_at_scheduler_address_runs_the_cells(gstore, tmp_path):
    """A real cluster: `dask scheduler` and one `dask worker` as separate processes, the
    gauntlet connects to the scheduler's address instead of starting a LocalCluster."""
    info = tmp_path / "scheduler.json"
    sched = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler",
                              "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                              "--scheduler-file", str(info)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = None
    try:
        eventually(info.exists, "the Dask scheduler never wrote its address")
        eventually(lambda: json.loads(info.read_text() or "{}").get("address"),
                   "no address in the scheduler file")
        address = json.loads(info.read_text())["address"]
        worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker",
                                   address, "--nthreads", "1", "--no-dashboard",
                                   "--name", "test-worker"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        code, out, err = gauntlet(gstore, "-s", "scx_simple", "-t", "tiny-1llc", "-d", "1s",
                                  "--scheduler-address", address)
    finally:
        for p in (worker, sched):
            if p is not None:
                p.terminate()
                try:
                    p.wait(60)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
    assert code == 0, err
    assert "LocalCluster" not in err
    (cell,) = out["cells"]
    assert (cell["status"], cell["verdict"], cell["via"]) == ("done", "pass", "store")
    assert cell["worker"].startswith("tcp://127.0.0.1:")
    assert not qemus_of(gstore)


def test_a_cell_whose_worker_dies_twice_is_reported_lost_with_the_reason(gstore):
    """Each attempt's worker is killed -9 as soon as its VM is booting: the retry goes to
    the other (restarted) worker, the second death makes the cell lost, naming both."""
    env = {**os.environ, "KTSTR_HOME": str(gstore)}
    proc = subprocess.Popen([*KTSTR, "gauntlet", "--json", "-s", "scx_simple", "-t",
                             "tiny-1llc", "-d", "5s", "--workers", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    killed: list[Path] = []
    try:
        deadline = time.monotonic() + WAIT_S
        while len(killed) < 2 and proc.poll() is None:
            assert time.monotonic() < deadline, f"only {len(killed)} attempt(s) seen"
            for status in sorted((gstore / "runs").glob("*/status.json")):
                if status.parent in killed:
                    continue
                try:
                    st = json.loads(status.read_text())
                except (OSError, ValueError):
                    continue
                if st.get("phase") in ("booting", "running"):
                    stat = Path(f"/proc/{st['pid']}/stat").read_text()
                    os.kill(int(stat.rsplit(")", 1)[1].split()[1]), signal.SIGKILL)
                    killed.append(status.parent)
            time.sleep(0.2)
        out_text, err = proc.communicate(timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, err
    (cell,) = json.loads(out_text)["cells"]
    assert cell["status"] == "lost" and cell["verdict"] is None
    assert len(cell["workers_tried"]) == 2 and len(set(cell["workers_tried"])) == 2
    assert cell["reason"] == (f"lost: the worker running it died 2 time(s) "
                              f"({', '.join(cell['workers_tried'])}); see the Dask workers' logs")
    from ktstr_vmm.store.store import Store

    store = Store(gstore)
    eventually(lambda: {s.verdict for s in store.list_runs(gauntlet=json.loads(out_text)[
        "gauntlet"])} == {"interrupted"}, "the killed attempts' runs are not interrupted")
    eventually(lambda: not qemus_of(gstore), "a QEMU of a killed attempt is still running")
