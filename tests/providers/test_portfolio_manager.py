"""ENERGY STAR Portfolio Manager: onboarded through mappings/portfolio_manager/profile.toml.

Quirks reproduced by the loopback fake: XML everywhere; lists are ``<links>`` of ids, details
are separate documents without their own id; HTTP Basic; consumption pages linked by
``<links><link linkDescription="next page" link="/meter/..?page=2"/>`` relative to ``/ws``;
``startDate``/``endDate`` filters with an inclusive end; bills with an INCLUSIVE ``endDate``;
units written as "kBtu (thousand Btu)", "ccf (hundred cubic feet)", "therms", "Gallons (US)";
the account id discovered from ``GET /account`` (not 100); PM's plain "Electric" meter type;
bills filtered by their START date (a bill straddling the range's start needs a look-back);
shared-boundary bills (an end date that is the next bill's start date: the later bill's day).
"""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from datetime import date, timedelta
from fractions import Fraction
from typing import Any
from urllib.parse import urlencode
from xml.etree import ElementTree as ET

import pytest

from scaler_workbench.connectors import fetch_resources
from scaler_workbench.exceptions import AuthError
from scaler_workbench.pipeline import run_pipeline
from scaler_workbench.profile import read_profile
from scaler_workbench.validation import validate_tables

from .conftest import DATA, MAPPINGS, Reply, Request

HERE = DATA / "portfolio_manager"
USER, PASSWORD = "analyst@example.com", "pm-secret-pass"
PAGE = 3
XML = "application/xml"

# independent conversion factors to canonical units (kWh, m³), exact
BTU_J = Fraction("1055.056")  # ISO Btu [J], as pint defines it
KBTU_KWH = 1000 * BTU_J / 3600000
FACTORS = {
    "kWh (thousand Watt-hours)": Fraction(1),
    "kBtu (thousand Btu)": KBTU_KWH,
    "ccf (hundred cubic feet)": Fraction("102.6") * KBTU_KWH,  # PM: 1.026 kBtu/ft³
    "therms": 100000 * BTU_J / 3600000,  # PM's therm: 100,000 Btu = 29.3071 kWh (not US_therm)
    "Gallons (US)": Fraction("0.003785411784"),
}


ACCOUNT = ET.fromstring((HERE / "account.xml").read_text()).findtext("id", "")


def _file(name: str) -> str:
    return (HERE / name).read_text()


def _bills(mid: str) -> list[tuple[date, date, ET.Element]]:
    """A meter's bills in time order: (first day, last day as written, element)."""
    out = [
        (
            date.fromisoformat(b.findtext("startDate", "")),
            date.fromisoformat(b.findtext("endDate", "")),
            b,
        )
        for b in ET.fromstring(_file(f"consumption_{mid}.xml")).iter("meterConsumption")
    ]
    return sorted(out, key=lambda t: t[0])


def pm(req: Request) -> Reply:
    good = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    if req.headers.get("Authorization") != good:
        return Reply(
            401,
            '<response status="Error"><errors><error errorNumber="-1" '
            'errorDescription="Unauthorized"/></errors></response>',
            content_type=XML,
        )
    path = req.path.removeprefix("/ws")
    parts = [p for p in path.split("/") if p]
    if path == "/account":
        return Reply(200, _file("account.xml"), content_type=XML)
    if path == f"/account/{ACCOUNT}/property/list":
        return Reply(200, _file("property_list.xml"), content_type=XML)
    if len(parts) == 2 and parts[0] == "property":
        return Reply(200, _file(f"property_{parts[1]}.xml"), content_type=XML)
    if len(parts) == 4 and parts[2:] == ["meter", "list"]:
        return Reply(200, _file(f"meter_list_{parts[1]}.xml"), content_type=XML)
    if len(parts) == 2 and parts[0] == "meter":
        return Reply(200, _file(f"meter_{parts[1]}.xml"), content_type=XML)
    if len(parts) == 3 and parts[2] == "consumptionData":
        root = ET.fromstring(_file(f"consumption_{parts[1]}.xml"))
        lo = date.fromisoformat(req.query.get("startDate", "1900-01-01"))
        hi = date.fromisoformat(req.query.get("endDate", "2999-12-31"))
        bills = [  # by START date only: a bill that began before startDate is not returned
            e
            for e in root.findall("meterConsumption")
            if lo <= date.fromisoformat(e.findtext("startDate", "")) <= hi
        ]
        page = int(req.query.get("page", 1))
        out = ET.Element("meterData")
        out.extend(bills[(page - 1) * PAGE : page * PAGE])
        if page * PAGE < len(bills):
            links = ET.SubElement(out, "links")
            q = urlencode({**req.query, "page": page + 1})
            ET.SubElement(
                links,
                "link",
                {"httpMethod": "GET", "linkDescription": "next page", "link": f"{path}?{q}"},
            )
        return Reply(200, ET.tostring(out, encoding="unicode"), content_type=XML)
    return Reply(404, '<response status="Error"/>', content_type=XML)


@pytest.fixture
def profile(serve: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    server = serve(pm)
    monkeypatch.setenv("PORTFOLIO_MANAGER_BASE_URL", server.url + "/ws")
    monkeypatch.setenv("PORTFOLIO_MANAGER_USERNAME", USER)
    monkeypatch.setenv("PORTFOLIO_MANAGER_PASSWORD", PASSWORD)
    prof = read_profile(MAPPINGS / "portfolio_manager" / "profile.toml")
    prof.server = server  # type: ignore[attr-defined]
    return prof


def expected_monthly() -> dict[tuple[str, str], Fraction]:
    """Bills prorated by days into calendar months, inclusive end dates, canonical units; a
    day shared by two bills (end date = next start date) belongs to the later bill."""
    out: dict[tuple[str, str], Fraction] = defaultdict(Fraction)
    for link in ET.fromstring(_file("meter_list_1001.xml")).iter("link"):
        mid = link.get("id", "")
        unit = ET.fromstring(_file(f"meter_{mid}.xml")).findtext("unitOfMeasure", "")
        bills = _bills(mid)
        for i, (start, last, bill) in enumerate(bills):  # last: inclusive
            if i + 1 < len(bills) and bills[i + 1][0] <= last:
                last = bills[i + 1][0] - timedelta(1)  # the shared day is the next bill's
            days = [start + timedelta(d) for d in range((last - start).days + 1)]
            per_day = Fraction(bill.findtext("usage", "")) * FACTORS[unit] / len(days)
            for d in days:
                out[(mid, d.strftime("%Y-%m"))] += per_day
    return out


def test_portfolio_manager_end_to_end_monthly_totals(profile: Any) -> None:
    results = fetch_resources(profile, since="2024-01-01", until="2024-06-01")
    for res in results.values():
        assert res.report.complete, res.report.summary()
    cons = results["consumption"]
    assert cons.report.pages == 12  # 6 meters x 2 pages (3 bills per page)
    meters = results["meters"].records
    assert meters[0]["_parent"] == {"property_id": "1001", "meter_id": "2001"}
    tables = run_pipeline(profile, {k: v.records for k, v in results.items()})
    assert tables.quarantine.empty, tables.quarantine[["rule", "reason"]].to_string()
    assert tables.assets["floor_area"].iloc[0] == 52000
    assert tables.assets["city"].iloc[0] == "Arlington"
    result = validate_tables(tables, profile)
    usage = result.accepted.usage
    got: dict[tuple[str, str], float] = defaultdict(float)
    for r in usage.itertuples():
        got[(str(r.meter_id), r.start.tz_convert("America/New_York").strftime("%Y-%m"))] += (
            r.consumption
        )
    want = expected_monthly()
    assert set(got) == set(want)
    for key, value in want.items():
        assert got[key] == pytest.approx(float(value), rel=1e-9), key
    units = dict(zip(usage["meter_id"].astype(str), usage["unit"].astype(str), strict=False))
    assert units == {
        "2001": "kWh",
        "2002": "kWh",
        "2003": "kWh",
        "2004": "m³",
        "2005": "kWh",
        "2006": "kWh",
    }


def test_portfolio_manager_inclusive_dates_both_ways(profile: Any) -> None:
    server = profile.server
    results = fetch_resources(
        profile, resources=["consumption"], since="2024-01-01", until="2024-06-01"
    )
    first = next(r for r in server.requests if r.path.endswith("/consumptionData"))
    assert first.query["endDate"] == "2024-05-31"  # the API's end is the last day included
    tables = run_pipeline(profile, {k: v.records for k, v in results.items()})
    # no meters fetched: bills keep flowing to the quarantine, never silently dropped
    assert len(tables.quarantine) > 0
    full = fetch_resources(profile, since="2024-01-01", until="2024-06-01")
    tables = run_pipeline(profile, {k: v.records for k, v in full.items()})
    u = tables.usage[tables.usage["meter_id"].astype(str) == "2001"]
    jan = u[u["start"].dt.tz_convert("America/New_York").dt.month == 1]["consumption"].sum()
    # bill 2024-01-05..2024-02-03 names its last day: 30 days, 27 of them in January
    # (read as exclusive it would be 29 days: 27/29 of the bill)
    assert jan == pytest.approx(31250.5 * 27 / 30, rel=1e-12)
    assert u["consumption"].sum() == pytest.approx(31250.5 + 29875.25 + 30110.75 + 28800.0)


def test_portfolio_manager_therms_choice_is_explicit(profile: Any) -> None:
    results = fetch_resources(profile, since="2024-01-01", until="2024-06-01")
    raw = {k: v.records for k, v in results.items()}
    mapping = profile.section("mapping")
    units = profile.section("units")
    del units["aliases"]["therms"]
    unsure = type(profile).from_dict({**profile.data, "units": units})
    tables = run_pipeline(unsure, raw, mapping=mapping)
    q = tables.quarantine
    reasons = " ".join(q["reason"].astype(str))
    assert "therms" in reasons and "US_therm" in reasons  # says what to choose
    assert "2003" not in set(tables.usage["meter_id"].astype(str))
    assert {"2001", "2002"} <= set(tables.usage["meter_id"].astype(str))  # the rest flows


def test_portfolio_manager_bad_password_is_an_auth_error(
    profile: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PORTFOLIO_MANAGER_PASSWORD", "wrong-pass-123")
    with pytest.raises(AuthError) as info:
        fetch_resources(profile, resources=["property_links"])
    assert "wrong-pass-123" not in str(info.value)


@pytest.mark.parametrize(
    ("label", "target", "factor"),
    [
        ("kWh (thousand Watt-hours)", "kWh", Fraction(1)),
        ("MWh (million Watt-hours)", "kWh", Fraction(1000)),
        ("kBtu (thousand Btu)", "kWh", KBTU_KWH),
        ("MBtu (million Btu)", "kWh", 1000 * KBTU_KWH),  # PM: MBtu is a MILLION Btu
        ("ccf (hundred cubic feet)", "m3", Fraction("2.8316846592")),
        ("cf (cubic feet)", "m3", Fraction("0.028316846592")),
        ("Mcf (million cubic feet)", "m3", Fraction("28316.846592")),  # PM: million
        ("kcf (thousand cubic feet)", "m3", Fraction("28.316846592")),
        ("Gallons (US)", "m3", Fraction("0.003785411784")),
        ("Gallons (UK)", "m3", Fraction("0.00454609")),
        ("kGal (thousand gallons) (US)", "m3", Fraction("3.785411784")),
        ("KLbs. (thousand pounds)", "kg", Fraction("453.59237")),
        ("Tonnes (metric)", "kg", Fraction(1000)),
    ],
)
def test_portfolio_manager_labels_are_built_in(label: str, target: str, factor: Fraction) -> None:
    from scaler_workbench.units import conversion_factor, resolve_unit

    expr = resolve_unit(label)  # no [units.aliases] line needed
    assert conversion_factor(expr, target) == pytest.approx(float(factor), rel=1e-12)


@pytest.mark.parametrize("label", ["therms", "tons", "Cubic Meters per Day"])
def test_portfolio_manager_ambiguous_labels_still_need_a_choice(label: str) -> None:
    from scaler_workbench.exceptions import UnitError
    from scaler_workbench.units import resolve_unit

    with pytest.raises(UnitError) as info:
        resolve_unit(label, meter="2003")
    assert "[units.aliases]" in str(info.value)
    if label == "therms":
        assert info.value.choices == ("US_therm", "therm")  # type: ignore[attr-defined]
        assert resolve_unit(label, {"therms": "US_therm"}) == "US_therm"


def test_portfolio_manager_account_is_discovered_not_hard_coded(profile: Any) -> None:
    """``GET /account`` gives the credentials' account id; the property list is asked under it
    (the fake knows no account 100), and the plain "Electric" meter type maps."""
    results = fetch_resources(profile, since="2024-01-01", until="2024-06-01")
    asked = [r.path for r in profile.server.requests]
    assert asked[0] == "/ws/account" and f"/ws/account/{ACCOUNT}/property/list" in asked
    assert ACCOUNT != "100" and not any("/account/100/" in p for p in asked)
    tables = run_pipeline(profile, {k: v.records for k, v in results.items()})
    plain = tables.meters[tables.meters["meter_id"].astype(str) == "2006"].iloc[0]
    assert (plain["meter_type"], plain["meter_subtype"]) == ("Energy", "Off-site Electricity")


def test_portfolio_manager_shared_boundary_bills_give_the_day_to_the_later_bill(
    profile: Any,
) -> None:
    """Meter 2006's bills end on the day the next one starts (PM's convention): each shared day
    is counted once, in the later bill, with no overlap finding; the last bill keeps its end."""
    results = fetch_resources(profile, since="2024-01-01", until="2024-06-01")
    tables = run_pipeline(profile, {k: v.records for k, v in results.items()})
    q = tables.quarantine
    assert not (q["rule"] == "period_overlap").any(), q[["rule", "reason"]].to_string()
    u = tables.usage[tables.usage["meter_id"].astype(str) == "2006"]
    month = u["start"].dt.tz_convert("America/New_York").dt.strftime("%Y-%m")
    got = u.groupby(month)["consumption"].sum()
    # Jan 10..Feb 8 (30 days) | Feb 9..Mar 10 (31) | Mar 11..Apr 9 (30) | Apr 10..May 9 (30)
    want = {
        "2024-01": Fraction(3100 * 22, 30),
        "2024-02": Fraction(3100 * 8, 30) + Fraction(2900 * 21, 31),
        "2024-03": Fraction(2900 * 10, 31) + Fraction(3000 * 21, 30),
        "2024-04": Fraction(3000 * 9, 30) + Fraction(2900 * 21, 30),
        "2024-05": Fraction(2900 * 9, 30),
    }
    assert set(got.index) == set(want)
    for m, v in want.items():
        assert got[m] == pytest.approx(float(v), rel=1e-12), m
    assert u["consumption"].sum() == pytest.approx(3100 + 2900 + 3000 + 2900, rel=1e-12)
    assert u["cost"].sum() == pytest.approx(403 + 377 + 390 + 377, rel=1e-12)


def test_portfolio_manager_bill_straddling_the_start_is_fetched_by_look_back(
    profile: Any,
) -> None:
    """Bills are filtered by their start date: from 2024-02-01 the bill of Jan 5..Feb 3 would
    not come back; ``lookback_days = 35`` asks from Dec 28, so February gets its 3 days."""
    results = fetch_resources(profile, resources=None, since="2024-02-01", until="2024-06-01")
    first = next(r for r in profile.server.requests if r.path.endswith("/consumptionData"))
    assert first.query["startDate"] == "2023-12-28"
    assert "90001" in {str(r["id"]) for r in results["consumption"].records}
    tables = run_pipeline(profile, {k: v.records for k, v in results.items()})
    u = tables.usage[tables.usage["meter_id"].astype(str) == "2001"]
    feb = u[u["start"].dt.tz_convert("America/New_York").dt.strftime("%Y-%m") == "2024-02"]
    want = expected_monthly()[("2001", "2024-02")]
    assert feb["consumption"].sum() == pytest.approx(float(want), rel=1e-9)
    # Feb 1..3 of the straddling bill (30 days) + Feb 4..29 of the next (31 days)
    assert want == Fraction("31250.5") * 3 / 30 + Fraction("29875.25") * 26 / 31


def test_portfolio_manager_cli_sync_with_the_shipped_profile(
    serve: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The shipped profile synced by the CLI (no Python outside the package): the account is
    discovered, shared-boundary bills resolve without findings, and the exported monthly
    totals are the fixture's."""
    import pandas as pd

    from scaler_workbench import cli

    server = serve(pm)
    monkeypatch.setenv("PORTFOLIO_MANAGER_BASE_URL", server.url + "/ws")
    monkeypatch.setenv("PORTFOLIO_MANAGER_USERNAME", USER)
    monkeypatch.setenv("PORTFOLIO_MANAGER_PASSWORD", PASSWORD)
    out = tmp_path / "out"
    args = ["sync", str(MAPPINGS / "portfolio_manager" / "profile.toml"), "--out", str(out)]
    args += ["--since", "2024-01-01", "--until", "2024-06-01", "--formats", "csv", "--json"]
    code = cli.main(args)
    captured = capsys.readouterr()
    payload = json.loads(captured.out)
    assert PASSWORD not in captured.out + captured.err
    assert payload["summary"]["fetched"]["account"] == 1
    assert code == cli.EXIT_OK, payload["summary"]["ready_to_export"]
    usage = pd.read_csv(out / "export" / "usage.csv", dtype=str)
    got: dict[tuple[str, str], float] = defaultdict(float)
    for r in usage.itertuples():
        got[(r.meter_external_id, r.start_date[:7])] += float(r.consumption)
    want = expected_monthly()
    assert set(got) == set(want)
    for key, value in want.items():
        assert got[key] == pytest.approx(float(value), rel=1e-6), key  # exported rounded
