"""`ktstr schedulers build | list | path NAME`: sched_ext schedulers built for a kernel."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime

from ktstr_vmm.kernel.kernels import add_kernel_option, resolve_kernel
from ktstr_vmm.kernel.schedulers import (
    Scheduler,
    SchedulerBuildError,
    build_schedulers,
    list_schedulers,
    resolve_scheduler,
)
from ktstr_vmm.progress import for_terminal


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("schedulers", help="build, list and locate sched_ext schedulers",
                       description="The kernel's own tools/sched_ext schedulers and ktstr's "
                                   "scx_ktstr, built against a kernel's BTF and cached per "
                                   "kernel build id.")
    ssub = p.add_subparsers(dest="schedulers_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])

    b = ssub.add_parser("build", help="build the schedulers for a kernel (cached)")
    add_kernel_option(b)
    b.set_defaults(func=cmd_build)

    ls = ssub.add_parser("list", help="the schedulers built for a kernel")
    add_kernel_option(ls)
    ls.add_argument("--json", action="store_true", help="one JSON array")
    ls.set_defaults(func=cmd_list)

    pa = ssub.add_parser("path", help="print a scheduler binary's path")
    pa.add_argument("name", metavar="NAME", help="a scheduler name (scx_simple or simple)")
    add_kernel_option(pa)
    pa.set_defaults(func=cmd_path)


def cmd_build(args: argparse.Namespace) -> int:
    kernel = resolve_kernel(args.kernel)
    t0 = time.monotonic()
    try:
        scheds = build_schedulers(kernel, for_terminal())
    except SchedulerBuildError as e:
        for line in e.tail:
            print(line, file=sys.stderr)
        raise
    _table(scheds)
    print(f"{len(scheds)} schedulers for kernel {kernel.version} "
          f"({time.monotonic() - t0:.1f}s)", file=sys.stderr)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    kernel = resolve_kernel(args.kernel)
    scheds = list_schedulers(kernel)
    if args.json:
        print(json.dumps([_as_json(s) for s in scheds], indent=2))
        return 0
    if not scheds:
        print(f"no schedulers built for kernel {kernel.version} (run ktstr schedulers build)",
              file=sys.stderr)
        return 0
    _table(scheds)
    return 0


def cmd_path(args: argparse.Namespace) -> int:
    print(resolve_scheduler(args.name, resolve_kernel(args.kernel)).path)
    return 0


def _when(t: float | None) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S") if t else "-"


def _as_json(s: Scheduler) -> dict:
    return {"name": s.name, "path": str(s.path), "kernel": s.kernel, "built_at": s.built_at,
            "origin": s.origin}


def _table(scheds: list[Scheduler]) -> None:
    rows = [("NAME", "ORIGIN", "KERNEL", "BUILT (UTC)", "PATH")]
    rows += [(s.name, s.origin, s.kernel[:12], _when(s.built_at), str(s.path)) for s in scheds]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])
