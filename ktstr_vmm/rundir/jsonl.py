"""Reading a JSON-lines file of a run directory while its writer appends to it
(events.jsonl, monitor.jsonl, bpf.jsonl): incrementally from a byte offset; only whole
lines count, and a line that does not parse is counted, not fatal (the writer may be
mid-line). Used from one worker thread (the TUI's live screen) or once (a finished run).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class JsonlTail:
    """Incremental reader of one JSON-lines file: `read()` returns the new whole lines'
    objects since the last call. Used from one worker thread."""

    path: Path
    offset: int = 0
    bad_lines: int = 0
    _inode: int | None = field(default=None, repr=False)

    def read(self, max_bytes: int = 8 << 20) -> list[dict[str, Any]]:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return []
        try:
            st = os.fstat(fd)
            if self._inode is not None and (st.st_ino != self._inode or st.st_size < self.offset):
                self.offset = 0  # replaced or truncated: start over
            self._inode = st.st_ino
            if st.st_size <= self.offset:
                return []
            data = os.pread(fd, min(st.st_size - self.offset, max_bytes), self.offset)
        finally:
            os.close(fd)
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        out = []
        for line in data[:end].split(b"\n"):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                self.bad_lines += 1
                continue
            if isinstance(obj, dict):
                out.append(obj)
            else:
                self.bad_lines += 1
        return out
