"""Workloads in a real guest: one scenario run on tiny-2llc (two LLCs) under scx_simple
carries a workload of every family and the three Debian benchmarks (the suite runs on two
cores: one richer VM instead of many), and a --fail-on bound that must fail the run with
the number named. Numbers are asserted plausible (present, non-zero, in their units),
never against timings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.vm, pytest.mark.slow]

KTSTR = [sys.executable, "-m", "ktstr_cli"]

SCENARIO = """
name = "families"

[cgroups.fg]
weight = 400
cpuset = "0-1"

[[phase]]
name = "cpu-wakeup"
duration = "2s"
workloads = [
  "spin:1",
  "futex:2,cgroup=fg",
  "fanout:3,fan_out=2",
  "fanin:3,fan_out=2,interval=2ms",
]

[[phase]]
name = "churn-rt-memory-irq"
duration = "2s"
workloads = [
  "forkexec:1",
  "rt:1,interval=2ms",
  "pagefault:1,size=1M",
  "membw:1,size=1M",
  "timer:1,interval=2ms",
  "io:1,size=256K,nice=5",
]

[[phase]]
name = "rt-tests"
duration = "3s"
workloads = [
  "hackbench:groups=2,loops=20",
  "cyclictest:threads=2,interval=2ms",
]

[[phase]]
name = "stress-ng"
duration = "3s"
workloads = ["stress-ng:cpu=1,switch=1"]
"""

FAMILY_MEASURE = {  # kind -> the measure it must report (non-zero)
    "spin": "iter_s", "futex": "wakeups_s", "fanout": "wakeups_s",
    "fanin": "wakeups_s", "forkexec": "execs_s", "rt": "wakeups_s",
    "pagefault": "faults_s", "membw": "mb_s", "timer": "expiries_s", "io": "mb_s",
}
LATENCY = ("futex", "fanout", "fanin", "rt", "timer")


@pytest.fixture(scope="module")
def families_run(tmp_path_factory, kernel, schedulers):
    d = tmp_path_factory.mktemp("wl")
    (d / "families.toml").write_text(SCENARIO)
    env = {**os.environ, "KTSTR_HOME": str(d / "store")}
    p = subprocess.run([*KTSTR, "run", "--json", "--scheduler", "scx_simple", "--topology",
                        "tiny-2llc", "--scenario", str(d / "families.toml"),
                        "--fail-on", "cyclictest.max:>1us"],
                       capture_output=True, text=True, timeout=900, env=env)
    result = json.loads(p.stdout) if p.stdout.strip() else {}
    return p.returncode, result, p.stderr


def _measures(result: dict) -> dict[str, dict]:
    return {m["name"]: m for m in result["stats"]["measures"]}


def test_the_bound_fails_the_run_with_the_number_named(families_run):
    code, r, err = families_run
    assert code == 1, (err, r.get("message"))
    assert r["verdict"] == "fail"
    worst = _measures(r)["cyclictest"]["values"]["max_us"]
    assert r["reason"] == f"--fail-on cyclictest.max:>1us: cyclictest.max_us {worst:.0f}us > 1us"
    assert r["message"].startswith("ktstr_test 'families' [topo=1n2l2c1t] failed:\n"
                                   "  cyclictest.max:>1us: cyclictest.max_us ")


def test_every_family_reports_its_own_measure(families_run):
    _, r, _ = families_run
    ms = _measures(r)
    for kind, key in FAMILY_MEASURE.items():
        m = ms[kind]
        assert m["values"][key] > 0, (kind, m)
        assert "error" not in m, m
    for kind in LATENCY:
        v = ms[kind]["values"]
        assert 0 <= v["avg_us"] <= v["max_us"] and 0 < v["p99_us"] <= v["max_us"], (kind, v)


def test_each_debian_benchmark_is_parsed(families_run):
    _, r, _ = families_run
    ms = _measures(r)
    assert 0 < ms["hackbench"]["values"]["time_s"] < 600
    ct = ms["cyclictest"]
    assert set(ct["parts"]) == {"t0", "t1"}
    for t in ct["parts"].values():
        assert 0 < t["min_us"] <= t["avg_us"] <= t["max_us"] and t["cycles"] > 0
        assert t["min_us"] <= t["p99_us"] <= t["max_us"]
    sn = ms["stress-ng"]
    assert set(sn["parts"]) == {"cpu", "switch"}
    assert all(p["ops_s"] > 0 and p["bogo_ops"] > 0 for p in sn["parts"].values())
    run_dir = Path(r["run_dir"])
    assert (run_dir / "bench" / "cg10-hackbench.txt").read_text().rstrip().endswith(
        f"Time: {ms['hackbench']['values']['time_s']:.3f}")


def test_stats_section_keeps_the_seed_shape_and_adds_measure_lines(families_run):
    _, r, _ = families_run
    stats = r["sections"]["stats"].splitlines()
    assert stats[0] == r["stats"]["summary"]
    n = len(r["stats"]["groups"])
    assert all(stats[i].startswith(f"  cg{i - 1}: workers=") for i in range(1, n + 1))
    assert stats[n + 1:] == r["stats"]["measure_lines"]
    assert stats[n + 1].startswith("  cg0 spin: iter=")
    assert any(line.startswith("  cg10 hackbench: time=") for line in stats)
    assert "--- stats ---\n" + r["sections"]["stats"] in r["message"]


def test_cgroup_attributes_and_phases_reach_the_guest(families_run):
    _, r, _ = families_run
    futex = [w for w in r["stats"]["workers"] if w["kind"] == "futex"]
    assert len(futex) == 2 and all(w["cgroup"] == "/fg" for w in futex)
    assert all(set(w["cpus"]) <= {0, 1} for w in futex)  # cpuset.cpus 0-1
    spec = (Path(r["run_dir"]) / "guest-spec.txt").read_text()
    assert "group=futex:2 cgroup=fg weight=400 cpuset=0-1 stop_ms=2000\n" in spec
    assert "group=forkexec:1 start_ms=2000 stop_ms=4000\n" in spec
    assert "group=bench:1 start_ms=4000 stop_ms=7000 name=hackbench" in spec


def test_show_prints_the_measures(families_run):
    _, r, _ = families_run
    env = {**os.environ, "KTSTR_HOME": str(Path(r["run_dir"]).parents[1])}
    p = subprocess.run([*KTSTR, "show", r["run_id"]], capture_output=True, text=True,
                       timeout=60, env=env, check=True)
    assert "measures  the workloads' own numbers (ktstr workloads):\n" in p.stdout
    for line in r["stats"]["measure_lines"]:
        assert line in p.stdout
