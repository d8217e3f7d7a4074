"""Usage seen by local calendar month: coverage, monthly totals, the split behind both.

One implementation serves the export (``coverage.csv`` and the run summary's "ready to export"
gate), the notebooks' plots and the demo. Local months are calendar months in each row's site
time zone: the row's own ``timezone``, else its meter's asset's (when ``tables`` is given), else
the ``timezone`` argument. A row that straddles a month boundary is split pro rata by duration;
everything is vectorised, with one time-zone conversion per distinct zone.

=========================  ==================================================================
function                   returns
=========================  ==================================================================
:func:`split_by_month`     one row per (usage row, month) it touches, with its share
:func:`monthly_totals`     consumption per meter and local month
:func:`coverage_matrix`    per meter and month: share covered, any estimate, a status
:func:`site_timezones`     each row's site zone
=========================  ==================================================================
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import numpy as np
import pandas as pd

from scaler_workbench._time import as_utc, local_naive
from scaler_workbench.exceptions import SchemaError
from scaler_workbench.schema import Tables

__all__ = [
    "COVERAGE_STATES",
    "coverage_matrix",
    "monthly_totals",
    "site_timezones",
    "split_by_month",
]

#: Statuses of a meter-month, worst first, with the colours the plots use.
COVERAGE_STATES: dict[str, str] = {
    "missing": "#d9d9d9",
    "partial": "#fdae61",
    "estimated": "#abd9e9",
    "actual": "#1a9641",
}


def require_columns(frame: pd.DataFrame, columns: Iterable[str], table: str) -> None:
    """Raise :class:`SchemaError` unless ``frame`` is a DataFrame with ``columns``.

    Parameters
    ----------
    frame : pandas.DataFrame
        The frame to check (anything else is an error too).
    columns : iterable of str
        Columns it must have.
    table : str
        Named in the error.

    Raises
    ------
    SchemaError
        If ``frame`` is not a DataFrame or lacks a column (``column`` names the first).
    """
    if not isinstance(frame, pd.DataFrame):
        raise SchemaError(
            f"expected a {table} DataFrame, got {type(frame).__name__}",
            table=table,
            hint=f"Pass tables.{table} (a pandas DataFrame with the schema.py columns).",
        )
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise SchemaError(
            f"{table} frame lacks column(s) {missing}",
            table=table,
            column=missing[0],
            hint="Pass a canonical frame (see scaler_workbench.schema) or coerce_frame() it.",
        )


def month_labels(months: np.ndarray) -> np.ndarray:
    """Months since 1970-01 -> ``'YYYY-MM'`` strings.

    Parameters
    ----------
    months : numpy.ndarray of int
        Months since 1970-01 [months].

    Returns
    -------
    numpy.ndarray of str
    """
    return np.datetime_as_string(months.astype("datetime64[M]"), unit="M")


def site_timezones(
    frame: pd.DataFrame, tables: Tables | None = None, default_timezone: str = "UTC"
) -> pd.Series:
    """Each row's site zone: its own ``timezone``, else its meter's asset's, else the default.

    Parameters
    ----------
    frame : pandas.DataFrame
        Usage or readings rows (``timezone`` and ``meter_id`` used when present).
    tables : Tables, optional
        Meters and assets: meter -> asset -> ``timezone``.
    default_timezone : str
        The zone of rows whose site zone is unknown.

    Returns
    -------
    pandas.Series of str
        One IANA zone per row, on ``frame``'s index.
    """
    tz = (
        frame["timezone"].astype(object)
        if "timezone" in frame
        else pd.Series(None, index=frame.index, dtype=object)
    )
    if tables is not None and tz.isna().any() and "meter_id" in frame:
        meters = tables.meters[["meter_id", "asset_id"]].drop_duplicates("meter_id")
        assets = tables.assets[["asset_id", "timezone"]].drop_duplicates("asset_id")
        site = meters.merge(assets, on="asset_id", how="left").set_index("meter_id")["timezone"]
        tz = tz.where(tz.notna(), frame["meter_id"].map(site).astype(object))
    return tz.where(tz.notna(), default_timezone).astype(str)


def split_by_month(
    usage: pd.DataFrame, *, tables: Tables | None = None, timezone: str = "UTC"
) -> pd.DataFrame:
    """Split each usage row over the local calendar months it touches (vectorised).

    Parameters
    ----------
    usage : pandas.DataFrame
        Canonical usage (``meter_id``, ``start``, ``end``; optional ``timezone``).
    tables : Tables, optional
        Gives the site zone of rows without a ``timezone`` (meter -> asset -> timezone).
    timezone : str
        Zone for rows whose site zone is unknown (use the profile's ``timezone``).

    Returns
    -------
    pandas.DataFrame
        One row per (usage row, month): ``row`` (position in ``usage``), ``meter_id``,
        ``month`` ('YYYY-MM'), ``overlap_ns`` (local wall-clock overlap) [ns], ``fraction``
        (share of the row's duration in that month) and ``month_ns`` (the month's length) [ns].
        Rows without a valid period (end not after start, missing times) are left out.

    Raises
    ------
    SchemaError
        If ``usage`` is not a DataFrame with those columns, its times are naive or not times,
        or a zone is unknown.
    """
    require_columns(usage, ("meter_id", "start", "end"), "usage")
    n = len(usage)
    if n == 0:
        return pd.DataFrame(
            {
                "row": pd.Series(dtype="int64"),
                "meter_id": pd.Series(dtype="string"),
                "month": pd.Series(dtype="string"),
                "overlap_ns": pd.Series(dtype="int64"),
                "fraction": pd.Series(dtype="float64"),
                "month_ns": pd.Series(dtype="int64"),
            }
        )
    start = as_utc(usage["start"], "start", "usage").reset_index(drop=True)
    end = as_utc(usage["end"], "end", "usage").reset_index(drop=True)
    zones = site_timezones(usage, tables, timezone).reset_index(drop=True)
    s = local_naive(start, zones).astype("int64")
    e = local_naive(end, zones).astype("int64")
    valid = (e > s) & start.notna().to_numpy() & end.notna().to_numpy()
    rows = np.flatnonzero(valid)
    s, e = s[rows], e[rows]
    m0 = s.astype("datetime64[ns]").astype("datetime64[M]").astype("int64")
    m1 = (e - 1).astype("datetime64[ns]").astype("datetime64[M]").astype("int64")
    counts = m1 - m0 + 1
    rep = np.repeat(np.arange(len(rows)), counts)
    offset = np.arange(len(rep)) - np.repeat(np.cumsum(counts) - counts, counts)
    month = m0[rep] + offset
    month_start = month.astype("datetime64[M]").astype("datetime64[ns]").astype("int64")
    month_end = (month + 1).astype("datetime64[M]").astype("datetime64[ns]").astype("int64")
    overlap = np.minimum(e[rep], month_end) - np.maximum(s[rep], month_start)
    duration = (e - s)[rep]
    meter_ids = usage["meter_id"].astype("string").to_numpy()[rows][rep]
    return pd.DataFrame(
        {
            "row": rows[rep],
            "meter_id": pd.array(meter_ids, dtype="string"),
            "month": pd.array(month_labels(month), dtype="string"),
            "overlap_ns": overlap,
            "fraction": overlap / duration,
            "month_ns": month_end - month_start,
        }
    )


def monthly_totals(
    usage: pd.DataFrame, *, tables: Tables | None = None, timezone: str = "UTC"
) -> pd.DataFrame:
    """Consumption per meter and local calendar month; periods across months split by duration.

    Parameters
    ----------
    usage : pandas.DataFrame
        Canonical usage (``meter_id``, ``start``, ``end``, ``consumption``; optional ``timezone``).
    tables : Tables, optional
        Gives the site zone of rows without a ``timezone`` (meter -> asset -> timezone).
    timezone : str
        Zone for rows whose site zone is unknown (use the profile's ``timezone``).

    Returns
    -------
    pandas.DataFrame
        ``meter_id, month ('YYYY-MM'), consumption, unit``, sorted by meter and month;
        ``consumption`` in the rows' canonical unit ([kWh], [m³], [kg]).

    Raises
    ------
    SchemaError
        If ``usage`` is not a DataFrame with those columns, its times are naive or not times,
        or a zone is unknown.
    """
    require_columns(usage, ("meter_id", "start", "end", "consumption"), "usage")
    split = split_by_month(usage, tables=tables, timezone=timezone)
    rows = split["row"].to_numpy()
    values = usage["consumption"].astype("float64").to_numpy()
    split["consumption"] = values[rows] * split["fraction"].to_numpy()
    if "unit" in usage.columns:
        split["unit"] = usage["unit"].astype("string").to_numpy()[rows]
    else:
        split["unit"] = pd.array([pd.NA] * len(split), dtype="string")
    return (
        split.groupby(["meter_id", "month"], observed=True, sort=True, dropna=False)
        .agg(consumption=("consumption", "sum"), unit=("unit", "first"))
        .reset_index()
    )


def coverage_matrix(
    usage: pd.DataFrame,
    *,
    tables: Tables | None = None,
    meters: pd.DataFrame | Iterable[str] | None = None,
    months: Iterable[str] | None = None,
    timezone: str = "UTC",
    min_coverage: float = 0.9,
    span: Literal["all", "meter"] = "all",
) -> pd.DataFrame:
    """How much of each local calendar month each meter's usage covers.

    Parameters
    ----------
    usage : pandas.DataFrame
        Canonical usage (``meter_id``, ``start``, ``end``; optional ``estimated``, ``timezone``).
    tables : Tables, optional
        Gives the site zone of rows without a ``timezone`` (meter -> asset -> timezone).
    meters : DataFrame or iterable of str, optional
        Meters to show even when they have no usage at all (a meters frame or ids).
    months : iterable of str, optional
        ``'YYYY-MM'`` months to show; default every month from the first to the last in usage.
    timezone : str
        Zone for rows whose site zone is unknown (use the profile's ``timezone``).
    min_coverage : float
        Share of the month [0-1] below which a month with data counts as ``partial``.
    span : {"all", "meter"}
        ``"all"``: every meter gets every month; ``"meter"``: each meter's months start at its
        first month with data (a meter installed later is not "missing" before it existed),
        so a meter that stopped reporting still shows ``missing`` months at the end.

    Returns
    -------
    pandas.DataFrame
        One row per (meter, month), sorted: ``meter_id``, ``month``, ``coverage`` [0-1, capped
        at 1], ``estimated`` (any estimated row overlaps the month) and ``status``, one of
        :data:`COVERAGE_STATES`: ``missing`` (no data), ``estimated``, ``partial``
        (< ``min_coverage``, no estimate) or ``actual``.

    Raises
    ------
    ValueError
        If ``span`` is neither ``"all"`` nor ``"meter"``.
    SchemaError
        If ``usage`` lacks a column, its times are naive or not times, or a zone is unknown.
    """
    if span not in ("all", "meter"):
        raise ValueError(f"span must be 'all' or 'meter', not {span!r}")
    split = split_by_month(usage, tables=tables, timezone=timezone)
    if "estimated" in usage.columns:
        est = usage["estimated"].astype("boolean").fillna(False).to_numpy(dtype=bool)
        split["estimated"] = est[split["row"].to_numpy()]
    else:
        split["estimated"] = False
    agg = (
        split.groupby(["meter_id", "month"], observed=True, sort=False)
        .agg(
            covered=("overlap_ns", "sum"),
            month_ns=("month_ns", "first"),
            estimated=("estimated", "any"),
        )
        .reset_index()
    )
    agg["coverage"] = (agg["covered"] / agg["month_ns"]).clip(upper=1.0)

    if meters is None:
        meter_ids = list(dict.fromkeys(usage["meter_id"].dropna().astype(str)))
    elif isinstance(meters, pd.DataFrame):
        require_columns(meters, ("meter_id",), "meters")
        meter_ids = list(dict.fromkeys(meters["meter_id"].dropna().astype(str)))
        meter_ids += [m for m in dict.fromkeys(agg["meter_id"].astype(str)) if m not in meter_ids]
    else:
        meter_ids = list(dict.fromkeys(str(m) for m in meters))
    if months is None:
        if len(agg):
            lo = np.datetime64(agg["month"].min(), "M")
            hi = np.datetime64(agg["month"].max(), "M")
            month_list = list(month_labels(np.arange(lo, hi + 1)))
        else:
            month_list = []
    else:
        month_list = [str(m) for m in months]
    grid = pd.MultiIndex.from_product(
        [pd.Index(sorted(meter_ids), dtype="string"), pd.Index(month_list, dtype="string")],
        names=["meter_id", "month"],
    ).to_frame(index=False)
    agg["meter_id"] = agg["meter_id"].astype("string")
    agg["month"] = agg["month"].astype("string")
    if span == "meter" and len(agg):
        first: dict[str, str] = {}  # each meter's first month ('YYYY-MM' sorts as text)
        for meter, month in zip(agg["meter_id"].tolist(), agg["month"].tolist(), strict=True):
            if meter not in first or month < first[meter]:
                first[meter] = month
        starts = grid["meter_id"].map(first)
        grid = grid[starts.isna() | (grid["month"] >= starts)].reset_index(drop=True)
    out = grid.merge(agg[["meter_id", "month", "coverage", "estimated"]], how="left")
    out["coverage"] = out["coverage"].astype("float64").fillna(0.0)
    out["estimated"] = out["estimated"].astype("boolean").fillna(False).astype(bool)
    status = np.where(
        out["coverage"] <= 0,
        "missing",
        np.where(
            out["estimated"],
            "estimated",
            np.where(out["coverage"] < min_coverage, "partial", "actual"),
        ),
    )
    out["status"] = pd.Categorical(status, categories=list(COVERAGE_STATES))
    return out
