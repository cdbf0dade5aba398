"""bpf-progs.json (rundir/bpf_progs.py): a real agent's file reads back as written; the
guest wrote it, so damaged files and entries are skipped, never raised."""

from __future__ import annotations

import json

from support import DATA

from ktstr_vmm.rundir import bpf_progs

REAL = DATA / "gauntlet" / "scx_simple.bpf-progs.json"


def test_a_real_file_reads_with_type_names(tmp_path):
    (tmp_path / "bpf-progs.json").write_bytes(REAL.read_bytes())
    f = bpf_progs.read(tmp_path)
    assert f is not None and f.when == "scx_enabled" and f.error == ""
    assert [p.name for p in f.progs][-2:] == ["simple_init", "simple_exit"]
    assert f.progs[0].type == "tracing" and f.progs[1].type == "struct_ops"
    assert f.total_insns == sum(p["verified_insns"] for p in json.loads(REAL.read_text())["progs"])


def test_damaged_files_and_entries_are_skipped(tmp_path):
    assert bpf_progs.read(tmp_path) is None  # none written: the scheduler never enabled
    path = tmp_path / "bpf-progs.json"
    for text in ("{not json", "[]", '{"progs": 3}'):
        path.write_text(text)
        assert bpf_progs.read(tmp_path) is None
    path.write_text(json.dumps({"progs": [7, {"name": "ok", "verified_insns": 5, "type": 99},
                                          {"name": "bad", "verified_insns": "x"}],
                                "guest_ms": "soon"}))
    f = bpf_progs.read(tmp_path)
    assert [(p.name, p.type, p.verified_insns) for p in f.progs] == [("ok", "99", 5)]
    assert f.guest_ms == 0
