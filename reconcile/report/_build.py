"""The report: results.csv, missing.csv and summary.json, plus any of Parquet, XLSX, JSON Lines, report.html and
delta.csv, assembled from the manifests and the journal.

Rows are streamed in chunks (:mod:`reconcile.report._rows`) to every writer, the statistics and the comparison
with an earlier run, while the run goes, following the commit watermark.  Files are written under temporary names
and renamed; the same input gives the same report however it was streamed (docs/design.md, "The report pipeline").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconcile._version import __version__
from reconcile.config import Settings
from reconcile.engine import END, CommitWatermark, Journal, RunOutcome
from reconcile.input import Manifest, Shard
from reconcile.model import ExitCode, Key, Status

from . import _delta as delta
from . import _html as html_report
from . import _writers as exports
from ._rows import ATTEMPTS, CALL_ID, CHUNK, ROW, SOURCE, STATUS, ReportRows, Unchecked
from ._statistics import SPILL_PREFIX, ReportStatistics
from ._summary import (
    SUMMARY_NAME,
    Attempt,
    Counts,
    Delta,
    ErrorInfo,
    GroupCounts,
    ManifestEntry,
    PacingSummary,
    Proxy,
    Summary,
)

log = logging.getLogger("reconcile.report._build")

# Formats cheap enough to write between requests; a workbook (openpyxl, ~9,000 rows/s) would hold the event loop
# for half a second per chunk, so with xlsx the report is written after the run.  pdf only keeps the first rows
# while they stream, and renders at the end.
STREAMED_FORMATS = frozenset({"csv", "json", "parquet", "pdf"})


@dataclass(frozen=True, slots=True)
class Report:
    """A report written by a run or a merge: its summary (summary.json), its files, and the exit code it means."""

    summary: Summary
    exit_code: ExitCode
    paths: dict[str, Path]

    @property
    def counts(self) -> dict[str, int]:
        return self.summary.counts.as_dict()

    @property
    def records(self) -> int:
        return self.summary.records

    @property
    def complete(self) -> bool:
        return self.summary.complete


def check_options(formats: Sequence[str], compare_to: Path | None) -> None:
    """Refuse report options that cannot work before any request is sent, not after the run."""
    exports.check_formats(formats)
    if compare_to is not None:
        delta.open_previous(compare_to)


class ReportFiles:
    """The report's files while rows stream into them: every format's writer, the statistics, the comparison."""

    def __init__(self, out_dir: Path, columns: list[str], formats: Sequence[str], compare_to: Path | None) -> None:
        width = len(columns)
        self.statistics = ReportStatistics(tuple(Status), Status.MISSING, spill_dir=out_dir)
        self._out_dir = out_dir
        self._compare_to = compare_to
        self._comparison: delta.Comparison | None = None
        self._writers: list[exports.Writer] = []
        try:
            self._writers = exports.open_writers(out_dir, columns, formats, [width + ROW, width + ATTEMPTS])
            if compare_to is not None:
                self._comparison = delta.Comparison(delta.open_previous(compare_to), out_dir)
        except BaseException:
            self.abort()
            raise
        self.paths = {name: path for writer in self._writers for name, path in writer.paths.items()}

    def add(self, rows: list[list[Any]], keys: list[Key]) -> None:
        missing = [row for row in rows if row[STATUS] == Status.MISSING]
        for writer in self._writers:
            writer.add(rows, missing)
        if self._comparison is not None:
            self._comparison.add(
                (key, row[STATUS], row[CALL_ID], row[SOURCE], row[ROW]) for key, row in zip(keys, rows, strict=True)
            )

    def finish(self, summarize: Summarize) -> tuple[Summary, dict[str, Path]]:
        """Close every file under its final name, then write delta.csv, report.html and summary.json from
        ``summarize``'s summary.  Returns it, and the report's paths."""
        paths, out_dir = self.paths, self._out_dir
        try:
            changes = None
            if self._comparison is not None:
                paths["delta"] = out_dir / "delta.csv"
                changes = Delta(
                    compared_to=str(self._compare_to),
                    run_id=self._comparison.previous.run_id,
                    engine_version=self._comparison.previous.engine_version,
                    counts=self._comparison.write(paths["delta"]),
                )
            paths["report_html"] = out_dir / "report.html"
            paths["summary"] = out_dir / SUMMARY_NAME
            summary = summarize(self.statistics, paths, changes)
            for writer in self._writers:
                writer.finish(summary)
            self._writers = []
            top, folders_missing = self.statistics.top_folders(html_report.TOP_FOLDERS)
            previous = self._compare_to / "report.html" if self._compare_to is not None else None
            views = html_report.Views(
                tuple(top),
                folders_missing,
                tuple(self.statistics.day_counts()),
                tuple(self.statistics.first_missing),
                html_report.relative_href(out_dir, previous) if previous is not None and previous.is_file() else None,
            )
            html_report.write(paths["report_html"], summary, views)
        finally:
            self.abort()
        summary.write(paths["summary"])
        return summary, paths

    def abort(self) -> None:
        """Remove what is not finished; what :meth:`finish` renamed stays."""
        writers, self._writers = self._writers, []
        for writer in writers:
            writer.abort()
        if self._comparison is not None:
            self._comparison.close()
            self._comparison = None
        self.statistics.close()


Chunks = Iterator[tuple[list[list[Any]], list[Key]]]
Summarize = Callable[[ReportStatistics, dict[str, Path], Delta | None], Summary]


def write_rows(
    out_dir: Path,
    columns: list[str],
    formats: Sequence[str],
    chunks: Callable[[list[str], ReportStatistics], Chunks],
    summarize: Summarize,
    *,
    compare_to: Path | None = None,
) -> tuple[Summary, dict[str, Path]]:
    """Stream report rows to every writer, the tally and the comparison; then summary.json and report.html.

    ``chunks`` yields the rows (counting them in the tally it is given); ``summarize`` builds the summary from
    the tally.  Used by ``reconcile merge``.  Returns the summary and the report's paths.
    """
    files = ReportFiles(out_dir, columns, formats, compare_to)
    try:
        for rows, keys in chunks(columns, files.statistics):
            files.add(rows, keys)
    except BaseException:
        files.abort()
        raise
    return files.finish(summarize)


class RunReport:
    """A run's report: written while the run goes (:meth:`following`), completed by :meth:`finish`."""

    def __init__(
        self,
        manifests: Sequence[Manifest],
        journal: Journal,
        settings: Settings,
        *,
        run_id: str,
        label: str,
        out_dir: Path,
        formats: Sequence[str] = ("csv",),
        compare_to: Path | None = None,
        shard: Shard | None = None,
        chunk: int = CHUNK,
    ) -> None:
        self._manifests, self._journal, self._settings, self._shard = manifests, journal, settings, shard
        self._chunk = chunk  # rows handed to the writers at once
        self._run_id, self._label, self._out_dir = run_id, label, out_dir
        self._formats, self._compare_to = tuple(formats), compare_to
        self._rows: ReportRows | None = None
        self._files: ReportFiles | None = None

    @contextlib.asynccontextmanager
    async def following(self, watermark: CommitWatermark) -> AsyncIterator[None]:
        """Write the report's rows as ``watermark`` commits them, for as long as the block runs.

        Anything that goes wrong here only costs time: the rows written so far are dropped and :meth:`finish`
        writes the report from the start, as a run did before it streamed.
        """
        if not set(exports.check_formats(self._formats)) <= STREAMED_FORMATS:
            yield
            return
        self._open()
        stop = asyncio.Event()
        task = asyncio.create_task(self._follow(watermark, stop))
        try:
            yield
        finally:
            stop.set()
            watermark.moved.set()
            try:
                await task
            except Exception as exc:  # only the streaming is lost: finish() starts over
                log.warning("writing the report during the run failed (%s); it is written after the run", exc)
                self.abort()

    async def finish(self, outcome: RunOutcome) -> Report:
        """Write the rest of the rows, then the summary: the report is complete."""
        rows, files = (self._rows, self._files) if self._rows and self._files else self._open()
        try:
            await rows.advance(END, files, _unchecked(outcome))
        except BaseException:
            self.abort()
            raise
        finally:
            rows.close()

        def summarize(statistics: ReportStatistics, paths: dict[str, Path], changes: Delta | None) -> Summary:
            return _summary(
                outcome,
                self._journal,
                self._settings,
                statistics,
                run_id=self._run_id,
                label=self._label,
                paths=paths,
                changes=changes,
                shard=self._shard,
            )

        self._rows = self._files = None
        summary, paths = files.finish(summarize)
        return Report(summary, exit_code(summary.counts.as_dict(), outcome), paths)

    def abort(self) -> None:
        """Drop what was written (a run whose report must not be written, or a stream that failed)."""
        if self._rows is not None:
            self._rows.close()
            self._rows = None
        if self._files is not None:
            self._files.abort()
            self._files = None

    def _open(self) -> tuple[ReportRows, ReportFiles]:
        _discard_leftovers(self._out_dir)
        rows = self._rows = ReportRows(self._manifests, self._journal, self._shard, chunk=self._chunk)
        files = self._files = ReportFiles(self._out_dir, rows.columns, self._formats, self._compare_to)
        return rows, files

    async def _follow(self, watermark: CommitWatermark, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await watermark.moved.wait()
            watermark.moved.clear()
            if self._rows is None or self._files is None:
                return
            await self._rows.advance(watermark.committed, self._files)


def supersede(out_dir: Path) -> None:
    """Remove a finished report from ``out_dir``: an attempt that starts changes the journal it was read from,
    so the report on disk must not outlive that, even if the attempt is killed before writing its own.
    summary.json goes first: a report without it is never taken for a finished one."""
    for name in exports.REPORT_NAMES:
        (out_dir / name).unlink(missing_ok=True)


def _discard_leftovers(out_dir: Path) -> None:
    """What a killed run left in ``out_dir``: half-written report files (perhaps of formats not asked for
    now) and the tally's and the comparison's work files.  The run that resumes writes its own."""
    exports.discard_partials(out_dir)
    for prefix in (SPILL_PREFIX, delta.WORK_PREFIX):
        for path in out_dir.glob(f"{prefix}*.sqlite"):
            path.unlink(missing_ok=True)


def exit_code(counts: dict[str, int], outcome: RunOutcome) -> ExitCode:
    if outcome.fatal is not None:
        return ExitCode.FATAL
    if outcome.interrupted:
        return ExitCode.__members__.get(outcome.interrupted, ExitCode.FATAL)
    return ExitCode.for_counts(counts)


def _unchecked(outcome: RunOutcome) -> Unchecked:
    """What a row that was never resolved shows: why it was not."""
    if outcome.fatal is not None:
        detail = f"not checked: the run stopped ({type(outcome.fatal).__name__})"
    elif outcome.interrupted:
        detail = f"not checked: the run was interrupted ({outcome.interrupted}); re-run the same command to resume"
    else:
        detail = "not checked"
    return (Status.UNCHECKED, "", detail, 0, "")


def _summary(
    outcome: RunOutcome,
    journal: Journal,
    settings: Settings,
    statistics: ReportStatistics,
    *,
    run_id: str,
    label: str,
    paths: dict[str, Path],
    changes: Delta | None,
    shard: Shard | None,
) -> Summary:
    counts = Counts.of(statistics.counts)
    breakdowns = statistics.breakdowns()
    return Summary(
        counts=counts,
        records=statistics.records,
        duplicates=statistics.duplicates,
        complete=outcome.fatal is None and not outcome.interrupted and counts.unchecked == 0,
        outcome="fatal" if outcome.fatal else ("interrupted" if outcome.interrupted else "complete"),
        error=ErrorInfo.of(outcome.fatal) if outcome.fatal is not None else None,
        run_id=run_id,
        label=label,
        engine_version=__version__,
        started_at=outcome.started_at,
        finished_at=outcome.finished_at,
        duration_seconds=round(outcome.duration, 3),
        rows_per_second=round(outcome.checked / max(outcome.duration, 1e-9), 1),
        manifests=tuple(
            ManifestEntry(info.path, info.sha256, info.size, records, tuple(info.columns))
            for info, records in zip(outcome.infos, statistics.per_manifest, strict=True)
        ),
        endpoint=settings.endpoint_url,
        base_url=settings.base_url,
        endpoint_path=settings.endpoint_path,
        authority=settings.authority,
        tenant_id=settings.tenant_id,
        client_id=settings.client_id,
        credential=settings.credential_kind,
        proxy=Proxy(  # redacted: a proxy's password is never written
            api=settings.proxies.describe(settings.endpoint_url),
            identity_provider=settings.proxies.describe(settings.token_url),
        ),
        concurrency=outcome.pacing.concurrency_final,
        max_attempts=settings.max_attempts,
        timeout_seconds=settings.timeout,
        max_rps=settings.max_rps,
        requests=outcome.requests,
        token_fetches=outcome.token_fetches,
        retries=outcome.retries,
        throttled=outcome.pacing.throttled,
        pacing=PacingSummary.of(outcome.pacing),
        resumed=outcome.attempt > 1,
        attempts=tuple(Attempt(**attempt) for attempt in journal.attempts()),
        delta=changes,
        by_company=tuple(GroupCounts.from_dict(g) for g in breakdowns["by_company"]),
        by_organisation=tuple(GroupCounts.from_dict(g) for g in breakdowns["by_organisation"]),
        outputs={name: str(path) for name, path in paths.items()},
        shard=str(shard) if shard is not None else None,
    )
