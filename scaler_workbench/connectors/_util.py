"""Small helpers shared by the connector modules (not public)."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from scaler_workbench._profile_schema import did_you_mean
from scaler_workbench._secrets import secret_from_env
from scaler_workbench.exceptions import ProfileError

__all__ = ["construct"]


def construct(cls: type[Any], options: dict[str, Any], key: str) -> Any:
    """Call ``cls(**options)``; unknown options raise ProfileError naming the accepted ones."""
    accepted = accepted_options(cls)
    unknown = [k for k in options if k not in accepted]
    if unknown:
        raise ProfileError(
            f"{cls.__name__} does not take option(s) {unknown}{did_you_mean(unknown[0], accepted)}",
            key=f"{key}.{unknown[0]}",
            hint=f"Accepted options: {', '.join(accepted)}.",
        )
    try:
        return cls(**options)
    except TypeError as exc:
        raise ProfileError(f"bad options for {cls.__name__}: {exc}", key=key) from exc


def accepted_options(cls: type[Any]) -> list[str]:
    """Keyword names ``cls(...)`` takes, following ``**kw`` up the MRO to the base classes."""
    names: list[str] = []
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters
        names += [
            p
            for p, v in params.items()
            if p != "self" and v.kind not in (v.VAR_KEYWORD, v.VAR_POSITIONAL) and p not in names
        ]
        if not any(v.kind is v.VAR_KEYWORD for v in params.values()):
            break
    return names


def secrets_from_env_table(names: Any, key: str) -> dict[str, str]:
    """Read a ``headers_env`` / ``params_env`` table (``name = "ENV_VAR"``) as secret values.

    Parameters
    ----------
    names : mapping
        Header or parameter name -> environment variable name.
    key : str
        The table's dotted profile key (for errors), e.g. ``client.headers_env``.

    Returns
    -------
    dict of str to str
        Name -> value; every value is registered for redaction (and stripped off-origin).

    Raises
    ------
    ProfileError
        ``names`` is not a table.
    CredentialError
        A named variable is unset.
    """
    if not names:
        return {}
    if not isinstance(names, Mapping):
        raise ProfileError(f'{key} must be a table of name = "ENV_VAR"', key=key)
    out = {}
    for name, variable in names.items():
        secret = secret_from_env(str(variable), key=f"{key}.{name}")
        out[str(name)] = secret.get() if secret is not None else ""
    return out
