"""Green Button (ESPI Atom): mappings/greenbutton/profile.toml + connectors/greenbutton.py.

Quirks reproduced by the loopback fake: an Atom feed whose entries (UsagePoint, MeterReading,
ReadingType, IntervalBlock) are joined only by ``link rel="up"/"related"`` hrefs on another host
than the one serving them; the ReadingTypes come LAST, pages after the blocks that need them;
``<link rel="next">`` paging inside the feed; ``published-min``/``published-max`` filters;
OAuth2 (refresh grant, rotated refresh token) and ``Authorization: Bearer``; values scaled by
``powerOfTenMultiplier``; uom codes 72 (Wh), 169 (therm: the profile chooses the US therm),
128 (US gal); cost in 1/100 000 of the currency; hourly readings across the US DST change.
``quirks.xml`` (hand-written, small): ReadingQuality estimates (8, 14+9, register 9), a
net-metered usage point (reverse deltas in tenths of Wh, one without a forward interval), a
bulkQuantity register both redundant and alone, instantaneous and net-flow ReadingTypes, and
UsageSummary billing totals repeated in every date window (one agrees, one does not).
"""

from __future__ import annotations

import base64
import itertools
import json
from collections import defaultdict
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any
from urllib.parse import urlencode
from xml.etree import ElementTree as ET
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from scaler_workbench.connectors import fetch_resources
from scaler_workbench.connectors.greenbutton import (
    ATOM,
    ESPI,
    GreenButtonConnector,
    parse_atom_entries,
)
from scaler_workbench.exceptions import AuthError, ProfileError, ResponseParseError
from scaler_workbench.pipeline import run_pipeline
from scaler_workbench.profile import Profile, read_profile
from scaler_workbench.validation import validate_tables

from .conftest import DATA, MAPPINGS, Reply, Request

FEED = (DATA / "greenbutton" / "batch.xml").read_text()
QUIRKS = (DATA / "greenbutton" / "quirks.xml").read_text()
A, E = f"{{{ATOM}}}", f"{{{ESPI}}}"
PAGE = 7  # entries per page: blocks are split over many pages
CLIENT_ID, CLIENT_SECRET = "gb-client", "gb-client-secret-123"
REFRESH = "gb-refresh-token-0"
LA = ZoneInfo("America/Los_Angeles")
XML = "application/atom+xml"
# canonical factors, exact: Wh -> kWh, US therm -> kWh, US gallon -> m³
TO_CANONICAL = {
    72: Fraction(1, 1000),
    169: Fraction("105480400") / 3600000,
    128: Fraction("0.003785411784"),
}


class GreenButtonFake:
    """The data custodian: token endpoint + Batch/Subscription feed, filtered and paged."""

    def __init__(self, feed: str = FEED) -> None:
        self.root = ET.fromstring(feed)
        self.access = ""
        self.refresh = REFRESH
        self.issued = 0

    def __call__(self, req: Request) -> Reply:
        if req.path == "/oauth/token" and req.method == "POST":
            basic = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
            form = req.form
            if req.headers.get("Authorization") != basic or form.get("refresh_token") != (
                self.refresh
            ):
                return Reply(400, {"error": "invalid_grant"})
            self.issued += 1
            self.access, self.refresh = f"gb-access-{self.issued}", f"gb-refresh-{self.issued}"
            return Reply(
                200,
                {
                    "access_token": self.access,
                    "token_type": "Bearer",
                    "expires_in": 3600,
                    "refresh_token": self.refresh,
                },
            )
        if not self.access or req.headers.get("Authorization") != f"Bearer {self.access}":
            return Reply(401, {"error": "invalid_token"})
        if req.path != "/espi/1_1/resource/Batch/Subscription/5":
            return Reply(404, "<error/>", content_type=XML)
        lo = _utc(req.query.get("published-min", "1970-01-01T00:00:00Z"))
        hi = _utc(req.query.get("published-max", "2100-01-01T00:00:00Z"))
        entries = [e for e in self.root.findall(f"{A}entry") if _wanted(e, lo, hi)]
        page = int(req.query.get("page", 1))
        out = ET.Element(f"{A}feed")
        ET.SubElement(out, f"{A}id").text = "urn:uuid:0000feed"
        if page * PAGE < len(entries):
            q = urlencode({**req.query, "page": page + 1})
            ET.SubElement(out, f"{A}link", {"rel": "next", "href": f"{req.base}{req.path}?{q}"})
        out.extend(entries[(page - 1) * PAGE : page * PAGE])
        return Reply(200, ET.tostring(out, encoding="unicode"), content_type=XML)


def _utc(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


def _wanted(entry: ET.Element, lo: int, hi: int) -> bool:
    block = entry.find(f"{A}content/{E}IntervalBlock")
    if block is None:
        return True  # UsagePoint, MeterReading, ReadingType: in every answer, as in a Batch
    return lo <= int(block.findtext(f"{E}interval/{E}start", "")) < hi


def _serve_fake(serve: Any, monkeypatch: pytest.MonkeyPatch, feed: str) -> Any:
    gb = GreenButtonFake(feed)
    server = serve(gb)
    monkeypatch.setenv("GREENBUTTON_BASE_URL", server.url + "/espi/1_1/resource")
    monkeypatch.setenv("GREENBUTTON_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("GREENBUTTON_CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("GREENBUTTON_REFRESH_TOKEN", REFRESH)
    gb.server = server
    return gb


@pytest.fixture
def fake(serve: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    return _serve_fake(serve, monkeypatch, FEED)


@pytest.fixture
def quirks_fake(serve: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The custodian serving quirks.xml: ReadingQuality estimates, a net-metered usage point
    (forward + reverse deltas, one reverse interval without a forward one), a redundant and a
    register-only usage point (bulkQuantity), instantaneous and net-flow ReadingTypes, and two
    UsageSummary entries (March agrees with the deltas, April does not)."""
    return _serve_fake(serve, monkeypatch, QUIRKS)


def _profile(fake: Any, tmp_path: Any) -> Profile:
    """The shipped profile, its OAuth2 URLs pointed at the fake and the token file at tmp."""
    prof = read_profile(MAPPINGS / "greenbutton" / "profile.toml")
    data = json.loads(json.dumps(prof.data))
    data["auth"]["token_url"] = fake.server.url + "/oauth/token"
    data["auth"]["authorize_url"] = fake.server.url + "/oauth/authorize"
    data["auth"]["token_file"] = str(tmp_path / "token.json")
    return Profile.from_dict(data, path=prof.path)


def expected() -> tuple[dict[tuple[str, str], Fraction], dict[tuple[str, str], Fraction]]:
    """Monthly canonical totals and costs per usage point, straight from the fixture XML."""
    root = ET.fromstring(FEED)
    rtype: dict[str, tuple[int, int]] = {}
    for e in root.findall(f"{A}entry"):
        rt = e.find(f"{A}content/{E}ReadingType")
        if rt is not None:
            href = e.find(f"{A}link[@rel='self']").get("href")  # type: ignore[union-attr]
            rtype[href.rsplit("/", 1)[1]] = (
                int(rt.findtext(f"{E}uom", "")),
                int(rt.findtext(f"{E}powerOfTenMultiplier", "")),
            )
    point_rt = {"1": "07", "2": "08", "3": "09"}  # MeterReading related links, read by eye
    totals: dict[tuple[str, str], Fraction] = defaultdict(Fraction)
    costs: dict[tuple[str, str], Fraction] = defaultdict(Fraction)
    for e in root.findall(f"{A}entry"):
        block = e.find(f"{A}content/{E}IntervalBlock")
        if block is None:
            continue
        up = e.find(f"{A}link[@rel='up']").get("href").split("/UsagePoint/")[1].split("/")[0]  # type: ignore[union-attr]
        uom, p10 = rtype[point_rt[up]]
        for ir in block.iter(f"{E}IntervalReading"):
            start = int(ir.findtext(f"{E}timePeriod/{E}start", ""))
            month = datetime.fromtimestamp(start, UTC).astimezone(LA).strftime("%Y-%m")
            value = Fraction(ir.findtext(f"{E}value", "")) * Fraction(10) ** p10
            totals[(up, month)] += value * TO_CANONICAL[uom]
            cost = ir.findtext(f"{E}cost")
            if cost is not None:
                costs[(up, month)] += Fraction(cost) / 100000
    return totals, costs


def test_greenbutton_end_to_end_monthly_totals(fake: Any, tmp_path: Any) -> None:
    profile = _profile(fake, tmp_path)
    results = fetch_resources(profile, since="2024-02-01", until="2024-05-01")
    report = results["readings"].report
    assert report.complete, report.summary()
    assert report.windows == 3 and report.pages > 10  # rel="next" pages were followed
    records = results["readings"].records
    first = records[0]
    assert {"usage_point_id", "start", "duration", "value", "uom", "powerOfTenMultiplier"} <= set(
        first
    )
    by_point = {r["usage_point_id"]: r for r in records}
    assert (by_point["1"]["uom"], by_point["1"]["unit"], by_point["1"]["currency"]) == (
        72,
        "Wh",
        "840",
    )
    assert (by_point["2"]["uom"], by_point["2"]["powerOfTenMultiplier"]) == (169, -3)
    assert by_point["3"]["unit"] == "US_gallon"
    # OAuth2: a refresh grant, the rotated refresh token saved, bearer on every feed request
    assert fake.issued == 1
    saved = json.loads((tmp_path / "token.json").read_text())
    assert saved.get("refresh_token") == "gb-refresh-1"
    feed_requests = [r for r in fake.server.requests if "Batch" in r.path]
    assert all(r.headers["Authorization"] == "Bearer gb-access-1" for r in feed_requests)
    assert feed_requests[0].query["published-min"] == "2024-02-01T08:00:00Z"

    tables = run_pipeline(profile, {"readings": records})
    assert tables.quarantine.empty, tables.quarantine[["rule", "reason"]].to_string()
    result = validate_tables(tables, profile)
    usage = result.accepted.usage
    got: dict[tuple[str, str], float] = defaultdict(float)
    got_cost: dict[tuple[str, str], float] = defaultdict(float)
    for r in usage.itertuples():
        key = (str(r.meter_id), r.start.tz_convert(LA).strftime("%Y-%m"))
        got[key] += r.consumption
        if r.cost == r.cost:
            got_cost[key] += r.cost
    want, want_cost = expected()
    assert set(got) == set(want) and len(want) == 9  # 3 usage points x Feb, Mar, Apr
    for key, value in want.items():
        assert got[key] == pytest.approx(float(value), rel=1e-9), key
    assert set(got_cost) >= set(want_cost)
    for key, value in want_cost.items():
        assert got_cost[key] == pytest.approx(float(value), rel=1e-9), key
    units = dict(zip(usage["meter_id"].astype(str), usage["unit"].astype(str), strict=False))
    assert units == {"1": "kWh", "2": "kWh", "3": "m³"}
    raw_units = dict(
        zip(usage["meter_id"].astype(str), usage["raw_unit"].astype(str), strict=False)
    )
    assert raw_units == {"1": "Wh", "2": "therm", "3": "US_gallon"}
    meters = tables.meters.set_index("meter_id")
    assert meters.loc["3", "meter_type"] == "Water" and meters.loc["2", "asset_id"] == "5"


def test_greenbutton_therm_needs_a_choice(fake: Any, tmp_path: Any) -> None:
    profile = _profile(fake, tmp_path)
    records = fetch_resources(profile, since="2024-03-01", until="2024-04-01")["readings"].records
    data = json.loads(json.dumps(profile.data))
    del data["units"]["aliases"]["therm"]
    unsure = Profile.from_dict(data, path=profile.path)
    tables = run_pipeline(unsure, {"readings": records})
    reasons = " ".join(tables.quarantine["reason"].astype(str))
    assert "therm" in reasons and "US_therm" in reasons  # says what to choose
    assert set(tables.usage["meter_id"].astype(str)) == {"1", "3"}  # the rest flows


def test_greenbutton_links_resolve_across_pages_and_missing_ones_are_kept(
    fake: Any, tmp_path: Any
) -> None:
    root = ET.fromstring(FEED)
    entries = parse_atom_entries(root)
    kinds = [e.kind for e in entries]
    assert kinds[-3:] == ["ReadingType"] * 3  # the fixture puts them after every block
    # drop ReadingType 09 (water): its blocks cannot be resolved, yet they are not dropped
    for e in fake.root.findall(f"{A}entry"):
        link = e.find(f"{A}link[@rel='self']")
        if link is not None and link.get("href", "").endswith("/ReadingType/09"):
            fake.root.remove(e)
    profile = _profile(fake, tmp_path)
    results = fetch_resources(profile, since="2024-03-01", until="2024-04-01")
    recs = results["readings"].records
    water = [r for r in recs if r["meter_reading_id"] == "3"]
    assert water and all(r["unit"] is None and r["powerOfTenMultiplier"] is None for r in water)
    assert results["readings"].report.records == len(recs)
    tables = run_pipeline(profile, {"readings": recs})
    q = tables.quarantine
    assert len(q) and "3" not in set(tables.usage["meter_id"].astype(str))


def test_greenbutton_other_espi_types_as_records(fake: Any, tmp_path: Any) -> None:
    profile = _profile(fake, tmp_path)
    connector = GreenButtonConnector(profile)
    try:
        spec = {
            "name": "points",
            "path": "/Batch/Subscription/5",
            "format": "xml",
            "record_path": "UsagePoint",
            "namespaces": profile.resources["readings"]["namespaces"],
        }
        recs = [r for page in connector.iter_pages(spec) for r in page]
    finally:
        connector.client.close()
    assert [(r["id"], r["ServiceCategory"]["kind"]) for r in recs] == [
        ("1", "0"),
        ("2", "1"),
        ("3", "2"),
    ]


def test_greenbutton_not_atom_is_a_parse_error() -> None:
    with pytest.raises(ResponseParseError, match="Atom"):
        parse_atom_entries(ET.fromstring("<response/>"))


def test_greenbutton_refused_refresh_token_is_an_auth_error(
    fake: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GREENBUTTON_REFRESH_TOKEN", "gb-stale-refresh")
    with pytest.raises(AuthError) as info:
        fetch_resources(_profile(fake, tmp_path), since="2024-03-01", until="2024-04-01")
    assert "gb-stale-refresh" not in str(info.value)


# ---- ReadingQuality, flowDirection, accumulationBehaviour, UsageSummary (quirks.xml) --------
ESTIMATED = {8, 9, 12}  # ESPI QualityOfReading: reference day, interpolation, projected


def _self(e: ET.Element) -> str:
    return e.find(f"{A}link[@rel='self']").get("href", "")  # type: ignore[union-attr]


def _espi_blocks(feed: str) -> tuple[dict[str, ET.Element], list[tuple[str, str, ET.Element]]]:
    """ReadingType elements by id, and (usage point, ReadingType id, IntervalBlock) per block,
    following each MeterReading's ``related`` link to its ReadingType."""
    root = ET.fromstring(feed)
    types: dict[str, ET.Element] = {}
    mr_type: dict[str, str] = {}
    for e in root.findall(f"{A}entry"):
        rt = e.find(f"{A}content/{E}ReadingType")
        if rt is not None:
            types[_self(e).rsplit("/", 1)[1]] = rt
        if e.find(f"{A}content/{E}MeterReading") is not None:
            for link in e.findall(f"{A}link[@rel='related']"):
                if "/ReadingType/" in link.get("href", ""):
                    mr_type[_self(e).rsplit("/", 1)[1]] = link.get("href", "").rsplit("/", 1)[1]
    blocks = []
    for e in root.findall(f"{A}entry"):
        block = e.find(f"{A}content/{E}IntervalBlock")
        if block is None:
            continue
        parts = _self(e).split("/")
        point, mr = parts[parts.index("UsagePoint") + 1], parts[parts.index("MeterReading") + 1]
        blocks.append((point, mr_type[mr], block))
    return types, blocks


def _month(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).astimezone(LA).strftime("%Y-%m")


def expected_quirks() -> dict[str, dict[tuple[str, str], Any]]:
    """Per (usage point, local month), straight from quirks.xml with ESPI's rules written out:
    consumption = forward (flowDirection 1) deltas (accumulationBehaviour 4), or the
    differences of bulkQuantity (1) registers for a point without deltas; redelivery = reverse
    (19) deltas of intervals that have a forward one; estimated = any quality 8, 9 or 12."""
    types, blocks = _espi_blocks(QUIRKS)
    rows = []  # (point, acc, flow, start, duration, kWh, qualities)
    for point, rid, block in blocks:
        rt = types[rid]
        acc, flow, p10 = (
            int(rt.findtext(f"{E}{tag}", ""))
            for tag in ("accumulationBehaviour", "flowDirection", "powerOfTenMultiplier")
        )
        for ir in block.iter(f"{E}IntervalReading"):
            start = int(ir.findtext(f"{E}timePeriod/{E}start", ""))
            duration = int(ir.findtext(f"{E}timePeriod/{E}duration", ""))
            kwh = Fraction(ir.findtext(f"{E}value", "")) * Fraction(10) ** p10 / 1000  # Wh
            quality = {int(q.text or "") for q in ir.iter(f"{E}quality")}
            rows.append((point, acc, flow, start, duration, kwh, quality))
    consumption: dict[tuple[str, str], Any] = defaultdict(Fraction)
    redelivery: dict[tuple[str, str], Any] = defaultdict(Fraction)
    estimated: dict[tuple[str, str], bool] = defaultdict(bool)
    forward = {(r[0], r[3]) for r in rows if (r[1], r[2]) == (4, 1)}
    for point, acc, flow, start, _, kwh, quality in rows:
        key = (point, _month(start))
        if (acc, flow) == (4, 1):
            consumption[key] += kwh
            estimated[key] |= bool(quality & ESTIMATED)
        elif (acc, flow) == (4, 19) and (point, start) in forward:
            redelivery[key] += kwh
    delta_points = {p for p, _ in forward}
    registers = sorted(
        (r[3] + r[4], r[0], r[5], r[6])
        for r in rows
        if (r[1], r[2]) == (1, 1) and r[0] not in delta_points
    )
    by_point: dict[str, list[tuple[int, Fraction, set[int]]]] = defaultdict(list)
    for end, point, kwh, quality in registers:
        by_point[point].append((end, kwh, quality))
    for point, reads in by_point.items():
        for (t0, r0, q0), (_, r1, q1) in itertools.pairwise(reads):
            key = (point, _month(t0))  # reads at local midnights: each day inside one month
            consumption[key] += r1 - r0
            estimated[key] |= bool((q0 | q1) & ESTIMATED)
    return {"consumption": consumption, "redelivery": redelivery, "estimated": estimated}


def _monthly(usage: Any, column: str) -> dict[tuple[str, str], Any]:
    return {
        (str(r.meter_id), r.start.tz_convert(LA).strftime("%Y-%m")): getattr(r, column)
        for r in usage.itertuples()
    }


def test_greenbutton_quality_reverse_flow_and_registers(quirks_fake: Any, tmp_path: Any) -> None:
    profile = _profile(quirks_fake, tmp_path)
    records = fetch_resources(
        profile, resources=["readings"], since="2024-03-01", until="2024-05-01"
    )["readings"].records
    est = {(r["meter_reading_id"], r["start"]): r["estimated"] for r in records}
    assert sum(est.values()) == 3  # quality 8; qualities 14 + 9; register quality 9
    both = next(r for r in records if r.get("quality") == "14,9")
    assert both["estimated"] is True
    assert next(r for r in records if r.get("quality") == "17")["estimated"] is False

    tables = run_pipeline(profile, {"readings": records})
    q = tables.quarantine
    rules = q.groupby(["rule", "severity"]).size().to_dict()
    assert rules == {
        ("greenbutton_reverse_unpaired", "error"): 1,  # reverse at Apr 2 00:00, no forward
        ("greenbutton_accumulation", "error"): 2,  # instantaneous W (accumulationBehaviour 12)
        ("greenbutton_flow_direction", "error"): 1,  # flowDirection 4 (net)
        ("greenbutton_register_redundant", "warning"): 2,  # point 1 has deltas too
    }, q[["rule", "reason"]].to_string()
    unpaired = q[q["rule"] == "greenbutton_reverse_unpaired"].iloc[0]
    assert unpaired["record_key"].startswith("1|2024-04-02T07:00:00")
    assert (
        "exported" in unpaired["reason"] and "no delivered (forward) reading" in unpaired["reason"]
    )
    assert "instantaneous" not in q["reason"].str.cat()  # reasons name the code, not a guess
    assert "accumulationBehaviour 12" in q["reason"].str.cat()

    result = validate_tables(tables, profile)
    usage = result.accepted.usage
    want = expected_quirks()
    got = _monthly(usage, "consumption")
    assert (
        set(got)
        == set(want["consumption"])
        == {
            ("1", "2024-03"),
            ("1", "2024-04"),
            ("2", "2024-03"),
            ("2", "2024-04"),
        }
    )
    for key, value in want["consumption"].items():
        assert got[key] == pytest.approx(float(value), rel=1e-9), key
    # reverse flow is redelivery, never consumption: 1.9 and 1.4345 kWh exported
    red = _monthly(usage, "redelivery")
    assert want["redelivery"] == {
        ("1", "2024-03"): Fraction("1.9"),
        ("1", "2024-04"): Fraction("1.4345"),
    }
    for key, value in want["redelivery"].items():
        assert red[key] == pytest.approx(float(value), rel=1e-9), key
    assert not any(red[k] == red[k] for k in red if k[0] == "2")  # no reverse flow: NaN
    flags = _monthly(usage, "estimated")
    assert {k: bool(v) for k, v in flags.items()} == {k: want["estimated"][k] for k in flags}
    assert flags[("1", "2024-03")] and not flags[("1", "2024-04")] and flags[("2", "2024-04")]
    # the register-only usage point is a meter, its readings kept and differenced
    assert "2" in set(tables.meters["meter_id"].astype(str))
    regs = tables.readings[tables.readings["meter_id"].astype(str) == "2"]
    assert len(regs) == 5 and set(regs["unit"].astype(str)) == {"kWh"}
    assert regs["value"].max() == pytest.approx(10559.0)


def test_greenbutton_usage_summaries_reconcile(quirks_fake: Any, tmp_path: Any) -> None:
    from scaler_workbench.reconciliation import (
        parse_provider_totals,
        read_reconcile_checks,
        reconcile_totals,
    )

    profile = _profile(quirks_fake, tmp_path)
    results = fetch_resources(profile, since="2024-03-01", until="2024-05-01")
    summaries = results["summaries"].records
    served = [r for r in quirks_fake.server.requests if "Batch" in r.path]
    assert results["summaries"].report.windows == 2  # the entries came in both windows ...
    assert len(summaries) == 2  # ... and are recorded once
    march = next(r for r in summaries if r["period_start"] == "2024-03-01T08:00:00Z")
    assert (march["usage_point_id"], march["period_end"], march["unit"]) == (
        "1",
        "2024-04-01T07:00:00Z",
        "Wh",
    )
    assert (march["consumption"], march["bill"], march["estimated"]) == (7450.0, 1234.5, False)
    april = next(r for r in summaries if r["period_start"] == "2024-04-01T07:00:00Z")
    assert april["consumption"] == 7800.0 and april["estimated"] is True  # 78 x 10**2, quality 8
    assert len(served) >= 4

    tables = run_pipeline(profile, {"readings": results["readings"].records})
    usage = validate_tables(tables, profile).accepted.usage
    (check,) = read_reconcile_checks(profile)
    totals = parse_provider_totals(
        check,
        summaries,
        meters=tables.meters,
        assets=tables.assets,
        profile=profile,
        default_timezone=profile.timezone,
    )
    assert (totals["note"] == "").all(), totals.to_string()
    table = reconcile_totals(usage, totals, checks=[check]).set_index("start")
    want = expected_quirks()["consumption"]
    mar, apr = pd.Timestamp("2024-03-01T08:00Z"), pd.Timestamp("2024-04-01T07:00Z")
    assert table.loc[mar, "provider"] == pytest.approx(7.45, rel=1e-12)
    assert table.loc[mar, "exported"] == pytest.approx(float(want[("1", "2024-03")]), rel=1e-9)
    assert bool(table.loc[mar, "within_tolerance"])
    assert table.loc[apr, "provider"] == pytest.approx(7.8, rel=1e-12)
    assert table.loc[apr, "exported"] == pytest.approx(float(want[("1", "2024-04")]), rel=1e-9)
    assert not bool(table.loc[apr, "within_tolerance"])  # the utility says 0.1 kWh more


def test_greenbutton_extension_options_are_checked(tmp_path: Any) -> None:
    from scaler_workbench.connectors.greenbutton import prepare_greenbutton_raw

    prof = read_profile(MAPPINGS / "greenbutton" / "profile.toml")
    data = json.loads(json.dumps(prof.data))
    data["extensions"]["greenbutton"]["register"] = "regs"  # a typo of "registers"
    with pytest.raises(ProfileError, match=r"extensions\.greenbutton"):
        prepare_greenbutton_raw(Profile.from_dict(data, path=prof.path), {"readings": []})


def test_greenbutton_reverse_flow_in_another_unit_is_not_paired() -> None:
    from scaler_workbench.connectors.greenbutton import prepare_greenbutton_raw

    prof = read_profile(MAPPINGS / "greenbutton" / "profile.toml")
    base = {"usage_point_id": "1", "meter_reading_id": "1", "start": 0, "duration": 3600}
    fwd = {**base, "value": 500, "unit": "Wh", "powerOfTenMultiplier": 0, "flowDirection": 1}
    rev = {**base, "meter_reading_id": "2", "value": 2, "unit": "VArh", "flowDirection": 19}
    rev["powerOfTenMultiplier"] = 0
    raw = {"readings": [fwd, rev]}
    out, report = prepare_greenbutton_raw(prof, raw)
    assert out["readings"] == [fwd] and raw["readings"] == [fwd, rev]  # input untouched
    assert report is not None and list(report["rule"]) == ["greenbutton_reverse_unpaired"]
    assert "'VArh'" in report["reason"].iloc[0] and out["registers"] == []


# ---- ReadingType defaultQuality: the quality of readings without a ReadingQuality ----------
DEFAULT_QUALITY = (DATA / "greenbutton" / "default_quality.xml").read_text()


def expected_estimated(feed: str, *, use_default: bool = True) -> dict[tuple[str, str], bool]:
    """Per (usage point, local month): is any reading estimated? Straight from the XML: a
    reading's qualities are its ReadingQuality codes, or (none given, ``use_default``) its
    ReadingType's defaultQuality; estimated = 8, 9 or 12. Deltas count per reading; a register
    difference is estimated when either of its two reads is (the month of the earlier read)."""
    types, blocks = _espi_blocks(feed)
    out: dict[tuple[str, str], bool] = defaultdict(bool)
    for point, rid, block in blocks:
        dq = types[rid].findtext(f"{E}defaultQuality")
        default = {int(dq)} if dq and use_default else set()
        register = types[rid].findtext(f"{E}accumulationBehaviour") == "1"
        reads = []
        for ir in block.iter(f"{E}IntervalReading"):
            start = int(ir.findtext(f"{E}timePeriod/{E}start", ""))
            quality = {int(q.text or "") for q in ir.iter(f"{E}quality")} or default
            reads.append((start, bool(quality & ESTIMATED)))
        if register:
            for (t0, e0), (_, e1) in itertools.pairwise(reads):
                out[(point, _month(t0 + 86400))] |= e0 or e1  # read at its period's end
        else:
            for start, est in reads:
                out[(point, _month(start))] |= est
    return dict(out)


def test_greenbutton_default_quality_when_a_reading_has_none(
    serve: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    fake = _serve_fake(serve, monkeypatch, DEFAULT_QUALITY)
    profile = _profile(fake, tmp_path)
    result = fetch_resources(
        profile, resources=["readings"], since="2024-03-01", until="2024-06-01"
    )["readings"]
    assert result.report.complete and result.report.pages > 1  # ReadingTypes on a later page
    records = result.records
    by = {(r["usage_point_id"], r["start"]): r for r in records}
    assert all(r["defaultQuality"] in (12, 19, 8) for r in records)
    # an explicit ReadingQuality wins over the default, both ways
    assert by[("1", 1711868400)]["quality"] == "17" and not by[("1", 1711868400)]["estimated"]
    assert by[("1", 1711976400)].get("quality") is None and by[("1", 1711976400)]["estimated"]
    assert by[("2", 1711976400)]["quality"] == "9" and by[("2", 1711976400)]["estimated"]
    assert by[("2", 1711868400)].get("quality") is None and not by[("2", 1711868400)]["estimated"]

    tables = run_pipeline(profile, {"readings": records})
    assert tables.quarantine.empty, tables.quarantine[["rule", "reason"]].to_string()
    usage = validate_tables(tables, profile).accepted.usage
    flags = {k: bool(v) for k, v in _monthly(usage, "estimated").items()}
    want = expected_estimated(DEFAULT_QUALITY)
    assert flags == want
    assert want == {
        ("1", "2024-03"): False,  # every reading says 17/19/14+17/0: actual despite default 12
        ("1", "2024-04"): True,  # one reading without a quality: default 12 (projected)
        ("1", "2024-05"): True,  # none has a quality
        ("2", "2024-03"): False,  # none has a quality: default 19 (revenue quality)
        ("2", "2024-04"): True,  # one explicit 9 (interpolated)
        ("2", "2024-05"): False,
        ("3", "2024-03"): False,  # register reads all 18
        ("3", "2024-04"): True,  # the last read has no quality: default 8
    }
    # the fallback is what makes these months estimated, not the explicit codes alone
    explicit_only = expected_estimated(DEFAULT_QUALITY, use_default=False)
    assert {k for k, v in want.items() if v != explicit_only[k]} == {
        ("1", "2024-04"),
        ("1", "2024-05"),
        ("3", "2024-04"),
    }


def expected_summaries(feed: str) -> dict[tuple[str, str, str], Fraction]:
    """(usage point, billingPeriod start, end as local dates) -> overallConsumptionLastPeriod
    [kWh], straight from the XML (uom 72 Wh)."""
    out = {}
    for e in ET.fromstring(feed).findall(f"{A}entry"):
        s = e.find(f"{A}content/{E}UsageSummary")
        if s is None:
            continue
        point = _self(e).split("/UsagePoint/")[1].split("/")[0]
        start = int(s.findtext(f"{E}billingPeriod/{E}start", ""))
        end = start + int(s.findtext(f"{E}billingPeriod/{E}duration", ""))
        m = s.find(f"{E}overallConsumptionLastPeriod")
        assert m is not None and m.findtext(f"{E}uom") == "72"
        p10 = int(m.findtext(f"{E}powerOfTenMultiplier", "0"))
        local = [datetime.fromtimestamp(t, UTC).astimezone(LA) for t in (start, end)]
        assert all(t.hour == 0 for t in local)  # billing periods from local midnight
        key = (point, local[0].strftime("%Y-%m-%d"), local[1].strftime("%Y-%m-%d"))
        out[key] = Fraction(m.findtext(f"{E}value", "")) * Fraction(10) ** p10 / 1000
    return out


def test_greenbutton_cli_sync_exports_billing_reconciliation(
    quirks_fake: Any,
    tmp_path: Any,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The real CLI sync (fetch both resources, transform, validate, commit to the state DB,
    export) puts [reconcile.billing] in reconciliation.csv and makes the run partial."""
    from scaler_workbench import cli
    from scaler_workbench.profile import to_profile_toml

    caplog.set_level("DEBUG")
    path = tmp_path / "profile.toml"
    path.write_text(to_profile_toml(_profile(quirks_fake, tmp_path).to_dict()), encoding="utf-8")
    out = tmp_path / "out"
    args = [str(path), "--out", str(out)]
    code = cli.main(["sync", *args, "--since", "2024-03-01", "--until", "2024-05-01", "--json"])
    stdout = capsys.readouterr().out
    payload = json.loads(stdout)
    summary = payload["summary"]
    # a billing total beyond tolerance (and the quirks' quarantine) make the run partial
    assert code == cli.EXIT_PARTIAL and payload["status"] == "partial"
    assert summary["fetched"] == {"readings": 27, "summaries": 2}
    assert summary["reconciliation"]["checks"] == {
        "billing": {
            "compared": 2,
            "within_tolerance": 1,
            "beyond_tolerance": 1,
            "max_relative": pytest.approx(0.1 / 7.8, rel=1e-9),
        }
    }
    assert any(
        r.startswith("reconciliation: 1 of 2") and "reconciliation.csv" in r
        for r in summary["partial_reasons"]
    )
    (mismatch,) = summary["reconciliation"]["mismatches"]
    assert (mismatch["meter_id"], mismatch["start"]) == ("1", "2024-04-01T00:00:00-07:00")

    recon = pd.read_csv(out / "export" / "reconciliation.csv", dtype=str, keep_default_na=False)
    provider = expected_summaries(QUIRKS)
    exported = expected_quirks()["consumption"]
    assert provider == {
        ("1", "2024-03-01", "2024-04-01"): Fraction("7.45"),
        ("1", "2024-04-01", "2024-05-01"): Fraction("7.8"),
    }
    rows = {(r.meter_external_id, r.period_start, r.period_end): r for r in recon.itertuples()}
    assert set(rows) == set(provider) and len(recon) == 2
    for key, total in provider.items():
        row = rows[key]
        want = exported[(key[0], key[1][:7])]  # billing period = local month here
        assert (row.check, row.unit, row.raw_unit) == ("billing", "kWh", "Wh")
        assert float(row.provider) == pytest.approx(float(total), rel=1e-12)
        assert float(row.raw_total) == pytest.approx(float(total * 1000), rel=1e-12)
        assert float(row.exported) == pytest.approx(float(want), rel=1e-9)
        assert float(row.difference) == pytest.approx(float(want - total), abs=1e-9)
        assert float(row.tolerance) == 1e-6 and row.note == ""
        within = abs(want - total) <= Fraction("1e-6") * total
        assert row.within_tolerance == ("true" if within else "false")
    assert rows[("1", "2024-03-01", "2024-04-01")].within_tolerance == "true"
    assert rows[("1", "2024-04-01", "2024-05-01")].within_tolerance == "false"
    assert float(rows[("1", "2024-04-01", "2024-05-01")].difference) == pytest.approx(-0.1)

    # re-exported from the state DB alone: the same file
    before = (out / "export" / "reconciliation.csv").read_bytes()
    assert cli.main(["export", *args]) == cli.EXIT_OK
    assert (out / "export" / "reconciliation.csv").read_bytes() == before

    # OAuth2 was used (refresh grant, bearer): none of it in what the run left behind
    assert quirks_fake.issued == 1
    assert "gb-refresh-1" in (tmp_path / "token.json").read_text()  # kept outside out/
    secrets = [
        CLIENT_SECRET,
        REFRESH,
        *(f"gb-{k}-{i}" for k in ("access", "refresh") for i in (1, 2)),
    ]
    files = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.suffix == ".sqlite" for p in files) and len(files) > 5
    for p in files:
        data = p.read_bytes()
        for secret in secrets:
            assert secret.encode() not in data, (p, secret)
    text = stdout + capsys.readouterr().out + caplog.text
    assert not [s for s in secrets if s in text]
