"""Loopback fakes of real provider APIs, built on :mod:`http.server` (127.0.0.1, OS port).

Each provider test module writes a small ``Handler`` (a function of the request) that
reproduces the provider's documented quirks, serves it with the ``serve`` fixture and points the
provider's real profile (``mappings/<provider>/profile.toml``) at it through the profile's
``base_url_env`` variable. The fake itself (``FakeServer``, ``Request``, ``Reply``) is the suite's
one, in tests/_fakes.py with ``serve`` in tests/conftest.py; it is re-exported here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from _fakes import FakeServer, Handler, Reply, Request

__all__ = ["DATA", "MAPPINGS", "ROOT", "FakeServer", "Handler", "Reply", "Request", "paginate"]

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
MAPPINGS = ROOT / "mappings"


def paginate(items: list[Any], page: int, size: int) -> tuple[list[Any], bool]:
    """Items of 1-based ``page`` and whether a later page exists."""
    lo = (page - 1) * size
    return items[lo : lo + size], lo + size < len(items)
