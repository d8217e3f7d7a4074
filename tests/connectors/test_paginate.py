"""Paginators driven with fake responses (no HTTP)."""

from __future__ import annotations

from typing import Any

import pytest

from scaler_workbench.connectors.paginate import (
    PAGINATORS,
    CursorPaginator,
    LinkHeaderPaginator,
    NextUrlPaginator,
    OffsetPaginator,
    PageNumberPaginator,
    PageRequest,
    PageResponse,
    SinglePagePaginator,
    make_paginator,
    parse_link_header,
)
from scaler_workbench.exceptions import PaginationError, ProfileError

BASE = "https://api.example.com/v1"


def _req() -> PageRequest:
    return PageRequest(url=f"{BASE}/meters", params={"kind": "x"}, base_url=BASE)


def _resp(
    body: Any = None, *, url: str = f"{BASE}/meters", headers: dict[str, str] | None = None
) -> PageResponse:
    return PageResponse(url=url, body=body, headers=headers or {})


def _recs(n: int) -> list[dict[str, Any]]:
    return [{"id": i} for i in range(n)]


def test_offset_stops_at_total_and_sets_params() -> None:
    p = OffsetPaginator(limit=10, total_path="meta.total")
    req = _req()
    p.init_request(req)
    assert req.params == {"kind": "x", "offset": 0, "limit": 10}
    p.update_state(_resp({"meta": {"total": 25}}), _recs(10))
    assert p.has_next_page
    p.update_request(req)
    assert req.params["offset"] == 10
    p.update_state(_resp({"meta": {"total": 25}}), _recs(10))
    p.update_request(req)
    assert req.params["offset"] == 20
    p.update_state(_resp({"meta": {"total": 25}}), _recs(5))
    assert not p.has_next_page
    assert p.reported_total == 25 and p.pages == 3


def test_offset_stops_on_empty_page_without_total_and_ignores_short_pages() -> None:
    p = OffsetPaginator(limit=10)
    p.init_request(_req())
    p.update_state(_resp({}), _recs(7))  # the API may cap pages below our limit
    assert p.has_next_page
    p.update_state(_resp({}), [])
    assert not p.has_next_page
    short = OffsetPaginator(limit=10, stop_on_short_page=True)
    short.update_state(_resp({}), _recs(7))
    assert not short.has_next_page


def test_page_number_total_pages_and_base_page() -> None:
    p = PageNumberPaginator(
        base_page=0, total_pages_path="pages", page_size=2, page_size_param="size"
    )
    req = _req()
    p.init_request(req)
    assert req.params["page"] == 0 and req.params["size"] == 2
    p.update_state(_resp({"pages": 2}), _recs(2))
    p.update_request(req)
    assert req.params["page"] == 1 and p.has_next_page
    p.update_state(_resp({"pages": 2}), _recs(1))
    assert not p.has_next_page


def test_cursor_token_has_more_and_no_next() -> None:
    p = CursorPaginator("paging.next", cursor_param="token", has_more_path="paging.more")
    req = _req()
    p.update_state(_resp({"paging": {"next": "abc", "more": True}}), _recs(3))
    p.update_request(req)
    assert req.params["token"] == "abc"
    p.update_state(_resp({"paging": {"next": "def", "more": False}}), _recs(3))
    assert not p.has_next_page
    q = CursorPaginator()
    q.update_state(_resp({"next_cursor": None}), _recs(1))
    assert not q.has_next_page


def test_loop_guard_same_cursor_twice() -> None:
    p = CursorPaginator()
    p.update_state(_resp({"next_cursor": "c1"}), _recs(1))
    p.update_state(_resp({"next_cursor": "c2"}), _recs(1))
    with pytest.raises(PaginationError, match="second time"):
        p.update_state(_resp({"next_cursor": "c1"}), _recs(1))


def test_loop_guard_next_url_pointing_back_to_first_page() -> None:
    p = NextUrlPaginator("next")
    p.init_request(_req())
    p.update_state(_resp({"next": f"{BASE}/meters?page=2"}), _recs(1))
    with pytest.raises(PaginationError) as info:
        p.update_state(
            _resp({"next": f"{BASE}/meters?page=2"}, url=f"{BASE}/meters?page=2"), _recs(1)
        )
    assert isinstance(info.value, RuntimeError)


@pytest.mark.parametrize(
    ("relative_to", "link", "expected"),
    [
        ("request", "https://other.example.com/x?p=2", "https://other.example.com/x?p=2"),
        ("request", "?page=2", f"{BASE}/meters?page=2"),
        ("request", "/v2/meters?page=2", "https://api.example.com/v2/meters?page=2"),
        ("request", "meters?page=2", f"{BASE}/meters?page=2"),
        ("api_root", "/meters?page=2", f"{BASE}/meters?page=2"),
        ("api_root", "meters?page=2", f"{BASE}/meters?page=2"),
    ],
)
def test_next_url_resolution(relative_to: str, link: str, expected: str) -> None:
    p = NextUrlPaginator("links.next", relative_to=relative_to)
    req = _req()
    p.init_request(req)
    p.update_state(_resp({"links": {"next": link}}), _recs(1))
    p.update_request(req)
    assert req.url == expected
    assert req.params == {}  # the next URL carries its own query


def test_link_header_parsing_and_paging() -> None:
    header = '<https://a.example/x?page=2>; rel="next", <https://a.example/x?page=9>; rel="last"'
    assert parse_link_header(header) == {
        "next": "https://a.example/x?page=2",
        "last": "https://a.example/x?page=9",
    }
    assert parse_link_header(None) == {}
    p = LinkHeaderPaginator()
    req = _req()
    p.update_state(_resp(headers={"link": header}), _recs(1))
    p.update_request(req)
    assert req.url.endswith("page=2")
    p.update_state(_resp(headers={}, url=req.url), _recs(1))
    assert not p.has_next_page


def test_single_page_and_max_pages_guard() -> None:
    s = SinglePagePaginator()
    s.update_state(_resp({}), _recs(3))
    assert not s.has_next_page
    p = OffsetPaginator(limit=1, max_pages=2)
    p.update_state(_resp({}), _recs(1))
    p.update_state(_resp({}), _recs(1))
    with pytest.raises(PaginationError, match="max_pages"):
        p.update_state(_resp({}), _recs(1))


@pytest.mark.parametrize(
    "spec",
    [
        {"type": "offset", "limit": 0},
        {"type": "offset", "stop_after_empty_page": False},
        {"type": "page_number", "page_size": 10},
        {"type": "page_number", "stop_after_empty_page": False},
        {"type": "next_url", "relative_to": "host"},
        {"type": "cursor", "cursor_param": ""},
        {"type": "offset", "limt": 5},
    ],
)
def test_bad_option_mixes_fail_in_init(spec: dict[str, Any]) -> None:
    with pytest.raises(ProfileError) as info:
        make_paginator(spec)
    assert isinstance(info.value, ValueError)


def test_make_paginator_forms_and_unknown_type() -> None:
    assert isinstance(make_paginator("cursor"), CursorPaginator)
    assert isinstance(make_paginator(None), SinglePagePaginator)
    assert isinstance(make_paginator({"type": "page"}), PageNumberPaginator)
    inst = OffsetPaginator(limit=5)
    inst.update_state(_resp({}), _recs(5))
    fresh = make_paginator(inst)
    assert fresh is not inst and fresh.pages == 0 and fresh.limit == 5
    with pytest.raises(ProfileError, match="unknown paginator type") as info:
        make_paginator({"type": "scroll"})
    assert all(name in str(info.value) for name in PAGINATORS)
    assert "OffsetPaginator(limit=5" in str(inst)
