"""The interval counts folded into the chunked calendarization equal the reference.

``usage._calendarize_chunked`` counts intervals per meter and local month while it aggregates
(issue 13: the benchmark's usage stage); ``coverage.interval_completeness`` stays the reference.
Random interval data with DST days (Europe/London, America/New_York), holes of intervals and of
whole days, repeated starts (with and without nulls, revised values), nulls, estimated flags,
several meters and interval lengths, cut into chunks of every awkward size: the folded frames
equal the reference frame for frame, or the fold declines (None) and the reference is used.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import scaler_workbench.usage as U
from scaler_workbench.coverage import interval_completeness


def _frame(seed: int, *, zone: str | None, minutes: int, nulls: bool, dups: bool) -> pd.DataFrame:
    """Ordered interval rows of 3 meters over 2023-03-20 .. 2023-04-05 and 2023-10-25 ..
    2023-11-08 (both DST changes of London and New York), with holes and repeats."""
    rng = np.random.default_rng(seed)
    step = pd.Timedelta(minutes=minutes)
    parts = []
    for m in range(3):
        for lo, hi in (("2023-03-20", "2023-04-05"), ("2023-10-25", "2023-11-08")):
            start = pd.date_range(lo, hi, freq=step, tz="UTC", inclusive="left")
            keep = rng.random(len(start)) > 0.02  # single missing intervals
            day0 = int(rng.integers(0, 10))  # a whole missing (UTC) day
            keep &= ~(
                (start >= start[0] + pd.Timedelta(days=day0))
                & (start < start[0] + pd.Timedelta(days=day0 + 1))
            )
            if m == 2:  # a 3-hour hole
                keep &= ~((start >= start[50]) & (start < start[50] + pd.Timedelta(hours=3)))
            start = start[keep]
            value = rng.random(len(start)) * 10
            if nulls:
                value[rng.random(len(start)) < 0.05] = np.nan
            est = rng.random(len(start)) < 0.1
            idx = np.arange(len(start))
            if dups:  # a repeated start right after the original (a revised value)
                rep = np.flatnonzero(rng.random(len(start)) < 0.02)
                idx = np.sort(np.r_[idx, rep], kind="stable")
            parts.append(
                pd.DataFrame(
                    {
                        "meter_id": f"M{m}",
                        "start": start[idx],
                        "end": start[idx] + step,
                        "consumption": value[idx] + (np.r_[0, np.diff(idx)] == 0) * 0.5,
                        "estimated": pd.array(est[idx], dtype="boolean"),
                    }
                )
            )
    frame = pd.concat(parts, ignore_index=True)
    frame["meter_id"] = frame["meter_id"].astype("category")
    frame["source"] = pd.Categorical(["u"] * len(frame))
    frame["factor"] = 1.0
    frame["raw_value"] = frame["consumption"]
    frame["_row"] = np.arange(len(frame))
    if zone is not None:
        frame["timezone"] = pd.Categorical([zone] * len(frame))
    return frame


def _folded(frame: pd.DataFrame, rows: int, monkeypatch: pytest.MonkeyPatch) -> object:
    with monkeypatch.context() as mp:
        mp.setattr(U, "_CHUNKED_MIN", 1)
        mp.setattr(U, "_ROWS", rows)
        out: list[object] = []
        U._calendarize(frame, freq="month", keep=None, count_into=out)
    assert len(out) == 1
    return out[0]


def _same(folded: object, frame: pd.DataFrame) -> None:
    ref = interval_completeness(frame, timezone="UTC")
    assert folded is not None
    pd.testing.assert_frame_equal(folded.months, ref.months)  # type: ignore[attr-defined]
    pd.testing.assert_frame_equal(folded.holes, ref.holes)  # type: ignore[attr-defined]


@pytest.mark.parametrize("zone", ["Europe/London", "America/New_York", None])
@pytest.mark.parametrize("minutes", [30, 15, 60])
def test_folded_counts_equal_reference_dst_holes_repeats(
    zone: str | None, minutes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame = _frame(7, zone=zone, minutes=minutes, nulls=True, dups=False)
    folded = _folded(frame, 997, monkeypatch)
    _same(folded, frame)
    months = folded.months  # type: ignore[attr-defined]
    # the DST months hold their short and long days: London's March has 31*48 - 2 half-hours
    if zone == "Europe/London" and minutes == 30:
        march = months[months["month"] == "2023-03"]["expected_intervals"]
        assert set(march) == {31 * 48 - 2}
        october = months[months["month"] == "2023-10"]["expected_intervals"]
        assert set(october) == {31 * 48 + 2}
    assert (months["missing_days"] > 0).any() and (months["null_intervals"] > 0).any()
    assert len(folded.holes) > 0  # type: ignore[attr-defined]


@settings(max_examples=20, deadline=None)
@given(
    st.integers(0, 10_000),
    st.sampled_from(["Europe/London", "America/New_York", None]),
    st.sampled_from([30, 15]),
    st.booleans(),
    st.sampled_from([7, 64, 1000, 100_000]),
)
def test_folded_counts_property(
    seed: int, zone: str | None, minutes: int, nulls: bool, rows: int
) -> None:
    """Repeated starts, nulls or not, any chunk size: equal to the reference, or declined."""
    frame = _frame(seed, zone=zone, minutes=minutes, nulls=nulls, dups=True)
    with pytest.MonkeyPatch.context() as mp:
        folded = _folded(frame, rows, mp)
    if nulls and folded is None:
        return  # a repeated start next to a null: the reference decides which row counts
    _same(folded, frame)


def test_fold_declines_what_it_does_not_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """Meters met twice, unordered starts, mixed lengths, two zones: None (the reference runs)."""
    frame = _frame(3, zone="Europe/London", minutes=30, nulls=False, dups=False)
    # a meter met again after another meter
    again = pd.concat([frame, frame.iloc[:5]], ignore_index=True)
    assert _folded(again, 1000, monkeypatch) is None
    # starts out of order within a meter
    swapped = frame.iloc[np.r_[1, 0, 2 : len(frame)]].reset_index(drop=True)
    assert _folded(swapped, 1000, monkeypatch) is None
    # a row of another length
    mixed = frame.copy()
    mixed.loc[10, "end"] = mixed.loc[10, "start"] + pd.Timedelta(minutes=15)
    assert _folded(mixed, 1000, monkeypatch) is None
    # two zones: the counter is not started
    zones = frame.copy()
    zones["timezone"] = pd.Categorical(
        np.where(zones["meter_id"] == "M0", "America/New_York", "Europe/London")
    )
    assert _folded(zones, 1000, monkeypatch) is None
    # process_usage gives the same completeness and holes either way
    for f in (frame, again, mixed):
        counts = U._interval_counts(f, _folded(f, 1000, monkeypatch))
        ref = U._interval_counts(f)
        pd.testing.assert_frame_equal(counts[0], ref[0])
        pd.testing.assert_frame_equal(counts[1], ref[1])


@pytest.mark.parametrize("rows", [7, 64, 1000, 100_000])
def test_folded_counts_with_unused_source_categories(
    rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A source's rows sliced out of a multi-source frame keep every source category: the
    counter then takes its own keys (meter code and month), not the calendarization's."""
    frame = _frame(11, zone="Europe/London", minutes=30, nulls=False, dups=True)
    frame["source"] = pd.Categorical(["u"] * len(frame), categories=["a", "u", "z"])
    _same(_folded(frame, rows, monkeypatch), frame)
