"""The README's first example runs as written against the sandbox provider."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_opens_with_the_two_commands() -> None:
    head = "\n".join((ROOT / "README.md").read_text(encoding="utf-8").splitlines()[:15])
    assert "make demo" in head and "make test" in head


def test_readme_example_runs_against_the_sandbox(
    make_sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = make_sandbox(sites=2, meters_per_site=3, end="2024-03-01")
    for name, value in sandbox.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(ROOT)
    (block,) = _python_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    out = tmp_path / "acme"
    code = block.replace('"out/acme"', repr(str(out)))

    namespace: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), namespace)  # our own README

    usage = pd.read_csv(out / "usage.csv")
    truth = sandbox.ground_truth()
    assert len(usage) == len(truth) > 0
    exported = usage.groupby("meter_external_id")["consumption"].sum().sort_index()
    expected = truth.groupby("meter_id")["consumption"].sum().sort_index()
    assert list(exported.index) == list(expected.index)
    assert ((exported.to_numpy() - expected.to_numpy()) / expected.to_numpy()).max() < 1e-9
