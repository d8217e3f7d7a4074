"""The SOAP flavour: a metering web service with XML envelopes, faults and its own ground truth.

``Sandbox(flavour="soap")`` serves ``POST /ws/metering`` (``sb.url + "/metering"``) with a
static bearer token (``SANDBOX_TOKEN``, ``Authorization: Bearer ...``). Requests are SOAP 1.1
(``Content-Type: text/xml``) or SOAP 1.2 (``application/soap+xml``); the answer (faults too)
is in the request's version. The operation is the first element of ``Body`` (namespace
:data:`NS`, ``urn:sandbox:metering``)::

    <m:GetMeters/>
      -> <m:GetMetersResponse><m:Meter id="..."><m:Name/><m:Site/><m:City/><m:TimeZone/>
         <m:Unit>kWh</m:Unit></m:Meter>...</m:GetMetersResponse>
    <m:GetReadings><m:MeterId>...</m:MeterId><m:From>2024-01-01</m:From>
                   <m:To>2024-02-01</m:To></m:GetReadings>        (To exclusive, local dates)
      -> <m:GetReadingsResponse meter="..."><m:Reading><m:Start/><m:End/><m:Value/>
         </m:Reading>...</m:GetReadingsResponse>

Daily readings (local midnight to midnight with the meter's offset, ``Value`` in kWh, absent
for days without data, about ``null_share`` of them: no ``Value`` element). Faults, on purpose:

- a bad token -> ``Client.Authentication`` "Invalid security token" (1.2: ``env:Sender`` /
  ``m:Authentication``) in HTTP 500;
- every ``busy_every``-th request (default off) -> ``Server.Busy`` "Server too busy, try
  again later" (1.2: ``env:Receiver`` / ``m:ServerBusy``) in HTTP 500;
- an unknown meter -> ``Client.UnknownMeter`` in HTTP ``fault_status`` (default 500; 200 like
  some services); a window over ``max_days`` (default 31) -> ``Client.RangeTooLarge``; an
  unknown operation -> ``Client.UnknownOperation``.

The sandbox's own faults (``every_nth_429`` with ``Retry-After``, ``every_nth_503``) apply too.
``sb.flavour.requests`` lists ``(operation, {parameter: value})`` of every request answered.
``sb.flavour.ground_truth()`` sums the generated days (never HTTP): ``meter_id``, ``month``
(the meter's local ``YYYY-MM``), ``consumption`` [kWh], ``unit``.

Options (``flavour_options``): ``meters`` (3), ``start`` ("2024-01-01"), ``end``
("2024-03-01", exclusive), ``seed`` (0), ``null_share`` (0.03), ``busy_every``,
``fault_status``, ``max_days``.
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar
from xml.sax.saxutils import escape

import numpy as np
import pandas as pd

from scaler_workbench.sandbox._daily import daily_frame, local_days, monthly_ground_truth
from scaler_workbench.sandbox.server import Flavour, Request, Response, Route, register_flavour

__all__ = ["NS", "SoapFlavour"]

NS = "urn:sandbox:metering"
_SOAP = {
    "1.1": "http://schemas.xmlsoap.org/soap/envelope/",
    "1.2": "http://www.w3.org/2003/05/soap-envelope",
}
_TYPES = {"1.1": "text/xml; charset=utf-8", "1.2": "application/soap+xml; charset=utf-8"}
_ZONES = ("Europe/Paris", "Europe/London", "America/New_York")
_CITIES = ("Lyon", "Leeds", "Albany")


def _envelope(version: str, body: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="{_SOAP[version]}" '
        f'xmlns:m="{NS}"><s:Body>{body}</s:Body></s:Envelope>'
    ).encode()


class SoapFlavour(Flavour):
    """Meters and their daily readings behind a SOAP endpoint (see the module)."""

    name: ClassVar[str] = "soap"
    api_root: ClassVar[str] = "/ws"
    defaults: ClassVar[dict[str, Any]] = {"auth": "bearer", "paginator": "none"}

    def __init__(
        self,
        sandbox: Any,
        *,
        meters: int = 3,
        start: str = "2024-01-01",
        end: str = "2024-03-01",
        seed: int = 0,
        null_share: float = 0.03,
        busy_every: int | None = None,
        fault_status: int = 500,
        max_days: int = 31,
    ) -> None:
        super().__init__(sandbox)
        self.busy_every, self.fault_status, self.max_days = busy_every, fault_status, max_days
        self._lock = threading.Lock()
        self._n = 0
        #: ``(operation, parameters)`` of every request answered
        self.requests: list[tuple[str, dict[str, str]]] = []
        rng = np.random.default_rng(seed)
        self.meters: list[dict[str, Any]] = []
        self.series: dict[str, pd.DataFrame] = {}
        for i in range(meters):
            tz = _ZONES[i % len(_ZONES)]
            meter_id = f"PRM-{rng.integers(10**9):09d}-{i}"
            self.meters.append(
                {
                    "id": meter_id,
                    "name": f"Main meter & feed {i + 1}",  # an ampersand: escaped in XML
                    "site": f"SITE-{i + 1:02d}",
                    "city": _CITIES[i % len(_CITIES)],
                    "timezone": tz,
                }
            )
            days = local_days(start, end, tz)
            value = np.round(40 + 25 * rng.random(len(days)) + 5 * i, 3)
            missing = rng.random(len(days)) < null_share
            self.series[meter_id] = daily_frame(days, value, missing)

    # -- ground truth -----------------------------------------------------------------------
    def ground_truth(self) -> pd.DataFrame:
        """Monthly kWh per meter (local months; days without data count as nothing)."""
        return monthly_ground_truth(self.series, (m["id"] for m in self.meters))

    # -- serving ----------------------------------------------------------------------------
    def routes(self) -> Any:
        return (Route("POST", "/metering", self.handle, auth=False),)

    def _fault(self, version: str, code: str, sub: str, text: str, status: int) -> Response:
        if version == "1.1":
            body = (
                f"<s:Fault><faultcode>s:{code}.{sub}</faultcode>"
                f"<faultstring>{escape(text)}</faultstring></s:Fault>"
            )
        else:
            top = "s:Sender" if code == "Client" else "s:Receiver"
            body = (
                f"<s:Fault><s:Code><s:Value>{top}</s:Value><s:Subcode><s:Value>m:{sub}"
                f'</s:Value></s:Subcode></s:Code><s:Reason><s:Text xml:lang="en">{escape(text)}'
                "</s:Text></s:Reason></s:Fault>"
            )
        return Response(status=status, body=_envelope(version, body), content_type=_TYPES[version])

    def handle(self, req: Request) -> Response:
        ctype = req.headers.get("Content-Type", "")
        version = "1.2" if "application/soap+xml" in ctype else "1.1"
        with self._lock:
            self._n += 1
            n = self._n
        if req.headers.get("Authorization", "") != f"Bearer {self.sandbox.credentials.token}":
            return self._fault(version, "Client", "Authentication", "Invalid security token", 500)
        if self.busy_every and n % self.busy_every == 0:
            return self._fault(
                version,
                "Server",
                "ServerBusy" if version == "1.2" else "Busy",
                "Server too busy, try again later",
                500,
            )
        import defusedxml.ElementTree as safe_et

        try:
            root = safe_et.fromstring(req.body, forbid_dtd=True)
        except Exception:
            return self._fault(version, "Client", "BadEnvelope", "the envelope is not XML", 500)
        body = root.find(f"{{{_SOAP[version]}}}Body")
        op = body[0] if body is not None and len(body) else None
        if op is None or not isinstance(op.tag, str) or not op.tag.startswith(f"{{{NS}}}"):
            return self._fault(version, "Client", "UnknownOperation", "no operation in Body", 500)
        name = op.tag.split("}", 1)[1]
        params = {c.tag.split("}", 1)[-1]: (c.text or "").strip() for c in op}
        self.requests.append((name, params))
        if name == "GetMeters":
            return self._meters(version)
        if name == "GetReadings":
            return self._readings(version, params)
        return self._fault(
            version, "Client", "UnknownOperation", f"no operation {name!r}", self.fault_status
        )

    def _meters(self, version: str) -> Response:
        items = "".join(
            f'<m:Meter id="{escape(m["id"])}"><m:Name>{escape(m["name"])}</m:Name>'
            f"<m:Site>{m['site']}</m:Site><m:City>{m['city']}</m:City>"
            f"<m:TimeZone>{m['timezone']}</m:TimeZone><m:Unit>kWh</m:Unit></m:Meter>"
            for m in self.meters
        )
        return Response(
            body=_envelope(version, f"<m:GetMetersResponse>{items}</m:GetMetersResponse>"),
            content_type=_TYPES[version],
        )

    def _readings(self, version: str, p: dict[str, str]) -> Response:
        meter = p.get("MeterId", "")
        frame = self.series.get(meter)
        if frame is None:
            return self._fault(
                version,
                "Client",
                "UnknownMeter",
                f"meter {meter!r} does not exist",
                self.fault_status,
            )
        tz = next(m["timezone"] for m in self.meters if m["id"] == meter)
        try:
            lo = pd.Timestamp(p.get("From", ""), tz=tz)
            hi = pd.Timestamp(p.get("To", ""), tz=tz)
        except (ValueError, TypeError):
            return self._fault(version, "Client", "BadDate", "From/To must be dates", 500)
        if (hi - lo).days > self.max_days:
            return self._fault(
                version,
                "Client",
                "RangeTooLarge",
                f"the period may span {self.max_days} days at most",
                self.fault_status,
            )
        rows = frame[(frame["start"] >= lo) & (frame["start"] < hi)]
        items = "".join(
            f"<m:Reading><m:Start>{s.isoformat()}</m:Start><m:End>{e.isoformat()}</m:End>"
            + ("" if v is None or v != v else f"<m:Value>{float(v)!r}</m:Value>")
            + "</m:Reading>"
            for s, e, v in zip(rows["start"], rows["end"], rows["value"], strict=True)
        )
        body = f'<m:GetReadingsResponse meter="{escape(meter)}">{items}</m:GetReadingsResponse>'
        return Response(body=_envelope(version, body), content_type=_TYPES[version])


register_flavour("soap", SoapFlavour)
