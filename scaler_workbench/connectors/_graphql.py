"""GraphQL resources: the ``[resources.X.graphql]`` table and ``errors`` in 2xx answers.

A GraphQL resource POSTs ``{"query": document, "variables": {...}}`` to its ``path`` (default:
the base URL)::

    [resources.consumption.graphql]
    query = "consumption.graphql"      # a file next to profile.toml, or the document inline
    variables = { homeId = "{parent.home}", resolution = "HOURLY", first = 100 }

``variables`` is a body template (:mod:`._templates`); the records are selected from the answer
by ``record_path`` (``data.viewer.home.consumption.nodes`` or ``...edges[*].node``) and a
``relay`` paginator follows ``pageInfo`` (:class:`~.paginate.RelayPaginator`).

GraphQL servers answer errors with HTTP 200 and an ``errors`` array. Any ``errors`` entry in a
2xx answer raises (:func:`raise_for_graphql_errors`):

- an ``UNAUTHENTICATED``-like code (``extensions.code``) or message -> :class:`AuthError`
  (exit 3);
- rate limiting (``RATE_LIMITED``/``THROTTLED``, "too many requests", "rate limit") ->
  :class:`GraphQLRateLimited`, retried with backoff by the connector, or a
  :class:`QuotaExhaustedError` when it matches the quota or ban pattern;
- anything else -> :class:`RequestRejectedError` naming the message and its ``path``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from scaler_workbench._profile_schema import GRAPHQL_KEYS
from scaler_workbench.connectors._util import refuse_unknown_keys, text_or_file
from scaler_workbench.exceptions import (
    AuthError,
    ProfileError,
    ProviderUnavailableError,
    RequestRejectedError,
)

__all__ = [
    "GRAPHQL_KEYS",
    "GraphQLRateLimited",
    "check_graphql_table",
    "raise_for_graphql_errors",
]


_AUTH_CODES = re.compile(
    r"unauthenticated|unauthori[sz]ed|forbidden|invalid[_ ]?token|token[_ ]?expired"
    r"|auth(?:entication|orization)?[_ ]?(?:error|failed|required)",
    re.I,
)
_AUTH_MESSAGE = re.compile(
    r"unauthenticated|unauthori[sz]ed|not authenticated|not authori[sz]ed|invalid (?:access )?"
    r"token|token (?:is )?(?:invalid|expired)|authentication (?:failed|required)|forbidden"
    r"|context\.valid.*token",
    re.I,
)
_RATE = re.compile(r"rate[_ -]?limit|throttl|too[_ ]many[_ ]requests|quota|request budget", re.I)


class GraphQLRateLimited(ProviderUnavailableError):
    """A GraphQL ``errors`` entry saying "slow down" (the connector retries it)."""


def check_graphql_table(
    table: Mapping[str, Any], *, profile: Any, key: str
) -> dict[str, Any] | None:
    """The validated ``graphql`` table of a resource (the query document read), or None.

    Parameters
    ----------
    table : mapping
        The resource table.
    profile : Profile or None
        Resolves a ``.graphql`` file relative to the profile's folder.
    key : str
        ``resources.<name>``, for errors.

    Returns
    -------
    dict or None
        ``{"query": document, "variables": template}``.

    Raises
    ------
    ProfileError
        Not a table, unknown keys, no query, or a ``.graphql`` file that does not exist.
    """
    spec = table.get("graphql")
    if spec is None:
        return None
    where = f"{key}.graphql"
    if not isinstance(spec, Mapping):
        raise ProfileError(f"{where} must be a table with query (and variables)", key=where)
    refuse_unknown_keys(spec, GRAPHQL_KEYS, where)
    query = spec.get("query")
    if not isinstance(query, str) or not query.strip():
        raise ProfileError(
            f"{where}.query must be a GraphQL document or the name of a .graphql file",
            key=f"{where}.query",
            hint='e.g. query = "consumption.graphql" (next to profile.toml)',
        )
    query = text_or_file(
        query, profile=profile, suffixes=(".graphql", ".gql"), inline="{", key=f"{where}.query"
    )
    variables = spec.get("variables", {})
    if not isinstance(variables, Mapping):
        raise ProfileError(
            f"{where}.variables must be a table",
            key=f"{where}.variables",
            hint='e.g. variables = { homeId = "{parent.home}", first = 100 }',
        )
    return {"query": query, "variables": dict(variables)}


def _code(error: Mapping[str, Any]) -> str:
    ext = error.get("extensions")
    parts = [error.get("code"), error.get("type")]
    if isinstance(ext, Mapping):
        parts += [ext.get("code"), ext.get("classification"), ext.get("type")]
    return " ".join(str(p) for p in parts if p)


def raise_for_graphql_errors(body: Any, *, url: str = "", provider: str = "") -> None:
    """Raise the matching error when a GraphQL answer carries ``errors``.

    Parameters
    ----------
    body : any
        The decoded answer.
    url : str
        For the error (redacted when shown).
    provider : str

    Raises
    ------
    AuthError
        An unauthenticated / unauthorised code or message (exit 3).
    GraphQLRateLimited
        Rate limiting (retried by the caller; a quota or ban stops the run).
    RequestRejectedError
        Any other error: its message and ``path``.
    """
    if not isinstance(body, Mapping):
        return
    errors = body.get("errors")
    if not errors:
        return
    items = [e for e in errors if isinstance(e, Mapping)] if isinstance(errors, list) else []
    if not items:
        items = [{"message": str(errors)}]
    texts = []
    for e in items:
        path = e.get("path")
        where = f" at {'.'.join(str(p) for p in path)}" if isinstance(path, list) and path else ""
        code = _code(e)
        texts.append(f"{e.get('message', '(no message)')}{where}{f' [{code}]' if code else ''}")
    message = "GraphQL error: " + "; ".join(texts)
    ctx: dict[str, Any] = {"provider": provider, "url": url, "status": 200}
    for e in items:
        code, text = _code(e), str(e.get("message", ""))
        if _AUTH_CODES.search(code) or _AUTH_MESSAGE.search(text):
            raise AuthError(
                message,
                hint="Check the token (and its scopes) in the environment variable the profile "
                "names under [auth].",
                **ctx,
            )
    for e in items:
        if _RATE.search(_code(e)) or _RATE.search(str(e.get("message", ""))):
            raise GraphQLRateLimited(message, **ctx)
    raise RequestRejectedError(
        message,
        hint="The provider refused the query: check the document and its variables.",
        **ctx,
    )
