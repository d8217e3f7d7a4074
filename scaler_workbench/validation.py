"""Validation and quarantine: great-expectations suites plus energy-data quality rules.

One great-expectations (GX) 1.x suite per table checks what GX expresses natively (required
columns not null, allowed meter types, ranges, ``end`` strictly after ``start``); vectorised
pandas/numpy checks cover what it cannot (duplicates, overlaps and gaps per meter, extreme
values per meter, coverage and billing periods in local days, units, references between
tables). Both feed one quarantine frame with the columns of :data:`schema.QUARANTINE`: one row
per (record, failed rule). Rules of severity ``error`` remove the row from the accepted tables;
``warning`` rows stay accepted and are listed too. Nothing is lost::

    len(accepted.<table>) + n_unique_error_records(<table>) + no_data_rows(<table>)
        == len(input.<table>)

``no_data_rows``: under the profile's missing-value policy ``"no_data"`` (the default,
``[validation] missing_values``), usage and readings rows whose value is null are delivered
without data: they leave the accepted tables without an error row and are counted per meter and
local day in :attr:`ValidationResult.no_data` (with the null values transform counted).

The rules, their default severities and thresholds are :data:`scaler_workbench._rules.RULES`;
a profile's ``[validation.rules.<rule>]`` tables override them (see docs/validation.md).

GX is imported lazily, set up once per process (ephemeral context, no analytics, no progress
bars) and its suites are cached; ``import scaler_workbench`` never imports it.
"""

from __future__ import annotations

import html
import io
import itertools
import json
import logging
import os
import re
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from scaler_workbench._quality import implausible, is_iso4217, per_hour_bounds
from scaler_workbench._rules import RULES, Rule, resolve_rules, rules_frame
from scaler_workbench._secrets import get_logger
from scaler_workbench._time import NS_PER_DAY, local_naive, local_ns, utc_text
from scaler_workbench.exceptions import (
    SchemaError,
    UnitError,
    ValidationSetupError,
    WorkbenchError,
)
from scaler_workbench.profile import missing_value_policy
from scaler_workbench.schema import (
    CANONICAL_UNITS,
    METER_SUBTYPES,
    METER_TYPES,
    QUARANTINE,
    TABLES,
    Tables,
    check_frame,
    empty_frame,
    records_json,
)
from scaler_workbench.units import resolve_unit

if TYPE_CHECKING:
    from scaler_workbench.profile import Profile

__all__ = [
    "RULES",
    "RecheckResult",
    "ValidationContext",
    "ValidationResult",
    "benchmark_validation",
    "recheck_quarantine",
    "record_keys",
    "rules_frame",
    "validate_assets",
    "validate_meters",
    "validate_readings",
    "validate_tables",
    "validate_usage",
    "write_report",
]

log = get_logger(__name__)

STAGE = "validation"
_UTC_NS = pd.DatetimeTZDtype("ns", "UTC")
_SUMMARY_COLUMNS = ["table", "rule", "severity", "engine", "rows", "failed", "percent"]
#: ``ValidationResult.no_data``: null values declared "no data", per meter and local day
NO_DATA_COLUMNS = ["table", "meter_id", "date", "values", "rows"]
_VALUE_COLUMN = {"usage": "consumption", "readings": "value"}
_TABLE_ORDER = ("assets", "meters", "usage", "readings")


# ---------------------------------------------------------------------------------------------
# results and context
# ---------------------------------------------------------------------------------------------
@dataclass
class ValidationContext:
    """What one table's validation needs to know about the others, plus the effective rules.

    Parameters
    ----------
    rules : dict of str to Rule
        Effective rules (:func:`~scaler_workbench._rules.resolve_rules` of a profile).
    timezone : str
        IANA zone for usage rows without a ``timezone`` (coverage, billing days).
    assets : DataFrame, optional
        Accepted assets; meters are checked against ``asset_id`` when given.
    meters : DataFrame, optional
        Accepted meters; usage and readings are checked against ``meter_id`` (and unit, type).
    quarantined_assets, quarantined_meters : set of str
        Parent ids quarantined by an error: children get ``parent_quarantined``.
    use_gx : bool
        Run the GX suites (default). ``False`` computes the same masks in pandas (for
        benchmarks and environments where GX cannot be imported).
    missing_values : {"no_data", "error"}
        The profile's missing-value policy (``[validation] missing_values``): ``no_data`` sets
        usage/readings rows with a null value aside without an error row (counted), ``error``
        reports them under ``required``.
    """

    rules: dict[str, Rule] = field(default_factory=lambda: dict(RULES))
    timezone: str = "UTC"
    assets: pd.DataFrame | None = None
    meters: pd.DataFrame | None = None
    quarantined_assets: frozenset[str] = frozenset()
    quarantined_meters: frozenset[str] = frozenset()
    use_gx: bool = True
    unit_checker: Callable[[str], bool] | None = None
    gx_results: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    #: per table: (record position of each quarantine row, positions removed by an error)
    positions: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    missing_values: str = "no_data"
    #: per table: positions set aside as "no data" (null value, no error finding)
    no_data: dict[str, np.ndarray] = field(default_factory=dict)
    #: interior holes of interval meters (``Tables.holes``, counted by the usage stage)
    holes: pd.DataFrame | None = None

    @classmethod
    def from_profile(
        cls,
        profile: Profile | None = None,
        *,
        assets: pd.DataFrame | None = None,
        meters: pd.DataFrame | None = None,
        use_gx: bool = True,
    ) -> ValidationContext:
        """Build a context from a profile's ``[validation]`` section and time zone."""
        return cls(
            rules=resolve_rules(profile),
            timezone=getattr(profile, "timezone", "UTC") or "UTC",
            assets=assets,
            meters=meters,
            use_gx=use_gx,
            unit_checker=_unit_checker(profile),
            missing_values=missing_value_policy(profile),
        )

    def rule(self, name: str, table: str) -> Rule | None:
        """The rule if it is enabled and applies to ``table``, else ``None``."""
        r = self.rules.get(name)
        if r is None or not r.enabled or table not in r.tables:
            return None
        return r

    def _tick(self, key: str, seconds: float) -> None:
        self.timings[key] = self.timings.get(key, 0.0) + seconds


@dataclass
class ValidationResult:
    """What :func:`validate_tables` returns.

    Attributes
    ----------
    accepted : Tables
        Rows that passed every error-severity rule; ``accepted.quarantine`` is the input's
        quarantine with this stage's rows appended.
    quarantined : DataFrame
        This stage's findings (``schema.QUARANTINE`` columns), errors and warnings.
    summary : DataFrame
        One row per table x rule that ran: ``table, rule, severity, engine, rows, failed,
        percent``.
    report_path : Path or None
        The HTML report, when ``report_dir`` was given.
    gx_results : dict
        The GX ``ExpectationSuiteValidationResult`` per table (for Data Docs or inspection).
    timings : dict
        Seconds spent per table and engine.
    no_data : DataFrame
        Null values the profile declares "no data" (``[validation] missing_values =
        "no_data"``, the default), one row per table, meter and local day (``date``,
        ``YYYY-MM-DD``): ``values``, the null values of records (counted by transform, before
        any aggregation), and ``rows``, the rows this stage set aside because their value is
        null (no error row). Empty under ``"error"``.
    """

    accepted: Tables
    quarantined: pd.DataFrame
    summary: pd.DataFrame
    report_path: Path | None = None
    gx_results: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    no_data: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=NO_DATA_COLUMNS))

    @property
    def no_data_values(self) -> int:
        """How many null values were declared "no data" (records, plus rows set aside)."""
        if not len(self.no_data):
            return 0
        return int(self.no_data["values"].sum() + self.no_data["rows"].sum())

    @property
    def errors(self) -> pd.DataFrame:
        """Findings that quarantined their row."""
        return self.quarantined[self.quarantined["severity"] == "error"]

    @property
    def warnings(self) -> pd.DataFrame:
        """Findings reported on rows that stay accepted."""
        return self.quarantined[self.quarantined["severity"] == "warning"]

    @property
    def ok(self) -> bool:
        """True when no row was quarantined."""
        return bool(len(self.errors) == 0)

    def __repr__(self) -> str:
        acc = ", ".join(f"{n}={len(f)}" for n, f in self.accepted.items())
        return (
            f"ValidationResult(accepted: {acc}; errors={len(self.errors)}, "
            f"warnings={len(self.warnings)})"
        )


@dataclass
class RecheckResult:
    """What :func:`recheck_quarantine` returns.

    Attributes
    ----------
    released : DataFrame
        One row per released record: ``table, record_key, source_id, rules`` (the rules it had
        been held for, ``;``-separated). The store marks these as released.
    still_quarantined : DataFrame
        ``schema.QUARANTINE`` rows of the records still held: fresh findings for validation-stage
        records, unchanged rows from other stages.
    records : Tables
        The released records as table rows, to merge into the accepted data.
    """

    released: pd.DataFrame
    still_quarantined: pd.DataFrame
    records: Tables

    @property
    def released_keys(self) -> list[tuple[str, str]]:
        """``(table, record_key)`` of every released record."""
        return list(zip(self.released["table"], self.released["record_key"], strict=True))

    def __repr__(self) -> str:
        return (
            f"RecheckResult(released={len(self.released)}, "
            f"still_quarantined={self.still_quarantined['record_key'].nunique()})"
        )


# ---------------------------------------------------------------------------------------------
# great-expectations: lazy import, one ephemeral context per process, cached suites
# ---------------------------------------------------------------------------------------------
@dataclass
class _GxState:
    gx: Any
    context: Any
    batch_definitions: dict[str, Any]
    validator_cls: Any
    suites: dict[tuple[Any, ...], Any] = field(default_factory=dict)
    setup_seconds: float = 0.0


_GX_LOCK = threading.Lock()
_GX: _GxState | None = None


def _gx_state() -> _GxState:
    """Import GX and build the ephemeral context once per process."""
    global _GX
    with _GX_LOCK:
        if _GX is not None:
            return _GX
        t0 = time.perf_counter()
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
        try:
            with warnings.catch_warnings():
                # GX 1.x imports the deprecated sre_constants module.
                warnings.simplefilter("ignore", DeprecationWarning)
                import great_expectations as gx
                from great_expectations.data_context.types.base import ProgressBarsConfig
                from great_expectations.validator.v1_validator import Validator

                # GX pins this module's logger to INFO; its temp-dir notice is noise in syncs.
                logging.getLogger("great_expectations.data_context.types.base").setLevel(
                    logging.WARNING
                )

                context = gx.get_context(mode="ephemeral")
                context.variables.progress_bars = ProgressBarsConfig(
                    globally=False, metric_calculations=False
                )
                source = context.data_sources.add_pandas("scaler_workbench")
                batch_definitions = {
                    name: source.add_dataframe_asset(name).add_batch_definition_whole_dataframe(
                        name
                    )
                    for name in _TABLE_ORDER
                }
        except Exception as exc:  # any failure inside GX is a setup problem, not a data one
            raise ValidationSetupError(
                f"great-expectations could not be set up: {type(exc).__name__}: {exc}",
                hint="Check the great-expectations install (pip show great-expectations); "
                "validation needs version 1.x.",
            ) from exc
        _GX = _GxState(
            gx, context, batch_definitions, Validator, setup_seconds=time.perf_counter() - t0
        )
        log.debug("great-expectations set up in %.2f s", _GX.setup_seconds)
        return _GX


def _gx_specs(
    table: str, columns: Iterable[str], ctx: ValidationContext
) -> list[tuple[str, str, dict[str, Any]]]:
    """(rule, expectation class name, kwargs) for the GX-native rules of ``table``."""
    cols = set(columns)
    specs: list[tuple[str, str, dict[str, Any]]] = []
    t = TABLES[table]
    if ctx.rule("required", table):
        for c in t.required:
            specs.append(("required", "ExpectColumnValuesToNotBeNull", {"column": c}))
    if table == "assets":
        if ctx.rule("invalid_coordinates", table):
            for c, lim in (("latitude", 90.0), ("longitude", 180.0)):
                if c in cols:
                    specs.append(
                        (
                            "invalid_coordinates",
                            "ExpectColumnValuesToBeBetween",
                            {"column": c, "min_value": -lim, "max_value": lim},
                        )
                    )
        if ctx.rule("invalid_country", table) and "country" in cols:
            specs.append(
                (
                    "invalid_country",
                    "ExpectColumnValuesToMatchRegex",
                    {"column": "country", "regex": r"^[A-Z]{2}$"},
                )
            )
        if ctx.rule("non_positive_floor_area", table) and "floor_area" in cols:
            specs.append(
                (
                    "non_positive_floor_area",
                    "ExpectColumnValuesToBeBetween",
                    {"column": "floor_area", "min_value": 0.0, "strict_min": True},
                )
            )
    elif table == "meters":
        if ctx.rule("unknown_meter_type", table):
            specs.append(
                (
                    "unknown_meter_type",
                    "ExpectColumnValuesToBeInSet",
                    {"column": "meter_type", "value_set": list(METER_TYPES)},
                )
            )
    elif table == "usage":
        if ctx.rule("end_not_after_start", table):
            specs.append(
                (
                    "end_not_after_start",
                    "ExpectColumnPairValuesAToBeGreaterThanB",
                    {
                        "column_A": "end",
                        "column_B": "start",
                        "or_equal": False,
                        "ignore_row_if": "either_value_is_missing",
                    },
                )
            )
        r = ctx.rule("negative_consumption", table)
        if r:
            specs.append(
                (
                    "negative_consumption",
                    "ExpectColumnValuesToBeBetween",
                    {"column": "consumption", "min_value": float(r.param("min"))},
                )
            )
    elif table == "readings":
        r = ctx.rule("negative_reading", table)
        if r:
            specs.append(
                (
                    "negative_reading",
                    "ExpectColumnValuesToBeBetween",
                    {"column": "value", "min_value": float(r.param("min"))},
                )
            )
    return specs


def _gx_suite(state: _GxState, table: str, specs: list[tuple[str, str, dict[str, Any]]]) -> Any:
    key = (
        table,
        *((r, e, tuple(sorted((k, repr(v)) for k, v in kw.items()))) for r, e, kw in specs),
    )
    suite = state.suites.get(key)
    if suite is not None:
        return suite
    import great_expectations.expectations as gxe

    suite = state.gx.ExpectationSuite(name=f"scaler_workbench.{table}.{len(state.suites)}")
    for rule, cls_name, kwargs in specs:
        suite.add_expectation(getattr(gxe, cls_name)(**kwargs, meta={"rule": rule}))
    suite = state.context.suites.add(suite)
    state.suites[key] = suite
    return suite


def _run_gx(
    table: str, work: pd.DataFrame, specs: list[tuple[str, str, dict[str, Any]]]
) -> tuple[Any, list[tuple[str, dict[str, Any], np.ndarray]]]:
    """Run the cached suite; return the GX result and (rule, kwargs, failing positions)."""
    state = _gx_state()
    try:
        with _GX_LOCK, warnings.catch_warnings():
            # GX's column-pair comparison reads Series.values of tz-aware columns (pandas 3).
            warnings.filterwarnings(
                "ignore", message=r"Series\.values returning an ndarray that drops timezone"
            )
            warnings.simplefilter("ignore", DeprecationWarning)
            suite = _gx_suite(state, table, specs)
            # only the columns the expectations read: GX fingerprints (hashes) the whole
            # batch frame, and the row positions it reports stay those of ``work``
            named = {kw.get(k) for _, _, kw in specs for k in ("column", "column_A", "column_B")}
            frame = work[[c for c in work.columns if c in named]]
            # one Validator (what a ValidationDefinition runs) for both passes: the batch is
            # loaded and fingerprinted once, where Batch.validate loads it again per call
            validator = state.validator_cls(
                batch_definition=state.batch_definitions[table],
                batch_parameters={"dataframe": frame},
                result_format={"result_format": "BOOLEAN_ONLY"},
            )
            # a pass/fail run first (a third cheaper); the failing rows only when some fail
            result = validator.validate_expectation_suite(suite)
            if not result.success:
                validator.result_format = {
                    "result_format": "COMPLETE",
                    "partial_unexpected_count": 20,
                    "include_unexpected_rows": False,
                }
                result = validator.validate_expectation_suite(suite)
    except WorkbenchError:
        raise
    except Exception as exc:
        raise ValidationSetupError(
            f"great-expectations failed validating {table}: {type(exc).__name__}: {exc}",
            table=table,
            hint="This is a bug or an incompatible great-expectations version, not a data "
            "problem; run with use_gx=False to validate with pandas only.",
        ) from exc
    out: list[tuple[str, dict[str, Any], np.ndarray]] = []
    for r in result.results:
        info = r.exception_info or {}
        if info.get("raised_exception"):
            raise ValidationSetupError(
                f"great-expectations expectation {r.expectation_config.type} failed on "
                f"{table}: {str(info.get('exception_message', ''))[:500]}",
                table=table,
                hint="Check the column's dtype (schema.coerce_frame) or run with use_gx=False.",
            )
        rule = (r.expectation_config.meta or {}).get("rule", "")
        idx = r.result.get("unexpected_index_list") or []
        out.append((rule, dict(r.expectation_config.kwargs), np.asarray(idx, dtype=np.int64)))
    return result, out


def _pandas_spec_mask(work: pd.DataFrame, cls_name: str, kw: dict[str, Any]) -> np.ndarray:
    """The failing-row mask of a GX spec computed in pandas (``use_gx=False``)."""
    if cls_name == "ExpectColumnValuesToNotBeNull":
        return work[kw["column"]].isna().to_numpy()
    if cls_name == "ExpectColumnValuesToBeInSet":
        s = work[kw["column"]]
        return (s.notna() & ~s.isin(kw["value_set"])).to_numpy(dtype=bool)
    if cls_name == "ExpectColumnValuesToMatchRegex":
        s = work[kw["column"]].astype("string")
        return (s.notna() & ~s.str.match(kw["regex"]).fillna(False)).to_numpy(dtype=bool)
    if cls_name == "ExpectColumnValuesToBeBetween":
        s = work[kw["column"]]
        bad = np.zeros(len(s), dtype=bool)
        v = s.to_numpy(dtype="float64", na_value=np.nan)
        with np.errstate(invalid="ignore"):
            if kw.get("min_value") is not None:
                bad |= (v <= kw["min_value"]) if kw.get("strict_min") else (v < kw["min_value"])
            if kw.get("max_value") is not None:
                bad |= v > kw["max_value"]
        return bad
    if cls_name == "ExpectColumnPairValuesAToBeGreaterThanB":
        a, b = work[kw["column_A"]], work[kw["column_B"]]
        both = (a.notna() & b.notna()).to_numpy()
        return both & ~(a > b).to_numpy(dtype=bool, na_value=False)
    raise ValidationSetupError(f"no pandas fallback for {cls_name}")  # pragma: no cover


# ---------------------------------------------------------------------------------------------
# preparing frames: lenient typing, so bad values become findings instead of exceptions
# ---------------------------------------------------------------------------------------------
def _prepare(
    frame: pd.DataFrame, table: str
) -> tuple[pd.DataFrame, dict[str, dict[str, np.ndarray]]]:
    """Typed copy of the canonical columns with a RangeIndex, and invalid-value masks."""
    if not isinstance(frame, pd.DataFrame):
        raise SchemaError(
            f"{table} must be a pandas DataFrame, got {type(frame).__name__}", table=table
        )
    check_frame(frame, table)
    t = TABLES[table]
    cols: dict[str, Any] = {}
    invalid: dict[str, dict[str, np.ndarray]] = {"invalid_datetime": {}, "invalid_number": {}}
    for c in t.columns:
        if c.name not in frame.columns:
            continue
        s = frame[c.name]
        if isinstance(s, pd.DataFrame):
            raise SchemaError(
                f"{table} has the column {c.name!r} more than once", table=table, column=c.name
            )
        s = s.reset_index(drop=True)
        if c.kind == "datetime":
            s, bad = _parse_datetimes(s, table, c.name)
            if bad is not None:
                invalid["invalid_datetime"][c.name] = bad
        elif c.kind in ("float", "int"):
            s, bad = _parse_numbers(s)
            if bad is not None:
                invalid["invalid_number"][c.name] = bad
        elif (
            c.kind == "string"
            and table in ("assets", "meters")
            and not isinstance(s.dtype, pd.StringDtype)
        ):
            s = s.astype("string")
        cols[c.name] = s
    work = pd.DataFrame(cols, copy=False)
    return work, invalid


def _parse_datetimes(s: pd.Series, table: str, col: str) -> tuple[pd.Series, np.ndarray | None]:
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        s = s if str(s.dt.tz) == "UTC" else s.dt.tz_convert("UTC")
        # pandas 3 may hold s/ms/us resolutions: the rules compute in int64 nanoseconds
        return (s if s.dtype == _UTC_NS else s.astype(_UTC_NS)), None
    if pd.api.types.is_datetime64_dtype(s.dtype):
        if s.notna().any():
            raise SchemaError(
                f"column {col!r} of {table} holds naive timestamps",
                table=table,
                column=col,
                hint="Localise to the site's time zone (tz_localize) before validating.",
            )
        return pd.Series(pd.NaT, index=s.index, dtype="datetime64[ns, UTC]"), None
    present = s.notna().to_numpy()
    try:
        parsed = pd.to_datetime(s.astype("object"), utc=True, format="ISO8601", errors="coerce")
    except (TypeError, ValueError, OverflowError):
        parsed = pd.Series(pd.NaT, index=s.index, dtype="datetime64[ns, UTC]")
    parsed = pd.Series(parsed, index=s.index).astype("datetime64[ns, UTC]")
    bad = present & parsed.isna().to_numpy()
    return parsed, (bad if bad.any() else None)


def _parse_numbers(s: pd.Series) -> tuple[pd.Series, np.ndarray | None]:
    if pd.api.types.is_bool_dtype(s.dtype):
        return pd.Series(s.to_numpy(dtype="float64", na_value=np.nan), index=s.index), None
    if pd.api.types.is_numeric_dtype(s.dtype):
        if s.dtype == np.float64:
            return s, None
        return pd.Series(s.to_numpy(dtype="float64", na_value=np.nan), index=s.index), None
    present = s.notna().to_numpy()
    parsed = pd.to_numeric(s.astype("object"), errors="coerce")
    parsed = pd.Series(np.asarray(parsed, dtype="float64"), index=s.index)
    bad = present & parsed.isna().to_numpy()
    return parsed, (bad if bad.any() else None)


# ---------------------------------------------------------------------------------------------
# findings
# ---------------------------------------------------------------------------------------------
class _Findings:
    """Failing positions per rule for one table, assembled into quarantine rows at the end."""

    def __init__(self, table: str, ctx: ValidationContext, n: int) -> None:
        self.table = table
        self.ctx = ctx
        self.n = n
        self.parts: list[tuple[Rule, np.ndarray, Any]] = []
        self.ran: dict[str, int] = {}
        #: column -> rows whose value could not be parsed (not "missing" for ``required``)
        self.invalid: dict[str, np.ndarray] = {}
        #: position -> occurrence number of a duplicate key (suffix ``#n`` of record_key)
        self.occurrence: dict[int, int] = {}
        #: position of the record of each quarantine row (set by :meth:`quarantine`)
        self.positions = np.empty(0, dtype=np.int64)
        self.unknown_unit: np.ndarray | None = None
        #: rows whose value is null under the "no_data" policy (not a ``required`` finding)
        self.no_data: np.ndarray | None = None

    def ran_rule(self, rule: Rule) -> None:
        self.ran.setdefault(rule.name, 0)

    def add(self, rule: Rule, positions: np.ndarray, detail: Any) -> None:
        """Record ``rule`` failing at ``positions`` with ``detail`` (str or one per position)."""
        self.ran_rule(rule)
        positions = np.asarray(positions, dtype=np.int64)
        if positions.size == 0:
            return
        self.ran[rule.name] += int(positions.size)
        self.parts.append((rule, positions, detail))

    def add_mask(self, rule: Rule, mask: np.ndarray, detail: Any) -> None:
        """Like :meth:`add` with a boolean mask; a callable ``detail`` gets the positions."""
        pos = np.flatnonzero(mask)
        if callable(detail):
            detail = detail(pos) if pos.size else ""
        self.add(rule, pos, detail)

    def add_columns(self, rule: Rule, masks: Mapping[str, np.ndarray], what: str) -> None:
        """One finding per row failing in any of several columns; the reason lists them."""
        self.ran_rule(rule)
        masks = {c: m for c, m in masks.items() if m is not None and m.any()}
        if not masks:
            return
        union = np.zeros(self.n, dtype=bool)
        for m in masks.values():
            union |= m
        pos = np.flatnonzero(union)
        names = np.full(pos.size, "", dtype=object)
        for c, m in masks.items():
            hit = m[pos]
            names = np.where(hit & (names != ""), names + ", " + c, np.where(hit, names + c, names))
        self.add(rule, pos, what + " in " + pd.Series(names, dtype=object))

    def error_positions(self) -> np.ndarray:
        parts = [p for r, p, _ in self.parts if r.severity == "error"]
        if not parts:
            return np.empty(0, dtype=np.int64)
        return np.unique(np.concatenate(parts))

    def quarantine(self, original: pd.DataFrame, work: pd.DataFrame) -> pd.DataFrame:
        if not self.parts:
            return empty_frame(QUARANTINE)
        order = {name: i for i, name in enumerate(RULES)}
        pos = np.concatenate([p for _, p, _ in self.parts])
        rule_idx = np.concatenate([np.full(p.size, order[r.name]) for r, p, _ in self.parts])
        rule = np.concatenate([np.full(p.size, r.name, dtype=object) for r, p, _ in self.parts])
        severity = np.concatenate(
            [np.full(p.size, r.severity, dtype=object) for r, p, _ in self.parts]
        )
        reasons = []
        for r, p, detail in self.parts:
            if isinstance(detail, str):
                reasons.append(np.full(p.size, f"{detail}. {r.ask}", dtype=object))
            else:
                d = pd.Series(np.asarray(detail, dtype=object)).astype(str)
                reasons.append(d.to_numpy(dtype=object) + f". {r.ask}")
        reason = np.concatenate(reasons)
        sort = np.lexsort((rule_idx, pos))
        pos, rule, severity, reason = pos[sort], rule[sort], severity[sort], reason[sort]
        upos, inverse = np.unique(pos, return_inverse=True)
        self.positions = pos
        every = upos.size == len(original)  # upos: distinct positions, so all of them
        rows = original if every else original.iloc[upos]
        keys = record_keys(rows, self.table, parsed=work if every else work.iloc[upos])
        if self.occurrence:
            occ = np.fromiter((self.occurrence.get(int(p), 0) for p in upos), int, upos.size)
            keys = np.where(occ > 0, keys + "#" + occ.astype(str).astype(object), keys)
        seen = (
            pd.Series(keys).groupby(keys).cumcount().to_numpy()
            if pd.unique(keys).size < keys.size
            else np.zeros(0, dtype=np.int64)
        )
        if seen.any():  # rows whose keys still collide (e.g. null key parts): number them
            keys = np.where(seen > 0, keys + "#" + (seen + 1).astype(str).astype(object), keys)
        records = _records_json(rows)
        if "source_id" in original.columns:
            src = rows["source_id"].astype("string").to_numpy(dtype=object)
        else:
            src = np.full(upos.size, None, dtype=object)
        out = pd.DataFrame(
            {
                "table": self.table,
                "record_key": keys[inverse],
                "source_id": src[inverse],
                "stage": STAGE,
                "rule": rule,
                "severity": severity,
                "reason": reason,
                "record": records[inverse],
            }
        )
        return out.astype(QUARANTINE.dtypes)

    def summary(self) -> pd.DataFrame:
        rows = [
            {
                "table": self.table,
                "rule": name,
                "severity": self.ctx.rules[name].severity,
                "engine": self.ctx.rules[name].engine,
                "rows": self.n,
                "failed": count,
                "percent": round(100.0 * count / self.n, 3) if self.n else 0.0,
            }
            for name, count in self.ran.items()
        ]
        return pd.DataFrame(rows, columns=_SUMMARY_COLUMNS)


def record_keys(
    frame: pd.DataFrame, table: str, *, parsed: pd.DataFrame | None = None
) -> np.ndarray:
    """The ``record_key`` of every row: key columns joined by ``|`` (UTC ISO 8601 datetimes).

    Parameters
    ----------
    frame : DataFrame
        Rows of ``table`` (any index).
    table : str
        ``assets``, ``meters``, ``usage`` or ``readings``.
    parsed : DataFrame, optional
        The same rows with datetimes already parsed (positionally aligned).

    Returns
    -------
    numpy.ndarray of str
    """
    t = TABLES[table]
    n = len(frame)
    out: np.ndarray | None = None
    for col in t.key:
        if col not in frame.columns:
            part = np.full(n, "", dtype=object)
        elif t.column(col).kind == "datetime":
            raw = frame[col].reset_index(drop=True)
            if parsed is not None and col in parsed.columns:
                dt = parsed[col].reset_index(drop=True)
            else:
                dt, _ = _parse_datetimes(raw, table, col)
            if not isinstance(dt.dtype, pd.DatetimeTZDtype):
                dt, _ = _parse_datetimes(dt, table, col)
            part = utc_text(dt, "s")
            nat = np.flatnonzero(dt.isna().to_numpy())
            if nat.size:  # unparsed values keep their text (only those are formatted)
                part[nat] = _key_text(raw.iloc[nat])
        else:
            part = _key_text(frame[col])
        out = part if out is None else out + "|" + part
    assert out is not None
    return out


def _key_text(s: pd.Series) -> np.ndarray:
    """``s.astype("string").fillna("")`` as an object array: text columns are read as they
    are, categoricals through their categories, other dtypes through pandas."""
    if isinstance(s.dtype, pd.StringDtype):
        return np.asarray(s.to_numpy(dtype=object, na_value=""), dtype=object)
    if isinstance(s.dtype, pd.CategoricalDtype):
        cats = _key_text(pd.Series(s.cat.categories))
        codes = np.asarray(s.cat.codes, dtype=np.int64)
        text = np.append(cats, "").astype(object)
        return text[np.where(codes >= 0, codes, cats.size)]
    return s.astype("string").fillna("").to_numpy(dtype=object)


def _records_json(rows: pd.DataFrame) -> np.ndarray:
    """Each row as one JSON object (ISO 8601 datetimes), vectorised through ``to_json``."""
    if rows.empty:
        return np.empty(0, dtype=object)
    return np.asarray(records_json(rows, keep_private=True), dtype=object)


# ---------------------------------------------------------------------------------------------
# helpers shared by the rules
# ---------------------------------------------------------------------------------------------
def _codes(s: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Integer codes (-1 for null) and categories of an id column; cheap for categoricals."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        return np.asarray(s.cat.codes, dtype=np.int64), pd.Index(s.cat.categories)
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    return np.asarray(codes, dtype=np.int64), pd.Index(uniques)


def _lookup(s: pd.Series, index: pd.Index) -> np.ndarray:
    """Position of each value of ``s`` in the unique ``index`` (-1 when absent or null)."""
    codes, cats = _codes(s)
    where = np.asarray(index.get_indexer(cats.astype(object)), dtype=np.int64)
    if where.size == 0:
        return np.full(len(s), -1, dtype=np.int64)
    return np.where(codes >= 0, where[np.maximum(codes, 0)], -1)


def _isin(s: pd.Series, values: Iterable[Any]) -> np.ndarray:
    codes, cats = _codes(s)
    hit = np.asarray(cats.isin(list(values)), dtype=bool)
    if hit.size == 0:
        return np.zeros(len(s), dtype=bool)
    return (codes >= 0) & hit[np.maximum(codes, 0)]


def _distinct_check(s: pd.Series, check: Callable[[Any], bool]) -> np.ndarray:
    """``check`` once per distinct non-null value; True where a row's value fails it."""
    codes, cats = _codes(s)
    if cats.size == 0:
        return np.zeros(len(s), dtype=bool)
    fails = np.fromiter((not check(v) for v in cats), dtype=bool, count=cats.size)
    return (codes >= 0) & fails[np.maximum(codes, 0)]


def _as_ns(s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """int64 ns since epoch and a validity mask of a tz-aware datetime column."""
    valid = s.notna().to_numpy()
    ns = np.asarray(s.array.asi8 if hasattr(s.array, "asi8") else s.astype("int64"))
    return ns.astype(np.int64, copy=False), valid


def _str_values(s: pd.Series, pos: np.ndarray) -> pd.Series:
    return s.iloc[pos].astype("string").fillna("<null>").astype(object).reset_index(drop=True)


def _is_timezone(name: Any) -> bool:
    if not isinstance(name, str) or not name:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _unit_checker(profile: Profile | None) -> Callable[[str], bool]:
    """A predicate telling whether a unit label is known (once per distinct label).

    Canonical units always are. Other labels go to :func:`scaler_workbench.units.resolve_unit`
    with the profile's ``[units.aliases]`` (so an ambiguous label such as "therms" without an
    alias is not known): the package's one pint registry, never another.
    """
    canonical = set(CANONICAL_UNITS.values())
    aliases: dict[str, str] = {}
    if profile is not None:
        raw = profile.section("units").get("aliases", {})
        if isinstance(raw, Mapping):
            aliases = {str(k): str(v) for k, v in raw.items()}
    cache: dict[str, bool] = {}

    def known(label: Any) -> bool:
        if not isinstance(label, str) or not label.strip():
            return False
        if label in canonical:
            return True
        if label not in cache:
            try:
                resolve_unit(label, aliases)  # the package's one registry (units.get_registry)
                cache[label] = True
            except UnitError:  # units translates every pint error into UnitError
                cache[label] = False
        return cache[label]

    return known


def _local_days(
    start: pd.Series, end: pd.Series, tz: pd.Series | None, default_tz: str
) -> np.ndarray:
    """Local calendar days touched by each [start, end) period (NaN where undefined)."""
    n = len(start)
    s_ns, s_ok = _as_ns(start)
    e_ns, e_ok = _as_ns(end)
    ok = s_ok & e_ok & (e_ns > s_ns)
    days = np.full(n, np.nan)
    if tz is None:
        groups: list[tuple[str, np.ndarray]] = [(default_tz, ok)]
    else:
        codes, cats = _codes(tz)
        groups = [(default_tz, ok & (codes < 0))]
        for i, name in enumerate(cats):
            groups.append((str(name) if _is_timezone(name) else default_tz, ok & (codes == i)))
    for name, mask in groups:
        if not mask.any():
            continue
        idx = np.flatnonzero(mask)
        ls = local_ns(s_ns[idx], name)
        le = local_ns(e_ns[idx], name)
        first = np.floor_divide(ls, NS_PER_DAY)
        last = -np.floor_divide(-le, NS_PER_DAY)  # ceil: a period ending at 00:00 excludes that day
        days[idx] = (last - first).astype(np.float64)
    return days


def _group_order(codes: np.ndarray, *keys: np.ndarray) -> np.ndarray:
    """Stable order by (codes, *keys): free when already sorted, else chained stable sorts.

    Chained ``argsort(kind="stable")`` with the group codes last (as int16 when they fit, so
    numpy uses radix sort) is 2-7x faster than ``np.lexsort`` on these shapes.
    """
    n = codes.size
    if n < 2:
        return np.arange(n)
    ok = np.ones(n - 1, dtype=bool)
    tie = np.ones(n - 1, dtype=bool)
    for k in (codes, *keys):
        d_gt = k[1:] > k[:-1]
        d_eq = k[1:] == k[:-1]
        ok = ok & ~(tie & ~d_gt & ~d_eq)
        tie = tie & d_eq
    if ok.all():
        return np.arange(n)
    order = np.arange(n)
    for k in reversed(keys):
        order = order[np.argsort(k[order], kind="stable")]
    small = codes.astype(np.int16) if codes.max(initial=0) < 32_767 else codes
    return order[np.argsort(small[order], kind="stable")]


def _sorted_groups(codes: np.ndarray, *keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stable order by (codes, *keys) and the mask of the first row of each code group."""
    order = _group_order(codes, *keys)
    g = codes[order]
    first = np.ones(g.size, dtype=bool)
    first[1:] = g[1:] != g[:-1]
    return order, first


# ---------------------------------------------------------------------------------------------
# the per-table validators
# ---------------------------------------------------------------------------------------------
def _validate(
    table: str,
    frame: pd.DataFrame,
    profile: Profile | None,
    context: ValidationContext | None,
    rules_fn: Callable[[pd.DataFrame, _Findings, ValidationContext], None],
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    ctx = context if context is not None else ValidationContext.from_profile(profile)
    if ctx.unit_checker is None:
        ctx.unit_checker = _unit_checker(profile)
    t0 = time.perf_counter()
    work, invalid = _prepare(frame, table)
    found = _Findings(table, ctx, len(work))
    for name, masks in invalid.items():
        found.invalid.update(masks)
        r = ctx.rule(name, table)
        if r:
            what = "not an ISO 8601 timestamp" if name == "invalid_datetime" else "not a number"
            found.add_columns(r, masks, what)
    value_col = _VALUE_COLUMN.get(table)
    if (
        ctx.missing_values == "no_data"
        and value_col is not None
        and value_col in work
        and len(work)
    ):
        nulls = work[value_col].isna().to_numpy()
        bad_value = found.invalid.get(value_col)
        found.no_data = nulls if bad_value is None else nulls & ~bad_value
    ctx._tick(f"{table}.prepare", time.perf_counter() - t0)

    # GX-native rules
    t0 = time.perf_counter()
    specs = _gx_specs(table, work.columns, ctx)
    if specs and len(work):
        if ctx.use_gx:
            gx_result, failures = _run_gx(table, work, specs)
            ctx.gx_results[table] = gx_result
        else:
            failures = [
                (rule, kw, np.flatnonzero(_pandas_spec_mask(work, cls, kw)))
                for rule, cls, kw in specs
            ]
        _add_gx_findings(table, work, failures, found, ctx)
    else:
        for rule, _, _ in specs:
            found.ran_rule(ctx.rules[rule])
    ctx._tick(f"{table}.gx" if ctx.use_gx else f"{table}.gx_pandas", time.perf_counter() - t0)

    t0 = time.perf_counter()
    if len(work):
        rules_fn(work, found, ctx)
        _check_control_characters(frame, found, ctx, table)
        if table == "meters":
            _check_possible_duplicate_meters(frame, found, ctx)
    else:
        for r in ctx.rules.values():
            if r.enabled and table in r.tables and r.engine == "pandas":
                found.ran_rule(r)
    ctx._tick(f"{table}.pandas", time.perf_counter() - t0)

    t0 = time.perf_counter()
    quarantined = found.quarantine(frame, work)
    bad = found.error_positions()
    ctx.positions[table] = (found.positions, bad)
    keep = np.ones(len(frame), dtype=bool)
    keep[bad] = False
    summary = found.summary()
    if found.no_data is not None:
        no_data = found.no_data & keep  # a row with an error finding is counted there
        keep &= ~no_data
        ctx.no_data[table] = np.flatnonzero(no_data)
        row = pd.DataFrame(
            [
                {
                    "table": table,
                    "rule": "no_data",
                    "severity": "no_data",
                    "engine": "policy",
                    "rows": len(frame),
                    "failed": int(no_data.sum()),
                    "percent": round(100.0 * no_data.sum() / len(frame), 3) if len(frame) else 0.0,
                }
            ],
            columns=_SUMMARY_COLUMNS,
        )
        summary = pd.concat([summary, row], ignore_index=True) if len(summary) else row
    accepted = frame if keep.all() else frame.iloc[keep]
    ctx._tick(f"{table}.assemble", time.perf_counter() - t0)
    return accepted, quarantined, summary


def _add_gx_findings(
    table: str,
    work: pd.DataFrame,
    failures: list[tuple[str, dict[str, Any], np.ndarray]],
    found: _Findings,
    ctx: ValidationContext,
) -> None:
    required: dict[str, np.ndarray] = {}
    for rule_name, kw, pos in failures:
        rule = ctx.rules[rule_name]
        if rule_name == "required":
            mask = np.zeros(len(work), dtype=bool)
            mask[pos] = True
            bad_value = found.invalid.get(kw["column"])
            mask = mask if bad_value is None else mask & ~bad_value
            if found.no_data is not None and kw["column"] == _VALUE_COLUMN.get(table):
                mask &= ~found.no_data  # delivered without data: counted, not an error
            required[kw["column"]] = mask
            continue
        if rule_name == "end_not_after_start":
            found.add(
                rule,
                pos,
                "end "
                + _str_values(work["end"], pos)
                + " is not after start "
                + _str_values(work["start"], pos),
            )
            continue
        col = kw["column"]
        values = _str_values(work[col], pos)
        if rule_name == "unknown_meter_type":
            detail = "meter_type '" + values + "' is not one of " + ", ".join(METER_TYPES)
        elif "regex" in kw:
            detail = f"{col} '" + values + "' is not a two-letter ISO 3166-1 code"
        else:
            lo, hi = kw.get("min_value"), kw.get("max_value")
            bounds = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
            if kw.get("strict_min"):
                bounds = f"> {lo}"
            detail = f"{col} " + values + f" is not {bounds}"
        found.add(rule, pos, detail)
    r = ctx.rule("required", table)
    if r:
        found.add_columns(r, required, "missing value")


def _check_units(work: pd.DataFrame, found: _Findings, ctx: ValidationContext, table: str) -> None:
    unit = work["unit"]
    known = ctx.unit_checker or _unit_checker(None)
    r_unknown = ctx.rule("unknown_unit", table)
    r = ctx.rule("non_canonical_unit", table)
    if not (r_unknown or r):
        return
    unknown = _distinct_check(unit, known)
    found.unknown_unit = unknown
    if r_unknown:
        found.add_mask(
            r_unknown,
            unknown,
            lambda p: "unit '" + _str_values(unit, p) + "' is unknown or ambiguous",
        )
    if not r:
        return
    ucodes, ucats = _codes(unit)
    present = (ucodes >= 0) & ~unknown
    if table == "meters":
        expected = work["meter_type"].astype(object).map(CANONICAL_UNITS)
        # missing values as None, never pd.NA: NA != "kWh" has no truth value
        have = unit.astype(object).where(unit.notna(), None).to_numpy()
        want = expected.where(expected.notna(), None).to_numpy()
        bad = present & expected.notna().to_numpy() & (have != want)
    elif ctx.meters is not None and "meter_type" in ctx.meters.columns:
        meters = ctx.meters.drop_duplicates("meter_id")
        pos = _lookup(work["meter_id"], pd.Index(meters["meter_id"].astype(object)))
        exp_unit = meters["meter_type"].astype(object).map(CANONICAL_UNITS)
        exp_code = np.asarray(ucats.get_indexer(exp_unit.fillna("").astype(object)), np.int64)
        has = exp_unit.notna().to_numpy()
        safe = np.maximum(pos, 0)
        bad = present & (pos >= 0) & has[safe] & (exp_code[safe] != ucodes)
        expected = pd.Series(exp_unit.to_numpy(dtype=object)[safe], dtype=object)
    else:
        bad = present & ~_isin(unit, CANONICAL_UNITS.values())
        found.add_mask(
            r, bad, lambda p: "unit '" + _str_values(unit, p) + "' is not a canonical unit"
        )
        return
    found.add_mask(
        r,
        bad,
        lambda p: (
            "unit '"
            + _str_values(unit, p)
            + "' is not "
            + _str_values(expected, p)
            + ", the canonical unit of the meter type"
        ),
    )


def _check_parents(
    work: pd.DataFrame,
    found: _Findings,
    ctx: ValidationContext,
    table: str,
    *,
    id_col: str,
    parents: pd.DataFrame | None,
    quarantined: frozenset[str],
    unknown_rule: str,
) -> np.ndarray | None:
    """Reference checks; returns each row's position in ``parents`` (or None)."""
    if parents is None:
        return None
    ids = work[id_col]
    index = pd.Index(parents[id_col].astype(object)).drop_duplicates()
    pos = _lookup(ids, index)
    present = ids.notna().to_numpy()
    in_q = _isin(ids, quarantined) if quarantined else np.zeros(len(ids), dtype=bool)
    parent_name = "asset" if id_col == "asset_id" else "meter"
    r = ctx.rule(unknown_rule, table)
    if r:
        found.add_mask(
            r,
            present & (pos < 0) & ~in_q,
            lambda p: f"{id_col} '" + _str_values(ids, p) + f"' is not in the {parent_name}s table",
        )
    r = ctx.rule("parent_quarantined", table)
    if r:
        found.add_mask(
            r,
            present & in_q,
            lambda p: f"{parent_name} '" + _str_values(ids, p) + "' is quarantined",
        )
    return pos


def _check_timezone(
    work: pd.DataFrame, found: _Findings, ctx: ValidationContext, table: str
) -> None:
    r = ctx.rule("unknown_timezone", table)
    if r and "timezone" in work.columns:
        tz = work["timezone"]
        bad = _distinct_check(tz, _is_timezone)
        found.add_mask(
            r, bad, lambda p: "timezone '" + _str_values(tz, p) + "' is not an IANA zone"
        )


def _check_duplicates_small(
    work: pd.DataFrame, found: _Findings, ctx: ValidationContext, table: str
) -> None:
    r = ctx.rule("duplicate_key", table)
    if not r:
        return
    key = list(TABLES[table].key)
    keep = "first" if r.param("keep") == "first" else False
    dup = (
        work.duplicated(subset=key, keep=keep).to_numpy() & work[key].notna().all(axis=1).to_numpy()
    )
    if dup.any():
        occ = work.groupby(key, dropna=False, sort=False).cumcount().to_numpy() + 1
        found.occurrence.update(zip(np.flatnonzero(dup).tolist(), occ[dup].tolist(), strict=True))
    found.add_mask(r, dup, f"duplicate {'+'.join(key)}")


#: characters a workbook cannot hold or a terminal acts on (export.CONTROL_CHARACTERS)
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_CONTROL_BYTES = bytes([*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])  # its ASCII part


def _check_control_characters(
    frame: pd.DataFrame, found: _Findings, ctx: ValidationContext, table: str
) -> None:
    """``control_characters``: text cells the XLSX must alter (the record is kept, flagged)."""
    r = ctx.rule("control_characters", table)
    if not r:
        return
    masks: dict[str, np.ndarray] = {}
    for col in frame.columns:
        s = frame[col]
        if not (s.dtype == object or pd.api.types.is_string_dtype(s.dtype)):
            continue
        if _no_control_characters(s):
            continue
        try:
            mask = s.astype(object).str.contains(_CONTROL, na=False).to_numpy(dtype=bool)
        except AttributeError:  # no text in the column (e.g. datetimes held as objects)
            continue
        if mask.any():
            masks[col] = mask
    found.add_columns(r, masks, "control characters")


def _no_control_characters(s: pd.Series) -> bool:
    """True when no text of ``s`` holds a control character: one scan of the joined texts
    (a single-character class cannot match across two texts). False when some text holds
    one, or when ``s`` holds values that are neither text nor null (pandas decides then)."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        s = pd.Series(s.cat.categories)
    if not (isinstance(s.dtype, pd.StringDtype) or s.dtype == object):
        return False
    try:
        text = "".join(s.to_numpy(dtype=object, na_value=""))
    except TypeError:
        return False
    if text.isascii():  # bytes.translate drops the control bytes at C speed
        raw = text.encode("ascii")
        return len(raw.translate(None, _CONTROL_BYTES)) == len(raw)
    return _CONTROL.search(text) is None


def _check_possible_duplicate_meters(
    frame: pd.DataFrame, found: _Findings, ctx: ValidationContext
) -> None:
    """``possible_duplicate_meter``: distinct meter ids sharing a service id / meter number.

    Reads the rule's ``fields`` among the meters frame's columns (extra mapped columns such as
    ``service_id`` or ``serial``; a field that is not a column is skipped). Meters are compared
    within the same ``meter_type``, ``meter_subtype`` and ``direction`` (where those columns
    exist); every meter after the first of a group is flagged, naming the first.
    """
    r = ctx.rule("possible_duplicate_meter", "meters")
    if not r:
        return
    f = frame.reset_index(drop=True)
    if "meter_id" not in f.columns:
        return
    ids = f["meter_id"].astype("string")
    groups = {
        c: f[c].astype("string").fillna("")
        for c in ("meter_type", "meter_subtype", "direction")
        if c in f.columns
    }
    details: dict[int, list[str]] = {}
    for name in r.param("fields"):
        if name not in f.columns or name == "meter_id":
            continue
        values = f[name].astype("string").str.strip()
        d = pd.DataFrame({"value": values, "id": ids, **groups})
        d = d[(values.notna() & (values != "") & ids.notna()).to_numpy(dtype=bool)]
        key = ["value", *groups]
        d = d.drop_duplicates(subset=[*key, "id"])  # a repeated meter id is duplicate_key's
        d = d[d.duplicated(subset=key, keep=False).to_numpy()]
        for _, g in d.groupby(key, sort=False, dropna=False):
            first = str(g["id"].iloc[0])
            value = str(g["value"].iloc[0])
            for pos, mid in zip(g.index[1:], g["id"].iloc[1:], strict=True):
                details.setdefault(int(pos), []).append(
                    f"meter {str(mid)!r} has the same {name} {value!r} as meter {first!r}"
                )
    found.ran_rule(r)
    if not details:
        return
    positions = np.array(sorted(details), dtype=np.int64)
    texts = [
        "; ".join(details[int(p)]) + ": both are kept as separate meters (possible double counting)"
        for p in positions
    ]
    found.add(r, positions, pd.Series(texts, dtype=object))


def _assets_rules(work: pd.DataFrame, found: _Findings, ctx: ValidationContext) -> None:
    _check_duplicates_small(work, found, ctx, "assets")
    _check_timezone(work, found, ctx, "assets")


def _meters_rules(work: pd.DataFrame, found: _Findings, ctx: ValidationContext) -> None:
    _check_duplicates_small(work, found, ctx, "meters")
    _check_units(work, found, ctx, "meters")
    r = ctx.rule("unknown_meter_subtype", "meters")
    if r and "meter_subtype" in work.columns:
        ok_pairs = {f"{t}\x1f{s}" for t, subs in METER_SUBTYPES.items() for s in subs}
        sub = work["meter_subtype"]
        pair = work["meter_type"].astype("string").fillna("") + "\x1f" + sub.astype("string")
        valid_type = work["meter_type"].isin(METER_TYPES).to_numpy(dtype=bool)
        bad = sub.notna().to_numpy() & valid_type & ~pair.isin(ok_pairs).to_numpy(dtype=bool)
        mtype = work["meter_type"]
        found.add_mask(
            r,
            bad,
            lambda p: (
                "meter_subtype '"
                + _str_values(sub, p)
                + "' is not a "
                + _str_values(mtype, p)
                + " subtype"
            ),
        )
    _check_parents(
        work,
        found,
        ctx,
        "meters",
        id_col="asset_id",
        parents=ctx.assets,
        quarantined=ctx.quarantined_assets,
        unknown_rule="unknown_asset",
    )


def _series_common(
    work: pd.DataFrame, found: _Findings, ctx: ValidationContext, table: str
) -> None:
    _check_units(work, found, ctx, table)
    _check_timezone(work, found, ctx, table)
    pos = _check_parents(
        work,
        found,
        ctx,
        table,
        id_col="meter_id",
        parents=ctx.meters,
        quarantined=ctx.quarantined_meters,
        unknown_rule="unknown_meter",
    )
    r = ctx.rule("unit_mismatch", table)
    if r and pos is not None and ctx.meters is not None and "unit" in ctx.meters.columns:
        meters = ctx.meters.drop_duplicates("meter_id")
        unit = work["unit"]
        ucodes, ucats = _codes(unit)
        munit = meters["unit"].astype(object)
        mcode = np.asarray(ucats.get_indexer(munit.fillna("").astype(object)), dtype=np.int64)
        has = munit.notna().to_numpy()
        safe = np.maximum(pos, 0)
        bad = (pos >= 0) & (ucodes >= 0) & has[safe] & (mcode[safe] != ucodes)
        if found.unknown_unit is not None:  # an unknown unit is reported as such, once
            bad &= ~found.unknown_unit
        expected = pd.Series(munit.to_numpy(dtype=object)[safe], dtype=object)
        found.add_mask(
            r,
            bad,
            lambda p: (
                "unit '"
                + _str_values(unit, p)
                + "' differs from the meter's unit '"
                + _str_values(expected, p)
                + "'"
            ),
        )


def _flag_sorted_duplicates(
    found: _Findings, r: Rule, n: int, srt: np.ndarray, same: np.ndarray, what: str
) -> np.ndarray:
    """Flag repeated keys given rows sorted by key (``same``: equal to the previous row)."""
    dup = np.zeros(n, dtype=bool)
    if not same.any():
        found.ran_rule(r)
        return dup
    i = np.arange(srt.size)
    run_start = np.maximum.accumulate(np.where(same, 0, i))
    occ = i - run_start + 1
    flag = same.copy()
    if r.param("keep") != "first":
        lead = np.zeros(srt.size, dtype=bool)
        lead[:-1] = same[1:]
        flag |= lead
    dup[srt[flag]] = True
    found.occurrence.update(zip(srt[flag].tolist(), occ[flag].tolist(), strict=True))
    found.add_mask(r, dup, what)
    return dup


def _check_values(work: pd.DataFrame, found: _Findings, ctx: ValidationContext, table: str) -> None:
    """``non_finite`` (±inf in any value column), ``implausible_value`` (usage: magnitude
    beyond ``max_per_hour`` x hours of the row's unit) and ``invalid_currency`` (usage: cost
    without an ISO 4217 currency)."""
    cols = ("consumption", "redelivery", "production", "cost") if table == "usage" else ("value",)
    present = [c for c in cols if c in work.columns]
    values = {c: work[c].to_numpy(dtype="float64", na_value=np.nan) for c in present}
    infinite = {c: np.isinf(v) for c, v in values.items()}
    r = ctx.rule("non_finite", table)
    if r:
        found.add_columns(r, infinite, "infinite value")
    r = ctx.rule("implausible_value", table)
    if r and table == "usage":
        s_ns, s_ok = _as_ns(work["start"])
        e_ns, e_ok = _as_ns(work["end"])
        seconds = np.where(s_ok & e_ok, (e_ns - s_ns) / 1e9, np.nan)
        unit_col = work["unit"]
        units = (
            unit_col
            if isinstance(unit_col.dtype, pd.CategoricalDtype)
            else unit_col.astype("category")
        )
        bounds = dict(r.param("max_per_hour"))
        masks: dict[str, np.ndarray] = {}
        for c in ("consumption", "redelivery", "production"):
            if c in values:
                masks[c] = implausible(values[c], units, seconds, bounds=bounds) & ~infinite[c]
        hit = np.zeros(len(work), dtype=bool)
        for m in masks.values():
            hit |= m
        if hit.any():
            pos = np.flatnonzero(hit)
            per_hour = per_hour_bounds(units, len(work), bounds=bounds)[pos]
            hours = np.where(
                np.isfinite(seconds[pos]) & (seconds[pos] > 0), seconds[pos] / 3600, 1.0
            )
            col = next(iter(masks))
            shown = np.where(masks[col][pos], values[col][pos], np.nan)
            for c, m in masks.items():
                shown = np.where(np.isnan(shown) & m[pos], values[c][pos], shown)
            found.add(
                r,
                pos,
                "value "
                + _fmt_num(shown)
                + " "
                + pd.Series(units.to_numpy(dtype=object)[pos], dtype=object).astype(str)
                + " is above the plausible "
                + _fmt_num(per_hour * hours)
                + " for "
                + _fmt_num(hours)
                + " h (max_per_hour "
                + _fmt_num(per_hour)
                + ")",
            )
        else:
            found.ran_rule(r)
    r = ctx.rule("invalid_currency", table)
    if r and table == "usage" and "cost" in values:
        has_cost = ~np.isnan(values["cost"])
        if has_cost.any():
            cur = (
                work["currency"].astype("category")
                if "currency" in work.columns
                else pd.Series(pd.Categorical([None] * len(work)))
            )
            bad = has_cost & ~is_iso4217(cur)
            found.add_mask(
                r,
                bad,
                lambda p: (
                    "cost has currency '"
                    + pd.Series(cur.to_numpy()[p], dtype=object).fillna("").astype(str)
                    + "', not an ISO 4217 code"
                ),
            )
        else:
            found.ran_rule(r)


def _hole_findings(
    work: pd.DataFrame,
    found: _Findings,
    ctx: ValidationContext,
    valid: np.ndarray,
    s_ns: np.ndarray,
    e_ns: np.ndarray,
) -> None:
    """``missing_day`` / ``missing_intervals``: each interior hole the usage stage counted
    (``ctx.holes``) is a finding on the usage period (a day or longer) that contains its
    local date, naming the local dates and times."""
    holes = ctx.holes
    rules = {k: ctx.rule(k, "usage") for k in ("missing_day", "missing_intervals")}
    for r in rules.values():
        if r is not None:
            found.ran_rule(r)
    if holes is None or not len(holes) or not any(rules.values()):
        return
    cand = np.flatnonzero(valid & (e_ns - s_ns >= NS_PER_DAY))
    if not cand.size:
        return
    zones = (
        work["timezone"].astype(object).to_numpy()[cand]
        if "timezone" in work.columns
        else np.full(cand.size, None, dtype=object)
    )
    zones = np.where(pd.isna(zones), ctx.timezone, zones).astype(object)
    lo = np.empty(cand.size, dtype=np.int64)
    hi = np.empty(cand.size, dtype=np.int64)
    for zone in pd.unique(zones):
        m = zones == zone
        lo[m] = local_ns(s_ns[cand][m], str(zone))
        hi[m] = local_ns(e_ns[cand][m], str(zone))
    # each hole's period: rows sorted by (meter, first local day); a hole belongs to the last
    # row of its meter starting on or before its day, when that row reaches the day
    codes_all, _ = pd.factorize(
        np.r_[_str_array(work["meter_id"].iloc[cand]), _str_array(holes["meter_id"])]
    )
    r_code, h_code = codes_all[: cand.size].astype(np.int64), codes_all[cand.size :]
    r_lo, r_hi = lo // NS_PER_DAY, (hi - 1) // NS_PER_DAY
    # hole dates repeat (one per hole, few distinct days): parse each distinct one once
    d_codes, d_uniq = pd.factorize(_str_array(holes["date"]), use_na_sentinel=False)
    h_day = (
        pd.to_datetime(pd.Series(d_uniq, dtype=object), format="%Y-%m-%d")
        .to_numpy(dtype="datetime64[D]")
        .astype(np.int64)[d_codes]
    )
    span = 1 << 24  # days since 1970 fit well below 2**24
    r_key = r_code * span + (r_lo + span // 2)
    order = np.argsort(r_key, kind="stable")
    at = np.searchsorted(
        r_key[order], h_code.astype(np.int64) * span + (h_day + span // 2), "right"
    )
    at -= 1
    ok = at >= 0
    row = order[np.where(ok, at, 0)]
    ok &= (r_code[row] == h_code) & (h_day <= r_hi[row])
    hole_at = np.flatnonzero(ok)  # the holes that fall in a period, in their order
    hole_pos = cand[row[ok]]
    kinds = _str_array(holes["kind"])[hole_at]
    n_all = holes["missing_intervals"].to_numpy(dtype=np.int64)[hole_at]
    for kind, name in (("day", "missing_day"), ("intervals", "missing_intervals")):
        r = rules[name]
        sel = np.flatnonzero(kinds == kind)
        if r is None or not sel.size:
            continue
        # each period's holes in hole order (a stable sort by period): the first
        # _HOLES_SHOWN are named, the rest only counted, so only those get a text
        order = sel[np.argsort(hole_pos[sel], kind="stable")]
        sp = hole_pos[order]
        starts = np.flatnonzero(np.r_[True, sp[1:] != sp[:-1]])
        sizes = np.diff(np.r_[starts, sp.size])
        rank = np.arange(sp.size) - np.repeat(starts, sizes)
        keep = rank < _HOLES_SHOWN
        text, lead = _hole_texts(holes, hole_at[order[keep]], kind)
        # join each period's texts (its named holes are consecutive in ``text``)
        fp = sp[keep]
        first = np.flatnonzero(np.r_[True, fp[1:] != fp[:-1]])
        bounds = np.r_[first, fp.size].tolist()
        texts = text.tolist()
        shown = [", ".join(texts[i:j]) for i, j in itertools.pairwise(bounds)]
        total = np.add.reduceat(n_all[order], starts)
        tail = " [missing intervals in brackets]"
        reasons = [
            f"{lead}{t}{tail}"
            if c <= _HOLES_SHOWN
            else f"{lead}{t} and {c - _HOLES_SHOWN} more ({k} intervals in all){tail}"
            for t, c, k in zip(shown, sizes.tolist(), total.tolist(), strict=True)
        ]
        found.add(r, fp[first].astype(np.int64), reasons)


def _str_array(s: pd.Series) -> np.ndarray:
    """``s.astype(str)`` as an object array; a text column without nulls is read as it is."""
    if isinstance(s.dtype, pd.StringDtype) and not s.hasnans:
        return np.asarray(s.to_numpy(dtype=object), dtype=object)
    return s.astype(str).to_numpy(dtype=object)


def _hole_texts(holes: pd.DataFrame, at: np.ndarray, kind: str) -> tuple[np.ndarray, str]:
    """The text of the holes at positions ``at`` in a finding (object array), and the
    finding's lead words.

    One Python string operation per hole on object arrays (far cheaper than pandas'
    string-dtype arithmetic); a column with a missing cell takes the pandas expressions,
    which give missing texts the way they always did.
    """
    cols = ["date", "missing_intervals"] + (["start_local", "end_local"] if kind != "day" else [])
    if kind == "day":
        lead = "no data on local day(s) "
    else:
        lead = "missing intervals, local "
    picked = {c: holes[c].iloc[at] for c in cols}
    if any(v.hasnans for v in picked.values()):
        part = holes.iloc[at]
        n_missing = part["missing_intervals"].astype(str)
        if kind == "day":
            series = part["date"].astype(str) + " (" + n_missing + ")"
        else:
            series = (
                part["date"].astype(str)
                + " "
                + part["start_local"].astype(str).str[11:16]
                + "-"
                + part["end_local"].astype(str).str[11:16].replace("00:00", "24:00")
                + " ("
                + n_missing
                + ")"
            )
        return series.to_numpy(dtype=object).copy(), lead

    def text_of(col: str) -> list[Any]:
        v = picked[col]
        if pd.api.types.is_integer_dtype(v.dtype):  # str(int) is astype(str)'s text
            return v.to_numpy(dtype=np.int64).tolist()
        return _str_array(v).tolist()

    if kind == "day":
        date, n_missing = text_of("date"), text_of("missing_intervals")
        return np.array([f"{d} ({k})" for d, k in zip(date, n_missing, strict=True)], object), lead
    # the same (date, start, end, count) recurs across meters (a feed's outage, a clock
    # change): one text per distinct combination, taken back to every hole by its code
    codes, bound = np.zeros(len(at), dtype=np.int64), 1  # the codes are < bound
    for col in cols:
        v = picked[col]
        col_codes, col_uniq = pd.factorize(
            v.to_numpy(dtype=np.int64) if pd.api.types.is_integer_dtype(v.dtype) else v.to_numpy()
        )
        if bound * len(col_uniq) >= 1 << 62:  # keep the combined codes in int64
            codes = pd.factorize(codes)[0].astype(np.int64)
            bound = int(codes.max()) + 1
        codes, bound = codes * len(col_uniq) + col_codes, bound * len(col_uniq)
    key_codes, key_uniq = pd.factorize(codes)
    first = np.empty(len(key_uniq), dtype=np.int64)
    first[key_codes[::-1]] = np.arange(len(key_codes) - 1, -1, -1)  # first hole of each
    picked = {c: v.iloc[first] for c, v in picked.items()}
    texts: list[str] = []
    add = texts.append
    for d, t0, t1, k in zip(
        text_of("date"),
        text_of("start_local"),
        text_of("end_local"),
        text_of("missing_intervals"),
        strict=True,
    ):
        hm1 = t1[11:16]
        add(f"{d} {t0[11:16]}-{'24:00' if hm1 == '00:00' else hm1} ({k})")
    return np.array(texts, dtype=object)[key_codes], lead


#: holes named in one finding's reason; the rest are counted ("and K more")
_HOLES_SHOWN = 10


def _usage_rules(work: pd.DataFrame, found: _Findings, ctx: ValidationContext) -> None:
    table = "usage"
    _series_common(work, found, ctx, table)
    _check_values(work, found, ctx, table)
    n = len(work)
    codes, _ = _codes(work["meter_id"])
    s_ns, s_ok = _as_ns(work["start"])
    e_ns, e_ok = _as_ns(work["end"])
    valid = (codes >= 0) & s_ok & e_ok

    # duplicates (meter, start, end): sort once, compare neighbours
    dup = np.zeros(n, dtype=bool)
    r = ctx.rule("duplicate_key", table)
    idx = np.flatnonzero(valid)
    order, first = _sorted_groups(codes[idx], s_ns[idx], e_ns[idx])
    srt = idx[order]
    same = np.zeros(srt.size, dtype=bool)
    if srt.size > 1:
        same[1:] = (
            (~first[1:]) & (s_ns[srt][1:] == s_ns[srt][:-1]) & (e_ns[srt][1:] == e_ns[srt][:-1])
        )
    if r:
        dup = _flag_sorted_duplicates(found, r, n, srt, same, "duplicate meter_id+start+end")

    # overlaps and gaps, per meter in start order, against the running max of earlier ends
    r_ov, r_gap = ctx.rule("overlapping_period", table), ctx.rule("gap_between_periods", table)
    if r_ov or r_gap:
        keep = ~same & (e_ns[srt] > s_ns[srt])
        seq = srt[keep]
        g = codes[seq]
        firstg = np.ones(seq.size, dtype=bool)
        firstg[1:] = g[1:] != g[:-1]
        cummax = pd.Series(e_ns[seq]).groupby(g).cummax().to_numpy()
        prev = np.empty_like(cummax)
        if seq.size:
            prev[0] = 0
            prev[1:] = cummax[:-1]
        st = s_ns[seq]
        if r_ov:
            tol = int(float(r_ov.param("tolerance_days")) * NS_PER_DAY)
            hit = ~firstg & (st < prev - tol)
            p = seq[hit]
            found.add(
                r_ov,
                p,
                "starts "
                + _fmt_days((prev[hit] - st[hit]) / NS_PER_DAY)
                + " before the end ("
                + _fmt_ts(prev[hit])
                + ") of an earlier period of the meter",
            )
        if r_gap:
            tol = int(float(r_gap.param("tolerance_days")) * NS_PER_DAY)
            hit = ~firstg & (st > prev + tol)
            p = seq[hit]
            found.add(
                r_gap,
                p,
                "gap of "
                + _fmt_days((st[hit] - prev[hit]) / NS_PER_DAY)
                + " since the previous period ended ("
                + _fmt_ts(prev[hit])
                + ")",
            )

    _hole_findings(work, found, ctx, valid & ~dup, s_ns, e_ns)

    cons = work["consumption"].to_numpy(dtype="float64", na_value=np.nan)
    dur_days = np.where(valid & (e_ns > s_ns), (e_ns - s_ns) / NS_PER_DAY, np.nan)

    r = ctx.rule("extreme_value", table)
    if r:
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = cons / dur_days
        ok = np.isfinite(rate) & (codes >= 0) & ~dup
        _extreme(found, r, rate, ok, codes, work)

    r_cov, r_bill = ctx.rule("low_coverage", table), ctx.rule("billing_period_days", table)
    need_cov = r_cov is not None and "days_with_data" in work.columns
    method = work["method"] if "method" in work.columns else None
    if need_cov or r_bill:
        tz = work["timezone"] if "timezone" in work.columns else None
        days = _local_days(work["start"], work["end"], tz, ctx.timezone)
        if need_cov and r_cov:
            dwd = work["days_with_data"].to_numpy(dtype="float64", na_value=np.nan)
            with np.errstate(invalid="ignore", divide="ignore"):
                cov = dwd / days
            bad = np.isfinite(cov) & (cov < float(r_cov.param("min_fraction")))
            found.add_mask(
                r_cov,
                bad,
                lambda p: (
                    "data on "
                    + _fmt_num(dwd[p])
                    + " of "
                    + _fmt_num(days[p])
                    + " local days ("
                    + _fmt_num(np.round(100 * cov[p], 1))
                    + f"% < {100 * float(r_cov.param('min_fraction')):g}%)"
                ),
            )
        if r_bill:
            methods = tuple(r_bill.param("methods"))
            if method is None:
                cand = np.ones(n, dtype=bool)
            else:
                cand = (method.isna() | method.isin(methods)).to_numpy(dtype=bool)
            cand = cand & np.isfinite(days) & (codes >= 0) & ~dup
            if cand.any():
                med = pd.Series(days[cand]).groupby(codes[cand]).median()
                monthly_codes = med.index[
                    med.to_numpy() >= float(r_bill.param("monthly_from_days"))
                ]
                cand = cand & np.isin(codes, np.asarray(monthly_codes))
                lo, hi = float(r_bill.param("min")), float(r_bill.param("max"))
                bad = cand & ((days < lo) | (days > hi))
                found.add_mask(
                    r_bill,
                    bad,
                    lambda p: (
                        "bill covers "
                        + _fmt_num(days[p])
                        + f" local days, outside [{lo:g}, {hi:g}]"
                    ),
                )
            else:
                found.ran_rule(r_bill)


def _extreme(
    found: _Findings,
    r: Rule,
    rate: np.ndarray,
    ok: np.ndarray,
    codes: np.ndarray,
    work: pd.DataFrame,
) -> None:
    """Flag daily rates above median + k x IQR of the meter's periods (linear quantiles)."""
    found.ran_rule(r)
    idx = np.flatnonzero(ok)
    if idx.size == 0:
        return
    c = codes[idx]
    v = rate[idx]
    # pandas' grouped quantile (cython, no full sort of the values): 2-5x faster than sorting
    qs = pd.Series(v).groupby(c, sort=True).quantile([0.25, 0.5, 0.75]).unstack()
    counts = np.bincount(c, minlength=int(c.max()) + 1)
    ncodes = counts.size
    q1 = np.full(ncodes, np.nan)
    med = np.full(ncodes, np.nan)
    q3 = np.full(ncodes, np.nan)
    where = qs.index.to_numpy(dtype=np.int64)
    q1[where], med[where], q3[where] = (qs[p].to_numpy(dtype=np.float64) for p in (0.25, 0.5, 0.75))
    with np.errstate(over="ignore", invalid="ignore"):  # a 1e308 rate: inf limits, no warning
        limit = med + float(r.param("k")) * (q3 - q1)
    eligible = counts >= int(r.param("min_points"))
    with np.errstate(invalid="ignore"):
        hit = eligible[c] & (v > limit[c])
    pos = idx[hit]
    gi = c[hit]
    found.add(
        r,
        pos,
        "daily rate "
        + _fmt_num(v[hit])
        + " above the meter's median "
        + _fmt_num(med[gi])
        + f" + {float(r.param('k')):g} x IQR "
        + _fmt_num((q3 - q1)[gi])
        + " (unit "
        + work["unit"].iloc[pos].astype("string").fillna("").reset_index(drop=True)
        + " per day)",
    )


def _fmt_num(x: np.ndarray) -> pd.Series:
    """Numbers as short text (``12``, ``0.25``) for reasons."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):  # 1e308 * 1e4 overflows: keep it as is
        v = np.where(np.abs(x) < 1e300, np.round(x, 4), x)
    return pd.Series([f"{f:g}" for f in v.tolist()], dtype=object)


def _fmt_days(x: np.ndarray) -> pd.Series:
    return pd.Series(np.round(np.asarray(x, dtype=np.float64), 3)).astype("string") + " days"


def _fmt_ts(ns: np.ndarray) -> pd.Series:
    idx = pd.DatetimeIndex(np.asarray(ns, dtype=np.int64).view("datetime64[ns]"), tz="UTC")
    return pd.Series(idx.strftime("%Y-%m-%dT%H:%M:%SZ"), dtype=object)


def _readings_rules(work: pd.DataFrame, found: _Findings, ctx: ValidationContext) -> None:
    table = "readings"
    _series_common(work, found, ctx, table)
    _check_values(work, found, ctx, table)
    n = len(work)
    codes, _ = _codes(work["meter_id"])
    t_ns, t_ok = _as_ns(work["timestamp"])
    valid = (codes >= 0) & t_ok
    idx = np.flatnonzero(valid)
    order, first = _sorted_groups(codes[idx], t_ns[idx])
    srt = idx[order]
    same = np.zeros(srt.size, dtype=bool)
    if srt.size > 1:
        same[1:] = (~first[1:]) & (t_ns[srt][1:] == t_ns[srt][:-1])
    r = ctx.rule("duplicate_key", table)
    if r:
        _flag_sorted_duplicates(found, r, n, srt, same, "duplicate meter_id+timestamp")
    r = ctx.rule("register_decrease", table)
    if r:
        value = work["value"].to_numpy(dtype="float64", na_value=np.nan)
        seq = srt[~same]
        v = value[seq]
        g = codes[seq]
        firstg = np.ones(seq.size, dtype=bool)
        firstg[1:] = g[1:] != g[:-1]
        prev = np.full(seq.size, np.nan)
        prev[1:] = v[:-1]
        if "flag" in work.columns:
            flag = work["flag"].astype("string").fillna("").to_numpy(dtype=object)[seq]
            unflagged = flag == ""
        else:
            unflagged = np.ones(seq.size, dtype=bool)
        with np.errstate(invalid="ignore"):
            hit = ~firstg & unflagged & (v < prev)
        found.add(
            r,
            seq[hit],
            "reading " + _fmt_num(v[hit]) + " is below the previous reading " + _fmt_num(prev[hit]),
        )


def validate_assets(
    frame: pd.DataFrame, profile: Profile | None = None, *, context: ValidationContext | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Validate an assets frame.

    Parameters
    ----------
    frame : DataFrame
        Columns of ``schema.ASSETS`` (extra columns are kept, not checked).
    profile : Profile, optional
        Its ``[validation]`` overrides apply (ignored when ``context`` is given).
    context : ValidationContext, optional
        Rules and cross-table knowledge; built from ``profile`` when omitted.

    Returns
    -------
    accepted : DataFrame
        The input rows that passed every error rule (original index and dtypes).
    quarantined : DataFrame
        Findings, ``schema.QUARANTINE`` columns.
    summary : DataFrame
        Counts per rule.

    Raises
    ------
    SchemaError
        If a required column is missing (or a datetime column is naive).
    ValidationSetupError
        If great-expectations cannot be set up or fails internally.
    """
    return _validate("assets", frame, profile, context, _assets_rules)


def validate_meters(
    frame: pd.DataFrame, profile: Profile | None = None, *, context: ValidationContext | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Validate a meters frame; see :func:`validate_assets` for parameters and returns.

    With ``context.assets`` every meter's ``asset_id`` must be an accepted asset.
    """
    return _validate("meters", frame, profile, context, _meters_rules)


def validate_usage(
    frame: pd.DataFrame, profile: Profile | None = None, *, context: ValidationContext | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Validate a usage frame; see :func:`validate_assets` for parameters and returns.

    With ``context.meters`` every row's meter must be an accepted meter and share its unit.
    Categorical ``meter_id`` columns are fastest (GX and the per-meter rules use the codes).
    """
    return _validate("usage", frame, profile, context, _usage_rules)


def validate_readings(
    frame: pd.DataFrame, profile: Profile | None = None, *, context: ValidationContext | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Validate a readings frame; see :func:`validate_assets` for parameters and returns."""
    return _validate("readings", frame, profile, context, _readings_rules)


_VALIDATORS = {
    "assets": validate_assets,
    "meters": validate_meters,
    "usage": validate_usage,
    "readings": validate_readings,
}


def validate_tables(
    tables: Tables,
    profile: Profile | None = None,
    *,
    report_dir: str | os.PathLike[str] | None = None,
    use_gx: bool = True,
) -> ValidationResult:
    """Validate the four canonical tables and quarantine what fails.

    Tables are checked in order assets → meters → usage/readings, each against the accepted
    rows of its parent: a meter of an unknown asset gets ``unknown_asset``, one of a quarantined
    asset ``parent_quarantined``; likewise usage and readings against meters.

    Parameters
    ----------
    tables : Tables
        Canonical frames (normalised or not); ``tables.quarantine`` is carried over.
    profile : Profile, optional
        ``[validation.rules.<rule>]`` overrides (severity, enabled, thresholds) and the default
        time zone.
    report_dir : path-like, optional
        Write ``validation_report.html`` (self-contained) there.
    use_gx : bool
        Run the great-expectations suites (default). ``False`` uses the pandas equivalents.

    Returns
    -------
    ValidationResult

    Raises
    ------
    SchemaError
        A frame lacks a required column (before any data rule runs).
    ValidationSetupError
        great-expectations could not be set up or failed internally.
    ProfileError
        The profile's ``[validation]`` section names an unknown rule or setting.
    """
    if not isinstance(tables, Tables):
        raise SchemaError(
            f"validate_tables needs a Tables, got {type(tables).__name__}",
            hint="Build one with transform.build_tables() or schema.Tables(usage=...).",
        )
    for name, frame in tables.items():  # every schema problem before any data rule runs
        _prepare_check(frame, name)
    ctx = ValidationContext.from_profile(profile, use_gx=use_gx)
    t_all = time.perf_counter()
    ctx.holes = tables.holes
    accepted, quarantines, summaries = _validate_all(tables, ctx)
    ctx.timings["total"] = time.perf_counter() - t_all
    quarantined = _concat_quarantine(quarantines)
    summary = (
        pd.concat(summaries, ignore_index=True)
        if summaries
        else pd.DataFrame(columns=_SUMMARY_COLUMNS)
    )
    prior = tables.quarantine if tables.quarantine is not None else empty_frame(QUARANTINE)
    out = Tables(
        assets=accepted["assets"],
        meters=accepted["meters"],
        usage=accepted["usage"],
        readings=accepted["readings"],
        quarantine=_concat_quarantine([prior, quarantined]),
        completeness=tables.completeness,
        holes=tables.holes,
    )
    result = ValidationResult(
        accepted=out,
        quarantined=quarantined,
        summary=summary,
        gx_results=dict(ctx.gx_results),
        timings=dict(ctx.timings),
        no_data=_no_data_frame(tables, ctx),
    )
    n_err = quarantined.loc[quarantined["severity"] == "error", "record_key"].size
    log.info(
        "validation: %d error finding(s), %d warning(s) in %.2f s",
        n_err,
        len(quarantined) - n_err,
        ctx.timings["total"],
    )
    if report_dir is not None:
        result.report_path = write_report(result, tables, report_dir)
    return result


def _validate_all(
    tables: Tables, ctx: ValidationContext
) -> tuple[dict[str, pd.DataFrame], list[pd.DataFrame], list[pd.DataFrame]]:
    """Validate assets, meters, usage, readings in order, each against its accepted parents."""
    accepted: dict[str, pd.DataFrame] = {}
    quarantines: list[pd.DataFrame] = []
    summaries: list[pd.DataFrame] = []
    for name in _TABLE_ORDER:
        frame = getattr(tables, name)
        if name == "meters":
            ctx.assets = accepted["assets"]
            ctx.quarantined_assets = _removed_ids(tables.assets, accepted["assets"], "asset_id")
        elif name in ("usage", "readings"):
            ctx.meters = accepted["meters"]
            ctx.quarantined_meters = _removed_ids(tables.meters, accepted["meters"], "meter_id")
        acc, q, s = _VALIDATORS[name](frame, context=ctx)
        accepted[name] = acc
        quarantines.append(q)
        summaries.append(s)
    return accepted, quarantines, summaries


def _no_data_frame(tables: Tables, ctx: ValidationContext) -> pd.DataFrame:
    """Per table, meter and local day: null values transform counted (its ``no_data`` rows)
    and rows this stage set aside as no data."""
    parts: list[pd.DataFrame] = []
    q = tables.quarantine
    if q is not None and len(q) and "rule" in q.columns:
        rows = q[(q["rule"] == "no_data") & (q["stage"] == "transform")]
        if len(rows):
            recs = [json.loads(r) for r in rows["record"].astype(str)]
            parts.append(
                pd.DataFrame(
                    {
                        "table": rows["table"].astype(str).to_numpy(),
                        "meter_id": [str(r.get("meter_id")) for r in recs],
                        "date": [str(r.get("date")) for r in recs],
                        "values": [int(r.get("values") or 0) for r in recs],
                        "rows": 0,
                    }
                )
            )
    for table, pos in ctx.no_data.items():
        if not pos.size:
            continue
        frame = getattr(tables, table).iloc[pos]
        when = frame["start" if table == "usage" else "timestamp"]
        when = pd.Series(pd.to_datetime(when, utc=True, errors="coerce")).reset_index(drop=True)
        zones = (
            frame["timezone"].astype(object).fillna(ctx.timezone)
            if "timezone" in frame.columns
            else pd.Series(ctx.timezone, index=frame.index, dtype=object)
        ).reset_index(drop=True)
        ok = when.notna().to_numpy()
        dates = np.full(len(frame), "", dtype=object)
        if ok.any():
            local = local_naive(when[ok].reset_index(drop=True), zones[ok].reset_index(drop=True))
            dates[ok] = np.datetime_as_string(local.astype("datetime64[D]"))
        parts.append(
            pd.DataFrame(
                {
                    "table": table,
                    "meter_id": frame["meter_id"].astype(str).to_numpy(),
                    "date": dates,
                    "values": 0,
                    "rows": 1,
                }
            )
        )
    if not parts:
        return pd.DataFrame(columns=NO_DATA_COLUMNS)
    out = pd.concat(parts, ignore_index=True)
    out = out.groupby(["table", "meter_id", "date"], as_index=False, sort=True)[
        ["values", "rows"]
    ].sum()
    return out[NO_DATA_COLUMNS].astype({"values": "int64", "rows": "int64"})


def _prepare_check(frame: Any, name: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise SchemaError(
            f"Tables.{name} must be a DataFrame, got {type(frame).__name__}", table=name
        )
    check_frame(frame, name)


def _removed_ids(frame: pd.DataFrame, accepted: pd.DataFrame, col: str) -> frozenset[str]:
    """Ids present in ``frame`` whose every row was quarantined by an error."""
    if len(frame) == len(accepted):
        return frozenset()
    all_ids = set(frame[col].dropna().astype(str).unique())
    kept = set(accepted[col].dropna().astype(str).unique())
    return frozenset(all_ids - kept)


def _concat_quarantine(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if f is not None and len(f)]
    if not frames:
        return empty_frame(QUARANTINE)
    out = pd.concat([f.astype(QUARANTINE.dtypes) for f in frames], ignore_index=True)
    return out


# ---------------------------------------------------------------------------------------------
# re-checking the quarantine
# ---------------------------------------------------------------------------------------------
def recheck_quarantine(
    quarantine: pd.DataFrame,
    tables_or_frames: Tables | Mapping[str, pd.DataFrame] | None = None,
    profile: Profile | None = None,
    *,
    use_gx: bool = True,
) -> RecheckResult:
    """Validate quarantined records again, after the mapping, units or profile were fixed.

    Every record held by a validation ``error`` is rebuilt from its ``record`` JSON, or taken
    from ``tables_or_frames`` when a row with the same ``record_key`` is there (the analyst
    re-ran the transform with the fix), and validated together with the current tables so
    that duplicates, overlaps and references are judged against the data as it is now.

    Parameters
    ----------
    quarantine : DataFrame
        Quarantine rows (``schema.QUARANTINE``), e.g. from the state store. Rows of other stages
        are passed through to ``still_quarantined`` unchanged; warning rows are not held and
        are dropped.
    tables_or_frames : Tables or mapping of str to DataFrame, optional
        The current (accepted) data, table name -> frame.
    profile : Profile, optional
        The (fixed) profile: validation overrides, unit aliases, time zone.

    Returns
    -------
    RecheckResult
        ``released`` records, ``still_quarantined`` findings and the released ``records``.
    """
    missing = [c for c in QUARANTINE.required if c not in quarantine.columns]
    if missing:
        raise SchemaError(
            f"quarantine frame lacks column(s) {missing}",
            table="quarantine",
            column=missing[0],
            hint="Pass the quarantine as returned by validate_tables() or the state store.",
        )
    current: dict[str, pd.DataFrame] = {}
    if isinstance(tables_or_frames, Tables):
        current = dict(tables_or_frames.items())
    elif tables_or_frames is not None:
        current = {k: v for k, v in tables_or_frames.items() if k in TABLES}
    q = quarantine.reset_index(drop=True)
    held = q[(q["stage"] == STAGE) & (q["severity"] == "error")]
    other = q[(q["stage"] != STAGE) & (q["severity"] == "error")]

    combined: dict[str, pd.DataFrame] = {}
    cand_pos: dict[str, np.ndarray] = {}
    cand_key: dict[str, np.ndarray] = {}
    for name in _TABLE_ORDER:
        cur = current.get(name)
        cur = empty_frame(name) if cur is None else cur.reset_index(drop=True)
        h = held[held["table"] == name].drop_duplicates("record_key")
        if h.empty:
            combined[name] = cur
            cand_pos[name] = np.empty(0, dtype=np.int64)
            cand_key[name] = np.empty(0, dtype=object)
            continue
        # a current row with the same key replaces the stored record (re-transformed data)
        cur_keys = record_keys(cur, name) if len(cur) else np.empty(0, dtype=object)
        held_keys = h["record_key"].astype(str).to_numpy(dtype=object)
        in_cur = np.flatnonzero(np.isin(cur_keys, held_keys))
        stale = h[~h["record_key"].isin(set(cur_keys[in_cur]))]
        rebuilt = _records_frame(stale["record"], name)
        if len(rebuilt) != len(stale):
            raise SchemaError(
                f"{len(stale) - len(rebuilt)} quarantined {name} record(s) have no record JSON",
                table=name,
                hint="Only quarantine rows written by validate_tables() can be re-checked.",
            )
        combined[name] = pd.concat([cur, rebuilt], ignore_index=True) if len(rebuilt) else cur
        cand_pos[name] = np.r_[in_cur, len(cur) + np.arange(len(rebuilt))].astype(np.int64)
        cand_key[name] = np.r_[cur_keys[in_cur], stale["record_key"].astype(str).to_numpy(object)]
    for name, frame in combined.items():
        _prepare_check(frame, name)
    ctx = ValidationContext.from_profile(profile, use_gx=use_gx)
    _, quarantines, _ = _validate_all(Tables(**combined), ctx)

    still_rows: list[pd.DataFrame] = []
    released_rows: list[pd.DataFrame] = []
    records: dict[str, pd.DataFrame] = {}
    for name, found in zip(_TABLE_ORDER, quarantines, strict=True):
        cpos, ckey = cand_pos[name], cand_key[name]
        if cpos.size == 0:
            records[name] = empty_frame(name)
            continue
        row_pos, error_pos = ctx.positions.get(name, (np.empty(0, np.int64),) * 2)
        failing = np.isin(cpos, error_pos)
        key_of = dict(zip(cpos.tolist(), ckey.tolist(), strict=True))
        # findings of still-failing candidates, under the key the store knows them by
        sel = np.isin(row_pos, cpos[failing])
        f = found[sel].copy()
        f["record_key"] = [key_of[int(p)] for p in row_pos[sel]]
        still_rows.append(f)
        released_keys = set(ckey[~failing].tolist())
        h = held[(held["table"] == name) & held["record_key"].isin(released_keys)]
        if len(h):
            released_rows.append(
                h.groupby("record_key", sort=True)
                .agg(
                    source_id=("source_id", "first"),
                    rules=("rule", lambda x: ";".join(sorted(set(x)))),
                )
                .reset_index()
                .assign(table=name)
            )
        records[name] = combined[name].iloc[np.sort(cpos[~failing])]
    cols = ["table", "record_key", "source_id", "rules"]
    released_df = (
        pd.concat(released_rows, ignore_index=True)[cols]
        if released_rows
        else pd.DataFrame({c: pd.Series(dtype="string") for c in cols})
    )
    return RecheckResult(
        released=released_df,
        still_quarantined=_concat_quarantine([*still_rows, other]),
        records=Tables(**records),
    )


def _records_frame(records: pd.Series, table: str) -> pd.DataFrame:
    """Rebuild table rows from quarantine ``record`` JSON (one object per row)."""
    texts = records.dropna().astype(str)
    if texts.empty:
        return empty_frame(table).iloc[0:0]
    try:
        frame = pd.read_json(io.StringIO("\n".join(texts)), lines=True, dtype=False)
    except ValueError as exc:
        raise SchemaError(
            f"quarantined {table} records are not valid JSON: {exc}",
            table=table,
            hint="The quarantine's record column must hold the JSON written by validation.",
        ) from exc
    for c in TABLES[table].columns:
        if c.kind == "datetime" and c.name in frame.columns:
            raw = frame[c.name]
            parsed = pd.to_datetime(raw, utc=True, format="ISO8601", errors="coerce")
            if not (raw.notna() & parsed.isna()).any():  # else keep the text: still invalid
                frame[c.name] = parsed.astype("datetime64[ns, UTC]")
    return frame


# ---------------------------------------------------------------------------------------------
# the HTML report
# ---------------------------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f4f4f4}.error{color:#a00;font-weight:600}.warning{color:#a60}
.ok{color:#070}td.num{text-align:right}code{font-size:.95em}
details{margin:.5em 0}
"""


def write_report(
    result: ValidationResult,
    tables: Tables | None = None,
    report_dir: str | os.PathLike[str] = ".",
    *,
    max_rows: int = 200,
) -> Path:
    """Write a self-contained ``validation_report.html`` into ``report_dir`` and return its path.

    The page shows row counts per table, the summary (table x rule), every GX expectation's
    result (success, unexpected count and a sample of unexpected values), up to ``max_rows``
    quarantined findings per rule, and the rule registry with what to ask the provider.
    """
    from scaler_workbench.exceptions import ExportError

    out_dir = Path(report_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "validation_report.html"
        tmp = path.with_suffix(".html.tmp")
        tmp.write_text(_report_html(result, tables, max_rows=max_rows), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise ExportError(
            f"could not write the validation report to {out_dir}: {exc}", path=str(out_dir)
        ) from exc
    return path


def _report_html(result: ValidationResult, tables: Tables | None, *, max_rows: int) -> str:
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<title>scaler-workbench validation report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Validation report</h1>",
        f"<p>Generated {e(datetime.now(UTC).strftime('%Y-%m-%d %H:%M:%S UTC'))}. "
        f"{len(result.errors)} error finding(s) (rows quarantined), "
        f"{len(result.warnings)} warning(s) (rows kept).</p>",
        "<h2>Tables</h2><table><tr><th>table</th><th>input rows</th><th>accepted</th>"
        "<th>quarantined records</th><th>warnings</th></tr>",
    ]
    for name, acc in result.accepted.items():
        q = result.quarantined[result.quarantined["table"] == name]
        n_err = q.loc[q["severity"] == "error", "record_key"].nunique()
        n_in = len(getattr(tables, name)) if tables is not None else len(acc) + n_err
        n_warn = int((q["severity"] == "warning").sum())
        cls = "ok" if n_err == 0 else "error"
        parts.append(
            f"<tr><td>{e(name)}</td><td class='num'>{n_in}</td><td class='num'>{len(acc)}</td>"
            f"<td class='num {cls}'>{n_err}</td><td class='num'>{n_warn}</td></tr>"
        )
    parts.append("</table>")
    parts.append("<h2>Rules (table x rule)</h2>")
    parts.append(_frame_html(result.summary))
    parts.append("<h2>great-expectations results</h2>")
    if not result.gx_results:
        parts.append("<p>No GX suite ran (empty tables or use_gx=False).</p>")
    for name, res in result.gx_results.items():
        parts.append(f"<h3>{e(name)}: {'passed' if res.success else 'failed'}</h3>")
        rows = []
        for r in res.results:
            cfg = r.expectation_config
            kw = {k: v for k, v in cfg.kwargs.items() if k not in ("batch_id",)}
            sample = r.result.get("partial_unexpected_list") or []
            rows.append(
                {
                    "rule": (cfg.meta or {}).get("rule", ""),
                    "expectation": cfg.type,
                    "kwargs": json.dumps(kw, default=str),
                    "success": bool(r.success),
                    "unexpected": r.result.get("unexpected_count", 0),
                    "percent": round(float(r.result.get("unexpected_percent") or 0.0), 3),
                    "sample": json.dumps(sample[:10], default=str),
                }
            )
        parts.append(_frame_html(pd.DataFrame(rows)))
    parts.append("<h2>Findings</h2>")
    q = result.quarantined
    if q.empty:
        parts.append("<p class='ok'>No findings.</p>")
    for (table, rule), grp in q.groupby(["table", "rule"], sort=False):
        sev = str(grp["severity"].iloc[0])
        parts.append(
            f"<details><summary><span class='{e(sev)}'>{e(sev)}</span> "
            f"{e(str(table))} / <code>{e(str(rule))}</code>: {len(grp)} row(s)</summary>"
        )
        parts.append(
            _frame_html(grp[["record_key", "source_id", "reason", "record"]].head(max_rows))
        )
        parts.append("</details>")
    parts.append("<h2>Rule registry</h2>")
    parts.append(_frame_html(rules_frame()))
    parts.append("</body></html>")
    return "\n".join(parts)


def _frame_html(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "<p>(none)</p>"
    return str(frame.to_html(index=False, escape=True, border=0, na_rep=""))


# ---------------------------------------------------------------------------------------------
# benchmark
# ---------------------------------------------------------------------------------------------
def benchmark_validation(
    n_rows: int = 1_000_000,
    *,
    n_meters: int = 600,
    repeat: int = 3,
    use_gx: bool = True,
    seed: int = 0,
) -> dict[str, float]:
    """Time :func:`validate_usage` on a synthetic daily usage frame of ``n_rows`` rows.

    The frame has a categorical ``meter_id``, UTC ``start``/``end``, ``days_with_data``,
    ``timezone`` Europe/London and a handful of planted defects. The first call also pays the
    one-off GX setup (reported as ``setup_s``).

    Returns
    -------
    dict
        ``n_rows``, ``setup_s`` [s], ``seconds`` (median of ``repeat``) [s],
        ``per_million_s`` [s per 10^6 rows] and the median split by stage.
    """
    frame = _synthetic_usage(n_rows, n_meters=n_meters, seed=seed)
    t0 = time.perf_counter()
    if use_gx:
        _gx_state()
    setup = time.perf_counter() - t0
    # warm the suite cache on a small slice, so the timings are per-run costs only
    validate_usage(frame.iloc[:1000], context=ValidationContext(use_gx=use_gx))
    runs: list[float] = []
    stages: list[dict[str, float]] = []
    for _ in range(max(1, repeat)):
        ctx = ValidationContext(use_gx=use_gx, timezone="Europe/London")
        t = time.perf_counter()
        validate_usage(frame, context=ctx)
        runs.append(time.perf_counter() - t)
        stages.append(ctx.timings)
    med = float(np.median(runs))
    out = {
        "n_rows": float(n_rows),
        "setup_s": setup,
        "seconds": med,
        "per_million_s": med / max(n_rows, 1) * 1e6,
    }
    for key in stages[0]:
        out[key.split(".", 1)[1] + "_s"] = float(np.median([s[key] for s in stages]))
    return out


def _synthetic_usage(n_rows: int, *, n_meters: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n_meters = max(1, min(n_meters, n_rows))
    per = -(-n_rows // n_meters)
    meter = np.repeat(np.arange(n_meters), per)[:n_rows]
    day = np.tile(np.arange(per), n_meters)[:n_rows]
    start = pd.Timestamp("2020-01-01", tz="UTC") + pd.to_timedelta(day, unit="D")
    cats = pd.Index([f"M{i:05d}" for i in range(n_meters)])
    frame = pd.DataFrame(
        {
            "meter_id": pd.Categorical.from_codes(meter, categories=cats),
            "start": start,
            "end": start + pd.Timedelta(days=1),
            "consumption": np.abs(rng.normal(100.0, 10.0, n_rows)),
            "unit": pd.Categorical.from_codes(np.zeros(n_rows, dtype=np.int8), ["kWh"]),
            "timezone": pd.Categorical.from_codes(np.zeros(n_rows, dtype=np.int8), ["UTC"]),
            "days_with_data": np.ones(n_rows, dtype=np.int64),
            "method": pd.Categorical.from_codes(
                np.zeros(n_rows, dtype=np.int8), ["sum-of-intervals"]
            ),
        }
    )
    k = max(1, n_rows // 100_000)
    bad = rng.choice(n_rows, size=min(n_rows, 4 * k), replace=False)
    frame.loc[bad[:k], "consumption"] = -1.0
    frame.loc[bad[k : 2 * k], "consumption"] = 1e6
    return frame
