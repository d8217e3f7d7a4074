"""Transform: raw provider records -> canonical Tables, through a mapping (a plain dict).

The mapping format is documented in docs/mapping.md; in short::

    {"assets":   {"resource": "sites", "fields": {...}, "value_maps": {...}},
     "meters":   {"resource": "meters", "fields": {...}, "value_maps": {...}},
     "usage":    {"<source>": {"resource": ..., "kind": "intervals", "aggregate": "month",
                               "fields": {...}}, ...},
     "readings": {"<source>": {"resource": ..., "to_consumption": "month", "fields": {...}}},
     "policy":   {"duplicates": "latest", "prefer_actual": True, "overlaps": "flag"}}

A field spec is a dotted path (``"address.city"``, ``"_parent.site_id"``, ``"measurements.0.unit"``),
a list of paths joined into a compound key (``["site", "serial"]``), or a table
``{path = ..., format = "epoch_s" | "epoch_ms" | "iso", const = ..., join = [...], sep = ":"}``,
``{first = [...]}`` (the first path with a value) and ``power_of_ten`` (an integer or a path:
the number times 10**p, Green Button's multiplier). Compound specs compose: each part of a
list, ``join`` or ``first`` is a path, a const, a ``first`` or a ``join``, resolved by its own
kind; with ``explode`` a path under the explode path reads the item, any other its record.

Values stay in the provider's units here (lineage: ``raw_value``, ``raw_unit``); units.py
converts. Timestamps become tz-aware UTC: strings with offsets ("Z", "+01:00") are parsed
vectorised with ``utc=True``; naive ones are localised in the site's zone (or the source's
``tz``), ambiguous fall-back times resolved by record order (first = summer time), and
nonexistent spring-forward times quarantined (``nonexistent = "quarantine"``, the default) or
shifted forward to the first valid instant (``"shift_forward"``). Numbers are epoch seconds UTC.

Records that cannot be mapped (no meter id, unparseable or missing time, non-numeric value,
end not after start) go to ``Tables.quarantine`` with stage ``transform`` and the reason, as do
``±inf`` values (``non_finite``) and the later records of a duplicate asset or meter id
(``duplicate_id``: the first seen is kept). A null value follows the profile's missing-value
policy (``[validation] missing_values``): ``"no_data"`` (default) keeps the row with a null
value and counts such values in one ``no_data`` warning per meter and local day; ``"error"``
sets each record aside. Every record set aside has a key of its own, from its content
(:func:`~scaler_workbench.schema.source_key`), never from its position, so an incremental run
keys it as a full run does.

This is stage 1 of :mod:`scaler_workbench.pipeline` (which holds ``run_pipeline``; the old
``transform.run_pipeline`` is a deprecated alias for one release). It imports only the shared
base (:mod:`~scaler_workbench.schema`, ``_time``, ``_numeric``), never a later stage.
:func:`build_tables` maps everything at once; :class:`MeterChunks` maps one long usage source
chunk by chunk (whole meters each), the chunked source of the streamed pipeline.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, cast

import numpy as np
import pandas as pd

from scaler_workbench._numeric import apply_power_of_ten
from scaler_workbench._secrets import get_logger
from scaler_workbench._time import (
    add_local_days,
    local_naive,
    localize_naive,
    utc_index,
    utc_ns,
    utc_text,
    zone_per_row,
)
from scaler_workbench.exceptions import MappingError
from scaler_workbench.profile import missing_value_policy
from scaler_workbench.schema import (
    QUARANTINE,
    Tables,
    coerce_frame,
    concat_frames,
    empty_frame,
    json_default,
    quarantine_records,
    quarantine_rows,
    source_key,
)

__all__ = [
    "MeterChunks",
    "build_tables",
    "field_values",
    "localize_naive",
    "order_series_quarantine",
    "parse_iso_fast",
    "parse_timestamps",
    "quarantine_records",
    "quarantine_rows",
    "resolve_mapping",
]

log = get_logger(__name__)

_EMPTY: dict[str, Any] = {}
#: Where a usage source's value goes (``role``, docs/mapping.md "Value roles").
VALUE_ROLES = ("consumption", "redelivery", "production")
_OFFSET_RE = re.compile(r"(?:[zZ]|[+-]\d{2}(?::?\d{2})?)$")
_SOURCE_TABLE_OPTIONS = {
    "resource",
    "kind",
    "fields",
    "value_maps",
    "aggregate",
    "prorate",
    "end_inclusive",
    "to_consumption",
    "tz",
    "nonexistent",
    "explode",
    "duration",
    "key_separator",
    "unit",
    "derive_from",
    "role",
    "split_sign",
    "where",  # record filters: applied by pipeline.run_pipeline before the mapping (issue 15)
    "skip",
    "provides",
}


# ---- field extraction -------------------------------------------------------------------------
def _walk(obj: Any, parts: Sequence[str | int]) -> Any:
    for p in parts:
        if obj is None:
            return None
        if isinstance(p, int):
            if isinstance(obj, list | tuple) and -len(obj) <= p < len(obj):
                obj = obj[p]
            else:
                return None
        elif isinstance(obj, Mapping):
            obj = obj.get(p)
        else:
            return None
    return obj


def _split_path(path: str) -> list[str | int]:
    out: list[str | int] = []
    for part in str(path).split("."):
        if re.fullmatch(r"-?\d+", part):
            out.append(int(part))
        else:
            out.append(part)
    return out


def _extract(records: Sequence[Mapping[str, Any]], path: str) -> list[Any]:
    """Values of dotted ``path`` for every record: the hot path, one comprehension per field."""
    parts = _split_path(path)
    if len(parts) == 1 and isinstance(parts[0], str):
        k = parts[0]
        try:  # C-level loop when every record has the key (the usual case)
            return list(map(itemgetter(k), records))
        except (KeyError, TypeError):
            return [r.get(k) for r in records]
    if len(parts) == 2 and all(isinstance(p, str) for p in parts):
        a, b = str(parts[0]), str(parts[1])
        try:
            return [(r.get(a) or _EMPTY).get(b) for r in records]
        except AttributeError:
            pass
    return [_walk(r, parts) for r in records]


def _path_exists(records: Sequence[Mapping[str, Any]], path: str, sample: int = 2000) -> bool:
    parts = _split_path(path)
    step = max(1, len(records) // sample)
    for r in records[::step]:
        obj: Any = r
        ok = True
        for p in parts:
            if isinstance(p, int):
                if isinstance(obj, list | tuple) and -len(obj) <= p < len(obj):
                    obj = obj[p]
                else:
                    ok = False
                    break
            elif isinstance(obj, Mapping) and p in obj:
                obj = obj[p]
            else:
                ok = False
                break
        if ok:
            return True
    return False


# ---- fast columnar extraction ------------------------------------------------------------------
# The hot path of large interval resources: fields are pulled out of the list of dicts by C-level
# ``map(itemgetter)`` chains straight into numpy, chunk by chunk (small temporaries), meter ids go
# straight to integer codes against the meters table, and ISO 8601 timestamps in the common
# fixed-width shapes are parsed arithmetically on their bytes. Anything a fast path cannot prove
# it handles exactly (a missing key, an unknown meter, a non-number, an unusual timestamp shape)
# falls back to the general code for that column (or, for timestamps, for those rows only).
_CHUNK = 65536
_ISO_WIDTH = 36  # wider than the longest fast shape (29 body + 6 zone), so longer ones show
_ISO_DTYPE = f"S{_ISO_WIDTH}"


def _getter(path: str) -> Any | None:
    """A C-level function record -> value for a dotted path of string keys, else None.

    ``obj[k]`` for each key (KeyError/TypeError when a record lacks it: the caller falls back).
    """
    parts = _split_path(path)
    if not parts or not all(isinstance(p, str) for p in parts):
        return None
    getters = [itemgetter(p) for p in parts]
    if len(getters) == 1:
        return getters[0]

    def chain(chunk: Sequence[Any]) -> Any:
        it: Any = map(getters[0], chunk)
        for g in getters[1:]:
            it = map(g, it)
        return it

    return chain


def _iter_values(get: Any, chunk: Sequence[Any]) -> Any:
    return get(chunk) if not isinstance(get, itemgetter) else map(get, chunk)


def _pair_table() -> np.ndarray:
    """Two ASCII bytes read as one little-endian uint16 -> 0..99; anything else -> 255."""
    table = np.full(65536, 255, dtype=np.uint8)
    for tens in range(10):
        for ones in range(10):
            table[(48 + tens) | ((48 + ones) << 8)] = tens * 10 + ones
    return table


_PAIRS = _pair_table()
_ISO_YEAR0 = 1700
_ISO_INVALID = np.iinfo(np.int64).min


def _date_table() -> np.ndarray:
    """Days since 1970-01-01 for key (year-1700)*372 + (month-1)*31 + (day-1); invalid dates
    (2023-02-30, day 31 of a 30-day month) hold ``_ISO_INVALID``. Years 1700..2199."""
    years = np.arange(_ISO_YEAR0, 2200)
    table = np.full(len(years) * 372, _ISO_INVALID, dtype=np.int64)
    for month in range(1, 13):
        first = (years - 1970) * 12 + (month - 1)
        start = first.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)
        ndays = (first + 1).astype("datetime64[M]").astype("datetime64[D]").astype(np.int64) - start
        for day in range(1, 32):
            valid = day <= ndays
            table[(years[valid] - _ISO_YEAR0) * 372 + (month - 1) * 31 + day - 1] = (
                start[valid] + day - 1
            )
    return table


_ISO_DAYS = _date_table()
_ISO_LAYOUTS: dict[tuple[int, bool], np.dtype] = {}


def _iso_layout(body: int, zulu: bool) -> np.dtype:
    """A structured view of one ``S36`` timestamp of this shape: digit pairs, separators."""
    key = (body, zulu)
    if key not in _ISO_LAYOUTS:
        fields: dict[str, tuple[str, int]] = {
            "y1": ("<u2", 0), "y2": ("<u2", 2), "mo": ("<u2", 5), "dd": ("<u2", 8),
            "hh": ("<u2", 11), "mi": ("<u2", 14),
            "s4": ("u1", 4), "s7": ("u1", 7), "s10": ("u1", 10), "s13": ("u1", 13),
            "zone": ("u1", body),
        }  # fmt: skip
        if body >= 19:
            fields |= {"ss": ("<u2", 17), "s16": ("u1", 16)}
        if body >= 20:
            fields["dot"] = ("u1", 19)
            for p in range(20, body):
                fields[f"f{p}"] = ("u1", p)
        if not zulu:
            fields |= {"oh": ("<u2", body + 1), "om": ("<u2", body + 4), "oc": ("u1", body + 3)}
        _ISO_LAYOUTS[key] = np.dtype(
            {
                "names": list(fields),
                "formats": [f for f, _ in fields.values()],
                "offsets": [o for _, o in fields.values()],
                "itemsize": _ISO_WIDTH,
            }
        )
    return _ISO_LAYOUTS[key]


def _parse_iso_shape(
    raw: np.ndarray, body: int, zulu: bool | None, length: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Parse rows that all have one shape (body length, zone kind); see :func:`parse_iso_fast`.

    ``zulu=None``: rows with ``Z`` and rows with ``±HH:MM`` after the same body, together (the
    usual mix of winter and summer local times); ``length`` gives each row's length.
    """
    v = raw.view(_iso_layout(body, bool(zulu)))
    y1, y2, mo, dd = _PAIRS[v["y1"]], _PAIRS[v["y2"]], _PAIRS[v["mo"]], _PAIRS[v["dd"]]
    hh, mi = _PAIRS[v["hh"]], _PAIRS[v["mi"]]
    bad = y1 | y2 | mo | dd | hh | mi
    ok = (v["s4"] == 45) & (v["s7"] == 45) & (v["s13"] == 58)
    ok &= (v["s10"] == 84) | (v["s10"] == 32)
    year = y1.astype(np.int32) * 100 + y2
    month = mo.astype(np.int32)
    secs = hh.astype(np.int32) * 3600 + mi.astype(np.int32) * 60
    ns = None
    if body >= 19:
        ss = _PAIRS[v["ss"]]
        bad = bad | ss
        ok &= (v["s16"] == 58) & (ss <= 59)
        secs += ss
    if body >= 20:
        ok &= v["dot"] == 46
        frac = np.zeros(len(raw), dtype=np.int64)
        for p in range(20, 29):
            if p < body:
                dig = v[f"f{p}"] - np.uint8(48)
                ok &= dig < 10
                frac = frac * 10 + dig
            else:
                frac *= 10
        ns = frac
    if zulu is None:
        assert length is not None
        oh, om, zone = _PAIRS[v["oh"]], _PAIRS[v["om"]], v["zone"]
        minus = zone == 45
        with_offset = (zone == 43) | minus
        with_offset &= (length == body + 6) & (v["oc"] == 58) & (oh <= 23) & (om <= 59)
        ok &= ((zone == 90) & (length == body + 1)) | with_offset
        off = oh.astype(np.int32) * 3600 + om.astype(np.int32) * 60
        off[~with_offset] = 0
        np.negative(off, out=off, where=minus)
        secs -= off
    elif zulu:
        ok &= v["zone"] == 90
    else:
        oh, om = _PAIRS[v["oh"]], _PAIRS[v["om"]]
        sign = v["zone"]
        ok &= ((sign == 43) | (sign == 45)) & (v["oc"] == 58) & (oh <= 23) & (om <= 59)
        off = oh.astype(np.int32) * 3600 + om.astype(np.int32) * 60
        secs -= np.where(sign == 45, -off, off)
    key = (year.astype(np.int32) - _ISO_YEAR0) * 372 + month.astype(np.int32) * 31 + dd - 32
    ok &= (bad < 128) & (key >= 0) & (key < len(_ISO_DAYS)) & (hh <= 23) & (mi <= 59)
    ok &= (month >= 1) & (month <= 12) & (dd >= 1) & (dd <= 31) & (year >= _ISO_YEAR0)
    days = _ISO_DAYS[np.where(ok, key, 0)]
    ok &= days != _ISO_INVALID  # also rejects 2023-02-30, month 13, day 0
    out = (days * 86400 + secs) * 1_000_000_000
    if ns is not None:
        out += ns
    return out, ok


_FIELD_BAD = -(1 << 26)  # a field table's "not this field": any sum holding one is negative


def _field_table(lo: int, hi: int, scale: int, shift: int = 0) -> np.ndarray:
    """Two ASCII digits read as one little-endian uint16 -> ``(value + shift) * scale`` for
    values ``lo..hi``; anything else (a non-digit, out of range) -> ``_FIELD_BAD`` (int32)."""
    table = np.full(65536, _FIELD_BAD, dtype=np.int32)
    for value in range(lo, hi + 1):
        table[(48 + value // 10) | ((48 + value % 10) << 8)] = (value + shift) * scale
    return table


# Field tables of the one-shape path: the date key (year - 1700) * 372 + (month - 1) * 31 +
# (day - 1) + 1 is the sum of four lookups (the + 1 skips _ISO_DAYS1's leading invalid entry, so
# a negative key clipped to 0 reads "invalid"); seconds of the day are the sum of three.
_CENTURY = _field_table(17, 21, 372 * 100, -17)
_YY = _field_table(0, 99, 372)
_MONTH = _field_table(1, 12, 31, -1)
_DAY = _field_table(1, 31, 1)
_HOUR = _field_table(0, 23, 3600)
_MINUTE = _field_table(0, 59, 60)
_SECOND = _field_table(0, 59, 1)
_ISO_DAYS1 = np.concatenate([np.array([_ISO_INVALID], dtype=np.int64), _ISO_DAYS])
_SIGN = np.zeros(256, dtype=np.int32)
_SIGN[ord("+")], _SIGN[ord("-")] = 1, -1


def _parse_iso_seconds(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The commonest shape in one pass: ``YYYY-MM-DD(T| )HH:MM:SS`` then ``Z`` or ``±HH:MM``,
    row by row (winter and summer local times mixed), on contiguous ``S36`` rows.

    The rows are read as nine little-endian uint32 words, transposed once so every further
    operation runs on a contiguous array (a field of the ``S36`` rows is a strided pass over
    all of them); digit pairs go through the field tables, separators are compared a word at a
    time, and a row's length is checked on its bytes (20 for ``Z``: bytes 20..35 zero; 25 for
    an offset: bytes 25..35 zero), so no ``str_len`` pass is needed. Accepts exactly the rows
    :func:`_parse_iso_shape` accepts for body 19 (a test keeps the two equal); others: ``ok``
    False, value garbage.
    """
    n = len(raw)
    w0, w1, w2, w3, w4, w5, w6, w7, w8 = np.ascontiguousarray(raw.view(np.uint32).reshape(n, 9).T)
    take = np.take
    key = take(_CENTURY, w0 & 0xFFFF)  # bytes 0-1
    key += take(_YY, w0 >> 16)  # 2-3
    key += take(_MONTH, (w1 >> 8) & 0xFFFF)  # 5-6
    key += take(_DAY, w2 & 0xFFFF)  # 8-9
    days = take(_ISO_DAYS1, key, mode="clip")  # invalid dates and any bad field: _ISO_INVALID
    secs = take(_HOUR, (w2 >> 24) | ((w3 & 0xFF) << 8))  # 11-12
    secs += take(_MINUTE, w3 >> 16)  # 14-15
    secs += take(_SECOND, (w4 >> 8) & 0xFFFF)  # 17-18
    ok = (w1 & 0xFF0000FF) == 0x2D00002D  # '-' at 4 and 7
    ok &= (w3 & 0xFF00) == 0x3A00  # ':' at 13
    ok &= (w4 & 0xFF) == 0x3A  # ':' at 16
    sep = (w2 >> 16) & 0xFF  # 'T' or ' ' at 10
    ok &= (sep == 84) | (sep == 32)
    ok &= secs >= 0
    ok &= days != _ISO_INVALID
    tail = w6 >> 8  # bytes 25..35 are zero in both shapes
    tail |= w7
    tail |= w8
    ok &= tail == 0
    zone = w4 >> 24  # byte 19
    last = w6 & 0xFF  # byte 24
    off = take(_HOUR, w5 & 0xFFFF)  # 20-21
    off += take(_MINUTE, (w5 >> 24) | (last << 8))  # 23-24
    sign = take(_SIGN, zone)
    with_offset = (sign != 0) & (((w5 >> 16) & 0xFF) == 58) & (off >= 0)  # ':' at 22
    last |= w5  # bytes 20..24: all zero after a 'Z'
    ok &= with_offset | ((zone == 90) & (last == 0))
    off *= sign
    secs -= off
    days *= 86400
    days += secs
    days *= 1_000_000_000
    return days, ok


def parse_iso_fast(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Parse fixed-width ISO 8601 byte strings with a zone to UTC epoch nanoseconds [ns].

    Shapes: ``YYYY-MM-DD(T| )HH:MM[:SS[.f{0,9}]](Z|±HH:MM)``, years 1700..2199, exactly as
    ``pandas.to_datetime(format="ISO8601", utc=True)`` reads them. Every field is validated
    (digits, ranges, real calendar dates incl. leap days); rows in any other shape get
    ``ok = False`` (their value is garbage) and must be parsed the general way.

    Parameters
    ----------
    raw : numpy.ndarray of ``S36``
        One ASCII string per row (``np.fromiter(strings, dtype="S36")``).

    Returns
    -------
    (int64 ns since the epoch UTC, bool mask of rows parsed here)
    """
    n = len(raw)
    raw = np.ascontiguousarray(raw, dtype=_ISO_DTYPE)
    if n:
        first = raw[0]  # the probe: one-pass shape when the first row has it
        if len(first) == 25 or (len(first) == 20 and first.endswith(b"Z")):
            out, ok = _parse_iso_seconds(raw)
            if ok.all():
                return out, ok
            rest = np.flatnonzero(~ok)
            if len(rest) < n:  # the others shape by shape
                out[rest], ok[rest] = _parse_iso_shapes(raw[rest])
                return out, ok
    return _parse_iso_shapes(raw)


def _parse_iso_shapes(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`parse_iso_fast` shape by shape (contiguous ``S36`` rows): rows grouped by length
    and zone kind, each group parsed by :func:`_parse_iso_shape`."""
    n = len(raw)
    out = np.zeros(n, dtype=np.int64)
    ok = np.zeros(n, dtype=bool)
    if not n:
        return out, ok
    length = np.strings.str_len(raw)
    counts = np.bincount(length, minlength=_ISO_WIDTH + 1)
    sizes = np.flatnonzero(counts)
    if len(sizes) == 2 and sizes[1] - sizes[0] == 5:  # one body, 'Z' and '±HH:MM': one pass
        body = int(sizes[0]) - 1
        if body == 16 or 19 <= body <= 29:
            v, o = _parse_iso_shape(raw, body, None, length)
            if o.all():
                return v, o  # else (other shapes of these lengths): shape by shape below
    for size in np.flatnonzero(counts).tolist():
        if size < 17 or size >= _ISO_WIDTH:
            continue
        whole = counts[size] == n
        sel = None if whole else np.flatnonzero(length == size)
        part = raw if sel is None else raw[sel]
        zb = part.view(np.uint8).reshape(len(part), _ISO_WIDTH)[:, size - 1] == 90
        for zulu in (True, False):
            body = size - 1 if zulu else size - 6
            if not (body == 16 or 19 <= body <= 29):
                continue
            pick = zb if zulu else ~zb
            if not pick.any():
                continue
            every = bool(pick.all())
            sub = part if every else part[pick]
            v, o = _parse_iso_shape(sub, body, zulu)
            rows = (
                (np.arange(n) if sel is None else sel)
                if every
                else (np.flatnonzero(pick) if sel is None else sel[pick])
            )
            if every and sel is None:
                out, ok = v, o
            else:
                out[rows] = v
                ok[rows] = o
    return out, ok


_SUB = 4096  # records per pass of every column: the sub-chunk's dicts stay in cache


class _FastColumn:
    """One column pulled by the fast path. ``take`` reads a sub-chunk of records into the
    current chunk's buffer (raising when the fast path does not apply), ``flush`` finishes a
    chunk of ``_CHUNK`` records, ``result`` gives the column."""

    def __init__(self, get: Any, n: int) -> None:
        self.get = get
        self.n = n

    def take(self, chunk: Sequence[Any], at: int) -> None:
        raise NotImplementedError

    def flush(self, lo: int, hi: int) -> None:
        return None

    def result(self) -> Any:
        raise NotImplementedError


class _FloatColumn(_FastColumn):
    """float64 values (as ``np.array(values, float64)`` would give)."""

    def __init__(self, get: Any, n: int) -> None:
        super().__init__(get, n)
        self.out = np.empty(n, dtype=np.float64)
        self.lo = 0

    def take(self, chunk: Sequence[Any], at: int) -> None:
        k = len(chunk)
        self.out[self.lo + at : self.lo + at + k] = np.fromiter(
            _iter_values(self.get, chunk), dtype=np.float64, count=k
        )

    def flush(self, lo: int, hi: int) -> None:
        self.lo = hi

    def result(self) -> np.ndarray:
        return self.out


class _CodeColumn(_FastColumn):
    """Meter ids as integer codes against ``known`` (a C-level dict lookup per record), then a
    categorical in first-appearance order. KeyError (an id not in ``known``) ends the path."""

    def __init__(self, get: Any, n: int, known: Sequence[str]) -> None:
        super().__init__(get, n)
        self.known = known
        self.lookup = {str(k): i for i, k in enumerate(known)}.__getitem__
        self.codes = np.empty(n, dtype=np.int32 if len(known) > 32000 else np.int16)
        self.buf = np.empty(min(n, _CHUNK), dtype=np.int32)
        self.seen = np.zeros(len(known), dtype=bool)
        self.order: list[int] = []

    def take(self, chunk: Sequence[Any], at: int) -> None:
        k = len(chunk)
        self.buf[at : at + k] = np.fromiter(
            map(self.lookup, _iter_values(self.get, chunk)), dtype=np.int32, count=k
        )

    def flush(self, lo: int, hi: int) -> None:
        c = self.buf[: hi - lo]
        new = ~self.seen[c]
        if new.any():
            u, first = np.unique(c[new], return_index=True)
            self.order.extend(u[np.argsort(first, kind="stable")].tolist())
            self.seen[u] = True
        self.codes[lo:hi] = c

    def result(self) -> pd.Categorical:
        order, codes = self.order, self.codes
        cats = pd.Index([str(self.known[i]) for i in order], dtype=object)
        if order != list(range(len(order))):
            remap = np.full(len(self.known), -1, dtype=codes.dtype)
            remap[np.asarray(order, dtype=np.int64)] = np.arange(len(order), dtype=codes.dtype)
            for lo in range(0, len(codes), _CHUNK):
                codes[lo : lo + _CHUNK] = remap[codes[lo : lo + _CHUNK]]
        return pd.Categorical.from_codes(codes, categories=cats, validate=False)


class _IsoColumn(_FastColumn):
    """ISO 8601 strings as fixed-width bytes, parsed per chunk by :func:`parse_iso_fast`:
    ``(ns UTC, parsed mask)``. A chunk with a non-ASCII value is left to the general parser;
    when the first chunk is mostly not in the fast shapes, the rest is not tried."""

    def __init__(self, get: Any, n: int) -> None:
        super().__init__(get, n)
        self.ns = np.empty(n, dtype=np.int64)
        self.ok = np.zeros(n, dtype=bool)
        self.buf = np.empty(min(n, _CHUNK), dtype=_ISO_DTYPE)
        self.skip = False  # this chunk
        self.give_up = False  # every further chunk

    def take(self, chunk: Sequence[Any], at: int) -> None:
        if self.skip or self.give_up:
            return
        k = len(chunk)
        try:
            self.buf[at : at + k] = np.fromiter(
                _iter_values(self.get, chunk), dtype=_ISO_DTYPE, count=k
            )
        except UnicodeEncodeError:
            self.skip = True

    def flush(self, lo: int, hi: int) -> None:
        if not (self.skip or self.give_up):
            v, o = parse_iso_fast(self.buf[: hi - lo])
            self.ns[lo:hi] = v
            self.ok[lo:hi] = o
            if lo == 0 and self.n > _CHUNK and o.mean() < 0.5:
                self.give_up = True  # not this shape: do not pay twice
                self.ok[lo:hi] = False
        self.skip = False

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        return self.ns, self.ok


def _extract_fast(records: Sequence[Any], columns: Mapping[str, _FastColumn]) -> dict[str, Any]:
    """Run the fast columns over ``records`` together, sub-chunk by sub-chunk (each record dict
    is fetched into cache once for all columns); a column whose fast path fails is dropped."""
    n = len(records)
    live = dict(columns)
    for lo in range(0, n, _CHUNK):
        hi = min(n, lo + _CHUNK)
        for sub in range(lo, hi, _SUB):
            chunk = records[sub : min(hi, sub + _SUB)]
            for name, col in list(live.items()):
                try:
                    col.take(chunk, sub - lo)
                except (KeyError, TypeError, ValueError, OverflowError, IndexError):
                    del live[name]
        for col in live.values():
            col.flush(lo, hi)
    return {name: col.result() for name, col in live.items()}


def _fast_floats(records: Sequence[Any], path: str) -> np.ndarray | None:
    """float64 values of ``path`` (as ``np.array(values, float64)`` would give), or None."""
    get = _getter(path)
    if get is None:
        return None
    return _extract_fast(records, {"v": _FloatColumn(get, len(records))}).get("v")


def _fast_codes(records: Sequence[Any], path: str, known: Sequence[str]) -> pd.Categorical | None:
    """Meter ids of ``path`` as a categorical in first-appearance order, or None when a record
    lacks the path or names an id that is not a ``known`` string."""
    get = _getter(path)
    if get is None or not len(known) or len({str(k) for k in known}) != len(known):
        return None
    return _extract_fast(records, {"m": _CodeColumn(get, len(records), known)}).get("m")


def _fast_iso(records: Sequence[Any], path: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(ns UTC, parsed mask) for ISO strings of ``path`` in the fast shapes, or None."""
    get = _getter(path)
    if get is None:
        return None
    return _extract_fast(records, {"t": _IsoColumn(get, len(records))}).get("t")


_SPEC_OPTIONS = frozenset({"path", "const", "join", "first", "sep", "format", "power_of_ten"})
_PART_OPTIONS = frozenset({"path", "const", "join", "first", "sep"})
_PART_HINT = (
    'A part is a dotted path ("serial"), {const = ...}, {first = [...]}, {join = [...]} '
    'or {path = ...}; e.g. meter_id = ["_parent.mpan", "meters.serial"].'
)


class _Part:
    """One part of a field spec, resolved by its own kind.

    ``kind`` is ``path`` (read per row from the exploded item when it starts with the
    ``explode`` path, else from the record), ``const`` (the same value every row), ``first``
    (row-wise the first part with a value) or ``join`` (the parts' values joined with ``sep``;
    a row where a part has no value gets none). ``label`` names it in errors, e.g.
    ``meter_id[1]`` or ``meter_id.first[0]``.
    """

    __slots__ = ("const", "kind", "label", "parts", "path", "sep")

    def __init__(self, kind: str, label: str, *, path: str = "", const: Any = None) -> None:
        self.kind, self.label, self.path, self.const = kind, label, path, const
        self.parts: list[_Part] = []
        self.sep = ":"

    def describe(self) -> str:
        if self.kind == "path":
            return f"{self.label} (path {self.path!r})"
        if self.kind == "const":
            return f"{self.label} (const {self.const!r})"
        return f"{self.label} ({self.kind} of {len(self.parts)} parts)"

    def leaves(self) -> list[_Part]:
        if self.kind in ("path", "const"):
            return [self]
        return [leaf for p in self.parts for leaf in p.leaves()]


def _compile_part(spec: Any, label: str, *, sep: str, where: str, column: str) -> _Part:
    """A nested part of a compound spec (an element of a list, ``join`` or ``first``)."""

    def fail(problem: str) -> MappingError:
        return MappingError(
            f"{where}.fields.{label}: {problem}", column=column, sheet=where, hint=_PART_HINT
        )

    if isinstance(spec, str):
        if not spec.strip():
            raise fail("an empty path")
        return _Part("path", label, path=spec)
    if isinstance(spec, int | float | bool):
        return _Part("const", label, const=spec)
    if isinstance(spec, list | tuple):
        return _compound("join", spec, label, sep=sep, where=where, column=column)
    if isinstance(spec, Mapping):
        unknown = set(spec) - _PART_OPTIONS
        if unknown:
            raise fail(
                f"unknown option(s) {sorted(unknown)} inside a compound spec "
                "(format and power_of_ten apply to the whole field)"
            )
        kinds = [k for k in ("path", "const", "join", "first") if k in spec]
        if len(kinds) != 1:
            raise fail(f"give exactly one of path, const, join or first (got {kinds or 'none'})")
        kind = kinds[0]
        if kind == "const":
            return _Part("const", label, const=spec["const"])
        if kind == "path":
            return _compile_part(str(spec["path"]), label, sep=sep, where=where, column=column)
        return _compound(
            kind,
            spec[kind],
            f"{label}.{kind}",
            sep=str(spec.get("sep", sep)),
            where=where,
            column=column,
        )
    raise fail(f"cannot read {spec!r}")


def _compound(kind: str, items: Any, label: str, *, sep: str, where: str, column: str) -> _Part:
    if not isinstance(items, list | tuple) or not items:
        raise MappingError(
            f"{where}.fields.{label} must be a non-empty list of parts",
            column=column,
            sheet=where,
            hint='e.g. { first = ["mpan", "mprn"] } or ["_parent.site", "serial"]',
        )
    part = _Part(kind, label)
    part.sep = sep
    part.parts = [
        _compile_part(p, f"{label}[{i}]", sep=sep, where=where, column=column)
        for i, p in enumerate(items)
    ]
    return part


class _Spec:
    """A compiled field spec: options for the whole field around a tree of parts."""

    def __init__(self, column: str, spec: Any, *, sep: str, where: str) -> None:
        self.column = column
        self.where = where
        self.const: Any = None
        self.has_const = False
        self.paths: list[str] = []  # every path the spec reads (for single-path fast paths)
        self.format: str | None = None
        self.sep = sep
        self.power_of_ten: int | str | None = None  # value x 10**p (p: int, or a path)
        self.spec = spec
        args = {"sep": sep, "where": where, "column": column}
        if isinstance(spec, str):
            self.root = _Part("path", column, path=spec)
        elif isinstance(spec, list | tuple):
            self.root = _compound("join", spec, column, **args)
        elif isinstance(spec, Mapping):
            unknown = set(spec) - _SPEC_OPTIONS
            if unknown:
                raise MappingError(
                    f"{where}.{column}: unknown option(s) {sorted(unknown)}",
                    column=column,
                    hint="Use path, const, join, first, sep, format or power_of_ten.",
                )
            p10 = spec.get("power_of_ten")
            if p10 is not None and (isinstance(p10, bool) or not isinstance(p10, int | str)):
                raise MappingError(
                    f"{where}.{column}.power_of_ten must be an integer or a field path",
                    column=column,
                    hint='e.g. power_of_ten = "powerOfTenMultiplier" or power_of_ten = -3',
                )
            self.power_of_ten = p10
            self.sep = str(spec.get("sep", sep))
            args["sep"] = self.sep
            if "const" in spec:
                self.root = _Part("const", column, const=spec["const"])
            elif "first" in spec:
                self.root = _compound("first", spec["first"], f"{column}.first", **args)
            elif "join" in spec:
                self.root = _compound("join", spec["join"], f"{column}.join", **args)
            elif "path" in spec:
                self.root = _Part("path", column, path=str(spec["path"]))
            else:
                raise MappingError(
                    f"{where}.{column}: give path, const, join or first", column=column
                )
            self.format = spec.get("format")
        elif isinstance(spec, int | float | bool):
            self.root = _Part("const", column, const=spec)
        else:
            raise MappingError(
                f"{where}.{column}: cannot read field spec {spec!r}",
                column=column,
                hint='Write a dotted path ("address.city"), a list, or {const = ...}.',
            )
        if self.root.kind == "const":
            self.const, self.has_const = self.root.const, True
        self.paths = [leaf.path for leaf in self.root.leaves() if leaf.kind == "path"]

    @property
    def simple(self) -> bool:
        """True for a single path (the fast columnar paths apply)."""
        return self.root.kind == "path"


def _missing(v: Any) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and v != v)


class _FieldRows:
    """The rows a source's field specs read: records, or exploded items with their records.

    Each path part is read where it points: a path starting with the ``explode`` path from the
    item (the ``explode`` path itself is the item), any other path (``_parent.x`` included)
    from the item's record.
    """

    def __init__(
        self,
        records: Sequence[Mapping[str, Any]],
        items: Sequence[Mapping[str, Any]] | None,
        parents: Sequence[int],
        explode: str | None,
    ) -> None:
        self.records, self.items, self.parents = records, items, parents
        self.explode = str(explode) if explode and items is not None else None
        self._parent_rows: list[Mapping[str, Any]] | None = None
        self.n = len(items) if items is not None else len(records)

    def pool(self, path: str) -> tuple[Sequence[Mapping[str, Any]], str | None, str]:
        """(rows, path in them or None for the rows themselves, what the rows are)."""
        if self.explode is None or self.items is None:
            return self.records, path, ""
        if path == self.explode:
            return self.items, None, f"{self.explode!r} item of any "
        if path.startswith(self.explode + "."):
            return self.items, path[len(self.explode) + 1 :], f"{self.explode!r} item of any "
        if self._parent_rows is None:
            self._parent_rows = [self.records[i] for i in self.parents]
        return self._parent_rows, path, ""

    def values(self, part: _Part) -> tuple[list[Any] | Any, list[tuple[_Part, str, list[str]]]]:
        """(values per row, or one constant; the path parts no row has, with what was read)."""
        if part.kind == "const":
            return part.const, []
        if part.kind == "path":
            rows, rel, what = self.pool(part.path)
            if rel is None:
                return list(rows), []
            vals = _extract(rows, rel)
            absent = (
                bool(rows)
                and all(v is None for v in vals[:: max(1, len(vals) // 2000)])
                and not any(vals)
                and not _path_exists(rows, rel)
            )
            if absent:
                keys = sorted(rows[0].keys()) if isinstance(rows[0], Mapping) else []
                return vals, [(part, what, keys[:20])]
            return vals, []
        got = [self.values(p) for p in part.parts]
        cols = [v if isinstance(v, list) else [v] * self.n for v, _ in got]
        if part.kind == "first":
            satisfied = any(not miss for _, miss in got)
            missing = [] if satisfied else [m for _, miss in got for m in miss]
            if not cols or not self.n:
                return [], missing
            return _first_non_null(cols), missing
        missing = [m for _, miss in got for m in miss]
        sep = part.sep
        return [
            None if any(_missing(v) for v in vals) else sep.join(str(v) for v in vals)
            for vals in zip(*cols, strict=True)
        ], missing


def _first_non_null(cols: Sequence[Sequence[Any]]) -> list[Any]:
    """Row-wise first value that is not None/NaN across equally long columns (vectorised)."""
    n = len(cols[0])
    out = np.fromiter(cols[0], dtype=object, count=n)
    for col in cols[1:]:
        missing = pd.isna(out)
        if not missing.any():
            break
        alt = np.fromiter(col, dtype=object, count=n)
        out[missing] = alt[missing]
    return cast("list[Any]", out.tolist())


def _compile(fields: Mapping[str, Any], *, sep: str, where: str) -> dict[str, _Spec]:
    if not isinstance(fields, Mapping) or not fields:
        raise MappingError(
            f"{where} needs a non-empty fields table",
            hint=f'Add [{where}.fields] with column = "record.path" lines.',
        )
    return {str(c): _Spec(str(c), s, sep=sep, where=where) for c, s in fields.items()}


# ---- mapping shape ---------------------------------------------------------------------------
def resolve_mapping(profile: Any, mapping: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The mapping in use: ``mapping`` if given, else the profile's ``[mapping]`` section.

    Parameters
    ----------
    profile : Profile
        Its ``[mapping]`` section is used unless ``mapping`` is given.
    mapping : dict, optional
        A mapping of the same shape (docs/mapping.md).

    Returns
    -------
    dict
        A copy; ``usage`` and ``readings`` always as ``{source name: source table}`` (a single
        source table written directly under ``[mapping.usage]`` is keyed by its resource).

    Raises
    ------
    MappingError
        If the mapping is not a table or a source table has the wrong shape.
    """
    m = dict(mapping) if mapping is not None else dict(profile.section("mapping") or {})
    if not isinstance(m, dict):
        raise MappingError("the mapping must be a table (dict)")
    for table in ("usage", "readings"):
        sources = m.get(table)
        if sources is None:
            continue
        if not isinstance(sources, Mapping):
            raise MappingError(f"mapping.{table} must be a table", sheet=table)
        if "resource" in sources or "fields" in sources:
            sources = {str(sources.get("resource", table)): sources}
        out = {}
        for name, src in sources.items():
            if not isinstance(src, Mapping):
                raise MappingError(f"mapping.{table}.{name} must be a table", sheet=table, key=name)
            out[str(name)] = dict(src)
        m[table] = out
    return m


# ---- timestamps -------------------------------------------------------------------------------
def _looks_aware(sample: Sequence[Any]) -> tuple[bool, bool]:
    """(any aware, any naive) among non-null string samples."""
    aware = naive = False
    for v in sample:
        if v is None:
            continue
        s = str(v).strip()
        if _OFFSET_RE.search(s) and len(s) > 10:
            aware = True
        else:
            naive = True
    return aware, naive


def parse_timestamps(
    values: Sequence[Any],
    *,
    tz: str | np.ndarray | pd.Categorical = "UTC",
    fmt: str | None = None,
    order_keys: np.ndarray | None = None,
    nonexistent: str = "quarantine",
    add_days: int = 0,
) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """Parse a column of provider timestamps to tz-aware UTC, vectorised.

    Parameters
    ----------
    values : sequence
        ISO 8601 strings (with "Z"/"+01:00" offsets or naive), dates, or epoch numbers.
    tz : str or categorical of str
        Zone for naive values (one, or one per value).
    fmt : {"iso", "epoch_s", "epoch_ms", None}
        ``None``: numbers are epoch seconds (UTC), strings ISO 8601.
    add_days : int
        Calendar days added in local wall time (inclusive end dates -> exclusive: 1).

    Returns
    -------
    (DatetimeIndex UTC with NaT where unparseable or nonexistent, bool mask of "bad" values)
        ``bad`` is True where a non-null input could not become a valid instant.

    Raises
    ------
    MappingError
        If a zone for naive values is unknown or ``nonexistent`` is not a known choice.
    """
    n = len(values)
    arr = values if isinstance(values, np.ndarray) else np.asarray(values, dtype=object)
    isnull = pd.isna(arr) if arr.dtype == object else np.zeros(n, dtype=bool)
    first = next((v for v in arr[:1000] if v is not None and v == v), None)
    numeric = fmt in ("epoch_s", "epoch_ms") or (
        fmt is None and isinstance(first, int | float | np.number) and not isinstance(first, bool)
    )
    if numeric:
        nums = pd.to_numeric(pd.Series(arr, copy=False), errors="coerce").to_numpy(np.float64)
        unit = "ms" if fmt == "epoch_ms" else "s"
        out = pd.DatetimeIndex(pd.to_datetime(nums, unit=unit, utc=True))
        bad = np.asarray(out.isna()) & ~isnull
        if add_days:
            out = add_local_days(out, tz, add_days, order_keys)
        return out, bad
    step = max(1, n // 500)
    sample = list(arr[::step][:600]) + list(arr[-50:])
    any_aware, any_naive = _looks_aware(sample)
    if any_aware and any_naive:
        ser = pd.Series(arr, copy=False).astype(str)
        aware_mask = ser.str.contains(_OFFSET_RE).to_numpy() & (ser.str.len() > 10).to_numpy()
    else:
        aware_mask = np.full(n, any_aware)
    result = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
    bad = np.zeros(n, dtype=bool)
    if aware_mask.all() and n:
        parsed = _to_datetime(arr, utc=True)
        out = pd.DatetimeIndex(parsed).as_unit("ns")
        bad = np.asarray(out.isna()) & ~isnull
        if add_days:
            out = add_local_days(out, tz, add_days, order_keys)
        return out, bad
    if aware_mask.any():
        parsed = pd.DatetimeIndex(_to_datetime(arr[aware_mask], utc=True))
        if add_days:
            sub_tz = tz[aware_mask] if not isinstance(tz, str) else tz
            ok = order_keys[aware_mask] if order_keys is not None else None
            parsed = add_local_days(parsed, sub_tz, add_days, ok)
        result[aware_mask] = parsed.as_unit("ns").asi8
    naive_mask = ~aware_mask
    if naive_mask.any():
        naive = pd.DatetimeIndex(_to_datetime(arr[naive_mask], utc=False))
        if naive.tz is not None:  # a parser surprise: treat as aware
            result[naive_mask] = naive.tz_convert("UTC").as_unit("ns").asi8
        else:
            if add_days:
                naive = naive + pd.Timedelta(days=add_days)
            keys = order_keys[naive_mask] if order_keys is not None else None
            tzs = zone_per_row(tz, n)[naive_mask] if not isinstance(tz, str) else None
            sub_res = np.full(len(naive), np.iinfo(np.int64).min, dtype=np.int64)
            sub_bad = np.zeros(len(naive), dtype=bool)
            groups = (
                [(tz, np.ones(len(naive), dtype=bool))]
                if tzs is None
                else [(z, tzs == z) for z in pd.unique(tzs[~pd.isna(tzs)])]
            )
            for zone, m in groups:
                loc, missing = localize_naive(
                    naive[m],
                    str(zone),
                    order_keys=keys[m] if keys is not None else None,
                    nonexistent=nonexistent,
                )
                sub_res[m] = loc.as_unit("ns").asi8
                sub_bad[np.flatnonzero(m)[missing]] = True
            result[naive_mask] = sub_res
            bad[np.flatnonzero(naive_mask)[sub_bad]] = True
    out = utc_index(result)
    bad |= np.asarray(out.isna()) & ~isnull
    return out, bad


def _to_datetime(arr: Any, *, utc: bool) -> Any:
    try:
        return pd.to_datetime(arr, utc=utc, format="ISO8601", errors="coerce")
    except (ValueError, TypeError, OverflowError):
        return pd.to_datetime(pd.Series(arr).astype(str), utc=utc, format="mixed", errors="coerce")


# ---- columns ----------------------------------------------------------------------------------
def _floats(values: list[Any] | Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """float64 array and a mask of values that were present but not numbers."""
    if not isinstance(values, list):
        try:
            return np.full(n, np.nan if values is None else float(values)), np.zeros(n, bool)
        except (TypeError, ValueError):
            return np.full(n, np.nan), np.ones(n, bool)
    try:
        arr = np.array(values, dtype=np.float64)
        return arr, np.zeros(n, dtype=bool)
    except (TypeError, ValueError):
        s = pd.Series(values, dtype=object)
        num = pd.to_numeric(s, errors="coerce").to_numpy(np.float64)
        return num, np.isnan(num) & s.notna().to_numpy()


_TRUE = {"true", "1", "yes", "y", "e", "est", "estimated", "t"}


def _bools(values: list[Any] | Any, n: int) -> pd.arrays.BooleanArray:
    if not isinstance(values, list):
        return pd.array([None if values is None else bool(values)] * n, dtype="boolean")
    try:
        return pd.array(values, dtype="boolean")
    except (TypeError, ValueError):
        s = pd.Series(values, dtype=object)
        out = s.map(lambda v: None if v is None else (str(v).strip().lower() in _TRUE))
        return pd.array(out.tolist(), dtype="boolean")


def _categorical(values: list[Any] | Any, n: int) -> pd.Categorical:
    """Categorical in first-appearance order (so codes follow record order)."""
    if not isinstance(values, list):
        return pd.Categorical.from_codes(
            np.zeros(n, dtype=np.int8) if values is not None else np.full(n, -1, np.int8),
            categories=[str(values)] if values is not None else [],
        )
    codes, uniques = pd.factorize(np.asarray(values, dtype=object), use_na_sentinel=True)
    cats = pd.Index([str(u) for u in uniques], dtype=object)
    if cats.has_duplicates:  # 1 and "1" both present: merge by text
        return pd.Categorical(
            [None if v is None else str(v) for v in values], categories=cats.unique()
        )
    return pd.Categorical.from_codes(codes, categories=cats, validate=False)


def _strings(values: list[Any] | Any, n: int) -> pd.Series:
    if not isinstance(values, list):
        return pd.Series([None if values is None else str(values)] * n, dtype="string")
    return pd.Series(
        [None if v is None else v if isinstance(v, str) else _to_text(v) for v in values],
        dtype="string",
    )


def _to_text(v: Any) -> str:
    if isinstance(v, dict | list):
        return json.dumps(v, default=json_default, sort_keys=True)
    return str(v)


def _apply_value_map(values: Any, vmap: Mapping[str, Any] | None) -> Any:
    if not vmap:
        return values
    table = {str(k): v for k, v in vmap.items()}
    lower = {str(k).lower(): v for k, v in vmap.items()}

    def one(v: Any) -> Any:
        if v is None:
            return None
        s = str(v)
        if s in table:
            return table[s]
        return lower.get(s.lower(), _UNMAPPED)

    if not isinstance(values, list):
        return one(values)
    uniq = {v for v in values if v is not None and not isinstance(v, dict | list)}
    mapped = {u: one(u) for u in uniq}
    return [None if v is None else mapped.get(v, _UNMAPPED) for v in values]


class _Unmapped:
    def __repr__(self) -> str:
        return "<unmapped>"


_UNMAPPED = _Unmapped()


# ---- records per source -------------------------------------------------------------------------
def _records_for(
    raw: Mapping[str, list[dict[str, Any]]], source: Mapping[str, Any], where: str
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]] | None, list[int]]:
    """(records, items or None, record index per row) with an optional ``explode``."""
    resource = source.get("resource")
    if not resource:
        raise MappingError(f"{where} needs a resource", hint=f"Add resource = ... to [{where}].")
    if isinstance(resource, list):  # several endpoints feed one table (e.g. elec + gas points)
        records: list[Mapping[str, Any]] = [r for name in resource for r in raw.get(str(name), [])]
    elif resource not in raw:
        return [], None, []
    else:
        records = cast("list[Mapping[str, Any]]", raw[resource])
    explode = source.get("explode")
    if not explode:
        return records, None, []
    parts = _split_path(str(explode))
    items: list[Mapping[str, Any]] = []
    parents: list[int] = []
    for i, r in enumerate(records):
        lst = _walk(r, parts)
        if isinstance(lst, list):
            for it in lst:
                items.append(it if isinstance(it, Mapping) else {"value": it})
                parents.append(i)
    return records, items, parents


def _extract_fields(
    specs: Mapping[str, _Spec],
    records: list[Mapping[str, Any]],
    items: list[Mapping[str, Any]] | None,
    parents: list[int],
    explode: str | None,
    where: str,
    resource: str,
) -> dict[str, Any]:
    """column -> list of values (or a constant), each part of a spec resolved by its kind.

    Raises
    ------
    MappingError
        A path part that no row has (within a ``first``: only when none of its parts has
        values), naming the field, the part and where it was read.
    """
    out: dict[str, Any] = {}
    rows = _FieldRows(records, items, parents, explode)
    for col, spec in specs.items():
        vals, missing = rows.values(spec.root)
        if missing:
            part, what, keys = missing[0]
            which = "" if part is spec.root else f" part {part.describe()}:"
            inside = (
                f" With explode = {explode!r}, paths starting with '{explode}.' read each item, "
                "any other path reads the item's record."
                if explode
                else ""
            )
            raise MappingError(
                f"{where}.fields.{col} = {spec.spec!r}:{which} no {what}{resource!r} record "
                f"has {part.path!r} (keys: {keys})",
                column=col,
                sheet=where,
                hint="Fix the field path in the mapping (dotted, e.g. 'address.city')." + inside,
            )
        out[col] = vals
    return out


def field_values(
    spec: Any,
    records: Sequence[Mapping[str, Any]],
    *,
    column: str = "field",
    where: str = "fields",
    sep: str = ":",
    resource: str = "records",
) -> list[Any]:
    """The value of one field spec for every record (a path, a compound key, ``join``,
    ``first`` or ``const``, composed as in a mapping's fields; docs/mapping.md).

    Parameters
    ----------
    spec : str, list or dict
        The field spec.
    records : sequence of dict
        The records (no ``explode``).
    column, where, resource : str
        Names for errors (``where.fields.column``, the records' resource).
    sep : str
        Separator of compound keys without their own ``sep``.

    Returns
    -------
    list
        One value per record (None where a key part has no value).

    Raises
    ------
    MappingError
        The spec is malformed, or a path part no record has (naming the part).
    """
    compiled = _Spec(column, spec, sep=sep, where=where)
    vals = _extract_fields({column: compiled}, list(records), None, [], None, where, resource)[
        column
    ]
    return vals if isinstance(vals, list) else [vals] * len(records)


# ---- tables ----------------------------------------------------------------------------------
class _Origins:
    """Where row ``i`` of a source came from: its resource and position, for reasons."""

    def __init__(
        self,
        raw: Mapping[str, list[dict[str, Any]]],
        src: Mapping[str, Any],
        records: Sequence[Mapping[str, Any]],
        items: Sequence[Mapping[str, Any]] | None,
        parents: Sequence[int],
    ) -> None:
        resource = src.get("resource")
        self.names = [str(r) for r in resource] if isinstance(resource, list) else [str(resource)]
        self.starts = list(np.cumsum([0, *(len(raw.get(n) or []) for n in self.names[:-1])]))
        self.records, self.items, self.parents = records, items, parents

    def record_of(self, i: int) -> int:
        return self.parents[i] if self.items is not None else i

    def resource(self, i: int) -> str:
        import bisect

        rec = self.record_of(i)
        return self.names[max(0, bisect.bisect_right(self.starts, rec) - 1)]

    def describe(self, i: int) -> str:
        """``record 4 of 'meters'`` (``record 4 item 1 of ...`` when exploded), with its
        ``_parent``."""
        import bisect

        rec = self.record_of(i)
        j = max(0, bisect.bisect_right(self.starts, rec) - 1)
        text = f"record {rec - int(self.starts[j])}"
        if self.items is not None:
            text += f" item {i - bisect.bisect_left(self.parents, rec)}"
        text += f" of {self.names[j]!r}"
        parent = (
            self.records[rec].get("_parent") if isinstance(self.records[rec], Mapping) else None
        )
        if isinstance(parent, Mapping) and parent:
            text += " (" + ", ".join(f"{k}={v}" for k, v in parent.items()) + ")"
        return text


def _same(a: Any, b: Any) -> bool:
    if a is None or a is pd.NA or (isinstance(a, float) and np.isnan(a)):
        return b is None or b is pd.NA or (isinstance(b, float) and np.isnan(b))
    return bool(a == b) if not isinstance(a, np.ndarray) else False


def _entity_frame(
    table: str,
    src: Mapping[str, Any],
    raw: Mapping[str, list[dict[str, Any]]],
    *,
    key: str,
    required: Sequence[str],
    derived: bool = False,
) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    """Assets or meters of one mapping source, and the quarantine of the records set aside.

    Every record is accounted for: it is a row, or it has one quarantine row (stage
    ``transform``): ``unmappable`` (a required field missing, a value without a value map
    entry) or ``duplicate_id`` (:func:`_duplicate_ids`). A record without an id is keyed by
    :func:`~scaler_workbench.schema.source_key`.
    """
    where = f"mapping.{table}"
    sep = str(src.get("key_separator", ":"))
    specs = _compile(src.get("fields", {}), sep=sep, where=where)
    if key not in specs:
        raise MappingError(f"{where}.fields needs {key}", column=key, sheet=table)
    records, items, parents = _records_for(raw, src, where)
    rows = items if items is not None else records
    n = len(rows)
    if n == 0:
        return empty_frame(table), []
    origins = _Origins(raw, src, records, items, parents)
    vals = _extract_fields(
        specs, records, items, parents, src.get("explode"), where, str(src["resource"])
    )
    vmaps = src.get("value_maps", {}) or {}
    problems: list[list[str]] = [[] for _ in range(n)]
    data: dict[str, Any] = {}
    for col, v in vals.items():
        if col in vmaps:
            v = _apply_value_map(v, vmaps[col])
            if isinstance(v, list):
                raw_v = vals[col] if isinstance(vals[col], list) else [vals[col]] * n
                for i, x in enumerate(v):
                    if x is _UNMAPPED:
                        problems[i].append(
                            f"{col}: value {raw_v[i]!r} has no entry in value_maps.{col}"
                        )
                v = [None if x is _UNMAPPED else x for x in v]
            elif v is _UNMAPPED:
                v = None
        data[col] = v if isinstance(v, list) else [v] * n
    frame = pd.DataFrame(data)
    for col in frame.columns:
        if frame[col].dtype == object:
            frame[col] = [
                None
                if x is None
                else x
                if isinstance(x, str | int | float | bool) and not isinstance(x, bool)
                else _to_text(x)
                if isinstance(x, dict | list)
                else x
                for x in frame[col]
            ]
    for col in required:
        if col in frame.columns:
            for j in np.flatnonzero(frame[col].isna().to_numpy()):
                problems[int(j)].append(f"{col}: missing")
        elif col != "unit":
            for p in problems:
                p.append(f"{col}: not mapped")
    bad = np.array([bool(p) for p in problems])
    q: list[pd.DataFrame] = []
    if bad.any():
        idx = np.flatnonzero(bad)
        q.append(
            quarantine_records(
                [rows[i] for i in idx],
                table=table,
                stage="transform",
                rule="unmappable",
                reasons=[
                    f"cannot map {table} {origins.describe(int(i))}: " + "; ".join(problems[i])
                    for i in idx
                ],
                keys=[
                    None if pd.isna(frame[key].iloc[i]) else str(frame[key].iloc[i]) for i in idx
                ],
                resource=origins.resource(int(idx[0])),
            )
        )
        frame = frame[~bad]
    frame, dq = _duplicate_ids(table, frame, rows, origins, key=key, derived=derived)
    q += dq
    return coerce_frame(frame, table), q


def _duplicate_ids(
    table: str,
    frame: pd.DataFrame,
    rows: Sequence[Mapping[str, Any]],
    origins: _Origins,
    *,
    key: str,
    derived: bool,
) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    """Keep the first record of every id; account for the others (rule ``duplicate_id``).

    The stated rule: the record seen first (in resource order) is kept. A later record with
    the same id is removed from the table and gets a quarantine row naming both records:

    * identical (every mapped field equal): collapsed into the first, severity ``warning``;
    * different: set aside, severity ``error``, the reason naming the fields that differ.

    ``derived`` tables are read from records that are not one per entity (assets with
    ``derive_from``, or an assets/meters mapping over a usage or readings resource, as Green
    Button's meters over its readings): many records per id are the design, so identical ones
    collapse without a row and an id whose records differ gets one ``warning`` (the row keeps
    the first record's fields).

    ``frame`` has the record positions as its index.
    """
    ids = frame[key]
    dup = (ids.duplicated(keep="first") & ids.notna()).to_numpy()
    if not dup.any():
        return frame, []
    first_of = (
        pd.Series(frame.index, index=frame.index)
        .groupby(ids.to_numpy(), sort=False)
        .transform("first")
    )
    occurrence = ids.groupby(ids.to_numpy(), sort=False).cumcount() + 1  # the 2nd copy: "#2"
    cols = [c for c in frame.columns if c != key]
    plain = frame.astype(object).where(frame.notna(), None)
    dpos = frame.index[dup]
    fpos = first_of.loc[dpos].to_numpy()
    a = plain.loc[dpos, cols].to_numpy(dtype=object)
    b = plain.loc[fpos, cols].to_numpy(dtype=object)
    differs = ~np.asarray(a == b, dtype=bool) if cols else np.zeros((len(dpos), 0), bool)
    found: dict[str, tuple[list[int], list[str], list[str]]] = {
        "warning": ([], [], []),
        "error": ([], [], []),
    }
    reported: set[str] = set()
    for j, pos in enumerate(dpos):
        diff = [c for c, d in zip(cols, differs[j], strict=True) if d]
        ident = str(ids.loc[pos])
        if derived and (not diff or ident in reported):
            continue  # records of one meter or site: one row by design; one warning per id
        first = int(fpos[j])
        head = (
            f"{table} {origins.describe(int(pos))} has {key} {ident!r} like "
            f"{origins.describe(first)}, which is kept (the first seen)"
        )
        if not diff:
            severity = "warning"
            why = f"{head}; identical: collapsed into it"
        else:
            shown = "; ".join(
                f"{c} {plain.at[pos, c]!r} vs {plain.at[first, c]!r}" for c in diff[:5]
            )
            more = f"; and {len(diff) - 5} more field(s)" if len(diff) > 5 else ""
            if derived:
                severity = "warning"
                n_diff = int(differs[(ids.loc[dpos] == ids.loc[pos]).to_numpy()].any(axis=1).sum())
                why = (
                    f"{head}; {n_diff} record(s) of this {key} differ ({shown}{more}): the "
                    f"{table} row keeps the first record's fields. Ask the provider which is "
                    "current"
                )
                reported.add(ident)
            else:
                severity = "error"
                why = (
                    f"{head}; it differs ({shown}{more}): set aside. Ask the provider which "
                    "record is current, or map a unique id"
                )
        found[severity][0].append(int(pos))
        found[severity][1].append(why)
        found[severity][2].append(f"{ident}#{int(occurrence.loc[pos])}")
    q = [
        quarantine_records(
            [rows[i] for i in pos_list],
            table=table,
            stage="transform",
            rule="duplicate_id",
            severity=severity,
            reasons=why_list,
            keys=key_list,
            resource=origins.resource(pos_list[0]),
        )
        for severity, (pos_list, why_list, key_list) in found.items()
        if pos_list
    ]
    return frame[~dup], q


def _meter_timezones(meters: pd.DataFrame, assets: pd.DataFrame, default: str) -> dict[str, str]:
    if not len(meters):
        return {}
    tz_of_asset: dict[str, str] = {}
    if len(assets) and "timezone" in assets:
        a = assets.dropna(subset=["timezone"])
        tz_of_asset = dict(zip(a["asset_id"].astype(str), a["timezone"].astype(str), strict=True))
    return {
        str(m): tz_of_asset.get(str(a), default)
        for m, a in zip(meters["meter_id"], meters["asset_id"], strict=True)
    }


def _series_frame(
    table: str,
    name: str,
    src: Mapping[str, Any],
    raw: Mapping[str, list[dict[str, Any]]],
    meter_tz: Mapping[str, str],
    default_tz: str,
    *,
    primary_keys: Mapping[str, str] | None = None,
    row_offset: int = 0,
    missing_values: str = "no_data",
    overlaps: str = "flag",
) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    """Usage or readings rows of one source, in provider units, timestamps UTC.

    ``overlaps`` is the source's period policy (``later_wins``: shared boundaries of bills are
    read as inclusive ends under ``end_inclusive = "auto"``).

    ``_row`` (lineage: the record's position in the resource, plus ``row_offset`` for a chunk
    of a longer list) is only materialised when positions would not say it: rows were set
    aside, or the records are a chunk.

    Set aside (quarantine rows, stage ``transform``): records that cannot be mapped
    (``unmappable``), records with an infinite value (``non_finite``) and, under
    ``missing_values = "error"``, records without a value (``unmappable``). Under ``"no_data"``
    a record without a value stays a row with a null value (delivered without data) and each
    meter and local day with such rows gets one ``no_data`` warning row counting them. The
    quarantine comes as one frame ordered by :func:`order_series_quarantine`.
    """
    where = f"mapping.{table}.{name}"
    unknown = set(src) - _SOURCE_TABLE_OPTIONS - {"policy"}
    if unknown:
        raise MappingError(
            f"{where}: unknown option(s) {sorted(unknown)}",
            sheet=table,
            hint=f"Known options: {sorted(_SOURCE_TABLE_OPTIONS)}.",
        )
    sep = str(src.get("key_separator", ":"))
    fields = dict(src.get("fields", {}) or {})
    role, split_sign = _value_role(src, fields, where) if table == "usage" else ("", False)
    pk = (primary_keys or {}).get(str(src.get("resource")))
    if "source_id" not in fields and pk and not src.get("explode"):
        records0 = raw.get(str(src.get("resource"))) or []
        if records0 and isinstance(records0[0], Mapping) and pk in records0[0]:
            fields["source_id"] = pk  # lineage: the resource's primary key, stable across runs
    specs = _compile(fields, sep=sep, where=where)
    time_cols = ("start", "end") if table == "usage" else ("timestamp",)
    value_col = "consumption" if table == "usage" else "value"
    # what the source's value is, in reasons: a production source's value is not consumption
    value_label = role if role and role != "consumption" else value_col
    needed = ["meter_id", time_cols[0], value_col]
    if table == "usage" and "end" not in specs and not src.get("duration"):
        needed.append("end")
    missing = [c for c in needed if c not in specs]
    if missing:
        raise MappingError(
            f"{where}.fields must map {missing}",
            column=missing[0],
            sheet=table,
            hint="Add the field path(s); for intervals without an end give duration = '30min'.",
        )
    records, items, parents = _records_for(raw, src, where)
    rows = items if items is not None else records
    n = len(rows)
    if n == 0:
        return pd.DataFrame(), []
    explode = src.get("explode")
    vmaps = src.get("value_maps", {}) or {}
    fast = (
        _fast_series_columns(specs, records, vmaps, list(meter_tz), time_cols)
        if items is None
        else {}
    )
    rest = {c: s for c, s in specs.items() if c not in fast}
    vals = _extract_fields(rest, records, items, parents, explode, where, str(src["resource"]))
    for col in list(vals):
        if col in vmaps:
            mapped = _apply_value_map(vals[col], vmaps[col])
            vals[col] = (
                [None if x is _UNMAPPED else x for x in mapped]
                if isinstance(mapped, list)
                else (None if mapped is _UNMAPPED else mapped)
            )

    meter = fast.pop("meter_id") if "meter_id" in fast else _categorical(vals.pop("meter_id"), n)
    mcodes = np.asarray(meter.codes)
    cats = list(meter.categories)
    tz_override = src.get("tz")
    tz_of_cat = [str(tz_override or meter_tz.get(c, default_tz)) for c in cats]
    site_tz_of_cat = [meter_tz.get(c, default_tz) for c in cats]
    # zones for naive timestamps: one string, or a categorical per row (never an object array)
    tz_arg: Any = (
        str(tz_of_cat[0])
        if len(set(tz_of_cat)) == 1 and (len(cats) and (mcodes >= 0).all())
        else _zone_rows([*tz_of_cat, default_tz], mcodes, sort=False)
    )
    if not isinstance(tz_arg, str) and len(tz_arg.categories) == 1:
        tz_arg = str(tz_arg.categories[0])
    nonexistent = str(src.get("nonexistent", "quarantine"))
    reasons: dict[str, np.ndarray] = _Reasons()
    if len(mcodes) and mcodes.min() < 0:  # (no full-length mask when every row has one)
        reasons["no meter id"] = mcodes < 0

    frame: dict[str, Any] = {"meter_id": meter}
    end_inclusive = src.get("end_inclusive", False)
    for col in time_cols:
        if col not in vals and col not in fast:
            continue
        spec = specs[col]
        add = 0
        if col == "end" and end_inclusive is True:
            add = 1
        if col in fast:
            ns, parsed = fast.pop(col)
            ts, bad = _finish_fast_times(
                ns,
                parsed,
                records,
                spec.paths[0],
                tz=tz_arg,
                order_keys=mcodes,
                nonexistent=nonexistent,
                add_days=add,
            )
        else:
            v = vals.pop(col)
            if not isinstance(v, list):
                v = [v] * n
            ts, bad = parse_timestamps(
                v,
                tz=tz_arg,
                fmt=spec.format if spec.format not in (None, "iso") else None,
                order_keys=mcodes,
                nonexistent=nonexistent,
                add_days=add,
            )
        missing_ts = np.asarray(ts.isna())
        reasons[f"{col} is missing"] = missing_ts & ~bad if bad.any() else missing_ts
        reasons[f"{col} cannot be parsed as a time (or does not exist in the local zone)"] = bad
        frame[col] = ts
    end_after_start = False  # proven for every row with both times (end = start + d, d > 0)
    if table == "usage":
        if "end" not in frame:
            frame["end"], end_after_start = _plus_duration(
                frame["start"], pd.Timedelta(str(src["duration"]))
            )
        elif end_inclusive == "auto":
            frame["end"] = _auto_inclusive_end(
                frame, tz_arg, mcodes, shared_inclusive=overlaps == "later_wins"
            )
    if value_col in fast:  # the fast path read every value as a number
        value, bad_num = fast.pop(value_col), None
    else:
        value, bad_num = _floats(vals.pop(value_col), n)
    null_value = np.isnan(value)
    if bad_num is not None:
        null_value &= ~bad_num
    if missing_values == "error":
        reasons[f"{value_label} is missing"] = null_value
    if bad_num is not None:
        reasons[f"{value_label} is not a number"] = bad_num
    numbers = [value_col]  # columns checked for ±inf (after any power of ten)
    frame[value_col] = value
    if table == "usage" and not end_after_start:
        start = utc_ns(frame["start"])
        end = utc_ns(frame["end"])
        nat = np.iinfo(np.int64).min
        reasons["end is not after start"] = (start != nat) & (end != nat) & (end <= start)
    for col in ("redelivery", "production", "cost"):
        if col in fast:
            frame[col] = fast.pop(col)
        elif col in vals:
            frame[col], badc = _floats(vals.pop(col), n)
            reasons[f"{col} is not a number"] = badc
        if col in frame:
            numbers.append(col)
    if any(sp.power_of_ten is not None for sp in specs.values()):
        _scale_powers_of_ten(
            specs,
            frame,
            reasons,
            value_col,
            lambda path: _extract_fields(
                {"_p10": _Spec("_p10", path, sep=sep, where=where)},
                records,
                items,
                parents,
                explode,
                where,
                str(src["resource"]),
            )["_p10"],
        )
    if "estimated" in vals:
        frame["estimated"] = _bools(vals.pop("estimated"), n)
    for col in ("unit", "currency"):
        if col in vals:
            frame[col] = _categorical(vals.pop(col), n)
    if "unit" not in frame and src.get("unit"):
        frame["unit"] = _categorical(str(src["unit"]), n)
    if "source_id" in vals:
        frame["source_id"] = _strings(vals.pop("source_id"), n)
    if "revision" in vals:
        rv = vals.pop("revision")
        rvs = pd.Series(rv if isinstance(rv, list) else [rv] * n, dtype=object)
        num = pd.to_numeric(rvs, errors="coerce")
        frame["revision"] = (
            num.to_numpy(np.float64)
            if num.notna().sum() == rvs.notna().sum()
            else pd.DatetimeIndex(pd.to_datetime(rvs, utc=True, errors="coerce", format="ISO8601"))
            .as_unit("ns")
            .asi8.astype(np.float64)
        )
    for col, v in vals.items():  # anything else: kept as text (metadata, flags, ...)
        frame[col] = _strings(v, n)
    assert not fast, sorted(fast)
    frame["timezone"] = _zone_rows([*site_tz_of_cat, None], mcodes, sort=True)
    frame["source"] = pd.Categorical.from_codes(np.zeros(n, np.int8), categories=[name])
    frame["method"] = pd.Categorical.from_codes(np.zeros(n, np.int8), categories=["as-reported"])
    # row masks, None when no row has the property (no full-length mask in the usual case)
    unmappable = _union(reasons.values())  # _Reasons keeps only masks with a row set
    # after the power of ten: a finite value times 10**p may overflow
    infinite = {c: np.isinf(np.asarray(frame[c], dtype=np.float64)) for c in numbers}
    not_finite = _union(m for m in infinite.values() if m.any())
    if unmappable is not None and not_finite is not None:
        not_finite &= ~unmappable
        if not not_finite.any():
            not_finite = None
    bad_any = (
        unmappable
        if not_finite is None
        else not_finite
        if unmappable is None
        else unmappable | not_finite
    )
    if row_offset or bad_any is not None:
        frame["_row"] = _row_numbers(row_offset, n)
    out = pd.DataFrame(frame, copy=False)  # the arrays are ours: no consolidating copy
    q: list[pd.DataFrame] = []
    resource = str(src["resource"]) if not isinstance(src["resource"], list) else name
    time_col = time_cols[0]

    def keys_of(idx: np.ndarray) -> list[str]:
        """``meter|UTC time|source_key``: the same in every run that fetches the record."""
        when = utc_text(out[time_col].iloc[idx], "s")
        return [
            f"{cats[mcodes[i]] if mcodes[i] >= 0 else ''}|{'' if pd.isna(w) else w}|"
            + source_key(rows[i], resource=resource)
            for i, w in zip(idx, when, strict=True)
        ]

    sid_of = (lambda idx: out["source_id"].iloc[idx].tolist()) if "source_id" in out else None
    if unmappable is not None:
        idx = np.flatnonzero(unmappable)
        why = ["; ".join(r for r, m in reasons.items() if m[i]) for i in idx]
        q.append(
            quarantine_records(
                [rows[i] for i in idx],
                table=table,
                stage="transform",
                rule="unmappable",
                reasons=[
                    f"{src['resource']} record {i + row_offset} ({name}) cannot be mapped: {w}"
                    for i, w in zip(idx, why, strict=True)
                ],
                keys=keys_of(idx),
                source_ids=sid_of(idx) if sid_of else None,
            )
        )
    if not_finite is not None:
        idx = np.flatnonzero(not_finite)
        cols_of = [
            ", ".join(value_label if c == value_col else c for c, m in infinite.items() if m[i])
            for i in idx
        ]
        q.append(
            quarantine_records(
                [rows[i] for i in idx],
                table=table,
                stage="transform",
                rule="non_finite",
                reasons=[
                    f"{src['resource']} record {i + row_offset} ({name}): {c} is infinite "
                    "(after any power of ten); set aside. Ask the provider what the value "
                    "means (an overflow, an error code)"
                    for i, c in zip(idx, cols_of, strict=True)
                ],
                keys=keys_of(idx),
                source_ids=sid_of(idx) if sid_of else None,
            )
        )
    no_data = null_value if bad_any is None else null_value & ~bad_any
    if missing_values != "error" and no_data.any():
        q.append(_no_data_rows(table, name, value_label, out, mcodes, cats, no_data, time_col))
    if bad_any is not None:
        out = out[~bad_any]
    if role:
        out = _route_value(out, role, split_sign=split_sign)
    return out, [order_series_quarantine(pd.concat(q, ignore_index=True))] if q else []


#: The order of a series source's transform quarantine rules (then any other rule, by name);
#: within a rule the rows keep their order (record position; ``no_data``: meter, local day).
SERIES_RULE_ORDER = ("unmappable", "non_finite", "no_data")


def order_series_quarantine(rows: pd.DataFrame) -> pd.DataFrame:
    """A series source's transform quarantine rows in :data:`SERIES_RULE_ORDER` (stable).

    :func:`build_tables` maps a source whole and the streamed pipeline maps it in chunks of
    whole meters; ordering the concatenated rows by rule (a stable sort) gives both the same
    frame, row for row.

    Parameters
    ----------
    rows : pandas.DataFrame
        Quarantine rows (``schema.QUARANTINE``) of one source, its records in order.

    Returns
    -------
    pandas.DataFrame
        The same rows, ordered by rule, with a fresh index.
    """
    rule = rows["rule"].astype(str)
    rank = rule.map({r: i for i, r in enumerate(SERIES_RULE_ORDER)}).fillna(len(SERIES_RULE_ORDER))
    order = np.lexsort((np.arange(len(rows)), rule.to_numpy(dtype=str), rank.to_numpy()))
    if (order == np.arange(len(rows))).all():
        return rows.reset_index(drop=True)
    return rows.iloc[order].reset_index(drop=True)


def _value_role(src: Mapping[str, Any], fields: dict[str, Any], where: str) -> tuple[str, bool]:
    """``(role, split_sign)`` of a usage source; ``fields`` gets its value under ``consumption``.

    A source with ``role = "redelivery"`` may map its value as ``redelivery`` (or as
    ``consumption``); it is read as the source's value and moved by :func:`_route_value`.
    """
    role = src.get("role", "consumption")
    if role not in VALUE_ROLES:
        close = difflib.get_close_matches(str(role), VALUE_ROLES, n=1)
        raise MappingError(
            f"{where}.role is {role!r}"
            + (f" (did you mean {close[0]!r}?)" if close else "")
            + f", not one of {list(VALUE_ROLES)}",
            hint="role says which value of the meter the source's value is: consumption "
            "(default), redelivery (exported to the grid) or production (generated on site).",
        )
    split = src.get("split_sign", False)
    if not isinstance(split, bool):
        raise MappingError(
            f"{where}.split_sign is {split!r}, not true or false",
            hint="split_sign = true sends a signed net value's positive part to consumption "
            "and its negative part to redelivery.",
        )
    if split and (role != "consumption" or "redelivery" in fields):
        raise MappingError(
            f"{where}: split_sign writes consumption and redelivery itself; it cannot be "
            + (
                f"combined with role = {role!r}"
                if role != "consumption"
                else "given a mapped redelivery"
            ),
            hint="Remove role (or the redelivery field) from the source, or split_sign.",
        )
    if role != "consumption" and role in fields:
        if "consumption" in fields:
            raise MappingError(
                f"{where}.fields maps both consumption and {role} for role = {role!r}",
                column=role,
                sheet="usage",
                hint=f"Map the source's value once, as {role} (or as consumption).",
            )
        fields["consumption"] = fields.pop(role)
    return str(role), split


def _route_value(out: pd.DataFrame, role: str, *, split_sign: bool) -> pd.DataFrame:
    """Move a usage source's value (mapped as ``consumption``) to the column its role names.

    ``role`` redelivery / production: the value goes to that column and ``consumption`` becomes
    0 (null where the value is null: delivered without data). ``split_sign``: per interval, the
    positive part stays ``consumption`` and the negative part becomes ``redelivery`` as a
    positive number (the other one 0). ``raw_value`` keeps the value as reported (signed).
    """
    if role == "consumption" and not split_sign:
        return out
    v = out["consumption"].to_numpy(dtype=np.float64, na_value=np.nan)
    null = np.isnan(v)
    zero = np.where(null, np.nan, 0.0)
    cols: dict[str, Any] = {}
    if "raw_value" not in out.columns:
        cols["raw_value"] = v
    if split_sign:
        cols["consumption"] = np.where(v > 0, v, zero)
        cols["redelivery"] = np.where(v < 0, -v, zero)
    else:
        cols[role] = v
        cols["consumption"] = zero
    return out.assign(**cols)


def _no_data_rows(
    table: str,
    name: str,
    value_col: str,
    out: pd.DataFrame,
    mcodes: np.ndarray,
    cats: Sequence[Any],
    mask: np.ndarray,
    time_col: str,
) -> pd.DataFrame:
    """One ``no_data`` warning row per meter and local day counting its null values."""
    idx = np.flatnonzero(mask)
    when = out[time_col].iloc[idx].reset_index(drop=True)
    zones = out["timezone"].iloc[idx].astype(object).reset_index(drop=True)
    local = local_naive(when, zones).astype("datetime64[D]")
    codes = mcodes[idx]
    days = local.astype(np.int64)
    pairs, counts = np.unique(np.stack([codes, days]), axis=1, return_counts=True)
    records, keys, reasons = [], [], []
    for (code, day), k in zip(pairs.T, counts, strict=True):
        meter = str(cats[int(code)])
        date = str(np.datetime64(int(day), "D"))
        records.append({"meter_id": meter, "date": date, "source": name, "values": int(k)})
        keys.append(f"{meter}|{date}|{name}")
        reasons.append(
            f"{int(k)} {value_col} value(s) of meter {meter!r} ({name}) on {date} (local) are "
            'null: delivered without data ([validation] missing_values = "no_data"); '
            "counted, not an error"
        )
    return quarantine_records(
        records,
        table=table,
        stage="transform",
        rule="no_data",
        severity="warning",
        reasons=reasons,
        keys=keys,
    )


_SCALABLE = ("consumption", "value", "redelivery", "production", "cost")


def _scale_powers_of_ten(
    specs: Mapping[str, _Spec],
    frame: dict[str, Any],
    reasons: dict[str, np.ndarray],
    value_col: str,
    extract: Any,
) -> None:
    """``{path = .., power_of_ten = p}``: value x 10**p, p an integer or a per-record field.

    Vectorised (:func:`scaler_workbench._numeric.apply_power_of_ten`). For the main value column
    the reported number stays in ``raw_value`` and ``10**p`` goes into ``factor`` (lineage); a
    missing or non-integer multiplier sends the row to the quarantine.
    """
    for col, spec in specs.items():
        p10 = spec.power_of_ten
        if p10 is None:
            continue
        if col not in _SCALABLE or col not in frame:
            raise MappingError(
                f"{spec.where}.{col}: power_of_ten applies to numbers only",
                column=col,
                hint=f"Use it on one of {', '.join(_SCALABLE)}.",
            )
        values = np.asarray(frame[col], dtype=np.float64)
        n = len(values)
        if isinstance(p10, str):
            mult, bad = _floats(extract(p10), n)
            invalid = bad | np.isnan(mult) | (mult != np.round(mult)) | (np.abs(mult) > 30)
            reasons[f"{col}: power_of_ten {p10!r} is missing or not an integer"] = invalid
            exponent = np.where(invalid, 0, mult).astype(np.int64)
        else:
            exponent = np.full(n, int(p10), dtype=np.int64)
        scaled = apply_power_of_ten(values, exponent)
        if col == value_col:
            frame["raw_value"] = values
            frame["factor"] = apply_power_of_ten(np.ones(n), exponent)
        frame[col] = scaled


class _Reasons(dict[str, np.ndarray]):
    """Reason -> row mask; a mask without any True is not kept (no full-length memory held)."""

    def __setitem__(self, key: str, mask: np.ndarray) -> None:
        if np.any(mask):
            super().__setitem__(key, mask)


def _union(masks: Iterable[np.ndarray]) -> np.ndarray | None:
    """The element-wise or of ``masks`` (a new array); None when there is none."""
    out: np.ndarray | None = None
    for m in masks:
        if out is None:
            out = m.copy()
        else:
            out |= m
    return out


def _plus_duration(
    start: pd.DatetimeIndex, duration: pd.Timedelta
) -> tuple[pd.DatetimeIndex, bool]:
    """``start + duration`` in one pass over int64 ns (NaT stays NaT); pandas when it could
    overflow. The flag is True when every end is after its start (``duration`` > 0, computed
    here without overflow), so the caller need not check ``end > start`` row by row."""
    ns = utc_ns(start)
    step = int(duration.value)
    nat = np.iinfo(np.int64).min
    if not len(ns) or step < 0 or int(ns.max()) > np.iinfo(np.int64).max - step:
        return start + duration, False
    out = ns + step
    if int(ns.min()) == nat:
        out[ns == nat] = nat
    return utc_index(out), step > 0


def _zone_rows(zone_of_code: Sequence[Any], mcodes: np.ndarray, *, sort: bool) -> pd.Categorical:
    """Per-row zone categorical from one zone per meter code (the last entry is for code -1).

    Built from integer codes (no per-row object array); ``sort`` orders the categories.
    """
    zc, zu = pd.factorize(pd.Series(list(zone_of_code), dtype=object), use_na_sentinel=True)
    cats = pd.Index(zu, dtype=object)
    if sort and len(cats):
        order = np.argsort(np.asarray(cats, dtype=str), kind="stable")
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order))
        zc = np.where(zc >= 0, rank[np.maximum(zc, 0)], -1)
        cats = cats[order]
    lut = np.asarray(zc, dtype=np.int8 if len(cats) < 127 else np.int32)
    used = lut if not len(mcodes) or mcodes.min() < 0 else lut[:-1]  # -1 reads the last
    if len(mcodes) and len(used) and (used == used[0]).all():  # one zone for all: no gather
        rows = np.full(len(mcodes), used[0], dtype=lut.dtype)
    else:
        rows = lut[mcodes] if len(mcodes) else lut[:0]  # code -1 picks the last entry
    return pd.Categorical.from_codes(rows, categories=cats, validate=False)


def _first_value(records: Sequence[Any], path: str) -> Any:
    parts = _split_path(path)
    for r in records[:1000]:
        v = _walk(r, parts)
        if v is not None and v == v:
            return v
    return None


def _fast_series_columns(
    specs: Mapping[str, _Spec],
    records: Sequence[Any],
    vmaps: Mapping[str, Any],
    known_meters: Sequence[str],
    time_cols: Sequence[str],
) -> dict[str, Any]:
    """Columns pulled by the fast paths: meter_id (categorical), numbers (float64), ISO times
    (ns UTC, parsed mask). A column is left out when its fast path does not apply exactly."""
    n = len(records)
    cols: dict[str, _FastColumn] = {}
    for col, spec in specs.items():
        if not spec.simple or col in vmaps:
            continue
        path = spec.paths[0]
        get = _getter(path)
        if get is None:
            continue
        if col == "meter_id":
            if len(known_meters) and len({str(k) for k in known_meters}) == len(known_meters):
                cols[col] = _CodeColumn(get, n, known_meters)
        elif col in ("consumption", "value", "redelivery", "production", "cost"):
            cols[col] = _FloatColumn(get, n)
        elif (
            col in time_cols
            and spec.format in (None, "iso")
            and isinstance(_first_value(records, path), str)
        ):
            cols[col] = _IsoColumn(get, n)
    return _extract_fast(records, cols) if cols else {}


def _finish_fast_times(
    ns: np.ndarray,
    parsed: np.ndarray,
    records: Sequence[Any],
    path: str,
    *,
    tz: Any,
    order_keys: np.ndarray,
    nonexistent: str,
    add_days: int,
) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """Complete a fast ISO parse: rows it did not prove go through :func:`parse_timestamps`
    (as strings, as the whole column would have), then ``add_days`` in local wall time."""
    n = len(ns)
    bad = np.zeros(n, dtype=bool)
    every = bool(parsed.all())
    if not every:
        rest = np.flatnonzero(~parsed)
        parts = _split_path(path)
        values = [_walk(records[i], parts) for i in rest.tolist()]
        ts, b = parse_timestamps(
            values,
            tz=tz if isinstance(tz, str) else tz[rest],
            fmt="iso",
            order_keys=order_keys[rest],
            nonexistent=nonexistent,
            add_days=add_days,
        )
        ns[rest] = utc_ns(ts)
        bad[rest] = b
    if add_days and parsed.any():
        idx = None if every else np.flatnonzero(parsed)
        sub = utc_index(ns if idx is None else ns[idx])
        shifted = add_local_days(
            sub,
            tz if isinstance(tz, str) or idx is None else tz[idx],
            add_days,
            order_keys if idx is None else order_keys[idx],
        )
        if idx is None:
            ns = shifted.as_unit("ns").asi8
        else:
            ns[idx] = shifted.as_unit("ns").asi8
    return utc_index(ns), bad


def _auto_inclusive_end(
    frame: dict[str, Any], tz: Any, mcodes: np.ndarray, *, shared_inclusive: bool = False
) -> pd.DatetimeIndex:
    """``end_inclusive = "auto"``: each meter's consecutive bills say how its ends read.

    Per meter, a pair whose next start is the end plus one local day votes *inclusive*; a pair
    whose next start equals the end (a shared boundary) votes *exclusive*, or *inclusive* when
    ``shared_inclusive`` (``overlaps = "later_wins"``: the shared-boundary convention names
    the last billed day; the later bill takes the shared day). The majority (ties: exclusive)
    applies to every bill of the meter, its last bill included. A meter without such a pair
    (one bill, only gaps) follows the votes of the whole source, and inclusive when there are
    none (an end date is more often the last billed day).
    """
    start = utc_ns(frame["start"])
    end = utc_ns(frame["end"])
    n = len(end)
    if not n:
        return frame["end"]
    plus = utc_ns(add_local_days(frame["end"], tz, 1, mcodes))
    codes = np.asarray(mcodes, dtype=np.int64)
    order = np.lexsort((start, codes))
    s, e, p, m = start[order], end[order], plus[order], codes[order]
    same = (m[1:] == m[:-1]) & (m[1:] >= 0)
    shared = same & (e[:-1] == s[1:])
    incl = same & (p[:-1] == s[1:]) & ~shared
    if shared_inclusive:
        incl, shared = incl | shared, np.zeros_like(shared)
    ncat = int(codes.max()) + 2
    key = m[:-1] + 1  # missing meter (-1) -> slot 0
    votes_in = np.bincount(key[incl], minlength=ncat)
    votes_ex = np.bincount(key[shared], minlength=ncat)
    tot_in, tot_ex = int(votes_in.sum()), int(votes_ex.sum())
    source_inclusive = tot_in > tot_ex or tot_in + tot_ex == 0
    has = (votes_in + votes_ex) > 0
    meter_inclusive = np.where(has, votes_in > votes_ex, source_inclusive)
    add = meter_inclusive[codes + 1]
    if add.all():
        return utc_index(plus)
    if not add.any():
        return frame["end"]
    return utc_index(np.where(add, plus, end))


def _row_numbers(start: int, n: int) -> np.ndarray:
    return np.arange(start, start + n, dtype=np.int32 if start + n < 2**31 else np.int64)


def _with_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with an explicit ``_row`` (its positions when it has none)."""
    if "_row" in frame or not len(frame):
        return frame
    return frame.assign(_row=_row_numbers(0, len(frame)))


class _Window(Sequence[Any]):
    """``records[a:b]`` without copying it: a list slice touches every record's reference
    count (a cache miss per record dict on a long list); a window only reads what is asked."""

    __slots__ = ("_a", "_b", "_records")

    def __init__(self, records: Sequence[Any], a: int, b: int) -> None:
        self._records, self._a, self._b = records, a, b

    def __len__(self) -> int:
        return self._b - self._a

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, slice):
            r = range(self._a, self._b)[key]
            if r.step > 0:
                return self._records[r.start : r.stop : r.step]
            return [self._records[i] for i in r]
        i = range(self._a, self._b)[key]  # IndexError outside the window
        return self._records[i]

    def __iter__(self) -> Any:
        return map(self._records.__getitem__, range(self._a, self._b))


def build_tables(
    profile: Any,
    raw: Mapping[str, list[dict[str, Any]]],
    *,
    mapping: Mapping[str, Any] | None = None,
) -> Tables:
    """Map raw provider records to canonical Tables (in the provider's units).

    Parameters
    ----------
    profile : Profile
        Gives the default time zone and, unless ``mapping`` is given, ``[mapping]``.
    raw : mapping of str to list of dict
        Records per resource, as fetched (child records carry ``_parent``).
    mapping : dict, optional
        Overrides ``profile.section("mapping")`` (same shape; see docs/mapping.md).

    Returns
    -------
    Tables
        ``usage``/``readings`` keep ``meter_id``, ``unit``, ``timezone``, ``source`` and
        ``method`` as categoricals (large frames), plus ``source`` (the mapping source name) and
        ``_row`` (record index, lineage). Unmappable records are in ``quarantine``.

    Raises
    ------
    MappingError
        If the mapping is malformed or names a field that no record has.
    """
    m = resolve_mapping(profile, mapping)
    ent = _entities(profile, m, raw)
    out = Tables(assets=ent.assets, meters=ent.meters)
    quarantine = list(ent.quarantine)
    for table in ("usage", "readings"):
        frames = []
        for name, src in (m.get(table) or {}).items():
            f, q = _series_frame(
                table,
                name,
                src,
                raw,
                ent.meter_tz,
                ent.default_tz,
                primary_keys=ent.primary_keys,
                missing_values=ent.missing_values,
                overlaps=str(
                    {**(m.get("policy") or {}), **(src.get("policy") or {})}.get("overlaps", "")
                ),
            )
            frames.append(f)
            quarantine += q
        if sum(1 for f in frames if len(f)) > 1:  # positions no longer say the record
            frames = [_with_rows(f) for f in frames]
        frame = concat_frames(frames)
        if len(frame):
            setattr(out, table, frame)
    if quarantine:
        out.quarantine = pd.concat([out.quarantine, *quarantine], ignore_index=True)
        log.info("transform: %d record(s) quarantined", sum(len(q) for q in quarantine))
    return out


@dataclass
class _Entities:
    """Assets and meters of a mapping, and what the series sources need from them."""

    assets: pd.DataFrame
    meters: pd.DataFrame
    quarantine: list[pd.DataFrame]
    meter_tz: dict[str, str]
    default_tz: str
    primary_keys: dict[str, str]
    missing_values: str = "no_data"


def _resources_of(src: Mapping[str, Any]) -> set[str]:
    resource = src.get("resource")
    return {str(r) for r in resource} if isinstance(resource, list) else {str(resource)}


def _entities(
    profile: Any, m: Mapping[str, Any], raw: Mapping[str, list[dict[str, Any]]]
) -> _Entities:
    default_tz = getattr(profile, "timezone", "UTC") or "UTC"
    quarantine: list[pd.DataFrame] = []
    meters = empty_frame("meters")
    assets = empty_frame("assets")
    series_resources = {
        r
        for table in ("usage", "readings")
        for src in (m.get(table) or {}).values()
        if isinstance(src, Mapping)
        for r in _resources_of(src)
    }
    if "meters" in m:
        meters, q = _entity_frame(
            "meters",
            m["meters"],
            raw,
            key="meter_id",
            required=("meter_id", "asset_id"),
            derived=bool(_resources_of(m["meters"]) & series_resources),
        )
        quarantine += q
    if "assets" in m:
        asrc = dict(m["assets"])
        derive = asrc.get("derive_from")
        if derive:
            if derive not in m:
                raise MappingError(f"mapping.assets.derive_from = {derive!r} is not mapped")
            asrc["resource"] = m[derive]["resource"]
            asrc.setdefault("explode", m[derive].get("explode"))
        from_records = series_resources | (_resources_of(m["meters"]) if "meters" in m else set())
        assets, q = _entity_frame(
            "assets",
            asrc,
            raw,
            key="asset_id",
            required=("asset_id",),
            derived=bool(derive) or bool(_resources_of(asrc) & from_records),
        )
        quarantine += q
        if derive and len(assets) and assets["name"].isna().any():
            assets["name"] = assets["name"].fillna(assets["asset_id"])
    primary_keys = {
        str(k): str(v["primary_key"])
        for k, v in dict(
            profile.section("resources") if hasattr(profile, "section") else {}
        ).items()
        if isinstance(v, Mapping) and isinstance(v.get("primary_key"), str)
    }
    return _Entities(
        assets=assets,
        meters=meters,
        quarantine=quarantine,
        meter_tz=_meter_timezones(meters, assets, default_tz),
        default_tz=default_tz,
        primary_keys=primary_keys,
        missing_values=missing_value_policy(profile),
    )


# ---- the chunked source of a streamed pipeline --------------------------------------------------
class MeterChunks:
    """One usage source's records mapped chunk by chunk, each chunk holding whole meters.

    The per-chunk contract of the streamed pipeline (:mod:`scaler_workbench.pipeline`): the
    chunks together give what :func:`build_tables` gives for the source, row for row; ``_row``
    (each row's record position in the whole resource, lineage) is set wherever positions in
    the chunk would not say it (every chunk after the first, or rows set aside), so chunks
    stacked in order read like one frame. APIs page interval records meter by meter; when a
    meter's records turn up in two chunks, iteration stops early and :attr:`grouped` becomes
    False: the caller must then map the source whole.

    Parameters
    ----------
    profile : Profile
        Gives the default time zone, ``[resources]`` primary keys and, unless ``mapping`` is
        given, ``[mapping]``.
    raw : mapping of str to list of dict
        Records per resource, as fetched.
    source : str
        The name of a ``[mapping.usage]`` source whose ``resource`` is one resource name and
        whose fields map ``meter_id``.
    mapping : dict, optional
        Overrides ``profile.section("mapping")``.
    chunk_records : int
        Records per chunk [records] before the cut moves on to the end of its last meter's run.

    Attributes
    ----------
    entities : Tables
        ``assets`` and ``meters`` of the mapping (read once) and their ``quarantine`` (stage
        ``transform``); no usage.
    grouped : bool
        False once a meter was met again in a later chunk (set during iteration).

    Raises
    ------
    MappingError
        If the mapping is malformed, ``source`` is not a usage source of one resource, or a
        field is absent from every record.
    """

    def __init__(
        self,
        profile: Any,
        raw: Mapping[str, list[dict[str, Any]]],
        source: str,
        *,
        mapping: Mapping[str, Any] | None = None,
        chunk_records: int,
    ) -> None:
        m = resolve_mapping(profile, mapping)
        src = (m.get("usage") or {}).get(source)
        where = f"mapping.usage.{source}"
        if not isinstance(src, Mapping) or not isinstance(src.get("resource"), str):
            raise MappingError(f"{where}: a usage source reading one resource is needed")
        if "meter_id" not in (src.get("fields") or {}):
            raise MappingError(f"{where}.fields must map meter_id", column="meter_id")
        self._profile = profile
        self._raw = raw
        self._name = source
        self._src = src
        self._resource = str(src["resource"])
        self._chunk = max(1, int(chunk_records))
        self._ent = _entities(profile, m, raw)
        self.entities = Tables(
            assets=self._ent.assets,
            meters=self._ent.meters,
            quarantine=pd.concat(self._ent.quarantine, ignore_index=True)
            if self._ent.quarantine
            else empty_frame(QUARANTINE),
        )
        self.grouped = True
        self._meter_spec = _compile(
            {"meter_id": src["fields"]["meter_id"]},
            sep=str(src.get("key_separator", ":")),
            where=where,
        )

    def _meter_at(self, records: Sequence[Any], i: int) -> str:
        where = f"mapping.usage.{self._name}"
        try:
            v = _extract_fields(
                self._meter_spec, [records[i]], None, [], None, where, self._resource
            )["meter_id"]
        except MappingError:
            return "\x00missing"
        return str(v[0] if isinstance(v, list) else v)

    def _chunk_end(self, records: Sequence[Any], a: int) -> int:
        """``a + chunk_records``, moved on to the end of the run of its last meter."""
        n = len(records)
        b = min(n, a + self._chunk)
        if b >= n:
            return n
        last = self._meter_at(records, b - 1)
        lo, hi, step = b - 1, n, 1
        while lo + step < n:  # gallop, then bisect (a meter's records are contiguous)
            if self._meter_at(records, lo + step) != last:
                hi = lo + step
                break
            lo, step = lo + step, step * 2
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if self._meter_at(records, mid) == last else (lo, mid)
        return hi

    def __iter__(self) -> Iterator[Tables]:
        """Yield one Tables per chunk: ``usage`` (in the provider's units, with ``_row``; may be
        empty) and the chunk's ``quarantine`` (stage ``transform``); ``assets`` and ``meters``
        are :attr:`entities`' frames (shared, not copied)."""
        records = self._raw.get(self._resource) or []
        n = len(records)
        ent = self._ent
        chunk_raw = dict(self._raw)
        seen: set[str] = set()
        quarantined = 0
        a = 0
        while a < n:
            b = self._chunk_end(records, a)
            chunk_raw[self._resource] = cast("list[dict[str, Any]]", _Window(records, a, b))
            frame, q = _series_frame(
                "usage",
                self._name,
                self._src,
                chunk_raw,
                ent.meter_tz,
                ent.default_tz,
                primary_keys=ent.primary_keys,
                row_offset=a,
                missing_values=ent.missing_values,
            )
            log.debug("transform: records %d..%d of %d (%s)", a, b, n, self._resource)
            a = b
            if len(frame):
                # the chunk's meters: its categories (built from the ids its records carry)
                present = {str(c) for c in frame["meter_id"].array.categories}
                if present & seen:
                    log.info(
                        "transform: %s records are not grouped by meter: map them whole",
                        self._resource,
                    )
                    self.grouped = False
                    return
                seen |= present
            quarantined += sum(len(x) for x in q)
            yield Tables(
                assets=ent.assets,
                meters=ent.meters,
                usage=frame if len(frame) else empty_frame("usage"),
                quarantine=pd.concat(q, ignore_index=True) if q else empty_frame(QUARANTINE),
            )
        if quarantined:
            log.info("transform: %d record(s) quarantined", quarantined)


# deprecation shim, removed next release: ``transform.run_pipeline`` (and ``STREAM_RECORDS``)
# moved to :mod:`scaler_workbench.pipeline`. The one lazy import of a later module in transform:
# a static one would make transform import every stage again.
_MOVED_TO_PIPELINE = ("run_pipeline", "STREAM_RECORDS")


def __getattr__(name: str) -> Any:
    if name in _MOVED_TO_PIPELINE:
        import warnings

        from scaler_workbench import pipeline

        warnings.warn(
            f"scaler_workbench.transform.{name} moved to scaler_workbench.pipeline.{name}; "
            "the old name is removed in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(pipeline, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
