"""A JSON document as a Tree that builds children only when a node is expanded."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from ktstr_vmm.introspect.scx import exit_kind_name

from .vim import VimTree

MAX_CHILDREN = 500


def _scalar(value: Any) -> Text:
    if isinstance(value, str):
        return Text(repr(value) if len(value) < 200 else repr(value[:200]) + "...", style="green")
    if value is None:
        return Text("null", style="dim")
    if isinstance(value, bool):
        return Text(str(value).lower(), style="magenta")
    return Text(str(value), style="yellow")


def _summary(value: Any) -> str:
    if isinstance(value, dict):
        return f"{{{len(value)}}}"
    return f"[{len(value)}]"


class JsonTree(VimTree):
    """Tree of `data`; containers are filled in on first expansion (dumps can be big)."""

    def __init__(self, label: str, data: Any, *, id: str | None = None) -> None:
        super().__init__(label, data=data, id=id)
        self.show_root = True

    def on_mount(self) -> None:
        self._fill(self.root)
        self.root.expand()

    def _label(self, key: str, value: Any) -> Text:
        text = Text(key, style="bold")
        text.append(": ")
        if isinstance(value, dict | list):
            text.append(_summary(value), style="dim")
        else:
            text.append_text(_scalar(value))
            if key == "exit_kind" and isinstance(value, int) and not isinstance(value, bool):
                text.append(f" ({exit_kind_name(value)})", style="dim")  # named, not a number
        return text

    def _fill(self, node: TreeNode[Any]) -> None:
        value = node.data
        if node.children or not isinstance(value, dict | list):
            return
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for n, (k, v) in enumerate(items):
            if n >= MAX_CHILDREN:
                node.add_leaf(Text(f"... {len(value) - MAX_CHILDREN} more", style="dim"))
                break
            if isinstance(v, dict | list) and v:
                node.add(self._label(str(k), v), data=v)
            else:
                node.add_leaf(self._label(str(k), v), data=v)

    def on_tree_node_expanded(self, event: Tree.NodeExpanded[Any]) -> None:
        self._fill(event.node)
