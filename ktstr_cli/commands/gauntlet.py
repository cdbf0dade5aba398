"""`ktstr gauntlet`: a matrix of ordinary runs on Dask distributed, grouped under a
gauntlet id; `--verifier` adds the per-program verifier table; `--resume ID` finishes one."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

from ktstr_vmm.errors import Interrupted, UsageError

EPILOG = """\
matrix file (TOML), every key optional except schedulers and topologies:
  schedulers = ["scx_simple", "scx_central"]
  topologies = ["tiny-*", "smt-2llc"]      # "all", preset names, notations, globs
  kernels = ["7.3.4+deb13-cloud-amd64"]    # cached versions or paths; default newest
  workload = "spin:4,sleep:2"
  duration = "5s"
  repeat = 2
  sched_args = "--fifo"
  verifier = false

exit: 0 every cell passed, 1 a cell failed / was lost / erred, 2 bad input,
3 inconclusive cells only, 130 interrupted (finished cells are kept)."""


def register(sub) -> None:
    p = sub.add_parser(
        "gauntlet", help="run a matrix of schedulers x topologies x kernels on Dask",
        description="Run every cell of a matrix (schedulers x topologies x kernels x repeats) "
        "as an ordinary ktstr run, on an embedded Dask LocalCluster sized to this machine or "
        "on a Dask cluster; all runs land in the store under one gauntlet id.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("matrix", nargs="?", metavar="MATRIX.toml", help="a matrix file (see below)")
    p.add_argument("-s", "--schedulers", metavar="A,B", help="schedulers (default scx_simple)")
    p.add_argument("-t", "--topologies", metavar="all|P,Q|GLOB",
                   help="topology presets, notations or globs (default tiny-2llc)")
    p.add_argument("--kernels", metavar="K1,K2", help="kernels (default: the newest cached)")
    p.add_argument("-w", "--workload", metavar="SPEC", help="workload of every cell")
    p.add_argument("-d", "--duration", metavar="DUR", help="workload duration (default 5s; "
                   "1s with --verifier)")
    p.add_argument("--repeat", type=int, metavar="N", help="run each cell N times")
    p.add_argument("--sched-args", metavar="STR", help="arguments for every scheduler")
    p.add_argument("--verifier", action="store_true",
                   help="verifier sweep: each BPF program's verified_insns per topology x "
                   "kernel, and the first verifier error where a scheduler fails to load")
    p.add_argument("--workers", type=int, metavar="N",
                   help="worker processes of the embedded cluster (default: as many VMs as "
                   "this machine's CPUs and RAM hold)")
    p.add_argument("--scheduler-address", metavar="tcp://HOST:8786",
                   help="run on this Dask cluster instead of an embedded one")
    p.add_argument("--send-runs", action="store_true",
                   help="send every run directory back through Dask even when the workers "
                   "see the store (a shared file system that is slow or read-only for them)")
    p.add_argument("--resume", metavar="ID", help="finish gauntlet ID: cells already judged "
                   "are skipped, the rest run (matrix options are not allowed)")
    p.add_argument("--auto-repro", action="store_true",
                   help="let failing cells start their auto-repro VM (off in a gauntlet)")
    p.add_argument("--list", action="store_true", help="list the store's gauntlets and exit")
    p.add_argument("--json", action="store_true", help="print the cells as JSON at the end")
    p.set_defaults(func=cmd_gauntlet)


def matrix_from_args(args: argparse.Namespace):
    from ktstr_vmm.gauntlet.matrix import matrix_from_file, matrix_from_options

    given = [o for o, v in (("-s", args.schedulers), ("-t", args.topologies),
                            ("--kernels", args.kernels), ("-w", args.workload),
                            ("-d", args.duration), ("--repeat", args.repeat),
                            ("--sched-args", args.sched_args)) if v is not None]
    if args.matrix:
        if given:
            raise UsageError(f"{given[0]} cannot be combined with a matrix file",
                             "put it in the file instead")
        m = matrix_from_file(Path(args.matrix))
        if args.verifier and not m.verifier:
            from dataclasses import replace
            m = replace(m, verifier=True)
        return m
    return matrix_from_options(args.schedulers, args.topologies, args.kernels, args.workload,
                               args.duration, args.repeat, args.sched_args, args.verifier)


def cmd_gauntlet(args: argparse.Namespace) -> int:
    from ktstr_vmm.gauntlet import record as rec
    from ktstr_vmm.gauntlet.matrix import check_id, new_gauntlet_id, resolve
    from ktstr_vmm.spec import parse_topology
    from ktstr_vmm.store.store import Store

    store = Store()
    if args.list:
        return list_gauntlets(store, args.json)
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers {args.workers} must be at least 1")
    if args.workers is not None and args.scheduler_address:
        raise UsageError("--workers sizes the embedded cluster; a cluster at "
                         "--scheduler-address has its own workers")
    judged: dict[str, str] = {}
    if args.resume:
        if args.matrix or any(v is not None for v in (args.schedulers, args.topologies,
                                                      args.kernels, args.workload,
                                                      args.duration, args.repeat)):
            raise UsageError("--resume takes the matrix from the gauntlet record",
                             "drop the matrix options")
        record = rec.read_record(store, check_id(args.resume))
        resolve(record.matrix)  # the kernels and schedulers must still be there
        judged = rec.judged_cells(store, record.id)
    else:
        matrix = resolve(matrix_from_args(args))
        record = rec.write_record(store, new_gauntlet_id(), matrix)
    cells = record.matrix.cells()
    todo = [c for c in cells if c.key not in judged]
    out = sys.stderr
    print(f"ktstr: gauntlet {record.id}: {len(cells)} cells"
          + (f", {len(judged)} already judged" if judged else "")
          + f" (watch: ktstr tui --gauntlet {record.id}; resume: ktstr gauntlet --resume "
            f"{record.id})", file=out, flush=True)

    from ktstr_vmm.gauntlet.driver import (
        GauntletRun,
        default_workers,
        open_cluster,
        summary_exit_code,
    )

    workers = args.workers or default_workers(
        todo, lambda t: parse_topology(t).default_memory_mib())
    line = ProgressLine(record.id)
    old = signal.signal(signal.SIGTERM, _raise_interrupt)
    client = cluster = None
    try:
        if todo:
            if not args.scheduler_address:
                print(f"ktstr: starting a Dask LocalCluster with {workers} worker"
                      f"{'s' if workers != 1 else ''}", file=out, flush=True)
            client, cluster = open_cluster(workers, args.scheduler_address)
        run = GauntletRun(client, store, record, judged=judged,
                          no_auto_repro=not args.auto_repro, send_runs=args.send_runs,
                          on_progress=line.update)
        t0 = time.monotonic()
        states = run.run() if todo else list(run.states.values())
        wall = time.monotonic() - t0
    except KeyboardInterrupt as e:
        raise Interrupted("gauntlet interrupted while starting") from e
    finally:
        line.finish()
        for closer in (client, cluster):
            if closer is not None:
                try:
                    closer.close()
                except Exception:  # a dying cluster must not hide the result
                    pass
        signal.signal(signal.SIGTERM, old)
    code = summary_exit_code(states, run.interrupted)
    if args.json:
        print(json.dumps({"gauntlet": record.id, "wall_s": round(wall, 3),
                          "interrupted": run.interrupted, "exit_code": code,
                          "cells": [s.to_json() for s in states],
                          **({"verifier": verifier_json(store, states)}
                             if record.matrix.verifier else {})}, indent=2))
    else:
        print_cells(states)
        if record.matrix.verifier:
            print()
            print(verifier_text(store, states))
        done = sum(1 for s in states if s.verdict)
        print(f"\ngauntlet {record.id}: {done}/{len(states)} judged in {wall:.1f}s"
              + (" - interrupted; finished cells are kept, resume with "
                 f"ktstr gauntlet --resume {record.id}" if run.interrupted else ""))
    return code


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def print_cells(states) -> None:
    order = {"fail": 0, "lost": 0, "error": 0, "inconclusive": 1, "interrupted": 2}
    for s in sorted(states, key=lambda s: order.get(s.verdict or s.status, 3)):
        what = (s.verdict or s.status).upper()
        extra = s.reason or s.first_line
        print(f"{what:<13} {s.cell.label:<40} {s.run_id or '-':<48} "
              f"{'' if s.wall_s is None else f'{s.wall_s:.1f}s'}"
              f"{'  ' + extra if extra and what != 'PASS' else ''}"
              f"{f'  (attempts {s.attempts})' if s.attempts > 1 else ''}")


def _verifier_rows(store, states):
    from ktstr_vmm.gauntlet.verifier import read_cell

    rows = []
    for s in states:
        if not s.run_id:
            continue
        try:
            path = store.run_dir(s.run_id).path
        except Exception:
            continue
        rows.append((s.cell.topology, s.cell.kernel or "newest", s.cell.scheduler,
                     read_cell(path)))
    return rows


def verifier_text(store, states) -> str:
    from ktstr_vmm.gauntlet.verifier import render_table

    return render_table(_verifier_rows(store, states))


def verifier_json(store, states) -> list[dict]:
    return [{"topology": t, "kernel": k, "scheduler": s, "loaded": c.loaded,
             "failed_prog": c.failed_prog, "error": c.error,
             "progs": [{"name": p.name, "type": p.type, "verified_insns": p.verified_insns,
                        "xlated_len": p.xlated_len} for p in c.progs]}
            for t, k, s, c in _verifier_rows(store, states)]


def list_gauntlets(store, as_json: bool) -> int:
    from ktstr_vmm.gauntlet.record import judged_cells, list_records

    rows = []
    for d in list_records(store):
        judged = judged_cells(store, d["id"])
        rows.append({"id": d["id"], "created": d.get("created"),
                     "cells": len(d.get("cells") or []), "judged": len(judged)})
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["created"] or 0))
        print(f"{r['id']:<28} {when}  {r['judged']}/{r['cells']} judged")
    return 0


class ProgressLine:
    """done/running/queued and an ETA on stderr: one rewritten line on a terminal, a line
    per change otherwise; each finished cell gets a line of its own."""

    def __init__(self, gid: str) -> None:
        self.gid = gid
        self.tty = sys.stderr.isatty() and not os.environ.get("CI")
        self.last: tuple | None = None

    def update(self, p) -> None:
        if p.finished is not None:
            s = p.finished
            what = (s.verdict or s.status).upper()
            self._line(f"ktstr: {what:<12} {s.cell.label}  {s.run_id or s.reason}", keep=True)
        parts = ", ".join(f"{n} {v}" for v, n in sorted(p.verdicts.items()))
        eta = "" if p.eta_s is None else f", ETA {_dur(p.eta_s)}"
        text = (f"ktstr: gauntlet {self.gid}: {p.done}/{p.total} done"
                f"{' (' + parts + ')' if parts else ''}, {p.running} running, "
                f"{p.queued} queued on {p.workers} worker{'s' if p.workers != 1 else ''}"
                f"{eta} [{_dur(p.elapsed_s)}]")
        key = (p.done, p.running, p.queued)
        if self.tty:
            self._line(text, keep=False)
        elif key != self.last:
            self._line(text, keep=True)
        self.last = key

    def _line(self, text: str, keep: bool) -> None:
        if self.tty:
            sys.stderr.write("\r\x1b[2K" + text + ("\n" if keep else ""))
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def finish(self) -> None:
        if self.tty:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _dur(s: float) -> str:
    s = int(round(s))
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"
