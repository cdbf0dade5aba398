"""The client's side of the store: the gauntlet record (`<store>/gauntlets/<id>.json`:
matrix, cells, token), which cells are already judged (resume), and putting a run
directory a worker sent back into the store.

A packed run directory comes from another machine and is not trusted: its run id must be
a valid name, every member must be a plain file or directory inside it, and it lands
under a dot name first and is renamed into runs/ whole, so the store never shows half
of it. A run id that is already in the store is left alone (the same run sent twice).
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import shutil
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import StoreError, UsageError
from ..fsutil import atomic_write_json
from ..rundir.layout import GAUNTLETS, VERDICTS
from ..rundir.summary import BadFile, load_json_object
from ..spec import validate_name
from ..store.store import NEW_PREFIX, Store
from .matrix import Cell, Matrix

MAX_MEMBERS = 10_000


@dataclass(frozen=True)
class GauntletRecord:
    id: str
    created: float
    matrix: Matrix
    token: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "created": self.created, "token": self.token,
                "matrix": self.matrix.to_json(),
                "cells": [c.to_json() for c in self.matrix.cells()]}


def record_path(store: Store, gid: str) -> Path:
    return store.root / GAUNTLETS / f"{validate_name(gid, 'gauntlet id')}.json"


def write_record(store: Store, gid: str, matrix: Matrix) -> GauntletRecord:
    rec = GauntletRecord(gid, time.time(), matrix, secrets.token_hex(8))
    path = record_path(store, gid)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, rec.to_json())
    except OSError as e:
        raise StoreError(f"cannot write the gauntlet record {path}: {e.strerror or e}") from e
    return rec


def read_record(store: Store, gid: str) -> GauntletRecord:
    path = record_path(store, gid)
    try:
        data = load_json_object(path)
    except BadFile as e:
        raise UsageError(f"gauntlet record {path} is damaged: {e}") from None
    if data is None:
        raise UsageError(f"no gauntlet '{gid}' in the store {store.root}",
                         "ktstr gauntlet --list shows the gauntlets")
    try:
        return GauntletRecord(str(data["id"]), float(data.get("created") or 0.0),
                              Matrix.from_json(data["matrix"]), str(data.get("token") or ""))
    except (KeyError, TypeError, ValueError) as e:
        raise UsageError(f"gauntlet record {path} is damaged: {e}") from e


def list_records(store: Store) -> list[dict[str, Any]]:
    """Every gauntlet record of the store (readable ones), newest first."""
    out = []
    with contextlib.suppress(OSError):
        for p in (store.root / GAUNTLETS).glob("*.json"):
            if p.name.startswith("."):
                continue
            try:
                data = load_json_object(p)
            except BadFile:  # a damaged record is not listed; --resume says why
                continue
            if data and isinstance(data.get("id"), str):
                out.append(data)
    return sorted(out, key=lambda d: d.get("created") or 0, reverse=True)


def judged_cells(store: Store, gid: str) -> dict[str, str]:
    """cell key -> run id of a run of this gauntlet that has a verdict (newest wins)."""
    done: dict[str, str] = {}
    for s in reversed(store.list_runs(gauntlet=gid)):
        if s.gauntlet_cell and s.verdict in VERDICTS:
            done[s.gauntlet_cell] = s.run_id
    return done


def cells_of(rec: GauntletRecord) -> list[Cell]:
    return rec.matrix.cells()


def unpack_run(store: Store, packed: bytes) -> str:
    """Put a packed run directory into the store; returns its run id."""
    try:
        tar = tarfile.open(fileobj=io.BytesIO(packed), mode="r:")
    except tarfile.TarError as e:
        raise StoreError(f"a worker sent a damaged run directory: {e}") from e
    with tar:
        members = tar.getmembers()
        if not members or len(members) > MAX_MEMBERS:
            raise StoreError(f"a worker sent a run directory with {len(members)} entries")
        run_id = validate_name(PurePosixPath(members[0].name).parts[0], "run id from a worker")
        for m in members:
            parts = PurePosixPath(m.name).parts
            if (not parts or parts[0] != run_id or ".." in parts or m.name.startswith("/")
                    or not (m.isfile() or m.isdir())):
                raise StoreError(f"a worker sent a run directory with a bad entry {m.name!r}")
        final = store.runs_dir / run_id
        if final.exists():
            return run_id
        store.runs_dir.mkdir(parents=True, exist_ok=True)
        tmp = store.runs_dir / f"{NEW_PREFIX}{run_id}-{secrets.token_hex(4)}"
        tmp.mkdir()
        try:
            for m in members:
                rel = PurePosixPath(*PurePosixPath(m.name).parts[1:])
                dest = tmp / rel
                if m.isdir():
                    dest.mkdir(parents=True, exist_ok=True)
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(m)
                with open(dest, "wb") as f:
                    if src is not None:
                        shutil.copyfileobj(src, f)
                    f.flush()
                    os.fsync(f.fileno())
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    store.refresh_run(run_id)
    return run_id
