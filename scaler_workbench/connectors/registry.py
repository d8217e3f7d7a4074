"""The connector registry: which :class:`~scaler_workbench.connectors.resources.Connector` class
a profile's ``[provider] connector`` names.

A connector is a plugin looked up by name (``"connector.py:MyConnector"`` next to the profile,
``"ecostruxure"``, ``"package.module:Class"`` or an installed entry point), so
this module resolves every class, the default one included, by dotted name at call time and
imports no connector module itself. That keeps it below both
:mod:`~scaler_workbench.connectors.client` (whose notebook helper :meth:`Client.iter_pages`
needs a connector) and :mod:`~scaler_workbench.connectors.resources` (which defines the
:class:`Connector` base and re-exports these functions): the connectors' imports run one way.

Public functions
----------------
:func:`connector_class`   ``[provider] connector`` -> the Connector subclass
:func:`connector_for`     the same, built for a profile and a client
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from scaler_workbench._profile_schema import did_you_mean
from scaler_workbench.exceptions import ProfileError

__all__ = ["DEFAULT_CONNECTOR", "ENTRY_POINT_GROUP", "connector_class", "connector_for"]

#: Installed packages register connectors here (``name = "module:Class"``).
ENTRY_POINT_GROUP = "scaler_workbench.connectors"
#: Modules of the engine, not connectors (left out of "did you mean").
_ENGINE_MODULES = ("auth", "client", "dates", "paginate", "probe", "registry", "resources")

#: The declarative connector, used when ``[provider] connector`` is absent (``module:attr``).
DEFAULT_CONNECTOR = "scaler_workbench.connectors.resources:Connector"


def _base() -> type:
    """The :class:`Connector` base class (resolved by name: see the module docstring)."""
    module_name, _, attr = DEFAULT_CONNECTOR.partition(":")
    base: type = getattr(importlib.import_module(module_name), attr)
    return base


def connector_class(profile: Any) -> type[Any]:
    """The :class:`Connector` subclass named by ``[provider] connector`` (default: Connector).

    ``connector`` is looked up in this order:

    1. ``"connector.py:MyConnector"`` (or ``"connector.py"``): a Python file, relative to the
       profile's folder (``mappings/acme/connector.py`` beside ``profile.toml``);
    2. ``"package.module:Class"`` or ``"package.module"``: an importable module;
    3. ``"ecostruxure"``: a module shipped in ``scaler_workbench.connectors``;
    4. ``"acme"``: an entry point of an installed package in the group
       :data:`ENTRY_POINT_GROUP` (``[project.entry-points."scaler_workbench.connectors"]
       acme = "acme_connector:AcmeConnector"``).

    A module names its connector by ``CONNECTOR = MyConnector`` or by defining exactly one
    Connector subclass. No ``PYTHONPATH`` is needed for 1 and 4.

    Parameters
    ----------
    profile : Profile
        The provider profile (its ``path`` locates a connector file).

    Returns
    -------
    type
        A subclass of :class:`~scaler_workbench.connectors.resources.Connector` (the base itself
        when the key is absent or empty).

    Raises
    ------
    ProfileError
        The file or module cannot be found or imported, or it names no Connector subclass
        (``key="provider.connector"``; an unknown short name suggests the closest known one).
    """
    base = _base()
    name = str(profile.section("provider").get("connector", "") or "")
    if not name:
        return base
    target, _, attr = name.partition(":")
    if target.endswith(".py"):
        module = _module_from_file(profile, target, name)
    elif "." in target:
        module = _import(target, name)
    elif importlib.util.find_spec(f"scaler_workbench.connectors.{target}") is not None:
        module = _import(f"scaler_workbench.connectors.{target}", name)
    else:
        point = _entry_point(target, name)
        return _check(getattr(point, attr, None) if attr else point, base, name)
    found: Any = getattr(module, attr, None) if attr else getattr(module, "CONNECTOR", None)
    if found is None and not attr:
        subclasses = [
            v
            for v in vars(module).values()
            if isinstance(v, type) and issubclass(v, base) and v is not base
        ]
        found = subclasses[0] if len(subclasses) == 1 else None
    return _check(found, base, name)


def _check(found: Any, base: type, name: str) -> type[Any]:
    if isinstance(found, ModuleType):
        module = found
        found = getattr(module, "CONNECTOR", None)
    if not (isinstance(found, type) and issubclass(found, base)):
        raise ProfileError(
            f"provider.connector {name!r} does not name a Connector subclass",
            key="provider.connector",
            hint="Set CONNECTOR = MyConnector in the module, or write 'module:Class'.",
        )
    return found


def _import(module_name: str, name: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise ProfileError(
            f"provider.connector {name!r} cannot be imported: {exc}",
            key="provider.connector",
            hint="A file next to profile.toml is written 'connector.py:MyConnector'; an "
            "installed package registers an entry point (docs/connectors.md).",
        ) from exc


def _module_from_file(profile: Any, file: str, name: str) -> ModuleType:
    """Import a connector file from the profile's folder (cached by its resolved path)."""
    resolve = getattr(profile, "resolve_path", None)
    path = Path(resolve(file) if resolve is not None else file).resolve()
    if not path.is_file():
        raise ProfileError(
            f"provider.connector {name!r}: no file {str(path)!r}",
            key="provider.connector",
            hint="The file is looked for next to profile.toml (a relative path starts there).",
        )
    module_name = f"_scaler_workbench_profile_connector_{_hash(str(path))}"
    stamp = path.stat().st_mtime_ns
    cached = sys.modules.get(module_name)
    if cached is not None and getattr(cached, "__connector_mtime__", None) == stamp:
        return cached
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:  # pragma: no cover - a .py file always has one
        raise ProfileError(
            f"provider.connector {name!r} cannot be loaded", key="provider.connector"
        )
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look the module up
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise ProfileError(
            f"provider.connector {name!r}: {path.name} failed to import: "
            f"{type(exc).__name__}: {exc}",
            key="provider.connector",
        ) from exc
    module.__connector_mtime__ = stamp  # type: ignore[attr-defined]
    return module


def _hash(text: str) -> str:
    import hashlib

    return hashlib.sha1(text.encode("utf-8"), usedforsecurity=False).hexdigest()[:12]


def _entry_point(target: str, name: str) -> Any:
    """The object an installed package registers as ``target`` in :data:`ENTRY_POINT_GROUP`."""
    from importlib.metadata import entry_points

    points = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    if target not in points:
        shipped = [
            m.name
            for m in pkgutil.iter_modules([str(Path(__file__).parent)])
            if not m.name.startswith("_") and m.name not in _ENGINE_MODULES
        ]
        known = sorted({*shipped, *points})
        raise ProfileError(
            f"provider.connector {name!r} cannot be imported: it is neither a shipped "
            f"connector module nor an installed entry point{did_you_mean(target, known)}",
            key="provider.connector",
            hint=f"Known: {', '.join(known)}; or 'connector.py:MyConnector' next to profile.toml.",
        )
    try:
        return points[target].load()
    except Exception as exc:
        raise ProfileError(
            f"provider.connector {name!r}: entry point {points[target].value!r} failed to "
            f"load: {type(exc).__name__}: {exc}",
            key="provider.connector",
        ) from exc


def connector_for(profile: Any, *, client: Any = None, clock: Any = None) -> Any:
    """The :class:`Connector` for a profile: ``[provider] connector`` names a subclass.

    ``connector = "ecostruxure"`` loads ``scaler_workbench.connectors.ecostruxure`` and uses its
    ``CONNECTOR`` attribute (or its only Connector subclass); ``"package.module:Class"`` names
    any class. Absent: the declarative :class:`Connector`.

    Parameters
    ----------
    profile : Profile
        The provider profile.
    client : Client, optional
        The client the connector sends through (default: a new one for the profile).
    clock : Clock, optional
        For a new client: backoff, budget and token expiry (tests pass ``FakeClock``).

    Returns
    -------
    Connector
        An instance of :func:`connector_class` ``(profile)``.

    Raises
    ------
    ProfileError
        As :func:`connector_class`.
    """
    return connector_class(profile)(profile, client=client, clock=clock)
