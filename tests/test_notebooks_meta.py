"""The committed notebooks: numbered, outputs cleared, a story in markdown, no secrets, glue only.

The notebooks themselves are executed by ``pytest notebooks --nbval-lax`` (see the Makefile);
this file checks how they are stored.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))

#: Literal credentials a notebook must never contain (they come from the environment).
_SECRETISH = re.compile(
    r"(?i)(api[_-]?key|client_secret|password|token)\s*=\s*['\"][^'\"]{6,}['\"]"
)


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_notebooks_exist_and_are_numbered() -> None:
    if not NOTEBOOKS:
        pytest.skip("no notebooks committed yet")
    numbers = [p.name[:2] for p in NOTEBOOKS]
    assert all(re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", p.name) for p in NOTEBOOKS), numbers
    assert len(set(numbers)) == len(numbers)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_stored_clean(path: Path) -> None:
    nb = _load(path)
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"{path.name}: outputs not cleared"
            assert cell.get("execution_count") is None, f"{path.name}: execution count stored"
    assert path.stat().st_size < 60_000, "keep notebooks small: logic belongs in the library"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_tells_a_story_and_checks_facts(path: Path) -> None:
    nb = _load(path)
    cells = nb["cells"]
    assert cells[0]["cell_type"] == "markdown" and "".join(cells[0]["source"]).startswith("# ")
    markdown = [c for c in cells if c["cell_type"] == "markdown"]
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    assert len(markdown) >= len(code) // 2, "explain the why between the code cells"
    assert sum("assert " in src for src in code) >= 2, "assertion cells make nbval meaningful"
    for src in code:
        assert not _SECRETISH.search(src), f"{path.name}: literal credential in a cell"
        assert "print(os.environ" not in src and "os.environ[" not in src.replace(
            "os.environ.update", ""
        ), f"{path.name}: never read or echo credentials in a notebook"
        # glue only: no function or class definitions in notebooks
        assert not re.search(r"^\s*(def|class) ", src, flags=re.M), f"{path.name}: logic in cell"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_writes_outside_the_repo(path: Path) -> None:
    code = "\n".join("".join(c["source"]) for c in _load(path)["cells"] if c["cell_type"] == "code")
    # outputs go to a temporary folder or out/ (gitignored)
    assert "tempfile" in code or "out/" in code or "OUT" in code, path.name
