"""The guest spec file the agent reads: exact text, round trip, refusal of bad values."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ktstr_vmm.errors import UsageError
from ktstr_vmm.guest.spec import parse_guest_spec, render_guest_spec
from ktstr_vmm.spec import RunSpec, parse_topology, parse_workload


def _spec(**kw):
    base = dict(name="smoke", scheduler="scx_simple", topology=parse_topology("tiny-2llc"),
                duration_s=5.0)
    base.update(kw)
    return RunSpec(**base)


def test_render_exact_text():
    spec = _spec(sched_args=("-v", "--slice-us=5000"), workload=parse_workload("spin,pipe:3"),
                 probes=("f:kt/a enqueue_task_scx rq->cpu p->pid",))
    assert render_guest_spec(spec, "/bin/sched", ["runqueues", "__per_cpu_offset"]) == (
        "# ktstr guest spec (docs/wire.md)\n"
        "version=1\n"
        "name=smoke\n"
        "scheduler=/bin/sched\n"
        "sched_arg=-v\n"
        "sched_arg=--slice-us=5000\n"
        "duration_ms=5000\n"
        "enable_timeout_ms=32000\n"
        "stop_timeout_ms=5000\n"
        "workload=spin:4,pipe:4\n"
        "cgroups=1\n"
        "vcpus=4\n"
        "kallsym=runqueues\n"
        "kallsym=__per_cpu_offset\n"
        "probe=f:kt/a enqueue_task_scx rq->cpu p->pid\n"
        "trace=1\n"
        "trace_buffer_kb=2048\n"
        "trace_rate_kib=6144\n"
        "trace_cap_mb=256\n"
        "trace_event=sched/sched_switch\n"
        "trace_event=sched/sched_wakeup\n"
        "trace_event=sched/sched_wakeup_new\n"
        "trace_event=sched/sched_migrate_task\n"
        "trace_event=sched/sched_process_fork\n"
        "trace_event=sched/sched_process_exit\n"
        "trace_event=sched_ext/*\n"
        "trace_event=-sched_ext/sched_ext_dump\n")


def test_trace_keys_follow_the_spec_and_the_wire():
    off = parse_guest_spec(render_guest_spec(_spec(trace=False), "/bin/sched", []))
    assert off.trace == ()
    g = parse_guest_spec(render_guest_spec(_spec(trace_events=("irq/*",)), "/bin/sched", [],
                                           wire="serial"))
    keys = dict(g.trace[:4])
    assert keys["trace"] == "1" and keys["trace_rate_kib"] == "48"  # COM2: a small budget
    assert ("trace_event", "irq/*") in g.trace


def test_bad_trace_event_name_is_refused_with_the_fix():
    from ktstr_vmm.spec import validate_trace_event

    with pytest.raises(UsageError, match="bad trace event 'sched/../x'") as e:
        validate_trace_event("sched/../x")
    assert "GROUP/NAME" in e.value.one_line()


def test_baseline_has_an_empty_scheduler():
    g = parse_guest_spec(render_guest_spec(_spec(), None, []))
    assert g.scheduler == "" and g.workload == (("spin", 4),) and g.kallsyms == ()


def test_newline_in_a_scheduler_argument_is_refused():
    with pytest.raises(UsageError, match="holds a newline or NUL"):
        render_guest_spec(_spec(sched_args=("a\nversion=2",)), "/bin/sched", [])


@settings(max_examples=200, deadline=None)
@given(args=st.lists(st.text(st.characters(blacklist_characters="\r\n\0",
                                           blacklist_categories=("Cs",)), max_size=30), max_size=5),
       dur=st.floats(0.001, 3600))
def test_round_trip_keeps_arguments_exactly(args, dur):
    g = parse_guest_spec(render_guest_spec(_spec(sched_args=tuple(args), duration_s=dur),
                                           "/bin/sched", ["scx_root"]))
    assert g.sched_args == tuple(args)
    assert g.duration_ms == max(1, round(dur * 1000))
    assert g.kallsyms == ("scx_root",)
