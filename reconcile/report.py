"""The report: results.csv, missing.csv and summary.json, plus any of Parquet, XLSX, JSON Lines, report.html and
delta.csv, assembled from the manifests and the journal.

Rows are streamed: each manifest is read again (its own columns verbatim) beside the journal's results in row
order, in chunks of :data:`CHUNK` rows that every writer, the tally and the comparison with an earlier run take
in turn, so memory stays flat however long the manifest.  Files are written under temporary names and renamed,
so a crash never leaves a half-written report behind.  The same input gives the same report, row for row and
count for count, in the same order: everything listed is sorted, ties by name.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__, delta, exports, html_report
from .config import Settings
from .engine import ERROR, INVALID, MISSING, PRESENT, STATUSES, UNCHECKED, RunOutcome
from .journal import Journal
from .manifest import KEY_FIELDS, Key, Manifest
from .readers import ReadOptions
from .shard import Shard
from .tally import Tally, day_reader

OUR_COLUMNS = ("row", "source", "status", "call_id", "detail", "attempts", "checked_at")
CHUNK = 5_000
ROW, SOURCE, STATUS, CALL_ID, DETAIL, ATTEMPTS, CHECKED_AT = range(-7, 0)  # our columns, at the end of each row

EXIT_ALL_PRESENT, EXIT_SOME_MISSING, EXIT_USAGE, EXIT_ROW_PROBLEMS, EXIT_FATAL = 0, 1, 2, 3, 4
EXIT_SIGNAL = {"SIGINT": 130, "SIGTERM": 143}


@dataclass(frozen=True, slots=True)
class Summary:
    """What the report says, for the CLI to print and exit on."""

    counts: dict[str, int]
    records: int
    complete: bool
    exit_code: int
    paths: dict[str, Path]
    data: dict[str, Any]


def check_options(formats: Sequence[str], compare_to: Path | None) -> None:
    """Refuse report options that cannot work before any request is sent, not after the run."""
    exports.check_formats(formats)
    if compare_to is not None:
        delta.open_previous(compare_to)


def output_columns(manifests: Sequence[Manifest]) -> list[str]:
    """Every manifest column, in order of first appearance, then each of the four checked values that no column
    shows as checked (mapped, templated or constant), then ours.  A clash with ours is renamed."""
    columns, added = _layout(manifests)
    return columns + [name for _, name in added] + list(OUR_COLUMNS)


def rename_clash(name: str) -> str:
    return f"{name} (manifest)" if name in OUR_COLUMNS else name


def _layout(manifests: Sequence[Manifest]) -> tuple[list[str], list[tuple[int, str]]]:
    """The manifests' columns, and the added key columns as (index in KEY_FIELDS, column name).

    A value read through ``--map``, ``--filename-template`` or a constant is shown in a column of its own,
    named after the field ("company (checked)" when the manifest already has a column "company"), so that
    results.csv always says what was asked and a later ``--compare-to`` can match rows by it.
    """
    columns: list[str] = []
    for manifest in manifests:
        for name in manifest.columns:
            renamed = rename_clash(name)
            if renamed not in columns:
                columns.append(renamed)
    options = manifests[0].options if manifests else ReadOptions()
    derived = {name for name, column in options.columns if column.strip().lower() != name}
    derived |= {name for name, _ in options.constants}
    if options.filename_template is not None:
        derived.add("filename")
    named = {c.strip().lower() for c in columns}
    added = [
        (index, f"{field} (checked)" if field in named else field)
        for index, field in enumerate(KEY_FIELDS)
        if field in derived or field not in named
    ]
    return columns, added


def write_report(
    outcome: RunOutcome,
    journal: Journal,
    settings: Settings,
    *,
    run_id: str,
    label: str,
    out_dir: Path,
    formats: Sequence[str] = ("csv",),
    compare_to: Path | None = None,
    shard: Shard | None = None,
) -> Summary:
    """Write the report files for ``outcome`` into ``out_dir``: csv always, and each of ``formats``."""

    def summarize(tally: Tally, paths: dict[str, Path], changes: dict[str, Any] | None) -> dict[str, Any]:
        data = _summary_data(
            outcome, journal, settings, tally, run_id=run_id, label=label, paths=paths, changes=changes
        )
        data["shard"] = str(shard) if shard is not None else None
        return data

    data, paths, records = write_rows(
        out_dir,
        output_columns(outcome.manifests),
        formats,
        lambda columns, tally: _chunks(outcome, journal, columns, tally, shard),
        summarize,
        compare_to=compare_to,
    )
    return Summary(
        counts=data["counts"],
        records=records,
        complete=data["complete"],
        exit_code=exit_code(data["counts"], outcome),
        paths=paths,
        data=data,
    )


Chunks = Iterator[tuple[list[list[Any]], list[Key]]]


def write_rows(
    out_dir: Path,
    columns: list[str],
    formats: Sequence[str],
    chunks: Callable[[list[str], Tally], Chunks],
    summarize: Callable[[Tally, dict[str, Path], dict[str, Any] | None], dict[str, Any]],
    *,
    compare_to: Path | None = None,
) -> tuple[dict[str, Any], dict[str, Path], int]:
    """Stream report rows to every writer, the tally and the comparison; then summary.json and report.html.

    ``chunks`` yields the rows (counting them in the tally it is given); ``summarize`` builds summary.json's
    data from the tally.  Shared by a run's report and ``reconcile merge``.  Returns (data, paths, records).
    """
    width = len(columns)
    writers = exports.open_writers(out_dir, columns, formats, [width + ROW, width + ATTEMPTS])
    tally = Tally(STATUSES, MISSING, spill_dir=out_dir)
    comparison: delta.Comparison | None = None
    paths = {name: path for writer in writers for name, path in writer.paths.items()}
    try:
        if compare_to is not None:
            comparison = delta.Comparison(delta.open_previous(compare_to), out_dir)
        for rows, keys in chunks(columns, tally):
            missing = [row for row in rows if row[STATUS] == MISSING]
            for writer in writers:
                writer.add(rows, missing)
            if comparison is not None:
                comparison.add(
                    (key, row[STATUS], row[CALL_ID], row[SOURCE], row[ROW]) for key, row in zip(keys, rows, strict=True)
                )
        changes = None
        if comparison is not None:
            paths["delta"] = out_dir / "delta.csv"
            changes = {
                "compared_to": str(compare_to),
                "run_id": comparison.previous.run_id,
                "engine_version": comparison.previous.engine_version,
                "counts": comparison.write(paths["delta"]),
            }
        paths["report_html"] = out_dir / "report.html"
        paths["summary"] = out_dir / "summary.json"
        data = summarize(tally, paths, changes)
        for writer in writers:
            writer.finish(data)
        writers = []
        top, folders_missing = tally.top_folders(html_report.TOP_FOLDERS)
        views = html_report.Views(tuple(top), folders_missing, tuple(tally.day_counts()), tuple(tally.first_missing))
        html_report.write(paths["report_html"], data, views)
    finally:
        for writer in writers:
            writer.abort()
        if comparison is not None:
            comparison.close()
        tally.close()
    _write_json(paths["summary"], data)
    return data, paths, tally.records


def exit_code(counts: dict[str, int], outcome: RunOutcome) -> int:
    if outcome.fatal is not None:
        return EXIT_FATAL
    if outcome.interrupted:
        return EXIT_SIGNAL.get(outcome.interrupted, EXIT_FATAL)
    if counts.get(INVALID, 0) or counts.get(ERROR, 0) or counts.get(UNCHECKED, 0):
        return EXIT_ROW_PROBLEMS
    if counts.get(MISSING, 0):
        return EXIT_SOME_MISSING
    return EXIT_ALL_PRESENT


def _chunks(
    outcome: RunOutcome,
    journal: Journal,
    columns: list[str],
    tally: Tally,
    shard: Shard | None = None,
) -> Iterator[tuple[list[list[Any]], list[Key]]]:
    """The report's rows in chunks, each with the four values its row was checked with; counted in ``tally``."""
    unchecked = (UNCHECKED, "", _unchecked_detail(outcome), 0, "")
    manifest_columns, added = _layout(outcome.manifests)
    for manifest in outcome.manifests:
        place = _placer(manifest, columns, len(manifest_columns), [index for index, _ in added])
        key_of, add, day_of = manifest.key_of, tally.add, day_reader(manifest.columns)
        source = str(manifest.path)
        rows: list[list[Any]] = []
        keys: list[Key] = []
        count = 0
        for row, values, result in _merged(manifest, journal):
            key = key_of(values)
            if shard is not None and not shard.holds(key):
                continue  # another shard's row: that shard reports it
            count += 1
            status, call_id, detail, attempts, checked_at = result or unchecked
            line = place(values, key)
            line += (row, source, status, call_id, detail, attempts, checked_at)
            rows.append(line)
            keys.append(key)
            add(status, key, day_of(values, key[2]), source, row, detail.startswith("duplicate of row"))
            if len(rows) >= CHUNK:
                yield rows, keys
                rows, keys = [], []
        tally.end_manifest(count)
        if rows:
            yield rows, keys


def _placer(
    manifest: Manifest, columns: list[str], manifest_width: int, fills: list[int]
) -> Callable[[list[str], Key], list[Any]]:
    """A function giving a row's report line up to our columns: its values in the report's manifest columns,
    then the added key columns.

    With one manifest (or several with the same header) its columns are the report's first ones, in order, and
    the line is a copy of its values, extended: only a manifest whose columns sit elsewhere in a wider report
    needs them placed one by one.  Always a new list: the caller appends our columns to it.
    """
    positions = [columns.index(rename_clash(c)) for c in manifest.columns]
    gap = [""] * (manifest_width - len(positions))
    if positions == list(range(len(positions))):
        if not fills:
            return lambda values, key: values + gap
        return lambda values, key: [*values, *gap, *(key[index] for index in fills)]

    def place(values: list[str], key: Key) -> list[Any]:
        line: list[Any] = [""] * manifest_width
        for position, value in zip(positions, values, strict=True):
            line[position] = value
        line.extend(key[index] for index in fills)
        return line

    return place


def _merged(manifest: Manifest, journal: Journal) -> Iterator[tuple[int, list[str], tuple[Any, ...] | None]]:
    """Each manifest row with its journal result (None when it was never resolved)."""
    results = journal.results(manifest.index)
    pending = next(results, None)
    for row, _line, values in manifest.rows():
        while pending is not None and pending[0] < row:
            pending = next(results, None)
        if pending is not None and pending[0] == row:
            yield row, values, pending[1:]
        else:
            yield row, values, None


def _unchecked_detail(outcome: RunOutcome) -> str:
    if outcome.fatal is not None:
        return f"not checked: the run stopped ({type(outcome.fatal).__name__})"
    if outcome.interrupted:
        return f"not checked: the run was interrupted ({outcome.interrupted}); re-run the same command to resume"
    return "not checked"


def _summary_data(
    outcome: RunOutcome,
    journal: Journal,
    settings: Settings,
    tally: Tally,
    *,
    run_id: str,
    label: str,
    paths: dict[str, Path],
    changes: dict[str, Any] | None,
) -> dict[str, Any]:
    counts = {status: tally.counts[status] for status in (PRESENT, MISSING, INVALID, ERROR, UNCHECKED)}
    complete = outcome.fatal is None and not outcome.interrupted and counts[UNCHECKED] == 0
    duration = max(outcome.duration, 1e-9)
    error = None
    if outcome.fatal is not None:
        error = {"type": type(outcome.fatal).__name__, "message": str(outcome.fatal)}
        for name in ("error", "error_codes", "trace_id", "correlation_id"):
            if getattr(outcome.fatal, name, None):
                error[name] = getattr(outcome.fatal, name)
    return {
        "counts": counts,
        "records": tally.records,
        "duplicates": tally.duplicates,
        "complete": complete,
        "outcome": "fatal" if outcome.fatal else ("interrupted" if outcome.interrupted else "complete"),
        "error": error,
        "run_id": run_id,
        "label": label,
        "engine_version": __version__,
        "started_at": outcome.started_at,
        "finished_at": outcome.finished_at,
        "duration_seconds": round(outcome.duration, 3),
        "rows_per_second": round(outcome.checked / duration, 1),
        "manifests": [
            {
                "path": info.path,
                "sha256": info.sha256,
                "bytes": info.size,
                "records": records,
                "columns": list(info.columns),
            }
            for info, records in zip(outcome.infos, tally.per_manifest, strict=True)
        ],
        "endpoint": settings.endpoint_url,
        "base_url": settings.base_url,
        "endpoint_path": settings.endpoint_path,
        "authority": settings.authority,
        "tenant_id": settings.tenant_id,
        "client_id": settings.client_id,
        "concurrency": settings.concurrency,
        "max_attempts": settings.max_attempts,
        "timeout_seconds": settings.timeout,
        "max_rps": settings.max_rps,
        "requests": outcome.requests,
        "token_fetches": outcome.token_fetches,
        "retries": outcome.retries,
        "throttled": outcome.throttled,
        "resumed": outcome.attempt > 1,
        "attempts": journal.attempts(),
        "delta": changes,
        **tally.breakdowns(),
        "outputs": {name: str(path) for name, path in paths.items()},
    }


def _write_json(path: Path, data: dict[str, Any]) -> None:
    temporary = exports.partial(path)
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, ensure_ascii=False)
        handle.write("\n")
    os.replace(temporary, path)
