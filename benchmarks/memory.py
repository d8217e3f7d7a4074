"""Peak resident memory of the current process, measured from a baseline.

On Linux the kernel keeps the high-water mark of resident memory (``VmHWM`` in
``/proc/self/status``) and lets a process reset it by writing ``5`` to ``/proc/self/clear_refs``.
So a worker generates its input, resets the mark, runs the path, and reports
``peak - baseline``: the memory the path itself needed on top of the records it was handed.
Elsewhere (or when the reset is refused) it falls back to ``ru_maxrss``, whose baseline is then
the whole process so far; the report says which method was used.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

__all__ = ["current_rss", "peak_rss", "reset_peak"]

_STATUS = Path("/proc/self/status")
_CLEAR = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def current_rss() -> int:
    """Resident set size now [bytes]."""
    kib = _status_kib("VmRSS")
    if kib is not None:
        return kib * 1024
    import psutil

    return int(psutil.Process().memory_info().rss)


def reset_peak() -> str:
    """Reset the peak to the current RSS; return the method that :func:`peak_rss` will use."""
    try:
        _CLEAR.write_text("5")
    except OSError:
        return "ru_maxrss"
    return "VmHWM"


def peak_rss() -> int:
    """Peak resident set size since the last :func:`reset_peak` (or process start) [bytes]."""
    kib = _status_kib("VmHWM")
    if kib is not None:
        return kib * 1024
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(maxrss if sys.platform == "darwin" else maxrss * 1024)
