"""Probe-line decoding on recorded trace output (tests/data/probes/, recorded from real
repro VMs under QEMU TCG with the 7.3 sched_ext kernel), backtrace extraction, the probe
set built from the real kernel's BTF."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support import DATA

from ktstr_vmm.repro.probes import (
    DecodeTables,
    backtrace_functions,
    build_probe_set,
    chain_to_exit,
    decode_trace,
    decode_value,
    parse_trace_line,
    refused_probes,
    render_hit,
)

DATA = DATA / "probes"
T = DecodeTables()


def test_bad_dsq_trace_decodes_to_a_chain_ending_at_the_exit():
    hits = decode_trace((DATA / "bad-dsq-trace.txt").read_text())
    assert len(hits) == 118  # "entries-in-buffer/entries-written: 118/118"
    assert [h.ts for h in hits] == sorted(h.ts for h in hits)
    chain = chain_to_exit(hits, 3)
    assert [render_hit(h, T) for h in chain] == [
        "   51.196385  cpu2   init[116]              enqueue_task_scx         cpu=2 pid=15 "
        "comm=0x656572705f756372 enq_flags=WAKEUP|CPU_SELECTED|0x8",
        "   51.196509  cpu2   init[116]              find_dsq_for_dispatch    cpu=2 dsq_id=0xbad0d5c tcpu=2",
        "   51.196902  cpu2   init[116]              sched_ext_exit           sched=ktstr kind=SCX_EXIT_ERROR",
    ]


def test_fprobe_line_fields_and_quoted_comm():
    line = ('          <idle>-0       [003] dNs5.    50.190513: scx_dispatch_enqueue: '
            '(scx_dispatch_enqueue+0x0/0x6f0) cpu=3 dsq_id=9223372036854775810 pid=15 '
            'comm="rcu_preempt" slice=20000000 enq_flags=2377900603252670473')
    h = parse_trace_line(line)
    assert h is not None
    assert (h.task, h.tpid, h.cpu, h.event) == ("<idle>", 0, 3, "scx_dispatch_enqueue")
    assert h.get("comm") == "rcu_preempt"
    assert render_hit(h, T).endswith(
        "cpu=3 dsq_id=SCX_DSQ_LOCAL pid=15 comm=rcu_preempt slice=20ms "
        "enq_flags=WAKEUP|CPU_SELECTED|CLEAR_OPSS|APPLY_SLICE|0x8")


def test_task_names_with_dashes_and_spaces():
    h = parse_trace_line(" kworker/u16:1-my thing-42 [001] d..2.  1.500000: enqueue_task_scx: "
                         "(enqueue_task_scx+0x4/0x340) cpu=1 pid=7")
    assert h is not None and (h.task, h.tpid) == ("kworker/u16:1-my thing", 42)


@pytest.mark.parametrize("value,shown", [
    (str((1 << 63) | 2), "SCX_DSQ_LOCAL"),
    (str((1 << 63) | 1), "SCX_DSQ_GLOBAL"),
    (str((1 << 63) | (1 << 62) | 3), "SCX_DSQ_LOCAL_ON|3"),
    (str(1 << 63), "SCX_DSQ_INVALID"),
    ("0", "0x0"),
    ("195890524", "0xbad0d5c"),
])
def test_dsq_ids_are_symbolic(value, shown):
    assert decode_value("dsq_id", value, T) == shown


def test_other_fields():
    assert decode_value("slice", str((1 << 64) - 1), T) == "SCX_SLICE_INF"
    assert decode_value("slice", "0", T) == "0"
    assert decode_value("kind", "1025", T) == "SCX_EXIT_ERROR_BPF"
    assert decode_value("enq_flags", "0", T) == "0"
    assert decode_value("exit_code", str((1 << 64) - 1), T) == "-1"
    assert decode_value("pid", "nonsense", T) == "nonsense"


def test_headers_and_junk_are_not_hits():
    text = "# tracer: nop\n#\n\nrandom words\n[ 1.0] sched_ext: something\n"
    assert decode_trace(text) == []


@given(st.text(max_size=300))
def test_parse_never_raises(text):
    for line in text.splitlines() or [text]:
        parse_trace_line(line)
    decode_trace(text)


@given(st.sampled_from(["dsq_id", "enq_flags", "slice", "kind", "exit_code", "cpu"]),
       st.one_of(st.integers(min_value=-(1 << 70), max_value=1 << 70).map(str), st.text(max_size=20)))
def test_decode_value_never_raises(key, value):
    assert isinstance(decode_value(key, value, T), str)


def test_backtrace_of_a_recorded_scx_bpf_error_console():
    console = (DATA / "error-after-console.txt").read_text()
    assert backtrace_functions(console) == [
        "scx_exit_bstr", "scx_bpf_error_bstr", "bpf_timer_cb", "__hrtimer_run_queues",
        "hrtimer_run_softirq", "handle_softirqs", "__local_bh_enable_ip", "process_one_work",
        "worker_thread", "kthread"]
    assert backtrace_functions("no exit here\n") == []


def test_refused_probe_notes():
    out = refused_probes([
        "probe refused: f:ktstr/nosuch nosuch_function_xyz: [   32.464237] trace_fprobe: error: "
        "Invalid probed address or symbol\n  Command: f:ktstr/nosuch nosuch_function_xyz\n"
        "                          ^",
        "lifecycle scx_enabled"])
    assert out == ["probe refused: f:ktstr/nosuch nosuch_function_xyz: [   32.464237] trace_fprobe: "
                   "error: Invalid probed address or symbol Command: f:ktstr/nosuch nosuch_function_xyz"]


def test_probe_set_from_the_real_kernel_btf(kernel):
    from ktstr_vmm.introspect.btf_load import load_btf

    btf = load_btf(kernel.vmlinux, kernel.build_id)
    console = (DATA / "error-after-console.txt").read_text()
    ps = build_probe_set(btf, backtrace_functions(console), vcpus=4)
    comm = btf.member("task_struct", "comm").offset
    assert ps.lines[0] == ">buffer_size_kb 256"
    assert ps.lines[-2:] == (">events/sched_ext/sched_ext_exit/enable 1",
                             ">events/sched_ext/sched_ext_exit/trigger traceoff")
    assert (f"f:ktstr/enqueue_task_scx enqueue_task_scx cpu=rq->cpu pid=p->pid "
            f"comm=+{comm}($arg2):string enq_flags=core_enq_flags") in ps.lines
    assert "bpf_timer_cb" in ps.functions
    assert "kthread" not in ps.functions and ("kthread", "hot generic frame") in ps.skipped
    stall = build_probe_set(btf, backtrace_functions(console), vcpus=4, include_backtrace=False)
    assert "bpf_timer_cb" not in stall.functions
    tables = DecodeTables.from_btf(btf)
    assert tables.dsq["SCX_DSQ_LOCAL"] == (1 << 63) | 2
    assert tables.enq["SCX_ENQ_WAKEUP"] == 1


def test_bad_dsq_repro_trace_shows_the_bad_id_then_the_exit():
    """Recorded with the final probe set (sched_ext path + the primary's backtrace)."""
    chain = chain_to_exit(decode_trace((DATA / "bad-dsq-repro-trace.txt").read_text()), 5)
    assert [render_hit(h, T).split(None, 3)[3] for h in chain] == [
        "scx_dsq_insert_commit    pid=119 comm=init dsq_id=0xbad0d5c slice=20ms vtime=0 enq_flags=0",
        "find_dsq_for_dispatch    cpu=0 dsq_id=0xbad0d5c tcpu=0",
        "__scx_exit               kind=SCX_EXIT_ERROR exit_code=0 exit_cpu=0 fmt=non-existent DSQ 0x%llx",
        "scx_vexit                kind=SCX_EXIT_ERROR exit_code=0 exit_cpu=0 fmt=non-existent DSQ 0x%llx",
        "sched_ext_exit           sched=ktstr kind=SCX_EXIT_ERROR",
    ]
