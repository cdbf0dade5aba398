"""The fast path of the trace decoder: native/trace/rbdecode.c, built with gcc into the
cache on first use (like the guest agent, keyed by the hash of its source and the
compiler) and called through ctypes. It produces exactly the records of the reference
decoder (ftrace.PageDecoder) at C speed; `available()` is False when it cannot be built
(no gcc), and callers then use the Python decoder.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

from .. import paths
from .ftrace import _WANTED, KIND_OTHER, DecodeError, EventFormat, Formats

log = logging.getLogger(__name__)

_REASONS = {1: "record length {n}", 2: "record of {n} bytes runs past the data"}


class _Field(ctypes.Structure):
    _fields_ = [("off", ctypes.c_int16), ("size", ctypes.c_uint8), ("sign", ctypes.c_uint8)]


class _Plan(ctypes.Structure):
    _fields_ = [("kind", ctypes.c_uint16), ("min_len", ctypes.c_uint16),
                ("slot", _Field * 4), ("comm_slot", ctypes.c_int16 * 2),
                ("comm_off", ctypes.c_int16 * 2), ("comm_size", ctypes.c_uint16 * 2)]


class _Comm(ctypes.Structure):
    _fields_ = [("pid", ctypes.c_int32), ("name", ctypes.c_char * 16)]


class _PageResult(ctypes.Structure):
    _fields_ = [("events", ctypes.c_uint32), ("err_offset", ctypes.c_int32),
                ("err_code", ctypes.c_uint32), ("err_len", ctypes.c_uint32),
                ("missed", ctypes.c_uint64), ("missed_unknown", ctypes.c_uint32),
                ("unknown", ctypes.c_uint32), ("last_ts", ctypes.c_uint64),
                ("commit_past", ctypes.c_uint64), ("backwards", ctypes.c_uint32),
                ("pad", ctypes.c_uint32)]


_lib: ctypes.CDLL | None = None
_tried = False


def _source() -> Path:
    return paths.native_dir() / "trace" / "rbdecode.c"


def _build() -> Path | None:
    src = _source()
    cc = shutil.which("gcc")
    if not src.is_file() or not cc:
        return None
    h = hashlib.sha256(src.read_bytes())
    try:
        h.update(subprocess.run([cc, "--version"], capture_output=True, text=True,
                                timeout=30).stdout.encode())
    except (OSError, subprocess.SubprocessError):
        return None
    root = paths.cache_dir() / "trace-native"
    lib = root / h.hexdigest()[:16] / "librbdecode.so"
    if lib.is_file():
        return lib
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=root))
    try:
        res = subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(tmp / lib.name), str(src)],
                             capture_output=True, text=True, timeout=120)
        if res.returncode != 0:
            log.warning("cannot build %s: %s", src, res.stderr.strip()[:300])
            return None
        try:
            os.rename(tmp, lib.parent)
        except OSError:
            if not lib.is_file():
                return None
    except (OSError, subprocess.SubprocessError) as e:
        log.warning("cannot build %s: %s", src, e)
        return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return lib


def _load() -> ctypes.CDLL | None:
    global _lib, _tried
    if _tried:
        return _lib
    _tried = True
    if os.environ.get("KTSTR_TRACE_DECODER") == "python":
        return None
    path = _build()
    if path is None:
        return None
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as e:
        log.warning("cannot load %s: %s", path, e)
        return None
    f = lib.rb_decode
    f.restype = ctypes.c_long
    f.argtypes = [ctypes.c_char_p, ctypes.c_long, ctypes.c_long, ctypes.c_int, ctypes.c_int,
                  ctypes.c_int, ctypes.POINTER(_Plan), ctypes.c_long, ctypes.c_int,
                  ctypes.c_void_p, ctypes.c_long, ctypes.POINTER(_Comm), ctypes.c_long,
                  ctypes.POINTER(ctypes.c_long), ctypes.POINTER(_PageResult)]
    _lib = lib
    return lib


def available() -> bool:
    return _load() is not None


def _plan(ev: EventFormat) -> _Plan:
    p = _Plan()
    kind, want, comms = _WANTED.get(ev.name, (KIND_OTHER, ("", "", "", ""), ()))
    p.kind = kind
    min_len = 8 if kind == KIND_OTHER else 4
    used = []
    for slot, fname in enumerate(want):
        f = ev.field(fname) if fname else None
        ok = f is not None and f.size in (1, 2, 4, 8) and 0 <= f.offset < 32768
        # the reference decoder skips a field overlapping an earlier one (struct layout)
        if ok and any(f.offset < o + s and o < f.offset + f.size for o, s in used):
            ok = False
        if ok:
            p.slot[slot] = _Field(f.offset, f.size, 1 if f.signed else 0)
            used.append((f.offset, f.size))
            min_len = max(min_len, f.offset + f.size)
        else:
            p.slot[slot] = _Field(-1, 0, 0)
    n = 0
    p.comm_slot[0] = p.comm_slot[1] = -1
    for pid_field, comm_field in comms:
        f = ev.field(comm_field)
        if f is None or not f.type.startswith("char") or pid_field not in want or n == 2:
            continue
        p.comm_slot[n], p.comm_off[n], p.comm_size[n] = want.index(pid_field), f.offset, f.size
        min_len = max(min_len, f.offset + f.size)
        n += 1
    p.min_len = min(min_len, 65535)
    return p


def plans(formats: Formats):
    ids = [i for i in formats.events if 0 <= i < 65536]
    n = max(ids) + 1 if ids else 1
    arr = (_Plan * n)()
    for i in ids:
        arr[i] = _plan(formats.events[i])
    return arr, n


CHUNK_PAGES = 256
_RESULT = struct.Struct("<IiIIQIIQQII")  # _PageResult


def decode_cpu(lib, data: bytes, page_size: int, formats: Formats, cpu: int, table=None,
               first_page: int = 0):
    """One CPU's whole pages (padded to the page size; the first is page `first_page` of
    its file) -> (records bytes, [(pid, raw comm)], [DecodeError], missed,
    pages with an uncounted loss, records of event ids without a format, whether the
    records came out in time order). Decodes
    CHUNK_PAGES pages per call into buffers sized for the worst case (an 8-byte record)."""
    arr, nplans = table or plans(formats)
    npages = len(data) // page_size
    chunk = min(CHUNK_PAGES, max(1, npages))
    max_recs = chunk * (page_size // 8)
    recs = ctypes.create_string_buffer(max_recs * 32)
    max_comms = max_recs * 2
    comms = (_Comm * max_comms)()
    ncomms = ctypes.c_long(0)
    results = (_PageResult * chunk)()
    lay = formats.page
    out: list[bytes] = []
    names: list[tuple[int, bytes]] = []
    errors, missed, uncounted, unknown = [], 0, 0, 0
    ordered, last_ts = True, 0
    view = memoryview(data)
    for first in range(0, npages, chunk):
        k_n = min(chunk, npages - first)
        part = view[first * page_size:(first + k_n) * page_size]
        buf = (ctypes.c_char * len(part)).from_buffer_copy(part)
        n = lib.rb_decode(buf, k_n, page_size, lay.commit_offset, lay.commit_size,
                          lay.data_offset, arr, nplans, cpu, recs, max_recs, comms, max_comms,
                          ctypes.byref(ncomms), results)
        out.append(ctypes.string_at(recs, n * 32))
        if n:
            first_ts = struct.unpack_from("<Q", out[-1], 0)[0]
            ordered = ordered and first_ts >= last_ts
            last_ts = struct.unpack_from("<Q", out[-1], (n - 1) * 32)[0]
        names += [(c.pid, c.name) for c in comms[:ncomms.value]]
        raw_results = ctypes.string_at(results, k_n * _RESULT.size)
        for k, (_ev, err_off, err_code, err_len, miss, miss_unk, unk, _ts, past, back,
                _pad) in enumerate(_RESULT.iter_unpack(raw_results)):
            ordered = ordered and not back
            missed += miss
            uncounted += miss_unk
            unknown += unk
            if past:
                errors.append(DecodeError(cpu, first_page + first + k, lay.commit_offset,
                                          f"commit {past} runs past the page's "
                                          f"{page_size} bytes"))
            if err_off >= 0:
                errors.append(DecodeError(cpu, first_page + first + k, err_off,
                                          _REASONS[err_code].format(n=err_len)))
    return b"".join(out), names, errors, missed, uncounted, unknown, ordered
