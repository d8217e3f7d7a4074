"""Authentication: callables applied to each outgoing request (``requests.auth.AuthBase``).

========================================  ====================================================
profile ``type``                          class
========================================  ====================================================
``api_key``                               :class:`ApiKeyAuth`: a key in a header or query param
``basic``                                 :class:`BasicAuth`: user + password (or key + "")
``bearer``                                :class:`BearerAuth`: a static token, header format
``oauth2_client_credentials``             :class:`OAuth2ClientCredentials`
``oauth2_password``                       :class:`OAuth2PasswordGrant`
``oauth2_authorization_code``             :class:`OAuth2AuthorizationCode` (refresh, rotation)
``none``                                  :class:`NoAuth`
========================================  ====================================================

Secrets come from environment variables named by ``*_env`` profile keys and are held as
:class:`~scaler_workbench._secrets.Secret`: no repr, log line or exception shows them. OAuth2
tokens are fetched lazily, renewed ``expiry_margin`` seconds before they expire, and renewed once
more when the API answers 401 ``invalid_token`` (the client then retries the request). A refresh
token that the provider rotates is written to ``token_file`` (mode 0600) and read by the next run.

The token endpoint is called through a *token transport* that the :class:`Client` binds (same
timeout, retries and error translation as every other request); standalone objects fall back to
:func:`scaler_workbench.connectors._transport.post_token_form`. requests-oauthlib is not used for the
token exchange: oauthlib refuses ``http://`` token URLs (the loopback sandbox) and raises a
``Warning`` when a provider narrows the scope, which would abort runs that work.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from requests.auth import AuthBase
from requests.models import PreparedRequest

from scaler_workbench._profile_schema import did_you_mean
from scaler_workbench._secrets import (
    Secret,
    get_logger,
    register_basic_pair,
    register_secret,
    secret_from_env,
)
from scaler_workbench.clock import Clock, SystemClock
from scaler_workbench.connectors._transport import post_token_form
from scaler_workbench.connectors._util import construct
from scaler_workbench.exceptions import AuthError, CredentialError, ProfileError

__all__ = [
    "AUTHS",
    "ApiKeyAuth",
    "Auth",
    "BasicAuth",
    "BearerAuth",
    "NoAuth",
    "OAuth2AuthorizationCode",
    "OAuth2ClientCredentials",
    "OAuth2PasswordGrant",
    "TokenFile",
    "authorize",
    "listen_for_redirect",
    "make_auth",
    "register_auth",
]

log = get_logger(__name__)

#: post_form(url, data, basic=(user, password) or None) -> decoded JSON token response
TokenTransport = Callable[..., dict[str, Any]]


def _value(secret: Secret | str | None) -> str:
    if secret is None:
        return ""
    return secret.get() if isinstance(secret, Secret) else str(secret)


def _as_secret(value: Secret | str | None, source: str = "") -> Secret | None:
    if value is None or isinstance(value, Secret):
        return value
    return Secret(str(value), source=source)


class Auth(AuthBase):
    """Base of every auth: apply credentials to a prepared request; never show them."""

    type: str = ""

    def __call__(self, r: PreparedRequest) -> PreparedRequest:
        return r

    def bind(self, transport: TokenTransport | None = None, clock: Clock | None = None) -> None:
        """Give the auth the client's token transport and clock (token-based auths use them)."""

    def on_unauthorized(self, *, www_authenticate: str = "", body: str = "") -> bool:
        """A 401 came back: renew credentials if that can help. True means "retry once"."""
        return False

    @property
    def hosts(self) -> tuple[str, ...]:
        """URLs (or host names) besides the API's that this auth talks to (the token endpoint).

        Their origins (scheme, host and port) become API origins of the client.
        """
        return ()

    def _describe(self) -> dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self._describe().items())
        return f"{type(self).__name__}({opts})"

    __str__ = __repr__


class NoAuth(Auth):
    """No credentials (public APIs)."""

    type = "none"


class ApiKeyAuth(Auth):
    """An API key in a header (``X-API-Key: <key>``) or a query parameter (``?api_key=<key>``).

    Parameters
    ----------
    key : Secret
        The key (profile: ``key_env``).
    name : str
        Header or parameter name.
    location : {"header", "query"}
    prefix : str
        Text before the key in a header value (e.g. ``"Token "``).
    """

    type = "api_key"

    def __init__(
        self,
        key: Secret | str,
        *,
        name: str = "X-API-Key",
        location: str = "header",
        prefix: str = "",
    ) -> None:
        if location not in ("header", "query"):
            raise ProfileError(
                f"api_key location must be 'header' or 'query', got {location!r}",
                key="auth.location",
            )
        if not name:
            raise ProfileError("api_key needs the header/parameter name", key="auth.name")
        self.key = _as_secret(key)
        self.name, self.location, self.prefix = name, location, prefix

    def __call__(self, r: PreparedRequest) -> PreparedRequest:
        if self.location == "header":
            r.headers[self.name] = f"{self.prefix}{_value(self.key)}"
        else:
            r.prepare_url(r.url, {self.name: _value(self.key)})
        return r

    def _describe(self) -> dict[str, Any]:
        return {"key": self.key, "name": self.name, "location": self.location}


class BasicAuth(Auth):
    """HTTP Basic. For "API key as user name, empty password" give only ``username``.

    Parameters
    ----------
    username : Secret or str
        Profile: ``username`` (plain) or ``username_env`` (secret, e.g. an API key).
    password : Secret or str, optional
        Profile: ``password_env``; empty when absent.
    """

    type = "basic"

    def __init__(self, username: Secret | str, password: Secret | str | None = None) -> None:
        self.username = username
        self.password = _as_secret(password) if password not in (None, "") else None

    def __call__(self, r: PreparedRequest) -> PreparedRequest:
        r.headers["Authorization"] = _basic_header(_value(self.username), _value(self.password))
        return r

    def _describe(self) -> dict[str, Any]:
        return {"username": self.username, "password": self.password}


def _basic_header(user: str, password: str) -> str:
    return f"Basic {register_basic_pair(user, password)}"


class BearerAuth(Auth):
    """A static token: ``Authorization: Bearer <token>`` (header name and format configurable).

    Parameters
    ----------
    token : Secret
        Profile: ``token_env``.
    header : str
        Header name (default ``Authorization``).
    format : str
        Header value with ``{token}`` (default ``"Bearer {token}"``; e.g. ``"Token {token}"``).
    """

    type = "bearer"

    def __init__(
        self, token: Secret | str, *, header: str = "Authorization", format: str = "Bearer {token}"
    ) -> None:
        if "{token}" not in format:
            raise ProfileError(
                f"bearer format must contain '{{token}}', got {format!r}", key="auth.format"
            )
        self.token = _as_secret(token)
        self.header, self.format = header, format

    def __call__(self, r: PreparedRequest) -> PreparedRequest:
        r.headers[self.header] = self.format.replace("{token}", _value(self.token))
        return r

    def _describe(self) -> dict[str, Any]:
        return {"token": self.token, "header": self.header, "format": self.format}


# ------------------------------------------------------------------------------- token files
@dataclass
class TokenFile:
    """Where a rotated refresh token lives between runs: JSON, owner-only (0600) permissions.

    The file is the one place a secret is written on purpose; it sits outside the code and the
    profile (which names only its path), and is replaced atomically.
    """

    path: Path

    def read(self) -> Secret | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise AuthError(
                f"token file {str(self.path)!r} is unreadable: {type(exc).__name__}",
                hint="Delete it and run the authorization-code helper again.",
            ) from exc
        token = data.get("refresh_token") if isinstance(data, dict) else None
        return Secret(token, source=str(self.path)) if token else None

    def write(self, refresh_token: Secret) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"refresh_token": refresh_token.get()}, fh)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)
        log.info("saved a refreshed token to %s (mode 0600)", self.path)


# ------------------------------------------------------------------------------------ OAuth2
class _OAuth2(Auth):
    """Shared OAuth2 machinery: lazy token, renewal before expiry and on 401 invalid_token."""

    grant_type = ""

    def __init__(
        self,
        *,
        token_url: str,
        client_id: str | Secret = "",
        client_secret: Secret | str | None = None,
        scope: str | list[str] = "",
        client_auth: str = "basic",
        token_params: Mapping[str, str] | None = None,
        header_format: str = "Bearer {token}",
        expiry_margin: float = 60.0,
        default_expires_in: float = 3600.0,
        refresh_token: Secret | str | None = None,
        token_file: str | os.PathLike[str] | None = None,
    ) -> None:
        if not str(token_url).startswith(("http://", "https://")):
            raise ProfileError(
                f"token_url must be an http(s) URL, got {token_url!r}", key="auth.token_url"
            )
        if client_auth not in ("basic", "body"):
            raise ProfileError(
                f"client_auth must be 'basic' or 'body', got {client_auth!r}",
                key="auth.client_auth",
                hint="'basic' sends client id/secret as HTTP Basic (client_secret_basic); "
                "'body' sends them as form fields (client_secret_post).",
            )
        self.token_url = token_url
        self.client_id = client_id
        self.client_secret = _as_secret(client_secret)
        self.scope = " ".join(scope) if isinstance(scope, list) else scope
        self.client_auth = client_auth
        self.token_params = dict(token_params or {})
        self.header_format = header_format
        self.expiry_margin = expiry_margin
        self.default_expires_in = default_expires_in
        self.token_file = TokenFile(Path(token_file)) if token_file else None
        stored = self.token_file.read() if self.token_file else None
        self.refresh_token: Secret | None = stored or _as_secret(refresh_token)
        self.access_token: Secret | None = None
        self.expires_at: float | None = None
        self.token_requests = 0
        self._transport: TokenTransport | None = None
        self._clock: Clock = SystemClock()
        self._lock = threading.RLock()

    # -- wiring ---------------------------------------------------------------------------
    def bind(self, transport: TokenTransport | None = None, clock: Clock | None = None) -> None:
        if transport is not None:
            self._transport = transport
        if clock is not None:
            self._clock = clock

    @property
    def hosts(self) -> tuple[str, ...]:
        return (self.token_url,)

    # -- overridable steps (per provider) --------------------------------------------------
    def token_request(self) -> dict[str, str]:
        """Form fields of the next token request (refresh grant when a refresh token is held)."""
        if self.refresh_token:
            data = {"grant_type": "refresh_token", "refresh_token": self.refresh_token.get()}
        else:
            data = self.initial_grant()
        if self.scope:
            data.setdefault("scope", self.scope)
        data.update(self.token_params)
        return data

    def initial_grant(self) -> dict[str, str]:
        """Form fields of the first grant (subclasses)."""
        raise NotImplementedError

    def read_token(self, body: Mapping[str, Any]) -> None:
        """Store the access token, expiry and any rotated refresh token from a token response."""
        token = body.get("access_token") if isinstance(body, Mapping) else None
        if not token:
            keys = list(body)[:8] if isinstance(body, Mapping) else type(body).__name__
            raise AuthError(
                f"the token endpoint answered without an access_token (keys: {keys})",
                url=self.token_url,
            )
        self.access_token = Secret(str(token), source="token endpoint")
        try:
            lifetime = float(body.get("expires_in") or self.default_expires_in)
        except (TypeError, ValueError):
            lifetime = self.default_expires_in
        margin = min(self.expiry_margin, lifetime / 2)
        self.expires_at = self._clock.monotonic() + lifetime - margin
        new_refresh = body.get("refresh_token")
        if new_refresh and (self.refresh_token is None or new_refresh != self.refresh_token.get()):
            self.refresh_token = Secret(str(new_refresh), source="token endpoint")
            if self.token_file is not None:
                self.token_file.write(self.refresh_token)

    # -- lifecycle ------------------------------------------------------------------------
    def _client_credentials(self) -> tuple[dict[str, str], tuple[str, str] | None]:
        cid, secret = _value(self.client_id), _value(self.client_secret)
        if self.client_auth == "basic" and cid:
            register_basic_pair(cid, secret)
            return {}, (cid, secret)
        fields = {"client_id": cid} if cid else {}
        if secret:
            fields["client_secret"] = secret
        return fields, None

    def _post(self, data: dict[str, str]) -> dict[str, Any]:
        fields, basic = self._client_credentials()
        data = {**data, **fields}
        transport = self._transport
        if transport is None:
            transport = post_token_form
        self.token_requests += 1
        return transport(self.token_url, data, basic=basic)

    def renew(self) -> None:
        """Get a new access token now (refresh grant if possible, else the initial grant)."""
        with self._lock:
            try:
                body = self._post(self.token_request())
            except AuthError:
                if not self.refresh_token or not self._can_regrant():
                    raise
                log.info("refresh token refused; falling back to the %s grant", self.grant_type)
                self.refresh_token = None
                body = self._post(self.token_request())
            self.read_token(body)
            log.debug("%s: new access token, valid for the next %.0fs", self.type, self._ttl())

    def _can_regrant(self) -> bool:
        return True

    def _ttl(self) -> float:
        return (self.expires_at or 0.0) - self._clock.monotonic()

    def ensure_token(self) -> Secret:
        with self._lock:
            if self.access_token is None or self.expires_at is None or self._ttl() <= 0:
                self.renew()
            assert self.access_token is not None
            return self.access_token

    def __call__(self, r: PreparedRequest) -> PreparedRequest:
        token = self.ensure_token()
        r.headers["Authorization"] = self.header_format.replace("{token}", token.get())
        return r

    def on_unauthorized(self, *, www_authenticate: str = "", body: str = "") -> bool:
        text = f"{www_authenticate} {body[:2000]}".lower()
        if "invalid_token" not in text and "expired" not in text:
            return False
        log.info("%s: the API says the access token is invalid; renewing once", self.type)
        with self._lock:
            self.access_token = None
            self.renew()
        return True

    def _describe(self) -> dict[str, Any]:
        return {
            "token_url": self.token_url,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "scope": self.scope,
            "client_auth": self.client_auth,
            "token_file": str(self.token_file.path) if self.token_file else None,
        }


class OAuth2ClientCredentials(_OAuth2):
    """OAuth2 client credentials grant (machine to machine).

    ``client_auth = "basic"`` sends the client id and secret as HTTP Basic
    (``client_secret_basic``), ``"body"`` as form fields (``client_secret_post``).
    """

    type = "oauth2_client_credentials"
    grant_type = "client_credentials"

    def __init__(self, *, client_id: str | Secret, client_secret: Secret | str, **kw: Any) -> None:
        super().__init__(client_id=client_id, client_secret=client_secret, **kw)

    def initial_grant(self) -> dict[str, str]:
        return {"grant_type": "client_credentials"}


class OAuth2PasswordGrant(_OAuth2):
    """OAuth2 resource owner password grant: user name and password for a token."""

    type = "oauth2_password"
    grant_type = "password"

    def __init__(self, *, username: Secret | str, password: Secret | str, **kw: Any) -> None:
        super().__init__(**kw)
        self.username = username
        self.password = _as_secret(password)

    def initial_grant(self) -> dict[str, str]:
        return {
            "grant_type": "password",
            "username": _value(self.username),
            "password": _value(self.password),
        }

    def _describe(self) -> dict[str, Any]:
        return {**super()._describe(), "username": self.username, "password": self.password}


class OAuth2AuthorizationCode(_OAuth2):
    """OAuth2 authorization code grant with refresh tokens (rotated tokens saved).

    A person consents once (see :func:`authorize`); afterwards the refresh token in
    ``token_file`` (or ``refresh_token_env`` for the first run) renews access unattended.

    Parameters
    ----------
    authorize_url : str
        The consent page.
    redirect_uri : str
        Registered redirect, e.g. ``http://127.0.0.1:8765/callback`` for the local listener.
    pkce : bool
        Send a PKCE S256 challenge (default true; providers that ignore it are unaffected).
    """

    type = "oauth2_authorization_code"
    grant_type = "authorization_code"

    def __init__(
        self,
        *,
        authorize_url: str = "",
        redirect_uri: str = "http://127.0.0.1:8765/callback",
        pkce: bool = True,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.authorize_url = authorize_url
        self.redirect_uri = redirect_uri
        self.pkce = pkce
        self._state: str | None = None
        self._verifier: str | None = None

    def _can_regrant(self) -> bool:
        return False

    def initial_grant(self) -> dict[str, str]:
        raise AuthError(
            "no refresh token: this provider needs a one-time consent (authorization code)",
            url=self.token_url,
            hint="In a notebook run scaler_workbench.connectors.auth.authorize(auth); it stores "
            "the refresh token in the profile's token_file.",
        )

    def authorization_url(self) -> str:
        """The consent URL to open in a browser (a fresh ``state`` and PKCE pair each call)."""
        if not self.authorize_url:
            raise ProfileError(
                "authorization code flow needs authorize_url", key="auth.authorize_url"
            )
        self._state = secrets.token_urlsafe(16)
        params = {
            "response_type": "code",
            "client_id": _value(self.client_id),
            "redirect_uri": self.redirect_uri,
            "state": self._state,
        }
        if self.scope:
            params["scope"] = self.scope
        if self.pkce:
            self._verifier = secrets.token_urlsafe(48)
            digest = hashlib.sha256(self._verifier.encode()).digest()
            params["code_challenge"] = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            params["code_challenge_method"] = "S256"
        sep = "&" if "?" in self.authorize_url else "?"
        return f"{self.authorize_url}{sep}{urlencode(params)}"

    def exchange_code(self, code_or_redirect: str) -> None:
        """Exchange a pasted code (or the whole redirect URL) for tokens; save the refresh token.

        Raises
        ------
        AuthError
            The redirect carries an ``error``, the ``state`` does not match, or the token
            endpoint refuses the code.
        """
        code = code_or_redirect.strip()
        if "://" in code or code.startswith(("?", "/")):
            query = parse_qs(urlsplit(code).query)
            if "error" in query:
                raise AuthError(
                    f"the provider refused consent: {query['error'][0]}",
                    hint="Check the scopes and the redirect URI registered with the provider.",
                )
            if self._state is not None and query.get("state", [""])[0] != self._state:
                raise AuthError(
                    "the redirect's state does not match the consent URL (possible CSRF)",
                    hint="Start again with authorize(); use the newest consent URL.",
                )
            if "code" not in query:
                raise AuthError("the redirect URL has no ?code= parameter")
            code = query["code"][0]
        register_secret(code)
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": self.redirect_uri}
        if self._verifier:
            data["code_verifier"] = self._verifier
        with self._lock:
            self.read_token(self._post(data))
        if self.refresh_token is None:
            log.warning("the token endpoint sent no refresh_token; consent will be needed again")
        elif self.token_file is not None and not self.token_file.path.exists():
            self.token_file.write(self.refresh_token)

    def _describe(self) -> dict[str, Any]:
        return {**super()._describe(), "authorize_url": self.authorize_url}


# ------------------------------------------------------------------- consent in a notebook
def listen_for_redirect(redirect_uri: str, *, timeout: float = 300.0) -> str:
    """Serve one request on the redirect URI's 127.0.0.1 port; return the full redirect URL.

    Raises
    ------
    AuthError
        Nothing arrived within ``timeout`` [s], or the URI is not a loopback http URL.
    """
    parts = urlsplit(redirect_uri)
    if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "localhost"):
        raise AuthError(
            f"the local listener needs an http://127.0.0.1:<port>/ redirect, got {redirect_uri!r}",
            hint="Register http://127.0.0.1:8765/callback with the provider, or paste the code.",
        )
    received: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            received.append(f"http://{parts.netloc}{self.path}")
            page = b"<html><body>Authorised. You can close this tab and return to the notebook."
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, format: str, *args: Any) -> None:  # never log the code
            return

    with http.server.HTTPServer(("127.0.0.1", parts.port or 80), Handler) as server:
        server.timeout = timeout
        server.handle_request()
    if not received:
        raise AuthError(
            f"no redirect arrived on {redirect_uri} within {timeout:.0f}s",
            hint="Open the consent URL again, or pass the code: authorize(auth, code=...).",
        )
    register_secret(parse_qs(urlsplit(received[0]).query).get("code", [""])[0])
    return received[0]


def authorize(
    auth: OAuth2AuthorizationCode,
    *,
    code: str | None = None,
    listen: bool = True,
    timeout: float = 300.0,
    show: Callable[[str], Any] = print,
    open_browser: bool = False,
) -> None:
    """Run the one-time consent: show the URL, take the redirect or a pasted code, save tokens.

    Parameters
    ----------
    auth : OAuth2AuthorizationCode
        From :func:`make_auth` on the profile (its ``token_file`` receives the refresh token).
    code : str, optional
        A code or full redirect URL already pasted; skips the listener.
    listen : bool
        Wait for the browser's redirect on the loopback ``redirect_uri`` (default). When false
        and no ``code`` is given, ask for the pasted redirect URL with ``input()``.
    timeout : float
        How long to wait for the redirect [s].
    show : callable
        Receives the consent URL and the final message (default: ``print``).
    open_browser : bool
        Also open the consent URL in the default web browser.

    Raises
    ------
    AuthError
        No redirect within ``timeout``, a ``redirect_uri`` that is not a loopback http URL, a
        redirect without ``?code=`` (or with the provider's ``error``), or a token endpoint that
        refuses the code.
    ProviderUnavailableError, TransportError
        The token endpoint is down or cannot be reached.
    """
    if code is None:
        url = auth.authorization_url()
        show(f"Open this URL, sign in and consent:\n{url}")
        if open_browser:
            import webbrowser

            webbrowser.open(url)
        code = (
            listen_for_redirect(auth.redirect_uri, timeout=timeout)
            if listen
            else input("Paste the URL you were redirected to (or the code): ")
        )
    auth.exchange_code(code)
    where = f" in {auth.token_file.path}" if auth.token_file else ""
    show(f"Authorised: refresh token stored{where}.")


#: profile ``type`` -> auth class
AUTHS: dict[str, type[Auth]] = {
    "api_key": ApiKeyAuth,
    "basic": BasicAuth,
    "bearer": BearerAuth,
    "none": NoAuth,
    "oauth2_authorization_code": OAuth2AuthorizationCode,
    "oauth2_client_credentials": OAuth2ClientCredentials,
    "oauth2_password": OAuth2PasswordGrant,
}
#: ``*_env`` keys read as plain text (not secrets): URLs that vary per customer or tenant.
_PLAIN_ENV = ("token_url_env", "authorize_url_env")


def _plain_from_env(variable: str, *, key: str) -> str:
    """A non-secret value from the environment (``token_url_env``)."""
    value = os.environ.get(variable, "")
    if not value:
        raise CredentialError(
            f"environment variable {variable!r} (named by profile key {key!r}) is not set",
            variable=variable,
            key=key,
        )
    return value


#: Other spellings accepted for ``[auth] type`` (the profile form resolves them too).
AUTH_ALIASES = {"oauth2": "oauth2_client_credentials", "http_basic": "basic", "apikey": "api_key"}


def register_auth(name: str, cls: type[Auth]) -> None:
    """Make ``cls`` available as ``type = name`` in profiles."""
    if not (isinstance(cls, type) and issubclass(cls, Auth)):
        raise TypeError(f"{cls!r} is not an Auth subclass")
    AUTHS[name] = cls


def make_auth(
    spec: str | Mapping[str, Any] | Auth | None, *, profile: Any = None, key: str = "auth"
) -> Auth:
    """Build an auth from a name, a profile table (with ``type``) or an instance.

    ``*_env`` keys are read from the environment as secrets (``key_env`` -> ``key``);
    ``token_file`` is resolved against the profile's folder. ``None`` gives :class:`NoAuth`.

    Parameters
    ----------
    spec : str, dict, Auth or None
        A registered type name (:data:`AUTHS`), an ``[auth]`` table with ``type``, or an
        instance (returned as is).
    profile : Profile, optional
        Resolves ``token_file`` against the profile's folder.
    key : str
        Profile key named in errors (default ``auth``).

    Returns
    -------
    Auth

    Raises
    ------
    ProfileError
        Unknown ``type`` (the message lists the known ones) or options the class does not take.
    CredentialError
        An environment variable named by a ``*_env`` key is unset.
    """
    if spec is None:
        return NoAuth()
    if isinstance(spec, Auth):
        return spec
    if isinstance(spec, str):
        spec = {"type": spec}
    if not isinstance(spec, Mapping):
        raise ProfileError(f"[{key}] must be a table", key=key)
    options: dict[str, Any] = {}
    name = ""
    for k, v in spec.items():
        if k == "type":
            name = str(v)
        elif k in _PLAIN_ENV:  # a URL that varies per customer: not a secret
            options[k[: -len("_env")]] = _plain_from_env(str(v), key=f"{key}.{k}")
        elif k.endswith("_env"):
            options[k[: -len("_env")]] = secret_from_env(str(v), key=f"{key}.{k}")
        elif k == "token_file":
            options[k] = profile.resolve_path(v) if profile is not None else Path(v)
        else:
            options[k] = v
    name = AUTH_ALIASES.get(name, name)
    cls = AUTHS.get(name)
    if cls is None:
        raise ProfileError(
            f"unknown auth type {name!r}{did_you_mean(name, [*AUTHS, *AUTH_ALIASES])}",
            key=f"{key}.type",
            hint=f"Known types: {', '.join(sorted(AUTHS))}.",
        )
    return construct(cls, options, key)
