"""Numeric helpers shared by the stages (a private leaf module: imports nothing of the package).

:func:`apply_power_of_ten` scales values by ``10**p`` for the mapping's ``power_of_ten`` field
option (transform) and for Green Button values (units, connectors): one copy for both stages.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["SIGNIFICANT_DIGITS", "apply_power_of_ten", "round_decimals", "round_significant"]


def apply_power_of_ten(values: Any, multiplier: Any) -> np.ndarray:
    """Green Button real value = ``value × 10**powerOfTenMultiplier`` (vectorised, exact powers).

    Parameters
    ----------
    values : array-like of float
        Values as reported [provider unit].
    multiplier : int or array-like of int
        The power of ten, one for all or one per value.

    Returns
    -------
    numpy.ndarray of float64
        ``values × 10**multiplier`` [provider unit]; negative powers divide, so ``10**-3``
        stays exactly rounded.
    """
    v = np.asarray(values, dtype=np.float64)
    m = np.asarray(multiplier, dtype=np.int64)
    # 10.0 ** m is exact for |m| <= 22; divide for negative powers so 10**-3 stays exact-rounded
    pos = np.power(10.0, np.abs(m))
    return np.where(m >= 0, v * pos, v / pos)


#: Significant digits every exported quantity keeps (docs/cli.md "Number precision"): a
#: relative rounding error of at most 5e-13, far inside the 1e-9 the demo's ground-truth check
#: allows, and no binary float noise such as ``1351.8000000000002``.
SIGNIFICANT_DIGITS = 12


def round_significant(values: Any, digits: int = SIGNIFICANT_DIGITS) -> np.ndarray:
    """Round every value to ``digits`` significant decimal digits (vectorised).

    Parameters
    ----------
    values : array-like of float
        Values [any unit]; NaN and infinities pass through.
    digits : int
        Significant decimal digits to keep (1-15).

    Returns
    -------
    numpy.ndarray of float64
        The double nearest to each value rounded half-to-even to ``digits`` significant digits,
        so its shortest ``repr`` has at most ``digits`` significant digits.
    """
    v = np.array(values, dtype=np.float64)  # a copy
    ok = np.isfinite(v) & (v != 0)
    if not ok.any():
        return v
    x = v[ok]
    a = np.abs(x)
    e = np.floor(np.log10(a)).astype(np.int64)
    # log10 may be off by one next to a power of ten: correct it exactly
    e = np.where(a < _pow10(e), e - 1, e)
    e = np.where(a >= _pow10(e + 1), e + 1, e)
    k = e - (digits - 1)  # value = m * 10**k with m of ``digits`` digits
    out = np.empty_like(x)
    # dividing / multiplying an exact integer by an exact power of ten (|k| <= 22) rounds once
    neg = (k < 0) & (k >= -22)
    s = _pow10(-k[neg])
    out[neg] = np.round(x[neg] * s) / s
    pos = (k >= 0) & (k <= 22)
    p = _pow10(k[pos])
    out[pos] = np.round(x[pos] / p) * p
    rest = ~(neg | pos)  # tiny or huge magnitudes: through decimal text, rare
    out[rest] = [float(f"{xi:.{digits - 1}e}") for xi in x[rest]]
    v[ok] = out
    return v


def _pow10(k: np.ndarray) -> np.ndarray:
    """``10.0**k`` (exact for 0 <= k <= 22; beyond that still the nearest double)."""
    return np.power(10.0, k.astype(np.float64))


def round_decimals(values: Any, decimals: Any) -> np.ndarray:
    """Round values to a number of decimal places, one for all or one per value.

    Parameters
    ----------
    values : array-like of float
        Values, e.g. costs [currency].
    decimals : int or array-like of int
        Decimal places per value (a currency's minor unit: 2 for USD, 0 for JPY, 3 for BHD).

    Returns
    -------
    numpy.ndarray of float64
        The rounded values (NaN stays NaN).
    """
    v = np.asarray(values, dtype=np.float64)
    d = np.broadcast_to(np.asarray(decimals, dtype=np.int64), v.shape)
    out = np.empty_like(v)
    for dd in np.unique(d):
        mask = d == dd
        s = 10.0 ** abs(int(dd))
        out[mask] = np.round(v[mask] * s) / s if dd >= 0 else np.round(v[mask] / s) * s
    return out
