"""Profile variables: values that vary per customer, named once in ``[variables]``.

::

    [variables]
    account_id = "100"                  # a value
    subscription_env = "ACME_SUB_ID"    # {subscription} comes from the environment

    [resources.bills]
    path = "/accounts/{account_id}/bills"
    params = { subscription = "{subscription}" }

``{name}`` is replaced in resource paths and params, ``[auth]`` URLs (``token_url``,
``authorize_url``) and environments' ``base_url``; every other ``{...}`` (a parent placeholder)
is left alone. ``--var NAME=VALUE`` on the CLI (``read_profile(..., variables=)``) overrides a
declared variable. Variables are for identifiers, not credentials: credentials go in ``[auth]``
(``*_env``), which keeps them out of URLs and logs.

A variable whose environment variable is unset stays unresolved; the profile still loads (a
notebook can look at it), and :meth:`Profile.require_variables` (called before the first
request) raises :class:`~scaler_workbench.exceptions.CredentialError` naming it.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping
from typing import Any

from scaler_workbench._profile_schema import did_you_mean
from scaler_workbench.exceptions import ProfileError

__all__ = ["apply_variables", "placeholders", "resolve_variables"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: [auth] keys whose value may hold {name}
_AUTH_URLS = ("token_url", "authorize_url", "redirect_uri")


def placeholders(text: Any) -> set[str]:
    """The ``{name}`` placeholders of a string (none for anything else)."""
    return set(_PLACEHOLDER.findall(text)) if isinstance(text, str) else set()


def resolve_variables(
    table: Any, overrides: Mapping[str, Any] | None = None, *, provider: str = ""
) -> tuple[dict[str, str], dict[str, str]]:
    """The values of ``[variables]``, and the environment variables of those still unset.

    Parameters
    ----------
    table : dict or None
        The ``[variables]`` section: ``name = "value"`` or ``name_env = "ENV_VAR"``.
    overrides : mapping, optional
        ``--var NAME=VALUE`` pairs; each must name a declared variable.
    provider : str
        For errors.

    Returns
    -------
    values : dict of str to str
        Resolved variables.
    missing : dict of str to str
        Variable -> environment variable that is unset (no override given either).

    Raises
    ------
    ProfileError
        A bad name, a value that is not text or a number, a name declared twice, or an override
        of an undeclared variable (with "did you mean").
    """
    table = table or {}
    if not isinstance(table, Mapping):
        raise ProfileError("[variables] must be a table", key="variables", provider=provider)
    values: dict[str, str] = {}
    env_of: dict[str, str] = {}
    for key, value in table.items():
        name = key[: -len("_env")] if key.endswith("_env") else key
        where = f"variables.{key}"
        if not _NAME.match(name):
            raise ProfileError(
                f"{where}: {name!r} is not a variable name (letters, digits, _)",
                key=where,
                provider=provider,
            )
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ProfileError(
                f"{where} must be text or a number, got {type(value).__name__}",
                key=where,
                provider=provider,
                hint='e.g. account_id = "100" or account_id_env = "ACME_ACCOUNT_ID"',
            )
        if name in values or name in env_of:
            raise ProfileError(
                f"variable {name!r} is declared twice ({name} and {name}_env)",
                key=where,
                provider=provider,
            )
        if key.endswith("_env"):
            env_of[name] = str(value)
        else:
            values[name] = str(value)
    for name, value in (overrides or {}).items():
        if name not in values and name not in env_of:
            raise ProfileError(
                f"--var {name}: the profile declares no variable {name!r}"
                f"{did_you_mean(name, [*values, *env_of])}",
                key=f"variables.{name}",
                provider=provider,
                hint=f"Declared: {', '.join(sorted([*values, *env_of])) or '(none)'}; add it "
                "under [variables].",
            )
        values[name] = str(value)
        env_of.pop(name, None)
    missing: dict[str, str] = {}
    for name, env in env_of.items():
        got = os.environ.get(env, "")
        if got:
            values[name] = got
        else:
            missing[name] = env
    return values, missing


def _fill(text: Any, values: Mapping[str, str]) -> Any:
    if not isinstance(text, str):
        return text
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def apply_variables(
    data: Mapping[str, Any], values: Mapping[str, str], *, provider: str = ""
) -> dict[str, Any]:
    """A copy of the parsed profile with ``{name}`` replaced where variables are allowed.

    Parameters
    ----------
    data : mapping
        The parsed profile TOML (not modified).
    values : mapping of str to str
        Resolved variables (:func:`resolve_variables`).
    provider : str
        For errors.

    Returns
    -------
    dict
        The profile data with variables filled in resource paths and params, ``[auth]`` URLs
        and environments' ``base_url``.

    Raises
    ------
    ProfileError
        A variable has the name of a resource's parent placeholder (the two would be confused).
    """
    out = copy.deepcopy(dict(data))
    declared = set(values) | set(data.get("variables") or {})
    declared = {k[:-4] if k.endswith("_env") else k for k in declared}
    for rname, res in (out.get("resources") or {}).items():
        if not isinstance(res, dict):
            continue
        clash = declared & set(res.get("parent_params") or {})
        if clash:
            name = sorted(clash)[0]
            raise ProfileError(
                f"resources.{rname}: {{{name}}} is both a variable and a parent placeholder",
                key=f"resources.{rname}.parent_params.{name}",
                provider=provider,
                hint="Rename the variable or the parent parameter.",
            )
        if "path" in res:
            res["path"] = _fill(res["path"], values)
        if isinstance(res.get("params"), dict):
            res["params"] = {k: _fill(v, values) for k, v in res["params"].items()}
    auth = out.get("auth")
    if isinstance(auth, dict):
        for key in _AUTH_URLS:
            if key in auth:
                auth[key] = _fill(auth[key], values)
    for env in (out.get("environments") or {}).values():
        if isinstance(env, dict) and "base_url" in env:
            env["base_url"] = _fill(env["base_url"], values)
    return out
