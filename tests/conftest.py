"""Shared pytest fixtures.

``make_sandbox(**options)`` starts a :class:`scaler_workbench.sandbox.Sandbox` on 127.0.0.1 (an
OS-chosen port) with any constructor option and stops every instance at the end of the test;
``sandbox`` is one default instance (api_key auth, offset pagination, 6 sites x 3 meters).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from scaler_workbench.sandbox import Sandbox


@pytest.fixture
def make_sandbox() -> Iterator[Callable[..., Sandbox]]:
    """Factory: ``make_sandbox(auth="basic", paginator="cursor", ...)`` -> a started Sandbox."""
    started: list[Sandbox] = []

    def make(**options: Any) -> Sandbox:
        options.setdefault("lifetime", 300.0)
        sb = Sandbox(**options).start()
        started.append(sb)
        return sb

    yield make
    for sb in started:
        sb.stop()


@pytest.fixture
def sandbox(make_sandbox: Callable[..., Sandbox]) -> Sandbox:
    """A started default sandbox (stopped after the test)."""
    return make_sandbox()
