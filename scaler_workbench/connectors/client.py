"""The HTTP client: with :mod:`~scaler_workbench.connectors._transport` (retry policy, error
boundary, the OAuth2 token POST) the only module that sends requests (and, with it, the only one
importing ``requests`` beyond ``requests.auth.AuthBase``).

One :class:`Client` per profile and environment holds the session, the auth, one retry policy,
the client-side budget and the allowed hosts. Every request goes through :meth:`Client.send`:

1. wait for the budget (requests per second/minute/day, concurrency);
2. apply credentials only when the URL's origin (scheme, host and port) is an API origin (base
   URL, token URL, ``allowed_hosts``, see :mod:`._origin`); a next link or redirect elsewhere
   is sent without any credential (``offsite = "strip"``, one warning per origin) or refused
   (``offsite = "refuse"``);
3. follow redirects by hand, with the same host check on every hop;
4. retry 429/5xx and transport errors with capped exponential backoff and jitter, honouring
   ``Retry-After`` (seconds or HTTP date); a 429 without ``Retry-After`` saying the daily quota
   is spent, or matching the ban pattern (``[client] ban_match``), stops at once with
   :class:`QuotaExhaustedError` (exit 4, the next run resumes); a 401 ``invalid_token`` renews the token once;
   a resource's ``check`` (a SOAP resource's faults, :mod:`._soap`) reads every answer first;
5. translate every ``requests``/``urllib3`` exception into :class:`TransportError`, and bad
   statuses into :class:`AuthError`, :class:`RequestRejectedError`,
   :class:`RangeTooLargeError` or :class:`ProviderUnavailableError` with a redacted URL and a
   truncated, redacted body.

Responses can be recorded to a folder (secrets redacted) and replayed offline::

    Client(profile, record_to="tests/data/myprovider")   # talk to the API, keep every answer
    Client(profile, replay_from="tests/data/myprovider") # no network at all
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit

import requests
import requests.adapters
import requests.utils

from scaler_workbench._secrets import (
    SECRET_PARAM_NAMES,
    get_logger,
    redact,
    redact_bytes,
    redact_url,
)
from scaler_workbench.clock import Clock, SystemClock
from scaler_workbench.connectors._body import decode_body
from scaler_workbench.connectors._events import FetchEvent
from scaler_workbench.connectors._events import emit as _emit_event
from scaler_workbench.connectors._origin import allowed_origins, origin_of, strip_credentials
from scaler_workbench.connectors._transport import (
    DEFAULT_TIMEOUT,
    RetryPolicy,
    post_token_form,
)
from scaler_workbench.connectors._transport import retry_after as _retry_after
from scaler_workbench.connectors._transport import snippet as _snippet
from scaler_workbench.connectors._transport import translate_errors as _translate_errors
from scaler_workbench.connectors._util import construct, secrets_from_env_table
from scaler_workbench.connectors.auth import Auth, NoAuth, make_auth
from scaler_workbench.connectors.paginate import PageRequest
from scaler_workbench.connectors.registry import connector_for
from scaler_workbench.exceptions import (
    AuthError,
    ConnectorError,
    HTTPStatusError,
    ProfileError,
    ProviderUnavailableError,
    QuotaExhaustedError,
    RangeTooLargeError,
    RequestRejectedError,
    ResourceNotFoundError,
    TransportError,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "Budget",
    "Client",
    "RecordingAdapter",
    "ReplayAdapter",
    "Reply",
    "RequestLogEntry",
    "RetryPolicy",
    "post_token_form",
]

log = get_logger(__name__)

_KEEP_HEADERS = ("content-type", "link", "retry-after", "x-total-count", "location")


class Budget:
    """A client-side request budget (``[client.budget]``): rate windows and concurrency.

    Parameters
    ----------
    requests_per_second, requests_per_minute, requests_per_day : float, optional
        Sliding-window limits; the client waits (on its clock) for a free slot. The daily limit
        is not waited for: it raises :class:`QuotaExhaustedError` so the run stops and resumes.
    max_concurrency : int, optional
        Requests in flight at once across threads.
    """

    def __init__(
        self,
        *,
        requests_per_second: float | None = None,
        requests_per_minute: float | None = None,
        requests_per_day: float | None = None,
        max_concurrency: int | None = None,
        clock: Clock | None = None,
    ) -> None:
        for name, v in (
            ("requests_per_second", requests_per_second),
            ("requests_per_minute", requests_per_minute),
            ("requests_per_day", requests_per_day),
            ("max_concurrency", max_concurrency),
        ):
            if v is not None and v <= 0:
                raise ProfileError(f"client.budget.{name} must be > 0", key=f"client.budget.{name}")
        self.requests_per_second = requests_per_second
        self.requests_per_minute = requests_per_minute
        self.requests_per_day = requests_per_day
        self.max_concurrency = max_concurrency
        self.clock: Clock = clock or SystemClock()
        # (requests, seconds): a limit below 1 (e.g. 0.5/s) becomes one request per 1/limit window
        self._windows: list[tuple[int, float]] = []
        for limit, length in (
            (requests_per_second, 1.0),
            (requests_per_minute, 60.0),
            (requests_per_day, 86400.0),
        ):
            if limit:
                self._windows.append(
                    (int(limit), length) if limit >= 1 else (1, length / float(limit))
                )
        horizon = max((n for n, _ in self._windows), default=0)
        self._sent: deque[float] = deque(maxlen=horizon or 1)
        self._lock = threading.Lock()
        self._sem = threading.BoundedSemaphore(max_concurrency) if max_concurrency else None
        self.waited = 0.0

    def seconds_for(self, n_requests: int) -> float:
        """Least time [s] that ``n_requests`` take under the rate windows (for plans)."""
        if n_requests <= 1 or not self._windows:
            return 0.0
        return max(((n_requests - 1) // n) * length for n, length in self._windows)

    def acquire(self) -> None:
        if self._sem is not None:
            self._sem.acquire()
        while True:
            with self._lock:
                now = self.clock.monotonic()
                wait = 0.0
                for n, length in self._windows:
                    recent = [t for t in list(self._sent)[-n:] if t > now - length]
                    if len(recent) >= n:
                        if length >= 86400.0:
                            self.release()
                            raise QuotaExhaustedError(
                                f"client budget of {n} requests per day is spent",
                                hint="Run again tomorrow, or raise client.budget.requests_per_day.",
                            )
                        wait = max(wait, recent[0] + length - now)
                if wait <= 0:
                    self._sent.append(now)
                    return
            self.waited += wait
            self.clock.sleep(wait)

    def release(self) -> None:
        if self._sem is not None:
            self._sem.release()

    def __repr__(self) -> str:
        opts = {
            "requests_per_second": self.requests_per_second,
            "requests_per_minute": self.requests_per_minute,
            "requests_per_day": self.requests_per_day,
            "max_concurrency": self.max_concurrency,
        }
        return "Budget(" + ", ".join(f"{k}={v}" for k, v in opts.items() if v) + ")"


# --------------------------------------------------------------------- record and replay
def _request_key(
    method: str, url: str, body: bytes | str | None = None, content_type: str = ""
) -> str:
    """Method, path, sorted query without secret parameters and, for a request with a body, a
    hash of the redacted body: the same key with or without auth, no secret in it.

    The body is redacted before it is hashed (registered secrets in every encoding, and the
    values of secret-named fields of a form), so the key neither depends on a credential nor
    lets anyone test a guess of one against it.
    """
    parts = urlsplit(url)
    pairs = sorted(
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if k.lower() not in SECRET_PARAM_NAMES and redact(v) == v
    )
    key = redact(f"{method.upper()} {parts.path}?{urlencode(pairs)}")
    raw = body.encode("utf-8") if isinstance(body, str) else (body or b"")
    if raw:
        key += " body:" + hashlib.sha256(_redacted_request_body(raw, content_type)).hexdigest()[:32]
    return key


def _redacted_request_body(raw: bytes, content_type: str) -> bytes:
    """A request body with its secrets masked (for its hash only: it is never written)."""
    if "x-www-form-urlencoded" in content_type.lower():
        text = raw.decode("utf-8", "surrogateescape")
        pairs = parse_qsl(text, keep_blank_values=True)
        masked = [(k, "***" if k.lower() in SECRET_PARAM_NAMES else v) for k, v in pairs]
        raw = urlencode(masked).encode("utf-8", "surrogateescape")
    text = redact(raw.decode("utf-8", "surrogateescape"))
    return redact_bytes(text.encode("utf-8", "surrogateescape"))


def _is_token_request(request: requests.PreparedRequest) -> bool:
    """An OAuth2 token POST (a form with ``grant_type``): never recorded (replay needs no token)."""
    if request.method != "POST" or not request.body:
        return False
    body = request.body if isinstance(request.body, bytes) else str(request.body).encode()
    ctype = str(request.headers.get("Content-Type", "")).lower()
    if "x-www-form-urlencoded" not in ctype:
        return False
    names = {k for k, _ in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)}
    return "grant_type" in names


def _key_file(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:20] + ".json"


def _key_of(request: requests.PreparedRequest) -> str:
    return _request_key(
        str(request.method),
        str(request.url),
        request.body,
        str(request.headers.get("Content-Type", "")),
    )


class RecordingAdapter(requests.adapters.HTTPAdapter):
    """A transport adapter that saves each answer to ``folder`` (secrets redacted).

    Every method is recorded (GET, and the POSTs of GraphQL, SOAP and form resources), keyed
    by method, path, the query without secret parameters and, for a request with a body, a
    hash of the *redacted* body (see :func:`_request_key`); the request body itself is never
    written. OAuth2 token POSTs (a form with ``grant_type``) are not recorded: replay needs no
    token. 429 and 5xx answers are not kept (they are transient).

    Files are JSON: the key, method, redacted URL, status, a few headers and the body: as
    ``body`` (text, ``encoding`` "utf-8") when it is UTF-8, else as ``body_base64`` (a cp1252
    export, a zip, gzip or any binary answer), byte for byte but for registered secrets, which
    are masked in the text or in the bytes (``***``).
    """

    def __init__(self, folder: str | Path, **kw: Any) -> None:
        super().__init__(**kw)
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def send(self, request: requests.PreparedRequest, *args: Any, **kw: Any) -> requests.Response:
        response = super().send(request, *args, **kw)
        if response.status_code >= 500 or response.status_code == 429:
            return response
        if _is_token_request(request):
            return response
        key = _key_of(request)
        headers = {
            k: (redact_url(v) if k.lower() == "location" else redact(v))
            for k, v in response.headers.items()
            if k.lower() in _KEEP_HEADERS
        }
        record: dict[str, Any] = {
            "request": key,
            "method": str(request.method),
            "url": redact_url(str(request.url)),
            "status": response.status_code,
            "headers": headers,
        }
        content = response.content
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError:
            record["body_base64"] = base64.b64encode(redact_bytes(content)).decode("ascii")
        else:
            record["encoding"] = "utf-8"
            record["body"] = redact(text)
        path = self.folder / _key_file(key)
        path.write_text(json.dumps(record, indent=1, ensure_ascii=False), encoding="utf-8")
        return response


class ReplayAdapter(requests.adapters.BaseAdapter):
    """A transport adapter that answers from a folder written by :class:`RecordingAdapter`.

    Requests are matched by the same key (method, path, query without secrets, hash of the
    redacted body); a request that was never recorded raises :class:`TransportError` naming it.
    Bodies come back as recorded: text re-encoded in its encoding, ``body_base64`` byte for
    byte.
    """

    def __init__(self, folder: str | Path) -> None:
        super().__init__()
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise ProfileError(
                f"replay folder {str(self.folder)!r} does not exist", key="replay_from"
            )

    def send(self, request: requests.PreparedRequest, *args: Any, **kw: Any) -> requests.Response:
        key = _key_of(request)
        path = self.folder / _key_file(key)
        if not path.exists():
            raise TransportError(
                f"no recorded response for {key}",
                url=str(request.url),
                hint="Record it first: Client(profile, record_to=folder) against the real API.",
            )
        record = json.loads(path.read_text(encoding="utf-8"))
        response = requests.Response()
        response.status_code = int(record["status"])
        response.headers.update(record.get("headers", {}))
        if "body_base64" in record:
            response._content = base64.b64decode(record["body_base64"])
        else:
            response._content = record["body"].encode(record.get("encoding") or "utf-8")
        response.encoding = requests.utils.get_encoding_from_headers(response.headers)
        response.url = str(request.url)
        response.request = request
        return response

    def close(self) -> None:
        return None


# ---------------------------------------------------------------------------- the client
class Reply(NamedTuple):
    """What :meth:`Client.get` returns: the decoded body and the ``requests.Response``."""

    body: Any
    response: requests.Response


@dataclass
class RequestLogEntry:
    """One request as sent (URL redacted): for the run's request log."""

    method: str
    url: str
    status: int | None
    attempt: int
    elapsed_ms: float
    error: str = ""


class Client:
    """An HTTP client for one provider profile.

    Parameters
    ----------
    profile : Profile
        The provider profile (``[auth]``, ``[client]``, environments).
    environment : str, optional
        Environment name (default: the profile's).
    clock : Clock, optional
        Used for backoff, budgets and token expiry (tests pass ``FakeClock``).
    session : requests.Session, optional
        A session to use (e.g. with a mock adapter); one is created otherwise.
    auth : Auth, optional
        Override the profile's ``[auth]``.
    record_to, replay_from : path, optional
        Save answers to a folder, or answer from one without any network (auth is skipped).
    base_url : str, optional
        Override the environment's base URL.

    Attributes
    ----------
    requests_sent : int
        Every HTTP request sent (retries included, token requests excluded).
    request_log : deque of RequestLogEntry
        The last 10,000 requests, URLs redacted.
    last_response : requests.Response or None
    """

    def __init__(
        self,
        profile: Any,
        *,
        environment: str | None = None,
        clock: Clock | None = None,
        session: requests.Session | None = None,
        auth: Auth | None = None,
        record_to: str | Path | None = None,
        replay_from: str | Path | None = None,
        base_url: str | None = None,
    ) -> None:
        self.profile = profile
        require_variables = getattr(profile, "require_variables", None)
        if require_variables is not None:  # a {name} whose *_env is unset: before any request
            require_variables()
        self.environment = environment or profile.environment
        env = profile.env(self.environment)
        self.base_url = (base_url or env.resolve_base_url()).rstrip("/")
        self.provider = profile.name
        self.clock: Clock = clock or SystemClock()
        cfg = dict(profile.section("client"))
        budget_cfg = cfg.pop("budget", {}) or {}
        self.timeout = float(cfg.pop("timeout", DEFAULT_TIMEOUT))
        self.offsite = str(cfg.pop("offsite", "strip"))
        if self.offsite not in ("strip", "refuse"):
            raise ProfileError("client.offsite must be 'strip' or 'refuse'", key="client.offsite")
        user_agent = str(cfg.pop("user_agent", "scaler-workbench"))
        extra_headers = dict(cfg.pop("headers", {}) or {})
        extra_headers.update(
            secrets_from_env_table(cfg.pop("headers_env", {}), "client.headers_env")
        )
        self.verify = cfg.pop("verify", True)
        self.retry: RetryPolicy = construct(RetryPolicy, cfg, "client")
        self.budget: Budget = construct(
            Budget, {**budget_cfg, "clock": self.clock}, "client.budget"
        )
        self.replaying = replay_from is not None
        if self.replaying or urlsplit(self.base_url).scheme == "file":
            # replayed answers, or a provider's file read by its connector: no credentials
            self.auth: Auth = NoAuth()
        else:
            self.auth = (
                auth if auth is not None else make_auth(_auth_table(profile, env), profile=profile)
            )
        self.session = session or requests.Session()
        self.session.headers.update(
            {
                "User-Agent": user_agent,
                "Accept": "application/json, application/xml;q=0.9, */*;q=0.5",
                **extra_headers,
            }
        )
        if replay_from is not None:
            adapter: requests.adapters.BaseAdapter = ReplayAdapter(replay_from)
            self.session.mount("http://", adapter)
            self.session.mount("https://", adapter)
        elif record_to is not None:
            rec = RecordingAdapter(record_to)
            self.session.mount("http://", rec)
            self.session.mount("https://", rec)
        self.origins = allowed_origins(self.base_url, self.auth.hosts, env.allowed_hosts)
        self._warned_offsite: set[str] = set()
        self.auth.bind(self._post_token, self.clock)
        self.requests_sent = 0
        self.request_log: deque[RequestLogEntry] = deque(maxlen=10_000)
        self.last_response: requests.Response | None = None
        self.learned_spans: dict[str, int] = {}
        self._rng = random.Random()

    def _post_token(
        self, url: str, data: Mapping[str, str], *, basic: tuple[str, str] | None = None
    ) -> dict[str, Any]:
        return post_token_form(
            url,
            data,
            basic=basic,
            session=self.session,
            timeout=self.timeout,
            retry=self.retry,
            clock=self.clock,
        )

    def __repr__(self) -> str:
        return (
            f"Client(provider={self.provider!r}, base_url={redact_url(self.base_url)!r}, "
            f"auth={self.auth!r}, retry=max_attempts:{self.retry.max_attempts}, budget={self.budget!r}, "
            f"requests_sent={self.requests_sent})"
        )

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- URLs and hosts ------------------------------------------------------------------
    def url(self, path_or_url: str) -> str:
        """Absolute URL: full URLs as given, paths appended to the base URL."""
        if "://" in path_or_url:
            return path_or_url
        return f"{self.base_url}/{path_or_url.lstrip('/')}" if path_or_url else self.base_url

    def is_api_host(self, url: str) -> bool:
        """True when ``url``'s origin (scheme, host and port) is one credentials may go to."""
        return origin_of(url) in self.origins

    # -- the request loop ----------------------------------------------------------------
    def get(
        self,
        path_or_url: str,
        *,
        params: Mapping[str, Any] | None = None,
        fmt: str = "auto",
        encoding: str = "",
    ) -> Reply:
        """GET a path or URL; return the decoded body (JSON value or XML root) and response.

        ``encoding`` reads a body whose charset the provider does not declare (right), as a
        resource's ``encoding`` does (see :func:`._body.decode_text`).
        """
        request = PageRequest(
            url=self.url(path_or_url), params=dict(params or {}), base_url=self.base_url
        )
        return self.send(request, fmt=fmt, encoding=encoding)

    def send(
        self,
        request: PageRequest,
        *,
        fmt: str = "auto",
        date_range: Any = None,
        check: Callable[[requests.Response], ConnectorError | None] | None = None,
        encoding: str = "",
    ) -> Reply:
        """Send a request with budget, auth, retries and error translation; decode the body.

        Parameters
        ----------
        request : PageRequest
        fmt : {"auto", "json", "xml", "csv"}
        date_range : DateRange, optional
            Lets a "range too large" answer raise :class:`RangeTooLargeError`.
        check : callable, optional
            Reads every answer (any status) before the status rules: an error it returns is
            raised, except a :class:`ProviderUnavailableError`, which is retried with the
            backoff (``Retry-After`` honoured) and raised after the last attempt (a SOAP
            resource's faults, :mod:`._soap`).
        encoding : str, optional
            The resource's ``encoding`` for the body's text (see :func:`._body.decode_text`).
        """
        url = self.url(request.url)
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._send_once(request, url, attempt)
            except TransportError as exc:
                if attempt >= self.retry.max_attempts:
                    raise
                wait = self.retry.wait(attempt, None, self._rng)
                self._log_retry(request.method, url, exc.message, attempt, wait, None)
                self.clock.sleep(wait)
                continue
            status = response.status_code
            if status == 401 and not refreshed and not self.replaying:
                refreshed = True
                if self.auth.on_unauthorized(
                    www_authenticate=response.headers.get("WWW-Authenticate", ""),
                    body=response.text,
                ):
                    attempt -= 1
                    continue
            problem = check(response) if check is not None else None
            if problem is not None:
                if not isinstance(problem, ProviderUnavailableError):
                    raise problem
                if attempt >= self.retry.max_attempts:
                    raise type(problem)(
                        f"{problem.message} after {attempt} attempts",
                        hint=problem.hint,
                        **problem.context,
                    )
                header = response.headers.get("Retry-After")
                wait = self.retry.wait(attempt, _retry_after(header, self.clock.now()), self._rng)
                self._log_retry(
                    request.method, response.url, problem.message, attempt, wait, status
                )
                self.clock.sleep(wait)
                continue
            if status in self.retry.retry_statuses:
                header = response.headers.get("Retry-After")
                if self.retry.is_quota(status, header, response.text):
                    # a spent quota, or a ban that every retry would renew: stop, resume later
                    raise QuotaExhaustedError(
                        f"the provider's quota is spent ({status}): {_snippet(response.text, 200)}",
                        provider=self.provider,
                        status=status,
                        url=response.url,
                    )
                if attempt < self.retry.max_attempts:
                    wait = self.retry.wait(
                        attempt, _retry_after(header, self.clock.now()), self._rng
                    )
                    self._log_retry(
                        request.method, response.url, str(status), attempt, wait, status
                    )
                    self.clock.sleep(wait)
                    continue
            break
        self._raise_for_status(response, date_range)
        body = decode_body(
            response.content,
            content_type=response.headers.get("Content-Type", ""),
            fmt=fmt,
            url=redact_url(response.url),
            encoding=encoding,
        )
        return Reply(body, response)

    def _log_retry(
        self, method: str, url: str, what: str, attempt: int, wait: float, status: int | None
    ) -> None:
        """One INFO line per retry: what failed, the attempt of how many, and the wait [s]."""
        log.info(
            "%s %s -> %s; attempt %d of %d failed, retrying in %.1fs",
            method,
            redact_url(url),
            what,
            attempt,
            self.retry.max_attempts,
            wait,
        )
        _emit_event(
            FetchEvent(
                "retry",
                status=status,
                attempt=attempt,
                max_attempts=self.retry.max_attempts,
                wait=wait,
            )
        )

    def _send_once(self, request: PageRequest, url: str, attempt: int) -> requests.Response:
        self.budget.acquire()
        started = time.perf_counter()
        response: requests.Response | None = None
        error = ""
        sent = url
        try:
            prepared = self._prepare(request, url)
            sent = str(prepared.url)  # the whole URL with its query: the log masks its secrets
            hops = 0
            while True:
                with _translate_errors(url):
                    settings = self.session.merge_environment_settings(
                        prepared.url, {}, None, self.verify, None
                    )
                    response = self.session.send(
                        prepared, timeout=self.timeout, allow_redirects=False, **settings
                    )
                self.requests_sent += 1
                if not response.is_redirect or hops >= 10:
                    break
                hops += 1
                location = urljoin(str(prepared.url), response.headers["Location"])
                method = "GET" if response.status_code in (301, 302, 303) else request.method
                log.debug("redirect %d -> %s", response.status_code, redact_url(location))
                response.close()
                prepared = self._prepare(
                    PageRequest(
                        url=location, method=method, json=None if method == "GET" else request.json
                    ),
                    location,
                )
            self.last_response = response
            return response
        except ConnectorError as exc:
            error = type(exc).__name__
            raise
        finally:
            self.budget.release()
            elapsed = (time.perf_counter() - started) * 1000
            status = response.status_code if response is not None else None
            entry = RequestLogEntry(
                request.method, self._log_url(sent), status, attempt, elapsed, error
            )
            self.request_log.append(entry)
            _emit_event(FetchEvent("request", status=status, attempt=attempt))
            log.debug(
                "%s %s -> %s (%.0f ms, attempt %d)",
                entry.method,
                entry.url,
                status or error,
                elapsed,
                attempt,
            )

    def _log_url(self, url: str) -> str:
        """``url`` with its query for the request log; secrets (and the auth's parameter) masked."""
        name = (
            getattr(self.auth, "name", "") if getattr(self.auth, "location", "") == "query" else ""
        )
        return redact_url(url, {name} if name else frozenset())

    def _prepare(self, request: PageRequest, url: str) -> requests.PreparedRequest:
        with _translate_errors(url):
            prepared = self.session.prepare_request(
                requests.Request(
                    request.method,
                    url,
                    params={k: v for k, v in request.params.items() if v is not None},
                    headers=request.headers,
                    json=request.json if request.data is None else None,
                    data=request.data.encode("utf-8") if request.data is not None else None,
                )
            )
        # the origin of the URL as given: requests drops an explicit ":0" (a closed sandbox's
        # port in replay), which would make the prepared URL look like another origin
        if self.is_api_host(url):
            prepared = self.auth(prepared)
        else:
            self._offsite(prepared, url)
        return prepared

    def _offsite(self, prepared: requests.PreparedRequest, url: str) -> None:
        """A request to another origin: refuse it, or strip every credential (warn once)."""
        if self.offsite == "refuse" and not isinstance(self.auth, NoAuth):
            raise AuthError(
                f"refused to send a request to {str(origin_of(url) or urlsplit(url).hostname)!r}, "
                "not an API host (scheme, host and port)",
                url=url,
                hint="Add it to environments.<env>.allowed_hosts (host or host:port) if it is "
                "the provider's, or set client.offsite = 'strip' to follow it without credentials.",
            )
        query_names = (
            [getattr(self.auth, "name", "")]
            if getattr(self.auth, "location", "") == "query"
            else []
        )
        stripped = strip_credentials(str(prepared.url), prepared.headers, query_names=query_names)
        if stripped != prepared.url:
            prepared.url = stripped
        other = str(origin_of(url) or redact_url(url))
        if other not in self._warned_offsite:
            self._warned_offsite.add(other)
            log.warning(
                "following %s without credentials: %s is not an API origin (%s)",
                redact_url(url),
                other,
                ", ".join(sorted(str(o) for o in self.origins)),
            )

    def _raise_for_status(self, response: requests.Response, date_range: Any) -> None:
        status = response.status_code
        if status < 300:
            return
        url, body = response.url, _snippet(response.text)
        ctx: dict[str, Any] = {
            "provider": self.provider,
            "status": status,
            "url": url,
            "body": body,
        }
        what = f"{response.request.method if response.request else 'GET'} {redact_url(url)} -> {status}"
        if date_range is not None and date_range.is_too_large(status, response.text):
            raise RangeTooLargeError(f"{what}: the date range is too large: {body}", **ctx)
        if status in (401, 403):
            raise AuthError(f"{what}: not authorised: {body}", **ctx)
        if status in self.retry.retry_statuses:
            raise ProviderUnavailableError(
                f"{what} after {self.retry.max_attempts} attempts: {body}", **ctx
            )
        if status >= 500:
            raise ProviderUnavailableError(f"{what} (not retried): {body}", **ctx)
        if status == 404:
            raise ResourceNotFoundError(f"{what}: not found: {body}", **ctx)
        if status >= 400:
            raise RequestRejectedError(f"{what}: {body}", **ctx)
        raise HTTPStatusError(f"{what}: unexpected status (too many redirects?)", **ctx)

    # -- notebooks ----------------------------------------------------------------------
    def iter_pages(self, resource: str | Mapping[str, Any], **kw: Any) -> Iterator[Any]:
        """Yield the pages of one resource (a profile name or a table), see :meth:`Connector.iter_pages`."""
        yield from connector_for(self.profile, client=self).iter_pages(resource, **kw)


def _auth_table(profile: Any, env: Any) -> dict[str, Any] | None:
    """``[auth]`` with the environment's own ``authorize_url`` / ``token_url`` in place."""
    table = dict(profile.section("auth") or {})
    if not table:
        return None
    for key, url in getattr(env, "auth_urls", ()):
        table[key] = url
        table.pop(f"{key}_env", None)  # the environment's URL wins over the default's variable
    return table
