"""Field specs added for real providers: ``{first = [...]}`` and ``power_of_ten``."""

from __future__ import annotations

import numpy as np
import pytest

from scaler_workbench.exceptions import MappingError
from scaler_workbench.pipeline import run_pipeline
from scaler_workbench.profile import Profile
from scaler_workbench.transform import build_tables

PROFILE = Profile.from_dict(
    {
        "provider": {"name": "t", "timezone": "UTC"},
        "environments": {"x": {"base_url": "http://127.0.0.1"}},
    }
)


def _meters(fields: dict | None = None, resource: str | list = "points") -> dict:
    return {
        "resource": resource,
        "fields": fields
        or {
            "meter_id": {"first": ["mpan", "mprn"]},
            "asset_id": {"const": "S1"},
            "meter_type": {"const": "Energy"},
            "raw_unit": {"const": "kWh"},
        },
    }


def test_first_of_takes_the_first_non_null_path_per_row() -> None:
    points = [
        {"mpan": "E1"},
        {"mprn": "G1"},
        {"mpan": None, "mprn": "G2"},
        {"mpan": "E2", "mprn": "G3"},  # the first path wins when both are there
        {"mpan": float("nan"), "mprn": "G4"},  # NaN counts as missing
        {"other": 1},  # neither: no meter id -> quarantined, never guessed
    ]
    tables = build_tables(PROFILE, {"points": points}, mapping={"meters": _meters()})
    assert list(tables.meters["meter_id"].astype(str)) == ["E1", "G1", "G2", "E2", "G4"]
    assert len(tables.quarantine) == 1
    assert "meter_id" in tables.quarantine["reason"].iloc[0]


def test_first_of_two_resources_feeding_one_table() -> None:
    raw = {"elec": [{"mpan": "E1"}, {"mpan": "E2"}], "gas": [{"mprn": "G1"}]}
    tables = build_tables(PROFILE, raw, mapping={"meters": _meters(resource=["elec", "gas"])})
    assert sorted(tables.meters["meter_id"].astype(str)) == ["E1", "E2", "G1"]


def test_first_of_inside_an_exploded_list() -> None:
    points = [{"id": "P1", "meters": [{"serial": "S1"}, {"serial": None, "alt": "A2"}]}]
    fields = {
        "meter_id": {"first": ["meters.serial", "meters.alt"]},
        "asset_id": "id",
        "meter_type": {"const": "Energy"},
        "raw_unit": {"const": "kWh"},
    }
    mapping = {"meters": {**_meters(fields), "explode": "meters"}}
    tables = build_tables(PROFILE, {"points": points}, mapping=mapping)
    assert list(tables.meters["meter_id"].astype(str)) == ["S1", "A2"]
    assert list(tables.meters["asset_id"].astype(str)) == ["P1", "P1"]


def test_first_of_paths_no_record_has_is_a_mapping_error() -> None:
    fields = dict(_meters()["fields"], meter_id={"first": ["nope", "neither"]})
    with pytest.raises(MappingError, match="meter_id"):
        build_tables(PROFILE, {"points": [{"mpan": "E1"}]}, mapping={"meters": _meters(fields)})


@pytest.mark.parametrize("bad", [{"first": []}, {"first": "mpan"}])
def test_first_of_needs_a_list(bad: dict) -> None:
    fields = dict(_meters()["fields"], meter_id=bad)
    with pytest.raises(MappingError, match="first"):
        build_tables(PROFILE, {"points": [{"mpan": "E1"}]}, mapping={"meters": _meters(fields)})


def _usage_mapping(consumption: object, cost: object = "cost") -> dict:
    return {
        "meters": _meters(),
        "usage": {
            "r": {
                "resource": "readings",
                "kind": "intervals",
                "fields": {
                    "meter_id": "m",
                    "start": {"path": "start", "format": "epoch_s"},
                    "end": {"path": "end", "format": "epoch_s"},
                    "consumption": consumption,
                    "cost": cost,
                },
            }
        },
    }


def _readings(values: list, powers: list) -> list[dict]:
    t0 = 1_704_067_200
    return [
        {
            "m": "E1",
            "start": t0 + 3600 * i,
            "end": t0 + 3600 * (i + 1),
            "value": v,
            "p": p,
            "cost": 250_000,
        }
        for i, (v, p) in enumerate(zip(values, powers, strict=True))
    ]


def test_power_of_ten_from_a_field_scales_values_and_keeps_lineage() -> None:
    mapping = _usage_mapping(
        {"path": "value", "power_of_ten": "p"}, {"path": "cost", "power_of_ten": -5}
    )
    raw = {"points": [{"mpan": "E1"}], "readings": _readings([1234, 5, 7], [-3, 0, 3])}
    tables = run_pipeline(PROFILE, raw, mapping=mapping)
    assert tables.quarantine.empty, tables.quarantine["reason"].tolist()
    u = tables.usage.sort_values("start")
    np.testing.assert_array_equal(u["consumption"].to_numpy(), [1.234, 5.0, 7000.0])
    np.testing.assert_array_equal(u["raw_value"].to_numpy(), [1234.0, 5.0, 7.0])
    np.testing.assert_array_equal(u["factor"].to_numpy(), [1e-3, 1.0, 1e3])
    np.testing.assert_array_equal(u["cost"].to_numpy(), [2.5, 2.5, 2.5])  # 1/100000 units


def test_power_of_ten_missing_or_fractional_is_quarantined() -> None:
    mapping = _usage_mapping({"path": "value", "power_of_ten": "p"})
    raw = {"points": [{"mpan": "E1"}], "readings": _readings([1, 2, 3], [0, None, 0.5])}
    tables = build_tables(PROFILE, raw, mapping=mapping)
    assert len(tables.usage) == 1
    reasons = tables.quarantine["reason"].astype(str).tolist()
    assert len(reasons) == 2 and all("power_of_ten 'p'" in r for r in reasons)


@pytest.mark.parametrize("p10", [1.5, True, ["p"]])
def test_power_of_ten_must_be_an_integer_or_a_path(p10: object) -> None:
    mapping = _usage_mapping({"path": "value", "power_of_ten": p10})
    raw = {"points": [{"mpan": "E1"}], "readings": _readings([1], [0])}
    with pytest.raises(MappingError, match="power_of_ten"):
        build_tables(PROFILE, raw, mapping=mapping)


def test_power_of_ten_on_a_text_column_is_a_mapping_error() -> None:
    mapping = _usage_mapping("value")
    mapping["usage"]["r"]["fields"]["note"] = {"path": "m", "power_of_ten": 2}
    raw = {"points": [{"mpan": "E1"}], "readings": _readings([1], [0])}
    with pytest.raises(MappingError, match="numbers only"):
        build_tables(PROFILE, raw, mapping=mapping)


# ---- composition: each part of a compound spec is resolved by its own kind (issue 15 item 4) --
def _meter_fields(meter_id: object, **more: object) -> dict:
    return {
        "meter_id": meter_id,
        "asset_id": {"const": "S1"},
        "meter_type": {"const": "Energy"},
        "raw_unit": {"const": "kWh"},
        **more,
    }


POINTS = [
    {"mpan": "M1", "meters": [{"serial": "A"}, {"serial": "B"}]},
    {"mpan": None, "mprn": "G1", "meters": [{"serial": "A"}]},
]


def test_compound_key_mixes_an_exploded_item_path_and_a_parent_path() -> None:
    mapping = {"meters": {**_meters(_meter_fields(["mpan", "meters.serial"])), "explode": "meters"}}
    tables = build_tables(PROFILE, {"points": POINTS[:1]}, mapping=mapping)
    # the parent's mpan and each item's serial: one meter per (MPAN, serial)
    assert list(tables.meters["meter_id"].astype(str)) == ["M1:A", "M1:B"]
    assert tables.quarantine.empty


def test_first_inside_a_compound_key_with_an_exploded_path() -> None:
    meter_id = [{"first": ["mpan", "mprn"]}, "meters.serial"]
    mapping = {"meters": {**_meters(_meter_fields(meter_id)), "explode": "meters"}}
    tables = build_tables(PROFILE, {"points": POINTS}, mapping=mapping)
    assert list(tables.meters["meter_id"].astype(str)) == ["M1:A", "M1:B", "G1:A"]


def test_const_inside_join_is_a_constant_not_a_path() -> None:
    meter_id = {"join": [{"const": "octo"}, "_parent.mpan", "serial"], "sep": "/"}
    records = [{"_parent": {"mpan": "M1"}, "serial": "A"}, {"_parent": {"mpan": "M2"}, "serial": 7}]
    tables = build_tables(
        PROFILE, {"points": records}, mapping={"meters": _meters(_meter_fields(meter_id))}
    )
    assert list(tables.meters["meter_id"].astype(str)) == ["octo/M1/A", "octo/M2/7"]
    assert tables.quarantine.empty


def test_const_inside_a_usage_key_matches_the_meters_key() -> None:
    """The issue's case: a const inside join read as a path quarantined every record."""
    meters = _meters(_meter_fields({"join": [{"const": "E"}, "mpan"]}))
    usage = _usage_mapping("value")["usage"]
    usage["r"]["fields"]["meter_id"] = {"join": [{"const": "E"}, "_parent.mpan"]}
    readings = [dict(r, _parent={"mpan": "M1"}) for r in _readings([1.0, 2.0], [0, 0])]
    tables = build_tables(
        PROFILE,
        {"points": [{"mpan": "M1"}], "readings": readings},
        mapping={"meters": meters, "usage": usage},
    )
    assert tables.quarantine.empty, tables.quarantine["reason"].tolist()
    assert set(tables.usage["meter_id"].astype(str)) == {"E:M1"}
    assert tables.usage["consumption"].sum() == 3.0


def test_nested_join_and_first_of_consts_and_paths() -> None:
    meter_id = {"first": [["mpan", {"const": "e"}], {"join": ["mprn", {"const": "g"}], "sep": "-"}]}
    records = [{"mpan": "M1"}, {"mprn": "G1"}, {"other": 1}]
    tables = build_tables(
        PROFILE, {"points": records}, mapping={"meters": _meters(_meter_fields(meter_id))}
    )
    assert list(tables.meters["meter_id"].astype(str)) == ["M1:e", "G1-g"]
    assert len(tables.quarantine) == 1  # neither part has a value: no id, never guessed
    assert "meter_id: missing" in tables.quarantine["reason"].iloc[0]


def test_a_part_no_record_has_is_an_error_naming_the_part() -> None:
    mapping = {
        "meters": {**_meters(_meter_fields(["mpan", "meters.seriall"])), "explode": "meters"}
    }
    with pytest.raises(MappingError) as info:
        build_tables(PROFILE, {"points": POINTS}, mapping=mapping)
    err = info.value
    assert "mapping.meters.fields.meter_id" in str(err)
    assert "part meter_id[1] (path 'meters.seriall')" in str(err)
    assert "'meters' item of any 'points' record" in str(err)
    assert "explode" in (err.hint or "") and "item" in (err.hint or "")


def test_a_part_under_first_fails_only_when_no_alternative_has_values() -> None:
    fine = _meter_fields([{"first": ["nope", "mpan"]}, {"const": "x"}])
    tables = build_tables(PROFILE, {"points": [{"mpan": "M1"}]}, mapping={"meters": _meters(fine)})
    assert list(tables.meters["meter_id"].astype(str)) == ["M1:x"]
    bad = _meter_fields([{"first": ["nope", "neither"]}, "mpan"])
    with pytest.raises(MappingError, match=r"part meter_id\[0\]\.first\[0\] \(path 'nope'\)"):
        build_tables(PROFILE, {"points": [{"mpan": "M1"}]}, mapping={"meters": _meters(bad)})


@pytest.mark.parametrize(
    ("meter_id", "names"),
    [
        (["mpan", {"path": "serial", "format": "iso"}], r"meter_id\[1\].*format"),
        ({"join": ["mpan", {"const": 1, "path": "x"}]}, r"meter_id\.join\[1\].*exactly one"),
        (["mpan", {"first": []}], r"meter_id\[1\]\.first must be a non-empty list"),
        (["mpan", None], r"meter_id\[1\]: cannot read None"),
    ],
)
def test_a_malformed_part_is_named(meter_id: object, names: str) -> None:
    with pytest.raises(MappingError, match=names) as info:
        build_tables(
            PROFILE,
            {"points": [{"mpan": "M1"}]},
            mapping={"meters": _meters(_meter_fields(meter_id))},
        )
    assert info.value.hint


def test_check_mapping_reads_every_part_of_a_compound_spec() -> None:
    from scaler_workbench.mapping import check_mapping

    fields = _meter_fields(
        ["mpan", "meters.serial"],  # parent path + exploded item path: both found
        raw_unit={"join": [{"const": "k"}, "mpan", "nope"]},  # const is no path; 'nope' is
        meter_subtype={"first": ["gone", "mpan"]},  # one part with values is enough
    )
    mapping = {"meters": {**_meters(fields), "explode": "meters"}}
    found = check_mapping(mapping, {"points": POINTS})
    missing = found[found["check"] == "missing_field"]
    assert list(missing["subject"]) == ["nope"]
    assert "meters.raw_unit reads 'nope'" in missing["message"].iloc[0]


def test_compound_specs_round_trip_through_the_mapping_workbook(tmp_path: object) -> None:
    from pathlib import Path

    from scaler_workbench.mapping import read_mapping_workbook, to_mapping_workbook

    fields = _meter_fields(
        [{"first": ["mpan", "mprn"]}, "meters.serial"],
        description={"join": [{"const": "point"}, "mpan"], "sep": "/"},
    )
    mapping = {
        "assets": {"resource": "points", "fields": {"asset_id": "mpan", "name": "mpan"}},
        "meters": {**_meters(fields), "explode": "meters"},
    }
    path = Path(str(tmp_path)) / "m.xlsx"
    to_mapping_workbook({"provider": {"name": "t"}, "mapping": mapping}, path)
    back = read_mapping_workbook(path)["meters"]["fields"]
    assert back["meter_id"] == fields["meter_id"]
    assert back["description"] == fields["description"]
    tables = build_tables(
        PROFILE, {"points": POINTS}, mapping={"meters": {**mapping["meters"], "fields": back}}
    )
    assert list(tables.meters["meter_id"].astype(str)) == ["M1:A", "M1:B", "G1:A"]
    description = tables.meters["description"]
    assert list(description.isna()) == [False, False, True]  # no mpan: the join has no value
    assert list(description[:2].astype(str)) == ["point/M1", "point/M1"]


def test_meter_chunks_read_a_compound_usage_key_with_a_const_part() -> None:
    """The streamed path cuts chunks at meter boundaries read through the same composed spec."""
    from scaler_workbench.transform import MeterChunks

    meters = _meters(_meter_fields({"join": [{"const": "E"}, "mpan"]}))
    usage = _usage_mapping("value")["usage"]
    usage["r"]["fields"]["meter_id"] = {"join": [{"const": "E"}, "_parent.mpan"]}
    readings = [
        dict(r, _parent={"mpan": m})
        for m in ("M1", "M2")
        for r in _readings([1.0, 2.0, 3.0], [0] * 3)
    ]
    raw = {"points": [{"mpan": "M1"}, {"mpan": "M2"}], "readings": readings}
    chunks = MeterChunks(
        PROFILE, raw, "r", mapping={"meters": meters, "usage": usage}, chunk_records=2
    )
    seen = [set(c.usage["meter_id"].astype(str)) for c in chunks]
    assert seen == [{"E:M1"}, {"E:M2"}] and chunks.grouped  # whole meters, none set aside
