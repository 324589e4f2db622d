"""report.html in a real browser: headless Chromium renders the demo's report, charts sized, offline, no errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconcile.ops._demo import run_demo
from tests.report.browser import Browser, look_at
from tests.report.conftest import MISSING_BY_NIGHT
from tests.report.test_history import history_cli

CHARTS = ("chart-status", "chart-organisation", "chart-folder", "chart-day")


@pytest.fixture
async def demo_report(tmp_path: Path) -> Path:
    """``reconcile demo``'s output directory: the bundled emulator and sample manifests, as a user runs it."""
    out = tmp_path / "reconcile-demo"
    await run_demo(out, None, lambda _reconciler: None)
    return out


@pytest.mark.slow
async def test_demo_report_renders_offline_without_errors(chromium: Browser, demo_report: Path) -> None:
    """The page loads with no console message and fetches nothing but itself; its screenshot is not blank."""
    page = await chromium.open(demo_report / "report.html")
    assert page.console == []
    assert page.requests == [(demo_report / "report.html").absolute().as_uri()]
    picture = look_at(await page.screenshot())
    assert picture.width >= 1000
    assert picture.height > 2000  # the whole page: run, counts, charts, tables
    assert picture.colours > 50  # text antialiasing, the status colours, the bars
    assert picture.ink > picture.width * picture.height // 50


@pytest.mark.slow
async def test_demo_report_charts_are_drawn_with_their_bars(chromium: Browser, demo_report: Path) -> None:
    """Every chart is laid out with a size, and every bar the file holds is drawn with a width and a height."""
    page = await chromium.open(demo_report / "report.html")
    for chart in CHARTS:
        (box,) = await page.boxes(f"svg#{chart}")
        assert box.width > 100, (chart, box)
        assert box.height > 20, (chart, box)
        bars = await page.boxes(f"svg#{chart} rect.bar")
        expected = await page.evaluate(f"document.querySelectorAll('svg#{chart} rect.bar').length")
        assert len(bars) == expected > 0, chart
        assert all(bar.width > 0 and bar.height > 0 for bar in bars), (chart, bars)
    summary = json.loads((demo_report / "summary.json").read_text(encoding="utf-8"))
    statuses = await page.evaluate(
        "Array.from(document.querySelectorAll('svg#chart-status rect.bar')).map(b => b.dataset.label)"
    )
    assert statuses == [s for s, n in summary["counts"].items() if n]
    widths = [b.width for b in await page.boxes("svg#chart-status rect.bar")]
    assert widths.index(max(widths)) == statuses.index("present")  # most rows are present: the widest bar


@pytest.mark.slow
async def test_the_browser_reports_console_errors_and_blocks_the_network(chromium: Browser, tmp_path: Path) -> None:
    """The fixture's checks can fail: a page that logs an error, throws and loads a remote image is caught."""
    page_file = tmp_path / "bad.html"
    page_file.write_text(
        '<!DOCTYPE html><html><body><img id="remote" src="http://example.com/pixel.png">'
        "<script>console.error('drawn badly'); throw new Error('broken script');</script></body></html>",
        encoding="utf-8",
    )
    page = await chromium.open(page_file)
    assert "http://example.com/pixel.png" in page.requests
    levels = {m.level for m in page.console}
    assert {"error", "exception"} <= levels, page.console
    assert any("drawn badly" in m.text for m in page.console)
    assert any("broken script" in m.text for m in page.console)
    assert await page.evaluate("document.getElementById('remote').naturalWidth") == 0  # blocked, never loaded
    assert any("ERR_BLOCKED_BY_CLIENT" in m.text for m in page.console), page.console
    blank = look_at(await page.screenshot())
    assert blank.ink < blank.width * blank.height // 50  # a broken-image icon: the check above calls it blank


@pytest.mark.slow
async def test_history_page_renders_offline_with_every_chart_sized(chromium: Browser, reports: Path) -> None:
    """history.html of three nights loads with no console message, fetches nothing but itself, is not blank, and
    draws every chart it holds (overall and per company) with a size and the nights' bars."""
    code, _, stderr = history_cli(str(reports))
    assert code == 0, stderr
    page = await chromium.open(reports / "history.html")
    assert page.console == []
    assert page.requests == [(reports / "history.html").absolute().as_uri()]
    picture = look_at(await page.screenshot())
    assert picture.colours > 50
    assert picture.ink > picture.width * picture.height // 50
    charts = await page.evaluate("Array.from(document.querySelectorAll('svg.chart')).map(s => s.id)")
    assert {"chart-missing", "chart-errors", "chart-changes", "chart-company-0"} <= set(charts), charts
    for chart in charts:
        (box,) = await page.boxes(f"svg#{chart}")
        assert box.width > 100, (chart, box)
        assert box.height > 20, (chart, box)
    missing_bars = await page.evaluate(
        "Array.from(document.querySelectorAll('svg#chart-missing rect.bar')).map(b => Number(b.dataset.value))"
    )
    assert sorted(missing_bars) == sorted(len(m) for m in MISSING_BY_NIGHT), missing_bars
    assert all(b.width > 0 and b.height > 0 for b in await page.boxes("svg#chart-missing rect.bar"))
