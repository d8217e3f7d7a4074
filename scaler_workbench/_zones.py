"""Zones the provider states for its sites, checked against the zones the profile gives them.

A private leaf (imports pandas, numpy and :mod:`scaler_workbench.exceptions` only), used by the
usage stage before any local-time aggregation. A site's months are cut in the zone of its
series rows (``timezone``: the asset's ``[mapping.assets.fields] timezone``, else
``[provider] timezone``); when the mapping also reads the provider's own statement of the
site's zone into the asset column ``stated_timezone`` (e.g. ``stated_timezone =
"timeZone"``), the two are compared per asset **by UTC offsets over the years of that asset's
data** (not by name: ``Europe/Paris`` and ``Europe/Berlin`` agree, ``CET`` too), and a
disagreement raises :class:`~scaler_workbench.exceptions.TimezoneMismatchError` naming the
asset, both zones and the fix.

===========================  ===============================================================
name                         what
===========================  ===============================================================
:data:`STATED_COLUMN`        the asset column holding the provider's zone (``stated_timezone``)
:func:`zones_agree`          two IANA zones with the same offsets in the given years?
:func:`check_stated_zones`   the check of one set of Tables (raises on a mismatch)
===========================  ===============================================================
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from scaler_workbench.exceptions import TimezoneMismatchError

__all__ = ["STATED_COLUMN", "check_stated_zones", "zones_agree"]

#: The asset column a mapping fills with the provider's statement of the site's zone.
STATED_COLUMN = "stated_timezone"

#: Offsets are compared every 15 minutes [min] (the finest DST step in use is 30 minutes).
_STEP = "15min"


def _valid(zone: str) -> bool:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


@lru_cache(maxsize=256)
def _offsets(zone: str, first: int, last: int) -> np.ndarray:
    """UTC offsets [ns] of ``zone`` every 15 minutes from ``first``-01-01 to ``last``-12-31 UTC."""
    utc = pd.date_range(
        f"{first}-01-01", f"{last + 1}-01-01", freq=_STEP, tz="UTC", inclusive="left"
    )
    local = utc.tz_convert(zone).tz_localize(None)
    return np.asarray(local.asi8 - utc.tz_localize(None).asi8)


def zones_agree(a: str, b: str, years: Iterable[int]) -> bool:
    """Do the IANA zones ``a`` and ``b`` keep the same clock in every one of ``years``?

    Parameters
    ----------
    a, b : str
        IANA zone names.
    years : iterable of int
        Calendar years [UTC] of the data; offsets are compared every 15 minutes over each.

    Returns
    -------
    bool
        True when the UTC offsets are equal throughout (the names may differ).
    """
    if a == b:
        return True
    ys = sorted({int(y) for y in years})
    if not ys:
        return True
    # one year at a time: each cached, a gap between years is not sampled
    return all(np.array_equal(_offsets(a, y, y), _offsets(b, y, y)) for y in ys)


def _years_per_meter(frame: pd.DataFrame, time_col: str) -> pd.DataFrame:
    """``meter_id, timezone, year`` (distinct) of a series frame."""
    if not len(frame) or time_col not in frame or "meter_id" not in frame:
        return pd.DataFrame(columns=["meter_id", "timezone", "year"])
    t = frame[time_col]
    years = t.dt.year if hasattr(t, "dt") else pd.to_datetime(t, utc=True).dt.year
    zones = frame["timezone"] if "timezone" in frame else pd.Series([None] * len(frame))
    out = pd.DataFrame(
        {
            "meter_id": frame["meter_id"].to_numpy(),
            "timezone": zones.to_numpy(),
            "year": years.to_numpy(),
        }
    )
    return out.dropna(subset=["year"]).drop_duplicates(ignore_index=True)


def check_stated_zones(tables: Any, *, default_tz: str = "UTC") -> None:
    """Refuse to aggregate an asset whose provider-stated zone disagrees with its own.

    Parameters
    ----------
    tables : Tables
        ``assets`` (``asset_id``, ``timezone`` and the provider's ``stated_timezone``),
        ``meters`` (``meter_id``, ``asset_id``) and the series (``usage`` by ``start``,
        ``readings`` by ``timestamp``, each with the ``timezone`` its rows will be cut in).
    default_tz : str
        ``[provider] timezone``: the zone of rows without one and of assets without one.

    Raises
    ------
    TimezoneMismatchError
        An asset's stated zone keeps another clock than the zone its rows are cut in (compared
        by offsets over the years of its rows), or is not an IANA zone. The message names every
        such asset with both zones; ``asset``, ``zone``, ``stated`` and ``assets`` carry them.
    """
    assets = tables.assets
    if not len(assets) or STATED_COLUMN not in assets.columns:
        return
    stated = assets[["asset_id", STATED_COLUMN, "timezone"]].dropna(subset=[STATED_COLUMN])
    if not len(stated):
        return
    stated_of = dict(
        zip(stated["asset_id"].astype(str), stated[STATED_COLUMN].astype(str), strict=True)
    )
    own_of = {
        str(a): (str(z) if isinstance(z, str) and z else None)
        for a, z in zip(stated["asset_id"], stated["timezone"], strict=True)
    }
    meters = tables.meters
    asset_of = dict(
        zip(meters["meter_id"].astype(str), meters["asset_id"].astype(str), strict=True)
    )
    parts = [
        _years_per_meter(tables.usage, "start"),
        _years_per_meter(tables.readings, "timestamp"),
    ]
    rows = (
        pd.concat([p for p in parts if len(p)], ignore_index=True) if any(map(len, parts)) else None
    )
    years: dict[tuple[str, str], set[int]] = {}  # (asset, zone its rows are cut in) -> years
    if rows is not None:
        for mid, zone, year in rows.itertuples(index=False):
            asset = asset_of.get(str(mid))
            if asset is None or asset not in stated_of:
                continue
            z = str(zone) if isinstance(zone, str) and zone else own_of.get(asset) or default_tz
            years.setdefault((asset, z), set()).add(int(year))
    problems: list[tuple[str, str, str, str]] = []  # asset, zone, stated, why
    for asset, said in sorted(stated_of.items()):
        if not _valid(said):
            zone = own_of.get(asset) or default_tz
            problems.append((asset, zone, said, f"{said!r} is not an IANA zone"))
            continue
        for (a, zone), ys in sorted(years.items()):
            if a != asset or zones_agree(zone, said, ys):
                continue
            where = (
                "its [mapping.assets.fields] timezone"
                if own_of.get(asset)
                else ("[provider] timezone")
            )
            problems.append(
                (
                    asset,
                    zone,
                    said,
                    f"its rows are cut in {zone} ({where}), a different clock in "
                    f"{', '.join(map(str, sorted(ys)))}",
                )
            )
    if not problems:
        return
    shown = "; ".join(
        f"asset {a!r}: the provider states {s}, {why}" for a, _z, s, why in problems[:10]
    )
    more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
    first = problems[0]
    raise TimezoneMismatchError(
        f"the provider's zone of {len(problems)} asset(s) disagrees with the profile's: "
        f"{shown}{more}; months would be cut in the wrong zone, nothing was aggregated",
        hint=(
            "Take the provider's zone for the sites ([mapping.assets.fields] timezone = the "
            f"field that states it), or correct [provider] timezone (now {default_tz}) / the "
            "constant zone of the sites; a name the provider spells its own way can be mapped "
            f"with [mapping.assets.value_maps.{STATED_COLUMN}]."
        ),
        asset=first[0],
        zone=first[1],
        stated=first[2],
        assets=sorted({p[0] for p in problems}),
        key=f"mapping.assets.fields.{STATED_COLUMN}",
    )
