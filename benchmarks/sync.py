"""Sync benchmark: interval records per second through real HTTP against the sandbox (loopback).

The shipped sandbox profile (``mappings/sandbox/profile.toml``) fetches ``sites`` -> ``meters``
-> ``intervals`` and ``solar`` (the interval meters, the solar ones apart; month chunks, offset
pages of ``[paginator] limit``)
from a :class:`scaler_workbench.sandbox.Sandbox` on 127.0.0.1. We count what the server saw
(``request_log``) and compare it with the minimum the plan allows, computed independently from
the sandbox's generated arrays (never from HTTP):

* sites: ``max(1, ceil(sites / page))``; meters: per site ``max(1, ceil(meters / page))``;
* intervals: per interval meter and per local calendar month of the range,
  ``max(1, ceil(records in that month / page))`` (an empty month still needs one request to
  learn that it is empty), where ``page = min(paginator limit, server max_page_size)``.

The profile has no date-span limit beyond its month chunks, and the sandbox none by default.
"""

from __future__ import annotations

import math
import os
import pickle
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["minimum_requests", "run_sync_benchmark", "sync_worker"]

ROOT = Path(__file__).resolve().parent.parent
PROFILE = ROOT / "mappings" / "sandbox" / "profile.toml"


def minimum_requests(data: Any, *, page: int, start: str, end: str) -> dict[str, int]:
    """Fewest requests the sandbox profile's plan allows for ``data`` between ``start``/``end``.

    Parameters
    ----------
    data : SandboxData
        The sandbox's portfolio (its arrays are the ground truth).
    page : int
        Records per page: the profile's limit clamped to the server's maximum.
    start, end : str
        Local dates ``YYYY-MM-DD`` (end exclusive), whole months.
    """
    months = np.arange(np.datetime64(start, "M"), np.datetime64(end, "M")).astype(np.int64)
    sites = max(1, math.ceil(len(data.sites) / page))
    per_site = Counter(data.meter_site.values())
    meters = sum(max(1, math.ceil(per_site.get(s["id"], 0) / page)) for s in data.sites)
    intervals = 0
    records = 0
    for m in data.meters:
        if m.get("kind") != "interval":
            continue
        series = data.series[m["id"]]
        grid = data.grids[data.site_tz[data.meter_site[m["id"]]]]
        month_of = grid.month[series.t_idx]
        counts = np.array([(month_of == mo).sum() for mo in months])
        records += int(counts.sum())
        intervals += int(np.maximum(1, np.ceil(counts / page)).sum())
    return {
        "sites": sites,
        "meters": meters,
        "intervals": intervals,
        "total": sites + meters + intervals,
        "interval_records": records,
    }


def run_sync_benchmark(
    *, sites: int = 12, meters_per_site: int = 3, start: str = "2024-01-01", end: str = "2025-01-01"
) -> dict[str, Any]:
    """Fetch intervals (and their parents) from a fresh sandbox; time it and count requests."""
    from scaler_workbench.connectors import fetch_resources
    from scaler_workbench.profile import read_profile
    from scaler_workbench.sandbox import Sandbox

    profile = read_profile(PROFILE)
    limit = int(profile.section("paginator").get("limit", 100))
    # every resource of the intervals endpoint: the profile keeps the solar meters apart
    # (`solar`, their generation is production), the same requests split in two resources
    names = [n for n, r in profile.resources.items() if str(r.get("path")).endswith("/intervals")]
    with Sandbox(seed=0, sites=sites, meters_per_site=meters_per_site, start=start, end=end) as sb:
        page = min(limit, sb.max_page_size)
        minimum = minimum_requests(sb.data, page=page, start=start, end=end)
        saved = {k: os.environ.get(k) for k in sb.env()}
        os.environ.update(sb.env())
        try:
            sb.clear_log()
            t = time.perf_counter()
            results = fetch_resources(profile, resources=names, since=start, until=end)
            seconds = time.perf_counter() - t
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        log = list(sb.request_log)
    by_path = Counter(
        "intervals" if "/intervals" in r.path else ("meters" if "/meters" in r.path else "sites")
        for r in log
    )
    records = sum(len(results[n].records) for n in names)
    return {
        "records": records,
        "expected_records": minimum["interval_records"],
        "seconds": seconds,
        "requests": len(log),
        "requests_by_resource": dict(by_path),
        "minimum": minimum["total"],
        "minimum_by_resource": {k: minimum[k] for k in ("sites", "meters", "intervals")},
        "page": page,
        "sites": sites,
        "meters_per_site": meters_per_site,
        "range": f"{start}..{end}",
        "client_requests_sent": sum(results[n].report.requests_sent for n in names),
    }


def sync_worker(sites: int, result_file: Path, *, smoke: bool = False) -> None:
    """Run :func:`run_sync_benchmark` and pickle its numbers (or why it is n/a)."""
    payload: dict[str, Any]
    try:
        import scaler_workbench.connectors as connectors
        import scaler_workbench.sandbox as sandbox

        if not hasattr(connectors, "fetch_resources") or not hasattr(sandbox, "Sandbox"):
            raise ImportError("fetch_resources or Sandbox missing")
    except ImportError as exc:
        payload = {"error": f"not available yet ({exc})"}
    else:
        try:
            end = "2024-02-01" if smoke else "2025-01-01"
            payload = run_sync_benchmark(sites=sites, start="2024-01-01", end=end)
        except Exception as exc:  # the path under test failed: report it, do not crash the run
            payload = {"error": f"{type(exc).__name__}: {exc}"}
    with open(result_file, "wb") as fh:
        pickle.dump(payload, fh)
