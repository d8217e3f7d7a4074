"""Scaler's standard format as data."""

from __future__ import annotations

import pandas as pd
import pytest

from scaler_workbench import schema
from scaler_workbench.exceptions import SchemaError


def test_four_tables_with_required_scaler_fields() -> None:
    assert set(schema.TABLES) == {"assets", "meters", "usage", "readings"}
    assert schema.ASSETS.required == ["asset_id", "name"]
    assert set(schema.METERS.required) == {"meter_id", "asset_id", "meter_type", "unit"}
    assert {"meter_id", "start", "end", "consumption", "unit"} <= set(schema.USAGE.required)
    assert {"meter_id", "timestamp", "value", "unit"} <= set(schema.READINGS.required)


def test_meter_taxonomy_matches_scaler_requirements() -> None:
    assert schema.METER_TYPES == ("Energy", "Water", "Waste")
    assert "Natural Gas" in schema.METER_SUBTYPES["Energy"]
    assert schema.METER_SUBTYPES["Water"] == ("Potable", "Reclaimed", "Grey")
    assert schema.METER_SUBTYPES["Waste"] == ("Hazardous", "Non-hazardous")
    assert schema.CANONICAL_UNITS == {"Energy": "kWh", "Water": "m³", "Waste": "kg"}


@pytest.mark.parametrize("table", list(schema.TABLES))
def test_empty_frame_has_canonical_dtypes(table: str) -> None:
    frame = schema.empty_frame(table)
    assert list(frame.columns) == schema.TABLES[table].names
    schema.check_frame(frame, table, strict_dtypes=True)


def test_coerce_frame_fills_missing_columns_and_parses_utc() -> None:
    raw = pd.DataFrame(
        {
            "meter_id": ["M1"],
            "start": ["2024-03-31T00:00:00+00:00"],
            "end": ["2024-04-01T00:00:00+01:00"],
            "consumption": ["12.5"],
            "unit": ["kWh"],
            "extra": [1],
        }
    )
    out = schema.coerce_frame(raw, "usage")
    schema.check_frame(out, "usage", strict_dtypes=True)
    assert out["end"].iloc[0] == pd.Timestamp("2024-03-31T23:00:00Z")
    assert out["consumption"].iloc[0] == 12.5
    assert out["cost"].isna().all()
    assert list(out.columns)[-1] == "extra"


def test_coerce_frame_refuses_naive_datetimes() -> None:
    raw = pd.DataFrame({"meter_id": ["M1"], "timestamp": pd.to_datetime(["2024-01-01"])})
    with pytest.raises(SchemaError) as info:
        schema.coerce_frame(raw, "readings")
    assert info.value.column == "timestamp"


def test_coerce_frame_reports_the_bad_column() -> None:
    raw = pd.DataFrame({"meter_id": ["M1"], "consumption": ["twelve"]})
    with pytest.raises(SchemaError) as info:
        schema.coerce_frame(raw, "usage")
    assert info.value.column == "consumption"


def test_check_frame_names_missing_required_columns() -> None:
    with pytest.raises(SchemaError) as info:
        schema.check_frame(pd.DataFrame({"meter_id": ["M1"]}), "meters")
    assert info.value.table == "meters"
    assert "asset_id" in str(info.value)


def test_unknown_table_is_a_schema_error() -> None:
    with pytest.raises(SchemaError):
        schema.empty_frame("bills")


def test_tables_container_repr_counts_rows() -> None:
    t = schema.Tables()
    assert repr(t) == "Tables(assets=0, meters=0, usage=0, readings=0, quarantine=0)"
    assert [name for name, _ in t.items()] == ["assets", "meters", "usage", "readings"]
