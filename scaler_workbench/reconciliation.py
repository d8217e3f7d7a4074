"""Reconciliation: exported totals beside the totals the provider itself reports.

A profile names the provider's own totals (bill totals, monthly summaries) in one table per
check::

    [reconcile.monthly]
    resource = "summaries"          # a [resources.X] entry, fetched by every sync
    tolerance = 1e-6                # relative: |exported - provider| <= tolerance x |provider|
    abs_tolerance = 0.0             # optional, added to the relative bound [canonical unit]
    # unit = "kWh"                  # a constant unit when the records carry none
    # end_inclusive = true          # with start/end dates: the provider names the last day
    [reconcile.monthly.fields]      # dotted paths into each record (``_parent.x`` works)
    meter_id = "_parent.meter_id"
    month = "month"                 # YYYY-MM, a calendar month of the meter's site ...
    # start = "period_start"        # ... or a period: start (+ end, default: one month on)
    # end = "period_end"
    total = "total"
    unit = "unit"

Provider totals are converted to each meter's canonical unit through
:func:`scaler_workbench.units.convert` (the profile's ``[units.aliases]`` and
``[units.heating_value]`` apply; one conversion per distinct unit pair). Calendar periods are
local to the meter's site: a month ``2024-03`` or a date ``2024-03-01`` means local midnight in
the site's time zone (the profile's ``[provider] timezone`` when the site has none).

The exported total of a period is the sum of the exported usage rows inside it; a row that
straddles a period boundary counts with the fraction of its duration inside (exact for rows
that fall within whole periods, e.g. monthly aggregates against monthly summaries).

Public functions
----------------
:func:`read_reconcile_checks`   validate ``[reconcile.*]`` -> :class:`ReconcileCheck` list
:func:`parse_provider_totals`   raw records -> provider totals in canonical units, UTC periods
:func:`reconcile_totals`        exported usage x provider totals -> the reconciliation table
:func:`reconcile`               any two total tables side by side with a tolerance (the verdict)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from scaler_workbench._secrets import get_logger
from scaler_workbench.exceptions import MappingError, ProfileError, UnitError
from scaler_workbench.schema import CANONICAL_UNITS
from scaler_workbench.transform import field_values

__all__ = [
    "PROVIDER_TOTALS_COLUMNS",
    "RECONCILE_COLUMNS",
    "RECONCILE_KEYS",
    "ReconcileCheck",
    "parse_provider_totals",
    "read_reconcile_checks",
    "reconcile",
    "reconcile_totals",
]

log = get_logger(__name__)

#: Keys of a ``[reconcile.<name>]`` table and of its ``fields``.
RECONCILE_KEYS = (
    "resource",
    "tolerance",
    "abs_tolerance",
    "unit",
    "end_inclusive",
    "fields",
    "description",
)
_FIELD_KEYS = ("meter_id", "month", "start", "end", "total", "unit")

#: Columns of :func:`parse_provider_totals` (``start``/``end`` tz-aware UTC).
PROVIDER_TOTALS_COLUMNS = (
    "check",
    "meter_id",
    "start",
    "end",
    "provider",
    "unit",
    "raw_total",
    "raw_unit",
    "note",
)
#: Columns of :func:`reconcile_totals`.
RECONCILE_COLUMNS = (
    "check",
    "meter_id",
    "start",
    "end",
    "unit",
    "exported",
    "provider",
    "difference",
    "relative",
    "within_tolerance",
    "tolerance",
    "raw_total",
    "raw_unit",
    "note",
)


@dataclass(frozen=True)
class ReconcileCheck:
    """One validated ``[reconcile.<name>]`` table.

    Attributes
    ----------
    name, resource : str
    fields : dict of str to field spec
        Field paths: ``meter_id``, ``total`` and ``month`` or ``start`` (+ ``end``), ``unit``;
        each may be a compound spec as in a mapping (``["_parent.mpan", "serial"]``,
        ``{join = [...]}``, ``{first = [...]}``, ``{const = ...}``).
    tolerance : float
        Relative tolerance (default 1e-6).
    abs_tolerance : float
        Absolute tolerance [canonical unit] added to the relative bound (default 0).
    unit : str or None
        Constant unit label when ``fields.unit`` is absent.
    end_inclusive : bool
        ``end`` dates name the last day of the period.
    """

    name: str
    resource: str
    fields: dict[str, Any] = field(default_factory=dict)
    tolerance: float = 1e-6
    abs_tolerance: float = 0.0
    unit: str | None = None
    end_inclusive: bool = False


def _number(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ProfileError(
            f"{key} must be a number >= 0, got {value!r}",
            key=key,
            hint="A relative tolerance such as 1e-6 (0.0001 %).",
        )
    return float(value)


def read_reconcile_checks(profile: Any) -> list[ReconcileCheck]:
    """Validate the profile's ``[reconcile.<name>]`` tables (sorted by name).

    Parameters
    ----------
    profile : Profile or None
        The provider profile (``None``: no checks).

    Returns
    -------
    list of ReconcileCheck
        One per table, sorted by name; empty without ``[reconcile]``.

    Raises
    ------
    ProfileError
        Naming the offending key (``reconcile.<name>.<key>``) for an unknown key, a missing
        resource, a resource the profile does not define, missing fields, both or neither of
        ``month`` and ``start``, no unit, or a negative tolerance.
    """
    section = profile.section("reconcile") if profile is not None else {}
    if not isinstance(section, Mapping):
        raise ProfileError("[reconcile] must be a table of checks", key="reconcile")
    resources = profile.resources
    checks = []
    for name in sorted(section):
        table = section[name]
        key = f"reconcile.{name}"
        if not isinstance(table, Mapping):
            raise ProfileError(
                f"{key} must be a table",
                key=key,
                hint='Write [reconcile.<name>] with resource = "..." and a fields table.',
            )
        unknown = [k for k in table if k not in RECONCILE_KEYS]
        if unknown:
            raise ProfileError(
                f"{key} has unknown key(s) {unknown}",
                key=f"{key}.{unknown[0]}",
                hint=f"Known keys: {', '.join(RECONCILE_KEYS)}.",
            )
        resource = table.get("resource")
        if not isinstance(resource, str) or not resource:
            raise ProfileError(f"{key} needs resource = '<name>'", key=f"{key}.resource")
        if resource not in resources:
            raise ProfileError(
                f"{key}.resource {resource!r} is not a resource of the profile",
                key=f"{key}.resource",
                hint=f"Define [resources.{resource}] or use one of: {', '.join(resources)}.",
            )
        fields = table.get("fields")
        if not isinstance(fields, Mapping):
            raise ProfileError(f"{key} needs a fields table", key=f"{key}.fields")
        bad = [k for k in fields if k not in _FIELD_KEYS]
        if bad:
            raise ProfileError(
                f"{key}.fields has unknown key(s) {bad}",
                key=f"{key}.fields.{bad[0]}",
                hint=f"Known fields: {', '.join(_FIELD_KEYS)}.",
            )
        for required in ("meter_id", "total"):
            if fields.get(required) is None or fields[required] == "":
                raise ProfileError(
                    f"{key}.fields.{required} is required (a field path or compound spec)",
                    key=f"{key}.fields.{required}",
                    hint='e.g. meter_id = "_parent.meter_id" or ["_parent.mpan", "serial"]',
                )
        for name_, spec in fields.items():
            if not isinstance(spec, str):
                _values(spec, [], check=str(name), field_=str(name_), resource=resource)
        if ("month" in fields) == ("start" in fields):
            raise ProfileError(
                f"{key}.fields needs exactly one of month or start",
                key=f"{key}.fields.month",
                hint="month = 'YYYY-MM field' for calendar months, or start (+ end) for periods.",
            )
        if "end" in fields and "start" not in fields:
            raise ProfileError(f"{key}.fields.end needs start", key=f"{key}.fields.end")
        unit = table.get("unit")
        if unit is not None and not isinstance(unit, str):
            raise ProfileError(f"{key}.unit must be a unit label", key=f"{key}.unit")
        if "unit" not in fields and not unit:
            raise ProfileError(
                f"{key} needs fields.unit or a constant unit",
                key=f"{key}.fields.unit",
                hint='Map the unit field, or write unit = "kWh" when the provider implies it.',
            )
        inclusive = table.get("end_inclusive", False)
        if not isinstance(inclusive, bool):
            raise ProfileError(
                f"{key}.end_inclusive must be true or false", key=f"{key}.end_inclusive"
            )
        checks.append(
            ReconcileCheck(
                name=str(name),
                resource=resource,
                fields={str(k): v for k, v in fields.items()},
                tolerance=_number(table.get("tolerance", 1e-6), f"{key}.tolerance"),
                abs_tolerance=_number(table.get("abs_tolerance", 0.0), f"{key}.abs_tolerance"),
                unit=unit,
                end_inclusive=inclusive,
            )
        )
    return checks


# -- provider totals -------------------------------------------------------------------------
def _values(spec: Any, rows: list[Any], *, check: str, field_: str, resource: str) -> list[Any]:
    """One reconcile field for every record: a dotted path as always (absent: None), or a
    compound spec composed as in a mapping (:func:`scaler_workbench.transform.field_values`)."""
    if isinstance(spec, str):
        return [_find(r, spec) for r in rows]
    key = f"reconcile.{check}.fields.{field_}"
    try:
        return field_values(
            spec, rows, column=field_, where=f"reconcile.{check}", resource=resource
        )
    except MappingError as exc:
        raise ProfileError(
            f"{key}: {exc.message}",
            key=key,
            hint=exc.hint or "Fix the field spec (docs/mapping.md, Field specs).",
        ) from exc


def _find(record: Any, path: str) -> Any:
    value = record
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _meter_info(meters: pd.DataFrame, assets: pd.DataFrame, default_timezone: str) -> pd.DataFrame:
    """meter_id -> timezone (site's, else default) and canonical unit."""
    cols = ["meter_id", "asset_id", "meter_type", "unit"]
    m = meters[[c for c in cols if c in meters]].drop_duplicates("meter_id").copy()
    m["meter_id"] = m["meter_id"].astype(str)
    if "asset_id" in m and not assets.empty and "timezone" in assets:
        a = assets[["asset_id", "timezone"]].drop_duplicates("asset_id")
        a = a.assign(asset_id=a["asset_id"].astype(str))
        m = m.assign(asset_id=m["asset_id"].astype(str)).merge(a, on="asset_id", how="left")
    if "timezone" not in m:
        m["timezone"] = None
    m["timezone"] = m["timezone"].astype(object).where(m["timezone"].notna(), default_timezone)
    canonical = (
        m["meter_type"].astype(object).map(CANONICAL_UNITS)
        if "meter_type" in m
        else pd.Series(None, index=m.index, dtype=object)
    )
    unit = m["unit"].astype(object) if "unit" in m else pd.Series(None, index=m.index, dtype=object)
    m["canonical"] = unit.where(unit.notna() & (unit.astype(str) != ""), canonical)
    return m.set_index("meter_id")[["timezone", "canonical"]]


def _local_bounds(
    texts: pd.Series, zones: pd.Series, *, month: bool, add_day: bool = False
) -> pd.Series:
    """UTC instants of local period bounds: ``YYYY-MM`` / ``YYYY-MM-DD`` are local midnights
    of each row's zone; ISO datetimes with an offset are taken as they are."""
    out = pd.Series(pd.NaT, index=texts.index, dtype="datetime64[ns, UTC]")
    s = texts.astype(object).where(texts.notna(), None).astype(str).str.strip()
    if month:
        s = s.str[:7] + "-01"
    has_offset = s.str.contains(r"(?:[+-]\d\d:?\d\d|Z)$", regex=True) & s.str.contains("T")
    if has_offset.any():
        out[has_offset] = pd.to_datetime(s[has_offset], utc=True, errors="coerce", format="ISO8601")
    local = ~has_offset
    if local.any():
        naive = pd.to_datetime(s[local], errors="coerce", format="ISO8601")
        if add_day:
            naive = naive + pd.Timedelta(days=1)
        for zone in pd.unique(zones[local]):  # one localisation per zone, vectorised inside
            mask = local & (zones == zone)
            values = naive[mask[local].to_numpy()]
            out[mask] = values.dt.tz_localize(
                str(zone), ambiguous="NaT", nonexistent="shift_forward"
            ).dt.tz_convert("UTC")
    return out


def parse_provider_totals(
    check: ReconcileCheck,
    records: Iterable[Mapping[str, Any]],
    *,
    meters: pd.DataFrame,
    assets: pd.DataFrame,
    profile: Any = None,
    default_timezone: str = "UTC",
) -> pd.DataFrame:
    """The provider's totals of one check, in each meter's canonical unit.

    Parameters
    ----------
    check : ReconcileCheck
    records : iterable of dict
        Raw records of ``check.resource`` (as fetched; ``_parent`` included).
    meters, assets : pandas.DataFrame
        Canonical meters (``meter_id, asset_id, meter_type, unit``) and assets
        (``asset_id, timezone``): each meter's site zone and canonical unit.
    profile : Profile, optional
        For ``[units.aliases]`` and ``[units.heating_value]``.
    default_timezone : str
        Zone of meters whose site has none (the profile's ``[provider] timezone``).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`PROVIDER_TOTALS_COLUMNS`: ``provider`` [canonical unit] is NaN, with a
        ``note``, when the meter is unknown, the total is not a number, the period cannot be
        read or the unit cannot be converted.

    Raises
    ------
    ProfileError
        The profile's ``[units.heating_value]`` names an unknown preset or a non-positive
        factor. A unit that cannot be converted is a ``note``, not an error.
    """
    from scaler_workbench.units import convert, heating_value

    f = check.fields
    rows = list(records)

    def col(name: str) -> list[Any]:
        if name not in f:
            return [None] * len(rows)
        return _values(f[name], rows, check=check.name, field_=name, resource=check.resource)

    frame = pd.DataFrame(
        {  # one field lookup per summary record (a few per meter, never interval data)
            "meter_id": col("meter_id"),
            "total": col("total"),
            "unit": col("unit"),
            "first": col("month" if "month" in f else "start"),
            "last": col("end"),
        },
        dtype=object,
    )
    frame = frame[frame["meter_id"].notna()].reset_index(drop=True)
    if frame.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in PROVIDER_TOTALS_COLUMNS})
    frame["meter_id"] = frame["meter_id"].astype(str)
    info = _meter_info(meters, assets, default_timezone)
    zones = frame["meter_id"].map(info["timezone"]).astype(object)
    known = zones.notna()
    zones = zones.where(known, default_timezone).astype(str)
    target = frame["meter_id"].map(info["canonical"]).astype(object)
    raw_unit = frame["unit"].astype(object).where(frame["unit"].notna(), check.unit)
    total = pd.to_numeric(frame["total"], errors="coerce").astype(float)
    monthly = "month" in f
    start = _local_bounds(frame["first"], zones, month=monthly)
    if monthly or "end" not in f:
        # one calendar month on from the (local) start
        naive_start = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns]")
        for zone in pd.unique(zones):
            mask = zones == zone
            naive_start[mask] = start[mask].dt.tz_convert(zone).dt.tz_localize(None)
        nxt = (naive_start.dt.to_period("M") + 1).dt.to_timestamp().dt.strftime("%Y-%m-%d")
        end = _local_bounds(nxt.where(naive_start.notna(), None), zones, month=False)
    else:
        end = _local_bounds(frame["last"], zones, month=False, add_day=check.end_inclusive)
    note = pd.Series("", index=frame.index, dtype=object)
    note[~known] = "meter not in the export"
    note[(note == "") & total.isna()] = "total is not a number"
    note[(note == "") & (start.isna() | end.isna() | (end <= start))] = "period not readable"
    note[(note == "") & raw_unit.isna()] = "no unit"
    value = np.full(len(frame), np.nan)
    units = profile.section("units") if profile is not None else {}
    aliases = {str(k): str(v) for k, v in dict(units.get("aliases", {})).items()}
    heating = heating_value(units.get("heating_value"))
    ok = (note == "").to_numpy()
    pairs = pd.DataFrame({"raw": raw_unit.astype(str), "to": target.astype(str)})[ok]
    for (raw, to), grp in pairs.groupby(["raw", "to"], sort=True):  # one per distinct unit pair
        idx = grp.index.to_numpy()
        try:
            value[idx] = convert(
                total.to_numpy()[idx], str(raw), str(to), aliases=aliases, heating=heating
            )
        except UnitError as exc:
            note[idx] = f"unit {raw!r} -> {to}: {exc.message}"
    return pd.DataFrame(
        {
            "check": check.name,
            "meter_id": frame["meter_id"],
            "start": start,
            "end": end,
            "provider": value,
            "unit": target.where(target.notna(), None),
            "raw_total": total,
            "raw_unit": raw_unit,
            "note": note,
        }
    )[list(PROVIDER_TOTALS_COLUMNS)]


# -- the comparison --------------------------------------------------------------------------
def _ns(s: pd.Series) -> np.ndarray:
    return pd.to_datetime(s, utc=True).to_numpy(dtype="datetime64[ns]").astype("int64")


def reconcile(
    exported: pd.DataFrame,
    reference: pd.DataFrame,
    *,
    on: Iterable[str] = ("meter_id",),
    value: str = "consumption",
    rtol: float = 1e-9,
    atol: float = 0.0,
) -> pd.DataFrame:
    """Exported totals beside the provider's (or any reference) totals, with a tolerance.

    Parameters
    ----------
    exported, reference : pandas.DataFrame
        Both with the ``on`` columns and ``value``; rows are summed per ``on`` key first.
    on : iterable of str
        Key columns (default ``meter_id``).
    value : str
        The column compared (default ``consumption``, canonical units).
    rtol, atol : float
        ``ok`` when ``|exported - reference| <= atol + rtol * |reference|``; ``rtol`` [1],
        ``atol`` [the unit of ``value``].

    Returns
    -------
    pandas.DataFrame
        ``on..., exported, reference, abs_diff, rel_diff, ok``; a key on one side only is not ok.

    Raises
    ------
    KeyError
        A frame lacks one of the ``on`` columns or ``value``.
    """
    keys = list(on)
    a = exported.groupby(keys, as_index=False)[value].sum().rename(columns={value: "exported"})
    b = reference.groupby(keys, as_index=False)[value].sum().rename(columns={value: "reference"})
    m = a.merge(b, on=keys, how="outer").sort_values(keys, kind="mergesort").reset_index(drop=True)
    m["abs_diff"] = (m["exported"] - m["reference"]).abs()
    denom = m["reference"].abs().where(m["reference"].abs() > 0, np.nan)
    rel = m["abs_diff"] / denom
    m["rel_diff"] = rel.where(rel.notna(), np.where(m["abs_diff"] == 0, 0.0, np.inf))
    m["ok"] = (m["abs_diff"] <= atol + rtol * m["reference"].abs()).fillna(False).astype(bool)
    return m


#: The usage column holding what a meter of each ``direction`` measured (default consumption).
_MEASURED_BY_DIRECTION = {"production": "production", "export": "redelivery"}


def _measured(usage: pd.DataFrame, meters: pd.DataFrame | None) -> np.ndarray:
    """Per usage row: the value its meter measured (by the meter's ``direction``) [unit]."""
    out = usage["consumption"].to_numpy(dtype=float).copy()
    if meters is None or meters.empty or "direction" not in meters.columns:
        return out
    known = meters[meters["direction"].notna()]
    direction = dict(
        zip(known["meter_id"].astype(str), known["direction"].astype(str), strict=True)
    )
    codes, ids = pd.factorize(usage["meter_id"].astype(str))
    row_dir = np.array([direction.get(m, "") for m in ids] + [""], dtype=object)[codes]
    for d, column in _MEASURED_BY_DIRECTION.items():
        pick = row_dir == d
        if pick.any() and column in usage.columns:
            out[pick] = usage[column].to_numpy(dtype=float)[pick]
    return out


def reconcile_totals(
    usage: pd.DataFrame,
    totals: pd.DataFrame,
    *,
    checks: Iterable[ReconcileCheck] = (),
    meters: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per provider total: the exported total of the same meter and period, and the verdict.

    Parameters
    ----------
    usage : pandas.DataFrame
        Exported usage (``meter_id, start, end, consumption``, and ``production`` /
        ``redelivery`` when a meter has that direction; canonical units).
    totals : pandas.DataFrame
        Provider totals (:data:`PROVIDER_TOTALS_COLUMNS`).
    checks : iterable of ReconcileCheck
        Tolerances per check (default: relative 1e-6).
    meters : pandas.DataFrame, optional
        Meters with ``meter_id`` and ``direction``: a provider total of a ``production``
        meter is compared with its exported ``production``, of an ``export`` meter with its
        ``redelivery`` (what the meter measured), of every other meter with ``consumption``.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`RECONCILE_COLUMNS`, sorted by check, meter and start. ``difference`` is
        exported - provider, ``relative`` = ``|difference| / |provider|`` (0 when both are 0,
        inf when only the provider's is), ``within_tolerance`` when
        ``|difference| <= abs_tolerance + tolerance x |provider|`` (false for a total that could
        not be read or converted: see ``note``).

    Raises
    ------
    KeyError
        ``usage`` or ``totals`` lacks one of the columns named above.
    """
    if totals is None or totals.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in RECONCILE_COLUMNS})
    t = totals.reset_index(drop=True).copy()
    t["row"] = np.arange(len(t))
    t["meter_id"] = t["meter_id"].astype(str)
    exported = np.zeros(len(t))
    if usage is not None and not usage.empty:
        u = usage[usage["meter_id"].astype(str).isin(set(t["meter_id"]))]
        u = pd.DataFrame(
            {
                "meter_id": u["meter_id"].astype(str).to_numpy(),
                "us": _ns(u["start"]),
                "ue": _ns(u["end"]),
                "c": _measured(u, meters),
            }
        )
        ok_t = t["start"].notna() & t["end"].notna()
        tt = pd.DataFrame(
            {
                "row": t["row"][ok_t].to_numpy(),
                "meter_id": t["meter_id"][ok_t].to_numpy(),
                "ts": _ns(t["start"][ok_t]),
                "te": _ns(t["end"][ok_t]),
            }
        )
        m = tt.merge(u, on="meter_id", how="inner")  # provider periods x the meter's rows
        lo = np.maximum(m["ts"].to_numpy(), m["us"].to_numpy())
        hi = np.minimum(m["te"].to_numpy(), m["ue"].to_numpy())
        span = (m["ue"] - m["us"]).to_numpy()
        frac = np.where(span > 0, np.clip(hi - lo, 0, None) / np.where(span > 0, span, 1), 0.0)
        part = np.where(frac >= 1.0, m["c"].to_numpy(), m["c"].to_numpy() * frac)
        sums = pd.Series(part).groupby(m["row"].to_numpy()).sum()
        exported[sums.index.to_numpy()] = sums.to_numpy()
    tol = {c.name: (c.tolerance, c.abs_tolerance) for c in checks}
    parts = []
    keys = ["row"]
    for name, grp in t.groupby("check", sort=True):
        rtol, atol = tol.get(str(name), (1e-6, 0.0))
        ex = pd.DataFrame({"row": grp["row"], "consumption": exported[grp["row"].to_numpy()]})
        ref = pd.DataFrame({"row": grp["row"], "consumption": grp["provider"].astype(float)})
        r = reconcile(ex, ref, on=keys, rtol=rtol, atol=atol)
        r["tolerance"] = rtol
        parts.append(r)
    res = pd.concat(parts, ignore_index=True).set_index("row").reindex(t["row"])
    out = pd.DataFrame(
        {
            "check": t["check"].astype(str),
            "meter_id": t["meter_id"],
            "start": t["start"],
            "end": t["end"],
            "unit": t["unit"],
            "exported": res["exported"].to_numpy(dtype=float),
            "provider": t["provider"].astype(float),
            "difference": res["exported"].to_numpy(dtype=float) - t["provider"].astype(float),
            "relative": res["rel_diff"].to_numpy(dtype=float),
            "within_tolerance": res["ok"].fillna(False).to_numpy(dtype=bool)
            & t["provider"].notna().to_numpy(),
            "tolerance": res["tolerance"].to_numpy(dtype=float),
            "raw_total": t["raw_total"].astype(float),
            "raw_unit": t["raw_unit"],
            "note": t["note"].fillna("").astype(str),
        }
    )
    out.loc[out["provider"].isna(), "relative"] = np.nan
    return out.sort_values(["check", "meter_id", "start"], kind="mergesort").reset_index(drop=True)
