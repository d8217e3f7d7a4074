"""[mapping.policy] overlaps / overlap_tolerance_days / report_gaps do what docs/mapping.md says."""

from __future__ import annotations

import pandas as pd
import pytest

from scaler_workbench.exceptions import MappingError
from scaler_workbench.profile import Profile
from scaler_workbench.schema import Tables
from scaler_workbench.usage import _overlap_losers, period_report, process_usage

LONDON = "Europe/London"
PROFILE = Profile.from_dict(
    {
        "provider": {"name": "t", "timezone": LONDON},
        "environments": {"x": {"base_url": "http://127.0.0.1"}},
    }
)


def bills(periods, meter="M1"):
    return pd.DataFrame(
        {
            "meter_id": pd.Categorical([meter] * len(periods)),
            "start": [pd.Timestamp(a, tz=LONDON).tz_convert("UTC") for a, _, _ in periods],
            "end": [pd.Timestamp(b, tz=LONDON).tz_convert("UTC") for _, b, _ in periods],
            "consumption": [v for _, _, v in periods],
            "timezone": LONDON,
            "source": pd.Categorical(["bills"] * len(periods)),
            "_row": range(len(periods)),
        }
    )


def mapping(**policy):
    return {
        "usage": {"bills": {"resource": "b", "kind": "consumption", "prorate": "none"}},
        "policy": policy,
    }


def test_overlaps_quarantine_sets_aside_the_later_period_and_keeps_it_out_of_the_totals():
    df = bills(
        [
            ("2024-01-01", "2024-02-01", 31.0),
            ("2024-01-20", "2024-03-01", 99.0),  # 12 days over January: set aside
            ("2024-03-01", "2024-04-01", 31.0),
        ]
    )
    out = process_usage(Tables(usage=df), PROFILE, mapping=mapping(overlaps="quarantine"))
    assert out.usage["consumption"].tolist() == [31.0, 31.0]
    q = out.quarantine
    aside = q[q["rule"] == "overlap"]
    assert len(aside) == 1 and aside["severity"].iloc[0] == "error"
    assert (
        "2024-01-20" in aside["record_key"].iloc[0]
        and "earlier period is kept" in (aside["reason"].iloc[0])
    )
    # what is left has a gap where the later bill was: reported, never invented
    assert (q["rule"] == "period_gap").sum() == 1
    assert not (q["rule"] == "period_overlap").any()


def test_overlaps_flag_is_the_default_and_only_reports():
    df = bills([("2024-01-01", "2024-02-01", 31.0), ("2024-01-20", "2024-03-01", 99.0)])
    out = process_usage(Tables(usage=df), PROFILE, mapping=mapping())
    assert out.usage["consumption"].tolist() == [31.0, 99.0]
    flagged = out.quarantine[out.quarantine["rule"] == "period_overlap"]
    assert len(flagged) == 1 and flagged["severity"].iloc[0] == "error"


def test_overlap_chain_keeps_a_period_that_only_overlaps_a_set_aside_one():
    df = bills(
        [
            ("2024-01-01", "2024-01-10", 1.0),
            ("2024-01-05", "2024-01-20", 1.0),  # 5 days over the first: set aside
            ("2024-01-12", "2024-01-30", 1.0),  # overlaps only the set-aside one: kept
            ("2024-01-25", "2024-02-10", 1.0),  # 5 days over the kept third: set aside
        ]
    )
    assert _overlap_losers(df, 1.0).tolist() == [False, True, False, True]
    # rows in any order give the same decision
    shuffled = df.iloc[[3, 1, 0, 2]]
    assert _overlap_losers(shuffled, 1.0).tolist() == [True, True, False, False]


def test_overlap_tolerance_days_sets_warning_versus_error_and_what_is_set_aside():
    df = bills([("2024-01-01", "2024-02-01", 31.0), ("2024-01-29", "2024-03-01", 29.0)])
    assert period_report(df)["severity"].tolist() == ["error"]  # 3 days > 1
    assert period_report(df, tolerance_days=3)["severity"].tolist() == ["warning"]
    out = process_usage(
        Tables(usage=df),
        PROFILE,
        mapping=mapping(overlaps="quarantine", overlap_tolerance_days=3),
    )
    assert len(out.usage) == 2  # within the tolerance: nothing set aside
    flagged = out.quarantine[out.quarantine["rule"] == "period_overlap"]
    assert flagged["severity"].tolist() == ["warning"]


def test_report_gaps_false_drops_gap_findings_only():
    df = bills(
        [
            ("2024-01-01", "2024-02-01", 1.0),
            ("2024-02-05", "2024-03-01", 1.0),  # 4-day gap
            ("2024-02-20", "2024-03-10", 1.0),  # overlap
        ]
    )
    on = process_usage(Tables(usage=df), PROFILE, mapping=mapping(report_gaps=True))
    off = process_usage(Tables(usage=df), PROFILE, mapping=mapping(report_gaps=False))
    assert (on.quarantine["rule"] == "period_gap").sum() == 1
    assert (off.quarantine["rule"] == "period_gap").sum() == 0
    assert (off.quarantine["rule"] == "period_overlap").sum() == 1
    assert sorted(period_report(df, gaps=False)["issue"]) == ["overlap"]


@pytest.mark.parametrize("policy", [{"overlaps": "drop"}, {"overlap_tolerance_days": "a week"}])
def test_bad_overlap_policy_is_a_mapping_error(policy):
    with pytest.raises(MappingError, match=r"mapping\.policy"):
        process_usage(
            Tables(usage=bills([("2024-01-01", "2024-02-01", 1.0)])),
            PROFILE,
            mapping=mapping(**policy),
        )
