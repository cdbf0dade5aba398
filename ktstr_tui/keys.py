"""Keys every full screen starts its BINDINGS with, so the footer shows Quit and Help
first and keeps them on an 80-column terminal (the footer lists bindings from the focused
widget outwards, app-wide ones last, and cuts what does not fit)."""

from __future__ import annotations

from textual.binding import Binding

SCREEN_KEYS = [
    Binding("q", "app.quit", "Quit"),
    Binding("question_mark", "app.help", "Help"),
]
