"""The CSV-export flavour: a portal that hands out CSV files (one zipped), with its own ground truth.

``Sandbox(flavour="csvexport")`` serves, under ``/export`` (``sb.url``), with a static bearer
token (``SANDBOX_TOKEN``, the sandbox's own auth: 401 for a bad one)::

    GET /sites.csv                        cp1252, ';', two preamble lines, header on row 2:
                                          Standort-ID;Name;Straße;Stadt;Zeitzone
    GET /meters.csv                       UTF-8 with a BOM, ',', NO header row:
                                          meter id, site id, unit, serial
    GET /sites/{site}/readings.zip?from=YYYY-MM-DD&to=YYYY-MM-DD   (to exclusive)
                                          a zip of one CSV per meter of the site,
                                          ``readings_<meter>.csv``: UTF-8, ';', decimal comma and
                                          '.' thousands: Zähler;Beginn;Ende;Verbrauch
                                          (``M-01;2024-01-01T00:00:00+01:00;...;1.234,5``)

Daily readings in kWh (large sites: about 700 to 3 500 kWh a day, so thousands separators
appear), an empty ``Verbrauch`` for days without data (about ``null_share`` of them). Site names
and streets hold non-ASCII letters (``Müller``, ``Straße``) that cp1252 encodes in one byte.

The sandbox's faults (``every_nth_429`` with ``Retry-After``, ``every_nth_503``,
``inject_fault``) apply. ``sb.flavour.ground_truth()`` sums the generated days (never HTTP):
``meter_id``, ``month`` (the site's local ``YYYY-MM``), ``consumption`` [kWh], ``unit``.

Options (``flavour_options``): ``sites`` (2), ``meters_per_site`` (2), ``start``
("2024-01-01"), ``end`` ("2024-03-01", exclusive), ``seed`` (0), ``null_share`` (0.03), ``cut_site`` (a site whose
readings zip is served cut in half, a truncated export; ``sb.flavour.cut_site = None`` heals it).
"""

from __future__ import annotations

import io
import zipfile
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from scaler_workbench.sandbox._daily import daily_frame, local_days, monthly_ground_truth
from scaler_workbench.sandbox.server import (
    Flavour,
    HTTPProblem,
    Request,
    Response,
    Route,
    register_flavour,
)

__all__ = ["CsvExportFlavour", "german_number"]

_ZONES = ("Europe/Berlin", "Europe/Vienna")
_NAMES = ("Müller Logistik", "Bäckerei Größl", "Café Zürich")
_STREETS = ("Hauptstraße", "Königsallee", "Mühlweg")
_CITIES = ("München", "Wien", "Köln")


def german_number(value: float) -> str:
    """``1234.5`` as ``"1.234,5"`` (one decimal; thousands grouped by '.')."""
    whole, frac = f"{value:,.1f}".split(".")
    return f"{whole.replace(',', '.')},{frac}"


class CsvExportFlavour(Flavour):
    """Sites, meters and zipped daily readings as CSV exports (see the module)."""

    name: ClassVar[str] = "csvexport"
    api_root: ClassVar[str] = "/export"
    defaults: ClassVar[dict[str, Any]] = {"auth": "bearer", "paginator": "none"}

    def __init__(
        self,
        sandbox: Any,
        *,
        sites: int = 2,
        meters_per_site: int = 2,
        start: str = "2024-01-01",
        end: str = "2024-03-01",
        seed: int = 0,
        null_share: float = 0.03,
        cut_site: str | None = None,
    ) -> None:
        super().__init__(sandbox)
        #: a site whose readings zip is served cut in half (a truncated download); mutable
        self.cut_site = cut_site
        rng = np.random.default_rng(seed)
        self.sites: list[dict[str, Any]] = []
        self.meters: list[dict[str, Any]] = []
        self.series: dict[str, pd.DataFrame] = {}
        for s in range(sites):
            tz = _ZONES[s % len(_ZONES)]
            site = {
                "id": f"S{s + 1:03d}",
                "name": _NAMES[s % len(_NAMES)],
                "street": f"{_STREETS[s % len(_STREETS)]} {s + 3}",
                "city": _CITIES[s % len(_CITIES)],
                "timezone": tz,
            }
            self.sites.append(site)
            days = local_days(start, end, tz)
            for m in range(meters_per_site):
                meter_id = f"{site['id']}-M{m + 1:02d}"
                self.meters.append(
                    {"id": meter_id, "site": site["id"], "unit": "kWh", "serial": f"{m:04d}7"}
                )
                value = np.round(700 + 2800 * rng.random(len(days)), 1)
                missing = rng.random(len(days)) < null_share
                self.series[meter_id] = daily_frame(days, value, missing)

    # -- ground truth -----------------------------------------------------------------------
    def ground_truth(self) -> pd.DataFrame:
        """Monthly kWh per meter (local months; days without data count as nothing)."""
        return monthly_ground_truth(self.series, (m["id"] for m in self.meters))

    # -- serving ----------------------------------------------------------------------------
    def routes(self) -> Any:
        return (
            Route("GET", "/sites.csv", self.sites_csv),
            Route("GET", "/meters.csv", self.meters_csv),
            Route("GET", "/sites/{site_id}/readings.zip", self.readings_zip),
        )

    def sites_csv(self, req: Request) -> Response:
        lines = [
            "Portal-Export;Standorte",
            "Erstellt am;02.03.2024",
            "Standort-ID;Name;Straße;Stadt;Zeitzone",
        ]
        lines += [
            f"{s['id']};{s['name']};{s['street']};{s['city']};{s['timezone']}" for s in self.sites
        ]
        return Response(
            body=("\r\n".join(lines) + "\r\n").encode("cp1252"),
            content_type="text/csv",  # no charset: the profile names the encoding
        )

    def meters_csv(self, req: Request) -> Response:
        lines = [f"{m['id']},{m['site']},{m['unit']},{m['serial']}" for m in self.meters]
        return Response(
            body=b"\xef\xbb\xbf" + ("\n".join(lines) + "\n").encode("utf-8"),
            content_type="text/csv; charset=utf-8",
        )

    def readings_zip(self, req: Request) -> Response:
        site = req.params["site_id"]
        meters = [m for m in self.meters if m["site"] == site]
        if not meters:
            raise HTTPProblem(404, "not_found", f"no site {site!r}")
        tz = next(s["timezone"] for s in self.sites if s["id"] == site)
        try:
            lo = pd.Timestamp(req.query["from"], tz=tz)
            hi = pd.Timestamp(req.query["to"], tz=tz)
        except (KeyError, ValueError):
            raise HTTPProblem(400, "bad_request", "from and to (YYYY-MM-DD) are required") from None
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for meter in meters:
                frame = self.series[meter["id"]]
                rows = frame[(frame["start"] >= lo) & (frame["start"] < hi)]
                lines = ["Zähler;Beginn;Ende;Verbrauch"]
                lines += [
                    f"{meter['id']};{s.isoformat()};{e.isoformat()};"
                    + ("" if v is None or v != v else german_number(float(v)))
                    for s, e, v in zip(rows["start"], rows["end"], rows["value"], strict=True)
                ]
                info = zipfile.ZipInfo(
                    f"readings_{meter['id']}.csv", date_time=(2024, 3, 2, 0, 0, 0)
                )
                archive.writestr(info, "\n".join(lines) + "\n", zipfile.ZIP_DEFLATED)
        body = buffer.getvalue()
        if site == self.cut_site:
            body = body[: len(body) // 2]  # announced and sent whole, yet not a whole zip
        return Response(body=body, content_type="application/zip")


register_flavour("csvexport", CsvExportFlavour)
