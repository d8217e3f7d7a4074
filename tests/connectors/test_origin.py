"""Credentials are bound to their origin (scheme, host and port), for every auth type.

The API answers on 127.0.0.1:<A>. Its next link and its redirects point at another origin: the
same host on another port (a second fake, 127.0.0.1:<B>) or another host name on the same port
(``localhost:<A>``, the same server). The other origin's request log must show no credential in
any header or in the query, raw or encoded, and the client warns once per origin.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from urllib.parse import quote, quote_plus, urlencode

import pytest
from _fakes import FakeServer, Reply, Request

from scaler_workbench._secrets import Secret
from scaler_workbench.clock import FakeClock
from scaler_workbench.connectors._origin import allowed_origins, origin_of
from scaler_workbench.connectors.auth import (
    ApiKeyAuth,
    Auth,
    BasicAuth,
    BearerAuth,
    OAuth2AuthorizationCode,
    OAuth2ClientCredentials,
    OAuth2PasswordGrant,
)
from scaler_workbench.connectors.client import Client
from scaler_workbench.exceptions import AuthError, ProfileError

from .conftest import fake_profile

KEY = "Or1g+K3y/=&x%42"
PASSWORD = "Pa55+w/rd=&%"
TOKEN = "B3arer+T0k/en=="
CLIENT_SECRET = "cl1ent+S/cret=&"
REFRESH = "refr3sh+T0k/en="
ACCESS = "acc3ss+T0k/en=="
USER = "origin-user"


def _auths(api: str) -> dict[str, Callable[[], Auth]]:
    token_url = f"{api}/token"
    oauth = {"token_url": token_url, "client_id": "cid", "client_secret": Secret(CLIENT_SECRET)}
    return {
        "api_key_header": lambda: ApiKeyAuth(Secret(KEY), name="X-API-Key"),
        "api_key_query": lambda: ApiKeyAuth(Secret(KEY), name="api_key", location="query"),
        "api_key_query_custom_name": lambda: ApiKeyAuth(Secret(KEY), name="acct", location="query"),
        "basic": lambda: BasicAuth(USER, Secret(PASSWORD)),
        "bearer": lambda: BearerAuth(Secret(TOKEN)),
        "bearer_custom_header": lambda: BearerAuth(
            Secret(TOKEN), header="X-Auth-Token", format="Token {token}"
        ),
        "oauth2_client_credentials": lambda: OAuth2ClientCredentials(**oauth),
        "oauth2_password": lambda: OAuth2PasswordGrant(
            username=USER, password=Secret(PASSWORD), **oauth
        ),
        "oauth2_authorization_code": lambda: OAuth2AuthorizationCode(
            refresh_token=Secret(REFRESH), **oauth
        ),
    }


def _forbidden() -> list[str]:
    """Every secret of the module in every encoding a request could carry it in."""
    out: list[str] = []
    for raw in (KEY, PASSWORD, TOKEN, CLIENT_SECRET, REFRESH, ACCESS):
        out += [raw, quote(raw, safe=""), quote_plus(raw)]
    for pair in (f"{USER}:{PASSWORD}", f"cid:{CLIENT_SECRET}"):
        out.append(base64.b64encode(pair.encode()).decode())
    return out


def _leaks(requests: list[Request]) -> list[str]:
    found = []
    for req in requests:
        texts = [f"{k}: {v}" for k, v in req.headers.items()]
        texts += [f"{k}={v}" for k, v in req.query.items()] + [req.path]
        for text in texts:
            if text.split(":")[0].lower() in ("authorization", "x-api-key", "x-auth-token"):
                found.append(text)
            found += [f"{s!r} in {text!r}" for s in _forbidden() if s in text]
    return found


def _api(target: Callable[[], str]) -> Callable[[Request], Reply]:
    """The API: its next link and redirects go to ``target()`` and echo the incoming query."""

    def handler(req: Request) -> Reply:
        if req.path == "/token":
            return Reply(200, {"access_token": ACCESS, "expires_in": 3600, "token_type": "bearer"})
        if req.headers.get("Host", "").startswith("localhost"):
            return Reply(200, {"data": [{"id": 2}], "next": None})  # the other host's answer
        echoed = urlencode({**req.query, "page": "2"})
        if req.path == "/items":
            return Reply(200, {"data": [{"id": 1}], "next": f"{target()}/items?{echoed}"})
        if req.path == "/moved":
            return Reply(307, b"", {"Location": f"{target()}/items?{echoed}"})
        if req.path == "/moved301":
            return Reply(301, b"", {"Location": f"{target()}/items?{echoed}"})
        return Reply(404, {})

    return handler


def _other(req: Request) -> Reply:
    return Reply(200, {"data": [{"id": 2}], "next": None})


RESOURCES = {
    "items": {
        "path": "/items",
        "record_path": "data",
        "primary_key": "id",
        "paginator": {"type": "next_url", "next_url_path": "next"},
    }
}


@pytest.mark.parametrize("where", ["other_port", "other_host"])
@pytest.mark.parametrize(
    "auth_name",
    [
        "api_key_header",
        "api_key_query",
        "api_key_query_custom_name",
        "basic",
        "bearer",
        "bearer_custom_header",
        "oauth2_client_credentials",
        "oauth2_password",
        "oauth2_authorization_code",
    ],
)
def test_redirects_and_next_links_to_another_origin_carry_no_credential(
    serve: Callable[[Callable[[Request], Reply]], FakeServer],
    caplog: pytest.LogCaptureFixture,
    auth_name: str,
    where: str,
) -> None:
    other = serve(_other)
    box: dict[str, str] = {}
    api = serve(_api(lambda: box["target"]))
    box["target"] = (
        other.url if where == "other_port" else api.url.replace("127.0.0.1", "localhost")
    )
    auth = _auths(api.url)[auth_name]()
    client = Client(fake_profile(api.url, resources=RESOURCES), auth=auth, clock=FakeClock())
    with caplog.at_level(logging.WARNING, logger="scaler_workbench"):
        pages = list(client.iter_pages("items"))
        moved = client.get("/moved")
        moved301 = client.get("/moved301")
    assert [r["id"] for p in pages for r in p] == [1, 2]
    assert moved.body["data"] == [{"id": 2}] and moved301.body["data"] == [{"id": 2}]
    if where == "other_port":
        received = other.requests
    else:
        received = [r for r in api.requests if r.headers.get("Host", "").startswith("localhost")]
    assert len(received) == 3  # next link, 307 and 301 all reached the other origin
    assert _leaks(received) == []
    own = [r for r in api.requests if r.path != "/token" and r not in received]
    assert own and all(_leaks([r]) for r in own)  # the API itself did get credentials
    warnings = [r for r in caplog.records if "without credentials" in r.getMessage()]
    assert len(warnings) == 1, [w.getMessage() for w in warnings]
    assert "Or1g" not in caplog.text and "B3arer" not in caplog.text


def test_token_endpoint_redirect_is_not_followed_with_client_credentials(
    serve: Callable[[Callable[[Request], Reply]], FakeServer],
) -> None:
    other = serve(_other)

    def token(req: Request) -> Reply:
        return Reply(307, b"", {"Location": f"{other.url}/token"})

    api = serve(token)
    auth = OAuth2ClientCredentials(
        token_url=f"{api.url}/token", client_id="cid", client_secret=Secret(CLIENT_SECRET)
    )
    client = Client(fake_profile(api.url, resources={}), auth=auth, clock=FakeClock())
    with pytest.raises(AuthError, match="token endpoint refused"):
        client.get("/items")
    assert other.requests == []
    assert _leaks(api.requests)  # the token endpoint itself got the client credentials


def test_allowed_hosts_name_ports_and_origins() -> None:
    origins = allowed_origins(
        "https://api.acme.example/v1",
        ["http://127.0.0.1:9000/oauth/token"],
        ["files.acme.example", "files.acme.example:8443", "http://dl.acme.example:8080"],
    )
    assert origin_of("https://api.acme.example:443/x") in origins
    assert origin_of("http://api.acme.example/x") not in origins  # another scheme
    assert origin_of("https://api.acme.example:444/x") not in origins  # another port
    assert origin_of("https://files.acme.example/a") in origins
    assert origin_of("https://files.acme.example:8443/a") in origins
    assert origin_of("https://files.acme.example:8444/a") not in origins
    assert origin_of("http://dl.acme.example:8080/a") in origins
    assert origin_of("http://127.0.0.1:9000/api") in origins
    assert origin_of("http://127.0.0.1:9001/api") not in origins
    with pytest.raises(ProfileError, match="allowed_hosts"):
        allowed_origins("https://a.example", (), ["https://files.example/path/only"])


def test_offsite_refuse_names_the_origin(
    serve: Callable[[Callable[[Request], Reply]], FakeServer],
) -> None:
    other = serve(_other)
    api = serve(_api(lambda: other.url))
    profile = fake_profile(api.url, resources=RESOURCES, client={"offsite": "refuse"})
    client = Client(profile, auth=BearerAuth(Secret(TOKEN)), clock=FakeClock())
    with pytest.raises(AuthError, match="not an API host") as info:
        client.get("/moved")
    assert other.url.rsplit(":", 1)[1] in str(info.value) and other.requests == []


def test_headers_env_and_params_env_reach_the_api_only(
    serve: Callable[[Callable[[Request], Reply]], FakeServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORIGIN_HEADER_TOKEN", TOKEN)
    monkeypatch.setenv("ORIGIN_SIGNATURE", KEY)
    other = serve(_other)
    api = serve(_api(lambda: other.url))
    resources = {"items": {**RESOURCES["items"], "params_env": {"signature": "ORIGIN_SIGNATURE"}}}
    profile = fake_profile(
        api.url,
        resources=resources,
        client={"headers_env": {"X-Custom-Token": "ORIGIN_HEADER_TOKEN"}},
    )
    client = Client(profile, clock=FakeClock())  # no [auth]: the credentials are these two
    assert [r["id"] for p in client.iter_pages("items") for r in p] == [1, 2]
    first = api.requests[0]
    assert first.headers.get("X-Custom-Token") == TOKEN and first.query.get("signature") == KEY
    assert len(other.requests) == 1 and _leaks(other.requests) == []
    assert "X-Custom-Token" not in other.requests[0].headers
