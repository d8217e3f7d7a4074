"""Serve the sandbox provider from a shell: ``python -m scaler_workbench.sandbox --help``.

Prints the base URL and ``export VAR=value`` lines for the credentials (the one place the
sandbox prints credentials, by design, so an analyst can paste them into a shell), then serves
until the lifetime ends or Ctrl-C.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Sequence

from scaler_workbench.exceptions import SandboxError
from scaler_workbench.sandbox.generate import TRAPS
from scaler_workbench.sandbox.server import AUTH_MODES, DATE_FORMATS, NEXT_URL_STYLES, PAGINATORS

__all__ = ["build_parser", "main"]


def build_parser(prog: str = "python -m scaler_workbench.sandbox") -> argparse.ArgumentParser:
    """The command-line options (each maps to a ``Sandbox`` keyword)."""
    p = argparse.ArgumentParser(
        prog=prog,
        description="Serve the scaler-workbench sandbox provider on 127.0.0.1.",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sites", type=int, default=6)
    p.add_argument("--meters-per-site", type=int, default=3)
    p.add_argument("--start", default="2024-01-01", help="first local day (YYYY-MM-DD)")
    p.add_argument("--end", default="2024-07-01", help="local day ending the data (exclusive)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 lets the OS choose")
    p.add_argument("--flavour", default="default")
    p.add_argument("--auth", choices=AUTH_MODES, default=None)
    p.add_argument("--api-key-name", default=None)
    p.add_argument("--bearer-format", default="Bearer {token}")
    p.add_argument("--client-auth", choices=("any", "basic", "body"), default="any")
    p.add_argument("--token-ttl", type=float, default=3600.0, help="[s]")
    p.add_argument("--paginator", choices=PAGINATORS, default=None)
    p.add_argument("--page-size", type=int, default=None)
    p.add_argument("--max-page-size", type=int, default=1000)
    p.add_argument("--bare-list", action="store_true", help="no {'data': ...} envelope")
    p.add_argument("--next-url-style", choices=NEXT_URL_STYLES, default="absolute")
    p.add_argument("--date-format", choices=DATE_FORMATS, default="any")
    p.add_argument("--end-inclusive", action="store_true")
    p.add_argument("--max-span-days", type=float, default=None)
    p.add_argument("--format", choices=("json", "xml"), default="json")
    p.add_argument("--as-of", default=None, help="ISO 8601 instant; later data is not served")
    p.add_argument("--every-nth-429", type=int, default=None)
    p.add_argument("--every-nth-503", type=int, default=None)
    p.add_argument("--retry-after", type=float, default=1)
    p.add_argument("--slow-seconds", type=float, default=0.0)
    p.add_argument("--quota-after", type=int, default=None)
    p.add_argument("--lifetime", type=float, default=1800.0, help="stop after this long [s]")
    p.add_argument(
        "--traps",
        nargs="*",
        default=None,
        metavar="TRAP",
        help="plant data traps as extra meters of the first site: all without names, else "
        "any of: " + ", ".join(TRAPS),
    )
    return p


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """Run the sandbox until its lifetime ends; returns the exit code.

    ``prog`` names the command in usage and errors (``scaler-workbench sandbox`` passes its own).
    """
    from scaler_workbench.sandbox.server import Sandbox

    a = (build_parser(prog) if prog else build_parser()).parse_args(argv)
    try:
        sb = Sandbox(
            seed=a.seed,
            sites=a.sites,
            meters_per_site=a.meters_per_site,
            start=a.start,
            end=a.end,
            host=a.host,
            port=a.port,
            flavour=a.flavour,
            auth=a.auth,
            api_key_name=a.api_key_name,
            bearer_format=a.bearer_format,
            client_auth=a.client_auth,
            token_ttl=a.token_ttl,
            paginator=a.paginator,
            page_size=a.page_size,
            max_page_size=a.max_page_size,
            envelope=False if a.bare_list else None,
            next_url_style=a.next_url_style,
            date_format=a.date_format,
            end_inclusive=a.end_inclusive,
            max_span_days=a.max_span_days,
            format=a.format,
            as_of=a.as_of,
            every_nth_429=a.every_nth_429,
            every_nth_503=a.every_nth_503,
            retry_after=a.retry_after,
            slow_seconds=a.slow_seconds,
            quota_after=a.quota_after,
            lifetime=a.lifetime,
            traps=False if a.traps is None else (a.traps or True),
        ).start()
    except SandboxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"# sandbox {sb!r}")
    print(f"# base URL: {sb.url}   (stops after {a.lifetime:g} s; Ctrl-C to stop now)")
    for key, value in sb.env().items():
        print(f"export {key}={shlex.quote(value)}")
    for trap, facts in sb.trap_facts().items():
        print(f"# trap {trap}: meter {facts['meter_id']}")
    sys.stdout.flush()
    try:
        while sb.running:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        sb.stop()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
