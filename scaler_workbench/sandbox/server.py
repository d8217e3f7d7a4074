"""The sandbox HTTP server: a configurable provider API over real loopback HTTP.

See :mod:`scaler_workbench.sandbox` for the manual (options, endpoints, faults). This module holds
the machinery: :class:`Sandbox` (options, auth, pagination, date filters, faults, XML, request
log, lifetime), the flavour hook (:class:`Flavour`, :func:`register_flavour`, :class:`Route`,
:class:`Request`, :class:`Response`) and the default flavour that serves ``/api/v1``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import email.utils
import importlib
import json
import math
import re
import secrets
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, NamedTuple, cast
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit
from xml.sax.saxutils import escape, quoteattr
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from scaler_workbench._secrets import SECRET_PARAM_NAMES, get_logger
from scaler_workbench.clock import Clock, SystemClock
from scaler_workbench.exceptions import SandboxError
from scaler_workbench.sandbox.generate import (
    HALF_HOUR,
    BillSeries,
    IntervalSeries,
    RegisterSeries,
    SandboxData,
    get_sandbox_data,
)

__all__ = [
    "AUTH_MODES",
    "DATE_FORMATS",
    "INJECTED_FAULTS",
    "NEXT_URL_STYLES",
    "PAGINATORS",
    "XML_META_NS",
    "XML_NS",
    "DefaultFlavour",
    "Faults",
    "Flavour",
    "HTTPProblem",
    "Request",
    "RequestRecord",
    "Response",
    "Route",
    "Sandbox",
    "SandboxCredentials",
    "error_response",
    "json_response",
    "register_flavour",
]

logger = get_logger(__name__)

AUTH_MODES = (
    "api_key",
    "api_key_query",
    "basic",
    "basic_key",
    "bearer",
    "oauth2_client_credentials",
    "oauth2_password",
    "oauth2_authorization_code",
    "none",
)
PAGINATORS = ("offset", "page", "cursor", "next_url", "link_header", "none")
NEXT_URL_STYLES = ("absolute", "path", "api_root", "relative")
DATE_FORMATS = ("any", "date", "datetime", "epoch")
CLIENT_AUTH = ("any", "basic", "body")
#: default namespace of XML bodies
XML_NS = "urn:scaler-workbench:sandbox"
#: namespace (prefix ``meta``) of the pagination block in XML bodies
XML_META_NS = "urn:scaler-workbench:sandbox:meta"

_DEFAULT_PARAMS = {
    "offset": "offset",
    "limit": "limit",
    "page": "page",
    "per_page": "per_page",
    "cursor": "cursor",
    "from": "from",
    "to": "to",
}
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_EPOCH_RE = re.compile(r"^-?\d+(\.\d+)?$")


# --------------------------------------------------------------------------------------------
# requests, responses, routes


class HTTPProblem(Exception):
    """Raised inside a handler to answer with a JSON error (control flow, never escapes).

    Parameters
    ----------
    status : int
        HTTP status.
    error : str
        Machine-readable code, the body's ``error`` field.
    message : str
        Human-readable ``message``.
    headers : dict, optional
        Extra response headers.
    **extra
        More body fields.
    """

    def __init__(
        self,
        status: int,
        error: str,
        message: str = "",
        *,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(f"{status} {error}: {message}")
        self.status, self.error, self.message = status, error, message
        self.headers = dict(headers or {})
        self.extra = extra

    def response(self) -> Response:
        return error_response(
            self.status, self.error, self.message, headers=self.headers, **self.extra
        )


@dataclass
class Request:
    """One incoming request, as handlers see it.

    ``query`` keeps the last value of each parameter; ``params`` holds the route's path
    parameters; ``target`` is the raw path with its query string.
    """

    method: str
    path: str
    target: str
    query: dict[str, str]
    headers: Mapping[str, str]
    body: bytes
    sandbox: Sandbox
    params: dict[str, str] = field(default_factory=dict)

    def form(self) -> dict[str, str]:
        """The body decoded as ``application/x-www-form-urlencoded``."""
        try:
            return dict(parse_qsl(self.body.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            raise HTTPProblem(400, "invalid_request", "body is not UTF-8") from None


@dataclass
class Response:
    """What a handler returns: status, body bytes, headers and content type."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    #: ``""`` (answer normally), ``"reset"`` (close the connection without an answer) or
    #: ``"truncate"`` (announce the whole body, send half of it, close): injected faults
    transport: str = ""


def json_response(
    obj: Any, status: int = 200, *, headers: Mapping[str, str] | None = None
) -> Response:
    """A JSON response (compact separators)."""
    body = json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()
    return Response(status=status, body=body, headers=dict(headers or {}))


def error_response(
    status: int,
    error: str,
    message: str = "",
    *,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> Response:
    """A JSON error body ``{"error": ..., "message": ..., **extra}`` (also in XML mode)."""
    return json_response({"error": error, "message": message, **extra}, status, headers=headers)


Handler = Callable[[Request], Response]


@dataclass
class Route:
    """A route: ``pattern`` like ``/sites/{site_id}/meters`` relative to the flavour's
    ``api_root`` (or absolute with ``absolute=True``). ``{name}`` matches one path segment,
    ``{name:path}`` the rest of the path (slashes included); ``method="*"`` matches any method,
    so ``Route("*", "/{rest:path}", handler)`` mounts a whole provider behind one handler.
    ``auth=False`` skips the sandbox's authentication (the handler does its own) and
    ``faults=False`` skips fault injection."""

    method: str
    pattern: str
    handler: Handler
    auth: bool = True
    faults: bool = True
    absolute: bool = False
    regex: re.Pattern[str] = field(init=False, repr=False)

    def compile(self, api_root: str) -> None:
        full = self.pattern if self.absolute else api_root.rstrip("/") + self.pattern
        parts = re.split(r"\{(\w+(?::path)?)\}", full)
        rx = "".join(
            re.escape(p)
            if n % 2 == 0
            else f"(?P<{p[:-5]}>.*)"
            if p.endswith(":path")
            else f"(?P<{p}>[^/]+)"
            for n, p in enumerate(parts)
        )
        self.regex = re.compile(f"^{rx}/?$")


class RequestRecord(NamedTuple):
    """One entry of :attr:`Sandbox.request_log` (secret query parameters masked)."""

    method: str
    path: str
    query: dict[str, str]
    status: int


# --------------------------------------------------------------------------------------------
# flavours


class Flavour:
    """A provider "flavour": the routes (and defaults) one simulated provider serves.

    Subclass it, list routes in :meth:`routes`, and register a factory with
    :func:`register_flavour` at import time of ``scaler_workbench.sandbox.<name>``;
    ``Sandbox(flavour="<name>")`` imports that module on first use. Handlers get a
    :class:`Request` and return a :class:`Response`; they may use the sandbox's helpers:
    :meth:`Sandbox.list_response` (pagination + JSON/XML), :meth:`Sandbox.time_window`
    (date filters, span limit), :attr:`Sandbox.data`, :attr:`Sandbox.as_of_epoch`,
    :meth:`Sandbox.is_removed`.

    Class attributes
    ----------------
    name : str
        Registry name.
    api_root : str
        Path prefix of :meth:`routes` and of :attr:`Sandbox.url` (default ``/api/v1``).
    oauth_root : str
        Path prefix of ``/authorize`` and ``/token`` (default ``/oauth``).
    defaults : dict
        Defaults for the ``Sandbox`` options ``auth``, ``paginator``, ``envelope`` and
        ``page_size`` when the caller does not pass them.
    """

    name: ClassVar[str] = "default"
    api_root: ClassVar[str] = "/api/v1"
    oauth_root: ClassVar[str] = "/oauth"
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, sandbox: Sandbox, **options: Any) -> None:
        self.sandbox = sandbox
        self.data = sandbox.data
        self.options = options

    def routes(self) -> Iterable[Route]:
        """The routes this flavour serves."""
        return ()

    def env(self) -> dict[str, str]:
        """Extra environment variables for :meth:`Sandbox.env` (e.g. a flavour's own URL)."""
        return {}


FlavourFactory = Callable[..., Flavour]
_FLAVOURS: dict[str, FlavourFactory] = {}


def register_flavour(name: str, factory: FlavourFactory) -> None:
    """Register ``factory(sandbox, **flavour_options) -> Flavour`` under ``name``."""
    _FLAVOURS[name] = factory


def _resolve_flavour(flavour: str | FlavourFactory) -> FlavourFactory:
    if not isinstance(flavour, str):
        return flavour
    if flavour not in _FLAVOURS:
        try:
            importlib.import_module(f"scaler_workbench.sandbox.{flavour}")
        except ImportError as exc:
            raise SandboxError(
                f"unknown sandbox flavour {flavour!r}",
                hint=f"Use one of {sorted(_FLAVOURS)} or add scaler_workbench/sandbox/"
                f"{flavour}.py calling register_flavour({flavour!r}, ...).",
            ) from exc
    if flavour not in _FLAVOURS:
        raise SandboxError(
            f"module scaler_workbench.sandbox.{flavour} did not register flavour {flavour!r}",
            hint="Call register_flavour(name, factory) at the module's top level.",
        )
    return _FLAVOURS[flavour]


# --------------------------------------------------------------------------------------------
# faults and credentials


@dataclass
class Faults:
    """Injected faults; mutable at runtime (``sb.faults.every_nth_429 = 3``).

    Attributes
    ----------
    every_nth_429 : int or None
        Every n-th API request (counted since the last :meth:`Sandbox.set_faults`) gets 429
        with ``Retry-After``.
    retry_after : float
        The ``Retry-After`` value. [s]
    retry_after_format : str
        ``"seconds"`` (an integer) or ``"http-date"`` (clock ``now()`` + ``retry_after``).
    every_nth_503 : int or None
        Every n-th API request gets 503 (``{"error": "service_unavailable"}``).
    slow_seconds : float
        Real sleep before answering each API request. [s]
    quota_after : int or None
        After this many API requests, 429 without ``Retry-After`` and
        ``{"error": "daily_quota_exceeded"}`` until :meth:`Sandbox.reset_quota`.
    fail_paths : dict
        regex -> status: requests whose path-with-query matches (``re.search``) always fail.
    """

    every_nth_429: int | None = None
    retry_after: float = 1
    retry_after_format: str = "seconds"
    every_nth_503: int | None = None
    slow_seconds: float = 0.0
    quota_after: int | None = None
    fail_paths: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class SandboxCredentials:
    """The instance's credentials (random per instance). ``repr`` never shows them."""

    api_key: str
    username: str
    password: str
    token: str
    client_id: str
    client_secret: str

    @classmethod
    def random(cls) -> SandboxCredentials:
        return cls(
            api_key="sk_sbx_" + secrets.token_hex(16),
            username="analyst_" + secrets.token_hex(3),
            password="pw_" + secrets.token_urlsafe(12),
            token="tok_" + secrets.token_urlsafe(24),
            client_id="client_" + secrets.token_hex(6),
            client_secret="cs_" + secrets.token_urlsafe(24),
        )

    def __repr__(self) -> str:
        return "SandboxCredentials(***)"


@dataclass
class _Token:
    client_id: str
    issued: float
    uses: int = 0
    revoked: bool = False


# --------------------------------------------------------------------------------------------
# the HTTP plumbing


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = False
    sandbox: Sandbox

    def __init__(self, address: tuple[str, int], sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.connections: set[socket.socket] = set()
        self.conn_lock = threading.Lock()
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 120  # idle keep-alive connections are closed after this [s]

    def setup(self) -> None:
        super().setup()
        with contextlib.suppress(OSError):  # small responses must not wait for delayed ACKs
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.conn_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        with self.server.conn_lock:
            self.server.connections.discard(self.connection)

    def _handle(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        body = self.rfile.read(length) if length > 0 else b""
        headers = cast(Mapping[str, str], self.headers)  # email.message.Message: .get() only
        resp = self.server.sandbox._dispatch(self.command, self.path, headers, body)
        if resp.transport == "reset":
            self.close_connection = True
            with contextlib.suppress(OSError):  # RST on close: the peer sees a reset
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
            return
        self.send_response(resp.status)
        for key, value in resp.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(len(resp.body)))
        # headers and body in one write (end_headers() would flush the headers alone)
        buffer: list[bytes] = getattr(self, "_headers_buffer", [])
        buffer.append(b"\r\n")
        if resp.transport == "truncate":
            self.close_connection = True
            buffer.append(resp.body[: len(resp.body) // 2])
        elif self.command != "HEAD":
            buffer.append(resp.body)
        self.wfile.write(b"".join(buffer))
        buffer.clear()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("sandbox: " + format, *args)


# --------------------------------------------------------------------------------------------
# the sandbox


#: fault kinds of :meth:`Sandbox.inject_fault`
INJECTED_FAULTS = (
    "503",
    "html",
    "invalid_json",
    "empty_page",
    "short_page",
    "duplicate",
    "truncated",
    "reset",
)
#: kinds that also hit every retry of the request they hit first
_STICKY_FAULTS = frozenset({"503", "html", "invalid_json", "truncated", "reset"})


@dataclass
class _ArmedFault:
    kind: str
    at: int
    seen: int = 0
    target: str | None = None
    hits: int = 0


def _faulted(kind: str, resp: Response) -> Response:
    """``resp`` with an injected fault (``resp`` itself when the fault cannot change it)."""
    if kind == "503":
        return error_response(503, "service_unavailable", "injected: try again later")
    if kind == "html":
        html = b"<!DOCTYPE html><html><body><h1>Maintenance</h1></body></html>"
        return Response(body=html, content_type="text/html; charset=utf-8")
    if kind == "invalid_json":
        return Response(body=b'{"data": [ {"id": nope} ', content_type="application/json")
    if kind == "reset":
        return Response(transport="reset")
    if kind == "truncated":
        return Response(
            status=resp.status,
            body=resp.body,
            headers=dict(resp.headers),
            content_type=resp.content_type,
            transport="truncate",
        )
    if resp.status != 200 or "json" not in resp.content_type:
        return resp
    try:
        body = json.loads(resp.body)
    except ValueError:
        return resp
    records = body.get("data") if isinstance(body, dict) else body
    if not isinstance(records, list) or not records:
        return resp
    if kind == "empty_page":
        changed: list[Any] = []
    elif kind == "short_page":
        changed = records[:-1]
    else:  # duplicate
        changed = [*records, records[0]]
    new_body = {**body, "data": changed} if isinstance(body, dict) else changed
    return Response(
        status=resp.status,
        body=json.dumps(new_body, separators=(",", ":")).encode(),
        headers=dict(resp.headers),
        content_type=resp.content_type,
    )


def _to_epoch(value: datetime | date | str | float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise SandboxError(
                f"not an ISO 8601 instant: {value!r}",
                hint="Pass a tz-aware datetime or a string like '2024-04-01T00:00:00+01:00'.",
            ) from None
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    return datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp()


class Sandbox:
    """A local provider API on ``127.0.0.1`` (OS-chosen port) serving a :class:`SandboxData`.

    Every option is keyword-only; the manual (:mod:`scaler_workbench.sandbox`) explains them.

    Parameters
    ----------
    seed, sites, meters_per_site, start, end
        Portfolio options for :class:`SandboxData` (ignored when ``data`` is given).
    traps : bool or sequence of str
        Plant the data traps (``True``: all of :data:`~scaler_workbench.sandbox.generate.TRAPS`)
        as extra meters of the first site; :meth:`trap_facts` describes them. Default: none.
    data : SandboxData, optional
        A pre-built portfolio (shared read-only between instances).
    flavour : str or callable
        Registered flavour name (imported from ``scaler_workbench.sandbox.<name>`` on first
        use) or a factory ``(sandbox, **flavour_options) -> Flavour``.
    auth : str
        One of :data:`AUTH_MODES` (default ``api_key``).
    api_key_name : str
        Header (``api_key``; default ``X-API-Key``) or query parameter (``api_key_query``;
        default ``api_key``) carrying the key.
    auth_header : str
        Header carrying bearer / OAuth tokens (default ``Authorization``).
    bearer_format : str
        How the token is written in ``auth_header``, e.g. ``"Bearer {token}"``,
        ``"Token {token}"``.
    client_auth : str
        OAuth client authentication accepted at the token endpoint: ``any``, ``basic``
        (HTTP Basic client_id:client_secret) or ``body`` (form fields).
    token_ttl : float or None
        Access token lifetime on ``clock.monotonic()``; None = never. [s]
    token_max_uses : int or None
        Access tokens expire after this many API requests.
    paginator : str
        One of :data:`PAGINATORS` (default ``offset``).
    page_size, max_page_size : int
        Default page size and the server's maximum (larger requests are clamped).
    envelope : bool
        ``False``: bare JSON lists in ``none`` and ``link_header`` modes.
    next_url_style : str
        ``absolute``, ``path`` (``/api/v1/...``), ``api_root`` (``/meters/...``, relative to
        the API root) or ``relative`` (``intervals?offset=...``, relative to the request URL).
    param_names : dict
        Renames query parameters: keys ``offset, limit, page, per_page, cursor, from, to``.
    date_format : str
        Accepted ``from``/``to`` format: ``any`` (detect), ``date``, ``datetime``, ``epoch``.
    end_inclusive : bool
        ``to`` includes its day (date) or instant (datetime / epoch).
    max_span_days : float or None
        Larger date spans get 400 ``range_too_large``. [days]
    format : str
        ``json`` or ``xml``.
    as_of : datetime or str, optional
        Data after this instant is not served (see :meth:`set_as_of`).
    lifetime : float
        The server stops by itself after this long (real time). [s]
    host, port : str, int
        Bind address; port 0 lets the OS choose.
    clock : Clock, optional
        For token expiry and HTTP-date ``Retry-After`` (default the system clock).
    every_nth_429, retry_after, retry_after_format, every_nth_503, slow_seconds, quota_after,
    fail_paths
        Initial :class:`Faults`.
    summary_discrepancies : dict, optional
        ``{(meter_id, "YYYY-MM"): factor}``: ``GET /meters/{id}/summary`` reports that month's
        total multiplied by ``factor`` (a planted disagreement for reconciliation tests; see
        :meth:`plant_discrepancy`).
    flavour_options : dict, optional
        Passed to the flavour factory.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        sites: int = 6,
        meters_per_site: int = 3,
        start: date | str = "2024-01-01",
        end: date | str = "2024-07-01",
        traps: bool | Sequence[str] = False,
        data: SandboxData | None = None,
        flavour: str | FlavourFactory = "default",
        flavour_options: Mapping[str, Any] | None = None,
        auth: str | None = None,
        api_key_name: str | None = None,
        auth_header: str = "Authorization",
        bearer_format: str = "Bearer {token}",
        client_auth: str = "any",
        token_ttl: float | None = 3600.0,
        token_max_uses: int | None = None,
        paginator: str | None = None,
        page_size: int | None = None,
        max_page_size: int = 1000,
        envelope: bool | None = None,
        next_url_style: str = "absolute",
        param_names: Mapping[str, str] | None = None,
        date_format: str = "any",
        end_inclusive: bool = False,
        max_span_days: float | None = None,
        format: str = "json",
        as_of: datetime | date | str | None = None,
        lifetime: float = 1800.0,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Clock | None = None,
        every_nth_429: int | None = None,
        retry_after: float = 1,
        retry_after_format: str = "seconds",
        every_nth_503: int | None = None,
        slow_seconds: float = 0.0,
        quota_after: int | None = None,
        fail_paths: Mapping[str, int] | None = None,
        summary_discrepancies: Mapping[tuple[str, str], float] | None = None,
    ) -> None:
        if data is None:
            chosen = traps if isinstance(traps, bool) else tuple(traps)
            data = get_sandbox_data(
                seed, sites, meters_per_site, _day(start), _day(end), traps=chosen
            )
        self.data = data
        factory = _resolve_flavour(flavour)
        fdefaults: dict[str, Any] = dict(getattr(factory, "defaults", {}) or {})
        self.auth = auth or fdefaults.get("auth", "api_key")
        self.paginator = paginator or fdefaults.get("paginator", "offset")
        self.envelope = envelope if envelope is not None else fdefaults.get("envelope", True)
        self.page_size = int(page_size or fdefaults.get("page_size", 100))
        _check("auth", self.auth, AUTH_MODES)
        _check("paginator", self.paginator, PAGINATORS)
        _check("next_url_style", next_url_style, NEXT_URL_STYLES)
        _check("date_format", date_format, DATE_FORMATS)
        _check("client_auth", client_auth, CLIENT_AUTH)
        _check("format", format, ("json", "xml"))
        _check("retry_after_format", retry_after_format, ("seconds", "http-date"))
        if "{token}" not in bearer_format:
            raise SandboxError(
                f"bearer_format {bearer_format!r} lacks '{{token}}'",
                hint="Write it like 'Bearer {token}'.",
            )
        if self.page_size < 1 or max_page_size < 1:
            raise SandboxError("page sizes must be >= 1", hint="Pass page_size >= 1.")
        self.api_key_name = api_key_name or (
            "api_key" if self.auth == "api_key_query" else "X-API-Key"
        )
        self.auth_header = auth_header
        self.bearer_format = bearer_format
        self.client_auth = client_auth
        self.token_ttl = token_ttl
        self.token_max_uses = token_max_uses
        self.max_page_size = max_page_size
        self.next_url_style = next_url_style
        unknown = set(param_names or {}) - set(_DEFAULT_PARAMS)
        if unknown:
            raise SandboxError(
                f"unknown param_names keys {sorted(unknown)}",
                hint=f"Rename only {sorted(_DEFAULT_PARAMS)}.",
            )
        self.param_names = {**_DEFAULT_PARAMS, **(param_names or {})}
        self.date_format = date_format
        self.end_inclusive = end_inclusive
        self.max_span_days = max_span_days
        self.format = format
        self.lifetime = lifetime
        self.host, self.port = host, port
        self.clock: Clock = clock or SystemClock()
        self.faults = Faults(
            every_nth_429=every_nth_429,
            retry_after=retry_after,
            retry_after_format=retry_after_format,
            every_nth_503=every_nth_503,
            slow_seconds=slow_seconds,
            quota_after=quota_after,
            fail_paths=dict(fail_paths or {}),
        )
        self.summary_discrepancies: dict[tuple[str, str], float] = dict(summary_discrepancies or {})
        self.credentials = SandboxCredentials.random()
        self.request_log: list[RequestRecord] = []
        self.served_pages = 0
        self._lock = threading.Lock()
        self._n = 0
        self._quota_used = 0
        self._armed: _ArmedFault | None = None
        self._as_of = _to_epoch(as_of)
        self._removed: set[str] = set()
        self._access: dict[str, _Token] = {}
        self._refresh: dict[str, str] = {}
        self._codes: dict[str, tuple[str, str]] = {}
        self._initial_refresh: str | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None
        self.flavour = factory(self, **dict(flavour_options or {}))
        self.api_root = self.flavour.api_root.rstrip("/")
        self.oauth_root = self.flavour.oauth_root.rstrip("/")
        self._routes: list[Route] = list(self.flavour.routes())
        for route in self._routes:
            route.compile(self.api_root)

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Sandbox:
        """Bind and serve in a background thread; returns ``self``. Idempotent."""
        if self._server is not None:
            return self
        try:
            self._server = _Server((self.host, self.port), self)
        except OSError as exc:
            raise SandboxError(
                f"cannot listen on {self.host}:{self.port}: {exc}",
                hint="Use port=0 to let the OS choose a free port.",
            ) from exc
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"sandbox-{self.port}",
            daemon=True,
        )
        self._thread.start()
        if self.lifetime and math.isfinite(self.lifetime):
            self._timer = threading.Timer(self.lifetime, self.stop)
            self._timer.daemon = True
            self._timer.start()
        logger.debug("sandbox serving %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving and close every connection. Idempotent, safe from any thread."""
        server, self._server = self._server, None
        if server is None:
            return
        if self._timer is not None and self._timer is not threading.current_thread():
            self._timer.cancel()
        server.shutdown()
        server.server_close()
        with server.conn_lock:
            conns = list(server.connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    @property
    def running(self) -> bool:
        """Whether the server is serving."""
        return self._server is not None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self.running else "stopped"
        return (
            f"Sandbox({where}, flavour={self.flavour.name!r}, auth={self.auth!r}, "
            f"paginator={self.paginator!r}, format={self.format!r}, "
            f"meters={len(self.data.meters)})"
        )

    # -- addresses and credentials -----------------------------------------------------------

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:<port>`` (raises :class:`SandboxError` before :meth:`start`)."""
        if self._server is None:
            raise SandboxError(
                "the sandbox is not running",
                hint="Use `with Sandbox() as sb:` or call sb.start() first.",
            )
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """Base URL of the API, e.g. ``http://127.0.0.1:54321/api/v1``."""
        return self.root_url + self.api_root

    @property
    def token_url(self) -> str:
        """OAuth token endpoint (``POST``)."""
        return self.root_url + self.oauth_root + "/token"

    @property
    def authorize_url(self) -> str:
        """OAuth authorization endpoint (``GET``, auto-approves with a 302)."""
        return self.root_url + self.oauth_root + "/authorize"

    def env(self) -> dict[str, str]:
        """Environment variables the profiles name, for ``monkeypatch.setenv`` or a shell.

        ``SCALER_SANDBOX_URL``, ``SANDBOX_API_KEY``, ``SANDBOX_USERNAME``, ``SANDBOX_PASSWORD``,
        ``SANDBOX_TOKEN``, ``SANDBOX_CLIENT_ID``, ``SANDBOX_CLIENT_SECRET``,
        ``SANDBOX_TOKEN_URL``, ``SANDBOX_AUTHORIZE_URL``, and in the ``oauth2_password`` /
        ``oauth2_authorization_code`` modes ``SANDBOX_REFRESH_TOKEN`` (issued once; it
        rotates on first use), plus whatever the flavour adds.
        """
        c = self.credentials
        out = {
            "SCALER_SANDBOX_URL": self.url,
            "SANDBOX_API_KEY": c.api_key,
            "SANDBOX_USERNAME": c.username,
            "SANDBOX_PASSWORD": c.password,
            "SANDBOX_TOKEN": c.token,
            "SANDBOX_CLIENT_ID": c.client_id,
            "SANDBOX_CLIENT_SECRET": c.client_secret,
            "SANDBOX_TOKEN_URL": self.token_url,
            "SANDBOX_AUTHORIZE_URL": self.authorize_url,
        }
        if self.auth in ("oauth2_password", "oauth2_authorization_code"):
            if self._initial_refresh is None:
                self._initial_refresh = self.issue_refresh_token()
            out["SANDBOX_REFRESH_TOKEN"] = self._initial_refresh
        out.update(self.flavour.env())
        return out

    # -- runtime controls --------------------------------------------------------------------

    def set_faults(self, **changes: Any) -> Faults:
        """Change :attr:`faults` (any :class:`Faults` field) and restart the n-th counters."""
        for key, value in changes.items():
            if not hasattr(self.faults, key):
                raise SandboxError(
                    f"unknown fault {key!r}",
                    hint="Use a field of scaler_workbench.sandbox.Faults.",
                )
            setattr(self.faults, key, dict(value or {}) if key == "fail_paths" else value)
        with self._lock:
            self._n = 0
        return self.faults

    def clear_faults(self) -> None:
        """Remove every fault, an armed :meth:`inject_fault` included (and reset the quota)."""
        self.faults = Faults()
        with self._lock:
            self._n = 0
            self._quota_used = 0
            self._armed = None

    def inject_fault(self, kind: str, *, at_request: int) -> None:
        """Arm one fault for the ``at_request``-th API request from now (0-based).

        Parameters
        ----------
        kind : str
            One of :data:`INJECTED_FAULTS`: ``"503"`` (503 ``service_unavailable``), ``"html"``
            (200 with an HTML page), ``"invalid_json"`` (200, a JSON content type, a body that
            is not JSON), ``"truncated"`` (200 announcing the whole body, half of it sent, the
            connection closed), ``"reset"`` (the connection closed without an answer): these
            hit that request and every later request of the same path and query (its retries),
            so they last past any retry policy. ``"empty_page"`` (the page's records removed,
            its total kept), ``"short_page"`` (its last record removed) and ``"duplicate"``
            (its first record repeated at the end) change that one JSON answer only.
        at_request : int
            Position among the API requests served after this call (OAuth requests do not
            count), from 0.

        Raises
        ------
        SandboxError
            An unknown kind or a negative position.

        Notes
        -----
        :attr:`injected` says which request was hit and whether the fault changed anything
        (a page without records cannot lose one). :meth:`clear_faults` disarms it.
        """
        if kind not in INJECTED_FAULTS:
            raise SandboxError(
                f"unknown injected fault {kind!r}", hint=f"Use one of {', '.join(INJECTED_FAULTS)}."
            )
        if not isinstance(at_request, int) or at_request < 0:
            raise SandboxError("at_request must be a whole number >= 0")
        with self._lock:
            self._armed = _ArmedFault(kind, at_request)

    @property
    def injected(self) -> dict[str, Any] | None:
        """The armed fault: ``kind``, ``at_request``, ``target`` (path and query it hit, or
        None yet), ``hits`` (answers it changed) and ``effective`` (it changed an answer)."""
        a = self._armed
        if a is None:
            return None
        return {
            "kind": a.kind,
            "at_request": a.at,
            "target": a.target,
            "hits": a.hits,
            "effective": a.hits > 0,
        }

    def _apply_injected(self, req: Request, resp: Response) -> Response:
        with self._lock:
            a = self._armed
            if a is None:
                return resp
            n = a.seen
            a.seen += 1
            first = a.target is None and n == a.at
            if first:
                a.target = req.target
            again = not first and a.target == req.target and a.kind in _STICKY_FAULTS
        if not (first or again):
            return resp
        out = _faulted(a.kind, resp)
        if out is not resp:
            with self._lock:
                a.hits += 1
        return out

    def reset_quota(self) -> None:
        """Start a new "day": the quota counter returns to zero."""
        with self._lock:
            self._quota_used = 0

    def plant_discrepancy(self, meter_id: str, month: str, factor: float = 1.01) -> None:
        """Make ``/meters/{meter_id}/summary`` report ``month`` (``YYYY-MM``) times ``factor``.

        ``factor=1`` removes it. The data endpoints and :meth:`ground_truth` are unchanged, so
        a reconciliation of exported totals against the summary must flag exactly this month.
        """
        if factor == 1:
            self.summary_discrepancies.pop((meter_id, month), None)
        else:
            self.summary_discrepancies[(meter_id, month)] = float(factor)

    def set_as_of(self, ts: datetime | date | str | float | None) -> None:
        """Serve only data available at ``ts`` (None: everything).

        A ``date`` or naive datetime means UTC. Intervals are served once they ended, readings
        once read, bills once their last day ended (site-local midnight).
        """
        self._as_of = _to_epoch(ts)

    @property
    def as_of(self) -> datetime | None:
        """The current ``as_of`` instant (UTC) or None."""
        return None if self._as_of is None else datetime.fromtimestamp(self._as_of, UTC)

    @property
    def as_of_epoch(self) -> float:
        """``as_of`` in UTC epoch seconds (``inf`` when unset). [s]"""
        return math.inf if self._as_of is None else self._as_of

    def remove_meters(self, ids: Iterable[str]) -> None:
        """Make meters disappear: absent from lists, 404 on their data endpoints."""
        self._removed.update(ids)

    def restore_meters(self, ids: Iterable[str] | None = None) -> None:
        """Bring removed meters back (all when ``ids`` is None)."""
        if ids is None:
            self._removed.clear()
        else:
            self._removed.difference_update(ids)

    def is_removed(self, meter_id: str) -> bool:
        """Whether :meth:`remove_meters` removed this meter."""
        return meter_id in self._removed

    def expire_tokens(self) -> None:
        """Expire every access token issued so far (refresh tokens stay valid)."""
        with self._lock:
            for tok in self._access.values():
                tok.revoked = True

    def issue_refresh_token(self) -> str:
        """Issue a valid refresh token directly (as if a consent had happened)."""
        token = "rt_" + secrets.token_urlsafe(24)
        with self._lock:
            self._refresh[token] = self.credentials.client_id
        return token

    def clear_log(self) -> None:
        """Empty :attr:`request_log` and reset :attr:`served_pages`."""
        with self._lock:
            self.request_log.clear()
            self.served_pages = 0

    def ground_truth(
        self,
        heating_value_mj_m3: float = 39.5,
        *,
        as_of: datetime | date | str | None = None,
        meters: Iterable[str] | None = None,
    ) -> pd.DataFrame:
        """Monthly consumption per meter in canonical units from the generated arrays.

        Defaults to the sandbox's current ``as_of``; removed meters are included unless
        ``meters`` leaves them out. See :meth:`SandboxData.ground_truth`.
        """
        cut = _to_epoch(as_of) if as_of is not None else self._as_of
        when = None if cut is None else datetime.fromtimestamp(cut, UTC)
        return self.data.ground_truth(
            heating_value_mj_m3, as_of=when, meters=None if meters is None else list(meters)
        )

    # -- dispatch -----------------------------------------------------------------------------

    def trap_facts(self) -> dict[str, dict[str, Any]]:
        """The planted traps (:meth:`SandboxData.trap_facts`; empty without ``traps``)."""
        return self.data.trap_facts()

    def _dispatch(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> Response:
        split = urlsplit(target)
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        req = Request(method, split.path, target, query, headers, body, self)
        try:
            resp = self._respond(req)
        except HTTPProblem as problem:
            resp = problem.response()
        except Exception:  # a bug in a handler: answer 500, keep serving
            logger.exception("sandbox handler failed for %s %s", method, split.path)
            resp = error_response(500, "internal_error", "the sandbox handler failed")
        names = {n.lower() for n in SECRET_PARAM_NAMES} | {self.api_key_name.lower()}
        masked = {k: ("***" if k.lower() in names else v) for k, v in query.items()}
        if self._armed is not None and not split.path.startswith(self.oauth_root + "/"):
            resp = self._apply_injected(req, resp)
        with self._lock:
            self.request_log.append(RequestRecord(method, split.path, masked, resp.status))
        return resp

    def _respond(self, req: Request) -> Response:
        if req.path.startswith(self.oauth_root + "/"):
            return self._oauth(req)
        route, allowed = self._match(req)
        if route is None:
            if allowed:
                raise HTTPProblem(405, "method_not_allowed", f"use {', '.join(sorted(allowed))}")
            raise HTTPProblem(404, "not_found", f"no such endpoint: {req.path}")
        if route.faults:
            self._inject_faults(req)
        if route.auth:
            self._authenticate(req)
        return route.handler(req)

    def _match(self, req: Request) -> tuple[Route | None, set[str]]:
        allowed: set[str] = set()
        for route in self._routes:
            m = route.regex.match(req.path)
            if m:
                if route.method in (req.method, "*") or (
                    req.method == "HEAD" and route.method == "GET"
                ):
                    req.params = {  # one path segment is percent-decoded, as servers do
                        k: v if f"{{{k}:path}}" in route.pattern else unquote(v)
                        for k, v in m.groupdict().items()
                    }
                    return route, allowed
                allowed.add(route.method)
        return None, allowed

    def _inject_faults(self, req: Request) -> None:
        f = self.faults
        if f.slow_seconds > 0:
            time.sleep(f.slow_seconds)
        for pattern, status in f.fail_paths.items():
            if re.search(pattern, req.target):
                raise HTTPProblem(status, "injected_failure", f"{req.path} always fails here")
        with self._lock:
            self._n += 1
            n = self._n
        if f.every_nth_429 and n % f.every_nth_429 == 0:
            if f.retry_after_format == "http-date":
                when = self.clock.now() + timedelta(seconds=f.retry_after)
                value = email.utils.format_datetime(when.astimezone(UTC), usegmt=True)
            else:
                value = str(math.ceil(f.retry_after))
            raise HTTPProblem(
                429, "rate_limited", "too many requests", headers={"Retry-After": value}
            )
        if f.every_nth_503 and n % f.every_nth_503 == 0:
            raise HTTPProblem(503, "service_unavailable", "try again later")
        if f.quota_after is not None:
            with self._lock:
                self._quota_used += 1
                over = self._quota_used > f.quota_after
            if over:
                raise HTTPProblem(
                    429, "daily_quota_exceeded", f"the daily quota of {f.quota_after} is spent"
                )

    # -- authentication -----------------------------------------------------------------------

    def _authenticate(self, req: Request) -> None:
        mode, c = self.auth, self.credentials
        if mode == "none":
            return
        if mode in ("api_key", "api_key_query"):
            where = "header" if mode == "api_key" else "query parameter"
            if mode == "api_key":
                given = req.headers.get(self.api_key_name)
            else:
                given = req.query.get(self.api_key_name)
            if not given:
                raise HTTPProblem(
                    401, "missing_credentials", f"send the API key in {where} {self.api_key_name}"
                )
            if not secrets.compare_digest(given, c.api_key):
                raise HTTPProblem(403, "invalid_api_key", "the API key is not valid")
            return
        if mode in ("basic", "basic_key"):
            challenge = {"WWW-Authenticate": 'Basic realm="sandbox"'}
            pair = _basic(req.headers.get("Authorization"))
            if pair is None:
                raise HTTPProblem(
                    401, "missing_credentials", "use HTTP Basic auth", headers=challenge
                )
            want = (c.username, c.password) if mode == "basic" else (c.api_key, "")
            if pair != want:
                raise HTTPProblem(
                    401, "invalid_credentials", "wrong username or password", headers=challenge
                )
            return
        raw = req.headers.get(self.auth_header)
        challenge = {"WWW-Authenticate": 'Bearer realm="sandbox"'}
        if not raw:
            raise HTTPProblem(
                401, "missing_credentials", f"send {self.auth_header}", headers=challenge
            )
        prefix, _, suffix = self.bearer_format.partition("{token}")
        token = ""
        if raw.startswith(prefix) and raw.endswith(suffix):
            token = raw[len(prefix) : len(raw) - len(suffix)]
        bad = {"WWW-Authenticate": 'Bearer realm="sandbox", error="invalid_token"'}
        if mode == "bearer":
            if not token or not secrets.compare_digest(token, c.token):
                raise HTTPProblem(401, "invalid_token", "the token is not valid", headers=bad)
            return
        with self._lock:
            tok = self._access.get(token)
            if tok is None:
                raise HTTPProblem(401, "invalid_token", "unknown access token", headers=bad)
            expired = tok.revoked or (
                self.token_ttl is not None and self.clock.monotonic() >= tok.issued + self.token_ttl
            )
            if self.token_max_uses is not None and tok.uses >= self.token_max_uses:
                expired = True
            if expired:
                raise HTTPProblem(401, "invalid_token", "the access token expired", headers=bad)
            tok.uses += 1

    # -- OAuth 2 ------------------------------------------------------------------------------

    def _oauth(self, req: Request) -> Response:
        sub = req.path[len(self.oauth_root) :]
        if not self.auth.startswith("oauth2_"):
            raise HTTPProblem(404, "not_found", f"no OAuth endpoints in auth mode {self.auth}")
        if sub == "/authorize" and req.method == "GET":
            return self._authorize(req)
        if sub == "/token" and req.method == "POST":
            return self._token(req)
        raise HTTPProblem(404, "not_found", f"no such endpoint: {req.method} {req.path}")

    def _authorize(self, req: Request) -> Response:
        if self.auth != "oauth2_authorization_code":
            raise HTTPProblem(404, "not_found", "authorization endpoint not enabled")
        q = req.query
        if q.get("response_type") != "code":
            raise HTTPProblem(400, "unsupported_response_type", "response_type must be 'code'")
        if q.get("client_id") != self.credentials.client_id:
            raise HTTPProblem(400, "invalid_client", "unknown client_id")
        redirect = q.get("redirect_uri", "")
        if not redirect:
            raise HTTPProblem(400, "invalid_request", "redirect_uri is required")
        code = "code_" + secrets.token_urlsafe(16)
        with self._lock:
            self._codes[code] = (q["client_id"], redirect)
        params = {"code": code}
        if "state" in q:
            params["state"] = q["state"]
        location = redirect + ("&" if "?" in redirect else "?") + urlencode(params)
        return json_response({}, 302, headers={"Location": location})

    def _client(self, req: Request, form: dict[str, str]) -> str:
        basic = _basic(req.headers.get("Authorization"))
        if basic is not None:
            if self.client_auth == "body":
                raise HTTPProblem(
                    401, "invalid_client", "send client_id/client_secret in the form body"
                )
            cid, secret = basic
        elif "client_id" in form:
            if self.client_auth == "basic" and "client_secret" in form:
                raise HTTPProblem(
                    401,
                    "invalid_client",
                    "authenticate the client with HTTP Basic",
                    headers={"WWW-Authenticate": 'Basic realm="sandbox"'},
                )
            cid, secret = form["client_id"], form.get("client_secret", "")
        else:
            raise HTTPProblem(
                401,
                "invalid_client",
                "client authentication required",
                headers={"WWW-Authenticate": 'Basic realm="sandbox"'},
            )
        c = self.credentials
        if cid != c.client_id or not secrets.compare_digest(secret, c.client_secret):
            raise HTTPProblem(401, "invalid_client", "wrong client_id or client_secret")
        return cid

    def _token(self, req: Request) -> Response:
        form = req.form()
        grant = form.get("grant_type", "")
        allowed = {
            "oauth2_client_credentials": ("client_credentials",),
            "oauth2_password": ("password", "refresh_token"),
            "oauth2_authorization_code": ("authorization_code", "refresh_token"),
        }[self.auth]
        if grant not in allowed:
            raise HTTPProblem(
                400, "unsupported_grant_type", f"grant_type must be one of {', '.join(allowed)}"
            )
        cid = self._client(req, form)
        refresh = False
        if grant == "password":
            c = self.credentials
            if (form.get("username"), form.get("password")) != (c.username, c.password):
                raise HTTPProblem(400, "invalid_grant", "wrong username or password")
            refresh = True
        elif grant == "authorization_code":
            with self._lock:
                entry = self._codes.pop(form.get("code", ""), None)
            if entry is None:
                raise HTTPProblem(400, "invalid_grant", "unknown or already used code")
            if entry[0] != cid or form.get("redirect_uri", entry[1]) != entry[1]:
                raise HTTPProblem(400, "invalid_grant", "code issued to another client/redirect")
            refresh = True
        elif grant == "refresh_token":
            with self._lock:
                owner = self._refresh.pop(form.get("refresh_token", ""), None)
            if owner is None or owner != cid:
                raise HTTPProblem(400, "invalid_grant", "unknown, used or revoked refresh token")
            refresh = True
        access = "at_" + secrets.token_urlsafe(24)
        with self._lock:
            self._access[access] = _Token(cid, self.clock.monotonic())
        body: dict[str, Any] = {"access_token": access, "token_type": "Bearer"}
        if self.token_ttl is not None:
            body["expires_in"] = int(self.token_ttl)
        if refresh:
            body["refresh_token"] = self.issue_refresh_token()
        if form.get("scope"):
            body["scope"] = form["scope"]
        return json_response(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    # -- helpers for handlers -----------------------------------------------------------------

    def _int_param(self, req: Request, key: str, default: int, minimum: int) -> int:
        name = self.param_names.get(key, key)
        raw = req.query.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise HTTPProblem(
                400, "invalid_parameter", f"{name} must be an integer", parameter=name
            ) from None
        if value < minimum:
            raise HTTPProblem(
                400, "invalid_parameter", f"{name} must be >= {minimum}", parameter=name
            )
        return value

    def _parse_instant(self, req: Request, key: str, tz: str, *, end: bool) -> float | None:
        name = self.param_names[key]
        raw = req.query.get(name)
        if raw is None or raw == "":
            return None
        raw = raw.strip()
        kind = "date" if _DATE_RE.match(raw) else "epoch" if _EPOCH_RE.match(raw) else "datetime"
        if self.date_format != "any" and kind != self.date_format:
            example = {
                "date": "2024-01-31",
                "datetime": "2024-01-31T00:00:00+00:00",
                "epoch": "1706659200",
            }[self.date_format]
            raise HTTPProblem(
                400,
                "invalid_parameter",
                f"{name} must be a {self.date_format} like {example}",
                parameter=name,
            )
        try:
            if kind == "epoch":
                value = float(raw)
                return value + 1 if (end and self.end_inclusive) else value
            if kind == "date":
                day = date.fromisoformat(raw)
                if end and self.end_inclusive:
                    day += timedelta(days=1)
                return datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(tz)).timestamp()
            moment = datetime.fromisoformat(raw)
        except ValueError:
            raise HTTPProblem(
                400, "invalid_parameter", f"{name}={raw!r} is not a valid {kind}", parameter=name
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=ZoneInfo(tz))
        value = moment.timestamp()
        return value + 1 if (end and self.end_inclusive) else value

    def time_window(
        self, req: Request, tz: str, *, data_start: float, data_end: float
    ) -> tuple[float, float]:
        """Parse the ``from``/``to`` parameters into ``[lo, hi)`` UTC epoch seconds.

        Dates are local midnights of ``tz``; naive datetimes are local too; epochs are UTC.
        A missing bound means the data's own bound (``data_start`` / ``data_end``) for the
        ``max_span_days`` check. Raises :class:`HTTPProblem` 400 ``invalid_parameter``,
        ``invalid_range`` or ``range_too_large``.
        """
        lo = self._parse_instant(req, "from", tz, end=False)
        hi = self._parse_instant(req, "to", tz, end=True)
        lo_v = -math.inf if lo is None else lo
        hi_v = math.inf if hi is None else hi
        if lo is not None and hi is not None and hi < lo:
            raise HTTPProblem(400, "invalid_range", "'to' is before 'from'")
        if self.max_span_days is not None:
            span = (min(hi_v, data_end) if hi is None else hi_v) - (
                data_start if lo is None else lo_v
            )
            if span > self.max_span_days * 86400 + 3600:
                raise HTTPProblem(
                    400,
                    "range_too_large",
                    f"range too large: {span / 86400:.1f} days requested, at most "
                    f"{self.max_span_days:g} days per request; send a smaller from/to window",
                    max_span_days=self.max_span_days,
                )
        return lo_v, hi_v

    def list_response(
        self,
        req: Request,
        total: int,
        build: Callable[[int, int], list[dict[str, Any]]],
        *,
        build_json: Callable[[int, int], str] | None = None,
    ) -> Response:
        """Paginate ``total`` records in the current paginator mode and format.

        ``build(lo, hi)`` returns records ``lo:hi`` as dicts; the optional ``build_json(lo, hi)``
        returns the same records already encoded as a JSON array (a fast path for big pages,
        used in JSON mode). Counts a served page.
        """
        mode = self.paginator
        limit = min(self._int_param(req, "limit", self.page_size, 1), self.max_page_size)
        headers = {"X-Total-Count": str(total)}
        meta: dict[str, Any] = {}
        body: Any
        if mode == "none":
            lo, hi = 0, total
        elif mode == "page":
            limit = min(self._int_param(req, "per_page", self.page_size, 1), self.max_page_size)
            page = self._int_param(req, "page", 1, 1)
            lo = min((page - 1) * limit, total)
            hi = min(lo + limit, total)
            pages = max(1, math.ceil(total / limit))
            meta = {"page": page, "per_page": limit, "total": total, "total_pages": pages}
        elif mode == "cursor":
            lo = self._decode_cursor(req)
            hi = min(lo + limit, total)
            meta = {"next_cursor": self._encode_cursor(req, hi) if hi < total else None}
        else:  # offset, next_url, link_header
            lo = min(self._int_param(req, "offset", 0, 0), total)
            hi = min(lo + limit, total)
            if mode == "offset":
                meta = {"total": total, "offset": lo, "limit": limit}
            else:
                nxt = self._next_link(req, hi, limit) if hi < total else None
                if mode == "next_url":
                    meta = {"links": {"next": nxt}}
                elif nxt is not None:
                    links = [f'<{nxt}>; rel="next"']
                    last = (max(total - 1, 0) // limit) * limit
                    links.append(f'<{self._next_link(req, last, limit)}>; rel="last"')
                    headers["Link"] = ", ".join(links)
        with self._lock:
            self.served_pages += 1
        bare = mode in ("none", "link_header") and not self.envelope
        if build_json is not None and self.format == "json":
            array = build_json(lo, hi) if hi > lo else "[]"
            if bare:
                text = array
            elif meta:
                text = '{"data":' + array + "," + json.dumps(meta, separators=(",", ":"))[1:]
            else:
                text = '{"data":' + array + "}"
            return Response(body=text.encode(), headers=headers)
        records = build(lo, hi) if hi > lo else []
        if self.format == "xml":
            return Response(
                body=_to_xml(records, meta, total),
                headers=headers,
                content_type="application/xml; charset=utf-8",
            )
        if bare:
            body = records
        else:
            body = {"data": records, **meta}
        return json_response(body, headers=headers)

    def _encode_cursor(self, req: Request, offset: int) -> str:
        raw = json.dumps({"o": offset, "k": zlib.crc32(req.path.encode())}).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def _decode_cursor(self, req: Request) -> int:
        name = self.param_names["cursor"]
        raw = req.query.get(name)
        if not raw:
            return 0
        try:
            obj = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
            offset = int(obj["o"])
            ok = obj["k"] == zlib.crc32(req.path.encode()) and offset >= 0
        except (ValueError, KeyError, TypeError, binascii.Error):
            ok = False
        if not ok:
            raise HTTPProblem(400, "invalid_cursor", f"{name} is not a cursor of this endpoint")
        return offset

    def _next_link(self, req: Request, offset: int, limit: int) -> str:
        p = self.param_names
        drop = {p["offset"], p["limit"]}
        if self.auth == "api_key_query":
            drop.add(self.api_key_name)
        pairs = [(k, v) for k, v in req.query.items() if k not in drop]
        pairs += [(p["offset"], str(offset)), (p["limit"], str(limit))]
        qs = urlencode(pairs)
        style = self.next_url_style
        if style == "absolute":
            return f"{self.root_url}{req.path}?{qs}"
        if style == "path":
            return f"{req.path}?{qs}"
        if style == "api_root":
            return f"{req.path[len(self.api_root) :]}?{qs}"
        return f"{req.path.rstrip('/').rsplit('/', 1)[-1]}?{qs}"


# --------------------------------------------------------------------------------------------
# small helpers


def _day(value: date | str) -> str:
    return value.isoformat()[:10] if isinstance(value, date) else str(value)


def _check(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise SandboxError(f"unknown {name} {value!r}", hint=f"Use one of: {', '.join(allowed)}.")


def _basic(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        text = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = text.partition(":")
    return (user, password) if sep else None


def _xml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return escape(str(value))


def _xml_fields(record: Mapping[str, Any]) -> str:
    out = []
    for key, value in record.items():
        if value is None:
            continue
        if isinstance(value, Mapping):
            out.append(f"<{key}>{_xml_fields(value)}</{key}>")
        else:
            out.append(f"<{key}>{_xml_value(value)}</{key}>")
    return "".join(out)


def _to_xml(records: list[dict[str, Any]], meta: Mapping[str, Any], total: int) -> bytes:
    """Records as namespaced XML: ``<response xmlns=XML_NS xmlns:meta=XML_META_NS>``."""
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<response xmlns="{XML_NS}" xmlns:meta="{XML_META_NS}">',
        f"<meta:page><meta:total>{total}</meta:total>",
    ]
    flat = dict(meta)
    links = flat.pop("links", None)
    flat.pop("total", None)
    for key, value in flat.items():
        if value is not None:
            parts.append(f"<meta:{key}>{_xml_value(value)}</meta:{key}>")
    if links and links.get("next"):
        parts.append(f'<meta:link rel="next" href={quoteattr(links["next"])}/>')
    parts.append("</meta:page><data>")
    parts.extend(f"<record>{_xml_fields(r)}</record>" for r in records)
    parts.append("</data></response>")
    return "".join(parts).encode("utf-8")


# --------------------------------------------------------------------------------------------
# the default flavour


class DefaultFlavour(Flavour):
    """The sandbox provider's own API under ``/api/v1`` (see the manual)."""

    name = "default"

    def routes(self) -> Iterable[Route]:
        return [
            Route("GET", "/sites", self.sites),
            Route("GET", "/sites/{site_id}/meters", self.site_meters),
            Route("GET", "/meters", self.all_meters),
            Route("GET", "/meters/{meter_id}/intervals", self.intervals),
            Route("GET", "/meters/{meter_id}/readings", self.readings),
            Route("GET", "/meters/{meter_id}/bills", self.bills),
            Route("GET", "/meters/{meter_id}/summary", self.summary),
        ]

    def sites(self, req: Request) -> Response:
        sites = self.data.sites
        return self.sandbox.list_response(req, len(sites), lambda lo, hi: sites[lo:hi])

    def site_meters(self, req: Request) -> Response:
        site_id = req.params["site_id"]
        if site_id not in self.data.site_tz:
            raise HTTPProblem(404, "not_found", f"site {site_id} not found")
        meters = [
            m for m in self.data.listed_meters(site_id) if not self.sandbox.is_removed(m["id"])
        ]
        return self.sandbox.list_response(req, len(meters), lambda lo, hi: meters[lo:hi])

    def all_meters(self, req: Request) -> Response:
        ms = self.data.meter_site
        meters = [
            {**m, "site_id": ms[m["id"]]}
            for m in self.data.listed_meters()
            if not self.sandbox.is_removed(m["id"])
        ]
        return self.sandbox.list_response(req, len(meters), lambda lo, hi: meters[lo:hi])

    def _meter(self, req: Request) -> tuple[str, str]:
        mid = req.params["meter_id"]
        if mid not in self.data.meter_site or self.sandbox.is_removed(mid):
            raise HTTPProblem(404, "not_found", f"meter {mid} not found")
        return mid, self.data.site_tz[self.data.meter_site[mid]]

    def intervals(self, req: Request) -> Response:
        mid, tz = self._meter(req)
        s = self.data.series[mid]
        grid = self.data.grids[tz]
        lo, hi = self.sandbox.time_window(
            req, tz, data_start=float(grid.epoch[0]), data_end=float(grid.epoch[-1])
        )
        if not isinstance(s, IntervalSeries):
            return self.sandbox.list_response(req, 0, lambda a, b: [])
        hi = min(hi, self.sandbox.as_of_epoch - HALF_HOUR + 1)  # only intervals that ended
        starts = grid.epoch[s.t_idx]
        a = int(np.searchsorted(starts, lo, "left")) if lo > -math.inf else 0
        b = int(np.searchsorted(starts, hi, "left")) if hi < math.inf else starts.size
        b = max(a, b)
        return self.sandbox.list_response(
            req,
            b - a,
            lambda x, y: self.data.interval_records(mid, a + x, a + y),
            build_json=lambda x, y: self.data.interval_json(mid, a + x, a + y),
        )

    def readings(self, req: Request) -> Response:
        mid, tz = self._meter(req)
        s = self.data.series[mid]
        grid = self.data.grids[tz]
        lo, hi = self.sandbox.time_window(
            req, tz, data_start=float(grid.day_epoch[0]), data_end=float(grid.day_epoch[-1]) + 1
        )
        if not isinstance(s, RegisterSeries):
            return self.sandbox.list_response(req, 0, lambda a, b: [])
        hi = min(hi, self.sandbox.as_of_epoch + 1)
        reads = grid.day_epoch[s.d_idx]
        a = int(np.searchsorted(reads, lo, "left")) if lo > -math.inf else 0
        b = int(np.searchsorted(reads, hi, "left")) if hi < math.inf else reads.size
        b = max(a, b)
        return self.sandbox.list_response(
            req, b - a, lambda x, y: self.data.reading_records(mid, a + x, a + y)
        )

    def bills(self, req: Request) -> Response:
        mid, _tz = self._meter(req)
        s = self.data.series[mid]
        if not isinstance(s, BillSeries):
            return self.sandbox.list_response(req, 0, lambda a, b: [])
        ends = self.data.bill_end_epochs(mid)
        n = int(np.searchsorted(ends, self.sandbox.as_of_epoch, "right"))
        return self.sandbox.list_response(req, n, lambda x, y: self.data.bill_records(mid, x, y))

    def summary(self, req: Request) -> Response:
        """Monthly totals in the meter's own unit, as of the sandbox's ``as_of``."""
        mid, _tz = self._meter(req)
        as_of = self.sandbox.as_of
        rows = self.data.monthly_totals(mid, as_of=as_of)
        planted = self.sandbox.summary_discrepancies
        if planted:
            rows = [{**r, "total": r["total"] * planted.get((mid, r["month"]), 1.0)} for r in rows]
        return self.sandbox.list_response(req, len(rows), lambda x, y: rows[x:y])


register_flavour("default", DefaultFlavour)
