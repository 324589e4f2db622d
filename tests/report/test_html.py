"""report.html: parsed back, its charts and tables hold the numbers of results.csv; it is self-contained and escaped."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest

from reconcile.api import run
from reconcile.emulator import Dataset, Emulator, EmulatorConfig
from reconcile.report._html import Views, render
from reconcile.report._statistics import DayCount
from reconcile.report._summary import Summary
from tests.conftest import SAMPLES, read_results, settings_for, write_manifest


@dataclass
class Page(HTMLParser):
    """report.html parsed: every tag seen, the bars of each chart, the rows of each table, the text."""

    tags: Counter[str] = field(default_factory=Counter)
    bars: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    tables: dict[str, list[list[str]]] = field(default_factory=dict)
    text: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    _svg: str | None = None
    _table: str | None = None
    _cell: list[str] | None = None

    def __post_init__(self) -> None:
        super().__init__(convert_charrefs=True)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        self.tags[tag] += 1
        self.links += [v for k, v in attributes.items() if k in ("href", "src")]
        if tag == "svg":
            self._svg = attributes.get("id", "")
            self.bars[self._svg] = []
        elif tag == "rect" and self._svg is not None and "bar" in attributes.get("class", "").split():
            self.bars[self._svg].append(attributes)
        elif tag == "table":
            self._table = attributes.get("class", "")
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._svg = None
        elif tag == "table":
            self._table = None
        elif tag in ("td", "th") and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)

    def values(self, chart: str) -> dict[str, int]:
        return {bar["data-label"]: int(bar["data-value"]) for bar in self.bars[chart]}


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


def day_of(row: dict[str, str]) -> str:
    """The test's own reading of a row's day: call_date's date, else a YYYY/MM/DD in the folder."""
    match = re.match(r"(\d{4})-(\d{2})-(\d{2})", row.get("call_date", "")) or re.search(
        r"(\d{4})/(\d{2})/(\d{2})", row["folder"]
    )
    return "-".join(match.groups()) if match else ""


@pytest.fixture
async def sample_report(emulator: Emulator, tmp_path: Path) -> Path:
    """The sample manifests reconciled against the demo dataset; the output directory."""
    await run(sorted(SAMPLES.glob("*.csv")), tmp_path / "out", settings=settings_for(emulator), label="html <test>")
    return tmp_path / "out"


@pytest.mark.slow
def test_charts_show_missing_counts_from_results_csv(sample_report: Path) -> None:
    """The organisation, folder and day charts have one bar per group with its missing count from missing.csv."""
    page = parse(sample_report / "report.html")
    missing = read_results(sample_report / "missing.csv")
    assert missing, "the samples must have missing rows for this test to mean anything"
    by_org = Counter(f"{r['company']} / {r['organisation']}" for r in missing)
    assert page.values("chart-organisation") == dict(by_org)
    by_folder = Counter(f"{r['folder']} ({r['company']} / {r['organisation']})" for r in missing)
    assert page.values("chart-folder") == dict(by_folder)  # fewer folders than the chart's 25 bars
    by_day = Counter(day_of(r) for r in missing if day_of(r))
    assert page.values("chart-day") == dict(by_day)
    assert [b["data-label"] for b in page.bars["chart-day"]] == sorted(by_day)  # in time order
    organisation_values = [int(b["data-value"]) for b in page.bars["chart-organisation"]]
    assert organisation_values == sorted(organisation_values, reverse=True)


@pytest.mark.slow
def test_status_bar_and_counts_table_match_summary(sample_report: Path) -> None:
    """The status bar and the counts table show summary.json's counts."""
    page = parse(sample_report / "report.html")
    summary = json.loads((sample_report / "summary.json").read_text(encoding="utf-8"))
    assert page.values("chart-status") == {s: n for s, n in summary["counts"].items() if n}
    table = {row[0]: row[1] for row in page.tables["counts"][1:]}
    assert table == {**{s: f"{n:,}" for s, n in summary["counts"].items()}, "total": f"{summary['records']:,}"}


@pytest.mark.slow
def test_top_folders_and_first_missing_rows_tables(sample_report: Path) -> None:
    """The top-folders table ranks folders by missing count; the missing-rows table lists missing.csv in order."""
    page = parse(sample_report / "report.html")
    missing = read_results(sample_report / "missing.csv")
    folders = Counter((r["company"], r["organisation"], r["folder"]) for r in missing)
    ranked = sorted(folders.items(), key=lambda item: (-item[1], item[0]))
    assert [(r[0], r[1], r[2], int(r[3])) for r in page.tables["folders"][1:]] == [(*key, n) for key, n in ranked[:25]]
    rows = page.tables["missing"][1:]
    assert [(r[1], r[5]) for r in rows] == [(m["row"], m["filename"]) for m in missing[:100]]


@pytest.mark.slow
def test_compliance_metadata_is_shown(sample_report: Path) -> None:
    """Run id, label, engine version, endpoint, times and every manifest's SHA-256 are in the page."""
    page = parse(sample_report / "report.html")
    summary = json.loads((sample_report / "summary.json").read_text(encoding="utf-8"))
    meta = {row[0]: row[1] for row in page.tables["meta"]}
    for title, name in (
        ("Run id", "run_id"),
        ("Label", "label"),
        ("Engine version", "engine_version"),
        ("Endpoint", "endpoint"),
        ("Base URL", "base_url"),
        ("Started at", "started_at"),
        ("Finished at", "finished_at"),
    ):
        assert meta[title] == str(summary[name])
    shown = {row[0]: row[3] for row in page.tables["manifests"][1:]}
    assert shown == {m["path"]: m["sha256"] for m in summary["manifests"]}


@pytest.mark.slow
def test_page_is_self_contained_and_printable(sample_report: Path) -> None:
    """No script, image, stylesheet link or remote URL; inline CSS with print rules."""
    text = (sample_report / "report.html").read_text(encoding="utf-8")
    page = parse(sample_report / "report.html")
    assert not {"script", "img", "link", "iframe", "object"} & set(page.tags)
    assert all(not re.match(r"[a-z]+:", link) for link in page.links), page.links  # relative links only
    assert "@media print" in text
    assert page.tags["style"] == 1


async def test_user_text_is_escaped(tmp_path: Path) -> None:
    """Markup in filenames, folders and the label is shown as text, never parsed as tags."""
    hostile = ("<b>acme</b>", "org & co", '2026/11/25/"><script>alert(1)</script>', "<img src=x onerror=alert(1)>")
    manifest = write_manifest(tmp_path / "m.csv", [hostile])
    async with Emulator(EmulatorConfig(), Dataset({})) as emulator:
        await run([manifest], tmp_path / "out", settings=settings_for(emulator), label="</title><script>x</script>")
    page = parse(tmp_path / "out" / "report.html")
    assert not {"script", "img", "b"} & set(page.tags)
    text = "".join(page.text)
    assert hostile[3] in text
    assert "</title><script>x</script>" in text
    assert page.values("chart-folder") == {f"{hostile[2]} ({hostile[0]} / {hostile[1]})": 1}


async def test_no_missing_rows_means_no_missing_charts(tmp_path: Path) -> None:
    """A run where everything is present says so instead of drawing empty charts."""
    key = ("acme", "acme-ca", "2026/11/25", "a.mp3")
    manifest = write_manifest(tmp_path / "m.csv", [key])
    async with Emulator(EmulatorConfig(), Dataset({key: "id"})) as emulator:
        await run([manifest], tmp_path / "out", settings=settings_for(emulator))
    page = parse(tmp_path / "out" / "report.html")
    assert "chart-organisation" not in page.bars
    assert "missing" not in page.tables
    assert "No recording is missing." in "".join(page.text)


def minimal_summary(missing: int, **changes: object) -> Summary:
    counts = {"present": 0, "missing": missing, "invalid": 0, "error": 0, "unchecked": 0}
    data = {"counts": counts, "records": missing, "outcome": "complete", "by_organisation": [], "manifests": []}
    return Summary.from_dict(data | changes)


def test_many_days_are_charted_by_month(tmp_path: Path) -> None:
    """Beyond 400 days the chart groups by month, summing each month's days."""
    days = tuple(DayCount(f"{2020 + i // 336}-{i // 28 % 12 + 1:02d}-{i % 28 + 1:02d}", 2, 1) for i in range(500))
    path = tmp_path / "r.html"
    path.write_text(render(minimal_summary(500), Views((), 0, days, ())), encoding="utf-8")
    page = parse(path)
    months = page.values("chart-day")
    assert "By month" in "".join(page.text)
    assert sum(months.values()) == 500
    assert len(months) == len({d.day[:7] for d in days})
    assert months["2020-01"] == 28


def test_undated_missing_rows_are_counted_in_a_note(tmp_path: Path) -> None:
    """When some missing rows carry no date, the day chart says how many it leaves out."""
    path = tmp_path / "r.html"
    path.write_text(render(minimal_summary(5), Views((), 0, (DayCount("2026-11-25", 4, 3),), ())), encoding="utf-8")
    assert "2 missing rows carry no date" in "".join(parse(path).text)


def test_a_stopped_run_says_so_and_why(tmp_path: Path) -> None:
    """A fatal run's page says it is incomplete and shows the error that stopped it."""
    summary = minimal_summary(0, outcome="fatal", error={"type": "TokenError", "message": "refused <401>"})
    path = tmp_path / "r.html"
    path.write_text(render(summary, Views((), 0, (), ())), encoding="utf-8")
    page = parse(path)
    assert "The run is incomplete (fatal)" in "".join(page.text)
    assert {row[0]: row[1] for row in page.tables["meta"]}["Error"] == "TokenError: refused <401>"
