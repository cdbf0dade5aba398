"""Cells of untrusted text for DataTable: a plain `str` cell is parsed as Rich markup, so a
guest-chosen name like `[/]` would raise MarkupError while drawing (and `[red]` would
restyle). Everything that comes from a run (guest data, BTF names, spec fields) goes into a
table through `plain()`."""

from __future__ import annotations

from rich.text import Text


def plain(*cells: object) -> tuple[object, ...]:
    """Each `str` as literal Text; other cells (Text, numbers) unchanged."""
    return tuple(Text(c) if isinstance(c, str) else c for c in cells)
