"""The HTML report in a real browser: headless Chromium renders the charts from the sample log.

Needs `chromium` (`apt-get install -y chromium`; `make test` installs it); skipped with that
hint when no Chromium binary is on the machine.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from pathlib import Path

import duckdb
import pytest

from refstream.reports.html_report import write_html_report
from tests.unit.reports.sample_log import build_sample_db

pytestmark = pytest.mark.integration

BROWSER_TIMEOUT_S = 120
WINDOW = (1200, 2400)
# A blank page of the same size compresses to a few kilobytes; the report, with its cards,
# charts and tables, to well over ten times that.
MIN_SIZE_RATIO_TO_BLANK = 10
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def chromium_binary() -> str:
    for name in ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no Chromium: apt-get update && apt-get install -y chromium")


def run_chromium(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        chromium_binary(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={profile}", "--hide-scrollbars", *args,
    ]
    result = subprocess.run(command, capture_output=True, text=True,
                            timeout=BROWSER_TIMEOUT_S, check=False)
    assert result.returncode == 0, f"chromium failed ({result.returncode}): {result.stderr}"
    return result


@pytest.fixture(scope="module")
def report_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("html-report")
    db = build_sample_db(folder / "sample.duckdb")
    conn = duckdb.connect(str(db), read_only=True)
    try:
        return write_html_report(conn, folder / "report.html")
    finally:
        conn.close()


def svg_element(dom: str, chart_id: str) -> str:
    match = re.search(rf'<svg[^>]*\bid="{chart_id}"[^>]*>.*?</svg>', dom, re.S)
    assert match, f"{chart_id} missing from the rendered DOM"
    assert 'class="chart"' in match.group(0)
    return match.group(0)


def test_rendered_dom_has_every_chart_with_drawn_shapes(report_file: Path,
                                                        tmp_path: Path) -> None:
    dom = run_chromium(tmp_path / "profile", "--dump-dom", report_file.as_uri()).stdout
    funnel = svg_element(dom, "chart-funnel")
    widths = [float(w) for w in re.findall(r'<rect class="bar"[^>]*\bwidth="([\d.]+)"', funnel)]
    assert len(widths) == 6 and all(w > 0 for w in widths)  # clicks to paid; shares as text
    assert max(widths) > 10 * min(widths)  # 37 clicks against 0 paid
    cohorts = svg_element(dom, "chart-cohorts")
    paths = re.findall(r'<path class="line"[^>]*\bd="([^"]+)"', cohorts)
    assert paths and all(d.count("L") >= 1 for d in paths)
    daily = svg_element(dom, "chart-daily")
    heights = [float(h) for h in re.findall(r'<rect class="bar"[^>]*\bheight="([\d.]+)"',
                                            daily)]
    # Days with a referral decision: 3, 4, 5, 7, 8, 10 and 11 March.
    assert sum(1 for h in heights if h > 0) == 7
    assert re.search(r'class="line series-rewards_due"[^>]*\bd="M', daily)
    svg_element(dom, "chart-liability")
    assert 'id="table-scorecard"' in dom


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk comes first
    return width, height


def test_screenshot_is_a_real_picture(report_file: Path, tmp_path: Path) -> None:
    size = f"--window-size={WINDOW[0]},{WINDOW[1]}"
    shot = tmp_path / "report.png"
    run_chromium(tmp_path / "profile", size, f"--screenshot={shot}", report_file.as_uri())
    blank_page = tmp_path / "blank.html"
    blank_page.write_text("<!DOCTYPE html><html><body></body></html>", encoding="utf-8")
    blank = tmp_path / "blank.png"
    run_chromium(tmp_path / "profile", size, f"--screenshot={blank}", blank_page.as_uri())
    assert png_size(shot) == WINDOW
    assert shot.stat().st_size > MIN_SIZE_RATIO_TO_BLANK * blank.stat().st_size


# Reports a wide element per card into the DOM, so --dump-dom can read the layout Chromium
# computed: every table must fit inside its card (the section), not run past its border.
MEASURE_SCRIPT = """<script>
window.addEventListener('load', () => {
  const wide = [];
  for (const section of document.querySelectorAll('section')) {
    const box = section.getBoundingClientRect();
    for (const table of section.querySelectorAll('table')) {
      const right = table.getBoundingClientRect().right;
      if (right > box.right - 1) wide.push(`${table.id}:${Math.round(right - box.right)}px`);
    }
  }
  document.body.setAttribute('data-overflow', wide.join(' ') || 'none');
});
</script>"""


@pytest.mark.parametrize("width", [1200, 900])
def test_every_table_fits_its_card(report_file: Path, tmp_path: Path, width: int) -> None:
    measured = tmp_path / "measured.html"
    measured.write_text(report_file.read_text(encoding="utf-8").replace(
        "</body>", MEASURE_SCRIPT + "</body>"), encoding="utf-8")
    dom = run_chromium(tmp_path / "profile", f"--window-size={width},2400",
                       "--virtual-time-budget=2000", "--dump-dom", measured.as_uri()).stdout
    found = re.search(r'<body[^>]*data-overflow="([^"]*)"', dom)
    assert found, "the layout was not measured"
    assert found.group(1) == "none", f"tables wider than their card: {found.group(1)}"
    shot = tmp_path / "report.png"
    run_chromium(tmp_path / "profile", f"--window-size={width},2400", f"--screenshot={shot}",
                 report_file.as_uri())
    assert png_size(shot) == (width, 2400)
