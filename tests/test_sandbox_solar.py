"""The shipped sandbox profile maps its solar meters as production meters (``role =
"production"`` on their own ``solar`` source, ``direction = "production"``): their generation
is never consumption, the ground truth says so, and the provider's monthly totals of a
production meter reconcile with its exported production."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from scaler_workbench.clock import FakeClock
from scaler_workbench.profile import read_profile
from scaler_workbench.reconciliation import reconcile_totals
from scaler_workbench.sync import run_sync

ROOT = Path(__file__).resolve().parents[1]
SANDBOX = ROOT / "mappings" / "sandbox" / "profile.toml"


def test_the_sandbox_profile_exports_solar_generation_as_production(
    small_sandbox: Any, tmp_path: Path
) -> None:
    sb = small_sandbox()
    profile = read_profile(SANDBOX)
    mapping = profile.section("mapping")
    assert mapping["usage"]["solar"]["role"] == "production"
    assert profile.resources["solar"]["parent_filter"]["commodity"] == "solar"
    clock = FakeClock(datetime(2024, 4, 1, tzinfo=UTC))
    result = run_sync(profile, out=tmp_path, clock=clock, formats=("csv",), until="2024-04-01")
    export = tmp_path / "export"
    usage = pd.read_csv(export / "usage.csv", dtype={"meter_external_id": str, "start_date": str})
    meters = pd.read_csv(export / "meters.csv", dtype=str).set_index("external_id")
    commodity = {m["id"]: m["commodity"] for m in sb.data.meters}
    solar = sorted(m for m, c in commodity.items() if c == "solar")
    assert solar, "the small sandbox has a solar meter"
    for m in meters.index:
        want = "production" if commodity[m] == "solar" else "import"
        assert json.loads(meters.loc[m, "metadata"])["direction"] == want
    assert meters.loc[solar[0], "meter_subtype"] == "On-site Renewable Electricity"

    truth = sb.ground_truth()
    usage["month"] = usage["start_date"].str[:7]
    got = usage.set_index(["meter_external_id", "month"])
    assert len(got) == len(truth)
    for t in truth.itertuples():
        row = got.loc[(t.meter_id, t.month)]
        if t.meter_id in solar:
            assert t.consumption == 0.0 and t.production > 0
            assert row["consumption"] == 0.0
            assert row["production"] == pytest.approx(t.production, rel=1e-9)
            assert row["redelivery"] >= 0.0  # the part of the generation fed into the grid
        else:
            assert np.isnan(t.production) and pd.isna(row["production"])
            assert row["consumption"] == pytest.approx(t.consumption, rel=1e-9)

    # the provider's /summary totals of a solar meter are its generation: compared with the
    # exported production, every total reconciles
    recon = pd.read_csv(export / "reconciliation.csv", dtype={"meter_external_id": str})
    mine = recon[recon["meter_external_id"].isin(solar)]
    assert len(mine) == 3 * len(solar) and (mine["exported"] > 0).all()
    checks = result.summary["reconciliation"]["checks"]["monthly"]
    assert checks["beyond_tolerance"] == 0 and checks["within_tolerance"] == len(truth)


def test_reconcile_totals_compares_a_meter_by_its_direction() -> None:
    start, end = pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-02-01", tz="UTC")
    usage = pd.DataFrame(
        {
            "meter_id": ["IMP", "PV", "EXP"],
            "start": [start] * 3,
            "end": [end] * 3,
            "consumption": [10.0, 0.0, 0.0],
            "production": [np.nan, 7.0, np.nan],
            "redelivery": [1.0, 2.0, 4.0],
        }
    )
    totals = pd.DataFrame(
        {
            "check": ["m"] * 3,
            "meter_id": ["IMP", "PV", "EXP"],
            "start": [start] * 3,
            "end": [end] * 3,
            "unit": ["kWh"] * 3,
            "provider": [10.0, 7.0, 4.0],
            "raw_total": [10.0, 7.0, 4.0],
            "raw_unit": ["kWh"] * 3,
            "note": [""] * 3,
        }
    )
    meters = pd.DataFrame(
        {"meter_id": ["IMP", "PV", "EXP"], "direction": ["import", "production", "export"]}
    )
    by_direction = reconcile_totals(usage, totals, meters=meters).set_index("meter_id")
    assert by_direction["exported"].to_dict() == {"EXP": 4.0, "IMP": 10.0, "PV": 7.0}
    assert by_direction["within_tolerance"].all()
    # a meter without a direction (null, as the state stores it) is compared by consumption
    unknown = meters.assign(direction=pd.array(["import", "production", pd.NA], dtype="string"))
    partly = reconcile_totals(usage, totals, meters=unknown).set_index("meter_id")
    assert partly["exported"].to_dict() == {"EXP": 0.0, "IMP": 10.0, "PV": 7.0}
    # without directions every meter is compared by its consumption, as before
    plain = reconcile_totals(usage, totals).set_index("meter_id")
    assert plain["exported"].to_dict() == {"EXP": 0.0, "IMP": 10.0, "PV": 0.0}
    assert plain["within_tolerance"].to_dict() == {"EXP": False, "IMP": True, "PV": False}
