"""The per-run HTML report: ``export/report.html``, one self-contained page an analyst opens.

Written by :func:`scaler_workbench.export.to_scaler_files` (``report=True``, as every sync and
``export`` does) beside the files it describes, from the Jinja2 template
``scaler_workbench/templates/report.html.j2``. Sections, each an HTML ``<section id=...>``:

=================  =============================================================================
``summary``        status, ready-to-export and its reasons, provider, run id, times, counts,
                   records filtered out (``where`` / ``skip`` / ``exclude_meters``) per rule
``findings``       quarantine and warning rows grouped by rule, with a few examples each
``coverage``       the meter × local-month heatmap (:func:`~scaler_workbench.plots.plot_coverage`)
``reconciliation`` per ``[reconcile.*]`` check: compared, beyond tolerance, largest difference,
                   and the monthly totals against the provider's
                   (:func:`~scaler_workbench.plots.plot_reconciliation`)
``quarantine``     open records by severity, per rule
                   (:func:`~scaler_workbench.plots.plot_quarantine_reasons`), the first rows
=================  =============================================================================

The page needs no network: styles are inline and plots are PNGs embedded as base64
``data:`` URIs. Provider text is HTML-escaped (Jinja2 autoescape) and the whole page passes
through :func:`~scaler_workbench._secrets.redact`, like ``run_summary.json``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from scaler_workbench._secrets import redact
from scaler_workbench.schema import Tables

__all__ = ["REPORT_FILE", "REPORT_SECTIONS", "render_report", "write_report"]

#: The report's file name in the export folder.
REPORT_FILE = "report.html"
#: The ``id`` of each section, in page order.
REPORT_SECTIONS = ("summary", "findings", "coverage", "reconciliation", "quarantine")

_EXAMPLES = 3  # examples per rule
_QUARANTINE_ROWS = 50  # quarantine rows listed in the page
_PNG_DPI = 96  # [dots per inch]
_FACTS = (
    "profile",
    "environment",
    "mode",
    "run_id",
    "started_at",
    "finished_at",
    "duration_s",
    "window",
    "quarantine_open",
    "filtered",  # records the profile's where / skip / exclude_meters dropped, per rule
)


def _png(fig: Any) -> str:
    """A figure as base64 PNG text, drawn once at :data:`_PNG_DPI`.

    ``fig.savefig`` of a figure with a layout engine (constrained layout) first draws the
    whole figure without rendering, then draws it again for the pixels; one Agg draw runs the
    layout engine itself at the final resolution, so the pixels are the same for a fifth less
    CPU (tests/test_plots.py::test_report_png_is_the_savefig_png_of_the_public_plot).
    """
    import matplotlib.image as mimage
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig.set_dpi(_PNG_DPI)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    buf = io.BytesIO()
    mimage.imsave(buf, canvas.buffer_rgba(), format="png", origin="upper", dpi=_PNG_DPI)
    return base64.b64encode(buf.getvalue()).decode("ascii")


#: Recently drawn plots: digest of (draw function, its data and options, style) -> PNG text.
_FIGURES: OrderedDict[str, str] = OrderedDict()
_FIGURES_KEPT = 16  # PNGs of a few tens of kB each
_FIGURES_LOCK = threading.Lock()


def _digest(draw: Callable[..., Any], data: pd.DataFrame, options: Mapping[str, Any]) -> str:
    """What decides a plot's pixels: the draw function, every cell, label and dtype of the
    (small, already aggregated) frame it draws, its options, matplotlib's rcParams and the dpi."""
    import matplotlib

    h = hashlib.sha256()
    for part in (
        draw.__module__,
        draw.__qualname__,
        repr(sorted(options.items())),
        repr([(str(c), str(t)) for c, t in data.dtypes.items()]),
        repr((data.index.name, str(data.index.dtype), data.shape, _PNG_DPI)),
        repr(sorted(dict.items(matplotlib.rcParams))),
    ):
        h.update(part.encode("utf-8", "surrogatepass") + b"\0")
    h.update(pd.util.hash_pandas_object(data, index=True).to_numpy().tobytes())
    return h.hexdigest()


def _figure_png(draw: Callable[..., Any], data: pd.DataFrame, **options: Any) -> str:
    """``_png(draw(data, **options))``, reused while the same plot of the same data is asked
    for again in this process (a re-run sync of unchanged data, a notebook cell run twice): the
    key is :func:`_digest`, so any change of data, option or style draws afresh."""
    key = _digest(draw, data, options)
    with _FIGURES_LOCK:
        if key in _FIGURES:
            _FIGURES.move_to_end(key)
            return _FIGURES[key]
    png = _png(draw(data, **options))
    with _FIGURES_LOCK:
        _FIGURES[key] = png
        while len(_FIGURES) > _FIGURES_KEPT:
            _FIGURES.popitem(last=False)
    return png


def _text(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {_text(v)}" for k, v in value.items() if v not in (None, ""))
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value)
    return "" if value is None else str(value)


def _findings(quarantine: pd.DataFrame) -> list[dict[str, Any]]:
    if quarantine is None or quarantine.empty:
        return []
    q = quarantine.astype(object).fillna("")
    out = []
    for (rule, stage, severity), g in q.groupby(["rule", "stage", "severity"], sort=True):
        out.append(
            {
                "rule": rule,
                "stage": stage,
                "severity": severity,
                "count": len(g),
                "examples": [
                    {"key": k, "reason": r}
                    for k, r in zip(
                        g["record_key"][:_EXAMPLES], g["reason"][:_EXAMPLES], strict=True
                    )
                ],
            }
        )
    out.sort(key=lambda f: (f["severity"] != "error", -f["count"], f["rule"]))
    return out


def _reconciliation_reference(recon: pd.DataFrame) -> pd.DataFrame:
    """Provider totals of whole local months as a ``reconcile_monthly`` reference."""
    start = recon["period_start"].astype(str)
    end = recon["period_end"].astype(str)
    monthly = start.str.fullmatch(r"\d{4}-\d{2}-01") & end.str.fullmatch(r"\d{4}-\d{2}-01")
    r = recon[monthly]
    ref = pd.DataFrame(
        {
            "meter_id": r["meter_external_id"].astype(str),
            "month": start[monthly].str.slice(0, 7),
            "consumption": pd.to_numeric(r["provider"], errors="coerce"),
            "unit": r["unit"].astype(str),
        }
    )
    return ref.dropna(subset=["consumption"]).drop_duplicates(["meter_id", "month", "unit"])


def _images(
    tables: Tables,
    quarantine: pd.DataFrame,
    reconciliation: pd.DataFrame | None,
    timezone: str,
) -> dict[str, str]:
    """The report's plots as base64 PNG text: ``coverage`` always, ``reconciliation`` when
    the provider has whole-month totals, ``quarantine`` when records are open."""
    from scaler_workbench import plots

    images = {
        "coverage": _figure_png(
            plots.draw_coverage,
            plots.coverage_matrix(tables.usage, meters=tables.meters, timezone=timezone),
        )
    }
    if reconciliation is not None:
        ref = _reconciliation_reference(reconciliation)
        if len(ref) and len(tables.usage):
            tol = pd.to_numeric(reconciliation["tolerance"], errors="coerce").max()
            images["reconciliation"] = _figure_png(
                plots.draw_reconciliation,
                plots.reconcile_monthly(tables.usage, ref, timezone=timezone),
                reference_label="provider",
                tolerance=float(tol) if pd.notna(tol) and tol > 0 else 1e-6,
            )
    if len(quarantine):
        images["quarantine"] = _figure_png(
            plots.draw_quarantine, plots.quarantine_counts(quarantine).head(plots.QUARANTINE_TOP)
        )
    return images


def render_report(
    *,
    tables: Tables,
    quarantine: pd.DataFrame | None = None,
    reconciliation: pd.DataFrame | None = None,
    summary: Mapping[str, Any] | None = None,
    timezone: str = "UTC",
) -> str:
    """The report page as HTML text.

    Parameters
    ----------
    tables : Tables
        The exported canonical tables (usage and meters draw the coverage heatmap).
    quarantine : pandas.DataFrame, optional
        The export's ``quarantine.csv`` rows (``table``, ``record_key``, ``stage``, ``rule``,
        ``severity``, ``reason``; already redacted).
    reconciliation : pandas.DataFrame, optional
        The export's ``reconciliation.csv`` rows; None when the profile has no checks.
    summary : mapping, optional
        The run summary (``run_summary.json``).
    timezone : str
        Zone for rows whose site zone is unknown (local months).

    Returns
    -------
    str
        A self-contained HTML page (no external resources), passed through ``redact``.
    """
    from jinja2 import Environment, PackageLoader, select_autoescape

    summary = dict(summary or {})
    quarantine = quarantine if quarantine is not None else pd.DataFrame()
    ready_block = summary.get("ready_to_export") or {}
    status = str(summary.get("status") or "exported")
    facts = [(k, _text(summary[k])) for k in _FACTS if summary.get(k) not in (None, "", {})]
    count_names = [
        k for k in ("processed", "accepted", "stored") if isinstance(summary.get(k), Mapping)
    ]
    names = sorted({t for k in count_names for t in summary[k]})
    counts = [(t, [summary[k].get(t, "") for k in count_names]) for t in names]
    cov_block = summary.get("coverage")
    cov: Mapping[str, Any] = cov_block if isinstance(cov_block, Mapping) else {}
    recon_rows: list[dict[str, Any]] = []
    if reconciliation is not None:
        checks = (summary.get("reconciliation") or {}).get("checks") or {}
        for name, g in reconciliation.groupby("check", sort=True):
            within = (g["within_tolerance"] == "true").sum()
            rel = pd.to_numeric(g["relative"], errors="coerce").abs()
            recon_rows.append(
                {
                    "check": name,
                    "compared": checks.get(name, {}).get("compared", len(g)),
                    "within": int(within),
                    "beyond": len(g) - int(within),
                    "max_relative": f"{rel.max():.3g}" if rel.notna().any() else "",
                }
            )
    images = _images(tables, quarantine, reconciliation, timezone)
    by_severity: list[tuple[str, int]] = (
        [
            (str(k), int(v))
            for k, v in quarantine["severity"].astype(str).value_counts().sort_index().items()
        ]
        if len(quarantine)
        else []
    )
    reasons = list(
        dict.fromkeys(
            [str(r) for r in summary.get("partial_reasons") or []]
            + [str(r) for r in ready_block.get("reasons", [])]
            if isinstance(ready_block, Mapping)
            else []
        )
    )
    env = Environment(
        loader=PackageLoader("scaler_workbench", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        keep_trailing_newline=True,
    )
    html = env.get_template("report.html.j2").render(
        title=f"Sync report: {summary.get('profile', 'export')}"
        + (f", run {summary['run_id']}" if summary.get("run_id") else ""),
        status=status,
        ready=ready_block.get("ready") if isinstance(ready_block, Mapping) else None,
        reasons=reasons,
        facts=facts,
        count_names=count_names,
        counts=counts,
        findings=_findings(quarantine),
        coverage_counts=[
            (k, cov[k])
            for k in ("meter_months", "actual", "estimated", "partial", "missing")
            if k in cov
        ],
        images=images,
        reconciliation=recon_rows,
        quarantine_total=len(quarantine),
        quarantine_by_severity=by_severity,
        quarantine_rows=quarantine.head(_QUARANTINE_ROWS)
        .astype(object)
        .fillna("")
        .to_dict("records"),
    )
    return redact(html)


def write_report(path: str | os.PathLike[str], **parts: Any) -> Path:
    """Write :func:`render_report` to ``path`` (UTF-8).

    Parameters
    ----------
    path : path-like
        The HTML file to write (``export/report.html`` in a sync).
    **parts
        The arguments of :func:`render_report`.

    Returns
    -------
    Path
        ``path``.
    """
    p = Path(path)
    p.write_text(render_report(**parts), encoding="utf-8")
    return p
