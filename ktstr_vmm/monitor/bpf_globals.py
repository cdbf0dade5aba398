"""The scheduler's global variables while it runs: the writer of `bpf.jsonl`.

About once a second the monitor thread reads the scheduler's `<obj>.bss` and `<obj>.data`
maps out of guest memory (bpf_maps.MapReader.globals: no pause, no guest involvement) and
appends one line with the variables whose value changed since the last line
(docs/run-directory.md, "bpf.jsonl"; read back by rundir/bpf_globals.py). Nothing here
raises into the monitor: a failed read is logged and the next one tried.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from ..introspect.bpf_maps import MapReader
from ..introspect.btf import BtfError

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
