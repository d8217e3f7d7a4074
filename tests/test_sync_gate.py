"""The gate is the exit code; incremental equals full after a profile change (issue 13 items
5 and 9), against the small sandbox over loopback HTTP with an injected clock."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from _exports import export_bytes

from scaler_workbench import cli
from scaler_workbench.clock import FakeClock
from scaler_workbench.exceptions import ProfileError
from scaler_workbench.profile import Profile, read_profile, to_profile_toml
from scaler_workbench.sandbox import Sandbox
from scaler_workbench.store import StateStore
from scaler_workbench.sync import _default_fetch, profile_fingerprint, run_sync

ROOT = Path(__file__).resolve().parent.parent
SANDBOX_PROFILE = ROOT / "mappings" / "sandbox" / "profile.toml"


def _profile(edit: Callable[[dict[str, Any]], None] | None = None) -> Profile:
    data = read_profile(SANDBOX_PROFILE).to_dict()
    if edit is not None:
        edit(data)
    return Profile.from_dict(data)


def _sync(profile: Profile, out: Path, **kw: Any) -> Any:
    clock = FakeClock(datetime(2024, 4, 1, tzinfo=UTC))
    return run_sync(profile, out=out, clock=clock, formats=("csv",), **kw)


def test_a_meter_without_data_makes_the_run_not_ready_and_exit_1(
    small_sandbox: Callable[..., Sandbox], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sb = small_sandbox(traps=["stale_meter"])
    (stale,) = [f["meter_id"] for f in sb.trap_facts().values()]
    args = ["sync", str(SANDBOX_PROFILE), "--out", str(tmp_path), "--formats", "csv"]
    code = cli.main([*args, "--until", "2024-04-01"])
    assert code == 1
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("not ready: ") and "meter_without_data" in last
    assert stale in last
    summary = json.loads((tmp_path / "export" / "run_summary.json").read_text())
    assert summary["status"] == "partial" and summary["meters_without_data"] == [stale]
    gate = summary["ready_to_export"]
    assert gate["ready"] is False
    assert [r for r in gate["reasons"] if r.startswith("meter_without_data: 1 meter(s)")]
    # the meter is exported (the registry knows it) but has no usage row
    meters = pd.read_csv(tmp_path / "export" / "meters.csv", dtype=str)
    usage = pd.read_csv(tmp_path / "export" / "usage.csv", dtype=str)
    assert stale in set(meters["external_id"])
    assert stale not in set(usage["meter_external_id"])


def test_a_ready_run_exits_0_and_says_so_last(
    small_sandbox: Callable[..., Sandbox], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    small_sandbox()
    args = ["sync", str(SANDBOX_PROFILE), "--out", str(tmp_path), "--until", "2024-04-01"]
    assert cli.main([*args, "--formats", "csv"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "ready: yes"


def test_a_restated_bill_resolved_by_policy_is_reported_but_does_not_block(
    small_sandbox: Callable[..., Sandbox], tmp_path: Path
) -> None:
    small_sandbox()

    def with_revision(data: dict[str, Any]) -> None:
        data["mapping"]["usage"]["bills"]["fields"]["revision"] = "revision"

    profile = _profile(with_revision)

    def revised(profile: Profile, **kw: Any) -> Any:
        results, log, seqs = _default_fetch(profile, **kw)
        for bill in results["bills"].records:
            bill["revision"] = 1
        return results, log, seqs

    def restating(profile: Profile, **kw: Any) -> Any:
        results, log, seqs = revised(profile, **kw)
        bills = results["bills"].records
        # the provider restates its first bill: a new record id, a later revision, the
        # same period and amount
        bills.append({**bills[0], "id": f"{bills[0]['id']}-r2", "revision": 2})
        return results, log, seqs

    r = _sync(profile, tmp_path, fetch=restating)
    q = pd.read_csv(tmp_path / "export" / "quarantine.csv")
    restated = q[(q["rule"] == "duplicate") & (q["stage"] == "usage")]
    assert len(restated) == 1 and restated["severity"].tolist() == ["error"]
    assert r.summary["quarantine_resolved_by_policy"] == 1
    assert (r.status, r.exit_code) == ("success", 0), r.summary["ready_to_export"]
    assert r.summary["ready_to_export"] == {"ready": True, "reasons": []}
    # the same run without the restatement exports the same usage (the restated bill has
    # the same amount; its cost sums may differ in the last digit, see the report)
    plain = _sync(profile, tmp_path / "plain", fetch=revised)
    assert plain.exit_code == 0
    a = pd.read_csv(tmp_path / "export" / "usage.csv")
    b = pd.read_csv(tmp_path / "plain" / "export" / "usage.csv")
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12)


def _drop_water(data: dict[str, Any]) -> None:
    del data["mapping"]["meters"]["value_maps"]["meter_type"]["water"]


def test_an_incremental_run_after_a_mapping_fix_equals_a_full_run_byte_for_byte(
    small_sandbox: Callable[..., Sandbox], tmp_path: Path
) -> None:
    small_sandbox()
    broken, fixed = _profile(_drop_water), _profile()
    assert profile_fingerprint(broken) != profile_fingerprint(fixed)
    first = _sync(broken, tmp_path / "inc")
    assert first.exit_code == 1  # the water meters are quarantined (unmappable)
    q = pd.read_csv(tmp_path / "inc" / "export" / "quarantine.csv")
    assert "unmappable" in set(q["rule"])
    again = _sync(broken, tmp_path / "inc")  # the same profile: incremental as before
    assert again.mode == "incremental" and "profile_changed" not in again.summary

    after = _sync(fixed, tmp_path / "inc")  # the mapping is fixed: recompute everything
    assert after.mode == "full" and after.summary["profile_changed"]["action"] == "recompute"
    assert after.summary["profile_changed"]["from_run"] == again.run_id
    assert (after.status, after.exit_code) == ("success", 0), after.summary["partial_reasons"]
    assert after.summary["quarantine"]["released"] >= 1  # the stale unmappable rows
    reference = _sync(fixed, tmp_path / "full")
    assert export_bytes(tmp_path / "inc") == export_bytes(tmp_path / "full")
    assert reference.exit_code == 0
    # and the next run is incremental again
    nxt = _sync(fixed, tmp_path / "inc")
    assert nxt.mode == "incremental" and "profile_changed" not in nxt.summary
    assert export_bytes(tmp_path / "inc") == export_bytes(tmp_path / "full")


def test_a_units_or_validation_change_recomputes_or_refuses_with_exit_2(
    small_sandbox: Callable[..., Sandbox], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    small_sandbox()

    def cv(data: dict[str, Any]) -> None:
        data["units"]["heating_value"]["calorific_value"] = 39.0

    def refuse(data: dict[str, Any]) -> None:
        data["sync"]["on_profile_change"] = "refuse"

    def cv_refuse(data: dict[str, Any]) -> None:
        cv(data)
        refuse(data)

    def stricter(data: dict[str, Any]) -> None:
        refuse(data)
        data["validation"]["rules"]["billing_period_days"]["max"] = 34

    out = tmp_path / "out"
    _sync(_profile(refuse), out)
    # a units change with on_profile_change = "refuse": exit 2, nothing written
    path = tmp_path / "profile.toml"
    path.write_text(to_profile_toml(_profile(cv_refuse).to_dict()), encoding="utf-8")
    before = export_bytes(out)
    code = cli.main(["sync", str(path), "--out", str(out), "--until", "2024-04-01"])
    assert code == cli.EXIT_USAGE == 2
    err = capsys.readouterr().err
    assert "changed since run 1" in err and "--full" in err and "Traceback" not in err
    assert export_bytes(out) == before
    # a validation change is refused the same way; --full recomputes and records it
    with pytest.raises(ProfileError, match="mapping/units/validation changed"):
        _sync(_profile(stricter), out)
    r = _sync(_profile(stricter), out, full=True)
    assert r.summary["profile_changed"]["action"] == "recompute"
    assert _sync(_profile(stricter), out).mode == "incremental"
    # the default recomputes: the gas meters' kWh follow the new calorific value
    r = _sync(_profile(cv), out)
    assert r.mode == "full" and r.summary["profile_changed"]["action"] == "recompute"
    reference = _sync(_profile(cv), tmp_path / "ref")
    assert reference.exit_code == r.exit_code
    assert export_bytes(out) == export_bytes(tmp_path / "ref")
    with StateStore(r.state_path) as store:
        runs = store.runs()
        recorded = json.loads(runs.loc[runs["run_id"] == r.run_id, "counts"].iloc[0])
    assert recorded["fingerprint"] == profile_fingerprint(_profile(cv))
