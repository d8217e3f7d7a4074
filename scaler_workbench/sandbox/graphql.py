"""The GraphQL flavour: a public-GraphQL-energy-API look-alike, with its own ground truth.

``Sandbox(flavour="graphql")`` serves ``POST /v1-beta/gql`` (``sb.url + "/gql"``) with a
static bearer token (``SANDBOX_TOKEN``, ``Authorization: Bearer ...``)::

    query { viewer { homes { id timeZone appNickname address { address1 postalCode city
            country } meteringPointData { consumptionEan } } } }

    query ($homeId: ID!, $resolution: EnergyResolution!, $first: Int, $after: String,
           $last: Int, $before: String) {
      viewer { home(id: $homeId) {
        consumption(resolution: $resolution, first: $first, after: $after,
                    last: $last, before: $before) {
          pageInfo { hasNextPage hasPreviousPage startCursor endCursor count }
          nodes { from to consumption consumptionUnit }        # and/or
          edges { cursor node { from to consumption consumptionUnit } }
        } } } }

The server does not parse GraphQL: it answers ``homes`` or ``home(...) { consumption }`` from the
document's words (``consumption(...)`` asks for consumption) and the arguments from ``variables`` (``homeId``, ``resolution`` = ``HOURLY``,
``first``/``after`` or ``last``/``before``), returning ``nodes`` and/or ``edges`` as the document
selects them. Its quirks, on purpose:

- a Relay connection per home over hourly nodes (local ``from``/``to`` with the home's offset);
  cursors are opaque (base64 of the node's ``from``);
- a *silent page cap*: ``first``/``last`` above ``max_page`` (default 100) get ``max_page`` nodes,
  with ``pageInfo`` telling the truth;
- ``consumption`` is ``null`` for hours without data (about ``null_share`` of them, default
  2 %, and one whole day per home);
- errors are HTTP 200 with an ``errors`` array: a bad token -> ``UNAUTHENTICATED``; an unknown
  home -> ``NOT_FOUND`` with ``path``; a missing ``first``/``last`` -> ``BAD_USER_INPUT``;
- a request budget: ``budget`` requests (default 100) per ``budget_seconds`` (300) of the
  sandbox clock, then a ban for ``ban_seconds`` (600): HTTP 429 ``{"errors": [{"message":
  "Too many requests"}]}`` WITHOUT ``Retry-After`` (each request during the ban renews it).
  ``sb.flavour.lift_ban()`` ends it; ``sb.flavour.budget = n`` changes the budget.

The sandbox's own faults (``every_nth_429`` with ``Retry-After``, ``every_nth_503``) apply too.
``sb.flavour.requests`` lists the ``variables`` of every query answered.
``sb.flavour.ground_truth()`` sums the generated hours (never HTTP): ``meter_id`` (home id),
``month`` (the home's local ``YYYY-MM``), ``consumption`` [kWh], ``unit``.

Options (``flavour_options``): ``homes`` (3), ``start`` ("2024-01-01"), ``end``
("2024-03-01", exclusive, local midnights), ``seed`` (0), ``max_page``, ``null_share``,
``budget``, ``budget_seconds``, ``ban_seconds``.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections import deque
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from scaler_workbench.sandbox.server import Flavour, Request, Response, Route, register_flavour

__all__ = ["GraphQLFlavour"]

_ZONES = ("Europe/Oslo", "Europe/Stockholm", "Europe/Berlin", "Europe/Amsterdam")
_CITIES = ("Bergen", "Uppsala", "Leipzig", "Utrecht")


def _gql(
    data: Any = None, errors: list[dict[str, Any]] | None = None, status: int = 200
) -> Response:
    doc: dict[str, Any] = {"data": data}
    if errors:
        doc["errors"] = errors
    body = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()
    return Response(status=status, body=body)


def _error(message: str, code: str, path: list[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"message": message, "extensions": {"code": code}}
    if path:
        out["path"] = path
    return out


def _cursor(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class GraphQLFlavour(Flavour):
    """Homes and their hourly consumption as a GraphQL Relay connection (see the module)."""

    name: ClassVar[str] = "graphql"
    api_root: ClassVar[str] = "/v1-beta"
    defaults: ClassVar[dict[str, Any]] = {"auth": "bearer", "paginator": "none"}

    def __init__(
        self,
        sandbox: Any,
        *,
        homes: int = 3,
        start: str = "2024-01-01",
        end: str = "2024-03-01",
        seed: int = 0,
        max_page: int = 100,
        null_share: float = 0.02,
        budget: int | None = 100,
        budget_seconds: float = 300.0,
        ban_seconds: float = 600.0,
    ) -> None:
        super().__init__(sandbox)
        self.max_page, self.budget = max_page, budget
        self.budget_seconds, self.ban_seconds = budget_seconds, ban_seconds
        self._lock = threading.Lock()
        self._recent: deque[float] = deque()
        self._banned_until = 0.0
        self.bans = 0
        #: the ``variables`` of every query answered (no secrets: the token is a header)
        self.requests: list[dict[str, Any]] = []
        rng = np.random.default_rng(seed)
        self.homes: list[dict[str, Any]] = []
        self.series: dict[str, dict[str, Any]] = {}
        for i in range(homes):
            home_id = (
                f"{rng.integers(16**8):08x}-{i:04x}-4a{i:02x}-9b0c-{rng.integers(16**12):012x}"
            )
            tz = _ZONES[i % len(_ZONES)]
            self.homes.append(
                {
                    "id": home_id,
                    "appNickname": f"Home {i + 1}",
                    "timeZone": tz,
                    "address": {
                        "address1": f"Storgata {i + 10}",
                        "postalCode": f"{5000 + i}",
                        "city": _CITIES[i % len(_CITIES)],
                        "country": "NO" if i % 4 == 0 else ("SE", "DE", "NL")[i % 4 - 1],
                    },
                    "meteringPointData": {"consumptionEan": f"7070575000{i:08d}"},
                }
            )
            hours = pd.date_range(
                pd.Timestamp(start, tz=tz), pd.Timestamp(end, tz=tz), freq="h", inclusive="left"
            )
            n = len(hours)
            base = 0.6 + 0.4 * np.sin(np.arange(n) * 2 * np.pi / 24) ** 2 + 0.1 * i
            value = np.round(base + rng.gamma(2.0, 0.15, n), 3)
            missing = rng.random(n) < null_share
            day = int(rng.integers(1, max(2, n // 24 - 1)))
            missing[day * 24 : day * 24 + 24] = True  # one whole day without data
            starts = [t.isoformat(timespec="milliseconds") for t in hours]
            ends = [(t + pd.Timedelta(hours=1)).isoformat(timespec="milliseconds") for t in hours]
            self.series[home_id] = {
                "hours": hours,
                "from": starts,
                "to": ends,
                "value": [None if m else float(v) for v, m in zip(value, missing, strict=True)],
                "cursor": {_cursor(s): k for k, s in enumerate(starts)},
            }

    # -- controls ---------------------------------------------------------------------------
    def lift_ban(self) -> None:
        """End a ban and forget the budget's recent requests."""
        with self._lock:
            self._banned_until = 0.0
            self._recent.clear()

    def ground_truth(self) -> pd.DataFrame:
        """Monthly kWh per home (local months; null hours count as nothing)."""
        rows = []
        for home in self.homes:
            s = self.series[home["id"]]
            frame = pd.DataFrame({"t": s["hours"], "v": s["value"]}).dropna()
            frame["month"] = frame["t"].dt.strftime("%Y-%m")
            for month, total in frame.groupby("month")["v"].sum().items():
                rows.append(
                    {"meter_id": home["id"], "month": month, "consumption": total, "unit": "kWh"}
                )
        return pd.DataFrame(rows)

    # -- serving ----------------------------------------------------------------------------
    def routes(self) -> Any:
        return (Route("POST", "/gql", self.handle, auth=False),)

    def _spend(self) -> bool:
        """Count one request against the budget; False while banned (the ban is renewed)."""
        now = self.sandbox.clock.monotonic()
        with self._lock:
            if now < self._banned_until:
                self._banned_until = now + self.ban_seconds
                return False
            while self._recent and self._recent[0] <= now - self.budget_seconds:
                self._recent.popleft()
            if self.budget is not None and len(self._recent) >= self.budget:
                self._banned_until = now + self.ban_seconds
                self.bans += 1
                return False
            self._recent.append(now)
            return True

    def handle(self, req: Request) -> Response:
        if not self._spend():
            return _gql(errors=[{"message": "Too many requests"}], status=429)
        token = self.sandbox.credentials.token
        if req.headers.get("Authorization", "") != f"Bearer {token}":
            return _gql(
                errors=[_error("Context creation failed: invalid token", "UNAUTHENTICATED")]
            )
        try:
            doc = json.loads(req.body.decode("utf-8") or "null")
        except (UnicodeDecodeError, json.JSONDecodeError):
            return _gql(errors=[_error("body is not JSON", "BAD_REQUEST")], status=400)
        if not isinstance(doc, dict) or not isinstance(doc.get("query"), str):
            return _gql(errors=[_error("a query is required", "BAD_REQUEST")], status=400)
        query = doc["query"]
        variables = doc.get("variables") or {}
        if not isinstance(variables, dict):
            return _gql(errors=[_error("variables must be an object", "BAD_USER_INPUT")])
        self.requests.append(dict(variables))
        if "viewer" not in query:
            return _gql(errors=[_error("Cannot query field on type Query", "GRAPHQL_VALIDATION")])
        query = re.sub(r"#[^\n]*", "", query)  # comments say nothing
        if not re.search(r"\bconsumption\s*\(", query):
            return _gql({"viewer": {"homes": [dict(h) for h in self.homes]}})
        return self._consumption(query, variables)

    def _consumption(self, query: str, v: dict[str, Any]) -> Response:
        path = ["viewer", "home", "consumption"]
        home_id = v.get("homeId")
        s = self.series.get(str(home_id))
        if s is None:
            return _gql(
                {"viewer": {"home": None}},
                [_error(f"home {home_id!r} not found", "NOT_FOUND", path[:2])],
            )
        if str(v.get("resolution", "")).upper() != "HOURLY":
            return _gql(
                {"viewer": {"home": {"consumption": None}}},
                [_error("the sandbox serves resolution HOURLY only", "BAD_USER_INPUT", path)],
            )
        first, last = v.get("first"), v.get("last")
        n_all = len(s["from"])
        try:
            if first is not None:
                size = min(int(first), self.max_page)  # the silent cap
                after = v.get("after")
                lo = 0 if after in (None, "") else s["cursor"][str(after)] + 1
                hi = min(n_all, lo + size)
            elif last is not None:
                size = min(int(last), self.max_page)
                before = v.get("before")
                hi = n_all if before in (None, "") else s["cursor"][str(before)]
                lo = max(0, hi - size)
            else:
                return _gql(
                    {"viewer": {"home": {"consumption": None}}},
                    [_error("You must provide a `first` or `last` value", "BAD_USER_INPUT", path)],
                )
        except (KeyError, TypeError, ValueError):
            return _gql(
                {"viewer": {"home": {"consumption": None}}},
                [_error("invalid cursor or page size", "BAD_USER_INPUT", path)],
            )
        nodes = [
            {
                "from": s["from"][k],
                "to": s["to"][k],
                "consumption": s["value"][k],
                "consumptionUnit": "kWh",
            }
            for k in range(lo, hi)
        ]
        cursors = [_cursor(s["from"][k]) for k in range(lo, hi)]
        conn: dict[str, Any] = {
            "pageInfo": {
                "hasNextPage": hi < n_all,
                "hasPreviousPage": lo > 0,
                "startCursor": cursors[0] if cursors else None,
                "endCursor": cursors[-1] if cursors else None,
                "count": len(nodes),
            }
        }
        if re.search(r"\bnodes\b", query):
            conn["nodes"] = nodes
        if re.search(r"\bedges\b", query):
            conn["edges"] = [
                {"cursor": c, "node": node} for c, node in zip(cursors, nodes, strict=True)
            ]
        return _gql({"viewer": {"home": {"id": home_id, "consumption": conn}}})


register_flavour("graphql", GraphQLFlavour)
