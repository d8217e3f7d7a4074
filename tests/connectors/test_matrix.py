"""Every auth method x every pagination style against the sandbox, with faults injected."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from scaler_workbench.clock import FakeClock
from scaler_workbench.connectors import fetch_resources
from scaler_workbench.sandbox import Sandbox
from scaler_workbench.sandbox.generate import get_sandbox_data

from .conftest import (
    AUTH_CASES,
    PAGINATOR_CASES,
    expected_ids,
    sandbox_profile,
    sandbox_resources,
)

DATA_ARGS = (0, 2, 3, "2024-01-01", "2024-02-01")  # seed, sites, meters/site, start, end


def _run_combination(auth: str, pager: str, monkeypatch: pytest.MonkeyPatch) -> tuple[bool, str]:
    sb_auth, auth_table = AUTH_CASES[auth]
    sb_pager, pager_table = PAGINATOR_CASES[pager]
    clock = FakeClock()
    data = get_sandbox_data(*DATA_ARGS)
    with Sandbox(
        data=data,
        clock=clock,
        every_nth_429=5,
        every_nth_503=7,
        lifetime=120,
        **sb_auth,
        **sb_pager,
    ) as sb:
        for k, v in sb.env().items():
            monkeypatch.setenv(k, v)
        if sb.auth == "oauth2_authorization_code":
            monkeypatch.setenv("SANDBOX_REFRESH_TOKEN", sb.issue_refresh_token())
        profile = sandbox_profile(
            sb, auth=auth_table, paginator=pager_table, resources=sandbox_resources(pager_table)
        )
        results = fetch_resources(profile, since="2024-01-01", until="2024-02-02", clock=clock)
        want = expected_ids(sb)
        faults = Counter(r.status for r in sb.request_log)
    problems = []
    for name, ids in want.items():
        got = Counter(r["id"] for r in results[name].records)
        if set(got) != ids or max(got.values(), default=1) != 1:
            problems.append(
                f"{name}: {len(got)} distinct of {len(ids)}, max repeat {max(got.values(), default=0)}"
            )
        if not results[name].report.complete:
            problems.append(results[name].report.summary())
    if not (faults[429] and faults[503]):
        problems.append(f"faults not exercised: {dict(faults)}")
    if any(s > 30 for s in clock.sleeps):
        problems.append("a wait above the cap")
    return not problems, "; ".join(problems)


def test_every_auth_by_every_paginator_fetches_everything_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.perf_counter()
    outcomes: dict[tuple[str, str], tuple[bool, str]] = {}
    for auth in AUTH_CASES:
        for pager in PAGINATOR_CASES:
            outcomes[auth, pager] = _run_combination(auth, pager, monkeypatch)
    ok = sum(1 for good, _ in outcomes.values() if good)
    total = len(outcomes)
    with capsys.disabled():
        print(
            f"\n{ok}/{total} combinations (auth x pagination, 429 every 5th, 503 every 7th) "
            f"in {time.perf_counter() - started:.1f}s"
        )
    failures: dict[Any, str] = {k: why for k, (good, why) in outcomes.items() if not good}
    assert ok == total == len(AUTH_CASES) * len(PAGINATOR_CASES), failures
