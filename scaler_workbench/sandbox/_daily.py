"""Daily series shared by the sandbox flavours that serve one value per local day (SOAP, CSV).

Each flavour draws its own values (its own random stream and scale); these helpers build the
frame it serves and the monthly ground truth from it, so the two flavours cannot disagree on
what a day or a month is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd


def local_days(start: str, end: str, tz: str) -> pd.DatetimeIndex:
    """Local midnights of ``[start, end)`` in ``tz``."""
    return pd.date_range(
        pd.Timestamp(start, tz=tz), pd.Timestamp(end, tz=tz), freq="D", inclusive="left"
    )


def daily_frame(days: pd.DatetimeIndex, value: np.ndarray, missing: np.ndarray) -> pd.DataFrame:
    """``start``, ``end`` (the next local midnight) and ``value`` [kWh], None where ``missing``."""
    return pd.DataFrame(
        {
            "start": days,
            "end": [d + pd.offsets.Day(1) for d in days],
            "value": [None if m else float(v) for v, m in zip(value, missing, strict=True)],
        }
    )


def monthly_ground_truth(series: Mapping[str, pd.DataFrame], ids: Iterable[str]) -> pd.DataFrame:
    """Monthly kWh per meter (local months; days without data count as nothing)."""
    rows = []
    for meter_id in ids:
        frame = series[meter_id].dropna(subset=["value"])
        months = frame["start"].map(lambda t: t.strftime("%Y-%m"))
        for month, total in frame.groupby(months)["value"].sum().items():
            rows.append({"meter_id": meter_id, "month": month, "consumption": total, "unit": "kWh"})
    return pd.DataFrame(rows)
