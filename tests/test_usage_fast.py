"""The fast paths of the usage engine give exactly what the general paths give.

* ``resolve_conflicts`` on keys already in order (adjacent duplicates: only those rows ranked)
  versus the same rows shuffled (the general full sort);
* ``calendarize`` over a keep mask (no frame copy) versus over the filtered frame;
* ``process_usage`` keeps set-aside duplicates out of the sums.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaler_workbench.schema import Tables
from scaler_workbench.usage import _calendarize, _conflict_losers, calendarize, resolve_conflicts

BASE = pd.Timestamp("2023-01-01", tz="UTC")
ZONES = ["Europe/London", "America/New_York", "Asia/Kolkata"]


def _frame(rows, *, estimated: bool, zones: bool) -> pd.DataFrame:
    meters = [r[0] for r in rows]
    start = BASE + pd.to_timedelta([30 * r[1] for r in rows], unit="min")
    frame = pd.DataFrame(
        {
            "meter_id": pd.Categorical([f"M{m}" for m in meters]),
            "start": start,
            "end": start + pd.to_timedelta([30 * r[2] for r in rows], unit="min"),
            "consumption": [r[3] for r in rows],
            "raw_value": [r[3] for r in rows],
            "factor": 1.0,
            "source": pd.Categorical(["u"] * len(rows)),
            "_row": np.arange(len(rows)),
        }
    )
    if zones:
        frame["timezone"] = pd.Categorical([ZONES[m % 3] if m < 3 else None for m in meters])
    if estimated:
        frame["estimated"] = pd.array([r[4] for r in rows], dtype="boolean")
    return frame


ROWS = st.lists(
    st.tuples(
        st.integers(0, 3),  # meter
        st.integers(0, 24 * 2 * 70),  # start, half-hours from 2023-01-01 (crosses months)
        st.sampled_from([1, 1, 1, 2, 48, 24 * 2 * 40]),  # duration, half-hours
        st.floats(0, 1e3),
        st.one_of(st.none(), st.booleans()),
    ),
    min_size=2,
    max_size=80,
)


@settings(max_examples=80, deadline=None)
@given(ROWS, st.booleans(), st.sampled_from(["latest", "first"]), st.booleans())
def test_property_ordered_fast_path_matches_the_general_sort(rows, estimated, dup, actual):
    frame = _frame(rows, estimated=estimated, zones=False)
    # the same records grouped and in time order (repeats kept in arrival order): fast path
    ordered = frame.sort_values(["meter_id", "start", "end"], kind="stable")
    policy = {"duplicates": dup, "prefer_actual": actual}
    kept_a, q_a = resolve_conflicts(ordered, policy=policy)
    kept_b, q_b = resolve_conflicts(frame, policy=policy)  # record order: general path
    assert sorted(kept_a["_row"]) == sorted(kept_b["_row"])
    assert sorted(q_a["record"]) == sorted(q_b["record"])
    assert len(kept_a) + len(q_a) == len(frame)


@settings(max_examples=60, deadline=None)
@given(ROWS, st.booleans(), st.booleans(), st.sampled_from(["month", "day"]))
def test_property_calendarize_over_a_keep_mask_equals_the_filtered_frame(
    rows, estimated, zones, freq
):
    frame = _frame(rows, estimated=estimated, zones=zones)
    keep = np.arange(len(frame)) % 3 != 1
    a = calendarize(frame[keep], freq=freq).reset_index(drop=True)
    b = _calendarize(frame, freq=freq, keep=keep).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_categorical=False)


def test_adjacent_duplicates_need_no_sort_and_rank_only_their_rows():
    frame = _frame(
        [(0, 0, 1, 1.0, False), (0, 1, 1, 2.0, True), (0, 1, 1, 3.0, False), (1, 0, 1, 4.0, None)],
        estimated=True,
        zones=True,
    )
    loser, q = _conflict_losers(frame, policy={"duplicates": "latest"})
    assert loser is not None and loser.tolist() == [False, True, False, False]
    assert len(q) == 1 and "[this row is an estimate]" in q["reason"].iloc[0]
    frame.loc[2, "estimated"] = True  # both estimates: the later record wins
    frame.loc[1, "estimated"] = False  # ... unless the earlier one is an actual
    loser, _ = _conflict_losers(frame, policy={"duplicates": "latest"})
    assert loser.tolist() == [False, False, True, False]


def test_no_duplicates_in_order_returns_no_mask():
    frame = _frame([(0, i, 1, 1.0, None) for i in range(10)], estimated=False, zones=False)
    loser, q = _conflict_losers(frame)
    assert loser is None and len(q) == 0


def test_duplicates_error_policy_still_raises_on_the_fast_path():
    from scaler_workbench.exceptions import UsageError

    frame = _frame([(0, 0, 1, 1.0, None), (0, 0, 1, 2.0, None)], estimated=False, zones=False)
    with pytest.raises(UsageError, match="duplicate"):
        resolve_conflicts(frame, policy={"duplicates": "error"})


def test_process_usage_sums_only_the_kept_duplicate():
    from scaler_workbench.profile import Profile
    from scaler_workbench.usage import process_usage

    profile = Profile.from_dict(
        {
            "provider": {"name": "t", "timezone": "Europe/London"},
            "environments": {"x": {"base_url": "http://127.0.0.1"}},
            "mapping": {"usage": {"u": {"resource": "u", "aggregate": "month", "fields": {}}}},
        }
    )
    frame = _frame(
        [(0, 0, 1, 1.0, None), (0, 1, 1, 2.0, None), (0, 1, 1, 5.0, None)],
        estimated=False,
        zones=True,
    )
    out = process_usage(Tables(usage=frame), profile)
    assert out.usage["consumption"].tolist() == [6.0]
    assert out.usage["n_intervals"].tolist() == [2]
    assert (out.quarantine["rule"] == "duplicate").sum() == 1


@settings(max_examples=60, deadline=None)
@given(
    ROWS,
    st.booleans(),
    st.booleans(),
    st.sampled_from(["month", "day"]),
    st.integers(1, 9),
    st.booleans(),
    st.booleans(),
)
def test_property_chunked_calendarize_equals_the_general_path(
    rows, estimated, zones, freq, size, categorical_factor, ordered
):
    import scaler_workbench.usage as U

    rows = [(*r[:2], min(r[2], 2), *r[3:]) for r in rows]  # intervals: no period is crossed
    if ordered:  # records in meter and time order: the runs of equal keys path
        rows = sorted(rows, key=lambda r: (r[0], r[1]))
    frame = _frame(rows, estimated=estimated, zones=zones)
    frame.loc[frame.index[::7], "factor"] = 0.5  # mixed factors within some keys
    if categorical_factor:  # as normalise_tables hands it on: a categorical over the factors
        frame.loc[frame.index[::5], "factor"] = np.nan
        frame["factor"] = pd.Categorical(frame["factor"])
    keep = np.arange(len(frame)) % 4 != 2
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(U, "_CHUNKED_MIN", 10**9)
        general = _calendarize(frame, freq=freq, keep=keep).reset_index(drop=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(U, "_CHUNKED_MIN", 1)
        mp.setattr(U, "_ROWS", size)
        seen = []
        original = U._calendarize_chunked
        mp.setattr(U, "_calendarize_chunked", lambda *a, **k: seen.append(1) or original(*a, **k))
        chunked = _calendarize(frame, freq=freq, keep=keep).reset_index(drop=True)
    assert seen
    pd.testing.assert_frame_equal(general, chunked, check_categorical=False, rtol=1e-12)


@pytest.mark.parametrize(
    ("zone", "lo", "hi"),
    [
        ("Europe/London", "2023-01-01", "2024-01-01"),
        ("America/New_York", "2023-03-01", "2023-12-01"),
        ("Australia/Lord_Howe", "2023-01-01", "2024-01-01"),  # 30-minute DST shift
        ("Asia/Kathmandu", "1985-01-01", "1987-01-01"),  # +05:30 -> +05:45
        ("Europe/Amsterdam", "1935-01-01", "1938-01-01"),  # +00:19:32 era: no exact table
    ],
)
def test_wall_clock_offset_table_matches_pandas(zone, lo, hi):
    from scaler_workbench.usage import _offset_table, _wall, _wall_pandas

    a = pd.Timestamp(lo, tz="UTC").value
    b = pd.Timestamp(hi, tz="UTC").value
    ns = np.sort(np.random.default_rng(1).integers(a, b, 20000))
    np.testing.assert_array_equal(_wall(ns, zone), _wall_pandas(ns, zone))
    if zone == "Europe/Amsterdam":
        assert _offset_table(a, b, zone) is None  # transitions off the 15-minute grid
    else:
        assert _offset_table(a, b, zone) is not None


@pytest.mark.parametrize("chunk", [1, 3, 1 << 16])
def test_zones_counted_in_chunks_match_the_whole_array(monkeypatch, chunk):
    import scaler_workbench.usage as U

    monkeypatch.setattr(U, "_ROWS", chunk)
    cat = pd.Categorical(
        ["Asia/Kolkata", None, "Europe/London", "Asia/Kolkata", None],
        categories=["Unused/Zone", "Europe/London", "Asia/Kolkata"],
    )
    frame = pd.DataFrame({"timezone": cat})
    got = U._zones(frame, len(frame))
    # only the used zones, sorted, and missing zones read as UTC
    assert list(got.categories) == ["Asia/Kolkata", "Europe/London", "UTC"]
    assert list(got.astype(str)) == ["Asia/Kolkata", "UTC", "Europe/London", "Asia/Kolkata", "UTC"]
    counts = U._count_codes(np.asarray(cat.codes), len(cat.categories))
    assert counts.tolist() == [2, 0, 1, 2]


@pytest.mark.parametrize("chunk", [1, 2, 3, 1 << 16])
def test_adjacent_duplicates_in_chunks_match_the_whole_array(monkeypatch, chunk):
    import scaler_workbench.usage as U

    monkeypatch.setattr(U, "_ROWS", chunk)
    m = np.array([0, 0, 0, 1, 1, 1, 1, 2], dtype=np.int16)
    t = np.array([5, 5, 6, 1, 2, 2, 2, 0], dtype=np.int64)
    e = t + 1
    # duplicates right after their original, across every possible chunk edge
    assert U._adjacent_duplicates(m, [t, e]).tolist() == [0, 4, 5]
    e2 = e.copy()
    e2[5:7] = 9  # same start, later end: still ordered, rows 5-6 no longer repeat row 4
    assert U._adjacent_duplicates(m, [t, e2]).tolist() == [0, 5]
    # out of order at the last pair (the edge of every chunk size): the caller must sort
    t2 = t.copy()
    t2[6] = 1
    assert U._adjacent_duplicates(m, [t2, t2 + 1]) is None
    assert U._adjacent_duplicates(m[::-1].copy(), [t, e]) is None
    assert U._adjacent_duplicates(m[:1], [t[:1], e[:1]]).tolist() == []


@settings(max_examples=60, deadline=None)
@given(ROWS, st.integers(1, 9), st.sampled_from(["none", "per_meter", "loser_differs"]))
def test_property_categorical_factor_codes_path_equals_the_general_path(rows, size, mix):
    """Ordered rows with a categorical factor and no missing one: the chunked path compares
    factor codes per run (a byte per row) and falls back to the float check when a run has
    another factor anywhere (even on a row the keep mask sets aside)."""
    import scaler_workbench.usage as U

    rows = sorted([(*r[:2], min(r[2], 2), *r[3:]) for r in rows], key=lambda r: (r[0], r[1]))
    frame = _frame(rows, estimated=False, zones=True)
    keep = np.arange(len(frame)) % 4 != 2
    codes = frame["meter_id"].cat.codes.to_numpy()
    factor = np.where(codes % 2 == 0, 1.0, 0.001) if mix != "none" else np.ones(len(frame))
    if mix == "loser_differs":
        factor = np.where(~keep & (np.arange(len(frame)) % 8 == 2), 11.5, factor)
    frame["factor"] = pd.Categorical(factor)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(U, "_CHUNKED_MIN", 10**9)
        general = _calendarize(frame, freq="month", keep=keep).reset_index(drop=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(U, "_CHUNKED_MIN", 1)
        mp.setattr(U, "_ROWS", size)
        chunked = _calendarize(frame, freq="month", keep=keep).reset_index(drop=True)
    pd.testing.assert_frame_equal(general, chunked, check_categorical=False, rtol=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from([-1, 0]), max_size=50), st.integers(1, 9))
def test_property_one_category_codes_count_as_bincount(codes, chunk):
    """One category (the usual single site zone): missing and used counted by a compare,
    the same numbers as the bincount of every code."""
    import scaler_workbench.usage as U

    arr = np.asarray(codes, dtype=np.int8)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(U, "_ROWS", chunk)
        got = U._count_codes(arr, 1)
    assert got.tolist() == np.bincount(arr.astype(np.intp) + 1, minlength=2).tolist()
