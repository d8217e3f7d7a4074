"""An EcoStruxure-flavoured provider simulator: the Scoring Partner API over loopback HTTP.

It speaks the shapes of the public 1.0.0 SDK docs (docs/ecostruxure.md):

=====================================================  =========================================
path (under ``/ecostruxure/scoring/v1``)               answer
=====================================================  =========================================
``GET /sites``                                         ``[Site]``: metadata, postalAddress (tz)
``GET /sites/{site-id}/meters``                        ``[Meter]`` with ``measurements[]``
``GET /sites/{site-id}/timeseries``                    ``[Timeserie{key, values[]}]``, filters
                                                       ``updatedAt[gte]`` / ``updatedAt[lt]``
``GET|POST /sites/{site-id}/performance-scores``       stored scores (POST: 201, the stored list)
``POST /sites/{site-id}/scoring-providers``            site registration ``{leedId, leedName}``
``GET /sites/{site-id}/projects``                      ``[Project{id, name, type, ...}]``: the
                                                       site's projects (registrations too); the
                                                       public page does not pin this path, so
                                                       the route is ``projects_route``
=====================================================  =========================================

OAuth2 authorization code with refresh under ``/ecostruxure/v1/oauth``: ``GET authorize`` (and
``sandbox-authorize``) consents at once and redirects with ``?code=&state=``; ``POST token``
takes ``authorization_code`` (PKCE checked when a challenge was sent) and ``refresh_token``
grants; refresh tokens rotate (the old one stops working), access tokens live one hour on the
injected clock. Scopes are enforced per endpoint. Errors are RFC 7807 problem details
(``application/problem+json``, ``invalidParams`` or ``invalid-params`` by ``problem_style``).

The data is seeded and vectorised: three sites in Europe/Paris, America/New_York and
Asia/Singapore; hourly values for electricity (a meter with two measurements), solar, natural
gas and diesel (m³), potable and reclaimed water (m³), waste generated and waste diverted (kg,
two meters), a CO2 sensor (ppm) and a zone comfort sensor (zone temperature in °C, relative
humidity in %RH); one orphan timeseries key without a meter. The comfort, CO2 and diverted
waste series are not Scaler usage (:data:`NOT_IMPORTED`). :meth:`EcoStruxureSandbox.ground_truth` sums the generated
arrays (never HTTP) into monthly totals per Scaler meter in each site's local months.

Run standalone (``with EcoStruxureSandbox() as sb: ...``) or mount :meth:`EcoStruxureProvider.handle`
in another server: it takes ``(method, path, query, headers, body)`` and returns a
:class:`Response`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit

import numpy as np
import pandas as pd

from scaler_workbench._secrets import get_logger, register_secret
from scaler_workbench.clock import Clock, SystemClock
from scaler_workbench.exceptions import SandboxError

if TYPE_CHECKING:
    from scaler_workbench.profile import Profile

__all__ = [
    "API_PREFIX",
    "NOT_IMPORTED",
    "OAUTH_PREFIX",
    "SCORE_CATEGORIES",
    "EcoStruxureProvider",
    "EcoStruxureSandbox",
    "Response",
    "profile_for",
]

log = get_logger(__name__)

API_PREFIX = "/ecostruxure/scoring/v1"
OAUTH_PREFIX = "/ecostruxure/v1/oauth"
ACCESS_TOKEN_LIFETIME = 3600.0  # [s]
ALL_SCOPES = (
    "read:site",
    "read:energy-performance",
    "write:energy-score",
    "read:energy-score",
    "offline_access",
)
SCORE_TYPES = ("daily", "monthly", "average", "localAverage")
#: both vocabularies: SDK 1.0.0 and the product page
SCORE_CATEGORIES = {
    "v1": ("energy", "water", "waste", "transportation", "humanExperience", "reEntry"),
    "page": ("Electricity", "Fuel", "Water", "Waste", "Human Experience"),
}

#: ``commodity / usage`` prefixes whose series the workbench reports as not imported (comfort
#: data has no Scaler meter type; diverted waste is part of the waste generated).
NOT_IMPORTED = ("Human Experience", "Waste / Waste Diverted")

_SITES: tuple[dict[str, Any], ...] = (
    {
        "id": "site-paris",
        "name": "Paris HQ",
        "type": "Office",
        "tz": "Europe/Paris",
        "address": "35 Rue Joseph Monier",
        "city": "Rueil-Malmaison",
        "country": "FR",
        "zip": "92500",
        "state": "Ile-de-France",
        "lat": 48.8768,
        "lon": 2.1757,
        "area": 12500.0,
    },
    {
        "id": "site-boston",
        "name": "Boston Lab",
        "type": "Laboratory",
        "tz": "America/New_York",
        "address": "800 Federal Street",
        "city": "Andover",
        "country": "US",
        "zip": "01810",
        "state": "MA",
        "lat": 42.6583,
        "lon": -71.1368,
        "area": 8300.0,
    },
    {
        "id": "site-singapore",
        "name": "Singapore DC",
        "type": "Data Center",
        "tz": "Asia/Singapore",
        "address": "50 Kallang Avenue",
        "city": "Singapore",
        "country": "SG",
        "zip": "339505",
        "state": "",
        "lat": 1.3109,
        "lon": 103.8652,
        "area": 5400.0,
    },
)

# (meter suffix, name, commodity, usage, [(measurement id, name, unit, mean per hour)], sites)
_METERS: tuple[
    tuple[str, str, str, str, tuple[tuple[str, str, str, float], ...], tuple[int, ...]], ...
] = (
    (
        "elec",
        "Main incomer",
        "Electricity",
        "Purchased from Grid",
        (
            ("ae", "Active energy delivered", "kWh", 180.0),
            ("hvac", "HVAC sub-circuit", "kWh", 60.0),
        ),
        (0, 1, 2),
    ),
    (
        "pv",
        "Rooftop PV",
        "Electricity",
        "Generated onsite - solar",
        (("ae", "Active energy produced", "kWh", 25.0),),
        (0,),
    ),
    ("gas", "Gas meter", "Fuel", "Natural Gas", (("vol", "Volume", "m³", 8.0),), (0, 1)),
    ("diesel", "Generator tank", "Fuel", "Diesel", (("vol", "Volume", "m³", 0.01),), (1,)),
    (
        "water",
        "Water main",
        "Water",
        "Municipality supplied potable water",
        (("vol", "Volume", "m³", 1.5),),
        (0, 1, 2),
    ),
    (
        "rain",
        "Rainwater harvest",
        "Water",
        "Reclaimed onsite",
        (("vol", "Volume", "m³", 0.3),),
        (2,),
    ),
    (
        "waste",
        "Waste compactor",
        "Waste",
        "Waste Generated",
        (("mass", "Mass", "kg", 4.0),),
        (0, 2),
    ),
    (
        "iaq",
        "Air quality sensor",
        "Human Experience/Air Quality",
        "CO2",
        (("co2", "CO2 concentration", "ppm", 600.0),),
        (0, 1),
    ),
    # drawn from a second random stream (_LATER): the series above keep their values
    (
        "recycling",
        "Recycling compactor",
        "Waste",
        "Waste Diverted",
        (("mass", "Mass", "kg", 1.5),),
        (0, 2),
    ),
    (
        "comfort",
        "Zone comfort sensor",
        "Human Experience/Comfort",
        "Zone conditions",
        (
            ("zone-temp", "Zone temperature", "°C", 21.0),
            ("humidity", "Relative humidity", "%RH", 45.0),
        ),
        (0, 1),
    ),
)
_LATER = frozenset({"recycling", "comfort"})


def _iso(ts: pd.DatetimeIndex | pd.Series) -> np.ndarray:
    return np.asarray(pd.DatetimeIndex(ts).strftime("%Y-%m-%dT%H:%M:%SZ"), dtype=object)


@dataclass
class Response:
    """What :meth:`EcoStruxureProvider.handle` returns."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class _Series:
    key: str
    site: int
    meter_id: str  # the Scaler meter id: "<meter id>:<measurement id>" ("" for the orphan)
    unit: str
    commodity_usage: str
    dates: pd.DatetimeIndex
    values: np.ndarray
    updated: pd.DatetimeIndex


class EcoStruxureProvider:
    """The simulator's state and request handling (no sockets: see :class:`EcoStruxureSandbox`).

    Parameters
    ----------
    seed : int
        Seed of the generated values.
    start, end : str
        UTC span of the hourly values (``end`` exclusive).
    clock : Clock, optional
        Token lifetimes run on this clock (inject a ``FakeClock`` to expire tokens in tests).
    problem_style : {"camel", "kebab"}
        Spell the problem-details list ``invalidParams`` or ``invalid-params``.
    client_id : str
        The registered client id; the secret is random per instance (:attr:`client_secret`).
    projects_route : str
        The last segment of the projects-per-site path (``/sites/{id}/<projects_route>``): the
        public page names the feature but not its path, so tests move it.
    """

    def __init__(
        self,
        *,
        seed: int = 7,
        start: str = "2023-12-31T00:00:00Z",
        end: str = "2024-04-01T00:00:00Z",
        clock: Clock | None = None,
        problem_style: str = "camel",
        client_id: str = "ecostruxure-sandbox-client",
        projects_route: str = "projects",
    ) -> None:
        self.seed = seed
        self.start = pd.Timestamp(start).tz_convert("UTC")
        self.end = pd.Timestamp(end).tz_convert("UTC")
        self.clock: Clock = clock or SystemClock()
        self.problem_style = problem_style
        self.client_id = client_id
        self.projects_route = projects_route
        self.client_secret = secrets.token_urlsafe(24)
        register_secret(self.client_secret)
        self.as_of = self.end + pd.Timedelta(days=1)
        self.requests: list[dict[str, Any]] = []
        self.scores: dict[str, list[dict[str, Any]]] = {}
        self.registrations: dict[str, dict[str, Any]] = {}
        self._codes: dict[str, dict[str, Any]] = {}
        self._access: dict[str, tuple[float, frozenset[str]]] = {}
        self._refresh: dict[str, frozenset[str]] = {}
        self._lock = threading.RLock()
        self.sites = [self._site(s) for s in _SITES]
        self.meters: dict[str, list[dict[str, Any]]] = {s["id"]: [] for s in _SITES}
        self.series: list[_Series] = []
        self._generate()

    # -- data -----------------------------------------------------------------------------
    @staticmethod
    def _site(s: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "id": s["id"],
            "name": s["name"],
            "type": s["type"],
            "sourceSystemId": f"ebo-{s['id']}",
            "metadata": {
                "grossArea": s["area"],
                "buildingOccupants": int(s["area"] // 25),
                "daysPerWeekWithVisitors": 5,
                "numberOfVisitorsPerDay": 40,
                "visitDuration": 2,
                "weeklyOperatingHours": 60,
            },
            "postalAddress": {
                "address": s["address"],
                "city": s["city"],
                "countryIsoCode": s["country"],
                "zipCode": s["zip"],
                "stateProvince": s["state"],
                "timezone": s["tz"],
                "coordinates": {"latitude": s["lat"], "longitude": s["lon"], "elevation": 30},
            },
        }

    def _generate(self) -> None:
        rng = np.random.default_rng(self.seed)
        later = np.random.default_rng(self.seed + 1)
        dates = pd.date_range(self.start, self.end, freq="h", inclusive="left")
        hours = dates.hour.to_numpy()
        daily = 0.6 + 0.4 * np.sin((hours - 6) / 24 * 2 * np.pi).clip(0)  # day-time peak
        solar = np.sin(((hours + 24 - 6) % 24) / 12 * np.pi).clip(0)
        for i, s in enumerate(_SITES):
            for suffix, name, commodity, usage, measurements, sites in _METERS:
                if i not in sites:
                    continue
                meter_id = f"{s['id']}-{suffix}"
                meter: dict[str, Any] = {
                    "id": meter_id,
                    "name": name,
                    "gatewayId": f"gw-{s['id']}",
                    "commodity": commodity,
                    "usage": usage,
                    "measurements": [],
                }
                for mid, mname, unit, mean in measurements:
                    key = f"ts-{meter_id}-{mid}"
                    meter["measurements"].append(
                        {"id": mid, "name": mname, "unit": unit, "timeseries": {"key": key}}
                    )
                    shape = solar if suffix == "pv" else daily
                    gen = later if suffix in _LATER else rng
                    noise = gen.gamma(8.0, 1 / 8.0, size=len(dates))
                    if unit == "ppm":
                        values = np.round(400 + mean * shape * noise, 1)
                    elif unit in ("°C", "%RH"):
                        values = np.round(mean + 2 * (shape - 0.8) + (noise - 1), 2)
                    else:
                        values = np.round(mean * shape * noise, 3)
                    lag = gen.integers(1, 5, size=len(dates)).astype("timedelta64[h]")
                    updated = dates + pd.to_timedelta(lag) + pd.Timedelta(hours=1)
                    self.series.append(
                        _Series(
                            key,
                            i,
                            f"{meter_id}:{mid}",
                            unit,
                            f"{commodity} / {usage}",
                            dates,
                            values,
                            pd.DatetimeIndex(updated),
                        )
                    )
                self.meters[s["id"]].append(meter)
        # a timeseries that no meter's measurement points at (a BMS point nobody mapped)
        self.series.append(
            _Series(
                "ts-site-paris-unclaimed",
                0,
                "",
                "degC",
                "",
                dates,
                np.round(21 + rng.normal(0, 0.5, len(dates)), 2),
                pd.DatetimeIndex(dates + pd.Timedelta(hours=2)),
            )
        )

    def set_as_of(self, when: str | datetime) -> None:
        """Only values updated before ``when`` (UTC) are served: lets new data 'arrive'."""
        self.as_of = (
            pd.Timestamp(when).tz_convert("UTC")
            if pd.Timestamp(when).tzinfo
            else (pd.Timestamp(when).tz_localize("UTC"))
        )

    def ground_truth(self, energy_factors: Mapping[str, float] | None = None) -> pd.DataFrame:
        """Monthly totals per Scaler meter in the site's local months, from the arrays.

        Parameters
        ----------
        energy_factors : dict, optional
            ``commodity / usage`` -> [kWh/m³] for fuels; those meters are then in kWh.

        Returns
        -------
        pandas.DataFrame
            ``meter_id, month (local YYYY-MM), consumption, unit``; values updated before
            :attr:`as_of` only; the series of :data:`NOT_IMPORTED` (comfort, CO2, diverted
            waste) and the orphan series are excluded.
        """
        factors = dict(energy_factors or {})
        frames = []
        for s in self.series:
            if not s.meter_id or s.commodity_usage.startswith(NOT_IMPORTED):
                continue
            visible = np.asarray(s.updated < self.as_of)
            tz = _SITES[s.site]["tz"]
            month = s.dates[visible].tz_convert(tz).strftime("%Y-%m")
            values = s.values[visible]
            unit = s.unit
            if s.commodity_usage in factors:
                values = values * factors[s.commodity_usage]
                unit = "kWh"
            frame = pd.DataFrame({"month": month, "consumption": values})
            out = frame.groupby("month", sort=True)["consumption"].sum().reset_index()
            out.insert(0, "meter_id", s.meter_id)
            out["unit"] = unit
            frames.append(out)
        return pd.concat(frames, ignore_index=True)

    # -- HTTP -----------------------------------------------------------------------------
    def handle(
        self,
        method: str,
        path: str,
        query: Mapping[str, list[str]] | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
    ) -> Response:
        """Answer one request (path without scheme/host; query as ``parse_qs`` gives it)."""
        query = dict(query or {})
        headers = {k.lower(): v for k, v in (headers or {}).items()}
        with self._lock:
            self.requests.append({"method": method, "path": path, "query": query})
        try:
            if path.startswith(OAUTH_PREFIX + "/"):
                return self._oauth(method, path[len(OAUTH_PREFIX) + 1 :], query, headers, body)
            if path.startswith(API_PREFIX + "/"):
                return self._api(method, path[len(API_PREFIX) :], query, headers, body)
            return self._problem(404, "Not Found", f"no route {path}", path)
        except Exception as exc:  # pragma: no cover - a simulator bug: answer, do not hang
            log.exception("sandbox error on %s %s", method, path)
            return self._problem(500, "Internal Server Error", type(exc).__name__, path)

    # problem details (RFC 7807)
    def _problem(
        self,
        status: int,
        title: str,
        detail: str,
        instance: str,
        invalid: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        doc: dict[str, Any] = {
            "type": f"https://exchange.se.com/problems/{title.lower().replace(' ', '-')}",
            "title": title,
            "status": status,
            "instance": instance,
            "detail": detail,
            "debugging": f"req-{len(self.requests):06d}",
        }
        if invalid:
            doc["invalidParams" if self.problem_style == "camel" else "invalid-params"] = invalid
        return Response(
            status,
            json.dumps(doc).encode(),
            {"Content-Type": "application/problem+json", **(headers or {})},
        )

    @staticmethod
    def _json(status: int, doc: Any) -> Response:
        return Response(status, json.dumps(doc).encode(), {"Content-Type": "application/json"})

    # OAuth2
    def _client_ok(self, form: Mapping[str, str], headers: Mapping[str, str]) -> bool:
        cid, secret = form.get("client_id", ""), form.get("client_secret", "")
        auth = headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            try:
                cid, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return False
        return cid == self.client_id and secrets.compare_digest(secret, self.client_secret)

    def _oauth(
        self,
        method: str,
        route: str,
        query: Mapping[str, list[str]],
        headers: Mapping[str, str],
        body: bytes,
    ) -> Response:
        q = {k: v[0] for k, v in query.items()}
        if route in ("authorize", "sandbox-authorize") and method == "GET":
            if q.get("client_id") != self.client_id or q.get("response_type") != "code":
                return self._json(400, {"error": "invalid_request"})
            redirect = q.get("redirect_uri", "")
            if not redirect:
                return self._json(
                    400, {"error": "invalid_request", "error_description": "redirect_uri"}
                )
            scopes = frozenset((q.get("scope") or " ".join(ALL_SCOPES)).split())
            code = secrets.token_urlsafe(16)
            with self._lock:
                self._codes[code] = {
                    "redirect_uri": redirect,
                    "scopes": scopes & frozenset(ALL_SCOPES),
                    "challenge": q.get("code_challenge"),
                    "expires": self.clock.monotonic() + 600,
                }
            params = {"code": code}
            if "state" in q:
                params["state"] = q["state"]
            sep = "&" if "?" in redirect else "?"
            return Response(302, b"", {"Location": f"{redirect}{sep}{urlencode(params)}"})
        if route == "token" and method == "POST":
            form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
            if not self._client_ok(form, headers):
                return self._json(401, {"error": "invalid_client"})
            grant = form.get("grant_type")
            with self._lock:
                if grant == "authorization_code":
                    info = self._codes.pop(form.get("code", ""), None)
                    if info is None or info["expires"] < self.clock.monotonic():
                        return self._json(400, {"error": "invalid_grant"})
                    if form.get("redirect_uri") != info["redirect_uri"]:
                        return self._json(
                            400, {"error": "invalid_grant", "error_description": "redirect_uri"}
                        )
                    if info["challenge"]:
                        digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
                        if (
                            base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
                            != info["challenge"]
                        ):
                            return self._json(
                                400, {"error": "invalid_grant", "error_description": "PKCE"}
                            )
                    scopes = info["scopes"]
                elif grant == "refresh_token":
                    scopes_or_none = self._refresh.pop(form.get("refresh_token", ""), None)
                    if scopes_or_none is None:
                        return self._json(400, {"error": "invalid_grant"})
                    scopes = scopes_or_none
                else:
                    return self._json(400, {"error": "unsupported_grant_type"})
                access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
                self._access[access] = (self.clock.monotonic() + ACCESS_TOKEN_LIFETIME, scopes)
                if "offline_access" in scopes:
                    self._refresh[refresh] = scopes
            doc = {
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": int(ACCESS_TOKEN_LIFETIME),
                "scope": " ".join(sorted(scopes)),
            }
            if "offline_access" in scopes:
                doc["refresh_token"] = refresh
            return self._json(200, doc)
        return self._json(404, {"error": "not_found"})

    def _authorised(self, headers: Mapping[str, str], scope: str, instance: str) -> Response | None:
        auth = headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        entry = self._access.get(token)
        if entry is None or entry[0] <= self.clock.monotonic():
            return self._problem(
                401,
                "Unauthorized",
                "the access token is missing, invalid or expired",
                instance,
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        if scope not in entry[1]:
            return self._problem(403, "Forbidden", f"the token lacks scope {scope}", instance)
        return None

    # API
    def _api(
        self,
        method: str,
        route: str,
        query: Mapping[str, list[str]],
        headers: Mapping[str, str],
        body: bytes,
    ) -> Response:
        instance = API_PREFIX + route
        parts = [p for p in route.split("/") if p]
        if parts == ["sites"] and method == "GET":
            return self._authorised(headers, "read:site", instance) or self._json(200, self.sites)
        if len(parts) != 3 or parts[0] != "sites":
            return self._problem(404, "Not Found", f"no resource {route}", instance)
        site_id, what = parts[1], parts[2]
        scope = {
            ("GET", "meters"): "read:site",
            ("GET", "timeseries"): "read:energy-performance",
            ("GET", "performance-scores"): "read:energy-score",
            ("POST", "performance-scores"): "write:energy-score",
            ("POST", "scoring-providers"): "write:energy-score",
            ("GET", self.projects_route): "read:site",
        }.get((method, what))
        if scope is None:
            known = what in (
                "meters",
                "timeseries",
                "performance-scores",
                "scoring-providers",
                self.projects_route,
            )
            return self._problem(
                405 if known else 404,
                "Method Not Allowed" if known else "Not Found",
                f"{method} {route} is not supported",
                instance,
            )
        denied = self._authorised(headers, scope, instance)
        if denied is not None:
            return denied
        index = next((i for i, s in enumerate(self.sites) if s["id"] == site_id), None)
        if index is None:
            return self._problem(404, "Not Found", f"site {site_id!r} does not exist", instance)
        if what == "meters":
            return self._json(200, self.meters[site_id])
        if what == self.projects_route:
            return self._json(200, self._projects(index))
        if what == "timeseries":
            return self._timeseries(index, query, instance)
        if what == "performance-scores" and method == "GET":
            return self._get_scores(site_id, query)
        try:
            doc = json.loads(body or b"null")
        except json.JSONDecodeError:
            return self._problem(400, "Bad Request", "the body is not JSON", instance)
        if what == "performance-scores":
            return self._post_scores(site_id, doc, instance)
        return self._register(site_id, doc, instance)

    def _timeseries(self, site: int, query: Mapping[str, list[str]], instance: str) -> Response:
        bounds: dict[str, pd.Timestamp] = {}
        invalid = []
        for name in ("updatedAt[gte]", "updatedAt[lt]"):
            if name in query:
                try:
                    ts = pd.Timestamp(query[name][0])
                    if ts.tzinfo is None:
                        raise ValueError("no offset")
                    bounds[name] = ts.tz_convert("UTC")
                except ValueError:
                    invalid.append(
                        {
                            "path": "query",
                            "name": name,
                            "reason": "must be an ISO 8601 date-time with offset",
                        }
                    )
        if invalid:
            return self._problem(400, "Bad Request", "invalid query parameters", instance, invalid)
        out = []
        for s in self.series:
            if s.site != site:
                continue
            mask = np.asarray(s.updated < self.as_of)
            if "updatedAt[gte]" in bounds:
                mask &= np.asarray(s.updated >= bounds["updatedAt[gte]"])
            if "updatedAt[lt]" in bounds:
                mask &= np.asarray(s.updated < bounds["updatedAt[lt]"])
            dates, updated = _iso(s.dates[mask]), _iso(s.updated[mask])
            values = s.values[mask].tolist()
            out.append(
                {
                    "key": s.key,
                    "values": [
                        {"date": d, "updatedAt": u, "value": v}
                        for d, u, v in zip(dates, updated, values, strict=True)
                    ],
                }
            )
        return self._json(200, out)

    def _projects(self, index: int) -> list[dict[str, Any]]:
        """The site's projects: a benchmarking project, plus one per scoring registration."""
        site = _SITES[index]
        out: list[dict[str, Any]] = [
            {
                "id": f"prj-{site['id']}-benchmark",
                "name": f"{site['name']} energy benchmark",
                "type": "Benchmark",
                "status": "active",
                "siteId": site["id"],
            }
        ]
        reg = self.registrations.get(site["id"])
        if reg:
            out.append(
                {
                    "id": f"leed-{reg['leedId']}",
                    "name": reg["leedName"],
                    "type": "LEED",
                    "status": "registered",
                    "siteId": site["id"],
                    "leedId": reg["leedId"],
                }
            )
        return out

    def _get_scores(self, site_id: str, query: Mapping[str, list[str]]) -> Response:
        types, cats = set(query.get("type", [])), set(query.get("category", []))
        rows = [
            s
            for s in self.scores.get(site_id, [])
            if (not types or s["type"] in types) and (not cats or s["category"] in cats)
        ]
        return self._json(200, rows)

    def _post_scores(self, site_id: str, doc: Any, instance: str) -> Response:
        if not isinstance(doc, list):
            return self._problem(
                400,
                "Bad Request",
                "the body must be a JSON array of scores",
                instance,
                [{"path": "body", "name": "", "reason": "not an array"}],
            )
        invalid = []
        allowed = set(SCORE_CATEGORIES["v1"]) | set(SCORE_CATEGORIES["page"])
        for i, s in enumerate(doc):
            if not isinstance(s, dict):
                invalid.append({"path": "body", "name": f"[{i}]", "reason": "not an object"})
                continue
            for key in ("date", "score", "type", "category"):
                if key not in s:
                    invalid.append({"path": "body", "name": f"[{i}].{key}", "reason": "required"})
            try:
                datetime.strptime(str(s.get("date", "")), "%Y-%m-%d")
            except ValueError:
                invalid.append({"path": "body", "name": f"[{i}].date", "reason": "YYYY-MM-DD"})
            if isinstance(s.get("score"), bool) or not isinstance(s.get("score"), int | float):
                invalid.append({"path": "body", "name": f"[{i}].score", "reason": "number"})
            if s.get("type") not in SCORE_TYPES:
                invalid.append(
                    {
                        "path": "body",
                        "name": f"[{i}].type",
                        "reason": f"one of {', '.join(SCORE_TYPES)}",
                    }
                )
            if s.get("category") not in allowed:
                invalid.append({"path": "body", "name": f"[{i}].category", "reason": "unknown"})
        if invalid:
            return self._problem(
                400, "Bad Request", "invalid performance scores", instance, invalid
            )
        now = self.clock.now().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        stored = [
            {**{k: s[k] for k in ("date", "score", "type", "category")}, "updatedAt": now}
            for s in doc
        ]
        with self._lock:
            current = {
                (s["date"], s["type"], s["category"]): s for s in self.scores.get(site_id, [])
            }
            for s in stored:
                current[(s["date"], s["type"], s["category"])] = s
            self.scores[site_id] = sorted(
                current.values(), key=lambda s: (s["date"], s["type"], s["category"])
            )
        return self._json(201, stored)

    def _register(self, site_id: str, doc: Any, instance: str) -> Response:
        invalid = []
        if not isinstance(doc, dict):
            doc = {}
            invalid.append({"path": "body", "name": "", "reason": "not an object"})
        leed_id, leed_name = doc.get("leedId"), doc.get("leedName")
        if isinstance(leed_id, bool) or not isinstance(leed_id, int | float):
            invalid.append({"path": "body", "name": "leedId", "reason": "must be a number"})
        if not isinstance(leed_name, str) or not leed_name.strip():
            invalid.append(
                {"path": "body", "name": "leedName", "reason": "must be a non-empty string"}
            )
        if invalid:
            return self._problem(400, "Bad Request", "invalid site registration", instance, invalid)
        with self._lock:
            self.registrations[site_id] = {"leedId": leed_id, "leedName": leed_name}
        return self._json(201, {"siteId": site_id, "leedId": leed_id, "leedName": leed_name})


class _Handler(BaseHTTPRequestHandler):
    provider: EcoStruxureProvider
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        resp = self.server.provider.handle(  # type: ignore[attr-defined]
            self.command, parts.path, parse_qs(parts.query), dict(self.headers.items()), body
        )
        self.send_response(resp.status)
        for k, v in resp.headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(resp.body)))
        self.end_headers()
        self.wfile.write(resp.body)

    do_GET = do_POST = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:  # never log codes or tokens
        return


class EcoStruxureSandbox:
    """The EcoStruxure simulator on ``127.0.0.1`` with an OS-chosen port (a context manager).

    Attributes
    ----------
    url : str
        The API base, ``http://127.0.0.1:<port>/ecostruxure/scoring/v1``.
    authorize_url, token_url : str
        The OAuth2 endpoints.
    sandbox_authorize_url : str
        The consent page of the provider's sandbox (``.../oauth/sandbox-authorize``): the
        ``sandbox`` environment's authorize URL (:func:`profile_for`).
    provider : EcoStruxureProvider
        State, ground truth, request log, stored scores.

    Parameters are those of :class:`EcoStruxureProvider`.
    """

    def __init__(self, **kwargs: Any) -> None:
        self.provider = EcoStruxureProvider(**kwargs)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> EcoStruxureSandbox:
        try:
            server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        except OSError as exc:
            raise SandboxError(f"cannot listen on 127.0.0.1: {exc}") from exc
        server.daemon_threads = True
        server.provider = self.provider  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, daemon=True, name="ecostruxure-sandbox"
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> EcoStruxureSandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def root(self) -> str:
        if self._server is None:
            raise SandboxError(
                "the EcoStruxure sandbox is not running", hint="Use it in a with block."
            )
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def url(self) -> str:
        return self.root + API_PREFIX

    @property
    def authorize_url(self) -> str:
        return self.root + OAUTH_PREFIX + "/authorize"

    @property
    def sandbox_authorize_url(self) -> str:
        return self.root + OAUTH_PREFIX + "/sandbox-authorize"

    @property
    def token_url(self) -> str:
        return self.root + OAUTH_PREFIX + "/token"

    def env(self) -> dict[str, str]:
        """The environment variables the EcoStruxure profile names."""
        return {
            "ECOSTRUXURE_CLIENT_ID": self.provider.client_id,
            "ECOSTRUXURE_CLIENT_SECRET": self.provider.client_secret,
            "ECOSTRUXURE_SANDBOX_URL": self.url,
        }

    def ground_truth(self, energy_factors: Mapping[str, float] | None = None) -> pd.DataFrame:
        return self.provider.ground_truth(energy_factors)

    def set_as_of(self, when: str | datetime) -> None:
        self.provider.set_as_of(when)

    def __repr__(self) -> str:
        state = self.url if self._server is not None else "stopped"
        return f"EcoStruxureSandbox({state})"


def profile_for(
    sandbox: EcoStruxureSandbox,
    profile: Profile | None = None,
    *,
    token_file: str | None = None,
) -> Profile:
    """The EcoStruxure profile pointed at a running simulator (base URL and OAuth2 URLs).

    The ``sandbox`` environment's ``authorize_url`` becomes the simulator's
    ``sandbox-authorize`` page (as the provider's sandbox has its own), its ``token_url`` the
    simulator's token endpoint.

    Parameters
    ----------
    sandbox : EcoStruxureSandbox
        A started simulator.
    profile : Profile, optional
        Default: ``mappings/ecostruxure/profile.toml`` of the source tree.
    token_file : str, optional
        Where the rotated refresh token goes (tests pass a temporary path).
    """
    import copy
    from pathlib import Path

    from scaler_workbench.profile import Profile, read_profile

    if profile is None:
        path = Path(__file__).resolve().parents[2] / "mappings" / "ecostruxure" / "profile.toml"
        profile = read_profile(path)
    data = copy.deepcopy(profile.data)
    env = data.setdefault("environments", {}).setdefault("sandbox", {})
    env["base_url"] = sandbox.url
    env.pop("base_url_env", None)
    env["builtin_sandbox"] = False
    env["authorize_url"] = sandbox.sandbox_authorize_url
    env["token_url"] = sandbox.token_url
    data["provider"]["environment"] = "sandbox"
    auth = data.setdefault("auth", {})
    auth["authorize_url"] = sandbox.authorize_url
    auth["token_url"] = sandbox.token_url
    if token_file is not None:
        auth["token_file"] = str(token_file)
    return Profile.from_dict(data, path=profile.path)


# ---------------------------------------------------------------------------------------------
# mounted in the shared sandbox: Sandbox(flavour="ecostruxure")
# ---------------------------------------------------------------------------------------------
def _register_flavour() -> None:
    from scaler_workbench.sandbox import server as _server

    class EcoStruxureFlavour(_server.Flavour):
        """The EcoStruxure simulator behind the shared sandbox (it does its own OAuth2)."""

        name = "ecostruxure"
        api_root = API_PREFIX
        oauth_root = "/_builtin_oauth"  # unused: the flavour serves OAUTH_PREFIX itself

        def __init__(self, sandbox: Any, **options: Any) -> None:
            super().__init__(sandbox, **options)
            self.provider = EcoStruxureProvider(**options)

        def routes(self) -> Any:
            return (
                _server.Route(
                    "*", OAUTH_PREFIX + "/{rest:path}", self._handle, auth=False, absolute=True
                ),
                _server.Route("*", "/{rest:path}", self._handle, auth=False),
            )

        def _handle(self, req: Any) -> Any:
            parts = urlsplit(req.target)
            r = self.provider.handle(
                req.method, parts.path, parse_qs(parts.query), dict(req.headers), req.body
            )
            headers = dict(r.headers)
            ctype = headers.pop("Content-Type", "application/json")
            return _server.Response(
                status=r.status, body=r.body, headers=headers, content_type=ctype
            )

        def env(self) -> dict[str, str]:
            return {
                "ECOSTRUXURE_CLIENT_ID": self.provider.client_id,
                "ECOSTRUXURE_CLIENT_SECRET": self.provider.client_secret,
            }

    _server.register_flavour("ecostruxure", EcoStruxureFlavour)


with contextlib.suppress(ImportError):  # the shared sandbox server may be absent
    _register_flavour()
