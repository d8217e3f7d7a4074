"""Billing conventions (issue 15 item 7): ``overlaps = "later_wins"`` and ``end_inclusive``.

Expected monthly totals are computed independently here: each bill's amount spread evenly over
the local days it covers (exact fractions), summed per calendar month.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from fractions import Fraction
from typing import Any

import pandas as pd
import pytest

from scaler_workbench.exceptions import MappingError
from scaler_workbench.pipeline import run_pipeline
from scaler_workbench.profile import Profile

NY = "America/New_York"
PROFILE = Profile.from_dict(
    {
        "provider": {"name": "t", "timezone": NY},
        "environments": {"x": {"base_url": "http://127.0.0.1"}},
    }
)


def _mapping(end_inclusive: Any, policy: dict[str, Any] | None = None) -> dict[str, Any]:
    src: dict[str, Any] = {
        "resource": "bills",
        "kind": "consumption",
        "prorate": "month",
        "end_inclusive": end_inclusive,
        "fields": {"meter_id": "m", "start": "a", "end": "b", "consumption": "v", "cost": "c"},
    }
    return {
        "meters": {
            "resource": "meters",
            "fields": {
                "meter_id": "id",
                "asset_id": {"const": "S"},
                "meter_type": {"const": "Energy"},
                "raw_unit": {"const": "kWh"},
            },
        },
        "usage": {"bills": src},
        "policy": policy or {},
    }


def _records(bills: dict[str, list[tuple[str, str, float]]]) -> dict[str, list[dict[str, Any]]]:
    return {
        "meters": [{"id": m} for m in bills],
        "bills": [
            {"m": m, "a": a, "b": b, "v": v, "c": v / 10}
            for m, rows in bills.items()
            for a, b, v in rows
        ],
    }


def _expected(days_of: dict[str, list[tuple[list[date], float]]]) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], Fraction] = defaultdict(Fraction)
    for meter, rows in days_of.items():
        for days, value in rows:
            for d in days:
                out[(meter, d.strftime("%Y-%m"))] += Fraction(value) / len(days)
    return {k: float(v) for k, v in out.items()}


def _days(first: str, last: str) -> list[date]:
    a, b = date.fromisoformat(first), date.fromisoformat(last)
    return [a + timedelta(d) for d in range((b - a).days + 1)]


def _monthly(tables: Any, column: str = "consumption") -> dict[tuple[str, str], float]:
    got: dict[tuple[str, str], float] = defaultdict(float)
    for r in tables.usage.itertuples():
        month = r.start.tz_convert(NY).strftime("%Y-%m")
        got[(str(r.meter_id), month)] += getattr(r, column)
    return dict(got)


# shared-boundary convention: each end date is the next bill's start date; the shared day
# belongs to the later bill; the LAST bill's end date is its last billed day
SHARED = {
    "E1": [
        ("2024-01-05", "2024-02-05", 310.0),
        ("2024-02-05", "2024-03-04", 290.0),
        ("2024-03-04", "2024-04-03", 300.0),
    ],
    "E2": [
        ("2024-01-20", "2024-02-18", 100.0),
        ("2024-02-18", "2024-03-20", 120.0),
    ],
    "E3": [  # the shared day November 3 is 25 hours long (DST ends in New York)
        ("2024-10-04", "2024-11-03", 150.0),
        ("2024-11-03", "2024-12-02", 160.0),
    ],
}
SHARED_TRUTH = {
    "E1": [
        (_days("2024-01-05", "2024-02-04"), 310.0),
        (_days("2024-02-05", "2024-03-03"), 290.0),
        (_days("2024-03-04", "2024-04-03"), 300.0),
    ],
    "E2": [
        (_days("2024-01-20", "2024-02-17"), 100.0),
        (_days("2024-02-18", "2024-03-20"), 120.0),
    ],
    "E3": [
        (_days("2024-10-04", "2024-11-02"), 150.0),
        (_days("2024-11-03", "2024-12-02"), 160.0),
    ],
}


@pytest.mark.parametrize("end_inclusive", [True, "auto"])
def test_later_wins_gives_the_shared_day_to_the_later_bill_exact_monthly_totals(
    end_inclusive: Any,
) -> None:
    t = run_pipeline(
        PROFILE, _records(SHARED), mapping=_mapping(end_inclusive, {"overlaps": "later_wins"})
    )
    got = _monthly(t)
    want = _expected(SHARED_TRUTH)
    assert set(got) == set(want)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-12), key
    # cost follows the same days; nothing double counted, no overlap finding
    cost = _monthly(t, "cost")
    assert sum(cost.values()) == pytest.approx(sum(v for r in SHARED.values() for *_, v in r) / 10)
    assert not t.quarantine["rule"].astype(str).str.startswith("period_overlap").any()
    assert t.quarantine.empty, t.quarantine[["rule", "reason"]].to_string()


def test_without_later_wins_the_shared_day_is_counted_twice_and_flagged() -> None:
    t = run_pipeline(PROFILE, _records(SHARED), mapping=_mapping(True))
    got = _monthly(t)
    want = _expected(SHARED_TRUTH)
    # E1 January: the first bill spread over 32 days (its shared day included)
    assert got[("E1", "2024-01")] != pytest.approx(want[("E1", "2024-01")], rel=1e-9)
    assert (t.quarantine["rule"] == "period_overlap").sum() == 4


def test_later_wins_leaves_a_long_overlap_reported() -> None:
    bills = {"E1": [("2024-01-01", "2024-01-31", 31.0), ("2024-01-20", "2024-02-29", 41.0)]}
    t = run_pipeline(PROFILE, _records(bills), mapping=_mapping(True, {"overlaps": "later_wins"}))
    rep = t.quarantine[t.quarantine["rule"] == "period_overlap"]
    assert len(rep) == 1 and rep["severity"].iloc[0] == "error"
    assert sum(_monthly(t).values()) == pytest.approx(72.0)


def test_later_wins_as_a_source_policy() -> None:
    m = _mapping(True)
    m["usage"]["bills"]["policy"] = {"overlaps": "later_wins"}
    got = _monthly(run_pipeline(PROFILE, _records(SHARED), mapping=m))
    for key, value in _expected(SHARED_TRUTH).items():
        assert got[key] == pytest.approx(value, rel=1e-12), key


def test_bad_source_policy_is_a_mapping_error() -> None:
    m = _mapping(True)
    m["usage"]["bills"]["policy"] = {"overlaps": "later_win"}
    with pytest.raises(MappingError) as info:
        run_pipeline(PROFILE, _records(SHARED), mapping=m)
    assert "later_wins" in str(info.value.hint)


def test_end_inclusive_auto_is_decided_per_meter_and_keeps_each_last_bill_day() -> None:
    # I1: inclusive ends (next start = end + 1 day); X1: exclusive ends (shared boundaries)
    bills = {
        "I1": [
            ("2024-01-01", "2024-01-30", 30.0),
            ("2024-01-31", "2024-02-29", 30.0),
            ("2024-03-01", "2024-03-31", 31.0),  # last bill: March 31 is billed
        ],
        "X1": [
            ("2024-01-01", "2024-02-01", 31.0),
            ("2024-02-01", "2024-03-01", 29.0),
            ("2024-03-01", "2024-04-01", 31.0),  # last bill: ends before April 1
        ],
        "X2": [
            ("2024-01-10", "2024-02-10", 31.0),
            ("2024-02-10", "2024-03-10", 29.0),
        ],
    }
    t = run_pipeline(PROFILE, _records(bills), mapping=_mapping("auto"))
    got = _monthly(t)
    want = _expected(
        {
            "I1": [
                (_days("2024-01-01", "2024-01-30"), 30.0),
                (_days("2024-01-31", "2024-02-29"), 30.0),
                (_days("2024-03-01", "2024-03-31"), 31.0),
            ],
            "X1": [
                (_days("2024-01-01", "2024-01-31"), 31.0),
                (_days("2024-02-01", "2024-02-29"), 29.0),
                (_days("2024-03-01", "2024-03-31"), 31.0),
            ],
            "X2": [
                (_days("2024-01-10", "2024-02-09"), 31.0),
                (_days("2024-02-10", "2024-03-09"), 29.0),
            ],
        }
    )
    assert set(got) == set(want)  # no April row for X1, a whole March for I1
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-12), key
    assert t.quarantine.empty, t.quarantine[["rule", "reason"]].to_string()


def test_end_inclusive_auto_single_bill_meter_follows_the_source() -> None:
    bills = {
        "I1": [("2024-01-01", "2024-01-31", 31.0), ("2024-02-01", "2024-02-29", 29.0)],
        "I2": [("2024-01-01", "2024-01-31", 31.0)],  # one bill: the source says inclusive
    }
    t = run_pipeline(PROFILE, _records(bills), mapping=_mapping("auto"))
    got = _monthly(t)
    assert got == {
        ("I1", "2024-01"): pytest.approx(31.0),
        ("I1", "2024-02"): pytest.approx(29.0),
        ("I2", "2024-01"): pytest.approx(31.0),
    }
    ends = t.usage[t.usage["meter_id"].astype(str) == "I2"]["end"]
    assert ends.max().tz_convert(NY).strftime("%Y-%m-%d") == "2024-02-01"


# ---- two sources for one meter: consumption from intervals, cost from bills (item 15) --------
def _merge_mapping(provides: Any = ("cost",), prorate: str = "month") -> dict[str, Any]:
    m = _mapping(False)
    bills = m["usage"]["bills"]
    bills["prorate"] = prorate
    if provides is not None:
        bills["provides"] = list(provides)
    m["usage"] = {
        "intervals": {
            "resource": "intervals",
            "kind": "intervals",
            "aggregate": "month",
            "fields": {"meter_id": "m", "start": "s", "end": "e", "consumption": "v"},
        },
        "bills": bills,
    }
    return m


def _merge_records() -> dict[str, list[dict[str, Any]]]:
    # E1: hourly intervals of 0.5 kWh, local January 1 .. April 1 (exclusive), with offsets
    starts = pd.date_range("2024-01-01", "2024-04-01", freq="h", tz=NY, inclusive="left")
    hours = [
        {"m": "E1", "s": a.isoformat(), "e": (a + pd.Timedelta("1h")).isoformat(), "v": 0.5}
        for a in starts
    ]
    raw = _records(
        {
            "E1": [
                ("2024-01-10", "2024-02-10", 999.0),  # usage 999 (not used), cost 99.9
                ("2024-02-10", "2024-03-10", 888.0),
                ("2024-03-10", "2024-04-10", 777.0),  # April has no interval row
            ]
        }
    )
    raw["intervals"] = hours
    return raw


def test_cost_from_bills_is_attached_to_the_interval_months_with_exact_totals() -> None:
    t = run_pipeline(PROFILE, _merge_records(), mapping=_merge_mapping())
    usage = t.usage
    months = [r.start.tz_convert(NY).strftime("%Y-%m") for r in usage.itertuples()]
    assert sorted(months) == ["2024-01", "2024-02", "2024-03"]  # one row per month, no dups
    assert set(usage["source"].astype(str)) == {"intervals"}
    cons = _monthly(t)
    assert cons == {
        ("E1", "2024-01"): pytest.approx(31 * 24 * 0.5),
        ("E1", "2024-02"): pytest.approx(29 * 24 * 0.5),
        # March 10 is the spring-forward day in New York: 23 hours in local time
        ("E1", "2024-03"): pytest.approx((31 * 24 - 1) * 0.5),
    }
    want = _expected(
        {
            "E1": [
                (_days("2024-01-10", "2024-02-09"), 99.9),
                (_days("2024-02-10", "2024-03-09"), 88.8),
                (_days("2024-03-10", "2024-04-09"), 77.7),
            ]
        }
    )
    cost = _monthly(t, "cost")
    for key in [("E1", "2024-01"), ("E1", "2024-02"), ("E1", "2024-03")]:
        assert cost[key] == pytest.approx(want[key], rel=1e-12), key
    assert all("cost from bills" in str(m) for m in usage["method"])
    # April's share of the last bill has no interval month: set aside, said so, not exported
    q = t.quarantine[t.quarantine["rule"] == "merge_unmatched"]
    assert len(q) == 1 and "not exported" in q["reason"].iloc[0]
    assert "2024-04" in q["record_key"].iloc[0]
    assert set(t.quarantine["rule"]) == {"merge_unmatched"}


def test_without_provides_the_second_source_makes_its_own_rows() -> None:
    t = run_pipeline(PROFILE, _merge_records(), mapping=_merge_mapping(provides=None))
    assert set(t.usage["source"].astype(str)) == {"intervals", "bills"}  # the old behaviour
    assert len(t.usage) > 3


@pytest.mark.parametrize(
    ("provides", "prorate", "says"),
    [
        (["usage"], "month", "only value"),
        ("cost", "month", "only value"),
        (["cost"], "none", "prorate"),
    ],
)
def test_bad_provides_is_a_mapping_error(provides: Any, prorate: str, says: str) -> None:
    m = _merge_mapping(prorate=prorate)
    m["usage"]["bills"]["provides"] = provides
    with pytest.raises(MappingError) as info:
        run_pipeline(PROFILE, _merge_records(), mapping=m)
    assert says in str(info.value) and info.value.hint


def test_provides_is_a_known_profile_key_and_typos_are_refused() -> None:
    from scaler_workbench.exceptions import ProfileError

    data = {
        "provider": {"name": "t", "timezone": NY},
        "environments": {"x": {"base_url": "http://127.0.0.1"}},
        "resources": {"bills": {"path": "/b"}, "intervals": {"path": "/i"}},
        "mapping": _merge_mapping(),
    }
    Profile.from_dict(data)  # accepted
    data["mapping"]["usage"]["bills"]["provide"] = data["mapping"]["usage"]["bills"].pop("provides")
    with pytest.raises(ProfileError) as info:
        Profile.from_dict(data)
    assert "provides" in str(info.value) + str(info.value.hint)


@pytest.mark.parametrize("bad", ["cost", ["costs"], []])
def test_provides_value_is_checked_when_the_profile_is_read(bad: Any) -> None:
    from scaler_workbench.exceptions import ProfileError

    data = {
        "provider": {"name": "t", "timezone": NY},
        "environments": {"x": {"base_url": "http://127.0.0.1"}},
        "resources": {"bills": {"path": "/b"}, "intervals": {"path": "/i"}},
        "mapping": _merge_mapping(),
    }
    data["mapping"]["usage"]["bills"]["provides"] = bad
    with pytest.raises(ProfileError) as info:
        Profile.from_dict(data)
    assert "mapping.usage.bills.provides" in str(info.value)
    assert "'cost'" in str(info.value)
