"""The sandbox provider over real loopback HTTP, and its ground truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import requests

from scaler_workbench.sandbox import Sandbox, SandboxData
from scaler_workbench.sandbox.generate import IntervalSeries


def _session(sb: Sandbox) -> requests.Session:
    s = requests.Session()
    s.headers["X-API-Key"] = sb.credentials.api_key
    return s


def test_default_api_key_offset_walks_everything(sandbox: Sandbox) -> None:
    s = _session(sandbox)
    sites = s.get(sandbox.url + "/sites").json()
    assert sites["total"] == 6
    ids = []
    offset = 0
    while True:
        body = s.get(
            sandbox.url + "/meters/M0001/intervals", params={"offset": offset, "limit": 700}
        ).json()
        ids += [r["id"] for r in body["data"]]
        offset += len(body["data"])
        if offset >= body["total"]:
            break
    series = sandbox.data.series["M0001"]
    assert isinstance(series, IntervalSeries)
    assert len(ids) == len(set(ids)) == series.t_idx.size


def test_ground_truth_matches_intervals(sandbox: Sandbox) -> None:
    truth = sandbox.ground_truth()
    assert set(truth.columns) == {"meter_id", "month", "consumption", "unit"}
    assert isinstance(truth, pd.DataFrame)
    data: SandboxData = sandbox.data
    series = data.series["M0001"]
    assert isinstance(series, IntervalSeries)
    jan = truth.query("meter_id == 'M0001' and month == '2024-01'")["consumption"].item()
    grid = data.grid_of("M0001")
    months = grid.month[series.t_idx]
    assert np.isclose(jan, series.value[months == (2024 - 1970) * 12].sum())
