"""`ktstr shell [RUN] [run options]`: a shell in a guest (docs/shell.md)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading

from ktstr_vmm.errors import UsageError
from ktstr_vmm.guest.userland import HELPERS

from . import add_store_option, open_store

EXIT_FAIL, EXIT_INCONCLUSIVE = 1, 3

DESCRIPTION = """\
A shell in a guest. Without RUN: boot the VM a run with these options would boot
(kernel, topology, the scheduler attached and enabled, --workload in the background if
given), open a shell in it, and when the shell exits power the VM off and judge and store
the run like any other. With RUN: a shell in that live run's guest (several may be open at
once; the run and its monitor go on; the shell ends with the run).

On a terminal the guest shell has a pty: job control, Ctrl-C to the foreground job, the
window size follows yours; Ctrl-] detaches. Without a terminal the input is a script:
  echo 'cat /sys/kernel/sched_ext/state' | ktstr shell -s scx_simple -t tiny-1llc
prints the guest's output (stdout and stderr apart) and exits with the shell's status
(a failed or inconclusive run turns a 0 into 1 or 3).

The guest has busybox and bpftool, and these helpers:
""" + "".join(f"  {name:<8} {text}\n" for name, text in HELPERS.items()) + """
What the shells print is kept in the run directory (shell.log); opens and ends are on the
timeline. --timeout (default 1h) bounds a shell run: the shell is closed and the run ends
before it, saying so."""


def register(sub) -> None:
    from .run import add_run_options

    p = sub.add_parser("shell", help="a shell in a guest: boot one, or attach to a live run",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", nargs="?", metavar="RUN",
                   help="a live run's id (unique prefix or substring) to attach to")
    add_run_options(p, defaults=False)
    add_store_option(p)
    p.set_defaults(func=cmd_shell)


def _run_option_dests() -> list[str]:
    """The dest of every run option (what `ktstr run` takes), for refusing them on attach."""
    from .run import add_run_options

    probe = argparse.ArgumentParser(add_help=False)
    add_run_options(probe, defaults=False)
    return [a.dest for a in probe._actions if a.dest != "json" and a.option_strings]


def cmd_shell(args: argparse.Namespace) -> int:
    if args.run:
        given = [o for o in _run_option_dests() if getattr(args, o, None) not in (None, False)]
        if given:
            raise UsageError(f"--{given[0].replace('_', '-')} is for a new run, not for attaching "
                             f"to run {args.run}", "drop RUN to boot a new guest with these options")
        return attach(open_store(args), args.run)
    return boot_and_shell(args)


# ------------------------------------------------------------------------------ attach

def attach(store, ref: str) -> int:
    rd = store.run_dir(ref)
    status = rd.read_json("status.json") or {}
    phase = status.get("phase")
    if phase in ("evaluating", "done", "interrupted") or not (rd.path / "control.sock").exists():
        result = rd.read_json("result.json") or {}
        verdict = f", verdict {result['verdict']}" if result.get("verdict") else ""
        raise UsageError(f"run {rd.run_id} has ended ({phase or 'no status'}{verdict}); "
                         "there is no guest for a shell",
                         "start a new one: ktstr shell [run options]")
    end = _session(rd, primary=False)
    return end.code


def _session(rd, *, primary: bool):
    from ktstr_vmm.run.shellclient import HELPERS_LINE, bridge, connect, window_size

    tty = os.isatty(0)
    rows, cols = window_size(0) if tty else (0, 0)
    sock, reply = connect(rd.path, tty=tty, rows=rows, cols=cols,
                          term=os.environ.get("TERM", "") if tty else "", primary=primary,
                          by="ktstr shell" if primary else "ktstr shell RUN")
    if tty:
        ends = "exit ends the run" if primary else "exit closes this shell; the run goes on"
        sys.stderr.write(f"ktstr: shell {reply.get('sid')} on {rd.run_id} (guest pid "
                         f"{reply.get('pid')}); {HELPERS_LINE}; {ends}; Ctrl-] detaches\n")
        sys.stderr.flush()
    end = bridge(sock, tty=tty)
    if tty or end.code == 255:
        sys.stderr.write(f"ktstr: shell ended: {end.why}\n")
        sys.stderr.flush()
    return end


# ------------------------------------------------------------------------------ boot

def shell_spec(args: argparse.Namespace):
    from ktstr_vmm.run.shellhub import SHELL_KIND, SHELL_TIMEOUT_S, hold_ms, min_shell_timeout_s
    from ktstr_vmm.spec import DEFAULT_TOPOLOGY, format_duration, parse_duration

    from .run import spec_from_args

    if args.scheduler is None:
        args.scheduler = "scx_simple"
    if args.topology is None:
        args.topology = DEFAULT_TOPOLOGY
    if args.engine is None:
        args.engine = "auto"
    timeout_s = parse_duration(args.timeout, "--timeout") if args.timeout else SHELL_TIMEOUT_S
    args.timeout = None
    spec = spec_from_args(args)
    vcpus = spec.topology.vcpus
    if timeout_s < min_shell_timeout_s(vcpus):
        raise UsageError(f"--timeout {format_duration(timeout_s)} is too short for a shell on "
                         f"{vcpus} vCPUs (booting and stopping take up to "
                         f"{format_duration(min_shell_timeout_s(vcpus) - 10)})",
                         f"use at least {format_duration(min_shell_timeout_s(vcpus))}")
    hold_s = hold_ms(timeout_s, vcpus) / 1000
    kw = {"kind": SHELL_KIND, "timeout_s": timeout_s, "auto_repro": False}
    if args.workload is None:
        kw["workload"] = ()
    if args.duration is None:
        kw["duration_s"] = hold_s  # a --workload runs as long as the shell
    elif parse_duration(args.duration) > hold_s:
        raise UsageError(f"--duration {args.duration} is longer than the shell may last "
                         f"({format_duration(hold_s)} with --timeout {format_duration(timeout_s)})",
                         "raise --timeout")
    return spec.with_changes(**kw)


def boot_and_shell(args: argparse.Namespace) -> int:
    from ktstr_vmm.run.runner import Run, prepare

    from .run import VERDICT_EXIT, LivePhase

    spec = shell_spec(args)
    prep = prepare(spec)
    rd = open_store(args).create_run(spec)
    live = LivePhase()
    talking = threading.Event()  # the terminal belongs to the shell: no phase lines
    ready = threading.Event()
    done: dict = {}

    def on_phase(run_id: str, phase: str, detail: str) -> None:
        if phase in ("running", "evaluating", "done", "interrupted"):
            ready.set()
        if not talking.is_set():
            live.update(run_id, phase, detail)

    run = Run(prep, rd, on_phase)

    def execute() -> None:
        try:
            done["result"] = run.execute()
        except BaseException as e:  # noqa: BLE001 - re-raised on the main thread
            done["error"] = e
        finally:
            ready.set()

    worker = threading.Thread(target=execute, name="ktstr-shell-run", daemon=True)
    worker.start()
    end = None
    try:
        ready.wait()
        if worker.is_alive() and (rd.read_json("status.json") or {}).get("phase") == "running":
            live.finish()
            talking.set()
            try:
                end = _session(rd, primary=True)
            except UsageError as e:  # the run would wait for a shell that never comes
                sys.stderr.write(f"ktstr: no shell: {e.one_line()}; stopping the run\n")
                run.stop_requested.set()
            talking.clear()
        worker.join()
    except KeyboardInterrupt:
        run.stop_requested.set()
        worker.join()
    if "error" in done:
        raise done["error"]
    live.finish()
    result = done.get("result") or {}
    _report(result, args.json)
    if result.get("phase") == "interrupted":
        return 130
    verdict = result.get("verdict", "fail")
    if end is None:
        return VERDICT_EXIT.get(verdict, EXIT_FAIL) or EXIT_FAIL
    if end.code == 0 and verdict in ("fail", "inconclusive"):
        return EXIT_FAIL if verdict == "fail" else EXIT_INCONCLUSIVE
    return end.code


def _report(result: dict, as_json: bool) -> None:
    """On stderr: stdout carries what the guest shell printed."""
    if as_json:
        sys.stderr.write(json.dumps(result, indent=2) + "\n")
        return
    head = result.get("headline") or result.get("reason") or ""
    sys.stderr.write(f"ktstr: {str(result.get('verdict', '?')).upper()} {result.get('run_id')}"
                     f"{' - ' + head if head and result.get('verdict') != 'pass' else ''}; "
                     f"run directory: {result.get('run_dir')}\n")
    sys.stderr.flush()
