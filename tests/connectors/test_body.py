"""JSON and XML bodies: safe decoding, record paths, namespaces, entity refusal."""

from __future__ import annotations

from typing import Any

import pytest

from scaler_workbench.connectors._body import decode_body, find_value, select_records
from scaler_workbench.exceptions import ResponseParseError

XML = b"""<?xml version="1.0"?>
<r:response xmlns:r="urn:x:readings" xmlns:m="urn:x:meta">
  <m:page><m:total>2</m:total><m:link rel="next" href="/readings?page=2"/></m:page>
  <r:data>
    <r:reading id="a1" kind="interval"><r:value>1.5</r:value><r:unit>kWh</r:unit></r:reading>
    <r:reading id="a2" kind="register"><r:value>2</r:value><r:tag>x</r:tag><r:tag>y</r:tag></r:reading>
  </r:data>
</r:response>"""
NS = {"r": "urn:x:readings", "m": "urn:x:meta"}


def test_json_paths() -> None:
    body = {
        "data": {"items": [{"id": 1, "sub": [{"v": 1}, {"v": 2}]}, {"id": 2, "sub": [{"v": 3}]}]},
        "meta": {"total": 2},
    }
    assert [r["id"] for r in select_records(body, "data.items")] == [1, 2]
    assert [r["v"] for r in select_records(body, "$.data.items[*].sub[*]")] == [1, 2, 3]
    assert select_records(body, "data.items[1]") == [body["data"]["items"][1]]
    assert select_records([{"a": 1}], "") == [{"a": 1}]
    assert select_records({"data": []}, "data") == []
    assert find_value(body, "meta.total") == 2 and find_value(body, "meta.nope") is None
    with pytest.raises(ResponseParseError, match="not in the response"):
        select_records(body, "results")


def test_xml_namespaces_records_and_links() -> None:
    root = decode_body(XML, content_type="application/xml")
    recs = select_records(root, "r:data/r:reading", namespaces=NS)
    assert recs[0] == {"@id": "a1", "@kind": "interval", "value": "1.5", "unit": "kWh"}
    assert recs[1]["tag"] == ["x", "y"]
    assert select_records(root, ".//r:reading[@kind='register']", namespaces=NS)[0]["@id"] == "a2"
    assert find_value(root, "m:page/m:total", namespaces=NS) == "2"
    assert find_value(root, "m:page/m:link[@rel='next']/@href", namespaces=NS) == "/readings?page=2"
    assert find_value(root, "m:page/m:missing", namespaces=NS) is None


def test_auto_format_detection_and_bad_bodies() -> None:
    assert decode_body(b'{"a": 1}', content_type="application/json") == {"a": 1}
    assert decode_body(b"<a>1</a>", content_type="").tag == "a"
    assert decode_body(b"  ", content_type="application/json") is None
    with pytest.raises(ResponseParseError, match="not valid JSON"):
        decode_body(b"<html>oops", fmt="json")
    with pytest.raises(ResponseParseError, match="not valid XML"):
        decode_body(b"<a><b></a>", fmt="xml")


@pytest.mark.parametrize(
    "payload",
    [
        # billion laughs
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]><r>&lol2;</r>',
        # external entity
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><r>&xxe;</r>',
        # a bare DTD
        b'<?xml version="1.0"?><!DOCTYPE r SYSTEM "http://example.com/r.dtd"><r/>',
    ],
)
def test_entity_bombs_and_external_entities_are_refused(payload: bytes) -> None:
    with pytest.raises(ResponseParseError, match="refused unsafe XML"):
        decode_body(payload, fmt="xml")


# -- nesting limit and declared charsets (issue 14) ---------------------------------------------
def test_deep_json_and_xml_are_a_parse_error_not_a_recursion_error() -> None:
    from scaler_workbench.connectors._body import MAX_NESTING

    deep_cases = [
        (b"[" * 100_000 + b"]" * 100_000, "application/json"),
        (b'{"a":' * 5_000 + b"1" + b"}" * 5_000, "application/json"),
        (b"<a>" * 100_000 + b"</a>" * 100_000, "application/xml"),
        (b"[" * (MAX_NESTING + 1) + b"]" * (MAX_NESTING + 1), "application/json"),
    ]
    for body, ctype in deep_cases:
        with pytest.raises(ResponseParseError, match=f"deeper than {MAX_NESTING} levels"):
            decode_body(body, content_type=ctype, url="https://x.example/p")
    at_limit = b"[" * MAX_NESTING + b"]" * MAX_NESTING
    assert decode_body(at_limit, content_type="application/json") is not None
    xml_at_limit = b"<a>" * MAX_NESTING + b"</a>" * MAX_NESTING
    assert decode_body(xml_at_limit, content_type="application/xml").tag == "a"
    # brackets inside strings are text, not nesting
    tricky = b'{"data": [{"name": "' + b"[{" * 500 + b'"}]}'
    assert decode_body(tricky, content_type="application/json")["data"][0]["name"] == "[{" * 500


def test_a_declared_charset_is_honoured() -> None:
    latin = '{"name": "Zürich Straße ÿ"}'.encode("iso-8859-1")
    assert decode_body(latin, content_type="application/json; charset=iso-8859-1") == {
        "name": "Zürich Straße ÿ"
    }
    assert decode_body(latin, content_type='application/json; charset="ISO-8859-1"')
    xml = "<r><n>Zürich</n></r>".encode("iso-8859-1")
    root = decode_body(xml, content_type="text/xml; charset=iso-8859-1")
    assert root.find("n").text == "Zürich"
    declared = '<?xml version="1.0" encoding="iso-8859-1"?><r>Zürich</r>'.encode("iso-8859-1")
    assert (
        decode_body(declared, content_type="application/xml; charset=iso-8859-1").text == "Zürich"
    )
    with pytest.raises(ResponseParseError, match="unknown charset"):
        decode_body(b"{}", content_type="application/json; charset=no-such-charset")
    with pytest.raises(ResponseParseError, match="not valid us-ascii"):
        decode_body(b'{"a": "\xff"}', content_type="application/json; charset=us-ascii")


def test_a_deep_page_is_that_pages_parse_error_and_the_pull_is_incomplete(serve: Any) -> None:
    from _fakes import Reply, Request

    from scaler_workbench.clock import FakeClock
    from scaler_workbench.connectors import fetch_resources

    from .conftest import fake_profile

    def handler(req: Request) -> Reply:
        if req.path == "/parents":
            return Reply(200, {"data": [{"id": "p1"}, {"id": "p2"}, {"id": "p3"}]})
        if req.path == "/parents/p2/items":
            return Reply(200, b"[" * 100_000 + b"]" * 100_000, content_type="application/json")
        pid = req.path.split("/")[2]
        return Reply(200, {"data": [{"id": f"{pid}-1"}]})

    server = serve(handler)
    profile = fake_profile(
        server.url,
        resources={
            "parents": {"path": "/parents", "record_path": "data", "primary_key": "id"},
            "items": {
                "path": "/parents/{pid}/items",
                "record_path": "data",
                "primary_key": "id",
                "parent": "parents",
                "parent_params": {"pid": "id"},
            },
        },
    )
    result = fetch_resources(profile, clock=FakeClock())
    items = result["items"]
    assert sorted(r["id"] for r in items.records) == ["p1-1", "p3-1"]
    assert not items.report.complete
    assert len(items.report.failed_pages) == 1
    assert "deeper than" in str(items.report.failed_pages[0])
