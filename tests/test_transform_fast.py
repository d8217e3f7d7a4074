"""The fast paths of transform.build_tables: byte-level ISO 8601 parsing, C-level extraction,
meter ids straight to codes. Each must give exactly what the general path gives."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _mappings import METERS
from hypothesis import given, settings
from hypothesis import strategies as st

import scaler_workbench.transform as T
from scaler_workbench.profile import Profile
from scaler_workbench.transform import build_tables, parse_iso_fast

PROFILE = Profile.from_dict(
    {
        "provider": {"name": "t", "timezone": "Europe/London"},
        "environments": {"x": {"base_url": "http://127.0.0.1"}},
    }
)


def _reference(strings: list[str]) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(strings, utc=True, format="ISO8601", errors="coerce"))


@st.composite
def iso_strings(draw: st.DrawFn) -> str:
    """Mostly well-formed ISO 8601 with a zone, with every field sometimes out of range."""
    if draw(st.integers(0, 19)) == 0:
        return draw(st.text(max_size=40))
    year = draw(st.sampled_from([1699, 1700, 1900, 2000, 2023, 2024, 2100, 2199, 2200, 2300]))
    month = draw(st.integers(0, 13))
    day = draw(st.integers(0, 32))
    text = f"{year:04d}-{month:02d}-{day:02d}"
    text += draw(st.sampled_from(["T", "T", " ", "t", "_"]))
    text += f"{draw(st.integers(0, 25)):02d}:{draw(st.integers(0, 60)):02d}"
    if draw(st.booleans()):
        text += f":{draw(st.integers(0, 61)):02d}"
        if draw(st.booleans()):
            text += "." + "".join(draw(st.lists(st.sampled_from("0123456789"), max_size=11)))
    zone = draw(st.sampled_from(["Z", "Z", "+", "-", "z", "", "+hhmm", "+hh"]))
    hh, mm = draw(st.integers(0, 25)), draw(st.integers(0, 61))
    if zone in ("+", "-"):
        zone = f"{zone}{hh:02d}:{mm:02d}"
    elif zone == "+hhmm":
        zone = f"+{hh:02d}{mm:02d}"
    elif zone == "+hh":
        zone = f"+{hh:02d}"
    return text + zone


@settings(max_examples=300, deadline=None)
@given(st.lists(iso_strings(), min_size=1, max_size=40))
def test_property_fast_iso_agrees_with_pandas_wherever_it_claims_a_row(strings):
    ascii_ = [s for s in strings if s.isascii() and "\x00" not in s]
    if not ascii_:
        return
    ns, ok = parse_iso_fast(np.array(ascii_, dtype="S36"))
    ref = _reference(ascii_)
    for i, s in enumerate(ascii_):
        if ok[i]:
            assert not pd.isna(ref[i]), s
            assert pd.Timestamp(int(ns[i]), unit="ns", tz="UTC") == ref[i], s


@pytest.mark.parametrize(
    "text",
    [
        "2023-01-01T00:00:00Z",
        "2023-06-01T01:00:00+01:00",
        "2024-02-29T23:59:59-05:30",  # leap day, negative half-hour offset
        "2023-03-26T01:00:00+01:00",  # first instant of BST
        "2023-10-29T01:30:00+01:00",  # fall-back hour, both sides
        "2023-10-29T01:30:00Z",
        "2023-01-01T00:00Z",
        "2023-01-01 12:00:00Z",
        "2023-01-01T00:00:00.5Z",
        "2023-01-01T00:00:00.123+02:00",
        "2023-01-01T00:00:00.123456789-00:00",
        "1970-01-01T00:00:00Z",
        "1700-03-01T00:00:00Z",
        "2199-12-31T23:59:59+14:00",
    ],
)
def test_fast_iso_takes_the_common_shapes(text):
    ns, ok = parse_iso_fast(np.array([text], dtype="S36"))
    assert ok[0]
    assert ns[0] == _reference([text]).as_unit("ns").asi8[0]


@pytest.mark.parametrize(
    "text",
    [
        "2023-02-29T00:00:00Z",  # not a leap year
        "2023-04-31T00:00:00Z",
        "2023-01-01T24:00:00Z",
        "2023-01-01T00:00:60Z",
        "2023-01-01T00:00:00+24:00",
        "2023-01-01T00:00:00z",
        "2023-01-01T00:00:00",  # naive: the general path localises it
        "2023-01-01",
        "2023-13-01T00:00:00Z",
        "not a time",
        "",
    ],
)
def test_fast_iso_refuses_what_it_cannot_prove(text):
    _, ok = parse_iso_fast(np.array([text], dtype="S36"))
    assert not ok[0]


ASSETS = {"resource": "sites", "fields": {"asset_id": "id", "timezone": "tz"}}


def _tables(raw, fields, *, fast: bool, **opts):
    mapping = {
        "assets": ASSETS,
        "meters": METERS,
        "usage": {"u": {"resource": "usage", "fields": fields, **opts}},
    }
    with pytest.MonkeyPatch.context() as mp:
        if not fast:
            mp.setattr(T, "_fast_series_columns", lambda *a, **k: {})
        return build_tables(PROFILE, raw, mapping=mapping)


def _assert_same(a, b):
    pd.testing.assert_frame_equal(a.usage, b.usage, check_categorical=False)
    for col in a.usage.columns:
        if isinstance(a.usage[col].dtype, pd.CategoricalDtype):
            assert a.usage[col].astype(object).tolist() == b.usage[col].astype(object).tolist()
    pd.testing.assert_frame_equal(a.quarantine, b.quarantine)


def _raw(rows):
    return {
        "sites": [{"id": "S1", "tz": "Europe/London"}, {"id": "S2", "tz": "America/New_York"}],
        "meters": [
            {"id": "M1", "site": "S1", "unit": "kWh"},
            {"id": "M2", "site": "S2", "unit": "kWh"},
            {"id": "M3", "site": "S1", "unit": "Wh"},
        ],
        "usage": rows,
    }


def test_fast_and_general_paths_build_the_same_tables_on_awkward_records():
    rows = [
        {"s": "2023-10-29T01:30:00+01:00", "v": 1.5, "p": {"m": "M2"}},
        {"s": "2023-10-29T01:30:00Z", "v": 2, "p": {"m": "M1"}},
        {"s": "2023-10-29T01:30:00", "v": "3.5", "p": {"m": "M1"}},  # naive: site zone
        {"s": "2023-10-29T01:30:00", "v": 4.0, "p": {"m": "M1"}},  # ambiguous: second = GMT
        {"s": "2023-03-26T01:30:00", "v": 1.0, "p": {"m": "M3"}},  # nonexistent: quarantined
        {"s": "2023-02-30T00:00:00Z", "v": 1.0, "p": {"m": "M3"}},  # impossible date
        {"s": None, "v": 1.0, "p": {"m": "M2"}},
        {"s": "2023-01-01T00:00:00.250-05:00", "v": None, "p": {"m": "M2"}},
        {"s": "2023-01-01T00:00Z", "v": 7, "p": {"m": "M3"}},
        {"s": "2023-01-01T00:00:00+0100", "v": 7, "p": {"m": "M3"}},  # general path
    ]
    fields = {"meter_id": "p.m", "start": "s", "consumption": "v"}
    fast = _tables(_raw(rows), fields, fast=True, duration="30min")
    slow = _tables(_raw(rows), fields, fast=False, duration="30min")
    _assert_same(fast, slow)
    assert len(fast.quarantine) == 4  # nonexistent, impossible date, missing start, no value
    assert fast.usage["meter_id"].cat.categories.tolist() == ["M2", "M1", "M3"]  # first seen
    assert set(fast.usage["timezone"].astype(str)) == {"Europe/London", "America/New_York"}


def test_fast_paths_fall_back_for_unknown_meters_and_missing_keys():
    rows = [
        {"s": "2023-01-01T00:00:00Z", "e": "2023-01-01T00:30:00Z", "v": 1.0, "p": {"m": "M1"}},
        {"s": "2023-01-01T00:00:00Z", "e": "2023-01-01T00:30:00Z", "v": 1.0, "p": {"m": "NEW"}},
        {"s": "2023-01-01T00:30:00Z", "v": 2.0, "p": {"m": 7}},  # no end, int id
        {"s": "2023-01-01T01:00:00Z", "e": "2023-01-01T01:30:00Z", "v": "x", "p": {}},
    ]
    fields = {"meter_id": "p.m", "start": "s", "end": "e", "consumption": "v"}
    fast = _tables(_raw(rows), fields, fast=True)
    slow = _tables(_raw(rows), fields, fast=False)
    _assert_same(fast, slow)
    assert len(fast.usage) == 2


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["M1", "M2", "M3"]),
            st.integers(0, 24 * 400),
            st.sampled_from(["Z", "+01:00", "-05:00", "", "+05:30"]),
            st.one_of(st.floats(0, 1e6), st.none(), st.just("n/a")),
        ),
        min_size=1,
        max_size=60,
    ),
    st.sampled_from([False, True, "auto"]),
)
def test_property_fast_and_general_paths_agree(rows, end_inclusive):
    base = pd.Timestamp("2023-01-01")
    recs = []
    for m, hours, zone, v in rows:
        t = base + pd.Timedelta(minutes=30 * hours)
        e = t + pd.Timedelta(days=1 if end_inclusive is not False else 0, minutes=30)
        recs.append(
            {
                "s": t.strftime("%Y-%m-%dT%H:%M:%S") + zone,
                "e": e.strftime("%Y-%m-%dT%H:%M:%S") + zone,
                "v": v,
                "p": {"m": m},
            }
        )
    fields = {"meter_id": "p.m", "start": "s", "end": "e", "consumption": "v"}
    opts = {"end_inclusive": end_inclusive}
    fast = _tables(_raw(recs), fields, fast=True, **opts)
    slow = _tables(_raw(recs), fields, fast=False, **opts)
    _assert_same(fast, slow)


def test_utc_index_and_utc_ns_share_memory_and_equal_the_public_construction():
    ns = np.array([0, 1_700_000_000_123_456_789, np.iinfo(np.int64).min], dtype=np.int64)
    idx = T.utc_index(ns)
    ref = pd.DatetimeIndex(ns.view("datetime64[ns]")).tz_localize("UTC")
    assert idx.equals(ref) and str(idx.dtype) == "datetime64[ns, UTC]"
    assert np.shares_memory(idx.asi8, ns)
    assert np.shares_memory(T.utc_ns(idx), ns)
    # other zones and units are converted (a copy), never mislabelled
    ny = ref.tz_convert("America/New_York").as_unit("s")
    np.testing.assert_array_equal(T.utc_ns(ny[:2]), (ns[:2] // 10**9) * 10**9)


def test_quarantine_rows_writes_times_as_pandas_iso_json_would() -> None:
    """The vectorised time text in quarantine records and keys equals what
    ``to_json(date_format="iso")`` and ``strftime`` wrote, NaT included."""
    start = pd.Series(
        pd.to_datetime(
            ["2024-03-31T00:30:00Z", "2024-10-27T01:00:00.123456Z", None, "1999-12-31T23:59:59Z"],
            utc=True,
            format="ISO8601",
        )
    )
    rows = pd.DataFrame(
        {
            "meter_id": pd.Categorical(["A", "B", "A", "C"]),
            "start": start,
            "end": start + pd.Timedelta("30min"),
            "consumption": [1.5, np.nan, 1e-12 / 3, 11.220633333333334],
            "unit": ["kWh", "kWh", None, "kWh"],
            "_row": [0, 1, 2, 3],
        }
    )
    q = T.quarantine_rows(rows, table="usage", stage="usage", rule="duplicate", reasons="r")
    clean = rows.drop(columns=["_row"])
    expected = clean.to_json(
        orient="records", lines=True, date_format="iso", double_precision=15
    ).splitlines()
    assert q["record"].tolist() == expected
    assert '"consumption":0.000000000000333' in expected[2]  # not rounded to 0.0
    assert '"consumption":11.220633333333334' in expected[3]
    keys = (
        rows["meter_id"].astype(str)
        + "|"
        + rows["start"].dt.strftime("%Y-%m-%dT%H:%M:%SZ").astype(object).astype(str)
        + "|"
        + rows["end"].dt.strftime("%Y-%m-%dT%H:%M:%SZ").astype(object).astype(str)
    )
    got = q["record_key"].tolist()
    assert got[:2] + got[3:] == keys.tolist()[:2] + keys.tolist()[3:]
    assert got[2] == "A||"  # a missing time leaves its part of the key empty


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 2**31),  # seconds after 2000-01-01
            st.sampled_from(
                [
                    "Z",
                    "+01:00",
                    "-05:30",
                    "+14:00",
                    "+24:00",
                    "+01:60",
                    "+0100",
                    "X",
                    "+01;00",
                    "-00:00",
                ]
            ),
            st.sampled_from(["T", " ", "x"]),
            st.sampled_from(["", ".5", ".123456"]),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_property_winter_z_and_summer_offsets_parse_in_one_pass(rows) -> None:
    """Chunks mixing ``...Z`` and ``...±HH:MM`` after the same body take the one-pass path;
    it must read exactly what pandas reads (and refuse what pandas refuses)."""
    base = pd.Timestamp("2000-01-01")
    strings = [
        (base + pd.Timedelta(seconds=s)).strftime(f"%Y-%m-%d{sep}%H:%M:%S") + frac + zone
        for s, zone, sep, frac in rows
    ]
    ns, ok = parse_iso_fast(np.array([x.encode() for x in strings], dtype="S36"))
    ref = _reference(strings)
    good = {"Z", "+01:00", "-05:30", "+14:00", "-00:00"}
    for i, (text, (_, zone, sep, _)) in enumerate(zip(strings, rows, strict=True)):
        if ok[i]:
            assert ref[i] is not pd.NaT and ns[i] == ref[i].value, text
        else:  # refused here: left to the general parser, never a shape it should read
            assert not (zone in good and sep != "x"), text
