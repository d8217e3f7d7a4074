"""The validation rules as data: name, tables, default severity, thresholds, what to ask.

:data:`RULES` is the registry that :mod:`scaler_workbench.validation` runs and that
``docs/validation.md`` documents. A provider profile may override any rule::

    [validation.rules.billing_period_days]
    severity = "error"        # or "warning"
    min = 27
    max = 33

    [validation.rules.gap_between_periods]
    enabled = false

:func:`resolve_rules` turns the profile's ``[validation]`` section into the effective rule set,
refusing unknown rules, unknown threshold names and bad severities with a :class:`ProfileError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal, Protocol

from scaler_workbench._quality import PLAUSIBLE_MAX
from scaler_workbench.exceptions import ProfileError


class _Sectioned(Protocol):
    """A :class:`~scaler_workbench.profile.Profile` as seen here (profile.py checks
    ``[validation]`` through this module at load time, so it is not imported)."""

    def section(self, name: str, default: Any = None) -> Any: ...


__all__ = ["RULES", "SEVERITIES", "Rule", "resolve_rules", "rules_frame"]

Severity = Literal["error", "warning"]
SEVERITIES: tuple[str, ...] = ("error", "warning")


@dataclass(frozen=True)
class Rule:
    """One validation rule.

    Attributes
    ----------
    name : str
        Machine name, used in the quarantine's ``rule`` column and in profile overrides.
    tables : tuple of str
        Tables the rule applies to.
    severity : {"error", "warning"}
        ``error`` quarantines the row; ``warning`` keeps it and reports it.
    engine : {"gx", "pandas"}
        ``gx``: a great-expectations expectation finds the rows (``unexpected_index_list``);
        ``pandas``: a vectorised pandas/numpy check (cross-row or cross-table rules GX cannot
        express).
    description : str
        What the rule checks.
    ask : str
        What to ask the provider (or fix in the mapping) when it fires.
    params : mapping
        Default thresholds; every key can be overridden in the profile.
    enabled : bool
        Whether the rule runs.
    """

    name: str
    tables: tuple[str, ...]
    severity: Severity
    engine: Literal["gx", "pandas"]
    description: str
    ask: str
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    enabled: bool = True

    def param(self, key: str) -> Any:
        return self.params[key]


def _rule(
    name: str,
    tables: tuple[str, ...],
    severity: Severity,
    engine: Literal["gx", "pandas"],
    description: str,
    ask: str,
    **params: Any,
) -> Rule:
    return Rule(name, tables, severity, engine, description, ask, MappingProxyType(params))


_ALL = ("assets", "meters", "usage", "readings")
_SERIES = ("usage", "readings")

#: Every rule the validation stage knows, by name (documented in docs/validation.md).
RULES: Mapping[str, Rule] = MappingProxyType(
    {
        r.name: r
        for r in (
            _rule(
                "required",
                _ALL,
                "error",
                "gx",
                "A column Scaler requires (schema.py) is empty.",
                "Ask the provider whether the field is always sent, or map another field.",
            ),
            _rule(
                "invalid_datetime",
                _SERIES,
                "error",
                "pandas",
                "A timestamp given as text is not ISO 8601.",
                "Check the date format of the source field; set the mapping's date format.",
            ),
            _rule(
                "invalid_number",
                ("assets", *_SERIES),
                "error",
                "pandas",
                "A numeric column holds text that is not a number.",
                "Check the source field: thousands separators, units inside values, 'n/a'.",
            ),
            _rule(
                "duplicate_key",
                _ALL,
                "error",
                "pandas",
                "The row's key (asset_id; meter_id; meter_id+start+end; meter_id+timestamp) "
                "appeared earlier in the table; the first occurrence is kept.",
                "Ask the provider why the same record is sent twice (pagination overlap, "
                "restated bills); set the usage conflict policy.",
                keep="first",
            ),
            _rule(
                "unknown_meter_type",
                ("meters",),
                "error",
                "gx",
                "meter_type is not one of Scaler's types (Energy, Water, Waste).",
                "Add the provider's commodity to [mapping.meters.value_maps.meter_type].",
            ),
            _rule(
                "possible_duplicate_meter",
                ("meters",),
                "warning",
                "pandas",
                "Two meters with different meter_id share a value of one of `fields` (a service "
                "id, a meter number or serial, when mapped as a meters column) and the same "
                "meter_type, meter_subtype and direction: both are kept, so their usage may be "
                "counted twice. The later meter is flagged, the reason naming both ids.",
                "Ask the provider whether both are the same meter (an archived or re-registered "
                "copy); keep one out (a where filter, exclude_meters) or key meters by a field "
                "that tells them apart.",
                fields=("service_id", "meter_number", "serial_number", "serial"),
            ),
            _rule(
                "unknown_meter_subtype",
                ("meters",),
                "warning",
                "pandas",
                "meter_subtype is not a documented sub-category of the meter's type.",
                "Add the commodity to [mapping.meters.value_maps.meter_subtype].",
            ),
            _rule(
                "unknown_unit",
                ("meters", *_SERIES),
                "error",
                "pandas",
                "The unit is not canonical and the unit registry cannot parse it.",
                "Ask the provider what the label means; map it in [units.aliases].",
            ),
            _rule(
                "non_canonical_unit",
                ("meters", *_SERIES),
                "warning",
                "pandas",
                "The unit is known but not the canonical unit of the meter type (kWh, m³, kg): "
                "normalise_tables() has not converted it.",
                "Run units.normalise_tables() before export, or check the meter type.",
            ),
            _rule(
                "unit_mismatch",
                _SERIES,
                "error",
                "pandas",
                "The row's unit differs from its meter's unit.",
                "Check the unit mapping of the meter and of its usage/readings resource.",
            ),
            _rule(
                "unknown_asset",
                ("meters",),
                "error",
                "pandas",
                "The meter's asset_id is not in the assets table.",
                "Check the meters' asset mapping (e.g. _parent.site_id) and that every site is fetched.",
            ),
            _rule(
                "unknown_meter",
                _SERIES,
                "error",
                "pandas",
                "The row's meter_id is not in the meters table.",
                "Check the meter_id mapping and that the meters resource lists every meter.",
            ),
            _rule(
                "parent_quarantined",
                ("meters", *_SERIES),
                "error",
                "pandas",
                "The row's asset (for meters) or meter (for usage/readings) was quarantined.",
                "Fix the parent's finding first; then recheck_quarantine() releases both.",
            ),
            _rule(
                "unknown_timezone",
                ("assets", *_SERIES),
                "error",
                "pandas",
                "timezone is not an IANA time zone name.",
                "Map the site's zone to an IANA name (e.g. Europe/London) or set provider.timezone.",
            ),
            _rule(
                "invalid_coordinates",
                ("assets",),
                "warning",
                "gx",
                "latitude outside [-90, 90] or longitude outside [-180, 180] degrees.",
                "Check whether latitude and longitude are swapped or scaled.",
            ),
            _rule(
                "invalid_country",
                ("assets",),
                "warning",
                "gx",
                "country is not an ISO 3166-1 alpha-2 code (two capital letters).",
                "Map country names to ISO codes in [mapping.assets.value_maps.country].",
            ),
            _rule(
                "non_positive_floor_area",
                ("assets",),
                "warning",
                "gx",
                "floor_area is zero or negative [m²].",
                "Ask the provider for the gross floor area, or leave the field unmapped.",
            ),
            _rule(
                "end_not_after_start",
                ("usage",),
                "error",
                "gx",
                "end is not strictly after start.",
                "Check the period fields and end_inclusive in the usage mapping.",
            ),
            _rule(
                "negative_consumption",
                ("usage",),
                "error",
                "gx",
                "consumption is below `min` (0): negative consumption.",
                "Ask whether negative values are exports/corrections; map them to redelivery "
                "(a signed net series: split_sign = true on the usage source).",
                min=0.0,
            ),
            _rule(
                "non_finite",
                _SERIES,
                "error",
                "pandas",
                "A value (consumption, redelivery, production, cost; a reading's value) is "
                "+inf or -inf.",
                "Ask the provider what the value means (an overflow or an error code).",
            ),
            _rule(
                "implausible_value",
                ("usage",),
                "error",
                "pandas",
                "|consumption| (or redelivery, production) is above `max_per_hour` of the row's "
                "unit times the period's length in hours (a unit without a bound is not checked).",
                "Ask whether the value is an error code, a unit slip (Wh vs kWh) or a register "
                "read as consumption.",
                max_per_hour=MappingProxyType(dict(PLAUSIBLE_MAX)),
            ),
            _rule(
                "invalid_currency",
                ("usage",),
                "warning",
                "pandas",
                "cost is given but currency is missing or not an active ISO 4217 code "
                "(pycountry's list).",
                "Map the provider's currency to its ISO 4217 code (EUR, GBP, USD) in "
                "[mapping.usage.<source>.value_maps.currency], or a constant currency.",
            ),
            _rule(
                "extreme_value",
                ("usage",),
                "warning",
                "pandas",
                "Daily rate (consumption / period length) above median + k x IQR of the meter's "
                "periods (meters with fewer than `min_points` periods are skipped).",
                "Ask whether the value is a meter exchange, a unit slip (Wh vs kWh) or real.",
                k=3.0,
                min_points=8,
            ),
            _rule(
                "low_coverage",
                ("usage",),
                "warning",
                "pandas",
                "days_with_data covers less than `min_fraction` of the local calendar days of "
                "the period (rows without days_with_data are skipped).",
                "Ask the provider for the missing intervals; re-run with a longer look-back.",
                min_fraction=0.9,
            ),
            _rule(
                "missing_day",
                ("usage",),
                "warning",
                "pandas",
                "An interval meter has no interval on a whole local day between its first and "
                "last interval (an interior hole, counted before aggregation; the finding "
                "names the local dates and sits on the month's usage row).",
                "Ask the provider for the missing day; re-run with a longer look-back.",
            ),
            _rule(
                "missing_intervals",
                ("usage",),
                "warning",
                "pandas",
                "An interval meter misses intervals inside a local day (an interior hole of a "
                "few intervals: the finding names the local date and times). `min_share` is "
                "the share of a month's expected intervals (DST-aware, in the meter's active "
                "period) below which coverage.csv and the ready gate call the month partial "
                "(1.0: every missing interval).",
                "Ask the provider for the missing intervals; re-run with a longer look-back.",
                min_share=1.0,
            ),
            _rule(
                "billing_period_days",
                ("usage",),
                "warning",
                "pandas",
                "A monthly bill covers fewer than `min` or more than `max` local days. Applies to "
                "rows whose method is in `methods` (or empty) on meters whose median such period "
                "is at least `monthly_from_days` days long.",
                "Ask whether the bill is a correction, a final bill or a combined bill.",
                min=25,
                max=35,
                methods=("as-reported",),
                monthly_from_days=20,
            ),
            _rule(
                "overlapping_period",
                ("usage",),
                "error",
                "pandas",
                "The period starts more than `tolerance_days` before the end of an earlier "
                "period of the same meter (the later row is flagged).",
                "Ask whether one period restates the other; set the usage conflict policy.",
                tolerance_days=0.0,
            ),
            _rule(
                "gap_between_periods",
                ("usage",),
                "warning",
                "pandas",
                "The period starts more than `tolerance_days` after the end of the meter's "
                "previous period (the row after the gap is flagged).",
                "Ask the provider for the missing period, or widen the fetch window.",
                tolerance_days=0.0,
            ),
            _rule(
                "negative_reading",
                ("readings",),
                "warning",
                "gx",
                "A register reading is below `min` (0).",
                "Ask whether the register is signed (net meter) or the value is an error code.",
                min=0.0,
            ),
            _rule(
                "control_characters",
                _ALL,
                "warning",
                "pandas",
                "A text field holds control characters (C0 but tab/LF/CR, DEL, C1) that a "
                "workbook cannot hold: the XLSX shows U+FFFD in their place, the CSV keeps them.",
                "Ask the provider to clean the field (often a pasted escape sequence).",
            ),
            _rule(
                "register_decrease",
                ("readings",),
                "warning",
                "pandas",
                "A reading is lower than the meter's previous reading and has no flag "
                "(reset, rollover, exchange).",
                "Ask whether the meter was exchanged or rolled over; set register_digits.",
            ),
        )
    }
)


def resolve_rules(profile: _Sectioned | Mapping[str, Any] | None = None) -> dict[str, Rule]:
    """Return the effective rules: :data:`RULES` with a profile's overrides applied.

    Parameters
    ----------
    profile : Profile or mapping, optional
        A :class:`~scaler_workbench.profile.Profile` (its ``[validation]`` section is read) or
        the section itself as a mapping (``{"rules": {"<rule>": {...}}}``).

    Raises
    ------
    ProfileError
        If the section names an unknown rule or threshold, or a bad severity / type.
    """
    if profile is None:
        section: Any = {}
    elif isinstance(profile, Mapping):
        section = profile
    else:
        section = profile.section("validation")
    if not isinstance(section, Mapping):
        raise ProfileError("[validation] must be a table", key="validation")
    overrides = section.get("rules", {})
    if not isinstance(overrides, Mapping):
        raise ProfileError("[validation.rules] must be a table", key="validation.rules")
    rules = dict(RULES)
    for name, override in overrides.items():
        key = f"validation.rules.{name}"
        if name not in rules:
            raise ProfileError(
                f"unknown validation rule {name!r}{_closest(name, RULES)}",
                key=key,
                hint=f"Known rules: {', '.join(sorted(RULES))}.",
            )
        if not isinstance(override, Mapping):
            raise ProfileError(f"[{key}] must be a table", key=key)
        rules[name] = _apply_override(rules[name], override, key)
    return rules


def _closest(word: str, choices: Any) -> str:
    """``" (did you mean 'x'?)"`` for the closest choice (difflib), or ``""``."""
    import difflib

    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _apply_override(rule: Rule, override: Mapping[str, Any], key: str) -> Rule:
    changes: dict[str, Any] = {}
    params = dict(rule.params)
    for k, v in override.items():
        if k == "severity":
            if v not in SEVERITIES:
                raise ProfileError(
                    f"{key}.severity must be 'error' or 'warning', got {v!r}", key=f"{key}.severity"
                )
            changes["severity"] = v
        elif k == "enabled":
            if not isinstance(v, bool):
                raise ProfileError(
                    f"{key}.enabled must be true or false, got {v!r}", key=f"{key}.enabled"
                )
            changes["enabled"] = v
        elif k in params:
            default = params[k]
            if isinstance(default, Mapping):
                params[k] = MappingProxyType({**default, **_bounds(v, f"{key}.{k}")})
            elif isinstance(default, tuple):
                if not isinstance(v, list | tuple) or not all(isinstance(x, str) for x in v):
                    raise ProfileError(f"{key}.{k} must be a list of strings", key=f"{key}.{k}")
                params[k] = tuple(v)
            elif isinstance(default, str):
                if not isinstance(v, str):
                    raise ProfileError(f"{key}.{k} must be a string", key=f"{key}.{k}")
                params[k] = v
            else:
                if isinstance(v, bool) or not isinstance(v, int | float):
                    raise ProfileError(f"{key}.{k} must be a number, got {v!r}", key=f"{key}.{k}")
                params[k] = type(default)(v)
        else:
            known = ", ".join(["severity", "enabled", *rule.params]) or "severity, enabled"
            raise ProfileError(
                f"rule {rule.name!r} has no setting {k!r}"
                f"{_closest(k, ['severity', 'enabled', *rule.params])}",
                key=f"{key}.{k}",
                hint=f"Settings of {rule.name}: {known}.",
            )
    if rule.name == "duplicate_key" and params.get("keep") not in ("first", "none"):
        raise ProfileError(
            f"{key}.keep must be 'first' or 'none'", key=f"{key}.keep", hint="Use keep = 'first'."
        )
    if "min" in params and "max" in params and params["min"] > params["max"]:
        raise ProfileError(f"{key}: min is above max", key=f"{key}.min")
    return replace(rule, params=MappingProxyType(params), **changes)


def _bounds(value: Any, key: str) -> dict[str, float]:
    """A table of positive numbers by unit (``{kWh = 2e6, "m³" = 5e4}``)."""
    if not isinstance(value, Mapping) or not value:
        raise ProfileError(
            f"{key} must be a table of unit = number",
            key=key,
            hint='e.g. max_per_hour = {kWh = 2e6, "m³" = 5e4} [unit per hour].',
        )
    out: dict[str, float] = {}
    for unit, bound in value.items():
        if isinstance(bound, bool) or not isinstance(bound, int | float) or not bound > 0:
            raise ProfileError(
                f"{key}.{unit} must be a positive number, got {bound!r}", key=f"{key}.{unit}"
            )
        out[str(unit)] = float(bound)
    return out


def rules_frame(rules: Mapping[str, Rule] | None = None) -> Any:
    """The rules as a DataFrame (name, tables, severity, engine, thresholds, description, ask)."""
    import pandas as pd

    rules = RULES if rules is None else rules
    return pd.DataFrame(
        [
            {
                "rule": r.name,
                "tables": ", ".join(r.tables),
                "severity": r.severity,
                "enabled": r.enabled,
                "engine": r.engine,
                "thresholds": ", ".join(
                    f"{k}={dict(v) if isinstance(v, Mapping) else v!r}" for k, v in r.params.items()
                ),
                "description": r.description,
                "ask": r.ask,
            }
            for r in rules.values()
        ]
    )
