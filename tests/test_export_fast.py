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
