"""A generic US JSON API (UtilityAPI / Arcadia-like): mappings/metercloud/profile.toml only.

Quirks reproduced by the loopback fake: the API key in a query parameter; bare JSON lists
paged by RFC 5988 ``Link`` headers over page numbers; epoch-millisecond ``start``/``end``
parameters and record fields; a 90-day maximum range answered with 400 "range too large";
every 7th request a 429 whose ``Retry-After`` is an HTTP date; closed meters answer 404.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from fractions import Fraction
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest

from scaler_workbench.clock import FakeClock
from scaler_workbench.connectors import fetch_resources
from scaler_workbench.exceptions import AuthError
from scaler_workbench.pipeline import run_pipeline
from scaler_workbench.profile import read_profile
from scaler_workbench.validation import validate_tables

from .conftest import DATA, MAPPINGS, Reply, Request, paginate

KEY = "mc_live_0123456789abcdef"
SITES = json.loads((DATA / "metercloud" / "sites.json").read_text())
METERS = json.loads((DATA / "metercloud" / "meters.json").read_text())
ZONE = {s["uid"]: s["time_zone"] for s in SITES}
START = datetime(2024, 1, 1, tzinfo=UTC)
HOURS = 24 * 182  # 2024-01-01 .. 2024-07-01 (UTC)
MAX_PAGE = 1000
MAX_SPAN_MS = 90 * 86400 * 1000


def _series(uid: str, k: int) -> list[dict[str, Any]]:
    base = {"mt_e01": 12.5, "mt_g01": 0.75, "mt_w01": 0.02}[uid]
    out = []
    for i in range(HOURS):
        t = START + timedelta(hours=i)
        ms = int(t.timestamp() * 1000)
        value = round(base * (1 + ((i * 13 + k) % 17) / 20), 4)
        out.append(
            {"start_ms": ms, "end_ms": ms + 3600000, "value": value, "is_estimate": i % 97 == 0}
        )
    return out


SERIES = {m["uid"]: _series(m["uid"], k) for k, m in enumerate(METERS) if m["status"] == "active"}


class MeterCloud:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.n = 0
        self.refused_ranges = 0
        self.throttled = 0

    def __call__(self, req: Request) -> Reply:
        if req.query.get("api_key") != KEY:
            return Reply(401, {"error": "unauthorized", "message": "missing or invalid api_key"})
        self.n += 1
        if self.n % 7 == 0:
            self.throttled += 1
            when = self.clock.now() + timedelta(seconds=3)
            return Reply(
                429,
                {"error": "rate_limited", "message": "slow down"},
                headers={"Retry-After": format_datetime(when, usegmt=True)},
            )
        parts = [p for p in req.path.removeprefix("/api/v3").split("/") if p]
        if parts == ["sites"]:
            items: list[Any] = SITES
        elif parts == ["meters"]:
            items = METERS
        elif len(parts) == 3 and parts[0] == "meters" and parts[2] == "intervals":
            if parts[1] not in SERIES:
                return Reply(404, {"error": "not_found", "message": "meter is closed"})
            lo, hi = int(req.query["start"]), int(req.query["end"])
            if hi - lo > MAX_SPAN_MS:
                self.refused_ranges += 1
                return Reply(
                    400, {"error": "bad_request", "message": "range too large (max 90 days)"}
                )
            items = [r for r in SERIES[parts[1]] if lo <= r["start_ms"] < hi]
        else:
            return Reply(404, {"error": "not_found"})
        size = min(int(req.query.get("per_page", 50)), MAX_PAGE)
        page = int(req.query.get("page", 1))
        chunk, more = paginate(items, page, size)
        links = []
        if more:
            links.append(
                f'<{req.base}{req.path}?{urlencode({**req.query, "page": page + 1})}>; rel="next"'
            )
        last = max(1, -(-len(items) // size))
        links.append(f'<{req.base}{req.path}?{urlencode({**req.query, "page": last})}>; rel="last"')
        return Reply(200, chunk, headers={"Link": ", ".join(links)})


@pytest.fixture
def setup(serve: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, MeterCloud, FakeClock]:
    clock = FakeClock(datetime(2024, 7, 2, tzinfo=UTC))
    fake = MeterCloud(clock)
    server = serve(fake)
    fake.server = server  # type: ignore[attr-defined]
    monkeypatch.setenv("METERCLOUD_BASE_URL", server.url + "/api/v3")
    monkeypatch.setenv("METERCLOUD_API_KEY", KEY)
    return read_profile(MAPPINGS / "metercloud" / "profile.toml"), fake, clock


def expected_monthly() -> dict[tuple[str, str], Fraction]:
    factor = {
        "kWh": Fraction(1),
        "therms": Fraction("105480400") / 3600000,  # US therm -> kWh
        "CCF": 100 * Fraction("0.3048") ** 3,  # 100 ft³ of water -> m³
    }
    out: dict[tuple[str, str], Fraction] = defaultdict(Fraction)
    for m in METERS:
        if m["uid"] not in SERIES:
            continue
        zone = ZoneInfo(ZONE[m["site_uid"]])
        for r in SERIES[m["uid"]]:
            month = datetime.fromtimestamp(r["start_ms"] / 1000, zone).strftime("%Y-%m")
            out[(m["uid"], month)] += Fraction(str(r["value"])) * factor[m["unit"]]
    return out


def test_metercloud_end_to_end_monthly_totals(setup: Any) -> None:
    profile, fake, clock = setup
    results = fetch_resources(
        profile, since=START, until=START + timedelta(hours=HOURS), clock=clock
    )
    iv = results["intervals"].report
    # 182 days refused, 91 refused, 46 accepted: learned, and remembered for the next meters
    assert iv.learned_max_days is not None and iv.learned_max_days <= 90
    assert fake.refused_ranges == 2
    assert not iv.failed_pages and not iv.duplicates, iv.summary()
    assert iv.records == sum(len(v) for v in SERIES.values())
    # the HTTP-date Retry-After was honoured on the injected clock: no real sleeping
    assert fake.throttled > 0
    assert any(2.0 <= s <= 3.5 for s in clock.sleeps), clock.sleeps
    assert results["intervals"].report.parents == 3  # the closed meter is never asked for
    raw = {k: v.records for k, v in results.items()}
    tables = run_pipeline(profile, raw)
    # the closed meter has no data: nothing is quarantined for it
    assert tables.quarantine.empty, tables.quarantine[["rule", "reason"]].to_string()
    usage = validate_tables(tables, profile).accepted.usage
    got: dict[tuple[str, str], float] = defaultdict(float)
    for r in usage.itertuples():
        got[(str(r.meter_id), r.start.tz_convert(str(r.timezone)).strftime("%Y-%m"))] += (
            r.consumption
        )
    want = expected_monthly()
    assert set(got) == set(want)
    for key, value in want.items():
        assert got[key] == pytest.approx(float(value), rel=1e-9), key


def test_metercloud_epoch_ms_parameters_and_query_key(setup: Any) -> None:
    profile, fake, clock = setup
    results = fetch_resources(
        profile, resources=["intervals"], since="2024-03-01", until="2024-03-03", clock=clock
    )
    assert results["intervals"].report.records == 3 * 48
    sent = [r for r in fake.server.requests if r.path.endswith("/intervals")]
    assert sent and all(r.query["api_key"] == KEY for r in sent)  # key in the query string
    assert sent[0].query["start"] == str(
        int(datetime(2024, 3, 1, 8, tzinfo=UTC).timestamp() * 1000)
    )
    assert sent[0].query["end"] == str(int(datetime(2024, 3, 3, 8, tzinfo=UTC).timestamp() * 1000))
    rows = results["intervals"].records
    assert rows[0]["start_ms"] == int(datetime(2024, 3, 1, 8, tzinfo=UTC).timestamp() * 1000)


def test_metercloud_missing_key_is_an_auth_error(
    setup: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    profile, _fake, clock = setup
    monkeypatch.setenv("METERCLOUD_API_KEY", "mc_live_wrong_key_value")
    with pytest.raises(AuthError) as info:
        fetch_resources(profile, resources=["sites"], clock=clock)
    assert "mc_live_wrong_key_value" not in str(info.value)
