"""The analyst's Excel mapping workbook: build it, read it back, check it against the data.

A provider profile's ``[mapping]`` section says how raw records become Scaler's tables (see
docs/mapping.md). Analysts rarely edit TOML; they fill a workbook. This module turns the
mapping into a workbook and back, losslessly::

    to_mapping_workbook(profile, "mapping.xlsx", samples=raw)   # prefilled from [mapping], [units]
    mapping = read_mapping_workbook("mapping.xlsx")             # == profile.section("mapping")
    units = read_unit_choices("mapping.xlsx")                   # == profile.section("units")
    profile = apply_mapping_workbook(profile, "mapping.xlsx")   # a copy with both replaced
    report = check_mapping(mapping, raw, units=units)          # against the latest data
    report = check_mapping(mapping, raw, profile=profile)      # ... after the connector's rules

Workbook layout
---------------
``README``            how to fill the workbook
``assets``, ``meters``, ``usage.<source>``, ``readings.<source>``
                      one sheet per target table / source: settings (resource, kind, ...) on
                      top, then one row per Scaler column: required, description, the provider
                      field path *or* a constant, notes
``meter_types``       each provider commodity value -> Scaler meter_type / meter_subtype
                      (drop-down lists of Scaler's meter types and subtypes)
``value_maps``        any other value translation (e.g. ``"E"`` -> ``True`` for estimated)
``units``             unit settings, and each provider unit label -> the unit to read it as
``energy_factors``    per-fuel volume -> energy factors that the analyst must confirm
``filters``           record filters: ``where`` / ``skip`` of resources and mapping sections and
                      ``[mapping] exclude_meters``, one row per condition operator
``fields``            every field path seen in the samples with example values (read-only)

Only the mapping sheets, ``filters``, ``meter_types``, ``value_maps``, ``units`` and
``energy_factors`` are read back; ``README``, ``fields`` and the hidden ``lists`` sheet are documentation.

Every enumerated cell has a drop-down (Excel data validation on named ranges of the hidden
``lists`` sheet): resources (from the profile), ``kind``, ``aggregate``, ``prorate``,
``to_consumption``, ``end_inclusive``, ``nonexistent``, field paths seen in the samples (per
resource), meter types and subtypes, units ("Read as": the registry's common spellings, the
ambiguous labels' choices and the aliases in use) and ``Confirmed``. Drop-downs of free-form
columns (field paths, units) warn rather than refuse, so a JSON field spec or a rarer pint unit
can still be typed. Notes are wrapped in their own column (rows sized to fit), never spilling
into data cells; every header is shown whole.

openpyxl is imported inside the functions that need it, so ``import scaler_workbench`` stays
light.
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scaler_workbench._filters import OPERATORS
from scaler_workbench._secrets import get_logger
from scaler_workbench.exceptions import FilterError, MappingError
from scaler_workbench.schema import METER_SUBTYPES, METER_TYPES, TABLES

if TYPE_CHECKING:
    import pandas as pd

    from scaler_workbench.profile import Profile

__all__ = [
    "CHECK_COLUMNS",
    "MAPPING_REQUIRED",
    "apply_mapping_workbook",
    "check_mapping",
    "field_paths",
    "read_mapping_workbook",
    "read_resource_filters",
    "read_unit_choices",
    "to_mapping_workbook",
]

log = get_logger(__name__)

#: Scaler columns that a mapping must fill (by a field path or a constant), per table. This is
#: narrower than the schema's ``required``: some required columns are derived by later stages
#: (a meter's canonical ``unit``, the usage ``unit`` taken from its meter).
MAPPING_REQUIRED: dict[str, tuple[str, ...]] = {
    "assets": ("asset_id", "name"),
    "meters": ("meter_id", "asset_id", "meter_type", "raw_unit"),
    "usage": ("meter_id", "start", "end", "consumption"),
    "readings": ("meter_id", "timestamp", "value"),
}


def _required(table: str, spec: Mapping[str, Any]) -> tuple[str, ...]:
    """Columns a table/source must map; usage ``end`` may come from a ``duration`` setting."""
    cols = MAPPING_REQUIRED[table]
    if table == "usage" and spec.get("duration"):
        cols = tuple(c for c in cols if c != "end")
    role = spec.get("role")
    fields = dict(spec.get("fields", {}) or {})
    if table == "usage" and role in ("redelivery", "production") and role in fields:
        cols = tuple(str(role) if c == "consumption" else c for c in cols)  # value by role name
    return cols


#: Columns filled by later stages, shown greyed in the workbook.
_DERIVED: dict[str, frozenset[str]] = {
    "assets": frozenset(),
    "meters": frozenset({"unit"}),
    "usage": frozenset(
        {"unit", "timezone", "n_intervals", "days_with_data", "raw_value", "raw_unit", "factor"}
        | {"method", "expected_intervals", "null_intervals", "estimated_intervals"}
        | {"first_local", "last_local", "billing_days"}
    ),
    "readings": frozenset(
        {"unit", "timezone", "flag", "raw_value", "raw_unit", "factor", "method"}
    ),
}

_SETTING_HELP: dict[str, str] = {
    "resource": "Profile resource whose records feed this table.",
    "derive_from": "Table whose records also give this one (e.g. assets from meters).",
    "nonexistent": "quarantine | shift_forward: local times skipped by a DST change.",
    "kind": "intervals | consumption | readings: what one record is.",
    "aggregate": "none | day | month: aggregate sub-daily values in the site's local time.",
    "end_inclusive": "TRUE when the end field names the last day included (bills).",
    "prorate": "none | month: split periods over calendar months by days.",
    "to_consumption": "none | day | month: difference registers into consumption.",
    "duration": "Length of each interval when records have no end, e.g. 1h or 30min.",
    "explode": "Path of a list inside each record: one row per list item.",
    "tz": "Time zone of naive timestamps (default: the site's).",
    "role": "consumption | redelivery | production: which value of the meter the source gives.",
    "split_sign": "TRUE: a signed net value's positive part is consumption, its negative part "
    "redelivery (per interval).",
    "provides": '["cost"]: this source only gives the cost of the other source\'s periods.',
}

#: Column descriptions worded for the analyst where the schema's refer to code.
_WORKBOOK_DESCRIPTIONS: dict[tuple[str, str], str] = {
    ("meters", "meter_subtype"): "Scaler's subtype of the meter type (e.g. Natural Gas, Potable, "
    "Non-hazardous): chosen per provider value on the meter_types sheet.",
}

#: Allowed values of the enumerated table settings (the workbook's drop-downs). ``aggregate``,
#: ``prorate`` and ``to_consumption`` also accept the transform's synonyms in
#: :data:`_SETTING_SYNONYMS`.
SETTING_CHOICES: dict[str, tuple[str, ...]] = {
    "kind": ("intervals", "consumption", "readings"),
    "aggregate": ("none", "day", "month"),
    "prorate": ("none", "day", "month"),
    "to_consumption": ("none", "day", "month"),
    "end_inclusive": ("TRUE", "FALSE", "auto"),
    "nonexistent": ("quarantine", "shift_forward"),
    "role": ("consumption", "redelivery", "production"),
}
_SETTING_SYNONYMS: dict[str, tuple[str, ...]] = {
    key: ("false", "", "reading", "period", "as-is")
    for key in ("aggregate", "prorate", "to_consumption")
}

#: Columns of the frame :func:`check_mapping` returns.
CHECK_COLUMNS = (
    "table",
    "source",
    "check",
    "severity",
    "subject",
    "count",
    "message",
    "sheet",
    "cell",
)

_TABLE_ORDER = ("assets", "meters", "usage", "readings")
_MULTI_SOURCE = ("usage", "readings")
_INFO_SHEETS = (
    "README",
    "filters",
    "meter_types",
    "value_maps",
    "units",
    "energy_factors",
    "fields",
    "lists",
)
#: Keys of ``[mapping]`` that are not tables: carried by the ``filters`` sheet.
_MAPPING_KEYS = ("exclude_meters",)
_FIELD_HEADER = (
    "Scaler column",
    "Required",
    "Description",
    "Provider field path",
    "Constant",
    "Notes",
)
_FIXED_TIME = "2024-01-01T00:00:00Z"
_ZIP_TIME = (2024, 1, 1, 0, 0, 0)

# styles (plain values; openpyxl objects are built lazily)
_HEADER_FILL = "1F4E78"
_TITLE_COLOR = "1F4E78"
_REQUIRED_FILL = "FFF2CC"
_MISSING_FILL = "F8CBAD"
_DERIVED_FILL = "EDEDED"
_INPUT_FILL = "E2EFDA"


# ---------------------------------------------------------------------------------------------
# field paths in records
# ---------------------------------------------------------------------------------------------
_MISSING = object()


def _split_path(path: str) -> list[str]:
    parts: list[str] = []
    for part in path.split("."):
        while part.endswith("[]"):
            part = part[:-2]
            if part:
                parts.append(part)
            part = ""
            parts.append("[]")
        if part:
            parts.append(part)
    return parts


def _resolve(node: Any, parts: list[str]) -> list[Any]:
    """Every value at ``parts`` under ``node`` (``[]`` maps over a list); [] when absent."""
    if not parts:
        return [node]
    head, rest = parts[0], parts[1:]
    if head == "[]":
        if not isinstance(node, list):
            return []
        out: list[Any] = []
        for item in node:
            out.extend(_resolve(item, rest))
        return out
    if isinstance(node, Mapping):
        if head not in node:
            return []
        return _resolve(node[head], rest)
    if isinstance(node, list) and head.lstrip("-").isdigit():
        i = int(head)
        if -len(node) <= i < len(node):
            return _resolve(node[i], rest)
    return []


def _walk(node: Any, prefix: str, out: dict[str, list[Any]]) -> None:
    if isinstance(node, Mapping):
        for k, v in node.items():
            _walk(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif isinstance(node, list) and node and all(isinstance(x, Mapping | list) for x in node):
        for item in node:
            _walk(item, f"{prefix}[]", out)
    else:
        out.setdefault(prefix, []).append(node)


def field_paths(records: Iterable[Mapping[str, Any]], *, examples: int = 3) -> list[dict[str, Any]]:
    """Every field path seen in ``records`` with how often it occurs and example values.

    Nested objects give dotted paths (``postalAddress.city``); lists of objects give ``[]``
    (``measurements[].unit``).

    Returns
    -------
    list of dict
        ``{"path", "count", "examples"}`` in first-seen order; ``count`` is the number of
        records holding the path, ``examples`` up to ``examples`` distinct values.
    """
    seen: dict[str, dict[str, Any]] = {}
    for record in records:
        found: dict[str, list[Any]] = {}
        _walk(record, "", found)
        for path, values in found.items():
            entry = seen.setdefault(path, {"path": path, "count": 0, "examples": []})
            entry["count"] += 1
            for v in values:
                if len(entry["examples"]) >= examples:
                    break
                if v not in entry["examples"]:
                    entry["examples"].append(v)
    return list(seen.values())


def _spec_paths(spec: Any) -> list[str]:
    """The record paths a field spec reads (a path, a compound list, or a table), every part of
    a compound spec included (a ``const`` part reads none)."""
    if isinstance(spec, str):
        return [spec]
    if isinstance(spec, list | tuple):
        return [p for part in spec for p in _spec_paths(part)]
    if isinstance(spec, Mapping):
        if "const" in spec:
            return []
        for key in ("join", "first"):
            if isinstance(spec.get(key), list | tuple):
                return _spec_paths(list(spec[key]))
        if "path" in spec:
            return [str(spec["path"])]
    return []


def _unsatisfied(spec: Any, found: Mapping[str, bool]) -> list[str]:
    """The paths of ``spec`` that no record has and that matter: every path of a join, the
    paths of a ``first`` only when none of its parts is satisfied."""
    if isinstance(spec, Mapping) and isinstance(spec.get("first"), list | tuple):
        parts = [_unsatisfied(p, found) for p in spec["first"]]
        return [] if any(not p for p in parts) else [x for p in parts for x in p]
    if isinstance(spec, list | tuple) or (
        isinstance(spec, Mapping) and "const" not in spec and "join" in spec
    ):
        items = spec if isinstance(spec, list | tuple) else spec["join"]
        return [x for p in items for x in _unsatisfied(p, found)]
    return [p for p in _spec_paths(spec) if not found.get(p, False)]


def _spec_values(record: Mapping[str, Any], spec: Any) -> list[Any]:
    """The value(s) a field spec gives for one record ([] when absent)."""
    if isinstance(spec, Mapping) and "const" in spec:
        return [spec["const"]]
    if isinstance(spec, int | float | bool):
        return [spec]
    if isinstance(spec, str):
        return _resolve(record, _split_path(spec))
    if isinstance(spec, Mapping) and "path" in spec and not {"join", "first"} & set(spec):
        return _resolve(record, _split_path(str(spec["path"])))
    if isinstance(spec, Mapping) and isinstance(spec.get("first"), list | tuple):
        for part in spec["first"]:  # the first part that has a value
            found = _spec_values(record, part)
            if found and found[0] is not None:
                return found
        return []
    items = spec if isinstance(spec, list | tuple) else (spec or {}).get("join")
    if not isinstance(items, list | tuple) or not items:
        return []
    sep = str(spec.get("sep", ":")) if isinstance(spec, Mapping) else ":"
    parts = [_spec_values(record, p) for p in items]
    if any(not v or v[0] is None for v in parts):
        return []
    return [sep.join(str(v[0]) for v in parts)]


def _explode_candidates(path: str, explode: Any) -> list[str]:
    """Where ``path`` may be found in a record of a source with ``explode``: the record itself,
    or (a path starting with the explode path) each item of the exploded list."""
    if not explode:
        return [path]
    out = [path, f"{explode}[].{path}"]
    if path.startswith(f"{explode}."):
        out.append(f"{explode}[].{path[len(str(explode)) + 1 :]}")
    return out


def _prepared(profile: Profile, raw: Mapping[str, Any]) -> Mapping[str, Any]:
    """``raw`` after the profile connector's ``prepare_raw`` (the provider rules)."""
    from scaler_workbench.connectors.registry import connector_class

    lists = {str(k): list(getattr(v, "records", v) or []) for k, v in raw.items()}
    prepared, _report = connector_class(profile).prepare_raw(profile, lists)
    return prepared


def _records(raw: Mapping[str, Any] | None, resource: str) -> list[Mapping[str, Any]]:
    if not raw or resource not in raw:
        return []
    value = raw[resource]
    records = getattr(value, "records", value)  # FetchResult or a plain list
    return list(records or [])


# ---------------------------------------------------------------------------------------------
# workbook building
# ---------------------------------------------------------------------------------------------
def _profile_parts(
    profile: Profile | Mapping[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], str]:
    if hasattr(profile, "section"):
        return (
            dict(profile.section("mapping")),
            dict(profile.section("units")),
            str(getattr(profile, "name", "")),
        )
    data = dict(profile)
    name = str(data.get("provider", {}).get("name", ""))
    return dict(data.get("mapping", {})), dict(data.get("units", {})), name


def _profile_resources(profile: Profile | Mapping[str, Any]) -> list[str]:
    return list(_resource_tables(profile))


def _resource_tables(profile: Profile | Mapping[str, Any]) -> dict[str, Any]:
    if hasattr(profile, "section"):
        return dict(profile.section("resources") or {})
    return dict(dict(profile).get("resources", {}) or {})


def _iter_specs(mapping: Mapping[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """``(table, source, spec)`` for every table/source in a mapping, in a stable order."""
    out: list[tuple[str, str, dict[str, Any]]] = []
    for table in _TABLE_ORDER:
        node = mapping.get(table)
        if not isinstance(node, Mapping):
            continue
        if table in _MULTI_SOURCE:
            for source, spec in node.items():
                if isinstance(spec, Mapping):
                    out.append((table, str(source), dict(spec)))
        else:
            out.append((table, "", dict(node)))
    return out


def _sheet_name(table: str, source: str, used: set[str]) -> str:
    base = f"{table}.{source}" if source else table
    base = re.sub(r"[\[\]:*?/\\]", "_", base)[:31]
    name, i = base, 2
    while name.lower() in used:
        suffix = f"~{i}"
        name = base[: 31 - len(suffix)] + suffix
        i += 1
    used.add(name.lower())
    return name


class _Styles:
    def __init__(self) -> None:
        from openpyxl.styles import Alignment, Border, Font, PatternFill, Side

        thin = Side(style="thin", color="BFBFBF")
        self.header_font = Font(bold=True, color="FFFFFF")
        self.header_fill = PatternFill("solid", fgColor=_HEADER_FILL)
        self.title_font = Font(bold=True, size=14, color=_TITLE_COLOR)
        self.bold = Font(bold=True)
        self.grey_font = Font(color="7F7F7F", italic=True)
        self.required_fill = PatternFill("solid", fgColor=_REQUIRED_FILL)
        self.missing_fill = PatternFill("solid", fgColor=_MISSING_FILL)
        self.derived_fill = PatternFill("solid", fgColor=_DERIVED_FILL)
        self.input_fill = PatternFill("solid", fgColor=_INPUT_FILL)
        self.border = Border(left=thin, right=thin, top=thin, bottom=thin)
        self.wrap = Alignment(wrap_text=True, vertical="top")
        self.top = Alignment(vertical="top")
        self.lists = _Lists()


class _Lists:
    """Drop-down values collected while writing; stored on the hidden ``lists`` sheet."""

    def __init__(self) -> None:
        self.values: dict[str, list[str]] = {}

    def add(self, name: str, values: Iterable[Any]) -> str | None:
        """Register a named list; returns the name, or None when there are no values."""
        items = [str(v) for v in dict.fromkeys(values) if v is not None and str(v) != ""]
        if not items:
            return None
        self.values[name] = items
        return name


def _dropdown(
    ws: Any, source: str | None, cells: str, *, strict: bool, title: str, message: str
) -> None:
    """A list drop-down on ``cells``: ``source`` a named range or an inline ``"a,b"`` list.

    ``strict`` refuses other values; otherwise Excel warns and lets the analyst keep the value
    (a JSON field spec, a rarer unit).
    """
    if source is None:
        return
    from openpyxl.worksheet.datavalidation import DataValidation

    formula = source if source.startswith('"') else f"={source}"
    dv = DataValidation(
        type="list",
        formula1=formula,
        allow_blank=True,
        showErrorMessage=True,
        errorStyle="stop" if strict else "warning",
        errorTitle=title,
        error=message,
    )
    dv.add(cells)
    ws.add_data_validation(dv)


_BOOLEAN_LIST = '"TRUE,FALSE"'


def _cell_value(value: Any) -> Any:
    """A value as written to a cell: scalars as themselves, containers as JSON text."""
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return value


def _header(ws: Any, row: int, labels: Iterable[str], st: _Styles) -> None:
    for col, label in enumerate(labels, start=1):
        c = ws.cell(row=row, column=col, value=label)
        c.font, c.fill, c.border = st.header_font, st.header_fill, st.border
        c.alignment = st.wrap


def _title(ws: Any, text: str, subtitle: str, st: _Styles) -> None:
    ws.cell(row=1, column=1, value=text).font = st.title_font
    if subtitle:
        c = ws.cell(row=2, column=1, value=subtitle)
        c.font = st.grey_font
        c.alignment = st.wrap


#: Approximate characters per unit of Excel column width, and points per wrapped line.
_LINE_POINTS = 15.0


def _widths(ws: Any, widths: Iterable[int], *, header: int | None = None) -> None:
    """Set column widths, never narrower than a header label, then size wrapped rows.

    Every header is shown whole; the subtitle (row 2) is merged over the used columns and
    wrapped; every row holding wrapped text gets the height its longest cell needs, so notes
    never spill into other cells (Excel and LibreOffice do not grow rows written by openpyxl).
    """
    import math

    from openpyxl.utils import get_column_letter

    sizes = list(widths)
    if header is not None:
        for i in range(len(sizes)):
            label = ws.cell(row=header, column=i + 1).value
            if label is not None:
                sizes[i] = max(sizes[i], len(str(label)) + 3)
    for i, w in enumerate(sizes, start=1):
        ws.column_dimensions[get_column_letter(i)].width = w
    if ws.cell(row=2, column=1).value is not None and len(sizes) > 1:
        ws.merge_cells(start_row=2, start_column=1, end_row=2, end_column=len(sizes))
    for row in ws.iter_rows(min_row=2):
        lines = 1
        for c in row:
            if c.value is None or not (c.alignment and c.alignment.wrap_text):
                continue
            if c.row == 2 and c.column == 1:
                width = sum(sizes)
            elif c.column <= len(sizes):
                width = sizes[c.column - 1]
            else:
                continue
            per_line = max(int(width * 1.1) - 1, 1)
            text = str(c.value)
            lines = max(lines, sum(math.ceil(max(len(t), 1) / per_line) for t in text.split("\n")))
        if lines > 1:
            ws.row_dimensions[row[0].row].height = _LINE_POINTS * min(lines, 12)


def _setting_keys(spec: Mapping[str, Any]) -> list[str]:
    """Settings rows of a table sheet, in order: ``resource`` first (unless derived)."""
    keys = [k for k in spec if k not in ("fields", "value_maps", "where", "skip")]
    if "resource" in spec or "derive_from" not in spec:
        return ["resource", *[k for k in keys if k != "resource"]]
    return keys


def _field_names(table: str, spec: Mapping[str, Any]) -> list[str]:
    names = [c.name for c in TABLES[table].columns]
    extra = [n for n in dict(spec.get("fields", {})) if n not in names]
    return [*names, *dict.fromkeys(extra)]


def _table_cells(table: str, spec: Mapping[str, Any]) -> tuple[dict[str, int], dict[str, int]]:
    """Rows of each setting and of each Scaler column on a table sheet written for ``spec``."""
    settings = {key: 5 + i for i, key in enumerate(_setting_keys(spec))}
    header = 5 + len(settings) + 1
    fields = {name: header + 1 + i for i, name in enumerate(_field_names(table, spec))}
    return settings, fields


def _sheet_names(mapping: Mapping[str, Any]) -> dict[tuple[str, str], str]:
    """The sheet of every (table, source), as :func:`to_mapping_workbook` names them."""
    used = {s.lower() for s in _INFO_SHEETS}
    return {(t, src): _sheet_name(t, src, used) for t, src, _ in _iter_specs(mapping)}


def _write_table_sheet(
    ws: Any,
    table: str,
    source: str,
    spec: dict[str, Any],
    st: _Styles,
    examples: dict[str, Any],
    paths_list: str | None,
) -> None:
    label = f"{table} source {source!r}" if source else table
    _title(ws, f"Mapping: {label}", TABLES[table].description, st)
    row = 3
    for key, value in (("table", table), ("source", source)):
        ws.cell(row=row, column=1, value=key).font = st.bold
        ws.cell(row=row, column=2, value=value)
        ws.cell(row=row, column=3, value="(do not edit)").font = st.grey_font
        row += 1
    for key in _setting_keys(spec):
        value = spec.get(key, "")
        k = ws.cell(row=row, column=1, value=key)
        k.font, k.alignment = st.bold, st.top
        c = ws.cell(row=row, column=2, value=_cell_value(value))
        c.fill, c.alignment = st.input_fill, st.top
        note = ws.cell(row=row, column=3, value=_SETTING_HELP.get(key, ""))
        note.font, note.alignment = st.grey_font, st.wrap
        if isinstance(value, Mapping | list | tuple):
            ws.cell(row=row, column=4, value="json")
        elif key == "resource":
            _dropdown(
                ws,
                "resources",
                f"B{row}",
                strict=False,
                title="Unknown resource",
                message="Pick a resource of the profile (or write a JSON list of them).",
            )
        elif key == "derive_from":
            _dropdown(
                ws,
                '"meters"',
                f"B{row}",
                strict=True,
                title="Unknown table",
                message="Assets can be derived from the meters' records.",
            )
        elif key in SETTING_CHOICES:
            choices = SETTING_CHOICES[key]
            _dropdown(
                ws,
                _BOOLEAN_LIST if key == "end_inclusive" and isinstance(value, bool) else key,
                f"B{row}",
                strict=True,
                title=f"Unknown {key}",
                message=f"Pick one of {', '.join(choices)}.",
            )
        row += 1
    row += 1
    header_row = row
    _header(ws, header_row, _FIELD_HEADER, st)
    fields = dict(spec.get("fields", {}))
    schema = TABLES[table]
    required = set(_required(table, spec))
    derived = _DERIVED[table]
    names = [c.name for c in schema.columns]
    for name in _field_names(table, spec):
        row += 1
        if name in names:
            column = schema.column(name)
            status = "yes" if name in required else ("derived" if name in derived else "no")
            description = _WORKBOOK_DESCRIPTIONS.get((table, name), column.description)
        else:
            status, description = "extra", "Not a Scaler column: kept for the transform."
        path: Any = fields.get(name)
        const: Any = None
        if isinstance(path, Mapping) and set(path) == {"const"}:
            const, path = path["const"], None
        elif isinstance(path, int | float | bool):
            const, path = path, None
        cells: list[Any] = [
            name,
            status,
            description,
            _cell_value(path) if path is not None else None,
            _cell_value(const) if const is not None else None,
            None,
        ]
        if isinstance(path, str) and path in examples:
            cells[5] = f"e.g. {examples[path]}"
        for col, value in enumerate(cells, start=1):
            c = ws.cell(row=row, column=col, value=value)
            c.border = st.border
            c.alignment = st.wrap
        if status == "yes":
            ws.cell(row=row, column=1).font = st.bold
            ws.cell(row=row, column=2).fill = st.required_fill
            fill = st.missing_fill if path is None and const is None else st.required_fill
            ws.cell(row=row, column=4).fill = fill
            ws.cell(row=row, column=5).fill = fill
        elif status == "derived":
            for col in range(1, 7):
                ws.cell(row=row, column=col).fill = st.derived_fill
            if not cells[5]:
                ws.cell(row=row, column=6, value="filled by a later stage; leave blank")
    if row > header_row:
        _dropdown(
            ws,
            paths_list,
            f"D{header_row + 1}:D{row + 50}",
            strict=False,
            title="Field path not seen in the samples",
            message="This path is not in the samples (see the 'fields' sheet). Keep it only if "
            "you know newer records have it, or for a JSON field spec.",
        )
    ws.freeze_panes = ws.cell(row=header_row + 1, column=2)
    _widths(ws, (18, 10, 50, 34, 18, 40), header=header_row)


def _meter_type_rows(
    mapping: Mapping[str, Any], raw: Mapping[str, Any] | None
) -> tuple[list[dict[str, Any]], str, str]:
    meters = mapping.get("meters", {}) if isinstance(mapping.get("meters"), Mapping) else {}
    fields = meters.get("fields", {})
    vmaps = meters.get("value_maps", {})
    type_spec = fields.get("meter_type")
    sub_spec = fields.get("meter_subtype")
    unit_spec = fields.get("raw_unit")
    type_field = ", ".join(_spec_paths(type_spec))
    sub_field = ", ".join(_spec_paths(sub_spec))
    rows: dict[str, dict[str, Any]] = {}

    def row(value: str) -> dict[str, Any]:
        return rows.setdefault(
            value,
            {"value": value, "meter_type": None, "meter_subtype": None, "units": {}, "count": 0},
        )

    for key, target in vmaps.get("meter_type", {}).items():
        row(str(key))["meter_type"] = target
    for key, target in vmaps.get("meter_subtype", {}).items():
        row(str(key))["meter_subtype"] = target
    resource = str(meters.get("resource", ""))
    seen: dict[str, dict[str, Any]] = {}
    for record in _records(raw, resource):
        values = _spec_values(record, type_spec) if type_spec is not None else []
        if sub_spec is not None and sub_spec != type_spec:
            values += _spec_values(record, sub_spec)
        units = _spec_values(record, unit_spec) if unit_spec is not None else []
        for v in dict.fromkeys(str(x) for x in values if x is not None):
            r = seen.setdefault(v, {"count": 0, "units": {}})
            r["count"] += 1
            for u in units:
                if u is not None:
                    r["units"][str(u)] = None
    for v in sorted(seen):
        r = row(v)
        r["count"] = seen[v]["count"]
        r["units"] = seen[v]["units"]
    return list(rows.values()), type_field, sub_field


def _write_lists(wb: Any, lists: _Lists) -> None:
    """The hidden ``lists`` sheet: one column per drop-down list, each a defined name."""
    from openpyxl.utils import get_column_letter
    from openpyxl.workbook.defined_name import DefinedName

    ws = wb.create_sheet("lists")
    ws.sheet_state = "hidden"
    columns = {"meter_types": list(METER_TYPES)}
    columns.update({t: list(subs) for t, subs in METER_SUBTYPES.items()})
    columns.update(lists.values)
    for col, (name, values) in enumerate(columns.items(), start=1):
        ws.cell(row=1, column=col, value=name)
        for i, v in enumerate(values, start=2):
            ws.cell(row=i, column=col, value=v)
        letter = get_column_letter(col)
        ref = f"lists!${letter}$2:${letter}${len(values) + 1}"
        wb.defined_names[name] = DefinedName(name, attr_text=ref)


def _unit_options(units: Mapping[str, Any]) -> list[str]:
    """'Read as' choices: canonical units, common spellings, ambiguous labels' choices, aliases."""
    from scaler_workbench.schema import CANONICAL_UNITS
    from scaler_workbench.units import AMBIGUOUS, LABELS

    aliases = dict(units.get("aliases", {}) or {})
    out = [*CANONICAL_UNITS.values(), *sorted(set(LABELS.values()), key=str.lower)]
    out += [choice for group in AMBIGUOUS.values() for choice in group]
    out += [str(v) for v in aliases.values()]
    return list(dict.fromkeys(out))


def _write_meter_types(
    wb: Any, mapping: Mapping[str, Any], raw: Mapping[str, Any] | None, st: _Styles
) -> None:
    from openpyxl.worksheet.datavalidation import DataValidation

    ws = wb.create_sheet("meter_types")
    rows, type_field, sub_field = _meter_type_rows(mapping, raw)
    src = type_field if sub_field in ("", type_field) else f"{type_field} / {sub_field}"
    _title(
        ws,
        "Meter types: provider value -> Scaler meter_type / meter_subtype",
        f"Provider values come from the meters field {src!r}. Leave the meter type blank to "
        "NOT import a value: its meters are then reported as not imported, never dropped "
        "silently.",
        st,
    )
    header_row = 4
    _header(
        ws,
        header_row,
        (
            "Provider value",
            "Scaler meter_type",
            "Scaler meter_subtype",
            "Units in data",
            "Meters in samples",
            "Notes",
        ),
        st,
    )
    dv_type = DataValidation(
        type="list",
        formula1="=meter_types",
        allow_blank=True,
        showErrorMessage=True,
        errorTitle="Unknown meter type",
        error="Pick Energy, Water or Waste (or leave blank).",
    )
    dv_sub = DataValidation(
        type="list",
        formula1="=INDIRECT($B5)",
        allow_blank=True,
        showErrorMessage=True,
        errorTitle="Unknown subtype",
        error="Pick a subtype of the meter type in column B.",
    )
    ws.add_data_validation(dv_type)
    ws.add_data_validation(dv_sub)
    row = header_row
    for r in rows:
        row += 1
        note = None
        if r["meter_type"] is None:
            note = "not imported (no meter type): listed by the mapping check"
        values = [
            r["value"],
            r["meter_type"],
            r["meter_subtype"],
            ", ".join(r["units"]) or None,
            r["count"],
            note,
        ]
        for col, value in enumerate(values, start=1):
            c = ws.cell(row=row, column=col, value=value)
            c.border = st.border
            c.alignment = st.wrap
        ws.cell(row=row, column=2).fill = st.input_fill
        ws.cell(row=row, column=3).fill = st.input_fill
    last = max(row, header_row + 200)
    dv_type.add(f"B{header_row + 1}:B{last}")
    dv_sub.add(f"C{header_row + 1}:C{last}")
    ws.freeze_panes = ws.cell(row=header_row + 1, column=2)
    _widths(ws, (48, 18, 30, 18, 12, 50), header=header_row)


def _write_value_maps(wb: Any, mapping: Mapping[str, Any], st: _Styles) -> None:
    ws = wb.create_sheet("value_maps")
    _title(
        ws,
        "Value maps: translate provider values of a mapped field",
        "Meter types are on the meter_types sheet. One row per (table, source, column, value).",
        st,
    )
    header_row = 4
    _header(
        ws, header_row, ("Table", "Source", "Scaler column", "Provider value", "Scaler value"), st
    )
    row = header_row
    for table, source, spec in _iter_specs(mapping):
        for column, vmap in dict(spec.get("value_maps", {})).items():
            if table == "meters" and column in ("meter_type", "meter_subtype"):
                continue
            for key, value in dict(vmap).items():
                row += 1
                for col, v in enumerate((table, source or None, column, str(key), value), 1):
                    ws.cell(row=row, column=col, value=_cell_value(v)).border = st.border
    _dropdown(
        ws,
        '"' + ",".join(_TABLE_ORDER) + '"',
        f"A{header_row + 1}:A{row + 50}",
        strict=True,
        title="Unknown table",
        message=f"Pick one of {', '.join(_TABLE_ORDER)}.",
    )
    ws.freeze_panes = ws.cell(row=header_row + 1, column=1)
    _widths(ws, (12, 16, 18, 30, 30), header=header_row)


def _flatten(node: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in node.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, Mapping) and v:
            out.update(_flatten(v, key))
        else:
            out[key] = v
    return out


def _unflatten(items: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in items:
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def _write_units(
    wb: Any,
    mapping: Mapping[str, Any],
    units: Mapping[str, Any],
    raw: Mapping[str, Any] | None,
    st: _Styles,
) -> None:
    ws = wb.create_sheet("units")
    _title(
        ws,
        "Units: how to read the provider's unit labels",
        "Settings (heating value for gas volume -> energy, ...) on top; then each unit label "
        "with the unit to read it as (pint spelling, e.g. US_therm, kWh, m³, tonne).",
        st,
    )
    row = 3
    # empty tables ([units.aliases] with no entries) are kept as a "{}" setting, so they
    # survive the round trip
    settings = _flatten(
        {
            k: v
            for k, v in units.items()
            if k not in ("aliases", "energy_factors") or (isinstance(v, Mapping) and not v)
        }
    )
    for key, value in settings.items():
        ws.cell(row=row, column=1, value=key).font = st.bold
        ws.cell(row=row, column=2, value=_cell_value(value)).fill = st.input_fill
        if isinstance(value, Mapping | list | tuple):
            ws.cell(row=row, column=4, value="json")
        row += 1
    row += 1
    header_row = row
    _header(
        ws, header_row, ("Provider unit label", "Read as (unit)", "Meters in samples", "Notes"), st
    )
    aliases = dict(units.get("aliases", {}))
    labels: dict[str, int] = {}
    meters = mapping.get("meters", {}) if isinstance(mapping.get("meters"), Mapping) else {}
    unit_spec = meters.get("fields", {}).get("raw_unit")
    if unit_spec is not None:
        for record in _records(raw, str(meters.get("resource", ""))):
            for u in _spec_values(record, unit_spec):
                if u is not None:
                    labels[str(u)] = labels.get(str(u), 0) + 1
    for label in [*aliases, *sorted(k for k in labels if k not in aliases)]:
        row += 1
        alias = aliases.get(label)
        note = None
        if alias is None:
            note = "read as-is" if _unit_ok(label) else "UNKNOWN unit: give the unit to read it as"
        values = (label, alias, labels.get(label, 0), note)
        for col, v in enumerate(values, 1):
            c = ws.cell(row=row, column=col, value=v)
            c.border = st.border
            c.alignment = st.wrap
        ws.cell(row=row, column=2).fill = (
            st.missing_fill if note and "UNKNOWN" in note else st.input_fill
        )
    _dropdown(
        ws,
        st.lists.add("unit_choices", _unit_options(units)),
        f"B{header_row + 1}:B{row + 50}",
        strict=False,
        title="Unit not in the list",
        message="Not one of the usual units. Keep it only if it is a valid unit spelling "
        "(e.g. kWh, m³, US_therm); the workbook refuses unknown units when read back.",
    )
    ws.freeze_panes = ws.cell(row=header_row + 1, column=1)
    _widths(ws, (34, 22, 18, 50), header=header_row)


def _write_energy_factors(wb: Any, units: Mapping[str, Any], st: _Styles) -> None:
    ws = wb.create_sheet("energy_factors")
    _title(
        ws,
        "Energy factors: volume -> energy per fuel (analyst must confirm)",
        "Fuel metered by volume needs a factor per fuel. Rows not confirmed are quarantined "
        "with a reason, never converted with a guess. Set Confirmed to TRUE once checked.",
        st,
    )
    header_row = 4
    _header(
        ws,
        header_row,
        ("Provider value", "Factor", "Factor unit", "Confirmed", "Source / note"),
        st,
    )
    row = header_row
    for value, spec in dict(units.get("energy_factors", {})).items():
        spec = dict(spec) if isinstance(spec, Mapping) else {"factor": spec}
        row += 1
        cells = (
            str(value),
            spec.get("factor"),
            spec.get("unit"),
            bool(spec.get("confirmed", False)),
            spec.get("note"),
        )
        for col, v in enumerate(cells, 1):
            ws.cell(row=row, column=col, value=v).border = st.border
        fill = st.input_fill if spec.get("confirmed") else st.missing_fill
        for col in (2, 3, 4):
            ws.cell(row=row, column=col).fill = fill
        ws.cell(row=row, column=5).alignment = st.wrap
    last = max(row, header_row) + 50
    _dropdown(
        ws,
        _BOOLEAN_LIST,
        f"D{header_row + 1}:D{last}",
        strict=True,
        title="Confirmed?",
        message="TRUE once the factor is checked with the provider, else FALSE.",
    )
    _dropdown(
        ws,
        st.lists.add("factor_units", ["kWh/m³", "MJ/m³", "kWh/litre", "MJ/litre", "kWh/kg"]),
        f"C{header_row + 1}:C{last}",
        strict=False,
        title="Factor unit not in the list",
        message="Keep it only if it is energy per volume or mass, e.g. kWh/m³.",
    )
    ws.freeze_panes = ws.cell(row=header_row + 1, column=2)
    _widths(ws, (44, 12, 14, 12, 60), header=header_row)


def _write_fields(
    wb: Any, mapping: Mapping[str, Any], raw: Mapping[str, Any] | None, st: _Styles
) -> dict[str, dict[str, Any]]:
    ws = wb.create_sheet("fields")
    _title(
        ws,
        "Fields seen in the samples (pick paths from here)",
        "Read-only: regenerated from the latest samples. `_parent.x` is the parent record's "
        "value that filled a path parameter.",
        st,
    )
    header_row = 4
    _header(
        ws,
        header_row,
        ("Resource", "Field path", "Records with it", "Example values", "Mapped to"),
        st,
    )
    mapped: dict[tuple[str, str], list[str]] = {}
    for table, source, spec in _iter_specs(mapping):
        for column, path in dict(spec.get("fields", {})).items():
            where = f"{table}.{source}.{column}" if source else f"{table}.{column}"
            mapped.setdefault((str(spec.get("resource", "")), str(path)), []).append(where)
    examples_by_resource: dict[str, dict[str, Any]] = {}
    row = header_row
    for resource in sorted(raw or {}):
        paths = field_paths(_records(raw, resource))
        examples_by_resource[resource] = {
            p["path"]: ", ".join(repr(x) for x in p["examples"]) for p in paths
        }
        for p in paths:
            row += 1
            cells = (
                resource,
                p["path"],
                p["count"],
                ", ".join(json.dumps(x, ensure_ascii=False, default=str) for x in p["examples"]),
                ", ".join(mapped.get((resource, p["path"]), [])) or None,
            )
            for col, v in enumerate(cells, 1):
                c = ws.cell(row=row, column=col, value=v)
                c.border = st.border
                c.alignment = st.wrap
    ws.freeze_panes = ws.cell(row=header_row + 1, column=3)
    _widths(ws, (16, 36, 14, 60, 30), header=header_row)
    return examples_by_resource


_README = """\
How to fill this mapping workbook
=================================
This workbook says how the provider's records become Scaler's tables. It was generated from the
provider profile ({name}) and the latest sample records. Fill it, save it, and read it back
in notebook 02 ("Map a provider"), which also checks it against fresh data.

1. Sheets 'assets', 'meters', 'usage.<source>', 'readings.<source>': one row per Scaler column.
   - 'Provider field path': the dotted path in a provider record (see the 'fields' sheet), e.g.
     postalAddress.city. `_parent.site_id` reads the parent record's id that fetched the record.
   - 'Constant': a fixed value for every row instead of a field path (never both).
   - Drop-downs offer the field paths seen in the samples and every allowed setting value.
   - Rows with Required = yes (yellow) must have a field path or a constant; red = still missing.
   - Grey rows are derived by later stages (units, usage): leave them blank.
   - The settings on top (resource, kind, aggregate, ...) say which records feed the table.
2. Sheet 'meter_types': for each provider commodity value pick the Scaler meter type and
   subtype from the drop-downs. A blank meter type means "not imported": such meters are
   reported by check_mapping and the sync summary, never dropped silently.
3. Sheet 'value_maps': other value translations (e.g. 'E' -> TRUE for estimated).
4. Sheet 'units': for each unit label the unit to read it as (pint spelling: kWh, MWh, m³,
   US_therm, tonne, US_gallon). Ambiguous labels (therms, gallons, tons, MBtu) MUST be chosen.
5. Sheet 'energy_factors': volume -> energy factors per fuel. Set Confirmed = TRUE only after
   checking the value with the provider; unconfirmed fuels are quarantined with a reason.
6. Sheet 'fields': every field path seen in the samples with example values. Read-only.
7. Sheet 'filters': records kept out, and counted: one row per condition (Applies to, Filter
   where/skip/exclude_meters, Field, Operator, Value). Delete a row to stop filtering; a bad
   operator or value is refused by sheet and cell when the workbook is read back.

Do not rename sheets or move the header rows; add rows freely.
"""


def _write_readme(ws: Any, name: str, st: _Styles) -> None:
    for i, line in enumerate(_README.format(name=name or "profile").splitlines(), start=1):
        c = ws.cell(row=i, column=1, value=line or None)
        if i == 1:
            c.font = st.title_font
    ws.column_dimensions["A"].width = 110


# ---------------------------------------------------------------------------------------------
# record filters (where / skip of resources and mapping sections, [mapping] exclude_meters)
# ---------------------------------------------------------------------------------------------
_FILTER_SHEET = "filters"
_FILTER_HEADER = ("Applies to", "Filter", "Field", "Operator", "Value", "Notes")
_FILTER_HEADER_ROW = 4
#: What the ``Filter`` column takes.
FILTER_KINDS = ("where", "skip", "exclude_meters")
_OPERATOR_WORDS = {
    "==": "equals",
    "!=": "differs from",
    ">": "is more than",
    "<": "is less than",
    ">=": "is at least",
    "<=": "is at most",
    "in": "is one of",
    "not in": "is none of",
    "matches": "matches the pattern",
}


def _filter_places(mapping: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``(place, section)`` of every mapping section that may carry ``where`` / ``skip``."""
    return [
        (f"mapping.{t}.{src}" if src else f"mapping.{t}", spec)
        for t, src, spec in _iter_specs(mapping)
    ]


def _filter_rows(
    mapping: Mapping[str, Any], resources: Mapping[str, Any]
) -> list[tuple[str, str, str | None, str | None, Any]]:
    """One ``(place, kind, field, operator, value)`` per condition operator, as written.

    A bare value or list (``status = "active"``, ``flag = ["a", "b"]``) has no operator; an
    operator table gives one row per operator; ``exclude_meters`` one row per meter id.
    """
    rows: list[tuple[str, str, str | None, str | None, Any]] = []
    places = [(f"resources.{n}", dict(r)) for n, r in resources.items() if isinstance(r, Mapping)]
    for place, spec in [*places, *_filter_places(mapping)]:
        for kind in ("where", "skip"):
            table = spec.get(kind)
            if table is None:
                continue
            if not isinstance(table, Mapping):
                raise MappingError(
                    f"{place}.{kind} must be a table of field = condition, got {table!r}",
                    key=f"{place}.{kind}",
                    hint="See docs/mapping.md, 'Record filters'.",
                )
            for path, cond in table.items():
                if isinstance(cond, Mapping):
                    rows.extend((place, kind, str(path), str(op), v) for op, v in cond.items())
                else:
                    rows.append((place, kind, str(path), None, cond))
    excluded = mapping.get("exclude_meters")
    if excluded is not None:
        if isinstance(excluded, str) or not isinstance(excluded, list | tuple):
            raise MappingError(
                f"mapping.exclude_meters must be a list of meter ids, got {excluded!r}",
                key="mapping.exclude_meters",
                hint='e.g. exclude_meters = ["Z1234", "Z5678"]',
            )
        rows.extend(("mapping", "exclude_meters", None, None, m) for m in excluded)
    return rows


def _filter_value_cell(value: Any, place: str) -> Any:
    """A condition's value as a cell: scalars as themselves, a list as JSON text."""
    if isinstance(value, list | tuple):
        return json.dumps(list(value), ensure_ascii=False)
    if isinstance(value, str) and value.lstrip().startswith("["):
        raise MappingError(
            f"{place}: the text value {value!r} would read back as a JSON list",
            key=place,
            hint='Write the condition with an operator ({ "==" = ... }) in the profile; in the '
            "workbook, a Value in [ ] is a list.",
        )
    if value is None or isinstance(value, str | bool | int | float):
        return value
    raise MappingError(
        f"{place}: the value {value!r} ({type(value).__name__}) cannot be written to a cell "
        "and read back as it is",
        key=place,
        hint='Write dates and times as text in the profile (e.g. ">=" = "2024-01-01"): '
        "filters compare ISO text in time order.",
    )


def _filter_note(kind: str, field: str | None, op: str | None, value: Any) -> str:
    """The row in words, for the Notes column (not read back)."""
    if kind == "exclude_meters":
        return "this meter id (as mapped) is kept out of meters, usage and readings, counted"
    verb = "keep a record only when" if kind == "where" else "drop a record when"
    if op == "missing":
        return f"{verb} {field} {'is null or absent' if value is True else 'has a value'}"
    if op is None:
        op = "in" if isinstance(value, list | tuple) else "=="
    return f"{verb} {field} {_OPERATOR_WORDS.get(op, op)} {_cell_value(value)!r}"


def _write_filters(
    wb: Any, mapping: Mapping[str, Any], resources: Mapping[str, Any], st: _Styles
) -> None:
    """The ``filters`` sheet: one row per condition operator (see docs/mapping.md)."""
    rows = _filter_rows(mapping, resources)
    ws = wb.create_sheet(_FILTER_SHEET)
    _title(
        ws,
        "Record filters: records kept out, and counted",
        "where: keep a record only when every condition holds; skip: drop it when any holds; "
        "exclude_meters: meter ids kept out of every table. Applies to: resources.<name> (the "
        "fetched records), mapping.<table>[.<source>] (what that sheet reads) or mapping "
        "(exclude_meters). Field: a dotted path. Operator blank: equals the value (a JSON list "
        '["a", "b"]: is one of them). Several rows with the same field must all hold.',
        st,
    )
    _header(ws, _FILTER_HEADER_ROW, _FILTER_HEADER, st)
    row = _FILTER_HEADER_ROW
    for place, kind, path, op, value in rows:
        row += 1
        cells = (
            place,
            kind,
            path,
            op,
            _filter_value_cell(value, f"{place}.{kind}"),
            _filter_note(kind, path, op, value),
        )
        for col, v in enumerate(cells, start=1):
            c = ws.cell(row=row, column=col, value=v)
            c.border, c.alignment = st.border, st.wrap
            if col in (1, 2, 3, 4, 5):
                c.fill = st.input_fill
        ws.cell(row=row, column=6).font = st.grey_font
    last = max(row, _FILTER_HEADER_ROW) + 50
    first = _FILTER_HEADER_ROW + 1
    places = [f"resources.{n}" for n in resources] + [p for p, _ in _filter_places(mapping)]
    _dropdown(
        ws,
        st.lists.add("filter_places", [*places, "mapping"]),
        f"A{first}:A{last}",
        strict=False,
        title="Unknown place",
        message="resources.<name>, mapping.<table>[.<source>] or mapping (exclude_meters).",
    )
    _dropdown(
        ws,
        st.lists.add("filter_kinds", FILTER_KINDS),
        f"B{first}:B{last}",
        strict=True,
        title="Unknown filter",
        message=f"Pick one of {', '.join(FILTER_KINDS)}.",
    )
    _dropdown(
        ws,
        st.lists.add("filter_operators", OPERATORS),
        f"D{first}:D{last}",
        strict=True,
        title="Unknown operator",
        message=f"Pick one of {', '.join(OPERATORS)} (blank: equals).",
    )
    ws.freeze_panes = ws.cell(row=first, column=1)
    _widths(ws, (26, 15, 24, 10, 30, 50), header=_FILTER_HEADER_ROW)


def _filter_error(
    ws: Any, row: int, col: int, exc: FilterError | str, hint: str = ""
) -> FilterError:
    """A :class:`FilterError` naming the sheet and cell of a filters-sheet row."""
    from openpyxl.utils import get_column_letter

    letter = get_column_letter(col)
    cell = f"{letter}{row}"
    message = exc.message if isinstance(exc, FilterError) else exc
    return FilterError(
        f"sheet {ws.title!r} cell {cell}: {message}",
        sheet=ws.title,
        row=row,
        column=letter,
        cell=cell,
        key=getattr(exc, "key", None),
        hint=(exc.hint if isinstance(exc, FilterError) else hint)
        or "See docs/mapping.md, 'Record filters'.",
    )


def _filter_value(raw: Any, op: str | None, ws: Any, row: int) -> Any:
    """A Value cell as the condition's value: JSON lists parsed, ``missing`` text as a bool."""
    value = raw.strip() if isinstance(raw, str) else raw
    if isinstance(value, str) and value.startswith("["):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as exc:
            raise _filter_error(
                ws,
                row,
                5,
                f"{value!r} is not a JSON list ({exc.msg})",
                'Write a list as JSON, e.g. ["test", "calibration"] (double quotes).',
            ) from exc
        if not isinstance(parsed, list):
            raise _filter_error(ws, row, 5, f"{value!r} is not a list", 'e.g. ["a", "b"]')
        return parsed
    if op == "missing" and isinstance(value, str) and value.upper() in ("TRUE", "FALSE"):
        return value.upper() == "TRUE"
    return value


def _read_filters(
    ws: Any,
) -> tuple[list[tuple[str, str, dict[str, Any], int]], list[Any]]:
    """The filters sheet as ``(place, kind, table, first row)`` and the excluded meter ids.

    Every condition is compiled as it is read, so a malformed one is a :class:`FilterError`
    naming its cell.

    Raises
    ------
    FilterError
        An unknown operator, filter or place, a value that does not fit its operator, a
        field given both a bare value and operators.
    MappingError
        A malformed sheet (moved header).
    """
    from scaler_workbench._filters import compile_filter

    header = _find_header(ws, _FILTER_HEADER[0])
    for col, label in enumerate(_FILTER_HEADER, start=1):
        if _text(ws.cell(row=header, column=col).value) != label:
            raise _err(
                ws,
                header,
                col,
                f"expected header {label!r}",
                "Regenerate the workbook; do not rename or reorder its columns.",
            )
    tables: dict[tuple[str, str], tuple[dict[str, Any], int]] = {}
    bare: set[tuple[str, str, str]] = set()
    excluded: list[Any] = []
    for row in range(header + 1, ws.max_row + 1):
        place = _text(ws.cell(row=row, column=1).value)
        kind = _text(ws.cell(row=row, column=2).value)
        path = _text(ws.cell(row=row, column=3).value)
        op = _text(ws.cell(row=row, column=4).value)
        raw = ws.cell(row=row, column=5).value
        if isinstance(raw, str) and not raw.strip():
            raw = None
        if place is None and kind is None and path is None and op is None and raw is None:
            continue
        if kind not in FILTER_KINDS:
            raise _filter_error(
                ws,
                row,
                2,
                f"unknown filter {kind!r}" if kind else "the filter (where, skip, ...) is missing",
                f"Pick one of {', '.join(FILTER_KINDS)}.",
            )
        if kind == "exclude_meters":
            if place not in (None, "mapping"):
                raise _filter_error(
                    ws,
                    row,
                    1,
                    f"exclude_meters applies to 'mapping', not {place!r}",
                    "Write mapping in column A: excluded meters leave every table.",
                )
            if path is not None or op is not None:
                raise _filter_error(
                    ws,
                    row,
                    3 if path is not None else 4,
                    "exclude_meters takes a meter id in the Value column only",
                    "Clear the Field and Operator cells; write the meter id (as mapped) in Value.",
                )
            if raw is None or isinstance(raw, bool) or not isinstance(raw, str | int):
                raise _filter_error(
                    ws,
                    row,
                    5,
                    f"exclude_meters needs a meter id, got {raw!r}",
                    "Write the meter id as mapped (compound keys joined), e.g. Z1234.",
                )
            excluded.append(raw.strip() if isinstance(raw, str) else raw)
            continue
        if place is None or not (place.startswith("resources.") or place.startswith("mapping.")):
            raise _filter_error(
                ws,
                row,
                1,
                f"{place!r} is not a place a filter applies to" if place else "Applies to is empty",
                "Write resources.<name> (fetched records) or mapping.<table>[.<source>] (what "
                "a mapping sheet reads), e.g. mapping.usage.intervals.",
            )
        if path is None:
            raise _filter_error(
                ws,
                row,
                3,
                "the field is missing",
                "Write the record field, e.g. status or meta.kind.",
            )
        key = f"{place}.{kind}"
        value = _filter_value(raw, op, ws, row)
        if value is None and op != "missing":
            raise _filter_error(
                ws, row, 5, f"{key}.{path} has no value", "Write the value to compare with."
            )
        try:
            cond = {path: value if op is None else {op: value}}
            compile_filter(*((cond, None) if kind == "where" else (None, cond)), key=place)
        except FilterError as exc:
            col = 4 if op is not None and op not in OPERATORS else 5
            raise _filter_error(ws, row, col, exc) from None
        table, _ = tables.setdefault((place, kind), ({}, row))
        was_bare = (place, kind, path) in bare
        if op is None or was_bare:
            if path in table:
                raise _filter_error(
                    ws,
                    row,
                    4,
                    f"{key}.{path} is given twice (a blank operator takes the field alone)",
                    "Keep one row with a blank operator, or one row per operator.",
                )
            bare.add((place, kind, path))
            table[path] = value
            continue
        cond = table.setdefault(path, {})
        if op in cond:
            raise _filter_error(
                ws,
                row,
                4,
                f"{key}.{path} has the operator {op!r} twice",
                "Keep one row per operator of a field.",
            )
        cond[op] = value
    return [(p, k, t, r) for (p, k), (t, r) in tables.items()], excluded


def _no_formulas(wb: Any) -> None:
    """Every cell as a value: a text starting with ``=`` stays text, never a formula.

    openpyxl stores such text as a formula; profile and sample text (a field path, a filter
    value, a value map key) must not run in the analyst's spreadsheet. Drop-downs are data
    validations and defined names, not cells, so nothing meant as a formula is touched.
    """
    for ws in wb.worksheets:
        for row in ws.iter_rows():
            for c in row:
                if c.data_type == "f":
                    c.data_type = "s"


def _save_deterministic(wb: Any, path: Path) -> None:
    _no_formulas(wb)
    buffer = io.BytesIO()
    wb.save(buffer)
    out = io.BytesIO()
    with zipfile.ZipFile(buffer) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == "docProps/core.xml":
                text = data.decode("utf-8")
                text = re.sub(
                    r"(<dcterms:(?:created|modified)[^>]*>)[^<]*(<)", rf"\g<1>{_FIXED_TIME}\2", text
                )
                data = text.encode("utf-8")
            zi = zipfile.ZipInfo(info.filename, date_time=_ZIP_TIME)
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.external_attr = 0o644 << 16
            zout.writestr(zi, data)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(out.getvalue())
    os.replace(tmp, path)


def to_mapping_workbook(
    profile: Profile | Mapping[str, Any],
    path: str | os.PathLike[str],
    *,
    samples: Mapping[str, Any] | None = None,
) -> Path:
    """Write the analyst's mapping workbook for ``profile``, prefilled from its ``[mapping]``.

    Parameters
    ----------
    profile : Profile or dict
        The provider profile (or its parsed TOML dict). Its ``[mapping]`` and ``[units]``
        sections prefill the workbook.
    path : path-like
        Where to write the ``.xlsx`` file (parent folders are created).
    samples : dict of str to list of dict, optional
        Raw records per resource (or ``FetchResult`` objects) as the transform receives them.
        They fill the ``fields`` sheet, the commodity values on ``meter_types`` and the unit
        labels on ``units``.

    Returns
    -------
    Path
        The written file. The bytes are deterministic for a given profile and samples.

    Raises
    ------
    MappingError
        If the mapping names an unknown table, or the file cannot be written.
    """
    from openpyxl import Workbook

    mapping, units, name = _profile_parts(profile)
    resources = [str(r) for r in _profile_resources(profile)]
    unknown = [t for t in mapping if t not in _TABLE_ORDER and t not in _MAPPING_KEYS]
    if unknown:
        raise MappingError(
            f"[mapping] has unknown table(s) {unknown}",
            key=f"mapping.{unknown[0]}",
            hint=f"Use {', '.join(_TABLE_ORDER)}.",
        )
    st = _Styles()
    wb = Workbook()
    readme = wb.active
    readme.title = "README"
    _write_readme(readme, name, st)
    examples: dict[str, dict[str, Any]] = {}
    if samples:
        # computed first so that table sheets can show examples; the sheet is placed last
        tmp_wb = Workbook()
        examples = _write_fields(tmp_wb, mapping, samples, st)
    for key, choices in SETTING_CHOICES.items():
        st.lists.add(key, choices)
    declared = list(resources) + [r for r in (samples or {}) if r not in resources]
    st.lists.add("resources", declared)
    path_lists: dict[str, str | None] = {}
    for i, name in enumerate(sorted(samples or {}), start=1):
        paths = [p["path"] for p in field_paths(_records(samples, name))]
        path_lists[name] = st.lists.add(f"paths_{i}", paths)
    sheets = _sheet_names(mapping)
    for table, source, spec in _iter_specs(mapping):
        ws = wb.create_sheet(sheets[(table, source)])
        resource: Any = spec.get("resource")
        if resource is None and spec.get("derive_from"):
            resource = mapping.get(str(spec["derive_from"]), {}).get("resource")
        res_examples = examples.get(str(resource), {})
        paths_list = path_lists.get(resource) if isinstance(resource, str) else None
        _write_table_sheet(ws, table, source, spec, st, res_examples, paths_list)
    _write_filters(wb, mapping, _resource_tables(profile), st)
    _write_meter_types(wb, mapping, samples, st)
    _write_value_maps(wb, mapping, st)
    _write_units(wb, mapping, units, samples, st)
    _write_energy_factors(wb, units, st)
    _write_fields(wb, mapping, samples, st)
    _write_lists(wb, st.lists)
    p = Path(path)
    try:
        _save_deterministic(wb, p)
    except OSError as exc:
        raise MappingError(
            f"cannot write the mapping workbook {str(p)!r}: {exc}",
            hint="Check the folder exists and the file is not open in Excel.",
        ) from exc
    log.info("wrote mapping workbook %s", p)
    return p


# ---------------------------------------------------------------------------------------------
# reading back
# ---------------------------------------------------------------------------------------------
def _load(path: str | os.PathLike[str]) -> Any:
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    p = Path(path)
    if not p.exists():
        raise MappingError(
            f"mapping workbook {str(p)!r} does not exist",
            hint="Create it with to_mapping_workbook(profile, path, samples=...).",
        )
    try:
        return load_workbook(p, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise MappingError(
            f"{str(p)!r} is not an Excel .xlsx workbook ({type(exc).__name__})",
            hint="Save the file as 'Excel Workbook (.xlsx)' and read it again.",
        ) from exc


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return str(value)


_DECIMAL_COMMA = re.compile(r"[+-]?(\d{1,3}(\.\d{3})+|\d+),\d+")


def _refuse_decimal_comma(value: Any, ws: Any, row: int, col: int) -> None:
    """A number typed with a decimal comma is stored by Excel as text: say so, in cell terms."""
    if isinstance(value, str) and _DECIMAL_COMMA.fullmatch(value.strip()):
        number = value.strip().replace(".", "").replace(",", ".")
        raise _err(
            ws,
            row,
            col,
            f"{value.strip()!r} is a number written with a decimal comma, which Excel keeps as "
            "text",
            f"Type it as {number} (a decimal point), or set your spreadsheet's decimal "
            "separator to the comma so the cell holds a number, then read the workbook again.",
        )


def _setting(value: Any, fmt: Any, ws: Any, cell: str) -> Any:
    if isinstance(value, str):
        value = value.strip()
        from openpyxl.utils.cell import column_index_from_string, coordinate_from_string

        letter, row = coordinate_from_string(cell)
        _refuse_decimal_comma(value, ws, row, column_index_from_string(letter))
    if _text(fmt) == "json" and isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise MappingError(
                f"sheet {ws.title!r} cell {cell}: {value!r} is not valid JSON",
                sheet=ws.title,
                cell=cell,
                hint="Fix the JSON text, or clear column D to store it as plain text.",
            ) from exc
    return value


def _err(ws: Any, row: int, col: int, message: str, hint: str) -> MappingError:
    from openpyxl.utils import get_column_letter

    letter = get_column_letter(col)
    cell = f"{letter}{row}"
    return MappingError(
        f"sheet {ws.title!r} cell {cell}: {message}",
        sheet=ws.title,
        row=row,
        column=letter,
        cell=cell,
        hint=hint,
    )


def _find_header(ws: Any, first: str) -> int:
    for row in range(1, min(ws.max_row, 60) + 1):
        if _text(ws.cell(row=row, column=1).value) == first:
            return row
    raise MappingError(
        f"sheet {ws.title!r} is malformed: no header row starting with {first!r} in column A",
        sheet=ws.title,
        hint="Regenerate the workbook with to_mapping_workbook(); do not move the header rows.",
    )


def _read_table_sheet(ws: Any) -> tuple[str, str, dict[str, Any]]:
    header = _find_header(ws, _FIELD_HEADER[0])
    for col, label in enumerate(_FIELD_HEADER, start=1):
        if _text(ws.cell(row=header, column=col).value) != label:
            raise _err(
                ws,
                header,
                col,
                f"expected header {label!r}",
                "Regenerate the workbook; do not rename or reorder its columns.",
            )
    settings: dict[str, Any] = {}
    for row in range(3, header):
        key = _text(ws.cell(row=row, column=1).value)
        if key is None:
            continue
        value = ws.cell(row=row, column=2).value
        settings[key] = (row, _setting(value, ws.cell(row=row, column=4).value, ws, f"B{row}"))
    table = _text(settings.pop("table", (0, None))[1])
    source = _text(settings.pop("source", (0, None))[1]) or ""
    if table not in _TABLE_ORDER:
        raise MappingError(
            f"sheet {ws.title!r} is malformed: its 'table' setting is {table!r}",
            sheet=ws.title,
            hint=f"The 'table' row (column B) must be one of {', '.join(_TABLE_ORDER)}.",
        )
    if table in _MULTI_SOURCE and not source:
        raise MappingError(
            f"sheet {ws.title!r}: a {table} sheet needs a 'source' name",
            sheet=ws.title,
            hint="Fill the 'source' row (column B) with the source name, e.g. intervals.",
        )
    spec: dict[str, Any] = {}
    for key, (row, value) in settings.items():
        if value is None or value == "":
            if key == "resource" and "derive_from" not in settings:
                raise _err(
                    ws,
                    row,
                    2,
                    "the resource is missing",
                    "Name the profile resource whose records feed this table.",
                )
            continue
        spec[key] = value
    for kind in ("where", "skip"):  # a workbook written before the filters sheet
        if kind in spec:
            from scaler_workbench._filters import compile_filter

            place = f"mapping.{table}.{source}" if source else f"mapping.{table}"
            try:
                pair = (spec[kind], None) if kind == "where" else (None, spec[kind])
                compile_filter(*pair, key=place)
            except FilterError as exc:
                raise _filter_error(ws, settings[kind][0], 2, exc) from None
    schema = TABLES[table]
    names = set(schema.names)
    fields: dict[str, Any] = {}
    seen: set[str] = set()
    for row in range(header + 1, ws.max_row + 1):
        name = _text(ws.cell(row=row, column=1).value)
        status = _text(ws.cell(row=row, column=2).value)
        path = _text(ws.cell(row=row, column=4).value)
        const = ws.cell(row=row, column=5).value
        if isinstance(const, str) and not const.strip():
            const = None
        if name is None:
            if path is not None or const is not None:
                raise _err(
                    ws,
                    row,
                    1,
                    "a mapping without a Scaler column name",
                    "Write the Scaler column in column A or clear the row.",
                )
            continue
        if name not in names and status != "extra":
            raise _err(
                ws,
                row,
                1,
                f"{name!r} is not a column of Scaler's {table} table",
                f"Use one of {', '.join(schema.names)}, or write 'extra' in column B to keep "
                "a non-Scaler field for the transform.",
            )
        if name in seen:
            raise _err(ws, row, 1, f"{name!r} is listed twice", "Keep one row per column.")
        seen.add(name)
        if path is not None and const is not None:
            raise _err(
                ws,
                row,
                5,
                f"{name!r} has both a field path and a constant",
                "Keep either the field path (column D) or the constant (column E).",
            )
        if path is not None:
            if path.startswith(("{", "[")):
                try:
                    fields[name] = json.loads(path)
                except json.JSONDecodeError as exc:
                    raise _err(
                        ws,
                        row,
                        4,
                        f"{path!r} is neither a field path nor valid JSON",
                        "Write a dotted path, or a JSON list/table such as "
                        '{"path": "date", "format": "epoch_ms"}.',
                    ) from exc
            else:
                fields[name] = path
        elif const is not None:
            if name in names and schema.column(name).kind in ("float", "int"):
                _refuse_decimal_comma(const, ws, row, 5)
            fields[name] = {"const": const.strip() if isinstance(const, str) else const}
    for name in _required(table, {**spec, "fields": fields}):
        if name not in fields:
            row = _row_of(ws, header, name)
            raise _err(
                ws,
                row,
                4,
                f"required column {name!r} of {table} is not mapped",
                "Give the provider field path (see the 'fields' sheet) or a constant.",
            )
    spec["fields"] = fields
    return table, source, spec


def _row_of(ws: Any, header: int, name: str) -> int:
    for row in range(header + 1, ws.max_row + 1):
        if _text(ws.cell(row=row, column=1).value) == name:
            return row
    return header + 1


def _read_meter_types(ws: Any) -> tuple[dict[str, str], dict[str, str]]:
    header = _find_header(ws, "Provider value")
    types: dict[str, str] = {}
    subtypes: dict[str, str] = {}
    lookup = {t.lower(): t for t in METER_TYPES}
    for row in range(header + 1, ws.max_row + 1):
        value = ws.cell(row=row, column=1).value
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        key = str(value)
        mtype = _text(ws.cell(row=row, column=2).value)
        sub = _text(ws.cell(row=row, column=3).value)
        if mtype is not None:
            canonical = lookup.get(mtype.lower())
            if canonical is None:
                raise _err(
                    ws,
                    row,
                    2,
                    f"unknown meter type {mtype!r} for provider value {key!r}",
                    f"Use one of {', '.join(METER_TYPES)}, or leave it blank to not import.",
                )
            types[key] = canonical
        if sub is not None:
            allowed = [s for subs in METER_SUBTYPES.values() for s in subs]
            if mtype is not None:
                allowed = list(METER_SUBTYPES[lookup[mtype.lower()]])
            match = {s.lower(): s for s in allowed}.get(sub.lower())
            if match is None:
                where = f"meter type {lookup[mtype.lower()]!r}" if mtype else "any meter type"
                raise _err(
                    ws,
                    row,
                    3,
                    f"subtype {sub!r} is not a subtype of {where}",
                    f"Use one of {', '.join(allowed)}.",
                )
            subtypes[key] = match
    return types, subtypes


def _read_value_maps(ws: Any) -> list[tuple[str, str, str, str, Any]]:
    header = _find_header(ws, "Table")
    out = []
    for row in range(header + 1, ws.max_row + 1):
        table = _text(ws.cell(row=row, column=1).value)
        source = _text(ws.cell(row=row, column=2).value) or ""
        column = _text(ws.cell(row=row, column=3).value)
        key = ws.cell(row=row, column=4).value
        value = ws.cell(row=row, column=5).value
        if table is None and column is None and key is None:
            continue
        if table not in _TABLE_ORDER:
            raise _err(
                ws, row, 1, f"unknown table {table!r}", f"Use one of {', '.join(_TABLE_ORDER)}."
            )
        if column is None or column not in TABLES[table].names:
            raise _err(
                ws,
                row,
                3,
                f"{column!r} is not a column of Scaler's {table} table",
                f"Use one of {', '.join(TABLES[table].names)}.",
            )
        if key is None:
            raise _err(ws, row, 4, "the provider value is missing", "Fill the provider value.")
        out.append((table, source, column, str(key), value))
    return out


def _read_units(ws: Any) -> dict[str, Any]:
    header = _find_header(ws, "Provider unit label")
    settings: list[tuple[str, Any]] = []
    for row in range(3, header):
        key = _text(ws.cell(row=row, column=1).value)
        if key is None:
            continue
        value = ws.cell(row=row, column=2).value
        if value is None:
            continue
        settings.append((key, _setting(value, ws.cell(row=row, column=4).value, ws, f"B{row}")))
    out = _unflatten(settings)
    aliases: dict[str, str] = {}
    for row in range(header + 1, ws.max_row + 1):
        label = ws.cell(row=row, column=1).value
        alias = _text(ws.cell(row=row, column=2).value)
        if label is None or alias is None:
            continue
        if not _unit_ok(alias):
            raise _err(
                ws,
                row,
                2,
                f"{alias!r} is not a unit the workbench knows",
                "Use a pint spelling such as kWh, MWh, GJ, m³, litre, US_gallon, US_therm, tonne.",
            )
        aliases[str(label)] = alias
    if aliases:
        out["aliases"] = aliases
    return out


def _read_energy_factors(ws: Any) -> dict[str, Any]:
    header = _find_header(ws, "Provider value")
    out: dict[str, Any] = {}
    for row in range(header + 1, ws.max_row + 1):
        value = ws.cell(row=row, column=1).value
        if value is None:
            continue
        factor = ws.cell(row=row, column=2).value
        unit = _text(ws.cell(row=row, column=3).value)
        confirmed = ws.cell(row=row, column=4).value
        note = _text(ws.cell(row=row, column=5).value)
        spec: dict[str, Any] = {}
        if factor is not None and factor != "":
            if isinstance(factor, bool) or not isinstance(factor, int | float):
                try:
                    factor = float(str(factor).replace(",", "."))
                except ValueError:
                    raise _err(
                        ws,
                        row,
                        2,
                        f"factor {factor!r} is not a number",
                        "Write the factor as a number, e.g. 10.55.",
                    ) from None
            if factor <= 0:
                raise _err(ws, row, 2, f"factor {factor!r} must be positive", "Fix the factor.")
            spec["factor"] = factor
        if unit is not None:
            if not _unit_ok(unit):
                raise _err(
                    ws,
                    row,
                    3,
                    f"{unit!r} is not a unit the workbench knows",
                    "Write the factor unit like kWh/m³ or MJ/m³.",
                )
            spec["unit"] = unit
        if isinstance(confirmed, str):
            confirmed = confirmed.strip().lower() in ("true", "yes", "y", "1", "x")
        spec["confirmed"] = bool(confirmed)
        if spec["confirmed"] and "factor" not in spec:
            raise _err(
                ws,
                row,
                2,
                f"{value!s} is confirmed but has no factor",
                "Give the factor, or set Confirmed to FALSE.",
            )
        if spec["confirmed"] and "unit" not in spec:
            raise _err(
                ws,
                row,
                3,
                f"{value!s} is confirmed but has no factor unit",
                "Give the factor's unit, e.g. kWh/m³.",
            )
        if note is not None:
            spec["note"] = note
        out[str(value)] = spec
    return out


def _read_all(
    path: str | os.PathLike[str],
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None]:
    """``[mapping]``, ``[units]`` and the resources' filters (``None``: no filters sheet)."""
    wb = _load(path)
    mapping: dict[str, Any] = {}
    for ws in wb.worksheets:
        if ws.title in _INFO_SHEETS:
            continue
        table, source, spec = _read_table_sheet(ws)
        if source:
            group = mapping.setdefault(table, {})
            if source in group:
                raise MappingError(
                    f"sheet {ws.title!r}: {table} source {source!r} appears twice",
                    sheet=ws.title,
                    hint="Give each source sheet a distinct 'source' name.",
                )
            group[source] = spec
        else:
            if table in mapping:
                raise MappingError(
                    f"sheet {ws.title!r}: a second sheet for table {table!r}",
                    sheet=ws.title,
                    hint="Keep one sheet per table (assets, meters).",
                )
            mapping[table] = spec
    for name in ("meter_types", "units"):
        if name not in wb.sheetnames:
            raise MappingError(
                f"the workbook has no {name!r} sheet",
                sheet=name,
                hint="Regenerate the workbook with to_mapping_workbook(); do not delete sheets.",
            )
    for table in ("assets", "meters"):
        if table not in mapping:
            raise MappingError(
                f"the workbook has no sheet for the {table} table",
                sheet=table,
                hint="Regenerate the workbook with to_mapping_workbook(); do not delete sheets.",
            )
    types, subtypes = _read_meter_types(wb["meter_types"])
    vmaps: dict[str, Any] = {}
    if types:
        vmaps["meter_type"] = types
    if subtypes:
        vmaps["meter_subtype"] = subtypes
    if vmaps:
        mapping["meters"]["value_maps"] = vmaps
    if "value_maps" in wb.sheetnames:
        for table, source, column, key, value in _read_value_maps(wb["value_maps"]):
            target = mapping.get(table, {}).get(source) if source else mapping.get(table)
            if not isinstance(target, dict):
                raise MappingError(
                    f"sheet 'value_maps': no sheet maps {table} source {source!r}",
                    sheet="value_maps",
                    hint="Fix the table/source names or add the source sheet.",
                )
            target.setdefault("value_maps", {}).setdefault(column, {})[key] = value
    # value maps must map every table's meter type... only checked on data (check_mapping)
    resource_filters = None
    if _FILTER_SHEET in wb.sheetnames:
        resource_filters = _place_filters(wb[_FILTER_SHEET], mapping)
    units = _read_units(wb["units"])
    if "energy_factors" in wb.sheetnames:
        factors = _read_energy_factors(wb["energy_factors"])
        if factors:
            units["energy_factors"] = factors
    return mapping, units, resource_filters


def _place_filters(ws: Any, mapping: dict[str, Any]) -> dict[str, Any]:
    """Put the filters sheet's mapping filters into ``mapping``; return the resources' own.

    Returns
    -------
    dict
        ``{resource: ({"where": ..., "skip": ...}, row)}``: the first row naming it.
    """
    tables, excluded = _read_filters(ws)
    resources: dict[str, Any] = {}
    for place, kind, table, row in tables:
        if place.startswith("resources."):
            name = place.removeprefix("resources.")
            flt, _ = resources.setdefault(name, ({}, row))
            flt[kind] = table
            continue
        parts = place.split(".", 2)
        target: Any = mapping.get(parts[1]) if len(parts) > 1 else None
        if isinstance(target, dict) and parts[1] in _MULTI_SOURCE:
            target = target.get(parts[2]) if len(parts) > 2 else None
        elif len(parts) > 2:
            target = None
        if not isinstance(target, dict):
            known = [p for p, _ in _filter_places(mapping)]
            raise _filter_error(
                ws,
                row,
                1,
                f"no mapping sheet maps {place!r}{_did_you_mean(place, known)}",
                f"Use one of {', '.join(known)} or resources.<name>.",
            )
        if kind in target:
            raise _filter_error(
                ws,
                row,
                1,
                f"{place}.{kind} is also given on its mapping sheet",
                f"Keep it on the filters sheet only: clear the {kind!r} setting of that sheet.",
            )
        target[kind] = table
    if excluded:
        mapping["exclude_meters"] = excluded
    return resources


def read_mapping_workbook(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a filled mapping workbook back into the profile's ``[mapping]`` dict.

    Parameters
    ----------
    path : path-like
        A workbook written by :func:`to_mapping_workbook` and filled by the analyst.

    Returns
    -------
    dict
        Exactly the shape of a profile's ``[mapping]`` section (``assets``, ``meters`` with
        ``value_maps``, ``usage.<source>``, ``readings.<source>``), ready for
        ``build_tables(profile, raw, mapping=...)``.

    Raises
    ------
    MappingError
        With ``sheet``, ``row``, ``column`` and ``cell`` when a required column is not mapped,
        a meter type or subtype is unknown, a unit is invalid, a sheet is malformed, or the file
        is not an ``.xlsx`` workbook.
    """
    return _read_all(path)[0]


def read_resource_filters(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Read the ``filters`` sheet's resource filters: ``where`` / ``skip`` per resource.

    Parameters
    ----------
    path : path-like
        A workbook written by :func:`to_mapping_workbook` (and edited by a person).

    Returns
    -------
    dict
        ``{resource: {"where": {...}, "skip": {...}}}`` for the resources the sheet names
        (the ``[resources.<name>]`` keys); empty when it names none or has no filters sheet.

    Raises
    ------
    FilterError
        A malformed condition, naming the sheet and cell.
    MappingError
        As :func:`read_mapping_workbook` (the whole workbook is checked).
    """
    found = _read_all(path)[2] or {}
    return {name: flt for name, (flt, _) in found.items()}


def read_unit_choices(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the ``units`` and ``energy_factors`` sheets back into a ``[units]`` dict.

    Parameters
    ----------
    path : path-like
        A workbook written by :func:`to_mapping_workbook` (and edited by a person).

    Returns
    -------
    dict
        The ``[units]`` choices: ``aliases`` and, when confirmed, ``heating_value``
        [kWh per source unit] factors; empty when the sheets hold no choice.

    Raises
    ------
    MappingError
        As :func:`read_mapping_workbook` (the whole workbook is checked).
    """
    return _read_all(path)[1]


def apply_mapping_workbook(profile: Profile, path: str | os.PathLike[str]) -> Profile:
    """Return a copy of ``profile`` whose ``[mapping]`` and ``[units]`` come from the workbook.

    Parameters
    ----------
    profile : Profile
        The provider profile; it is not changed.
    path : path-like
        A workbook written by :func:`to_mapping_workbook` (and edited by a person).

    Returns
    -------
    Profile
        A deep copy with the workbook's ``[mapping]``; its ``[units]`` replaced by the
        workbook's choices (removed when the workbook has none).

    Raises
    ------
    MappingError
        As :func:`read_mapping_workbook`.
    """
    import copy

    mapping, units, resource_filters = _read_all(path)
    if resource_filters is None:
        _refuse_lost_filters(profile, mapping, path)
    clone = copy.deepcopy(profile)
    for data in (clone.data, clone.template):
        if data is None:
            continue
        data["mapping"] = copy.deepcopy(mapping)
        if units:
            data["units"] = copy.deepcopy(units)
        else:
            data.pop("units", None)
        if resource_filters is None:
            continue
        tables = data.get("resources") or {}
        for name, (_, row) in resource_filters.items():
            if not isinstance(tables.get(name), dict):
                raise FilterError(
                    f"sheet {_FILTER_SHEET!r} cell A{row}: the profile has no resource "
                    f"{name!r}{_did_you_mean(name, list(tables))}",
                    sheet=_FILTER_SHEET,
                    row=row,
                    column="A",
                    cell=f"A{row}",
                    key=f"resources.{name}",
                    provider=profile.name,
                    hint=f"Use resources.<name> with one of: {', '.join(tables)}.",
                )
        for name, table in tables.items():
            if isinstance(table, dict):
                for kind in ("where", "skip"):
                    table.pop(kind, None)
                table.update(copy.deepcopy(resource_filters.get(name, ({}, 0))[0]))
    return clone


def _refuse_lost_filters(
    profile: Profile, mapping: Mapping[str, Any], path: str | os.PathLike[str]
) -> None:
    """A workbook without a filters sheet must not drop the profile's mapping filters."""
    have = profile.section("mapping") or {}
    lost = ["mapping.exclude_meters"] if have.get("exclude_meters") else []
    mine = dict(_filter_places(mapping))
    for place, spec in _filter_places(have):
        for kind in ("where", "skip"):
            if spec.get(kind) is not None and mine.get(place, {}).get(kind) != spec[kind]:
                lost.append(f"{place}.{kind}")
    if lost:
        raise MappingError(
            f"the workbook {str(path)!r} has no {_FILTER_SHEET!r} sheet (it was written before "
            f"filters were carried) and applying it would drop the profile's record filters "
            f"{', '.join(lost)}: records they keep out would come back",
            sheet=_FILTER_SHEET,
            key=lost[0],
            hint="Write a new workbook with to_mapping_workbook(profile, ...) and copy your "
            "edits into it, or add the filters to the old workbook's mapping sheets.",
        )


# ---------------------------------------------------------------------------------------------
# units
# ---------------------------------------------------------------------------------------------
_UREG: Any = None


def _registry() -> Any:
    """The package's pint registry (units.get_registry), or pint + data/units.txt until then."""
    global _UREG
    if _UREG is None:
        try:
            from scaler_workbench.units import get_registry

            _UREG = get_registry()
        except ImportError:  # pragma: no cover - units.py not built yet
            import pint

            registry: Any = pint.UnitRegistry()
            registry.load_definitions(str(Path(__file__).parent / "data" / "units.txt"))
            _UREG = registry
    return _UREG


def _unit_problem(label: str, aliases: Mapping[str, str]) -> str:
    """Why ``label`` cannot be read as a unit ("" when it can), ambiguous labels included."""
    try:
        from scaler_workbench.units import resolve_unit
    except ImportError:  # pragma: no cover - units.py not built yet
        return "" if label in aliases or _unit_ok(label) else "not a known unit"
    from scaler_workbench.exceptions import UnitError

    try:
        resolve_unit(label, aliases)
    except UnitError as exc:
        return exc.message
    return ""


def _unit_ok(label: str) -> bool:
    """True when ``label`` parses as a unit with the package's registry."""
    import pint

    try:
        _registry().parse_units(str(label))
    except (pint.errors.PintError, AttributeError, TypeError, ValueError, AssertionError):
        from scaler_workbench.exceptions import UnitError
        from scaler_workbench.units import resolve_unit

        try:  # an alias may scale a unit ("100 kBtu"), which parse_units refuses
            resolve_unit("alias", {"alias": str(label)})
        except UnitError:
            return False
    return True


# ---------------------------------------------------------------------------------------------
# checking against data
# ---------------------------------------------------------------------------------------------
def _did_you_mean(value: str, choices: Iterable[str]) -> str:
    import difflib

    options = [str(c) for c in choices]
    close = difflib.get_close_matches(value, options, n=1, cutoff=0.6)
    if not close:
        close = [c for c in options if c.lower().startswith(value.lower()[:4])][:1]
    return f"; did you mean {close[0]!r}?" if close else ""


#: Unit dimensions a meter type's consumption may be recorded in (volumes and masses of fuel
#: become energy through a heating value or an energy factor).
_TYPE_DIMENSIONS: dict[str, tuple[str, ...]] = {
    "Energy": ("energy", "volume", "mass"),
    "Water": ("volume", "mass"),
    "Waste": ("mass", "volume"),
}


def _unit_dimension(label: str, aliases: Mapping[str, str]) -> tuple[str, str] | None:
    """``(pint expression, dimension)`` of a label, None when it does not resolve."""
    from scaler_workbench.exceptions import UnitError
    from scaler_workbench.units import dimension_of, resolve_unit

    try:
        expr = resolve_unit(label, aliases)
        return expr, dimension_of(expr)
    except UnitError:
        return None


def check_mapping(
    mapping: Mapping[str, Any],
    raw_or_samples: Mapping[str, Any],
    *,
    units: Mapping[str, Any] | None = None,
    resources: Iterable[str] | None = None,
    profile: Profile | None = None,
) -> pd.DataFrame:
    """Check a mapping against the latest raw records (and itself), naming workbook cells.

    With ``profile``, the records are first passed through its connector's ``prepare_raw``
    (``[provider] connector``), as :func:`~scaler_workbench.pipeline.run_pipeline` does, so
    fields a provider module adds (or resources it builds) are found.

    Parameters
    ----------
    mapping : dict
        A profile's ``[mapping]`` section (or :func:`read_mapping_workbook`'s result).
    raw_or_samples : dict of str to list of dict
        Raw records per resource, or ``FetchResult`` objects.
    units : dict, optional
        The ``[units]`` choices (aliases) used to decide whether a unit label is mappable.
    resources : iterable of str, optional
        The profile's resource names (``profile.resources``). Without them, a resource
        missing from ``raw_or_samples`` but close to one present is reported as a typo.
    profile : Profile, optional
        The provider profile whose connector's ``prepare_raw`` runs on the records first (and
        whose ``[units]`` and resource names are used when ``units`` / ``resources`` are not given).

    Returns
    -------
    pandas.DataFrame
        One row per finding, columns :data:`CHECK_COLUMNS`; ``sheet`` and ``cell`` locate it
        in a workbook written by :func:`to_mapping_workbook` for this mapping, and the message
        starts with them. Checks: ``unknown_setting`` (an enumerated setting such as
        ``kind = "interval"`` or ``aggregate = "monthly"``, with a did-you-mean),
        ``unknown_resource`` (a resource the profile does not define, with a did-you-mean),
        ``missing_resource`` (no records to check), ``missing_field`` (a field path found in
        no record), ``not_imported`` (a commodity value without a meter type: its meters are
        not imported, with the count), ``unknown_meter_type``, ``unknown_unit`` (a meter unit
        label that no unit or alias explains), ``unit_dimension`` (a unit that cannot measure
        the meter type's consumption, e.g. the power ``kW`` for an Energy meter, whose
        canonical unit is kWh) and ``stale_value_map`` (a value map entry for a value no
        record has any more). Empty when the mapping fits the data. ``severity`` is ``error``
        or ``warning``.

    Raises
    ------
    None
        Problems are findings (rows), never exceptions: the check runs on any mapping.
    """
    import pandas as pd

    from scaler_workbench.schema import CANONICAL_UNITS

    if profile is not None:
        raw_or_samples = _prepared(profile, raw_or_samples)
        if units is None:
            units = dict(profile.section("units"))
        if resources is None:
            resources = list(profile.resources)
    aliases = dict((units or {}).get("aliases", {}) or {})
    alias_rows = _alias_rows(mapping, units or {}, raw_or_samples)
    sheets = _sheet_names(mapping)
    known = list(resources) if resources is not None else None
    present = [str(r) for r in (raw_or_samples or {})]
    rows: list[dict[str, Any]] = []

    def add(
        table: str,
        source: str,
        check: str,
        severity: str,
        subject: str,
        count: int,
        message: str,
        where: tuple[str, str],
    ) -> None:
        sheet, cell = where
        text = f"sheet {sheet!r} cell {cell}: {message}"
        values = (table, source, check, severity, subject, count, text, sheet, cell)
        rows.append(dict(zip(CHECK_COLUMNS, values, strict=True)))

    meter_type_rows = {
        str(r["value"]): 5 + i for i, r in enumerate(_meter_type_rows(mapping, raw_or_samples)[0])
    }
    for table, source, spec in _iter_specs(mapping):
        sheet = sheets[(table, source)]
        setting_rows, field_rows = _table_cells(table, spec)

        def setting_cell(key: str, sheet: str = sheet, rows: dict[str, int] = setting_rows) -> Any:
            return (sheet, f"B{rows.get(key, 5)}")

        def field_cell(
            column: str, fspec: Any, sheet: str = sheet, rows: dict[str, int] = field_rows
        ) -> Any:
            const = isinstance(fspec, int | float | bool) or (
                isinstance(fspec, Mapping) and set(fspec) == {"const"}
            )
            return (sheet, f"{'E' if const else 'D'}{rows.get(column, 0)}")

        for key, choices in SETTING_CHOICES.items():
            value = spec.get(key)
            if value is None or isinstance(value, bool):
                continue
            allowed = {c.lower() for c in choices} | set(_SETTING_SYNONYMS.get(key, ()))
            if str(value).strip().lower() not in allowed:
                add(
                    table,
                    source,
                    "unknown_setting",
                    "error",
                    f"{key} = {value!r}",
                    0,
                    f"{key} = {value!r} is not one of {', '.join(choices)}"
                    f"{_did_you_mean(str(value), choices)}",
                    setting_cell(key),
                )
        res = spec.get("resource", "")
        if not res and spec.get("derive_from"):
            res = dict(mapping.get(str(spec["derive_from"]), {}) or {}).get("resource", "")
        names = [str(x) for x in res] if isinstance(res, list | tuple) else [str(res)]
        resource = ", ".join(names)
        typos = []
        for name in names:
            if name in present or (known is not None and name in known):
                continue
            candidates = known if known is not None else present
            hint = _did_you_mean(name, candidates)
            if known is not None or hint:
                typos.append(name)
                add(
                    table,
                    source,
                    "unknown_resource",
                    "error",
                    name,
                    0,
                    f"resource {name!r} is not a resource of the profile"
                    f"{_did_you_mean(name, candidates)} (known: {', '.join(candidates)})",
                    setting_cell("resource"),
                )
        records = [r for name in names for r in _records(raw_or_samples, name)]
        if not records:
            if not typos:
                add(
                    table,
                    source,
                    "missing_resource",
                    "warning",
                    resource,
                    0,
                    f"no records of resource {resource!r} to check the {table} mapping against",
                    setting_cell("resource"),
                )
            continue
        explode = spec.get("explode")
        fields = dict(spec.get("fields", {}))
        for column, fspec in fields.items():
            paths = list(dict.fromkeys(_spec_paths(fspec)))
            found = {
                path: any(
                    _resolve(r, _split_path(c))
                    for r in records
                    for c in _explode_candidates(path, explode)
                )
                for path in paths
            }
            for path in dict.fromkeys(_unsatisfied(fspec, found)):
                # a "first" of several parts: one part with values is enough
                add(
                    table,
                    source,
                    "missing_field",
                    "error",
                    path,
                    len(records),
                    f"{table}.{column} reads {path!r}, which no {resource!r} record has "
                    f"({len(records)} checked): pick a path from the fields sheet",
                    field_cell(column, fspec),
                )
        vmaps = dict(spec.get("value_maps", {}))
        for column, vmap in vmaps.items():
            fspec = fields.get(column)
            if fspec is None or not isinstance(vmap, Mapping) or _spec_paths(fspec) == []:
                continue
            seen = {str(v) for r in records for v in _spec_values(r, fspec)}
            for key in vmap:
                if str(key) in seen:
                    continue
                if table == "meters" and column in ("meter_type", "meter_subtype"):
                    where = ("meter_types", f"A{meter_type_rows.get(str(key), 5)}")
                else:
                    where = (
                        "value_maps",
                        f"D{_value_map_row(mapping, table, source, column, key)}",
                    )
                add(
                    table,
                    source,
                    "stale_value_map",
                    "warning",
                    str(key),
                    0,
                    f"the value map of {table}.{column} translates {str(key)!r}, which no "
                    f"{resource!r} record has any more ({len(records)} checked): a renamed or "
                    "retired id? Remove or update the row",
                    where,
                )
        if table != "meters":
            continue
        type_spec = fields.get("meter_type")
        type_path = ", ".join(_spec_paths(type_spec)) or "meter_type"
        constant_type = isinstance(type_spec, Mapping) and "const" in type_spec
        unit_spec = fields.get("raw_unit")
        counts: dict[str, int] = {}
        unit_counts: dict[str, int] = {}
        type_units: dict[tuple[str, str], int] = {}
        type_map = vmaps.get("meter_type")
        for r in records:
            types = list(dict.fromkeys(_spec_values(r, type_spec))) if type_spec is not None else []
            labels = (
                list(dict.fromkeys(_spec_values(r, unit_spec))) if unit_spec is not None else []
            )
            for v in types:
                counts[str(v)] = counts.get(str(v), 0) + 1
            for u in labels:
                unit_counts[str(u)] = unit_counts.get(str(u), 0) + 1
            for v in types[:1]:
                mtype = type_map.get(str(v)) if isinstance(type_map, Mapping) else v
                for u in labels:
                    if isinstance(mtype, str) and u is not None:
                        key2 = (mtype, str(u))
                        type_units[key2] = type_units.get(key2, 0) + 1
        if not constant_type and isinstance(type_map, Mapping):
            for value, n in sorted(counts.items()):
                where = ("meter_types", f"B{meter_type_rows.get(value, 5)}")
                if value not in type_map:
                    add(
                        table,
                        source,
                        "not_imported",
                        "warning",
                        value,
                        n,
                        f"{n} meter(s) with {type_path} = {value!r} have no Scaler meter type: "
                        "they are NOT imported (map the value on the meter_types sheet to "
                        "import them)",
                        where,
                    )
                elif type_map[value] not in METER_TYPES:
                    add(
                        table,
                        source,
                        "unknown_meter_type",
                        "error",
                        value,
                        n,
                        f"{value!r} maps to {type_map[value]!r}, not a Scaler meter type "
                        f"({', '.join(METER_TYPES)}){_did_you_mean(str(type_map[value]), METER_TYPES)}",
                        where,
                    )
        elif type_spec is not None and not constant_type:
            for value, n in sorted(counts.items()):
                if value not in METER_TYPES:
                    add(
                        table,
                        source,
                        "not_imported",
                        "warning",
                        value,
                        n,
                        f"{n} meter(s) with {type_path} = {value!r}: not a Scaler meter type "
                        "and no value map: they are NOT imported",
                        field_cell("meter_type", type_spec),
                    )

        def unit_cell(label: str, fspec: Any = unit_spec) -> Any:
            if label in aliases and label in alias_rows:  # the analyst's "Read as" choice
                return ("units", f"B{alias_rows[label]}")
            return field_cell("raw_unit", fspec)

        for label, n in sorted(unit_counts.items()):
            if label == "None":
                continue
            problem = _unit_problem(label, aliases)
            if problem:
                add(
                    table,
                    source,
                    "unknown_unit",
                    "error",
                    label,
                    n,
                    f"{n} meter(s) report unit {label!r}: {problem}; choose the unit to read "
                    "it as on the units sheet",
                    unit_cell(label),
                )
        for (mtype, label), n in sorted(type_units.items()):
            if mtype not in _TYPE_DIMENSIONS or label == "None":
                continue
            resolved = _unit_dimension(label, aliases)
            if resolved is None:
                continue  # reported as unknown_unit
            expr, dimension = resolved
            if dimension in _TYPE_DIMENSIONS[mtype]:
                continue
            canonical = CANONICAL_UNITS[mtype]
            what = "a power (a rate)" if dimension == "power" else f"a unit of {dimension}"
            shown = f"{label!r}" if expr == label else f"{label!r} (read as {expr!r})"
            add(
                table,
                source,
                "unit_dimension",
                "error",
                label,
                n,
                f"{n} {mtype} meter(s) report unit {shown}, {what}: it cannot measure "
                f"{mtype.lower()} consumption (canonical unit {canonical}); their usage would "
                f"be quarantined{_power_hint(expr, dimension)}",
                unit_cell(label),
            )
    return pd.DataFrame(rows, columns=list(CHECK_COLUMNS)).astype({"count": "int64"})


def _power_hint(expr: str, dimension: str) -> str:
    """'; did you mean kWh?' for a power unit typed for its energy unit."""
    if dimension != "power":
        return ""
    return f"; did you mean {expr}h (energy), not {expr} (power)?"


def _alias_rows(
    mapping: Mapping[str, Any], units: Mapping[str, Any], raw: Mapping[str, Any] | None
) -> dict[str, int]:
    """Row of each unit label on the ``units`` sheet written for this mapping."""
    settings = _flatten(
        {
            k: v
            for k, v in units.items()
            if k not in ("aliases", "energy_factors") or (isinstance(v, Mapping) and not v)
        }
    )
    header = 3 + len(settings) + 1
    aliases = list(dict(units.get("aliases", {}) or {}))
    meters = mapping.get("meters", {}) if isinstance(mapping.get("meters"), Mapping) else {}
    unit_spec = meters.get("fields", {}).get("raw_unit")
    labels: dict[str, None] = {}
    if unit_spec is not None:
        for record in _records(raw, str(meters.get("resource", ""))):
            for u in _spec_values(record, unit_spec):
                if u is not None:
                    labels[str(u)] = None
    order = [*aliases, *sorted(k for k in labels if k not in aliases)]
    return {label: header + 1 + i for i, label in enumerate(order)}


def _value_map_row(
    mapping: Mapping[str, Any], table: str, source: str, column: str, key: Any
) -> int:
    """Row of one value-map entry on the ``value_maps`` sheet written for this mapping."""
    row = 4
    for t, src, spec in _iter_specs(mapping):
        for col, vmap in dict(spec.get("value_maps", {})).items():
            if t == "meters" and col in ("meter_type", "meter_subtype"):
                continue
            for k in dict(vmap):
                row += 1
                if (t, src, col, str(k)) == (table, source, column, str(key)):
                    return row
    return 5
