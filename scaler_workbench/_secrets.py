"""Secret handling: one registry of live secret values, masked everywhere text leaves the package.

Every credential read from the environment goes through :func:`secret_from_env`, which registers
its value. :func:`redact` replaces any registered value (and common secret query parameters) in a
string; exceptions, log records, recorded responses and reprs all pass through it. A
:class:`Secret` wraps a value so that ``repr``/``str`` never show it.

A value is masked in every encoding it travels in: raw, percent-encoded (``quote`` with and
without ``/`` safe, ``quote_plus``), JSON-escaped (``ensure_ascii`` on and off) and, for HTTP
Basic, the base64 of the ``user:password`` pair (:func:`register_basic_pair`). Log records of
*every* logger (urllib3 included) are masked by a log-record factory that :func:`get_logger`
installs once, so no handler can see a record before it is masked.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, urlencode, urlsplit, urlunsplit

__all__ = [
    "SECRET_PARAM_NAMES",
    "Secret",
    "SecretFilter",
    "get_logger",
    "install_log_redaction",
    "redact",
    "redact_bytes",
    "redact_url",
    "register_basic_pair",
    "register_secret",
    "secret_from_env",
]

MASK = "***"

#: Query/form parameter names treated as secret whatever their value (case-insensitive).
SECRET_PARAM_NAMES = frozenset(
    {
        "api_key",
        "apikey",
        "api-key",
        "key",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "client_secret",
        "password",
        "secret",
        "code",
        "signature",
        "sig",
        "auth",
        "authorization",
    }
)

_lock = threading.Lock()
_values: set[str] = set()
_pattern: re.Pattern[str] | None = None


def _encodings(value: str) -> set[str]:
    """``value`` as it may appear in URLs, forms, JSON text and log lines."""
    forms = {value, quote(value, safe=""), quote(value), quote_plus(value)}
    forms |= {json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
    forms |= {quote(f, safe="") for f in list(forms)}  # a percent-encoded value encoded again
    return {f for f in forms if len(f) >= 4}


def _add(forms: set[str]) -> None:
    global _pattern
    with _lock:
        new = forms - _values
        if not new:
            return
        _values.update(new)
        ordered = sorted(_values, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(v) for v in ordered))


def register_secret(value: str | None) -> None:
    """Remember ``value`` so that :func:`redact` masks it from now on (values < 4 chars ignored).

    Every encoding of the value (percent-encoded, JSON-escaped) is registered with it.
    """
    if not value or len(value) < 4:
        return
    _add(_encodings(value))


def register_basic_pair(user: str, password: str) -> str:
    """Register the base64 of an HTTP Basic ``user:password`` pair; return that base64 text.

    Parameters
    ----------
    user, password : str
        The pair as sent (either may be a secret; an empty password is allowed).

    Returns
    -------
    str
        The base64 token of the ``Authorization: Basic`` header.
    """
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    register_secret(token)
    register_secret(password)
    return token


def redact(text: str) -> str:
    """Return ``text`` with every registered secret value replaced by ``***``.

    Parameters
    ----------
    text : str
        Any text (a message, a body, a log line).

    Returns
    -------
    str
        ``text`` with each registered secret (longest first) masked as ``***``.

    Raises
    ------
    None
        Redaction never fails: the error paths rely on it.
    """
    pattern = _pattern
    if pattern is None or not text:
        return text
    return pattern.sub(MASK, text)


def redact_bytes(content: bytes) -> bytes:
    """Return ``content`` with every registered secret masked in the byte forms it may take.

    For bodies that are not UTF-8 text (a cp1252 export, a binary answer kept by a recording).

    Parameters
    ----------
    content : bytes
        Any bytes.

    Returns
    -------
    bytes
        ``content`` with each registered secret (every form :func:`register_secret` keeps)
        written in UTF-8, cp1252, Latin-1 or UTF-16 (LE/BE) replaced by ``***`` in ASCII.
    """
    with _lock:
        values = list(_values)
    if not values or not content:
        return content
    forms: set[bytes] = set()
    for value in values:
        for codec in ("utf-8", "cp1252", "latin-1", "utf-16-le", "utf-16-be"):
            try:
                forms.add(value.encode(codec))
            except UnicodeEncodeError:
                continue
    ordered = sorted(forms, key=len, reverse=True)
    pattern = re.compile(b"|".join(re.escape(f) for f in ordered))
    return pattern.sub(MASK.encode("ascii"), content)


def redact_url(url: str, extra_params: frozenset[str] | set[str] = frozenset()) -> str:
    """Mask userinfo and secret query parameters in ``url`` (and any registered secret).

    Parameters
    ----------
    url : str
        Any URL (or text that is not one).
    extra_params : set of str
        More query parameter names to mask (case-insensitive), beside
        :data:`SECRET_PARAM_NAMES`.

    Returns
    -------
    str
        The URL with ``user:password@`` and secret query values as ``***``.

    Raises
    ------
    None
        A value that does not parse as a URL is redacted as text.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rsplit('@', 1)[1]}"
    names = {n.lower() for n in extra_params} | SECRET_PARAM_NAMES
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        masked = [(k, MASK if k.lower() in names or redact(v) != v else v) for k, v in pairs]
        query = urlencode(masked, safe="*:,[]")
    return redact(urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment)))


class Secret:
    """A secret value that never shows itself in ``repr``, ``str`` or f-strings."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, *, source: str = "") -> None:
        self._value = value
        self.source = source
        register_secret(value)

    def get(self) -> str:
        """Return the real value: only for building the outgoing request."""
        return self._value

    def __repr__(self) -> str:
        src = f" from ${self.source}" if self.source else ""
        return f"Secret({MASK}{src})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


def secret_from_env(variable: str, *, key: str = "", required: bool = True) -> Secret | None:
    """Read a secret from environment variable ``variable`` and register it for redaction.

    Raises
    ------
    CredentialError
        If ``required`` and the variable is unset or empty; ``key`` names the profile key.
    """
    value = os.environ.get(variable, "")
    if not value:
        if not required:
            return None
        from scaler_workbench.exceptions import CredentialError

        raise CredentialError(
            f"environment variable {variable!r} (named by profile key {key or '?'!r}) is not set",
            variable=variable,
            key=key,
        )
    return Secret(value, source=variable)


class SecretFilter(logging.Filter):
    """A logging filter that masks registered secrets in every record it sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # pragma: no cover - malformed record: leave it to logging
            return True
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


_FILTER = SecretFilter()


class _RedactingFactory:
    """A log-record factory masking every record of every logger at creation (and tracebacks)."""

    def __init__(self, inner: Callable[..., logging.LogRecord]) -> None:
        self.inner = inner

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.inner(*args, **kwargs)
        if _pattern is None:
            return record
        _FILTER.filter(record)
        if record.exc_info and record.exc_info[0] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = redact(text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return record


def install_log_redaction() -> None:
    """Mask registered secrets in the records of every logger (idempotent)."""
    current = logging.getLogRecordFactory()
    if not isinstance(current, _RedactingFactory):
        logging.setLogRecordFactory(_RedactingFactory(current))


def get_logger(name: str) -> logging.Logger:
    """Return the logger ``name`` with the secret filter attached (use it in every module).

    Filters on a logger do not apply to its children, so each module's logger gets its own;
    the record factory of :func:`install_log_redaction` covers every other logger (urllib3).
    """
    install_log_redaction()
    logger = logging.getLogger(name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger
