"""Issue 15 item 10: the zone a provider states for a site is checked against the profile's.

A ``stated_timezone`` asset field (the provider's ``timeZone``) is compared per asset, by UTC
offsets over the years of that asset's data, with the zone its rows are cut in; a mismatch is a
:class:`TimezoneMismatchError` (a profile error, exit 2) before anything is aggregated.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from scaler_workbench._zones import zones_agree
from scaler_workbench.cli import EXIT_USAGE, exit_code_for
from scaler_workbench.exceptions import ProfileError, TimezoneMismatchError
from scaler_workbench.pipeline import run_pipeline
from scaler_workbench.profile import Profile


def _profile(zone: str, asset_fields: dict[str, Any], **value_maps: Any) -> Profile:
    assets: dict[str, Any] = {
        "resource": "sites",
        "fields": {"asset_id": "id", "name": "name", **asset_fields},
    }
    if value_maps:
        assets["value_maps"] = value_maps
    return Profile.from_dict(
        {
            "provider": {"name": "zones", "timezone": zone},
            "environments": {"x": {"base_url": "http://127.0.0.1"}},
            "mapping": {
                "assets": assets,
                "meters": {
                    "resource": "meters",
                    "fields": {
                        "meter_id": "id",
                        "asset_id": "site",
                        "raw_unit": {"const": "kWh"},
                        "meter_type": {"const": "Energy"},
                        "meter_subtype": {"const": "Off-site Electricity"},
                    },
                },
                "usage": {
                    "hourly": {
                        "resource": "values",
                        "kind": "intervals",
                        "aggregate": "month",
                        "duration": "1h",
                        "fields": {"meter_id": "meter", "start": "at", "consumption": "kwh"},
                    }
                },
            },
        }
    )


def _raw(*sites: tuple[str, str]) -> dict[str, list[dict[str, Any]]]:
    """One meter per site, 1 kWh an hour over the last day of March 2024 and first of April
    (UTC): a site's month split shows which zone cut it."""
    hours = pd.date_range("2024-03-31T00:00Z", "2024-04-02T00:00Z", freq="h", inclusive="left")
    return {
        "sites": [{"id": s, "name": s, "timeZone": z} for s, z in sites],
        "meters": [{"id": f"{s}-m", "site": s} for s, _ in sites],
        "values": [
            {"meter": f"{s}-m", "at": t.strftime("%Y-%m-%dT%H:%M:%SZ"), "kwh": 1.0}
            for s, _ in sites
            for t in hours
        ],
    }


def _march(tables: Any, meter: str) -> float:
    u = tables.usage[tables.usage["meter_id"] == meter]
    starts = pd.DatetimeIndex(u["start"]).tz_convert(str(u["timezone"].iloc[0]))
    return float(u["consumption"][(starts.month == 3)].sum())


def test_stated_zone_disagreeing_with_the_provider_zone_is_an_error() -> None:
    """The profile says New York for every site; the provider says Paris for one: an error
    before aggregation, naming the asset, both zones and the fix (exit 2)."""
    raw = _raw(("NYC", "America/New_York"), ("PAR", "Europe/Paris"))
    profile = _profile("America/New_York", {"stated_timezone": "timeZone"})
    with pytest.raises(TimezoneMismatchError) as info:
        run_pipeline(profile, raw)
    exc = info.value
    assert isinstance(exc, ProfileError) and exit_code_for(exc) == EXIT_USAGE
    assert (exc.asset, exc.zone, exc.stated, exc.assets) == (
        "PAR",
        "America/New_York",
        "Europe/Paris",
        ["PAR"],
    )
    text = str(exc)
    assert "asset 'PAR'" in text and "Europe/Paris" in text and "America/New_York" in text
    assert "NYC" not in text and "2024" in text
    assert "[mapping.assets.fields] timezone" in text and "[provider] timezone" in text


def test_stated_zone_with_the_same_clock_passes_whatever_its_name() -> None:
    """Compared by offsets over the data's years: Berlin's and CET's clock is Paris's."""
    raw = _raw(("PAR", "Europe/Berlin"), ("LYS", "CET"))
    tables = run_pipeline(_profile("Europe/Paris", {"stated_timezone": "timeZone"}), raw)
    assert tables.quarantine.empty
    # cut in Paris: 31 March 00:00 UTC is 02:00 local (CEST), so March holds 22 hours
    assert _march(tables, "PAR-m") == _march(tables, "LYS-m") == 22.0
    assert zones_agree("Europe/Paris", "Europe/Berlin", [2024])
    assert not zones_agree("Europe/London", "Europe/Lisbon", [1995])  # Lisbon was CET then
    assert zones_agree("Europe/London", "Europe/Lisbon", [2024])


def test_asset_zone_from_a_record_field_takes_the_provider_zone() -> None:
    """The asset's zone read from the record (``timezone = "timeZone"``) cuts each site's
    months in its own zone, and agrees with the statement by construction."""
    raw = _raw(("NYC", "America/New_York"), ("PAR", "Europe/Paris"))
    profile = _profile("America/New_York", {"timezone": "timeZone", "stated_timezone": "timeZone"})
    tables = run_pipeline(profile, raw)
    assert tables.quarantine.empty
    zones = dict(zip(tables.assets["asset_id"], tables.assets["timezone"].astype(str), strict=True))
    assert zones == {"NYC": "America/New_York", "PAR": "Europe/Paris"}
    assert _march(tables, "PAR-m") == 22.0  # 31 March 00:00 UTC = 02:00 CEST
    assert _march(tables, "NYC-m") == 28.0  # 31 March 00:00 UTC = 20:00 EDT on the 30th


def test_stated_zone_against_a_constant_site_zone_and_an_unknown_name() -> None:
    """A constant ``[mapping.assets.fields] timezone`` is the zone compared; a name that is
    no IANA zone is an error too, unless a value map turns it into one."""
    raw = _raw(("PAR", "Romance Standard Time"))
    const = {"timezone": {"const": "Europe/London"}, "stated_timezone": "timeZone"}
    with pytest.raises(TimezoneMismatchError, match="not an IANA zone") as info:
        run_pipeline(_profile("UTC", const), raw)
    assert info.value.stated == "Romance Standard Time" and info.value.zone == "Europe/London"
    mapped = _profile("UTC", const, stated_timezone={"Romance Standard Time": "Europe/Paris"})
    with pytest.raises(TimezoneMismatchError, match=r"its \[mapping.assets.fields\] timezone"):
        run_pipeline(mapped, raw)
    fixed = _profile(
        "UTC",
        {"timezone": {"const": "Europe/Paris"}, "stated_timezone": "timeZone"},
        stated_timezone={"Romance Standard Time": "Europe/Paris"},
    )
    assert _march(run_pipeline(fixed, raw), "PAR-m") == 22.0


def test_stated_zones_are_checked_on_the_streamed_path_too() -> None:
    """A long interval source is streamed in chunks of whole meters: each chunk is checked
    before it is aggregated, with the same error and the same result as the whole path."""
    raw = _raw(("NYC", "America/New_York"), ("PAR", "Europe/Paris"), ("BER", "Europe/Berlin"))
    bad = _profile("Europe/Paris", {"stated_timezone": "timeZone"})
    with pytest.raises(TimezoneMismatchError) as info:
        run_pipeline(bad, raw, chunk_records=10)
    assert info.value.assets == ["NYC"] and info.value.zone == "Europe/Paris"
    good = _profile("UTC", {"timezone": "timeZone", "stated_timezone": "timeZone"})
    streamed = run_pipeline(good, raw, chunk_records=10)
    whole = run_pipeline(good, raw)
    pd.testing.assert_frame_equal(streamed.usage, whole.usage)
    assert _march(streamed, "BER-m") == 22.0
