"""The scheduling trace in the run directory (docs/run-directory.md, "trace/").

While the run goes on, `TraceWriter` stores what the guest streams:

    trace/formats.json     the agent's TraceFormats: clock, page size, enabled and missing
                           events, the kernel's format files
    trace/cpuNNN.pages     that CPU's raw ring-buffer pages as they came: u32 length, then
                           the page's used bytes (header, committed data, the stored
                           missed-events count); each page starts with its time stamp
    trace/stats.json       the agent's TraceStats (per-CPU ring-buffer stats: overrun...)
                           and the host's own counts (pages kept, pages over the cap)

After the run `build_index` decodes the pages once into the indexed form every reader uses:

    trace/cpuNNN.rec       fixed 32-byte records, time-ordered: ts u64 (ns, the guest's
                           CLOCK_MONOTONIC), kind u16, cpu u16, pid i32, a i32, b i32, c i32,
                           event id u32 (what pid/a/b/c hold per kind: ftrace._WANTED)
    trace/tasks.json       pid -> task name (guest text: never markup)
    trace/latency.json     the latency report over the workload (latency.py)
    trace/index.json       per-CPU counts and time ranges, what was lost and why, decode
                           errors (a corrupt page says where it stops)

A reader finds a time by bisecting a CPU's records (O(log n)): nothing scans the trace.
"""

from __future__ import annotations

import bisect
import json
import mmap
import os
import struct
from dataclasses import dataclass, field
from itertools import starmap
from pathlib import Path
from typing import Any

from ..fsutil import atomic_write_bytes, atomic_write_json
from ..rundir.layout import TRACE
from .ftrace import DecodeError, Formats, PageDecoder, comm_text

TRACE_DIR = TRACE
FORMATS = f"{TRACE_DIR}/formats.json"
STATS = f"{TRACE_DIR}/stats.json"
INDEX = f"{TRACE_DIR}/index.json"
TASKS = f"{TRACE_DIR}/tasks.json"
LATENCY = f"{TRACE_DIR}/latency.json"  # latency.LatencyReport over the workload
RECORD = struct.Struct("<QHHiiiiI")
RECORD_SIZE = RECORD.size  # 32
INDEX_VERSION = 1
MAX_CPUS = 1024
DEFAULT_MAX_BYTES = 512 << 20
_I32 = (-(1 << 31), (1 << 31) - 1)


def pages_name(cpu: int) -> str:
    return f"{TRACE_DIR}/cpu{cpu:03d}.pages"


def records_name(cpu: int) -> str:
    return f"{TRACE_DIR}/cpu{cpu:03d}.rec"


class TraceWriter:
    """Guest trace frames -> trace/. Bounded: past `max_bytes` of pages nothing more is
    kept and stats.json says how many pages were refused. Never raises on guest input."""

    def __init__(self, run_path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.root = Path(run_path)
        self.max_bytes = max_bytes
        self.page_size = 4096
        self.cpus = 0
        self.files: dict[int, Any] = {}
        self.kept_pages = self.kept_bytes = self.over_cap_pages = self.bad_pages = 0
        self.guest_stats: dict[str, Any] | None = None
        self.started = False
        self.write_error = ""

    def formats(self, d: dict[str, Any]) -> None:
        if self.started:
            return
        ps = d.get("page_size")
        self.page_size = ps if isinstance(ps, int) and 512 <= ps <= 1 << 16 else 4096
        n = d.get("cpus")
        self.cpus = n if isinstance(n, int) and 0 < n <= MAX_CPUS else MAX_CPUS
        try:
            (self.root / TRACE_DIR).mkdir(exist_ok=True)
            atomic_write_json(self.root / FORMATS, d)
        except OSError as e:
            self.write_error = f"{type(e).__name__}: {e}"[:300]
            return
        self.started = True

    def pages(self, payload: bytes) -> None:
        """One TracePages frame: its pages appended to their CPUs' files and flushed (the
        live timeline reads them). A write error (a full disk) stops the trace, counted."""
        if not self.started or self.write_error:
            self.bad_pages += 0 if self.write_error else 1
            return
        touched = set()
        try:
            self._pages(payload, touched)
            for cpu in touched:
                self.files[cpu].flush()
        except OSError as e:
            self.write_error = f"{type(e).__name__}: {e}"[:300]

    def _pages(self, payload: bytes, touched: set) -> None:
        pos, n = 0, len(payload)
        ps = self.page_size
        while pos + 8 <= n:
            cpu, length = struct.unpack_from("<II", payload, pos)
            pos += 8
            if cpu >= self.cpus or length > ps or length < 16 or pos + length > n:
                self.bad_pages += 1
                return
            if self.kept_bytes + 4 + length > self.max_bytes:
                self.over_cap_pages += 1
            else:
                f = self.files.get(cpu)
                if f is None:
                    f = self.files[cpu] = open(self.root / pages_name(cpu), "ab")
                f.write(struct.pack("<I", length) + payload[pos:pos + length])
                touched.add(cpu)
                self.kept_pages += 1
                self.kept_bytes += 4 + length
            pos += length

    def stats(self, d: dict[str, Any]) -> None:
        self.guest_stats = d

    def close(self) -> None:
        for f in self.files.values():
            try:
                f.close()
            except OSError as e:
                self.write_error = self.write_error or f"{type(e).__name__}: {e}"[:300]
        self.files.clear()
        if not self.started:
            return
        try:
            atomic_write_json(self.root / STATS, {
                "guest": self.guest_stats,
                "host": {"pages": self.kept_pages, "bytes": self.kept_bytes,
                         "over_cap_pages": self.over_cap_pages, "bad_pages": self.bad_pages,
                         "max_bytes": self.max_bytes, "write_error": self.write_error}})
        except OSError:
            pass  # the index then says the trace's stats are missing; the run goes on


# ----------------------------------------------------------------------------- index


@dataclass(frozen=True)
class PageRun:
    """Consecutive whole pages of a .pages file, each padded to the page size."""

    first: int  # the number of the first page in the file
    count: int
    data: bytes
    end: int  # file offset after the last whole page


def page_runs(data: bytes | memoryview, page_size: int, chunk: int = 256, start: int = 0,
              first_page: int = 0):
    """Walk a .pages file (u32 length + page bytes, repeated) from `start`: PageRuns of up
    to `chunk` pages; stops at a length that cannot be a page or a page cut short (the
    caller learns where from the last run's `end`)."""
    pos, n, k = start, len(data), first_page
    buf: list[bytes] = []
    run_first = k
    while pos + 4 <= n:
        length = int.from_bytes(data[pos:pos + 4], "little")
        if length < 16 or length > page_size or pos + 4 + length > n:
            break
        page = bytes(data[pos + 4:pos + 4 + length])
        buf.append(page + bytes(page_size - length) if length < page_size else page)
        pos += 4 + length
        k += 1
        if len(buf) == chunk:
            yield PageRun(run_first, len(buf), b"".join(buf), pos)
            buf, run_first = [], k
    if buf:
        yield PageRun(run_first, len(buf), b"".join(buf), pos)


def _file_end_error(cpu: int, data: bytes, page_size: int, end: int, pages: int):
    """A DecodeError saying where a .pages file stops being readable, or None."""

    if end >= len(data):
        return None
    left = len(data) - end
    if left >= 4:
        length = int.from_bytes(data[end:end + 4], "little")
        if 16 <= length <= page_size:
            why = f"file ends {left - 4} bytes into a page of {length} (truncated)"
        else:
            why = f"bad page length {length} at byte {end} of the file; {left} bytes not read"
    else:
        why = f"file ends {left} bytes into a page header (truncated)"
    return DecodeError(cpu, pages, 0, why)


def _ring_stats(text: Any) -> dict[str, int]:
    """per_cpu/cpuN/stats ("entries: 12\\noverrun: 0\\n...") -> the integer ones."""
    out = {}
    for line in str(text or "").splitlines():
        k, _, v = line.partition(":")
        v = v.strip()
        if v.isdigit():
            out[k.strip().replace(" ", "_")] = int(v)
    return out


def _pack(recs: list[tuple]) -> bytes:
    try:
        return b"".join(starmap(RECORD.pack, recs))
    except struct.error:  # a guest value out of range: clamp that record's fields
        lo, hi = _I32
        return b"".join(RECORD.pack(r[0] & (2**64 - 1), r[1], r[2] & 0xffff,
                                    *(min(hi, max(lo, v)) for v in r[3:7]), r[7] & 0xffffffff)
                        for r in recs)


def _native():
    """(library, module) of the C decoder, or None (then the Python one decodes)."""
    from . import ftrace_native  # builds its C decoder with gcc on first use

    lib = ftrace_native._load()
    return (lib, ftrace_native) if lib is not None else None


def _time_ordered(raw: bytes) -> bytes:
    """Records sorted by time, stably (a ring buffer's are already; this is for the odd
    page whose clock stepped back)."""
    n = len(raw) // RECORD_SIZE
    ts = memoryview(raw).cast("Q")[::RECORD_SIZE // 8].tolist()
    order = sorted(range(n), key=ts.__getitem__)
    return b"".join(raw[i * RECORD_SIZE:(i + 1) * RECORD_SIZE] for i in order)


def build_index(run_path: Path, progress=None) -> dict[str, Any] | None:
    """Decode trace/cpu*.pages into records (see the module doc); returns index.json's
    content, or None when the run has no trace. Bad pages are counted, never raised."""
    root = Path(run_path)
    try:
        fdata = json.loads((root / FORMATS).read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(fdata, dict):
        return None
    formats = Formats.from_json(fdata)
    ps = fdata.get("page_size") if isinstance(fdata.get("page_size"), int) else 4096
    try:
        stats = json.loads((root / STATS).read_bytes())
    except (OSError, ValueError):
        stats = {}
    stats = stats if isinstance(stats, dict) else {}
    dec = PageDecoder(formats)
    native = _native()
    table = native[1].plans(formats) if native else None
    cpus = []
    for p in sorted((root / TRACE_DIR).glob("cpu*.pages")):
        try:
            cpu = int(p.name[3:-6])
        except ValueError:
            continue
        try:
            data = p.read_bytes()
        except OSError as e:
            from .ftrace import DecodeError

            dec.errors.append(DecodeError(cpu, 0, 0, f"cannot read {p.name}: {e.strerror}"))
            continue
        parts: list[bytes] = []
        npages, end, ordered = 0, 0, True
        for run in page_runs(data, ps):
            npages, end = run.first + run.count, run.end
            if native:
                raw, names, errors, missed, uncounted, unknown, in_order = native[1].decode_cpu(
                    native[0], run.data, ps, formats, cpu, table, first_page=run.first)
                for pid, name in names:
                    dec.comms[pid] = name
                dec.errors += errors
                dec.events += len(raw) // RECORD_SIZE
                if missed:
                    dec.missed[cpu] = dec.missed.get(cpu, 0) + missed
                if uncounted:
                    dec.missed_unknown[cpu] = dec.missed_unknown.get(cpu, 0) + uncounted
                if unknown:
                    dec.unknown_ids[-1] = dec.unknown_ids.get(-1, 0) + unknown
            else:
                recs: list[tuple] = []
                mv = memoryview(run.data)
                for k in range(run.count):
                    dec.decode_page(cpu, run.first + k, mv[k * ps:(k + 1) * ps], recs)
                raw = _pack(recs)
                in_order = all(recs[i][0] <= recs[i + 1][0] for i in range(len(recs) - 1))
            if parts and raw and parts[-1] and \
                    RECORD.unpack_from(raw, 0)[0] < RECORD.unpack_from(parts[-1], len(parts[-1]) - RECORD_SIZE)[0]:
                in_order = False
            ordered = ordered and in_order
            parts.append(raw)
        raw = b"".join(parts)
        if not ordered:
            raw = _time_ordered(raw)
        err = _file_end_error(cpu, data, ps, end, npages)
        if err is not None:
            dec.errors.append(err)
        n = len(raw) // RECORD_SIZE
        atomic_write_bytes(root / records_name(cpu), raw)
        cpus.append({"cpu": cpu, "pages": npages, "events": n,
                     "first_ns": RECORD.unpack_from(raw, 0)[0] if n else None,
                     "last_ns": RECORD.unpack_from(raw, (n - 1) * RECORD_SIZE)[0] if n else None})
        if progress:
            progress(cpu, n)
    tasks = {str(pid): comm_text(raw) for pid, raw in dec.comms.items()}
    atomic_write_json(root / TASKS, tasks)
    guest = stats.get("guest") if isinstance(stats.get("guest"), dict) else {}
    host = stats.get("host") if isinstance(stats.get("host"), dict) else {}
    ring = {str(c): _ring_stats(t) for c, t in (guest.get("cpus") or {}).items()} \
        if isinstance(guest.get("cpus"), dict) else {}
    firsts = [c["first_ns"] for c in cpus if c["first_ns"] is not None]
    lasts = [c["last_ns"] for c in cpus if c["last_ns"] is not None]
    lost = {
        "ring_overrun": sum(r.get("overrun", 0) for r in ring.values()),
        "ring_dropped": sum(r.get("dropped_events", 0) for r in ring.values()),
        "missed_in_pages": sum(dec.missed.values()),
        "pages_with_uncounted_loss": sum(dec.missed_unknown.values()),
        "final_skipped_pages": int(guest.get("final_skipped_pages") or 0),
        "over_cap_pages": int(host.get("over_cap_pages") or 0),
        "bad_pages": int(host.get("bad_pages") or 0),
    }
    notes = []
    if formats.missing:
        notes.append("this kernel has no tracepoint " + ", ".join(formats.missing)
                     + "; traced without it")
    if lost["ring_overrun"] or lost["missed_in_pages"] or lost["pages_with_uncounted_loss"]:
        notes.append(f"ring buffer overrun: {max(lost['ring_overrun'], lost['missed_in_pages'])} "
                     "events lost in the guest (the wire could not keep up; trace fewer "
                     "events); waits measured across the loss may be too long")
    starved = int(guest.get("starved_ticks") or 0)
    rate = fdata.get("rate_bytes_s") if isinstance(fdata.get("rate_bytes_s"), int) else 0
    if starved and rate:
        notes.append(f"the trace's wire budget ({rate >> 10} KiB/s"
                     + (", a slow serial wire" if rate < 1 << 20 else "")
                     + f") ran out {starved} times; the ring buffers kept the newest events "
                     "meanwhile")
    if guest.get("capped"):
        notes.append("the guest reached the trace's streaming cap; after it only the ring "
                     "buffers' last contents were sent")
    if lost["final_skipped_pages"]:
        notes.append(f"{lost['final_skipped_pages']} older pages left in the ring buffers at "
                     "the end were skipped (wire budget); the newest were kept")
    if lost["over_cap_pages"]:
        notes.append(f"{lost['over_cap_pages']} pages over the host's cap of "
                     f"{int(host.get('max_bytes') or 0) >> 20} MiB were not stored")
    if host.get("write_error"):
        notes.append(f"the host stopped storing the trace: {host['write_error']}")
    if dec.errors:
        e = dec.errors[0]
        notes.append(f"{len(dec.errors)} damaged pages: the first at cpu {e.cpu} page {e.page} "
                     f"byte {e.offset} ({e.reason}); decoded up to there")
    index = {
        "version": INDEX_VERSION, "clock": formats.clock, "page_size": ps,
        "events": sum(c["events"] for c in cpus), "cpus": cpus,
        "first_ns": min(firsts) if firsts else None, "last_ns": max(lasts) if lasts else None,
        "enabled": list(formats.enabled), "missing": list(formats.missing),
        "lost": lost, "ring": ring, "notes": notes,
        "errors": [e.__dict__ for e in dec.errors[:50]],
        "unknown_event_ids": {str(k): v for k, v in dec.unknown_ids.items()},
        "event_names": {str(i): f"{ev.system}/{ev.name}" for i, ev in formats.events.items()},
        "decoder": "native" if native else "python",
    }
    atomic_write_json(root / INDEX, index)
    return index


# ----------------------------------------------------------------------------- reading


class Records:
    """One CPU's records, memory-mapped: len(), [i] -> tuple, bisect by time."""

    def __init__(self, path: Path) -> None:
        self._f = open(path, "rb")
        size = os.fstat(self._f.fileno()).st_size
        self.n = size // RECORD_SIZE
        self._mm = mmap.mmap(self._f.fileno(), 0, prot=mmap.PROT_READ) if size else b""

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple:
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError(i)
        return RECORD.unpack_from(self._mm, i * RECORD_SIZE)

    def ts(self, i: int) -> int:
        return struct.unpack_from("<Q", self._mm, i * RECORD_SIZE)[0]

    def find(self, t_ns: int) -> int:
        """The index of the first record at or after t_ns."""
        return bisect.bisect_left(range(self.n), t_ns, key=self.ts)

    def between(self, t0: int, t1: int):
        i = self.find(t0)
        while i < self.n:
            r = self[i]
            if r[0] >= t1:
                return
            yield r
            i += 1

    def all(self):
        return RECORD.iter_unpack(self._mm[: self.n * RECORD_SIZE]) if self.n else iter(())

    def close(self) -> None:
        if self.n:
            self._mm.close()
        self._f.close()


@dataclass
class Trace:
    """A run's indexed trace (build_index first)."""

    root: Path
    index: dict[str, Any]
    tasks: dict[int, str]
    cpus: dict[int, Records] = field(default_factory=dict)

    @classmethod
    def open(cls, run_path: Path) -> Trace | None:
        root = Path(run_path)
        try:
            index = json.loads((root / INDEX).read_bytes())
            tasks_raw = json.loads((root / TASKS).read_bytes())
        except (OSError, ValueError):
            return None
        if not isinstance(index, dict) or index.get("version") != INDEX_VERSION:
            return None
        tasks = {int(k): str(v) for k, v in tasks_raw.items() if str(k).lstrip("-").isdigit()} \
            if isinstance(tasks_raw, dict) else {}
        t = cls(root, index, tasks)
        for c in index.get("cpus") or ():
            p = root / records_name(int(c["cpu"]))
            if p.is_file():
                t.cpus[int(c["cpu"])] = Records(p)
        return t

    def name(self, pid: int) -> str:
        if pid == 0:
            return "idle"
        return self.tasks.get(pid, f"pid {pid}")

    def close(self) -> None:
        for r in self.cpus.values():
            r.close()


def has_trace(run_path: Path) -> bool:
    return (Path(run_path) / FORMATS).is_file()


def open_or_build(run_path: Path) -> Trace | None:
    """The indexed trace, building the index first when only raw pages are there."""
    root = Path(run_path)
    if not (root / INDEX).is_file() and has_trace(root):
        build_index(root)
    return Trace.open(root)
