"""plots.py: the numbers behind each plot, and the artists each plot draws (MPLBACKEND=Agg)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from scaler_workbench import plots
from scaler_workbench.exceptions import SchemaError, UnitError
from scaler_workbench.schema import QUARANTINE, Tables, coerce_frame, empty_frame

LONDON = "Europe/London"


def _usage(rows: list[tuple], tz: str = LONDON) -> pd.DataFrame:
    """rows: (meter_id, local start, local end, consumption, estimated)."""
    frame = pd.DataFrame(rows, columns=["meter_id", "start", "end", "consumption", "estimated"])
    frame["start"] = pd.to_datetime(frame["start"]).dt.tz_localize(tz)
    frame["end"] = pd.to_datetime(frame["end"]).dt.tz_localize(tz)
    frame["unit"] = "kWh"
    frame["timezone"] = tz
    return coerce_frame(frame, "usage")


@pytest.fixture
def monthly() -> pd.DataFrame:
    return _usage(
        [
            ("M1", "2024-01-01", "2024-02-01", 100.0, False),
            ("M1", "2024-02-01", "2024-03-01", 90.0, True),
            # March missing for M1
            ("M1", "2024-04-01", "2024-04-10", 30.0, False),  # partial April
            ("M2", "2024-01-01", "2024-02-01", 10.0, False),
            ("M2", "2024-02-01", "2024-03-01", 10.0, False),
            ("M2", "2024-03-01", "2024-04-01", 10.0, False),
            ("M2", "2024-04-01", "2024-05-01", 10.0, False),
        ]
    )


def test_package_import_does_not_pull_matplotlib() -> None:
    code = (
        "import sys, scaler_workbench, scaler_workbench.plots; "
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported eagerly'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- coverage ------------------------------------------------------------------------------------
def test_coverage_matrix_states(monthly: pd.DataFrame) -> None:
    cov = plots.coverage_matrix(monthly, meters=["M1", "M2", "M3"])
    assert list(cov.columns) == ["meter_id", "month", "coverage", "estimated", "status"]
    assert len(cov) == 3 * 4  # 3 meters x Jan..Apr
    state = cov.set_index(["meter_id", "month"])["status"].astype(str)
    assert state[("M1", "2024-01")] == "actual"
    assert state[("M1", "2024-02")] == "estimated"
    assert state[("M1", "2024-03")] == "missing"
    assert state[("M1", "2024-04")] == "partial"
    assert (state.loc["M2"] == "actual").all()
    assert (state.loc["M3"] == "missing").all()  # a meter without usage still shows up
    april = cov[(cov["meter_id"] == "M1") & (cov["month"] == "2024-04")]["coverage"].item()
    assert april == pytest.approx(9 / 30)


def test_coverage_uses_local_months_not_utc() -> None:
    # Midnight local in Sydney (UTC+11 in January) is the previous day in UTC.
    usage = _usage([("S1", "2024-01-01", "2024-02-01", 5.0, False)], tz="Australia/Sydney")
    cov = plots.coverage_matrix(usage)
    assert list(cov["month"]) == ["2024-01"]
    assert cov["coverage"].item() == pytest.approx(1.0)


def test_coverage_splits_rows_across_months() -> None:
    # A bill from 15 Jan to 15 Feb covers half of January and about half of February.
    usage = _usage([("B1", "2024-01-15", "2024-02-15", 31.0, False)])
    cov = plots.coverage_matrix(usage).set_index("month")
    assert cov.loc["2024-01", "coverage"] == pytest.approx(17 / 31)
    assert cov.loc["2024-02", "coverage"] == pytest.approx(14 / 29)
    assert set(cov["status"].astype(str)) == {"partial"}


def test_coverage_of_half_hourly_intervals_is_full() -> None:
    starts = pd.date_range("2024-03-01", "2024-03-31 23:30", freq="30min", tz=LONDON)
    usage = coerce_frame(
        pd.DataFrame(
            {
                "meter_id": "H1",
                "start": starts,
                "end": starts + pd.Timedelta("30min"),
                "consumption": 1.0,
                "unit": "kWh",
                "timezone": LONDON,
            }
        ),
        "usage",
    )
    cov = plots.coverage_matrix(usage)
    assert list(cov["month"]) == ["2024-03"]
    assert cov["coverage"].item() == pytest.approx(1.0, abs=1e-3)  # DST day counted on wall clock
    assert cov["status"].astype(str).item() == "actual"


def test_plot_coverage_draws_matrix_and_legend(monthly: pd.DataFrame) -> None:
    from matplotlib.figure import Figure

    fig = plots.plot_coverage(monthly, meters=["M1", "M2", "M3"])
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    [image] = ax.get_images()
    assert image.get_array().shape == (3, 4)
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "2024-01",
        "2024-02",
        "2024-03",
        "2024-04",
    ]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == list(plots.COVERAGE_STATES)
    fig.canvas.draw()  # renders headless without error


def test_plot_coverage_empty_usage_says_so() -> None:
    fig = plots.plot_coverage(empty_frame("usage"))
    assert "no meters" in fig.axes[0].texts[0].get_text()


def test_coverage_rejects_wrong_input() -> None:
    with pytest.raises(SchemaError, match="lacks column"):
        plots.coverage_matrix(pd.DataFrame({"meter_id": ["a"]}))
    naive = pd.DataFrame(
        {
            "meter_id": ["a"],
            "start": pd.to_datetime(["2024-01-01"]),
            "end": pd.to_datetime(["2024-02-01"]),
        }
    )
    with pytest.raises(SchemaError, match="naive"):
        plots.coverage_matrix(naive)


# -- timeline ------------------------------------------------------------------------------------
def test_find_gaps_overlaps(monthly: pd.DataFrame) -> None:
    extra = _usage([("M2", "2024-03-20", "2024-04-05", 1.0, False)])  # overlaps March and April
    issues = plots.find_gaps_overlaps(pd.concat([monthly, extra], ignore_index=True))
    gaps = issues[issues["kind"] == "gap"]
    assert list(gaps["meter_id"]) == ["M1"]
    assert gaps["start"].item() == pd.Timestamp("2024-03-01", tz=LONDON)
    assert gaps["end"].item() == pd.Timestamp("2024-04-01", tz=LONDON)
    assert gaps["duration_days"].item() == pytest.approx(31 - 1 / 24)  # BST starts on 31 March
    overlaps = issues[issues["kind"] == "overlap"]
    assert list(overlaps["meter_id"]) == ["M2", "M2"]
    assert overlaps["duration_days"].sum() == pytest.approx(12 + 4 - 1 / 24)  # BST again


def test_plot_usage_timeline_shades_gaps_and_overlaps(monthly: pd.DataFrame) -> None:
    from matplotlib.collections import PolyCollection

    fig = plots.plot_usage_timeline(monthly, "M1")
    ax = fig.axes[0]
    [bars] = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bars.get_paths()) == 3
    spans = [p for p in ax.patches if p.get_alpha() == pytest.approx(0.35)]
    assert len(spans) == 1  # the March gap
    assert "1 gap(s), 0 overlap(s)" in ax.get_title()
    assert ax.get_ylabel() == "average per day [kWh/d]"
    # January: 100 kWh over 31 days; April: 30 kWh over 9 days
    heights = [np.max(p.vertices[:, 1]) for p in bars.get_paths()]
    assert heights[0] == pytest.approx(100 / 31)
    assert heights[2] == pytest.approx(30 / 9)
    fig.canvas.draw()


def test_plot_usage_timeline_unknown_meter() -> None:
    usage = _usage([("M1", "2024-01-01", "2024-02-01", 1.0, False)])
    with pytest.raises(SchemaError, match="no usage rows for meter 'nope'"):
        plots.plot_usage_timeline(usage, "nope")


# -- reconciliation ------------------------------------------------------------------------------
def _truth(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["meter_id", "month", "consumption", "unit"])


def test_reconcile_monthly_matches_and_differences(monthly: pd.DataFrame) -> None:
    truth = _truth(
        [
            ("M2", "2024-01", 10.0, "kWh"),
            ("M2", "2024-02", 10.0, "kWh"),
            ("M2", "2024-03", 8.0, "kWh"),
            ("M2", "2024-04", 10.0, "kWh"),
            ("M2", "2024-05", 4.0, "kWh"),  # reference has a month we do not
        ]
    )
    table = plots.reconcile_monthly(monthly[monthly["meter_id"] == "M2"], truth)
    assert list(table["month"]) == ["2024-01", "2024-02", "2024-03", "2024-04", "2024-05"]
    rel = table.set_index("month")["relative_difference"]
    assert rel["2024-01"] == 0.0
    assert rel["2024-03"] == pytest.approx(0.25)
    assert rel["2024-05"] == pytest.approx(-1.0)
    assert (table["unit"] == "kWh").all()


def test_reconcile_prorates_bills_by_duration() -> None:
    usage = _usage([("B1", "2024-01-15", "2024-02-15", 31.0, False)])
    table = plots.reconcile_monthly(usage, _truth([("B1", "2024-01", 17.0, "kWh")]))
    got = table.set_index("month")["consumption"]
    assert got["2024-01"] == pytest.approx(17.0)
    assert got["2024-02"] == pytest.approx(14.0)
    assert got.sum() == pytest.approx(31.0)  # totals are kept


def test_reconcile_refuses_mixed_units(monthly: pd.DataFrame) -> None:
    with pytest.raises(UnitError, match="normalise"):
        plots.reconcile_monthly(monthly, _truth([("M2", "2024-01", 10.0, "MWh")]))


def test_plot_reconciliation_one_panel_row_per_unit(monthly: pd.DataFrame) -> None:
    water = _usage([("W1", "2024-01-01", "2024-02-01", 3.0, False)]).assign(unit="m³")
    usage = pd.concat([monthly, water], ignore_index=True)
    truth = _truth([("M2", "2024-01", 10.0, "kWh"), ("W1", "2024-01", 3.0, "m³")])
    fig = plots.plot_reconciliation(usage, truth, reference_label="ground truth")
    assert len(fig.axes) == 4  # (kWh, m³) x (totals, difference)
    assert fig.axes[0].get_ylabel() == "total [kWh]"
    assert fig.axes[2].get_ylabel() == "total [m³]"
    assert len(fig.axes[0].containers[0]) == 4  # Jan..Apr bars
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == [
        "workbench",
        "ground truth",
    ]
    one = plots.plot_reconciliation(usage, truth, meter_id="W1")
    assert len(one.axes) == 2
    assert "meter W1" in one.get_suptitle()
    fig.canvas.draw()


# -- quarantine ----------------------------------------------------------------------------------
@pytest.fixture
def quarantine() -> pd.DataFrame:
    rows = [
        ("usage", "M1|a|b", "validation", "negative_consumption", "error"),
        ("usage", "M1|b|c", "validation", "negative_consumption", "error"),
        ("readings", "M2|t", "usage", "register_rollover", "warning"),
        ("meters", "M9", "transform", "unknown_meter_type", "error"),
        ("usage", "M9|a|b", "validation", "unknown_meter", "error"),
    ]
    frame = pd.DataFrame(rows, columns=["table", "record_key", "stage", "rule", "severity"])
    frame["reason"] = "because"
    return coerce_frame(frame, QUARANTINE)


def test_quarantine_counts(quarantine: pd.DataFrame) -> None:
    counts = plots.quarantine_counts(quarantine)
    assert counts.index[0] == "negative_consumption"
    assert counts.loc["negative_consumption", "usage"] == 2
    assert counts["total"].sum() == len(quarantine)
    assert set(counts.columns) == {"meters", "readings", "usage", "total"}


def test_plot_quarantine_reasons_stacks_tables(quarantine: pd.DataFrame) -> None:
    fig = plots.plot_quarantine_reasons(Tables(quarantine=quarantine))
    ax = fig.axes[0]
    assert len(ax.containers) == 3  # one bar container per table
    assert {t.get_text() for t in ax.get_yticklabels()} == {
        "negative_consumption",
        "register_rollover",
        "unknown_meter_type",
        "unknown_meter",
    }
    assert "5 rows by rule" in ax.get_title()
    errors = plots.plot_quarantine_reasons(quarantine, severity="error", by="stage")
    assert errors.axes[0].get_title() == "Quarantine (error): 4 rows by stage"
    fig.canvas.draw()


def test_plot_quarantine_reasons_empty() -> None:
    fig = plots.plot_quarantine_reasons(empty_frame(QUARANTINE))
    assert fig.axes[0].get_title() == "Quarantine: 0 rows"


# -- units ---------------------------------------------------------------------------------------
def test_unit_conversion_summary_and_plot() -> None:
    usage = coerce_frame(
        pd.DataFrame(
            {
                "meter_id": ["G1", "G1", "G2", "E1"],
                "start": pd.to_datetime(["2024-01-01", "2024-02-01", "2024-01-01", "2024-01-01"]),
                "end": pd.to_datetime(["2024-02-01", "2024-03-01", "2024-02-01", "2024-02-01"]),
                "consumption": [11.2, 22.4, 11.3, 5.0],
                "unit": "kWh",
                "raw_value": [1.0, 2.0, 1.0, 5.0],
                "raw_unit": ["m³", "m³", "m³", "kWh"],
                "factor": [11.2, 11.2, 11.3, 1.0],
            }
        ).assign(
            start=lambda f: f["start"].dt.tz_localize("UTC"),
            end=lambda f: f["end"].dt.tz_localize("UTC"),
        ),
        "usage",
    )
    readings = coerce_frame(
        pd.DataFrame(
            {
                "meter_id": ["R1"],
                "timestamp": pd.to_datetime(["2024-01-01"], utc=True),
                "value": [1000.0],
                "unit": ["kWh"],
                "raw_value": [1.0],
                "raw_unit": ["MWh"],
                "factor": [1000.0],
            }
        ),
        "readings",
    )
    summary = plots.unit_conversion_summary(Tables(usage=usage, readings=readings))
    gas = summary[(summary["table"] == "usage") & (summary["raw_unit"] == "m³")].iloc[0]
    assert gas["rows"] == 3
    assert gas["factor_min"] == pytest.approx(11.2)
    assert gas["factor_max"] == pytest.approx(11.3)
    assert gas["raw_total"] == pytest.approx(4.0)
    assert gas["total"] == pytest.approx(44.9)
    assert summary["rows"].sum() == 5
    assert set(summary["table"]) == {"usage", "readings"}

    fig = plots.plot_unit_conversions(Tables(usage=usage, readings=readings))
    ax = fig.axes[0]
    assert len(ax.patches) == 3
    texts = {t.get_text() for t in ax.texts}
    assert " ×11.2…11.3" in texts and " ×1000" in texts
    assert "usage: m³ → kWh" in {t.get_text() for t in ax.get_yticklabels()}
    fig.canvas.draw()


def test_plot_unit_conversions_empty() -> None:
    fig = plots.plot_unit_conversions(Tables())
    assert "no usage" in fig.axes[0].texts[0].get_text()


def test_plots_accept_an_existing_axes(monthly: pd.DataFrame) -> None:
    from matplotlib.figure import Figure

    fig = Figure()
    ax1, ax2 = fig.subplots(1, 2)
    assert plots.plot_coverage(monthly, ax=ax1) is fig
    assert plots.plot_usage_timeline(monthly, "M2", ax=ax2) is fig
    assert ax1.get_images() and ax2.collections


# -- display in Jupyter --------------------------------------------------------------------------
def test_every_plot_returns_a_figure_ipython_draws_as_png(monthly: pd.DataFrame) -> None:
    """A bare Figure shows as '<Figure size ...>' in Jupyter; ours carry a PNG in the bundle."""
    from IPython.core.formatters import DisplayFormatter

    truth = _truth([("M2", "2024-01", 10.0, "kWh")])
    figures = [
        plots.plot_coverage(monthly),
        plots.plot_usage_timeline(monthly, "M1"),
        plots.plot_reconciliation(monthly, truth),
        plots.plot_unit_conversions(monthly),
    ]
    formatter = DisplayFormatter()
    for fig in figures:
        bundle, _ = formatter.format(fig)
        assert bundle["image/png"].startswith(b"\x89PNG"), type(fig)


def test_plot_reconciliation_draws_float_noise_as_zero_inside_the_band() -> None:
    usage = _usage([("M1", "2024-01-01", "2024-02-01", 0.1 + 0.2, False)])
    truth = _truth([("M1", "2024-01", 0.3, "kWh")])  # 0.1 + 0.2 - 0.3 = 5.6e-17
    assert plots.reconcile_monthly(usage, truth)["difference"].iloc[0] != 0.0
    fig = plots.plot_reconciliation(usage, truth, tolerance=1e-6)
    dax = fig.axes[1]
    assert [bar.get_height() for bar in dax.containers[0]] == [0.0]
    low, high = dax.get_ylim()
    assert (low, high) == pytest.approx((-2e-4, 2e-4))  # twice the band of 1e-4 %
    assert "1 of 1 within band" in dax.get_title()


def test_plot_reconciliation_marks_months_outside_the_band() -> None:
    usage = _usage(
        [
            ("M1", "2024-01-01", "2024-02-01", 101.0, False),
            ("M1", "2024-02-01", "2024-03-01", 100.00001, False),
        ]
    )
    truth = _truth([("M1", "2024-01", 100.0, "kWh"), ("M1", "2024-02", 100.0, "kWh")])
    fig = plots.plot_reconciliation(usage, truth, tolerance=1e-6)
    dax = fig.axes[1]
    heights = [bar.get_height() for bar in dax.containers[0]]
    assert heights == pytest.approx([1.0, 1e-5])
    assert dax.get_ylim()[1] == pytest.approx(1.1)
    assert "worst month 1%; 1 of 2 within band" in dax.get_title()


# -- the report's PNGs ---------------------------------------------------------------------------
def _pixels(png: bytes | str) -> np.ndarray:
    """The RGBA pixels of a PNG (bytes, or base64 text as the report embeds it)."""
    import base64
    import io

    from PIL import Image

    raw = base64.b64decode(png) if isinstance(png, str) else png
    return np.asarray(Image.open(io.BytesIO(raw)).convert("RGBA"))


def test_report_png_is_the_savefig_png_of_the_public_plot(
    monthly: pd.DataFrame, quarantine: pd.DataFrame
) -> None:
    """The report draws each plot from its aggregated frame, once (no savefig dry run): the
    picture is, pixel for pixel, ``savefig`` of what the public plot_* function draws."""
    import io

    from scaler_workbench import report

    truth = _truth([("M1", "2024-01", 100.0, "kWh"), ("M2", "2024-02", 11.0, "kWh")])
    pairs = [
        (plots.plot_coverage(monthly), plots.draw_coverage(plots.coverage_matrix(monthly))),
        (
            plots.plot_reconciliation(monthly, truth, reference_label="provider", tolerance=0.01),
            plots.draw_reconciliation(
                plots.reconcile_monthly(monthly, truth), reference_label="provider", tolerance=0.01
            ),
        ),
        (
            plots.plot_quarantine_reasons(quarantine),
            plots.draw_quarantine(plots.quarantine_counts(quarantine).head(plots.QUARANTINE_TOP)),
        ),
    ]
    for public, drawn in pairs:
        buf = io.BytesIO()
        public.savefig(buf, format="png", dpi=report._PNG_DPI)
        ours = report._png(drawn)
        assert ours.startswith("iVBORw0KGgo")  # base64 of the PNG signature
        expected, got = _pixels(buf.getvalue()), _pixels(ours)
        assert got.shape == expected.shape and (got == expected).all()


def test_report_reuses_a_png_only_for_the_same_plot_of_the_same_data(
    monthly: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    import matplotlib

    from scaler_workbench import report

    monkeypatch.setattr(report, "_FIGURES", type(report._FIGURES)())
    drawn: list[pd.DataFrame] = []

    def draw(cov: pd.DataFrame, **options: object):
        drawn.append(cov)
        return plots.draw_coverage(cov, **options)

    cov = plots.coverage_matrix(monthly)
    first = report._figure_png(draw, cov)
    assert report._figure_png(draw, cov.copy()) == first and len(drawn) == 1  # same data: reused
    changed = cov.copy()
    changed.loc[0, "status"] = "missing"
    assert report._figure_png(draw, changed) != first and len(drawn) == 2  # one cell differs
    assert report._figure_png(draw, cov, max_labels=1) != first and len(drawn) == 3  # an option
    renamed = cov.assign(meter_id=cov["meter_id"].str.replace("M1", "M7"))
    assert report._figure_png(draw, renamed) != first and len(drawn) == 4  # a label
    with matplotlib.rc_context({"font.size": 14}):  # another style
        assert report._figure_png(draw, cov) != first and len(drawn) == 5
    monkeypatch.setattr(report, "_FIGURES_KEPT", 2)
    report._figure_png(draw, cov, max_labels=2)  # a new plot: the oldest entries are dropped
    assert len(drawn) == 6 and len(report._FIGURES) == 2
