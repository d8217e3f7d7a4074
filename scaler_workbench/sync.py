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
import hashlib
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

from scaler_workbench import exceptions
from scaler_workbench._rules import resolve_rules
from scaler_workbench._secrets import get_logger, redact
from scaler_workbench.clock import Clock, SystemClock
from scaler_workbench.connectors.client import Client
from scaler_workbench.connectors.resources import (
    FetchReport,
    FetchResult,
    connector_for,
    entity_resources,
    source_file_profile,
)
from scaler_workbench.coverage import MONTH_STATUSES, month_coverage
from scaler_workbench.exceptions import (
    AuthError,
    ConnectorError,
    CredentialError,
    ExportError,
    ProfileError,
    ProviderUnavailableError,
    QuotaExhaustedError,
    SyncError,
    TransportError,
    WorkbenchError,
)
from scaler_workbench.export import format_datetimes, to_scaler_files
from scaler_workbench.notify import notify_on_failure, notify_run, read_notify
from scaler_workbench.pipeline import run_pipeline
from scaler_workbench.profile import Profile
from scaler_workbench.reconciliation import (
    ReconcileCheck,
    parse_provider_totals,
    read_reconcile_checks,
    reconcile_totals,
)
from scaler_workbench.schema import QUARANTINE, Tables, coerce_frame, empty_frame
from scaler_workbench.store import StateStore
from scaler_workbench.units import readings_in_meter_units
from scaler_workbench.validation import validate_tables

__all__ = [
    "FAULT_ENV",
    "FAULT_POINTS",
    "FINGERPRINT_SECTIONS",
    "RESOLVED_BY_POLICY",
    "SyncResult",
    "builtin_sandbox",
    "export_from_state",
    "lock_path",
    "plan_sync",
    "profile_fingerprint",
    "reconciliation_from_state",
    "run_sync",
    "state_path",
    "sync_lock",
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

#: ``fetch(profile, *, windows={resource: (since, until)}, clock[, skip]) -> (results,
#: request_log[, sequences])``; ``skip`` is passed only when a quota-stopped run is resumed.
Fetch = Callable[..., tuple[Any, ...]]
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
        ``success``, ``partial`` (records quarantined, an incomplete pull, a refused
        deactivation or provider totals that do not reconcile), ``quota_exhausted`` (what was
        complete is committed; the next run resumes) or ``dry-run``.
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
    error: Exception | None = field(default=None, repr=False)

    @property
    def exit_code(self) -> int:
        """0 success, 1 partial, 4 quota exhausted (resumable)."""
        return {"partial": 1, "quota_exhausted": 4}.get(self.status, 0)

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
def builtin_sandbox(
    profile: Profile, *, seed: int | None = None, force: bool = False, traps: bool = False
) -> Iterator[Any]:
    """Start the simulator for the run when the profile's environment asks for it.

    When ``builtin_sandbox = true`` and ``base_url_env`` is unset (or ``force``, as the demo
    does to know its ground truth), a seeded :class:`scaler_workbench.sandbox.Sandbox` serves
    on loopback for the duration; the environment variables it names (base URL, credentials)
    are set and restored afterwards. Otherwise this does nothing and yields ``None``.
    ``traps=True`` plants the sandbox's data traps (the demo does).
    """
    env = profile.env()
    if not force and (
        not env.builtin_sandbox or (env.base_url_env and os.environ.get(env.base_url_env))
    ):
        yield None
        return
    # Lazy on purpose: the simulator (its data generator and HTTP server) is loaded only when a
    # profile asks for it, never by a sync against a real provider.
    from scaler_workbench.sandbox import Sandbox

    kwargs: dict[str, Any] = {} if seed is None else {"seed": seed}
    if traps:
        kwargs["traps"] = True
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


# -- default stages (swap any of them in tests) -------------------------------------------------
def _pkey(params: Mapping[str, Any] | None) -> str:
    """A sequence's parent key, as in ``FetchReport.watermarks`` (``""`` for a top-level one)."""
    return "&".join(f"{k}={v}" for k, v in sorted((params or {}).items()))


def _merge_reports(name: str, parts: list[Any]) -> Any:
    """One resource's report from the reports of its per-parent fetches."""
    report = FetchReport(resource=name)
    for r in parts:
        report.pages += r.pages
        report.records += r.records
        if r.reported_total is not None:
            report.reported_total = (report.reported_total or 0) + r.reported_total
        report.total_mismatches += r.total_mismatches
        report.duplicates += r.duplicates
        report.duplicate_ids += r.duplicate_ids[: max(0, 100 - len(report.duplicate_ids))]
        report.failed_pages += r.failed_pages
        report.incomplete += list(getattr(r, "incomplete", []))
        report.requests_sent += r.requests_sent
        report.windows += r.windows
        report.parents += r.parents
        if r.learned_max_days:
            report.learned_max_days = min(
                report.learned_max_days or r.learned_max_days, r.learned_max_days
            )
        report.watermarks.update(r.watermarks)
        report.elapsed_s += r.elapsed_s
        for rule, n in (getattr(r, "filtered", None) or {}).items():
            report.filtered[rule] = report.filtered.get(rule, 0) + n
    return report


def _default_fetch(
    profile: Profile,
    *,
    windows: Mapping[str, tuple[Any, Any]],
    clock: Clock,
    skip: Mapping[str, Any] | None = None,
    learned_spans: Mapping[str, int] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Fetch every resource with its own date window, parents first, one parent at a time.

    Each parent's sequence (all its windows and pages) is one ``fetch_resource`` call, so a
    quota stop knows exactly which sequences finished. ``skip`` maps a resource to parent keys
    (``""``: a top-level resource) fetched completely by an earlier, quota-stopped run; they are
    not requested again (a resource other resources need as parent is always fetched).

    Returns the results, the request log (method, redacted URL, status, duration) and per
    resource the ``done``, ``skipped`` and ``remaining`` sequences (parent params dicts) and
    ``unknown`` (its parents were not all listed). On :class:`QuotaExhaustedError` the
    exception carries ``partial`` (results so far: finished sequences only), ``sequences`` and
    ``requests``.
    """
    client = Client(profile, clock=clock)
    client.learned_spans.update(learned_spans or {})  # spans learned by earlier runs
    entity = _entity_resources(profile)
    results: dict[str, Any] = {}
    sequences: dict[str, dict[str, Any]] = {}
    skipping = {r: set(v) for r, v in (skip or {}).items()}
    try:
        connector = connector_for(profile, client=client)
        order = connector.plan_order(list(windows))
        needed = {connector.resource(n).parent for n in order} - {""}
        for i, name in enumerate(order):
            spec = connector.resource(name)
            since, until = windows.get(name, (None, None))
            state: dict[str, Any] = {
                "done": [],
                "skipped": [],
                "remaining": [],
                "failed": [],
                "unknown": False,
            }
            sequences[name] = state
            gone = set() if name in needed else skipping.get(name, set())
            if spec.parent:
                seqs: list[tuple[dict[str, Any], dict[str, Any]]] = []
                seen: set[str] = set()
                for rec in results[spec.parent].records:
                    values = connector.parent_values(spec, [rec])
                    if values and _pkey(values[0]) not in seen:
                        seen.add(_pkey(values[0]))
                        seqs.append((values[0], rec))
            else:
                seqs = [({}, {})]
            todo: list[dict[str, Any]] = []
            for params, _rec in seqs:
                (state["skipped"] if _pkey(params) in gone else todo).append(params)
            state["remaining"] = list(todo)
            parts, records = [], []
            try:
                for params, rec in seqs:
                    if _pkey(params) in gone:
                        continue
                    res = connector.fetch_resource(
                        spec,
                        parent_records=[rec] if spec.parent else None,
                        since=since,
                        until=until,
                    )
                    parts.append(res.report)
                    records.extend(res.records)
                    state["remaining"].remove(params)
                    state["done"].append(params)
                    if res.report.failed_pages or not res.report.complete:
                        if name in entity and _only_duplicates(res.report):
                            # every record arrived, some twice: transform keeps one and
                            # quarantines the others (duplicate_id); the list still counts as
                            # incomplete for deactivation (_is_complete), but holds no data
                            continue
                        state["failed"].append(params)  # held back, fetched again on resume
            except QuotaExhaustedError as exc:
                report = _merge_reports(name, parts)
                report.stopped = "quota"
                results[name] = FetchResult(records, report)
                for later in order[i + 1 :]:
                    lspec = connector.resource(later)
                    lstate: dict[str, Any] = {
                        "done": [],
                        "skipped": [],
                        "remaining": [],
                        "unknown": False,
                    }
                    sequences[later] = lstate
                    if not lspec.parent:
                        lstate["remaining"] = [{}]
                    elif lspec.parent in results and not sequences[lspec.parent]["remaining"]:
                        lstate["remaining"] = connector.parent_values(
                            lspec, results[lspec.parent].records
                        )
                    else:
                        lstate["unknown"] = True
                exc.partial = results  # type: ignore[attr-defined]
                exc.sequences = sequences  # type: ignore[attr-defined]
                exc.requests = _client_log(client)  # type: ignore[attr-defined]
                raise
            report = _merge_reports(name, parts)
            if spec.parent:
                report.parents = len(seqs)
            results[name] = FetchResult(records, report)
            log.info("%s", report.summary())
        return results, _client_log(client), sequences
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


def _default_pipeline(
    profile: Profile,
    raw: Mapping[str, list[dict[str, Any]]],
    *,
    filtered: dict[str, dict[str, int]] | None = None,
) -> Tables:
    return run_pipeline(profile, raw, filtered=filtered)


def _default_validate(tables: Tables, profile: Profile) -> Any:
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


def _is_complete(report: Any, *, ignore_stop: bool = False) -> tuple[bool, str]:
    """(complete, why not) from a connector's completeness report.

    Reads the report's own ``complete`` (a property of :class:`FetchReport`, which a plain
    field dump misses) and each sign of an incomplete pull: failed pages, record counts that
    differ from an announced total, duplicate records, an early stop. ``ignore_stop`` leaves
    out a quota stop (reported on its own).
    """
    d = _report_dict(report)
    if not d and report is None:
        return True, ""
    reasons: list[str] = []
    if d.get("stopped") and not ignore_stop:
        reasons.append(f"stopped: {d['stopped']}")
    failed = d.get("failed_pages") or d.get("failures") or []
    if failed:
        n = failed if isinstance(failed, int) else len(failed)
        reasons.append(f"{n} page(s) failed")
    mism = d.get("total_mismatches") or []
    if mism:
        n = mism if isinstance(mism, int) else len(mism)
        reasons.append(f"{n} sequence(s) with fewer or more records than the provider announced")
    if d.get("duplicates"):
        reasons.append(f"{d['duplicates']} duplicate record(s)")
    total, count = d.get("total"), d.get("count", d.get("records"))
    if isinstance(total, int) and isinstance(count, int) and total != count:
        reasons.append(f"got {count} records but the provider reported {total}")
    flag = getattr(report, "complete", d.get("complete"))
    if flag is False and not reasons and not (ignore_stop and d.get("stopped")):
        problems = d.get("problems") or d.get("errors") or []
        reasons.append("; ".join(map(str, problems)) if problems else "the pull was incomplete")
    return (not reasons), "; ".join(reasons)


def _only_duplicates(report: Any) -> bool:
    """A report whose only flaw is records that came twice (none missing, none failed)."""
    d = _report_dict(report)
    return bool(
        d.get("duplicates")
        and not (d.get("failed_pages") or d.get("failures"))
        and not d.get("total_mismatches")
        and not d.get("stopped")
        and all("duplicate record" in str(i.get("why", "")) for i in d.get("incomplete") or [])
    )


def _incomplete_windows(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every sequence not fetched completely: ``{resource, parent, window, why}``, sorted."""
    out = []
    for name, res in results.items():
        d = _report_dict(getattr(res, "report", None))
        for item in d.get("incomplete") or []:
            out.append(
                {
                    "resource": name,
                    "parent": _pkey(item.get("parent")) or None,
                    "window": item.get("window"),
                    "why": str(item.get("why", "")),
                }
            )
    return sorted(
        out, key=lambda x: (x["resource"], x["parent"] or "", x["window"] or "", x["why"])
    )


def _raise_if_down(profile: Profile, results: Mapping[str, Any]) -> None:
    """A top-level resource that returned nothing because every page failed: the provider is
    down (or unreachable). Raise instead of committing an empty pull."""
    for name, res in results.items():
        if profile.resources.get(name, {}).get("parent") or list(res.records):
            continue
        failed = _report_dict(getattr(res, "report", None)).get("failed_pages") or []
        if not failed:
            continue
        first = failed[0] if isinstance(failed[0], Mapping) else {}
        error = str(first.get("error", ""))
        kind, _, cause = error.partition(":")
        found = getattr(exceptions, kind.strip(), None)
        # a refusal keeps its class (exit 3), a path the provider does not know too (404: exit
        # 2); anything else on every page (errors after the retries, HTML or unparseable
        # bodies) means the provider is unavailable (exit 5)
        cls: type[ConnectorError] = (
            found
            if isinstance(found, type)
            and issubclass(
                found,
                AuthError
                | TransportError
                | ProviderUnavailableError
                | exceptions.ResourceNotFoundError,
            )
            else ProviderUnavailableError
        )
        what = (
            "refused us"
            if issubclass(cls, AuthError)
            else "does not know this path"
            if issubclass(cls, exceptions.ResourceNotFoundError)
            else "rejected the request"
            if issubclass(cls, exceptions.RequestRejectedError)
            else "sent answers the profile cannot read (check the resource's format and "
            "encoding), or is unavailable"
            if isinstance(found, type) and issubclass(found, exceptions.ResponseParseError)
            else "is unavailable"
        )
        # the cause first (a long provider body can then be cut without losing it)
        raise cls(
            f"{(cause or error).strip()} (every page of {name!r} failed: the provider {what})",
            provider=profile.name,
            url=first.get("url"),
            status=first.get("status"),
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

    def request(
        self, tz: ZoneInfo, *, margin_days: int = 1
    ) -> tuple[datetime | None, datetime | None]:
        """The fetch range: ``margin_days`` of margin on each side (a provider may read
        datetimes in another zone); 0 for date-only parameters (see :func:`_margin_days`)."""
        margin = timedelta(days=margin_days)
        since = (
            None
            if self.first is None
            else datetime.combine(self.first - margin, datetime.min.time(), tz)
        )
        until = (
            None
            if self.end is None
            else datetime.combine(self.end + margin, datetime.min.time(), tz)
        )
        return since, until

    def as_dict(self) -> dict[str, str | None]:
        return {
            "first_month": None if self.first is None else self.first.isoformat(),
            "end": None if self.end is None else self.end.isoformat(),
        }


def _margin_days(profile: Profile, resource: str) -> int:
    """One day of margin where datetimes may be read in another zone, or where register
    readings need their neighbours (``[mapping.readings]`` differences); none for other
    resources filtered by date-only parameters (whole local days: it would only cost requests).
    """
    date_range = profile.resources.get(resource, {}).get("date_range")
    if not (isinstance(date_range, Mapping) and date_range.get("format", "date") == "date"):
        return 1
    readings = profile.section("mapping").get("readings") or {}
    sources = [readings] if "resource" in readings else list(readings.values())
    for src in sources:
        res = src.get("resource") if isinstance(src, Mapping) else None
        if resource == res or (isinstance(res, list) and resource in res):
            return 1
    return 0


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
    change = opts.get("on_profile_change", "recompute")
    if change not in ("recompute", "refuse"):
        raise ProfileError(
            "[sync] on_profile_change must be 'recompute' or 'refuse'",
            key="sync.on_profile_change",
        )
    return {"max_fraction": float(frac), "lookback_days": look, "on_profile_change": change}


#: the profile sections whose change alters what the stored history would be
FINGERPRINT_SECTIONS = ("mapping", "units", "validation")


def profile_fingerprint(profile: Profile) -> str:
    """A digest of the profile's ``[mapping]``, ``[units]`` and ``[validation]`` sections.

    Parameters
    ----------
    profile : Profile

    Returns
    -------
    str
        ``sha256:<hex>`` of the sections as canonical JSON (sorted keys); equal for profiles
        that map, convert and validate alike, whatever their comments or key order.

    Raises
    ------
    Nothing
        Values JSON cannot hold are written as text.
    """
    data = {name: profile.section(name) for name in FINGERPRINT_SECTIONS}
    text = json.dumps(data, sort_keys=True, default=str, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _stored_fingerprint(store: StateStore) -> tuple[str | None, int | None]:
    """(fingerprint, run id) of the last run that committed (None: none recorded)."""
    runs = store.runs(limit=1000)
    for row in runs.itertuples(index=False):
        if row.status not in ("success", "partial", "quota_exhausted"):
            continue
        with contextlib.suppress(ValueError, TypeError):
            fp = json.loads(row.counts or "{}").get("fingerprint")
            return (str(fp) if fp else None), int(row.run_id)
    return None, None


def _profile_change(
    profile: Profile,
    store: StateStore,
    *,
    full: bool,
    since: Any,
    until: Any,
    policy: str,
) -> dict[str, Any] | None:
    """What a change of mapping, units or validation since the last committed run means.

    ``None`` when nothing changed (or nothing was recorded, or the run is a full unbounded
    one anyway). Otherwise ``{"from_run", "before", "now", "action"}`` with action
    ``recompute`` (the run becomes a full one: every stored meter's history and quarantine
    of every stage are recomputed); raises :class:`ProfileError` (exit 2) when the profile
    says ``refuse`` or the run is limited by ``--since``/``--until``.
    """
    now = profile_fingerprint(profile)
    before, run_id = _stored_fingerprint(store)
    if before is None or before == now:
        return None
    info = {"from_run": run_id, "before": before, "now": now, "action": "recompute"}
    if full and since is None and until is None:
        return info
    if policy == "refuse" or since is not None or until is not None:
        raise ProfileError(
            f"the profile's {'/'.join(FINGERPRINT_SECTIONS)} changed since run {run_id}: an "
            "incremental or date-limited run would mix history computed two ways",
            key="sync.on_profile_change",
            hint="Run `scaler-workbench sync --full` once (without --since/--until) to "
            "recompute the whole history with the new profile.",
        )
    return info


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
    # one definition with the fetch order (entities first): a list of resources counts too
    return entity_resources(profile)


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


#: quarantine rows a stated policy already resolved: ``(stage, rule)``. A duplicate set aside
#: by the usage conflict policy (a restated bill replaced by its later revision, the same
#: interval sent twice) is reported in quarantine.csv but never makes a run partial.
RESOLVED_BY_POLICY: frozenset[tuple[str, str]] = frozenset({("usage", "duplicate")})


def _resolved_by_policy(q: pd.DataFrame) -> np.ndarray:
    """Per row of a quarantine frame: resolved by a stated policy (reported, never blocking)."""
    if q is None or q.empty:
        return np.zeros(0, dtype=bool)
    pairs = zip(q["stage"].astype(str), q["rule"].astype(str), strict=True)
    return np.fromiter((p in RESOLVED_BY_POLICY for p in pairs), dtype=bool, count=len(q))


def reconciliation_from_state(store: StateStore, profile: Profile) -> pd.DataFrame:
    """The reconciliation table: stored provider totals beside the stored (exported) usage.

    Parameters
    ----------
    store : StateStore
        The sync's state (``provider_totals`` and ``usage``).
    profile : Profile
        Its ``[reconcile.*]`` checks give the names and tolerances.

    Returns
    -------
    pandas.DataFrame
        Columns of :data:`scaler_workbench.reconciliation.RECONCILE_COLUMNS`; empty when the
        profile has no ``[reconcile.*]`` checks.

    Raises
    ------
    ProfileError
        A malformed ``[reconcile.*]`` table.
    StateError
        The state database cannot be read.
    """
    checks = read_reconcile_checks(profile)
    totals = store.provider_totals()
    totals = totals[totals["check"].isin([c.name for c in checks])]
    return reconcile_totals(
        store.read_table("usage"), totals, checks=checks, meters=store.read_table("meters")
    )


def _finite_max(values: pd.Series) -> float | None:
    v = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    v = v[np.isfinite(v)]
    return float(v.max()) if v.size else None


def _reconciliation_check(frame: pd.DataFrame, profile: Profile) -> dict[str, Any]:
    beyond = frame[~frame["within_tolerance"].astype(bool)]
    per = {
        str(name): {
            "compared": len(g),
            "within_tolerance": int(g["within_tolerance"].sum()),
            "beyond_tolerance": int((~g["within_tolerance"].astype(bool)).sum()),
            "max_relative": _finite_max(g["relative"]),
        }
        for name, g in frame.groupby("check", sort=True)
    }
    sample = beyond.head(20)
    starts = format_datetimes(sample["start"], profile.timezone) if len(sample) else []
    mismatches = [
        {
            "check": r.check,
            "meter_id": r.meter_id,
            "start": str(st),
            "exported": float(r.exported),
            "provider": None if pd.isna(r.provider) else float(r.provider),
            "unit": None if pd.isna(r.unit) else str(r.unit),
            "relative": None if pd.isna(r.relative) or np.isinf(r.relative) else float(r.relative),
            "note": r.note,
        }
        for r, st in zip(sample.itertuples(index=False), starts, strict=True)
    ]
    reasons = []
    if len(beyond):
        first = mismatches[0]
        reasons.append(
            f"reconciliation: {len(beyond)} of {len(frame)} provider total(s) differ beyond "
            f"tolerance, e.g. {first['check']} {first['meter_id']} from {first['start']}: "
            f"exported {first['exported']:.6g} vs provider "
            + (
                f"{first['provider']:.6g} {first['unit'] or ''}".rstrip()
                if first["provider"] is not None
                else f"unreadable ({first['note']})"
            )
            + " (reconciliation.csv)"
        )
    return {"checks": per, "mismatches": mismatches, "reasons": reasons}


def export_from_state(
    store: StateStore,
    export_dir: str | os.PathLike[str],
    *,
    profile: Profile,
    summary: dict[str, Any] | None = None,
    formats: tuple[str, ...] = ("csv", "xlsx"),
    fault_hook: Callable[[str], None] | None = None,
    on_checks: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[dict[str, Path], dict[str, Any]]:
    """Render the committed state as Scaler files; return the files and the export checks.

    Active assets and meters go to ``assets.csv``/``meters.csv``, deactivated ones to
    ``deactivated.csv``; all stored usage and readings are exported (history of a deactivated
    meter stays true); the open quarantine goes to ``quarantine.csv``; with ``[reconcile.*]``
    checks, ``reconciliation.csv`` puts the stored provider totals beside the exported ones.
    ``on_checks(checks)`` is called before anything is written (the run sets its status).
    """
    registry = store.entities()
    inactive = registry[registry["active"] == 0]
    tables = Tables(
        assets=store.read_table("assets"),
        meters=store.read_table("meters"),
        usage=store.read_table("usage"),
        readings=store.read_table("readings"),
    )
    # registers are exported in their meter's own unit (an m³ gas register stays in m³)
    tables.readings = readings_in_meter_units(tables.readings, tables.meters, profile)
    gone = {(k, i) for k, i in zip(inactive["kind"], inactive["entity_id"], strict=True)}
    if gone:
        tables.assets = tables.assets[
            [("asset", a) not in gone for a in tables.assets["asset_id"].astype(str)]
        ].reset_index(drop=True)
        tables.meters = tables.meters[
            [("meter", m) not in gone for m in tables.meters["meter_id"].astype(str)]
        ].reset_index(drop=True)
    quarantine = store.quarantine(status="open")
    # months judged by interval/day counts, active periods and billing lag (issue 13 items
    # 2-4); missing and partial months are not ready
    cov = month_coverage(
        tables.usage,
        tables=tables,
        timezone=profile.timezone,
        min_share=float(resolve_rules(profile)["missing_intervals"].param("min_share")),
        # nulls the profile declares "no data" were delivered: they do not make a month partial
        count_nulls=profile.missing_values == "no_data",
    )
    resolved = _resolved_by_policy(quarantine)
    errors = (
        int(((quarantine["severity"] == "error").to_numpy() & ~resolved).sum())
        if not quarantine.empty
        else 0
    )
    reasons = []
    if errors:
        reasons.append(f"{errors} quarantined record(s) with severity error")
    with_data = _ids(tables.usage, "meter_id") | _ids(tables.readings, "meter_id")
    no_data = sorted(_ids(tables.meters, "meter_id") - with_data)
    if no_data:
        reasons.append(
            f"meter_without_data: {len(no_data)} meter(s) with no usage or readings at all, "
            f"e.g. {', '.join(no_data[:3])} (a stale or mistyped id, or a meter not reached)"
        )
    for state in ("missing", "partial"):
        bad = cov[cov["status"] == state]
        if len(bad):
            reasons.append(
                f"{len(bad)} {state} meter-month(s), e.g. "
                + ", ".join(
                    f"{m} {mo}" for m, mo in zip(bad["meter_id"][:3], bad["month"][:3], strict=True)
                )
            )
    pending = store.resume_plan()
    if pending:
        reasons.append(
            f"run {pending['stopped_run']} stopped on the provider's quota; the next sync "
            "fetches what remains"
        )
    recon = None
    recon_check: dict[str, Any] = {}
    if read_reconcile_checks(profile):
        recon = reconciliation_from_state(store, profile)
        recon_check = _reconciliation_check(recon, profile)
        reasons += recon_check["reasons"]
    checks: dict[str, Any] = {
        "coverage": {
            "meters": int(cov["meter_id"].nunique()),
            "meter_months": len(cov),
            **{s: int((cov["status"] == s).sum()) for s in MONTH_STATUSES},
        },
        "quarantine_open": len(quarantine),
        "quarantine_resolved_by_policy": int(resolved.sum()),
        "meters_without_data": no_data,
        "ready_to_export": {"ready": not reasons, "reasons": reasons},
    }
    if recon is not None:
        checks["reconciliation"] = recon_check
    if on_checks is not None:
        on_checks(checks)
    full_summary = None if summary is None else {**summary, **checks}
    with _export_failure_says_state_is_kept(export_dir):
        files = to_scaler_files(
            tables,
            export_dir,
            quarantine=quarantine,
            deactivated=inactive,
            reconciliation=recon,
            summary=full_summary,
            formats=formats,
            default_timezone=profile.timezone,
            coverage=cov,
            report=True,
            fault_hook=fault_hook,
        )
    return files, checks


_EXPORT_AFTER_COMMIT_HINT = (
    "The data is committed to the state; fix the cause and run `scaler-workbench export "
    "<profile> --out <out>` to write the files from it (no fetch needed)."
)


def lock_path(state: str | os.PathLike[str]) -> Path:
    """The sync lock file beside the state database: ``<state>.lock``."""
    p = Path(state)
    return p.with_name(p.name + ".lock")


@contextlib.contextmanager
def sync_lock(state: str | os.PathLike[str], *, provider: str = "") -> Iterator[Path]:
    """Hold the one-sync-at-a-time lock of the state ``state`` for the ``with`` block.

    An OS-level lock (``filelock``: ``flock`` on POSIX, ``msvcrt`` on Windows) on
    ``<state>.lock``: the operating system releases it when the holder exits, so a lock left by
    a killed process (SIGKILL included) is taken over by the next run, which says so (a warning
    naming the pid kept in ``<state>.lock.owner``); its ``running`` run is then marked
    ``interrupted`` as before.

    Parameters
    ----------
    state : path-like
        The state database (see :func:`state_path`); its folder is created.
    provider : str
        For the error message.

    Yields
    ------
    Path
        The lock file.

    Raises
    ------
    SyncLockedError
        Another process (or another thread of this one) holds the lock: nothing was touched.
    """
    from filelock import FileLock, Timeout

    from scaler_workbench.exceptions import SyncLockedError

    path = lock_path(state)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path, thread_local=False)
    try:
        lock.acquire(blocking=False)
    except Timeout:
        raise SyncLockedError(
            f"another sync of {provider or 'this profile'!r} is running on {str(state)!r}",
            provider=provider,
        ) from None
    owner = path.with_name(path.name + ".owner")  # who holds it: gone after a clean release
    try:
        with contextlib.suppress(OSError):
            previous = owner.read_text(encoding="utf-8").strip()
            log.warning(
                "took over the sync lock of process %s, which ended without releasing it "
                "(killed?); its run is marked interrupted",
                previous or "?",
            )
        with contextlib.suppress(OSError):
            owner.write_text(f"{os.getpid()}\n", encoding="utf-8")
        yield path
    finally:
        with contextlib.suppress(OSError):
            owner.unlink()
        lock.release()


@contextlib.contextmanager
def _export_failure_says_state_is_kept(export_dir: str | os.PathLike[str]) -> Iterator[None]:
    """An export failure (the state is already committed) says so and how to re-export."""
    try:
        yield
    except ExportError as exc:
        exc.hint = _EXPORT_AFTER_COMMIT_HINT
        raise
    except WorkbenchError:
        raise
    except Exception as exc:
        raise ExportError(
            f"writing the export to {str(export_dir)!r} failed: {type(exc).__name__}: "
            f"{redact(str(exc))}",
            hint=_EXPORT_AFTER_COMMIT_HINT,
        ) from exc


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
    from_file: str | os.PathLike[str] | None = None,
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
        Replace a stage (defaults: ``connectors.fetch_resources``, ``pipeline.run_pipeline``,
        ``validation.validate_tables``).
    progress : callable, optional
        Called with the name of each stage as it starts.
    sandbox_seed : int, optional
        Seed of the builtin sandbox, when the profile starts one.
    from_file : path-like, optional
        Read the provider's export file instead of its API (a Green Button Download My Data
        XML): the profile's connector must read files
        (:func:`~scaler_workbench.connectors.resources.source_file_profile`); same mapping,
        state and export as an API sync.

    Returns
    -------
    SyncResult

    Raises
    ------
    QuotaExhaustedError
        The provider's quota ran out. What was fetched completely (whole parent sequences;
        a meter's data only when all of its sequences came) is committed, the files are
        exported, and ``exc.result`` holds the :class:`SyncResult` (status ``quota_exhausted``,
        summary ``remaining``). The next run with the same arguments resumes it: the same
        windows, fetching only the sequences that remain (parents are listed again).
    SyncLockedError
        Another sync of the same state is running (:func:`sync_lock`): this one touched nothing.
    WorkbenchError
        Connector, profile and state errors pass through unchanged (the run is recorded as
        failed and nothing is committed); an :class:`ExportError` comes after the commit (the
        state holds the data, ``scaler-workbench export`` re-writes the files); anything
        unexpected becomes :class:`SyncError`.
    """
    if from_file is not None:
        profile = source_file_profile(profile, from_file)
    notify = read_notify(profile)  # a bad [notify] is a profile error before anything runs
    with (
        notify_on_failure(profile, notify),
        sync_lock(state_path(profile, out), provider=profile.name),
        builtin_sandbox(profile, seed=sandbox_seed),
    ):
        result = _run(
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
    if not dry_run:
        notify_run(profile, status=result.status, result=result, config=notify)
    if result.status == "quota_exhausted":
        cause = result.error
        left = result.summary.get("remaining", {})
        exc = QuotaExhaustedError(
            f"quota stop: {getattr(cause, 'message', cause)}; committed the "
            f"{result.summary.get('committed_meters', 0)} meter(s) fetched completely in this run, "
            f"{sum(len(v) if isinstance(v, list) else 1 for v in left.values())} sequence(s) of "
            f"{', '.join(sorted(left)) or '-'} remain",
            provider=profile.name,
            hint="Run the sync again after the quota resets: it fetches only what remains "
            "(run_summary.json 'remaining'); files in the export folder hold what was committed.",
        )
        exc.result = result  # type: ignore[attr-defined]
        exc.partial = getattr(cause, "partial", None)  # type: ignore[attr-defined]
        raise exc from cause
    return result


def _iso_or_none(value: Any) -> str | None:
    return None if value is None else pd.Timestamp(value).isoformat()


def _dt_or_none(value: Any) -> datetime | None:
    return None if value is None else pd.Timestamp(value).to_pydatetime()


def _date_or_none(value: Any) -> date | None:
    return None if value is None else date.fromisoformat(str(value))


def _usage_resources(profile: Profile) -> set[str]:
    """Resources whose records feed usage or readings (the mapping's sources)."""
    mapping = profile.section("mapping")
    names: set[str] = set()
    for table in ("usage", "readings"):
        section = mapping.get(table)
        if not isinstance(section, dict):
            continue
        if isinstance(section.get("resource"), str):
            names.add(section["resource"])
        for sub in section.values():
            if isinstance(sub, dict) and isinstance(sub.get("resource"), str):
                names.add(sub["resource"])
    return names


@dataclass
class _Coverage:
    """Which meters' data this run holds completely (a quota stop or a resume holds some back).

    ``held`` are parent values (meter or asset ids) with a sequence that was not fetched in
    this run (remaining after a quota stop, or skipped because an earlier run committed it);
    ``all_held`` when that cannot be narrowed down (a top-level usage resource, an unknown
    parent list, or an incomplete entity pull)."""

    held: set[str] = field(default_factory=set)
    all_held: bool = False
    meter_asset: dict[str, str] = field(default_factory=dict)

    @property
    def partial(self) -> bool:
        return self.all_held or bool(self.held)

    def meter_ok(self, meter: str) -> bool:
        if self.all_held:
            return False
        return meter not in self.held and self.meter_asset.get(meter, "\0") not in self.held

    def value_ok(self, value: str) -> bool:
        """A parent value whose every related meter (itself, or the asset's meters) is ok."""
        if self.all_held or value in self.held:
            return False
        related = [m for m, a in self.meter_asset.items() if value in (m, a)]
        return all(self.meter_ok(m) for m in related)

    def ok_meters(self, ids: set[str]) -> set[str]:
        return {m for m in ids if self.meter_ok(m)}


def _coverage(
    profile: Profile,
    results: Mapping[str, Any],
    sequences: Mapping[str, Mapping[str, Any]] | None,
    *,
    quota: bool,
    meter_asset: dict[str, str],
) -> _Coverage:
    cov = _Coverage(meter_asset=meter_asset)
    entity = _entity_resources(profile)
    seqmap: Mapping[str, Mapping[str, Any]] = sequences if sequences is not None else {}
    for name in _usage_resources(profile) | entity:
        seq = seqmap.get(name)
        if seq is None:
            if quota and (
                name not in results
                or _report_dict(getattr(results[name], "report", None)).get("stopped")
            ):
                cov.all_held = True
            elif name in results and not _is_complete(results[name].report, ignore_stop=True)[0]:
                # a stand-in fetch that does not say which sequences were incomplete
                cov.all_held = True
            continue
        # a sequence with failed pages, a count that differs from the announced total or
        # duplicate records holds what it covers, like one a quota stop left out
        missing = list(seq.get("remaining", [])) + list(seq.get("skipped", []))
        missing += list(seq.get("failed", []))
        if seq.get("unknown") or (name in entity and missing):
            cov.all_held = True
        for params in missing:
            if not params:
                cov.all_held = True
            cov.held.update(str(v) for v in params.values())
    return cov


def _describe_remaining(sequences: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, seq in sorted(sequences.items()):
        if seq.get("unknown"):
            out[name] = "all (its parents were not all listed)"
        elif seq.get("remaining"):
            keys = [_pkey(p) or "(all)" for p in seq["remaining"]]
            out[name] = keys
    return out


@dataclass
class _Plan:
    """What the plan phase decided: the months each resource recomputes and how to fetch them.

    ``merge_window`` bounds the stored rows this run replaces (per meter, whole local months);
    ``request_windows`` the date range asked of each resource; ``skip`` the sequences an
    earlier, quota-stopped run already committed (not fetched again).
    """

    args: dict[str, Any]
    mode: str
    incremental: dict[str, dict[str, Any]]
    marks: dict[str, str]
    pending: dict[str, Any] | None
    resume: dict[str, Any] | None
    merge_window: _Window
    request_windows: dict[str, tuple[datetime | None, datetime | None]]
    skip: dict[str, list[str]]


@dataclass
class _Fetched:
    """What the fetch phase brought: results per resource, raw records, the request log, and
    per resource the sequences done / skipped / remaining (``None`` from a custom fetch that
    does not report them); ``quota`` is the quota stop, if the pull ended on one."""

    results: Mapping[str, Any]
    requests: list[dict[str, Any]]
    sequences: Mapping[str, Mapping[str, Any]] | None
    raw: dict[str, list[dict[str, Any]]]
    quota: QuotaExhaustedError | None

    @property
    def seqmap(self) -> Mapping[str, Mapping[str, Any]]:
        return self.sequences if self.sequences is not None else {}


@dataclass
class _Processed:
    """What the pipeline and validation phase made of the fetch, and what it means for state.

    ``quarantined`` is the run's quarantine inside the merge window (and, after a quota stop,
    of the meters held completely); ``win_lo``/``win_hi`` the per-meter bounds [ns] of the rows
    the commit replaces; ``current`` the asset and meter ids the provider listed (quarantined
    ones included); ``deactivation`` the guarded plan per kind.
    """

    tables: Tables
    accepted: Tables
    quarantined: pd.DataFrame
    win_lo: dict[str, int]
    win_hi: dict[str, int]
    meter_asset: dict[str, str]
    cov: _Coverage
    entity_res: set[str]
    entity_ok: bool
    completeness: dict[str, tuple[bool, str]]
    bad: dict[str, str]
    current: dict[str, set[str]]
    deactivation: dict[str, dict[str, Any]]
    filtered: dict[str, dict[str, int]] = field(default_factory=dict)


def _plan_phase(
    profile: Profile,
    store: StateStore,
    *,
    since: Any,
    until: Any,
    full: bool,
    dry_run: bool,
    tz: ZoneInfo,
    lookback_days: int,
) -> _Plan:
    """Plan the run: which local months each resource recomputes, and what a resume skips.

    Parameters
    ----------
    profile : Profile
    store : StateStore
        Read only: the watermarks and the resume plan of a quota-stopped run.
    since, until : date, datetime, ISO str or None
        The user's range, rounded out to whole local months.
    full : bool
        Ignore watermarks.
    dry_run : bool
        A dry run never resumes a quota-stopped run.
    tz : zoneinfo.ZoneInfo
        The profile's zone (local months).
    lookback_days : int
        Default ``[sync] lookback_days`` [d] before an incremental resource's watermark.

    Returns
    -------
    _Plan

    Raises
    ------
    ProfileError
        ``since``/``until`` is not an ISO date or datetime.
    """
    incremental = _incremental_resources(profile)
    marks = store.watermarks()
    pending = store.resume_plan()
    args = {
        "full": bool(full),
        "since": None if since is None else str(since),
        "until": None if until is None else str(until),
    }
    # the same command after a quota stop resumes it; another command plans afresh
    resume = pending if pending and not dry_run and pending.get("args") == args else None
    user_first = None if since is None else _month_start(_as_local_date(since, tz))
    user_end = None
    if until is not None:
        u = _as_local_date(until, tz)
        user_end = u if u.day == 1 else _next_month(u)
    windows: dict[str, _Window] = {}
    for name in profile.resources:
        first = user_first
        if name in incremental and not full and name in marks and since is None:
            look = int(incremental[name].get("lookback_days", lookback_days))
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
    request_windows = {
        name: windows[name].request(tz, margin_days=_margin_days(profile, name))
        for name in profile.resources
    }
    skip: dict[str, list[str]] = {}
    if resume:
        # finish what the quota-stopped run planned: its windows, its months, minus the
        # sequences it committed
        mode = str(resume.get("mode", mode))
        merge_window = _Window(
            _date_or_none(resume["merge"].get("first_month")),
            _date_or_none(resume["merge"].get("end")),
        )
        for name, (a, b) in resume.get("windows", {}).items():
            if name in request_windows:
                request_windows[name] = (_dt_or_none(a), _dt_or_none(b))
        skip = {k: list(v) for k, v in resume.get("skip", {}).items() if v}
    return _Plan(
        args=args,
        mode=mode,
        incremental=incremental,
        marks=marks,
        pending=pending,
        resume=resume,
        merge_window=merge_window,
        request_windows=request_windows,
        skip=skip,
    )


def _learned_spans_kw(store: StateStore) -> dict[str, Any]:
    """``learned_spans=`` for the fetch stage when earlier runs learned a span (issue 15)."""
    spans = store.learned_spans()
    return {"learned_spans": spans} if spans else {}


def _remember_spans(store: StateStore, results: Mapping[str, Any], *, run_id: int) -> None:
    """Keep each resource's learned date span [d] for the next run (not relearned by refusals)."""
    for name, res in results.items():
        days = getattr(getattr(res, "report", None), "learned_max_days", None)
        if days:
            store.set_learned_span(name, days, run_id=run_id)


def _fetch_phase(
    profile: Profile,
    plan: _Plan,
    store: StateStore,
    *,
    run_id: int,
    fetch: Fetch,
    clock: Clock,
    dry_run: bool,
) -> _Fetched:
    """Fetch each resource with its own window; log the requests (unless a dry run).

    Parameters
    ----------
    profile : Profile
    plan : _Plan
        Its ``request_windows`` and ``skip``.
    store : StateStore
        The request log is written here (not for a dry run).
    run_id : int
    fetch : callable
        The fetch stage (see :data:`Fetch`).
    clock : Clock
    dry_run : bool

    Returns
    -------
    _Fetched
        On a quota stop with a partial result, that result and the stop in ``quota``.

    Raises
    ------
    QuotaExhaustedError
        The quota ran out before anything complete was fetched (the requests are logged).
    ConnectorError
        A top-level resource whose every page failed: the provider is down or refused us.
    """
    quota: QuotaExhaustedError | None = None
    got: tuple[Any, ...]
    try:
        got = fetch(
            profile,
            windows=plan.request_windows,
            clock=clock,
            **({"skip": plan.skip} if plan.skip else {}),
            **_learned_spans_kw(store),
        )
    except QuotaExhaustedError as exc:
        partial = getattr(exc, "partial", None)
        if not isinstance(partial, Mapping) or not partial:
            if not dry_run:
                store.log_requests(getattr(exc, "requests", []), run_id=run_id)
            raise
        quota = exc
        got = (dict(partial), getattr(exc, "requests", []), getattr(exc, "sequences", None))
    results, requests = got[0], got[1]
    sequences = got[2] if len(got) > 2 else None
    if not dry_run:
        _remember_spans(store, results, run_id=run_id)
    _raise_if_down(profile, results)
    raw: dict[str, list[dict[str, Any]]] = {name: [] for name in profile.resources}
    raw.update({name: list(res.records) for name, res in results.items()})
    if not dry_run:
        store.log_requests(requests, run_id=run_id)
    _fault("after-fetch")
    return _Fetched(results, requests, sequences, raw, quota)


def _process_phase(
    profile: Profile,
    plan: _Plan,
    fetched: _Fetched,
    store: StateStore,
    *,
    pipeline: Pipeline,
    validate: Validate,
    progress: Progress,
    max_fraction: float,
) -> _Processed:
    """Pipeline and validation, then what they mean for state: the quarantine in scope, the
    meters held completely, completeness and the guarded deactivation plan.

    Parameters
    ----------
    profile : Profile
    plan : _Plan
    fetched : _Fetched
    store : StateStore
        Read only: the active assets and meters.
    pipeline, validate : callable
        The stages (see :data:`Pipeline`, :data:`Validate`).
    progress : callable
        Called with ``"transform"`` and ``"validate"``.
    max_fraction : float
        ``[sync] max_deactivation_fraction`` [1] of the active entities.

    Returns
    -------
    _Processed

    Raises
    ------
    WorkbenchError
        From the stages (mapping, unit, usage, validation set-up errors) unchanged.
    """
    results, raw, seqmap = fetched.results, fetched.raw, fetched.seqmap
    quota = fetched.quota
    progress("transform")
    filtered: dict[str, dict[str, int]] = {}
    if pipeline is _default_pipeline:  # a custom stage reports its own filters, if any
        tables = _default_pipeline(profile, raw, filtered=filtered)
    else:
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
    if plan.mode == "incremental":
        # only meters fed by an incremental resource are recomputed by window; the others
        # came in full and replace (and re-validate) everything stored for them
        windowed = {
            str(v)
            for name in plan.incremental
            for r in raw.get(name, [])
            for v in (r.get("_parent") or {}).values()
        }
    else:
        windowed = set(zones_all.index)
    # the start bound recomputes whole months of windowed meters; the end bound (--until)
    # holds for every meter
    win_lo = _bounds_ns(zones_all[zones_all.index.isin(windowed)], plan.merge_window.first)
    win_hi = _bounds_ns(zones_all, plan.merge_window.end)
    quarantined = quarantined[_quarantine_mask(quarantined, win_lo, win_hi)].reset_index(drop=True)

    # -- which meters this run holds completely (quota stop / resume) -------------------------
    meter_asset = (
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
    cov = _coverage(
        profile, results, fetched.sequences, quota=quota is not None, meter_asset=meter_asset
    )
    entity_res = _entity_resources(profile)
    # an entity list that is short or lost a page changes nothing in the registry (no upsert,
    # no deactivation, no release of its quarantine rows); one that only repeats a record holds
    # no data (transform kept one, quarantined the others as duplicate_id) but still refuses
    # deactivation (entity_bad below)
    entity_ok = all(
        n not in results
        or (
            (
                _is_complete(getattr(results[n], "report", None))[0]
                or _only_duplicates(getattr(results[n], "report", None))
            )
            and not seqmap.get(n, {}).get("failed")
        )
        for n in entity_res
    ) and (
        not cov.all_held
        or all(
            n in results
            and not seqmap.get(n, {}).get("remaining")
            and not _report_dict(getattr(results[n], "report", None)).get("stopped")
            for n in entity_res
        )
    )
    if cov.partial and not quarantined.empty:
        series = quarantined["table"].isin(["usage", "readings"])
        q_meter = quarantined["record_key"].astype(str).str.split("|").str[0]
        keep = ~series | q_meter.map(cov.meter_ok).astype(bool)
        if not entity_ok:
            keep &= series
        quarantined = quarantined[keep.to_numpy()].reset_index(drop=True)

    # -- completeness and deactivation plan ------------------------------------------------
    completeness = {
        name: _is_complete(getattr(res, "report", None)) for name, res in results.items()
    }
    bad = {
        n: why
        for n, res in results.items()
        for ok, why in [_is_complete(getattr(res, "report", None), ignore_stop=quota is not None)]
        if not ok
    }
    entity_bad = {n: why for n, why in bad.items() if n in entity_res}
    why = "; ".join(f"{n}: {w}" for n, w in sorted(entity_bad.items()))
    if quota is not None:
        entity_bad = {**entity_bad, "quota": "the pull stopped on the provider's quota"}
        why = "; ".join(filter(None, [why, "the pull stopped on the provider's quota"]))
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
            max_fraction=max_fraction,
        )
        for kind in ("asset", "meter")
    }
    return _Processed(
        tables=tables,
        accepted=accepted,
        quarantined=quarantined,
        win_lo=win_lo,
        win_hi=win_hi,
        meter_asset=meter_asset,
        cov=cov,
        entity_res=entity_res,
        entity_ok=entity_ok,
        completeness=completeness,
        bad=bad,
        current=current,
        deactivation=deactivation,
        filtered=filtered,
    )


def _run_summary(
    profile: Profile,
    plan: _Plan,
    fetched: _Fetched,
    done: _Processed,
    *,
    run_id: int,
    started: datetime,
) -> dict[str, Any]:
    """The run summary as far as the processing goes (the commit and export add to it).

    Parameters
    ----------
    profile : Profile
    plan : _Plan
    fetched : _Fetched
    done : _Processed
    run_id : int
        0 for a dry run.
    started : datetime.datetime
        When the run started (aware, the run's clock).

    Returns
    -------
    dict
        ``run_id``, ``mode``, ``window``, counts fetched / processed / accepted / quarantined,
        the deactivation plan and, for a resumed run, ``resumed``.
    """
    quarantined = done.quarantined
    summary: dict[str, Any] = {
        "run_id": run_id,
        "profile": profile.name,
        "environment": profile.environment,
        "mode": plan.mode,
        "started_at": started.isoformat(timespec="seconds"),
        "window": plan.merge_window.as_dict(),
        "fetched": {n: len(r) for n, r in sorted(fetched.raw.items())},
        "fetch": _fetch_history(plan, fetched, started),
        "incomplete": dict(sorted(done.bad.items())),
        "incomplete_windows": _incomplete_windows(fetched.results),
        "processed": _counts(done.tables),
        "accepted": _counts(done.accepted),
        "quarantined_this_run": {t: int(n) for t, n in quarantined.groupby("table").size().items()}
        if not quarantined.empty
        else {},
        "deactivation": done.deactivation,
        "filtered": _filtered(fetched, done),
    }
    if plan.resume:
        summary["resumed"] = {
            "from_run": plan.resume["stopped_run"],
            "skipped_sequences": {k: len(v) for k, v in sorted(plan.skip.items())},
        }
    summary["not_imported"] = _not_imported(quarantined)
    return summary


def _fetch_history(plan: _Plan, fetched: _Fetched, started: datetime) -> dict[str, Any]:
    """Per resource, what its fetch saw, for the next run's request estimate (:func:`plan_sync`):
    ``records`` (served, before filters), ``pages``, ``windows`` (date windows over all
    parents), ``parents`` (sequences; 0 for a top-level resource) and the range it asked for,
    ``since`` / ``until`` (ISO or null: the resource's defaults) and ``at`` (the run's start)."""
    out: dict[str, Any] = {}
    for name, res in sorted(fetched.results.items()):
        rep = _report_dict(getattr(res, "report", None))
        if not rep:
            continue
        since, until = plan.request_windows.get(name, (None, None))
        out[name] = {
            "records": int(rep.get("records") or len(getattr(res, "records", []) or [])),
            "pages": int(rep.get("pages") or 0),
            "windows": int(rep.get("windows") or 0),
            "parents": int(rep.get("parents") or 0),
            "since": None if since is None else since.isoformat(),
            "until": None if until is None else until.isoformat(),
            "at": started.isoformat(),
        }
    return out


def plan_sync(
    profile: Profile,
    *,
    out: str | os.PathLike[str],
    since: Any = None,
    until: Any = None,
    full: bool = False,
    clock: Clock | None = None,
) -> Any:
    """The requests the next :func:`run_sync` with these arguments would send, planned offline.

    The same windows as the sync: an incremental resource only from the month its committed
    watermark (minus its lookback) says is due, a quota-stopped run's resume included; the
    record counts, pages and parents of the last run's ``run_summary.json`` (``fetch``) give
    the pages per window (by records per parent and day for a dated resource, by the records
    per page it got for a Relay or cursor connection). No request is sent, no state written.

    Parameters
    ----------
    profile : Profile
    out : path-like
        The sync's output folder (its state and last ``export/run_summary.json``).
    since, until, full
        As :func:`run_sync`.
    clock : Clock, optional
        For "now" (default: the system clock).

    Returns
    -------
    scaler_workbench.connectors.probe.RequestPlan
        Requests per resource, their total [requests] and the least time the budget needs [s].

    Raises
    ------
    ProfileError
        An unknown resource or paginator, a bad ``since`` / ``until``, or a profile whose
        mapping changed since the last run with ``since`` / ``until`` (as the sync would).
    StateError
        The state database cannot be read.
    """
    from scaler_workbench.connectors.auth import NoAuth
    from scaler_workbench.connectors.probe import plan_requests

    clock = clock or SystemClock()
    counts: dict[str, int] = {}
    history: dict[str, Any] = {}
    try:
        last = json.loads((Path(out) / "export" / "run_summary.json").read_text(encoding="utf-8"))
        counts = {str(k): int(v) for k, v in dict(last.get("fetched") or {}).items()}
        history = {str(k): dict(v) for k, v in dict(last.get("fetch") or {}).items()}
    except (OSError, ValueError, TypeError, AttributeError):
        pass
    spath = state_path(profile, out)
    windows = None
    spans: dict[str, int] = {}
    if spath.exists():
        opts = _sync_options(profile)
        store = StateStore(spath)
        try:
            spans = dict(store.learned_spans())
            change = _profile_change(
                profile, store, full=full, since=since, until=until, policy="full"
            )
            full = bool(full) or change is not None
            plan = _plan_phase(
                profile,
                store,
                since=since,
                until=until,
                full=full,
                dry_run=False,
                tz=ZoneInfo(profile.timezone),
                lookback_days=opts["lookback_days"],
            )
            windows = plan.request_windows
        finally:
            store.close()
    client = Client(profile, auth=NoAuth(), clock=clock)
    client.learned_spans.update(spans)
    return plan_requests(
        profile,
        since=since,
        until=until,
        counts=counts,
        client=client,
        windows=windows,
        history=history,
    )


def _filtered(fetched: _Fetched, done: _Processed) -> dict[str, dict[str, int]]:
    """Records the filters dropped: per ``resources.<name>`` (its ``where`` / ``skip``) and per
    mapping section (``mapping.usage.<source>``, ``mapping.meters``: ``where`` / ``skip``,
    ``exclude_meters``), then per rule [records]."""
    out: dict[str, dict[str, int]] = {}
    for name, res in sorted(fetched.results.items()):
        counts = _report_dict(getattr(res, "report", None)).get("filtered") or {}
        if counts:
            out[f"resources.{name}"] = {str(k): int(v) for k, v in counts.items()}
    for section, counts in sorted(done.filtered.items()):
        out[section] = {str(k): int(v) for k, v in counts.items()}
    return out


def _not_imported(quarantined: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Series a provider module reported as not imported (rule ``not_imported``), by category.

    Returns ``{category: {"series": n, "values": n, "ids": [...]}}``: the category and the
    value count come from each row's record (``{meter_id, values, category}``, e.g. the
    EcoStruxure connector's ``comfort`` and ``waste_diverted``); ``other`` when it names none.
    """
    if quarantined.empty or "rule" not in quarantined:
        return {}
    rows = quarantined[quarantined["rule"] == "not_imported"]
    out: dict[str, dict[str, Any]] = {}
    for key, record in zip(rows["record_key"], rows["record"], strict=True):
        try:
            rec = json.loads(record) if isinstance(record, str) else {}
        except json.JSONDecodeError:
            rec = {}
        rec = rec if isinstance(rec, dict) else {}
        entry = out.setdefault(
            str(rec.get("category") or "other"), {"series": 0, "values": 0, "ids": []}
        )
        entry["series"] += 1
        values = rec.get("values")
        entry["values"] += int(values) if isinstance(values, int | float) else 0
        entry["ids"].append(str(key))
    for entry in out.values():
        entry["ids"].sort()
    return dict(sorted(out.items()))


def _next_state(
    profile: Profile, plan: _Plan, fetched: _Fetched, done: _Processed
) -> tuple[dict[str, str], dict[str, Any] | None]:
    """The watermarks this run moves, and (after a quota stop) the plan the next run resumes.

    Parameters
    ----------
    profile : Profile
    plan : _Plan
    fetched : _Fetched
    done : _Processed

    Returns
    -------
    watermarks : dict of str to str
        Per incremental resource pulled completely, its new watermark (ISO 8601) when it moves
        forward; a resource with meters held back keeps its old one.
    resume_plan : dict or None
        After a quota stop: the arguments, windows and months of this run, the sequences
        committed (skipped next time), their watermarks and what remains.
    """
    results, raw, seqmap = fetched.results, fetched.raw, fetched.seqmap
    quota, resume, cov = fetched.quota, plan.resume, done.cov
    usage_res = _usage_resources(profile)
    resume_plan: dict[str, Any] | None = None
    prev_skip = {k: set(v) for k, v in (resume or {}).get("skip", {}).items()}
    prev_wm = {k: dict(v) for k, v in (resume or {}).get("watermarks", {}).items()}
    next_skip: dict[str, set[str]] = {}
    seq_wm: dict[str, dict[str, str]] = {}
    if fetched.sequences is not None:
        for name, state in fetched.sequences.items():
            if name in done.entity_res:
                continue
            failed = {_pkey(p) for p in state.get("failed", [])}
            finished = [p for p in state.get("done", []) if _pkey(p) not in failed]
            keep_keys = set(prev_skip.get(name, set()))
            if name in usage_res:
                keep_keys |= {
                    _pkey(p)
                    for p in finished
                    if (p and all(cov.value_ok(str(v)) for v in p.values()))
                    or (not p and not cov.partial)
                }
            else:
                keep_keys |= {_pkey(p) for p in finished}
            next_skip[name] = keep_keys
            reported = (
                _report_dict(getattr(results.get(name), "report", None)).get("watermarks") or {}
            )
            seq_wm[name] = {
                **prev_wm.get(name, {}),
                **{k: str(v) for k, v in reported.items() if k in keep_keys},
            }
    watermarks: dict[str, str] = {}
    for name, cfg in plan.incremental.items():
        if name not in results or not done.completeness.get(name, (True, ""))[0]:
            continue
        seq = seqmap.get(name)
        if seq is not None:
            all_keys = {_pkey(p) for p in [*seq.get("done", []), *seq.get("skipped", [])]}
            if (
                seq.get("remaining")
                or seq.get("unknown")
                or not all_keys <= next_skip.get(name, set())
            ):
                continue  # some of its meters are held back: the watermark waits
            candidates = seq_wm.get(name, {})
            if not (cov.partial or quota is not None or resume):
                reported = _report_dict(getattr(results[name], "report", None)).get("watermarks")
                candidates = dict(reported or {})
            new = (
                _min_iso(candidates.values())
                if candidates
                else _new_watermark(raw[name], str(cfg.get("cursor_path", "")))
            )
        else:
            if quota is not None:
                continue
            reported = _report_dict(getattr(results[name], "report", None)).get("watermarks")
            new = (
                _min_iso(reported.values())
                if reported
                else _new_watermark(raw[name], str(cfg.get("cursor_path", "")))
            )
        old = plan.marks.get(name)
        if new and (old is None or pd.Timestamp(new) > pd.Timestamp(old)):
            watermarks[name] = new
    if quota is not None:
        windows_iso = {
            n: [_iso_or_none(a), _iso_or_none(b)] for n, (a, b) in plan.request_windows.items()
        }
        resume_plan = {
            "args": plan.args,
            "mode": plan.mode,
            "merge": plan.merge_window.as_dict(),
            "windows": windows_iso,
            "skip": {k: sorted(v) for k, v in sorted(next_skip.items()) if v},
            "watermarks": {k: v for k, v in sorted(seq_wm.items()) if v and k not in watermarks},
            "remaining": _describe_remaining(seqmap)
            if fetched.sequences is not None
            else {n: "all" for n in profile.resources if n not in results},
        }
    return watermarks, resume_plan


def _commit_phase(
    store: StateStore,
    profile: Profile,
    plan: _Plan,
    fetched: _Fetched,
    done: _Processed,
    *,
    run_id: int,
    full: bool,
    since: Any,
    until: Any,
    watermarks: Mapping[str, str],
    resume_plan: dict[str, Any] | None,
    checks: list[ReconcileCheck],
    summary: dict[str, Any],
) -> None:
    """The commit point: one transaction writes the registry, deactivations, accepted rows,
    quarantine (and releases what was not seen again), provider totals, watermarks and the
    resume plan; adds ``reactivated``, ``watermarks``, ``quarantine`` and ``stored`` to
    ``summary``.

    Parameters
    ----------
    store : StateStore
    profile : Profile
    plan, fetched, done
        The earlier phases.
    run_id : int
    full, since, until
        The run's arguments (a full unbounded run clears a stale resume plan).
    watermarks : dict of str to str
        From :func:`_next_state`.
    resume_plan : dict or None
        From :func:`_next_state`.
    checks : list of ReconcileCheck
        The profile's ``[reconcile.*]`` checks: their provider totals are stored.
    summary : dict
        Updated in place.

    Raises
    ------
    StateError
        The state database refused the transaction (nothing is committed).
    """
    results, raw, seqmap = fetched.results, fetched.raw, fetched.seqmap
    accepted, quarantined, cov = done.accepted, done.quarantined, done.cov
    win_lo, win_hi, current = done.win_lo, done.win_hi, done.current
    released = 0
    with store.transaction():
        asset_parents: dict[str, str] = {}
        meter_parents = dict(done.meter_asset)
        if done.entity_ok:
            summary["reactivated"] = {
                "asset": store.upsert_entities(
                    "asset", current["asset"], run_id=run_id, parents=asset_parents
                ),
                "meter": store.upsert_entities(
                    "meter", current["meter"], run_id=run_id, parents=meter_parents
                ),
            }
            for kind, dplan in done.deactivation.items():
                if dplan["deactivated"]:
                    store.deactivate(kind, dplan["deactivated"], run_id=run_id)
            store.write_rows("assets", accepted.assets)
            store.write_rows("meters", accepted.meters)
        else:
            summary["reactivated"] = {"asset": [], "meter": []}
        _fault("after-assets")
        for table, column in (("usage", "start"), ("readings", "timestamp")):
            frame = getattr(accepted, table)
            if cov.partial and not frame.empty:
                ok = frame["meter_id"].astype(str).map(cov.meter_ok).astype(bool)
                frame = frame[ok.to_numpy()]
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
            tuple(k) for k in quarantined[list(QUARANTINE.key)].astype(str).itertuples(index=False)
        }
        open_rows = store.open_quarantine_ids()
        open_frame = pd.DataFrame(
            [(*k, q) for k, q in open_rows.items()],
            columns=["table", "record_key", "rule", "qid"],
        )
        scope = cov.ok_meters(current["meter"]) if cov.partial else current["meter"]
        in_scope = (
            _quarantine_mask(open_frame, win_lo, win_hi, meters=scope)
            if not open_frame.empty
            else np.zeros(0, dtype=bool)
        )
        if not done.entity_ok and not open_frame.empty:
            in_scope &= open_frame["table"].isin(["usage", "readings"]).to_numpy()
        stale = [
            int(row.qid)
            for row, inside in zip(open_frame.itertuples(index=False), in_scope, strict=True)
            if inside and (row.table, row.record_key, row.rule) not in seen
        ]
        released = store.release_quarantine(
            stale, run_id=run_id, note=f"not seen again in run {run_id}"
        )
        for check in checks:
            if check.resource not in results:
                continue
            totals = parse_provider_totals(
                check,
                raw[check.resource],
                meters=done.tables.meters,
                assets=done.tables.assets,
                profile=profile,
                default_timezone=profile.timezone,
            )
            seq = seqmap.get(check.resource, {})
            whole = (
                done.completeness[check.resource][0]
                and done.entity_ok
                and not cov.partial
                and not (
                    seq.get("remaining")
                    or seq.get("skipped")
                    or seq.get("unknown")
                    or seq.get("failed")
                )
            )
            if whole:
                store.write_provider_totals(check.name, totals, run_id=run_id)
                continue
            # only meters whose totals came completely are replaced; the stored totals of
            # every other meter (a failed or short sequence, not reached) stay as they were
            failed = {_pkey(p) for p in seq.get("failed", [])}
            if check.resource in seqmap:
                reached = {
                    str(v)
                    for p in seq.get("done", [])
                    if _pkey(p) not in failed
                    for v in p.values()
                }
            elif done.completeness[check.resource][0]:
                reached = set(totals["meter_id"].astype(str)) if not totals.empty else set()
            else:
                reached = set()
            if not totals.empty:
                totals = totals[totals["meter_id"].astype(str).isin(reached)]
            store.write_provider_totals(check.name, totals, run_id=run_id, meter_ids=reached)
        for name, value in watermarks.items():
            store.set_watermark(name, value, run_id=run_id)
        if resume_plan is not None:
            store.set_resume_plan(resume_plan, run_id=run_id)
        elif plan.pending and (plan.resume or (full and since is None and until is None)):
            store.set_resume_plan(None, run_id=run_id)
        summary["watermarks"] = {**plan.marks, **watermarks}
        summary["quarantine"] = {**qcounts, "released": released}
        summary["stored"] = store.table_counts()
    _fault("after-commit")


def _export_phase(
    store: StateStore,
    profile: Profile,
    done: _Processed,
    *,
    run_id: int,
    mode: str,
    export_dir: Path,
    spath: Path,
    formats: tuple[str, ...],
    resume_plan: dict[str, Any] | None,
    quota: QuotaExhaustedError | None,
    summary: dict[str, Any],
    clock: Clock,
    t0: float,
) -> SyncResult:
    """Export the committed state, settle the run's status and close the run in state.

    Parameters
    ----------
    store : StateStore
    profile : Profile
    done : _Processed
    run_id : int
    mode : str
    export_dir, spath : pathlib.Path
        The export folder and the state database.
    formats : tuple of str
    resume_plan : dict or None
        Set after a quota stop: the status is ``quota_exhausted``.
    quota : QuotaExhaustedError or None
        Kept on the result's ``error``.
    summary : dict
        Completed in place (status, reasons, timings, the export checks).
    clock : Clock
    t0 : float
        ``time.perf_counter()`` at the start of the run [s].

    Returns
    -------
    SyncResult

    Raises
    ------
    ExportError
        The files could not be written (the committed state stays; re-export later).
    """
    quarantined, bad, cov = done.quarantined, done.bad, done.cov
    partial_reasons = []
    if (
        not quarantined.empty
        and (
            (quarantined["severity"] == "error").to_numpy() & ~_resolved_by_policy(quarantined)
        ).any()
    ):
        partial_reasons.append("records quarantined")
    if bad:
        partial_reasons.append(
            "incomplete pull: " + "; ".join(f"{n}: {w}" for n, w in sorted(bad.items()))
        )
    partial_reasons += [p["refused"] for p in done.deactivation.values() if p["refused"]]
    if resume_plan is not None:
        left = resume_plan["remaining"]
        n_left = sum(len(v) if isinstance(v, list) else 1 for v in left.values())
        summary["remaining"] = left
        summary["committed_meters"] = len(cov.ok_meters(done.current["meter"]))
        partial_reasons.insert(
            0,
            f"the provider's quota is exhausted: {n_left} sequence(s) of "
            f"{', '.join(sorted(left)) or 'nothing'} remain; the next run fetches "
            "only those",
        )

    def finish(checks: dict[str, Any]) -> None:
        # the gate is the exit code: a run is a success only when the export is ready, and
        # the export is ready only when this run was complete
        reasons = partial_reasons + checks.get("reconciliation", {}).get("reasons", [])
        gate = checks["ready_to_export"]
        gate["reasons"] = list(reasons) + [r for r in gate["reasons"] if r not in reasons]
        gate["ready"] = not gate["reasons"]
        status = (
            "quota_exhausted"
            if resume_plan is not None
            else "partial"
            if gate["reasons"]
            else "success"
        )
        summary["status"] = status
        summary["partial_reasons"] = reasons
        summary["finished_at"] = clock.now().isoformat(timespec="seconds")
        summary["duration_s"] = round(time.perf_counter() - t0, 3)

    def hook(point: str) -> None:
        if point.startswith("export:"):
            _fault("during-export")

    files, checks = export_from_state(
        store,
        export_dir,
        profile=profile,
        summary=summary,
        formats=formats,
        fault_hook=hook,
        on_checks=finish,
    )
    summary.update(checks)
    status = summary["status"]
    _fault("after-export")
    store.finish_run(
        run_id,
        status=status,
        counts={
            "accepted": summary["accepted"],
            "stored": summary["stored"],
            "fingerprint": summary.get("profile_fingerprint"),
        },
        errors=summary["partial_reasons"],
    )
    log.info("sync %s run %d: %s (%s)", profile.name, run_id, status, mode)
    result = SyncResult(run_id, status, mode, export_dir, spath, files, summary)
    if quota is not None:
        result.error = quota
    return result


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
    """One run through its phases: plan, fetch, pipeline and validation, commit, export.

    Every phase is a function of its own (:func:`_plan_phase`, :func:`_fetch_phase`,
    :func:`_process_phase`, :func:`_commit_phase` after :func:`_next_state`,
    :func:`_export_phase`); this one opens the state, records the run and turns a failure into
    a failed run (nothing committed).

    Parameters
    ----------
    profile : Profile
    out : pathlib.Path
    since, until, full, dry_run, formats
        As :func:`run_sync`.
    clock : Clock
    fetch, pipeline, validate : callable
        The stages (defaults filled in by :func:`run_sync`).
    progress : callable
        Called with each phase's name as it starts.

    Returns
    -------
    SyncResult

    Raises
    ------
    WorkbenchError
        Passed through unchanged, the run recorded as failed.
    SyncError
        Anything unexpected, the run recorded as failed.
    """
    opts = _sync_options(profile)
    checks_cfg = read_reconcile_checks(profile)  # a bad [reconcile.*] fails before any request
    tz = ZoneInfo(profile.timezone)
    spath = state_path(profile, out)
    export_dir = out / "export"
    store = StateStore(spath)
    started = clock.now()
    t0 = time.perf_counter()
    run_id = 0
    try:
        change = _profile_change(
            profile,
            store,
            full=full,
            since=since,
            until=until,
            policy=opts["on_profile_change"],
        )
        if change is not None:
            full = True  # recompute every meter's history and quarantine with the new profile
        plan = _plan_phase(
            profile,
            store,
            since=since,
            until=until,
            full=full,
            dry_run=dry_run,
            tz=tz,
            lookback_days=opts["lookback_days"],
        )
        if not dry_run:
            run_id = store.begin_run(
                profile=profile.name, environment=profile.environment, mode=plan.mode
            )
        progress("fetch")
        fetched = _fetch_phase(
            profile, plan, store, run_id=run_id, fetch=fetch, clock=clock, dry_run=dry_run
        )
        done = _process_phase(
            profile,
            plan,
            fetched,
            store,
            pipeline=pipeline,
            validate=validate,
            progress=progress,
            max_fraction=opts["max_fraction"],
        )
        summary = _run_summary(profile, plan, fetched, done, run_id=run_id, started=started)
        summary["profile_fingerprint"] = profile_fingerprint(profile)
        if change is not None:
            summary["profile_changed"] = change
        if dry_run:
            if fetched.quota is not None:
                raise fetched.quota  # nothing to resume: a dry run writes nothing
            summary["status"] = "dry-run"
            return SyncResult(0, "dry-run", plan.mode, None, spath, {}, summary)
        watermarks, resume_plan = _next_state(profile, plan, fetched, done)
        progress("commit")
        _commit_phase(
            store,
            profile,
            plan,
            fetched,
            done,
            run_id=run_id,
            full=full,
            since=since,
            until=until,
            watermarks=watermarks,
            resume_plan=resume_plan,
            checks=checks_cfg,
            summary=summary,
        )
        progress("export")
        return _export_phase(
            store,
            profile,
            done,
            run_id=run_id,
            mode=plan.mode,
            export_dir=export_dir,
            spath=spath,
            formats=formats,
            resume_plan=resume_plan,
            quota=fetched.quota,
            summary=summary,
            clock=clock,
            t0=t0,
        )
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
            hint="Re-run with --debug for the traceback. A failure before the commit leaves the "
            "state as it was; after it the data stays committed (`scaler-workbench export` "
            "re-writes the files).",
        ) from exc
    finally:
        store.close()


def _status_for(exc: BaseException) -> str:
    if isinstance(exc, QuotaExhaustedError):
        return "quota_exhausted"
    if isinstance(exc, AuthError | CredentialError):
        return "auth_failed"
    return "failed"


def _record_failure(store: StateStore, run_id: int, exc: BaseException) -> None:
    with contextlib.suppress(WorkbenchError):
        store.finish_run(run_id, status=_status_for(exc), errors=[f"{type(exc).__name__}: {exc}"])


_ = UTC  # re-exported zone constant kept for callers building aware datetimes
