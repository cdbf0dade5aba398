"""The one place the TUI gets the run store from."""

from __future__ import annotations

from ktstr_vmm.rundir.layout import LIVE_PHASES
from ktstr_vmm.rundir.summary import ALL_VERDICTS, RunSummary
from ktstr_vmm.store.store import Store
from ktstr_vmm.store.watch import LogAppended, StoreEvent, StoreEvents

__all__ = ["ALL_VERDICTS", "LIVE_PHASES", "LogAppended", "RunSummary", "Store", "StoreEvent",
           "StoreEvents"]
