"""Plots for the analyst's notebooks: coverage, timelines, reconciliation, quarantine, units.

Every ``plot_*`` function takes canonical frames (columns of :mod:`scaler_workbench.schema`),
draws on a new :class:`matplotlib.figure.Figure` (or on the ``ax`` you pass) and returns the
Figure; none calls ``plt.show()`` or touches pyplot's global figure list, so plots never pile
up in memory and work headless (``MPLBACKEND=Agg``). A bare ``Figure`` is not drawn by Jupyter
(it shows ``<Figure size ...>``), so the figures made here are :class:`WorkbenchFigure`
instances: a ``Figure`` with ``_repr_png_``, which IPython calls whatever the backend, so the
returned figure renders as a PNG in JupyterLab, in nbconvert/nbclient runs and in saved
notebooks. matplotlib is imported inside the functions: ``import scaler_workbench`` stays
light.

The numbers behind each plot come from a plain function returning a DataFrame, so a notebook
(or a test) can assert on them:

=============================  ==================================================
data                           plot
=============================  ==================================================
:func:`coverage_matrix`        :func:`plot_coverage` (meter × local month)
:func:`find_gaps_overlaps`     :func:`plot_usage_timeline` (one meter)
:func:`reconcile_monthly`      :func:`plot_reconciliation` (vs ground truth / provider)
:func:`quarantine_counts`      :func:`plot_quarantine_reasons`
:func:`unit_conversion_summary`  :func:`plot_unit_conversions`
=============================  ==================================================

Local months are calendar months in each row's site ``timezone`` (falling back to the
``timezone`` argument). Rows that straddle a month boundary are split pro rata by duration, all
vectorised: one pass per distinct time zone, never a Python loop over rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from scaler_workbench._secrets import get_logger
from scaler_workbench._time import NAT_NS, NS_PER_DAY, utc_ns
from scaler_workbench._time import as_utc as _utc
from scaler_workbench._time import local_naive as _local_naive
from scaler_workbench.coverage import (
    COVERAGE_STATES,
    coverage_matrix,
    monthly_totals,
)
from scaler_workbench.coverage import require_columns as _require
from scaler_workbench.exceptions import SchemaError, UnitError
from scaler_workbench.schema import Tables

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "COVERAGE_STATES",
    "NOISE_EPSILON",
    "QUARANTINE_TOP",
    "coverage_matrix",
    "draw_coverage",
    "draw_quarantine",
    "draw_reconciliation",
    "find_gaps_overlaps",
    "new_figure",
    "plot_coverage",
    "plot_quarantine_reasons",
    "plot_reconciliation",
    "plot_unit_conversions",
    "plot_usage_timeline",
    "quarantine_counts",
    "reconcile_monthly",
    "unit_conversion_summary",
]

log = get_logger(__name__)


_FIGURE_CLASS: list[type] = []

#: Resolution of the PNG a notebook shows [dots per inch].
PNG_DPI = 96


def _figure_class() -> type[Figure]:
    """The :class:`matplotlib.figure.Figure` subclass Jupyter draws (built on first use)."""
    if not _FIGURE_CLASS:
        import io

        from matplotlib.figure import Figure

        class WorkbenchFigure(Figure):
            """A Figure that IPython displays as a PNG, with or without an inline backend."""

            def _repr_png_(self) -> bytes:
                buf = io.BytesIO()
                self.savefig(buf, format="png", dpi=PNG_DPI)
                return buf.getvalue()

        WorkbenchFigure.__module__ = __name__
        _FIGURE_CLASS.append(WorkbenchFigure)
    return _FIGURE_CLASS[0]


def new_figure(*, figsize: tuple[float, float]) -> Figure:
    """A new figure (constrained layout) that renders inline in Jupyter and nbconvert.

    Parameters
    ----------
    figsize : tuple of float
        Width and height [inch].

    Returns
    -------
    matplotlib.figure.Figure
        A ``WorkbenchFigure``: a plain ``Figure`` plus ``_repr_png_``.
    """
    return _figure_class()(figsize=figsize, layout="constrained")


def _new_axes(ax: Axes | None, *, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax  # type: ignore[return-value]
    fig = new_figure(figsize=figsize)
    return fig, fig.add_subplot()


def _empty_note(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


# -- coverage ------------------------------------------------------------------------------------
def plot_coverage(
    usage: pd.DataFrame,
    *,
    meters: pd.DataFrame | Iterable[str] | None = None,
    months: Iterable[str] | None = None,
    timezone: str = "UTC",
    min_coverage: float = 0.9,
    ax: Axes | None = None,
    max_labels: int = 60,
) -> Figure:
    """Heatmap of meters (rows) × local months (columns): actual, estimated, partial, missing.

    Parameters are those of :func:`coverage_matrix`; ``ax`` draws on an existing Axes and
    ``max_labels`` hides meter labels when there are more rows than that.

    Returns
    -------
    matplotlib.figure.Figure
        One ``AxesImage`` (the matrix) and a legend with one entry per state.
    """
    cov = coverage_matrix(
        usage, meters=meters, months=months, timezone=timezone, min_coverage=min_coverage
    )
    return draw_coverage(cov, ax=ax, max_labels=max_labels)


def draw_coverage(cov: pd.DataFrame, *, ax: Axes | None = None, max_labels: int = 60) -> Figure:
    """:func:`plot_coverage` drawn from a :func:`coverage_matrix` already computed.

    Parameters
    ----------
    cov : pandas.DataFrame
        The result of :func:`coverage_matrix`.
    ax : Axes, optional
        Draw on this Axes instead of a new figure.
    max_labels : int
        Hide meter labels when there are more rows than that.

    Returns
    -------
    matplotlib.figure.Figure
        As :func:`plot_coverage` (the report draws this way and reuses the PNG by ``cov``).
    """
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.patches import Patch

    meter_ids = list(dict.fromkeys(cov["meter_id"].astype(str)))
    month_list = list(dict.fromkeys(cov["month"].astype(str)))
    height = min(2.0 + 0.25 * len(meter_ids), 14.0)
    width = min(max(6.5, 3.0 + 0.45 * len(month_list)), 16.0)
    fig, ax = _new_axes(ax, figsize=(width, height))
    if cov.empty:
        _empty_note(ax, "no meters / usage to show")
        return fig
    codes = cov["status"].cat.codes.to_numpy().reshape(len(meter_ids), len(month_list))
    cmap = ListedColormap(list(COVERAGE_STATES.values()))
    norm = BoundaryNorm(np.arange(len(COVERAGE_STATES) + 1) - 0.5, cmap.N)
    ax.imshow(codes, cmap=cmap, norm=norm, aspect="auto", interpolation="nearest")
    ax.set_xticks(np.arange(len(month_list)), month_list, rotation=90)
    if len(meter_ids) <= max_labels:
        ax.set_yticks(np.arange(len(meter_ids)), meter_ids)
    else:
        ax.set_yticks([])
    ax.set_xlabel("local month")
    ax.set_ylabel(f"meter ({len(meter_ids)})")
    share = (cov["status"] != "missing").mean()
    ax.set_title(f"Usage coverage: {share:.0%} of meter-months have data")
    ax.legend(
        handles=[Patch(color=c, label=s) for s, c in COVERAGE_STATES.items()],
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        frameon=False,
    )
    return fig


# -- timeline ------------------------------------------------------------------------------------
def find_gaps_overlaps(usage: pd.DataFrame, meter_id: str | None = None) -> pd.DataFrame:
    """Gaps and overlaps between consecutive usage periods of each meter.

    Periods are sorted by ``start``; a gap is time after the latest end so far and before the
    next start; an overlap is the next period starting before the latest end so far.

    Returns
    -------
    pandas.DataFrame
        ``meter_id``, ``kind`` (``gap`` / ``overlap``), ``start``, ``end`` (UTC),
        ``duration_days`` [d].
    """
    _require(usage, ("meter_id", "start", "end"), "usage")
    frame = usage
    if meter_id is not None:
        frame = usage[usage["meter_id"].astype("string") == str(meter_id)]
    u = pd.DataFrame(
        {
            "meter_id": frame["meter_id"].astype("string").to_numpy(),
            "s": utc_ns(_utc(frame["start"], "start", "usage")),
            "e": utc_ns(_utc(frame["end"], "end", "usage")),
        }
    )
    u = u[u["meter_id"].notna() & (u["s"] != NAT_NS) & (u["e"] != NAT_NS)]
    u = u.sort_values(["meter_id", "s", "e"], kind="stable").reset_index(drop=True)
    s_ns = u["s"].to_numpy()
    e_ns = u["e"].to_numpy()
    ids = u["meter_id"].to_numpy()
    reach = pd.Series(e_ns).groupby(ids).cummax().to_numpy()  # latest end so far, int64 [ns]
    has_prev = np.zeros(len(u), dtype=bool)
    has_prev[1:] = ids[1:] == ids[:-1]
    prev = np.where(has_prev, np.roll(reach, 1), 0)
    gap = has_prev & (s_ns > prev)
    overlap = has_prev & (s_ns < prev)
    kinds = np.where(gap, "gap", "overlap")
    pick = gap | overlap
    g_start = np.where(gap, prev, s_ns)[pick]
    g_end = np.where(gap, s_ns, np.minimum(prev, e_ns))[pick]
    return pd.DataFrame(
        {
            "meter_id": pd.array(u["meter_id"].to_numpy()[pick], dtype="string"),
            "kind": pd.array(kinds[pick], dtype="string"),
            "start": pd.to_datetime(g_start, utc=True),
            "end": pd.to_datetime(g_end, utc=True),
            "duration_days": (g_end - g_start) / NS_PER_DAY,
        }
    )


def plot_usage_timeline(
    usage: pd.DataFrame,
    meter_id: str,
    *,
    timezone: str = "UTC",
    ax: Axes | None = None,
) -> Figure:
    """One meter's usage periods as bars of average daily rate, with gaps and overlaps shaded.

    Each period is a bar from ``start`` to ``end`` (local time) whose height is its
    consumption per day, so bills, months and half-hours compare on one axis. Estimated
    periods are hatched; gaps are shaded red, overlaps orange (see :func:`find_gaps_overlaps`).

    Returns
    -------
    matplotlib.figure.Figure
        A ``PolyCollection`` of periods plus one shaded span per gap/overlap.
    """
    import matplotlib.dates as mdates
    from matplotlib.collections import PolyCollection
    from matplotlib.patches import Patch

    _require(usage, ("meter_id", "start", "end", "consumption"), "usage")
    fig, ax = _new_axes(ax, figsize=(10.0, 3.5))
    u = usage[usage["meter_id"].astype("string") == str(meter_id)]
    if u.empty:
        raise SchemaError(
            f"no usage rows for meter {meter_id!r}",
            table="usage",
            column="meter_id",
            meter=meter_id,
            hint="Pick one of usage['meter_id'].unique().",
        )
    start = _utc(u["start"], "start", "usage")
    end = _utc(u["end"], "end", "usage")
    zone = timezone
    if "timezone" in u.columns and u["timezone"].notna().any():
        zone = str(u["timezone"].dropna().iloc[0])
    zones = pd.Series([zone] * len(u), dtype="string")
    s_local = _local_naive(start.reset_index(drop=True), zones)
    e_local = _local_naive(end.reset_index(drop=True), zones)
    x0 = mdates.date2num(s_local)
    x1 = mdates.date2num(e_local)
    days = np.where(x1 > x0, x1 - x0, np.nan)
    rate = u["consumption"].astype("float64").to_numpy() / days
    est = (
        u["estimated"].astype("boolean").fillna(False).to_numpy(dtype=bool)
        if "estimated" in u.columns
        else np.zeros(len(u), dtype=bool)
    )
    ok = np.isfinite(rate)
    verts = np.stack(
        [
            np.column_stack([x0, np.zeros_like(x0)]),
            np.column_stack([x0, rate]),
            np.column_stack([x1, rate]),
            np.column_stack([x1, np.zeros_like(x1)]),
        ],
        axis=1,
    )[ok]
    colors = np.where(est[ok], COVERAGE_STATES["estimated"], "#2c7bb6")
    bars = PolyCollection(
        list(verts), facecolors=list(colors), edgecolors="white", linewidths=0.3, alpha=0.9
    )
    ax.add_collection(bars)
    issues = find_gaps_overlaps(u.assign(meter_id=str(meter_id)))
    if len(issues):
        i_zone = pd.Series([zone] * len(issues), dtype="string")
        g0 = mdates.date2num(_local_naive(issues["start"].reset_index(drop=True), i_zone))
        g1 = mdates.date2num(_local_naive(issues["end"].reset_index(drop=True), i_zone))
        for kind, a, b in zip(issues["kind"].astype(str), g0, g1, strict=True):
            ax.axvspan(
                a, b, color="#d7191c" if kind == "gap" else "#fdae61", alpha=0.35, lw=0, zorder=0
            )
    lo, hi = np.nanmin(x0), np.nanmax(x1)
    ax.set_xlim(lo - 0.01 * (hi - lo), hi + 0.01 * (hi - lo))
    top = np.nanmax(rate[ok]) if ok.any() else 1.0
    ax.set_ylim(0, (top if top > 0 else 1.0) * 1.1)
    ax.xaxis_date()
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))
    unit = (
        str(u["unit"].dropna().iloc[0]) if "unit" in u.columns and u["unit"].notna().any() else ""
    )
    ax.set_ylabel(f"average per day [{unit}/d]" if unit else "average per day")
    n_gap = int((issues["kind"] == "gap").sum())
    n_over = int((issues["kind"] == "overlap").sum())
    ax.set_title(f"{meter_id}: {len(u)} periods, {n_gap} gap(s), {n_over} overlap(s) ({zone} time)")
    ax.legend(
        handles=[
            Patch(color="#2c7bb6", label="actual"),
            Patch(color=COVERAGE_STATES["estimated"], label="estimated"),
            Patch(color="#d7191c", alpha=0.35, label="gap"),
            Patch(color="#fdae61", alpha=0.35, label="overlap"),
        ],
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        frameon=False,
    )
    return fig


# -- reconciliation ------------------------------------------------------------------------------
def reconcile_monthly(
    usage: pd.DataFrame,
    reference: pd.DataFrame,
    *,
    timezone: str = "UTC",
) -> pd.DataFrame:
    """Compare the workbench's monthly totals with reference totals, per meter and local month.

    Parameters
    ----------
    usage : pandas.DataFrame
        Canonical usage; rows spanning months are split pro rata by duration.
    reference : pandas.DataFrame
        ``meter_id``, ``month`` ('YYYY-MM', local), ``consumption`` and optionally ``unit``: the
        sandbox's ``ground_truth()`` or the provider's own monthly totals.
    timezone : str
        Zone for usage rows without a ``timezone``.

    Returns
    -------
    pandas.DataFrame
        ``meter_id``, ``month``, ``unit``, ``consumption``, ``reference``, ``difference``
        (consumption - reference) and ``relative_difference`` (difference / |reference|, NaN
        when the reference is 0). A side with no row counts as 0.

    Raises
    ------
    UnitError
        If a meter-month's unit differs between the two sides (normalise units first).
    """
    _require(usage, ("meter_id", "start", "end", "consumption"), "usage")
    _require(reference, ("meter_id", "month", "consumption"), "reference")
    ours = monthly_totals(usage, timezone=timezone)
    ref = pd.DataFrame(
        {
            "meter_id": reference["meter_id"].astype("string"),
            "month": reference["month"].astype("string").str.slice(0, 7),
            "reference": reference["consumption"].astype("float64"),
            "ref_unit": (
                reference["unit"].astype("string")
                if "unit" in reference.columns
                else pd.array([pd.NA] * len(reference), dtype="string")
            ),
        }
    )
    ref = (
        ref.groupby(["meter_id", "month"], sort=False)
        .agg(reference=("reference", "sum"), ref_unit=("ref_unit", "first"))
        .reset_index()
    )
    ours["meter_id"] = ours["meter_id"].astype("string")
    ours["month"] = ours["month"].astype("string")
    out = ours.merge(ref, on=["meter_id", "month"], how="outer")
    clash = out["unit"].notna() & out["ref_unit"].notna() & (out["unit"] != out["ref_unit"])
    if clash.any():
        row = out[clash].iloc[0]
        raise UnitError(
            f"meter {row['meter_id']} month {row['month']}: usage in {row['unit']!r} but the "
            f"reference in {row['ref_unit']!r}",
            unit=str(row["unit"]),
            meter=str(row["meter_id"]),
            hint="Normalise usage first (units.normalise_tables) so both sides share a unit.",
        )
    out["unit"] = out["unit"].fillna(out["ref_unit"])
    out["consumption"] = out["consumption"].astype("float64").fillna(0.0)
    out["reference"] = out["reference"].astype("float64").fillna(0.0)
    out["difference"] = out["consumption"] - out["reference"]
    denom = out["reference"].abs().replace(0.0, np.nan)
    out["relative_difference"] = out["difference"] / denom
    out = out.sort_values(["meter_id", "month"], kind="stable").reset_index(drop=True)
    return out[
        [
            "meter_id",
            "month",
            "unit",
            "consumption",
            "reference",
            "difference",
            "relative_difference",
        ]
    ]


#: Relative differences at or below this size are float noise (sums taken in another order),
#: drawn and counted as zero by :func:`plot_reconciliation` [1, i.e. 1e-7 %].
NOISE_EPSILON = 1e-9


def plot_reconciliation(
    usage: pd.DataFrame,
    reference: pd.DataFrame,
    *,
    meter_id: str | None = None,
    timezone: str = "UTC",
    reference_label: str = "reference",
    tolerance: float = 1e-6,
) -> Figure:
    """Monthly totals from the workbench (bars) against reference totals (markers), per unit.

    One row of panels per unit (kWh, m³, kg never summed together): totals on the left, the
    relative difference [%] on the right, drawn against the tolerance band (shaded, ±
    ``tolerance``). The difference axis always spans at least twice the band, so a month
    inside the tolerance looks small; differences of at most :data:`NOISE_EPSILON` (float
    noise) are drawn as zero.

    Parameters
    ----------
    usage, reference : pandas.DataFrame
        As for :func:`reconcile_monthly`.
    meter_id : str, optional
        Restrict to one meter.
    timezone : str
        Zone for usage rows without a ``timezone``.
    reference_label : str
        Legend label of the reference markers.
    tolerance : float
        Relative tolerance of the band [1] (default 1e-6, the ``[[reconcile]]`` default).

    Returns
    -------
    matplotlib.figure.Figure
        A figure Jupyter displays (see :func:`new_figure`).
    """
    table = reconcile_monthly(usage, reference, timezone=timezone)
    if meter_id is not None:
        table = table[table["meter_id"] == str(meter_id)]
    return draw_reconciliation(
        table, meter_id=meter_id, reference_label=reference_label, tolerance=tolerance
    )


def draw_reconciliation(
    table: pd.DataFrame,
    *,
    meter_id: str | None = None,
    reference_label: str = "reference",
    tolerance: float = 1e-6,
) -> Figure:
    """:func:`plot_reconciliation` drawn from a :func:`reconcile_monthly` table already computed.

    Parameters
    ----------
    table : pandas.DataFrame
        The result of :func:`reconcile_monthly` (restricted to ``meter_id`` if given).
    meter_id, reference_label, tolerance
        As for :func:`plot_reconciliation` (``tolerance`` [1]).

    Returns
    -------
    matplotlib.figure.Figure
        As :func:`plot_reconciliation`.
    """
    table = table.assign(unit=table["unit"].fillna("?"))
    units = list(dict.fromkeys(table["unit"].astype(str))) or ["?"]
    fig = new_figure(figsize=(11.0, 2.8 * len(units) + 0.6))
    axes = fig.subplots(len(units), 2, squeeze=False, width_ratios=(2, 1))
    band = 100.0 * abs(float(tolerance))
    for i, unit in enumerate(units):
        part = table[table["unit"].astype(str) == unit]
        monthly = part.groupby("month", sort=True)[["consumption", "reference"]].sum()
        ax, dax = axes[i][0], axes[i][1]
        if monthly.empty:
            _empty_note(ax, "nothing to reconcile")
            _empty_note(dax, "")
            continue
        x = np.arange(len(monthly))
        labels = list(monthly.index.astype(str))
        bars = ax.bar(x, monthly["consumption"].to_numpy(), color="#2c7bb6", label="workbench")
        (marks,) = ax.plot(
            x,
            monthly["reference"].to_numpy(),
            "o",
            color="#d7191c",
            label=reference_label,
        )
        ax.set_xticks(x, labels, rotation=90)
        ax.set_ylabel(f"total [{unit}]")
        ax.legend(handles=[bars, marks], frameon=False, fontsize="small")
        ref = monthly["reference"].replace(0.0, np.nan)
        rel = ((monthly["consumption"] - monthly["reference"]) / ref.abs()).to_numpy()
        rel = np.where(np.abs(rel) <= NOISE_EPSILON, 0.0, rel)
        pct = 100.0 * rel
        shown = np.nan_to_num(pct, nan=0.0)
        outside = np.abs(shown) > band
        dax.axhspan(-band, band, color="#abd9e9", alpha=0.5, lw=0, label=f"±{band:.3g}%")
        dax.axhline(0.0, color="0.5", lw=0.8)
        dax.bar(x, shown, color=np.where(outside, "#d7191c", "#fdae61"))
        limit = max(2.0 * band, float(np.max(np.abs(shown))) * 1.1 if len(shown) else 0.0)
        dax.set_ylim(-(limit or 1.0), limit or 1.0)
        dax.set_xticks(x, labels, rotation=90)
        dax.set_ylabel("difference [%]")
        dax.legend(frameon=False, fontsize="small", loc="upper right")
        worst = float(np.nanmax(np.abs(pct))) if not np.isnan(pct).all() else 0.0
        dax.set_title(
            f"worst month {worst:.3g}%; {int((~outside).sum())} of {len(shown)} within band",
            fontsize="small",
        )
    who = f"meter {meter_id}" if meter_id is not None else f"{table['meter_id'].nunique()} meters"
    fig.suptitle(f"Monthly totals vs {reference_label} ({who})")
    return fig


# -- quarantine ----------------------------------------------------------------------------------
def quarantine_counts(quarantine: pd.DataFrame, *, by: str = "rule") -> pd.DataFrame:
    """Count quarantine rows per ``by`` (rule, reason, stage, ...) and table.

    Returns
    -------
    pandas.DataFrame
        Index: the ``by`` values, most frequent first; columns: one per table, plus ``total``.
    """
    _require(quarantine, (by, "table"), "quarantine")
    counts = pd.crosstab(
        quarantine[by].astype("string").fillna("?"), quarantine["table"].astype("string")
    )
    counts.columns = counts.columns.astype(str)
    counts.columns.name = None
    counts["total"] = counts.sum(axis=1)
    return counts.sort_values("total", ascending=False, kind="stable")


#: Rules (or other ``by`` values) a quarantine plot shows by default, most frequent first.
QUARANTINE_TOP = 20


def plot_quarantine_reasons(
    quarantine: pd.DataFrame | Tables,
    *,
    by: str = "rule",
    severity: str | None = None,
    top: int = QUARANTINE_TOP,
    ax: Axes | None = None,
) -> Figure:
    """Horizontal bars: quarantined records per rule (or ``by``), stacked by table.

    Parameters
    ----------
    quarantine : DataFrame or Tables
        Rows of :data:`scaler_workbench.schema.QUARANTINE` (or ``Tables`` holding them).
    by : str
        Column to count by: ``rule`` (default), ``stage``, ``reason``, ``severity``.
    severity : str, optional
        Keep only ``error`` or ``warning`` rows.
    top : int
        Show the ``top`` most frequent values.

    Returns
    -------
    matplotlib.figure.Figure
        One bar container per table.
    """
    q = quarantine.quarantine if isinstance(quarantine, Tables) else quarantine
    _require(q, (by, "table"), "quarantine")
    if severity is not None and "severity" in q.columns:
        q = q[q["severity"].astype("string") == severity]
    counts = quarantine_counts(q, by=by).head(top)
    return draw_quarantine(counts, by=by, severity=severity, ax=ax)


def draw_quarantine(
    counts: pd.DataFrame, *, by: str = "rule", severity: str | None = None, ax: Axes | None = None
) -> Figure:
    """:func:`plot_quarantine_reasons` drawn from :func:`quarantine_counts` already computed.

    Parameters
    ----------
    counts : pandas.DataFrame
        The result of :func:`quarantine_counts`, cut to the rows to show.
    by, severity, ax
        As for :func:`plot_quarantine_reasons` (they only label the plot here).

    Returns
    -------
    matplotlib.figure.Figure
        As :func:`plot_quarantine_reasons`.
    """
    fig, ax = _new_axes(ax, figsize=(9.0, 1.5 + 0.35 * max(len(counts), 1)))
    if counts.empty:
        _empty_note(ax, "nothing quarantined")
        ax.set_title("Quarantine: 0 rows")
        return fig
    counts = counts.iloc[::-1]  # most frequent on top
    y = np.arange(len(counts))
    left = np.zeros(len(counts))
    palette = ["#2c7bb6", "#fdae61", "#d7191c", "#1a9641", "#984ea3", "#999999"]
    tables = [c for c in counts.columns if c != "total"]
    for i, table in enumerate(tables):
        values = counts[table].to_numpy(dtype=float)
        ax.barh(y, values, left=left, color=palette[i % len(palette)], label=table)
        left += values
    for yi, total in zip(y, counts["total"].to_numpy(), strict=True):
        ax.text(float(total), float(yi), f" {int(total)}", va="center", fontsize="small")
    ax.set_yticks(y, [str(v)[:60] for v in counts.index])
    ax.set_xlabel("records")
    ax.set_xlim(0, float(counts["total"].max()) * 1.15)
    ax.legend(frameon=False, fontsize="small", loc="lower right")
    label = f" ({severity})" if severity else ""
    ax.set_title(f"Quarantine{label}: {int(counts['total'].sum())} rows by {by}")
    return fig


# -- units ---------------------------------------------------------------------------------------
_VALUE_COLUMN = {"usage": "consumption", "readings": "value"}


def unit_conversion_summary(data: pd.DataFrame | Tables) -> pd.DataFrame:
    """What the unit normalisation did: one row per (table, raw unit → unit) with its factor.

    Parameters
    ----------
    data : DataFrame or Tables
        A normalised usage or readings frame (lineage columns ``raw_unit``, ``unit``,
        ``factor``, ``raw_value``), or ``Tables`` (usage and readings both summarised).

    Returns
    -------
    pandas.DataFrame
        ``table``, ``raw_unit``, ``unit``, ``factor_min``, ``factor_max`` (differ when the
        factor depends on the meter, e.g. gas calorific values), ``rows``, ``raw_total`` [raw
        unit] and ``total`` [unit].
    """
    frames: list[tuple[str, pd.DataFrame]] = []
    if isinstance(data, Tables):
        frames = [("usage", data.usage), ("readings", data.readings)]
    else:
        _require(data, ("unit",), "usage")
        frames = [
            (
                "readings"
                if "value" in data.columns and "consumption" not in data.columns
                else "usage",
                data,
            )
        ]
    parts = []
    for table, frame in frames:
        if frame is None or frame.empty:
            continue
        _require(frame, ("unit",), table)
        value_col = _VALUE_COLUMN[table]
        n = len(frame)

        def col(name: str, dtype: str, frame: pd.DataFrame = frame, n: int = n) -> Any:
            if name in frame.columns:
                return frame[name].astype(dtype).to_numpy()
            return pd.array([pd.NA] * n, dtype=dtype)

        parts.append(
            pd.DataFrame(
                {
                    "table": table,
                    "raw_unit": pd.array(col("raw_unit", "string"), dtype="string").fillna("?"),
                    "unit": pd.array(col("unit", "string"), dtype="string").fillna("?"),
                    "factor": pd.array(col("factor", "float64"), dtype="float64"),
                    "raw_value": pd.array(col("raw_value", "float64"), dtype="float64"),
                    "value": pd.array(col(value_col, "float64"), dtype="float64"),
                }
            )
        )
    columns = [
        "table",
        "raw_unit",
        "unit",
        "factor_min",
        "factor_max",
        "rows",
        "raw_total",
        "total",
    ]
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in columns})
    rows = pd.concat(parts, ignore_index=True)
    out = (
        rows.groupby(["table", "raw_unit", "unit"], sort=True, observed=True)
        .agg(
            factor_min=("factor", "min"),
            factor_max=("factor", "max"),
            rows=("value", "size"),
            raw_total=("raw_value", "sum"),
            total=("value", "sum"),
        )
        .reset_index()
    )
    return out[columns]


def plot_unit_conversions(data: pd.DataFrame | Tables, *, ax: Axes | None = None) -> Figure:
    """Rows per conversion (``raw unit → unit``), each bar labelled with its factor.

    Returns
    -------
    matplotlib.figure.Figure
        One bar per (table, raw unit, unit) of :func:`unit_conversion_summary`.
    """
    summary = unit_conversion_summary(data)
    fig, ax = _new_axes(ax, figsize=(9.0, 1.5 + 0.4 * max(len(summary), 1)))
    if summary.empty:
        _empty_note(ax, "no usage or readings to summarise")
        return fig
    summary = summary.iloc[::-1]
    y = np.arange(len(summary))
    labels = [
        f"{t}: {r} → {u}"
        for t, r, u in zip(summary["table"], summary["raw_unit"], summary["unit"], strict=True)
    ]
    same = summary["raw_unit"].astype(str) == summary["unit"].astype(str)
    ax.barh(y, summary["rows"].to_numpy(dtype=float), color=np.where(same, "#abd9e9", "#2c7bb6"))
    for yi, (rows, fmin, fmax) in enumerate(
        zip(summary["rows"], summary["factor_min"], summary["factor_max"], strict=True)
    ):
        if pd.isna(fmin):
            text = " factor ?"
        elif np.isclose(fmin, fmax):
            text = f" ×{fmin:.6g}"
        else:
            text = f" ×{fmin:.4g}…{fmax:.4g}"
        ax.text(float(rows), yi, text, va="center", fontsize="small")
    ax.set_yticks(y, labels)
    ax.set_xlabel("rows")
    ax.set_xlim(0, float(summary["rows"].max()) * 1.3)
    ax.set_title(f"Unit conversions: {int(summary['rows'].sum())} rows, {len(summary)} conversions")
    return fig
