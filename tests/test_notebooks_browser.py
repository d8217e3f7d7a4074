"""The rendered notebooks in a real browser: headless Chromium opens each HTML page.

The notebooks executed once per session (tests/_notebooks.py) are rendered with nbconvert, as
``make docs`` does; Chromium (Debian's ``chromium`` package, installed by .ci/run) loads each
page with a small script that reports, after load, how many images decoded and how many error
outputs the page holds, and takes a screenshot of it in the same browser start (to
docs/_build/screenshots/, gitignored).
Without Chromium the test is skipped, except on CI (``CI=true``), where it must run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from _notebooks import NOTEBOOKS, ROOT, executed, own_cells

from scaler_workbench.notebook import render_html

SCREENSHOTS = ROOT / "docs" / "_build" / "screenshots"
_PROBE = """
<style>#workbench-probe { display: none; }</style>
<script>
window.addEventListener("load", () => {
  const images = Array.from(document.querySelectorAll("img"));
  const decoded = images.filter((i) => i.complete && i.naturalWidth > 0).length;
  const errors = document.querySelectorAll(
    '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]').length;
  const text = document.body.innerText;
  const out = document.createElement("pre");
  out.id = "workbench-probe";
  out.textContent = JSON.stringify({
    images: images.length,
    decoded: decoded,
    errors: errors,
    tracebacks: (text.match(/Traceback \\(most recent call last\\)/g) || []).length,
    figure_text: (text.match(/<(Workbench)?Figure size/g) || []).length,
    snapshots: document.querySelectorAll(".scaler-workbench-snapshot").length,
    raw_widgets: (text.match(/VBox\\(children=/g) || []).length,
  });
  document.body.appendChild(out);
});
</script>
"""


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("CI=true but no chromium: .ci/run installs Debian's chromium package")
    pytest.skip("headless Chromium is not installed (apt-get install chromium); CI runs this")


def _run(chromium: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_rendered_notebook_in_chromium(path: Path, tmp_path: Path) -> None:
    chromium = _chromium()
    run = executed()[path.stem]
    page = render_html(run.notebook, tmp_path / f"{path.stem}.html")
    pngs = sum("image/png" in o.get("data", {}) for c in own_cells(run.notebook) for o in c.outputs)
    widgets = sum(
        "application/vnd.jupyter.widget-view+json" in o.get("data", {})
        for c in own_cells(run.notebook)
        for o in c.outputs
    )
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", _PROBE + "</body>"))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOTS / f"{path.stem}.png"
    shot.unlink(missing_ok=True)
    # one browser start per page: the DOM after the probe ran, and the screenshot (the probe's
    # line is hidden, so the picture is the page's)
    dom = _run(
        chromium,
        "--virtual-time-budget=10000",
        "--window-size=1280,5000",
        f"--screenshot={shot}",
        "--dump-dom",
        probe.as_uri(),
    )
    found = re.search(r'<pre id="workbench-probe">(.*?)</pre>', dom.stdout, flags=re.S)
    assert found, dom.stderr[-2000:]
    seen = json.loads(found.group(1).replace("&quot;", '"'))
    assert seen["images"] == pngs and seen["decoded"] == pngs, seen  # every plot decoded
    assert seen["errors"] == 0 and seen["tracebacks"] == 0, seen
    assert seen["figure_text"] == 0 or seen["images"] > 0, seen
    assert seen["raw_widgets"] == 0, seen  # widgets show their snapshot, not their repr
    assert seen["snapshots"] >= widgets, seen
    assert shot.is_file() and shot.stat().st_size > 20_000, dom.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
