"""Pagination detection and probing against each sandbox style; dry-run request plans."""

from __future__ import annotations

from typing import Any

import pytest

from scaler_workbench.clock import FakeClock
from scaler_workbench.connectors import (
    Client,
    detect_pagination,
    fetch_resources,
    make_paginator,
    plan_requests,
    probe_pagination,
)

from .conftest import sandbox_profile


@pytest.mark.parametrize(
    ("style", "expected"),
    [
        ({"paginator": "offset"}, "offset"),
        ({"paginator": "page"}, "page_number"),
        ({"paginator": "cursor"}, "cursor"),
        ({"paginator": "next_url"}, "next_url"),
        ({"paginator": "link_header"}, "link_header"),
    ],
)
def test_probe_finds_the_working_paginator(
    style: dict[str, Any], expected: str, make_sandbox: Any, sandbox_env: Any
) -> None:
    sb = make_sandbox(sites=5, meters_per_site=1, page_size=2, **style)
    sandbox_env(sb)
    client = Client(sandbox_profile(sb), clock=FakeClock())
    sent_before = client.requests_sent
    result = probe_pagination(client, "/sites", params={"limit": 2, "per_page": 2})
    assert result.first_page == 2 and result.record_path == "data"
    assert result.best is not None and result.best["type"] == expected, str(result)
    make_paginator(result.best)  # the suggestion loads as a profile table
    assert client.requests_sent - sent_before <= 8
    assert "WORKS" in str(result)


def test_detect_pagination_scores(make_sandbox: Any, sandbox_env: Any) -> None:
    sb = make_sandbox(sites=3, meters_per_site=1, paginator="link_header", page_size=1)
    sandbox_env(sb)
    client = Client(sandbox_profile(sb), clock=FakeClock())
    guesses = detect_pagination(client.get("/sites"))
    assert guesses[0] == (0.95, {"type": "link_header"})
    assert guesses[-1][1] == {"type": "none"}
    reply = client.get("/sites")
    assert (
        detect_pagination(reply.response, body={"data": [], "next_cursor": "abc"})[0][1]["type"]
        == "link_header"
    )
    body_only = detect_pagination(None, body={"items": [], "offset": 0, "limit": 50, "total": 120})
    assert body_only[0][1] == {"type": "offset", "total_path": "total", "limit": 50}


def test_plan_counts_requests_and_time_before_sending(
    make_sandbox: Any, sandbox_env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sb = make_sandbox(sites=2, meters_per_site=3, start="2024-01-01", end="2024-04-01")
    sandbox_env(sb)
    profile = sandbox_profile(sb, client={"budget": {"requests_per_minute": 10}})
    monkeypatch.delenv("SANDBOX_API_KEY")  # planning needs no credentials
    sb.clear_log()
    plan = plan_requests(profile, "2024-01-01", "2024-04-01", counts={"sites": 2, "meters": 6})
    assert not sb.request_log  # nothing was sent
    rows = {r["resource"]: r for r in plan.rows}
    assert rows["intervals"]["windows"] == 3 and rows["intervals"]["parents"] == 6
    assert rows["meters"]["requests"] == 2
    assert plan.total_requests == sum(r["requests"] for r in plan.rows)
    assert plan.seconds == ((plan.total_requests - 1) // 10) * 60
    assert "total:" in str(plan) and not plan.exact  # interval counts were not given
    monkeypatch.setenv("SANDBOX_API_KEY", sb.env()["SANDBOX_API_KEY"])
    results = fetch_resources(profile, since="2024-01-01", until="2024-04-01", clock=FakeClock())
    counts = {name: len(r.records) for name, r in results.items()}
    exact = plan_requests(profile, "2024-01-01", "2024-04-01", counts=counts)
    assert not exact.exact  # parent_filter keeps an unknown share of the meters
    sent = sum(r.report.requests_sent for r in results.values())
    assert exact.rows[0]["requests"] == results["sites"].report.requests_sent
    assert exact.total_requests >= sent * 0.5  # children share the parents' count (upper bound)


ROWS = [{"uid": f"R{i}"} for i in range(7)]


def _start_index_api(req: Any) -> Any:
    """Pages by ``startIndex``/``size`` (1-based), records under ``result.rows``; ignores
    ``offset``/``limit``/``page`` (a probe with the usual names sees page 1 again)."""
    from _fakes import Reply

    start, size = int(req.query.get("startIndex", 1)), int(req.query.get("size", 3))
    rows = ROWS[start - 1 : start - 1 + size]
    return Reply(200, {"result": {"rows": rows, "totalResults": len(ROWS)}})


def _page_number_api(req: Any) -> Any:
    from _fakes import Reply

    number, size = int(req.query.get("pageNumber", 0)), int(req.query.get("pageSize", 3))
    return Reply(200, {"payload": {"items": ROWS[number * size : (number + 1) * size]}})


def test_probe_takes_the_apis_parameter_names_and_a_record_path(serve: Any) -> None:
    from .conftest import fake_profile

    server = serve(_start_index_api)
    client = Client(fake_profile(server.url, resources={}), clock=FakeClock())
    result = probe_pagination(
        client,
        "/rows",
        params={"startIndex": 1, "size": 3},
        record_path="result.rows",
        primary_key="uid",
    )
    assert result.first_page == 3 and result.record_path == "result.rows"
    assert result.best == {
        "type": "offset",
        "limit": 3,
        "offset_param": "startIndex",
        "limit_param": "size",
        "offset": 1,
    }, str(result)
    assert server.requests[-2].query == {"startIndex": "4", "size": "3"}
    # the suggestion pages the whole list when used as the resource's paginator
    from scaler_workbench.connectors import fetch_resources

    profile = fake_profile(
        server.url,
        resources={"rows": {"path": "/rows", "record_path": "result.rows", "primary_key": "uid"}},
        paginator=result.best,
    )
    records = fetch_resources(profile, clock=FakeClock())["rows"].records
    assert [r["uid"] for r in records] == [r["uid"] for r in ROWS]


def test_probe_takes_explicit_page_names(serve: Any) -> None:
    from .conftest import fake_profile

    server = serve(_page_number_api)
    client = Client(fake_profile(server.url, resources={}), clock=FakeClock())
    result = probe_pagination(
        client,
        "/items",
        params={"pageNumber": 0, "pageSize": 3},
        record_path="payload.items",
        primary_key="uid",
        page_param="pageNumber",
        page_size_param="pageSize",
    )
    assert result.best == {
        "type": "page_number",
        "page_param": "pageNumber",
        "base_page": 0,
        "page_size": 3,
        "page_size_param": "pageSize",
    }, str(result)


def test_probe_leaves_date_parameters_alone(serve: Any) -> None:
    """``start=2024-01-01`` is a date filter, not an offset: the probe keeps it as sent."""
    from .conftest import fake_profile

    server = serve(_start_index_api)
    client = Client(fake_profile(server.url, resources={}), clock=FakeClock())
    result = probe_pagination(
        client,
        "/rows",
        params={"start": "2024-01-01", "startIndex": 1, "size": 3},
        record_path="result.rows",
        primary_key="uid",
    )
    assert result.best is not None and result.best["offset_param"] == "startIndex"
    assert all(r.query["start"] == "2024-01-01" for r in server.requests)
