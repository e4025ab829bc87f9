"""Retry of transient failures: exponential backoff with full jitter, honouring retry_after.

Only ``TransientError`` is retried; every other error is final at once. ``attempts`` counts the
first try, so the default of 3 means one try and two retries.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from .errors import TransientError

__all__ = ["RetryPolicy"]

T = TypeVar("T")


@dataclass
class RetryPolicy:
    attempts: int = 3
    base_delay: float = 0.5
    max_delay: float = 30.0
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)
    retried: int = 0
    """How many retries this policy has made, for the receipt."""
    _count_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def note_retry(self) -> None:
        """Count one retry. Reads (on the read-ahead thread) and writes (on the main thread)
        retry through the same policy, and ``+=`` on an attribute is not atomic."""
        with self._count_lock:
            self.retried += 1

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")

    def delay(self, attempt: int, error: TransientError) -> float:
        """Full-jitter backoff for the given retry (1-based); a server's retry_after wins."""
        if error.retry_after is not None:
            return min(self.max_delay, max(0.0, error.retry_after))
        ceiling = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return self.rng.uniform(0, ceiling)

    def call(self, fn: Callable[[], T]) -> T:
        for attempt in range(1, self.attempts + 1):
            try:
                return fn()
            except TransientError as err:
                if attempt == self.attempts:
                    raise
                self.note_retry()
                self.sleep(self.delay(attempt, err))
        raise AssertionError("unreachable")  # pragma: no cover
