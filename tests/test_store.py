"""StateStore: migrations, runs, registry, watermarks, stored rows, quarantine history, requests."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from scaler_workbench._secrets import register_secret
from scaler_workbench.exceptions import StateError
from scaler_workbench.schema import QUARANTINE, coerce_frame
from scaler_workbench.store import SCHEMA_VERSION, StateStore


def _usage(meter: str, starts: list[str], values: list[float]) -> pd.DataFrame:
    start = pd.to_datetime(starts, utc=True)
    return coerce_frame(
        pd.DataFrame(
            {
                "meter_id": meter,
                "start": start,
                "end": start + pd.offsets.MonthBegin(1),
                "consumption": values,
                "unit": "kWh",
                "estimated": [False, None][: len(values)] + [True] * max(0, len(values) - 2),
                "n_intervals": 48,
            }
        ),
        "usage",
    )


def test_new_file_is_wal_and_at_current_schema(tmp_path: Path) -> None:
    with StateStore(tmp_path / "s" / "state.sqlite") as store:
        assert store.schema_version == SCHEMA_VERSION
        mode = store._con.execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(StateError, match="newer"):
        StateStore(path)


def test_corrupt_file_is_a_state_error(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StateError):
        StateStore(path)


def test_rows_round_trip_exactly_and_replace_by_key(tmp_path: Path) -> None:
    with StateStore(tmp_path / "state.sqlite") as store:
        frame = _usage("M1", ["2024-01-01", "2024-02-01", "2024-03-01"], [0.1, 1 / 3, 1e16])
        store.write_rows("usage", frame)
        back = store.read_table("usage")
        pd.testing.assert_frame_equal(back, frame.reset_index(drop=True))
        # same key again: replaced, not duplicated
        store.write_rows("usage", _usage("M1", ["2024-02-01"], [2.5]))
        back = store.read_table("usage")
        assert len(back) == 3
        assert back.loc[1, "consumption"] == 2.5


def test_delete_rows_by_meter_and_window(tmp_path: Path) -> None:
    with StateStore(tmp_path / "state.sqlite") as store:
        store.write_rows(
            "usage", _usage("M1", ["2024-01-01", "2024-02-01", "2024-03-01"], [1, 2, 3])
        )
        store.write_rows("usage", _usage("M2", ["2024-01-01", "2024-02-01"], [4, 5]))
        cut = pd.Timestamp("2024-02-01", tz="UTC").value
        assert store.delete_rows("usage", meter_ids=["M1"], from_ns={"M1": cut}) == 2
        left = store.read_table("usage")
        assert list(left["meter_id"]) == ["M1", "M2", "M2"]


def test_transaction_rolls_back_everything(tmp_path: Path) -> None:
    with StateStore(tmp_path / "state.sqlite") as store:
        with pytest.raises(RuntimeError), store.transaction():
            store.write_rows("usage", _usage("M1", ["2024-01-01"], [1.0]))
            store.set_watermark("intervals", "2024-01-31T00:00:00+00:00", run_id=1)
            raise RuntimeError("boom")
        assert store.read_table("usage").empty
        assert store.watermarks() == {}


def test_runs_registry_and_interrupted_runs(tmp_path: Path) -> None:
    with StateStore(tmp_path / "state.sqlite") as store:
        r1 = store.begin_run(profile="p", environment="sandbox", mode="full")
        store.upsert_entities("meter", ["M1", "M2"], run_id=r1, parents={"M1": "S1"})
        r2 = store.begin_run(profile="p", environment="sandbox", mode="full")  # r1 never finished
        assert store.runs()["status"].tolist() == ["running", "interrupted"]
        store.deactivate("meter", ["M2"], run_id=r2)
        assert store.active_ids("meter") == {"M1"}
        assert store.upsert_entities("meter", ["M2"], run_id=r2) == ["M2"]  # came back
        store.finish_run(r2, status="success", counts={"usage": 3})
        last = store.last_run()
        assert last is not None and last["status"] == "success" and last["counts"] == {"usage": 3}
        reg = store.entities("meter")
        assert reg["entity_id"].tolist() == ["M1", "M2"] and reg["active"].tolist() == [1, 1]
        assert reg.loc[0, "parent_id"] == "S1" and reg.loc[0, "first_seen_run"] == r1


def test_quarantine_keeps_history_through_release_and_reopen(tmp_path: Path) -> None:
    row = {
        "table": "usage",
        "record_key": "M1|2024-01-01|2024-02-01",
        "source_id": "r1",
        "stage": "validation",
        "rule": "negative_consumption",
        "severity": "error",
        "reason": "consumption -3 < 0",
        "record": '{"value": -3}',
    }
    q = coerce_frame(pd.DataFrame([row]), QUARANTINE)
    with StateStore(tmp_path / "state.sqlite") as store:
        assert store.record_quarantine(q, run_id=1)["new"] == 1
        assert store.record_quarantine(q, run_id=2)["seen_again"] == 1
        qid = int(store.quarantine()["qid"].iloc[0])
        assert store.release_quarantine([qid], run_id=3) == 1
        assert store.quarantine().empty
        assert store.record_quarantine(q, run_id=4)["reopened"] == 1
        events = store.quarantine_history(qid)["event"].tolist()
        assert events == ["quarantined", "seen", "released", "reopened"]
        assert len(store.quarantine(status=None)) == 1


def test_no_secret_reaches_the_file(tmp_path: Path) -> None:
    secret = "sk-live-0123456789abcdef"
    register_secret(secret)
    path = tmp_path / "state.sqlite"
    with StateStore(path) as store:
        run = store.begin_run(profile="p", environment=None, mode="full")
        store.log_requests(
            [
                {
                    "method": "get",
                    "url": f"https://api.x/v1/m?api_key={secret}&from=2024",
                    "status": 200,
                    "duration_ms": 12.5,
                },
                {"url": f"https://u:{secret}@api.x/v1/sites", "status": 401},
            ],
            run_id=run,
        )
        store.finish_run(run, status="failed", errors=[f"AuthError: key {secret} refused"])
        urls = store.requests(run)["url"].tolist()
        assert urls[0].startswith("https://api.x/v1/m?api_key=***")
        assert store.requests(run)["method"].tolist() == ["GET", "GET"]
    store.close()
    blob = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert secret.encode() not in blob


def test_v1_file_migrates_and_keeps_provider_totals_and_resume_plan(tmp_path: Path) -> None:
    from scaler_workbench import store as store_module

    path = tmp_path / "state.sqlite"
    con = sqlite3.connect(path)  # a file written by schema v1
    for statement in store_module.MIGRATIONS[0]:
        con.execute(statement)
    con.execute("PRAGMA user_version = 1")
    con.commit()
    con.close()
    with StateStore(path) as store:
        assert store.schema_version == SCHEMA_VERSION >= 2
        assert store.resume_plan() is None and store.provider_totals().empty
        totals = pd.DataFrame(
            {
                "meter_id": ["M1", "M1", "M2"],
                "start": pd.to_datetime(["2024-01-01", "2024-02-01", "2024-01-01"], utc=True),
                "end": pd.to_datetime(["2024-02-01", "2024-03-01", "2024-02-01"], utc=True),
                "provider": [1.5, float("nan"), 1 / 3],
                "unit": ["kWh", "kWh", "m³"],
                "raw_total": [1500.0, float("nan"), 1 / 3],
                "raw_unit": ["Wh", "Wh", "m3"],
                "note": ["", "total is not a number", ""],
            }
        )
        assert store.write_provider_totals("monthly", totals, run_id=1) == 3
        got = store.provider_totals("monthly")
        assert got["provider"].iloc[2] == 1 / 3 and pd.isna(got["provider"].iloc[1])
        assert got["start"].iloc[1] == pd.Timestamp("2024-02-01", tz="UTC")
        # a partial pull replaces only the meters it reached
        store.write_provider_totals("monthly", totals.iloc[2:], run_id=2, meter_ids=["M2"])
        assert len(store.provider_totals()) == 3
        store.write_provider_totals("monthly", totals.iloc[2:], run_id=3)
        assert store.provider_totals()["meter_id"].tolist() == ["M2"]
        store.set_resume_plan({"skip": {"intervals": ["meter_id=M1"]}}, run_id=7)
        assert store.resume_plan() == {"skip": {"intervals": ["meter_id=M1"]}, "stopped_run": 7}
        store.set_resume_plan(None, run_id=8)
        assert store.resume_plan() is None
