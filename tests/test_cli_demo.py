"""``make demo`` run again after the package's sandbox profile changed (a newer release).

The demo's folder keeps the state of the last demo. When the profile's mapping, units or
validation changed since, a sync refuses a date-limited run (exit 2: history computed two ways);
the demo, whose folder is its own, keeps the old state aside under a new name and starts afresh.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from scaler_workbench import cli

DEMO_PROFILE = Path(__file__).resolve().parent.parent / "mappings" / "sandbox" / "profile.toml"


def test_demo_after_a_profile_change_keeps_the_old_state_aside_and_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out), "--quiet"]) == 0
    first = capsys.readouterr()
    assert "OK: 25 meters" in first.out
    text = DEMO_PROFILE.read_text(encoding="utf-8")
    anchor = 'tons = "tonne"\n'
    assert anchor in text
    changed = tmp_path / "profile.toml"  # a units change: the fingerprint differs
    changed.write_text(text.replace(anchor, anchor + 'kilolitres = "kL"\n'), encoding="utf-8")
    code = cli.main(["demo", "--out", str(out), "--quiet", "--profile", str(changed)])
    second = capsys.readouterr()
    assert code == 0, second.err
    assert "note: the demo profile changed since the last demo" in second.err
    assert "OK: 25 meters" in second.out
    state = out / "state"
    kept = sorted(p.name for p in state.glob("sandbox.before-*.sqlite"))
    assert len(kept) == 1 and (state / "sandbox.sqlite").exists()
    assert kept[0] in second.err
