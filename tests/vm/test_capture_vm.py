"""Periodic capture and temporal assertions on a real guest: scx_simple under the real
kernel in QEMU, driven through the CLI as a user does (--json, an isolated store)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.vm, pytest.mark.slow]

KTSTR = [sys.executable, "-m", "ktstr_cli"]


def ktstr(home: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*KTSTR, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "KTSTR_HOME": str(home)})


def test_capture_every_second_of_a_five_second_run_gives_five_tagged_captures(
        tmp_path, kernel, schedulers):
    p = ktstr(tmp_path, "run", "--json", "-s", "scx_simple", "-t", "1n1l2c1t", "-d", "5s",
              "--no-auto-repro", "--capture-every", "1s",
              "--assert", "nondecreasing(bpf.vtime_now)",
              "--assert", "always(scx.nr_running <= 8)",
              "--assert", "at_most(bpf.vtime_now, 0)")
    r = json.loads(p.stdout)
    run_dir = Path(r["run_dir"])
    caps = r["captures"]
    assert (caps["target"], caps["fired"]) == (5, 5), caps
    tags = [c["tag"] for c in caps["items"]]
    assert tags == [f"periodic_{i:03d}" for i in range(5)]
    assert [c["at_ms"] for c in caps["items"]] == [0, 1000, 2000, 3000, 4000]
    elapsed = [c["elapsed_ms"] for c in caps["items"]]
    assert elapsed == sorted(elapsed)
    vtimes, timeline = [], []
    for c in caps["items"]:
        dump = json.loads((run_dir / c["file"]).read_text())
        timeline += [t["elapsed_ms"] for t in dump.get("event_counter_timeline", ())]
        bss = next(m for m in dump["maps"] if m["name"].endswith(".bss"))
        vtimes.append(bss["value"]["vtime_now"])
        assert len(dump["rq_scx_states"]) == 2 and c["frozen_ms"] > 0
    assert vtimes == sorted(vtimes) and vtimes[-1] > 0
    # each capture carries the event counters since the previous one: no sample twice
    assert timeline == sorted(set(timeline)) and timeline
    index = [json.loads(line) for line in (run_dir / "captures.jsonl").read_text().splitlines()]
    assert index == caps["items"]
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert [e["tag"] for e in events if e.get("kind") == "capture"] == tags

    # two assertions hold, the third is violated at every capture and fails the run
    assert [t["verdict"] for t in r["temporal"]] == ["pass", "pass", "fail"]
    assert p.returncode == 1 and r["verdict"] == "fail"
    msg = r["message"]
    assert "\n\n--- periodic samples ---\nfired 5/5 periodic snapshots (100% coverage)\n\n" in msg
    section = msg.split("--- temporal assertions ---\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert section[0] == "5 temporal assertion violation(s):"
    for i, line in enumerate(section[1:]):
        assert line.startswith(f"  bpf.vtime_now (each.at_most 0): sample periodic_{i:03d} "
                               f"(+{elapsed[i]}ms): value {vtimes[i]}")
    assert msg.index("--- periodic samples ---") < msg.index("--- temporal assertions ---") \
        < msg.index("--- scheduler log ---")


def test_bad_capture_and_assert_options_are_refused_before_anything_runs(tmp_path):
    for args, error in [
        (("--capture-at", "9s"), "--capture-at 9000ms is not inside the workload (0 to 5000ms, "
                                 "--duration)"),
        (("--assert", "rate_within(bpf.x, 1)"), "--assert 'rate_within(bpf.x, 1)': rate_within "
                                                "takes rate_within(FIELD, LO, HI), got 2 "
                                                "arguments"),
        (("--assert", "nondecreasing(bpf.vtime_now)"),
         "--assert 'nondecreasing(bpf.vtime_now)' reads periodic captures, but none are planned"),
    ]:
        p = ktstr(tmp_path, "run", "-s", "scx_simple", "-d", "5s", *args)
        assert p.returncode == 2, p.stderr
        assert error in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
