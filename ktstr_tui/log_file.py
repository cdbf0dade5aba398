"""A log file indexed by line offsets, read lazily (the model is toolong's log_file.py).

The file stays open; line breaks are found in the new bytes (read in chunks) in a worker thread
and kept as an array of end offsets (8 bytes a line); a line's text is read with os.pread
only when it is shown. A 200 MB log never becomes a list of Python strings. The index
grows as the file grows (live tail); a truncated or replaced file is re-indexed.
"""

from __future__ import annotations

import bisect
import itertools
import os
import re
import threading
import time
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ktstr_vmm.rundir.shell_log import clean_line

CHUNK = 1 << 20  # short GIL holds: the UI stays responsive while a big file is indexed
FIRST_CHUNK = 256 << 10
MAX_LINE_BYTES = 64 << 10  # a longer line is shown cut, never read whole


@dataclass(frozen=True)
class ScanProgress:
    lines: int
    scanned: int
    size: int

    @property
    def fraction(self) -> float:
        return 1.0 if not self.size else min(1.0, self.scanned / self.size)


class LogFile:
    """Line index of one file. scan()/poll() run on one worker thread; line reads may
    come from the UI thread (one screenful at a time); a lock guards the index."""

    def __init__(self, path: Path, decode: Callable[[bytes], str] | None = None) -> None:
        self.path = Path(path)
        self.decode = decode or _decode  # one line's bytes (no newline) -> its text
        self.fd: int | None = None
        self.ends = array("Q")  # byte offset just past each '\n'
        self.size = 0  # file size seen by the last scan
        self.max_width = 0
        self.inode: int | None = None
        self.generation = 0  # bumps when the file is truncated or replaced
        self.deleted = False
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> bool:
        """Open the file; False when it does not exist (yet)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            return False
        self.fd = fd
        self.inode = os.fstat(fd).st_ino
        return True

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    # ------------------------------------------------------------------ index
    @property
    def scanned(self) -> int:
        return self.ends[-1] if self.ends else 0

    @property
    def line_count(self) -> int:
        with self._lock:
            return len(self.ends) + (1 if self.size > self.scanned else 0)

    def _reset(self) -> None:
        with self._lock:
            self.ends = array("Q")
            self.size = 0
            self.max_width = 0
            self.generation += 1

    def poll(self) -> str | None:
        """Check the file: 'grown', 'reset' (truncated/replaced), 'deleted' or None."""
        if self.fd is None:
            return "grown" if self.open() else None
        try:
            st_path = os.stat(self.path)
        except FileNotFoundError:
            st_path = None
        st = os.fstat(self.fd)
        if st_path is None or st.st_nlink == 0:
            if not self.deleted:
                self.deleted = True
                return "deleted"
            return None
        if st_path.st_ino != self.inode:  # replaced: follow the new file
            self.close()
            self.open()
            self._reset()
            return "reset"
        if st.st_size < self.size:
            self._reset()
            return "reset"
        if st.st_size > self.size:
            return "grown"
        return None

    def scan(self, batch_seconds: float = 0.25,
             first_shown: threading.Event | None = None) -> Iterator[ScanProgress]:
        """Index new bytes; yields progress after the first small chunk (so the first
        screen shows at once), then about every batch_seconds, and once at the end. With
        `first_shown`, waits (up to a second) for the view to paint that first screen
        before indexing the rest, so the scan does not compete with the first paint.

        Reads with os.pread into one reused-size buffer rather than an mmap: the file's
        pages stay in the page cache instead of counting as this process's memory."""
        if self.fd is None:
            return
        size = os.fstat(self.fd).st_size
        pos = self.scanned
        if size <= pos:
            with self._lock:
                self.size = size
            yield ScanProgress(self.line_count, size, size)
            return
        last = time.monotonic()
        chunk = FIRST_CHUNK
        first = True
        while pos < size:
            buf = os.pread(self.fd, min(chunk, size - pos), pos)
            if not buf:  # truncated under us; the next poll() resets
                break
            chunk = CHUNK
            parts = buf.split(b"\n")
            tail = len(parts[-1])
            del parts[-1]
            lens = [len(p) + 1 for p in parts]
            new = list(itertools.accumulate(lens, initial=pos))[1:]
            pos += len(buf)
            with self._lock:
                self.ends.extend(new)
                if lens:
                    self.max_width = max(self.max_width, min(max(lens) - 1, MAX_LINE_BYTES))
                self.max_width = max(self.max_width, min(tail, MAX_LINE_BYTES))
                self.size = pos
            del parts, lens, new, buf
            now = time.monotonic()
            if first or now - last >= batch_seconds:
                last = now
                yield ScanProgress(self.line_count, pos, size)
                if first and first_shown is not None and pos < size:
                    first_shown.wait(1.0)
                first = False
        yield ScanProgress(self.line_count, pos, size)

    def line_span(self, index: int) -> tuple[int, int]:
        with self._lock:
            start = self.ends[index - 1] if index > 0 else 0
            end = self.ends[index] if index < len(self.ends) else self.size
        return start, end

    def read_lines(self, first: int, count: int) -> list[str]:
        """Lines [first, first+count) read with one pread; tabs expanded, no newlines."""
        n = self.line_count
        if self.fd is None or first >= n or count <= 0:
            return []
        last = min(n, first + count) - 1
        start, _ = self.line_span(first)
        _, end = self.line_span(last)
        if end - start > count * MAX_LINE_BYTES:
            return [self.read_line(i) for i in range(first, last + 1)]
        data = os.pread(self.fd, end - start, start)
        if data.endswith(b"\n"):
            data = data[:-1]
        lines = data.split(b"\n")
        return [self.decode(b) for b in lines[: last - first + 1]]

    def read_line(self, index: int) -> str:
        if self.fd is None:
            return ""
        start, end = self.line_span(index)
        data = os.pread(self.fd, min(end - start, MAX_LINE_BYTES), start)
        return self.decode(data.rstrip(b"\n"))

    def line_of_offset(self, offset: int) -> int:
        with self._lock:
            return bisect.bisect_right(self.ends, offset)

    def find(self, pattern: str, from_line: int, backwards: bool = False) -> int | None:
        """Line index of the next (or previous) line matching `pattern` (case-insensitive
        text), starting after (before) from_line, wrapping once. Runs on a worker thread;
        reads the file in chunks that overlap by the pattern's length."""
        if self.fd is None or not pattern:
            return None
        needle = pattern.encode("utf-8", "replace")
        rx = re.compile(re.escape(needle), re.IGNORECASE)
        size = self.size
        n = self.line_count
        if not size or not n:
            return None
        if not backwards:
            _, after = self.line_span(min(from_line, n - 1)) if from_line >= 0 else (0, 0)
            for lo, hi in ((after, size), (0, after)):
                hit = self._search(rx, len(needle), lo, hi, last=False)
                if hit is not None:
                    return self.line_of_offset(hit)
            return None
        before, _ = self.line_span(max(0, min(from_line, n - 1)))
        for lo, hi in ((0, before), (before, size)):
            hit = self._search(rx, len(needle), lo, hi, last=True)
            if hit is not None:
                return self.line_of_offset(hit)
        return None

    def _search(self, rx: re.Pattern[bytes], width: int, lo: int, hi: int,
                last: bool) -> int | None:
        """Offset of the first (last) match in [lo, hi)."""
        step = CHUNK
        if last:  # chunks from the end backwards
            starts: list[int] | range = []
            p = hi
            while p > lo:
                starts.append(max(lo, p - step))
                p -= step
        else:
            starts = range(lo, hi, step)
        for s in starts:
            buf = os.pread(self.fd, min(hi, s + step + width - 1) - s, s)
            if last:
                found = None
                for m in rx.finditer(buf):
                    if s + m.start() < hi:
                        found = s + m.start()
                if found is not None:
                    return found
            else:
                m = rx.search(buf)
                if m and s + m.start() < hi:
                    return s + m.start()
        return None


def decode_terminal(b: bytes) -> str:
    """A line of raw terminal bytes (shell.log) as the terminal left it, colours kept as
    SGR sequences (the `terminal` lexer styles them)."""
    return clean_line(b.decode("utf-8", "replace"), color=True)


def _decode(b: bytes) -> str:
    s = b.decode("utf-8", "replace").rstrip("\r")
    if "\t" in s:
        s = s.expandtabs(8)
    if any(ord(c) < 32 for c in s):
        s = "".join(c if ord(c) >= 32 else "\ufffd" for c in s)
    return s
