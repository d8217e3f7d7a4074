"""Scaler-ready files: CSV per table and one XLSX workbook, plus coverage and reconciliation.

:func:`to_scaler_files` writes, into one folder, replaced atomically as a whole:

=====================  ===========================================================================
``assets.csv``         Scaler asset fields (``external_id``, ``name``, ``address``, ...)
``meters.csv``         meter fields (``external_id``, ``asset_external_id``, ``meter_type``, ...)
``usage.csv``          consumption periods: ``start_date`` inclusive, ``end_date`` exclusive
``readings.csv``       point readings: ``reading_date`` (ISO 8601 with the site's offset)
``deactivated.csv``    assets and meters that vanished from the provider and were deactivated
``quarantine.csv``     records set aside, with the rule and the reason
``coverage.csv``       meter x local month: status (actual, estimated, partial, missing,
                       not_yet_billed, inactive), days and intervals with data vs expected
``reconciliation.csv`` exported totals beside the provider's own (``[reconcile.*]``), verdict
``scaler.xlsx``        the same tables, one sheet each (when ``"xlsx"`` is in ``formats``)
``run_summary.json``   counts, checks and timings of the run (with ``report.html`` the only
                       files with timestamps)
``report.html``        the run's HTML report (:mod:`scaler_workbench.report`; ``report=True``)
=====================  ===========================================================================

Formats follow Scaler's requirements: a period that starts and ends on local midnights of its
site is written as ``YYYY-MM-DD`` local dates (end exclusive); any other datetime as ISO 8601 with
the site's UTC offset (``2024-03-15T08:00:00+00:00``). Numbers are rounded by
:func:`round_number` (12 significant digits; money first to its currency's minor unit, see
:func:`currency_decimals`) and written with the shortest text that reads back to that value, so
no float noise (``1351.8000000000002``) reaches a file; booleans as ``true``/``false``, empty
cells for missing values. Rows are sorted by each table's key and columns follow
:mod:`scaler_workbench.schema`, so the same data always gives byte-identical files (the XLSX is
written with fixed zip and document timestamps). In ``scaler.xlsx`` cells are typed (numbers
with a number format, date and datetime cells in the site's local time, booleans) under a
styled, frozen, filtered header (:func:`_write_xlsx`).

Provider text is data, never a formula. In CSV a text cell starting with ``=``, ``+``, ``-``,
``@``, a tab or a carriage return gets a leading apostrophe (OWASP's rule for CSV injection;
numbers, negative ones included, stay numbers): :func:`neutralise_formula`. In the XLSX every
text cell is a string cell (never ``<f>``, never an error cell such as ``#N/A``), and characters
XML forbids (C0 controls but tab, LF and CR; DEL; C1 controls) are replaced by U+FFFD, since a
workbook cannot hold them; the validation rule ``control_characters`` flags such records (a
warning). CSV keeps them as sent.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from scaler_workbench._numeric import SIGNIFICANT_DIGITS, round_decimals, round_significant
from scaler_workbench._secrets import get_logger, redact
from scaler_workbench._time import NS_PER_DAY, local_ns
from scaler_workbench.coverage import month_coverage, site_timezones
from scaler_workbench.exceptions import ExportError
from scaler_workbench.reconciliation import RECONCILE_COLUMNS, reconcile
from scaler_workbench.schema import QUARANTINE, TABLES, Table, Tables, coerce_frame

__all__ = [
    "CONTROL_CHARACTERS",
    "EXPORT_FILES",
    "currency_decimals",
    "format_datetimes",
    "neutralise_formula",
    "reconcile",  # re-exported from reconciliation (its home since issue 12)
    "round_number",
    "to_scaler_files",
]

log = get_logger(__name__)

#: File names written by :func:`to_scaler_files` (the XLSX and summary only when asked for).
EXPORT_FILES = (
    "assets.csv",
    "meters.csv",
    "usage.csv",
    "readings.csv",
    "deactivated.csv",
    "quarantine.csv",
    "coverage.csv",
    "reconciliation.csv",
    "scaler.xlsx",
    "run_summary.json",
    "report.html",
)

_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_FIXED_DOC_TIME = "2000-01-01T00:00:00Z"


# -- formatting --------------------------------------------------------------------------------
class _LocalTimes(NamedTuple):
    """UTC timestamps in their rows' zones: where a time is given (``ok``), its local wall time
    [ns since the epoch, naive] and UTC offset [min]."""

    ok: np.ndarray
    wall: np.ndarray
    offset: np.ndarray


def _local_times(ts: pd.Series, tz: pd.Series | np.ndarray) -> _LocalTimes:
    """:class:`_LocalTimes` of tz-aware ``ts`` in per-row zones ``tz`` (positional), one
    conversion per zone, on int64 arrays."""
    n = len(ts)
    ok = ts.notna().to_numpy(dtype=bool)
    wall = np.zeros(n, dtype=np.int64)
    offset = np.zeros(n, dtype=np.int64)
    if not ok.any():
        return _LocalTimes(ok, wall, offset)
    utc = (ts[ok].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")).view(
        np.int64
    )
    zones = np.asarray(tz, dtype=object)[ok]
    codes, uniques = pd.factorize(zones)
    local = np.empty_like(utc)
    for i, zone in enumerate(uniques):
        mask = codes == i if len(uniques) > 1 else slice(None)
        local[mask] = local_ns(utc[mask], str(zone))
    wall[ok] = local
    offset[ok] = (local - utc).astype("timedelta64[ns]").astype("timedelta64[m]").astype(np.int64)
    return _LocalTimes(ok, wall, offset)


def _local_midnight(local: _LocalTimes) -> np.ndarray:
    """Rows whose time is a local midnight (False where no time)."""
    return local.ok & (local.wall % NS_PER_DAY == 0)


def _offset_text(minutes: np.ndarray) -> np.ndarray:
    sign = np.where(minutes < 0, "-", "+")
    a = np.abs(minutes)
    hh = np.char.zfill((a // 60).astype(str), 2)
    mm = np.char.zfill((a % 60).astype(str), 2)
    return np.char.add(np.char.add(np.char.add(sign, hh), ":"), mm)


def _datetime_text(local: _LocalTimes, as_date: np.ndarray | None = None) -> np.ndarray:
    """Text cells of :func:`format_datetimes` from :func:`_local_times` (object array)."""
    out = np.full(local.ok.size, "", dtype=object)
    dated = local.ok & as_date if as_date is not None else np.zeros(local.ok.size, dtype=bool)
    timed = local.ok & ~dated
    if dated.any():  # numpy's text of each distinct day once
        distinct, which = np.unique(local.wall[dated], return_inverse=True)
        text = np.datetime_as_string(distinct.view("datetime64[ns]"), unit="D").astype(object)
        out[dated] = text[which.reshape(-1)]
    if timed.any():
        distinct, which = np.unique(local.wall[timed], return_inverse=True)
        text = np.datetime_as_string(distinct.view("datetime64[ns]"), unit="s")
        seconds = text.astype(object)[which.reshape(-1)].tolist()
        offsets, which = np.unique(local.offset[timed], return_inverse=True)
        suffix = _offset_text(offsets).tolist()
        out[timed] = [t + suffix[j] for t, j in zip(seconds, which.tolist(), strict=True)]
    return out


def format_datetimes(
    ts: pd.Series, tz: pd.Series | str, *, as_date: pd.Series | None = None
) -> pd.Series:
    """Render UTC timestamps in their site's zone: ``YYYY-MM-DD`` where ``as_date`` is true,
    else ISO 8601 with offset (``2024-03-15T08:00:00+01:00``). Missing values become ``""``.

    Parameters
    ----------
    ts : pandas.Series
        tz-aware timestamps.
    tz : pandas.Series or str
        IANA zone per row (or one for all).
    as_date : pandas.Series of bool, optional
        Rows to render as local dates (they must be local midnights).
    """
    zones = np.full(len(ts), tz, dtype=object) if isinstance(tz, str) else tz.to_numpy()
    use_date = None if as_date is None else np.asarray(as_date, dtype=bool)
    return pd.Series(_datetime_text(_local_times(ts, zones), use_date), index=ts.index)


def _float_text(s: pd.Series, decimals: np.ndarray | None = None) -> np.ndarray:
    """Numbers as text, rounded by :func:`round_number` (``decimals``: money places per row)."""
    values = round_number(pd.to_numeric(s, errors="coerce").to_numpy(dtype=float), decimals)
    nan = np.isnan(values)
    if (np.signbit(values) & (values == 0)).any():  # -0.0: np.unique would merge it with 0.0
        text = values.astype(str).astype(object)
    else:  # the text of each distinct value, once: repr, which is numpy's text of a float64
        text = np.full(values.size, "", dtype=object)
        distinct, which = np.unique(values[~nan], return_inverse=True)
        words = np.array(list(map(repr, distinct.tolist())) or [""], dtype=object)
        text[~nan] = words[which.reshape(-1)]
    text[nan] = ""
    return text


def _int_text(s: pd.Series) -> np.ndarray:
    """Whole numbers (``int64`` or ``Int64``) as text, ``""`` where missing: the text of each
    distinct value once (``str(int)``, as pandas writes them)."""
    na = s.isna().to_numpy(dtype=bool)
    values = s.to_numpy(dtype=np.int64, na_value=0)
    distinct, which = np.unique(values, return_inverse=True)
    text = distinct.astype(str).astype(object)[which.reshape(-1)]
    text[na] = ""
    return text


def round_number(values: Any, decimals: Any = None) -> np.ndarray:
    """Numbers as every export file holds them: no binary float noise.

    Quantities keep :data:`SIGNIFICANT_DIGITS` (12) significant digits; money is first rounded
    to its currency's minor unit (``decimals`` per value, see :func:`currency_decimals`).

    Parameters
    ----------
    values : array-like of float
        Values [any unit].
    decimals : array-like of float, optional
        Decimal places per value; NaN for a value that is not money or whose currency is unknown.

    Returns
    -------
    numpy.ndarray of float64
        The rounded values; their shortest ``repr`` has at most 12 significant digits.
    """
    v = np.asarray(values, dtype=np.float64)
    if decimals is not None:
        d = np.asarray(decimals, dtype=np.float64)
        money = ~np.isnan(d)
        if money.any():
            v = v.copy()
            v[money] = round_decimals(v[money], d[money].astype(np.int64))
    return round_significant(v, SIGNIFICANT_DIGITS)


def currency_decimals(codes: pd.Series) -> np.ndarray:
    """Decimal places of each ISO 4217 currency's minor unit (``USD`` 2, ``JPY`` 0, ``BHD`` 3).

    Parameters
    ----------
    codes : pandas.Series of str
        Currency codes, one per row (missing allowed).

    Returns
    -------
    numpy.ndarray of float64
        Decimal places per row; NaN where the code is missing or not a known currency (the
        value then keeps 12 significant digits, never a guessed minor unit).
    """
    from babel.numbers import get_currency_precision, is_currency

    text = codes.astype(object).where(codes.notna(), None).to_numpy()
    out = np.full(len(text), np.nan)
    for code in pd.unique(text):
        if isinstance(code, str) and is_currency(code.strip().upper()):
            out[text == code] = get_currency_precision(code.strip().upper())
    return out


def _bool_text(s: pd.Series) -> np.ndarray:
    b = s.astype("boolean")
    text = np.where(b.fillna(False).to_numpy(dtype=bool), "true", "false").astype(object)
    text[b.isna().to_numpy()] = ""
    return text


def _string_text(s: pd.Series) -> np.ndarray:
    """Cells as ``str`` (missing: ``""``), as numpy's ``astype(str)`` makes them.

    A column of ``str`` (and missing values) skips that conversion, which copies every cell
    into a fixed-width array; numpy drops a cell's trailing NUL characters, so they are dropped
    here too (the files never change).
    """
    if isinstance(s.dtype, pd.StringDtype):  # str or missing by construction
        text = s.to_numpy(dtype=object, na_value="")
        na = None
    else:
        text = s.astype(object).to_numpy().copy()
        na = pd.isna(text)
    if na is None or pd.api.types.infer_dtype(text, skipna=True) in ("string", "empty"):
        if na is not None:
            text[na] = ""
        for i in [i for i, v in enumerate(text) if v[-1:] == "\x00"]:
            text[i] = text[i].rstrip("\x00")
        return text
    text = text.astype(str).astype(object)
    text[na] = ""
    return text


def _redacted(values: Iterable[str]) -> list[str]:
    """``[redact(v) for v in values]``, with one pass over the joined text when no cell can
    hold a registered secret (a secret in a cell is in the joined text too)."""
    cells = list(values)
    joined = "\n".join(cells)
    if redact(joined) == joined:
        return cells
    return [redact(v) for v in cells]


def _metadata_with_direction(meters: pd.DataFrame) -> list[Any]:
    """Meters' ``metadata`` JSON text with ``"direction"`` added where the meter has one.

    Scaler's meter format has no direction field; its metadata ("any extra attributes, stored
    as-is") carries it. A metadata object gains the key (unless it has one); empty metadata
    becomes ``{"direction": ...}``; text that is not a JSON object is kept under ``"metadata"``.
    """
    meta = meters["metadata"] if "metadata" in meters.columns else [None] * len(meters)
    out: list[Any] = []
    for m, d in zip(meta, meters["direction"], strict=True):
        if d is None or pd.isna(d) or str(d) == "":
            out.append(m)
            continue
        obj: dict[str, Any]
        if m is None or (not isinstance(m, str) and pd.isna(m)) or str(m) == "":
            obj = {}
        else:
            try:
                parsed = json.loads(str(m))
            except ValueError:
                parsed = None
            obj = (
                dict(parsed)
                if isinstance(parsed, dict)
                else {"metadata": parsed if parsed is not None else str(m)}
            )
        obj.setdefault("direction", str(d))
        out.append(json.dumps(obj, sort_keys=True))  # as transform writes metadata
    return out


def _render(
    frame: pd.DataFrame, table: Table, tables: Tables, default_timezone: str
) -> pd.DataFrame:
    """The export frame of ``table``: Scaler names, text cells, sorted by key."""
    frame = coerce_frame(frame, table)
    frame = frame.sort_values(list(table.key), kind="mergesort").reset_index(drop=True)
    tz = (
        site_timezones(frame, tables, default_timezone)
        if table.name in ("usage", "readings")
        else None
    )
    if table.name == "meters" and "direction" in frame.columns and frame["direction"].notna().any():
        frame = frame.assign(metadata=_metadata_with_direction(frame))
    local: dict[str, _LocalTimes] = {}
    if tz is not None:  # each datetime column converted once (for the date test and the text)
        zones = tz.to_numpy(dtype=object)
        for c in table.columns:
            if c.kind == "datetime" and c.export_name:
                local[c.name] = _local_times(frame[c.name], zones)
    as_date = None
    if table.name == "usage" and tz is not None:
        as_date = _local_midnight(local["start"]) & _local_midnight(local["end"])
    out: dict[str, Any] = {}
    for c in table.columns:
        if not c.export_name:
            continue
        s = frame[c.name]
        if c.kind == "datetime":
            assert tz is not None
            out[c.export_name] = _datetime_text(local[c.name], as_date)
        elif c.kind == "float":
            money = c.name == "cost" and "currency" in frame.columns
            decimals = currency_decimals(frame["currency"]) if money else None
            out[c.export_name] = _float_text(s, decimals)
        elif c.kind == "bool":
            out[c.export_name] = _bool_text(s)
        else:
            out[c.export_name] = _string_text(s)
    return pd.DataFrame(out, index=frame.index)


def _render_quarantine(frame: pd.DataFrame | None) -> pd.DataFrame:
    names = [c.export_name for c in QUARANTINE.columns]
    if frame is None or frame.empty:
        return pd.DataFrame({n: pd.Series(dtype=object) for n in names})
    q = coerce_frame(frame[[c for c in frame.columns if c in QUARANTINE.names]], QUARANTINE)
    order = _text_key_order([q[k] for k in QUARANTINE.key])
    if order is None:
        q = q.sort_values(list(QUARANTINE.key), kind="mergesort").reset_index(drop=True)
    else:
        q = q.take(order).reset_index(drop=True)
    return pd.DataFrame(
        {c.export_name: _redacted(_string_text(q[c.name])) for c in QUARANTINE.columns}
    )


def _text_key_order(keys: list[pd.Series]) -> np.ndarray | None:
    """Positions that sort rows by text ``keys`` as a stable ``sort_values`` does (code point
    order, ties in row order), by one Python sort of tuples; None when a key is missing
    somewhere or is not text (``sort_values`` then decides where missing values go)."""
    columns = []
    for k in keys:
        values = k.to_numpy(dtype=object)
        if len(values) and pd.api.types.infer_dtype(values, skipna=False) != "string":
            return None
        columns.append(values.tolist())
    rows = list(zip(*columns, strict=True))
    return np.array(sorted(range(len(rows)), key=rows.__getitem__), dtype=np.int64)


_DEACTIVATED_COLUMNS = ("entity", "external_id", "asset_external_id")


def _render_deactivated(frame: pd.DataFrame | None) -> pd.DataFrame:
    if frame is None or frame.empty:
        return pd.DataFrame({n: pd.Series(dtype=object) for n in _DEACTIVATED_COLUMNS})
    d = pd.DataFrame(
        {
            "entity": frame["kind"].astype(str),
            "external_id": frame["entity_id"].astype(str),
            "asset_external_id": _string_text(
                frame["parent_id"] if "parent_id" in frame else pd.Series(None, index=frame.index)
            ),
        }
    )
    return d.sort_values(["entity", "external_id"], kind="mergesort").reset_index(drop=True)


#: first characters that make a spreadsheet run a cell as a formula (OWASP CSV injection)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?inf|nan")
#: characters an XLSX cannot hold (XML 1.0) or a terminal acts on: C0 but tab/LF/CR, DEL, C1
CONTROL_CHARACTERS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_REPLACEMENT = "\ufffd"
_XLSX_ERROR_CODES = frozenset({"#NULL!", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#N/A"})


def neutralise_formula(text: str) -> str:
    """``text`` as a CSV cell no spreadsheet runs as a formula.

    Parameters
    ----------
    text : str
        A cell's text.

    Returns
    -------
    str
        ``text`` with a leading apostrophe when it starts with ``=``, ``+``, ``-``, ``@``, a tab
        or a carriage return and is not a plain number (``-12.5`` stays as it is).
    """
    if text and text[0] in FORMULA_START and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


def _neutralise_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with :func:`neutralise_formula` applied to its text cells (a copy if changed)."""
    out = frame
    for col in frame.columns:
        s = frame[col]
        if not (s.dtype == object or pd.api.types.is_string_dtype(s.dtype)):
            continue
        try:
            risky = s.astype(object).str[:1].isin(FORMULA_START).to_numpy(dtype=bool)
        except AttributeError:  # no text in the column
            continue
        if not risky.any():
            continue
        if out is frame:
            out = frame.copy()
        pos = np.flatnonzero(risky)
        values = out[col].to_numpy(dtype=object).copy()
        values[pos] = [neutralise_formula(str(v)) for v in values[pos]]
        out[col] = pd.Series(values, index=out.index, dtype=object)
    return out


def _csv_quote_characters() -> tuple[str, ...]:
    """Characters that make :mod:`csv` (``QUOTE_MINIMAL``, ``lineterminator="\\n"``) quote a field.

    The delimiter, the quote and the line terminator always do; a lone carriage return did not
    before Python 3.13, so this asks the running interpreter's writer once.
    """
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(["a\rb", "c"])
    return (",", '"', "\n") + (("\r",) if buffer.getvalue().startswith('"') else ())


_CSV_QUOTE = _csv_quote_characters()
_FORMULA_FIRST_ARRAY = np.array(FORMULA_START)


def _csv_column(values: list[str]) -> list[str]:
    """One column's text cells as CSV fields: formula-like text neutralised, then quoted.

    What :func:`_neutralise_frame` plus ``DataFrame.to_csv`` (:mod:`csv`, ``QUOTE_MINIMAL``,
    doubled quotes) make of a column of ``str``, without their per-cell pandas overhead: only
    cells that start with a :data:`FORMULA_START` character go through
    :func:`neutralise_formula`, and cells are quoted only in a column whose joined text holds
    a character that needs it.
    """
    cells = values
    joined = "".join(values)  # a character absent from the column starts no cell
    if any(ch in joined for ch in FORMULA_START):
        first = np.array(values, dtype="U1")  # each cell's first character (numpy truncates)
        risky = np.flatnonzero(np.isin(first, _FORMULA_FIRST_ARRAY)).tolist()
        if risky:
            cells = list(values)
            for i in risky:
                cells[i] = neutralise_formula(cells[i])
            joined = "".join(cells)
    if not any(ch in joined for ch in _CSV_QUOTE):
        return cells
    cr = "\r" in _CSV_QUOTE
    return [
        '"' + v.replace('"', '""') + '"'
        if ('"' in v or "," in v or "\n" in v or (cr and "\r" in v))
        else v
        for v in cells
    ]


def _csv_text(frame: pd.DataFrame) -> str | None:
    """``frame`` as the text ``_neutralise_frame(frame).to_csv(index=False, lineterminator="\\n")``
    writes, when every column holds only ``str`` (what the ``_render*`` functions give); None
    for any other frame (the caller then uses pandas)."""
    names = list(frame.columns)
    if len(names) < 2 or frame.columns.has_duplicates or not all(isinstance(c, str) for c in names):
        return None  # a one-field row of "" is quoted by csv; leave such frames to pandas
    columns = []
    for name in names:
        values = frame[name].to_numpy(dtype=object)
        if len(values) and pd.api.types.infer_dtype(values, skipna=False) != "string":
            return None
        columns.append(_csv_column(values.tolist()))
    header = ",".join(_csv_column_header(names))
    if not len(frame):
        return header + "\n"
    return header + "\n" + "\n".join(map(",".join, zip(*columns, strict=True))) + "\n"


def _csv_column_header(names: list[str]) -> list[str]:
    """Header fields quoted as :mod:`csv` quotes them (never neutralised, as pandas writes them)."""
    return [
        '"' + n.replace('"', '""') + '"' if any(ch in n for ch in _CSV_QUOTE) else n for n in names
    ]


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    text = _csv_text(frame)
    if text is None:
        _neutralise_frame(frame).to_csv(path, index=False, lineterminator="\n", encoding="utf-8")
        return
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)


def _xlsx_text(ws: Any, values: np.ndarray) -> np.ndarray:
    """Text cells for a write-only sheet: never a formula or error cell, no XML-illegal chars."""
    from openpyxl.cell import WriteOnlyCell

    out = values.astype(object)  # a copy
    out[out == ""] = None
    s = pd.Series(out, dtype=object)
    risky = (
        s.str.contains(CONTROL_CHARACTERS, na=False)
        | s.str.startswith("=", na=False)
        | s.isin(_XLSX_ERROR_CODES)
    ).to_numpy(dtype=bool)
    for i in np.flatnonzero(risky):
        v = out[i]
        if not isinstance(v, str):
            continue
        if CONTROL_CHARACTERS.search(v):
            v = CONTROL_CHARACTERS.sub(_REPLACEMENT, v)
            out[i] = v
        if v.startswith("=") or v in _XLSX_ERROR_CODES:
            cell = WriteOnlyCell(ws, value=v)
            cell.data_type = "s"  # a string, whatever it starts with
            out[i] = cell
    return out


#: Excel number formats of the workbook's cells, by kind (money: by its minor unit).
_XLSX_FORMATS = {
    "float": "#,##0.00##########",
    "int": "0",
    "date": "yyyy-mm-dd",
    "datetime": "yyyy-mm-dd hh:mm:ss",
}
#: Column width bounds [characters] and how many rows are measured for them.
_XLSX_WIDTH = (8, 60)
_XLSX_WIDTH_ROWS = 1000


def _money_format(decimals: float) -> str:
    d = 2 if np.isnan(decimals) else int(decimals)
    return "#,##0" + ("." + "0" * d if d > 0 else "")


def _xlsx_datetimes(text: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Export date texts as Excel values: local dates, or local wall times (offset dropped).

    Returns the values (``date``/naive ``datetime``/None) and, per cell, whether it is a date.
    """
    s = pd.Series(text, dtype=object).fillna("")
    is_date = (s.str.len() == 10).to_numpy(dtype=bool)
    wall = pd.to_datetime(s.str.slice(0, 19).where(s != "", None), format="ISO8601")
    values = np.full(len(s), None, dtype=object)
    ok = wall.notna().to_numpy(dtype=bool)
    stamps = wall.dt.to_pydatetime() if len(s) else np.array([], dtype=object)
    for i in np.flatnonzero(ok):
        values[i] = stamps[i].date() if is_date[i] else stamps[i]
    return values, is_date


def _column_letter(i: int) -> str:
    from openpyxl.utils import get_column_letter

    return str(get_column_letter(i))


def _write_xlsx(
    sheets: Mapping[str, pd.DataFrame],
    path: Path,
    kinds: Mapping[str, Mapping[str, str]],
    money: Mapping[str, Mapping[str, np.ndarray]] | None = None,
) -> None:
    """One workbook, one sheet per table; deterministic bytes (fixed zip and doc timestamps).

    Each sheet has a bold header row on a fill, frozen, with an autofilter over the data; column
    widths follow the header and the first rows' text. Cells are typed by ``kinds`` (sheet ->
    column -> ``float``, ``int``, ``bool`` or ``datetime``): numbers are numbers with a number
    format (money: ``money`` gives its decimal places per row), dates are date cells, local
    times are datetime cells (the site's wall time; the CSV keeps the offset), booleans are
    booleans; everything else is a string cell (never a formula).
    """
    try:
        from openpyxl import Workbook
        from openpyxl.cell import WriteOnlyCell
        from openpyxl.styles import Alignment, Font, PatternFill
    except ImportError as exc:  # pragma: no cover - a hard dependency
        raise ExportError(
            "openpyxl is needed for XLSX export", hint="pip install openpyxl"
        ) from exc
    header_font = Font(bold=True, color="FFFFFF")
    header_fill = PatternFill("solid", fgColor="1F4E78")
    header_align = Alignment(vertical="center")
    money = money or {}
    wb = Workbook(write_only=True)
    for name, frame in sheets.items():
        ws = wb.create_sheet(title=name[:31])
        sheet_kinds = kinds.get(name, {})
        n = len(frame)
        # widths, freeze and filter are set before the first row is written
        for j, col in enumerate(frame.columns, start=1):
            sample = frame[col].iloc[:_XLSX_WIDTH_ROWS].astype(str)
            longest = max([len(str(col)) + 2, *(sample.str.len().tolist() or [0])])
            if sheet_kinds.get(col) == "datetime":
                longest = max(longest, 20)
            width = min(max(longest + 1, _XLSX_WIDTH[0]), _XLSX_WIDTH[1])
            ws.column_dimensions[_column_letter(j)].width = width
        ws.freeze_panes = "A2"
        if len(frame.columns):
            ws.auto_filter.ref = f"A1:{_column_letter(len(frame.columns))}{n + 1}"
        header = []
        for col in frame.columns:
            cell = WriteOnlyCell(ws, value=str(col))
            cell.font, cell.fill, cell.alignment = header_font, header_fill, header_align
            header.append(cell)
        ws.append(header)
        # per column: the values, and per cell a number format (None: a plain or text cell)
        cols: list[tuple[np.ndarray, np.ndarray | None]] = []
        for col in frame.columns:
            text = frame[col].to_numpy(dtype=object)
            kind = sheet_kinds.get(col)
            if kind in ("float", "int"):
                # the text is already rounded (round_number): its float is the exported number
                vals = np.array(
                    [
                        None if v == "" else (int(float(v)) if kind == "int" else float(v))
                        for v in text
                    ],
                    dtype=object,
                )
                places = money.get(name, {}).get(col)
                fmts = (
                    np.array([_money_format(d) for d in places], dtype=object)
                    if places is not None
                    else np.full(n, _XLSX_FORMATS[kind], dtype=object)
                )
                cols.append((vals, fmts))
            elif kind == "bool":
                vals = np.array([None if v == "" else v == "true" for v in text], dtype=object)
                cols.append((vals, None))
            elif kind == "datetime":
                vals, is_date = _xlsx_datetimes(text)
                fmts = np.where(is_date, _XLSX_FORMATS["date"], _XLSX_FORMATS["datetime"])
                cols.append((vals, fmts.astype(object)))
            else:
                cols.append((_xlsx_text(ws, text), None))
        # a write-only sheet writes each row as it is appended, so one styled cell per
        # (column, format) is reused row after row instead of a new cell object per value
        shared: list[dict[str, Any]] = [{} for _ in cols]
        for i in range(n):
            row: list[Any] = []
            for j, (values, formats) in enumerate(cols):
                v = values[i]
                if formats is None or v is None:
                    row.append(v)
                    continue
                fmt = formats[i]
                cell = shared[j].get(fmt)
                if cell is None:
                    cell = shared[j][fmt] = WriteOnlyCell(ws)
                    cell.number_format = fmt
                cell.value = v
                row.append(cell)
            ws.append(row)
    buffer = io.BytesIO()
    wb.save(buffer)
    _deterministic_zip(buffer.getvalue(), path)


def _deterministic_zip(data: bytes, path: Path) -> None:
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            body = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                text = body.decode("utf-8")
                text = re.sub(
                    r"(<dcterms:(created|modified)[^>]*>)[^<]*(</dcterms:\2>)",
                    rf"\g<1>{_FIXED_DOC_TIME}\g<3>",
                    text,
                )
                body = text.encode("utf-8")
            fixed = zipfile.ZipInfo(info.filename, date_time=_FIXED_ZIP_TIME)
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = 0o644 << 16
            dst.writestr(fixed, body)


#: ``reconciliation.RECONCILE_COLUMNS`` renamed for the file (Scaler-style names).
_RECONCILE_EXPORT_NAMES = {
    "meter_id": "meter_external_id",
    "start": "period_start",
    "end": "period_end",
}


def _render_reconciliation(
    frame: pd.DataFrame, tables: Tables, default_timezone: str
) -> pd.DataFrame:
    """``reconciliation.csv``: one row per provider total, periods as local dates."""
    cols = [_RECONCILE_EXPORT_NAMES.get(c, c) for c in RECONCILE_COLUMNS]
    if frame is None or frame.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
    f = frame.sort_values(["check", "meter_id", "start", "end"], kind="mergesort").reset_index(
        drop=True
    )
    tz = site_timezones(f[["meter_id"]], tables, default_timezone)
    start = pd.to_datetime(f["start"], utc=True)
    end = pd.to_datetime(f["end"], utc=True)
    zones = tz.to_numpy(dtype=object)
    local_start, local_end = _local_times(start, zones), _local_times(end, zones)
    as_date = _local_midnight(local_start) & _local_midnight(local_end)
    out: dict[str, Any] = {
        "check": _string_text(f["check"]),
        "meter_external_id": _string_text(f["meter_id"]),
        "period_start": _datetime_text(local_start, as_date),
        "period_end": _datetime_text(local_end, as_date),
        "unit": _string_text(f["unit"]),
    }
    for c in ("exported", "provider", "difference", "relative"):
        out[c] = _float_text(f[c])
    out["within_tolerance"] = _bool_text(f["within_tolerance"])
    out["tolerance"] = _float_text(f["tolerance"])
    out["raw_total"] = _float_text(f["raw_total"])
    out["raw_unit"] = _string_text(f["raw_unit"])
    out["note"] = _redacted(_string_text(f["note"]))
    return pd.DataFrame(out)[cols]


def _rounded_json(value: Any) -> Any:
    """``value`` (a run summary) with every float rounded like the files' numbers."""
    if isinstance(value, float):
        return float(round_number([value])[0]) if np.isfinite(value) else value
    if isinstance(value, Mapping):
        return {k: _rounded_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded_json(v) for v in value]
    return value


# -- the files ---------------------------------------------------------------------------------
def _swap_into_place(tmp: Path, out_dir: Path) -> None:
    """Replace ``out_dir`` by ``tmp``: two renames; a crash between leaves ``tmp``/``old`` that the
    next export sweeps (the files are re-derivable from state)."""
    old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
    if out_dir.exists():
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    shutil.rmtree(old, ignore_errors=True)


def _sweep(out_dir: Path) -> None:
    for stale in out_dir.parent.glob(f".{out_dir.name}.*-*"):
        shutil.rmtree(stale, ignore_errors=True)


def _render_coverage(cov: pd.DataFrame) -> pd.DataFrame:
    """``coverage.csv``: :func:`~scaler_workbench.coverage.month_coverage` with Scaler's id name."""
    out: dict[str, np.ndarray] = {}
    for col in cov.columns:
        s = cov[col]
        name = "meter_external_id" if col == "meter_id" else col
        if col in ("meter_id", "month", "status"):
            out[name] = s.astype(str).to_numpy(dtype=object)
        elif pd.api.types.is_float_dtype(s):  # shares rounded like every exported number
            out[name] = _float_text(s)
        elif pd.api.types.is_integer_dtype(s):  # counts (Int64: empty where not measured)
            out[name] = _int_text(s)
        else:  # local times: text, "" if missing
            out[name] = s.astype("string").to_numpy(dtype=object, na_value="")
    return pd.DataFrame(out, columns=[*out])


def to_scaler_files(
    tables: Tables,
    out_dir: str | os.PathLike[str],
    *,
    quarantine: pd.DataFrame | None = None,
    deactivated: pd.DataFrame | None = None,
    reconciliation: pd.DataFrame | None = None,
    summary: Mapping[str, Any] | None = None,
    formats: Iterable[str] = ("csv", "xlsx"),
    default_timezone: str = "UTC",
    coverage: bool | pd.DataFrame = True,
    report: bool = False,
    fault_hook: Any = None,
) -> dict[str, Path]:
    """Write Scaler-ready files for ``tables`` into ``out_dir`` (replaced as a whole).

    Parameters
    ----------
    tables : Tables
        Accepted canonical tables (assets, meters, usage, readings).
    out_dir : path-like
        Folder that will hold exactly the export files; written to a sibling temporary folder
        first and renamed into place, so readers never see a half-written export.
    quarantine : pandas.DataFrame, optional
        Rows with the columns of ``schema.QUARANTINE`` (default: ``tables.quarantine``).
    deactivated : pandas.DataFrame, optional
        Registry rows (``kind``, ``entity_id``, ``parent_id``) of deactivated assets and meters.
    reconciliation : pandas.DataFrame, optional
        Provider totals beside the exported ones
        (:func:`scaler_workbench.reconciliation.reconcile_totals`), written as
        ``reconciliation.csv`` (not into the XLSX: it is the analyst's check, not Scaler's).
    summary : mapping, optional
        The run summary, written as ``run_summary.json`` (sorted keys).
    formats : iterable of str
        ``"csv"`` and/or ``"xlsx"``.
    default_timezone : str
        Zone for rows whose site zone is unknown (the profile's ``[provider] timezone``).
    coverage : bool or pandas.DataFrame
        Also write ``coverage.csv``: per meter and local month its status and counts
        (:func:`scaler_workbench.coverage.month_coverage`, computed here with the default
        thresholds, or given as its result, as the sync does with the profile's).
    report : bool
        Also write ``report.html``, the run's HTML report (:mod:`scaler_workbench.report`:
        summary, findings by rule, coverage heatmap, reconciliation, quarantine).

    Returns
    -------
    dict of str to Path
        File name -> final path.

    Raises
    ------
    ExportError
        If the folder cannot be written (the previous export is left in place).
    """
    out = Path(out_dir)
    formats = tuple(formats)
    unknown = set(formats) - {"csv", "xlsx"}
    if unknown:
        raise ExportError(
            f"unknown export format(s) {sorted(unknown)}", hint="Use csv and/or xlsx."
        )
    sheets: dict[str, pd.DataFrame] = {}
    kinds: dict[str, dict[str, str]] = {}
    money: dict[str, dict[str, np.ndarray]] = {}
    for name, table in TABLES.items():
        sheets[name] = _render(getattr(tables, name), table, tables, default_timezone)
        kinds[name] = {c.export_name: c.kind for c in table.columns if c.export_name}
        if "currency" in sheets[name].columns and "cost" in sheets[name].columns:
            money[name] = {"cost": currency_decimals(sheets[name]["currency"])}
    sheets["deactivated"] = _render_deactivated(deactivated)
    sheets["quarantine"] = _render_quarantine(
        tables.quarantine if quarantine is None else quarantine
    )
    if coverage is not False:
        cov = (
            coverage
            if isinstance(coverage, pd.DataFrame)
            else month_coverage(tables.usage, tables=tables, timezone=default_timezone)
        )
        sheets["coverage"] = _render_coverage(cov)
    if reconciliation is not None:
        sheets["reconciliation"] = _render_reconciliation(reconciliation, tables, default_timezone)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        _sweep(out)
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        written: list[str] = []
        if "csv" in formats:
            for name, frame in sheets.items():
                _write_csv(frame, tmp / f"{name}.csv")
                written.append(f"{name}.csv")
                if fault_hook is not None:
                    fault_hook(f"export:{name}")
        if "xlsx" in formats:  # what Scaler imports; quarantine and coverage stay CSV for analysts
            upload = {
                k: v
                for k, v in sheets.items()
                if k not in ("quarantine", "coverage", "reconciliation")
            }
            _write_xlsx(upload, tmp / "scaler.xlsx", kinds, money)
            written.append("scaler.xlsx")
        if summary is not None:
            text = json.dumps(
                _rounded_json(summary), indent=2, sort_keys=True, default=str, allow_nan=False
            )
            (tmp / "run_summary.json").write_text(redact(text) + "\n", encoding="utf-8")
            written.append("run_summary.json")
        if report:
            from scaler_workbench.report import REPORT_FILE, write_report

            write_report(
                tmp / REPORT_FILE,
                tables=tables,
                quarantine=sheets["quarantine"],
                reconciliation=sheets.get("reconciliation"),
                summary=None if summary is None else _rounded_json(summary),
                timezone=default_timezone,
            )
            written.append(REPORT_FILE)
        _swap_into_place(tmp, out)
    except (OSError, ValueError) as exc:
        raise ExportError(
            f"could not write the export to {str(out)!r}: {exc}", key=str(out)
        ) from exc
    log.info("exported %d files to %s", len(written), out)
    return {name: out / name for name in sorted(written)}
