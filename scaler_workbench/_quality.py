"""Value checks that need no stage module: ISO 4217 currencies and plausible magnitudes.

Both functions are vectorised and pure; the validation stage decides what a flagged value
becomes (a quarantine row or a finding). The currency list is ``pycountry``'s, which follows
Debian's ``iso-codes`` (the ISO 4217 maintenance agency's list), so a new or withdrawn code
arrives with a package upgrade instead of an edit here.

=====================  =======================================================================
name                   what it is
=====================  =======================================================================
:func:`is_iso4217`     ``True`` per code that is an active ISO 4217 alphabetic currency code
:data:`PLAUSIBLE_MAX`  largest plausible consumption per hour per canonical unit
:func:`implausible`    ``True`` per value that is ``±inf`` or beyond the bound for its period
=====================  =======================================================================

Plausible-magnitude bounds
--------------------------
=======  ==================  =========================================================
unit     bound per hour      why
=======  ==================  =========================================================
``kWh``  1 000 000           1 GW for a whole hour: more than the largest single sites
                             (a hyperscale data centre or a steel works draws 100-500 MW)
``m³``   100 000             water or gas volume; a large city's whole water supply
``kg``   1 000 000           waste: 1 000 t per hour from one site
=======  ==================  =========================================================

The bound of a record scales with its period: a half-hour may carry half the hourly bound, a
31-day bill 744 times it. A profile may pass its own table (``bounds=``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache

import numpy as np
import pandas as pd
import pycountry

__all__ = [
    "NOT_CURRENCIES",
    "PLAUSIBLE_MAX",
    "implausible",
    "is_iso4217",
    "iso4217_codes",
    "per_hour_bounds",
]

#: Largest plausible consumption per hour of one meter, per canonical unit [unit / h].
PLAUSIBLE_MAX: Mapping[str, float] = {"kWh": 1.0e6, "m³": 1.0e5, "kg": 1.0e6}

#: ISO 4217 codes that are in the standard but name no money: testing and "no currency".
NOT_CURRENCIES: frozenset[str] = frozenset({"XTS", "XXX"})


@lru_cache(maxsize=1)
def iso4217_codes() -> frozenset[str]:
    """Active ISO 4217 alphabetic codes (upper case), from ``pycountry``, without ``XTS``/``XXX``.

    Returns
    -------
    frozenset of str
        Three-letter codes such as ``"EUR"``, ``"GBP"``, ``"USD"``.
    """
    return frozenset(c.alpha_3 for c in pycountry.currencies) - NOT_CURRENCIES


def is_iso4217(codes: Iterable[object]) -> np.ndarray:
    """Which values are valid ISO 4217 currency codes (exact, upper case, no spaces).

    Parameters
    ----------
    codes : iterable
        Currency values (a pandas Series, list or array; a categorical is checked once per
        category); missing values (``None``, ``NaN``, ``pd.NA``) and non-strings are not valid.

    Returns
    -------
    numpy.ndarray of bool
        One flag per value: ``True`` for ``"EUR"``, ``False`` for ``"EURO"``, ``"XYZ"``,
        ``"eur"``, ``" EUR"``, ``""`` or a missing value.
    """
    valid = iso4217_codes()
    cat = getattr(codes, "array", codes)
    if isinstance(cat, pd.Categorical):  # one check per category
        ok = np.array([isinstance(c, str) and c in valid for c in cat.categories] + [False])
        return ok[np.asarray(cat.codes)]
    values = list(codes)
    return np.fromiter(
        (isinstance(v, str) and v in valid for v in values), dtype=bool, count=len(values)
    )


def per_hour_bounds(
    units: Iterable[object] | str, n: int, *, bounds: Mapping[str, float] | None = None
) -> np.ndarray:
    """The bound per hour of each row's unit (``inf`` for a unit without one).

    Parameters
    ----------
    units : array-like of str or str
        One unit per row, or one for all; a pandas categorical is read by its codes (one lookup
        per category, not per row).
    n : int
        Number of rows.
    bounds : mapping, optional
        Bound per hour per unit [unit / h]; default :data:`PLAUSIBLE_MAX`.

    Returns
    -------
    numpy.ndarray of float
        [unit / h] per row.

    Raises
    ------
    ValueError
        If ``units`` does not hold ``n`` values.
    """
    table = PLAUSIBLE_MAX if bounds is None else bounds
    if isinstance(units, str):
        return np.full(n, float(table.get(units, np.inf)))
    cat = getattr(units, "array", units)
    if isinstance(cat, pd.Categorical):
        codes = np.asarray(cat.codes)
        per_cat = np.array(
            [float(table.get(str(c), np.inf)) for c in cat.categories] + [np.inf], dtype=np.float64
        )
        out = per_cat[codes]  # code -1 (missing) takes the last: inf
    else:
        codes, uniques = pd.factorize(np.asarray(list(units), dtype=object), use_na_sentinel=True)
        per_u = np.array(
            [float(table.get(u, np.inf)) if isinstance(u, str) else np.inf for u in uniques]
            + [np.inf],
            dtype=np.float64,
        )
        out = per_u[codes]
    if out.size != n:
        raise ValueError(f"got {n} values but {out.size} units")
    return out


def implausible(
    values: Iterable[float] | np.ndarray,
    units: Iterable[object] | str,
    seconds: Iterable[float] | np.ndarray | float,
    *,
    bounds: Mapping[str, float] | None = None,
) -> np.ndarray:
    """Flag values that are infinite or larger in magnitude than plausible for their period.

    Parameters
    ----------
    values : array-like of float
        Consumption in canonical units [kWh, m³ or kg].
    units : array-like of str or str
        Each value's canonical unit (or one unit for all). A unit without a bound is only
        checked for ``±inf``.
    seconds : array-like of float or float
        Each value's period length [s] (``end - start``); a missing or non-positive length
        counts as one hour.
    bounds : mapping, optional
        Bound per hour per unit [unit / h]; default :data:`PLAUSIBLE_MAX`.

    Returns
    -------
    numpy.ndarray of bool
        ``True`` where the value is ``+inf``/``-inf`` or ``|value| > bound x hours``. ``NaN``
        (a missing value, which has its own policy) is never flagged.
    """
    table = PLAUSIBLE_MAX if bounds is None else bounds
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    n = v.size
    secs = np.broadcast_to(np.asarray(seconds, dtype=np.float64), (n,))
    hours = np.where(np.isfinite(secs) & (secs > 0), secs / 3600.0, 1.0)
    per_hour = per_hour_bounds(units, n, bounds=table)
    with np.errstate(invalid="ignore", over="ignore"):
        beyond = np.abs(v) > per_hour * hours
    return np.isinf(v) | (beyond & ~np.isnan(v))
