"""Provider profiles: one TOML file per provider, never holding a secret.

A profile says where the provider lives (base URL per environment), how to authenticate (with the
*names* of environment variables that hold secrets), which resources to fetch and how to page
them, how to map records to Scaler's tables, which unit choices apply, and how to validate and
sync. Each section is owned and validated in depth by the module that uses it; this module checks
the shape, refuses literal secrets, and resolves environments.

Sections
--------
``[provider]``        name, description, timezone (default site zone), environment (default)
``[environments.X]``  base_url (http(s); file:// for a connector that reads files), base_url_env
                      (override from env), builtin_sandbox, allowed_hosts, authorize_url and
                      token_url (replace ``[auth]``'s in that environment)
``[auth]``            connectors.auth (``*_env`` keys name environment variables)
``[client]``          connectors.client: timeout, retries, budget, quota detection
``[paginator]``       connectors.paginate: the default paginator of every resource
``[resources.X]``     connectors: path, params, record_path, primary_key, parent, date_range, ...
``[mapping.X]``       transform: per table (assets, meters, usage, readings) resource + fields
``[units]``           units: aliases and per-provider choices (therm flavour, heating value)
``[validation]``      validation: severities and thresholds overrides; ``missing_values``
                      (``"no_data"``, the default, or ``"error"``: what a null value is)
``[sync]``            sync/store: state path, look-back, deactivation guard
``[reconcile.X]``     sync/export: provider-reported totals to compare exported totals with
``[extensions.X]``    provider modules' own options (e.g. ``[extensions.ecostruxure]``)
``[variables]``       per-customer values used as ``{name}`` (see :mod:`scaler_workbench._variables`)
``[notify]``          notify: webhook for partial/failed runs (``url_env``, ``on``, ``timeout``)

Every key of every section is checked when the profile is read (unknown keys and enumerated
values, with "did you mean": :mod:`scaler_workbench._profile_schema`), before any request.

Every key is listed in docs/profiles.md.
"""

from __future__ import annotations

import copy
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scaler_workbench._profile_schema import (
    SCHEMA,
    check_profile_keys,
    check_profile_values,
    did_you_mean,
)
from scaler_workbench._variables import apply_variables, placeholders, resolve_variables
from scaler_workbench.exceptions import CredentialError, ProfileError

__all__ = [
    "AUTH_PLAIN_OPTIONS",
    "KNOWN_SECTIONS",
    "MISSING_VALUES",
    "Environment",
    "Profile",
    "looks_like_credential",
    "missing_value_policy",
    "read_profile",
    "to_profile_toml",
]

KNOWN_SECTIONS = (
    "provider",
    "environments",
    "auth",
    "client",
    "paginator",
    "resources",
    "mapping",
    "units",
    "validation",
    "sync",
    "reconcile",
    "extensions",
    "variables",
    "notify",
)

#: What a record's missing (null) value may be (``[validation] missing_values``; first = default):
#: ``no_data`` keeps the record as delivered without data (counted per meter and local day,
#: never an error row per value); ``error`` sets each such record aside.
MISSING_VALUES: tuple[str, ...] = ("no_data", "error")

#: Key names that look like literal secrets. A profile may only name environment variables
#: (``*_env``) or files (``*_file``) for these.
_SECRET_KEYS = frozenset(
    {
        "password",
        "secret",
        "client_secret",
        "token",
        "access_token",
        "refresh_token",
        "api_key",
        "apikey",
        "key_value",
        "value",
    }
)


#: ``[environments.X]`` keys that replace the same ``[auth]`` key in that environment.
ENVIRONMENT_AUTH_URLS = ("authorize_url", "token_url")


@dataclass(frozen=True)
class Environment:
    """Where one environment (sandbox, staging, production) of the provider lives."""

    name: str
    base_url: str
    base_url_env: str = ""
    builtin_sandbox: bool = False
    allowed_hosts: tuple[str, ...] = ()
    #: ``[auth]`` URLs this environment uses instead (``authorize_url``, ``token_url``): a
    #: provider's sandbox often has its own consent page or token endpoint.
    auth_urls: tuple[tuple[str, str], ...] = ()

    def resolve_base_url(self) -> str:
        """The base URL, taking ``base_url_env`` from the environment when it is set."""
        if self.base_url_env and os.environ.get(self.base_url_env):
            return os.environ[self.base_url_env].rstrip("/")
        return self.base_url.rstrip("/")


@dataclass
class Profile:
    """A provider profile, loaded from TOML.

    Attributes
    ----------
    name : str
        Provider name (``[provider] name``); used in file names and error messages.
    timezone : str
        Default IANA time zone of sites and of naive timestamps.
    environment : str
        The environment used unless another is asked for.
    environments : dict of str to Environment
    data : dict
        The whole parsed TOML; sections are read by their owning modules via :meth:`section`.
    path : Path or None
        Where the profile was read from; relative paths inside resolve against its folder.
    variables : dict of str to str
        ``[variables]`` as resolved (``--var`` overrides applied); ``data`` has them filled in.
    missing_variables : dict of str to str
        Variables whose environment variable is unset (:meth:`require_variables` refuses them).
    """

    name: str
    timezone: str = "UTC"
    environment: str = "sandbox"
    environments: dict[str, Environment] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    #: ``[variables]`` resolved (after ``--var`` overrides) and those whose env var is unset
    variables: dict[str, str] = field(default_factory=dict)
    missing_variables: dict[str, str] = field(default_factory=dict)
    #: the profile as written (placeholders kept): what :meth:`save` writes
    template: dict[str, Any] | None = field(default=None, repr=False)
    var_overrides: dict[str, str] = field(default_factory=dict, repr=False)

    # -- access ---------------------------------------------------------------------------
    def section(self, name: str, default: Any = None) -> Any:
        """Return a deep copy of section ``name`` (``{}`` or ``default`` when absent)."""
        if name not in self.data:
            return {} if default is None else default
        return copy.deepcopy(self.data[name])

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return dict(self.section("resources"))

    @property
    def missing_values(self) -> str:
        """The missing-value policy, ``[validation] missing_values`` (see :data:`MISSING_VALUES`)."""
        return missing_value_policy(self)

    def env(self, name: str | None = None) -> Environment:
        """Return environment ``name`` (default: the profile's default environment)."""
        name = name or self.environment
        try:
            return self.environments[name]
        except KeyError:
            raise ProfileError(
                f"profile {self.name!r} has no environment {name!r}",
                key=f"environments.{name}",
                provider=self.name,
                hint=f"Use one of {sorted(self.environments)} or add [environments.{name}].",
            ) from None

    def base_url(self, environment: str | None = None) -> str:
        return self.env(environment).resolve_base_url()

    def resolve_path(self, value: str | os.PathLike[str]) -> Path:
        """Resolve a path from the profile relative to the profile's folder."""
        p = Path(os.path.expanduser(os.fspath(value)))
        if not p.is_absolute() and self.path is not None:
            p = self.path.parent / p
        return p

    def with_environment(self, name: str) -> Profile:
        """A copy of this profile whose default environment is ``name``."""
        self.env(name)
        clone = copy.deepcopy(self)
        clone.environment = name
        return clone

    def with_variables(self, overrides: dict[str, Any]) -> Profile:
        """A copy of this profile with ``[variables]`` overridden (``--var NAME=VALUE``).

        Parameters
        ----------
        overrides : dict of str to str
            Declared variable -> value.

        Returns
        -------
        Profile

        Raises
        ------
        ProfileError
            An override names no declared variable.
        """
        clone = Profile.from_dict(
            copy.deepcopy(self.template if self.template is not None else self.data),
            path=self.path,
            variables={**self.var_overrides, **overrides},
        )
        clone.environment = self.environment
        return clone

    def require_variables(self) -> None:
        """Refuse to go on while a variable the profile uses has no value.

        Raises
        ------
        CredentialError
            A ``name_env`` variable is unset and ``{name}`` appears in the profile.
        """
        if not self.missing_variables:
            return
        used = _used_placeholders(self.data)
        for name, env in self.missing_variables.items():
            if name in used:
                raise CredentialError(
                    f"variable {name!r}: environment variable {env!r} (named by "
                    f"variables.{name}_env) is not set",
                    variable=env,
                    key=f"variables.{name}_env",
                    provider=self.name,
                    hint=f"Export {env}, or pass --var {name}=VALUE.",
                )

    def __repr__(self) -> str:
        envs = ", ".join(self.environments)
        return (
            f"Profile(name={self.name!r}, environment={self.environment!r}, "
            f"environments=[{envs}], resources={list(self.resources)})"
        )

    # -- (de)serialise --------------------------------------------------------------------
    @classmethod
    def from_dict(
        cls,
        data: dict[str, Any],
        *,
        path: Path | None = None,
        variables: dict[str, Any] | None = None,
        check_values: bool = True,
    ) -> Profile:
        """Validate a parsed profile (shape, every key, enumerated values) and build it.

        Parameters
        ----------
        data : dict
            The parsed TOML.
        path : Path, optional
            Where it was read from.
        variables : dict, optional
            ``--var`` overrides of ``[variables]``.
        check_values : bool
            Check enumerated values (``kind``, ``aggregate``, ...) too (default). Off only to
            write the mapping workbook of a draft mapping, whose typos ``check_mapping``
            reports by sheet and cell; unknown keys are refused either way.

        Returns
        -------
        Profile

        Raises
        ------
        ProfileError
            The first problem, ``key`` naming its dotted place.
        """
        if not isinstance(data, dict):
            raise ProfileError("a profile must be a TOML table", key="")
        unknown = [k for k in data if k not in KNOWN_SECTIONS]
        if unknown:
            raise ProfileError(
                f"unknown section(s) {unknown}",
                key=unknown[0],
                hint=f"Known sections: {', '.join(KNOWN_SECTIONS)}.",
            )
        _refuse_literal_secrets(data, "")
        provider = data.get("provider")
        if not isinstance(provider, dict) or not provider.get("name"):
            raise ProfileError(
                "the profile needs [provider] with a name",
                key="provider.name",
                hint='Add:\n[provider]\nname = "my-provider"',
            )
        name = str(provider["name"])
        for section in KNOWN_SECTIONS:
            if section in data and not isinstance(data[section], dict):
                raise ProfileError(f"[{section}] must be a table", key=section, provider=name)
        check_profile_keys(data, provider=name)
        if check_values:  # off only for a draft mapping's workbook: check_mapping names the cells
            check_profile_values(data, provider=name)
        template = data
        values, missing = resolve_variables(data.get("variables"), variables, provider=name)
        data = apply_variables(template, values, provider=name)
        timezone = str(provider.get("timezone", "UTC"))
        _check_timezone(timezone, "provider.timezone")
        envs_raw = data.get("environments", {})
        if not isinstance(envs_raw, dict) or not envs_raw:
            raise ProfileError(
                "the profile needs at least one [environments.<name>] with a base_url",
                key="environments",
                provider=name,
                hint='Add:\n[environments.sandbox]\nbase_url = "https://api.example.com/v1"',
            )
        envs: dict[str, Environment] = {}
        for env_name, env in envs_raw.items():
            key = f"environments.{env_name}"
            if not isinstance(env, dict):
                raise ProfileError(f"{key} must be a table", key=key, provider=name)
            base_url = env.get("base_url", "")
            # file://: a provider's export file, read by a connector that reads files
            if not isinstance(base_url, str) or not (
                base_url.startswith(("http://", "https://", "file://"))
                or env.get("builtin_sandbox")
            ):
                raise ProfileError(
                    f"{key}.base_url must be an http(s) URL (or file:// for a connector that "
                    f"reads files), got {base_url!r}",
                    key=f"{key}.base_url",
                    provider=name,
                )
            allowed = env.get("allowed_hosts", [])
            if not isinstance(allowed, list):
                raise ProfileError(
                    f"{key}.allowed_hosts must be a list", key=f"{key}.allowed_hosts"
                )
            auth_urls = []
            for url_key in ENVIRONMENT_AUTH_URLS:
                if url_key in env:
                    url = env[url_key]
                    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                        raise ProfileError(
                            f"{key}.{url_key} must be an http(s) URL, got {url!r}",
                            key=f"{key}.{url_key}",
                            provider=name,
                        )
                    auth_urls.append((url_key, url))
            envs[env_name] = Environment(
                name=env_name,
                base_url=base_url,
                base_url_env=str(env.get("base_url_env", "")),
                builtin_sandbox=bool(env.get("builtin_sandbox", False)),
                allowed_hosts=tuple(str(h) for h in allowed),
                auth_urls=tuple(auth_urls),
            )
        default_env = str(provider.get("environment", next(iter(envs))))
        if default_env not in envs:
            raise ProfileError(
                f"provider.environment {default_env!r} is not one of {sorted(envs)}",
                key="provider.environment",
                provider=name,
            )
        for section in KNOWN_SECTIONS:
            if section in data and not isinstance(data[section], dict):
                raise ProfileError(f"[{section}] must be a table", key=section, provider=name)
        missing_value_policy(data.get("validation") or {})  # a bad value fails at load
        for rname, res in data.get("resources", {}).items():
            if not isinstance(res, dict) or not (
                isinstance(res.get("path"), str)
                or "graphql" in res  # GraphQL: the base URL
                or "soap" in res  # SOAP: the base URL
            ):
                raise ProfileError(
                    f"resource {rname!r} needs a path",
                    key=f"resources.{rname}.path",
                    provider=name,
                    hint=f'Add path = "/{rname}" under [resources.{rname}].',
                )
        return cls(
            name=name,
            timezone=timezone,
            environment=default_env,
            environments=envs,
            data=data,
            path=path,
            variables=values,
            missing_variables=missing,
            template=copy.deepcopy(template) if values or missing else None,
            var_overrides={str(k): str(v) for k, v in (variables or {}).items()},
        )

    def to_dict(self) -> dict[str, Any]:
        """The profile as written (variables as ``{name}``, not their values)."""
        data = copy.deepcopy(self.template if self.template is not None else self.data)
        data.setdefault("provider", {})["name"] = self.name
        data["provider"]["timezone"] = self.timezone
        data["provider"]["environment"] = self.environment
        return data

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the profile as TOML to ``path`` (refusing literal secrets) and return the path."""
        p = Path(path)
        text = to_profile_toml(self)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(p.suffix + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, p)
        self.path = p
        return p


def read_profile(
    path: str | os.PathLike[str],
    *,
    environment: str | None = None,
    variables: dict[str, Any] | None = None,
    check_values: bool = True,
) -> Profile:
    """Read and validate a provider profile from a TOML file.

    Parameters
    ----------
    path : path-like
        The profile file (e.g. ``mappings/sandbox/profile.toml``).
    environment : str, optional
        Override the profile's default environment.
    variables : dict, optional
        Override ``[variables]`` (the CLI's ``--var NAME=VALUE``).
    check_values : bool
        Check enumerated values at load (default); ``scaler-workbench check`` turns it off to
        report them by workbook cell instead (:meth:`Profile.from_dict`).

    Returns
    -------
    Profile
        The validated profile, its folder remembered for relative paths.

    Raises
    ------
    ProfileError
        If the file is missing, is not TOML, or has the wrong shape; ``key`` names the place.
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ProfileError(
            f"profile file {str(p)!r} does not exist",
            key="",
            hint="Pass the path of a profile.toml, e.g. mappings/sandbox/profile.toml.",
        ) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ProfileError(
            f"{p} is not valid TOML: {exc}", key="", hint="Fix the TOML syntax at the line shown."
        ) from exc
    profile = Profile.from_dict(
        data, path=p.resolve(), variables=variables, check_values=check_values
    )
    if environment:
        profile = profile.with_environment(environment)
    return profile


def to_profile_toml(profile: Profile | dict[str, Any]) -> str:
    """Render a profile (or its dict) as TOML text, refusing literal secrets."""
    import tomli_w

    data = profile.to_dict() if isinstance(profile, Profile) else profile
    _refuse_literal_secrets(data, "")
    return tomli_w.dumps(data)


#: ``[auth]`` options that are not secrets (documented in docs/profiles.md); every other option
#: must be a ``*_env`` (environment variable) or ``*_file`` (file outside the repository) name.
AUTH_PLAIN_OPTIONS = frozenset(
    {
        "type",
        "name",
        "location",
        "prefix",
        "header",
        "format",
        "header_format",
        "username",
        "client_id",
        "token_url",
        "authorize_url",
        "redirect_uri",
        "scope",
        "client_auth",
        "token_params",
        "expiry_margin",
        "default_expires_in",
        "pkce",
    }
)

#: Header, parameter and option names that carry credentials: their values come from
#: ``headers_env`` / ``params_env`` (environment variables), never from the profile.
CREDENTIAL_NAME = re.compile(
    r"authoriz|^(x-)?auth$|api[-_ ]?key|access[-_ ]?key|private[-_ ]?key|^key$|secret|passw|"
    r"^pwd$|token|signature|^sig$|credential|cookie|session",
    re.IGNORECASE,
)


def looks_like_credential(name: str) -> bool:
    """True when a header, parameter or option named ``name`` would carry a credential.

    Parameters
    ----------
    name : str
        E.g. ``Authorization``, ``X-Api-Key``, ``access_token``, ``signature``.

    Returns
    -------
    bool
    """
    return bool(CREDENTIAL_NAME.search(str(name).strip()))


def _refuse_credential_names(table: Any, key: str, env_key: str) -> None:
    """Refuse ``table`` entries (headers, params) whose names look like credentials."""
    if not isinstance(table, dict):
        return
    for name in table:
        if looks_like_credential(str(name)):
            raise ProfileError(
                f"profile key {f'{key}.{name}'!r} looks like a credential; a profile holds no "
                "credential values",
                key=f"{key}.{name}",
                hint=f"Put the value in an environment variable and write {env_key} = "
                f'{{ "{name}" = "VAR_NAME" }} instead.',
            )


def _refuse_literal_auth_options(auth: Any) -> None:
    """Every ``[auth]`` option is a documented non-secret option or names a variable/file."""
    if not isinstance(auth, dict):
        return
    for k in auth:
        name = str(k)
        if name.endswith(("_env", "_file")) or name in AUTH_PLAIN_OPTIONS:
            continue
        raise ProfileError(
            f"profile key 'auth.{name}' may hold a literal secret: [auth] takes secrets only "
            f"from environment variables{did_you_mean(name, SCHEMA['auth'])}",
            key=f"auth.{name}",
            hint=f'Put the value in an environment variable and write {name}_env = "VAR_NAME" '
            f"(plain [auth] options: {', '.join(sorted(AUTH_PLAIN_OPTIONS))})."
            + (
                ""
                if name in SCHEMA["auth"]
                else f" Known keys of [auth]: {', '.join(sorted(SCHEMA['auth']))}."
            ),
        )
    _refuse_credential_names(auth.get("token_params"), "auth.token_params", "token_params_env")


def _refuse_literal_secrets(node: Any, path: str) -> None:
    if path == "" and isinstance(node, dict):
        _refuse_literal_auth_options(node.get("auth"))
        notify = node.get("notify")
        for k in ("url", "webhook", "webhook_url"):
            if isinstance(notify, dict) and k in notify:
                raise ProfileError(
                    f"profile key 'notify.{k}' holds the webhook URL, a secret",
                    key=f"notify.{k}",
                    hint='Put the URL in an environment variable and write url_env = "VAR_NAME".',
                )
        client = node.get("client")
        if isinstance(client, dict):
            _refuse_credential_names(client.get("headers"), "client.headers", "headers_env")
        resources = node.get("resources")
        for rname, res in resources.items() if isinstance(resources, dict) else ():
            if isinstance(res, dict):
                for part in ("params", "headers"):
                    _refuse_credential_names(
                        res.get(part), f"resources.{rname}.{part}", f"{part}_env"
                    )
    if isinstance(node, dict):
        for k, v in node.items():
            key = f"{path}.{k}" if path else str(k)
            if (
                str(k).lower() in _SECRET_KEYS
                and isinstance(v, str)
                and path.split(".")[0] == "auth"
            ):
                raise ProfileError(
                    f"profile key {key!r} holds a literal secret",
                    key=key,
                    hint=f'Put the value in an environment variable and write {k}_env = "VAR_NAME".',
                )
            _refuse_literal_secrets(v, key)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _refuse_literal_secrets(v, f"{path}[{i}]")


def _used_placeholders(node: Any) -> set[str]:
    """Every ``{name}`` in the profile's strings (where a missing variable would be sent)."""
    if isinstance(node, dict):
        return set().union(*(_used_placeholders(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_used_placeholders(v) for v in node))
    return placeholders(node)


def _check_timezone(name: str, key: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ProfileError(
            f"{key} {name!r} is not an IANA time zone",
            key=key,
            hint="Use a name like 'Europe/London' or 'America/New_York'.",
        ) from None


def missing_value_policy(profile: Any = None) -> str:
    """The profile's missing-value policy: ``[validation] missing_values``.

    Parameters
    ----------
    profile : Profile or mapping, optional
        A :class:`Profile`, its ``[validation]`` section as a mapping, or None (the default
        policy).

    Returns
    -------
    str
        ``"no_data"`` (the default) or ``"error"``.

    Raises
    ------
    ProfileError
        If the value is not one of :data:`MISSING_VALUES`.
    """
    if profile is None:
        section: Any = {}
    elif isinstance(profile, Mapping):
        section = profile
    elif hasattr(profile, "section"):
        section = profile.section("validation")
    else:
        section = {}
    value = (
        section.get("missing_values", MISSING_VALUES[0]) if isinstance(section, Mapping) else None
    )
    if value not in MISSING_VALUES:
        raise ProfileError(
            f"validation.missing_values must be one of {', '.join(MISSING_VALUES)}, got {value!r}",
            key="validation.missing_values",
            hint='"no_data": a null value is delivered without data (counted per meter and '
            'day, never an error row per value); "error": each record with a null value is '
            "set aside.",
        )
    return str(value)
