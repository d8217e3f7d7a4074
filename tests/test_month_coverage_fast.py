"""``coverage.month_coverage`` on arrays equals the pandas version it replaced (issue 13 benchmark).

The reference below is ``month_coverage`` as it was before (groupby/merge/strftime per frame);
random usage frames (interval meters with counts on the rows, day-measured meters, bill meters
with ``billing_days``, rows across month ends and DST changes, overlapping and invalid rows,
several zones, meters without data, active periods, given months and horizons) give equal
frames, dtypes included.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from scaler_workbench._time import as_utc, local_naive
from scaler_workbench.coverage import (
    _DAY_NS,
    _FMT,
    _NS,
    _int_col,
    _local_of_utc,
    _utc_of_local,
    classify_months,
    month_coverage,
    month_labels,
    require_columns,
    site_timezones,
    split_by_month,
)
from scaler_workbench.schema import Tables


def _reference_month_coverage(
    usage: pd.DataFrame,
    *,
    tables: Tables | None = None,
    meters: pd.DataFrame | None = None,
    months: Iterable[str] | None = None,
    timezone: str = "UTC",
    min_share: float = 1.0,
    count_nulls: bool = False,
    horizon: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """``coverage.month_coverage`` before the array version (groupby, merge, strftime)."""
    require_columns(usage, ("meter_id", "start", "end"), "usage")
    if meters is None and tables is not None:
        meters = tables.meters
    split = split_by_month(usage, tables=tables, timezone=timezone)
    rows = split["row"].to_numpy()
    n = len(split)
    zones_all = site_timezones(usage, tables, timezone).reset_index(drop=True)
    zone = zones_all.to_numpy(dtype=object)[rows] if n else np.empty(0, dtype=object)
    expected = _int_col(usage, "expected_intervals", rows)
    by_int = ~np.isnan(expected)
    n_int = _int_col(usage, "n_intervals", rows)
    nulls = np.nan_to_num(_int_col(usage, "null_intervals", rows))
    est_int = np.nan_to_num(_int_col(usage, "estimated_intervals", rows))
    dwd = _int_col(usage, "days_with_data", rows)
    frac = split["fraction"].to_numpy(dtype=np.float64)
    overlap_days = split["overlap_ns"].to_numpy(dtype=np.float64) / _DAY_NS
    days = np.where(np.isnan(dwd), overlap_days, dwd * frac)
    est_rows = (
        usage["estimated"].astype("boolean").fillna(False).to_numpy(dtype=bool)[rows]
        if "estimated" in usage.columns
        else np.zeros(n, dtype=bool)
    )
    # local first/last data per piece: the usage stage's counts, else the piece's own span
    if n:
        start_loc = local_naive(as_utc(usage["start"], "start", "usage"), zones_all)[rows]
        end_loc = local_naive(as_utc(usage["end"], "end", "usage"), zones_all)[rows]
        m = pd.to_datetime(split["month"].astype(str), format="%Y-%m").to_numpy("datetime64[ns]")
        m_next = (m.astype("datetime64[M]") + 1).astype("datetime64[ns]")
        lo = np.maximum(start_loc, m)
        hi = np.minimum(end_loc, m_next)
    else:
        lo = hi = np.empty(0, dtype="datetime64[ns]")
    for col, arr in (("first_local", "lo"), ("last_local", "hi")):
        if col in usage.columns and n:
            given = pd.to_datetime(
                usage[col].astype("string").to_numpy(dtype=object)[rows], format=_FMT
            ).to_numpy("datetime64[ns]")
            use = ~np.isnat(given)
            if arr == "lo":
                lo = np.where(use, given, lo)
            else:
                hi = np.where(use, given, hi)
    pieces = pd.DataFrame(
        {
            "meter_id": split["meter_id"].astype("string"),
            "month": split["month"].astype("string"),
            "timezone": pd.array(zone, dtype="string"),
            "days": days,
            "intervals": np.where(by_int, np.nan_to_num(n_int) - nulls, 0.0),
            "expected": np.where(by_int, expected, 0.0),
            "by_int": by_int,
            "nulls": np.where(by_int, nulls, 0.0),
            "est_int": np.where(by_int, est_int, 0.0),
            "est_ns": np.where(est_rows, split["overlap_ns"].to_numpy(np.float64), 0.0),
            "all_ns": split["overlap_ns"].to_numpy(np.float64),
            "lo": lo,
            "hi": hi,
        }
    )
    agg = (
        pieces.groupby(["meter_id", "month"], observed=True, sort=True)
        .agg(
            timezone=("timezone", "first"),
            days=("days", "sum"),
            intervals=("intervals", "sum"),
            expected=("expected", "max"),
            by_int=("by_int", "any"),
            nulls=("nulls", "sum"),
            est_int=("est_int", "sum"),
            est_ns=("est_ns", "sum"),
            all_ns=("all_ns", "sum"),
            lo=("lo", "min"),
            hi=("hi", "max"),
        )
        .reset_index()
    )
    # the grid: each meter from its first month with data (or active_from) to the last month
    meter_ids = list(dict.fromkeys(agg["meter_id"].astype(str)))
    active = None
    if meters is not None and len(meters):
        require_columns(meters, ("meter_id",), "meters")
        meter_ids = list(dict.fromkeys([*meters["meter_id"].dropna().astype(str), *meter_ids]))
        cols = [c for c in ("active_from", "active_to") if c in meters.columns]
        if cols:
            active = meters[["meter_id", *cols]].assign(
                meter_id=meters["meter_id"].astype("string")
            )
    if months is None:
        if len(agg):
            lo_m = np.datetime64(str(agg["month"].min()), "M")
            hi_m = np.datetime64(str(agg["month"].max()), "M")
            month_list = [str(x) for x in month_labels(np.arange(lo_m, hi_m + 1))]
        else:
            month_list = []
    else:
        month_list = [str(x) for x in months]
    first: dict[str, str] = {}
    for meter, month in zip(agg["meter_id"].tolist(), agg["month"].tolist(), strict=True):
        if meter not in first or month < first[meter]:
            first[meter] = month
    if active is not None and "active_from" in active.columns:
        af = pd.to_datetime(active["active_from"], errors="coerce")
        for meter, day in zip(active["meter_id"].astype(str), af, strict=True):
            if pd.notna(day) and meter in first:
                first[meter] = min(first[meter], day.strftime("%Y-%m"))
    grid = pd.DataFrame(
        [(m, mo) for m in sorted(meter_ids) for mo in month_list if mo >= first.get(m, "")],
        columns=["meter_id", "month"],
    ).astype("string")
    out = grid.merge(agg, on=["meter_id", "month"], how="left")
    # zone of months without data: the meter's zone
    meter_zone = dict(zip(agg["meter_id"].astype(str), agg["timezone"].astype(str), strict=True))
    no_data = [m for m in meter_ids if m not in meter_zone]  # their site's zone, once each
    if no_data:
        lookup = pd.DataFrame({"meter_id": pd.Series(no_data, dtype="string")})
        zones_nd = (
            site_timezones(lookup, tables, timezone).astype(str).tolist()
            if tables is not None
            else [timezone] * len(no_data)
        )
        meter_zone.update(zip(no_data, zones_nd, strict=True))
    out["timezone"] = pd.array(
        out["meter_id"].astype(str).map(meter_zone).to_numpy(dtype=object), dtype="string"
    )
    by_int = out["by_int"].fillna(False).to_numpy(dtype=bool)
    month_dt = pd.to_datetime(out["month"].astype(str), format="%Y-%m").to_numpy("datetime64[M]")
    m0 = month_dt.astype("datetime64[ns]").astype(np.int64)
    m1 = (month_dt + 1).astype("datetime64[ns]").astype(np.int64)
    zones = out["timezone"].astype(str).to_numpy(dtype=object)
    utc_len = (
        _utc_of_local(m1, zones) - _utc_of_local(m0, zones) if len(out) else np.zeros(0, np.int64)
    )
    exp = out["expected"].to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        secs = np.where(by_int & (exp > 0), utc_len / np.where(exp > 0, exp, 1) / _NS, np.nan)
    intervals = out["intervals"].fillna(0).to_numpy(dtype=np.float64)
    days_with_data = np.ceil(np.round(out["days"].fillna(0).to_numpy(np.float64), 6))
    est_share = np.where(
        by_int,
        np.where(intervals > 0, out["est_int"].fillna(0) / np.maximum(intervals, 1), 0.0),
        np.where(
            out["all_ns"].fillna(0) > 0,
            out["est_ns"].fillna(0) / np.maximum(out["all_ns"].fillna(0), 1),
            0.0,
        ),
    )
    judged = pd.DataFrame(
        {
            "meter_id": out["meter_id"],
            "month": out["month"],
            "timezone": out["timezone"],
            "interval_seconds": np.where(by_int, np.rint(np.nan_to_num(secs)), 0).astype(np.int64),
            "days_with_data": days_with_data.astype(np.int64),
            "intervals": intervals.astype(np.int64),
            "null_intervals": out["nulls"].fillna(0).to_numpy(dtype=np.int64),
            "expected_intervals": np.where(by_int, exp, np.nan),
            "estimated_share": est_share.astype(np.float64),
        }
    )
    # the active period, clipped to the horizon (no data can exist after it)
    if horizon is None and len(usage):
        horizon = as_utc(usage["end"], "end", "usage").max()
    act = pd.DataFrame({"meter_id": pd.Series(sorted(meter_ids), dtype="string")})
    if active is not None:
        act = act.merge(active.drop_duplicates("meter_id", keep="last"), how="left")
    # a meter's history starts at its first data unless the mapping says when it became active
    # (active_from): the provider has nothing before it, so that part of the first month is not
    # expected; data that stops before the horizon (the meter went quiet) still counts as missing
    if len(agg) and len(act):
        first_day = (
            pd.to_datetime(agg["lo"]).groupby(agg["meter_id"].astype(str)).min().dt.normalize()
        )
        from_data = act["meter_id"].astype(str).map(first_day)
        given = (
            pd.to_datetime(act["active_from"], errors="coerce")
            if "active_from" in act.columns
            else pd.Series(pd.NaT, index=act.index)
        )
        start = given.where(given.notna(), from_data)
        act["active_from"] = start.dt.strftime("%Y-%m-%d").where(start.notna(), None)
    if horizon is not None and pd.notna(horizon) and len(act):
        act_zone = act["meter_id"].astype(str).map(meter_zone).to_numpy(dtype=object)
        h = pd.Timestamp(horizon)
        h = h.tz_localize("UTC") if h.tzinfo is None else h.tz_convert("UTC")
        h_ns = np.full(len(act), h.value, dtype=np.int64)
        h_local = _local_of_utc(h_ns, act_zone)
        h_day = -np.floor_divide(-h_local, _DAY_NS)  # a horizon inside a day keeps the day
        h_text = np.datetime_as_string(h_day.astype("datetime64[D]"))
        to = (
            pd.to_datetime(act["active_to"], errors="coerce")
            if "active_to" in act.columns
            else pd.Series(pd.NaT, index=act.index)
        )
        h_dt = pd.to_datetime(pd.Series(h_text, index=act.index))
        act["active_to"] = to.where(to.notna() & (to < h_dt), h_dt).dt.strftime("%Y-%m-%d")
    billing = None
    if "billing_days" in usage.columns and n:
        bd = _int_col(usage, "billing_days", rows)
        has = ~np.isnan(bd)
        if has.any():
            ends = pd.DataFrame(
                {
                    "meter_id": split["meter_id"].astype(str).to_numpy()[has],
                    "until": hi[has],
                    "lag": bd[has],
                }
            )
            b = ends.groupby("meter_id").agg(until=("until", "max"), lag=("lag", "max"))
            billing = pd.DataFrame(
                {
                    "meter_id": b.index.astype(str),
                    "billed_until": pd.to_datetime(b["until"].to_numpy()).normalize(),
                    "lag_days": b["lag"].to_numpy(),
                }
            )
    classified = classify_months(
        judged,
        active=act if len(act.columns) > 1 else None,
        billing=billing,
        min_share=min_share,
        count_nulls=count_nulls,
    )
    exp_active = classified["expected_active"].to_numpy(dtype=np.float64)
    covered = np.where(
        by_int,
        intervals + (judged["null_intervals"].to_numpy() if count_nulls else 0),
        days_with_data,
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(exp_active > 0, covered / exp_active, 0.0)
    first_local = pd.Series(out["lo"]).dt.strftime(_FMT).astype("string")
    last_local = pd.Series(out["hi"]).dt.strftime(_FMT).astype("string")
    days_in = ((m1 - m0) // _DAY_NS).astype(np.int64)
    return pd.DataFrame(
        {
            "meter_id": judged["meter_id"].astype("string"),
            "month": judged["month"].astype("string"),
            "status": classified["status"],
            "coverage": np.clip(share, 0.0, 1.0),
            "days_with_data": judged["days_with_data"],
            "days_in_month": days_in,
            "intervals": pd.array(np.where(by_int, intervals, np.nan), dtype="Float64").astype(
                "Int64"
            ),
            "expected_intervals": pd.array(
                judged["expected_intervals"].to_numpy(), dtype="Float64"
            ).astype("Int64"),
            "null_intervals": pd.array(
                np.where(by_int, judged["null_intervals"], np.nan), dtype="Float64"
            ).astype("Int64"),
            "first_local": first_local,
            "last_local": last_local,
            "estimated_share": est_share.astype(np.float64),
        }
    )


_ZONES = ["Europe/London", "America/New_York", "UTC", "Australia/Lord_Howe"]


def _case(seed: int) -> tuple[pd.DataFrame, dict[str, object]]:
    """Random usage of interval, day-measured and bill meters (2023-09 .. 2024-05) and the
    keyword arguments of a ``month_coverage`` call."""
    rng = np.random.default_rng(seed)
    rows: list[dict[str, object]] = []
    meter_zone = {}
    n_meters = int(rng.integers(1, 6))
    for m in range(n_meters):
        kind = rng.choice(["interval", "day", "bill"])
        mid = f"{kind[0].upper()}{m}" if rng.random() > 0.1 else f"é{m}"
        zone = str(rng.choice(_ZONES))
        meter_zone[mid] = zone
        first = int(rng.integers(0, 4))
        last = int(rng.integers(first + 1, 9))
        months = pd.date_range("2023-09-01", periods=10, freq="MS")
        if kind == "interval":
            for k in range(first, last):
                if rng.random() < 0.15:
                    continue  # a month without data
                lo = months[k].tz_localize(zone)
                hi = months[k + 1].tz_localize(zone)
                if rng.random() < 0.2:  # starts late / ends early
                    lo = lo + pd.Timedelta(days=int(rng.integers(1, 10)))
                if rng.random() < 0.2:
                    hi = hi - pd.Timedelta(hours=int(rng.integers(1, 50)))
                n_exp = int((hi - lo) / pd.Timedelta(minutes=30))
                n_got = n_exp - int(rng.integers(0, 5))
                rows.append(
                    {
                        "meter_id": mid,
                        "start": lo,
                        "end": hi,
                        "expected_intervals": n_exp if rng.random() > 0.1 else None,
                        "n_intervals": n_got,
                        "null_intervals": int(rng.integers(0, 3)),
                        "estimated_intervals": int(rng.integers(0, 3)) * int(rng.random() < 0.3),
                        "first_local": lo.strftime("%Y-%m-%dT%H:%M")
                        if rng.random() > 0.3
                        else None,
                        "last_local": hi.strftime("%Y-%m-%dT%H:%M") if rng.random() > 0.3 else None,
                        "timezone": zone if rng.random() > 0.3 else None,
                        "estimated": bool(rng.random() < 0.2),
                    }
                )
        else:
            t = months[first].tz_localize(zone) + pd.Timedelta(days=int(rng.integers(0, 20)))
            end = months[last].tz_localize(zone)
            while t < end:
                step = pd.Timedelta(
                    days=int(rng.integers(25, 65)) if kind == "bill" else int(rng.integers(1, 12)),
                    hours=int(rng.integers(0, 3)) * int(rng.random() < 0.2),
                )
                gap = pd.Timedelta(days=int(rng.integers(0, 6))) * int(rng.random() < 0.3)
                rows.append(
                    {
                        "meter_id": mid,
                        "start": t,
                        "end": t + step,
                        "days_with_data": (
                            int(rng.integers(0, step.days + 1)) if rng.random() < 0.3 else None
                        ),
                        "billing_days": step.days if kind == "bill" else None,
                        "timezone": zone if rng.random() > 0.5 else None,
                        "estimated": bool(rng.random() < 0.3) if rng.random() > 0.2 else None,
                    }
                )
                t = t + step + gap
    if rows and rng.random() < 0.3:  # an invalid period and a duplicate row
        rows.append({**rows[0], "end": rows[0]["start"]})
        rows.append(dict(rows[-2]))
    usage = pd.DataFrame(rows)
    for col in ("meter_id", "start", "end"):
        if col not in usage:
            usage[col] = pd.Series(dtype="datetime64[ns, UTC]" if col != "meter_id" else object)
    usage["start"] = pd.to_datetime(usage["start"], utc=True)
    usage["end"] = pd.to_datetime(usage["end"], utc=True)
    for col in (
        "expected_intervals",
        "n_intervals",
        "null_intervals",
        "estimated_intervals",
        "days_with_data",
        "billing_days",
    ):
        if col in usage:
            usage[col] = pd.array(usage[col].astype(float), dtype="Float64").astype("Int64")
    for col in ("first_local", "last_local", "timezone", "meter_id"):
        if col in usage:
            usage[col] = usage[col].astype("string")
    if "estimated" in usage:
        usage["estimated"] = usage["estimated"].astype("boolean")
    ids = [*meter_zone, "Z9"]
    kwargs: dict[str, object] = {"timezone": str(rng.choice(_ZONES))}
    if rng.random() < 0.5:
        sites = {m: f"S{i % 2}" for i, m in enumerate(ids)}
        kwargs["tables"] = Tables(
            assets=pd.DataFrame(
                {"asset_id": ["S0", "S1"], "timezone": [str(rng.choice(_ZONES)), None]}
            ),
            meters=pd.DataFrame({"meter_id": ids, "asset_id": [sites[m] for m in ids]}),
            usage=usage,
            readings=pd.DataFrame(),
        )
    if rng.random() < 0.6:
        meters = pd.DataFrame({"meter_id": ids})
        if rng.random() < 0.7:
            meters["active_from"] = [
                None if rng.random() < 0.5 else f"2023-{int(rng.integers(8, 13)):02d}-15"
                for _ in ids
            ]
        if rng.random() < 0.7:
            meters["active_to"] = [
                None
                if rng.random() < 0.5
                else f"2024-0{int(rng.integers(1, 6))}-0{int(rng.integers(1, 9))}"
                for _ in ids
            ]
        kwargs["meters"] = meters
    if rng.random() < 0.25:
        kwargs["months"] = ["2023-10", "2023-12", "2024-01", "2024-03", "2025-01"][
            : int(rng.integers(0, 6))
        ]
    if rng.random() < 0.3:
        kwargs["horizon"] = pd.Timestamp("2024-03-17 13:00", tz=str(rng.choice(_ZONES)))
    kwargs["min_share"] = float(rng.choice([1.0, 0.9, 0.5]))
    kwargs["count_nulls"] = bool(rng.random() < 0.3)
    return usage, kwargs


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_month_coverage_equals_the_pandas_version(seed: int) -> None:
    usage, kwargs = _case(seed)
    want = _reference_month_coverage(usage, **kwargs)  # type: ignore[arg-type]
    got = month_coverage(usage, **kwargs)  # type: ignore[arg-type]
    pd.testing.assert_frame_equal(got, want, check_exact=True)


def test_month_coverage_of_no_usage_equals_the_pandas_version() -> None:
    usage = pd.DataFrame(
        {
            "meter_id": pd.Series(dtype="string"),
            "start": pd.Series(dtype="datetime64[ns, UTC]"),
            "end": pd.Series(dtype="datetime64[ns, UTC]"),
        }
    )
    meters = pd.DataFrame({"meter_id": ["M1", "M2"], "active_from": ["2024-01-03", None]})
    for kwargs in ({}, {"meters": meters}, {"meters": meters, "months": ["2024-01", "2024-02"]}):
        want = _reference_month_coverage(usage, **kwargs)  # type: ignore[arg-type]
        got = month_coverage(usage, **kwargs)  # type: ignore[arg-type]
        pd.testing.assert_frame_equal(got, want, check_exact=True)


@settings(max_examples=30, deadline=None)
@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_month_pieces_equal_split_by_month(seed: int) -> None:
    from scaler_workbench.coverage import _month_pieces

    usage, kwargs = _case(seed)
    tables = kwargs.get("tables")
    zone = str(kwargs["timezone"])
    split = split_by_month(usage, tables=tables, timezone=zone)  # type: ignore[arg-type]
    pieces = _month_pieces(usage, site_timezones(usage, tables, zone).reset_index(drop=True))  # type: ignore[arg-type]
    assert pieces.rows.tolist() == split["row"].tolist()
    assert month_labels(pieces.month).tolist() == split["month"].astype(str).tolist()
    assert pieces.overlap.tolist() == split["overlap_ns"].tolist()
    assert pieces.fraction.tolist() == split["fraction"].tolist()
