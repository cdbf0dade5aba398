"""`bpf.jsonl` read back: the scheduler's global variables as the monitor recorded them
(written by monitor/bpf_globals.py; format in docs/run-directory.md, "bpf.jsonl").
Serves `ktstr show RUN` and both TUI screens.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


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
