"""Nothing lost: every fault kind at every request position of an incremental run (issue 13).

Two sandbox runs: a full one, then an incremental one during which the sandbox injects one
fault (:meth:`Sandbox.inject_fault`) at one request position. For every kind x position:

* the exit code is 1 (partial), or 5 when the one top-level entity request failed entirely
  (the provider is down: nothing is committed), or 0 when the fault changed nothing (an
  empty page cannot lose a record);
* every usage, readings, quarantine and reconciliation row the first run exported is still
  in the export, byte for byte, and no asset or meter is deactivated;
* run_summary.json names each incomplete window;
* a clean third run exports exactly what a clean full pull exports.

The runs are in-process with a FakeClock (retries never sleep) and the pandas validation
engine (the same rules as the GX suites, faster); the clean first run and the clean full pull
run once and each case starts from a copy of the first run's folder. ``report.html`` (outside
the byte comparison) is rendered without its plots, which took over half of every run's CPU
time; one case goes through the CLI with the full report.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from _exports import export_bytes

from scaler_workbench.cli import exit_code_for
from scaler_workbench.clock import FakeClock
from scaler_workbench.exceptions import WorkbenchError
from scaler_workbench.profile import Profile, read_profile, to_profile_toml
from scaler_workbench.sandbox import INJECTED_FAULTS, Sandbox
from scaler_workbench.schema import Tables
from scaler_workbench.sync import run_sync
from scaler_workbench.validation import validate_tables

ROOT = Path(__file__).resolve().parent.parent
SANDBOX_PROFILE = ROOT / "mappings" / "sandbox" / "profile.toml"
#: one site with two interval meters and a register meter over February and March 2024;
#: the sandbox stops itself after ``lifetime`` [s], longer than the matrix takes
TINY = {
    "sites": 1,
    "meters_per_site": 3,
    "start": "2024-02-01",
    "end": "2024-04-01",
    "lifetime": 1800.0,
}
KEPT = ("usage.csv", "readings.csv", "quarantine.csv", "reconciliation.csv")


def _pandas_validate(tables: Tables, profile: Profile) -> Any:
    return validate_tables(tables, profile, use_gx=False)


def _run(profile: Profile, out: Path, **kw: Any) -> tuple[int, dict[str, Any]]:
    """(exit code, run summary) of one in-process sync; a raised error gives its exit code."""
    try:
        r = run_sync(
            profile,
            out=out,
            clock=FakeClock(datetime(2024, 4, 1, tzinfo=UTC)),
            formats=("csv",),
            validate=_pandas_validate,
            **kw,
        )
    except WorkbenchError as exc:
        return exit_code_for(exc), {"error": type(exc).__name__}
    return r.exit_code, r.summary


def _lines(out: Path, name: str) -> list[bytes]:
    return (out / "export" / name).read_bytes().splitlines()


def _assert_nothing_lost(before: Path, after: Path, where: str) -> None:
    for name in KEPT:
        old, new = _lines(before, name), set(_lines(after, name))
        lost = [line for line in old if line not in new]
        assert not lost, f"{where}: {name} lost {len(lost)} row(s), e.g. {lost[0]!r}"
    for name in ("assets.csv", "meters.csv", "deactivated.csv"):
        assert _lines(after, name) == _lines(before, name), f"{where}: {name} changed"


@pytest.fixture
def tiny(small_sandbox: Callable[..., Sandbox]) -> Sandbox:
    return small_sandbox(**TINY)


@pytest.fixture
def plotless_report(monkeypatch: pytest.MonkeyPatch) -> None:
    """``report.html`` is rendered (summary, findings, reconciliation, quarantine rows) but
    without its plots: it is not compared here (tests/test_export_files.py checks it) and
    building and rasterising the three matplotlib figures took over half of each run's CPU."""
    from scaler_workbench import report

    monkeypatch.setattr(
        report, "_images", lambda *args: {"coverage": "", "reconciliation": "", "quarantine": ""}
    )


def _profile() -> Profile:
    """The sandbox profile with pages of 1000 records (a month of half-hours is still two
    pages: a short page inside a sequence is played) from the tiny sandbox's first day."""
    data = read_profile(SANDBOX_PROFILE).to_dict()
    data["paginator"]["limit"] = 1000
    for name in ("intervals", "registers"):  # the tiny sandbox's data start
        data["resources"][name]["date_range"]["since"] = TINY["start"]
    return Profile.from_dict(data)


@pytest.mark.usefixtures("plotless_report")
def test_every_fault_kind_at_every_position_loses_nothing(tiny: Sandbox, tmp_path: Path) -> None:
    profile = _profile()
    t0, cpu0 = time.perf_counter(), time.process_time()
    first = tmp_path / "first"
    assert _run(profile, first)[0] == 0
    reference = tmp_path / "reference"  # a clean full pull from nothing
    assert _run(profile, reference)[0] == 0
    ref_files = export_bytes(reference)
    assert export_bytes(first) == ref_files
    # how many requests an incremental run makes (the positions to fault)
    probe = tmp_path / "probe"
    shutil.copytree(first, probe)
    tiny.clear_log()
    code, summary = _run(profile, probe)
    assert (code, summary["mode"]) == (0, "incremental")
    positions = len(tiny.request_log)
    # every resource of the run is among the positions faulted (entity lists, parents, each
    # usage and readings window); 14 since date-only resources lost their margin-day request
    paths = " ".join(str(r) for r in tiny.request_log)
    assert positions >= 14 and all(p in paths for p in ("/sites", "/meters", "/intervals"))
    assert export_bytes(probe) == ref_files

    outcomes: dict[int, int] = {}
    effective = 0
    for kind in INJECTED_FAULTS:
        for at in range(positions):
            where = f"{kind} at request {at}"
            out = tmp_path / f"{kind}-{at}"
            shutil.copytree(first, out)
            tiny.inject_fault(kind, at_request=at)
            code, summary = _run(profile, out)
            hit = tiny.injected
            tiny.clear_faults()
            assert hit is not None and hit["target"] is not None, where
            outcomes[code] = outcomes.get(code, 0) + 1
            if hit["effective"]:
                effective += 1
                assert code in (1, 5), f"{where}: exit {code}"
                if code == 1:
                    assert summary["status"] == "partial", where
                    windows = summary["incomplete_windows"]
                    assert windows and all(w["why"] for w in windows), where
                    assert all(p["deactivated"] == [] for p in summary["deactivation"].values()), (
                        where
                    )
                    assert not summary["ready_to_export"]["ready"], where
                    written = json.loads((out / "export" / "run_summary.json").read_text())
                    assert written["incomplete_windows"] == windows, where
                else:  # the sites list failed entirely: the provider is down
                    assert hit["target"].startswith("/api/v1/sites?"), where
            else:
                assert code == 0, f"{where}: exit {code} for a fault that changed nothing"
            _assert_nothing_lost(first, out, where)
            code, _ = _run(profile, out)
            assert code == 0, f"{where}: the clean third run exited {code}"
            assert export_bytes(out) == ref_files, f"{where}: third run differs from a full pull"
            shutil.rmtree(out)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    n_kinds = len(INJECTED_FAULTS)
    print(
        f"\n{n_kinds} kinds x {positions} positions: nothing lost "
        f"({effective} faults changed an answer; exit codes {dict(sorted(outcomes.items()))}; "
        f"{elapsed:.0f} s wall, {cpu:.0f} s CPU in this process)"
    )
    assert effective >= n_kinds * positions * 3 // 4


def test_a_fault_through_the_cli_exits_1_and_names_the_window(
    tiny: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from scaler_workbench.cli import main

    data = _profile().to_dict()
    data["client"]["max_attempts"] = 1  # the CLI runs on the system clock: no real backoff
    profile = tmp_path / "profile.toml"
    profile.write_text(to_profile_toml(data), encoding="utf-8")
    args = ["sync", str(profile), "--out", str(tmp_path), "--formats", "csv"]
    args += ["--until", "2024-04-01"]
    assert main(args) == 0
    before = tmp_path / "before"
    shutil.copytree(tmp_path / "export", before / "export")
    capsys.readouterr()
    tiny.clear_log()
    tiny.inject_fault("503", at_request=3)  # an interval window of the first meter
    assert main(args) == 1
    printed = capsys.readouterr().out.strip().splitlines()
    summary = json.loads((tmp_path / "export" / "run_summary.json").read_text())
    (window,) = summary["incomplete_windows"]
    assert window["resource"] == "intervals" and window["parent"] == "meter_id=M0001"
    assert "503" in window["why"] or "Unavailable" in window["why"]
    assert any("incomplete" in line and "intervals" in line for line in printed)
    _assert_nothing_lost(before, tmp_path, "cli 503")


def test_inject_fault_hits_one_position_and_changes_nothing_unarmed(tiny: Sandbox) -> None:
    import requests

    from scaler_workbench.exceptions import SandboxError

    headers = {"X-API-Key": tiny.env()["SANDBOX_API_KEY"]}
    url = tiny.url + "/sites/S001/meters"

    def get() -> requests.Response:
        return requests.get(url, headers=headers, timeout=10)

    plain = get().content
    tiny.inject_fault("duplicate", at_request=1)
    assert get().content == plain  # position 0: untouched
    hit = json.loads(get().content)  # position 1: the first record repeated, total kept
    assert hit["data"][-1] == hit["data"][0] and hit["total"] == len(hit["data"]) - 1
    assert get().content == plain  # one answer only
    assert tiny.injected == {
        "kind": "duplicate",
        "at_request": 1,
        "target": "/api/v1/sites/S001/meters",
        "hits": 1,
        "effective": True,
    }
    tiny.inject_fault("503", at_request=0)
    assert [get().status_code for _ in range(3)] == [503, 503, 503]  # past any retries
    tiny.clear_faults()
    assert tiny.injected is None and get().content == plain
    with pytest.raises(SandboxError, match="unknown injected fault"):
        tiny.inject_fault("gremlins", at_request=0)
