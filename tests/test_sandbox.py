"""The sandbox provider over real loopback HTTP, and its ground truth.

Every test talks to a real server on 127.0.0.1 (``make_sandbox`` from conftest.py); token expiry
and HTTP-date Retry-After use a FakeClock, so nothing sleeps for real except ``slow_seconds``
(0.2 s) and the lifetime test (0.3 s).
"""

from __future__ import annotations

import base64
import email.utils
import json
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import parse_qs, urljoin, urlsplit

import defusedxml.ElementTree as ET
import numpy as np
import pandas as pd
import pytest
import requests

from scaler_workbench.clock import FakeClock
from scaler_workbench.exceptions import SandboxError
from scaler_workbench.sandbox import (
    XML_META_NS,
    XML_NS,
    Flavour,
    Request,
    Response,
    Route,
    Sandbox,
    SandboxData,
    json_response,
    register_flavour,
)
from scaler_workbench.sandbox.__main__ import main
from scaler_workbench.sandbox.generate import BillSeries, IntervalSeries, RegisterSeries

MakeSandbox = Callable[..., Sandbox]


def _key_session(sb: Sandbox) -> requests.Session:
    s = requests.Session()
    s.headers["X-API-Key"] = sb.credentials.api_key
    return s


def _meter(sb: Sandbox, *, kind: str, commodity: str | None = None, tz: str | None = None) -> str:
    for m in sb.data.meters:
        site_tz = sb.data.site_tz[sb.data.meter_site[m["id"]]]
        if m["kind"] == kind and commodity in (None, m["commodity"]) and tz in (None, site_tz):
            return str(m["id"])
    raise AssertionError(f"no {kind} meter {commodity} {tz}")


# ------------------------------------------------------------------------------------------
# authentication


def _basic(user: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def _good_and_bad(sb: Sandbox) -> tuple[dict[str, Any], dict[str, Any]]:
    """Request kwargs with the right and with wrong credentials for the sandbox's auth mode."""
    c = sb.credentials
    mode = sb.auth
    if mode == "api_key":
        return {"headers": {"X-API-Key": c.api_key}}, {"headers": {"X-API-Key": "nope"}}
    if mode == "api_key_query":
        return {"params": {"api_key": c.api_key}}, {"params": {"api_key": "nope"}}
    if mode == "basic":
        return {"headers": _basic(c.username, c.password)}, {"headers": _basic(c.username, "x")}
    if mode == "basic_key":
        return {"headers": _basic(c.api_key, "")}, {"headers": _basic("nope", "")}
    if mode == "bearer":
        return (
            {"headers": {"Authorization": f"Token {c.token}"}},
            {"headers": {"Authorization": f"Bearer {c.token}"}},  # wrong scheme for this server
        )
    if mode == "none":
        return {}, {}
    token = _oauth_token(sb)
    return {"headers": {"Authorization": f"Bearer {token}"}}, {
        "headers": {"Authorization": "Bearer at_forged"}
    }


def _oauth_token(sb: Sandbox) -> str:
    c = sb.credentials
    if sb.auth == "oauth2_client_credentials":
        r = requests.post(
            sb.token_url,
            data={"grant_type": "client_credentials"},
            auth=(c.client_id, c.client_secret),
        )
    elif sb.auth == "oauth2_password":
        r = requests.post(
            sb.token_url,
            data={
                "grant_type": "password",
                "username": c.username,
                "password": c.password,
                "client_id": c.client_id,
                "client_secret": c.client_secret,
            },
        )
    else:
        code = _authorize(sb, state="xyz")[0]
        r = requests.post(
            sb.token_url,
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": "http://localhost:8765/cb",
            },
            auth=(c.client_id, c.client_secret),
        )
    assert r.status_code == 200, r.text
    assert r.headers["Cache-Control"] == "no-store"
    body = r.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    return str(body["access_token"])


def _authorize(sb: Sandbox, *, state: str) -> tuple[str, str]:
    r = requests.get(
        sb.authorize_url,
        params={
            "response_type": "code",
            "client_id": sb.credentials.client_id,
            "redirect_uri": "http://localhost:8765/cb",
            "state": state,
            "scope": "read",
        },
        allow_redirects=False,
    )
    assert r.status_code == 302
    location = r.headers["Location"]
    assert location.startswith("http://localhost:8765/cb?")
    q = parse_qs(urlsplit(location).query)
    return q["code"][0], q["state"][0]


@pytest.mark.parametrize(
    "mode",
    [
        "api_key",
        "api_key_query",
        "basic",
        "basic_key",
        "bearer",
        "oauth2_client_credentials",
        "oauth2_password",
        "oauth2_authorization_code",
        "none",
    ],
)
def test_each_auth_mode_accepts_right_and_rejects_wrong_credentials(
    make_sandbox: MakeSandbox, mode: str
) -> None:
    sb = make_sandbox(
        auth=mode, bearer_format="Token {token}" if mode == "bearer" else "Bearer {token}"
    )
    good, bad = _good_and_bad(sb)
    ok = requests.get(sb.url + "/sites", **good)
    assert ok.status_code == 200 and ok.json()["total"] == 6
    if mode == "none":
        return
    wrong = requests.get(sb.url + "/sites", **bad)
    assert wrong.status_code in (401, 403)
    assert wrong.json()["error"] in {"invalid_api_key", "invalid_credentials", "invalid_token"}
    missing = requests.get(sb.url + "/sites")
    assert missing.status_code == 401
    assert missing.json()["error"] == "missing_credentials"
    # credentials never reach the request log
    logged = repr(sb.request_log)
    for secret in (sb.credentials.api_key, sb.credentials.password, sb.credentials.token):
        assert secret not in logged


def test_api_key_query_is_masked_in_request_log(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(auth="api_key_query", api_key_name="apikey")
    r = requests.get(sb.url + "/sites", params={"apikey": sb.credentials.api_key, "limit": 2})
    assert r.status_code == 200
    rec = sb.request_log[-1]
    assert (rec.method, rec.path, rec.status) == ("GET", "/api/v1/sites", 200)
    assert rec.query == {"apikey": "***", "limit": "2"}
    assert repr(sb.credentials) == "SandboxCredentials(***)"


def test_client_credentials_client_auth_modes(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(auth="oauth2_client_credentials", client_auth="body")
    c = sb.credentials
    form = {"grant_type": "client_credentials"}
    r = requests.post(sb.token_url, data=form, auth=(c.client_id, c.client_secret))
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    r = requests.post(
        sb.token_url, data={**form, "client_id": c.client_id, "client_secret": c.client_secret}
    )
    assert r.status_code == 200
    r = requests.post(
        sb.token_url, data={**form, "client_id": c.client_id, "client_secret": "wrong"}
    )
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    r = requests.post(sb.token_url, data={"grant_type": "password"})
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"

    sb2 = make_sandbox(auth="oauth2_client_credentials", client_auth="basic")
    c2 = sb2.credentials
    r = requests.post(
        sb2.token_url, data={**form, "client_id": c2.client_id, "client_secret": c2.client_secret}
    )
    assert r.status_code == 401
    r = requests.post(sb2.token_url, data=form, auth=(c2.client_id, c2.client_secret))
    assert r.status_code == 200 and r.json()["access_token"].startswith("at_")


def test_authorization_code_flow_state_single_use_code_and_refresh_rotation(
    make_sandbox: MakeSandbox,
) -> None:
    sb = make_sandbox(auth="oauth2_authorization_code")
    c = sb.credentials
    code, state = _authorize(sb, state="s-123")
    assert state == "s-123"
    exchange = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": "http://localhost:8765/cb",
    }
    first = requests.post(sb.token_url, data=exchange, auth=(c.client_id, c.client_secret))
    assert first.status_code == 200
    again = requests.post(sb.token_url, data=exchange, auth=(c.client_id, c.client_secret))
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"

    refresh1 = first.json()["refresh_token"]
    r2 = requests.post(
        sb.token_url,
        data={"grant_type": "refresh_token", "refresh_token": refresh1},
        auth=(c.client_id, c.client_secret),
    )
    assert r2.status_code == 200
    refresh2 = r2.json()["refresh_token"]
    assert refresh2 != refresh1
    reused = requests.post(
        sb.token_url,
        data={"grant_type": "refresh_token", "refresh_token": refresh1},
        auth=(c.client_id, c.client_secret),
    )
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    token = r2.json()["access_token"]
    ok = requests.get(sb.url + "/sites", headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200
    # the env() refresh token works once, then rotates
    env_rt = sb.env()["SANDBOX_REFRESH_TOKEN"]
    r3 = requests.post(
        sb.token_url,
        data={
            "grant_type": "refresh_token",
            "refresh_token": env_rt,
            "client_id": c.client_id,
            "client_secret": c.client_secret,
        },
    )
    assert r3.status_code == 200 and r3.json()["refresh_token"] != env_rt
    bad = requests.get(
        sb.authorize_url,
        params={"response_type": "code", "client_id": "other", "redirect_uri": "http://x/"},
        allow_redirects=False,
    )
    assert bad.status_code == 400


def test_access_token_expires_by_ttl_uses_and_on_demand(make_sandbox: MakeSandbox) -> None:
    clock = FakeClock()
    sb = make_sandbox(auth="oauth2_client_credentials", token_ttl=60, clock=clock)
    headers = {"Authorization": f"Bearer {_oauth_token_ttl(sb)}"}
    assert requests.get(sb.url + "/sites", headers=headers).status_code == 200
    clock.advance(61)
    r = requests.get(sb.url + "/sites", headers=headers)
    assert r.status_code == 401
    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]
    assert r.json()["error"] == "invalid_token" and "expired" in r.json()["message"]

    sb2 = make_sandbox(auth="oauth2_client_credentials", token_max_uses=2)
    headers = {"Authorization": f"Bearer {_oauth_token(sb2)}"}
    codes = [requests.get(sb2.url + "/sites", headers=headers).status_code for _ in range(3)]
    assert codes == [200, 200, 401]

    headers = {"Authorization": f"Bearer {_oauth_token(sb2)}"}
    sb2.expire_tokens()
    assert requests.get(sb2.url + "/sites", headers=headers).status_code == 401


def _oauth_token_ttl(sb: Sandbox) -> str:
    c = sb.credentials
    r = requests.post(
        sb.token_url,
        data={"grant_type": "client_credentials"},
        auth=(c.client_id, c.client_secret),
    )
    assert r.json()["expires_in"] == 60
    return str(r.json()["access_token"])


# ------------------------------------------------------------------------------------------
# pagination


WEEK = {"from": "2024-02-05", "to": "2024-02-12"}


def _walk(sb: Sandbox, path: str, params: dict[str, str]) -> tuple[list[dict[str, Any]], int]:
    """Follow the sandbox's paginator to the end; return records and the number of requests."""
    s = _key_session(sb)
    mode = sb.paginator
    url: str | None = sb.url + path
    query: dict[str, Any] = dict(params)
    out: list[dict[str, Any]] = []
    calls = 0
    page = 1
    while url is not None:
        calls += 1
        assert calls < 100, "pagination does not end"
        r = s.get(url, params=query)
        assert r.status_code == 200, r.text
        body = r.json()
        records = body if isinstance(body, list) else body["data"]
        out += records
        if mode == "offset":
            query["offset"] = body["offset"] + len(records)
            url = url if query["offset"] < body["total"] else None
        elif mode == "page":
            page += 1
            query["page"] = page
            url = url if page <= body["total_pages"] else None
        elif mode == "cursor":
            query["cursor"] = body["next_cursor"]
            url = url if body["next_cursor"] else None
        elif mode == "next_url":
            nxt = body["links"]["next"]
            url, query = (None if nxt is None else _resolve(sb, r.url, nxt)), {}
        elif mode == "link_header":
            nxt = r.links.get("next", {}).get("url")
            url, query = nxt, {}
        else:
            url = None
    return out, calls


def _resolve(sb: Sandbox, request_url: str, link: str) -> str:
    style = sb.next_url_style
    if style == "absolute":
        assert link.startswith("http://127.0.0.1:")
        return link
    if style == "api_root":
        assert link.startswith("/meters/")
        return sb.url + link
    if style == "path":
        assert link.startswith("/api/v1/")
    else:
        assert not link.startswith(("/", "http"))
    return urljoin(request_url, link)


@pytest.mark.parametrize(
    ("paginator", "options"),
    [
        ("offset", {}),
        ("page", {}),
        ("cursor", {}),
        ("next_url", {"next_url_style": "absolute"}),
        ("next_url", {"next_url_style": "path"}),
        ("next_url", {"next_url_style": "api_root"}),
        ("next_url", {"next_url_style": "relative"}),
        ("link_header", {}),
        ("link_header", {"envelope": False}),
        ("none", {}),
        ("none", {"envelope": False}),
    ],
)
def test_each_paginator_walks_every_record_exactly_once(
    make_sandbox: MakeSandbox, paginator: str, options: dict[str, Any]
) -> None:
    sb = make_sandbox(paginator=paginator, page_size=50, **options)
    records, calls = _walk(sb, "/meters/M0001/intervals", WEEK)
    ids = [r["id"] for r in records]
    expected = int(
        requests.get(
            sb.url + "/meters/M0001/intervals",
            params=WEEK,
            headers={"X-API-Key": sb.credentials.api_key},
        ).headers["X-Total-Count"]
    )
    assert 300 < expected <= 336
    assert len(ids) == len(set(ids)) == expected
    assert calls == (1 if paginator == "none" else -(-expected // 50))
    assert sb.served_pages == calls + 1


def test_page_size_is_clamped_and_bad_parameters_rejected(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(max_page_size=200)
    s = _key_session(sb)
    body = s.get(sb.url + "/meters/M0001/intervals", params={"limit": 5000}).json()
    assert len(body["data"]) == 200 and body["limit"] == 200
    r = s.get(sb.url + "/meters/M0001/intervals", params={"limit": "many"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_parameter"
    sbc = make_sandbox(paginator="cursor")
    r = _key_session(sbc).get(sbc.url + "/sites", params={"cursor": "garbage"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_cursor"


def test_renamed_parameters(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(param_names={"offset": "skip", "limit": "take", "from": "start"})
    s = _key_session(sb)
    body = s.get(
        sb.url + "/meters/M0001/intervals", params={"skip": 3, "take": 2, "start": "2024-06-01"}
    ).json()
    assert body["offset"] == 3 and len(body["data"]) == 2
    assert body["data"][0]["interval_start"] >= "2024-06-01"


# ------------------------------------------------------------------------------------------
# dates


def test_date_filters_use_local_midnights_and_exclusive_end(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(paginator="none")
    ny = _meter(sb, kind="interval", tz="America/New_York")
    s = _key_session(sb)
    day = s.get(
        sb.url + f"/meters/{ny}/intervals", params={"from": "2024-02-01", "to": "2024-02-02"}
    )
    data = day.json()["data"]
    assert data and all(r["interval_start"].startswith("2024-02-01T") for r in data)
    assert all(r["interval_start"].endswith("-05:00") for r in data)
    # the same window as ISO datetimes and as epoch seconds
    t0 = datetime(2024, 2, 1, tzinfo=UTC) + timedelta(hours=5)
    iso = s.get(
        sb.url + f"/meters/{ny}/intervals",
        params={"from": t0.isoformat(), "to": (t0 + timedelta(days=1)).isoformat()},
    ).json()["data"]
    epoch = s.get(
        sb.url + f"/meters/{ny}/intervals",
        params={"from": int(t0.timestamp()), "to": int(t0.timestamp()) + 86400},
    ).json()["data"]
    assert iso == data == epoch

    incl = make_sandbox(paginator="none", end_inclusive=True)
    two_days = (
        _key_session(incl)
        .get(
            incl.url + f"/meters/{ny}/intervals", params={"from": "2024-02-01", "to": "2024-02-02"}
        )
        .json()["data"]
    )
    assert {r["interval_start"][:10] for r in two_days} == {"2024-02-01", "2024-02-02"}

    reg = _meter(sb, kind="register")
    reads = s.get(
        sb.url + f"/meters/{reg}/readings", params={"from": "2024-03-01", "to": "2024-04-01"}
    ).json()["data"]
    assert reads[0]["read_at"].startswith("2024-03-01T00:00:00")
    assert all(r["read_at"] < "2024-04-01" for r in reads)


def test_date_format_is_enforced_and_bad_ranges_rejected(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(date_format="date")
    s = _key_session(sb)
    r = s.get(sb.url + "/meters/M0001/intervals", params={"from": "1706745600"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_parameter"
    assert "YYYY" in r.json()["message"] or "2024-01-31" in r.json()["message"]
    r = s.get(sb.url + "/meters/M0001/intervals", params={"from": "2024-13-45"})
    assert r.status_code == 400
    r = s.get(sb.url + "/meters/M0001/intervals", params={"from": "2024-03-01", "to": "2024-02-01"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_range"


def test_range_too_large(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(max_span_days=31)
    s = _key_session(sb)
    ok = s.get(
        sb.url + "/meters/M0001/intervals", params={"from": "2024-03-01", "to": "2024-04-01"}
    )
    assert ok.status_code == 200
    big = s.get(
        sb.url + "/meters/M0001/intervals", params={"from": "2024-01-01", "to": "2024-04-01"}
    )
    assert big.status_code == 400
    body = big.json()
    assert body["error"] == "range_too_large" and body["max_span_days"] == 31
    assert "range too large" in body["message"]
    # a missing bound counts as the data's own bound
    assert s.get(sb.url + "/meters/M0001/intervals").status_code == 400
    # bills have no date filter and are never refused
    bill = _meter(sb, kind="bill")
    assert s.get(sb.url + f"/meters/{bill}/bills").status_code == 200


def test_dst_days_have_46_and_50_half_hours() -> None:
    data = SandboxData.generate(
        seed=1, sites=3, meters_per_site=1, start="2024-03-01", end="2024-11-15"
    )
    for tz, spring, autumn in [
        ("Europe/London", "2024-03-31", "2024-10-27"),
        ("America/New_York", "2024-03-10", "2024-11-03"),
    ]:
        grid = data.grids[tz]
        days = np.array([s[:10] for s in grid.iso[:-1]])
        assert (days == spring).sum() == 46
        assert (days == autumn).sum() == 50
        assert (days == "2024-06-01").sum() == 48
    london = data.grids["Europe/London"].iso
    i = london.index("2024-03-31T00:30:00+00:00")
    assert london[i + 1] == "2024-03-31T02:00:00+01:00"


def test_dst_day_over_http_has_local_offsets(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(paginator="none")
    s = _key_session(sb)
    recs = s.get(
        sb.url + "/meters/M0001/intervals", params={"from": "2024-03-31", "to": "2024-04-01"}
    ).json()["data"]
    series = sb.data.series["M0001"]
    assert isinstance(series, IntervalSeries)
    assert 40 < len(recs) <= 46
    assert recs[0]["interval_start"] == "2024-03-31T00:00:00+00:00"
    assert recs[-1]["interval_end"] == "2024-04-01T00:00:00+01:00"


# ------------------------------------------------------------------------------------------
# XML


@pytest.mark.parametrize("paginator", ["next_url", "cursor"])
def test_xml_mode_parses_with_namespaces_and_carries_links(
    make_sandbox: MakeSandbox, paginator: str
) -> None:
    sb = make_sandbox(format="xml", paginator=paginator, page_size=3)
    s = _key_session(sb)
    r = s.get(sb.url + "/sites")
    assert r.headers["Content-Type"].startswith("application/xml")
    ns = {"d": XML_NS, "m": XML_META_NS}
    root = ET.fromstring(r.content)
    assert root.tag == f"{{{XML_NS}}}response"
    records = root.findall("d:data/d:record", ns)
    assert [rec.findtext("d:id", namespaces=ns) for rec in records] == ["S001", "S002", "S003"]
    assert (
        records[0].findtext("d:address/d:city", namespaces=ns)
        == sb.data.sites[0]["address"]["city"]
    )
    assert root.findtext("m:page/m:total", namespaces=ns) == "6"
    if paginator == "next_url":
        link = root.find("m:page/m:link[@rel='next']", ns)
        assert link is not None
        second = ET.fromstring(s.get(link.attrib["href"]).content)
        ids = [e.text for e in second.findall("d:data/d:record/d:id", ns)]
        assert ids == ["S004", "S005", "S006"]
        assert second.find("m:page/m:link", ns) is None
    else:
        cursor = root.findtext("m:page/m:next_cursor", namespaces=ns)
        assert cursor
    meters = ET.fromstring(s.get(sb.url + "/meters/M0001/intervals", params={"limit": 2}).content)
    first = meters.find("d:data/d:record", ns)
    assert first is not None
    assert first.findtext("d:estimated", namespaces=ns) in {"true", "false"}
    assert float(first.findtext("d:value", namespaces=ns) or "nan") >= 0


# ------------------------------------------------------------------------------------------
# faults


def test_every_nth_429_with_retry_after_seconds_and_http_date(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(every_nth_429=3, retry_after=7)
    s = _key_session(sb)
    codes = [s.get(sb.url + "/sites").status_code for _ in range(6)]
    assert codes == [200, 200, 429, 200, 200, 429]
    r = s.get(sb.url + "/sites")
    r = s.get(sb.url + "/sites")
    r = s.get(sb.url + "/sites")
    assert r.status_code == 429 and r.headers["Retry-After"] == "7"
    assert r.json()["error"] == "rate_limited"
    assert sb.served_pages == 6  # faulted requests are not served pages

    clock = FakeClock(datetime(2024, 5, 1, 12, 0, tzinfo=UTC))
    sb2 = make_sandbox(every_nth_429=1, retry_after=30, retry_after_format="http-date", clock=clock)
    r = _key_session(sb2).get(sb2.url + "/sites")
    when = email.utils.parsedate_to_datetime(r.headers["Retry-After"])
    assert when == datetime(2024, 5, 1, 12, 0, 30, tzinfo=UTC)


def test_every_nth_503_and_runtime_changes(sandbox: Sandbox) -> None:
    s = _key_session(sandbox)
    assert s.get(sandbox.url + "/sites").status_code == 200
    sandbox.set_faults(every_nth_503=2)
    codes = [s.get(sandbox.url + "/sites").status_code for _ in range(4)]
    assert codes == [200, 503, 200, 503]
    sandbox.clear_faults()
    assert {s.get(sandbox.url + "/sites").status_code for _ in range(4)} == {200}
    with pytest.raises(SandboxError, match="unknown fault"):
        sandbox.set_faults(every_nth_500=2)


def test_slow_seconds(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(slow_seconds=0.2)
    t0 = time.perf_counter()
    assert _key_session(sb).get(sb.url + "/sites").status_code == 200
    assert time.perf_counter() - t0 >= 0.2


def test_quota_after_until_reset(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(quota_after=3)
    s = _key_session(sb)
    codes = [s.get(sb.url + "/sites").status_code for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    r = s.get(sb.url + "/sites")
    assert "Retry-After" not in r.headers
    assert r.json()["error"] == "daily_quota_exceeded"
    sb.reset_quota()
    assert s.get(sb.url + "/sites").status_code == 200
    assert sb.served_pages == 4


def test_fail_paths_fail_one_page_always(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(fail_paths={r"M0001/intervals\?.*offset=100\b": 500})
    s = _key_session(sb)
    url = sb.url + "/meters/M0001/intervals"
    assert s.get(url, params={"offset": 0}).status_code == 200
    for _ in range(2):
        r = s.get(url, params={"offset": 100})
        assert r.status_code == 500 and r.json()["error"] == "injected_failure"
    assert s.get(url, params={"offset": 1000}).status_code == 200
    assert sb.served_pages == 2
    assert [rec.status for rec in sb.request_log] == [200, 500, 500, 200]


# ------------------------------------------------------------------------------------------
# as_of, removed meters, lifecycle, flavours


def test_set_as_of_cuts_served_data_and_ground_truth(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(paginator="none")
    s = _key_session(sb)
    sb.set_as_of(datetime(2024, 3, 15, 12, 0, tzinfo=UTC))
    recs = s.get(sb.url + "/meters/M0001/intervals").json()["data"]
    assert recs[-1]["interval_end"] <= "2024-03-15T12:00:00+00:00"
    assert recs[-1]["interval_start"] >= "2024-03-15T10:00"
    bill = _meter(sb, kind="bill")
    bills = s.get(sb.url + f"/meters/{bill}/bills").json()["data"]
    assert bills and all(b["period_end"] < "2024-03-15" for b in bills)
    truth = sb.ground_truth()
    assert truth["month"].max() == "2024-03"
    reg = _meter(sb, kind="register")
    assert set(truth.loc[truth["meter_id"] == reg, "month"]) == {"2024-01", "2024-02"}
    n_before = len(recs)
    sb.set_as_of(None)
    assert len(s.get(sb.url + "/meters/M0001/intervals").json()["data"]) > n_before


def test_remove_meters_makes_them_disappear(sandbox: Sandbox) -> None:
    s = _key_session(sandbox)
    sandbox.remove_meters(["M0001"])
    ids = [m["id"] for m in s.get(sandbox.url + "/sites/S001/meters").json()["data"]]
    assert "M0001" not in ids and len(ids) == 2
    r = s.get(sandbox.url + "/meters/M0001/intervals")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    assert s.get(sandbox.url + "/sites/S999/meters").status_code == 404
    assert s.get(sandbox.url + "/nowhere").status_code == 404
    assert s.post(sandbox.url + "/sites").status_code == 405
    sandbox.restore_meters()
    assert s.get(sandbox.url + "/meters/M0001/intervals").status_code == 200


def test_lifetime_stops_the_server_by_itself() -> None:
    sb = Sandbox(lifetime=0.3).start()
    url = sb.url
    try:
        deadline = time.monotonic() + 5
        while sb.running and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not sb.running
        with pytest.raises(requests.ConnectionError):
            requests.get(url + "/sites", timeout=2)
        with pytest.raises(SandboxError, match="not running"):
            _ = sb.url
    finally:
        sb.stop()


def test_context_manager_env_and_stop() -> None:
    with Sandbox() as sb:
        env = sb.env()
        assert env["SCALER_SANDBOX_URL"] == sb.url
        assert sb.url.startswith("http://127.0.0.1:") and sb.url.endswith("/api/v1")
        for var in (
            "SANDBOX_API_KEY",
            "SANDBOX_USERNAME",
            "SANDBOX_PASSWORD",
            "SANDBOX_TOKEN",
            "SANDBOX_CLIENT_ID",
            "SANDBOX_CLIENT_SECRET",
        ):
            assert env[var]
        assert env["SANDBOX_API_KEY"] == sb.credentials.api_key
        assert Sandbox().credentials != sb.credentials
    assert not sb.running


class _EchoFlavour(Flavour):
    name = "echo-test"
    api_root = "/echo/v2"
    defaults: ClassVar[dict[str, Any]] = {"auth": "none", "paginator": "none", "envelope": False}

    def routes(self) -> list[Route]:
        return [
            Route("GET", "/things/{thing}", self.thing),
            Route("GET", "/items", self.items),
        ]

    def thing(self, req: Request) -> Response:
        return json_response({"thing": req.params["thing"], "q": req.query})

    def items(self, req: Request) -> Response:
        items = [{"n": i} for i in range(5)]
        return self.sandbox.list_response(req, len(items), lambda lo, hi: items[lo:hi])


def test_catch_all_route_mounts_a_whole_provider(make_sandbox: MakeSandbox) -> None:
    def factory(sandbox: Sandbox) -> Flavour:
        class Mounted(Flavour):
            api_root = "/vendor/v1"

            def routes(self) -> list[Route]:
                return [Route("*", "/{rest:path}", self.handle, auth=False)]

            def handle(self, req: Request) -> Response:
                return json_response({"method": req.method, "rest": req.params["rest"]})

        return Mounted(sandbox)

    sb = make_sandbox(flavour=factory, start=date(2024, 1, 1))
    r = requests.post(sb.url + "/sites/a/b/timeseries", data=b"{}")
    assert r.json() == {"method": "POST", "rest": "sites/a/b/timeseries"}


def test_flavour_hook_mounts_routes_and_defaults(make_sandbox: MakeSandbox) -> None:
    register_flavour("echo-test", _EchoFlavour)
    sb = make_sandbox(flavour="echo-test")
    assert sb.url.endswith("/echo/v2")
    assert requests.get(sb.url + "/things/a1", params={"x": "1"}).json() == {
        "thing": "a1",
        "q": {"x": "1"},
    }
    assert requests.get(sb.url + "/items").json() == [{"n": i} for i in range(5)]
    assert requests.get(sb.root_url + "/api/v1/sites").status_code == 404
    with pytest.raises(SandboxError, match="unknown sandbox flavour"):
        Sandbox(flavour="no_such_flavour")


@pytest.mark.parametrize(
    "options",
    [
        {"auth": "kerberos"},
        {"paginator": "scroll"},
        {"format": "csv"},
        {"bearer_format": "Bearer"},
        {"param_names": {"skip": "s"}},
        {"sites": 0},
        {"start": "2024-02-01", "end": "2024-01-01"},
        {"start": "someday"},
    ],
)
def test_bad_options_raise_sandbox_error(options: dict[str, Any]) -> None:
    with pytest.raises(SandboxError):
        Sandbox(**options)


def test_cli_prints_url_and_exports(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--lifetime", "0.2", "--auth", "basic", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "base URL: http://127.0.0.1:" in out
    assert "export SANDBOX_USERNAME=" in out and "export SCALER_SANDBOX_URL=" in out


# ------------------------------------------------------------------------------------------
# data and ground truth

GAS_M3 = 1.02264 * 39.5 / 3.6
FACTORS = {
    ("electricity", "kWh"): 1.0,
    ("electricity", "Wh"): 0.001,
    ("electricity", "MWh"): 1000.0,
    ("solar", "kWh"): 1.0,
    ("gas", "kWh"): 1.0,
    ("gas", "m3"): GAS_M3,
    ("gas", "ft3"): 0.028316846592 * GAS_M3,
    ("water", "m3"): 1.0,
    ("water", "L"): 0.001,
    ("water", "US_gal"): 3.785411784e-3,
    ("waste", "kg"): 1.0,
    ("waste", "t"): 1000.0,
}


def _recompute_from_http(sb: Sandbox) -> pd.DataFrame:
    """Monthly canonical consumption recomputed independently from what the server serves."""
    s = _key_session(sb)
    rows: list[tuple[str, str, float]] = []
    for m in sb.data.meters:
        mid, factor = m["id"], FACTORS[(m["commodity"], m["unit"])]
        if m["kind"] == "interval":
            recs = pd.DataFrame(s.get(sb.url + f"/meters/{mid}/intervals").json()["data"])
            month = recs["interval_start"].str[:7]  # local wall-clock month
            for key, value in recs.groupby(month)["value"].sum().items():
                rows.append((mid, str(key), value * factor))
        elif m["kind"] == "register":
            recs = pd.DataFrame(s.get(sb.url + f"/meters/{mid}/readings").json()["data"])
            bounds = recs[recs["read_at"].str[8:10] == "01"]
            reg = bounds["register"].to_numpy()
            diff = np.diff(reg)
            diff = np.where(diff < 0, diff + 10 ** m["register_digits"], diff)  # rollover
            for key, value in zip(bounds["read_at"].str[:7].iloc[:-1], diff, strict=True):
                rows.append((mid, key, value * factor))
        else:
            for b in s.get(sb.url + f"/meters/{mid}/bills").json()["data"]:
                days = pd.date_range(b["period_start"], b["period_end"], freq="D")
                per_day = b["amount"] / len(days)
                for key, n in pd.Series(days.strftime("%Y-%m")).value_counts().items():
                    rows.append((mid, str(key), per_day * n * factor))
    frame = pd.DataFrame(rows, columns=["meter_id", "month", "consumption"])
    return frame.groupby(["meter_id", "month"], as_index=False)["consumption"].sum()


def test_ground_truth_equals_recomputation_for_every_kind(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(paginator="none")
    truth = sb.ground_truth()
    solar = truth["meter_id"].map({m["id"]: m["commodity"] for m in sb.data.meters}) == "solar"
    assert solar.any() and (truth.loc[solar, "consumption"] == 0.0).all()
    assert (
        truth.loc[solar, "production"].notna().all()
        and truth.loc[~solar, "production"].isna().all()
    )
    # what HTTP serves is each meter's energy: consumption, or production for a solar meter
    truth = truth.assign(consumption=truth["consumption"] + truth["production"].fillna(0.0))
    truth = truth.drop(columns="production")
    again = _recompute_from_http(sb)
    merged = truth.merge(again, on=["meter_id", "month"], how="outer", suffixes=("", "_http"))
    assert not merged.isna().any().any(), merged[merged.isna().any(axis=1)]
    np.testing.assert_allclose(merged["consumption"], merged["consumption_http"], rtol=1e-9)
    kinds = {m["id"]: m["kind"] for m in sb.data.meters}
    assert {kinds[mid] for mid in truth["meter_id"]} == {"interval", "register", "bill"}
    units = dict(zip(truth["meter_id"], truth["unit"], strict=False))
    commodities = {m["id"]: m["commodity"] for m in sb.data.meters}
    for mid, unit in units.items():
        assert unit == {"water": "m³", "waste": "kg"}.get(commodities[mid], "kWh")


def test_ground_truth_heating_value_scales_gas_volume_only(sandbox: Sandbox) -> None:
    a = sandbox.ground_truth(39.5).set_index(["meter_id", "month"])["consumption"]
    b = sandbox.ground_truth(40.0).set_index(["meter_id", "month"])["consumption"]
    gas_volume = {
        m["id"] for m in sandbox.data.meters if m["commodity"] == "gas" and m["unit"] != "kWh"
    }
    is_gas = a.index.get_level_values("meter_id").isin(gas_volume)
    assert gas_volume and is_gas.any()
    np.testing.assert_allclose(b[is_gas] / a[is_gas], 40.0 / 39.5)
    np.testing.assert_allclose(b[~is_gas], a[~is_gas])


def test_generated_data_quirks() -> None:
    data = SandboxData.generate(seed=2)
    commodities = {m["commodity"] for m in data.meters}
    assert commodities == {"electricity", "solar", "gas", "water", "waste"}
    assert {m["unit"] for m in data.meters} >= {"kWh", "Wh", "MWh", "m3", "L", "kg"}
    assert {s["timezone"] for s in data.sites} >= {"Europe/London", "America/New_York"}
    rolled = 0
    for m in data.meters:
        s = data.series[m["id"]]
        grid = data.grid_of(m["id"])
        if isinstance(s, IntervalSeries):
            n = grid.epoch.size - 1
            assert 0.97 * n < s.t_idx.size < n  # about 1 % absent, never zero-filled
            assert s.estimated.any()
            if m["commodity"] == "solar":
                assert (s.exported > 0).any() and (s.exported <= s.value).all()
            else:
                assert not s.exported.any()
        elif isinstance(s, RegisterSeries):
            assert m["register_digits"] == s.digits
            rolled += bool((np.diff(s.register) < 0).any())
            assert (s.register < 10**s.digits).all()
        else:
            assert isinstance(s, BillSeries)
            np.testing.assert_array_equal(s.start[1:], s.end[:-1] + 1)  # consecutive
            lengths = (s.end - s.start).astype(int) + 1
            assert ((lengths >= 28) & (lengths <= 33)).all()
            assert str(s.start[0]) != f"{data.start}"
            rate = s.amount / lengths
            assert np.all(rate > 0)
    assert rolled >= 1


def test_fast_interval_json_equals_the_records() -> None:
    data = SandboxData.generate(seed=4, sites=3, meters_per_site=2)
    for mid in ("M0001", "M0002", "M0005"):
        assert json.loads(data.interval_json(mid, 100, 700)) == data.interval_records(mid, 100, 700)
    assert json.loads(data.interval_json("M0001", 5, 5)) == []


def test_generation_is_deterministic_per_seed() -> None:
    a = SandboxData.generate(seed=11, sites=3, meters_per_site=4)
    b = SandboxData.generate(seed=11, sites=3, meters_per_site=4)
    c = SandboxData.generate(seed=12, sites=3, meters_per_site=4)
    assert a.sites == b.sites and a.meters == b.meters
    assert a.interval_records("M0001", 0, 500) == b.interval_records("M0001", 0, 500)
    pd.testing.assert_frame_equal(a.ground_truth(), b.ground_truth())
    assert a.interval_records("M0001", 0, 50) != c.interval_records("M0001", 0, 50)


@pytest.mark.slow
def test_large_portfolio_generates_fast() -> None:
    """600 meters x one year (10 M intervals): about 0.5 s idle; 10 s guards regressions."""
    t0 = time.perf_counter()
    data = SandboxData.generate(
        seed=0, sites=100, meters_per_site=6, start=date(2024, 1, 1), end="2025-01-01"
    )
    truth = data.ground_truth()
    elapsed = time.perf_counter() - t0
    assert len(data.meters) == 600 and data.n_intervals > 6_000_000
    assert truth["month"].nunique() == 12
    assert elapsed < 10.0, f"{elapsed:.1f} s"


def test_summary_endpoint_reports_monthly_totals_in_the_meters_own_unit(
    make_sandbox: MakeSandbox,
) -> None:
    from scaler_workbench.sandbox.generate import canonical_factor

    sb = make_sandbox(sites=2, meters_per_site=3, end="2024-04-01")
    headers = {"X-API-Key": sb.credentials.api_key}
    gt = sb.ground_truth()  # a meter's energy: consumption, or production (solar)
    truth = (gt["consumption"] + gt["production"].fillna(0.0)).set_axis(
        pd.MultiIndex.from_frame(gt[["meter_id", "month"]])
    )
    seen = 0
    for m in sb.data.meters:
        body = requests.get(f"{sb.url}/meters/{m['id']}/summary", headers=headers, timeout=10)
        rows = body.json()["data"]
        assert [r["month"] for r in rows] == ["2024-01", "2024-02", "2024-03"]
        assert rows[0]["period_start"] == "2024-01-01" and rows[0]["period_end"] == "2024-02-01"
        factor = canonical_factor(m["commodity"], m["unit"])
        for r in rows:
            assert r["unit"] == m["unit"]
            assert r["total"] * factor == pytest.approx(truth[(m["id"], r["month"])], rel=1e-12)
            seen += 1
    assert seen == 18
    sb.plant_discrepancy("M0002", "2024-02", 1.5)
    rows = requests.get(f"{sb.url}/meters/M0002/summary", headers=headers, timeout=10).json()
    by_month = {r["month"]: r["total"] for r in rows["data"]}
    assert by_month["2024-02"] == pytest.approx(truth[("M0002", "2024-02")] * 1.5)
    assert by_month["2024-01"] == pytest.approx(truth[("M0002", "2024-01")])
    sb.set_as_of("2024-02-10T00:00:00+00:00")  # partial months follow as_of, like ground truth
    rows = requests.get(f"{sb.url}/meters/M0001/summary", headers=headers, timeout=10).json()
    partial = sb.ground_truth().set_index(["meter_id", "month"])["consumption"]
    assert [r["month"] for r in rows["data"]] == ["2024-01", "2024-02"]
    assert rows["data"][1]["total"] == pytest.approx(partial[("M0001", "2024-02")], rel=1e-12)
