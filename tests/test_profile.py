"""Provider profiles: load, validate, save; never a secret."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from scaler_workbench.exceptions import ProfileError
from scaler_workbench.profile import Profile, read_profile, to_profile_toml

ROOT = Path(__file__).resolve().parents[1]

MINIMAL = """
[provider]
name = "acme"
timezone = "Europe/London"

[environments.staging]
base_url = "https://staging.acme.example/api"

[environments.production]
base_url = "https://api.acme.example/api/"
base_url_env = "ACME_URL"

[auth]
type = "basic"
username_env = "ACME_USER"
password_env = "ACME_PASSWORD"

[resources.sites]
path = "/sites"
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "profile.toml"
    p.write_text(text, encoding="utf-8")
    return p


@pytest.mark.parametrize("provider", ["sandbox", "ecostruxure"])
def test_shipped_profiles_load(provider: str) -> None:
    path = ROOT / "mappings" / provider / "profile.toml"
    if not path.exists():
        pytest.skip(f"{provider} profile not shipped yet")
    profile = read_profile(path)
    assert profile.name == provider
    assert profile.resources


def test_minimal_profile_and_environments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACME_URL", raising=False)
    profile = read_profile(write(tmp_path, MINIMAL))
    assert profile.environment == "staging"  # the first one when none is named
    assert profile.base_url() == "https://staging.acme.example/api"
    assert profile.base_url("production") == "https://api.acme.example/api"
    monkeypatch.setenv("ACME_URL", "https://override.example/v2/")
    assert profile.base_url("production") == "https://override.example/v2"
    assert read_profile(profile.path, environment="production").environment == "production"
    assert "acme" in repr(profile) and "sites" in repr(profile)


def test_save_round_trip(tmp_path: Path) -> None:
    profile = read_profile(write(tmp_path, MINIMAL))
    out = profile.save(tmp_path / "copy" / "profile.toml")
    again = read_profile(out)
    assert again.to_dict() == profile.to_dict()


def test_resolve_path_is_relative_to_the_profile(tmp_path: Path) -> None:
    profile = read_profile(write(tmp_path, MINIMAL))
    assert profile.resolve_path("tokens/acme.json") == tmp_path.resolve() / "tokens/acme.json"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[environments.x]\nbase_url='https://a'\n", "provider.name"),
        ("[provider]\nname='a'\n", "environments"),
        ("[provider]\nname='a'\n[environments.x]\nbase_url='ftp://a'\n", "environments.x.base_url"),
        (
            "[provider]\nname='a'\ntimezone='Mars/Olympus'\n[environments.x]\nbase_url='https://a'\n",
            "provider.timezone",
        ),
        (
            "[provider]\nname='a'\nenvironment='prod'\n[environments.x]\nbase_url='https://a'\n",
            "provider.environment",
        ),
        ("[provider]\nname='a'\n[environments.x]\nbase_url='https://a'\n[bogus]\n", "bogus"),
        ("sync = 3\n[provider]\nname='a'\n[environments.x]\nbase_url='https://a'\n", "sync"),
        (
            "[provider]\nname='a'\n[environments.x]\nbase_url='https://a'\n[resources.s]\nparams={}\n",
            "resources.s.path",
        ),
    ],
)
def test_malformed_profiles_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ProfileError) as info:
        read_profile(write(tmp_path, text))
    assert info.value.key == key
    assert info.value.hint


def test_literal_secret_is_refused(tmp_path: Path) -> None:
    text = MINIMAL.replace('password_env = "ACME_PASSWORD"', 'password = "hunter2"')
    with pytest.raises(ProfileError) as info:
        read_profile(write(tmp_path, text))
    assert info.value.key == "auth.password"
    assert "password_env" in str(info.value)
    assert "hunter2" not in str(info.value)


def test_saving_refuses_a_literal_secret(tmp_path: Path) -> None:
    profile = read_profile(write(tmp_path, MINIMAL))
    profile.data["auth"]["client_secret"] = "abc"
    with pytest.raises(ProfileError):
        to_profile_toml(profile)


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="does not exist"):
        read_profile(tmp_path / "nope.toml")
    with pytest.raises(ProfileError, match="not valid TOML"):
        read_profile(write(tmp_path, "[provider\nname="))


def test_unknown_environment(tmp_path: Path) -> None:
    profile = read_profile(write(tmp_path, MINIMAL))
    with pytest.raises(ProfileError) as info:
        profile.env("qa")
    assert "staging" in info.value.hint


def test_section_returns_a_copy(tmp_path: Path) -> None:
    profile = read_profile(write(tmp_path, MINIMAL))
    auth = profile.section("auth")
    auth["type"] = "changed"
    assert profile.section("auth")["type"] == "basic"
    assert profile.section("missing") == {}
    assert isinstance(Profile.from_dict(profile.to_dict()), Profile)


LITERAL = "Lit3ral+S/cret=&%"


@pytest.mark.parametrize(
    ("edit", "key", "instead"),
    [
        (lambda d: d["auth"].update(key=LITERAL), "auth.key", "key_env"),
        (lambda d: d["auth"].update(api_secret=LITERAL), "auth.api_secret", "api_secret_env"),
        (lambda d: d["auth"].update(refresh_token=LITERAL), "auth.refresh_token", "_env"),
        (lambda d: d["auth"].update(pin=1234), "auth.pin", "pin_env"),
        (
            lambda d: d.setdefault("client", {}).update(headers={"Authorization": LITERAL}),
            "client.headers.Authorization",
            "headers_env",
        ),
        (
            lambda d: d.setdefault("client", {}).update(headers={"X-Api-Key": LITERAL}),
            "client.headers.X-Api-Key",
            "headers_env",
        ),
        (
            lambda d: d["resources"]["sites"].update(params={"access_token": LITERAL}),
            "resources.sites.params.access_token",
            "params_env",
        ),
        (
            lambda d: d["resources"]["sites"].update(params={"signature": LITERAL}),
            "resources.sites.params.signature",
            "params_env",
        ),
        (
            lambda d: d["resources"]["sites"].update(headers={"X-Session": LITERAL}),
            "resources.sites.headers.X-Session",
            "headers_env",
        ),
        (
            lambda d: d["auth"].update(token_params={"client_password": LITERAL}),
            "auth.token_params.client_password",
            "token_params_env",
        ),
    ],
)
def test_literal_secrets_are_refused_anywhere_without_printing_them(
    tmp_path: Path, edit: Any, key: str, instead: str
) -> None:
    data = read_profile(write(tmp_path, MINIMAL)).to_dict()
    data.setdefault("resources", {}).setdefault("sites", {"path": "/sites"})
    edit(data)
    with pytest.raises(ProfileError) as info:
        Profile.from_dict(data)
    assert info.value.key == key and instead in str(info.value)
    assert "Lit3ral" not in str(info.value) and "Lit3ral" not in repr(info.value)
    assert "1234" not in str(info.value)
    with pytest.raises(ProfileError):
        to_profile_toml(data)


def test_plain_auth_options_and_harmless_params_are_accepted(tmp_path: Path) -> None:
    data = read_profile(write(tmp_path, MINIMAL)).to_dict()
    data["auth"].update(username="analyst", client_id="cid", scope="read")
    data.setdefault("client", {})["headers"] = {"Accept-Language": "en", "X-Client": "workbench"}
    data.setdefault("client", {})["headers_env"] = {"X-Api-Key": "ACME_KEY"}
    data.setdefault("resources", {})["sites"] = {
        "path": "/sites",
        "params": {"page_size": 100, "order_by": "period", "author": "me"},
        "params_env": {"signature": "ACME_SIG"},
    }
    assert Profile.from_dict(data).section("client")["headers_env"] == {"X-Api-Key": "ACME_KEY"}


def test_every_shipped_profile_still_loads() -> None:
    shipped = sorted((Path(__file__).resolve().parents[1] / "mappings").glob("*/profile.toml"))
    assert len(shipped) >= 6
    for path in shipped:
        assert read_profile(path).name
