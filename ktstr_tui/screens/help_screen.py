"""`?`: the app's own keys first, grouped by the screen and the parts of it that have keys,
with key names as typed (`/`, `?`, `=`); Textual's generic keys (focus, text input, tables)
last, folded."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.dom import DOMNode
from textual.screen import ModalScreen, Screen
from textual.widgets import Collapsible, Static

INTRO = ("ktstr tui is a view over run directories: it reads them and sends commands to a "
         "live run's control socket. Runs it starts are `ktstr run` processes of their own. "
         "ctrl+p opens the command palette with every action below, by name.")

# Titles of the parts of a screen that have keys of their own.
PART_TITLES = {
    "LogView": "Logs", "LogPane": "Logs", "ScxDumpView": "sched_ext dump",
    "MonitorGrid": "Monitor history", "FailureDumpView": "Failure dump",
    "VimDataTable": "Lists and tables", "VimOptionList": "Lists and tables",
    "VimTree": "Lists and tables", "JsonTree": "Lists and tables",
    "BpfGlobals": "Lists and tables",
}
OURS = "ktstr_tui"


def _ours(node: DOMNode) -> list[Binding]:
    """The bindings the app's own classes declare for `node` (not Textual's)."""
    out: list[Binding] = []
    for cls in type(node).__mro__:
        if cls.__module__.startswith(OURS) and "BINDINGS" in cls.__dict__:
            out += [b for b in _expand(cls.__dict__["BINDINGS"]) if b.description]
    return out


def _expand(bindings: list[BindingType]) -> list[Binding]:
    out = []
    for b in bindings:
        if isinstance(b, Binding):
            out += [Binding(k.strip(), b.action, b.description, b.show, b.key_display)
                    for k in b.key.split(",")]
    return out


def _key(screen: Screen, b: Binding) -> str:
    try:
        return screen.app.get_key_display(b)
    except Exception:  # noqa: BLE001 - a display name is a nicety
        return b.key


def _group(screen: Screen, title: str, bindings: list[Binding], seen: set, out: Text) -> None:
    """One block: keys that do the same thing share a line (`j k` would not; `1` ... do)."""
    by_desc: dict[str, list[str]] = {}
    for b in bindings:
        action = b.action.removeprefix("app.")  # a screen's Quit/Help are the app's
        if (b.key, action) in seen:
            continue
        seen.add((b.key, action))
        by_desc.setdefault(b.description, []).append(_key(screen, b))
    if not by_desc:
        return
    out.append(f"{title}\n", style="bold cyan")
    for desc, keys in by_desc.items():
        out.append(f"  {' '.join(dict.fromkeys(keys)):<14}", style="bold")
        out.append(f"{desc}\n")


def bindings_text(screen: Screen) -> Text:
    """The app's own keys: the screen's, its parts', then the app-wide ones."""
    out = Text()
    seen: set[tuple[str, str]] = set()
    name = type(screen).__name__.removesuffix("Screen") or "Screen"
    _group(screen, f"{name} screen", _ours(screen), seen, out)
    parts: dict[str, list[Binding]] = {}
    for node in screen.walk_children(with_self=False):
        mine = _ours(node)
        if mine:
            title = PART_TITLES.get(type(node).__name__, type(node).__name__)
            parts.setdefault(title, []).extend(mine)
    for title, bindings in parts.items():
        _group(screen, title, bindings, seen, out)
    _group(screen, "Everywhere", _ours(screen.app), seen, out)
    out.rstrip()
    return out


def textual_keys_text(screen: Screen) -> Text:
    """Textual's generic keys on this screen (focus, text fields, tables), compactly."""
    groups: dict[str, list[str]] = {}
    nodes = [screen, *screen.walk_children(with_self=False), screen.app]
    for node in nodes:
        for cls in type(node).__mro__:
            if cls.__module__.startswith(OURS) or "BINDINGS" not in cls.__dict__:
                continue
            for b in _expand(cls.__dict__["BINDINGS"]):
                if b.description or cls.__module__.startswith("textual.widgets"):
                    groups.setdefault(cls.__name__, []).append(_key(screen, b))
    out = Text()
    for cls_name, keys in groups.items():
        out.append(f"{cls_name}: ", style="bold")
        out.append(" ".join(dict.fromkeys(keys)) + "\n")
    out.rstrip()
    return out


class HelpScreen(ModalScreen[None]):
    # CSS, not DEFAULT_CSS: #help's height has to win over the app-wide .dialog rule
    # (app.tcss), and a widget's defaults never win over the app's stylesheet.
    CSS = """
    #help { height: 80%; }
    #help-intro { margin: 1 0; color: $text-muted; }
    """
    BINDINGS = [Binding("escape,question_mark,q", "close", "Close help")]

    def __init__(self, under: Screen) -> None:
        super().__init__()
        self.under = under

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help", classes="dialog"):
            yield Static(Text("Help", style="bold"))
            yield Static(INTRO, id="help-intro")
            yield Static(bindings_text(self.under), id="help-keys")
            yield Collapsible(Static(textual_keys_text(self.under), id="help-textual"),
                              title="Textual's own keys (focus, text fields, tables)",
                              collapsed=True)

    def action_close(self) -> None:
        self.dismiss(None)
