"""Fixtures for connector tests: sandbox profiles per auth/paginator, profiles for a FakeServer.

Scripted answers come from the suite's one fake, ``serve(handler)`` of tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from scaler_workbench.profile import Profile
from scaler_workbench.sandbox import Sandbox
from scaler_workbench.sandbox.generate import BillSeries, IntervalSeries, RegisterSeries

#: sandbox auth mode -> (sandbox options, profile [auth] table); URLs filled in per sandbox
AUTH_CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "api_key_header": (
        {"auth": "api_key"},
        {
            "type": "api_key",
            "location": "header",
            "name": "X-API-Key",
            "key_env": "SANDBOX_API_KEY",
        },
    ),
    "api_key_query": (
        {"auth": "api_key_query"},
        {"type": "api_key", "location": "query", "name": "api_key", "key_env": "SANDBOX_API_KEY"},
    ),
    "basic": (
        {"auth": "basic"},
        {"type": "basic", "username_env": "SANDBOX_USERNAME", "password_env": "SANDBOX_PASSWORD"},
    ),
    "basic_key": ({"auth": "basic_key"}, {"type": "basic", "username_env": "SANDBOX_API_KEY"}),
    "bearer_token_format": (
        {"auth": "bearer", "bearer_format": "Token {token}"},
        {"type": "bearer", "token_env": "SANDBOX_TOKEN", "format": "Token {token}"},
    ),
    "oauth2_cc_basic": (
        {"auth": "oauth2_client_credentials", "client_auth": "basic"},
        {
            "type": "oauth2_client_credentials",
            "client_id_env": "SANDBOX_CLIENT_ID",
            "client_secret_env": "SANDBOX_CLIENT_SECRET",
            "client_auth": "basic",
        },
    ),
    "oauth2_cc_body": (
        {"auth": "oauth2_client_credentials", "client_auth": "body"},
        {
            "type": "oauth2_client_credentials",
            "client_id_env": "SANDBOX_CLIENT_ID",
            "client_secret_env": "SANDBOX_CLIENT_SECRET",
            "client_auth": "body",
        },
    ),
    "oauth2_password": (
        {"auth": "oauth2_password"},
        {
            "type": "oauth2_password",
            "client_id_env": "SANDBOX_CLIENT_ID",
            "client_secret_env": "SANDBOX_CLIENT_SECRET",
            "username_env": "SANDBOX_USERNAME",
            "password_env": "SANDBOX_PASSWORD",
        },
    ),
    "oauth2_auth_code": (
        {"auth": "oauth2_authorization_code"},
        {
            "type": "oauth2_authorization_code",
            "client_id_env": "SANDBOX_CLIENT_ID",
            "client_secret_env": "SANDBOX_CLIENT_SECRET",
            "refresh_token_env": "SANDBOX_REFRESH_TOKEN",
        },
    ),
}

#: sandbox paginator -> (sandbox options, profile [paginator] table)
PAGINATOR_CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "offset": ({"paginator": "offset"}, {"type": "offset", "limit": 250, "total_path": "total"}),
    "page_number": (
        {"paginator": "page"},
        {
            "type": "page_number",
            "page_size": 250,
            "page_size_param": "per_page",
            "total_pages_path": "total_pages",
            "total_path": "total",
        },
    ),
    "cursor": (
        {"paginator": "cursor", "page_size": 250},
        {"type": "cursor", "cursor_path": "next_cursor", "cursor_param": "cursor"},
    ),
    "next_url": (
        {"paginator": "next_url", "page_size": 250, "next_url_style": "api_root"},
        {"type": "next_url", "next_url_path": "links.next", "relative_to": "api_root"},
    ),
    "link_header": ({"paginator": "link_header", "page_size": 250}, {"type": "link_header"}),
    "none": ({"paginator": "none"}, {"type": "none"}),
}


def sandbox_resources(paginator: dict[str, Any] | None = None) -> dict[str, Any]:
    """The sandbox's five resources (as in mappings/sandbox/profile.toml)."""
    dated = {"start_param": "from", "end_param": "to", "format": "date", "chunk": "month"}
    child = {"record_path": "data", "primary_key": "id", "parent": "meters"}
    res: dict[str, Any] = {
        "sites": {"path": "/sites", "record_path": "data", "primary_key": "id"},
        "meters": {
            "path": "/sites/{site_id}/meters",
            "record_path": "data",
            "primary_key": "id",
            "parent": "sites",
            "parent_params": {"site_id": "id"},
        },
        "intervals": {
            **child,
            "path": "/meters/{meter_id}/intervals",
            "parent_params": {"meter_id": "id"},
            "parent_filter": {"kind": "interval"},
            "date_range": dict(dated),
            "incremental": {"cursor_path": "interval_start", "lookback_days": 1},
        },
        "registers": {
            **child,
            "path": "/meters/{meter_id}/readings",
            "parent_params": {"meter_id": "id"},
            "parent_filter": {"kind": "register"},
            "date_range": dict(dated),
        },
        "bills": {
            **child,
            "path": "/meters/{meter_id}/bills",
            "parent_params": {"meter_id": "id"},
            "parent_filter": {"kind": "bill"},
        },
    }
    if paginator is not None:
        for table in res.values():
            table["paginator"] = paginator
    return res


def sandbox_profile(
    sb: Sandbox,
    *,
    auth: dict[str, Any] | None = None,
    paginator: dict[str, Any] | None = None,
    resources: dict[str, Any] | None = None,
    client: dict[str, Any] | None = None,
    token_file: Path | None = None,
    environment: dict[str, Any] | None = None,
) -> Profile:
    """A Profile pointing at a running sandbox."""
    auth = dict(auth or AUTH_CASES["api_key_header"][1])
    if auth["type"].startswith("oauth2"):
        auth["token_url"] = sb.token_url
    if auth["type"] == "oauth2_authorization_code":
        auth["authorize_url"] = sb.authorize_url
        if token_file is not None:
            auth["token_file"] = str(token_file)
    data: dict[str, Any] = {
        "provider": {"name": "sandbox", "timezone": "Europe/London"},
        "environments": {"sandbox": {"base_url": sb.url, **(environment or {})}},
        "auth": auth,
        "client": {
            "timeout": 10,
            "max_attempts": 6,
            "backoff_base": 0.5,
            "backoff_cap": 30,
            **(client or {}),
        },
        "paginator": paginator or {"type": "offset", "limit": 250, "total_path": "total"},
        "resources": resources if resources is not None else sandbox_resources(),
    }
    return Profile.from_dict(data)


def expected_ids(sb: Sandbox) -> dict[str, set[str]]:
    """Every id the sandbox generated, per resource (from its arrays, never over HTTP)."""
    data = sb.data
    out: dict[str, set[str]] = {
        "sites": {s["id"] for s in data.sites},
        "meters": {m["id"] for m in data.meters},
        "intervals": set(),
        "registers": set(),
        "bills": set(),
    }
    for mid, series in data.series.items():
        if isinstance(series, IntervalSeries):
            out["intervals"] |= {r["id"] for r in data.interval_records(mid, 0, series.t_idx.size)}
        elif isinstance(series, RegisterSeries):
            out["registers"] |= {r["id"] for r in data.reading_records(mid, 0, series.d_idx.size)}
        elif isinstance(series, BillSeries):
            out["bills"] |= {r["id"] for r in data.bill_records(mid, 0, series.start.size)}
    return out


def usage_months(out: Path) -> dict[tuple[str, str], float]:
    """Exported monthly consumption, ``{(meter id, "YYYY-MM"): kWh}``, from ``out/export``."""
    import pandas as pd

    usage = pd.read_csv(out / "export" / "usage.csv")
    return {
        (str(r.meter_external_id), str(r.start_date)[:7]): float(r.consumption)
        for r in usage.itertuples()
    }


def flavour_truth(sb: Sandbox) -> dict[tuple[str, str], float]:
    """A sandbox flavour's ``ground_truth()`` as ``{(meter id, "YYYY-MM"): kWh}``."""
    gt = sb.flavour.ground_truth()  # type: ignore[attr-defined]
    return {(str(r.meter_id), str(r.month)): float(r.consumption) for r in gt.itertuples()}


@pytest.fixture
def sandbox_env(monkeypatch: pytest.MonkeyPatch) -> Callable[[Sandbox], None]:
    """Export a sandbox's credentials into the environment (undone after the test)."""

    def apply(sb: Sandbox) -> None:
        for k, v in sb.env().items():
            monkeypatch.setenv(k, v)
        if sb.auth == "oauth2_authorization_code":
            monkeypatch.setenv("SANDBOX_REFRESH_TOKEN", sb.issue_refresh_token())

    return apply


def fake_profile(url: str, *, resources: dict[str, Any], **sections: Any) -> Profile:
    """A profile for a ``serve``-d FakeServer at ``url`` (no auth unless given)."""
    data: dict[str, Any] = {
        "provider": {"name": "fake", "timezone": "UTC"},
        "environments": {"test": {"base_url": url}},
        "resources": resources,
        "client": {"max_attempts": 4, "backoff_base": 1.0, "backoff_cap": 60},
        **sections,
    }
    return Profile.from_dict(data)
