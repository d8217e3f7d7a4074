"""The public per-chunk contracts the pipeline is built from (issue 12).

``transform.MeterChunks`` yields whole meters, ``units.UnitNormaliser`` gives per meter what
``normalise_tables`` gives for the whole frame, the quarantine builders in ``schema`` key rows by
``TABLES[t].key``, and validation asks the package's one unit registry.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pytest

from scaler_workbench.profile import Profile
from scaler_workbench.schema import QUARANTINE, TABLES, concat_frames, quarantine_rows
from scaler_workbench.transform import MeterChunks, build_tables
from scaler_workbench.units import UnitNormaliser, normalise_tables


def _profile(**extra: Any) -> Profile:
    return Profile.from_dict(
        {
            "provider": {"name": "contracts", "timezone": "Europe/London"},
            "environments": {"x": {"base_url": "http://127.0.0.1"}},
            "mapping": {
                "meters": {
                    "resource": "meters",
                    "fields": {
                        "meter_id": "id",
                        "asset_id": "site",
                        "raw_unit": "unit",
                        "meter_type": "type",
                        "meter_subtype": {"const": "Natural Gas"},
                    },
                },
                "usage": {
                    "intervals": {
                        "resource": "intervals",
                        "aggregate": "month",
                        "duration": "30min",
                        "fields": {"meter_id": "m", "start": "t", "consumption": "v"},
                    }
                },
            },
            "units": {"heating_value": {"preset": "uk"}},
            **extra,
        }
    )


METERS = [
    {"id": "A", "site": "S", "unit": "kWh", "type": "Energy"},
    {"id": "B", "site": "S", "unit": "Wh", "type": "Energy"},
    {"id": "C", "site": "S", "unit": "m3", "type": "Energy"},
    {"id": "D", "site": "S", "unit": "therms", "type": "Energy"},  # ambiguous: quarantined
    {"id": "E", "site": "S", "unit": "kWh", "type": "Steam"},  # no such meter type
]


def _raw(order: str = "ABCDE") -> dict[str, Any]:
    records = []
    for m in order:
        for k in range(6):
            t = pd.Timestamp("2024-03-31T00:00Z") + pd.Timedelta(minutes=30 * k)
            records.append({"m": m, "t": t.isoformat(), "v": float(k + 1)})
    return {"meters": METERS, "intervals": records}


def test_unit_normaliser_per_meter_equals_normalise_tables() -> None:
    profile = _profile()
    tables = build_tables(profile, _raw())
    whole = normalise_tables(tables, profile)
    normaliser = UnitNormaliser(profile, tables.meters)
    usage = tables.usage
    parts, quarantine = [], []
    for meters in (["A", "B"], ["C", "D"], ["E"]):  # any split between meters
        frame, q = normaliser.normalise_meter_rows(
            "usage", usage[usage["meter_id"].astype(str).isin(meters)]
        )
        parts.append(frame)
        quarantine.append(q)
    quarantine.append(normaliser.meters_quarantine())
    got = pd.concat(parts)
    cols = ["meter_id", "consumption", "raw_value", "raw_unit", "unit", "factor"]
    pd.testing.assert_frame_equal(
        got[cols].astype(object), whole.usage[cols].astype(object), check_index_type=False
    )
    assert got["consumption"].tolist()[:2] == [1.0, 2.0]  # [kWh]
    assert whole.usage.loc[whole.usage["meter_id"] == "B", "consumption"].iloc[0] == 0.001
    pd.testing.assert_frame_equal(
        pd.concat([q for q in quarantine if len(q)], ignore_index=True), whole.quarantine
    )
    assert set(whole.quarantine["record_key"].str.split("|").str[0]) == {"D", "E"}
    assert list(whole.quarantine["table"]).count("meters") == 2  # each bad meter once


def test_meter_chunks_hold_whole_meters_and_stop_when_a_meter_comes_back() -> None:
    profile = _profile()
    chunks = MeterChunks(profile, _raw(), "intervals", chunk_records=7)
    seen: list[set[str]] = []
    frames = []
    for chunk in chunks:
        ids = set(chunk.usage["meter_id"].astype(str))
        assert not any(ids & s for s in seen)  # a meter never spans two chunks
        seen.append(ids)
        frames.append(chunk.usage)
    # 7 records, then on to the end of the last meter's run: 6 records each, two meters a chunk
    assert chunks.grouped and seen == [{"A", "B"}, {"C", "D"}, {"E"}]
    assert list(chunks.entities.meters["meter_id"]) == list("ABCDE")
    # lineage: each row's record position in the whole resource (``_row``, left out where the
    # positions say it: the first chunk with nothing set aside)
    rows = [r for f in frames for r in (f["_row"] if "_row" in f else range(len(f)))]
    assert "_row" not in frames[0] and rows == list(range(30))
    stacked = concat_frames(frames)
    whole = build_tables(profile, _raw()).usage
    assert stacked["consumption"].tolist() == whole["consumption"].tolist()

    shuffled = _raw("ABA")
    again = MeterChunks(profile, shuffled, "intervals", chunk_records=6)
    assert len(list(again)) == 2 and again.grouped is False  # A again in the third chunk


def test_meter_chunks_need_a_usage_source_of_one_resource() -> None:
    from scaler_workbench.exceptions import MappingError

    with pytest.raises(MappingError, match=r"mapping\.usage\.nope"):
        MeterChunks(_profile(), _raw(), "nope", chunk_records=10)


def test_quarantine_rows_are_keyed_by_the_schema_table_key() -> None:
    profile = _profile()
    usage = build_tables(profile, _raw()).usage.head(2).assign(_row=[5, 6])
    q = quarantine_rows(usage, table="usage", stage="units", rule="unit", reasons="why")
    assert list(q.columns) == QUARANTINE.names
    assert TABLES["usage"].key == ("meter_id", "start", "end")
    assert q["record_key"].tolist() == [
        "A|2024-03-31T00:00:00Z|2024-03-31T00:30:00Z",
        "A|2024-03-31T00:30:00Z|2024-03-31T01:00:00Z",
    ]
    record = json.loads(q["record"].iloc[0])
    assert "_row" not in record and record["start"] == "2024-03-31T00:00:00.000Z"
    meters = build_tables(profile, _raw()).meters.head(1)
    mq = quarantine_rows(meters, table="meters", stage="units", rule="unit", reasons="x")
    assert mq["record_key"].tolist() == ["A"]


def test_validation_knows_units_through_the_package_registry_only(monkeypatch) -> None:
    """No second pint registry: a unit defined only in the package's data/units.txt is known,
    an ambiguous label needs its alias, and pint's application registry is never asked."""
    import pint

    from scaler_workbench import validation

    def no_second_registry() -> None:
        raise AssertionError("validation asked pint's application registry")

    monkeypatch.setattr(pint, "get_application_registry", no_second_registry)
    known = validation._unit_checker(None)
    assert known("MMcf") and known("kWh") and not known("therms") and not known("bananas")
    aliased = validation._unit_checker(_profile(units={"aliases": {"therms": "US_therm"}}))
    assert aliased("therms")
