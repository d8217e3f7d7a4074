"""EcoStruxure Energy & Sustainability Scoring Partner API: what a profile cannot express.

Most of the provider is declarative (mappings/ecostruxure/profile.toml: hosts, OAuth2
authorization code, resources, mapping). This module adds only:

- **flattening** (:class:`EcoStruxureConnector`, selected by ``[provider] connector =
  "ecostruxure"``): a ``Meter`` with ``measurements[]`` becomes one record per measurement (one
  Scaler meter each, id ``"<meter id>:<measurement id>"``, with ``commodity_usage`` =
  ``"Fuel / Natural Gas"``); a ``Timeserie{key, values[]}`` becomes one record per value, with
  ``meter_id`` joined through ``measurements[].timeseries.key``. The in-memory parsers
  :func:`parse_ecostruxure_meters` / :func:`parse_ecostruxure_timeseries` do the same on decoded
  JSON (recorded responses, notebooks).
- **provider rules before the pipeline** (:func:`prepare_ecostruxure_raw`,
  :func:`build_ecostruxure_tables`): measurements whose commodity has no Scaler meter type
  (Human Experience / Air Quality, CO2 in ppm) are *reported as not imported* (one quarantine
  row per measurement with its value count, severity warning), never dropped silently; fuels
  metered in m³ are converted to kWh only with a factor the analyst confirmed
  (``[units.energy_factors."Fuel / <usage>"]``), otherwise their rows are quarantined with the
  reason; timeseries values whose key no meter claims are reported too.
- **write-back**: :func:`post_performance_scores`, :func:`get_performance_scores`,
  :func:`register_site`, with scores validated first (date, score, type, category in the
  configured vocabulary: SDK 1.0.0 ``v1`` or the product page's ``page``), and RFC 7807 problem
  details (``invalidParams`` or ``invalid-params``) turned into readable
  :class:`~scaler_workbench.exceptions.RequestRejectedError` messages
  (:func:`parse_problem_details`).

Network functions are ``get_*``/``post_*``/``register_*``; ``parse_*`` take decoded JSON.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from scaler_workbench._secrets import get_logger
from scaler_workbench.connectors.paginate import PageRequest, PageResponse
from scaler_workbench.connectors.resources import Connector, ResourceSpec
from scaler_workbench.exceptions import (
    AuthError,
    HTTPStatusError,
    RequestRejectedError,
    ResponseParseError,
)

if TYPE_CHECKING:
    import pandas as pd

    from scaler_workbench.connectors.client import Client
    from scaler_workbench.schema import Tables

__all__ = [
    "COMFORT_UNITS",
    "CONNECTOR",
    "NOT_IMPORTED_WHY",
    "SCORE_CATEGORIES",
    "SCORE_TYPES",
    "EcoStruxureConnector",
    "EcoStruxureOptions",
    "build_ecostruxure_tables",
    "canonical_score_value",
    "get_ecostruxure_meters",
    "get_ecostruxure_projects",
    "get_ecostruxure_sites",
    "get_ecostruxure_timeseries",
    "get_performance_scores",
    "not_imported_category",
    "parse_ecostruxure_meters",
    "parse_ecostruxure_sites",
    "parse_ecostruxure_timeseries",
    "parse_problem_details",
    "post_performance_scores",
    "prepare_ecostruxure_raw",
    "register_site",
    "validate_performance_scores",
]

log = get_logger(__name__)

PROVIDER = "ecostruxure"
SCORE_TYPES = ("daily", "monthly", "average", "localAverage")
#: the two category vocabularies: SDK 1.0.0 and the current product page
SCORE_CATEGORIES: dict[str, tuple[str, ...]] = {
    "v1": ("energy", "water", "waste", "transportation", "humanExperience", "reEntry"),
    "page": ("Electricity", "Fuel", "Water", "Waste", "Human Experience"),
}


def _fold(text: Any) -> str:
    """``"Local Average"``, ``"localAverage"``, ``"local_average"`` -> ``"localaverage"``."""
    return "".join(ch for ch in str(text).casefold() if ch.isalnum())


def canonical_score_value(value: Any, allowed: Sequence[str]) -> Any:
    """A score ``type`` or ``category`` in any of the API's spellings -> the configured one.

    The product page writes "Daily", "Local Average", "Human Experience"; SDK 1.0.0 writes
    ``daily``, ``localAverage``, ``humanExperience``. A value is matched to ``allowed`` ignoring
    case, spaces, ``_`` and ``-``, which also carries a category to the other vocabulary where
    the two name the same one ("Water" -> ``water``, ``humanExperience`` -> "Human
    Experience"). The page's Electricity and Fuel are two halves of v1's ``energy``: never
    translated (two scores of one date would collide); the validator names the vocabulary to
    configure instead.

    Parameters
    ----------
    value : str
        What the caller wrote.
    allowed : sequence of str
        The configured vocabulary (``score_types`` or ``score_categories``).

    Returns
    -------
    str or the input
        The allowed spelling, or ``value`` unchanged when nothing matches (the validator then
        names it).
    """
    if not isinstance(value, str):
        return value
    folded = {_fold(a): a for a in allowed}
    return folded.get(_fold(value), value)


#: Units of room comfort series (zone temperature, humidity, CO2): never Scaler usage.
COMFORT_UNITS = frozenset({"°c", "degc", "°f", "degf", "%", "%rh", "rh", "ppm"})

#: Why a measurement is not imported, by ``commodity / usage`` (the page's catalogue): the
#: category reported in the run summary and the reason in the quarantine row.
NOT_IMPORTED_WHY: dict[str, tuple[str, str]] = {
    "Waste / Waste Diverted": (
        "waste_diverted",
        "waste diverted (recycled, composted) is part of the waste generated, and Scaler's "
        "waste subtypes (Hazardous, Non-hazardous) have none for it: imported as another Waste "
        "meter it would be counted twice",
    ),
}


def not_imported_category(commodity: Any, commodity_usage: Any, unit: Any) -> tuple[str, str]:
    """``(category, why)`` of a measurement that has no Scaler meter type.

    ``comfort`` for room comfort data (a ``Human Experience`` commodity, or a unit of
    :data:`COMFORT_UNITS`: zone temperature, humidity, CO2), the entry of
    :data:`NOT_IMPORTED_WHY` for its ``commodity / usage``, else ``no_meter_type``.
    """
    if str(commodity_usage) in NOT_IMPORTED_WHY:
        return NOT_IMPORTED_WHY[str(commodity_usage)]
    text = f"{commodity or ''} {commodity_usage or ''}".casefold()
    if "human experience" in text or str(unit or "").strip().casefold() in COMFORT_UNITS:
        return (
            "comfort",
            "room comfort data (zone temperature, humidity, CO2) has no Scaler meter type",
        )
    return ("no_meter_type", "its commodity has no Scaler meter type")


@dataclass(frozen=True)
class EcoStruxureOptions:
    """``[extensions.ecostruxure]`` of the profile, with the public SDK's defaults."""

    meter_id_template: str = "{meter_id}:{measurement_id}"
    commodity_usage_separator: str = " / "
    score_categories: tuple[str, ...] = SCORE_CATEGORIES["v1"]
    score_types: tuple[str, ...] = SCORE_TYPES
    scores_path: str = "/sites/{site_id}/performance-scores"
    scoring_providers_path: str = "/sites/{site_id}/scoring-providers"
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_profile(cls, profile: Any = None) -> EcoStruxureOptions:
        if profile is None:
            return cls()
        ext = dict(profile.section("extensions").get("ecostruxure", {}) or {})
        cats = ext.pop("score_categories", "v1")
        if isinstance(cats, str):
            if cats not in SCORE_CATEGORIES:
                from scaler_workbench.exceptions import ProfileError

                raise ProfileError(
                    f"extensions.ecostruxure.score_categories {cats!r} is unknown",
                    key="extensions.ecostruxure.score_categories",
                    hint="Use 'v1', 'page' or a list of category names.",
                )
            categories = SCORE_CATEGORIES[cats]
        else:
            categories = tuple(str(c) for c in cats)
        known = {
            "meter_id_template",
            "commodity_usage_separator",
            "scores_path",
            "scoring_providers_path",
        }
        return cls(
            ext.get("meter_id_template", cls.meter_id_template),
            ext.get("commodity_usage_separator", cls.commodity_usage_separator),
            categories,
            tuple(ext.pop("score_types", SCORE_TYPES)),
            ext.get("scores_path", cls.scores_path),
            ext.get("scoring_providers_path", cls.scoring_providers_path),
            {k: v for k, v in ext.items() if k not in known},
        )


# ---------------------------------------------------------------------------------------------
# parsers (decoded JSON in, flat records out)
# ---------------------------------------------------------------------------------------------
def _need_list(body: Any, what: str) -> list[Any]:
    if not isinstance(body, list):
        raise ResponseParseError(
            f"EcoStruxure {what}: expected a JSON array, got {type(body).__name__}",
            provider=PROVIDER,
            hint="The 1.0.0 API answers bare arrays; check the path and the API version.",
        )
    return body


def parse_ecostruxure_sites(body: Any) -> list[dict[str, Any]]:
    """Validate ``GET /sites`` (a JSON array of Site) and return the site records unchanged.

    Raises
    ------
    ResponseParseError
        If the body is not an array of objects with an ``id``.
    """
    sites = _need_list(body, "sites")
    for i, s in enumerate(sites):
        if not isinstance(s, Mapping) or s.get("id") in (None, ""):
            raise ResponseParseError(
                f"EcoStruxure sites: item {i} has no id",
                provider=PROVIDER,
                hint="Every Site needs an id; inspect the recorded response.",
            )
    return [dict(s) for s in sites]


def parse_ecostruxure_meters(
    body: Any,
    *,
    site_id: str | None = None,
    options: EcoStruxureOptions | None = None,
) -> list[dict[str, Any]]:
    """Flatten ``GET /sites/{id}/meters``: one record per (meter, measurement).

    Parameters
    ----------
    body : list of dict
        Decoded Meter objects ``{id, name, gatewayId, commodity, usage, measurements[]}``
        (each may carry ``_parent`` from the fetch engine).
    site_id : str, optional
        Sets ``_parent.site_id`` where the records do not carry it.

    Returns
    -------
    list of dict
        ``{id, meter_id, measurement_id, name, commodity, usage, commodity_usage, unit,
        timeseries_key, gatewayId, _parent}``. A meter without measurements yields one record
        with ``unit`` and ``timeseries_key`` None (so it is reported, not lost).
    """
    opts = options or EcoStruxureOptions()
    out: list[dict[str, Any]] = []
    for m in _need_list(body, "meters"):
        if not isinstance(m, Mapping) or m.get("id") in (None, ""):
            raise ResponseParseError(
                "EcoStruxure meters: a meter has no id",
                provider=PROVIDER,
                hint="Inspect the recorded response of /sites/{site-id}/meters.",
            )
        parent = dict(m.get("_parent") or ({"site_id": site_id} if site_id else {}))
        commodity, usage = m.get("commodity"), m.get("usage")
        cu = opts.commodity_usage_separator.join(str(x) for x in (commodity, usage) if x)
        measurements = m.get("measurements") or [{}]
        for ms in measurements:
            ms = ms if isinstance(ms, Mapping) else {}
            mid = ms.get("id")
            ident = (
                opts.meter_id_template.format(meter_id=m["id"], measurement_id=mid)
                if mid not in (None, "")
                else str(m["id"])
            )
            name = " - ".join(str(x) for x in (m.get("name"), ms.get("name")) if x)
            out.append(
                {
                    "id": ident,
                    "meter_id": m["id"],
                    "measurement_id": mid,
                    "name": name or ident,
                    "commodity": commodity,
                    "usage": usage,
                    "commodity_usage": cu or None,
                    "unit": ms.get("unit"),
                    "timeseries_key": (ms.get("timeseries") or {}).get("key"),
                    "gatewayId": m.get("gatewayId"),
                    "_parent": parent,
                }
            )
    return out


def parse_ecostruxure_timeseries(
    body: Any,
    *,
    meters: Iterable[Mapping[str, Any]] = (),
    site_id: str | None = None,
) -> list[dict[str, Any]]:
    """Flatten ``GET /sites/{id}/timeseries``: one record per value, joined to its meter.

    Parameters
    ----------
    body : list of dict
        Decoded ``[{key, values: [{date, updatedAt, value}]}]``.
    meters : iterable of dict
        Flattened meter records (:func:`parse_ecostruxure_meters`) whose ``timeseries_key``
        joins a key to a Scaler meter id.

    Returns
    -------
    list of dict
        ``{id, key, meter_id, date, updatedAt, value, _parent}``; ``meter_id`` is None when no
        meter measurement claims the key (reported by :func:`prepare_ecostruxure_raw`).
    """
    join = {str(m["timeseries_key"]): m["id"] for m in meters if m.get("timeseries_key")}
    out: list[dict[str, Any]] = []
    for ts in _need_list(body, "timeseries"):
        if not isinstance(ts, Mapping) or "key" not in ts:
            raise ResponseParseError(
                "EcoStruxure timeseries: an item has no key",
                provider=PROVIDER,
                hint="Each Timeserie is {key, values: [...]}; inspect the recorded response.",
            )
        key = str(ts["key"])
        meter = join.get(key)
        parent = dict(ts.get("_parent") or ({"site_id": site_id} if site_id else {}))
        values = ts.get("values") or []
        out.extend(
            {
                "id": f"{key}|{v.get('date')}",
                "key": key,
                "meter_id": meter,
                "date": v.get("date"),
                "updatedAt": v.get("updatedAt"),
                "value": v.get("value"),
                "_parent": parent,
            }
            for v in values
            if isinstance(v, Mapping)
        )
    return out


def parse_problem_details(
    body: Any, *, status: int | None = None, url: str | None = None
) -> HTTPStatusError:
    """Turn an RFC 7807 problem-details body into a readable error (returned, not raised).

    Both spellings of the parameter list are read: ``invalidParams`` and ``invalid-params``
    (``[{path, name, reason}]``). 401/403 give :class:`AuthError`, other statuses
    :class:`RequestRejectedError`.
    """
    doc: Mapping[str, Any] = {}
    if isinstance(body, bytes | str):
        try:
            body = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = {"detail": str(body)[:500]}
    if isinstance(body, Mapping):
        doc = body
    status = int(doc.get("status") or status or 0) or None
    title = str(doc.get("title") or "request rejected")
    detail = str(doc.get("detail") or "")
    params = doc.get("invalidParams") or doc.get("invalid-params") or []
    problems = []
    for p in params if isinstance(params, list) else []:
        if isinstance(p, Mapping):
            where = ".".join(str(p[k]) for k in ("path", "name") if p.get(k))
            problems.append(f"{where or '?'}: {p.get('reason', 'invalid')}")
    text = f"EcoStruxure {status or ''} {title}".replace("  ", " ")
    if detail:
        text += f": {detail}"
    if problems:
        text += " [" + "; ".join(problems) + "]"
    if doc.get("debugging"):
        text += f" (debugging id {doc['debugging']})"
    ctx = {
        "provider": PROVIDER,
        "status": status,
        "url": url,
        "body": json.dumps(dict(doc))[:2000],
        "invalid_params": problems,
        "problem_type": doc.get("type"),
    }
    if status in (401, 403):
        return AuthError(text, hint="Re-run the consent (authorize) or check the scopes.", **ctx)
    return RequestRejectedError(
        text, hint="Fix the named parameters; nothing was stored by the provider.", **ctx
    )


# ---------------------------------------------------------------------------------------------
# the connector: flattening inside the fetch engine
# ---------------------------------------------------------------------------------------------
class EcoStruxureConnector(Connector):
    """The fetch engine with EcoStruxure's flattening (``[provider] connector = "ecostruxure"``).

    ``meters`` records come out flattened per measurement and ``timeseries`` records per value,
    joined to meters through the timeseries key. Meters are always fetched before timeseries.
    """

    meters_resource = "meters"
    timeseries_resource = "timeseries"

    def __init__(self, profile: Any, **kw: Any) -> None:
        super().__init__(profile, **kw)
        self.options = EcoStruxureOptions.from_profile(profile)
        self._meters: list[dict[str, Any]] = []

    @classmethod
    def prepare_raw(
        cls, profile: Any, raw: Mapping[str, Any]
    ) -> tuple[Mapping[str, Any], pd.DataFrame | None]:
        """EcoStruxure's rules before the mapping: see :func:`prepare_ecostruxure_raw`."""
        return prepare_ecostruxure_raw(profile, raw)

    def plan_order(self, resources: Iterable[str] | None = None) -> list[str]:
        order = super().plan_order(resources)
        if (
            self.timeseries_resource in order
            and self.meters_resource not in order
            and self.meters_resource in self.profile.resources
        ):
            order = super().plan_order([self.meters_resource, *order])
        if self.timeseries_resource in order and self.meters_resource in order:
            order.remove(self.meters_resource)
            order.insert(order.index(self.timeseries_resource), self.meters_resource)
        return order

    def records(self, spec: ResourceSpec, response: PageResponse) -> list[dict[str, Any]]:
        body = response.body
        if spec.name == self.meters_resource:
            flat = parse_ecostruxure_meters(body, options=self.options)
            self._meters.extend(flat)
            return flat
        if spec.name == self.timeseries_resource:
            return parse_ecostruxure_timeseries(body, meters=self._meters)
        return super().records(spec, response)


CONNECTOR = EcoStruxureConnector


# ---------------------------------------------------------------------------------------------
# provider rules, then the pipeline
# ---------------------------------------------------------------------------------------------
def _quarantine_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    import pandas as pd

    from scaler_workbench.schema import QUARANTINE, coerce_frame

    return coerce_frame(pd.DataFrame(rows, columns=QUARANTINE.names), QUARANTINE)


def prepare_ecostruxure_raw(
    profile: Any, raw: Mapping[str, Any]
) -> tuple[dict[str, list[dict[str, Any]]], pd.DataFrame]:
    """Apply EcoStruxure's rules to flattened records before the mapping runs.

    Parameters
    ----------
    profile : Profile
        Its ``[mapping.meters]`` (value maps), ``[units.energy_factors]``.
    raw : dict
        Flattened records (or ``FetchResult``) per resource, as :class:`EcoStruxureConnector`
        returns them.

    Returns
    -------
    raw : dict of str to list of dict
        Records to give :func:`~scaler_workbench.pipeline.run_pipeline`: not-imported
        measurements and their values removed, confirmed fuel factors applied (value × factor,
        unit ``kWh``, the original kept in ``raw_volume`` / ``energy_factor``).
    report : pandas.DataFrame
        Quarantine rows (``schema.QUARANTINE``): ``not_imported`` (warning) per measurement
        without a Scaler meter type (its record ``{meter_id, values, category}``: ``comfort``,
        ``waste_diverted`` or ``no_meter_type``, :func:`not_imported_category`; the run summary
        counts them under ``not_imported``), ``energy_factor_unconfirmed`` (error) per fuel measurement
        without a confirmed factor, ``timeseries_without_meter`` (warning) per orphan key; the
        reason gives the number of values set aside.
    """
    mapping = profile.section("mapping")
    mspec = mapping.get("meters", {})
    mres = str(mspec.get("resource", "meters"))
    type_field = mspec.get("fields", {}).get("meter_type", "commodity_usage")
    type_map = {str(k) for k in mspec.get("value_maps", {}).get("meter_type", {})}
    factors = dict(profile.section("units").get("energy_factors", {}) or {})
    out = {k: list(getattr(v, "records", v)) for k, v in raw.items()}
    meters = out.get(mres, [])
    usage_res = [
        str(s.get("resource")) for s in mapping.get("usage", {}).values() if isinstance(s, Mapping)
    ]
    rows: list[dict[str, Any]] = []
    skip: dict[str, tuple[str, str, str]] = {}
    convert: dict[str, float] = {}
    keep_meters = []
    categories: dict[str, str] = {}  # not-imported measurement -> category
    records_of: dict[str, int] = {}  # meter records per id: each set-aside record gets a row
    for m in meters:
        value = m.get(type_field) if isinstance(type_field, str) else m.get("commodity_usage")
        mid = str(m.get("id"))
        records_of[mid] = records_of.get(mid, 0) + 1
        if type_map and str(value) not in type_map:
            category, why = not_imported_category(m.get("commodity"), value, m.get("unit"))
            categories[mid] = category
            skip[mid] = (
                "not_imported",
                "warning",
                f"measurement {mid!r} ({value}, unit {m.get('unit')!r}) NOT imported "
                f"({category}): {why}",
            )
            continue
        if m.get("commodity") == "Fuel" and (str(value) in factors or _is_volume(m.get("unit"))):
            spec = factors.get(str(value)) or {}
            if not (isinstance(spec, Mapping) and spec.get("confirmed") and spec.get("factor")):
                skip[mid] = (
                    "energy_factor_unconfirmed",
                    "error",
                    f"fuel measurement {mid!r} ({value}) is metered in "
                    f"{m.get('unit')!r}; no confirmed energy factor: set "
                    f'[units.energy_factors."{value}"] factor and confirmed = true '
                    "(mapping workbook sheet energy_factors)",
                )
                continue
            factor = float(spec["factor"]) * _per_m3(m.get("unit"))
            convert[mid] = factor
            m = {**m, "unit": "kWh", "raw_volume_unit": m.get("unit"), "energy_factor": factor}
        keep_meters.append(m)
    if mres in out:
        out[mres] = keep_meters
    known = {str(m.get("id")) for m in meters}
    counts: dict[str, int] = {}
    orphans: dict[str, int] = {}
    for res in usage_res:
        records = out.get(res, [])
        kept = []
        for r in records:
            mid = r.get("meter_id")
            if mid is None or str(mid) not in known:
                key = str(r.get("key", mid))
                orphans[key] = orphans.get(key, 0) + 1
                continue
            mid = str(mid)
            if mid in skip:
                counts[mid] = counts.get(mid, 0) + 1
                continue
            f = convert.get(mid)
            if f is not None and isinstance(r.get("value"), int | float):
                r = {**r, "raw_volume": r["value"], "value": r["value"] * f}
            kept.append(r)
        if res in out:
            out[res] = kept
    for mid, (rule, severity, reason) in skip.items():
        n = counts.get(mid, 0)
        copies = records_of.get(mid, 1)
        for k in range(copies):  # a measurement listed twice: two records, two rows
            rows.append(
                {
                    "table": "meters",
                    "record_key": mid if k == 0 else f"{mid}#{k + 1}",
                    "source_id": mid,
                    "stage": "transform",
                    "rule": rule,
                    "severity": severity,
                    "reason": f"{reason}; {n} timeseries value(s) set aside"
                    + (f" (meter record {k + 1} of {copies} with this id)" if copies > 1 else ""),
                    "record": json.dumps(
                        {"meter_id": mid, "values": n, "category": categories.get(mid)}
                        if mid in categories
                        else {"meter_id": mid, "values": n}
                    ),
                }
            )
    for key, n in sorted(orphans.items()):
        rows.append(
            {
                "table": "usage",
                "record_key": key,
                "source_id": key,
                "stage": "transform",
                "rule": "timeseries_without_meter",
                "severity": "warning",
                "reason": f"timeseries {key!r}: {n} value(s) whose key no meter measurement "
                "names: NOT imported (ask the provider which meter it belongs to)",
                "record": json.dumps({"key": key, "values": n}),
            }
        )
    return out, _quarantine_frame(rows)


def _is_volume(unit: Any) -> bool:
    return str(unit).strip().lower() in (
        "m³",
        "m3",
        "m^3",
        "cubic meter",
        "cubic metre",
        "l",
        "litre",
        "liter",
    )


def _per_m3(unit: Any) -> float:
    """Factor from the measurement's volume unit to m³ (factors are per m³)."""
    return 0.001 if str(unit).strip().lower() in ("l", "litre", "liter") else 1.0


def build_ecostruxure_tables(
    profile: Any, raw: Mapping[str, Any], *, pipeline: bool = True
) -> Tables:
    """EcoStruxure records -> Scaler Tables: :func:`prepare_ecostruxure_raw`, then the pipeline.

    Parameters
    ----------
    profile : Profile
    raw : dict
        Flattened records per resource (``fetch_resources`` with the EcoStruxure connector).
    pipeline : bool
        ``run_pipeline`` (units and usage too, default) or only ``build_tables``.

    Returns
    -------
    Tables
        With the provider report rows first in ``quarantine``.
    """
    import pandas as pd

    from scaler_workbench.pipeline import run_pipeline  # lazy: pipeline imports the registry
    from scaler_workbench.transform import build_tables

    if pipeline:  # run_pipeline applies prepare_raw itself (EcoStruxureConnector.prepare_raw)
        return run_pipeline(profile, raw)
    prepared, report = prepare_ecostruxure_raw(profile, raw)
    tables = build_tables(profile, prepared)
    frames = [f for f in (report, tables.quarantine) if len(f)]
    if frames:
        tables.quarantine = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return tables


# ---------------------------------------------------------------------------------------------
# network: reads
# ---------------------------------------------------------------------------------------------
def _send(
    client: Client,
    method: str,
    path: str,
    *,
    params: Mapping[str, Any] | None = None,
    body: Any = None,
) -> Any:
    request = PageRequest(
        url=client.url(path),
        params=dict(params or {}),
        method=method,
        json=body,
        base_url=client.base_url,
    )
    try:
        return client.send(request).body
    except (RequestRejectedError, AuthError) as exc:
        status = getattr(exc, "status", None)
        if status is None:  # not an HTTP answer (e.g. no refresh token): nothing to parse
            raise
        response = client.last_response
        text = (
            response.text
            if response is not None and response.status_code == status
            else getattr(exc, "body", "")
        )
        err = parse_problem_details(text, status=status, url=getattr(exc, "url", None))
        raise err from exc


def get_ecostruxure_sites(client: Client) -> list[dict[str, Any]]:
    """``GET /sites``: every site the consenting user gave access to (see the parser)."""
    return parse_ecostruxure_sites(_send(client, "GET", "/sites"))


def get_ecostruxure_meters(client: Client, site_id: str) -> list[dict[str, Any]]:
    """``GET /sites/{site_id}/meters``, flattened per measurement."""
    opts = EcoStruxureOptions.from_profile(client.profile)
    body = _send(client, "GET", f"/sites/{site_id}/meters")
    return parse_ecostruxure_meters(body, site_id=site_id, options=opts)


def get_ecostruxure_projects(client: Client, site_id: str) -> list[dict[str, Any]]:
    """The projects of one site, from ``[resources.projects] path``.

    The public page names "the list of projects associated for each site" but not its path,
    so the path is the profile's (default ``/sites/{site_id}/projects``): confirm it with
    Schneider.

    Parameters
    ----------
    client : Client
        Connected to EcoStruxure.
    site_id : str
        The site's id.

    Returns
    -------
    list of dict
        The projects as sent, each with ``_parent = {"site_id": site_id}``.

    Raises
    ------
    ResponseParseError
        The answer is not a JSON array.
    RequestRejectedError
        The provider's problem details (a 404 when the configured path is not the provider's).
    """
    spec = dict(client.profile.resources.get("projects", {}) or {})
    path = str(spec.get("path", "/sites/{site_id}/projects")).format(site_id=site_id)
    body = _send(client, "GET", path)
    return [
        {**dict(p), "_parent": {"site_id": site_id}}
        for p in _need_list(body, "projects")
        if isinstance(p, Mapping)
    ]


def get_ecostruxure_timeseries(
    client: Client,
    site_id: str,
    *,
    meters: Iterable[Mapping[str, Any]] = (),
    updated_since: str | datetime | None = None,
    updated_before: str | datetime | None = None,
) -> list[dict[str, Any]]:
    """``GET /sites/{site_id}/timeseries`` with ``updatedAt[gte]``/``updatedAt[lt]``, flattened.

    Parameters
    ----------
    updated_since, updated_before : datetime or ISO str, optional
        Only values updated in ``[since, before)`` (tz-aware; naive means UTC).
    """
    params = {}
    spec = dict(client.profile.resources.get("timeseries", {}).get("date_range", {}))
    for name, value in (
        (spec.get("start_param", "updatedAt[gte]"), updated_since),
        (spec.get("end_param", "updatedAt[lt]"), updated_before),
    ):
        if value is not None:
            params[name] = _utc_text(value)
    body = _send(client, "GET", f"/sites/{site_id}/timeseries", params=params)
    return parse_ecostruxure_timeseries(body, meters=meters, site_id=site_id)


def _utc_text(value: str | datetime) -> str:
    from datetime import UTC

    if isinstance(value, str):
        text = value
        try:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return text  # sent as given: the provider's problem details will say why
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------------------------
# write-back
# ---------------------------------------------------------------------------------------------
def validate_performance_scores(
    scores: Iterable[Mapping[str, Any]],
    *,
    categories: Sequence[str] | str = "v1",
    types: Sequence[str] = SCORE_TYPES,
) -> list[dict[str, Any]]:
    """Check scores before sending: ``date`` (YYYY-MM-DD), ``score`` (finite number),
    ``type`` and ``category`` in the configured vocabularies, in any of the API's spellings
    (``"Local Average"``, ``"Human Experience"``: :func:`canonical_score_value`).

    Returns
    -------
    list of dict
        ``{date, score, type, category}`` ready to POST (dates as text; type and category in
        the configured spelling).

    Raises
    ------
    RequestRejectedError
        Naming every bad score and field (``status`` None: nothing was sent).
    """
    cats = SCORE_CATEGORIES[categories] if isinstance(categories, str) else tuple(categories)
    other = {c: name for name, vocab in SCORE_CATEGORIES.items() for c in vocab}
    out: list[dict[str, Any]] = []
    problems: list[str] = []
    for i, s in enumerate(scores):
        if not isinstance(s, Mapping):
            problems.append(f"[{i}]: not a mapping")
            continue
        unknown = set(s) - {"date", "score", "type", "category", "updatedAt"}
        if unknown:
            problems.append(f"[{i}]: unknown field(s) {sorted(unknown)}")
        d = s.get("date")
        if isinstance(d, datetime):
            d = d.date()
        if isinstance(d, date):
            d = d.isoformat()
        try:
            datetime.strptime(str(d), "%Y-%m-%d")
        except ValueError:
            problems.append(f"[{i}].date: {d!r} is not a YYYY-MM-DD date")
        score = s.get("score")
        if (
            isinstance(score, bool)
            or not isinstance(score, int | float)
            or not math.isfinite(score)
        ):
            problems.append(f"[{i}].score: {score!r} is not a finite number")
        kind = canonical_score_value(s.get("type"), types)
        if kind not in types:
            problems.append(f"[{i}].type: {s.get('type')!r} is not one of {', '.join(types)}")
        cat = canonical_score_value(s.get("category"), cats)
        if cat not in cats:
            hint = ""
            if cat in other:
                hint = (
                    f" ({cat!r} belongs to the {other[cat]!r} vocabulary: set "
                    f"extensions.ecostruxure.score_categories = {other[cat]!r})"
                )
            problems.append(f"[{i}].category: {cat!r} is not one of {', '.join(cats)}{hint}")
        out.append({"date": d, "score": score, "type": kind, "category": cat})
    if problems:
        raise RequestRejectedError(
            f"{len(problems)} problem(s) in the performance scores: " + "; ".join(problems[:20]),
            provider=PROVIDER,
            status=None,
            invalid_params=problems,
            hint="Fix the scores; nothing was sent to EcoStruxure.",
        )
    return out


def post_performance_scores(
    client: Client, site_id: str, scores: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """``POST /sites/{site_id}/performance-scores``: validate, send, return the stored list.

    Raises
    ------
    RequestRejectedError
        Invalid scores (before sending) or the provider's problem details (after).
    """
    opts = EcoStruxureOptions.from_profile(client.profile)
    body = validate_performance_scores(
        scores, categories=opts.score_categories, types=opts.score_types
    )
    stored = _send(client, "POST", opts.scores_path.format(site_id=site_id), body=body)
    if not isinstance(stored, list):
        raise ResponseParseError(
            "EcoStruxure performance-scores POST did not answer the stored list",
            provider=PROVIDER,
            hint="Read them back with get_performance_scores().",
        )
    log.info("posted %d performance score(s) for site %s", len(body), site_id)
    return stored


def get_performance_scores(
    client: Client,
    site_id: str,
    *,
    types: Sequence[str] | None = None,
    categories: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """``GET /sites/{site_id}/performance-scores?type=..&category=..`` (both repeatable)."""
    opts = EcoStruxureOptions.from_profile(client.profile)
    params: dict[str, Any] = {}
    if types:
        params["type"] = [canonical_score_value(t, opts.score_types) for t in types]
    if categories:
        params["category"] = [canonical_score_value(c, opts.score_categories) for c in categories]
    body = _send(client, "GET", opts.scores_path.format(site_id=site_id), params=params)
    return [dict(s) for s in _need_list(body, "performance-scores")]


def register_site(client: Client, site_id: str, leed_id: int, leed_name: str) -> dict[str, Any]:
    """``POST /sites/{site_id}/scoring-providers``: register a site (starts its data pipeline).

    Raises
    ------
    RequestRejectedError
        ``leed_id`` not a number or ``leed_name`` empty (before sending), or problem details.
    """
    if isinstance(leed_id, bool) or not isinstance(leed_id, int | float):
        raise RequestRejectedError(
            f"leedId must be a number, got {leed_id!r}",
            provider=PROVIDER,
            status=None,
            hint="Pass the LEED project id as a number.",
        )
    if not isinstance(leed_name, str) or not leed_name.strip():
        raise RequestRejectedError(
            "leedName must be a non-empty string",
            provider=PROVIDER,
            status=None,
            hint="Pass the LEED project name.",
        )
    opts = EcoStruxureOptions.from_profile(client.profile)
    body = _send(
        client,
        "POST",
        opts.scoring_providers_path.format(site_id=site_id),
        body={"leedId": leed_id, "leedName": leed_name},
    )
    return dict(body) if isinstance(body, Mapping) else {"response": body}
