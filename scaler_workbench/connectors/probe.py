"""Tools for meeting a new API: guess and probe its pagination, plan a fetch before sending it.

- :func:`detect_pagination` scores paginator guesses from one response (no requests sent).
- :func:`probe_pagination` fetches page 1, then tries each candidate for page 2 (Link header,
  next URL, cursor, offset, page number) and reports which ones bring new, non-overlapping
  records; ``result.best`` is a ready ``[paginator]`` table for the profile.
- :func:`plan_requests` lists every request a fetch would send (date windows x parents x pages,
  where countable) with the count and the time it takes under the ``[client.budget]``.

Recording real answers for offline work is a client option: ``Client(profile,
record_to=folder)``, then ``Client(profile, replay_from=folder)`` (see :mod:`.client`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from scaler_workbench._secrets import get_logger, redact_url
from scaler_workbench.connectors._body import find_value, select_records
from scaler_workbench.connectors.auth import NoAuth
from scaler_workbench.connectors.client import Client, Reply
from scaler_workbench.connectors.paginate import (
    CursorPaginator,
    OffsetPaginator,
    PageNumberPaginator,
    PageRequest,
    PageResponse,
    RelayPaginator,
    SinglePagePaginator,
    make_paginator,
    parse_link_header,
)
from scaler_workbench.connectors.resources import connector_for
from scaler_workbench.exceptions import ConnectorError, ResponseParseError

__all__ = [
    "Candidate",
    "PlannedRequest",
    "ProbeResult",
    "RequestPlan",
    "detect_pagination",
    "detect_record_path",
    "plan_requests",
    "probe_pagination",
]

log = get_logger(__name__)

_NEXT_URL_PATHS = (
    "links.next",
    "next",
    "next_url",
    "nextUrl",
    "nextPage",
    "next_page_url",
    "_links.next.href",
    "links.next.href",
    "@odata.nextLink",
    "paging.next",
    "meta.next",
)
_CURSOR_PATHS = (
    "next_cursor",
    "nextCursor",
    "cursor",
    "next_token",
    "nextToken",
    "next_page_token",
    "nextPageToken",
    "continuation_token",
    "meta.next_cursor",
    "pagination.next_cursor",
    "paging.cursors.after",
)
_TOTAL_PATHS = (
    "total",
    "count",
    "total_count",
    "totalCount",
    "totalResults",
    "total_results",
    "totalElements",
    "totalItems",
    "meta.total",
    "pagination.total",
)
#: Offset-style parameter names (first record) and page-size names, as APIs spell them.
_OFFSET_NAMES = ("offset", "startIndex", "start_index", "start", "skip", "first")
_SIZE_NAMES = ("limit", "size", "count", "pageSize", "page_size", "per_page", "max", "top")
_PAGE_NAMES = ("page", "pageNumber", "page_number", "pageIndex", "p")
_TOTAL_PAGES_PATHS = (
    "total_pages",
    "totalPages",
    "pages",
    "meta.total_pages",
    "pagination.total_pages",
)
_RECORD_PATHS = ("data", "items", "results", "records", "value", "rows", "entries", "content")
_CURSOR_PARAMS = {
    "next_cursor": "cursor",
    "nextCursor": "cursor",
    "next_token": "next_token",
    "nextToken": "nextToken",
    "next_page_token": "page_token",
    "nextPageToken": "pageToken",
    "continuation_token": "continuation_token",
}


def detect_record_path(body: Any) -> str:
    """The most likely record path in a JSON body: "" for a bare list, else the list field."""
    if isinstance(body, list):
        return ""
    if isinstance(body, Mapping):
        for name in _RECORD_PATHS:
            if isinstance(body.get(name), list):
                return name
        for name, value in body.items():
            if isinstance(value, list) and value and isinstance(value[0], dict):
                return str(name)
    return ""


def _body_and_headers(response: Any, body: Any = None) -> tuple[Any, Mapping[str, str]]:
    if isinstance(response, Reply):
        return response.body, response.response.headers
    headers = getattr(response, "headers", {}) or {}
    if body is None and response is not None and hasattr(response, "json"):
        try:
            body = response.json()
        except ValueError:
            body = None
    return body, headers


def detect_pagination(response: Any, *, body: Any = None) -> list[tuple[float, dict[str, Any]]]:
    """Score paginator guesses from one response: ``[(score, paginator table), ...]`` best first.

    Parameters
    ----------
    response : Reply or requests.Response
        A first page (``client.get(...)`` returns a :class:`Reply`).
    body : optional
        The decoded body, when ``response`` is a bare ``requests.Response`` not holding JSON.

    Returns
    -------
    list of (float, dict)
        ``(score [0-1], [paginator] table)`` pairs, best first; always ends with ``none``.

    Raises
    ------
    None
        A body that is not JSON is read as no body: only the headers are scored.

    Notes
    -----
    Scores are heuristics in [0, 1]: a ``Link: rel="next"`` header 0.95, a URL-looking next
    field 0.9, a cursor/token field 0.8, offset or page fields with totals 0.6-0.7, nothing
    found "none" 0.3. Confirm with :func:`probe_pagination`.
    """
    body, headers = _body_and_headers(response, body)
    guesses: list[tuple[float, dict[str, Any]]] = []
    link = headers.get("Link") or headers.get("link")
    if parse_link_header(link).get("next"):
        guesses.append((0.95, {"type": "link_header"}))
    for path in _NEXT_URL_PATHS:
        value = find_value(body, path)
        if isinstance(value, str) and ("/" in value or "?" in value):
            guesses.append((0.9, {"type": "next_url", "next_url_path": path}))
            break
    for path in _CURSOR_PATHS:
        value = find_value(body, path)
        if isinstance(value, str | int) and value not in ("", None) and "/" not in str(value):
            param = _CURSOR_PARAMS.get(path.rsplit(".", 1)[-1], "cursor")
            guesses.append((0.8, {"type": "cursor", "cursor_path": path, "cursor_param": param}))
            break
    total_path = next((p for p in _TOTAL_PATHS if isinstance(find_value(body, p), int)), "")
    pages_path = next((p for p in _TOTAL_PAGES_PATHS if isinstance(find_value(body, p), int)), "")
    if isinstance(body, Mapping) and ("page" in body or pages_path):
        spec: dict[str, Any] = {"type": "page_number"}
        if pages_path:
            spec["total_pages_path"] = pages_path
        guesses.append((0.7 if pages_path else 0.5, spec))
    if isinstance(body, Mapping) and ("offset" in body or total_path):
        spec = {"type": "offset"}
        if total_path:
            spec["total_path"] = total_path
        limit = body.get("limit")
        if isinstance(limit, int) and limit > 0:
            spec["limit"] = limit
        guesses.append((0.7 if "offset" in body else 0.6, spec))
    guesses.append((0.3, {"type": "none"}))
    guesses.sort(key=lambda g: -g[0])
    for score, guess in guesses:
        log.debug("pagination guess %.2f: %s", score, guess)
    return guesses


@dataclass
class Candidate:
    """One pagination candidate tried for page 2."""

    spec: dict[str, Any]
    url: str = ""
    records: int = 0
    new_ids: int = 0
    overlap: int = 0
    error: str = ""

    @property
    def works(self) -> bool:
        return not self.error and self.new_ids > 0 and self.overlap == 0


@dataclass
class ProbeResult:
    """What :func:`probe_pagination` found. ``best`` is a ``[paginator]`` table or ``None``."""

    path: str
    record_path: str
    first_page: int
    candidates: list[Candidate] = field(default_factory=list)
    guesses: list[tuple[float, dict[str, Any]]] = field(default_factory=list)

    @property
    def best(self) -> dict[str, Any] | None:
        working = [c for c in self.candidates if c.works]
        if working:
            return working[0].spec
        if self.candidates and all(c.records == 0 and not c.error for c in self.candidates):
            return {"type": "none"}
        return None

    def __str__(self) -> str:
        lines = [
            f"probe {self.path}: page 1 has {self.first_page} records at {self.record_path or '(body)'!r}"
        ]
        for c in self.candidates:
            state = (
                "WORKS" if c.works else (c.error or f"{c.records} records, {c.overlap} repeated")
            )
            lines.append(f"  {c.spec}: {state} ({c.new_ids} new ids)")
        lines.append(f"  best: {self.best}")
        return "\n".join(lines)


def probe_pagination(
    client: Client,
    path: str,
    *,
    params: Mapping[str, Any] | None = None,
    record_path: str | None = None,
    primary_key: str = "id",
    offset_param: str | None = None,
    limit_param: str | None = None,
    page_param: str | None = None,
    page_size_param: str | None = None,
) -> ProbeResult:
    """Fetch page 1 of ``path``, try each way to get page 2, and report which ones work.

    A candidate works when page 2 has records and none of their ``primary_key`` values were on
    page 1. At most one request per candidate is sent (about six in all).

    Parameters
    ----------
    client : Client
    path : str
        Resource path (or URL) of a list endpoint.
    params : dict, optional
        Extra query parameters (e.g. a date range) sent with every request.
    record_path : str, optional
        Where the records are (default: detected, e.g. ``data``).
    primary_key : str
        Record field that identifies a record [dotted path].
    offset_param, limit_param : str, optional
        The API's names for "first record" and "page size" (``startIndex``/``size``). Default:
        read from ``params`` when it holds a known pair (``params={"startIndex": 0, "size":
        50}``), else ``offset``/``limit``.
    page_param, page_size_param : str, optional
        The API's names for the page number and its size (``pageNumber``/``pageSize``); default
        from ``params`` as above, else ``page`` (and no size).

    Returns
    -------
    ProbeResult
        Every candidate tried (records, new ids, overlap, error) and ``best``, the
        ``[paginator]`` table of the best one that works (``None`` if none does).

    Raises
    ------
    ConnectorError
        Page 1 itself failed (an :class:`AuthError`, :class:`TransportError`, ... subclass);
        a candidate's failing page 2 is recorded on the candidate instead.
    """
    base = dict(params or {})
    first = client.get(path, params=base)
    record_path = detect_record_path(first.body) if record_path is None else record_path
    records1 = select_records(first.body, record_path)
    ids1 = {str(find_value(r, primary_key)) for r in records1}
    guesses = detect_pagination(first)
    result = ProbeResult(
        path=path, record_path=record_path, first_page=len(records1), guesses=guesses
    )
    n = max(len(records1), 1)
    tried: list[tuple[dict[str, Any], str, dict[str, Any]]] = []
    for _score, spec in guesses:
        if spec["type"] in ("link_header", "next_url", "cursor"):
            pager = make_paginator(spec)
            request = PageRequest(url=client.url(path), params=dict(base), base_url=client.base_url)
            pager.init_request(request)
            pager.update_state(
                PageResponse(
                    url=first.response.url, headers=dict(first.response.headers), body=first.body
                ),
                records1,
            )
            if pager.has_next_page:
                pager.update_request(request)
                tried.append((spec, request.url, request.params))
    off_name = offset_param or _named(base, _OFFSET_NAMES) or "offset"
    size_name = limit_param or _named(base, _SIZE_NAMES) or "limit"
    start = _int(base.get(off_name), 0)
    size = _int(base.get(size_name), n)
    offset_spec: dict[str, Any] = {"type": "offset", "limit": size}
    if off_name != "offset":
        offset_spec["offset_param"] = off_name
    if size_name != "limit":
        offset_spec["limit_param"] = size_name
    if start:
        offset_spec["offset"] = start
    total = next((p for p in _TOTAL_PATHS if isinstance(find_value(first.body, p), int)), "")
    if total:
        offset_spec["total_path"] = total
    tried.append((offset_spec, path, {**base, off_name: start + n, size_name: size}))
    page_name = page_param or _named(base, _PAGE_NAMES) or "page"
    page_spec: dict[str, Any] = {"type": "page_number"}
    page_q = {**base, page_name: _int(base.get(page_name), 1) + 1}
    if page_name != "page":
        page_spec["page_param"] = page_name
    if _int(base.get(page_name), 1) != 1:
        page_spec["base_page"] = _int(base.get(page_name), 1)
    size_for_pages = page_size_param or (
        _named(base, _SIZE_NAMES) if page_name in base and off_name not in base else None
    )
    if size_for_pages:
        page_spec["page_size"] = _int(base.get(size_for_pages), n)
        page_spec["page_size_param"] = size_for_pages
        page_q[size_for_pages] = page_spec["page_size"]
    tried.append((page_spec, path, page_q))
    for spec, url, q in tried:
        cand = Candidate(spec=spec, url=redact_url(client.url(url)))
        try:
            reply = client.get(url, params=q)
            recs = select_records(reply.body, record_path)
        except (ConnectorError, ResponseParseError) as exc:
            cand.error = f"{type(exc).__name__}: {exc.message}"
        else:
            ids = {str(find_value(r, primary_key)) for r in recs}
            cand.records, cand.overlap, cand.new_ids = len(recs), len(ids & ids1), len(ids - ids1)
        result.candidates.append(cand)
    _validate_specs(result)
    return result


def _named(params: Mapping[str, Any], names: Iterable[str]) -> str:
    """The first of ``names`` that the caller's ``params`` set to a whole number (``""`` when
    none): a date such as ``start=2024-01-01`` is a filter, not a position."""
    return next((n for n in names if n in params and _int(params[n], -1) >= 0), "")


def _int(value: Any, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except (TypeError, ValueError):
        return default


def _validate_specs(result: ProbeResult) -> None:
    for cand in result.candidates:
        make_paginator(cand.spec)  # every suggestion must load as a profile table


# ------------------------------------------------------------------------------- planning
@dataclass
class PlannedRequest:
    """One request of a plan; ``path`` keeps ``{param}`` placeholders when parents are unknown."""

    resource: str
    path: str
    params: dict[str, Any]
    pages: int


@dataclass
class RequestPlan:
    """A dry-run plan: requests per resource, the total, and the time under the budget [s]."""

    rows: list[dict[str, Any]]
    requests: list[PlannedRequest]
    total_requests: int
    seconds: float
    exact: bool

    def __str__(self) -> str:
        lines = [f"{'resource':<20}{'parents':>9}{'windows':>9}{'pages':>7}{'requests':>10}"]
        for r in self.rows:
            lines.append(
                f"{r['resource']:<20}{r['parents']:>9}{r['windows']:>9}{r['pages_per_sequence']:>7}{r['requests']:>10}"
            )
        approx = "" if self.exact else " (estimate: some parent or record counts unknown)"
        lines.append(
            f"total: {self.total_requests} requests, about {self.seconds:.0f} s under the budget{approx}"
        )
        return "\n".join(lines)


def _page_size(pager: Any, spec: Any, seen: Mapping[str, Any]) -> float | None:
    """Records per full page [records]: the paginator's size, or fewer when the last fetch got
    fewer per page over sequences of several pages (a silent cap), or what it got when the
    paginator states no size (a cursor or Relay connection sized in the query)."""
    size: float | None = None
    if isinstance(pager, OffsetPaginator):
        size = pager.limit
    elif isinstance(pager, PageNumberPaginator | RelayPaginator | CursorPaginator):
        size = getattr(pager, "page_size", None)
    if size is None and isinstance(pager, RelayPaginator):
        variables = dict((getattr(spec, "graphql", None) or {}).get("variables") or {})
        value = variables.get(pager.size_variable)
        size = value if isinstance(value, int) and not isinstance(value, bool) else None
    records, pages = seen.get("records"), seen.get("pages")
    sequences = max(int(seen.get("windows") or 0), int(seen.get("parents") or 0), 1)
    if records and pages and int(pages) > sequences:  # some sequence needed several pages
        # each sequence ends on a page about half full: the others held a full page each
        got = int(records) / (int(pages) - sequences / 2)
        size = got if size is None else min(size, got)
    return size


def _days(window: Any) -> float:
    """A date window's length [d]."""
    start, end = window
    return max((end - start).total_seconds() / 86400.0, 0.0)


def _daily_rate(spec: Any, seen: Mapping[str, Any], records: int, client: Client) -> float | None:
    """Records per parent and day [records/d] of the last fetch (None when unknown)."""
    if not seen or "since" not in seen:
        return None
    at = seen.get("at")
    now = datetime.fromisoformat(at) if isinstance(at, str) else client.clock.now()
    try:
        last = spec.date_range.windows(seen.get("since"), seen.get("until"), now=now)
    except (ValueError, TypeError):
        return None
    days = sum(_days(w) for w in last) * max(int(seen.get("parents") or 0), 1)
    return records / days if days > 0 else None


def plan_requests(
    profile: Any,
    since: str | date | datetime | None = None,
    until: str | date | datetime | None = None,
    *,
    resources: Iterable[str] | None = None,
    counts: Mapping[str, int] | None = None,
    client: Client | None = None,
    windows: Mapping[str, tuple[Any, Any]] | None = None,
    history: Mapping[str, Mapping[str, Any]] | None = None,
) -> RequestPlan:
    """Plan every request of a fetch without sending any.

    Parameters
    ----------
    profile : Profile
    since, until : optional
        As for :func:`fetch_resources`.
    resources : iterable of str, optional
        Resource names (parents are added).
    counts : dict, optional
        Known record counts per resource (e.g. from the last run's reports). Parent counts
        give the number of child sequences; a resource's own count per sequence gives its pages
        under an offset/page-number paginator. Without them each counts as one.
    client : Client, optional
        Only for its budget and clock; no request is sent. By default a client without
        credentials is built, so planning needs no secrets.
    windows : dict of str to (since, until), optional
        Per resource, the date range its fetch asks for (a sync's incremental windows: only
        the months its watermark says are due); others use ``since`` / ``until``.
    history : dict of str to dict, optional
        Per resource, what the last fetch of it saw (``run_summary.json`` ``fetch``):
        ``records``, ``pages``, ``windows`` (date windows over all parents), ``parents``
        (sequences fetched; 0 without a parent), ``since`` / ``until`` / ``at`` (ISO: its
        range and when it ran). A child resource then counts the parents it fetched (its
        ``parent_filter`` applied), a dated resource expects its records per parent and day
        [records/d] in each planned window, and a paginator whose pages hold fewer records
        than asked (a Relay connection's silent cap) pages by the records per page it got.

    Returns
    -------
    RequestPlan
        The planned requests per resource, their total, whether the count is exact, and the
        least time the budget needs for them [s].

    Raises
    ------
    ProfileError
        An unknown resource, connector or paginator, or a date range the profile cannot read.
    """
    client = client or Client(profile, auth=NoAuth())
    connector = connector_for(profile, client=client)
    counts = dict(counts or {})
    rows: list[dict[str, Any]] = []
    planned: list[PlannedRequest] = []
    exact = True
    sequences_of: dict[str, int] = {}
    for name in connector.plan_order(resources):
        spec = connector.resource(name)
        if spec.parent_filter or (spec.parent and connector.resource(spec.parent).filter):
            exact = False  # the filter keeps an unknown share of the parents: an upper bound
        seen = dict((history or {}).get(name) or {})
        if spec.parent:
            parents = counts.get(spec.parent)
            if seen.get("parents"):
                parents = int(seen["parents"])  # the parents its parent_filter kept last time
            elif parents is None:
                exact = False
                parents = sequences_of.get(spec.parent, 1)
        else:
            parents = 1
        first, last = (windows or {}).get(name, (since, until))
        dated = (
            spec.date_range.windows(
                first, last, now=client.clock.now(), max_days=client.learned_spans.get(name)
            )
            if spec.date_range
            else [None]
        )
        pager = connector.paginator(spec)
        pages = 1
        per_window: list[int] | None = None
        if not isinstance(pager, SinglePagePaginator):
            size = _page_size(pager, spec, seen)
            known = counts.get(name)
            if seen.get("records") is not None:
                known = int(seen["records"])
            if isinstance(pager, RelayPaginator | CursorPaginator) and not seen.get("pages"):
                exact = False  # a size the query asks for: the provider may serve fewer
            if known is not None and size:
                extra = int(
                    isinstance(pager, OffsetPaginator | PageNumberPaginator)
                    and not pager.total_path
                    and not getattr(pager, "total_pages_path", "")
                )  # without a total, an empty page confirms the end
                rate = _daily_rate(spec, seen, known, client) if spec.date_range else None
                if rate is not None:
                    exact = False  # records per day from the last run: an estimate
                    per_window = [max(1, math.ceil(rate * _days(w) / size)) + extra for w in dated]
                    pages = max(per_window, default=1)
                else:
                    per_sequence = known / max(parents * len(dated), 1)
                    pages = max(1, math.ceil(per_sequence / size)) + extra
            else:
                exact = False
        n = parents * (sum(per_window) if per_window is not None else len(dated) * pages)
        sequences_of[name] = counts.get(name, parents)
        rows.append(
            {
                "resource": name,
                "parents": parents,
                "windows": len(dated),
                "pages_per_sequence": pages,
                "requests": n,
            }
        )
        for i, window in enumerate(dated):
            params = dict(spec.params)
            if window is not None and spec.date_range is not None:
                params.update(spec.date_range.params(window))
            w_pages = per_window[i] if per_window is not None else pages
            planned.append(PlannedRequest(name, spec.path, params, w_pages * parents))
    total = sum(r["requests"] for r in rows)
    return RequestPlan(
        rows=rows,
        requests=planned,
        total_requests=total,
        seconds=client.budget.seconds_for(total),
        exact=exact,
    )
