"""Wire frames: round trip, resynchronisation, and a decoder that nothing can crash."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ktstr_vmm.evaluate.workstats import stats_line, stats_section
from ktstr_vmm.guest import messages as guestmsg
from ktstr_vmm.guest.wire import (
    FLAG_STDERR,
    HEADER_SIZE,
    MAGIC,
    MAX_PAYLOAD,
    Decoder,
    Frame,
    MsgType,
    decode_all,
    encode,
)


def test_header_layout_is_magic_type_flags_length_crc_little_endian():
    data = encode(MsgType.SysRdy, b"hello", flags=3)
    magic, mtype, flags, length, crc = struct.unpack_from("<IHHII", data)
    assert data[:4] == b"KTSW" and magic == MAGIC
    assert (mtype, flags, length, crc) == (20, 3, 5, 0x3610A686)
    assert data[HEADER_SIZE:] == b"hello"


def test_msgtype_covers_the_seeds_set():
    assert [t.name for t in MsgType] == [
        "TestResult", "Exit", "SchedExit", "ScenarioStart", "ScenarioEnd", "ScenarioPause",
        "ScenarioResume", "Stdout", "Stderr", "SchedLog", "Lifecycle", "ExecExit", "Dmesg",
        "ProbeOutput", "SnapshotRequest", "SnapshotReply", "Crash", "KernelOpRequest",
        "KernelOpReply", "SysRdy", "PayloadMetrics", "RawPayloadOutput", "Stimulus",
        "Profraw", "WprofTrace", "TraceFormats", "TracePages", "TraceStats", "BenchOutput",
        "ShellOpen", "ShellOpened", "ShellData", "ShellResize", "ShellEof", "ShellClose",
        "ShellExit", "BpfProgs"]
    # the seed's types are 1-25; 32-39 is the scheduling trace's block, 56-63 the
    # gauntlet's (docs/wire.md)
    assert [int(MsgType[n]) for n in ("TraceFormats", "TracePages", "TraceStats")] == [32, 33, 34]
    assert int(MsgType.BpfProgs) == 56


def test_round_trip_every_type():
    frames = [Frame(t, f"payload {t.name}".encode(), flags=i) for i, t in enumerate(MsgType)]
    data = b"".join(encode(f.type, f.payload, f.flags) for f in frames)
    assert decode_all(data) == frames


def test_garbage_between_frames_is_skipped_and_counted():
    d = Decoder()
    data = b"noise" + encode(MsgType.Stdout, b"a") + b"KTS" + b"\x00" * 7 + encode(MsgType.Exit, b"{}")
    got = d.feed(data)
    assert [f.type for f in got] == [MsgType.Stdout, MsgType.Exit]
    assert d.stats()["garbage_bytes"] == 15
    assert d.stats()["frames"] == 2


def test_bad_crc_frame_is_dropped_and_the_next_one_kept():
    bad = bytearray(encode(MsgType.SchedLog, b"corrupt me"))
    bad[-1] ^= 0x40
    d = Decoder()
    got = d.feed(bytes(bad) + encode(MsgType.SchedLog, b"fine"))
    assert [f.payload for f in got] == [b"fine"]
    assert d.bad_crc == 1


def test_oversized_header_is_dropped_without_waiting_for_a_megabyte():
    hdr = struct.pack("<IHHII", MAGIC, int(MsgType.Dmesg), 0, MAX_PAYLOAD + 1, 0)
    d = Decoder()
    got = d.feed(hdr + encode(MsgType.Dmesg, b"after"))
    assert [f.payload for f in got] == [b"after"]
    assert d.oversized == 1


def test_unknown_type_header_is_not_a_frame():
    hdr = struct.pack("<IHHII", MAGIC, 999, 0, 3, 0) + b"abc"
    d = Decoder()
    assert [f.payload for f in d.feed(hdr + encode(MsgType.Exit, b"x"))] == [b"x"]
    assert d.unknown_type == 1


def test_good_frame_inside_a_truncated_frames_claimed_length_is_recovered_at_eof():
    first = encode(MsgType.SchedLog, b"x" * 100)[:40]  # cut: claims 100, has 24
    d = Decoder()
    got = d.feed(first + encode(MsgType.Exit, b"{}"))
    assert got == []  # still waiting for the first frame's bytes
    assert [f.type for f in d.finish()] == [MsgType.Exit]


def test_frame_at_the_cap_is_accepted():
    payload = b"\xab" * MAX_PAYLOAD
    assert decode_all(encode(MsgType.Profraw, payload)) == [Frame(MsgType.Profraw, payload)]
    with pytest.raises(ValueError):
        encode(MsgType.Profraw, payload + b"!")


# --------------------------------------------------------------------------- fuzzing

frames_st = st.lists(
    st.builds(Frame, st.sampled_from(list(MsgType)), st.binary(max_size=300),
              st.integers(0, 0xFFFF)), max_size=6)


@settings(max_examples=300, deadline=None)
@given(frames=frames_st, cuts=st.lists(st.integers(0, 4000), max_size=20))
def test_frames_split_anywhere_decode_the_same(frames, cuts):
    data = b"".join(encode(f.type, f.payload, f.flags) for f in frames)
    d = Decoder()
    got = []
    prev = 0
    for c in sorted({min(c, len(data)) for c in cuts}) + [len(data)]:
        got += d.feed(data[prev:c])
        prev = c
    assert got == frames
    assert d.stats()["garbage_bytes"] == 0 and d.stats()["pending"] == 0


def test_frames_split_at_every_byte_decode_the_same():
    frames = [Frame(MsgType.SysRdy, b'{"a": 1}'), Frame(MsgType.SchedLog, b"line", FLAG_STDERR),
              Frame(MsgType.Exit, b"")]
    data = b"".join(encode(f.type, f.payload, f.flags) for f in frames)
    d = Decoder()
    got = [f for i in range(len(data)) for f in d.feed(data[i:i + 1])]
    assert got == frames


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(noise=st.binary(max_size=2000), cuts=st.lists(st.integers(0, 2000), max_size=10))
def test_arbitrary_bytes_never_raise(noise, cuts):
    d = Decoder()
    prev = 0
    for c in sorted(set(cuts)) + [len(noise)]:
        for f in d.feed(noise[prev:c]):
            guestmsg.parse_payload(f)
        prev = max(prev, c)
    d.finish()
    s = d.stats()
    assert s["pending"] == 0


@settings(max_examples=300, deadline=None)
@given(frames=frames_st.filter(bool), data=st.data())
def test_garbage_and_bit_flips_lose_only_the_damaged_frames(frames, data):
    encoded = [encode(f.type, f.payload, f.flags) for f in frames]
    victim = data.draw(st.integers(0, len(encoded) - 1))
    damaged = bytearray(encoded[victim])
    bit = data.draw(st.integers(0, len(damaged) * 8 - 1))
    damaged[bit // 8] ^= 1 << (bit % 8)
    garbage = data.draw(st.binary(max_size=64).filter(lambda b: b"KTSW" not in b))
    stream = garbage + b"".join(
        bytes(damaged) if i == victim else e for i, e in enumerate(encoded))
    got = decode_all(stream)
    expected = [f for i, f in enumerate(frames) if i != victim]
    # The flipped frame is lost (or, if the flip hit only the flags or type and the
    # header still looks valid, comes back changed); every other frame survives intact.
    assert [f for f in got if f in expected] == expected
    assert len(got) - len(expected) <= 1


@settings(max_examples=200, deadline=None)
@given(frames=frames_st.filter(bool), data=st.data())
def test_truncated_frame_loses_only_itself(frames, data):
    encoded = [encode(f.type, f.payload, f.flags) for f in frames]
    victim = data.draw(st.integers(0, len(encoded) - 1))
    cut = data.draw(st.integers(0, len(encoded[victim]) - 1))
    stream = b"".join(e[:cut] if i == victim else e for i, e in enumerate(encoded))
    expected = [f for i, f in enumerate(frames) if i != victim]
    assert decode_all(stream) == expected


# --------------------------------------------------------------------------- payloads


def _frame(t, obj, flags=0):
    raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return Frame(t, raw, flags)


SYSRDY_1N2L2C1T = {
    "release": "7.3.4+deb13-cloud-amd64", "uptime_ms": 3120, "online": "0-3",
    "nodes": {"0": "0-3"}, "llcs": ["0-1", "2-3"], "siblings": ["0", "1", "2", "3"],
    "ram": [["1000", "9fbff"], ["100000", "1ffdffff"]],
    "kallsyms": {"runqueues": "ffffffff83cf65c0"}, "scx_state": "disabled"}


def test_sysrdy_parses_to_the_observed_topology():
    v = guestmsg.parse_payload(_frame(MsgType.SysRdy, SYSRDY_1N2L2C1T))
    assert isinstance(v, guestmsg.SysRdy)
    assert v.observed_notation() == "1n2l2c1t"
    assert v.kallsyms == {"runqueues": 0xFFFFFFFF83CF65C0}
    assert v.ram[1] == guestmsg.RamRange(0x100000, 0x1FFDFFFF)


def test_sysrdy_smt_and_numa_shapes():
    smt = dict(SYSRDY_1N2L2C1T, online="0-7", nodes={"0": "0-7"}, llcs=["0-3", "4-7"],
               siblings=["0-1", "2-3", "4-5", "6-7"])
    assert guestmsg.parse_payload(_frame(MsgType.SysRdy, smt)).observed_notation() == "1n2l2c2t"
    numa = dict(SYSRDY_1N2L2C1T, online="0-7", nodes={"0": "0-3", "1": "4-7"},
                llcs=["0-1", "2-3", "4-5", "6-7"], siblings=[str(i) for i in range(8)])
    assert guestmsg.parse_payload(_frame(MsgType.SysRdy, numa)).observed_notation() == "2n4l2c1t"
    uneven = dict(SYSRDY_1N2L2C1T, llcs=["0-2", "3"])
    assert guestmsg.parse_payload(_frame(MsgType.SysRdy, uneven)).observed_notation() == "irregular"


def test_test_result_stats_line_in_ktstrs_shape():
    workers = [dict(group=0, kind="spin", index=i, pid=100 + i, cpu_ns=cpu, wall_ns=5_000_000_000,
                    iterations=1000, migrations=m, cpus=cpus, max_gap_ns=gap)
               for i, (cpu, m, cpus, gap) in enumerate([
                   (4_000_000_000, 0, [0], 3_000_000), (4_000_000_000, 2, [1, 2], 21_400_000),
                   (3_000_000_000, 0, [2], 1_000_000), (4_000_000_000, 0, [3], 0)])]
    v = guestmsg.parse_payload(_frame(MsgType.TestResult, {
        "scheduler": "/bin/sched", "duration_ms": 5000, "workers": workers}))
    assert stats_line(v) == "4 workers, 4 cpus, 2 migrations, worst_spread=25.0%, worst_gap=21ms"
    assert stats_section(v).splitlines()[1] == (
        "  cg0: workers=4 cpus=4 spread=25.0% gap=21ms migrations=2 iter=4000")


@pytest.mark.parametrize("payload,reason", [
    (b"not json", "payload is not JSON (JSONDecodeError)"),
    (b"[1, 2]", "payload is not a JSON object"),
    (b'{"reason": "x"}', "missing field 'code'"),
    (b'{"code": "0"}', "field 'code' is not an integer"),
    (b'{"code": 300}', "field 'code' = 300 is out of range"),
    (b"\xff\xfe", "payload is not JSON (UnicodeDecodeError)"),
    (b"[" * 100000, "payload is not JSON (RecursionError)"),
])
def test_bad_payloads_give_a_clear_error_value(payload, reason):
    v = guestmsg.parse_payload(Frame(MsgType.Exit, payload))
    assert v == guestmsg.PayloadError(MsgType.Exit, reason)


def test_log_payloads_are_text_with_bad_bytes_replaced():
    v = guestmsg.parse_payload(Frame(MsgType.SchedLog, b"local=3 \xff", FLAG_STDERR))
    assert v == guestmsg.SchedLogLine("stderr", "local=3 \ufffd")
    d = guestmsg.parse_payload(Frame(MsgType.Dmesg, b'6,812,4100123,-;sched_ext: BPF scheduler "simple" enabled'))
    assert d == guestmsg.DmesgRecord(6, 0, 812, 4100123, 'sched_ext: BPF scheduler "simple" enabled')
    assert d.console_line() == '[    4.100123] sched_ext: BPF scheduler "simple" enabled'


@settings(max_examples=300, deadline=None)
@given(t=st.sampled_from(list(MsgType)), payload=st.one_of(
    st.binary(max_size=200),
    st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                 lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=6),
                 max_leaves=30).map(lambda o: json.dumps(o).encode())))
def test_parse_payload_never_raises(t, payload):
    guestmsg.parse_payload(Frame(t, payload))


cpulist_st = st.lists(st.integers(0, 15), max_size=6).map(lambda xs: ",".join(map(str, xs)))


@settings(max_examples=300, deadline=None)
@given(online=cpulist_st, nodes=st.dictionaries(st.sampled_from(["0", "1", "2"]), cpulist_st),
       llcs=st.lists(cpulist_st, max_size=4), sibs=st.lists(cpulist_st, max_size=8))
def test_observed_topology_never_raises(online, nodes, llcs, sibs):
    v = guestmsg.parse_payload(_frame(MsgType.SysRdy, {
        "online": online, "nodes": nodes, "llcs": llcs, "siblings": sibs}))
    assert isinstance(v, guestmsg.SysRdy)
    t = v.observed_topology()
    assert t is None or t.vcpus == len(v.online)


@pytest.mark.parametrize("cut", [1, 5, 7, 10, 14, 16, 20, 60])
def test_torn_frame_padded_with_ff_does_not_delay_the_next_one(cut):
    # The agent pads a frame it could not finish with 0xff up to its claimed length
    # (native/guest/wire.c pay_debt), so the host resynchronises at once.
    torn = encode(MsgType.SnapshotReply, b"x" * 50)
    padded = torn[:cut] + b"\xff" * (len(torn) - cut)
    d = Decoder()
    got = d.feed(padded + encode(MsgType.Exit, b"{}"))
    assert [f.type for f in got] == [MsgType.Exit]


any_int = st.one_of(st.integers(-5, 5), st.integers(-(2**70), 2**70), st.none(), st.text(max_size=3))
worker_st = st.fixed_dictionaries({
    "group": any_int, "kind": st.sampled_from(["spin", "pipe", 3]), "index": any_int,
    "pid": any_int, "cpu_ns": any_int, "wall_ns": any_int, "iterations": any_int,
    "migrations": any_int, "cpus": st.lists(any_int, max_size=5), "max_gap_ns": any_int})


@settings(max_examples=300, deadline=None)
@given(workers=st.lists(worker_st, max_size=5))
def test_test_result_from_any_worker_records_parses_or_errors_cleanly(workers):
    v = guestmsg.parse_payload(_frame(MsgType.TestResult, {"workers": workers}))
    assert isinstance(v, guestmsg.TestResult | guestmsg.PayloadError)
    if isinstance(v, guestmsg.TestResult):
        if v.workers:
            assert stats_section(v).startswith(f"{len(v.workers)} workers, ")
        else:  # the seed gates the section on having cgroups
            assert stats_section(v) == ""
