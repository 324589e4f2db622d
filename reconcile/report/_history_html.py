"""history.html: the runs of many nights on one self-contained page, as report.html is (inline CSS and SVG only).

Charts have stable ids (``chart-missing``, ``chart-errors``, ``chart-changes``, ``chart-company-N``), the class
``chart`` and a width and height; each bar carries ``data-label`` (the night), ``data-series`` and
``data-value``, and each failed run a ``rect.failed`` band, so that tests and scripts can read the numbers back.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from reconcile.model import Status

from ._html import _COLOURS, _CSS, esc, relative_href, x_label

if TYPE_CHECKING:
    from ._history import History, HistoryRun

CHART_RUNS = 400  # the last runs charted (more than a year of nights); history.csv has every one
CHART_COMPANIES = 25
_RECOVERED = _COLOURS[Status.PRESENT]
Series = tuple[str, str, Sequence[int | None]]  # (name, colour, one value per run; None: nothing to draw)


def render(history: History, out_dir: Path) -> str:
    """The whole page; links to each run's report.html are relative to ``out_dir``, where the page is written."""
    runs = history.runs
    charted = runs[-CHART_RUNS:]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Reconciliation history</title><style>{_CSS}{_EXTRA_CSS}</style></head><body>",
        f'<header><h1>Reconciliation history</h1><p class="verdict">{esc(_verdict(history))}</p></header>',
        _failed_section(history, out_dir),
        '<section id="charts"><h2>Over time</h2>',
        _more(len(runs)),
        "<h3>Missing rows</h3>",
        _chart(
            "chart-missing",
            charted,
            [(Status.MISSING, _COLOURS[Status.MISSING], [_count(r, Status.MISSING) for r in charted])],
        ),
        "<h3>Error rows</h3>",
        _chart(
            "chart-errors",
            charted,
            [(Status.ERROR, _COLOURS[Status.ERROR], [_count(r, Status.ERROR) for r in charted])],
        ),
        "<h3>Changes since the run before</h3>",
        _chart(
            "chart-changes",
            charted,
            [
                ("newly_missing", _COLOURS[Status.MISSING], [_change(r, "newly_missing") for r in charted]),
                ("recovered", _RECOVERED, [_change(r, "recovered") for r in charted]),
            ],
            grouped=True,
        ),
        "</section>",
        _companies_section(charted),
        _runs_section(history, out_dir),
        "<footer>Written by reconcile history from each run's summary.json; every run is in "
        '<a href="history.csv">history.csv</a>, every company of every run in '
        '<a href="history-by-company.csv">history-by-company.csv</a>.</footer>',
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"


def _verdict(history: History) -> str:
    runs = history.runs
    text = f"{len(runs):,} runs, {runs[0].night} to {runs[-1].night}; {len(history.failed):,} failed."
    latest = next((r for r in reversed(runs) if not r.failed), None)
    if latest is not None:
        text += (
            f" Latest complete run ({latest.night}): {latest.counts[Status.MISSING]:,} missing and "
            f"{latest.counts[Status.ERROR]:,} error of {latest.records or 0:,} rows."
        )
    return text


def _count(run: HistoryRun, status: str) -> int | None:
    return run.counts[status] if run.counts else None


def _change(run: HistoryRun, change: str) -> int | None:
    return run.changes[change] if run.changes else None


def _more(count: int) -> str:
    if count <= CHART_RUNS:
        return ""
    return f'<p class="note">The charts show the last {CHART_RUNS:,} of {count:,} runs; history.csv has every run.</p>'


def _chart(
    chart_id: str, runs: Sequence[HistoryRun], series: Sequence[Series], *, grouped: bool = False, company: str = ""
) -> str:
    """Columns in time order, one slot per run: the series stacked (or side by side when ``grouped``), a grey
    band behind each failed run, a labelled y axis and the nights below."""
    left, top, plot_height, bottom = 56, 22, 160, 80
    slot = min(840 / max(len(runs), 1), 48.0)
    plot_width = max(slot * len(runs), 240)
    width, height = round(left + plot_width + 10), top + plot_height + bottom
    totals = [sum(s[2][i] or 0 for s in series) for i in range(len(runs))]
    peak = max((max((s[2][i] or 0) for s in series) if grouped else totals[i] for i in range(len(runs))), default=0)
    peak = peak or 1
    base = top + plot_height
    every = -(-len(runs) // 40)  # at most ~40 x labels, or they overlap
    company_attribute = f' data-company="{esc(company)}"' if company else ""
    parts = [
        f'<svg id="{chart_id}" class="chart"{company_attribute} role="img" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
        f'<line x1="{left}" y1="{base}" x2="{left + plot_width}" y2="{base}" class="axis"/>',
    ]
    for index, (name, colour, _) in enumerate(series):
        legend = left + index * 130
        parts.append(
            f'<rect x="{legend}" y="2" width="10" height="10" fill="{colour}"/>'
            f'<text x="{legend + 14}" y="11">{esc(name.replace("_", " "))}</text>'
        )
    for fraction in (0, 0.5, 1) if peak > 1 else (0, 1):  # a half tick of 1 would read 0
        y = base - plot_height * fraction
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{round(peak * fraction):,}</text>'
        )
    for index, run in enumerate(runs):
        x = left + index * slot
        if run.failed:
            parts.append(
                f'<rect class="failed" x="{x:.2f}" y="{top}" width="{slot:.2f}" height="{plot_height}" '
                f'data-label="{esc(run.night)}"><title>{esc(run.night)}: {esc(run.outcome)}</title></rect>'
            )
        stacked, width_each = 0.0, slot * 0.8 / (len(series) if grouped else 1)
        for number, (name, colour, values) in enumerate(series):
            value = values[index]
            if not value:
                continue
            bar = plot_height * value / peak
            bar_x = x + slot * 0.1 + (number * width_each if grouped else 0)
            bar_top = base - bar - (0 if grouped else stacked)
            parts.append(
                f'<rect class="bar" x="{bar_x:.2f}" y="{bar_top:.2f}" width="{width_each:.2f}" height="{bar:.2f}" '
                f'fill="{colour}" data-label="{esc(run.night)}" data-run="{esc(run.run_id)}" '
                f'data-series="{esc(name)}" data-value="{value}">'
                f"<title>{esc(run.night)}: {value:,} {esc(name.replace('_', ' '))}</title></rect>"
            )
            stacked += 0 if grouped else bar
        if index % every == 0:
            parts.append(x_label(x + slot / 2, base, run.night))
    return "".join(parts) + "</svg>"


def _failed_section(history: History, out_dir: Path) -> str:
    failed = history.failed
    if not failed:
        return '<section id="failed"><h2>Runs that failed</h2><p class="empty">No run failed.</p></section>'
    rows = [
        (
            esc(run.night),
            esc(run.run_id),
            esc(run.outcome),
            _cell(run.exit_code),
            esc(run.error),
            f"<code>{esc(run.directory)}</code>",
            _report_link(run, out_dir),
        )
        for run in reversed(failed)
    ]
    return (
        f'<section id="failed"><h2>Runs that failed</h2><p>{len(failed):,} of {len(history.runs):,} runs did not '
        "finish; re-running a night's command resumes it.</p>"
        f"{_table(['Night', 'Run id', 'Outcome', 'Exit code', 'Error', 'Directory', 'Report'], rows, 'failed', (3,))}"
        "</section>"
    )


def _companies_section(runs: Sequence[HistoryRun]) -> str:
    weight: Counter[str] = Counter()
    for run in runs:
        for company in run.by_company:
            weight[company.company] += company.counts.get(Status.MISSING, 0) + company.counts.get(Status.ERROR, 0)
    if not weight:
        return ""
    companies = sorted(weight, key=lambda name: (-weight[name], name))
    per_run = [{c.company: c.counts for c in run.by_company} if run.counts else None for run in runs]
    parts = ['<section id="companies"><h2>By company</h2>']
    for index, name in enumerate(companies[:CHART_COMPANIES]):
        series: list[Series] = [
            (status, _COLOURS[status], [None if of is None else of.get(name, {}).get(status, 0) for of in per_run])
            for status in (Status.MISSING, Status.ERROR)
        ]
        parts.append(
            f"<h3>{esc(name or '(no company)')}</h3>{_chart(f'chart-company-{index}', runs, series, company=name)}"
        )
    if len(companies) > CHART_COMPANIES:
        parts.append(
            f'<p class="note">… and {len(companies) - CHART_COMPANIES:,} more companies: every one is in '
            '<a href="history-by-company.csv">history-by-company.csv</a>.</p>'
        )
    return "".join(parts) + "</section>"


def _runs_section(history: History, out_dir: Path) -> str:
    headers = ["Night", "Label", "Outcome", "Exit code", "Records", *(s.capitalize() for s in tuple(Status))]
    headers += ["Newly missing", "Recovered"]
    headers += ["Duration (s)", "Rows/s", "Report"]
    rows = []
    for run in reversed(history.runs):
        changes = run.changes or {}
        rows.append(
            (
                esc(run.night),
                esc(run.label),
                esc(run.outcome),
                _cell(run.exit_code),
                _cell(run.records),
                *(_cell(run.counts.get(s)) for s in tuple(Status)),
                _cell(changes.get("newly_missing")),
                _cell(changes.get("recovered")),
                _cell(run.duration_seconds),
                _cell(run.rows_per_second),
                _report_link(run, out_dir),
            )
        )
    numeric = (3, 4, *range(5, 5 + len(tuple(Status)) + 4))
    return (
        '<section id="runs"><h2>Every run, newest first</h2>'
        f"{_table(headers, rows, 'runs', numeric, failed=[r.failed for r in reversed(history.runs)])}</section>"
    )


def _cell(value: float | int | None) -> str:
    return "" if value is None else esc(f"{value:,}")


def _report_link(run: HistoryRun, out_dir: Path) -> str:
    path = run.report_html
    if path is None or not path.is_file():
        return ""
    return f'<a href="{esc(relative_href(out_dir, path))}">report</a>'


def _table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    css: str,
    numeric: Sequence[int],
    *,
    failed: Sequence[bool] = (),
) -> str:
    """A table of cells already escaped (some hold links); a failed run's row has the class ``failed``."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for index, row in enumerate(rows):
        cells = "".join(f'<td class="num">{v}</td>' if i in numeric else f"<td>{v}</td>" for i, v in enumerate(row))
        mark = ' class="failed"' if index < len(failed) and failed[index] else ""
        body.append(f"<tr{mark}>{cells}</tr>")
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


_EXTRA_CSS = """
svg.chart rect.failed { fill: #757575; fill-opacity: 0.15; }
table.runs tr.failed td, table.failed td { background: #fff4e5; } table.runs { font-size: 12px; }
"""
