"""`ktstr trace` on a recorded real trace (tests/data/trace_scx_simple), as a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[2] / "data" / "trace_scx_simple"
KTSTR = [sys.executable, "-m", "ktstr_cli"]


def ktstr(*args: str, home: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*KTSTR, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "KTSTR_HOME": str(home)})


@pytest.fixture
def run(tmp_path):
    shutil.copytree(DATA, tmp_path / "run")
    return tmp_path / "run"


def test_summary_text_and_json(run, tmp_path):
    p = ktstr("trace", str(run), "--tasks", "3", home=tmp_path)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith("window ") and lines[1].startswith("wakeup latency  p50 ")
    assert any(ln.startswith("... ") and ln.endswith("more tasks (--tasks N lists more)")
               for ln in lines)
    j = ktstr("trace", str(run), "--json", home=tmp_path)
    d = json.loads(j.stdout)
    assert d["wakeup"]["n"] > 100 and {c["cpu"] for c in d["cpus"]} == {0, 1}
    assert d["worst"][0]["ns"] == d["runnable"]["max_ns"]


def test_window_narrows_the_summary(run, tmp_path):
    whole = json.loads(ktstr("trace", str(run), "--json", home=tmp_path).stdout)
    t0 = whole["window_ns"][0]
    part = json.loads(ktstr("trace", str(run), "--json", "--from", f"{t0 / 1e9:.3f}s",
                            "--to", f"{t0 / 1e9 + 0.1:.3f}s", home=tmp_path).stdout)
    assert 0 < part["events"] < whole["events"]
    assert part["window_ns"][1] - part["window_ns"][0] <= 100_000_000 + 1_000_000


def test_perfetto_file_is_written(run, tmp_path):
    out = tmp_path / "x" / "run.pftrace"
    p = ktstr("trace", str(run), "--perfetto", str(out), home=tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("wrote ") and "events to" in p.stdout and out.stat().st_size > 10_000
    assert not [f for f in out.parent.iterdir() if f.name.startswith(".")]  # no temp left


def test_a_run_without_a_trace_is_a_usage_error(tmp_path):
    (tmp_path / "run").mkdir()
    p = ktstr("trace", str(tmp_path / "run"), home=tmp_path)
    assert p.returncode == 2
    assert p.stderr.startswith("ktstr: error: run run has no scheduling trace")


def test_a_damaged_index_says_how_to_rebuild_it(run, tmp_path):
    (run / "trace" / "index.json").write_text("{not json")
    p = ktstr("trace", str(run), home=tmp_path)
    assert p.returncode == 2
    assert "its index is damaged: delete" in p.stderr and "trace/index.json" in p.stderr
