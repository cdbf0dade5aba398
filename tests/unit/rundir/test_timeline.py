import json

from support import REPO

from ktstr_vmm.rundir.timeline import read_events, render_timeline

DEMO = REPO / "assets" / "demo-store" / "runs"


def test_timeline_of_a_real_failed_run_lines_up_attach_and_failure():
    run = next(DEMO.glob("*demo_error*"))
    text = render_timeline(read_events(run / "events.jsonl"), "timeline header")
    lines = text.splitlines()
    assert lines[0] == "timeline header"
    assert lines[1].endswith("0.0s  boot")
    labels = [ln.split("s  ", 1)[1] for ln in lines[1:]]
    order = [next(i for i, lab in enumerate(labels) if lab.startswith(p)) for p in
             ("boot", "guest ready", "scheduler started", "sched_ext enabled (ktstr)",
              "workload started", "VM exit: poweroff")]
    assert order == sorted(order)
    assert any('disabled (scx_bpf_error)' in lab for lab in labels)


def test_bad_lines_are_skipped(tmp_path):
    p = tmp_path / "events.jsonl"
    p.write_text('{"t": 1, "kind": "phase", "phase": "booting"}\nnot json\n{"t": "x"}\n'
                 + json.dumps({"t": 3.5, "kind": "watchdog", "timeout_s": 2}) + "\n")
    assert render_timeline(read_events(p)) == ("  +   0.0s  boot\n"
                                                "  +   2.5s  host watchdog fired after 2s")


def test_no_boot_no_timeline():
    assert render_timeline([{"t": 1, "kind": "exit", "code": 0, "reason": "ok"}]) == ""
