"""[reconcile.X] checks: config validation, provider totals in canonical units and local
periods, the comparison with its tolerance."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from scaler_workbench.exceptions import ProfileError
from scaler_workbench.profile import Profile
from scaler_workbench.reconciliation import (
    PROVIDER_TOTALS_COLUMNS,
    parse_provider_totals,
    read_reconcile_checks,
    reconcile_totals,
)
from scaler_workbench.schema import coerce_frame

CHECK = {
    "resource": "summaries",
    "tolerance": 1e-6,
    "fields": {"meter_id": "_parent.meter_id", "month": "month", "total": "total", "unit": "unit"},
}


def profile(check: dict[str, Any] | None = None, **units: Any) -> Profile:
    data: dict[str, Any] = {
        "provider": {"name": "p", "timezone": "Europe/London"},
        "environments": {"test": {"base_url": "http://127.0.0.1:9"}},
        "resources": {"summaries": {"path": "/s"}},
        "units": units or {"heating_value": {"preset": "uk", "calorific_value": 39.5}},
    }
    if check is not None:
        data["reconcile"] = {"monthly": check}
    return Profile.from_dict(data)


METERS = coerce_frame(
    pd.DataFrame(
        {
            "meter_id": ["E1", "G1", "W1", "NY"],
            "asset_id": ["S1", "S1", "S1", "S2"],
            "meter_type": ["Energy", "Energy", "Water", "Energy"],
            "meter_subtype": [
                "Off-site Electricity",
                "Natural Gas",
                "Potable",
                "Off-site Electricity",
            ],
            "unit": ["kWh", "kWh", "m³", "kWh"],
        }
    ),
    "meters",
)
ASSETS = coerce_frame(
    pd.DataFrame(
        {
            "asset_id": ["S1", "S2"],
            "name": ["a", "b"],
            "timezone": ["Europe/London", "America/New_York"],
        }
    ),
    "assets",
)


def rec(meter: str, month: str, total: Any, unit: str | None) -> dict[str, Any]:
    return {"month": month, "total": total, "unit": unit, "_parent": {"meter_id": meter}}


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda c: c.pop("resource"), "reconcile.monthly.resource"),
        (lambda c: c.update(resource="nope"), "reconcile.monthly.resource"),
        (lambda c: c.update(tolerance=-1), "reconcile.monthly.tolerance"),
        (lambda c: c.update(tolerance="1%"), "reconcile.monthly.tolerance"),
        (lambda c: c.update(colour="red"), "reconcile.monthly.colour"),
        (lambda c: c.pop("fields"), "reconcile.monthly.fields"),
        (lambda c: c["fields"].pop("total"), "reconcile.monthly.fields.total"),
        (lambda c: c["fields"].pop("meter_id"), "reconcile.monthly.fields.meter_id"),
        (lambda c: c["fields"].pop("unit"), "reconcile.monthly.fields.unit"),
        (lambda c: c["fields"].update(start="from"), "reconcile.monthly.fields.month"),
        (lambda c: c["fields"].update(period="x"), "reconcile.monthly.fields.period"),
        (lambda c: c.update(end_inclusive="yes"), "reconcile.monthly.end_inclusive"),
    ],
)
def test_bad_reconcile_config_names_the_key(edit: Any, key: str) -> None:
    check = {**CHECK, "fields": dict(CHECK["fields"])}
    edit(check)
    with pytest.raises(ProfileError) as info:
        read_reconcile_checks(profile(check))
    assert info.value.context["key"] == key
    assert key.split(".")[-1] in str(info.value)


def test_valid_config_and_defaults() -> None:
    (check,) = read_reconcile_checks(profile(CHECK))
    assert (check.name, check.resource, check.tolerance, check.abs_tolerance) == (
        "monthly",
        "summaries",
        1e-6,
        0.0,
    )
    assert read_reconcile_checks(profile()) == []
    const = {
        **CHECK,
        "unit": "kWh",
        "fields": {k: v for k, v in CHECK["fields"].items() if k != "unit"},
    }
    assert read_reconcile_checks(profile(const))[0].unit == "kWh"


def test_provider_totals_convert_to_canonical_units() -> None:
    p = profile(CHECK, aliases={"therms": "US_therm"}, heating_value={"preset": "uk"})
    (check,) = read_reconcile_checks(p)
    records = [
        rec("E1", "2024-01", 1500.0, "Wh"),
        rec("E1", "2024-02", 2.5, "MWh"),
        rec("G1", "2024-01", 100.0, "m3"),  # gas volume -> kWh through the heating value
        rec("G1", "2024-02", 1.0, "therms"),  # ambiguous label settled by the alias
        rec("W1", "2024-01", 2000.0, "L"),
        rec("W1", "2024-02", 5.0, "furlongs"),  # not convertible: noted, not a crash
        rec("ZZ", "2024-01", 1.0, "kWh"),  # a meter the export does not know
    ]
    t = parse_provider_totals(check, records, meters=METERS, assets=ASSETS, profile=p)
    assert list(t.columns) == list(PROVIDER_TOTALS_COLUMNS)
    got = dict(zip(t["meter_id"] + " " + t["raw_unit"].astype(str), t["provider"], strict=True))
    assert got["E1 Wh"] == pytest.approx(1.5)
    assert got["E1 MWh"] == pytest.approx(2500.0)
    assert got["G1 m3"] == pytest.approx(100 * 1.02264 * 39.5 / 3.6, rel=1e-12)
    assert got["G1 therms"] == pytest.approx(29.300111, rel=1e-6)
    assert got["W1 L"] == pytest.approx(2.0)
    assert np.isnan(got["W1 furlongs"]) and np.isnan(got["ZZ kWh"])
    notes = dict(zip(t["meter_id"] + " " + t["raw_unit"].astype(str), t["note"], strict=True))
    assert "furlongs" in notes["W1 furlongs"] and notes["ZZ kWh"] == "meter not in the export"
    assert set(t.loc[t["meter_id"] == "W1", "unit"]) == {"m³"}


def test_months_are_local_to_the_meters_site() -> None:
    (check,) = read_reconcile_checks(profile(CHECK))
    records = [rec("E1", "2024-03", 1.0, "kWh"), rec("NY", "2024-03", 1.0, "kWh")]
    t = parse_provider_totals(check, records, meters=METERS, assets=ASSETS).set_index("meter_id")
    # London: GMT until 31 March; New York: EST (-5) on 1 March, EDT (-4) on 1 April
    assert t.loc["E1", "start"] == pd.Timestamp("2024-03-01T00:00Z")
    assert t.loc["E1", "end"] == pd.Timestamp("2024-03-31T23:00Z")
    assert t.loc["NY", "start"] == pd.Timestamp("2024-03-01T05:00Z")
    assert t.loc["NY", "end"] == pd.Timestamp("2024-04-01T04:00Z")


def test_start_end_periods_inclusive_dates() -> None:
    check_cfg = {
        "resource": "summaries",
        "unit": "kWh",
        "end_inclusive": True,
        "fields": {"meter_id": "m", "start": "from", "end": "to", "total": "v"},
    }
    (check,) = read_reconcile_checks(profile(check_cfg))
    records = [{"m": "NY", "from": "2024-01-10", "to": "2024-02-09", "v": 30.0}]
    t = parse_provider_totals(check, records, meters=METERS, assets=ASSETS)
    assert t.loc[0, "start"] == pd.Timestamp("2024-01-10T05:00Z")
    assert t.loc[0, "end"] == pd.Timestamp("2024-02-10T05:00Z")


def test_reconcile_totals_tolerance_and_proration() -> None:
    (check,) = read_reconcile_checks(profile({**CHECK, "tolerance": 1e-3}))
    usage = coerce_frame(
        pd.DataFrame(
            {
                "meter_id": ["E1", "E1", "E1"],
                "start": pd.to_datetime(["2024-01-01", "2024-02-01", "2024-02-20"], utc=True),
                "end": pd.to_datetime(["2024-02-01", "2024-02-20", "2024-03-11"], utc=True),
                "consumption": [100.0, 190.0, 180.0],
                "unit": "kWh",
            }
        ),
        "usage",
    )
    records = [
        rec("E1", "2024-01", 100.05, "kWh"),  # 5e-4 relative: within 1e-3
        rec(
            "E1", "2024-02", 290.0, "kWh"
        ),  # exported 190 + 180 x 10/20 (the straddling row's share)
        rec("E1", "2024-03", 100.0, "kWh"),  # exported 90: beyond
        rec("E1", "2024-04", 0.0, "kWh"),  # nothing either side: within
    ]
    totals = parse_provider_totals(check, records, meters=METERS, assets=ASSETS)
    r = reconcile_totals(usage, totals, checks=[check])
    assert r["exported"].tolist() == pytest.approx([100.0, 280.0, 90.0, 0.0])
    assert r["within_tolerance"].tolist() == [True, False, False, True]
    assert r["difference"].tolist() == pytest.approx([-0.05, -10.0, -10.0, 0.0])
    assert r["relative"].iloc[2] == pytest.approx(0.1)
    assert (r["tolerance"] == 1e-3).all()
