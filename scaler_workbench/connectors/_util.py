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


def refuse_unknown_keys(spec: Mapping[str, Any], known: Any, where: str) -> None:
    """Raise ``ProfileError`` for the keys of ``spec`` that are not in ``known``.

    One check for the option tables a resource may carry (``csv``, ``graphql``, ``soap``):
    the message names every unknown key and the closest known one, the hint lists them all.
    """
    unknown = [k for k in spec if k not in known]
    if unknown:
        raise ProfileError(
            f"{where} has unknown key(s) {unknown}{did_you_mean(str(unknown[0]), known)}",
            key=f"{where}.{unknown[0]}",
            hint=f"Known keys: {', '.join(known)}.",
        )


def text_or_file(
    text: str, *, profile: Any, suffixes: tuple[str, ...], inline: str, key: str
) -> str:
    """``text`` itself, or the contents of the file it names next to the profile.

    ``text`` names a file when it ends with one of ``suffixes`` and holds no ``inline`` marker
    (``{`` for a GraphQL document, ``<`` for an XML envelope); the profile's ``resolve_path``
    finds it. A named file that does not exist is a ``ProfileError`` keyed ``key``.
    """
    name = text.strip()
    if not name.endswith(suffixes) or inline in name:
        return text
    resolve = getattr(profile, "resolve_path", None)
    path = resolve(name) if resolve is not None else None
    if path is None or not path.is_file():
        raise ProfileError(
            f"{key}: the file {name!r} does not exist" + (f" ({path})" if path is not None else ""),
            key=key,
            hint="Put the file next to profile.toml, or write its text inline.",
        )
    return str(path.read_text(encoding="utf-8"))
