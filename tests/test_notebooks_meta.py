"""The committed notebooks: numbered, outputs cleared, a story in markdown, no secrets, glue only.

The notebooks are executed once per test session by tests/test_notebooks_run.py (which holds
the asserts on what they show; ``make test`` no longer runs them a second time through
``pytest notebooks --nbval-lax``); this file checks how they are stored: a papermill-style
``parameters`` cell first, one ``start_session`` call, no asserts, no nbval markers.
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
    # the checks live in tests/test_notebooks_run.py, which reads the executed outputs: a
    # notebook is the analyst's workflow, not a test (issue 16)
    assert not any(re.search(r"^\s*assert ", src, flags=re.M) for src in code), path.name
    for src in code:
        assert not _SECRETISH.search(src), f"{path.name}: literal credential in a cell"
        assert "print(os.environ" not in src and "os.environ[" not in src.replace(
            "os.environ.update", ""
        ), f"{path.name}: never read or echo credentials in a notebook"
        # glue only: no function or class definitions in notebooks
        assert not re.search(r"^\s*(def|class) ", src, flags=re.M), f"{path.name}: logic in cell"


#: nbval's cell markers (comments and tags): make test runs nbval in lax mode, where output
#: comparisons are off; checks of outputs belong in tests/test_notebooks_run.py, in one place.
_NBVAL_MARKERS = re.compile(r"^\s*#\s*(NBVAL_\w+|PYTEST_VALIDATE_IGNORE_OUTPUT)\b", flags=re.M)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_has_no_nbval_markers(path: Path) -> None:
    for cell in _load(path)["cells"]:
        tags = cell.get("metadata", {}).get("tags", [])
        assert not any(t.startswith("nbval-") or t == "raises-exception" for t in tags), tags
        found = _NBVAL_MARKERS.search("".join(cell["source"]))
        assert not found, (
            f"{path.name}: {found and found.group(0)}: put the check in tests/test_notebooks_run.py"
        )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_starts_with_a_parameters_cell_and_a_session(path: Path) -> None:
    cells = _load(path)["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    first = code[0]
    assert "parameters" in first.get("metadata", {}).get("tags", []), "papermill parameters cell"
    names = re.findall(r"^([A-Z_]+) = ", "".join(first["source"]), flags=re.M)
    assert names == ["PROVIDER", "ENVIRONMENT", "WORKDIR", "OUT"], names
    assert 'WORKDIR = f"../mappings/{PROVIDER}"' in "".join(first["source"])
    sources = ["".join(c["source"]) for c in code]
    assert sum("start_session(" in src for src in sources) == 1, "one library session helper"
    assert not any("Sandbox(" in src or "tempfile" in src for src in sources), "no ad-hoc setup"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_writes_outside_the_repo(path: Path) -> None:
    code = "\n".join("".join(c["source"]) for c in _load(path)["cells"] if c["cell_type"] == "code")
    # outputs go to OUT, under out/ (gitignored) unless WORKBENCH_OUT points elsewhere
    assert re.search(r'^OUT = "\.\./out/notebooks/\d\d"', code, flags=re.M), path.name
    assert "out=OUT" in code, path.name  # ... handed to start_session
