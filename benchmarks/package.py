"""The package's own path over the synthetic provider, stage by stage, through public functions.

The synthetic provider is described by a profile dict (:data:`PROFILE`) built with
:meth:`scaler_workbench.profile.Profile.from_dict`, exactly as an analyst's ``profile.toml``
would be, so the benchmark runs the code analysts run:

``canonical``, ``units``, ``usage``
               :func:`scaler_workbench.pipeline.run_pipeline` (records -> canonical frame ->
               units -> duplicates by the conflict policy -> Europe/London months), which
               reports its own seconds per stage through ``timings=``
``validate``   :func:`scaler_workbench.validation.validate_tables` (great-expectations)
``export``     :func:`scaler_workbench.export.to_scaler_files` (CSV)

How ``run_pipeline`` works inside (e.g. whether it streams a large interval source in chunks)
is its own business: the benchmark only reads the seconds it reports. A function that has not
landed is reported as ``n/a``, and so are the stages after it, which cannot run; a stage that
``run_pipeline`` ran but did not time is ``n/a`` too.
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

__all__ = [
    "PACKAGE_FUNCTIONS",
    "PACKAGE_STAGES",
    "PIPELINE_STAGES",
    "PROFILE",
    "PackageResult",
    "available",
    "make_profile",
    "monthly_from_usage",
    "package_pipeline",
]

#: The stages of the report, in order.
PACKAGE_STAGES: tuple[str, ...] = ("canonical", "units", "usage", "validate", "export")

#: The stages ``run_pipeline`` times itself (its ``timings`` keys).
PIPELINE_STAGES: tuple[str, ...] = ("canonical", "units", "usage")

#: Step -> (module, public function).
PACKAGE_FUNCTIONS: dict[str, tuple[str, str]] = {
    "pipeline": ("scaler_workbench.pipeline", "run_pipeline"),
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
    for step, (module, name) in PACKAGE_FUNCTIONS.items():
        try:
            found[step] = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            missing.append(f"{module}.{name}")
    return found, missing


def available() -> list[str]:
    """The steps (:data:`PACKAGE_FUNCTIONS` keys) whose function exists now."""
    found, _ = _resolve()
    return [s for s in PACKAGE_FUNCTIONS if s in found]


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
    """Run the package's stages over ``raw`` and time each one [s]."""
    fns, missing = _resolve()
    stages: dict[str, float | None] = dict.fromkeys(PACKAGE_STAGES)
    counts: dict[str, int] = {}
    clock = time.perf_counter
    if "pipeline" not in fns:
        return PackageResult(stages, None, missing)
    timings: dict[str, float] = {}
    tables = fns["pipeline"](profile, raw, timings=timings)
    for name in PIPELINE_STAGES:
        stages[name] = timings.get(name)
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
