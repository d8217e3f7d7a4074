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
Issue 17 (fixtures written by tests/data/greenbutton/make_fixtures.py, totals by a stdlib walk
in ``_truth``): Download My Data ``RetailCustomer`` and relative ``User`` hrefs, ``xml:base``,
namespace prefixes, 32 IntervalBlocks in one entry, blocks without ReadingType, conflicting
duplicate self hrefs, gas therms x 10**-8 with LocalTimeParameters, 15-minute electric with
cost; files as a source (``read_greenbutton``, ``--from-file``, ``file://``).
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
    read_greenbutton,
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
# canonical factors, exact: Wh -> kWh, ESPI therm (100 000 ISO Btu of 1055.056 J) -> kWh,
# US gallon -> m³
TO_CANONICAL = {
    72: Fraction(1, 1000),
    169: Fraction("105505600") / 3600000,
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


def _reverse_flow_as_meter(profile: Profile) -> Profile:
    """The shipped profile switched to ``reverse_flow = "meter"``: an export meter per usage
    point with reverse flow, fed by a ``role = "redelivery"`` source over ``raw["exports"]``."""
    data = json.loads(json.dumps(profile.data))
    data["extensions"]["greenbutton"]["reverse_flow"] = "meter"
    meters = data["mapping"]["meters"]
    meters["resource"] = ["readings", "registers", "exports"]
    meters["fields"]["meter_id"] = "meter_id"
    meters["fields"]["direction"] = "direction"
    usage = data["mapping"]["usage"]
    usage["intervals"]["fields"]["meter_id"] = "meter_id"
    del usage["intervals"]["fields"]["redelivery"]
    usage["exports"] = {
        "resource": "exports",
        "kind": "intervals",
        "aggregate": "month",
        "role": "redelivery",
        "fields": {
            "meter_id": "meter_id",
            "start": {"path": "start", "format": "epoch_s"},
            "end": {"path": "end", "format": "epoch_s"},
            "redelivery": {"path": "value", "power_of_ten": "powerOfTenMultiplier"},
            "unit": "unit",
            "estimated": "estimated",
        },
    }
    data["mapping"]["readings"]["registers"]["fields"]["meter_id"] = "meter_id"
    return Profile.from_dict(data, path=profile.path)


def test_greenbutton_reverse_flow_folded_or_kept_as_its_own_meter(
    quirks_fake: Any, tmp_path: Any
) -> None:
    """One feed, the switch both ways: ``fold`` (default) puts reverse flow into the delivered
    meter's redelivery (an unpaired reverse interval quarantined); ``meter`` keeps every reverse
    interval as meter ``<usage point>:export`` with direction export, none quarantined."""
    folded_profile = _profile(quirks_fake, tmp_path)
    assert "reverse_flow" not in folded_profile.data["extensions"]["greenbutton"]  # the default
    records = fetch_resources(
        folded_profile, resources=["readings"], since="2024-03-01", until="2024-05-01"
    )["readings"].records
    reverse = [r for r in records if str(r["flowDirection"]) == "19"]
    assert len(reverse) >= 3
    want: dict[tuple[str, str], Fraction] = defaultdict(Fraction)  # every reverse interval
    for r in reverse:
        kwh = Fraction(r["value"]) * Fraction(10) ** int(r["powerOfTenMultiplier"]) / 1000
        want[(f"{r['usage_point_id']}:export", _month(r["start"]))] += kwh

    folded = run_pipeline(folded_profile, {"readings": records})
    fq = folded.quarantine
    assert (fq["rule"] == "greenbutton_reverse_unpaired").sum() == 1
    assert set(folded.meters["meter_id"].astype(str)) == {"1", "2"}
    fold_usage = validate_tables(folded, folded_profile).accepted.usage
    assert _monthly(fold_usage, "redelivery")[("1", "2024-03")] == pytest.approx(1.9)

    profile = _reverse_flow_as_meter(folded_profile)
    tables = run_pipeline(profile, {"readings": records})
    q = tables.quarantine
    assert "greenbutton_reverse_unpaired" not in set(q["rule"])
    # the other findings are the same as when folding
    assert sorted(q["rule"]) == sorted(fq.loc[fq["rule"] != "greenbutton_reverse_unpaired", "rule"])
    meters = tables.meters.set_index("meter_id")
    assert set(meters.index) == {"1", "2", "1:export"}
    assert meters.loc["1:export", "direction"] == "export"
    assert meters.loc["1", "direction"] == "import" and meters.loc["2", "direction"] == "import"
    usage = validate_tables(tables, profile).accepted.usage
    exported = usage[usage["meter_id"].astype(str) == "1:export"]
    got = _monthly(exported, "redelivery")
    assert set(got) == set(want) and len(want) == 2
    for key, value in want.items():
        assert got[key] == pytest.approx(float(value), rel=1e-9), key
    assert (exported["consumption"] == 0).all()
    # the delivered meter keeps its consumption and has no redelivery any more
    delivered = usage[usage["meter_id"].astype(str) == "1"]
    fold_delivered = fold_usage[fold_usage["meter_id"].astype(str) == "1"]
    assert _monthly(delivered, "consumption") == pytest.approx(
        _monthly(fold_delivered, "consumption")
    )
    assert delivered["redelivery"].isna().all()
    # every reading accounted for: intervals summed into usage rows, register readings kept,
    # readings set aside (one quarantine row each)
    intervals = tables.usage[tables.usage["source"].astype(str) != "registers"]
    assert int(intervals["n_intervals"].sum()) + len(tables.readings) + len(q) == len(records)


def test_greenbutton_reverse_flow_switch_is_checked() -> None:
    from scaler_workbench.connectors.greenbutton import prepare_greenbutton_raw

    prof = read_profile(MAPPINGS / "greenbutton" / "profile.toml")
    data = json.loads(json.dumps(prof.data))
    data["extensions"]["greenbutton"]["reverse_flow"] = "meters"
    with pytest.raises(ProfileError, match=r"did you mean 'meter'") as err:
        prepare_greenbutton_raw(Profile.from_dict(data, path=prof.path), {"readings": []})
    assert err.value.key == "extensions.greenbutton.reverse_flow"


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
    assert (march["customer_id"], march["subscription_id"]) == ("5", "5")
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


# ---- issue 17: Green Button as utilities publish it (fixtures from make_fixtures.py) ---------
GB = DATA / "greenbutton"
#: each fixture's customer zone, as make_fixtures.py wrote its LocalTimeParameters
FIXTURES = {
    "dmd_retailcustomer.xml": "America/Los_Angeles",
    "user_relative.xml": "America/Los_Angeles",
    "xml_base.xml": "America/Los_Angeles",
    "multi_block.xml": "America/Los_Angeles",
    "block_only.xml": "America/Los_Angeles",
    "duplicate_hrefs.xml": "America/Los_Angeles",
    "gas_daily_therms.xml": "America/New_York",
    "electric_15min_cost.xml": "America/Los_Angeles",
}
#: ESPI uom -> kWh, exact: 72 Wh; 169 therm = 100 000 Btu (ISO, 1055.056 J)
KWH = {72: Fraction(1, 1000), 169: Fraction("105505600") / 3600000}


def _segment(href: str, name: str) -> str | None:
    parts = href.split("/")
    hits = [i for i, p in enumerate(parts[:-1]) if p == name]
    return parts[hits[-1] + 1] if hits else None


def _truth(path: Any, zone: str) -> dict[str, Any]:
    """What an honest reader exports, by a plain stdlib walk (no package code): per (usage
    point, local month) kWh and cost of every IntervalReading of every IntervalBlock child of
    every entry, following MeterReading -> ReadingType by href segments; readings whose
    MeterReading/ReadingType is missing or sent twice with different content are counted as
    left out, never summed."""
    root = ET.parse(path).getroot()
    tz = ZoneInfo(zone)
    mrs: dict[tuple[str, str], set[bytes]] = defaultdict(set)
    mr_type: dict[tuple[str, str], str] = {}
    rts: dict[str, set[bytes]] = defaultdict(set)
    rt_of: dict[str, ET.Element] = {}
    blocks = []
    for e in root.iter(f"{A}entry"):
        links = {(lk.get("rel"), lk.get("href", "")) for lk in e.findall(f"{A}link")}
        me = next(h for r, h in links if r == "self")
        content = e.find(f"{A}content")
        assert content is not None
        children = list(content)
        kind = children[0].tag.split("}")[1]
        if kind == "MeterReading":
            key = (_segment(me, "UsagePoint"), _segment(me, "MeterReading"))
            mrs[key].add(ET.tostring(children[0]) + repr(sorted(links)).encode())
            for r, h in links:
                if r == "related" and "ReadingType" in h:
                    mr_type[key] = h.rstrip("/").rsplit("/", 1)[1]
        elif kind == "ReadingType":
            rid = me.rstrip("/").rsplit("/", 1)[1]
            rts[rid].add(ET.tostring(children[0]))
            rt_of[rid] = children[0]
        elif kind == "IntervalBlock":
            up = next(h for r, h in links if r == "up")
            blocks.append(((_segment(up, "UsagePoint"), _segment(up, "MeterReading")), children))
    kwh: dict[tuple[str, str], Fraction] = defaultdict(Fraction)
    cost: dict[tuple[str, str], Fraction] = defaultdict(Fraction)
    left_out = 0
    for key, children in blocks:
        rid = mr_type.get(key) if len(mrs.get(key, ())) == 1 else None
        ok = rid is not None and len(rts.get(rid, ())) == 1
        for child in children:
            for ir in child.iter(f"{E}IntervalReading"):
                if not ok:
                    left_out += 1
                    continue
                rt = rt_of[str(rid)]
                start = int(ir.findtext(f"{E}timePeriod/{E}start", ""))
                month = datetime.fromtimestamp(start, UTC).astimezone(tz).strftime("%Y-%m")
                p10 = int(rt.findtext(f"{E}powerOfTenMultiplier", "0"))
                value = Fraction(ir.findtext(f"{E}value", "")) * Fraction(10) ** p10
                kwh[(str(key[0]), month)] += value * KWH[int(rt.findtext(f"{E}uom", ""))]
                c = ir.findtext(f"{E}cost")
                if c is not None:
                    cost[(str(key[0]), month)] += Fraction(c) / 100000
    return {"kwh": dict(kwh), "cost": dict(cost), "left_out": left_out}


def _shipped(*, zone: bool = True) -> Profile:
    """mappings/greenbutton/profile.toml as shipped (``zone=False``: its [provider] timezone
    removed, so the feed's LocalTimeParameters give the zone)."""
    prof = read_profile(MAPPINGS / "greenbutton" / "profile.toml")
    if zone:
        return prof
    data = json.loads(json.dumps(prof.data))
    del data["provider"]["timezone"]
    return Profile.from_dict(data, path=prof.path)


def _cents(value: Any) -> float:
    """A monthly cost as exported: the exact total rounded half-even to the cent."""
    return float(round(Fraction(value), 2))


def _exported_months(export: Any) -> tuple[dict[tuple[str, str], float], ...]:
    usage = pd.read_csv(export / "usage.csv", dtype=str, keep_default_na=False)
    kwh: dict[tuple[str, str], float] = defaultdict(float)
    cost: dict[tuple[str, str], float] = defaultdict(float)
    for r in usage.itertuples():
        assert r.unit == "kWh"
        key = (r.meter_external_id, r.start_date[:7])
        kwh[key] += float(r.consumption)
        if r.cost:
            cost[key] += float(r.cost)
    return dict(kwh), dict(cost)


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_greenbutton_fixture_monthly_totals_through_a_file_sync(name: str, tmp_path: Any) -> None:
    """Each structure, synced from its file by the shipped profile through run_sync (fetch,
    pipeline, validation, state, export): exported monthly totals = the stdlib walk's."""
    from scaler_workbench.sync import run_sync

    zone = FIXTURES[name]
    profile = _shipped(zone=zone == "America/Los_Angeles")  # the gas feed: zone from the feed
    result = run_sync(profile, out=tmp_path, from_file=GB / name, formats=("csv",))
    export = tmp_path / "export"
    kwh, cost = _exported_months(export)
    want = _truth(GB / name, zone)
    assert want["kwh"] and set(kwh) == set(want["kwh"]), (sorted(kwh), sorted(want["kwh"]))
    for key, value in want["kwh"].items():
        assert kwh[key] == pytest.approx(float(value), rel=1e-9), key
    assert set(cost) == set(want["cost"])
    for key, value in want["cost"].items():
        # exported money is rounded to the currency's minor unit (USD: cents), docs/cli.md
        assert cost[key] == pytest.approx(_cents(value), abs=1e-9), key
    assets = pd.read_csv(export / "assets.csv", dtype=str)
    assert set(assets["timezone"]) == {zone}
    # what the walk leaves out is quarantined, one row per reading, never summed
    quarantine = pd.read_csv(export / "quarantine.csv", dtype=str)
    left = quarantine[quarantine["rule"].str.startswith("greenbutton_")]
    assert len(left) == want["left_out"]
    assert result.status == ("partial" if want["left_out"] else "success")


def test_greenbutton_multi_block_entry_keeps_every_reading(
    serve: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """Item 1: one entry whose content holds 32 IntervalBlocks (768 hourly readings over
    January and February) keeps all of them, from the API and from the file."""
    text = (GB / "multi_block.xml").read_text()
    (entry,) = [e for e in parse_atom_entries(ET.fromstring(text)) if e.kind == "IntervalBlock"]
    assert len(entry.resources) == 32 and entry.content is entry.resources[0]
    fake = _serve_fake(serve, monkeypatch, text)
    got = fetch_resources(
        _profile(fake, tmp_path), resources=["readings"], since="2024-01-01", until="2024-03-01"
    )["readings"].records
    assert len(got) == 768 == len({r["start"] for r in got})
    assert len(read_greenbutton(GB / "multi_block.xml")) == 768
    months = {_month(r["start"]) for r in got}
    assert months == {"2024-01", "2024-02"}


def test_greenbutton_asset_from_every_href_layout() -> None:
    """Item 2: the asset is the customer id before /UsagePoint/ in every layout, never a
    segment of the URL the feed came from."""
    layouts = {
        "electric_15min_cost.xml": ({"5"}, {"5"}),  # Batch: .../Subscription/5/UsagePoint/1
        "dmd_retailcustomer.xml": ({"9b6c7063"}, {None}),  # .../RetailCustomer/9b6c7063/...
        "user_relative.xml": ({"1"}, {None}),  # relative User/1/UsagePoint/1, no xml:base
        "xml_base.xml": ({"42", "77"}, {None}),  # xml:base of the feed, and of one entry
    }
    for name, (customers, subscriptions) in layouts.items():
        recs = read_greenbutton(GB / name)
        assert {r["customer_id"] for r in recs} == customers, name
        assert {r["subscription_id"] for r in recs} == subscriptions, name
        assert all(r["unit"] == "Wh" and r["reading_type_id"] for r in recs), name
    xb = read_greenbutton(GB / "xml_base.xml")
    assert {r["usage_point_href"] for r in xb} == {
        "/DataCustodian/espi/1_1/resource/RetailCustomer/42/UsagePoint/1",
        "/DataCustodian/espi/1_1/resource/RetailCustomer/77/UsagePoint/2",
    }
    assert {(r["usage_point_id"], r["powerOfTenMultiplier"]) for r in xb} == {("1", 0), ("2", 1)}


def test_greenbutton_relative_hrefs_are_not_joined_to_the_request_url(
    serve: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """Item 2: served from .../Batch/Subscription/5, relative ``User/1/...`` hrefs stay the
    feed's own (the old join made the asset "User")."""
    fake = _serve_fake(serve, monkeypatch, (GB / "user_relative.xml").read_text())
    profile = _profile(fake, tmp_path)
    recs = fetch_resources(profile, resources=["readings"], since="2024-03-01", until="2024-05-01")[
        "readings"
    ].records
    assert len(recs) == 14 * 24
    assert {(r["customer_id"], r["subscription_id"], r["usage_point_id"]) for r in recs} == {
        ("1", None, "1")
    }
    tables = run_pipeline(profile, {"readings": recs})
    assert list(tables.assets["asset_id"].astype(str)) == ["1"]
    assert tables.quarantine.empty, tables.quarantine[["rule", "reason"]].to_string()


def test_greenbutton_block_only_readings_are_quarantined_with_a_reason() -> None:
    """Item 3: IntervalBlocks without MeterReading/ReadingType are quarantined with a
    reason, the rest goes on; every field is in every record (a mapping of currency never
    fails); validation runs clean of TypeError."""
    profile = _shipped()
    recs = read_greenbutton(GB / "block_only.xml")
    assert len({frozenset(r) for r in recs}) == 1  # the same keys on every record
    alone = [r for r in recs if r["usage_point_id"] == "2"]
    assert len(alone) == 8 * 24 and all(r["currency"] is None for r in alone)
    tables = run_pipeline(profile, {"readings": recs})
    q = tables.quarantine
    assert set(q["rule"]) == {"greenbutton_no_reading_type"} and len(q) == len(alone)
    assert q["reason"].str.contains("no ReadingType: unit and multiplier unknown").all()
    assert set(tables.usage["meter_id"].astype(str)) == {"1"}
    result = validate_tables(tables, profile)
    assert result.errors.empty and len(result.accepted.usage) == 2  # May, June
    # the mapping without its currency line (as the issue tried) runs too
    data = json.loads(json.dumps(profile.data))
    del data["mapping"]["usage"]["intervals"]["fields"]["currency"]
    bare = Profile.from_dict(data, path=profile.path)
    assert validate_tables(run_pipeline(bare, {"readings": recs}), bare).errors.empty


def test_greenbutton_conflicting_duplicate_hrefs_are_findings_naming_both() -> None:
    """Item 4: a ReadingType and a MeterReading sent twice under one self href with other
    content: their readings are quarantined naming both entries; an identical repeat (as a
    Batch feed sends in every window) is no conflict."""
    recs = read_greenbutton(GB / "duplicate_hrefs.xml")
    tables = run_pipeline(_shipped(), {"readings": recs})
    q = tables.quarantine
    assert set(q["rule"]) == {"greenbutton_duplicate_href"}
    by_point = q.groupby(q["record_key"].str.split("|").str[0])["reason"].first()
    assert set(by_point.index) == {"1", "2"} and len(q) == 2 * 7 * 24
    rt, mr = by_point["1"], by_point["2"]
    assert "ReadingType /DataCustodian/espi/1_1/resource/ReadingType/1" in rt
    assert "urn:uuid:dup-0005" in rt and "urn:uuid:dup-0006" in rt
    assert "'Delta'" in rt and "'Register'" in rt and "neither is chosen" in rt
    assert "MeterReading" in mr and "'Meter reading A'" in mr and "'Meter reading B'" in mr
    quarantined = [json.loads(s) for s in q["record"]]
    assert all(r["unit"] is None and r["powerOfTenMultiplier"] is None for r in quarantined)
    assert set(tables.usage["meter_id"].astype(str)) == {"3"}


def test_greenbutton_local_time_parameters_decoded() -> None:
    """Item 5: dstStartRule/dstEndRule bit fields -> dates, UTC instants, POSIX TZ, zone."""
    from scaler_workbench.connectors.greenbutton import DstRule, LocalTime

    start, end = DstRule.decode("360E2000"), DstRule.decode("B40E2000")
    assert start is not None and end is not None
    assert (start.month, start.operator, start.weekday, start.hour) == (3, 3, 7, 2)
    assert start.posix() == "M3.2.0/2" and end.posix() == "M11.1.0/2"
    assert [start.day(y).isoformat() for y in (2023, 2024)] == ["2023-03-12", "2024-03-10"]
    assert end.day(2024).isoformat() == "2024-11-03"
    assert DstRule.decode("FFFFFFFF") is None
    pacific = LocalTime.from_record(
        {
            "tzOffset": -28800,
            "dstOffset": 3600,
            "dstStartRule": "360E2000",
            "dstEndRule": "B40E2000",
        }
    )
    assert pacific is not None and pacific.posix() == "<-08>8<-07>,M3.2.0/2,M11.1.0/2"
    # 02:00 PST and 02:00 PDT
    assert pacific.transitions(2024) == (_utc("2024-03-10T10:00:00Z"), _utc("2024-11-03T09:00:00Z"))
    assert pacific.zone([2023, 2024]) == "America/Los_Angeles"
    assert not pacific.agrees_with("America/Denver", [2024])
    eastern = LocalTime.from_record({**pacific_fields(-18000)})
    assert eastern is not None and eastern.zone([2024]) == "America/New_York"
    arizona = LocalTime.from_record(
        {"tzOffset": -25200, "dstOffset": 0, "dstStartRule": "FFFFFFFF", "dstEndRule": "FFFFFFFF"}
    )
    assert (
        arizona is not None
        and arizona.posix() == "<-07>7"
        and arizona.zone([2024]) == ("America/Phoenix")
    )
    # southern hemisphere: 1st Sunday of October 02:00 to 1st Sunday of April 03:00 (daylight)
    sydney = LocalTime(
        36000,
        3600,
        DstRule(month=10, operator=2, day_of_month=0, weekday=7, hour=2, seconds=0),
        DstRule(month=4, operator=2, day_of_month=0, weekday=7, hour=3, seconds=0),
    )
    assert sydney.agrees_with("Australia/Sydney", [2023, 2024])
    assert not sydney.agrees_with("Australia/Brisbane", [2024])
    # a clock outside PREFERRED_ZONES: last Sundays of March 02:00 / October 03:00, UTC+1
    cet = LocalTime.from_record(
        {"tzOffset": 3600, "dstOffset": 3600, "dstStartRule": "3E0E2000", "dstEndRule": "AE0E3000"}
    )
    assert cet is not None and cet.posix() == "<+01>-1<+02>,M3.5.0/2,M10.5.0/3"
    found = cet.zone([2024])
    assert found is not None and cet.agrees_with("Europe/Berlin", [2024])
    assert found == "Europe/Paris"  # issue 15: the name people use there, not Africa/Ceuta
    # a UK clock: UTC+0, last Sundays of March 01:00 / October 02:00
    uk = LocalTime(0, 3600, DstRule.decode("3E0E1000"), DstRule.decode("AE0E2000"))
    assert uk.zone([2024]) == "Europe/London" and not uk.agrees_with("Europe/Paris", [2024])
    assert ZoneInfo(found).utcoffset(datetime(2024, 7, 1)) == ZoneInfo("Europe/Berlin").utcoffset(
        datetime(2024, 7, 1)
    )


def pacific_fields(tz: int) -> dict[str, Any]:
    return {"tzOffset": tz, "dstOffset": 3600, "dstStartRule": "360E2000", "dstEndRule": "B40E2000"}


def test_greenbutton_local_time_disagreeing_with_the_profile_zone_is_an_error() -> None:
    """Item 5, issue 15 item 10: the Eastern gas feed under the shipped (Pacific) profile is a
    TimezoneMismatchError (a profile error, exit 2) before aggregation, naming the asset, its
    usage point, both clocks and the fix; nothing is cut into the wrong months."""
    from scaler_workbench.cli import EXIT_USAGE, exit_code_for
    from scaler_workbench.exceptions import TimezoneMismatchError

    recs = read_greenbutton(GB / "gas_daily_therms.xml")
    assert {(r["tzOffset"], r["dstStartRule"]) for r in recs} == {(-18000, "360E2000")}
    assert len(recs) == 91
    with pytest.raises(TimezoneMismatchError) as info:
        run_pipeline(_shipped(), {"readings": recs})
    exc = info.value
    assert exit_code_for(exc) == EXIT_USAGE
    customers = sorted({str(r["customer_id"]) for r in recs})
    points = sorted({str(r["usage_point_id"]) for r in recs})
    assert exc.assets == customers and exc.asset == customers[0]
    assert (exc.zone, exc.stated) == ("America/Los_Angeles", "America/New_York")
    reason = str(exc)
    assert f"asset {customers[0]!r}" in reason and all(p in reason for p in points)
    assert "America/Los_Angeles" in reason and "America/New_York" in reason
    assert "<-05>5<-04>,M3.2.0/2,M11.1.0/2" in reason and "[provider] timezone" in reason
    # a constant zone of the sites is the profile's zone too, and wins over [provider]
    data = json.loads(json.dumps(_shipped().data))
    data["mapping"]["assets"]["fields"]["timezone"] = {"const": "America/New_York"}
    const = Profile.from_dict(data, path=_shipped().path)
    assert run_pipeline(const, {"readings": recs}).quarantine.empty
    # the profile leaving the zone out takes the feed's
    tables = run_pipeline(_shipped(zone=False), {"readings": recs})
    assert tables.quarantine.empty
    assert set(tables.assets["timezone"].astype(str)) == {"America/New_York"}


def test_read_greenbutton_equals_the_api_route(fake_15: Any, tmp_path: Any) -> None:
    """Item 6: the file (path or open buffer) gives the API route's records."""
    api = fetch_resources(
        _profile(fake_15, tmp_path), resources=["readings"], since="2024-02-01", until="2024-04-01"
    )["readings"].records
    path = GB / "electric_15min_cost.xml"
    key = lambda r: (r["usage_point_id"], r["start"])  # noqa: E731
    assert len(api) == 16 * 96 - 4  # 15 minutes over 16 days, DST day 23 h
    assert sorted(read_greenbutton(path), key=key) == sorted(api, key=key)
    with path.open("rb") as buffer:
        assert sorted(read_greenbutton(buffer), key=key) == sorted(api, key=key)
    march = read_greenbutton(path, since="2024-03-01", until="2024-04-01", timezone=LA.key)
    assert march == [r for r in read_greenbutton(path) if _month(r["start"]) == "2024-03"]


@pytest.fixture
def fake_15(serve: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    return _serve_fake(serve, monkeypatch, (GB / "electric_15min_cost.xml").read_text())


def test_greenbutton_cli_sync_from_file_with_the_shipped_profile(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Must show: ``scaler-workbench sync mappings/greenbutton/profile.toml --from-file
    DMD.xml``: no server, no credentials, no edit of the profile."""
    from scaler_workbench import cli

    for var in ("GREENBUTTON_BASE_URL", "GREENBUTTON_CLIENT_ID", "GREENBUTTON_CLIENT_SECRET"):
        monkeypatch.delenv(var, raising=False)
    out = tmp_path / "out"
    dmd = GB / "dmd_retailcustomer.xml"
    shipped = str(MAPPINGS / "greenbutton" / "profile.toml")
    args = ["sync", shipped, "--out", str(out), "--from-file", str(dmd), "--formats", "csv"]
    assert cli.main([*args, "--json"]) == cli.EXIT_OK
    payload = json.loads(capsys.readouterr().out)
    assert payload["summary"]["fetched"] == {"readings": 479, "summaries": 0}
    kwh, _ = _exported_months(out / "export")
    want = _truth(dmd, "America/Los_Angeles")["kwh"]
    assert set(kwh) == set(want) == {("01", "2024-02"), ("01", "2024-03")}
    for k, v in want.items():
        assert kwh[k] == pytest.approx(float(v), rel=1e-9)
    assets = pd.read_csv(out / "export" / "assets.csv", dtype=str)
    assert list(assets["external_id"]) == ["9b6c7063"]
    # a missing file and a profile whose connector reads no files are usage errors
    assert cli.main(["sync", shipped, "--out", str(out), "--from-file", "nope.xml"]) == 2
    assert "does not exist" in capsys.readouterr().err
    sandbox = str(MAPPINGS / "sandbox" / "profile.toml")
    assert cli.main(["sync", sandbox, "--out", str(out), "--from-file", str(dmd)]) == 2
    assert "reads the API only" in capsys.readouterr().err


def test_greenbutton_batch_fixture_syncs_over_loopback(
    fake_15: Any, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Must show: the Batch fixture (15-minute, cost) synced by the CLI from the loopback
    data custodian with the shipped profile (only its OAuth endpoints pointed at the fake)."""
    from scaler_workbench import cli
    from scaler_workbench.profile import to_profile_toml

    path = tmp_path / "profile.toml"
    path.write_text(to_profile_toml(_profile(fake_15, tmp_path).to_dict()), encoding="utf-8")
    out = tmp_path / "out"
    args = ["sync", str(path), "--out", str(out), "--since", "2024-02-01", "--until", "2024-04-01"]
    assert cli.main([*args, "--formats", "csv", "--json"]) == cli.EXIT_OK
    assert json.loads(capsys.readouterr().out)["summary"]["fetched"]["readings"] == 16 * 96 - 4
    kwh, cost = _exported_months(out / "export")
    want = _truth(GB / "electric_15min_cost.xml", "America/Los_Angeles")
    assert set(kwh) == set(want["kwh"]) == set(cost) == {("1", "2024-02"), ("1", "2024-03")}
    for k, v in want["kwh"].items():
        assert kwh[k] == pytest.approx(float(v), rel=1e-9)
        assert cost[k] == pytest.approx(_cents(want["cost"][k]), abs=1e-9)
    usage = pd.read_csv(out / "export" / "usage.csv", dtype=str)
    assert set(usage["currency"]) == {"USD"}


def test_greenbutton_file_base_url_needs_no_server_or_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Item 6: GREENBUTTON_BASE_URL=file:///.../FILE.xml points the shipped profile at a file:
    every resource is read from it, no request is sent and no OAuth secret is needed."""
    from scaler_workbench.connectors.client import Client

    path = GB / "electric_15min_cost.xml"
    monkeypatch.setenv("GREENBUTTON_BASE_URL", path.resolve().as_uri())
    for var in ("GREENBUTTON_CLIENT_ID", "GREENBUTTON_CLIENT_SECRET", "GREENBUTTON_REFRESH_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    profile = _shipped()
    client = Client(profile)
    try:
        results = fetch_resources(profile, since="2024-03-01", until="2024-04-01", client=client)
    finally:
        client.close()
    assert client.requests_sent == 0 and results["readings"].report.complete
    got = results["readings"].records
    assert got == read_greenbutton(path, since="2024-03-01", until="2024-04-01", timezone=LA.key)
    assert {_month(r["start"]) for r in got} == {"2024-03"} and results["summaries"].records == []
    # the same as an environment of the profile: [environments.file] base_url = "file:///..."
    monkeypatch.delenv("GREENBUTTON_BASE_URL")
    data = json.loads(json.dumps(profile.data))
    data["environments"]["file"] = {"base_url": path.resolve().as_uri()}
    data["provider"]["environment"] = "file"
    in_toml = Profile.from_dict(data, path=profile.path)
    assert fetch_resources(in_toml, resources=["readings"])["readings"].records == (
        read_greenbutton(path)
    )


def test_greenbutton_duplicate_hrefs_across_pages_of_the_api(
    serve: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """Item 4 over loopback: the two copies come on different pages (7 entries a page), after
    blocks already read; the conflict still reaches every dependent reading, as from the file."""
    fake = _serve_fake(serve, monkeypatch, (GB / "duplicate_hrefs.xml").read_text())
    result = fetch_resources(
        _profile(fake, tmp_path), resources=["readings"], since="2024-06-01", until="2024-08-01"
    )["readings"]
    assert result.report.pages > 3
    key = lambda r: (r["usage_point_id"], r["start"])  # noqa: E731
    api = sorted(result.records, key=key)
    assert api == sorted(read_greenbutton(GB / "duplicate_hrefs.xml"), key=key)
    marked = {r["usage_point_id"] for r in api if r["conflict"]}
    assert marked == {"1", "2"} and all(
        r["conflict"] is None for r in api if r["usage_point_id"] == "3"
    )


def test_read_greenbutton_bad_files_are_parse_errors(tmp_path: Any) -> None:
    """A file that is not XML, or XML that is not an Atom feed, or none at all: a
    ResponseParseError naming the file, with a hint; never an ElementTree traceback."""
    broken = tmp_path / "Download.xml"
    broken.write_text("<feed xmlns='http://www.w3.org/2005/Atom'><entry>", encoding="utf-8")
    with pytest.raises(ResponseParseError, match="not well-formed XML") as info:
        read_greenbutton(broken)
    assert info.value.hint and "Download.xml" in str(info.value)
    other = tmp_path / "other.xml"
    other.write_text("<usage><reading/></usage>", encoding="utf-8")
    with pytest.raises(ResponseParseError, match="expected an Atom feed"):
        read_greenbutton(other)
    with pytest.raises(ResponseParseError, match="cannot read") as info:
        read_greenbutton(tmp_path / "missing.xml")
    assert info.value.hint


def test_source_file_profile_is_a_copy_reading_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """Item 6: the file profile is a copy (the shipped one untouched) whose environment, in
    the object and in its TOML, reads the file; base_url_env no longer overrides it."""
    from scaler_workbench.connectors.resources import source_file_profile

    monkeypatch.setenv("GREENBUTTON_BASE_URL", "https://elsewhere.example/espi")
    shipped = _shipped()
    path = GB / "dmd_retailcustomer.xml"
    copy = source_file_profile(shipped, path)
    assert copy.base_url() == path.resolve().as_uri()
    assert copy.to_dict()["environments"]["production"]["base_url"] == path.resolve().as_uri()
    assert Profile.from_dict(copy.to_dict()).base_url() == path.resolve().as_uri()
    assert shipped.base_url() == "https://elsewhere.example/espi"


def test_greenbutton_cli_zone_mismatch_exits_2_and_commits_nothing(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 15 item 10: the Eastern feed under the shipped (Pacific) profile, through the CLI:
    exit 2 (a profile error), the error line names the asset and both zones, no export."""
    from scaler_workbench import cli

    for var in ("GREENBUTTON_BASE_URL", "GREENBUTTON_CLIENT_ID", "GREENBUTTON_CLIENT_SECRET"):
        monkeypatch.delenv(var, raising=False)
    out = tmp_path / "out"
    feed = GB / "gas_daily_therms.xml"
    shipped = str(MAPPINGS / "greenbutton" / "profile.toml")
    args = ["sync", shipped, "--out", str(out), "--from-file", str(feed), "--formats", "csv"]
    assert cli.main([*args, "--json"]) == cli.EXIT_USAGE
    payload = json.loads(capsys.readouterr().out)
    assert payload["error"] == "TimezoneMismatchError" and payload["exit_code"] == 2
    customer = str(read_greenbutton(feed)[0]["customer_id"])
    assert f"asset {customer!r}" in payload["message"]
    assert "America/New_York" in payload["message"] and "America/Los_Angeles" in payload["message"]
    assert not (out / "export").exists()
