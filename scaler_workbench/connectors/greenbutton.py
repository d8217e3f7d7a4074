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
     duration [s], end [s UTC], value, uom, unit, powerOfTenMultiplier, cost, currency,
     quality?, estimated, redelivery, flowDirection, accumulationBehaviour, commodity,
     defaultQuality}

(a field the feed lacks is None, so a mapping path to it never fails on a feed without it).
``quality`` is the ReadingQuality code(s) as sent (``"14,9"`` for two) and ``estimated`` is
True when one of them (or, without any, the ReadingType's ``defaultQuality``) is 8, 9 or 12
(:data:`ESTIMATED_QUALITIES`). ``redelivery`` is None until :func:`prepare_greenbutton_raw`
pairs reverse flow into it.

``value`` and ``cost`` are as sent: the real value is ``value x 10**powerOfTenMultiplier`` (the
mapping says ``consumption = { path = "value", power_of_ten = "powerOfTenMultiplier" }``) and
``cost`` is in 1/100 000 of the currency (``cost = { path = "cost", power_of_ten = -5 }``).
``unit`` is the uom code's label from :data:`scaler_workbench.units.GREEN_BUTTON_UOM` (169 is
``"therm"``, an ambiguous label: the profile must choose ``therm = "US_therm"`` or the EC therm
in ``[units.aliases]``); an unknown code gives ``"uom <code>"``, which the units stage
quarantines until an alias names it. Any other ``record_path`` (``"UsagePoint"``,
``"ReadingType"``, ...) yields one record per entry of that ESPI type (its content as a dict plus
``id``, ``href``, ``up``, ``related``).

``record_path = "UsageSummary"`` (ESPI 1.0: ``"ElectricPowerUsageSummary"``) yields the
summary's content plus flat billing-period fields for ``[reconcile.X]``
(:func:`parse_usage_summary`). A Batch feed repeats its non-block entries in every date window;
such records come once per resource.

Before the mapping, :meth:`GreenButtonConnector.prepare_raw` (:func:`prepare_greenbutton_raw`,
called by ``run_pipeline``) routes readings by their ReadingType: interval deltas of delivered
energy stay consumption; reverse flow (``flowDirection`` 19) becomes ``redelivery`` of the
delivered reading of the same interval; cumulative ReadingTypes (``accumulationBehaviour`` 1,
2, 3, 9) go to ``raw["registers"]`` for ``[mapping.readings.*]``; anything else is quarantined
with a reason, never summed.

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
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit
from xml.etree.ElementTree import Element

from scaler_workbench._secrets import get_logger, redact_url
from scaler_workbench.connectors._body import element_to_dict
from scaler_workbench.connectors.paginate import PageResponse
from scaler_workbench.connectors.resources import Connector, FetchResult, Page, ResourceSpec
from scaler_workbench.exceptions import ResponseParseError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ATOM",
    "CONNECTOR",
    "ESPI",
    "AtomEntry",
    "GreenButtonConnector",
    "parse_atom_entries",
    "parse_interval_readings",
    "parse_usage_summary",
    "prepare_greenbutton_raw",
]

log = get_logger(__name__)

ATOM = "http://www.w3.org/2005/Atom"
ESPI = "http://naesb.org/espi"
_A = f"{{{ATOM}}}"
_E = f"{{{ESPI}}}"
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
    for name in READING_TYPE_FIELDS:  # None when absent: the mapping's paths always exist
        v = (c.findtext(f"{_E}{name}") or "").strip()
        out[name] = (v if name == "currency" else _number(v)) if v else None
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
    default_quality = base.get("defaultQuality")
    default_estimated = default_quality in ESTIMATED_QUALITIES
    for ir in block.content.iter(f"{_E}IntervalReading"):
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
            rec["estimated"] = default_estimated
        rec["redelivery"] = None  # reverse flow paired in by prepare_greenbutton_raw
        out.append(rec)
    return out


class GreenButtonConnector(Connector):
    """The fetch engine reading ESPI Atom feeds (``[provider] connector = "greenbutton"``)."""

    @classmethod
    def prepare_raw(
        cls, profile: Any, raw: Mapping[str, Any]
    ) -> tuple[Mapping[str, Any], pd.DataFrame | None]:
        """ReadingType rules before the mapping: see :func:`prepare_greenbutton_raw`."""
        return prepare_greenbutton_raw(profile, raw)

    def __init__(self, profile: Any, **kw: Any) -> None:
        super().__init__(profile, **kw)
        self.registry = _Registry()
        self._pending: dict[str, list[AtomEntry]] = {}
        self._seen: dict[str, set[str]] = {}

    def records(self, spec: ResourceSpec, response: PageResponse) -> list[dict[str, Any]]:
        body = response.body
        if body is None:
            return []
        entries = parse_atom_entries(body, base=response.url)
        self.registry.add(entries)
        want = spec.record_path.strip() or INTERVAL_READING
        if want != INTERVAL_READING:
            # a Batch feed repeats its non-block entries in every date window: once each
            seen = self._seen.setdefault(spec.name, set())
            picked = []
            for e in entries:
                if e.kind != want or (e.href and e.href in seen):
                    continue
                seen.add(e.href)
                picked.append(e)
            if want in USAGE_SUMMARY_KINDS:
                return [parse_usage_summary(e) for e in picked]
            return [_entry_record(e) for e in picked]
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
        self._seen.pop(spec.name, None)
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


# ---------------------------------------------------------------------------------------------
# provider rules before the mapping (run_pipeline calls GreenButtonConnector.prepare_raw)
# ---------------------------------------------------------------------------------------------
_EXTENSION_KEYS = ("registers",)


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
      reading of the same interval and unit is quarantined (``greenbutton_reverse_unpaired``);
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
        ``[extensions.greenbutton]`` has an unknown key or a ``registers`` that is not a name.
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
    out: dict[str, list[dict[str, Any]]] = {
        k: list(getattr(v, "records", v)) for k, v in raw.items()
    }
    set_aside: list[tuple[dict[str, Any], str, str, str, str]] = []  # rec, table, rule, sev, why
    registers: list[dict[str, Any]] = []
    for name in _reading_resources(profile, out):
        kept, regs = _route_readings(name, out[name], set_aside)
        out[name] = kept
        registers.extend(regs)
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


def _route_readings(
    resource: str,
    records: list[dict[str, Any]],
    set_aside: list[tuple[dict[str, Any], str, str, str, str]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(interval records to keep, register records) of one resource; the rest to set_aside."""
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
    if reverse:
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
    return kept_out, register_out


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

        {usage_point_id, subscription_id, period_start, period_end (ISO 8601 UTC, end
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
    out: dict[str, Any] = {
        "usage_point_id": _after(where, "UsagePoint"),
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


CONNECTOR = GreenButtonConnector
