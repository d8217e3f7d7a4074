"""Clocks: the real one, and a fake one so tests never sleep for real backoff.

Everything that waits or timestamps (client retries, rate budgets, token expiry, sync runs)
takes a ``clock`` argument with three methods: ``monotonic()`` [s], ``sleep(seconds)`` and
``now()`` (tz-aware UTC datetime).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = ["Clock", "FakeClock", "SystemClock"]


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...

    def now(self) -> datetime: ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def now(self) -> datetime:
        return datetime.now(UTC)

    def __repr__(self) -> str:
        return "SystemClock()"


class FakeClock:
    """A clock that advances only when slept on; records every sleep in ``sleeps``.

    Parameters
    ----------
    start : datetime, optional
        The wall-clock time at monotonic zero (default 2024-01-01T00:00Z).
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._t = 0.0
        self._start = start or datetime(2024, 1, 1, tzinfo=UTC)
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        with self._lock:
            return self._t

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self._t += max(0.0, seconds)

    def advance(self, seconds: float) -> None:
        """Move time forward without recording a sleep."""
        with self._lock:
            self._t += seconds

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self.monotonic())

    def __repr__(self) -> str:
        return f"FakeClock(t={self._t:.3f}s, sleeps={len(self.sleeps)})"
