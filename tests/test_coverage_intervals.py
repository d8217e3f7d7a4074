"""Interval completeness per meter and local month (coverage.interval_completeness) and the
month status classifier (coverage.classify_months): DST-aware counts, holes, active periods."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaler_workbench.coverage import (
    MONTH_STATUSES,
    classify_months,
    interval_completeness,
)
from scaler_workbench.exceptions import SchemaError
from scaler_workbench.sandbox import SandboxData


def _intervals(meter: str, tz: str, first: str, end: str, minutes: int) -> pd.DataFrame:
    """Complete intervals from local midnight ``first`` to local midnight ``end`` (exclusive)."""
    lo = pd.Timestamp(first).tz_localize(tz).tz_convert("UTC")
    hi = pd.Timestamp(end).tz_localize(tz).tz_convert("UTC")
    start = pd.date_range(lo, hi, freq=f"{minutes}min", inclusive="left")
    return pd.DataFrame(
        {
            "meter_id": meter,
            "start": start,
            "end": start + pd.Timedelta(minutes=minutes),
            "timezone": tz,
            "consumption": 1.0,
            "estimated": False,
        }
    )


def _drop_local(frame: pd.DataFrame, lo: str, hi: str) -> pd.DataFrame:
    """Remove the intervals starting in local [lo, hi)."""
    local = frame["start"].dt.tz_convert(frame["timezone"].iloc[0]).dt.tz_localize(None)
    inside = (local >= pd.Timestamp(lo)) & (local < pd.Timestamp(hi))
    return frame[~inside].reset_index(drop=True)


# (zone, month, first day of next month, minutes, expected intervals of the month)
DST_MONTHS = [
    ("Europe/London", "2024-03", "2024-04-01", 15, 31 * 96 - 4),
    ("Europe/London", "2024-03", "2024-04-01", 30, 31 * 48 - 2),
    ("Europe/London", "2024-03", "2024-04-01", 60, 31 * 24 - 1),
    ("Europe/London", "2024-10", "2024-11-01", 15, 31 * 96 + 4),
    ("Europe/London", "2024-10", "2024-11-01", 30, 31 * 48 + 2),
    ("Europe/London", "2024-10", "2024-11-01", 60, 31 * 24 + 1),
    ("America/New_York", "2024-03", "2024-04-01", 15, 31 * 96 - 4),
    ("America/New_York", "2024-03", "2024-04-01", 30, 31 * 48 - 2),
    ("America/New_York", "2024-03", "2024-04-01", 60, 31 * 24 - 1),
    ("America/New_York", "2024-11", "2024-12-01", 15, 30 * 96 + 4),
    ("America/New_York", "2024-11", "2024-12-01", 30, 30 * 48 + 2),
    ("America/New_York", "2024-11", "2024-12-01", 60, 30 * 24 + 1),
]


@pytest.mark.parametrize(("tz", "month", "nxt", "minutes", "expected"), DST_MONTHS)
def test_complete_dst_months_count_short_and_long_days(
    tz: str, month: str, nxt: str, minutes: int, expected: int
) -> None:
    frame = _intervals("M1", tz, f"{month}-01", nxt, minutes)
    result = interval_completeness(frame)
    (row,) = result.months.to_dict("records")
    assert row["month"] == month and row["timezone"] == tz
    assert row["interval_seconds"] == minutes * 60
    assert row["expected_intervals"] == expected == row["intervals"] == len(frame)
    assert row["days_with_data"] == row["days_in_month"] == pd.Period(month).days_in_month
    assert row["first_local"] == pd.Timestamp(f"{month}-01")
    assert row["last_local"] == pd.Timestamp(nxt)
    assert (row["missing_days"], row["hole_intervals"], row["estimated_share"]) == (0, 0, 0.0)
    assert result.holes.empty
    assert classify_months(result.months)["status"].tolist() == ["actual"]


@pytest.mark.parametrize(
    ("tz", "day", "minutes", "per_day"),
    [
        ("Europe/London", "2024-03-31", 30, 46),
        ("Europe/London", "2024-10-27", 30, 50),
        ("Europe/London", "2024-10-27", 15, 100),
        ("America/New_York", "2024-03-10", 60, 23),
        ("America/New_York", "2024-11-03", 60, 25),
        ("America/New_York", "2024-11-03", 15, 100),
    ],
)
def test_a_missing_dst_day_is_a_hole_of_its_own_length(
    tz: str, day: str, minutes: int, per_day: int
) -> None:
    month = day[:7]
    nxt = str(pd.Period(month) + 1) + "-01"
    # data runs two days into the next month so that a month's last day is interior too
    after = str((pd.Timestamp(nxt) + pd.Timedelta(days=2)).date())
    full = _intervals("M1", tz, f"{month}-01", after, minutes)
    nxt_day = str((pd.Timestamp(day) + pd.Timedelta(days=1)).date())
    frame = _drop_local(full, day, nxt_day)
    assert len(full) - len(frame) == per_day
    result = interval_completeness(frame)
    row = result.months.to_dict("records")[0]
    assert row["month"] == month
    assert row["days_with_data"] == row["days_in_month"] - 1
    assert row["intervals"] + per_day == row["expected_intervals"]
    assert (row["missing_days"], row["hole_intervals"]) == (1, per_day)
    (hole,) = result.holes.to_dict("records")
    assert hole == {
        "meter_id": "M1",
        "month": month,
        "date": day,
        "kind": "day",
        "start_local": pd.Timestamp(day),
        "end_local": pd.Timestamp(nxt_day),
        "missing_intervals": per_day,
    }
    assert classify_months(result.months)["status"].tolist() == ["partial", "partial"]


@pytest.mark.parametrize("minutes", [15, 30, 60])
def test_a_three_hour_hole_inside_a_day_names_its_local_times(minutes: int) -> None:
    full = _intervals("M1", "Europe/London", "2024-05-01", "2024-06-01", minutes)
    frame = _drop_local(full, "2024-05-13T09:00", "2024-05-13T12:00")
    result = interval_completeness(frame)
    (hole,) = result.holes.to_dict("records")
    assert (hole["date"], hole["kind"]) == ("2024-05-13", "intervals")
    assert hole["start_local"] == pd.Timestamp("2024-05-13T09:00")
    assert hole["end_local"] == pd.Timestamp("2024-05-13T12:00")
    assert hole["missing_intervals"] == 3 * 60 // minutes
    (row,) = result.months.to_dict("records")
    assert row["days_with_data"] == 31 and row["missing_days"] == 0
    assert row["hole_intervals"] == 3 * 60 // minutes
    assert row["intervals"] == row["expected_intervals"] - 3 * 60 // minutes


def test_a_hole_across_midnight_and_a_month_end_is_split_by_local_day() -> None:
    full = _intervals("M1", "America/New_York", "2024-02-01", "2024-04-01", 30)
    frame = _drop_local(full, "2024-02-28T22:00", "2024-03-02T01:30")
    result = interval_completeness(frame)
    holes = result.holes
    assert holes["date"].tolist() == ["2024-02-28", "2024-02-29", "2024-03-01", "2024-03-02"]
    assert holes["kind"].tolist() == ["intervals", "day", "day", "intervals"]
    assert holes["month"].tolist() == ["2024-02", "2024-02", "2024-03", "2024-03"]
    assert holes["missing_intervals"].tolist() == [4, 48, 48, 3]
    assert holes["end_local"].iloc[-1] == pd.Timestamp("2024-03-02T01:30")
    months = result.months.set_index("month")
    assert months.loc["2024-02", "missing_days"] == 1
    assert months.loc["2024-03", "hole_intervals"] == 51


def test_move_in_month_starts_late_without_holes_and_active_from_makes_it_actual() -> None:
    frame = _intervals("M1", "Europe/London", "2024-03-14", "2024-05-01", 30)
    result = interval_completeness(frame)
    march = result.months.iloc[0]
    assert (march["month"], march["days_with_data"], march["days_in_month"]) == ("2024-03", 18, 31)
    assert march["first_local"] == pd.Timestamp("2024-03-14")
    assert march["intervals"] == 18 * 48 - 2  # the spring-forward day is in the month's tail
    assert result.holes.empty  # days before the first data are not holes
    plain = classify_months(result.months)
    assert plain["status"].tolist() == ["partial", "actual"]
    active = pd.DataFrame({"meter_id": ["M1"], "active_from": ["2024-03-14"]})
    moved_in = classify_months(result.months, active=active)
    assert moved_in["status"].tolist() == ["actual", "actual"]
    assert moved_in["expected_active"].tolist() == [18 * 48 - 2, 30 * 48]


def test_move_out_month_ends_early_and_months_outside_the_active_period_are_inactive() -> None:
    frame = _intervals("M1", "Europe/London", "2024-01-01", "2024-02-10", 60)
    months = interval_completeness(frame).months
    assert months["last_local"].tolist()[-1] == pd.Timestamp("2024-02-10")
    later = pd.DataFrame(
        {
            "meter_id": ["M1"],
            "month": ["2024-03"],
            "intervals": [0],
            "expected_intervals": [743],
            "interval_seconds": [3600],
            "timezone": ["Europe/London"],
        }
    )
    frame2 = pd.concat([months, later], ignore_index=True)
    active = pd.DataFrame({"meter_id": ["M1"], "active_to": ["2024-02-10"]})
    assert classify_months(frame2, active=active)["status"].tolist() == [
        "actual",
        "actual",
        "inactive",
    ]
    assert classify_months(frame2)["status"].tolist() == ["actual", "partial", "missing"]


def test_null_values_are_no_data_and_estimates_and_duplicates_count_once() -> None:
    frame = _intervals("M1", "Europe/London", "2024-06-01", "2024-07-01", 30)
    local_hour = frame["start"].dt.tz_convert("Europe/London").dt.hour
    frame.loc[(local_hour < 6) | (local_hour >= 18), "consumption"] = np.nan
    frame.loc[frame.index[100:130], "estimated"] = True
    repeat = frame.iloc[200:210].copy()  # sent twice, the second time without values
    repeat["consumption"] = np.nan
    twice = pd.concat([frame, frame.iloc[200:210], repeat]).sample(frac=1.0, random_state=1)
    result = interval_completeness(twice)
    (row,) = result.months.to_dict("records")
    assert row["intervals"] == row["null_intervals"] == 30 * 24
    assert row["estimated_share"] == pytest.approx(
        frame.loc[frame.index[100:130], "consumption"].notna().sum() / (30 * 24)
    )
    assert row["first_local"] == pd.Timestamp("2024-06-01T06:00")
    assert row["last_local"] == pd.Timestamp("2024-06-30T18:00")
    assert row["days_with_data"] == 30 and row["hole_intervals"] == 0
    # delivered nulls are no holes; whether they are missing data is the profile's policy
    assert result.holes.empty
    assert classify_months(result.months)["status"].tolist() == ["partial"]
    assert classify_months(result.months, count_nulls=True)["status"].tolist() == ["estimated"]
    assert classify_months(result.months, min_share=0.5)["status"].tolist() == ["estimated"]
    # a meter that only ever sent nulls has months, but no data in them
    only_nulls = interval_completeness(frame.assign(consumption=np.nan)).months
    assert only_nulls[["intervals", "days_with_data"]].values.tolist() == [[0, 0]]
    assert pd.isna(only_nulls["first_local"].iloc[0])
    assert classify_months(only_nulls)["status"].tolist() == ["missing"]


def test_non_interval_meters_are_left_out_and_meters_are_separate() -> None:
    daily = pd.DataFrame(
        {
            "meter_id": "B1",
            "start": pd.date_range("2024-01-01", periods=31, freq="D", tz="UTC"),
            "timezone": "UTC",
        }
    )
    daily["end"] = daily["start"] + pd.Timedelta(days=1)
    quarter = _intervals("Q1", "America/New_York", "2024-01-01", "2024-02-01", 15)
    result = interval_completeness(pd.concat([quarter, daily], ignore_index=True))
    assert result.months["meter_id"].tolist() == ["Q1"]
    assert result.months["expected_intervals"].tolist() == [31 * 96]


def test_a_month_without_any_interval_between_data_is_reported() -> None:
    frame = pd.concat(
        [
            _intervals("M1", "Europe/London", "2024-01-01", "2024-02-01", 60),
            _intervals("M1", "Europe/London", "2024-03-01", "2024-04-01", 60),
        ],
        ignore_index=True,
    )
    result = interval_completeness(frame)
    feb = result.months.set_index("month").loc["2024-02"]
    assert (feb["intervals"], feb["days_with_data"], feb["missing_days"]) == (0, 0, 29)
    assert pd.isna(feb["first_local"])
    assert classify_months(result.months)["status"].tolist() == ["actual", "missing", "actual"]


def test_bad_input_is_a_schema_error() -> None:
    with pytest.raises(SchemaError, match="lacks column"):
        interval_completeness(pd.DataFrame({"meter_id": ["M1"]}))
    naive = pd.DataFrame(
        {
            "meter_id": ["M1"],
            "start": pd.to_datetime(["2024-01-01"]),
            "end": pd.to_datetime(["2024-01-01T00:30"]),
        }
    )
    with pytest.raises(SchemaError, match="naive"):
        interval_completeness(naive)
    bad_zone = _intervals("M1", "UTC", "2024-01-01", "2024-01-02", 30).assign(timezone="Mars/X")
    with pytest.raises(SchemaError, match="unknown time zone"):
        interval_completeness(bad_zone)
    with pytest.raises(SchemaError, match="expected_intervals"):
        classify_months(pd.DataFrame({"meter_id": ["M1"], "month": ["2024-01"]}))
    empty = interval_completeness(_intervals("M1", "UTC", "2024-01-01", "2024-01-01", 30))
    assert empty.months.empty and empty.holes.empty


def test_bill_only_months_after_the_last_bill_are_not_yet_billed() -> None:
    # bills Jan 15 - Mar 14 and Mar 15 - May 14 (the sandbox's bi-monthly trap), run to July
    months = pd.DataFrame(
        {
            "meter_id": "W1",
            "month": ["2024-01", "2024-02", "2024-03", "2024-04", "2024-05", "2024-06", "2024-07"],
            "days_with_data": [17, 29, 31, 30, 14, 0, 0],
        }
    )
    billing = pd.DataFrame({"meter_id": ["W1"], "billed_until": ["2024-05-15"], "lag_days": [61]})
    active = pd.DataFrame({"meter_id": ["W1"], "active_from": ["2024-01-15"]})
    status = classify_months(months, billing=billing, active=active)["status"].tolist()
    assert status == [
        "actual",
        "actual",
        "actual",
        "actual",
        "not_yet_billed",
        "not_yet_billed",
        "not_yet_billed",
    ]
    short_lag = billing.assign(lag_days=10)  # the next bill was due on May 25
    status = classify_months(months, billing=short_lag, active=active)["status"].tolist()
    assert status[4:] == ["not_yet_billed", "missing", "missing"]
    assert classify_months(months)["status"].tolist()[4:] == ["partial", "missing", "missing"]
    assert list(classify_months(months)["status"].cat.categories) == list(MONTH_STATUSES)


def test_sandbox_traps_measure_as_their_facts_say() -> None:
    data = SandboxData.generate(seed=0, traps=True)
    facts = data.trap_facts()
    frames = []
    for trap in ("mid_month_start", "mid_month_end", "missing_day", "hole_3h", "null_night"):
        mid = facts[trap]["meter_id"]
        rec = pd.DataFrame(data.interval_records(mid, 0, 10**6))
        frames.append(
            pd.DataFrame(
                {
                    "meter_id": mid,
                    "start": pd.to_datetime(rec["interval_start"], utc=True),
                    "end": pd.to_datetime(rec["interval_end"], utc=True),
                    "timezone": facts[trap]["timezone"],
                    "consumption": rec["value"].astype("float64"),
                    "estimated": rec["estimated"],
                }
            )
        )
    result = interval_completeness(pd.concat(frames, ignore_index=True))
    got = result.months.set_index(["meter_id", "month"])
    for trap in ("mid_month_start", "mid_month_end", "missing_day", "hole_3h", "null_night"):
        f = facts[trap]
        for m in f["months"]:
            if m["days_with_data"] == 0:
                continue
            row = got.loc[(f["meter_id"], m["month"])]
            assert row["intervals"] == m["intervals"] - m["null_intervals"]
            assert row["null_intervals"] == m["null_intervals"]
            assert row["expected_intervals"] == m["expected_intervals"]
            assert row["days_with_data"] == m["days_with_data"]
            assert row["first_local"] == pd.Timestamp(m["first_local"])
            assert row["last_local"] == pd.Timestamp(m["last_local"])
    holes = result.holes
    (day,) = holes[holes["meter_id"] == facts["missing_day"]["meter_id"]].to_dict("records")
    assert (day["kind"], [day["date"]]) == ("day", facts["missing_day"]["missing_dates"])
    (gap,) = holes[holes["meter_id"] == facts["hole_3h"]["meter_id"]].to_dict("records")
    want = facts["hole_3h"]["holes"][0]
    assert (gap["date"], gap["missing_intervals"]) == (want["date"], want["intervals"])
    assert gap["start_local"].strftime("%H:%M") == want["start"]
    assert gap["end_local"].strftime("%H:%M") == want["end"]
    assert not (holes["meter_id"] == facts["null_night"]["meter_id"]).any()
    start = facts["mid_month_start"]
    active = pd.DataFrame({"meter_id": [start["meter_id"]], "active_from": [start["installed_on"]]})
    mine = result.months[result.months["meter_id"] == start["meter_id"]]
    assert set(classify_months(mine, active=active)["status"]) == {"actual"}


@settings(max_examples=40, deadline=None)
@given(
    minutes=st.sampled_from([15, 30, 60]),
    tz=st.sampled_from(["Europe/London", "America/New_York", "UTC"]),
    seed=st.integers(0, 2**32 - 1),
    share=st.floats(0.0, 0.3),
)
def test_counts_add_up_for_random_drops(minutes: int, tz: str, seed: int, share: float) -> None:
    full = _intervals("M1", tz, "2024-10-20", "2024-11-10", minutes)
    rng = np.random.default_rng(seed)
    keep = rng.random(len(full)) >= share
    keep[[0, -1]] = True  # first and last present: every drop is interior
    frame = full[keep].reset_index(drop=True)
    nulls = rng.random(len(frame)) < share / 2
    nulls[[0, -1]] = False
    frame.loc[nulls, "consumption"] = np.nan
    result = interval_completeness(frame)
    months = result.months
    assert months["intervals"].sum() == (~nulls).sum()
    assert months["null_intervals"].sum() == nulls.sum()
    assert (
        months["hole_intervals"].sum() == (~keep).sum() == result.holes["missing_intervals"].sum()
    )
    local = frame["start"][~nulls].dt.tz_convert(tz).dt.tz_localize(None)
    assert months["days_with_data"].sum() == local.dt.normalize().nunique()
    # intervals before the first / after the last data (outside Oct 20 .. Nov 10) + holes
    # + intervals present = expected
    outside = (
        pd.Timestamp("2024-10-20").tz_localize(tz) - pd.Timestamp("2024-10-01").tz_localize(tz)
    ) + (pd.Timestamp("2024-12-01").tz_localize(tz) - pd.Timestamp("2024-11-10").tz_localize(tz))
    n_outside = int(outside / pd.Timedelta(minutes=minutes))
    delivered = months["intervals"].sum() + months["null_intervals"].sum()
    assert delivered + months["hole_intervals"].sum() + n_outside == (
        months["expected_intervals"].sum()
    )
    whole = result.holes[result.holes["kind"] == "day"]
    assert (whole["end_local"] - whole["start_local"] == pd.Timedelta(days=1)).all()


@pytest.mark.parametrize(
    "zone", ["Europe/London", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu", "UTC"]
)
def test_quarter_hour_offsets_equal_the_exact_conversion(zone: str) -> None:
    from scaler_workbench.coverage import _local_by_quarter_hours

    utc = pd.date_range("2023-12-31T00:07:13", "2025-01-02", freq="17min", tz="UTC")
    utc = utc.as_unit("ns")
    ns = utc.asi8.copy()
    got = _local_by_quarter_hours(ns, zone)
    assert got is not None
    want = utc.tz_convert(zone).tz_localize(None).as_unit("ns").asi8
    np.testing.assert_array_equal(got, want)
    assert _local_by_quarter_hours(ns[:10], zone) is None  # few instants: converted exactly
