"""CSV exports: the ``[resources.X.csv]`` table and CSV (or zipped CSV) answers read into records.

A resource with a ``csv`` table (or ``format = "csv"``) reads its answer as CSV; a zip archive
(recognised by its signature, whatever the Content-Type) is opened and every member matching
``files`` (default ``*.csv``) is read, in name order, with the same options::

    [resources.readings.csv]
    delimiter = ";"
    decimal = ","            # "1.234,5" -> "1234.5" in the numeric columns
    thousands = "."
    numeric = ["Verbrauch"]  # the columns read as numbers (required with decimal/thousands)
    encoding = "cp1252"      # default: the resource's encoding, a BOM, the Content-Type's
                             # charset, else UTF-8 (see connectors._body.decode_text)
    header = 2               # the header's row index (rows above it are skipped); false: none
    columns = ["a", "b"]     # the names, when header = false
    files = "*.csv"          # zip members to read

Every row becomes a dict of the header's names to the cells as written (text, never converted:
``007`` stays ``007``); an empty cell is ``None`` (like a JSON ``null``), and a blank line is
skipped. The mapping's field specs then read the records like JSON records.

**Where the decimal option applies**: here, at reading, and only in the ``numeric`` columns: a
cell written in the declared notation (``1.234,5``, ``-0,25``, ``12``) becomes the plain number
text (``1234.5``) that the mapping's number parsing reads; a cell that is not a number at all
(``n/a``) is left as written for the mapping to quarantine; a cell that looks like a number in
another notation (``1.5`` with ``decimal = ","``) is an error, never a silently different
number.

Anything that is not a whole, regular CSV is a :class:`CsvFormatError` for the page (a failed
page: the window is incomplete, a sync holds it instead of committing it): an unterminated
quote, a row whose field count differs from the header's (a last row cut short: "truncated"),
a body not in its encoding, a bad or truncated zip, a zip without a matching member, a
``numeric`` column missing from the header, duplicate column names.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import re
import zipfile
from collections.abc import Mapping
from typing import Any

from scaler_workbench._profile_schema import CSV_KEYS
from scaler_workbench.connectors._body import decode_text
from scaler_workbench.connectors._util import refuse_unknown_keys
from scaler_workbench.exceptions import CsvFormatError, ProfileError

__all__ = ["CSV_KEYS", "check_csv_table", "number_text", "read_csv_records"]

_ZIP_MAGIC = b"PK\x03\x04"
_EMPTY_ZIP = b"PK\x05\x06"


def check_csv_table(table: Mapping[str, Any], *, key: str) -> dict[str, Any] | None:
    """The validated CSV options of a resource, or None when it is not a CSV resource.

    Parameters
    ----------
    table : mapping
        The resource table (``csv`` table and/or ``format = "csv"``).
    key : str
        ``resources.<name>``, for errors.

    Returns
    -------
    dict or None
        Every option of :data:`CSV_KEYS` with its default filled in, plus ``number``: the
        compiled number notation (None when numbers are written plainly).

    Raises
    ------
    ProfileError
        Unknown keys, a delimiter/decimal/thousands that is not one character (or equal to
        another), an unknown encoding, a header that is neither a row index nor false,
        ``header = false`` without ``columns``, a decimal comma without ``numeric`` columns.
    """
    spec = table.get("csv")
    if spec is None and table.get("format") != "csv":
        return None
    where = f"{key}.csv"
    if spec is None:
        spec = {}
    if not isinstance(spec, Mapping):
        raise ProfileError(f"{where} must be a table (delimiter, decimal, ...)", key=where)
    if table.get("format", "csv") not in ("csv", "auto"):
        raise ProfileError(
            f"{key}.format is {table.get('format')!r} but the resource has a csv table",
            key=f"{key}.format",
            hint='Drop format, or set format = "csv".',
        )
    refuse_unknown_keys(spec, CSV_KEYS, where)
    opts: dict[str, Any] = {
        "delimiter": spec.get("delimiter", ","),
        "decimal": spec.get("decimal", "."),
        "thousands": spec.get("thousands", ""),
        "quotechar": spec.get("quotechar", '"'),
        "encoding": spec.get("encoding", ""),
        "files": spec.get("files", "*.csv"),
        "encoding_key": f"{where}.encoding",
    }
    for name in ("delimiter", "decimal", "quotechar"):
        if not isinstance(opts[name], str) or len(opts[name]) != 1:
            raise ProfileError(
                f"{where}.{name} must be one character, not {opts[name]!r}",
                key=f"{where}.{name}",
                hint=r'e.g. delimiter = ";" (a tab is "\t")',
            )
    thousands = opts["thousands"]
    if not isinstance(thousands, str) or len(thousands) > 1:
        raise ProfileError(
            f"{where}.thousands must be one character or empty, not {thousands!r}",
            key=f"{where}.thousands",
        )
    if thousands == opts["decimal"]:
        raise ProfileError(
            f"{where}: decimal and thousands are both {thousands!r}", key=f"{where}.thousands"
        )
    if opts["encoding"]:
        import codecs

        try:
            codecs.lookup(str(opts["encoding"]))
        except LookupError:
            raise ProfileError(
                f"{where}.encoding {opts['encoding']!r} is not an encoding Python knows",
                key=f"{where}.encoding",
                hint='e.g. "utf-8", "utf-8-sig", "cp1252", "latin-1"',
            ) from None
    header = spec.get("header", 0)
    if header is True:
        header = 0
    if header is not False and (not isinstance(header, int) or header < 0):
        raise ProfileError(
            f"{where}.header must be the header's row index (0 = the first row) or false",
            key=f"{where}.header",
        )
    columns = spec.get("columns")
    if columns is not None and (
        not isinstance(columns, list) or not all(isinstance(c, str) and c for c in columns)
    ):
        raise ProfileError(f"{where}.columns must be a list of names", key=f"{where}.columns")
    if header is False and not columns:
        raise ProfileError(
            f"{where}: header = false needs columns (the names of the fields)",
            key=f"{where}.columns",
            hint='e.g. columns = ["meter", "start", "kwh"]',
        )
    if columns is not None and len(set(columns)) != len(columns):
        raise ProfileError(f"{where}.columns repeats a name", key=f"{where}.columns")
    numeric = spec.get("numeric", [])
    numeric = [numeric] if isinstance(numeric, str) else numeric
    if not isinstance(numeric, list) or not all(isinstance(c, str) for c in numeric):
        raise ProfileError(
            f"{where}.numeric must be a list of column names", key=f"{where}.numeric"
        )
    plain = opts["decimal"] == "." and not thousands
    if not plain and not numeric:
        raise ProfileError(
            f"{where}: decimal {opts['decimal']!r} / thousands {thousands!r} need the numeric "
            "columns they apply to",
            key=f"{where}.numeric",
            hint='e.g. numeric = ["consumption", "cost"]: only these cells are read as numbers',
        )
    opts.update(
        header=header,
        columns=list(columns) if columns else None,
        numeric=list(numeric),
        number=None if plain else _notation(opts["decimal"], thousands),
    )
    return opts


def _notation(decimal: str, thousands: str) -> re.Pattern[str]:
    d, t = re.escape(decimal), re.escape(thousands)
    grouped = rf"\d{{1,3}}(?:{t}\d{{3}})+|" if thousands else ""
    return re.compile(rf"^([+-]?)({grouped}\d+|(?=(?:{d})\d))(?:{d}(\d+))?([eE][+-]?\d+)?$")


def number_text(cell: str, opts: Mapping[str, Any]) -> str | None:
    """A numeric cell in the declared notation as plain number text.

    Parameters
    ----------
    cell : str
        The cell as written (``"1.234,5"``).
    opts : mapping
        Checked CSV options (:func:`check_csv_table`).

    Returns
    -------
    str or None
        ``"1234.5"``; the cell itself when it is not a number at all (``"n/a"``); None when it
        reads as a number in another notation (the caller refuses it).
    """
    text = cell.strip()
    pattern = opts.get("number")
    if pattern is None:
        return cell
    m = pattern.match(text)
    if m:
        sign, whole, frac, exp = m.groups()
        whole = whole.replace(opts["thousands"], "") if opts["thousands"] else whole
        return f"{sign}{whole or '0'}{'.' + frac if frac else ''}{exp or ''}"
    if re.fullmatch(r"[+-]?[\d.,' \u00a0]*\d[\d.,' \u00a0]*(?:[eE][+-]?\d+)?", text):
        return None  # digits with separators in another notation: ambiguous, refused
    return cell


def _decode(
    content: bytes, opts: Mapping[str, Any], where: str, url: str, content_type: str = ""
) -> str:
    """A CSV file's text by the rules of :func:`._body.decode_text` (a BOM dropped)."""
    text, _codec = decode_text(
        content,
        content_type=content_type,
        encoding=str(opts.get("encoding") or ""),
        url=url,
        what=where,
        key=str(opts.get("encoding_key") or "csv.encoding"),
        error=CsvFormatError,
    )
    return text


def _rows(text: str, opts: Mapping[str, Any], where: str, url: str) -> list[dict[str, Any]]:
    reader = csv.reader(
        io.StringIO(text, newline=""),
        delimiter=opts["delimiter"],
        quotechar=opts["quotechar"],
        strict=True,
    )
    header = opts["header"]
    names: list[str] | None = list(opts["columns"]) if header is False else None
    numeric = list(opts["numeric"])
    out: list[dict[str, Any]] = []
    try:
        for index, row in enumerate(reader):
            line = reader.line_num
            if header is not False and index < header:
                continue  # a preamble above the header
            if header is not False and index == header:
                names = [c.strip() for c in row]
                if opts["columns"]:
                    if len(opts["columns"]) != len(names):
                        raise CsvFormatError(
                            f"{where}: csv.columns names {len(opts['columns'])} columns, the "
                            f"header row has {len(names)} ({names})",
                            url=url,
                        )
                    names = list(opts["columns"])
                doubles = sorted({n for n in names if names.count(n) > 1})
                if doubles or "" in names:
                    raise CsvFormatError(
                        f"{where}: the header row (line {line}) has "
                        + (f"repeated names {doubles}" if doubles else "an empty column name")
                        + f": {names}",
                        url=url,
                        hint="Name the columns with csv.columns (same count as the header).",
                    )
                missing = [c for c in numeric if c not in names]
                if missing:
                    raise CsvFormatError(
                        f"{where}: numeric column(s) {missing} are not in the header {names}",
                        url=url,
                        hint="Fix csv.numeric to the export's column names.",
                    )
                continue
            if not row or all(not c.strip() for c in row):
                continue  # a blank line
            assert names is not None
            if len(row) != len(names):
                last = not text.endswith(("\n", "\r")) and line == text.count("\n") + 1
                raise CsvFormatError(
                    f"{where}: row at line {line} has {len(row)} field(s), the header "
                    f"{len(names)}" + ("; the file ends inside it: truncated" if last else ""),
                    url=url,
                    hint="The export is incomplete or not delimited by "
                    f"{opts['delimiter']!r}; this page counts as failed.",
                )
            rec: dict[str, Any] = {
                n: (c if c != "" else None) for n, c in zip(names, row, strict=True)
            }
            for col in numeric:
                cell = rec.get(col)
                if cell is None or opts["number"] is None:
                    continue
                value = number_text(cell, opts)
                if value is None:
                    raise CsvFormatError(
                        f"{where}: line {line}, column {col!r}: {cell!r} is not a number in the "
                        f"declared notation (decimal {opts['decimal']!r}, thousands "
                        f"{opts['thousands']!r})",
                        url=url,
                        hint="Check csv.decimal and csv.thousands against the export.",
                    )
                rec[col] = value
            out.append(rec)
    except csv.Error as exc:
        raise CsvFormatError(
            f"{where} is not valid CSV at line {reader.line_num}: {exc}"
            + (
                "; the file ends inside a quoted field: truncated"
                if "end of data" in str(exc)
                else ""
            ),
            url=url,
            hint="The export is incomplete or its quoting is broken; this page counts as failed.",
        ) from None
    if names is None and header is not False and text.strip():
        raise CsvFormatError(
            f"{where} has no header row at index {header} (it has fewer rows)", url=url
        )
    return out


def read_csv_records(
    content: bytes | None, opts: Mapping[str, Any], *, content_type: str = "", url: str = ""
) -> list[dict[str, Any]]:
    """The records of a CSV (or zipped CSV) answer.

    Parameters
    ----------
    content : bytes or None
        The raw body (None or empty: no records).
    opts : mapping
        Checked CSV options (:func:`check_csv_table`).
    content_type : str
        The answer's Content-Type (its ``charset`` is the default encoding).
    url : str
        The (redacted) URL, for errors.

    Returns
    -------
    list of dict
        One dict per row: column name -> cell text (None for an empty cell).

    Raises
    ------
    CsvFormatError
        The body is not a whole, regular CSV or zip (see the module docstring).
    """
    if not content:
        return []
    if content.startswith((_ZIP_MAGIC, _EMPTY_ZIP)):
        try:
            archive = zipfile.ZipFile(io.BytesIO(content))
            names = sorted(
                n
                for n in archive.namelist()
                if not n.endswith("/") and fnmatch.fnmatch(n.lower(), str(opts["files"]).lower())
            )
            if not names:
                raise CsvFormatError(
                    f"the zip holds no file matching {opts['files']!r} "
                    f"(it holds: {archive.namelist()[:20]})",
                    url=url,
                    hint="Set csv.files to the pattern of the export's CSV members.",
                )
            out: list[dict[str, Any]] = []
            for name in names:
                data = archive.read(name)
                out.extend(_rows(_decode(data, opts, name, url), opts, name, url))
            return out
        except CsvFormatError:
            raise
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as exc:
            raise CsvFormatError(
                f"the answer is not a readable zip archive (truncated?): {exc}",
                url=url,
                hint="The export is incomplete; this page counts as failed.",
            ) from None
    text = _decode(content, opts, "the CSV answer", url, content_type)
    return _rows(text, opts, "the CSV answer", url)
