"""Failure dumps: ktstr's JSON shape, round trip, placeholder only when missing, stale dumps
cleared, bad names refused before any write, and one-line errors for damaged files."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ktstr_vmm.errors import KtstrError, UsageError
from ktstr_vmm.introspect.scx import exit_kind_name
from ktstr_vmm.rundir.dumps import (
    DsqState,
    DumpError,
    EventCounterSample,
    FailureDump,
    FailureDumpMap,
    RqScxState,
    ScxSchedState,
    TaskEnrichment,
    clear_stale_dumps,
    dump_to_json,
    load_failure_dump,
    placeholder_reason,
    write_failure_dump,
    write_placeholder_failure_dump_if_missing,
)

REAL = FailureDump(
    maps=(FailureDumpMap("scx_simple.bss", 2, 64, 1, value={"nr_queued": 3}),
          FailureDumpMap("scx_simple.ringbuf", 27, error="map type 27 not rendered")),
    rq_scx_states=(RqScxState(cpu=0, nr_running=2, flags=1, rq_clock=7_507_000_000,
                              runnable_task_kvas=(0xFFFF888003A8C000,), curr_pid=128,
                              curr_comm="init", rq_nr_running=3, local_dsq_depth=1,
                              curr_class="ext_sched_class"),
                   RqScxState(cpu=1)),
    dsq_states=(DsqState(id=0x8000000000000002, origin="local cpu 0", nr=1, seq=40),),
    scx_sched_state=ScxSchedState(exit_kind=1025, exit_reason="scx_bpf_error",
                                  exit_msg="a.bpf.c:74: injected"),
    task_enrichments=(TaskEnrichment(pid=128, tgid=128, comm="init", sched_class="ext", cpu=0),),
    event_counter_timeline=(EventCounterSample(elapsed_ms=100, dispatch_keep_last=438),),
)


def test_real_dump_json_has_ktstr_shape(tmp_path):
    path = write_failure_dump(tmp_path, "errsim_basic", REAL)
    assert path == tmp_path / "errsim_basic.failure-dump.json"
    doc = json.loads(path.read_text())
    assert list(doc) == ["schema", "maps", "rq_scx_states", "dsq_states", "scx_sched_state",
                         "task_enrichments", "event_counter_timeline"]
    assert doc["schema"] == "single" and "is_placeholder" not in doc
    assert doc["rq_scx_states"][1] == {"cpu": 1, "nr_running": 0, "flags": 0,
                                       "cpu_released": False, "ops_qseq": 0, "rq_clock": 0,
                                       "runnable_task_kvas": []}
    assert doc["scx_sched_state"] == {"aborting": False, "bypass_depth": 0, "exit_kind": 1025,
                                      "exit_reason": "scx_bpf_error",
                                      "exit_msg": "a.bpf.c:74: injected"}
    assert load_failure_dump(path) == REAL


def test_placeholder_written_only_when_missing(tmp_path):
    reason = placeholder_reason("payload started but produced no test result",
                                "scx_bpf_error (a.bpf.c:74: injected)")
    assert reason == ("test failed at stage `payload started but produced no test result`; no "
                      "BPF state captured (probe did not attach before failure). BUG SUMMARY: "
                      "scx_bpf_error (a.bpf.c:74: injected)")
    path = write_placeholder_failure_dump_if_missing(tmp_path, "t", reason)
    assert path == tmp_path / "t.failure-dump.json"
    doc = json.loads(path.read_text())
    assert doc == {"schema": "single", "maps": [], "scx_walker_unavailable": reason,
                   "task_enrichments_unavailable": reason,
                   "prog_runtime_stats_unavailable": reason, "per_node_numa_unavailable": reason,
                   "sdt_alloc_unavailable": reason, "is_placeholder": True}
    dump = load_failure_dump(path)
    assert dump.is_placeholder and dump.reason == reason
    # a second failure path of the same run must not replace it, nor a real dump
    assert write_placeholder_failure_dump_if_missing(tmp_path, "t", "other") is None
    write_failure_dump(tmp_path, "r", REAL)
    assert write_placeholder_failure_dump_if_missing(tmp_path, "r", "other") is None
    assert not load_failure_dump(tmp_path / "r.failure-dump.json").is_placeholder


def test_placeholder_that_cannot_be_written_is_logged_not_raised(tmp_path, caplog):
    not_a_dir = tmp_path / "run"
    not_a_dir.write_text("a file where the run directory should be")
    assert write_placeholder_failure_dump_if_missing(not_a_dir, "t", "why") is None
    assert "cannot write placeholder failure dump" in caplog.text
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_stale_dumps_cleared(tmp_path):
    write_failure_dump(tmp_path, "t", REAL)
    (tmp_path / "t.repro.failure-dump.json").write_text("{}")
    (tmp_path / "other.failure-dump.json").write_text("{}")
    removed = clear_stale_dumps(tmp_path, "t")
    assert sorted(p.name for p in removed) == ["t.failure-dump.json", "t.repro.failure-dump.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["other.failure-dump.json"]
    assert clear_stale_dumps(tmp_path, "t") == []


@pytest.mark.parametrize("bad", ["a/b", "..", "../x", "a\x00b", "tab\there", "bell\x07", "",
                                 ".hidden", "x" * 101])
def test_bad_test_names_refused_before_anything_is_written(tmp_path, bad):
    for call in (lambda: write_failure_dump(tmp_path, bad, REAL),
                 lambda: write_placeholder_failure_dump_if_missing(tmp_path, bad, "r"),
                 lambda: clear_stale_dumps(tmp_path, bad)):
        with pytest.raises(UsageError) as e:
            call()
        assert e.value.exit_code == 2
        assert e.value.one_line().startswith("bad test name ")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("content", "expected"), [
    (b'{"schema": "single", "maps": [', "is not valid JSON (truncated?): Expecting value at line 1 column 31"),
    (b"", "is not valid JSON (truncated?): Expecting value at line 1 column 1"),
    (b'\xff\xfe{"schema"}', "is not UTF-8 (byte 0)"),
    (b"[]", ": the file must be an object, got array"),
    (b'{"schema": "single", "maps": {}}', ": maps must be an array, got object"),
    (b'{"maps": [], "rq_scx_states": [{"cpu": "0"}]}', ": rq_scx_states[0].cpu must be an integer, got string"),
    (b'{"maps": [], "rq_scx_states": [{"nr_running": 1}]}', ": rq_scx_states[0].cpu is missing"),
    (b'{"maps": [], "is_placeholder": "yes"}', ": is_placeholder must be a boolean, got string"),
    (b'{"maps": [], "scx_sched_state": {"exit_kind": true}}', ": scx_sched_state.exit_kind must be an integer, got boolean"),
    (b'{"maps": [{"name": 5}]}', ": maps[0].name must be a string, got integer"),
    (b'{"maps": [], "task_enrichments": [{"pid": null}]}', ": task_enrichments[0].pid must be an integer, got null"),
    (b'{"schema": "dual", "maps": []}', ": schema 'dual' is not supported (only 'single')"),
    (b"[" * 100000, "is nested too deeply"),
])
def test_damaged_files_give_one_line_naming_the_problem(tmp_path, content, expected):
    path = tmp_path / "t.failure-dump.json"
    path.write_bytes(content)
    with pytest.raises(DumpError) as e:
        load_failure_dump(path)
    line = e.value.one_line()
    assert "\n" not in line
    assert line.startswith(f"failure dump {path}") and expected in line, line
    assert isinstance(e.value, KtstrError)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(DumpError, match=r"^cannot read failure dump .*/nope.failure-dump.json: "
                                        r"No such file or directory$"):
        load_failure_dump(tmp_path / "nope.failure-dump.json")


def test_unknown_ktstr_fields_survive_a_round_trip(tmp_path):
    doc = {"schema": "single", "maps": [], "vcpu_regs": [{"rip": 1}], "per_cpu_time": [],
           "is_placeholder": False}
    path = tmp_path / "t.failure-dump.json"
    path.write_text(json.dumps(doc))
    dump = load_failure_dump(path)
    assert dump.extra == {"vcpu_regs": [{"rip": 1}], "per_cpu_time": []}
    assert dump_to_json(dump) == {"schema": "single", "maps": [], "vcpu_regs": [{"rip": 1}],
                                  "per_cpu_time": []}


_u = st.integers(0, 2**64 - 1)
_opt_s = st.none() | st.text(max_size=20)
_dump = st.builds(
    FailureDump,
    maps=st.lists(st.builds(FailureDumpMap, name=st.text(max_size=16), map_type=_u,
                            value=st.none() | st.recursive(
                                st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                                lambda c: st.lists(c, max_size=3)
                                | st.dictionaries(st.text(max_size=5), c, max_size=3),
                                max_leaves=8),
                            error=_opt_s), max_size=3).map(tuple),
    rq_scx_states=st.lists(st.builds(RqScxState, cpu=_u, nr_running=_u, curr_pid=st.none() | _u,
                                     curr_comm=_opt_s,
                                     runnable_task_kvas=st.lists(_u, max_size=3).map(tuple)),
                           max_size=4).map(tuple),
    scx_sched_state=st.none() | st.builds(ScxSchedState, exit_kind=_u, exit_reason=_opt_s),
    task_enrichments=st.lists(st.builds(TaskEnrichment, pid=_u, comm=st.text(max_size=16)),
                              max_size=3).map(tuple),
    scx_walker_unavailable=_opt_s, is_placeholder=st.booleans())


@settings(max_examples=60, deadline=None)
@given(_dump)
def test_any_dump_round_trips(tmp_path_factory, dump):
    d = tmp_path_factory.mktemp("rt")
    assert load_failure_dump(write_failure_dump(d, "t", dump)) == dump


def test_exit_kind_names():
    assert [exit_kind_name(k) for k in (0, 1025, 1026, 4242)] == \
        ["SCX_EXIT_NONE", "SCX_EXIT_ERROR_BPF", "SCX_EXIT_ERROR_STALL", "SCX_EXIT_4242"]


def test_placeholder_reason_accepts_init_stage_values():
    assert placeholder_reason("init_started") == (
        "test failed at stage `init started but payload never ran (cgroup/scheduler setup "
        "failed)`; no BPF state captured (probe did not attach before failure)")
