"""The scheduler's global variables while it runs: `bpf.jsonl` in the run directory.

About once a second the monitor thread reads the scheduler's `<obj>.bss` and `<obj>.data`
maps out of guest memory (bpf_maps.MapReader.globals: no pause, no guest involvement) and
appends one line with the variables whose value changed since the last line
(docs/run-directory.md, "bpf.jsonl"). Nothing here raises into the monitor: a failed read
is logged and the next one tried.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from .bpf_maps import MapReader
from .btf import BtfError

log = logging.getLogger(__name__)
_MISSING = object()


class GlobalsRecorder:
    def __init__(self, reader: MapReader, out: Path, every: int) -> None:
        self.reader, self.out, self.every = reader, Path(out), max(1, every)
        self.last: dict[str, dict[str, Any]] = {}
        self.reads = 0
        self.seconds = 0.0  # spent reading the guest's maps

    @classmethod
    def create(cls, sampler: Any, out: Path, every: int) -> GlobalsRecorder | None:
        """A recorder over the monitor's guest memory; None without the kernel's BTF or
        `map_idr` (then there is no bpf.jsonl)."""
        kbtf, map_idr = sampler.mem.btf, sampler.L.sym.get("map_idr")
        if kbtf is None or map_idr is None:
            return None
        try:
            reader = MapReader(sampler.mem, kbtf, map_idr, sampler.per_cpu_offsets,
                               sampler.ncpus)
        except BtfError as e:
            log.info("no BPF globals: %s", e)
            return None
        return cls(reader, out, every)

    def maybe_record(self, sample_no: int, t: float) -> None:
        """Called after every monitor sample; records on every `every`-th."""
        if sample_no % self.every == 0:
            self.record(t)

    def record(self, t: float) -> dict[str, dict[str, Any]]:
        """Read the globals now; append and return what changed ({} when nothing did)."""
        t0 = time.perf_counter()
        try:
            now = self.reader.globals()
        except Exception:
            log.exception("reading the scheduler's globals failed")
            return {}
        finally:
            self.reads += 1
            self.seconds += time.perf_counter() - t0
        changed: dict[str, dict[str, Any]] = {}
        for name, value in now.items():
            fields = value if isinstance(value, dict) else {"value": value}
            old = self.last.get(name, {})
            diff = {k: v for k, v in fields.items() if old.get(k, _MISSING) != v}
            if diff:
                changed[name] = diff
                self.last[name] = {**old, **diff}
        if changed:
            try:
                with open(self.out, "a", encoding="utf-8") as f:
                    f.write(json.dumps({"t": round(t, 3), "maps": changed},
                                       separators=(",", ":")) + "\n")
            except OSError as e:
                log.warning("cannot append to %s: %s", self.out, e)
        return changed


# ---------------------------------------------------------------------- reading it back


def is_format_string(var: str) -> bool:
    """scx's error/printk macros leave their constant format strings in `.data` as
    `<func>.___fmt[.N]`: not state worth showing."""
    return "___fmt" in var


def parse_line(d: Any) -> dict[str, dict[str, Any]] | None:
    """One bpf.jsonl line's `maps` ({map: {variable: value}}, what changed), or None."""
    maps = d.get("maps") if isinstance(d, dict) else None
    if not isinstance(maps, dict):
        return None
    out = {str(k): v for k, v in maps.items() if isinstance(v, dict)}
    return out or None


def merge(lines: list[dict[str, dict[str, Any]]],
          into: dict[tuple[str, str], Any] | None = None) -> dict[tuple[str, str], Any]:
    """The current values after `lines` (parse_line results, in order): {(map, var): value},
    format strings left out."""
    values = {} if into is None else into
    for maps in lines:
        for name, fields in maps.items():
            for var, value in fields.items():
                if not is_format_string(var):
                    values[(name, var)] = value
    return values


def read_lines(path: Path, max_bytes: int = 64 << 20) -> list[dict[str, dict[str, Any]]]:
    """Every parseable line of a bpf.jsonl (a torn last line or garbage is skipped)."""
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes)
    except OSError:
        return []
    out = []
    for raw in data.splitlines():
        try:
            got = parse_line(json.loads(raw))
        except ValueError:
            continue
        if got:
            out.append(got)
    return out
