"""The ``scaler-workbench`` command: sync, status, quarantine, export, sandbox, demo.

Exit codes (for schedulers; see docs/cli.md):

====  ===========================================================================
0     success
1     partial: records quarantined, an incomplete pull, a refused deactivation, or provider
      totals that do not reconcile with the exported ones
2     usage error: bad arguments, bad profile or mapping
3     authentication failed (or a credential variable is unset)
4     the provider's quota is exhausted: completed work is committed and exported; the next
      run fetches only what remains
5     the provider is down or unreachable (5xx / 429 after retries, connection errors)
6     the sync failed otherwise (state, export, data or request errors)
7     verification failed (``demo``: an exported total differs from ground truth)
8     another sync of this profile is running (same state): this one did not start
130   interrupted (Ctrl-C)
====  ===========================================================================

Errors print the workbench's message and hint, never a traceback (unless ``--debug``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from scaler_workbench._secrets import get_logger, redact
from scaler_workbench.exceptions import (
    AuthError,
    CredentialError,
    MappingError,
    ProfileError,
    ProviderUnavailableError,
    QuotaExhaustedError,
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
DEMO_RTOL = 1e-9


def exit_code_for(exc: BaseException) -> int:
    """The exit code a scheduler sees for ``exc``."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, SyncLockedError):
        return EXIT_LOCKED
    if isinstance(exc, AuthError | CredentialError):
        return EXIT_AUTH
    if isinstance(exc, ProfileError | MappingError):
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


def _parser() -> argparse.ArgumentParser:
    from scaler_workbench import __version__

    common = _ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print a JSON result on stdout")
    common.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    common.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")

    def profile_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("profile", help="provider profile TOML, e.g. mappings/sandbox/profile.toml")
        p.add_argument("--out", help="output folder (default out/<provider>)")
        p.add_argument("--env", dest="environment", help="profile environment to use")

    parser = _ArgumentParser(
        prog="scaler-workbench",
        description="Onboard energy-data providers to Scaler: sync, inspect and export.",
        epilog="Exit codes: 0 ok, 1 partial, 2 usage/profile, 3 auth, 4 quota (resumable), "
        "5 provider down, 6 failed, 7 verification failed, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
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

    p = sub.add_parser("sandbox", help="serve the provider simulator (python -m ...sandbox)")
    p.add_argument("args", nargs=argparse.REMAINDER, help="passed to the sandbox server")

    p = sub.add_parser("demo", parents=[common], help="onboard the builtin sandbox end to end")
    p.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    p.add_argument("--seed", type=int, default=None, help="sandbox seed")
    p.add_argument("--profile", default=str(DEMO_PROFILE), help=argparse.SUPPRESS)
    return parser


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


def _progress(args: argparse.Namespace) -> tuple[Callable[[str], None], Callable[[], None]]:
    """A tqdm bar over the sync stages on a terminal; plain log lines otherwise."""
    stages = ["fetch", "transform", "validate", "commit", "export"]
    if sys.stderr.isatty() and not args.json and not args.quiet:
        from tqdm import tqdm

        bar = tqdm(total=len(stages), desc="sync", unit="stage", file=sys.stderr, leave=False)

        def on_stage(stage: str) -> None:
            if stage in stages and stages.index(stage) > 0:
                bar.update(1)
            bar.set_description(f"sync: {stage}")

        return on_stage, bar.close

    def log_stage(stage: str) -> None:
        log.info("stage: %s", stage)

    return log_stage, lambda: None


def _emit(args: argparse.Namespace, payload: dict[str, Any], text: str) -> None:
    if getattr(args, "json", False):  # json.dumps escapes control characters itself
        print(redact(json.dumps(payload, indent=2, sort_keys=True, default=str)))
    elif text:
        print(terminal_text(text))


def _default_out(profile: Any) -> Path:
    return Path("out") / profile.name


def _load(args: argparse.Namespace) -> Any:
    from scaler_workbench.profile import read_profile

    return read_profile(args.profile, environment=args.environment)


# -- commands ------------------------------------------------------------------------------------
def _cmd_sync(args: argparse.Namespace) -> int:
    from scaler_workbench.sync import run_sync

    profile = _load(args)
    out = Path(args.out) if args.out else _default_out(profile)
    on_stage, close = _progress(args)
    quota: QuotaExhaustedError | None = None
    try:
        result = run_sync(
            profile,
            out=out,
            since=args.since,
            until=args.until,
            full=args.full,
            dry_run=args.dry_run,
            formats=_formats(args.formats),
            progress=on_stage,
            sandbox_seed=args.seed,
            from_file=args.from_file,
        )
    except QuotaExhaustedError as exc:
        if getattr(exc, "result", None) is None:
            raise
        quota, result = exc, exc.result  # type: ignore[attr-defined]
    finally:
        close()
    s = result.summary
    lines = [
        f"{profile.name}: {result.status} ({result.mode} sync, run {result.run_id})",
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
    ready = s.get("ready_to_export")
    if ready:
        lines.append(
            "  ready to export: "
            + ("yes" if ready["ready"] else "no (" + "; ".join(ready["reasons"]) + ")")
        )
    if result.export_dir:
        lines.append(f"  files: {result.export_dir}")
    if "report.html" in result.files:
        lines.append(f"  report: {result.files['report.html']}")
    payload = {
        "status": result.status,
        "exit_code": result.exit_code,
        "run_id": result.run_id,
        "mode": result.mode,
        "export_dir": str(result.export_dir) if result.export_dir else None,
        "state": str(result.state_path),
        "files": {k: str(v) for k, v in result.files.items()},
        "summary": s,
    }
    if quota is not None:
        print(f"error: {quota}", file=sys.stderr)
        payload.update(error=type(quota).__name__, message=quota.message, hint=quota.hint)
    _emit(args, payload, "\n".join(lines))
    return result.exit_code


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


def _cmd_sandbox(args: argparse.Namespace) -> int:
    import runpy

    saved = sys.argv
    sys.argv = ["python -m scaler_workbench.sandbox", *args.args]
    try:
        runpy.run_module("scaler_workbench.sandbox", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_FAILED
    finally:
        sys.argv = saved
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from scaler_workbench.profile import read_profile
    from scaler_workbench.sync import builtin_sandbox, run_sync

    profile = read_profile(args.profile)
    out = Path(args.out)
    on_stage, close = _progress(args)
    with builtin_sandbox(profile, seed=args.seed, force=True) as sandbox:
        try:
            end = getattr(getattr(sandbox, "data", None), "end", None)  # no empty months after
            result = run_sync(profile, out=out, full=True, until=end, progress=on_stage)
        finally:
            close()
        truth = sandbox.ground_truth()
    assert result.export_dir is not None
    table = compare_with_truth(result.export_dir / "usage.csv", truth, rtol=DEMO_RTOL)
    recon_ok = all(
        c["beyond_tolerance"] == 0
        for c in result.summary.get("reconciliation", {}).get("checks", {}).values()
    )
    ok = bool(table["ok"].all()) and not table.empty and recon_ok
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
    payload = {
        "ok": ok,
        "export_dir": str(result.export_dir),
        "sync_status": result.status,
        "reconciliation": recon,
        "meters": table.to_dict(orient="records"),
    }
    _emit(args, payload, "\n".join(lines))
    return EXIT_OK if ok else EXIT_VERIFY


def _shown(path: str) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return path


def compare_with_truth(usage_csv: Path, truth: Any, *, rtol: float = DEMO_RTOL) -> Any:
    """Per meter: months, total, max relative error of the exported monthly totals vs ``truth``.

    ``truth`` has ``meter_id, month (YYYY-MM), consumption``; the export's ``start_date`` is the
    site's local date, so its first 7 characters are the local month.
    """
    import numpy as np
    import pandas as pd

    exported = pd.read_csv(usage_csv, dtype={"meter_external_id": str, "start_date": str})
    got = (
        pd.DataFrame(
            {
                "meter_id": exported["meter_external_id"],
                "month": exported["start_date"].str[:7],
                "exported": exported["consumption"].astype(float),
                "unit_x": exported["unit"].astype(str),
            }
        )
        .groupby(["meter_id", "month"], as_index=False)
        .agg(exported=("exported", "sum"), unit_x=("unit_x", "first"))
    )
    want = truth.rename(columns={"consumption": "truth"})[["meter_id", "month", "truth", "unit"]]
    want = want.assign(meter_id=want["meter_id"].astype(str), month=want["month"].astype(str))
    m = got.merge(want, on=["meter_id", "month"], how="outer")
    denom = m["truth"].abs().where(m["truth"].abs() > 0, 1.0)
    m["rel"] = ((m["exported"] - m["truth"]).abs() / denom).fillna(np.inf)
    m["unit"] = m["unit"].fillna(m["unit_x"]).astype(str)
    per = m.groupby("meter_id", as_index=False).agg(
        unit=("unit", "first"),
        months=("month", "count"),
        total=("exported", "sum"),
        max_rel_err=("rel", "max"),
    )
    per["ok"] = per["max_rel_err"] <= rtol
    return per.sort_values("meter_id").reset_index(drop=True)


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "sync": _cmd_sync,
    "status": _cmd_status,
    "quarantine": _cmd_quarantine,
    "export": _cmd_export,
    "sandbox": _cmd_sandbox,
    "demo": _cmd_demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``scaler-workbench``; returns the exit code (see the module docstring)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "sandbox":
        return _cmd_sandbox(args)
    root = logging.getLogger()
    saved_level = root.level
    _setup_logging(args)
    try:
        return _run_command(args)
    finally:  # leave the process's logging as we found it (main() may be called in-process)
        root.removeHandler(_HANDLER)
        root.setLevel(saved_level)


def _run_command(args: argparse.Namespace) -> int:
    try:
        return _COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except WorkbenchError as exc:
        code = exit_code_for(exc)
        if args.debug:
            import traceback

            traceback.print_exc()
        print(terminal_text(f"error: {exc}"), file=sys.stderr)
        if args.json:
            print(
                json.dumps(
                    {
                        "status": "error",
                        "exit_code": code,
                        "error": type(exc).__name__,
                        "message": exc.message,
                        "hint": exc.hint,
                    },
                    indent=2,
                    sort_keys=True,
                )
            )
        return code
    except Exception as exc:  # a bug: say so briefly, full traceback with --debug
        if args.debug:
            raise
        print(
            f"error: unexpected {type(exc).__name__}: {terminal_text(str(exc))}\n"
            "  -> re-run with --debug for the traceback and report it",
            file=sys.stderr,
        )
        return EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
