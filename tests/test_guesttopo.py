from hypothesis import given
from hypothesis import strategies as st

from ktstr_vmm.guesttopo import observed_topology, parse_cpulist


def test_cpulist():
    assert parse_cpulist("0-3,6,8-9") == {0, 1, 2, 3, 6, 8, 9}
    assert parse_cpulist("") == frozenset()
    assert parse_cpulist("3-1") is None
    assert parse_cpulist("x") is None


def test_two_llcs_smt():
    # What the guest showed for sockets=1,dies=2,cores=2,threads=2 (ENVIRONMENT.md).
    t = observed_topology("0-7", ["0-7"], ["0-3"] * 4 + ["4-7"] * 4,
                          ["0-1", "0-1", "2-3", "2-3", "4-5", "4-5", "6-7", "6-7"])
    assert t.notation == "1n2l2c2t"


def test_numa():
    t = observed_topology("0-7", ["0-3", "4-7"], ["0-1", "0-1", "2-3", "2-3", "4-5", "4-5", "6-7", "6-7"],
                          [str(i) for i in range(8)])
    assert t.notation == "2n4l2c1t"


def test_non_uniform_is_none():
    assert observed_topology("0-2", ["0-2"], ["0-1", "0-1", "2"], ["0", "1", "2"]) is None


@given(st.text(), st.lists(st.text()), st.lists(st.text()), st.lists(st.text()))
def test_garbage_never_raises(a, b, c, d):
    observed_topology(a, b, c, d)
