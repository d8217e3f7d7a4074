"""normalise_tables on large frames: grouping by integer codes (no hashing of per-row keys),
factor and lineage columns without full-length temporaries, checked row by row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaler_workbench.profile import Profile
from scaler_workbench.schema import Tables
from scaler_workbench.units import _dense_factorize, normalise_tables, pint_calls

PROFILE = Profile.from_dict(
    {
        "provider": {"name": "t", "timezone": "Europe/London"},
        "environments": {"x": {"base_url": "http://127.0.0.1"}},
        "units": {"heating_value": {"preset": "uk", "calorific_value": 39.5}},
    }
)
GAS = 1.02264 * 39.5 / 3.6


def _meters():
    return pd.DataFrame(
        {
            "meter_id": ["E1", "G1", "W1", "X1"],
            "asset_id": "S1",
            "meter_type": ["Energy", "Energy", "Water", "Energy"],
            "meter_subtype": [None, "Natural Gas", None, None],
            "raw_unit": ["kWh", "m3", "L", "furlongs"],
        }
    )


def test_dense_factorize_matches_sorted_unique():
    keys = np.array([5, 3, 5, 0, 9, 3], dtype=np.int32)
    codes, uniq = _dense_factorize(keys, 10)
    assert uniq.tolist() == [0, 3, 5, 9]
    assert (uniq[codes] == keys).all()


@pytest.mark.parametrize(
    ("row_units", "chunk", "grouped"),
    [
        (True, 1 << 16, False),
        (False, 1 << 16, False),
        (False, 7, False),
        (False, 1 << 16, True),  # meters in runs: values written run by run
        (True, 1 << 16, True),
    ],
)
def test_row_units_meter_units_methods_and_bad_meters_row_by_row(
    row_units, chunk, grouped, monkeypatch
):
    import scaler_workbench.units as U

    monkeypatch.setattr(U, "_CHUNK", chunk)  # chunked gathers: chunk edges land anywhere
    monkeypatch.setattr(U, "_RUN_ROWS", 16)  # runs of whole meters pay from 16 rows on
    rng = np.random.default_rng(5)
    n = 5000
    meter = rng.choice(["E1", "G1", "W1", "X1", None], n, p=[0.4, 0.3, 0.2, 0.05, 0.05])
    if grouped:  # runs of 40..400 rows, a meter met again later, rows without a meter id
        lengths = rng.integers(40, 400, 30)
        order = np.array(["E1", "G1", "W1", "X1", None, *meter[:25]], dtype=object)
        meter = np.concatenate([np.repeat(order, lengths), meter])[:n]
        assert U._Runs.of(pd.Categorical(meter).codes) is not None
    unit = rng.choice(["Wh", "MWh", None], n)  # a row's own unit beats the meter's
    unit = np.where(meter == "E1", unit, None) if row_units else np.full(n, None)
    method = rng.choice(["as-reported", "estimated-by-provider"], n)
    value = rng.random(n) * 100
    usage = pd.DataFrame(
        {
            "meter_id": pd.Categorical(meter),
            "start": pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(np.arange(n), "h"),
            "end": pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(np.arange(n) + 1, "h"),
            "consumption": value,
            "unit": pd.Categorical(unit),
            "method": pd.Categorical(method),
        }
    )
    before = pint_calls()
    out = normalise_tables(Tables(meters=_meters(), usage=usage), PROFILE)
    assert pint_calls() - before < 30  # per distinct unit (factor, dimensions), not per row
    a = pint_calls()
    normalise_tables(Tables(meters=_meters(), usage=usage), PROFILE)
    b = pint_calls()
    normalise_tables(Tables(meters=_meters(), usage=pd.concat([usage] * 3)), PROFILE)
    assert pint_calls() - b == b - a <= 1  # cached; only the failing label is asked again
    factor = {"kWh": 1.0, "Wh": 1e-3, "MWh": 1e3, "m3": GAS, "L": 1e-3}
    label = [
        (u if u is not None else "kWh") if m == "E1" else {"G1": "m3", "W1": "L"}.get(m)
        for m, u in zip(meter, unit, strict=True)
    ]
    ok = np.array([m in ("E1", "G1", "W1") for m in meter])
    got = out.usage.reset_index(drop=True)
    assert len(got) == ok.sum()
    exp_label = [x for x, k in zip(label, ok, strict=True) if k]
    exp_factor = np.array([factor[x] for x in exp_label])
    assert got["raw_unit"].astype(str).tolist() == exp_label
    np.testing.assert_allclose(got["factor"], exp_factor, rtol=1e-12)
    np.testing.assert_array_equal(got["raw_value"], value[ok])
    # one factor per meter: a categorical over the distinct factors, reading as float64
    assert isinstance(got["factor"].dtype, pd.CategoricalDtype)
    assert got["factor"].to_numpy(dtype=np.float64).dtype == np.float64
    assert len(got["factor"].cat.categories) <= len(factor)
    # converted chunk by chunk, bit-identical to one multiplication by the per-row factor
    np.testing.assert_array_equal(
        got["consumption"], value[ok] * got["factor"].to_numpy(dtype=np.float64)
    )
    np.testing.assert_allclose(got["consumption"], value[ok] * exp_factor, rtol=1e-15)
    gas = np.array([m == "G1" for m in meter])[ok]
    methods = got["method"].astype(str).to_numpy()
    assert all(t.startswith(b) for t, b in zip(methods, method[ok], strict=True))
    assert all("gas UK" in t for t in methods[gas]) and not any("gas" in t for t in methods[~gas])
    assert got["unit"].astype(str).tolist() == ["m³" if m == "W1" else "kWh" for m in meter[ok]]
    q = out.quarantine
    assert (q["table"] == "usage").sum() == (~ok).sum()
    assert (q["table"] == "meters").sum() == 1  # X1: furlongs, reported once


def test_chunked_gather_and_multiply_match_whole_array_indexing(monkeypatch):
    import scaler_workbench.units as U

    monkeypatch.setattr(U, "_CHUNK", 5)
    rng = np.random.default_rng(1)
    factors = np.array([1.0, 1e-3, GAS, np.nan])
    codes = rng.integers(-1, 4, 103).astype(np.int16)  # -1 reads the last entry, as numpy does
    values = rng.random(103) * 1e3
    np.testing.assert_array_equal(U._gather_chunked(factors, codes), factors[codes])
    np.testing.assert_array_equal(
        U._multiply_chunked(values, factors, codes), values * factors[codes]
    )
    cat = U._factor_categorical(factors, codes)
    np.testing.assert_array_equal(np.asarray(cat, dtype=np.float64), factors[codes])
    assert (np.asarray(cat.codes) == -1).sum() == np.isnan(factors[codes]).sum()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(-1, 5), st.integers(1, 40)), min_size=1, max_size=30),
    st.integers(1, 8),
)
def test_property_runs_equal_row_by_row_indexing(runs, run_rows):
    """_Runs: per-meter values written run by run equal ``table[codes]`` and
    ``values * factors[codes]`` bit for bit (code -1 reads the last entry), or it declines."""
    import scaler_workbench.units as U

    codes = np.repeat(np.array([c for c, _ in runs], dtype=np.int16), [k for _, k in runs])
    old = U._RUN_ROWS
    U._RUN_ROWS = run_rows
    try:
        r = U._Runs.of(codes)
    finally:
        U._RUN_ROWS = old
    change = int((codes[1:] != codes[:-1]).sum()) if len(codes) > 1 else 0
    if r is None:
        assert len(codes) < 2 * run_rows or change >= len(codes) // run_rows
        return
    factors = np.array([1.0, 1e-3, GAS, np.nan, 0.1, 3.6])
    table8 = np.array([3, 0, 2, -1, 1, 5], dtype=np.int8)
    values = np.random.default_rng(len(codes)).random(len(codes)) * 1e3
    values[::7] = np.nan
    np.testing.assert_array_equal(r.gather(factors), factors[codes])
    np.testing.assert_array_equal(r.gather(table8), table8[codes])
    assert r.gather(table8).dtype == np.int8
    np.testing.assert_array_equal(r.multiply(values, factors), values * factors[codes])
    assert int(r.lengths.sum()) == len(codes)
