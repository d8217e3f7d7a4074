"""The pipeline: raw provider records -> final canonical Tables, through every stage in order.

This is the only stage-level module that imports all the stages and the connector registry;
the stages import only the shared base below them (:mod:`scaler_workbench.schema`,
``_time``, ``_numeric``) and never one another's private names::

    pipeline ──> connectors.resources (connector_class: provider rules, prepare_raw)
        │──> transform   (build_tables, MeterChunks)          stage 1: mapping
        │──> units       (normalise_tables, UnitNormaliser)   stage 2: canonical units
        └──> usage       (process_usage, period_option)       stage 3: conflicts, periods
                 └──> transform.resolve_mapping (public)

Stage contract
--------------
Each stage takes a :class:`~scaler_workbench.schema.Tables` and returns a new one; no stage
drops a row silently: a row it cannot keep becomes a quarantine row
(:data:`~scaler_workbench.schema.QUARANTINE`, built by
:func:`~scaler_workbench.schema.quarantine_rows` / :func:`~scaler_workbench.schema.quarantine_records`)
naming the stage. **Quarantine rows are appended in stage order**: the provider rules' report
(``prepare_raw``), then ``transform`` (assets and meters, then usage and readings), then
``units`` (usage, readings, then the meters whose rows were set aside), then ``usage``.
Validation and export come after the pipeline and append theirs after these.

Streaming
---------
A long interval source aggregated to days or months (the mapping's only series source, its
records grouped by meter, as APIs page them) is *streamed*: :class:`~scaler_workbench.transform.
MeterChunks` maps chunks of about :data:`STREAM_RECORDS` records cut between meters,
:meth:`~scaler_workbench.units.UnitNormaliser.normalise_meter_rows` converts each chunk and
:func:`~scaler_workbench.usage.process_usage` aggregates it, so no per-record frame of the
whole source is held. The result equals the stage-by-stage path table for table, the
quarantine in the same order (``tests/test_pipeline_stream.py``); records not grouped by meter
fall back to the stage-by-stage path.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import pandas as pd

from scaler_workbench._secrets import get_logger
from scaler_workbench.connectors.registry import connector_class
from scaler_workbench.schema import (
    COMPLETENESS,
    HOLES,
    QUARANTINE,
    Table,
    Tables,
    empty_frame,
    stack_frames,
)
from scaler_workbench.transform import (
    MeterChunks,
    build_tables,
    order_series_quarantine,
    resolve_mapping,
)
from scaler_workbench.units import UnitNormaliser, normalise_tables
from scaler_workbench.usage import period_option, process_usage

__all__ = ["STREAM_RECORDS", "run_pipeline"]

log = get_logger(__name__)

#: Records per chunk when :func:`run_pipeline` streams an interval source (whole meters each).
STREAM_RECORDS = 1 << 20


def run_pipeline(
    profile: Any,
    raw: Mapping[str, list[dict[str, Any]]],
    *,
    mapping: Mapping[str, Any] | None = None,
    timings: dict[str, float] | None = None,
    chunk_records: int = STREAM_RECORDS,
) -> Tables:
    """Raw records to final Tables: provider rules, ``build_tables``, ``normalise_tables``,
    ``process_usage``.

    When the profile names a provider module (``[provider] connector``), its connector's
    ``prepare_raw`` runs first and its report rows lead the quarantine, so notebooks, syncs and
    the CLI apply the same provider rules.

    A long interval source that is aggregated to days or months (the mapping's only series
    source, records grouped by meter as APIs page them) is *streamed*: the three stages run
    over chunks of about ``chunk_records`` records cut between meters, so no per-record frame
    of the whole source is ever held. The result is the same as the stage-by-stage path (tests
    assert equality); records that are not grouped by meter fall back to that path.

    Parameters
    ----------
    profile : Profile
        The provider profile (``[mapping]``, ``[units]``, ``[provider]``).
    raw : mapping of str to list of dict
        Records per resource, as fetched.
    mapping : dict, optional
        Overrides ``profile.section("mapping")``.
    timings : dict, optional
        When given, seconds spent per stage [s] are added under ``"canonical"``, ``"units"``
        and ``"usage"`` (the benchmark's stage table; provider rules count as ``"canonical"``).
    chunk_records : int, optional
        Records per streamed chunk [records]; a meter is never split between chunks.

    Returns
    -------
    Tables
        Usage in canonical units ([kWh], [m³], [kg]) over the mapping's periods, readings with
        their flags, and every record set aside, in stage order, in ``quarantine``.

    Raises
    ------
    MappingError
        If the mapping is malformed or names a field no record has.
    ProfileError
        If ``[provider] connector`` cannot be imported or ``[units]`` is malformed.
    UsageError
        If the usage stage cannot process the rows (see :func:`~scaler_workbench.usage.process_usage`).
    """
    clock = time.perf_counter
    spent = dict.fromkeys(("canonical", "units", "usage"), 0.0)
    t = clock()
    report = None
    if profile.section("provider").get("connector"):
        raw, report = connector_class(profile).prepare_raw(profile, raw)
    m = resolve_mapping(profile, mapping)
    spent["canonical"] += clock() - t
    plan = _stream_plan(m, raw, chunk_records)
    tables = None
    if plan is not None:
        tables = _run_streamed(profile, raw, plan, chunk_records, spent, mapping)
    if tables is None:
        t = clock()
        tables = build_tables(profile, raw, mapping=mapping)
        spent["canonical"] += clock() - t
        t = clock()
        tables = normalise_tables(tables, profile)
        spent["units"] += clock() - t
        t = clock()
        tables = process_usage(tables, profile, mapping=mapping)
        spent["usage"] += clock() - t
    if report is not None and len(report):
        frames = [report, tables.quarantine] if len(tables.quarantine) else [report]
        tables.quarantine = pd.concat(frames, ignore_index=True)
    if timings is not None:
        for k, v in spent.items():
            timings[k] = timings.get(k, 0.0) + v
    return tables


def _stream_plan(
    m: Mapping[str, Any], raw: Mapping[str, list[dict[str, Any]]], chunk_records: int
) -> tuple[str, Mapping[str, Any], str] | None:
    """(source name, source, resource) when :func:`run_pipeline` may stream, else None."""
    usage = m.get("usage") or {}
    if len(usage) != 1 or m.get("readings"):
        return None
    name, src = next(iter(usage.items()))
    resource = src.get("resource") if isinstance(src, Mapping) else None
    if (
        not isinstance(resource, str)
        or len(raw.get(resource) or ()) <= max(1, int(chunk_records))
        or src.get("kind", "intervals") != "intervals"
        or src.get("explode")
        or src.get("end_inclusive") == "auto"
        or "meter_id" not in (src.get("fields") or {})
        or period_option(src, "aggregate", "prorate") not in ("day", "month")
    ):
        return None
    for table in ("meters", "assets"):  # the entities must not be read from the same records
        esrc = m.get(table) or {}
        derived = esrc.get("derive_from")
        res = (m.get(derived) or {}).get("resource") if derived else esrc.get("resource")
        if res == resource or (isinstance(res, list) and resource in res):
            return None
    return str(name), src, resource


def _run_streamed(
    profile: Any,
    raw: Mapping[str, list[dict[str, Any]]],
    plan: tuple[str, Mapping[str, Any], str],
    chunk_records: int,
    spent: dict[str, float],
    mapping: Mapping[str, Any] | None,
) -> Tables | None:
    """The three stages over chunks of whole meters; None when the records are not grouped
    by meter (a meter met again in a later chunk): the caller takes the whole-frame path."""
    name = plan[0]
    clock = time.perf_counter
    t = clock()
    chunks = MeterChunks(profile, raw, name, mapping=mapping, chunk_records=chunk_records)
    entities = chunks.entities
    spent["canonical"] += clock() - t
    t = clock()
    normaliser = UnitNormaliser(profile, entities.meters)
    meters = normaliser.meters
    spent["units"] += clock() - t
    parts: list[pd.DataFrame] = []
    q_transform: list[pd.DataFrame] = []
    q_units: list[pd.DataFrame] = []
    q_usage: list[pd.DataFrame] = []
    months: list[pd.DataFrame] = []  # interval completeness: whole meters per chunk, so the
    holes: list[pd.DataFrame] = []  # per-meter rows of the chunks concatenate
    source = iter(chunks)
    while True:
        t = clock()
        chunk = next(source, None)
        spent["canonical"] += clock() - t
        if chunk is None:
            break
        q_transform.append(chunk.quarantine)
        if not len(chunk.usage):
            continue
        t = clock()
        frame, q = normaliser.normalise_meter_rows("usage", chunk.usage)
        q_units.append(q)
        spent["units"] += clock() - t
        t = clock()
        done = process_usage(
            Tables(assets=entities.assets, meters=meters, usage=frame), profile, mapping=mapping
        )
        parts.append(done.usage)
        q_usage.append(done.quarantine)
        months.append(done.completeness)
        holes.append(done.holes)
        spent["usage"] += clock() - t
    if not chunks.grouped:
        return None
    t = clock()
    q_units.append(normaliser.meters_quarantine())
    # build_tables orders a source's rows by rule (then record position): chunk by chunk the
    # rules would interleave, so the chunks' rows are ordered the same way (a stable sort)
    q_transform = [q for q in q_transform if len(q)]
    if q_transform:
        q_transform = [order_series_quarantine(pd.concat(q_transform, ignore_index=True))]
    quarantine = [q for q in (entities.quarantine, *q_transform, *q_units, *q_usage) if len(q)]
    usage = stack_frames([p for p in parts if len(p)])
    out = Tables(
        assets=entities.assets,
        meters=meters,
        usage=usage if len(usage) else empty_frame("usage"),
        quarantine=pd.concat(quarantine, ignore_index=True)
        if quarantine
        else empty_frame(QUARANTINE),
        completeness=_stack_sorted(months, COMPLETENESS, ["meter_id", "month"]),
        holes=_stack_sorted(holes, HOLES, ["meter_id"]),
    )
    spent["usage"] += clock() - t
    log.debug("pipeline: streamed %s in %d chunk(s)", name, len(q_transform))
    return out


def _stack_sorted(parts: list[pd.DataFrame], table: Table, by: list[str]) -> pd.DataFrame:
    """The chunks' completeness (or hole) rows in the whole-source order: by meter (stable)."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return empty_frame(table)
    out = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    return out.sort_values(by, kind="stable", ignore_index=True)
