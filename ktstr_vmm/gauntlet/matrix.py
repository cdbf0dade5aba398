"""What a gauntlet runs: the matrix (schedulers x topologies x kernels x repeats, one
workload and duration) from command-line options or a TOML file, and its cells.

Everything is checked here, before any VM starts: unknown keys, bad values, topologies
and globs that match nothing, schedulers that are not built, kernels that do not exist.
Each problem is one line naming the file, the key and the fix.
"""

from __future__ import annotations

import fnmatch
import secrets
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import KtstrError, UsageError
from ..kernel.kernels import resolve_kernel
from ..kernel.schedulers import resolve_scheduler
from ..spec import (
    PRESETS,
    parse_duration,
    parse_topology,
    parse_workload,
    validate_name,
)

MAX_REPEAT = 100
MAX_CELLS = 10_000
# The keys of a matrix file; `ktstr gauntlet --help` shows an example.
FILE_KEYS = ("schedulers", "topologies", "kernels", "workload", "duration", "repeat",
             "sched_args", "verifier")
VERIFIER_DURATION_S = 1.0


@dataclass(frozen=True)
class Matrix:
    """The gauntlet's dimensions, already validated (topologies as the names given)."""

    schedulers: tuple[str, ...]
    topologies: tuple[str, ...]
    kernels: tuple[str | None, ...]  # kernel versions; (None,) = the newest cached
    workload: str = ""
    duration_s: float = 5.0
    repeat: int = 1
    sched_args: str | None = None
    verifier: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"schedulers": list(self.schedulers), "topologies": list(self.topologies),
                "kernels": list(self.kernels), "workload": self.workload,
                "duration_s": self.duration_s, "repeat": self.repeat,
                "sched_args": self.sched_args, "verifier": self.verifier}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Matrix:
        try:
            return cls(schedulers=tuple(str(s) for s in d["schedulers"]),
                       topologies=tuple(str(t) for t in d["topologies"]),
                       kernels=tuple(None if k is None else str(k) for k in d["kernels"]),
                       workload=str(d.get("workload") or ""),
                       duration_s=float(d.get("duration_s", 5.0)),
                       repeat=int(d.get("repeat", 1)),
                       sched_args=d.get("sched_args"), verifier=bool(d.get("verifier")))
        except (KeyError, TypeError, ValueError) as e:
            raise UsageError(f"bad gauntlet matrix: {type(e).__name__}: {e}") from e

    def cells(self) -> list[Cell]:
        """Every cell, topology-major (the matrix screen's row order)."""
        return [Cell(s, t, k, r) for t in self.topologies for s in self.schedulers
                for k in self.kernels for r in range(1, self.repeat + 1)]


@dataclass(frozen=True)
class Cell:
    """One `ktstr run` of the gauntlet."""

    scheduler: str
    topology: str
    kernel: str | None
    repeat: int = 1

    @property
    def key(self) -> str:
        """Stable within a gauntlet; stored as spec.json `gauntlet_cell`."""
        return f"{self.scheduler}|{self.topology}|{self.kernel or 'newest'}|{self.repeat}"

    @property
    def label(self) -> str:
        sched = self.scheduler.rsplit("/", 1)[-1]
        rep = f" #{self.repeat}" if self.repeat > 1 else ""
        kern = f" {self.kernel}" if self.kernel else ""
        return f"{sched} on {self.topology}{kern}{rep}"

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "scheduler": self.scheduler, "topology": self.topology,
                "kernel": self.kernel, "repeat": self.repeat}

    @classmethod
    def from_key(cls, key: str) -> Cell | None:
        parts = key.split("|")
        if len(parts) != 4 or not parts[3].isdigit():
            return None
        return cls(parts[0], parts[1], None if parts[2] == "newest" else parts[2], int(parts[3]))


def new_gauntlet_id(now: float | None = None) -> str:
    """g-20261202-031500-3f9a: sortable by time, a valid name."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now if now is not None else time.time()))
    return f"g-{stamp}-{secrets.token_hex(2)}"


# --------------------------------------------------------------------------- parsing


def split_list(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def expand_topologies(items: list[str], where: str = "--topologies") -> tuple[str, ...]:
    """'all', preset names, notations and preset globs (tiny-*, *-nosmt) -> names, in the
    order given (presets in ktstr's order for 'all' and globs), without duplicates."""
    out: list[str] = []
    for item in items:
        if item == "all":
            names = list(PRESETS)
        elif any(c in item for c in "*?["):
            names = [n for n in PRESETS if fnmatch.fnmatchcase(n, item)]
            if not names:
                raise UsageError(f"{where}: '{item}' matches no topology preset",
                                 "see ktstr topologies")
        else:
            try:
                parse_topology(item)
            except UsageError as e:
                raise UsageError(f"{where}: {e.message}", e.hint) from None
            names = [item]
        out += [n for n in names if n not in out]
    if not out:
        raise UsageError(f"{where}: no topology given", "use all, preset names or globs")
    return tuple(out)


def matrix_from_options(schedulers: str | None, topologies: str | None, kernels: str | None,
                        workload: str | None, duration: str | None, repeat: int | None,
                        sched_args: str | None, verifier: bool) -> Matrix:
    scheds = split_list(schedulers or "scx_simple")
    if not scheds:
        raise UsageError("-s/--schedulers: no scheduler given", "use -s scx_simple,scx_central")
    topos = expand_topologies(split_list(topologies or "tiny-2llc"))
    kerns = tuple(split_list(kernels)) if kernels else (None,)
    return _checked(scheds, topos, kerns, workload, duration, repeat, sched_args, verifier,
                    "option")


def matrix_from_file(path: Path) -> Matrix:
    """A TOML matrix file -> Matrix; every problem is one line naming the file and key."""
    where = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise UsageError(f"cannot read matrix file {where}: {e.strerror or e}") from e
    except UnicodeDecodeError:
        raise UsageError(f"{where}: not UTF-8 text", "write the matrix as TOML") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{where}: not valid TOML: {e}", "see ktstr gauntlet --help") from None
    for key in data:
        if key not in FILE_KEYS:
            raise UsageError(f"{where}: unknown key '{key}'", f"keys are {', '.join(FILE_KEYS)}")

    def str_list(key: str, required: bool) -> list[str] | None:
        v = data.get(key)
        if v is None:
            if required:
                raise UsageError(f"{where}: '{key}' is missing",
                                 f"add {key} = [\"...\"] to the file")
            return None
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list) or not v or not all(isinstance(x, str) and x for x in v):
            raise UsageError(f"{where}: '{key}' must be a non-empty list of strings",
                             f"like {key} = [\"a\", \"b\"]")
        return v

    scheds = str_list("schedulers", True) or []
    topos = expand_topologies(str_list("topologies", True) or [], f"{where}: 'topologies'")
    kerns = tuple(str_list("kernels", False) or ()) or (None,)

    def opt(key: str, kind: type, what: str) -> Any:
        v = data.get(key)
        if v is not None and (not isinstance(v, kind) or isinstance(v, bool) and kind is not bool):
            raise UsageError(f"{where}: '{key}' must be {what}")
        return v

    workload = opt("workload", str, "a string like \"spin:4,sleep:2\"")
    duration = data.get("duration")
    if duration is not None and (isinstance(duration, bool)
                                 or not isinstance(duration, (str, int, float))):
        raise UsageError(f"{where}: 'duration' must be a string like \"5s\" or seconds")
    repeat = opt("repeat", int, "a whole number")
    sched_args = opt("sched_args", str, "a string")
    verifier = bool(opt("verifier", bool, "true or false"))
    return _checked(scheds, topos, kerns, workload,
                    None if duration is None else str(duration), repeat, sched_args, verifier,
                    f"{where}:")


def _checked(scheds: list[str], topos: tuple[str, ...], kerns: tuple[str | None, ...],
             workload: str | None, duration: str | None, repeat: int | None,
             sched_args: str | None, verifier: bool, where: str) -> Matrix:
    pre = f"{where} " if where.endswith(":") else ""
    try:
        if workload is not None:
            parse_workload(workload)
        dur = (parse_duration(duration, "duration") if duration is not None
               else VERIFIER_DURATION_S if verifier else 5.0)
        if sched_args is not None:
            import shlex

            shlex.split(sched_args)
    except UsageError as e:
        raise UsageError(f"{pre}{e.message}", e.hint) from None
    except ValueError as e:
        raise UsageError(f"{pre}bad sched_args: {e}") from None
    rep = 1 if repeat is None else repeat
    if not 1 <= rep <= MAX_REPEAT:
        raise UsageError(f"{pre}repeat {rep} is out of range", f"use 1 to {MAX_REPEAT}")
    for s in scheds:
        if "|" in s:
            raise UsageError(f"{pre}bad scheduler '{s}': '|' is not allowed in a name or path")
    m = Matrix(tuple(dict.fromkeys(scheds)), topos, tuple(dict.fromkeys(kerns)),
               workload or "", dur, rep, sched_args, verifier)
    n = len(m.schedulers) * len(m.topologies) * len(m.kernels) * m.repeat
    if n > MAX_CELLS:
        raise UsageError(f"{pre}the matrix has {n} cells, over {MAX_CELLS}",
                         "split it into several gauntlets")
    return m


def resolve(m: Matrix) -> Matrix:
    """Check that every kernel exists and every scheduler is built for it, on this machine,
    before any VM starts; kernels become their cache versions (what workers look up)."""

    kernels: list[str | None] = []
    for k in m.kernels:
        try:
            kernel = resolve_kernel(k)
        except KtstrError as e:
            hint = ("--kernels takes cached versions (ktstr kernel list), bzImages, vmlinux "
                    "files or build trees" if k is not None else e.hint)
            raise UsageError(f"kernel '{k or 'newest cached'}': {e.message}", hint) from None
        for s in m.schedulers:
            if s in ("none", "eevdf"):
                continue
            try:
                resolve_scheduler(s, kernel)
            except KtstrError as e:
                raise UsageError(f"scheduler '{s}' for kernel {kernel.version}: {e.message}",
                                 e.hint) from None
        kernels.append(kernel.version if k is not None else None)
    return Matrix(m.schedulers, m.topologies, tuple(kernels), m.workload, m.duration_s,
                  m.repeat, m.sched_args, m.verifier)


def check_id(gid: str) -> str:
    return validate_name(gid, "gauntlet id")
