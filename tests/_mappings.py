"""Mapping sections shared by the transform tests (plain dicts, as a profile's [mapping] has them)."""

from __future__ import annotations

__all__ = ["METERS"]

#: Meters from a ``meters`` resource: id, site, unit label; every meter is an Energy meter.
METERS = {
    "resource": "meters",
    "fields": {
        "meter_id": "id",
        "asset_id": "site",
        "meter_type": {"const": "Energy"},
        "raw_unit": "unit",
    },
}
