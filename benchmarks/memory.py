"""Peak resident memory of the current process, measured from a baseline.

On Linux the kernel keeps the high-water mark of resident memory (``VmHWM`` in
``/proc/self/status``) and lets a process reset it by writing ``5`` to ``/proc/self/clear_refs``.
So the timing worker resets the mark just before each run of a path and reads it just after:
``peak - RSS just before the run`` is the memory that run needed on top of what the process
already held (the records among it). When the reset is refused or does not take effect,
:func:`reset_peak` says so (``"ru_maxrss"``): the peak is then the whole process's so far and
cannot be attributed to one run, and the report says n/a.
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
    hwm, rss = _status_kib("VmHWM"), _status_kib("VmRSS")
    if hwm is None or rss is None or hwm > rss + max(1024, rss // 100):  # the reset did not hold
        return "ru_maxrss"
    return "VmHWM"


def peak_rss() -> int:
    """Peak resident set size since the last :func:`reset_peak` (or process start) [bytes]."""
    kib = _status_kib("VmHWM")
    if kib is not None:
        return kib * 1024
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(maxrss if sys.platform == "darwin" else maxrss * 1024)
