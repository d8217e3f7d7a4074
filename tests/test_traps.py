"""Each sandbox trap (issue 13 item 10) through a real sync over loopback: the exact finding,
coverage row, exported span and exit code.

One full sync of a small trapped sandbox (2 sites x 3 meters + the 8 trap meters, Jan-Mar 2024)
is shared by the module. The profile is the shipped sandbox profile plus what the demo adds in
trap mode: the meters' ``installed_on`` / ``removed_on`` mapped to ``active_from`` /
``active_to`` (``cli._with_active_period``). Every expected value comes from
:meth:`Sandbox.trap_facts`, which ``tests/test_sandbox_traps.py`` checks against what the
sandbox serves.

Exit codes: the gate is the exit code (item 5); this trapped run is not ready (exit 1) for the
stale meter (``meter_without_data``, missing months), the missing day's partial month and the
duplicate meter id's ``duplicate_id`` error. Each test notes what its trap alone would do.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from scaler_workbench.cli import _with_active_period, check_trap_spans, findings_by_rule
from scaler_workbench.clock import FakeClock
from scaler_workbench.coverage import month_coverage
from scaler_workbench.profile import read_profile
from scaler_workbench.sandbox import Sandbox
from scaler_workbench.store import StateStore
from scaler_workbench.sync import run_sync

ROOT = Path(__file__).resolve().parent.parent
PROFILE = ROOT / "mappings" / "sandbox" / "profile.toml"
OPTIONS = {
    "sites": 2,
    "meters_per_site": 3,
    "start": "2024-01-01",
    "end": "2024-04-01",
    "traps": True,
    "page_size": 1000,
    "lifetime": 300.0,
}


class Run:
    """What one trapped sync left: facts, result, export files, stored usage."""

    def __init__(self, facts: dict[str, Any], result: Any, out: Path) -> None:
        self.facts = facts
        self.result = result
        self.export = out / "export"
        self.coverage = pd.read_csv(
            self.export / "coverage.csv", dtype={"meter_external_id": str, "month": str}
        )
        self.usage = pd.read_csv(
            self.export / "usage.csv",
            dtype={"meter_external_id": str, "start_date": str, "end_date": str},
        )
        self.quarantine = pd.read_csv(self.export / "quarantine.csv", dtype=str)
        with StateStore(result.state_path) as store:
            self.stored = store.read_table("usage")
            self.meters = store.read_table("meters")

    def cov(self, trap: str, month: str) -> dict[str, Any]:
        c = self.coverage
        row = c[(c["meter_external_id"] == self.facts[trap]["meter_id"]) & (c["month"] == month)]
        assert len(row) == 1, (trap, month)
        return dict(row.iloc[0])

    def rows(self, trap: str) -> pd.DataFrame:
        u = self.usage
        return u[u["meter_external_id"] == self.facts[trap]["meter_id"]].reset_index(drop=True)

    def findings(self, trap: str, rule: str) -> pd.DataFrame:
        q = self.quarantine
        mine = q["record_key"].str.startswith(self.facts[trap]["meter_id"] + "|")
        return q[mine & (q["rule"] == rule)].reset_index(drop=True)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    out = tmp_path_factory.mktemp("traps")
    with Sandbox(**OPTIONS) as sb, pytest.MonkeyPatch.context() as mp:
        for k, v in sb.env().items():
            mp.setenv(k, v)
        profile = _with_active_period(read_profile(PROFILE))
        result = run_sync(
            profile,
            out=out,
            clock=FakeClock(datetime(2024, 4, 1, tzinfo=UTC)),
            formats=("csv",),
            until="2024-04-01",
        )
        yield Run(sb.trap_facts(), result, out)


def _month(facts: dict[str, Any], month: str) -> dict[str, Any]:
    return next(m for m in facts["months"] if m["month"] == month)


def _month_start(month: str) -> str:
    return f"{month}-01"


def _next_month(month: str) -> str:
    return (pd.Period(month, "M") + 1).strftime("%Y-%m-01")


def _assert_counts(row: dict[str, Any], m: dict[str, Any]) -> None:
    """The coverage row's counts are the facts' (intervals with a value, DST-aware expected)."""
    assert row["days_with_data"] == m["days_with_data"]
    assert row["days_in_month"] == m["days_in_month"]
    assert row["intervals"] == m["intervals"] - m["null_intervals"]
    assert row["expected_intervals"] == m["expected_intervals"]
    assert row["first_local"] == m["first_local"] and row["last_local"] == m["last_local"]
    assert row["estimated_share"] == 0.0


def test_run_is_not_ready_and_exits_1(run: Run) -> None:
    assert run.result.exit_code == 1
    gate = run.result.summary["ready_to_export"]
    assert gate["ready"] is False
    assert any("missing meter-month(s)" in r for r in gate["reasons"])
    assert any("partial meter-month(s)" in r for r in gate["reasons"])
    counts = run.result.summary["coverage"]
    assert counts["not_yet_billed"] >= 1 and counts["missing"] == 3  # the stale meter's months


def test_mid_month_start_exports_from_the_installation_day(run: Run) -> None:
    f = run.facts["mid_month_start"]
    first = next(m for m in f["months"] if m["first_day"])
    month = first["month"]
    # exported span: from the first local day with data to the month's end; total = truth
    rows = run.rows("mid_month_start")
    assert (rows.loc[0, "start_date"], rows.loc[0, "end_date"]) == (
        f["installed_on"],
        _next_month(month),
    )
    truth = {g["month"]: g["consumption"] for g in f["ground_truth"]}
    assert rows.loc[0, "consumption"] == pytest.approx(truth[month], rel=1e-12)
    # coverage: the active part (from installed_on) is complete; no month before it is judged
    row = run.cov("mid_month_start", month)
    _assert_counts(row, first)
    assert row["status"] == "actual" and row["coverage"] == 1.0
    c = run.coverage
    earlier = c[(c["meter_external_id"] == f["meter_id"]) & (c["month"] < month)]
    assert earlier.empty
    stored = run.meters.set_index("meter_id")
    assert stored.loc[f["meter_id"], "active_from"] == f["installed_on"]
    # without the active period the history starts at the first data (lead decision 1): the
    # part of the first month before it is not expected, so the month is just as 'actual'
    usage = run.stored[run.stored["meter_id"] == f["meter_id"]]
    bare = month_coverage(usage, timezone="Europe/London")
    assert bare.loc[bare["month"] == month, "status"].item() == "actual"
    assert run.findings("mid_month_start", "missing_day").empty  # an edge is not a hole
    # final (gate = exit code, nulls as no data): exit 0 for this trap alone with active_from


def test_mid_month_end_exports_until_the_day_before_removal(run: Run) -> None:
    f = run.facts["mid_month_end"]
    last = [m for m in f["months"] if m["first_day"]][-1]
    month = last["month"]
    rows = run.rows("mid_month_end")
    assert (rows.iloc[-1]["start_date"], rows.iloc[-1]["end_date"]) == (
        _month_start(month),
        f["removed_on"],
    )
    assert last["span_end"] == f["removed_on"]
    truth = {g["month"]: g["consumption"] for g in f["ground_truth"]}
    assert rows.iloc[-1]["consumption"] == pytest.approx(truth[month], rel=1e-12)
    row = run.cov("mid_month_end", month)
    _assert_counts(row, last)
    assert row["status"] == "actual"  # active_to = removed_on: the rest is not expected
    usage = run.stored[run.stored["meter_id"] == f["meter_id"]]
    bare = month_coverage(usage, timezone="Europe/London", horizon=pd.Timestamp("2024-04-01"))
    assert bare.loc[bare["month"] == month, "status"].item() == "partial"
    # final: exit 0 for this trap alone with active_to mapped, 1 without


def test_missing_day_is_a_finding_and_a_partial_month_with_its_full_span(run: Run) -> None:
    f = run.facts["missing_day"]
    (day,) = f["missing_dates"]
    month = day[:7]
    found = run.findings("missing_day", "missing_day")
    assert len(found) == 1
    assert found.loc[0, "severity"] == "warning"
    assert found.loc[0, "reason"].startswith(f"no data on local day(s) {day} (48)")
    row = run.cov("missing_day", month)
    _assert_counts(row, _month(f, month))
    assert row["status"] == "partial" and row["days_with_data"] == row["days_in_month"] - 1
    # an interior gap keeps the month's span
    rows = run.rows("missing_day")
    mine = rows[rows["start_date"].str[:7] == month].iloc[0]
    assert (mine["start_date"], mine["end_date"]) == (_month_start(month), _next_month(month))
    assert run.findings("missing_day", "missing_intervals").empty
    # final: exit 1 (a partial month is not ready)


def test_three_hour_hole_names_its_local_times(run: Run) -> None:
    f = run.facts["hole_3h"]
    (hole,) = f["holes"]
    month = hole["date"][:7]
    found = run.findings("hole_3h", "missing_intervals")
    assert len(found) == 1 and found.loc[0, "severity"] == "warning"
    assert found.loc[0, "reason"].startswith(
        f"missing intervals, local {hole['date']} {hole['start']}-{hole['end']} "
        f"({hole['intervals']})"
    )
    row = run.cov("hole_3h", month)
    _assert_counts(row, _month(f, month))
    assert row["intervals"] == row["expected_intervals"] - 6
    # the shipped sandbox profile accepts a month with >= 97 % of its intervals (lead decision
    # 2): the hole stays a finding, the month is 'actual'; under the default min_share = 1.0
    # the same month is partial
    assert row["status"] == "actual" and row["days_with_data"] == row["days_in_month"]
    usage = run.stored[run.stored["meter_id"] == f["meter_id"]]
    strict = month_coverage(usage, timezone="Europe/London", min_share=1.0)
    assert strict.loc[strict["month"] == month, "status"].item() == "partial"
    rows = run.rows("hole_3h")
    mine = rows[rows["start_date"].str[:7] == month].iloc[0]
    assert (mine["start_date"], mine["end_date"]) == (_month_start(month), _next_month(month))
    # final: exit 1 under the default min_share = 1.0; not partial under the sandbox profile


def test_null_night_values_are_no_data(run: Run) -> None:
    f = run.facts["null_night"]
    m = f["months"][0]
    row = run.cov("null_night", m["month"])
    # missing_values = "no_data" (the default, item 7): the nights arrive as nulls, counted as
    # delivered (count_nulls, lead decision 4): the month is 'actual', with no error rows
    assert row["intervals"] == m["intervals"] - m["null_intervals"]
    assert row["null_intervals"] == m["null_intervals"]
    assert row["first_local"] == m["first_local"] and row["last_local"] == m["last_local"]
    assert row["status"] == "actual" and row["coverage"] == 1.0
    assert run.findings("null_night", "unmappable").empty
    no_data = run.findings("null_night", "no_data")
    assert set(no_data["severity"]) == {"warning"}
    assert no_data["record_key"].is_unique  # one row per meter and local day
    values = no_data["record"].map(lambda r: json.loads(r)["values"])
    assert values.sum() == sum(x["null_intervals"] for x in f["months"])
    truth = {g["month"]: g["consumption"] for g in f["ground_truth"]}
    rows = run.rows("null_night")
    assert dict(zip(rows["start_date"].str[:7], rows["consumption"], strict=True)) == (
        pytest.approx(truth, rel=1e-12)
    )
    # this trap alone does not block the gate


def test_duplicate_meter_id_is_exported_once(run: Run) -> None:
    f = run.facts["duplicate_meter_id"]
    meters = pd.read_csv(run.export / "meters.csv", dtype=str)
    assert (meters["external_id"] == f["meter_id"]).sum() == 1
    for m in f["months"]:
        row = run.cov("duplicate_meter_id", m["month"])
        _assert_counts(row, m)
        assert row["status"] == "actual"
    # the second record is quarantined (duplicate_id, an error naming both records): exit 1;
    # the list still holds its data (lead decision 3), deactivation is refused
    q = run.quarantine
    dup = q[(q["table"] == "meters") & (q["rule"] == "duplicate_id")].reset_index(drop=True)
    assert dup["record_key"].tolist() == [f"{f['meter_id']}#2"]
    assert dup.loc[0, "severity"] == "error" and "record 8" in dup.loc[0, "reason"]
    assert "record 9" in dup.loc[0, "reason"]
    assert run.result.summary["deactivation"]["meter"]["deactivated"] == []


def test_stale_meter_has_every_month_missing(run: Run) -> None:
    f = run.facts["stale_meter"]
    c = run.coverage[run.coverage["meter_external_id"] == f["meter_id"]]
    assert c["month"].tolist() == ["2024-01", "2024-02", "2024-03"]
    assert set(c["status"]) == {"missing"} and set(c["days_with_data"]) == {0}
    assert run.rows("stale_meter").empty
    reasons = run.result.summary["ready_to_export"]["reasons"]
    assert any("missing meter-month(s)" in r and f["meter_id"] in r for r in reasons)
    # final: exit 1 with the sync branch's `meter_without_data` reason


def test_bimonthly_bill_not_yet_billed_and_honest_spans(run: Run) -> None:
    f = run.facts["bimonthly_bill"]
    bills = f["bills"]
    rows = run.rows("bimonthly_bill")
    assert rows.loc[0, "start_date"] == bills[0]["period_start"]  # from the 15th, not the 1st
    assert rows.iloc[-1]["end_date"] == f["billed_until"]
    truth = {g["month"]: g["consumption"] for g in f["ground_truth"]}
    got = dict(zip(rows["start_date"].str[:7], rows["consumption"], strict=True))
    assert got == pytest.approx(truth, rel=1e-12)
    last_billed = (pd.Timestamp(f["billed_until"]) - pd.Timedelta(days=1)).strftime("%Y-%m")
    c = run.coverage[run.coverage["meter_external_id"] == f["meter_id"]].set_index("month")
    after = c[c.index > last_billed]
    # the months after the last bill, within its billing length, are not yet billed: this
    # seed's one bill runs 2024-01-15..2024-03-14 (60 days), the period ends 2024-04-01
    assert (bills, f["billed_until"]) == (
        [{"period_start": "2024-01-15", "period_end": "2024-03-14"}],
        "2024-03-15",
    )
    assert c["status"].to_dict() == {
        "2024-01": "actual",  # history starts at the first bill (the 15th): its honest span
        "2024-02": "actual",
        "2024-03": "not_yet_billed",  # billed to the 14th; the next bill is not due
    }
    assert set(after["status"]) <= {"not_yet_billed"}
    assert "missing" not in set(c["status"])
    stored = run.stored[run.stored["meter_id"] == f["meter_id"]]
    assert set(stored["billing_days"].dropna()) == {max(f["billing_days"])}
    # final: this trap alone does not block the gate (exit 0)


def test_demo_checks_match_the_facts(run: Run) -> None:
    spans = check_trap_spans(run.export / "usage.csv", run.facts)
    assert len(spans) and spans["ok"].all(), spans.to_string()
    assert {"mid_month_start", "mid_month_end", "bimonthly_bill"} <= set(spans["trap"])
    findings = findings_by_rule(run.export / "quarantine.csv")
    assert {"missing_day", "missing_intervals"} <= set(findings["rule"])
    assert (findings.loc[findings["rule"] == "missing_day", "rows"] == 1).all()
