"""Auto-repro, `ktstr repro`, `ktstr rerun` and `ktstr compare` end to end: real kernel,
real schedulers (scx_ktstr's fault injection, scx_qmap's verifier reject), QEMU (TCG here).

Each primary/repro/rerun is a VM boot (~30-75 s under TCG on a loaded 2-core machine); the
tests chain several steps on the same runs to keep the count of boots small (7 in all).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ktstr_vmm.repro.auto import NO_PROBE_DATA

pytestmark = [pytest.mark.vm, pytest.mark.slow]

KTSTR = [sys.executable, "-m", "ktstr_cli"]


def ktstr(store: Path, *args: str, timeout: float = 600) -> tuple[int, dict, str]:
    p = subprocess.run([*KTSTR, *args], capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, "KTSTR_HOME": str(store)})
    try:
        out = json.loads(p.stdout) if p.stdout.strip().startswith("{") else {}
    except ValueError:
        out = {}
    return p.returncode, out, p.stdout + p.stderr


@pytest.fixture
def run_store(tmp_path, kernel, schedulers):
    root = tmp_path / "store"
    root.mkdir()
    return root


def _chain(section: str) -> list[str]:
    lines = section.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("--- probe chain ("))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start + 1:end]


def test_error_after_no_auto_repro_then_repro_then_rerun_and_compare(run_store):
    # 1. the primary, recorded without auto-repro: no section, no repro directory
    code, r, out = ktstr(run_store, "run", "--json", "--scheduler", "scx_ktstr", "--sched-args",
                         "--error-after 1500", "--topology", "tiny-1llc", "--duration", "4s",
                         "--no-auto-repro")
    assert code == 1, out
    assert r["verdict"] == "fail" and "auto-repro" not in r["sections"]
    run_id, run_dir = r["run_id"], Path(r["run_dir"])
    assert not (run_dir / "repro").exists()

    # 2. `ktstr repro` adds the section later: reproduced, decoded chain ending at the exit
    code, r2, out = ktstr(run_store, "repro", run_id, "--json")
    assert code == 0, out
    section = r2["sections"]["auto-repro"]
    assert section.splitlines()[0] == (
        "reproduced: the repro VM failed the same way (SCX_EXIT_ERROR_BPF: scx_ktstr.bpf.c:114: "
        "scx_ktstr: injected error after 1500ms (--error-after))")
    assert r2["message"].endswith(f"\n\n--- auto-repro ---\n{section}")
    assert json.loads((run_dir / "result.json").read_text())["sections"]["auto-repro"] == section
    chain = _chain(section)
    assert chain[-1].split()[3:] == ["sched_ext_exit", "sched=ktstr", "kind=SCX_EXIT_ERROR_BPF"]
    assert any(" scx_bpf_error_bstr " in ln and "fmt=scx_ktstr.bpf.c:114: scx_ktstr: injected error"
               in ln for ln in chain)
    assert any("dsq_id=SCX_DSQ_LOCAL" in ln or "dsq_id=0x0" in ln for ln in chain)
    assert "\n--- repro console ---\n" in section and NO_PROBE_DATA not in section
    repro_spec = json.loads((run_dir / "repro" / "spec.json").read_text())
    assert (repro_spec["kind"], repro_spec["parent"], repro_spec["auto_repro"]) == ("repro", run_id, False)
    assert ">events/sched_ext/sched_ext_exit/trigger traceoff" in repro_spec["probes"]
    assert (run_dir / "scx_ktstr.repro.failure-dump.json").is_file()
    assert (run_dir / "repro" / "trace.txt").stat().st_size > 0

    # 3. a rerun on another topology is linked to its parent and observes that topology
    code, child, out = ktstr(run_store, "rerun", run_id, "--topology", "2n2l2c1t", "--json")
    assert code == 1, out  # the same injected error
    assert (child["parent"], child["kind"]) == (run_id, "rerun")
    assert child["topology"]["observed"] == "2n2l2c1t"
    child_spec = json.loads((Path(child["run_dir"]) / "spec.json").read_text())
    assert (child_spec["parent"], child_spec["kind"], child_spec["topology"]) == (run_id, "rerun", "2n2l2c1t")
    assert child_spec["sched_args"] == ["--error-after", "1500"]

    # 4. compare: the topology change is marked
    p = subprocess.run([*KTSTR, "compare", run_id, child["run_id"]], capture_output=True, text=True,
                       timeout=60, env={**os.environ, "KTSTR_HOME": str(run_store)})
    assert p.returncode == 0, p.stderr
    assert "* topology.observed      1n1l4c1t" in p.stdout and "2n2l2c1t" in p.stdout


def test_bad_dsq_auto_repro_decodes_the_bad_dsq_id(run_store):
    code, r, out = ktstr(run_store, "run", "--json", "--scheduler", "scx_ktstr", "--sched-args",
                         "--bad-dsq-after 1500", "--topology", "tiny-1llc", "--duration", "4s")
    assert code == 1, out
    section = r["sections"]["auto-repro"]
    assert section.splitlines()[0].startswith("reproduced: the repro VM failed the same way (SCX_EXIT_")
    assert "0xbad0d5c" in section.splitlines()[0]
    chain = _chain(section)
    assert chain[-1].split()[3] == "sched_ext_exit"
    assert any("dsq_id=0xbad0d5c" in ln for ln in chain)
    assert r["message"].endswith(f"\n\n--- auto-repro ---\n{section}")
    assert (Path(r["run_dir"]) / "scx_ktstr.repro.failure-dump.json").is_file()


def test_verifier_reject_boots_no_repro_vm(run_store):
    """A scheduler the verifier refused never ran: there is no crash path to probe, so no
    auto-repro VM is booted (issue 18) and the message has no auto-repro section."""
    code, r, out = ktstr(run_store, "run", "--json", "--scheduler", "scx_qmap", "--topology",
                         "tiny-2llc", "--duration", "2s")
    assert code == 1, out
    assert "auto-repro" not in r["sections"]
    assert "\n--- auto-repro ---\n" not in r["message"]
    run_dir = Path(r["run_dir"])
    assert not (run_dir / "repro").exists()
    assert not (run_dir / "scx_qmap.repro.failure-dump.json").exists()
