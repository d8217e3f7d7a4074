"""Tests for scaler_workbench.transform: mapping raw records to canonical Tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _mappings import METERS

from scaler_workbench.exceptions import MappingError
from scaler_workbench.pipeline import run_pipeline
from scaler_workbench.profile import Profile, read_profile
from scaler_workbench.transform import build_tables, parse_timestamps

PROFILE = Profile.from_dict(
    {
        "provider": {"name": "t", "timezone": "Europe/London"},
        "environments": {"x": {"base_url": "http://127.0.0.1"}},
    }
)


def mapping(usage_fields=None, **opts):
    fields = usage_fields or {"meter_id": "m", "start": "s", "end": "e", "consumption": "v"}
    return {"meters": METERS, "usage": {"u": {"resource": "usage", "fields": fields, **opts}}}


def raw(rows, meters=None):
    return {
        "meters": meters or [{"id": "M1", "site": "S1", "unit": "kWh"}],
        "usage": rows,
    }


def test_pitfall_mixed_offsets_z_and_plus_one_parse_to_utc():
    ts, bad = parse_timestamps(["2024-06-01T00:00:00Z", "2024-06-01T01:00:00+01:00"])
    assert not bad.any()
    assert ts[0] == ts[1] == pd.Timestamp("2024-06-01T00:00Z")


def test_pitfall_epoch_seconds_are_utc():
    ts, bad = parse_timestamps([1704067200, 1704067200.0], tz="America/New_York")
    assert not bad.any()
    assert (ts == pd.Timestamp("2024-01-01T00:00Z")).all()


def test_pitfall_naive_timestamp_on_fall_back_day_resolved_by_order():
    # 2024-10-27 Europe/London: 01:00-02:00 happens twice (BST then GMT)
    naive = [
        "2024-10-27T00:30",
        "2024-10-27T01:00",
        "2024-10-27T01:30",
        "2024-10-27T01:00",
        "2024-10-27T01:30",
        "2024-10-27T02:00",
    ]
    ts, bad = parse_timestamps(naive, tz="Europe/London", order_keys=np.zeros(6, np.int64))
    assert not bad.any()
    utc = [t.strftime("%H:%M") for t in ts]
    assert utc == ["23:30", "00:00", "00:30", "01:00", "01:30", "02:00"]
    assert ts.is_monotonic_increasing and ts.is_unique


def test_pitfall_nonexistent_spring_forward_time_quarantined_not_shifted():
    rows = [
        {"m": "M1", "s": "2024-03-31T00:30", "e": "2024-03-31T01:00", "v": 1.0},
        {"m": "M1", "s": "2024-03-31T01:30", "e": "2024-03-31T02:00", "v": 2.0},  # 01:30 missing
        {"m": "M1", "s": "2024-03-31T02:00", "e": "2024-03-31T02:30", "v": 3.0},
    ]
    t = build_tables(PROFILE, raw(rows), mapping=mapping())
    assert list(t.usage["consumption"]) == [1.0, 3.0]
    q = t.quarantine
    assert len(q) == 1 and q["stage"].iloc[0] == "transform"
    assert "does not exist" in q["reason"].iloc[0] and '"v": 2.0' in q["record"].iloc[0]
    # the first row's end "01:00" is the transition instant itself: 00:00Z, not an error
    assert t.usage["end"].iloc[0] == pd.Timestamp("2024-03-31T01:00Z")
    late = [{"m": "M1", "s": "2024-03-31T01:30", "e": "2024-03-31T03:00", "v": 2.0}]
    shifted = build_tables(PROFILE, raw(late), mapping=mapping(nonexistent="shift_forward"))
    assert shifted.usage["start"].iloc[0] == pd.Timestamp("2024-03-31T01:00Z")


def test_pitfall_inclusive_end_becomes_exclusive_local_midnight_across_dst():
    rows = [{"m": "M1", "s": "2024-03-01", "e": "2024-03-31", "v": 31.0}]
    t = build_tables(PROFILE, raw(rows), mapping=mapping(end_inclusive=True))
    end = t.usage["end"].iloc[0]
    assert end.tz_convert("Europe/London") == pd.Timestamp("2024-04-01", tz="Europe/London")
    assert end == pd.Timestamp("2024-03-31T23:00Z")


def test_mapping_naming_a_missing_field_is_a_mapping_error():
    rows = [{"m": "M1", "s": "2024-01-01T00:00Z", "e": "2024-01-01T00:30Z", "v": 1.0}]
    fields = {"meter_id": "m", "start": "s", "end": "e", "consumption": "kwh"}
    with pytest.raises(MappingError, match="kwh") as exc:
        build_tables(PROFILE, raw(rows), mapping=mapping(fields))
    assert exc.value.column == "consumption"


def test_mapping_without_required_columns_is_a_mapping_error():
    with pytest.raises(MappingError, match="consumption"):
        build_tables(PROFILE, raw([]), mapping=mapping({"meter_id": "m", "start": "s"}))


def test_bad_records_are_quarantined_with_reasons_never_dropped():
    rows = [
        {"m": "M1", "s": "2024-01-01T00:00Z", "e": "2024-01-01T00:30Z", "v": 1.0},
        {"m": "M1", "s": "yesterday-ish", "e": "2024-01-01T01:00Z", "v": 1.0},
        {"m": "M1", "s": "2024-01-01T02:00Z", "e": "2024-01-01T01:00Z", "v": 1.0},
        {"m": None, "s": "2024-01-01T03:00Z", "e": "2024-01-01T03:30Z", "v": 1.0},
        {"m": "M1", "s": "2024-01-01T04:00Z", "e": "2024-01-01T04:30Z", "v": "n/a"},
    ]
    t = build_tables(PROFILE, raw(rows), mapping=mapping())
    assert len(t.usage) + len(t.quarantine) == len(rows)
    reasons = " | ".join(t.quarantine["reason"])
    for text in ("cannot be parsed", "end is not after start", "no meter id", "not a number"):
        assert text in reasons
    assert set(t.quarantine["stage"]) == {"transform"}


def test_compound_meter_key_and_constants():
    rows = [
        {"site": "A", "serial": "1", "s": 0, "e": 1800, "v": 1.0},
        {"site": "B", "serial": "1", "s": 0, "e": 1800, "v": 2.0},
    ]
    meters = [{"id": "A:1", "site": "A", "unit": "kWh"}, {"id": "B:1", "site": "B", "unit": "kWh"}]
    fields = {
        "meter_id": ["site", "serial"],
        "start": "s",
        "end": "e",
        "consumption": "v",
        "currency": {"const": "EUR"},
    }
    t = build_tables(PROFILE, raw(rows, meters), mapping=mapping(fields))
    assert list(t.usage["meter_id"].astype(str)) == ["A:1", "B:1"]
    assert set(t.usage["currency"].astype(str)) == {"EUR"}


def test_explode_nested_measurements_and_assets_derived_from_meters():
    meters = [
        {
            "id": "X",
            "addr": "1 High St",
            "measurements": [
                {"id": "X-e", "unit": "kWh", "timeseries": {"key": "k1"}},
                {"id": "X-g", "unit": "m3", "timeseries": {"key": "k2"}},
            ],
        },
        {
            "id": "Y",
            "addr": "1 High St",
            "measurements": [{"id": "Y-e", "unit": "Wh", "timeseries": {"key": "k3"}}],
        },
    ]
    m = {
        "assets": {"derive_from": "meters", "fields": {"asset_id": "addr", "name": "addr"}},
        "meters": {
            "resource": "meters",
            "explode": "measurements",
            "fields": {
                "meter_id": "measurements.timeseries.key",
                "asset_id": "addr",
                "raw_unit": "measurements.unit",
                "meter_type": {"const": "Energy"},
                "description": "measurements.id",
            },
        },
    }
    t = build_tables(PROFILE, {"meters": meters}, mapping=m)
    assert list(t.meters["meter_id"]) == ["k1", "k2", "k3"]
    assert list(t.meters["raw_unit"]) == ["kWh", "m3", "Wh"]
    assert list(t.assets["asset_id"]) == ["1 High St"]


def test_unmapped_value_map_entry_is_quarantined():
    m = {
        "meters": {
            "resource": "meters",
            "fields": {"meter_id": "id", "asset_id": "site", "meter_type": "c", "raw_unit": "unit"},
            "value_maps": {"meter_type": {"electricity": "Energy"}},
        }
    }
    meters = [
        {"id": "A", "site": "S", "c": "electricity", "unit": "kWh"},
        {"id": "B", "site": "S", "c": "co2", "unit": "ppm"},
    ]
    t = build_tables(PROFILE, {"meters": meters}, mapping=m)
    assert list(t.meters["meter_id"]) == ["A"]
    assert "co2" in t.quarantine["reason"].iloc[0]


def test_sandbox_profile_pipeline_matches_ground_truth():
    from scaler_workbench.sandbox.generate import (
        BillSeries,
        IntervalSeries,
        RegisterSeries,
        SandboxData,
    )

    d = SandboxData.generate(seed=3, sites=5, meters_per_site=3, end="2024-04-01")
    records: dict[str, list] = {
        "sites": d.sites,
        "meters": [],
        "intervals": [],
        "solar": [],
        "registers": [],
        "bills": [],
    }
    for s in d.sites:
        for m in d.meters_of(s["id"]):
            records["meters"].append({**m, "_parent": {"site_id": s["id"]}})
            ser = d.series[m["id"]]
            p = {"_parent": {"meter_id": m["id"]}}
            if isinstance(ser, IntervalSeries):
                recs = d.interval_records(m["id"], 0, ser.t_idx.size)
                # the profile's parent_filter: solar meters' intervals are the `solar` resource
                name = "solar" if m["commodity"] == "solar" else "intervals"
                records[name] += [{**r, **p} for r in recs]
            elif isinstance(ser, RegisterSeries):
                recs = d.reading_records(m["id"], 0, ser.d_idx.size)
                records["registers"] += [{**r, **p} for r in recs]
            elif isinstance(ser, BillSeries):
                records["bills"] += [{**r, **p} for r in d.bill_records(m["id"], 0, len(ser.start))]
    profile = read_profile("mappings/sandbox/profile.toml")
    t = run_pipeline(profile, records)
    u = t.usage
    u["month"] = [
        s.tz_convert(z).strftime("%Y-%m") for s, z in zip(u["start"], u["timezone"], strict=True)
    ]
    gt = d.ground_truth()
    mg = gt.merge(u, on=["meter_id", "month"], how="outer", suffixes=("_gt", ""))
    assert mg["consumption"].notna().all() and mg["consumption_gt"].notna().all()
    made = mg["production_gt"].notna()  # solar meters: production, and consumption 0
    assert made.any() and (mg.loc[made, "consumption"] == 0.0).all()
    assert (mg.loc[made, "consumption_gt"] == 0.0).all()
    assert mg.loc[~made, "production"].isna().all()
    got = mg["consumption"].where(~made, mg["production"])
    want = mg["consumption_gt"].where(~made, mg["production_gt"])
    rel = (got - want).abs() / want.abs()
    assert rel.max() < 1e-9
    assert (t.quarantine["severity"] != "error").all()


def test_one_table_fed_by_several_resources():
    m = {
        "meters": {
            "resource": ["elec_points", "gas_points"],
            "fields": {
                "meter_id": "id",
                "asset_id": {"const": "S1"},
                "meter_type": {"const": "Energy"},
                "raw_unit": "unit",
            },
        }
    }
    raw = {
        "elec_points": [{"id": "E1", "unit": "kWh"}],
        "gas_points": [{"id": "G1", "unit": "m3"}, {"id": "G2", "unit": "kWh"}],
    }
    tables = build_tables(PROFILE, raw, mapping=m)
    assert list(tables.meters["meter_id"]) == ["E1", "G1", "G2"]
    assert list(tables.meters["raw_unit"]) == ["kWh", "m3", "kWh"]


@pytest.mark.parametrize("duration", ["30min", "0min", "-30min"])
def test_end_from_a_duration_is_after_start_only_for_a_positive_duration(duration):
    """``end = start + duration``: a positive duration proves ``end > start`` for every row
    with a start (the row-by-row check is skipped); zero or negative is still checked."""
    rows = [
        {"m": "M1", "s": "2024-01-01T00:00:00Z", "v": 1.0},
        {"m": "M1", "s": None, "v": 2.0},  # no start: "start is missing", never "not after"
        {"m": "M1", "s": "2024-01-01T01:00:00Z", "v": float("inf")},
        {"m": None, "s": "2024-01-01T02:00:00Z", "v": 3.0},
    ]
    fields = {"meter_id": "m", "start": "s", "consumption": "v"}
    t = build_tables(PROFILE, raw(rows), mapping=mapping(fields, duration=duration))
    assert len(t.usage) + len(t.quarantine) == len(rows)
    q = t.quarantine.set_index("rule")["reason"]
    not_after = [r for r in t.quarantine["reason"] if "end is not after start" in r]
    if duration == "30min":
        assert t.usage["_row"].tolist() == [0]
        assert (t.usage["end"] - t.usage["start"] == pd.Timedelta(duration)).all()
        assert not not_after
        assert "consumption is infinite" in q["non_finite"]
    else:  # every row with a start and a meter fails the check
        assert len(t.usage) == 0
        assert len(not_after) == 3
    assert sum("start is missing" in r for r in t.quarantine["reason"]) == 1
    assert sum("no meter id" in r for r in t.quarantine["reason"]) == 1


def test_a_chunk_without_bad_rows_keeps_no_row_numbers():
    """No row set aside and no offset: positions say the lineage, no ``_row`` column."""
    rows = [{"m": "M1", "s": f"2024-01-01T0{h}:00:00Z", "v": float(h)} for h in range(4)]
    fields = {"meter_id": "m", "start": "s", "consumption": "v"}
    t = build_tables(PROFILE, raw(rows), mapping=mapping(fields, duration="1h"))
    assert "_row" not in t.usage and len(t.usage) == 4 and not len(t.quarantine)
