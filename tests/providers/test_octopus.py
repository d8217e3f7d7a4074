"""Octopus Energy: onboarded through mappings/octopus/profile.toml only, against a loopback fake.

Quirks reproduced: HTTP Basic with the API key as user name and an empty password; an account
endpoint instead of a sites endpoint (properties -> meter points -> meters); consumption per
(meter point, serial) with ``period_from``/``period_to``/``page_size``/``order_by``;
``{count, next (absolute URL), previous, results}`` pages capped below the size asked for;
``interval_start`` with ``Z`` in winter and ``+01:00`` in summer; gas in kWh (SMETS1) or m³
(SMETS2) through the same field.
"""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from datetime import datetime
from fractions import Fraction
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest

from scaler_workbench.connectors import fetch_resources
from scaler_workbench.exceptions import AuthError
from scaler_workbench.pipeline import run_pipeline
from scaler_workbench.profile import read_profile
from scaler_workbench.validation import validate_tables

from .conftest import DATA, MAPPINGS, Reply, Request

KEY = "sk_live_fake0123456789"
ACCOUNT = json.loads((DATA / "octopus" / "account.json").read_text())
SERIES: dict[str, list[dict[str, Any]]] = json.loads(
    (DATA / "octopus" / "consumption.json").read_text()
)
MAX_PAGE = 40  # the fake caps page_size below what the profile asks for
LONDON = ZoneInfo("Europe/London")
CV = Fraction("39.5")


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def octopus(req: Request) -> Reply:
    expected = "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()
    if req.headers.get("Authorization") != expected:
        return Reply(401, {"detail": "Authentication credentials were not provided."})
    parts = [p for p in req.path.split("/") if p]
    if req.path == f"/v1/accounts/{ACCOUNT['number']}/":
        return Reply(200, ACCOUNT)
    if len(parts) == 6 and parts[1] in ("electricity-meter-points", "gas-meter-points"):
        serial = parts[4]
        if serial not in SERIES:
            return Reply(404, {"detail": "Not found."})
        lo, hi = _ts(req.query["period_from"]), _ts(req.query["period_to"])
        rows = [r for r in SERIES[serial] if lo <= _ts(r["interval_start"]) < hi]
        if req.query.get("order_by") != "period":
            rows = rows[::-1]  # the API's default is newest first
        size = min(int(req.query.get("page_size", 100)), MAX_PAGE)
        page = int(req.query.get("page", 1))
        chunk = rows[(page - 1) * size : page * size]
        nxt = None
        if page * size < len(rows):
            nxt = f"{req.base}{req.path}?" + urlencode({**req.query, "page": page + 1})
        return Reply(200, {"count": len(rows), "next": nxt, "previous": None, "results": chunk})
    return Reply(404, {"detail": "Not found."})


@pytest.fixture
def profile(serve: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    server = serve(octopus)
    monkeypatch.setenv("OCTOPUS_BASE_URL", server.url)
    monkeypatch.setenv("OCTOPUS_API_KEY", KEY)
    prof = read_profile(MAPPINGS / "octopus" / "profile.toml")
    prof.server = server  # type: ignore[attr-defined]
    return prof


def expected_monthly() -> dict[tuple[str, str], Fraction]:
    """Monthly kWh per serial from the fixture, by hand: local months, SMETS2 m³ -> kWh."""
    per_m3 = Fraction("1.02264") * CV / Fraction("3.6")
    out: dict[tuple[str, str], Fraction] = defaultdict(Fraction)
    for serial, rows in SERIES.items():
        factor = per_m3 if serial == "G4P01234567" else Fraction(1)
        for r in rows:
            month = _ts(r["interval_start"]).astimezone(LONDON).strftime("%Y-%m")
            out[(serial, month)] += Fraction(str(r["consumption"])) * factor
    return out


def test_octopus_end_to_end_monthly_totals(profile: Any) -> None:
    results = fetch_resources(profile, since="2024-03-01", until="2024-05-01")
    for _name, res in results.items():
        assert res.report.complete, res.report.summary()
    # one sequence per (meter point, serial): the gas point has two meters (SMETS1 and SMETS2)
    assert results["gas"].report.parents == 2
    assert {r["_parent"]["serial"] for r in results["gas"].records} == {
        "E6S12345678961",
        "G4P01234567",
    }
    assert results["electricity"].report.pages > 2  # pages capped at 40 were followed
    raw = {k: v.records for k, v in results.items()}
    tables = run_pipeline(profile, raw)
    assert tables.quarantine.empty, tables.quarantine[["rule", "reason"]].to_string()
    # two properties: each meter belongs to the property it is listed under (keep = ...)
    assert sorted(tables.assets["asset_id"].astype(str)) == ["1234567", "7654321"]
    want_assets = {
        m["serial_number"]: str(prop["id"])
        for prop in ACCOUNT["properties"]
        for point in prop["electricity_meter_points"] + prop["gas_meter_points"]
        for m in point["meters"]
    }
    got_assets = dict(
        zip(
            tables.meters["meter_id"].astype(str),
            tables.meters["asset_id"].astype(str),
            strict=True,
        )
    )
    assert got_assets == want_assets and len(set(want_assets.values())) == 2
    result = validate_tables(tables, profile)
    usage = result.accepted.usage
    got = {
        (str(r.meter_id), r.start.tz_convert(LONDON).strftime("%Y-%m")): r.consumption
        for r in usage.itertuples()
    }
    want = expected_monthly()
    assert set(got) == set(want)
    for key, value in want.items():
        assert got[key] == pytest.approx(float(value), rel=1e-9), key
    assert set(usage["unit"].astype(str)) == {"kWh"}
    # the per-meter unit choice is visible in the lineage
    raw_units = dict(
        zip(usage["meter_id"].astype(str), usage["raw_unit"].astype(str), strict=False)
    )
    assert raw_units["G4P01234567"] in ("m³", "m3")
    assert raw_units["E6S12345678961"] == "kWh"


def test_octopus_dst_offsets_land_in_the_right_local_month(profile: Any) -> None:
    results = fetch_resources(profile, resources=["electricity"], since="2024-03-01")
    rows = results["electricity"].records
    assert any(r["interval_start"].endswith("Z") for r in rows)
    assert any(r["interval_start"].endswith("+01:00") for r in rows)
    tables = run_pipeline(profile, {k: v.records for k, v in results.items()})
    march = tables.usage[tables.usage["start"].dt.tz_convert(LONDON).dt.month == 3]
    # 30 March (48 half-hours) + 31 March (46: the clocks go forward) = 94 intervals
    assert int(march["n_intervals"].iloc[0]) == 94


def test_octopus_new_serial_without_a_unit_choice_is_quarantined(profile: Any) -> None:
    account = json.loads(json.dumps(ACCOUNT))
    account["properties"][0]["gas_meter_points"][0]["meters"].append({"serial_number": "NEW1"})
    raw = {
        "properties": account["properties"],
        "electricity_points": account["properties"][0]["electricity_meter_points"],
        "gas_points": [{**p, "fuel": "gas"} for p in account["properties"][0]["gas_meter_points"]],
        "gas": [{**SERIES["G4P01234567"][0], "_parent": {"mprn": "3012345678", "serial": "NEW1"}}],
        "electricity": [],
    }
    raw["electricity_points"] = [{**p, "fuel": "electricity"} for p in raw["electricity_points"]]
    for point in raw["electricity_points"] + raw["gas_points"]:
        point["property_id"] = account["properties"][0]["id"]
    tables = run_pipeline(profile, raw)
    reasons = " ".join(tables.quarantine["reason"].astype(str))
    assert "NEW1" in reasons and "value_maps.raw_unit" in reasons


def test_octopus_wrong_key_is_an_auth_error(profile: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCTOPUS_API_KEY", "sk_live_wrong")
    with pytest.raises(AuthError) as info:
        fetch_resources(profile, resources=["properties"])
    assert "sk_live_wrong" not in str(info.value)
