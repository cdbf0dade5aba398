"""The scheduler's global variables, live: a table of map, variable and value fed by
bpf.jsonl lines (each holds what changed; merged here in order). Variables that changed
in the latest line are highlighted. The format strings scx's error/printk macros leave in
`.data` (`<func>.___fmt`, constant) are not listed."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from ktstr_vmm.rundir.bpf_globals import merge
from ktstr_vmm.rundir.dumptext import short

from ..plain import plain
from .vim import VimDataTable

MAX_VALUE = 120


class BpfGlobals(VimDataTable):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.values: dict[tuple[str, str], Any] = {}
        self.updates = 0

    def on_mount(self) -> None:
        self.add_columns("map", "variable", "value")

    def add_lines(self, lines: list[dict[str, dict[str, Any]]]) -> None:
        """Merge bpf.jsonl lines (their `maps`) and redraw."""
        if not lines:
            return
        merge(lines, into=self.values)
        self.updates += len(lines)
        fresh = {(name, var) for name, fields in lines[-1].items() for var in fields}
        keep = self.cursor_row
        self.clear()
        for (name, var), value in sorted(self.values.items(), key=_order):
            text = short(value)
            if len(text) > MAX_VALUE:
                text = text[:MAX_VALUE - 3] + "..."
            style = "bold yellow" if (name, var) in fresh and self.updates > 1 else ""
            self.add_row(*plain(name, var), Text(text, style=style))
        if self.row_count:
            self.move_cursor(row=min(keep, self.row_count - 1), animate=False)


def _order(item: tuple[tuple[str, str], Any]) -> tuple[int, str, str]:
    (name, var), _ = item
    return (0 if name.endswith(".bss") else 1, name, var)
