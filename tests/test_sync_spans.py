"""Ranges and quotas (issue 15 item 8), through a real sync against the loopback fake: a 403
"period exceeds" answer is a range-too-large answer, the learned span is kept in the state and
reused by the next run, and date-only parameters get no margin-day requests."""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from _fakes import Reply, Request

from scaler_workbench.clock import FakeClock
from scaler_workbench.connectors.dates import make_date_range
from scaler_workbench.profile import Profile
from scaler_workbench.store import StateStore
from scaler_workbench.sync import run_sync

MAX_SPAN = 10  # days the fake accepts in one request


class SolarFake:
    """Two meters, one value per day; more than MAX_SPAN days is a 403 "period exceeds"."""

    def __init__(self) -> None:
        self.refused = 0

    def __call__(self, req: Request) -> Reply:
        if req.path == "/meters":
            return Reply(200, {"data": [{"id": "A", "site": "S1"}, {"id": "B", "site": "S1"}]})
        if {k.lower(): v for k, v in req.headers.items()}.get("x-api-key") != "k":
            return Reply(403, {"message": "Forbidden: invalid API key"})
        start = date.fromisoformat(req.query["startDate"][:10])
        end = date.fromisoformat(req.query["endDate"][:10])  # inclusive
        if (end - start).days + 1 > MAX_SPAN:
            self.refused += 1
            return Reply(403, {"message": f"Requested time period exceeds {MAX_SPAN} days"})
        days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
        return Reply(200, {"values": [{"date": d.isoformat(), "value": 1.0} for d in days]})


PROFILE: dict[str, Any] = {
    "provider": {"name": "solar", "timezone": "UTC"},
    "environments": {"test": {"base_url": ""}},
    "auth": {"type": "api_key", "name": "X-API-Key", "key_env": "SOLAR_KEY"},
    "paginator": {"type": "none"},
    "resources": {
        "meters": {"path": "/meters", "record_path": "data"},
        "days": {
            "path": "/meters/{meter_id}/energy",
            "record_path": "values",
            "parent": "meters",
            "parent_params": {"meter_id": "id"},
            "date_range": {
                "start_param": "startDate",
                "end_param": "endDate",
                "format": "date",
                "end_inclusive": True,
                "chunk": "month",
                "since": "2024-01-01",
            },
        },
    },
    "mapping": {
        "assets": {"resource": "meters", "fields": {"asset_id": "site", "name": "site"}},
        "meters": {
            "resource": "meters",
            "fields": {
                "meter_id": "id",
                "asset_id": "site",
                "meter_type": {"const": "Energy"},
                "raw_unit": {"const": "kWh"},
            },
        },
        "usage": {
            "days": {
                "resource": "days",
                "kind": "intervals",
                "aggregate": "month",
                "duration": "1D",
                "fields": {"meter_id": "_parent.meter_id", "start": "date", "consumption": "value"},
            }
        },
    },
    "sync": {"state": "state/solar.sqlite"},
}


def _profile(url: str, **date_range: Any) -> Profile:
    data = copy.deepcopy(PROFILE)
    data["environments"]["test"]["base_url"] = url
    data["resources"]["days"]["date_range"].update(date_range)
    return Profile.from_dict(data)


@pytest.fixture
def solar(serve: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[SolarFake, Any]:
    monkeypatch.setenv("SOLAR_KEY", "k")
    fake = SolarFake()
    return fake, serve(fake)


def _energy(server: Any) -> list[Request]:
    return [r for r in server.requests if r.path.endswith("/energy")]


def test_a_learned_span_is_kept_in_the_state_and_reused(
    solar: tuple[SolarFake, Any], tmp_path: Path
) -> None:
    fake, server = solar
    clock = FakeClock(datetime(2024, 3, 1, tzinfo=UTC))
    first = run_sync(_profile(server.url), out=tmp_path, clock=clock, until="2024-03-01")
    assert first.status == "success", first.summary
    assert fake.refused > 0  # learned the hard way, once
    with StateStore(tmp_path / "state" / "solar.sqlite") as store:
        learned = store.learned_spans()
    assert learned == {"days": 8}  # 31 -> 16 -> 8 days: the first span the fake accepted
    fake.refused = 0
    server.requests.clear()
    second = run_sync(
        _profile(server.url), out=tmp_path, clock=clock, full=True, until="2024-03-01"
    )
    assert second.status == "success", second.summary
    assert fake.refused == 0  # not relearned with refused requests
    spans = {
        (date.fromisoformat(r.query["endDate"]) - date.fromisoformat(r.query["startDate"])).days + 1
        for r in _energy(server)
    }
    assert max(spans) <= 8
    usage = (tmp_path / "export" / "usage.csv").read_text(encoding="utf-8")
    assert usage.count("\n") - 1 == 4  # 2 meters x Jan, Feb


def test_date_only_parameters_get_no_margin_day_requests(
    solar: tuple[SolarFake, Any], tmp_path: Path
) -> None:
    fake, server = solar
    clock = FakeClock(datetime(2024, 3, 1, tzinfo=UTC))
    profile = _profile(server.url, max_days=MAX_SPAN)
    result = run_sync(profile, out=tmp_path, clock=clock, since="2024-02-01", until="2024-03-01")
    assert result.status == "success", (
        result.summary.get("partial_reasons"),
        result.summary.get("incomplete"),
    )
    starts = sorted({r.query["startDate"] for r in _energy(server)})
    ends = sorted({r.query["endDate"] for r in _energy(server)})
    assert starts[0] == "2024-02-01" and ends[-1] == "2024-02-29"  # no Jan 31, no Mar 1
    assert len(_energy(server)) == 2 * 3  # 2 meters x ceil(29 / 10) windows, nothing more
    assert fake.refused == 0  # the documented max_days: nothing refused


def test_datetime_parameters_keep_the_margin_day(
    solar: tuple[SolarFake, Any], tmp_path: Path
) -> None:
    """A zone-shifted datetime may put a local day on the neighbouring date: keep the margin."""
    _fake, server = solar
    clock = FakeClock(datetime(2024, 3, 1, tzinfo=UTC))
    profile = _profile(server.url, format="datetime", max_days=MAX_SPAN - 1, chunk=MAX_SPAN - 1)
    run_sync(profile, out=tmp_path, clock=clock, since="2024-02-01", until="2024-03-01")
    starts = sorted(r.query["startDate"] for r in _energy(server))
    assert starts[0].startswith("2024-01-31")


def test_403_period_exceeds_is_too_large_but_a_403_for_credentials_stays_an_auth_error(
    solar: tuple[SolarFake, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    dr = make_date_range({})
    assert dr is not None
    assert dr.is_too_large(403, '{"message": "Requested time period exceeds 10 days"}')
    assert not dr.is_too_large(403, '{"message": "Forbidden: invalid API key"}')
    custom = make_date_range({"too_large": {"status": [403], "match": "trop long"}})
    assert custom is not None and custom.is_too_large(403, "intervalle trop long")
    fake, server = solar
    monkeypatch.setenv("SOLAR_KEY", "wrong")
    from scaler_workbench.connectors import fetch_resources

    results = fetch_resources(
        _profile(server.url), since="2024-01-01", until="2024-02-01", clock=FakeClock()
    )
    report = results["days"].report
    # a 403 for credentials is a permission failure per parent, never halved as "too large"
    assert len(report.failed_pages) == 2 and report.learned_max_days is None
    assert all("not authorised" in p["error"] for p in report.failed_pages)
    assert len(_energy(server)) == 2 and fake.refused == 0
