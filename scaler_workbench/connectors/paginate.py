"""Paginators: small stateful objects that walk a resource page by page.

The client owns the loop; a paginator only reads pages and edits the next request::

    paginator.init_request(request)            # page one
    while True:
        response = send(request)
        paginator.update_state(response, records)
        if not paginator.has_next_page:
            break
        paginator.update_request(request)      # page two, three, ...

==============  ==================================  =============================================
type            class                               next page from
==============  ==================================  =============================================
``offset``      :class:`OffsetPaginator`            ``offset += limit``; stops at ``total``/empty
``page_number`` :class:`PageNumberPaginator`        ``page += 1``; stops at total pages/empty
``cursor``      :class:`CursorPaginator`            a token in the body sent back as a parameter
``next_url``    :class:`NextUrlPaginator`           a URL in the body (JSON path or XML XPath)
``link_header`` :class:`LinkHeaderPaginator`        the RFC 5988 ``Link: <...>; rel="next"`` header
``relay``       :class:`RelayPaginator`             GraphQL ``pageInfo``: ``endCursor`` as ``after``
                                                    (or ``startCursor`` as ``before``)
``none``        :class:`SinglePagePaginator`        nothing: one request
==============  ==================================  =============================================

Every paginator refuses an impossible option mix in ``__init__`` (:class:`ProfileError`, a
``ValueError``), and raises :class:`PaginationError` when the provider sends the same cursor or
URL twice (the loop guard) or more than ``max_pages`` pages. ``reported_total`` holds the record
count the provider announced (``total_path``), for the completeness report.
"""

from __future__ import annotations

import copy
import inspect
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

from scaler_workbench._profile_schema import did_you_mean
from scaler_workbench._secrets import get_logger, redact_url
from scaler_workbench.connectors._body import find_value
from scaler_workbench.connectors._util import construct
from scaler_workbench.exceptions import PaginationError, ProfileError

__all__ = [
    "PAGINATORS",
    "CursorPaginator",
    "LinkHeaderPaginator",
    "NextUrlPaginator",
    "OffsetPaginator",
    "PageNumberPaginator",
    "PageRequest",
    "PageResponse",
    "Paginator",
    "RelayPaginator",
    "SinglePagePaginator",
    "make_paginator",
    "parse_link_header",
    "register_paginator",
]

log = get_logger(__name__)


@dataclass
class PageRequest:
    """The next request to send: paginators edit ``url``, ``params`` and ``json``.

    ``url`` is absolute once the client has prepared it; ``base_url`` is the API root.
    """

    url: str
    params: dict[str, Any] = field(default_factory=dict)
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    json: Any = None
    base_url: str = ""
    #: a text body (``body = "..."`` templates: form, XML); sent instead of ``json`` when set
    data: str | None = None


@dataclass
class PageResponse:
    """What a paginator sees of a response: decoded body, headers, final URL."""

    url: str
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    namespaces: Mapping[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        lname = name.lower()
        for k, v in self.headers.items():
            if k.lower() == lname:
                return v
        return None


_LINK = re.compile(r"<([^>]*)>\s*((?:;\s*[^;,]+)*)")


def parse_link_header(value: str | None) -> dict[str, str]:
    """Parse an RFC 5988 ``Link`` header into ``{rel: url}`` (first URL per rel wins)."""
    links: dict[str, str] = {}
    if not value:
        return links
    for m in _LINK.finditer(value):
        url, params = m.group(1).strip(), m.group(2)
        rel = re.search(r';\s*rel\s*=\s*"?([^";]+)"?', params)
        if rel:
            for r in rel.group(1).split():
                links.setdefault(r.lower(), url)
    return links


def _fail(message: str, key: str, hint: str = "") -> ProfileError:
    return ProfileError(message, key=f"paginator.{key}", hint=hint or "See docs/connectors.md.")


class Paginator:
    """Base class: override :meth:`update_state` and :meth:`update_request`.

    Parameters
    ----------
    total_path : str, optional
        Path of the provider's record count in the body, read for the completeness report
        (and used to stop by :class:`OffsetPaginator`).
    max_pages : int, optional
        Raise :class:`PaginationError` beyond this many pages (a guard against endless APIs).
    """

    #: the ``type`` name in profiles (set by subclasses)
    type: str = ""

    def __init__(self, *, total_path: str = "", max_pages: int | None = None) -> None:
        if max_pages is not None and max_pages < 1:
            raise _fail(f"max_pages must be >= 1, got {max_pages}", "max_pages")
        self.total_path = total_path
        self.max_pages = max_pages
        self.reset()

    # -- lifecycle ------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget all state: ready for a new sequence of pages."""
        self._has_next_page = True
        self._seen: set[str] = set()
        self.pages = 0
        self.reported_total: int | None = None

    def fresh(self) -> Paginator:
        """A reset copy with the same options (one per sequence of pages)."""
        clone = copy.copy(self)
        clone.reset()
        return clone

    @property
    def has_next_page(self) -> bool:
        return self._has_next_page

    # -- the four steps -------------------------------------------------------------------
    def init_request(self, request: PageRequest) -> None:
        """Prepare the first request."""

    def update_state(self, response: PageResponse, records: list[dict[str, Any]]) -> None:
        """Read a response; set ``has_next_page`` (subclasses call ``super()`` first)."""
        self.pages += 1
        if self.max_pages is not None and self.pages > self.max_pages:
            raise PaginationError(f"more than max_pages={self.max_pages} pages", url=response.url)
        if self.total_path:
            total = find_value(response.body, self.total_path, namespaces=response.namespaces)
            if total is not None:
                try:
                    self.reported_total = int(total)
                except (TypeError, ValueError):
                    log.warning("total_path %r is not a number: %r", self.total_path, total)

    def update_request(self, request: PageRequest) -> None:
        """Edit ``request`` into the next page's request."""

    # -- helpers --------------------------------------------------------------------------
    def _guard(self, value: str, url: str) -> None:
        """The loop guard: the same cursor/URL twice means the provider is looping."""
        if value in self._seen:
            raise PaginationError(
                f"{self}: the provider sent {redact_url(value)!r} a second time (a loop)",
                url=url,
                hint="The API repeats itself; check the paginator type with probe_pagination().",
            )
        self._seen.add(value)

    def _options(self) -> dict[str, Any]:
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {n: getattr(self, n) for n in names if hasattr(self, n)}

    def __str__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self._options().items() if v not in ("", None))
        return f"{type(self).__name__}({opts})"

    __repr__ = __str__


class SinglePagePaginator(Paginator):
    """No pagination: one request per sequence."""

    type = "none"

    def update_state(self, response: PageResponse, records: list[dict[str, Any]]) -> None:
        super().update_state(response, records)
        self._has_next_page = False


class _RangePaginator(Paginator):
    """Shared logic of offset and page-number paging: a number in a query parameter."""

    def __init__(
        self,
        *,
        param: str,
        start: int,
        step: int,
        size_param: str = "",
        size: int | None = None,
        stop_after_empty_page: bool = True,
        total_path: str = "",
        max_pages: int | None = None,
    ) -> None:
        self._param, self._start, self._step = param, start, step
        self._size_param, self._size = size_param, size
        self.stop_after_empty_page = stop_after_empty_page
        super().__init__(total_path=total_path, max_pages=max_pages)

    def reset(self) -> None:
        super().reset()
        self.current = self._start

    def init_request(self, request: PageRequest) -> None:
        self.current = self._start
        request.params[self._param] = self.current
        if self._size_param and self._size is not None:
            request.params[self._size_param] = self._size

    def _reached_end(self, records: list[dict[str, Any]]) -> bool:
        return False

    def update_state(self, response: PageResponse, records: list[dict[str, Any]]) -> None:
        super().update_state(response, records)
        if (self.stop_after_empty_page and not records) or self._reached_end(records):
            self._has_next_page = False
            return
        self.current += self._step

    def update_request(self, request: PageRequest) -> None:
        request.params[self._param] = self.current


class OffsetPaginator(_RangePaginator):
    """``?offset=0&limit=100``, then ``offset=100`` ...

    Parameters
    ----------
    limit : int
        Records per page (sent as ``limit_param``).
    offset_param, limit_param : str
        Query parameter names (default ``offset`` and ``limit``).
    offset : int
        The first offset (default 0).
    total_path : str
        Path of the total record count; paging stops once ``offset >= total``.
    stop_after_empty_page : bool
        Stop at the first page without records (default true). One of this or
        ``total_path`` is required, or the paginator could never stop.
    stop_on_short_page : bool
        Also stop when a page has fewer than ``limit`` records (default false: some APIs cap
        the page size below the limit asked for, and stopping then would lose data).
    """

    type = "offset"

    def __init__(
        self,
        limit: int = 100,
        *,
        offset_param: str = "offset",
        limit_param: str = "limit",
        offset: int = 0,
        total_path: str = "",
        stop_after_empty_page: bool = True,
        stop_on_short_page: bool = False,
        max_pages: int | None = None,
    ) -> None:
        if not isinstance(limit, int) or limit < 1:
            raise _fail(f"limit must be a positive integer, got {limit!r}", "limit")
        if not total_path and not stop_after_empty_page:
            raise _fail(
                "offset paging without total_path and with stop_after_empty_page = false "
                "could never stop",
                "stop_after_empty_page",
                hint="Set total_path (the record count in the body) or stop_after_empty_page.",
            )
        if not offset_param or not limit_param:
            raise _fail("offset_param and limit_param must be non-empty", "offset_param")
        self.limit, self.offset_param, self.limit_param, self.offset = (
            limit,
            offset_param,
            limit_param,
            offset,
        )
        self.stop_on_short_page = stop_on_short_page
        super().__init__(
            param=offset_param,
            start=offset,
            step=limit,
            size_param=limit_param,
            size=limit,
            stop_after_empty_page=stop_after_empty_page,
            total_path=total_path,
            max_pages=max_pages,
        )

    def _reached_end(self, records: list[dict[str, Any]]) -> bool:
        if self.stop_on_short_page and len(records) < self.limit:
            return True
        return self.reported_total is not None and self.current + self.limit >= self.reported_total


class PageNumberPaginator(_RangePaginator):
    """``?page=1``, then ``page=2`` ...

    Parameters
    ----------
    page_param : str
        Query parameter of the page number (default ``page``).
    base_page : int
        Number of the first page (default 1; some APIs count from 0).
    page_size, page_size_param : int, str
        Optional page size to request.
    total_pages_path : str
        Path of the number of pages in the body; paging stops after that page.
    total_path : str
        Path of the record count (completeness report only).
    stop_after_empty_page : bool
        Stop at the first empty page (default true). Needed unless ``total_pages_path`` is set.
    """

    type = "page_number"

    def __init__(
        self,
        *,
        page_param: str = "page",
        base_page: int = 1,
        page_size: int | None = None,
        page_size_param: str = "",
        total_pages_path: str = "",
        total_path: str = "",
        stop_after_empty_page: bool = True,
        max_pages: int | None = None,
    ) -> None:
        if not total_pages_path and not stop_after_empty_page:
            raise _fail(
                "page_number paging needs total_pages_path or stop_after_empty_page = true",
                "stop_after_empty_page",
            )
        if page_size is not None and not page_size_param:
            raise _fail("page_size needs page_size_param (the parameter name)", "page_size_param")
        if page_size is not None and page_size < 1:
            raise _fail(f"page_size must be positive, got {page_size}", "page_size")
        self.page_param, self.base_page = page_param, base_page
        self.page_size, self.page_size_param = page_size, page_size_param
        self.total_pages_path = total_pages_path
        self.total_pages: int | None = None
        super().__init__(
            param=page_param,
            start=base_page,
            step=1,
            size_param=page_size_param,
            size=page_size,
            stop_after_empty_page=stop_after_empty_page,
            total_path=total_path,
            max_pages=max_pages,
        )

    def update_state(self, response: PageResponse, records: list[dict[str, Any]]) -> None:
        if self.total_pages_path:
            value = find_value(response.body, self.total_pages_path, namespaces=response.namespaces)
            self.total_pages = int(value) if value not in (None, "") else None
        super().update_state(response, records)

    def _reached_end(self, records: list[dict[str, Any]]) -> bool:
        if self.total_pages is not None:
            return self.current - self.base_page + 1 >= self.total_pages
        if self.reported_total is not None and self.page_size:
            return (self.current - self.base_page + 1) * self.page_size >= self.reported_total
        return False


class CursorPaginator(Paginator):
    """A token in the body (``next_cursor``), sent back as a query parameter.

    Parameters
    ----------
    cursor_path : str
        Path of the next token in the body (JSON dotted path or XML XPath).
    cursor_param : str
        Query parameter that carries the token on the next request (default ``cursor``).
    cursor_in : {"query", "body"}
        ``body``: the token goes only into the request body's ``{cursor}`` placeholder.
    has_more_path : str, optional
        Path of a boolean "more pages" flag; when false, paging stops even if a token came.
    stop_after_empty_page : bool
        Stop at the first empty page even if a token came (default false).
    """

    type = "cursor"

    def __init__(
        self,
        cursor_path: str = "next_cursor",
        *,
        cursor_param: str = "cursor",
        cursor_in: str = "query",
        has_more_path: str = "",
        stop_after_empty_page: bool = False,
        total_path: str = "",
        max_pages: int | None = None,
    ) -> None:
        if not cursor_path or not cursor_param:
            raise _fail("cursor paging needs cursor_path and cursor_param", "cursor_path")
        if cursor_in not in ("query", "body"):
            raise _fail(f"cursor_in must be 'query' or 'body', got {cursor_in!r}", "cursor_in")
        self.cursor_in = cursor_in
        self.cursor_path, self.cursor_param = cursor_path, cursor_param
        self.has_more_path = has_more_path
        self.stop_after_empty_page = stop_after_empty_page
        super().__init__(total_path=total_path, max_pages=max_pages)

    def reset(self) -> None:
        super().reset()
        self.cursor: str | None = None

    def update_state(self, response: PageResponse, records: list[dict[str, Any]]) -> None:
        super().update_state(response, records)
        token = find_value(response.body, self.cursor_path, namespaces=response.namespaces)
        more = True
        if self.has_more_path:
            flag = find_value(response.body, self.has_more_path, namespaces=response.namespaces)
            more = str(flag).lower() in ("true", "1", "yes")
        if token in (None, "") or not more or (self.stop_after_empty_page and not records):
            self._has_next_page = False
            self.cursor = None
            return
        self._guard(f"cursor:{token}", response.url)
        self.cursor = str(token)

    def update_request(self, request: PageRequest) -> None:
        if self.cursor_in == "query":  # "body": only a body template's {cursor} carries it
            request.params[self.cursor_param] = self.cursor


class RelayPaginator(Paginator):
    """A GraphQL Relay connection: ``pageInfo`` says if there is more and where to go on.

    Forward (``first``/``after``): while ``pageInfo.hasNextPage``, the next request carries
    ``endCursor`` as the ``after`` variable. Backward (``last``/``before``): while
    ``hasPreviousPage``, ``startCursor`` as ``before``. The cursor is written into the
    GraphQL ``variables`` of the request body (``json.variables``), and is the ``{cursor}`` of
    body templates.

    Parameters
    ----------
    page_info_path : str
        Path of the ``pageInfo`` object in the body (e.g.
        ``data.viewer.home.consumption.pageInfo``).
    direction : {"forward", "backward"}
    cursor_variable : str, optional
        Variable that carries the cursor (default ``after`` forward, ``before`` backward).
    page_size : int, optional
        Sent as ``size_variable`` on every request (leave unset when ``variables`` has it).
    size_variable : str, optional
        Default ``first`` forward, ``last`` backward.
    """

    type = "relay"

    def __init__(
        self,
        page_info_path: str = "pageInfo",
        *,
        direction: str = "forward",
        cursor_variable: str = "",
        page_size: int | None = None,
        size_variable: str = "",
        total_path: str = "",
        max_pages: int | None = None,
    ) -> None:
        if direction not in ("forward", "backward"):
            raise _fail(
                f"relay direction must be 'forward' or 'backward', got {direction!r}", "direction"
            )
        if not page_info_path:
            raise _fail("relay paging needs page_info_path", "page_info_path")
        if page_size is not None and page_size < 1:
            raise _fail(f"page_size must be >= 1, got {page_size}", "page_size")
        forward = direction == "forward"
        self.page_info_path, self.direction = page_info_path, direction
        self.cursor_variable = cursor_variable or ("after" if forward else "before")
        self.size_variable = size_variable or ("first" if forward else "last")
        self.page_size = page_size
        super().__init__(total_path=total_path, max_pages=max_pages)

    def reset(self) -> None:
        super().reset()
        self.cursor: str | None = None

    @staticmethod
    def _variables(request: PageRequest) -> dict[str, Any] | None:
        body = request.json
        if isinstance(body, dict):
            if not isinstance(body.get("variables"), dict):
                body["variables"] = {}
            return body["variables"]
        return None

    def init_request(self, request: PageRequest) -> None:
        variables = self._variables(request)
        if variables is not None and self.page_size is not None:
            variables[self.size_variable] = self.page_size

    def update_state(self, response: PageResponse, records: list[dict[str, Any]]) -> None:
        super().update_state(response, records)
        info = find_value(response.body, self.page_info_path)
        if not isinstance(info, Mapping):
            raise PaginationError(
                f"{self}: no pageInfo at {self.page_info_path!r} in the response",
                url=response.url,
                hint="Select pageInfo in the query and give its path as page_info_path.",
            )
        forward = self.direction == "forward"
        more = info.get("hasNextPage" if forward else "hasPreviousPage")
        token = info.get("endCursor" if forward else "startCursor")
        if more is not True or token in (None, ""):
            self._has_next_page = False
            self.cursor = None
            return
        self._guard(f"cursor:{token}", response.url)
        self.cursor = str(token)

    def update_request(self, request: PageRequest) -> None:
        variables = self._variables(request)
        if variables is not None:
            variables[self.cursor_variable] = self.cursor
            if self.page_size is not None:
                variables[self.size_variable] = self.page_size


class _UrlPaginator(Paginator):
    """Next page = a URL; query parameters of the first request are dropped (the URL has them)."""

    def reset(self) -> None:
        super().reset()
        self.next_url: str | None = None

    def _next_link(self, response: PageResponse) -> str | None:
        raise NotImplementedError

    def _resolve(self, link: str, response: PageResponse) -> str:
        return urljoin(response.url, link)

    def update_state(self, response: PageResponse, records: list[dict[str, Any]]) -> None:
        super().update_state(response, records)
        link = self._next_link(response)
        if not link:
            self._has_next_page = False
            self.next_url = None
            return
        url = self._resolve(str(link).strip(), response)
        if not self._seen:
            self._seen.add(response.url)
        self._guard(url, response.url)
        self.next_url = url

    def update_request(self, request: PageRequest) -> None:
        assert self.next_url is not None
        request.url = self.next_url
        request.params = {}


class NextUrlPaginator(_UrlPaginator):
    """A next-page URL in the body: ``{"links": {"next": "..."}}`` or an XML link element.

    Parameters
    ----------
    next_url_path : str
        Path of the URL (JSON dotted path, or XPath such as ``atom:link[@rel='next']/@href``).
    relative_to : {"request", "api_root"}
        How to resolve a relative URL: against the URL of the page that contained it
        (default, as browsers do), or against the API root (``/meters?page=2`` then means
        ``<base_url>/meters?page=2``). Absolute URLs are used as given.
    """

    type = "next_url"

    def __init__(
        self,
        next_url_path: str = "next",
        *,
        relative_to: str = "request",
        total_path: str = "",
        max_pages: int | None = None,
    ) -> None:
        if relative_to not in ("request", "api_root"):
            raise _fail(
                f"relative_to must be 'request' or 'api_root', got {relative_to!r}", "relative_to"
            )
        if not next_url_path:
            raise _fail("next_url paging needs next_url_path", "next_url_path")
        self.next_url_path, self.relative_to = next_url_path, relative_to
        self._base_url = ""
        super().__init__(total_path=total_path, max_pages=max_pages)

    def init_request(self, request: PageRequest) -> None:
        self._base_url = request.base_url

    def _next_link(self, response: PageResponse) -> str | None:
        value = find_value(response.body, self.next_url_path, namespaces=response.namespaces)
        return str(value) if value else None

    def _resolve(self, link: str, response: PageResponse) -> str:
        if self.relative_to == "api_root" and self._base_url and "://" not in link:
            return self._base_url.rstrip("/") + "/" + link.lstrip("/")
        return urljoin(response.url, link)


class LinkHeaderPaginator(_UrlPaginator):
    """The RFC 5988 ``Link`` header (GitHub style): ``<https://...&page=2>; rel="next"``.

    Parameters
    ----------
    rel : str
        The relation to follow (default ``next``).
    """

    type = "link_header"

    def __init__(
        self, rel: str = "next", *, total_path: str = "", max_pages: int | None = None
    ) -> None:
        self.rel = rel.lower()
        super().__init__(total_path=total_path, max_pages=max_pages)

    def _next_link(self, response: PageResponse) -> str | None:
        return parse_link_header(response.header("Link")).get(self.rel)


#: profile ``type`` -> paginator class
PAGINATORS: dict[str, type[Paginator]] = {
    "cursor": CursorPaginator,
    "link_header": LinkHeaderPaginator,
    "next_url": NextUrlPaginator,
    "none": SinglePagePaginator,
    "offset": OffsetPaginator,
    "page_number": PageNumberPaginator,
    "relay": RelayPaginator,
}
_ALIASES = {
    "single_page": "none",
    "page": "page_number",
    "header_link": "link_header",
    "link": "link_header",
    "json_link": "next_url",
}


def register_paginator(name: str, cls: type[Paginator]) -> None:
    """Make ``cls`` available as ``type = name`` in profiles."""
    if not (isinstance(cls, type) and issubclass(cls, Paginator)):
        raise TypeError(f"{cls!r} is not a Paginator subclass")
    PAGINATORS[name] = cls


def make_paginator(
    spec: str | Mapping[str, Any] | Paginator | None, *, key: str = "paginator"
) -> Paginator:
    """Build a paginator from a name, a profile table (with ``type``) or an instance.

    ``None`` gives :class:`SinglePagePaginator`. An instance is returned as a fresh copy.

    Parameters
    ----------
    spec : str, dict, Paginator or None
        A registered type name (:data:`PAGINATORS`), a ``[paginator]`` table with ``type``,
        or an instance.
    key : str
        Profile key named in errors (default ``paginator``).

    Returns
    -------
    Paginator
        A new paginator (no state shared with ``spec``).

    Raises
    ------
    ProfileError
        Unknown ``type`` (the message lists the known ones) or options the class does not take.
    """
    if spec is None:
        return SinglePagePaginator()
    if isinstance(spec, Paginator):
        return spec.fresh()
    if isinstance(spec, str):
        spec = {"type": spec}
    if not isinstance(spec, Mapping):
        raise ProfileError(f"{key} must be a name or a table, got {type(spec).__name__}", key=key)
    options = dict(spec)
    name = str(options.pop("type", ""))
    name = _ALIASES.get(name, name)
    cls = PAGINATORS.get(name)
    if cls is None:
        raise ProfileError(
            f"unknown paginator type {name!r}{did_you_mean(name, [*PAGINATORS, *_ALIASES])}",
            key=f"{key}.type",
            hint=f"Known types: {', '.join(sorted(PAGINATORS))}.",
        )
    return construct(cls, options, key)
