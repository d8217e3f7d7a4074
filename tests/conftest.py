"""Shared pytest fixtures.

``make_sandbox(**options)`` starts a :class:`scaler_workbench.sandbox.Sandbox` on 127.0.0.1 (an
OS-chosen port) with any constructor option and stops every instance at the end of the test;
``sandbox`` is one default instance (api_key auth, offset pagination, 6 sites x 3 meters).
``small_sandbox(**options)`` starts a small one (2 sites x 3 meters, 2024-01-01 to 2024-04-01, the
extent of mappings/sandbox/profile.toml runs) and exports its credentials into the environment.
``serve(handler)`` starts the suite's one scripted fake (:class:`_fakes.FakeServer`, 127.0.0.1,
an OS-chosen port) answering ``handler(Request) -> Reply`` and closes it at the end of the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from _fakes import FakeServer, Handler

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


#: the small sandbox's options: 2 sites x 3 meters over the first quarter of 2024
SMALL_SANDBOX: dict[str, Any] = {
    "sites": 2,
    "meters_per_site": 3,
    "start": "2024-01-01",
    "end": "2024-04-01",
}


@pytest.fixture
def small_sandbox(
    make_sandbox: Callable[..., Sandbox], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Sandbox]:
    """Factory: ``small_sandbox(quota_after=2, ...)`` -> a started small Sandbox whose credentials
    (``SANDBOX_*``) are set in the environment for the test, as a sync run reads them."""

    def start(**options: Any) -> Sandbox:
        sb = make_sandbox(**{**SMALL_SANDBOX, **options})
        for k, v in sb.env().items():
            monkeypatch.setenv(k, v)
        return sb

    return start


@pytest.fixture
def serve() -> Iterator[Callable[[Handler], FakeServer]]:
    """Factory: ``serve(handler)`` -> a running FakeServer, closed after the test."""
    servers: list[FakeServer] = []

    def make(handler: Handler) -> FakeServer:
        s = FakeServer(handler)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()
