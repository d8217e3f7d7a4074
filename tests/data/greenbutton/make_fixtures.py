"""Write the Green Button fixtures of issue 17 (run: python tests/data/greenbutton/make_fixtures.py).

Every file is written by the project from seeded random numbers, never copied from a utility:
each reproduces one structure real data custodians publish. Expected totals are never stored
here: tests/providers/test_greenbutton.py works them out from the XML with its own walk.

=========================  ==================================================================
file                       structure
=========================  ==================================================================
dmd_retailcustomer.xml     Download My Data: ``RetailCustomer/{id}/UsagePoint/..`` hrefs,
                           ``ns0:``/``ns1:`` prefixes, hourly Wh across the March DST change,
                           a daily block per entry, LocalTimeParameters (Pacific)
user_relative.xml          relative ``User/1/UsagePoint/..`` hrefs without ``xml:base``,
                           default namespaces, hourly, ``powerOfTenMultiplier`` -3
xml_base.xml               relative hrefs under ``xml:base`` (the feed's, and one entry's
                           own), ``espi:`` prefix, two usage points
multi_block.xml            one entry holding 32 daily IntervalBlocks (768 hourly readings over
                           two months)
block_only.xml             usage point 1 complete; usage point 2 served as IntervalBlocks
                           alone (no MeterReading, no ReadingType)
duplicate_hrefs.xml        a ReadingType and a MeterReading each sent twice under one self
                           href with different content; usage point 3 clean
gas_daily_therms.xml       gas, daily, uom 169 (therm) x 10**-8, ``atom:``/``espi:``
                           prefixes, LocalTimeParameters of US Eastern time
electric_15min_cost.xml    Batch ``Subscription/5``: 15-minute Wh with cost, currency 840,
                           ``espi:`` prefix, Pacific, across the March DST change
=========================  ==================================================================
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

HERE = Path(__file__).resolve().parent
ATOM = "http://www.w3.org/2005/Atom"
ESPI = "http://naesb.org/espi"
ROOT = "https://utility.example/DataCustodian/espi/1_1/resource"
PACIFIC = {"tz": -28800, "dst": 3600, "start": "360E2000", "end": "B40E2000"}
EASTERN = {"tz": -18000, "dst": 3600, "start": "360E2000", "end": "B40E2000"}

# prefix styles: (Atom prefix, ESPI prefix, declare ESPI on each content child)
STYLES = {
    "default": ("", "", True),
    "ns": ("ns0", "ns1", False),
    "espi": ("", "espi", False),
    "atom_espi": ("atom", "espi", False),
}


class Feed:
    """An Atom feed written with one prefix style."""

    def __init__(self, style: str, *, title: str, self_href: str = "", xml_base: str = "") -> None:
        self.a, self.e, self.inline = STYLES[style]
        self.parts: list[str] = []
        self.title, self.self_href, self.xml_base = title, self_href, xml_base

    def at(self, name: str) -> str:
        return f"{self.a}:{name}" if self.a else name

    def es(self, name: str) -> str:
        return f"{self.e}:{name}" if self.e else name

    def entry(
        self,
        *,
        self_href: str,
        up: str,
        related: tuple[str, ...] = (),
        title: str = "",
        published: str = "2024-04-05T00:00:00Z",
        content: str,
        xml_base: str = "",
        uid: str,
    ) -> None:
        a = self.at
        links = f'<{a("link")} rel="self" href="{self_href}"/><{a("link")} rel="up" href="{up}"/>'
        links += "".join(f'<{a("link")} rel="related" href="{r}"/>' for r in related)
        base = f' xml:base="{xml_base}"' if xml_base else ""
        self.parts.append(
            f"<{a('entry')}{base}><{a('id')}>urn:uuid:{uid}</{a('id')}>{links}"
            f"<{a('title')}>{title}</{a('title')}><{a('published')}>{published}</{a('published')}>"
            f"<{a('updated')}>{published}</{a('updated')}>"
            f"<{a('content')}>{content}</{a('content')}></{a('entry')}>"
        )

    def resource(self, name: str, body: str) -> str:
        decl = f' xmlns="{ESPI}"' if self.inline and not self.e else ""
        return f"<{self.es(name)}{decl}>{body}</{self.es(name)}>"

    def fields(self, **values: object) -> str:
        return "".join(f"<{self.es(k)}>{v}</{self.es(k)}>" for k, v in values.items())

    def write(self, name: str) -> None:
        a = self.at
        decls = [f'xmlns{":" + self.a if self.a else ""}="{ATOM}"']
        if self.e:
            decls.append(f'xmlns:{self.e}="{ESPI}"')
        base = f' xml:base="{self.xml_base}"' if self.xml_base else ""
        link = f'<{a("link")} rel="self" href="{self.self_href}"/>' if self.self_href else ""
        text = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<{a('feed')} {' '.join(decls)}{base}><{a('id')}>urn:uuid:feed-{name}</{a('id')}>"
            f"<{a('title')}>{self.title}</{a('title')}>{link}\n"
            + "\n".join(self.parts)
            + f"\n</{a('feed')}>\n"
        )
        (HERE / name).write_text(text, encoding="utf-8")


class Ids:
    def __init__(self, name: str) -> None:
        self.n, self.name = 0, name

    def __call__(self) -> str:
        self.n += 1
        return f"{self.name}-{self.n:04d}"


def usage_point(
    f: Feed, ids: Ids, base: str, point: str, kind: int, ltp: str = "", **kw: str
) -> None:
    related = (f"{base}UsagePoint/{point}/MeterReading",) + ((ltp,) if ltp else ())
    f.entry(
        self_href=f"{base}UsagePoint/{point}",
        up=f"{base}UsagePoint",
        related=related,
        title=kw.get("title", f"Usage point {point}"),
        content=f.resource(
            "UsagePoint",
            f"<{f.es('ServiceCategory')}>{f.fields(kind=kind)}"
            f"</{f.es('ServiceCategory')}>" + f.fields(status=1),
        ),
        uid=ids(),
        xml_base=kw.get("xml_base", ""),
    )


def local_time(f: Feed, ids: Ids, href: str, up: str, clock: dict[str, object]) -> None:
    f.entry(
        self_href=href,
        up=up,
        title="Local time",
        content=f.resource(
            "LocalTimeParameters",
            f.fields(
                dstEndRule=clock["end"],
                dstOffset=clock["dst"],
                dstStartRule=clock["start"],
                tzOffset=clock["tz"],
            ),
        ),
        uid=ids(),
    )


def meter_reading(
    f: Feed, ids: Ids, base: str, point: str, mr: str, rt_href: str, **kw: str
) -> None:
    f.entry(
        self_href=f"{base}UsagePoint/{point}/MeterReading/{mr}",
        up=f"{base}UsagePoint/{point}/MeterReading",
        related=(f"{base}UsagePoint/{point}/MeterReading/{mr}/IntervalBlock", rt_href),
        title=kw.get("title", "Meter reading"),
        content=f.resource("MeterReading", ""),
        uid=ids(),
        xml_base=kw.get("xml_base", ""),
    )


def reading_type(
    f: Feed,
    ids: Ids,
    href: str,
    up: str,
    *,
    uom: int,
    p10: int,
    interval: int,
    acc: int = 4,
    currency: str = "",
    title: str = "Type",
) -> None:
    extra = {"currency": currency} if currency else {}
    f.entry(
        self_href=href,
        up=up,
        title=title,
        content=f.resource(
            "ReadingType",
            f.fields(
                accumulationBehaviour=acc,
                commodity=1,
                **extra,
                dataQualifier=12,
                flowDirection=1,
                intervalLength=interval,
                kind=12,
                phase=769,
                powerOfTenMultiplier=p10,
                timeAttribute=0,
                uom=uom,
            ),
        ),
        uid=ids(),
    )


def readings(
    rng: random.Random, start: int, end: int, step: int, lo: int, hi: int, cost_per: float = 0.0
) -> list[tuple[int, int, int, int | None]]:
    out = []
    for t in range(start, end, step):
        v = rng.randint(lo, hi)
        out.append((t, step, v, round(v * cost_per) if cost_per else None))
    return out


def block_xml(f: Feed, rows: list[tuple[int, int, int, int | None]]) -> str:
    body = (
        f"<{f.es('interval')}>"
        + f.fields(duration=rows[-1][0] + rows[-1][1] - rows[0][0], start=rows[0][0])
        + f"</{f.es('interval')}>"
    )
    for t, d, v, c in rows:
        cost = f.fields(cost=c) if c is not None else ""
        body += (
            f"<{f.es('IntervalReading')}>{cost}<{f.es('timePeriod')}>"
            f"{f.fields(duration=d, start=t)}</{f.es('timePeriod')}>{f.fields(value=v)}"
            f"</{f.es('IntervalReading')}>"
        )
    return f.resource("IntervalBlock", body)


def days(zone: str, first: str, n: int) -> list[tuple[int, int]]:
    """(start, end) epoch seconds of ``n`` local days from ``first``."""
    tz = ZoneInfo(zone)
    d0 = datetime.fromisoformat(first)
    out = []
    for i in range(n):
        a = (d0 + timedelta(days=i)).replace(tzinfo=tz)
        b = (d0 + timedelta(days=i + 1)).replace(tzinfo=tz)
        out.append((int(a.timestamp()), int(b.timestamp())))
    return out


def daily_blocks(
    f: Feed,
    ids: Ids,
    base: str,
    point: str,
    mr: str,
    rng: random.Random,
    spans: list[tuple[int, int]],
    step: int,
    lo: int,
    hi: int,
    cost_per: float = 0.0,
    **kw: str,
) -> None:
    for i, (a, b) in enumerate(spans, 1):
        rows = readings(rng, a, b, step, lo, hi, cost_per)
        f.entry(
            self_href=f"{base}UsagePoint/{point}/MeterReading/{mr}/IntervalBlock/{i}",
            up=f"{base}UsagePoint/{point}/MeterReading/{mr}/IntervalBlock",
            published=datetime.fromtimestamp(a, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            content=block_xml(f, rows),
            uid=ids(),
            xml_base=kw.get("xml_base", ""),
        )


def dmd_retailcustomer() -> None:
    f, ids, rng = Feed("ns", title="Download My Data"), Ids("dmd"), random.Random(1701)
    base = f"{ROOT}/RetailCustomer/9b6c7063/"
    ltp = f"{ROOT}/LocalTimeParameters/1"
    usage_point(f, ids, base, "01", 0, ltp, title="Green Button Data File")
    local_time(f, ids, ltp, f"{ROOT}/LocalTimeParameters", PACIFIC)
    meter_reading(f, ids, base, "01", "01", f"{ROOT}/ReadingType/07")
    reading_type(
        f, ids, f"{ROOT}/ReadingType/07", f"{ROOT}/ReadingType", uom=72, p10=0, interval=3600
    )
    daily_blocks(
        f,
        ids,
        base,
        "01",
        "01",
        rng,
        days("America/Los_Angeles", "2024-02-25", 20),
        3600,
        200,
        2500,
    )
    f.write("dmd_retailcustomer.xml")


def user_relative() -> None:
    f, ids, rng = Feed("default", title="User feed"), Ids("usr"), random.Random(1702)
    base = "User/1/"
    usage_point(f, ids, base, "1", 0, "LocalTimeParameters/1")
    local_time(f, ids, "LocalTimeParameters/1", "LocalTimeParameters", PACIFIC)
    meter_reading(f, ids, base, "1", "1", "ReadingType/1")
    reading_type(f, ids, "ReadingType/1", "ReadingType", uom=72, p10=-3, interval=3600)
    daily_blocks(
        f,
        ids,
        base,
        "1",
        "1",
        rng,
        days("America/Los_Angeles", "2024-03-25", 14),
        3600,
        150_000,
        2_600_000,
    )
    f.write("user_relative.xml")


def xml_base() -> None:
    f = Feed(
        "espi", title="Relative hrefs", xml_base=f"{ROOT}/", self_href="Batch/RetailCustomer/42"
    )
    ids, rng = Ids("xb"), random.Random(1703)
    own = f"{ROOT}/RetailCustomer/77/"
    usage_point(f, ids, "RetailCustomer/42/", "1", 0, "LocalTimeParameters/1")
    usage_point(f, ids, "", "2", 0, f"{ROOT}/LocalTimeParameters/1", xml_base=own)
    local_time(f, ids, "LocalTimeParameters/1", "LocalTimeParameters", PACIFIC)
    meter_reading(f, ids, "RetailCustomer/42/", "1", "1", "ReadingType/1")
    meter_reading(f, ids, "", "2", "1", f"{ROOT}/ReadingType/2", xml_base=own)
    reading_type(f, ids, "ReadingType/1", "ReadingType", uom=72, p10=0, interval=3600)
    reading_type(f, ids, "ReadingType/2", "ReadingType", uom=72, p10=1, interval=3600)
    spans = days("America/Los_Angeles", "2024-04-24", 12)
    daily_blocks(f, ids, "RetailCustomer/42/", "1", "1", rng, spans, 3600, 100, 3000)
    daily_blocks(f, ids, "", "2", "1", rng, spans, 3600, 10, 300, xml_base=own)
    f.write("xml_base.xml")


def multi_block() -> None:
    f, ids, rng = Feed("default", title="Multi-block"), Ids("mb"), random.Random(1704)
    base = f"{ROOT}/Subscription/7/"
    ltp = f"{ROOT}/LocalTimeParameters/1"
    usage_point(f, ids, base, "1", 0, ltp)
    local_time(f, ids, ltp, f"{ROOT}/LocalTimeParameters", PACIFIC)
    meter_reading(f, ids, base, "1", "1", f"{ROOT}/ReadingType/1")
    reading_type(
        f, ids, f"{ROOT}/ReadingType/1", f"{ROOT}/ReadingType", uom=72, p10=0, interval=3600
    )
    blocks = "".join(
        block_xml(f, readings(rng, a, b, 3600, 1000, 6000))
        for a, b in days("America/Los_Angeles", "2024-01-15", 32)
    )
    f.entry(
        self_href=f"{base}UsagePoint/1/MeterReading/1/IntervalBlock/1",
        up=f"{base}UsagePoint/1/MeterReading/1/IntervalBlock",
        published="2024-01-15T08:00:00Z",
        content=blocks,
        uid=ids(),
    )
    f.write("multi_block.xml")


def block_only() -> None:
    f, ids, rng = Feed("ns", title="Blocks alone"), Ids("bo"), random.Random(1705)
    base = f"{ROOT}/Subscription/8/"
    usage_point(f, ids, base, "1", 0)
    meter_reading(f, ids, base, "1", "1", f"{ROOT}/ReadingType/1")
    reading_type(
        f, ids, f"{ROOT}/ReadingType/1", f"{ROOT}/ReadingType", uom=72, p10=0, interval=3600
    )
    spans = days("America/Los_Angeles", "2024-05-28", 8)
    daily_blocks(f, ids, base, "1", "1", rng, spans, 3600, 100, 2000)
    daily_blocks(f, ids, base, "2", "2", rng, spans, 3600, 100, 2000)
    f.write("block_only.xml")


def duplicate_hrefs() -> None:
    f, ids, rng = Feed("espi", title="Duplicate hrefs"), Ids("dup"), random.Random(1706)
    base = f"{ROOT}/Subscription/9/"
    rt = f"{ROOT}/ReadingType"
    for point in ("1", "2", "3"):
        usage_point(f, ids, base, point, 0)
    meter_reading(f, ids, base, "1", "1", f"{rt}/1")
    reading_type(f, ids, f"{rt}/1", rt, uom=72, p10=0, interval=3600, title="Delta")
    reading_type(f, ids, f"{rt}/1", rt, uom=72, p10=-2, interval=3600, acc=1, title="Register")
    meter_reading(f, ids, base, "2", "2", f"{rt}/2", title="Meter reading A")
    meter_reading(f, ids, base, "2", "2", f"{rt}/3", title="Meter reading B")
    reading_type(f, ids, f"{rt}/2", rt, uom=72, p10=0, interval=3600)
    reading_type(f, ids, f"{rt}/3", rt, uom=72, p10=3, interval=3600)
    meter_reading(f, ids, base, "3", "3", f"{rt}/4")
    reading_type(f, ids, f"{rt}/4", rt, uom=72, p10=0, interval=3600)
    # an identical repeat (as Batch windows send) is no conflict
    reading_type(f, ids, f"{rt}/4", rt, uom=72, p10=0, interval=3600)
    spans = days("America/Los_Angeles", "2024-06-27", 7)
    for point in ("1", "2", "3"):
        daily_blocks(f, ids, base, point, point, rng, spans, 3600, 100, 2000)
    f.write("duplicate_hrefs.xml")


def gas_daily_therms() -> None:
    f, ids, rng = Feed("atom_espi", title="Gas"), Ids("gas"), random.Random(1707)
    base = f"{ROOT}/RetailCustomer/5521/"
    ltp = f"{ROOT}/LocalTimeParameters/2"
    usage_point(f, ids, base, "3", 1, ltp)
    local_time(f, ids, ltp, f"{ROOT}/LocalTimeParameters", EASTERN)
    meter_reading(f, ids, base, "3", "1", f"{ROOT}/ReadingType/3")
    reading_type(
        f, ids, f"{ROOT}/ReadingType/3", f"{ROOT}/ReadingType", uom=169, p10=-8, interval=86400
    )
    spans = days("America/New_York", "2024-01-01", 91)
    rows = []
    for a, b in spans:  # one reading per local day (23 or 25 hours at the DST changes)
        rows.append((a, b - a, rng.randint(50_000_000, 900_000_000), None))
    for i in range(0, len(rows), 30):  # monthly-ish blocks
        chunk = rows[i : i + 30]
        f.entry(
            self_href=f"{base}UsagePoint/3/MeterReading/1/IntervalBlock/{i // 30 + 1}",
            up=f"{base}UsagePoint/3/MeterReading/1/IntervalBlock",
            content=block_xml(f, chunk),
            uid=ids(),
        )
    f.write("gas_daily_therms.xml")


def electric_15min_cost() -> None:
    f = Feed("espi", title="Green Button Subscription 5", self_href=f"{ROOT}/Batch/Subscription/5")
    ids, rng = Ids("e15"), random.Random(1708)
    base = f"{ROOT}/Subscription/5/"
    ltp = f"{ROOT}/LocalTimeParameters/1"
    usage_point(f, ids, base, "1", 0, ltp)
    local_time(f, ids, ltp, f"{ROOT}/LocalTimeParameters", PACIFIC)
    meter_reading(f, ids, base, "1", "1", f"{ROOT}/ReadingType/1")
    reading_type(
        f,
        ids,
        f"{ROOT}/ReadingType/1",
        f"{ROOT}/ReadingType",
        uom=72,
        p10=0,
        interval=900,
        currency="840",
    )
    daily_blocks(
        f,
        ids,
        base,
        "1",
        "1",
        rng,
        days("America/Los_Angeles", "2024-02-27", 16),
        900,
        20,
        900,
        cost_per=31.7,
    )
    f.write("electric_15min_cost.xml")


def main() -> None:
    for make in (
        dmd_retailcustomer,
        user_relative,
        xml_base,
        multi_block,
        block_only,
        duplicate_hrefs,
        gas_daily_therms,
        electric_15min_cost,
    ):
        make()


if __name__ == "__main__":
    main()
