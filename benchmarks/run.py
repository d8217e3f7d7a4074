"""Run the benchmark: ``python -m benchmarks.run [--smoke] [--meters M] [--repeat 3]``.

Each path (the floor, the package, the HTTP sync) runs in a fresh worker process so that memory
peaks do not mix: the worker generates the same deterministic records (not timed), resets the
kernel's peak-RSS mark, runs its path ``--repeat`` times and reports the median seconds per
stage, records per second and peak RSS minus its baseline (the records it was handed). The
parent compares the monthly totals of both paths (and the generator's truth) to 1e-9 relative,
prints the table and the goals, and exits 1 when the totals disagree.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["compare_monthly", "main"]

#: Rows of the report: (label, package stage(s), floor stage(s)).
ROWS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("records -> canonical frame", ("canonical",), ("canonical",)),
    ("units", ("units",), ("units",)),
    ("duplicates + monthly (usage)", ("usage",), ("duplicates", "aggregate")),
    ("validation", ("validate",), ("validate",)),
    ("export files", ("export",), ("export",)),
)
FULL_METERS = 600
SMOKE_METERS = 3
RTOL = 1e-9
GOAL_TIME = 1.5
GOAL_MEMORY = 2.0


# -- worker side -------------------------------------------------------------------------------
def _run_floor(data: Any, out_dir: Path) -> tuple[dict[str, float], pd.DataFrame, dict[str, int]]:
    from benchmarks.data import CALORIFIC_VALUE
    from benchmarks.floor import floor_pipeline

    res = floor_pipeline(
        data.raw, calorific_value=CALORIFIC_VALUE, conflict=data.conflict, out_dir=out_dir
    )
    monthly = res.monthly[["meter_id", "month", "consumption"]]
    return dict(res.stages), monthly, res.counts


def _run_package(
    data: Any, out_dir: Path, profile: Any
) -> tuple[dict[str, float | None], pd.DataFrame | None, dict[str, Any]]:
    from benchmarks.package import package_pipeline

    res = package_pipeline(data.raw, profile, out_dir=out_dir)
    return res.stages, res.monthly, {**res.counts, "missing": res.missing}


def worker(path: str, meters: int, repeat: int, result_file: Path) -> None:
    """Generate the data, run one path ``repeat`` times, pickle what was measured."""
    from benchmarks.data import generate
    from benchmarks.memory import current_rss, peak_rss, reset_peak

    gc.collect()
    before_data = current_rss()
    t = time.perf_counter()
    data = generate(meters)
    generate_s = time.perf_counter() - t
    profile = None
    if path == "package":
        from benchmarks.package import _resolve, make_profile

        _resolve()  # imports are not part of the path's time or memory
        try:
            profile = make_profile(conflict=data.conflict)
        except Exception as exc:  # a profile the package refuses is a finding, not a crash
            _dump(result_file, {"path": path, "error": f"profile refused: {exc}"})
            return
    gc.collect()
    baseline = current_rss()
    method = reset_peak()
    runs: list[dict[str, float | None]] = []
    totals: list[float] = []
    monthly: pd.DataFrame | None = None
    counts: dict[str, Any] = {}
    error = ""
    with tempfile.TemporaryDirectory(prefix=f"bench-{path}-") as tmp:
        for i in range(repeat):
            out = Path(tmp) / f"run{i}"
            t = time.perf_counter()
            try:
                if path == "floor":
                    stages, monthly, counts = _run_floor(data, out)
                else:
                    stages, monthly, counts = _run_package(data, out, profile)  # type: ignore[assignment]
            except Exception as exc:  # report the failure of the path under test
                error = f"{type(exc).__name__}: {exc}"
                break
            totals.append(time.perf_counter() - t)
            runs.append(dict(stages))
            if i < repeat - 1:
                monthly = None
            gc.collect()
    peak = peak_rss()
    _dump(
        result_file,
        {
            "path": path,
            "meters": meters,
            "n_records": data.n_records,
            "n_missing": data.n_missing,
            "n_duplicates": data.n_duplicates,
            "n_revised": data.n_revised,
            "generate_s": generate_s,
            "runs": runs,
            "totals": totals,
            "monthly": monthly,
            "truth": data.truth,
            "counts": counts,
            "baseline": baseline,
            "before_data": before_data,
            "peak": peak,
            "memory_method": method,
            "error": error,
        },
    )


def _dump(result_file: Path, payload: dict[str, Any]) -> None:
    with open(result_file, "wb") as fh:
        pickle.dump(payload, fh)


# -- parent side -------------------------------------------------------------------------------
def _spawn(path: str, meters: int, repeat: int, tmp: Path) -> dict[str, Any]:
    result_file = tmp / f"{path}.pkl"
    root = Path(__file__).resolve().parent.parent
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    cmd = [sys.executable, "-m", "benchmarks.run", "--worker", path, "--meters", str(meters)]
    cmd += ["--repeat", str(repeat), "--result", str(result_file)]
    proc = subprocess.run(cmd, env=env, cwd=root, capture_output=True, text=True)
    if proc.returncode != 0 or not result_file.exists():
        return {"path": path, "error": f"worker exited {proc.returncode}: {proc.stderr[-2000:]}"}
    with open(result_file, "rb") as fh:
        payload: dict[str, Any] = pickle.load(fh)
    return payload


def compare_monthly(a: pd.DataFrame, b: pd.DataFrame) -> float:
    """Largest relative difference of ``consumption`` per (meter_id, month); inf if keys differ."""
    ka = a.sort_values(["meter_id", "month"]).reset_index(drop=True)
    kb = b.sort_values(["meter_id", "month"]).reset_index(drop=True)
    if len(ka) != len(kb) or not (
        (ka["meter_id"].astype(str).to_numpy() == kb["meter_id"].astype(str).to_numpy()).all()
        and (ka["month"].astype(str).to_numpy() == kb["month"].astype(str).to_numpy()).all()
    ):
        return math.inf
    x = ka["consumption"].to_numpy(dtype=float)
    y = kb["consumption"].to_numpy(dtype=float)
    scale = np.maximum(np.abs(x), np.abs(y))
    diff = np.abs(x - y) / np.where(scale > 0, scale, 1.0)
    return float(diff.max()) if len(diff) else 0.0


def _median_stage(runs: list[dict[str, float | None]], names: tuple[str, ...]) -> float | None:
    values = []
    for run in runs:
        parts = [run.get(n) for n in names]
        if any(p is None for p in parts):
            return None
        values.append(sum(p for p in parts if p is not None))
    return statistics.median(values) if values else None


def _fmt(x: float | None, spec: str = ".3f") -> str:
    return "n/a" if x is None else format(x, spec)


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0:
        return None
    return a / b


def summarise(floor: dict[str, Any], package: dict[str, Any]) -> dict[str, Any]:
    """The numbers of the report as a dict (also written with ``--json``)."""
    summary: dict[str, Any] = {"rows": [], "goals": {}}
    n = floor.get("n_records") or package.get("n_records") or 0
    summary["n_records"] = n
    summary["meters"] = floor.get("meters") or package.get("meters")
    for label, pkg, flr in ROWS:
        p = _median_stage(package.get("runs", []), pkg)
        f = _median_stage(floor.get("runs", []), flr)
        summary["rows"].append(
            {"stage": label, "package_s": p, "floor_s": f, "ratio": _ratio(p, f)}
        )
    pkg_complete = bool(package.get("runs")) and all(
        r["package_s"] is not None for r in summary["rows"]
    )
    p_total = statistics.median(package["totals"]) if package.get("totals") else None
    f_total = statistics.median(floor["totals"]) if floor.get("totals") else None
    summary["total"] = {
        "package_s": p_total if pkg_complete else None,
        "package_partial_s": p_total,
        "floor_s": f_total,
        "ratio": _ratio(p_total, f_total) if pkg_complete else None,
    }
    work: dict[str, int] = {}
    whole: dict[str, int] = {}
    for name, res in (("package", package), ("floor", floor)):
        if res.get("runs"):
            work[name] = max(0, res["peak"] - res["baseline"])
            whole[name] = max(0, res["peak"] - res["before_data"])
    summary["memory"] = {
        # the goal: peak of the process over the path (records included) minus the interpreter
        "package_bytes": whole.get("package"),
        "floor_bytes": whole.get("floor"),
        "ratio": _ratio(whole.get("package"), whole.get("floor")) if pkg_complete else None,
        # what the path itself allocates on top of the records it was handed
        "package_work_bytes": work.get("package"),
        "floor_work_bytes": work.get("floor"),
        "work_ratio": _ratio(work.get("package"), work.get("floor")) if pkg_complete else None,
        "records_bytes": (floor.get("baseline", 0) - floor.get("before_data", 0)) or None,
        "method": floor.get("memory_method") or package.get("memory_method"),
    }
    checks: dict[str, float | None] = {}
    if floor.get("monthly") is not None:
        checks["floor_vs_truth"] = compare_monthly(floor["monthly"], floor["truth"])
    if package.get("monthly") is not None and floor.get("monthly") is not None:
        checks["package_vs_floor"] = compare_monthly(package["monthly"], floor["monthly"])
    summary["checks"] = checks
    t_ratio = summary["total"]["ratio"]
    m_ratio = summary["memory"]["ratio"]
    summary["goals"]["time"] = None if t_ratio is None else t_ratio <= GOAL_TIME
    summary["goals"]["memory"] = None if m_ratio is None else m_ratio <= GOAL_MEMORY
    return summary


def _print(
    summary: dict[str, Any], floor: dict[str, Any], package: dict[str, Any], repeat: int
) -> None:
    n = summary["n_records"]
    out = print
    out(
        f"\nscaler-workbench benchmark: M={summary['meters']} meters, {n:,} interval records "
        f"({floor.get('n_missing', 0):,} missing, {floor.get('n_duplicates', 0):,} repeated), "
        f"median of {repeat}; data generated in {floor.get('generate_s', 0):.1f} s (not timed)"
    )
    out(f"{'stage':<32}{'package [s]':>12}{'floor [s]':>12}{'ratio':>8}")
    for row in summary["rows"]:
        out(
            f"{row['stage']:<32}{_fmt(row['package_s']):>12}{_fmt(row['floor_s']):>12}"
            f"{_fmt(row['ratio'], '.2f'):>8}"
        )
    tot = summary["total"]
    out(
        f"{'total (one run, median)':<32}{_fmt(tot['package_s']):>12}{_fmt(tot['floor_s']):>12}"
        f"{_fmt(tot['ratio'], '.2f'):>8}"
    )
    rate_p = None if not tot["package_s"] else n / tot["package_s"] / 1e6
    rate_f = None if not tot["floor_s"] else n / tot["floor_s"] / 1e6
    out(f"{'records/s [million]':<32}{_fmt(rate_p, '.2f'):>12}{_fmt(rate_f, '.2f'):>12}")
    mem = summary["memory"]

    def mib(x: int | None) -> float | None:
        return None if x is None else x / 2**20

    out(
        f"{'peak RSS incl. records [MiB]':<32}{_fmt(mib(mem['package_bytes']), '.0f'):>12}"
        f"{_fmt(mib(mem['floor_bytes']), '.0f'):>12}{_fmt(mem['ratio'], '.2f'):>8}"
        f"   (peak - RSS before the records; {mem['method']})"
    )
    out(
        f"{'peak RSS over records [MiB]':<32}{_fmt(mib(mem['package_work_bytes']), '.0f'):>12}"
        f"{_fmt(mib(mem['floor_work_bytes']), '.0f'):>12}{_fmt(mem['work_ratio'], '.2f'):>8}"
        f"   (working memory of the path; records take {_fmt(mib(mem['records_bytes']), '.0f')} MiB)"
    )
    for name, res in (("floor", floor), ("package", package)):
        if res.get("error"):
            out(f"{name} path failed: {res['error']}")
    if package.get("counts", {}).get("missing"):
        out(f"package stages not available yet: {', '.join(package['counts']['missing'])}")
    for name, val in summary["checks"].items():
        agree = "OK" if val is not None and val <= RTOL else "MISMATCH"
        out(f"monthly totals {name.replace('_', ' ')}: max relative difference {val:.2e} ({agree})")
    goals = summary["goals"]

    def verdict(flag: bool | None) -> str:
        return "n/a" if flag is None else ("met" if flag else "NOT met")

    out(f"goal package time <= {GOAL_TIME} x floor: {verdict(goals['time'])}")
    out(f"goal package peak memory <= {GOAL_MEMORY} x floor: {verdict(goals['memory'])}")
    if "sync" in summary:
        s = summary["sync"]
        if s.get("error"):
            out(f"sync benchmark: n/a ({s['error']})")
        else:
            out(
                f"sync over loopback ({s['sites']} sites x {s['meters_per_site']} meters, "
                f"{s['range']}, page {s['page']}): {s['records']:,} interval records "
                f"(expected {s['expected_records']:,}) in {s['seconds']:.2f} s = "
                f"{s['records'] / s['seconds']:,.0f} records/s"
            )
            out(
                f"requests sent {s['requests']:,} {s['requests_by_resource']}; minimum the plan "
                f"allows {s['minimum']:,} {s['minimum_by_resource']}: goal "
                f"{verdict(goals.get('requests'))}"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help=f"tiny run (M={SMOKE_METERS})")
    parser.add_argument("--meters", type=int, default=None, help=f"M (default {FULL_METERS})")
    parser.add_argument("--repeat", type=int, default=None, help="runs per path (median)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    parser.add_argument("--no-sync", action="store_true", help="skip the HTTP sync benchmark")
    parser.add_argument(
        "--sync-sites", type=int, default=None, help="sandbox sites (3 meters each) for the sync"
    )
    parser.add_argument("--worker", choices=("floor", "package", "sync"), help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    meters = args.meters or (SMOKE_METERS if args.smoke else FULL_METERS)
    repeat = args.repeat or (1 if args.smoke else 3)
    if args.worker:
        if args.worker == "sync":
            from benchmarks.sync import sync_worker

            sync_worker(args.sync_sites or 12, args.result, smoke=args.smoke)
        else:
            worker(args.worker, meters, repeat, args.result)
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        floor = _spawn("floor", meters, repeat, Path(tmp))
        package = _spawn("package", meters, repeat, Path(tmp))
        summary = summarise(floor, package)
        if not args.no_sync:
            sites = args.sync_sites or (2 if args.smoke else 12)
            summary["sync"] = _spawn_sync(sites, args.smoke, Path(tmp))
            s = summary["sync"]
            summary["goals"]["requests"] = None if s.get("error") else s["requests"] == s["minimum"]
    _print(summary, floor, package, repeat)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2, default=str))
    bad = [v for v in summary["checks"].values() if v is None or v > RTOL]
    return 1 if bad or floor.get("error") else 0


def _spawn_sync(sites: int, smoke: bool, tmp: Path) -> dict[str, Any]:
    result_file = tmp / "sync.pkl"
    root = Path(__file__).resolve().parent.parent
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    cmd = [sys.executable, "-m", "benchmarks.run", "--worker", "sync", "--sync-sites", str(sites)]
    cmd += ["--result", str(result_file)] + (["--smoke"] if smoke else [])
    proc = subprocess.run(cmd, env=env, cwd=root, capture_output=True, text=True)
    if proc.returncode != 0 or not result_file.exists():
        return {"error": f"worker exited {proc.returncode}: {proc.stderr[-1500:]}"}
    with open(result_file, "rb") as fh:
        payload: dict[str, Any] = pickle.load(fh)
    return payload


if __name__ == "__main__":
    sys.exit(main())
