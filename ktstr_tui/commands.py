"""Command palette: every action of the current screen (and its widgets) and of the app."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider


class ScreenActionsProvider(Provider):
    """One entry per binding with a description on the screen the palette opened over."""

    def _actions(self):
        seen = set()
        for key, active in self.screen.active_bindings.items():
            b = active.binding
            if not b.description or (b.action, b.description) in seen:
                continue
            seen.add((b.action, b.description))
            yield (f"{b.description}", f"key {b.key_display or key}",
                   partial(active.node.run_action, b.action), active.enabled)

    async def discover(self) -> Hits:
        for title, help_text, run, enabled in self._actions():
            if enabled:
                yield DiscoveryHit(title, run, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, run, enabled in self._actions():
            if not enabled:
                continue
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), run, help=help_text)
