"""ISO 4217 currency checks and plausible-magnitude bounds (scaler_workbench._quality)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scaler_workbench._quality import (
    PLAUSIBLE_MAX,
    implausible,
    is_iso4217,
    iso4217_codes,
)


def test_iso4217_accepts_real_codes_and_rejects_lookalikes() -> None:
    codes = pd.Series(["EUR", "GBP", "USD", "CHF", "EURO", "XYZ", "eur", " EUR", "", None, np.nan])
    assert is_iso4217(codes).tolist() == [
        True, True, True, True, False, False, False, False, False, False, False
    ]  # fmt: skip


def test_iso4217_list_comes_from_the_package_without_placeholder_codes() -> None:
    codes = iso4217_codes()
    assert len(codes) > 150  # the maintained list, not a hand-typed handful
    assert {"JPY", "SEK", "ZAR"} <= codes
    assert not {"XXX", "XTS"} & codes
    assert is_iso4217(pd.Series(["XXX", "XTS"], dtype="string")).tolist() == [False, False]


def test_infinities_are_always_implausible_and_nan_never() -> None:
    flags = implausible([np.inf, -np.inf, np.nan, 1.0], ["kWh", "unknown", "kWh", "unknown"], 1800)
    assert flags.tolist() == [True, True, False, False]


def test_bound_scales_with_the_period_length() -> None:
    hourly = PLAUSIBLE_MAX["kWh"]
    values = [hourly / 2, hourly / 2 + 1, hourly * 744, hourly * 744 + 1, 1e308]
    seconds = [1800, 1800, 31 * 86400, 31 * 86400, 31 * 86400]
    assert implausible(values, "kWh", seconds).tolist() == [False, True, False, True, True]


def test_bounds_per_unit_and_negative_magnitudes() -> None:
    values = np.array([2e5, 2e5, -2e6, 5.0])
    units = ["m³", "kWh", "kg", "m³"]
    assert implausible(values, units, 3600.0).tolist() == [True, False, True, False]


def test_profile_bounds_override_and_bad_periods_count_as_an_hour() -> None:
    flags = implausible([11.0, 11.0, 9.0], "kWh", [np.nan, 0.0, 3600.0], bounds={"kWh": 10.0})
    assert flags.tolist() == [True, True, False]


def test_units_must_match_values() -> None:
    with pytest.raises(ValueError, match="2 values but 1 units"):
        implausible([1.0, 2.0], ["kWh"], 60.0)
