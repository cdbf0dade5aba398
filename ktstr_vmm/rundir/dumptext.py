"""A failure dump's BPF maps in short, for `ktstr show` and the TUI's dump viewer."""

from __future__ import annotations

import json
from typing import Any

from ..introspect.bpf_types import MAP_TYPES

MAP_LINE = 110  # characters of a map's contents shown on its line


def map_rows(maps: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    """(name, type, "value size B x entries", contents in short) per BPF map: a one-entry
    array's fields, how many entries a keyed map holds and the first few, or the reason
    its contents are absent. The scheduler's globals come first (`.bss`, `.data`), then its
    other maps in the dump's order, `.rodata` and maps shown without contents last."""
    rows = []
    for m in sorted(maps, key=_order):
        mtype = m.get("map_type")
        size = f"{m.get('value_size', '?')} B x {m.get('max_entries', '?')}"
        rows.append((str(m.get("name", "?")), MAP_TYPES.get(mtype, str(mtype)), size,
                     _map_contents(m)))
    return rows


def _map_contents(m: dict[str, Any]) -> str:
    if isinstance(m.get("error"), str):
        return m["error"]
    if "value" in m:
        v = m["value"]
        text = " ".join(f"{k}={short(x)}" for k, x in v.items()) if isinstance(v, dict) \
            else short(v)
    else:
        entries = next((m[k] for k in ("entries", "percpu_entries", "percpu_hash_entries")
                        if isinstance(m.get(k), list)), None)
        if entries is None:
            return ""
        text = f"{len(entries)} entries" + (": " if entries else "") + " | ".join(
            f"[{short(e.get('key'))}] {short(e.get('value', e.get('per_cpu')))}"
            for e in entries[:4] if isinstance(e, dict))
    return text if len(text) <= MAP_LINE else text[:MAP_LINE - 3] + "..."


def short(v: Any) -> str:
    """A value in one short line: scalars as they are, plain lists space-separated, the
    rest compact JSON."""
    if isinstance(v, bool) or v is None:
        return json.dumps(v)
    if isinstance(v, list) and all(not isinstance(x, (dict, list)) for x in v):
        return " ".join(short(x) for x in v)
    if isinstance(v, (dict, list)):
        return json.dumps(v, separators=(",", ":"))
    if isinstance(v, str):
        return json.dumps(v) if " " in v or not v else v
    return str(v)


def _order(m: dict[str, Any]) -> int:
    name = str(m.get("name", ""))
    if name.endswith(".bss"):
        return 0
    if name.endswith(".data"):
        return 1
    if name.endswith(".rodata") or "error" in m:
        return 3
    return 2
