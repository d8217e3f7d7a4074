"""The hole findings (``missing_day`` / ``missing_intervals``) equal their reference.

``validation._hole_findings`` builds the reason texts only for the holes a finding names (the
first ``_HOLES_SHOWN`` of each period) and counts the rest with numpy; the reference below is
the implementation it replaced (texts for every hole, then a groupby), kept verbatim. Both
must give the same quarantine rows, reasons included, on the benchmark's synthetic provider
(missing single intervals, missing days, periods with more holes than are named).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.data import generate  # noqa: E402
from benchmarks.package import make_profile  # noqa: E402
from scaler_workbench import validation  # noqa: E402
from scaler_workbench._time import NS_PER_DAY, local_ns  # noqa: E402
from scaler_workbench.pipeline import run_pipeline  # noqa: E402


def _hole_findings_reference(
    work: pd.DataFrame,
    found: validation._Findings,
    ctx: validation.ValidationContext,
    valid: np.ndarray,
    s_ns: np.ndarray,
    e_ns: np.ndarray,
) -> None:
    """``missing_day`` / ``missing_intervals``: each interior hole the usage stage counted
    (``ctx.holes``) is a finding on the usage period (a day or longer) that contains its
    local date, naming the local dates and times."""
    holes = ctx.holes
    rules = {k: ctx.rule(k, "usage") for k in ("missing_day", "missing_intervals")}
    for r in rules.values():
        if r is not None:
            found.ran_rule(r)
    if holes is None or not len(holes) or not any(rules.values()):
        return
    cand = np.flatnonzero(valid & (e_ns - s_ns >= NS_PER_DAY))
    if not cand.size:
        return
    zones = (
        work["timezone"].astype(object).to_numpy()[cand]
        if "timezone" in work.columns
        else np.full(cand.size, None, dtype=object)
    )
    zones = np.where(pd.isna(zones), ctx.timezone, zones).astype(object)
    lo = np.empty(cand.size, dtype=np.int64)
    hi = np.empty(cand.size, dtype=np.int64)
    for zone in pd.unique(zones):
        m = zones == zone
        lo[m] = local_ns(s_ns[cand][m], str(zone))
        hi[m] = local_ns(e_ns[cand][m], str(zone))
    # each hole's period: rows sorted by (meter, first local day); a hole belongs to the last
    # row of its meter starting on or before its day, when that row reaches the day
    codes_all, _ = pd.factorize(
        np.r_[
            work["meter_id"].astype(str).to_numpy(dtype=object)[cand],
            holes["meter_id"].astype(str).to_numpy(dtype=object),
        ]
    )
    r_code, h_code = codes_all[: cand.size].astype(np.int64), codes_all[cand.size :]
    r_lo, r_hi = lo // NS_PER_DAY, (hi - 1) // NS_PER_DAY
    h_day = (
        pd.to_datetime(holes["date"].astype(str), format="%Y-%m-%d")
        .to_numpy(dtype="datetime64[D]")
        .astype(np.int64)
    )
    span = 1 << 24  # days since 1970 fit well below 2**24
    r_key = r_code * span + (r_lo + span // 2)
    order = np.argsort(r_key, kind="stable")
    at = np.searchsorted(
        r_key[order], h_code.astype(np.int64) * span + (h_day + span // 2), "right"
    )
    at -= 1
    ok = at >= 0
    row = order[np.where(ok, at, 0)]
    ok &= (r_code[row] == h_code) & (h_day <= r_hi[row])
    hit = holes[ok].assign(pos=cand[row[ok]])
    for kind, name in (("day", "missing_day"), ("intervals", "missing_intervals")):
        r = rules[name]
        part = hit[hit["kind"].astype(str) == kind]
        if r is None or not len(part):
            continue
        n_missing = part["missing_intervals"].astype(str)
        if kind == "day":
            text = part["date"].astype(str) + " (" + n_missing + ")"
            lead = "no data on local day(s) "
        else:
            text = (
                part["date"].astype(str)
                + " "
                + part["start_local"].astype(str).str[11:16]
                + "-"
                + part["end_local"].astype(str).str[11:16].replace("00:00", "24:00")
                + " ("
                + n_missing
                + ")"
            )
            lead = "missing intervals, local "
        pos = part["pos"].to_numpy()
        frame = pd.DataFrame(
            {"pos": pos, "text": text.to_numpy(), "n": part["missing_intervals"].to_numpy(np.int64)}
        )
        grouped = frame.groupby("pos", sort=True)
        first = frame[grouped.cumcount().to_numpy() < validation._HOLES_SHOWN].sort_values(
            "pos", kind="stable"
        )
        # join each period's texts: object-array string sums over runs (no Python per group)
        fp = first["pos"].to_numpy()
        starts = np.flatnonzero(np.r_[True, fp[1:] != fp[:-1]])
        parts = first["text"].to_numpy(dtype=object).copy()
        lead_sep = np.ones(len(parts), dtype=bool)
        lead_sep[starts] = False
        parts[lead_sep] = ", " + parts[lead_sep]
        shown = pd.Series(np.add.reduceat(parts, starts), index=fp[starts])
        count = grouped.size()
        total = grouped["n"].sum()
        more = np.where(
            count > validation._HOLES_SHOWN,
            " and "
            + (count - validation._HOLES_SHOWN).astype(str)
            + " more ("
            + total.astype(str)
            + " intervals in all)",
            "",
        )
        reasons = lead + shown + more + " [missing intervals in brackets]"
        found.add(r, shown.index.to_numpy(dtype=np.int64), reasons.tolist())


@pytest.mark.parametrize("meters, seed", [(3, 1), (5, 7)])
def test_hole_findings_equal_the_reference(
    monkeypatch: pytest.MonkeyPatch, meters: int, seed: int
) -> None:
    profile = make_profile(conflict="last")
    data = generate(meters, seed=seed, conflict="last")
    gone = {("M00000", "2023-03-15"), ("M00000", "2023-03-16"), ("M00001", "2023-11-20")}
    raw = {
        **data.raw,  # whole local days missing too (GMT months: the UTC day is the local day)
        "intervals": [
            r
            for r in data.raw["intervals"]
            if (r["_parent"]["meter_id"], r["interval_start"][:10]) not in gone
        ],
    }
    tables = run_pipeline(profile, raw)
    new = validation.validate_tables(tables, profile).quarantined
    monkeypatch.setattr(validation, "_hole_findings", _hole_findings_reference)
    ref = validation.validate_tables(tables, profile).quarantined
    pd.testing.assert_frame_equal(new, ref)
    reasons = new["reason"].astype(str)
    # not vacuous: both kinds of hole, and periods with more holes than are named
    assert reasons.str.startswith("no data on local day(s) ").any()
    assert reasons.str.startswith("missing intervals, local ").any()
    assert reasons.str.contains(r" and \d+ more \(\d+ intervals in all\)").any()
    named = reasons[reasons.str.startswith("missing intervals, local ")]
    assert named.str.count(r"\(\d+\), |\(\d+\) and | \(\d+\) \[").max() <= validation._HOLES_SHOWN


def test_hole_texts_equal_the_pandas_expression() -> None:
    """``_hole_texts`` writes one text per distinct (date, start, end, count) and takes it back
    to every hole; the texts equal the pandas expression it replaced, repeats and all."""
    rng = np.random.default_rng(5)
    n = 400
    day = rng.integers(1, 4, n)
    hour = rng.integers(0, 24, n)
    minute = rng.choice([0, 30], n)
    start = [
        f"2023-03-{d:02d} {h:02d}:{m:02d}:00+01:00"
        for d, h, m in zip(day, hour, minute, strict=True)
    ]
    end_h = np.where(minute == 30, (hour + 1) % 24, hour)
    end_m = np.where(minute == 30, 0, 30)
    end = [
        f"2023-03-{d:02d} {h:02d}:{m:02d}:00+01:00"
        for d, h, m in zip(day, end_h, end_m, strict=True)
    ]
    holes = pd.DataFrame(
        {
            "date": pd.array([f"2023-03-{d:02d}" for d in day], dtype="string"),
            "start_local": pd.array(start, dtype="string"),
            "end_local": pd.array(end, dtype="string"),
            "missing_intervals": pd.array(rng.choice([1, 2, 48], n), dtype="Int64"),
        }
    )
    at = rng.permutation(n)[:300]
    text, lead = validation._hole_texts(holes, at, "intervals")
    part = holes.iloc[at]
    ref = (
        part["date"].astype(str)
        + " "
        + part["start_local"].astype(str).str[11:16]
        + "-"
        + part["end_local"].astype(str).str[11:16].replace("00:00", "24:00")
        + " ("
        + part["missing_intervals"].astype(str)
        + ")"
    )
    assert lead == "missing intervals, local "
    assert text.tolist() == ref.tolist()
    assert len(set(text.tolist())) < len(text)  # not vacuous: repeated holes share a text
    assert any("-24:00 (" in t for t in text.tolist())  # an end at midnight
