"""Run the benchmark: ``python -m benchmarks.run [--smoke] [--meters M] [--repeat 3]``.

The floor and the package are timed in the same process and run. One fresh timing worker
process (spawned by this command) warms the imports of both paths (great-expectations, pint)
with one untimed run of each on a small input, generates the deterministic records once (not
timed), then runs the floor and the package interleaved, ``--repeat`` times each, alternating
the order every repetition (F P, P F, F P, ...) so that the machine's drift falls on both
alike. Per run it records the seconds per stage and in total, the user and system CPU seconds
(``getrusage``; system time shows first-touch page faults) and the peak RSS (the kernel's
high-water mark, reset just before the run) beside the RSS just before the run.

The parent reports the median per stage, the ratio of the median totals, and the median of the
paired ratios ``package_i / floor_i`` of the repetitions, which is what the time goal is judged
on (a pair shares the machine's state, so drift between repetitions cancels). It compares the
monthly totals of both paths and the generator's truth to 1e-9 relative, prints the table and
the goals, and exits 1 when the totals disagree or the floor fails. The HTTP sync benchmark runs
in a worker process of its own.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import pickle
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["compare_monthly", "main", "order_of", "summarise", "timing_worker"]

#: Rows of the report: (label, package stage(s), floor stage(s)).
ROWS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("records -> canonical frame", ("canonical",), ("canonical",)),
    ("units", ("units",), ("units",)),
    ("duplicates + monthly (usage)", ("usage",), ("duplicates", "aggregate")),
    ("validation", ("validate",), ("validate",)),
    ("export files", ("export",), ("export",)),
)
PATHS = ("floor", "package")
FULL_METERS = 600
SMOKE_METERS = 3
RTOL = 1e-9
GOAL_TIME = 1.4  # issue 13: median paired ratio at most 1.4 at M = 600
GOAL_MEMORY = 2.0
CONFLICT = "last"


# -- worker side -------------------------------------------------------------------------------
def order_of(rep: int) -> tuple[str, str]:
    """The order of the two paths in repetition ``rep``: F P, P F, F P, ..."""
    return PATHS if rep % 2 == 0 else PATHS[::-1]


def _run_floor(data: Any, out_dir: Path) -> tuple[dict[str, float | None], pd.DataFrame, dict]:
    from benchmarks.data import CALORIFIC_VALUE
    from benchmarks.floor import floor_pipeline

    res = floor_pipeline(
        data.raw, calorific_value=CALORIFIC_VALUE, conflict=data.conflict, out_dir=out_dir
    )
    monthly = res.monthly[["meter_id", "month", "consumption"]]
    return dict(res.stages), monthly, dict(res.counts)


def _run_package(
    data: Any, out_dir: Path, profile: Any
) -> tuple[dict[str, float | None], pd.DataFrame | None, dict[str, Any]]:
    from benchmarks.package import package_pipeline

    res = package_pipeline(data.raw, profile, out_dir=out_dir)
    return res.stages, res.monthly, {**res.counts, "missing": res.missing}


def _measured(
    path: str, data: Any, profile: Any, out: Path
) -> tuple[dict[str, Any], pd.DataFrame | None, dict[str, Any]]:
    """One run of ``path``: seconds, CPU seconds and peak RSS around it."""
    from benchmarks.memory import current_rss, peak_rss, reset_peak

    gc.collect()
    rss_before = current_rss()
    method = reset_peak()
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t = time.perf_counter()
    stages: dict[str, float | None] = {}
    monthly: pd.DataFrame | None = None
    counts: dict[str, Any] = {}
    error = ""
    try:
        if path == "floor":
            stages, monthly, counts = _run_floor(data, out)
        else:
            stages, monthly, counts = _run_package(data, out, profile)
    except Exception as exc:  # report the failure of the path under test
        error = f"{type(exc).__name__}: {exc}"
    total = time.perf_counter() - t
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    peak = peak_rss()
    run = {
        "path": path,
        "stages": stages,
        "total_s": total,
        "user_s": ru1.ru_utime - ru0.ru_utime,
        "sys_s": ru1.ru_stime - ru0.ru_stime,
        "rss_before": rss_before,
        "peak": peak,
        "memory_method": method,
        "error": error,
    }
    return run, monthly, counts


def timing_worker(meters: int, repeat: int, result_file: Path) -> None:
    """Warm up, generate the data, run floor and package interleaved; pickle what was measured."""
    from benchmarks.data import generate
    from benchmarks.memory import current_rss
    from benchmarks.package import _resolve, make_profile

    payload: dict[str, Any] = {"meters": meters, "repeat": repeat, "errors": {}}
    _resolve()  # imports are not part of any path's time or memory
    profile = None
    try:
        profile = make_profile(conflict=CONFLICT)
    except Exception as exc:  # a profile the package refuses is a finding, not a crash
        payload["errors"]["package"] = f"profile refused: {type(exc).__name__}: {exc}"
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        # warm-up, untimed: first imports (great-expectations, pint registry), caches
        warm = generate(SMOKE_METERS, seed=1, conflict=CONFLICT)
        for path in PATHS:
            if path == "floor" or profile is not None:
                _measured(path, warm, profile, Path(tmp) / f"warm-{path}")
        del warm
        gc.collect()
        before_data = current_rss()
        t = time.perf_counter()
        data = generate(meters, conflict=CONFLICT)
        payload["generate_s"] = time.perf_counter() - t
        gc.collect()
        payload["after_data"] = current_rss()
        payload["before_data"] = before_data
        runs: list[dict[str, Any]] = []
        monthly: dict[str, pd.DataFrame | None] = {}
        counts: dict[str, dict[str, Any]] = {}
        for rep in range(repeat):
            for path in order_of(rep):
                if payload["errors"].get(path):
                    continue  # a path that failed is not run again
                out = Path(tmp) / f"{path}-{rep}"
                run, monthly[path], counts[path] = _measured(path, data, profile, out)
                run["rep"] = rep
                runs.append(run)
                if run["error"]:
                    payload["errors"][path] = run["error"]
    payload.update(
        n_records=data.n_records,
        n_missing=data.n_missing,
        n_duplicates=data.n_duplicates,
        n_revised=data.n_revised,
        runs=runs,
        monthly=monthly,
        counts=counts,
        truth=data.truth,
    )
    _dump(result_file, payload)


def _dump(result_file: Path, payload: dict[str, Any]) -> None:
    with open(result_file, "wb") as fh:
        pickle.dump(payload, fh)


# -- parent side -------------------------------------------------------------------------------
def _spawn(args: list[str], result_file: Path) -> dict[str, Any]:
    root = Path(__file__).resolve().parent.parent
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    cmd = [sys.executable, "-m", "benchmarks.run", *args, "--result", str(result_file)]
    proc = subprocess.run(cmd, env=env, cwd=root, capture_output=True, text=True)
    if proc.returncode != 0 or not result_file.exists():
        return {"error": f"worker exited {proc.returncode}: {proc.stderr[-2000:]}"}
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


def _runs(result: dict[str, Any], path: str) -> list[dict[str, Any]]:
    """The successful runs of ``path``, in the order they ran."""
    return [r for r in result.get("runs", []) if r["path"] == path and not r["error"]]


def _stage_sum(run: dict[str, Any], names: tuple[str, ...]) -> float | None:
    parts = [run["stages"].get(n) for n in names]
    if any(p is None for p in parts):
        return None
    return float(sum(parts))


def _median(values: list[float | None]) -> float | None:
    if not values or any(v is None for v in values):
        return None
    return statistics.median(v for v in values if v is not None)


def _fmt(x: float | None, spec: str = ".3f") -> str:
    return "n/a" if x is None else format(x, spec)


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0:
        return None
    return a / b


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    """The numbers of the report as a dict (also written with ``--json``).

    ``result`` is what :func:`timing_worker` pickled. Times are medians over the runs of each
    path; ``total.paired_ratios`` are ``package_i / floor_i`` per repetition and
    ``total.paired_ratio`` (their median) is what the time goal is judged on.
    """
    runs = {p: _runs(result, p) for p in PATHS}
    repeat = int(result.get("repeat") or 0)
    summary: dict[str, Any] = {
        "meters": result.get("meters"),
        "n_records": result.get("n_records") or 0,
        "repeat": repeat,
        "order": [" ".join(p[0].upper() for p in order_of(i)) for i in range(repeat)],
        "rows": [],
        "goals": {},
        "errors": {k: v for k, v in result.get("errors", {}).items() if v},
    }
    for label, pkg, flr in ROWS:
        p = _median([_stage_sum(r, pkg) for r in runs["package"]])
        f = _median([_stage_sum(r, flr) for r in runs["floor"]])
        summary["rows"].append(
            {"stage": label, "package_s": p, "floor_s": f, "ratio": _ratio(p, f)}
        )
    pkg_complete = bool(runs["package"]) and all(
        r["package_s"] is not None for r in summary["rows"]
    )
    p_total = _median([r["total_s"] for r in runs["package"]])
    f_total = _median([r["total_s"] for r in runs["floor"]])
    paired: list[float] = []
    if pkg_complete:
        floor_by_rep = {r["rep"]: r["total_s"] for r in runs["floor"]}
        for r in runs["package"]:
            ratio = _ratio(r["total_s"], floor_by_rep.get(r["rep"]))
            if ratio is not None:
                paired.append(ratio)
    summary["total"] = {
        "package_s": p_total if pkg_complete else None,
        "package_partial_s": p_total,
        "floor_s": f_total,
        # the ratio of the medians (each median may come from a different repetition)
        "ratio": _ratio(p_total, f_total) if pkg_complete else None,
        # package_i / floor_i per repetition, and their median: the goal's number
        "paired_ratios": paired,
        "paired_ratio": statistics.median(paired) if paired else None,
    }
    summary["cpu"] = {
        p: {
            "user_s": _median([r["user_s"] for r in runs[p]]),
            "sys_s": _median([r["sys_s"] for r in runs[p]]),
        }
        for p in PATHS
    }
    summary["memory"] = _memory(result, runs, pkg_complete)
    summary["runs"] = result.get("runs", [])
    checks: dict[str, float | None] = {}
    monthly = result.get("monthly", {})
    if monthly.get("floor") is not None:
        checks["floor_vs_truth"] = compare_monthly(monthly["floor"], result["truth"])
    if monthly.get("package") is not None and monthly.get("floor") is not None:
        checks["package_vs_floor"] = compare_monthly(monthly["package"], monthly["floor"])
    summary["checks"] = checks
    summary["missing"] = result.get("counts", {}).get("package", {}).get("missing", [])
    t_ratio = summary["total"]["paired_ratio"]
    m_ratio = summary["memory"]["ratio"]
    summary["goals"]["time"] = None if t_ratio is None else t_ratio <= GOAL_TIME
    summary["goals"]["memory"] = None if m_ratio is None else m_ratio <= GOAL_MEMORY
    return summary


def _memory(
    result: dict[str, Any], runs: dict[str, list[dict[str, Any]]], pkg_complete: bool
) -> dict[str, Any]:
    """Peak RSS per path: the max over its runs, each measured from the RSS just before it."""
    methods = {r["memory_method"] for p in PATHS for r in runs[p]}
    records = None
    if "after_data" in result:
        records = max(0, result["after_data"] - result["before_data"])
    out: dict[str, Any] = {"method": ", ".join(sorted(methods)) or None, "records_bytes": records}
    work: dict[str, int | None] = {}
    whole: dict[str, int | None] = {}
    measurable = methods == {"VmHWM"}
    for p in PATHS:
        ok = measurable and bool(runs[p])
        # what the path itself allocates on top of what the process held just before the run
        work[p] = max(max(0, r["peak"] - r["rss_before"]) for r in runs[p]) if ok else None
        # what a process running this path needs: peak minus the RSS before the records existed
        whole[p] = max(max(0, r["peak"] - result["before_data"]) for r in runs[p]) if ok else None
    if not measurable:
        out["note"] = (
            "n/a: the kernel refused to reset the peak-RSS mark (/proc/self/clear_refs), so the "
            "peak of one run cannot be told from the process's earlier peak"
        )
    out.update(
        package_bytes=whole["package"],
        floor_bytes=whole["floor"],
        ratio=_ratio(whole["package"], whole["floor"]) if pkg_complete else None,
        package_work_bytes=work["package"],
        floor_work_bytes=work["floor"],
        work_ratio=_ratio(work["package"], work["floor"]) if pkg_complete else None,
    )
    return out


def _print(summary: dict[str, Any], result: dict[str, Any]) -> None:
    n = summary["n_records"]
    out = print
    order = ", ".join(summary["order"])
    out(
        f"\nscaler-workbench benchmark: M={summary['meters']} meters, {n:,} interval records "
        f"({result.get('n_missing', 0):,} missing, {result.get('n_duplicates', 0):,} repeated); "
        f"data generated in {result.get('generate_s', 0):.1f} s (not timed)"
    )
    out(
        f"one process, imports warmed by an untimed run of each path, then {summary['repeat']} "
        f"repetitions interleaved ({order}); seconds are medians over the repetitions"
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
        f"{_fmt(tot['ratio'], '.2f'):>8}   (ratio of the medians)"
    )
    rate_p = None if not tot["package_s"] else n / tot["package_s"] / 1e6
    rate_f = None if not tot["floor_s"] else n / tot["floor_s"] / 1e6
    out(f"{'records/s [million]':<32}{_fmt(rate_p, '.2f'):>12}{_fmt(rate_f, '.2f'):>12}")
    cpu = summary["cpu"]
    for kind in ("user", "sys"):
        p, f = cpu["package"][f"{kind}_s"], cpu["floor"][f"{kind}_s"]
        out(
            f"{f'CPU {kind} [s] (median)':<32}{_fmt(p):>12}{_fmt(f):>12}{_fmt(_ratio(p, f), '.2f'):>8}"
        )
    out("per repetition (package / floor total [s], CPU user+sys [s]):")
    by_rep: dict[int, dict[str, dict[str, Any]]] = {}
    for r in summary["runs"]:
        by_rep.setdefault(r["rep"], {})[r["path"]] = r
    for rep in sorted(by_rep):
        cells = []
        for p in summary["order"][rep].split():
            r = by_rep[rep].get("floor" if p == "F" else "package")
            if r is None:
                continue
            label = f"{p} " + ("failed" if r["error"] else f"{r['total_s']:.3f}")
            cells.append(f"{label} ({r['user_s']:.2f}+{r['sys_s']:.2f})")
        pr = by_rep[rep]
        ratio = None
        if "package" in pr and "floor" in pr and tot["paired_ratios"]:
            ratio = _ratio(pr["package"]["total_s"], pr["floor"]["total_s"])
        out(f"  {rep + 1}: {'   '.join(cells)}   package/floor {_fmt(ratio, '.2f')}")
    out(
        f"{'paired ratio (median)':<32}{'':>24}{_fmt(tot['paired_ratio'], '.2f'):>8}   "
        "(median of package_i / floor_i per repetition: the time goal uses this)"
    )
    mem = summary["memory"]

    def mib(x: int | None) -> float | None:
        return None if x is None else x / 2**20

    out(
        f"{'peak RSS incl. records [MiB]':<32}{_fmt(mib(mem['package_bytes']), '.0f'):>12}"
        f"{_fmt(mib(mem['floor_bytes']), '.0f'):>12}{_fmt(mem['ratio'], '.2f'):>8}"
        f"   (peak - RSS before the records; max over runs; {mem['method']})"
    )
    out(
        f"{'peak RSS over the run [MiB]':<32}{_fmt(mib(mem['package_work_bytes']), '.0f'):>12}"
        f"{_fmt(mib(mem['floor_work_bytes']), '.0f'):>12}{_fmt(mem['work_ratio'], '.2f'):>8}"
        f"   (peak - RSS just before the run; records take "
        f"{_fmt(mib(mem['records_bytes']), '.0f')} MiB)"
    )
    if mem.get("note"):
        out(f"peak memory {mem['note']}")
    for name, err in summary["errors"].items():
        out(f"{name} path failed: {err}")
    if summary["missing"]:
        out(f"package stages not available yet: {', '.join(summary['missing'])}")
    for name, val in summary["checks"].items():
        agree = "OK" if val is not None and val <= RTOL else "MISMATCH"
        out(f"monthly totals {name.replace('_', ' ')}: max relative difference {val:.2e} ({agree})")
    goals = summary["goals"]

    def verdict(flag: bool | None) -> str:
        return "n/a" if flag is None else ("met" if flag else "NOT met")

    out(
        f"goal package time <= {GOAL_TIME} x floor (median paired ratio "
        f"{_fmt(tot['paired_ratio'], '.2f')}): {verdict(goals['time'])}"
    )
    out(
        f"goal package peak memory <= {GOAL_MEMORY} x floor (incl. records, "
        f"{_fmt(mem['ratio'], '.2f')}): {verdict(goals['memory'])}"
    )
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
    parser.add_argument(
        "--repeat", type=int, default=None, help="repetitions (each runs floor and package)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    parser.add_argument("--no-sync", action="store_true", help="skip the HTTP sync benchmark")
    parser.add_argument(
        "--sync-sites", type=int, default=None, help="sandbox sites (3 meters each) for the sync"
    )
    parser.add_argument("--worker", choices=("timing", "sync"), help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    meters = args.meters or (SMOKE_METERS if args.smoke else FULL_METERS)
    repeat = args.repeat or (1 if args.smoke else 3)
    if args.worker == "sync":
        from benchmarks.sync import sync_worker

        sync_worker(args.sync_sites or 12, args.result, smoke=args.smoke)
        return 0
    if args.worker == "timing":
        timing_worker(meters, repeat, args.result)
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        worker_args = ["--worker", "timing", "--meters", str(meters), "--repeat", str(repeat)]
        result = _spawn(worker_args, Path(tmp) / "timing.pkl")
        if "error" in result:  # the worker itself died (not one path in it)
            result = {
                "meters": meters,
                "repeat": repeat,
                "errors": {"timing worker": result["error"]},
            }
        summary = summarise(result)
        if not args.no_sync:
            sites = args.sync_sites or (2 if args.smoke else 12)
            sync_args = ["--worker", "sync", "--sync-sites", str(sites)]
            summary["sync"] = _spawn(
                sync_args + (["--smoke"] if args.smoke else []), Path(tmp) / "sync.pkl"
            )
            s = summary["sync"]
            summary["goals"]["requests"] = None if s.get("error") else s["requests"] == s["minimum"]
    _print(summary, result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2, default=str))
    bad = [v for v in summary["checks"].values() if v is None or v > RTOL]
    failed = "floor" in summary["errors"] or "timing worker" in summary["errors"]
    return 1 if bad or failed or "floor_vs_truth" not in summary["checks"] else 0


if __name__ == "__main__":
    sys.exit(main())
