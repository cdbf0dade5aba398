"""`?`: every key of the screen underneath and of the app, with what it does."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

INTRO = ("ktstr tui is a view over run directories: it reads them and sends commands to a "
         "live run's control socket. Runs it starts are `ktstr run` processes of their own. "
         "ctrl+p opens the command palette with every action below.")


def bindings_text(screen: Screen) -> Text:
    out = Text()
    seen: set[str] = set()
    sources = [(screen.__class__.__name__.replace("Screen", "") or "Screen", screen)]
    for node in screen.walk_children(with_self=False):
        if getattr(node, "BINDINGS", None):
            sources.append((node.__class__.__name__, node))
    sources.append(("App", screen.app))
    for title, node in sources:
        rows = []
        for b in node._bindings.key_to_bindings.values():
            for binding in b:
                if not binding.description or (binding.key, binding.action) in seen:
                    continue
                seen.add((binding.key, binding.action))
                rows.append((binding.key_display or binding.key, binding.description))
        if not rows:
            continue
        out.append(f"{title}\n", style="bold cyan")
        for key, desc in rows:
            out.append(f"  {key:<16}", style="bold")
            out.append(f"{desc}\n")
    out.rstrip()
    return out


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "close", "Close help")]

    def __init__(self, under: Screen) -> None:
        super().__init__()
        self.under = under

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help", classes="dialog"):
            yield Static(Text("Help", style="bold"))
            yield Static(INTRO, id="help-intro")
            yield Static(bindings_text(self.under), id="help-keys")

    def action_close(self) -> None:
        self.dismiss(None)
