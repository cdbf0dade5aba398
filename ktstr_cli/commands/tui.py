"""`ktstr tui [PATH] [--demo] [--run RUN-OPTIONS...]`: the Textual workstation.

Textual is imported only when the command runs, so the headless CLI starts fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ktstr_vmm import paths
from ktstr_vmm.errors import UsageError

from . import add_store_option


def register(sub) -> None:
    p = sub.add_parser(
        "tui", help="the interactive workstation: browse runs, watch them live, dig into failures",
        description="Open the run browser of the store; or PATH: a run directory, a "
                    "failure-dump file, a store or a Rust ktstr artifact directory. --run "
                    "starts `ktstr run` with the options that follow and opens it live.")
    p.add_argument("path", nargs="?", type=Path, help="run directory, failure dump, store or artifacts")
    p.add_argument("--demo", action="store_true", help="open the demo store shipped in assets/demo-store")
    add_store_option(p)
    p.add_argument("--gauntlet", metavar="ID", default=None,
                   help="open gauntlet ID's matrix (ktstr gauntlet --list shows them)")
    p.add_argument("--run", dest="run_args", nargs=argparse.REMAINDER, default=None,
                   metavar="RUN-OPTIONS", help="start `ktstr run RUN-OPTIONS` and watch it")
    p.set_defaults(func=cmd_tui)


def resolve(args: argparse.Namespace) -> tuple[Path, Path | None]:
    """(store root, path to open) from the arguments; UsageError for a missing path."""
    store = args.store
    target = None
    if args.demo:
        store = paths.repo_root() / "assets" / "demo-store"
        if not (store / "runs").is_dir():
            raise UsageError(f"no demo store at {store}", "the demo store ships with a source checkout")
    if args.path is not None:
        target = args.path.expanduser()
        if not target.exists():
            raise UsageError(f"no such file or directory: {args.path}")
        target = target.resolve()
        if target.is_dir() and (target / "runs").is_dir():
            store, target = target, None
        elif target.parent.name == "runs" and store is None:
            store = target.parent.parent
    return (store or paths.store_dir()), target


def cmd_tui(args: argparse.Namespace) -> int:
    store, target = resolve(args)
    launch = None
    if args.run_args is not None:
        launch = ["run", *args.run_args]
    from ktstr_tui.app import KtstrApp  # lazily: Textual only for this command

    index = None
    if args.demo:
        index = paths.demo_index(store)
        index.parent.mkdir(parents=True, exist_ok=True)
    gauntlet = None
    if args.gauntlet is not None:
        from ktstr_vmm.gauntlet.record import read_record
        from ktstr_vmm.store.store import Store

        gauntlet = read_record(Store(store), args.gauntlet).id  # a one-line error if unknown
    app = KtstrApp(store, open_path=target, launch_args=launch, index_path=index,
                   open_gauntlet=gauntlet)
    app.run()
    return app.return_code or 0
