"""GraphQL resources, the Relay paginator, bans and fetch order (issue 18 items 2, 5 and 6).

The GraphQL flavour of the sandbox (scaler_workbench/sandbox/graphql.py) is onboarded by
tests/data/graphql/profile.toml alone (two .graphql documents next to it, no Python): monthly
totals equal the flavour's ground truth under 429/503 faults, a bad token exits 3 and the
flavour's ban (429 "Too many requests" without Retry-After) exits 4 and the next run resumes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from _fakes import Reply, Request

from scaler_workbench import cli
from scaler_workbench.clock import FakeClock
from scaler_workbench.connectors import Client, fetch_resources
from scaler_workbench.connectors._graphql import GraphQLRateLimited, raise_for_graphql_errors
from scaler_workbench.connectors.paginate import (
    PageRequest,
    PageResponse,
    RelayPaginator,
    make_paginator,
)
from scaler_workbench.connectors.resources import Connector, entity_resources
from scaler_workbench.exceptions import (
    AuthError,
    PaginationError,
    ProfileError,
    QuotaExhaustedError,
    RequestRejectedError,
)
from scaler_workbench.profile import Profile, read_profile
from scaler_workbench.sandbox import Sandbox
from scaler_workbench.store import StateStore
from scaler_workbench.sync import run_sync

from .conftest import fake_profile, flavour_truth, usage_months

ROOT = Path(__file__).resolve().parents[2]
PROFILE = ROOT / "tests" / "data" / "graphql" / "profile.toml"
#: two homes (Oslo and Stockholm), January and February 2024: 1440 hours each
FLAVOUR = {"homes": 2, "start": "2024-01-01", "end": "2024-03-01"}
#: the default portfolio data of the shared sandbox is not used by the flavour: keep it tiny
TINY = {"sites": 1, "meters_per_site": 1, "start": "2024-01-01", "end": "2024-01-03"}


@pytest.fixture
def graphql_sandbox(make_sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    def start(**faults: Any) -> Sandbox:
        sb = make_sandbox(flavour="graphql", flavour_options=FLAVOUR, **TINY, **faults)
        for k, v in sb.env().items():
            monkeypatch.setenv(k, v)
        return sb

    return start


# -- the Relay paginator, alone ---------------------------------------------------------------
def _page(info: dict[str, Any]) -> PageResponse:
    return PageResponse(url="http://x/gql", body={"data": {"c": {"pageInfo": info}}})


def test_relay_forward_writes_end_cursor_as_after_until_has_next_page_is_false() -> None:
    p = make_paginator({"type": "relay", "page_info_path": "data.c.pageInfo", "page_size": 50})
    assert isinstance(p, RelayPaginator)
    req = PageRequest(url="http://x/gql", json={"query": "q", "variables": {"id": 1}})
    p.init_request(req)
    assert req.json["variables"] == {"id": 1, "first": 50}
    p.update_state(_page({"hasNextPage": True, "endCursor": "c1", "startCursor": "c0"}), [])
    assert p.has_next_page and p.cursor == "c1"
    p.update_request(req)
    assert req.json["variables"] == {"id": 1, "first": 50, "after": "c1"}
    p.update_state(_page({"hasNextPage": False, "endCursor": "c2"}), [])
    assert not p.has_next_page
    with pytest.raises(PaginationError, match="a second time"):
        q = p.fresh()
        q.update_state(_page({"hasNextPage": True, "endCursor": "same"}), [])
        q.update_state(_page({"hasNextPage": True, "endCursor": "same"}), [])


def test_relay_backward_writes_start_cursor_as_before_until_has_previous_page_is_false() -> None:
    p = make_paginator(
        {"type": "relay", "page_info_path": "data.c.pageInfo", "direction": "backward"}
    )
    req = PageRequest(url="http://x/gql", json={"query": "q", "variables": {"last": 10}})
    p.update_state(_page({"hasPreviousPage": True, "hasNextPage": False, "startCursor": "s9"}), [])
    assert p.has_next_page
    p.update_request(req)
    assert req.json["variables"] == {"last": 10, "before": "s9"}
    p.update_state(_page({"hasPreviousPage": False, "startCursor": "s0"}), [])
    assert not p.has_next_page
    with pytest.raises(ProfileError, match="forward' or 'backward"):
        make_paginator({"type": "relay", "direction": "sideways"})
    with pytest.raises(PaginationError, match="no pageInfo"):
        RelayPaginator("data.nothere").update_state(_page({}), [])


# -- Relay over the sandbox: both directions, nodes and edges ---------------------------------
def _consumption_profile(direction: str) -> Profile:
    forward = direction == "forward"
    document = (
        "query ($homeId: ID!, $resolution: EnergyResolution!, "
        + ("$first: Int, $after: String" if forward else "$last: Int, $before: String")
        + ") { viewer { home(id: $homeId) { "
        + (
            "consumption(resolution: $resolution, first: $first, after: $after)"
            if forward
            else "consumption(resolution: $resolution, last: $last, before: $before)"
        )
        + " { pageInfo { hasNextPage hasPreviousPage startCursor endCursor } "
        + (
            "nodes { from to consumption } "
            if forward
            else "edges { cursor node { from to consumption } } "
        )
        + "} } } }"
    )
    data = read_profile(PROFILE).data
    data["resources"]["consumption"]["graphql"] = {
        "query": document,
        "variables": {
            "homeId": "{parent.home}",
            "resolution": "HOURLY",
            ("first" if forward else "last"): 500,  # the relay paginator adds after/before
        },
    }
    data["resources"]["consumption"]["record_path"] = (
        "data.viewer.home.consumption.nodes"
        if forward
        else "data.viewer.home.consumption.edges[*].node"
    )
    data["resources"]["consumption"]["paginator"] = {
        "type": "relay",
        "page_info_path": "data.viewer.home.consumption.pageInfo",
        "direction": direction,
    }
    return Profile.from_dict(data, path=PROFILE)


@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_relay_direction_fetches_every_hour_through_silent_page_caps(
    graphql_sandbox: Any, direction: str
) -> None:
    sb = graphql_sandbox()
    profile = _consumption_profile(direction)
    out = fetch_resources(profile, resources=["consumption"], clock=FakeClock())
    res = out["consumption"]
    assert res.report.complete, res.report.summary()
    hours = 2 * 1440
    assert len(res.records) == hours
    # 500 asked, 100 served without a word: the paginator followed pageInfo
    assert res.report.pages == 2 * 15
    keys = {(r["_parent"]["home"], r["from"]) for r in res.records}
    assert len(keys) == hours
    truth = sb.flavour.ground_truth()  # type: ignore[attr-defined]
    got = (
        pd.DataFrame(
            {
                "home": [r["_parent"]["home"] for r in res.records],
                "month": [r["from"][:7] for r in res.records],
                "v": [r["consumption"] for r in res.records],
            }
        )
        .groupby(["home", "month"])["v"]
        .sum()
    )
    for row in truth.itertuples():
        assert got[(row.meter_id, row.month)] == pytest.approx(row.consumption, rel=1e-12)
    sent: list[dict[str, Any]] = sb.flavour.requests  # type: ignore[attr-defined]
    cursor_name = "after" if direction == "forward" else "before"
    assert sum(1 for v in sent if v.get(cursor_name)) == 2 * 14  # every page but the first
    homes = {h["id"] for h in sb.flavour.homes}  # type: ignore[attr-defined]
    assert {v["homeId"] for v in sent if "homeId" in v} == homes  # {parent.home} filled per home


# -- GraphQL errors in 2xx answers ------------------------------------------------------------
def test_graphql_errors_map_to_auth_rate_limit_and_request_errors() -> None:
    with pytest.raises(AuthError, match="invalid token"):
        raise_for_graphql_errors(
            {"errors": [{"message": "invalid token", "extensions": {"code": "UNAUTHENTICATED"}}]}
        )
    with pytest.raises(AuthError):
        raise_for_graphql_errors({"errors": [{"message": "Not authorized to access home"}]})
    with pytest.raises(GraphQLRateLimited):
        raise_for_graphql_errors(
            {"errors": [{"message": "slow down", "extensions": {"code": "RATE_LIMITED"}}]}
        )
    with pytest.raises(RequestRejectedError) as info:
        raise_for_graphql_errors(
            {
                "data": {"viewer": {"home": None}},
                "errors": [{"message": "home not found", "path": ["viewer", "home"]}],
            }
        )
    assert "home not found at viewer.home" in str(info.value)
    raise_for_graphql_errors({"data": {"x": 1}})  # no errors: nothing raised
    raise_for_graphql_errors({"data": {"x": 1}, "errors": []})


def test_a_graphql_rate_limit_in_a_200_is_retried_with_backoff(serve: Any) -> None:
    calls: list[int] = []

    def handler(req: Request) -> Reply:
        calls.append(1)
        if len(calls) < 3:
            return Reply(200, {"errors": [{"message": "Rate limit exceeded, slow down"}]})
        return Reply(200, {"data": {"items": [{"id": 1}]}})

    server = serve(handler)
    profile = fake_profile(
        server.url,
        resources={"x": {"record_path": "data.items", "graphql": {"query": "{ items { id } }"}}},
        client={"max_attempts": 4, "backoff_base": 1.0, "backoff_cap": 60, "jitter": 0.0},
    )
    clock = FakeClock()
    out = fetch_resources(profile, clock=clock)
    assert out["x"].records == [{"id": 1}]
    assert clock.sleeps == [1.0, 2.0] and len(server.requests) == 3
    assert server.requests[0].method == "POST" and server.requests[0].path == "/"
    assert json.loads(server.requests[0].body) == {"query": "{ items { id } }", "variables": {}}


def test_a_graphql_query_file_that_does_not_exist_is_a_profile_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SANDBOX_TOKEN", "tok_x")
    data = read_profile(PROFILE).data
    data["resources"]["homes"]["graphql"]["query"] = "hoems.graphql"
    profile = Profile.from_dict(data, path=tmp_path / "profile.toml")
    with pytest.raises(ProfileError, match=r"hoems\.graphql' does not exist") as info:
        Connector(profile, client=Client(profile)).resource("homes")
    assert info.value.key == "resources.homes.graphql.query"


# -- bans: a 429 without Retry-After that a retry would renew ---------------------------------
@pytest.mark.parametrize(
    ("body", "ban_match", "stops"),
    [
        ("You are banned for 10 minutes", None, True),
        ("Too many requests. Try again in 10 minutes.", None, True),
        ("too many requests", None, False),  # a bare rate limit: backoff as before
        ("too many requests", "too many requests", True),  # the profile knows its ban answer
        ("Too many requests", "", False),  # "" turns it off
    ],
)
def test_a_ban_answer_without_retry_after_stops_like_a_quota(
    serve: Any, body: str, ban_match: str | None, stops: bool
) -> None:
    calls: list[int] = []

    def handler(req: Request) -> Reply:
        calls.append(1)
        return Reply(429, {"errors": [{"message": body}]}) if len(calls) < 3 else Reply(200, [])

    server = serve(handler)
    client_cfg: dict[str, Any] = {"max_attempts": 4, "backoff_base": 1.0, "jitter": 0.0}
    if ban_match is not None:
        client_cfg["ban_match"] = ban_match
    profile = fake_profile(server.url, resources={"x": {"path": "/x"}}, client=client_cfg)
    clock = FakeClock()
    client = Client(profile, clock=clock)
    if stops:
        with pytest.raises(QuotaExhaustedError):
            client.get("/x")
        assert len(server.requests) == 1 and not clock.sleeps  # no retry renewed the ban
    else:
        client.get("/x")
        assert len(server.requests) == 3 and clock.sleeps == [1.0, 2.0]


def test_a_bad_ban_match_regex_is_a_profile_error() -> None:
    profile = fake_profile(
        "http://127.0.0.1:9", resources={"x": {"path": "/x"}}, client={"ban_match": "(("}
    )
    with pytest.raises(ProfileError, match="ban_match"):
        Client(profile)


# -- fetch order ------------------------------------------------------------------------------
def test_entity_resources_are_fetched_before_usage_whatever_the_profile_order() -> None:
    data: dict[str, Any] = {
        "provider": {"name": "fake", "timezone": "UTC"},
        "environments": {"test": {"base_url": "http://127.0.0.1:9"}},
        "resources": {  # usage first, the meters' chain last
            "usage": {"path": "/usage"},
            "readings": {"path": "/m/{m}/r", "parent": "meters", "parent_params": {"m": "id"}},
            "summary": {"path": "/summary"},
            "meters": {"path": "/s/{s}/meters", "parent": "sites", "parent_params": {"s": "id"}},
            "sites": {"path": "/sites"},
            "devices": {"path": "/devices"},
        },
        "mapping": {
            "assets": {"resource": "sites", "fields": {"asset_id": "id"}},
            "meters": {"resource": ["meters", "devices"], "fields": {"meter_id": "id"}},
        },
    }
    profile = Profile.from_dict(data)
    assert entity_resources(profile) == {"sites", "meters", "devices"}
    order = Connector(profile, client=Client(profile)).plan_order()
    assert order == ["sites", "meters", "devices", "usage", "readings", "summary"]


# -- the GraphQL flavour onboarded by its profile alone ---------------------------------------
def test_graphql_profile_sync_equals_ground_truth_under_429_and_503(
    graphql_sandbox: Any, tmp_path: Path
) -> None:
    sb = graphql_sandbox(every_nth_429=4, retry_after=2, every_nth_503=7)
    clock = FakeClock(datetime(2024, 3, 2, tzinfo=UTC))
    result = run_sync(read_profile(PROFILE), out=tmp_path, clock=clock, formats=("csv",))
    assert result.status == "success"
    assert usage_months(tmp_path) == pytest.approx(flavour_truth(sb), rel=1e-9)
    assert len(flavour_truth(sb)) == 4  # two homes x two months
    statuses = [r.status for r in sb.request_log]
    assert 429 in statuses and 503 in statuses  # the faults happened and were retried
    assert 2.0 in clock.sleeps  # Retry-After honoured
    # hours without data came back as null and were not invented
    nulls = sum(v is None for s in sb.flavour.series.values() for v in s["value"])  # type: ignore[attr-defined]
    assert nulls >= 2 * 24
    meters = pd.read_csv(tmp_path / "export" / "meters.csv")
    assert len(meters) == 2


def test_graphql_bad_token_exits_3_naming_the_graphql_error(
    graphql_sandbox: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sb = graphql_sandbox()
    monkeypatch.setenv("SANDBOX_TOKEN", "tok_not-the-token-000")
    code = cli.main(["sync", str(PROFILE), "--out", str(tmp_path), "--formats", "csv"])
    assert code == cli.EXIT_AUTH
    err = capsys.readouterr().err
    assert "invalid token" in err and "UNAUTHENTICATED" in err and "Traceback" not in err
    assert "tok_not-the-token-000" not in err
    assert [r.status for r in sb.request_log] == [200]  # an HTTP 200 with errors, not retried


def test_graphql_ban_exits_4_and_the_next_run_resumes(
    graphql_sandbox: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sb = graphql_sandbox()
    flavour: Any = sb.flavour
    flavour.budget = 20  # the homes list and the first home's 15 pages, then the ban
    args = ["sync", str(PROFILE), "--out", str(tmp_path), "--formats", "csv"]
    assert cli.main(args) == cli.EXIT_QUOTA
    assert flavour.bans == 1
    # one ban answer, never retried (each retry would renew the ban)
    assert [r.status for r in sb.request_log].count(429) == 1
    assert "quota" in capsys.readouterr().err
    with StateStore(tmp_path / "state" / "graphql_energy.sqlite") as store:
        committed = set(store.read_table("meters")["meter_id"].astype(str))
    assert len(committed) == 2  # entities came first: both meters are kept
    flavour.lift_ban()
    flavour.budget = 100
    sb.clear_log()
    assert cli.main(args) == cli.EXIT_OK
    assert usage_months(tmp_path) == pytest.approx(flavour_truth(sb), rel=1e-9)
    with StateStore(tmp_path / "state" / "graphql_energy.sqlite") as store:
        assert store.runs()["status"].tolist() == ["success", "quota_exhausted"]
    # the resumed run did not fetch the first home's hours again: 1 homes list + 15 pages
    assert len(sb.request_log) == 1 + 15


def test_the_default_ban_pattern_is_printed_in_the_docs() -> None:
    from scaler_workbench.connectors._transport import _DEFAULT_BAN

    doc = (ROOT / "docs" / "connectors.md").read_text("utf-8")
    assert _DEFAULT_BAN in doc
