"""The interval-completeness frames and the local texts equal the implementations they replaced.

``coverage.completeness_frames`` / ``_holes_of_gaps`` now convert each distinct (zone, day)
once, convert with pandas directly (no quarter-hour table for a few thousand instants), build
the month and date labels per distinct value and order the holes by a lexsort of the meters'
ranks; ``usage._local_text`` builds ``YYYY-MM-DDTHH:MM`` from the distinct days and a table of
minutes. The references below are the replaced code, kept verbatim (helpers through ``C.``).
Random interval rows over DST changes in several zones (one with a 30-minute DST step, ones
whose clocks change at midnight), holes of intervals, across midnight and month ends, whole
missing days (short and long ones): equal frames, dtypes and order included.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import scaler_workbench.coverage as C
import scaler_workbench.usage as U
from scaler_workbench.coverage import interval_completeness


def _completeness_frames_reference(
    found: pd.DataFrame,
    meter_names: np.ndarray,
    meter_zone: np.ndarray,
    length_s: np.ndarray,
    gap_lo: np.ndarray,
    gap_hi: np.ndarray,
    gap_code: np.ndarray,
) -> C.IntervalCompleteness:
    """The implementation before the hole texts were built per distinct value."""
    # every month from each meter's first to last month with data
    meter_first_rows = C._segment_starts(found["code"].to_numpy())
    f_month = found["month"].to_numpy(dtype=np.int64)
    m_lo = np.minimum.reduceat(f_month, meter_first_rows)
    m_hi = np.maximum.reduceat(f_month, meter_first_rows)
    meter_codes = found["code"].to_numpy()[meter_first_rows]
    span = m_hi - m_lo + 1
    grid = pd.DataFrame(
        {
            "code": np.repeat(meter_codes, span),
            "month": np.repeat(m_lo, span)
            + (np.arange(span.sum()) - np.repeat(np.cumsum(span) - span, span)),
        }
    )
    # each found row's place in the grid: its meter's offset plus its month's (no merge)
    seg_off = np.cumsum(span) - span
    code_seg = np.full(int(meter_codes.max()) + 1, -1, dtype=np.int64)
    code_seg[meter_codes] = np.arange(meter_codes.size)
    n_grid = int(span.sum())

    def grid_at(code: np.ndarray, month: np.ndarray) -> np.ndarray:
        seg = code_seg[code]
        return seg_off[seg] + (month - m_lo[seg])

    at = grid_at(found["code"].to_numpy(), f_month)
    out: dict[str, np.ndarray] = {}
    for col in ("intervals", "null_intervals", "days_with_data", "estimated_n"):
        out[col] = np.zeros(n_grid, dtype=np.int64)
        out[col][at] = found[col].to_numpy(dtype=np.int64)
    for col in ("first_local", "last_local"):
        out[col] = np.full(n_grid, np.datetime64("NaT"), dtype="datetime64[ns]")
        out[col][at] = found[col].to_numpy(dtype="datetime64[ns]")
    g_code = grid["code"].to_numpy()
    g_month = grid["month"].to_numpy()
    g_zone = meter_zone[g_code]
    m_start = g_month.astype("datetime64[M]").astype("datetime64[ns]").astype(np.int64)
    m_end = (g_month + 1).astype("datetime64[M]").astype("datetime64[ns]").astype(np.int64)
    utc_len = C._utc_of_local(m_end, g_zone) - C._utc_of_local(m_start, g_zone)
    g_len_s = length_s[g_code]

    holes = _holes_of_gaps_reference(
        gap_lo, gap_hi, gap_code, length_s[gap_code] * C._NS, meter_zone
    )
    if len(holes):  # per (meter, month): holes come sorted by meter and time
        h_month = holes["month_code"].to_numpy(np.int64)
        hk = holes["code"].to_numpy(np.int64) * 1_000_000 + (h_month - h_month.min())
        hs = C._segment_starts(hk)
        h_at = grid_at(holes["code"].to_numpy()[hs], h_month[hs])
        out["missing_days"] = np.zeros(n_grid, dtype=np.int64)
        out["missing_days"][h_at] = np.add.reduceat(
            (holes["kind"].to_numpy() == "day").astype(np.int64), hs
        )
        out["hole_intervals"] = np.zeros(n_grid, dtype=np.int64)
        out["hole_intervals"][h_at] = np.add.reduceat(
            holes["missing_intervals"].to_numpy(np.int64), hs
        )
    else:
        out["missing_days"] = np.zeros(n_grid, dtype=np.int64)
        out["hole_intervals"] = np.zeros(n_grid, dtype=np.int64)
    intervals = out["intervals"]
    est_n = out["estimated_n"].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(intervals > 0, est_n / np.maximum(intervals, 1), 0.0)
    # sorted by meter id, then month: the grid permuted by the ids' ranks (ids are unique)
    names = np.asarray(meter_names, dtype=object)
    rank = np.empty(names.size, dtype=np.int64)
    rank[np.argsort(names.astype(str), kind="stable")] = np.arange(names.size)
    order = np.lexsort((g_month, rank[g_code]))
    g_code, g_month, g_zone, g_len_s = g_code[order], g_month[order], g_zone[order], g_len_s[order]
    m_start, m_end, utc_len, share = m_start[order], m_end[order], utc_len[order], share[order]
    intervals = intervals[order]
    out = {k: v[order] for k, v in out.items()}
    months = pd.DataFrame(
        {
            "meter_id": pd.array(names[g_code], dtype="string"),
            "month": pd.array(C.month_labels(g_month), dtype="string"),
            "timezone": pd.array(g_zone, dtype="string"),
            "interval_seconds": g_len_s.astype(np.int64),
            "days_in_month": ((m_end - m_start) // C._DAY_NS).astype(np.int64),
            "days_with_data": out["days_with_data"],
            "intervals": intervals,
            "null_intervals": out["null_intervals"],
            "expected_intervals": (utc_len // (g_len_s * C._NS)).astype(np.int64),
            "first_local": out["first_local"],
            "last_local": out["last_local"],
            "estimated_share": share,
            "missing_days": out["missing_days"],
            "hole_intervals": out["hole_intervals"],
        }
    )
    if len(holes):
        hole_frame = pd.DataFrame(
            {
                "meter_id": pd.array(
                    np.asarray(meter_names, dtype=object)[holes["code"].to_numpy()],
                    dtype="string",
                ),
                "month": pd.array(C.month_labels(holes["month_code"].to_numpy()), dtype="string"),
                "date": pd.array(
                    np.datetime_as_string(holes["day"].to_numpy().astype("datetime64[D]")),
                    dtype="string",
                ),
                "kind": pd.array(holes["kind"].to_numpy(), dtype="string"),
                "start_local": holes["start_local"].to_numpy(dtype="datetime64[ns]"),
                "end_local": holes["end_local"].to_numpy(dtype="datetime64[ns]"),
                "missing_intervals": holes["missing_intervals"].to_numpy(dtype=np.int64),
            }
        ).sort_values(["meter_id", "start_local"], ignore_index=True)
    else:
        hole_frame = C._empty_holes()
    return C.IntervalCompleteness(months, hole_frame)


def _holes_of_gaps_reference(
    g_lo: np.ndarray,
    g_hi: np.ndarray,
    g_code: np.ndarray,
    g_len: np.ndarray,
    meter_zone: np.ndarray,
) -> pd.DataFrame:
    """Interior holes (UTC ns ``g_lo`` to ``g_hi`` of meter code ``g_code``, interval length
    ``g_len`` [ns]) split by local day (the zone of each meter code in ``meter_zone``)."""
    if g_lo.size == 0:
        return pd.DataFrame()
    g_zone = meter_zone[g_code]
    d_lo = C._local_of_utc(g_lo, g_zone) // C._DAY_NS
    d_hi = C._local_of_utc(g_hi - 1, g_zone) // C._DAY_NS
    n_days = d_hi - d_lo + 1
    rep = np.repeat(np.arange(g_lo.size), n_days)
    day = d_lo[rep] + (np.arange(rep.size) - np.repeat(np.cumsum(n_days) - n_days, n_days))
    zone = g_zone[rep]
    midnight = C._utc_of_local(day * C._DAY_NS, zone)
    next_midnight = C._utc_of_local((day + 1) * C._DAY_NS, zone)
    part_lo = np.maximum(g_lo[rep], midnight)
    part_hi = np.minimum(g_hi[rep], next_midnight)
    whole = (part_lo == midnight) & (part_hi == next_midnight)
    local_lo = np.where(whole, day * C._DAY_NS, C._local_of_utc(part_lo, zone))
    local_hi = np.where(whole, (day + 1) * C._DAY_NS, C._local_of_utc(part_hi, zone))
    return pd.DataFrame(
        {
            "code": g_code[rep],
            "month_code": day.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64),
            "day": day,
            "kind": np.where(whole, "day", "intervals"),
            "start_local": local_lo,
            "end_local": local_hi,
            "missing_intervals": (part_hi - part_lo) // g_len[rep],
        }
    )


def _local_text_reference(values: pd.Series) -> pd.Series:
    """``usage._local_text`` before: ``numpy.datetime_as_string`` of every value."""
    arr = pd.to_datetime(values).to_numpy(dtype="datetime64[ns]")
    out = pd.array(np.datetime_as_string(arr.astype("datetime64[m]"), unit="m"), dtype="string")
    out[np.isnat(arr)] = pd.NA
    return pd.Series(out, index=values.index)


#: zones with DST at 01:00 UTC, at 02:00 local, by 30 minutes, and at local midnight
_ZONES = [
    "Europe/London",
    "America/New_York",
    "Australia/Lord_Howe",
    "America/Santiago",
    "Asia/Beirut",
    "UTC",
]


def _rows(seed: int, minutes: int, zones: list[str]) -> pd.DataFrame:
    """Ordered interval rows of several meters (one zone each) over a year, with single
    missing intervals, runs across midnight and month ends, and whole missing days."""
    rng = np.random.default_rng(seed)
    step = pd.Timedelta(minutes=minutes)
    parts = []
    for m, zone in enumerate(zones):
        lo = pd.Timestamp("2023-01-01", tz=zone).tz_convert("UTC")
        start = pd.date_range(lo, lo + pd.Timedelta(days=365), freq=step, inclusive="left")
        keep = rng.random(len(start)) > rng.choice([0.002, 0.02, 0.1])
        for _ in range(int(rng.integers(1, 8))):  # runs of every length, some over midnights
            at = int(rng.integers(1, len(start) - 1))
            keep[at : at + int(rng.integers(1, 3 * 24 * 60 // minutes))] = False
        local = start.tz_convert(zone)
        for day in ("2023-03-26", "2023-10-29", "2023-04-02", "2023-09-03", "2023-03-12"):
            if rng.random() < 0.5:  # a whole local day (some are DST days somewhere)
                keep &= local.strftime("%Y-%m-%d") != day
        keep[0] = keep[-1] = True
        start = start[keep]
        parts.append(
            pd.DataFrame(
                {
                    "meter_id": f"M{(m * 7919) % 97:02d}",  # ids not in code order
                    "start": start,
                    "end": start + step,
                    "consumption": rng.random(len(start)),
                    "timezone": zone,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def _equal(a: C.IntervalCompleteness, b: C.IntervalCompleteness) -> None:
    pd.testing.assert_frame_equal(a.months, b.months)
    pd.testing.assert_frame_equal(a.holes, b.holes)


def _with_reference(frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch) -> C.IntervalCompleteness:
    with monkeypatch.context() as mp:
        mp.setattr(C, "completeness_frames", _completeness_frames_reference)
        return interval_completeness(frame, timezone="UTC")


@pytest.mark.parametrize("minutes", [30, 15, 60])
def test_completeness_frames_equal_the_reference_over_dst_and_midnight_zones(
    minutes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame = _rows(minutes, minutes, _ZONES)
    new = interval_completeness(frame, timezone="UTC")
    _equal(new, _with_reference(frame, monkeypatch))
    holes = new.holes
    assert (holes["kind"] == "day").any() and (holes["kind"] == "intervals").any()
    assert holes["meter_id"].nunique() == len(_ZONES)
    # holes named in local time, midnight-to-midnight for whole days
    whole = holes[holes["kind"] == "day"]
    assert (whole["start_local"].dt.strftime("%H:%M") == "00:00").all()
    # the texts the usage stage stores equal the reference's
    for col in ("start_local", "end_local"):
        pd.testing.assert_series_equal(U._local_text(holes[col]), _local_text_reference(holes[col]))


@settings(max_examples=15, deadline=None)
@given(
    st.integers(0, 10_000),
    st.sampled_from([30, 15]),
    st.lists(st.sampled_from(_ZONES), min_size=1, max_size=4),
)
def test_property_completeness_frames_equal_the_reference(
    seed: int, minutes: int, zones: list[str]
) -> None:
    frame = _rows(seed, minutes, zones)
    with pytest.MonkeyPatch.context() as mp:
        ref = _with_reference(frame, mp)
    _equal(interval_completeness(frame, timezone="UTC"), ref)


def test_holes_of_gaps_without_gaps_is_empty() -> None:
    none = np.zeros(0, dtype=np.int64)
    zone = np.array(["UTC"], dtype=object)
    assert C._holes_of_gaps(none, none, none, none, zone).empty
    assert _holes_of_gaps_reference(none, none, none, none, zone).empty


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.none(),
            st.integers(-(2**62), 2**62),  # years -144169 .. 146138 and everything between
            st.integers(-(10**18), 10**18).map(lambda x: x - x % 60_000_000_000),
        ),
        max_size=40,
    )
)
def test_property_local_text_equals_datetime_as_string(values: list[int | None]) -> None:
    arr = np.array(
        [np.datetime64("NaT") if v is None else v for v in values], dtype="datetime64[ns]"
    )
    arr = np.array(
        [np.datetime64("NaT", "ns") if v is None else np.datetime64(v, "ns") for v in values],
        dtype="datetime64[ns]",
    )
    series = pd.Series(arr, index=np.arange(len(arr)) * 3)
    pd.testing.assert_series_equal(U._local_text(series), _local_text_reference(series))


def test_local_text_of_minutes_around_midnight_dst_and_before_1970() -> None:
    series = pd.Series(
        pd.to_datetime(
            [
                "2023-03-26 00:59:59",
                "2023-10-29 01:30:00",
                "1969-12-31 23:59:30",
                None,
                "2024-02-29 00:00:00",
            ]
        )
    )
    out = U._local_text(series)
    assert out.tolist()[:3] == ["2023-03-26T00:59", "2023-10-29T01:30", "1969-12-31T23:59"]
    assert out.isna().tolist() == [False, False, False, True, False]
    pd.testing.assert_series_equal(out, _local_text_reference(series))


def _interval_counts_reference(
    part: pd.DataFrame, folded: object = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``usage._interval_counts`` before (assign, column selection, coerce_frame's astype)."""
    from scaler_workbench.schema import COMPLETENESS, HOLES, coerce_frame, empty_frame

    ic = folded if folded is not None else interval_completeness(part, timezone="UTC")
    months, holes = ic.months, ic.holes  # type: ignore[attr-defined]
    if len(months):
        months = months.assign(
            first_local=_local_text_reference(months["first_local"]),
            last_local=_local_text_reference(months["last_local"]),
        )
        months = coerce_frame(months[[c.name for c in COMPLETENESS.columns]], COMPLETENESS)
    else:
        months = empty_frame(COMPLETENESS)
    if len(holes):
        holes = holes.assign(
            start_local=_local_text_reference(holes["start_local"]),
            end_local=_local_text_reference(holes["end_local"]),
        )
        holes = coerce_frame(holes[[c.name for c in HOLES.columns]], HOLES)
    else:
        holes = empty_frame(HOLES)
    return months, holes


def _month_rows_reference(cal: pd.DataFrame, months: pd.DataFrame) -> np.ndarray:
    """The row lookup of ``usage._with_interval_counts`` before: string MultiIndexes."""
    key = pd.MultiIndex.from_arrays(
        [months["meter_id"].astype(str).to_numpy(), months["month"].astype(str).to_numpy()]
    )
    start = U._ns(cal["start"])
    zones = U._zones(cal, len(cal))
    wall = np.empty(len(cal), dtype=np.int64)
    codes = np.asarray(zones.codes)
    for z, zone in enumerate(zones.categories):
        m = codes == z
        wall[m] = U._wall(start[m], str(zone))
    labels = np.datetime_as_string(wall.astype("datetime64[ns]").astype("datetime64[M]"), unit="M")
    return np.asarray(
        key.get_indexer(pd.MultiIndex.from_arrays([cal["meter_id"].astype(str).to_numpy(), labels]))
    )


@pytest.mark.parametrize(
    "zones", [["Europe/London"], ["Australia/Lord_Howe", "UTC", "Asia/Beirut"]]
)
def test_interval_counts_and_month_rows_equal_the_reference(zones: list[str]) -> None:
    frame = _rows(5, 30, zones)
    frame["meter_id"] = frame["meter_id"].astype("category")
    frame["timezone"] = frame["timezone"].astype("category")
    new = U._interval_counts(frame)
    ref = _interval_counts_reference(frame)
    pd.testing.assert_frame_equal(new[0], ref[0])
    pd.testing.assert_frame_equal(new[1], ref[1])
    cal = U.calendarize(frame, freq="month")
    months = new[0]
    at = U._month_rows(cal, months)
    np.testing.assert_array_equal(at, _month_rows_reference(cal, months))
    assert (at >= 0).all()
    # a month row missing, a meter unknown to the counts: -1 for those rows either way
    some = months.iloc[3:].reset_index(drop=True)
    some.loc[0, "meter_id"] = "nobody"
    np.testing.assert_array_equal(U._month_rows(cal, some), _month_rows_reference(cal, some))
    assert (U._month_rows(cal, some) == -1).sum() >= 4
    # ids whose text repeats (1 and "1") take the string keys
    twice = cal.copy()
    twice["meter_id"] = pd.Categorical([1] * len(cal), categories=[1, "1"])
    ones = months.assign(meter_id="1")
    ones = ones.drop_duplicates("month").reset_index(drop=True)
    np.testing.assert_array_equal(U._month_rows(twice, ones), _month_rows_reference(twice, ones))
