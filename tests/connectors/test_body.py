"""JSON and XML bodies: safe decoding, record paths, namespaces, entity refusal."""

from __future__ import annotations

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
