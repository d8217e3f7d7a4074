"""Scaler files: field names, local dates, ISO offsets, rounded floats, determinism, atomicity."""

from __future__ import annotations

import hashlib
import json
import zipfile
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from scaler_workbench._secrets import register_secret
from scaler_workbench.coverage import coverage_matrix, monthly_totals
from scaler_workbench.exceptions import ExportError
from scaler_workbench.export import format_datetimes, to_scaler_files
from scaler_workbench.reconciliation import reconcile
from scaler_workbench.schema import USAGE, Tables, coerce_frame


def _tables() -> Tables:
    t = Tables()
    t.assets = coerce_frame(
        pd.DataFrame(
            {
                "asset_id": ["S2", "S1"],
                "name": ["Two", "One, Ltd"],
                "timezone": ["America/New_York", "Europe/London"],
            }
        ),
        "assets",
    )
    t.meters = coerce_frame(
        pd.DataFrame(
            {
                "meter_id": ["M1", "M2"],
                "asset_id": ["S1", "S2"],
                "meter_type": "Energy",
                "unit": "kWh",
            }
        ),
        "meters",
    )
    # M1 (London): Jan and Mar as local months (Mar 31 is BST), plus one hourly period.
    # M2 (New York): February, no timezone column -> taken from its asset.
    start = pd.to_datetime(
        ["2024-03-01T00:00Z", "2024-01-01T00:00Z", "2024-04-05T08:00Z", "2024-02-01T05:00Z"],
        utc=True,
    )
    end = pd.to_datetime(
        ["2024-03-31T23:00Z", "2024-02-01T00:00Z", "2024-04-05T09:00Z", "2024-03-01T05:00Z"],
        utc=True,
    )
    t.usage = coerce_frame(
        pd.DataFrame(
            {
                "meter_id": ["M1", "M1", "M1", "M2"],
                "start": start,
                "end": end,
                "consumption": [0.1, 1 / 3, 1e16, 2.0],
                "unit": "kWh",
                "estimated": [True, False, None, False],
                "timezone": ["Europe/London", "Europe/London", "Europe/London", None],
            }
        ),
        "usage",
    )
    t.readings = coerce_frame(
        pd.DataFrame(
            {
                "meter_id": ["M1"],
                "timestamp": pd.to_datetime(["2024-06-30T23:00Z"], utc=True),
                "value": [12345.678],
                "unit": "kWh",
                "timezone": ["Europe/London"],
            }
        ),
        "readings",
    )
    return t


def test_usage_csv_names_dates_offsets_and_exact_floats(tmp_path: Path) -> None:
    files = to_scaler_files(_tables(), tmp_path / "out", formats=("csv",))
    usage = pd.read_csv(files["usage.csv"], dtype=str, keep_default_na=False)
    expected = [c.export_name for c in USAGE.columns if c.export_name]
    assert list(usage.columns) == expected
    # sorted by key; local dates for local-midnight periods, ISO with offset otherwise
    assert usage[["meter_external_id", "start_date", "end_date"]].values.tolist() == [
        ["M1", "2024-01-01", "2024-02-01"],
        ["M1", "2024-03-01", "2024-04-01"],
        ["M1", "2024-04-05T09:00:00+01:00", "2024-04-05T10:00:00+01:00"],
        ["M2", "2024-02-01", "2024-03-01"],
    ]
    # rounded to the documented 12 significant digits (docs/cli.md), no float noise
    assert [float(v) for v in usage["consumption"]] == [0.333333333333, 0.1, 1e16, 2.0]
    assert usage["consumption"].tolist()[0] == "0.333333333333"
    assert usage["estimated"].tolist() == ["false", "true", "", "false"]
    readings = pd.read_csv(files["readings.csv"], dtype=str)
    assert readings["reading_date"].tolist() == ["2024-07-01T00:00:00+01:00"]
    assets = pd.read_csv(files["assets.csv"], dtype=str)
    assert assets["external_id"].tolist() == ["S1", "S2"] and assets["name"][0] == "One, Ltd"


def test_format_datetimes_negative_offset() -> None:
    ts = pd.Series(pd.to_datetime(["2024-01-15T17:30:00Z"], utc=True))
    assert format_datetimes(ts, "America/St_Johns").tolist() == ["2024-01-15T14:00:00-03:30"]


def test_same_data_gives_byte_identical_files(tmp_path: Path) -> None:
    a = to_scaler_files(_tables(), tmp_path / "a", summary={"run_id": 1})
    b = to_scaler_files(_tables(), tmp_path / "b", summary={"run_id": 2})
    for name in a:
        if name != "run_summary.json":
            assert a[name].read_bytes() == b[name].read_bytes(), name
    with zipfile.ZipFile(a["scaler.xlsx"]) as z:
        assert {i.date_time for i in z.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert set(z.namelist()) >= {"xl/workbook.xml"}


def test_xlsx_has_one_sheet_per_table_with_numbers(tmp_path: Path) -> None:
    from openpyxl import load_workbook

    files = to_scaler_files(_tables(), tmp_path / "out", formats=("xlsx",))
    assert set(files) == {"scaler.xlsx"}
    wb = load_workbook(files["scaler.xlsx"], read_only=True)
    assert wb.sheetnames == [
        "assets",
        "meters",
        "usage",
        "readings",
        "deactivated",
    ]
    rows = list(wb["usage"].iter_rows(values_only=True))
    assert rows[0][:4] == ("meter_external_id", "start_date", "end_date", "consumption")
    # numbers rounded to 12 significant digits; a local-date period is a date cell
    assert rows[1][3] == 0.333333333333 and rows[1][1] == datetime(2024, 1, 1)


def test_replaces_the_folder_and_refuses_unknown_formats(tmp_path: Path) -> None:
    out = tmp_path / "out"
    to_scaler_files(_tables(), out, summary={"x": 1})
    to_scaler_files(Tables(), out, formats=("csv",))
    assert not (out / "run_summary.json").exists() and not (out / "scaler.xlsx").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temp folders left
    with pytest.raises(ExportError, match="format"):
        to_scaler_files(Tables(), out, formats=("parquet",))


def test_no_secret_in_any_file(tmp_path: Path) -> None:
    secret = "tok-export-0123456789"
    register_secret(secret)
    q = pd.DataFrame(
        [
            {
                "table": "usage",
                "record_key": "M1|x",
                "stage": "transform",
                "rule": "bad",
                "severity": "error",
                "reason": f"request with {secret} failed",
                "record": json.dumps({"token": secret}),
            }
        ]
    )
    files = to_scaler_files(
        _tables(), tmp_path / "out", quarantine=q, summary={"url": f"x?k={secret}"}
    )
    for path in files.values():
        data = path.read_bytes()
        if path.suffix == ".xlsx":
            with zipfile.ZipFile(path) as z:
                data = b"".join(z.read(n) for n in z.namelist())
        assert secret.encode() not in data, path.name


def test_monthly_totals_and_coverage_use_local_months() -> None:
    t = _tables()
    totals = monthly_totals(t.usage, tables=t)
    assert totals[["meter_id", "month"]].values.tolist() == [
        ["M1", "2024-01"],
        ["M1", "2024-03"],
        ["M1", "2024-04"],
        ["M2", "2024-02"],
    ]
    cov = coverage_matrix(t.usage, tables=t, span="meter")
    m1 = cov[cov["meter_id"] == "M1"].set_index("month")["status"].astype(str).to_dict()
    assert m1 == {
        "2024-01": "actual",
        "2024-02": "missing",
        "2024-03": "estimated",
        "2024-04": "partial",  # one hour of April is covered, not the month
    }
    m2 = cov[cov["meter_id"] == "M2"]["status"].astype(str).tolist()
    assert m2 == ["actual", "missing", "missing"]  # stopped reporting after February


def test_reconcile_flags_differences_and_one_sided_keys() -> None:
    exported = pd.DataFrame({"meter_id": ["A", "A", "B", "C"], "consumption": [1.0, 2.0, 5.0, 1.0]})
    reference = pd.DataFrame({"meter_id": ["A", "B", "D"], "consumption": [3.0, 5.5, 1.0]})
    r = reconcile(exported, reference, rtol=0.05).set_index("meter_id")
    assert r.loc["A", "ok"] and not r.loc["B", "ok"]
    assert r.loc["B", "rel_diff"] == pytest.approx(0.5 / 5.5)
    assert not r.loc["C", "ok"] and not r.loc["D", "ok"]


def test_export_reconcile_is_the_reconciliation_one() -> None:
    # reconcile moved to reconciliation (issue 12); export keeps the name for callers
    from scaler_workbench import export, reconciliation

    assert export.reconcile is reconciliation.reconcile
    assert "reconcile" in export.__all__ and "reconcile" in reconciliation.__all__


def test_file_hashes_stable_across_calls(tmp_path: Path) -> None:
    digests = []
    for name in ("x", "y"):
        files = to_scaler_files(_tables(), tmp_path / name)
        digests.append({k: hashlib.sha256(v.read_bytes()).hexdigest() for k, v in files.items()})
    assert digests[0] == digests[1]


def test_reconciliation_csv_has_local_periods_and_stays_out_of_the_xlsx(tmp_path: Path) -> None:
    from scaler_workbench.reconciliation import reconcile_totals

    t = _tables()
    totals = pd.DataFrame(
        {
            "check": "monthly",
            "meter_id": ["M2", "M1"],
            "start": pd.to_datetime(["2024-02-01T05:00Z", "2024-01-01T00:00Z"], utc=True),
            "end": pd.to_datetime(["2024-03-01T05:00Z", "2024-02-01T00:00Z"], utc=True),
            "provider": [float("nan"), 0.1],
            "unit": "kWh",
            "raw_total": [float("nan"), 100.0],
            "raw_unit": "Wh",
            "note": ["total is not a number", ""],
        }
    )
    recon = reconcile_totals(t.usage, totals)
    files = to_scaler_files(t, tmp_path / "out", reconciliation=recon)
    text = files["reconciliation.csv"].read_text(encoding="utf-8").splitlines()
    assert text[0].startswith("check,meter_external_id,period_start,period_end,unit,exported")
    assert text[1].startswith("monthly,M1,2024-01-01,2024-02-01,kWh,")
    assert text[2].startswith("monthly,M2,2024-02-01,2024-03-01,kWh,") and "false" in text[2]
    assert text[2].endswith(",Wh,total is not a number")
    with zipfile.ZipFile(files["scaler.xlsx"]) as z:
        assert "reconciliation" not in z.read("xl/workbook.xml").decode()
