"""CSV exports (issue 18 items 4 and 6): CSV and zipped CSV answers read into records.

The CSV-export flavour of the sandbox (scaler_workbench/sandbox/csvexport.py) is onboarded by
tests/data/csvexport/profile.toml alone (no Python): cp1252 sites behind a preamble, meters
with a BOM and no header row, readings zipped per site with a decimal comma and '.' thousands;
monthly totals equal the flavour's ground truth under 429/503 faults and a bad token exits 3.
Each option (delimiter, decimal, encoding, header row) and zipped CSV has its own test, and
truncated or irregular CSV and bad zips are failed pages (the window incomplete).
"""

from __future__ import annotations

import io
import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from _fakes import Reply

from scaler_workbench import cli
from scaler_workbench.clock import FakeClock
from scaler_workbench.connectors import fetch_resources
from scaler_workbench.connectors._csv import check_csv_table, number_text, read_csv_records
from scaler_workbench.exceptions import CsvFormatError, ProfileError, ResponseParseError
from scaler_workbench.profile import Profile, read_profile
from scaler_workbench.sandbox import Sandbox
from scaler_workbench.sandbox.csvexport import german_number
from scaler_workbench.store import StateStore
from scaler_workbench.sync import run_sync

from .conftest import fake_profile, flavour_truth, usage_months

ROOT = Path(__file__).resolve().parents[2]
PROFILE = ROOT / "tests" / "data" / "csvexport" / "profile.toml"
TINY = {"sites": 1, "meters_per_site": 1, "start": "2024-01-01", "end": "2024-01-03"}


@pytest.fixture
def csv_sandbox(make_sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    def start(**faults: Any) -> Sandbox:
        sb = make_sandbox(flavour="csvexport", flavour_options={}, **TINY, **faults)
        for k, v in sb.env().items():
            monkeypatch.setenv(k, v)
        return sb

    return start


def _opts(**csv: Any) -> dict[str, Any]:
    opts = check_csv_table({"csv": csv}, key="resources.x")
    assert opts is not None
    return opts


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


# -- the CSV-export flavour onboarded by its profile alone ------------------------------------
def test_csv_profile_sync_equals_ground_truth_under_429_and_503(
    csv_sandbox: Any, tmp_path: Path
) -> None:
    sb = csv_sandbox(every_nth_429=4, retry_after=2, every_nth_503=7)
    clock = FakeClock(datetime(2024, 3, 2, tzinfo=UTC))
    result = run_sync(read_profile(PROFILE), out=tmp_path, clock=clock, formats=("csv",))
    assert result.status == "success"
    truth = flavour_truth(sb)
    assert len(truth) == 8  # four meters x two months
    got = usage_months(tmp_path)
    assert got == pytest.approx(truth, rel=1e-9)
    # daily values of 700-3500 kWh: the thousands separator was in the files and was read
    series = sb.flavour.series  # type: ignore[attr-defined]
    assert any(v is not None and v >= 1000 for s in series.values() for v in s["value"])
    statuses = [r.status for r in sb.request_log]
    assert 429 in statuses and 503 in statuses
    assert 2.0 in clock.sleeps
    # cp1252 names, the BOM-less first column and text kept as written ("00007", not 7)
    assets = pd.read_csv(tmp_path / "export" / "assets.csv", dtype=str)
    assert "Müller Logistik" in set(assets["name"]) and "Hauptstraße 3" in set(assets["address"])
    meters = pd.read_csv(tmp_path / "export" / "meters.csv", dtype=str)
    assert len(meters) == 4 and set(meters["description"]) == {"00007", "00017"}


def test_a_truncated_zip_holds_its_sites_meters_and_the_next_run_completes(
    csv_sandbox: Any, tmp_path: Path
) -> None:
    sb = csv_sandbox()
    flavour: Any = sb.flavour
    flavour.cut_site = "S002"
    clock = FakeClock(datetime(2024, 3, 2, tzinfo=UTC))
    first = run_sync(read_profile(PROFILE), out=tmp_path, clock=clock, formats=("csv",))
    assert first.status != "success"
    summary = json.loads((tmp_path / "export" / "run_summary.json").read_text("utf-8"))
    assert summary["incomplete_windows"]  # the cut export's windows were not complete
    usage = pd.read_csv(tmp_path / "export" / "usage.csv")
    assert not usage["meter_external_id"].astype(str).str.startswith("S002").any()
    assert usage["meter_external_id"].astype(str).str.startswith("S001").any()
    flavour.cut_site = None
    second = run_sync(read_profile(PROFILE), out=tmp_path, clock=clock, formats=("csv",))
    assert second.status == "success"
    assert usage_months(tmp_path) == pytest.approx(flavour_truth(sb), rel=1e-9)


def test_csv_bad_token_exits_3(
    csv_sandbox: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    csv_sandbox()
    monkeypatch.setenv("SANDBOX_TOKEN", "tok_not-the-token-000")
    code = cli.main(["sync", str(PROFILE), "--out", str(tmp_path), "--formats", "csv"])
    assert code == cli.EXIT_AUTH
    err = capsys.readouterr().err
    assert "401" in err and "Traceback" not in err and "tok_not-the-token-000" not in err


# -- one test per option ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("delimiter", "text"),
    [(",", "id,v\n1,a;b\n"), (";", "id;v\n1;a,b\n"), ("\t", "id\tv\n1\ta b\n")],
)
def test_delimiter(delimiter: str, text: str) -> None:
    [rec] = read_csv_records(text.encode(), _opts(delimiter=delimiter))
    assert rec["id"] == "1" and rec["v"] in ("a;b", "a,b", "a b")
    # the wrong delimiter leaves one column: the row does not fit a two-name header
    with pytest.raises(CsvFormatError, match="field"):
        read_csv_records(b"id;v\n1;2;3\n", _opts(delimiter=";"))


def test_decimal_comma_with_thousands_reaches_the_numbers_as_plain_text() -> None:
    text = "id;kwh;note\n1;1.234,5;x\n2;-0,25;y\n3;12;z\n4;,5;w\n5;;v\n6;n/a;u\n7;1.234.567,125;t\n"
    opts = _opts(delimiter=";", decimal=",", thousands=".", numeric=["kwh"])
    records = read_csv_records(text.encode(), opts)
    assert [r["kwh"] for r in records] == [
        "1234.5",
        "-0.25",
        "12",
        "0.5",
        None,  # an empty cell: no data
        "n/a",  # not a number: left for the mapping to quarantine
        "1234567.125",
    ]
    assert [float(r["kwh"]) for r in records if r["kwh"] not in (None, "n/a")] == [
        1234.5,
        -0.25,
        12.0,
        0.5,
        1234567.125,
    ]
    assert records[0]["note"] == "x"  # other columns untouched


def test_a_number_in_another_notation_is_refused_not_misread() -> None:
    opts = _opts(delimiter=";", decimal=",", thousands=".", numeric=["kwh"])
    with pytest.raises(CsvFormatError, match=r"line 3, column 'kwh': '1\.5' is not a number"):
        read_csv_records(b"id;kwh\n1;2,5\n2;1.5\n", opts)
    # decimal point with ',' thousands: the other way round
    opts = _opts(decimal=".", thousands=",", numeric=["kwh"], delimiter=";")
    assert read_csv_records(b"id;kwh\n1;1,234.5\n", opts)[0]["kwh"] == "1234.5"
    assert number_text("1,5", opts) is None


def test_decimal_options_need_the_numeric_columns() -> None:
    with pytest.raises(ProfileError, match="need the numeric columns") as info:
        _opts(decimal=",")
    assert info.value.key == "resources.x.csv.numeric"
    with pytest.raises(
        CsvFormatError, match=r"numeric column\(s\) \['kwh'\] are not in the header"
    ):
        read_csv_records(b"id;v\n1;2\n", _opts(delimiter=";", decimal=",", numeric=["kwh"]))


def test_encoding_cp1252_and_a_utf8_bom() -> None:
    cp = "Name;Straße\nMüller;Königsallee 1\n".encode("cp1252")
    [rec] = read_csv_records(cp, _opts(delimiter=";", encoding="cp1252"))
    assert rec == {"Name": "Müller", "Straße": "Königsallee 1"}
    with pytest.raises(CsvFormatError, match="not valid UTF-8") as info:
        read_csv_records(cp, _opts(delimiter=";"))
    assert "csv.encoding" in info.value.hint
    bom = "\ufeffmeter,unit\nM1,kWh\n".encode()
    for opts in (_opts(), _opts(encoding="utf-8-sig"), _opts(encoding="utf-8")):
        assert read_csv_records(bom, opts) == [{"meter": "M1", "unit": "kWh"}]
    # without an encoding option, the Content-Type's charset is used
    latin = "a;b\nç;é\n".encode("latin-1")
    records = read_csv_records(
        latin, _opts(delimiter=";"), content_type="text/csv; charset=ISO-8859-1"
    )
    assert records == [{"a": "ç", "b": "é"}]
    with pytest.raises(ProfileError, match="not an encoding"):
        _opts(encoding="klingon")


def test_header_row_index_and_no_header_with_columns() -> None:
    text = b"Export;Sites\nCreated;2024-03-02\nid;name\nS1;A\nS2;B\n"
    assert read_csv_records(text, _opts(delimiter=";", header=2)) == [
        {"id": "S1", "name": "A"},
        {"id": "S2", "name": "B"},
    ]
    no_header = b"M1,S1,0007\nM2,S1,0008\n"
    opts = _opts(header=False, columns=["meter", "site", "serial"])
    assert read_csv_records(no_header, opts)[0] == {"meter": "M1", "site": "S1", "serial": "0007"}
    # header given and columns renaming it (same count)
    renamed = read_csv_records(b"a,b\n1,2\n", _opts(columns=["x", "y"]))
    assert renamed == [{"x": "1", "y": "2"}]
    with pytest.raises(ProfileError, match="header = false needs columns"):
        _opts(header=False)
    with pytest.raises(CsvFormatError, match="no header row at index 5"):
        read_csv_records(b"a,b\n1,2\n", _opts(header=5))
    with pytest.raises(CsvFormatError, match="repeated names"):
        read_csv_records(b"a,a\n1,2\n", _opts())


def test_empty_cells_are_none_blank_lines_skipped_text_kept() -> None:
    records = read_csv_records(b"id,v\r\n007,\r\n\r\n008, x \r\n", _opts())
    assert records == [{"id": "007", "v": None}, {"id": "008", "v": " x "}]


# -- zipped CSV -------------------------------------------------------------------------------
def test_a_zip_of_csv_files_is_read_member_by_member_in_name_order() -> None:
    body = _zip(
        {
            "b.csv": b"m;v\nM2;2,5\n",
            "a.csv": b"m;v\nM1;1.000,0\n",
            "readme.txt": b"not a csv",
            "sub/": b"",
        }
    )
    opts = _opts(delimiter=";", decimal=",", thousands=".", numeric=["v"])
    assert read_csv_records(body, opts) == [{"m": "M1", "v": "1000.0"}, {"m": "M2", "v": "2.5"}]
    only_b = _opts(delimiter=";", decimal=",", thousands=".", numeric=["v"], files="b*.csv")
    assert read_csv_records(body, only_b) == [{"m": "M2", "v": "2.5"}]
    with pytest.raises(CsvFormatError, match=r"holds no file matching '\*\.json'") as info:
        read_csv_records(body, _opts(files="*.json"))
    assert "readme.txt" in info.value.message


def test_a_truncated_zip_is_a_csv_format_error() -> None:
    body = _zip({"a.csv": b"m,v\n" + b"M1,1\n" * 2000})
    with pytest.raises(CsvFormatError, match="not a readable zip archive"):
        read_csv_records(body[: len(body) // 2], _opts())


# -- truncated or irregular CSV: a failed page, the window incomplete -------------------------
@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"id,v,w\n1,2,3\n4,5", r"line 3 has 2 field\(s\), the header 3; .*truncated"),
        (b'id,v\n1,"abc\n2,', r"ends inside a quoted field: truncated"),
        (b"id,v\n1,2,3\n4,5\n", r"line 2 has 3 field"),
    ],
)
def test_truncated_or_irregular_csv_is_refused(body: bytes, match: str) -> None:
    with pytest.raises(CsvFormatError, match=match) as info:
        read_csv_records(body, _opts())
    assert isinstance(info.value, ResponseParseError)  # a failed page, as a truncated JSON body


def test_a_truncated_export_is_a_failed_page_and_the_fetch_incomplete(serve: Any) -> None:
    good = b"id,v\nA,1\nB,2\n"
    bodies = {"/ok.csv": good, "/cut.csv": b"id,v,w\nA,1,2\nB,2"}
    server = serve(lambda req: Reply(200, bodies[req.path], content_type="text/csv"))
    profile = fake_profile(
        server.url,
        resources={
            "ok": {"path": "/ok.csv", "csv": {}, "primary_key": "id"},
            "cut": {"path": "/cut.csv", "format": "csv"},
        },
    )
    out = fetch_resources(profile, clock=FakeClock())
    assert out["ok"].records == [{"id": "A", "v": "1"}, {"id": "B", "v": "2"}]
    assert out["ok"].report.complete
    report = out["cut"].report
    assert not report.complete and out["cut"].records == []
    [failed] = report.failed_pages
    assert "CsvFormatError" in failed["error"] and "truncated" in failed["error"]
    assert report.incomplete and "truncated" in report.incomplete[0]["why"]


def test_a_zip_served_over_http_is_read_and_a_bad_one_fails_its_page(serve: Any) -> None:
    archive = _zip({"x.csv": b"meter;kwh\nM1;1.234,5\n"})
    bodies = {"/good.zip": archive, "/bad.zip": archive[:40]}
    server = serve(lambda req: Reply(200, bodies[req.path], content_type="application/zip"))
    csv = {"delimiter": ";", "decimal": ",", "thousands": ".", "numeric": ["kwh"]}
    profile = fake_profile(
        server.url,
        resources={
            "good": {"path": "/good.zip", "csv": csv},
            "bad": {"path": "/bad.zip", "csv": csv},
        },
    )
    out = fetch_resources(profile, clock=FakeClock())
    assert out["good"].records == [{"meter": "M1", "kwh": "1234.5"}]
    [failed] = out["bad"].report.failed_pages
    assert "CsvFormatError" in failed["error"] and "zip" in failed["error"]


# -- profile checks ---------------------------------------------------------------------------
def test_csv_options_are_checked_when_the_profile_is_read() -> None:
    base: dict[str, Any] = {
        "provider": {"name": "fake", "timezone": "UTC"},
        "environments": {"test": {"base_url": "http://127.0.0.1:9"}},
    }
    with pytest.raises(ProfileError, match="did you mean 'delimiter'"):
        Profile.from_dict({**base, "resources": {"x": {"path": "/x", "csv": {"delimter": ";"}}}})
    with pytest.raises(ProfileError, match="one character"):
        check_csv_table({"csv": {"delimiter": ";;"}}, key="resources.x")
    with pytest.raises(ProfileError, match="both ','"):
        check_csv_table({"csv": {"decimal": ",", "thousands": ","}}, key="resources.x")
    with pytest.raises(ProfileError, match="has a csv table"):
        check_csv_table({"format": "json", "csv": {}}, key="resources.x")
    assert check_csv_table({"format": "json"}, key="resources.x") is None


def test_the_flavours_number_format_is_the_profiles_notation() -> None:
    opts = _opts(delimiter=";", decimal=",", thousands=".", numeric=["v"])
    for value in (0.5, 12.0, 999.9, 1234.5, 3499.9, 1234567.1):
        assert float(number_text(german_number(value), opts) or "nan") == value


def test_csv_daily_quota_exits_4_and_the_next_run_resumes(
    csv_sandbox: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A quota answer (429 without Retry-After) stops the CSV-export sync with exit 4, never
    retried; the next run (a new day) completes to ground truth."""
    sb = csv_sandbox(quota_after=3)
    args = ["sync", str(PROFILE), "--out", str(tmp_path), "--formats", "csv"]
    assert cli.main(args) == cli.EXIT_QUOTA
    assert [r.status for r in sb.request_log].count(429) == 1  # stopped, not retried
    assert "quota" in capsys.readouterr().err
    sb.clear_faults()
    sb.clear_log()
    assert cli.main(args) == cli.EXIT_OK
    truth = flavour_truth(sb)
    got = usage_months(tmp_path)
    assert got == pytest.approx(truth, rel=1e-9)
    with StateStore(tmp_path / "state" / "csv_portal.sqlite") as store:
        assert store.runs()["status"].tolist() == ["success", "quota_exhausted"]
