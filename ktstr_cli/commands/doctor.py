"""`ktstr doctor [--json]`: what this machine can run, one line per check with its fix."""

from __future__ import annotations

import argparse
import json

from ktstr_vmm.kernel.kernels import add_kernel_option
from ktstr_vmm.run.doctor import run_doctor


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="check KVM, QEMU, the kernel and the schedulers",
                       description="Exit 0 when a QEMU run can start here, 1 otherwise.")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_kernel_option(p)
    p.set_defaults(func=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    r = run_doctor(args.kernel)
    if args.json:
        print(json.dumps(r.to_json(), indent=2))
        return 0 if r.ok else 1
    for c in r.checks:
        mark = "ok" if c.ok else ("FAIL" if c.required else "warn")
        line = f"{mark:<5} {c.name}: {c.detail}"
        if c.fix:
            line += f" ({c.fix})"
        print(line)
    verdict = ("ok: QEMU runs can start" if r.ok
               else "not ready: fix the FAIL lines above")
    print(f"doctor: {verdict} (KVM {r.kvm.kind})")
    return 0 if r.ok else 1
