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
    LocalTimeParameters  (related from the UsagePoint) {tzOffset, dstOffset, dst*Rule}

The path before ``UsagePoint`` names its owner: ``.../Subscription/5/`` in Batch and Connect
My Data feeds, ``.../RetailCustomer/9b6c7063/`` in Download My Data files, ``.../User/1/`` at
some utilities (:data:`OWNER_SEGMENTS`). Namespace prefixes do not matter (``ns0:``, ``espi:``,
default namespaces read alike).

:class:`GreenButtonConnector` (``[provider] connector = "greenbutton"``) overrides only
``records``: every entry of a page is remembered by its ``self`` href, and a resource whose
``record_path = "IntervalReading"`` yields one flat record per IntervalReading::

    {usage_point_id, customer_id, subscription_id, meter_reading_id, reading_type_id, kind,
     usage_point_title, interval_block_id, start [s UTC], duration [s], end [s UTC], value,
     uom, unit, powerOfTenMultiplier, cost, currency, quality, estimated, redelivery,
     flowDirection, accumulationBehaviour, commodity, defaultQuality, tzOffset [s],
     dstOffset [s], dstStartRule, dstEndRule, timezone, conflict, usage_point_href,
     meter_reading_href, reading_type_href}

(every record has every key; a field the feed lacks is None, so a mapping path to it never
fails on a feed without it). Every IntervalBlock of an entry's ``content`` is read (a Download
My Data entry may hold dozens). ``customer_id`` is the id after the owner segment of the
UsagePoint's href (``"5"``, ``"9b6c7063"``, ``"1"``), else the usage point's own id: the asset
of the shipped profile in every layout. ``subscription_id`` is None outside Subscription hrefs.
The LocalTimeParameters fields are the UsagePoint's (else the feed's only one), as sent;
``timezone`` is filled by :func:`prepare_greenbutton_raw`.
``quality`` is the ReadingQuality code(s) as sent (``"14,9"`` for two) and ``estimated`` is
True when one of them (or, without any, the ReadingType's ``defaultQuality``) is 8, 9 or 12
(:data:`ESTIMATED_QUALITIES`). ``redelivery`` is None until :func:`prepare_greenbutton_raw`
pairs reverse flow into it.

``value`` and ``cost`` are as sent: the real value is ``value x 10**powerOfTenMultiplier`` (the
mapping says ``consumption = { path = "value", power_of_ten = "powerOfTenMultiplier" }``) and
``cost`` is in 1/100 000 of the currency (``cost = { path = "cost", power_of_ten = -5 }``).
``unit`` is the uom code's label from :data:`scaler_workbench.units.GREEN_BUTTON_UOM` (169 is
``"therm"``, an ambiguous label: the profile must choose in ``[units.aliases]``; ESPI's therm
is 100 000 Btu, pint's ``therm``, which the shipped profile names); an unknown code gives
``"uom <code>"``, which the units stage quarantines until an alias names it. Any other ``record_path`` (``"UsagePoint"``,
``"ReadingType"``, ...) yields one record per entry of that ESPI type (its content as a dict plus
``id``, ``href``, ``up``, ``related``).

``record_path = "UsageSummary"`` (ESPI 1.0: ``"ElectricPowerUsageSummary"``) yields the
summary's content plus flat billing-period fields for ``[reconcile.X]``
(:func:`parse_usage_summary`). A Batch feed repeats its non-block entries in every date window;
such records come once per resource.

Before the mapping, :meth:`GreenButtonConnector.prepare_raw` (:func:`prepare_greenbutton_raw`,
called by ``run_pipeline``) routes readings by their ReadingType: interval deltas of delivered
energy stay consumption; reverse flow (``flowDirection`` 19) becomes ``redelivery`` of the
delivered reading of the same interval (``[extensions.greenbutton] reverse_flow = "fold"``, the
default) or a meter of its own under ``raw["exports"]`` (``reverse_flow = "meter"``: id
``<usage point>:export``, ``direction = "export"``); cumulative ReadingTypes (``accumulationBehaviour`` 1,
2, 3, 9) go to ``raw["registers"]`` for ``[mapping.readings.*]``; anything else is quarantined
with a reason, never summed. Before that it sets aside readings without a ReadingType
(``greenbutton_no_reading_type``: unit and multiplier unknown), readings under a self href sent
twice with different content (``greenbutton_duplicate_href``, the reason naming both entries:
nothing is chosen silently); LocalTimeParameters that keep another clock than the profile's
zone are an error (:class:`~scaler_workbench.exceptions.TimezoneMismatchError`, before anything
is aggregated, naming each asset); it sets ``timezone`` from the LocalTimeParameters (decoded by
:class:`LocalTime`: the first IANA zone that keeps that clock in the readings' years) when the
profile leaves the zone out.

Links are resolved across pages and resources of one connector: an IntervalBlock whose
MeterReading or ReadingType has not been seen yet waits until the resource's last page; one that
is still unresolved then is emitted with the fields it lacks set to ``None`` (prepare_raw
quarantines it), never dropped. A link is matched by its URL path. A relative href is resolved
against the ``xml:base`` in scope (feed, entry, link) and otherwise kept as written: never
against the URL the feed was fetched from. When the UsagePoint entry is absent, its id is read
from the ``.../UsagePoint/{id}/MeterReading`` href. Paging is the profile's:
``next_url_path = "atom:link[@rel='next']/@href"``.

Files: :func:`read_greenbutton` reads a Download My Data export (or a saved feed) from a path
or buffer into the same records; a ``file://`` base URL (``GREENBUTTON_BASE_URL`` or
``run_sync(..., from_file=)`` / ``scaler-workbench sync PROFILE --from-file FILE.xml``) makes
the connector read every resource from that file, so the same mapping onboards it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit
from urllib.request import url2pathname
from xml.etree.ElementTree import Element

from scaler_workbench._secrets import get_logger, redact_url
from scaler_workbench.connectors._body import element_to_dict
from scaler_workbench.connectors.paginate import PageResponse
from scaler_workbench.connectors.resources import (
    Connector,
    FetchReport,
    FetchResult,
    Page,
    ResourceSpec,
)
from scaler_workbench.exceptions import ResponseParseError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ATOM",
    "CONNECTOR",
    "ESPI",
    "LOCAL_TIME_FIELDS",
    "OWNER_SEGMENTS",
    "PREFERRED_ZONES",
    "WORLD_ZONES",
    "AtomEntry",
    "DstRule",
    "GreenButtonConnector",
    "LocalTime",
    "parse_atom_entries",
    "parse_interval_readings",
    "parse_usage_summary",
    "prepare_greenbutton_raw",
    "read_greenbutton",
]

log = get_logger(__name__)

ATOM = "http://www.w3.org/2005/Atom"
ESPI = "http://naesb.org/espi"
_A = f"{{{ATOM}}}"
_E = f"{{{ESPI}}}"
_XML_BASE = "{http://www.w3.org/XML/1998/namespace}base"
INTERVAL_READING = "IntervalReading"
#: ReadingType fields copied onto every IntervalReading record (when the ReadingType has them)
READING_TYPE_FIELDS = (
    "flowDirection",
    "accumulationBehaviour",
    "commodity",
    "currency",
    "defaultQuality",
)
#: ESPI QualityOfReading codes that are estimates: 8 estimated using reference day, 9 estimated
#: using linear interpolation, 12 projected (forecast). 0 valid, 7 manually edited, 10
#: questionable, 11 derived, 13 mixed, 14 raw, 15 normalized for weather, 16 other, 17
#: validated, 18 verified, 19 revenue-quality are not.
ESTIMATED_QUALITIES = frozenset({8, 9, 12})
#: ESPI AccumulationKind codes read as interval quantities: 0 none, 4 deltaData.
DELTA_ACCUMULATION = frozenset({0, 4})
#: ESPI AccumulationKind codes of cumulative registers (differenced into consumption):
#: 1 bulkQuantity (the dial reading), 2 continuousCumulative, 3 cumulative, 9 summation.
REGISTER_ACCUMULATION = frozenset({1, 2, 3, 9})
#: ESPI FlowDirectionKind: 1 forward (delivered to the customer), 19 reverse (received from the
#: customer, i.e. exported to the grid); 0 none is read as forward.
FORWARD_FLOW = frozenset({0, 1})
REVERSE_FLOW = 19
#: ESPI usage summary entry types (``ElectricPowerUsageSummary`` is the ESPI 1.0 name).
USAGE_SUMMARY_KINDS = ("UsageSummary", "ElectricPowerUsageSummary")


def _join(base: str, ref: str | None) -> str:
    """``ref`` resolved against ``base`` (either may be empty)."""
    ref = (ref or "").strip()
    if not ref:
        return base
    return urljoin(base, ref) if base else ref


def _path(href: str | None, base: str = "") -> str:
    """A link compared by its URL path, no trailing slash.

    A relative href is joined to ``base`` (the ``xml:base`` in scope) when there is one, and
    kept as written otherwise: never joined to the URL the feed was fetched from.
    """
    if not href:
        return ""
    return urlsplit(_join(base, href)).path.rstrip("/")


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
    #: every ESPI element of the ``content`` (``content`` is the first): a Download My Data
    #: entry may hold many IntervalBlocks
    resources: list[Element] = field(default_factory=list)
    #: position of the entry in its document (0-based), to name it in findings
    position: int = 0

    def describe(self) -> str:
        """``entry urn:uuid:... 'title'``: how findings name an entry (by its position in its
        document or page only when it has neither id nor title)."""
        bits = [b for b in (self.atom_id, repr(self.title) if self.title else "") if b]
        return "entry " + (" ".join(bits) if bits else f"at position {self.position}")

    @property
    def id(self) -> str:
        return _last(self.href)


def parse_atom_entries(root: Element, *, base: str = "", url: str = "") -> list[AtomEntry]:
    """Entries of an Atom feed (or a single entry document) with their ESPI content.

    Parameters
    ----------
    root : xml.etree.ElementTree.Element
        The parsed document (namespace prefixes do not matter: ``ns0:``, ``espi:`` and default
        namespaces read alike).
    base : str, optional
        A base URI for relative hrefs when the document declares no ``xml:base``. The URL
        the feed was fetched from is *not* a base: relative hrefs are kept as written.
    url : str, optional
        Where the document came from, for error messages only.

    Returns
    -------
    list of AtomEntry
        In document order; ``resources`` holds every element of each ``content``.

    Raises
    ------
    ResponseParseError
        The document is not Atom (neither ``feed`` nor ``entry`` in the Atom namespace).
    """
    if not isinstance(root, Element) or root.tag not in (f"{_A}feed", f"{_A}entry"):
        tag = getattr(root, "tag", type(root).__name__)
        raise ResponseParseError(
            f"Green Button: expected an Atom feed or entry, got {tag!r}",
            url=redact_url(url or base),
            hint="Check the resource path and format = 'xml'; ESPI resources are Atom feeds.",
        )
    feed_base = _join(base, root.get(_XML_BASE)) if root.tag == f"{_A}feed" else base
    out: list[AtomEntry] = []
    for position, entry in enumerate(
        [root] if root.tag == f"{_A}entry" else root.iter(f"{_A}entry")
    ):
        entry_base = _join(feed_base, entry.get(_XML_BASE))
        href = up = ""
        related: list[str] = []
        for link in entry.findall(f"{_A}link"):
            rel = link.get("rel", "")
            target = _path(link.get("href"), _join(entry_base, link.get(_XML_BASE)))
            if rel == "self":
                href = target
            elif rel == "up":
                up = target
            elif rel == "related":
                related.append(target)
        content = entry.find(f"{_A}content")
        resources = [c for c in content if isinstance(c.tag, str)] if content is not None else []
        resource = resources[0] if resources else None
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
                resources=resources,
                position=position,
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


#: href segments that own UsagePoints (``.../{segment}/{id}/UsagePoint/{id}``): Batch and
#: Connect My Data feeds use ``Subscription``, Download My Data files ``RetailCustomer`` (some
#: utilities ``User`` or ``Customer``). The id after the one nearest the UsagePoint is a
#: record's ``customer_id``.
OWNER_SEGMENTS = ("Subscription", "RetailCustomer", "User", "Customer")
#: LocalTimeParameters fields copied onto every IntervalReading record (None when absent)
LOCAL_TIME_FIELDS = ("tzOffset", "dstOffset", "dstStartRule", "dstEndRule")


def _owner(path: str) -> str | None:
    """The id after the owner segment just before ``UsagePoint`` (None without one)."""
    parts = path.split("/")
    for i in range(len(parts) - 1, 1, -1):
        if parts[i] == "UsagePoint" and parts[i - 2] in OWNER_SEGMENTS:
            return parts[i - 1] or None
    return None


def _fingerprint(e: AtomEntry) -> tuple[Any, ...]:
    """What makes two copies of one href the same entry: kind, links and content."""
    from xml.etree.ElementTree import tostring

    return (
        e.kind,
        e.up,
        tuple(sorted(e.related)),
        tuple(tostring(r).strip() for r in e.resources),
    )


@dataclass
class _Registry:
    """Entries seen so far, by ``self`` href, and the link indexes that join them.

    A href sent again with other content (kind, links or ESPI content) is a conflict: the
    first copy stays indexed, every copy is listed in ``conflicts`` and readings that depend
    on it are marked (:func:`_annotate_readings`), never resolved through either copy.
    """

    by_href: dict[str, AtomEntry] = field(default_factory=dict)
    reading_of_collection: dict[str, str] = field(default_factory=dict)  # .../IntervalBlock -> MR
    usage_point_of_collection: dict[str, str] = field(default_factory=dict)  # .../MeterReading
    fingerprints: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    conflicts: dict[str, list[AtomEntry]] = field(default_factory=dict)
    local_times: list[str] = field(default_factory=list)  # LocalTimeParameters hrefs

    def add(self, entries: Iterable[AtomEntry]) -> None:
        for e in entries:
            if not e.href:
                continue
            if e.kind != "IntervalBlock":  # blocks are never looked up by href
                fp = _fingerprint(e)
                old = self.fingerprints.get(e.href)
                if old is None:
                    self.fingerprints[e.href] = fp
                elif old != fp:
                    clash = self.conflicts.setdefault(e.href, [self.by_href[e.href]])
                    if all(_fingerprint(c) != fp for c in clash):
                        clash.append(e)
                    continue
            self.by_href[e.href] = e
            if e.kind == "MeterReading":
                for r in e.related:
                    self.reading_of_collection[r] = e.href
            elif e.kind == "UsagePoint":
                for r in e.related:
                    self.usage_point_of_collection[r] = e.href
            elif e.kind == "LocalTimeParameters" and e.href not in self.local_times:
                self.local_times.append(e.href)

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

    def local_time(self, usage_point_href: str | None) -> AtomEntry | None:
        """The UsagePoint's related LocalTimeParameters, else the feed's only one."""
        up = self.by_href.get(usage_point_href or "")
        if up is not None:
            for r in up.related:
                e = self.by_href.get(r)
                if e is not None and e.kind == "LocalTimeParameters":
                    return e
        if len(self.local_times) == 1:
            return self.by_href.get(self.local_times[0])
        return None

    def conflict_text(self, href: str, what: str) -> str:
        copies = self.conflicts[href]
        named = " and ".join(c.describe() for c in copies)
        return (
            f"{what} {href} is sent {len(copies)} times with different content ({named}): "
            "neither is chosen; ask the data custodian which is right"
        )


def _reading_type_fields(rt: AtomEntry | None) -> dict[str, Any]:
    from scaler_workbench.units import GREEN_BUTTON_UOM

    out: dict[str, Any] = {
        "reading_type_id": None,
        "uom": None,
        "unit": None,
        "powerOfTenMultiplier": None,
        **dict.fromkeys(READING_TYPE_FIELDS),  # every key, so a mapping path never fails
    }
    if rt is None or rt.content is None:
        return out
    c = rt.content
    uom = _number(c.findtext(f"{_E}uom"))
    p10 = _number(c.findtext(f"{_E}powerOfTenMultiplier"))
    out.update(
        {
            "reading_type_id": rt.id,
            "uom": uom,
            "unit": None if uom is None else GREEN_BUTTON_UOM.get(int(uom), f"uom {uom}"),
            # ESPI: an absent multiplier means 10**0
            "powerOfTenMultiplier": 0 if p10 is None else p10,
        }
    )
    for name in READING_TYPE_FIELDS:  # None when absent: the mapping's paths always exist
        v = (c.findtext(f"{_E}{name}") or "").strip()
        out[name] = (v if name == "currency" else _number(v)) if v else None
    return out


def parse_interval_readings(
    block: AtomEntry, registry: _Registry, *, strict: bool = True
) -> list[dict[str, Any]] | None:
    """Flat records for one IntervalBlock entry, or None when its links are not resolvable yet.

    Every IntervalBlock of the entry's ``content`` is read (a Download My Data entry may hold
    dozens). With ``strict=False`` an unresolvable block still yields its readings, with the
    ids and ReadingType fields it lacks set to None (every key is present).
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
    up_href = up.href if up is not None else None
    where = up_href or (mr.up if mr is not None else "") or block.up or block.href
    base: dict[str, Any] = {
        "usage_point_id": up_id,
        "customer_id": _owner(where) or up_id,
        "subscription_id": _after(block.href or block.up, "Subscription"),
        "meter_reading_id": mr.id if mr is not None else _after(block.up, "MeterReading"),
        "kind": kind,
        "usage_point_title": (up.title or None) if up is not None else None,
        "interval_block_id": block.id,
        **_reading_type_fields(rt),
        **dict.fromkeys(LOCAL_TIME_FIELDS),
        "timezone": None,  # from LocalTimeParameters, by prepare_greenbutton_raw
        "conflict": None,  # a duplicate self href with other content (_annotate_readings)
        "usage_point_href": up_href,
        "meter_reading_href": mr.href if mr is not None else None,
        "reading_type_href": rt.href if rt is not None else None,
    }
    out: list[dict[str, Any]] = []
    default_quality = base.get("defaultQuality")
    default_estimated = default_quality in ESTIMATED_QUALITIES
    for resource in block.resources:
        if resource.tag != f"{_E}IntervalBlock":
            continue
        for ir in resource.iter(f"{_E}IntervalReading"):
            start = _number(ir.findtext(f"{_E}timePeriod/{_E}start"))
            duration = _number(ir.findtext(f"{_E}timePeriod/{_E}duration"))
            rec = dict(base)
            rec["start"] = start
            rec["duration"] = duration
            rec["end"] = start + duration if start is not None and duration is not None else None
            rec["value"] = _number(ir.findtext(f"{_E}value"))
            rec["cost"] = _number(ir.findtext(f"{_E}cost"))  # None when the reading has none
            codes = [
                q.text.strip()
                for q in ir.iterfind(f"{_E}ReadingQuality/{_E}quality")
                if q.text and q.text.strip()
            ]
            if codes:  # one or several ReadingQuality; the ReadingType's defaultQuality otherwise
                rec["quality"] = ",".join(codes)
                rec["estimated"] = any(_number(c) in ESTIMATED_QUALITIES for c in codes)
            else:
                rec["quality"] = None
                rec["estimated"] = default_estimated
            rec["redelivery"] = None  # reverse flow paired in by prepare_greenbutton_raw
            out.append(rec)
    return out


def _annotate_readings(records: list[dict[str, Any]], registry: _Registry) -> None:
    """Once a whole resource is read: LocalTimeParameters and href conflicts onto readings.

    Both can arrive after the blocks that need them (a later page), so they are applied at
    the end, in place.
    """
    local: dict[str | None, dict[str, Any]] = {}
    conflicts = registry.conflicts
    for rec in records:
        up_href = rec.get("usage_point_href")
        if up_href not in local:
            ltp = registry.local_time(up_href)
            local[up_href] = _local_time_fields(ltp)
        rec.update(local[up_href])
        if not conflicts:
            continue
        for key, what in (
            ("usage_point_href", "UsagePoint"),
            ("meter_reading_href", "MeterReading"),
            ("reading_type_href", "ReadingType"),
        ):
            href = rec.get(key)
            if href and href in conflicts:
                rec["conflict"] = registry.conflict_text(href, what)
                if key != "usage_point_href":  # the unit and multiplier are not known
                    rec.update(_reading_type_fields(None))
                break


def _local_time_fields(ltp: AtomEntry | None) -> dict[str, Any]:
    out: dict[str, Any] = dict.fromkeys(LOCAL_TIME_FIELDS)
    if ltp is None or ltp.content is None:
        return out
    for name in LOCAL_TIME_FIELDS:
        v = (ltp.content.findtext(f"{_E}{name}") or "").strip()
        if v:
            out[name] = v if name.endswith("Rule") else _number(v)
    return out


@dataclass
class _FeedReader:
    """Turns Atom pages of one resource into records (the API and the file route share it)."""

    registry: _Registry
    want: str
    pending: list[AtomEntry] = field(default_factory=list)
    seen: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    def page(self, entries: list[AtomEntry]) -> list[dict[str, Any]]:
        """Records of one page; blocks whose links are not known yet wait for :meth:`finish`."""
        self.registry.add(entries)
        if self.want != INTERVAL_READING:
            # a Batch feed repeats its non-block entries in every date window: once each
            # (a copy with other content is kept too: nothing is dropped silently)
            picked = []
            for e in entries:
                if e.kind != self.want:
                    continue
                if e.href:
                    fp = _fingerprint(e)
                    if self.seen.get(e.href) == fp:
                        continue
                    self.seen.setdefault(e.href, fp)
                picked.append(e)
            if self.want in USAGE_SUMMARY_KINDS:
                return [parse_usage_summary(e) for e in picked]
            return [_entry_record(e) for e in picked]
        out: list[dict[str, Any]] = []
        for e in entries:
            if e.kind != "IntervalBlock":
                continue
            recs = parse_interval_readings(e, self.registry)
            if recs is None:
                self.pending.append(e)
            else:
                out.extend(recs)
        return out

    def finish(self, name: str) -> list[dict[str, Any]]:
        """Readings of the blocks that waited (resolved now, or kept with None ids)."""
        late: list[dict[str, Any]] = []
        unresolved = 0
        for block in self.pending:
            recs = parse_interval_readings(block, self.registry)
            if recs is None:
                unresolved += 1
                recs = parse_interval_readings(block, self.registry, strict=False) or []
            late.extend(recs)
        self.pending = []
        if unresolved:
            log.warning(
                "%s: %d IntervalBlock(s) whose MeterReading/ReadingType never appeared; their "
                "readings are kept without them (prepare_raw quarantines them)",
                name,
                unresolved,
            )
        return late


def _read_root(source: Any, *, url: str) -> Element:
    """The parsed document of a path or an open (text or binary) buffer."""
    from xml.etree.ElementTree import ParseError, parse

    try:
        return parse(source).getroot()
    except ParseError as exc:
        raise ResponseParseError(
            f"Green Button: {url} is not well-formed XML: {exc}",
            url=url,
            hint="Open the file in a text editor: a Download My Data export is one Atom feed.",
        ) from exc
    except OSError as exc:
        raise ResponseParseError(
            f"Green Button: cannot read {url}: {exc.strerror or exc}",
            url=url,
            hint="Check the file's path and permissions.",
        ) from exc


def _in_window(
    records: list[dict[str, Any]], lo: datetime | None, hi: datetime | None
) -> list[dict[str, Any]]:
    """IntervalReadings whose start lies in ``[lo, hi)`` (a bound of None is open)."""
    if lo is None and hi is None:
        return records
    a = lo.timestamp() if lo is not None else float("-inf")
    b = hi.timestamp() if hi is not None else float("inf")
    return [r for r in records if isinstance(r.get("start"), int | float) and a <= r["start"] < b]


def _bound(value: Any, zone: str, key: str) -> datetime | None:
    from zoneinfo import ZoneInfo

    from scaler_workbench.connectors.dates import parse_when

    if value in (None, ""):
        return None
    return parse_when(value, ZoneInfo(zone), key=key)


def read_greenbutton(
    path_or_buffer: str | os.PathLike[str] | IO[Any],
    *,
    record_path: str = INTERVAL_READING,
    since: str | date | datetime | None = None,
    until: str | date | datetime | None = None,
    timezone: str = "UTC",
) -> list[dict[str, Any]]:
    """Records of a Green Button file (Download My Data export or a saved Batch feed).

    The same records as the API route (:class:`GreenButtonConnector` with the same
    ``record_path``), so the same mapping reads both.

    Parameters
    ----------
    path_or_buffer : path-like or file-like
        The ESPI Atom XML: a path, or an open text or binary buffer.
    record_path : str
        ``"IntervalReading"`` (one flat record per reading), ``"UsageSummary"`` or any ESPI
        type (one record per entry), as ``[resources.X] record_path``.
    since, until : date, datetime or ISO str, optional
        Keep readings whose start lies in ``[since, until)`` (naive values in ``timezone``).
        Other record paths are not filtered.
    timezone : str
        IANA zone of naive ``since``/``until``.

    Returns
    -------
    list of dict
        As documented in the module docstring (``start``/``end`` [s UTC], ``duration`` [s]).

    Raises
    ------
    ResponseParseError
        The file cannot be read, is not XML, or is not an Atom feed.
    """
    url = (
        Path(os.fspath(path_or_buffer)).resolve().as_uri()
        if isinstance(path_or_buffer, str | os.PathLike)
        else "<buffer>"
    )
    root = _read_root(path_or_buffer, url=url)
    entries = parse_atom_entries(root, url=url)
    reader = _FeedReader(_Registry(), record_path.strip() or INTERVAL_READING)
    records = reader.page(entries) + reader.finish(url)
    if reader.want == INTERVAL_READING:
        _annotate_readings(records, reader.registry)
        lo, hi = _bound(since, timezone, "since"), _bound(until, timezone, "until")
        records = _in_window(records, lo, hi)
    return records


class GreenButtonConnector(Connector):
    """The fetch engine reading ESPI Atom feeds (``[provider] connector = "greenbutton"``).

    A ``file://`` base URL (the environment's, or ``run_sync(..., from_file=)``) names a
    Green Button file: every resource is read from it (:func:`read_greenbutton`), no request
    is sent.
    """

    reads_files = True

    @classmethod
    def prepare_raw(
        cls, profile: Any, raw: Mapping[str, Any]
    ) -> tuple[Mapping[str, Any], pd.DataFrame | None]:
        """ReadingType rules before the mapping: see :func:`prepare_greenbutton_raw`."""
        return prepare_greenbutton_raw(profile, raw)

    def __init__(self, profile: Any, **kw: Any) -> None:
        super().__init__(profile, **kw)
        self.registry = _Registry()
        self._readers: dict[str, _FeedReader] = {}
        self._file_entries: list[AtomEntry] | None = None

    def source_file(self) -> Path | None:
        """The file a ``file://`` base URL names, else None."""
        parts = urlsplit(self.client.base_url)
        if parts.scheme != "file":
            return None
        return Path(url2pathname(parts.path))

    def records(self, spec: ResourceSpec, response: PageResponse) -> list[dict[str, Any]]:
        body = response.body
        if body is None:
            return []
        entries = parse_atom_entries(body, url=response.url)
        reader = self._readers.get(spec.name)
        if reader is None:
            reader = self._readers[spec.name] = _FeedReader(
                self.registry, spec.record_path.strip() or INTERVAL_READING
            )
        return reader.page(entries)

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
        """As :meth:`Connector.fetch_resource`, then blocks whose links came later are added
        and LocalTimeParameters / href conflicts applied; a ``file://`` base URL reads the
        file instead."""
        spec = self.resource(resource)
        source = self.source_file()
        if source is not None:
            return self._fetch_file(spec, source, since, until)
        reader = self._readers[spec.name] = _FeedReader(
            self.registry, spec.record_path.strip() or INTERVAL_READING
        )
        result = super().fetch_resource(
            spec,
            parent_records=parent_records,
            since=since,
            until=until,
            watermarks=watermarks,
            progress=progress,
            on_page=on_page,
        )
        late = reader.finish(spec.name)
        for rec in late:
            for k, v in spec.add_fields.items():
                rec.setdefault(k, v)
        result.records.extend(late)
        if reader.want == INTERVAL_READING:
            _annotate_readings(result.records, self.registry)
        result.report.records = len(result.records)
        return result

    def _fetch_file(self, spec: ResourceSpec, source: Path, since: Any, until: Any) -> FetchResult:
        started = time.perf_counter()
        url = source.resolve().as_uri()
        if self._file_entries is None:
            self._file_entries = parse_atom_entries(_read_root(source, url=url), url=url)
        reader = _FeedReader(self.registry, spec.record_path.strip() or INTERVAL_READING)
        records = reader.page(self._file_entries) + reader.finish(spec.name)
        if reader.want == INTERVAL_READING:
            _annotate_readings(records, self.registry)
            zone = spec.date_range.timezone if spec.date_range else self.profile.timezone
            records = _in_window(
                records, _bound(since, zone, "since"), _bound(until, zone, "until")
            )
        for rec in records:
            for k, v in spec.add_fields.items():
                rec.setdefault(k, v)
        report = FetchReport(resource=spec.name, pages=1, records=len(records))
        report.elapsed_s = time.perf_counter() - started
        log.info("%s: %d records read from %s", spec.name, len(records), source.name)
        return FetchResult(records, report)


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


# ---------------------------------------------------------------------------------------------
# provider rules before the mapping (run_pipeline calls GreenButtonConnector.prepare_raw)
# ---------------------------------------------------------------------------------------------
_EXTENSION_KEYS = ("registers", "reverse_flow", "exports")
#: ``[extensions.greenbutton] reverse_flow``: ``fold`` (default) pairs reverse flow into the
#: delivered reading's ``redelivery``; ``meter`` keeps it as a meter of its own.
REVERSE_FLOW_MODES = ("fold", "meter")
#: Suffix of the export meter's id in ``reverse_flow = "meter"``: ``<usage point>:export``.
EXPORT_SUFFIX = ":export"


def _code(value: Any) -> int:
    """An ESPI enumeration code as int: -1 when absent, -2 when not a whole number."""
    if value is None or value == "":
        return -1
    try:
        f = float(value)
    except (TypeError, ValueError):
        return -2
    return int(f) if f == int(f) else -2


def _reading_resources(profile: Any, raw: Mapping[str, Any]) -> list[str]:
    """Resources of the profile whose records are IntervalReadings (``record_path``
    ``"IntervalReading"`` or none) and that were fetched."""
    out = []
    for name, res in profile.resources.items():
        path = str(res.get("record_path", "") or "").strip()
        if name in raw and path in ("", INTERVAL_READING):
            out.append(name)
    return out


def _record_key(rec: Mapping[str, Any]) -> str:
    """``usage_point|ISO start|meter_reading``: the quarantine key (meter and time first)."""
    start = rec.get("start")
    when = _iso_utc(start) if isinstance(start, int | float) else ""
    return f"{rec.get('usage_point_id')}|{when}|{rec.get('meter_reading_id')}"


def prepare_greenbutton_raw(
    profile: Any, raw: Mapping[str, Any]
) -> tuple[dict[str, list[dict[str, Any]]], pd.DataFrame | None]:
    """Route IntervalReading records by their ReadingType before the mapping runs.

    For every resource whose ``record_path`` is ``"IntervalReading"``:

    * ``accumulationBehaviour`` 0/4 (or absent) and ``flowDirection`` 0/1 (or absent): interval
      consumption, kept where they are;
    * ``accumulationBehaviour`` 1 bulkQuantity, 2 continuousCumulative, 3 cumulative or 9
      summation (a register) and forward flow: moved to ``raw[registers]`` (``[extensions.
      greenbutton] registers``, default ``"registers"``) for a ``[mapping.readings.<source>]``
      with ``to_consumption``, which differences them; a usage point that also has interval
      deltas keeps its deltas and its register readings are set aside (warning
      ``greenbutton_register_redundant``: the same energy would be counted twice);
    * ``flowDirection`` 19 (reverse: energy received from the customer, i.e. exported to the
      grid) on interval deltas: never consumption; its value becomes ``redelivery`` of the
      forward reading of the same usage point, start and duration, in that reading's
      ``powerOfTenMultiplier`` (so the mapping scales both alike). One without a forward
      reading of the same interval and unit is quarantined (``greenbutton_reverse_unpaired``).
      With ``[extensions.greenbutton] reverse_flow = "meter"`` reverse deltas are not paired:
      they move to ``raw[exports]`` (``exports``, default ``"exports"``) as a meter of their
      own, every routed record carrying ``meter_id`` (the usage point, ``<usage point>:export``
      for reverse flow) and ``direction`` (``import`` / ``export``) for the mapping;
    * any other ``accumulationBehaviour`` (6 indicating, 12 instantaneous, ...) or
      ``flowDirection`` (4 net, 20 total, ...), and registers of reverse flow: quarantined
      (``greenbutton_accumulation`` / ``greenbutton_flow_direction``), never summed.

    Parameters
    ----------
    profile : Profile
        Its ``[resources]`` (which ones hold IntervalReadings) and ``[extensions.greenbutton]``.
    raw : dict
        Records (or ``FetchResult``) per resource, as :class:`GreenButtonConnector` returns them.

    Returns
    -------
    raw : dict of str to list of dict
        The records for the mapping (input records are not modified; a paired forward record
        is a copy with ``redelivery`` set).
    report : pandas.DataFrame or None
        Quarantine rows (``schema.QUARANTINE``, stage ``transform``, table ``usage`` or
        ``readings``), each with its record; None when nothing was set aside.

    Raises
    ------
    ProfileError
        ``[extensions.greenbutton]`` has an unknown key, a ``registers`` or ``exports`` that is
        not a name, or a ``reverse_flow`` other than ``"fold"`` / ``"meter"``.
    TimezoneMismatchError
        The feed's LocalTimeParameters keep another clock than the zone the profile names
        (a constant ``[mapping.assets.fields] timezone``, else ``[provider] timezone``) in the
        years of the readings: each asset (``customer_id``), its usage points and both clocks
        are named.
    """
    import pandas as pd

    from scaler_workbench.exceptions import ProfileError
    from scaler_workbench.schema import quarantine_records

    opts = dict(profile.section("extensions").get("greenbutton", {}) or {})
    unknown = sorted(k for k in opts if k not in _EXTENSION_KEYS)
    if unknown:
        raise ProfileError(
            f"extensions.greenbutton has unknown key(s) {unknown}",
            key=f"extensions.greenbutton.{unknown[0]}",
            hint=f"Known keys: {', '.join(_EXTENSION_KEYS)}.",
        )
    reg_key = opts.get("registers", "registers")
    if not isinstance(reg_key, str) or not reg_key.strip():
        raise ProfileError(
            "extensions.greenbutton.registers must be a name",
            key="extensions.greenbutton.registers",
            hint='The raw key [mapping.readings.<source>] reads, e.g. registers = "registers".',
        )
    mode, exp_key = _reverse_flow_options(opts)
    out: dict[str, list[dict[str, Any]]] = {
        k: list(getattr(v, "records", v)) for k, v in raw.items()
    }
    set_aside: list[tuple[dict[str, Any], str, str, str, str]] = []  # rec, table, rule, sev, why
    registers: list[dict[str, Any]] = []
    exports: list[dict[str, Any]] = []
    zone = _profile_zone(profile)
    for name in _reading_resources(profile, out):
        screened = _screen_readings(name, out[name], zone, set_aside)
        kept, regs, rev = _route_readings(name, screened, set_aside, fold=mode == "fold")
        out[name] = _with_direction(kept, "import") if mode == "meter" else kept
        registers.extend(regs)
        exports.extend(rev)
    if mode == "meter":
        registers = _with_direction(registers, "import")
        exports = _with_direction(exports, "export")
        if exports or exp_key not in out:
            out[exp_key] = [*out.get(exp_key, []), *exports]
    if registers or reg_key not in out:
        out[reg_key] = [*out.get(reg_key, []), *registers]
    if not set_aside:
        return out, None
    frames = []
    groups: dict[tuple[str, str, str], list[int]] = {}
    for i, (_, table, rule, severity, _why) in enumerate(set_aside):
        groups.setdefault((table, rule, severity), []).append(i)
    for (table, rule, severity), idx in groups.items():
        recs = [set_aside[i][0] for i in idx]
        frames.append(
            quarantine_records(
                recs,
                table=table,
                stage="transform",
                rule=rule,
                severity=severity,
                reasons=[set_aside[i][4] for i in idx],
                keys=[_record_key(r) for r in recs],
                source_ids=[r.get("interval_block_id") for r in recs],
            )
        )
    log.info("Green Button: %d reading(s) set aside by ReadingType rules", len(set_aside))
    return out, pd.concat(frames, ignore_index=True)


def _reverse_flow_options(opts: Mapping[str, Any]) -> tuple[str, str]:
    """``(reverse_flow mode, raw key of the export readings)`` from ``[extensions.greenbutton]``."""
    from scaler_workbench._profile_schema import did_you_mean
    from scaler_workbench.exceptions import ProfileError

    mode = opts.get("reverse_flow", "fold")
    if mode not in REVERSE_FLOW_MODES:
        raise ProfileError(
            f"extensions.greenbutton.reverse_flow = {mode!r} is not one of "
            f"{', '.join(map(repr, REVERSE_FLOW_MODES))}{did_you_mean(str(mode), REVERSE_FLOW_MODES)}",
            key="extensions.greenbutton.reverse_flow",
            hint='"fold" (default): reverse flow becomes redelivery of the delivered meter; '
            '"meter": a meter of its own (<usage point>:export, direction export) under '
            "raw[exports] for a [mapping.usage.<source>] with role = 'redelivery'.",
        )
    key = opts.get("exports", "exports")
    if not isinstance(key, str) or not key.strip():
        raise ProfileError(
            "extensions.greenbutton.exports must be a name",
            key="extensions.greenbutton.exports",
            hint='The raw key the export meter\'s source reads, e.g. exports = "exports".',
        )
    return str(mode), key


def _with_direction(records: list[dict[str, Any]], direction: str) -> list[dict[str, Any]]:
    """Copies of ``records`` with ``meter_id`` (the usage point; ``<usage point>:export`` for
    exported energy) and ``direction`` (``import`` / ``export``), for ``reverse_flow = "meter"``."""
    suffix = EXPORT_SUFFIX if direction == "export" else ""
    return [
        {**r, "meter_id": f"{r.get('usage_point_id')}{suffix}", "direction": direction}
        for r in records
    ]


def _profile_zone(profile: Any) -> str | None:
    """The zone the profile names for the sites: a constant ``[mapping.assets.fields]
    timezone``, else ``[provider] timezone`` when written; None when it leaves it out."""
    fields = (profile.section("mapping").get("assets", {}) or {}).get("fields", {}) or {}
    tz = fields.get("timezone")
    if isinstance(tz, Mapping) and isinstance(tz.get("const"), str):
        return str(tz["const"])
    if "timezone" in (profile.section("provider") or {}):
        return str(profile.timezone)
    return None


def _screen_readings(
    resource: str,
    records: list[dict[str, Any]],
    zone: str | None,
    set_aside: list[tuple[dict[str, Any], str, str, str, str]],
) -> list[dict[str, Any]]:
    """Readings that can be routed, with their ``timezone``; the rest to ``set_aside``.

    Set aside: readings under a self href sent twice with other content
    (``greenbutton_duplicate_href``) and readings without a ReadingType
    (``greenbutton_no_reading_type``). LocalTimeParameters that keep another clock than the
    profile's zone (compared by offsets over the readings' years) raise
    :class:`~scaler_workbench.exceptions.TimezoneMismatchError` naming each asset.
    """
    kept: list[dict[str, Any]] = []
    for rec in records:
        if rec.get("conflict"):
            set_aside.append(
                (
                    rec,
                    "usage",
                    "greenbutton_duplicate_href",
                    "error",
                    f"{resource}: {rec['conflict']}",
                )
            )
        elif rec.get("unit") is None and rec.get("powerOfTenMultiplier") is None:
            mr = rec.get("meter_reading_href")
            why = (
                f"its MeterReading {mr} links no ReadingType in the feed"
                if mr
                else "no MeterReading in the feed links its IntervalBlock"
            )
            set_aside.append(
                (
                    rec,
                    "usage",
                    "greenbutton_no_reading_type",
                    "error",
                    f"{resource}: no ReadingType: unit and multiplier unknown (usage point "
                    f"{rec.get('usage_point_id')}, IntervalBlock {rec.get('interval_block_id')}: "
                    f"{why}); ask the data custodian for the feed with its ReadingType",
                )
            )
        else:
            kept.append(rec)
    # LocalTimeParameters: one check per distinct clock over the years of its readings
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, rec in enumerate(kept):
        key = tuple(rec.get(f) for f in LOCAL_TIME_FIELDS)
        if key[0] is not None:
            groups.setdefault(key, []).append(i)
        elif zone is not None and "timezone" in rec and rec["timezone"] is None:
            kept[i] = {**rec, "timezone": zone}  # no LocalTimeParameters: the profile's zone
    if not groups:
        return kept
    mismatches: list[tuple[LocalTime, str | None, list[int], list[dict[str, Any]]]] = []
    for key, idx in groups.items():
        clock = LocalTime.from_record(dict(zip(LOCAL_TIME_FIELDS, key, strict=True)))
        if clock is None:
            continue
        starts = [kept[i].get("start") for i in idx]
        years = {datetime.fromtimestamp(t, UTC).year for t in starts if isinstance(t, int | float)}
        if not years:
            continue
        if zone is not None and clock.agrees_with(zone, years):
            found: str | None = zone
        else:
            found = clock.zone(years)
            if zone is not None:
                mismatches.append((clock, found, sorted(years), [kept[i] for i in idx]))
                continue
            if found is None:
                log.warning(
                    "%s: no IANA zone keeps the LocalTimeParameters %s; the sites take the "
                    "profile's default zone",
                    resource,
                    clock.posix(),
                )
                continue
        for i in idx:
            if kept[i].get("timezone") != found:
                kept[i] = {**kept[i], "timezone": found}
    if mismatches and zone is not None:
        _raise_zone_mismatch(resource, zone, mismatches)
    return kept


def _raise_zone_mismatch(
    resource: str,
    zone: str,
    mismatches: list[tuple[LocalTime, str | None, list[int], list[dict[str, Any]]]],
) -> None:
    """The feed's LocalTimeParameters keep another clock than the profile's zone: an error
    naming each asset (``customer_id``), its usage points, both clocks and the fix."""
    from scaler_workbench.exceptions import TimezoneMismatchError

    parts: list[str] = []
    assets: set[str] = set()
    firsts: list[tuple[str, str]] = []
    for clock, found, years, recs in mismatches:
        by_asset: dict[str, set[str]] = {}
        for r in recs:
            by_asset.setdefault(str(r.get("customer_id")), set()).add(str(r.get("usage_point_id")))
        said = found or f"no IANA zone (POSIX {clock.posix()})"
        for asset, points in sorted(by_asset.items()):
            assets.add(asset)
            firsts.append((asset, found or clock.posix()))
            parts.append(
                f"asset {asset!r} (usage point(s) {', '.join(sorted(points))}): the feed's "
                f"LocalTimeParameters ({clock.describe()}; POSIX {clock.posix()}) are {said}'s "
                f"clock, not {zone}'s, in {', '.join(map(str, years))}"
            )
    raise TimezoneMismatchError(
        f"{resource}: {'; '.join(parts)}: months would be cut in the wrong zone, nothing was "
        "aggregated",
        hint=(
            "Set [provider] timezone (and a constant [mapping.assets.fields] timezone) to the "
            "customer's zone, or remove them to take the feed's zone (the shipped profile maps "
            'timezone = "timezone", the zone the connector reads from LocalTimeParameters).'
        ),
        asset=firsts[0][0],
        zone=zone,
        stated=firsts[0][1],
        assets=sorted(assets),
        resource=resource,
        key="provider.timezone",
    )


def _route_readings(
    resource: str,
    records: list[dict[str, Any]],
    set_aside: list[tuple[dict[str, Any], str, str, str, str]],
    *,
    fold: bool = True,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(interval records to keep, register records, reverse-flow records) of one resource; the
    rest to set_aside. ``fold``: reverse flow is paired into the forward records' ``redelivery``
    (none returned on its own); else every reverse interval delta is returned as it is."""
    # one pass over the records to read two codes (the connector already paid the XML cost)
    acc = [_code(r.get("accumulationBehaviour")) for r in records]
    flow = [_code(r.get("flowDirection")) for r in records]
    forward = {-1, *FORWARD_FLOW}
    delta_codes = {-1, *DELTA_ACCUMULATION}
    kept: list[int] = []
    reverse: list[int] = []
    regs: list[int] = []
    for i, (a, f) in enumerate(zip(acc, flow, strict=True)):
        rec = records[i]
        rt = rec.get("reading_type_id")
        if a in delta_codes:
            if f in forward:
                kept.append(i)
            elif f == REVERSE_FLOW:
                reverse.append(i)
            else:
                set_aside.append(
                    (
                        rec,
                        "usage",
                        "greenbutton_flow_direction",
                        "error",
                        f"{resource}: ReadingType {rt} has flowDirection "
                        f"{rec.get('flowDirection')!r}, neither forward (1: delivered) nor "
                        "reverse (19: exported): not summed as consumption (ask the data "
                        "custodian what it measures)",
                    )
                )
        elif a in REGISTER_ACCUMULATION:
            if f in forward:
                regs.append(i)
            else:
                set_aside.append(
                    (
                        rec,
                        "readings",
                        "greenbutton_flow_direction",
                        "error",
                        f"{resource}: ReadingType {rt} is a register (accumulationBehaviour "
                        f"{a}) of flowDirection {rec.get('flowDirection')!r}: only registers "
                        "of delivered energy become consumption; export registers are not "
                        "differenced into redelivery",
                    )
                )
        else:
            set_aside.append(
                (
                    rec,
                    "usage",
                    "greenbutton_accumulation",
                    "error",
                    f"{resource}: ReadingType {rt} has accumulationBehaviour "
                    f"{rec.get('accumulationBehaviour')!r}: neither a quantity per interval "
                    "(4 deltaData) nor a register (1 bulkQuantity, 2, 3, 9): not summed as "
                    "consumption",
                )
            )
    kept_out: list[dict[str, Any]] = [records[i] for i in kept]
    reverse_out = [] if fold else [records[i] for i in reverse]
    if reverse and fold:
        by_key: dict[tuple[Any, Any, Any], int] = {}
        for j, i in enumerate(kept):
            r = records[i]
            by_key.setdefault((r.get("usage_point_id"), r.get("start"), r.get("duration")), j)
        paired: set[int] = set()
        for i in reverse:
            rec = records[i]
            hit = by_key.get((rec.get("usage_point_id"), rec.get("start"), rec.get("duration")))
            fwd = kept_out[hit] if hit is not None else None
            why = ""
            if fwd is None:
                why = "has no delivered (forward) reading of the same interval"
            elif hit in paired:
                why = "is a second reverse reading of the same interval"
            elif fwd.get("unit") != rec.get("unit"):
                why = f"is in {rec.get('unit')!r}, its forward reading in {fwd.get('unit')!r}"
            elif not all(
                isinstance(x, int | float) and x == int(x)
                for x in (rec.get("powerOfTenMultiplier"), fwd.get("powerOfTenMultiplier"))
            ) or not isinstance(rec.get("value"), int | float):
                why = "has no number or powerOfTenMultiplier to pair"
            if why:
                set_aside.append(
                    (
                        rec,
                        "usage",
                        "greenbutton_reverse_unpaired",
                        "error",
                        f"{resource}: reverse flow (flowDirection 19, energy exported to the "
                        f"grid) of usage point {rec.get('usage_point_id')} at "
                        f"{_iso_utc(rec.get('start'))} {why}: kept out of consumption and "
                        "redelivery",
                    )
                )
                continue
            assert fwd is not None and hit is not None
            p = int(rec["powerOfTenMultiplier"]) - int(fwd["powerOfTenMultiplier"])
            kept_out[hit] = {**fwd, "redelivery": _scaled(rec["value"], p)}
            paired.add(hit)
    delta_points = {r.get("usage_point_id") for r in kept_out}
    register_out: list[dict[str, Any]] = []
    for i in regs:
        rec = records[i]
        if rec.get("usage_point_id") in delta_points:
            set_aside.append(
                (
                    rec,
                    "readings",
                    "greenbutton_register_redundant",
                    "warning",
                    f"{resource}: register reading (ReadingType {rec.get('reading_type_id')}) "
                    f"of usage point {rec.get('usage_point_id')}, which also has interval "
                    "deltas: its consumption comes from the deltas; the register is not used "
                    "(it would count the same energy twice)",
                )
            )
        else:
            register_out.append(rec)
    return kept_out, register_out, reverse_out


def _scaled(value: int | float, power: int | float) -> float:
    """``value x 10**power``, dividing for negative powers (correctly rounded decimals)."""
    p = int(power)
    return float(value * 10**p) if p >= 0 else value / 10**-p


def _iso_utc(epoch: int | float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_usage_summary(entry: AtomEntry) -> dict[str, Any]:
    """One flat record for a ``UsageSummary`` (ESPI 1.0: ``ElectricPowerUsageSummary``) entry.

    The entry's content as a dict (as for any ESPI type) plus::

        {usage_point_id, customer_id, subscription_id, period_start, period_end (ISO 8601 UTC, end
         exclusive), consumption [unit] (overallConsumptionLastPeriod x 10**its multiplier:
         the energy of the referenced billingPeriod), consumption_value, consumption_power_of_ten,
         uom, unit, bill [currency] (billLastPeriod / 100 000), quality, estimated}

    ``currentBillingPeriodOverAllConsumption`` (a period still running) is not a total of the
    billing period and is left in the content only. A field the entry lacks is None.
    """
    from scaler_workbench.units import GREEN_BUTTON_UOM

    rec = _entry_record(entry)
    c = entry.content
    where = entry.up or entry.href
    point = _after(where, "UsagePoint")
    out: dict[str, Any] = {
        "usage_point_id": point,
        "customer_id": _owner(where) or point,
        "subscription_id": _after(where, "Subscription"),
        "period_start": None,
        "period_end": None,
        "consumption": None,
        "consumption_value": None,
        "consumption_power_of_ten": None,
        "uom": None,
        "unit": None,
        "bill": None,
        "quality": None,
        "estimated": None,
    }
    if c is not None:
        start = _number(c.findtext(f"{_E}billingPeriod/{_E}start"))
        duration = _number(c.findtext(f"{_E}billingPeriod/{_E}duration"))
        if start is not None and duration is not None:
            out["period_start"] = _iso_utc(start)
            out["period_end"] = _iso_utc(start + duration)
        m = c.find(f"{_E}overallConsumptionLastPeriod")
        if m is not None:
            value = _number(m.findtext(f"{_E}value"))
            p10 = _number(m.findtext(f"{_E}powerOfTenMultiplier"))
            p10 = 0 if p10 is None else p10
            uom = _number(m.findtext(f"{_E}uom"))
            out["consumption_value"] = value
            out["consumption_power_of_ten"] = p10
            if value is not None and p10 == int(p10):
                out["consumption"] = _scaled(value, p10)
            if uom is not None:
                out["uom"] = uom
                out["unit"] = GREEN_BUTTON_UOM.get(int(uom), f"uom {uom}")
        bill = _number(c.findtext(f"{_E}billLastPeriod"))
        if bill is not None:
            out["bill"] = bill / 100000
        quality = (c.findtext(f"{_E}qualityOfReading") or "").strip()
        if quality:
            out["quality"] = quality
            out["estimated"] = _number(quality) in ESTIMATED_QUALITIES
    rec.update(out)
    return rec


# ---------------------------------------------------------------------------------------------
# LocalTimeParameters: ESPI's description of the customer's clock
# ---------------------------------------------------------------------------------------------
#: Zones tried first, in this order, when LocalTimeParameters are matched to an IANA zone (the
#: US and Canadian zones Green Button data custodians serve); then every IANA ``Area/City``
#: zone alphabetically.
PREFERRED_ZONES = (
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Phoenix",
    "America/Los_Angeles",
    "America/Anchorage",
    "Pacific/Honolulu",
    "America/Halifax",
    "America/St_Johns",
    "America/Puerto_Rico",
    "America/Toronto",
    "America/Winnipeg",
    "America/Regina",
    "America/Edmonton",
    "America/Vancouver",
)
#: Tried after :data:`PREFERRED_ZONES`, in this order: the zone most people on each clock
#: outside North America would name (a Central European feed is ``Europe/Paris``'s clock, not
#: the alphabetically first ``Africa/Ceuta``); then every IANA ``Area/City`` zone
#: alphabetically. Only the name differs: every candidate is accepted by its offsets alone.
WORLD_ZONES = (
    "Europe/London",
    "Europe/Dublin",
    "Europe/Lisbon",
    "Europe/Paris",
    "Europe/Berlin",
    "Europe/Athens",
    "Europe/Helsinki",
    "Europe/Istanbul",
    "Europe/Moscow",
    "Asia/Dubai",
    "Asia/Kolkata",
    "Asia/Shanghai",
    "Asia/Singapore",
    "Asia/Tokyo",
    "Australia/Sydney",
    "Australia/Brisbane",
    "Australia/Adelaide",
    "Australia/Perth",
    "Pacific/Auckland",
    "America/Mexico_City",
    "America/Sao_Paulo",
    "America/Santiago",
    "Africa/Johannesburg",
)
_WEEKDAYS = ("", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_ORDINALS = ("", "", "1st", "2nd", "3rd", "4th", "5th", "last")


@dataclass(frozen=True)
class DstRule:
    """One decoded ESPI ``DstRuleType`` (``dstStartRule`` / ``dstEndRule``, 32 bits in hex).

    Bits 0-11 seconds, 12-16 hour, 17-19 day of week (1 Monday .. 7 Sunday), 20-24 day of
    month, 25-27 operator (0 on the day of month, 1 the weekday on or after it, 2-6 its
    1st-5th occurrence, 7 its last occurrence), 28-31 month. The time is the local time in
    force just before the change (standard time for the start, daylight time for the end),
    as in a POSIX TZ rule.
    """

    month: int
    operator: int
    day_of_month: int
    weekday: int
    hour: int
    seconds: int

    @classmethod
    def decode(cls, rule: str | int) -> DstRule | None:
        """The rule of a hex string (``"360E2000"``) or int; None for ``FFFFFFFF`` (no DST)."""
        v = int(rule, 16) if isinstance(rule, str) else int(rule)
        if v == 0xFFFFFFFF:
            return None
        return cls(
            month=(v >> 28) & 0xF,
            operator=(v >> 25) & 0x7,
            day_of_month=(v >> 20) & 0x1F,
            weekday=(v >> 17) & 0x7,
            hour=(v >> 12) & 0x1F,
            seconds=v & 0xFFF,
        )

    def day(self, year: int) -> date:
        """The local date of the change in ``year``."""
        import calendar

        if self.operator == 0:
            return date(year, self.month, self.day_of_month)
        want = (self.weekday - 1) % 7  # Python: Monday 0
        if self.operator == 1:
            d = date(year, self.month, self.day_of_month)
            return date.fromordinal(d.toordinal() + (want - d.weekday()) % 7)
        first = date(year, self.month, 1)
        first_hit = 1 + (want - first.weekday()) % 7
        if self.operator == 7:
            last = calendar.monthrange(year, self.month)[1]
            return date(year, self.month, first_hit + 7 * ((last - first_hit) // 7))
        return date(year, self.month, first_hit + 7 * (self.operator - 2))

    def posix(self) -> str | None:
        """The POSIX TZ form (``M3.2.0/2``), or None when POSIX cannot say it."""
        t = f"/{self.hour}" + (
            f":{self.seconds // 60:02d}:{self.seconds % 60:02d}" if self.seconds else ""
        )
        d = self.weekday % 7  # POSIX: Sunday 0
        if 2 <= self.operator <= 7:
            return f"M{self.month}.{min(self.operator - 1, 5)}.{d}{t}"
        if self.operator == 1 and (self.day_of_month - 1) % 7 == 0:
            return f"M{self.month}.{(self.day_of_month - 1) // 7 + 1}.{d}{t}"
        if self.operator == 0:
            return f"J{date(2023, self.month, self.day_of_month).timetuple().tm_yday}{t}"
        return None

    def describe(self) -> str:
        when = f"{self.hour:02d}:{self.seconds // 60:02d}"
        month = date(2000, self.month, 1).strftime("%B")
        if self.operator == 0:
            return f"{month} {self.day_of_month} {when}"
        if self.operator == 1:
            return f"the {_WEEKDAYS[self.weekday]} on or after {month} {self.day_of_month} {when}"
        return f"the {_ORDINALS[self.operator]} {_WEEKDAYS[self.weekday]} of {month} {when}"


@dataclass(frozen=True)
class LocalTime:
    """Decoded ``LocalTimeParameters``: standard offset, DST offset and rules.

    Attributes
    ----------
    tz_offset : int
        Standard time minus UTC. [s]
    dst_offset : int
        Added during daylight saving time. [s]
    start, end : DstRule or None
        When daylight saving time starts and ends (None: no DST).
    """

    tz_offset: int
    dst_offset: int
    start: DstRule | None
    end: DstRule | None

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> LocalTime | None:
        """From a record's ``tzOffset``, ``dstOffset``, ``dstStartRule``, ``dstEndRule``."""
        tz = rec.get("tzOffset")
        if not isinstance(tz, int | float):
            return None
        dst = rec.get("dstOffset")
        try:
            start = DstRule.decode(rec["dstStartRule"]) if rec.get("dstStartRule") else None
            end = DstRule.decode(rec["dstEndRule"]) if rec.get("dstEndRule") else None
        except (TypeError, ValueError):
            start = end = None
        dst_s = int(dst) if isinstance(dst, int | float) else 0
        if not dst_s or start is None or end is None:
            start = end = None
            dst_s = 0
        return cls(int(tz), dst_s, start, end)

    def transitions(self, year: int) -> tuple[float, float] | None:
        """UTC epoch seconds of the DST start and end in ``year`` (None without DST)."""
        if self.start is None or self.end is None:
            return None
        s, e = self.start, self.end
        s_local = datetime.combine(s.day(year), datetime.min.time(), UTC).timestamp()
        e_local = datetime.combine(e.day(year), datetime.min.time(), UTC).timestamp()
        start = s_local + s.hour * 3600 + s.seconds - self.tz_offset
        end = e_local + e.hour * 3600 + e.seconds - self.tz_offset - self.dst_offset
        return start, end

    def offset(self, t: float) -> int:
        """Local time minus UTC at epoch ``t``. [s]"""
        tr = self.transitions(datetime.fromtimestamp(t, UTC).year)
        if tr is None:
            return self.tz_offset
        start, end = tr
        in_dst = start <= t < end if start < end else (t >= start or t < end)
        return self.tz_offset + (self.dst_offset if in_dst else 0)

    def posix(self) -> str:
        """A POSIX TZ string (``<-08>8<-07>,M3.2.0/2,M11.1.0/2``); rules POSIX cannot say
        are written as ``?``."""

        def name(off: int) -> str:
            sign = "+" if off >= 0 else "-"
            h, m = divmod(abs(off) // 60, 60)
            return f"<{sign}{h:02d}{m:02d}>" if m else f"<{sign}{h:02d}>"

        def posix_offset(off: int) -> str:
            h, m = divmod(abs(off) // 60, 60)
            return ("-" if off > 0 else "") + (f"{h}:{m:02d}" if m else f"{h}")

        out = f"{name(self.tz_offset)}{posix_offset(self.tz_offset)}"
        if self.start is None or self.end is None:
            return out
        dst = self.tz_offset + self.dst_offset
        out += f"{name(dst)}"
        if self.dst_offset != 3600:
            out += posix_offset(dst)
        return out + f",{self.start.posix() or '?'},{self.end.posix() or '?'}"

    def describe(self) -> str:
        h, m = divmod(abs(self.tz_offset) // 60, 60)
        text = f"UTC{'+' if self.tz_offset >= 0 else '-'}{h:02d}:{m:02d}"
        if self.start is None or self.end is None:
            return text + ", no daylight saving time"
        return (
            f"{text}, daylight saving time +{self.dst_offset // 60} min from "
            f"{self.start.describe()} to {self.end.describe()}"
        )

    def agrees_with(self, zone: str, years: Iterable[int]) -> bool:
        """Does the IANA ``zone`` keep this clock in every one of ``years``?

        Checked on the 1st and 15th of each month and one second either side of each DST
        change.
        """
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            tz = ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            return False
        for year in years:
            points = [
                datetime(year, month, day, 12, tzinfo=UTC).timestamp()
                for month in range(1, 13)
                for day in (1, 15)
            ]
            tr = self.transitions(year)
            if tr is not None:
                points += [tr[0] - 1, tr[0], tr[1] - 1, tr[1]]
            for t in points:
                off = datetime.fromtimestamp(t, tz).utcoffset()
                if off is None or int(off.total_seconds()) != self.offset(t):
                    return False
        return True

    def zone(self, years: Iterable[int]) -> str | None:
        """The first IANA zone (:data:`PREFERRED_ZONES`, then :data:`WORLD_ZONES`, then the
        rest alphabetically) that agrees in ``years``."""
        import zoneinfo

        ys = sorted(set(years))
        for name in (*PREFERRED_ZONES, *WORLD_ZONES):
            if self.agrees_with(name, ys):
                return name
        for name in sorted(zoneinfo.available_timezones()):
            regional = "/" in name and not name.startswith(("Etc/", "SystemV/", "US/"))
            if regional and self.agrees_with(name, ys):
                return name
        return None


CONNECTOR = GreenButtonConnector
