"""sched_ext's kernel enums by the kernel's own names, read from its BTF.

`exit_kinds(btf)` reads `enum scx_exit_kind` from a kernel's BTF (the monitor does, so a
kernel that adds or renumbers kinds is named right). `EXIT_KINDS` is that enum as the
sched_ext kernel this project fetches has it, for code that judges a recorded run without
the kernel at hand (evaluation, the failure-dump reader, the TUI);
tests/unit/introspect/test_scx.py checks it against the real kernel's BTF, so it cannot
drift silently. Nothing else types an exit kind's number.
"""

from __future__ import annotations

from typing import Any

EXIT_KIND_ENUM = "scx_exit_kind"
EXIT_KINDS: dict[int, str] = {
    0: "SCX_EXIT_NONE", 1: "SCX_EXIT_DONE", 64: "SCX_EXIT_UNREG", 65: "SCX_EXIT_UNREG_BPF",
    66: "SCX_EXIT_UNREG_KERN", 67: "SCX_EXIT_SYSRQ", 68: "SCX_EXIT_PARENT",
    69: "SCX_EXIT_PARENT_KILL", 1024: "SCX_EXIT_ERROR", 1025: "SCX_EXIT_ERROR_BPF",
    1026: "SCX_EXIT_ERROR_STALL", 1027: "SCX_EXIT_ERROR_REENQ", 1028: "SCX_EXIT_ERROR_RESCUE",
}
EXIT_KIND_VALUES = {name: value for value, name in EXIT_KINDS.items()}
SCX_EXIT_DONE = EXIT_KIND_VALUES["SCX_EXIT_DONE"]
SCX_EXIT_ERROR = EXIT_KIND_VALUES["SCX_EXIT_ERROR"]  # this kind and every one above are errors
SCX_EXIT_ERROR_BPF = EXIT_KIND_VALUES["SCX_EXIT_ERROR_BPF"]
SCX_EXIT_ERROR_STALL = EXIT_KIND_VALUES["SCX_EXIT_ERROR_STALL"]


def exit_kinds(btf: Any) -> dict[int, str]:
    """{value: name} of the kernel's `enum scx_exit_kind` (BtfError when it has none)."""
    return {value: name for name, value in btf.enum(EXIT_KIND_ENUM).items()}


def exit_kind_name(kind: int, kinds: dict[int, str] | None = None) -> str:
    """`SCX_EXIT_ERROR_BPF` for 1025; `SCX_EXIT_<n>` for a value the table lacks."""
    return (kinds or EXIT_KINDS).get(kind, f"SCX_EXIT_{kind}")


def is_error_kind(kind: int | None) -> bool:
    """An error exit (SCX_EXIT_ERROR and above: ERROR_BPF, ERROR_STALL, ...)."""
    return kind is not None and kind >= SCX_EXIT_ERROR
