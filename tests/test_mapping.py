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
    assert len(report) == 6  # assets, meters, usage intervals / solar / bills, readings


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


# -- every shipped profile round-trips ----------------------------------------------------------
SHIPPED = sorted(ROOT.glob("mappings/*/profile.toml"))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.parent.name for p in SHIPPED])
def test_every_shipped_profile_round_trips(path, tmp_path):
    """profile -> workbook -> profile is the identity: derive_from and empty tables included."""
    profile = read_profile(path)
    out = to_mapping_workbook(profile, tmp_path / "m.xlsx", samples=samples_for(path.parent.name))
    assert read_mapping_workbook(out) == profile.section("mapping")
    assert read_unit_choices(out) == profile.section("units")
    again = apply_mapping_workbook(profile, out)
    assert again.data == profile.data


def test_round_trip_keeps_derive_from_and_empty_aliases():
    names = {p.parent.name: read_profile(p) for p in SHIPPED}
    assert names["greenbutton"].section("mapping")["assets"]["derive_from"] == "meters"
    assert "resource" not in names["greenbutton"].section("mapping")["assets"]
    assert names["octopus"].section("units")["aliases"] == {}


# -- drop-downs, notes, headers ------------------------------------------------------------------
def _validations(ws) -> dict[str, str]:
    """Each validated cell range -> its list formula."""
    return {
        str(rng): v.formula1 for v in ws.data_validations.dataValidation for rng in v.sqref.ranges
    }


def _formula_at(ws, cell: str) -> str | None:
    from openpyxl.worksheet.cell_range import CellRange

    for v in ws.data_validations.dataValidation:
        for rng in v.sqref.ranges:
            if cell in CellRange(str(rng)):
                return v.formula1
    return None


def _list_values(wb, name: str) -> list[str]:
    dest = next(iter(wb.defined_names[name].destinations))
    ws = wb[dest[0]]
    return [c.value for row in ws[dest[1].replace("$", "")] for c in row]


def _row(ws, value, col: int = 1) -> int:
    return next(r for r in range(1, ws.max_row + 1) if ws.cell(r, col).value == value)


def test_dropdowns_for_every_enumerated_column(tmp_path):
    profile = read_profile(PROFILES["ecostruxure"])
    data = json.loads(json.dumps(profile.data))
    data["mapping"]["usage"]["timeseries"]["prorate"] = "none"
    data["mapping"]["usage"]["timeseries"]["end_inclusive"] = False
    edited = type(profile).from_dict(data)
    out = to_mapping_workbook(edited, tmp_path / "m.xlsx", samples=eco_samples())
    wb = openpyxl_load(out)
    usage = wb["usage.timeseries"]
    assert _formula_at(usage, f"B{_row(usage, 'resource')}") == "=resources"
    assert _formula_at(usage, f"B{_row(usage, 'kind')}") == "=kind"
    assert _formula_at(usage, f"B{_row(usage, 'aggregate')}") == "=aggregate"
    assert _formula_at(usage, f"B{_row(usage, 'prorate')}") == "=prorate"
    assert _formula_at(usage, f"B{_row(usage, 'end_inclusive')}") == '"TRUE,FALSE"'
    assert _list_values(wb, "resources") == [
        "sites",
        "meters",
        "timeseries",
        "projects",
        "performance_scores",
    ]
    assert _list_values(wb, "kind") == ["intervals", "consumption", "readings"]
    assert _list_values(wb, "aggregate") == ["none", "day", "month"]
    # field paths: the usage sheet offers the timeseries samples' paths
    paths = _formula_at(usage, f"D{_row(usage, 'consumption')}")
    assert paths.startswith("=paths_")
    assert {"value", "date", "meter_id"} <= set(_list_values(wb, paths[1:]))
    meters = wb["meters"]
    assert {"commodity_usage", "unit"} <= set(_list_values(wb, _formula_at(meters, "D20")[1:]))
    # units: Read as from the registry's spellings, the ambiguous choices and the aliases
    units = wb["units"]
    assert _formula_at(units, f"B{_row(units, 'm3')}") == "=unit_choices"
    choices = set(_list_values(wb, "unit_choices"))
    assert {"kWh", "MWh", "m³", "kg", "US_therm", "therm", "tonne", "short_ton"} <= choices
    ef = wb["energy_factors"]
    assert _formula_at(ef, "D5") == '"TRUE,FALSE"'
    assert _formula_at(ef, "C5") == "=factor_units"
    mt = wb["meter_types"]
    assert _formula_at(mt, "B5") == "=meter_types" and _formula_at(mt, "C5") == "=INDIRECT($B5)"
    # strict lists refuse other values, free-form ones (paths, units) only warn
    styles = {v.formula1: v.errorStyle for ws in wb for v in ws.data_validations.dataValidation}
    assert styles["=kind"] == "stop" and styles["=unit_choices"] == "warning"
    assert styles[paths] == "warning"


def test_notes_wrap_headers_whole_no_python_names(tmp_path):
    import re

    out = to_mapping_workbook(
        read_profile(PROFILES["ecostruxure"]), tmp_path / "m.xlsx", samples=eco_samples()
    )
    wb = openpyxl_load(out)
    python_name = re.compile(r"\b[A-Z]+_[A-Z_]+\b|\b[a-z_]+\(\)")
    for ws in wb:
        if ws.sheet_state == "hidden":
            continue
        for row in ws.iter_rows():
            for c in row:
                if isinstance(c.value, str) and ws.title != "fields":
                    assert not python_name.search(c.value), (ws.title, c.coordinate, c.value)
        if ws.title == "README":
            continue
        header = next(
            r
            for r in range(3, 30)
            if ws.cell(r, 1).font.color
            and ws.cell(r, 1).fill.fgColor.rgb
            and ws.cell(r, 1).fill.fgColor.rgb.endswith("1F4E78")
        )
        for c in ws[header]:
            if c.value is None:
                continue
            width = ws.column_dimensions[c.column_letter].width
            assert len(str(c.value)) < width, (ws.title, c.value, width)  # whole headers
        # notes (the last column) wrap inside their cell; tall notes get a taller row
        last = max(c.column for c in ws[header] if c.value is not None)
        for r in range(header + 1, ws.max_row + 1):
            note = ws.cell(r, last)
            if isinstance(note.value, str) and len(note.value) > 20:
                assert note.alignment.wrap_text, (ws.title, note.coordinate)
    mt = wb["meter_types"]
    assert mt.cell(4, 5).value == "Meters in samples"
    assert mt.column_dimensions["E"].width > len("Meters in samples")
    # a long example note gets the height it needs instead of overflowing
    fields = wb["fields"]
    long = next(r for r in range(5, fields.max_row + 1) if len(str(fields.cell(r, 4).value)) > 70)
    assert fields.row_dimensions[long].height >= 30
    # the subtitle is merged over the sheet's columns and wrapped
    assert any(str(rng).startswith("A2:") for rng in mt.merged_cells.ranges)


# -- check_mapping: typos, dimensions, stale ids, each at its cell -------------------------------
def _broken_mapping() -> tuple[dict, dict]:
    profile = read_profile(PROFILES["ecostruxure"])
    data = json.loads(json.dumps(profile.data))
    usage = data["mapping"]["usage"]["timeseries"]
    usage["kind"] = "interval"
    usage["aggregate"] = "monthly"
    data["mapping"]["assets"]["resource"] = "site"
    data["mapping"]["meters"]["value_maps"]["meter_type"]["Fuel / Retired Coal"] = "Energy"
    data["units"]["aliases"]["kWh"] = "kW"  # the analyst typed kW as "Read as" for kWh
    return data, eco_samples()


def test_check_mapping_catches_typos_dimensions_and_stale_ids(tmp_path):
    data, samples = _broken_mapping()
    profile = read_profile(PROFILES["ecostruxure"])
    report = check_mapping(
        data["mapping"], samples, units=data["units"], resources=list(data["resources"])
    )
    by = {(r.check, r.subject): r for r in report.itertuples()}
    kind = by[("unknown_setting", "kind = 'interval'")]
    assert "did you mean 'intervals'?" in kind.message and kind.severity == "error"
    agg = by[("unknown_setting", "aggregate = 'monthly'")]
    assert "did you mean 'month'?" in agg.message
    res = by[("unknown_resource", "site")]
    assert "did you mean 'sites'?" in res.message and res.severity == "error"
    assert ("missing_resource", "site") not in by  # one clear finding, not a misleading second
    stale = by[("stale_value_map", "Fuel / Retired Coal")]
    assert stale.severity == "warning"
    dim = by[("unit_dimension", "kWh")]
    assert dim.severity == "error" and "power" in dim.message
    assert "did you mean kWh (energy), not kW (power)?" in dim.message
    assert dim.count >= 1
    # every finding names its sheet and cell, and that cell holds the offending value
    out = to_mapping_workbook(
        type(profile).from_dict(data, check_values=False), tmp_path / "m.xlsx", samples=samples
    )
    wb = openpyxl_load(out)
    for finding in (kind, agg, res, stale, dim):
        assert finding.message.startswith(f"sheet {finding.sheet!r} cell {finding.cell}: ")
    cell = lambda f: wb[f.sheet][f.cell].value  # noqa: E731
    assert cell(kind) == "interval" and cell(agg) == "monthly" and cell(res) == "site"
    assert cell(stale) == "Fuel / Retired Coal"
    assert (dim.sheet, cell(dim)) == ("units", "kW")
    assert wb["units"][f"A{dim.cell[1:]}"].value == "kWh"


def test_check_mapping_unit_typed_on_the_meters_sheet():
    profile = read_profile(PROFILES["ecostruxure"])
    mapping = json.loads(json.dumps(profile.section("mapping")))
    mapping["meters"]["fields"]["raw_unit"] = {"const": "kW"}
    report = check_mapping(mapping, eco_samples(), units=profile.section("units"))
    dim = report[report["check"] == "unit_dimension"]
    assert set(dim["subject"]) == {"kW"}
    assert set(dim["sheet"]) == {"meters"} and set(dim["cell"].str[0]) == {"E"}  # Constant


def test_check_mapping_of_the_shipped_mapping_has_no_errors():
    profile = read_profile(PROFILES["ecostruxure"])
    report = check_mapping(
        profile.section("mapping"),
        eco_samples(),
        units=profile.section("units"),
        resources=list(profile.resources),
    )
    assert set(report["severity"]) <= {"warning"}, report[report["severity"] == "error"]
    assert {"sheet", "cell"} <= set(report.columns) and report["cell"].str.len().min() >= 2


@pytest.mark.parametrize(
    ("sheet", "find", "col", "value", "cell"),
    [
        ("units", "heating_value.calorific_value", 2, "39,5", "B"),
        ("meters", "description", 5, "1,5", None),  # a text column: a comma is just text
    ],
)
def test_decimal_comma_gets_a_workbook_hint(tmp_path, sheet, find, col, value, cell):
    profile = read_profile(ROOT / "mappings" / "octopus" / "profile.toml")
    out = to_mapping_workbook(profile, tmp_path / "m.xlsx")
    if sheet == "meters":
        _edit(out, sheet, find, 4, None)
    _edit(out, sheet, find, col, value)
    if cell is None:
        assert read_mapping_workbook(out)["meters"]["fields"][find] == {"const": value}
        return
    with pytest.raises(MappingError, match="decimal comma") as info:
        read_mapping_workbook(out)
    assert info.value.sheet == sheet and info.value.column == cell
    assert "39.5" in info.value.hint and "TOML" not in info.value.hint
    assert "spreadsheet" in info.value.hint


def test_decimal_comma_in_a_numeric_constant(workbook):
    wb = openpyxl_load(workbook)
    ws = wb["usage.intervals"] if "usage.intervals" in wb.sheetnames else wb[wb.sheetnames[3]]
    row = _row(ws, "consumption")
    ws.cell(row, 4).value = None
    ws.cell(row, 5).value = "12,75"
    wb.save(workbook)
    with pytest.raises(MappingError, match="decimal comma") as info:
        read_mapping_workbook(workbook)
    assert info.value.cell == f"E{row}" and "12.75" in info.value.hint


if __name__ == "__main__":
    regenerate()
