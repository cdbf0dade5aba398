"""Test support code (not product code): recorded-artifact builders and oracles shared by
tests and benchmarks. `tests/` is on sys.path (tests/conftest.py's directory), so tests
import `from support.store_helpers import make_run`."""

from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
DATA = TESTS / "data"
