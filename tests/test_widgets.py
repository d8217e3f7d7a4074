"""widgets.py: every panel builds headless, its callbacks update its outputs, no secret shows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from scaler_workbench import widgets
from scaler_workbench._secrets import register_secret
from scaler_workbench.exceptions import MappingError, SchemaError
from scaler_workbench.profile import read_profile
from scaler_workbench.schema import QUARANTINE, Tables, coerce_frame

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "mappings" / "sandbox" / "profile.toml"
SECRET = "sk-live-9f8e7d6c5b4a3210-do-not-show"


def test_package_import_does_not_pull_ipywidgets() -> None:
    code = (
        "import sys, scaler_workbench, scaler_workbench.widgets; "
        "assert 'ipywidgets' not in sys.modules, 'ipywidgets imported eagerly'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- credentials ---------------------------------------------------------------------------------
def test_profile_env_vars_lists_names_only() -> None:
    names = widgets.profile_env_vars(read_profile(PROFILE))
    assert {"key": "auth.key_env", "kind": "env", "name": "SANDBOX_API_KEY"} in names
    assert {
        "key": "environments.sandbox.base_url_env",
        "kind": "env",
        "name": "SCALER_SANDBOX_URL",
    } in names


def test_credentials_panel_never_shows_a_value() -> None:
    register_secret(SECRET)
    environ = {"SANDBOX_API_KEY": SECRET}
    panel = widgets.CredentialsPanel(read_profile(PROFILE), environ=environ)
    status = panel.status().set_index("name")["is_set"]
    assert bool(status["SANDBOX_API_KEY"]) is True
    assert bool(status["SCALER_SANDBOX_URL"]) is False
    text = panel.text()
    assert SECRET not in text
    assert SECRET not in repr(panel.widget.get_state())
    assert "SANDBOX_API_KEY" in text and "✔ set" in text
    assert "– not set (optional)" in text  # SCALER_SANDBOX_URL only overrides the base URL
    assert "every credential the profile names is set" in text


def test_credentials_panel_refresh_sees_new_variables() -> None:
    environ: dict[str, str] = {}
    panel = widgets.CredentialsPanel(read_profile(PROFILE), environ=environ)
    assert "not set: SANDBOX_API_KEY" in panel.summary.value
    environ["SANDBOX_API_KEY"] = SECRET
    environ["SCALER_SANDBOX_URL"] = "http://127.0.0.1:5000/api/v1"
    panel.refresh_button.click()
    assert "every credential the profile names is set" in panel.summary.value
    assert "127.0.0.1:5000" in panel.summary.value  # the base URL override is shown
    assert SECRET not in panel.text()


def test_credentials_panel_checks_token_files(tmp_path: Path) -> None:
    text = PROFILE.read_text().replace(
        '[auth]\ntype = "api_key"', '[auth]\ntoken_file = "tokens.json"\ntype = "api_key"'
    )
    (tmp_path / "profile.toml").write_text(text)
    panel = widgets.CredentialsPanel(read_profile(tmp_path / "profile.toml"), environ={})
    assert "✘ missing" in panel.table.value
    (tmp_path / "tokens.json").write_text("{}")
    panel.refresh()
    assert "✔ exists" in panel.table.value


# -- mapping helper ------------------------------------------------------------------------------
SITES = [
    {
        "id": "S1",
        "name": "Head office",
        "address": {"line1": "1 High St", "city": "Leeds", "postcode": "LS1", "country": "GB"},
        "timezone": "Europe/London",
    },
    {"id": "S2", "name": "Depot", "address": {"city": "York"}, "timezone": "Europe/London"},
]
METERS = [
    {
        "id": "M1",
        "name": "Main",
        "commodity": "electricity",
        "unit": "kWh",
        "_parent": {"site_id": "S1"},
    },
    {"id": "M2", "name": "Gas", "commodity": "gas", "unit": "m3", "_parent": {"site_id": "S1"}},
    {"id": "M3", "name": "Tap", "commodity": "water", "unit": "m3", "_parent": {"site_id": "S2"}},
]


def test_mapping_helper_guesses_and_previews() -> None:
    helper = widgets.MappingHelper({"sites": SITES, "meters": METERS}, table="assets")
    paths = helper.field_paths()
    assert "address.city" in set(paths["path"])
    assert helper.field_pickers["asset_id"].value == "id"  # a table's own key <- "id"
    assert helper.field_pickers["name"].value == "name"  # guessed by name
    assert helper.field_pickers["city"].value == "address.city"  # guessed by last segment
    assert helper.field_pickers["latitude"].value == ""  # nothing like it in the samples
    helper.field_pickers["asset_id"].value = ""  # the callback re-renders the checks
    assert helper.missing_required() == ["asset_id"]
    assert "asset_id" in helper.problems.value
    helper.field_pickers["asset_id"].value = "id"
    assert helper.missing_required() == []
    assert "every required column is mapped" in helper.problems.value
    spec = helper.mapping()
    assert spec["resource"] == "sites"
    assert spec["fields"]["asset_id"] == "id"
    assert "[mapping.assets.fields]" in helper.preview.value
    assert 'asset_id = "id"' in helper.preview.value


def test_mapping_helper_meter_types_follow_the_type_field() -> None:
    helper = widgets.MappingHelper(
        {"sites": SITES, "meters": METERS}, table="meters", resource="meters"
    )
    assert helper.field_pickers["meter_type"].value == "commodity"  # guessed by alias
    assert helper.field_pickers["raw_unit"].value == "unit"
    assert helper.field_pickers["meter_id"].value == "id"
    assert helper.field_pickers["asset_id"].value == ""  # "_parent.site_id": the analyst picks
    assert "unit" not in helper.field_pickers  # the canonical unit comes from units.py
    assert helper.missing_required() == ["asset_id"]
    helper.field_pickers["meter_type"].value = ""
    assert helper.type_pickers == {}  # no meter_type field: nothing to translate
    helper.field_pickers["meter_type"].value = "commodity"
    assert list(helper.type_pickers) == ["electricity", "gas", "water"]
    elec_type, elec_sub = helper.type_pickers["electricity"]
    water_type, _water_sub = helper.type_pickers["water"]
    assert water_type.value == "Water"  # guessed from the value itself
    assert elec_type.options == ("", "Energy", "Water", "Waste")
    elec_type.value = "Energy"  # subtype options follow the type
    assert "Off-site Electricity" in elec_sub.options
    assert "Potable" not in elec_sub.options
    elec_sub.value = "Off-site Electricity"
    helper.type_pickers["gas"][0].value = "Energy"
    helper.type_pickers["gas"][1].value = "Natural Gas"
    maps = helper.mapping()["value_maps"]
    assert maps["meter_type"] == {"electricity": "Energy", "gas": "Energy", "water": "Water"}
    assert maps["meter_subtype"] == {"electricity": "Off-site Electricity", "gas": "Natural Gas"}
    assert "meter_subtype" in helper.preview.value
    # switching a type clears a subtype that no longer fits
    elec_type.value = "Waste"
    assert elec_sub.value == ""


def test_mapping_helper_prefills_from_profile() -> None:
    profile = read_profile(PROFILE)
    helper = widgets.MappingHelper(
        {"sites": SITES, "meters": METERS}, table="meters", profile=profile
    )
    assert helper.resource.value == "meters"
    assert helper.field_pickers["asset_id"].value == "_parent.site_id"
    assert helper.field_pickers["serial"].value == "" if "serial" in helper.field_pickers else True
    assert helper.field_pickers["metadata"].value == ""  # the profile's choices, no guessing
    assert helper.missing_required() == []
    assert helper.type_pickers["gas"][1].value == "Natural Gas"
    assert helper.mapping()["value_maps"]["meter_type"]["electricity"] == "Energy"
    assert helper.section()["meters"]["fields"]["meter_id"] == "id"


def test_mapping_helper_usage_section_nests_by_source() -> None:
    intervals = [{"id": "i1", "interval_start": "2024-01-01T00:00Z", "value": 1.0}]
    helper = widgets.MappingHelper({"intervals": intervals}, table="usage", source="intervals")
    helper.field_pickers["start"].value = "interval_start"
    assert helper.section() == {
        "usage": {
            "intervals": {
                "resource": "intervals",
                "fields": {"start": "interval_start", "consumption": "value"},
            }
        }
    }
    assert helper.missing_required() == ["meter_id", "end"]


def test_mapping_helper_bad_input() -> None:
    with pytest.raises(MappingError, match="no sample records"):
        widgets.MappingHelper({})
    with pytest.raises(SchemaError, match="unknown table"):
        widgets.MappingHelper({"sites": SITES}, table="buildings")
    with pytest.raises(MappingError, match="no samples for resource"):
        widgets.MappingHelper({"sites": SITES}, resource="meters")


# -- quarantine browser --------------------------------------------------------------------------
@pytest.fixture
def quarantine() -> pd.DataFrame:
    rows = [
        ("usage", "M1|a", "validation", "negative_consumption", "error", "consumption < 0"),
        ("usage", "M1|b", "validation", "negative_consumption", "error", "consumption < 0"),
        ("readings", "M2|t", "usage", "register_rollover", "warning", "register wrapped"),
        ("meters", "M9", "transform", "unknown_meter_type", "error", "commodity 'steam'"),
    ]
    frame = pd.DataFrame(
        rows, columns=["table", "record_key", "stage", "rule", "severity", "reason"]
    )
    frame["record"] = '{"api_key": "' + SECRET + '"}'
    return coerce_frame(frame, QUARANTINE)


def test_quarantine_browser_filters(quarantine: pd.DataFrame) -> None:
    register_secret(SECRET)
    browser = widgets.QuarantineBrowser(Tables(quarantine=quarantine))
    assert "<b>4</b> of 4" in browser.counts.value
    assert browser.rule_picker.options[0] == "(all)"
    assert browser.rule_picker.options[1] == "negative_consumption"  # most frequent first
    browser.table_picker.value = "usage"
    assert browser.rule_picker.options == ("(all)", "negative_consumption")
    assert len(browser.filtered()) == 2
    assert "<b>2</b> of 4" in browser.counts.value
    browser.table_picker.value = "(all)"
    browser.severity_picker.value = "warning"
    assert list(browser.filtered()["rule"]) == ["register_rollover"]
    assert "register wrapped" in browser.rows.value
    browser.severity_picker.value = "(all)"
    browser.search.value = "STEAM"
    assert list(browser.filtered()["record_key"]) == ["M9"]
    assert SECRET not in browser.text()  # records pass through redaction


def test_quarantine_browser_accepts_a_validation_result(quarantine: pd.DataFrame) -> None:
    class Result:
        quarantined = quarantine

    browser = widgets.QuarantineBrowser(Result(), max_rows=1)
    assert "3 more rows not shown" in browser.rows.value


def test_quarantine_browser_rejects_other_things() -> None:
    with pytest.raises(SchemaError, match="cannot find quarantine rows"):
        widgets.QuarantineBrowser([1, 2, 3])
    with pytest.raises(SchemaError, match="lacks column"):
        widgets.QuarantineBrowser(pd.DataFrame({"table": ["usage"]}))


# -- API explorer (over loopback against the sandbox) --------------------------------------------
@pytest.fixture
def explorer_env(make_sandbox, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    sb = make_sandbox(seed=1, sites=2, meters_per_site=3, end="2024-03-01", page_size=50)
    for name, value in sb.env().items():
        monkeypatch.setenv(name, value)
    return sb


def test_api_explorer_fetches_page_one_with_parent_params(explorer_env) -> None:  # type: ignore[no-untyped-def]
    sb = explorer_env
    explorer = widgets.ApiExplorer(read_profile(PROFILE))
    assert explorer.resource.options[0] == "sites"
    records = explorer.fetch()
    assert [r["id"] for r in records] == [s["id"] for s in records]
    assert len(records) == 2
    assert "2 records on page 1" in explorer.status.value
    assert "Head" in explorer.table.value or records[0]["name"] in explorer.table.value
    assert '"total": 2' in explorer.raw.value
    # a child resource: the first parent's id fills {site_id}
    explorer.resource.value = "meters"
    assert list(explorer.param_inputs) == ["site_id"]
    records = explorer.fetch()
    assert records and all(
        r["_parent"]["site_id"] == records[0]["_parent"]["site_id"] for r in records
    )
    assert explorer.param_inputs["site_id"].value == records[0]["_parent"]["site_id"]
    # a grandchild with a date range and a parent filter (kind = interval)
    explorer.resource.value = "intervals"
    assert explorer.since.value == "2024-01-01"  # from the profile's date_range.since
    explorer.param_inputs["meter_id"].value = ""
    records = explorer.fetch()
    assert len(records) == 500  # one page of the profile's limit
    assert "more pages follow" in explorer.status.value
    assert {"interval_start", "value", "estimated"} <= set(records[0])
    key = sb.env()["SANDBOX_API_KEY"]
    assert key not in explorer.text()


def test_api_explorer_probe_and_plan(explorer_env) -> None:  # type: ignore[no-untyped-def]
    explorer = widgets.ApiExplorer(read_profile(PROFILE))
    explorer.resource.value = "intervals"
    explorer.until.value = "2024-02-01"
    result = explorer.probe()
    assert result.best is not None and result.best["type"] == "offset"
    assert "WORKS" in explorer.probe_view.value
    plan = explorer.plan()
    assert plan.total_requests >= 1
    assert [r["resource"] for r in plan.rows] == ["sites", "meters", "intervals"]
    assert "total:" in explorer.plan_view.value
    assert explorer.tabs.selected_index == 3


def test_api_explorer_shows_errors_instead_of_raising(explorer_env, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SANDBOX_API_KEY", "wrong-key-123456")
    explorer = widgets.ApiExplorer(read_profile(PROFILE))
    assert explorer.fetch() == []
    assert "AuthError" in explorer.status.value
    assert "wrong-key-123456" not in explorer.text()


def test_api_explorer_needs_resources(tmp_path: Path) -> None:
    text = PROFILE.read_text().split("[resources.sites]")[0]
    (tmp_path / "p.toml").write_text(text)
    with pytest.raises(MappingError, match="no \\[resources\\]"):
        widgets.ApiExplorer(read_profile(tmp_path / "p.toml"))


# -- saved-notebook fallback ---------------------------------------------------------------------
def test_every_panel_bundle_has_a_readable_html_and_text_fallback() -> None:
    register_secret(SECRET)
    panel = widgets.CredentialsPanel(read_profile(PROFILE), environ={"SANDBOX_API_KEY": SECRET})
    bundle = panel._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle  # the live widget stays
    assert "SANDBOX_API_KEY" in bundle["text/html"] and "✔ set" in bundle["text/html"]
    assert "<table" in bundle["text/html"] and "Refresh" in bundle["text/html"]
    plain = bundle["text/plain"]
    assert "VBox(" not in plain and "children=" not in plain
    assert "SANDBOX_API_KEY" in plain and "<" not in plain.replace("<=", "")
    assert SECRET not in bundle["text/html"] + plain


# -- sync runner ---------------------------------------------------------------------------------
def test_sync_runner_shows_stages_requests_log_and_summary_links(
    small_sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = small_sandbox()
    monkeypatch.chdir(tmp_path)
    runner = widgets.SyncRunner(read_profile(PROFILE), out=tmp_path / "out", formats=("csv",))
    assert runner.stage_bar.value == 0 and "not started" in runner.text()
    result = runner.run()
    assert result is not None and result.status in ("success", "partial")
    assert runner.stages_done == list(widgets.SYNC_STAGES)
    assert runner.stage_bar.value == runner.stage_bar.max == 5
    # requests are counted from the client's request log: as many as the client sent
    assert runner.requests >= 3
    assert f"{runner.requests} requests" in runner.request_label.value
    assert any("fetched" in line or "pages" in line for line in runner.log_lines), runner.log_lines
    summary = runner.summary_view.value
    assert "<b>status</b> <span style='color:" in summary and f">{result.status}<" in summary
    for name, path in result.files.items():
        assert f"<a href='out/export/{Path(path).name}'" in summary, name
    assert sandbox.env()["SANDBOX_API_KEY"] not in runner.text() + summary
    fallback = runner._repr_mimebundle_()["text/plain"]
    assert "requests" in fallback and "status" in fallback


def test_sync_runner_shows_an_error_instead_of_raising(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("SANDBOX_API_KEY", raising=False)
    monkeypatch.setenv("SCALER_SANDBOX_URL", "http://127.0.0.1:9/api/v1")
    runner = widgets.SyncRunner(read_profile(PROFILE), out=tmp_path)
    assert runner.run() is None
    assert "CredentialError" in runner.summary_view.value
    assert "SANDBOX_API_KEY" in runner.summary_view.value
    assert runner.stage_bar.bar_style == "danger"


# -- profile form --------------------------------------------------------------------------------
def test_auth_env_keys_come_from_the_auth_classes() -> None:
    assert widgets.auth_env_keys("api_key") == ["key_env"]
    assert widgets.auth_env_keys("basic") == ["username_env", "password_env"]
    assert {"client_id_env", "client_secret_env"} <= set(
        widgets.auth_env_keys("oauth2_client_credentials")
    )
    assert widgets.auth_env_keys("none") == []


def test_profile_form_saves_the_toml(tmp_path: Path) -> None:
    profile = read_profile(PROFILE)
    form = widgets.ProfileForm(profile)
    assert form.base_url.value == "http://127.0.0.1:0/api/v1"
    assert [b.description for b in form.env_boxes.children] == ["key_env"]
    assert form.env_boxes.children[0].value == "SANDBOX_API_KEY"
    form.base_url.value = "https://api.example.com/v2"
    form.auth_type.value = "basic"
    names = {b.description: b for b in form.env_boxes.children}
    assert set(names) == {"username_env", "password_env"}
    names["password_env"].value = "EXAMPLE_PASSWORD"
    form.resources.value += "\ntariffs = /tariffs"
    out = form.save(tmp_path / "p.toml")
    assert out == tmp_path / "p.toml" and "saved" in form.status_line.value
    again = read_profile(out)
    assert again.data["environments"]["sandbox"]["base_url"] == "https://api.example.com/v2"
    assert again.data["auth"] == {
        "type": "basic",
        "username_env": "SANDBOX_USERNAME",
        "password_env": "EXAMPLE_PASSWORD",
    }
    assert again.resources["tariffs"] == {"path": "/tariffs"}
    assert again.resources["meters"] == profile.resources["meters"]  # other keys kept
    assert again.section("mapping") == profile.section("mapping")


def test_profile_form_refuses_a_bad_line_and_an_empty_name(tmp_path: Path) -> None:
    import html

    form = widgets.ProfileForm(read_profile(PROFILE))
    form.resources.value = "meters /meters"
    assert form.save(tmp_path / "p.toml") is None
    assert "not 'name = /path'" in html.unescape(form.status_line.value)
    assert not (tmp_path / "p.toml").exists()
    form.resources.value = "meters = /meters"
    form.env_boxes.children[0].value = ""
    assert form.save(tmp_path / "p.toml") is None
    assert "NAME of the environment variable" in form.status_line.value
