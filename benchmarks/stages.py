"""Per-stage CPU of the package path, for profiling one stage: ``python -m benchmarks.stages``.

``benchmarks.run`` judges the time goal (floor and package interleaved, paired ratios); this
command is the tool used while working on one stage. It runs the package path over the same
synthetic records ``--repeat`` times and prints, per stage, the minimum wall seconds
(``run_pipeline``'s own timings for canonical, units and usage) and CPU seconds
(``time.process_time`` around pipeline, validation and export), which stay readable on a busy
machine. Options::

    --meters M     synthetic meters (default 200; 600 is the benchmark's size, ~6 GB RAM)
    --repeat N     runs; the minimum per stage is printed (default 3)
    --floor        time the floor too and print the CPU ratio
    --dump DIR     write the first run's exported files to DIR (``diff -r`` them against the
                   files of another commit: a speed change must not change a byte)
    --prof FILE    cProfile one more package run into FILE (read it with ``pstats``)
"""

from __future__ import annotations

import argparse
import cProfile
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["main"]


def _once(profile: Any, raw: dict[str, Any], out: str | Path) -> tuple[dict, dict]:
    from scaler_workbench.export import to_scaler_files
    from scaler_workbench.pipeline import run_pipeline
    from scaler_workbench.validation import validate_tables

    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}
    c0 = time.process_time()
    tables = run_pipeline(profile, raw, timings=wall)
    cpu["pipeline"] = time.process_time() - c0
    c0, w0 = time.process_time(), time.perf_counter()
    result = validate_tables(tables, profile)
    cpu["validate"], wall["validate"] = time.process_time() - c0, time.perf_counter() - w0
    c0, w0 = time.process_time(), time.perf_counter()
    to_scaler_files(result.accepted, out, quarantine=result.quarantined, formats=("csv",))
    cpu["export"], wall["export"] = time.process_time() - c0, time.perf_counter() - w0
    return wall, cpu


def main(argv: list[str] | None = None) -> int:
    """Run the stage timer (see the module docstring); returns the exit code."""
    from benchmarks.data import CALORIFIC_VALUE, generate
    from benchmarks.floor import floor_pipeline
    from benchmarks.package import make_profile

    p = argparse.ArgumentParser(prog="python -m benchmarks.stages", description=__doc__)
    p.add_argument("--meters", type=int, default=200)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--floor", action="store_true")
    p.add_argument("--dump")
    p.add_argument("--prof")
    a = p.parse_args(argv)
    profile = make_profile(conflict="last")
    with tempfile.TemporaryDirectory() as d:  # warm the imports (great-expectations, pint)
        _once(profile, generate(3, seed=1, conflict="last").raw, d)
    t0 = time.perf_counter()
    data = generate(a.meters, conflict="last")
    print(
        f"M={a.meters}: {data.n_records:,} records, generated in {time.perf_counter() - t0:.1f} s"
    )
    best_wall: dict[str, float] = {}
    best_cpu: dict[str, float] = {}
    floors: list[float] = []
    for i in range(a.repeat):
        with tempfile.TemporaryDirectory() as d:
            wall, cpu = _once(profile, data.raw, a.dump if (a.dump and i == 0) else d)
            if a.floor:
                c0 = time.process_time()
                floor_pipeline(data.raw, calorific_value=CALORIFIC_VALUE, out_dir=d)
                floors.append(time.process_time() - c0)
        for k, v in wall.items():
            best_wall[k] = min(best_wall.get(k, v), v)
        for k, v in cpu.items():
            best_cpu[k] = min(best_cpu.get(k, v), v)
    print("wall [s] (min):", {k: round(v, 3) for k, v in best_wall.items()})
    total = sum(best_cpu.values())
    print("cpu  [s] (min):", {k: round(v, 3) for k, v in best_cpu.items()}, f"total {total:.3f}")
    if floors:
        print(f"floor cpu [s] (min): {min(floors):.3f}; cpu ratio {total / min(floors):.3f}")
    if a.prof:
        prof = cProfile.Profile()
        with tempfile.TemporaryDirectory() as d:
            prof.enable()
            _once(profile, data.raw, d)
            prof.disable()
        prof.dump_stats(a.prof)
        print("profile written to", a.prof)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
