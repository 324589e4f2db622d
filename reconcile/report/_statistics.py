"""Report statistics: what the report counts while its rows stream past, for summary.json, the XLSX Summary
and report.html.

Counts per status, company and organisation are small (exports name a few hundred organisations at most) and
stay in memory.  Folders can be as many as rows (some systems give every call its own folder), so folder counts
spill into a SQLite file once they pass :data:`FOLDERS_IN_MEMORY`; memory stays flat either way.
"""

from __future__ import annotations

import os
import re
import sqlite3
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from reconcile.model import Key

SPILL_PREFIX = ".report-folders-"  # the spill file's name starts so, in the report's directory
FOLDERS_IN_MEMORY = 50_000  # ~15 MB of (company, organisation, folder) -> counts before spilling
FIRST_MISSING = 100  # missing rows kept for report.html

# Column names that hold a call's date, normalised (lower case, letters and digits only), best first.
DATE_COLUMNS = (
    "calldate",
    "datecreated",
    "date",
    "recordingdate",
    "calldatetime",
    "startdate",
    "starttime",
    "createddate",
    "createdat",
    "created",
    "timestamp",
    "datetime",
)
_WORDS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
_CACHE = 10_000  # distinct date prefixes or folders remembered; cleared when full
_VALUE_DATE = re.compile(r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?!\d)")
_COMPACT_DATE = re.compile(r"(\d{4})(\d{2})(\d{2})(?!\d)")
_FOLDER_DATE = re.compile(r"(?<!\d)(\d{4})[-/_.](\d{2})[-/_.](\d{2})(?!\d)")


@dataclass(frozen=True, slots=True)
class FolderCount:
    """Rows and missing rows of one folder of one organisation."""

    company: str
    organisation: str
    folder: str
    total: int
    missing: int


@dataclass(frozen=True, slots=True)
class MissingRow:
    """A missing row, as report.html lists it."""

    source: str
    row: int
    company: str
    organisation: str
    folder: str
    filename: str
    day: str


@dataclass(frozen=True, slots=True)
class DayCount:
    """Rows and missing rows of one day (``YYYY-MM-DD``)."""

    day: str
    total: int
    missing: int


def date_column(columns: Sequence[str]) -> int | None:
    """The position of the column that holds a call's date, e.g. ``call_date`` or ``DateCreated``; None if none."""
    normalised = [re.sub(r"[^a-z0-9]", "", c.lower()) for c in columns]
    for wanted in DATE_COLUMNS:
        if wanted in normalised:
            return normalised.index(wanted)
    for position, name in enumerate(columns):
        # "date" as a word of the name (recording_date_utc, CallDate), not inside one (validated, candidate)
        if "date" in (word.lower() for word in _WORDS.findall(name)):
            return position
    return None


def day_of_value(value: str) -> str:
    """``YYYY-MM-DD`` from a value that starts with a date (``2026-11-25T08:28:35-05:00``, ``20261125``); else ''.

    The date is taken as written: a call at 23:30 local time belongs to that local day, whatever its offset.
    """
    match = _VALUE_DATE.match(value) or _COMPACT_DATE.match(value)
    return _valid(match.groups()) if match else ""


def day_of_folder(folder: str) -> str:
    """``YYYY-MM-DD`` from a folder that contains one, e.g. ``2026/11/25/inbound``; else ''."""
    match = _FOLDER_DATE.search(folder)
    return _valid(match.groups()) if match else ""


def _valid(parts: Sequence[str]) -> str:
    year, month, day = (int(p) for p in parts)
    if not 1970 <= year <= 2100:
        return ""
    try:
        return date(year, month, day).isoformat()
    except ValueError:
        return ""


def day_reader(columns: Sequence[str]) -> Callable[[list[str], str], str]:
    """A function of (values, folder) giving the row's day: from a date column when there is one, else the folder.

    Parsing a date per row would cost seconds per million rows, while a manifest holds few distinct days: the
    answers are cached by the value's first 11 characters (all a date's pattern looks at) and by folder.
    """
    position = date_column(columns)
    by_prefix: dict[str, str] = {}
    by_folder: dict[str, str] = {}

    def from_folder(folder: str) -> str:
        day = by_folder.get(folder)
        if day is None:
            if len(by_folder) >= _CACHE:
                by_folder.clear()
            day = by_folder[folder] = day_of_folder(folder)
        return day

    if position is None:
        return lambda _values, folder: from_folder(folder)

    def read(values: list[str], folder: str) -> str:
        prefix = values[position][:11]
        day = by_prefix.get(prefix)
        if day is None:
            if len(by_prefix) >= _CACHE:
                by_prefix.clear()
            day = by_prefix[prefix] = day_of_value(prefix)
        return day or from_folder(folder)

    return read


class ReportStatistics:
    """Counts of the rows seen so far; :meth:`close` removes the spill file, if any."""

    def __init__(
        self,
        statuses: Sequence[str],
        missing: str,
        *,
        spill_dir: Path,
        folders_in_memory: int = FOLDERS_IN_MEMORY,
        first_missing: int = FIRST_MISSING,
    ) -> None:
        self.records = 0
        self.duplicates = 0
        self.per_manifest: list[int] = []
        self.counts: Counter[str] = Counter(dict.fromkeys(statuses, 0))
        self._statuses = tuple(statuses)
        self.by_company: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.by_org: defaultdict[tuple[str, str], Counter[str]] = defaultdict(Counter)
        self.days: defaultdict[str, list[int]] = defaultdict(lambda: [0, 0])
        self.first_missing: list[MissingRow] = []
        self._missing = missing
        self._keep_missing = first_missing
        self._folders: defaultdict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
        self._folders_in_memory = folders_in_memory
        self._spill_dir = spill_dir
        self._spill: sqlite3.Connection | None = None
        self._spill_path: Path | None = None

    def add(self, status: str, key: Key, day: str, source: str, row: int, duplicate: bool) -> None:
        """Count one report row."""
        missing = status == self._missing
        self.counts[status] += 1
        self.by_company[key[0]][status] += 1
        self.by_org[(key[0], key[1])][status] += 1
        folder = self._folders[(key[0], key[1], key[2])]
        folder[0] += 1
        if duplicate:
            self.duplicates += 1
        if day:
            counts = self.days[day]
            counts[0] += 1
            counts[1] += missing
        if missing:
            folder[1] += 1
            if len(self.first_missing) < self._keep_missing:
                self.first_missing.append(MissingRow(source, row, *key, day))
        if len(self._folders) >= self._folders_in_memory:
            self._spill_folders()

    def breakdowns(self) -> dict[str, list[dict[str, Any]]]:
        """summary.json's ``by_company`` and ``by_organisation``: every status counted, sorted by name."""
        statuses = self._statuses
        return {
            "by_company": [
                {"company": company, **{s: c[s] for s in statuses}} for company, c in sorted(self.by_company.items())
            ],
            "by_organisation": [
                {"company": company, "organisation": organisation, **{s: c[s] for s in statuses}}
                for (company, organisation), c in sorted(self.by_org.items())
            ],
        }

    def end_manifest(self, records: int) -> None:
        self.records += records
        self.per_manifest.append(records)

    def top_folders(self, limit: int) -> tuple[list[FolderCount], int]:
        """The ``limit`` folders with the most missing rows (ties by name), and how many folders miss any."""
        if self._spill is None:
            ranked = sorted(((-m, k, t) for k, (t, m) in self._folders.items() if m), key=lambda x: (x[0], x[1]))
            top = [FolderCount(*key, total, -negative) for negative, key, total in ranked[:limit]]
            return top, len(ranked)
        self._spill_folders()
        db = self._spill
        query = (
            "SELECT company, organisation, folder, total, missing FROM folders WHERE missing > 0 "
            "ORDER BY missing DESC, company, organisation, folder LIMIT ?"
        )
        top = [FolderCount(*row) for row in db.execute(query, (limit,))]
        (count,) = db.execute("SELECT count(*) FROM folders WHERE missing > 0").fetchone()
        return top, int(count)

    def day_counts(self) -> list[DayCount]:
        return [DayCount(day, total, missing) for day, (total, missing) in sorted(self.days.items())]

    def close(self) -> None:
        if self._spill is not None:
            self._spill.close()
            self._spill = None
        if self._spill_path is not None:
            self._spill_path.unlink(missing_ok=True)
            self._spill_path = None

    def _spill_folders(self) -> None:
        if self._spill is None:
            handle, name = tempfile.mkstemp(prefix=SPILL_PREFIX, suffix=".sqlite", dir=self._spill_dir)
            os.close(handle)
            self._spill_path = Path(name)
            self._spill = sqlite3.connect(name)
            self._spill.execute("PRAGMA journal_mode=OFF")
            self._spill.execute("PRAGMA synchronous=OFF")
            self._spill.execute(
                "CREATE TABLE folders (company TEXT, organisation TEXT, folder TEXT, total INTEGER, "
                "missing INTEGER, PRIMARY KEY (company, organisation, folder)) WITHOUT ROWID"
            )
        self._spill.executemany(
            "INSERT INTO folders VALUES (?, ?, ?, ?, ?) ON CONFLICT DO UPDATE "
            "SET total = total + excluded.total, missing = missing + excluded.missing",
            [(*key, total, missing) for key, (total, missing) in self._folders.items()],
        )
        self._spill.commit()
        self._folders.clear()
