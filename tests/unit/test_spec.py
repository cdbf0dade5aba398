import pytest

from ktstr_vmm.errors import UsageError
from ktstr_vmm.spec import (
    PRESETS,
    RunSpec,
    WorkloadGroup,
    parse_duration,
    parse_size_mib,
    parse_topology,
    parse_workload,
    validate_name,
)


def test_presets_have_ktstr_shapes():
    assert parse_topology("tiny-2llc").notation == "1n2l2c1t"
    assert parse_topology("numa4-12llc").notation == "4n12l8c2t"
    assert parse_topology("max-cpu-nosmt").vcpus == 252
    assert len(PRESETS) == 24


def test_notation_parses_and_checks_divisibility():
    t = parse_topology("2n4l2c2t")
    assert (t.nodes, t.llcs, t.cores, t.threads, t.vcpus) == (2, 4, 2, 2, 16)
    with pytest.raises(UsageError) as e:
        parse_topology("2n3l2c1t")
    assert e.value.message == "topology '2n3l2c1t': LLCs (3) must be a multiple of NUMA nodes (2)"


def test_unknown_preset_suggests_close_names():
    with pytest.raises(UsageError) as e:
        parse_topology("tiny-2lc")
    assert "tiny-2llc" in e.value.one_line()


def test_too_many_vcpus_refused():
    with pytest.raises(UsageError, match="over the limit"):
        parse_topology("1n16l16c2t")


def test_cpu_location_numbers_threads_fastest():
    t = parse_topology("1n2l2c2t")
    assert [t.cpu_location(c) for c in range(4)] == [(0, 0, 0, 0), (0, 0, 0, 1), (0, 0, 1, 0), (0, 0, 1, 1)]
    assert t.cpu_location(4) == (0, 1, 0, 0)
    assert parse_topology("2n4l4c1t").node_cpus(1) == list(range(8, 16))


@pytest.mark.parametrize("text,seconds", [("5s", 5), ("500ms", 0.5), ("2m", 120), ("10", 10)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["5x", "", "-1s", "0s", "s"])
def test_bad_durations(bad):
    with pytest.raises(UsageError, match="bad duration"):
        parse_duration(bad)


def test_sizes():
    assert parse_size_mib("512M") == 512
    assert parse_size_mib("2G") == 2048
    assert parse_size_mib("1024") == 1024
    with pytest.raises(UsageError):
        parse_size_mib("lots")


@pytest.mark.parametrize("bad", ["a/b", "..", ".hidden", "x\x00y", "tab\there", "", "x" * 101])
def test_bad_names_refused(bad):
    with pytest.raises(UsageError):
        validate_name(bad)


def test_workload_parsing():
    assert parse_workload("") == (WorkloadGroup("spin", 0),)
    assert parse_workload("spin:4,pipe:2") == (WorkloadGroup("spin", 4), WorkloadGroup("pipe", 2))
    with pytest.raises(UsageError, match="unknown workload kind 'spinn'"):
        parse_workload("spinn:2")


def test_runspec_roundtrip():
    s = RunSpec(name="t1", scheduler="scx_simple", topology=parse_topology("smt-2llc"),
                topology_requested="smt-2llc", sched_args=("-v",), workload=parse_workload("spin:2,sleep"))
    d = s.to_json()
    assert d["topology"] == "1n2l2c2t" and d["preset"] == "smt-2llc"
    assert RunSpec.from_json(d).to_json() == d
