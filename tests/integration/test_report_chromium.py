"""The backtest's report.html as a browser shows it: Debian's headless Chromium loads the file
(offline: the page is one self-contained file), and the DOM it builds holds the verdict, the
metric table and the charts; a screenshot of the top of the page is taken for a person to
look at (it stays in the test's tmp dir).

A small backtest (one bursty day, two policies), not the three-week demo: a few seconds.
Nothing skips: without Chromium the test fails and says to run `bash .ci/setup.sh`."""

from __future__ import annotations

import html
import json
import math
import random
import re
import shutil
import subprocess
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image

from autoscaler.cli import main

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")
TARGET = ("service: web\nmin_replicas: 1\nmax_replicas: 50\nmetrics: [{name: rps, target: 70}]\n"
          "behavior: {scale_down: {stabilization: 2m}}\n")
THRESHOLD = ("service: web\nmin_replicas: 1\nmax_replicas: 50\nstrategy: threshold\nstep: 1\n"
             "metrics: [{name: rps, scale_up_above: 80, scale_down_below: 40}]\n")


def bursty_trace(path: Path, minutes: int) -> Path:
    """A daily wave with bursts of several times its height in 3 % of the minutes."""
    draw = random.Random(7)
    start = datetime(2026, 3, 2)
    rows = ["minute,requests"]
    for i in range(minutes):
        wave = 300 + 200 * math.sin(2 * math.pi * (i % 1440) / 1440 - math.pi / 2)
        burst = draw.uniform(500, 1500) if draw.random() < 0.03 else 0.0
        rows.append(f"{start + timedelta(minutes=i):%Y-%m-%d %H:%M:%S},"
                    f"{wave + burst + draw.uniform(-30, 30):.1f}")
    path.write_text("\n".join(rows) + "\n")
    return path


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail("Debian's chromium is missing; run `bash .ci/setup.sh`", pytrace=False)
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run([binary, *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("backtest")
    trace = bursty_trace(folder / "trace.csv", 1440 + 60)
    (folder / "target.yaml").write_text(TARGET)
    (folder / "threshold.yaml").write_text(THRESHOLD)
    code = main(["backtest", "--trace", str(trace), "--policy", str(folder / "target.yaml"),
                 "--policy", str(folder / "threshold.yaml"), "--warmup", "1h",
                 "--slo-budget", "5", "--out", str(folder / "out")])
    assert code == 0
    return folder / "out"


def text_of(dom: str) -> str:
    """The DOM's text: tags out, entities decoded, white space collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", dom)).split())


def test_chromium_shows_the_verdict_the_table_and_the_charts(report: Path) -> None:
    page = report / "report.html"
    source = page.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", source), "the page loads no URL"

    dom = chromium("--dump-dom", page.as_uri()).stdout

    verdict = json.loads((report / "summary.json").read_text())["verdict"]
    assert verdict["chosen"] == "target.yaml"
    text = text_of(dom)
    assert verdict["lead"] in text
    assert text.index("Verdict") < text.index("Side by side") < text.index("the load in replicas")
    assert re.search(r'<section class="callout"><h2>Verdict</h2>', dom)
    table = re.search(r"<table>.*?</table>", dom, re.S)
    assert table is not None
    assert "replica-hours" in table.group() and "what it means" in table.group()
    assert re.search(r'<td class="num marked">[\d,.]+</td>', table.group())
    assert len(re.findall(r"<figure><svg", dom)) == 4  # two policies: overview, worst hour
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", dom, re.S)
    assert any("Aggregated to fit the width" in c for c in captions)
    assert any("centred on" in c for c in captions)
    assert "The worst hour" in text and "The largest actions" in text


def test_a_screenshot_of_the_report(report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"

    chromium(f"--screenshot={shot}", "--window-size=1280,2000", (report / "report.html").as_uri())

    assert shot.stat().st_size > 50_000
    with Image.open(shot) as image:
        assert image.size == (1280, 2000)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 200, "the page rendered nearly blank"
    print(f"screenshot: {shot}")
