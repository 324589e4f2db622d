"""History across nights: the runs of many output directories side by side, as history.csv and history.html.

    history = load_history([Path("reports")])          # a parent of dated run directories, or run directories
    paths = write_history(history, Path("reports"))    # history.csv, history-by-company.csv, history.html

Only each run's summary.json is read (and its delta.csv when summary.json holds no delta counts), never its
results, so a year of nights loads in about a second.  A directory holding reconcile's journal or lock but no
summary.json is a run that stopped before writing its report (killed, crashed, or still going): it is listed
as ``unfinished``, so the night a run failed shows in the history rather than vanishing from it.
"""

from __future__ import annotations

import contextlib
import csv
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconcile.engine import JOURNAL_NAME, LOCK_NAME
from reconcile.errors import UsageError
from reconcile.model import ExitCode, Status, written_whole

from . import _history_html as page
from ._delta import CHANGES
from ._summary import SUMMARY_NAME, load_summary

STATUSES = tuple(s.value for s in Status)  # history.csv's count columns, in summary.json's order
MERGED = "merged"  # where the Kubernetes example merges a run's shards: RUN_ID/merged
CSV_NAME, COMPANY_CSV_NAME, HTML_NAME = "history.csv", "history-by-company.csv", "history.html"
COMPLETE, UNFINISHED = "complete", "unfinished"
COLUMNS = (
    "night",
    "directory",
    "run_id",
    "label",
    "outcome",
    "exit_code",
    "started_at",
    "finished_at",
    "duration_seconds",
    "rows_per_second",
    "records",
    *STATUSES,
    *CHANGES,
    "compared_to",
    "failure",  # what stopped a failed run (``error`` is the count of error rows)
)
COMPANY_COLUMNS = ("night", "run_id", "company", *STATUSES)
_NIGHT = re.compile(r"\d{4}-\d{2}-\d{2}")
_HINT = "HINT: give run --out directories, or a directory holding them (one per night, as deploy/cron/nightly.sh)"


@dataclass(frozen=True, slots=True)
class CompanyCounts:
    """One company's rows by status in one run."""

    company: str
    counts: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class HistoryRun:
    """One run as the history shows it: summary.json's counts and outcome, and its changes since the run before."""

    directory: Path
    night: str  # YYYY-MM-DD: the directory's name when it is a date (as nightly.sh names them), else the start's
    run_id: str = ""
    label: str = ""
    outcome: str = UNFINISHED  # complete, fatal or interrupted as summary.json says; unfinished without one
    exit_code: int | None = None  # None: not known (interrupted: 130 or 143 by the signal; unfinished)
    started_at: str = ""
    finished_at: str = ""
    duration_seconds: float | None = None
    rows_per_second: float | None = None
    records: int | None = None
    counts: Mapping[str, int] = field(default_factory=dict)  # by status; empty when unfinished
    changes: Mapping[str, int] | None = None  # delta counts (newly_missing, recovered, ...); None: not compared
    compared_to: str = ""
    error: str = ""  # what stopped a failed run
    by_company: tuple[CompanyCounts, ...] = ()

    @property
    def failed(self) -> bool:
        """The run did not finish: a fatal error, a signal, or no report at all."""
        return self.outcome != COMPLETE

    @property
    def report_html(self) -> Path | None:
        path = self.directory / "report.html"
        return path if self.outcome != UNFINISHED else None


@dataclass(frozen=True, slots=True)
class History:
    """The runs found, oldest night first, and what was skipped (each a line naming the directory and why)."""

    runs: tuple[HistoryRun, ...]
    warnings: tuple[str, ...] = ()

    @property
    def failed(self) -> tuple[HistoryRun, ...]:
        return tuple(run for run in self.runs if run.failed)


def load_history(directories: Sequence[Path]) -> History:
    """The runs in ``directories``: each a run's --out (or ``reconcile merge``'s), or a directory holding them.

    A directory that holds no report is skipped with a warning; none at all, or a summary.json that cannot be
    read, is a :class:`UsageError` naming it.
    """
    found, warnings = _run_directories(directories)
    runs = [_load_run(directory, report) for directory, report in found]
    if not any(run.outcome != UNFINISHED for run in runs):
        given = ", ".join(str(d) for d in directories)
        raise UsageError(f"history: no report (summary.json) in {given}. {_HINT}")
    for run in runs:
        if run.outcome == UNFINISHED:
            warnings.append(
                f"{run.directory}: a run without summary.json (it was killed or crashed before writing its report, "
                "or is still going): listed as unfinished"
            )
    runs.sort(key=lambda run: (run.night, run.started_at, str(run.directory)))
    return History(tuple(runs), tuple(warnings))


def default_out_dir(directories: Sequence[Path]) -> Path:
    """Where history goes without --out: the first directory when it holds runs, else (a run itself) its parent."""
    first = directories[0]
    return first.parent if _is_report(first) or (first / MERGED / SUMMARY_NAME).is_file() else first


def write_history(history: History, out_dir: Path) -> dict[str, Path]:
    """Write history.csv, history-by-company.csv and history.html into ``out_dir``; their paths by name."""
    paths = {"history": out_dir / CSV_NAME, "history_by_company": out_dir / COMPANY_CSV_NAME}
    paths["history_html"] = out_dir / HTML_NAME
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_csv(paths["history"], COLUMNS, (_csv_row(run) for run in history.runs))
        _write_csv(
            paths["history_by_company"],
            COMPANY_COLUMNS,
            (
                (run.night, run.run_id, company.company, *(company.counts.get(s, 0) for s in STATUSES))
                for run in history.runs
                for company in run.by_company
            ),
        )
        _atomic_text(paths["history_html"], page.render(history, out_dir))
    except OSError as exc:
        raise UsageError(
            f"history --out {out_dir}: cannot write there: {exc.strerror or exc}. HINT: choose another --out"
        ) from None
    return paths


def _run_directories(directories: Sequence[Path]) -> tuple[list[tuple[Path, bool]], list[str]]:
    """Every run directory in ``directories`` (with whether it holds a report), and warnings for the rest."""
    found: dict[Path, tuple[Path, bool]] = {}
    warnings: list[str] = []
    for given in directories:
        if not given.is_dir():
            raise UsageError(f"history: {given}: no such directory. {_HINT}")
        run = _as_run(given)
        if run is not None:
            found.setdefault(run[0].resolve(), run)
            continue
        held = 0
        for child in sorted(p for p in given.iterdir() if p.is_dir() and not p.name.startswith(".")):
            run = _as_run(child)
            if run is not None:
                found.setdefault(run[0].resolve(), run)
                held += 1
            elif _NIGHT.fullmatch(child.name):  # a night's directory without a run: worth a word; logs/ is not
                warnings.append(f"{child}: not a report (no summary.json); skipped")
        if not held:
            warnings.append(f"{given}: not a report (no summary.json), nor a directory of reports; skipped")
    return list(found.values()), warnings


def _as_run(directory: Path) -> tuple[Path, bool] | None:
    """The run in ``directory`` (itself, or the merged report of its shards) and whether it finished; or None."""
    for candidate in (directory, directory / MERGED):
        if _is_report(candidate):
            return candidate, True
    if any((directory / name).exists() for name in (JOURNAL_NAME, LOCK_NAME)):
        return directory, False
    return None


def _is_report(directory: Path) -> bool:
    return (directory / SUMMARY_NAME).is_file()


def _load_run(directory: Path, finished: bool) -> HistoryRun:
    night = _night_of(directory)
    if not finished:
        if not night:
            with contextlib.suppress(OSError):
                night = datetime.fromtimestamp(directory.stat().st_mtime, UTC).date().isoformat()
        return HistoryRun(directory, night, error="no summary.json: the run stopped before writing its report")
    summary = load_summary(
        directory,
        required=("counts",),
        hint="HINT: restore it from a backup, or leave its directory out of the history",
    )
    counts = summary.counts.as_dict()
    delta = summary.delta
    error = summary.error
    return HistoryRun(
        directory=directory,
        night=night or summary.started_at[:10],
        run_id=summary.run_id or "",
        label=summary.label,
        outcome=summary.outcome,
        exit_code=_exit_code(summary.outcome, counts),
        started_at=summary.started_at,
        finished_at=summary.finished_at,
        duration_seconds=_float(summary.duration_seconds),
        rows_per_second=_float(summary.rows_per_second),
        records=summary.records,
        counts=counts,
        changes=_changes(directory, delta.counts if delta else None),
        compared_to=delta.compared_to if delta else "",
        error=f"{error.type}: {error.message}" if error else "",
        by_company=tuple(CompanyCounts(c.company, c.counts.as_dict()) for c in summary.by_company),
    )


def _night_of(directory: Path) -> str:
    """The night a directory is named after: its own name, or its parent's for RUN_ID/merged."""
    for name in (directory.name, directory.parent.name):
        if _NIGHT.fullmatch(name):
            return name
    return ""


def _changes(directory: Path, delta: Mapping[str, Any] | None) -> dict[str, int] | None:
    """The run's delta counts: summary.json's, else counted from delta.csv's ``change`` column; None if neither."""
    if delta:
        return {change: _int(delta.get(change)) for change in CHANGES}
    path = directory / "delta.csv"
    if not path.is_file():
        return None
    counts = dict.fromkeys(CHANGES, 0)
    with open(path, encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            if row.get("change") in counts:
                counts[row["change"]] += 1
    return counts


def _exit_code(outcome: str, counts: Mapping[str, int]) -> int | None:
    """The code `reconcile run` exited with, from what summary.json records (the signal of an interruption it
    does not, so that one is not known)."""
    if outcome == "fatal":
        return ExitCode.FATAL
    return ExitCode.for_counts(counts) if outcome == COMPLETE else None


def _csv_row(run: HistoryRun) -> list[object]:
    changes = run.changes or {}
    return [
        run.night,
        run.directory,
        run.run_id,
        run.label,
        run.outcome,
        _blank(run.exit_code),
        run.started_at,
        run.finished_at,
        _blank(run.duration_seconds),
        _blank(run.rows_per_second),
        _blank(run.records),
        *(run.counts[s] if run.counts else "" for s in STATUSES),
        *(changes[c] if changes else "" for c in CHANGES),
        run.compared_to,
        run.error,
    ]


def _blank(value: object) -> object:
    return "" if value is None else value


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    with written_whole(path) as temporary, open(temporary, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _atomic_text(path: Path, text: str) -> None:
    with written_whole(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
