"""The `ktstr tui` command line: paths, --demo, exit codes; and the fixture store itself."""

from __future__ import annotations

import json

import pytest
from conftest import RUN_IDS

pytestmark = pytest.mark.tui


def test_missing_path_exits_2_with_one_line(capsys):
    from ktstr_cli.main import main

    assert main(["tui", "/nonexistent/run"]) == 2
    assert capsys.readouterr().err == (
        "ktstr: error: no such file or directory: /nonexistent/run\n")


def test_demo_without_demo_store_is_a_usage_error(monkeypatch, tmp_path, capsys):
    from ktstr_cli.main import main
    from ktstr_vmm import paths

    monkeypatch.setattr(paths, "repo_root", lambda: tmp_path)
    assert main(["tui", "--demo"]) == 2
    assert capsys.readouterr().err.startswith(f"ktstr: error: no demo store at {tmp_path}")


def test_spec_json_round_trip_of_fixture_is_a_real_runspec(runs):
    from ktstr_vmm.spec import RunSpec

    spec = RunSpec.from_json(json.loads((runs["rerun"] / "spec.json").read_text()))
    assert spec.parent == RUN_IDS["fail"] and spec.topology.notation == "1n2l2c2t"


def test_run_option_passes_the_rest_to_ktstr_run(tmp_path, monkeypatch):
    from ktstr_cli.commands.tui import resolve
    from ktstr_cli.main import build_parser

    monkeypatch.setenv("KTSTR_HOME", str(tmp_path))
    args = build_parser().parse_args(["tui", "--run", "-t", "tiny-1llc", "--duration", "2s"])
    assert args.run_args == ["-t", "tiny-1llc", "--duration", "2s"]
    assert resolve(args) == (tmp_path, None)


def test_a_store_path_opens_its_browser(runs):
    from ktstr_cli.commands.tui import resolve
    from ktstr_cli.main import build_parser

    root = runs["pass"].parent.parent
    assert resolve(build_parser().parse_args(["tui", str(root)])) == (root, None)
    assert resolve(build_parser().parse_args(["tui", str(runs["fail"])])) == (root, runs["fail"])


def test_section_body_drops_a_repeated_title_and_events_get_labels():
    from ktstr_tui.rundata import event_label
    from ktstr_tui.screens.result import section_body
    from ktstr_vmm.rundir.records import parse_event

    assert section_body("timeline", "--- timeline ---\n  + 0.0s boot\n") == "  + 0.0s boot"
    assert section_body("stats", "workers 4\n") == "workers 4"
    ev = parse_event({"t": 1.0, "kind": "warning", "text": "engine auto chose QEMU TCG"})
    assert event_label(ev) == "warning: engine auto chose QEMU TCG"
    assert parse_event({"kind": "x"}) is None


def test_demo_index_lives_in_the_cache_not_in_the_package(monkeypatch, tmp_path):
    """`ktstr tui --demo` must work from a read-only install: the demo store's SQLite
    index goes to $KTSTR_CACHE/demo-index/, and nothing is written into assets/."""
    from ktstr_cli.commands.tui import resolve
    from ktstr_cli.main import build_parser
    from ktstr_vmm import paths
    from ktstr_vmm.store.store import Store

    monkeypatch.setenv("KTSTR_CACHE", str(tmp_path))
    store, _ = resolve(build_parser().parse_args(["tui", "--demo"]))
    before = sorted(p.name for p in store.iterdir())
    index = paths.demo_index(store)
    index.parent.mkdir(parents=True)
    s = Store(store, index_path=index)
    assert {r.name for r in s.list_runs()} >= {"demo_error", "demo_stall", "demo_verifier"}
    s.close()
    assert index.is_file() and index.parent.parent == tmp_path
    assert sorted(p.name for p in store.iterdir()) == before
