"""Declarative resources and the fetch engine: ``[resources.X]`` in, records and a report out.

A resource is one list endpoint::

    [resources.meters]
    path = "/sites/{site_id}/meters"       # {params} are filled from parent records
    record_path = "data"                   # JSON dotted path ([*] ok) or XPath for XML
    primary_key = "id"                     # or a list; used for the duplicate check
    parent = "sites"
    parent_params = { site_id = "id" }     # path param <- parent record field
    parent_filter = { kind = "interval" }  # optional: only some parents (see below)
    where = { status = { "!=" = "archived" } }  # optional: only some records (see below)

A ``parent_params`` path with ``[*]`` (``serial = "meters[*].serial_number"``) gives one
sequence per element: a parent record holding a list of children fans out.

Other keys: ``method``, ``params``, ``json`` and ``body`` (request body templates with
``{parent.x}``, ``{variables.x}``, ``{window.start}``/``{window.end}`` and ``{cursor}``, see
:mod:`._templates`), ``graphql`` (``query`` and ``variables``, see :mod:`._graphql`),
``headers``, ``paginator`` (overrides the
profile's ``[paginator]``; ``"none"`` for a single request), ``format`` (auto/json/xml),
``namespaces`` (XML prefix -> URI), ``add_fields`` (constant fields stamped on every record,
e.g. ``{ commodity = "gas" }`` when the endpoint itself says what its records are),
``inherit_parent`` (true: ``_parent`` also carries the parent's own ``_parent``, so a
grandchild can map ``_parent.property_id``), ``keep`` (fields of the ancestors along a JSON
or XML ``record_path``: ``keep = { property_id = "properties[*].id" }``), ``date_range`` (see :mod:`.dates`), ``incremental``
(``cursor_path``, ``lookback_days``, and ``param``/``format`` for APIs filtered by an "updated
since" parameter instead of a date range), ``on_error`` (``"skip"``: record a failed page and
go on with the next parent/window; ``"raise"``).

``where`` / ``skip`` (record filters) and ``parent_filter`` use the conditions of
:mod:`scaler_workbench._filters` (``==``, ``!=``, ``>``, ``<``, ``>=``, ``<=``, ``in``, ``not in``,
``matches``, ``missing``; dotted keys read nested fields). A record ``where`` refuses or ``skip``
matches is dropped after the fetch's own checks (totals, duplicates, watermarks see every
record) and counted per rule in :attr:`FetchReport.filtered`; a child resource is fetched only
for the parent records kept.

:class:`Connector` runs the loop in overridable steps, so a provider module
(``connectors/<provider>.py``) subclasses it and changes only what differs: ``build_request``,
``parse_response``, ``records``, ``paginator``. ``[provider] connector = "<provider>"`` selects it.
"""

from __future__ import annotations

import copy
import os
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote
from xml.etree.ElementTree import Element
from xml.sax.saxutils import escape as xml_escape

from scaler_workbench._filters import Filter, compile_filter, compile_parent_filter
from scaler_workbench._profile_schema import did_you_mean
from scaler_workbench._secrets import get_logger, redact_url
from scaler_workbench._variables import placeholders
from scaler_workbench.clock import Clock
from scaler_workbench.connectors._body import (
    FORMATS,
    RawBody,
    check_encoding,
    find_value,
    json_steps,
    select_records,
    select_xml_with_ancestors,
    walk_json,
)
from scaler_workbench.connectors._csv import check_csv_table, read_csv_records
from scaler_workbench.connectors._events import FetchEvent
from scaler_workbench.connectors._events import emit as _emit_event
from scaler_workbench.connectors._graphql import (
    GraphQLRateLimited,
    check_graphql_table,
    raise_for_graphql_errors,
)
from scaler_workbench.connectors._soap import check_soap_table, fault_error, fault_of_response
from scaler_workbench.connectors._templates import (
    TemplateContext,
    check_template,
    render_json,
    render_text,
)
from scaler_workbench.connectors._util import secrets_from_env_table
from scaler_workbench.connectors.client import Client, Reply
from scaler_workbench.connectors.dates import (
    DateRange,
    SpanLearner,
    Window,
    make_date_range,
    parse_when,
    split_range,
)
from scaler_workbench.connectors.paginate import (
    PageRequest,
    PageResponse,
    Paginator,
    make_paginator,
)
from scaler_workbench.connectors.registry import connector_class, connector_for
from scaler_workbench.exceptions import (
    AuthError,
    ConnectorError,
    PaginationError,
    ProfileError,
    ProviderUnavailableError,
    QuotaExhaustedError,
    RangeTooLargeError,
    ResponseParseError,
)

__all__ = [
    "RESOURCE_KEYS",
    "Connector",
    "FetchReport",
    "FetchResult",
    "Page",
    "ResourceSpec",
    "connector_class",
    "connector_for",
    "entity_resources",
    "fetch_resources",
    "select_with_ancestors",
    "source_file_profile",
]

if TYPE_CHECKING:
    import pandas as pd

log = get_logger(__name__)

RESOURCE_KEYS = (
    "path",
    "method",
    "params",
    "json",
    "body",
    "graphql",
    "soap",
    "csv",
    "headers",
    "params_env",
    "headers_env",
    "record_path",
    "primary_key",
    "paginator",
    "format",
    "namespaces",
    "parent",
    "parent_params",
    "parent_filter",
    "date_range",
    "incremental",
    "on_error",
    "description",
    "add_fields",
    "inherit_parent",
    "keep",
    "where",
    "skip",
    "encoding",
)
_MAX_KEPT = 100
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _fill_params(value: Any, path_params: Mapping[str, Any] | None) -> Any:
    """A query parameter with its ``{parent}`` placeholders filled (others left as written)."""
    if not path_params or not isinstance(value, str) or "{" not in value:
        return value
    return _PLACEHOLDER.sub(
        lambda m: str(path_params[m.group(1)]) if m.group(1) in path_params else m.group(0),
        value,
    )


def _check_cursor_path(spec: ResourceSpec, cursor_path: str, records: list[dict[str, Any]]) -> None:
    """A cursor path that no fetched record has is a typo (it would mean full pulls forever)."""
    if any(find_value(r, cursor_path) is not None for r in records):
        return
    head, _, _rest = cursor_path.rpartition(".")
    fields = sorted(
        {
            f"{head}.{k}" if head else str(k)
            for r in records[:50]
            for k in (find_value(r, head) if head else r) or {}
            if isinstance(k, str)
        }
    )
    raise ProfileError(
        f"resources.{spec.name}.incremental.cursor_path {cursor_path!r} is in none of the "
        f"{len(records)} records fetched{did_you_mean(cursor_path, fields)}",
        key=f"resources.{spec.name}.incremental.cursor_path",
        hint=f"Name the record field that orders the records; the records have: "
        f"{', '.join(fields[:20]) or '(no fields)'}.",
    )


# ------------------------------------------------------------------------------ the spec
@dataclass
class ResourceSpec:
    """One resource, validated from ``[resources.<name>]``."""

    name: str
    path: str
    method: str = "GET"
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    record_path: str = ""
    primary_key: list[str] = field(default_factory=list)
    paginator: Any = None
    format: str = "auto"
    namespaces: dict[str, str] = field(default_factory=dict)
    parent: str = ""
    parent_params: dict[str, str] = field(default_factory=dict)
    parent_filter: Filter = field(default_factory=Filter)
    date_range: DateRange | None = None
    incremental: dict[str, Any] = field(default_factory=dict)
    on_error: str = "skip"
    add_fields: dict[str, Any] = field(default_factory=dict)
    inherit_parent: bool = False
    keep: dict[str, str] = field(default_factory=dict)
    filter: Filter = field(default_factory=Filter)
    #: a text body template (``body = "..."``), rendered like ``json`` (see :mod:`._templates`)
    body: str | None = None
    #: ``{"query": document, "variables": template}`` for a GraphQL resource, else None
    graphql: dict[str, Any] | None = None
    #: False when the window goes only into the body (``{window.start}``, no ``start_param``)
    window_in_query: bool = True
    #: the body template uses ``{cursor}`` (re-rendered for every page)
    body_uses_cursor: bool = False
    #: the checked ``soap`` table (:mod:`._soap`): faults in answers become errors; else None
    soap: dict[str, Any] | None = None
    #: the checked CSV options (:mod:`._csv`) of a CSV export resource, else None
    csv: dict[str, Any] | None = None
    #: the answers' text encoding when the provider does not declare it right (``encoding``,
    #: see :func:`._body.decode_text`); "" follows the body's BOM, declaration and charset
    encoding: str = ""

    @classmethod
    def from_profile(cls, name: str, table: Mapping[str, Any], *, profile: Any) -> ResourceSpec:
        key = f"resources.{name}"
        unknown = [k for k in table if k not in RESOURCE_KEYS]
        if unknown:
            raise ProfileError(
                f"resource {name!r} has unknown key(s) {unknown}"
                f"{did_you_mean(unknown[0], RESOURCE_KEYS)}",
                key=f"{key}.{unknown[0]}",
                hint=f"Known keys: {', '.join(RESOURCE_KEYS)}.",
            )
        graphql = check_graphql_table(table, profile=profile, key=key)
        if graphql is not None:
            table = {"path": "", "method": "POST", **table}
        soap = check_soap_table(table, profile=profile, key=key)
        if soap is not None:
            if graphql is not None or "json" in table:
                raise ProfileError(
                    f"resource {name!r}: a SOAP resource sends its envelope, not json or graphql",
                    key=f"{key}.soap",
                )
            table = {"path": "", "method": "POST", "format": "xml", **table}
            if soap["envelope"] is not None:
                table["body"] = soap["envelope"]
            headers = dict(table.get("headers", {}))
            given = {k.lower() for k in headers}
            if "content-type" not in given:
                ctype = soap["content_type"]
                if soap["action"] and soap["version"] == "1.2":
                    ctype += f'; action="{soap["action"]}"'
                headers["Content-Type"] = ctype
            if soap["action"] and soap["version"] == "1.1" and "soapaction" not in given:
                headers["SOAPAction"] = f'"{soap["action"]}"'
            table["headers"] = headers
        encoding = check_encoding(table.get("encoding"), key=f"{key}.encoding")
        csv_opts = check_csv_table(table, key=key)
        if csv_opts is not None:
            table = {**table, "format": "csv"}
            if not csv_opts["encoding"] and encoding:  # csv.encoding wins
                csv_opts.update(encoding=encoding, encoding_key=f"{key}.encoding")
        if not isinstance(table.get("path"), str):
            raise ProfileError(f"resource {name!r} needs a path", key=f"{key}.path")
        if sum(k in table for k in ("json", "body", "graphql")) > 1:
            raise ProfileError(
                f"resource {name!r}: json, body and graphql are three kinds of request body; "
                "give one",
                key=f"{key}.body",
                hint="json = {...} sends JSON, body = '...' sends text, graphql = {...} a query.",
            )
        body = table.get("body")
        if body is not None and not isinstance(body, str):
            raise ProfileError(
                f"{key}.body must be text (a template), got {type(body).__name__}",
                key=f"{key}.body",
                hint='e.g. body = "home={parent.home}&from={window.start}"',
            )
        pk = table.get("primary_key", [])
        pk = [pk] if isinstance(pk, str) else list(pk)
        fmt = str(table.get("format", "auto"))
        if fmt not in FORMATS:
            raise ProfileError(f"{key}.format must be one of {FORMATS}", key=f"{key}.format")
        on_error = str(table.get("on_error", "skip"))
        if on_error not in ("skip", "raise"):
            raise ProfileError(f"{key}.on_error must be 'skip' or 'raise'", key=f"{key}.on_error")
        parent = str(table.get("parent", ""))
        parent_params = dict(table.get("parent_params", {}))
        if parent and not parent_params:
            raise ProfileError(
                f"resource {name!r} has a parent but no parent_params",
                key=f"{key}.parent_params",
                hint='Say which parent field fills which path parameter: { site_id = "id" }.',
            )
        used = placeholders(table["path"]).union(
            *(placeholders(v) for v in dict(table.get("params", {})).values())
        )
        declared = getattr(profile, "variables", None)
        if declared is not None:
            declared = {**declared, **getattr(profile, "missing_variables", {})}
        template_used: set[tuple[str, str]] = set()
        for tkey, template in (
            ("json", table.get("json")),
            ("body", body),
            ("graphql.variables", (graphql or {}).get("variables")),
        ):
            template_used |= check_template(
                template,
                key=f"{key}.{tkey}",
                parent_params=parent_params,
                variables=declared,
                has_window=table.get("date_range") not in (None, False),
            )
        used = used | {n for space, n in template_used if space == "parent"}
        missing = [p for p in parent_params if p not in used]
        if missing:
            raise ProfileError(
                f"parent_params {missing} do not appear as {{param}} in path {table['path']!r}"
                " or in a params value, nor as {parent.<name>} in the request body",
                key=f"{key}.parent_params",
                hint="Write the placeholder in the path or a query parameter: "
                'params = { meters = "{meter_uid}" }, or in the body: "{parent.meter_uid}".',
            )
        incremental = dict(table.get("incremental", {}))
        if incremental and not incremental.get("cursor_path"):
            raise ProfileError(
                f"{key}.incremental needs cursor_path", key=f"{key}.incremental.cursor_path"
            )
        add_fields = table.get("add_fields", {})
        if not isinstance(add_fields, Mapping) or any(str(k).startswith("_") for k in add_fields):
            raise ProfileError(
                f"{key}.add_fields must be a table of constant fields (names not starting with _)",
                key=f"{key}.add_fields",
                hint='e.g. add_fields = { commodity = "gas" }',
            )
        keep = table.get("keep", {})
        if (
            not isinstance(keep, Mapping)
            or any(str(k).startswith("_") or not isinstance(v, str) for k, v in keep.items())
            or (keep and not str(table.get("record_path", "")).strip())
        ):
            raise ProfileError(
                f"{key}.keep must be a table of field = ancestor path (names not starting with _),"
                " on a resource with a record_path",
                key=f"{key}.keep",
                hint='e.g. record_path = "properties[*].meter_points[*]" with '
                'keep = { property_id = "properties[*].id" }',
            )
        paginator = table.get(
            "paginator", profile.section("paginator") or None if profile else None
        )
        make_paginator(paginator, key=f"{key}.paginator")  # validate now, not mid-sync
        tz = getattr(profile, "timezone", "UTC")
        return cls(
            name=name,
            path=table["path"],
            method=str(table.get("method", "GET")).upper(),
            params={
                **table.get("params", {}),
                **secrets_from_env_table(table.get("params_env"), f"{key}.params_env"),
            },
            json=table.get("json"),
            headers={
                **table.get("headers", {}),
                **secrets_from_env_table(table.get("headers_env"), f"{key}.headers_env"),
            },
            record_path=str(table.get("record_path", "")),
            primary_key=pk,
            paginator=paginator,
            format=fmt,
            namespaces=dict(table.get("namespaces", {})),
            parent=parent,
            parent_params=parent_params,
            parent_filter=compile_parent_filter(
                table.get("parent_filter"), key=f"{key}.parent_filter", get=find_value
            ),
            date_range=make_date_range(
                table.get("date_range"), timezone=tz, key=f"{key}.date_range"
            ),
            incremental=incremental,
            on_error=on_error,
            add_fields=dict(add_fields),
            inherit_parent=bool(table.get("inherit_parent", False)),
            keep={str(k): str(v) for k, v in keep.items()},
            filter=compile_filter(table.get("where"), table.get("skip"), key=key, get=find_value),
            body=body,
            graphql=graphql,
            window_in_query=not (
                any(space == "window" for space, _n in template_used)
                and "start_param" not in dict(table.get("date_range") or {})
            ),
            body_uses_cursor=("cursor", "") in template_used,
            soap=soap,
            csv=csv_opts,
            encoding=encoding,
        )

    def key_of(self, record: Mapping[str, Any]) -> str | None:
        """The record's primary key as text (None when the resource has none)."""
        if not self.primary_key:
            return None
        return "|".join(str(find_value(record, p)) for p in self.primary_key)


# ------------------------------------------------------------------------------ results
@dataclass
class FetchReport:
    """How complete one resource's fetch was.

    Attributes
    ----------
    pages, records : int
        Pages read and records kept.
    reported_total : int or None
        Sum of the record counts the provider announced (``total_path``), where it did.
    total_mismatches : list of dict
        Sequences (parent x window) whose record count differs from the announced total.
    duplicates : int
        Records whose primary key was already seen in this fetch; ``duplicate_ids`` samples them.
    failed_pages : list of dict
        ``{parent, window, url, error}`` for every sequence abandoned after retries.
    requests_sent : int
        HTTP requests (retries and redirects included).
    windows, parents : int
        Date windows and parent records fetched.
    learned_max_days : int or None
        The largest date span the provider accepted after "range too large" answers.
    watermarks : dict of str to str
        Per parent key (``""`` without parent): the largest cursor value in completed windows.
    stopped : str
        Why the fetch stopped early (``"quota"``), or ``""``.
    filtered : dict of str to int
        Records dropped by the resource's ``where`` / ``skip``, per rule (``where.status``).
    incomplete : list of dict
        ``{parent, window, why}`` for every sequence (parent x window) that was not fetched
        completely: a failed page, fewer or more records than the provider announced (an empty
        or short page included), or a duplicate record. Callers hold back what such a sequence
        covers instead of replacing committed data with it.
    """

    resource: str
    pages: int = 0
    records: int = 0
    reported_total: int | None = None
    total_mismatches: list[dict[str, Any]] = field(default_factory=list)
    duplicates: int = 0
    duplicate_ids: list[str] = field(default_factory=list)
    failed_pages: list[dict[str, Any]] = field(default_factory=list)
    requests_sent: int = 0
    windows: int = 0
    parents: int = 0
    learned_max_days: int | None = None
    watermarks: dict[str, str] = field(default_factory=dict)
    stopped: str = ""
    elapsed_s: float = 0.0
    incomplete: list[dict[str, Any]] = field(default_factory=list)
    filtered: dict[str, int] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """True when nothing failed, nothing repeated, totals agree and nothing stopped early."""
        return not (
            self.failed_pages
            or self.duplicates
            or self.total_mismatches
            or self.stopped
            or self.incomplete
        )

    def summary(self) -> str:
        total = "" if self.reported_total is None else f" of {self.reported_total} announced"
        flags = []
        if self.duplicates:
            flags.append(f"{self.duplicates} duplicate ids")
        if self.failed_pages:
            flags.append(f"{len(self.failed_pages)} failed")
        if self.total_mismatches:
            flags.append(f"{len(self.total_mismatches)} total mismatches")
        if self.stopped:
            flags.append(f"stopped: {self.stopped}")
        if self.filtered:
            flags_f = ", ".join(f"{n} by {r}" for r, n in self.filtered.items())
            total += f" ({sum(self.filtered.values())} filtered out: {flags_f})"
        state = "complete" if self.complete else "INCOMPLETE (" + ", ".join(flags) + ")"
        return (
            f"{self.resource}: {self.records} records{total} in {self.pages} pages, "
            f"{self.requests_sent} requests; {state}"
        )


@dataclass
class FetchResult:
    """Records of one resource, exactly as the provider sent them (children carry ``_parent``)."""

    records: list[dict[str, Any]]
    report: FetchReport


class Page(list[dict[str, Any]]):
    """One page of records, also carrying how it was fetched (for notebooks and ``on_page``)."""

    def __init__(
        self,
        records: Iterable[dict[str, Any]],
        *,
        resource: str,
        number: int,
        request: PageRequest,
        response: PageResponse,
        paginator: Paginator,
        parent: dict[str, Any] | None = None,
        window: Window | None = None,
    ) -> None:
        super().__init__(records)
        self.resource, self.number = resource, number
        self.request, self.response, self.paginator = request, response, paginator
        self.parent, self.window = parent, window

    def __repr__(self) -> str:
        return f"Page({self.resource!r}, #{self.number}, {len(self)} records, url={redact_url(self.response.url)!r})"


# ---------------------------------------------------------------------------- watermarks
def _as_datetime(value: Any, tz: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return parse_when(value, tz)
    if isinstance(value, str) and value[:4].isdigit():
        try:
            return parse_when(value, tz)
        except ProfileError:
            return None
    return None


def _later(a: Any, b: Any, tz: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    da, db = _as_datetime(a, tz), _as_datetime(b, tz)
    if da is not None and db is not None:
        return a if da >= db else b
    return a if str(a) >= str(b) else b


def _parent_key(params: Mapping[str, Any] | None) -> str:
    return "&".join(f"{k}={v}" for k, v in sorted((params or {}).items()))


# ----------------------------------------------------------------------------- connector
class Connector:
    """Runs resources of one profile through a :class:`Client`: the escape hatch for odd APIs.

    Override only the step that differs; each receives the :class:`ResourceSpec`:

    ``build_request(spec, *, path_params, window, watermark)`` -> :class:`PageRequest`
        The first request of a sequence (path, params, date range, incremental filter).
    ``parse_response(spec, reply)`` -> :class:`PageResponse`
        The decoded body, headers and URL the paginator and ``records`` see.
    ``records(spec, response)`` -> list of dict
        Records of one page (default: ``record_path``; XML elements become dicts).
    ``paginator(spec)`` -> :class:`Paginator`
        A fresh paginator per sequence (default: the resource's, else the profile's).
    ``prepare_raw(profile, raw)`` (classmethod) -> ``(raw, report)``
        Provider rules applied to fetched records before the mapping runs (e.g. dropping
        measurements Scaler cannot import, with a quarantine report). Default: unchanged.
        :func:`~scaler_workbench.pipeline.run_pipeline` calls it, so syncs, notebooks and the
        CLI apply the same rules.
    """

    #: True when the connector reads a ``file://`` base URL (a provider's export file) itself:
    #: :func:`source_file_profile` refuses a file for connectors that cannot read one.
    reads_files: bool = False

    @classmethod
    def prepare_raw(
        cls, profile: Any, raw: Mapping[str, Any]
    ) -> tuple[Mapping[str, Any], pd.DataFrame | None]:
        """Return ``raw`` for the mapping, and quarantine rows (``schema.QUARANTINE``) or None."""
        return raw, None

    def __init__(
        self, profile: Any, *, client: Client | None = None, clock: Clock | None = None
    ) -> None:
        self.profile = profile
        self.client = client or Client(profile, clock=clock)
        self._specs: dict[str, ResourceSpec] = {}
        #: per resource: path parameters -> the parent's own ``_parent`` (``inherit_parent``)
        self._ancestors: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {}
        self._rng = __import__("random").Random()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(provider={self.profile.name!r}, client={self.client!r})"

    # -- specs ---------------------------------------------------------------------------
    def resource(self, resource: str | Mapping[str, Any] | ResourceSpec) -> ResourceSpec:
        """The spec of a profile resource name, an inline table, or a spec."""
        if isinstance(resource, ResourceSpec):
            return resource
        if isinstance(resource, Mapping):
            return ResourceSpec.from_profile(
                str(resource.get("name", "inline")),
                {k: v for k, v in resource.items() if k != "name"},
                profile=self.profile,
            )
        if resource not in self._specs:
            tables = self.profile.resources
            if resource not in tables:
                raise ProfileError(
                    f"profile {self.profile.name!r} has no resource {resource!r}",
                    key=f"resources.{resource}",
                    hint=f"Known resources: {', '.join(tables) or '(none)'}.",
                )
            self._specs[resource] = ResourceSpec.from_profile(
                resource, tables[resource], profile=self.profile
            )
        return self._specs[resource]

    # -- overridable steps -------------------------------------------------------------
    def paginator(self, spec: ResourceSpec) -> Paginator:
        return make_paginator(spec.paginator, key=f"resources.{spec.name}.paginator")

    def build_request(
        self,
        spec: ResourceSpec,
        *,
        path_params: Mapping[str, Any] | None = None,
        window: Window | None = None,
        watermark: Any = None,
    ) -> PageRequest:
        try:
            path = spec.path.format(
                **{k: quote(str(v), safe="") for k, v in (path_params or {}).items()}
            )
        except (KeyError, IndexError) as exc:
            raise ProfileError(
                f"resource {spec.name!r}: path {spec.path!r} needs parameter {exc}",
                key=f"resources.{spec.name}.path",
                hint="Give it through parent/parent_params, or path_params=... in iter_pages().",
            ) from None
        params = {k: _fill_params(v, path_params) for k, v in spec.params.items()}
        if window is not None and spec.date_range is not None and spec.window_in_query:
            params.update(spec.date_range.params(window))
        elif watermark is not None and spec.incremental.get("param"):
            fmt = DateRange(
                start_param=spec.incremental["param"],
                end_param="",
                format=spec.incremental.get("format", "datetime"),
                timezone=self.profile.timezone,
                chunk=None,
            )
            params.update(fmt.params((watermark, watermark)))
        request = PageRequest(
            url=self.client.url(path),
            params=params,
            method=spec.method,
            headers=dict(spec.headers),
            json=spec.json,
            base_url=self.client.base_url,
        )
        self.render_body(spec, request, self.template_context(spec, path_params, window))
        return request

    def template_context(
        self,
        spec: ResourceSpec,
        path_params: Mapping[str, Any] | None,
        window: Window | None,
        cursor: Any = None,
    ) -> TemplateContext:
        """The values of one request's body placeholders (see :mod:`._templates`)."""
        bounds = (
            dict(zip(("start", "end"), spec.date_range.bounds(window), strict=True))
            if window is not None and spec.date_range is not None
            else None
        )
        return TemplateContext(
            parent=dict(path_params or {}),
            variables=_typed_variables(self.profile),
            window=bounds,
            cursor=cursor,
        )

    def render_body(self, spec: ResourceSpec, request: PageRequest, ctx: TemplateContext) -> None:
        """Fill ``request``'s body from the resource's ``json``, ``body`` or ``graphql``."""
        if spec.graphql is not None:
            request.json = {
                "query": spec.graphql["query"],
                "variables": render_json(spec.graphql.get("variables") or {}, ctx),
            }
            request.headers.setdefault("Content-Type", "application/json")
        elif spec.body is not None:
            request.json = None
            ctype = next((v for k, v in request.headers.items() if k.lower() == "content-type"), "")
            # an XML body (a SOAP envelope) gets its substituted values escaped (&, <, >)
            escape = xml_escape if "xml" in str(ctype).lower() else None
            request.data = render_text(spec.body, ctx, escape=escape)
        elif spec.json is not None:
            request.json = render_json(spec.json, ctx)

    def send_page(self, spec: ResourceSpec, request: PageRequest) -> Reply:
        """Send one page's request; a GraphQL resource's ``errors`` become errors.

        A GraphQL rate-limit error is retried with the client's backoff (on its clock) up to
        ``max_attempts``; one whose message matches the quota or ban pattern stops at once
        (:class:`QuotaExhaustedError`).
        """
        attempt = 0
        check = self._soap_check(spec) if spec.soap is not None else None
        while True:
            reply = self.client.send(
                request,
                fmt=spec.format,
                date_range=spec.date_range,
                check=check,
                encoding=spec.encoding,
            )
            if spec.graphql is None:
                return reply
            url = reply.response.url
            try:
                raise_for_graphql_errors(reply.body, url=url, provider=self.profile.name)
            except GraphQLRateLimited as exc:
                attempt += 1
                if self.client.retry.is_quota(429, None, exc.message):
                    raise QuotaExhaustedError(
                        f"the provider's quota is spent (GraphQL error): {exc.message}",
                        provider=self.profile.name,
                        url=url,
                    ) from None
                if attempt >= self.client.retry.max_attempts:
                    raise ProviderUnavailableError(
                        f"{exc.message} after {attempt} attempts",
                        provider=self.profile.name,
                        url=url,
                    ) from None
                wait = self.client.retry.wait(attempt, None, self._rng)
                log.info("%s: GraphQL rate limit; retrying in %.1fs", spec.name, wait)
                self.client.clock.sleep(wait)
                continue
            return reply

    def _soap_check(self, spec: ResourceSpec) -> Callable[[Any], ConnectorError | None]:
        """A check of every answer of a SOAP resource: its fault as the matching error."""
        soap = spec.soap or {}

        def check(response: Any) -> ConnectorError | None:
            fault = fault_of_response(
                response.content,
                response.headers.get("Content-Type", ""),
                redact_url(response.url),
                encoding=spec.encoding,
            )
            if fault is None:
                return None
            return fault_error(
                fault,
                soap,
                retry=self.client.retry,
                provider=self.profile.name,
                url=response.url,
                status=response.status_code,
            )

        return check

    def parse_response(self, spec: ResourceSpec, reply: Reply) -> PageResponse:
        return PageResponse(
            url=reply.response.url,
            status=reply.response.status_code,
            headers=dict(reply.response.headers),
            body=reply.body,
            namespaces=spec.namespaces,
        )

    def records(self, spec: ResourceSpec, response: PageResponse) -> list[dict[str, Any]]:
        if spec.csv is not None:
            body = response.body
            if body is not None and not isinstance(body, RawBody):
                raise ResponseParseError(
                    f"resource {spec.name!r} reads CSV but got a decoded "
                    f"{type(body).__name__} body",
                    url=redact_url(response.url),
                )
            return read_csv_records(
                body.content if body is not None else None,
                spec.csv,
                content_type=body.content_type if body is not None else "",
                url=redact_url(response.url),
            )
        if spec.keep:
            return select_with_ancestors(
                response.body,
                spec.record_path,
                spec.keep,
                url=redact_url(response.url),
                namespaces=spec.namespaces,
            )
        return select_records(
            response.body,
            spec.record_path,
            namespaces=spec.namespaces,
            url=redact_url(response.url),
        )

    # -- one sequence of pages -----------------------------------------------------------
    def iter_pages(
        self,
        resource: str | Mapping[str, Any] | ResourceSpec,
        *,
        path_params: Mapping[str, Any] | None = None,
        window: Window | None = None,
        params: Mapping[str, Any] | None = None,
        watermark: Any = None,
        paginator: Paginator | str | Mapping[str, Any] | None = None,
    ) -> Iterator[Page]:
        """Yield the pages of one sequence (one parent, one window) of a resource."""
        spec = self.resource(resource)
        pager = self.paginator(spec) if paginator is None else make_paginator(paginator)
        request = self.build_request(
            spec, path_params=path_params, window=window, watermark=watermark
        )
        request.params.update(params or {})
        pager.init_request(request)
        number = 0
        while True:
            reply = self.send_page(spec, request)
            response = self.parse_response(spec, reply)
            records = self.records(spec, response)
            pager.update_state(response, records)
            number += 1
            page = Page(
                records,
                resource=spec.name,
                number=number,
                request=request,
                response=response,
                paginator=pager,
                parent=dict(path_params) if path_params else None,
                window=window,
            )
            yield page
            if not pager.has_next_page:
                return
            request = PageRequest(
                url=request.url,
                params=dict(request.params),
                method=request.method,
                headers=dict(request.headers),
                json=copy.deepcopy(request.json),
                base_url=request.base_url,
                data=request.data,
            )
            if spec.body_uses_cursor:
                cursor = getattr(pager, "cursor", None)
                self.render_body(
                    spec, request, self.template_context(spec, path_params, window, cursor)
                )
            pager.update_request(request)

    # -- a whole resource ------------------------------------------------------------------
    def parent_values(
        self, spec: ResourceSpec, parent_records: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Path parameters for each (filtered, de-duplicated) parent record, in order.

        A ``parent_params`` path with ``[*]`` yields one entry per value it selects (several
        wildcard paths are zipped element-wise, e.g. ``meters[*].serial_number``).
        """
        out: list[dict[str, Any]] = []
        seen: set[tuple[Any, ...]] = set()
        ancestors: dict[tuple[Any, ...], dict[str, Any]] = {}
        if spec.inherit_parent:
            self._ancestors[spec.name] = ancestors
        for rec in parent_records:
            if not spec.parent_filter.keeps(rec):
                continue
            for values in _param_sets(rec, spec.parent_params):
                if any(v in (None, "") for v in values.values()):
                    log.warning(
                        "%s: a parent record lacks %s; skipped", spec.name, spec.parent_params
                    )
                    continue
                key = tuple(values.items())
                if key not in seen:
                    seen.add(key)
                    out.append(values)
                    inherited = rec.get("_parent") if spec.inherit_parent else None
                    if isinstance(inherited, Mapping):
                        ancestors[key] = dict(inherited)
        return out

    def fetch_resource(
        self,
        resource: str | ResourceSpec,
        *,
        parent_records: list[dict[str, Any]] | None = None,
        since: Any = None,
        until: Any = None,
        watermarks: Mapping[str, Any] | Any = None,
        progress: bool = False,
        on_page: Callable[[Page], Any] | None = None,
    ) -> FetchResult:
        """Fetch every sequence of one resource (parents x date windows x pages).

        ``watermarks`` is a watermark for the whole resource, or a mapping of parent keys
        (as in :attr:`FetchReport.watermarks`) to watermarks. When the provider's quota is spent,
        :class:`QuotaExhaustedError` is raised with ``partial`` set to this resource's result.
        """
        spec = self.resource(resource)
        report = FetchReport(resource=spec.name)
        records: list[dict[str, Any]] = []
        started, sent0 = time.perf_counter(), self.client.requests_sent
        if spec.parent:
            sequences: list[dict[str, Any] | None] = list(
                self.parent_values(spec, parent_records or [])
            )
            report.parents = len(sequences)
        else:
            sequences = [None]
        learner = SpanLearner(max_days=self.client.learned_spans.get(spec.name))
        seen_keys: set[str] = set()
        bar = _progress_bar(spec.name, len(sequences), progress)
        _emit_event(FetchEvent("resource", resource=spec.name, sequences=len(sequences)))
        try:
            for path_params in sequences:
                pkey = _parent_key(path_params)
                wm = _watermark_for(watermarks, pkey)
                self._fetch_sequence(
                    spec,
                    path_params,
                    pkey,
                    wm,
                    since,
                    until,
                    learner,
                    report,
                    records,
                    seen_keys,
                    on_page,
                )
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(records=len(records), pages=report.pages)
        except QuotaExhaustedError as exc:
            report.stopped = "quota"
            exc.partial = FetchResult(records, report)  # type: ignore[attr-defined]
            raise
        finally:
            if bar is not None:
                bar.close()
            if spec.filter:
                records[:], report.filtered = spec.filter.split(records)
                for rule, n in report.filtered.items():
                    log.warning(
                        "%s: %d record(s) filtered out by %s (resources.%s)",
                        spec.name,
                        n,
                        rule,
                        spec.name,
                    )
            report.records = len(records)
            report.requests_sent = self.client.requests_sent - sent0
            report.learned_max_days = learner.max_days
            report.elapsed_s = time.perf_counter() - started
            if learner.max_days:
                self.client.learned_spans[spec.name] = learner.max_days
        log.info("%s", report.summary())
        return FetchResult(records, report)

    def _windows(
        self, spec: ResourceSpec, since: Any, until: Any, wm: Any, learner: SpanLearner
    ) -> list[Window | None]:
        dr = spec.date_range
        if dr is None:
            return [None]
        start = since
        if wm is not None:
            lookback = timedelta(days=float(spec.incremental.get("lookback_days", 0)))
            resume = _as_datetime(wm, dr.zone)
            if resume is not None:
                resume -= lookback
                floor = (
                    dr.resolve(since, until, now=self.client.clock.now())[0]
                    if (since or dr.since)
                    else None
                )
                start = resume if floor is None or resume > floor else floor
        return list(
            dr.windows(start, until, now=self.client.clock.now(), max_days=learner.max_days)
        )

    def _fetch_sequence(
        self,
        spec: ResourceSpec,
        path_params: dict[str, Any] | None,
        pkey: str,
        wm: Any,
        since: Any,
        until: Any,
        learner: SpanLearner,
        report: FetchReport,
        records: list[dict[str, Any]],
        seen_keys: set[str],
        on_page: Callable[[Page], Any] | None,
    ) -> None:
        cursor_path = spec.incremental.get("cursor_path", "")
        tz = (
            spec.date_range.zone
            if spec.date_range
            else __import__("zoneinfo").ZoneInfo(self.profile.timezone)
        )
        new_wm: Any = None
        frozen = False
        queue: deque[Window | None] = deque(self._windows(spec, since, until, wm, learner))
        while queue:
            window = queue.popleft()
            if (
                window is not None
                and learner.max_days
                and (window[1] - window[0]) > timedelta(days=learner.max_days, hours=1)
            ):
                queue.extendleft(
                    reversed(split_range(*window, chunk=None, max_days=learner.max_days))
                )
                continue
            kept: list[dict[str, Any]] = []
            pages: list[Page] = []
            try:
                for page in self.iter_pages(
                    spec, path_params=path_params, window=window, watermark=wm
                ):
                    pages.append(page)
                    if path_params:
                        stamp = {
                            **self._ancestors.get(spec.name, {}).get(
                                tuple(path_params.items()), {}
                            ),
                            **path_params,
                        }
                        for rec in page:
                            rec["_parent"] = dict(stamp)
                    if spec.add_fields:
                        for rec in page:
                            for k, v in spec.add_fields.items():
                                rec.setdefault(k, v)
                    kept.extend(page)
                    _emit_event(FetchEvent("page", resource=spec.name, records=len(page)))
                    if on_page is not None:
                        on_page(page)
            except RangeTooLargeError as exc:
                if window is None or spec.date_range is None or not spec.date_range.learn:
                    raise
                try:
                    halves = learner.halve(window)
                except ValueError:
                    raise exc from None
                log.info("%s: range too large; trying %d-day windows", spec.name, learner.max_days)
                queue.extendleft(reversed(halves))
                continue
            except QuotaExhaustedError:
                records.extend(kept)
                report.pages += len(pages)
                raise
            except ConnectorError as exc:
                # no retry can fix bad credentials or a looping paginator; a 403 on one path is
                # a permission on that parent, so the rest of the resource is still fetched
                fatal = isinstance(exc, PaginationError) or (
                    isinstance(exc, AuthError) and getattr(exc, "status", None) != 403
                )
                if fatal or spec.on_error == "raise":
                    raise
                report.failed_pages.append(
                    {
                        "parent": path_params,
                        "window": _window_text(window),
                        "url": getattr(exc, "url", None),
                        "error": f"{type(exc).__name__}: {exc.message}",
                        "status": getattr(exc, "status", None),
                    }
                )
                report.incomplete.append(
                    {
                        "parent": path_params,
                        "window": _window_text(window),
                        "why": f"failed: {type(exc).__name__}: {exc.message}",
                    }
                )
                records.extend(kept)
                report.pages += len(pages)
                # short: the whole message (with the provider's body) is in failed_pages, and in
                # the one error line when the whole resource failed
                status = getattr(exc, "status", None)
                log.warning(
                    "%s%s: a page failed (%s%s, %s); continuing",
                    spec.name,
                    f" {pkey}" if pkey else "",
                    type(exc).__name__,
                    f" {status}" if status else "",
                    redact_url(getattr(exc, "url", None) or "") or "-",
                )
                frozen = True  # the watermark must not pass a window that failed
                continue
            report.windows += window is not None
            report.pages += len(pages)
            if pages:
                total = pages[-1].paginator.reported_total
                if total is not None:
                    report.reported_total = (report.reported_total or 0) + total
                    if total != len(kept):
                        report.total_mismatches.append(
                            {
                                "parent": path_params,
                                "window": _window_text(window),
                                "expected": total,
                                "fetched": len(kept),
                            }
                        )
                        report.incomplete.append(
                            {
                                "parent": path_params,
                                "window": _window_text(window),
                                "why": f"{len(kept)} record(s) where the provider announced "
                                f"{total}",
                            }
                        )
            repeated = 0
            for rec in kept:
                key = spec.key_of(rec)
                if key is not None:
                    if key in seen_keys:
                        repeated += 1
                        report.duplicates += 1
                        if len(report.duplicate_ids) < _MAX_KEPT:
                            report.duplicate_ids.append(key)
                    else:
                        seen_keys.add(key)
                if cursor_path and not frozen:
                    new_wm = _later(new_wm, find_value(rec, cursor_path), tz)
            if repeated:
                report.incomplete.append(
                    {
                        "parent": path_params,
                        "window": _window_text(window),
                        "why": f"{repeated} duplicate record(s)",
                    }
                )
            records.extend(kept)
            if cursor_path and new_wm is None and kept:
                _check_cursor_path(spec, cursor_path, kept)
            if cursor_path and new_wm is not None:
                report.watermarks[pkey] = str(new_wm)
        if cursor_path and pkey not in report.watermarks and wm is not None:
            report.watermarks[pkey] = str(wm)

    # -- several resources -----------------------------------------------------------------
    def fetch(
        self,
        resources: Iterable[str] | None = None,
        *,
        since: Any = None,
        until: Any = None,
        watermarks: Mapping[str, Any] | None = None,
        progress: bool = False,
        on_page: Callable[[Page], Any] | None = None,
    ) -> dict[str, FetchResult]:
        """Fetch resources (and the parents they need) in dependency order."""
        order = self.plan_order(resources)
        results: dict[str, FetchResult] = {}
        for name in order:
            spec = self.resource(name)
            parents = results[spec.parent].records if spec.parent else None
            try:
                results[name] = self.fetch_resource(
                    spec,
                    parent_records=parents,
                    since=since,
                    until=until,
                    watermarks=(watermarks or {}).get(name),
                    progress=progress,
                    on_page=on_page,
                )
            except QuotaExhaustedError as exc:
                partial = getattr(exc, "partial", None)
                if isinstance(partial, FetchResult):
                    results[name] = partial
                exc.partial = results  # type: ignore[attr-defined]
                raise
        return results

    def plan_order(self, resources: Iterable[str] | None = None) -> list[str]:
        """Resource names with every parent before its children (parents added as needed).

        Entity resources (those feeding ``[mapping.assets]`` / ``[mapping.meters]``, and their
        parents) come first whatever the profile's order, so a quota stop during usage keeps
        the assets and meters (:func:`entity_resources`).
        """
        wanted = list(resources) if resources is not None else list(self.profile.resources)
        entities = entity_resources(self.profile)
        wanted.sort(key=lambda n: n not in entities)  # stable: profile order within each group
        order: list[str] = []
        visiting: set[str] = set()

        def visit(name: str) -> None:
            if name in order:
                return
            if name in visiting:
                raise ProfileError(
                    f"resource parents form a cycle through {name!r}",
                    key=f"resources.{name}.parent",
                )
            visiting.add(name)
            spec = self.resource(name)
            if spec.parent:
                visit(spec.parent)
            visiting.discard(name)
            order.append(name)

        for name in wanted:
            visit(name)
        return order


def entity_resources(profile: Any) -> set[str]:
    """Resources feeding assets and meters (``[mapping.assets/meters] resource``, a name or a
    list), with every parent up their chains: fetched before usage resources."""
    resources = getattr(profile, "resources", {}) or {}
    mapping = profile.section("mapping") if hasattr(profile, "section") else {}
    names: set[str] = set()
    for table in ("assets", "meters"):
        sub = mapping.get(table) if isinstance(mapping, Mapping) else None
        res = sub.get("resource") if isinstance(sub, Mapping) else None
        for name in [res] if isinstance(res, str) else list(res or []):
            while isinstance(name, str) and name in resources and name not in names:
                names.add(name)
                parent = (
                    resources[name].get("parent") if isinstance(resources[name], Mapping) else ""
                )
                name = parent
    return names


def _typed_variables(profile: Any) -> dict[str, Any]:
    """``[variables]`` as resolved, a value declared as a number kept a number."""
    values = dict(getattr(profile, "variables", {}) or {})
    declared = (profile.section("variables") or {}) if hasattr(profile, "section") else {}
    for name, raw in declared.items() if isinstance(declared, Mapping) else []:
        if (
            name in values
            and isinstance(raw, int | float)
            and not isinstance(raw, bool)
            and values[name] == str(raw)
        ):
            values[name] = raw
    return values


def _window_text(window: Window | None) -> str | None:
    return None if window is None else f"{window[0].isoformat()}/{window[1].isoformat()}"


def _watermark_for(watermarks: Any, pkey: str) -> Any:
    if watermarks is None:
        return None
    if isinstance(watermarks, Mapping):
        return watermarks.get(pkey)
    return watermarks


def _param_sets(record: Mapping[str, Any], params: Mapping[str, str]) -> list[dict[str, Any]]:
    """Path parameters from one parent record; ``[*]`` paths fan out (zipped element-wise)."""
    fixed = {p: find_value(record, f) for p, f in params.items() if "[*]" not in f}
    wild = {p: f for p, f in params.items() if "[*]" in f}
    if not wild:
        return [fixed]
    columns = {p: walk_json(record, f)[0] for p, f in wild.items()}
    n = min(len(v) for v in columns.values())
    if any(len(v) != n for v in columns.values()):
        log.warning("parent_params %s select lists of different lengths; zipped to %d", wild, n)
    return [{**fixed, **{p: columns[p][i] for p in wild}} for i in range(n)]


def select_with_ancestors(
    body: Any,
    record_path: str,
    keep: Mapping[str, str],
    *,
    url: str = "",
    namespaces: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Records at a ``record_path`` that also carry fields of their ancestors.

    ``keep`` maps a new field name to a path that starts with a prefix of ``record_path`` (up
    to one of its steps) and goes on inside the ancestor reached there:
    ``record_path = "properties[*].electricity_meter_points[*]"`` with
    ``keep = { property_id = "properties[*].id" }`` gives each meter point the ``id`` of the
    property it was listed under; ``{ account = "number" }`` reads the body's top level. A kept
    field never overwrites one the record already has. An XML body is read the same way, by
    XPath steps with ``namespaces`` (``keep = { usage_point = "e:UsagePoint/e:title" }``, see
    :func:`~scaler_workbench.connectors._body.select_xml_with_ancestors`).

    Raises
    ------
    ResponseParseError
        The body is neither JSON nor XML, or a path is malformed.
    """
    if body is None:
        return []
    if isinstance(body, Element):
        return select_xml_with_ancestors(body, record_path, keep, namespaces=namespaces, url=url)
    if not isinstance(body, Mapping | list):
        raise ResponseParseError(
            f"keep reads ancestors of JSON or XML records, not of a {type(body).__name__} body",
            url=url,
            hint="Set format = 'json' or 'xml' on the resource.",
        )
    try:
        steps = json_steps(record_path)
        plans = []
        for name, path in keep.items():
            kst = json_steps(path)
            depth = 0
            while depth < min(len(steps), len(kst)) and kst[depth] == steps[depth]:
                depth += 1
            rest = ".".join(f"{n}{''.join(f'[{i}]' for i in idx)}" for n, idx in kst[depth:])
            plans.append((name, depth, rest))
    except ValueError as exc:
        raise ResponseParseError(f"bad record_path or keep path: {exc}", url=url) from exc

    out: list[dict[str, Any]] = []

    def emit(node: Any, trail: list[Any]) -> None:
        items = node if isinstance(node, list) else [node]
        kept = {}
        for name, depth, rest in plans:
            anc = trail[depth]
            kept[name] = (walk_json(anc, rest)[0] or [None])[0] if rest else anc
        for item in items:
            if isinstance(item, dict):
                rec = dict(item)
                for k, v in kept.items():
                    rec.setdefault(k, v)
                out.append(rec)
            elif item is not None:
                out.append({"value": item, **kept})

    def walk(node: Any, depth: int, trail: list[Any]) -> None:
        if depth == len(steps):
            emit(node, trail)
            return
        name, idx = steps[depth]
        if name:
            if not isinstance(node, Mapping) or name not in node:
                return
            node = node[name]
        values = [node]
        for i in idx:
            nxt: list[Any] = []
            for v in values:
                if isinstance(v, list):
                    if i == "*":
                        nxt.extend(v)
                    elif -len(v) <= int(i) < len(v):
                        nxt.append(v[int(i)])
            values = nxt
        for v in values:
            walk(v, depth + 1, [*trail, v])

    walk(body, 0, [body])
    return out


def _progress_bar(name: str, total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=name, unit="seq", leave=False)


# ------------------------------------------------------------------------- entry points
def source_file_profile(profile: Any, path: str | os.PathLike[str]) -> Any:
    """A copy of ``profile`` whose environment reads ``path`` instead of the provider's API.

    The copy's base URL is the file's ``file://`` URL (``base_url_env`` is ignored), so every
    resource is read from the file by a connector that can (``Connector.reads_files``, e.g.
    ``greenbutton`` for a Download My Data export); no credentials are needed.

    Parameters
    ----------
    profile : Profile
    path : path-like
        The provider's file.

    Returns
    -------
    Profile

    Raises
    ------
    ProfileError
        The profile's connector reads no files, or the file does not exist.
    """
    import copy
    import dataclasses

    cls = connector_class(profile)
    if not cls.reads_files:
        raise ProfileError(
            f"provider {profile.name!r}: its connector ({cls.__name__}) reads the API only, "
            "not a file",
            key="provider.connector",
            hint="Files are read by connectors that say so (e.g. connector = 'greenbutton').",
        )
    file = Path(os.fspath(path)).expanduser().resolve()
    if not file.is_file():
        raise ProfileError(
            f"source file {file} does not exist",
            key="from_file",
            hint="Give the path of the provider's export file (e.g. a Download My Data XML).",
        )
    clone = copy.deepcopy(profile)
    env = clone.env()
    clone.environments[env.name] = dataclasses.replace(
        env, base_url=file.as_uri(), base_url_env="", builtin_sandbox=False
    )
    table = clone.data.setdefault("environments", {}).setdefault(env.name, {})
    table.update({"base_url": file.as_uri()})
    for key in ("base_url_env", "builtin_sandbox"):
        table.pop(key, None)
    if getattr(clone, "template", None) is not None:  # the copy is its own TOML (variables filled)
        clone.template = None
    return clone


def fetch_resources(
    profile: Any,
    *,
    resources: Iterable[str] | None = None,
    since: str | date | datetime | None = None,
    until: str | date | datetime | None = None,
    environment: str | None = None,
    client: Client | None = None,
    clock: Clock | None = None,
    progress: bool = False,
    on_page: Callable[[Page], Any] | None = None,
    watermarks: Mapping[str, Any] | None = None,
) -> dict[str, FetchResult]:
    """Fetch a profile's resources: records exactly as sent, plus a completeness report each.

    Parameters
    ----------
    profile : Profile
    resources : iterable of str, optional
        Names to fetch (default: all); their parents are fetched first and returned too.
    since, until : date, datetime or ISO str, optional
        Date range for resources with ``date_range`` (defaults: ``date_range.since``/``until``,
        else until the end of today in the range's zone). Naive values are local to the zone.
    environment : str, optional
        Profile environment (default: the profile's).
    client : Client, optional
        A client to reuse (its learned spans and request log carry over).
    clock : Clock, optional
        For a new client: backoff, budget and token expiry (tests pass ``FakeClock``).
    progress : bool
        Show a tqdm progress bar per resource.
    on_page : callable, optional
        Called with each :class:`Page` as it arrives.
    watermarks : dict, optional
        Per resource: a watermark, or ``{parent_key: watermark}`` as in
        :attr:`FetchReport.watermarks` of the previous run. Resources with ``incremental``
        resume from ``watermark - lookback_days``.

    Returns
    -------
    dict of str to FetchResult

    Raises
    ------
    QuotaExhaustedError
        The quota is spent; ``exc.partial`` holds the results so far (resume next run).
    AuthError, PaginationError, ProfileError
        Problems no retry can fix. Other failures are recorded in ``report.failed_pages``.
    """
    own = client is None
    client = client or Client(profile, environment=environment, clock=clock)
    try:
        return connector_for(profile, client=client).fetch(
            resources,
            since=since,
            until=until,
            watermarks=watermarks,
            progress=progress,
            on_page=on_page,
        )
    finally:
        if own:
            client.close()
