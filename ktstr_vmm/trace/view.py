"""What the per-CPU timeline draws, computed from the trace's records by index lookups.

`TimelineModel` keeps, per CPU, the time of every sched_switch and the task it put on the
CPU (two compact arrays, built once when the trace is opened, or grown page by page while
a run is live). Drawing a frame asks `cells()` which task held each column of a lane: a
few bisections per column (the task at `samples` points, the most frequent one wins), so a
frame costs the same for a thousand events as for millions. Selecting a task gathers its
wakeups, migrations and switches once (`task_marks`).
"""

from __future__ import annotations

import bisect
import json
from array import array
from collections import Counter
from dataclasses import dataclass, field
from itertools import compress
from pathlib import Path

from .files import FORMATS, RECORD, RECORD_SIZE, TRACE_DIR, Trace, _pack, page_runs
from .ftrace import (
    KIND_MIGRATE,
    KIND_SCX_EXIT,
    KIND_SWITCH,
    KIND_WAKEUP,
    KIND_WAKEUP_NEW,
    Formats,
    PageDecoder,
    comm_text,
)

UNKNOWN, IDLE = -1, 0


@dataclass
class Lane:
    cpu: int
    sw_ts: array = field(default_factory=lambda: array("Q"))
    sw_pid: array = field(default_factory=lambda: array("i"))
    raw: object = b""  # the CPU's records (bytes-like, RECORD_SIZE each)

    def add_records(self, chunk) -> None:
        """Index the switches of a run of records (bytes-like, whole records)."""
        if not len(chunk):
            return
        mv = memoryview(chunk)
        try:
            kinds = mv.cast("H")[4::RECORD_SIZE // 2].tolist()
            is_sw = [k == KIND_SWITCH for k in kinds]
            self.sw_ts.extend(compress(mv.cast("Q")[::RECORD_SIZE // 8].tolist(), is_sw))
            self.sw_pid.extend(compress(mv.cast("i")[3::RECORD_SIZE // 4].tolist(), is_sw))
        finally:
            mv.release()

    def pid_at(self, t: int) -> int:
        i = bisect.bisect_right(self.sw_ts, t)
        return self.sw_pid[i - 1] if i else UNKNOWN

    @property
    def n_records(self) -> int:
        return len(self.raw) // RECORD_SIZE

    def record(self, i: int) -> tuple:
        return RECORD.unpack_from(self.raw, i * RECORD_SIZE)


@dataclass(frozen=True)
class Mark:
    ts: int
    cpu: int
    kind: str  # "wakeup" | "migrate" | "run" | "wait"
    text: str
    end: int = 0  # "wait": when it ran


class MarkIndex:
    """A selected task's marks, indexed by time for drawing: points (wakeups, migrations)
    by their time, waits by their end (a task waits once at a time, so ends are in order
    too). `in_window` costs two bisections plus what is visible."""

    def __init__(self, marks: list[Mark]) -> None:
        self.all = marks
        self.points = [m for m in marks if m.kind in ("wakeup", "migrate")]
        self.points_ts = [m.ts for m in self.points]
        self.waits = sorted((m for m in marks if m.kind == "wait"), key=lambda m: m.end)
        self.waits_end = [m.end for m in self.waits]

    def __len__(self) -> int:
        return len(self.all)

    def __iter__(self):
        return iter(self.all)

    def in_window(self, t0: int, t1: int, limit: int = 400) -> list[Mark]:
        """The marks that touch [t0, t1); at most `limit` of each sort, evenly sampled
        when there are more (more than a frame has columns for)."""
        i = bisect.bisect_right(self.waits_end, t0)
        j = bisect.bisect_left(self.waits_end, t1)
        j = min(len(self.waits), j + 1)  # the one that ends after t1 may start before it
        out = [m for m in _sample(self.waits, i, j, limit) if m.ts < t1]
        i = bisect.bisect_left(self.points_ts, t0)
        j = bisect.bisect_left(self.points_ts, t1)
        return out + _sample(self.points, i, j, limit)


def _sample(items: list, i: int, j: int, limit: int) -> list:
    n = j - i
    if n <= limit:
        return items[i:j]
    return [items[i + k * n // limit] for k in range(limit)]


class TimelineModel:
    """Lanes per CPU, task names, time range; `live=True` grows from trace/cpu*.pages."""

    def __init__(self, lanes: dict[int, Lane], names: dict[int, str], *,
                 notes: tuple[str, ...] = (), run_path: Path | None = None) -> None:
        self.lanes = lanes
        self.names = names
        self.notes = notes
        self.run_path = run_path
        self._live: dict[int, int] | None = None  # cpu -> bytes of .pages consumed
        self._pages: dict[int, int] = {}  # cpu -> pages consumed
        self._decoder: PageDecoder | None = None
        self._page = 4096
        self.scx_exits: list[tuple[int, int, int]] = []  # (ts, cpu, exit kind)

    # ------------------------------------------------------------------ building
    @classmethod
    def from_trace(cls, trace: Trace) -> TimelineModel:
        lanes = {}
        exits = []
        for cpu, recs in sorted(trace.cpus.items()):
            raw = recs._mm if recs.n else b""
            lane = Lane(cpu, raw=raw)
            lane.add_records(raw[: recs.n * RECORD_SIZE] if recs.n else b"")
            lanes[cpu] = lane
        m = cls(lanes, dict(trace.tasks), notes=tuple(trace.index.get("notes") or ()),
                run_path=trace.root)
        for lane in lanes.values():
            exits += _scx_exits(lane)
        m.scx_exits = sorted(exits)
        m._trace = trace  # the lanes map its record files: keep them open
        return m

    def close(self) -> None:
        t = getattr(self, "_trace", None)
        if t is not None:
            for lane in self.lanes.values():
                lane.raw = b""
            t.close()
            self._trace = None

    @classmethod
    def live(cls, run_path: Path) -> TimelineModel | None:
        """A model that follows a running run's raw pages (None: no trace yet)."""
        root = Path(run_path)
        try:
            fdata = json.loads((root / FORMATS).read_bytes())
        except (OSError, ValueError):
            return None
        if not isinstance(fdata, dict):
            return None
        m = cls({}, {}, run_path=root)
        m._live = {}
        m._decoder = PageDecoder(Formats.from_json(fdata))
        ps = fdata.get("page_size")
        m._page = ps if isinstance(ps, int) and 512 <= ps <= 1 << 16 else 4096
        m.refresh()
        return m

    def refresh(self) -> bool:
        """Live: decode the whole pages appended since the last call. True if any."""
        if self._live is None or self.run_path is None or self._decoder is None:
            return False
        grew = False
        ps = self._page
        for p in sorted((self.run_path / TRACE_DIR).glob("cpu*.pages")):
            try:
                cpu = int(p.name[3:-6])
                with open(p, "rb") as f:
                    f.seek(self._live.get(cpu, 0))
                    data = f.read()
            except (OSError, ValueError):
                continue
            recs: list[tuple] = []
            used = 0
            for run in page_runs(data, ps, first_page=self._pages.get(cpu, 0)):
                mv = memoryview(run.data)
                for k in range(run.count):
                    self._decoder.decode_page(cpu, run.first + k, mv[k * ps:(k + 1) * ps], recs)
                used = run.end
                self._pages[cpu] = run.first + run.count
            self._live[cpu] = self._live.get(cpu, 0) + used
            if not recs:
                continue
            lane = self.lanes.get(cpu)
            if lane is None:
                lane = self.lanes[cpu] = Lane(cpu, raw=bytearray())
            last = lane.sw_ts[-1] if len(lane.sw_ts) else 0
            recs = [r for r in recs if r[0] >= last]  # keep the lane time-ordered
            chunk = _pack(recs)
            lane.raw += chunk  # type: ignore[operator]
            lane.add_records(chunk)
            self.scx_exits = sorted(self.scx_exits + _scx_exits(Lane(cpu, raw=chunk)))
            grew = True
        if grew:
            self.names = {pid: comm_text(raw) for pid, raw in self._decoder.comms.items()}
        return grew

    # ------------------------------------------------------------------ queries
    @property
    def t_first(self) -> int | None:
        firsts = [lane.sw_ts[0] for lane in self.lanes.values() if len(lane.sw_ts)]
        return min(firsts) if firsts else None

    @property
    def t_last(self) -> int | None:
        lasts = [lane.sw_ts[-1] for lane in self.lanes.values() if len(lane.sw_ts)]
        return max(lasts) if lasts else None

    @property
    def switches(self) -> int:
        return sum(len(lane.sw_ts) for lane in self.lanes.values())

    def name(self, pid: int) -> str:
        if pid == IDLE:
            return "idle"
        return self.names.get(pid, f"pid {pid}")

    def cells(self, cpu: int, t0: int, t1: int, columns: int, samples: int = 5) -> list[int]:
        """The task holding each of `columns` equal slices of [t0, t1) on `cpu`: the most
        frequent one at `samples` points of the slice (UNKNOWN before the first switch)."""
        lane = self.lanes.get(cpu)
        if lane is None or columns <= 0 or t1 <= t0:
            return [UNKNOWN] * max(0, columns)
        ts, pids = lane.sw_ts, lane.sw_pid
        step = (t1 - t0) / columns
        out = []
        br = bisect.bisect_right
        for c in range(columns):
            a = t0 + c * step
            lo = br(ts, int(a))
            hi = br(ts, int(a + step))
            if hi == lo:  # no switch inside the slice: whoever ran at its start
                out.append(pids[lo - 1] if lo else UNKNOWN)
                continue
            got = []
            for s in range(samples):
                i = br(ts, int(a + step * (s + 0.5) / samples), lo - 1 if lo else 0, hi)
                got.append(pids[i - 1] if i else UNKNOWN)
            out.append(max(got, key=got.count))
        return out

    def switch_count(self, cpu: int, t0: int, t1: int) -> int:
        lane = self.lanes.get(cpu)
        if lane is None:
            return 0
        return bisect.bisect_left(lane.sw_ts, t1) - bisect.bisect_left(lane.sw_ts, t0)

    def task_marks(self, pid: int) -> list[Mark]:
        """Every wakeup, migration and switch-in of `pid`, and each stretch it waited
        runnable for a CPU (kind "wait", from ts to `end`, on the CPU it was woken for or
        switched off), in time order (one pass over the records)."""
        raw_marks = []
        for cpu, lane in self.lanes.items():
            n = lane.n_records
            if not n:
                continue
            mv = memoryview(lane.raw)[: n * RECORD_SIZE]
            try:
                pids = mv.cast("i")[3::RECORD_SIZE // 4].tolist()
                prevs = mv.cast("i")[4::RECORD_SIZE // 4].tolist()
            finally:
                mv.release()
            for i in [i for i, (p, q) in enumerate(zip(pids, prevs, strict=True))
                      if p == pid or q == pid]:
                ts, kind, _c, p, a, b, _cc, _id = lane.record(i)
                if kind in (KIND_WAKEUP, KIND_WAKEUP_NEW) and p == pid:
                    raw_marks.append(Mark(ts, a, "wakeup", f"woken on cpu {cpu} for cpu {a}"))
                elif kind == KIND_MIGRATE and p == pid:
                    raw_marks.append(Mark(ts, b, "migrate", f"migrated cpu {a} -> {b}"))
                elif kind == KIND_SWITCH and p == pid:
                    raw_marks.append(Mark(ts, cpu, "run", f"on cpu {cpu}"))
                elif kind == KIND_SWITCH and a == pid and not b & 0xFF:
                    raw_marks.append(Mark(ts, cpu, "preempted", f"preempted on cpu {cpu}"))
        raw_marks.sort(key=lambda m: m.ts)
        out: list[Mark] = []
        since: Mark | None = None
        for m in raw_marks:
            if m.kind in ("wakeup", "preempted") and since is None:
                since = m
            elif m.kind == "migrate" and since is not None:
                since = Mark(since.ts, m.cpu, since.kind, since.text)  # now queued there
            elif m.kind == "run":
                if since is not None and m.ts > since.ts:
                    out.append(Mark(since.ts, since.cpu, "wait",
                                    f"waited {(m.ts - since.ts) / 1e6:.1f}ms", end=m.ts))
                since = None
            if m.kind != "preempted":
                out.append(m)
        return sorted(out, key=lambda m: m.ts)

    def tasks_by_running(self) -> list[int]:
        """Task pids, most switched-to first (for cycling the selection)."""
        c: Counter = Counter()
        for lane in self.lanes.values():
            c.update(lane.sw_pid)
        c.pop(IDLE, None)
        return [pid for pid, _ in c.most_common()]


def _scx_exits(lane: Lane) -> list[tuple[int, int, int]]:
    n = len(lane.raw) // RECORD_SIZE
    if not n:
        return []
    mv = memoryview(lane.raw)[: n * RECORD_SIZE]
    try:
        kinds = mv.cast("H")[4::RECORD_SIZE // 2].tolist()
    finally:
        mv.release()
    out = []
    for i, k in enumerate(kinds):
        if k == KIND_SCX_EXIT:
            r = RECORD.unpack_from(lane.raw, i * RECORD_SIZE)
            out.append((r[0], lane.cpu, r[4]))
    return out


def guest_clock_events(run_path: Path) -> list[tuple[int, str]]:
    """events.jsonl on the trace's axis (guest CLOCK_MONOTONIC ns): events with `guest_ms`
    as they are; the others (snapshot, capture, failure_dump...) through the host-to-guest offset of
    the first event that has both clocks."""
    out = []
    offset = None
    rows = []
    try:
        text = (Path(run_path) / "events.jsonl").read_text(errors="replace")
    except OSError:
        return []
    for line in text.splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if not isinstance(e, dict):
            continue
        rows.append(e)
        if offset is None and isinstance(e.get("guest_ms"), (int, float)) and \
                isinstance(e.get("t"), (int, float)):
            offset = e["guest_ms"] / 1000 - e["t"]
    for e in rows:
        kind = str(e.get("kind", ""))
        label = str(e.get("phase") or kind) if kind in ("lifecycle", "phase") else kind
        if isinstance(e.get("guest_ms"), (int, float)):
            t = int(e["guest_ms"] * 1_000_000)
        elif offset is not None and isinstance(e.get("t"), (int, float)) and kind in (
                "snapshot", "capture", "failure_dump", "pause", "resume", "stopped", "vm_exit"):
            t = int((e["t"] + offset) * 1e9)
        else:
            continue
        out.append((t, label))
    return out


