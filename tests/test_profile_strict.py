"""Strict profiles (issue 15 item 9): unknown keys and enumerated values are refused when the
profile is read, with "did you mean"; the load-time schema agrees with each section's owner;
every shipped profile loads under it."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from scaler_workbench import _profile_schema as schema
from scaler_workbench.connectors import AUTHS, PAGINATORS
from scaler_workbench.connectors._util import accepted_options
from scaler_workbench.connectors.dates import DateRange
from scaler_workbench.connectors.resources import RESOURCE_KEYS
from scaler_workbench.exceptions import ProfileError
from scaler_workbench.profile import Profile, read_profile
from scaler_workbench.reconciliation import RECONCILE_KEYS
from scaler_workbench.usage import POLICY_DEFAULTS

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "mappings").glob("*/profile.toml"))

BASE: dict[str, Any] = {
    "provider": {"name": "acme", "timezone": "Europe/London"},
    "environments": {"prod": {"base_url": "https://api.acme.example"}},
    "auth": {"type": "api_key", "key_env": "ACME_KEY"},
    "client": {"timeout": 10, "budget": {"requests_per_minute": 60}},
    "paginator": {"type": "offset", "limit": 100},
    "resources": {
        "sites": {"path": "/sites", "record_path": "data"},
        "reads": {
            "path": "/sites/{site_id}/reads",
            "parent": "sites",
            "parent_params": {"site_id": "id"},
            "date_range": {"format": "date", "chunk": "month", "too_large": {"status": 403}},
            "incremental": {"cursor_path": "start", "lookback_days": 2},
        },
    },
    "mapping": {
        "assets": {"resource": "sites", "fields": {"asset_id": "id"}},
        "meters": {"resource": "sites", "fields": {"meter_id": {"path": "id"}}},
        "usage": {
            "reads": {
                "resource": "reads",
                "kind": "intervals",
                "aggregate": "month",
                "fields": {"meter_id": "_parent.site_id", "start": "start", "consumption": "v"},
            }
        },
        "policy": {"duplicates": "latest", "overlaps": "flag"},
    },
    "units": {"aliases": {"therms": "therm"}, "heating_value": {"preset": "uk"}},
    "sync": {"lookback_days": 2, "max_deactivation_fraction": 0.2},
    "reconcile": {
        "totals": {
            "resource": "sites",
            "fields": {"meter_id": "id", "month": "m", "total": "t", "unit": "u"},
        }
    },
}


def _with(path: str, value: Any) -> dict[str, Any]:
    """BASE with ``value`` set at dotted ``path`` (tables created on the way)."""
    data = copy.deepcopy(BASE)
    node = data
    *parents, last = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return data


def test_the_base_profile_loads() -> None:
    profile = Profile.from_dict(copy.deepcopy(BASE))
    assert profile.name == "acme" and set(profile.resources) == {"sites", "reads"}


@pytest.mark.parametrize(
    ("path", "suggestion"),
    [
        ("provider.timezon", "timezone"),
        ("environments.prod.base_url_evn", "base_url_env"),
        ("auth.key_evn", "key_env"),
        ("client.max_attemps", "max_attempts"),
        ("client.budget.requests_per_minut", "requests_per_minute"),
        ("paginator.limt", "limit"),
        ("resources.sites.record_pth", "record_path"),
        ("resources.reads.date_range.chunck", "chunk"),
        ("resources.reads.date_range.too_large.mach", "match"),
        ("resources.reads.incremental.cursor_pth", "cursor_path"),
        ("mapping.assets.feilds", "fields"),
        ("mapping.meters.fields.meter_id.pth", "path"),
        ("mapping.usage.reads.aggreate", "aggregate"),
        ("mapping.policy.overlap", "overlaps"),
        ("units.heating_vlue", "heating_value"),
        ("sync.max_deactivation_fractoin", "max_deactivation_fraction"),
        ("reconcile.totals.tolerence", "tolerance"),
        ("reconcile.totals.fields.totl", "total"),
    ],
)
def test_an_unknown_key_in_any_section_is_refused_with_did_you_mean(
    path: str, suggestion: str
) -> None:
    with pytest.raises(ProfileError) as err:
        Profile.from_dict(_with(path, "x"))
    assert err.value.context["key"] == path
    assert f"did you mean {suggestion!r}" in err.value.message
    assert "Known keys" in err.value.hint and suggestion in err.value.hint


def test_a_lone_usage_source_table_is_checked_too() -> None:
    data = _with("mapping.usage", {"resource": "reads", "kind": "intervals", "agregate": "day"})
    with pytest.raises(ProfileError, match="did you mean 'aggregate'") as err:
        Profile.from_dict(data)
    assert err.value.context["key"] == "mapping.usage.agregate"


@pytest.mark.parametrize(
    ("path", "value", "suggestion"),
    [
        ("mapping.usage.reads.kind", "interval", "intervals"),
        ("mapping.usage.reads.aggregate", "monthly", "month"),
        ("mapping.usage.reads.prorate", "dya", "day"),
        ("mapping.usage.reads.end_inclusive", "yes", None),
        ("mapping.usage.reads.nonexistent", "shift_forwards", "shift_forward"),
        ("mapping.policy.overlaps", "later_win", "later_wins"),
        ("mapping.policy.duplicates", "lastest", "latest"),
        ("resources.sites.format", "jsn", "json"),
        ("resources.sites.on_error", "skipp", "skip"),
        ("resources.reads.date_range.format", "datetme", "datetime"),
        ("client.offsite", "stripp", "strip"),
        ("auth.location", "headr", "header"),
        ("auth.type", "oauth2_client_credential", "oauth2_client_credentials"),
        ("paginator.type", "ofset", "offset"),
        ("resources.sites.paginator", "link_headr", "link_header"),
    ],
)
def test_an_enumerated_value_is_checked_with_did_you_mean(
    path: str, value: Any, suggestion: str | None
) -> None:
    with pytest.raises(ProfileError) as err:
        Profile.from_dict(_with(path, value))
    where = path + ".type" if path.endswith("paginator") and "resources" in path else path
    assert err.value.context["key"] == where
    assert repr(value) in err.value.message
    if suggestion:
        assert f"did you mean {suggestion!r}" in err.value.message


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("mapping.usage.reads.aggregate", "Month"),  # read case-insensitively by usage.py
        ("mapping.usage.reads.end_inclusive", "auto"),
        ("mapping.usage.reads.end_inclusive", True),
        ("resources.reads.date_range.format", "%d/%m/%Y"),  # a strftime pattern
        ("resources.sites.method", "post"),
        ("mapping.policy.overlaps", "later_wins"),
    ],
)
def test_allowed_values_pass(path: str, value: Any) -> None:
    assert Profile.from_dict(_with(path, value)).name == "acme"


def test_registered_types_are_left_to_their_class() -> None:
    """A type far from every builtin one may be registered at run time: not refused here."""
    data = _with("paginator", {"type": "acme_tokens", "token_field": "t"})
    assert Profile.from_dict(data).section("paginator")["type"] == "acme_tokens"


def test_keys_of_issue_14_are_known_in_auth() -> None:
    data = _with("auth", {"type": "api_key", "headers_env": "H", "params_env": "P"})
    assert Profile.from_dict(data).section("auth")["headers_env"] == "H"


def test_a_typo_is_refused_before_any_request(serve: Any, tmp_path: Path) -> None:
    from _fakes import Reply

    server = serve(lambda req: Reply(200, {"data": []}))
    text = (
        '[provider]\nname = "acme"\ntimezon = "UTC"\n'
        f'[environments.test]\nbase_url = "{server.url}"\n'
        '[resources.sites]\npath = "/sites"\n'
    )
    (tmp_path / "profile.toml").write_text(text, encoding="utf-8")
    with pytest.raises(ProfileError, match="did you mean 'timezone'"):
        read_profile(tmp_path / "profile.toml")
    assert server.requests == []


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.parent.name)
def test_every_shipped_profile_loads_under_strict_checking(path: Path) -> None:
    profile = read_profile(path)
    assert profile.name and profile.resources


# -- the load-time schema agrees with the owners -----------------------------------------------
def _names(node: Any) -> set[str]:
    return set(node) - {"*"}


def test_resource_keys_agree_with_connectors_resources() -> None:
    assert _names(schema.SCHEMA["resources"]["*"]) == set(RESOURCE_KEYS)


def test_source_options_agree_with_transform() -> None:
    from scaler_workbench.transform import _SOURCE_TABLE_OPTIONS

    assert _names(schema._SOURCE_TABLE) == set(_SOURCE_TABLE_OPTIONS) | {"policy"}


def test_field_spec_options_agree_with_transform() -> None:
    from scaler_workbench.transform import _SPEC_OPTIONS

    assert _names(schema._FIELD_SPEC) == set(_SPEC_OPTIONS)


def test_policy_and_reconcile_keys_agree_with_their_owners() -> None:
    from scaler_workbench.reconciliation import _FIELD_KEYS

    assert _names(schema._POLICY) == set(POLICY_DEFAULTS)
    assert _names(schema.SCHEMA["reconcile"]["*"]) == set(RECONCILE_KEYS)
    assert _names(schema.SCHEMA["reconcile"]["*"]["fields"]) == set(_FIELD_KEYS)


def test_auth_and_paginator_keys_cover_every_builtin_class() -> None:
    auth_options = {o for cls in AUTHS.values() for o in accepted_options(cls)}
    assert auth_options <= _names(schema._AUTH)
    assert {f"{o}_env" for o in auth_options} <= _names(schema._AUTH)
    pag_options = {o for cls in PAGINATORS.values() for o in accepted_options(cls)}
    assert _names(schema._PAGINATOR) == pag_options | {"type"}
    assert set(AUTHS) <= set(schema.AUTH_TYPES)
    assert set(PAGINATORS) <= set(schema.PAGINATOR_TYPES)


def test_date_range_keys_agree_with_date_range() -> None:
    fields = {f.name for f in dataclasses.fields(DateRange)}
    assert _names(schema._DATE_RANGE) == fields | {"too_large"}


def test_construct_suggests_the_closest_option() -> None:
    from scaler_workbench.connectors import make_paginator

    with pytest.raises(ProfileError, match="did you mean 'limit'"):
        make_paginator({"type": "offset", "limt": 5})
    with pytest.raises(ProfileError, match="did you mean 'cursor'"):
        make_paginator({"type": "cursr"})


def test_validation_rules_and_settings_are_checked_at_load() -> None:
    with pytest.raises(ProfileError, match="did you mean 'billing_period_days'") as err:
        Profile.from_dict(_with("validation.rules.billing_period_day", {"max": 40}))
    assert err.value.context["key"] == "validation.rules.billing_period_day"
    with pytest.raises(ProfileError, match="did you mean 'severity'"):
        Profile.from_dict(_with("validation.rules.billing_period_days", {"severty": "error"}))
    with pytest.raises(ProfileError, match="did you mean 'rules'"):
        Profile.from_dict(_with("validation.rule", {}))


def test_revision_beside_fields_is_refused_and_pointed_to_fields() -> None:
    """``revision`` is a record field (``[mapping.usage.X.fields] revision = ...``); written
    beside ``fields`` it used to load and be ignored (a restated bill then lost to chance)."""
    from scaler_workbench.exceptions import ProfileError

    data = {
        "mapping": {"usage": {"bills": {"resource": "bills", "revision": "version", "fields": {}}}}
    }
    with pytest.raises(ProfileError) as err:
        schema.check_profile_keys(data, provider="p")
    assert err.value.key == "mapping.usage.bills.revision"
    assert "[mapping.usage.bills.fields]" in str(err.value.hint)
