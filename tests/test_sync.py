"""run_sync mechanics with small stand-in stages: idempotency, incremental merge by whole months,
guarded deactivation, quarantine, dry runs and failures. (Loopback tests against the real
sandbox and connectors are in tests/test_cli.py.)"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from scaler_workbench.clock import FakeClock
from scaler_workbench.exceptions import QuotaExhaustedError, SchemaError
from scaler_workbench.profile import Profile
from scaler_workbench.schema import QUARANTINE, Tables, coerce_frame
from scaler_workbench.store import StateStore
from scaler_workbench.sync import run_sync

PROFILE = {
    "provider": {"name": "fake", "timezone": "Europe/London"},
    "environments": {"test": {"base_url": "http://127.0.0.1:9/api"}},
    "resources": {
        "sites": {"path": "/sites"},
        "meters": {"path": "/sites/{site_id}/meters", "parent": "sites"},
        "days": {
            "path": "/meters/{meter_id}/days",
            "parent": "meters",
            "date_range": {"start_param": "from", "end_param": "to", "since": "2024-01-01"},
            "incremental": {"cursor_path": "day", "lookback_days": 2},
        },
    },
    "mapping": {"assets": {"resource": "sites"}, "meters": {"resource": "meters"}},
    "sync": {"state": "state/fake.sqlite", "max_deactivation_fraction": 0.2},
}


@dataclass
class Report:
    failed_pages: list[dict[str, Any]] = field(default_factory=list)
    watermarks: dict[str, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return not self.failed_pages


@dataclass
class Result:
    records: list[dict[str, Any]]
    report: Report


class FakeProvider:
    """20 meters on 2 sites (London, New York) with one value per local day."""

    def __init__(self, n_meters: int = 20) -> None:
        self.meters = [f"M{i:02d}" for i in range(n_meters)]
        self.as_of = date(2024, 3, 15)
        self.removed: set[str] = set()
        self.fail_meter_page = False
        self.negative: set[tuple[str, str]] = set()
        self.calls: list[tuple[str, Any, Any]] = []

    def value(self, meter: str, days: np.ndarray) -> np.ndarray:
        k = int(meter[1:])
        return (days.astype("int64") % 7 + 1) * 0.1 + k / 3

    def fetch(
        self, profile: Profile, *, windows: dict[str, Any], clock: Any
    ) -> tuple[dict[str, Result], list[dict[str, Any]]]:
        results: dict[str, Result] = {}
        sites = [{"id": "S1", "tz": "Europe/London"}, {"id": "S2", "tz": "America/New_York"}]
        results["sites"] = Result(sites, Report())
        live = [m for m in self.meters if m not in self.removed]
        meters = [{"id": m, "_parent": {"site_id": "S1" if int(m[1:]) % 2 else "S2"}} for m in live]
        report = Report()
        if self.fail_meter_page:
            meters = meters[: len(meters) // 2]
            report.failed_pages.append({"parent": "S2", "error": "503"})
        results["meters"] = Result(meters, report)
        since, until = windows["days"]
        self.calls.append(("days", since, until))
        first = since.date() if since else date(2024, 1, 1)
        last = min(until.date() if until else self.as_of, self.as_of)
        days = np.arange(np.datetime64(first), np.datetime64(last))
        recs, wms = [], {}
        for m in (r["id"] for r in meters):
            vals = self.value(m, days)
            for d, v in zip(days, vals, strict=True):
                bad = (m, str(d)) in self.negative
                recs.append(
                    {"day": str(d), "value": -1e6 if bad else float(v), "_parent": {"meter_id": m}}
                )
            if len(days):
                wms[m] = f"{days[-1]}T00:00:00+00:00"
        results["days"] = Result(recs, Report(watermarks=wms))
        log = [{"method": "GET", "url": f"http://fake/days?from={since}&api_key=x", "status": 200}]
        return results, log


def fake_pipeline(profile: Profile, raw: dict[str, list[dict[str, Any]]]) -> Tables:
    t = Tables()
    sites = pd.DataFrame(raw["sites"])
    t.assets = coerce_frame(
        sites.rename(columns={"id": "asset_id", "tz": "timezone"}).assign(name=sites["id"]),
        "assets",
    )
    meters = pd.DataFrame(raw["meters"])
    t.meters = coerce_frame(
        pd.DataFrame(
            {
                "meter_id": meters["id"],
                "asset_id": [p["site_id"] for p in meters["_parent"]],
                "meter_type": "Energy",
                "unit": "kWh",
            }
        ),
        "meters",
    )
    days = pd.DataFrame(raw["days"])
    if days.empty:
        return t
    days["meter_id"] = [p["meter_id"] for p in days["_parent"]]
    tz = t.meters.merge(t.assets, on="asset_id").set_index("meter_id")["timezone"]
    days["tz"] = days["meter_id"].map(tz)
    rows = []
    for zone, grp in days.groupby("tz"):  # one group per zone, vectorised inside
        local = pd.to_datetime(grp["day"]).dt.tz_localize(zone)
        month = local.dt.tz_localize(None).dt.to_period("M")
        agg = grp.assign(month=month).groupby(["meter_id", "month"], as_index=False)["value"].sum()
        start = agg["month"].dt.to_timestamp().dt.tz_localize(zone)
        end = (agg["month"] + 1).dt.to_timestamp().dt.tz_localize(zone)
        rows.append(
            pd.DataFrame(
                {
                    "meter_id": agg["meter_id"],
                    "start": start.dt.tz_convert("UTC"),
                    "end": end.dt.tz_convert("UTC"),
                    "consumption": agg["value"],
                    "unit": "kWh",
                    "timezone": zone,
                }
            )
        )
    t.usage = coerce_frame(pd.concat(rows, ignore_index=True), "usage")
    return t


@dataclass
class VResult:
    accepted: Tables
    quarantined: pd.DataFrame


def fake_validate(tables: Tables, profile: Profile) -> VResult:
    bad = tables.usage["consumption"] < 0
    q = tables.usage[bad]
    quarantined = coerce_frame(
        pd.DataFrame(
            {
                "table": "usage",
                "record_key": q["meter_id"].astype(str) + "|" + q["start"].astype(str),
                "stage": "validation",
                "rule": "negative_consumption",
                "severity": "error",
                "reason": "consumption < 0",
            }
        ),
        QUARANTINE,
    )
    accepted = Tables(tables.assets, tables.meters, tables.usage[~bad], tables.readings)
    return VResult(accepted, quarantined)


@pytest.fixture
def provider() -> FakeProvider:
    return FakeProvider()


def sync(provider: FakeProvider, out: Path, **kw: Any) -> Any:
    profile = Profile.from_dict(PROFILE)
    clock = FakeClock(datetime(2024, 12, 1, tzinfo=UTC))
    return run_sync(
        profile,
        out=out,
        clock=clock,
        fetch=provider.fetch,
        pipeline=fake_pipeline,
        validate=fake_validate,
        formats=("csv",),
        **kw,
    )


def files(out: Path) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes()
        for p in sorted((out / "export").iterdir())
        if p.name != "run_summary.json"
    }


def test_first_sync_is_full_and_a_second_identical(tmp_path: Path, provider: FakeProvider) -> None:
    r1 = sync(provider, tmp_path)
    assert (r1.status, r1.mode, r1.exit_code) == ("success", "full", 0)
    first = files(tmp_path)
    assert set(first) >= {
        "assets.csv",
        "meters.csv",
        "usage.csv",
        "deactivated.csv",
        "quarantine.csv",
    }
    r2 = sync(provider, tmp_path)
    assert r2.mode == "incremental"
    assert files(tmp_path) == first
    with StateStore(r2.state_path) as store:
        assert len(store.active_ids("meter")) == 20
        assert store.runs()["status"].tolist() == ["success", "success"]
        assert "api_key=***" in store.requests()["url"].iloc[0]


def test_incremental_requests_whole_months_and_equals_full_repull(
    tmp_path: Path, provider: FakeProvider
) -> None:
    sync(provider, tmp_path / "inc")
    provider.as_of = date(2024, 5, 10)  # new data arrives
    provider.calls.clear()
    r = sync(provider, tmp_path / "inc")
    assert r.mode == "incremental"
    # watermark 2024-03-14, look-back 2 days -> recompute from March; one day of margin
    ((_, since, _),) = provider.calls
    assert since.date() == date(2024, 2, 29)
    assert r.summary["window"]["first_month"] == "2024-03-01"
    sync(provider, tmp_path / "full")
    assert files(tmp_path / "inc") == files(tmp_path / "full")
    usage = pd.read_csv(tmp_path / "inc" / "export" / "usage.csv")
    assert usage.groupby("meter_external_id").size().eq(5).all()  # Jan..May, no duplicates
    assert not usage.duplicated(["meter_external_id", "start_date"]).any()


def test_dropping_two_of_twenty_meters_deactivates_them(
    tmp_path: Path, provider: FakeProvider
) -> None:
    sync(provider, tmp_path)
    provider.removed = {"M03", "M04"}
    r = sync(provider, tmp_path)
    plan = r.summary["deactivation"]["meter"]
    assert plan["vanished"] == ["M03", "M04"] and plan["deactivated"] == ["M03", "M04"]
    assert plan["refused"] is None and r.status == "success"
    deact = pd.read_csv(tmp_path / "export" / "deactivated.csv")
    assert deact["external_id"].tolist() == ["M03", "M04"]
    meters = pd.read_csv(tmp_path / "export" / "meters.csv")
    assert len(meters) == 18 and "M03" not in set(meters["external_id"])
    # a deactivated meter that comes back is active again
    provider.removed = set()
    r = sync(provider, tmp_path)
    assert r.summary["reactivated"]["meter"] == ["M03", "M04"]
    assert pd.read_csv(tmp_path / "export" / "deactivated.csv").empty


def test_failed_page_deactivates_nothing_and_says_why(
    tmp_path: Path, provider: FakeProvider
) -> None:
    sync(provider, tmp_path)
    provider.fail_meter_page = True
    r = sync(provider, tmp_path)
    plan = r.summary["deactivation"]["meter"]
    assert len(plan["vanished"]) == 10 and plan["deactivated"] == []
    assert "incomplete" in plan["refused"] and "meters" in plan["refused"]
    assert r.status == "partial" and r.exit_code == 1
    with StateStore(r.state_path) as store:
        assert len(store.active_ids("meter")) == 20


def test_implausible_drop_is_refused(tmp_path: Path, provider: FakeProvider) -> None:
    sync(provider, tmp_path)
    provider.removed = set(provider.meters[:12])  # 60 %
    r = sync(provider, tmp_path)
    plan = r.summary["deactivation"]["meter"]
    assert len(plan["vanished"]) == 12 and plan["deactivated"] == []
    assert "60%" in plan["refused"] and "max_deactivation_fraction" in plan["refused"]
    assert r.exit_code == 1
    assert pd.read_csv(tmp_path / "export" / "deactivated.csv").empty


def test_quarantine_makes_the_run_partial_and_is_exported(
    tmp_path: Path, provider: FakeProvider
) -> None:
    provider.negative = {("M01", "2024-02-10")}
    r = sync(provider, tmp_path)
    assert r.status == "partial" and r.summary["partial_reasons"] == ["records quarantined"]
    q = pd.read_csv(tmp_path / "export" / "quarantine.csv")
    assert q["rule"].tolist() == ["negative_consumption"]
    assert not r.summary["ready_to_export"]["ready"]
    provider.negative = set()
    r = sync(provider, tmp_path, full=True)  # fixed at the source: released, history kept
    assert r.status == "success" and r.summary["quarantine"]["released"] == 1
    with StateStore(r.state_path) as store:
        assert store.quarantine().empty and len(store.quarantine(status=None)) == 1


def test_dry_run_writes_nothing(tmp_path: Path, provider: FakeProvider) -> None:
    r = sync(provider, tmp_path, dry_run=True)
    assert r.status == "dry-run" and r.summary["accepted"]["meters"] == 20
    assert not (tmp_path / "export").exists()
    with StateStore(r.state_path) as store:
        assert store.runs().empty and store.table_counts()["usage"] == 0


def test_failures_commit_nothing_and_are_recorded(tmp_path: Path, provider: FakeProvider) -> None:
    sync(provider, tmp_path)
    before = files(tmp_path)

    def quota(*a: Any, **k: Any) -> Any:
        raise QuotaExhaustedError("daily quota spent")

    profile = Profile.from_dict(PROFILE)
    with pytest.raises(QuotaExhaustedError):
        run_sync(profile, out=tmp_path, fetch=quota, pipeline=fake_pipeline, validate=fake_validate)

    def broken(profile: Profile, raw: Any) -> Tables:
        raise SchemaError("usage frame lacks start")

    with pytest.raises(SchemaError):
        run_sync(
            profile, out=tmp_path, fetch=provider.fetch, pipeline=broken, validate=fake_validate
        )
    with StateStore(tmp_path / "state" / "fake.sqlite") as store:
        assert store.runs()["status"].tolist()[:2] == ["failed", "quota_exhausted"]
    assert files(tmp_path) == before


def test_since_until_rounds_to_whole_months(tmp_path: Path, provider: FakeProvider) -> None:
    provider.as_of = date(2024, 6, 1)
    sync(provider, tmp_path)
    provider.calls.clear()
    r = sync(provider, tmp_path, since="2024-02-10", until="2024-03-20")
    ((_, since, until),) = provider.calls
    assert (since.date(), until.date()) == (date(2024, 1, 31), date(2024, 4, 2))
    assert r.mode == "range" and r.summary["window"] == {
        "first_month": "2024-02-01",
        "end": "2024-04-01",
    }
    usage = pd.read_csv(tmp_path / "export" / "usage.csv")
    assert usage.groupby("meter_external_id").size().eq(5).all()


_ = timedelta
