"""`ktstr compare` on recorded real run directories (a passing scx_simple run on tiny-1llc
and its `ktstr rerun --topology 2n2l2c1t`, under QEMU TCG), and the pure comparison."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support import DATA as SUPPORT_DATA

from ktstr_vmm.errors import UsageError
from ktstr_vmm.evaluate.compare import compare, metrics, parse_fail_on, regressions, render

DATA = SUPPORT_DATA / "probes" / "compare"
PARENT = "20261125-181803-scx_simple-tiny-1llc-6c13"
CHILD = "20261125-181829-scx_simple-2n2l2c1t-ca92"
KTSTR = [sys.executable, "-m", "ktstr_cli"]


def _result(run_id: str) -> dict:
    return json.loads((DATA / run_id / "result.json").read_text())


@pytest.fixture
def recorded(store):
    for run_id in (PARENT, CHILD):
        shutil.copytree(DATA / run_id, store / "runs" / run_id)
    return store


def _compare(store: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*KTSTR, "compare", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "KTSTR_HOME": str(store)})


def test_a_run_against_itself_has_no_difference(recorded):
    p = _compare(recorded, "6c13", "6c13")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[-1] == "no differences"
    assert not [ln for ln in p.stdout.splitlines() if ln.startswith("*")]


def test_a_rerun_against_its_parent_shows_the_topology_change(recorded):
    p = _compare(recorded, PARENT, CHILD)
    assert p.returncode == 0, p.stderr
    marked = {ln.split()[1]: ln.split()[2:] for ln in p.stdout.splitlines() if ln.startswith("* ")}
    assert marked["topology.requested"] == ["1n1l4c1t", "2n2l2c1t"]
    assert marked["topology.observed"] == ["1n1l4c1t", "2n2l2c1t"]
    assert marked["run.parent"] == ["-", PARENT]
    assert marked["run.kind"] == ["run", "rerun"]
    assert "  verdict.verdict        pass" in p.stdout
    assert "* stats.migrations       82" in p.stdout


def test_fail_on_regression_exits_1_and_names_it(recorded):
    p = _compare(recorded, PARENT, CHILD, "--fail-on", "iterations:-10%", "--fail-on", "migrations:+20%")
    assert p.returncode == 1
    assert p.stdout.splitlines()[-1] == "REGRESSION iterations:-10%: iterations 1318599 -> 404630 (-69.3%)"
    p = _compare(recorded, PARENT, CHILD, "--fail-on", "migrations:+20%", "--json")
    assert p.returncode == 0
    out = json.loads(p.stdout)
    assert out["regressions"] == [] and out["differences"] == 17
    row = next(r for r in out["rows"] if r["field"] == "observed")
    assert row == {"group": "topology", "field": "observed", "a": "1n1l4c1t", "b": "2n2l2c1t",
                   "delta": "", "differs": True}
    gap = next(r for r in out["rows"] if r["group"] == "stats" and r["field"] == "gap")
    assert (gap["a"], gap["b"], gap["delta"]) == ("82 ms", "472 ms", "+390 ms (+475.6%)")


def test_numbers_show_units_and_the_change(recorded):
    p = _compare(recorded, PARENT, CHILD)
    line = next(ln for ln in p.stdout.splitlines() if ln.startswith("* stats.gap "))
    assert line.split()[-5:] == ["472", "ms", "+390", "ms", "(+475.6%)"]
    assert p.stdout.splitlines()[0].split() == ["FIELD", "A", "B", "CHANGE"]


def test_fail_on_a_missing_or_unknown_field_is_a_usage_error_not_a_regression(recorded):
    """A CI gate on data the runs do not have must fail as a wrong gate (exit 2, the field
    named), never as a regression (exit 1)."""
    p = _compare(recorded, PARENT, CHILD, "--fail-on", "monitor.max_imbalance:+10%")
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.splitlines()[0].startswith(
        "ktstr: error: --fail-on monitor.max_imbalance:+10%: unknown field "
        "'monitor.max_imbalance' (neither run has it) (fields: workers, cpus, migrations")
    assert "REGRESSION" not in p.stdout + p.stderr
    broken = recorded / "runs" / CHILD / "result.json"
    doc = json.loads(broken.read_text())
    doc["stats"] = None
    broken.write_text(json.dumps(doc))
    p = _compare(recorded, PARENT, CHILD, "--fail-on", "migrations:+20%")
    assert p.returncode == 2
    assert p.stderr.splitlines()[0].startswith(
        f"ktstr: error: --fail-on migrations:+20%: run B ({CHILD}) has no value for 'migrations'")


def test_bad_fail_on_and_missing_run_are_usage_errors(recorded):
    p = _compare(recorded, PARENT, CHILD, "--fail-on", "speed:+5%")
    assert p.returncode == 2 and p.stderr.startswith("ktstr: error: unknown metric 'speed' in --fail-on")
    p = _compare(recorded, PARENT, "nosuch")
    assert p.returncode == 2
    assert p.stderr.splitlines()[0].startswith("ktstr: error: no run 'nosuch' in ")


@pytest.mark.parametrize("text", ["migrations", "migrations:20%", "migrations:+x%", ":+1", ""])
def test_parse_fail_on_refuses(text):
    with pytest.raises(UsageError):
        parse_fail_on(text)


def test_metrics_and_regressions_pure():
    a, b = _result(PARENT), _result(CHILD)
    m = metrics(a)
    assert (m["workers"], m["cpus"], m["migrations"], m["gap"]) == (4.0, 4.0, 82.0, 82.0)
    assert regressions(a, b, [parse_fail_on("gap:+50")]) == ["gap:+50: gap 82 ms -> 472 ms (+390)"]
    assert regressions(a, a, [parse_fail_on("gap:+0")]) == []
    missing = {"verdict": "fail", "reason": "guest crashed: x", "run_id": "r2"}
    with pytest.raises(UsageError, match=r"run B \(r2\) has no value for 'migrations'"):
        regressions(a, missing, [parse_fail_on("migrations:+1%")])
    rows = compare(a, missing)
    assert next(r for r in rows if r.field == "first failure").b == "guest crashed: x"
    assert render(rows).splitlines()[0].startswith("  FIELD")


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                     lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
                     max_leaves=12)
_keys = st.sampled_from(["verdict", "reason", "stats", "timings", "topology", "monitor",
                         "sections", "kernel", "sched_args", "groups", "workers", "summary",
                         "cpus", "migrations", "index", "expected_failure"])


@given(st.dictionaries(_keys, _json, max_size=8), st.dictionaries(_keys, _json, max_size=8))
def test_compare_never_raises_on_damaged_results(a, b):
    rows = compare(a, b)
    render(rows)
    try:
        regressions(a, b, [parse_fail_on("migrations:+20%"), parse_fail_on("monitor.stuck_count:+1")])
    except UsageError:
        pass  # a gate on data the runs lack


_group = st.dictionaries(st.sampled_from(["index", "kind", "workers", "cpus", "spread", "max_gap_ms",
                                          "migrations", "iterations"]), _json, max_size=8)
_stats = st.fixed_dictionaries({}, optional={
    "groups": st.one_of(_json, st.lists(st.one_of(_group, _json), max_size=3)),
    "workers": st.one_of(_json, st.lists(st.dictionaries(st.sampled_from(["cpus", "migrations"]), _json), max_size=3)),
    "duration_ms": _json})


@given(_stats, _stats, _json)
def test_compare_never_raises_on_damaged_stats(sa, sb, mon):
    a, b = {"stats": sa, "monitor": mon}, {"stats": sb, "monitor": {"summary": mon}}
    render(compare(a, b))
    try:
        regressions(a, b, [parse_fail_on("spread:+1%"), parse_fail_on("gap:-3")])
    except UsageError:
        pass  # a gate on data the runs lack


@pytest.mark.parametrize("argv", [["runs"], ["show", "6c13"], ["compare", "6c13", "ca92"]])
def test_read_commands_take_store(recorded, tmp_path, argv):
    """`--store DIR` reads another store than $KTSTR_HOME's."""
    p = subprocess.run([*KTSTR, *argv[:1], "--store", str(recorded), *argv[1:]],
                       capture_output=True, text=True, timeout=60,
                       env={**os.environ, "KTSTR_HOME": str(tmp_path / "elsewhere")})
    assert p.returncode == 0, p.stderr
    assert "6c13" in p.stdout


def test_latency_from_the_trace_is_compared_and_gated(recorded, tmp_path):
    """result.json's "latency" block (latency.summary_json of each run's trace): a row group
    in the comparison and latency.* metrics for --fail-on."""
    from ktstr_vmm.trace.files import Trace, build_index
    from ktstr_vmm.trace.latency import analyse, summary_json

    run = tmp_path / "t"
    shutil.copytree(SUPPORT_DATA / "trace_scx_simple", run)
    build_index(run)
    t = Trace.open(run)
    whole, part = analyse(t), analyse(t, t.index["first_ns"], t.index["first_ns"] + 200_000_000)
    t.close()
    la, lb = summary_json(part), summary_json(whole)
    assert lb["wakeup_max_ms"] > la["wakeup_max_ms"] > 0
    for run_id, lat in ((PARENT, la), (CHILD, lb)):
        p = recorded / "runs" / run_id / "result.json"
        p.write_text(json.dumps({**json.loads(p.read_text()), "latency": lat}))
    p = _compare(recorded, PARENT, CHILD, "--fail-on", "latency.wakeup_max_ms:+10%")
    assert p.returncode == 1, p.stderr
    assert "* latency.wakeup_max" in p.stdout
    line = next(ln for ln in p.stdout.splitlines() if ln.startswith("REGRESSION"))
    assert line.startswith(f"REGRESSION latency.wakeup_max_ms:+10%: latency.wakeup_max_ms "
                           f"{la['wakeup_max_ms']:.1f} ms -> {lb['wakeup_max_ms']:.1f} ms (+")
    ok = _compare(recorded, CHILD, PARENT, "--fail-on", "latency.wakeup_max_ms:+10%")
    assert ok.returncode == 0, ok.stdout
    bad = _compare(recorded, PARENT, CHILD, "--fail-on", "latency.nope_ms:+1%")
    assert bad.returncode == 2 and "unknown field 'latency.nope_ms'" in bad.stderr
