"""The CLI and sync end to end over loopback HTTP against the sandbox: ground truth, incremental
requests, exit codes, crash safety (SIGKILL at named fault points)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from _exports import export_bytes

from scaler_workbench import cli
from scaler_workbench.clock import FakeClock
from scaler_workbench.profile import Profile, read_profile, to_profile_toml
from scaler_workbench.sandbox import Sandbox
from scaler_workbench.store import StateStore
from scaler_workbench.sync import run_sync

ROOT = Path(__file__).resolve().parent.parent
PROFILE = ROOT / "mappings" / "sandbox" / "profile.toml"
UNTIL = "2024-04-01"


def profile_copy(tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    data = read_profile(PROFILE).to_dict()
    edit(data)
    path = tmp_path / "profile.toml"
    path.write_text(to_profile_toml(data), encoding="utf-8")
    return path


def test_cli_sync_matches_ground_truth(
    small_sandbox: Callable[..., Sandbox], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sb = small_sandbox()
    out = tmp_path / "out"
    code = cli.main(["sync", str(PROFILE), "--out", str(out), "--until", UNTIL, "--json"])
    payload = json.loads(capsys.readouterr().out)
    assert code == 0 and payload["status"] == "success" and payload["exit_code"] == 0
    table = cli.compare_with_truth(out / "export" / "usage.csv", sb.ground_truth(), rtol=1e-9)
    assert len(table) == 6 and table["ok"].all(), table
    assert (table["months"] == 3).all()
    # no secret anywhere in what the run left behind
    key = sb.env()["SANDBOX_API_KEY"].encode()
    for path in out.rglob("*"):
        if path.is_file():
            assert key not in path.read_bytes(), path
    # status / quarantine / export read the same state
    assert cli.main(["status", str(PROFILE), "--out", str(out), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["runs"][0]["status"] == "success" and status["registry"]["meter"]["active"] == 6
    assert cli.main(["quarantine", str(PROFILE), "--out", str(out)]) == 0
    before = export_bytes(out)
    assert cli.main(["export", str(PROFILE), "--out", str(out)]) == 0
    assert export_bytes(out) == before


def test_incremental_sync_requests_only_new_months_and_equals_full(
    small_sandbox: Callable[..., Sandbox], tmp_path: Path
) -> None:
    sb = small_sandbox(as_of="2024-02-15")
    profile = read_profile(PROFILE)
    clock = FakeClock(datetime(2024, 4, 1, tzinfo=UTC))
    run_sync(profile, out=tmp_path / "inc", clock=clock)
    sb.set_as_of("2024-03-20")
    sb.clear_log()
    r = run_sync(profile, out=tmp_path / "inc", clock=clock)
    assert r.mode == "incremental"
    intervals = [q for q in sb.request_log if q.path.endswith("/intervals")]
    assert intervals, "no interval requests"
    # watermark 2024-02-14T23:30 minus 2 days look-back -> recompute from February (date-only
    # parameters: no margin day, issue 15 item 8)
    assert min(q.query["from"] for q in intervals) == "2024-02-01"
    registers = [q for q in sb.request_log if q.path.endswith("/readings")]
    assert min(q.query["from"] for q in registers) == "2024-01-01"  # no incremental config: full
    run_sync(profile, out=tmp_path / "full", clock=clock)
    inc, full = export_bytes(tmp_path / "inc"), export_bytes(tmp_path / "full")
    # quarantine.csv carries run-specific lineage (record positions in the pull): compare its
    # keys; every Scaler file must be byte-identical
    for name in (
        "assets.csv",
        "meters.csv",
        "usage.csv",
        "readings.csv",
        "deactivated.csv",
        "coverage.csv",
        "scaler.xlsx",
    ):
        assert inc[name] == full[name], name
    cols = ["table", "record_key", "rule", "severity"]
    q_inc = pd.read_csv(tmp_path / "inc" / "export" / "quarantine.csv")[cols]
    q_full = pd.read_csv(tmp_path / "full" / "export" / "quarantine.csv")[cols]
    pd.testing.assert_frame_equal(q_inc, q_full)
    usage = pd.read_csv(tmp_path / "inc" / "export" / "usage.csv")
    assert not usage.duplicated(["meter_external_id", "start_date"]).any()


def test_exit_codes(
    small_sandbox: Callable[..., Sandbox],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def one_attempt(d: dict[str, Any]) -> None:
        d["client"]["max_attempts"] = 1

    fast = profile_copy(tmp_path, one_attempt)
    args = ["--until", UTIL] if (UTIL := UNTIL) else []

    # partial: an unmapped commodity quarantines a meter and its usage
    def unmapped(d: dict[str, Any]) -> None:
        one_attempt(d)
        del d["mapping"]["meters"]["value_maps"]["meter_type"]["water"]

    small_sandbox()
    (tmp_path / "p").mkdir()
    partial = profile_copy(tmp_path / "p", unmapped)
    assert (
        cli.main(["sync", str(partial), "--out", str(tmp_path / "o1"), *args]) == cli.EXIT_PARTIAL
    )
    q = pd.read_csv(tmp_path / "o1" / "export" / "quarantine.csv")
    assert "unmappable" in set(q["rule"])

    # auth failure: a wrong key
    monkeypatch.setenv("SANDBOX_API_KEY", "not-the-key-0000")
    assert cli.main(["sync", str(fast), "--out", str(tmp_path / "o2"), *args]) == cli.EXIT_AUTH
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err and "->" in err

    # quota exhausted (resumable)
    small_sandbox(quota_after=2)
    assert cli.main(["sync", str(fast), "--out", str(tmp_path / "o3"), *args]) == cli.EXIT_QUOTA
    with StateStore(tmp_path / "o3" / "state" / "sandbox.sqlite") as store:
        assert store.runs()["status"].tolist() == ["quota_exhausted"]
        assert store.table_counts()["usage"] == 0
    text = capsys.readouterr().out  # the summary says what remains (here: from the meter lists)
    assert "quota_exhausted" in text and "remaining meters" in text

    # provider down
    small_sandbox(every_nth_503=1)
    assert (
        cli.main(["sync", str(fast), "--out", str(tmp_path / "o4"), *args, "--json"])
        == cli.EXIT_PROVIDER_DOWN
    )
    assert json.loads(capsys.readouterr().out)["error"] == "ProviderUnavailableError"

    # usage errors
    assert cli.main(["sync", str(tmp_path / "missing.toml")]) == cli.EXIT_USAGE
    with pytest.raises(SystemExit) as info:
        cli.main(["sync"])
    assert info.value.code == cli.EXIT_USAGE


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scaler_workbench.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
def test_sigkill_at_fault_points_then_rerun_gives_identical_files(
    small_sandbox: Callable[..., Sandbox], tmp_path: Path
) -> None:
    small_sandbox()
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    args = ["sync", str(PROFILE), "--until", UNTIL, "--formats", "csv,xlsx"]
    ref = tmp_path / "ref"
    assert cli.main([*args, "--out", str(ref)]) == 0
    out = tmp_path / "crash"
    state = out / "state" / "sandbox.sqlite"
    for point in ("after-assets", "mid-usage", "during-export"):
        proc = _cli([*args, "--out", str(out)], {**env, "SCALER_WORKBENCH_FAULT": point})
        assert proc.returncode == -9, (point, proc.stderr[-2000:])
        with StateStore(state) as store:
            counts = store.table_counts()
            if point != "during-export":  # killed inside the commit: nothing half-written
                assert counts == {"assets": 0, "meters": 0, "usage": 0, "readings": 0}
                assert store.watermarks() == {}
            else:
                assert counts["usage"] > 0 and not (out / "export" / "usage.csv").exists()
    assert cli.main([*args, "--out", str(out)]) == 0
    assert export_bytes(out) == export_bytes(ref)
    with StateStore(state) as store:
        assert store.runs()["status"].tolist() == [
            "success",
            "interrupted",
            "interrupted",
            "interrupted",
        ]
    assert not list(out.glob(".export.*")), "temporary export folders left behind"


def test_module_entry_point_prints_help() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "scaler_workbench.cli", "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0 and "sync" in proc.stdout and "Exit codes" in proc.stdout


_ = Profile


def test_cli_quota_stop_exits_4_with_what_remains_and_the_same_command_resumes(
    small_sandbox: Callable[..., Sandbox], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sb = small_sandbox(quota_after=15)
    out = tmp_path / "out"
    args = ["sync", str(PROFILE), "--out", str(out), "--until", UNTIL, "--formats", "csv"]
    assert cli.main([*args, "--json"]) == cli.EXIT_QUOTA
    captured = capsys.readouterr()
    payload = json.loads(captured.out)
    assert payload["status"] == "quota_exhausted" and payload["exit_code"] == cli.EXIT_QUOTA
    assert payload["error"] == "QuotaExhaustedError" and payload["summary"]["remaining"]
    assert "Traceback" not in captured.err and "quota" in captured.err
    summary = json.loads((out / "export" / "run_summary.json").read_text())
    assert summary["status"] == "quota_exhausted" and summary["remaining"]
    with StateStore(out / "state" / "sandbox.sqlite") as store:
        committed = set(store.read_table("usage")["meter_id"].astype(str))
    assert committed, "the quota stop committed nothing"
    sb.set_faults(quota_after=None)
    sb.clear_log()
    assert cli.main(args) == cli.EXIT_OK
    text = capsys.readouterr().out
    assert "success" in text and "reconciliation monthly: 18 of 18" in text
    # the resumed run did not ask again for the sequences the first one committed
    data = {
        q.path for q in sb.request_log if q.path.endswith(("/intervals", "/readings", "/bills"))
    }
    assert data and not {p for p in data if p.split("/")[-2] in committed}
    with StateStore(out / "state" / "sandbox.sqlite") as store:
        assert store.runs()["status"].tolist() == ["success", "quota_exhausted"]
        assert store.resume_plan() is None
