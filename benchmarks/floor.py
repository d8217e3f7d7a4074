"""The floor: a hand-written, vectorised pandas/numpy version of the benchmark's computation.

It shares no code with the package (no ``scaler_workbench`` import, by design and by test), and
is as fast as I could honestly make it while staying *general*: it does not assume a regular
half-hourly grid, sorted input, a single offset or well-formed records; it only takes fast paths
when a cheap check proves they apply, and falls back to slower general code otherwise.

Computation (the same as the package path): interval records (``interval_start`` ISO 8601 with
offset, ``value``, ``_parent.meter_id``) -> UTC instants -> values in kWh (per-meter factor from
the meter's unit label; gas m³ at the stated calorific value) -> duplicates resolved per
(meter, instant) by a conflict policy -> sums per meter and *local* calendar month of the site ->
validation (record-level and period-level rules, counted) -> a Scaler-style CSV.

How it stays fast
-----------------
* Records are processed in chunks of 65,536, so every temporary is small and glibc reuses it;
  no array of the full size is ever made (first-touch memory costs 2-3 s per GiB here).
* Fields are pulled with ``map(itemgetter)`` straight into numpy (``np.fromiter``) or a
  fixed-width byte array (``np.array(strs, "S26")``), one C-level pass each.
* Timestamps are parsed arithmetically on the byte matrix: a date lookup table gives days since
  the epoch (and rejects impossible dates), plus hours, minutes, seconds, minus the offset.
  Anything not in the fixed ``YYYY-MM-DDTHH:MM:SS(Z|±HH:MM)`` shape goes to ``pandas.to_datetime``.
* Duplicates are found by a streaming pass over (meter, instant) keys when the stream is sorted
  (checked per chunk, carrying the last record across chunk borders); an unsorted stream switches
  to one global stable sort.
* Local months come from a table of local month starts in UTC (``searchsorted``), and the sums
  from ``np.bincount`` into a small (meters x months) accumulator.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

__all__ = ["FLOOR_STAGES", "FloorResult", "floor_pipeline"]

#: Stage names, in order; they line up with the package's stages in the report.
FLOOR_STAGES = ("canonical", "units", "duplicates", "aggregate", "validate", "export")

#: The floor's own unit table: provider label -> (canonical unit, factor); gas set at run time.
_ENERGY = {"kwh": 1.0, "wh": 1e-3, "mwh": 1e3, "gwh": 1e6, "kj": 1 / 3600, "mj": 1 / 3.6}
_VOLUME = ("m3", "m³", "m^3", "cubic meter", "cubic metre")

_CHUNK = 65536
_EPOCH_YEAR = 1900
_YEARS = 300  # date table covers 1900..2199; anything else goes the general way
_INVALID = -(2**40)
_S = "S26"  # one byte longer than the longest fast-path string, to see longer ones


@dataclass
class FloorResult:
    """What the floor computed.

    Attributes
    ----------
    monthly : pandas.DataFrame
        ``meter_id, month (YYYY-MM local), start, end (UTC), consumption [kWh], unit,
        n_intervals``, sorted by meter and month.
    stages : dict of str to float
        Seconds per stage (see :data:`FLOOR_STAGES`).
    counts : dict of str to int
        records, duplicates dropped, conflicting duplicates, rule violations.
    """

    monthly: pd.DataFrame
    stages: dict[str, float]
    counts: dict[str, int] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)


def _date_table() -> np.ndarray:
    """days since 1970-01-01 for key (year-1900)*372 + (month-1)*31 + (day-1); -2**40 invalid."""
    table = np.full(_YEARS * 372, _INVALID, dtype=np.int64)
    years = np.arange(_EPOCH_YEAR, _EPOCH_YEAR + _YEARS)
    for month in range(1, 13):
        first = (years - 1970) * 12 + (month - 1)
        start = first.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)
        nxt = (first + 1).astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)
        ndays = nxt - start
        for day in range(1, 32):
            ok = day <= ndays
            key = (years[ok] - _EPOCH_YEAR) * 372 + (month - 1) * 31 + (day - 1)
            table[key] = start[ok] + (day - 1)
    return table


_DAYS = _date_table()


def _pair_table() -> np.ndarray:
    """Two ASCII digits read as one little-endian uint16 -> 0..99; anything else -> 255."""
    table = np.full(65536, 255, dtype=np.uint8)
    for tens in range(10):
        for ones in range(10):
            table[(48 + tens) | ((48 + ones) << 8)] = tens * 10 + ones
    return table


_PAIRS = _pair_table()
_PAIR_FIELDS = {
    "y1": 0,
    "y2": 2,
    "mo": 5,
    "dd": 8,
    "hh": 11,
    "mi": 14,
    "ss": 17,
    "oh": 20,
    "om": 23,
}
_BYTE_FIELDS = {"s4": 4, "s7": 7, "s10": 10, "s13": 13, "s16": 16, "tz": 19, "b20": 20}
_BYTE_FIELDS |= {"b22": 22, "b25": 25}
#: A view of one ``S26`` timestamp: digit pairs as uint16, separators as bytes.
_LAYOUT = np.dtype(
    {
        "names": [*_PAIR_FIELDS, *_BYTE_FIELDS],
        "formats": ["<u2"] * len(_PAIR_FIELDS) + ["u1"] * len(_BYTE_FIELDS),
        "offsets": [*_PAIR_FIELDS.values(), *_BYTE_FIELDS.values()],
        "itemsize": 26,
    }
)


def _parse_fast(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Parse ``YYYY-MM-DDTHH:MM:SS(Z|±HH:MM)`` byte strings (``S26``) to epoch seconds [s].

    Every two-digit field is one lookup in a 65,536-entry table (255 marks a non-digit), the
    date one lookup in the date table (which also rejects 2023-02-30). Returns the seconds and
    a mask of rows in that exact shape; the other rows hold garbage.
    """
    v = raw.view(_LAYOUT)
    y1, y2, mo, dd = _PAIRS[v["y1"]], _PAIRS[v["y2"]], _PAIRS[v["mo"]], _PAIRS[v["dd"]]
    hh, mi, ss = _PAIRS[v["hh"]], _PAIRS[v["mi"]], _PAIRS[v["ss"]]
    key = (y1.astype(np.int32) * 100 + y2 - _EPOCH_YEAR) * 372 + mo.astype(np.int32) * 31 + dd
    key -= 32
    ok = ((y1 | y2 | mo | dd | hh | mi | ss) < 128) & (key >= 0) & (key < len(_DAYS))
    days = _DAYS[np.where(ok, key, 0)]
    tz = v["tz"]
    zulu = (tz == 90) & (v["b20"] == 0)
    oh, om = _PAIRS[v["oh"]], _PAIRS[v["om"]]
    sign = (tz == 43).astype(np.int64) - (tz == 45)
    with_offset = (sign != 0) & (v["b22"] == 58) & (v["b25"] == 0) & ((oh | om) < 128)
    ok &= zulu | with_offset
    ok &= (v["s4"] == 45) & (v["s7"] == 45) & (v["s10"] == 84) & (v["s13"] == 58)
    ok &= (v["s16"] == 58) & (mo >= 1) & (mo <= 12) & (hh <= 23) & (mi <= 59) & (ss <= 59)
    ok &= days > _INVALID
    secs = days * 86400 + (hh.astype(np.int64) * 3600 + mi.astype(np.int32) * 60 + ss)
    secs -= sign * ((oh.astype(np.int64) * 60 + om) * 60)
    return secs, ok


def _parse_general(values: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Anything else: pandas' ISO 8601 parser, per string; unparsable or naive -> invalid."""
    out = np.zeros(len(values), dtype=np.int64)
    ok = np.zeros(len(values), dtype=bool)
    for i, v in enumerate(values):
        try:
            ts = pd.Timestamp(v)
        except (TypeError, ValueError):
            continue
        if ts is pd.NaT or ts.tzinfo is None:
            continue
        out[i] = ts.value // 1_000_000_000
        ok[i] = True
    return out, ok


def _starts(chunk: Sequence[dict[str, Any]], get: Any) -> tuple[np.ndarray, np.ndarray]:
    try:
        raw = np.fromiter(map(get, chunk), dtype=_S, count=len(chunk))
    except (KeyError, UnicodeEncodeError, TypeError, ValueError):
        return _parse_general([r.get("interval_start") for r in chunk])
    secs, ok = _parse_fast(raw)
    if not ok.all():
        bad = np.flatnonzero(~ok)
        s2, ok2 = _parse_general([chunk[i].get("interval_start") for i in bad.tolist()])
        secs[bad] = s2
        ok[bad] = ok2
    return secs, ok


def _values(chunk: Sequence[dict[str, Any]], get: Any) -> np.ndarray:
    try:
        return np.fromiter(map(get, chunk), dtype=np.float64, count=len(chunk))
    except (KeyError, TypeError, ValueError):
        out = pd.to_numeric(
            pd.Series([r.get("value") for r in chunk], dtype=object), errors="coerce"
        )
        return out.to_numpy(dtype=np.float64, na_value=np.nan)


def _meter_codes(
    chunk: Sequence[dict[str, Any]], index: dict[str, int], get_parent: Any, get_id: Any
) -> np.ndarray:
    try:
        return np.fromiter(
            map(index.__getitem__, map(get_id, map(get_parent, chunk))),
            dtype=np.int64,
            count=len(chunk),
        )
    except (KeyError, TypeError):
        out = np.empty(len(chunk), dtype=np.int64)
        for i, r in enumerate(chunk):
            parent = r.get("_parent")
            mid = parent.get("meter_id") if isinstance(parent, dict) else None
            out[i] = index.get(mid, -1) if isinstance(mid, str) else -1
        return out


def _unit_factor(label: Any, gas_kwh_per_m3: float) -> float:
    text = str(label).strip().lower()
    if text in _ENERGY:
        return _ENERGY[text]
    if text in _VOLUME:
        return gas_kwh_per_m3
    return math.nan


def _month_starts(tz: str, first_year: int, last_year: int) -> tuple[np.ndarray, np.ndarray]:
    """UTC epoch seconds of each local month start, and its months-since-1970 ordinal."""
    zone = ZoneInfo(tz)
    ords, secs = [], []
    for year in range(first_year, last_year + 1):
        for month in range(1, 13):
            ts = pd.Timestamp(year=year, month=month, day=1, tz=zone)
            ords.append((year - 1970) * 12 + month - 1)
            secs.append(ts.value // 1_000_000_000)
    return np.asarray(secs, dtype=np.int64), np.asarray(ords, dtype=np.int64)


class _Accumulator:
    """(meter x month) sums and counts, grown on demand."""

    def __init__(self, n_meters: int) -> None:
        self.n = n_meters
        self.lo = 0
        self.sums = np.zeros((n_meters, 0))
        self.counts = np.zeros((n_meters, 0), dtype=np.int64)

    def add(self, codes: np.ndarray, months: np.ndarray, values: np.ndarray) -> None:
        if not len(codes):
            return
        lo, hi = int(months.min()), int(months.max())
        if self.sums.shape[1] == 0:
            self.lo = lo
            self.sums = np.zeros((self.n, hi - lo + 1))
            self.counts = np.zeros((self.n, hi - lo + 1), dtype=np.int64)
        elif lo < self.lo or hi >= self.lo + self.sums.shape[1]:
            new_lo = min(lo, self.lo)
            new_hi = max(hi, self.lo + self.sums.shape[1] - 1)
            sums = np.zeros((self.n, new_hi - new_lo + 1))
            counts = np.zeros_like(sums, dtype=np.int64)
            a = self.lo - new_lo
            sums[:, a : a + self.sums.shape[1]] = self.sums
            counts[:, a : a + self.sums.shape[1]] = self.counts
            self.lo, self.sums, self.counts = new_lo, sums, counts
        span = self.sums.shape[1]
        flat = codes * span + (months - self.lo)
        self.sums += np.bincount(flat, weights=values, minlength=self.n * span).reshape(self.n, -1)
        self.counts += np.bincount(flat, minlength=self.n * span).reshape(self.n, -1)


def floor_pipeline(
    raw: dict[str, list[dict[str, Any]]],
    *,
    calorific_value: float,
    conflict: str = "last",
    timezone: str | None = None,
    out_dir: str | Path | None = None,
) -> FloorResult:
    """Run the floor over ``raw`` (``meters`` and ``intervals`` records, plus ``sites``).

    Parameters
    ----------
    raw : dict
        ``meters`` records (``id``, ``unit``), ``intervals`` records (``interval_start``,
        ``value``, ``_parent.meter_id``), optional ``sites`` (``timezone``).
    calorific_value : float
        Of the gas [MJ/m³]; m³ -> kWh by x 1.02264 x CV / 3.6.
    conflict : {"last", "first"}
        Which of two records for the same (meter, instant) is kept.
    timezone : str, optional
        Local zone for months; default the first site's, else UTC.
    out_dir : path, optional
        Where to write ``usage.csv``; nothing is written when omitted.
    """
    if conflict not in ("last", "first"):
        raise ValueError("conflict must be 'last' or 'first'")
    stages = dict.fromkeys(FLOOR_STAGES, 0.0)
    clock = time.perf_counter
    t0 = clock()
    meters = raw.get("meters", [])
    sites = raw.get("sites", [])
    tz = timezone or (sites[0].get("timezone") if sites else None) or "UTC"
    ids = [str(m["id"]) for m in meters]
    index = {mid: i for i, mid in enumerate(ids)}
    gas = 1.02264 * calorific_value / 3.6
    factors = np.array([_unit_factor(m.get("unit"), gas) for m in meters] + [math.nan])
    records = raw.get("intervals", [])
    n = len(records)
    get_start, get_value = itemgetter("interval_start"), itemgetter("value")
    get_parent, get_id = itemgetter("_parent"), itemgetter("meter_id")
    acc = _Accumulator(len(ids))
    bounds = np.zeros(0, dtype=np.int64)
    ords = np.zeros(0, dtype=np.int64)
    counts = dict.fromkeys(
        ("records", "bad_timestamp", "unknown_meter", "bad_value", "unknown_unit"), 0
    )
    counts.update(duplicates=0, conflicts=0, sorted=1)
    counts["records"] = n
    carry: tuple[np.ndarray, ...] | None = None  # (key, value, code, secs) of one held record
    unsorted: list[tuple[np.ndarray, ...]] = []
    stages["canonical"] += clock() - t0

    def months_of(secs: np.ndarray) -> np.ndarray:
        nonlocal bounds, ords
        lo, hi = int(secs.min()), int(secs.max())
        if not len(bounds) or lo < bounds[0] or hi >= bounds[-1]:
            y0 = int(np.datetime64(lo, "s").astype("datetime64[Y]").astype(int)) + 1970 - 1
            y1 = int(np.datetime64(hi, "s").astype("datetime64[Y]").astype(int)) + 1970 + 1
            if len(bounds):
                y0 = min(y0, int(ords[0]) // 12 + 1970)
                y1 = max(y1, int(ords[-1]) // 12 + 1970)
            bounds, ords = _month_starts(tz, y0, y1)
        return ords[np.searchsorted(bounds, secs, side="right") - 1]

    for lo in range(0, n, _CHUNK):
        t = clock()
        chunk = records[lo : lo + _CHUNK]
        secs, ok_ts = _starts(chunk, get_start)
        vals = _values(chunk, get_value)
        codes = _meter_codes(chunk, index, get_parent, get_id)
        t1 = clock()
        stages["canonical"] += t1 - t
        # units: one gather of the per-meter factor
        ok_meter = codes >= 0
        codes[~ok_meter] = len(ids)
        vals *= factors[codes]
        counts["unknown_unit"] += int(np.isnan(factors[codes]).sum()) - int((~ok_meter).sum())
        t2 = clock()
        stages["units"] += t2 - t1
        # record-level rules (the floor's validation of records, counted and dropped)
        ok_val = np.isfinite(vals) & (vals >= 0)
        good = ok_ts & ok_meter & ok_val
        counts["bad_timestamp"] += int((~ok_ts).sum())
        counts["unknown_meter"] += int((~ok_meter).sum())
        counts["bad_value"] += int((ok_ts & ok_meter & ~ok_val).sum())
        if not good.all():
            secs, vals, codes = secs[good], vals[good], codes[good]
        t3 = clock()
        stages["validate"] += t3 - t2
        # duplicates: (meter, instant) keys; streaming when sorted
        key = (codes << 33) + (secs + 2**32)
        if carry is not None:
            key = np.concatenate([carry[0], key])
            vals = np.concatenate([carry[1], vals])
            codes = np.concatenate([carry[2], codes])
            secs = np.concatenate([carry[3], secs])
        if unsorted or (len(key) > 1 and not (key[1:] >= key[:-1]).all()):
            counts["sorted"] = 0
            unsorted.append((key, vals, codes, secs))
            carry = None
            stages["duplicates"] += clock() - t3
            continue
        same = key[1:] == key[:-1]
        if conflict == "last":
            keep = np.append(~same, True)
        else:
            keep = np.insert(~same, 0, True)
            if carry is not None and len(carry) > 4:
                keep[0] = bool(carry[4][0])
        if same.any():
            d = np.flatnonzero(same)
            counts["duplicates"] += len(d)
            counts["conflicts"] += int((vals[d] != vals[d + 1]).sum())
        flag = keep[-1:].copy()
        carry = (key[-1:], vals[-1:], codes[-1:], secs[-1:], flag)
        keep[-1] = False
        t4 = clock()
        stages["duplicates"] += t4 - t3
        sel = keep if not keep.all() else slice(None)
        acc.add(codes[sel], months_of(secs[sel]), vals[sel])
        stages["aggregate"] += clock() - t4

    t = clock()
    if unsorted:
        key = np.concatenate([u[0] for u in unsorted])
        vals = np.concatenate([u[1] for u in unsorted])
        codes = np.concatenate([u[2] for u in unsorted])
        secs = np.concatenate([u[3] for u in unsorted])
        order = np.argsort(key, kind="stable")
        key, vals, codes, secs = key[order], vals[order], codes[order], secs[order]
        same = key[1:] == key[:-1]
        keep = np.append(~same, True) if conflict == "last" else np.insert(~same, 0, True)
        d = np.flatnonzero(same)
        counts["duplicates"] += len(d)
        counts["conflicts"] += int((vals[d] != vals[d + 1]).sum())
        carry = None
        t4 = clock()
        stages["duplicates"] += t4 - t
        acc.add(codes[keep], months_of(secs[keep]), vals[keep])
        stages["aggregate"] += clock() - t4
    elif carry is not None and bool(carry[4][0]):
        acc.add(carry[2], months_of(carry[3]), carry[1])
        stages["aggregate"] += clock() - t

    # monthly rows
    t = clock()
    has = acc.counts > 0
    mi, mo = np.nonzero(has)
    month_ord = acc.lo + mo
    zone = ZoneInfo(tz)
    first = pd.PeriodIndex.from_ordinals(month_ord, freq="M") if len(mo) else None
    if first is not None:
        starts = first.to_timestamp().tz_localize(zone).tz_convert("UTC")
        ends = (first + 1).to_timestamp().tz_localize(zone).tz_convert("UTC")
        month_text = first.strftime("%Y-%m")
    else:
        starts = ends = pd.DatetimeIndex([], tz="UTC")
        month_text = pd.Index([], dtype=object)
    monthly = pd.DataFrame(
        {
            "meter_id": np.asarray(ids, dtype=object)[mi],
            "month": np.asarray(month_text, dtype=object),
            "start": starts,
            "end": ends,
            "consumption": acc.sums[has],
            "unit": "kWh",
            "n_intervals": acc.counts[has],
            "timezone": tz,
        }
    )
    stages["aggregate"] += clock() - t

    # period-level rules: required, end > start, non-negative, unit known, key unique, coverage
    t = clock()
    hours = (monthly["end"] - monthly["start"]).dt.total_seconds().to_numpy() / 3600.0
    coverage = monthly["n_intervals"].to_numpy() / np.maximum(hours * 2.0, 1.0)
    checks = {
        "not_null": int(
            monthly[["meter_id", "start", "end", "consumption"]].isna().any(axis=1).sum()
        ),
        "end_after_start": int((hours <= 0).sum()),
        "non_negative": int((monthly["consumption"].to_numpy() < 0).sum()),
        "unit_known": int((~monthly["unit"].isin(["kWh", "m³", "kg"])).sum()),
        "key_unique": int(monthly.duplicated(["meter_id", "start", "end"]).sum()),
        "coverage_warning": int((coverage < 0.9).sum()),
    }
    counts.update({f"rule_{k}": v for k, v in checks.items()})
    stages["validate"] += clock() - t

    files: dict[str, Path] = {}
    t = clock()
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        local = monthly["start"].dt.tz_convert(zone)
        local_end = monthly["end"].dt.tz_convert(zone)
        export = pd.DataFrame(
            {
                "meter_external_id": monthly["meter_id"],
                "start_date": local.dt.strftime("%Y-%m-%d"),
                "end_date": local_end.dt.strftime("%Y-%m-%d"),
                "consumption": monthly["consumption"],
                "unit": monthly["unit"],
            }
        )
        path = out / "usage.csv"
        export.to_csv(path, index=False)
        files["usage"] = path
    stages["export"] += clock() - t
    return FloorResult(monthly=monthly, stages=stages, counts=counts, files=files)
