"""Switching a TabbedContent's tab by key: the tab's content takes the focus, so the keys
of what is shown (`/` in a log, j/k in a table) work at once."""

from __future__ import annotations

from textual.widget import Widget
from textual.widgets import TabbedContent, TabPane, Tabs


def first_focusable(root: Widget) -> Widget | None:
    """The first focusable widget under `root` that holds no focusable widget itself (a
    table rather than the scroll container around it), else the first focusable one."""
    candidates = [w for w in root.query("*")
                  if w.focusable and w.display and not isinstance(w, Tabs)]
    for w in candidates:
        if not any(d.focusable for d in w.query("*")):
            return w
    return candidates[0] if candidates else None


def show_tab(tabs: TabbedContent, tab: str) -> None:
    """Activate `tab` and focus its first focusable widget (once it is displayed). The old
    focus is dropped first: a focused widget that gets hidden would pass the focus to its
    neighbour in the old tab, and that pane would take the tab back."""
    tabs.screen.set_focus(None)
    tabs.active = tab

    def focus() -> None:
        pane = tabs.get_pane(tab)
        target = first_focusable(pane) if isinstance(pane, TabPane) else None
        if target is not None:
            target.focus(scroll_visible=False)

    tabs.call_after_refresh(focus)
