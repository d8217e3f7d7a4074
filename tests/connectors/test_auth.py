"""Auth objects applied to prepared requests; OAuth2 token lifecycle; the consent helper."""

from __future__ import annotations

import base64
import os
import socket
import stat
import threading
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests

from scaler_workbench._secrets import Secret
from scaler_workbench.clock import FakeClock
from scaler_workbench.connectors.auth import (
    AUTHS,
    ApiKeyAuth,
    BasicAuth,
    BearerAuth,
    OAuth2AuthorizationCode,
    OAuth2ClientCredentials,
    OAuth2PasswordGrant,
    authorize,
    make_auth,
)
from scaler_workbench.exceptions import AuthError, CredentialError, ProfileError

KEY = "k3y-VALUE-123456"
TOKEN_URL = "https://t.example/token"
OAuth2T = TypeVar("OAuth2T", OAuth2ClientCredentials, OAuth2PasswordGrant, OAuth2AuthorizationCode)


def _prepared(url: str = "https://api.example.com/v1/sites?x=1") -> requests.PreparedRequest:
    return requests.Request("GET", url).prepare()


def test_api_key_in_header_and_query() -> None:
    r = ApiKeyAuth(Secret(KEY), name="X-Key")(_prepared())
    assert r.headers["X-Key"] == KEY
    q = ApiKeyAuth(Secret(KEY), name="apikey", location="query")(_prepared())
    assert q.url is not None and q.url.endswith(f"x=1&apikey={KEY}")
    with pytest.raises(ProfileError):
        ApiKeyAuth(KEY, location="cookie")


def test_basic_with_password_and_api_key_as_username() -> None:
    r = BasicAuth("user", Secret("pa55word"))(_prepared())
    assert base64.b64decode(r.headers["Authorization"].split()[1]) == b"user:pa55word"
    k = BasicAuth(Secret(KEY))(_prepared())
    assert base64.b64decode(k.headers["Authorization"].split()[1]) == f"{KEY}:".encode()


def test_bearer_header_format() -> None:
    r = BearerAuth(Secret(KEY), header="X-Auth", format="Token {token}")(_prepared())
    assert r.headers["X-Auth"] == f"Token {KEY}"
    with pytest.raises(ProfileError, match="token"):
        BearerAuth(KEY, format="Bearer")


def test_reprs_never_show_secrets() -> None:
    objs = [
        ApiKeyAuth(Secret(KEY)),
        BasicAuth(Secret(KEY), Secret("pa55word")),
        BearerAuth(Secret(KEY)),
        OAuth2ClientCredentials(token_url=TOKEN_URL, client_id="id", client_secret=Secret(KEY)),
    ]
    for obj in objs:
        assert KEY not in repr(obj) and "pa55word" not in str(obj)


class FakeTokenEndpoint:
    """Records token requests; answers with numbered tokens."""

    def __init__(self, *, rotate: bool = True, expires_in: int = 600) -> None:
        self.calls: list[tuple[dict[str, str], Any]] = []
        self.rotate, self.expires_in = rotate, expires_in

    def __call__(self, url: str, data: dict[str, str], *, basic: Any = None) -> dict[str, Any]:
        self.calls.append((dict(data), basic))
        n = len(self.calls)
        body: dict[str, Any] = {"access_token": f"access-{n:04d}", "expires_in": self.expires_in}
        if self.rotate:
            body["refresh_token"] = f"refresh-{n:04d}"
        return body


def _bound(
    cls: type[OAuth2T],
    endpoint: FakeTokenEndpoint,
    clock: FakeClock | None = None,
    **options: Any,
) -> OAuth2T:
    """An OAuth2 auth of ``cls`` for client ``cid`` at TOKEN_URL, bound to ``endpoint``.

    ``clock`` defaults to a fresh FakeClock; ``options`` are the grant's own arguments.
    """
    auth = cls(token_url=TOKEN_URL, client_id="cid", **options)
    auth.bind(endpoint, clock if clock is not None else FakeClock())
    return auth


def test_client_credentials_basic_vs_body_and_renewal_before_expiry() -> None:
    clock = FakeClock()
    endpoint = FakeTokenEndpoint(rotate=False, expires_in=600)
    auth = _bound(
        OAuth2ClientCredentials,
        endpoint,
        clock,
        client_secret=Secret("csecret-1"),
        scope=["a", "b"],
    )
    assert auth(_prepared()).headers["Authorization"] == "Bearer access-0001"
    data, basic = endpoint.calls[0]
    assert basic == ("cid", "csecret-1") and "client_secret" not in data
    assert data == {"grant_type": "client_credentials", "scope": "a b"}
    auth(_prepared())
    assert len(endpoint.calls) == 1  # still valid
    clock.advance(600 - 60)  # inside the expiry margin
    assert auth(_prepared()).headers["Authorization"] == "Bearer access-0002"
    body_auth = _bound(
        OAuth2ClientCredentials,
        endpoint,
        clock,
        client_secret=Secret("csecret-1"),
        client_auth="body",
    )
    body_auth(_prepared())
    data, basic = endpoint.calls[-1]
    assert basic is None and data["client_id"] == "cid" and data["client_secret"] == "csecret-1"
    with pytest.raises(ProfileError, match="client_auth"):
        OAuth2ClientCredentials(
            token_url="https://t", client_id="c", client_secret="s", client_auth="jwt"
        )


def test_password_grant_then_refresh_and_401_invalid_token(tmp_path: Path) -> None:
    clock = FakeClock()
    endpoint = FakeTokenEndpoint()
    auth = _bound(
        OAuth2PasswordGrant, endpoint, clock, username="ann", password=Secret("pw-secret")
    )
    auth(_prepared())
    assert endpoint.calls[0][0]["grant_type"] == "password"
    assert not auth.on_unauthorized(www_authenticate="Basic", body="nope")
    assert auth.on_unauthorized(www_authenticate='Bearer error="invalid_token"')
    assert endpoint.calls[1][0] == {"grant_type": "refresh_token", "refresh_token": "refresh-0001"}
    assert auth(_prepared()).headers["Authorization"] == "Bearer access-0002"


def test_rotated_refresh_token_is_saved_owner_only_and_read_next_run(tmp_path: Path) -> None:
    token_file = tmp_path / "tokens" / "p.json"
    endpoint = FakeTokenEndpoint()
    first = _bound(
        OAuth2AuthorizationCode,
        endpoint,
        refresh_token=Secret("refresh-initial"),
        token_file=token_file,
    )
    first(_prepared())
    assert endpoint.calls[0][0]["refresh_token"] == "refresh-initial"
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    assert "refresh-0001" in token_file.read_text()
    second = _bound(OAuth2AuthorizationCode, endpoint, token_file=token_file)
    second(_prepared())
    assert endpoint.calls[1][0]["refresh_token"] == "refresh-0001"
    none = _bound(OAuth2AuthorizationCode, endpoint)
    with pytest.raises(AuthError, match="consent"):
        none(_prepared())


def test_make_auth_forms_and_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_KEY_VAR", KEY)
    auth = make_auth({"type": "api_key", "key_env": "TEST_KEY_VAR", "name": "X-K"})
    assert isinstance(auth, ApiKeyAuth) and isinstance(auth.key, Secret)
    assert make_auth(auth) is auth
    assert make_auth("none").type == "none"
    with pytest.raises(ProfileError, match="unknown auth type") as info:
        make_auth({"type": "kerberos"})
    assert all(name in str(info.value) for name in AUTHS)
    with pytest.raises(ProfileError, match="does not take"):
        make_auth({"type": "bearer", "token_env": "TEST_KEY_VAR", "prefix": "x"})
    with pytest.raises(CredentialError) as cred:
        make_auth({"type": "bearer", "token_env": "SURELY_UNSET_VAR_123"})
    assert cred.value.key == "auth.token_env"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _sandbox_consent_auth(sb: Any, token_file: Path, **options: Any) -> OAuth2AuthorizationCode:
    """An authorization-code auth for the sandbox's consent flow (its own client credentials)."""
    env = sb.env()
    return OAuth2AuthorizationCode(
        token_url=sb.token_url,
        authorize_url=sb.authorize_url,
        client_id=env["SANDBOX_CLIENT_ID"],
        client_secret=Secret(env["SANDBOX_CLIENT_SECRET"]),
        token_file=token_file,
        **options,
    )


def test_authorization_code_helper_with_local_redirect(make_sandbox: Any, tmp_path: Path) -> None:
    sb = make_sandbox(auth="oauth2_authorization_code")
    redirect = f"http://127.0.0.1:{_free_port()}/callback"
    auth = _sandbox_consent_auth(sb, tmp_path / "tok.json", redirect_uri=redirect)
    shown: list[str] = []

    def follow(url: str) -> None:
        location = requests.get(url, allow_redirects=False, timeout=10).headers["Location"]
        for _ in range(100):  # the listener may not be bound yet
            try:
                requests.get(location, timeout=10)
                return
            except requests.ConnectionError:
                threading.Event().wait(0.05)

    def browser(text: str) -> None:  # the analyst's browser: follow the consent URL
        shown.append(text)
        if "consent" in text:
            url = text.split("\n", 1)[1]
            threading.Thread(target=follow, args=(url,), daemon=True).start()

    authorize(auth, show=browser, timeout=10)
    assert auth.refresh_token is not None and (tmp_path / "tok.json").exists()
    assert "stored" in shown[-1]
    r = requests.get(f"{sb.url}/sites", auth=auth, timeout=10)
    assert r.status_code == 200


def test_authorization_code_pasted_redirect_and_state_check(
    make_sandbox: Any, tmp_path: Path
) -> None:
    sb = make_sandbox(auth="oauth2_authorization_code")
    auth = _sandbox_consent_auth(sb, tmp_path / "tok.json")
    consent = requests.get(auth.authorization_url(), allow_redirects=False, timeout=10)
    location = consent.headers["Location"]
    with pytest.raises(AuthError, match="state"):
        auth.exchange_code(location.replace("state=", "state=forged"))
    authorize(auth, code=location, show=lambda _t: None)
    assert stat.S_IMODE(os.stat(tmp_path / "tok.json").st_mode) == 0o600
    with pytest.raises(AuthError, match="refused consent"):
        auth.exchange_code("http://127.0.0.1:8765/callback?error=access_denied")
