"""The connector registry: which :class:`~scaler_workbench.connectors.resources.Connector` class
a profile's ``[provider] connector`` names.

A connector is a plugin looked up by name (``"ecostruxure"`` or ``"package.module:Class"``), so
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
from typing import Any

from scaler_workbench.exceptions import ProfileError

__all__ = ["DEFAULT_CONNECTOR", "connector_class", "connector_for"]

#: The declarative connector, used when ``[provider] connector`` is absent (``module:attr``).
DEFAULT_CONNECTOR = "scaler_workbench.connectors.resources:Connector"


def _base() -> type:
    """The :class:`Connector` base class (resolved by name: see the module docstring)."""
    module_name, _, attr = DEFAULT_CONNECTOR.partition(":")
    base: type = getattr(importlib.import_module(module_name), attr)
    return base


def connector_class(profile: Any) -> type[Any]:
    """The :class:`Connector` subclass named by ``[provider] connector`` (default: Connector).

    Parameters
    ----------
    profile : Profile
        The provider profile; ``[provider] connector`` is a module name under
        ``scaler_workbench.connectors`` (which sets ``CONNECTOR`` or defines one Connector
        subclass) or ``"package.module:Class"``.

    Returns
    -------
    type
        A subclass of :class:`~scaler_workbench.connectors.resources.Connector` (the base itself
        when the key is absent or empty).

    Raises
    ------
    ProfileError
        The module cannot be imported, or it names no Connector subclass
        (``key="provider.connector"``).
    """
    base = _base()
    name = str(profile.section("provider").get("connector", "") or "")
    if not name:
        return base
    module_name, _, attr = name.partition(":")
    if "." not in module_name:
        module_name = f"scaler_workbench.connectors.{module_name}"
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ProfileError(
            f"provider.connector {name!r} cannot be imported: {exc}", key="provider.connector"
        ) from exc
    found: Any = getattr(module, attr, None) if attr else getattr(module, "CONNECTOR", None)
    if found is None:
        subclasses = [
            v
            for v in vars(module).values()
            if isinstance(v, type) and issubclass(v, base) and v is not base
        ]
        found = subclasses[0] if len(subclasses) == 1 else None
    if not (isinstance(found, type) and issubclass(found, base)):
        raise ProfileError(
            f"provider.connector {name!r} does not name a Connector subclass",
            key="provider.connector",
            hint="Set CONNECTOR = MyConnector in the module, or write 'module:Class'.",
        )
    return found


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
