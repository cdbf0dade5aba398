"""ktstr gauntlet without VMs: the matrix and its one-line refusals, cells and keys, the
gauntlet id in the store index, a worker's packed run directory put into the store (and
refused when it tries to escape), the verifier table from recorded real artifacts."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from support import DATA as SUPPORT_DATA

from ktstr_vmm.errors import StoreError, UsageError
from ktstr_vmm.gauntlet.matrix import (
    Cell,
    expand_topologies,
    matrix_from_file,
    matrix_from_options,
)
from ktstr_vmm.gauntlet.record import (
    judged_cells,
    list_records,
    read_record,
    unpack_run,
    write_record,
)
from ktstr_vmm.gauntlet.verifier import first_verifier_error, read_cell, render_table
from ktstr_vmm.spec import PRESETS, RunSpec, parse_topology
from ktstr_vmm.store.store import Store

DATA = SUPPORT_DATA / "gauntlet"
KTSTR = [sys.executable, "-m", "ktstr_cli"]


# --------------------------------------------------------------------------- matrix

def test_topologies_take_all_names_notations_and_globs_in_order_without_duplicates():
    assert expand_topologies(["all"]) == tuple(PRESETS)
    assert expand_topologies(["tiny-*"]) == ("tiny-1llc", "tiny-2llc")
    assert expand_topologies(["smt-2llc", "tiny-*", "tiny-1llc", "1n2l2c1t"]) == (
        "smt-2llc", "tiny-1llc", "tiny-2llc", "1n2l2c1t")


@pytest.mark.parametrize("items,message", [
    (["tiny-*", "huge-*"], "--topologies: 'huge-*' matches no topology preset (see ktstr topologies)"),
    (["tiny-1lc"], "--topologies: unknown topology 'tiny-1lc' (did you mean tiny-1llc, tiny-2llc, numa4-12llc?)"),
    (["1n3l2c1t", "2n3l2c1t"], "--topologies: topology '2n3l2c1t': LLCs (3) must be a multiple "
                               "of NUMA nodes (2)"),
])
def test_a_bad_topology_is_named_in_one_line(items, message):
    with pytest.raises(UsageError) as e:
        expand_topologies(items)
    assert e.value.one_line() == message


def test_options_make_every_cell_topology_major_with_stable_keys():
    m = matrix_from_options("scx_simple,scx_qmap", "tiny-*", None, "spin:2", "2s", 2, None, False)
    cells = m.cells()
    assert len(cells) == 2 * 2 * 1 * 2
    assert [c.topology for c in cells[:4]] == ["tiny-1llc"] * 4
    assert cells[0].key == "scx_simple|tiny-1llc|newest|1"
    assert len({c.key for c in cells}) == len(cells)
    assert all(Cell.from_key(c.key) == c for c in cells)
    assert m.duration_s == 2.0 and m.workload == "spin:2"
    # the verifier sweep defaults to a short workload
    assert matrix_from_options("scx_simple", "tiny-1llc", None, None, None, None, None,
                               True).duration_s == 1.0


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "matrix.toml"
    p.write_text(text)
    return p


def test_a_matrix_file_gives_the_same_matrix_as_the_options(tmp_path):
    p = write(tmp_path, 'schedulers = ["scx_simple", "scx_qmap"]\ntopologies = ["tiny-*"]\n'
                        'workload = "spin:2"\nduration = "2s"\nrepeat = 2\n')
    assert matrix_from_file(p) == matrix_from_options("scx_simple,scx_qmap", "tiny-*", None,
                                                      "spin:2", "2s", 2, None, False)


@pytest.mark.parametrize("text,message", [
    ('schedulers = ["scx_simple"]\ntopologies = ["tiny-1llc"]\nrepeats = 2\n',
     "{f}: unknown key 'repeats' (keys are schedulers, topologies, kernels, workload, duration, "
     "repeat, sched_args, verifier)"),
    ('topologies = ["tiny-1llc"]\n',
     "{f}: 'schedulers' is missing (add schedulers = [\"...\"] to the file)"),
    ('schedulers = ["scx_simple"]\ntopologies = []\n',
     "{f}: 'topologies' must be a non-empty list of strings (like topologies = [\"a\", \"b\"])"),
    ('schedulers = ["scx_simple"]\ntopologies = ["tiny-9llc"]\n',
     "{f}: 'topologies': unknown topology 'tiny-9llc' (did you mean tiny-2llc, tiny-1llc, smt-3llc?)"),
    ('schedulers = ["scx_simple"]\ntopologies = ["tiny-1llc"]\nduration = "soon"\n',
     "{f}: bad duration 'soon' (use a number with ms, s, m or h, like 5s, 500ms or 2m)"),
    ('schedulers = ["scx_simple"]\ntopologies = ["tiny-1llc"]\nrepeat = 0\n',
     "{f}: repeat 0 is out of range (use 1 to 100)"),
    ('schedulers = ["scx_simple"]\ntopologies = ["tiny-1llc"]\nworkload = "spin:x"\n',
     "{f}: bad worker count 'x' in workload 'spin:x' (use a number from 1 to 1024)"),
    ('schedulers = ["scx_simple"\n', "{f}: not valid TOML: "),
])
def test_a_malformed_matrix_file_is_refused_in_one_line(tmp_path, text, message):
    p = write(tmp_path, text)
    with pytest.raises(UsageError) as e:
        matrix_from_file(p)
    assert e.value.one_line().startswith(message.format(f=p))
    assert "\n" not in e.value.one_line()


def test_cli_refuses_a_malformed_matrix_before_any_vm_and_writes_nothing(tmp_path):
    store = tmp_path / "store"
    p = write(tmp_path, 'schedulers = ["scx_simple"]\ntopologies = ["tiny-1llc", "bogus"]\n')
    r = subprocess.run([*KTSTR, "gauntlet", str(p)], capture_output=True, text=True,
                       env={**os.environ, "KTSTR_HOME": str(store)}, timeout=60)
    assert r.returncode == 2
    assert r.stderr == (f"ktstr: error: {p}: 'topologies': unknown topology 'bogus' (use a "
                        "preset (ktstr topologies) or notation like 1n2l2c1t)\n")
    assert r.stdout == ""
    assert not store.exists()  # no gauntlet record, no run directory, no cluster


def test_cli_refuses_matrix_options_beside_a_file_and_resume_with_options(tmp_path):
    env = {**os.environ, "KTSTR_HOME": str(tmp_path / "store")}
    p = write(tmp_path, 'schedulers = ["scx_simple"]\ntopologies = ["tiny-1llc"]\n')
    r = subprocess.run([*KTSTR, "gauntlet", str(p), "-s", "scx_qmap"], capture_output=True,
                       text=True, env=env, timeout=60)
    assert (r.returncode, r.stderr) == (2, "ktstr: error: -s cannot be combined with a matrix "
                                           "file (put it in the file instead)\n")
    r = subprocess.run([*KTSTR, "gauntlet", "--resume", "g-1", "-t", "tiny-1llc"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert (r.returncode, r.stderr) == (2, "ktstr: error: --resume takes the matrix from the "
                                           "gauntlet record (drop the matrix options)\n")
    r = subprocess.run([*KTSTR, "gauntlet", "--resume", "g-nope"], capture_output=True,
                       text=True, env=env, timeout=60)
    assert r.returncode == 2
    assert r.stderr.startswith("ktstr: error: no gauntlet 'g-nope' in the store ")


# --------------------------------------------------------------------------- store

def make_run(store: Store, gid: str | None, cell: str | None, verdict: str | None) -> Path:
    spec = RunSpec(name="scx_simple", scheduler="scx_simple",
                   topology=parse_topology("tiny-1llc"), topology_requested="tiny-1llc",
                   gauntlet=gid, gauntlet_cell=cell)
    rd = store.create_run(spec)
    if verdict:
        rd.write_status("done")
        (rd / "result.json").write_text(json.dumps({"verdict": verdict, "message": ""}))
    return rd.path


def test_the_index_knows_each_runs_gauntlet_and_which_cells_are_judged(tmp_path):
    store = Store(tmp_path / "store")
    make_run(store, None, None, "pass")
    a = make_run(store, "g-1", "scx_simple|tiny-1llc|newest|1", "pass")
    make_run(store, "g-1", "scx_simple|tiny-1llc|newest|2", None)  # still pending
    b = make_run(store, "g-1", "scx_simple|tiny-2llc|newest|1", "fail")
    make_run(store, "g-2", "scx_simple|tiny-1llc|newest|1", "pass")
    runs = store.list_runs(gauntlet="g-1")
    assert {r.run_id for r in runs} >= {a.name, b.name} and len(runs) == 3
    assert {r.gauntlet for r in runs} == {"g-1"}
    assert judged_cells(store, "g-1") == {"scx_simple|tiny-1llc|newest|1": a.name,
                                          "scx_simple|tiny-2llc|newest|1": b.name}
    assert RunSpec.from_json(json.loads((a / "spec.json").read_text())).gauntlet == "g-1"


def packed(entries: list[tuple[str, bytes | None]], kind=tarfile.REGTYPE) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.type = kind
                info.size = len(data) if kind == tarfile.REGTYPE else 0
                tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return buf.getvalue()


def test_a_run_directory_from_a_worker_lands_whole_and_once(tmp_path):
    from ktstr_vmm.gauntlet.cell import pack_run

    src = Store(tmp_path / "worker")
    run = make_run(src, "g-1", "scx_simple|tiny-1llc|newest|1", "pass")
    (run / "snapshots").mkdir()
    (run / "snapshots" / "a.txt").write_text("dump")
    data = pack_run(run)
    dst = Store(tmp_path / "mine")
    assert unpack_run(dst, data) == run.name
    got = dst.runs_dir / run.name
    assert (got / "snapshots" / "a.txt").read_text() == "dump"
    assert (got / "spec.json").read_bytes() == (run / "spec.json").read_bytes()
    assert [r.run_id for r in dst.list_runs(gauntlet="g-1")] == [run.name]
    assert unpack_run(dst, data) == run.name  # the same run again: left as it is
    assert sorted(p.name for p in dst.runs_dir.iterdir()) == [run.name]


@pytest.mark.parametrize("entries,kind,message", [
    ([("r1", None), ("r1/../../evil", b"x")], tarfile.REGTYPE, "bad entry 'r1/../../evil'"),
    ([("r1", None), ("other/spec.json", b"x")], tarfile.REGTYPE, "bad entry 'other/spec.json'"),
    ([("r1", None), ("r1/link", b"")], tarfile.SYMTYPE, "bad entry 'r1/link'"),
])
def test_a_worker_cannot_write_outside_its_run_directory(tmp_path, entries, kind, message):
    dst = Store(tmp_path / "mine")
    with pytest.raises(StoreError) as e:
        unpack_run(dst, packed(entries, kind))
    assert message in str(e.value)
    assert not (tmp_path / "evil").exists()
    assert not dst.runs_dir.exists() or not any(dst.runs_dir.iterdir())


def test_a_worker_cannot_name_a_run_with_a_bad_name(tmp_path):
    with pytest.raises(UsageError):
        unpack_run(Store(tmp_path / "mine"), packed([(".hidden", None)]))


# --------------------------------------------------------------------------- verifier

def test_verifier_numbers_from_a_real_runs_bpf_progs(tmp_path):
    (tmp_path / "bpf-progs.json").write_bytes((DATA / "scx_simple.bpf-progs.json").read_bytes())
    cell = read_cell(tmp_path)
    assert cell.loaded and cell.error is None
    names = [p.name for p in cell.progs]
    assert names[:3] == ["scx_lib_init_pr", "simple_select_c", "simple_enqueue"]
    assert {p.type for p in cell.progs} == {"tracing", "struct_ops"}
    assert cell.total_insns == sum(p.verified_insns for p in cell.progs) > 0
    table = render_table([("tiny-1llc", "7.3.4", "scx_simple", cell)])
    assert table.splitlines()[0] == "== tiny-1llc  kernel 7.3.4"
    assert f"scx_simple           loaded, 9 programs, {cell.total_insns} verified insns" in table


def test_a_scheduler_that_does_not_load_reports_libbpfs_first_complaint(tmp_path):
    (tmp_path / "sched.log").write_bytes((DATA / "scx_central-kconfig.sched.log").read_bytes())
    cell = read_cell(tmp_path)
    assert not cell.loaded
    assert cell.error == "libbpf: failed to open system Kconfig"
    line = render_table([("tiny-1llc", "7.3.4", "scx_central", cell)]).splitlines()[1]
    assert line == "  scx_central          FAILED to load: libbpf: failed to open system Kconfig"


def test_the_first_verifier_error_is_the_line_before_the_insn_count(tmp_path):
    log = tmp_path / "sched.log"
    log.write_text(
        "libbpf: prog 'bad_enqueue': BPF program load failed: Permission denied\n"
        "libbpf: prog 'bad_enqueue': -- BEGIN PROG LOAD LOG --\n"
        "0: R1=ctx() R10=fp0\n"
        "; return *p; @ x.bpf.c:12\n"
        "3: (61) r0 = *(u32 *)(r0 +0)\n"
        "R0 invalid mem access 'map_value_or_null'\n"
        "processed 4 insns (limit 1000000) max_states_per_insn 0 total_states 0\n"
        "-- END PROG LOAD LOG --\n"
        "libbpf: prog 'bad_enqueue': failed to load: -13\n")
    assert first_verifier_error(log) == ("bad_enqueue", "R0 invalid mem access 'map_value_or_null'")
    assert read_cell(tmp_path).failed_prog == "bad_enqueue"


def test_a_real_verifier_rejection_names_the_program_and_the_error(tmp_path):
    """scx_qmap as built here fails the 7.3 verifier in qmap_dequeue; the log carries the
    newer kernels' explained report after the classic error line."""
    (tmp_path / "sched.log").write_bytes((DATA / "scx_qmap-verifier.sched.log").read_bytes())
    cell = read_cell(tmp_path)
    assert (cell.loaded, cell.failed_prog) == (False, "qmap_dequeue")
    assert cell.error == "R7 invalid mem access 'scalar' (Register Type Safety: Invalid dereference)"
    assert render_table([("tiny-1llc", "7.3.4", "scx_qmap", cell)]).splitlines()[1] == (
        "  scx_qmap             FAILED to load in qmap_dequeue: R7 invalid mem access 'scalar' "
        "(Register Type Safety: Invalid dereference)")


def test_the_agents_bpfprogs_frame_decodes_and_bad_ones_are_counted_not_raised():
    from ktstr_vmm.guest import messages as gm
    from ktstr_vmm.guest.messages import parse_payload
    from ktstr_vmm.guest.wire import Decoder, MsgType, encode
    from ktstr_vmm.rundir.bpf_progs import to_json

    recorded = json.loads((DATA / "scx_simple.bpf-progs.json").read_bytes())
    payload = {"when": "scx_enabled", "t_ms": recorded["guest_ms"], "progs": recorded["progs"]}
    (frame,) = Decoder().feed(encode(MsgType.BpfProgs, json.dumps(payload)))
    assert frame.type == MsgType.BpfProgs == 56
    p = parse_payload(frame)
    assert isinstance(p, gm.BpfProgs)
    assert [g.name for g in p.progs][:2] == ["scx_lib_init_pr", "simple_select_c"]
    assert to_json(p) == recorded  # what the recorder writes is what was recorded
    for bad in ({"progs": [{"name": "x"}]}, {"progs": "many"}, {"progs": [{"id": -1}]}):
        (frame,) = Decoder().feed(encode(MsgType.BpfProgs, json.dumps(bad)))
        assert isinstance(parse_payload(frame), gm.PayloadError)


def test_cli_refuses_an_unknown_kernel_before_any_vm(tmp_path):
    store = tmp_path / "store"
    r = subprocess.run([*KTSTR, "gauntlet", "--kernels", "9.9.9-nope", "-t", "tiny-1llc"],
                       capture_output=True, text=True, timeout=60,
                       env={**os.environ, "KTSTR_HOME": str(store)})
    assert r.returncode == 2
    assert r.stderr == ("ktstr: error: kernel '9.9.9-nope': kernel 9.9.9-nope does not exist "
                        "(--kernels takes cached versions (ktstr kernel list), bzImages, "
                        "vmlinux files or build trees)\n")
    assert not store.exists()


def test_private_stores_of_dead_workers_are_swept(tmp_path, monkeypatch):
    import tempfile

    from ktstr_vmm.gauntlet import cell

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.Popen(["true"])
    dead.wait()
    gone = tmp_path / f"{cell.PRIVATE_PREFIX}{dead.pid}-abc"
    live = tmp_path / f"{cell.PRIVATE_PREFIX}{os.getppid()}-abc"
    mine = tmp_path / f"{cell.PRIVATE_PREFIX}{os.getpid()}-abc"
    for d in (gone, live, mine):
        (d / "runs").mkdir(parents=True)
    cell.sweep_private_stores()
    assert not gone.exists() and live.exists() and mine.exists()


def test_the_embedded_cluster_is_sized_by_cpus_memory_and_cells(monkeypatch):
    from ktstr_vmm.gauntlet import driver

    cells = matrix_from_options("scx_simple", "tiny-1llc,medium-8llc", None, None, None, 4,
                                None, False).cells()
    mem = {t: parse_topology(t).default_memory_mib() for t in ("tiny-1llc", "medium-8llc")}
    monkeypatch.setattr(driver.os, "sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.setattr(driver, "_mem_available_mib", lambda: 64 * 1024)
    assert driver.default_workers(cells, mem.__getitem__) == 8  # 8 cells
    monkeypatch.setattr(driver, "_mem_available_mib", lambda: 5 * 1024)
    # medium-8llc's guest: 64 vCPUs x 64 MiB = 4096 MiB + 384 MiB beside it
    assert driver.default_workers(cells, mem.__getitem__) == 1
    monkeypatch.setattr(driver.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(driver, "_mem_available_mib", lambda: 64 * 1024)
    assert driver.default_workers(cells, mem.__getitem__) == 2


def test_a_damaged_gauntlet_record_is_refused_in_one_line_and_not_listed(tmp_path):
    store = Store(tmp_path / "store")
    m = matrix_from_options("scx_simple", "tiny-1llc", None, None, None, None, None, False)
    write_record(store, "g-1", m)
    write_record(store, "g-2", m)
    (store.root / "gauntlets" / "g-2.json").write_text("{half")
    assert [d["id"] for d in list_records(store)] == ["g-1"]
    with pytest.raises(UsageError) as e:
        read_record(store, "g-2")
    assert e.value.one_line().startswith(f"gauntlet record {store.root}/gauntlets/g-2.json is "
                                         "damaged: g-2.json: invalid JSON")
    assert read_record(store, "g-1").matrix == m


# --------------------------------------------------------------------------- what the user reads

def states_for_output():
    from ktstr_vmm.gauntlet.driver import CellState, GauntletRun

    cells = matrix_from_options("scx_simple,scx_qmap", "tiny-1llc,tiny-2llc", None, None, None,
                                None, None, False).cells()
    a = CellState(cells[0], status="done", verdict="pass", run_id="r-pass", wall_s=12.0)
    b = CellState(cells[1], status="done", verdict="fail", run_id="r-fail", wall_s=14.5,
                  first_line="scx_qmap: Failed to load skel")
    c = CellState(cells[2], status="lost", workers_tried=["tcp://w1:1", "tcp://w2:2"])
    c.reason = GauntletRun._lost_reason(None, c)  # what the driver says for such a cell
    d = CellState(cells[3], status="queued")
    return a, b, c, d


def test_the_cell_table_puts_failures_first(capsys):
    from ktstr_cli.commands.gauntlet import print_cells

    a, b, c, d = states_for_output()
    print_cells([a, b, c, d])
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in lines] == ["FAIL", "LOST", "PASS", "QUEUED"]
    assert lines[0].startswith("FAIL          scx_qmap on tiny-1llc")
    assert lines[0].endswith("14.5s  scx_qmap: Failed to load skel")
    assert lines[1].endswith("lost: the worker running it died 2 time(s) (tcp://w1:1, "
                             "tcp://w2:2); see the Dask workers' logs  (attempts 2)")
    assert lines[2].rstrip().endswith("r-pass                                           12.0s")


def test_exit_codes_follow_the_worst_cell():
    from ktstr_vmm.gauntlet.driver import summary_exit_code

    a, b, c, d = states_for_output()
    assert summary_exit_code([a], False) == 0
    assert summary_exit_code([a, b], False) == 1
    assert summary_exit_code([a, c], False) == 1  # lost
    incon = type(a)(a.cell, status="done", verdict="inconclusive")
    assert summary_exit_code([a, incon], False) == 3
    assert summary_exit_code([a], True) == 130


def test_the_progress_line_counts_done_running_queued_with_an_eta(capsys, monkeypatch):
    from ktstr_cli.commands.gauntlet import ProgressLine
    from ktstr_vmm.gauntlet.driver import Progress

    monkeypatch.setattr("sys.stderr.isatty", lambda: False, raising=False)
    line = ProgressLine("g-1")
    a, b, c, d = states_for_output()
    line.update(Progress(8, 3, 2, 3, {"pass": 2, "fail": 1}, 95.0, 130.0, 2, finished=b))
    line.update(Progress(8, 3, 2, 3, {"pass": 2, "fail": 1}, 96.0, 129.0, 2))  # no change
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "ktstr: FAIL         scx_qmap on tiny-1llc  r-fail",
        "ktstr: gauntlet g-1: 3/8 done (1 fail, 2 pass), 2 running, 3 queued on 2 workers, "
        "ETA 2m10s [1m35s]"]


def test_runs_lists_one_gauntlets_runs(tmp_path):
    store = Store(tmp_path / "store")
    a = make_run(store, "g-1", "scx_simple|tiny-1llc|newest|1", "pass")
    make_run(store, None, None, "pass")
    r = subprocess.run([*KTSTR, "runs", "--gauntlet", "g-1", "--json"], capture_output=True,
                       text=True, timeout=60, env={**os.environ, "KTSTR_HOME": str(store.root)})
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [(x["run_id"], x["gauntlet"], x["gauntlet_cell"]) for x in rows] == [
        (a.name, "g-1", "scx_simple|tiny-1llc|newest|1")]
