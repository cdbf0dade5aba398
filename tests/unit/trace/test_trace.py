"""The scheduling trace: ring-buffer pages recorded from a real guest (scx_simple, 2 vCPUs,
spin and pipe workers; tests/data/trace_scx_simple) decoded, indexed, analysed, exported.
Damaged input opens with what is readable and says where it stops."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import DATA

from ktstr_vmm.trace.files import (
    FORMATS,
    INDEX,
    Trace,
    TraceWriter,
    build_index,
    pages_name,
)
from ktstr_vmm.trace.ftrace import (
    KIND_MIGRATE,
    KIND_SWITCH,
    KIND_WAKEUP,
    MISSED_EVENTS,
    MISSED_STORED,
    Formats,
    PageDecoder,
)
from ktstr_vmm.trace.latency import analyse, apply_to_verdict, check, report_text

SAMPLE = DATA / "trace_scx_simple"
PAGE = 4096


def read_pages(path: Path) -> list[bytes]:
    """A .pages file (u32 length + page bytes, repeated) as its pages."""
    data, pos, out = path.read_bytes(), 0, []
    while pos + 4 <= len(data):
        n = struct.unpack_from("<I", data, pos)[0]
        out.append(data[pos + 4:pos + 4 + n])
        pos += 4 + n
    return out


def write_pages(path: Path, pages: list[bytes]) -> None:
    path.write_bytes(b"".join(struct.pack("<I", len(p)) + p for p in pages))


def padded(path: Path) -> bytes:
    return b"".join(p + bytes(PAGE - len(p)) for p in read_pages(path))


@pytest.fixture
def run(tmp_path):
    shutil.copytree(SAMPLE, tmp_path / "run")
    return tmp_path / "run"


def _open(run):
    build_index(run)
    t = Trace.open(run)
    assert t is not None
    return t


def test_real_pages_decode_into_time_ordered_sched_events_with_task_names(run):
    index = build_index(run)
    assert index["errors"] == [] and index["notes"] == []
    assert index["enabled"][:2] == ["sched/sched_switch", "sched/sched_wakeup"]
    t = Trace.open(run)
    assert sorted(t.cpus) == [0, 1]
    kinds = set()
    for cpu, recs in t.cpus.items():
        ts = [r[0] for r in recs.all()]
        assert ts == sorted(ts) and len(ts) == index["cpus"][cpu]["events"] > 500
        assert {r[2] for r in recs.all()} == {cpu}
        kinds |= {r[1] for r in recs.all()}
    assert {KIND_SWITCH, KIND_WAKEUP, KIND_MIGRATE} <= kinds
    names = set(t.tasks.values())
    # the last name a task had wins: the workers renamed themselves after the fork
    assert {"scx_simple", "spin-0", "spin-1", "pipe-0", "pipe-1", "rcu_preempt"} <= names
    assert t.name(0) == "idle"
    # a switch names both tasks: prev in a, next in pid
    sw = next(r for r in t.cpus[0].all() if r[1] == KIND_SWITCH and r[3] and r[4])
    assert sw[3] in t.tasks and sw[4] in t.tasks
    t.close()


def test_a_time_is_found_by_bisecting_not_scanning(run):
    t = _open(run)
    recs = t.cpus[1]
    mid = recs[len(recs) // 2][0]
    i = recs.find(mid)
    assert recs[i][0] == mid and (i == 0 or recs[i - 1][0] < mid)
    window = list(recs.between(mid, mid + 1_000_000))
    assert window and all(mid <= r[0] < mid + 1_000_000 for r in window)
    assert recs.find(0) == 0 and recs.find(1 << 62) == len(recs)
    t.close()


def test_latency_report_names_tasks_cpus_and_worst_waits(run):
    t = _open(run)
    r = analyse(t)
    assert r.wakeup.n > 100 and 0 < r.wakeup.p50_ns <= r.wakeup.p99_ns <= r.wakeup.max_ns
    assert r.runnable.max_ns >= r.wakeup.max_ns
    assert [c.cpu for c in r.cpus] == [0, 1] and all(c.busy_ns > 0 for c in r.cpus)
    assert r.worst and r.worst[0].ns == r.runnable.max_ns
    assert all(a.ns >= b.ns for a, b in zip(r.worst, r.worst[1:], strict=False))
    text = report_text(r)
    assert text.startswith("window ") and "worst waits:" in text
    w = r.worst[0]
    assert f"pid {w.pid} ({w.name})" in text and f"ran on cpu {w.ran_cpu}" in text
    t.close()


def test_a_latency_threshold_fails_a_passing_run_naming_task_cpu_and_time(run):
    from ktstr_vmm.evaluate.types import Verdict

    t = _open(run)
    r = analyse(t)
    t.close()
    limit = r.wakeup.max_ns / 2e6  # half the worst wakeup: crossed
    v = check(r, max_wakeup_ms=limit, max_runnable_ms=None)
    assert len(v) == 1 and v[0].what == "wakeup latency"
    line = v[0].line()
    from ktstr_vmm.trace.latency import ms

    assert line.startswith(f"wakeup latency {ms(r.wakeup.max_ns)} > ")
    assert f"> {limit:g}ms: pid " in line and "for cpu" in line and "ran on cpu" in line
    judged = apply_to_verdict(Verdict(kind="pass"), r, v, "ktstr_test 'x' [topo=1n1l2c1t] ")
    assert judged.kind == "fail" and judged.reason == "passed scenario but latency failed"
    assert judged.message.startswith("ktstr_test 'x' [topo=1n1l2c1t] passed scenario but "
                                     "latency failed:\n  wakeup latency ")
    assert "\n\n--- latency ---\nwindow " in judged.message
    assert judged.sections["latency"].startswith("window ")
    assert check(r, max_wakeup_ms=r.wakeup.max_ns / 1e6 + 1, max_runnable_ms=None) == ()
    ok = apply_to_verdict(Verdict(kind="pass"), r, (), "h ")
    assert ok.kind == "pass" and ok.message == "" and "latency" in ok.sections


def test_the_latency_section_goes_before_auto_repro_which_stays_last(run):
    """The seed ends a failure message with its auto-repro section; latency comes before it."""
    from ktstr_vmm.evaluate.types import Verdict

    t = _open(run)
    r = analyse(t)
    t.close()
    repro = "reproduced: the repro VM failed the same way (SCX_EXIT_ERROR: x)"
    failed = Verdict(kind="fail", message=f"head\n\n--- monitor ---\nm\n\n--- auto-repro ---\n{repro}",
                     sections={"monitor": "m", "auto-repro": repro})
    judged = apply_to_verdict(failed, r, (), "h ")
    assert judged.message.endswith(f"\n\n--- auto-repro ---\n{repro}")
    assert "\n\n--- monitor ---\nm\n\n--- latency ---\nwindow " in judged.message
    assert list(judged.sections) == ["monitor", "latency", "auto-repro"]
    plain = apply_to_verdict(Verdict(kind="fail", message="head", sections={}), r, (), "h ")
    assert plain.message.startswith("head\n\n--- latency ---\nwindow ")


def test_truncated_pages_file_opens_with_what_is_readable_and_says_where_it_stops(run):
    whole = build_index(run)["cpus"][0]["events"]
    p = run / pages_name(0)
    pages = read_pages(p)
    write_pages(p, pages[:5])
    with open(p, "ab") as f:  # and the start of a sixth page
        f.write(struct.pack("<I", len(pages[5])) + pages[5][:100])
    (run / INDEX).unlink()
    index = build_index(run)
    assert 0 < index["cpus"][0]["events"] < whole
    assert len(pages[5]) > 100
    assert any(f"cpu 0 page 5 byte 0 (file ends 100 bytes into a page of {len(pages[5])} "
               "(truncated))" in n for n in index["notes"])


def test_a_corrupt_page_stops_at_the_bad_record_and_keeps_the_rest(run):
    p = run / pages_name(1)
    pages = read_pages(p)
    bad = bytearray(pages[3])
    bad[16:20] = struct.pack("<I", 28 | (5 << 5))  # a 112-byte record...
    bad[8:16] = struct.pack("<Q", 60)  # ...in 60 bytes of data
    pages[3] = bytes(bad)
    write_pages(p, pages)
    index = build_index(run)
    assert index["cpus"][1]["events"] > 100
    assert index["errors"][0] == {"cpu": 1, "page": 3, "offset": 16,
                                  "reason": "record of 116 bytes runs past the data"}
    assert "1 damaged pages: the first at cpu 1 page 3 byte 16" in " ".join(index["notes"])


def test_ring_buffer_overrun_is_counted_and_noted(run):
    p = run / pages_name(0)
    pages = read_pages(p)
    first = bytearray(pages[0])
    commit = struct.unpack_from("<Q", first, 8)[0] & ((1 << 30) - 1)
    struct.pack_into("<Q", first, 8, commit | MISSED_EVENTS | MISSED_STORED)
    pages[0] = bytes(first[:16 + commit]) + struct.pack("<Q", 4242)  # the count after the data
    write_pages(p, pages)
    index = build_index(run)
    assert index["lost"]["missed_in_pages"] == 4242
    assert any(n.startswith("ring buffer overrun: 4242 events lost in the guest")
               for n in index["notes"])


def test_a_missing_tracepoint_is_named(run):
    f = json.loads((run / FORMATS).read_text())
    f["missing"] = ["sched/sched_wakeup_new"]
    (run / FORMATS).write_text(json.dumps(f))
    index = build_index(run)
    assert ("this kernel has no tracepoint sched/sched_wakeup_new; traced without it"
            in index["notes"])


def test_writer_keeps_pages_under_its_cap_and_counts_the_rest(tmp_path):
    formats = json.loads((SAMPLE / FORMATS).read_text())
    page = read_pages(SAMPLE / pages_name(0))[0]
    w = TraceWriter(tmp_path, max_bytes=3 * (4 + len(page)))
    w.formats(formats)
    frame = b"".join(struct.pack("<II", 0, len(page)) + page for _ in range(5))
    w.pages(frame)
    w.pages(struct.pack("<II", 9999, 16) + bytes(16))  # a cpu the guest does not have
    w.close()
    assert read_pages(tmp_path / pages_name(0)) == [page] * 3
    stats = json.loads((tmp_path / "trace" / "stats.json").read_text())["host"]
    assert (stats["pages"], stats["over_cap_pages"], stats["bad_pages"]) == (3, 2, 1)
    index = build_index(tmp_path)
    assert "2 pages over the host's cap of 0 MiB were not stored" in index["notes"]


@settings(max_examples=150, deadline=None)
@given(st.binary(min_size=0, max_size=PAGE), st.integers(0, 1 << 64 - 1))
def test_arbitrary_page_bytes_never_raise(body, commit):
    formats = Formats.from_json(json.loads((SAMPLE / FORMATS).read_text()))
    dec = PageDecoder(formats)
    page = struct.pack("<QQ", 1000, commit & ((1 << 64) - 1)) + body
    out: list = []
    dec.decode_page(0, 0, page, out)
    assert all(r[0] >= 0 for r in out)


def test_perfetto_export_reads_back_with_the_packages_own_protos(run, tmp_path):
    from perfetto.protos.perfetto.trace.perfetto_trace_pb2 import Trace as PbTrace

    from ktstr_vmm.trace.perfetto import export

    t = _open(run)
    n = export(t, tmp_path / "out.pftrace")
    switches = sum(1 for r in t.cpus[0].all() if r[1] == KIND_SWITCH)
    pb = PbTrace()
    pb.ParseFromString((tmp_path / "out.pftrace").read_bytes())
    events = [(b.ftrace_events.cpu, e) for b in pb.packet for e in b.ftrace_events.event]
    assert len(events) == n > 1000
    assert sorted({cpu for cpu, _ in events}) == [0, 1]
    cpu0 = [e for cpu, e in events if cpu == 0]
    assert sum(1 for e in cpu0 if e.HasField("sched_switch")) == switches
    sw = next(e.sched_switch for e in cpu0 if e.HasField("sched_switch") and e.sched_switch.next_pid)
    assert sw.next_comm == t.name(sw.next_pid) and sw.prev_comm == t.name(sw.prev_pid)
    wk = next(e.sched_wakeup for _, e in events if e.HasField("sched_wakeup"))
    assert wk.comm == t.name(wk.pid) and wk.target_cpu in (0, 1)
    assert [e.timestamp for e in cpu0] == sorted(e.timestamp for e in cpu0)
    t.close()


def _both_decoders(formats_json: dict, data: bytes, cpu: int = 0):
    from ktstr_vmm.trace import ftrace_native
    from ktstr_vmm.trace.files import _pack

    formats = Formats.from_json(formats_json)
    lib = ftrace_native._load()
    assert lib is not None, "the C decoder did not build (gcc is a test dependency)"
    raw, names, errors, missed, uncounted, _, _ = ftrace_native.decode_cpu(lib, data, PAGE,
                                                                        formats, cpu)
    dec = PageDecoder(formats)
    recs: list = []
    for k in range(len(data) // PAGE):
        dec.decode_page(cpu, k, data[k * PAGE:(k + 1) * PAGE], recs)
    comms_native: dict = {}
    for pid, name in names:
        comms_native[pid] = name
    return ((raw, comms_native, errors, missed, uncounted),
            (_pack(recs), {p: n.rstrip(b"\0") for p, n in dec.comms.items()}, dec.errors,
             sum(dec.missed.values()), sum(dec.missed_unknown.values())))


def test_the_c_decoder_gives_exactly_the_reference_decoders_records():
    fj = json.loads((SAMPLE / FORMATS).read_text())
    for cpu in (0, 1):
        data = padded(SAMPLE / pages_name(cpu))
        native, ref = _both_decoders(fj, data, cpu)
        assert native[0] == ref[0] and len(native[0]) > 32 * 500
        assert native[1:] == ref[1:]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, PAGE - 1), st.integers(0, 255)), max_size=40),
       st.integers(0, 23))
def test_the_c_decoder_agrees_on_damaged_pages_too(flips, page_no):
    fj = json.loads((SAMPLE / FORMATS).read_text())
    data = bytearray(padded(SAMPLE / pages_name(0))[page_no * PAGE:(page_no + 1) * PAGE])
    for off, val in flips:
        data[off] = val
    native, ref = _both_decoders(fj, bytes(data))
    assert native[0] == ref[0]
    assert native[2:] == ref[2:]


@pytest.mark.parametrize("decoder", ["native", "python"])
def test_pages_out_of_time_order_still_give_time_ordered_records(run, monkeypatch, decoder):
    from ktstr_vmm.trace import ftrace_native

    if decoder == "python":
        monkeypatch.setattr(ftrace_native, "_lib", None)
        monkeypatch.setattr(ftrace_native, "_tried", True)
    p = run / pages_name(0)
    pages = read_pages(p)
    write_pages(p, [pages[1], pages[0], *pages[2:]])  # pages 0 and 1 swapped
    index = build_index(run)
    assert index["decoder"] == decoder
    t = Trace.open(run)
    ts = [r[0] for r in t.cpus[0].all()]
    assert ts == sorted(ts) and len(ts) == index["cpus"][0]["events"]
    t.close()


def test_a_write_error_stops_the_trace_and_says_why(tmp_path):
    formats = json.loads((SAMPLE / FORMATS).read_text())
    page = read_pages(SAMPLE / pages_name(0))[0]
    w = TraceWriter(tmp_path)
    w.formats(formats)
    (tmp_path / pages_name(1)).mkdir()  # cpu 1's file cannot be opened for appending
    w.pages(struct.pack("<II", 0, len(page)) + page + struct.pack("<II", 1, len(page)) + page)
    w.pages(struct.pack("<II", 0, len(page)) + page)  # nothing more is stored
    w.close()
    assert read_pages(tmp_path / pages_name(0)) == [page]
    assert w.write_error.startswith("IsADirectoryError")
    index = build_index(tmp_path)
    assert any(n.startswith("the host stopped storing the trace: IsADirectoryError")
               for n in index["notes"])
