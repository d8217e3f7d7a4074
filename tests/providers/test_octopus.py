"""Octopus Energy: onboarded through mappings/octopus/profile.toml only, against a loopback fake.

Quirks reproduced: HTTP Basic with the API key as user name and an empty password; an account
endpoint instead of a sites endpoint (properties -> meter points -> meters); consumption per
(meter point, serial) with ``period_from``/``period_to``/``page_size``/``order_by``;
``{count, next (absolute URL), previous, results}`` pages capped below the size asked for;
``interval_start`` with ``Z`` in winter and ``+01:00`` in summer; gas in kWh (SMETS1) or m³
(SMETS2) through the same field; an import and an export MPAN on one serial (the export's
night half-hours ``null``); a stale serial still listed with no data; a daily request quota
answered 429 without ``Retry-After``.
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
SHARED = "21L1234567"  # one physical meter: import MPAN and export MPAN
EXPORT_MPAN = next(
    p["mpan"]
    for prop in ACCOUNT["properties"]
    for p in prop["electricity_meter_points"]
    if p["is_export"]
)
STALE = "S95K00123"  # replaced meter, still listed on the account: no consumption at all
MPAN_OF = {  # serial -> the IMPORT (or gas) meter point it is read under
    m["serial_number"]: p.get("mpan") or p["mprn"]
    for prop in ACCOUNT["properties"]
    for p in prop["electricity_meter_points"] + prop["gas_meter_points"]
    if not p.get("is_export")
    for m in p["meters"]
}


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _export_value(start: str) -> float | None:
    """Solar export: null at night (the API's night values), daytime kWh by the hour."""
    hour = _ts(start).astimezone(LONDON).hour
    return None if hour < 7 or hour >= 19 else round(0.05 * (hour - 6), 3)


EXPORT = [{**r, "consumption": _export_value(r["interval_start"])} for r in SERIES[SHARED]]


def octopus(req: Request) -> Reply:
    expected = "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()
    if req.headers.get("Authorization") != expected:
        return Reply(401, {"detail": "Authentication credentials were not provided."})
    parts = [p for p in req.path.split("/") if p]
    if req.path == f"/v1/accounts/{ACCOUNT['number']}/":
        return Reply(200, ACCOUNT)
    if len(parts) == 6 and parts[1] in ("electricity-meter-points", "gas-meter-points"):
        point, serial = parts[2], parts[4]
        if point == EXPORT_MPAN and serial == SHARED:
            series = EXPORT
        elif serial == STALE:
            series = []  # listed, never read: an empty answer, not a 404
        elif MPAN_OF.get(serial) == point:
            series = SERIES[serial]
        else:
            return Reply(404, {"detail": "Not found."})
        lo, hi = _ts(req.query["period_from"]), _ts(req.query["period_to"])
        rows = [r for r in series if lo <= _ts(r["interval_start"]) < hi]
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


def assert_only_night_nulls(quarantine: Any) -> None:
    """Nothing set aside but the export's night nulls: one ``no_data`` warning per local
    day of the export meter, their counts adding up to the null half-hours exactly."""
    other = quarantine[quarantine["rule"] != "no_data"]
    assert other.empty, other[["rule", "reason"]].to_string()
    keys = {str(k).split("|")[0] for k in quarantine["record_key"]}
    assert keys == {f"{EXPORT_MPAN}:{SHARED}"}
    assert set(quarantine["severity"]) == {"warning"}  # counted, not an error
    counts = quarantine["reason"].astype(str).str.extract(r"^(\d+) redelivery value")[0]
    assert counts.astype(int).sum() == sum(r["consumption"] is None for r in EXPORT)


@pytest.fixture
def profile(serve: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    server = serve(octopus)
    monkeypatch.setenv("OCTOPUS_BASE_URL", server.url)
    monkeypatch.setenv("OCTOPUS_API_KEY", KEY)
    prof = read_profile(MAPPINGS / "octopus" / "profile.toml")
    prof.server = server  # type: ignore[attr-defined]
    return prof


def expected_monthly() -> dict[tuple[str, str], Fraction]:
    """Monthly kWh per (meter point:serial) from the fixture, by hand: local months, SMETS2
    m³ -> kWh."""
    per_m3 = Fraction("1.02264") * CV / Fraction("3.6")
    out: dict[tuple[str, str], Fraction] = defaultdict(Fraction)
    for serial, rows in SERIES.items():
        factor = per_m3 if serial == "G4P01234567" else Fraction(1)
        for r in rows:
            month = _ts(r["interval_start"]).astimezone(LONDON).strftime("%Y-%m")
            out[(f"{MPAN_OF[serial]}:{serial}", month)] += Fraction(str(r["consumption"])) * factor
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
    assert_only_night_nulls(tables.quarantine)
    # two properties: each meter belongs to the property it is listed under (keep = ...)
    assert sorted(tables.assets["asset_id"].astype(str)) == ["1234567", "7654321"]
    want_assets = {
        f"{point.get('mpan') or point['mprn']}:{m['serial_number']}": str(prop["id"])
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
    export_id = f"{EXPORT_MPAN}:{SHARED}"
    assert set(got) - {(export_id, m) for m in ("2024-03", "2024-04")} == set(want)
    for key, value in want.items():
        assert got[key] == pytest.approx(float(value), rel=1e-9), key
    assert set(usage["unit"].astype(str)) == {"kWh"}
    # the per-meter unit choice is visible in the lineage
    raw_units = dict(
        zip(usage["meter_id"].astype(str), usage["raw_unit"].astype(str), strict=False)
    )
    assert raw_units["3012345678:G4P01234567"] in ("m³", "m3")
    assert raw_units["3012345678:E6S12345678961"] == "kWh"


def test_octopus_dst_offsets_land_in_the_right_local_month(profile: Any) -> None:
    results = fetch_resources(profile, resources=["electricity"], since="2024-03-01")
    rows = results["electricity"].records
    assert any(r["interval_start"].endswith("Z") for r in rows)
    assert any(r["interval_start"].endswith("+01:00") for r in rows)
    tables = run_pipeline(profile, {k: v.records for k, v in results.items()})
    march = tables.usage[tables.usage["start"].dt.tz_convert(LONDON).dt.month == 3]
    # 30 March (48 half-hours) + 31 March (46: the clocks go forward) = 94 intervals
    assert int(march["n_intervals"].iloc[0]) == 94


def test_octopus_shared_import_export_serial_is_two_meters(profile: Any) -> None:
    """One serial read under its import MPAN and its export MPAN: two meters keyed by
    (MPAN, serial); the import's half-hours are all consumption (none set aside as
    duplicates), the export's are redelivery with direction ``export`` (never consumption),
    and its night nulls are "no data" rows (delivered: no missing intervals), not zeros."""
    results = fetch_resources(profile, since="2024-03-01", until="2024-05-01")
    assert len(results["electricity"].records) == 2 * len(SERIES[SHARED])  # two import points
    assert len(results["export"].records) == len(EXPORT)
    filtered: dict[str, dict[str, int]] = {}
    tables = run_pipeline(profile, {k: v.records for k, v in results.items()}, filtered=filtered)
    assert_only_night_nulls(tables.quarantine)
    imp, exp = f"{MPAN_OF[SHARED]}:{SHARED}", f"{EXPORT_MPAN}:{SHARED}"
    direction = dict(
        zip(tables.meters["meter_id"].astype(str), tables.meters["direction"], strict=True)
    )
    assert direction[imp] == "import" and direction[exp] == "export"
    assert direction["3012345678:G4P01234567"] == "import"  # gas: add_fields is_export=false
    usage = validate_tables(tables, profile).accepted.usage
    by_meter = usage.groupby(usage["meter_id"].astype(str))
    imp_rows, exp_rows = by_meter.get_group(imp), by_meter.get_group(exp)
    assert int(imp_rows["n_intervals"].sum()) == len(SERIES[SHARED])  # nothing dropped
    assert imp_rows["consumption"].sum() == pytest.approx(
        sum(r["consumption"] for r in SERIES[SHARED]), rel=1e-12
    )
    assert imp_rows["redelivery"].fillna(0).sum() == 0
    exported = [r["consumption"] for r in EXPORT if r["consumption"] is not None]
    nights = len(EXPORT) - len(exported)
    assert nights > 0 and len(exported) > 0
    assert exp_rows["consumption"].fillna(0).sum() == 0  # export energy is not consumption
    assert exp_rows["redelivery"].sum() == pytest.approx(sum(exported), rel=1e-12)
    assert int(exp_rows["n_intervals"].sum()) == len(EXPORT)  # nights count as delivered
    assert filtered == {}  # nothing dropped


def test_octopus_new_serial_without_a_unit_choice_is_quarantined(profile: Any) -> None:
    account = json.loads(json.dumps(ACCOUNT))
    account["properties"][0]["gas_meter_points"][0]["meters"].append({"serial_number": "NEW1"})
    res = profile.section("resources")  # what the fetch adds to meter points (add_fields)
    first = account["properties"][0]
    raw = {
        "properties": account["properties"],
        "electricity_points": [
            {**p, **res["electricity_points"]["add_fields"]}
            for p in first["electricity_meter_points"]
        ],
        "gas_points": [{**p, **res["gas_points"]["add_fields"]} for p in first["gas_meter_points"]],
        "gas": [{**SERIES["G4P01234567"][0], "_parent": {"mprn": "3012345678", "serial": "NEW1"}}],
        "electricity": [],
        "export": [],
    }
    for point in raw["electricity_points"] + raw["gas_points"]:
        point["property_id"] = first["id"]
    tables = run_pipeline(profile, raw)
    reasons = " ".join(tables.quarantine["reason"].astype(str))
    assert "NEW1" in reasons and "value_maps.raw_unit" in reasons


def test_octopus_wrong_key_is_an_auth_error(profile: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCTOPUS_API_KEY", "sk_live_wrong")
    with pytest.raises(AuthError) as info:
        fetch_resources(profile, resources=["properties"])
    assert "sk_live_wrong" not in str(info.value)


def test_octopus_cli_daily_quota_exits_4_then_resumes_and_flags_the_stale_serial(
    serve: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The shipped profile synced by the CLI: a 429 without Retry-After saying the daily quota
    is spent stops the run (exit 4, what was fetched committed); the same command resumes once
    the quota is back. The stale serial still listed on the account has no data: the run is
    partial with ``meter_without_data`` naming it, never passed silently."""
    from scaler_workbench import cli
    from scaler_workbench.store import StateStore

    budget = {"left": 3}

    def limited(req: Request) -> Reply:
        if "consumption" in req.path:
            if budget["left"] <= 0:
                return Reply(429, {"detail": "Daily request quota exceeded for this API key."})
            budget["left"] -= 1
        return octopus(req)

    server = serve(limited)
    monkeypatch.setenv("OCTOPUS_BASE_URL", server.url)
    monkeypatch.setenv("OCTOPUS_API_KEY", KEY)
    out = tmp_path / "out"
    args = ["sync", str(MAPPINGS / "octopus" / "profile.toml"), "--out", str(out)]
    args += ["--since", "2024-03-01", "--until", "2024-05-01", "--formats", "csv"]
    assert cli.main([*args, "--json"]) == cli.EXIT_QUOTA
    captured = capsys.readouterr()
    payload = json.loads(captured.out)
    assert payload["status"] == "quota_exhausted" and payload["summary"]["remaining"]
    assert "Traceback" not in captured.err and KEY not in captured.err + captured.out
    asked = sum("consumption" in r.path for r in server.requests)
    assert asked == 4  # three answered, the fourth refused: no retries against a spent quota
    budget["left"] = 1000
    assert cli.main([*args, "--json"]) == cli.EXIT_PARTIAL
    summary = json.loads(capsys.readouterr().out)["summary"]
    stale = f"{MPAN_OF[STALE]}:{STALE}"
    assert summary["meters_without_data"] == [stale]
    reasons = summary["ready_to_export"]["reasons"]
    assert any(r.startswith("meter_without_data: 1 meter(s)") and stale in r for r in reasons)
    assert not any("partial meter-month" in r for r in reasons)  # night nulls are delivered
    with StateStore(out / "state" / "octopus.sqlite") as store:
        assert store.runs()["status"].tolist()[-1] == "quota_exhausted"
        assert store.resume_plan() is None
        usage = store.read_table("usage")
    got = set(usage["meter_id"].astype(str))
    assert stale not in got
    assert got == {f"{MPAN_OF[s]}:{s}" for s in SERIES} | {f"{EXPORT_MPAN}:{SHARED}"}
