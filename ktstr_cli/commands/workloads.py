"""`ktstr workloads [--json]`: the workload kinds by family, their parameters and measures."""

from __future__ import annotations

import argparse
import json


def register(sub) -> None:
    p = sub.add_parser("workloads", help="list the workload kinds and their parameters",
                       description="The workload kinds a run can name with -w or in a "
                                   "--scenario file: ktstr's families and real benchmarks.")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_workloads)


def cmd_workloads(args: argparse.Namespace) -> int:
    from ktstr_vmm.guest.benchtools import bench_dir
    from ktstr_vmm.workloads import COMMON, KINDS, MEASURES, describe

    if not args.json:
        print(describe())
        return 0
    rows = []
    for k in KINDS.values():
        row = {"name": k.name, "family": k.family, "help": k.help,
               "measure": k.measure, "measure_label": MEASURES[k.measure][0],
               "latency": k.latency,
               "params": [{"name": p.name, "type": p.type, "help": p.help, "default": p.default}
                          for p in k.params]}
        if k.bench:
            row.update(package=k.package, binary=str(bench_dir() / k.binary),
                       installed=(bench_dir() / k.binary).is_file())
        rows.append(row)
    print(json.dumps({"kinds": rows, "common": [{"name": p.name, "type": p.type, "help": p.help}
                                                 for p in COMMON]}, indent=2))
    return 0
