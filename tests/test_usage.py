"""Tests for scaler_workbench.usage: conflicts, registers, local-time calendarization, reports."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaler_workbench.exceptions import MappingError, UsageError
from scaler_workbench.profile import Profile
from scaler_workbench.schema import Tables
from scaler_workbench.transform import build_tables
from scaler_workbench.usage import (
    calendarize,
    period_report,
    process_usage,
    readings_to_consumption,
    resolve_conflicts,
)

LONDON = "Europe/London"
PROFILE = Profile.from_dict(
    {
        "provider": {"name": "t", "timezone": LONDON},
        "environments": {"x": {"base_url": "http://127.0.0.1"}},
    }
)


def intervals(start, end, tz=LONDON, freq="30min", value=1.0, meter="M1"):
    s = pd.date_range(start, end, freq=freq, tz=tz, inclusive="left")
    return pd.DataFrame(
        {
            "meter_id": meter,
            "start": s.tz_convert("UTC"),
            "end": (s + pd.Timedelta(freq)).tz_convert("UTC"),
            "consumption": value,
            "timezone": tz,
            "source": "intervals",
        }
    )


def bills(periods, meter="M1", tz=LONDON):
    rows = []
    for a, b, v in periods:
        rows.append(
            {
                "meter_id": meter,
                "start": pd.Timestamp(a, tz=tz).tz_convert("UTC"),
                "end": pd.Timestamp(b, tz=tz).tz_convert("UTC"),
                "consumption": v,
                "timezone": tz,
                "source": "bills",
            }
        )
    return pd.DataFrame(rows)


# ---- DST and local time ---------------------------------------------------------------------
def test_pitfall_dst_spring_forward_day_has_46_half_hours_and_23_hours():
    day = calendarize(intervals("2024-03-31", "2024-04-01"), freq="day")
    assert len(day) == 1
    assert day["n_intervals"].iloc[0] == 46 and day["consumption"].iloc[0] == 46.0
    assert (day["end"] - day["start"]).iloc[0] == pd.Timedelta(hours=23)


def test_pitfall_dst_fall_back_day_has_50_half_hours_and_25_hours():
    day = calendarize(intervals("2024-10-27", "2024-10-28"), freq="day")
    assert len(day) == 1
    assert day["n_intervals"].iloc[0] == 50 and day["consumption"].iloc[0] == 50.0
    assert (day["end"] - day["start"]).iloc[0] == pd.Timedelta(hours=25)


def test_pitfall_aggregation_uses_site_local_time_not_utc():
    # 2024-07-01 00:00 BST is 2024-06-30 23:00 UTC: that half-hour belongs to July locally
    m = calendarize(intervals("2024-06-30 23:00", "2024-07-01 01:00"), freq="month")
    assert list(m["consumption"]) == [2.0, 2.0]
    july = m.iloc[1]
    assert july["start"] == pd.Timestamp("2024-06-30T23:00Z")
    assert july["start"].tz_convert(LONDON) == pd.Timestamp("2024-07-01", tz=LONDON)
    assert set(m["timezone"].astype(str)) == {LONDON}


def test_pitfall_new_york_months_use_new_york_midnights():
    m = calendarize(intervals("2024-03-01", "2024-04-01", tz="America/New_York", freq="1h"))
    assert len(m) == 1 and m["n_intervals"].iloc[0] == 31 * 24 - 1
    assert m["start"].iloc[0] == pd.Timestamp("2024-03-01T05:00Z")
    assert m["end"].iloc[0] == pd.Timestamp("2024-04-01T04:00Z")


def test_pitfall_missing_intervals_are_absent_not_zero():
    df = intervals("2024-01-01", "2024-01-04")
    df = df[
        ~df["start"].between(pd.Timestamp("2024-01-02T00:00Z"), pd.Timestamp("2024-01-02T23:59Z"))
    ]
    m = calendarize(df, freq="month")
    assert m["n_intervals"].iloc[0] == 96 and m["days_with_data"].iloc[0] == 2
    d = calendarize(df, freq="day")
    assert len(d) == 2  # no zero row for the missing day


def test_estimated_redelivery_cost_carried_through_aggregation():
    df = intervals("2024-01-01", "2024-01-02")
    df["estimated"] = pd.array([False] * 47 + [True], dtype="boolean")
    df["redelivery"] = 0.5
    df["cost"] = 0.1
    m = calendarize(df, freq="day")
    assert bool(m["estimated"].iloc[0]) is True
    assert m["redelivery"].iloc[0] == pytest.approx(24.0)
    assert m["cost"].iloc[0] == pytest.approx(4.8)
    assert m["method"].iloc[0] == "sum-of-intervals"
    assert m["source_id"].iloc[0] == "intervals[0..47]"


def test_unknown_period_is_usage_error():
    with pytest.raises(UsageError):
        calendarize(intervals("2024-01-01", "2024-01-02"), freq="fortnight")


# ---- bills ------------------------------------------------------------------------------------
def test_pitfall_bill_prorated_by_days_last_piece_takes_remainder():
    m = calendarize(bills([("2024-01-17", "2024-02-16", 30.0)]), freq="month")
    assert list(m["consumption"]) == pytest.approx([15.0, 15.0])
    assert m["consumption"].sum() == 30.0
    assert set(m["method"]) == {"prorated-by-days"}
    assert list(m["days_with_data"]) == [15, 15]


def test_pitfall_prorating_by_local_days_across_dst():
    # 31 local days incl. the 23-hour day: by days, not by hours
    m = calendarize(bills([("2024-03-16", "2024-04-16", 31.0)]), freq="month")
    assert list(m["consumption"]) == pytest.approx([16.0, 15.0], rel=1e-12)


def test_pitfall_inclusive_end_bill_pair_with_shared_boundary_is_flagged():
    profile_map = {
        "meters": {
            "resource": "meters",
            "fields": {
                "meter_id": "id",
                "asset_id": {"const": "S"},
                "meter_type": {"const": "Water"},
                "raw_unit": {"const": "m3"},
            },
        },
        "usage": {
            "bills": {
                "resource": "bills",
                "end_inclusive": True,
                "prorate": "none",
                "kind": "consumption",
                "fields": {"meter_id": "m", "start": "a", "end": "b", "consumption": "v"},
            }
        },
    }
    records = {
        "meters": [{"id": "W"}],
        "bills": [
            {"m": "W", "a": "2024-01-01", "b": "2024-01-31", "v": 31.0},
            {"m": "W", "a": "2024-01-31", "b": "2024-02-29", "v": 30.0},
        ],
    }
    t = build_tables(PROFILE, records, mapping=profile_map)
    assert t.usage["end"].iloc[0] == pd.Timestamp("2024-02-01T00:00Z")
    rep = period_report(t.usage)
    assert list(rep["issue"]) == ["overlap"] and rep["days"].iloc[0] == 1.0
    assert rep["severity"].iloc[0] == "warning"
    from scaler_workbench.units import normalise_tables

    out = process_usage(normalise_tables(t, PROFILE), PROFILE, mapping=profile_map)
    flagged = out.quarantine[out.quarantine["rule"] == "period_overlap"]
    assert len(flagged) == 1 and "boundary" in flagged["reason"].iloc[0]
    assert len(out.usage) == 2


def test_pitfall_gaps_overlaps_and_duplicates_reported():
    df = bills(
        [
            ("2024-01-01", "2024-02-01", 1.0),
            ("2024-02-05", "2024-03-01", 1.0),
            ("2024-02-20", "2024-03-10", 1.0),
            ("2024-02-20", "2024-03-10", 1.0),
        ]
    )
    rep = period_report(df)
    assert sorted(rep["issue"]) == ["duplicate", "gap", "overlap"]
    gap = rep[rep["issue"] == "gap"].iloc[0]
    assert gap["days"] == 4.0


# ---- conflicts -----------------------------------------------------------------------------------
def test_pitfall_duplicates_actual_beats_estimate_then_latest_revision():
    df = bills(
        [
            ("2024-01-01", "2024-02-01", 10.0),
            ("2024-01-01", "2024-02-01", 12.0),
            ("2024-01-01", "2024-02-01", 11.0),
        ]
    )
    df["estimated"] = pd.array([False, True, False], dtype="boolean")
    df["revision"] = [1.0, 3.0, 2.0]
    kept, q = resolve_conflicts(df)
    assert list(kept["consumption"]) == [11.0]  # actual with the highest revision
    assert len(q) == 2 and set(q["severity"]) == {"error"} and set(q["stage"]) == {"usage"}
    assert q["record_key"].str.startswith("M1|2024-01-01").all()
    with pytest.raises(UsageError):
        resolve_conflicts(df, policy={"duplicates": "error"})


def test_unknown_policy_key_is_mapping_error():
    with pytest.raises(MappingError):
        process_usage(Tables(), PROFILE, mapping={"policy": {"dupes": "latest"}})


# ---- registers -----------------------------------------------------------------------------------
def readings(values, meter="M1"):
    ts = pd.date_range("2024-01-01", periods=len(values), freq="D", tz="UTC")
    return pd.DataFrame(
        {"meter_id": meter, "timestamp": ts, "value": values, "raw_value": values, "factor": 1.0}
    )


def test_pitfall_register_rollover_wraps_at_ten_to_the_digits():
    cons, r = readings_to_consumption(readings([99_990.0, 99_998.0, 5.0, 12.0]), digits={"M1": 5})
    assert list(cons["consumption"]) == [8.0, 7.0, 7.0]
    assert list(r["flag"].fillna("")) == ["", "", "rollover", ""]
    assert (cons["consumption"] >= 0).all()


def test_pitfall_register_rollover_digits_inferred():
    cons, r = readings_to_consumption(readings([9_990.0, 9_998.0, 3.0]))
    assert list(cons["consumption"]) == [8.0, 5.0]
    assert r["flag"].iloc[2] == "rollover"


def test_pitfall_register_reset_and_exchange_flagged_never_negative():
    cons, r = readings_to_consumption(readings([500.0, 520.0, 0.0, 10.0, 4000.0, 300.0, 310.0]))
    assert (cons["consumption"] >= 0).all()
    assert list(r["flag"].fillna("")) == ["", "", "reset", "", "", "exchange", ""]
    assert list(cons["consumption"]) == [20.0, 10.0, 3990.0, 10.0]
    assert set(cons["method"]) == {"register-difference"}


# ---- properties ------------------------------------------------------------------------------------
bill_lists = st.lists(
    st.tuples(
        st.integers(0, 700),
        st.integers(1, 120),
        st.floats(0.001, 1e7, allow_nan=False, allow_infinity=False),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=60, deadline=None)
@given(bl=bill_lists, tz=st.sampled_from([LONDON, "America/New_York", "UTC", "Australia/Sydney"]))
def test_property_proration_conserves_total(bl, tz):
    base = pd.Timestamp("2023-01-01")
    periods = [
        (
            (base + pd.Timedelta(days=a)).isoformat(),
            (base + pd.Timedelta(days=a + n)).isoformat(),
            v,
        )
        for a, n, v in bl
    ]
    df = bills(periods, tz=tz)
    total = df["consumption"].sum()
    for freq in ("month", "day"):
        out = calendarize(df, freq=freq)
        assert out["consumption"].sum() == pytest.approx(total, rel=1e-9)
        assert (out["end"] > out["start"]).all()


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=300),
    offset=st.integers(0, 20000),
    keep=st.integers(1, 5),
)
def test_property_aggregation_conserves_total(values, offset, keep):
    start = pd.Timestamp("2024-01-01", tz=LONDON) + pd.Timedelta(minutes=30 * offset)
    df = intervals(start, start + pd.Timedelta(minutes=30 * len(values)))
    df["consumption"] = values[: len(df)]
    df = df.iloc[::keep]
    out = calendarize(df, freq="month")
    assert out["consumption"].sum() == pytest.approx(df["consumption"].sum(), rel=1e-9, abs=1e-9)
    assert out["n_intervals"].sum() == len(df)


def test_large_interval_frame_is_vectorised_and_fast():
    import time

    frames = [intervals("2024-01-01", "2025-01-01", meter=f"M{i}") for i in range(6)]
    df = pd.concat(frames, ignore_index=True)
    df["meter_id"] = df["meter_id"].astype("category")
    t0 = time.perf_counter()
    out = calendarize(df, freq="month")
    assert time.perf_counter() - t0 < 2.0
    assert len(out) == 72 and out["consumption"].sum() == len(df)
    assert out["n_intervals"].sum() == len(df)
