"""A whole CLI sync never writes a credential anywhere: logs, console, state DB, export files.

Connector-level checks live in tests/connectors/test_secrets.py; this one follows the secrets
through every later stage (transform, validation, store, export, run summary).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import os
import socket
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from scaler_workbench.cli import main
from scaler_workbench.profile import read_profile, to_profile_toml
from scaler_workbench.store import StateStore

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


# -- secrets with + / = & %, in every encoding, through real CLI processes at --debug -----------
HARD = {
    "api_key": "Sp3c+al/Key=42&x%41y",
    "password": "pA55+w/rd=&%2Fz",
    "token": "t0k+en/Val=&%3Dq",
    "client_secret": "cl+S3cret/=&%26w",
}
HARD_AUTHS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # name: (sandbox options, profile [auth])
    "api_key_query_custom_name": (
        {"auth": "api_key_query", "api_key_name": "acct"},
        {"type": "api_key", "location": "query", "name": "acct", "key_env": "SANDBOX_API_KEY"},
    ),
    "basic": (
        {"auth": "basic"},
        {"type": "basic", "username_env": "SANDBOX_USERNAME", "password_env": "SANDBOX_PASSWORD"},
    ),
    "bearer_custom_header": (
        {"auth": "bearer", "auth_header": "X-Auth", "bearer_format": "Token {token}"},
        {
            "type": "bearer",
            "header": "X-Auth",
            "format": "Token {token}",
            "token_env": "SANDBOX_TOKEN",
        },
    ),
    "oauth2_client_credentials_basic": (
        {"auth": "oauth2_client_credentials", "client_auth": "basic"},
        {
            "type": "oauth2_client_credentials",
            "client_auth": "basic",
            "client_id_env": "SANDBOX_CLIENT_ID",
            "client_secret_env": "SANDBOX_CLIENT_SECRET",
        },
    ),
}


def _encodings(secret: str, user: str) -> list[str]:
    """``secret`` raw, percent-encoded (quote and quote_plus), JSON-escaped, in a Basic pair."""
    forms = {
        secret,
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
        json.dumps(secret)[1:-1],
        base64.b64encode(f"{user}:{secret}".encode()).decode(),
    }
    return sorted(forms)


def _run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scaler_workbench.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize("auth_name", sorted(HARD_AUTHS))
def test_hard_secrets_never_leak_in_any_encoding_from_failing_and_succeeding_syncs(
    auth_name: str, make_sandbox: Any, tmp_path: Path
) -> None:
    options, auth = HARD_AUTHS[auth_name]
    # two months: the water meter is bill-only and its first bill (28-33 days from the 3rd-6th)
    # ends after a one-month window, which leaves it without data (meter_without_data: exit 1)
    sandbox = make_sandbox(sites=2, meters_per_site=3, end="2024-03-01", **options)
    base = sandbox.credentials
    sandbox.credentials = dataclasses.replace(
        base,
        api_key=HARD["api_key"],
        password=HARD["password"],
        token=HARD["token"],
        client_secret=HARD["client_secret"],
    )
    data = read_profile(ROOT / "mappings/sandbox/profile.toml").to_dict()
    data["auth"] = dict(auth)
    if auth["type"].startswith("oauth2"):
        data["auth"]["token_url"] = sandbox.token_url
    data["client"].update({"max_attempts": 2, "backoff_base": 0.0, "jitter": 0.0})
    path = tmp_path / "profile.toml"
    path.write_text(to_profile_toml(data), encoding="utf-8")
    env = {**os.environ, **sandbox.env(), "PYTHONWARNINGS": "ignore"}
    common = ["--until", "2024-03-01", "--formats", "csv,xlsx", "--debug", "--json"]

    runs = {}
    sandbox.faults.fail_paths = {"/intervals": 500}  # a failing run: 500s after every attempt
    runs["failing"] = _run_cli(["sync", str(path), "--out", str(tmp_path / "out"), *common], env)
    sandbox.faults.fail_paths = {}
    runs["succeeding"] = _run_cli(["sync", str(path), "--out", str(tmp_path / "out"), *common], env)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens here now: a connection error naming the URL
    env_down = {**env, "SCALER_SANDBOX_URL": f"http://127.0.0.1:{port}/api/v1"}
    runs["unreachable"] = _run_cli(
        ["sync", str(path), "--out", str(tmp_path / "down"), *common], env_down
    )
    assert runs["failing"].returncode not in (0,), runs["failing"].stderr[-2000:]
    assert runs["succeeding"].returncode == 0, runs["succeeding"].stderr[-3000:]
    assert runs["unreachable"].returncode not in (0,), runs["unreachable"].stderr[-2000:]
    assert "DEBUG" in runs["succeeding"].stderr and "urllib3" in runs["succeeding"].stderr
    assert json.loads(runs["succeeding"].stdout)  # --json output is there to scan

    texts: dict[str, bytes] = {}
    for name, proc in runs.items():
        texts[f"{name} stdout"] = proc.stdout.encode()
        texts[f"{name} stderr"] = proc.stderr.encode()
    blobs = {**_every_byte(tmp_path / "out"), **_every_byte(tmp_path / "down"), **texts}
    assert any(n.endswith(".sqlite") for n in blobs) and any(n.endswith(".xlsx") for n in blobs)
    used = {
        "api_key_query_custom_name": [HARD["api_key"]],
        "basic": [HARD["password"]],
        "bearer_custom_header": [HARD["token"]],
        "oauth2_client_credentials_basic": [HARD["client_secret"]],
    }[auth_name]
    user = base.client_id if auth_name.startswith("oauth2") else base.username
    leaks = [
        f"{form!r} in {where}"
        for secret in used
        for form in _encodings(secret, user)
        for where, blob in blobs.items()
        if form.encode() in blob
    ]
    assert leaks == []
    # the state's request log keeps whole URLs with their query (the date windows), masked
    with StateStore(tmp_path / "out" / "state" / "sandbox.sqlite") as store:
        urls = [str(u) for u in store.requests()["url"]]
    windows = [u for u in urls if "/intervals?" in u]
    assert windows and all("from=" in u and "to=" in u for u in windows)
    if auth_name == "api_key_query_custom_name":
        assert all("acct=%2A%2A%2A" in u or "acct=***" in u for u in windows)
