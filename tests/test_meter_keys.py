"""Compound meter keys through a whole sync (issue 15 items 4 and 15): a meter keyed by
(MPAN, serial), usage keyed by the same compound of its parent's path parameters,
``[reconcile]`` totals keyed by a compound spec, and ``possible_duplicate_meter`` naming two
meters that share a service id. Real loopback HTTP, the real ``run_sync``."""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from _fakes import Reply, Request

from scaler_workbench.clock import FakeClock
from scaler_workbench.exceptions import ProfileError
from scaler_workbench.profile import Profile
from scaler_workbench.reconciliation import parse_provider_totals, read_reconcile_checks
from scaler_workbench.sync import run_sync
from scaler_workbench.validation import validate_meters

#: an import and an export MPAN on one serial; M3 an archived copy of M1 (same service id)
METERS = [
    {"mpan": "M1", "serial": "S1", "site": "X", "service": "SV-1", "direction": "import"},
    {"mpan": "M2", "serial": "S1", "site": "X", "service": "SV-2", "direction": "export"},
    {"mpan": "M3", "serial": "S9", "site": "X", "service": "SV-1", "direction": "import"},
]
SUMMARIES = [  # the provider's January totals, keyed by MPAN and serial as the meters are
    {"mpan": "M1", "serial": "S1", "month": "2024-01", "total": 31.0},  # 31 days x 1 kWh
    {"mpan": "M2", "serial": "S1", "month": "2024-01", "total": 60.0},  # 31 x 2: 2 kWh short
]


def handler(req: Request) -> Reply:
    if req.path == "/meters":
        return Reply(200, {"data": METERS})
    if req.path == "/summaries":
        return Reply(200, {"data": SUMMARIES})
    parts = req.path.strip("/").split("/")  # meters/{mpan}/{serial}/days
    if len(parts) == 4 and parts[3] == "days":
        start = date.fromisoformat(req.query["startDate"])
        end = date.fromisoformat(req.query["endDate"])  # inclusive
        value = {"M1": 1.0, "M2": 2.0, "M3": 1.0}[parts[1]]
        days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
        return Reply(200, {"values": [{"date": d.isoformat(), "kwh": value} for d in days]})
    return Reply(404, {"error": "no such path"})


PROFILE: dict[str, Any] = {
    "provider": {"name": "keys", "timezone": "UTC"},
    "environments": {"test": {"base_url": ""}},
    "paginator": {"type": "none"},
    "resources": {
        "meters": {"path": "/meters", "record_path": "data"},
        "days": {
            "path": "/meters/{mpan}/{serial}/days",
            "record_path": "values",
            "parent": "meters",
            "parent_params": {"mpan": "mpan", "serial": "serial"},
            "date_range": {
                "start_param": "startDate",
                "end_param": "endDate",
                "format": "date",
                "end_inclusive": True,
                "chunk": "month",
                "since": "2024-01-01",
            },
        },
        "summaries": {"path": "/summaries", "record_path": "data"},
    },
    "mapping": {
        "assets": {"resource": "meters", "fields": {"asset_id": "site", "name": "site"}},
        "meters": {
            "resource": "meters",
            "fields": {
                "meter_id": ["mpan", "serial"],  # one serial holds two MPANs
                "asset_id": "site",
                "meter_type": {"const": "Energy"},
                "meter_subtype": {"const": "Off-site Electricity"},
                "raw_unit": {"const": "kWh"},
                "service_id": "service",  # extra column: possible_duplicate_meter reads it
            },
        },
        "usage": {
            "days": {
                "resource": "days",
                "kind": "intervals",
                "aggregate": "month",
                "duration": "1D",
                "fields": {
                    "meter_id": {"join": ["_parent.mpan", "_parent.serial"]},
                    "start": "date",
                    "consumption": "kwh",
                },
            }
        },
    },
    "reconcile": {
        "monthly": {
            "resource": "summaries",
            "unit": "kWh",
            "fields": {
                "meter_id": {"join": ["mpan", "serial"], "sep": ":"},
                "month": "month",
                "total": "total",
            },
        }
    },
    "sync": {"state": "state/keys.sqlite"},
}


def _profile(url: str) -> Profile:
    data = copy.deepcopy(PROFILE)
    data["environments"]["test"]["base_url"] = url
    return Profile.from_dict(data)


@pytest.fixture
def synced(serve: Any, tmp_path: Path) -> tuple[Any, Path]:
    server = serve(handler)
    clock = FakeClock(datetime(2024, 2, 1, tzinfo=UTC))
    result = run_sync(
        _profile(server.url), out=tmp_path, clock=clock, until="2024-02-01", formats=("csv",)
    )
    return result, tmp_path / "export"


def test_reconcile_compound_keys_end_to_end(synced: tuple[Any, Path]) -> None:
    result, export = synced
    usage = pd.read_csv(export / "usage.csv", dtype={"meter_external_id": str})
    got = dict(zip(usage["meter_external_id"], usage["consumption"], strict=True))
    assert got == {"M1:S1": 31.0, "M2:S1": 62.0, "M3:S9": 31.0}  # one serial, two meters
    recon = pd.read_csv(export / "reconciliation.csv", dtype={"meter_external_id": str})
    by_meter = recon.set_index("meter_external_id")
    assert set(by_meter.index) == {"M1:S1", "M2:S1"}  # keyed like the meters, not "nan"
    assert bool(by_meter.loc["M1:S1", "within_tolerance"])
    assert not bool(by_meter.loc["M2:S1", "within_tolerance"])
    assert by_meter.loc["M2:S1", "difference"] == pytest.approx(2.0)
    checks = result.summary["reconciliation"]["checks"]["monthly"]
    assert (checks["compared"], checks["beyond_tolerance"]) == (2, 1)
    assert result.status == "partial"


def test_possible_duplicate_meter_is_a_warning_naming_both_meters(
    synced: tuple[Any, Path],
) -> None:
    _result, export = synced
    q = pd.read_csv(export / "quarantine.csv", dtype=str)
    dup = q[q["rule"] == "possible_duplicate_meter"]
    assert len(dup) == 1, q[["rule", "reason"]].to_string()
    row = dup.iloc[0]
    assert row["severity"] == "warning" and row["record_key"] == "M3:S9"
    assert "meter 'M3:S9' has the same service_id 'SV-1' as meter 'M1:S1'" in row["reason"]
    # both kept and exported (a warning): the double counting is visible, not silent
    meters = pd.read_csv(export / "meters.csv", dtype=str)
    assert {"M1:S1", "M3:S9"} <= set(meters["external_id"])


def _meters_frame(**extra: list[Any]) -> pd.DataFrame:
    base = {
        "meter_id": ["A", "B", "C", "D"],
        "asset_id": ["X"] * 4,
        "meter_type": ["Energy", "Energy", "Energy", "Water"],
        "meter_subtype": ["Natural Gas", "Natural Gas", "Off-site Electricity", "Potable"],
        "unit": ["kWh", "kWh", "kWh", "m³"],
    }
    return pd.DataFrame({**base, **extra})


def _dups(frame: pd.DataFrame, profile: Profile | None = None) -> list[tuple[str, str]]:
    _acc, q, _summary = validate_meters(frame, profile)
    q = q[q["rule"] == "possible_duplicate_meter"]
    return list(zip(q["record_key"], q["reason"], strict=True))


def test_duplicate_meters_compare_within_type_subtype_and_direction() -> None:
    # A and B: same gas serial -> B flagged; C (electricity) and D (water) share it too, but
    # a different subtype or type is another meter
    found = _dups(_meters_frame(meter_number=["N1", "N1", "N1", "N1"]))
    assert [k for k, _ in found] == ["B"]
    assert "meter 'B' has the same meter_number 'N1' as meter 'A'" in found[0][1]
    assert "double counting" in found[0][1]
    # an import and an export meter on one serial are not duplicates
    directions = {"direction": ["import", "export", None, None]}
    assert _dups(_meters_frame(serial=["S", "S", None, None], **directions)) == []
    # two fields matching: one finding listing both
    both = _dups(_meters_frame(service_id=["V", "V", None, ""], serial=["S", "S", "", None]))
    assert len(both) == 1 and "service_id 'V'" in both[0][1] and "serial 'S'" in both[0][1]
    # no such column mapped: nothing to compare, no finding
    assert _dups(_meters_frame()) == []


def test_duplicate_meter_fields_are_configurable() -> None:
    frame = _meters_frame(account_no=["7", "7", None, None], serial=["S", "S", None, None])
    data = {
        "provider": {"name": "p", "timezone": "UTC"},
        "environments": {"x": {"base_url": "http://127.0.0.1:9"}},
        "validation": {"rules": {"possible_duplicate_meter": {"fields": ["account_no"]}}},
    }
    found = _dups(frame, Profile.from_dict(data))
    assert len(found) == 1 and "account_no '7'" in found[0][1] and "serial" not in found[0][1]
    data["validation"]["rules"]["possible_duplicate_meter"] = {"fields": "account_no"}
    with pytest.raises(ProfileError, match="list of strings"):
        Profile.from_dict(data)


def test_reconcile_compound_field_errors_name_the_part() -> None:
    data = copy.deepcopy(PROFILE)
    data["environments"]["test"]["base_url"] = "http://127.0.0.1:9"
    fields = data["reconcile"]["monthly"]["fields"]
    fields["meter_id"] = {"join": ["mpan", {"const": 1, "path": "x"}]}
    with pytest.raises(ProfileError) as info:
        read_reconcile_checks(Profile.from_dict(data))
    assert info.value.context["key"] == "reconcile.monthly.fields.meter_id"
    assert "meter_id.join[1]" in str(info.value)
    fields["meter_id"] = ["mpan", "seriall"]  # a path no summary has: named at parse time
    (check,) = read_reconcile_checks(Profile.from_dict(data))
    with pytest.raises(ProfileError, match=r"part meter_id\[1\] \(path 'seriall'\)"):
        parse_provider_totals(check, SUMMARIES, meters=pd.DataFrame(), assets=pd.DataFrame())
