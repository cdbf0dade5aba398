"""Failure dumps (ktstr's FailureDumpReport shape) read for the viewer, off the UI thread.

A dump is `{"schema": "single", "maps": [...], "vcpu_regs": [...], ...}`, a dual report
`{"schema": "dual", "early": {...}|absent, "late": {...}}` from auto-repro, or a
placeholder `{"is_placeholder": true, "reason": "..."}` when the VM could not be frozen.
ktstr_vmm.rundir.dumps validates the file (its one-line error is what the viewer shows); the tree
and table read the JSON itself so fields it does not know still show.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ktstr_vmm.errors import KtstrError, StoreError
from ktstr_vmm.rundir.dumptext import map_rows
from ktstr_vmm.rundir.records import load_json_object


@dataclass(frozen=True)
class DumpDoc:
    path: Path
    data: dict[str, Any]

    @property
    def is_placeholder(self) -> bool:
        return bool(self.data.get("is_placeholder"))

    @property
    def reason(self) -> str:
        """Why the state is missing: `reason`, else the first `*_unavailable` note."""
        if self.data.get("reason"):
            return str(self.data["reason"])
        for report in [self.data, *(r for _, r in self.reports())]:
            for k, v in report.items():
                if k.endswith("_unavailable") and v:
                    return str(v)
        return ""

    @property
    def schema(self) -> str:
        return str(self.data.get("schema") or "single")

    def reports(self) -> list[tuple[str, dict[str, Any]]]:
        """(label, FailureDumpReport) pairs: one for single, early/late for dual."""
        if self.schema == "dual":
            out = []
            for label in ("early", "late"):
                r = self.data.get(label)
                if isinstance(r, dict):
                    out.append((label, r))
            return out
        return [("", self.data)]


def load_dump(path: Path) -> DumpDoc:
    """The dump at `path`; StoreError/KtstrError with a one-line reason when it is bad."""
    from ktstr_vmm.rundir.dumps import failure_dump_from_json, load_failure_dump

    data = load_json_object(path, "failure dump")
    if data is None:
        raise StoreError(f"failure dump {path} does not exist")
    if data.get("schema") == "dual":  # auto-repro: validate each snapshot it holds
        if not isinstance(data.get("late"), dict):
            raise StoreError(f"failure dump {path}: a dual dump without its 'late' snapshot")
        for label in ("early", "late"):
            if isinstance(data.get(label), dict):
                try:
                    failure_dump_from_json(data[label])
                except ValueError as e:
                    raise StoreError(f"failure dump {path}: {label}.{e}") from e
    else:
        load_failure_dump(path)  # one-line DumpError naming the bad field
    return DumpDoc(path, data)


def _compact(value: Any, limit: int = 160) -> str:
    if isinstance(value, dict | list):
        text = json.dumps(value, separators=(",", ":"))
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def per_cpu_rows(doc: DumpDoc) -> list[tuple[int, str, str]]:
    """(cpu, what, value) for every per-CPU thing in the dump: vCPU registers and
    PERCPU_ARRAY slots, sorted by CPU."""
    rows: list[tuple[int, str, str]] = []
    for label, report in doc.reports():
        prefix = f"{label}: " if label else ""
        rqs = report.get("rq_scx_states")
        if isinstance(rqs, list):
            for rq in rqs:
                if isinstance(rq, dict) and isinstance(rq.get("cpu"), int):
                    rows.append((rq["cpu"], f"{prefix}rq scx state", " ".join(
                        f"{k}={_fmt_val(v)}" for k, v in rq.items() if k != "cpu")))
        regs = report.get("vcpu_regs")
        if isinstance(regs, list):
            for cpu, r in enumerate(regs):
                value = "<unavailable>" if r is None else (
                    " ".join(f"{k}={_fmt_reg(v)}" for k, v in r.items())
                    if isinstance(r, dict) else _compact(r))
                rows.append((cpu, f"{prefix}vcpu regs", value))
        maps = report.get("maps")
        if isinstance(maps, list):
            for m in maps:
                if not isinstance(m, dict):
                    continue
                for entry in [*(m.get("percpu_entries") or ()),
                              *(m.get("percpu_hash_entries") or ())]:
                    if not isinstance(entry, dict):
                        continue
                    for cpu, v in enumerate(entry.get("per_cpu") or ()):
                        rows.append((cpu, f"{prefix}{m.get('name', '?')}[{entry.get('key')}]",
                                     "<unmapped>" if v is None else _compact(v)))
    rows.sort(key=lambda r: r[0])
    return rows


def map_table_rows(doc: DumpDoc) -> list[tuple[str, str, str, str]]:
    """(map, type, size, contents in short) for every BPF map in the dump (both snapshots
    of a dual dump, labelled)."""
    rows = []
    for label, report in doc.reports():
        maps = report.get("maps")
        if isinstance(maps, list):
            prefix = f"{label}: " if label else ""
            rows += [(prefix + name, *rest) for name, *rest in
                     map_rows([m for m in maps if isinstance(m, dict)])]
    return rows


def _fmt_val(v: Any) -> str:
    return str(v).lower() if isinstance(v, bool) else _compact(v, 40)


def _fmt_reg(v: Any) -> str:
    return f"{v:#x}" if isinstance(v, int) and not isinstance(v, bool) else _compact(v, 40)


__all__ = ["DumpDoc", "KtstrError", "load_dump", "map_table_rows", "per_cpu_rows"]
