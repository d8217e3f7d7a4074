"""Therms (issue 15 items 11 and 15b): both therms with their kWh values in the hints, the
factors pinned, unit aliases that are pint expressions, suggest_units with one label."""

from __future__ import annotations

from pathlib import Path

import pytest

from scaler_workbench.exceptions import UnitError
from scaler_workbench.units import (
    AMBIGUOUS,
    conversion_factor,
    convert,
    resolve_unit,
    suggest_units,
)

SANDBOX = Path(__file__).resolve().parents[1] / "mappings" / "sandbox" / "profile.toml"


def test_the_two_therms_and_their_kwh_factors() -> None:
    # pint's therm: 100,000 (ISO) Btu = 105.5056 MJ, used by Portfolio Manager and ESPI
    assert conversion_factor("therm", "kWh") == pytest.approx(29.30711111, rel=1e-9)
    assert conversion_factor("therm", "Btu") == pytest.approx(100_000, rel=1e-12)
    assert conversion_factor("US_therm", "kWh") == pytest.approx(29.30011111, rel=1e-9)
    assert conversion_factor("therm", "kWh") / conversion_factor("US_therm", "kWh") == (
        pytest.approx(1.000239, rel=1e-6)  # US_therm is 0.024 % low for a 100,000 Btu therm
    )


def test_the_hint_states_both_therms_with_kwh_and_who_uses_which() -> None:
    texts = AMBIGUOUS["therm"]
    assert "29.3001 kWh" in texts["US_therm"]
    assert "29.3071 kWh" in texts["therm"] and "100,000 Btu" in texts["therm"]
    assert "Portfolio Manager" in texts["therm"] and "ESPI" in texts["therm"]
    with pytest.raises(UnitError) as err:
        resolve_unit("therms")
    text = str(err.value)
    assert "29.3001 kWh" in text and "29.3071 kWh" in text
    assert "'therms' = 'US_therm' or 'therm'" in text  # neither is offered as the default
    (row,) = suggest_units(["therms"]).to_dict("records")
    assert "29.3001 kWh" in row["alias"] and "29.3071 kWh" in row["alias"]
    assert "ask the provider" in row["alias"]


def test_suggest_units_reads_one_string_as_one_label() -> None:
    table = suggest_units("therms")
    assert table["label"].tolist() == ["therms"]
    assert bool(table.loc[0, "ambiguous"])


@pytest.mark.parametrize(
    ("alias", "kwh"),
    [("100 kBtu", 29.30711111), ("100*kBtu", 29.30711111), ("1e5 Btu", 29.30711111)],
)
def test_an_alias_may_be_a_pint_expression_with_a_number(alias: str, kwh: float) -> None:
    assert resolve_unit("therms", {"therms": alias}) == alias
    assert convert([2.0], "therms", "kWh", aliases={"therms": alias})[0] == pytest.approx(
        2 * kwh, rel=1e-9
    )


def test_a_bad_scaled_alias_is_still_a_unit_error() -> None:
    with pytest.raises(UnitError, match="unknown unit 'therms'"):
        resolve_unit("therms", {"therms": "100 kBtuu"})


def test_a_scaled_alias_survives_the_mapping_workbook(tmp_path: Path) -> None:
    from scaler_workbench.mapping import read_unit_choices, to_mapping_workbook
    from scaler_workbench.profile import read_profile

    profile = read_profile(SANDBOX)
    data = profile.to_dict()
    data["units"]["aliases"]["therms"] = "100 kBtu"
    path = to_mapping_workbook(data, tmp_path / "mapping.xlsx")
    assert read_unit_choices(path)["aliases"]["therms"] == "100 kBtu"
