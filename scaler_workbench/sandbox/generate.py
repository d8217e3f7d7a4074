"""Seeded, vectorised generator of the sandbox provider's data, with its ground truth.

:class:`SandboxData` builds a portfolio of sites and meters and, per meter, numpy arrays of
half-hourly intervals, daily register readings or bills. The HTTP server
(:mod:`scaler_workbench.sandbox.server`) slices these arrays to build pages;
:meth:`SandboxData.ground_truth` sums the same arrays (never HTTP responses) into monthly
consumption per meter in canonical units, which is what an end-to-end pipeline must reproduce.

Portfolio
---------
Site ``i`` (ids ``S001``, ``S002``, ...) gets ``meters_per_site`` meters (ids ``M0001``, ...). Slot
``j`` of a site chooses the meter:

======  =====================================================================================
j % 3   commodity / kind (rotating by ``i + j // 3``)
======  =====================================================================================
0       electricity / interval
1       solar, gas, water or electricity / interval
2       gas register, water bill, waste bill, electricity register, gas bill, water register
======  =====================================================================================

Units rotate per commodity over the meters (the labels are exactly these strings):

===========  ========================  ==========================================================
commodity    units                      canonical conversion
===========  ========================  ==========================================================
electricity  ``kWh``, ``Wh``, ``MWh``  kWh; Wh / 1000; MWh x 1000
solar        ``kWh``                   kWh
gas          ``m3``, ``kWh``, ``ft3``  kWh = m³ x 1.02264 x CV / 3.6 (UK); ft³ = 0.028316846592 m³
water        ``m3``, ``L``, ``US_gal`` m³; L / 1000; US_gal = 3.785411784 L
waste        ``kg``, ``t``             kg; t = 1000 kg
===========  ========================  ==========================================================

Sites are in ``Europe/London`` except every sixth site from the third (``America/New_York``) and
from the fifth (``Europe/Paris``), so any portfolio of three or more sites spans two zones.

Records
-------
- intervals: ``{id, interval_start, interval_end, value, estimated, exported}``, ISO 8601 with the
  site's local offset (``2024-03-31T00:30:00+00:00`` then ``2024-03-31T02:00:00+01:00``); local
  DST days have 46 or 50 half-hours. About 1 % of intervals are absent (never zero-filled), about
  0.3 % are estimated. ``exported`` is the energy sent to the grid for solar meters and ``0.0``
  for every other meter.
- registers: ``{id, read_at, register, estimated}`` at each local midnight from ``start`` to
  ``end`` inclusive. About 2 % of readings are absent, but never one on the first day of a month
  (so monthly consumption is always computable). The register wraps at
  ``10 ** register_digits``; the first register meter (and every other one) rolls over inside
  the period.
- bills: ``{id, period_start, period_end, amount, cost, currency, estimated}``; consecutive bills
  of 28-33 days (``period_end`` inclusive, next ``period_start`` = ``period_end`` + 1 day), the
  first starting 0-14 days after ``start`` so bills do not align with months. Each bill has a
  constant daily rate, so prorating by days is exact.

Traps (opt-in: ``traps=True`` or a sequence of names from :data:`TRAPS`)
-----------------------------------------------------------------------
Each trap is one extra meter appended to the FIRST site (ids continue after the regular meters,
so the regular meters, their records and their ground truth do not change; in trap mode every
meter record also carries ``installed_on`` and ``removed_on``, ``null`` unless set). Trap
interval meters are half-hourly electricity in kWh (solar for ``null_night``) WITHOUT the 1 %
random missing intervals or estimates, so their only gaps are the planted ones. Dates are
drawn from ``(seed, 2)``; the period needs three month starts (``m0, m1, ..., mlast``).

======================  ===================================================================
trap                    what the provider serves
======================  ===================================================================
``mid_month_start``     data from local midnight ``installed_on`` (in ``m1``, day 10-20);
                        the meter record says ``installed_on``
``mid_month_end``       data until local midnight ``removed_on`` (in ``mlast``, day 5-14),
                        the first day WITHOUT data; the record says ``removed_on``
``missing_day``         one whole local day of ``m1`` (day 8-22) absent
``hole_3h``             three hours (six half-hours) from a whole hour 08:00-15:00 of one
                        local day of the month before ``mlast`` absent
``null_night``          a solar meter whose intervals before 06:00 and from 18:00 local come
                        as ``"value": null`` (and ``"exported": null``); ground truth counts
                        them as no data, not zero
``duplicate_meter_id``  the meters pages list the meter twice: same id, the second record
                        with another ``name`` and ``serial``; data and ground truth once
``stale_meter``         listed, but its intervals endpoint is always empty
``bimonthly_bill``      water in ``m3``, bills of two calendar months from the 15th of ``m0``;
                        only bills that ended by ``end`` exist, so the next one is not due
                        (``end`` - last bill's end < its billing length)
======================  ===================================================================

:meth:`SandboxData.trap_facts` describes each planted trap (meter id, dates, holes with local
and UTC times, per-month days with data, first/last local day and timestamp, intervals, nulls,
expected half-hours, consumption) for tests that assert exact findings and spans.

Everything is deterministic for a given ``(seed, sites, meters_per_site, start, end, traps)``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from scaler_workbench.exceptions import SandboxError

__all__ = [
    "FT3_M3",
    "GAS_CORRECTION",
    "PRODUCTION_COMMODITIES",
    "TRAPS",
    "UNIT_DECIMALS",
    "USGAL_L",
    "BillSeries",
    "IntervalSeries",
    "RegisterSeries",
    "SandboxData",
    "TimeGrid",
    "canonical_factor",
    "canonical_unit",
    "get_sandbox_data",
]

HALF_HOUR = 1800
DAY = 86400
#: UK volume correction factor in the gas m³ -> kWh convention.
GAS_CORRECTION = 1.02264
#: one cubic foot in m³
FT3_M3 = 0.028316846592
#: one US gallon in litres
USGAL_L = 3.785411784
#: calorific value used to *generate* gas volumes [MJ/m³] (ground truth takes its own)
GENERATION_CV = 39.5

COMMODITY_UNITS: dict[str, tuple[str, ...]] = {
    "electricity": ("kWh", "Wh", "MWh"),
    "solar": ("kWh",),
    "gas": ("m3", "kWh", "ft3"),
    "water": ("m3", "L", "US_gal"),
    "waste": ("kg", "t"),
}
#: decimals of interval values and bill daily rates per unit label
UNIT_DECIMALS: dict[str, int] = {
    "kWh": 3,
    "Wh": 1,
    "MWh": 6,
    "m3": 4,
    "ft3": 2,
    "L": 1,
    "US_gal": 3,
    "kg": 2,
    "t": 5,
}
#: Commodities whose meters measure on-site generation: :meth:`SandboxData.ground_truth`
#: counts their energy as ``production`` (the sandbox profile maps them with
#: ``role = "production"``), never as consumption.
PRODUCTION_COMMODITIES = ("solar",)

_CANONICAL = {"electricity": "kWh", "solar": "kWh", "gas": "kWh", "water": "m³", "waste": "kg"}
_SLOT1 = (
    ("solar", "interval"),
    ("gas", "interval"),
    ("water", "interval"),
    ("electricity", "interval"),
)
_SLOT2 = (
    ("gas", "register"),
    ("water", "bill"),
    ("waste", "bill"),
    ("electricity", "register"),
    ("gas", "bill"),
    ("water", "register"),
)
_PLACES = {
    "Europe/London": (
        ("London", "EC1A", "GB", "GBP"),
        ("Manchester", "M1", "GB", "GBP"),
        ("Leeds", "LS1", "GB", "GBP"),
        ("Bristol", "BS1", "GB", "GBP"),
        ("Glasgow", "G1", "GB", "GBP"),
        ("Birmingham", "B1", "GB", "GBP"),
    ),
    "America/New_York": (("New York", "100", "US", "USD"), ("Boston", "021", "US", "USD")),
    "Europe/Paris": (("Paris", "750", "FR", "EUR"), ("Lyon", "690", "FR", "EUR")),
}
_STREETS = ("High Street", "Station Road", "Church Lane", "Mill Road", "Park Avenue", "King Street")
_TARIFF = {"electricity": 0.28, "solar": 0.0, "gas": 0.07, "water": 2.1, "waste": 0.15}

#: The traps :meth:`SandboxData.generate` can plant (``traps=True`` plants all of them), in the
#: order their meters are appended to the first site. See "Traps" in the module docstring.
TRAPS: tuple[str, ...] = (
    "mid_month_start",
    "mid_month_end",
    "missing_day",
    "hole_3h",
    "null_night",
    "duplicate_meter_id",
    "stale_meter",
    "bimonthly_bill",
)
#: local hours [h] of the null-night trap's nulls: before 06:00 and from 18:00
NIGHT_HOURS = (6.0, 18.0)
HOLE_HOURS = 3


def canonical_unit(commodity: str) -> str:
    """Return the canonical unit of a commodity (``kWh``, ``m³`` or ``kg``)."""
    return _CANONICAL[commodity]


def canonical_factor(commodity: str, unit: str, *, heating_value_mj_m3: float = 39.5) -> float:
    """Return the factor that turns a value in ``unit`` into the commodity's canonical unit.

    Parameters
    ----------
    commodity : str
        ``electricity``, ``solar``, ``gas``, ``water`` or ``waste``.
    unit : str
        One of the sandbox's unit labels (see the module docstring).
    heating_value_mj_m3 : float
        Gas calorific value [MJ/m³] for volume -> energy (UK convention).
    """
    gas_m3 = GAS_CORRECTION * heating_value_mj_m3 / 3.6
    table = {
        ("electricity", "kWh"): 1.0,
        ("electricity", "Wh"): 1e-3,
        ("electricity", "MWh"): 1e3,
        ("solar", "kWh"): 1.0,
        ("gas", "kWh"): 1.0,
        ("gas", "m3"): gas_m3,
        ("gas", "ft3"): FT3_M3 * gas_m3,
        ("water", "m3"): 1.0,
        ("water", "L"): 1e-3,
        ("water", "US_gal"): USGAL_L * 1e-3,
        ("waste", "kg"): 1.0,
        ("waste", "t"): 1e3,
    }
    try:
        return table[(commodity, unit)]
    except KeyError:
        raise SandboxError(
            f"no canonical factor for {commodity} in {unit!r}",
            unit=unit,
            hint="Use one of the unit labels listed in scaler_workbench.sandbox.generate.",
        ) from None


# --------------------------------------------------------------------------------------------
# time grids


def _offset_label(seconds: int) -> str:
    sign = "+" if seconds >= 0 else "-"
    minutes = abs(int(seconds)) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def _local_seconds(epoch: np.ndarray, tz: str) -> np.ndarray:
    """Local wall-clock seconds since 1970 for UTC epoch seconds ``epoch`` in zone ``tz``."""
    idx = pd.DatetimeIndex(epoch.astype("datetime64[s]")).tz_localize("UTC").tz_convert(tz)
    return np.asarray(idx.tz_localize(None).values.astype("datetime64[s]").astype(np.int64))


def _iso(epoch: np.ndarray, local: np.ndarray) -> list[str]:
    base = np.datetime_as_string(local.astype("datetime64[s]"), unit="s")
    offsets = local - epoch
    labels = {int(o): _offset_label(int(o)) for o in np.unique(offsets)}
    suffix = np.array([labels[int(o)] for o in np.unique(offsets)])
    pos = np.searchsorted(np.unique(offsets), offsets)
    return list(np.char.add(base, suffix[pos]).tolist())


def _local_midnight_epoch(day: date, tz: str) -> int:
    return int(pd.Timestamp(day.isoformat()).tz_localize(tz).timestamp())


@dataclass(frozen=True, eq=False)
class TimeGrid:
    """Half-hourly and daily time grids of one time zone over the generated period.

    Attributes
    ----------
    epoch : numpy.ndarray
        UTC epoch seconds of every half-hour start, plus the final end (length ``n + 1``). [s]
    iso : list of str
        ``epoch`` as ISO 8601 with the local offset.
    month : numpy.ndarray
        Local month of each half-hour start, as months since 1970-01 (length ``n``).
    hour, doy, weekday : numpy.ndarray
        Local hour of day [h], day of year and weekday (Monday = 0) of each half-hour start.
    day_epoch, day_iso : numpy.ndarray, list of str
        Local midnights from ``start`` to ``end`` inclusive.
    day_month : numpy.ndarray
        Local month of each midnight (months since 1970-01).
    """

    tz: str
    epoch: np.ndarray
    iso: list[str]
    month: np.ndarray
    hour: np.ndarray
    doy: np.ndarray
    weekday: np.ndarray
    day_epoch: np.ndarray
    day_iso: list[str]
    day_month: np.ndarray
    day_doy: np.ndarray
    day_weekday: np.ndarray

    @classmethod
    def build(cls, tz: str, start: date, end: date) -> TimeGrid:
        t0, t1 = _local_midnight_epoch(start, tz), _local_midnight_epoch(end, tz)
        epoch = np.arange(t0, t1 + 1, HALF_HOUR, dtype=np.int64)
        local = _local_seconds(epoch, tz)
        loc = local[:-1]
        days = pd.date_range(start.isoformat(), end.isoformat(), freq="D").tz_localize(tz)
        day_epoch = (
            days.tz_convert("UTC").tz_localize(None).values.astype("datetime64[s]").astype(np.int64)
        )
        day_local = _local_seconds(day_epoch, tz)
        return cls(
            tz=tz,
            epoch=epoch,
            iso=_iso(epoch, local),
            month=loc.astype("datetime64[s]").astype("datetime64[M]").astype(np.int64),
            hour=(loc % DAY) / 3600.0,
            doy=_day_of_year(loc),
            weekday=((loc // DAY) + 3) % 7,
            day_epoch=day_epoch,
            day_iso=_iso(day_epoch, day_local),
            day_month=day_local.astype("datetime64[s]").astype("datetime64[M]").astype(np.int64),
            day_doy=_day_of_year(day_local),
            day_weekday=((day_local // DAY) + 3) % 7,
        )


def _day_of_year(local: np.ndarray) -> np.ndarray:
    d = local.astype("datetime64[s]").astype("datetime64[D]")
    return (d - d.astype("datetime64[Y]")).astype(np.int64) + 1


def _month_label(code: int) -> str:
    return f"{1970 + code // 12:04d}-{code % 12 + 1:02d}"


# --------------------------------------------------------------------------------------------
# series


@dataclass(frozen=True, eq=False)
class IntervalSeries:
    """Half-hourly data of one meter: ``t_idx`` indexes the site's :class:`TimeGrid`.

    ``value`` and ``exported`` are in the meter's unit; absent intervals are simply not present.
    """

    t_idx: np.ndarray
    value: np.ndarray
    estimated: np.ndarray
    exported: np.ndarray


@dataclass(frozen=True, eq=False)
class RegisterSeries:
    """Daily register readings of one meter: ``d_idx`` indexes the grid's local midnights.

    ``cumulative`` is the unwrapped register in integer steps of ``1 / scale`` of the unit;
    the served ``register`` is ``(cumulative % (10**digits * scale)) / scale``.
    """

    d_idx: np.ndarray
    cumulative: np.ndarray
    estimated: np.ndarray
    scale: int
    digits: int

    @property
    def register(self) -> np.ndarray:
        """The register as served (wrapped at ``10 ** digits``) in the meter's unit."""
        return (self.cumulative % (10**self.digits * self.scale)) / self.scale


@dataclass(frozen=True, eq=False)
class BillSeries:
    """Consecutive bills of one meter. ``start``/``end`` are local dates, ``end`` inclusive."""

    start: np.ndarray  # datetime64[D]
    end: np.ndarray  # datetime64[D], inclusive
    amount: np.ndarray
    cost: np.ndarray
    estimated: np.ndarray
    currency: str


Series = IntervalSeries | RegisterSeries | BillSeries


# --------------------------------------------------------------------------------------------
# the portfolio


def _as_date(value: date | str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise SandboxError(
            f"not a date: {value!r}", hint="Pass start/end as 'YYYY-MM-DD' or datetime.date."
        ) from None


@dataclass(eq=False)
class SandboxData:
    """A deterministic portfolio: sites, meters and each meter's arrays.

    Parameters
    ----------
    seed : int
        Seed of every random draw.
    sites : int
        Number of sites (>= 1).
    meters_per_site : int
        Meters per site (>= 1); see the module docstring for the kinds.
    start, end : datetime.date or str
        First local day and the local midnight that ends the period (exclusive), e.g. the
        default ``2024-01-01`` .. ``2024-07-01`` is six whole months.
    traps : tuple of str
        Traps planted (see :data:`TRAPS` and the module docstring); empty by default.

    Attributes
    ----------
    sites : list of dict
        Site records exactly as served by ``GET /sites``.
    meters : list of dict
        Meter records exactly as served by ``GET /sites/{site_id}/meters``.
    meter_site : dict
        meter id -> site id.
    site_tz : dict
        site id -> IANA time zone.
    grids : dict
        time zone -> :class:`TimeGrid`.
    series : dict
        meter id -> :class:`IntervalSeries`, :class:`RegisterSeries` or :class:`BillSeries`.
    duplicate_records : dict
        meter id -> extra records listed with the same id right after the meter's own record
        (the ``duplicate_meter_id`` trap); ground truth counts the meter once.
    """

    seed: int = 0
    n_sites: int = 6
    meters_per_site: int = 3
    start: date = date(2024, 1, 1)
    end: date = date(2024, 7, 1)
    sites: list[dict[str, Any]] = field(default_factory=list, init=False)
    meters: list[dict[str, Any]] = field(default_factory=list, init=False)
    meter_site: dict[str, str] = field(default_factory=dict, init=False)
    site_tz: dict[str, str] = field(default_factory=dict, init=False)
    site_currency: dict[str, str] = field(default_factory=dict, init=False)
    grids: dict[str, TimeGrid] = field(default_factory=dict, init=False)
    series: dict[str, Series] = field(default_factory=dict, init=False)
    traps: tuple[str, ...] = ()
    duplicate_records: dict[str, list[dict[str, Any]]] = field(default_factory=dict, init=False)
    _facts: dict[str, dict[str, Any]] = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def generate(
        cls,
        *,
        seed: int = 0,
        sites: int = 6,
        meters_per_site: int = 3,
        start: date | str = "2024-01-01",
        end: date | str = "2024-07-01",
        traps: bool | Sequence[str] = False,
    ) -> SandboxData:
        """Generate a portfolio (see the class docstring for the parameters).

        ``traps=True`` plants every trap of :data:`TRAPS`; a sequence plants those named. The
        regular meters and their data are the same with or without traps.
        """
        d0, d1 = _as_date(start), _as_date(end)
        if sites < 1 or meters_per_site < 1:
            raise SandboxError(
                f"need at least one site and one meter per site, got {sites} x {meters_per_site}",
                hint="Pass sites >= 1 and meters_per_site >= 1.",
            )
        if (d1 - d0).days < 1:
            raise SandboxError(
                f"end {d1} must be after start {d0}", hint="Pass an end date after the start."
            )
        chosen = _trap_names(traps)
        if chosen and len(_month_starts(d0, d1)) < 3:
            raise SandboxError(
                f"traps need a period with at least three month starts, got {d0} .. {d1}",
                hint="Use a period of three months or more, e.g. the default 2024-01..2024-07.",
            )
        data = cls(
            seed=seed,
            n_sites=sites,
            meters_per_site=meters_per_site,
            start=d0,
            end=d1,
            traps=chosen,
        )
        data._build()
        if chosen:
            data._plant_traps(width=max(4, len(str(sites * meters_per_site))))
        return data

    # -- generation ---------------------------------------------------------------------------

    def _build(self) -> None:
        rng = np.random.default_rng([self.seed, 0])
        width = max(3, len(str(self.n_sites)))
        mwidth = max(4, len(str(self.n_sites * self.meters_per_site)))
        unit_counter: dict[str, int] = {}
        register_counter = 0
        n_meter = 0
        for i in range(self.n_sites):
            tz = "Europe/London"
            if i % 6 == 2:
                tz = "America/New_York"
            elif i % 6 == 4:
                tz = "Europe/Paris"
            places = _PLACES[tz]
            city, postcode, country, currency = places[(i // 6) % len(places)]
            site_id = f"S{i + 1:0{width}d}"
            area = float(round(rng.uniform(800, 20000), -1))
            number = int(rng.integers(1, 250))
            street = _STREETS[int(rng.integers(0, len(_STREETS)))]
            suffix = f" {int(rng.integers(1, 9))}{'ABDEFGHJ'[int(rng.integers(0, 8))]}"
            self.sites.append(
                {
                    "id": site_id,
                    "name": f"{city} site {i + 1}",
                    "address": {
                        "line1": f"{number} {street}",
                        "city": city,
                        "postcode": postcode + (suffix if country == "GB" else f"{i % 100:02d}"),
                        "country": country,
                    },
                    "timezone": tz,
                    "floor_area_m2": area,
                }
            )
            self.site_tz[site_id] = tz
            self.site_currency[site_id] = currency
            if tz not in self.grids:
                self.grids[tz] = TimeGrid.build(tz, self.start, self.end)
            for j in range(self.meters_per_site):
                turn = i + j // 3
                if j % 3 == 0:
                    commodity, kind = "electricity", "interval"
                elif j % 3 == 1:
                    commodity, kind = _SLOT1[turn % len(_SLOT1)]
                else:
                    commodity, kind = _SLOT2[turn % len(_SLOT2)]
                units = COMMODITY_UNITS[commodity]
                unit = units[unit_counter.get(commodity, 0) % len(units)]
                unit_counter[commodity] = unit_counter.get(commodity, 0) + 1
                n_meter += 1
                meter_id = f"M{n_meter:0{mwidth}d}"
                mrng = np.random.default_rng([self.seed, 1, n_meter])
                digits: int | None = None
                grid = self.grids[tz]
                if kind == "interval":
                    series: Series = self._intervals(mrng, grid, commodity, unit, area)
                elif kind == "register":
                    series = self._registers(
                        mrng, grid, commodity, unit, area, rollover=register_counter % 2 == 0
                    )
                    digits = series.digits
                    register_counter += 1
                else:
                    series = self._bills(mrng, commodity, unit, area, currency)
                label = {"interval": "half-hourly", "register": "register", "bill": "billed"}[kind]
                self.meters.append(
                    {
                        "id": meter_id,
                        "name": f"{commodity.capitalize()} {label} {j + 1}",
                        "commodity": commodity,
                        "unit": unit,
                        "kind": kind,
                        "serial": f"{commodity[0].upper()}{int(mrng.integers(10**7, 10**8))}",
                        "register_digits": digits,
                    }
                )
                self.meter_site[meter_id] = site_id
                self.series[meter_id] = series

    @staticmethod
    def _to_unit(canonical: np.ndarray, commodity: str, unit: str) -> np.ndarray:
        return canonical / canonical_factor(commodity, unit, heating_value_mj_m3=GENERATION_CV)

    def _intervals(
        self,
        rng: np.random.Generator,
        grid: TimeGrid,
        commodity: str,
        unit: str,
        area: float,
        *,
        drop: float = 0.01,
    ) -> IntervalSeries:
        n = grid.month.size
        hour, doy = grid.hour, grid.doy
        workday = (grid.weekday < 5).astype(np.float64)
        occupancy = workday * np.exp(-(((hour - 13.0) / 4.0) ** 2))
        winter = np.cos(2 * np.pi * (doy - 15) / 365.0)
        noise = 1.0 + 0.08 * rng.normal(size=n)
        exported = np.zeros(n)
        if commodity == "solar":
            peak = rng.uniform(20, 150)
            days = np.unique(doy)
            cloud_day = rng.uniform(0.25, 1.0, size=days.size)
            cloud = cloud_day[np.searchsorted(days, doy)]
            season = 0.55 - 0.45 * winter
            sun = np.clip(np.sin(np.pi * (hour - 6.0) / 12.0), 0.0, None) ** 1.5
            canonical = peak * 0.5 * sun * season * cloud
            exported_frac = rng.uniform(0.0, 0.7, size=n)
            exported = canonical * exported_frac
        elif commodity == "electricity":
            kw = area * rng.uniform(0.01, 0.04)
            canonical = kw * 0.5 * (0.35 + 0.65 * occupancy) * (1 + 0.15 * winter) * noise
        elif commodity == "gas":
            kw = area * rng.uniform(0.02, 0.06)
            heat = np.clip(0.15 + 0.85 * winter, 0.05, None) * (0.4 + 0.6 * workday)
            canonical = kw * 0.5 * heat * noise
        else:  # water, m³ per half-hour
            canonical = area * rng.uniform(2e-6, 8e-6) * (0.1 + occupancy) * noise
        canonical = np.clip(canonical, 0.0, None)
        dec = UNIT_DECIMALS[unit]
        value = np.round(self._to_unit(canonical, commodity, unit), dec)
        exported = np.round(self._to_unit(exported, commodity, unit), dec)
        keep = rng.random(n) >= drop
        estimated = rng.random(n) < 0.003
        return IntervalSeries(
            t_idx=np.flatnonzero(keep).astype(np.int32),
            value=value[keep],
            estimated=estimated[keep],
            exported=exported[keep],
        )

    def _daily_canonical(
        self,
        rng: np.random.Generator,
        doy: np.ndarray,
        weekday: np.ndarray,
        commodity: str,
        area: float,
    ) -> np.ndarray:
        n = doy.size
        winter = np.cos(2 * np.pi * (doy - 15) / 365.0)
        workday = (weekday < 5).astype(np.float64)
        noise = 1.0 + 0.1 * rng.normal(size=n)
        if commodity in ("electricity", "solar"):
            daily = area * rng.uniform(0.1, 0.4) * (0.6 + 0.4 * workday) * (1 + 0.15 * winter)
        elif commodity == "gas":
            daily = area * rng.uniform(0.1, 0.5) * np.clip(0.15 + 0.85 * winter, 0.05, None)
        elif commodity == "water":
            daily = area * rng.uniform(2e-4, 1e-3) * (0.3 + 0.7 * workday)
        else:  # waste kg/day
            daily = area * rng.uniform(0.005, 0.02) * (0.5 + 0.5 * workday)
        return np.clip(daily * noise, 0.0, None)

    def _registers(
        self,
        rng: np.random.Generator,
        grid: TimeGrid,
        commodity: str,
        unit: str,
        area: float,
        *,
        rollover: bool,
    ) -> RegisterSeries:
        n_days = grid.day_epoch.size  # midnights incl. the final one
        scale = 1000 if unit == "MWh" else 10
        daily = self._daily_canonical(
            rng, grid.day_doy[:-1], grid.day_weekday[:-1], commodity, area
        )
        steps = np.round(self._to_unit(daily, commodity, unit) * scale).astype(np.int64)
        total = int(steps.sum()) // scale + 1
        digits = max(5, len(str(total)) + 1)
        modulus = 10**digits * scale
        if rollover:  # wrap about 40 % into the period
            first = modulus - int(steps.sum() * 0.4) - 1
        else:
            first = int(rng.integers(0, modulus // 4))
        cumulative = first + np.concatenate(([0], np.cumsum(steps)))
        boundary = np.concatenate(([True], grid.day_month[1:] != grid.day_month[:-1]))
        boundary[-1] = True
        keep = boundary | (rng.random(n_days) >= 0.02)
        estimated = (rng.random(n_days) < 0.03) & ~boundary
        return RegisterSeries(
            d_idx=np.flatnonzero(keep).astype(np.int32),
            cumulative=cumulative[keep],
            estimated=estimated[keep],
            scale=scale,
            digits=digits,
        )

    def _bills(
        self, rng: np.random.Generator, commodity: str, unit: str, area: float, currency: str
    ) -> BillSeries:
        total_days = (self.end - self.start).days
        lengths = rng.integers(28, 34, size=total_days // 28 + 2)
        first = int(rng.integers(min(3, total_days // 8), max(min(15, total_days // 4), 1)))
        starts = first + np.concatenate(([0], np.cumsum(lengths)[:-1]))
        ends_excl = starts + lengths
        ok = ends_excl <= total_days
        starts, lengths = starts[ok], lengths[ok]
        d0 = np.datetime64(self.start.isoformat(), "D")
        start = d0 + starts
        end = start + (lengths - 1)
        doy = ((start - start.astype("datetime64[Y]")).astype(np.int64) + lengths // 2) % 365 + 1
        daily = self._daily_canonical(rng, doy, np.zeros(doy.size, dtype=np.int64), commodity, area)
        dec = max(UNIT_DECIMALS[unit] - 1, 0)
        rate = np.round(self._to_unit(daily, commodity, unit), dec)
        rate = np.where(rate <= 0, 10.0**-dec, rate)
        amount = np.round(rate * lengths, dec + 2)
        tariff = _TARIFF[commodity] * canonical_factor(
            commodity, unit, heating_value_mj_m3=GENERATION_CV
        )
        cost = np.round(amount * tariff + 25.0, 2)
        estimated = rng.random(start.size) < 0.1
        return BillSeries(
            start=start, end=end, amount=amount, cost=cost, estimated=estimated, currency=currency
        )

    # -- traps --------------------------------------------------------------------------------

    def _plant_traps(self, *, width: int) -> None:
        """Append one meter per trap to the first site (see "Traps" in the module docstring)."""
        site_id = self.sites[0]["id"]
        tz = self.site_tz[site_id]
        grid = self.grids[tz]
        area = float(self.sites[0]["floor_area_m2"])
        currency = self.site_currency[site_id]
        months = _month_starts(self.start, self.end)
        rng = np.random.default_rng([self.seed, 2])
        installed = months[1] + np.timedelta64(int(rng.integers(9, 20)), "D")
        removed = min(
            months[-1] + np.timedelta64(int(rng.integers(4, 14)), "D"),
            np.datetime64(self.end.isoformat(), "D") - np.timedelta64(1, "D"),
        )
        removed = max(removed, months[-1] + np.timedelta64(1, "D"))
        missing_day = months[1] + np.timedelta64(int(rng.integers(7, 22)), "D")
        hole_day = months[-2] + np.timedelta64(int(rng.integers(4, 25)), "D")
        hole_hour = int(rng.integers(8, 16))
        for m in self.meters:
            m.setdefault("installed_on", None)
            m.setdefault("removed_on", None)
        n_meter = len(self.meters)
        slot_start = grid.epoch[:-1]
        for trap in TRAPS:
            if trap not in self.traps:
                continue
            n_meter += 1
            meter_id = f"M{n_meter:0{width}d}"
            mrng = np.random.default_rng([self.seed, 3, n_meter])
            commodity, unit, kind = "electricity", "kWh", "interval"
            fields: dict[str, Any] = {}
            facts: dict[str, Any] = {}
            if trap == "bimonthly_bill":
                commodity, unit, kind = "water", "m3", "bill"
                bills = self._bimonthly_bills(mrng, months[0], unit, area, currency)
                series: Series = bills
                facts = _bill_facts(bills, self.end)
            elif trap == "stale_meter":
                empty = np.zeros(0)
                series = IntervalSeries(
                    t_idx=np.zeros(0, dtype=np.int32),
                    value=empty,
                    estimated=np.zeros(0, dtype=bool),
                    exported=empty,
                )
            else:
                if trap == "null_night":
                    commodity = "solar"
                full = self._intervals(mrng, grid, commodity, unit, area, drop=0.0)
                keep = np.ones(full.t_idx.size, dtype=bool)
                starts = slot_start[full.t_idx]
                value, exported = full.value, full.exported
                if trap == "mid_month_start":
                    fields["installed_on"] = str(installed)
                    keep = starts >= _local_midnight_epoch(_to_date(installed), tz)
                elif trap == "mid_month_end":
                    fields["removed_on"] = str(removed)
                    keep = starts < _local_midnight_epoch(_to_date(removed), tz)
                elif trap == "missing_day":
                    d = _to_date(missing_day)
                    lo = _local_midnight_epoch(d, tz)
                    hi = _local_midnight_epoch(_to_date(missing_day + 1), tz)
                    keep = (starts < lo) | (starts >= hi)
                    facts["missing_dates"] = [str(missing_day)]
                elif trap == "hole_3h":
                    local = pd.Timestamp(str(hole_day)) + pd.Timedelta(hours=hole_hour)
                    lo = int(local.tz_localize(tz).timestamp())
                    hi = int((local + pd.Timedelta(hours=HOLE_HOURS)).tz_localize(tz).timestamp())
                    keep = (starts < lo) | (starts >= hi)
                    facts["holes"] = [
                        {
                            "date": str(hole_day),
                            "start": f"{hole_hour:02d}:00",
                            "end": f"{hole_hour + HOLE_HOURS:02d}:00",
                            "start_utc": datetime.fromtimestamp(lo, UTC).isoformat(),
                            "end_utc": datetime.fromtimestamp(hi, UTC).isoformat(),
                            "intervals": (hi - lo) // HALF_HOUR,
                        }
                    ]
                elif trap == "null_night":
                    hour = grid.hour[full.t_idx]
                    night = (hour < NIGHT_HOURS[0]) | (hour >= NIGHT_HOURS[1])
                    value = np.where(night, np.nan, value)
                    exported = np.where(night, np.nan, exported)
                    facts["night"] = {
                        "before": f"{int(NIGHT_HOURS[0]):02d}:00",
                        "from": f"{int(NIGHT_HOURS[1]):02d}:00",
                    }
                series = IntervalSeries(  # measured only: complete months are "actual"
                    t_idx=full.t_idx[keep],
                    value=value[keep],
                    estimated=np.zeros(int(keep.sum()), dtype=bool),
                    exported=exported[keep],
                )
            name = f"{commodity.capitalize()} trap {trap}"
            record = {
                "id": meter_id,
                "name": name,
                "commodity": commodity,
                "unit": unit,
                "kind": kind,
                "serial": f"{commodity[0].upper()}{int(mrng.integers(10**7, 10**8))}",
                "register_digits": None,
                "installed_on": None,
                "removed_on": None,
                **fields,
            }
            self.meters.append(record)
            self.meter_site[meter_id] = site_id
            self.series[meter_id] = series
            if trap == "duplicate_meter_id":
                twin = {
                    **record,
                    "name": f"{name} (second record)",
                    "serial": f"{commodity[0].upper()}{int(mrng.integers(10**7, 10**8))}",
                }
                self.duplicate_records[meter_id] = [twin]
                facts["records"] = [dict(record), dict(twin)]
            self._facts[trap] = {
                "trap": trap,
                "meter_id": meter_id,
                "site_id": site_id,
                "timezone": tz,
                "kind": kind,
                **fields,
                **facts,
            }
        self.__dict__.pop("_midx", None)  # meter index rebuilt with the trap meters
        for facts in self._facts.values():
            if facts["kind"] == "interval":
                facts["months"] = self._interval_month_facts(facts["meter_id"])
            facts["ground_truth"] = self.ground_truth(meters=[facts["meter_id"]]).to_dict("records")

    def _bimonthly_bills(
        self,
        rng: np.random.Generator,
        first_month: np.datetime64,
        unit: str,
        area: float,
        currency: str,
    ) -> BillSeries:
        """Bills of two calendar months each from the 15th; only those that ended by ``end``."""
        end = np.datetime64(self.end.isoformat(), "D")
        m0 = first_month.astype("datetime64[M]")
        k = np.arange(0, 2 * ((self.end - self.start).days // 28 + 2), 2)
        start = (m0 + k).astype("datetime64[D]") + np.timedelta64(14, "D")
        nxt = (m0 + k + 2).astype("datetime64[D]") + np.timedelta64(14, "D")  # bill k+1 starts
        ok = nxt <= end
        start, nxt = start[ok], nxt[ok]
        lengths = (nxt - start).astype(np.int64)
        doy = ((start - start.astype("datetime64[Y]")).astype(np.int64) + lengths // 2) % 365 + 1
        daily = self._daily_canonical(rng, doy, np.zeros(doy.size, dtype=np.int64), "water", area)
        dec = max(UNIT_DECIMALS[unit] - 1, 0)
        rate = np.round(self._to_unit(daily, "water", unit), dec)
        rate = np.where(rate <= 0, 10.0**-dec, rate)
        amount = np.round(rate * lengths, dec + 2)
        cost = np.round(amount * _TARIFF["water"] + 25.0, 2)
        return BillSeries(
            start=start,
            end=nxt - 1,
            amount=amount,
            cost=cost,
            estimated=np.zeros(start.size, dtype=bool),
            currency=currency,
        )

    def _interval_month_facts(self, meter_id: str) -> list[dict[str, Any]]:
        """Per local month of the period: what the meter's served intervals cover."""
        s = self.series[meter_id]
        assert isinstance(s, IntervalSeries)
        grid = self.grid_of(meter_id)
        local = _local_seconds(grid.epoch, grid.tz)
        slot_day = local[:-1] // DAY
        has_value = ~np.isnan(s.value)
        factor = canonical_factor("electricity", "kWh")  # trap interval meters are kWh
        out = []
        for code in np.unique(grid.month):
            in_month = grid.month == code
            days = np.unique(slot_day[in_month])
            mine = grid.month[s.t_idx] == code
            with_value = s.t_idx[mine & has_value]
            data_days = np.unique(slot_day[with_value])
            row: dict[str, Any] = {
                "month": _month_label(int(code)),
                "days_in_month": int(days.size),
                "days_with_data": int(data_days.size),
                "first_day": _day_label(data_days[0]) if data_days.size else None,
                "last_day": _day_label(data_days[-1]) if data_days.size else None,
                "span_end": _day_label(data_days[-1] + 1) if data_days.size else None,
                "first_local": _local_label(local[with_value[0]]) if with_value.size else None,
                "last_local": _local_label(local[with_value[-1] + 1]) if with_value.size else None,
                "intervals": int(mine.sum()),
                "null_intervals": int((mine & ~has_value).sum()),
                "expected_intervals": int(in_month.sum()),
                "consumption": float(
                    np.bincount(
                        np.zeros(with_value.size, dtype=np.int64),
                        weights=s.value[mine & has_value],
                        minlength=1,
                    )[0]
                    * factor
                ),
            }
            out.append(row)
        return out

    def trap_facts(self) -> dict[str, dict[str, Any]]:
        """What each planted trap is, for tests that assert exact findings and spans.

        Returns
        -------
        dict
            trap name (see :data:`TRAPS`) -> a JSON-friendly dict (a fresh copy per call):

            - every trap: ``trap``, ``meter_id``, ``site_id``, ``timezone``, ``kind``
              (``interval`` or ``bill``) and ``ground_truth`` (the meter's rows of
              :meth:`ground_truth`: ``meter_id, month, consumption, unit``; none for the stale
              meter).
            - interval traps: ``months``, one dict per local month of the period:
              ``month``, ``days_in_month``, ``days_with_data`` (local days with a non-null
              value), ``first_day``/``last_day`` (local ``YYYY-MM-DD`` with data),
              ``span_end`` (the day after ``last_day``), ``first_local``/``last_local``
              (local ``YYYY-MM-DDTHH:MM`` of the first interval start / last interval end
              with a value), ``intervals`` (records served), ``null_intervals``,
              ``expected_intervals`` (half-hours of the local month: DST days count 46 or 50)
              and ``consumption`` [kWh] (non-null values: the meter's energy, which the
              ground truth counts as ``production`` for the solar ``null_night`` meter).
            - ``mid_month_start``: ``installed_on`` (first local day with data);
              ``mid_month_end``: ``removed_on`` (the first local day WITHOUT data);
              ``missing_day``: ``missing_dates``; ``hole_3h``: ``holes`` (``date``, local
              ``start``/``end`` ``HH:MM``, ``start_utc``/``end_utc``, ``intervals``);
              ``null_night``: ``night`` (``before``/``from`` local ``HH:MM``);
              ``duplicate_meter_id``: ``records`` (both records as listed);
              ``bimonthly_bill``: ``bills`` (``period_start``/``period_end`` inclusive),
              ``billing_days``, ``billed_until`` (day after the last bill), ``next_bill_end``
              (last day of the bill not yet due) and ``period_end`` (the sandbox's ``end``).

        Notes
        -----
        Facts describe the whole period (no ``as_of`` cut). Trap interval meters have no
        random missing intervals or estimates, so their only gaps are the planted ones.
        """
        return copy.deepcopy(self._facts)

    def listed_meters(self, site_id: str | None = None) -> list[dict[str, Any]]:
        """Meter records as the meters pages list them (duplicate records included).

        Each meter's records of :attr:`duplicate_records` follow its own record.
        """
        out: list[dict[str, Any]] = []
        for m in self.meters:
            if site_id is None or self.meter_site[m["id"]] == site_id:
                out.append(m)
                out.extend(self.duplicate_records.get(m["id"], ()))
        return out

    # -- lookup -------------------------------------------------------------------------------

    def meter(self, meter_id: str) -> dict[str, Any]:
        """Return the meter record ``meter_id`` (raises ``KeyError`` if unknown)."""
        return self._meter_index()[meter_id]

    def _meter_index(self) -> dict[str, dict[str, Any]]:
        idx: dict[str, dict[str, Any]] | None = getattr(self, "_midx", None)
        if idx is None:
            idx = {m["id"]: m for m in self.meters}
            self._midx = idx
        return idx

    def meters_of(self, site_id: str) -> list[dict[str, Any]]:
        """Meter records of site ``site_id`` in id order."""
        return [m for m in self.meters if self.meter_site[m["id"]] == site_id]

    def grid_of(self, meter_id: str) -> TimeGrid:
        """The time grid of the meter's site."""
        return self.grids[self.site_tz[self.meter_site[meter_id]]]

    @property
    def period_end_epoch(self) -> int:
        """UTC epoch seconds of the latest local ``end`` midnight over every zone. [s]"""
        return max(int(g.epoch[-1]) for g in self.grids.values())

    @property
    def n_intervals(self) -> int:
        """Number of interval records in the whole portfolio (before any ``as_of`` cut)."""
        return sum(s.t_idx.size for s in self.series.values() if isinstance(s, IntervalSeries))

    # -- records (used by the server; slices only) -------------------------------------------

    def interval_records(self, meter_id: str, lo: int, hi: int) -> list[dict[str, Any]]:
        """Interval records ``lo:hi`` (positions in the meter's series) as served."""
        s = self.series[meter_id]
        assert isinstance(s, IntervalSeries)
        iso = self.grid_of(meter_id).iso
        ks = s.t_idx[lo:hi].tolist()
        return [
            {
                "id": f"{meter_id}-{k}",
                "interval_start": iso[k],
                "interval_end": iso[k + 1],
                "value": None if v != v else v,  # NaN (a null-night trap) is served as null
                "estimated": e,
                "exported": None if x != x else x,
            }
            for k, v, e, x in zip(
                ks,
                s.value[lo:hi].tolist(),
                s.estimated[lo:hi].tolist(),
                s.exported[lo:hi].tolist(),
                strict=True,
            )
        ]

    def interval_json(self, meter_id: str, lo: int, hi: int) -> str:
        """:meth:`interval_records` ``lo:hi`` already encoded as a JSON array (2-3x faster).

        Safe because every string is an id or an ISO timestamp (no characters to escape) and
        every float is finite (``repr`` of a finite float is valid JSON) or NaN, written
        ``null`` (only trap meters hold NaN).
        """
        s = self.series[meter_id]
        assert isinstance(s, IntervalSeries)
        iso = self.grid_of(meter_id).iso
        items = [
            f'{{"id":"{meter_id}-{k}","interval_start":"{iso[k]}","interval_end":'
            f'"{iso[k + 1]}","value":{v!r},"estimated":{"true" if e else "false"},'
            f'"exported":{x!r}}}'
            if v == v and x == x
            else f'{{"id":"{meter_id}-{k}","interval_start":"{iso[k]}","interval_end":'
            f'"{iso[k + 1]}","value":{_json_num(v)},"estimated":{"true" if e else "false"},'
            f'"exported":{_json_num(x)}}}'
            for k, v, e, x in zip(
                s.t_idx[lo:hi].tolist(),
                s.value[lo:hi].tolist(),
                s.estimated[lo:hi].tolist(),
                s.exported[lo:hi].tolist(),
                strict=True,
            )
        ]
        return "[" + ",".join(items) + "]"

    def reading_records(self, meter_id: str, lo: int, hi: int) -> list[dict[str, Any]]:
        """Register reading records ``lo:hi`` as served."""
        s = self.series[meter_id]
        assert isinstance(s, RegisterSeries)
        iso = self.grid_of(meter_id).day_iso
        ks = s.d_idx[lo:hi].tolist()
        return [
            {"id": f"{meter_id}-r{k}", "read_at": iso[k], "register": r, "estimated": e}
            for k, r, e in zip(
                ks, s.register[lo:hi].tolist(), s.estimated[lo:hi].tolist(), strict=True
            )
        ]

    def bill_records(self, meter_id: str, lo: int, hi: int) -> list[dict[str, Any]]:
        """Bill records ``lo:hi`` as served."""
        s = self.series[meter_id]
        assert isinstance(s, BillSeries)
        starts = np.datetime_as_string(s.start[lo:hi]).tolist()
        ends = np.datetime_as_string(s.end[lo:hi]).tolist()
        return [
            {
                "id": f"{meter_id}-b{lo + n}",
                "period_start": a,
                "period_end": b,
                "amount": amt,
                "cost": c,
                "currency": s.currency,
                "estimated": e,
            }
            for n, (a, b, amt, c, e) in enumerate(
                zip(
                    starts,
                    ends,
                    s.amount[lo:hi].tolist(),
                    s.cost[lo:hi].tolist(),
                    s.estimated[lo:hi].tolist(),
                    strict=True,
                )
            )
        ]

    def bill_end_epochs(self, meter_id: str) -> np.ndarray:
        """UTC epoch seconds of the local midnight after each bill's last day. [s]"""
        s = self.series[meter_id]
        assert isinstance(s, BillSeries)
        grid = self.grid_of(meter_id)
        d0 = np.datetime64(self.start.isoformat(), "D")
        return grid.day_epoch[(s.end - d0).astype(np.int64) + 1]

    # -- ground truth -------------------------------------------------------------------------

    def ground_truth(
        self,
        heating_value_mj_m3: float = 39.5,
        *,
        as_of: datetime | None = None,
        meters: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Monthly consumption per meter in canonical units, from the generated arrays.

        Parameters
        ----------
        heating_value_mj_m3 : float
            Gas calorific value [MJ/m³]: kWh = m³ x 1.02264 x CV / 3.6.
        as_of : datetime, optional
            Only data available at this instant: intervals that ended by then (partial months
            included), register months whose closing midnight reading is not after it, and
            bills whose last day ended by then. Default: everything.
        meters : sequence of str, optional
            Restrict to these meter ids.

        Returns
        -------
        pandas.DataFrame
            ``meter_id, month`` (``YYYY-MM`` in the site's local time), ``consumption`` (float),
            ``production`` (float: a generating meter's energy, NaN for every other meter) and
            ``unit`` (``kWh``, ``m³`` or ``kg``), sorted by meter and month.

        Notes
        -----
        A meter of a commodity in :data:`PRODUCTION_COMMODITIES` (solar) measures on-site
        generation: its energy is ``production`` and its ``consumption`` is 0 (docs/mapping.md,
        "Value roles"); the provider's own ``/summary`` totals (:meth:`monthly_totals`) are
        still what the meter measured.
        Intervals are summed by the local month of ``interval_start``. Register months are the
        difference of the readings at the local midnights that bound the month (unwrapped, so
        rollovers count correctly). Bills are prorated over months by days.
        """
        frame = self._monthly(
            as_of=as_of, meters=meters, heating_value_mj_m3=heating_value_mj_m3, canonical=True
        )
        commodity = {m["id"]: m["commodity"] for m in self.meters}
        makes = frame["meter_id"].map(commodity).isin(PRODUCTION_COMMODITIES).to_numpy(bool)
        energy = frame["consumption"].to_numpy(dtype=np.float64)
        frame.insert(3, "production", np.where(makes, energy, np.nan))
        frame["consumption"] = np.where(makes, 0.0, energy)
        return frame

    def monthly_totals(
        self, meter_id: str, *, as_of: datetime | None = None
    ) -> list[dict[str, Any]]:
        """One meter's monthly totals in the meter's OWN unit (what ``/summary`` serves).

        Same sums as :meth:`ground_truth` (local months; intervals by ``interval_start``,
        register month differences, bills prorated by days) without the canonical factor.

        Returns
        -------
        list of dict
            ``{month (YYYY-MM), period_start, period_end (YYYY-MM-DD local, end exclusive),
            total, unit}`` in month order.
        """
        frame = self._monthly(as_of=as_of, meters=[meter_id], canonical=False)
        unit = self.meter(meter_id)["unit"]
        out = []
        for month, total in zip(frame["month"], frame["consumption"], strict=True):
            first = date(int(month[:4]), int(month[5:]), 1)
            nxt = date(first.year + (first.month == 12), first.month % 12 + 1, 1)
            out.append(
                {
                    "month": month,
                    "period_start": first.isoformat(),
                    "period_end": nxt.isoformat(),
                    "total": float(total),
                    "unit": unit,
                }
            )
        return out

    def _monthly(
        self,
        *,
        as_of: datetime | None,
        meters: Sequence[str] | None,
        heating_value_mj_m3: float = 39.5,
        canonical: bool,
    ) -> pd.DataFrame:
        cut = math.inf if as_of is None else _epoch(as_of)
        wanted = set(meters) if meters is not None else None
        rows_meter: list[str] = []
        rows_month: list[int] = []
        rows_value: list[float] = []
        rows_unit: list[str] = []
        for m in self.meters:
            mid = m["id"]
            if wanted is not None and mid not in wanted:
                continue
            factor = (
                canonical_factor(m["commodity"], m["unit"], heating_value_mj_m3=heating_value_mj_m3)
                if canonical
                else 1.0
            )
            grid = self.grid_of(mid)
            s = self.series[mid]
            if isinstance(s, IntervalSeries):
                ok = (grid.epoch[s.t_idx + 1] <= cut) & ~np.isnan(s.value)  # null = no data
                codes = grid.month[s.t_idx[ok]]
                months, inv = np.unique(codes, return_inverse=True)
                sums: np.ndarray = np.bincount(inv, weights=s.value[ok], minlength=months.size)
            elif isinstance(s, RegisterSeries):
                at_boundary = np.concatenate(([True], grid.day_month[1:] != grid.day_month[:-1]))[
                    s.d_idx
                ]
                pos = np.flatnonzero(at_boundary & (grid.day_epoch[s.d_idx] <= cut))
                if pos.size < 2:
                    continue
                months = grid.day_month[s.d_idx[pos[:-1]]]
                sums = np.diff(s.cumulative[pos]) / s.scale
            else:
                ok = self.bill_end_epochs(mid) <= cut
                months, sums = _prorate(s.start[ok], s.end[ok], s.amount[ok])
            rows_meter += [mid] * len(months)
            rows_month += [int(c) for c in months]
            rows_value += (np.asarray(sums, dtype=np.float64) * factor).tolist()
            rows_unit += [canonical_unit(m["commodity"]) if canonical else m["unit"]] * len(months)
        frame = pd.DataFrame(
            {
                "meter_id": rows_meter,
                "month": [_month_label(c) for c in rows_month],
                "consumption": np.asarray(rows_value, dtype=np.float64),
                "unit": rows_unit,
            }
        )
        return frame.sort_values(["meter_id", "month"], ignore_index=True)


def _trap_names(traps: bool | Sequence[str]) -> tuple[str, ...]:
    if traps is True:
        return TRAPS
    if traps is False or traps is None:
        return ()
    if isinstance(traps, str):
        traps = (traps,)
    unknown = [t for t in traps if t not in TRAPS]
    if unknown:
        raise SandboxError(
            f"unknown trap(s) {unknown}", hint=f"Choose from {', '.join(TRAPS)} (or traps=True)."
        )
    return tuple(t for t in TRAPS if t in set(traps))


def _month_starts(start: date, end: date) -> list[np.datetime64]:
    """First days of the months that start inside ``[start, end)`` (datetime64[D])."""
    first = np.datetime64(start.isoformat(), "D").astype("datetime64[M]")
    if np.datetime64(start.isoformat(), "D") > first.astype("datetime64[D]"):
        first = first + 1
    stop = np.datetime64(end.isoformat(), "D")
    out = []
    m = first
    while m.astype("datetime64[D]") < stop:
        out.append(m.astype("datetime64[D]"))
        m = m + 1
    return out


def _add_months(day: np.datetime64, months: int) -> np.datetime64:
    """``day`` plus whole calendar months (same day of month; days 1-28 only)."""
    first = day.astype("datetime64[M]")
    return (first + months).astype("datetime64[D]") + (day - first.astype("datetime64[D]"))


def _json_num(v: float) -> str:
    return "null" if v != v else repr(v)


def _to_date(day: np.datetime64) -> date:
    return date.fromisoformat(str(day.astype("datetime64[D]")))


def _day_label(local_day: int | np.integer[Any]) -> str:
    return str(np.datetime64(int(local_day), "D"))


def _local_label(local_seconds: int | np.integer[Any]) -> str:
    return str(np.datetime64(int(local_seconds), "s"))[:16]


def _bill_facts(bills: BillSeries, end: date) -> dict[str, Any]:
    lengths = (bills.end + 1 - bills.start).astype(np.int64)
    last_end = bills.end[-1] if bills.end.size else None
    return {
        "bills": [
            {"period_start": str(a), "period_end": str(b)}
            for a, b in zip(bills.start, bills.end, strict=True)
        ],
        "billing_days": [int(n) for n in lengths],
        "billed_until": str(last_end + 1) if last_end is not None else None,
        "next_bill_end": str(_add_months(last_end + 1, 2) - 1) if last_end is not None else None,
        "period_end": end.isoformat(),
    }


def _prorate(
    start: np.ndarray, end: np.ndarray, amount: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Split inclusive-end bills into months by days; return (month codes, sums)."""
    if start.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    end_excl = end + 1
    ndays = (end_excl - start).astype(np.int64)
    m0 = start.astype("datetime64[M]").astype(np.int64).min()
    m1 = (end_excl - 1).astype("datetime64[M]").astype(np.int64).max()
    codes = np.arange(m0, m1 + 1)
    mstart = codes.astype("datetime64[M]").astype("datetime64[D]")
    mend = (codes + 1).astype("datetime64[M]").astype("datetime64[D]")
    lo = np.maximum(start[:, None], mstart[None, :])
    hi = np.minimum(end_excl[:, None], mend[None, :])
    overlap = np.clip((hi - lo).astype(np.int64), 0, None)
    sums = (amount[:, None] * overlap / ndays[:, None]).sum(axis=0)
    used = overlap.sum(axis=0) > 0
    return codes[used], sums[used]


def _epoch(ts: datetime) -> float:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.timestamp()


@lru_cache(maxsize=8)
def get_sandbox_data(
    seed: int = 0,
    sites: int = 6,
    meters_per_site: int = 3,
    start: str = "2024-01-01",
    end: str = "2024-07-01",
    traps: tuple[str, ...] | bool = False,
) -> SandboxData:
    """Generate (or reuse, the data being immutable) a :class:`SandboxData` for these options."""
    return SandboxData.generate(
        seed=seed, sites=sites, meters_per_site=meters_per_site, start=start, end=end, traps=traps
    )
