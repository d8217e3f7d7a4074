"""Time helpers shared by the stages: one copy of each (a private leaf module).

Every stage keeps timestamps as tz-aware UTC (``datetime64[ns, UTC]``) and works on their int64
nanoseconds; local calendars (days, months) are reached through the site's IANA zone. This
module holds the conversions they share and imports nothing from the package but
:mod:`scaler_workbench.exceptions`:

===========================  ===============================================================
name                         what
===========================  ===============================================================
:data:`NS_PER_DAY`           a day [ns] (86 400 s), :data:`NS_PER_SECOND`, :data:`NAT_NS`
:func:`utc_index`            int64 ns UTC -> ``DatetimeIndex`` (no copy)
:func:`utc_ns`               tz-aware datetimes -> int64 ns UTC (a view when possible)
:func:`utc_text`             tz-aware column -> ``YYYY-MM-DDTHH:MM:SS[.fff]Z`` strings
:func:`as_utc`               a column checked and converted to tz-aware UTC
:func:`local_ns`             int64 ns UTC -> local wall time in one zone [ns]
:func:`local_naive`          UTC column + per-row zones -> naive local ``datetime64[ns]``
:func:`zone_per_row`         one zone or one per row -> object array of zones
:func:`localize_naive`       naive local times -> UTC, DST resolved explicitly
:func:`add_local_days`       + calendar days in local wall time (DST keeps local midnight)
===========================  ===============================================================
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd

from scaler_workbench.exceptions import MappingError, SchemaError

__all__ = [
    "NAT_NS",
    "NS_PER_DAY",
    "NS_PER_SECOND",
    "add_local_days",
    "as_utc",
    "local_naive",
    "local_ns",
    "localize_naive",
    "utc_index",
    "utc_ns",
    "utc_text",
    "zone_per_row",
]

#: One second [ns].
NS_PER_SECOND = 10**9
#: One day of 86 400 seconds [ns] (a UTC day; local days may be 23 or 25 hours long).
NS_PER_DAY = 86_400 * NS_PER_SECOND
#: The int64 that pandas and numpy read as NaT.
NAT_NS = int(np.iinfo(np.int64).min)

_UTC_NS = pd.DatetimeTZDtype("ns", "UTC")


def utc_index(ns: Any) -> pd.DatetimeIndex:
    """A UTC DatetimeIndex over int64 nanoseconds since the epoch (no copy, no parsing).

    The index shares ``ns`` (a full-length copy costs a first touch of its memory): do not
    modify the array afterwards.

    Parameters
    ----------
    ns : array-like of int64
        Nanoseconds since 1970-01-01 UTC [ns]; :data:`NAT_NS` reads as NaT.

    Returns
    -------
    pandas.DatetimeIndex
        ``datetime64[ns, UTC]``.
    """
    arr = np.asarray(ns, dtype=np.int64)
    try:
        dta = pd.arrays.DatetimeArray._simple_new(arr.view("datetime64[ns]"), dtype=_UTC_NS)
        return pd.DatetimeIndex(dta, copy=False)
    except (AttributeError, TypeError):  # pandas internals moved: the public (copying) way
        return pd.DatetimeIndex(arr.view("datetime64[ns]")).tz_localize("UTC")


def utc_ns(values: Any) -> np.ndarray:
    """int64 ns UTC of tz-aware datetimes, a view when they already are ns UTC (no copy).

    Parameters
    ----------
    values : Series, DatetimeIndex or array-like of datetimes
        tz-aware timestamps (any zone, any unit).

    Returns
    -------
    numpy.ndarray of int64
        Nanoseconds since the epoch UTC [ns]; NaT as :data:`NAT_NS`.
    """
    idx = pd.DatetimeIndex(values)
    if idx.tz is not None and str(idx.tz) != "UTC":
        idx = idx.tz_convert("UTC")
    if idx.unit != "ns":
        idx = idx.as_unit("ns")
    return idx.asi8


def utc_text(col: pd.Series, unit: Literal["s", "ms"]) -> np.ndarray:
    """``YYYY-MM-DDTHH:MM:SS[.fff]Z`` (UTC) per value of a tz-aware column.

    Parameters
    ----------
    col : pandas.Series
        tz-aware timestamps.
    unit : {"s", "ms"}
        Last field written: whole seconds, or milliseconds (as ``to_json(date_unit="ms")``).

    Returns
    -------
    numpy.ndarray of object
        One string per value; None where the value is NaT.
    """
    ns: np.ndarray = col.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[ns]")
    text: np.ndarray = np.char.add(np.datetime_as_string(ns, unit=unit), "Z").astype(object)
    text[np.isnat(ns)] = None
    return text


def as_utc(series: pd.Series, column: str, table: str) -> pd.Series:
    """``series`` as tz-aware UTC timestamps.

    Parameters
    ----------
    series : pandas.Series
        tz-aware timestamps, or text/objects ``pandas.to_datetime`` reads.
    column, table : str
        Named in the error.

    Returns
    -------
    pandas.Series
        ``datetime64[ns, UTC]`` (converted, or parsed with ``utc=True``).

    Raises
    ------
    SchemaError
        If the column holds naive timestamps or values that are not timestamps.
    """
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        return series.dt.tz_convert("UTC")
    if pd.api.types.is_datetime64_any_dtype(series.dtype) and series.notna().any():
        raise SchemaError(
            f"column {column!r} of {table} holds naive timestamps",
            table=table,
            column=column,
            hint="Canonical frames hold tz-aware UTC timestamps: use schema.coerce_frame().",
        )
    try:
        return pd.to_datetime(series, utc=True)
    except (TypeError, ValueError) as exc:
        raise SchemaError(
            f"column {column!r} of {table} cannot be read as timestamps: {exc}",
            table=table,
            column=column,
        ) from exc


def local_ns(ns: np.ndarray, tz: str) -> np.ndarray:
    """Local wall-clock times of UTC instants in one zone, as naive ns since the epoch.

    Parameters
    ----------
    ns : numpy.ndarray of int64
        Instants [ns UTC].
    tz : str
        IANA zone.

    Returns
    -------
    numpy.ndarray of int64
        Wall time [ns] (``ns`` itself for UTC).
    """
    if tz in ("UTC", "Etc/UTC"):
        return ns
    return np.asarray(
        utc_index(ns).tz_convert(tz).tz_localize(None).as_unit("ns").asi8, dtype=np.int64
    )


def local_naive(utc: pd.Series, zones: pd.Series) -> np.ndarray:
    """Wall-clock local times of each row in its own zone, one conversion per zone.

    Parameters
    ----------
    utc : pandas.Series
        tz-aware timestamps (positionally aligned with ``zones``).
    zones : pandas.Series
        IANA zone per row.

    Returns
    -------
    numpy.ndarray of datetime64[ns]
        Naive local times.

    Raises
    ------
    SchemaError
        If a zone name is unknown.
    """
    out = np.empty(len(utc), dtype="datetime64[ns]")
    codes, uniques = pd.factorize(zones, sort=False)
    for i, zone in enumerate(uniques):
        mask = codes == i
        try:
            local = utc[mask].dt.tz_convert(str(zone)).dt.tz_localize(None)
        except (KeyError, ValueError) as exc:  # unknown zone name
            raise SchemaError(
                f"unknown time zone {zone!r} in usage",
                table="usage",
                column="timezone",
                hint="Use IANA names such as 'Europe/London'.",
            ) from exc
        out[mask] = local.to_numpy(dtype="datetime64[ns]")
    return out


def zone_per_row(tz: Any, n: int) -> np.ndarray:
    """One zone for all ``n`` rows, or one per row, as an object array of zone names.

    Parameters
    ----------
    tz : str or array-like of str
        A zone, or one zone per row.
    n : int
        Rows [rows].

    Returns
    -------
    numpy.ndarray of object
    """
    if isinstance(tz, str):
        return np.full(n, tz, dtype=object)
    return np.asarray(tz, dtype=object)


def localize_naive(
    naive: pd.DatetimeIndex,
    tz: str,
    *,
    order_keys: np.ndarray | None = None,
    nonexistent: str = "quarantine",
) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """Localise naive local times in ``tz`` to UTC, resolving DST explicitly.

    Ambiguous fall-back times are resolved by record order: within one ``order_keys`` group (e.g.
    the meter), the first occurrence of a wall time is summer time, the next standard time.
    Nonexistent spring-forward times become NaT and are reported in the returned mask
    (``nonexistent="quarantine"``) or move to the first valid instant (``"shift_forward"``).

    Parameters
    ----------
    naive : pandas.DatetimeIndex
        Naive local wall times.
    tz : str
        IANA zone.
    order_keys : numpy.ndarray, optional
        Group per value (e.g. meter codes) within which record order resolves ambiguity.
    nonexistent : {"quarantine", "shift_forward"}
        What a time in a spring-forward gap becomes.

    Returns
    -------
    (DatetimeIndex in UTC, numpy bool mask of nonexistent times left as NaT)

    Raises
    ------
    MappingError
        If the zone is unknown or ``nonexistent`` is not one of the two choices.
    """
    try:
        out = naive.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
    except Exception as exc:  # unknown zone
        raise MappingError(
            f"cannot localise naive timestamps in time zone {tz!r}: {exc}",
            hint="Set an IANA zone (e.g. Europe/London) for the site or the source's tz.",
        ) from exc
    hole = np.asarray(out.isna()) & ~np.asarray(naive.isna())
    missing = np.zeros(len(naive), dtype=bool)
    if hole.any():
        idx = np.flatnonzero(hole)
        sub = naive[idx]
        as_dst = sub.tz_localize(tz, ambiguous=np.ones(len(sub), dtype=bool), nonexistent="NaT")
        nonexist = np.asarray(as_dst.isna())
        amb = ~nonexist
        values = (
            out.tz_convert("UTC").as_unit("ns").asi8.copy() if len(out) else np.array([], np.int64)
        )
        if amb.any():
            aidx = idx[amb]
            keys = pd.DataFrame(
                {
                    "k": order_keys[aidx] if order_keys is not None else 0,
                    "t": sub[amb].as_unit("ns").asi8,
                }
            )
            first = (keys.groupby(["k", "t"], sort=False).cumcount() == 0).to_numpy()
            resolved = sub[amb].tz_localize(tz, ambiguous=first)
            values[aidx] = resolved.tz_convert("UTC").as_unit("ns").asi8
        if nonexist.any():
            # the wall time exactly at the gap's start (01:00 on a 01:00->02:00 jump) names the
            # transition instant itself (e.g. an interval's end): that one is not an error
            before = (sub[nonexist] - pd.Timedelta(1, "ns")).tz_localize(
                tz, ambiguous="NaT", nonexistent="NaT"
            )
            at_edge = ~np.asarray(before.isna())
            if at_edge.any():
                eidx = idx[nonexist][at_edge]
                edge = (before[at_edge] + pd.Timedelta(1, "ns")).tz_convert("UTC")
                values[eidx] = edge.as_unit("ns").asi8
                nonexist[np.flatnonzero(nonexist)[at_edge]] = False
        if nonexist.any():
            nidx = idx[nonexist]
            if nonexistent == "shift_forward":
                shifted = sub[nonexist].tz_localize(
                    tz, ambiguous="NaT", nonexistent="shift_forward"
                )
                values[nidx] = shifted.tz_convert("UTC").as_unit("ns").asi8
            elif nonexistent == "quarantine":
                values[nidx] = NAT_NS
                missing[nidx] = True
            else:
                raise MappingError(
                    f"nonexistent = {nonexistent!r} is not one of quarantine, shift_forward",
                    key="nonexistent",
                )
        out = utc_index(values)
    return out.tz_convert("UTC"), missing


def add_local_days(
    out: pd.DatetimeIndex, tz: Any, days: int, order_keys: np.ndarray | None
) -> pd.DatetimeIndex:
    """Add calendar days in local wall time (so a DST change keeps local midnight).

    Parameters
    ----------
    out : pandas.DatetimeIndex
        tz-aware instants.
    tz : str or array-like of str
        The zone, or one zone per value.
    days : int
        Calendar days to add [days].
    order_keys : numpy.ndarray, optional
        As in :func:`localize_naive` (ambiguous results resolved by record order).

    Returns
    -------
    pandas.DatetimeIndex
        UTC; a result in a spring-forward gap moves forward to the first valid instant.

    Raises
    ------
    MappingError
        If a zone is unknown.
    """
    n = len(out)
    zones = zone_per_row(tz, n)
    res = out.as_unit("ns").asi8.copy()
    for zone in pd.unique(zones):
        m = zones == zone
        wall = out[m].tz_convert(str(zone)).tz_localize(None) + pd.Timedelta(days=days)
        loc, _ = localize_naive(
            wall,
            str(zone),
            order_keys=order_keys[m] if order_keys is not None else None,
            nonexistent="shift_forward",
        )
        res[m] = loc.as_unit("ns").asi8
    return utc_index(res)
