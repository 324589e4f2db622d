"""report/_history_html: history.html is well-formed, self-contained, and charts every night overall and per company."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest

from reconcile.report import load_history, write_history
from tests.report.conftest import MISSING_BY_NIGHT, NIGHTS
from tests.report.test_html import parse

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class WellFormed(HTMLParser):
    """Every element opened is closed, in order (void elements aside); any mismatch is recorded."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.problems: list[str] = []
        self.svgs: dict[str, dict[str, str]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "svg":
            attributes = {k: v or "" for k, v in attrs}
            self.svgs[attributes.get("id", "")] = attributes
        if tag not in VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.open[-1:] or 'nothing'} at {self.getpos()}")
        else:
            self.open.pop()


@pytest.mark.slow
async def test_history_html_is_well_formed_self_contained_and_charts_every_night(reports: Path) -> None:
    """history.html parses with every element closed; its charts are sized SVGs with a bar per night holding
    the summaries' missing counts, overall and per company; it loads nothing and links each night's report."""
    write_history(load_history([reports]), reports)
    text = (reports / "history.html").read_text(encoding="utf-8")
    checker = WellFormed()
    checker.feed(text)
    checker.close()
    assert checker.problems == []
    assert checker.open == []
    for chart in ("chart-missing", "chart-errors", "chart-changes", "chart-company-0", "chart-company-1"):
        svg = checker.svgs[chart]
        assert "chart" in svg["class"].split()
        assert int(svg["width"]) > 200
        assert int(svg["height"]) > 100
    page = parse(reports / "history.html")
    assert page.values("chart-missing") == {n: len(m) for n, m in zip(NIGHTS, MISSING_BY_NIGHT, strict=True)}
    assert page.values("chart-errors") == {}  # no error rows: no bars, but the chart is there
    companies = {checker.svgs[f"chart-company-{i}"]["data-company"]: f"chart-company-{i}" for i in (0, 1)}
    acme = [b for b in page.bars[companies["acme"]] if b["data-series"] == "missing"]
    assert [(b["data-label"], b["data-value"]) for b in acme] == [(NIGHTS[0], "2"), (NIGHTS[1], "2"), (NIGHTS[2], "3")]
    changes = {(b["data-label"], b["data-series"]): int(b["data-value"]) for b in page.bars["chart-changes"]}
    assert changes == {(NIGHTS[1], "newly_missing"): 2, (NIGHTS[1], "recovered"): 1} | {
        (NIGHTS[2], "newly_missing"): 1,
        (NIGHTS[2], "recovered"): 1,
    }
    assert not {"script", "img", "link", "iframe", "object"} & set(page.tags)
    reports_linked = [link for link in page.links if link.endswith("report.html")]
    assert reports_linked == [f"{night}/report.html" for night in reversed(NIGHTS)]  # newest first, relative
    assert all((reports / link).is_file() for link in reports_linked)
    assert "No run failed." in "".join(page.text)
