"""Deterministic synthetic provider data for the benchmark (generation is not timed).

``M`` meters x one year of half-hourly interval records, shaped exactly as a connector hands
them over after decoding JSON pages: a list of dicts, each with ``interval_start`` in ISO 8601
with the site's local UK offset (``Z`` in winter, ``+01:00`` in summer) and a ``value``, plus the
``_parent`` dict of path parameters the connector attaches (``{"meter_id": ...}``). The records
really go through :func:`json.loads`, so every string is a fresh object as in production.

Meters cycle through three provider units: ``kWh`` and ``Wh`` electricity and ``m3`` gas (to kWh
at the stated heating value, UK convention kWh = m³ x 1.02264 x CV / 3.6). About 1% of intervals
are missing and 0.1% are sent twice, right after the original (a page overlap); half of those
repeats carry a revised value, so the conflict policy decides the totals.

``truth`` is computed from the generating arrays, never from the records: a third, independent
answer both paths are checked against.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "CALORIFIC_VALUE",
    "GAS_FACTOR",
    "TIMEZONE",
    "UNITS",
    "SyntheticData",
    "generate",
]

TIMEZONE = "Europe/London"
#: Calorific value of the gas [MJ/m³], stated in the benchmark profile.
CALORIFIC_VALUE = 39.5
#: kWh per m³ of gas: UK convention (volume correction 1.02264, CV in MJ/m³, 3.6 MJ per kWh).
GAS_FACTOR = 1.02264 * CALORIFIC_VALUE / 3.6
#: Provider unit label, commodity and factor to kWh for meter ``i % 3``.
UNITS: tuple[tuple[str, str, float], ...] = (
    ("kWh", "electricity", 1.0),
    ("Wh", "electricity", 1e-3),
    ("m3", "gas", GAS_FACTOR),
)
_SITE = "S001"
_FMT = '{"interval_start":"%s","value":%s}'


@dataclass
class SyntheticData:
    """The generated provider data and what it should add up to.

    Attributes
    ----------
    raw : dict of str to list of dict
        ``sites``, ``meters`` and ``intervals`` records as a connector returns them.
    truth : pandas.DataFrame
        ``meter_id``, ``month`` (local ``YYYY-MM``), ``consumption`` [kWh], sorted.
    n_records : int
        Interval records, duplicates included.
    """

    raw: dict[str, list[dict[str, Any]]]
    truth: pd.DataFrame
    n_meters: int
    n_records: int
    n_missing: int
    n_duplicates: int
    n_revised: int
    year: int
    conflict: str
    info: dict[str, Any] = field(default_factory=dict)


def _timestamps(year: int) -> tuple[list[str], np.ndarray]:
    """Half-hour interval starts of local ``year``: ISO strings with offset, local month index."""
    start = pd.Timestamp(f"{year}-01-01", tz=TIMEZONE).tz_convert("UTC")
    end = pd.Timestamp(f"{year + 1}-01-01", tz=TIMEZONE).tz_convert("UTC")
    utc = pd.date_range(start, end, freq="30min", inclusive="left")
    local = utc.tz_convert(TIMEZONE)
    naive = local.tz_localize(None)
    offset_s = ((naive - utc.tz_localize(None)) // pd.Timedelta(seconds=1)).to_numpy()
    text = np.datetime_as_string(naive.to_numpy().astype("datetime64[s]"), unit="s")
    out = []
    for t, off in zip(text.tolist(), offset_s.tolist(), strict=True):
        if off == 0:
            out.append(t + "Z")
        else:
            sign = "+" if off > 0 else "-"
            h, m = divmod(abs(off) // 60, 60)
            out.append(f"{t}{sign}{h:02d}:{m:02d}")
    return out, (local.month.to_numpy() - 1).astype(np.int64)


def _values(rng: np.random.Generator, unit: str, n: int) -> np.ndarray:
    """A plausible half-hourly load: daily shape, noise; Wh as integers."""
    hours = (np.arange(n) % 48) / 2.0
    shape = 1.0 + 0.6 * np.sin((hours - 7.0) / 24.0 * 2 * np.pi).clip(0)
    base = rng.uniform(0.5, 8.0)
    kwh = base * shape * rng.uniform(0.7, 1.3, n)
    if unit == "Wh":
        return np.round(kwh * 1000.0)
    if unit == "m3":
        return np.round(kwh / GAS_FACTOR, 4)
    return np.round(kwh, 3)


def generate(
    meters: int,
    *,
    year: int = 2023,
    seed: int = 20240601,
    missing: float = 0.01,
    duplicated: float = 0.001,
    conflict: str = "last",
) -> SyntheticData:
    """Generate ``meters`` meters x one year of half-hourly records (deterministic).

    Parameters
    ----------
    meters : int
        Number of meters ``M``; units cycle kWh, Wh, m3.
    year : int
        Local calendar year covered (a non-leap year gives 17,520 intervals per meter).
    seed : int
        Seed of the generator; the same arguments always give the same records.
    missing, duplicated : float
        Fraction of intervals left out, and of the remaining ones sent twice.
    conflict : {"last", "first"}
        Which of two records for the same interval ``truth`` keeps.
    """
    if meters < 1:
        raise ValueError("meters must be at least 1")
    if conflict not in ("last", "first"):
        raise ValueError("conflict must be 'last' or 'first'")
    stamps, month_of = _timestamps(year)
    n_int = len(stamps)
    rng = np.random.default_rng(seed)
    site = {"id": _SITE, "name": "Benchmark site", "timezone": TIMEZONE}
    meter_records: list[dict[str, Any]] = []
    intervals: list[dict[str, Any]] = []
    truth_ids: list[str] = []
    truth_vals = np.zeros((meters, 12))
    n_missing = n_dup = n_rev = 0
    for i in range(meters):
        unit, commodity, factor = UNITS[i % 3]
        mid = f"M{i:05d}"
        meter_records.append(
            {
                "id": mid,
                "name": f"{commodity} meter {i}",
                "commodity": commodity,
                "unit": unit,
                "kind": "interval",
                "_parent": {"site_id": _SITE},
            }
        )
        values = _values(rng, unit, n_int)
        keep = rng.random(n_int) >= missing
        dup = keep & (rng.random(n_int) < duplicated)
        revise = dup & (rng.random(n_int) < 0.5)
        revised = values.copy()
        revised[revise] = np.round(values[revise] * 1.25 + 1.0, 0 if unit == "Wh" else 3)
        n_missing += int((~keep).sum())
        n_dup += int(dup.sum())
        n_rev += int(revise.sum())
        final = revised if conflict == "last" else values
        truth_vals[i] = np.bincount(month_of[keep], weights=final[keep], minlength=12) * factor
        truth_ids.append(mid)
        # rows in send order: every kept interval, its repeat right after it
        idx = np.flatnonzero(keep)
        reps = np.where(dup[idx], 2, 1)
        order = np.repeat(idx, reps)
        second = np.zeros(len(order), dtype=bool)
        second[np.cumsum(reps)[reps == 2] - 1] = True
        vals = values[order]
        vals[second] = revised[order[second]]
        if unit == "Wh":
            vtext = json.dumps(vals.astype(np.int64).tolist())[1:-1].split(", ")
        else:
            vtext = json.dumps(vals.tolist())[1:-1].split(", ")
        stext = [stamps[k] for k in order.tolist()]
        page = "[" + ",".join(map(_FMT.__mod__, zip(stext, vtext, strict=True))) + "]"
        records = json.loads(page)
        parent = {"meter_id": mid}
        for r in records:
            r["_parent"] = parent
        intervals.extend(records)
    months = [f"{year}-{m + 1:02d}" for m in range(12)]
    truth = pd.DataFrame(
        {
            "meter_id": np.repeat(truth_ids, 12),
            "month": months * meters,
            "consumption": truth_vals.ravel(),
        }
    )
    return SyntheticData(
        raw={"sites": [site], "meters": meter_records, "intervals": intervals},
        truth=truth,
        n_meters=meters,
        n_records=len(intervals),
        n_missing=n_missing,
        n_duplicates=n_dup,
        n_revised=n_rev,
        year=year,
        conflict=conflict,
        info={"intervals_per_meter": n_int, "calorific_value": CALORIFIC_VALUE},
    )
