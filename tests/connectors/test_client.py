"""The client: error translation, retries, Retry-After, quota, budget, host guard, replay."""

from __future__ import annotations

import email.utils
import inspect
import socket
from pathlib import Path
from typing import Any

import pytest
import requests
import urllib3.exceptions
from _fakes import Reply, Request

from scaler_workbench.clock import FakeClock
from scaler_workbench.connectors import Client, fetch_resources
from scaler_workbench.connectors.client import Budget, _retry_after, _translate_errors
from scaler_workbench.exceptions import (
    AuthError,
    ProfileError,
    ProviderUnavailableError,
    QuotaExhaustedError,
    RequestRejectedError,
    TransportError,
)

from .conftest import expected_ids, fake_profile, sandbox_profile


def _exception_classes(module: Any, base: type[BaseException]) -> list[type[BaseException]]:
    return [obj for obj in vars(module).values() if inspect.isclass(obj) and issubclass(obj, base)]


class _Half:
    length_remaining = 1

    def tell(self) -> int:
        return 0


def _instance(cls: type[BaseException]) -> BaseException:
    patterns: tuple[tuple[Any, ...], ...] = (
        ("boom",),
        ("boom", "doc", 0),
        (None, "boom"),
        (None, "/x", "boom"),
        (0, 0),
        (_Half(), b""),
        (),
    )
    for args in patterns:
        try:
            exc = cls(*args)
            str(exc)
            return exc
        except (TypeError, AttributeError):
            continue
    raise AssertionError(f"cannot build {cls}")


@pytest.mark.parametrize(
    "cls",
    _exception_classes(requests.exceptions, requests.exceptions.RequestException)
    + _exception_classes(urllib3.exceptions, urllib3.exceptions.HTTPError),
    ids=lambda c: f"{c.__module__}.{c.__name__}",
)
def test_every_transport_exception_is_translated(cls: type[BaseException]) -> None:
    exc = _instance(cls)
    with (
        pytest.raises(TransportError) as info,
        _translate_errors("https://h.example/x?api_key=abcd1234"),
    ):
        raise exc
    assert info.value.__cause__ is exc
    assert "abcd1234" not in str(info.value)


def test_retry_after_seconds_and_http_date() -> None:
    now = FakeClock().now()
    assert _retry_after("12", now) == 12.0
    later = email.utils.format_datetime(now.replace(second=30), usegmt=True)
    assert _retry_after(later, now) == 30.0
    assert _retry_after("soon", now) is None and _retry_after(None, now) is None


def _profile(url: str, **client: Any) -> Any:
    return fake_profile(
        url,
        resources={"x": {"path": "/x"}},
        client={"max_attempts": 4, "backoff_base": 1.0, "backoff_cap": 60, **client},
    )


def test_retry_after_http_date_from_sandbox(make_sandbox: Any, sandbox_env: Any) -> None:
    clock = FakeClock()
    sb = make_sandbox(
        sites=1, clock=clock, every_nth_429=2, retry_after=7, retry_after_format="http-date"
    )
    sandbox_env(sb)
    client = Client(sandbox_profile(sb), clock=clock)
    for _ in range(3):
        client.get("/sites")
    assert clock.sleeps and all(6.0 <= s <= 7.0 for s in clock.sleeps)


def test_waits_are_capped_and_attempts_limited(serve: Any) -> None:
    server = serve(lambda req: Reply(503, {"error": "down"}, {"Retry-After": "1000"}))
    clock = FakeClock()
    client = Client(_profile(server.url, backoff_cap=30), clock=clock)
    with pytest.raises(ProviderUnavailableError, match="after 4 attempts") as info:
        client.get("/x")
    assert clock.sleeps == [30, 30, 30] and len(server.requests) == 4
    assert info.value.status == 503


def test_backoff_grows_exponentially_with_jitter(serve: Any) -> None:
    server = serve(lambda req: Reply(502, "bad gateway"))
    clock = FakeClock()
    with pytest.raises(ProviderUnavailableError):
        Client(_profile(server.url, max_attempts=5, jitter=0.5), clock=clock).get("/x")
    for n, wait in enumerate(clock.sleeps):
        assert 2**n <= wait <= 1.5 * 2**n


def test_quota_429_without_retry_after_stops_at_once(serve: Any) -> None:
    server = serve(
        lambda req: Reply(429, {"error": "daily_quota_exceeded", "message": "quota spent"})
    )
    clock = FakeClock()
    with pytest.raises(QuotaExhaustedError) as info:
        Client(_profile(server.url), clock=clock).get("/x")
    assert len(server.requests) == 1 and not clock.sleeps
    assert "after the quota resets" in str(info.value)


def test_status_errors_are_typed_redacted_and_truncated(serve: Any) -> None:
    def handler(req: Request) -> Reply:
        if req.path == "/secret":
            return Reply(401, {"error": "bad key"})
        return Reply(404, "x" * 5000)

    server = serve(handler)
    client = Client(_profile(server.url), clock=FakeClock())
    with pytest.raises(AuthError) as auth:
        client.get("/secret", params={"api_key": "supersecretvalue"})
    assert "supersecretvalue" not in str(auth.value) and "supersecretvalue" not in auth.value.url
    with pytest.raises(RequestRejectedError) as rejected:
        client.get("/missing")
    assert rejected.value.status == 404 and len(str(rejected.value)) < 1000


def test_connection_refused_is_a_transport_error_after_retries(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    clock = FakeClock()
    with pytest.raises(TransportError) as info:
        Client(_profile(f"http://127.0.0.1:{port}"), clock=clock).get("/x")
    assert len(clock.sleeps) == 3 and isinstance(info.value, ConnectionError)


def test_credentials_never_go_to_other_hosts(
    serve: Any, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    """127.0.0.1 is the API host; 'localhost' reaches the same server but is another host."""

    def handler(req: Request) -> Reply:
        elsewhere = req.base.replace("127.0.0.1", "localhost") + "/items?page=2"
        if req.path == "/items" and "page" not in req.query:
            return Reply(200, {"data": [{"id": 1}], "next": elsewhere})
        if req.path == "/items":
            return Reply(200, {"data": [{"id": 2}], "next": None})
        if req.path == "/moved":
            return Reply(302, b"", {"Location": elsewhere})
        return Reply(404, {})

    server = serve(handler)
    monkeypatch.setenv("SCRIPTED_KEY", "scripted-key-123")
    profile = fake_profile(
        server.url,
        resources={
            "items": {
                "path": "/items",
                "record_path": "data",
                "primary_key": "id",
                "paginator": {"type": "next_url", "next_url_path": "next"},
            }
        },
        auth={"type": "api_key", "name": "X-Key", "key_env": "SCRIPTED_KEY"},
    )
    result = fetch_resources(profile, clock=FakeClock())
    assert [r["id"] for r in result["items"].records] == [1, 2]
    first, second = server.requests
    assert first.headers.get("X-Key") == "scripted-key-123"
    assert "X-Key" not in second.headers and "without credentials" in caplog.text
    client = Client(profile, clock=FakeClock())
    client.get("/moved")
    assert "X-Key" not in server.requests[-1].headers  # redirect followed without the key
    refuse = fake_profile(
        server.url,
        resources={},
        auth={"type": "api_key", "name": "X-Key", "key_env": "SCRIPTED_KEY"},
        client={"offsite": "refuse"},
    )
    with pytest.raises(AuthError, match="not an API host"):
        Client(refuse, clock=FakeClock()).get("/moved")
    allowed = fake_profile(
        server.url,
        resources={},
        auth={"type": "api_key", "name": "X-Key", "key_env": "SCRIPTED_KEY"},
        environments={"test": {"base_url": server.url, "allowed_hosts": ["localhost"]}},
    )
    Client(allowed, clock=FakeClock()).get("/moved")  # a bare host means its default port (80)
    assert "X-Key" not in server.requests[-1].headers
    port = server.url.rsplit(":", 1)[1]
    with_port = fake_profile(
        server.url,
        resources={},
        auth={"type": "api_key", "name": "X-Key", "key_env": "SCRIPTED_KEY"},
        environments={"test": {"base_url": server.url, "allowed_hosts": [f"localhost:{port}"]}},
    )
    Client(with_port, clock=FakeClock()).get("/moved")
    assert server.requests[-1].headers.get("X-Key") == "scripted-key-123"


def test_budget_rate_windows_and_daily_limit() -> None:
    clock = FakeClock()
    budget = Budget(requests_per_second=2, requests_per_minute=5, clock=clock)
    for _ in range(6):
        budget.acquire()
        budget.release()
    assert clock.monotonic() >= 60.0  # the 6th request waited for the minute window
    assert budget.seconds_for(11) == 120.0 and budget.seconds_for(1) == 0.0
    daily = Budget(requests_per_day=2, clock=clock)
    daily.acquire()
    daily.acquire()
    with pytest.raises(QuotaExhaustedError, match="per day"):
        daily.acquire()
    slow = Budget(requests_per_second=0.5, clock=FakeClock())
    assert slow.seconds_for(3) == 4.0
    with pytest.raises(ProfileError):
        Budget(requests_per_minute=0)


def test_client_budget_from_profile_slows_requests(serve: Any) -> None:
    server = serve(lambda req: Reply(200, {"ok": True}))
    clock = FakeClock()
    client = Client(
        _profile(server.url, budget={"requests_per_second": 1, "max_concurrency": 2}), clock=clock
    )
    for _ in range(4):
        client.get("/x")
    assert clock.monotonic() == pytest.approx(3.0) and client.requests_sent == 4


def test_record_then_replay_offline(make_sandbox: Any, sandbox_env: Any, tmp_path: Path) -> None:
    sb = make_sandbox(
        sites=1, meters_per_site=3, start="2024-01-01", end="2024-01-08", auth="api_key_query"
    )
    sandbox_env(sb)
    key = sb.env()["SANDBOX_API_KEY"]
    profile = sandbox_profile(
        sb,
        auth={
            "type": "api_key",
            "location": "query",
            "name": "api_key",
            "key_env": "SANDBOX_API_KEY",
        },
    )
    folder = tmp_path / "recorded"
    live = fetch_resources(
        profile,
        since="2024-01-01",
        until="2024-01-09",
        client=Client(profile, record_to=folder, clock=FakeClock()),
    )
    sb.stop()
    replay = fetch_resources(
        profile,
        since="2024-01-01",
        until="2024-01-09",
        client=Client(profile, replay_from=folder, clock=FakeClock()),
    )
    for name, result in live.items():
        assert replay[name].records == result.records
    assert {r["id"] for r in replay["intervals"].records} == expected_ids(sb)["intervals"]
    assert all(key not in p.read_text() for p in folder.iterdir())
    with pytest.raises(TransportError, match="no recorded response"):
        Client(profile, replay_from=folder, clock=FakeClock()).get("/nothing-here")


def test_client_reexports_the_transport_names() -> None:
    # the token POST, retry policy and timeout moved to connectors/_transport.py (issue 12) so
    # that auth posts token forms without importing the client; the client keeps the names
    from scaler_workbench.connectors import _transport, auth, client

    for name in ("DEFAULT_TIMEOUT", "RetryPolicy", "post_token_form"):
        assert getattr(client, name) is getattr(_transport, name), name
        assert name in client.__all__
    assert auth.post_token_form is _transport.post_token_form  # the standalone fallback


@pytest.mark.parametrize(
    ("body", "daily"),
    [
        ({"error": "daily_quota_exceeded"}, True),
        ("Daily limit reached for this API key", True),
        ("monthly quota exhausted", True),
        ("You have exceeded your quota for the day", True),
        ("1000 requests per day exceeded", True),
        ("quota exceeded: 100 requests per minute", False),
        ("API calls quota exceeded! maximum admitted 60 per minute.", False),
        ("Rate limit exceeded: 10 requests per second", False),
        ("Quota exceeded for quota metric 'Queries' and limit 'Queries per minute'", False),
        ("too many requests", False),
    ],
)
def test_default_quota_pattern_means_daily_or_monthly_only(
    serve: Any, body: Any, daily: bool
) -> None:
    calls: list[int] = []

    def handler(req: Request) -> Reply:
        calls.append(1)
        return Reply(429, body) if len(calls) < 3 else Reply(200, {"ok": True})

    server = serve(handler)
    clock = FakeClock()
    client = Client(_profile(server.url, jitter=0.0), clock=clock)
    if daily:
        with pytest.raises(QuotaExhaustedError):
            client.get("/x")
        assert len(server.requests) == 1 and not clock.sleeps
    else:  # a rate limit: the normal backoff, then the request succeeds
        assert client.get("/x").body == {"ok": True}
        assert clock.sleeps == [1.0, 2.0] and len(server.requests) == 3


@pytest.mark.parametrize("header", ["nan", "-5", "0", "inf", "Wed, 21 Oct 2015 07:28:00 GMT"])
def test_retry_after_that_is_not_a_positive_finite_wait_falls_back_to_backoff(
    serve: Any, header: str
) -> None:
    now = FakeClock().now()
    assert _retry_after(header, now) is None
    calls: list[int] = []

    def handler(req: Request) -> Reply:
        calls.append(1)
        if len(calls) < 4:
            return Reply(503, {"error": "busy"}, {"Retry-After": header})
        return Reply(200, {"ok": True})

    server = serve(handler)
    clock = FakeClock()
    assert Client(_profile(server.url, jitter=0.0), clock=clock).get("/x").body == {"ok": True}
    assert clock.sleeps == [1.0, 2.0, 4.0] and len(server.requests) == 4


def test_the_default_quota_pattern_is_printed_in_the_docs() -> None:
    from pathlib import Path

    from scaler_workbench.connectors._transport import _DEFAULT_QUOTA

    doc = (Path(__file__).resolve().parents[2] / "docs" / "connectors.md").read_text("utf-8")
    assert _DEFAULT_QUOTA in doc
