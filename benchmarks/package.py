"""The package's own path over the synthetic provider, stage by stage, through public functions.

The synthetic provider is described by a profile dict (:data:`PROFILE`) built with
:meth:`scaler_workbench.profile.Profile.from_dict`, exactly as an analyst's ``profile.toml``
would be, so the benchmark runs the code analysts run:

``canonical``  :func:`scaler_workbench.transform.build_tables`
``units``      :func:`scaler_workbench.units.normalise_tables`
``usage``      :func:`scaler_workbench.usage.process_usage` (duplicates by the conflict policy,
               then Europe/London monthly aggregation)
``validate``   :func:`scaler_workbench.validation.validate_tables` (great-expectations)
``export``     :func:`scaler_workbench.export.to_scaler_files` (CSV)

A stage whose module has not landed (or lacks the function) is reported as ``n/a``; the stages
after it cannot run and are ``n/a`` too.
"""

from __future__ import annotations

import copy
import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.data import CALORIFIC_VALUE, TIMEZONE

__all__ = ["PACKAGE_STAGES", "PROFILE", "PackageResult", "make_profile", "package_pipeline"]

#: Stage name -> (module, function).
PACKAGE_STAGES: dict[str, tuple[str, str]] = {
    "canonical": ("scaler_workbench.transform", "build_tables"),
    "units": ("scaler_workbench.units", "normalise_tables"),
    "usage": ("scaler_workbench.usage", "process_usage"),
    "validate": ("scaler_workbench.validation", "validate_tables"),
    "export": ("scaler_workbench.export", "to_scaler_files"),
}

#: The synthetic provider as an analyst would write its profile.
PROFILE: dict[str, Any] = {
    "provider": {"name": "benchmark", "timezone": TIMEZONE, "environment": "local"},
    "environments": {"local": {"base_url": "http://127.0.0.1:9/api"}},
    "resources": {
        "sites": {"path": "/sites", "primary_key": "id"},
        "meters": {
            "path": "/sites/{site_id}/meters",
            "primary_key": "id",
            "parent": "sites",
            "parent_params": {"site_id": "id"},
        },
        "intervals": {
            "path": "/meters/{meter_id}/intervals",
            "parent": "meters",
            "parent_params": {"meter_id": "id"},
        },
    },
    "mapping": {
        "assets": {
            "resource": "sites",
            "fields": {"asset_id": "id", "name": "name", "timezone": "timezone"},
        },
        "meters": {
            "resource": "meters",
            "fields": {
                "meter_id": "id",
                "asset_id": "_parent.site_id",
                "description": "name",
                "raw_unit": "unit",
                "meter_type": "commodity",
                "meter_subtype": "commodity",
            },
            "value_maps": {
                "meter_type": {"electricity": "Energy", "gas": "Energy"},
                "meter_subtype": {"electricity": "Off-site Electricity", "gas": "Natural Gas"},
            },
        },
        "usage": {
            "intervals": {
                "resource": "intervals",
                "kind": "intervals",
                "aggregate": "month",
                "duration": "30min",
                "fields": {
                    "meter_id": "_parent.meter_id",
                    "start": "interval_start",
                    "consumption": "value",
                },
            }
        },
        "policy": {"duplicates": "latest"},
    },
    "units": {"heating_value": {"preset": "uk", "calorific_value": CALORIFIC_VALUE}},
}


def make_profile(*, conflict: str = "last") -> Any:
    """Build the benchmark's :class:`~scaler_workbench.profile.Profile` (conflict policy set)."""
    from scaler_workbench.profile import Profile

    data = copy.deepcopy(PROFILE)
    data["mapping"]["policy"]["duplicates"] = {"last": "latest", "first": "first"}[conflict]
    return Profile.from_dict(data)


@dataclass
class PackageResult:
    """Seconds per stage (``None``: n/a), the monthly totals and what went wrong, if anything."""

    stages: dict[str, float | None]
    monthly: pd.DataFrame | None
    missing: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def _resolve() -> tuple[dict[str, Callable[..., Any]], list[str]]:
    found: dict[str, Callable[..., Any]] = {}
    missing: list[str] = []
    for stage, (module, name) in PACKAGE_STAGES.items():
        try:
            found[stage] = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            missing.append(f"{module}.{name}")
    return found, missing


def available() -> list[str]:
    """The stages whose function exists now."""
    found, _ = _resolve()
    return [s for s in PACKAGE_STAGES if s in found]


def monthly_from_usage(usage: pd.DataFrame, timezone: str = TIMEZONE) -> pd.DataFrame:
    """``meter_id, month (local YYYY-MM), consumption`` from a usage frame, sorted."""
    local = usage["start"].dt.tz_convert(timezone)
    out = pd.DataFrame(
        {
            "meter_id": usage["meter_id"].astype(str).to_numpy(),
            "month": local.dt.strftime("%Y-%m").to_numpy(),
            "consumption": usage["consumption"].to_numpy(dtype=float),
        }
    )
    out = out.groupby(["meter_id", "month"], as_index=False, sort=True)["consumption"].sum()
    return out


def package_pipeline(
    raw: dict[str, list[dict[str, Any]]],
    profile: Any,
    *,
    out_dir: str | Path,
) -> PackageResult:
    """Run the package's stages over ``raw`` and time each one."""
    fns, missing = _resolve()
    stages: dict[str, float | None] = dict.fromkeys(PACKAGE_STAGES)
    counts: dict[str, int] = {}
    clock = time.perf_counter
    if "canonical" not in fns:
        return PackageResult(stages, None, missing)
    t = clock()
    tables = fns["canonical"](profile, raw)
    stages["canonical"] = clock() - t
    if "units" not in fns:
        return PackageResult(stages, None, missing)
    t = clock()
    tables = fns["units"](tables, profile)
    stages["units"] = clock() - t
    if "usage" not in fns:
        return PackageResult(stages, None, missing)
    t = clock()
    tables = fns["usage"](tables, profile)
    stages["usage"] = clock() - t
    monthly = monthly_from_usage(tables.usage)
    counts["quarantine_rows"] = len(tables.quarantine)
    if "validate" not in fns:
        return PackageResult(stages, monthly, missing, counts)
    t = clock()
    result = fns["validate"](tables, profile)
    stages["validate"] = clock() - t
    accepted = result.accepted
    counts["validation_quarantined"] = len(result.quarantined)
    if "export" not in fns:
        return PackageResult(stages, monthly, missing, counts)
    t = clock()
    fns["export"](accepted, out_dir, quarantine=result.quarantined, formats=("csv",))
    stages["export"] = clock() - t
    return PackageResult(stages, monthly, missing, counts)
