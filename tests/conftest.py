"""Shared fixtures. Marker registration lives in pyproject.toml."""

from __future__ import annotations

import pytest


@pytest.fixture
def store(tmp_path, monkeypatch):
    """An empty run store in a temp dir (KTSTR_HOME)."""
    root = tmp_path / "store"
    root.mkdir()
    monkeypatch.setenv("KTSTR_HOME", str(root))
    return root
