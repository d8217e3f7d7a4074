"""Record filters (issue 15 item 2, and the comparisons of item 15): ``where`` / ``skip`` at
resource and mapping level, ``exclude_meters``, and ``parent_filter`` comparisons, all from one
expression module (``scaler_workbench._filters``); counted per rule in run_summary.json."""

from __future__ import annotations

import copy
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from _fakes import Reply, Request

from scaler_workbench._filters import OPERATORS, compile_filter
from scaler_workbench.clock import FakeClock
from scaler_workbench.connectors.registry import connector_for
from scaler_workbench.exceptions import FilterError, ProfileError
from scaler_workbench.profile import Profile
from scaler_workbench.sync import run_sync

# ---- the expression module, one operator at a time ---------------------------------------------
REC = {"status": "active", "size": 12, "text": "7", "meta": {"grade": 3, "tags": ["a"]}, "n": None}


@pytest.mark.parametrize(
    ("cond", "kept"),
    [
        ({"status": "active"}, True),  # a bare value: equality
        ({"status": "archived"}, False),
        ({"status": ["archived", "active"]}, True),  # a bare list: membership
        ({"status": {"==": "active"}}, True),
        ({"status": {"==": "Active"}}, False),
        ({"text": {"==": 7}}, True),  # XML gives text: 7 equals "7"
        ({"status": {"!=": "archived"}}, True),
        ({"status": {"!=": "active"}}, False),
        ({"size": {">": 11}}, True),
        ({"size": {">": 12}}, False),
        ({"size": {"<": 13}}, True),
        ({"size": {"<": 12}}, False),
        ({"size": {">=": 12}}, True),
        ({"size": {">=": 12.5}}, False),
        ({"size": {"<=": 12}}, True),
        ({"size": {"<=": 11}}, False),
        ({"text": {">": 10}}, False),  # numbers compare as numbers ("7" < 10), not as text
        ({"status": {"in": ["active", "paused"]}}, True),
        ({"status": {"in": ["paused"]}}, False),
        ({"status": {"not in": ["archived", "closed"]}}, True),
        ({"status": {"not in": ["active"]}}, False),
        ({"status": {"matches": "^act"}}, True),
        ({"status": {"matches": "^ive"}}, False),
        ({"n": {"missing": True}}, True),
        ({"absent": {"missing": True}}, True),
        ({"status": {"missing": True}}, False),
        ({"status": {"missing": False}}, True),
        ({"size": {">": 10, "<": 20}}, True),  # several operators: all must hold
        ({"size": {">": 10, "<": 12}}, False),
    ],
)
def test_each_operator(cond: dict[str, Any], kept: bool) -> None:
    assert compile_filter(cond).keeps(REC) is kept


def test_every_operator_is_covered_above() -> None:
    assert set(OPERATORS) == {
        "==",
        "!=",
        ">",
        "<",
        ">=",
        "<=",
        "in",
        "not in",
        "matches",
        "missing",
    }


@pytest.mark.parametrize(
    ("cond", "kept"),
    [
        ({"meta.grade": {">=": 3}}, True),  # a dotted key reads a nested field
        ({"meta.grade": 2}, False),
        ({"meta.tags.0": "a"}, True),  # a number step reads a list item
        ({"meta.nothing": {"missing": True}}, True),
        ({"meta.nothing": {"!=": "x"}}, True),  # null fails all but !=, not in, missing
        ({"meta.nothing": {"==": "x"}}, False),
        ({"meta.nothing": {">": 0}}, False),
        ({"meta.nothing": {"not in": ["x"]}}, True),
    ],
)
def test_dotted_keys_and_null_fields(cond: dict[str, Any], kept: bool) -> None:
    assert compile_filter(cond).keeps(REC) is kept


def test_a_literal_dotted_key_wins_over_the_nested_reading() -> None:
    assert compile_filter({"a.b": 1}).keeps({"a.b": 1, "a": {"b": 2}})


def test_split_counts_each_dropped_record_under_its_first_rule() -> None:
    flt = compile_filter({"status": {"!=": "archived"}}, {"value": {"missing": True}})
    records = [
        {"status": "active", "value": 1},
        {"status": "archived", "value": None},  # where first: counted once, under where
        {"status": "active", "value": None},
        {"status": "active"},
    ]
    kept, counts = flt.split(records)
    assert kept == [records[0]]
    assert counts == {"where.status": 1, "skip.value": 2}
    assert sum(counts.values()) + len(kept) == len(records)


@pytest.mark.parametrize(
    ("where", "fragment"),
    [
        ({"status": {"=!": "archived"}}, "did you mean '!='"),
        ({"status": {"not_in": ["a"]}}, "did you mean 'not in'"),
        ({"status": {"regex": "^a"}}, "did you mean 'matches'"),
        ({"status": {"in": "a"}}, "needs a non-empty list"),
        ({"status": {"matches": "("}}, "not a regular expression"),
        ({"status": {"missing": "yes"}}, "must be true or false"),
        ({"status": {">": [1, 2]}}, "compares with one value"),
        ({"status": {}}, "has no operator"),
        ("status = 'x'", "must be a table"),
    ],
)
def test_bad_conditions_are_filter_errors(where: Any, fragment: str) -> None:
    with pytest.raises(FilterError) as info:
        compile_filter(where, key="resources.meters")
    assert fragment in str(info.value)
    assert info.value.key.startswith("resources.meters.where")
    assert isinstance(info.value, ProfileError)


# ---- a loopback provider ------------------------------------------------------------------------
DAYS = 10
START = date(2024, 1, 1)
METERS = [
    {"id": "A", "site": "S1", "status": "active", "meta": {"grade": 3, "line": "main"}},
    {"id": "B", "site": "S1", "status": "archived", "meta": {"grade": 3, "line": "main"}},
    {"id": "C", "site": "S1", "status": "active", "meta": {"grade": 1, "line": "sub-2"}},
    {"id": "Z9", "site": "S1", "status": "active", "meta": {"grade": 5, "line": "main"}},
]


def _day_records(meter: str) -> list[dict[str, Any]]:
    out = []
    for i in range(DAYS):
        value: float | None = 1.0
        flag = "ok"
        if meter == "A" and i < 3:
            value = None  # three days without data: skipped as no data
        if meter == "C" and i in (4, 5):
            flag = "test"  # two test readings: skipped by a list
        out.append({"date": (START + timedelta(days=i)).isoformat(), "value": value, "flag": flag})
    return out


class MetersFake:
    def __call__(self, req: Request) -> Reply:
        if req.path == "/meters":
            return Reply(200, {"data": METERS})
        meter = req.path.split("/")[2]
        return Reply(200, {"values": _day_records(meter)})


PROFILE: dict[str, Any] = {
    "provider": {"name": "filters", "timezone": "UTC"},
    "environments": {"test": {"base_url": ""}},
    "paginator": {"type": "none"},
    "resources": {
        "meters": {"path": "/meters", "record_path": "data"},
        "days": {
            "path": "/meters/{meter_id}/energy",
            "record_path": "values",
            "parent": "meters",
            "parent_params": {"meter_id": "id"},
            "date_range": {
                "start_param": "from",
                "end_param": "to",
                "format": "date",
                "chunk": "month",
                "since": "2024-01-01",
            },
        },
    },
    "mapping": {
        "assets": {"resource": "meters", "fields": {"asset_id": "site", "name": "site"}},
        "meters": {
            "resource": "meters",
            "fields": {
                "meter_id": "id",
                "asset_id": "site",
                "meter_type": {"const": "Energy"},
                "raw_unit": {"const": "kWh"},
            },
        },
        "usage": {
            "days": {
                "resource": "days",
                "kind": "intervals",
                "aggregate": "day",
                "duration": "1D",
                "fields": {"meter_id": "_parent.meter_id", "start": "date", "consumption": "value"},
            }
        },
    },
    "sync": {"state": "state/filters.sqlite"},
}


def _profile(url: str, edit: Any = None) -> Profile:
    data = copy.deepcopy(PROFILE)
    data["environments"]["test"]["base_url"] = url
    if edit is not None:
        edit(data)
    return Profile.from_dict(data)


def _energy_meters(server: Any) -> list[str]:
    return sorted({r.path.split("/")[2] for r in server.requests if r.path.endswith("/energy")})


@pytest.mark.parametrize(
    ("parent_filter", "fetched"),
    [
        ({"status": {"!=": "archived"}}, ["A", "C", "Z9"]),
        ({"meta.grade": {">": 1}}, ["A", "B", "Z9"]),
        ({"meta.grade": {"<": 3}}, ["C"]),
        ({"meta.grade": {">=": 3}}, ["A", "B", "Z9"]),
        ({"meta.grade": {"<=": 3}}, ["A", "B", "C"]),
        ({"id": {"in": ["A", "C"]}}, ["A", "C"]),
        ({"id": {"not in": ["A", "C"]}}, ["B", "Z9"]),
        ({"meta.line": {"matches": "^sub-"}}, ["C"]),
        ({"meta.line": "main", "status": "active"}, ["A", "Z9"]),  # equality, as before
        ({"meta.retired": {"missing": True}}, ["A", "B", "C", "Z9"]),
    ],
)
def test_parent_filter_comparisons_against_a_loopback_fake(
    serve: Any, parent_filter: dict[str, Any], fetched: list[str]
) -> None:
    server = serve(MetersFake())

    def edit(data: dict[str, Any]) -> None:
        data["resources"]["days"]["parent_filter"] = parent_filter

    connector = connector_for(_profile(server.url, edit))
    results = connector.fetch(["days"], since="2024-01-01", until="2024-01-11")
    assert _energy_meters(server) == fetched
    assert sorted({r["_parent"]["meter_id"] for r in results["days"].records}) == fetched


def _summary(out: Path) -> dict[str, Any]:
    return json.loads((out / "export" / "run_summary.json").read_text(encoding="utf-8"))


def test_resource_and_mapping_filters_through_a_sync_are_counted_in_run_summary(
    serve: Any, tmp_path: Path
) -> None:
    server = serve(MetersFake())

    def edit(data: dict[str, Any]) -> None:
        # resource level: archived meters are not listed, so their days are never requested
        data["resources"]["meters"]["where"] = {"status": {"!=": "archived"}}
        # mapping level: a null value is no data; test readings are kept out
        data["mapping"]["usage"]["days"]["skip"] = {
            "value": {"missing": True},
            "flag": ["test", "calibration"],
        }
        data["mapping"]["exclude_meters"] = ["Z9"]

    clock = FakeClock(datetime(2024, 1, 11, tzinfo=UTC))
    result = run_sync(_profile(server.url, edit), out=tmp_path, clock=clock, until="2024-01-11")
    summary = _summary(tmp_path)
    assert summary["filtered"] == {
        "resources.meters": {"where.status": 1},
        "mapping.usage.days": {"skip.value": 3, "skip.flag": 2},
        "mapping.meters": {"exclude_meters": 1},
        "mapping.usage": {"exclude_meters": DAYS},
    }
    assert result.summary["filtered"] == summary["filtered"]
    assert _energy_meters(server) == ["A", "C", "Z9"]  # B's days never asked for
    # the filtered records are not data and not errors: A and C keep what is left
    meters = summary["accepted"]["meters"]
    assert meters == 2  # A and C (B filtered at the resource, Z9 excluded)
    assert summary["accepted"]["usage"] == (DAYS - 3) + (DAYS - 2)
    assert summary["fetched"]["days"] == 3 * DAYS  # fetched, then counted as filtered
    assert summary["fetched"]["meters"] == 3
    quarantine = (tmp_path / "export" / "quarantine.csv").read_text(encoding="utf-8")
    assert ",error," not in quarantine  # skipped records are neither data nor errors
    assert "C|2024-01-07" in quarantine and "gap_between_periods" in quarantine  # C's hole shows
    report = (tmp_path / "export" / "report.html").read_text(encoding="utf-8")
    assert "mapping.usage.days: skip.value: 3, skip.flag: 2" in report
    assert "resources.meters: where.status: 1" in report


def test_mapping_where_on_an_entity_section(serve: Any, tmp_path: Path) -> None:
    server = serve(MetersFake())

    def edit(data: dict[str, Any]) -> None:
        data["mapping"]["meters"]["where"] = {"meta.grade": {">=": 2}}
        data["mapping"]["usage"]["days"]["where"] = {"_parent.meter_id": {"not in": ["C"]}}

    clock = FakeClock(datetime(2024, 1, 11, tzinfo=UTC))
    run_sync(_profile(server.url, edit), out=tmp_path, clock=clock, until="2024-01-11")
    summary = _summary(tmp_path)
    assert summary["filtered"] == {
        "mapping.meters": {"where.meta.grade": 1},
        "mapping.usage.days": {"where._parent.meter_id": DAYS},
    }
    assert summary["accepted"]["meters"] == 3  # A, B, Z9


def test_a_bad_operator_is_refused_at_load_before_any_request(serve: Any) -> None:
    server = serve(MetersFake())

    def edit(data: dict[str, Any]) -> None:
        data["resources"]["meters"]["where"] = {"status": {"=!": "archived"}}

    with pytest.raises(FilterError) as info:
        _profile(server.url, edit)
    assert info.value.key == "resources.meters.where.status"
    assert "did you mean '!='" in str(info.value)
    assert server.requests == []


@pytest.mark.parametrize(
    ("place", "key"),
    [
        (("resources", "days", "parent_filter"), "resources.days.parent_filter.meta.grade"),
        (("mapping", "usage", "days", "skip"), "mapping.usage.days.skip.meta.grade"),
        (("mapping", "meters", "where"), "mapping.meters.where.meta.grade"),
    ],
)
def test_bad_filters_are_refused_at_load_everywhere(place: tuple[str, ...], key: str) -> None:
    def edit(data: dict[str, Any]) -> None:
        node = data
        for step in place[:-1]:
            node = node[step]
        node[place[-1]] = {"meta.grade": {"gt": 2}}

    with pytest.raises(FilterError) as info:
        _profile("http://127.0.0.1:9", edit)
    assert info.value.key == key
    assert "did you mean '>'" in str(info.value)


def test_unknown_filter_key_and_bad_exclude_meters_are_refused_at_load() -> None:
    def typo(data: dict[str, Any]) -> None:
        data["resources"]["meters"]["wher"] = {"status": "active"}

    with pytest.raises(ProfileError) as info:
        _profile("http://127.0.0.1:9", typo)
    assert "did you mean 'where'" in str(info.value)

    def bad(data: dict[str, Any]) -> None:
        data["mapping"]["exclude_meters"] = "Z9"

    with pytest.raises(FilterError) as info2:
        _profile("http://127.0.0.1:9", bad)
    assert info2.value.key == "mapping.exclude_meters"
