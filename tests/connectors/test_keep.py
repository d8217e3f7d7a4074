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


def test_keep_refuses_other_bodies_and_bad_paths() -> None:
    # XML bodies are read since issue 15 item 5 (tests below); text is still refused
    with pytest.raises(ResponseParseError, match="JSON or XML"):
        select_with_ancestors("plain text", "a", {"x": "b"})
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


# ---- XML (issue 15 item 5): the same ancestors, by XPath steps with namespaces ---------------
ESPI_NS = {"a": "http://www.w3.org/2005/Atom", "e": "http://naesb.org/espi"}
FEED = """<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xmlns:espi="http://naesb.org/espi">
  <id>urn:feed:7</id>
  <espi:UsagePoint id="UP1">
    <title>Home</title>
    <espi:MeterReading>
      <espi:IntervalReading><espi:start>100</espi:start><espi:value>5</espi:value></espi:IntervalReading>
      <espi:IntervalReading><espi:start>200</espi:start><espi:value>6</espi:value></espi:IntervalReading>
    </espi:MeterReading>
  </espi:UsagePoint>
  <espi:UsagePoint id="UP2">
    <title>Garage</title>
    <espi:MeterReading>
      <espi:IntervalReading><espi:start>100</espi:start><espi:value>7</espi:value>
        <espi:title>own</espi:title></espi:IntervalReading>
    </espi:MeterReading>
  </espi:UsagePoint>
  <espi:UsagePoint id="UP3"><title>Empty</title></espi:UsagePoint>
</feed>"""
RECORD_PATH = "e:UsagePoint/e:MeterReading/e:IntervalReading"
XML_KEEP = {
    "usage_point_title": "e:UsagePoint/a:title",  # an element of the ancestor
    "usage_point_id": "e:UsagePoint/@id",  # an attribute of the ancestor
    "feed": "a:id/text()",  # the document's top level
    "title": "e:UsagePoint/a:title",  # the record's own field is never overwritten
    "nothing": "e:UsagePoint/a:summary",  # absent: None
}


def _feed_root() -> Any:
    from scaler_workbench.connectors._body import decode_body

    return decode_body(FEED.encode(), content_type="application/atom+xml")


def test_keep_reads_xml_ancestors_with_namespaces() -> None:
    recs = select_with_ancestors(_feed_root(), RECORD_PATH, XML_KEEP, namespaces=ESPI_NS)
    got = [
        (r["start"], r["value"], r["usage_point_title"], r["usage_point_id"], r["feed"])
        for r in recs
    ]
    assert got == [
        ("100", "5", "Home", "UP1", "urn:feed:7"),
        ("200", "6", "Home", "UP1", "urn:feed:7"),
        ("100", "7", "Garage", "UP2", "urn:feed:7"),
    ]
    assert [r.get("title") for r in recs] == ["Home", "Home", "own"]
    assert all(r["nothing"] is None for r in recs)


def test_xml_keep_with_a_descendant_step_and_the_ancestor_itself() -> None:
    from scaler_workbench.connectors._body import xml_steps

    assert xml_steps(".//e:X[@k='a/b']/e:Y") == [".//e:X[@k='a/b']", "e:Y"]
    keep = {"point": "e:UsagePoint", "reading": ".//e:MeterReading/e:IntervalReading/@x"}
    recs = select_with_ancestors(
        _feed_root(), "e:UsagePoint/.//e:IntervalReading", keep, namespaces=ESPI_NS
    )
    assert len(recs) == 3
    assert recs[0]["point"]["@id"] == "UP1" and recs[0]["point"]["title"] == "Home"
    assert all(r["reading"] is None for r in recs)  # no shared step: read from the top, absent


def test_xml_keep_with_an_undeclared_prefix_is_a_parse_error() -> None:
    with pytest.raises(ResponseParseError, match="bad XML path") as info:
        select_with_ancestors(
            _feed_root(),
            RECORD_PATH,
            {"t": "e:UsagePoint/zz:title"},
            namespaces=ESPI_NS,
            url="http://127.0.0.1/feed",
        )
    assert "namespaces" in info.value.hint


def test_xml_keep_over_http_in_a_profile(serve: Any) -> None:
    server = serve(lambda req: Reply(200, FEED, content_type="application/atom+xml"))
    resources = {
        "readings": {
            "path": "/feed",
            "format": "xml",
            "namespaces": ESPI_NS,
            "record_path": RECORD_PATH,
            "keep": {"usage_point_title": "e:UsagePoint/a:title"},
            "paginator": "none",
        }
    }
    recs = fetch_resources(fake_profile(server.url, resources=resources))["readings"].records
    assert [(r["value"], r["usage_point_title"]) for r in recs] == [
        ("5", "Home"),
        ("6", "Home"),
        ("7", "Garage"),
    ]
