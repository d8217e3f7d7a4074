"""scaler-workbench: onboard third-party energy-data providers to Scaler.

Explore a provider's API, map its buildings, meters and usage to Scaler's standard format,
normalise units, validate, and run incremental syncs that write Scaler-ready files.

The public names below are imported lazily: ``import scaler_workbench`` stays fast and does not
pull in great-expectations, ipywidgets or openpyxl until a function that needs them is used.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("scaler-workbench")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

#: public name -> module that defines it (relative to this package)
_LAZY: dict[str, str] = {
    # errors
    "AuthError": "exceptions",
    "ConnectorError": "exceptions",
    "CredentialError": "exceptions",
    "ExportError": "exceptions",
    "FilterError": "exceptions",
    "HTTPStatusError": "exceptions",
    "MappingError": "exceptions",
    "PaginationError": "exceptions",
    "ProfileError": "exceptions",
    "ProviderUnavailableError": "exceptions",
    "QuotaExhaustedError": "exceptions",
    "RangeTooLargeError": "exceptions",
    "RequestRejectedError": "exceptions",
    "ResourceNotFoundError": "exceptions",
    "ResponseParseError": "exceptions",
    "SandboxError": "exceptions",
    "SchemaError": "exceptions",
    "StateError": "exceptions",
    "SyncError": "exceptions",
    "TransportError": "exceptions",
    "UnitError": "exceptions",
    "UsageError": "exceptions",
    "ValidationSetupError": "exceptions",
    "WorkbenchError": "exceptions",
    # schema
    "ASSETS": "schema",
    "METERS": "schema",
    "METER_SUBTYPES": "schema",
    "METER_TYPES": "schema",
    "QUARANTINE": "schema",
    "READINGS": "schema",
    "Tables": "schema",
    "USAGE": "schema",
    "check_frame": "schema",
    "coerce_frame": "schema",
    "empty_frame": "schema",
    # mapping workbook
    "apply_mapping_workbook": "mapping",
    "check_mapping": "mapping",
    "read_mapping_workbook": "mapping",
    "read_resource_filters": "mapping",
    "read_unit_choices": "mapping",
    "to_mapping_workbook": "mapping",
    # notebook plots and widgets (matplotlib / ipywidgets imported only when used)
    "ApiExplorer": "widgets",
    "CredentialsPanel": "widgets",
    "MappingHelper": "widgets",
    "QuarantineBrowser": "widgets",
    "plot_coverage": "plots",
    "plot_quarantine_reasons": "plots",
    "plot_reconciliation": "plots",
    "plot_unit_conversions": "plots",
    "plot_usage_timeline": "plots",
    # connectors
    "AUTHS": "connectors",
    "PAGINATORS": "connectors",
    "Client": "connectors",
    "Connector": "connectors",
    "FetchReport": "connectors",
    "FetchResult": "connectors",
    "authorize": "connectors",
    "detect_pagination": "connectors",
    "fetch_resources": "connectors",
    "make_auth": "connectors",
    "make_paginator": "connectors",
    "plan_requests": "connectors",
    "probe_pagination": "connectors",
    # profile
    "Profile": "profile",
    "read_profile": "profile",
    # transform / units / usage (the usage engine)
    "HeatingValue": "units",
    "apply_power_of_ten": "units",
    "build_tables": "transform",
    "calendarize": "usage",
    "conversion_factor": "units",
    "convert": "units",
    "get_registry": "units",
    "heating_value": "units",
    "normalise_tables": "units",
    "period_report": "usage",
    "process_usage": "usage",
    "readings_to_consumption": "usage",
    "resolve_conflicts": "usage",
    "resolve_unit": "units",
    "run_pipeline": "pipeline",
    "suggest_units": "units",
    # secrets
    "Secret": "_secrets",
    "redact": "_secrets",
    "redact_url": "_secrets",
    # state, sync and export
    "StateStore": "store",
    "SyncResult": "sync",
    "coverage_matrix": "coverage",
    "monthly_totals": "coverage",
    "reconcile": "reconciliation",
    "ReconcileCheck": "reconciliation",
    "parse_provider_totals": "reconciliation",
    "read_reconcile_checks": "reconciliation",
    "reconcile_totals": "reconciliation",
    "reconciliation_from_state": "sync",
    "plan_sync": "sync",
    "run_sync": "sync",
    "to_scaler_files": "export",
    # sandbox provider
    "Sandbox": "sandbox",
    "SandboxData": "sandbox",
    # validation
    "RULES": "validation",
    "RecheckResult": "validation",
    "ValidationContext": "validation",
    "ValidationResult": "validation",
    "benchmark_validation": "validation",
    "recheck_quarantine": "validation",
    "validate_assets": "validation",
    "validate_meters": "validation",
    "validate_readings": "validation",
    "validate_tables": "validation",
    "validate_usage": "validation",
}

__all__ = sorted([*_LAZY, "__version__"])


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'scaler_workbench' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"scaler_workbench.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
