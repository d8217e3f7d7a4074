"""One sync run, end to end: fetch -> pipeline -> validate -> commit state -> export.

:func:`run_sync` is crash-safe and idempotent:

* **One commit point.** Registry, deactivations, accepted rows, quarantine and watermarks are
  written in one SQLite transaction. A process killed before it leaves the previous state; after
  it, the new state. Nothing is half-written.
* **Export from state.** The files are rendered from the committed state (never from the run's
  in-memory frames) into a temporary folder renamed into place, sorted and formatted
  deterministically. Running the same sync twice, or re-running after a crash at any point,
  gives byte-identical files (``run_summary.json`` aside: it holds the run's timestamps).
* **Incremental by whole months.** A resource with ``[resources.X.incremental]`` is fetched from
  the start of the local month that contains ``watermark - lookback_days`` (a day earlier, so a
  provider that reads ``from`` in another zone still delivers the whole month); everything from
  that month on is recomputed from its intervals and replaces the stored rows of the same meters
  (``[W, ...)`` by meter). Monthly aggregates are therefore always built from complete months,
  and an incremental run's export equals a full re-pull's. Other resources are pulled in full.
  ``--since``/``--until`` are rounded to whole local months the same way.
* **Watermarks move only with the data.** The new watermark (the smallest, over parents, of the
  largest cursor value seen) is written in the same transaction, and only for a complete fetch.
* **Guarded deactivation.** Assets and meters that vanished since the last sync are reported;
  they are deactivated only when the entity pull was complete and the drop is plausible
  (at most ``[sync] max_deactivation_fraction`` of the active ones); otherwise the summary says
  why nothing was deactivated.

Fault points for crash tests: set ``SCALER_WORKBENCH_FAULT`` to one of :data:`FAULT_POINTS` and
the process kills itself with SIGKILL when it reaches that point.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from scaler_workbench._secrets import get_logger, redact
from scaler_workbench.clock import Clock, SystemClock
from scaler_workbench.exceptions import ProfileError, SyncError, WorkbenchError
from scaler_workbench.profile import Profile
from scaler_workbench.schema import QUARANTINE, Tables, coerce_frame, empty_frame
from scaler_workbench.store import StateStore

__all__ = [
    "FAULT_ENV",
    "FAULT_POINTS",
    "SyncResult",
    "builtin_sandbox",
    "export_from_state",
    "run_sync",
    "state_path",
]

log = get_logger(__name__)

FAULT_ENV = "SCALER_WORKBENCH_FAULT"
#: Named points where ``SCALER_WORKBENCH_FAULT`` kills the process (crash-safety tests).
FAULT_POINTS = (
    "after-fetch",
    "after-assets",
    "mid-usage",
    "after-commit",
    "during-export",
    "after-export",
)

#: ``fetch(profile, *, windows={resource: (since, until)}, clock) -> (results, request_log)``
Fetch = Callable[..., tuple[Mapping[str, Any], list[dict[str, Any]]]]
Pipeline = Callable[[Profile, Mapping[str, list[dict[str, Any]]]], Tables]
Validate = Callable[[Tables, Profile], Any]
Progress = Callable[[str], None]


def _fault(point: str) -> None:
    if os.environ.get(FAULT_ENV) == point:
        log.warning("fault point %s reached: killing the process", point)
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class SyncResult:
    """What one run did.

    Attributes
    ----------
    run_id : int
        Row id in the state's ``runs`` table (0 for a dry run).
    status : str
        ``success``, ``partial`` (records quarantined, an incomplete pull or a refused
        deactivation) or ``dry-run``.
    mode : str
        ``full`` or ``incremental``.
    export_dir : Path or None
        Folder with the Scaler files.
    files : dict of str to Path
    summary : dict
        The run summary (also written as ``run_summary.json``).
    """

    run_id: int
    status: str
    mode: str
    export_dir: Path | None
    state_path: Path
    files: dict[str, Path] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return 1 if self.status == "partial" else 0

    @property
    def ready(self) -> bool:
        return bool(self.summary.get("ready_to_export", {}).get("ready"))


# -- paths and the builtin sandbox -------------------------------------------------------------
def state_path(profile: Profile, out: str | os.PathLike[str]) -> Path:
    """The state database: ``[sync] state`` relative to ``out`` (default ``state/<name>.sqlite``)."""
    value = str(profile.section("sync").get("state", f"state/{profile.name}.sqlite"))
    p = Path(os.path.expanduser(value))
    return p if p.is_absolute() else Path(out) / p


@contextlib.contextmanager
def builtin_sandbox(profile: Profile, *, seed: int | None = None) -> Iterator[Any]:
    """Start the simulator for the run when the profile's environment asks for it.

    When ``builtin_sandbox = true`` and ``base_url_env`` is unset, a seeded
    :class:`scaler_workbench.sandbox.Sandbox` serves on loopback for the duration; the
    environment variables it names (base URL, credentials) are set and restored afterwards.
    Otherwise this does nothing and yields ``None``.
    """
    env = profile.env()
    if not env.builtin_sandbox or (env.base_url_env and os.environ.get(env.base_url_env)):
        yield None
        return
    from scaler_workbench.sandbox import Sandbox

    kwargs: dict[str, Any] = {} if seed is None else {"seed": seed}
    with Sandbox(**kwargs) as sandbox:
        variables = dict(sandbox.env())
        if env.base_url_env and env.base_url_env not in variables:
            variables[env.base_url_env] = sandbox.url
        saved = {k: os.environ.get(k) for k in variables}
        os.environ.update(variables)
        try:
            yield sandbox
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


# -- default stages (imported lazily: swap any of them in tests) -------------------------------
def _default_fetch(
    profile: Profile,
    *,
    windows: Mapping[str, tuple[Any, Any]],
    clock: Clock,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Fetch every resource with its own date window, parents first, reusing parent records.

    Returns the results and the request log (method, redacted URL, status, duration).
    """
    from scaler_workbench.connectors.client import Client
    from scaler_workbench.connectors.resources import connector_for
    from scaler_workbench.exceptions import QuotaExhaustedError

    client = Client(profile, clock=clock)
    results: dict[str, Any] = {}
    try:
        connector = connector_for(profile, client=client)
        for name in connector.plan_order(list(windows)):
            spec = connector.resource(name)
            parents = results[spec.parent].records if spec.parent else None
            since, until = windows.get(name, (None, None))
            try:
                results[name] = connector.fetch_resource(
                    spec, parent_records=parents, since=since, until=until
                )
            except QuotaExhaustedError as exc:
                partial = getattr(exc, "partial", None)
                if partial is not None:
                    results[name] = partial
                exc.partial = results  # type: ignore[attr-defined]
                raise
        return results, _client_log(client)
    finally:
        client.close()


def _client_log(client: Any) -> list[dict[str, Any]]:
    return [
        {
            "method": e.method,
            "url": e.url,
            "status": e.status,
            "duration_ms": e.elapsed_ms,
        }
        for e in list(getattr(client, "request_log", []))
    ]


def _default_pipeline(profile: Profile, raw: Mapping[str, list[dict[str, Any]]]) -> Tables:
    from scaler_workbench.transform import run_pipeline

    return run_pipeline(profile, raw)


def _default_validate(tables: Tables, profile: Profile) -> Any:
    from scaler_workbench.validation import validate_tables

    return validate_tables(tables, profile)


# -- fetch reports ------------------------------------------------------------------------------
def _report_dict(report: Any) -> dict[str, Any]:
    if report is None:
        return {}
    if isinstance(report, Mapping):
        return dict(report)
    for attr in ("as_dict", "to_dict"):
        fn = getattr(report, attr, None)
        if callable(fn):
            with contextlib.suppress(Exception):
                return dict(fn())
    if hasattr(report, "__dataclass_fields__"):
        return {k: getattr(report, k) for k in report.__dataclass_fields__}
    return dict(getattr(report, "__dict__", {}))


def _is_complete(report: Any) -> tuple[bool, str]:
    """(complete, why not) from a connector's completeness report."""
    d = _report_dict(report)
    if not d:
        return True, ""
    if d.get("complete") is False:
        reasons = d.get("problems") or d.get("errors") or d.get("failed_pages") or []
        return False, "; ".join(map(str, reasons)) if reasons else "the pull was incomplete"
    failed = d.get("failed_pages") or d.get("failures") or []
    if failed:
        n = failed if isinstance(failed, int) else len(failed)
        return False, f"{n} page(s) failed"
    total, count = d.get("total"), d.get("count", d.get("records"))
    if isinstance(total, int) and isinstance(count, int) and total != count:
        return False, f"got {count} records but the provider reported {total}"
    return True, ""


def _raise_if_down(profile: Profile, results: Mapping[str, Any]) -> None:
    """A top-level resource that returned nothing because every page failed: the provider is
    down (or unreachable). Raise instead of committing an empty pull."""
    from scaler_workbench import exceptions
    from scaler_workbench.exceptions import AuthError, ConnectorError, ProviderUnavailableError

    for name, res in results.items():
        if profile.resources.get(name, {}).get("parent") or list(res.records):
            continue
        failed = _report_dict(getattr(res, "report", None)).get("failed_pages") or []
        if not failed:
            continue
        first = failed[0] if isinstance(failed[0], Mapping) else {}
        error = str(first.get("error", ""))
        found = getattr(exceptions, error.split(":", 1)[0].strip(), None)
        cls: type[ConnectorError] = (
            found
            if isinstance(found, type) and issubclass(found, ConnectorError)
            else ProviderUnavailableError
        )
        what = "refused us" if issubclass(cls, AuthError) else "is unavailable"
        raise cls(
            f"the provider {what}: every page of {name!r} failed ({error})",
            provider=profile.name,
            url=first.get("url"),
        )


# -- windows ------------------------------------------------------------------------------------
def _month_start(d: date) -> date:
    return date(d.year, d.month, 1)


def _as_local_date(value: str | date | datetime, tz: ZoneInfo) -> date:
    if isinstance(value, str):
        text = value.strip().replace("Z", "+00:00")
        try:
            value = (
                datetime.fromisoformat(text)
                if ("T" in text or " " in text)
                else date.fromisoformat(text)
            )
        except ValueError:
            raise ProfileError(
                f"{value!r} is not an ISO date or datetime",
                key="since",
                hint="Use e.g. 2024-01-01 or 2024-01-01T00:00:00+00:00.",
            ) from None
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=tz)).astimezone(tz).date()
    return value


def _next_month(d: date) -> date:
    return date(d.year + (d.month == 12), d.month % 12 + 1, 1)


@dataclass(frozen=True)
class _Window:
    """The months a run recomputes: ``[first, end)`` local dates (``None``: open)."""

    first: date | None
    end: date | None

    def request(self, tz: ZoneInfo) -> tuple[datetime | None, datetime | None]:
        """The fetch range: one day of margin on each side (providers read dates in any zone)."""
        since = (
            None
            if self.first is None
            else datetime.combine(self.first - timedelta(days=1), datetime.min.time(), tz)
        )
        until = (
            None
            if self.end is None
            else datetime.combine(self.end + timedelta(days=1), datetime.min.time(), tz)
        )
        return since, until

    def as_dict(self) -> dict[str, str | None]:
        return {
            "first_month": None if self.first is None else self.first.isoformat(),
            "end": None if self.end is None else self.end.isoformat(),
        }


def _sync_options(profile: Profile) -> dict[str, Any]:
    opts = profile.section("sync")
    frac = opts.get("max_deactivation_fraction", 0.2)
    if not isinstance(frac, int | float) or not 0 <= frac <= 1:
        raise ProfileError(
            "[sync] max_deactivation_fraction must be a number in [0, 1]",
            key="sync.max_deactivation_fraction",
        )
    look = opts.get("lookback_days", 2)
    if not isinstance(look, int) or look < 0:
        raise ProfileError(
            "[sync] lookback_days must be a whole number >= 0", key="sync.lookback_days"
        )
    return {"max_fraction": float(frac), "lookback_days": look}


def _incremental_resources(profile: Profile) -> dict[str, dict[str, Any]]:
    return {
        name: dict(res["incremental"])
        for name, res in profile.resources.items()
        if isinstance(res.get("incremental"), dict) and isinstance(res.get("date_range"), dict)
    }


def _new_watermark(records: list[dict[str, Any]], cursor_path: str) -> str | None:
    """Smallest over parents of the largest cursor value (ISO UTC)."""
    if not records:
        return None
    parts = cursor_path.split(".")
    values, parents = [], []
    for r in records:  # one field lookup per raw record; the connector already paid the JSON cost
        v: Any = r
        for p in parts:
            v = v.get(p) if isinstance(v, dict) else None
        values.append(v)
        parents.append(json.dumps(r.get("_parent"), sort_keys=True, default=str))
    ts = pd.to_datetime(pd.Series(values), utc=True, errors="coerce", format="ISO8601")
    frame = pd.DataFrame({"parent": parents, "ts": ts}).dropna()
    if frame.empty:
        return None
    value = frame.groupby("parent")["ts"].max().min()
    return pd.Timestamp(value).isoformat()


def _min_iso(values: Any) -> str | None:
    ts = pd.to_datetime(
        pd.Series(list(values), dtype=object), utc=True, errors="coerce", format="ISO8601"
    )
    ts = ts.dropna()
    return None if ts.empty else pd.Timestamp(ts.min()).isoformat()


# -- entity chain and deactivation ---------------------------------------------------------------
def _entity_resources(profile: Profile) -> set[str]:
    resources = profile.resources
    mapping = profile.section("mapping")
    names: set[str] = set()
    for table in ("assets", "meters"):
        res = (
            mapping.get(table, {}).get("resource") if isinstance(mapping.get(table), dict) else None
        )
        while isinstance(res, str) and res in resources and res not in names:
            names.add(res)
            res = resources[res].get("parent")
    return names


def _ids(frame: pd.DataFrame, column: str) -> set[str]:
    if frame is None or frame.empty or column not in frame:
        return set()
    return set(frame[column].dropna().astype(str))


def _plan_deactivation(
    kind: str,
    active: set[str],
    current: set[str],
    *,
    complete: bool,
    why_incomplete: str,
    max_fraction: float,
) -> dict[str, Any]:
    vanished = sorted(active - current)
    plan: dict[str, Any] = {
        "active_before": len(active),
        "vanished": vanished,
        "deactivated": [],
        "refused": None,
    }
    if not vanished:
        return plan
    fraction = len(vanished) / max(len(active), 1)
    if not complete:
        plan["refused"] = (
            f"{len(vanished)} {kind}(s) vanished but the pull was incomplete ({why_incomplete}); "
            "nothing deactivated"
        )
    elif fraction > max_fraction:
        plan["refused"] = (
            f"{len(vanished)} of {len(active)} active {kind}s vanished ({fraction:.0%}), more than "
            f"[sync] max_deactivation_fraction = {max_fraction:.0%}; nothing deactivated. Check the "
            "provider, then raise the limit for one run if the drop is real"
        )
    else:
        plan["deactivated"] = vanished
    return plan


# -- merging new rows with stored ones ----------------------------------------------------------
def _meter_zones(tables: Tables, frame: pd.DataFrame, default: str) -> pd.Series:
    """Zone per meter id of ``frame``: the rows' own ``timezone``, else the asset's, else default."""
    tz = (
        frame.groupby("meter_id")["timezone"].first()
        if "timezone" in frame
        else pd.Series(dtype=object)
    )
    meters = tables.meters[["meter_id", "asset_id"]].drop_duplicates("meter_id")
    assets = tables.assets[["asset_id", "timezone"]].drop_duplicates("asset_id")
    site = meters.merge(assets, on="asset_id", how="left").set_index("meter_id")["timezone"]
    ids = pd.Index(frame["meter_id"].astype(str).unique())
    out = pd.Series(tz.reindex(ids).astype(object).to_numpy(), index=ids)
    out = out.where(out.notna(), pd.Series(site.reindex(ids).astype(object).to_numpy(), index=ids))
    return out.where(out.notna(), default).astype(str)


def _bounds_ns(zones: pd.Series, day: date | None) -> dict[str, int]:
    if day is None:
        return {}
    cache: dict[str, int] = {}
    out = {}
    for meter, zone in zones.items():
        if zone not in cache:
            cache[zone] = pd.Timestamp(
                datetime.combine(day, datetime.min.time(), ZoneInfo(zone))
            ).value
        out[str(meter)] = cache[zone]
    return out


def _lookup(ids: pd.Series, bounds: Mapping[str, int], fill: int) -> np.ndarray:
    """Exact per-row bound [ns] (nullable ints: a float detour would round nanoseconds)."""
    table = pd.Series(bounds, dtype="Int64")
    return table.reindex(ids.to_numpy()).fillna(fill).to_numpy(dtype="int64")


def _in_window(
    frame: pd.DataFrame, column: str, lo: dict[str, int], hi: dict[str, int]
) -> pd.Series:
    t = frame[column].to_numpy(dtype="datetime64[ns]").astype("int64")
    ids = frame["meter_id"].astype(str)
    keep = np.ones(len(frame), dtype=bool)
    info = np.iinfo(np.int64)
    if lo:  # meters without a bound: no limit
        keep &= t >= _lookup(ids, lo, int(info.min))
    if hi:
        keep &= t < _lookup(ids, hi, int(info.max))
    return pd.Series(keep, index=frame.index)


def _zone_map(tables: Tables, ids: set[str], default: str) -> pd.Series:
    frame = pd.DataFrame({"meter_id": sorted(ids)})
    return _meter_zones(tables, frame, default) if ids else pd.Series(dtype=object)


def _quarantine_mask(
    q: pd.DataFrame, lo: dict[str, int], hi: dict[str, int], meters: set[str] | None = None
) -> np.ndarray:
    """Rows of ``q`` inside the recomputed window: entity rows always; usage/readings rows whose
    key (``meter|time|...``) has its time in ``[lo, hi)`` of its meter (and the meter in
    ``meters`` when given). Rows outside come from the fetch margin and are not this run's."""
    if q.empty:
        return np.zeros(0, dtype=bool)
    series = q["table"].isin(["usage", "readings"]).to_numpy()
    parts = q["record_key"].astype(str).str.split("|", n=2, expand=True)
    meter = parts[0].astype(str)
    if parts.shape[1] > 1:
        t = pd.to_datetime(parts[1], utc=True, errors="coerce", format="ISO8601")
    else:
        t = pd.Series(pd.NaT, index=q.index, dtype="datetime64[ns, UTC]")
    known = t.notna().to_numpy()
    tn = np.where(known, t.to_numpy(dtype="datetime64[ns]").astype("int64"), 0)
    ok = np.ones(len(q), dtype=bool)
    for bounds, inside in ((lo, np.greater_equal), (hi, np.less)):
        if bounds:
            has = meter.isin(list(bounds)).to_numpy()
            ok &= ~(has & known) | inside(tn, _lookup(meter, bounds, 0))
    if meters is not None:
        ok &= meter.isin(meters).to_numpy()
    return ~series | ok


# -- the run -------------------------------------------------------------------------------------
def _counts(tables: Tables) -> dict[str, int]:
    return {name: len(frame) for name, frame in tables.items()}


def _union_quarantine(*frames: pd.DataFrame | None) -> pd.DataFrame:
    parts = [
        coerce_frame(f[[c for c in f.columns if c in QUARANTINE.names]], QUARANTINE)
        for f in frames
        if f is not None and not f.empty
    ]
    if not parts:
        return empty_frame(QUARANTINE)
    q = pd.concat(parts, ignore_index=True)
    return q.drop_duplicates(list(QUARANTINE.key), keep="last").reset_index(drop=True)


def export_from_state(
    store: StateStore,
    export_dir: str | os.PathLike[str],
    *,
    profile: Profile,
    summary: dict[str, Any] | None = None,
    formats: tuple[str, ...] = ("csv", "xlsx"),
    fault_hook: Callable[[str], None] | None = None,
) -> tuple[dict[str, Path], dict[str, Any]]:
    """Render the committed state as Scaler files; return the files and the export checks.

    Active assets and meters go to ``assets.csv``/``meters.csv``, deactivated ones to
    ``deactivated.csv``; all stored usage and readings are exported (history of a deactivated
    meter stays true); the open quarantine goes to ``quarantine.csv``.
    """
    from scaler_workbench.export import coverage_matrix, to_scaler_files

    registry = store.entities()
    inactive = registry[registry["active"] == 0]
    tables = Tables(
        assets=store.read_table("assets"),
        meters=store.read_table("meters"),
        usage=store.read_table("usage"),
        readings=store.read_table("readings"),
    )
    gone = {(k, i) for k, i in zip(inactive["kind"], inactive["entity_id"], strict=True)}
    if gone:
        tables.assets = tables.assets[
            [("asset", a) not in gone for a in tables.assets["asset_id"].astype(str)]
        ].reset_index(drop=True)
        tables.meters = tables.meters[
            [("meter", m) not in gone for m in tables.meters["meter_id"].astype(str)]
        ].reset_index(drop=True)
    quarantine = store.quarantine(status="open")
    cov = coverage_matrix(tables.usage, tables=tables, default_timezone=profile.timezone)
    missing = cov[cov["status"] == "missing"]
    errors = int((quarantine["severity"] == "error").sum()) if not quarantine.empty else 0
    reasons = []
    if errors:
        reasons.append(f"{errors} quarantined record(s) with severity error")
    if len(missing):
        reasons.append(
            f"{len(missing)} missing meter-month(s), e.g. "
            + ", ".join(
                f"{m} {mo}"
                for m, mo in zip(missing["meter_id"][:3], missing["month"][:3], strict=True)
            )
        )
    checks = {
        "coverage": {
            "meters": int(cov["meter_id"].nunique()),
            "meter_months": len(cov),
            **{s: int((cov["status"] == s).sum()) for s in ("actual", "estimated", "missing")},
        },
        "quarantine_open": len(quarantine),
        "ready_to_export": {"ready": not reasons, "reasons": reasons},
    }
    full_summary = None if summary is None else {**summary, **checks}
    files = to_scaler_files(
        tables,
        export_dir,
        quarantine=quarantine,
        deactivated=inactive,
        summary=full_summary,
        formats=formats,
        default_timezone=profile.timezone,
        fault_hook=fault_hook,
    )
    return files, checks


def run_sync(
    profile: Profile,
    *,
    out: str | os.PathLike[str],
    since: str | date | datetime | None = None,
    until: str | date | datetime | None = None,
    full: bool = False,
    dry_run: bool = False,
    formats: tuple[str, ...] = ("csv", "xlsx"),
    clock: Clock | None = None,
    fetch: Fetch | None = None,
    pipeline: Pipeline | None = None,
    validate: Validate | None = None,
    progress: Progress | None = None,
    sandbox_seed: int | None = None,
) -> SyncResult:
    """Run one sync of ``profile``: fetch, transform, validate, commit state, export files.

    Parameters
    ----------
    profile : Profile
        The provider profile (its default environment is used).
    out : path-like
        Output folder: Scaler files go to ``out/export``, state to ``[sync] state`` (relative
        to ``out``, default ``state/<provider>.sqlite``).
    since, until : date, datetime or ISO str, optional
        Limit date-range resources to ``[since, until)``, rounded out to whole local months.
    full : bool
        Ignore watermarks: pull everything and replace the stored rows of every meter seen.
    dry_run : bool
        Fetch and process, but write neither state nor files; the summary says what would change.
    formats : tuple of str
        Export formats (``csv``, ``xlsx``).
    clock : Clock, optional
        For retries and timestamps (tests inject :class:`~scaler_workbench.clock.FakeClock`).
    fetch, pipeline, validate : callable, optional
        Replace a stage (defaults: ``connectors.fetch_resources``, ``transform.run_pipeline``,
        ``validation.validate_tables``).
    progress : callable, optional
        Called with the name of each stage as it starts.
    sandbox_seed : int, optional
        Seed of the builtin sandbox, when the profile starts one.

    Returns
    -------
    SyncResult

    Raises
    ------
    WorkbenchError
        Connector, profile, state or export errors pass through unchanged (the run is recorded
        as failed and nothing is committed); anything unexpected becomes :class:`SyncError`.
    """
    with builtin_sandbox(profile, seed=sandbox_seed):
        return _run(
            profile,
            out=Path(out),
            since=since,
            until=until,
            full=full,
            dry_run=dry_run,
            formats=formats,
            clock=clock or SystemClock(),
            fetch=fetch or _default_fetch,
            pipeline=pipeline or _default_pipeline,
            validate=validate or _default_validate,
            progress=progress or (lambda stage: None),
        )


def _run(
    profile: Profile,
    *,
    out: Path,
    since: Any,
    until: Any,
    full: bool,
    dry_run: bool,
    formats: tuple[str, ...],
    clock: Clock,
    fetch: Fetch,
    pipeline: Pipeline,
    validate: Validate,
    progress: Progress,
) -> SyncResult:
    opts = _sync_options(profile)
    tz = ZoneInfo(profile.timezone)
    spath = state_path(profile, out)
    export_dir = out / "export"
    store = StateStore(spath)
    started = clock.now()
    t0 = time.perf_counter()
    run_id = 0
    try:
        # -- plan: which months each resource recomputes ------------------------------------
        incremental = _incremental_resources(profile)
        marks = store.watermarks()
        user_first = None if since is None else _month_start(_as_local_date(since, tz))
        user_end = None
        if until is not None:
            u = _as_local_date(until, tz)
            user_end = u if u.day == 1 else _next_month(u)
        windows: dict[str, _Window] = {}
        for name in profile.resources:
            first = user_first
            if name in incremental and not full and name in marks and since is None:
                look = int(incremental[name].get("lookback_days", opts["lookback_days"]))
                mark = pd.Timestamp(marks[name]).tz_convert(tz).to_pydatetime()
                first = _month_start((mark - timedelta(days=look)).date())
            windows[name] = _Window(first, user_end)
        # Rows from the first recomputed month on replace the stored rows of the same meters;
        # fully pulled resources deliver older months too, which equal the stored ones.
        if since is not None:
            merge_first, mode = user_first, "full" if full else "range"
        elif incremental and not full and all(windows[n].first for n in incremental):
            merge_first, mode = (
                min(w for n in incremental if (w := windows[n].first)),
                "incremental",
            )
        else:
            merge_first, mode = None, "full"
        merge_window = _Window(merge_first, user_end)
        if not dry_run:
            run_id = store.begin_run(
                profile=profile.name, environment=profile.environment, mode=mode
            )

        # -- fetch: each resource with its own window -----------------------------------
        progress("fetch")
        request_windows = {name: windows[name].request(tz) for name in profile.resources}
        results, requests = fetch(profile, windows=request_windows, clock=clock)
        _raise_if_down(profile, results)
        raw = {name: list(res.records) for name, res in results.items()}
        if not dry_run:
            store.log_requests(requests, run_id=run_id)
        _fault("after-fetch")

        # -- pipeline and validation -----------------------------------------------------
        progress("transform")
        tables = pipeline(profile, raw)
        progress("validate")
        vres = validate(tables, profile)
        accepted: Tables = vres.accepted
        quarantined = _union_quarantine(tables.quarantine, getattr(vres, "quarantined", None))
        q_ids = (
            set(quarantined["record_key"].astype(str).str.split("|").str[0])
            if not quarantined.empty
            else set()
        )
        zone_ids = (
            _ids(tables.meters, "meter_id")
            | _ids(accepted.usage, "meter_id")
            | _ids(accepted.readings, "meter_id")
            | q_ids
        )
        zones_all = _zone_map(tables, zone_ids, profile.timezone)
        if mode == "incremental":
            # only meters fed by an incremental resource are recomputed by window; the others
            # came in full and replace (and re-validate) everything stored for them
            windowed = {
                str(v)
                for name in incremental
                for r in raw.get(name, [])
                for v in (r.get("_parent") or {}).values()
            }
        else:
            windowed = set(zones_all.index)
        # the start bound recomputes whole months of windowed meters; the end bound (--until)
        # holds for every meter
        win_lo = _bounds_ns(zones_all[zones_all.index.isin(windowed)], merge_window.first)
        win_hi = _bounds_ns(zones_all, merge_window.end)
        quarantined = quarantined[_quarantine_mask(quarantined, win_lo, win_hi)].reset_index(
            drop=True
        )

        # -- completeness and deactivation plan --------------------------------------------
        completeness = {
            name: _is_complete(getattr(res, "report", None)) for name, res in results.items()
        }
        entity_res = _entity_resources(profile)
        bad = {n: why for n, (ok, why) in completeness.items() if not ok}
        entity_bad = {n: why for n, why in bad.items() if n in entity_res}
        why = "; ".join(f"{n}: {w}" for n, w in sorted(entity_bad.items()))
        q_meters = set(quarantined.loc[quarantined["table"] == "meters", "record_key"].astype(str))
        q_assets = set(quarantined.loc[quarantined["table"] == "assets", "record_key"].astype(str))
        current = {
            "asset": _ids(tables.assets, "asset_id") | q_assets,
            "meter": _ids(tables.meters, "meter_id") | q_meters,
        }
        deactivation = {
            kind: _plan_deactivation(
                kind,
                store.active_ids(kind),
                current[kind],
                complete=not entity_bad,
                why_incomplete=why,
                max_fraction=opts["max_fraction"],
            )
            for kind in ("asset", "meter")
        }
        summary: dict[str, Any] = {
            "run_id": run_id,
            "profile": profile.name,
            "environment": profile.environment,
            "mode": mode,
            "started_at": started.isoformat(timespec="seconds"),
            "window": merge_window.as_dict(),
            "fetched": {n: len(r) for n, r in sorted(raw.items())},
            "incomplete": dict(sorted(bad.items())),
            "processed": _counts(tables),
            "accepted": _counts(accepted),
            "quarantined_this_run": {
                t: int(n) for t, n in quarantined.groupby("table").size().items()
            }
            if not quarantined.empty
            else {},
            "deactivation": deactivation,
        }
        if dry_run:
            summary["status"] = "dry-run"
            return SyncResult(0, "dry-run", mode, None, spath, {}, summary)

        # -- the commit point --------------------------------------------------------------
        progress("commit")
        watermarks: dict[str, str] = {}
        for name, cfg in incremental.items():
            if name in raw and completeness.get(name, (True, ""))[0]:
                reported = _report_dict(getattr(results[name], "report", None)).get("watermarks")
                new = (
                    _min_iso(reported.values())
                    if reported
                    else _new_watermark(raw[name], str(cfg.get("cursor_path", "")))
                )
                old = marks.get(name)
                if new and (old is None or pd.Timestamp(new) > pd.Timestamp(old)):
                    watermarks[name] = new
        released = 0
        with store.transaction():
            asset_parents: dict[str, str] = {}
            meter_parents = (
                dict(
                    zip(
                        tables.meters["meter_id"].astype(str),
                        tables.meters["asset_id"].astype(str),
                        strict=True,
                    )
                )
                if not tables.meters.empty
                else {}
            )
            summary["reactivated"] = {
                "asset": store.upsert_entities(
                    "asset", current["asset"], run_id=run_id, parents=asset_parents
                ),
                "meter": store.upsert_entities(
                    "meter", current["meter"], run_id=run_id, parents=meter_parents
                ),
            }
            for kind, plan in deactivation.items():
                if plan["deactivated"]:
                    store.deactivate(kind, plan["deactivated"], run_id=run_id)
            store.write_rows("assets", accepted.assets)
            store.write_rows("meters", accepted.meters)
            _fault("after-assets")
            for table, column in (("usage", "start"), ("readings", "timestamp")):
                frame = getattr(accepted, table)
                if frame.empty:
                    continue
                zones = _meter_zones(accepted, frame, profile.timezone)
                lo = {m: v for m, v in win_lo.items() if m in zones.index}
                hi = {m: v for m, v in win_hi.items() if m in zones.index}
                frame = frame[_in_window(frame, column, lo, hi)]
                store.delete_rows(
                    table, meter_ids=list(zones.index), from_ns=lo or None, to_ns=hi or None
                )
                half = len(frame) // 2
                store.write_rows(table, frame.iloc[:half])
                if table == "usage":
                    _fault("mid-usage")
                store.write_rows(table, frame.iloc[half:])
            qcounts = store.record_quarantine(quarantined, run_id=run_id)
            seen = {
                tuple(k)
                for k in quarantined[list(QUARANTINE.key)].astype(str).itertuples(index=False)
            }
            open_rows = store.open_quarantine_ids()
            open_frame = pd.DataFrame(
                [(*k, q) for k, q in open_rows.items()],
                columns=["table", "record_key", "rule", "qid"],
            )
            in_scope = (
                _quarantine_mask(open_frame, win_lo, win_hi, meters=current["meter"])
                if not open_frame.empty
                else np.zeros(0, dtype=bool)
            )
            stale = [
                int(row.qid)
                for row, inside in zip(open_frame.itertuples(index=False), in_scope, strict=True)
                if inside and (row.table, row.record_key, row.rule) not in seen
            ]
            released = store.release_quarantine(
                stale, run_id=run_id, note=f"not seen again in run {run_id}"
            )
            for name, value in watermarks.items():
                store.set_watermark(name, value, run_id=run_id)
            summary["watermarks"] = {**marks, **watermarks}
            summary["quarantine"] = {**qcounts, "released": released}
            summary["stored"] = store.table_counts()
        _fault("after-commit")

        # -- export from state ---------------------------------------------------------
        progress("export")
        partial_reasons = []
        if not quarantined.empty and (quarantined["severity"] == "error").any():
            partial_reasons.append("records quarantined")
        if bad:
            partial_reasons.append(
                "incomplete pull: " + "; ".join(f"{n}: {w}" for n, w in sorted(bad.items()))
            )
        partial_reasons += [p["refused"] for p in deactivation.values() if p["refused"]]
        status = "partial" if partial_reasons else "success"
        summary["status"] = status
        summary["partial_reasons"] = partial_reasons
        summary["finished_at"] = clock.now().isoformat(timespec="seconds")
        summary["duration_s"] = round(time.perf_counter() - t0, 3)

        def hook(point: str) -> None:
            if point.startswith("export:"):
                _fault("during-export")

        files, checks = export_from_state(
            store, export_dir, profile=profile, summary=summary, formats=formats, fault_hook=hook
        )
        summary.update(checks)
        _fault("after-export")
        store.finish_run(
            run_id,
            status=status,
            counts={"accepted": summary["accepted"], "stored": summary["stored"]},
            errors=partial_reasons,
        )
        log.info("sync %s run %d: %s (%s)", profile.name, run_id, status, mode)
        return SyncResult(run_id, status, mode, export_dir, spath, files, summary)
    except WorkbenchError as exc:
        if run_id:
            _record_failure(store, run_id, exc)
        raise
    except Exception as exc:
        if run_id:
            _record_failure(store, run_id, exc)
        raise SyncError(
            f"sync of {profile.name!r} failed: {type(exc).__name__}: {redact(str(exc))}",
            provider=profile.name,
            hint="Re-run with --debug for the traceback; nothing was committed.",
        ) from exc
    finally:
        store.close()


def _status_for(exc: BaseException) -> str:
    from scaler_workbench.exceptions import AuthError, CredentialError, QuotaExhaustedError

    if isinstance(exc, QuotaExhaustedError):
        return "quota_exhausted"
    if isinstance(exc, AuthError | CredentialError):
        return "auth_failed"
    return "failed"


def _record_failure(store: StateStore, run_id: int, exc: BaseException) -> None:
    with contextlib.suppress(WorkbenchError):
        store.finish_run(run_id, status=_status_for(exc), errors=[f"{type(exc).__name__}: {exc}"])


_ = UTC  # re-exported zone constant kept for callers building aware datetimes
