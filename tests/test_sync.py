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
from _exports import export_bytes

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


def test_first_sync_is_full_and_a_second_identical(tmp_path: Path, provider: FakeProvider) -> None:
    r1 = sync(provider, tmp_path)
    assert (r1.status, r1.mode, r1.exit_code) == ("success", "full", 0)
    first = export_bytes(tmp_path)
    assert set(first) >= {
        "assets.csv",
        "meters.csv",
        "usage.csv",
        "deactivated.csv",
        "quarantine.csv",
    }
    r2 = sync(provider, tmp_path)
    assert r2.mode == "incremental"
    assert export_bytes(tmp_path) == first
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
    # watermark 2024-03-14, look-back 2 days -> recompute from March; date-only parameters
    # get no margin day (issue 15 item 8: it only cost requests)
    ((_, since, _),) = provider.calls
    assert since.date() == date(2024, 3, 1)
    assert r.summary["window"]["first_month"] == "2024-03-01"
    sync(provider, tmp_path / "full")
    assert export_bytes(tmp_path / "inc") == export_bytes(tmp_path / "full")
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
    before = export_bytes(tmp_path)

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
    assert export_bytes(tmp_path) == before


def test_since_until_rounds_to_whole_months(tmp_path: Path, provider: FakeProvider) -> None:
    provider.as_of = date(2024, 6, 1)
    sync(provider, tmp_path)
    provider.calls.clear()
    r = sync(provider, tmp_path, since="2024-02-10", until="2024-03-20")
    ((_, since, until),) = provider.calls
    # date-only parameters: whole months, no margin day (issue 15 item 8)
    assert (since.date(), until.date()) == (date(2024, 2, 1), date(2024, 4, 1))
    assert r.mode == "range" and r.summary["window"] == {
        "first_month": "2024-02-01",
        "end": "2024-04-01",
    }
    usage = pd.read_csv(tmp_path / "export" / "usage.csv")
    assert usage.groupby("meter_external_id").size().eq(5).all()


_ = timedelta


# -- over loopback against the sandbox: reconciliation, quota stop and resume -------------------
ROOT = Path(__file__).resolve().parent.parent
SANDBOX_PROFILE = ROOT / "mappings" / "sandbox" / "profile.toml"
DATA = ("/intervals", "/readings", "/bills", "/summary")


def real_sync(out: Path, **kw: Any) -> Any:
    from scaler_workbench.profile import read_profile

    clock = FakeClock(datetime(2024, 4, 1, tzinfo=UTC))
    return run_sync(read_profile(SANDBOX_PROFILE), out=out, clock=clock, formats=("csv",), **kw)


def test_reconciliation_matches_on_the_sandbox_and_flags_a_planted_discrepancy(
    small_sandbox: Any, tmp_path: Path
) -> None:
    sb = small_sandbox()
    r = real_sync(tmp_path)
    assert r.status == "success", r.summary["partial_reasons"]
    rec = pd.read_csv(tmp_path / "export" / "reconciliation.csv", dtype={"period_start": str})
    assert len(rec) == 6 * 3 and rec["within_tolerance"].all()
    assert rec["relative"].max() < 1e-9 and set(rec["check"]) == {"monthly"}
    assert r.summary["reconciliation"]["checks"]["monthly"]["beyond_tolerance"] == 0
    # the provider's Wh / m3 totals were converted: units are canonical, raw units kept
    assert set(rec["unit"]) <= {"kWh", "m³", "kg"} and "Wh" in set(rec["raw_unit"])

    sb.plant_discrepancy("M0004", "2024-02", 1.001)  # 0.1 % more than the data says
    r = real_sync(tmp_path)
    assert (r.status, r.exit_code) == ("partial", 1)
    (reason,) = [p for p in r.summary["partial_reasons"] if p.startswith("reconciliation")]
    assert "1 of 18" in reason and "M0004" in reason
    rec = pd.read_csv(tmp_path / "export" / "reconciliation.csv", dtype={"period_start": str})
    bad = rec[~rec["within_tolerance"]]
    assert bad[["meter_external_id", "period_start"]].values.tolist() == [["M0004", "2024-02-01"]]
    assert bad["relative"].iloc[0] == pytest.approx(1e-3 / 1.001, rel=1e-6)
    assert not r.summary["ready_to_export"]["ready"]

    sb.plant_discrepancy("M0004", "2024-02", 1.0)  # fixed at the source
    assert real_sync(tmp_path).status == "success"


def _ok_data_requests(sb: Any) -> list[str]:
    return [
        q.path + "?" + "&".join(f"{k}={v}" for k, v in sorted(q.query.items()))
        for q in sb.request_log
        if q.status == 200 and q.path.endswith(DATA)
    ]


def test_quota_stop_commits_complete_meters_and_resumes_to_the_uninterrupted_export(
    small_sandbox: Any, tmp_path: Path
) -> None:
    from collections import Counter

    from scaler_workbench.exceptions import QuotaExhaustedError

    sb = small_sandbox()
    ref = real_sync(tmp_path / "ref")
    assert ref.status == "success"
    reference = Counter(_ok_data_requests(sb))
    sb.clear_log()

    out = tmp_path / "out"
    sb.set_faults(quota_after=22)
    with pytest.raises(QuotaExhaustedError) as info:
        real_sync(out)
    first = info.value.result
    assert (first.status, first.exit_code) == ("quota_exhausted", 4)
    assert "intervals" in first.summary["remaining"]
    assert "remain" in str(info.value) and "fetches only what remains" in info.value.hint
    assert first.summary["deactivation"]["meter"]["deactivated"] == []
    with StateStore(first.state_path) as store:
        stored = store.read_table("usage")
        plan = store.resume_plan()
        assert plan is not None and plan["skip"]["intervals"]
        assert "intervals" not in store.watermarks()  # some interval meters still missing
        assert store.runs()["status"].tolist() == ["quota_exhausted"]
    committed = set(stored["meter_id"].astype(str))
    ref_usage = pd.read_csv(tmp_path / "ref" / "export" / "usage.csv", dtype=str)
    assert committed and committed < set(ref_usage["meter_external_id"])
    # a committed meter's months are complete: equal to the uninterrupted run's
    got_usage = pd.read_csv(out / "export" / "usage.csv", dtype=str)
    pd.testing.assert_frame_equal(
        got_usage,
        ref_usage[ref_usage["meter_external_id"].isin(committed)].reset_index(drop=True),
    )
    assert not first.summary["ready_to_export"]["ready"]

    attempts, requests = 1, Counter(_ok_data_requests(sb))
    interrupted = {q.path for q in sb.request_log if q.status == 429}
    while True:
        sb.reset_quota()
        sb.clear_log()
        attempts += 1
        try:
            final = real_sync(out)
            requests += Counter(_ok_data_requests(sb))
            break
        except QuotaExhaustedError:
            requests += Counter(_ok_data_requests(sb))
            interrupted |= {q.path for q in sb.request_log if q.status == 429}
        assert attempts < 8
    assert attempts >= 3  # quota_after=22 stops the resumed run too
    assert final.status == "success" and final.summary["resumed"]["skipped_sequences"]
    # every data request of the uninterrupted run was made; the only repeats are the
    # sequences a quota stop cut in the middle
    assert set(requests) == set(reference)
    repeated = {u.split("?")[0] for u, n in requests.items() if n > reference[u]}
    assert repeated <= interrupted
    assert export_bytes(out) == export_bytes(tmp_path / "ref")
    with StateStore(final.state_path) as store, StateStore(ref.state_path) as ref_store:
        assert store.resume_plan() is None
        assert store.watermarks() == ref_store.watermarks()


def test_quota_stop_from_a_stand_in_fetch_commits_entities_only(
    tmp_path: Path, provider: FakeProvider
) -> None:
    from scaler_workbench.exceptions import QuotaExhaustedError

    def stopped(profile: Profile, **kw: Any) -> Any:
        results, _ = provider.fetch(profile, **kw)
        results["days"].report.failed_pages = []
        exc = QuotaExhaustedError("daily quota spent")
        exc.partial = {"sites": results["sites"], "meters": results["meters"]}  # type: ignore[attr-defined]
        raise exc

    profile = Profile.from_dict(PROFILE)
    with pytest.raises(QuotaExhaustedError) as info:
        run_sync(
            profile,
            out=tmp_path,
            fetch=stopped,
            pipeline=fake_pipeline,
            validate=fake_validate,
            formats=("csv",),
        )
    assert info.value.result.exit_code == 4
    with StateStore(tmp_path / "state" / "fake.sqlite") as store:
        counts = store.table_counts()
        assert counts["meters"] == 20 and counts["usage"] == 0 and store.watermarks() == {}
        assert store.resume_plan() is not None
    r = sync(provider, tmp_path)  # a plain run afterwards pulls everything and clears the plan
    assert r.status == "success" and r.summary["accepted"]["usage"] > 0
