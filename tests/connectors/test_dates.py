"""Date windows: calendar months, day chunks across DST, inclusive ends, formats, learning."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from scaler_workbench.connectors.dates import DateRange, SpanLearner, make_date_range, split_range
from scaler_workbench.exceptions import ProfileError

LON = ZoneInfo("Europe/London")
NOW = datetime(2024, 6, 15, 12, tzinfo=UTC)


def _d(*args: int) -> datetime:
    return datetime(*args, tzinfo=LON)


def test_month_chunks_follow_calendar_including_february_and_partial_months() -> None:
    windows = split_range(_d(2024, 1, 15), _d(2024, 4, 10), chunk="month")
    assert [(s.date().isoformat(), e.date().isoformat()) for s, e in windows] == [
        ("2024-01-15", "2024-02-01"),
        ("2024-02-01", "2024-03-01"),
        ("2024-03-01", "2024-04-01"),
        ("2024-04-01", "2024-04-10"),
    ]
    assert split_range(_d(2024, 12, 1), _d(2025, 1, 1), chunk="month")[-1][1] == _d(2025, 1, 1)
    assert split_range(_d(2024, 1, 1), _d(2024, 1, 1)) == []


def test_day_chunks_keep_local_midnight_across_dst() -> None:
    windows = split_range(_d(2024, 3, 29), _d(2024, 4, 2), chunk=1)
    assert all(s.hour == 0 and e.hour == 0 for s, e in windows)
    lengths = [(e.astimezone(UTC) - s.astimezone(UTC)).total_seconds() / 3600 for s, e in windows]
    assert lengths == [24, 24, 23, 24]  # 31 March 2024 is 23 hours in London
    autumn = split_range(_d(2024, 10, 27), _d(2024, 10, 28), chunk=1)
    assert (
        autumn[0][1].astimezone(UTC) - autumn[0][0].astimezone(UTC)
    ).total_seconds() == 25 * 3600


def test_max_days_cuts_months() -> None:
    windows = split_range(_d(2024, 1, 1), _d(2024, 2, 1), chunk="month", max_days=10)
    assert [s.day for s, _ in windows] == [1, 11, 21, 31]


def test_inclusive_end_and_formats() -> None:
    window = (_d(2024, 1, 1), _d(2024, 2, 1))
    assert DateRange(format="date").params(window) == {"from": "2024-01-01", "to": "2024-02-01"}
    assert DateRange(format="date", end_inclusive=True).params(window)["to"] == "2024-01-31"
    dt = DateRange(format="datetime", end_inclusive=True, timezone="Europe/London")
    assert dt.params(window)["to"] == "2024-01-31T23:59:59+00:00"
    summer = (_d(2024, 7, 1), _d(2024, 8, 1))
    assert DateRange(format="datetime").params(summer)["from"] == "2024-07-01T00:00:00+01:00"
    assert DateRange(format="datetime_utc").params(summer)["from"] == "2024-06-30T23:00:00Z"
    assert DateRange(format="epoch").params(window) == {"from": 1704067200, "to": 1706745600}
    assert DateRange(format="epoch_ms", end_param="").params(window) == {"from": 1704067200000}
    assert DateRange(format="%d/%m/%Y").params(window)["to"] == "01/02/2024"


def test_resolve_defaults_and_date_rounding() -> None:
    dr = DateRange(timezone="Europe/London", since="2024-06-01")
    start, end = dr.resolve(None, None, now=NOW)
    assert start == _d(2024, 6, 1) and end == _d(2024, 6, 16)  # through the end of today
    start, end = dr.resolve("2024-06-03T10:00", "2024-06-05T08:00", now=NOW)
    assert (start, end) == (_d(2024, 6, 3), _d(2024, 6, 6))  # date format: whole days
    with pytest.raises(ProfileError, match="needs a start"):
        DateRange().resolve(None, None, now=NOW)
    with pytest.raises(ProfileError, match="not an ISO date"):
        dr.resolve("last tuesday", None, now=NOW)


def test_bad_date_range_options() -> None:
    with pytest.raises(ProfileError, match="format"):
        make_date_range({"format": "unix"}, key="resources.x.date_range")
    with pytest.raises(ProfileError, match="chunk") as info:
        make_date_range({"chunk": "week"}, key="resources.x.date_range")
    assert info.value.key == "resources.x.date_range.chunk"
    with pytest.raises(ProfileError):
        make_date_range({"timezone": "Mars/Olympus"})
    assert make_date_range({"chunk": "7"}).chunk == 7  # type: ignore[union-attr]
    assert make_date_range(None) is None


def test_too_large_detection_and_span_learner() -> None:
    dr = make_date_range({"too_large": {"status": 422, "match": "span exceeds"}})
    assert dr is not None
    assert dr.is_too_large(422, '{"error": "span exceeds 7 days"}')
    assert not dr.is_too_large(400, "span exceeds 7 days")
    assert DateRange().is_too_large(400, '{"message": "range too large: max 7 days"}')
    learner = SpanLearner()
    halves = learner.halve((_d(2024, 1, 1), _d(2024, 2, 1)))
    assert learner.max_days == 16 and halves[0][1] == _d(2024, 1, 17)
    learner.halve(halves[0])
    assert learner.max_days == 8
    with pytest.raises(ValueError):
        learner.halve((_d(2024, 1, 1), _d(2024, 1, 2)))
