"""The failure dump as a story, from the demo store's real dumps (a stall caught by the
kernel's watchdog and an injected scx_bpf_error, both read from the frozen guest)."""

from __future__ import annotations

import json

from support.stored_outcome import demo_run

from ktstr_vmm.rundir.dumpstory import Task, story


def _dump(label: str, repro: bool = False) -> tuple[dict, str]:
    run = demo_run(label)
    name = f"demo_{label}{'.repro' if repro else ''}.failure-dump.json"
    result = json.loads((run / "result.json").read_text())
    return json.loads((run / name).read_text()), result["sections"].get("sched_ext dump", "")


def test_stall_story_names_the_stalled_task_the_longest_wait_and_the_drained_queues():
    dump, scx = _dump("stall")
    s = story(dump, sched_ext_dump=scx, globals_last_t=4.0)
    lines = s.summary_lines()
    assert lines[:3] == [
        "exit      SCX_EXIT_ERROR_STALL (1026)  runnable task stall: spin-3[120] failed to run "
        "for 3.544s",
        "trigger   kworker/u16:0[12] on CPU 0",
        "stalled   spin-3[120] waited 3576 ms on CPU 0, queued in bypass cpu 0",
    ]
    drained = next(n for n in s.notes if n.startswith("the kernel's disable path"))
    assert "(bypass_depth=1) and moved every runnable task to the per-CPU bypass queues " \
           "(3 tasks there)" in drained
    assert "user 0x0, user 0x1 read empty although used (seq > 0)" in drained
    assert any("the live BPF globals were last read at 4.0 s, before the exit" in n
               for n in s.notes)


def test_one_row_per_cpu_with_current_task_and_longest_waiter():
    dump, _ = _dump("stall")
    rows = {c.cpu: c for c in story(dump).cpus}
    assert sorted(rows) == [0, 1, 2, 3]
    assert (rows[2].current, rows[2].current_class, rows[2].rq_nr_running, rows[2].local_dsq) \
        == ("init[1]", "rt", 3, 0)
    assert rows[2].longest is not None and rows[2].longest.label == "spin-0[117]"
    assert rows[2].longest.waited == "3560 ms"
    assert rows[1].longest is None and rows[1].current == "spin-1[118]"


def test_dsqs_list_their_tasks():
    dump, _ = _dump("stall")
    q = {d.name: d for d in story(dump).dsqs}
    assert [t.label for t in q["bypass cpu 2"].tasks if isinstance(t, Task)] == \
        ["spin-0[117]", "scx_ktstr[113]"]
    assert q["local cpu 0"].dsq_id == "SCX_DSQ_LOCAL" and q["user 0x0"].dsq_id == "0x0"


def test_error_story_and_placeholder():
    dump, scx = _dump("error")
    s = story(dump, sched_ext_dump=scx)
    # this capture could not read exit_info's reason: the kind names it
    assert s.summary_lines()[:2] == ["exit      SCX_EXIT_ERROR_BPF (1025)  scx_bpf_error: "
                                     "scx_ktstr.bpf.c:114: scx_ktstr: injected error after "
                                     "1500ms (--error-after)",
                                     "trigger   spin-1[121] on CPU 0"]
    assert s.stalled is None and s.longest is None
    ph, _ = _dump("verifier")
    assert story(ph).summary_lines()[0].startswith(
        "no scheduler state was captured: test failed at stage `init started")


def test_a_damaged_dump_tells_what_it_can():
    s = story({"rq_scx_states": [{"cpu": "x"}, 3, {"cpu": 1}], "dsq_states": [None, {"id": "?"}],
               "task_enrichments": [{"pid": None}], "scx_sched_state": []})
    assert [c.cpu for c in s.cpus] == [1] and [d.name for d in s.dsqs] == ["?"]
    assert s.summary_lines()[0].startswith("note      run queues")


def test_ktstr_show_tells_the_story_first_and_names_the_exit_kind(capsys):
    from ktstr_cli.main import main

    assert main(["show", str(demo_run("stall") / "demo_stall.failure-dump.json")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2] == ("exit      SCX_EXIT_ERROR_STALL (1026)  runnable task stall: spin-3[120] "
                      "failed to run for 3.544s")
    assert "  2    init[1]               rt     2    3   0    spin-0[117] 3560 ms" in out
    assert any("exit_kind=1026 (SCX_EXIT_ERROR_STALL)" in ln for ln in out)
