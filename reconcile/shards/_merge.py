"""Merging shards: the reports of ``run --shard K/N`` for K = 0..N-1, combined into the report one unsharded run
would have written.

Each shard's results.csv already lists its rows in manifest order, then row order, so the merged results.csv is a
k-way merge (:func:`heapq.merge`) of the shards' files: one row of each shard in memory at a time, however large the
run. The rows go through the report's own writers (:mod:`reconcile.report._writers`), statistics and report.html, so
every format comes out as an unsharded run writes it. The counts are recomputed from the rows and must agree with
the shards' summary.json files; every row number of every manifest must appear exactly once.

Before anything is written, :mod:`reconcile.shards._sets` refuses a set that cannot make one run's report: a shard
missing or repeated, shards of different manifests, an unfinished shard (unless ``allow_incomplete``).
"""

from __future__ import annotations

import csv
import dataclasses
import heapq
import uuid
from collections.abc import Generator, Iterator, Sequence
from datetime import datetime
from operator import itemgetter
from pathlib import Path
from typing import Any

from reconcile._version import __version__
from reconcile.engine import claim, format_names
from reconcile.errors import UsageError
from reconcile.model import ExitCode, Key, Status
from reconcile.report import (
    ATTEMPTS,
    CHUNK,
    DETAIL,
    ROW,
    SOURCE,
    STATUS,
    Counts,
    Delta,
    GroupCounts,
    Layout,
    ManifestEntry,
    MergedShard,
    Report,
    ReportStatistics,
    Summary,
    check_options,
    day_reader,
    write_rows,
)

from ._sets import HINT_SHARDS, ShardReport, check_set, read_shard

_AGREED = (
    "endpoint",
    "base_url",
    "endpoint_path",
    "authority",
    "tenant_id",
    "client_id",
    "credential",
    "proxy",
    "pacing",
)
_FORMAT_OF_OUTPUT = {"results_parquet": "parquet", "results_xlsx": "xlsx", "results_json": "json", "report_pdf": "pdf"}


def merge_reports(
    directories: Sequence[Path],
    out_dir: Path,
    *,
    allow_incomplete: bool = False,
    formats: str | Sequence[str] | None = None,
    compare_to: Path | None = None,
    force: bool = False,
) -> Report:
    """Merge the shards' reports in ``directories`` into ``out_dir``; ``formats`` (``"csv,xlsx"`` or a list)
    default to the shards'.

    ``out_dir`` is claimed as a run claims its own (:func:`reconcile.engine._outdir.claim`): created, reconcile's (or
    empty, or ``force``), and locked for the merge.
    """
    if not directories:
        raise UsageError(f"no shard to merge. {HINT_SHARDS}")
    with claim(out_dir, command="merge", force=force):
        wanted = format_names(formats) if formats is not None else None
        return _merge(directories, out_dir, allow_incomplete, wanted, compare_to)


def _merge(
    directories: Sequence[Path],
    out_dir: Path,
    allow_incomplete: bool,
    formats: Sequence[str] | None,
    compare_to: Path | None,
) -> Report:
    reports = check_set([read_shard(Path(d)) for d in directories], out_dir, allow_incomplete=allow_incomplete)
    if formats is None:
        formats = [fmt for name, fmt in _FORMAT_OF_OUTPUT.items() if any(name in r.summary.outputs for r in reports)]
    check_options(formats, compare_to)  # refuse a bad --format or --compare-to before writing anything
    summary, paths = write_rows(
        out_dir,
        list(reports[0].columns),
        formats,
        lambda columns, statistics: _merged_chunks(reports, columns, statistics),
        lambda statistics, paths, changes: merged_summary(reports, statistics, paths, changes),
        compare_to=compare_to,
    )
    return Report(summary, exit_code(summary), paths)


def exit_code(summary: Summary) -> ExitCode:
    """As ``run``'s: 4 when a shard stopped on a fatal error, else 3, 1 or 0 from the counts."""
    return ExitCode.FATAL if summary.outcome == "fatal" else ExitCode.for_counts(summary.counts.as_dict())


def _merged_chunks(
    reports: Sequence[ShardReport], columns: list[str], statistics: ReportStatistics
) -> Iterator[tuple[list[list[Any]], list[Key]]]:
    """The merged rows in chunks, each row with its key; every manifest's rows numbered 1..records exactly once."""
    manifests = reports[0].summary.manifests
    paths = [m.path for m in manifests]
    totals = [sum(r.summary.manifests[i].records for r in reports) for i in range(len(manifests))]
    layouts = _layouts(manifests, columns)
    streams = [_shard_rows(report, paths, len(columns)) for report in reports]
    seen = [0] * len(manifests)  # the last row number merged, per manifest
    try:
        rows: list[list[Any]] = []
        keys: list[Key] = []
        for index, row, values in heapq.merge(*streams, key=itemgetter(0, 1)):
            if row != seen[index] + 1:
                raise _numbering_error(reports, paths[index], seen[index], row)
            seen[index] = row
            own_values, key_of, day_of = layouts[index]
            key = key_of(values)
            day = day_of(own_values(values), key[2])
            statistics.add(values[STATUS], key, day, values[SOURCE], row, values[DETAIL].startswith("duplicate of row"))
            rows.append(values)
            keys.append(key)
            if len(rows) >= CHUNK:
                yield rows, keys
                rows, keys = [], []
        if rows:
            yield rows, keys
    finally:
        for stream in streams:
            stream.close()
    for index, total in enumerate(totals):
        if seen[index] != total:
            raise _numbering_error(reports, paths[index], seen[index], total + 1)
        statistics.end_manifest(total)


def _shard_rows(
    report: ShardReport, paths: Sequence[str], width: int
) -> Generator[tuple[int, int, list[Any]], None, None]:
    """``(manifest index, row, values)`` for each row of a shard's results.csv; ``row`` and ``attempts`` as ints."""
    where = report.results
    with open(where, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        next(reader, None)
        index, last = -1, 0
        for raw in reader:
            values: list[Any] = raw
            try:
                if len(values) != width:
                    raise ValueError(f"{len(values)} fields where the header has {width}")
                row = int(values[ROW])
                values[ROW] = row
                values[ATTEMPTS] = int(values[ATTEMPTS])
            except ValueError as exc:
                raise UsageError(f"{where}, line {reader.line_num}: {exc}. HINT: re-run that shard") from None
            if index < 0 or paths[index] != values[SOURCE] or row <= last:
                # The next manifest of this path: paths repeat only when the library was given a file twice.
                index = next((i for i in range(index + 1, len(paths)) if paths[i] == values[SOURCE]), -1)
                if index < 0:
                    raise UsageError(
                        f"{where}, line {reader.line_num}: row {row} of {values[SOURCE]!r} is out of manifest "
                        "order or of no manifest in summary.json. HINT: re-run that shard"
                    )
            last = row
            yield index, row, values


def _layouts(manifests: Sequence[ManifestEntry], columns: list[str]) -> list[tuple[Any, Any, Any]]:
    """Per manifest: getters of its own values and of the four checked values from a results.csv row, and its day
    reader, from the report's column layout (:class:`reconcile.report.Layout`)."""
    layout = Layout.of_header(columns, [m.columns for m in manifests])
    layouts = []
    for manifest in manifests:
        names = list(manifest.columns)
        positions = layout.positions(names)
        try:
            keys = layout.key_positions(names)
        except KeyError as missing:
            raise UsageError(
                f"{manifest.path}: no column holds {missing.args[0]!r}, yet the shards checked it. "
                "HINT: re-run the shards with this version of reconcile"
            ) from None
        # itemgetter: C speed on the million-row path; a single position would give a value, not a tuple.
        own_values = itemgetter(*positions) if len(positions) > 1 else lambda row, p=positions: [row[i] for i in p]
        layouts.append((own_values, itemgetter(*keys), day_reader(names)))
    return layouts


def _numbering_error(reports: Sequence[ShardReport], path: str, last: int, row: int) -> UsageError:
    dirs = ", ".join(str(r.directory) for r in reports)
    if row <= last:
        return UsageError(
            f"row {row} of {path} appears in more than one shard ({dirs}): the shards overlap. {HINT_SHARDS}"
        )
    gap = f"row {last + 1}" if row == last + 2 else f"rows {last + 1} to {row - 1}"
    return UsageError(
        f"{gap} of {path} {'is' if row == last + 2 else 'are'} in none of the shards ({dirs}): a "
        "results.csv was cut short or edited. HINT: re-run the shard that holds them"
    )


def merged_summary(
    reports: Sequence[ShardReport], statistics: ReportStatistics, paths: dict[str, Path], changes: Delta | None
) -> Summary:
    """The merged report's summary: an unsharded run's, from the rows, plus ``merged_from``."""
    summaries = [r.summary for r in reports]
    counts = Counts.of(statistics.counts)
    summed = Counts.of({status: sum(getattr(s.counts, status) for s in summaries) for status in Status})
    if counts != summed:
        raise UsageError(
            f"the shards' results.csv files hold {counts.as_dict()} but their summary.json files say "
            f"{summed.as_dict()}: a file was edited or cut short. HINT: re-run the shards"
        )
    started = min(s.started_at for s in summaries)
    finished = max(s.finished_at for s in summaries)
    duration = max((_instant(finished) - _instant(started)).total_seconds(), 0.0)
    checked = sum(s.rows_per_second * s.duration_seconds for s in summaries)
    outcomes = {s.outcome for s in summaries}
    errors = [dataclasses.replace(s.error, shard=s.shard) for s in summaries if s.error]
    rps = [s.max_rps for s in summaries]
    labels = list(dict.fromkeys(s.label for s in summaries if s.label))
    first = summaries[0]
    # The platform asked: kept where every shard says the same, else left out.
    agreed = {
        name: getattr(first, name) if all(getattr(s, name) == getattr(first, name) for s in summaries) else None
        for name in _AGREED
    }
    breakdowns = statistics.breakdowns()
    return Summary(
        counts=counts,
        records=statistics.records,
        duplicates=statistics.duplicates,
        complete=all(s.complete for s in summaries) and counts.unchecked == 0,
        outcome=next((o for o in ("fatal", "interrupted") if o in outcomes), "complete"),
        error=errors[0] if errors else None,
        # Merging the same shards again gives the same id.
        run_id=str(uuid.uuid5(uuid.NAMESPACE_URL, "reconcile-merge:" + ",".join(str(s.run_id) for s in summaries))),
        label=", ".join(labels),
        engine_version=__version__,
        started_at=started,
        finished_at=finished,
        duration_seconds=round(duration, 3),
        rows_per_second=round(checked / max(duration, 1e-9), 1),
        manifests=tuple(
            dataclasses.replace(m, records=n) for m, n in zip(first.manifests, statistics.per_manifest, strict=True)
        ),
        **agreed,
        # What the shards used together: the platform saw their sum.
        concurrency=sum(s.concurrency for s in summaries),
        max_attempts=max(s.max_attempts for s in summaries),
        timeout_seconds=max(s.timeout_seconds for s in summaries),
        max_rps=None if None in rps else round(sum(r for r in rps if r is not None), 3),
        requests=sum(s.requests for s in summaries),
        token_fetches=sum(s.token_fetches for s in summaries),
        retries=sum(s.retries for s in summaries),
        throttled=sum(s.throttled for s in summaries),
        resumed=any(s.resumed for s in summaries),
        attempts=tuple(dataclasses.replace(a, shard=s.shard) for s in summaries for a in s.attempts),
        delta=changes,
        by_company=tuple(GroupCounts.from_dict(g) for g in breakdowns["by_company"]),
        by_organisation=tuple(GroupCounts.from_dict(g) for g in breakdowns["by_organisation"]),
        outputs={name: str(path) for name, path in paths.items()},
        shard=None,
        merged_from=tuple(
            MergedShard(
                shard=str(s.shard),
                directory=str(r.directory),
                run_id=s.run_id,
                outcome=s.outcome,
                complete=s.complete,
                started_at=s.started_at,
                finished_at=s.finished_at,
                engine_version=s.engine_version,
                counts=s.counts,
            )
            for r, s in zip(reports, summaries, strict=True)
        ),
    )


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
