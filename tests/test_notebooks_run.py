"""The notebooks, executed: plots drawn, widgets readable when saved, facts right, no secrets.

Each notebook runs once per session (tests/_notebooks.py, nbclient, MPLBACKEND=Agg) into a
temporary output folder; the asserts that used to sit in the notebooks live here and read the
executed outputs and the facts a probe cell printed after the last cell.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from _notebooks import MAPPINGS, NOTEBOOKS, ROOT, executed, own_cells

NAMES = [p.stem for p in NOTEBOOKS]
WIDGET = "application/vnd.jupyter.widget-view+json"


def _facts(name: str) -> dict:
    return executed()[name].facts


def _tagged(name: str, tag: str):
    cells = [c for c in own_cells(executed()[name].notebook) if tag in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{name}: one cell tagged {tag!r}"
    return cells[0]


def _text(cell) -> str:
    parts = []
    for o in cell.outputs:
        if o.output_type == "stream":
            parts.append(o.text)
        elif "data" in o:
            parts.append(o.data.get("text/html", "") or o.data.get("text/plain", ""))
    return "\n".join(parts)


# -- item 1: every plot shows ---------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_every_plot_cell_has_a_png_output(name: str) -> None:
    plot_cells = [c for c in own_cells(executed()[name].notebook) if "plot_" in c.source]
    for cell in plot_cells:
        if not re.search(r"^plot_\w+\(", cell.source, flags=re.M):
            continue  # a cell that only imports plot functions
        pngs = [o for o in cell.outputs if "image/png" in o.get("data", {})]
        assert pngs, f"{name}: no image/png for\n{cell.source}"
        assert pngs[0].data["image/png"][:8] == "iVBORw0K"  # base64 of the PNG signature
    for cell in own_cells(executed()[name].notebook):
        for o in cell.outputs:
            plain = o.get("data", {}).get("text/plain", "")
            if "Figure size" in plain:
                assert "image/png" in o.data, f"{name}: a figure shown as text only: {plain}"


def test_notebooks_draw_the_plots_they_promise() -> None:
    expected = {
        "03_normalise_usage": {"plot-units", "plot-timeline", "plot-reconciliation"},
        "04_validate": {"plot-quarantine"},
        "05_sync_and_export": {"plot-coverage"},
        "06_ecostruxure": {"plot-reconciliation"},
    }
    for name, tags in expected.items():
        for tag in tags:
            outputs = _tagged(name, tag).outputs
            assert any("image/png" in o.get("data", {}) for o in outputs), (name, tag)


# -- every notebook: no errors, no secrets, readable widgets ---------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_no_error_outputs_and_no_secrets(name: str) -> None:
    facts = _facts(name)
    secrets = [s for s in facts["secrets"] if len(s) >= 8]
    assert secrets, "the probe found the session's secrets"
    for cell in own_cells(executed()[name].notebook):
        for o in cell.outputs:
            assert o.output_type != "error", f"{name}: {o.get('ename')}: {o.get('evalue')}"
            if o.output_type == "stream":
                assert o.name == "stdout" or "Traceback" not in o.text, o.text
            text = str(o)
            for secret in secrets:
                assert secret not in text, f"{name}: a secret in an output"


@pytest.mark.parametrize("name", NAMES)
def test_every_cell_ran_in_order(name: str) -> None:
    """What ``pytest notebooks --nbval-lax`` checked when make test still ran it (a second
    execution of every notebook): each code cell of the notebook as committed ran, in order,
    in a fresh ``python3`` kernel, and none raised (nbclient stops at the first exception;
    test_no_error_outputs_and_no_secrets reads the outputs)."""
    cells = own_cells(executed()[name].notebook)
    assert cells and [c.execution_count for c in cells] == list(range(1, len(cells) + 1))


@pytest.mark.parametrize("name", NAMES)
def test_widget_outputs_carry_a_readable_fallback(name: str) -> None:
    found = 0
    for cell in own_cells(executed()[name].notebook):
        for o in cell.outputs:
            data = o.get("data", {})
            if WIDGET not in data:
                continue
            found += 1
            assert "scaler-workbench-snapshot" in data["text/html"]
            assert not data["text/plain"].startswith(("VBox(", "HBox(", "Tab(")), data["text/plain"]
            assert len(data["text/plain"]) > 40
    widget_notebooks = {"01_explore_api", "02_map_provider", "04_validate", "05_sync_and_export"}
    if name in widget_notebooks | {"06_ecostruxure"}:
        assert found, f"{name}: expected a widget output"


# -- the facts the notebooks used to assert --------------------------------------------------------
def test_01_explore_api() -> None:
    f = _facts("01_explore_api")
    assert f["probe_best"] == f["declared"] == "offset"  # the probe agrees with the profile
    assert f["complete"] and f["records_match_totals"]
    assert f["informed"] >= f["planned"]  # counts only ever add requests
    assert f["replayed_equal"] and f["replayed"] == 6
    assert not any(s in f["recording_text"] for s in f["secrets"])  # recordings are redacted
    assert f["explorer_records"] == f["replayed"] // 2  # page 1 = the first site's meters
    assert "every credential the profile names is set" in _text(
        _tagged("01_explore_api", "credentials")
    )


def test_02_map_provider_with_the_analysts_edit() -> None:
    f = _facts("02_map_provider")
    assert f["helper_missing"] == [] and f["helper_agrees"]
    assert f["roundtrip"]  # the unedited workbook reads back as the profile's mapping
    assert f["changed"] == {"source_id": "serial"}  # exactly the analyst's edit
    assert f["findings"] == 0
    assert f["assets"] == f["sites"] and f["meters"] == f["raw_meters"]
    assert set(f["meter_types"]) <= {"Energy", "Water", "Waste"}
    assert f["quarantine"] == 0
    assert f["source_ids"] == f["serials"]  # the edit reached the tables
    assert f["saved_source_id"] == "serial"  # ... and the saved profile
    assert str(ROOT / "mappings") not in f["workdir"]  # a sandbox run works on a copy
    assert "meters!D" in _text(_tagged("02_map_provider", "analyst-edit"))


def test_notebooks_leave_the_shipped_files_alone() -> None:
    executed()
    assert MAPPINGS["before"] and MAPPINGS["after"] == MAPPINGS["before"]


def test_03_normalise_usage() -> None:
    f = _facts("03_normalise_usage")
    assert set(f["units"]) <= {"kWh", "m³", "kg"}
    assert f["unit_quarantine"] == 0  # every unit label was understood
    assert f["worst"] < 1e-9 and f["meter_months"] == 27


def test_04_validate() -> None:
    f = _facts("04_validate")
    assert f["report_exists"] and f["accepted_or_held"]
    assert f["strict_rules"] == ["missing_intervals"]
    assert f["released"] == f["held"] > 0


def test_05_sync_and_export() -> None:
    f = _facts("05_sync_and_export")
    assert f["first"][0] == "full" and f["first"][1] in ("success", "partial")
    assert f["second"][0] == "incremental"
    assert f["runner_stages"] == ["fetch", "transform", "validate", "commit", "export"]
    assert f["runner_requests"] > 10
    assert f["worst"] < 1e-9
    assert f["gone"] in f["deactivated"]
    html = _text(_tagged("05_sync_and_export", "sync-runner"))
    assert f"{f['runner_requests']} requests" in html and "<a href=" in html


def test_06_ecostruxure() -> None:
    f = _facts("06_ecostruxure")
    assert f["environments"] == ["ecostruxure", "sandbox"]
    assert f["token_mode"] == "0o600" and f["token_requests"] == 1 and f["rotated"]
    assert f["window_in_range"] and f["orphan_unjoined"] and f["complete"]
    assert f["gas_confirmed"] == [True, 10.55, False]
    rules = f["rules"]
    assert rules["site-paris-iaq:co2"] == ["not_imported", "warning"]
    assert rules["site-boston-iaq:co2"] == ["not_imported", "warning"]
    assert rules["site-boston-diesel:vol"] == ["energy_factor_unconfirmed", "error"]
    assert rules["ts-site-paris-unclaimed"] == ["timeseries_without_meter", "warning"]
    # issue 15 item 14: comfort series and waste diverted are reported, not orphans
    assert rules["site-paris-comfort:zone-temp"] == ["not_imported", "warning"]
    assert rules["site-boston-comfort:humidity"] == ["not_imported", "warning"]
    assert rules["site-paris-recycling:mass"] == ["not_imported", "warning"]
    assert f["gas"] == ["Natural Gas", "kWh"]  # m³ converted to kWh
    assert f["worst"] < 1e-9
    assert f["not_imported"] == ["site-boston-diesel:vol"] and f["not_imported_zero"]
    assert f["posted"] == 2 and f["scores_back"] == [["2024-03-01", 81]]
    assert f["registration"] == {"leedId": 1000123, "leedName": "Paris HQ"}
    assert f["errors"] == 0 and f["accepted_all"]
    assert {"not_imported", "energy_factor_unconfirmed"} <= set(f["report_rules"])
    assert "site-boston-diesel:vol" in f["exported_quarantine"]
    assert "site-paris-gas:vol" in f["exported_meters"]
    consent = _text(_tagged("06_ecostruxure", "consent-url"))
    assert "client_id=***" in consent and "state=***" in consent
    rejected = _text(_tagged("06_ecostruxure", "rejected"))
    assert "2 problem(s)" in rejected


# -- commands shown in the notebooks run -----------------------------------------------------------
def _shown_commands() -> list[tuple[str, str]]:
    import json

    out = []
    for path in NOTEBOOKS:
        nb = json.loads(path.read_text(encoding="utf-8"))
        for cell in nb["cells"]:
            if cell["cell_type"] != "markdown":
                continue
            for line in "".join(cell["source"]).splitlines():
                if line.strip().startswith("scaler-workbench "):
                    out.append((path.stem, line.strip()))
    return out


def test_notebooks_show_commands() -> None:
    names = {name for name, _ in _shown_commands()}
    assert {"05_sync_and_export", "06_ecostruxure"} <= names


@pytest.mark.parametrize("shown", _shown_commands(), ids=[c for _, c in _shown_commands()])
def test_commands_shown_in_notebooks_run(shown: tuple[str, str], tmp_path: Path) -> None:
    """Every command a notebook shows parses; those against a built-in sandbox run for real.

    A command for a real provider (its default environment is not a sandbox) would reach the
    internet: it is parsed and its profile read, offline.
    """
    from scaler_workbench.cli import _parser
    from scaler_workbench.profile import read_profile

    _name, line = shown
    argv = shlex.split(line)[1:]
    args = _parser().parse_args(argv)  # SystemExit (a usage error such as --profile) fails
    profile = read_profile(ROOT / args.profile)
    if not profile.env().builtin_sandbox:
        assert profile.env().base_url.startswith("https://"), line
        return
    (tmp_path / "mappings").symlink_to(ROOT / "mappings")
    run = subprocess.run(
        [sys.executable, "-m", "scaler_workbench.cli", *argv, "--formats", "csv"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
    )
    assert run.returncode in (0, 1), run.stdout + run.stderr  # success or partial
    assert (tmp_path / args.out / "export" / "usage.csv").is_file()


def test_05_runs_its_cli_command() -> None:
    f = _facts("05_sync_and_export")
    text = _text(_tagged("05_sync_and_export", "cli"))
    assert "$ scaler-workbench sync " in text and "(exit code 0)" in text
    assert f["cli_exit"] == 0 and "usage.csv" in f["cli_files"]
