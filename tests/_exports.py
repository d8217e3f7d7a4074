"""Helpers for comparing a sync's exported files (tests/test_cli.py, tests/test_sync.py)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["export_bytes"]


def export_bytes(out: Path) -> dict[str, bytes]:
    """Every file of ``out/export`` by name -> its bytes, but ``run_summary.json`` and
    ``report.html``.

    The summary (and the HTML report that shows it) holds the run's timings and ids, so it
    differs between runs that exported the same data; every other file must be byte-identical
    for two such runs.
    """
    return {
        p.name: p.read_bytes()
        for p in sorted((out / "export").iterdir())
        if p.name not in ("run_summary.json", "report.html")
    }
