"""Record filters in the mapping workbook: the ``filters`` sheet carries ``where`` / ``skip`` of
resources and mapping sections and ``[mapping] exclude_meters`` through
profile -> workbook -> profile exactly; a bad filter typed in it is a ``FilterError`` naming the
sheet and cell; text that a spreadsheet would run stays text."""

from __future__ import annotations

import copy
import re
import zipfile
from pathlib import Path

import pytest
from openpyxl import load_workbook

from scaler_workbench.exceptions import FilterError, MappingError
from scaler_workbench.mapping import (
    apply_mapping_workbook,
    read_mapping_workbook,
    read_resource_filters,
    to_mapping_workbook,
)
from scaler_workbench.profile import Profile, read_profile

ROOT = Path(__file__).parents[1]
SANDBOX = ROOT / "mappings" / "sandbox" / "profile.toml"


def filtered_profile() -> Profile:
    """The sandbox profile with a filter of every shape at every place."""
    data = read_profile(SANDBOX).to_dict()
    data["resources"]["sites"]["where"] = {"name": {"matches": "^=S"}, "n": 3}
    data["resources"]["meters"]["skip"] = {"kind": ["virtual", "test"]}
    data["mapping"]["meters"]["where"] = {
        "status": {"!=": "archived"},
        "meta.grade": {">=": 2, "<": 9.5},
    }
    data["mapping"]["usage"]["intervals"]["skip"] = {
        "value": {"missing": True},
        "flag": {"in": ["test", "=cal", "+1", "@x", "-x"]},
    }
    data["mapping"]["readings"]["registers"]["where"] = {"estimated": False}
    data["mapping"]["exclude_meters"] = ["M-EXCL", 7, "=HYPERLINK(1)"]
    return Profile.from_dict(data)


def rows_of(path: Path) -> list[tuple]:
    ws = load_workbook(path)["filters"]
    header = next(r for r in range(1, 10) if ws.cell(r, 1).value == "Applies to")
    return [
        tuple(ws.cell(r, c).value for c in range(1, 6))
        for r in range(header + 1, ws.max_row + 1)
        if ws.cell(r, 2).value is not None
    ]


def test_round_trip_keeps_every_filter_exactly(tmp_path):
    profile = filtered_profile()
    out = to_mapping_workbook(profile, tmp_path / "m.xlsx")
    mapping = read_mapping_workbook(out)
    assert mapping == profile.section("mapping")
    assert mapping["exclude_meters"] == ["M-EXCL", 7, "=HYPERLINK(1)"]
    assert mapping["meters"]["where"] == {
        "status": {"!=": "archived"},
        "meta.grade": {">=": 2, "<": 9.5},
    }
    assert read_resource_filters(out) == {
        "sites": {"where": {"name": {"matches": "^=S"}, "n": 3}},
        "meters": {"skip": {"kind": ["virtual", "test"]}},
    }
    again = apply_mapping_workbook(profile, out)
    assert again.data == profile.data
    assert again.to_dict() == profile.to_dict()


def test_filters_sheet_is_what_openpyxl_reads(tmp_path):
    out = to_mapping_workbook(filtered_profile(), tmp_path / "m.xlsx")
    wb = load_workbook(out)
    names = wb.sheetnames
    assert names.index("filters") == names.index("readings.registers") + 1
    assert rows_of(out) == [
        ("resources.sites", "where", "name", "matches", "^=S"),
        ("resources.sites", "where", "n", None, 3),
        ("resources.meters", "skip", "kind", None, '["virtual", "test"]'),
        ("mapping.meters", "where", "status", "!=", "archived"),
        ("mapping.meters", "where", "meta.grade", ">=", 2),
        ("mapping.meters", "where", "meta.grade", "<", 9.5),
        ("mapping.usage.intervals", "skip", "value", "missing", True),
        ("mapping.usage.intervals", "skip", "flag", "in", '["test", "=cal", "+1", "@x", "-x"]'),
        ("mapping.readings.registers", "where", "estimated", None, False),
        ("mapping", "exclude_meters", None, None, "M-EXCL"),
        ("mapping", "exclude_meters", None, None, 7),
        ("mapping", "exclude_meters", None, None, "=HYPERLINK(1)"),
    ]
    ws = wb["filters"]
    notes = [ws.cell(r, 6).value for r in range(5, 9)]
    assert notes[0] == "keep a record only when name matches the pattern '^=S'"
    assert notes[2] == 'drop a record when kind is one of \'["virtual", "test"]\''
    # drop-downs: filter kinds and operators refuse other values, places only warn
    styles = {str(v.sqref): (v.formula1, v.errorStyle) for v in ws.data_validations.dataValidation}
    assert styles["B5:B66"] == ("=filter_kinds", "stop")
    assert styles["D5:D66"] == ("=filter_operators", "stop")
    assert styles["A5:A66"] == ("=filter_places", "warning")
    lists = wb["lists"]
    col = next(
        c for c in range(1, lists.max_column + 1) if lists.cell(1, c).value == "filter_operators"
    )
    ops = [lists.cell(r, col).value for r in range(2, 12)]
    assert ops == ["==", "!=", ">", "<", ">=", "<=", "in", "not in", "matches", "missing"]
    assert "mapping.usage.intervals" in [
        lists.cell(r, c).value
        for c in range(1, lists.max_column + 1)
        if lists.cell(1, c).value == "filter_places"
        for r in range(2, lists.max_row + 1)
    ]


def test_formula_like_text_stays_text(tmp_path):
    """No cell of the workbook is a formula: '=...' text (a filter value, an excluded id, the
    '==' operator on the lists sheet) is a string cell, read back as the same text."""
    out = to_mapping_workbook(filtered_profile(), tmp_path / "m.xlsx")
    with zipfile.ZipFile(out) as z:
        sheets = [n for n in z.namelist() if n.startswith("xl/worksheets/sheet")]
        assert sheets
        for name in sheets:
            assert not re.search(r"<f[ >]", z.read(name).decode("utf-8")), name
    wb = load_workbook(out)
    risky = [
        c
        for ws in wb.worksheets
        for row in ws.iter_rows()
        for c in row
        if isinstance(c.value, str) and c.value[:1] in "=+-@"
    ]
    assert {"=HYPERLINK(1)", "=="} <= {c.value for c in risky}
    assert all(c.data_type == "s" for c in risky)


def _edit(path: Path, cell: str, value, sheet: str = "filters") -> Path:
    wb = load_workbook(path)
    wb[sheet][cell] = value
    wb.save(path)
    return path


@pytest.mark.parametrize(
    ("cell", "value", "match", "at"),
    [
        ("D8", "gte", r"unknown operator 'gte' \(did you mean '>='\?\)", "D8"),
        ("D8", "gt", r"did you mean '>'\?", "D8"),
        ("E11", '["test", "cal"', "is not a JSON list", "E11"),
        ("D11", "in", r"needs a non-empty list, got 'archived'|needs a non-empty list", "E11"),
        ("E10", "maybe", r"missing must be true or false, got 'maybe'", "E10"),
        ("E7", "closed", None, None),  # a valid edit is read back
        ("E5", "([", "is not a regular expression", "E5"),
        ("B6", "keep", r"unknown filter 'keep'", "B6"),
        ("A6", "sites", r"'sites' is not a place", "A6"),
        (
            "A7",
            "mapping.usage.interval",
            r"no mapping sheet maps 'mapping.usage.interval'; did you mean 'mapping.usage.intervals'\?",
            "A7",
        ),
        ("C8", None, "the field is missing", "C8"),
        ("E13", True, "exclude_meters needs a meter id", "E13"),
    ],
)
def test_a_bad_filter_names_sheet_and_cell(tmp_path, cell, value, match, at):
    data = filtered_profile().to_dict()
    data["resources"]["meters"].pop("skip")  # rows: 5-6 sites, 7-9 meters, 10-11 usage, 12 readings
    data["mapping"]["usage"]["intervals"]["skip"] = {
        "value": {"missing": True},
        "flag": {"!=": "archived"},
    }
    profile = Profile.from_dict(data)
    out = to_mapping_workbook(profile, tmp_path / "m.xlsx")
    assert rows_of(out)[5][:4] == ("mapping.usage.intervals", "skip", "value", "missing")
    _edit(out, cell, value)
    if match is None:
        assert read_mapping_workbook(out)["meters"]["where"]["status"] == {"!=": "closed"}
        return
    with pytest.raises(FilterError, match=match) as info:
        read_mapping_workbook(out)
    err = info.value
    assert (err.sheet, err.cell) == ("filters", at)
    assert str(err).startswith(f"sheet 'filters' cell {at}: ")
    assert err.hint
    with pytest.raises(FilterError):
        apply_mapping_workbook(profile, out)


def test_analyst_adds_and_removes_filters(tmp_path):
    profile = read_profile(SANDBOX)
    out = to_mapping_workbook(profile, tmp_path / "m.xlsx")
    assert rows_of(out) == []  # an empty sheet, ready to fill
    wb = load_workbook(out)
    ws = wb["filters"]
    for r, row in enumerate(
        [
            ("mapping.usage.intervals", "skip", "value", "missing", "true"),  # text TRUE is read
            ("mapping.usage.intervals", "skip", "flag", None, '["test", "cal"]'),
            ("resources.meters", "where", "status", "!=", "archived"),
            ("mapping", "exclude_meters", None, None, " Z1 "),
        ],
        start=5,
    ):
        for c, v in enumerate(row, start=1):
            ws.cell(r, c, v)
    wb.save(out)
    applied = apply_mapping_workbook(profile, out)
    mapping = applied.section("mapping")
    assert mapping["usage"]["intervals"]["skip"] == {
        "value": {"missing": True},
        "flag": ["test", "cal"],
    }
    assert mapping["exclude_meters"] == ["Z1"]
    assert applied.section("resources")["meters"]["where"] == {"status": {"!=": "archived"}}
    assert applied.section("resources")["meters"]["parent_params"] == {"site_id": "id"}
    # the applied profile is a valid profile: it loads again, filters compiled
    Profile.from_dict(applied.to_dict())
    # removing the rows removes the filters (the sheet is the analyst's word)
    back = to_mapping_workbook(applied, tmp_path / "b.xlsx")
    wb = load_workbook(back)
    wb["filters"].delete_rows(5, 10)
    wb.save(back)
    cleared = apply_mapping_workbook(applied, back)
    assert cleared.data == profile.data


def test_unknown_resource_in_the_filters_sheet(tmp_path):
    profile = read_profile(SANDBOX)
    out = to_mapping_workbook(profile, tmp_path / "m.xlsx")
    for cell, value in zip(
        ("A5", "B5", "C5", "E5"), ("resources.meter", "where", "kind", "x"), strict=True
    ):
        _edit(out, cell, value)
    with pytest.raises(
        FilterError, match=r"cell A5: the profile has no resource 'meter'; did you mean 'meters'\?"
    ) as info:
        apply_mapping_workbook(profile, out)
    assert info.value.cell == "A5"


def test_a_field_given_twice_is_refused(tmp_path):
    profile = read_profile(SANDBOX)
    out = to_mapping_workbook(profile, tmp_path / "m.xlsx")
    wb = load_workbook(out)
    ws = wb["filters"]
    for r, row in enumerate(
        [
            ("mapping.meters", "where", "kind", None, "a"),
            ("mapping.meters", "where", "kind", "!=", "b"),
        ],
        start=5,
    ):
        for c, v in enumerate(row, start=1):
            ws.cell(r, c, v)
    wb.save(out)
    with pytest.raises(FilterError, match=r"cell D6: mapping.meters.where.kind is given twice"):
        read_mapping_workbook(out)


def test_old_workbook_without_filters_sheet(tmp_path):
    """A workbook written before the filters sheet: its mapping-sheet filters are read (and
    checked by cell); applying it to a profile whose filters it lacks is refused, not a silent
    loss of the filters."""
    plain = read_profile(SANDBOX)
    data = plain.to_dict()
    data["mapping"]["meters"]["where"] = {"status": {"!=": "archived"}}
    old_style = copy.deepcopy(data)
    out = to_mapping_workbook(Profile.from_dict(old_style), tmp_path / "old.xlsx")
    wb = load_workbook(out)
    del wb["filters"]
    ws = wb["meters"]  # as the old writer did: a JSON setting row
    ws.insert_rows(6)
    ws["A6"], ws["B6"], ws["D6"] = "where", '{"status": {"!=": "archived"}}', "json"
    wb.save(out)
    assert read_mapping_workbook(out)["meters"]["where"] == {"status": {"!=": "archived"}}
    assert read_resource_filters(out) == {}
    assert apply_mapping_workbook(Profile.from_dict(data), out).data == Profile.from_dict(data).data
    data["mapping"]["exclude_meters"] = ["Z1"]
    with pytest.raises(MappingError, match=r"no 'filters' sheet .* mapping.exclude_meters"):
        apply_mapping_workbook(Profile.from_dict(data), out)
    _edit(out, "B6", '{"status": {"=>": "archived"}}', sheet="meters")
    with pytest.raises(FilterError, match=r"sheet 'meters' cell B6: .*did you mean '>='") as info:
        read_mapping_workbook(out)
    assert info.value.cell == "B6"


def test_values_that_cannot_round_trip_are_refused(tmp_path):
    from datetime import date

    data = read_profile(SANDBOX).to_dict()
    data["mapping"]["meters"]["where"] = {"since": {">=": date(2024, 1, 1)}}
    with pytest.raises(
        MappingError, match=r"mapping.meters.where: the value .*date.* cannot be written"
    ):
        to_mapping_workbook(Profile.from_dict(data), tmp_path / "m.xlsx")
    data["mapping"]["meters"]["where"] = {"tag": "[x]"}
    with pytest.raises(MappingError, match="would read back as a JSON list"):
        to_mapping_workbook(Profile.from_dict(data), tmp_path / "m.xlsx")


def test_cli_check_names_the_filter_cell(tmp_path, capsys):
    import json

    from scaler_workbench import cli

    profile = filtered_profile()
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "profile.toml").write_text((SANDBOX.read_text(encoding="utf-8")), encoding="utf-8")
    out = to_mapping_workbook(profile, folder / "mapping.xlsx")
    assert cli.main(["check", str(folder / "profile.toml")]) == 0
    capsys.readouterr()
    _edit(out, "D8", "gte")
    assert cli.main(["check", str(folder / "profile.toml"), "--json"]) == cli.EXIT_USAGE
    payload = json.loads(capsys.readouterr().out)
    bad = [f for f in payload["findings"] if f["check"] == "workbook"]
    assert [(f["sheet"], f["cell"]) for f in bad] == [("filters", "D8")]
    assert "did you mean '>='" in bad[0]["message"]
