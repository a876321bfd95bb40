"""The HTML report of a real small run, opened in headless Chromium: the DOM it builds has every
scenario, chart and table, nothing is fetched from elsewhere, and the screenshots (light and dark
theme) are kept in test-artifacts/ for a person to look at."""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest

from iolab import results
from iolab.report import charts, html
from iolab.report.tables import all_tables
from iolab.results import RunResult
from tests.conftest import REPO, run_cli


def _chromium() -> str | None:
    found = shutil.which("chromium")
    return found or ("/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None)


CHROMIUM = _chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium is not installed and could not be: scripts/test-deps.sh (make test-deps) installs "
           "Debian's chromium with apt-get when run as root",
)
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--mute-audio")
ARTIFACTS = REPO / "test-artifacts"
WIDTH, HEIGHT = 1280, 2400
RUN_CHARTS = ("latency-spectrum", "os-cost", "throughput", "time-series", "verdicts")


def chromium(tmp_path: Path, name: str, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """One headless Chromium with a fresh profile; its whole process group is killed afterwards."""
    assert CHROMIUM is not None
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / ('profile-' + name)}", *args]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"chromium ({name}) did not finish in {timeout} s")
    try:  # helpers (crashpad) can outlive the browser: they are in its group
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@dataclass(frozen=True)
class Report:
    result: RunResult
    page: Path
    dom: str


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Report]:
    d = tmp_path_factory.mktemp("browser")
    out = d / "run.json"
    proc = run_cli("run", "--scenario", "noop-async,sync-raw", "-n", "300", "-c", "10", "--warmup", "30",
                   "--rounds", "2", "--interval", "0.2", "-q", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    result = results.load(out)
    page = d / "report.html"
    page.write_text(html.render(result), encoding="utf-8")
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(page, ARTIFACTS / "html-report.html")
    dumped = chromium(d, "dom", "--dump-dom", page.as_uri())
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    (ARTIFACTS / "html-report.dom.html").write_text(dumped.stdout, encoding="utf-8")
    yield Report(result, page, dumped.stdout)


class _Dom(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.charts: list[str] = []
        self.tables: list[str] = []
        self.links: list[str] = []
        self.count: dict[str, int] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.count[tag] = self.count.get(tag, 0) + 1
        a = {k: v or "" for k, v in attrs}
        if tag == "svg" and "data-chart" in a:
            self.charts.append(a["data-chart"])
        if tag == "table":
            self.tables.append(a.get("data-table", ""))
        self.links += [v for k, v in a.items() if k in ("src", "href", "srcset", "action", "poster")]


def test_the_browser_dom_has_every_scenario_chart_and_table(report: Report) -> None:
    dom = _Dom()
    dom.feed(report.dom)
    assert sorted(dom.charts) == sorted(RUN_CHARTS)
    assert dom.count.get("path", 0) > 50 and dom.count.get("text", 0) > 20  # the SVGs were parsed as SVG
    for t in all_tables(report.result):
        assert html._slug(t.title) in dom.tables, t.title
    assert "scenarios" in dom.tables
    for s in report.result.scenarios:
        assert s.path in report.dom, s.path
    assert all(link.startswith("#") for link in dom.links), [x for x in dom.links if not x.startswith("#")]
    assert dom.count.get("script", 0) == 0 and dom.count.get("img", 0) == 0 and dom.count.get("link", 0) == 0


def _png(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def _hex_rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_screenshot(report: Report, tmp_path: Path, theme: str) -> None:
    import numpy as np  # numpy and pillow come with matplotlib
    from PIL import Image

    shot = ARTIFACTS / f"html-report-{theme}.png"
    shot.unlink(missing_ok=True)
    extra = ("--force-dark-mode",) if theme == "dark" else ()
    proc = chromium(tmp_path, theme, *extra, f"--screenshot={shot}", f"--window-size={WIDTH},{HEIGHT}",
                    report.page.as_uri())
    assert proc.returncode == 0 and shot.exists(), proc.stderr[-2000:]
    assert _png(shot) == (WIDTH, HEIGHT)
    assert shot.stat().st_size > 50_000  # a blank page compresses to a few KB
    with Image.open(shot) as im:
        rgb = im.convert("RGB")
        background = rgb.getpixel((4, 4))
        assert isinstance(background, tuple)
        assert (sum(background) < 150) == (theme == "dark"), background
        # The first scenario's colour is drawn: the spectrum line and the bars, not just a swatch.
        target = _hex_rgb(charts.color(0))
        hits = int((np.abs(np.asarray(rgb, dtype=int) - np.array(target)) <= 8).all(axis=2).sum())
        assert hits > 2_000, hits
