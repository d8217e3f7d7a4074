"""The request estimate shown before a sync (``sync.plan_sync``, the CLI's progress bar) against
the requests the sync then sends, over loopback: Relay pages of the GraphQL flavour (a silent
page cap) and an incremental window of the REST sandbox (only the months the watermark says are
due, not the whole range)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from scaler_workbench import cli
from scaler_workbench.clock import FakeClock
from scaler_workbench.connectors.probe import plan_requests
from scaler_workbench.profile import read_profile
from scaler_workbench.sync import plan_sync, run_sync

ROOT = Path(__file__).resolve().parents[1]
GRAPHQL = ROOT / "tests" / "data" / "graphql" / "profile.toml"
SANDBOX = ROOT / "mappings" / "sandbox" / "profile.toml"
#: two homes, January and February 2024: 1440 hourly nodes each, served 100 per page although
#: the query asks for 744 (the flavour's silent cap)
FLAVOUR = {"homes": 2, "start": "2024-01-01", "end": "2024-03-01"}
TINY = {"sites": 1, "meters_per_site": 1, "start": "2024-01-01", "end": "2024-01-03"}


def _sent(sb: Any) -> int:
    return sum(1 for r in sb.request_log if r.status == 200)


def test_relay_pages_are_estimated_from_the_pages_the_last_run_got(
    make_sandbox: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sb = make_sandbox(flavour="graphql", flavour_options=FLAVOUR, **TINY)
    for k, v in sb.env().items():
        monkeypatch.setenv(k, v)
    profile = read_profile(GRAPHQL)
    clock = FakeClock(datetime(2024, 3, 2, tzinfo=UTC))
    first = plan_sync(profile, out=tmp_path, clock=clock)
    assert not first.exact  # nothing known yet: one page per home, an estimate
    run_sync(profile, out=tmp_path, clock=clock, formats=("csv",))
    assert _sent(sb) == 1 + 2 * 15  # the homes, then 15 pages of at most 100 nodes per home
    summary = json.loads((tmp_path / "export" / "run_summary.json").read_text(encoding="utf-8"))
    assert summary["fetch"]["consumption"]["pages"] == 30
    assert summary["fetch"]["consumption"]["records"] == 2 * 1440
    assert summary["fetch"]["consumption"]["parents"] == 2

    plan = plan_sync(profile, out=tmp_path, clock=clock)
    rows = {r["resource"]: r for r in plan.rows}
    assert rows["consumption"]["pages_per_sequence"] == 15
    assert rows["consumption"]["parents"] == 2
    # the counts alone take the query's first = 744 at its word: 2 pages per home, a guess
    guess = plan_requests(profile, counts=summary["fetched"])
    assert guess.total_requests == 1 + 2 * 2 and not guess.exact

    sb.clear_log()
    run_sync(profile, out=tmp_path, clock=clock, formats=("csv",))
    assert plan.total_requests == _sent(sb) == 31


def test_an_incremental_run_is_estimated_by_its_own_windows(
    small_sandbox: Any, tmp_path: Path
) -> None:
    sb = small_sandbox()
    profile = read_profile(SANDBOX)
    clock = FakeClock(datetime(2024, 4, 1, tzinfo=UTC))
    run_sync(profile, out=tmp_path, clock=clock, formats=("csv",), until="2024-04-01")
    full = _sent(sb)
    summary = json.loads((tmp_path / "export" / "run_summary.json").read_text(encoding="utf-8"))
    assert summary["fetch"]["intervals"]["since"] is None  # the resource's own date_range.since
    assert summary["fetch"]["intervals"]["until"].startswith("2024-04-01")

    # the same full run again is estimated exactly
    again = plan_sync(profile, out=tmp_path, clock=clock, until="2024-04-01", full=True)
    sb.clear_log()
    run_sync(profile, out=tmp_path, clock=clock, formats=("csv",), until="2024-04-01", full=True)
    assert again.total_requests == _sent(sb) == full

    # an incremental run: the watermark (end of March, minus 2 days' lookback) makes March due
    plan = plan_sync(profile, out=tmp_path, clock=clock, until="2024-04-01")
    rows = {r["resource"]: r for r in plan.rows}
    assert rows["intervals"]["windows"] == 1 and rows["solar"]["windows"] == 1
    assert rows["registers"]["windows"] == 4  # not incremental: its whole range (+1 day)
    sb.clear_log()
    run_sync(profile, out=tmp_path, clock=clock, formats=("csv",), until="2024-04-01")
    sent = _sent(sb)
    assert sent < full
    assert plan.total_requests == sent
    # before: the whole range was estimated whatever the watermark said
    old = plan_requests(profile, until="2024-04-01", counts=summary["fetched"])
    assert old.total_requests > sent + 20


def test_the_cli_progress_uses_the_sync_plan(
    small_sandbox: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small_sandbox()
    profile = read_profile(SANDBOX)
    clock = FakeClock(datetime(2024, 4, 1, tzinfo=UTC))
    run_sync(profile, out=tmp_path, clock=clock, formats=("csv",), until="2024-04-01")
    args = cli._parser().parse_args(
        ["sync", str(SANDBOX), "--out", str(tmp_path), "--until", "2024-04-01"]
    )
    monkeypatch.setattr("scaler_workbench.sync.SystemClock", lambda: clock)
    estimate = cli._estimate(profile, args, tmp_path)
    plan = plan_sync(profile, out=tmp_path, clock=clock, until="2024-04-01")
    assert estimate == (plan.total_requests, plan.exact)
    assert (
        estimate[0]
        < plan_requests(profile, until="2024-04-01", counts={"meters": 6}).total_requests
    )
