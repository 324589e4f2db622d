"""The report: results.csv, missing.csv and summary.json, assembled from the manifests and the journal.

Rows are streamed: each manifest is read again (its own columns verbatim) beside the journal's results in
row order, and written through pandas in chunks, so memory stays flat however long the manifest.  Files are
written under temporary names and renamed, so a crash never leaves a half-written report behind.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__
from .config import Settings
from .engine import ERROR, INVALID, MISSING, PRESENT, STATUSES, UNCHECKED, RunOutcome
from .journal import Journal
from .manifest import KEY_FIELDS, Manifest

OUR_COLUMNS = ("row", "source", "status", "call_id", "detail", "attempts", "checked_at")
CHUNK = 20_000

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


def output_columns(manifests: Sequence[Manifest]) -> list[str]:
    """Every manifest column, in order of first appearance, then ours.  A clash with ours is renamed."""
    columns: list[str] = []
    for manifest in manifests:
        for name in manifest.columns:
            renamed = rename_clash(name)
            if renamed not in columns:
                columns.append(renamed)
    return columns + list(OUR_COLUMNS)


def rename_clash(name: str) -> str:
    return f"{name} (manifest)" if name in OUR_COLUMNS else name


def write_report(outcome: RunOutcome, journal: Journal, settings: Settings, *, run_id: str, label: str,
                 out_dir: Path) -> Summary:
    """Write the report files for ``outcome`` into ``out_dir``."""
    columns = output_columns(outcome.manifests)
    paths = {"results": out_dir / "results.csv", "missing": out_dir / "missing.csv",
             "summary": out_dir / "summary.json"}
    tally = _Tally()
    with _Atomic(paths["results"]) as results, _Atomic(paths["missing"]) as missing:
        header = True
        for frame in _frames(outcome, journal, columns, tally):
            frame.to_csv(results.handle, index=False, header=header, lineterminator="\n")
            frame[frame["status"] == MISSING].to_csv(missing.handle, index=False, header=header,
                                                     lineterminator="\n")
            header = False
        if header:  # no records at all: still write the header
            empty = ",".join(_csv_cell(c) for c in columns) + "\n"
            results.handle.write(empty)
            missing.handle.write(empty)
    data = _summary_data(outcome, journal, settings, tally, run_id=run_id, label=label, paths=paths)
    with _Atomic(paths["summary"]) as summary:
        json.dump(data, summary.handle, indent=2, ensure_ascii=False)
        summary.handle.write("\n")
    return Summary(counts=data["counts"], records=tally.records, complete=data["complete"],
                   exit_code=exit_code(data["counts"], outcome), paths=paths, data=data)


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


class _Tally:
    def __init__(self) -> None:
        self.records = 0
        self.counts: Counter[str] = Counter(dict.fromkeys(STATUSES, 0))
        self.duplicates = 0
        self.per_manifest: list[int] = []
        self.by_org: defaultdict[tuple[str, str], Counter[str]] = defaultdict(Counter)


def _frames(outcome: RunOutcome, journal: Journal, columns: list[str], tally: _Tally) -> Iterator[Any]:
    import pandas as pd

    unchecked_detail = _unchecked_detail(outcome)
    for manifest in outcome.manifests:
        names = [rename_clash(c) for c in manifest.columns]
        positions = [columns.index(n) for n in names]
        key_positions = [[c.strip().lower() for c in manifest.columns].index(k) for k in KEY_FIELDS]
        rows: list[list[object]] = []
        count = 0
        for row, values, result in _merged(manifest, journal):
            count += 1
            status, call_id, detail, attempts, checked_at = result or (UNCHECKED, "", unchecked_detail, 0, "")
            line: list[object] = [""] * len(columns)
            for position, value in zip(positions, values, strict=True):
                line[position] = value
            line[-7:] = [row, str(manifest.path), status, call_id, detail, attempts, checked_at]
            rows.append(line)
            tally.counts[status] += 1
            if detail.startswith("duplicate of row"):
                tally.duplicates += 1
            tally.by_org[(values[key_positions[0]], values[key_positions[1]])][status] += 1
            if len(rows) >= CHUNK:
                yield pd.DataFrame(rows, columns=columns, dtype=object)
                rows = []
        tally.records += count
        tally.per_manifest.append(count)
        if rows:
            yield pd.DataFrame(rows, columns=columns, dtype=object)


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


def _summary_data(outcome: RunOutcome, journal: Journal, settings: Settings, tally: _Tally, *, run_id: str,
                  label: str, paths: dict[str, Path]) -> dict[str, Any]:
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
            {"path": info.path, "sha256": info.sha256, "bytes": info.size, "records": records,
             "columns": list(info.columns)}
            for info, records in zip(outcome.infos, tally.per_manifest, strict=True)
        ],
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
        "by_organisation": [
            {"company": company, "organisation": organisation, **{s: c[s] for s in STATUSES}}
            for (company, organisation), c in sorted(tally.by_org.items())
        ],
        "outputs": {name: str(path) for name, path in paths.items()},
    }


def _csv_cell(value: str) -> str:
    if any(ch in value for ch in ',"\n\r'):
        return '"' + value.replace('"', '""') + '"'
    return value


class _Atomic:
    """A text file written under a temporary name and renamed into place on success."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.temporary = path.with_name(f".{path.name}.partial")

    def __enter__(self) -> _Atomic:
        self.handle = open(self.temporary, "w", encoding="utf-8", newline="")
        return self

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        self.handle.close()
        if exc is None:
            os.replace(self.temporary, self.path)
        else:
            self.temporary.unlink(missing_ok=True)
