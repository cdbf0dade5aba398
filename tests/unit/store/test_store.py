"""The run store: run directories, the incremental index, corrupt runs, concurrency, the
change notifier."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import REPO, TESTS
from support.store_helpers import T0, make_run, replace_bytes, write_json

from ktstr_vmm.errors import StoreError, UsageError
from ktstr_vmm.rundir.layout import RunDir
from ktstr_vmm.rundir.summary import summarize
from ktstr_vmm.spec import RunSpec, parse_topology
from ktstr_vmm.store.store import Store
from ktstr_vmm.store.watch import LogAppended, RunAdded, RunStatusChanged, StoreWatcher

SPEC = RunSpec(name="basic", scheduler="scx_simple", topology=parse_topology("tiny-2llc"),
               topology_requested="tiny-2llc")


def age(path: Path, seconds: float = 3600) -> None:
    """Make a directory's mtime old, so the index stores a stable stamp for it."""
    t = time.time() - seconds
    os.utime(path, (t, t))


# ---------------------------------------------------------------------- creating and listing


def test_create_run_makes_spec_and_pending_status_under_a_readable_id(tmp_path):
    s = Store(tmp_path)
    rd = s.create_run(SPEC)
    assert rd.path.parent == tmp_path / "runs"
    assert rd.run_id[16:].startswith("basic-scx_simple-tiny-2llc-")
    assert (rd / "spec.json").is_file() and rd.read_json("status.json")["phase"] == "pending"
    assert rd.read_json("spec.json") == SPEC.to_json()
    assert not [p for p in (tmp_path / "runs").iterdir() if p.name.startswith(".")]
    [run] = s.list_runs()
    assert (run.run_id, run.verdict, run.preset, run.topology) == (rd.run_id, "pending", "tiny-2llc", "1n2l2c1t")


def test_list_is_newest_first_and_a_run_written_by_another_process_appears(tmp_path):
    s = Store(tmp_path)
    make_run(tmp_path, "20261125-173942-a", started=T0)
    make_run(tmp_path, "20261125-183942-b", started=T0 + 3600)
    assert [r.run_id for r in s.list_runs()] == ["20261125-183942-b", "20261125-173942-a"]
    code = f"""
import sys; sys.path.insert(0, {str(TESTS)!r})
from pathlib import Path
from support.store_helpers import make_run
make_run(Path({str(tmp_path)!r}), "20261125-193942-c", started={T0 + 7200})
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert [r.run_id for r in s.list_runs(limit=1)] == ["20261125-193942-c"]


def test_a_replaced_status_or_result_shows_without_reindex(tmp_path):
    s = Store(tmp_path)
    d = make_run(tmp_path, "20261125-173942-live", verdict=None, phase="booting", pid=os.getpid())
    age(d)
    assert s.list_runs()[0].verdict == "booting"
    write_json(d / "status.json", {"phase": "running", "pid": os.getpid(), "started": T0})
    assert s.list_runs()[0].verdict == "running"
    age(d)
    s.list_runs()  # a stable stamp is stored now
    write_json(d / "result.json", {"verdict": "fail", "message": "BUG SUMMARY: stall\nmore",
                                   "timings": {"total_s": 3.0}})
    [run] = s.list_runs()
    assert (run.verdict, run.first_line, run.duration_s) == ("fail", "BUG SUMMARY: stall", 3.0)


def test_a_finished_run_rewritten_later_is_seen_by_refresh_run_and_reindex(tmp_path):
    s = Store(tmp_path)
    d = make_run(tmp_path, "20261125-173942-done", verdict="pass")
    age(d)
    assert s.list_runs()[0].verdict == "pass"
    write_json(d / "result.json", {"verdict": "fail", "message": "re-evaluated"})
    assert s.refresh_run("20261125-173942-done").verdict == "fail"
    assert s.list_runs()[0].first_line == "re-evaluated"
    write_json(d / "result.json", {"verdict": "skip"})
    assert s.reindex() == 1 and s.list_runs()[0].verdict == "skip"
    shutil.rmtree(d)
    assert s.refresh_run("20261125-173942-done") is None and s.list_runs() == []


def test_reindex_equals_the_incremental_index(tmp_path):
    s = Store(tmp_path)
    for i, v in enumerate(["pass", "fail", "skip", "inconclusive", None]):
        make_run(tmp_path, f"20261125-17394{i}-r{i}", verdict=v, started=T0 + i,
                 phase="done" if v else "running", message=f"m{i}\nrest")
    s.list_runs()
    d = make_run(tmp_path, "20261125-180000-late", verdict="fail", started=T0 + 100)
    replace_bytes(tmp_path / "runs/20261125-173941-r1/result.json", b'{"verdict": "fa')
    shutil.rmtree(tmp_path / "runs/20261125-173942-r2")
    write_json(d / "result.json", {"verdict": "pass", "message": "", "timings": {"total_s": 1}})
    incremental = s.list_runs()
    fresh = Store(tmp_path)
    assert fresh.reindex() == 5
    assert fresh.list_runs() == incremental
    assert {r.run_id: r.verdict for r in incremental} == {
        "20261125-180000-late": "pass", "20261125-173944-r4": "interrupted",
        "20261125-173943-r3": "inconclusive", "20261125-173941-r1": "corrupt",
        "20261125-173940-r0": "pass"}


# ---------------------------------------------------------------------- corrupt runs


CORRUPT_CASES = [
    ("result.json", b'{"verdict": "fail", "message": "sched', "result.json: truncated JSON (37 bytes)"),
    ("result.json", b'{"verdict": "fail",\n "message": }', "result.json: invalid JSON (Expecting value, line 2 column 13)"),
    ("spec.json", b'{"name": "caf\xe9"}', "spec.json: not UTF-8 (byte 0xe9 at offset 13)"),
    ("result.json", b'{"verdict": 1}', "result.json: 'verdict' is a number, expected a string"),
    ("result.json", b'{"verdict": "maybe"}', "result.json: unknown verdict 'maybe'"),
    ("result.json", b'{"verdict": "pass", "timings": "3s"}', "result.json: 'timings' is a string, expected an object"),
    ("result.json", b'{"verdict": "pass", "timings": {"total_s": true}}', "result.json: 'total_s' is a boolean, expected a number"),
    ("result.json", b'["pass"]', "result.json: expected a JSON object, found an array"),
    ("result.json", b"", "result.json: empty"),
    ("spec.json", b'{"name": 7, "scheduler": "s", "topology": "1n1l1c1t"}', "spec.json: 'name' is a number, expected a string"),
    ("spec.json", b'{"name": "x", "topology": "1n1l1c1t"}', "spec.json: 'scheduler' is missing"),
]


@pytest.mark.parametrize("fname,data,reason", CORRUPT_CASES)
def test_unreadable_run_files_list_the_run_as_corrupt_with_the_reason(tmp_path, fname, data, reason):
    d = make_run(tmp_path, "20261125-173942-bad")
    make_run(tmp_path, "20261125-173942-good", started=T0 - 1)
    replace_bytes(d / fname, data)
    runs = Store(tmp_path).list_runs()
    assert [(r.run_id, r.verdict, r.error) for r in runs] == [
        ("20261125-173942-bad", "corrupt", reason), ("20261125-173942-good", "pass", None)]
    assert runs[0].first_line == reason


def test_missing_spec_done_without_result_and_bad_status_are_corrupt(tmp_path):
    a = make_run(tmp_path, "20261125-173942-nospec")
    (a / "spec.json").unlink()
    make_run(tmp_path, "20261125-173943-noresult", verdict=None, phase="done", started=T0 + 1)
    c = make_run(tmp_path, "20261125-173944-badstatus", verdict=None, started=T0 + 2)
    replace_bytes(c / "status.json", b'{"phase": "flying"}')
    d = make_run(tmp_path, "20261125-173945-nostatus", verdict=None, started=T0 + 3)
    (d / "status.json").unlink()
    assert {r.run_id: r.error for r in Store(tmp_path).list_runs()} == {
        "20261125-173945-nostatus": "status.json: missing",
        "20261125-173942-nospec": "spec.json: missing",
        "20261125-173943-noresult": "result.json: missing although the run is done",
        "20261125-173944-badstatus": "status.json: unknown phase 'flying'",
    }


def test_live_run_shows_its_phase_and_a_dead_writer_shows_interrupted(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=30)
    make_run(tmp_path, "20261125-173942-live", verdict=None, phase="booting", pid=os.getpid())
    make_run(tmp_path, "20261125-173943-dead", verdict=None, phase="running", pid=child.pid,
             started=T0 + 1)
    make_run(tmp_path, "20261125-173944-stopped", verdict=None, phase="interrupted", started=T0 + 2)
    runs = {r.run_id: r for r in Store(tmp_path).list_runs()}
    assert runs["20261125-173942-live"].verdict == "booting"
    dead = runs["20261125-173943-dead"]
    assert (dead.verdict, dead.phase) == ("interrupted", "running")
    assert dead.first_line == f"writer (pid {child.pid}) is gone; last phase running"
    assert runs["20261125-173944-stopped"].verdict == "interrupted"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=st.binary(max_size=200), status=st.binary(max_size=200),
       result=st.one_of(st.binary(max_size=200), st.recursive(
           st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
           lambda c: st.lists(c, max_size=3) | st.dictionaries(
               st.sampled_from(["verdict", "message", "timings", "total_s", "parent"]), c,
               max_size=4), max_leaves=10).map(lambda o: repr(o).encode())))
def test_summarize_never_raises_on_arbitrary_files(tmp_path, spec, status, result):
    d = tmp_path / "runs" / "x"
    d.mkdir(parents=True, exist_ok=True)
    for name, data in (("spec.json", spec), ("status.json", status), ("result.json", result)):
        (d / name).write_bytes(data)
    s = summarize(d)
    assert s.verdict in ("corrupt", "pass", "fail", "skip", "inconclusive", "interrupted",
                         "pending", "building", "booting", "running", "evaluating")
    assert (s.verdict == "corrupt") == (s.error is not None)


# ---------------------------------------------------------------------- finding runs


def test_run_found_by_id_prefix_and_substring(tmp_path):
    make_run(tmp_path, "20261125-173942-scx_simple-tiny-2llc-3f9a")
    make_run(tmp_path, "20261125-174500-scx_lavd-numa2-4llc-0b1c", scheduler="scx_lavd")
    s = Store(tmp_path)
    assert s.get("20261125-1745").scheduler == "scx_lavd"
    assert s.get("3f9a").run_id == "20261125-173942-scx_simple-tiny-2llc-3f9a"
    assert s.run_dir("lavd").path == tmp_path / "runs/20261125-174500-scx_lavd-numa2-4llc-0b1c"
    with pytest.raises(UsageError) as e:
        s.get("20261125-17")
    assert e.value.one_line() == (
        "run '20261125-17' is ambiguous: 2 runs match (20261125-174500-scx_lavd-numa2-4llc-0b1c, "
        "20261125-173942-scx_simple-tiny-2llc-3f9a; give more of the id)")


def test_unknown_run_id_names_the_closest_ids(tmp_path):
    make_run(tmp_path, "20261125-173942-scx_simple-tiny-2llc-3f9a")
    make_run(tmp_path, "20261125-174500-scx_lavd-numa2-4llc-0b1c")
    with pytest.raises(UsageError) as e:
        Store(tmp_path).get("20261125-173942-scx_simpel-tiny-2llc-3f9a")
    assert e.value.exit_code == 2
    assert e.value.one_line() == (
        f"no run '20261125-173942-scx_simpel-tiny-2llc-3f9a' in {tmp_path}/runs "
        "(closest: 20261125-173942-scx_simple-tiny-2llc-3f9a, 20261125-174500-scx_lavd-numa2-4llc-0b1c)")


def test_filters(tmp_path):
    make_run(tmp_path, "20261124-100000-a", started=T0 - 86400, verdict="pass")
    make_run(tmp_path, "20261125-173942-b", verdict="fail", scheduler="/opt/scx/bin/scx_lavd",
             message="BUG SUMMARY: runnable task stall")
    make_run(tmp_path, "20261125-174000-c", verdict="fail", topology="numa2-4llc", started=T0 + 18)
    make_run(tmp_path, "20261125-174100-d", verdict=None, phase="running", pid=os.getpid(),
             started=T0 + 78, topology="1n1l2c1t")
    s = Store(tmp_path)

    def ids(**kw):
        return [r.run_id[-1] for r in s.list_runs(**kw)]

    assert ids() == ["d", "c", "b", "a"]
    assert ids(verdict="fail") == ["c", "b"]
    assert ids(verdict="running") == ["d"]
    assert ids(scheduler="scx_lavd") == ["b"]
    assert ids(topology="numa2-4llc") == ["c"]
    assert ids(topology="2n4l4c1t") == ["c"]  # numa2-4llc in notation
    assert ids(topology="1n1l2c1t") == ["d"]
    assert ids(since=T0) == ["d", "c", "b"]
    assert ids(text="stall") == ["b"]
    assert ids(limit=2, offset=1) == ["c", "b"]
    assert ids(verdict="fail", since=T0 + 1) == ["c"]
    with pytest.raises(UsageError) as e:
        s.list_runs(verdict="failed")
    assert e.value.one_line() == "unknown verdict 'failed' (did you mean fail?)"


def test_children_are_reruns_and_the_nested_auto_repro(tmp_path):
    parent = make_run(tmp_path, "20261125-173942-p", verdict="fail")
    make_run(tmp_path, "20261125-174500-rerun", parent="20261125-173942-p", kind="rerun",
             started=T0 + 300)
    make_run(parent, "repro", verdict="fail", parent="20261125-173942-p", kind="repro")
    (parent / "runs" / "repro").rename(parent / "repro")
    (parent / "runs").rmdir()
    s = Store(tmp_path)
    assert [c.run_id for c in s.children("20261125-173942-p")] == [
        "20261125-174500-rerun", "20261125-173942-p/repro"]
    assert s.get("20261125-173942-p/repro").path == parent / "repro"
    assert [r.run_id for r in s.list_runs()] == ["20261125-174500-rerun", "20261125-173942-p"]


def test_delete_run_removes_it_and_refuses_a_live_one(tmp_path):
    make_run(tmp_path, "20261125-173942-old")
    make_run(tmp_path, "20261125-174000-live", verdict=None, phase="running", pid=os.getpid())
    s = Store(tmp_path)
    assert len(s.list_runs()) == 2
    s.delete_run("old")
    assert [r.run_id for r in s.list_runs()] == ["20261125-174000-live"]
    assert not (tmp_path / "runs/20261125-173942-old").exists()
    with pytest.raises(UsageError, match="run 20261125-174000-live is still running"):
        s.delete_run("live")


# ---------------------------------------------------------------------- the index file


def test_index_is_sqlite_wal_and_a_broken_index_is_rebuilt(tmp_path):
    make_run(tmp_path, "20261125-173942-a")
    s = Store(tmp_path)
    s.list_runs()
    s.close()
    conn = sqlite3.connect(tmp_path / "index.sqlite")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{tmp_path}/index.sqlite{suffix}").unlink(missing_ok=True)
    (tmp_path / "index.sqlite").write_bytes(b"this is not a database" * 100)
    assert [r.run_id for r in Store(tmp_path).list_runs()] == ["20261125-173942-a"]


def test_missing_store_lists_nothing_and_creates_nothing(tmp_path):
    assert Store(tmp_path / "nowhere").list_runs() == []
    assert not (tmp_path / "nowhere").exists()


WRITER = """
import sys
from pathlib import Path
from ktstr_vmm.spec import RunSpec, parse_topology
from ktstr_vmm.store.store import Store
s = Store(Path(sys.argv[1]))
spec = RunSpec(name="basic", scheduler="scx_simple", topology=parse_topology("tiny-2llc"))
ids = []
for i in range(200):
    ids.append(s.create_run(spec).run_id)
    if i % 10 == 0:
        s.list_runs(limit=5)
print("\\n".join(ids))
"""


@pytest.mark.slow
def test_two_processes_creating_200_runs_each_lose_nothing(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)],
                              stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0].split() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    created = set(outs[0]) | set(outs[1])
    assert len(outs[0]) == len(outs[1]) == 200 and len(created) == 400
    s = Store(tmp_path)
    assert {r.run_id for r in s.list_runs()} == created
    assert s.reindex() == 400
    assert not [p for p in (tmp_path / "runs").iterdir() if p.name.startswith(".")]


def _can_mount() -> str | None:
    if shutil.which("unshare") is None:
        return "unshare(1) is not installed"
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "mount", "-t", "tmpfs",
                        "tmpfs", "/mnt"], capture_output=True, timeout=30)
    return None if r.returncode == 0 else f"cannot mount in a private namespace: {r.stderr.decode().strip()}"


FULL_DISK = """
set -e
mount -t tmpfs -o size={size}k tmpfs {root}
cp -a {seed}/. {root}/
{py} - <<'EOF'
import hashlib, json, os
from pathlib import Path
from ktstr_vmm.errors import StoreError
from ktstr_vmm.spec import RunSpec, parse_topology
from ktstr_vmm.store.store import Store
root = Path({root!r})
before = hashlib.sha256((root / "index.sqlite").read_bytes()).hexdigest()
s = Store(root)
{prepare}
spec = RunSpec(name="basic", scheduler="scx_simple", topology=parse_topology("tiny-2llc"))
try:
    s.create_run(spec)
    print("created")
except StoreError as e:
    print("error:", e.one_line())
print("listed:", [r.verdict for r in s.list_runs()])
try:
    s.reindex()
except StoreError as e:
    print("reindex:", e.one_line())
s.close()
print("index untouched:", hashlib.sha256((root / "index.sqlite").read_bytes()).hexdigest() == before)
EOF
"""


@pytest.mark.parametrize("case", ["full", "readonly"])
def test_full_or_read_only_disk_gives_a_clear_error_and_leaves_the_index(tmp_path, case):
    why = _can_mount()
    if why:
        pytest.skip(why)
    seed = tmp_path / "seed"
    make_run(seed, "20261125-173942-a")
    make_run(seed, "20261125-173943-b", verdict="fail", started=T0 + 1)
    s = Store(seed)
    s.list_runs()
    s.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{seed}/index.sqlite{suffix}").unlink(missing_ok=True)
    root = tmp_path / "mnt"
    root.mkdir()
    if case == "full":
        # A run the index has not seen yet, then no space left for the index to grow.
        prepare = ("import shutil\n"
                   "shutil.copytree(root / 'runs/20261125-173942-a', root / 'runs/20261125-173944-c')\n"
                   "big = root / 'filler'\n"
                   "try:\n    big.write_bytes(b'x' * (64 << 20))\nexcept OSError:\n    pass")
    else:
        prepare = "os.system(f'mount -o remount,ro {root}')"
    script = FULL_DISK.format(size=2048, root=str(root), seed=str(seed), py=sys.executable,
                              prepare=prepare)
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    if case == "full":
        assert lines[0] == (f"error: cannot create a run directory in {root}/runs: No space left on "
                            "device (the disk is full: free some space and retry)") or lines[0].startswith(
                                f"error: cannot write {root}/runs/.new-")
    else:
        assert lines[0] == (f"error: cannot create a run directory in {root}/runs: Read-only file "
                            "system (the location is not writable: set KTSTR_HOME / KTSTR_CACHE to "
                            "a writable directory)")
    assert lines[1] == ("listed: ['fail', 'pass', 'pass']" if case == "full" else
                        "listed: ['fail', 'pass']")
    assert lines[2].startswith("reindex: cannot ")
    assert lines[3] == "index untouched: True"


# ---------------------------------------------------------------------- change notifier


class Collector:
    def __init__(self) -> None:
        self.events: list = []
        self.cond = threading.Condition()

    def __call__(self, ev) -> None:
        with self.cond:
            self.events.append(ev)
            self.cond.notify_all()

    def wait_for(self, ev, timeout: float = 120.0) -> None:  # a hang guard
        with self.cond:
            if not self.cond.wait_for(lambda: ev in self.events, timeout=timeout):
                raise AssertionError(f"no {ev} within {timeout}s; saw {self.events}")


def test_watcher_reports_new_run_status_change_and_appended_log(tmp_path):
    got = Collector()
    with StoreWatcher(tmp_path, got, latency=0.05):
        rd = Store(tmp_path).create_run(SPEC)
        got.wait_for(RunAdded(rd.run_id))
        rd.write_status("booting")
        got.wait_for(RunStatusChanged(rd.run_id, "status.json"))
        (rd / "sched.log").write_text("scx_simple: starting\n")
        with open(rd / "sched.log", "a") as f:
            f.write("more\n")
        got.wait_for(LogAppended(rd.run_id, "sched.log"))
        # A run directory made in place (not renamed) after start is watched too.
        d = tmp_path / "runs" / "20261125-173942-manual"
        d.mkdir()
        got.wait_for(RunAdded("20261125-173942-manual"))
        RunDir(d).append_event("lifecycle", phase="boot")
        got.wait_for(LogAppended("20261125-173942-manual", "events.jsonl"))
        write_json(d / "result.json", {"verdict": "pass"})
        got.wait_for(RunStatusChanged("20261125-173942-manual", "result.json"))
    assert not [e for e in got.events if getattr(e, "file", "").startswith(".")]


def test_watcher_coalesces_a_burst_of_appends(tmp_path):
    got = Collector()
    rd = Store(tmp_path).create_run(SPEC)
    with StoreWatcher(tmp_path, got, latency=0.2):
        with open(rd / "console.log", "a", buffering=1) as f:
            for i in range(2000):
                f.write(f"[    0.{i:06d}] line\n")
        rd.write_status("done")
        got.wait_for(RunStatusChanged(rd.run_id, "status.json"))
    appended = [e for e in got.events if e == LogAppended(rd.run_id, "console.log")]
    assert 1 <= len(appended) <= 5, got.events


def test_watcher_callback_errors_do_not_stop_it(tmp_path):
    got = Collector()

    def flaky(ev):
        got(ev)
        raise RuntimeError("boom")

    with StoreWatcher(tmp_path, flaky, latency=0.05):
        a = Store(tmp_path).create_run(SPEC)
        got.wait_for(RunAdded(a.run_id))
        b = Store(tmp_path).create_run(SPEC.with_changes(name="second"))
        got.wait_for(RunAdded(b.run_id))


def test_create_run_on_unwritable_root_is_a_store_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError, match="cannot create .*/file/runs"):
        Store(tmp_path / "file").create_run(SPEC)


def test_a_big_unindexed_store_shows_its_newest_runs_before_the_index_exists(tmp_path):
    """The first look at a large store reads only the newest runs' directories; once the
    index holds the store, the quick path steps aside (list_runs is as fast then)."""
    for i in range(520):
        make_run(tmp_path, f"20261120-{i // 60:02d}{i % 60:02d}00-basic-tiny-2llc-{i:04x}",
                 verdict=("pass", "fail")[i % 2], started=T0 + i)
    store = Store(tmp_path)
    quick = store.peek_newest(3)
    assert [s.run_id for s in quick] == [f"20261120-{i // 60:02d}{i % 60:02d}00-basic-tiny-2llc-{i:04x}"
                                         for i in (519, 518, 517)]
    assert [s.verdict for s in quick] == ["fail", "pass", "fail"]
    assert [s.run_id for s in store.list_runs(limit=3)] == [s.run_id for s in quick]
    assert store.peek_newest(3) is None  # indexed now
    small = tmp_path / "small"
    make_run(small, "20261120-000000-basic-tiny-2llc-0001")
    assert Store(small).peek_newest(3) is None
