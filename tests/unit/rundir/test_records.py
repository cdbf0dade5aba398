"""The views' readers of a run directory (rundir/records.py, rundir/jsonl.py): missing files
are None, corrupt ones a one-line StoreError; JSON-lines tails count only whole lines."""

from __future__ import annotations

import json

import pytest

from ktstr_vmm.errors import StoreError
from ktstr_vmm.rundir import layout
from ktstr_vmm.rundir.jsonl import JsonlTail
from ktstr_vmm.rundir.records import (
    failure_dumps,
    is_run_dir,
    load_result,
    load_status,
    parse_sample,
    read_events,
    read_samples,
)


def test_a_tail_reads_whole_lines_and_starts_over_on_truncation(tmp_path):
    f = tmp_path / "events.jsonl"
    tail = JsonlTail(f)
    assert tail.read() == []  # no file yet
    f.write_bytes(b'{"t": 1, "kind": "a"}\nnot json\n[1]\n{"t": 2, "ki')
    assert tail.read() == [{"t": 1, "kind": "a"}] and tail.bad_lines == 2
    with open(f, "ab") as out:
        out.write(b'nd": "b"}\n')
    assert tail.read() == [{"t": 2, "kind": "b"}]
    f.write_bytes(b'{"t": 3, "kind": "c"}\n')  # shorter than what was read: rewritten
    assert tail.read() == [{"t": 3, "kind": "c"}]


def test_missing_files_are_none_and_corrupt_ones_one_line_errors(tmp_path):
    assert load_status(tmp_path) is None and load_result(tmp_path) is None
    assert not is_run_dir(tmp_path) and failure_dumps(tmp_path) == []
    (tmp_path / layout.STATUS).write_text('{"phase": "running", "pid": 7, "started": 1.5')
    with pytest.raises(StoreError, match=r"^status file .*status.json: truncated JSON"):
        load_status(tmp_path)
    (tmp_path / layout.STATUS).write_text(json.dumps({"phase": "running", "pid": 7}))
    st = load_status(tmp_path)
    assert st is not None and st.live and st.pid == 7 and is_run_dir(tmp_path)
    (tmp_path / layout.RESULT).write_text(json.dumps({"verdict": "maybe"}))
    with pytest.raises(StoreError, match="has no valid verdict"):
        load_result(tmp_path)
    (tmp_path / layout.RESULT).write_text(json.dumps(
        {"verdict": "fail", "message": "\nscheduler died\nmore", "sections": {"a": "x"}}))
    r = load_result(tmp_path)
    assert r is not None and r.first_line == "scheduler died" and r.section("a") == "x"
    (tmp_path / "t.failure-dump.json").write_text("{}")
    assert [p.name for p in failure_dumps(tmp_path)] == ["t.failure-dump.json"]


def test_events_and_samples_keep_only_what_parses(tmp_path):
    (tmp_path / layout.EVENTS).write_text(
        '{"t": 1.0, "kind": "phase", "phase": "booting"}\n{"kind": "no time"}\n')
    (tmp_path / layout.MONITOR).write_text(json.dumps(
        {"t": 2.0, "cpus": [{"cpu": 0, "nr_running": 2}, {"cpu": "x"}],
         "scx": {"state": "enabled"}, "flags": ["stall"]}) + "\n")
    [ev] = read_events(tmp_path)
    assert (ev.t, ev.kind, ev.get("phase")) == (1.0, "phase", "booting")
    [s] = read_samples(tmp_path)
    assert [c.cpu for c in s.cpus] == [0] and s.cpus[0].nr_running == 2
    assert (s.scx_state, s.flags) == ("enabled", ("stall",))
    assert parse_sample({"t": True, "cpus": []}) is None  # a bool is not a time


def test_a_monitor_field_the_reader_does_not_know_reaches_the_views():
    """docs/architecture.md: a new monitor field is the sampler (writes it) and a view (reads
    it with CpuState.get) - the reader carries every scalar it does not type."""
    from ktstr_vmm.rundir.records import parse_sample

    s = parse_sample({"t": 1.5, "cpus": [
        {"cpu": 0, "nr_running": 2, "scx_nr_running": 1, "local_dsq_nr": 1, "clock_ns": 123,
         "scx_flags": 4, "curr_pid": 7, "curr_comm": "spin", "curr_class": "ext",
         "nr_switches": 99, "weird": [1], "flag": True},
        {"cpu": 1, "error": "run queue is not in guest RAM"}]})
    c0, c1 = s.cpus
    assert (c0.get("nr_running"), c0.get("nr_switches"), c0.get("clock_ns")) == (2, 99, 123)
    assert c0.get("weird") is None and c0.get("flag") is None  # scalars only, no booleans
    assert c1.get("error") == "run queue is not in guest RAM" and c1.get("nr_running") == 0
    assert c1.get("absent", "-") == "-"
