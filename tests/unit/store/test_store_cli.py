"""`ktstr runs` and `ktstr show`: what a person reads, pinned."""

from __future__ import annotations

import json
import os
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import DATA
from support.store_helpers import T0, make_run, replace_bytes

from ktstr_cli.main import main

DATA = DATA / "store"

MESSAGE = """\
scx_simple: runnable task stall (kworker/1:1[83] failed to run for 6.2s)
BUG SUMMARY: runnable task stall (kworker/1:1[83] failed to run for 6.2s)
ktstr_test 'basic' [sched=scx_simple] [topo=1n2l2c1t] failed:

--- stats ---
4 workers, 4 cpus, 7 migrations, worst_spread=1.5%, worst_gap=6200ms

--- scheduler log ---
scx_simple: starting
scx_simple: runnable task stall"""

SECTIONS = {
    "stats": "4 workers, 4 cpus, 7 migrations, worst_spread=1.5%, worst_gap=6200ms",
    "scheduler log": "scx_simple: starting\nscx_simple: runnable task stall",
}


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.setenv("NO_COLOR", "1")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def populated(store):
    make_run(store, "20261125-173942-basic-scx_simple-tiny-2llc-3f9a", verdict="fail",
             message=MESSAGE, sections=SECTIONS, total_s=14.2)
    make_run(store, "20261125-180102-basic-scx_lavd-numa2-4llc-0b1c", verdict="pass",
             scheduler="scx_lavd", topology="numa2-4llc", started=T0 + 1280, total_s=75.0)
    bad = make_run(store, "20261125-181500-basic-scx_simple-tiny-2llc-77aa", started=T0 + 2118)
    replace_bytes(bad / "result.json", b'{"verdict": "pass", "mess')
    make_run(store, "20261125-182000-basic-scx_simple-tiny-2llc-live", verdict=None,
             phase="booting", pid=os.getpid(), started=T0 + 2418)
    return store


def test_runs_lists_newest_first_with_verdict_duration_and_first_line(capsys, populated):
    code, out, err = run(capsys, "runs")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "TIME                 RUN                                              NAME   SCHEDULER   TOPOLOGY    VERDICT  DURATION  MESSAGE",
        "2026-11-25 18:20:00  20261125-182000-basic-scx_simple-tiny-2llc-live  basic  scx_simple  tiny-2llc   booting  -",
        "2026-11-25 18:15:00  20261125-181500-basic-scx_simple-tiny-2llc-77aa  basic  scx_simple  tiny-2llc   corrupt  -         result.json: truncated JSON (25 bytes)",
        "2026-11-25 18:01:02  20261125-180102-basic-scx_lavd-numa2-4llc-0b1c   basic  scx_lavd    numa2-4llc  pass     1m15s",
        "2026-11-25 17:39:42  20261125-173942-basic-scx_simple-tiny-2llc-3f9a  basic  scx_simple  tiny-2llc   fail     14.2s     scx_simple: runnable task stall (kworker/1:1[83] failed to run for 6.2s)",
    ]


def test_runs_filters_and_json(capsys, populated):
    code, out, _ = run(capsys, "runs", "--verdict", "fail", "--json")
    [row] = json.loads(out)
    assert code == 0 and row["run_id"] == "20261125-173942-basic-scx_simple-tiny-2llc-3f9a"
    assert (row["verdict"], row["duration_s"], row["topology"], row["preset"]) == (
        "fail", 14.2, "1n2l2c1t", "tiny-2llc")
    _, out, _ = run(capsys, "runs", "--topology", "numa2-4llc", "--json")
    assert [r["scheduler"] for r in json.loads(out)] == ["scx_lavd"]
    _, out, _ = run(capsys, "runs", "--since", "2026-11-25 18:00", "--limit", "2", "--json")
    assert [r["run_id"][-4:] for r in json.loads(out)] == ["live", "77aa"]
    _, out, _ = run(capsys, "runs", "--scheduler", "nope")
    assert out == "no runs match\n"


def test_runs_on_an_empty_store_says_how_to_start(capsys, store):
    assert run(capsys, "runs") == (0, f"no runs in {store} (start one with `ktstr run`)\n", "")


def test_runs_bad_since_is_a_usage_error(capsys, store):
    code, out, err = run(capsys, "runs", "--since", "last tuesday")
    assert (code, out) == (2, "")
    assert err == ("ktstr: error: --since: cannot read 'last tuesday' as a date (use 2026-11-25, "
                   "'2026-11-25 17:00', today, or an age like 3h or 2d)\n")


def test_runs_reindex_and_delete(capsys, populated):
    code, out, _ = run(capsys, "runs", "--reindex")
    assert code == 0 and out.startswith(f"indexed 4 runs in {populated} (")
    assert run(capsys, "runs", "--delete", "0b1c") == (
        0, "deleted 20261125-180102-basic-scx_lavd-numa2-4llc-0b1c\n", "")
    code, _, err = run(capsys, "runs", "--delete", "live")
    assert (code, err) == (2, "ktstr: error: run 20261125-182000-basic-scx_simple-tiny-2llc-live "
                              "is still booting (stop it first, then delete it)\n")


def test_show_prints_verdict_and_message(capsys, populated):
    code, out, _ = run(capsys, "show", "3f9a")
    assert code == 0
    d = populated / "runs" / "20261125-173942-basic-scx_simple-tiny-2llc-3f9a"
    assert out == f"""\
run       20261125-173942-basic-scx_simple-tiny-2llc-3f9a
path      {d}
name      basic    scheduler scx_simple
topology  1n2l2c1t (tiny-2llc)
started   2026-11-25 17:39:42    duration 14.2s
verdict   fail
artifacts console.log, sched.log

{MESSAGE}
"""


@pytest.mark.parametrize("name", ["scheduler log", "scheduler-log", "--- scheduler log ---"])
def test_show_section_prints_exactly_that_section(capsys, populated, name):
    assert run(capsys, "show", "3f9a", "--section", name) == (
        0, "scx_simple: starting\nscx_simple: runnable task stall\n", "")


def test_show_unknown_section_lists_the_sections(capsys, populated):
    code, out, err = run(capsys, "show", "3f9a", "--section", "dump")
    assert (code, out) == (2, "")
    assert err == ("ktstr: error: run 20261125-173942-basic-scx_simple-tiny-2llc-3f9a has no "
                   "section 'dump' (sections: stats, scheduler log)\n")


def test_show_unknown_run_suggests_the_closest_ids(capsys, populated):
    code, out, err = run(capsys, "show", "20261125-173942-basic-scx_simpel-tiny-2llc-3f9a")
    assert (code, out) == (2, "")
    assert err == (
        "ktstr: error: no run '20261125-173942-basic-scx_simpel-tiny-2llc-3f9a' in "
        f"{populated}/runs (closest: 20261125-173942-basic-scx_simple-tiny-2llc-3f9a, "
        "20261125-182000-basic-scx_simple-tiny-2llc-live, "
        "20261125-181500-basic-scx_simple-tiny-2llc-77aa)\n")


def test_show_corrupt_and_live_runs(capsys, populated):
    code, out, _ = run(capsys, "show", "77aa")
    assert code == 0
    assert "verdict   corrupt: result.json: truncated JSON (25 bytes)\n" in out
    code, out, _ = run(capsys, "show", "live")
    assert "verdict   booting\n" in out and f"phase     booting (pid {os.getpid()}, updated " in out
    code, _, err = run(capsys, "show", "77aa", "--section", "stats")
    assert (code, err) == (1, "ktstr: error: run 20261125-181500-basic-scx_simple-tiny-2llc-77aa "
                              "is corrupt: result.json: truncated JSON (25 bytes)\n")


def test_show_a_run_directory_by_path_and_json(capsys, populated, tmp_path):
    d = populated / "runs" / "20261125-180102-basic-scx_lavd-numa2-4llc-0b1c"
    code, out, _ = run(capsys, "show", str(d), "--json")
    doc = json.loads(out)
    assert code == 0 and doc["summary"]["verdict"] == "pass" and doc["result"]["verdict"] == "pass"
    assert doc["spec"]["scheduler"] == "scx_lavd" and doc["status"]["phase"] == "done"


def test_show_placeholder_failure_dump(capsys):
    code, out, _ = run(capsys, "show", str(DATA / "dumps/placeholder.failure-dump.json"))
    assert code == 0
    assert out == f"""\
failure dump  {DATA}/dumps/placeholder.failure-dump.json
schema        single
placeholder   yes: no BPF state was captured
reason        test failed at stage `scheduler attach`; no BPF state captured (probe did not attach before failure). BUG SUMMARY: scx_bpf_error: invalid dsq_id 0x1234
maps                  0
"""


def test_show_real_failure_dump_has_per_cpu_table(capsys):
    code, out, _ = run(capsys, "show", str(DATA / "dumps/real.failure-dump.json"))
    assert code == 0
    assert out.splitlines()[2:] == [
        "exit      SCX_EXIT_ERROR (1024)  runtime error",
        "note      run queues, DSQs, tasks and BPF maps were read from the frozen guest at the "
        "exit",
        "cpus:",
        "  cpu  current               class  scx  nr  dsq  longest waiting",
        "  0    spin-0[211]                  3",
        "  1    ?                            0",
        "",
        "maps                  2 (bss, task_ctx)",
        "rq_scx_states         2",
        "dsq_states            1",
        "scx_sched_state       aborting=True, bypass_depth=0, exit_kind=1024 (SCX_EXIT_ERROR)",
        "",
        "maps:",
        "  bss       ARRAY  64 B x 1",
        "  task_ctx  HASH   16 B x 4096",
        "",
        "rq_scx_states:",
        "  cpu  nr_running  flags  cpu_released  ops_qseq  kick_sync  nr_immed  rq_clock",
        "  0    3           1      False         1841      0          0         9812345678",
        "  1    0           1      False         1790      0          0         9812345001",
        "",
        "dsq_states:",
        "  id                  origin      nr  seq",
        "  0x8000000000000002  local cpu0  3   12",
    ]


def test_show_dump_with_wrong_types_warns_instead_of_crashing(capsys):
    code, out, _ = run(capsys, "show", str(DATA / "dumps/badtypes.failure-dump.json"))
    assert code == 0
    assert out.splitlines()[1:] == [
        "schema        single",
        "warning: 'is_placeholder' is a string, expected a boolean",
        "warning: 'maps' is a string, expected an array",
        "warning: 'scx_sched_state' is an array, expected an object",
    ]


def test_show_rust_ktstr_artifact_directory(capsys):
    root = DATA / "ktstr-artifacts"
    code, out, _ = run(capsys, "show", str(root))
    assert code == 0
    stats = "8 workers, 8 cpus, 12 migrations, worst_spread=3.2%, worst_gap=5ms"
    assert out.splitlines() == [
        f"ktstr artifacts  {root}",
        "4 test results (1 corrupt, 1 fail, 1 pass, 1 skip), 1 failure dump",
        "",
        f"VERDICT  TEST         SCHEDULER   TOPOLOGY  STATS{' ' * 63}FILE",
        f"corrupt  -            -           -         broken-00000000.ktstr.json: truncated JSON (200 bytes){' ' * 14}broken-00000000.ktstr.json",
        f"fail     stall_test   scx_simple  1n2l4c1t  {stats}  job1/stall_test-0123456789abcdef.ktstr.json",
        f"skip     numa_only    scx_simple  1n2l4c1t  {stats}  numa_only-fedcba9876543210.ktstr.json",
        f"pass     sched_basic  scx_simple  1n2l4c1t  {stats}  sched_basic-9c1e2f3a4b5c6d7e.ktstr.json",
        "",
        "failure dumps:",
        "  stall_test.failure-dump.json  placeholder: test failed at stage `scheduler attach`; no "
        "BPF state captured (probe did not attach before failure). BUG SUMMARY: scx_bpf_error: "
        "invalid dsq_id 0x1234",
    ]
    code, out, _ = run(capsys, "show", str(root), "--json")
    doc = json.loads(out)
    assert [r["verdict"] for r in doc["sidecars"]] == ["corrupt", "fail", "skip", "pass"]
    assert doc["failure_dumps"][0]["placeholder"] is True


def test_show_a_directory_with_nothing_known(capsys, tmp_path):
    code, _, err = run(capsys, "show", str(tmp_path))
    assert code == 2
    assert err == (f"ktstr: error: nothing to show in {tmp_path} (expected a run directory or the "
                   "Rust ktstr's *.ktstr.json / *.failure-dump.json files)\n")


def test_table_is_cut_to_the_terminal_and_coloured_only_when_asked(populated):
    from ktstr_cli.commands.runs import format_table
    from ktstr_vmm.store.store import Store

    runs = Store(populated).list_runs(verdict="fail")
    plain = format_table(runs, width=80)
    assert [len(line) for line in plain] == [80, 80] and plain[1].endswith("…")
    coloured = format_table(runs, width=None, color=True)
    assert "\x1b[31mfail\x1b[0m" in coloured[1] and "\x1b" not in coloured[0]
    assert "\x1b" not in "".join(format_table(runs))


def test_show_section_json(capsys, populated):
    code, out, _ = run(capsys, "show", "3f9a", "--section", "stats", "--json")
    assert code == 0 and json.loads(out) == {
        "run_id": "20261125-173942-basic-scx_simple-tiny-2llc-3f9a", "section": "stats",
        "text": SECTIONS["stats"]}


def test_a_recorded_real_run_lists_and_shows(capsys, tmp_path, monkeypatch):
    """A run directory written by the real runner (QEMU TCG, scx_ktstr with an injected
    scx_bpf_error, auto-repro nested in repro/), copied as recorded."""
    import shutil

    shutil.copytree(DATA / "recorded", tmp_path / "store")
    monkeypatch.setenv("KTSTR_HOME", str(tmp_path / "store"))
    code, out, _ = run(capsys, "runs", "--json")
    [row] = json.loads(out)
    assert (row["verdict"], row["duration_s"], row["preset"], row["first_line"]) == (
        "fail", 47.316, "tiny-1llc",
        "EXIT: scx_bpf_error (scx_ktstr.bpf.c:114: scx_ktstr: injected error after 1500ms "
        "(--error-after)) on CPU 0")
    assert run(capsys, "show", "edde", "--section", "stats")[1] == (
        "4 workers, 4 cpus, 19 migrations, worst_spread=23.5%, worst_gap=422ms\n"
        "  cg0: workers=4 cpus=4 spread=23.5% gap=422ms migrations=19 iter=135437\n")
    code, out, _ = run(capsys, "show", "edde")
    assert "children  20261125-180932-scx_ktstr-tiny-1llc-edde/repro\n" in out
    code, out, _ = run(capsys, "show", "edde/repro", "--json")
    assert json.loads(out)["summary"]["verdict"] == "fail"
    assert json.loads(out)["summary"]["parent"] == "20261125-180932-scx_ktstr-tiny-1llc-edde"



_KEYS = ["schema", "maps", "is_placeholder", "reason", "early", "late", "rq_scx_states",
         "dsq_states", "scx_sched_state", "name", "cpu", "passed", "skipped", "inconclusive",
         "stats", "total_workers", "cgroups", "test_name", "scx_walker_unavailable"]
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=6),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.sampled_from(_KEYS), c, max_size=5),
    max_leaves=12)


@settings(max_examples=200, deadline=None)
@given(obj=st.dictionaries(st.sampled_from(_KEYS), _JSON, max_size=8))
def test_dump_and_sidecar_rendering_never_raise_on_any_json_object(obj):
    from ktstr_cli.commands.showartifacts import render_dump, render_sidecar

    assert all(isinstance(line, str) for line in render_dump(obj))
    assert render_sidecar(obj)[0].startswith("verdict ")


def test_show_real_dump_lists_the_schedulers_maps(capsys):
    """A recorded scx_ktstr --stall-after dump (trimmed): one line per BPF map, the .bss
    globals spelled out, per-CPU counters per entry, STRUCT_OPS with its reason."""
    code, out, _ = run(capsys, "show", str(DATA / "dumps/stall-maps.failure-dump.json"))
    assert code == 0
    lines = out.splitlines()
    maps = lines[lines.index("maps:") + 1:lines.index("rq_scx_states:") - 1]
    # the scheduler's globals first, maps without contents last
    assert maps[0] == ("  scx_ktst.bss     ARRAY         24 B x 1     start_ns=3712004248 injected=2 "
                       "timer_started=1 vtime_now=1132633789")
    assert maps[1].startswith("  scx_ktst.data    ARRAY         1573 B x 1   "
                              "__scx_prolog_disables_migration=true uei=")
    assert ("  stats            PERCPU_ARRAY  8 B x 3      3 entries: [0] 11 28 3 45 | "
            "[1] 34 53 75 36 | [2] 1 2 1 1") in maps
    assert maps[-1] == "  ktstr_ops        STRUCT_OPS    576 B x 1    map type STRUCT_OPS is not rendered"
    assert any(m.startswith("  task_enq         HASH          40 B x 4096  3 entries: [15] "
                            '{"enqueues":6,') for m in maps)
    assert all(len(m) <= 2 + 15 + 2 + 12 + 2 + 11 + 2 + 110 for m in maps)
    assert "  0x8000000000000003  bypass cpu 0   2   2" in lines


def test_show_run_prints_the_schedulers_last_globals(capsys, populated):
    run_dir = populated / "runs" / "20261125-180102-basic-scx_lavd-numa2-4llc-0b1c"
    (run_dir / "bpf.jsonl").write_text(
        '{"t":0.9,"maps":{"scx_lavd.bss":{"nr_cpus":8,"slice_ns":20000000},'
        '"scx_lavd.data":{"uei":{"kind":0},"lavd_init.___fmt":"failed %d"}}}\n'
        '{"t":1.9,"maps":{"scx_lavd.bss":{"slice_ns":5000000}}}\n'
        '{"t":2.9,"maps":{"scx_lav')  # a torn last line: the run was still writing
    code, out, _ = run(capsys, "show", "0b1c")
    assert code == 0
    lines = out.splitlines()
    at = lines.index("globals   the scheduler's BPF globals as last read (bpf.jsonl):")
    assert lines[at + 1:at + 4] == ["  scx_lavd.bss.nr_cpus   8",
                                    "  scx_lavd.bss.slice_ns  5000000",
                                    '  scx_lavd.data.uei      {"kind":0}']
    code, out, _ = run(capsys, "show", "0b1c", "--json")
    assert json.loads(out)["bpf_globals"] == {
        "scx_lavd.bss": {"nr_cpus": 8, "slice_ns": 5000000}, "scx_lavd.data": {"uei": {"kind": 0}}}


def test_show_lists_periodic_captures_and_temporal_verdicts(capsys, tmp_path):
    from support.store_helpers import make_run, write_json

    d = make_run(tmp_path, "20261202-021526-scx_simple-tiny-2llc-cf27", verdict="fail",
                 message="ktstr_test 'basic' [sched=scx_simple] [topo=1n2l2c1t] failed:\n  x")
    r = json.loads((d / "result.json").read_text())
    r["captures"] = {"target": 5, "fired": 4, "frozen_ms_mean": 16.5, "frozen_ms_max": 55.9,
                     "items": []}
    r["temporal"] = [{"assertion": "nondecreasing(bpf.vtime_now)", "verdict": "pass"},
                     {"assertion": "at_most(bpf.vtime_now, 0)", "verdict": "fail"}]
    write_json(d / "result.json", r)
    code, out, _ = run(capsys, "show", "--store", str(tmp_path), "cf27")
    assert code == 0
    assert ("captures  4/5 periodic captures taken, VM frozen 16.5 ms each on average, 55.9 ms "
            "at most (captures.jsonl)\n"
            "temporal  pass         nondecreasing(bpf.vtime_now)\n"
            "          fail         at_most(bpf.vtime_now, 0)\n") in out


# ----------------------------------------------------------------------------- shell.log
# Recorded from real guests (QEMU TCG, scx_simple, tiny-1llc): `ktstr shell` with piped
# input, and one through a pty (pexpect) running `ls --color=always` and `scx | head -3`.
SHELL_DATA = DATA.parent / "shell"
PIPED = [
    "--- shell 1 +9.6s: opened by ktstr shell: pipes 0x0, pid 116 ---",
    "--- shell 1 input ---",
    "cat /sys/kernel/sched_ext/state",
    "echo hello from $(uname -s)",
    "scx | head -5",
    "",
    "--- shell 1 output ---",
    "enabled",
    "hello from Linux",
    "state         enabled",
    "ops           simple",
    "switch_all    1",
    "nr_rejected   0",
    "hotplug_seq   3",
    "",
    "--- shell 1 +10.1s: ended: exited 0 ---",
]


def _with_shell_log(store, run_id: str, recorded: str):
    d = store / "runs" / run_id
    (d / "shell.log").write_bytes((SHELL_DATA / recorded).read_bytes())
    return d


def test_show_section_shell_prints_the_recorded_shell_log(capsys, populated):
    d = _with_shell_log(populated, "20261125-180102-basic-scx_lavd-numa2-4llc-0b1c",
                        "piped.shell.log")
    for name in ("shell", "Shell", "shell.log", "--- shell log ---"):
        code, out, err = run(capsys, "show", "0b1c", "--section", name)
        assert (code, err) == (0, "") and out.splitlines() == PIPED
    code, out, _ = run(capsys, "show", "0b1c", "--section", "shell", "--json")
    assert code == 0 and json.loads(out) == {
        "run_id": "20261125-180102-basic-scx_lavd-numa2-4llc-0b1c", "section": "shell",
        "path": str(d / "shell.log"), "text": "\n".join(PIPED) + "\n"}
    # the summary lists it with its size; --json gives its path
    _, out, _ = run(capsys, "show", "0b1c")
    assert "artifacts console.log, sched.log, shell.log (342 B, --section shell)\n" in out
    _, out, _ = run(capsys, "show", "0b1c", "--json")
    assert json.loads(out)["shell_log"] == str(d / "shell.log")


def test_show_section_shell_applies_a_ptys_control_bytes(capsys, populated):
    """busybox's prompt asks for the cursor position (ESC[6n), the pty ends lines with CR,
    ls colours its names: none of it reaches the reader (nor a terminal's input)."""
    _with_shell_log(populated, "20261125-180102-basic-scx_lavd-numa2-4llc-0b1c",
                    "pty.shell.log")
    code, out, _ = run(capsys, "show", "0b1c", "--section", "shell")
    assert code == 0 and "\x1b" not in out and "\r" not in out
    assert out.splitlines()[6:] == [
        "ktstr:/# ",
        "--- shell 1 +9.9s: opened by ktstr shell: pty 120x40, pid 117 ---",
        "--- shell 1 output ---",
        "ls --color=always /sys/kernel/sched_ext",
        "enable_seq   hotplug_seq  nr_rejected  root         state        switch_all",
        "ktstr:/# scx | head -3",
        "state         enabled",
        "ops           simple",
        "switch_all    1",
        "ktstr:/# exit",
        "",
        "--- shell 1 +10.3s: ended: exited 0 ---",
    ]


def test_show_section_shell_without_a_shell_says_so(capsys, populated):
    for target in ("0b1c", "live"):  # a finished run, and a live one with no result yet
        assert run(capsys, "show", target, "--section", "shell") == (
            0, "no shell was opened on this run\n", "")
    code, out, _ = run(capsys, "show", "0b1c", "--section", "shell", "--json")
    assert code == 0 and json.loads(out) == {
        "run_id": "20261125-180102-basic-scx_lavd-numa2-4llc-0b1c", "section": "shell",
        "path": None, "text": None, "note": "no shell was opened on this run"}
    _, out, _ = run(capsys, "show", "0b1c")
    assert "artifacts console.log, sched.log\n" in out
    _, out, _ = run(capsys, "show", "0b1c", "--json")
    assert json.loads(out)["shell_log"] is None
