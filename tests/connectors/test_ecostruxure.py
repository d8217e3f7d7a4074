"""EcoStruxure provider: parsers on recorded responses, and the full flow over loopback HTTP."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests

from scaler_workbench.clock import FakeClock
from scaler_workbench.connectors.client import Client
from scaler_workbench.connectors.ecostruxure import (
    EcoStruxureOptions,
    build_ecostruxure_tables,
    canonical_score_value,
    get_ecostruxure_meters,
    get_ecostruxure_projects,
    get_ecostruxure_sites,
    get_ecostruxure_timeseries,
    get_performance_scores,
    parse_ecostruxure_meters,
    parse_ecostruxure_sites,
    parse_ecostruxure_timeseries,
    parse_problem_details,
    post_performance_scores,
    prepare_ecostruxure_raw,
    register_site,
    validate_performance_scores,
)
from scaler_workbench.connectors.resources import fetch_resources
from scaler_workbench.exceptions import (
    AuthError,
    RequestRejectedError,
    ResponseParseError,
)
from scaler_workbench.profile import Profile, read_profile
from scaler_workbench.sandbox.ecostruxure import EcoStruxureSandbox, profile_for

DATA = Path(__file__).parents[1] / "data" / "ecostruxure"
PROFILE = Path(__file__).parents[2] / "mappings" / "ecostruxure" / "profile.toml"


def load(name: str) -> Any:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


# ---------------------------------------------------------------- parsers (recorded data)
def test_parse_sites_keeps_metadata_and_address():
    sites = parse_ecostruxure_sites(load("sites.json"))
    assert sites[0]["metadata"]["grossArea"] == 12500
    assert sites[0]["postalAddress"]["timezone"] == "Europe/Paris"


def test_parse_sites_rejects_non_array():
    with pytest.raises(ResponseParseError, match="JSON array"):
        parse_ecostruxure_sites({"data": []})


def test_parse_meters_explodes_measurements():
    recs = parse_ecostruxure_meters(load("meters.json"), site_id="S1")
    assert [r["id"] for r in recs] == ["m-001:ae", "m-001:hvac", "m-002:vol", "m-003:co2"]
    first = recs[0]
    assert first["commodity_usage"] == "Electricity / Purchased from Grid"
    assert first["timeseries_key"] == "ts-001-ae"
    assert first["unit"] == "kWh"
    assert first["_parent"] == {"site_id": "S1"}


def test_parse_meters_template_is_configurable():
    opts = EcoStruxureOptions(meter_id_template="{meter_id}/{measurement_id}")
    recs = parse_ecostruxure_meters(load("meters.json"), options=opts)
    assert recs[0]["id"] == "m-001/ae"


def test_parse_timeseries_joins_keys_to_meters():
    meters = parse_ecostruxure_meters(load("meters.json"), site_id="S1")
    values = parse_ecostruxure_timeseries(load("timeseries.json"), meters=meters, site_id="S1")
    assert len(values) == 5
    by_key = {v["key"]: v["meter_id"] for v in values}
    assert by_key["ts-001-ae"] == "m-001:ae"
    assert by_key["ts-unknown"] is None
    assert values[1]["value"] == 567 and values[1]["date"] == "2022-01-02T00:00:00Z"


def test_parse_timeseries_rejects_item_without_key():
    with pytest.raises(ResponseParseError, match="no key"):
        parse_ecostruxure_timeseries([{"values": []}])


@pytest.mark.parametrize("name", ["problem_camel.json", "problem_kebab.json"])
def test_problem_details_both_spellings(name):
    err = parse_problem_details(load(name))
    assert isinstance(err, RequestRejectedError)
    assert err.status == 400
    assert len(err.invalid_params) == 1
    assert ("category" in str(err)) or ("updatedAt[gte]" in str(err))


def test_problem_details_auth_status_and_garbage_body():
    assert isinstance(parse_problem_details({"status": 401, "title": "Unauthorized"}), AuthError)
    err = parse_problem_details("<html>oops</html>", status=400)
    assert isinstance(err, RequestRejectedError) and "oops" in str(err)


def test_prepare_reports_co2_and_quarantines_unconfirmed_fuel():
    profile = read_profile(PROFILE)
    meters = parse_ecostruxure_meters(load("meters.json"), site_id="S1")
    values = parse_ecostruxure_timeseries(load("timeseries.json"), meters=meters)
    raw, report = prepare_ecostruxure_raw(profile, {"meters": meters, "timeseries": values})
    assert [m["id"] for m in raw["meters"]] == ["m-001:ae", "m-001:hvac"]
    assert {v["meter_id"] for v in raw["timeseries"]} == {"m-001:ae"}
    rules = dict(zip(report["record_key"], report["rule"], strict=True))
    assert rules == {
        "m-002:vol": "energy_factor_unconfirmed",
        "m-003:co2": "not_imported",
        "ts-unknown": "timeseries_without_meter",
    }
    co2 = report[report["record_key"] == "m-003:co2"].iloc[0]
    assert co2["severity"] == "warning" and "1 timeseries value" in co2["reason"]


def test_prepare_accounts_for_a_measurement_listed_twice():
    """Issue 13 item 6: two records of one not-imported measurement are two report rows."""
    profile = read_profile(PROFILE)
    meters = parse_ecostruxure_meters(load("meters.json"), site_id="S1")
    co2 = next(m for m in meters if m["id"] == "m-003:co2")
    raw, report = prepare_ecostruxure_raw(profile, {"meters": [*meters, dict(co2)]})
    rows = report[report["rule"] == "not_imported"]
    assert rows["record_key"].tolist() == ["m-003:co2", "m-003:co2#2"]
    assert rows["reason"].str.contains("meter record 2 of 2 with this id").sum() == 1
    # the duplicated measurement that is imported is accounted for by transform (duplicate_id)
    ae = next(m for m in raw["meters"] if m["id"] == "m-001:ae")
    tables = build_ecostruxure_tables(profile, {"meters": [*meters, dict(ae)], "sites": []})
    dup = tables.quarantine[tables.quarantine["rule"] == "duplicate_id"]
    assert dup["record_key"].tolist() == ["m-001:ae#2"] and dup["severity"].item() == "warning"


def test_prepare_applies_a_confirmed_fuel_factor():
    profile = read_profile(PROFILE)
    data = copy.deepcopy(profile.data)
    data["units"]["energy_factors"]["Fuel / Natural Gas"].update(confirmed=True, factor=10.0)
    profile = Profile.from_dict(data, path=profile.path)
    meters = parse_ecostruxure_meters(load("meters.json"))
    values = parse_ecostruxure_timeseries(load("timeseries.json"), meters=meters)
    raw, report = prepare_ecostruxure_raw(profile, {"meters": meters, "timeseries": values})
    gas = next(m for m in raw["meters"] if m["id"] == "m-002:vol")
    assert gas["unit"] == "kWh" and gas["energy_factor"] == 10.0
    value = next(v for v in raw["timeseries"] if v["meter_id"] == "m-002:vol")
    assert value["value"] == 25.0 and value["raw_volume"] == 2.5
    assert "energy_factor_unconfirmed" not in set(report["rule"])


# ---------------------------------------------------------------- score validation (offline)
def test_validate_scores_accepts_both_vocabularies_by_configuration():
    v1 = [{"date": "2022-06-26", "score": 87, "type": "daily", "category": "energy"}]
    page = [{"date": "2022-06-26", "score": 87.5, "type": "monthly", "category": "Fuel"}]
    assert validate_performance_scores(v1) == v1
    assert validate_performance_scores(page, categories="page")[0]["category"] == "Fuel"


def test_validate_scores_names_every_problem():
    bad = [
        {"date": "26/06/2022", "score": "87", "type": "weekly", "category": "Electricity"},
        {"date": "2022-06-27", "score": float("nan"), "type": "daily", "category": "energy"},
    ]
    with pytest.raises(RequestRejectedError) as info:
        validate_performance_scores(bad)
    text = str(info.value)
    assert "[0].date" in text and "[0].score" in text and "[0].type" in text
    assert "'page' vocabulary" in text and "[1].score" in text
    assert info.value.status is None


# ---------------------------------------------------------------- loopback flow
@pytest.fixture(scope="module")
def sandbox():
    clock = FakeClock()
    with EcoStruxureSandbox(clock=clock) as sb:
        sb.clock = clock  # type: ignore[attr-defined]
        yield sb


@pytest.fixture
def connected(sandbox, tmp_path, monkeypatch):
    """A client that went through consent (authorization code) with a token file."""
    for k, v in sandbox.env().items():
        monkeypatch.setenv(k, v)
    token_file = tmp_path / "tokens.json"
    profile = profile_for(sandbox, token_file=str(token_file))
    client = Client(profile, clock=sandbox.clock)
    consent = client.auth.authorization_url()
    redirect = requests.get(consent, allow_redirects=False, timeout=5).headers["Location"]
    client.auth.exchange_code(redirect)
    yield profile, client, token_file
    client.close()


def test_auth_code_then_refresh_rotates_token_file(sandbox, connected):
    profile, client, token_file = connected
    assert token_file.exists() and oct(token_file.stat().st_mode & 0o777) == "0o600"
    first = json.loads(token_file.read_text())["refresh_token"]
    sites = get_ecostruxure_sites(client)
    assert [s["id"] for s in sites] == ["site-paris", "site-boston", "site-singapore"]
    sandbox.clock.advance(3700)  # the 1-hour access token expires
    before = client.auth.token_requests
    assert get_ecostruxure_sites(client)
    assert client.auth.token_requests == before + 1
    rotated = json.loads(token_file.read_text())["refresh_token"]
    assert rotated != first
    assert first not in repr(client) and first not in str(profile.data)


def test_expired_consent_without_refresh_is_auth_error(sandbox, connected, monkeypatch):
    _, client, _ = connected
    client.auth.refresh_token = None
    client.auth.access_token = None
    with pytest.raises(AuthError, match="consent"):
        get_ecostruxure_sites(client)


def test_full_flow_monthly_totals_match_ground_truth(sandbox, connected):
    profile, client, _ = connected
    data = copy.deepcopy(profile.data)
    data["units"]["energy_factors"]["Fuel / Natural Gas"].update(confirmed=True, factor=10.55)
    confirmed = Profile.from_dict(data, path=profile.path)
    raw = fetch_resources(confirmed, client=client, resources=["timeseries"])
    assert set(raw) == {"sites", "meters", "timeseries"}
    assert all(r.report.complete for r in raw.values())
    tables = build_ecostruxure_tables(confirmed, raw)
    truth = sandbox.ground_truth({"Fuel / Natural Gas": 10.55})
    usage = tables.usage.copy()
    usage["month"] = [
        s.tz_convert(tz).strftime("%Y-%m")
        for s, tz in zip(usage["start"], usage["timezone"].astype(str), strict=True)
    ]
    got = usage.groupby(["meter_id", "month"], observed=True)["consumption"].sum()
    want = truth[~truth["meter_id"].str.contains("diesel")].set_index(["meter_id", "month"])
    joined = want.join(got.rename("got"), how="left")
    assert joined["got"].notna().all(), joined[joined["got"].isna()]
    assert (joined["got"] - joined["consumption"]).abs().max() < 1e-6 * joined["consumption"].max()
    # the gas meter was converted with the confirmed factor, diesel was not confirmed
    meters = tables.meters.set_index("meter_id")
    assert meters.loc["site-paris-gas:vol", "meter_subtype"] == "Natural Gas"
    q = tables.quarantine
    reasons = dict(zip(q["record_key"], q["rule"], strict=False))
    assert reasons["site-boston-diesel:vol"] == "energy_factor_unconfirmed"
    assert reasons["site-paris-iaq:co2"] == "not_imported"
    assert reasons["ts-site-paris-unclaimed"] == "timeseries_without_meter"
    assert "site-paris-iaq:co2" not in set(tables.meters["meter_id"].astype(str))
    assets = tables.assets.set_index("asset_id")
    assert assets.loc["site-paris", "timezone"] == "Europe/Paris"
    assert assets.loc["site-paris", "floor_area"] == 12500.0


def test_run_pipeline_applies_the_provider_rules_once(sandbox, connected):
    """Syncs call run_pipeline, not build_ecostruxure_tables: the connector hook applies the
    same rules there (CO2 not imported, unconfirmed fuel quarantined), and only once."""
    from scaler_workbench.pipeline import run_pipeline

    profile, client, _ = connected
    data = copy.deepcopy(profile.data)
    data["units"]["energy_factors"]["Fuel / Natural Gas"].update(confirmed=True, factor=10.55)
    confirmed = Profile.from_dict(data, path=profile.path)
    raw = fetch_resources(confirmed, client=client, resources=["timeseries"])
    via_pipeline = run_pipeline(confirmed, raw)
    via_helper = build_ecostruxure_tables(confirmed, raw)
    rules = dict(
        zip(via_pipeline.quarantine["record_key"], via_pipeline.quarantine["rule"], strict=False)
    )
    assert rules["site-paris-iaq:co2"] == "not_imported"
    assert rules["site-boston-diesel:vol"] == "energy_factor_unconfirmed"
    gas = "site-paris-gas:vol"
    got = via_pipeline.usage.loc[via_pipeline.usage["meter_id"] == gas, "consumption"].sum()
    want = via_helper.usage.loc[via_helper.usage["meter_id"] == gas, "consumption"].sum()
    assert got == pytest.approx(want, rel=1e-12) and got > 0


def test_updated_at_filters_are_sent(sandbox, connected):
    _, client, _ = connected
    meters = get_ecostruxure_meters(client, "site-singapore")
    assert {m["commodity_usage"] for m in meters} >= {"Water / Reclaimed onsite"}
    values = get_ecostruxure_timeseries(
        client,
        "site-singapore",
        meters=meters,
        updated_since="2024-02-01T00:00:00Z",
        updated_before="2024-02-02T00:00:00Z",
    )
    updated = pd.to_datetime([v["updatedAt"] for v in values], utc=True)
    assert len(values) > 0
    assert updated.min() >= pd.Timestamp("2024-02-01", tz="UTC")
    assert updated.max() < pd.Timestamp("2024-02-02", tz="UTC")
    assert all(v["meter_id"] for v in values)


def test_score_write_back_round_trip(sandbox, connected):
    _, client, _ = connected
    scores = [
        {"date": "2024-03-01", "score": 81, "type": "monthly", "category": "energy"},
        {"date": "2024-03-01", "score": 64.5, "type": "monthly", "category": "water"},
    ]
    stored = post_performance_scores(client, "site-boston", scores)
    assert [s["score"] for s in stored] == [81, 64.5]
    back = get_performance_scores(client, "site-boston", categories=["water"])
    assert [(s["date"], s["score"], s["category"]) for s in back] == [("2024-03-01", 64.5, "water")]
    assert sandbox.provider.scores["site-boston"][0]["updatedAt"].endswith("Z")


def test_register_site(sandbox, connected):
    _, client, _ = connected
    out = register_site(client, "site-paris", 1000123, "Paris HQ")
    assert out["leedId"] == 1000123
    assert sandbox.provider.registrations["site-paris"]["leedName"] == "Paris HQ"
    with pytest.raises(RequestRejectedError, match="leedName"):
        register_site(client, "site-paris", 1, " ")


def test_provider_problem_details_become_readable_errors(sandbox, connected):
    _, client, _ = connected
    with pytest.raises(RequestRejectedError) as info:
        get_ecostruxure_timeseries(client, "site-paris", updated_since="not-a-date")
    assert "updatedAt[gte]" in str(info.value) and "ISO 8601" in str(info.value)
    with pytest.raises(RequestRejectedError) as info:
        get_ecostruxure_meters(client, "no-such-site")
    assert "404" in str(info.value) and "no-such-site" in str(info.value)


def test_provider_rejects_scores_with_invalid_params_kebab(sandbox, connected, monkeypatch):
    _, client, _ = connected
    monkeypatch.setattr(sandbox.provider, "problem_style", "kebab")
    from scaler_workbench.connectors import ecostruxure as eco

    # bypass our own validation to see the provider's answer
    monkeypatch.setattr(eco, "validate_performance_scores", lambda s, **kw: list(s))
    with pytest.raises(RequestRejectedError) as info:
        post_performance_scores(client, "site-paris", [{"date": "x", "score": 1}])
    err = info.value
    assert err.status == 400
    assert any("[0].date" in p for p in err.invalid_params)
    assert any("[0].type: required" in p for p in err.invalid_params)


def test_mounted_in_the_shared_sandbox_as_a_flavour():
    from scaler_workbench.sandbox import Sandbox

    with Sandbox(flavour="ecostruxure") as sb:
        assert sb.url.endswith("/ecostruxure/scoring/v1")
        assert requests.get(sb.url + "/sites", timeout=5).status_code == 401
        provider = sb.flavour.provider
        root = sb.url.rsplit("/ecostruxure/", 1)[0]
        r = requests.get(
            root + "/ecostruxure/v1/oauth/authorize",
            params={
                "client_id": provider.client_id,
                "response_type": "code",
                "redirect_uri": "http://127.0.0.1:9/cb",
                "state": "s1",
            },
            allow_redirects=False,
            timeout=5,
        )
        assert r.status_code == 302 and "state=s1" in r.headers["Location"]
        assert sb.env()["ECOSTRUXURE_CLIENT_ID"] == provider.client_id


# ---------------------------------------------------------------- issue 15 item 14
def test_validate_scores_accepts_the_page_spelling_of_types_and_categories():
    """The product page writes "Daily", "Local Average", "Human Experience": accepted and sent
    in the configured spelling; Electricity is never folded into v1's energy."""
    page = [
        {"date": "2024-03-01", "score": 80, "type": "Local Average", "category": "Water"},
        {"date": "2024-03-02", "score": 70, "type": "Daily", "category": "Human Experience"},
    ]
    assert [(s["type"], s["category"]) for s in validate_performance_scores(page)] == [
        ("localAverage", "water"),
        ("daily", "humanExperience"),
    ]
    v1 = [{"date": "2024-03-01", "score": 1, "type": "local_average", "category": "waste"}]
    assert validate_performance_scores(v1, categories="page")[0]["category"] == "Waste"
    assert validate_performance_scores(v1, categories="page")[0]["type"] == "localAverage"
    assert canonical_score_value("MONTHLY", ("daily", "monthly")) == "monthly"
    with pytest.raises(RequestRejectedError, match="'page' vocabulary"):
        validate_performance_scores(
            [{"date": "2024-03-01", "score": 1, "type": "Monthly", "category": "Electricity"}]
        )


def test_scores_in_the_page_spelling_round_trip_through_the_sandbox(sandbox, connected):
    """Posted as the page writes them, stored canonical (the sandbox refuses "Local Average"),
    read back with the page's spelling in the filters."""
    _, client, _ = connected
    scores = [{"date": "2024-02-01", "score": 55, "type": "Local Average", "category": "Waste"}]
    stored = post_performance_scores(client, "site-singapore", scores)
    assert [(s["type"], s["category"]) for s in stored] == [("localAverage", "waste")]
    back = get_performance_scores(
        client, "site-singapore", types=["Local Average"], categories=["Waste"]
    )
    assert [(s["date"], s["score"]) for s in back] == [("2024-02-01", 55)]
    sent = [r for r in sandbox.provider.requests if r["path"].endswith("performance-scores")]
    assert sent[-1]["query"] == {"type": ["localAverage"], "category": ["waste"]}


def test_projects_per_site_resource_reads_the_configured_path(sandbox, connected):
    """[resources.projects] (the page names the feature, not the path): fetched per site like
    any child resource; get_ecostruxure_projects reads the same path; a registration shows up
    as a project; another path is the provider's 404, named."""
    profile, client, _ = connected
    assert profile.resources["projects"]["path"] == "/sites/{site_id}/projects"
    raw = fetch_resources(profile, client=client, resources=["projects"])
    projects = raw["projects"].records
    assert raw["projects"].report.complete
    assert sorted(p["_parent"]["site_id"] for p in projects) == sorted(
        ["site-paris", "site-boston", "site-singapore"]
        + [s for s in ("site-paris",) if s in sandbox.provider.registrations]
    )
    register_site(client, "site-boston", 4242, "Boston Lab LEED")
    boston = get_ecostruxure_projects(client, "site-boston")
    assert [(p["type"], p.get("leedId")) for p in boston] == [("Benchmark", None), ("LEED", 4242)]
    assert all(p["_parent"] == {"site_id": "site-boston"} for p in boston)
    data = copy.deepcopy(profile.data)
    data["resources"]["projects"]["path"] = "/sites/{site_id}/site-projects"
    moved = Client(Profile.from_dict(data, path=profile.path), clock=sandbox.clock)
    moved.auth = client.auth
    with pytest.raises(RequestRejectedError) as info:
        get_ecostruxure_projects(moved, "site-boston")
    assert info.value.status == 404 and "site-projects" in str(info.value)


def test_sandbox_environment_authorizes_at_sandbox_authorize(sandbox, connected, monkeypatch):
    """The sandbox environment's authorize URL is the sandbox-authorize page (the simulator's,
    as profile_for points it; Schneider's in partner_sandbox), not a comment."""
    _, client, _ = connected
    assert client.auth.authorize_url == sandbox.sandbox_authorize_url
    assert client.auth.authorization_url().startswith(sandbox.sandbox_authorize_url + "?")
    consents = [r["path"] for r in sandbox.provider.requests if "authorize" in r["path"]]
    assert consents and set(consents) == {"/ecostruxure/v1/oauth/sandbox-authorize"}
    monkeypatch.setenv("ECOSTRUXURE_CLIENT_ID", "partner-client-id-3")
    monkeypatch.setenv("ECOSTRUXURE_CLIENT_SECRET", "partner-client-s3cr3t-value")
    monkeypatch.delenv("ECOSTRUXURE_BASE_URL", raising=False)
    shipped = read_profile(PROFILE)
    partner = Client(shipped, environment="partner_sandbox")
    uat = Client(shipped)
    try:
        assert partner.auth.authorize_url == (
            "https://api.exchange.se.com/ecostruxure/v1/oauth/sandbox-authorize"
        )
        assert partner.auth.token_url == "https://api.exchange.se.com/ecostruxure/v1/oauth/token"
        assert uat.auth.authorize_url.endswith("/ecostruxure/v1/oauth/authorize")
        assert "se-exchange-uat-uat.apigee.net" in uat.auth.token_url
    finally:
        partner.close()
        uat.close()


def _series_lengths(sandbox) -> dict[str, int]:
    as_of = sandbox.provider.as_of
    return {
        s.meter_id: int((s.updated < as_of).sum()) for s in sandbox.provider.series if s.meter_id
    }


def test_comfort_series_and_waste_diverted_are_reported_not_imported_with_counts(
    sandbox, connected, tmp_path
):
    """Zone temperature, humidity and CO2 are comfort data, waste diverted is part of waste
    generated: each measurement is one not_imported row (with its category and value count),
    never an orphan warning; waste generated is imported alone; the sync's run_summary.json
    counts them per category."""
    from scaler_workbench.pipeline import run_pipeline
    from scaler_workbench.sync import run_sync

    profile, client, _ = connected
    raw = fetch_resources(profile, client=client, resources=["timeseries"])
    tables = run_pipeline(profile, raw)
    q = tables.quarantine
    rows = q[q["rule"] == "not_imported"].set_index("record_key")
    records = {k: json.loads(v) for k, v in rows["record"].items()}
    lengths = _series_lengths(sandbox)
    comfort = {
        f"site-{s}-{m}"
        for s in ("paris", "boston")
        for m in ("comfort:zone-temp", "comfort:humidity", "iaq:co2")
    }
    diverted = {"site-paris-recycling:mass", "site-singapore-recycling:mass"}
    assert set(records) == comfort | diverted
    for key, rec in records.items():
        assert rec["category"] == ("comfort" if key in comfort else "waste_diverted")
        assert rec["values"] == lengths[key] > 0
        assert f"{rec['values']} timeseries value(s) set aside" in rows.loc[key, "reason"]
    assert "counted twice" in rows.loc["site-paris-recycling:mass", "reason"]
    orphans = set(q.loc[q["rule"] == "timeseries_without_meter", "record_key"])
    assert orphans == {"ts-site-paris-unclaimed"}
    meters = tables.meters.set_index("meter_id")
    assert meters.loc["site-paris-waste:mass", "meter_subtype"] == "Non-hazardous"
    assert not set(meters.index.astype(str)) & (comfort | diverted)
    waste = tables.usage[tables.usage["meter_id"].astype(str).str.contains("waste|recycling")]
    assert set(waste["meter_id"].astype(str)) == {
        "site-paris-waste:mass",
        "site-singapore-waste:mass",
    }

    result = run_sync(profile, out=tmp_path / "out", clock=sandbox.clock)
    summary = json.loads((tmp_path / "out" / "export" / "run_summary.json").read_text())
    assert summary["not_imported"] == result.summary["not_imported"]
    got = summary["not_imported"]
    assert set(got) == {"comfort", "waste_diverted"}
    assert got["comfort"]["series"] == 6 and got["comfort"]["ids"] == sorted(comfort)
    assert got["comfort"]["values"] == sum(lengths[k] for k in comfort)
    assert got["waste_diverted"] == {
        "series": 2,
        "values": sum(lengths[k] for k in diverted),
        "ids": sorted(diverted),
    }
