"""Resources: ``[*]`` parent_params fan out, ``add_fields`` stamps, ``inherit_parent``."""

from __future__ import annotations

from typing import Any

import pytest
from _fakes import Reply, Request

from scaler_workbench.connectors import fetch_resources
from scaler_workbench.exceptions import ProfileError

from .conftest import fake_profile

POINTS = {
    "points": [
        {"mpan": "P1", "meters": [{"serial": "A"}, {"serial": "B"}]},
        {"mpan": "P2", "meters": [{"serial": "C"}]},
        {"mpan": "P3", "meters": []},
    ]
}


def _handler(req: Request) -> Reply:
    parts = [p for p in req.path.split("/") if p]
    if req.path == "/points":
        return Reply(200, POINTS)
    if parts[0] == "points" and len(parts) == 4:
        return Reply(200, {"data": [{"v": 1, "where": f"{parts[1]}/{parts[3]}"}]})
    if parts[0] == "serial" and len(parts) == 3:
        return Reply(200, {"data": [{"reading": parts[1]}]})
    return Reply(404, {"error": "nope"})


def _resources(**extra: Any) -> dict[str, Any]:
    return {
        "points": {
            "path": "/points",
            "record_path": "points",
            "add_fields": {"fuel": "gas"},
            "paginator": "none",
        },
        "usage": {
            "path": "/points/{mpan}/meters/{serial}",
            "record_path": "data",
            "parent": "points",
            "parent_params": {"mpan": "mpan", "serial": "meters[*].serial"},
            "paginator": "none",
            **extra,
        },
        "detail": {
            "path": "/serial/{serial}/x",
            "record_path": "data",
            "parent": "usage",
            "parent_params": {"serial": "_parent.serial"},
            "inherit_parent": True,
            "paginator": "none",
        },
    }


def test_wildcard_parent_params_fan_out_one_sequence_per_element(serve: Any) -> None:
    server = serve(_handler)
    results = fetch_resources(fake_profile(server.url, resources=_resources()))
    usage = results["usage"]
    assert usage.report.parents == 3  # P1/A, P1/B, P2/C; P3 has no meters
    assert [r["where"] for r in usage.records] == ["P1/A", "P1/B", "P2/C"]
    assert usage.records[1]["_parent"] == {"mpan": "P1", "serial": "B"}
    assert all(r["fuel"] == "gas" for r in results["points"].records)


def test_inherit_parent_carries_grandparent_params(serve: Any) -> None:
    server = serve(_handler)
    results = fetch_resources(fake_profile(server.url, resources=_resources()))
    detail = results["detail"].records
    assert [r["_parent"] for r in detail] == [
        {"mpan": "P1", "serial": "A"},
        {"mpan": "P1", "serial": "B"},
        {"mpan": "P2", "serial": "C"},
    ]
    # without inherit_parent only the path parameters are stamped (the default)
    res = _resources()
    del res["detail"]["inherit_parent"]
    plain = fetch_resources(fake_profile(server.url, resources=res))["detail"].records
    assert plain[0]["_parent"] == {"serial": "A"}


def test_add_fields_must_be_a_table_of_plain_names() -> None:
    res = _resources()
    res["points"]["add_fields"] = {"_parent": "x"}
    with pytest.raises(ProfileError, match="add_fields"):
        fetch_resources(fake_profile("http://127.0.0.1:9", resources=res))
