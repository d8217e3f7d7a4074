"""A bill straddling the start of a fetch range is never dropped (issue 15 item 7).

The loopback fake filters bills by their START date (``startDate <= start <= endDate``), as
many billing APIs do: a bill that began before the range but reaches into it is only fetched
with ``[resources.X.date_range] lookback_days``. Full, ``--since`` and incremental syncs must
give the months the bills' exact prorated totals, with nothing duplicated in the state.
"""

from __future__ import annotations

import copy
import csv
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from _fakes import Reply, Request

from scaler_workbench.clock import FakeClock
from scaler_workbench.connectors import fetch_resources
from scaler_workbench.exceptions import ProfileError
from scaler_workbench.profile import Profile
from scaler_workbench.sync import run_sync

# mid-month bills, exclusive end dates (the next bill's start)
STARTS = ["2023-12-15", "2024-01-15", "2024-02-15", "2024-03-15", "2024-04-15", "2024-05-15"]
BILLS = {
    meter: [
        {
            "id": f"{meter}-{i}",
            "start": a,
            "end": STARTS[i + 1],
            "usage": float(100 * (i + 1) + (7 if meter == "B" else 0)),
        }
        for i, a in enumerate(STARTS[:-1])
    ]
    for meter in ("A", "B")
}


def bills_api(req: Request) -> Reply:
    if req.path == "/meters":
        return Reply(200, {"data": [{"id": "A", "site": "S1"}, {"id": "B", "site": "S1"}]})
    meter = req.path.split("/")[2]
    lo = date.fromisoformat(req.query["startDate"])
    hi = date.fromisoformat(req.query["endDate"])  # inclusive
    rows = [b for b in BILLS[meter] if lo <= date.fromisoformat(b["start"]) <= hi]
    return Reply(200, {"bills": rows})


PROFILE: dict[str, Any] = {
    "provider": {"name": "billco", "timezone": "America/Chicago"},
    "environments": {"test": {"base_url": ""}},
    "paginator": {"type": "none"},
    "resources": {
        "meters": {"path": "/meters", "record_path": "data"},
        "bills": {
            "path": "/meters/{meter_id}/bills",
            "record_path": "bills",
            "primary_key": "id",
            "parent": "meters",
            "parent_params": {"meter_id": "id"},
            "date_range": {
                "start_param": "startDate",
                "end_param": "endDate",
                "format": "date",
                "end_inclusive": True,
                "chunk": "month",
                "since": "2024-01-01",
                "lookback_days": 62,
            },
        },
    },
    "mapping": {
        "assets": {"resource": "meters", "fields": {"asset_id": "site", "name": "site"}},
        "meters": {
            "resource": "meters",
            "fields": {
                "meter_id": "id",
                "asset_id": "site",
                "meter_type": {"const": "Energy"},
                "raw_unit": {"const": "kWh"},
            },
        },
        "usage": {
            "bills": {
                "resource": "bills",
                "kind": "consumption",
                "prorate": "month",
                "fields": {
                    "meter_id": "_parent.meter_id",
                    "start": "start",
                    "end": "end",
                    "consumption": "usage",
                },
            }
        },
    },
    "sync": {"state": "state/billco.sqlite"},
}


def _profile(url: str, *, lookback: int | None = 62, incremental: bool = False) -> Profile:
    data = copy.deepcopy(PROFILE)
    data["environments"]["test"]["base_url"] = url
    dr = data["resources"]["bills"]["date_range"]
    if lookback is None:
        del dr["lookback_days"]
    else:
        dr["lookback_days"] = lookback
    if incremental:
        data["resources"]["bills"]["incremental"] = {"cursor_path": "start", "lookback_days": 0}
    return Profile.from_dict(data)


def expected_monthly() -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], Fraction] = defaultdict(Fraction)
    for meter, rows in BILLS.items():
        for b in rows:
            a, e = date.fromisoformat(b["start"]), date.fromisoformat(b["end"])
            days = [a + timedelta(d) for d in range((e - a).days)]
            for d in days:
                out[(meter, d.strftime("%Y-%m"))] += Fraction(b["usage"]) / len(days)
    return {k: float(v) for k, v in out.items()}


def exported(out: Path) -> dict[tuple[str, str], float]:
    """Monthly consumption per meter from export/usage.csv; a repeated month fails."""
    got: dict[tuple[str, str], float] = {}
    with (out / "export" / "usage.csv").open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            key = (row["meter_external_id"], row["start_date"][:7])
            assert key not in got, f"month stored twice: {key}"
            got[key] = float(row["consumption"])
    return got


def _bill_requests(server: Any) -> list[Request]:
    return [r for r in server.requests if r.path.endswith("/bills")]


def test_fetch_with_since_keeps_the_straddling_bill(serve: Any) -> None:
    server = serve(bills_api)
    got = fetch_resources(
        _profile(server.url), since="2024-03-01", until="2024-04-01", clock=_clock()
    )
    ids = {r["id"] for r in got["bills"].records}
    assert "A-2" in ids  # 2024-02-15 .. 2024-03-15 reaches into March
    first = min(r.query["startDate"] for r in _bill_requests(server))
    assert first == "2023-12-30"  # 62 local days before March 1
    # without the look-back the straddling bill is not asked for (the problem it solves)
    plain = fetch_resources(
        _profile(server.url, lookback=None), since="2024-03-01", until="2024-04-01", clock=_clock()
    )
    assert "A-2" not in {r["id"] for r in plain["bills"].records}


def _clock() -> FakeClock:
    return FakeClock(datetime(2024, 6, 1, 12, tzinfo=UTC))


def _months(got: dict[tuple[str, str], float], first: str) -> dict[tuple[str, str], float]:
    return {k: v for k, v in got.items() if k[1] >= first}


def test_since_run_recomputes_months_with_the_straddling_bill_and_no_duplicates(
    serve: Any, tmp_path: Path
) -> None:
    server = serve(bills_api)
    want = expected_monthly()
    full = run_sync(
        _profile(server.url), out=tmp_path, clock=_clock(), formats=("csv",), until="2024-06-01"
    )
    assert full.exit_code in (0, 1), full.summary
    got = exported(tmp_path)
    for key in [k for k in want if k[1] >= "2024-01"]:
        assert got[key] == pytest.approx(want[key], rel=1e-10), key
    stored_before = {k: v for k, v in got.items() if k[1] < "2024-03"}
    again = run_sync(
        _profile(server.url),
        out=tmp_path,
        clock=_clock(),
        formats=("csv",),
        since="2024-03-10",
        until="2024-06-01",
    )
    assert again.exit_code in (0, 1), again.summary
    got = exported(tmp_path)  # no month stored twice
    for key, value in _months(want, "2024-03").items():
        assert got[key] == pytest.approx(value, rel=1e-10), key
    assert {k: v for k, v in got.items() if k[1] < "2024-03"} == stored_before


def test_since_run_without_look_back_loses_the_straddling_share(serve: Any, tmp_path: Path) -> None:
    server = serve(bills_api)
    run_sync(
        _profile(server.url, lookback=None),
        out=tmp_path,
        clock=_clock(),
        formats=("csv",),
        since="2024-03-01",
        until="2024-06-01",
    )
    got = exported(tmp_path)
    assert got[("A", "2024-03")] < expected_monthly()[("A", "2024-03")] - 1  # the lost share


def test_incremental_run_fetches_the_bill_straddling_its_window(serve: Any, tmp_path: Path) -> None:
    server = serve(bills_api)
    want = expected_monthly()
    prof = _profile(server.url, incremental=True)
    first = run_sync(prof, out=tmp_path, clock=_clock(), formats=("csv",), until="2024-04-01")
    assert str(first.summary["watermarks"]["bills"]).startswith("2024-03-15")
    server.requests.clear()
    second = run_sync(prof, out=tmp_path, clock=_clock(), formats=("csv",))
    assert second.summary["mode"] == "incremental", second.summary
    # the window starts at March (the watermark's month); the look-back asks from 62 days
    # earlier, so the February bill's March days are counted
    assert min(r.query["startDate"] for r in _bill_requests(server)) == "2023-12-30"
    got = exported(tmp_path)
    for key, value in want.items():
        if key[1] >= "2024-01":
            assert got[key] == pytest.approx(value, rel=1e-10), key


@pytest.mark.parametrize("bad", [-1, 1.5, "62", True])
def test_bad_lookback_days_is_a_profile_error(bad: Any) -> None:
    from scaler_workbench.connectors.dates import make_date_range

    with pytest.raises(ProfileError) as info:
        make_date_range({"lookback_days": bad})
    assert "lookback_days" in str(info.value)
