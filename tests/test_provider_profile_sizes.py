"""docs/providers.md "Profile sizes": each shipped profile's non-comment line count, recomputed.

The rule (stated in the doc): lines of ``mappings/<provider>/profile.toml`` that are neither
blank nor comment-only. The table must list every shipped profile with its current count.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "providers.md"


def non_comment_lines(path: Path) -> int:
    """Lines that are neither blank nor comment-only (first non-blank character ``#``)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return sum(1 for line in lines if line.strip() and not line.lstrip().startswith("#"))


def documented() -> dict[str, int]:
    text = DOC.read_text(encoding="utf-8")
    block = text.split("<!-- profile-sizes: start -->")[1].split("<!-- profile-sizes: end -->")[0]
    rows = re.findall(r"^\| `mappings/([^/`]+)/profile\.toml` \| (\d+) \|$", block, re.M)
    assert rows, "no rows in the profile-sizes table"
    return {name: int(n) for name, n in rows}


def test_profile_sizes_in_the_doc_are_the_files_counts() -> None:
    shipped = {p.parent.name: non_comment_lines(p) for p in ROOT.glob("mappings/*/profile.toml")}
    assert len(shipped) >= 6
    assert documented() == shipped


def test_the_counting_rule_skips_blank_and_comment_only_lines(tmp_path: Path) -> None:
    f = tmp_path / "profile.toml"
    f.write_text('# head\n\n[a]\n  # indented comment\nx = 1  # trailing\n   \ny = "#"\n')
    assert non_comment_lines(f) == 3  # [a], x = 1, y = "#"


def test_issue_15_profiles_got_shorter() -> None:
    """Octopus, Portfolio Manager and Green Button are shorter than before issue 15 item 12
    (123, 131, 119); none of the others grew past its count then (EcoStruxure gained its
    projects-per-site resource and partner-sandbox environment, item 14, and lost restated
    defaults: still 176)."""
    before = {
        "octopus": 123,
        "portfolio_manager": 131,
        "greenbutton": 119,
        "ecostruxure": 176,
        "metercloud": 90,
        "sandbox": 170,
    }
    now = documented()
    for name in ("octopus", "portfolio_manager", "greenbutton"):
        assert now[name] < before[name], name
    for name, n in before.items():
        assert now[name] <= n, name
