"""The run index: `<store>/index.sqlite`, derived data over the run directories.

The index is a cache of RunSummary rows, one per `runs/<run-id>/`, each stamped with the
run directory's mtime. Every whole-file write in a run directory is a rename into it, so
the directory's mtime moves whenever spec.json, status.json or result.json is replaced;
`sync` re-reads only directories whose stamp moved, drops rows whose directory went away,
and re-checks runs whose writer may have died. A stamp younger than the file system's
timestamp granularity is stored as UNSTABLE so a second write in the same tick is not
missed (git's "racy index" rule).

Concurrency: WAL journal, a busy timeout, and every write in one IMMEDIATE transaction, so
two processes syncing at once both succeed and the rows they write are idempotent. A
store that cannot be written (read-only or full disk) still lists: the index is then
kept in memory and the file is left untouched.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from ..errors import StoreError
from ..rundir.layout import VERDICTS
from ..rundir.summary import RunSummary, summarize

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2: gauntlet, gauntlet_cell
UNSTABLE = -1
RACY_WINDOW_NS = 2_000_000_000  # mtimes this close to "now" may hide a second write
BUSY_TIMEOUT_S = 30.0
FULL_RECHECK_S = 30.0  # how stale a finished run's row may get if its files are replaced

FINAL = frozenset(VERDICTS)  # rows re-checked only by the periodic full pass
_COLUMNS = ("run_id", "path", "started", "name", "scheduler", "topology", "preset", "verdict",
            "duration_s", "first_line", "parent", "phase", "error", "gauntlet", "gauntlet_cell")

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    started REAL NOT NULL,
    name TEXT NOT NULL,
    scheduler TEXT NOT NULL,
    topology TEXT NOT NULL,
    preset TEXT,
    verdict TEXT NOT NULL,
    duration_s REAL,
    first_line TEXT NOT NULL,
    parent TEXT,
    phase TEXT,
    error TEXT,
    gauntlet TEXT,
    gauntlet_cell TEXT,
    stamp INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_time ON runs (started DESC, run_id DESC);
CREATE INDEX IF NOT EXISTS runs_by_parent ON runs (parent);
CREATE INDEX IF NOT EXISTS runs_by_gauntlet ON runs (gauntlet);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value REAL);
PRAGMA user_version = {SCHEMA_VERSION};
"""


def scan_runs(runs_dir: Path) -> dict[str, tuple[Path, int]]:
    """run id -> (path, directory mtime in ns) for every run directory (dot names skipped:
    they are runs being created or deleted)."""
    found: dict[str, tuple[Path, int]] = {}
    for name, path in list_run_dirs(runs_dir).items():
        with contextlib.suppress(OSError):  # removed while we looked
            found[name] = (Path(path), os.stat(path, follow_symlinks=False).st_mtime_ns)
    return found


def list_run_dirs(runs_dir: Path) -> dict[str, str]:
    """run id -> path string of every run directory, without a stat per entry."""
    found: dict[str, str] = {}
    try:
        it = os.scandir(runs_dir)
    except FileNotFoundError:
        return found
    except OSError as e:
        raise StoreError(f"cannot list {runs_dir}: {e.strerror}") from e
    with it:
        for entry in it:
            if entry.name.startswith("."):
                continue
            with contextlib.suppress(OSError):
                if entry.is_dir(follow_symlinks=False):
                    found[entry.name] = entry.path
    return found


class Index:
    """The SQLite index of one store. Thread-safe; one connection guarded by a lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.degraded: str | None = None  # why the index lives in memory, if it does
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None

    # ------------------------------------------------------------------ connection

    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        try:
            conn = self._open_file()
        except sqlite3.DatabaseError as e:
            if "not a database" in str(e) or "malformed" in str(e):
                conn = self._replace_broken_file(e)
            else:
                conn = self._open_memory(e)
        self._conn = conn
        return conn

    def _open_file(self) -> sqlite3.Connection:
        if not self.path.parent.is_dir():
            raise sqlite3.OperationalError(f"store {self.path.parent} does not exist")
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                               check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise sqlite3.OperationalError(f"cannot switch the index to WAL (mode {mode})")
            conn.execute("PRAGMA synchronous = NORMAL")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("DROP TABLE IF EXISTS runs")
                conn.execute("COMMIT")
            conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError:
            conn.close()
            raise
        return conn

    def _replace_broken_file(self, err: Exception) -> sqlite3.Connection:
        aside = self.path.with_name(f"{self.path.name}.broken-{int(time.time())}")
        log.warning("index %s is unreadable (%s); moved to %s and rebuilt", self.path, err, aside)
        try:
            os.replace(self.path, aside)
            for suffix in ("-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{self.path}{suffix}")
            return self._open_file()
        except (OSError, sqlite3.DatabaseError) as e:
            return self._open_memory(e)

    def _open_memory(self, err: Exception) -> sqlite3.Connection:
        self.degraded = f"index {self.path} not usable ({err}); using a temporary one"
        log.info("%s", self.degraded)
        conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        conn.executescript(_SCHEMA)
        return conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # ------------------------------------------------------------------ writes

    def sync(self, runs_dir: Path, *, full: bool = False) -> int:
        try:
            return self._sync(runs_dir, full=full)
        except _SwitchedToMemory:
            return self._sync(runs_dir, full=True)  # the new in-memory index starts empty

    def _sync(self, runs_dir: Path, *, full: bool) -> int:
        """Bring the index up to date with `runs_dir`; returns rows (re)written or dropped.

        Directories are listed by name; a stat (and, if the stamp moved, a re-read) is paid
        for new runs, runs not yet final (live, interrupted, corrupt, unstable stamp), and
        for every run once per FULL_RECHECK_S, so a finished run's file replaced behind
        our back is still noticed without a stat of 10,000 directories on every listing.
        """
        with self._lock:
            conn = self._connect()
            on_disk = list_run_dirs(runs_dir)
            known = {rid: (stamp, verdict) for rid, stamp, verdict in conn.execute(
                "SELECT run_id, stamp, verdict FROM runs")}
            now = time.time()
            due = full or self._full_recheck_due(conn, now)
            stale: list[tuple[str, str, int]] = []
            for rid, path in on_disk.items():
                row = known.get(rid)
                if row is not None and not due and row[0] != UNSTABLE and row[1] in FINAL:
                    continue
                try:
                    mtime = os.stat(path, follow_symlinks=False).st_mtime_ns
                except OSError:
                    continue
                if row is None or row[0] != mtime or row[0] == UNSTABLE or row[1] not in FINAL:
                    stamp = UNSTABLE if now * 1e9 - mtime < RACY_WINDOW_NS else mtime
                    stale.append((rid, path, stamp))
            gone = [rid for rid in known if rid not in on_disk]
            fresh = [(summarize(Path(path), rid), stamp) for rid, path, stamp in stale]
            fresh = [(s, st) for s, st in fresh
                     if full or known.get(s.run_id) is None or _row_changed(conn, s, st)]
            if not fresh and not gone and not due:
                return 0
            self._write(conn, fresh, gone, replace_all=False, checked_at=now if due else None)
            return len(fresh) + len(gone)

    def sync_one(self, runs_dir: Path, run_id: str) -> RunSummary | None:
        """Re-read one run now (after a change event); None when its directory is gone."""
        try:
            return self._sync_one(runs_dir, run_id)
        except _SwitchedToMemory:
            self._sync(runs_dir, full=True)
            return self._sync_one(runs_dir, run_id)

    def _sync_one(self, runs_dir: Path, run_id: str) -> RunSummary | None:
        path = runs_dir / run_id
        with self._lock:
            conn = self._connect()
            try:
                mtime = os.stat(path, follow_symlinks=False).st_mtime_ns
            except OSError:
                self._write(conn, [], [run_id], replace_all=False)
                return None
            s = summarize(path, run_id)
            stamp = UNSTABLE if time.time_ns() - mtime < RACY_WINDOW_NS else mtime
            self._write(conn, [(s, stamp)], [], replace_all=False)
            return s

    def _full_recheck_due(self, conn: sqlite3.Connection, now: float) -> bool:
        row = conn.execute("SELECT value FROM meta WHERE key = 'full_check'").fetchone()
        return row is None or not (now - FULL_RECHECK_S < row[0] <= now)

    def rebuild(self, runs_dir: Path) -> int:
        """Drop every row and index `runs_dir` from scratch; returns the number of runs."""
        with self._lock:
            conn = self._connect()
            if self.degraded:
                raise StoreError(f"cannot rebuild the index: {self.degraded}",
                                 "make the store writable (or free space) and retry")
            now_ns = time.time_ns()
            rows = [(summarize(path, rid), UNSTABLE if now_ns - mtime < RACY_WINDOW_NS else mtime)
                    for rid, (path, mtime) in scan_runs(runs_dir).items()]
            self._write(conn, rows, [], replace_all=True, checked_at=time.time())
            return len(rows)

    def _write(self, conn: sqlite3.Connection, rows: Iterable[tuple[RunSummary, int]],
               gone: list[str], *, replace_all: bool, checked_at: float | None = None) -> None:
        placeholders = ", ".join("?" for _ in range(len(_COLUMNS) + 1))
        sql = f"INSERT OR REPLACE INTO runs ({', '.join(_COLUMNS)}, stamp) VALUES ({placeholders})"
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if replace_all:
                    conn.execute("DELETE FROM runs")
                conn.executemany("DELETE FROM runs WHERE run_id = ?", [(g,) for g in gone])
                conn.executemany(sql, [(*_row(s), stamp) for s, stamp in rows])
                if checked_at is not None:
                    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('full_check', ?)",
                                 (checked_at,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as e:
            # Read-only or full disk: the file keeps its last good state.
            if replace_all or self._conn is None:
                raise StoreError(f"cannot write the run index {self.path}: {e}",
                                 _hint(e)) from e
            log.info("index %s not writable (%s); listing from memory", self.path, e)
            conn.close()
            self._conn = self._open_memory(e)
            raise _SwitchedToMemory from e

    def delete(self, run_id: str) -> None:
        with self._lock:
            conn = self._connect()
            with contextlib.suppress(sqlite3.OperationalError):
                conn.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))

    # ------------------------------------------------------------------ reads

    def query(self, where: list[str], params: list[object], *, limit: int | None,
              offset: int) -> list[RunSummary]:
        sql = f"SELECT {', '.join(_COLUMNS)} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(f"({w})" for w in where)
        sql += " ORDER BY started DESC, run_id DESC"
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            params = [*params, limit, offset]
        elif offset:
            sql += " LIMIT -1 OFFSET ?"
            params = [*params, offset]
        with self._lock:
            conn = self._connect()
            return [_summary(r) for r in conn.execute(sql, params)]

    def known(self) -> int:
        """How many runs the index holds (0 for a store never indexed)."""
        with self._lock:
            return self._connect().execute("SELECT COUNT(*) FROM runs").fetchone()[0]

    def ids(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._connect().execute("SELECT run_id FROM runs")]


class _SwitchedToMemory(Exception):
    """The index file stopped taking writes; the in-memory index must be filled anew."""


def _row(s: RunSummary) -> tuple[object, ...]:
    return (s.run_id, str(s.path), s.started, s.name, s.scheduler, s.topology, s.preset,
            s.verdict, s.duration_s, s.first_line, s.parent, s.phase, s.error, s.gauntlet,
            s.gauntlet_cell)


def _summary(r: tuple) -> RunSummary:
    d = dict(zip(_COLUMNS, r, strict=True))
    d["path"] = Path(d["path"])
    return RunSummary(**d)


def _row_changed(conn: sqlite3.Connection, s: RunSummary, stamp: int) -> bool:
    """A live run is re-read on every sync; write only when something differs."""
    cur = conn.execute(f"SELECT {', '.join(_COLUMNS)}, stamp FROM runs WHERE run_id = ?",
                       (s.run_id,)).fetchone()
    return cur is None or tuple(cur) != (*_row(s), stamp)


def _hint(e: Exception) -> str | None:
    text = str(e).lower()
    if "full" in text:
        return "the disk is full: free some space and retry"
    if "readonly" in text or "read-only" in text:
        return "the store is read-only: set KTSTR_HOME to a writable directory"
    return None
