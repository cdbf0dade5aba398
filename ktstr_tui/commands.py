"""Command palette: every action of the current screen (and its widgets) and of the app,
found by its name or by the words of its tooltip ("error" finds "Jump to failure")."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider


class ScreenActionsProvider(Provider):
    """One entry per binding with a description on the screen the palette opened over."""

    def _actions(self):
        seen = set()
        for active in self.screen.active_bindings.values():
            b = active.binding
            if not b.description or (b.action, b.description) in seen:
                continue
            seen.add((b.action, b.description))
            key_name = self.app.get_key_display(b)
            help_text = f"{b.tooltip} (key {key_name})" if b.tooltip else f"key {key_name}"
            yield (f"{b.description}", help_text,
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
            # the title first; the help text (what it shows, its key) finds it too
            score = max(matcher.match(title), matcher.match(help_text) * 0.5)
            if score > 0:
                yield Hit(score, matcher.highlight(title), run, help=help_text)
