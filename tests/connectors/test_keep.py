"""Resources: ``keep`` gives records selected by a nested ``record_path`` their ancestors' fields."""

from __future__ import annotations

from typing import Any

import pytest
from _fakes import Reply, Request

from scaler_workbench.connectors import fetch_resources
from scaler_workbench.connectors.resources import select_with_ancestors
from scaler_workbench.exceptions import ProfileError, ResponseParseError

from .conftest import fake_profile

ACCOUNT = {
    "number": "A-1",
    "properties": [
        {"id": 11, "points": [{"mpan": "E1"}, {"mpan": "E2", "id": "own"}]},
        {"id": 22, "points": [{"mpan": "E3"}]},
        {"id": 33, "points": []},
        {"id": 44},  # no points at all
    ],
}


def test_keep_reads_each_records_own_ancestors() -> None:
    recs = select_with_ancestors(
        ACCOUNT,
        "properties[*].points[*]",
        {"property_id": "properties[*].id", "account": "number", "pid": "properties[*].id"},
    )
    assert [(r["mpan"], r["property_id"], r["account"]) for r in recs] == [
        ("E1", 11, "A-1"),
        ("E2", 11, "A-1"),
        ("E3", 22, "A-1"),
    ]
    assert recs[1]["id"] == "own"  # a kept field never overwrites the record's own


def test_keep_with_a_path_ending_on_a_list_and_an_index() -> None:
    body = {"data": {"site": {"code": "S"}, "rows": [{"v": 1}, {"v": 2}]}}
    recs = select_with_ancestors(body, "data.rows", {"site": "data.site.code"})
    assert recs == [{"v": 1, "site": "S"}, {"v": 2, "site": "S"}]
    recs = select_with_ancestors(ACCOUNT, "properties[1].points[*]", {"p": "properties[1].id"})
    assert recs == [{"mpan": "E3", "p": 22}]


def test_keep_refuses_xml_and_bad_paths() -> None:
    from xml.etree.ElementTree import Element

    with pytest.raises(ResponseParseError, match="JSON"):
        select_with_ancestors(Element("root"), "a", {"x": "b"})
    with pytest.raises(ResponseParseError, match="bad"):
        select_with_ancestors(ACCOUNT, "properties[*]", {"x": "a[b"})


def _handler(req: Request) -> Reply:
    return Reply(200, ACCOUNT) if req.path == "/account" else Reply(404, {"error": "nope"})


def test_keep_over_http_in_a_profile(serve: Any) -> None:
    server = serve(_handler)
    resources = {
        "points": {
            "path": "/account",
            "record_path": "properties[*].points[*]",
            "keep": {"property_id": "properties[*].id"},
            "paginator": "none",
        }
    }
    recs = fetch_resources(fake_profile(server.url, resources=resources))["points"].records
    assert {r["mpan"]: r["property_id"] for r in recs} == {"E1": 11, "E2": 11, "E3": 22}


@pytest.mark.parametrize(
    "bad",
    [
        {"keep": {"_parent": "properties[*].id"}},
        {"keep": {"p": 1}},
        {"keep": "properties[*].id"},
        {"keep": {"p": "id"}, "record_path": ""},
    ],
)
def test_keep_must_be_a_table_of_paths_on_a_record_path(bad: dict[str, Any]) -> None:
    res = {"points": {"path": "/account", "record_path": "properties[*].points[*]", **bad}}
    with pytest.raises(ProfileError, match="keep"):
        fetch_resources(fake_profile("http://127.0.0.1:9", resources=res))
