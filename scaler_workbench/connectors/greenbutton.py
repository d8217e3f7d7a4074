"""Green Button (NAESB ESPI) Atom feeds: what a profile cannot express.

An ESPI feed (``http://www.w3.org/2005/Atom`` entries whose ``content`` holds an
``http://naesb.org/espi`` resource) spreads one reading over four entries joined only by link
hrefs::

    UsagePoint    self .../UsagePoint/1          related .../UsagePoint/1/MeterReading
    MeterReading  self .../MeterReading/1        up      .../UsagePoint/1/MeterReading
                                                 related .../MeterReading/1/IntervalBlock
                                                 related .../ReadingType/07
    ReadingType   self .../ReadingType/07        {uom, powerOfTenMultiplier, currency, ...}
    IntervalBlock up .../MeterReading/1/IntervalBlock
                  {IntervalReading{cost?, ReadingQuality?, timePeriod{duration, start}, value}*}

:class:`GreenButtonConnector` (``[provider] connector = "greenbutton"``) overrides only
``records``: every entry of a page is remembered by its ``self`` href, and a resource whose
``record_path = "IntervalReading"`` yields one flat record per IntervalReading::

    {usage_point_id, subscription_id, meter_reading_id, reading_type_id, kind, start [s UTC],
     duration [s], end [s UTC], value, uom, unit, powerOfTenMultiplier, cost?, currency?,
     quality?, flowDirection?, accumulationBehaviour?, commodity?}

``value`` and ``cost`` are as sent: the real value is ``value x 10**powerOfTenMultiplier`` (the
mapping says ``consumption = { path = "value", power_of_ten = "powerOfTenMultiplier" }``) and
``cost`` is in 1/100 000 of the currency (``cost = { path = "cost", power_of_ten = -5 }``).
``unit`` is the uom code's label from :data:`scaler_workbench.units.GREEN_BUTTON_UOM` (169 is
``"therm"``, an ambiguous label: the profile must choose ``therm = "US_therm"`` or the EC therm
in ``[units.aliases]``); an unknown code gives ``"uom <code>"``, which the units stage
quarantines until an alias names it. Any other ``record_path`` (``"UsagePoint"``,
``"ReadingType"``, ...) yields one record per entry of that ESPI type (its content as a dict plus
``id``, ``href``, ``up``, ``related``).

Links are resolved across pages and resources of one connector: an IntervalBlock whose
MeterReading or ReadingType has not been seen yet waits until the resource's last page; one that
is still unresolved then is emitted with the ids it lacks set to ``None`` (the mapping
quarantines it as "no meter id"), never dropped. A link is matched by its URL path; when the
UsagePoint entry is absent, its id is read from the ``.../UsagePoint/{id}/MeterReading`` href.
Paging is the profile's: ``next_url_path = "atom:link[@rel='next']/@href"``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit
from xml.etree.ElementTree import Element

from scaler_workbench._secrets import get_logger, redact_url
from scaler_workbench.connectors._body import element_to_dict
from scaler_workbench.connectors.paginate import PageResponse
from scaler_workbench.connectors.resources import Connector, FetchResult, Page, ResourceSpec
from scaler_workbench.exceptions import ResponseParseError

__all__ = [
    "ATOM",
    "CONNECTOR",
    "ESPI",
    "AtomEntry",
    "GreenButtonConnector",
    "parse_atom_entries",
    "parse_interval_readings",
]

log = get_logger(__name__)

ATOM = "http://www.w3.org/2005/Atom"
ESPI = "http://naesb.org/espi"
_A = f"{{{ATOM}}}"
_E = f"{{{ESPI}}}"
INTERVAL_READING = "IntervalReading"
#: ReadingType fields copied onto every IntervalReading record (when the ReadingType has them)
READING_TYPE_FIELDS = ("flowDirection", "accumulationBehaviour", "commodity", "currency")


def _path(href: str | None, base: str = "") -> str:
    """A link compared by its URL path (relative hrefs joined to ``base``), no trailing slash."""
    if not href:
        return ""
    return urlsplit(urljoin(base, href.strip())).path.rstrip("/")


def _last(path: str) -> str:
    return path.rsplit("/", 1)[-1] if path else ""


def _after(path: str, segment: str) -> str | None:
    """The path segment after ``segment`` (``.../UsagePoint/1/...`` -> ``"1"``)."""
    parts = path.split("/")
    for i in range(len(parts) - 1, 0, -1):
        if parts[i - 1] == segment:
            return parts[i]
    return None


@dataclass
class AtomEntry:
    """One Atom entry: its links (as URL paths) and the ESPI resource in its content."""

    href: str
    up: str
    related: list[str]
    kind: str
    content: Element | None
    atom_id: str = ""
    title: str = ""

    @property
    def id(self) -> str:
        return _last(self.href)


def parse_atom_entries(root: Element, *, base: str = "") -> list[AtomEntry]:
    """Entries of an Atom feed (or a single entry document) with their ESPI content.

    Raises
    ------
    ResponseParseError
        The document is not Atom (neither ``feed`` nor ``entry`` in the Atom namespace).
    """
    if not isinstance(root, Element) or root.tag not in (f"{_A}feed", f"{_A}entry"):
        tag = getattr(root, "tag", type(root).__name__)
        raise ResponseParseError(
            f"Green Button: expected an Atom feed or entry, got {tag!r}",
            url=redact_url(base),
            hint="Check the resource path and format = 'xml'; ESPI resources are Atom feeds.",
        )
    out: list[AtomEntry] = []
    for entry in [root] if root.tag == f"{_A}entry" else root.iter(f"{_A}entry"):
        href = up = ""
        related: list[str] = []
        for link in entry.findall(f"{_A}link"):
            rel, target = link.get("rel", ""), _path(link.get("href"), base)
            if rel == "self":
                href = target
            elif rel == "up":
                up = target
            elif rel == "related":
                related.append(target)
        content = entry.find(f"{_A}content")
        resource = next(iter(content), None) if content is not None else None
        kind = resource.tag.rsplit("}", 1)[-1] if resource is not None else ""
        out.append(
            AtomEntry(
                href=href,
                up=up,
                related=related,
                kind=kind,
                content=resource,
                atom_id=(entry.findtext(f"{_A}id") or "").strip(),
                title=(entry.findtext(f"{_A}title") or "").strip(),
            )
        )
    return out


def _number(text: str | None) -> int | float | None:
    if text is None or not text.strip():
        return None
    t = text.strip()
    try:
        return int(t)
    except ValueError:
        try:
            return float(t)
        except ValueError:
            return None


@dataclass
class _Registry:
    """Entries seen so far, by ``self`` href, and the link indexes that join them."""

    by_href: dict[str, AtomEntry] = field(default_factory=dict)
    reading_of_collection: dict[str, str] = field(default_factory=dict)  # .../IntervalBlock -> MR
    usage_point_of_collection: dict[str, str] = field(default_factory=dict)  # .../MeterReading

    def add(self, entries: Iterable[AtomEntry]) -> None:
        for e in entries:
            if not e.href:
                continue
            self.by_href[e.href] = e
            if e.kind == "MeterReading":
                for r in e.related:
                    self.reading_of_collection[r] = e.href
            elif e.kind == "UsagePoint":
                for r in e.related:
                    self.usage_point_of_collection[r] = e.href

    def meter_reading(self, block: AtomEntry) -> AtomEntry | None:
        href = self.reading_of_collection.get(block.up)
        if href is None and block.up.endswith("/IntervalBlock"):  # structural fallback
            href = block.up.rsplit("/", 1)[0]
        found = self.by_href.get(href or "")
        return found if found is not None and found.kind == "MeterReading" else None

    def reading_type(self, reading: AtomEntry) -> AtomEntry | None:
        for r in reading.related:
            e = self.by_href.get(r)
            if e is not None and e.kind == "ReadingType":
                return e
        return None

    def usage_point(self, reading: AtomEntry) -> tuple[str | None, AtomEntry | None]:
        href = self.usage_point_of_collection.get(reading.up)
        if href is None and reading.up.endswith("/MeterReading"):
            href = reading.up.rsplit("/", 1)[0]
        entry = self.by_href.get(href or "")
        if entry is not None and entry.kind == "UsagePoint":
            return entry.id, entry
        return _after(reading.up or reading.href, "UsagePoint"), None


def _reading_type_fields(rt: AtomEntry | None) -> dict[str, Any]:
    from scaler_workbench.units import GREEN_BUTTON_UOM

    if rt is None or rt.content is None:
        return {"reading_type_id": None, "uom": None, "unit": None, "powerOfTenMultiplier": None}
    c = rt.content
    uom = _number(c.findtext(f"{_E}uom"))
    p10 = _number(c.findtext(f"{_E}powerOfTenMultiplier"))
    out: dict[str, Any] = {
        "reading_type_id": rt.id,
        "uom": uom,
        "unit": None if uom is None else GREEN_BUTTON_UOM.get(int(uom), f"uom {uom}"),
        # ESPI: an absent multiplier means 10**0
        "powerOfTenMultiplier": 0 if p10 is None else p10,
    }
    for name in READING_TYPE_FIELDS:
        v = c.findtext(f"{_E}{name}")
        if v is not None and v.strip():
            out[name] = _number(v) if name != "currency" else v.strip()
    return out


def parse_interval_readings(
    block: AtomEntry, registry: _Registry, *, strict: bool = True
) -> list[dict[str, Any]] | None:
    """Flat records for one IntervalBlock entry, or None when its links are not resolvable yet.

    With ``strict=False`` an unresolvable block still yields its readings, with the ids and unit
    fields it lacks set to None.
    """
    mr = registry.meter_reading(block)
    rt = registry.reading_type(mr) if mr is not None else None
    if strict and (mr is None or rt is None):
        return None
    up_id, up = registry.usage_point(mr) if mr is not None else (None, None)
    if up_id is None:
        up_id = _after(block.up, "UsagePoint")
    kind = None
    if up is not None and up.content is not None:
        kind = (up.content.findtext(f"{_E}ServiceCategory/{_E}kind") or "").strip() or None
    base: dict[str, Any] = {
        "usage_point_id": up_id,
        "subscription_id": _after(block.href or block.up, "Subscription"),
        "meter_reading_id": mr.id if mr is not None else _after(block.up, "MeterReading"),
        "kind": kind,
        "interval_block_id": block.id,
        **_reading_type_fields(rt),
    }
    out: list[dict[str, Any]] = []
    if block.content is None:
        return out
    for ir in block.content.iter(f"{_E}IntervalReading"):
        start = _number(ir.findtext(f"{_E}timePeriod/{_E}start"))
        duration = _number(ir.findtext(f"{_E}timePeriod/{_E}duration"))
        rec = dict(base)
        rec["start"] = start
        rec["duration"] = duration
        rec["end"] = start + duration if start is not None and duration is not None else None
        rec["value"] = _number(ir.findtext(f"{_E}value"))
        cost = ir.findtext(f"{_E}cost")
        if cost is not None:
            rec["cost"] = _number(cost)
        quality = ir.findtext(f"{_E}ReadingQuality/{_E}quality")
        if quality is not None:
            rec["quality"] = quality.strip()
        out.append(rec)
    return out


class GreenButtonConnector(Connector):
    """The fetch engine reading ESPI Atom feeds (``[provider] connector = "greenbutton"``)."""

    def __init__(self, profile: Any, **kw: Any) -> None:
        super().__init__(profile, **kw)
        self.registry = _Registry()
        self._pending: dict[str, list[AtomEntry]] = {}

    def records(self, spec: ResourceSpec, response: PageResponse) -> list[dict[str, Any]]:
        body = response.body
        if body is None:
            return []
        entries = parse_atom_entries(body, base=response.url)
        self.registry.add(entries)
        want = spec.record_path.strip() or INTERVAL_READING
        if want != INTERVAL_READING:
            return [_entry_record(e) for e in entries if e.kind == want]
        out: list[dict[str, Any]] = []
        for e in entries:
            if e.kind != "IntervalBlock":
                continue
            recs = parse_interval_readings(e, self.registry)
            if recs is None:
                self._pending.setdefault(spec.name, []).append(e)
            else:
                out.extend(recs)
        return out

    def fetch_resource(
        self,
        resource: str | ResourceSpec,
        *,
        parent_records: list[dict[str, Any]] | None = None,
        since: Any = None,
        until: Any = None,
        watermarks: Mapping[str, Any] | Any = None,
        progress: bool = False,
        on_page: Callable[[Page], Any] | None = None,
    ) -> FetchResult:
        """As :meth:`Connector.fetch_resource`, then blocks whose links came later are added."""
        spec = self.resource(resource)
        self._pending.pop(spec.name, None)
        result = super().fetch_resource(
            spec,
            parent_records=parent_records,
            since=since,
            until=until,
            watermarks=watermarks,
            progress=progress,
            on_page=on_page,
        )
        late: list[dict[str, Any]] = []
        unresolved = 0
        for block in self._pending.pop(spec.name, []):
            recs = parse_interval_readings(block, self.registry)
            if recs is None:
                unresolved += 1
                recs = parse_interval_readings(block, self.registry, strict=False) or []
            late.extend(recs)
        if unresolved:
            log.warning(
                "%s: %d IntervalBlock(s) whose MeterReading/ReadingType never appeared; their "
                "readings are kept without ids (the mapping quarantines them)",
                spec.name,
                unresolved,
            )
        for rec in late:
            for k, v in spec.add_fields.items():
                rec.setdefault(k, v)
        result.records.extend(late)
        result.report.records = len(result.records)
        return result


def _entry_record(e: AtomEntry) -> dict[str, Any]:
    content = element_to_dict(e.content) if e.content is not None else {}
    rec = content if isinstance(content, dict) else {"value": content}
    rec.update(
        {
            "id": e.id,
            "href": e.href,
            "up": e.up,
            "related": list(e.related),
            "title": e.title,
            "atom_id": e.atom_id,
        }
    )
    return rec


CONNECTOR = GreenButtonConnector
