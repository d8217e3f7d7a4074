"""The sandbox's data traps (issue 13 item 10) over real loopback HTTP, and their ground truth.

Each test reads what the sandbox SERVES (``requests`` against 127.0.0.1) and checks it against
:meth:`Sandbox.trap_facts` and :meth:`Sandbox.ground_truth`: the facts later tests assert
findings, coverage rows and exported spans against must describe the HTTP data exactly.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests

from scaler_workbench.exceptions import SandboxError
from scaler_workbench.sandbox import Sandbox, SandboxData
from scaler_workbench.sandbox.__main__ import main
from scaler_workbench.sandbox.generate import TRAPS

MakeSandbox = Callable[..., Sandbox]
#: the small sandbox's portfolio (tests/conftest.py SMALL_SANDBOX) with every trap
SMALL = {"sites": 2, "meters_per_site": 3, "start": "2024-01-01", "end": "2024-04-01"}


@pytest.fixture
def trapped(make_sandbox: MakeSandbox) -> Sandbox:
    return make_sandbox(traps=True, page_size=1000)


def _get_all(sb: Sandbox, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every record of a list endpoint, walking offset pages."""
    session = requests.Session()
    session.headers["X-API-Key"] = sb.credentials.api_key
    out: list[dict[str, Any]] = []
    while True:
        r = session.get(f"{sb.url}{path}", params={**params, "offset": len(out)}, timeout=10)
        r.raise_for_status()
        body = r.json()
        out += body["data"]
        if not body["data"] or len(out) >= body["total"]:
            return out


def _served_intervals(sb: Sandbox, meter_id: str, tz: str) -> pd.DataFrame:
    rows = _get_all(sb, f"/meters/{meter_id}/intervals")
    frame = pd.DataFrame(rows, columns=["interval_start", "interval_end", "value"])
    start = pd.to_datetime(frame["interval_start"], utc=True)
    end = pd.to_datetime(frame["interval_end"], utc=True)
    frame["local_start"] = start.dt.tz_convert(tz).dt.tz_localize(None)
    frame["local_end"] = end.dt.tz_convert(tz).dt.tz_localize(None)
    frame["month"] = frame["local_start"].dt.strftime("%Y-%m")
    frame["day"] = frame["local_start"].dt.strftime("%Y-%m-%d")
    frame["value"] = frame["value"].astype("float64")  # JSON null -> NaN
    return frame


def _truth(sb: Sandbox, meter_id: str) -> dict[str, float]:
    """The meter's energy per month: its consumption, or its production (a solar meter)."""
    gt = sb.ground_truth()
    gt = gt[gt["meter_id"] == meter_id]
    energy = gt["consumption"] + gt["production"].fillna(0.0)
    return dict(zip(gt["month"], energy, strict=True))


def _check_months_against_http(sb: Sandbox, facts: dict[str, Any]) -> pd.DataFrame:
    """Every per-month fact and the ground truth equal what HTTP serves; returns the frame."""
    served = _served_intervals(sb, facts["meter_id"], facts["timezone"])
    has = served[served["value"].notna()]
    truth = _truth(sb, facts["meter_id"])
    for row in facts["months"]:
        mine = served[served["month"] == row["month"]]
        with_value = has[has["month"] == row["month"]]
        assert row["intervals"] == len(mine)
        assert row["null_intervals"] == int(mine["value"].isna().sum())
        assert row["days_with_data"] == with_value["day"].nunique()
        if len(with_value):
            assert row["first_day"] == with_value["day"].min()
            assert row["last_day"] == with_value["day"].max()
            assert row["first_local"] == with_value["local_start"].min().strftime("%Y-%m-%dT%H:%M")
            assert row["last_local"] == with_value["local_end"].max().strftime("%Y-%m-%dT%H:%M")
            # sum of served values per local month = ground truth = the fact
            assert with_value["value"].sum() == pytest.approx(truth[row["month"]], rel=1e-12)
            assert row["consumption"] == pytest.approx(truth[row["month"]], rel=1e-12)
        else:
            assert row["month"] not in truth and row["first_day"] is None
    assert set(truth) == set(has["month"])
    return served


def test_default_sandbox_is_unchanged_by_the_trap_option() -> None:
    plain = SandboxData.generate(seed=0)
    trapped = SandboxData.generate(seed=0, traps=True)
    n = len(plain.meters)
    assert [m["id"] for m in trapped.meters[:n]] == [m["id"] for m in plain.meters]
    assert plain.trap_facts() == {} and "installed_on" not in plain.meters[0]
    gt_plain = plain.ground_truth()
    gt_trapped = trapped.ground_truth(meters=[m["id"] for m in plain.meters])
    pd.testing.assert_frame_equal(gt_plain, gt_trapped)
    for m in plain.meters:
        if m["kind"] == "interval":
            a = plain.interval_json(m["id"], 0, 500)
            assert a == trapped.interval_json(m["id"], 0, 500)
    # regular meter records only gain the (empty) installed_on / removed_on fields
    for old, new in zip(plain.meters, trapped.meters[:n], strict=True):
        assert new == {**old, "installed_on": None, "removed_on": None}


def test_every_trap_is_planted_once_on_the_first_site(trapped: Sandbox) -> None:
    facts = trapped.trap_facts()
    assert list(facts) == list(TRAPS)
    ids = [f["meter_id"] for f in facts.values()]
    assert len(set(ids)) == len(TRAPS)
    listed = _get_all(trapped, "/sites/S001/meters")
    listed_ids = [m["id"] for m in listed]
    assert set(ids) <= set(listed_ids)
    assert all({"installed_on", "removed_on"} <= set(m) for m in listed)
    assert trapped.trap_facts() is not trapped.trap_facts()  # a fresh copy each call


def test_mid_month_start_serves_data_from_the_installation_day(trapped: Sandbox) -> None:
    f = trapped.trap_facts()["mid_month_start"]
    meter = next(m for m in _get_all(trapped, "/meters") if m["id"] == f["meter_id"])
    assert meter["installed_on"] == f["installed_on"] == "2024-02-20"
    served = _check_months_against_http(trapped, f)
    assert served["day"].min() == f["installed_on"]
    assert served["local_start"].min() == pd.Timestamp("2024-02-20T00:00")
    feb = next(m for m in f["months"] if m["month"] == "2024-02")
    assert (feb["first_day"], feb["last_day"], feb["days_with_data"]) == (
        "2024-02-20",
        "2024-02-29",
        10,
    )
    assert (feb["intervals"], feb["expected_intervals"]) == (480, 1392)
    jan = next(m for m in f["months"] if m["month"] == "2024-01")
    assert jan["intervals"] == 0 and "2024-01" not in _truth(trapped, f["meter_id"])


def test_mid_month_end_serves_data_until_the_day_before_removal(trapped: Sandbox) -> None:
    f = trapped.trap_facts()["mid_month_end"]
    meter = next(m for m in _get_all(trapped, "/meters") if m["id"] == f["meter_id"])
    assert meter["removed_on"] == f["removed_on"] == "2024-06-05"
    served = _check_months_against_http(trapped, f)
    assert served["local_end"].max() == pd.Timestamp("2024-06-05T00:00")
    june = f["months"][-1]
    assert (june["month"], june["last_day"], june["span_end"], june["days_with_data"]) == (
        "2024-06",
        "2024-06-04",
        "2024-06-05",
        4,
    )
    assert (june["intervals"], june["expected_intervals"]) == (4 * 48, 1440)


def test_missing_day_is_absent_and_only_that_day(trapped: Sandbox) -> None:
    f = trapped.trap_facts()["missing_day"]
    served = _check_months_against_http(trapped, f)
    assert f["missing_dates"] == ["2024-02-12"]
    days = pd.date_range("2024-01-01", "2024-06-30", freq="D").strftime("%Y-%m-%d")
    assert sorted(set(days) - set(served["day"])) == f["missing_dates"]
    feb = next(m for m in f["months"] if m["month"] == "2024-02")
    assert (feb["days_with_data"], feb["intervals"], feb["expected_intervals"]) == (28, 1344, 1392)
    # no other gap: every other month is complete, DST days included (46 and 50 half-hours)
    assert all(m["intervals"] == m["expected_intervals"] for m in f["months"] if m is not feb)
    assert next(m for m in f["months"] if m["month"] == "2024-03")["expected_intervals"] == 1486


def test_three_hour_hole_inside_one_day(trapped: Sandbox) -> None:
    f = trapped.trap_facts()["hole_3h"]
    served = _check_months_against_http(trapped, f)
    (hole,) = f["holes"]
    assert hole == {
        "date": "2024-05-13",
        "start": "09:00",
        "end": "12:00",
        "start_utc": "2024-05-13T08:00:00+00:00",
        "end_utc": "2024-05-13T11:00:00+00:00",
        "intervals": 6,
    }
    day = served[served["day"] == hole["date"]]
    assert len(day) == 48 - 6
    times = set(day["local_start"].dt.strftime("%H:%M"))
    missing = {f"{h:02d}:{m:02d}" for h in range(9, 12) for m in (0, 30)}
    assert not times & missing and len(times | missing) == 48
    may = next(m for m in f["months"] if m["month"] == "2024-05")
    assert (may["days_with_data"], may["intervals"], may["expected_intervals"]) == (31, 1482, 1488)


def test_null_night_values_are_served_as_null_and_are_no_data(trapped: Sandbox) -> None:
    f = trapped.trap_facts()["null_night"]
    raw = _get_all(trapped, f"/meters/{f['meter_id']}/intervals")
    nulls = [r for r in raw if r["value"] is None]
    assert nulls and all(r["exported"] is None for r in nulls)
    served = _check_months_against_http(trapped, f)
    hours = served["local_start"].dt.hour
    night = (hours < 6) | (hours >= 18)
    assert served["value"].isna().eq(night).all()
    assert sum(m["null_intervals"] for m in f["months"]) == len(nulls) == int(night.sum())
    # ground truth counts nulls as no data: the served non-null values alone make the total
    jan = next(m for m in f["months"] if m["month"] == "2024-01")
    assert (jan["intervals"], jan["null_intervals"], jan["days_with_data"]) == (1488, 744, 31)


def test_duplicate_meter_id_is_listed_twice_with_different_names(trapped: Sandbox) -> None:
    f = trapped.trap_facts()["duplicate_meter_id"]
    for path in ("/meters", "/sites/S001/meters"):
        listed = [m for m in _get_all(trapped, path) if m["id"] == f["meter_id"]]
        assert len(listed) == 2
        assert listed[0]["name"] != listed[1]["name"]
        assert [m["name"] for m in listed] == [r["name"] for r in f["records"]]
    # its data and ground truth exist once
    _check_months_against_http(trapped, f)
    gt = trapped.ground_truth()
    assert not gt.duplicated(["meter_id", "month"]).any()


def test_stale_meter_is_listed_but_has_no_data(trapped: Sandbox) -> None:
    f = trapped.trap_facts()["stale_meter"]
    assert f["meter_id"] in [m["id"] for m in _get_all(trapped, "/meters")]
    assert _get_all(trapped, f"/meters/{f['meter_id']}/intervals") == []
    assert f["ground_truth"] == [] and f["meter_id"] not in set(trapped.ground_truth()["meter_id"])
    assert all(m["intervals"] == 0 and m["days_with_data"] == 0 for m in f["months"])


def test_bimonthly_bill_meter_next_bill_not_due(trapped: Sandbox) -> None:
    f = trapped.trap_facts()["bimonthly_bill"]
    bills = _get_all(trapped, f"/meters/{f['meter_id']}/bills")
    assert [{k: b[k] for k in ("period_start", "period_end")} for b in bills] == f["bills"]
    assert f["bills"] == [
        {"period_start": "2024-01-15", "period_end": "2024-03-14"},
        {"period_start": "2024-03-15", "period_end": "2024-05-14"},
    ]
    assert f["billing_days"] == [60, 61]
    assert (f["billed_until"], f["next_bill_end"], f["period_end"]) == (
        "2024-05-15",
        "2024-07-14",
        "2024-07-01",
    )
    gap = (pd.Timestamp(f["period_end"]) - pd.Timestamp(f["billed_until"])).days
    assert 0 < gap < min(f["billing_days"])  # the next bill is simply not due yet
    assert all(b["currency"] == "GBP" for b in bills)
    # ground truth: the bills prorated by days over local months (none for June)
    truth = _truth(trapped, f["meter_id"])
    assert sorted(truth) == ["2024-01", "2024-02", "2024-03", "2024-04", "2024-05"]
    assert sum(truth.values()) == pytest.approx(sum(b["amount"] for b in bills), rel=1e-12)
    daily = bills[0]["amount"] / 60
    assert truth["2024-01"] == pytest.approx(daily * 17, rel=1e-12)  # Jan 15..31


def test_summary_endpoint_agrees_with_trap_ground_truth(trapped: Sandbox) -> None:
    session = requests.Session()
    session.headers["X-API-Key"] = trapped.credentials.api_key
    for f in trapped.trap_facts().values():
        rows = session.get(f"{trapped.url}/meters/{f['meter_id']}/summary", timeout=10).json()
        served = {r["month"]: r["total"] for r in rows["data"]}
        assert served == pytest.approx(_truth(trapped, f["meter_id"]), rel=1e-12)


def test_traps_in_the_small_sandbox_and_by_name(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(**SMALL, traps=["hole_3h", "mid_month_end"], page_size=1000)
    facts = sb.trap_facts()
    assert list(facts) == ["mid_month_end", "hole_3h"]
    assert facts["mid_month_end"]["removed_on"].startswith("2024-03-")
    assert facts["hole_3h"]["holes"][0]["date"].startswith("2024-02-")
    for f in facts.values():
        _check_months_against_http(sb, f)


def test_traps_are_seeded() -> None:
    a = SandboxData.generate(seed=5, traps=True).trap_facts()
    b = SandboxData.generate(seed=5, traps=True).trap_facts()
    c = SandboxData.generate(seed=6, traps=True).trap_facts()
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert json.dumps(a, sort_keys=True) != json.dumps(c, sort_keys=True)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"traps": ["no_such_trap"]}, "unknown trap"),
        ({"traps": True, "start": "2024-01-01", "end": "2024-02-15"}, "three month starts"),
    ],
)
def test_bad_trap_options_are_a_sandbox_error(options: dict[str, Any], match: str) -> None:
    with pytest.raises(SandboxError, match=match) as info:
        SandboxData.generate(**options)
    assert info.value.hint


def test_null_values_only_in_the_null_night_meter() -> None:
    data = SandboxData.generate(seed=0, traps=True)
    with_nan = {
        mid for mid, s in data.series.items() if hasattr(s, "value") and np.isnan(s.value).any()
    }
    assert with_nan == {data.trap_facts()["null_night"]["meter_id"]}


def test_cli_plants_traps_and_names_their_meters(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--lifetime", "0.2", "--traps", "stale_meter", "hole_3h"]) == 0
    out = capsys.readouterr().out
    facts = SandboxData.generate(traps=["stale_meter", "hole_3h"]).trap_facts()
    assert f"# trap hole_3h: meter {facts['hole_3h']['meter_id']}" in out
    assert f"# trap stale_meter: meter {facts['stale_meter']['meter_id']}" in out
    assert main(["--lifetime", "0.2", "--traps"]) == 0
    assert capsys.readouterr().out.count("# trap ") == len(TRAPS)
    assert main(["--lifetime", "0.2", "--traps", "bogus"]) == 2
    assert "unknown trap" in capsys.readouterr().err
