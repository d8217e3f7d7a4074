"""parse_iso_fast's one-pass path for ``...:SS(Z|±HH:MM)`` rows equals the shape-by-shape parser
it replaced, byte for byte (accepted rows, values), and agrees with pandas.

``_reference_parse`` below is the shape-by-shape parser as it was before the one-pass path
(session 5): every row it accepts must be accepted with the same nanoseconds, every row it
refuses must be refused. Inputs mix the fast shape with near misses (a bad digit, separator,
zone, length, a trailing NUL) so both the one-pass path and its fallback are exercised.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from scaler_workbench.transform import parse_iso_fast

# ---- the reference: the shape-by-shape parser as it was ---------------------------------------
_WIDTH = 36
_YEAR0 = 1700
_INVALID = np.iinfo(np.int64).min


def _pairs() -> np.ndarray:
    table = np.full(65536, 255, dtype=np.uint8)
    for tens in range(10):
        for ones in range(10):
            table[(48 + tens) | ((48 + ones) << 8)] = tens * 10 + ones
    return table


def _days() -> np.ndarray:
    years = np.arange(_YEAR0, 2200)
    table = np.full(len(years) * 372, _INVALID, dtype=np.int64)
    for month in range(1, 13):
        first = (years - 1970) * 12 + (month - 1)
        start = first.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)
        ndays = (first + 1).astype("datetime64[M]").astype("datetime64[D]").astype(np.int64) - start
        for day in range(1, 32):
            valid = day <= ndays
            table[(years[valid] - _YEAR0) * 372 + (month - 1) * 31 + day - 1] = (
                start[valid] + day - 1
            )
    return table


_PAIRS, _DAYS = _pairs(), _days()


def _layout(body: int, zulu: bool) -> np.dtype:
    fields: dict[str, tuple[str, int]] = {
        "y1": ("<u2", 0), "y2": ("<u2", 2), "mo": ("<u2", 5), "dd": ("<u2", 8),
        "hh": ("<u2", 11), "mi": ("<u2", 14),
        "s4": ("u1", 4), "s7": ("u1", 7), "s10": ("u1", 10), "s13": ("u1", 13),
        "zone": ("u1", body),
    }  # fmt: skip
    if body >= 19:
        fields |= {"ss": ("<u2", 17), "s16": ("u1", 16)}
    if body >= 20:
        fields["dot"] = ("u1", 19)
        for p in range(20, body):
            fields[f"f{p}"] = ("u1", p)
    if not zulu:
        fields |= {"oh": ("<u2", body + 1), "om": ("<u2", body + 4), "oc": ("u1", body + 3)}
    return np.dtype(
        {
            "names": list(fields),
            "formats": [f for f, _ in fields.values()],
            "offsets": [o for _, o in fields.values()],
            "itemsize": _WIDTH,
        }
    )


def _shape(raw, body, zulu, length=None):
    v = raw.view(_layout(body, bool(zulu)))
    y1, y2, mo, dd = _PAIRS[v["y1"]], _PAIRS[v["y2"]], _PAIRS[v["mo"]], _PAIRS[v["dd"]]
    hh, mi = _PAIRS[v["hh"]], _PAIRS[v["mi"]]
    bad = y1 | y2 | mo | dd | hh | mi
    ok = (v["s4"] == 45) & (v["s7"] == 45) & (v["s13"] == 58)
    ok &= (v["s10"] == 84) | (v["s10"] == 32)
    year = y1.astype(np.int32) * 100 + y2
    month = mo.astype(np.int32)
    secs = hh.astype(np.int32) * 3600 + mi.astype(np.int32) * 60
    ns = None
    if body >= 19:
        ss = _PAIRS[v["ss"]]
        bad = bad | ss
        ok &= (v["s16"] == 58) & (ss <= 59)
        secs += ss
    if body >= 20:
        ok &= v["dot"] == 46
        frac = np.zeros(len(raw), dtype=np.int64)
        for p in range(20, 29):
            if p < body:
                dig = v[f"f{p}"] - np.uint8(48)
                ok &= dig < 10
                frac = frac * 10 + dig
            else:
                frac *= 10
        ns = frac
    if zulu is None:
        oh, om, zone = _PAIRS[v["oh"]], _PAIRS[v["om"]], v["zone"]
        minus = zone == 45
        with_offset = (zone == 43) | minus
        with_offset &= (length == body + 6) & (v["oc"] == 58) & (oh <= 23) & (om <= 59)
        ok &= ((zone == 90) & (length == body + 1)) | with_offset
        off = oh.astype(np.int32) * 3600 + om.astype(np.int32) * 60
        off[~with_offset] = 0
        np.negative(off, out=off, where=minus)
        secs -= off
    elif zulu:
        ok &= v["zone"] == 90
    else:
        oh, om = _PAIRS[v["oh"]], _PAIRS[v["om"]]
        sign = v["zone"]
        ok &= ((sign == 43) | (sign == 45)) & (v["oc"] == 58) & (oh <= 23) & (om <= 59)
        off = oh.astype(np.int32) * 3600 + om.astype(np.int32) * 60
        secs -= np.where(sign == 45, -off, off)
    key = (year.astype(np.int32) - _YEAR0) * 372 + month.astype(np.int32) * 31 + dd - 32
    ok &= (bad < 128) & (key >= 0) & (key < len(_DAYS)) & (hh <= 23) & (mi <= 59)
    ok &= (month >= 1) & (month <= 12) & (dd >= 1) & (dd <= 31) & (year >= _YEAR0)
    days = _DAYS[np.where(ok, key, 0)]
    ok &= days != _INVALID
    out = (days * 86400 + secs) * 1_000_000_000
    if ns is not None:
        out += ns
    return out, ok


def _reference_parse(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = len(raw)
    raw = np.ascontiguousarray(raw, dtype=f"S{_WIDTH}")
    out = np.zeros(n, dtype=np.int64)
    ok = np.zeros(n, dtype=bool)
    if not n:
        return out, ok
    length = np.strings.str_len(raw)
    counts = np.bincount(length, minlength=_WIDTH + 1)
    sizes = np.flatnonzero(counts)
    if len(sizes) == 2 and sizes[1] - sizes[0] == 5:
        body = int(sizes[0]) - 1
        if body == 16 or 19 <= body <= 29:
            v, o = _shape(raw, body, None, length)
            if o.all():
                return v, o
    for size in np.flatnonzero(counts).tolist():
        if size < 17 or size >= _WIDTH:
            continue
        whole = counts[size] == n
        sel = None if whole else np.flatnonzero(length == size)
        part = raw if sel is None else raw[sel]
        zb = part.view(np.uint8).reshape(len(part), _WIDTH)[:, size - 1] == 90
        for zulu in (True, False):
            body = size - 1 if zulu else size - 6
            if not (body == 16 or 19 <= body <= 29):
                continue
            pick = zb if zulu else ~zb
            if not pick.any():
                continue
            every = bool(pick.all())
            sub = part if every else part[pick]
            v, o = _shape(sub, body, zulu)
            rows = (
                (np.arange(n) if sel is None else sel)
                if every
                else (np.flatnonzero(pick) if sel is None else sel[pick])
            )
            if every and sel is None:
                out, ok = v, o
            else:
                out[rows] = v
                ok[rows] = o
    return out, ok


# ---- inputs -------------------------------------------------------------------------------------
_GOOD = "2023-10-29T01:30:00"


@st.composite
def near_iso(draw: st.DrawFn) -> bytes:
    """The one-pass shape (Z or ±HH:MM), often with one byte changed, cut or appended."""
    year = draw(st.sampled_from([1699, 1700, 1999, 2000, 2023, 2024, 2100, 2199, 2200, 9999]))
    month, day = draw(st.integers(0, 13)), draw(st.integers(0, 32))
    hh, mi, ss = draw(st.integers(0, 25)), draw(st.integers(0, 60)), draw(st.integers(0, 61))
    sep = draw(st.sampled_from("TTT t_"))
    text = f"{year:04d}-{month:02d}-{day:02d}{sep}{hh:02d}:{mi:02d}:{ss:02d}"
    if draw(st.booleans()):
        text += "." + "".join(draw(st.lists(st.sampled_from("0123456789"), max_size=10)))
    oh, om = draw(st.integers(0, 25)), draw(st.integers(0, 61))
    text += draw(
        st.sampled_from(["Z", "Z", "z", "", f"+{oh:02d}:{om:02d}", f"-{oh:02d}:{om:02d}"])
        | st.just(f"+{oh:02d}{om:02d}")
    )
    data = bytearray(text.encode())
    edit = draw(st.integers(0, 5))
    if edit == 1 and data:  # one byte replaced by anything (NUL and non-ASCII included)
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    elif edit == 2:
        data = data[: draw(st.integers(0, len(data)))]
    elif edit == 3:
        data += draw(st.binary(min_size=1, max_size=8))
    return bytes(data[:_WIDTH])


def _check(items: list[bytes]) -> None:
    raw = np.array(items, dtype=f"S{_WIDTH}")
    ns, ok = parse_iso_fast(raw)
    ref_ns, ref_ok = _reference_parse(raw)
    np.testing.assert_array_equal(ok, ref_ok)
    np.testing.assert_array_equal(ns[ok], ref_ns[ref_ok])
    if ok.any():  # and both read what pandas reads
        texts = [x.decode() for x in np.asarray(raw[ok]).tolist()]
        expected = pd.DatetimeIndex(pd.to_datetime(texts, utc=True, format="ISO8601"))
        np.testing.assert_array_equal(ns[ok], expected.as_unit("ns").asi8)


@settings(max_examples=400, deadline=None)
@given(st.lists(near_iso(), min_size=1, max_size=50))
def test_property_one_pass_path_equals_the_shape_by_shape_parser(items) -> None:
    _check(items)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(-9_000_000_000, 6_000_000_000), min_size=1, max_size=60),  # 1714..2190
    st.lists(st.sampled_from(["Z", "+01:00", "-05:30", "+14:00", "-00:00", "+23:59"]), min_size=1),
)
def test_property_valid_rows_equal_pandas_and_the_reference(seconds, zones) -> None:
    """Rows that are all in the shape (the chunk a connector usually hands over)."""
    base = pd.Timestamp("2000-01-01")
    items = [
        (
            (base + pd.Timedelta(seconds=s)).strftime("%Y-%m-%dT%H:%M:%S") + zones[i % len(zones)]
        ).encode()
        for i, s in enumerate(seconds)
    ]
    _check(items)
    assert parse_iso_fast(np.array(items, dtype=f"S{_WIDTH}"))[1].all()


def test_one_pass_probe_falls_back_row_by_row() -> None:
    """A first row in the shape, then other shapes and junk: each row as the reference."""
    items = [
        b"2023-01-01T00:00:00Z",
        b"2023-06-01T00:00:00+01:00",
        b"2023-06-01T00:00:00.5+01:00",
        b"2023-06-01T00:00Z",
        b"2023-06-01 00:00:00-05:30",
        b"2023-02-29T00:00:00Z",
        b"2023-01-01T00:00:00Z\x00x",
        b"2023-01-01T00:00:00+01:00\x00",
        b"2023-01-01T00:00:00+01:0",
        b"",
    ]
    _check(items)
    ok = parse_iso_fast(np.array(items, dtype=f"S{_WIDTH}"))[1]
    assert ok.tolist() == [True, True, True, True, True, False, False, True, False, False]
