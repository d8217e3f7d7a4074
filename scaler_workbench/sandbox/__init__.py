"""The sandbox provider: a deterministic provider API on 127.0.0.1, with its ground truth.

Quick start::

    from scaler_workbench.sandbox import Sandbox

    with Sandbox(seed=0, auth="api_key", paginator="offset") as sb:
        sb.url            # 'http://127.0.0.1:54321/api/v1'
        sb.env()          # {'SCALER_SANDBOX_URL': ..., 'SANDBOX_API_KEY': ..., ...}
        sb.ground_truth() # meter_id, month (local YYYY-MM), consumption, production, unit

From a shell: ``python -m scaler_workbench.sandbox --auth oauth2_client_credentials`` prints
the URL and ``export`` lines for the credentials (see ``--help``; ``--traps [NAME ...]`` plants
the data traps and names their meters).

Data (:class:`SandboxData`, module :mod:`~scaler_workbench.sandbox.generate`)
------------------------------------------------------------------------------
A seeded portfolio: ``sites`` sites (default 6) x ``meters_per_site`` meters (default 3), from
local midnight ``start`` (default 2024-01-01) to local midnight ``end`` (default 2024-07-01,
exclusive). Defaults give 18 meters: 12 half-hourly interval meters (about 104 000 interval
records), 3 register meters and 3 bill meters. Most sites are in Europe/London; with 3 or more
sites at least one is in America/New_York (and with 5 or more one in Europe/Paris). Unit labels
are ``kWh``, ``Wh``, ``MWh`` (electricity), ``kWh`` (solar), ``m3``, ``kWh``, ``ft3`` (gas),
``m3``, ``L``, ``US_gal`` (water) and ``kg``, ``t`` (waste). The generate module's docstring
describes every record field and the data's quirks (1 % missing intervals, estimates, DST days
with 46/50 half-hours, register rollover at ``10 ** register_digits``, bills not aligned to
months with an inclusive ``period_end`` and a constant daily rate).

``ground_truth(heating_value_mj_m3=39.5)`` sums the generated arrays (never HTTP) into monthly
consumption in canonical units (Energy kWh, Water m³, Waste kg; gas volume -> kWh by the UK
convention m³ x 1.02264 x CV / 3.6), honouring the sandbox's ``as_of``; a solar meter's energy
is its ``production`` (its consumption 0), as the sandbox profile maps it.

Endpoints (default flavour, under ``/api/v1``)
----------------------------------------------
=====================================  =======================================================
``GET /sites``                          ``{id, name, address{line1, city, postcode, country},
                                        timezone, floor_area_m2}``
``GET /sites/{site_id}/meters``         ``{id, name, commodity, unit, kind, serial,
                                        register_digits}`` (404 for an unknown site)
``GET /meters``                         every meter, plus ``site_id``
``GET /meters/{id}/intervals?from&to``  ``{id, interval_start, interval_end, value, estimated,
                                        exported}`` (empty for non-interval meters)
``GET /meters/{id}/readings?from&to``   ``{id, read_at, register, estimated}``
``GET /meters/{id}/bills``              ``{id, period_start, period_end, amount, cost,
                                        currency, estimated}``
``GET /meters/{id}/summary``            the provider's own monthly totals in the meter's
                                        unit: ``{month (local YYYY-MM), period_start,
                                        period_end (local dates, end exclusive), total,
                                        unit}``, the same sums as ``ground_truth`` (before
                                        the canonical factor), honouring ``as_of``
``GET /oauth/authorize``                OAuth consent, auto-approved: 302 to ``redirect_uri``
                                        with ``code`` and ``state``
``POST /oauth/token``                   OAuth token endpoint (form body)
=====================================  =======================================================

Removed meters (``remove_meters``) are absent from lists and 404 on their data endpoints.
Every response carries ``X-Total-Count``. Errors are JSON ``{"error": code, "message": text}``
(also in XML mode).

Options (all keyword-only on :class:`Sandbox`)
----------------------------------------------
=========================  ==================  ================================================
option                     default             meaning
=========================  ==================  ================================================
``seed``, ``sites``,       0, 6, 3,            the portfolio (:func:`get_sandbox_data` caches
``meters_per_site``,       2024-01-01,         it; or pass ``data=SandboxData.generate(...)``)
``start``, ``end``         2024-07-01
``flavour``                ``"default"``       registered name or factory; ``flavour_options``
``auth``                   ``"api_key"``       see below; ``api_key_name``, ``auth_header``,
                                               ``bearer_format``, ``client_auth``
``token_ttl``              3600                access token lifetime [s]; ``token_max_uses``
``paginator``              ``"offset"``        see below; ``page_size`` 100, ``max_page_size``
                                               1000, ``envelope`` True, ``next_url_style``,
                                               ``param_names``
``date_format``            ``"any"``           ``end_inclusive`` False, ``max_span_days`` None
``format``                 ``"json"``          or ``"xml"``
``as_of``                  None                hide data after this instant
``lifetime``               1800                the server stops by itself after this [s]
``host``, ``port``         127.0.0.1, 0        0 = OS-chosen port
``clock``                  SystemClock         token expiry, HTTP-date Retry-After
fault options              off                 ``every_nth_429``, ``retry_after`` (1 s),
                                               ``retry_after_format``, ``every_nth_503``,
                                               ``slow_seconds``, ``quota_after``,
                                               ``fail_paths``
``traps``                  False               plant data traps as extra meters of the first
                                               site (``True`` = all, or names): a mid-month
                                               start/end, a missing day, a 3-hour hole, null
                                               nights, a duplicate meter id, a stale meter,
                                               a bi-monthly bill meter (see the generate
                                               module); ``sb.trap_facts()`` describes them
``summary_discrepancies``  None                ``{(meter_id, "YYYY-MM"): factor}``: the
                                               summary reports that month x factor
=========================  ==================  ================================================

Authentication, ``auth=``:

- ``api_key``: header ``api_key_name`` (default ``X-API-Key``) = ``SANDBOX_API_KEY``; missing
  -> 401 ``missing_credentials``, wrong -> 403 ``invalid_api_key``.
- ``api_key_query``: query parameter ``api_key_name`` (default ``api_key``).
- ``basic``: HTTP Basic ``SANDBOX_USERNAME:SANDBOX_PASSWORD``; ``basic_key``: HTTP Basic with
  the API key as username and an empty password. Wrong or missing -> 401 with
  ``WWW-Authenticate: Basic``.
- ``bearer``: static ``SANDBOX_TOKEN`` in ``auth_header`` (default ``Authorization``) written
  as ``bearer_format`` (default ``"Bearer {token}"``, e.g. ``"Token {token}"``).
- ``oauth2_client_credentials``, ``oauth2_password``, ``oauth2_authorization_code``: get an
  access token at ``POST /oauth/token`` (``sb.token_url``) and send it like ``bearer``.
  Client authentication (``SANDBOX_CLIENT_ID``/``SANDBOX_CLIENT_SECRET``) by HTTP Basic or
  form fields, per ``client_auth`` = ``any`` | ``basic`` | ``body``. The password grant takes
  ``username``/``password``; the code flow starts at ``GET /oauth/authorize?response_type=code
  &client_id&redirect_uri&state`` (``sb.authorize_url``). Password and code grants return a
  ``refresh_token``; ``grant_type=refresh_token`` ROTATES it (the old one answers 400
  ``invalid_grant``). Access tokens expire after ``token_ttl`` seconds of ``clock.monotonic()``
  (default 3600; inject a FakeClock) and/or ``token_max_uses`` API requests, or at once with
  ``sb.expire_tokens()``: 401 ``invalid_token`` with ``WWW-Authenticate: Bearer
  error="invalid_token"``. ``sb.issue_refresh_token()`` gives a valid refresh token directly.
- ``none``.

Pagination, ``paginator=`` (every list endpoint; ``page_size`` default 100, clamped to
``max_page_size`` default 1000; parameter names renamable with ``param_names``):

- ``offset``: ``offset`` & ``limit`` -> ``{"data", "total", "offset", "limit"}``.
- ``page``: ``page`` (from 1) & ``per_page`` -> ``{"data", "page", "per_page", "total",
  "total_pages"}``.
- ``cursor``: ``cursor`` & ``limit`` -> ``{"data", "next_cursor"}``; ``next_cursor`` is opaque
  and ``null`` on the last page; a foreign cursor -> 400 ``invalid_cursor``.
- ``next_url``: ``{"data", "links": {"next": url-or-null}}``; ``next_url_style`` = ``absolute``
  (default), ``path`` (``/api/v1/...``), ``api_root`` (``/meters/...``) or ``relative``
  (``intervals?...``). The link carries offset/limit and every other parameter except a query
  API key.
- ``link_header``: RFC 5988 ``Link: <url>; rel="next", <url>; rel="last"`` (absent on the last
  page); body ``{"data": [...]}`` or a bare list with ``envelope=False``.
- ``none``: everything at once, ``{"data": [...]}`` or a bare list with ``envelope=False``.

Dates on intervals and readings: ``from``/``to`` (renamable) in ``date_format`` = ``any``
(detected), ``date`` (``YYYY-MM-DD``, the site's local midnight), ``datetime`` (ISO 8601; naive
means site-local) or ``epoch`` (UTC seconds); a wrong format -> 400 ``invalid_parameter``.
Intervals are selected by ``interval_start``, readings by ``read_at``; ``to`` is exclusive
unless ``end_inclusive=True``. ``max_span_days`` limits ``to - from`` (a missing bound counts
as the data's own bound; one hour of slack for DST): beyond it, 400
``{"error": "range_too_large", "message": "range too large: ...", "max_span_days": N}``.

XML, ``format="xml"``: ``application/xml`` bodies::

    <response xmlns="urn:scaler-workbench:sandbox"
              xmlns:meta="urn:scaler-workbench:sandbox:meta">
      <meta:page><meta:total>N</meta:total> ...paginator fields...
        <meta:link rel="next" href="..."/></meta:page>
      <data><record><id>..</id><value>..</value>...</record>...</data>
    </response>

Nested objects become nested elements, booleans ``true``/``false``, nulls are omitted.

Faults (:class:`Faults`, mutable at runtime via ``sb.faults`` or ``sb.set_faults(**kw)``,
which also restarts the n-th counters; API routes only, never the OAuth endpoints):

- ``every_nth_429``: every n-th API request -> 429 ``rate_limited`` with ``Retry-After`` =
  ``retry_after`` seconds, or an HTTP date when ``retry_after_format="http-date"``.
- ``every_nth_503``: every n-th API request -> 503 ``service_unavailable``.
- ``slow_seconds``: real sleep before answering (default 0).
- ``quota_after``: after N API requests, 429 ``daily_quota_exceeded`` WITHOUT ``Retry-After``
  until ``sb.reset_quota()``.
- ``fail_paths``: ``{regex: status}``; a request whose path-with-query matches always fails
  with that status (``injected_failure``).

Faulted requests are not counted in ``sb.served_pages``.

One injected fault (:meth:`Sandbox.inject_fault`, kinds :data:`INJECTED_FAULTS`):
``sb.inject_fault("503", at_request=n)`` arms a fault for the n-th API request served from
now (0-based): ``503``, ``html`` (200 with an HTML page), ``invalid_json``, ``truncated`` (the
body cut in half, the connection closed) and ``reset`` (the connection closed without an
answer) also hit every retry of that request; ``empty_page`` (records removed, total kept),
``short_page`` (the last record removed) and ``duplicate`` (the first record repeated) change
that one JSON answer. ``sb.injected`` says which request it hit and whether it changed
anything; ``clear_faults()`` disarms it. Nothing is armed by default.

Runtime controls and inspection
-------------------------------
``set_as_of(ts)`` serves only data available at ``ts`` (intervals that ended, readings taken,
bills whose last day ended); ``plant_discrepancy(meter_id, month, factor=1.01)`` makes
``/summary`` disagree with the data for one month (``factor=1`` removes it: reconciliation
tests); ``remove_meters(ids)`` / ``restore_meters()``; ``request_log``
(:class:`RequestRecord`: method, path, query with secret parameters masked, status; never
headers or bodies); ``served_pages``; ``clear_log()``; ``credentials``
(:class:`SandboxCredentials`, random per instance, masked repr); ``env()``; ``lifetime``
(default 1800 s: the server stops by itself); ``start()``/``stop()``/context manager;
``url``, ``root_url``, ``token_url``, ``authorize_url``; ``trap_facts()`` (the planted traps
with their ground truth, see :meth:`SandboxData.trap_facts`).

Flavours
--------
A flavour is the set of routes a simulated provider serves. ``Sandbox(flavour="name")``
imports ``scaler_workbench.sandbox.<name>`` on first use; that module subclasses
:class:`Flavour` (``api_root``, ``oauth_root``, ``defaults`` for ``auth``/``paginator``/
``envelope``/``page_size``; ``routes()`` returning :class:`Route` objects; optional ``env()``)
and calls ``register_flavour(name, FactoryOrClass)``. Handlers take a :class:`Request` and return
a :class:`Response` (``json_response``, ``error_response``, or raise :class:`HTTPProblem`);
``sb.list_response(req, total, build)`` applies pagination and the format, and
``sb.time_window(req, tz, data_start=, data_end=)`` the date filters. Route patterns take
``{name}`` (one segment) and ``{name:path}`` (the rest of the path); ``Route("*", "/{rest:path}",
handler, auth=False)`` mounts a provider that does its own routing and auth behind one handler.
The default flavour (:class:`DefaultFlavour`) uses exactly this mechanism; so do
``flavour="ecostruxure"`` and ``flavour="graphql"`` (:mod:`scaler_workbench.sandbox.graphql`: a
GraphQL energy API with Relay paging, errors in HTTP 200, a request budget then a ban, and its
own ground truth), ``flavour="soap"`` (:mod:`scaler_workbench.sandbox.soap`: a SOAP 1.1/1.2
metering service with faults) and ``flavour="csvexport"``
(:mod:`scaler_workbench.sandbox.csvexport`: CSV exports, one zipped), each with its own ground
truth.
"""

from __future__ import annotations

from scaler_workbench.sandbox.generate import SandboxData, get_sandbox_data
from scaler_workbench.sandbox.server import (
    AUTH_MODES,
    DATE_FORMATS,
    INJECTED_FAULTS,
    NEXT_URL_STYLES,
    PAGINATORS,
    XML_META_NS,
    XML_NS,
    DefaultFlavour,
    Faults,
    Flavour,
    HTTPProblem,
    Request,
    RequestRecord,
    Response,
    Route,
    Sandbox,
    SandboxCredentials,
    error_response,
    json_response,
    register_flavour,
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
    "SandboxData",
    "error_response",
    "get_sandbox_data",
    "json_response",
    "register_flavour",
]
