"""Files an analyst accepts (issue 16 item 5): a styled, typed scaler.xlsx and no float noise.

Every number in every export file has at most :data:`SIGNIFICANT_DIGITS` significant digits
(docs/cli.md "Numbers, dates and units"), money is rounded to its currency's minor unit, and
registers are exported in their meter's own unit.
"""

from __future__ import annotations

import base64
import csv
import json
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from scaler_workbench._numeric import SIGNIFICANT_DIGITS, round_significant
from scaler_workbench._secrets import register_secret
from scaler_workbench.export import currency_decimals, round_number, to_scaler_files
from scaler_workbench.profile import read_profile
from scaler_workbench.report import REPORT_SECTIONS
from scaler_workbench.sandbox import Sandbox
from scaler_workbench.schema import Tables, coerce_frame
from scaler_workbench.sync import run_sync

ROOT = Path(__file__).resolve().parent.parent
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def significant_digits(text: str) -> int:
    """Significant digits of a decimal number's text (``1351.8`` 5, ``1e+16`` 1, ``0.0`` 0)."""
    mantissa = text.lstrip("+-").lower().split("e")[0]
    return len(mantissa.replace(".", "").strip("0"))


def _json_floats(value: Any) -> Iterator[float]:
    if isinstance(value, float):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _json_floats(v)
    elif isinstance(value, list):
        for v in value:
            yield from _json_floats(v)


def numbers_of_export(folder: Path) -> list[tuple[str, str]]:
    """(where, text) of every number cell in every file of an export folder.

    CSV: every cell that is a number but the quarantine's ``record`` (the provider's record
    kept verbatim as JSON); JSON: every float; XLSX: every numeric cell (its shortest repr).
    """
    from openpyxl import load_workbook

    found: list[tuple[str, str]] = []
    for path in sorted(folder.iterdir()):
        if path.suffix == ".csv":
            with path.open(encoding="utf-8", newline="") as fh:
                for row in csv.DictReader(fh):
                    for col, cell in row.items():
                        if col != "record" and _NUMBER.fullmatch(cell or ""):
                            found.append((f"{path.name}:{col}", cell))
        elif path.suffix == ".json":
            for v in _json_floats(json.loads(path.read_text(encoding="utf-8"))):
                found.append((path.name, repr(v)))
        elif path.suffix == ".xlsx":
            wb = load_workbook(path, read_only=True)
            for ws in wb.worksheets:
                for row in ws.iter_rows(values_only=True):
                    for v in row:
                        if isinstance(v, float):
                            found.append((f"{path.name}:{ws.title}", repr(v)))
    return found


def _noisy_tables() -> Tables:
    t = Tables()
    t.assets = coerce_frame(
        pd.DataFrame(
            {
                "asset_id": ["S1", "=cmd|' /C calc'!A0"],
                "name": ["One", "Two"],
                "timezone": ["Europe/London", "Europe/London"],
                "floor_area": [1234.5000000000002, None],
                "latitude": [51.50735100000001, None],
            }
        ),
        "assets",
    )
    t.meters = coerce_frame(
        pd.DataFrame(
            {"meter_id": ["M1"], "asset_id": ["S1"], "meter_type": "Energy", "unit": "kWh"}
        ),
        "meters",
    )
    start = pd.to_datetime(
        ["2024-01-01T00:00Z", "2024-02-01T00:00Z", "2024-04-05T08:00Z", "2024-05-01T00:00Z"],
        utc=True,
    )
    end = pd.to_datetime(
        ["2024-02-01T00:00Z", "2024-03-01T00:00Z", "2024-04-05T09:00Z", "2024-05-31T23:00Z"],
        utc=True,
    )
    t.usage = coerce_frame(
        pd.DataFrame(
            {
                "meter_id": "M1",
                "start": start,
                "end": end,
                "consumption": [1351.8000000000002, 2496.7999999999997, 0.1 + 0.2, 1 / 3],
                "unit": "kWh",
                "cost": [218.8414285714286, 1234.5600000000002, 0.12345, None],
                "currency": ["USD", "JPY", "BHD", None],
                "estimated": [True, False, None, False],
                "timezone": "Europe/London",
            }
        ),
        "usage",
    )
    t.readings = coerce_frame(
        pd.DataFrame(
            {
                "meter_id": ["M1"],
                "timestamp": pd.to_datetime(["2024-06-30T23:00Z"], utc=True),
                "value": [12345.678000000001],
                "unit": "kWh",
                "timezone": ["Europe/London"],
            }
        ),
        "readings",
    )
    return t


def test_round_number_has_at_most_twelve_significant_digits() -> None:
    rng = np.random.default_rng(16)
    values = np.concatenate(
        [
            rng.random(2000) * 10.0 ** rng.integers(-30, 30, 2000),
            [1351.8000000000002, 2496.7999999999997, 999999999999.96, 1e-300, 0.1 + 0.2, -1 / 3],
        ]
    )
    rounded = round_number(values)
    for v, r in zip(values, rounded, strict=True):
        assert significant_digits(repr(float(r))) <= SIGNIFICANT_DIGITS, (v, r)
        assert abs(r - v) <= 5e-12 * abs(v), (v, r)  # far inside the demo's 1e-9 check
    assert [
        repr(float(x)) for x in round_significant([1351.8000000000002, 2496.7999999999997])
    ] == [
        "1351.8",
        "2496.8",
    ]


def test_currency_minor_units_come_from_iso_4217() -> None:
    places = currency_decimals(pd.Series(["USD", "JPY", "BHD", "eur", None, "XYZ"]))
    assert places[:4].tolist() == [2, 0, 3, 2]
    assert np.isnan(places[4]) and np.isnan(places[5])  # unknown: never a guessed minor unit


def test_csv_numbers_are_rounded_and_money_to_its_minor_unit(tmp_path: Path) -> None:
    files = to_scaler_files(_noisy_tables(), tmp_path / "out", summary={"duration_s": 0.1 + 0.2})
    usage = pd.read_csv(files["usage.csv"], dtype=str, keep_default_na=False)
    assert usage["consumption"].tolist() == ["1351.8", "2496.8", "0.3", "0.333333333333"]
    assert usage["cost"].tolist() == ["218.84", "1235.0", "0.123", ""]
    assets = pd.read_csv(files["assets.csv"], dtype=str, keep_default_na=False)
    assert assets.set_index("external_id").loc["S1", "floor_area"] == "1234.5"
    assert assets.set_index("external_id").loc["S1", "latitude"] == "51.507351"
    assert json.loads(files["run_summary.json"].read_text())["duration_s"] == 0.3
    numbers = numbers_of_export(tmp_path / "out")
    assert len(numbers) > 10
    too_long = [(w, t) for w, t in numbers if significant_digits(t) > SIGNIFICANT_DIGITS]
    assert not too_long, too_long


def test_xlsx_is_styled_frozen_filtered_and_typed(tmp_path: Path) -> None:
    from openpyxl import load_workbook

    files = to_scaler_files(_noisy_tables(), tmp_path / "out", formats=("xlsx",))
    wb = load_workbook(files["scaler.xlsx"])
    for ws in wb.worksheets:
        header = ws[1]
        assert all(c.font.b for c in header), ws.title
        assert {c.fill.fgColor.rgb for c in header} == {"001F4E78"}, ws.title
        assert ws.freeze_panes == "A2", ws.title
        last = header[-1].column_letter
        assert ws.auto_filter.ref == f"A1:{last}{ws.max_row}", ws.title
        for c in header:
            width = ws.column_dimensions[c.column_letter].width
            assert width >= len(str(c.value)) + 2, (ws.title, c.value, width)
        for row in ws.iter_rows():
            for cell in row:
                assert cell.data_type != "f", (ws.title, cell.coordinate)
    usage = wb["usage"]
    names = [c.value for c in usage[1]]
    row = {n: usage.cell(row=2, column=i + 1) for i, n in enumerate(names)}
    # a local-month period: date cells with a date format
    assert row["start_date"].value == datetime(2024, 1, 1) and row["start_date"].is_date
    assert row["start_date"].number_format == "yyyy-mm-dd"
    assert isinstance(row["consumption"].value, float) and row["consumption"].value == 1351.8
    assert row["consumption"].number_format == "#,##0.00##########"
    assert row["cost"].value == 218.84 and row["cost"].number_format == "#,##0.00"
    assert row["estimated"].value is True and row["estimated"].data_type == "b"
    assert usage.cell(row=3, column=names.index("cost") + 1).value == 1235
    assert usage.cell(row=3, column=names.index("cost") + 1).number_format == "#,##0"
    assert usage.cell(row=4, column=names.index("cost") + 1).number_format == "#,##0.000"
    assert usage.cell(row=3, column=names.index("estimated") + 1).value is False
    assert usage.cell(row=4, column=names.index("estimated") + 1).value is None
    # an hourly period: the site's wall time as a datetime cell
    hourly = usage.cell(row=4, column=names.index("start_date") + 1)
    assert hourly.value == datetime(2024, 4, 5, 9, 0) and hourly.is_date
    assert hourly.number_format == "yyyy-mm-dd hh:mm:ss"
    readings = wb["readings"]
    assert readings["B2"].value == datetime(2024, 7, 1, 0, 0) and readings["B2"].is_date
    assert readings["C2"].value == 12345.678
    # provider text stays a string, whatever it starts with
    assets = wb["assets"]
    texts = [c.value for c in assets["A"][1:]]
    assert "=cmd|' /C calc'!A0" in texts
    for c in assets["A"][1:]:
        assert c.data_type == "s"


@pytest.fixture(scope="module")
def sandbox_sync(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str]]:
    """One sync of the small sandbox for the module: (SyncResult, the sandbox's API key)."""
    sb = Sandbox(sites=2, meters_per_site=3, start="2024-01-01", end="2024-04-01", lifetime=300.0)
    sb.start()
    mp = pytest.MonkeyPatch()
    try:
        for k, v in sb.env().items():
            mp.setenv(k, v)
        out = tmp_path_factory.mktemp("sync")
        profile = read_profile(ROOT / "mappings/sandbox/profile.toml")
        result = run_sync(profile, out=out, until="2024-04-01")
        assert result.status == "success"
        yield result, sb.env()["SANDBOX_API_KEY"]
    finally:
        mp.undo()
        sb.stop()


@pytest.fixture
def sandbox_export(sandbox_sync: tuple[Any, str]) -> Path:
    return Path(sandbox_sync[0].export_dir)


def test_every_number_of_a_sandbox_export_is_rounded(sandbox_export: Path) -> None:
    numbers = numbers_of_export(sandbox_export)
    files = {w.split(":")[0] for w, _ in numbers}
    assert {"usage.csv", "readings.csv", "scaler.xlsx", "run_summary.json"} <= files
    too_long = [(w, t) for w, t in numbers if significant_digits(t) > SIGNIFICANT_DIGITS]
    assert not too_long, too_long[:10]


def test_a_gas_register_is_exported_in_cubic_metres(sandbox_export: Path) -> None:
    meters = pd.read_csv(sandbox_export / "meters.csv", dtype=str)
    readings = pd.read_csv(
        sandbox_export / "readings.csv", dtype={"reading_value": float, "unit": str}
    )
    gas = meters[meters["description"].str.startswith("Gas register")]["external_id"]
    assert len(gas)
    regs = readings[readings["meter_external_id"].isin(gas)]
    assert len(regs) and set(regs["unit"]) == {"m³"}
    # the usage stays in the meter type's canonical unit: kWh from the m³ differences
    usage = pd.read_csv(sandbox_export / "usage.csv", dtype=str)
    assert set(usage[usage["meter_external_id"].isin(gas)]["unit"]) == {"kWh"}
    # a register of ~1e6 m³, not its ~1.1e7 kWh heating-value product
    assert regs["reading_value"].max() < 5e6


# -- the per-run HTML report ---------------------------------------------------------------------
_IMG = re.compile(r'<img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def test_a_sync_writes_a_self_contained_html_report(sandbox_sync: tuple[Any, str]) -> None:
    result, key = sandbox_sync
    assert result.files["report.html"] == Path(result.export_dir) / "report.html"
    html = result.files["report.html"].read_text(encoding="utf-8")
    for section in REPORT_SECTIONS:
        assert f'<section id="{section}">' in html, section
    # one inline PNG per plot: coverage heatmap, reconciliation, quarantine
    images = _IMG.findall(html)
    assert len(images) == html.count("<img") == 3
    for data in images:
        assert base64.b64decode(data).startswith(b"\x89PNG\r\n\x1a\n")
    assert "http://" not in html and "https://" not in html  # no CDN, nothing fetched
    assert "<script" not in html
    body = {s: html.split(f'<section id="{s}">')[1].split("</section>")[0] for s in REPORT_SECTIONS}
    assert "success" in body["summary"] and f"<td>{result.run_id}</td>" in body["summary"]
    assert "missing_intervals" in body["findings"] and "register_drop" in body["findings"]
    assert re.search(
        r"<code>M\d{4}\|\d{4}-\d\d-\d\dT[^<]*Z</code>", body["findings"]
    )  # example keys
    assert "meter_months: <strong>18</strong>" in body["coverage"]
    assert "<td>monthly</td>" in body["reconciliation"]
    open_rows = len(pd.read_csv(result.files["quarantine.csv"], dtype=str))
    assert f"<strong>{open_rows}</strong> open record(s)" in body["quarantine"] and open_rows
    assert key not in html


def test_the_report_escapes_provider_text_and_hides_secrets(tmp_path: Path) -> None:
    secret = "tok-report-0123456789"
    register_secret(secret)
    q = pd.DataFrame(
        [
            {
                "table": "usage",
                "record_key": "M1|<b>x</b>",
                "stage": "validation",
                "rule": "bad_value",
                "severity": "error",
                "reason": f"<script>alert(1)</script> via {secret}",
                "record": "{}",
            }
        ]
    )
    files = to_scaler_files(
        _noisy_tables(),
        tmp_path / "out",
        quarantine=q,
        summary={"status": "partial", "partial_reasons": ["1 quarantined record"]},
        report=True,
    )
    html = files["report.html"].read_text(encoding="utf-8")
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert secret not in html
    assert "status-partial" in html and "1 quarantined record" in html
    # no reconciliation checks: the section says so and has no plot
    recon = html.split('<section id="reconciliation">')[1].split("</section>")[0]
    assert "No reconciliation checks" in recon and "<img" not in recon
    assert len(_IMG.findall(html)) == 2  # coverage and quarantine


def test_the_report_is_only_written_when_asked(tmp_path: Path) -> None:
    files = to_scaler_files(_noisy_tables(), tmp_path / "out", formats=("csv",))
    assert "report.html" not in files and not (tmp_path / "out" / "report.html").exists()


def test_the_cli_names_the_report_in_its_last_lines(
    small_sandbox: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from scaler_workbench import cli

    small_sandbox()
    out = tmp_path / "out"
    profile = str(ROOT / "mappings/sandbox/profile.toml")
    assert cli.main(["sync", profile, "--out", str(out), "--until", "2024-04-01"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-3:]
    assert f"  report: {out / 'export' / 'report.html'}" in last, last
    assert (out / "export" / "report.html").is_file()


def test_readings_round_trip_to_their_meter_unit() -> None:
    from scaler_workbench.units import normalise_tables, readings_in_meter_units

    profile = read_profile(ROOT / "mappings/sandbox/profile.toml")  # uk heating value
    t = Tables()
    t.meters = coerce_frame(
        pd.DataFrame(
            {
                "meter_id": ["G", "E", "W"],
                "asset_id": "S1",
                "meter_type": ["Energy", "Energy", "Water"],
                "meter_subtype": ["Natural Gas", None, None],
                "raw_unit": ["m3", "Wh", "L"],
            }
        ),
        "meters",
    )
    t.readings = coerce_frame(
        pd.DataFrame(
            {
                "meter_id": ["G", "G", "E", "W"],
                "timestamp": pd.to_datetime(["2024-01-01", "2024-01-02"] * 2, utc=True),
                "value": [987510.9, 987943.8, 5_000_000.0, 1500.0],
            }
        ),
        "readings",
    )
    canonical = normalise_tables(t, profile)
    assert canonical.readings["unit"].tolist() == ["kWh", "kWh", "kWh", "m³"]
    assert canonical.readings["value"].iloc[0] > 1e7  # the m³ register as kWh
    own = readings_in_meter_units(canonical.readings, canonical.meters, profile)
    assert own["unit"].tolist() == ["m³", "m³", "Wh", "L"]
    assert own["value"].tolist() == pytest.approx([987510.9, 987943.8, 5e6, 1500.0], rel=1e-12)
    assert canonical.readings["unit"].tolist()[0] == "kWh"  # the input is not changed
