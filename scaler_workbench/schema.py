"""Scaler's standard format as data: tables, columns, dtypes, required flags and meter taxonomy.

Four canonical tables flow through the workbench as plain pandas DataFrames:

========  ===========================================================================
table     one row per
========  ===========================================================================
assets    building / site (``asset_id`` = the provider's stable external id)
meters    measurement point, linked to an asset, with a Scaler type and one unit
usage     consumption over a period: ``start`` inclusive, ``end`` exclusive (UTC)
readings  point-in-time register value at ``timestamp`` (UTC)
========  ===========================================================================

Timestamps are tz-aware UTC inside the workbench. Usage rows also carry the ``timezone`` of the
site, so that export can render local calendar dates (``YYYY-MM-DD``) for periods that start and
end on local midnights. Values are float64 with a ``unit`` column: never pint dtypes in frames.

Lineage columns (``source_id``, ``raw_value``, ``raw_unit``, ``factor``, ``method``) let an
analyst explain every exported number; they are optional and exported only on request.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import numpy as np
import pandas as pd

from scaler_workbench._time import utc_text
from scaler_workbench.exceptions import SchemaError

__all__ = [
    "ASSETS",
    "CANONICAL_UNITS",
    "COMPLETENESS",
    "HOLES",
    "METERS",
    "METER_SUBTYPES",
    "METER_TYPES",
    "QUARANTINE",
    "READINGS",
    "TABLES",
    "USAGE",
    "Column",
    "Table",
    "Tables",
    "check_frame",
    "coerce_frame",
    "concat_frames",
    "empty_frame",
    "json_default",
    "quarantine_records",
    "quarantine_rows",
    "records_json",
    "source_key",
    "stack_frames",
    "unique_keys",
]

Kind = Literal["string", "float", "int", "bool", "datetime", "category"]

#: pandas dtype for each column kind. Strings use the nullable string dtype; booleans the
#: nullable ``boolean``; ints the nullable ``Int64``; datetimes are tz-aware UTC.
DTYPES: dict[str, str] = {
    "string": "string",
    "category": "category",
    "float": "float64",
    "int": "Int64",
    "bool": "boolean",
    "datetime": "datetime64[ns, UTC]",
}


@dataclass(frozen=True)
class Column:
    """One column of a canonical table.

    Parameters
    ----------
    name : str
        Column name inside the workbench.
    kind : str
        One of ``string``, ``category``, ``float``, ``int``, ``bool``, ``datetime`` (UTC).
    required : bool
        Scaler requires a non-null value in every row.
    export_name : str
        Scaler's field name in exported files (``""``: not exported by default).
    description : str
        What the column holds, with its unit in brackets where it has one.
    """

    name: str
    kind: Kind
    required: bool = False
    export_name: str = ""
    description: str = ""

    @property
    def dtype(self) -> str:
        return DTYPES[self.kind]


@dataclass(frozen=True)
class Table:
    """A canonical table: its name, columns and the key that identifies one row."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    description: str = ""

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def required(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    @property
    def dtypes(self) -> dict[str, str]:
        return {c.name: c.dtype for c in self.columns}

    def column(self, name: str) -> Column:
        """The column called ``name``.

        Parameters
        ----------
        name : str
            A column of this table.

        Returns
        -------
        Column

        Raises
        ------
        KeyError
            If the table has no such column.
        """
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


_LINEAGE = (
    Column(
        "source_id", "string", description="Provider record id (or resource/key) the row came from."
    ),
    Column(
        "raw_value", "float", description="Value as the provider reported it, before conversion."
    ),
    Column("raw_unit", "string", description="Unit label as the provider reported it."),
    Column("factor", "float", description="Multiplier applied: value = raw_value * factor."),
    Column(
        "method",
        "string",
        description="How the row was made: as-reported, sum-of-intervals, "
        "register-difference, prorated-by-days, ...",
    ),
)

ASSETS = Table(
    "assets",
    (
        Column("asset_id", "string", True, "external_id", "Stable provider-assigned id."),
        Column("name", "string", True, "name", "Human-readable label."),
        Column("address", "string", False, "address", "Street address."),
        Column("city", "string", False, "city"),
        Column("postcode", "string", False, "postcode"),
        Column("country", "string", False, "country", "ISO 3166-1 alpha-2 code."),
        Column("latitude", "float", False, "latitude", "[degrees]"),
        Column("longitude", "float", False, "longitude", "[degrees]"),
        Column(
            "timezone", "string", False, "timezone", "IANA zone of the site, e.g. Europe/London."
        ),
        Column("floor_area", "float", False, "floor_area", "Gross floor area [m²]."),
        Column("metadata", "string", False, "metadata", "Extra provider attributes, JSON text."),
        Column("source_id", "string", description="Provider record id the row came from."),
    ),
    key=("asset_id",),
    description="Buildings / sites.",
)

METERS = Table(
    "meters",
    (
        Column("meter_id", "string", True, "external_id", "Stable provider-assigned id."),
        Column("asset_id", "string", True, "asset_external_id", "The asset the meter belongs to."),
        Column("meter_type", "string", True, "meter_type", "Energy, Water or Waste."),
        Column("meter_subtype", "string", False, "meter_subtype", "See METER_SUBTYPES."),
        Column("unit", "string", True, "unit", "Unit of the exported values (canonical per type)."),
        Column("description", "string", False, "description", "Label or name."),
        Column("metadata", "string", False, "metadata", "Extra provider attributes, JSON text."),
        Column("raw_unit", "string", description="Unit label as the provider reported it."),
        Column("source_id", "string", description="Provider record id the row came from."),
        Column(
            "active_from",
            "string",
            description="First local day (YYYY-MM-DD) the meter measures (installation, "
            "move-in); months before it are not missing.",
        ),
        Column(
            "active_to",
            "string",
            description="First local day (YYYY-MM-DD) the meter NO LONGER measures (removal, "
            "move-out); months from it on are not missing.",
        ),
        Column(
            "direction",
            "string",
            description="Which way the energy flows: import (drawn from the grid), export "
            "(fed into it) or production (generated on site); Scaler's meter format has no "
            "such field, so the export puts it in the meter's metadata JSON.",
        ),
    ),
    key=("meter_id",),
    description="Measurement points.",
)

USAGE = Table(
    "usage",
    (
        Column("meter_id", "string", True, "meter_external_id"),
        Column("start", "datetime", True, "start_date", "Inclusive start (UTC)."),
        Column("end", "datetime", True, "end_date", "Exclusive end (UTC), strictly after start."),
        Column("consumption", "float", True, "consumption", "Consumption over the period [unit]."),
        Column("unit", "string", True, "unit"),
        Column("redelivery", "float", False, "redelivery", "Exported to grid [unit]."),
        Column("production", "float", False, "production", "On-site production [unit]."),
        Column("cost", "float", False, "cost", "[currency]"),
        Column("currency", "string", False, "currency", "ISO 4217 code."),
        Column("estimated", "bool", False, "estimated", "True if the value is an estimate."),
        Column("metadata", "string", False, "metadata", "JSON text."),
        Column("timezone", "string", False, "", "Site time zone used for local dates."),
        Column("n_intervals", "int", False, "", "Intervals summed into the period."),
        Column("days_with_data", "int", False, "", "Local days in the period with any data."),
        Column(
            "expected_intervals",
            "int",
            description="Interval sources aggregated to months: intervals the whole local "
            "calendar month holds (DST-aware: 46/48/50 half-hours a day).",
        ),
        Column(
            "null_intervals",
            "int",
            description="Intervals delivered without a value (no data), included in n_intervals.",
        ),
        Column("estimated_intervals", "int", description="Estimated intervals with a value."),
        Column(
            "first_local",
            "string",
            description="Local start (YYYY-MM-DDTHH:MM) of the first interval with a value.",
        ),
        Column(
            "last_local",
            "string",
            description="Local end (YYYY-MM-DDTHH:MM) of the last interval with a value.",
        ),
        Column(
            "billing_days",
            "int",
            description="Periods summed from bills: the longest source period [days].",
        ),
        *_LINEAGE,
    ),
    key=("meter_id", "start", "end"),
    description="Consumption over periods (start inclusive, end exclusive).",
)

READINGS = Table(
    "readings",
    (
        Column("meter_id", "string", True, "meter_external_id"),
        Column("timestamp", "datetime", True, "reading_date", "Reading time (UTC)."),
        Column("value", "float", True, "reading_value", "Register value [unit]."),
        Column("unit", "string", True, "unit"),
        Column("estimated", "bool", False, "estimated"),
        Column("flag", "string", False, "", "reset / rollover / exchange when detected."),
        Column("metadata", "string", False, "metadata", "JSON text."),
        Column("timezone", "string", False, "", "Site time zone."),
        *_LINEAGE,
    ),
    key=("meter_id", "timestamp"),
    description="Point-in-time register readings.",
)

TABLES: dict[str, Table] = {t.name: t for t in (ASSETS, METERS, USAGE, READINGS)}

#: Interval completeness per meter and local month, counted by the usage stage from the interval
#: rows BEFORE aggregation (``coverage.interval_completeness``); not exported as a table, it
#: feeds ``coverage.csv``, the findings and the ready gate. Local times are ``YYYY-MM-DDTHH:MM``.
COMPLETENESS = Table(
    "completeness",
    (
        Column("meter_id", "string", True),
        Column("month", "string", True, description="Local calendar month YYYY-MM."),
        Column("timezone", "string", description="The meter's site zone."),
        Column("interval_seconds", "int", description="The meter's interval length [s]."),
        Column("days_in_month", "int", description="Calendar days of the month."),
        Column("days_with_data", "int", description="Local days with a value."),
        Column("intervals", "int", description="Intervals with a value."),
        Column("null_intervals", "int", description="Intervals delivered without a value."),
        Column("expected_intervals", "int", description="Intervals the local month holds."),
        Column("first_local", "string", description="Local start of the first interval."),
        Column("last_local", "string", description="Local end of the last interval."),
        Column("estimated_share", "float", description="Estimated / intervals [0-1]."),
        Column("missing_days", "int", description="Interior local days without data."),
        Column("hole_intervals", "int", description="Intervals missing in interior holes."),
    ),
    key=("meter_id", "month"),
    description="Interval counts per meter and local month (usage stage).",
)

#: Interior holes of interval meters, one row per local day they touch (usage stage).
HOLES = Table(
    "holes",
    (
        Column("meter_id", "string", True),
        Column("month", "string", True, description="Local YYYY-MM."),
        Column("date", "string", True, description="Local YYYY-MM-DD."),
        Column("kind", "string", True, description="day (whole local day) or intervals."),
        Column("start_local", "string", True, description="Local start YYYY-MM-DDTHH:MM."),
        Column("end_local", "string", True, description="Local end (exclusive)."),
        Column("missing_intervals", "int", True, description="Intervals missing."),
    ),
    key=("meter_id", "start_local"),
    description="Interior holes of interval meters (usage stage).",
)

#: Records set aside with a reason: by transform (cannot be mapped), by the usage engine's
#: conflict policy (duplicate, superseded estimate) and by validation (a failed rule). One row
#: per (record, rule); ``record`` keeps the whole original row as JSON so nothing is lost.
QUARANTINE = Table(
    "quarantine",
    (
        Column("table", "string", True, "table", "assets, meters, usage or readings."),
        Column(
            "record_key", "string", True, "record_key", "The row's key, e.g. meter_id|start|end."
        ),
        Column("source_id", "string", False, "source_id", "Provider record id."),
        Column("stage", "string", True, "stage", "transform, units, usage, validation."),
        Column("rule", "string", True, "rule", "Machine name of the rule or reason."),
        Column("severity", "string", True, "severity", "error (quarantined) or warning (kept)."),
        Column("reason", "string", True, "reason", "Human explanation and what to ask/fix."),
        Column("record", "string", False, "record", "The original row/record as JSON."),
    ),
    key=("table", "record_key", "rule"),
    description="Records set aside or flagged, with reasons.",
)

#: Scaler's fixed top-level meter types with their documented sub-categories.
METER_SUBTYPES: dict[str, tuple[str, ...]] = {
    "Energy": (
        "Coal",
        "Coke",
        "Diesel",
        "District Chilled Water",
        "District Heating and Cooling",
        "District Hot Water",
        "District Steam",
        "EV Charging",
        "Fuel Oil",
        "Natural Gas",
        "Off-site Electricity",
        "On-site Renewable Electricity",
        "Propane",
        "Wood",
    ),
    "Water": ("Potable", "Reclaimed", "Grey"),
    "Waste": ("Hazardous", "Non-hazardous"),
}
METER_TYPES: tuple[str, ...] = tuple(METER_SUBTYPES)

#: The unit every meter type is normalised to (pint-parsable spelling in units.py).
CANONICAL_UNITS: dict[str, str] = {"Energy": "kWh", "Water": "m³", "Waste": "kg"}


def _table(table: str | Table) -> Table:
    if isinstance(table, Table):
        return table
    try:
        return TABLES[table]
    except KeyError:
        raise SchemaError(
            f"unknown table {table!r}",
            table=table,
            hint=f"Use one of {', '.join(TABLES)}.",
        ) from None


def empty_frame(table: str | Table) -> pd.DataFrame:
    """Return an empty frame with every column of ``table`` in its canonical dtype.

    Parameters
    ----------
    table : str or Table
        ``assets``, ``meters``, ``usage``, ``readings`` or a :class:`Table` (e.g.
        :data:`QUARANTINE`).

    Returns
    -------
    pandas.DataFrame
        A fresh frame (a copy of a cached template) with zero rows.

    Raises
    ------
    SchemaError
        If ``table`` is not a known table name.
    """
    t = _table(table)
    template = _EMPTY.get(t)
    if template is None:  # built once per table (a dozen Series), then copied: cheap
        template = pd.DataFrame({c.name: pd.Series(dtype=c.dtype) for c in t.columns})
        _EMPTY[t] = template
    return template.copy(deep=True)


_EMPTY: dict[Table, pd.DataFrame] = {}


def coerce_frame(frame: pd.DataFrame, table: str | Table) -> pd.DataFrame:
    """Return ``frame`` with every column of ``table`` present (missing ones null) in its dtype.

    Extra columns are kept after the canonical ones. Datetime columns are parsed as UTC (naive
    values are an error: localise them first, see :mod:`scaler_workbench.usage`).

    Parameters
    ----------
    frame : pandas.DataFrame
        Rows of ``table``, any dtypes.
    table : str or Table
        The table whose columns and dtypes to apply.

    Returns
    -------
    pandas.DataFrame
        A new frame on ``frame``'s index; a column already canonical is shared, not copied.

    Raises
    ------
    SchemaError
        If a column cannot be converted (``column`` names it), holds naive timestamps, or
        ``table`` is unknown.
    """
    t = _table(table)
    out: dict[str, pd.Series] = {}
    n = len(frame)
    for c in t.columns:
        if c.name not in frame.columns:
            out[c.name] = pd.Series(
                pd.array([None] * n, dtype=c.dtype) if c.kind != "datetime" else pd.NaT,
                index=frame.index,
                dtype=c.dtype,
            )
            continue
        s = frame[c.name]
        if str(s.dtype) == c.dtype:  # already canonical (UTC datetimes included)
            out[c.name] = s
            continue
        try:
            if c.kind == "datetime":
                if isinstance(s.dtype, pd.DatetimeTZDtype):
                    s = s.dt.tz_convert("UTC")
                elif pd.api.types.is_datetime64_any_dtype(s.dtype) and len(s.dropna()):
                    raise SchemaError(
                        f"column {c.name!r} of {t.name} holds naive timestamps",
                        table=t.name,
                        column=c.name,
                        hint="Localise to the site's time zone before building the table.",
                    )
                else:
                    s = pd.to_datetime(s, utc=True)
                out[c.name] = s.astype(c.dtype)
            else:
                out[c.name] = s.astype(c.dtype)
        except SchemaError:
            raise
        except (TypeError, ValueError) as exc:
            raise SchemaError(
                f"column {c.name!r} of {t.name} cannot be read as {c.kind}: {exc}",
                table=t.name,
                column=c.name,
            ) from exc
    extra = [col for col in frame.columns if col not in out]
    result = pd.DataFrame(out, index=frame.index)
    for col in extra:
        result[col] = frame[col]
    return result


def check_frame(frame: pd.DataFrame, table: str | Table, *, strict_dtypes: bool = False) -> None:
    """Raise :class:`SchemaError` if ``frame`` lacks a required column of ``table``.

    With ``strict_dtypes`` every present canonical column must also have its canonical dtype.
    Null values in required columns are data problems, reported by validation, not here.

    Parameters
    ----------
    frame : pandas.DataFrame
        Rows of ``table``.
    table : str or Table
        The table to check against.
    strict_dtypes : bool
        Also require the canonical dtype of every canonical column present.

    Raises
    ------
    SchemaError
        If a required column is missing, a dtype differs (``strict_dtypes``) or ``table`` is
        unknown.
    """
    t = _table(table)
    missing = [c for c in t.required if c not in frame.columns]
    if missing:
        raise SchemaError(
            f"{t.name} frame lacks required column(s) {missing}",
            table=t.name,
            column=missing[0],
            hint="Map these columns in the mapping workbook or profile [mapping] section.",
        )
    if strict_dtypes:
        for c in t.columns:
            if c.name in frame.columns and str(frame[c.name].dtype) != c.dtype:
                raise SchemaError(
                    f"column {c.name!r} of {t.name} has dtype {frame[c.name].dtype}, "
                    f"expected {c.dtype}",
                    table=t.name,
                    column=c.name,
                    hint="Pass the frame through schema.coerce_frame().",
                )


def _empty(name: str) -> pd.DataFrame:
    return empty_frame(name)


@dataclass
class Tables:
    """The four canonical frames plus everything set aside along the way.

    ``quarantine`` has the columns of :data:`QUARANTINE`; stages append to it, never drop rows.
    ``completeness`` (:data:`COMPLETENESS`) and ``holes`` (:data:`HOLES`) are the interval counts
    the usage stage takes before aggregation; every stage after it passes them on.
    """

    assets: pd.DataFrame = field(default_factory=lambda: _empty("assets"))
    meters: pd.DataFrame = field(default_factory=lambda: _empty("meters"))
    usage: pd.DataFrame = field(default_factory=lambda: _empty("usage"))
    readings: pd.DataFrame = field(default_factory=lambda: _empty("readings"))
    quarantine: pd.DataFrame = field(default_factory=lambda: empty_frame(QUARANTINE))
    completeness: pd.DataFrame = field(default_factory=lambda: empty_frame(COMPLETENESS))
    holes: pd.DataFrame = field(default_factory=lambda: empty_frame(HOLES))

    def items(self) -> list[tuple[str, pd.DataFrame]]:
        """``(name, frame)`` for the four canonical tables (not the quarantine, completeness
        or holes).

        Returns
        -------
        list of (str, pandas.DataFrame)
            assets, meters, usage, readings, in that order.
        """
        return [(f.name, getattr(self, f.name)) for f in fields(self) if f.name in TABLES]

    def __repr__(self) -> str:
        extra = ("completeness", "holes")  # shown when the usage stage filled them
        counts = ", ".join(
            f"{f.name}={len(getattr(self, f.name))}"
            for f in fields(self)
            if f.name not in extra or len(getattr(self, f.name))
        )
        return f"Tables({counts})"


# ---- the quarantine: one builder for raw records, one for rows of a canonical frame ----------
def json_default(obj: Any) -> Any:
    """``json.dumps(default=...)`` for values JSON lacks: timestamps as ISO 8601, numpy scalars
    as Python numbers, anything else as its text.

    Parameters
    ----------
    obj : object
        A value ``json`` cannot write.

    Returns
    -------
    str or int or float or bool
    """
    if isinstance(obj, pd.Timestamp | np.datetime64):
        return pd.Timestamp(obj).isoformat()
    if isinstance(obj, np.generic):
        return obj.item()
    return str(obj)


def source_key(record: Mapping[str, Any], *, resource: str = "") -> str:
    """A quarantine key for a record that has none, from where it came and what it says.

    A record stamped with its origin (``_source``: ``resource``, ``window``, ``page``,
    ``position``) is keyed by it; any other record by its resource and a fingerprint of its
    content (SHA-1 of its JSON with sorted keys, ``_``-fields left out), which is the same in
    every run that fetches it, whatever its position (an incremental run fetches fewer records
    before it than a full one).

    Parameters
    ----------
    record : dict
        The record as fetched.
    resource : str, optional
        The resource it came from (used when the record carries no ``_source``).

    Returns
    -------
    str
        ``resource|window|page|position`` or ``resource@<12 hex digits>``.
    """
    origin = record.get("_source") if isinstance(record, Mapping) else None
    if isinstance(origin, Mapping) and origin:
        parts = [origin.get(k) for k in ("resource", "window", "page", "position")]
        return "|".join("" if p is None else str(p) for p in parts)
    body = (
        {k: v for k, v in record.items() if not str(k).startswith("_")}
        if isinstance(record, Mapping)
        else record
    )
    text = json.dumps(body, default=json_default, sort_keys=True)
    return f"{resource}@{hashlib.sha1(text.encode()).hexdigest()[:12]}"


def unique_keys(keys: Sequence[str]) -> list[str]:
    """``keys`` with every repeat numbered: the second ``K`` becomes ``K#2``, the third ``K#3``.

    So ``(table, record_key, rule)`` stays unique when several records of one call share a key
    (copies of one record, rows whose key columns are missing) and no row collapses into
    another where quarantines are unioned by key.

    Parameters
    ----------
    keys : sequence of str

    Returns
    -------
    list of str
        Same length and order; first occurrences unchanged.
    """
    if len(keys) < 2:
        return list(keys)
    ser = pd.Series(list(keys), dtype=object)
    if not ser.duplicated().any():  # the usual case: one hash pass
        return list(keys)
    seen = ser.groupby(ser, sort=False).cumcount().to_numpy()
    return [k if c == 0 else f"{k}#{c + 1}" for k, c in zip(keys, seen, strict=True)]


def quarantine_records(
    records: Sequence[Mapping[str, Any]],
    *,
    table: str,
    stage: str,
    rule: str,
    reasons: Sequence[str] | str,
    severity: str = "error",
    keys: Sequence[Any] | None = None,
    source_ids: Sequence[Any] | None = None,
    resource: str = "",
) -> pd.DataFrame:
    """Quarantine rows (:data:`QUARANTINE`) for raw provider records, each kept whole as JSON.

    Parameters
    ----------
    records : sequence of dict
        The records as fetched.
    table : str
        The canonical table they were meant for.
    stage, rule : str
        Who set them aside and the machine name of why.
    reasons : str or sequence of str
        One reason for all, or one per record.
    severity : {"error", "warning"}
        ``error`` sets the record aside, ``warning`` only reports it.
    keys : sequence, optional
        ``record_key`` per record (as text). A record without one (none given, ``None`` or
        empty) is keyed by :func:`source_key`; repeated keys are numbered
        (:func:`unique_keys`).
    source_ids : sequence, optional
        The provider's record id per record.
    resource : str, optional
        The resource the records came from, for :func:`source_key`.

    Returns
    -------
    pandas.DataFrame
        One row per record in :data:`QUARANTINE` dtypes; ``record`` is the record as JSON with
        sorted keys (:func:`json_default` for timestamps and numpy values).
    """
    n = len(records)
    if isinstance(reasons, str):
        reasons = [reasons] * n
    key_list = [
        source_key(r, resource=resource or table)
        if keys is None or _no_key(keys[i])
        else str(keys[i])
        for i, r in enumerate(records)
    ]
    frame = pd.DataFrame(
        {
            "table": [table] * n,
            "record_key": unique_keys(key_list),
            "source_id": [None if s is None else str(s) for s in source_ids]
            if source_ids is not None
            else [None] * n,
            "stage": [stage] * n,
            "rule": [rule] * n,
            "severity": [severity] * n,
            "reason": list(reasons),
            "record": [json.dumps(r, default=json_default, sort_keys=True) for r in records],
        }
    )
    return coerce_frame(frame, QUARANTINE)


def _no_key(key: Any) -> bool:
    if key is None or key is pd.NA or (isinstance(key, float) and np.isnan(key)):
        return True
    return isinstance(key, str) and not key.strip()


def quarantine_rows(
    rows: pd.DataFrame,
    *,
    table: str,
    stage: str,
    rule: str,
    reasons: pd.Series | Sequence[str] | str,
    severity: str = "error",
) -> pd.DataFrame:
    """Quarantine rows (:data:`QUARANTINE`) for rows of a canonical frame.

    Parameters
    ----------
    rows : pandas.DataFrame
        Rows of the canonical ``table`` (any index).
    table : str
        ``assets``, ``meters``, ``usage`` or ``readings``: its :attr:`Table.key` (the columns
        present) joined with ``|`` is the ``record_key``, datetimes as ``YYYY-MM-DDTHH:MM:SSZ``
        (a missing time leaves its part empty); repeated keys are numbered
        (:func:`unique_keys`). Another name gives an empty key.
    stage, rule : str
        Who set the rows aside and the machine name of why.
    reasons : str or sequence of str
        One reason for all, or one per row.
    severity : {"error", "warning"}
        ``error`` sets the row aside, ``warning`` only reports it.

    Returns
    -------
    pandas.DataFrame
        One row per input row in :data:`QUARANTINE` dtypes; ``record`` is the row as JSON
        without the private ``_``-columns, datetimes as UTC ISO 8601 with milliseconds, floats
        with 15 decimals.
    """
    n = len(rows)
    if n == 0:
        return empty_frame(QUARANTINE)
    key = TABLES[table].key if table in TABLES else ()
    key_cols = [c for c in key if c in rows.columns]
    if key_cols:
        parts: list[pd.Series] = []
        for c in key_cols:
            col = rows[c]
            if isinstance(col.dtype, pd.DatetimeTZDtype):
                text = utc_text(col, "s")
                text[pd.isna(text)] = ""  # a missing time leaves its part of the key empty
                parts.append(pd.Series(text, index=rows.index))
            else:
                parts.append(col.astype(object).astype(str))
        if any(p.hasnans for p in parts):  # pandas' str keeps a missing value, + propagates it
            joined = parts[0].astype(str)
            for p in parts[1:]:
                joined = joined + "|" + p.astype(str)
            text_keys = joined.tolist()
        else:  # every part str: joined elementwise by numpy, without pandas' string ops
            flat = parts[0].to_numpy(dtype=object)
            for p in parts[1:]:
                flat = flat + "|" + p.to_numpy(dtype=object)
            text_keys = flat.tolist()
        keys = unique_keys(text_keys)
    else:
        keys = [""] * n
    if isinstance(reasons, str):
        reason_list = [reasons] * n
    else:
        reason_list = [
            str(r) for r in (reasons.tolist() if isinstance(reasons, pd.Series) else reasons)
        ]
    records = records_json(rows)
    sid = rows["source_id"].astype(object).tolist() if "source_id" in rows else [None] * n
    frame = pd.DataFrame(
        {
            "table": [table] * n,
            "record_key": keys,
            "source_id": [None if s is None or s is pd.NA else str(s) for s in sid],
            "stage": [stage] * n,
            "rule": [rule] * n,
            "severity": [severity] * n,
            "reason": reason_list,
            "record": records,
        }
    )
    return coerce_frame(frame, QUARANTINE)


def records_json(rows: pd.DataFrame, *, keep_private: bool = False) -> list[str]:
    """Each row as one JSON object: the ``record`` of a quarantine row.

    Parameters
    ----------
    rows : pandas.DataFrame
        Any rows (any index; a repeated column name counts once, the first).
    keep_private : bool
        Keep the ``_``-columns (lineage such as ``_row``); by default they are left out.

    Returns
    -------
    list of str
        One object per row: datetimes as UTC ISO 8601 with milliseconds
        (``2024-03-31T00:59:59.000Z``, ``null`` where missing), floats with 15 decimals
        (pandas' most: its default of 10 writes 3e-11 as 0.0), other values JSON cannot hold
        as their text.
    """
    if rows.columns.has_duplicates:
        rows = rows.loc[:, ~rows.columns.duplicated()]
    if not keep_private:
        rows = rows.drop(columns=[c for c in rows.columns if str(c).startswith("_")])
    dates = [c for c in rows.columns if isinstance(rows[c].dtype, pd.DatetimeTZDtype)]
    flat = (
        len(rows) > 0
        and len(rows.columns) > 0
        and all(c in dates or _scalar_column(rows[c].dtype) for c in rows.columns)
    )
    if dates:  # as to_json(date_format="iso") writes them, without its per-value cost
        rows = rows.copy(deep=False)
        for c in dates:
            rows[c] = utc_text(rows[c], "ms")
    text = rows.to_json(
        orient="records",
        lines=not flat,
        date_format="iso",
        date_unit="ms",
        default_handler=str,
        double_precision=15,
    )
    if not flat:
        return text.splitlines()
    # Flat records of scalars (no object columns, so no nested arrays or objects): '},{"'
    # occurs only between two records, as a quote inside a JSON string is always escaped.
    # Splitting there is what lines=True + splitlines() give, without their two scans.
    parts = text[3:-2].split('},{"')
    return ['{"' + p + "}" for p in parts]


def _scalar_column(dtype: Any) -> bool:
    """True for a dtype whose values to_json writes as JSON scalars (never arrays/objects).

    A categorical whose categories are all ``str`` (object categories, as usage's and the
    canonical frames' text columns) counts: its values are JSON strings or ``null``."""
    if isinstance(dtype, pd.CategoricalDtype):
        cats = dtype.categories
        if pd.api.types.is_object_dtype(cats.dtype):
            return len(cats) > 0 and pd.api.types.infer_dtype(cats, skipna=False) == "string"
        return _scalar_column(cats.dtype)
    if isinstance(dtype, pd.StringDtype):
        return True
    return not pd.api.types.is_object_dtype(dtype) and (
        pd.api.types.is_numeric_dtype(dtype)
        or pd.api.types.is_bool_dtype(dtype)
        or pd.api.types.is_string_dtype(dtype)
    )


# ---- frames one under the other -------------------------------------------------------------
def concat_frames(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The non-empty ``frames`` one under the other, columns in order of first appearance.

    A column that is categorical in every frame stays categorical (the union of categories in
    order of appearance, as object strings); other columns go through ``pandas.concat`` (a
    frame lacking a column contributes nulls).

    Parameters
    ----------
    frames : sequence of pandas.DataFrame

    Returns
    -------
    pandas.DataFrame
        A fresh ``RangeIndex``; the single non-empty frame itself when there is one; an empty
        frame without columns when there is none.
    """
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame()
    if len(frames) == 1:
        return frames[0]
    from pandas.api.types import union_categoricals

    cols: dict[str, Any] = {}
    names = list(dict.fromkeys(c for f in frames for c in f.columns))
    for c in names:
        parts = [f[c] if c in f else pd.Series([None] * len(f)) for f in frames]
        if all(isinstance(p.dtype, pd.CategoricalDtype) for p in parts):
            cols[c] = pd.Series(
                union_categoricals(
                    [
                        pd.Categorical.from_codes(
                            p.cat.codes.to_numpy(),
                            categories=pd.Index(list(p.cat.categories), dtype=object),
                            validate=False,
                        )
                        for p in parts
                    ]
                )
            )
        else:
            cols[c] = pd.concat([p.reset_index(drop=True) for p in parts], ignore_index=True)
    return pd.DataFrame(cols)


def stack_frames(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Frames of one stage's output (same columns and dtypes) one under the other.

    Categorical columns stay categorical with their categories' own dtype (the union, in order
    of appearance); frames with different columns, or categories of different dtypes, go
    through :func:`concat_frames`.

    Parameters
    ----------
    frames : sequence of pandas.DataFrame

    Returns
    -------
    pandas.DataFrame
        A fresh ``RangeIndex``.
    """
    frames = list(frames)
    if len(frames) <= 1 or any(list(f.columns) != list(frames[0].columns) for f in frames):
        return concat_frames(frames)
    from pandas.api.types import union_categoricals

    cols: dict[str, Any] = {}
    for c in frames[0].columns:
        parts = [f[c] for f in frames]
        if all(isinstance(p.dtype, pd.CategoricalDtype) for p in parts):
            try:
                cols[c] = pd.Series(union_categoricals([p.array for p in parts]))
                continue
            except TypeError:  # categories of different dtypes: the general concat
                return concat_frames(frames)
        cols[c] = pd.concat(parts, ignore_index=True)
    return pd.DataFrame(cols)
