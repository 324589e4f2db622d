"""report.html: one self-contained page for people: run details, counts, charts, and the first missing rows.

Nothing is loaded from anywhere: the CSS is inline and the charts are SVG drawn here, so the file opens offline,
can be mailed, and prints to PDF cleanly (``@media print``).  Every value is escaped: filenames, folders and
labels come from users' exports.  Charts carry ``data-label``/``data-value`` on each bar so that tests (and
anyone scripting against the file) can read the numbers back.
"""

from __future__ import annotations

import html
import math
import os
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from reconcile.model import Status, written_whole

from ._statistics import DayCount, FolderCount, MissingRow
from ._summary import Summary

CHART_BARS = 25  # organisations or folders drawn; the rest are counted in a note
TOP_FOLDERS = 25
MAX_DAY_BARS = 400  # beyond this many days the chart shows months

_COLOURS: dict[str, str] = {
    Status.PRESENT: "#2e7d32",
    Status.MISSING: "#c62828",
    Status.INVALID: "#8e24aa",
    Status.ERROR: "#ef6c00",
    Status.UNCHECKED: "#757575",
}


@dataclass(frozen=True, slots=True)
class Views:
    """What report.html shows beyond summary.json: the parts of the tally too big for it."""

    top_folders: tuple[FolderCount, ...]
    folders_missing: int  # folders with at least one missing row
    days: tuple[DayCount, ...]
    first_missing: tuple[MissingRow, ...]
    previous_report: str | None = None  # href of the compared run's report.html, relative when possible


def relative_href(directory: Path, target: Path) -> str:
    """A link from a page in ``directory`` to ``target``: relative, so that the two can move together, unless
    there is no relative path between them (another drive on Windows)."""
    try:
        relative = os.path.relpath(target.resolve(), directory.resolve())
    except ValueError:
        return target.resolve().as_uri()
    return urllib.parse.quote(Path(relative).as_posix())


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def render(summary: Summary, views: Views) -> str:
    """The whole page."""
    label = summary.label
    title = "Reconciliation report" + (f": {label}" if label else "")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f'<header><h1>{esc(title)}</h1><p class="verdict">{esc(_verdict(summary))}</p>'
        f"{_changes_line(summary, views)}</header>",
        _run_section(summary),
        _counts_section(summary),
        _delta_section(summary, views),
        _charts_section(summary, views),
        _folders_section(views),
        _missing_rows_section(summary, views),
        f"<footer>Written by reconcile {esc(summary.engine_version or '')}.</footer>",
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"


def write(path: Path, summary: Summary, views: Views) -> None:
    with written_whole(path) as temporary:
        temporary.write_text(render(summary, views), encoding="utf-8")


def _verdict(summary: Summary) -> str:
    counts = summary.counts.as_dict()
    text = f"{counts[Status.PRESENT]:,} of {summary.records:,} recordings present, {counts[Status.MISSING]:,} missing"
    others = [f"{counts[s]:,} {s}" for s in (Status.INVALID, Status.ERROR, Status.UNCHECKED) if counts[s]]
    if others:
        text += " (" + ", ".join(others) + ")"
    if summary.outcome != "complete":
        text += f". The run is incomplete ({summary.outcome}): re-run the same command to finish it"
    return text + "."


def _table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], *, css: str = "", numeric: Sequence[int] = ()
) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="num">{esc(v)}</td>' if i in numeric else f"<td>{esc(v)}</td>" for i, v in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _run_section(summary: Summary) -> str:
    fields = [
        *summary.run_fields(),
        ("Duration", f"{summary.duration_seconds:,} s"),
        ("Rows per second", f"{summary.rows_per_second:,}"),
    ]
    if summary.error:
        fields.append(("Error", f"{summary.error.type}: {summary.error.message}"))
    meta = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v if v is not None else '')}</td></tr>" for k, v in fields)
    manifests = _table(
        ["Manifest", "Records", "Bytes", "SHA-256"],
        [(m.path, f"{m.records:,}", f"{m.bytes:,}", m.sha256) for m in summary.manifests],
        css="manifests",
        numeric=(1, 2),
    )
    return (
        f'<section id="run"><h2>Run</h2><table class="meta"><tbody>{meta}</tbody></table>'
        f"<h3>Manifests</h3>{manifests}</section>"
    )


def _counts_section(summary: Summary) -> str:
    counts = summary.counts.as_dict()
    records = max(summary.records, 1)
    rows = [(status, f"{n:,}", f"{100 * n / records:.1f}%") for status, n in counts.items()]
    rows.append(("total", f"{summary.records:,}", ""))
    note = (
        f"<p>{summary.duplicates:,} rows repeat an earlier row and carry its status.</p>" if summary.duplicates else ""
    )
    return (
        f'<section id="counts"><h2>Counts</h2>{_composition(counts)}'
        f"{_table(['Status', 'Rows', 'Share'], rows, css='counts', numeric=(1, 2))}{note}</section>"
    )


def _composition(counts: Mapping[str, int]) -> str:
    """One bar split by status: the run at a glance."""
    total = sum(counts.values())
    if not total:
        return ""
    x, legend = 0.0, 0
    parts = [
        '<svg id="chart-status" class="chart" role="img" viewBox="0 0 900 50" width="900" height="50" '
        'xmlns="http://www.w3.org/2000/svg"><title>Rows by status</title>'
    ]
    for status, n in counts.items():
        if not n:
            continue
        width, colour = 900 * n / total, _COLOURS.get(status, "#999")
        parts.append(
            f'<rect class="bar" x="{x:.2f}" y="2" width="{width:.2f}" height="24" fill="{colour}" '
            f'data-label="{esc(status)}" data-value="{n}"><title>{esc(status)}: {n:,}</title></rect>'
        )
        parts.append(
            f'<rect x="{legend}" y="36" width="10" height="10" fill="{colour}"/>'
            f'<text x="{legend + 14}" y="45">{esc(status)} {n:,}</text>'
        )
        x += width
        legend += 150
    return "".join(parts) + "</svg>"


def _changes_line(summary: Summary, views: Views) -> str:
    """The delta's counts under the verdict, with a link to the previous run's report: what changed overnight."""
    delta = summary.delta
    if not delta:
        return ""
    changed = [f"{n:,} {name.replace('_', ' ')}" for name, n in delta.counts.items() if n and name != "unchanged"]
    name = Path(delta.compared_to or "").name
    previous = f"the previous run ({esc(name)})" if name else "the previous run"
    if views.previous_report:
        previous = f'<a href="{esc(views.previous_report)}">{previous}</a>'
    text = ", ".join(esc(c) for c in changed) if changed else "no change"
    return f'<p class="changes" id="changes">Since {previous}: {text} (<a href="#delta">details</a>).</p>'


def _delta_section(summary: Summary, views: Views) -> str:
    delta = summary.delta
    if not delta:
        return ""
    rows = [(name.replace("_", " "), f"{n:,}") for name, n in delta.counts.items()]
    previous = f" (run {esc(delta.run_id)})" if delta.run_id else ""
    report = f' (<a href="{esc(views.previous_report)}">its report</a>)' if views.previous_report else ""
    return (
        f'<section id="delta"><h2>Changes since the previous run</h2>'
        f"<p>Compared with <code>{esc(delta.compared_to)}</code>{previous}{report}; every change is listed in "
        f'<a href="delta.csv">delta.csv</a>.</p>{_table(["Change", "Rows"], rows, css="delta", numeric=(1,))}'
        "</section>"
    )


def _charts_section(summary: Summary, views: Views) -> str:
    if not summary.counts.missing:
        return '<section id="charts"><h2>Missing recordings</h2><p class="empty">No recording is missing.</p></section>'
    organisations = sorted(
        (
            (o.counts.missing, f"{o.company} / {o.organisation}", o.counts.total)
            for o in summary.by_organisation
            if o.counts.missing
        ),
        key=lambda item: (-item[0], item[1]),
    )
    parts = [
        '<section id="charts"><h2>Missing recordings</h2>',
        "<h3>By organisation</h3>",
        _hbar_chart("chart-organisation", [(label, n, total) for n, label, total in organisations[:CHART_BARS]]),
        _more(len(organisations), CHART_BARS, "organisations"),
        "<h3>By folder</h3>",
        _hbar_chart(
            "chart-folder",
            [
                (f"{f.folder} ({f.company} / {f.organisation})", f.missing, f.total)
                for f in views.top_folders[:CHART_BARS]
            ],
        ),
        _more(views.folders_missing, CHART_BARS, "folders"),
    ]
    if views.days:
        days, unit = _by_period(views.days)
        parts += [f"<h3>By {unit}</h3>", _column_chart("chart-day", days)]
        dated = sum(d.missing for d in views.days)
        if dated < summary.counts.missing:
            parts.append(
                f'<p class="note">{summary.counts.missing - dated:,} missing rows carry no date '
                "(no date column value and no date in the folder) and are not in this chart.</p>"
            )
    else:
        parts.append(
            '<p class="empty">No date found: name a column call_date or date, or keep dates in folders '
            "(2026/11/25) to see missing recordings by day.</p>"
        )
    return "".join(parts) + "</section>"


def _more(count: int, shown: int, what: str) -> str:
    return f'<p class="note">… and {count - shown:,} more {what} with missing recordings.</p>' if count > shown else ""


def _by_period(days: Sequence[DayCount]) -> tuple[list[tuple[str, int, int]], str]:
    if len(days) <= MAX_DAY_BARS:
        return [(d.day, d.missing, d.total) for d in days], "day"
    months: dict[str, list[int]] = {}
    for d in days:
        month = months.setdefault(d.day[:7], [0, 0])
        month[0] += d.missing
        month[1] += d.total
    return [(m, missing, total) for m, (missing, total) in months.items()], "month"


def _hbar_chart(chart_id: str, items: Sequence[tuple[str, int, int]]) -> str:
    """Horizontal bars: a label, a bar as long as the missing count, then 'n of total (x%)'."""
    label_width, bar_width, value_width, row_height = 330, 400, 170, 22
    width, height = label_width + bar_width + value_width, 8 + row_height * len(items)
    peak = max((n for _, n, _ in items), default=1) or 1
    parts = [
        f'<svg id="{chart_id}" class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for index, (label, n, total) in enumerate(items):
        y = 4 + index * row_height
        length = max(1.0, bar_width * n / peak)
        short = label if len(label) <= 48 else label[:47] + "…"
        share = f"{100 * n / total:.1f}%" if total else ""
        parts.append(
            f'<text x="{label_width - 8}" y="{y + 15}" text-anchor="end" class="label">{esc(short)}'
            f"<title>{esc(label)}</title></text>"
        )
        parts.append(
            f'<rect class="bar" x="{label_width}" y="{y + 3}" width="{length:.1f}" height="{row_height - 6}"'
            f' fill="{_COLOURS[Status.MISSING]}" data-label="{esc(label)}" data-value="{n}" data-total="{total}">'
            f"<title>{esc(label)}: {n:,} missing of {total:,}</title></rect>"
        )
        parts.append(
            f'<text x="{label_width + length + 6:.1f}" y="{y + 15}" class="value">{n:,} of {total:,} ({share})</text>'
        )
    return "".join(parts) + "</svg>"


def _column_chart(chart_id: str, items: Sequence[tuple[str, int, int]]) -> str:
    """Vertical bars in time order: missing rows per day (or month), with a labelled y axis."""
    left, top, plot_height, bottom = 56, 14, 200, 80
    slot = min(840 / max(len(items), 1), 48.0)  # a few days make narrow bars, not slabs
    plot_width = max(slot * len(items), 240)
    width, height = round(left + plot_width + 10), top + plot_height + bottom
    peak = max((n for _, n, _ in items), default=0) or 1
    every = math.ceil(len(items) / 40)  # at most ~40 x labels, or they overlap
    base = top + plot_height
    parts = [
        f'<svg id="{chart_id}" class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" xmlns="http://www.w3.org/2000/svg">',
        f'<line x1="{left}" y1="{base}" x2="{left + plot_width}" y2="{base}" class="axis"/>',
    ]
    for fraction in (0, 0.5, 1):
        y = base - plot_height * fraction
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{round(peak * fraction):,}</text>'
        )
    for index, (label, n, total) in enumerate(items):
        x = left + index * slot
        if n:
            bar = plot_height * n / peak
            parts.append(
                f'<rect class="bar" x="{x + slot * 0.1:.2f}" y="{base - bar:.2f}" width="{slot * 0.8:.2f}" '
                f'height="{bar:.2f}" fill="{_COLOURS[Status.MISSING]}" data-label="{esc(label)}" data-value="{n}" '
                f'data-total="{total}"><title>{esc(label)}: {n:,} missing of {total:,}</title></rect>'
            )
            if len(items) <= 40:
                parts.append(
                    f'<text x="{x + slot / 2:.1f}" y="{base - bar - 3:.2f}" text-anchor="middle" '
                    f'class="tick">{n:,}</text>'
                )
        if index % every == 0:
            parts.append(x_label(x + slot / 2, base, label))
    return "".join(parts) + "</svg>"


def x_label(x: float, base: float, label: str) -> str:
    """A time axis' label under a column centred on ``x``, slanted so that dates do not overlap."""
    y = base + 12
    return (
        f'<text x="{x:.1f}" y="{y}" transform="rotate(-60 {x:.1f} {y})" text-anchor="end" '
        f'class="tick">{esc(label)}</text>'
    )


def _folders_section(views: Views) -> str:
    if not views.top_folders:
        return ""
    rows = [
        (
            f.company,
            f.organisation,
            f.folder,
            f"{f.missing:,}",
            f"{f.total:,}",
            f"{100 * f.missing / f.total:.1f}%" if f.total else "",
        )
        for f in views.top_folders[:TOP_FOLDERS]
    ]
    table = _table(
        ["Company", "Organisation", "Folder", "Missing", "Rows", "Missing share"],
        rows,
        css="folders",
        numeric=(3, 4, 5),
    )
    return f'<section id="folders"><h2>Top folders by missing count</h2>{table}</section>'


def _missing_rows_section(summary: Summary, views: Views) -> str:
    if not views.first_missing:
        return ""
    missing = summary.counts.missing
    shown = len(views.first_missing)
    rows = [
        (Path(m.source).name, m.row, m.company, m.organisation, m.folder, m.filename, m.day)
        for m in views.first_missing
    ]
    table = _table(
        ["Manifest", "Row", "Company", "Organisation", "Folder", "Filename", "Day"], rows, css="missing", numeric=(1,)
    )
    heading = f"The first {shown:,} of {missing:,} missing rows" if missing > shown else "Missing rows"
    return (
        f'<section id="missing"><h2>{esc(heading)}</h2><p>Every missing row is in '
        f'<a href="missing.csv">missing.csv</a>.</p>{table}</section>'
    )


_CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; -webkit-print-color-adjust: exact; print-color-adjust: exact; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; color: #1f2328;
       margin: 0 auto; padding: 24px; max-width: 1100px; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 18px; border-bottom: 1px solid #d0d7de; padding-bottom: 4px;
       margin-top: 32px; } h3 { font-size: 15px; margin: 20px 0 6px; }
.verdict { font-size: 16px; margin: 0 0 8px; } .changes { margin: 0 0 8px; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13px; }
th, td { border: 1px solid #d0d7de; padding: 3px 8px; text-align: left; vertical-align: top; }
thead th { background: #f6f8fa; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.meta th { background: #f6f8fa; width: 160px; font-weight: 600; }
table.manifests td:last-child, code { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12px;
       word-break: break-all; }
table.missing td { word-break: break-all; }
svg.chart { display: block; max-width: 100%; height: auto; margin: 4px 0; }
svg.chart text { font: 12px system-ui, Helvetica, Arial, sans-serif; fill: #1f2328; }
svg.chart .tick { font-size: 10px; fill: #57606a; } svg.chart .axis { stroke: #8c959f; }
.note, .empty, footer { color: #57606a; } footer { margin-top: 32px; font-size: 12px; }
@page { size: A4; margin: 14mm; }
@media print {
  body { padding: 0; max-width: none; font-size: 11px; }
  h2, h3 { break-after: avoid; } #run, #counts, #delta, svg.chart, tr { break-inside: avoid; }
  thead { display: table-header-group; } a { color: inherit; text-decoration: none; }
}
"""
