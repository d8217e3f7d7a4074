"""Green Button (ESPI Atom): mappings/greenbutton/profile.toml + connectors/greenbutton.py.

Quirks reproduced by the loopback fake: an Atom feed whose entries (UsagePoint, MeterReading,
ReadingType, IntervalBlock) are joined only by ``link rel="up"/"related"`` hrefs on another host
than the one serving them; the ReadingTypes come LAST, pages after the blocks that need them;
``<link rel="next">`` paging inside the feed; ``published-min``/``published-max`` filters;
OAuth2 (refresh grant, rotated refresh token) and ``Authorization: Bearer``; values scaled by
``powerOfTenMultiplier``; uom codes 72 (Wh), 169 (therm: the profile chooses the US therm),
128 (US gal); cost in 1/100 000 of the currency; hourly readings across the US DST change.
"""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any
from urllib.parse import urlencode
from xml.etree import ElementTree as ET
from zoneinfo import ZoneInfo

import pytest

from scaler_workbench.connectors import fetch_resources
from scaler_workbench.connectors.greenbutton import (
    ATOM,
    ESPI,
    GreenButtonConnector,
    parse_atom_entries,
)
from scaler_workbench.exceptions import AuthError, ResponseParseError
from scaler_workbench.profile import Profile, read_profile
from scaler_workbench.transform import run_pipeline
from scaler_workbench.validation import validate_tables

from .conftest import DATA, MAPPINGS, Reply, Request

FEED = (DATA / "greenbutton" / "batch.xml").read_text()
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

    def __init__(self) -> None:
        self.root = ET.fromstring(FEED)
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


@pytest.fixture
def fake(serve: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Any:
    gb = GreenButtonFake()
    server = serve(gb)
    monkeypatch.setenv("GREENBUTTON_BASE_URL", server.url + "/espi/1_1/resource")
    monkeypatch.setenv("GREENBUTTON_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("GREENBUTTON_CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("GREENBUTTON_REFRESH_TOKEN", REFRESH)
    gb.server = server
    return gb


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
