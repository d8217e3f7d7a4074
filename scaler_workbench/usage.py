"""The usage engine: conflicts, registers -> consumption, local-time calendarization, reports.

:func:`process_usage` takes Tables from :func:`~scaler_workbench.units.normalise_tables`
(canonical units) and, per mapping source (``usage.source`` column):

1. **Conflict policy** (``[mapping.policy]``): rows with the same (meter, start, end) are
   duplicates; one is kept (an actual beats an estimate when ``prefer_actual``, then the highest
   ``revision`` field, then the later record) and every other is set aside into
   ``Tables.quarantine`` (stage ``usage``, rule ``duplicate``, severity ``error``). Overlapping
   periods are flagged (severity ``warning``; ``overlaps = "quarantine"`` sets aside the later
   row when the overlap exceeds ``overlap_tolerance_days``, default 1; ``overlaps =
   "later_wins"`` ends a bill where the next one starts when they share up to that many days:
   the shared-boundary convention). A bill source's own ``policy`` table overrides these.
2. **Registers** (``readings`` sources with ``to_consumption``): differenced per meter in time
   order; a drop is a ``rollover`` (wrap at 10**digits, digits from the meter's
   ``register_digits`` or inferred from the largest reading), a ``reset`` (back near zero) or an
   ``exchange`` (anything else). Rollovers give the wrapped consumption; resets and exchanges
   give none (a gap). All are written to ``readings.flag`` and reported in the quarantine
   (severity ``warning``); no negative consumption is ever emitted.
3. **Calendarization** (:func:`calendarize`): sources with ``aggregate`` (intervals),
   ``prorate`` (bills) or ``to_consumption`` (registers) set to ``day`` or ``month`` become
   periods of the site's LOCAL calendar: rows crossing a local boundary are split by local
   wall-clock time (= by days for bills on local midnights; the last piece takes the remainder so
   the total is preserved), then summed per (meter, source, period) with ``n_intervals`` and
   ``days_with_data``. Missing intervals stay missing (never zero). Periods come out as UTC
   instants of local midnights with the ``timezone`` column set.

4. **Cost from another source** (``provides = ["cost"]`` on a source): its calendarized
   periods give only cost, attached to the rows of the meter's other source(s) for the same
   local period; an unmatched cost period is set aside (rule ``merge_unmatched``).

Lineage of an aggregated row: ``raw_value`` = sum of the raw values, ``factor`` = the unit factor
(NaN if rows with different factors were summed), ``raw_unit`` = the label of the first row,
``source_id`` = ``first..last`` provider ids (or ``<source>[i..j]`` record positions when no id
is mapped), ``n_intervals`` = rows summed, and ``method`` = ``sum-of-intervals``,
``prorated-by-days`` or ``register-difference, ...``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from scaler_workbench._secrets import get_logger
from scaler_workbench._time import NAT_NS, NS_PER_DAY, add_local_days, local_ns, utc_index
from scaler_workbench._zones import check_stated_zones
from scaler_workbench.coverage import completeness_frames, interval_completeness, month_labels
from scaler_workbench.exceptions import MappingError, UsageError
from scaler_workbench.schema import (
    COMPLETENESS,
    HOLES,
    QUARANTINE,
    READINGS,
    USAGE,
    Tables,
    coerce_frame,
    concat_frames,
    empty_frame,
    quarantine_rows,
)
from scaler_workbench.transform import resolve_mapping

__all__ = [
    "POLICY_DEFAULTS",
    "calendarize",
    "combine_periods",
    "inclusive_to_exclusive",
    "period_option",
    "period_report",
    "process_usage",
    "readings_to_consumption",
    "resolve_conflicts",
]

log = get_logger(__name__)


#: Conflict policy defaults (``[mapping.policy]`` overrides any of them).
POLICY_DEFAULTS: dict[str, Any] = {
    "duplicates": "latest",  # latest | first | error
    "prefer_actual": True,  # an actual value beats an estimate for the same key
    "overlaps": "flag",  # flag | quarantine
    "overlap_tolerance_days": 1,
    "report_gaps": True,
}

_FREQS = ("day", "month")


# ---- small helpers -----------------------------------------------------------------------------
def _cat(series: pd.Series) -> pd.Categorical:
    if isinstance(series.dtype, pd.CategoricalDtype):
        return series.array
    return pd.Categorical(series.astype(object))


def _ns(series: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    idx = pd.DatetimeIndex(series)
    if idx.tz is None:
        raise UsageError("timestamps must be tz-aware UTC", hint="Run build_tables first.")
    if str(idx.tz) != "UTC":
        idx = idx.tz_convert("UTC")
    return idx.asi8 if idx.unit == "ns" else idx.as_unit("ns").asi8  # a view: no copy


def _floats(frame: pd.DataFrame, col: str) -> np.ndarray | None:
    if col not in frame.columns:
        return None
    return frame[col].to_numpy(dtype=np.float64, na_value=np.nan)


def _chunk_reader(frame: pd.DataFrame, col: str) -> Any:
    """``read(a, b)`` -> float64 values of rows ``a:b`` of ``col`` (None if absent).

    A categorical column (the per-meter ``factor`` of :func:`~scaler_workbench.units.
    normalise_tables`) is gathered per chunk from its categories, never as a whole column.
    """
    if col not in frame.columns:
        return None
    series = frame[col]
    if isinstance(series.dtype, pd.CategoricalDtype):
        cats = np.r_[np.asarray(series.cat.categories, dtype=np.float64), np.nan]
        codes = np.asarray(series.array.codes)  # -1 (missing) reads the NaN at the end
        return lambda a, b: cats[codes[a:b]]
    values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    return lambda a, b: values[a:b]


def _first_last(keys: np.ndarray, nkeys: int) -> tuple[np.ndarray, np.ndarray]:
    """Index of the first and last row of each key (repeated fancy assignment: last wins)."""
    n = len(keys)
    first = np.full(nkeys, -1, dtype=np.int64)
    last = np.full(nkeys, -1, dtype=np.int64)
    rows = np.arange(n, dtype=np.int64)
    last[keys] = rows
    first[keys[::-1]] = rows[::-1]
    return first, last


_BUCKET_NS = 15 * 60 * 10**9


def _offset_table(lo: int, hi: int, tz: str) -> tuple[int, np.ndarray] | None:
    """UTC offset [ns] of ``tz`` per 15-minute UTC bucket from ``lo`` to ``hi`` [ns UTC].

    Returns ``(first bucket start, offsets)``, or None when a transition falls strictly inside
    a bucket (historic odd offsets) or the span is huge: then ask pandas per instant.
    """
    if lo == NAT_NS or hi < lo:
        return None
    # whole UTC years, cached: chunks of one source share the table (same answer per instant)
    y0 = int(np.datetime64(lo, "ns").astype("datetime64[Y]").astype(np.int64))
    y1 = int(np.datetime64(hi, "ns").astype("datetime64[Y]").astype(np.int64))
    if y1 - y0 <= 2:
        return _year_offsets(y0, y1, tz)
    return _offset_table_span(lo, hi, tz)


@lru_cache(maxsize=64)
def _year_offsets(y0: int, y1: int, tz: str) -> tuple[int, np.ndarray] | None:
    """:func:`_offset_table` over UTC years ``1970 + y0`` to ``1970 + y1`` (read-only)."""
    lo = int(np.datetime64(y0, "Y").astype("datetime64[ns]").astype(np.int64))
    hi = int(np.datetime64(y1 + 1, "Y").astype("datetime64[ns]").astype(np.int64)) - 1
    out = _offset_table_span(lo, hi, tz)
    if out is not None:
        out[1].setflags(write=False)
    return out


def _offset_table_span(lo: int, hi: int, tz: str) -> tuple[int, np.ndarray] | None:
    base = lo - lo % _BUCKET_NS
    nb = (hi - base) // _BUCKET_NS + 1
    if nb > 2_000_000:
        return None
    edges = base + np.arange(nb + 1, dtype=np.int64) * _BUCKET_NS
    off = _wall_pandas(edges, tz) - edges
    last = edges[1:] - 1
    if not (off[:-1] == _wall_pandas(last, tz) - last).all():
        return None
    return base, off[:-1]


def _wall_pandas(ns: np.ndarray, tz: str) -> np.ndarray:
    wall = local_ns(ns, tz)
    return wall.copy() if wall is ns else wall  # a new array, as the offset-table path gives


def _wall(ns: np.ndarray, tz: str, table: tuple[int, np.ndarray] | None = None) -> np.ndarray:
    """Local wall-clock time as naive ns since epoch (an offset lookup per 15-minute bucket)."""
    if not len(ns):
        return ns.copy()
    if table is None:
        table = _offset_table(int(ns.min()), int(ns.max()), tz)
        if table is None:
            return _wall_pandas(ns, tz)
    base, off = table
    return ns + off[(ns - base) // _BUCKET_NS]


def _period_index(wall: np.ndarray, freq: str) -> np.ndarray:
    if freq == "day":
        return np.floor_divide(wall, NS_PER_DAY)
    return wall.astype("datetime64[ns]").astype("datetime64[M]").astype(np.int64)


def _period_wall_start(p: np.ndarray, freq: str) -> np.ndarray:
    if freq == "day":
        return p * NS_PER_DAY
    return p.astype("datetime64[M]").astype("datetime64[ns]").astype(np.int64)


def _localise_periods(pwall: np.ndarray, tz: str) -> np.ndarray:
    """UTC ns of local period starts (few unique values); midnight gaps shift forward."""
    uniq, inv = np.unique(pwall, return_inverse=True)
    naive = pd.DatetimeIndex(uniq.astype("datetime64[ns]"))
    loc = naive.tz_localize(
        tz, ambiguous=np.ones(len(uniq), dtype=bool), nonexistent="shift_forward"
    )
    return loc.tz_convert("UTC").asi8[inv]


def inclusive_to_exclusive(end: pd.Series, timezone: str | pd.Series) -> pd.Series:
    """Inclusive end dates (the last billed day) -> exclusive ends: + 1 local calendar day.

    Parameters
    ----------
    end : pandas.Series
        tz-aware local midnights of the last day included.
    timezone : str or pandas.Series
        The site's IANA zone, or one per row.

    Returns
    -------
    pandas.Series
        UTC instants of the next local midnight (a DST change keeps it midnight), same index.

    Raises
    ------
    MappingError
        If a zone is unknown.
    """
    tz: Any = timezone if isinstance(timezone, str) else np.asarray(timezone, dtype=object)
    out = add_local_days(pd.DatetimeIndex(end), tz, 1, None)
    return pd.Series(out, index=end.index, name=end.name)


# ---- calendarization --------------------------------------------------------------------------
_SUM_COLS = ("consumption", "redelivery", "production", "cost", "raw_value")


def calendarize(usage: pd.DataFrame, *, freq: str = "month") -> pd.DataFrame:
    """Split rows at local period boundaries and sum them per (meter, source, period).

    Parameters
    ----------
    usage : pandas.DataFrame
        ``meter_id, start, end`` (UTC), ``consumption`` and optionally ``redelivery,
        production, cost, currency, estimated, timezone, source, method, raw_value, raw_unit,
        factor, source_id, _row``. ``timezone`` (site zone) defaults to UTC.
    freq : {"month", "day"}
        Local calendar period.

    Returns
    -------
    pandas.DataFrame
        One row per (meter, source, local period) with data: ``start``/``end`` are UTC instants of
        local midnights; ``n_intervals`` counts the rows summed and ``days_with_data`` the local
        days with any data. A row crossing a boundary is split by local wall-clock time (by
        days for midnight-aligned bills); its last piece takes the remainder, so totals are
        preserved.

    Raises
    ------
    UsageError
        For an unknown ``freq``.
    """
    return _calendarize(usage, freq=freq, keep=None)


def _count_codes(codes: np.ndarray, ncat: int) -> np.ndarray:
    """Rows per categorical code, ``-1`` (missing) in slot 0, code ``k`` in slot ``k + 1``.

    Counted in chunks: ``np.bincount`` casts its whole input to intp, which for int8 codes of
    10 M rows would be an 80 MB temporary touched once.
    """
    out = np.zeros(ncat + 1, dtype=np.int64)
    if ncat == 1:  # one category (a site zone): count the missing, a byte compare per row
        out[0] = sum(
            int(np.count_nonzero(codes[a : a + _ROWS] < 0)) for a in range(0, len(codes), _ROWS)
        )
        out[1] = len(codes) - out[0]
        return out
    for a in range(0, len(codes), _ROWS):
        out += np.bincount(codes[a : a + _ROWS].astype(np.intp) + 1, minlength=ncat + 1)
    return out


def _zones(usage: pd.DataFrame, n: int) -> pd.Categorical:
    """The rows' site zones as a categorical with sorted, used categories; missing -> UTC."""
    if "timezone" not in usage:
        return pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), categories=["UTC"])
    col = usage["timezone"]
    cat = col.array if isinstance(col.dtype, pd.CategoricalDtype) else None
    if cat is None:
        return pd.Categorical(col.astype(object).fillna("UTC"))
    codes = np.asarray(cat.codes)
    counted = _count_codes(codes, len(cat.categories))  # slot 0: missing (code -1)
    used = counted[1:]
    missing = bool(counted[0])
    names = [str(c) for c, u in zip(cat.categories, used, strict=True) if u > 0]
    if missing:
        names.append("UTC")
    cats = sorted(set(names))
    lut = np.full(len(cat.categories) + 1, -1, dtype=np.int64)
    for i, c in enumerate(cat.categories):
        if str(c) in cats:
            lut[i] = cats.index(str(c))
    lut[-1] = cats.index("UTC") if "UTC" in cats else -1
    small = lut.astype(np.int8 if len(cats) < 127 else np.int32)
    if (lut[:-1] == np.arange(len(cat.categories))).all() and not missing:
        rows = codes
    else:
        rows = small[codes]  # code -1 reads the last entry
    return pd.Categorical.from_codes(rows, categories=pd.Index(cats, dtype=object), validate=False)


def _month_of_day(day0: int, day1: int) -> np.ndarray:
    """Months since 1970 of each day ``day0..day1`` (days since 1970): a small lookup table."""
    days = np.arange(day0, day1 + 1, dtype=np.int64)
    return days.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)


_ROWS = 1 << 16  # rows per chunk: chunk temporaries (512 KiB) are reused, not re-faulted
_CHUNKED_MIN = 1 << 16  # smaller frames take the general path


class _IntervalCounter:
    """The counts of :func:`~scaler_workbench.coverage.interval_completeness`, taken chunk by
    chunk inside :func:`_calendarize_chunked` from the wall times it already has.

    Only the common case is counted here: one zone, monthly periods, every row valid
    (``end > start``), rows ordered by meter (each meter one run) and start, one row length
    per meter, and repeated starts without a null value on either side. Anything else turns
    the counter off (:meth:`result` gives None) and the caller runs the reference
    implementation; ``tests/test_usage_counts.py`` checks both give the same frames.
    """

    def __init__(
        self,
        usage: pd.DataFrame,
        *,
        nmeter: int,
        zone: str,
        dmin: int,
        dspan: int,
        pmin: int,
        nper: int,
        month_of: np.ndarray,
    ) -> None:
        self.ok = True
        self.zone = zone
        self.nmeter, self.dmin, self.dspan, self.pmin, self.nper = nmeter, dmin, dspan, pmin, nper
        self.month_of = month_of
        nk = nmeter * nper
        self.n_val = np.zeros(nk, dtype=np.int64)
        self.n_null = np.zeros(nk, dtype=np.int64)
        self.n_est = np.zeros(nk, dtype=np.int64)
        self.first_l = np.full(nk, NAT_NS, dtype=np.int64)
        self.last_l = np.full(nk, NAT_NS, dtype=np.int64)
        self.day_marks = np.zeros(nmeter * dspan, dtype=bool)
        self.seen = np.zeros(nmeter, dtype=bool)
        self.length = np.zeros(nmeter, dtype=np.int64)
        self.gaps: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        # the previous chunk's last row: meter code, start, end, null, meter-month key
        self.prev = (-1, NAT_NS, NAT_NS, False, -1)
        est = usage["estimated"] if "estimated" in usage.columns else None
        self.est: np.ndarray | None = None
        if est is not None:
            if est.dtype == bool:
                self.est = est.to_numpy()
            elif isinstance(est.dtype, pd.BooleanDtype):
                self.est = est.to_numpy(dtype=bool, na_value=False)
            else:
                self.ok = False

    def feed(
        self,
        a: int,
        b: int,
        mc: np.ndarray,
        s: np.ndarray,
        e: np.ndarray,
        ws: np.ndarray,
        we: np.ndarray,
        key: np.ndarray,
        null: np.ndarray | None,
        spot: np.ndarray,
        runs: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
    ) -> None:
        """Count rows ``a:b``: meter codes, UTC and wall-clock start/end [ns], the meter-month
        ``key`` (``code * nper + month - pmin``), ``null`` (no value; None: every row has one),
        the day-mark ``spot`` (``code * dspan + day - dmin``) and, when ``key`` is
        non-decreasing, its ``runs`` (starts, ends, keys) as the calendarization found them.

        Row-to-row checks compare neighbouring slices and look only at the few positions that
        step back, repeat or leave a gap (no shifted copies of the chunk).
        """
        if not self.ok:
            return
        pm, ps, pe, pnull, pkey = self.prev
        dur = e - s
        inner = mc[1:] == mc[:-1]  # row i + 1 is of the same meter as row i
        bnd = np.flatnonzero(~inner)
        bnd += 1
        cont = int(mc[0]) == pm  # the chunk goes on with the previous chunk's last meter
        starts = bnd if cont else np.r_[0, bnd]
        if starts.size:  # each meter one run, never met before
            nm = mc[starts]
            if self.seen[nm].any() or np.unique(nm).size != nm.size:
                self.ok = False
                return
            self.seen[nm] = True
            self.length[nm] = dur[starts]
            if bool((dur[starts] <= 0).any()):
                self.ok = False  # a row that does not end after it starts
                return
        # one row length per meter (mixed lengths: the reference takes the most frequent one)
        if cont and int(dur[0]) != int(self.length[pm]):
            self.ok = False
            return
        differs = np.flatnonzero(dur[1:] != dur[:-1])
        if inner[differs].any():
            self.ok = False
            return
        # ordered by start within a meter, and months never step back
        if cont and (int(s[0]) < ps or int(key[0]) < pkey):
            self.ok = False
            return
        if inner[np.flatnonzero(s[1:] < s[:-1])].any():
            self.ok = False
            return
        if runs is None and inner[np.flatnonzero(key[1:] < key[:-1])].any():
            self.ok = False
            return
        # repeated starts (rows ``dup``); a value wins over a null: the reference sorts those
        dup = np.flatnonzero(s[1:] == s[:-1])
        dup = dup[inner[dup]]
        dup += 1
        if cont and int(s[0]) == ps:
            dup = np.r_[0, dup]
        if dup.size and null is not None:
            before = null[np.maximum(dup - 1, 0)]
            if dup[0] == 0:
                before[0] = pnull
            if bool(null[dup].any() or before.any()):
                self.ok = False
                return
        # gaps: a row starting after its predecessor (same meter) ends
        gap = np.flatnonzero(s[1:] > e[:-1])
        gap = gap[inner[gap]]
        if cont and int(s[0]) > pe:
            self.gaps.append((np.array([pe]), s[:1].copy(), mc[:1].astype(np.int64)))
        if gap.size:
            self.gaps.append((e[gap], s[gap + 1], mc[gap + 1].astype(np.int64)))
        any_null = null is not None and bool(null.any())
        nk = self.n_val.size
        if not any_null and not dup.size:  # the usual case: every row counts
            valued = None
            if runs is not None:
                st, en, ks = runs
                self.n_val[ks] += en - st
            else:
                self.n_val += np.bincount(key, minlength=nk)
            kv = key
        else:
            valued = ~null if null is not None else np.ones(b - a, dtype=bool)
            if dup.size:
                valued[dup] = False
            kv = key[valued]
            self.n_val += np.bincount(kv, minlength=nk)
            if any_null and null is not None:
                nulls = null.copy()
                if dup.size:
                    nulls[dup] = False
                if nulls.any():
                    self.n_null += np.bincount(key[nulls], minlength=nk)
        if self.est is not None:
            est = self.est[a:b]
            if valued is not None:
                est = est & valued
            if est.any():
                self.n_est += np.bincount(key[est], minlength=nk)
        self.day_marks[spot if valued is None else spot[valued]] = True
        if kv.size:  # first and last row with a value of each meter-month (keys ordered)
            if valued is None and runs is not None:
                first, last = runs[0], runs[1] - 1
            else:
                st = np.flatnonzero(kv[1:] != kv[:-1]) + 1
                first = np.concatenate(([0], st))
                last = np.concatenate((st - 1, [kv.size - 1]))
                if valued is not None:
                    vi = np.flatnonzero(valued)
                    first, last = vi[first], vi[last]
            fk = key[first]
            unset = self.first_l[fk] == NAT_NS
            self.first_l[fk[unset]] = ws[first[unset]]
            self.last_l[key[last]] = we[last]
        last_null = bool(null[-1]) if null is not None else False
        self.prev = (int(mc[-1]), int(s[-1]), int(e[-1]), last_null, int(key[-1]))

    def result(self, meter: pd.Categorical) -> Any:
        """The :class:`~scaler_workbench.coverage.IntervalCompleteness`, or None (counter off)."""
        if not self.ok:
            return None
        length_s = self.length // 1_000_000_000
        hour = 3600
        is_interval = (length_s > 0) & (length_s <= hour) & (hour % np.maximum(length_s, 1) == 0)
        rows = self.n_val + self.n_null
        sel = np.flatnonzero(rows > 0)
        code = sel // self.nper
        sel = sel[is_interval[code]]
        code = sel // self.nper
        if not sel.size:
            return None  # the reference gives the empty frames
        bounds = np.flatnonzero(np.r_[True, self.month_of[1:] != self.month_of[:-1]])
        per_days = np.zeros((self.nmeter, self.nper), dtype=np.int64)
        per_days[:, self.month_of[bounds] - self.pmin] = np.add.reduceat(
            self.day_marks.reshape(self.nmeter, self.dspan), bounds, axis=1, dtype=np.int64
        )
        found = pd.DataFrame(
            {
                "code": code,
                "month": sel % self.nper + self.pmin,
                "intervals": self.n_val[sel],
                "null_intervals": self.n_null[sel],
                "days_with_data": per_days.ravel()[sel],
                "estimated_n": self.n_est[sel],
                "first_local": self.first_l[sel].astype("datetime64[ns]"),
                "last_local": self.last_l[sel].astype("datetime64[ns]"),
            }
        )
        if self.gaps:
            g_lo, g_hi, g_code = (np.concatenate(x) for x in zip(*self.gaps, strict=True))
            long = is_interval[g_code] & (g_hi - g_lo >= length_s[g_code] * 1_000_000_000)
            g_lo, g_hi, g_code = g_lo[long], g_hi[long], g_code[long]
        else:
            g_lo = g_hi = g_code = np.zeros(0, dtype=np.int64)
        names = np.asarray([str(c) for c in meter.categories], dtype=object)
        zones = np.full(self.nmeter, self.zone, dtype=object)
        return completeness_frames(found, names, zones, length_s, g_lo, g_hi, g_code)


def _calendarize_chunked(
    usage: pd.DataFrame,
    *,
    freq: str,
    keep: np.ndarray | None,
    meter: pd.Categorical,
    source: pd.Categorical,
    tzc: pd.Categorical,
    start: np.ndarray,
    end: np.ndarray,
    count_into: list[Any] | None = None,
) -> pd.DataFrame | None:
    """:func:`calendarize` for rows that stay inside one local period (intervals), in chunks.

    Every per-row temporary is chunk-sized and reused; sums, counts, first/last rows, day marks
    and factor checks accumulate into arrays over the (small) key space. Returns None (the
    caller takes the general path) when a row crosses a period boundary, a time is missing, a
    zone has transitions off the 15-minute grid, or the key space is large.

    ``count_into`` (a list) asks for the interval completeness of the same rows in the same pass
    (monthly periods, one zone): its :class:`_IntervalCounter` result is appended, None when
    the rows are not the common case it counts (the caller then runs the reference).
    """
    n = len(start)
    if n < _CHUNKED_MIN or not n:
        return None
    lo, hi = int(start.min()), int(end.max())
    if lo == NAT_NS or int(end.min()) == NAT_NS:
        return None
    zones = [str(z) for z in tzc.categories]
    tables = [_offset_table(lo, hi, z) for z in zones]
    if any(t is None for t in tables):
        return None
    tabs = [t for t in tables if t is not None]
    reach = max(int(np.abs(t[1]).max()) for t in tabs) + NS_PER_DAY
    dmin = (lo - reach) // NS_PER_DAY
    dmax = (hi + reach) // NS_PER_DAY
    dspan = dmax - dmin + 1
    month_of = _month_of_day(dmin, dmax) if freq == "month" else None
    per_of_day = month_of if month_of is not None else np.arange(dmin, dmax + 1, dtype=np.int64)
    pmin = int(per_of_day[0])
    nper = int(per_of_day[-1]) - pmin + 1
    nmeter, nsrc, nz = len(meter.categories), max(1, len(source.categories)), len(zones)
    nbase = nmeter * nsrc * nz
    nkeys = nbase * nper
    space = nkeys + 1  # the last slot takes rows set aside
    if space > (1 << 24) or nbase * dspan > (1 << 27):
        return None
    mcodes = np.asarray(meter.codes)
    scodes = np.asarray(source.codes)
    tzcodes = np.asarray(tzc.codes)
    if (mcodes < 0).any() or (scodes < 0).any():
        return None
    values = {c: v for c in _SUM_COLS if (v := _floats(usage, c)) is not None}
    sums = {c: np.zeros(space) for c in values}
    nans = {c: np.zeros(space, dtype=np.int64) for c in values}
    counts = np.zeros(space, dtype=np.int64)
    est_col = usage.get("estimated", None)
    known = np.zeros(space)
    anyest = np.zeros(space)
    marks = np.zeros(nbase * dspan, dtype=bool)
    cover = np.zeros(space)
    first = np.full(space, n, dtype=np.int64)
    last = np.full(space, -1, dtype=np.int64)
    fac = _chunk_reader(usage, "factor")
    # a categorical factor (one per meter and unit): its codes compare a byte per row
    fcodes = fcats = None
    if fac is not None and isinstance(usage["factor"].dtype, pd.CategoricalDtype):
        fcodes = np.asarray(usage["factor"].array.codes)
        fcats = np.r_[np.asarray(usage["factor"].cat.categories, dtype=np.float64), np.nan]
    fk = np.full(space, np.nan)
    fset = np.zeros(space, dtype=bool)
    mixed = np.zeros(space, dtype=bool)
    # honest spans (month periods): earliest local start and latest local end per key
    klo = np.full(space, np.iinfo(np.int64).max, dtype=np.int64) if freq == "month" else None
    khi = np.full(space, NAT_NS, dtype=np.int64) if freq == "month" else None
    counter = None
    if count_into is not None and month_of is not None and nz == 1:
        counter = _IntervalCounter(
            usage,
            nmeter=nmeter,
            zone=zones[0],
            dmin=dmin,
            dspan=dspan,
            pmin=pmin,
            nper=nper,
            month_of=month_of,
        )
    for a in range(0, n, _ROWS):
        b = min(n, a + _ROWS)
        s, e = start[a:b], end[a:b]
        if nz == 1:
            ws, we = _wall(s, zones[0], tabs[0]), _wall(e, zones[0], tabs[0])
        else:
            zc = tzcodes[a:b]
            ws, we = np.empty_like(s), np.empty_like(e)
            for z in range(nz):
                m = zc == z
                ws[m] = _wall(s[m], zones[z], tabs[z])
                we[m] = _wall(e[m], zones[z], tabs[z])
        day = ws // NS_PER_DAY
        day_last = (we - 1) // NS_PER_DAY
        p0 = per_of_day[day - dmin]
        cross = np.flatnonzero(day_last != day)  # rows ending on a later local day (few)
        if cross.size and (per_of_day[day_last[cross] - dmin] > p0[cross]).any():
            return None  # a row crosses a local period boundary: split it the general way
        del day_last
        base = mcodes[a:b].astype(np.int64)
        if nsrc > 1:
            base *= nsrc
            base += scodes[a:b]
        if nz > 1:
            base *= nz
            base += tzcodes[a:b]
        key = base * nper
        key += p0
        key -= pmin
        kc = keep[a:b] if keep is not None else None
        if kc is not None and kc.all():
            kc = None
        # rows grouped by key (records in meter and time order, the usual case; a set-aside
        # duplicate sits next to the row that wins): per-key results from the runs'
        # boundaries instead of scattering every row
        runs = None
        if bool((key[1:] >= key[:-1]).all()):
            st = np.flatnonzero(key[1:] != key[:-1])
            st += 1
            st = np.r_[0, st]
            runs = (st, np.r_[st[1:], len(key)], key[st])
        spot = base * dspan
        spot += day - dmin
        chunk = {c: v[a:b] for c, v in values.items()}
        nan = {c: np.isnan(vc) for c, vc in chunk.items()}
        if counter is not None:
            if nsrc == 1:  # one (meter, zone) per base: the counter's keys are these
                counter.feed(
                    a, b, mcodes[a:b], s, e, ws, we, key, nan.get("consumption"), spot, runs
                )
            else:
                mk = mcodes[a:b].astype(np.int64)
                ck = mk * nper
                ck += p0
                ck -= pmin
                cruns = None
                if bool((ck[1:] >= ck[:-1]).all()):
                    st = np.r_[0, np.flatnonzero(ck[1:] != ck[:-1]) + 1]
                    cruns = (st, np.r_[st[1:], len(ck)], ck[st])
                cspot = mk * dspan
                cspot += day - dmin
                counter.feed(
                    a, b, mcodes[a:b], s, e, ws, we, ck, nan.get("consumption"), cspot, cruns
                )
        if kc is not None:
            key[~kc] = nkeys
        if klo is not None and khi is not None:
            if runs is not None:
                lo_w = ws if kc is None else np.where(kc, ws, np.iinfo(np.int64).max)
                hi_w = we if kc is None else np.where(kc, we, NAT_NS)
                np.minimum.at(klo, runs[2], np.minimum.reduceat(lo_w, runs[0]))
                np.maximum.at(khi, runs[2], np.maximum.reduceat(hi_w, runs[0]))
            else:
                np.minimum.at(klo, key, ws)
                np.maximum.at(khi, key, we)
        if runs is not None:
            st, en, ks = runs
            counts[ks] += en - st if kc is None else np.add.reduceat(kc, st, dtype=np.int64)
        else:
            counts += np.bincount(key, minlength=space)
        for c, vc in chunk.items():
            # one sequential sum per key in row order, carried across chunks (``np.add.at``
            # adds row after row into the running sums): the same float as the general path's
            # ``np.bincount``, whatever the chunking (issue 13 item 9)
            vn = nan[c]
            if vn.any():
                np.add.at(sums[c], key, np.where(vn, 0.0, vc))
                nans[c] += np.bincount(key[vn], minlength=space)
            else:
                np.add.at(sums[c], key, vc)
        if est_col is not None:
            ep = est_col.iloc[a:b].to_numpy(dtype=np.float64, na_value=np.nan)
            known += np.bincount(key, weights=~np.isnan(ep), minlength=space)
            anyest += np.bincount(key, weights=np.nan_to_num(ep), minlength=space)
        # days with data: sub-daily rows mark their local day, longer ones add their days
        dur = we - ws
        sub = dur <= NS_PER_DAY
        mark_rows = sub if kc is None else sub & kc
        marks[spot[mark_rows] if not mark_rows.all() else spot] = True
        if not sub.all():
            multi = ~sub
            cover += np.bincount(key[multi], weights=dur[multi] / NS_PER_DAY, minlength=space)
        # first and last row of each key
        chunk_first = np.full(space, n, dtype=np.int64)
        if runs is not None and kc is None:
            st, en, ks = runs
            last[ks] = en + (a - 1)
            chunk_first[ks] = st + a
        elif runs is not None and kc is not None:  # the first and last kept row of each run
            st, en, ks = runs
            kept = np.flatnonzero(kc)
            i0 = np.asarray(np.searchsorted(kept, st))
            i1 = np.asarray(np.searchsorted(kept, en)) - 1
            has = i1 >= i0
            last[ks[has]] = kept[i1[has]] + a
            chunk_first[ks[has]] = kept[i0[has]] + a
        else:
            rows = np.arange(a, b, dtype=np.int64)
            last[key] = rows
            chunk_first[key[::-1]] = rows[::-1]
        np.minimum(first, chunk_first, out=first)
        if fac is not None:  # one factor per key, NaN where rows had different factors
            here = chunk_first < n
            fk_c = np.full(space, np.nan)
            uniform = False
            if fcodes is not None and fcats is not None and runs is not None:
                # every row (kept or not) has its run's factor and none is missing: no key
                # mixes factors within the chunk (categories are unique, never NaN)
                cc = fcodes[a:b]
                fk_c[here] = fcats[cc[chunk_first[here] - a]]
                steps = np.flatnonzero(cc[1:] != cc[:-1])
                uniform = not np.setdiff1d(steps, runs[0][1:] - 1).size and not (cc < 0).any()
            if uniform:
                pass
            elif runs is not None and kc is None:  # a row differs from its predecessor in its run
                fc = fac(a, b)
                fk_c[here] = fc[chunk_first[here] - a]
                differs = ~(fc[1:] == fc[:-1])
                differs[runs[0][1:] - 1] = False
                if differs.any():
                    mixed[key[1:][differs]] = True
                lone = ~(fc == fc)  # NaN factors (no unit) are never one factor
                if lone.any():
                    mixed[key[lone]] = True
            else:
                fc = fac(a, b)
                fk_c[here] = fc[chunk_first[here] - a]
                differs = ~(fc == fk_c[key])
                if differs.any():
                    mixed[key[differs]] = True
            seen = here & fset
            mixed[seen] |= ~(fk[seen] == fk_c[seen])
            new = here & ~fset
            fk[new] = fk_c[new]
            fset |= here
    sel = np.flatnonzero(counts[:nkeys] > 0)
    n_int = counts[sel]
    out_sums = {}
    for c in values:
        cnt = n_int - nans[c][sel]
        out_sums[c] = np.where(cnt > 0, sums[c][sel], np.nan)
    if est_col is not None:
        k_known = known[sel]
        estimated = pd.array(np.where(k_known > 0, anyest[sel] > 0, False), dtype="boolean")
        estimated[k_known == 0] = pd.NA
    else:
        estimated = pd.array([pd.NA] * len(sel), dtype="boolean")
    # marked days per (meter, source, zone) and period: sum the marks over each period's days
    bounds = np.flatnonzero(np.r_[True, per_of_day[1:] != per_of_day[:-1]])
    per_days = np.zeros((nbase, nper), dtype=np.int64)
    per_days[:, per_of_day[bounds] - pmin] = np.add.reduceat(
        marks.reshape(nbase, dspan), bounds, axis=1, dtype=np.int64
    )
    days = per_days.ravel()[sel] + cover[sel]
    days_with_data = np.ceil(np.round(days, 6)).astype(np.int64)
    per_k = sel % nper + pmin
    rest = sel // nper
    z_k = rest % nz
    rest //= nz
    if count_into is not None:
        count_into.append(None if counter is None else counter.result(meter))
    return _assemble_periods(
        usage,
        freq=freq,
        meter=meter,
        source=source,
        tzc=tzc,
        key_meter=rest // nsrc,
        key_source=rest % nsrc,
        key_tz=z_k,
        key_per=per_k,
        first=first[sel],
        last=last[sel],
        sums=out_sums,
        n_int=n_int,
        split_any=np.zeros(len(sel), dtype=bool),
        estimated=estimated,
        days_with_data=days_with_data,
        factor=None if fac is None else np.where(mixed[sel], np.nan, fk[sel]),
        data_lo=None if klo is None else klo[sel],
        data_hi=None if khi is None else khi[sel],
    )


def _calendarize(
    usage: pd.DataFrame,
    *,
    freq: str,
    keep: np.ndarray | None,
    count_into: list[Any] | None = None,
) -> pd.DataFrame:
    """:func:`calendarize` over the rows where ``keep`` is True (all when None), no copy.

    ``count_into``: see :func:`_calendarize_chunked` (nothing is appended when it is not taken).
    """
    if freq not in _FREQS:
        raise UsageError(
            f"unknown period {freq!r}", hint=f"Use one of {_FREQS} (or 'none' in the mapping)."
        )
    if not len(usage) or (keep is not None and not keep.any()):
        return usage.iloc[0:0]
    if keep is not None and keep.all():
        keep = None
    n = len(usage)
    meter = _cat(usage["meter_id"])
    mcodes = np.asarray(meter.codes)
    nmeter = len(meter.categories)
    source = _cat(usage["source"]) if "source" in usage else pd.Categorical(["usage"] * n)
    scodes = np.asarray(source.codes)
    nsrc = max(1, len(source.categories))
    tzc = _zones(usage, n)
    tzcodes = np.asarray(tzc.codes)
    start = _ns(usage["start"])
    end = _ns(usage["end"])
    fast = _calendarize_chunked(
        usage,
        freq=freq,
        keep=keep,
        meter=meter,
        source=source,
        tzc=tzc,
        start=start,
        end=end,
        count_into=count_into,
    )
    if fast is not None:
        return fast

    if len(tzc.categories) == 1:
        wall_s = _wall(start, str(tzc.categories[0]))
        wall_e = _wall(end, str(tzc.categories[0]))
    else:
        wall_s = np.empty(n, dtype=np.int64)
        wall_e = np.empty(n, dtype=np.int64)
        for z, zone in enumerate(tzc.categories):
            m = tzcodes == z
            wall_s[m] = _wall(start[m], str(zone))
            wall_e[m] = _wall(end[m], str(zone))
    day_s = np.floor_divide(wall_s, NS_PER_DAY)
    day_e = np.floor_divide(wall_e - 1, NS_PER_DAY)  # the day of the last instant (end exclusive)
    if freq == "day":
        p0, p1 = day_s, day_e
    else:
        dmin = int(min(day_s.min(), day_e.min()))
        table = _month_of_day(dmin, int(max(day_s.max(), day_e.max())))
        p0 = table[day_s - dmin]
        p1 = table[day_e - dmin]
    split = p1 > p0
    del day_e, p1

    values = {c: _floats(usage, c) for c in _SUM_COLS}
    est = (
        usage["estimated"].to_numpy(dtype=np.float64, na_value=np.nan)
        if "estimated" in usage
        else None
    )
    # pieces: row index, period index, share, split flag
    row: np.ndarray | None = None
    share = last_piece = None
    if split.any():
        p1 = (
            np.floor_divide(wall_e - 1, NS_PER_DAY)
            if freq == "day"
            else table[np.floor_divide(wall_e - 1, NS_PER_DAY) - dmin]
        )
        counts = np.where(split, p1 - p0 + 1, 1)
        row = np.repeat(np.arange(n, dtype=np.int64), counts)
        offs = np.arange(len(row), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
        per = p0[row] + offs
        is_split = split[row]
        ps = np.maximum(wall_s[row], _period_wall_start(per, freq))
        pe = np.minimum(wall_e[row], _period_wall_start(per + 1, freq))
        dur = (wall_e - wall_s)[row].astype(np.float64)
        share = np.where(is_split, (pe - ps) / np.where(dur > 0, dur, 1.0), 1.0)
        last_piece = np.ones(len(row), dtype=bool)
        last_piece[:-1] = row[1:] != row[:-1]
        cover_days = np.where(is_split, (pe - ps) / NS_PER_DAY, (wall_e - wall_s)[row] / NS_PER_DAY)
        sub_daily = ((wall_e - wall_s) <= NS_PER_DAY)[row] & ~is_split
        wall_day = day_s[row]
        piece_lo, piece_hi = ps, pe
    else:
        per = p0
        is_split = None
        dur_ns = wall_e - wall_s
        sub_daily = dur_ns <= NS_PER_DAY
        cover_days = None if sub_daily.all() else dur_ns / NS_PER_DAY
        del dur_ns
        wall_day = day_s
        piece_lo, piece_hi = wall_s, wall_e
    del wall_s, wall_e

    def take(a: np.ndarray) -> np.ndarray:
        return a if row is None else a[row]

    def piece_values(v: np.ndarray) -> np.ndarray:
        if row is None:
            return v
        pv = v[row] * share
        # remainder to the last piece of each split row, so each row's total is exact
        if last_piece is not None:
            csum = np.cumsum(np.where(last_piece, 0.0, np.nan_to_num(pv)))
            starts = np.flatnonzero(np.r_[True, row[1:] != row[:-1]])
            before = np.r_[0.0, csum][starts]
            seg_sum = np.repeat(
                csum[np.r_[starts[1:] - 1, len(row) - 1]] - before, np.diff(np.r_[starts, len(row)])
            )
            pv = np.where(last_piece & is_split, v[row] - seg_sum, pv)
        return pv

    m_p = take(mcodes)
    s_p = take(scodes)
    z_p = take(tzcodes)
    pmin = int(per.min())
    nper = int(per.max()) - pmin + 1
    nz = len(tzc.categories)
    nkeys = nmeter * nsrc * nz * nper
    # dense key per piece; rows set aside (keep False) get the sentinel key ``nkeys``
    dense = m_p.astype(np.int64)
    if nsrc > 1:
        dense *= nsrc
        dense += s_p
    if nz > 1:
        dense *= nz
        dense += z_p
    dense *= nper
    dense += per
    dense -= pmin
    if keep is not None:
        dense[~take(keep)] = nkeys
    if nkeys <= max(4 * len(per), 1 << 22):  # small key space: count straight into it
        kc, space = dense, nkeys + 1
        counts_all = np.bincount(kc, minlength=space)
        sel = np.flatnonzero(counts_all[:nkeys] > 0)
    else:  # sparse key space
        kc, kuniq = pd.factorize(dense, sort=True)
        kc = kc.astype(np.int64)
        space = len(kuniq)
        counts_all = np.bincount(kc, minlength=space)
        sel = np.flatnonzero(kuniq != nkeys)
    del dense
    nk = len(sel)

    def per_key(weights: np.ndarray | None) -> np.ndarray:
        return np.bincount(kc, weights=weights, minlength=space)[sel]

    sums: dict[str, np.ndarray] = {}
    n_int = counts_all[sel]
    for c, v in values.items():
        if v is None:
            continue
        pv = piece_values(v)
        nan = np.isnan(pv)
        if nan.any():
            s = per_key(np.where(nan, 0.0, pv))
            cnt = per_key(~nan)
        else:
            s, cnt = per_key(pv), n_int
        sums[c] = np.where(cnt > 0, s, np.nan)
    split_any = per_key(is_split) > 0 if is_split is not None else np.zeros(nk, dtype=bool)
    if est is not None:
        ep = take(est)
        known = per_key(~np.isnan(ep))
        anyest = per_key(np.nan_to_num(ep)) > 0
        estimated = pd.array(np.where(known > 0, anyest, False), dtype="boolean")
        estimated[known == 0] = pd.NA
    else:
        estimated = pd.array([pd.NA] * nk, dtype="boolean")
    # days with data: sub-daily rows mark their local day; multi-day rows add their days
    if is_split is None and cover_days is None:
        sub_daily = None  # every row is sub-daily
    days = np.zeros(nk, dtype=np.float64)
    marks = wall_day if sub_daily is None else wall_day[sub_daily]
    if len(marks):
        kd = kc if sub_daily is None else kc[sub_daily]
        dmin_m = int(marks.min())
        dspan = int(marks.max()) - dmin_m + 1
        if space * dspan <= max(8 * len(marks), 1 << 24):  # dense (key, day) marks
            mark = np.zeros(space * dspan, dtype=bool)
            mark[kd * dspan + (marks - dmin_m)] = True
            days += mark.reshape(space, dspan).sum(axis=1)[sel]
        else:
            uday = np.unique(kd * dspan + (marks - dmin_m))
            days += np.bincount(uday // dspan, minlength=space)[sel]
    if sub_daily is not None and not sub_daily.all():
        multi = ~sub_daily
        days += np.bincount(kc[multi], weights=cover_days[multi], minlength=space)[sel]
    days_with_data = np.ceil(np.round(days, 6)).astype(np.int64)

    first_all, last_all = _first_last(kc, space)
    first, last = first_all[sel], last_all[sel]
    data_lo = data_hi = None
    if freq == "month":  # honest spans: earliest data start and latest data end per key
        lo_all = np.full(space, np.iinfo(np.int64).max, dtype=np.int64)
        hi_all = np.full(space, np.iinfo(np.int64).min, dtype=np.int64)
        np.minimum.at(lo_all, kc, piece_lo)
        np.maximum.at(hi_all, kc, piece_hi)
        data_lo, data_hi = lo_all[sel], hi_all[sel]
    del piece_lo, piece_hi
    src_row_first = first if row is None else row[first]
    src_row_last = last if row is None else row[last]
    fac = _floats(usage, "factor")
    key_factor = None
    if fac is not None:
        # one factor per key, or NaN when its rows were converted with different factors
        fp = take(fac)
        fk = fp[first_all.clip(0)]
        differs = ~(fp == fk[kc])
        mixed = np.bincount(kc[differs], minlength=space)[sel] > 0
        key_factor = np.where(mixed, np.nan, fk[sel])
    return _assemble_periods(
        usage,
        freq=freq,
        meter=meter,
        source=source,
        tzc=tzc,
        key_meter=m_p[first],
        key_source=s_p[first],
        key_tz=z_p[first],
        key_per=per[first],
        first=src_row_first,
        last=src_row_last,
        sums=sums,
        n_int=n_int,
        split_any=split_any,
        estimated=estimated,
        days_with_data=days_with_data,
        factor=key_factor,
        data_lo=data_lo,
        data_hi=data_hi,
    )


def _assemble_periods(
    usage: pd.DataFrame,
    *,
    freq: str,
    meter: pd.Categorical,
    source: pd.Categorical,
    tzc: pd.Categorical,
    key_meter: np.ndarray,
    key_source: np.ndarray,
    key_tz: np.ndarray,
    key_per: np.ndarray,
    first: np.ndarray,
    last: np.ndarray,
    sums: dict[str, np.ndarray],
    n_int: np.ndarray,
    split_any: np.ndarray,
    estimated: Any,
    days_with_data: np.ndarray,
    factor: np.ndarray | None,
    data_lo: np.ndarray | None = None,
    data_hi: np.ndarray | None = None,
) -> pd.DataFrame:
    """The period rows of :func:`calendarize` from per-key results (``first``/``last``: the
    usage rows that give each key its labels and lineage).

    ``data_lo``/``data_hi`` (local wall-clock ns of each key's earliest data and latest data
    end, ``NAT_NS`` unknown; keys sorted by meter, source, zone, period) give honest spans:
    a meter's FIRST period starts on the local day its data starts, its LAST period ends on
    the local day after its data ends (issue 13 item 3); interior periods keep their span.
    """
    n = len(usage)
    nk = len(key_per)
    src_row_first, src_row_last = first, last
    wall_lo = _period_wall_start(key_per, freq)
    wall_hi = _period_wall_start(key_per + 1, freq)
    if data_lo is not None and data_hi is not None and nk:
        group = key_meter.astype(np.int64) * (len(source.categories) + 1) + key_source
        edge_lo = np.r_[True, group[1:] != group[:-1]] & (data_lo != NAT_NS)
        edge_hi = np.r_[group[1:] != group[:-1], True] & (data_hi != NAT_NS)
        day_lo = np.floor_divide(data_lo, NS_PER_DAY) * NS_PER_DAY
        day_hi = -np.floor_divide(-data_hi, NS_PER_DAY) * NS_PER_DAY  # the next local midnight
        wall_lo = np.where(edge_lo, np.maximum(wall_lo, day_lo), wall_lo)
        wall_hi = np.where(edge_hi, np.minimum(wall_hi, day_hi), wall_hi)
        bad = wall_hi <= wall_lo  # never an empty span
        if bad.any():
            wall_lo = np.where(bad, _period_wall_start(key_per, freq), wall_lo)
            wall_hi = np.where(bad, _period_wall_start(key_per + 1, freq), wall_hi)
    pstart = np.empty(nk, dtype=np.int64)
    pend = np.empty(nk, dtype=np.int64)
    for z, zone in enumerate(tzc.categories):
        mz = key_tz == z
        if not mz.any():
            continue
        pstart[mz] = _localise_periods(wall_lo[mz], str(zone))
        pend[mz] = _localise_periods(wall_hi[mz], str(zone))

    out: dict[str, Any] = {
        "meter_id": pd.Categorical.from_codes(key_meter, categories=meter.categories),
        "start": utc_index(pstart),
        "end": utc_index(pend),
    }
    for c in ("consumption", "redelivery", "production", "cost"):
        if c in sums:
            out[c] = sums[c]
    for c in ("unit", "currency", "raw_unit"):
        if c in usage:
            col = _cat(usage[c])
            out[c] = pd.Categorical.from_codes(
                np.asarray(col.codes)[src_row_first], categories=col.categories
            )
    out["estimated"] = estimated
    out["timezone"] = pd.Categorical.from_codes(key_tz, categories=tzc.categories)
    out["n_intervals"] = pd.array(n_int, dtype="Int64")
    out["days_with_data"] = pd.array(days_with_data, dtype="Int64")
    if "raw_value" in sums:
        out["raw_value"] = sums["raw_value"]
    if factor is not None:
        out["factor"] = factor
    # method
    base = _cat(usage["method"]) if "method" in usage else pd.Categorical(["as-reported"] * n)
    bcodes = np.asarray(base.codes)[src_row_first]
    agg = np.where(split_any, 2, np.where(n_int > 1, 1, 0))
    combo, combo_uniq = pd.factorize(bcodes.astype(np.int64) * 3 + agg)
    labels = []
    for k in combo_uniq:
        b, a = divmod(int(k), 3)
        text = str(base.categories[b]) if b >= 0 else "as-reported"
        labels.append(_method_label(text, a))
    out["method"] = (
        pd.Categorical.from_codes(combo, categories=pd.Index(labels, dtype=object).unique())
        if len(set(labels)) == len(labels)
        else pd.Categorical(np.asarray(labels, object)[combo])
    )
    # source ids
    scodes = np.asarray(source.codes)
    out["source_id"] = _source_ids(usage, source, scodes, src_row_first, src_row_last, n_int)
    out["source"] = pd.Categorical.from_codes(key_source, categories=source.categories)
    return pd.DataFrame(out)


def _method_label(base: str, agg: int) -> str:
    if agg == 0:
        return base
    word = "prorated-by-days" if agg == 2 else "sum-of-intervals"
    if base.startswith("as-reported"):
        return word + base[len("as-reported") :]
    return f"{base}, {word}"


def _source_ids(
    usage: pd.DataFrame,
    source: pd.Categorical,
    scodes: np.ndarray,
    first: np.ndarray,
    last: np.ndarray,
    n_int: np.ndarray,
) -> pd.Series:
    if "source_id" in usage and usage["source_id"].notna().any():
        sid = usage["source_id"]
        a = sid.take(first).astype(object).to_numpy().astype(str)
        b = sid.take(last).astype(object).to_numpy().astype(str)
    else:
        rows = usage["_row"].to_numpy() if "_row" in usage else None  # a view, any int dtype
        r_first = (rows[first] if rows is not None else first).astype(np.int64)
        r_last = (rows[last] if rows is not None else last).astype(np.int64)
        names = np.asarray(source.categories, dtype=object)[scodes[first]]
        a = np.char.add(np.char.add(names.astype(str), "["), r_first.astype(str))
        b = np.char.add(r_last.astype(str), "]")
        single = np.char.add(a, "]")
        joined = np.char.add(np.char.add(a, ".."), b)
        return pd.Series(np.where(n_int > 1, joined, single), dtype="string")
    joined = np.char.add(np.char.add(a, ".."), b)
    return pd.Series(np.where(n_int > 1, joined, a), dtype="string")


def combine_periods(parts: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Combine :func:`calendarize` outputs of disjoint chunks (pages, meters, months).

    Sums values and counts per (meter, source, start, end). Chunks must not split one local day
    for ``days_with_data`` to stay exact (pages per meter and month never do).

    Parameters
    ----------
    parts : sequence of pandas.DataFrame
        :func:`calendarize` outputs (canonical units: [kWh], [m³], [kg]).

    Returns
    -------
    pandas.DataFrame
        One row per (meter, source, start, end) with summed values, sorted by meter and start;
        an empty usage frame when every part is empty.
    """
    parts = [p for p in parts if len(p)]
    if not parts:
        return empty_frame("usage")
    frame = pd.concat([p.astype({"meter_id": object}) for p in parts], ignore_index=True)
    keys = (
        ["meter_id", "source", "start", "end"]
        if "source" in frame
        else ["meter_id", "start", "end"]
    )
    agg: dict[str, Any] = {
        c: "sum"
        for c in (
            "consumption",
            "redelivery",
            "production",
            "cost",
            "raw_value",
            "n_intervals",
            "days_with_data",
        )
        if c in frame
    }
    for c in ("consumption", "redelivery", "production", "cost", "raw_value"):
        if c in agg:
            agg[c] = lambda s: s.sum(min_count=1)
    for c in ("unit", "currency", "timezone", "raw_unit", "factor", "method", "source_id"):
        if c in frame:
            agg[c] = "first"
    if "estimated" in frame:
        agg["estimated"] = "max"
    out = frame.groupby(keys, observed=True, sort=True, dropna=False).agg(agg).reset_index()
    return out


# ---- registers ----------------------------------------------------------------------------------
def readings_to_consumption(
    readings: pd.DataFrame,
    *,
    digits: Mapping[str, float] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Difference cumulative registers per meter in time order.

    Parameters
    ----------
    readings : pandas.DataFrame
        ``meter_id, timestamp, value`` (+ ``estimated, unit, timezone, source, source_id,
        raw_value, raw_unit, factor``).
    digits : mapping meter_id -> number of register digits, optional
        Registers wrap at ``10**digits``; when unknown, digits are inferred from the largest
        reading of the meter.

    Returns
    -------
    (consumption, readings)
        ``consumption``: one row per pair of consecutive readings with a non-negative difference
        (or a rollover), ``method`` ``register-difference``; ``readings``: sorted, with ``flag``
        set to ``rollover``, ``reset`` or ``exchange`` on the reading after a drop.

    Raises
    ------
    UsageError
        If the timestamps are not tz-aware.
    """
    if not len(readings):
        return empty_frame("usage").iloc[0:0], readings
    meter = _cat(readings["meter_id"])
    mc = np.asarray(meter.codes, dtype=np.int64)
    ts = _ns(readings["timestamp"])
    order = np.lexsort((ts, mc))
    if not (np.diff(order) == 1).all():
        readings = readings.iloc[order].reset_index(drop=True)
        mc, ts = mc[order], ts[order]
    else:
        readings = readings.reset_index(drop=True)
    v = readings["value"].to_numpy(np.float64, na_value=np.nan)
    raw = _floats(readings, "raw_value")
    fac = _floats(readings, "factor")
    # classify drops on the register as the provider reports it (it wraps in its own units)
    reg = raw if raw is not None and fac is not None and not np.isnan(raw).all() else v
    conv = fac if reg is raw else np.ones(len(v))
    n = len(v)
    same = np.zeros(n, dtype=bool)
    same[1:] = mc[1:] == mc[:-1]
    prev = np.r_[np.nan, reg[:-1]]
    diff = np.where(same, reg - prev, np.nan)
    # digits per meter
    cats = meter.categories
    dig = np.full(len(cats), np.nan)
    if digits:
        dig = np.array([float(digits.get(str(c), np.nan) or np.nan) for c in cats])
    vmax = np.zeros(len(cats))
    np.maximum.at(vmax, mc, np.nan_to_num(reg))
    inferred = np.isnan(dig)
    dig = np.where(inferred, np.ceil(np.log10(np.maximum(vmax, 1.0) + 1.0)), dig)
    wrap = (10.0**dig)[mc]
    drop = same & (diff < 0)
    cand = wrap - prev + reg
    near_top = prev >= np.where(inferred[mc], 0.9, 0.5) * wrap
    rollover = drop & near_top & (cand >= 0) & (cand < 0.5 * wrap)
    reset = drop & ~rollover & (reg <= np.maximum(0.01 * prev, 1e-9))
    exchange = drop & ~rollover & ~reset
    raw_cons = np.where(rollover, cand, diff)
    raw_cons = np.where(reset | exchange, np.nan, raw_cons)
    cons = raw_cons * conv
    flag = np.full(n, None, dtype=object)
    flag[rollover] = "rollover"
    flag[reset] = "reset"
    flag[exchange] = "exchange"
    readings["flag"] = pd.array(flag, dtype="string")
    keep = same & ~np.isnan(cons)
    idx = np.flatnonzero(keep)
    f = fac
    out: dict[str, Any] = {
        "meter_id": pd.Categorical.from_codes(mc[idx], categories=cats),
        "start": utc_index(ts[idx - 1]),
        "end": utc_index(ts[idx]),
        "consumption": cons[idx],
    }
    if raw is not None and f is not None:
        out["raw_value"] = raw_cons[idx]
        out["factor"] = f[idx]
    for c in ("unit", "raw_unit", "timezone", "source"):
        if c in readings:
            col = _cat(readings[c])
            out[c] = pd.Categorical.from_codes(
                np.asarray(col.codes)[idx], categories=col.categories
            )
    if "estimated" in readings:
        e = readings["estimated"].to_numpy(dtype=np.float64, na_value=0.0) > 0
        out["estimated"] = pd.array(e[idx] | e[idx - 1], dtype="boolean")
    meth = np.where(rollover[idx], "register-difference (rollover)", "register-difference")
    out["method"] = pd.Categorical(meth)
    if "source_id" in readings and readings["source_id"].notna().any():
        sid = readings["source_id"].astype(object).to_numpy().astype(str)
        out["source_id"] = pd.array(
            np.char.add(np.char.add(sid[idx - 1], ".."), sid[idx]), dtype="string"
        )
    elif "_row" in readings:
        r = readings["_row"].to_numpy(np.int64)
        out["_row"] = r[idx]
    return pd.DataFrame(out), readings


# ---- conflicts and reports ---------------------------------------------------------------------
def resolve_conflicts(
    frame: pd.DataFrame,
    *,
    keys: Sequence[str] = ("meter_id", "start", "end"),
    policy: Mapping[str, Any] | None = None,
    table: str = "usage",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep one row per key; return ``(kept, quarantine rows for every row set aside)``.

    Preference within a key: an actual beats an estimate (``prefer_actual``), then the higher
    ``revision``, then the later record (``duplicates = "latest"``; ``"first"`` keeps the
    earliest; ``"error"`` raises).

    Parameters
    ----------
    frame : pandas.DataFrame
        Usage or readings rows (tz-aware UTC times).
    keys : sequence of str
        The columns that identify one row (the table's key).
    policy : dict, optional
        ``[mapping.policy]`` overrides of :data:`POLICY_DEFAULTS`.
    table : str
        Named in the quarantine rows (``usage`` or ``readings``).

    Returns
    -------
    (pandas.DataFrame, pandas.DataFrame)
        The kept rows (record order), and :data:`~scaler_workbench.schema.QUARANTINE` rows of
        stage ``usage``, rule ``duplicate``, for the rows set aside.

    Raises
    ------
    UsageError
        With ``duplicates = "error"`` when a duplicate exists, or if times are not tz-aware.
    """
    loser, q = _conflict_losers(frame, keys=keys, policy=policy, table=table)
    return (frame if loser is None else frame[~loser]), q


def _adjacent_duplicates(mcodes: np.ndarray, tcols: Sequence[np.ndarray]) -> np.ndarray | None:
    """Rows ``i`` whose next row has the same (meter, time...) key, when the keys are
    non-decreasing in row order (else None: the caller sorts). Checked in chunks of
    :data:`_ROWS` rows, so no full-length comparison mask is ever built."""
    n = len(mcodes)
    found: list[np.ndarray] = []
    for a in range(0, n - 1, _ROWS):
        b = min(n - 1, a + _ROWS)
        m0, m1 = mcodes[a:b], mcodes[a + 1 : b + 1]
        eq = m1 == m0
        le = (m1 > m0) | eq
        for t in tcols:
            ta, tb = t[a:b], t[a + 1 : b + 1]
            le &= ~eq | (tb >= ta)
            if not le.all():
                return None
            eq &= tb == ta
        d = np.flatnonzero(eq)
        if len(d):
            found.append(d + a)
    return np.concatenate(found) if found else np.empty(0, dtype=np.int64)


def _conflict_losers(
    frame: pd.DataFrame,
    *,
    keys: Sequence[str] = ("meter_id", "start", "end"),
    policy: Mapping[str, Any] | None = None,
    table: str = "usage",
) -> tuple[np.ndarray | None, pd.DataFrame]:
    """The rows :func:`resolve_conflicts` sets aside (None: none) and their quarantine rows.

    When the keys are already in non-decreasing order (records grouped by meter and in time
    order, the usual case) duplicates are adjacent: only the rows of duplicated keys are ranked,
    nothing is sorted and no frame is copied.
    """
    pol = {**POLICY_DEFAULTS, **(policy or {})}
    n = len(frame)
    if n < 2:
        return None, empty_frame(QUARANTINE)
    mcodes = np.asarray(_cat(frame[keys[0]]).codes)
    tcols = [_ns(frame[k]) for k in keys[1:]]
    # (meter, time...) non-decreasing in record order: equal keys are adjacent
    d = _adjacent_duplicates(mcodes, tcols) if tcols else None
    if d is not None:
        if not len(d):
            return None, empty_frame(QUARANTINE)
        rows = np.unique(np.concatenate([d, d + 1]))  # every row of a duplicated key
    else:
        rows = np.arange(n, dtype=np.int64)
    rank_cols: list[np.ndarray] = []
    rank_cols.append(rows if pol["duplicates"] != "first" else -rows)
    if "revision" in frame:
        rev = frame["revision"].to_numpy(np.float64)[rows]
        rank_cols.append(np.nan_to_num(rev, nan=-np.inf))
    if pol["prefer_actual"] and "estimated" in frame:
        est = frame["estimated"].to_numpy(dtype=np.float64, na_value=0.0)[rows] > 0
        rank_cols.append((~est).astype(np.int64))
    sub_m = mcodes[rows].astype(np.int64)
    sub_t = [t[rows] for t in tcols]
    order = np.lexsort((*rank_cols, *reversed(sub_t), sub_m))
    m_s = sub_m[order]
    same = m_s[1:] == m_s[:-1]
    for t in sub_t:
        ts = t[order]
        same &= ts[1:] == ts[:-1]
    if not same.any():
        return None, empty_frame(QUARANTINE)
    if pol["duplicates"] == "error":
        raise UsageError(
            f"{int(same.sum())} duplicate {table} row(s) on {list(keys)}",
            hint="Set [mapping.policy] duplicates = 'latest' to keep the latest revision.",
        )
    loser = np.zeros(n, dtype=bool)
    # every row followed (in preference order) by a preferred row with the same key
    loser[rows[order[:-1][same]]] = True
    lidx = np.flatnonzero(loser)
    set_aside = frame.iloc[lidx]
    kept_est = None
    if "estimated" in frame:
        kept_est = set_aside["estimated"].to_numpy(dtype=np.float64, na_value=0.0)
    why = "an actual value beats an estimate, then the latest revision / later record"
    reason = (
        f"duplicate {table} row for the same {'/'.join(keys)}: set aside by policy "
        f"(duplicates={pol['duplicates']}, prefer_actual={pol['prefer_actual']}; {why})"
    )
    # one of two texts per row (an estimate says so), not an f-string per row
    reasons = np.full(len(set_aside), reason, dtype=object)
    if kept_est is not None:
        reasons[kept_est > 0] = reason + " [this row is an estimate]"
    q = quarantine_rows(
        set_aside, table=table, stage="usage", rule="duplicate", reasons=reasons.tolist()
    )
    return loser, q


def period_report(
    usage: pd.DataFrame, *, tolerance_days: float = 1.0, gaps: bool = True
) -> pd.DataFrame:
    """Gaps, overlaps and duplicates between consecutive periods of each meter.

    Parameters
    ----------
    usage : pandas.DataFrame
        ``meter_id, start, end`` (UTC).
    tolerance_days : float
        Overlaps up to this many days (an inclusive-end bill pair sharing its boundary day) are
        ``warning``, longer ones ``error`` (``[mapping.policy] overlap_tolerance_days``).
    gaps : bool
        Report gaps (``[mapping.policy] report_gaps``).

    Returns
    -------
    pandas.DataFrame
        ``meter_id, issue (gap | overlap | duplicate), start, end, days, severity`` where
        ``start``/``end`` bound the gap or overlapping stretch; overlaps within the tolerance
        are a ``warning``, longer overlaps and duplicates ``error``, gaps ``warning``.

    Raises
    ------
    UsageError
        If the times are not tz-aware.
    """
    cols = ["meter_id", "issue", "start", "end", "days", "severity"]
    if len(usage) < 2:
        return pd.DataFrame({c: [] for c in cols})
    mc = np.asarray(_cat(usage["meter_id"]).codes, dtype=np.int64)
    s = _ns(usage["start"])
    e = _ns(usage["end"])
    order = np.lexsort((e, s, mc))
    mc, s, e = mc[order], s[order], e[order]
    same = np.r_[False, mc[1:] == mc[:-1]]
    prev_end = pd.Series(e).groupby(mc).cummax().shift(1).to_numpy(dtype=np.float64)
    prev_end = np.where(same, prev_end, np.nan)
    prev_s = np.r_[0, s[:-1]]
    prev_e = np.r_[0, e[:-1]]
    dup = same & (s == prev_s) & (e == prev_e)
    overlap = same & ~dup & (s < prev_end)
    gap = same & (s > prev_end) & gaps
    meters = np.asarray(_cat(usage["meter_id"]).categories, dtype=object)
    parts = []
    for issue, mask, a, b in (
        ("duplicate", dup, s, e),
        ("overlap", overlap, s, np.minimum(e, np.nan_to_num(prev_end, nan=0).astype(np.int64))),
        ("gap", gap, np.nan_to_num(prev_end, nan=0).astype(np.int64), s),
    ):
        if not mask.any():
            continue
        days = (b[mask] - a[mask]) / NS_PER_DAY
        sev = np.where(
            issue == "duplicate",
            "error",
            np.where(
                issue == "overlap",
                np.where(days <= tolerance_days + 1e-9, "warning", "error"),
                "warning",
            ),
        )
        parts.append(
            pd.DataFrame(
                {
                    "meter_id": meters[mc[mask]],
                    "issue": issue,
                    "start": utc_index(a[mask]),
                    "end": utc_index(b[mask]),
                    "days": days,
                    "severity": sev,
                }
            )
        )
    if not parts:
        return pd.DataFrame({c: [] for c in cols})
    return pd.concat(parts, ignore_index=True).sort_values(["meter_id", "start"], ignore_index=True)


# ---- the stage -------------------------------------------------------------------------------------
def period_option(src: Mapping[str, Any], *names: str) -> str | None:
    """The period a usage or readings source is brought to, from the first option it sets.

    Parameters
    ----------
    src : mapping
        A ``[mapping.usage.<source>]`` or ``[mapping.readings.<source>]`` table.
    *names : str
        Options to look at in order, e.g. ``"aggregate", "prorate"`` or ``"to_consumption"``.

    Returns
    -------
    {"day", "month", "as-is"} or None
        ``"as-is"`` for ``reading``/``period``/``as-is`` (periods kept as reported); None when
        no option is set or it says ``none``/``false``.

    Raises
    ------
    MappingError
        If the option is another word.
    """
    for name in names:
        v = src.get(name)
        if v is None:
            continue
        v = str(v).lower()
        if v in ("none", "false", ""):
            return None
        if v in ("reading", "period", "as-is"):
            return "as-is"
        if v not in _FREQS:
            raise MappingError(
                f"{name} = {v!r} is not one of none, day, month",
                key=name,
                hint="Use aggregate/prorate/to_consumption = 'month', 'day' or 'none'.",
            )
        return v
    return None


def _finish_usage(frame: pd.DataFrame) -> pd.DataFrame:
    if not len(frame):
        return empty_frame("usage")
    drop = [c for c in frame.columns if str(c).startswith("_") or c == "revision"]
    frame = frame.drop(columns=drop)
    if "source_id" not in frame.columns:
        frame["source_id"] = pd.NA
    return coerce_frame(frame.reset_index(drop=True), USAGE)


def process_usage(
    tables: Tables,
    profile: Any,
    *,
    mapping: Mapping[str, Any] | None = None,
) -> Tables:
    """Apply the conflict policy, turn registers into consumption and calendarize usage.

    Parameters
    ----------
    tables : Tables
        From :func:`~scaler_workbench.units.normalise_tables` (canonical units).
    profile : Profile
        Its ``[mapping]`` gives each source's options and ``[mapping.policy]``.
    mapping : dict, optional
        Overrides the profile's mapping (as in :func:`~scaler_workbench.transform.build_tables`).

    Returns
    -------
    Tables
        ``usage`` in canonical dtypes (plus a ``source`` column), ``readings`` with ``flag``, and
        every set-aside or flagged record in ``quarantine`` (stage ``usage``), after the input's
        quarantine rows (stage order).

    Raises
    ------
    MappingError
        If ``[mapping.policy]`` or a source's period option is malformed.
    UsageError
        If times are not tz-aware UTC, or ``duplicates = "error"`` meets a duplicate.
    TimezoneMismatchError
        If an asset's provider-stated zone (``stated_timezone``) keeps another clock than the
        zone its rows are cut in (checked before anything is aggregated, ``_zones``).
    """
    check_stated_zones(tables, default_tz=getattr(profile, "timezone", "UTC") or "UTC")
    m = resolve_mapping(profile, mapping)
    policy = {**POLICY_DEFAULTS, **dict(m.get("policy") or {})}
    unknown = set(policy) - set(POLICY_DEFAULTS)
    if unknown:
        raise MappingError(
            f"unknown [mapping.policy] key(s) {sorted(unknown)}",
            key="mapping.policy",
            hint=f"Known keys: {sorted(POLICY_DEFAULTS)}.",
        )
    tol = _overlap_options(policy, "mapping.policy")
    gaps = bool(policy["report_gaps"])
    q_parts: list[pd.DataFrame] = [tables.quarantine]
    out_parts: list[pd.DataFrame] = []
    cost_parts: list[tuple[str, pd.DataFrame, str]] = []  # sources with provides = ["cost"]
    report_parts: list[pd.DataFrame] = []
    months_parts: list[pd.DataFrame] = [tables.completeness]
    hole_parts: list[pd.DataFrame] = [tables.holes]

    usage = tables.usage
    if len(usage):
        # duplicates are masked, not copied out: calendarize sums only the kept rows
        loser, q = _conflict_losers(usage, policy=policy, table="usage")
        q_parts.append(q)
        keep_all = None if loser is None else ~loser
        sources = (
            _cat(usage["source"]) if "source" in usage else pd.Categorical(["usage"] * len(usage))
        )
        codes = np.asarray(sources.codes)
        multi = len(sources.categories) > 1
        for i, name in enumerate(sources.categories):
            mask = codes == i if multi else None
            part = usage[mask] if mask is not None else usage
            keep = keep_all if keep_all is None or mask is None else keep_all[mask]
            src = (m.get("usage") or {}).get(str(name), {})
            freq = period_option(src, "aggregate", "prorate")
            cost_only = _provides_cost(src, str(name), freq)
            if src.get("kind", "intervals") != "intervals" or freq is None:
                part = part if keep is None else part[keep]
                keep = None
                spol, stol = _source_policy(policy, src, str(name), tol)
                if spol["overlaps"] == "later_wins":
                    part = _later_wins(part, stol)
                elif spol["overlaps"] == "quarantine":
                    over = _overlap_losers(part, stol)
                    if over.any():
                        q_parts.append(
                            quarantine_rows(
                                part[over],
                                table="usage",
                                stage="usage",
                                rule="overlap",
                                reasons=f"period overlaps an earlier period of the same meter by "
                                f"more than {stol:g} day(s): set aside by policy (overlaps = "
                                "'quarantine'; the earlier period is kept)",
                            )
                        )
                        part = part[~over]
                report_parts.append(
                    period_report(part, tolerance_days=stol, gaps=bool(spol["report_gaps"]))
                )
            counts = None
            is_intervals = src.get("kind", "intervals") == "intervals"
            if freq in _FREQS:
                # the interval counts come from the calendarization's own pass when it can
                # (one zone, monthly, ordered rows), else from the reference below
                folded: list[Any] | None = [] if is_intervals else None
                try:
                    cal = _calendarize(part, freq=freq, keep=keep, count_into=folded)
                except Exception:
                    if is_intervals:
                        _interval_counts(part)  # its error (if any) comes first, as before
                    raise
                if is_intervals:
                    counts = _interval_counts(part, folded[0] if folded else None)
                    months_parts.append(counts[0])
                    hole_parts.append(counts[1])
            elif is_intervals:
                counts = _interval_counts(part)
                months_parts.append(counts[0])
                hole_parts.append(counts[1])
            if freq in _FREQS:
                if freq == "month" and counts is not None and len(counts[0]) and len(cal):
                    cal = _with_interval_counts(cal, counts[0])
                elif src.get("kind", "intervals") != "intervals" and len(cal):
                    cal = _with_billing_days(cal, part if keep is None else part[keep])
                if cost_only:
                    cost_parts.append((str(name), cal, str(freq)))
                    continue
                out_parts.append(cal)
            else:
                out_parts.append(part if keep is None else part[keep])

    readings = tables.readings
    if len(readings):
        readings, q = resolve_conflicts(
            readings, keys=("meter_id", "timestamp"), policy=policy, table="readings"
        )
        q_parts.append(q)
        digits = None
        if "register_digits" in tables.meters:
            dd = pd.to_numeric(tables.meters["register_digits"], errors="coerce")
            digits = dict(zip(tables.meters["meter_id"].astype(str), dd, strict=True))
        sources = (
            _cat(readings["source"])
            if "source" in readings
            else pd.Categorical(["readings"] * len(readings))
        )
        codes = np.asarray(sources.codes)
        new_readings = []
        for i, name in enumerate(sources.categories):
            part = readings[codes == i]
            src = (m.get("readings") or {}).get(str(name), {})
            freq = period_option(src, "to_consumption")
            cons, flagged = readings_to_consumption(part, digits=digits)
            new_readings.append(flagged)
            fl = flagged[flagged["flag"].isin(["reset", "exchange", "rollover"])]
            if len(fl):
                q_parts.append(
                    quarantine_rows(
                        fl,
                        table="readings",
                        stage="usage",
                        rule="register_" + "drop",
                        reasons=[
                            f"register drop detected ({f}): "
                            + (
                                "consumption taken as the wrapped difference"
                                if f == "rollover"
                                else "no consumption emitted for this interval; confirm with "
                                "the provider whether the meter was reset or exchanged"
                            )
                            for f in fl["flag"]
                        ],
                        severity="warning",
                    )
                )
            if freq is None:
                continue
            report_parts.append(period_report(cons, tolerance_days=tol, gaps=gaps))
            if freq in _FREQS:
                out_parts.append(calendarize(cons, freq=freq))
            else:
                out_parts.append(cons)
        readings = concat_frames(new_readings)
    merged = _concat_frames(out_parts)
    for name, cal, cfreq in cost_parts:
        merged, q = _attach_cost(merged, cal, name, cfreq)
        if len(q):
            q_parts.append(q)
    out_usage = _finish_usage(merged)
    if len(readings):
        keep = [c for c in readings.columns if not str(c).startswith("_") and c != "revision"]
        readings = coerce_frame(readings[keep].reset_index(drop=True), READINGS)
    else:
        readings = empty_frame("readings")
    report = _concat_frames(report_parts)
    if len(report):
        q_parts.append(_report_to_quarantine(report, tol))
    q_all = [p for p in q_parts if len(p)]
    quarantine = pd.concat(q_all, ignore_index=True) if q_all else tables.quarantine
    months = [p for p in months_parts if len(p)]
    holes = [p for p in hole_parts if len(p)]
    return Tables(
        assets=tables.assets,
        meters=tables.meters,
        usage=out_usage,
        readings=readings,
        quarantine=quarantine,
        completeness=(
            coerce_frame(pd.concat(months, ignore_index=True), COMPLETENESS)
            if len(months) > 1
            else months[0]
            if months
            else empty_frame(COMPLETENESS)
        ),
        holes=(
            coerce_frame(pd.concat(holes, ignore_index=True), HOLES)
            if len(holes) > 1
            else holes[0]
            if holes
            else empty_frame(HOLES)
        ),
    )


_OVERLAPS = ("flag", "quarantine", "later_wins")


def _overlap_options(policy: Mapping[str, Any], where: str) -> float:
    """Check ``overlaps`` of a merged policy; return ``overlap_tolerance_days`` [d]."""
    if policy["overlaps"] not in _OVERLAPS:
        raise MappingError(
            f"[{where}] overlaps = {policy['overlaps']!r} is not one of {', '.join(_OVERLAPS)}",
            key=f"{where}.overlaps",
            hint="Use overlaps = 'flag' (report only), 'quarantine' (set the later row aside) "
            "or 'later_wins' (a shared boundary day belongs to the later bill).",
        )
    try:
        return float(policy["overlap_tolerance_days"])
    except (TypeError, ValueError) as exc:
        raise MappingError(
            f"[{where}] overlap_tolerance_days must be a number of days",
            key=f"{where}.overlap_tolerance_days",
            hint="e.g. overlap_tolerance_days = 1",
        ) from exc


def _source_policy(
    policy: Mapping[str, Any], src: Mapping[str, Any], name: str, tol: float
) -> tuple[dict[str, Any], float]:
    """The period policy of one bill source: ``[mapping.policy]`` with the source's own
    ``policy`` table on top (``overlaps``, ``overlap_tolerance_days``, ``report_gaps``)."""
    own = src.get("policy") or {}
    if not own:
        return dict(policy), tol
    where = f"mapping.usage.{name}.policy"
    unknown = set(own) - set(POLICY_DEFAULTS)
    if unknown:
        raise MappingError(
            f"unknown [{where}] key(s) {sorted(unknown)}",
            key=where,
            hint=f"Known keys: {sorted(POLICY_DEFAULTS)}.",
        )
    merged = {**policy, **dict(own)}
    return merged, _overlap_options(merged, where)


_DST_SLACK_NS = 3600 * 10**9


def _later_wins(part: pd.DataFrame, tolerance_days: float) -> pd.DataFrame:
    """``overlaps = "later_wins"``: the shared-boundary convention of bills.

    In time order per meter, a period whose end reaches past the next period's start by at
    most ``tolerance_days`` [d] (an inclusive end date equal to the next bill's start date) ends
    where the next begins: the shared day belongs to the later bill, the earlier bill's amount
    is spread over its remaining days. Longer overlaps are left as they are (reported as with
    ``"flag"``). Returns ``part`` itself when nothing changes, else a copy with new ``end``.
    """
    n = len(part)
    if n < 2:
        return part
    mc = np.asarray(_cat(part["meter_id"]).codes, dtype=np.int64)
    s = _ns(part["start"])
    e = _ns(part["end"])
    order = np.lexsort((e, s, mc))
    so, eo, mo = s[order], e[order], mc[order]
    nxt_s = np.r_[so[1:], 0]
    same = np.r_[mo[1:] == mo[:-1], False]
    over = eo - nxt_s
    clip = (
        same
        & (nxt_s > so)
        & (over > 0)
        & (over <= tolerance_days * NS_PER_DAY + _DST_SLACK_NS)  # a 25-hour local day
        & (mc[order] >= 0)
    )
    if not clip.any():
        return part
    new_e = e.copy()
    new_e[order[clip]] = nxt_s[clip]
    log.info("usage: %d shared boundary day(s) given to the later bill", int(clip.sum()))
    out = part.copy()
    out["end"] = utc_index(new_e)
    return out


def _provides_cost(src: Mapping[str, Any], name: str, freq: str | None) -> bool:
    """Is this source a cost-only source (``provides = ["cost"]``)? Checks the option."""
    provides = src.get("provides")
    if provides is None:
        return False
    where = f"mapping.usage.{name}.provides"
    if not isinstance(provides, list | tuple) or not provides or any(p != "cost" for p in provides):
        raise MappingError(
            f"[{where}] = {provides!r}: the only value a source can provide is 'cost'",
            key=where,
            hint='Write provides = ["cost"]: this source gives the cost of the periods of '
            "the meter's other source(s) (its consumption is not used).",
        )
    if freq not in _FREQS:
        raise MappingError(
            f"[{where}] needs prorate = 'month' or 'day' (the cost is attached by period)",
            key=where,
            hint="Set prorate (bills) or aggregate (intervals) to the period of the source "
            "that gives the consumption, e.g. prorate = 'month'.",
        )
    return True


def _local_periods(cal: pd.DataFrame, freq: str) -> np.ndarray:
    """Local period (days or months since 1970) of each calendarized row's start."""
    start = _ns(cal["start"])
    zones = _zones(cal, len(cal))
    out = np.empty(len(cal), dtype=np.int64)
    codes = np.asarray(zones.codes)
    for z, zone in enumerate(zones.categories):
        m = codes == z
        out[m] = _period_index(_wall(start[m], str(zone)), freq)
    return out


def _attach_cost(
    usage: pd.DataFrame, cost: pd.DataFrame, name: str, freq: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Put the period costs of the cost-only source ``name`` on the rows of the other sources.

    A row of ``usage`` (other sources, calendarized) with the same meter and local period
    (``freq``: the local day or month of its start) as a row of ``cost`` gets its ``cost`` (and ``currency`` when given);
    its own cost, if any, is replaced. When several sources have a row for the period, the
    first one (source order) gets it. A cost period without such a row is set aside (rule
    ``merge_unmatched``, severity ``error``): the cost is not exported, and says why.

    Returns
    -------
    tuple of pandas.DataFrame
        ``usage`` with the costs, and the quarantine rows of unmatched cost periods.
    """
    if not len(cost):
        return usage, pd.DataFrame()

    def keys(frame: pd.DataFrame) -> pd.MultiIndex:
        return pd.MultiIndex.from_arrays(
            [frame["meter_id"].astype(str).to_numpy(), _local_periods(frame, freq)]
        )

    if len(usage):
        target = keys(usage)
        first = ~target.duplicated(keep="first")
        rows = np.flatnonzero(first)
        at = target[first].get_indexer(keys(cost))
    else:
        rows = np.zeros(0, dtype=np.int64)
        at = np.full(len(cost), -1, dtype=np.int64)
    hit = at >= 0
    q = pd.DataFrame()
    if (~hit).any():
        q = quarantine_rows(
            cost[~hit],
            table="usage",
            stage="usage",
            rule="merge_unmatched",
            reasons=f"cost of this period from source '{name}' (provides = ['cost']) has no "
            "usage row of another source for the same meter and period: the cost is not "
            "exported (is the consumption source missing data for this period?)",
        )
    if not hit.any():
        return usage, q
    pos = rows[at[hit]]
    values = cost["cost"].to_numpy(dtype=np.float64, na_value=np.nan)[hit]
    col = (
        usage["cost"].to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
        if "cost" in usage.columns
        else np.full(len(usage), np.nan)
    )
    col[pos] = values
    extra: dict[str, Any] = {"cost": col}
    if "currency" in cost.columns:
        cur = (
            usage["currency"].astype(object).to_numpy(copy=True)
            if "currency" in usage.columns
            else np.full(len(usage), None, dtype=object)
        )
        cur[pos] = cost["currency"].astype(object).to_numpy()[hit]
        extra["currency"] = cur
    if "method" in usage.columns:
        method = usage["method"].astype(object).to_numpy(copy=True)
        method[pos] = [f"{m}; cost from {name} by period" for m in method[pos]]
        extra["method"] = method
    log.info("usage: cost of %d period(s) from source %s attached", int(hit.sum()), name)
    return usage.assign(**extra), q


#: ``THH:MM`` of each minute of a day (the time part of :func:`_local_text`)
_HHMM = np.array([f"T{m // 60:02d}:{m % 60:02d}" for m in range(1440)], dtype=object)


def _local_text(values: pd.Series) -> pd.Series:
    """Naive local datetimes -> ``YYYY-MM-DDTHH:MM`` text (NaT -> missing).

    The text of ``numpy.datetime_as_string`` at minutes, built from the distinct days and a
    table of the day's minutes (reference: ``tests/test_usage_text.py``).
    """
    arr = pd.to_datetime(values).to_numpy(dtype="datetime64[ns]")
    has = ~np.isnat(arr)
    text = np.full(arr.size, None, dtype=object)
    if has.any():
        minutes = arr[has].astype("datetime64[m]").astype(np.int64)
        day, minute = np.divmod(minutes, 1440)
        uniq, inv = np.unique(day, return_inverse=True)
        days = np.datetime_as_string(uniq.astype("datetime64[D]")).astype(object)
        text[has] = days[inv] + _HHMM[minute]
    return pd.Series(pd.array(text, dtype="string"), index=values.index)


def _canonical_counts(frame: pd.DataFrame, table: Any, texts: tuple[str, str]) -> pd.DataFrame:
    """``frame`` (from :func:`~scaler_workbench.coverage.completeness_frames`) in the columns
    and dtypes of ``table``: the naive local datetimes ``texts`` as ``YYYY-MM-DDTHH:MM`` text,
    int64 counts as Int64 without a copy through ``astype`` (``coerce_frame`` then shares
    every column)."""
    cols: dict[str, Any] = {}
    n = len(frame)
    for c in table.columns:
        if c.name not in frame.columns:
            continue  # coerce_frame adds it
        v = frame[c.name]
        if c.name in texts:
            v = _local_text(v)
        elif c.dtype == "Int64" and v.dtype == np.int64:
            v = pd.Series(
                pd.arrays.IntegerArray(v.to_numpy(), np.zeros(n, dtype=bool)), index=frame.index
            )
        cols[c.name] = v
    return coerce_frame(pd.DataFrame(cols, index=frame.index), table)


def _interval_counts(part: pd.DataFrame, folded: Any = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Interval completeness of one interval source's rows BEFORE aggregation (issue 13 item 2).

    The same zones as :func:`calendarize` (the rows' ``timezone``, else UTC), so the months
    line up with the aggregated periods. Returns ``(completeness, holes)`` in the columns of
    :data:`~scaler_workbench.schema.COMPLETENESS` and :data:`~scaler_workbench.schema.HOLES`.
    ``folded``: the same counts taken by the chunked calendarization (None: count here with
    the reference, :func:`~scaler_workbench.coverage.interval_completeness`).
    """
    ic = folded if folded is not None else interval_completeness(part, timezone="UTC")
    months, holes = ic.months, ic.holes
    months = (
        _canonical_counts(months, COMPLETENESS, ("first_local", "last_local"))
        if len(months)
        else empty_frame(COMPLETENESS)
    )
    holes = (
        _canonical_counts(holes, HOLES, ("start_local", "end_local"))
        if len(holes)
        else empty_frame(HOLES)
    )
    return months, holes


def _period_month_numbers(cal: pd.DataFrame) -> np.ndarray:
    """Local month (months since 1970-01) of each calendarized row's start (its zone, else UTC)."""
    start = _ns(cal["start"])
    zones = _zones(cal, len(cal))
    wall = np.empty(len(cal), dtype=np.int64)
    codes = np.asarray(zones.codes)
    for z, zone in enumerate(zones.categories):
        m = codes == z
        wall[m] = _wall(start[m], str(zone))
    return wall.astype("datetime64[ns]").astype("datetime64[M]").astype(np.int64)


def _month_rows(cal: pd.DataFrame, months: pd.DataFrame) -> np.ndarray:
    """Row of ``months`` (``meter_id``, ``month`` YYYY-MM) for each row of ``cal`` (-1: none).

    Integer keys (meter code, month number) instead of string MultiIndexes; meter ids whose
    text repeats (``1`` and ``"1"``) take the string keys."""
    meter = _cat(cal["meter_id"])
    names = pd.Index([str(c) for c in meter.categories], dtype=object)
    if not names.is_unique:
        key = pd.MultiIndex.from_arrays(
            [months["meter_id"].astype(str).to_numpy(), months["month"].astype(str).to_numpy()]
        )
        return np.asarray(
            key.get_indexer(
                pd.MultiIndex.from_arrays(
                    [
                        cal["meter_id"].astype(str).to_numpy(),
                        month_labels(_period_month_numbers(cal)),
                    ]
                )
            )
        )
    m_code = names.get_indexer(months["meter_id"].astype(str).to_numpy())
    m_month = np.asarray(months["month"].astype(str).to_numpy(), dtype="datetime64[M]").astype(
        np.int64
    )
    c_code = np.asarray(meter.codes, dtype=np.int64)
    c_month = _period_month_numbers(cal)
    rows = np.flatnonzero(m_code >= 0)
    if not rows.size:
        return np.full(len(cal), -1, dtype=np.int64)
    lo = int(min(m_month.min(), c_month.min()))
    m_key = (m_code[rows].astype(np.int64) << 32) + (m_month[rows] - lo)
    at = pd.Index(m_key).get_indexer((c_code << 32) + (c_month - lo))
    return np.where(at >= 0, rows[np.maximum(at, 0)], -1)


def _with_interval_counts(cal: pd.DataFrame, months: pd.DataFrame) -> pd.DataFrame:
    """Month rows of an interval source with their completeness counts (persisted with usage,
    so a later export from the state gives the same ``coverage.csv``)."""
    at = _month_rows(cal, months)
    found = at >= 0
    take = np.where(found, at, 0)

    def col(name: str, dtype: str) -> Any:
        values = months[name].to_numpy()[take]
        out = pd.array(values, dtype=dtype)
        out[~found] = pd.NA
        return out

    est = np.rint(
        months["estimated_share"].to_numpy(dtype=np.float64)
        * months["intervals"].to_numpy(dtype=np.float64)
    )[take]
    return cal.assign(
        expected_intervals=col("expected_intervals", "Int64"),
        null_intervals=col("null_intervals", "Int64"),
        estimated_intervals=pd.array(np.where(found, est, np.nan), dtype="Float64").astype("Int64"),
        first_local=col("first_local", "string"),
        last_local=col("last_local", "string"),
    )


def _with_billing_days(cal: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """Periods summed from bills (rows longer than a day) carry the meter's longest source
    period [days]: the default billing lag (issue 13 item 4)."""
    if not len(rows):
        return cal
    days = (_ns(rows["end"]) - _ns(rows["start"])) / NS_PER_DAY
    longest = pd.Series(days).groupby(rows["meter_id"].astype(str).to_numpy()).max()
    longest = longest[longest > 1.0]
    if not len(longest):
        return cal
    mapped = cal["meter_id"].astype(str).map(np.ceil(np.round(longest, 6)))
    return cal.assign(billing_days=pd.array(mapped.to_numpy(), dtype="Float64").astype("Int64"))


def _concat_frames(parts: list[pd.DataFrame]) -> pd.DataFrame:
    return concat_frames([p for p in parts if len(p)])


def _overlap_losers(usage: pd.DataFrame, tolerance_days: float) -> np.ndarray:
    """Rows set aside by ``overlaps = "quarantine"``: in time order per meter, a period that
    overlaps the periods kept before it by more than ``tolerance_days`` (the earlier stays).

    The greedy rule is solved by a vectorised fixed point (each pass settles at least the
    next row of every chain of overlaps). Returns a mask in ``usage`` row order.
    """
    n = len(usage)
    out = np.zeros(n, dtype=bool)
    if n < 2:
        return out
    mc = np.asarray(_cat(usage["meter_id"]).codes, dtype=np.int64)
    s = _ns(usage["start"])
    e = _ns(usage["end"])
    order = np.lexsort((e, s, mc))
    mc, s, e = mc[order], s[order], e[order]
    same = np.r_[False, mc[1:] == mc[:-1]]
    tol = tolerance_days * NS_PER_DAY
    lose = np.zeros(n, dtype=bool)
    for _ in range(n):
        kept_end = np.where(lose, np.iinfo(np.int64).min, e)
        prev_end = pd.Series(kept_end).groupby(mc).cummax().shift(1).to_numpy(dtype=np.float64)
        prev_end = np.where(same, prev_end, -np.inf)
        overlap = np.minimum(e, prev_end) - s
        new = same & (s < prev_end) & (overlap > tol)
        if (new == lose).all():
            break
        lose = new
    out[order] = lose
    return out


def _report_to_quarantine(report: pd.DataFrame, tolerance_days: float = 1.0) -> pd.DataFrame:
    keys = (
        report["meter_id"].astype(str)
        + "|"
        + report["start"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        + "|"
        + report["end"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    reasons = [
        f"{issue} of {days:g} day(s) between periods of meter {m}"
        + (
            " (an inclusive-end bill pair sharing its boundary day? if the day belongs to the "
            "later bill, set [mapping.policy] overlaps = 'later_wins')"
            if issue == "overlap" and days <= tolerance_days + 1e-9
            else ""
        )
        for issue, days, m in zip(report["issue"], report["days"], report["meter_id"], strict=True)
    ]
    frame = pd.DataFrame(
        {
            "table": "usage",
            "record_key": keys,
            "source_id": None,
            "stage": "usage",
            "rule": "period_" + report["issue"].astype(str),
            "severity": report["severity"],
            "reason": reasons,
            "record": report.to_json(
                orient="records", lines=True, date_format="iso", double_precision=15
            ).splitlines(),
        }
    )
    return coerce_frame(frame, QUARANTINE)
