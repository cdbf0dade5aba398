"""Reading a run's periodic captures (the reader side of periodic.py's files):
`captures.jsonl` (one record per planned capture) and `captures/periodic_NNN.json` (a
FailureDump each). Used by the judge, `ktstr show` and the TUI; never raises on a bad line.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .layout import CAPTURES, CAPTURES_INDEX

_FILE = re.compile(rf"^{CAPTURES}/periodic_\d{{3}}\.json$")


def read_index(run_dir: Path) -> list[dict[str, Any]]:
    """captures.jsonl's records in order; lines that are not a record with a tag are
    skipped; [] without the file."""
    out: list[dict[str, Any]] = []
    try:
        text = (Path(run_dir) / CAPTURES_INDEX).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return out
    for line in text.splitlines():
        try:
            d = json.loads(line)
        except ValueError:
            continue
        if isinstance(d, dict) and isinstance(d.get("tag"), str):
            out.append(d)
    return out


def capture_file(run_dir: Path, record: dict[str, Any]) -> Path | None:
    """The capture's JSON file, or None for a skipped capture or a record whose `file` is
    not a capture file name (nothing outside captures/ is ever opened)."""
    f = record.get("file")
    if not isinstance(f, str) or not _FILE.match(f):
        return None
    return Path(run_dir) / f


def describe(record: dict[str, Any]) -> str:
    """One line for a list: `periodic_002  +2006ms  frozen 55.9 ms` or `... skipped: why`."""
    tag = str(record.get("tag"))
    if record.get("skipped") or "file" not in record:
        return f"{tag}  at {record.get('at_ms')}ms  skipped: {record.get('skipped', '?')}"
    frozen = record.get("frozen_ms")
    return (f"{tag}  +{record.get('elapsed_ms', record.get('at_ms'))}ms"
            + (f"  frozen {frozen} ms" if isinstance(frozen, int | float) else ""))
