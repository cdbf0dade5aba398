"""The verdict of a run at a glance: PASS / FAIL / INCONCLUSIVE / SKIP, or the live phase."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

VERDICT_CLASSES = ("pass", "fail", "inconclusive", "skip", "running", "error")


class VerdictBanner(Static):
    """verdict: a verdict or a phase; detail: the first line of the message."""
    DEFAULT_CSS = """
    VerdictBanner {
        height: 1;
        padding: 0 1;
        text-style: bold;
    }
    VerdictBanner.-pass { color: $success; }
    VerdictBanner.-fail { color: $error; }
    VerdictBanner.-error { color: $error; }
    VerdictBanner.-inconclusive { color: $warning; }
    VerdictBanner.-skip { color: $text-muted; }
    VerdictBanner.-running { color: $accent; }
    """

    verdict: reactive[str] = reactive("pending")
    detail: reactive[str] = reactive("")

    def __init__(self, verdict: str = "pending", detail: str = "", *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.set_reactive(VerdictBanner.verdict, verdict)
        self.set_reactive(VerdictBanner.detail, detail)

    def on_mount(self) -> None:
        self._restyle()

    def watch_verdict(self) -> None:
        self._restyle()

    def watch_detail(self) -> None:
        self._restyle()

    def _restyle(self) -> None:
        for c in VERDICT_CLASSES:
            self.remove_class(f"-{c}")
        v = self.verdict if self.verdict in VERDICT_CLASSES else "running"
        self.add_class(f"-{v}")
        text = Text()
        text.append(f" {self.verdict.upper()} ", style="bold reverse")
        if self.detail:
            text.append("  ")
            text.append(self.detail)
        self.update(text)
