"""The ``scaler-workbench`` command: sync, status, quarantine, export, init, check, sandbox, demo.

Exit codes (for schedulers; see docs/cli.md):

====  ===========================================================================
0     success
1     partial, i.e. not ready to export: records quarantined, an incomplete pull (its windows
      keep their committed data), a refused deactivation, a meter without data, a missing
      month, or provider totals that do not reconcile; the last line says why
2     usage error: bad arguments, bad profile or mapping, a profile change an incremental
      run cannot recompute, or a resource path the provider does not know (404 on every page
      of a top-level resource)
3     authentication failed (or a credential variable is unset)
4     the provider's quota is exhausted: completed work is committed and exported; the next
      run fetches only what remains
5     the provider is down or unreachable (5xx / 429 after retries, connection errors)
6     the sync failed otherwise (state, export, data or request errors)
7     verification failed (``demo``: an exported total differs from ground truth)
8     another sync of this profile is running (same state): this one did not start
130   interrupted (Ctrl-C)
====  ===========================================================================

Errors print one line, the cause first, and the hint, never a traceback (unless ``--debug``).
``--json``, ``--debug`` and ``-q`` go before or after the command. A sync's last line says
whether its files are ready for Scaler ("ready: yes") or not and why ("not ready: ...").
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from scaler_workbench._secrets import get_logger, redact
from scaler_workbench.exceptions import (
    AuthError,
    CredentialError,
    FilterError,
    MappingError,
    ProfileError,
    ProviderUnavailableError,
    QuotaExhaustedError,
    ResourceNotFoundError,
    SyncLockedError,
    TransportError,
    WorkbenchError,
)

__all__ = [
    "EXIT_AUTH",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_LOCKED",
    "EXIT_OK",
    "EXIT_PARTIAL",
    "EXIT_PROVIDER_DOWN",
    "EXIT_QUOTA",
    "EXIT_USAGE",
    "EXIT_VERIFY",
    "exit_code_for",
    "main",
    "not_ready_reasons",
    "scaffold_provider",
]

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_QUOTA = 4
EXIT_PROVIDER_DOWN = 5
EXIT_FAILED = 6
EXIT_VERIFY = 7
EXIT_LOCKED = 8
EXIT_INTERRUPTED = 130

log = get_logger("scaler_workbench.cli")

DEMO_PROFILE = Path(__file__).resolve().parent.parent / "mappings" / "sandbox" / "profile.toml"
#: the shipped profiles ``init --like`` starts from (``mappings/<name>/profile.toml``)
SHIPPED_MAPPINGS = DEMO_PROFILE.parent.parent
DEMO_RTOL = 1e-9


def exit_code_for(exc: BaseException) -> int:
    """The exit code a scheduler sees for ``exc``."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, SyncLockedError):
        return EXIT_LOCKED
    if isinstance(exc, AuthError | CredentialError):
        return EXIT_AUTH
    if isinstance(exc, ProfileError | MappingError | ResourceNotFoundError):
        return EXIT_USAGE
    if isinstance(exc, QuotaExhaustedError):
        return EXIT_QUOTA
    if isinstance(exc, TransportError | ProviderUnavailableError):
        return EXIT_PROVIDER_DOWN
    return EXIT_FAILED


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse exits 2 already; keep its message short
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


_GLOBAL_OPTIONS = (
    (("--json",), "print a JSON result on stdout"),
    (("--debug",), "show tracebacks and debug logs"),
    (("-q", "--quiet"), "only warnings and errors"),
)


def _parser() -> argparse.ArgumentParser:
    from scaler_workbench import __version__

    # --json/--debug/-q before the command (defaults False) or after it: the subcommands'
    # copies default to SUPPRESS, so they only set what was given and never undo the top level
    common = _ArgumentParser(add_help=False)
    for flags, text in _GLOBAL_OPTIONS:
        common.add_argument(*flags, action="store_true", default=argparse.SUPPRESS, help=text)

    def profile_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("profile", help="provider profile TOML, e.g. mappings/sandbox/profile.toml")
        p.add_argument("--out", help="output folder (default out/<provider>)")
        p.add_argument("--env", dest="environment", help="profile environment to use")
        p.add_argument(
            "--var",
            dest="variables",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="override a [variables] entry of the profile (repeatable)",
        )

    parser = _ArgumentParser(
        prog="scaler-workbench",
        description="Onboard energy-data providers to Scaler: sync, inspect and export.",
        epilog="Exit codes: 0 ok, 1 partial, 2 usage/profile (or a 404 path), 3 auth, "
        "4 quota (resumable), 5 provider down, 6 failed, 7 verification failed, "
        "8 another sync running, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    for flags, text in _GLOBAL_OPTIONS:
        parser.add_argument(*flags, action="store_true", help=text)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_ArgumentParser)

    p = sub.add_parser("sync", parents=[common], help="fetch, validate, store and export")
    profile_args(p)
    p.add_argument("--since", help="start of the range (YYYY-MM-DD or ISO 8601); whole months")
    p.add_argument("--until", help="end of the range, exclusive; whole months")
    p.add_argument("--full", action="store_true", help="ignore watermarks and pull everything")
    p.add_argument("--dry-run", action="store_true", help="fetch and check, write nothing")
    p.add_argument("--formats", default="csv,xlsx", help="export formats (default csv,xlsx)")
    p.add_argument("--seed", type=int, help="seed of the builtin sandbox, when one is started")
    p.add_argument(
        "--from-file",
        metavar="FILE",
        help="read the provider's export file (e.g. a Green Button Download My Data XML) "
        "instead of its API",
    )

    p = sub.add_parser("status", parents=[common], help="last runs, registry and watermarks")
    profile_args(p)
    p.add_argument("--runs", type=int, default=5, help="how many runs to show")

    p = sub.add_parser("quarantine", parents=[common], help="list or release quarantined records")
    profile_args(p)
    p.add_argument("--all", action="store_true", help="include released records")
    p.add_argument("--release", type=int, nargs="+", metavar="QID", help="release these ids")
    p.add_argument("--history", type=int, metavar="QID", help="show one record's history")

    p = sub.add_parser("export", parents=[common], help="re-write the Scaler files from state")
    profile_args(p)
    p.add_argument("--formats", default="csv,xlsx", help="export formats (default csv,xlsx)")

    p = sub.add_parser(
        "init",
        parents=[common],
        help="scaffold mappings/PROVIDER/: a profile and an empty workbook",
    )
    p.add_argument("provider", help="provider name (letters, digits, _ and -), e.g. acme")
    p.add_argument(
        "--like",
        default="sandbox",
        help="the shipped profile to start from (default sandbox): "
        + ", ".join(_shipped_profiles()),
    )
    p.add_argument("--dir", default="mappings", help="parent folder (default mappings)")
    p.add_argument("--force", action="store_true", help="overwrite an existing scaffold")

    p = sub.add_parser(
        "check", parents=[common], help="validate a profile and its mapping workbook offline"
    )
    p.add_argument("profile", help="provider profile TOML, e.g. mappings/acme/profile.toml")
    p.add_argument("--workbook", help="mapping workbook (default: mapping.xlsx beside the profile)")
    p.add_argument("--env", dest="environment", help="profile environment to use")

    # never parsed here: main() hands everything after "sandbox" to the simulator's own parser
    sub.add_parser("sandbox", help="serve the provider simulator (scaler-workbench sandbox --help)")

    p = sub.add_parser("demo", parents=[common], help="onboard the builtin sandbox end to end")
    p.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    p.add_argument("--seed", type=int, default=None, help="sandbox seed")
    p.add_argument(
        "--no-traps",
        dest="traps",
        action="store_false",
        help="serve the sandbox without its data traps (default: every trap planted)",
    )
    p.add_argument("--profile", default=str(DEMO_PROFILE), help=argparse.SUPPRESS)
    return parser


def _shipped_profiles() -> list[str]:
    return sorted(p.parent.name for p in SHIPPED_MAPPINGS.glob("*/profile.toml"))


# -- output helpers ------------------------------------------------------------------------------
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def terminal_text(text: str) -> str:
    """``text`` safe for a terminal: control characters (ESC, BEL, CR, C1, ...) shown escaped.

    Parameters
    ----------
    text : str
        Text that may hold provider data (names, ids, error bodies).

    Returns
    -------
    str
        ``text`` with every control character but newline and tab written as ``\\xNN``, and
        registered secrets masked.
    """
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", redact(text))


class _TerminalFormatter(logging.Formatter):
    """Log lines with provider text escaped (a name holding ESC sequences cannot drive the tty)."""

    def format(self, record: logging.LogRecord) -> str:
        return terminal_text(super().format(record))


_HANDLER = logging.StreamHandler()


def _setup_logging(args: argparse.Namespace) -> None:
    level = logging.DEBUG if args.debug else logging.WARNING if args.quiet else logging.INFO
    if sys.stderr.isatty() and not args.debug:
        level = max(level, logging.WARNING)  # the progress bar says what happens
    # other libraries (great-expectations is chatty) only say warnings; ours say what they do.
    # One handler of ours on the root logger, pointed at the current stderr on every call.
    root = logging.getLogger()
    if _HANDLER not in root.handlers:
        root.addHandler(_HANDLER)
    _HANDLER.stream = sys.stderr  # not setStream(): it would flush a stream that may be closed
    _HANDLER.setFormatter(_TerminalFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.setLevel(logging.DEBUG if args.debug else logging.WARNING)
    logging.getLogger("scaler_workbench").setLevel(level)


class _Progress:
    """What a sync shows while it runs.

    On a terminal: one tqdm bar counting requests against the plan's estimate
    (:func:`~scaler_workbench.connectors.probe.plan_requests`), with the resource being fetched,
    pages, records and retries (and the wait of a retry in progress), then the later stages.
    Elsewhere (a scheduler's log): one INFO line per stage and one when the fetch ends; each
    retry is logged by the client. Fed by :func:`connectors._events.observe_fetch`.
    """

    def __init__(self, args: argparse.Namespace, estimate: tuple[int, bool] | None = None) -> None:
        self.estimate = estimate
        self.requests = self.pages = self.records = self.retries = 0
        self.resource = ""
        self.stage_name = ""
        self.waiting = ""
        self._lock = threading.Lock()
        self.bar: Any = None
        if sys.stderr.isatty() and not args.json and not args.quiet:
            from tqdm import tqdm

            self.bar = tqdm(
                total=estimate[0] if estimate else None,
                desc="sync",
                unit="req",
                file=sys.stderr,
                leave=False,
                dynamic_ncols=True,
            )
            self._stream = _HANDLER.stream
            _HANDLER.stream = _AboveBar()  # type: ignore[assignment]  # log lines above the bar

    def stage(self, stage: str) -> None:
        with self._lock:
            if self.stage_name == "fetch" and stage != "fetch":
                log.info("fetch: %s", self.counts())
            self.stage_name = stage
            if self.bar is None:
                log.info("stage: %s", stage)
                return
            self.bar.set_description(f"sync: {stage}", refresh=False)
            self._postfix()

    def event(self, ev: Any) -> None:
        with self._lock:
            if ev.kind == "resource":
                self.resource = ev.resource
            elif ev.kind == "page":
                self.pages += 1
                self.records += ev.records
            elif ev.kind == "retry":
                self.retries += 1
                what = f"{ev.status}" if ev.status else "no answer"
                self.waiting = f"{what}: retry {ev.attempt}/{ev.max_attempts - 1} in {ev.wait:.0f}s"
            elif ev.kind == "request":
                self.requests += 1
                self.waiting = ""
                if self.bar is not None:
                    if self.bar.total is not None and self.bar.n >= self.bar.total:
                        self.bar.total = None  # past the estimate: count without a percentage
                    self.bar.update(1)
            if self.bar is not None:
                self._postfix()

    def _postfix(self) -> None:
        parts = [self.resource] if self.stage_name == "fetch" and self.resource else []
        parts += [f"pages {self.pages}", f"records {self.records:,}", f"retries {self.retries}"]
        if self.waiting:
            parts.append(self.waiting)
        self.bar.set_postfix_str(" · ".join(parts))

    def counts(self) -> str:
        planned = ""
        if self.estimate:
            planned = f" (planned {'' if self.estimate[1] else '~'}{self.estimate[0]})"
        return (
            f"{self.requests} requests{planned}, {self.pages} pages, {self.records:,} records, "
            f"{self.retries} retries"
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            _HANDLER.stream = self._stream
            self.bar = None


class _AboveBar:
    """A stream for the log handler that writes through ``tqdm.write`` (above the bar)."""

    def write(self, text: str) -> None:
        from tqdm import tqdm

        if text.strip():
            tqdm.write(text.rstrip("\n"), file=sys.stderr)

    def flush(self) -> None:
        sys.stderr.flush()


def _estimate(profile: Any, args: argparse.Namespace, out: Path) -> tuple[int, bool] | None:
    """The plan's request count for this sync (:func:`~scaler_workbench.sync.plan_sync`: the
    sync's own windows, incremental ones included, and the last run's counts and pages per
    resource from ``run_summary.json``); None when it cannot plan."""
    from scaler_workbench.sync import plan_sync

    try:
        plan = plan_sync(
            profile,
            out=out,
            since=args.since,
            until=args.until,
            full=bool(getattr(args, "full", False)),
        )
    except Exception as exc:  # an estimate only: never stop a sync for it
        log.debug("no request plan: %s", exc)
        return None
    return plan.total_requests, plan.exact


def _emit(args: argparse.Namespace, payload: dict[str, Any], text: str) -> None:
    try:
        if getattr(args, "json", False):  # json.dumps escapes control characters itself
            print(redact(json.dumps(payload, indent=2, sort_keys=True, default=str)))
        elif text:
            print(terminal_text(text))
        sys.stdout.flush()
    except BrokenPipeError:  # `| head` read what it wanted: not an error of the command
        _stdout_closed()


def _stdout_closed() -> None:
    """Point stdout at /dev/null so the interpreter's last flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # not a real file (tests capture it)
        pass


def _default_out(profile: Any) -> Path:
    return Path("out") / profile.name


def _load(args: argparse.Namespace, *, check_values: bool = True) -> Any:
    from scaler_workbench.profile import read_profile

    path = Path(args.profile)
    if path.is_dir():
        inner = path / "profile.toml"
        raise ProfileError(
            f"{args.profile} is a folder, not a profile TOML",
            key="profile",
            hint=f"Give the profile file inside it: {inner}"
            if inner.is_file()
            else "Give a profile TOML file, e.g. mappings/sandbox/profile.toml.",
        )
    return read_profile(
        args.profile,
        environment=args.environment,
        variables=_variables(getattr(args, "variables", None) or []),
        check_values=check_values,
    )


def _variables(pairs: list[str]) -> dict[str, str]:
    """``--var NAME=VALUE`` pairs as a dict (a pair without ``=`` is a usage error)."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ProfileError(
                f"--var {pair!r} is not NAME=VALUE", key="--var", hint="e.g. --var account_id=100"
            )
        out[name.strip()] = value
    return out


def _writable(out: Path, option: str = "--out") -> None:
    """Fail early, with a usage error, when ``out`` cannot be created or written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise ProfileError(
            f"{option} {out}: cannot write there ({exc.strerror or type(exc).__name__})",
            key=option,
            hint="Give a folder you can write to (it is created when missing).",
        ) from None


def _parse_day(text: str | None, option: str) -> date | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ProfileError(
            f"{option} {text!r} is not a date",
            key=option,
            hint="Use YYYY-MM-DD or an ISO 8601 date-time.",
        ) from None
    return value.date()


def _check_range(args: argparse.Namespace) -> None:
    """``--since`` after ``--until`` is a usage error; a ``--since`` in the future a warning."""
    since = _parse_day(args.since, "--since")
    until = _parse_day(args.until, "--until")
    if since and until and since >= until:
        raise ProfileError(
            f"--since {args.since} is not before --until {args.until}: the range is empty",
            key="--since",
            hint="Give --since before --until (--until is exclusive).",
        )
    if since and since > datetime.now(UTC).date():
        log.warning("--since %s is in the future: there is nothing to fetch yet", args.since)


# -- commands ------------------------------------------------------------------------------------
def _cmd_sync(args: argparse.Namespace) -> int:
    from scaler_workbench.connectors._events import observe_fetch
    from scaler_workbench.sync import run_sync

    _check_range(args)
    formats = _formats(args.formats)
    profile = _load(args)
    out = Path(args.out) if args.out else _default_out(profile)
    if not args.dry_run:
        _writable(out)
    progress = _Progress(args, None if args.from_file else _estimate(profile, args, out))
    quota: QuotaExhaustedError | None = None
    try:
        with observe_fetch(progress.event):
            result = run_sync(
                profile,
                out=out,
                since=args.since,
                until=args.until,
                full=args.full,
                dry_run=args.dry_run,
                formats=formats,
                progress=progress.stage,
                sandbox_seed=args.seed,
                from_file=args.from_file,
            )
    except QuotaExhaustedError as exc:
        if getattr(exc, "result", None) is None:
            raise
        quota, result = exc, exc.result  # type: ignore[attr-defined]
    finally:
        progress.close()
    s = result.summary
    lines = [
        f"{profile.name}: {result.status} ({result.mode} sync, run {result.run_id})",
        f"  fetched: {progress.counts()}",
        "  accepted: " + ", ".join(f"{k} {v}" for k, v in s.get("accepted", {}).items()),
    ]
    if s.get("quarantined_this_run"):
        lines.append(
            "  quarantined: " + ", ".join(f"{k} {v}" for k, v in s["quarantined_this_run"].items())
        )
    for kind, plan in s.get("deactivation", {}).items():
        if plan["vanished"]:
            lines.append(
                f"  {kind}s vanished: {len(plan['vanished'])}, deactivated: "
                f"{len(plan['deactivated'])}" + (f" ({plan['refused']})" if plan["refused"] else "")
            )
    recon = s.get("reconciliation")
    if recon:
        for name, c in recon.get("checks", {}).items():
            lines.append(
                f"  reconciliation {name}: {c['within_tolerance']} of {c['compared']} provider "
                f"totals within tolerance"
            )
    for name, left in s.get("remaining", {}).items():
        n = len(left) if isinstance(left, list) else left
        lines.append(f"  remaining {name}: {n}" + (" sequence(s)" if isinstance(n, int) else ""))
    for reason in s.get("partial_reasons", []):
        lines.append(f"  {'stopped' if quota else 'partial'}: {reason}")
    for w in s.get("incomplete_windows", []):
        lines.append(
            f"  incomplete: {w['resource']} {w['parent'] or ''} {w['window'] or ''}: {w['why']}"
        )
    if result.export_dir:
        lines.append(f"  files: {result.export_dir}")
    if "report.html" in result.files:
        lines.append(f"  report: {result.files['report.html']}")
    reasons = not_ready_reasons(result)
    lines.append("ready: yes" if not reasons else "not ready: " + "; ".join(reasons))
    payload = {
        "status": result.status,
        "exit_code": result.exit_code,
        "run_id": result.run_id,
        "mode": result.mode,
        "export_dir": str(result.export_dir) if result.export_dir else None,
        "state": str(result.state_path),
        "files": {k: str(v) for k, v in result.files.items()},
        "ready": not reasons,
        "not_ready_reasons": reasons,
        "summary": s,
    }
    if quota is not None:
        print(terminal_text(f"error: {quota}"), file=sys.stderr)
        payload.update(error=type(quota).__name__, message=quota.message, hint=quota.hint)
    _emit(args, payload, "\n".join(lines))
    return result.exit_code


def not_ready_reasons(result: Any) -> list[str]:
    """Why a sync's files are not ready for Scaler; empty when they are.

    One place to extend: today the run's status, its ``ready_to_export`` gate and its
    ``partial_reasons`` (from ``result.summary``), without repeats.

    Parameters
    ----------
    result : SyncResult

    Returns
    -------
    list of str
    """
    s = result.summary or {}
    reasons: list[str] = []
    if result.status == "dry-run":
        reasons.append("a dry run writes no files")
    elif result.status != "success":
        reasons.append(f"the run is {result.status}")
    gate = s.get("ready_to_export") or {}
    if gate and not gate.get("ready", True):
        reasons.extend(str(r) for r in gate.get("reasons", []))
    reasons.extend(str(r) for r in s.get("partial_reasons", []))
    return list(dict.fromkeys(reasons))


def _formats(text: str) -> tuple[str, ...]:
    formats = tuple(f.strip().lower() for f in text.split(",") if f.strip())
    bad = [f for f in formats if f not in ("csv", "xlsx")]
    if bad or not formats:
        raise ProfileError(f"unknown export format(s) {bad}", key="--formats", hint="Use csv,xlsx.")
    return formats


def _open_state(args: argparse.Namespace) -> tuple[Any, Any, Path]:
    from scaler_workbench.sync import state_path

    profile = _load(args)
    out = Path(args.out) if args.out else _default_out(profile)
    return profile, out, state_path(profile, out)


def _cmd_status(args: argparse.Namespace) -> int:
    from scaler_workbench.store import StateStore

    profile, _, spath = _open_state(args)
    if not spath.exists():
        _emit(args, {"state": str(spath), "runs": []}, f"no state at {spath}: run `sync` first")
        return EXIT_OK
    with StateStore(spath) as store:
        runs = store.runs(limit=args.runs)
        registry = store.entities()
        payload = {
            "state": str(spath),
            "schema_version": store.schema_version,
            "runs": runs.to_dict(orient="records"),
            "registry": {
                kind: {
                    "active": int((grp["active"] == 1).sum()),
                    "inactive": int((grp["active"] == 0).sum()),
                }
                for kind, grp in registry.groupby("kind")
            },
            "watermarks": store.watermarks(),
            "stored": store.table_counts(),
            "quarantine_open": len(store.quarantine()),
        }
    lines = [f"{profile.name}: state {spath} (schema v{payload['schema_version']})"]
    for r in payload["runs"]:
        lines.append(
            f"  run {r['run_id']:>4}  {r['status']:<15} {r['mode']:<11} {r['started_at']}"
            f" -> {r['finished_at'] or '-'}"
        )
    for kind, c in payload["registry"].items():
        lines.append(f"  {kind}s: {c['active']} active, {c['inactive']} deactivated")
    for res, value in sorted(payload["watermarks"].items()):
        lines.append(f"  watermark {res}: {value}")
    lines.append("  stored: " + ", ".join(f"{k} {v}" for k, v in payload["stored"].items()))
    lines.append(f"  open quarantine: {payload['quarantine_open']}")
    _emit(args, payload, "\n".join(lines))
    return EXIT_OK


def _cmd_quarantine(args: argparse.Namespace) -> int:
    from scaler_workbench.store import StateStore

    _, _, spath = _open_state(args)
    if not spath.exists():
        _emit(args, {"state": str(spath), "rows": []}, f"no state at {spath}: run `sync` first")
        return EXIT_OK
    with StateStore(spath) as store:
        if args.release:
            n = store.release_quarantine(args.release, note="released by the analyst (cli)")
            _emit(args, {"released": n}, f"released {n} record(s)")
            return EXIT_OK
        if args.history is not None:
            hist = store.quarantine_history(args.history)
            _emit(args, {"history": hist.to_dict(orient="records")}, hist.to_string(index=False))
            return EXIT_OK
        rows = store.quarantine(status=None if args.all else "open")
    cols = ["qid", "status", "table", "record_key", "rule", "severity", "reason"]
    text = "no quarantined records" if rows.empty else rows[cols].to_string(index=False)
    _emit(args, {"rows": rows.to_dict(orient="records")}, text)
    return EXIT_OK


def _cmd_export(args: argparse.Namespace) -> int:
    from scaler_workbench.store import StateStore
    from scaler_workbench.sync import export_from_state, sync_lock

    profile, out, spath = _open_state(args)
    if not spath.exists():
        raise ProfileError(
            f"no state at {spath}", key="--out", hint="Run `scaler-workbench sync` first."
        )
    with sync_lock(spath, provider=profile.name), StateStore(spath) as store:
        files, checks = export_from_state(
            store, out / "export", profile=profile, formats=_formats(args.formats)
        )
    _emit(
        args,
        {"files": {k: str(v) for k, v in files.items()}, **checks},
        f"wrote {len(files)} files to {out / 'export'}",
    )
    return EXIT_OK


def _run_sandbox(argv: list[str]) -> int:
    """``scaler-workbench sandbox ARGS``: the simulator's own command line, ARGS untouched."""
    from scaler_workbench.sandbox.__main__ import main as sandbox_main

    return sandbox_main(argv, prog="scaler-workbench sandbox")


def _cmd_init(args: argparse.Namespace) -> int:
    made = scaffold_provider(args.provider, like=args.like, folder=args.dir, force=args.force)
    lines = [
        f"created {made['profile']} (from the {args.like} profile)",
        f"created {made['workbook']} (empty: fill in the fields and choices, then check it)",
    ]
    if made["env"]:
        lines.append("credentials and URLs come from: " + ", ".join(made["env"]))
    lines.append(f"next: edit the profile, then `scaler-workbench check {made['profile']}`")
    _emit(
        args, {k: v if isinstance(v, list) else str(v) for k, v in made.items()}, "\n".join(lines)
    )
    return EXIT_OK


#: the base URL of a scaffolded profile until the analyst sets the provider's
_PLACEHOLDER_URL = "https://api.example.com"


def _env_token(name: str) -> str:
    return re.sub(r"[^A-Z0-9]+", "_", name.upper()).strip("_")


def _rename_env_vars(node: Any, old: str, new: str, renamed: dict[str, str]) -> Any:
    """``node`` with every variable name under a ``*_env`` key derived from ``new``."""

    def rename(var: str) -> str:
        o, n = _env_token(old), _env_token(new)
        name = var.replace(o, n) if o and o in var else f"{n}_{var}"
        renamed[var] = name
        return name

    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if str(key).endswith("_env") and isinstance(value, str) and value:
                out[key] = rename(value)
            elif str(key).endswith("_env") and isinstance(value, dict):
                out[key] = {k: rename(v) if isinstance(v, str) else v for k, v in value.items()}
            else:
                out[key] = _rename_env_vars(value, old, new, renamed)
        return out
    if isinstance(node, list):
        return [_rename_env_vars(v, old, new, renamed) for v in node]
    return node


def _mapping_skeleton(mapping: dict[str, Any]) -> dict[str, Any]:
    """The template's tables, resources and settings, with no field and no value map."""

    def table(spec: dict[str, Any]) -> dict[str, Any]:
        kept = {k: v for k, v in spec.items() if k not in ("fields", "value_maps")}
        return {**kept, "fields": {}}

    out: dict[str, Any] = {}
    for name, spec in mapping.items():
        if not isinstance(spec, dict):
            continue
        if "resource" in spec or "derive_from" in spec or "fields" in spec:
            out[name] = table(spec)
        else:  # usage / readings: one table per source
            out[name] = {src: table(t) for src, t in spec.items() if isinstance(t, dict)}
    return out


def scaffold_provider(
    provider: str,
    *,
    like: str = "sandbox",
    folder: str | os.PathLike[str] = "mappings",
    force: bool = False,
) -> dict[str, Any]:
    """Scaffold ``<folder>/<provider>/``: a profile from a shipped one and an empty workbook.

    The profile is the ``like`` profile's (``mappings/<like>/profile.toml``) with the new
    provider name, every credential and URL variable (``*_env`` keys) renamed after the
    provider (``SANDBOX_API_KEY`` -> ``ACME_API_KEY``; a name without the template's gets the
    provider as prefix), every base URL (and literal auth URL host) set to
    ``https://api.example.com`` with no ``allowed_hosts`` and no built-in sandbox (the
    template's hosts are another provider's), and its ``[mapping]`` cut to tables, resources
    and settings:
    the fields are the analyst's to fill in ``mapping.xlsx``
    (:func:`~scaler_workbench.mapping.to_mapping_workbook` of that profile).

    Parameters
    ----------
    provider : str
        Provider name: letters, digits, ``_`` and ``-``, starting with a letter.
    like : str
        A shipped profile (a folder of ``mappings/`` with a ``profile.toml``).
    folder : path-like
        Parent of the provider folder.
    force : bool
        Overwrite an existing ``profile.toml`` / ``mapping.xlsx``.

    Returns
    -------
    dict
        ``profile`` and ``workbook`` (paths) and ``env`` (the variable names the profile reads).

    Raises
    ------
    ProfileError
        A bad provider name, an unknown ``like``, an existing scaffold without ``force``, or a
        folder that cannot be written.
    """
    from scaler_workbench.mapping import to_mapping_workbook
    from scaler_workbench.profile import read_profile, to_profile_toml

    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", provider):
        raise ProfileError(
            f"provider name {provider!r} is not usable as a folder and variable prefix",
            key="provider",
            hint="Use letters, digits, _ and -, starting with a letter (e.g. acme_energy).",
        )
    shipped = _shipped_profiles()
    if like not in shipped:
        raise ProfileError(
            f"no shipped profile {like!r}",
            key="--like",
            hint=f"Pick one of: {', '.join(shipped)}.",
        )
    target = Path(folder) / provider
    profile_path, workbook_path = target / "profile.toml", target / "mapping.xlsx"
    existing = [str(p) for p in (profile_path, workbook_path) if p.exists()]
    if existing and not force:
        raise ProfileError(
            f"{', '.join(existing)} already exist(s)",
            key="provider",
            hint="Pick another provider name, or pass --force to overwrite.",
        )
    _writable(target, "--dir")
    data = read_profile(SHIPPED_MAPPINGS / like / "profile.toml").to_dict()
    renamed: dict[str, str] = {}
    data = _rename_env_vars(data, like, provider, renamed)
    data["provider"] = {
        **data.get("provider", {}),
        "name": provider,
        "description": f"{provider}: scaffolded from the {like} profile",
    }
    # the template's hosts are another provider's: credentials must never go there by mistake
    for env in dict(data.get("environments") or {}).values():
        env.pop("builtin_sandbox", None)
        env.pop("allowed_hosts", None)
        env["base_url"] = _PLACEHOLDER_URL
        for key in ("authorize_url", "token_url"):  # an environment's own auth URLs too
            value = env.get(key)
            if isinstance(value, str) and "://" in value:
                env[key] = _PLACEHOLDER_URL + "/" + value.split("://", 1)[1].partition("/")[2]
    auth = data.get("auth")
    if isinstance(auth, dict):
        for key, value in list(auth.items()):
            if key.endswith("_url") and isinstance(value, str) and "://" in value:
                auth[key] = _PLACEHOLDER_URL + "/" + value.split("://", 1)[1].partition("/")[2]
    if data.get("mapping"):
        data["mapping"] = _mapping_skeleton(dict(data["mapping"]))
    header = (
        f"# Provider profile for {provider}, scaffolded by `scaler-workbench init` from the "
        f"{like} profile.\n# Set the base URL, the auth, the resources and their paging "
        "(docs/profiles.md); the *_env keys\n# name the environment variables holding "
        "credentials (never the secrets themselves).\n# Fill mapping.xlsx, then run "
        f"`scaler-workbench check {profile_path}`.\n\n"
    )
    profile_path.write_text(header + to_profile_toml(data), encoding="utf-8")
    profile = read_profile(profile_path)  # what it wrote must load
    to_mapping_workbook(profile, workbook_path)
    return {
        "profile": profile_path,
        "workbook": workbook_path,
        "env": sorted(set(renamed.values())),
    }


def _cmd_check(args: argparse.Namespace) -> int:
    import pandas as pd

    from scaler_workbench.mapping import check_mapping, read_mapping_workbook

    # enumerated values are reported below by sheet and cell, not refused at load
    profile = _load(args, check_values=False)
    units = profile.section("units") or {}
    resources = list(profile.resources)

    def structure(mapping: Any, where: str) -> list[dict[str, Any]]:
        found = check_mapping(mapping, {}, units=units, resources=resources)
        found = found[found["check"] != "missing_resource"]  # offline: there are no records
        return [{"where": where, **row} for row in found.to_dict(orient="records")]

    findings = structure(profile.section("mapping") or {}, str(args.profile))
    workbook = Path(args.workbook) if args.workbook else Path(args.profile).parent / "mapping.xlsx"
    if args.workbook or workbook.exists():
        try:
            mapping = read_mapping_workbook(workbook)
        except (MappingError, FilterError) as exc:
            findings.append(
                {
                    "where": str(workbook),
                    "check": "workbook",
                    "severity": "error",
                    "sheet": getattr(exc, "sheet", None),
                    "cell": getattr(exc, "cell", None),
                    "message": exc.message,
                    "hint": exc.hint,
                }
            )
        else:
            findings.extend(structure(mapping, str(workbook)))
    errors = sum(f["severity"] == "error" for f in findings)
    warnings = len(findings) - errors
    checked = str(args.profile) + (f" and {workbook}" if workbook.exists() else "")
    lines = [f"{f['severity']}: {f['where']}: {f['message']}" for f in findings]
    lines.append(
        f"check: {checked}: "
        + (f"{errors} error(s), {warnings} warning(s)" if findings else "no problems found")
    )
    payload = {
        "ok": errors == 0,
        "errors": errors,
        "warnings": warnings,
        "findings": pd.DataFrame(findings).astype(object).where(pd.notna, None).to_dict("records")
        if findings
        else [],
    }
    _emit(args, payload, "\n".join(lines))
    return EXIT_USAGE if errors else EXIT_OK


def _set_aside_state(path: Path) -> Path:
    """Move a state database (and SQLite's side files) to a new, unused name; return it."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    kept = path.with_name(f"{path.stem}.before-{stamp}{path.suffix}")
    for suffix in ("", "-wal", "-shm", "-journal"):
        side = Path(f"{path}{suffix}")
        if side.exists():
            side.rename(Path(f"{kept}{suffix}"))
    return kept


def _cmd_demo(args: argparse.Namespace) -> int:
    from scaler_workbench.connectors._events import observe_fetch
    from scaler_workbench.profile import read_profile
    from scaler_workbench.sync import builtin_sandbox, run_sync, state_path

    profile = read_profile(args.profile)
    traps = bool(getattr(args, "traps", True))
    if traps:
        profile = _with_active_period(profile)
    out = Path(args.out)
    _writable(out)
    progress = _Progress(args)
    with builtin_sandbox(profile, seed=args.seed, force=True, traps=traps) as sandbox:
        try:
            end = getattr(getattr(sandbox, "data", None), "end", None)  # no empty months after
            with observe_fetch(progress.event):
                try:
                    result = run_sync(
                        profile, out=out, full=True, until=end, progress=progress.stage
                    )
                except ProfileError as exc:
                    if getattr(exc, "key", None) != "sync.on_profile_change":
                        raise
                    # the demo's profile changed since the last demo in this folder (a newer
                    # package): its history was computed the old way; keep it aside, start afresh
                    kept = _set_aside_state(state_path(profile, out))
                    print(
                        f"note: the demo profile changed since the last demo in {out}; the old "
                        f"state was moved to {kept} and the demo starts from a fresh state",
                        file=sys.stderr,
                    )
                    result = run_sync(
                        profile, out=out, full=True, until=end, progress=progress.stage
                    )
        finally:
            progress.close()
        truth = sandbox.ground_truth()
        facts = sandbox.trap_facts() if traps else {}
    assert result.export_dir is not None
    table = compare_with_truth(result.export_dir / "usage.csv", truth, rtol=DEMO_RTOL)
    spans = check_trap_spans(result.export_dir / "usage.csv", facts)
    recon_ok = all(
        c["beyond_tolerance"] == 0
        for c in result.summary.get("reconciliation", {}).get("checks", {}).values()
    )
    ok = bool(table["ok"].all()) and not table.empty and recon_ok and bool(spans["ok"].all())
    width = max([5, *(len(str(m)) for m in table["meter_id"])])
    lines = [
        f"demo: onboarded the builtin sandbox with {_shown(args.profile)}",
        f"      {result.status} {result.mode} sync (run {result.run_id}); Scaler files in "
        f"{result.export_dir}",
        "      exported monthly totals (usage.csv) vs Sandbox.ground_truth():",
        "",
        f"{'meter':<{width}}  {'unit':<4}  {'months':>6}  {'total':>16}  {'max rel err':>11}  ok",
    ]
    for row in table.itertuples(index=False):
        lines.append(
            f"{row.meter_id:<{width}}  {row.unit:<4}  {row.months:>6}  {row.total:>16.6f}  "
            f"{row.max_rel_err:>11.2e}  {'OK' if row.ok else 'MISMATCH'}"
            + ("  (production)" if row.value == "production" else "")
        )
    n_months = int(table["months"].sum()) if not table.empty else 0
    final = (
        f"OK: {len(table)} meters, {n_months} meter-months match ground truth within "
        f"{DEMO_RTOL:g} relative; files in {result.export_dir}"
        if ok
        else f"MISMATCH: {int((~table['ok']).sum())} of {len(table)} meters differ from ground "
        f"truth (tolerance {DEMO_RTOL:g} relative)"
    )
    lines.append(final)
    recon = result.summary.get("reconciliation", {}).get("checks", {})
    for name, c in recon.items():
        lines.append(
            f"provider totals ({name}): {c['within_tolerance']} of {c['compared']} reconcile "
            f"within tolerance (reconciliation.csv)"
        )
    if len(spans):
        lines += ["", "traps: partial months exported with the span that has data (trap_facts):"]
        for row in spans.itertuples(index=False):
            lines.append(
                f"  {row.trap:<20} {row.meter_id:<{width}}  {row.month}  "
                f"{row.start_date}..{row.end_date}  total {row.exported:.6f} "
                f"(truth {row.truth:.6f})  {'OK' if row.ok else 'MISMATCH'}"
            )
    findings = findings_by_rule(result.export_dir / "quarantine.csv")
    if len(findings):
        lines += ["", "findings by rule (quarantine.csv):"]
        for row in findings.itertuples(index=False):
            lines.append(f"  {row.rule:<22} {row.severity:<8} {row.rows:>7}  e.g. {row.example}")
    gate = result.summary.get("ready_to_export", {})
    cov = result.summary.get("coverage", {})
    lines += [
        "",
        "months: " + ", ".join(f"{k} {v}" for k, v in cov.items() if k not in ("meters",)),
        "ready to export: "
        + ("yes" if gate.get("ready") else "no: " + "; ".join(gate.get("reasons", []))),
    ]
    payload = {
        "ok": ok,
        "export_dir": str(result.export_dir),
        "sync_status": result.status,
        "reconciliation": recon,
        "meters": table.to_dict(orient="records"),
        "traps": spans.to_dict(orient="records"),
        "findings": findings.to_dict(orient="records"),
        "ready_to_export": gate,
    }
    _emit(args, payload, "\n".join(lines))
    return EXIT_OK if ok else EXIT_VERIFY


def _shown(path: str) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return path


def _with_active_period(profile: Any) -> Any:
    """The demo's profile with the trap sandbox's ``installed_on``/``removed_on`` meter fields
    mapped to ``active_from``/``active_to`` (unless the profile maps them already)."""
    from scaler_workbench.profile import Profile

    data = profile.to_dict()
    fields = data.get("mapping", {}).get("meters", {}).get("fields")
    if not isinstance(fields, dict):
        return profile
    fields.setdefault("active_from", "installed_on")
    fields.setdefault("active_to", "removed_on")
    return Profile.from_dict(data, path=profile.path)


def check_trap_spans(usage_csv: Path, facts: Mapping[str, Any]) -> Any:
    """Each trap meter's first and last exported month against :meth:`Sandbox.trap_facts`.

    A month whose data starts late or ends early is exported with the span that has data:
    ``start_date`` = the first local day with data, ``end_date`` = the day after the last
    (interval traps: ``first_day``/``span_end`` of the facts' months; the bill trap: its first
    bill's ``period_start`` and ``billed_until``), and its total equals the ground truth's
    partial-month total (its ``production`` for a generating meter, else its consumption).

    Returns
    -------
    pandas.DataFrame
        ``trap, meter_id, month, start_date, end_date, want_start, want_end, exported, truth,
        ok`` (one row per checked month; empty without facts).
    """
    import pandas as pd

    cols = ["trap", "meter_id", "month", "start_date", "end_date"]
    cols += ["want_start", "want_end", "exported", "truth", "ok"]
    if not facts:
        return pd.DataFrame(columns=cols)
    exported = pd.read_csv(
        usage_csv, dtype={"meter_external_id": str, "start_date": str, "end_date": str}
    )
    rows = []
    for trap, f in facts.items():
        mine = exported[exported["meter_external_id"] == f["meter_id"]].sort_values("start_date")
        made = any(pd.notna(g.get("production")) for g in f.get("ground_truth", []))
        value = "production" if made else "consumption"  # a generating meter's energy
        truth = {g["month"]: float(g[value]) for g in f.get("ground_truth", [])}
        if not len(mine) or not truth:
            continue
        want: list[tuple[str, str, str]] = []  # (month, start, end)
        if f.get("kind") == "bill" and f.get("bills"):
            first, until = f["bills"][0]["period_start"], f["billed_until"]
            want.append((first[:7], first, ""))
            last_day = (pd.Timestamp(until) - pd.Timedelta(days=1)).strftime("%Y-%m")
            want.append((last_day, "", until))
        else:
            with_data = [m for m in f.get("months", []) if m.get("first_day")]
            if not with_data:
                continue
            want.append((with_data[0]["month"], with_data[0]["first_day"], ""))
            want.append((with_data[-1]["month"], "", with_data[-1]["span_end"]))
        for month, start, end in want:
            row = mine[mine["start_date"].str[:7] == month]
            if len(row) != 1:
                rows.append([trap, f["meter_id"], month, "", "", start, end, 0.0, 0.0, False])
                continue
            r = row.iloc[0]
            got = float(r[value])
            t = truth.get(month, float("nan"))
            ok = (
                (not start or r["start_date"] == start)
                and (not end or r["end_date"] == end)
                and abs(got - t) <= DEMO_RTOL * max(abs(t), 1.0)
            )
            rows.append(
                [trap, f["meter_id"], month, r["start_date"], r["end_date"], start, end, got, t, ok]
            )
    return pd.DataFrame(rows, columns=cols)


def findings_by_rule(quarantine_csv: Path) -> Any:
    """Quarantine rows per rule and severity with one example reason (the demo's summary).

    Returns
    -------
    pandas.DataFrame
        ``rule, severity, rows, example``, the most frequent first.
    """
    import pandas as pd

    q = pd.read_csv(quarantine_csv, dtype=str, keep_default_na=False)
    if q.empty:
        return pd.DataFrame(columns=["rule", "severity", "rows", "example"])
    first = q.groupby(["rule", "severity"], sort=False).first()
    out = (
        q.groupby(["rule", "severity"], sort=False)
        .size()
        .rename("rows")
        .reset_index()
        .assign(
            example=lambda d: [
                f"{first.loc[(r, s), 'record_key']}: {first.loc[(r, s), 'reason'][:90]}"
                for r, s in zip(d["rule"], d["severity"], strict=True)
            ]
        )
    )
    return out.sort_values(["rows", "rule"], ascending=[False, True], ignore_index=True)


def compare_with_truth(usage_csv: Path, truth: Any, *, rtol: float = DEMO_RTOL) -> Any:
    """Per meter: months, total, max relative error of the exported monthly totals vs ``truth``.

    ``truth`` has ``meter_id, month (YYYY-MM), consumption`` and optionally ``production``
    (a generating meter's energy, NaN elsewhere); the export's ``start_date`` is the site's
    local date, so its first 7 characters are the local month. Consumption is compared for
    every meter-month, production where the truth or the export has it; ``value`` says which
    one a meter's ``total`` [canonical unit] is (``production`` for a generating meter).
    """
    import numpy as np
    import pandas as pd

    exported = pd.read_csv(usage_csv, dtype={"meter_external_id": str, "start_date": str})
    made = (
        exported["production"].astype(float)
        if "production" in exported.columns
        else pd.Series(np.nan, index=exported.index)
    )
    got = (
        pd.DataFrame(
            {
                "meter_id": exported["meter_external_id"],
                "month": exported["start_date"].str[:7],
                "exported": exported["consumption"].astype(float),
                "made": made,
                "unit_x": exported["unit"].astype(str),
            }
        )
        .groupby(["meter_id", "month"], as_index=False)
        .agg(
            exported=("exported", "sum"),
            made=("made", lambda s: s.sum(min_count=1)),
            unit_x=("unit_x", "first"),
        )
    )
    truth = truth.assign(production=truth.get("production", np.nan))
    want = truth.rename(columns={"consumption": "truth", "production": "truth_made"})
    want = want[["meter_id", "month", "truth", "truth_made", "unit"]]
    want = want.assign(meter_id=want["meter_id"].astype(str), month=want["month"].astype(str))
    m = got.merge(want, on=["meter_id", "month"], how="outer")

    def rel(have: Any, want: Any) -> Any:
        return ((have - want).abs() / want.abs().where(want.abs() > 0, 1.0)).fillna(np.inf)

    # consumption always; production where either side has it (a generating meter's energy)
    makes = m["truth_made"].notna() | m["made"].notna()
    m["rel"] = np.maximum(
        rel(m["exported"], m["truth"]),
        rel(m["made"], m["truth_made"]).where(makes, 0.0),
    )
    m["total"] = m["exported"] + m["made"].where(makes, 0.0)
    m["unit"] = m["unit"].fillna(m["unit_x"]).astype(str)
    m["value"] = np.where(makes, "production", "consumption")
    per = m.groupby("meter_id", as_index=False).agg(
        unit=("unit", "first"),
        value=("value", "max"),
        months=("month", "count"),
        total=("total", "sum"),
        max_rel_err=("rel", "max"),
    )
    per["ok"] = per["max_rel_err"] <= rtol
    return per.sort_values("meter_id").reset_index(drop=True)


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "sync": _cmd_sync,
    "status": _cmd_status,
    "quarantine": _cmd_quarantine,
    "export": _cmd_export,
    "init": _cmd_init,
    "check": _cmd_check,
    "demo": _cmd_demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``scaler-workbench``; returns the exit code (see the module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    if command == "sandbox":  # its options are the simulator's: pass them through untouched
        return _run_sandbox(argv[argv.index("sandbox") + 1 :])
    parser = _parser()
    args = parser.parse_args(argv)
    root = logging.getLogger()
    saved_level = root.level
    _setup_logging(args)
    try:
        return _run_command(args)
    finally:  # leave the process's logging as we found it (main() may be called in-process)
        root.removeHandler(_HANDLER)
        root.setLevel(saved_level)


def _error(args: argparse.Namespace, code: int, kind: str, message: str, hint: str) -> int:
    """One error line (the cause first) and its hint on stderr; JSON on stdout with --json."""
    try:
        print(
            terminal_text(f"error: {message}" + (f"\n  -> {hint}" if hint else "")), file=sys.stderr
        )
        if args.command == "sync":
            print(f"not ready: the sync did not finish (exit {code})", file=sys.stderr)
    except (BrokenPipeError, ValueError):  # stderr gone too: the exit code still tells
        pass
    if args.json:
        payload = {
            "status": "error",
            "exit_code": code,
            "error": kind,
            "message": message,
            "hint": hint,
        }
        _emit(args, payload, "")
    return code


def _run_command(args: argparse.Namespace) -> int:
    try:
        return _COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except WorkbenchError as exc:
        if args.debug:
            import traceback

            traceback.print_exc()
        return _error(args, exit_code_for(exc), type(exc).__name__, exc.message, exc.hint)
    except BrokenPipeError:  # the reader of our output went away (`| head`)
        _stdout_closed()
        return EXIT_OK
    except OSError as exc:  # a file or folder we were given: say which and why
        if args.debug:
            raise
        where = f": {exc.filename}" if exc.filename else ""
        return _error(
            args,
            EXIT_FAILED,
            type(exc).__name__,
            f"{exc.strerror or exc}{where}",
            "Check the path and its permissions.",
        )
    except Exception as exc:  # a bug: say so briefly, full traceback with --debug
        if args.debug:
            raise
        return _error(
            args,
            EXIT_FAILED,
            type(exc).__name__,
            f"unexpected {type(exc).__name__}: {exc!s}",
            "re-run with --debug for the traceback and report it",
        )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
