"""Sync benchmark: records per second through real HTTP against the sandbox over loopback.

Filled in once the sandbox simulator and the connectors have landed.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

__all__ = ["sync_worker"]


def sync_worker(meters: int, result_file: Path) -> None:
    """Run the sync benchmark and pickle its numbers (or the reason it is n/a)."""
    payload: dict[str, Any]
    try:
        from scaler_workbench.connectors import fetch_resources  # noqa: F401
        from scaler_workbench.sandbox import Sandbox  # noqa: F401
    except ImportError as exc:
        payload = {"error": f"not available yet ({exc})"}
    else:
        payload = {"error": "not implemented yet"}
    with open(result_file, "wb") as fh:
        pickle.dump(payload, fh)
