#!/usr/bin/env python3
"""Re-record assets/demo-store: small, real runs for `ktstr tui --demo` and the TUI tests.

Each run is a real VM run (QEMU) of the cached sched_ext kernel with a real scheduler:
a pass, an injected scx_bpf_error with its real dump and auto-repro, a stall caught by the
kernel's watchdog, a verifier reject, a host-watchdog timeout, and a rerun pair (the pass
again on another topology, linked to its parent). Logs are trimmed so the store stays small.

    .venv/bin/python assets/record_demo_store.py [--out assets/demo-store]

Then refresh the pictures that show it: pytest tests/tui/test_snapshots.py -k demo
--snapshot-update, and assets/screenshots.py.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
MAX_LOG = 64 * 1024  # keep each log's head and tail within this many bytes
# Runs whose raw scheduling trace (trace/, ~1 MB each) is kept; the others drop it so the
# store stays small.
KEEP_TRACE = ("demo_error", "demo_stall")

RUNS = [
    ("pass", dict(scheduler="scx_simple", topology="tiny-2llc", duration="3s")),
    ("error", dict(scheduler="scx_ktstr", topology="tiny-2llc", duration="6s",
                   sched_args="--error-after 1500")),
    ("stall", dict(scheduler="scx_ktstr", topology="tiny-1llc", duration="10s",
                   sched_args="--stall-after 1000")),
    ("verifier", dict(scheduler="scx_qmap", topology="tiny-2llc", duration="3s")),
    ("timeout", dict(scheduler="scx_simple", topology="tiny-1llc", duration="10m", timeout="30s")),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE / "demo-store")
    args = ap.parse_args()
    sys.path.insert(0, str(HERE.parent))
    from ktstr_cli.commands.run import spec_from_args
    from ktstr_cli.main import build_parser
    from ktstr_vmm.run.orchestrate import run
    from ktstr_vmm.store.store import Store

    work = Path(tempfile.mkdtemp(prefix="ktstr-demo-"))
    os.environ["KTSTR_HOME"] = str(work)
    store = Store(work)
    results = {}
    for label, opts in RUNS:
        # the options as `ktstr run` parses them, so new run options get their defaults
        argv = ["run", "--name", f"demo_{label}"]
        for k, v in opts.items():
            argv += [f"--{k.replace('_', '-')}", v] if k != "sched_args" else [f"--sched-args={v}"]
        if label in ("pass", "timeout"):
            argv.append("--no-auto-repro")
        spec = spec_from_args(build_parser("run").parse_args(argv))
        print(f"recording {label} ...", flush=True)
        results[label] = run(spec, store=store)
        print(f"  {label}: {results[label]['verdict']}", flush=True)
    parent = results["pass"]
    from ktstr_vmm.spec import RunSpec, parse_topology

    base = RunSpec.from_json(json.loads((Path(parent["run_dir"]) / "spec.json").read_text()))
    child = base.with_changes(topology=parse_topology("smt-2llc"), topology_requested="smt-2llc",
                              parent=parent["run_id"], kind="rerun", name="demo_pass")
    print("recording rerun ...", flush=True)
    run(child, store=store)

    out = args.out
    if out.exists():
        shutil.rmtree(out)
    (out / "runs").mkdir(parents=True)
    for d in sorted((work / "runs").iterdir()):
        if d.is_dir() and not d.name.startswith("."):
            dest = out / "runs" / d.name
            shutil.copytree(d, dest, ignore=shutil.ignore_patterns("control.sock", "*.tmp"))
            for log in ("console.log", "sched.log", "trace.txt"):
                for path in dest.rglob(log):
                    _trim(path)
            if not any(f"-{name}-" in d.name for name in KEEP_TRACE):
                shutil.rmtree(dest / "trace", ignore_errors=True)
            shutil.rmtree(dest / "repro" / "trace", ignore_errors=True)
            _relocate(dest)
            if (dest / "repro").is_dir():
                _relocate(dest / "repro", f"runs/{d.name}/repro")
    shutil.rmtree(work, ignore_errors=True)
    print(f"demo store written to {out}")
    return 0


def _trim(path: Path) -> None:
    if not path.exists() or path.stat().st_size <= MAX_LOG:
        return
    data = path.read_bytes()
    head, tail = data[: MAX_LOG // 4], data[-(MAX_LOG * 3 // 4):]
    head = head[: head.rfind(b"\n") + 1]
    tail = tail[tail.find(b"\n") + 1:]
    cut = len(data) - len(head) - len(tail)
    path.write_bytes(head + f"[... {cut} bytes trimmed by record_demo_store.py ...]\n".encode() + tail)


def _relocate(run_dir: Path, rel: str | None = None) -> None:
    """result.json names its run directory; make it relative to the store."""
    p = run_dir / "result.json"
    if p.exists():
        r = json.loads(p.read_text())
        r["run_dir"] = rel or f"runs/{run_dir.name}"
        p.write_text(json.dumps(r, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
