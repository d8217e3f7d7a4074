"""Fetch events for whoever shows progress (the CLI's bar): requests, retries, pages.

The connectors call :func:`emit` at each request sent, each retry and each page of records;
:func:`observe_fetch` registers a callback for a ``with`` block. The observers are one
process-wide list, as logging's handlers are (a fetch may run on worker threads, which a
context variable would not reach). An observer that raises is skipped for that event (logged at
DEBUG): progress never breaks a fetch. Events carry counts and statuses only, never URLs,
bodies or credentials.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from scaler_workbench._secrets import get_logger

__all__ = ["FetchEvent", "emit", "observe_fetch"]

log = get_logger(__name__)


@dataclass(frozen=True)
class FetchEvent:
    """One thing that happened during a fetch.

    Attributes
    ----------
    kind : {"resource", "request", "retry", "page"}
        ``resource``: a resource's fetch starts (``sequences`` parents to walk); ``request``: an
        HTTP request was answered (``status``, None when it failed in transport); ``retry``: a
        request failed and is retried after ``wait`` [s] (``attempt`` of ``max_attempts``
        failed); ``page``: a page of ``records`` records of ``resource`` arrived.
    """

    kind: str
    resource: str = ""
    status: int | None = None
    attempt: int = 0
    max_attempts: int = 0
    wait: float = 0.0
    records: int = 0
    sequences: int = 0


Observer = Callable[[FetchEvent], None]
_observers: tuple[Observer, ...] = ()
_lock = threading.Lock()


def emit(event: FetchEvent) -> None:
    """Hand ``event`` to every observer (cheap when nobody observes)."""
    for observer in _observers:
        try:
            observer(event)
        except Exception:  # progress must never break a fetch
            log.debug("fetch observer %r failed on %s", observer, event.kind, exc_info=True)


@contextlib.contextmanager
def observe_fetch(observer: Observer) -> Iterator[None]:
    """Call ``observer(event)`` for every :class:`FetchEvent` while the block runs.

    Parameters
    ----------
    observer : callable
        Takes one :class:`FetchEvent`; called on the thread that fetches.
    """
    global _observers
    with _lock:
        _observers = (*_observers, observer)
    try:
        yield
    finally:
        with _lock:
            rest = list(_observers)
            rest.remove(observer)
            _observers = tuple(rest)
