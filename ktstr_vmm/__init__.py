"""ktstr workstation core: specs, engines, run directories, evaluation. No UI here."""

__version__ = "0.1.0"
