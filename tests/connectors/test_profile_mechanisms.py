"""Issue 15: variables (item 6), {parent} placeholders in params (15a), connectors from the
profile's folder and from installed packages (item 3), check_mapping with prepare_raw (item 9),
all against the loopback fake."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from _fakes import Reply, Request

from scaler_workbench import cli
from scaler_workbench.connectors import fetch_resources
from scaler_workbench.connectors.registry import connector_class
from scaler_workbench.exceptions import CredentialError, ProfileError
from scaler_workbench.mapping import check_mapping
from scaler_workbench.profile import Profile, read_profile


def _handler(req: Request) -> Reply:
    if req.path == "/t/tenant-7/token":
        return Reply(200, {"access_token": "tok-123", "expires_in": 3600})
    if req.path.startswith("/api/accounts/"):
        account = req.path.split("/")[3]
        if req.path.endswith("/meters"):
            return Reply(200, {"data": [{"uid": "m1"}, {"uid": "m2"}]})
        return Reply(200, {"data": [{"account": account, "query": dict(req.query)}]})
    if req.path == "/api/usage":
        return Reply(200, {"data": [{"meters": req.query.get("meters"), "v": 1}]})
    return Reply(404, {"error": req.path})


PROFILE = """
[provider]
name = "acme"
timezone = "UTC"

[variables]
account_id = "100"
tenant_env = "ACME_TENANT"

[environments.test]
base_url = "{base}/api"

[auth]
type = "oauth2_client_credentials"
token_url = "{base}/t/{{tenant}}/token"
client_id_env = "ACME_CLIENT_ID"
client_secret_env = "ACME_CLIENT_SECRET"

[paginator]
type = "none"

[resources.bills]
path = "/accounts/{{account_id}}/bills"
record_path = "data"
params = {{ account = "{{account_id}}", fixed = "x" }}

[resources.meters]
path = "/accounts/{{account_id}}/meters"
record_path = "data"

[resources.usage]
path = "/usage"
record_path = "data"
parent = "meters"
parent_params = {{ meter_uid = "uid" }}
params = {{ meters = "{{meter_uid}}" }}
"""


@pytest.fixture
def acme(serve: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Path]:
    server = serve(_handler)
    (tmp_path / "profile.toml").write_text(PROFILE.format(base=server.url), encoding="utf-8")
    monkeypatch.setenv("ACME_CLIENT_ID", "cid")
    monkeypatch.setenv("ACME_CLIENT_SECRET", "csecret")
    return server, tmp_path / "profile.toml"


def test_variables_fill_paths_params_and_token_urls(
    acme: tuple[Any, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, path = acme
    monkeypatch.setenv("ACME_TENANT", "tenant-7")
    profile = read_profile(path)
    assert profile.variables == {"account_id": "100", "tenant": "tenant-7"}
    results = fetch_resources(profile, resources=["bills"])
    (record,) = results["bills"].records
    assert record["account"] == "100"
    assert record["query"] == {"account": "100", "fixed": "x"}
    assert [r.path for r in server.requests] == ["/t/tenant-7/token", "/api/accounts/100/bills"]


def test_var_override_wins_and_a_typo_is_refused(
    acme: tuple[Any, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, path = acme
    monkeypatch.setenv("ACME_TENANT", "tenant-7")
    profile = read_profile(path, variables={"account_id": "200"})
    fetch_resources(profile, resources=["bills"])
    assert server.requests[-1].path == "/api/accounts/200/bills"
    with pytest.raises(ProfileError, match="did you mean 'account_id'"):
        read_profile(path, variables={"acount_id": "200"})
    # the profile as written keeps its placeholders
    assert profile.to_dict()["resources"]["bills"]["path"] == "/accounts/{account_id}/bills"
    assert profile.with_variables({"account_id": "300"}).resources["bills"]["path"] == (
        "/accounts/300/bills"
    )


def test_an_unset_variable_env_stops_before_any_request(
    acme: tuple[Any, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, path = acme
    monkeypatch.delenv("ACME_TENANT", raising=False)
    profile = read_profile(path)  # loads: a notebook may look at it
    assert profile.missing_variables == {"tenant": "ACME_TENANT"}
    with pytest.raises(CredentialError, match="ACME_TENANT") as err:
        fetch_resources(profile, resources=["bills"])
    assert "--var tenant=VALUE" in err.value.hint
    assert server.requests == []


def test_token_url_env_reads_the_token_url_from_the_environment(
    serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = serve(_handler)
    monkeypatch.setenv("ACME_TOKEN_URL", f"{server.url}/t/tenant-7/token")
    monkeypatch.setenv("ACME_CLIENT_ID", "cid")
    monkeypatch.setenv("ACME_CLIENT_SECRET", "csecret")
    profile = Profile.from_dict(
        {
            "provider": {"name": "acme"},
            "environments": {"test": {"base_url": f"{server.url}/api"}},
            "auth": {
                "type": "oauth2_client_credentials",
                "token_url_env": "ACME_TOKEN_URL",
                "client_id_env": "ACME_CLIENT_ID",
                "client_secret_env": "ACME_CLIENT_SECRET",
            },
            "paginator": {"type": "none"},
            "resources": {"bills": {"path": "/accounts/9/bills", "record_path": "data"}},
        }
    )
    fetch_resources(profile)
    assert server.requests[0].path == "/t/tenant-7/token"
    assert server.requests[1].headers["Authorization"] == "Bearer tok-123"


def test_the_cli_accepts_var(
    acme: tuple[Any, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _server, path = acme
    monkeypatch.setenv("ACME_TENANT", "tenant-7")
    args = cli._parser().parse_args(
        ["sync", str(path), "--var", "account_id=200", "--var", "tenant=t9"]
    )
    profile = cli._load(args)
    assert profile.variables == {"account_id": "200", "tenant": "t9"}
    assert profile.resources["bills"]["path"] == "/accounts/200/bills"
    assert cli.main(["sync", str(path), "--var", "nope=1"]) == cli.EXIT_USAGE
    assert "declares no variable 'nope'" in capsys.readouterr().err
    assert cli.main(["sync", str(path), "--var", "account_id"]) == cli.EXIT_USAGE
    assert "is not NAME=VALUE" in capsys.readouterr().err


def test_parent_placeholders_fill_query_params(
    acme: tuple[Any, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, path = acme
    monkeypatch.setenv("ACME_TENANT", "tenant-7")
    results = fetch_resources(read_profile(path), resources=["meters", "usage"])
    assert [r["meters"] for r in results["usage"].records] == ["m1", "m2"]
    assert [r.query for r in server.requests if r.path == "/api/usage"] == [
        {"meters": "m1"},
        {"meters": "m2"},
    ]


def test_a_parent_param_used_nowhere_is_still_refused(serve: Any) -> None:
    server = serve(_handler)
    profile = Profile.from_dict(
        {
            "provider": {"name": "acme"},
            "environments": {"test": {"base_url": server.url}},
            "resources": {
                "meters": {"path": "/m"},
                "usage": {
                    "path": "/usage",
                    "parent": "meters",
                    "parent_params": {"meter_uid": "uid"},
                    "params": {"meters": "{meter}"},
                },
            },
        }
    )
    with pytest.raises(ProfileError, match="or in a params value"):
        fetch_resources(profile, resources=["usage"])
    assert server.requests == []


# -- connectors outside the package ------------------------------------------------------------
CONNECTOR_PY = '''
from scaler_workbench.connectors import Connector


class TaggingConnector(Connector):
    """Stamps every record with where it came from; prepare_raw adds a field."""

    def records(self, spec, response):
        return [dict(r, tagged_by="folder") for r in super().records(spec, response)]

    @classmethod
    def prepare_raw(cls, profile, raw):
        return {k: [dict(r, site_code="S-" + str(r["uid"])) for r in v] for k, v in raw.items()}, None
'''


def _folder_profile(folder: Path, url: str, connector: str) -> Path:
    (folder / "profile.toml").write_text(
        textwrap.dedent(
            f"""
            [provider]
            name = "folder"
            connector = "{connector}"
            [environments.test]
            base_url = "{url}/api"
            [paginator]
            type = "none"
            [resources.meters]
            path = "/accounts/1/meters"
            record_path = "data"
            [mapping.assets]
            resource = "meters"
            [mapping.assets.fields]
            asset_id = "site_code"
            """
        ),
        encoding="utf-8",
    )
    return folder / "profile.toml"


def test_a_connector_file_next_to_the_profile(serve: Any, tmp_path: Path) -> None:
    server = serve(_handler)
    folder = tmp_path / "acme"
    folder.mkdir()
    (folder / "connector.py").write_text(CONNECTOR_PY, encoding="utf-8")
    profile = read_profile(_folder_profile(folder, server.url, "connector.py:TaggingConnector"))
    assert connector_class(profile).__name__ == "TaggingConnector"
    assert str(folder) not in sys.path  # no PYTHONPATH games
    results = fetch_resources(profile)
    assert {r["tagged_by"] for r in results["meters"].records} == {"folder"}
    # check_mapping runs the connector's prepare_raw: its field is not "missing"
    mapping = profile.section("mapping")
    without = check_mapping(mapping, results)
    with_rules = check_mapping(mapping, results, profile=profile)
    assert list(without["subject"]) == ["site_code"]
    assert with_rules.empty


def test_a_missing_connector_file_or_class_is_a_profile_error(tmp_path: Path) -> None:
    path = _folder_profile(tmp_path, "http://127.0.0.1:9", "nothere.py:X")
    with pytest.raises(ProfileError, match="no file") as err:
        connector_class(read_profile(path))
    assert err.value.context["key"] == "provider.connector"
    (tmp_path / "c.py").write_text("X = 1\n", encoding="utf-8")
    path = _folder_profile(tmp_path, "http://127.0.0.1:9", "c.py:X")
    with pytest.raises(ProfileError, match="does not name a Connector subclass"):
        connector_class(read_profile(path))


def test_a_connector_from_an_installed_entry_point(
    serve: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A package registering ``[project.entry-points."scaler_workbench.connectors"]``."""
    site = tmp_path / "site"
    (site / "acme_connector").mkdir(parents=True)
    (site / "acme_connector" / "__init__.py").write_text(CONNECTOR_PY, encoding="utf-8")
    dist = site / "acme_connector-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: acme-connector\nVersion: 1.0\n", encoding="utf-8"
    )
    (dist / "entry_points.txt").write_text(
        "[scaler_workbench.connectors]\nacme = acme_connector:TaggingConnector\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(site))  # what installing the package does
    server = serve(_handler)
    folder = tmp_path / "p"
    folder.mkdir()
    profile = read_profile(_folder_profile(folder, server.url, "acme"))
    assert connector_class(profile).__name__ == "TaggingConnector"
    results = fetch_resources(profile)
    assert {r["tagged_by"] for r in results["meters"].records} == {"folder"}
    typo = read_profile(_folder_profile(folder, server.url, "acm"))
    with pytest.raises(ProfileError, match="did you mean 'acme'"):
        connector_class(typo)


def test_an_incremental_cursor_path_no_record_has_is_refused_with_did_you_mean(
    serve: Any,
) -> None:
    """``cursor_path = "interval_strat"`` would mean full pulls forever: say so instead."""

    def handler(req: Request) -> Reply:
        rows = [{"interval_start": "2024-01-01T00:00:00Z", "v": 1}]
        return Reply(200, {"data": rows})

    server = serve(handler)

    def profile(cursor: str) -> Profile:
        return Profile.from_dict(
            {
                "provider": {"name": "acme"},
                "environments": {"test": {"base_url": server.url}},
                "paginator": {"type": "none"},
                "resources": {
                    "reads": {
                        "path": "/reads",
                        "record_path": "data",
                        "date_range": {"since": "2024-01-01", "chunk": ""},
                        "incremental": {"cursor_path": cursor},
                    }
                },
            }
        )

    with pytest.raises(ProfileError, match="did you mean 'interval_start'") as err:
        fetch_resources(profile("interval_strat"), until="2024-02-01")
    assert err.value.context["key"] == "resources.reads.incremental.cursor_path"
    good = fetch_resources(profile("interval_start"), until="2024-02-01")
    assert good["reads"].report.watermarks[""].startswith("2024-01-01")
