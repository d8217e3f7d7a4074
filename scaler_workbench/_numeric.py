"""Numeric helpers shared by the stages (a private leaf module: imports nothing of the package).

:func:`apply_power_of_ten` scales values by ``10**p`` for the mapping's ``power_of_ten`` field
option (transform) and for Green Button values (units, connectors): one copy for both stages.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["apply_power_of_ten"]


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
