"""fetch_resources end to end: tokens, loop guard, completeness, chunks, learned span, quota."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from _fakes import Reply, Request

from scaler_workbench.clock import FakeClock
from scaler_workbench.connectors import Client, FetchResult, fetch_resources
from scaler_workbench.exceptions import PaginationError, ProfileError, QuotaExhaustedError

from .conftest import AUTH_CASES, expected_ids, fake_profile, sandbox_profile, sandbox_resources

SMALL = {"sites": 2, "meters_per_site": 3, "start": "2024-01-01", "end": "2024-03-01"}


def _ids(result: FetchResult) -> set[str]:
    return {r["id"] for r in result.records}


def test_token_expiring_mid_sync_is_refreshed_and_rotation_persists(
    make_sandbox: Any, sandbox_env: Any, tmp_path: Path
) -> None:
    clock = FakeClock()
    sb = make_sandbox(**SMALL, auth="oauth2_authorization_code", token_max_uses=4, clock=clock)
    sandbox_env(sb)
    token_file = tmp_path / "tokens" / "sandbox.json"
    profile = sandbox_profile(sb, auth=AUTH_CASES["oauth2_auth_code"][1], token_file=token_file)
    client = Client(profile, clock=clock)
    first = fetch_resources(profile, since="2024-01-01", until="2024-03-02", client=client)
    assert _ids(first["intervals"]) == expected_ids(sb)["intervals"]
    statuses = [r.status for r in sb.request_log]
    assert statuses.count(401) >= 2  # expired several times mid-sync, each time renewed
    assert client.auth.token_requests == statuses.count(401) + 1
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    saved = token_file.read_text()
    assert os.environ["SANDBOX_REFRESH_TOKEN"] not in saved  # rotated away from the first one
    # the next run starts from the token file: the env token was rotated out and is now invalid
    second = fetch_resources(profile, resources=["sites"], clock=FakeClock())
    assert _ids(second["sites"]) == expected_ids(sb)["sites"]
    assert token_file.read_text() != saved


def test_loop_guard_stops_a_repeating_cursor(serve: Any) -> None:
    pages = {"": ("a", [1, 2]), "a": ("b", [3]), "b": ("a", [4])}

    def handler(req: Request) -> Reply:
        nxt, ids = pages[req.query.get("cursor", "")]
        return Reply(200, {"items": [{"id": i} for i in ids], "next": nxt})

    server = serve(handler)
    profile = fake_profile(
        server.url,
        resources={
            "r": {
                "path": "/r",
                "record_path": "items",
                "paginator": {"type": "cursor", "cursor_path": "next"},
            }
        },
    )
    with pytest.raises(PaginationError, match="second time"):
        fetch_resources(profile, clock=FakeClock())
    assert len(server.requests) == 3


def test_completeness_report_flags_total_mismatch_and_duplicates(serve: Any) -> None:
    rows = [{"id": i} for i in range(8)]

    def handler(req: Request) -> Reply:
        offset, limit = int(req.query["offset"]), int(req.query["limit"])
        start = max(0, offset - 1)  # the provider's pages overlap by one record
        return Reply(200, {"data": rows[start : offset + limit], "total": 10})

    server = serve(handler)
    profile = fake_profile(
        server.url,
        resources={"r": {"path": "/r", "record_path": "data", "primary_key": "id"}},
        paginator={"type": "offset", "limit": 4, "total_path": "total"},
    )
    report = fetch_resources(profile, clock=FakeClock())["r"].report
    assert not report.complete
    assert report.reported_total == 10 and report.records == 10
    assert report.duplicates == 2 and report.duplicate_ids == ["3", "7"]
    assert report.pages == 3 and report.requests_sent == 3
    assert "INCOMPLETE" in report.summary()
    short = serve(lambda req: Reply(200, {"data": rows, "total": 10}))
    profile2 = fake_profile(
        short.url,
        resources={
            "r": {"path": "/r", "record_path": "data", "primary_key": "id", "paginator": "none"}
        },
        paginator={"type": "none", "total_path": "total"},
    )
    profile2.data["resources"]["r"]["paginator"] = {"type": "none", "total_path": "total"}
    report2 = fetch_resources(profile2, clock=FakeClock())["r"].report
    assert report2.total_mismatches == [
        {"parent": None, "window": None, "expected": 10, "fetched": 8}
    ]
    assert not report2.complete


def test_failed_paths_are_reported_and_the_rest_is_fetched(
    make_sandbox: Any, sandbox_env: Any
) -> None:
    sb = make_sandbox(**SMALL, fail_paths={r"/meters/M0001/": 500})
    sandbox_env(sb)
    profile = sandbox_profile(sb, client={"max_attempts": 2})
    results = fetch_resources(profile, since="2024-01-01", until="2024-03-02", clock=FakeClock())
    failed = [r for r in results.values() if r.report.failed_pages]
    assert failed and all(not r.report.complete for r in failed)
    assert all(p["parent"] == {"meter_id": "M0001"} for r in failed for p in r.report.failed_pages)
    assert _ids(results["meters"]) == expected_ids(sb)["meters"]


def test_date_chunks_follow_calendar_months(make_sandbox: Any, sandbox_env: Any) -> None:
    sb = make_sandbox(sites=1, meters_per_site=1, start="2024-01-01", end="2024-04-01")
    sandbox_env(sb)
    profile = sandbox_profile(sb)
    results = fetch_resources(
        profile, resources=["intervals"], since="2024-01-15", until="2024-03-10", clock=FakeClock()
    )
    windows = [
        (r.query["from"], r.query["to"])
        for r in sb.request_log
        if r.path.endswith("/intervals") and str(r.query.get("offset")) == "0"
    ]
    assert windows == [
        ("2024-01-15", "2024-02-01"),
        ("2024-02-01", "2024-03-01"),
        ("2024-03-01", "2024-03-10"),
    ]
    assert results["intervals"].report.windows == 3
    starts = sorted(r["interval_start"] for r in results["intervals"].records)
    assert starts[0].startswith("2024-01-15T00:00") and starts[-1].startswith("2024-03-09T23:30")


def test_learned_maximum_span_is_remembered(make_sandbox: Any, sandbox_env: Any) -> None:
    sb = make_sandbox(**SMALL, max_span_days=10)
    sandbox_env(sb)
    profile = sandbox_profile(sb)
    client = Client(profile, clock=FakeClock())
    results = fetch_resources(profile, since="2024-01-01", until="2024-03-02", client=client)
    assert _ids(results["intervals"]) == expected_ids(sb)["intervals"]
    assert results["intervals"].report.learned_max_days == 8  # 31 -> 16 -> 8 days
    refused = [r for r in sb.request_log if r.status == 400 and "/intervals" in r.path]
    assert len(refused) == 2  # only the first window was refused; later ones used 8 days
    assert client.learned_spans["intervals"] == 8
    sb.clear_log()
    fetch_resources(
        profile, resources=["intervals"], since="2024-01-01", until="2024-02-01", client=client
    )
    assert not [r for r in sb.request_log if r.status == 400]  # a reused client starts at 8


def test_quota_stop_then_resume(make_sandbox: Any, sandbox_env: Any) -> None:
    sb = make_sandbox(**SMALL, quota_after=12)
    sandbox_env(sb)
    profile = sandbox_profile(sb)
    with pytest.raises(QuotaExhaustedError) as info:
        fetch_resources(profile, since="2024-01-01", until="2024-03-02", clock=FakeClock())
    partial: dict[str, FetchResult] = info.value.partial  # type: ignore[attr-defined]
    assert (
        partial["intervals"].report.stopped == "quota" and not partial["intervals"].report.complete
    )
    watermarks = {name: r.report.watermarks for name, r in partial.items() if r.report.watermarks}
    assert watermarks["intervals"]  # some meters finished before the quota ran out
    sb.reset_quota()
    sb.set_faults(quota_after=None)
    sb.clear_log()
    resumed = fetch_resources(
        profile, since="2024-01-01", until="2024-03-02", clock=FakeClock(), watermarks=watermarks
    )
    want = expected_ids(sb)
    assert _ids(partial["intervals"]) | _ids(resumed["intervals"]) == want["intervals"]
    assert len(resumed["intervals"].records) < len(want["intervals"])  # resumed, not restarted
    assert resumed["intervals"].report.complete


def test_profile_errors_are_clear(make_sandbox: Any, sandbox_env: Any) -> None:
    sb = make_sandbox(sites=1)
    sandbox_env(sb)
    bad = sandbox_resources()
    bad["meters"]["parnt"] = "sites"
    with pytest.raises(ProfileError, match="unknown key"):
        fetch_resources(sandbox_profile(sb, resources=bad), clock=FakeClock())
    cyc = sandbox_resources()
    cyc["sites"].update(parent="meters", path="/x/{meter_id}", parent_params={"meter_id": "id"})
    with pytest.raises(ProfileError, match="cycle"):
        fetch_resources(sandbox_profile(sb, resources=cyc), clock=FakeClock())
    with pytest.raises(ProfileError, match="no resource"):
        fetch_resources(sandbox_profile(sb), resources=["nope"], clock=FakeClock())
    with pytest.raises(ProfileError, match="needs a start"):
        fetch_resources(sandbox_profile(sb), resources=["intervals"], clock=FakeClock())


def test_iter_pages_and_xml_resources(make_sandbox: Any, sandbox_env: Any) -> None:
    sb = make_sandbox(sites=2, meters_per_site=1, format="xml", paginator="next_url", page_size=1)
    sandbox_env(sb)
    res = {
        "sites": {
            "path": "/sites",
            "format": "xml",
            "record_path": "s:data/s:record",
            "namespaces": {
                "s": "urn:scaler-workbench:sandbox",
                "m": "urn:scaler-workbench:sandbox:meta",
            },
            "primary_key": "id",
            "paginator": {"type": "next_url", "next_url_path": "m:page/m:link[@rel='next']/@href"},
        }
    }
    profile = sandbox_profile(sb, resources=res)
    client = Client(profile, clock=FakeClock())
    pages = list(client.iter_pages("sites"))
    assert [len(p) for p in pages] == [1, 1] and pages[0].number == 1
    assert [p[0]["id"] for p in pages] == sorted(expected_ids(sb)["sites"])
    assert isinstance(pages[0][0]["address"], dict)
    seen: list[int] = []
    fetch_resources(profile, client=client, on_page=lambda page: seen.append(len(page)))
    assert seen == [1, 1]


def test_progress_bar_and_repr_of_results(
    make_sandbox: Any, sandbox_env: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    sb = make_sandbox(sites=2, meters_per_site=1)
    sandbox_env(sb)
    results = fetch_resources(
        sandbox_profile(sb), resources=["meters"], progress=True, clock=FakeClock()
    )
    assert "meters" in capsys.readouterr().err  # tqdm draws on stderr
    assert results["meters"].report.parents == 2 and results["meters"].report.complete
