"""The export's fast paths write exactly what the pandas reference wrote (issue 13: benchmark).

``export._write_csv`` joins the text of all-``str`` frames itself instead of
``_neutralise_frame(frame).to_csv(...)`` (pandas' csv writer): random frames of hostile text
(formula starts, numbers, quotes, commas, CR/LF, tabs, NUL and other control characters,
non-ASCII) give the same bytes both ways, and the formula rule still holds for every cell.
Frames that are not all text fall back to pandas and stay identical too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

import scaler_workbench.export as E

_ALPHABET = st.sampled_from(
    [
        *("=", "+", "-", "@", "\t", "\r", "\n", ",", '"', "'", " ", "1", "2.5", "e", "E", "a"),
        *(
            "Z",
            "inf",
            "nan",
            ".",
            "\x00",
            "\x07",
            "\x1f",
            "\x7f",
            "\x85",
            "é",
            "€",
            "😀",
            "|",
            "\\",
        ),
    ]
)
_TEXT = st.lists(_ALPHABET, max_size=8).map("".join)


def _reference_csv(frame: pd.DataFrame) -> bytes:
    """What ``_write_csv`` wrote before the fast path (pandas' csv writer), as bytes."""
    text = E._neutralise_frame(frame).to_csv(index=False, lineterminator="\n")
    assert text is not None
    return text.encode("utf-8")


def _written(frame: pd.DataFrame, tmp_path: Path) -> bytes:
    path = tmp_path / "x.csv"
    E._write_csv(frame, path)
    return path.read_bytes()


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=2, max_value=5).flatmap(
        lambda n_cols: st.lists(st.lists(_TEXT, min_size=n_cols, max_size=n_cols), max_size=6)
    ),
    st.lists(st.text('abc_ ,"=', min_size=1, max_size=4), min_size=5, max_size=5, unique=True),
)
def test_fast_csv_equals_pandas_for_hostile_text(rows: list[list[str]], names: list[str]) -> None:
    n_cols = len(rows[0]) if rows else 3
    columns = names[:n_cols]
    frame = pd.DataFrame(
        {c: pd.Series([r[j] for r in rows], dtype=object) for j, c in enumerate(columns)},
        columns=columns,
    )
    fast = E._csv_text(frame)
    assert fast is not None  # all text: the fast path is taken
    assert fast.encode("utf-8") == _reference_csv(frame)
    # and no cell a spreadsheet would run: every field, unquoted, starts harmlessly
    for c in columns:
        for field in E._csv_column(frame[c].tolist()):
            if field.startswith('"'):
                field = field[1:-1].replace('""', '"')
            assert field[:1] not in E.FORMULA_START or E._NUMBER.fullmatch(field)


def test_fast_csv_file_bytes_and_fallbacks(tmp_path: Path) -> None:
    text = pd.DataFrame(
        {
            "id": ["=1+2", "-12.5", "@SUM(A1)", "\tx", "plain", "", "+", "-inf"],
            "reason": ['say "hi", then\nleave', "a\rb", "€ ok", "", "x,y", "'q", "-", "=\r"],
        }
    )
    assert E._csv_text(text) is not None
    assert _written(text, tmp_path) == _reference_csv(text)
    assert "'=1+2" in _written(text, tmp_path).decode()
    fallbacks = {
        "one column": text[["id"]],
        "a missing value": text.assign(reason=[None, *text["reason"][1:]]),
        "numbers": text.assign(n=np.arange(len(text))),
        "nullable ints": text.assign(n=pd.array([1, None, 3, 4, 5, 6, 7, 8], dtype="Int64")),
    }
    for why, frame in fallbacks.items():
        assert E._csv_text(frame) is None, why
        assert _written(frame, tmp_path) == _reference_csv(frame), why
    assert E._csv_text(pd.concat([text, text[["id"]]], axis=1)) is None  # duplicate names
    empty = pd.DataFrame({"a": pd.Series(dtype=object), "b": pd.Series(dtype=object)})
    assert E._csv_text(empty) == "a,b\n"
    assert _written(empty, tmp_path) == _reference_csv(empty)


def _reference_render_coverage(cov: pd.DataFrame) -> pd.DataFrame:
    """``export._render_coverage`` before the all-text rendering (pandas formatted the ints)."""
    out = cov.rename(columns={"meter_id": "meter_external_id"})
    out["meter_external_id"] = out["meter_external_id"].astype(str)
    out["month"] = out["month"].astype(str)
    out["status"] = out["status"].astype(str)
    for col in out.columns:
        if pd.api.types.is_float_dtype(out[col]):
            out[col] = E._float_text(out[col])
    return out.reset_index(drop=True)


def test_coverage_csv_equals_the_pandas_rendering(tmp_path: Path) -> None:
    from scaler_workbench.coverage import month_coverage

    start = pd.date_range("2024-01-01", "2024-04-01", freq="MS", tz="Europe/London")
    usage = pd.DataFrame(
        {
            "meter_id": ["I1", "I1", "I1", "D1", "D1"],
            "start": [*start[:3].tz_convert("UTC"), start[0].tz_convert("UTC"), start[2]],
            "end": [*start[1:4].tz_convert("UTC"), start[1].tz_convert("UTC"), start[3]],
            "expected_intervals": [1488.0, 1392.0, 1486.0, np.nan, np.nan],
            "n_intervals": [1488.0, 1390.0, 1486.0, np.nan, np.nan],
            "null_intervals": [0.0, 2.0, 0.0, np.nan, np.nan],
            "estimated_intervals": [0.0, 10.0, 0.0, np.nan, np.nan],
            "first_local": ["2024-01-01T00:00", None, "2024-03-01T00:00", None, None],
            "last_local": ["2024-02-01T00:00", None, "2024-04-01T00:00", None, None],
            "estimated": [False, True, False, True, False],
        }
    )
    usage["start"] = pd.to_datetime(usage["start"], utc=True)
    usage["end"] = pd.to_datetime(usage["end"], utc=True)
    meters = pd.DataFrame({"meter_id": ["I1", "D1", "Z9"]})
    cov = month_coverage(usage, meters=meters, timezone="Europe/London")
    assert cov["intervals"].isna().any() and cov["first_local"].notna().any()
    new = E._render_coverage(cov)
    assert E._csv_text(new) is not None
    assert _written(new, tmp_path) == _reference_csv(_reference_render_coverage(cov))


# -- datetimes: one conversion per column and zone, on int64 arrays ---------------------------
def _reference_local_parts(ts: pd.Series, tz: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """``export._local_parts`` before the array version."""
    naive = pd.Series(pd.NaT, index=ts.index, dtype="datetime64[ns]")
    offset = np.zeros(len(ts), dtype="int64")
    utc_naive = ts.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[ns]")
    for zone in pd.unique(tz):
        mask = (tz == zone).to_numpy()
        local = ts[mask].dt.tz_convert(str(zone)).dt.tz_localize(None).astype("datetime64[ns]")
        naive[mask] = local
        delta = (local - utc_naive[mask]).to_numpy().astype("timedelta64[m]").astype("int64")
        offset[mask] = delta
    return naive, offset


def _reference_format(ts: pd.Series, tz: pd.Series, as_date: pd.Series | None) -> list[str]:
    """``export.format_datetimes`` before the array version."""
    out = pd.Series("", index=ts.index, dtype=object)
    ok = ts.notna().to_numpy()
    if not ok.any():
        return out.tolist()
    naive, offset = _reference_local_parts(ts[ok], tz[ok])
    wall = naive.to_numpy(dtype="datetime64[ns]")
    dates = np.datetime_as_string(wall, unit="D").astype(object)
    full = np.char.add(np.datetime_as_string(wall, unit="s"), E._offset_text(offset)).astype(object)
    if as_date is not None:
        out[ok] = np.where(as_date[ok].to_numpy(dtype=bool), dates, full)
    else:
        out[ok] = full
    return out.tolist()


def _reference_midnight(ts: pd.Series, tz: pd.Series) -> pd.Series:
    """``export._is_local_midnight`` before the array version."""
    result = pd.Series(False, index=ts.index)
    ok = ts.notna()
    if ok.any():
        naive, _ = _reference_local_parts(ts[ok], tz[ok])
        result[ok] = (naive == naive.dt.normalize()).to_numpy()
    return result


_ZONES = ["UTC", "Europe/London", "America/St_Johns", "Asia/Kathmandu", "Europe/Amsterdam"]
#: instants around DST changes, local midnights, quarter hours, and LMT offsets with seconds
_INSTANT = st.one_of(
    st.integers(min_value=-3_000_000_000, max_value=2_500_000_000).map(lambda s: s * 10**9),
    st.sampled_from(
        [
            *pd.date_range("2024-03-30", "2024-04-01", freq="15min", tz="UTC").asi8[::7],
            *pd.date_range("2024-10-26", "2024-10-28", freq="30min", tz="UTC").asi8[::5],
            pd.Timestamp("2024-01-01", tz="Europe/London").value,
            pd.Timestamp("2024-07-01", tz="Europe/London").value,
            pd.Timestamp("1900-01-01", tz="Europe/Amsterdam").value,
            pd.Timestamp("1900-01-01 00:00:31", tz="UTC").value,
        ]
    ),
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.one_of(st.none(), _INSTANT), st.sampled_from(_ZONES)), max_size=12),
    st.booleans(),
)
def test_datetime_text_equals_the_pandas_version(
    rows: list[tuple[int | None, str]], with_dates: bool
) -> None:
    ts = pd.Series(
        pd.to_datetime([pd.NaT if v is None else v for v, _ in rows], utc=True),
        index=np.arange(len(rows)) * 3 + 5,  # not a RangeIndex: positions, not labels
        dtype="datetime64[ns, UTC]",
    )
    tz = pd.Series([z for _, z in rows], index=ts.index, dtype=object)
    mid = _reference_midnight(ts, tz)
    local = E._local_times(ts, tz.to_numpy())
    assert E._local_midnight(local).tolist() == mid.tolist()
    as_date = mid if with_dates else None
    want = _reference_format(ts, tz, as_date)
    assert E.format_datetimes(ts, tz, as_date=as_date).tolist() == want
    assert E._datetime_text(local, None if as_date is None else mid.to_numpy()).tolist() == want
    every = pd.Series(True, index=ts.index)  # dates of any time, before 1970 too
    assert E.format_datetimes(ts, tz, as_date=every).tolist() == _reference_format(ts, tz, every)
    one = _reference_format(ts, pd.Series("America/St_Johns", index=ts.index), None)
    assert E.format_datetimes(ts, "America/St_Johns").tolist() == one


# -- text cells and redaction ------------------------------------------------------------------
def _reference_string_text(s: pd.Series) -> np.ndarray:
    """``export._string_text`` before the ``str`` shortcut (numpy's fixed-width conversion)."""
    text = s.astype(object).to_numpy().copy()
    na = pd.isna(text)
    text = text.astype(str).astype(object)
    text[na] = ""
    return text


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(_TEXT, st.sampled_from([None, np.nan, pd.NA, "a\x00", "\x00", "x\x00\x00"])),
        max_size=8,
    ),
    st.sampled_from(["object", "string", "str"]),
)
def test_string_text_equals_numpy_conversion(values: list[object], dtype: str) -> None:
    s = pd.Series(values, dtype=object)
    if dtype != "object":
        s = s.astype(dtype)
    got = E._string_text(s)
    assert got.tolist() == _reference_string_text(s).tolist()
    assert all(type(v) is str for v in got)


def test_string_text_of_other_objects_keeps_numpy_text() -> None:
    s = pd.Series([1, 2.5, True, "a\x00", None, b"x"], dtype=object)
    assert E._string_text(s).tolist() == _reference_string_text(s).tolist()


def test_redacted_cells_equal_per_cell_redaction() -> None:
    from scaler_workbench._secrets import redact, register_secret

    secret = "s3cr3t-token-for-export-fast"
    register_secret(secret)
    cells = ["plain", f"key={secret}", "", "s3cr3t-", f"{secret}{secret}", "€"]
    assert E._redacted(cells) == [redact(v) for v in cells]
    assert secret not in "".join(E._redacted(cells))
    clean = ["a", "b", "", "s3cr3t-token"]
    assert E._redacted(clean) == clean


# -- numbers and sort order ------------------------------------------------------------------
@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.floats(min_value=-1e300, max_value=1e300) | st.sampled_from([np.nan, np.inf]),
            st.sampled_from([0.0, -0.0, 1.5, -1.5, 1e16, 1e-5, 0.1 + 0.2]),
        ),
        max_size=12,
    )
)
def test_float_text_equals_numpy_text_of_each_value(values: list[float]) -> None:
    s = pd.Series(values, dtype=np.float64)
    rounded = E.round_number(s.to_numpy())
    want = rounded.astype(str).astype(object)
    want[np.isnan(rounded)] = ""
    assert E._float_text(s).tolist() == want.tolist()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.none(), st.integers(-(2**62), 2**62)), max_size=12))
def test_int_text_equals_pandas_text(values: list[int | None]) -> None:
    nullable = pd.Series(values, dtype="Int64")
    assert (
        E._int_text(nullable).tolist()
        == nullable.astype("string").to_numpy(dtype=object, na_value="").tolist()
    )
    plain = nullable.fillna(0).astype(np.int64)
    assert E._int_text(plain).tolist() == [str(int(v)) for v in plain]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["usage", "meters", "Usage", "é"]), _TEXT, _TEXT), max_size=12
    )
)
def test_quarantine_sort_equals_a_stable_sort_values(rows: list[tuple[str, str, str]]) -> None:
    frame = pd.DataFrame(rows, columns=["table", "record_key", "rule"], dtype="string")
    order = E._text_key_order([frame[c] for c in ("table", "record_key", "rule")])
    want = frame.sort_values(["table", "record_key", "rule"], kind="mergesort").index
    assert order is not None and order.tolist() == want.tolist()
    with_na = frame.assign(rule=pd.array([None] * len(frame), dtype="string"))
    assert not len(frame) or E._text_key_order([with_na["rule"]]) is None
