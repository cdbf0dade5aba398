"""`bpf-progs.json`: every BPF program the guest kernel held once sched_ext was enabled,
as the agent read it (BPF_OBJ_GET_INFO_BY_FD; wire type 56, BpfProgs). The recorder
writes it, the verifier sweep and the workstation read it. Written by the guest, so the
reader takes nothing on trust: a damaged file or entry is skipped, never raised.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..fsutil import atomic_write_json
from ..guest import messages as gm
from .layout import BPF_PROGS
from .summary import BadFile, load_json_object

# BPF_PROG_TYPE_* numbers by name (include/uapi/linux/bpf.h); others show as the number.
PROG_TYPES = {1: "socket_filter", 2: "kprobe", 5: "tracepoint", 6: "xdp", 7: "perf_event",
              8: "cgroup_skb", 17: "raw_tracepoint", 26: "tracing", 27: "struct_ops",
              28: "ext", 29: "lsm", 31: "syscall"}


@dataclass(frozen=True)
class ProgInfo:
    id: int
    name: str
    type: str  # PROG_TYPES name, or the number
    verified_insns: int
    xlated_len: int
    jited_len: int


@dataclass(frozen=True)
class BpfProgsFile:
    when: str
    guest_ms: int
    progs: tuple[ProgInfo, ...]
    more: int = 0  # programs past the agent's list limit
    error: str = ""  # why the agent's walk stopped early

    @property
    def total_insns(self) -> int:
        return sum(p.verified_insns for p in self.progs)


def to_json(p: gm.BpfProgs) -> dict[str, Any]:
    return {"when": p.when, "guest_ms": p.t_ms, "more": p.more, "error": p.error,
            "progs": [{"id": g.id, "name": g.name, "type": g.type,
                       "verified_insns": g.verified_insns, "xlated_len": g.xlated_len,
                       "jited_len": g.jited_len} for g in p.progs]}


def write(run_dir: Path, p: gm.BpfProgs) -> None:
    atomic_write_json(run_dir / BPF_PROGS, to_json(p))


def read(run_dir: Path) -> BpfProgsFile | None:
    """The run's bpf-progs.json, or None when it has none (the scheduler never enabled
    sched_ext) or it is not a JSON object with a program list."""
    try:
        data = load_json_object(run_dir / BPF_PROGS)
    except BadFile:
        return None
    if data is None or not isinstance(data.get("progs"), list):
        return None
    progs = []
    for p in data["progs"]:
        if not isinstance(p, dict):
            continue
        try:
            kind = int(p.get("type", 0))
            progs.append(ProgInfo(int(p.get("id", 0)), str(p.get("name", ""))[:64],
                                  PROG_TYPES.get(kind, str(kind)),
                                  int(p.get("verified_insns", 0)), int(p.get("xlated_len", 0)),
                                  int(p.get("jited_len", 0))))
        except (TypeError, ValueError):
            continue
    try:
        guest_ms = int(data.get("guest_ms") or 0)
        more = int(data.get("more") or 0)
    except (TypeError, ValueError):
        guest_ms, more = 0, 0
    return BpfProgsFile(str(data.get("when") or "")[:40], guest_ms, tuple(progs), more,
                        str(data.get("error") or "")[:200])
