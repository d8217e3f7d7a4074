"""The keys and enumerated values a profile may hold: checked when the profile is read.

A typo in a profile used to pass silently (``timezon``, ``max_deactivation_fractoin``,
``kind = "interval"``) and surface mid-sync or never. :func:`check_profile_keys` walks the parsed
TOML against :data:`SCHEMA` and :func:`check_profile_values` checks the enumerated values of
:data:`ENUMS`, both before any request, with a "did you mean" from :mod:`difflib`.

This module is the profile's *load-time* picture; each section is still validated in depth by
the module that owns it (``connectors.resources.RESOURCE_KEYS``, ``transform``'s source options,
``reconciliation.RECONCILE_KEYS``, the auth and paginator classes' options, ...).
``tests/test_profile_strict.py`` checks that this picture and the owners agree, so a key added
to an owner must be added here too (and documented in docs/profiles.md).

Schema nodes
------------
A node is a dict of key -> child node; ``"*"`` matches any key (names the profile author
chooses: resources, sources, aliases). A child of ``None`` is any value, not looked into.
A child dict is looked into only when the value is a table (``paginator = "none"`` is fine).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from scaler_workbench._filters import compile_filters, compile_parent_filter, exclude_list
from scaler_workbench._rules import resolve_rules
from scaler_workbench.exceptions import ProfileError

__all__ = [
    "AUTH_TYPES",
    "ENUMS",
    "PAGINATOR_TYPES",
    "SCHEMA",
    "check_filters",
    "check_profile_keys",
    "check_profile_values",
    "did_you_mean",
]

Node = dict[str, Any]


#: The keys of a resource's ``graphql``, ``soap`` and ``csv`` tables: one list each, read by
#: the strict schema below and by the connector modules that use them (``connectors._graphql``,
#: ``._soap``, ``._csv``).
GRAPHQL_KEYS = ("query", "variables")
SOAP_KEYS = ("envelope", "action", "version", "auth_fault", "busy_fault")
CSV_KEYS = (
    "delimiter",
    "decimal",
    "thousands",
    "numeric",
    "encoding",
    "header",
    "columns",
    "files",
    "quotechar",
)


def _keys(*names: str, **children: Any) -> Node:
    """A node whose ``names`` take any value and whose ``children`` are nodes."""
    node: Node = dict.fromkeys(names)
    node.update(children)
    return node


#: Builtin auth and paginator types (with the aliases their makers accept). A type registered
#: at run time (``register_auth`` / ``register_paginator``) is checked by its class alone.
AUTH_TYPES = (
    "api_key",
    "apikey",
    "basic",
    "http_basic",
    "bearer",
    "none",
    "oauth2",
    "oauth2_authorization_code",
    "oauth2_client_credentials",
    "oauth2_password",
)
PAGINATOR_TYPES = (
    "cursor",
    "header_link",
    "json_link",
    "link",
    "link_header",
    "next_url",
    "none",
    "offset",
    "page",
    "page_number",
    "single_page",
    "relay",  # GraphQL Relay connections (issue 18)
)

# Options of the builtin auth classes; each may also come from the environment (``name_env``).
_AUTH_OPTIONS = (
    "authorize_url",
    "client_auth",
    "client_id",
    "client_secret",
    "default_expires_in",
    "expiry_margin",
    "format",
    "header",
    "header_format",
    "key",
    "location",
    "name",
    "password",
    "pkce",
    "prefix",
    "redirect_uri",
    "refresh_token",
    "scope",
    "token",
    "token_file",
    "token_params",
    "token_url",
    "username",
)
_AUTH = _keys(
    "type",
    "headers_env",  # credential-like headers from the environment (issue 14)
    "params_env",  # credential-like query parameters from the environment (issue 14)
    *_AUTH_OPTIONS,
    *(f"{k}_env" for k in _AUTH_OPTIONS),
)

_PAGINATOR = _keys(
    "type",
    "base_page",
    "cursor_param",
    "cursor_path",
    "has_more_path",
    "limit",
    "limit_param",
    "max_pages",
    "next_url_path",
    "offset",
    "offset_param",
    "page_param",
    "page_size",
    "page_size_param",
    "rel",
    "relative_to",
    "stop_after_empty_page",
    "stop_on_short_page",
    "total_pages_path",
    "total_path",
    "cursor_in",  # cursor: "body" = only the body's {cursor} (issue 18)
    "page_info_path",  # relay (issue 18)
    "direction",  # relay: forward | backward (issue 18)
    "cursor_variable",  # relay (issue 18)
    "size_variable",  # relay (issue 18)
)

_DATE_RANGE = _keys(
    "start_param",
    "end_param",
    "format",
    "end_inclusive",
    "chunk",
    "max_days",
    "timezone",
    "since",
    "until",
    "too_large_status",
    "too_large_match",
    "learn",
    "lookback_days",
    too_large=_keys("status", "match"),
)

_RESOURCE = _keys(
    "path",
    "method",
    "params",
    "json",
    "headers",
    "params_env",
    "headers_env",
    "record_path",
    "primary_key",
    "format",
    "namespaces",
    "parent",
    "parent_params",
    "parent_filter",
    "on_error",
    "description",
    "add_fields",
    "inherit_parent",
    "keep",
    "where",  # record filters (scaler_workbench._filters)
    "skip",
    "body",  # a text body template (issue 18)
    "encoding",  # the answers' text encoding when not declared right (connectors._body)
    paginator=_PAGINATOR,
    graphql=_keys(*GRAPHQL_KEYS),  # GraphQL resources (issue 18)
    soap=_keys(*SOAP_KEYS),  # SOAP (issue 18)
    csv=_keys(*CSV_KEYS),  # CSV exports (issue 18)
    date_range=_DATE_RANGE,
    incremental=_keys("cursor_path", "lookback_days", "param", "format"),
)

# A field spec table: {path}, {const}, {join, sep}, {first}, with format / power_of_ten.
_FIELD_SPEC = _keys("path", "const", "join", "first", "sep", "format", "power_of_ten")
_FIELDS = {"*": _FIELD_SPEC}

_ENTITY_TABLE = _keys(
    "resource",
    "derive_from",
    "explode",
    "key_separator",
    "value_maps",
    "where",
    "skip",
    fields=_FIELDS,
)
_SOURCE_TABLE = _keys(
    "resource",
    "kind",
    "value_maps",
    "aggregate",
    "prorate",
    "end_inclusive",
    "to_consumption",
    "tz",
    "nonexistent",
    "explode",
    "duration",
    "key_separator",
    "unit",
    "derive_from",
    "policy",
    "role",  # issue 15 item 1: consumption | redelivery | production
    "split_sign",  # issue 15 item 15: signed net value -> consumption / redelivery
    "where",
    "skip",
    "provides",
    fields=_FIELDS,
)
_POLICY = _keys("duplicates", "prefer_actual", "overlaps", "overlap_tolerance_days", "report_gaps")

_HEATING_VALUE = _keys(
    "preset", "formula", "calorific_value", "kbtu_per_ft3", "kwh_per_m3", "by_subtype"
)

#: The whole profile. ``mapping.usage`` / ``mapping.readings`` are one source table or a
#: table of named sources (both spellings are read, see :func:`_source_tables`).
SCHEMA: Node = {
    "provider": _keys("name", "description", "timezone", "environment", "connector"),
    "environments": {
        "*": _keys(
            "base_url",
            "base_url_env",
            "builtin_sandbox",
            "allowed_hosts",
            "authorize_url",  # issue 15 item 14: an environment's own consent page
            "token_url",  # and token endpoint, replacing [auth]'s there
        ),
    },
    "variables": None,  # names chosen by the profile (see scaler_workbench._variables)
    "auth": _AUTH,
    "client": _keys(
        "timeout",
        "max_attempts",
        "backoff_base",
        "backoff_factor",
        "backoff_cap",
        "jitter",
        "retry_statuses",
        "quota_match",
        "ban_match",  # a 429 ban answer without Retry-After stops like a quota (issue 18)
        "offsite",
        "user_agent",
        "headers",
        "headers_env",
        "verify",
        budget=_keys(
            "requests_per_second", "requests_per_minute", "requests_per_day", "max_concurrency"
        ),
    ),
    "paginator": _PAGINATOR,
    "resources": {"*": _RESOURCE},
    "mapping": _keys(
        assets=_ENTITY_TABLE,
        meters=_ENTITY_TABLE,
        usage=None,  # checked by _check_sources
        readings=None,
        policy=_POLICY,
        exclude_meters=None,
    ),
    "units": _keys(
        "aliases",
        heating_value=_HEATING_VALUE,
        energy_factors={"*": _keys("factor", "unit", "note", "confirmed")},
    ),
    "validation": _keys(
        "rules", "missing_values"
    ),  # rules and their settings: _rules.resolve_rules checks them
    "sync": _keys("state", "lookback_days", "max_deactivation_fraction", "on_profile_change"),
    "notify": _keys("url_env", "on", "timeout"),
    "reconcile": {
        "*": _keys(
            "resource",
            "tolerance",
            "abs_tolerance",
            "unit",
            "end_inclusive",
            "description",
            fields=_keys("meter_id", "month", "start", "end", "total", "unit"),
        )
    },
    "extensions": None,  # each provider module checks its own table
}

_PERIODS = ("none", "day", "month", "reading", "period", "as-is", "false")

#: Enumerated values: dotted pattern (``*`` = any name) -> allowed values. Strings are compared
#: case-sensitively unless the owner reads them case-insensitively (``_CASELESS``).
ENUMS: dict[str, tuple[Any, ...]] = {
    "auth.location": ("header", "query"),
    "auth.client_auth": ("basic", "body"),
    "client.offsite": ("strip", "refuse"),
    "paginator.relative_to": ("request", "api_root"),
    "resources.*.paginator.relative_to": ("request", "api_root"),
    "resources.*.format": ("auto", "json", "xml", "csv"),
    "resources.*.on_error": ("skip", "raise"),
    "resources.*.method": ("GET", "POST"),
    "resources.*.incremental.format": (
        "date",
        "datetime",
        "datetime_utc",
        "epoch",
        "epoch_ms",
    ),
    "resources.*.date_range.format": ("date", "datetime", "datetime_utc", "epoch", "epoch_ms"),
    "mapping.usage.*.kind": ("intervals", "consumption"),
    "mapping.readings.*.kind": ("readings",),
    "mapping.usage.*.aggregate": _PERIODS,
    "mapping.usage.*.prorate": _PERIODS,
    "mapping.readings.*.to_consumption": _PERIODS,
    "mapping.usage.*.end_inclusive": (True, False, "auto"),
    "mapping.usage.*.nonexistent": ("quarantine", "shift_forward"),
    "mapping.readings.*.nonexistent": ("quarantine", "shift_forward"),
    "mapping.policy.duplicates": ("latest", "first", "error"),
    "mapping.policy.overlaps": ("flag", "quarantine", "later_wins"),
    "mapping.usage.*.policy.duplicates": ("latest", "first", "error"),
    "mapping.usage.*.policy.overlaps": ("flag", "quarantine", "later_wins"),
    "mapping.usage.*.role": ("consumption", "redelivery", "production"),
    "mapping.usage.*.split_sign": (True, False),
    "mapping.usage.*.provides": ("cost",),
}
#: Enumerated values that are a non-empty LIST of allowed values.
_LISTS = frozenset({"mapping.usage.*.provides"})
_CASELESS = frozenset(
    {
        "resources.*.method",
        "mapping.usage.*.aggregate",
        "mapping.usage.*.prorate",
        "mapping.readings.*.to_consumption",
    }
)
#: Values that are free text when they hold a ``%`` (a strftime pattern).
_STRFTIME = frozenset({"resources.*.date_range.format", "resources.*.incremental.format"})


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the closest of ``choices``, or ``""``.

    Parameters
    ----------
    word : str
        What the profile says.
    choices : iterable of str
        What it may say.

    Returns
    -------
    str
        The suggestion, ready to append to a message (empty when nothing is close).
    """
    pool = [str(c) for c in choices]
    close = difflib.get_close_matches(str(word), pool, n=1, cutoff=0.6)
    if not close:  # case slips ("Timezone") are not "close" to difflib
        close = [c for c in pool if c.lower() == str(word).lower()][:1]
    return f" (did you mean {close[0]!r}?)" if close else ""


def _source_tables(table: Any) -> dict[str, Any]:
    """``mapping.usage`` as ``{source: table}`` (a lone source table is its own source)."""
    if not isinstance(table, Mapping):
        return {}
    if "resource" in table or "fields" in table:
        return {str(table.get("resource", "")): table}
    return {str(k): v for k, v in table.items()}


def check_profile_keys(data: Mapping[str, Any], *, provider: str = "") -> None:
    """Refuse a key the profile's section does not know, naming the closest known one.

    Parameters
    ----------
    data : mapping
        The parsed profile TOML.
    provider : str
        The provider name, for the error.

    Raises
    ------
    ProfileError
        ``key`` is the dotted path of the first unknown key; the message says which known key is
        closest and the hint lists the known keys of that table.
    """
    for section, node in SCHEMA.items():
        value = data.get(section)
        if (
            section == "auth"
            and isinstance(value, Mapping)
            and "type" in value
            and str(value["type"]) not in AUTH_TYPES
        ):
            continue  # a registered auth type: its class checks its own options
        _walk(value, node, section, provider)
    if isinstance(data.get("validation"), Mapping):
        resolve_rules(data["validation"])  # unknown rules and settings, bad severities
    mapping = data.get("mapping")
    if isinstance(mapping, Mapping):
        for table in ("usage", "readings"):
            sources = mapping.get(table)
            lone = isinstance(sources, Mapping) and ("resource" in sources or "fields" in sources)
            for name, src in _source_tables(sources).items():
                where = f"mapping.{table}" if lone else f"mapping.{table}.{name}"
                _walk(src, _SOURCE_TABLE, where, provider)
    check_filters(data, provider=provider)


def check_filters(data: Mapping[str, Any], *, provider: str = "") -> None:
    """Compile every record filter of the profile, so a bad one fails before any request.

    ``[resources.X] where / skip / parent_filter``, the mapping sections' ``where`` / ``skip``
    and ``[mapping] exclude_meters`` (see :mod:`scaler_workbench._filters`).

    Parameters
    ----------
    data : mapping
        The parsed profile TOML.
    provider : str
        The provider name, for the error.

    Raises
    ------
    FilterError
        ``key`` names the condition; an unknown operator gets a "did you mean".
    """
    who = provider or None
    resources = data.get("resources")
    if isinstance(resources, Mapping):
        for name, res in resources.items():
            if isinstance(res, Mapping):
                compile_filters(res, key=f"resources.{name}", provider=who)
                compile_parent_filter(
                    res.get("parent_filter"), key=f"resources.{name}.parent_filter", provider=who
                )
    mapping = data.get("mapping")
    if not isinstance(mapping, Mapping):
        return
    exclude_list(mapping.get("exclude_meters"), key="mapping.exclude_meters", provider=who)
    for table in ("assets", "meters"):
        if isinstance(mapping.get(table), Mapping):
            compile_filters(mapping[table], key=f"mapping.{table}", provider=who)
    for table in ("usage", "readings"):
        sources = mapping.get(table)
        lone = isinstance(sources, Mapping) and ("resource" in sources or "fields" in sources)
        for name, src in _source_tables(sources).items():
            if isinstance(src, Mapping):
                key = f"mapping.{table}" if lone else f"mapping.{table}.{name}"
                compile_filters(src, key=key, provider=who)


def _walk(value: Any, node: Any, where: str, provider: str) -> None:
    if node is None or not isinstance(value, Mapping) or not isinstance(node, Mapping):
        return
    if where.endswith("paginator") and str(value.get("type", "none")) not in PAGINATOR_TYPES:
        return  # a registered paginator type: its class checks its own options
    for key, child in value.items():
        if key in node:
            _walk(child, node[key], f"{where}.{key}", provider)
        elif "*" in node:
            _walk(child, node["*"], f"{where}.{key}", provider)
        else:
            known = sorted(node)
            hint = f"Known keys of [{where}]: {', '.join(known)} (docs/profiles.md)."
            if "fields" in node:  # e.g. `revision = "version"` written beside `fields`
                hint += f" A record field the mapping reads goes under [{where}.fields]."
            raise ProfileError(
                f"unknown key {key!r} in [{where}]{did_you_mean(key, known)}",
                key=f"{where}.{key}",
                provider=provider or None,
                hint=hint,
            )


def _match(pattern: str, data: Mapping[str, Any]) -> Iterable[tuple[str, Any]]:
    """``(dotted key, value)`` for every place ``pattern`` names in ``data``."""
    nodes: list[tuple[str, Any]] = [("", data)]
    parts = pattern.split(".")
    for i, part in enumerate(parts):
        nxt: list[tuple[str, Any]] = []
        for path, node in nodes:
            if path in ("mapping.usage", "mapping.readings") and part == "*":
                items = _source_tables(node).items()
                lone = isinstance(node, Mapping) and ("resource" in node or "fields" in node)
                for name, v in items:
                    nxt.append((path if lone else f"{path}.{name}", v))
                continue
            if not isinstance(node, Mapping):
                continue
            if part == "*":
                nxt += [(f"{path}.{k}" if path else str(k), v) for k, v in node.items()]
            elif part in node:
                nxt.append((f"{path}.{part}" if path else part, node[part]))
        nodes = nxt
        if i == len(parts) - 1:
            return nodes
    return nodes


def check_profile_values(data: Mapping[str, Any], *, provider: str = "") -> None:
    """Refuse an enumerated value (``kind``, ``aggregate``, ``overlaps``, ...) not allowed.

    Parameters
    ----------
    data : mapping
        The parsed profile TOML.
    provider : str
        The provider name, for the error.

    Raises
    ------
    ProfileError
        ``key`` names the value's place; the message suggests the closest allowed value and the
        hint lists them all.
    """
    for pattern, allowed in ENUMS.items():
        for key, value in _match(pattern, data):
            if isinstance(value, Mapping):
                continue  # a table where a value is read (a paginator table, ...)
            if pattern in _STRFTIME and isinstance(value, str) and "%" in value:
                continue
            if pattern in _LISTS:
                _check_list(key, value, allowed, provider)
                continue
            probe = value.lower() if pattern in _CASELESS and isinstance(value, str) else value
            pool = [
                a.lower() if pattern in _CASELESS and isinstance(a, str) else a for a in allowed
            ]
            if any(probe == a and type(probe) is type(a) for a in pool):
                continue
            shown = ", ".join(repr(a) if isinstance(a, str) else str(a).lower() for a in allowed)
            words = [a for a in allowed if isinstance(a, str)]
            raise ProfileError(
                f"{key} = {value!r} is not one of {shown}{did_you_mean(str(value), words)}",
                key=key,
                provider=provider or None,
                hint=f"Use one of {shown} (docs/profiles.md).",
            )
    for key, table, kinds in (
        ("auth", data.get("auth"), AUTH_TYPES),
        ("paginator", data.get("paginator"), PAGINATOR_TYPES),
    ):
        _check_type(key, table, kinds, provider)
    resources = data.get("resources")
    if isinstance(resources, Mapping):
        for name, res in resources.items():
            if isinstance(res, Mapping):
                pag = res.get("paginator")
                if isinstance(pag, str):
                    pag = {"type": pag}
                _check_type(f"resources.{name}.paginator", pag, PAGINATOR_TYPES, provider)


def _check_list(key: str, value: Any, allowed: tuple[Any, ...], provider: str) -> None:
    """A list-valued enumeration (``provides = ["cost"]``): a non-empty list of allowed values."""
    shown = ", ".join(repr(a) for a in allowed)
    bad = [v for v in value if v not in allowed] if isinstance(value, list) and value else [value]
    if not bad:
        return
    words = [a for a in allowed if isinstance(a, str)]
    raise ProfileError(
        f"{key} = {value!r} must be a list of {shown}{did_you_mean(str(bad[0]), words)}",
        key=key,
        provider=provider or None,
        hint=f"e.g. {key.rsplit('.', 1)[-1]} = [{shown}] (docs/mapping.md).",
    )


def _check_type(key: str, table: Any, kinds: tuple[str, ...], provider: str) -> None:
    """A ``type`` that is close to a builtin one but not it is a typo (registered types pass)."""
    if not isinstance(table, Mapping) or "type" not in table:
        return
    name = str(table["type"])
    if name in kinds:
        return
    hint = did_you_mean(name, kinds)
    if hint:  # far from every builtin: perhaps a registered type; its maker decides
        raise ProfileError(
            f"{key}.type {name!r} is not a known type{hint}",
            key=f"{key}.type",
            provider=provider or None,
            hint=f"Known types: {', '.join(kinds)}.",
        )
