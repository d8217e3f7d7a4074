"""The pipeline without validation never pays the great-expectations import (seconds)."""

from __future__ import annotations

import subprocess
import sys


def test_run_pipeline_does_not_import_great_expectations():
    code = (
        "import sys\n"
        "from scaler_workbench.profile import Profile\n"
        "from scaler_workbench.pipeline import run_pipeline\n"
        "p = Profile.from_dict({'provider': {'name': 't', 'timezone': 'UTC'},"
        " 'environments': {'x': {'base_url': 'http://127.0.0.1'}}})\n"
        "m = {'meters': {'resource': 'meters', 'fields': {'meter_id': 'id', 'asset_id': 's',"
        " 'meter_type': {'const': 'Energy'}, 'raw_unit': {'const': 'kWh'}}},"
        " 'usage': {'u': {'resource': 'u', 'aggregate': 'month', 'duration': '30min',"
        " 'fields': {'meter_id': 'm', 'start': 't', 'consumption': 'v'}}}}\n"
        "raw = {'meters': [{'id': 'M', 's': 'S'}],"
        " 'u': [{'m': 'M', 't': '2024-01-01T00:00:00Z', 'v': 1.5}]}\n"
        "out = run_pipeline(p, raw, mapping=m)\n"
        "assert out.usage['consumption'].tolist() == [1.5], out.usage\n"
        "print(sorted(k for k in sys.modules if k.split('.')[0] == 'great_expectations'))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == "[]"


def test_transform_run_pipeline_is_a_deprecated_alias_of_pipeline_run_pipeline():
    """The old path keeps working for one release: it warns, names the new home and returns
    exactly what ``pipeline.run_pipeline`` returns."""
    import pandas as pd
    import pytest

    import scaler_workbench.transform as transform
    from scaler_workbench import pipeline
    from scaler_workbench.profile import Profile

    profile = Profile.from_dict(
        {
            "provider": {"name": "t", "timezone": "Europe/London"},
            "environments": {"x": {"base_url": "http://127.0.0.1"}},
            "mapping": {
                "meters": {
                    "resource": "meters",
                    "fields": {
                        "meter_id": "id",
                        "asset_id": "s",
                        "meter_type": {"const": "Energy"},
                        "raw_unit": "unit",
                    },
                },
                "usage": {
                    "u": {
                        "resource": "u",
                        "aggregate": "month",
                        "duration": "30min",
                        "fields": {"meter_id": "m", "start": "t", "consumption": "v"},
                    }
                },
            },
        }
    )
    raw = {
        "meters": [{"id": "M", "s": "S", "unit": "Wh"}, {"id": "N", "s": "S", "unit": "therms"}],
        "u": [
            {"m": "M", "t": "2024-01-31T23:30:00Z", "v": 1500.0},
            {"m": "M", "t": "2024-02-01T00:00:00Z", "v": 500.0},
            {"m": "N", "t": "2024-02-01T00:00:00Z", "v": 1.0},  # ambiguous unit: quarantined
            {"m": "M", "t": "not a time", "v": 1.0},  # unmappable: quarantined
        ],
    }
    with pytest.warns(DeprecationWarning, match=r"moved to scaler_workbench\.pipeline"):
        old = transform.run_pipeline
    assert old is pipeline.run_pipeline
    with pytest.warns(DeprecationWarning, match="STREAM_RECORDS"):
        assert transform.STREAM_RECORDS == pipeline.STREAM_RECORDS
    got, expected = old(profile, raw), pipeline.run_pipeline(profile, raw)
    for name in ("assets", "meters", "usage", "readings", "quarantine"):
        pd.testing.assert_frame_equal(getattr(got, name), getattr(expected, name), obj=name)
    assert got.usage["consumption"].tolist() == [1.5, 0.5]  # [kWh] per local month
    assert sorted(got.quarantine["stage"]) == ["transform", "units", "units"]
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        transform.no_such_name  # noqa: B018
