"""Secret handling: one registry of live secret values, masked everywhere text leaves the package.

Every credential read from the environment goes through :func:`secret_from_env`, which registers
its value. :func:`redact` replaces any registered value (and common secret query parameters) in a
string; exceptions, log records, recorded responses and reprs all pass through it. A
:class:`Secret` wraps a value so that ``repr``/``str`` never show it.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = [
    "SECRET_PARAM_NAMES",
    "Secret",
    "SecretFilter",
    "get_logger",
    "redact",
    "redact_url",
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


def register_secret(value: str | None) -> None:
    """Remember ``value`` so that :func:`redact` masks it from now on (values < 4 chars ignored)."""
    global _pattern
    if not value or len(value) < 4:
        return
    with _lock:
        if value in _values:
            return
        _values.add(value)
        ordered = sorted(_values, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(v) for v in ordered))


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
        query = urlencode([(k, MASK if k.lower() in names else v) for k, v in pairs], safe="*:,[]")
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


def get_logger(name: str) -> logging.Logger:
    """Return the logger ``name`` with the secret filter attached (use it in every module).

    Filters on a logger do not apply to its children, so each module's logger gets its own.
    """
    logger = logging.getLogger(name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger
