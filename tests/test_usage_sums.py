"""Monthly sums in one fixed order (issue 13 item 9): a (meter, period) sum is the same float
whether its rows went through the chunked path (frames of ``_CHUNKED_MIN`` rows or more, in
chunks of ``_ROWS``) or the general path (smaller frames, e.g. the months an incremental sync
recomputes), so an incremental export equals a full one byte for byte."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _exports import export_bytes
from hypothesis import given, settings
from hypothesis import strategies as st

import scaler_workbench.usage as U
from scaler_workbench.clock import FakeClock
from scaler_workbench.profile import read_profile
from scaler_workbench.sandbox import Sandbox
from scaler_workbench.sync import run_sync

ROOT = Path(__file__).resolve().parent.parent
PROFILE = ROOT / "mappings" / "sandbox" / "profile.toml"
BASE = pd.Timestamp("2023-01-01", tz="UTC")
SUMS = ["consumption", "raw_value"]


def _intervals(meters: int, halfhours: int, seed: int, nan_every: int = 0) -> pd.DataFrame:
    """Half-hourly rows of ``meters`` meters in meter and time order, values with 3 decimals
    (the decimal fractions whose float sums depend on the order of addition)."""
    rng = np.random.default_rng(seed)
    n = meters * halfhours
    values = np.round(rng.uniform(0, 500, n), 3)
    if nan_every:
        values[::nan_every] = np.nan
    start = BASE + pd.to_timedelta(np.tile(np.arange(halfhours) * 30, meters), unit="min")
    return pd.DataFrame(
        {
            "meter_id": pd.Categorical(np.repeat([f"M{m:03d}" for m in range(meters)], halfhours)),
            "start": start,
            "end": start + pd.Timedelta(minutes=30),
            "consumption": values,
            "raw_value": values,
            "factor": 1.0,
            "source": pd.Categorical(["u"] * n),
            "timezone": pd.Categorical(["Europe/London"] * n),
        }
    )


def _run(frame: pd.DataFrame, *, chunked: bool, rows: int | None = None) -> pd.DataFrame:
    calls: list[object] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(U, "_CHUNKED_MIN", 1 if chunked else 10**12)
        if rows is not None:
            mp.setattr(U, "_ROWS", rows)
        original = U._calendarize_chunked
        mp.setattr(
            U, "_calendarize_chunked", lambda *a, **k: calls.append(r := original(*a, **k)) or r
        )
        out = U._calendarize(frame, freq="month", keep=None)
    if chunked:
        assert calls and calls[0] is not None, "the chunked path was not taken"
    return out.sort_values(["meter_id", "start"], ignore_index=True)


def _bits(frame: pd.DataFrame) -> list[bytes]:
    return [frame[c].to_numpy(dtype=np.float64).tobytes() for c in SUMS]


def test_a_meter_month_sums_bit_identically_through_both_paths_and_any_chunking() -> None:
    # 60 meters x 31 days: 89,280 rows, over _CHUNKED_MIN, so the whole frame is chunked
    frame = _intervals(60, 31 * 48, seed=7, nan_every=997)
    assert len(frame) >= U._CHUNKED_MIN
    full = U._calendarize(frame, freq="month", keep=None)  # default thresholds: chunked
    full = full.sort_values(["meter_id", "start"], ignore_index=True)
    assert _bits(full) == _bits(_run(frame, chunked=True))
    assert _bits(full) == _bits(_run(frame, chunked=False))
    for rows in (1000, 4099, 1 << 14):
        assert _bits(full) == _bits(_run(frame, chunked=True, rows=rows)), rows
    # one meter alone (1,488 rows: the general path, as an incremental recompute takes it)
    one = frame[frame["meter_id"] == "M017"].reset_index(drop=True)
    alone = U._calendarize(one, freq="month", keep=None)
    row = full[full["meter_id"] == "M017"]
    for c in SUMS:
        assert row[c].to_numpy().tobytes() == alone[c].to_numpy().tobytes(), c
    # the order of addition matters for these values: a pairwise sum gives another last digit
    # somewhere, so the equalities above are not trivially true
    sums = frame.groupby("meter_id", observed=True)["consumption"]
    pairwise = sums.apply(lambda s: float(np.sum(s.dropna().to_numpy())))
    assert (pairwise.to_numpy() != full["consumption"].to_numpy()).any()


@settings(max_examples=25, deadline=None)
@given(
    st.integers(1, 4),
    st.integers(1, 24 * 48),
    st.integers(0, 2**16),
    st.sampled_from([0, 3, 50]),
    st.integers(1, 700),
)
def test_property_chunked_and_general_sums_are_bit_identical(
    meters: int, halfhours: int, seed: int, nan_every: int, rows: int
) -> None:
    frame = _intervals(meters, halfhours, seed=seed, nan_every=nan_every)
    general = _run(frame, chunked=False)
    chunked = _run(frame, chunked=True, rows=rows)
    assert _bits(general) == _bits(chunked)
    pd.testing.assert_frame_equal(general, chunked, check_exact=True, check_categorical=False)


def test_incremental_sync_on_the_default_sandbox_exports_byte_identical_usage(
    make_sandbox: Callable[..., Sandbox], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sb = make_sandbox(as_of="2024-05-20")
    for k, v in sb.env().items():
        monkeypatch.setenv(k, v)
    profile = read_profile(PROFILE)
    clock = FakeClock(datetime(2024, 7, 1, tzinfo=UTC))
    first = run_sync(profile, out=tmp_path / "inc", clock=clock)
    sb.set_as_of("2024-07-01")
    r = run_sync(profile, out=tmp_path / "inc", clock=clock)
    assert first.mode == "full" and r.mode == "incremental"
    run_sync(profile, out=tmp_path / "full", clock=clock)
    inc, full = export_bytes(tmp_path / "inc"), export_bytes(tmp_path / "full")
    usage = pd.read_csv(tmp_path / "full" / "export" / "usage.csv")
    assert len(usage) and usage["start_date"].astype(str).str.startswith("2024-06").any()
    assert inc["usage.csv"] == full["usage.csv"]
