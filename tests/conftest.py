"""Shared fixtures. Marker registration lives in pyproject.toml."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

# Timing never decides a test: CI shares 2 cores, and a loaded machine made Hypothesis's
# too_slow health check fail a correct test (test_compare_never_raises_on_damaged_results).
# One profile for every run - no deadlines, no speed health checks; example counts unchanged.
settings.register_profile(
    "ktstr",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.large_base_example],
)
settings.load_profile("ktstr")


@pytest.fixture
def store(tmp_path, monkeypatch):
    """An empty run store in a temp dir (KTSTR_HOME)."""
    root = tmp_path / "store"
    root.mkdir()
    monkeypatch.setenv("KTSTR_HOME", str(root))
    return root


@pytest.fixture(scope="session")
def kernel():
    """The real sched_ext kernel (`ktstr kernel fetch`, cached: instant after the first time).
    Skips only when this machine cannot fetch it (archive unreachable, no apt configuration)."""
    from ktstr_vmm.errors import FetchError, UsageError
    from ktstr_vmm.kernel.fetch import fetch_kernel

    try:
        return fetch_kernel()
    except (FetchError, UsageError) as e:
        pytest.skip(f"no sched_ext kernel: {e.one_line()}")


@pytest.fixture(scope="session")
def schedulers(kernel):
    """{name: Scheduler} built for the `kernel` fixture (`ktstr schedulers build`, cached per
    kernel build id: instant after the first time): the kernel's tools/sched_ext schedulers
    and scx_ktstr. Skips only when the kernel's source cannot be fetched; a failed build
    fails."""
    from ktstr_vmm.errors import FetchError
    from ktstr_vmm.kernel.schedulers import build_schedulers

    try:
        return {s.name: s for s in build_schedulers(kernel)}
    except FetchError as e:
        pytest.skip(f"no kernel source to build schedulers from: {e.one_line()}")
