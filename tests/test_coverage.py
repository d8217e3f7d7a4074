"""Usage by local calendar month: the split, monthly totals and the coverage matrix."""

from __future__ import annotations

import pandas as pd
import pytest

from scaler_workbench.coverage import (
    coverage_matrix,
    monthly_totals,
    site_timezones,
    split_by_month,
)
from scaler_workbench.exceptions import SchemaError
from scaler_workbench.schema import Tables, coerce_frame


def _usage(
    rows: list[tuple[str, str, str, float]], tz: str | None = "Europe/London"
) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["meter_id", "start", "end", "consumption"])
    frame["unit"] = "kWh"
    frame["timezone"] = tz
    return coerce_frame(frame, "usage")


def test_a_bill_across_months_is_split_by_local_duration_and_conserved() -> None:
    # 10 local days in January, 21 in February (London is on GMT: UTC == local)
    usage = _usage([("M1", "2024-01-22T00:00Z", "2024-02-22T00:00Z", 310.0)])
    totals = monthly_totals(usage).set_index("month")["consumption"]
    assert totals["2024-01"] == pytest.approx(100.0, rel=1e-12)
    assert totals["2024-02"] == pytest.approx(210.0, rel=1e-12)
    assert totals.sum() == pytest.approx(310.0, rel=1e-12)


def test_months_are_local_not_utc() -> None:
    # 2024-04-30T23:30Z is already May in London (BST)
    usage = _usage([("M1", "2024-04-30T23:00Z", "2024-05-31T23:00Z", 5.0)])
    split = split_by_month(usage)
    assert split["month"].tolist() == ["2024-05"]
    assert split["fraction"].tolist() == [1.0]


def test_span_meter_starts_each_meter_at_its_first_data() -> None:
    usage = _usage(
        [
            ("M1", "2024-01-01T00:00Z", "2024-02-01T00:00Z", 1.0),
            ("M2", "2024-03-01T00:00Z", "2024-03-31T23:00Z", 1.0),
        ]
    )
    everyone = coverage_matrix(usage)
    own = coverage_matrix(usage, span="meter")
    assert len(everyone) == 6  # 2 meters x Jan..Mar
    m2_all = everyone[everyone["meter_id"] == "M2"]["status"].astype(str).tolist()
    assert m2_all == ["missing", "missing", "actual"]
    m2_own = own[own["meter_id"] == "M2"]["status"].astype(str).tolist()
    assert m2_own == ["actual"]
    m1_own = own[own["meter_id"] == "M1"]["status"].astype(str).tolist()
    assert m1_own == ["actual", "missing", "missing"]  # stopped reporting


def test_site_zone_comes_from_the_meters_asset_when_rows_have_none() -> None:
    t = Tables()
    t.assets = coerce_frame(
        pd.DataFrame({"asset_id": ["A"], "name": ["a"], "timezone": ["America/New_York"]}), "assets"
    )
    t.meters = coerce_frame(
        pd.DataFrame(
            {"meter_id": ["M1"], "asset_id": ["A"], "meter_type": ["Energy"], "unit": ["kWh"]}
        ),
        "meters",
    )
    usage = _usage([("M1", "2024-02-01T05:00Z", "2024-03-01T05:00Z", 2.0)], tz=None)
    assert site_timezones(usage, t, "UTC").tolist() == ["America/New_York"]
    assert coverage_matrix(usage, tables=t)["status"].astype(str).tolist() == ["actual"]
    # without tables the UTC default puts 5 hours into March
    assert coverage_matrix(usage, timezone="UTC")["month"].tolist() == ["2024-02", "2024-03"]


def test_bad_input_is_a_schema_error() -> None:
    with pytest.raises(SchemaError):
        coverage_matrix(pd.DataFrame({"meter_id": ["M1"]}))
    with pytest.raises(ValueError, match="span"):
        coverage_matrix(_usage([]), span="everything")  # type: ignore[arg-type]
