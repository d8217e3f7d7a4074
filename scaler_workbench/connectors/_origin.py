"""Origins: where credentials may travel (scheme, host and port, as browsers compare them).

The client sends credentials only to the *API origins*: the environment's base URL, the OAuth2
token URL and ``environments.<env>.allowed_hosts``. An ``allowed_hosts`` entry is a host name
(``files.acme.example``: the base URL's scheme, that scheme's default port), a host and port
(``files.acme.example:8443``) or a full origin (``https://files.acme.example:8443``).

A request to any other origin (a next link or a redirect elsewhere, the same host on another
port included) is stripped of every credential by :func:`strip_credentials`: the
``Authorization``, ``Proxy-Authorization`` and ``Cookie`` headers, every header whose value holds
a registered secret (custom API-key and bearer headers, ``headers_env``), and every query
parameter whose value holds a registered secret or whose name is the auth's query parameter.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from typing import NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from scaler_workbench._secrets import redact
from scaler_workbench.exceptions import ProfileError

__all__ = ["Origin", "allowed_origins", "origin_of", "strip_credentials"]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_ALWAYS_STRIPPED = ("authorization", "proxy-authorization", "cookie")


class Origin(NamedTuple):
    """``scheme://host:port`` with the port always explicit (80/443 filled in)."""

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def origin_of(url: str) -> Origin | None:
    """The origin of an absolute http(s) URL, or None when it has none (or a bad port)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower().rstrip(".")
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    return Origin(scheme, host, port if port is not None else _DEFAULT_PORTS[scheme])


def _entry_origin(entry: str, scheme: str, key: str, *, url: bool = False) -> Origin:
    text = entry.strip()
    found = origin_of(text if "://" in text else f"{scheme}://{text}")
    if found is None or (not url and urlsplit(text).path not in ("", "/") and "://" in text):
        raise ProfileError(
            f"{key} entry {entry!r} is not a host, host:port or scheme://host[:port]",
            key=key,
            hint="Example: allowed_hosts = ['files.acme.example', 'files.acme.example:8443'].",
        )
    return found


def allowed_origins(
    base_url: str, extra_urls: Iterable[str] = (), allowed_hosts: Iterable[str] = ()
) -> frozenset[Origin]:
    """The API origins: the base URL's, each of ``extra_urls`` (token URLs) and ``allowed_hosts``.

    Parameters
    ----------
    base_url : str
        The environment's base URL; its scheme is the default of bare ``allowed_hosts`` entries.
    extra_urls : iterable of str
        Further URLs (or host names) whose origins are API origins (the OAuth2 token URL).
    allowed_hosts : iterable of str
        Profile entries: ``host``, ``host:port`` or ``scheme://host[:port]``.

    Returns
    -------
    frozenset of Origin

    Raises
    ------
    ProfileError
        An ``allowed_hosts`` entry that is not a host, host:port or origin.
    """
    found: set[Origin] = set()
    base = origin_of(base_url)
    if base is not None:
        found.add(base)
    scheme = base.scheme if base is not None else "https"
    for url in extra_urls:
        if url:
            found.add(_entry_origin(str(url), scheme, "auth.token_url", url=True))
    for entry in allowed_hosts:
        found.add(_entry_origin(str(entry), scheme, "environments.allowed_hosts"))
    return frozenset(found)


def strip_credentials(
    url: str, headers: MutableMapping[str, str], *, query_names: Iterable[str] = ()
) -> str:
    """Remove every credential from an off-origin request; return its URL without them.

    ``headers`` (a mutable mapping, edited in place) loses ``Authorization``,
    ``Proxy-Authorization``, ``Cookie`` and every header whose value holds a registered secret;
    the URL loses query parameters named in ``query_names`` or holding a registered secret.
    """
    for name in list(headers):
        value = str(headers[name])
        if name.lower() in _ALWAYS_STRIPPED or redact(value) != value:
            del headers[name]
    parts = urlsplit(url)
    if not parts.query:
        return url
    names = {n.lower() for n in query_names}
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    kept = [(k, v) for k, v in pairs if k.lower() not in names and redact(v) == v]
    if len(kept) == len(pairs):
        return url
    return urlunsplit(parts._replace(query=urlencode(kept)))
