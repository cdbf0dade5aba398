"""`ktstr` entry point: argparse over the command modules in ktstr_cli.commands.

Each command module exposes `register(subparsers)`, which adds its parser(s) and sets
`func` (args -> exit code). Expected failures are KtstrError: one line on stderr,
`exit_code` as the process status. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from ktstr_vmm import __version__
from ktstr_vmm.errors import KtstrError

# Order is the order of `ktstr --help`.
COMMAND_MODULES: tuple[str, ...] = (
    "run",
    "live",
    "shell",
    "kernel",
    "schedulers",
    "doctor",
    "runs",
    "tui",
    "repro",
    "rerun",
    "compare",
    "trace",
    "gauntlet",
    "workloads",
    "selftest",
)


# The commands each module registers, so `ktstr CMD ...` imports only CMD's module (every
# command module pulls in its part of the library; `ktstr tui` starts ~0.1 s sooner).
COMMAND_NAMES: dict[str, str] = {
    "run": "run", "topologies": "run",
    "pause": "live", "resume": "live", "snapshot": "live", "stop": "live", "shell": "shell",
    "kernel": "kernel", "schedulers": "schedulers", "doctor": "doctor",
    "runs": "runs", "show": "runs", "tui": "tui",
    "repro": "repro", "rerun": "rerun", "compare": "compare",
    "trace": "trace", "workloads": "workloads",
    "gauntlet": "gauntlet",
    "selftest": "selftest",
}


def _wanted_module(argv: list[str]) -> str | None:
    """The module of the command named in argv (None: help, or an unknown word)."""
    words = [a for a in argv if not a.startswith("-")]
    return COMMAND_NAMES.get(words[0]) if words else None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ktstr",
        description="Boot real kernels with sched_ext schedulers in VMs, watch, judge, debug.",
    )
    parser.add_argument("--version", action="version", version=f"ktstr {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in ((only,) if only else COMMAND_MODULES):
        importlib.import_module(f"ktstr_cli.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--version" in argv and not [a for a in argv if not a.startswith("-")]:
        print(f"ktstr {__version__}")  # without building every command's parser
        return 0
    parser = build_parser(_wanted_module(argv))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="ktstr: %(levelname)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KtstrError as e:
        print(f"ktstr: error: {e.one_line()}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("ktstr: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `ktstr runs | head`: the reader went away; not an error worth a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
