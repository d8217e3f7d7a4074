"""No secret value appears in logs, reprs, exceptions or recorded responses."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from scaler_workbench.clock import FakeClock
from scaler_workbench.connectors import Client, fetch_resources
from scaler_workbench.exceptions import WorkbenchError

from .conftest import AUTH_CASES, sandbox_profile


def _secret_values(sb: Any, client: Client) -> set[str]:
    env = sb.env()
    values = {
        v
        for k, v in env.items()
        if k not in ("SCALER_SANDBOX_URL", "SANDBOX_TOKEN_URL", "SANDBOX_AUTHORIZE_URL")
    }
    auth = client.auth
    for attr in ("access_token", "refresh_token"):
        token = getattr(auth, attr, None)
        if token is not None:
            values.add(token.get())
    return {v for v in values if v}


@pytest.mark.parametrize("auth", ["oauth2_password", "api_key_query", "basic"])
def test_no_secret_leaks_anywhere(
    auth: str, make_sandbox: Any, sandbox_env: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sb_options, auth_table = AUTH_CASES[auth]
    clock = FakeClock()
    sb = make_sandbox(
        sites=1,
        meters_per_site=3,
        start="2024-01-01",
        end="2024-01-15",
        clock=clock,
        every_nth_429=4,
        fail_paths={r"/meters/M0001/": 403},
        token_max_uses=5,
        **sb_options,
    )
    sandbox_env(sb)
    profile = sandbox_profile(sb, auth=auth_table, client={"max_attempts": 3})
    folder = tmp_path / "recorded"
    client = Client(profile, clock=clock, record_to=folder)
    texts: list[str] = []
    with caplog.at_level(logging.DEBUG):
        results = fetch_resources(profile, since="2024-01-01", until="2024-01-16", client=client)
        for result in results.values():
            texts.append(repr(result.report) + result.report.summary())
        errors: list[BaseException] = []
        for call in (
            lambda: client.get("/bills/none", params={"token": "not-a-real-token-value"}),
            lambda: client.get("/sites/NOPE/meters"),
            lambda: client.get("/meters/M0001/bills"),
            lambda: Client(profile, clock=clock, base_url="http://127.0.0.1:9/api/v1").get(
                "/sites"
            ),
        ):
            with pytest.raises(WorkbenchError) as info:
                call()
            errors.append(info.value)
        texts += [str(e) + repr(e) + repr(e.context) for e in errors]  # type: ignore[attr-defined]
    failed = [p for r in results.values() for p in r.report.failed_pages]
    assert failed and all("AuthError" in p["error"] for p in failed)  # 403s recorded, not raised
    texts += [
        repr(client),
        repr(client.auth),
        repr(profile),
        str(client.auth),
        repr(list(client.request_log)),
    ]
    texts += [rec.getMessage() for rec in caplog.records]
    texts += [p.read_text() for p in folder.iterdir()]
    assert len(list(folder.iterdir())) > 5 and len(caplog.records) > 20
    secrets = _secret_values(sb, client)
    assert len(secrets) >= 2
    blob = "\n".join(texts)
    leaked = [s[:3] + "..." for s in secrets if s in blob]
    assert not leaked, f"secret values found: {leaked}"
