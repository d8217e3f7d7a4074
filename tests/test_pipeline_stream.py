"""run_pipeline streams long aggregated interval sources in chunks of whole meters.

The streamed path must give exactly what the stage-by-stage path gives (every table, the
quarantine included, row for row), wherever the chunks are cut, and must fall back to the
stage-by-stage path when the records are not grouped by meter.
"""

from __future__ import annotations

import logging
import math
import random
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import scaler_workbench.pipeline as P
import scaler_workbench.transform as T
from scaler_workbench.pipeline import run_pipeline
from scaler_workbench.profile import Profile

WHOLE = 10**12  # a chunk size no test reaches: the stage-by-stage path


def _profile(**usage_options: Any) -> Profile:
    source: dict[str, Any] = {
        "resource": "intervals",
        "kind": "intervals",
        "aggregate": "month",
        "duration": "30min",
        "fields": {
            "meter_id": "_parent.meter_id",
            "start": "interval_start",
            "consumption": "value",
        },
        **usage_options,
    }
    return Profile.from_dict(
        {
            "provider": {"name": "stream", "timezone": "Europe/London"},
            "environments": {"x": {"base_url": "http://127.0.0.1"}},
            "mapping": {
                "assets": {
                    "resource": "sites",
                    "fields": {"asset_id": "id", "name": "name", "timezone": "timezone"},
                },
                "meters": {
                    "resource": "meters",
                    "fields": {
                        "meter_id": "id",
                        "asset_id": "site",
                        "raw_unit": "unit",
                        "meter_type": "type",
                        "meter_subtype": "subtype",
                    },
                },
                "usage": {"intervals": source},
                "policy": {"duplicates": "latest"},
            },
            "units": {"heating_value": {"preset": "uk", "calorific_value": 39.5}},
        }
    )


def _iso(ts: pd.Timestamp) -> str:
    """A UK local time with its offset, as many APIs write it ('Z' in winter)."""
    local = ts.tz_convert("Europe/London")
    text = local.isoformat()
    return text.replace("+00:00", "Z")


def _raw(meters: int, hours: int, seed: int = 3, *, awkward: bool = True) -> dict[str, Any]:
    """Half-hourly records across the March clock change, grouped by meter, with duplicates,
    gaps and (``awkward``) unmappable records, null, NaN and ±inf values, an unknown meter and
    a meter of no known type."""
    rng = random.Random(seed)
    units = ["kWh", "Wh", "m3"]
    sites = [
        {"id": "S1", "name": "One", "timezone": "Europe/London"},
        {"id": "S2", "name": "Two", "timezone": "Europe/Paris"},
    ]
    meter_rows = []
    for i in range(meters):
        unit = units[i % 3]
        meter_rows.append(
            {
                "id": f"M{i:03d}",
                "site": sites[i % 2]["id"],
                "unit": unit,
                "type": "Energy" if not (awkward and i == 4) else "Steam?",
                "subtype": "Natural Gas" if unit == "m3" else "Off-site Electricity",
            }
        )
    start = pd.Timestamp("2024-03-29T22:00", tz="UTC")
    records: list[dict[str, Any]] = []
    for m in meter_rows:
        for k in range(hours * 2):
            if rng.random() < 0.02:
                continue  # a gap
            rec = {
                "interval_start": _iso(start + pd.Timedelta(minutes=30 * k)),
                "value": round(rng.uniform(0, 5), 3),
                "_parent": {"meter_id": m["id"]},
            }
            records.append(rec)
            if rng.random() < 0.01:
                records.append({**rec, "value": rec["value"] + 1})  # a revision, later wins
    if awkward:
        records.insert(
            7, {"interval_start": "not a time", "value": 1.0, "_parent": records[6]["_parent"]}
        )
        records.insert(len(records) // 2, {**records[len(records) // 2], "value": None})
        # infinite values (non_finite, set aside), a NaN (no data) and a late unmappable
        # record spread over the meters: chunks interleave their rules (unmappable,
        # non_finite, no_data) unless both paths order them the same way
        late = (math.inf, -math.inf, math.nan, math.inf, "not a time", None, -math.inf)
        for j, value in enumerate(late):
            at = (j + 1) * len(records) // (len(late) + 1)
            if value == "not a time":
                records[at] = {**records[at], "interval_start": value}
            else:
                records[at] = {**records[at], "value": value}
        records.append(
            {"interval_start": "2024-04-01T00:00:00Z", "value": 2.0, "_parent": {"meter_id": "X"}}
        )
    return {"sites": sites, "meters": meter_rows, "intervals": records}


def _assert_same(a: Any, b: Any) -> None:
    for name in ("assets", "meters", "usage", "readings", "quarantine", "completeness", "holes"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name), obj=name)


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return _raw(meters=9, hours=80)


@pytest.fixture(scope="module")
def whole(raw: dict[str, Any]) -> Any:
    return run_pipeline(_profile(), raw, chunk_records=WHOLE)


@pytest.mark.parametrize("chunk", [1, 97, 160, 1000, 1441])
def test_streamed_equals_stage_by_stage(raw: dict[str, Any], whole: Any, chunk: int) -> None:
    timings: dict[str, float] = {}
    streamed = run_pipeline(_profile(), raw, chunk_records=chunk, timings=timings)
    _assert_same(streamed, whole)
    assert set(timings) == {"canonical", "units", "usage"} and all(v >= 0 for v in timings.values())
    # the awkward records are all there, the reasons with their positions in the whole list;
    # a null value is "no data" by default: one warning row per meter and local day
    reasons = " ".join(whole.quarantine["reason"])
    assert "cannot be parsed as a time" in reasons and "intervals record 7 (intervals)" in reasons
    no_data = whole.quarantine[whole.quarantine["rule"] == "no_data"]
    assert len(no_data) and (no_data["severity"] == "warning").all()
    assert "consumption value(s)" in no_data["reason"].iloc[0]
    assert (whole.quarantine["table"] == "meters").sum() == 1  # the meter of unknown type
    rules = whole.quarantine["rule"]
    assert (rules == "non_finite").sum() == 4 and (rules == "unmappable").sum() >= 2
    assert "is infinite" in " ".join(whole.quarantine["reason"][rules == "non_finite"])
    assert (whole.quarantine["rule"] == "duplicate").sum() > 0
    # interval completeness is counted chunk by chunk (whole meters) and concatenates: the
    # gaps are holes, every meter-month has its DST-aware count, carried on the month rows
    assert len(whole.holes) and set(whole.holes["kind"]) == {"intervals"}
    assert (
        len(whole.completeness) == whole.usage.groupby(["meter_id", "start"], observed=True).ngroups
    )
    assert whole.usage["expected_intervals"].notna().all()


def test_source_ids_count_records_across_chunks(raw: dict[str, Any], whole: Any) -> None:
    streamed = run_pipeline(_profile(), raw, chunk_records=160)
    ids = streamed.usage["source_id"].astype(str)
    assert ids.equals(whole.usage["source_id"].astype(str))
    last = int(ids.iloc[-1].split("..")[-1].rstrip("]"))
    assert last > 160  # a global record position, not one within a chunk


def test_records_not_grouped_by_meter_fall_back(caplog: pytest.LogCaptureFixture) -> None:
    data = _raw(meters=4, hours=40, awkward=False)
    recs = data["intervals"]
    cut = len(recs) // 2 + 10  # inside meter 2's records: they now sit at both ends
    data["intervals"] = recs[cut:] + recs[:cut]
    expected = run_pipeline(_profile(), data, chunk_records=WHOLE)
    with caplog.at_level(logging.INFO, logger="scaler_workbench.transform"):
        got = run_pipeline(_profile(), data, chunk_records=50)
    _assert_same(got, expected)
    assert "not grouped by meter" in caplog.text


@pytest.mark.parametrize(
    ("change", "streams"),
    [
        ({}, True),
        ({"aggregate": None}, False),
        ({"kind": "readings"}, False),
        ({"explode": "points"}, False),
        ({"end_inclusive": "auto"}, False),
    ],
)
def test_which_sources_stream(change: dict[str, Any], streams: bool) -> None:
    m = T.resolve_mapping(_profile())
    src = {k: v for k, v in {**m["usage"]["intervals"], **change}.items() if v is not None}
    mapping = {**m, "usage": {"intervals": src}}
    raw = {"intervals": [{}] * 10}
    assert (P._stream_plan(mapping, raw, 5) is not None) is streams
    assert P._stream_plan(mapping, raw, 10) is None  # short sources never stream


def test_no_streaming_with_two_sources_readings_or_shared_records() -> None:
    m = T.resolve_mapping(_profile())
    raw = {"intervals": [{}] * 10}
    two = {**m, "usage": {"a": m["usage"]["intervals"], "b": m["usage"]["intervals"]}}
    assert P._stream_plan(two, raw, 5) is None
    readings = {**m, "readings": {"r": {"resource": "reads"}}}
    assert P._stream_plan(readings, raw, 5) is None
    shared = {**m, "meters": {**m["meters"], "resource": "intervals"}}
    assert P._stream_plan(shared, raw, 5) is None


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    meters=st.integers(1, 7),
    hours=st.integers(1, 30),
    chunk=st.integers(1, 400),
)
def test_property_any_chunking_gives_the_same_tables(
    seed: int, meters: int, hours: int, chunk: int
) -> None:
    data = _raw(meters=meters, hours=hours, seed=seed, awkward=meters > 4)
    _assert_same(
        run_pipeline(_profile(), data, chunk_records=chunk),
        run_pipeline(_profile(), data, chunk_records=WHOLE),
    )


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(0, 30),
    a=st.integers(0, 30),
    b=st.integers(0, 30),
    start=st.none() | st.integers(-40, 40),
    stop=st.none() | st.integers(-40, 40),
    step=st.none() | st.integers(-5, 5).filter(lambda s: s != 0),
    i=st.integers(-40, 40),
)
def test_window_reads_like_the_list_slice(n, a, b, start, stop, step, i) -> None:
    records = list(range(n))
    a, b = min(a, n), min(max(a, b), n)
    window, sliced = T._Window(records, a, b), records[a:b]
    assert len(window) == len(sliced) and list(window) == sliced
    assert window[start:stop:step] == sliced[start:stop:step]
    if -len(sliced) <= i < len(sliced):
        assert window[i] == sliced[i]
    else:
        with pytest.raises(IndexError):
            window[i]


def test_filters_give_the_same_tables_and_counts_streamed(raw: dict[str, Any]) -> None:
    """``skip`` and ``exclude_meters`` (issue 15 item 2) drop the same records either way."""
    data = _profile(skip={"value": {">": 4.5}}).to_dict()
    data["mapping"]["exclude_meters"] = ["M001", "M005"]
    profile = Profile.from_dict(data)
    counts: dict[str, dict[str, int]] = {}
    expected = run_pipeline(profile, raw, chunk_records=WHOLE, filtered=counts)
    for chunk in (97, 1441):
        got: dict[str, dict[str, int]] = {}
        _assert_same(run_pipeline(profile, raw, chunk_records=chunk, filtered=got), expected)
        assert got == counts
    skipped = sum(1 for r in raw["intervals"] if (r["value"] or 0) > 4.5)
    assert counts["mapping.usage.intervals"] == {"skip.value": skipped}
    assert counts["mapping.meters"] == {"exclude_meters": 2}
    assert counts["mapping.usage"]["exclude_meters"] > 0
    assert not expected.usage["meter_id"].astype(str).isin(["M001", "M005"]).any()
