"""The Excel mapping workbook: round trip, errors with cell references, checks against data.

Run ``python tests/test_mapping.py`` to regenerate the shipped mappings/*/mapping.xlsx.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

from scaler_workbench.exceptions import MappingError
from scaler_workbench.mapping import (
    apply_mapping_workbook,
    check_mapping,
    field_paths,
    read_mapping_workbook,
    read_unit_choices,
    to_mapping_workbook,
)
from scaler_workbench.profile import read_profile

ROOT = Path(__file__).parents[1]
PROFILES = {
    "sandbox": ROOT / "mappings" / "sandbox" / "profile.toml",
    "ecostruxure": ROOT / "mappings" / "ecostruxure" / "profile.toml",
}
ECO_DATA = ROOT / "tests" / "data" / "ecostruxure"


def eco_samples() -> dict[str, list[dict]]:
    from scaler_workbench.connectors.ecostruxure import (
        parse_ecostruxure_meters,
        parse_ecostruxure_timeseries,
    )

    sites = json.loads((ECO_DATA / "sites.json").read_text())
    meters = parse_ecostruxure_meters(
        json.loads((ECO_DATA / "meters.json").read_text()), site_id=sites[0]["id"]
    )
    values = parse_ecostruxure_timeseries(
        json.loads((ECO_DATA / "timeseries.json").read_text()), meters=meters
    )
    return {"sites": sites, "meters": meters, "timeseries": values}


def samples_for(name: str) -> dict[str, list[dict]] | None:
    return eco_samples() if name == "ecostruxure" else None


def regenerate() -> None:
    for name, path in PROFILES.items():
        to_mapping_workbook(
            read_profile(path), path.with_name("mapping.xlsx"), samples=samples_for(name)
        )


def openpyxl_load(path):
    from openpyxl import load_workbook

    return load_workbook(path)


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_round_trip_profile_workbook_profile(name, tmp_path):
    profile = read_profile(PROFILES[name])
    out = to_mapping_workbook(profile, tmp_path / "m.xlsx", samples=samples_for(name))
    assert read_mapping_workbook(out) == profile.section("mapping")
    assert read_unit_choices(out) == profile.section("units")
    again = apply_mapping_workbook(profile, out)
    assert again.section("mapping") == profile.section("mapping")


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_shipped_workbooks_are_current_and_deterministic(name, tmp_path):
    profile = read_profile(PROFILES[name])
    shipped = PROFILES[name].with_name("mapping.xlsx")
    fresh = to_mapping_workbook(profile, tmp_path / "a.xlsx", samples=samples_for(name))
    twice = to_mapping_workbook(profile, tmp_path / "b.xlsx", samples=samples_for(name))
    digest = hashlib.sha256(fresh.read_bytes()).hexdigest()
    assert digest == hashlib.sha256(twice.read_bytes()).hexdigest()
    assert digest == hashlib.sha256(shipped.read_bytes()).hexdigest(), (
        "run `python tests/test_mapping.py` to regenerate the shipped workbooks"
    )


def test_workbook_layout_is_pleasant(tmp_path):
    out = to_mapping_workbook(
        read_profile(PROFILES["ecostruxure"]), tmp_path / "m.xlsx", samples=eco_samples()
    )
    wb = openpyxl_load(out)
    assert wb.sheetnames[:4] == ["README", "assets", "meters", "usage.timeseries"]
    assert {"meter_types", "units", "energy_factors", "fields", "lists"} <= set(wb.sheetnames)
    assert wb["lists"].sheet_state == "hidden"
    meters = wb["meters"]
    assert meters.freeze_panes is not None
    header = next(r for r in range(1, 20) if meters.cell(r, 1).value == "Scaler column")
    assert meters.cell(header, 1).font.bold
    mt = wb["meter_types"]
    validations = mt.data_validations.dataValidation
    assert {v.formula1 for v in validations} == {"=meter_types", "=INDIRECT($B5)"}
    values = [mt.cell(r, 1).value for r in range(5, mt.max_row + 1)]
    assert "Human Experience/Air Quality / CO2" in values
    co2 = values.index("Human Experience/Air Quality / CO2") + 5
    assert mt.cell(co2, 2).value is None and "not imported" in mt.cell(co2, 6).value
    fields = {wb["fields"].cell(r, 2).value for r in range(5, wb["fields"].max_row + 1)}
    assert {"postalAddress.timezone", "metadata.grossArea", "commodity_usage"} <= fields
    ef = wb["energy_factors"]
    assert [ef.cell(r, 1).value for r in range(5, 7)] == ["Fuel / Natural Gas", "Fuel / Diesel"]


def _edit(path: Path, sheet: str, find: str, col: int, value, *, col_find: int = 1) -> None:
    wb = openpyxl_load(path)
    ws = wb[sheet]
    row = next(r for r in range(1, ws.max_row + 1) if ws.cell(r, col_find).value == find)
    ws.cell(row, col).value = value
    wb.save(path)


@pytest.fixture
def workbook(tmp_path):
    return to_mapping_workbook(read_profile(PROFILES["sandbox"]), tmp_path / "m.xlsx")


def test_analyst_edits_are_read_back(workbook):
    _edit(workbook, "meters", "description", 4, None)
    _edit(workbook, "meters", "description", 5, "main meter")
    _edit(workbook, "meter_types", "gas", 3, "Propane")
    _edit(workbook, "units", "therms", 2, "therm")
    mapping = read_mapping_workbook(workbook)
    assert mapping["meters"]["fields"]["description"] == {"const": "main meter"}
    assert mapping["meters"]["value_maps"]["meter_subtype"]["gas"] == "Propane"
    assert read_unit_choices(workbook)["aliases"]["therms"] == "therm"


@pytest.mark.parametrize(
    ("sheet", "find", "col", "value", "match", "cell"),
    [
        ("assets", "name", 4, None, "required column 'name'", "D"),
        ("meter_types", "gas", 2, "Energie", "unknown meter type 'Energie'", "B"),
        ("meter_types", "water", 3, "Natural Gas", "not a subtype of meter type 'Water'", "C"),
        ("units", "therms", 2, "thermz", "'thermz' is not a unit", "B"),
        ("meters", "description", 5, "x", "both a field path and a constant", "E"),
        ("meters", "description", 1, "colour", "not a column of Scaler's meters", "A"),
    ],
)
def test_errors_name_the_cell(workbook, sheet, find, col, value, match, cell):
    _edit(workbook, sheet, find, col, value)
    with pytest.raises(MappingError, match=match) as info:
        read_mapping_workbook(workbook)
    err = info.value
    assert err.sheet == sheet and err.column == cell and isinstance(err.row, int)
    assert err.hint


def test_unconfirmed_factor_and_confirmed_without_factor(tmp_path):
    out = to_mapping_workbook(read_profile(PROFILES["ecostruxure"]), tmp_path / "m.xlsx")
    _edit(out, "energy_factors", "Fuel / District Steam", 4, True)
    with pytest.raises(MappingError, match="confirmed but has no factor"):
        read_unit_choices(out)


def test_malformed_sheet_and_not_xlsx(workbook, tmp_path):
    wb = openpyxl_load(workbook)
    ws = wb["assets"]
    row = next(r for r in range(1, 30) if ws.cell(r, 1).value == "Scaler column")
    ws.cell(row, 1).value = "Column"
    wb.save(workbook)
    with pytest.raises(MappingError, match="malformed") as info:
        read_mapping_workbook(workbook)
    assert info.value.sheet == "assets"
    bogus = tmp_path / "m.xlsx"
    bogus.write_text("not a workbook")
    with pytest.raises(MappingError, match="not an Excel"):
        read_mapping_workbook(bogus)
    with pytest.raises(MappingError, match="does not exist"):
        read_mapping_workbook(tmp_path / "missing.xlsx")


def test_deleted_sheet_is_reported(workbook):
    wb = openpyxl_load(workbook)
    del wb["meter_types"]
    wb.save(workbook)
    with pytest.raises(MappingError, match="no 'meter_types' sheet"):
        read_mapping_workbook(workbook)


def test_check_mapping_against_latest_data():
    profile = read_profile(PROFILES["ecostruxure"])
    samples = eco_samples()
    samples["meters"].append({**samples["meters"][0], "id": "x:1", "unit": "therms"})
    report = check_mapping(profile.section("mapping"), samples, units=profile.section("units"))
    by_check = {c: set(g["subject"]) for c, g in report.groupby("check")}
    assert by_check["not_imported"] == {"Human Experience/Air Quality / CO2"}
    assert by_check["unknown_unit"] == {"therms"}
    assert "missing_field" not in by_check  # every mapped path exists in the samples
    co2 = report[report["check"] == "not_imported"].iloc[0]
    assert co2["count"] == 1 and "NOT imported" in co2["message"]
    broken = json.loads(json.dumps(profile.section("mapping")))
    broken["assets"]["fields"]["city"] = "postalAddress.town"
    report = check_mapping(broken, samples, units=profile.section("units"))
    missing = report[report["check"] == "missing_field"]
    assert list(missing["subject"]) == ["postalAddress.town"]
    assert list(missing["severity"]) == ["error"]


def test_check_mapping_reports_resources_without_records():
    profile = read_profile(PROFILES["sandbox"])
    report = check_mapping(profile.section("mapping"), {})
    assert set(report["check"]) == {"missing_resource"}
    assert len(report) == 5


def test_field_paths_lists_nested_and_list_paths():
    recs = [{"a": {"b": 1}, "m": [{"u": "kWh"}, {"u": "m³"}]}, {"a": {"b": 2}}]
    paths = {p["path"]: p for p in field_paths(recs)}
    assert paths["a.b"]["count"] == 2 and paths["a.b"]["examples"] == [1, 2]
    assert paths["m[].u"]["examples"] == ["kWh", "m³"]


def test_import_does_not_pull_openpyxl():
    import subprocess

    code = (
        "import sys, scaler_workbench, scaler_workbench.mapping; print('openpyxl' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


if __name__ == "__main__":
    regenerate()


def test_first_of_and_power_of_ten_round_trip_and_check(tmp_path):
    profile = read_profile(PROFILES["sandbox"])
    data = json.loads(json.dumps(profile.data))
    meters = data["mapping"]["meters"]["fields"]
    meters["meter_id"] = {"first": ["id", "serial"]}
    source = next(iter(data["mapping"]["usage"].values()))
    source["fields"]["consumption"] = {"path": "value", "power_of_ten": "powerOfTenMultiplier"}
    edited = type(profile).from_dict(data)
    out = to_mapping_workbook(edited, tmp_path / "m.xlsx")
    assert read_mapping_workbook(out) == edited.section("mapping")
    assert apply_mapping_workbook(edited, out).section("mapping") == edited.section("mapping")
    # check_mapping reads "first of": a record with only the second path is fine
    samples = {"meters": [{"serial": "X1", "site_id": "S1"}]}
    report = check_mapping(edited.section("mapping"), samples)
    missing = set(report.loc[report["check"] == "missing_field", "subject"])
    assert "id" not in missing and "serial" not in missing
