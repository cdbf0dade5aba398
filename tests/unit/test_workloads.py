"""Workloads without a VM: the -w syntax, scenario files, the guest spec lines the agent
reads (checked with the agent's own C parser), benchmark output parsing on real outputs
recorded in a guest (tests/data/bench), --fail-on bounds, and the clear errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import support

from ktstr_vmm.errors import UsageError
from ktstr_vmm.evaluate.compare import bound_failures, compare, parse_fail_on, regressions
from ktstr_vmm.evaluate.measures import (
    bench_measure,
    family_measure,
    flatten,
    lines,
    measures,
    to_json,
)
from ktstr_vmm.guest import agent as agent_mod
from ktstr_vmm.guest.messages import BenchOutput, GroupMeasure
from ktstr_vmm.guest.spec import parse_guest_spec, render_guest_spec
from ktstr_vmm.scenario import parse_scenario
from ktstr_vmm.spec import RunSpec, parse_topology, parse_workload
from ktstr_vmm.workloads import FAMILIES, KINDS, describe

DATA = support.DATA / "bench"


def _spec(workload: str, **kw) -> RunSpec:
    return RunSpec(name="w", scheduler="scx_simple", topology=parse_topology("tiny-2llc"),
                   duration_s=3.0, workload=parse_workload(workload), **kw)


# --------------------------------------------------------------------------- -w syntax

@pytest.mark.parametrize("text", [
    "spin:4,pipe:2",
    "hackbench:groups=4,loops=200",
    "cyclictest:threads=4,interval=1ms",
    "stress-ng:cpu=2,switch=1",
    "futex:4,nice=5,cpus=0-1,cgroup=fg,weight=200,rt,policy=rr,prio=20,membw:2,size=8M,start=1s",
])
def test_workload_text_round_trips(text):
    groups = parse_workload(text)
    assert parse_workload(",".join(str(g) for g in groups)) == groups


def test_parameters_attach_to_the_group_before_them():
    g = parse_workload("hackbench:groups=4,loops=200,spin:2,nice=3")
    assert [(x.kind, x.count, x.params) for x in g] == [
        ("hackbench", 0, (("groups", "4"), ("loops", "200"))), ("spin", 2, (("nice", "3"),))]


@pytest.mark.parametrize("text,message", [
    ("hackbench:grups=4", "hackbench has no parameter 'grups'"),
    ("nice=3", "'nice=3' comes before any workload kind"),
    ("spinn:2", "unknown workload kind 'spinn' in 'spinn:2'"),
    ("spin:x", "bad worker count 'x' in workload 'spin:x'"),
    ("hackbench:2", "hackbench runs as one program, count 2 makes no sense"),
    ("stress-ng", "stress-ng needs at least one STRESSOR=INSTANCES"),
    ("spin,nice=40", "bad spin nice='40'"),
    ("cyclictest:interval=fast", "bad cyclictest interval='fast'"),
    ("futex:2,start=3s,stop=1s", "futex stop=1s is not after start=3s"),
    ("spin:2,cgroup=../x", "bad spin cgroup='../x'"),
])
def test_bad_workloads_are_one_line_errors(text, message):
    with pytest.raises(UsageError) as e:
        parse_workload(text)
    assert str(e.value) == message
    assert "\n" not in e.value.one_line()


def test_every_family_has_kinds_and_the_listing_names_them():
    text = describe()
    for fam in FAMILIES:
        assert f"{fam}:" in text
    for k in KINDS:
        assert f"  {k} " in text
    assert "groups=N" in text and "[Debian package rt-tests]" in text


# --------------------------------------------------------------------------- guest spec

def test_extended_groups_render_as_group_lines():
    spec = _spec("futex:3,nice=-5,cpus=0-1,cgroup=fg,weight=200,rt:1,interval=2ms,policy=rr,"
                 "hackbench:groups=2,loops=50,stop=2s")
    text = render_guest_spec(spec, "/usr/bin/scx_simple", [])
    assert "workload=" not in text
    assert [ln for ln in text.splitlines() if ln.startswith("group=")] == [
        "group=futex:4 nice=-5 cpus=0-1 cgroup=fg weight=200",   # pairs: 3 -> 4
        "group=rt:1 interval_us=2000 policy=rr",
        "group=bench:1 stop_ms=2000 name=hackbench timeout_ms=122000 -- /usr/bin/hackbench "
        "-g 2 -l 50 -f 20 -s 100",
    ]
    assert parse_guest_spec(text).workload == (("futex", 4), ("rt", 1), ("bench", 1))


def test_plain_groups_keep_the_old_workload_line():
    text = render_guest_spec(_spec("spin:2,pipe:2"), None, [])
    assert "workload=spin:2,pipe:2\n" in text and "group=" not in text


def test_a_benchmark_extends_the_watchdog():
    assert _spec("hackbench").timeout > _spec("spin").timeout + 100


SPEC_HARNESS = r"""
#include <stdio.h>
#include "spec.h"
#include "util.h"
int main(int argc, char **argv)
{
    size_t len;
    char *text = read_all(argv[1], 1 << 20, &len), err[256];
    struct spec s;

    if (spec_parse(text, &s, err, sizeof(err))) {
        printf("error: %s\n", err);
        return 0;
    }
    for (int i = 0; i < s.ngroups; i++) {
        struct group *g = &s.groups[i];
        printf("%s:%d nice=%d policy=%d prio=%d cpus=%s cgroup=%s weight=%d start=%llu "
               "stop=%llu kib=%llu interval=%llu", wkind_names[g->kind], g->count,
               g->has_nice ? g->nice : 99, g->policy, g->prio, g->cpus ? g->cpus : "-",
               g->cgroup ? g->cgroup : "-", g->weight, (unsigned long long)g->start_ms,
               (unsigned long long)g->stop_ms, (unsigned long long)g->kib,
               (unsigned long long)g->interval_us);
        for (int a = 0; g->argv[a]; a++)
            printf(" [%s]", g->argv[a]);
        printf("\n");
    }
    return 0;
}
"""


@pytest.fixture(scope="module")
def spec_harness(tmp_path_factory):
    cc = shutil.which("gcc")
    if not cc:
        pytest.skip("gcc is not installed")
    d = tmp_path_factory.mktemp("specharness")
    (d / "h.c").write_text(SPEC_HARNESS)
    guest = agent_mod.paths.native_dir() / "guest"
    exe = d / "h"
    subprocess.run([cc, "-O2", "-I", str(guest), "-o", str(exe), str(d / "h.c"),
                    str(guest / "spec.c"), str(guest / "util.c"), str(guest / "wire.c")],
                   check=True, timeout=120, capture_output=True)
    return exe


def _agent_reads(harness, tmp_path, text: str) -> list[str]:
    f = tmp_path / "spec"
    f.write_text(text)
    return subprocess.run([str(harness), str(f)], capture_output=True, text=True, timeout=60,
                          check=True).stdout.splitlines()


def test_the_agent_reads_what_the_host_renders(spec_harness, tmp_path):
    spec = _spec("futex:2,nice=-5,cpus=0-1,cgroup=fg,weight=200,membw:1,size=8M,start=1s,"
                 "rt:1,interval=2ms,policy=rr,prio=20,cyclictest:threads=2,stop=2s")
    out = _agent_reads(spec_harness, tmp_path, render_guest_spec(spec, None, []))
    assert out == [
        "futex:2 nice=-5 policy=-1 prio=0 cpus=0-1 cgroup=fg weight=200 start=0 stop=0 kib=0 "
        "interval=0",
        "membw:1 nice=99 policy=-1 prio=0 cpus=- cgroup=- weight=0 start=1000 stop=0 kib=8192 "
        "interval=0",
        "rt:1 nice=99 policy=2 prio=20 cpus=- cgroup=- weight=0 start=0 stop=0 kib=0 "
        "interval=2000",
        "bench:1 nice=99 policy=-1 prio=0 cpus=- cgroup=- weight=0 start=0 stop=2000 kib=0 "
        "interval=0 [/usr/bin/cyclictest] [-q] [-m] [-t] [2] [-i] [1000] [-p] [80] [-D] [2s] "
        "[-h] [100000] [--histfile=/dev/null] [--json=/tmp/cyclictest-3.json]",
    ]


def test_the_agent_refuses_a_bad_group_line(spec_harness, tmp_path):
    out = _agent_reads(spec_harness, tmp_path, "version=1\ngroup=spin:2 nice=40\n")
    assert out == ["error: group attribute nice=40 is out of range"]
    out = _agent_reads(spec_harness, tmp_path, "version=1\ngroup=bench:1 name=x\n")
    assert out == ["error: bench group without name= or '-- argv'"]


# --------------------------------------------------------------------------- scenarios

GOOD = """
name = "pressure"
[cgroups.fg]
weight = 200
cpuset = "0-1"
[[phase]]
name = "warm"
duration = "2s"
workloads = ["spin:2", "futex:2,cgroup=fg"]
[[phase]]
duration = "3s"
workloads = ["hackbench:groups=2,loops=50,cgroup=fg"]
"""


def test_a_scenario_compiles_to_windows_and_cgroup_attributes():
    sc = parse_scenario(GOOD, "s.toml")
    assert sc.name == "pressure" and sc.duration_s == 5.0
    assert sc.phases == (("warm", 0.0, 2.0), ("phase2", 2.0, 5.0))
    assert [str(g) for g in sc.workload] == [
        "spin:2,stop=2000ms",
        "futex:2,cgroup=fg,weight=200,cpuset=0-1,stop=2000ms",
        "hackbench:groups=2,loops=50,cgroup=fg,weight=200,cpuset=0-1,start=2000ms,stop=5000ms",
    ]


@pytest.mark.parametrize("text,message", [
    ("[[phase]\n", "scenario s.toml: not valid TOML: Expected ']]' at the end of an array "
                   "declaration (at line 1, column 8)"),
    ("phases = 1\n", "scenario s.toml: unknown key 'phases'"),
    ("name = 'x'\n", "scenario s.toml: no [[phase]] tables"),
    ("[[phase]]\nworkloads = ['spin']\n", "scenario s.toml: phase[1]: has no duration"),
    ("[[phase]]\nduration = 'soon'\nworkloads = ['spin']\n",
     "scenario s.toml: phase[1].duration: bad duration 'soon'"),
    ("[[phase]]\nduration = '1s'\nworkloads = 'spin'\n",
     "scenario s.toml: phase[1].workloads: must be a non-empty list of strings like \"spin:2\""),
    ("[[phase]]\nduration = '1s'\nworkloads = ['spin']\n[[phase]]\nduration = '1s'\n"
     "workloads = ['spin', 'hackbench:grups=2']\n",
     "scenario s.toml: phase[2].workloads[2]: hackbench has no parameter 'grups'"),
    ("[cgroups.fg]\nweight = 0\n[[phase]]\nduration = '1s'\nworkloads = ['spin']\n",
     "scenario s.toml: cgroups.fg.weight: bad spin weight='0'"),
    ("[cgroups.fg]\nweight = 5\n[[phase]]\nduration = '1s'\nworkloads = ['spin,cgroup=bg']\n",
     "scenario s.toml: phase[1].workloads[1]: cgroup 'bg' is not declared"),
    ("duration = '1s'\n[[phase]]\nduration = '2s'\nworkloads = ['spin']\n",
     "scenario s.toml: duration: 1000ms is shorter than the phases (2000ms)"),
])
def test_malformed_scenarios_name_the_field(text, message):
    with pytest.raises(UsageError) as e:
        parse_scenario(text, "s.toml")
    assert str(e.value) == message


def test_a_malformed_scenario_file_stops_ktstr_run_before_anything_boots(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text("[[phase]]\nduration = '2s'\nworkloads = ['futex:2,nice=99']\n")
    env = {**os.environ, "KTSTR_HOME": str(tmp_path / "store")}
    p = subprocess.run([sys.executable, "-m", "ktstr_cli", "run", "--scenario", str(f)],
                       capture_output=True, text=True, timeout=60, env=env)
    assert p.returncode == 2
    assert p.stderr.splitlines()[0].startswith(
        "ktstr: error: scenario bad.toml: phase[1].workloads[1]: bad futex nice='99'")
    assert not (tmp_path / "store" / "runs").exists() or not any((tmp_path / "store" / "runs").iterdir())


def test_a_missing_benchmark_binary_is_a_clear_error(tmp_path):
    env = {**os.environ, "KTSTR_HOME": str(tmp_path / "store"),
           "KTSTR_BENCH_DIR": str(tmp_path / "empty")}
    p = subprocess.run([sys.executable, "-m", "ktstr_cli", "run", "-w", "cyclictest:threads=2",
                        "-d", "1s"], capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        f"ktstr: error: benchmark cyclictest is not installed: {tmp_path}/empty/cyclictest is "
        "missing (install the Debian package rt-tests: make setup, or apt-get install "
        "rt-tests; or point KTSTR_BENCH_DIR at a directory holding cyclictest)"]


# --------------------------------------------------------------------------- parsing

def test_real_benchmark_outputs_parse_into_measures():
    hb = bench_measure(BenchOutput(0, "hackbench", 0, 1, (DATA / "hackbench.out").read_text()))
    ct = bench_measure(BenchOutput(1, "cyclictest", 0, 1, "", (DATA / "cyclictest.json").read_text()))
    sn = bench_measure(BenchOutput(2, "stress-ng", 0, 1, "", (DATA / "stress-ng.yaml").read_text()))
    assert hb.values == {"time_s": 5.717} and not hb.error
    assert set(ct.parts) == {"t0", "t1"}
    for t in ct.parts.values():
        assert 0 < t["min_us"] <= t["avg_us"] <= t["max_us"] and t["min_us"] <= t["p99_us"] <= t["max_us"]
    assert ct.values["max_us"] == max(t["max_us"] for t in ct.parts.values())
    assert set(sn.parts) == {"cpu", "switch"} and all(p["ops_s"] > 0 for p in sn.parts.values())
    out = lines([hb, ct, sn])
    assert out[0] == "  cg0 hackbench: time=5.717s"
    assert out[1].startswith("  cg1 cyclictest: min=") and out[2].startswith("    t0: min=")
    assert out[4].startswith("  cg2 stress-ng: ops=") and out[5].startswith("    cpu: ops=")


@pytest.mark.parametrize("b,error", [
    (BenchOutput(0, "hackbench", 127, 1, "ktstr-init: cannot execute /usr/bin/hackbench: No such file\n"),
     "exited 127: ktstr-init: cannot execute /usr/bin/hackbench: No such file"),
    (BenchOutput(0, "hackbench", 0, 1, "garbage"), "no 'Time:' line in its output"),
    (BenchOutput(0, "cyclictest", 0, 1, "", "{"), "its --json file is not JSON"),
    (BenchOutput(0, "cyclictest", 0, 1, "", '{"thread": {"0": {"cycles": "x"}}}'),
     "thread 0 has no cycles/min/avg/max"),
    (BenchOutput(0, "stress-ng", 0, 1, "", "metrics:\n    - stressor: cpu\n"),
     "no stressor metrics in its --yaml file"),
    (BenchOutput(0, "stress-ng", -1, 0, ""), "never ran"),
])
def test_bad_benchmark_output_is_that_benchmark_s_error(b, error):
    m = bench_measure(b)
    assert m.error == error and m.values == {}
    assert lines([m]) == [f"  cg0 {b.name}: error: {error}"]


def test_family_measures_have_their_units():
    futex = family_measure(GroupMeasure(2, "futex", 2, 100, 5000, 0, 2_000_000_000, 5000,
                                        40_000, 650_000, 900_000))
    membw = family_measure(GroupMeasure(3, "membw", 1, 10, 10, 50_000_000, 1_000_000_000))
    assert futex.values == {"wakeups_s": 2500.0, "avg_us": 40.0, "p99_us": 650.0, "max_us": 900.0}
    assert lines([futex, membw]) == ["  cg2 futex: wakeups=2500/s avg=40us p99=650us max=900us",
                                     "  cg3 membw: bw=50.0MB/s"]


# --------------------------------------------------------------------------- judgement

def _result(ms) -> dict:
    return {"stats": {"groups": [], "workers": [], "measures": to_json(ms)}}


CT = BenchOutput(0, "cyclictest", 0, 1, "", (DATA / "cyclictest.json").read_text())


def test_fail_on_bounds_name_the_number():
    r = _result(measures((), (CT,)))
    worst = flatten(r["stats"]["measures"])["cyclictest.max_us"]
    assert bound_failures(r, [parse_fail_on("cyclictest.max:>500us")]) == [
        f"cyclictest.max:>500us: cyclictest.max_us {worst:.0f}us > 500us"]
    assert bound_failures(r, [parse_fail_on("cyclictest.max:>10s")]) == []
    assert bound_failures(r, [parse_fail_on(f"cyclictest.max:>{worst / 1000 + 1:.0f}ms")]) == []
    assert bound_failures(r, [parse_fail_on("hackbench.time:>1s")]) == [
        "hackbench.time:>1s: hackbench.time is missing in this run"]


def test_compare_shows_measures_and_takes_bounds_and_changes():
    a = _result(measures((), (BenchOutput(0, "hackbench", 0, 1, "Time: 1.000\n"),)))
    b = _result(measures((), (BenchOutput(0, "hackbench", 0, 1, "Time: 1.500\n"),)))
    rows = [r for r in compare(a, b) if r.group == "measures"]
    assert [(r.field, r.a, r.b) for r in rows] == [("hackbench.time_s", "1 s", "1.5 s")]
    assert regressions(a, b, [parse_fail_on("hackbench.time:+20%")]) == [
        "hackbench.time:+20%: hackbench.time 1 -> 1.5 (+50.0%)"]
    assert regressions(a, b, [parse_fail_on("hackbench.time:>1.2s")]) == [
        "B: hackbench.time:>1.2s: hackbench.time_s 1.500s > 1.200s"]


@pytest.mark.parametrize("args,message", [
    (["-w", "spin", "--fail-on", "cyclictest.max:>500us"],
     "ktstr: error: --fail-on cyclictest.max:>500us: the workload has no cyclictest"),
    (["-w", "spin", "--fail-on", "cyclictest.max:+5%"],
     "ktstr: error: --fail-on cyclictest.max:+5%: a run has no B to compare with"),
    (["-w", "spin", "--fail-on", "cyclictest.max:>5parsecs"],
     "ktstr: error: bad --fail-on 'cyclictest.max:>5parsecs'"),
])
def test_run_refuses_bad_fail_on_before_booting(tmp_path, args, message):
    env = {**os.environ, "KTSTR_HOME": str(tmp_path / "store")}
    p = subprocess.run([sys.executable, "-m", "ktstr_cli", "run", *args], capture_output=True,
                       text=True, timeout=60, env=env)
    assert p.returncode == 2 and p.stderr.startswith(message), p.stderr


def test_ktstr_workloads_lists_kinds_as_json():
    p = subprocess.run([sys.executable, "-m", "ktstr_cli", "workloads", "--json"],
                       capture_output=True, text=True, timeout=60, check=True)
    d = json.loads(p.stdout)
    names = {k["name"]: k for k in d["kinds"]}
    assert set(names) == set(KINDS)
    assert names["hackbench"]["package"] == "rt-tests"
    assert [p["name"] for p in names["cyclictest"]["params"]] == ["threads", "interval", "priority"]


def test_a_scenario_sets_the_duration_unless_d_is_given(tmp_path):
    import argparse

    from ktstr_cli.commands.run import add_run_options, spec_from_args

    f = tmp_path / "s.toml"
    f.write_text(GOOD)
    p = argparse.ArgumentParser()
    add_run_options(p)
    assert spec_from_args(p.parse_args(["--scenario", str(f)])).duration_s == 5.0
    assert spec_from_args(p.parse_args(["--scenario", str(f), "-d", "8s"])).duration_s == 8.0
    with pytest.raises(UsageError) as e:
        spec_from_args(p.parse_args(["--scenario", str(f), "-d", "2s"]))
    assert str(e.value) == "--duration 2s is shorter than the scenario (5s of phases)"
    assert spec_from_args(p.parse_args(["--scenario", str(f)])).name == "pressure"


def test_a_scenario_declares_captures_and_temporal_assertions(tmp_path):
    """issue 16: assertions "declared on the command line or in the scenario file"."""
    import argparse

    from ktstr_cli.commands.run import add_run_options, spec_from_args

    f = tmp_path / "s.toml"
    f.write_text('capture_every = "1s"\ncapture_at = ["0s", "2s"]\n'  # top-level keys come
                 'assert = ["nondecreasing(bpf.vtime_now)", "always(monitor.nr_running <= 8)"]\n'
                 + GOOD)  # before the first table
    p = argparse.ArgumentParser()
    add_run_options(p)
    spec = spec_from_args(p.parse_args(["--scenario", str(f), "--assert",
                                        "eventually(bpf.nr_dispatched > 0)"]))
    assert spec.capture_every_ms == 1000 and spec.capture_at_ms == (0, 2000)
    assert spec.assertions == ("nondecreasing(bpf.vtime_now)", "always(monitor.nr_running <= 8)",
                               "eventually(bpf.nr_dispatched > 0)")
    over = spec_from_args(p.parse_args(["--scenario", str(f), "--capture-every", "500ms"]))
    assert over.capture_every_ms == 500  # the command line overrides the file
    f.write_text('assert = ["nondecreasing(bpf.vtime_now)", "sometimes(bpf.x)"]\n' + GOOD)
    with pytest.raises(UsageError) as e:
        spec_from_args(p.parse_args(["--scenario", str(f)]))
    assert e.value.message == ("scenario s.toml: assert[2]: 'sometimes(bpf.x)': unknown kind "
                               "'sometimes'")
    f.write_text('assert = "nondecreasing(bpf.vtime_now)"\n' + GOOD)
    with pytest.raises(UsageError) as e:
        spec_from_args(p.parse_args(["--scenario", str(f)]))
    assert e.value.message == ("scenario s.toml: assert: must be a list of assertions "
                               'like ["nondecreasing(bpf.vtime_now)"]')


def test_the_launcher_leaves_the_default_duration_to_a_scenario():
    from ktstr_tui.screens.launcher import run_args

    args = run_args({"scheduler": "scx_simple", "duration": "5s", "scenario": "s.toml"},
                    "auto", False, False)
    assert args == ["run", "--scheduler", "scx_simple", "--scenario", "s.toml"]
    assert "--duration" in run_args({"duration": "5s"}, "auto", False, False)


def test_the_timeline_names_a_benchmark():
    from ktstr_vmm.rundir.timeline import render_timeline

    text = render_timeline([{"t": 0.0, "kind": "phase", "phase": "booting"},
                            {"t": 9.5, "kind": "bench", "name": "hackbench", "group": 8,
                             "exit": 0, "wall_ms": 5717},
                            {"t": 9.6, "kind": "bench", "name": "cyclictest", "group": 9,
                             "exit": 127, "wall_ms": 3}])
    assert text.splitlines()[1:] == ["  +   9.5s  benchmark hackbench (cg8): ok, ran 5.7s",
                                     "  +   9.6s  benchmark cyclictest (cg9): exit 127, ran 0.0s"]
