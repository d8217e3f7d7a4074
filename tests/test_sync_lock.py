"""One sync at a time per state: two real CLI processes against one loopback sandbox.

The loser exits 8 at once and touches nothing (the state and the export equal a single run's);
a lock left by a SIGKILLed run is taken over by the next run.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from _exports import export_bytes

from scaler_workbench import cli
from scaler_workbench.exceptions import SyncLockedError
from scaler_workbench.profile import read_profile
from scaler_workbench.sandbox import Sandbox
from scaler_workbench.store import StateStore
from scaler_workbench.sync import lock_path, run_sync, sync_lock

ROOT = Path(__file__).resolve().parent.parent
PROFILE = ROOT / "mappings" / "sandbox" / "profile.toml"
UNTIL = "2024-04-01"


class _Proc:
    """A CLI process whose output goes to files (a pipe nobody reads could block it)."""

    def __init__(self, args: list[str], folder: Path, name: str, **env: str) -> None:
        self.out, self.err = folder / f"{name}.out", folder / f"{name}.err"
        with self.out.open("w") as out, self.err.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "scaler_workbench.cli", *args],
                env={**os.environ, "PYTHONWARNINGS": "ignore", **env},
                stdout=out,
                stderr=err,
            )

    def stderr(self) -> str:
        return self.err.read_text(encoding="utf-8")

    def stdout(self) -> str:
        return self.out.read_text(encoding="utf-8")


def _state(out: Path) -> tuple[dict[str, int], list[str]]:
    with StateStore(out / "state" / "sandbox.sqlite") as store:
        return store.table_counts(), store.runs()["status"].tolist()


@pytest.mark.slow
def test_two_syncs_started_together_one_runs_the_other_exits_8_at_once(
    small_sandbox: Callable[..., Sandbox], tmp_path: Path
) -> None:
    small_sandbox(slow_seconds=0.1)  # a run long enough for the other process to meet it
    args = ["sync", str(PROFILE), "--until", UNTIL, "--formats", "csv,xlsx"]
    ref = tmp_path / "ref"
    assert cli.main([*args, "--out", str(ref)]) == 0
    out = tmp_path / "out"
    procs = [_Proc([*args, "--out", str(out)], tmp_path, f"p{i}") for i in range(2)]
    ended: dict[int, float] = {}
    deadline = time.monotonic() + 300
    while len(ended) < 2 and time.monotonic() < deadline:
        for i, p in enumerate(procs):
            if i not in ended and p.proc.poll() is not None:
                ended[i] = time.monotonic()
        time.sleep(0.02)
    codes = [p.proc.wait(timeout=1) for p in procs]
    errs = [p.stderr()[-3000:] for p in procs]
    assert sorted(codes) == [0, 8], errs
    loser, winner = (0, 1) if codes[0] == 8 else (1, 0)
    assert ended[loser] < ended[winner]  # it did not wait for the running sync
    assert "another sync of 'sandbox' is running" in errs[loser]
    assert export_bytes(out) == export_bytes(ref)
    assert _state(out) == _state(ref)  # one run in the state: the loser touched nothing


@pytest.mark.slow
def test_a_sync_started_during_a_running_one_exits_8_and_leaves_it_alone(
    small_sandbox: Callable[..., Sandbox], tmp_path: Path
) -> None:
    sb = small_sandbox(slow_seconds=0.2)
    out = tmp_path / "out"
    args = ["sync", str(PROFILE), "--until", UNTIL, "--out", str(out), "--formats", "csv"]
    first = _Proc(args, tmp_path, "first")
    deadline = time.monotonic() + 120
    while not sb.request_log and time.monotonic() < deadline:  # the first run is fetching
        assert first.proc.poll() is None, first.stderr()[-3000:]
        time.sleep(0.05)
    second = _Proc([*args, "--json"], tmp_path, "second")
    assert second.proc.wait(timeout=300) == cli.EXIT_LOCKED, second.stderr()[-3000:]
    assert first.proc.poll() is None  # the second one came and went while the first still ran
    assert '"error": "SyncLockedError"' in second.stdout()
    assert first.proc.wait(timeout=300) == 0, first.stderr()[-3000:]
    counts, statuses = _state(out)
    assert statuses == ["success"] and counts["usage"] > 0  # never marked interrupted


@pytest.mark.slow
def test_a_sigkilled_runs_lock_is_taken_over_by_the_next_run(
    small_sandbox: Callable[..., Sandbox], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    small_sandbox()
    out = tmp_path / "out"
    args = ["sync", str(PROFILE), "--until", UNTIL, "--out", str(out), "--formats", "csv"]
    killed = _Proc(args, tmp_path, "killed", SCALER_WORKBENCH_FAULT="mid-usage")
    assert killed.proc.wait(timeout=300) == -9, killed.stderr()[-3000:]
    assert lock_path(out / "state" / "sandbox.sqlite").exists()  # the file stays behind
    with caplog.at_level(logging.WARNING):
        assert cli.main(args) == 0
    assert f"took over the sync lock of process {killed.proc.pid}" in caplog.text
    counts, statuses = _state(out)
    assert statuses == ["success", "interrupted"] and counts["usage"] > 0


def test_sync_lock_refuses_a_second_holder_in_the_same_process(
    small_sandbox: Callable[..., Sandbox], tmp_path: Path
) -> None:
    small_sandbox()
    profile = read_profile(PROFILE)
    state = tmp_path / "out" / "state" / "sandbox.sqlite"
    with sync_lock(state, provider="sandbox"):
        started = time.monotonic()
        with pytest.raises(SyncLockedError, match="another sync of 'sandbox' is running") as info:
            run_sync(profile, out=tmp_path / "out", until=UNTIL, formats=("csv",))
        assert time.monotonic() - started < 5
        assert cli.exit_code_for(info.value) == 8
        assert not state.exists()  # the state was never opened
    result = run_sync(profile, out=tmp_path / "out", until=UNTIL, formats=("csv",))
    assert result.status == "success"
