"""`ktstr rerun RUN [--topology T] [run options]`: a new run with the parent's spec and the
given overrides, linked to the parent (spec.parent, kind "rerun"; result.json `parent`)."""

from __future__ import annotations

import argparse

from ktstr_vmm.errors import UsageError
from ktstr_vmm.rundir.layout import SPEC
from ktstr_vmm.spec import RunSpec
from ktstr_vmm.store.store import Store

from .run import add_run_options, execute_and_report, spec_from_args


def register(sub) -> None:
    p = sub.add_parser("rerun", help="run a finished run again, with changes (another topology, ...)",
                       description="Start a new run with RUN's spec and the options given here as "
                       "overrides; the new run records RUN as its parent. Exit codes as for run.")
    p.add_argument("run", metavar="RUN", help="run id, unique prefix or substring")
    add_run_options(p, defaults=False)
    p.add_argument("--auto-repro", action="store_true",
                   help="turn auto-repro back on when the parent ran with --no-auto-repro")
    p.set_defaults(func=cmd_rerun)


def rerun_spec(args: argparse.Namespace, store: Store | None = None) -> RunSpec:
    """The child's spec: the parent's with the overrides; parent = the parent's run id.
    Bad options raise UsageError before anything is created."""
    store = store or Store()
    summary = store.get(args.run)
    data = store.run_dir(args.run).read_json(SPEC)
    if data is None:
        raise UsageError(f"run {summary.run_id} has no readable {SPEC}",
                         "a run directory without its spec cannot be rerun")
    parent = RunSpec.from_json(data)
    base = child_base(parent, new_shape=args.topology is not None,
                      new_duration=args.duration is not None)
    if getattr(args, "auto_repro", False):
        if args.no_auto_repro:
            raise UsageError("--auto-repro and --no-auto-repro contradict each other")
        base = base.with_changes(auto_repro=True)
    spec = spec_from_args(args, base=base)
    return spec.with_changes(parent=summary.run_id, kind="rerun")


def child_base(parent: RunSpec, *, new_shape: bool, new_duration: bool) -> RunSpec:
    """The parent's spec as the base of a rerun (the TUI's rerun dialog starts here too):
    no probes, no link yet; spec.json stores the derived watchdog and memory, so a new
    topology or duration derives them anew. The caller applies its overrides, then
    `.with_changes(parent=PARENT_ID, kind="rerun")`."""
    base = parent.with_changes(probes=(), kind="run", parent=None)
    if new_shape or new_duration:
        base = base.with_changes(timeout_s=None)
    if new_shape:
        base = base.with_changes(memory_mib=0)
    return base


def cmd_rerun(args: argparse.Namespace) -> int:
    spec = rerun_spec(args)
    return execute_and_report(spec, args.json)
