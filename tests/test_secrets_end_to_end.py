"""A whole CLI sync never writes a credential anywhere: logs, console, state DB, export files.

Connector-level checks live in tests/connectors/test_secrets.py; this one follows the secrets
through every later stage (transform, validation, store, export, run summary).
"""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import pytest

from scaler_workbench.cli import main
from scaler_workbench.profile import read_profile

ROOT = Path(__file__).resolve().parents[1]
SECRET_VARS = ("SANDBOX_API_KEY", "SANDBOX_PASSWORD", "SANDBOX_TOKEN", "SANDBOX_CLIENT_SECRET")


def _every_byte(folder: Path) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for path in folder.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        found[str(path)] = data
        if path.suffix == ".xlsx":
            with zipfile.ZipFile(path) as z:
                for name in z.namelist():
                    found[f"{path}!{name}"] = z.read(name)
    return found


@pytest.mark.parametrize(
    "auth",
    [
        {"type": "api_key", "location": "query", "name": "api_key", "key_env": "SANDBOX_API_KEY"},
        {
            "type": "oauth2_client_credentials",
            "token_url_env": "SANDBOX_TOKEN_URL",
            "client_id_env": "SANDBOX_CLIENT_ID",
            "client_secret_env": "SANDBOX_CLIENT_SECRET",
        },
    ],
    ids=["api_key_in_query", "oauth2_client_credentials"],
)
def test_no_secret_in_logs_console_state_or_exports(
    auth: dict[str, str],
    make_sandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    mode = "api_key_query" if auth["type"] == "api_key" else auth["type"]
    sandbox = make_sandbox(auth=mode, sites=2, meters_per_site=3, end="2024-03-01")
    for name, value in sandbox.env().items():
        monkeypatch.setenv(name, value)
    profile = read_profile(ROOT / "mappings/sandbox/profile.toml")
    data = profile.to_dict()
    data["auth"] = dict(auth)
    if "token_url_env" in auth:  # the profile names the token URL directly
        data["auth"].pop("token_url_env")
        data["auth"]["token_url"] = sandbox.token_url
    path = tmp_path / "profile.toml"
    type(profile).from_dict(data, path=path).save(path)

    with caplog.at_level(logging.DEBUG):
        code = main(["sync", str(path), "--out", str(tmp_path / "out"), "--until", "2024-03-01"])
    console = capsys.readouterr()
    assert code in (0, 1), console.err  # success or partial (quarantine), never a failure

    secrets = [sandbox.env()[v] for v in SECRET_VARS if sandbox.env().get(v)]
    assert secrets, "the sandbox should hand out credentials"
    texts = {"log": caplog.text, "stdout": console.out, "stderr": console.err}
    blobs = _every_byte(tmp_path / "out")
    assert any(name.endswith("usage.csv") for name in blobs)
    assert any(".sqlite" in name for name in blobs)
    for secret in secrets:
        for where, text in texts.items():
            assert secret not in text, f"secret found in {where}"
        for where, blob in blobs.items():
            assert secret.encode() not in blob, f"secret found in {where}"
    # the request log in the state still says what was requested, minus the key
    assert "/intervals" in caplog.text or any(b"/intervals" in b for b in blobs.values())
