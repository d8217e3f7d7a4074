"""The benchmark cannot rot: a smoke-sized run, plus the floor's own correctness.

``make bench`` is not part of ``make test``; this file is. It runs ``python -m benchmarks.run
--smoke`` (tiny M, one timing worker process running both paths interleaved) and asserts that the
package and the floor give the same monthly totals and that the report carries what the goals
are judged on, and checks the floor against the generator's truth on the awkward inputs its
fast paths must not get wrong.
"""

from __future__ import annotations

import ast
import json
import random
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # benchmarks/ is a top-level package of the repository
    sys.path.insert(0, str(ROOT))

from benchmarks.data import CALORIFIC_VALUE, GAS_FACTOR, generate  # noqa: E402
from benchmarks.floor import floor_pipeline  # noqa: E402
from benchmarks.run import RTOL, compare_monthly, main, order_of  # noqa: E402


@pytest.fixture(scope="module")
def small():
    return generate(4, seed=7)


def _floor(raw, **kw):
    return floor_pipeline(raw, calorific_value=CALORIFIC_VALUE, **kw)


def test_floor_shares_no_code_with_the_package():
    for name in ("floor.py", "data.py"):
        tree = ast.parse((ROOT / "benchmarks" / name).read_text())
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                imported.add(node.module or "")
        assert not any(m.split(".")[0] == "scaler_workbench" for m in imported), name


def test_generator_is_deterministic_and_shaped_like_json_pages(small):
    again = generate(4, seed=7)
    assert again.raw["intervals"][:50] == small.raw["intervals"][:50]
    assert small.n_records == 4 * 17520 - small.n_missing + small.n_duplicates
    starts = [r["interval_start"] for r in small.raw["intervals"][:20000]]
    assert any(s.endswith("Z") for s in starts) and any(s.endswith("+01:00") for s in starts)
    assert {m["unit"] for m in small.raw["meters"]} == {"kWh", "Wh", "m3"}
    assert 0.005 < small.n_missing / (4 * 17520) < 0.015
    assert small.n_revised > 0
    assert pytest.approx(1.02264 * 39.5 / 3.6) == GAS_FACTOR


@pytest.mark.parametrize("conflict", ["last", "first"])
def test_floor_matches_the_generators_truth(conflict):
    data = generate(3, seed=11, conflict=conflict)
    res = _floor(data.raw, conflict=conflict)
    assert compare_monthly(res.monthly, data.truth) <= RTOL
    assert res.counts["duplicates"] == data.n_duplicates
    assert res.counts["conflicts"] == data.n_revised
    assert res.counts["sorted"] == 1


def test_floor_unsorted_input_takes_the_general_path(small):
    # shuffle whole groups of records for one (meter, start), keeping each group's send order:
    # the conflict policy is about the order in which duplicates arrived
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in small.raw["intervals"]:
        groups.setdefault((r["_parent"]["meter_id"], r["interval_start"]), []).append(r)
    order = list(groups.values())
    random.Random(3).shuffle(order)
    res = _floor({**small.raw, "intervals": [r for g in order for r in g]})
    assert res.counts["sorted"] == 0
    assert res.counts["duplicates"] == small.n_duplicates
    assert compare_monthly(res.monthly, small.truth) <= RTOL


def test_floor_parses_other_iso_shapes_and_counts_bad_records(small):
    raw = dict(small.raw)
    records = [dict(r) for r in small.raw["intervals"][:1000]]
    mid = records[0]["_parent"]["meter_id"]
    # the same instants written differently must give the same totals
    records[10]["interval_start"] = "2023-01-01T05:00:00.000+00:00"
    records[11]["interval_start"] = "2023-01-01T00:30:00-05:00"  # == 05:30Z
    base = _floor({**raw, "intervals": [dict(r) for r in small.raw["intervals"][:1000]]})
    alt = _floor({**raw, "intervals": records})
    assert records[11]["interval_start"] != small.raw["intervals"][11]["interval_start"]
    assert alt.counts["bad_timestamp"] == 0
    assert alt.monthly["consumption"].sum() > 0
    bad = [dict(r) for r in small.raw["intervals"][:100]]
    bad[0]["interval_start"] = "2023-02-30T00:00:00Z"
    bad[1]["interval_start"] = "2023-01-01T00:00:00"  # naive: refused, never guessed
    bad[2]["value"] = None
    bad[3]["_parent"] = {"meter_id": "nope"}
    bad[4]["value"] = -1.0
    res = _floor({**raw, "intervals": bad})
    assert res.counts["bad_timestamp"] == 2
    assert res.counts["unknown_meter"] == 1
    assert res.counts["bad_value"] == 2
    assert res.monthly["n_intervals"].sum() == 95 - res.counts["duplicates"]
    assert base.monthly.loc[0, "meter_id"] == mid


def test_floor_writes_a_scaler_csv(tmp_path, small):
    res = _floor(small.raw, out_dir=tmp_path)
    text = (tmp_path / "usage.csv").read_text().splitlines()
    assert text[0] == "meter_external_id,start_date,end_date,consumption,unit"
    assert text[1].startswith("M00000,2023-01-01,2023-02-01,")
    assert len(text) == 1 + 4 * 12
    assert np.isfinite(res.monthly["consumption"]).all()


def test_repetitions_alternate_the_order_of_the_paths():
    assert [order_of(i) for i in range(4)] == [
        ("floor", "package"),
        ("package", "floor"),
        ("floor", "package"),
        ("package", "floor"),
    ]


@pytest.mark.slow  # a fresh worker process that imports great-expectations
def test_smoke_run_package_and_floor_agree(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(["--smoke", "--no-sync", "--repeat", "2", "--json", str(out)])
    printed = capsys.readouterr().out
    summary = json.loads(out.read_text())
    assert code == 0, printed
    assert summary["errors"] == {}, printed
    assert summary["checks"]["floor_vs_truth"] <= RTOL
    assert "package_vs_floor" in summary["checks"], printed
    assert summary["checks"]["package_vs_floor"] <= RTOL, printed
    # both paths ran in the one worker, interleaved F P then P F
    assert summary["order"] == ["F P", "P F"]
    assert [(r["rep"], r["path"]) for r in summary["runs"]] == [
        (0, "floor"),
        (0, "package"),
        (1, "package"),
        (1, "floor"),
    ]
    for run in summary["runs"]:
        assert run["total_s"] > 0 and run["user_s"] >= 0 and run["sys_s"] >= 0
        assert run["peak"] >= run["rss_before"] > 0
    # the package's three pipeline stages come from run_pipeline's own timings
    assert all(row["package_s"] is not None for row in summary["rows"]), printed
    tot = summary["total"]
    assert tot["floor_s"] > 0 and tot["package_s"] > 0
    assert len(tot["paired_ratios"]) == 2
    by_rep = {(r["rep"], r["path"]): r["total_s"] for r in summary["runs"]}
    expected = sorted(by_rep[(i, "package")] / by_rep[(i, "floor")] for i in range(2))
    assert sorted(tot["paired_ratios"]) == pytest.approx(expected)
    assert tot["paired_ratio"] == pytest.approx(sum(expected) / 2)
    assert summary["goals"]["time"] == (tot["paired_ratio"] <= 1.4)  # issue 13
    for path in ("package", "floor"):
        assert summary["cpu"][path]["user_s"] > 0
        assert summary["cpu"][path]["sys_s"] >= 0
    mem = summary["memory"]
    if mem["method"] == "VmHWM":
        assert mem["floor_bytes"] >= mem["floor_work_bytes"] >= 0
        assert mem["records_bytes"] > 0
    else:  # the kernel cannot reset the peak here: said, not guessed
        assert mem["floor_bytes"] is None and "n/a" in mem["note"]
    assert "records/s" in printed and "paired ratio" in printed


def test_sync_benchmark_counts_requests_against_the_plans_minimum():
    from benchmarks.sync import run_sync_benchmark

    res = run_sync_benchmark(sites=1, start="2024-01-01", end="2024-03-01")
    assert res["records"] == res["expected_records"] > 0
    # one page of sites, one of meters, then per interval meter and month ceil(n / page) >= 1
    assert res["minimum_by_resource"]["sites"] == 1
    assert res["minimum_by_resource"]["meters"] == 1
    assert res["minimum_by_resource"]["intervals"] >= 2
    # the goal is the minimum itself: not one request more than the plan allows
    assert res["requests_by_resource"] == res["minimum_by_resource"]
    assert res["requests"] == res["minimum"]
    assert res["seconds"] > 0


def test_stage_timer_prints_every_stage_and_dumps_the_exported_files(tmp_path, capsys):
    from benchmarks.stages import main as stages_main

    code = stages_main(
        ["--meters", "2", "--repeat", "1", "--floor", "--dump", str(tmp_path / "files")]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "M=2: " in out and "cpu ratio" in out
    for stage in ("canonical", "units", "usage", "validate", "export", "pipeline"):
        assert f"'{stage}'" in out, stage
    usage = (tmp_path / "files" / "usage.csv").read_text(encoding="utf-8").splitlines()
    assert usage[0].startswith("meter_external_id,start_date,end_date,consumption,unit")
    assert len(usage) == 1 + 2 * 12  # two meters x twelve months
