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
