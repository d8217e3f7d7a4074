"""The connector registry: ``[provider] connector`` names a Connector class, by dotted name."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator

import pytest

from scaler_workbench.connectors import registry, resources
from scaler_workbench.connectors.ecostruxure import EcoStruxureConnector
from scaler_workbench.connectors.greenbutton import GreenButtonConnector
from scaler_workbench.exceptions import ProfileError
from scaler_workbench.profile import Profile


def _profile(connector: str | None) -> Profile:
    provider = {"name": "t", "timezone": "UTC"}
    if connector is not None:
        provider["connector"] = connector
    return Profile.from_dict(
        {"provider": provider, "environments": {"x": {"base_url": "http://127.0.0.1"}}}
    )


@pytest.fixture
def plugin() -> Iterator[types.ModuleType]:
    """A third-party module with two Connector subclasses and no CONNECTOR attribute."""
    module = types.ModuleType("thirdparty.connector")
    module.One = type("One", (resources.Connector,), {})  # type: ignore[attr-defined]
    module.Two = type("Two", (resources.Connector,), {})  # type: ignore[attr-defined]
    module.NotOne = int  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    yield module
    del sys.modules[module.__name__]


def test_resources_reexports_the_registry() -> None:
    assert resources.connector_for is registry.connector_for
    assert resources.connector_class is registry.connector_class


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (None, resources.Connector),
        ("", resources.Connector),
        ("greenbutton", GreenButtonConnector),
        ("ecostruxure", EcoStruxureConnector),
        ("scaler_workbench.connectors.greenbutton:GreenButtonConnector", GreenButtonConnector),
    ],
)
def test_names_resolve_to_connector_classes(name: str | None, expected: type) -> None:
    assert registry.connector_class(_profile(name)) is expected


def test_module_and_class_of_a_third_party_plugin(plugin: types.ModuleType) -> None:
    assert registry.connector_class(_profile("thirdparty.connector:Two")) is plugin.Two


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("no_such_connector", "cannot be imported"),
        ("thirdparty.connector", "does not name a Connector subclass"),  # two candidates
        ("thirdparty.connector:NotOne", "does not name a Connector subclass"),
        ("thirdparty.connector:Missing", "does not name a Connector subclass"),
    ],
)
def test_bad_names_are_profile_errors_naming_the_key(
    plugin: types.ModuleType, name: str, message: str
) -> None:
    with pytest.raises(ProfileError, match=message) as info:
        registry.connector_class(_profile(name))
    assert info.value.key == "provider.connector"
    assert name in str(info.value)
