"""Date-range filters: format ``from``/``to`` parameters and split long ranges into chunks.

A resource with ``[resources.X.date_range]`` is fetched window by window. Windows are half-open
``[start, end)`` in the range's time zone (the profile's by default) and follow local calendar
boundaries: ``chunk = "month"`` cuts at local month starts, ``chunk = 7`` every 7 local days
(a DST day is 23 or 25 hours long, never a shifted midnight).

When the provider answers a window with "range too large" (``too_large``: status + body match),
the window is halved and the halved span is remembered for the remaining windows (see
:class:`SpanLearner`), so an analyst need not know the limit in advance.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from scaler_workbench.connectors._util import construct
from scaler_workbench.exceptions import ProfileError

__all__ = [
    "DATE_FORMATS",
    "DateRange",
    "SpanLearner",
    "Window",
    "make_date_range",
    "parse_when",
    "split_range",
]

#: named parameter formats; any other string containing ``%`` is a strftime pattern
DATE_FORMATS = ("date", "datetime", "datetime_utc", "epoch", "epoch_ms")

_DEFAULT_TOO_LARGE = (
    r"(range|span|interval|period|window|days).{0,60}(too (large|long|big|wide)|exceed|maximum|max)"
)

Window = tuple[datetime, datetime]


def _zone(name: str, key: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ProfileError(f"{key} {name!r} is not an IANA time zone", key=key) from None


def parse_when(value: str | date | datetime, tz: ZoneInfo, *, key: str = "since") -> datetime:
    """An aware datetime from a date, datetime or ISO string; naive values are local to ``tz``."""
    if isinstance(value, str):
        text = value.strip().replace("Z", "+00:00")
        try:
            value = (
                datetime.fromisoformat(text)
                if "T" in text or " " in text
                else date.fromisoformat(text)
            )
        except ValueError:
            raise ProfileError(
                f"{key} {value!r} is not an ISO date or datetime",
                key=key,
                hint="Use e.g. '2024-01-01' or '2024-01-01T00:00:00+00:00'.",
            ) from None
    if isinstance(value, datetime):
        return value.replace(tzinfo=tz) if value.tzinfo is None else value.astimezone(tz)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=tz)
    raise ProfileError(f"{key} must be a date, datetime or ISO string", key=key)


def _local_midnight(d: datetime) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=d.tzinfo)


def _add_days(d: datetime, days: int) -> datetime:
    """Wall-clock addition: same local time ``days`` later (across DST too)."""
    naive = d.replace(tzinfo=None) + timedelta(days=days)
    return naive.replace(tzinfo=d.tzinfo)


def _next_month(d: datetime) -> datetime:
    y, m = (d.year + 1, 1) if d.month == 12 else (d.year, d.month + 1)
    return datetime(y, m, 1, tzinfo=d.tzinfo)


def span_days(window: Window) -> float:
    """Length of a window in days [d] (DST days count as 23/25 hours)."""
    return (window[1] - window[0]).total_seconds() / 86400.0


def split_range(
    start: datetime,
    end: datetime,
    *,
    chunk: str | int | None = "month",
    max_days: int | None = None,
) -> list[Window]:
    """Split ``[start, end)`` into windows of one calendar month or ``chunk`` days at most.

    Parameters
    ----------
    start, end : datetime
        Aware datetimes in the zone whose calendar applies.
    chunk : "month", int or None
        Cut at local month starts, every ``chunk`` local days, or not at all.
    max_days : int, optional
        Also cut any window longer than this many local days (a learned or documented limit).
    """
    if end <= start:
        return []
    if chunk in (None, 0, ""):
        windows = [(start, end)]
    else:
        windows = []
        cur = start
        while cur < end:
            if chunk == "month":
                nxt = _next_month(cur)
            else:
                nxt = _add_days(cur, int(chunk))
            nxt = min(nxt, end)
            windows.append((cur, nxt))
            cur = nxt
    if max_days:
        out: list[Window] = []
        for s, e in windows:
            cur = s
            while cur < e:
                nxt = min(_add_days(cur, max_days), e)
                out.append((cur, nxt))
                cur = nxt
        windows = out
    return windows


@dataclass
class DateRange:
    """How a resource filters by date (``[resources.X.date_range]``).

    Parameters
    ----------
    start_param, end_param : str
        Query parameter names (default ``from`` and ``to``).
    format : str
        ``date`` (YYYY-MM-DD), ``datetime`` (ISO 8601 with the zone's offset), ``datetime_utc``
        (``...Z``), ``epoch`` [s], ``epoch_ms`` [ms], or a strftime pattern.
    end_inclusive : bool
        The API's end is the last day (date) or last second (datetime/epoch) included.
    chunk : "month", int or None
        Window size: calendar months, or a number of days; None sends the whole range.
    max_days : int, optional
        A documented limit on the span of one request [d].
    timezone : str
        Calendar of the windows (default: the profile's ``provider.timezone``).
    since, until : str
        Default range (ISO) when the caller gives none; ``until`` defaults to the end of today.
    too_large_status : list of int
        Statuses that may mean "range too large" (default 400, 403, 413, 422: some providers
        answer 403 "period exceeds ..."); the body must match ``too_large_match`` too, so a 403
        for bad credentials stays an auth error.
    too_large_match : str
        Regular expression on the body that confirms it (case-insensitive); "" turns learning off.
    learn : bool
        Halve and remember the span after a "range too large" answer (default true).
    lookback_days : int
        The API filters records by their START date (bills): ask this many local days [d]
        before the range's start too, so a record that began earlier but reaches into the range
        (a bill straddling ``--since`` or an incremental window's start) is fetched. Use the
        longest billing period (62 covers two-month bills). Default 0.
    """

    start_param: str = "from"
    end_param: str = "to"
    format: str = "date"
    end_inclusive: bool = False
    chunk: str | int | None = "month"
    max_days: int | None = None
    timezone: str = "UTC"
    since: str = ""
    until: str = ""
    too_large_status: list[int] = field(default_factory=lambda: [400, 403, 413, 422])
    too_large_match: str = _DEFAULT_TOO_LARGE
    learn: bool = True
    lookback_days: int = 0

    def __post_init__(self) -> None:
        key = "date_range"
        if self.format not in DATE_FORMATS and "%" not in self.format:
            raise ProfileError(
                f"unknown date_range.format {self.format!r}",
                key=f"{key}.format",
                hint=f"Use one of {', '.join(DATE_FORMATS)} or a strftime pattern.",
            )
        if isinstance(self.chunk, str) and self.chunk not in ("month", ""):
            if self.chunk.isdigit():
                self.chunk = int(self.chunk)
            else:
                raise ProfileError(
                    f"date_range.chunk must be 'month' or a number of days, got {self.chunk!r}",
                    key=f"{key}.chunk",
                )
        if isinstance(self.chunk, int) and self.chunk < 1:
            raise ProfileError("date_range.chunk must be at least 1 day", key=f"{key}.chunk")
        if self.max_days is not None and self.max_days < 1:
            raise ProfileError("date_range.max_days must be at least 1", key=f"{key}.max_days")
        if (
            isinstance(self.lookback_days, bool)
            or not isinstance(self.lookback_days, int)
            or self.lookback_days < 0
        ):
            raise ProfileError(
                "date_range.lookback_days must be a whole number of days >= 0",
                key=f"{key}.lookback_days",
                hint="e.g. lookback_days = 62 for bills filtered by their start date",
            )
        if not self.start_param:
            raise ProfileError("date_range.start_param must be set", key=f"{key}.start_param")
        self.zone = _zone(self.timezone, f"{key}.timezone")
        try:
            self._too_large = (
                re.compile(self.too_large_match, re.I | re.S) if self.too_large_match else None
            )
        except re.error as exc:
            raise ProfileError(
                f"bad too_large_match regex: {exc}", key=f"{key}.too_large_match"
            ) from exc

    # -- range ----------------------------------------------------------------------------
    def resolve(
        self,
        since: str | date | datetime | None,
        until: str | date | datetime | None,
        *,
        now: datetime,
    ) -> Window:
        """The overall ``[start, end)``: arguments, else the profile defaults, else today."""
        since = since if since not in (None, "") else self.since
        if since in (None, ""):
            raise ProfileError(
                "this resource filters by date and needs a start",
                key="date_range.since",
                hint="Pass since=... or set date_range.since in the profile.",
            )
        assert since is not None
        start = parse_when(since, self.zone, key="since")
        until = until if until not in (None, "") else self.until
        if until in (None, ""):
            end = _add_days(_local_midnight(now.astimezone(self.zone)), 1)
        else:
            assert until is not None
            end = parse_when(until, self.zone, key="until")
        if self.format == "date":
            start = _local_midnight(start)
            if end != _local_midnight(end):
                end = _add_days(_local_midnight(end), 1)
        return start, end

    def windows(
        self, since: Any, until: Any, *, now: datetime, max_days: int | None = None
    ) -> list[Window]:
        """Every window to fetch, honouring ``chunk``, ``max_days``, a learned span and
        ``lookback_days`` (the first window starts that many local days earlier)."""
        start, end = self.resolve(since, until, now=now)
        if self.lookback_days:
            start = _add_days(start, -self.lookback_days)
        limits = [d for d in (self.max_days, max_days) if d]
        return split_range(start, end, chunk=self.chunk, max_days=min(limits) if limits else None)

    # -- parameters -----------------------------------------------------------------------
    def _fmt(self, d: datetime) -> str | int:
        if self.format == "date":
            return d.date().isoformat()
        if self.format == "datetime":
            return d.isoformat()
        if self.format == "datetime_utc":
            return d.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if self.format == "epoch":
            return math.floor(d.timestamp())
        if self.format == "epoch_ms":
            return math.floor(d.timestamp() * 1000)
        return d.strftime(self.format)

    def bounds(self, window: Window) -> tuple[str | int, str | int]:
        """A window's start and end in ``format`` (the end adjusted when the API's end is
        inclusive): the values of ``{window.start}`` / ``{window.end}`` in body templates."""
        start, end = window
        if self.end_inclusive:
            end = _add_days(end, -1) if self.format == "date" else end - timedelta(seconds=1)
            if self.format == "epoch_ms":
                end = window[1] - timedelta(milliseconds=1)
        return self._fmt(start), self._fmt(end)

    def params(self, window: Window) -> dict[str, Any]:
        """Query parameters for one window (the end adjusted when the API's end is inclusive)."""
        start, end = self.bounds(window)
        out: dict[str, Any] = {self.start_param: start}
        if self.end_param:
            out[self.end_param] = end
        return out

    def is_too_large(self, status: int, body: str) -> bool:
        """Does this answer mean "the date span is too large"?"""
        return bool(
            self._too_large
            and status in self.too_large_status
            and self._too_large.search(body or "")
        )


def make_date_range(
    spec: Any, *, timezone: str = "UTC", key: str = "date_range"
) -> DateRange | None:
    """Build a :class:`DateRange` from a profile table (``None`` when absent)."""
    if spec is None or spec is False:
        return None
    if isinstance(spec, DateRange):
        return spec
    if not isinstance(spec, dict):
        raise ProfileError(f"{key} must be a table", key=key)
    options = {"timezone": timezone, **spec}
    if isinstance(options.get("too_large_status"), int):
        options["too_large_status"] = [options["too_large_status"]]
    too_large = options.pop("too_large", None)
    if isinstance(too_large, dict):
        if "status" in too_large:
            st = too_large["status"]
            options["too_large_status"] = [st] if isinstance(st, int) else list(st)
        if "match" in too_large:
            options["too_large_match"] = str(too_large["match"])
    try:
        return construct(DateRange, options, key)
    except ProfileError as exc:
        sub = str(exc.context.get("key", "")).split(".", 1)[-1]
        raise ProfileError(exc.message, key=f"{key}.{sub}", hint=exc.hint) from None


@dataclass
class SpanLearner:
    """Remembers the largest span [d] a provider accepted after "range too large" answers."""

    max_days: int | None = None
    min_days: int = 1
    halvings: int = 0

    def halve(self, window: Window) -> list[Window]:
        """Split a refused window in two and remember the new span.

        Raises
        ------
        ValueError
            The window is already ``min_days`` long (the caller raises RangeTooLargeError).
        """
        days = math.ceil(span_days(window) - 1e-6)
        if days <= self.min_days:
            raise ValueError("cannot halve further")
        half = math.ceil(days / 2)
        self.max_days = half if self.max_days is None else min(self.max_days, half)
        self.halvings += 1
        return split_range(window[0], window[1], chunk=None, max_days=half)
