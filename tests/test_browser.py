"""The HTML report in a real browser: Debian's headless Chromium (installed by .ci/run) renders it
to a screenshot, and the DOM after layout shows the plots' text, with no two labels of one chart
overlapping. Skipped, with the reason, where no headless Chromium is installed."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from nndiag.cli import app

from conftest import SAMPLES, StrictRunner

BROWSER = next(
    (b for b in ("chromium-headless-shell", "chromium", "google-chrome") if shutil.which(b)), None
)
pytestmark = pytest.mark.skipif(
    BROWSER is None, reason="no headless Chromium (apt-get install chromium-headless-shell)"
)
FLAGS = ["--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1100,6000"]
# After layout, every <text> of every chart: the pairs whose boxes intersect, into the DOM.
OVERLAPS = """<script>
window.addEventListener("load", () => {
  const found = [];
  for (const svg of document.querySelectorAll("svg")) {
    const boxes = [...svg.querySelectorAll("text")].map(t => [t.textContent, t.getBoundingClientRect()]);
    boxes.forEach(([a, p], i) => boxes.slice(i + 1).forEach(([b, q]) => {
      if (p.left < q.right && q.left < p.right && p.top < q.bottom && q.top < p.bottom) found.push([a, b]);
    }));
  }
  document.body.setAttribute("data-overlaps", JSON.stringify(found));
});
</script>"""


@pytest.fixture(scope="module")
def report_html(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("browser")
    page = folder / "report.html"
    args = ["check", str(SAMPLES / "mlp.py"), "--html", str(page), "--quiet", "--fail-on", "never",
            "--probe", "gradients", "--probe", "lr-range", "--probe", "overfit"]  # fmt: skip
    assert StrictRunner().invoke(app, args).exit_code == 0
    return page


def _chromium(*args: str) -> str:
    assert BROWSER is not None
    done = subprocess.run([BROWSER, *FLAGS, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_the_html_report_renders_to_a_screenshot(report_html: Path) -> None:
    shot = report_html.with_suffix(".png")
    _chromium(f"--screenshot={shot}", report_html.as_uri())
    header = shot.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", header[16:24])
    assert (width, height) == (1100, 6000)
    assert shot.stat().st_size > 20_000  # a page with text and charts, not a blank one


def test_the_charts_text_is_laid_out_without_overlaps(report_html: Path) -> None:
    probed = report_html.with_name("probed.html")
    probed.write_text(report_html.read_text().replace("</body>", OVERLAPS + "</body>"))
    dom = _chromium("--dump-dom", probed.as_uri())
    for text in ("lr-range · curve", "Learning rate", "suggested", "overfit · curve", "Step",
                 "gradients · depth", "0.weight"):  # fmt: skip
        assert text in dom, text
    (overlaps,) = re.findall(r'data-overlaps="([^"]*)"', dom)
    assert json.loads(overlaps.replace("&quot;", '"')) == []
