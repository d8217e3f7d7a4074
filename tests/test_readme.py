"""The README's first example runs as written against the sandbox provider."""

from __future__ import annotations

import os
import re
from pathlib import Path
from unittest import mock

import pandas as pd
import pytest

from scaler_workbench.sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[1]


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_opens_with_the_two_commands() -> None:
    head = "\n".join((ROOT / "README.md").read_text(encoding="utf-8").splitlines()[:15])
    assert "make demo" in head and "make test" in head


def test_readme_example_runs_as_written_on_a_fresh_clone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No variable set beforehand (a fresh shell): the example starts the sandbox itself."""
    for name in ("SCALER_SANDBOX_URL", "SANDBOX_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(ROOT)
    (block,) = _python_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    out = tmp_path / "acme"
    assert block.count('"out/acme"') == 1
    code = block.replace('"out/acme"', repr(str(out)))  # the only change: where files go

    namespace: dict[str, object] = {}
    with mock.patch.dict(os.environ):  # the example sets the sandbox's variables: undo after
        exec(compile(code, "README.md", "exec"), namespace)  # our own README

    sandbox = namespace["sandbox"]
    assert isinstance(sandbox, Sandbox) and not sandbox.running  # stopped by its with block
    usage = pd.read_csv(out / "usage.csv")
    truth = sandbox.ground_truth()
    assert len(usage) == len(truth) > 0
    # each meter's energy: consumption, or production for a solar meter (its consumption is 0)
    usage["energy"] = usage["consumption"] + usage["production"].fillna(0.0)
    truth["energy"] = truth["consumption"] + truth["production"].fillna(0.0)
    exported = usage.groupby("meter_external_id")["energy"].sum().sort_index()
    expected = truth.groupby("meter_id")["energy"].sum().sort_index()
    assert list(exported.index) == list(expected.index)
    assert ((exported.to_numpy() - expected.to_numpy()) / expected.to_numpy()).max() < 1e-9
