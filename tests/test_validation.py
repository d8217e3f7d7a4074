"""Validation and quarantine: one planted defect per rule, profiles, invariants, recheck."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scaler_workbench import validation as v
from scaler_workbench._rules import RULES, resolve_rules, rules_frame
from scaler_workbench.exceptions import ProfileError, SchemaError, ValidationSetupError
from scaler_workbench.profile import Profile, read_profile
from scaler_workbench.schema import QUARANTINE, Tables

REPO = Path(__file__).resolve().parents[1]
MONTHS = pd.date_range("2024-01-01", periods=13, freq="MS", tz="Europe/London").tz_convert("UTC")


# ---------------------------------------------------------------------------------------------
# a clean data set: 2 sites, 4 meters (one without data), monthly usage, bills, daily readings
# ---------------------------------------------------------------------------------------------
def _usage_rows(meter: str, unit: str, method: str, *, dwd: bool = True) -> pd.DataFrame:
    start, end = MONTHS[:-1], MONTHS[1:]
    days = ((end - start) / pd.Timedelta(days=1)).round().astype(int)
    return pd.DataFrame(
        {
            "meter_id": meter,
            "start": start,
            "end": end,
            "consumption": 100.0 + np.arange(12) % 3,
            "unit": unit,
            "timezone": "Europe/London",
            "days_with_data": pd.array(days if dwd else [None] * 12, dtype="Int64"),
            "method": method,
            "source_id": [f"{meter}-{i}" for i in range(12)],
        }
    )


def clean_tables() -> Tables:
    assets = pd.DataFrame(
        {
            "asset_id": ["S1", "S2"],
            "name": ["Head office", "Depot"],
            "country": ["GB", "GB"],
            "latitude": [51.5, 53.4],
            "longitude": [-0.1, -2.2],
            "timezone": ["Europe/London", "Europe/London"],
            "floor_area": [1200.0, 300.0],
        }
    )
    meters = pd.DataFrame(
        {
            "meter_id": ["E1", "W1", "G1", "SPARE"],
            "asset_id": ["S1", "S1", "S2", "S2"],
            "meter_type": ["Energy", "Water", "Energy", "Waste"],
            "meter_subtype": ["Off-site Electricity", "Potable", "Natural Gas", "Non-hazardous"],
            "unit": ["kWh", "m³", "kWh", "kg"],
        }
    )
    usage = pd.concat(
        [
            _usage_rows("E1", "kWh", "sum-of-intervals"),
            _usage_rows("W1", "m³", "sum-of-intervals"),
            _usage_rows("G1", "kWh", "as-reported", dwd=False),
        ],
        ignore_index=True,
    )
    ts = pd.date_range("2024-01-01", periods=30, freq="D", tz="UTC")
    readings = pd.DataFrame(
        {"meter_id": "W1", "timestamp": ts, "value": np.arange(30) * 2.5 + 10, "unit": "m³"}
    )
    return Tables(assets=assets, meters=meters, usage=usage, readings=readings)


def _row(frame: pd.DataFrame, meter: str, i: int) -> int:
    return int(frame.index[frame["meter_id"] == meter][i])


def _key(t: Tables, table: str, label: int) -> str:
    frame = getattr(t, table)
    return str(v.record_keys(frame.loc[[label]], table)[0])


# Each planter corrupts clean tables and returns (table, record_key) of the planted record.
Planter = Callable[[Tables], tuple[str, str]]


def _set(table: str, col: str, value: object, where: Callable[[Tables], int]) -> Planter:
    def plant(t: Tables) -> tuple[str, str]:
        frame = getattr(t, table)
        i = where(t)
        if not isinstance(value, float | int) and frame[col].dtype != object:
            frame[col] = frame[col].astype(object)
        frame.loc[i, col] = value
        return table, _key(t, table, i)

    return plant


def _dup_usage(t: Tables) -> tuple[str, str]:
    i = _row(t.usage, "E1", 4)
    t.usage = pd.concat([t.usage, t.usage.loc[[i]]], ignore_index=True)
    return "usage", _key(t, "usage", i) + "#2"


def _bad_datetime(t: Tables) -> tuple[str, str]:
    ts = t.readings["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ").astype(object)
    ts[5] = "2024-13-45 nope"
    t.readings["timestamp"] = ts
    return "readings", "W1|2024-13-45 nope"


def _bad_number(t: Tables) -> tuple[str, str]:
    t.usage["consumption"] = t.usage["consumption"].astype(object)
    i = _row(t.usage, "E1", 2)
    t.usage.loc[i, "consumption"] = "12,5 kWh"
    return "usage", _key(t, "usage", i)


def _bill_too_long(t: Tables) -> tuple[str, str]:
    i, j = _row(t.usage, "G1", 5), _row(t.usage, "G1", 6)
    t.usage.loc[i, "end"] = t.usage.loc[j, "end"]
    t.usage = t.usage.drop(index=j)
    return "usage", _key(t, "usage", i)


def _overlap(t: Tables) -> tuple[str, str]:
    i = _row(t.usage, "E1", 6)
    t.usage.loc[i, "start"] = t.usage.loc[i, "start"] - pd.Timedelta(days=2)
    return "usage", _key(t, "usage", i)


def _gap(t: Tables) -> tuple[str, str]:
    i = _row(t.usage, "E1", 6)
    t.usage = t.usage.drop(index=i)
    return "usage", _key(t, "usage", _row(t.usage, "E1", 6))


def _parent_quarantined(t: Tables) -> tuple[str, str]:
    t.assets["name"] = t.assets["name"].astype(object)
    t.assets.loc[1, "name"] = None  # S2 fails `required`: meters G1 and SPARE follow it out
    return "meters", "G1"


def _bad_currency(t: Tables) -> tuple[str, str]:
    i = _row(t.usage, "G1", 2)
    t.usage["cost"] = np.where(t.usage.index == i, 31.5, np.nan)
    t.usage["currency"] = pd.Series([None] * len(t.usage), dtype=object, index=t.usage.index)
    t.usage.loc[i, "currency"] = "EURO"
    return "usage", _key(t, "usage", i)


def _hole(kind: str) -> Planter:
    """An interior hole the usage stage counted (``Tables.holes``) in E1's third month."""

    def plant(t: Tables) -> tuple[str, str]:
        i = _row(t.usage, "E1", 2)
        local = t.usage.loc[i, "start"].tz_convert("Europe/London")
        day = (local + pd.Timedelta(days=9)).strftime("%Y-%m-%d")
        start, end, n = ("00:00", "00:00", 48) if kind == "day" else ("09:00", "12:00", 6)
        next_day = (local + pd.Timedelta(days=10)).strftime("%Y-%m-%d")
        t.holes = pd.DataFrame(
            {
                "meter_id": ["E1"],
                "month": [day[:7]],
                "date": [day],
                "kind": [kind],
                "start_local": [f"{day}T{start}"],
                "end_local": [f"{next_day if kind == 'day' else day}T{end}"],
                "missing_intervals": [n],
            }
        )
        return "usage", _key(t, "usage", i)

    return plant


def _register_decrease(t: Tables) -> tuple[str, str]:
    t.readings.loc[10, "value"] = t.readings.loc[9, "value"] - 1.0
    return "readings", _key(t, "readings", 10)


def _possible_duplicate_meter(t: Tables) -> tuple[str, str]:
    """G1 made a second electricity meter with E1's serial (an extra mapped meters column)."""
    t.meters["serial"] = pd.Series(["A-1", None, " A-1 ", None], dtype=object)
    t.meters.loc[2, "meter_subtype"] = t.meters.loc[0, "meter_subtype"]
    return "meters", "G1"


PLANTS: dict[str, tuple[Planter, set[str]]] = {
    # rule: (planter, other rules the same defect may also trigger); a null consumption is
    # "no data" under the default missing-value policy (test_missing_values_*), so `required`
    # is planted as a missing unit
    "required": (_set("usage", "unit", None, lambda t: _row(t.usage, "E1", 3)), set()),
    "invalid_datetime": (_bad_datetime, set()),
    "invalid_number": (_bad_number, set()),
    "duplicate_key": (_dup_usage, set()),
    "unknown_meter_type": (_set("meters", "meter_type", "Gas", lambda t: 3), set()),
    "unknown_meter_subtype": (_set("meters", "meter_subtype", "Solar", lambda t: 0), set()),
    "possible_duplicate_meter": (_possible_duplicate_meter, set()),
    "unknown_unit": (_set("usage", "unit", "bananas", lambda t: _row(t.usage, "E1", 1)), set()),
    "non_canonical_unit": (_set("meters", "unit", "MWh", lambda t: 3), set()),
    "unit_mismatch": (
        _set("usage", "unit", "m³", lambda t: _row(t.usage, "E1", 1)),
        {"non_canonical_unit"},
    ),
    "unknown_asset": (_set("meters", "asset_id", "S404", lambda t: 3), set()),
    "unknown_meter": (_set("usage", "meter_id", "GHOST", lambda t: _row(t.usage, "W1", 0)), set()),
    "parent_quarantined": (_parent_quarantined, {"required"}),
    "unknown_timezone": (
        _set("assets", "timezone", "Mars/Olympus", lambda t: 0),
        {"parent_quarantined"},
    ),
    "invalid_coordinates": (_set("assets", "latitude", 151.5, lambda t: 0), set()),
    "invalid_country": (_set("assets", "country", "United Kingdom", lambda t: 0), set()),
    "non_positive_floor_area": (_set("assets", "floor_area", 0.0, lambda t: 1), set()),
    "end_not_after_start": (
        _set("usage", "end", MONTHS[11], lambda t: _row(t.usage, "W1", 11)),
        set(),
    ),
    "negative_consumption": (
        _set("usage", "consumption", -5.0, lambda t: _row(t.usage, "E1", 7)),
        set(),
    ),
    "non_finite": (
        _set("usage", "consumption", np.inf, lambda t: _row(t.usage, "E1", 5)),
        {"extreme_value"},
    ),
    "implausible_value": (
        _set("usage", "consumption", 1e308, lambda t: _row(t.usage, "W1", 4)),
        {"extreme_value"},
    ),
    "invalid_currency": (_bad_currency, set()),
    "extreme_value": (_set("usage", "consumption", 5e4, lambda t: _row(t.usage, "W1", 8)), set()),
    "low_coverage": (_set("usage", "days_with_data", 10, lambda t: _row(t.usage, "E1", 9)), set()),
    "missing_day": (_hole("day"), set()),
    "missing_intervals": (_hole("intervals"), set()),
    "billing_period_days": (_bill_too_long, set()),
    "overlapping_period": (_overlap, set()),
    "gap_between_periods": (_gap, set()),
    "negative_reading": (_set("readings", "value", -1.0, lambda t: 0), set()),
    "register_decrease": (_register_decrease, set()),
    "control_characters": (_set("assets", "name", "Bell\x07 site", lambda t: 0), set()),
}


def _findings(result: v.ValidationResult) -> set[str]:
    return set(result.quarantined["rule"])


def _assert_nothing_lost(inp: Tables, result: v.ValidationResult) -> None:
    q = result.quarantined
    for name, frame in inp.items():
        errs = q[(q["table"] == name) & (q["severity"] == "error")]["record_key"].nunique()
        no_data = int(result.no_data.loc[result.no_data["table"] == name, "rows"].sum())
        assert len(getattr(result.accepted, name)) + errs + no_data == len(frame), name


# ---------------------------------------------------------------------------------------------
def test_every_rule_has_a_planted_defect() -> None:
    assert set(PLANTS) == set(RULES)


def test_clean_tables_pass_with_zero_findings() -> None:
    t = clean_tables()
    result = v.validate_tables(t)
    assert result.quarantined.empty, result.quarantined[["rule", "reason"]].to_string()
    assert result.ok
    for name, frame in t.items():
        pd.testing.assert_frame_equal(getattr(result.accepted, name), frame)
    assert set(result.summary["failed"]) == {0}
    assert set(result.summary.columns) == {
        "table",
        "rule",
        "severity",
        "engine",
        "rows",
        "failed",
        "percent",
    }


@pytest.mark.parametrize("rule", sorted(RULES))
def test_one_planted_defect_is_found_by_its_rule(rule: str) -> None:
    planter, collateral = PLANTS[rule]
    t = clean_tables()
    table, key = planter(t)
    # GX-engine rules through GX; pandas rules without it (the engines agree: tested below)
    result = v.validate_tables(t, use_gx=RULES[rule].engine == "gx")
    q = result.quarantined
    hit = q[(q["rule"] == rule) & (q["table"] == table) & (q["record_key"] == key)]
    assert len(hit) == 1, q[["table", "record_key", "rule"]].to_string()
    assert hit["severity"].iloc[0] == RULES[rule].severity
    assert hit["stage"].iloc[0] == "validation"
    assert RULES[rule].ask in hit["reason"].iloc[0]
    assert _findings(result) <= {rule} | collateral
    record = json.loads(hit["record"].iloc[0])
    assert isinstance(record, dict) and record
    accepted_keys = set(v.record_keys(getattr(result.accepted, table), table))
    if RULES[rule].severity == "error":
        assert key not in accepted_keys
    else:
        assert key in accepted_keys
    _assert_nothing_lost(t, result)


def test_all_planted_defects_together() -> None:
    t = clean_tables()
    expected = set()
    for rule in (
        "required",
        "invalid_number",
        "unknown_meter_type",
        "unknown_timezone",
        "negative_consumption",
        "low_coverage",
        "negative_reading",
        "overlapping_period",
    ):
        table, key = PLANTS[rule][0](t)
        expected.add((table, key, rule))
    result = v.validate_tables(t)
    found = set(result.quarantined[["table", "record_key", "rule"]].itertuples(index=False))
    assert expected <= found
    _assert_nothing_lost(t, result)


def test_gx_and_pandas_engines_agree() -> None:
    t = clean_tables()
    for rule in (
        "required",
        "end_not_after_start",
        "negative_consumption",
        "invalid_country",
        "unknown_meter_type",
        "negative_reading",
        "invalid_coordinates",
    ):
        PLANTS[rule][0](t)
    with_gx = v.validate_tables(t)
    without = v.validate_tables(t, use_gx=False)
    cols = ["table", "record_key", "rule", "severity", "reason"]
    pd.testing.assert_frame_equal(with_gx.quarantined[cols], without.quarantined[cols])
    assert set(with_gx.gx_results) == {"assets", "meters", "usage", "readings"}
    assert without.gx_results == {}


def test_categorical_meter_ids_give_the_same_findings() -> None:
    t = clean_tables()
    _overlap(t)
    _dup_usage(t)
    plain = v.validate_tables(t)
    t.usage["meter_id"] = t.usage["meter_id"].astype("category")
    t.usage["unit"] = t.usage["unit"].astype("category")
    cat = v.validate_tables(t)
    cols = ["record_key", "rule", "reason"]
    pd.testing.assert_frame_equal(plain.quarantined[cols], cat.quarantined[cols])


def test_quarantine_has_the_schema_columns_and_unique_keys() -> None:
    t = clean_tables()
    _dup_usage(t)
    t.usage = pd.concat([t.usage, t.usage.iloc[[-1]]], ignore_index=True)  # a third copy
    result = v.validate_tables(t)
    q = result.quarantined
    assert list(q.columns) == QUARANTINE.names
    assert not q.duplicated(list(QUARANTINE.key)).any()
    assert result.accepted.quarantine.equals(q.reset_index(drop=True)) or len(
        result.accepted.quarantine
    ) == len(q)


def test_prior_quarantine_is_carried_over() -> None:
    t = clean_tables()
    prior = pd.DataFrame(
        [["usage", "x|y|z", "s", "transform", "unmappable", "error", "no meter", "{}"]],
        columns=QUARANTINE.names,
    ).astype(QUARANTINE.dtypes)
    t.quarantine = prior
    PLANTS["negative_consumption"][0](t)
    result = v.validate_tables(t)
    assert list(result.accepted.quarantine["stage"]) == ["transform", "validation"]


def test_unnormalised_units_warn_and_unknown_units_fail() -> None:
    t = clean_tables()
    t.meters.loc[0, "unit"] = "MWh"
    t.usage.loc[t.usage["meter_id"] == "E1", "unit"] = "MWh"
    t.usage.loc[_row(t.usage, "W1", 0), "unit"] = "furlongs of beer"
    result = v.validate_tables(t)
    w = result.warnings
    assert set(w["rule"]) == {"non_canonical_unit"}
    assert len(w) == 1 + 12  # the meter and its 12 periods
    assert list(result.errors["rule"]) == ["unknown_unit"]


def test_meters_with_missing_units_and_types_as_pandas_na() -> None:
    """pd.NA in a nullable string unit or meter_type (a Green Button usage point whose
    ReadingType never came) is a finding, not ``TypeError: boolean value of NA``."""
    t = clean_tables()
    t.meters["unit"] = t.meters["unit"].astype("string")
    t.meters["meter_type"] = t.meters["meter_type"].astype("string")
    t.meters.loc[0, "unit"] = pd.NA
    t.meters.loc[1, "meter_type"] = pd.NA
    t.meters.loc[2, "unit"] = "MWh"
    result = v.validate_tables(t)
    found = result.quarantined[result.quarantined["table"] == "meters"]
    by_rule = found.groupby("rule")["record_key"].apply(set).to_dict()
    assert by_rule["non_canonical_unit"] == {str(t.meters.loc[2, "meter_id"])}
    assert str(t.meters.loc[0, "meter_id"]) in by_rule["required"]  # the missing unit
    assert str(t.meters.loc[1, "meter_id"]) in by_rule["required"]  # the missing type


def test_naive_and_text_datetimes() -> None:
    t = clean_tables()
    t.usage["start"] = t.usage["start"].dt.strftime("%Y-%m-%dT%H:%M:%S%z")  # ISO text is fine
    assert v.validate_tables(t).quarantined.empty
    t.usage["start"] = pd.to_datetime(t.usage["start"], utc=True).dt.tz_localize(None)
    with pytest.raises(SchemaError) as info:
        v.validate_tables(t)
    assert info.value.column == "start"


# ---------------------------------------------------------------------------------------------
# profiles
# ---------------------------------------------------------------------------------------------
def _profile(rules: dict[str, dict[str, object]]) -> Profile:
    return Profile.from_dict(
        {
            "provider": {"name": "test", "timezone": "Europe/London"},
            "environments": {"sandbox": {"base_url": "http://127.0.0.1:1/api"}},
            "validation": {"rules": rules},
        }
    )


def test_profile_downgrades_an_error_to_a_warning() -> None:
    t = clean_tables()
    PLANTS["negative_consumption"][0](t)
    result = v.validate_tables(t, _profile({"negative_consumption": {"severity": "warning"}}))
    assert list(result.quarantined["severity"]) == ["warning"]
    assert len(result.accepted.usage) == len(t.usage)


def test_profile_disables_a_rule_and_moves_thresholds() -> None:
    t = clean_tables()
    PLANTS["gap_between_periods"][0](t)
    PLANTS["low_coverage"][0](t)
    result = v.validate_tables(
        t,
        _profile(
            {"gap_between_periods": {"enabled": False}, "low_coverage": {"min_fraction": 0.3}}
        ),
    )
    assert result.quarantined.empty
    assert "gap_between_periods" not in set(result.summary["rule"])
    # and a tighter billing window catches ordinary months
    result = v.validate_tables(clean_tables(), _profile({"billing_period_days": {"min": 30}}))
    assert set(result.quarantined["rule"]) == {"billing_period_days"}
    assert set(result.quarantined["record_key"].str[:2]) == {"G1"}


def test_sandbox_profile_rules_resolve() -> None:
    rules = resolve_rules(read_profile(REPO / "mappings" / "sandbox" / "profile.toml"))
    assert rules["billing_period_days"].param("min") == 25
    assert rules["billing_period_days"].param("max") == 35


@pytest.mark.parametrize(
    "rules, key",
    [
        ({"no_such_rule": {}}, "validation.rules.no_such_rule"),
        ({"required": {"severity": "fatal"}}, "validation.rules.required.severity"),
        ({"required": {"threshold": 3}}, "validation.rules.required.threshold"),
        ({"low_coverage": {"min_fraction": "high"}}, "validation.rules.low_coverage.min_fraction"),
        ({"billing_period_days": {"min": 40}}, "validation.rules.billing_period_days.min"),
        (
            {"gap_between_periods": {"enabled": "no"}},
            "validation.rules.gap_between_periods.enabled",
        ),
    ],
)
def test_bad_profile_overrides_raise_profile_error(rules: dict, key: str) -> None:
    with pytest.raises(ProfileError) as info:
        resolve_rules(_profile(rules))
    assert info.value.key == key


def test_rules_registry_documents_every_rule() -> None:
    frame = rules_frame()
    assert list(frame["rule"]) == list(RULES)
    assert frame["ask"].str.len().min() > 10
    doc = (REPO / "docs" / "validation.md").read_text(encoding="utf-8")
    for name in RULES:
        assert f"`{name}`" in doc, name


# ---------------------------------------------------------------------------------------------
# bad input and GX failures
# ---------------------------------------------------------------------------------------------
def test_missing_required_column_is_a_schema_error() -> None:
    t = clean_tables()
    with pytest.raises(SchemaError) as info:
        v.validate_usage(t.usage.drop(columns=["consumption"]))
    assert info.value.column == "consumption"
    t.meters = t.meters.drop(columns=["unit"])
    with pytest.raises(SchemaError):
        v.validate_tables(t)
    with pytest.raises(SchemaError):
        v.validate_tables({"usage": t.usage})  # type: ignore[arg-type]


def test_gx_internal_failure_is_a_validation_setup_error(monkeypatch: pytest.MonkeyPatch) -> None:
    state = v._gx_state()

    class Broken:  # GX reads the batch definition through one of these
        def get_batch(self, **kwargs: object) -> object:
            raise RuntimeError("boom inside GX")

        def build_batch_request(self, **kwargs: object) -> object:
            raise RuntimeError("boom inside GX")

    monkeypatch.setitem(state.batch_definitions, "usage", Broken())
    with pytest.raises(ValidationSetupError, match="boom inside GX") as info:
        v.validate_usage(clean_tables().usage)
    assert info.value.table == "usage"
    assert isinstance(info.value.__cause__, RuntimeError)


def test_gx_import_failure_is_a_validation_setup_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(v, "_GX", None)
    monkeypatch.setitem(sys.modules, "great_expectations", None)
    with pytest.raises(ValidationSetupError, match="could not be set up"):
        v.validate_usage(clean_tables().usage)


def test_validate_usage_alone_without_context() -> None:
    t = clean_tables()
    PLANTS["unknown_meter"][0](t)  # no meters given: references are not checked
    accepted, quarantined, summary = v.validate_usage(t.usage)
    assert quarantined.empty
    assert len(accepted) == len(t.usage)
    assert "unknown_meter" not in set(summary["rule"])


# ---------------------------------------------------------------------------------------------
# report, recheck, benchmark
# ---------------------------------------------------------------------------------------------
def test_html_report_is_written_and_escaped(tmp_path: Path) -> None:
    t = clean_tables()
    t.usage.loc[_row(t.usage, "E1", 0), "meter_id"] = "<script>alert(1)</script>"
    PLANTS["negative_consumption"][0](t)
    result = v.validate_tables(t, report_dir=tmp_path / "report")
    assert result.report_path == tmp_path / "report" / "validation_report.html"
    text = result.report_path.read_text(encoding="utf-8")
    assert "<script>alert" not in text and "&lt;script&gt;" in text
    for needle in ("unknown_meter", "negative_consumption", "expect_column_values_to_be_between"):
        assert needle in text


def test_recheck_releases_records_after_the_fix() -> None:
    t = clean_tables()
    t.usage.loc[t.usage["meter_id"] == "W1", "meter_id"] = "W-NEW"  # meter not mapped yet
    t.usage.loc[_row(t.usage, "E1", 0), "unit"] = "therms"  # ambiguous without an alias
    PLANTS["negative_consumption"][0](t)  # stays wrong
    first = v.validate_tables(t)
    assert first.errors["rule"].value_counts().to_dict() == {
        "unknown_meter": 12,
        "unknown_unit": 1,
        "negative_consumption": 1,
    }
    # the analyst adds the meter and an alias; the accepted data goes back in
    fixed = first.accepted
    fixed.meters = pd.concat(
        [fixed.meters, fixed.meters.iloc[[1]].assign(meter_id="W-NEW")], ignore_index=True
    )
    profile = Profile.from_dict(
        {
            "provider": {"name": "test"},
            "environments": {"sandbox": {"base_url": "http://127.0.0.1:1/api"}},
            "units": {"aliases": {"therms": "US_therm"}},
            "validation": {"rules": {"unit_mismatch": {"enabled": False}}},
        }
    )
    result = v.recheck_quarantine(first.quarantined, fixed, profile)
    assert len(result.released) == 13
    assert set(result.released["rules"]) == {"unknown_meter", "unknown_unit"}
    assert list(result.still_quarantined["rule"]) == ["negative_consumption"]
    assert set(result.still_quarantined["record_key"]) == set(
        first.errors.loc[first.errors["rule"] == "negative_consumption", "record_key"]
    )
    assert len(result.records.usage) == 13
    assert set(result.records.usage["meter_id"]) == {"W-NEW", "E1"}
    assert ("usage", result.released["record_key"].iloc[0]) in result.released_keys


def test_recheck_keeps_duplicates_and_other_stages() -> None:
    t = clean_tables()
    _dup_usage(t)
    first = v.validate_tables(t)
    other = pd.DataFrame(
        [["usage", "a|b|c", None, "transform", "unmappable", "error", "x", None]],
        columns=QUARANTINE.names,
    ).astype(QUARANTINE.dtypes)
    q = pd.concat([first.quarantined, other], ignore_index=True)
    result = v.recheck_quarantine(q, first.accepted)
    assert result.released.empty
    assert sorted(result.still_quarantined["rule"]) == ["duplicate_key", "unmappable"]


def test_recheck_rejects_a_frame_that_is_not_a_quarantine() -> None:
    with pytest.raises(SchemaError):
        v.recheck_quarantine(pd.DataFrame({"x": [1]}), clean_tables())


def test_benchmark_validation_reports_per_million_rows() -> None:
    out = v.benchmark_validation(20_000, n_meters=20, repeat=1)
    assert out["n_rows"] == 20_000
    assert 0 < out["seconds"] < 30
    assert out["per_million_s"] == pytest.approx(out["seconds"] * 50)
    _, q, _ = v.validate_usage(v._synthetic_usage(20_000, n_meters=20))
    assert {"negative_consumption", "extreme_value"} <= set(q["rule"])


# ---------------------------------------------------------------------------------------------
# property: nothing is lost
# ---------------------------------------------------------------------------------------------
_METERS = ["E1", "W1", "G1", "GHOST", None]
_UNITS = ["kWh", "m³", "MWh", "bananas", None]


@st.composite
def usage_frames(draw: st.DrawFn) -> pd.DataFrame:
    n = draw(st.integers(0, 40))
    base = pd.Timestamp("2024-01-01", tz="UTC")
    day = st.integers(-5, 60)
    rows = draw(
        st.lists(
            st.tuples(
                st.sampled_from(_METERS),
                day,
                st.integers(-2, 40),
                st.one_of(st.none(), st.just(float("nan")), st.floats(-10, 1e6)),
                st.sampled_from(_UNITS),
                st.sampled_from(["as-reported", "sum-of-intervals", None]),
            ),
            min_size=n,
            max_size=n,
        )
    )
    if rows and draw(st.booleans()):
        rows += rows[: draw(st.integers(1, len(rows)))]  # exact duplicates
    frame = pd.DataFrame(rows, columns=["meter_id", "d", "len", "consumption", "unit", "method"])
    frame["start"] = base + pd.to_timedelta(frame["d"], unit="D")
    frame["end"] = frame["start"] + pd.to_timedelta(frame["len"], unit="D")
    frame["consumption"] = frame["consumption"].astype("float64")
    frame = frame.drop(columns=["d", "len"])
    if draw(st.booleans()):  # a non-default index must survive too
        frame.index = frame.index[::-1] + 100
    return frame


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(usage=usage_frames())
def test_property_accepted_plus_quarantined_equals_input(usage: pd.DataFrame) -> None:
    t = clean_tables()
    t.usage = usage
    t.readings = t.readings.iloc[0:0]
    result = v.validate_tables(t)
    _assert_nothing_lost(t, result)
    acc = result.accepted.usage
    assert acc.index.isin(usage.index).all()
    errors = result.errors[result.errors["table"] == "usage"]
    assert not result.quarantined.duplicated(list(QUARANTINE.key)).any()
    no_data = int(result.no_data["rows"].sum())  # null consumption: "no data" by default
    assert len(acc) + errors["record_key"].nunique() + no_data == len(usage)


def test_hole_findings_name_ten_holes_and_count_the_rest() -> None:
    t = clean_tables()
    i = _row(t.usage, "E1", 2)  # March 2024, local
    days = [f"2024-03-{d:02d}" for d in range(2, 14)]  # 12 holes of 6 half-hours
    t.holes = pd.DataFrame(
        {
            "meter_id": "E1",
            "month": "2024-03",
            "date": days,
            "kind": "intervals",
            "start_local": [f"{d}T09:00" for d in days],
            "end_local": [f"{d}T12:00" for d in days],
            "missing_intervals": 6,
        }
    )
    q = v.validate_tables(t).quarantined
    (reason,) = q.loc[q["rule"] == "missing_intervals", "reason"]
    assert q.loc[q["rule"] == "missing_intervals", "record_key"].item() == _key(t, "usage", i)
    assert reason.startswith(
        "missing intervals, local 2024-03-02 09:00-12:00 (6), 2024-03-03 09:00-12:00 (6)"
    )
    assert "2024-03-11 09:00-12:00 (6) and 2 more (72 intervals in all)" in reason
    assert "2024-03-12" not in reason
