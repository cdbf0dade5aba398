"""The run store: `<store>/runs/<run-id>/` directories and the index over them.

The run directories are the truth (docs/run-directory.md); `index.sqlite` is derived and
brought up to date on every listing, so a run written by another process shows up
without an explicit reindex. Runs are found by id, unique prefix or unique substring.
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import logging
import os
import secrets
import shutil
import time
from pathlib import Path

from .. import paths
from ..errors import StoreError, UsageError
from ..fsutil import atomic_write_json, hint_for
from ..rundir.layout import LIVE_PHASES, REPRO, SPEC, RunDir, new_run_id
from ..rundir.summary import ALL_VERDICTS, RunSummary, summarize
from ..spec import RunSpec, parse_topology
from .index import Index, list_run_dirs, scan_runs

log = logging.getLogger(__name__)

__all__ = ["RunSummary", "Store", "ALL_VERDICTS"]

NEW_PREFIX = ".new-"
DELETING_PREFIX = ".deleting-"
STALE_TEMP_S = 3600.0


class Store:
    """One run store. `root` None means paths.store_dir() ($KTSTR_HOME or the data dir).
    `index_path` puts the derived index elsewhere than `<root>/index.sqlite` (a store that
    must not be written to, like the demo store shipped inside the package)."""

    def __init__(self, root: Path | None = None, *, index_path: Path | None = None) -> None:
        self.root = Path(root) if root is not None else paths.store_dir()
        self.runs_dir = self.root / "runs"
        self.index = Index(Path(index_path) if index_path else self.root / "index.sqlite")

    def close(self) -> None:
        self.index.close()

    # ------------------------------------------------------------------ writing

    def create_run(self, spec: RunSpec) -> RunDir:
        """Make runs/<new id>/ holding spec.json and a pending status.json.

        The directory is filled under a dot name and renamed into place, so a reader
        never sees a half-made run; two writers that draw the same id retry with a new one.
        """
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise _store_error(f"cannot create {self.runs_dir}", e) from e
        topo = spec.topology_requested or spec.preset or spec.topology.notation
        for _ in range(100):
            run_id = new_run_id(spec.name, spec.scheduler, topo)
            tmp = self.runs_dir / f"{NEW_PREFIX}{run_id}-{secrets.token_hex(4)}"
            try:
                tmp.mkdir()
            except OSError as e:
                raise _store_error(f"cannot create a run directory in {self.runs_dir}", e) from e
            try:
                atomic_write_json(tmp / SPEC, spec.to_json())
                RunDir(tmp).write_status("pending")
                os.rename(tmp, self.runs_dir / run_id)
            except OSError as e:
                shutil.rmtree(tmp, ignore_errors=True)
                if e.errno in (errno.EEXIST, errno.ENOTEMPTY):
                    continue  # another writer took this id in the same second
                raise _store_error(f"cannot create run {run_id}", e) from e
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            return RunDir(self.runs_dir / run_id)
        raise StoreError(f"cannot find a free run id in {self.runs_dir}")

    def delete_run(self, run_ref: str) -> None:
        """Remove a finished run's directory and its index row. A live run is refused."""
        run_id, path = self._resolve(run_ref)
        if "/" in run_id:
            raise UsageError(f"'{run_id}' is part of run {run_id.split('/')[0]}",
                             "delete the whole run instead")
        s = summarize(path, run_id)
        if s.is_live:
            raise UsageError(f"run {run_id} is still {s.verdict}", "stop it first, then delete it")
        doomed = self.runs_dir / f"{DELETING_PREFIX}{run_id}-{secrets.token_hex(4)}"
        try:
            os.rename(path, doomed)
        except OSError as e:
            raise _store_error(f"cannot delete run {run_id}", e) from e
        shutil.rmtree(doomed, ignore_errors=True)
        self.index.delete(run_id)

    # ------------------------------------------------------------------ reading

    def reindex(self) -> int:
        """Rebuild index.sqlite from the run directories; returns the number of runs."""
        self._sweep_temp_dirs()
        return self.index.rebuild(self.runs_dir)

    def refresh(self) -> int:
        """Bring the index up to date (done by every listing); returns rows changed.
        New runs and runs not yet finished are always re-checked; a finished run whose
        files are replaced later is noticed within storeindex.FULL_RECHECK_S, at once
        through refresh_run(), or by reindex()."""
        return self.index.sync(self.runs_dir)

    def refresh_run(self, run_id: str) -> RunSummary | None:
        """Re-read one run into the index now (the TUI calls this on a watcher event);
        None when the run directory is gone."""
        return self.index.sync_one(self.runs_dir, run_id)

    def peek_newest(self, limit: int, *, unindexed_over: int = 500) -> list[RunSummary] | None:
        """Before a big store's first index build (about 1 s per 10,000 runs): the newest
        `limit` runs by run id (ids begin with their start time) read straight from their
        directories, so a screen can show them at once. None when the index already knows
        most runs or the store is small - list_runs() is as fast then."""
        on_disk = list_run_dirs(self.runs_dir)
        if len(on_disk) < unindexed_over or self.index.known() >= len(on_disk) // 2:
            return None
        newest = sorted(on_disk, reverse=True)[:limit]
        return [summarize(Path(on_disk[rid]), rid) for rid in newest]

    def list_runs(self, *, verdict: str | None = None, scheduler: str | None = None,
                  topology: str | None = None, since: float | None = None,
                  text: str | None = None, limit: int | None = None,
                  offset: int = 0, gauntlet: str | None = None) -> list[RunSummary]:
        """Runs newest first. `verdict` "running" matches every live phase; `topology`
        takes a preset name or notation; `since` is a Unix time; `text` is a substring of
        the id, name, scheduler, topology or first line of the message."""
        if self.runs_dir.is_dir():
            self.refresh()
        where: list[str] = []
        params: list[object] = []
        if verdict:
            if verdict not in ALL_VERDICTS:
                close = difflib.get_close_matches(verdict, ALL_VERDICTS, n=1)
                raise UsageError(f"unknown verdict '{verdict}'",
                                 f"did you mean {close[0]}?" if close
                                 else f"one of {', '.join(ALL_VERDICTS)}")
            if verdict == "running":
                where.append(f"verdict IN ({', '.join('?' for _ in LIVE_PHASES)})")
                params.extend(LIVE_PHASES)
            else:
                where.append("verdict = ?")
                params.append(verdict)
        if scheduler:
            where.append("scheduler = ? OR scheduler LIKE ? ESCAPE '\\'")
            params += [scheduler, "%/" + _like_escape(scheduler)]
        if topology:
            try:
                notation = parse_topology(topology).notation
            except UsageError:
                notation = topology
            where.append("topology = ? OR topology = ? OR preset = ?")
            params += [notation, topology, topology]
        if since is not None:
            where.append("started >= ?")
            params.append(since)
        if text:
            pat = f"%{_like_escape(text)}%"
            where.append(" OR ".join(f"{c} LIKE ? ESCAPE '\\'" for c in
                                     ("run_id", "name", "scheduler", "topology", "first_line")))
            params += [pat] * 5
        if gauntlet:
            where.append("gauntlet = ?")
            params.append(gauntlet)
        if not self.runs_dir.is_dir():
            return []  # no store yet: nothing to list, nothing to create
        return self.index.query(where, params, limit=limit, offset=offset)

    def get(self, run_ref: str) -> RunSummary:
        """A run by id, unique prefix or unique substring (or `<id>/repro`), read fresh."""
        run_id, path = self._resolve(run_ref)
        return summarize(path, run_id)

    def run_dir(self, run_ref: str) -> RunDir:
        return RunDir(self._resolve(run_ref)[1])

    def children(self, run_id: str) -> list[RunSummary]:
        """Runs whose parent is `run_id`: reruns and repros in the store, and the
        auto-repro nested in the run's own `repro/` directory (id `<run_id>/repro`)."""
        self.refresh()
        kids = self.index.query(["parent = ?"], [run_id], limit=None, offset=0)
        nested = self.runs_dir / run_id / REPRO
        if (nested / SPEC).is_file():
            kids.append(summarize(nested, f"{run_id}/{REPRO}"))
        return kids

    # ------------------------------------------------------------------ internals

    def _resolve(self, run_ref: str) -> tuple[str, Path]:
        ref = run_ref.strip().rstrip("/")
        if not ref:
            raise UsageError("empty run id", "`ktstr runs` lists the runs")
        head, _, rest = ref.partition("/")
        if rest:
            run_id, path = self._resolve(head)
            nested = path / rest
            if rest != REPRO or not nested.is_dir():
                raise UsageError(f"run {run_id} has no nested run '{rest}'",
                                 f"only '{run_id}/{REPRO}' can name a nested run")
            return f"{run_id}/{rest}", nested
        ids = sorted(scan_runs(self.runs_dir), reverse=True)
        if ref in ids:
            return ref, self.runs_dir / ref
        for matches in ([i for i in ids if i.startswith(ref)], [i for i in ids if ref in i]):
            if len(matches) == 1:
                return matches[0], self.runs_dir / matches[0]
            if matches:
                shown = ", ".join(matches[:3])
                raise UsageError(f"run '{ref}' is ambiguous: {len(matches)} runs match",
                                 f"{shown}{', ...' if len(matches) > 3 else ''}; give more of the id")
        close = difflib.get_close_matches(ref, ids, n=3, cutoff=0.5)
        if close:
            raise UsageError(f"no run '{ref}' in {self.runs_dir}", f"closest: {', '.join(close)}")
        raise UsageError(f"no run '{ref}' in {self.runs_dir}", "`ktstr runs` lists the runs")

    def _sweep_temp_dirs(self) -> None:
        """Remove half-made or half-deleted run dirs left by processes that died."""
        try:
            entries = list(os.scandir(self.runs_dir))
        except OSError:
            return
        now = time.time()
        for e in entries:
            if e.name.startswith((NEW_PREFIX, DELETING_PREFIX)):
                with contextlib.suppress(OSError):
                    if now - e.stat(follow_symlinks=False).st_mtime > STALE_TEMP_S:
                        shutil.rmtree(e.path, ignore_errors=True)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _store_error(what: str, e: OSError) -> StoreError:
    return StoreError(f"{what}: {os.strerror(e.errno or errno.EIO)}", hint_for(e))
