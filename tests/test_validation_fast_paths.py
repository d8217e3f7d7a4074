"""Validation's fast paths equal the implementations they replaced (kept here verbatim).

- ``validation.record_keys`` formats only the datetimes that did not parse as their text and
  reads text/categorical key columns without pandas' string casts;
- ``validation._check_control_characters`` scans a column's joined texts once and falls back
  to the per-cell regex only when that finds something (or cannot tell).

Both are compared with their references on random frames (hypothesis): nulls, unparsable
timestamps, non-UTC zones, categorical and numeric ids, control characters in and out of ASCII.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scaler_workbench import validation as v
from scaler_workbench._time import utc_text
from scaler_workbench.schema import TABLES

_CONTROL = v._CONTROL


def _record_keys_reference(
    frame: pd.DataFrame, table: str, *, parsed: pd.DataFrame | None = None
) -> np.ndarray:
    t = TABLES[table]
    out: pd.Series | None = None
    for col in t.key:
        if col not in frame.columns:
            part = pd.Series("", index=range(len(frame)), dtype=object)
        elif t.column(col).kind == "datetime":
            raw = frame[col].reset_index(drop=True)
            if parsed is not None and col in parsed.columns:
                dt = parsed[col].reset_index(drop=True)
            else:
                dt, _ = v._parse_datetimes(raw, table, col)
            if not isinstance(dt.dtype, pd.DatetimeTZDtype):
                dt, _ = v._parse_datetimes(dt, table, col)
            text = pd.Series(utc_text(dt, "s"), index=dt.index, dtype=object)
            part = text.where(dt.notna(), raw.astype("string").fillna("").astype(object))
        else:
            part = frame[col].reset_index(drop=True).astype("string").fillna("").astype(object)
        out = part if out is None else out + "|" + part
    assert out is not None
    return out.to_numpy(dtype=object)


def _control_masks_reference(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    masks: dict[str, np.ndarray] = {}
    for col in frame.columns:
        s = frame[col]
        if not (s.dtype == object or pd.api.types.is_string_dtype(s.dtype)):
            continue
        try:
            mask = s.astype(object).str.contains(_CONTROL, na=False).to_numpy(dtype=bool)
        except AttributeError:
            continue
        if mask.any():
            masks[col] = mask
    return masks


_TEXT = st.text(alphabet=st.sampled_from(["a", "B", "7", "|", " ", "\x07", "\t", "\x85", "é"]))
_STAMP = st.one_of(
    st.none(),
    st.sampled_from(["2024-01-01T00:00:00Z", "2024-03-31T01:30:00+01:00", "not a date", ""]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ids=st.lists(st.one_of(st.none(), _TEXT), min_size=0, max_size=12),
    kind=st.sampled_from(["string", "object", "category", "int"]),
    stamps=st.data(),
    tz=st.sampled_from(["UTC", "Europe/London", "text"]),
)
def test_record_keys_equal_the_reference(
    ids: list[str | None], kind: str, stamps: st.DataObject, tz: str
) -> None:
    n = len(ids)
    if kind == "int":
        meter = pd.Series(pd.array([None if i is None else len(i) for i in ids], dtype="Int64"))
    else:
        meter = pd.Series(ids, dtype="category" if kind == "category" else kind)
    texts = stamps.draw(st.lists(_STAMP, min_size=n, max_size=n))
    if tz == "text":
        start = pd.Series(texts, dtype=object)
    else:
        start = pd.Series(
            pd.to_datetime(
                pd.Series(texts, dtype=object), utc=True, errors="coerce", format="ISO8601"
            )
        ).dt.tz_convert(tz)
    frame = pd.DataFrame({"meter_id": meter, "start": start, "end": start}, index=range(5, 5 + n))
    raw = start.reset_index(drop=True)
    dt = v._parse_datetimes(raw, "usage", "start")[0]
    for parsed in (None, pd.DataFrame({"start": dt, "end": dt})):
        got = v.record_keys(frame, "usage", parsed=parsed)
        ref = _record_keys_reference(frame, "usage", parsed=parsed)
        assert got.dtype == object
        assert got.tolist() == ref.tolist()
    got = v.record_keys(frame[["meter_id"]], "meters")
    assert got.tolist() == _record_keys_reference(frame[["meter_id"]], "meters").tolist()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cells=st.lists(st.one_of(st.none(), _TEXT), min_size=1, max_size=10),
    kind=st.sampled_from(["string", "object", "category", "mixed"]),
)
def test_control_characters_equal_the_reference(cells: list[str | None], kind: str) -> None:
    if kind == "mixed":
        col = pd.Series([*cells, 3.5, b"\x07"], dtype=object)
    else:
        col = pd.Series(cells, dtype="category" if kind == "category" else kind)
    frame = pd.DataFrame({"name": col, "n": np.arange(len(col), dtype=float)})
    ctx = v.ValidationContext.from_profile(None)
    found = v._Findings("assets", ctx, len(frame))
    v._check_control_characters(frame, found, ctx, "assets")
    ref = _control_masks_reference(frame)
    got = {c: np.isin(np.arange(len(frame)), p) for c in ["name"] for _, p, _ in found.parts}
    assert set(got) == set(ref)
    for c, mask in ref.items():
        assert got[c].tolist() == mask.tolist()
    assert found.ran == {"control_characters": int(sum(m.sum() for m in ref.values()))}
    # not vacuous: the planted bell is found by both
    if kind != "category" and any(c is not None and "\x07" in c for c in cells):
        assert ref


def _records_json_reference(rows: pd.DataFrame, *, keep_private: bool = False) -> list[str]:
    if rows.columns.has_duplicates:
        rows = rows.loc[:, ~rows.columns.duplicated()]
    if not keep_private:
        rows = rows.drop(columns=[c for c in rows.columns if str(c).startswith("_")])
    dates = [c for c in rows.columns if isinstance(rows[c].dtype, pd.DatetimeTZDtype)]
    if dates:
        rows = rows.assign(**{str(c): utc_text(rows[c], "ms") for c in dates})
    text = rows.to_json(
        orient="records",
        lines=True,
        date_format="iso",
        date_unit="ms",
        default_handler=str,
        double_precision=15,
    )
    return text.splitlines()


_JSON_TEXT = st.text(
    alphabet=st.sampled_from(["}", ",", "{", '"', "\\", "\n", "\u2028", "é", "a", "/", "\x1e"])
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    texts=st.lists(st.one_of(st.none(), _JSON_TEXT), min_size=1, max_size=6),
    numbers=st.data(),
    extra=st.sampled_from(["none", "object", "category", "dict"]),
    keep_private=st.booleans(),
)
def test_records_json_equals_the_reference(
    texts: list[str | None], numbers: st.DataObject, extra: str, keep_private: bool
) -> None:
    from scaler_workbench.schema import records_json

    n = len(texts)
    floats = numbers.draw(
        st.lists(st.one_of(st.none(), st.floats(allow_nan=True)), min_size=n, max_size=n)
    )
    frame = pd.DataFrame(
        {
            "meter_id": pd.Series(texts, dtype="string"),
            "start": pd.to_datetime(np.arange(n) * 1_234_567_890_123, utc=True),
            "consumption": pd.Series(floats, dtype="float64"),
            "n": pd.array([None if f is None else i for i, f in enumerate(floats)], dtype="Int64"),
            "estimated": pd.array([None if t is None else len(t) % 2 == 0 for t in texts]),
            "_row": np.arange(n),
        }
    )
    if extra == "object":
        frame["note"] = pd.Series([t if i % 2 else i for i, t in enumerate(texts)], dtype=object)
    elif extra == "category":
        frame["source"] = pd.Series(texts, dtype="category")
    elif extra == "dict":
        frame["meta"] = pd.Series([{"meter_id": t, "x": [{"a": 1}, {"b": t}]} for t in texts])
    frame.loc[frame.index[0], "start"] = pd.NaT
    got = records_json(frame, keep_private=keep_private)
    assert got == _records_json_reference(frame, keep_private=keep_private)
    assert len(got) == n
