"""Host ingest of the scheduling trace: raw ring-buffer pages -> indexed records.

A run directory is made from the real pages in tests/data/trace_scx_simple (scx_simple,
spin and pipe workers, recorded under QEMU), repeated until it holds about --events events
per CPU, and then indexed three ways in the same run:

- `build_index` with the C decoder (native/trace/rbdecode.c, the default path);
- `build_index` with the Python reference decoder (KTSTR_TRACE_DECODER=python semantics);
- a bare loop that only walks the event headers in Python (the floor of any pure-Python
  decoder: no field is read) - the peer the ratios are against.

Goal (issue 13): >= 1M events/s host ingest.

    .venv/bin/python benchmarks/bench_trace.py [--events 500000] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ktstr_vmm.trace import files as tracefiles  # noqa: E402
from ktstr_vmm.trace import ftrace_native  # noqa: E402

SAMPLE = REPO / "tests" / "data" / "trace_scx_simple" / "trace"
PAGE = 4096


def make_run(root: Path, events_per_cpu: int) -> int:
    (root / "trace").mkdir(parents=True)
    shutil.copy(SAMPLE / "formats.json", root / "trace" / "formats.json")
    shutil.copy(SAMPLE / "stats.json", root / "trace" / "stats.json")
    total = 0
    for src in sorted(SAMPLE.glob("cpu*.pages")):
        pages = _pages(src.read_bytes())
        per_copy = sum(_walk(p.ljust(PAGE, b"\0"), 0) for p in pages)
        copies = max(1, events_per_cpu // max(1, per_copy))
        stamps = [struct.unpack_from("<Q", p, 0)[0] for p in pages]
        span = max(stamps) - min(stamps) + 1_000_000_000
        out = []
        for c in range(copies):  # later copies later in time, as a longer run would be
            for p in pages:
                ts = struct.unpack_from("<Q", p, 0)[0] + c * span
                out.append(struct.pack("<IQ", len(p), ts) + p[8:])
        (root / "trace" / src.name).write_bytes(b"".join(out))
        total += per_copy * copies
    return total


def _pages(data: bytes) -> list[bytes]:
    pos, out = 0, []
    while pos + 4 <= len(data):
        n = struct.unpack_from("<I", data, pos)[0]
        out.append(data[pos + 4:pos + 4 + n])
        pos += 4 + n
    return out


def _walk(data: bytes, base: int) -> int:
    """Headers only: the least any Python decoder must do per event."""
    size = struct.unpack_from("<Q", data, base + 8)[0] & ((1 << 30) - 1)
    pos, end, n = base + 16, base + 16 + size, 0
    u32 = struct.Struct("<I").unpack_from
    while pos + 4 <= end:
        h = u32(data, pos)[0]
        tl = h & 31
        if tl == 0:
            pos += 4 + u32(data, pos + 4)[0]
            n += 1
        elif tl <= 28:
            pos += 4 + tl * 4
            n += 1
        elif tl == 29:
            if not h >> 5:
                break
            pos += 4 + u32(data, pos + 4)[0]
        else:
            pos += 8
    return n


def timed_index(root: Path) -> tuple[float, dict]:
    for p in (root / "trace").glob("*.rec"):
        p.unlink()
    t0 = time.perf_counter()
    index = tracefiles.build_index(root)
    return time.perf_counter() - t0, index


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=500_000, help="events per CPU (about)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not ftrace_native.available():
        print("bench_trace: the C decoder could not be built (gcc?)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="ktstr-bench-trace-") as tmp:
        root = Path(tmp) / "run"
        total = make_run(root, args.events)
        native_s, index = timed_index(root)
        assert index["events"] == total and index["decoder"] == "native", index["events"]
        all_pages = [p.ljust(PAGE, b"\0") for f in sorted((root / "trace").glob("cpu*.pages"))
                     for p in _pages(f.read_bytes())]
        walk_t0 = time.perf_counter()
        walked = sum(_walk(p, 0) for p in all_pages)
        walk_s = time.perf_counter() - walk_t0
        ftrace_native._lib, ftrace_native._tried = None, True  # the Python decoder now
        py_s, py_index = timed_index(root)
        assert py_index["decoder"] == "python" and py_index["events"] == total
    out = {
        "events": total,
        "native_s": round(native_s, 3), "native_events_per_s": round(total / native_s),
        "python_s": round(py_s, 3), "python_events_per_s": round(total / py_s),
        "header_walk_events_per_s": round(walked / walk_s),
        "native_vs_python": round(py_s / native_s, 1),
        "native_vs_header_walk": round((total / native_s) / (walked / walk_s), 1),
        "goal_events_per_s": 1_000_000,
    }
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"trace ingest of {total:,} events (2 CPUs, real pages):")
        print(f"  build_index, C decoder      {out['native_events_per_s']:>12,} events/s "
              f"({native_s:.2f} s)")
        print(f"  build_index, Python decoder {out['python_events_per_s']:>12,} events/s "
              f"({py_s:.2f} s)")
        print(f"  Python header walk only     {out['header_walk_events_per_s']:>12,} events/s")
        print(f"  ratio C / Python decoder: {out['native_vs_python']}x; "
              f"C / header walk: {out['native_vs_header_walk']}x; "
              f"goal >= 1,000,000 events/s: "
              f"{'met' if out['native_events_per_s'] >= 1_000_000 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
