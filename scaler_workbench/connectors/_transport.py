"""The low-level HTTP transport under both :mod:`~scaler_workbench.connectors.client` and
:mod:`~scaler_workbench.connectors.auth`: the error boundary, ``Retry-After``, the retry policy
and the OAuth2 token POST.

It imports nothing of the connectors but the body helpers, so the token-based auths can post
their token forms without importing the client (which imports the auths): the connectors'
imports run one way (``_transport`` <- ``auth`` <- ``client`` <- ``registry``/``resources``).
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import math
import random
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests
import urllib3.exceptions

from scaler_workbench._secrets import SECRET_PARAM_NAMES, get_logger, redact, redact_url
from scaler_workbench.clock import Clock, SystemClock
from scaler_workbench.exceptions import (
    AuthError,
    ProfileError,
    ProviderUnavailableError,
    TransportError,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "RetryPolicy",
    "post_token_form",
    "retry_after",
    "snippet",
    "translate_errors",
]

_log = get_logger(__name__)

#: seconds to wait for a connection and for each read, unless ``[client] timeout`` says otherwise
DEFAULT_TIMEOUT = 30.0
_BODY_LIMIT = 500
#: A 429 body meaning the daily or monthly quota is spent (not a per-second/minute/hour rate):
#: a period word near a quota word, in either order (docs/connectors.md prints it).
_QUOTA_PERIOD = r"daily|monthly|per[ _-]?day|per[ _-]?month|a day|a month|today|this month|24 ?h"
_QUOTA_WORD = r"quota|limit|allowance|allotment|cap\b"
_DEFAULT_QUOTA = (
    rf"(?:{_QUOTA_PERIOD})[^.;\n]{{0,40}}?(?:{_QUOTA_WORD})"
    rf"|(?:{_QUOTA_WORD})[^.;\n]{{0,60}}?(?:{_QUOTA_PERIOD}|for the day)"
    r"|requests? (?:per|a) (?:day|month)"
)


def snippet(text: str, n: int = _BODY_LIMIT) -> str:
    text = redact(text or "")
    return text if len(text) <= n else text[:n] + f"... [{len(text) - n} more chars]"


_SECRET_QUERY = re.compile(
    r"(?i)([?&](?:" + "|".join(re.escape(n) for n in sorted(SECRET_PARAM_NAMES)) + r")=)[^&\s\"']*"
)


class _TransportLogFilter(logging.Filter):
    """urllib3 logs request lines at DEBUG: mask registered secrets and secret query values."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # pragma: no cover - malformed record: leave it to logging
            return True
        masked = _SECRET_QUERY.sub(r"\1***", redact(message))
        if masked != message:
            record.msg, record.args = masked, None
        return True


for _name in ("urllib3.connectionpool", "urllib3.connection", "urllib3.util.retry"):
    _logger = logging.getLogger(_name)
    if not any(isinstance(f, _TransportLogFilter) for f in _logger.filters):
        _logger.addFilter(_TransportLogFilter())


# ---------------------------------------------------------------------------------- errors
_TRANSPORT_HINTS: tuple[tuple[type[BaseException], str], ...] = (
    (requests.exceptions.SSLError, "TLS failed: check the URL's scheme and the certificate."),
    (requests.exceptions.Timeout, "The provider did not answer in time: raise [client] timeout."),
    (requests.exceptions.ProxyError, "The proxy refused: check HTTPS_PROXY/NO_PROXY."),
    (requests.exceptions.InvalidURL, "The URL is malformed: check base_url and the resource path."),
    (requests.exceptions.MissingSchema, "The URL lacks http(s)://: check base_url."),
    (requests.exceptions.InvalidSchema, "Only http(s) URLs are supported: check base_url."),
    (requests.exceptions.ConnectionError, "Check the base URL and your network; re-run later."),
)


# urllib3's wrappers prefix the cause with the connection: "<...HTTPConnection object at 0x7f..>: "
# (urllib3 1.x) or "HTTPConnection(host='h', port=1): " (2.x); the URL is in our message already
_OBJECT_REPR = re.compile(
    r"<[\w.]+ object at 0x[0-9a-fA-F]+>: |^HTTPS?Connection(?:Pool)?\([^)]*\): "
)


def _root_cause(exc: BaseException) -> str:
    """The innermost reason of a requests/urllib3 error, without the wrappers' text.

    ``requests`` wraps urllib3's ``MaxRetryError`` wrapping e.g. ``NewConnectionError``: its
    text repeats host, port and URL before the cause ("Connection refused"), and a truncated
    message would cut the cause off.
    """
    inner = exc
    for _ in range(6):
        reason = getattr(inner, "reason", None)
        first = inner.args[0] if inner.args else None
        nxt = reason if isinstance(reason, BaseException) else first
        if not isinstance(nxt, BaseException) or nxt is inner:
            break
        inner = nxt
    return _OBJECT_REPR.sub("", str(inner)) or str(exc)


@contextlib.contextmanager
def translate_errors(url: str = "") -> Iterator[None]:
    """Map every ``requests``/``urllib3`` exception to :class:`TransportError` (the boundary)."""
    try:
        yield
    except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError) as exc:
        hint = next((h for cls, h in _TRANSPORT_HINTS if isinstance(exc, cls)), "")
        raise TransportError(
            f"{type(exc).__name__} talking to {redact_url(url) or 'the provider'}: "
            f"{snippet(_root_cause(exc), 200)}",
            url=url or None,
            hint=hint or TransportError.default_hint,
        ) from exc


def retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds from a ``Retry-After`` header: a number or an HTTP date in the future.

    None (the normal backoff applies) when absent or not a positive finite wait: ``nan``,
    ``inf``, ``-5``, ``0``, a date in the past, or text that is neither.
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - now).total_seconds()
    return seconds if math.isfinite(seconds) and seconds > 0 else None


# ----------------------------------------------------------------------------- policies
#: A 429 body that announces a ban (a lock-out that retries would renew), not a short rate
#: limit: explicit ban or block wording, or a wait counted in minutes or hours.
_DEFAULT_BAN = (
    r"\bbann?(?:ed)?\b|\bblocked\b|\bblacklist|\blocked out\b"
    r"|(?:try again|retry|wait)\s+(?:in|after)\s+\d+\s*(?:min|minutes?|h|hours?)\b"
)


@dataclass
class RetryPolicy:
    """One retry policy for every request (``[client]`` keys of the same names).

    Parameters
    ----------
    max_attempts : int
        Attempts per request, the first included.
    backoff_base : float
        First wait [s]; then ``backoff_base * backoff_factor**(attempt-1)``.
    backoff_factor : float
    backoff_cap : float
        Cap on any single wait, ``Retry-After`` included [s].
    jitter : float
        Random extra wait, as a fraction of the computed wait (0 to turn off).
    retry_statuses : list of int
        Statuses worth retrying (429 and the transient 5xx).
    quota_match : str
        Regular expression: a 429 *without* Retry-After whose body matches means the daily (or
        monthly) quota is spent: :class:`QuotaExhaustedError` at once ("" never). The default
        matches daily/monthly quota wording only, never a per-second/minute rate limit.
    ban_match : str
        Regular expression: a 429 *without* Retry-After whose body matches is a ban that each
        retry would prolong: it stops like a spent quota (exit 4, the next run resumes). The
        default matches explicit ban/block wording and waits in minutes or hours; a provider
        whose ban answer is a bare "too many requests" sets ``ban_match = "too many requests"``
        ("" never).
    """

    max_attempts: int = 5
    backoff_base: float = 0.5
    backoff_factor: float = 2.0
    backoff_cap: float = 60.0
    jitter: float = 0.25
    retry_statuses: list[int] = field(default_factory=lambda: [429, 500, 502, 503, 504])
    quota_match: str = _DEFAULT_QUOTA
    ban_match: str = _DEFAULT_BAN

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ProfileError("client.max_attempts must be >= 1", key="client.max_attempts")
        if self.backoff_cap < 0 or self.backoff_base < 0:
            raise ProfileError("client backoff values must be >= 0", key="client.backoff_cap")
        self._quota = re.compile(self.quota_match, re.I) if self.quota_match else None
        try:
            self._ban = re.compile(self.ban_match, re.I) if self.ban_match else None
        except re.error as exc:
            raise ProfileError(
                f"bad client.ban_match regex: {exc}", key="client.ban_match"
            ) from exc

    def wait(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait before attempt ``attempt + 1`` [s]."""
        if retry_after is not None:
            return min(retry_after, self.backoff_cap)
        base = self.backoff_base * self.backoff_factor ** (attempt - 1)
        return min(self.backoff_cap, base * (1 + self.jitter * rng.random()))

    def is_quota(self, status: int, retry_after: str | None, body: str) -> bool:
        """A 429 without Retry-After whose body says the quota is spent or a ban is on."""
        if status != 429 or retry_after:
            return False
        return bool(
            (self._quota and self._quota.search(body)) or (self._ban and self._ban.search(body))
        )


def post_token_form(
    url: str,
    data: Mapping[str, str],
    *,
    basic: tuple[str, str] | None = None,
    session: requests.Session | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    retry: RetryPolicy | None = None,
    clock: Clock | None = None,
) -> dict[str, Any]:
    """POST a form to an OAuth2 token endpoint and return the JSON answer.

    Raises
    ------
    AuthError
        The endpoint refused (4xx; its ``error``/``error_description`` are quoted, redacted).
    ProviderUnavailableError
        5xx/429 after every attempt.
    TransportError
        The endpoint could not be reached.
    """
    retry = retry or RetryPolicy(max_attempts=3)
    clock = clock or SystemClock()
    rng = random.Random()
    own = session is None
    sess = session or requests.Session()
    try:
        for attempt in range(1, retry.max_attempts + 1):
            with translate_errors(url):
                resp = sess.post(
                    url,
                    data=dict(data),
                    auth=basic,
                    headers={"Accept": "application/json"},
                    timeout=timeout,
                    allow_redirects=False,
                )
            if resp.status_code in retry.retry_statuses and attempt < retry.max_attempts:
                wait = retry.wait(
                    attempt, retry_after(resp.headers.get("Retry-After"), clock.now()), rng
                )
                _log.info(
                    "POST %s -> %d; attempt %d of %d failed, retrying in %.1fs",
                    redact_url(url),
                    resp.status_code,
                    attempt,
                    retry.max_attempts,
                    wait,
                )
                clock.sleep(wait)
                continue
            break
    finally:
        if own:
            sess.close()
    if resp.status_code >= 500 or resp.status_code == 429:
        raise ProviderUnavailableError(
            f"token endpoint answered {resp.status_code}",
            status=resp.status_code,
            url=url,
            body=snippet(resp.text),
        )
    try:
        body = resp.json()
    except ValueError:
        body = {}
    if resp.status_code >= 300 or not isinstance(body, dict):
        detail = ""
        if isinstance(body, dict):
            detail = " ".join(str(body.get(k, "")) for k in ("error", "error_description")).strip()
        raise AuthError(
            f"token endpoint refused ({resp.status_code}): {snippet(detail or resp.text, 300)}",
            status=resp.status_code,
            url=url,
            hint="Check client id/secret (and client_auth: basic or body), scope and token_url.",
        )
    return body
