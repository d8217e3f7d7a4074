"""Request body templates (issue 18 item 1): one test per placeholder, over loopback HTTP.

``json`` / ``body`` of a POST resource take ``{parent.x}``, ``{variables.x}``,
``{window.start}`` / ``{window.end}`` and ``{cursor}``; a JSON value that is exactly one
placeholder keeps the substituted value's type.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from _fakes import Reply, Request

from scaler_workbench.clock import FakeClock
from scaler_workbench.connectors import fetch_resources
from scaler_workbench.connectors._templates import (
    TemplateContext,
    check_template,
    render_json,
    render_text,
)
from scaler_workbench.exceptions import ProfileError
from scaler_workbench.profile import Profile

from .conftest import fake_profile


def _bodies(server: Any) -> list[Any]:
    return [json.loads(r.body) for r in server.requests if r.method == "POST"]


def test_render_json_is_typed_and_leaves_other_braces_alone() -> None:
    ctx = TemplateContext(
        parent={"site": 7, "name": "Main St"},
        variables={"account": "A-1", "limit": 50},
        window={"start": 1704067200, "end": "2024-02-01"},
        cursor=None,
    )
    template = {
        "site": "{parent.site}",
        "label": "site {parent.site} of {variables.account}",
        "limit": "{variables.limit}",
        "from": "{window.start}",
        "after": "{cursor}",
        "query": "{ viewer { homes { id } } } {name} {other.x}",
        "list": ["{parent.name}", 3],
    }
    out = render_json(template, ctx)
    assert out == {
        "site": 7,  # a number stays a number
        "label": "site 7 of A-1",
        "limit": 50,
        "from": 1704067200,
        "after": None,  # no cursor on the first page: null
        "query": "{ viewer { homes { id } } } {name} {other.x}",
        "list": ["Main St", 3],
    }
    assert template["site"] == "{parent.site}"  # the template is not modified
    xml = render_text("<a>{parent.name}&amp;{cursor}</a>", ctx, escape=lambda s: s.upper())
    assert xml == "<a>MAIN ST&amp;</a>"


def test_check_template_refuses_what_no_request_could_fill() -> None:
    with pytest.raises(ProfileError, match=r"\{parent.sit\} is not a parent parameter"):
        check_template(
            {"s": "{parent.sit}"},
            key="resources.x.json",
            parent_params={"site": "id"},
            variables={},
            has_window=False,
        )
    with pytest.raises(ProfileError, match=r"variables\.acount"):
        check_template(
            "{variables.acount}",
            key="resources.x.body",
            parent_params={},
            variables={"account": "1"},
            has_window=False,
        )
    with pytest.raises(ProfileError, match="needs a date_range"):
        check_template(
            {"f": "{window.start}"},
            key="resources.x.json",
            parent_params={},
            variables={},
            has_window=False,
        )


def test_parent_placeholder_fills_a_post_json_body(serve: Any) -> None:
    def handler(req: Request) -> Reply:
        if req.path == "/sites":
            return Reply(200, {"data": [{"id": 11}, {"id": 12}]})
        doc = json.loads(req.body)
        return Reply(200, {"data": [{"site": doc["site"], "v": 1}]})

    server = serve(handler)
    profile = fake_profile(
        server.url,
        resources={
            "sites": {"path": "/sites", "record_path": "data"},
            "reads": {
                "path": "/reads",
                "method": "POST",
                "json": {"site": "{parent.site}", "note": "site {parent.site}"},
                "record_path": "data",
                "parent": "sites",
                "parent_params": {"site": "id"},
            },
        },
    )
    out = fetch_resources(profile, clock=FakeClock())
    assert [r["site"] for r in out["reads"].records] == [11, 12]
    assert _bodies(server) == [{"site": 11, "note": "site 11"}, {"site": 12, "note": "site 12"}]
    assert all(r.query == {} for r in server.requests)  # nothing leaked into the query


def test_variable_placeholder_keeps_a_number_a_number(serve: Any) -> None:
    server = serve(lambda req: Reply(200, {"data": [{"ok": True}]}))
    data = {
        "provider": {"name": "fake", "timezone": "UTC"},
        "environments": {"test": {"base_url": server.url}},
        "variables": {"account": "ACC-9", "page_size": 250},
        "resources": {
            "x": {
                "path": "/search",
                "method": "POST",
                "json": {"account": "{variables.account}", "size": "{variables.page_size}"},
                "record_path": "data",
            }
        },
    }
    profile = Profile.from_dict(data)
    fetch_resources(profile, clock=FakeClock())
    assert _bodies(server) == [{"account": "ACC-9", "size": 250}]
    # a --var override is text, and is sent as given
    fetch_resources(profile.with_variables({"account": "ACC-10"}), clock=FakeClock())
    assert _bodies(server)[-1]["account"] == "ACC-10"


def test_window_placeholders_fill_a_text_body_in_the_resources_date_format(serve: Any) -> None:
    def handler(req: Request) -> Reply:
        return Reply(200, {"data": [{"body": req.body.decode()}]})

    server = serve(handler)
    profile = fake_profile(
        server.url,
        resources={
            "x": {
                "path": "/export",
                "method": "POST",
                "headers": {"Content-Type": "application/x-www-form-urlencoded"},
                "body": "from={window.start}&to={window.end}",
                "record_path": "data",
                "date_range": {"format": "date", "end_inclusive": True, "chunk": "month"},
            }
        },
    )
    out = fetch_resources(profile, since="2024-01-01", until="2024-03-01", clock=FakeClock())
    assert [r["body"] for r in out["x"].records] == [
        "from=2024-01-01&to=2024-01-31",  # end_inclusive: the last day
        "from=2024-02-01&to=2024-02-29",
    ]
    # the window goes into the body only (no start_param given): no from/to in the query
    assert all(r.query == {} for r in server.requests)
    assert server.requests[0].headers["Content-Type"] == "application/x-www-form-urlencoded"


def test_window_placeholders_in_epoch_json_are_numbers(serve: Any) -> None:
    server = serve(lambda req: Reply(200, {"data": [json.loads(req.body)]}))
    profile = fake_profile(
        server.url,
        resources={
            "x": {
                "path": "/q",
                "method": "POST",
                "json": {"range": {"gte": "{window.start}", "lt": "{window.end}"}},
                "record_path": "data",
                "date_range": {"format": "epoch", "chunk": None, "start_param": "since"},
            }
        },
    )
    out = fetch_resources(profile, since="2024-01-01", until="2024-01-02", clock=FakeClock())
    assert out["x"].records[0]["range"] == {"gte": 1704067200, "lt": 1704153600}
    # start_param given: the window also goes into the query, as before
    assert server.requests[0].query == {"since": "1704067200", "to": "1704153600"}


def test_cursor_placeholder_carries_the_next_token_in_the_body(serve: Any) -> None:
    pages = {None: (["a", "b"], "t2"), "t2": (["c"], "t3"), "t3": (["d"], None)}

    def handler(req: Request) -> Reply:
        doc = json.loads(req.body)
        ids, nxt = pages[doc["paging"]["cursor"]]
        return Reply(200, {"items": [{"id": i} for i in ids], "next": nxt})

    server = serve(handler)
    profile = fake_profile(
        server.url,
        resources={
            "x": {
                "path": "/items/search",
                "method": "POST",
                "json": {"paging": {"cursor": "{cursor}", "size": 2}},
                "record_path": "items",
                "paginator": {"type": "cursor", "cursor_path": "next", "cursor_in": "body"},
            }
        },
    )
    out = fetch_resources(profile, clock=FakeClock())
    assert [r["id"] for r in out["x"].records] == ["a", "b", "c", "d"]
    assert [b["paging"]["cursor"] for b in _bodies(server)] == [None, "t2", "t3"]
    assert all("cursor" not in r.query for r in server.requests)


def test_a_body_placeholder_that_names_no_parent_param_is_a_profile_error(serve: Any) -> None:
    profile = fake_profile(
        "http://127.0.0.1:9",
        resources={
            "sites": {"path": "/sites"},
            "x": {
                "path": "/x",
                "method": "POST",
                "json": {"site": "{parent.site_id}"},
                "parent": "sites",
                "parent_params": {"site": "id"},
            },
        },
    )
    with pytest.raises(ProfileError) as info:
        fetch_resources(profile, clock=FakeClock())
    assert "{parent.site_id}" in str(info.value) and "did you mean 'site'" in str(info.value)
    assert info.value.key == "resources.x.json"


def test_an_xml_body_gets_its_substituted_values_escaped(serve: Any) -> None:
    def handler(req: Request) -> Reply:
        if req.path == "/sites":
            return Reply(200, {"data": [{"name": "A&B <main>"}]})
        return Reply(200, {"data": [{"body": req.body.decode()}]})

    server = serve(handler)
    profile = fake_profile(
        server.url,
        resources={
            "sites": {"path": "/sites", "record_path": "data"},
            "x": {
                "path": "/soap",
                "method": "POST",
                "headers": {"Content-Type": "text/xml; charset=utf-8"},
                "body": "<Envelope><Site>{parent.site}</Site></Envelope>",
                "record_path": "data",
                "parent": "sites",
                "parent_params": {"site": "name"},
            },
        },
    )
    out = fetch_resources(profile, clock=FakeClock())
    assert out["x"].records[0]["body"] == "<Envelope><Site>A&amp;B &lt;main&gt;</Site></Envelope>"
