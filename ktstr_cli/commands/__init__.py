"""One module per `ktstr` command group; each exposes register(subparsers)."""

from __future__ import annotations

import argparse
from pathlib import Path

STORE_HELP = "the store to read (default: $KTSTR_HOME, else the user data dir)"


def add_store_option(p: argparse.ArgumentParser) -> None:
    """`--store DIR` for a command that reads runs (sets args.store; None = the default)."""
    p.add_argument("--store", type=Path, default=None, metavar="DIR", help=STORE_HELP)


def open_store(args: argparse.Namespace):
    """The Store named by --store (or $KTSTR_HOME / the user data dir)."""
    from ktstr_vmm.store.store import Store

    return Store(getattr(args, "store", None))
