"""Event kinds are named from the compiled ktvmm.h (KT_EV_*), not re-typed in Python: every
constant the VMM can post gets a person-readable name, and a crash reads as one."""

from __future__ import annotations

import pytest

from ktstr_vmm.engine.kvmevents import CRASH_NAMES, STOP_NAMES, event_from_c, kind_names

native = pytest.importorskip("ktstr_vmm._kvm", reason="the KVM extension is not built")
ffi, lib = native.ffi, native.lib


def test_every_kt_ev_constant_has_a_name():
    posted = {getattr(lib, n) for n in dir(lib) if n.startswith("KT_EV_")}
    assert posted == set(kind_names())
    assert CRASH_NAMES <= STOP_NAMES
    assert "report" not in STOP_NAMES


def test_a_triple_fault_event_decodes_and_describes_itself():
    ev = ffi.new("struct kt_event *", {"kind": lib.KT_EV_SHUTDOWN, "vcpu": 1, "rip": 0x1000,
                                       "cs": 0x10})
    e = event_from_c(ev)
    assert e.kind == "triple fault" and e.kind in STOP_NAMES
    assert e.describe() == "triple fault: vCPU 1 at RIP 0x1000 (CS 0x0010)"
