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

Record filters
--------------
A mapping section's ``where`` / ``skip`` (:mod:`scaler_workbench._filters`) drops records of its
resource before the mapping reads them, and ``[mapping] exclude_meters`` drops the meters it
lists (and their usage and readings rows) after it; neither is silent: :func:`run_pipeline`
counts them per section and rule in its ``filtered`` argument and logs one warning per rule, and
the sync writes the counts to ``run_summary.json`` (``filtered``). So for each table
``accepted + quarantined + no data + filtered = input``. A resource read by several sections
is filtered for the section that asks only (a copy named ``<resource>[<section>]``).

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

from scaler_workbench._filters import FILTER_KEYS, compile_filters, exclude_list
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

__all__ = ["STREAM_RECORDS", "filter_records", "run_pipeline"]

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
    filtered: dict[str, dict[str, int]] | None = None,
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
    filtered : dict, optional
        When given, records the mapping's filters dropped are added per section and rule:
        ``{"mapping.usage.hh": {"skip.value": 30}, "mapping.meters": {"exclude_meters": 1}}``
        [records; rows for ``exclude_meters`` on usage and readings].

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
    counts: dict[str, dict[str, int]] = {}
    raw, m, excluded = filter_records(profile, raw, m, counts)
    mapping = m
    spent["canonical"] += clock() - t
    plan = _stream_plan(m, raw, chunk_records)
    tables = None
    if plan is not None:
        tables = _run_streamed(profile, raw, plan, chunk_records, spent, mapping, excluded, counts)
    if tables is None:
        t = clock()
        tables = _exclude(build_tables(profile, raw, mapping=mapping), excluded, counts)
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
    for section, rules in counts.items():
        for rule, n in rules.items():
            log.warning("%s: %d record(s) filtered out by %s", section, n, rule)
    if filtered is not None:
        for section, rules in counts.items():
            mine = filtered.setdefault(section, {})
            for rule, n in rules.items():
                mine[rule] = mine.get(rule, 0) + n
    return tables


def _sections(m: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``(dotted key, section table)`` of every mapping section (entities, then sources)."""
    out: list[tuple[str, dict[str, Any]]] = []
    for table in ("assets", "meters"):
        if isinstance(m.get(table), Mapping):
            out.append((f"mapping.{table}", dict(m[table])))
    for table in ("usage", "readings"):
        for name, src in (m.get(table) or {}).items():
            if isinstance(src, Mapping):
                out.append((f"mapping.{table}.{name}", dict(src)))
    return out


def _resource_names(section: Mapping[str, Any]) -> list[str]:
    res = section.get("resource")
    if isinstance(res, list):
        return [str(r) for r in res]
    return [str(res)] if isinstance(res, str) and res else []


def filter_records(
    profile: Any,
    raw: Mapping[str, list[dict[str, Any]]],
    mapping: Mapping[str, Any],
    counts: dict[str, dict[str, int]],
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any], frozenset[str]]:
    """Apply the mapping sections' ``where`` / ``skip`` to the raw records.

    Parameters
    ----------
    profile : Profile
        For the provider name in errors.
    raw : mapping of str to list of dict
        Records per resource (not modified).
    mapping : dict
        The resolved mapping (:func:`~scaler_workbench.transform.resolve_mapping`).
    counts : dict
        Filled with the records dropped per section and rule [records].

    Returns
    -------
    raw : dict
        The records each section reads (a resource read by several sections, one of which
        filters, is copied under ``<resource>[<section>]`` for that section).
    mapping : dict
        The mapping without the filter keys (sections re-pointed at their copies).
    excluded : frozenset of str
        ``[mapping] exclude_meters``.

    Raises
    ------
    FilterError
        A malformed filter (normally refused when the profile was read).
    """
    provider = getattr(profile, "name", None)
    m = {k: v for k, v in mapping.items() if k != "exclude_meters"}
    excluded = exclude_list(
        mapping.get("exclude_meters"), key="mapping.exclude_meters", provider=provider
    )
    sections = _sections(m)
    if not any(k in sec for _, sec in sections for k in FILTER_KEYS):
        return dict(raw), m, excluded
    readers: dict[str, int] = {}
    for _, sec in sections:
        for r in _resource_names(sec):
            readers[r] = readers.get(r, 0) + 1
    out = dict(raw)
    for key, sec in sections:
        flt = compile_filters(sec, key=key, provider=provider)
        for k in FILTER_KEYS:
            sec.pop(k, None)
        if flt:
            names = []
            for r in _resource_names(sec):
                kept, dropped = flt.split(raw.get(r) or [])
                name = r if readers.get(r, 0) <= 1 else f"{r}[{key.removeprefix('mapping.')}]"
                out[name] = kept
                names.append(name)
                for rule, n in dropped.items():
                    mine = counts.setdefault(key, {})
                    mine[rule] = mine.get(rule, 0) + n
            if names:
                res = sec.get("resource")
                sec["resource"] = names if isinstance(res, list) else names[0]
        _put_section(m, key, sec)
    return out, m, excluded


def _put_section(m: dict[str, Any], key: str, sec: dict[str, Any]) -> None:
    parts = key.split(".", 2)
    if len(parts) == 2:
        m[parts[1]] = sec
    else:
        m[parts[1]] = {**m[parts[1]], parts[2]: sec}


def _drop_meters(
    frame: pd.DataFrame, excluded: frozenset[str], counts: dict[str, dict[str, int]], table: str
) -> pd.DataFrame:
    """``frame`` without the rows of excluded meters, counted under ``mapping.<table>``."""
    if not excluded or not len(frame) or "meter_id" not in frame.columns:
        return frame
    out = frame["meter_id"].astype("string").isin(excluded).fillna(False).to_numpy(dtype=bool)
    if not out.any():
        return frame
    mine = counts.setdefault(f"mapping.{table}", {})
    mine["exclude_meters"] = mine.get("exclude_meters", 0) + int(out.sum())
    return frame[~out].reset_index(drop=True)


def _exclude(
    tables: Tables,
    excluded: frozenset[str],
    counts: dict[str, dict[str, int]],
    names: tuple[str, ...] = ("meters", "usage", "readings"),
) -> Tables:
    """The mapped ``names`` tables without the meters of ``[mapping] exclude_meters`` (counted)."""
    if not excluded:
        return tables
    for table in names:
        setattr(tables, table, _drop_meters(getattr(tables, table), excluded, counts, table))
    q = tables.quarantine
    if len(q):  # their "no data" counts go with them (the rows are counted as filtered)
        meter = q["record_key"].astype(str).str.split("|").str[0]
        gone = ((q["rule"] == "no_data") & meter.isin(excluded)).to_numpy(dtype=bool)
        if gone.any():
            tables.quarantine = q[~gone].reset_index(drop=True)
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
    excluded: frozenset[str] = frozenset(),
    counts: dict[str, dict[str, int]] | None = None,
) -> Tables | None:
    """The three stages over chunks of whole meters; None when the records are not grouped
    by meter (a meter met again in a later chunk): the caller takes the whole-frame path."""
    name = plan[0]
    clock = time.perf_counter
    t = clock()
    chunks = MeterChunks(profile, raw, name, mapping=mapping, chunk_records=chunk_records)
    dropped: dict[str, dict[str, int]] = {}
    entities = _exclude(chunks.entities, excluded, dropped)
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
        chunk = _exclude(chunk, excluded, dropped, ("usage",))  # a chunk's usage rows only
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
    if counts is not None:
        for section, rules in dropped.items():
            mine = counts.setdefault(section, {})
            for rule, n in rules.items():
                mine[rule] = mine.get(rule, 0) + n
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
