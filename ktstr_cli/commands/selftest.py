"""`ktstr selftest kvm [run options]`: the KVM engine under a real kvm_amd, nested under
QEMU TCG (ktstr_vmm/nested, docs/kvm-engine.md). Boots L1 once, runs `ktstr run --engine
kvm` with the given options inside it (plus, with --control, pause/resume/snapshot/stop
through the control socket), brings the run directories back and reports them."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ktstr_vmm.errors import UsageError

from .run import add_run_options

EXIT_PASS, EXIT_FAIL = 0, 1
NESTED_TIMEOUT = "300s"


def register(sub) -> None:
    p = sub.add_parser("selftest", help="self-tests of ktstr's own machinery",
                       description="Self-tests of ktstr's own machinery.")
    what = p.add_subparsers(dest="selftest", metavar="WHAT")
    k = what.add_parser("kvm", help="run the KVM engine under a real kvm_amd nested in QEMU TCG",
                        description="Boot an L1 guest under QEMU TCG (-cpu max: svm, npt) with "
                                    "the kernel's own kvm/kvm-amd modules, run `ktstr run "
                                    "--engine kvm` inside it and bring the run back. Exit 0 "
                                    "when every run passed, 1 otherwise, 2 on bad input.")
    add_run_options(k)
    k.add_argument("--control", action="store_true",
                   help="pause, resume, snapshot and stop the run through its control socket")
    k.add_argument("--l1-memory", default="2048M", metavar="SIZE", help="L1's memory (2048M)")
    k.add_argument("--l1-cpus", type=int, default=1, metavar="N",
                   help="L1's vCPUs (1: single-threaded TCG; more: multi-threaded TCG, for L2 "
                        "runs with several vCPUs)")
    k.add_argument("--l1-timeout", default="30m", metavar="DUR",
                   help="watchdog for the whole L1 (30m)")
    k.add_argument("--out", default=None, metavar="DIR",
                   help="where the run directories come back (default: <store>/nested/<time>)")
    k.set_defaults(func=cmd_selftest_kvm)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _run_args(args: argparse.Namespace) -> list[str]:
    out = ["--engine", "kvm"]
    if args.timeout is None:  # nested runs are slow: the default watchdog is too short
        args.timeout = NESTED_TIMEOUT
    for opt in ("scheduler", "sched_args", "topology", "memory", "duration", "workload",
                "timeout", "name", "monitor_interval"):
        v = getattr(args, opt, None)
        if v is not None:
            out += [f"--{opt.replace('_', '-')}", str(v)]
    if args.expect_err:
        out.append("--expect-err")
    out.append("--no-auto-repro")
    return out


def cmd_selftest_kvm(args: argparse.Namespace) -> int:
    from ktstr_vmm.kernel.kernels import resolve_kernel
    from ktstr_vmm.nested.bed import NestedRun, describe, run_bed
    from ktstr_vmm.paths import store_dir
    from ktstr_vmm.progress import LineProgress
    from ktstr_vmm.spec import parse_duration, parse_size_mib

    from .run import spec_from_args

    if args.engine not in (None, "auto", "kvm"):
        raise UsageError(f"ktstr selftest kvm runs the KVM engine, not --engine {args.engine}",
                         "leave out --engine")
    spec_from_args(args)  # bad run options are refused here, before L1 boots
    kernel = resolve_kernel(args.kernel)
    memory = parse_size_mib(args.l1_memory)
    timeout = parse_duration(args.l1_timeout, "--l1-timeout")
    out = Path(args.out) if args.out else store_dir() / "nested" / time.strftime("%Y%m%d-%H%M%S")
    runs = [NestedRun("run", tuple(_run_args(args)), control=args.control)]
    if not 1 <= args.l1_cpus <= 8:
        raise UsageError(f"--l1-cpus {args.l1_cpus} is out of range", "use 1 to 8")
    res = run_bed(runs, out, kernel=kernel, memory_mib=memory, timeout_s=timeout,
                  vcpus=args.l1_cpus,
                  progress=LineProgress(sys.stderr))
    if args.json:
        print(json.dumps({"out_dir": str(out), "timings": res.timings, **res.report}, indent=2))
    else:
        print("\n".join(describe(res)))
        print(f"\nresults: {out}")
    ok = all((r.get("result") or {}).get("verdict") == "pass" for r in res.report["runs"])
    return EXIT_PASS if ok else EXIT_FAIL
