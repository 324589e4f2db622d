"""report.pdf (``--format pdf``): the report as a paginated document for auditors, rendered with WeasyPrint.

The first page holds what an audit files: the run's metadata, each manifest's SHA-256 and record count, and the
counts by status.  Then the missing rows by organisation, and the missing, error and invalid rows as tables whose
header row repeats on every page; every page is numbered "n / total".

The row lists are capped (:data:`LISTED_MISSING`, :data:`LISTED_OTHER`): WeasyPrint lays a table out at ~50-100
rows a second and holds ~150 MB per thousand rows, so a PDF of every row of a million-row run would take hours and
gigabytes, and fill 40,000 pages nobody reads.  A capped list says so ("the first 500 of 12,345 missing rows; the
full list is in missing.csv"); the CSV files hold every row.  The writer keeps only the rows it will list, so
memory stays flat however long the run.

The document is PDF/A-3b, the archiving profile, and carries summary.json as an attachment.  WeasyPrint is an
optional dependency (the ``pdf`` extra): :func:`check_available` makes asking for pdf without it a usage error
before any request is sent.  Nothing is fetched while rendering: the document is self-contained.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from reconcile.errors import UsageError
from reconcile.model import KEY_FIELDS, Status, partial_path

from ._html import CHART_BARS, Views, _composition, _delta_section, _hbar_chart, _table, _verdict, esc
from ._rows import DETAIL, OUR_COLUMNS, ROW, SOURCE, STATUS
from ._summary import Summary
from ._writers import _commit, _discard

log = logging.getLogger("reconcile.report._pdf")


# 700 table rows at most: ~30 pages, rendered in 5-15 s with ~170 MB at worst, whatever the run's size.
LISTED_MISSING = 500
LISTED_OTHER = 100  # error rows, and invalid rows, each
INSTALL_HINT = "HINT: pip install 'calljourney-reconcile[pdf]' (WeasyPrint), or leave pdf out of --format"

# Where each list's every row is, for the note under a capped list.
_FULL_LIST: dict[str, str] = {
    Status.MISSING: "missing.csv",
    Status.ERROR: "results.csv (status error)",
    Status.INVALID: "results.csv (status invalid)",
}
_NO_VIEWS = Views((), 0, (), ())
_NO_GLYPH = re.compile(r'unsupported by fonts: "(.+)" \(U\+')
_HEADINGS: dict[str, str] = {
    Status.MISSING: "Missing rows",
    Status.ERROR: "Rows that could not be checked (error)",
    Status.INVALID: "Invalid rows",
}


def check_available() -> None:
    """Refuse pdf when WeasyPrint cannot be imported: not installed, or its system libraries (Pango) missing."""
    try:
        import weasyprint  # noqa: F401
    except ImportError as exc:
        raise UsageError(f"the pdf report format needs WeasyPrint, which is not installed. {INSTALL_HINT}") from exc
    except OSError as exc:  # WeasyPrint loads Pango and HarfBuzz with ctypes when imported
        raise UsageError(
            f"the pdf report format needs WeasyPrint's system libraries: {exc}. HINT: install Pango "
            "(Debian/Ubuntu: apt-get install libpango-1.0-0 libpangoft2-1.0-0; see WeasyPrint's installation page)"
        ) from exc


@dataclass(frozen=True, slots=True)
class ListedRow:
    """A row as the PDF lists it."""

    source: str
    row: int
    company: str
    organisation: str
    folder: str
    filename: str
    detail: str


@dataclass(frozen=True, slots=True)
class RowList:
    """The first rows of one status, up to ``cap``."""

    status: str
    rows: tuple[ListedRow, ...]
    cap: int


class PdfWriter:
    """report.pdf: keeps the first rows of each listed status as they stream past, renders at :meth:`finish`."""

    caps: ClassVar[dict[str, int]] = {
        Status.MISSING: LISTED_MISSING,
        Status.ERROR: LISTED_OTHER,
        Status.INVALID: LISTED_OTHER,
    }  # tests lower them

    def __init__(self, out_dir: Path, columns: list[str], int_columns: list[int]) -> None:
        check_available()
        self.paths = {"report_pdf": out_dir / "report.pdf"}
        self._out_dir = out_dir
        self._keys = _key_positions(columns)
        self._lists: dict[str, list[ListedRow]] = {status: [] for status in self.caps}

    def add(self, rows: Sequence[list[Any]], missing: Sequence[list[Any]]) -> None:
        caps, lists = self.caps, self._lists
        listed = lists[Status.MISSING]
        if len(listed) < caps[Status.MISSING]:
            listed += [self._listed(r) for r in missing[: caps[Status.MISSING] - len(listed)]]
        others = [s for s in (Status.ERROR, Status.INVALID) if len(lists[s]) < caps[s]]
        if not others:
            return
        for row in rows:
            status = row[STATUS]
            if status in others and len(lists[status]) < caps[status]:
                lists[status].append(self._listed(row))

    def finish(self, summary: Summary) -> None:
        import weasyprint
        from weasyprint.urls import URLFetcher

        lists = [RowList(status, tuple(rows), self.caps[status]) for status, rows in self._lists.items()]
        fetcher = URLFetcher(allowed_protocols=())  # the document is self-contained: fetch nothing, ever
        document = weasyprint.HTML(string=render(summary, lists), base_url=str(self._out_dir), url_fetcher=fetcher)
        # summary.json rides inside the PDF: the filed document carries the run's numbers in a form a program reads
        attachment = weasyprint.Attachment(
            string=json.dumps(summary.to_dict(), indent=2, ensure_ascii=False) + "\n",
            name="summary.json",
            description="The run's summary.json",
            relationship="Data",
            url_fetcher=fetcher,
        )
        with _rendering_log() as unreadable, warnings.catch_warnings():
            # WeasyPrint 70 leaves its sRGB profile's file to the garbage collector: not ours to warn about
            warnings.simplefilter("ignore", ResourceWarning)
            # PDF/A-3b: the ISO profile for archiving (fonts embedded, colours defined), which allows attachments
            document.write_pdf(partial_path(self.paths["report_pdf"]), pdf_variant="pdf/a-3b", attachments=[attachment])
        _commit(self.paths)
        if unreadable:
            characters = "".join(dict.fromkeys(unreadable))
            log.warning(
                "report.pdf: no font on this machine draws %d of the report's characters (%s); they show as empty "
                "boxes. HINT: install a font that covers them (Debian: apt-get install fonts-noto-cjk for Chinese, "
                "Japanese and Korean), then write the report again",
                len(characters),
                characters[:20],
            )

    def abort(self) -> None:
        _discard(self.paths)

    def _listed(self, row: list[Any]) -> ListedRow:
        company, organisation, folder, filename = (next((row[i] for i in p if row[i]), "") for p in self._keys)
        return ListedRow(Path(row[SOURCE]).name, row[ROW], company, organisation, folder, filename, row[DETAIL])


@contextlib.contextmanager
def _rendering_log() -> Iterator[list[str]]:
    """Keep WeasyPrint's log out of the run's while it renders: the characters no font draws are gathered for
    one warning (it logs one line per character), anything else becomes a debug line of ours."""
    logger = logging.getLogger("weasyprint")
    unreadable: list[str] = []

    class Gather(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            if match := _NO_GLYPH.search(message):
                unreadable.append(match.group(1))
            else:
                log.debug("WeasyPrint: %s", message)

    handler, propagate = Gather(), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield unreadable
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _key_positions(columns: Sequence[str]) -> list[tuple[int, ...]]:
    """Per key field, the columns of results.csv that may hold its value, best first.

    A value read through --map, a constant or a template has a column of its own ("company", or "company (checked)"
    beside a manifest column so named); otherwise it is the manifest's column of that name, which manifests of
    different headers may spell differently (" Company ", "company"): the first one holding a value is the row's.
    """
    own = columns[: len(columns) - len(OUR_COLUMNS)]
    positions = []
    for field in KEY_FIELDS:
        checked = tuple(i for i, c in enumerate(own) if c == f"{field} (checked)")
        positions.append(checked or tuple(i for i, c in enumerate(own) if c.strip().lower() == field))
    return positions


def render(summary: Summary, lists: Sequence[RowList]) -> str:
    """The document as HTML for WeasyPrint: the first page, then the breakdown and the row lists."""
    title = "Reconciliation report" + (f": {summary.label}" if summary.label else "")
    counts = summary.counts.as_dict()
    version = summary.engine_version or ""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title>",
        f'<meta name="generator" content="reconcile {esc(version)}">',
        f"<style>{_CSS}</style></head><body>",
        '<section id="first-page">',
        f"<h1>{esc(title)}</h1>",
        f'<p class="verdict">{esc(_verdict(summary))}</p>',
        f'<p class="run-id">Run {esc(summary.run_id or "")}</p>',
        _run_table(summary),
        _manifests(summary),
        "<h2>Counts</h2>",
        _composition(counts),
        _counts_table(summary),
        "</section>",
        _delta_section(summary, _NO_VIEWS),  # no link to the previous report.html: a filed PDF travels alone
        _organisations(summary),
        *(_row_list(rows, counts.get(rows.status, 0)) for rows in lists),
        _unchecked(summary.counts.unchecked),
        f"<footer>Written by reconcile {esc(version)}. The manifests' SHA-256 digests "
        "identify exactly which exports this report describes.</footer>",
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"


def _run_table(summary: Summary) -> str:
    fields: list[tuple[str, object]] = [
        ("Label", summary.label),
        ("Outcome", summary.outcome),
        ("Started at", summary.started_at),
        ("Finished at", summary.finished_at),
        ("Duration", f"{summary.duration_seconds:,} s"),
        ("Rows per second", f"{summary.rows_per_second:,}"),
        ("Endpoint", summary.endpoint),
        ("Tenant", summary.tenant_id),
        ("Client id", summary.client_id),
        ("Credential", summary.credential),
        ("Proxy", summary.proxy.api if summary.proxy else None),
        ("Requests", summary.requests),
        ("Retries", summary.retries),
        ("Shard", summary.shard),
        ("Engine version", summary.engine_version),
    ]
    if summary.resumed:
        fields.append(("Attempts", len(summary.attempts)))
    if summary.error:
        fields.append(("Error", f"{summary.error.type}: {summary.error.message}"))
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in fields if v not in (None, ""))
    return f'<table class="meta"><tbody>{rows}</tbody></table>'


def _manifests(summary: Summary) -> str:
    rows = "".join(
        f'<tr><td><div class="path">{esc(m.path)}</div><div class="sha">SHA-256 {esc(m.sha256)}</div></td>'
        f'<td class="num">{m.records:,}</td><td class="num">{m.bytes:,}</td></tr>'
        for m in summary.manifests
    )
    return (
        '<h2>Manifests</h2><table class="manifests"><thead><tr><th>Manifest and its SHA-256</th><th>Records</th>'
        f"<th>Bytes</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _counts_table(summary: Summary) -> str:
    records = max(summary.records, 1)
    rows: list[tuple[object, ...]] = [
        (status, f"{n:,}", f"{100 * n / records:.1f}%") for status, n in summary.counts.as_dict().items()
    ]
    rows.append(("total", f"{summary.records:,}", ""))
    if summary.duplicates:
        rows.append(("of which repeat an earlier row", f"{summary.duplicates:,}", ""))
    return _table(["Status", "Rows", "Share"], rows, css="counts", numeric=(1, 2))


def _organisations(summary: Summary) -> str:
    ranked = sorted(
        (o for o in summary.by_organisation if o.counts.missing),
        key=lambda o: (-o.counts.missing, o.company, o.organisation or ""),
    )
    if not ranked:
        return ""
    chart = _hbar_chart(
        "chart-organisation",
        [(f"{o.company} / {o.organisation}", o.counts.missing, o.counts.total) for o in ranked[:CHART_BARS]],
    )
    rows = [
        (
            o.company,
            o.organisation,
            f"{o.counts.missing:,}",
            f"{o.counts.total:,}",
            f"{100 * o.counts.missing / o.counts.total:.1f}%",
        )
        for o in ranked[:LISTED_MISSING]
    ]
    note = _capped(len(ranked), LISTED_MISSING, "organisations with missing rows", "summary.json (by_organisation)")
    table = _table(
        ["Company", "Organisation", "Missing", "Rows", "Missing share"], rows, css="organisations", numeric=(2, 3, 4)
    )
    return f'<section id="organisations"><h2>Missing rows by organisation</h2>{chart}{note}{table}</section>'


def _row_list(rows: RowList, total: int) -> str:
    if not total:
        return ""
    table = _table(
        ["Manifest", "Row", "Company", "Organisation", "Folder", "Filename", "Detail"],
        [(r.source, r.row, r.company, r.organisation, r.folder, r.filename, r.detail) for r in rows.rows],
        css=f"rows {rows.status}",
        numeric=(1,),
    )
    note = _capped(total, len(rows.rows), f"{rows.status} rows", _FULL_LIST[rows.status])
    return f'<section id="{rows.status}"><h2>{esc(_HEADINGS[rows.status])}</h2>{note}{table}</section>'


def _capped(total: int, shown: int, what: str, where: str) -> str:
    """The note above a list: all of them, or the first ``shown`` and where the rest are."""
    if total > shown:
        text = f"The first {shown:,} of {total:,} {what}; the full list is in {where}."
    else:
        text = f"All {total:,} {what}."
    return f'<p class="note">{esc(text)}</p>'


def _unchecked(unchecked: int) -> str:
    if not unchecked:
        return ""
    return (
        '<section id="unchecked"><h2>Rows not checked</h2>'
        f'<p class="note">{unchecked:,} rows were not checked: the run stopped before reaching them; they are in '
        "results.csv with status unchecked. Re-running the same command resumes the run.</p></section>"
    )


# WeasyPrint's CSS: paged media, no screen layout.  DejaVu ships with every Linux desktop and Debian's fonts-dejavu.
_CSS = """
@page {
  size: A4; margin: 16mm 12mm 16mm;
  font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; font-size: 7.5pt; color: #57606a;
  @top-left { content: string(title); }
  @top-right { content: string(run); }
  @bottom-center { content: counter(page) " / " counter(pages); font-size: 8pt; }
}
@page :first { @top-left { content: none; } @top-right { content: none; } }
body { font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; font-size: 8.5pt; line-height: 1.35; color: #1f2328; }
h1 { font-size: 17pt; margin: 0 0 4pt; string-set: title content(); }
h2 { font-size: 12pt; border-bottom: 0.5pt solid #d0d7de; padding-bottom: 2pt; margin: 14pt 0 5pt;
     break-after: avoid; }
.verdict { font-size: 10.5pt; margin: 0 0 2pt; }
.run-id { color: #57606a; margin: 0 0 6pt; string-set: run content(); }
#delta, #organisations, #missing { break-before: page; }
table { border-collapse: collapse; margin: 4pt 0; width: 100%; }
th, td { border: 0.5pt solid #d0d7de; padding: 1.5pt 4pt; text-align: left; vertical-align: top;
         overflow-wrap: anywhere; }
thead { display: table-header-group; }
thead th { background: #f6f8fa; }
tr { break-inside: avoid; }
td.num { text-align: right; white-space: nowrap; }
table.meta th { width: 30mm; background: #f6f8fa; font-weight: bold; }
table.counts { width: 90mm; }
table.rows { font-size: 7.5pt; table-layout: fixed; }
table.rows th:nth-child(1) { width: 15%; } table.rows th:nth-child(2) { width: 5%; }
table.rows th:nth-child(3) { width: 9%; } table.rows th:nth-child(4) { width: 13%; }
table.rows th:nth-child(5) { width: 14%; } table.rows th:nth-child(6) { width: 25%; }
table.rows thead th { overflow-wrap: normal; }
.sha, code { font-family: "DejaVu Sans Mono", Courier, monospace; font-size: 7pt; white-space: nowrap; }
.sha { color: #1f2328; margin-top: 1pt; }
svg.chart { display: block; width: 100%; height: auto; margin: 4pt 0; }
.note { color: #57606a; margin: 2pt 0 4pt; }
footer { margin-top: 14pt; color: #57606a; font-size: 7.5pt; }
a { color: inherit; text-decoration: none; }
"""
