"""`ktstr run`: one run end to end, live phase display, verdict and failure message."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from ktstr_vmm.errors import UsageError
from ktstr_vmm.spec import (
    DEFAULT_TOPOLOGY,
    ENGINES,
    RunSpec,
    parse_duration,
    parse_size_mib,
    parse_topology,
    parse_workload,
    validate_name,
    validate_trace_event,
)

EXIT_PASS, EXIT_FAIL, EXIT_USAGE, EXIT_INCONCLUSIVE = 0, 1, 2, 3
VERDICT_EXIT = {"pass": EXIT_PASS, "fail": EXIT_FAIL, "inconclusive": EXIT_INCONCLUSIVE,
                "skip": EXIT_PASS}


def add_run_options(p: argparse.ArgumentParser, *, defaults: bool = True) -> None:
    """The options of a run; rerun takes the same ones as overrides (defaults=False)."""
    d = (lambda v: v) if defaults else (lambda v: None)
    p.add_argument("--scheduler", "-s", default=d("scx_simple"), metavar="NAME|PATH",
                   help="a built scheduler (ktstr schedulers list) or a binary path")
    p.add_argument("--sched-args", default=None, metavar="STR",
                   help="arguments for the scheduler, shell-style quoting")
    p.add_argument("--topology", "-t", default=d(DEFAULT_TOPOLOGY), metavar="PRESET|NOTATION",
                   help="a preset (ktstr topologies) or {n}n{l}l{c}c{t}t")
    p.add_argument("--memory", default=None, metavar="SIZE", help="guest RAM (default: 64M per vCPU, >= 256M)")
    p.add_argument("--duration", "-d", default=None, metavar="DUR",
                   help="workload duration (5s, 500ms, 2m; default 5s, or a --scenario's phases)")
    p.add_argument("--workload", "-w", action="append", default=None, metavar="SPEC",
                   help="KIND[:N][,key=value...][,KIND...], repeatable: spin:4,pipe:2, "
                        "hackbench:groups=4,loops=200, cyclictest:threads=4,interval=1ms "
                        "(`ktstr workloads` lists kinds and parameters; default: one spinner per vCPU)")
    p.add_argument("--scenario", default=None, metavar="FILE",
                   help="a TOML scenario: phases with durations and workloads, cgroups with "
                        "weights/cpusets (sets the workload, and the duration unless -d is given)")
    p.add_argument("--fail-on", action="append", default=None, metavar="METRIC:>N",
                   help="fail the run when its own number breaks a bound, e.g. "
                        "cyclictest.max:>500us, hackbench.time:>2s, futex.wakeups:<1000 (repeatable)")
    p.add_argument("--engine", choices=ENGINES, default=d("auto"), help="VM engine (auto picks KVM only on hardware KVM)")
    p.add_argument("--kernel", default=None, metavar="PATH", help="bzImage, vmlinux or build tree (default: newest cached)")
    p.add_argument("--timeout", default=None, metavar="DUR", help="watchdog (default: duration + boot allowance)")
    p.add_argument("--name", default=None, metavar="NAME", help="test name (default: the scheduler's name)")
    p.add_argument("--expect-err", action="store_true", default=None, help="the run is expected to fail")
    p.add_argument("--no-auto-repro", action="store_true", default=None, help="do not start an auto-repro VM on failure")
    p.add_argument("--monitor-interval", default=None, metavar="DUR", help="host-side sampling period (default 100ms)")
    p.add_argument("--no-trace", action="store_true", default=None,
                   help="do not record the scheduling trace (on by default)")
    p.add_argument("--trace-events", default=None, metavar="LIST",
                   help="more tracepoints for the trace, comma-separated GROUP/NAME or GROUP/*")
    p.add_argument("--max-wakeup-latency", default=None, metavar="DUR",
                   help="fail when a woken task waits longer than this for a CPU (from the trace)")
    p.add_argument("--max-runnable-wait", default=None, metavar="DUR",
                   help="fail when a runnable task (woken or preempted) waits longer than this")
    p.add_argument("--capture-every", default=None, metavar="DUR",
                   help="freeze the VM and capture its scheduler state every DUR of the workload "
                        "(captures/periodic_NNN.json)")
    p.add_argument("--capture-at", default=None, metavar="T1,T2,...",
                   help="capture at these times of the workload (2s,4s)")
    p.add_argument("--assert", dest="assertions", action="append", default=None, metavar="EXPR",
                   help="temporal assertion over the captures / monitor samples, repeatable: "
                        "nondecreasing(F), strictly_increasing(F), rate_within(F,LO,HI), "
                        "steady_within(F,WARMUP,TOL), converges_to(F,TARGET,TOL,BY), "
                        "ratio_within(F,G,LO,HI), at_least(F,X), at_most(F,X), between(F,LO,HI), "
                        "always(F [OP N][,AFTER]), eventually(F [OP N][,BY]); F is bpf.GLOBAL, "
                        "scx.{nr_running,nr_queued,exit_kind,aborting,bypass_depth} or "
                        "monitor.{nr_running,scx_nr_running,local_dsq_nr,enabled,events.NAME}")
    p.add_argument("--json", action="store_true", help="print result.json instead of the human report")


def spec_from_args(args: argparse.Namespace, base: RunSpec | None = None) -> RunSpec:
    """Options -> RunSpec; with `base`, only the options given override it (rerun)."""
    import shlex

    kw: dict = {}
    if args.topology is not None:
        kw["topology"] = parse_topology(args.topology)
        kw["topology_requested"] = args.topology
    if args.scheduler is not None:
        kw["scheduler"] = args.scheduler
    if args.sched_args is not None:
        try:
            kw["sched_args"] = tuple(shlex.split(args.sched_args))
        except ValueError as e:
            raise UsageError(f"bad --sched-args: {e}") from e
    if args.memory is not None:
        kw["memory_mib"] = parse_size_mib(args.memory)
    if args.duration is not None:
        kw["duration_s"] = parse_duration(args.duration)
    if getattr(args, "scenario", None):
        from ktstr_vmm.scenario import load_scenario

        sc = load_scenario(args.scenario)
        kw["workload"] = sc.workload
        if args.workload:
            raise UsageError("--scenario and -w both name the workload", "give one of them")
        if args.duration is None:
            kw["duration_s"] = sc.duration_s
        elif kw["duration_s"] + 1e-9 < sc.duration_s:
            raise UsageError(f"--duration {args.duration} is shorter than the scenario "
                             f"({sc.duration_s:g}s of phases)", "leave -d out to run them all")
        if sc.name and args.name is None:
            kw["name"] = validate_name(sc.name, "scenario name")
        kw.update(_scenario_checks(sc, args.scenario))
    if args.workload:
        kw["workload"] = parse_workload(",".join(args.workload))
    if getattr(args, "fail_on", None):
        kw["fail_on"] = tuple(args.fail_on)
    if args.engine is not None:
        kw["engine"] = args.engine
    if args.kernel is not None:
        kw["kernel"] = args.kernel
    if args.timeout is not None:
        kw["timeout_s"] = parse_duration(args.timeout, "--timeout")
    if args.expect_err:
        kw["expect_err"] = True
    if args.no_auto_repro:
        kw["auto_repro"] = False
    if args.monitor_interval is not None:
        kw["monitor_interval_ms"] = max(1, round(parse_duration(args.monitor_interval, "--monitor-interval") * 1000))
    if args.name is not None:
        kw["name"] = validate_name(args.name)
    if args.no_trace:
        kw["trace"] = False
    if args.trace_events is not None:
        kw["trace_events"] = tuple(validate_trace_event(e.strip())
                                   for e in args.trace_events.split(",") if e.strip())
    for opt, key in (("max_wakeup_latency", "max_wakeup_latency_ms"),
                     ("max_runnable_wait", "max_runnable_wait_ms")):
        if getattr(args, opt) is not None:
            flag = "--" + opt.replace("_", "-")
            kw[key] = parse_duration(getattr(args, opt), flag) * 1000
    if getattr(args, "gauntlet", None):
        kw["gauntlet"] = validate_name(args.gauntlet, "--gauntlet")
        kw["gauntlet_cell"] = args.gauntlet_cell or None
    if getattr(args, "capture_every", None) is not None:
        kw["capture_every_ms"] = round(parse_duration(args.capture_every, "--capture-every") * 1000)
    if getattr(args, "capture_at", None) is not None:
        kw["capture_at_ms"] = tuple(
            0 if t.strip() in ("0", "0s", "0ms") else
            round(parse_duration(t.strip(), "--capture-at") * 1000)
            for t in args.capture_at.split(",") if t.strip())
    if getattr(args, "assertions", None):
        kw["assertions"] = (*kw.get("assertions", ()), *args.assertions)
    if base is not None:
        spec = base.with_changes(**kw)
    else:
        kw.setdefault("name", validate_name(os.path.basename(kw["scheduler"]).replace(" ", "_")[:100] or "run",
                                            "test name (from --scheduler; pass --name)"))
        spec = RunSpec(**kw)
    check_fail_on(spec)
    topo = spec.topology
    if spec.memory_mib and spec.memory_mib < topo.min_memory_mib():
        raise UsageError(f"--memory {spec.memory_mib}M is too small for {topo.notation} "
                         f"({topo.vcpus} vCPUs, {topo.nodes} nodes)",
                         f"use at least {topo.min_memory_mib()}M")
    from ktstr_vmm.run.captures import check_spec

    check_spec(spec)
    return spec


def _scenario_checks(sc, path: str) -> dict:
    """A scenario's captures and assertions as RunSpec fields (the command line's
    --capture-every/--capture-at override them, its --assert add to them); a malformed
    assertion is a one-line error naming the file and the entry."""
    from ktstr_vmm.evaluate.temporal import parse_assertion

    kw: dict = {}
    if sc.capture_every_ms is not None:
        kw["capture_every_ms"] = sc.capture_every_ms
    if sc.capture_at_ms:
        kw["capture_at_ms"] = sc.capture_at_ms
    for i, text in enumerate(sc.assertions, 1):
        try:
            parse_assertion(text)
        except UsageError as e:
            raise UsageError(f"scenario {Path(path).name}: assert[{i}]: {e.message.removeprefix('--assert ')}",
                             e.hint) from None
    if sc.assertions:
        kw["assertions"] = sc.assertions
    return kw


def check_fail_on(spec: RunSpec) -> None:
    """Each --fail-on parses, and a workload measure names a workload this run has."""
    from ktstr_vmm.evaluate.compare import METRICS, parse_fail_on

    kinds = {g.kind for g in spec.workload}
    for text in spec.fail_on:
        r = parse_fail_on(text)
        if not r.op:
            raise UsageError(f"--fail-on {text}: a run has no B to compare with",
                             "use a bound like cyclictest.max:>500us (`ktstr compare` takes +N%)")
        head = r.metric.split(".")
        name = head[1] if head[0].startswith("cg") and head[0][2:].isdigit() else head[0]
        if r.metric not in METRICS and not r.metric.startswith("monitor.") and name not in kinds:
            raise UsageError(f"--fail-on {text}: the workload has no {name}",
                             f"its kinds: {', '.join(sorted(kinds))}")


def register(sub) -> None:
    p = sub.add_parser("run", help="boot a kernel with a scheduler on a topology, run a workload, judge it",
                       description="Boot the sched_ext kernel with a scheduler on a CPU topology, "
                                   "run a workload, and judge the run. Exit 0 pass, 1 fail, 2 usage "
                                   "error, 3 inconclusive.")
    add_run_options(p)
    # Set by `ktstr gauntlet` on each cell it starts: the run is grouped under that id.
    p.add_argument("--gauntlet", default=None, metavar="ID", help=argparse.SUPPRESS)
    p.add_argument("--gauntlet-cell", default=None, metavar="KEY", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_run)

    t = sub.add_parser("topologies", help="list the topology presets")
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=cmd_topologies)


def cmd_run(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    return execute_and_report(spec, args.json)


def execute_and_report(spec: RunSpec, as_json: bool) -> int:
    from ktstr_vmm.run.orchestrate import run

    live = None if as_json else LivePhase()
    result = run(spec, on_phase=live.update if live else None)
    if live:
        live.finish()
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        print_result(result)
    if result.get("phase") == "interrupted":
        return 130
    return VERDICT_EXIT.get(result.get("verdict", "fail"), EXIT_FAIL)


class LivePhase:
    """One status line on stderr: run id, phase, elapsed. Plain lines when not a terminal."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty() and not os.environ.get("CI")
        self.t0 = time.monotonic()
        self.last = None

    def update(self, run_id: str, phase: str, detail: str = "") -> None:
        elapsed = time.monotonic() - self.t0
        line = f"ktstr: {run_id}: {phase}{(' - ' + detail) if detail else ''} [{elapsed:5.1f}s]"
        if self.tty:
            sys.stderr.write("\r\x1b[2K" + line)
            sys.stderr.flush()
        elif (phase, detail) != self.last:
            print(line, file=sys.stderr, flush=True)
        self.last = (phase, detail)

    def finish(self) -> None:
        if self.tty:
            sys.stderr.write("\n")
            sys.stderr.flush()


def cmd_topologies(args: argparse.Namespace) -> int:
    from ktstr_vmm.spec import PRESETS

    rows = [{"name": n, "notation": t.notation, "vcpus": t.vcpus, "nodes": t.nodes, "llcs": t.llcs,
             "cores_per_llc": t.cores, "threads_per_core": t.threads,
             "memory_mib": t.default_memory_mib()} for n, t in PRESETS.items()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'PRESET':<20} {'NOTATION':<12} {'VCPUS':>5} {'NODES':>5} {'LLCS':>4}  MEMORY")
    for r in rows:
        print(f"{r['name']:<20} {r['notation']:<12} {r['vcpus']:>5} {r['nodes']:>5} {r['llcs']:>4}  {r['memory_mib']}M")
    return 0


def print_result(result: dict) -> None:
    """The human report: verdict line, then the failure message (coloured on a terminal)."""
    from ktstr_vmm.evaluate.judge import color_enabled, colorize

    verdict = result.get("verdict", "?")
    if result.get("phase") == "interrupted":
        print(f"INTERRUPTED  {result.get('run_id')}  (no verdict; QEMU stopped, nothing left "
              f"running)\nrun directory: {result.get('run_dir')}")
        return
    color = color_enabled(sys.stdout)
    topo = result.get("topology") or {}
    timings = result.get("timings") or {}
    stats = (result.get("stats") or {}).get("summary")
    head = (f"{verdict.upper()}  {result.get('run_id')}  sched={result.get('scheduler') or 'none'} "
            f"topo={topo.get('requested')} observed={topo.get('observed')} "
            f"engine={result.get('engine')} total={timings.get('total_s')}s")
    if color:
        code = {"pass": "32", "fail": "31", "inconclusive": "33"}.get(verdict, "0")
        head = f"\x1b[1;{code}m{head}\x1b[0m"
    print(head)
    if stats:
        print(f"  {stats}")
    if result.get("message"):
        print()
        print(colorize(result["message"], color))
    print(f"\nrun directory: {result.get('run_dir')}")
