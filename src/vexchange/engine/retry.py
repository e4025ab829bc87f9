"""The retry policy lives in :mod:`vexchange.retry` (the embedders use it too, and they sit
below the engine); this name stays for existing imports."""

from ..retry import RetryPolicy

__all__ = ["RetryPolicy"]
