"""Tests for scaler_workbench.units: one pint registry, explicit choices, vectorised factors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaler_workbench.exceptions import ProfileError, UnitError
from scaler_workbench.units import (
    GREEN_BUTTON_UOM,
    apply_power_of_ten,
    conversion_factor,
    convert,
    get_registry,
    green_button_cost,
    heating_value,
    pint_calls,
    resolve_unit,
    suggest_units,
)


def test_registry_is_one_cached_instance():
    assert get_registry() is get_registry()


# ---- pitfalls: units ---------------------------------------------------------------------------
def test_pitfall_therm_vs_us_therm():
    assert conversion_factor("therm", "MJ") == pytest.approx(105.5056, rel=1e-12)
    assert conversion_factor("US_therm", "MJ") == pytest.approx(105.4804, rel=1e-12)
    with pytest.raises(UnitError) as exc:
        resolve_unit("therms", meter="G1")
    assert exc.value.unit == "therms" and exc.value.meter == "G1"
    assert "US_therm" in str(exc.value) and "[units.aliases]" in str(exc.value)
    assert resolve_unit("therms", {"therms": "US_therm"}) == "US_therm"


def test_pitfall_btu_is_iso_and_kwh_kbtu():
    assert conversion_factor("Btu", "J") == 1055.056
    assert conversion_factor("kWh", "kBtu") == pytest.approx(3.41214, rel=1e-5)
    assert conversion_factor("GJ", "kBtu") == pytest.approx(947.817, rel=1e-6)


def test_pitfall_mbtu_ambiguous_and_mmbtu_is_million():
    with pytest.raises(UnitError, match="MMBtu"):
        resolve_unit("MBtu")
    assert conversion_factor("MMBtu", "Btu") == 1e6
    assert conversion_factor(resolve_unit("MBtu", {"MBtu": "kBtu"}), "Btu") == 1000.0


def test_pitfall_mcf_ambiguous_thousand_or_million():
    with pytest.raises(UnitError, match="MMcf"):
        resolve_unit("MCF")
    assert conversion_factor(resolve_unit("MCF", {"mcf": "Mcf"}), "cf") == 1000.0
    assert conversion_factor(resolve_unit("MCF", {"MCF": "MMcf"}), "cf") == 1e6


def test_pitfall_dekatherm_is_ten_therms_and_one_mmbtu():
    assert conversion_factor("Dth", "therm") == 10.0
    assert conversion_factor("Dth", "MMBtu") == 1.0


def test_pitfall_ccf_is_not_a_therm():
    # 1 ccf at Portfolio Manager's 1.026 kBtu/ft³ is 102.6 kBtu, about 1.03 US therms
    hv = heating_value({"preset": "portfolio_manager_us"})
    assert hv is not None
    kwh = convert([1.0], "ccf", "kWh", heating=hv)[0]
    assert kwh * conversion_factor("kWh", "kBtu") == pytest.approx(102.6, rel=1e-9)
    assert kwh * conversion_factor("kWh", "US_therm") == pytest.approx(1.0262, rel=1e-4)
    assert conversion_factor("ccf", "m3") == pytest.approx(2.8316846592, rel=1e-12)


def test_pitfall_uk_vs_us_gallon():
    with pytest.raises(UnitError, match="UK_gallon"):
        resolve_unit("gallons")
    assert conversion_factor("UK_gallon", "L") == 4.54609
    assert conversion_factor("US_gallon", "L") == 3.785411784
    assert resolve_unit("US_gal") == "US_gallon"


def test_pitfall_short_ton_vs_tonne():
    with pytest.raises(UnitError, match="tonne"):
        resolve_unit("tons", meter="W9")
    assert conversion_factor("short_ton", "kg") == 907.18474
    assert conversion_factor("tonne", "kg") == 1000.0
    assert conversion_factor(resolve_unit("tons", {"tons": "tonne"}), "kg") == 1000.0


def test_pitfall_gas_m3_to_kwh_uk_formula():
    hv = heating_value({"preset": "uk", "calorific_value": 40.0})
    assert hv is not None and "40" in hv.description
    assert convert([100.0], "m3", "kWh", heating=hv)[0] == pytest.approx(
        100 * 1.02264 * 40.0 / 3.6, rel=1e-12
    )
    default = heating_value({"preset": "uk"})
    assert default is not None and default.kwh_per_m3 == pytest.approx(1.02264 * 39.5 / 3.6)


def test_pitfall_portfolio_manager_and_canada_heating_values():
    us = heating_value({"preset": "portfolio_manager_us"})
    ca = heating_value({"preset": "canada"})
    assert us is not None and ca is not None
    # PM: 1 m³ = 36.30 kBtu
    assert us.kwh_per_m3 * conversion_factor("kWh", "kBtu") == pytest.approx(36.23, rel=2e-3)
    assert ca.kwh_per_m3 / us.kwh_per_m3 == pytest.approx(1.031 / 1.026)


def test_pitfall_gas_volume_without_heating_value_is_an_error():
    with pytest.raises(UnitError, match="heating value"):
        convert([1.0], "m3", "kWh")


def test_pitfall_imperial_gas_meter_reads_hundreds_of_cubic_feet():
    assert convert([1.0], "ccf", "m³")[0] == pytest.approx(2.8316846592)


def test_pitfall_green_button_power_of_ten_multiplier_and_cost():
    assert apply_power_of_ten([1234.0], -3)[0] == 1.234
    assert list(apply_power_of_ten([1.0, 2.0], [3, 0])) == [1000.0, 2.0]
    assert green_button_cost([250000])[0] == 2.5
    assert GREEN_BUTTON_UOM[72] == "Wh" and GREEN_BUTTON_UOM[169] == "therm"


# ---- behaviour ----------------------------------------------------------------------------------
def test_unknown_unit_raises_unit_error_with_hint():
    with pytest.raises(UnitError) as exc:
        resolve_unit("furlongs per fortnight", meter="M1")
    assert exc.value.unit == "furlongs per fortnight"
    assert "[units.aliases]" in str(exc.value)


def test_empty_unit_raises():
    with pytest.raises(UnitError, match="no unit"):
        resolve_unit("", meter="M1")


def test_incompatible_dimensions_raise():
    with pytest.raises(UnitError):
        convert([1.0], "kg", "kWh")


def test_bad_heating_value_preset_is_profile_error():
    with pytest.raises(ProfileError):
        heating_value({"preset": "mars"})


def test_common_spellings_resolve():
    for label, expr in [("KWH", "kWh"), ("m³", "m3"), ("cubic meters", "m3"), ("Litres", "L")]:
        assert resolve_unit(label) == expr


def test_one_million_mixed_rows_one_pint_call_per_distinct_unit():
    labels = np.array(["kWh", "Wh", "MWh", "GJ", "MMBtu", "kBtu", "Dth"])
    rng = np.random.default_rng(1)
    idx = rng.integers(0, len(labels), 1_000_000)
    values = rng.random(1_000_000)
    conversion_factor.cache_clear() if hasattr(conversion_factor, "cache_clear") else None
    from scaler_workbench import units

    units._exact_factor.cache_clear()
    units.dimension_of.cache_clear()
    before = pint_calls()
    out = convert(values, pd.Series(pd.Categorical(labels[idx])), "kWh")
    calls = pint_calls() - before
    # one factor (plus one dimension check) per distinct unit: never per row
    assert calls <= 2 * len(labels) + 2
    assert out[idx == 1][:5] == pytest.approx(values[idx == 1][:5] / 1000)


def test_suggest_units_spots_labels_and_choices():
    s = suggest_units(["kWh", "Therms", "cubic metres (m3)", "gal", "kWh"]).set_index("label")
    assert len(s) == 4
    assert s.loc["kWh", "suggestion"] == "kWh"
    assert bool(s.loc["Therms", "ambiguous"]) and "US_therm" in s.loc["Therms", "choices"]
    assert s.loc["cubic metres (m3)", "suggestion"] == "m3"
    assert bool(s.loc["gal", "ambiguous"])


exact_pairs = st.sampled_from(
    [
        ("kWh", "Wh"),
        ("MWh", "kWh"),
        ("MMBtu", "kBtu"),
        ("Dth", "MMBtu"),
        ("tonne", "kg"),
        ("m3", "L"),
        ("kcf", "cf"),
        ("ccf", "cf"),
    ]
)


@settings(max_examples=200, deadline=None)
@given(pair=exact_pairs, x=st.integers(min_value=-(2**40), max_value=2**40))
def test_round_trip_exact_for_exact_factors(pair, x):
    a, b = pair
    f, g = conversion_factor(a, b), conversion_factor(b, a)
    assert f * g == 1.0
    there = convert([float(x)], a, b)[0]
    assert there == float(x) * f
    back = there / f  # dividing by the exact integer factor undoes it
    assert back == float(x)
