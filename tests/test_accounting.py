"""Nothing lost, nothing silently wrong (issue 13, items 6-8): every record is accounted for.

Through ``run_pipeline`` + ``validate_tables`` every raw record of every table, assets and meters
included, is in exactly one place: an accepted row, a quarantine row that set it aside, or the
"no data" count of a row whose value is null. The property test draws small portfolios with
traps (duplicate ids, ±inf, 1e308, nulls, bad currencies, records without a key, unknown
units, duplicate records, unknown meters, unparseable times); the other tests pin each item.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scaler_workbench.exceptions import ProfileError
from scaler_workbench.pipeline import run_pipeline
from scaler_workbench.profile import Profile
from scaler_workbench.schema import QUARANTINE, quarantine_records, source_key
from scaler_workbench.transform import build_tables
from scaler_workbench.validation import ValidationResult, validate_tables

BASE = pd.Timestamp("2024-03-01T00:00Z")
TABLE_RESOURCES = {"assets": "sites", "meters": "meters", "usage": "usage", "readings": "reads"}


def _profile(**validation: Any) -> Profile:
    return Profile.from_dict(
        {
            "provider": {"name": "accounting", "timezone": "Europe/London"},
            "environments": {"x": {"base_url": "http://127.0.0.1"}},
            "mapping": {
                "assets": {
                    "resource": "sites",
                    "fields": {"asset_id": "id", "name": "name", "timezone": "tz"},
                },
                "meters": {
                    "resource": "meters",
                    "fields": {
                        "meter_id": "id",
                        "asset_id": "site",
                        "meter_type": "type",
                        "raw_unit": "unit",
                    },
                },
                "usage": {
                    "daily": {
                        "resource": "usage",
                        "fields": {
                            "meter_id": "meter",
                            "start": "start",
                            "end": "end",
                            "consumption": "value",
                            "cost": "cost",
                            "currency": "currency",
                        },
                    }
                },
                "readings": {
                    "registers": {
                        "resource": "reads",
                        "fields": {"meter_id": "meter", "timestamp": "at", "value": "value"},
                    }
                },
            },
            "validation": dict(validation),
        }
    )


def _day(d: int) -> str:
    return (BASE + pd.Timedelta(days=d)).isoformat()


TRAPS = (
    "dup_site_same",
    "dup_site_diff",
    "site_no_id",
    "dup_meter_same",
    "dup_meter_diff",
    "meter_no_id",
    "meter_unknown_unit",
    "meter_unknown_site",
    "usage_inf",
    "usage_minus_inf",
    "usage_huge",
    "usage_null",
    "usage_bad_currency",
    "usage_no_currency",
    "usage_no_key",
    "usage_dup",
    "usage_unknown_meter",
    "usage_bad_time",
    "reading_null",
    "reading_inf",
    "reading_dup",
    "reading_no_key",
)


@st.composite
def portfolios(draw: st.DrawFn) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """Raw records as a provider sends them, with a random set of traps planted."""
    n_sites = draw(st.integers(1, 3))
    sites = [{"id": f"S{i}", "name": f"Site {i}", "tz": "Europe/London"} for i in range(n_sites)]
    meters = []
    for i in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["Energy", "Water"]))
        site = f"S{draw(st.integers(0, n_sites - 1))}"
        unit = "kWh" if kind == "Energy" else "m3"
        meters.append({"id": f"M{i}", "site": site, "type": kind, "unit": unit})
    usage, reads = [], []
    for m in meters:
        for d in range(draw(st.integers(0, 5))):
            usage.append(
                {
                    "meter": m["id"],
                    "start": _day(d),
                    "end": _day(d + 1),
                    "value": draw(st.floats(0, 500, allow_nan=False)),
                    "cost": 10.0 + d,
                    "currency": "EUR",
                }
            )
        for d in range(draw(st.integers(0, 3))):
            reads.append({"meter": m["id"], "at": _day(d), "value": 100.0 + 10 * d})
    traps = draw(st.lists(st.sampled_from(TRAPS), max_size=8))
    pick = st.integers(0, 10**6)
    for trap in traps:
        k = draw(pick)
        if trap == "dup_site_same":
            sites.append(dict(sites[k % len(sites)]))
        elif trap == "dup_site_diff":
            sites.append({**sites[k % len(sites)], "name": f"Renamed {k}"})
        elif trap == "site_no_id":
            sites.append({"name": f"nameless {k}", "tz": "Europe/London"})
        elif trap == "dup_meter_same":
            meters.append(dict(meters[k % len(meters)]))
        elif trap == "dup_meter_diff":
            meters.append({**meters[k % len(meters)], "unit": "MWh", "type": "Energy"})
        elif trap == "meter_no_id":
            meters.append({"site": "S0", "type": "Energy", "unit": "kWh"})
        elif trap == "meter_unknown_unit":
            meters[k % len(meters)]["unit"] = "bananas"
        elif trap == "meter_unknown_site":
            meters.append({"id": f"X{k}", "site": "S404", "type": "Energy", "unit": "kWh"})
        elif trap.startswith("usage_") and trap != "usage_no_key" and not usage:
            continue
        elif trap in ("usage_inf", "usage_minus_inf", "usage_huge", "usage_null"):
            value = {"usage_inf": math.inf, "usage_minus_inf": -math.inf, "usage_huge": 1e308}
            usage[k % len(usage)]["value"] = value.get(trap)
        elif trap == "usage_bad_currency":
            usage[k % len(usage)]["currency"] = draw(st.sampled_from(["EURO", "XYZ", "eur"]))
        elif trap == "usage_no_currency":
            usage[k % len(usage)]["currency"] = None
        elif trap == "usage_no_key":
            usage.append(  # a null meter id (a field no record has is a mapping error)
                {
                    "meter": None,
                    "start": _day(k % 5),
                    "end": _day(k % 5 + 1),
                    "value": 1.0,
                    "cost": None,
                    "currency": None,
                }
            )
        elif trap == "usage_dup":
            usage.append(dict(usage[k % len(usage)]))
        elif trap == "usage_unknown_meter":
            usage.append({**usage[k % len(usage)], "meter": "GHOST"})
        elif trap == "usage_bad_time":
            usage[k % len(usage)]["start"] = "not a time"
        elif trap.startswith("reading_") and trap != "reading_no_key" and not reads:
            continue
        elif trap == "reading_null":
            reads[k % len(reads)]["value"] = None
        elif trap == "reading_inf":
            reads[k % len(reads)]["value"] = math.inf
        elif trap == "reading_dup":
            reads.append(dict(reads[k % len(reads)]))
        elif trap == "reading_no_key":
            reads.append({"meter": None, "at": _day(1), "value": 5.0})
    raw = {"sites": sites, "meters": meters, "usage": usage, "reads": reads}
    return raw, traps


def _sets_aside(q: pd.DataFrame) -> pd.Series:
    """Which quarantine rows took their record out of the tables.

    Errors do; warnings report a record that stays, except an identical duplicate id, which is
    collapsed into the row kept for its id (``duplicate_id`` warning). ``no_data`` warnings
    count null values of rows that stay (or that validation counts in ``no_data``).
    """
    error = q["severity"] == "error"
    collapsed = (q["stage"] == "transform") & (q["rule"] == "duplicate_id")
    return error | collapsed


def accounting(raw: dict[str, list[dict[str, Any]]], result: ValidationResult) -> pd.DataFrame:
    """Per table: records in, accepted rows, records set aside, rows counted as no data."""
    q = result.accepted.quarantine  # every stage's rows, in stage order
    aside = q[_sets_aside(q)]
    rows = []
    for table, resource in TABLE_RESOURCES.items():
        mine = aside[aside["table"] == table]
        # one row per record at transform, units and usage; validation may give one record
        # several rows (one per failed rule), under one record_key
        by_stage = mine.groupby("stage")["record_key"].nunique()
        no_data = result.no_data
        rows.append(
            {
                "table": table,
                "input": len(raw[resource]),
                "accepted": len(getattr(result.accepted, table)),
                "quarantined": int(by_stage.sum()),
                "no_data": int(no_data.loc[no_data["table"] == table, "rows"].sum()),
            }
        )
    return pd.DataFrame(rows).set_index("table")


def _run(raw: dict[str, list[dict[str, Any]]], profile: Profile | None = None) -> ValidationResult:
    profile = profile or _profile()
    tables = run_pipeline(profile, raw)
    return validate_tables(tables, profile, use_gx=False)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(portfolio=portfolios())
def test_property_every_record_is_accepted_quarantined_or_no_data(portfolio) -> None:
    raw, traps = portfolio
    result = _run(raw)
    acc = accounting(raw, result)
    total = acc["accepted"] + acc["quarantined"] + acc["no_data"]
    assert (total == acc["input"]).all(), (traps, acc.to_string())
    q = result.accepted.quarantine
    # keys never collapse: the quarantine is unique by its key, as the store unions it
    assert not q.duplicated(list(QUARANTINE.key)).any(), q[list(QUARANTINE.key)].to_string()
    assert (q["record_key"].str.len() > 0).all()
    # nothing silently wrong reaches the accepted tables
    usage = result.accepted.usage
    assert np.isfinite(usage["consumption"].to_numpy(dtype=float)).all()
    assert (usage["consumption"].abs() < 1e300).all()
    assert np.isfinite(result.accepted.readings["value"].to_numpy(dtype=float)).all()
    assert not result.accepted.assets["asset_id"].duplicated().any()
    assert not result.accepted.meters["meter_id"].duplicated().any()
    # a null value is never one error row per value under the default policy
    assert not (q["reason"].str.contains("is missing") & (q["severity"] == "error")).any()


# ---- item 6: entities ---------------------------------------------------------------------------
def _sites(n: int) -> list[dict[str, Any]]:
    return [{"id": f"S{i}", "name": f"Site {i}", "tz": "Europe/London"} for i in range(n)]


def test_duplicate_site_ids_eight_in_seven_out_one_quarantined() -> None:
    sites = _sites(7)
    sites.insert(5, {**sites[2], "name": "Site 2 (new name)"})  # the 8 sites, 7 ids
    raw = {"sites": sites, "meters": [], "usage": [], "reads": []}
    tables = build_tables(_profile(), raw)
    assert tables.assets["asset_id"].tolist() == [f"S{i}" for i in range(7)]
    assert tables.assets.loc[tables.assets["asset_id"] == "S2", "name"].item() == "Site 2"
    q = tables.quarantine
    assert len(tables.assets) + len(q) == 8
    row = q.iloc[0]
    assert (row["table"], row["rule"], row["severity"], row["stage"]) == (
        "assets",
        "duplicate_id",
        "error",
        "transform",
    )
    assert row["record_key"] == "S2#2"
    # the reason names both source records and what differs
    assert "record 5 of 'sites'" in row["reason"] and "record 2 of 'sites'" in row["reason"]
    assert "kept (the first seen)" in row["reason"] and "'Site 2 (new name)'" in row["reason"]
    assert json.loads(row["record"])["name"] == "Site 2 (new name)"


def test_identical_duplicate_meter_collapses_with_a_warning() -> None:
    meter = {"id": "M1", "site": "S0", "type": "Energy", "unit": "kWh"}
    raw = {
        "sites": _sites(1),
        "meters": [meter, dict(meter), dict(meter)],
        "usage": [],
        "reads": [],
    }
    tables = build_tables(_profile(), raw)
    assert tables.meters["meter_id"].tolist() == ["M1"]
    q = tables.quarantine
    assert q["rule"].tolist() == ["duplicate_id", "duplicate_id"]
    assert q["severity"].tolist() == ["warning", "warning"]
    assert q["record_key"].tolist() == ["M1#2", "M1#3"]  # never one row for two records
    assert q["reason"].str.contains("identical: collapsed into it").all()


def test_duplicate_meter_that_differs_is_an_error_and_its_usage_follows_the_first() -> None:
    m1 = {"id": "M1", "site": "S0", "type": "Energy", "unit": "kWh"}
    raw = {
        "sites": _sites(1),
        "meters": [m1, {**m1, "unit": "MWh"}],
        "usage": [
            {
                "meter": "M1",
                "start": _day(0),
                "end": _day(1),
                "value": 5.0,
                "cost": None,
                "currency": None,
            }
        ],
        "reads": [],
    }
    result = _run(raw)
    acc = accounting(raw, result)
    assert acc.loc["meters"].tolist() == [2, 1, 1, 0]
    assert result.accepted.usage["consumption"].tolist() == [5.0]  # in kWh: the first unit
    q = result.accepted.quarantine
    dup = q[q["rule"] == "duplicate_id"].iloc[0]
    assert dup["severity"] == "error" and "raw_unit 'MWh' vs 'kWh'" in dup["reason"]


def test_meters_read_from_series_records_collapse_without_rows() -> None:
    """Green Button style: meters mapped over the readings resource (one record per value)."""
    profile = _profile()
    profile.data["mapping"]["meters"] = {
        "resource": "usage",
        "fields": {
            "meter_id": "meter",
            "asset_id": {"const": "S0"},
            "meter_type": {"const": "Energy"},
        },
    }
    usage = [
        {
            "meter": "M1",
            "start": _day(d),
            "end": _day(d + 1),
            "value": 1.0,
            "cost": None,
            "currency": None,
        }
        for d in range(5)
    ]
    tables = build_tables(profile, {"sites": _sites(1), "usage": usage})
    assert tables.meters["meter_id"].tolist() == ["M1"]
    assert not (tables.quarantine["rule"] == "duplicate_id").any()


# ---- item 7: values -------------------------------------------------------------------------------
def _usage_raw(values: list[Any], **extra: Any) -> dict[str, list[dict[str, Any]]]:
    meter = {"id": "M1", "site": "S0", "type": "Energy", "unit": "kWh"}
    defaults = {"cost": None, "currency": None, **extra}
    usage = [
        {"meter": "M1", "start": _day(d), "end": _day(d + 1), "value": v, **defaults}
        for d, v in enumerate(values)
    ]
    return {"sites": _sites(1), "meters": [meter], "usage": usage, "reads": []}


def test_infinite_values_are_set_aside_at_transform() -> None:
    result = _run(_usage_raw([1.0, math.inf, -math.inf, 2.0]))
    assert result.accepted.usage["consumption"].tolist() == [1.0, 2.0]
    q = result.accepted.quarantine
    inf = q[q["rule"] == "non_finite"]
    assert len(inf) == 2 and (inf["stage"] == "transform").all()
    assert (inf["severity"] == "error").all() and inf["reason"].str.contains("infinite").all()
    assert inf["record_key"].str.startswith("M1|2024-03-02T00:00:00Z|usage@").any()


def test_implausible_magnitude_is_quarantined_and_the_bound_is_a_profile_setting() -> None:
    raw = _usage_raw([1.0, 1e308, 3e7])  # 3e7 kWh a day: 1.25 GW, above 1e6 kWh per hour
    result = _run(raw)
    assert result.accepted.usage["consumption"].tolist() == [1.0]
    q = result.quarantined
    hit = q[q["rule"] == "implausible_value"]
    assert len(hit) == 2 and (hit["severity"] == "error").all()
    assert "above the plausible 2.4e+07 for 24 h (max_per_hour 1e+06)" in hit["reason"].iloc[1]
    # a bigger bound in the profile lets the 3e7 day through; 1e308 stays out
    profile = _profile(rules={"implausible_value": {"max_per_hour": {"kWh": 2e6}}})
    result = _run(raw, profile)
    assert result.accepted.usage["consumption"].tolist() == [1.0, 3e7]


@pytest.mark.parametrize(
    ("bound", "key"),
    [
        ({"kWh": -1}, "validation.rules.implausible_value.max_per_hour.kWh"),
        ({"kWh": "big"}, "validation.rules.implausible_value.max_per_hour.kWh"),
        (5.0, "validation.rules.implausible_value.max_per_hour"),
    ],
)
def test_bad_plausible_bound_is_a_profile_error(bound: Any, key: str) -> None:
    from scaler_workbench._rules import resolve_rules

    with pytest.raises(ProfileError) as info:
        resolve_rules({"rules": {"implausible_value": {"max_per_hour": bound}}})
    assert info.value.key == key


def test_nulls_are_no_data_by_default_counted_per_meter_and_day() -> None:
    """A solar inverter asleep at night: hourly nulls are one warning per day, no error."""
    meter = {"id": "PV", "site": "S0", "type": "Energy", "unit": "kWh"}
    hours = pd.date_range(BASE, periods=72, freq="h")
    usage = [
        {
            "meter": "PV",
            "start": t.isoformat(),
            "end": (t + pd.Timedelta(hours=1)).isoformat(),
            "value": None if (t.hour < 6 or t.hour >= 20) else 2.0,
            "cost": None,
            "currency": None,
        }
        for t in hours
    ]
    raw = {"sites": _sites(1), "meters": [meter], "usage": usage, "reads": []}
    profile = _profile()
    profile.data["mapping"]["usage"]["daily"]["aggregate"] = "day"
    result = _run(raw, profile)
    q = result.accepted.quarantine
    assert not (q["severity"] == "error").any(), q[["rule", "reason"]].to_string()
    no_data = q[q["rule"] == "no_data"]
    assert no_data["record_key"].tolist() == [f"PV|2024-03-0{d}|daily" for d in (1, 2, 3)]
    assert result.no_data["values"].tolist() == [10, 10, 10]  # 00-06 and 20-24 local (GMT)
    assert result.no_data_values == 30
    usage_out = result.accepted.usage
    assert usage_out["consumption"].tolist() == [28.0, 28.0, 28.0]
    assert usage_out["n_intervals"].tolist() == [24, 24, 24]  # delivered, without data
    # the same nulls under "error": one quarantine row per record, as the policy says
    strict = _run(raw, _strict(profile))
    errors = strict.accepted.quarantine
    assert (errors["rule"] == "unmappable").sum() == 30
    assert errors["reason"].str.contains("consumption is missing").sum() == 30


def _strict(profile: Profile) -> Profile:
    data = profile.to_dict()
    data["validation"] = {"missing_values": "error"}
    return Profile.from_dict(data)


def test_null_rows_reaching_validation_are_counted_not_errors() -> None:
    result = _run(_usage_raw([1.0, None, 3.0]))
    assert result.accepted.usage["consumption"].tolist() == [1.0, 3.0]
    assert result.errors.empty
    assert result.no_data[["meter_id", "date", "values", "rows"]].values.tolist() == [
        ["M1", "2024-03-02", 1, 1]
    ]
    row = result.summary[
        (result.summary["table"] == "usage") & (result.summary["rule"] == "no_data")
    ]
    assert row[["severity", "failed"]].values.tolist() == [["no_data", 1]]


@pytest.mark.parametrize("value", ["nothing", 0, True, ["no_data"]])
def test_missing_values_policy_is_validated_when_the_profile_is_read(value: Any) -> None:
    with pytest.raises(ProfileError) as info:
        _profile(missing_values=value)
    assert info.value.key == "validation.missing_values" and "no_data" in info.value.hint


@pytest.mark.parametrize("currency", ["EURO", "XYZ", "eur", "", None])
def test_cost_without_an_iso4217_currency_is_a_finding(currency: Any) -> None:
    result = _run(_usage_raw([1.0, 2.0], cost=3.5, currency="EUR"))
    assert result.quarantined.empty  # EUR is fine
    raw = _usage_raw([1.0, 2.0], cost=3.5, currency="EUR")
    raw["usage"][1]["currency"] = currency
    result = _run(raw)
    hit = result.quarantined[result.quarantined["rule"] == "invalid_currency"]
    assert len(hit) == 1 and hit["severity"].item() == "warning"
    assert "not an ISO 4217 code" in hit["reason"].item()
    assert len(result.accepted.usage) == 2  # the consumption stays; the cost is flagged


# ---- item 8: keys -------------------------------------------------------------------------------
def test_six_records_without_a_key_are_six_rows_after_a_union_by_key() -> None:
    sites = [*_sites(1), *({"id": None, "name": f"nameless {i}"} for i in range(6))]
    tables = build_tables(_profile(), {"sites": sites})
    assert len(tables.assets) == 1
    q = tables.quarantine
    assert len(q) == 6
    # the store and the sync union quarantines by (table, record_key, rule), the later winning
    assert len(q.drop_duplicates(list(QUARANTINE.key), keep="last")) == 6
    assert q["reason"].str.contains("record 3 of 'sites'").any()
    assert q["record_key"].str.startswith("sites@").all()


def test_identical_records_without_a_key_are_numbered() -> None:
    q = quarantine_records(
        [{"v": 1}, {"v": 1}, {"v": 2}], table="usage", stage="t", rule="r", reasons="x"
    )
    keys = q["record_key"].tolist()
    assert keys[0] != keys[2] and keys[1] == keys[0] + "#2"


def test_keys_are_the_same_in_a_full_and_an_incremental_run() -> None:
    """A record's key comes from what it says, not from how many records came before it."""
    full = _usage_raw([1.0, 2.0, None, 4.0, 5.0])
    full["usage"][3]["start"] = "garbage"
    full["usage"].append({"start": _day(9), "end": _day(10), "value": 1.0})  # no meter id
    incremental = {**full, "usage": full["usage"][3:]}  # a later window: fewer records before
    keys = []
    for raw in (full, incremental):
        q = build_tables(_profile(), raw).quarantine
        keys.append(set(q.loc[q["rule"] == "unmappable", "record_key"]))
    assert keys[0] == keys[1] and len(keys[0]) == 2


def test_source_stamp_is_the_key_when_a_connector_gives_one() -> None:
    origin = {"resource": "usage", "window": "2024-03", "page": 2, "position": 7}
    assert source_key({"v": 1, "_source": origin}) == "usage|2024-03|2|7"
    assert source_key({"v": 1, "_parent": {"site": "S1"}}, resource="usage") == source_key(
        {"v": 1}, resource="usage"
    )


# ---- end to end: the sandbox's duplicate meter id and null nights through a sync run ------------
def test_sandbox_duplicate_meter_and_null_nights_through_a_sync(small_sandbox, tmp_path) -> None:
    from datetime import UTC, datetime
    from pathlib import Path

    from scaler_workbench.clock import FakeClock
    from scaler_workbench.profile import read_profile
    from scaler_workbench.sync import run_sync

    sb = small_sandbox(traps=["duplicate_meter_id", "null_night"], page_size=1000)
    facts = sb.trap_facts()
    dup, pv = facts["duplicate_meter_id"], facts["null_night"]
    profile = read_profile(Path(__file__).resolve().parents[1] / "mappings/sandbox/profile.toml")
    clock = FakeClock(datetime(2024, 4, 1, tzinfo=UTC))
    run_sync(profile, out=tmp_path, clock=clock, formats=("csv",))
    export = tmp_path / "export"
    meters = pd.read_csv(export / "meters.csv")
    assert (meters["external_id"] == dup["meter_id"]).sum() == 1
    q = pd.read_csv(export / "quarantine.csv")
    row = q[q["rule"] == "duplicate_id"]
    assert row["record_key"].tolist() == [f"{dup['meter_id']}#2"]
    assert row["severity"].item() == "error"  # the two records differ in name
    reason = row["reason"].item()
    assert "kept (the first seen)" in reason and "it differs (description" in reason
    assert "record 5 of 'meters' (site_id=S001)" in reason  # both source records named
    assert "like record 4 of 'meters' (site_id=S001)" in reason
    # null nights: counted per meter and local day, never one error row per value
    assert not q["reason"].str.contains("is missing").any()
    nights = q[(q["rule"] == "no_data") & q["record_key"].str.startswith(f"{pv['meter_id']}|")]
    days = sum(m["days_with_data"] for m in pv["months"])
    assert 0 < len(nights) <= days + len(pv["months"])  # one row per local day with nulls
    values = sum(json.loads(r)["values"] for r in nights["record"])
    assert values == sum(m["null_intervals"] for m in pv["months"])


# ---- record filters (issue 15 item 2): filtered records are counted, never silent ----------------
def _filtered_profile(exclude: tuple[str, ...] = ("M1",)) -> Profile:
    data = _profile().to_dict()
    data["mapping"]["usage"]["daily"]["skip"] = {"value": {"missing": True}, "cost": {">": 13}}
    data["mapping"]["readings"]["registers"]["where"] = {"value": {"<": 120}}
    data["mapping"]["exclude_meters"] = list(exclude)
    return Profile.from_dict(data)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(portfolio=portfolios())
def test_property_accepted_quarantined_no_data_and_filtered_add_up_to_the_input(
    portfolio,
) -> None:
    raw, traps = portfolio
    profile = _filtered_profile()
    filtered: dict[str, dict[str, int]] = {}
    tables = run_pipeline(profile, raw, filtered=filtered)
    result = validate_tables(tables, profile, use_gx=False)
    acc = accounting(raw, result)
    per_table = {t: 0 for t in TABLE_RESOURCES}
    for section, rules in filtered.items():
        per_table[section.split(".")[1]] += sum(rules.values())
    acc["filtered"] = pd.Series(per_table)
    total = acc["accepted"] + acc["quarantined"] + acc["no_data"] + acc["filtered"]
    assert (total == acc["input"]).all(), (traps, filtered, acc.to_string())
    assert "M1" not in set(result.accepted.meters["meter_id"].astype(str))
    assert not (result.accepted.usage["meter_id"].astype(str) == "M1").any()
    # the skipped usage records are gone before the mapping: none is "no data" or an error
    assert not (result.accepted.usage["cost"] > 13).any()
    assert (result.accepted.readings["value"] < 120).all()


def test_skipped_nulls_are_filtered_not_no_data() -> None:
    """``skip = { value = { missing = true } }``: a null record leaves before the mapping and is
    counted as filtered; without the filter it is a row counted as no data."""
    raw = _usage_raw([1.0, None, 3.0, None])
    filtered: dict[str, dict[str, int]] = {}
    profile = _filtered_profile(exclude=())
    result = validate_tables(run_pipeline(profile, raw, filtered=filtered), profile, use_gx=False)
    assert filtered == {"mapping.usage.daily": {"skip.value": 2}}
    assert result.accepted.usage["consumption"].tolist() == [1.0, 3.0]
    assert result.no_data.empty and result.errors.empty
    plain = _run(raw)
    assert int(plain.no_data["rows"].sum()) == 2  # the same nulls, counted as no data
