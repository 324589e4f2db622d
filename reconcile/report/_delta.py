"""Deltas between runs: what changed since an earlier run's report (``--compare-to PREVIOUS_OUT_DIR``).

Rows are matched by their four key values (company, organisation, folder, filename), never by row number, so a
manifest that gained, lost or reordered rows compares correctly.  A key that appears more than once counts once,
by its first row (a duplicate row always carries its original's status).  Of the previous run only results.csv
is needed, and of it only the key columns (named so, in any case), ``status`` and ``call_id``: a report from an
older engine, or one with other manifest columns, compares as well.

Both sides go into a SQLite file beside the report, not into dicts, so memory stays flat at millions of rows.

The changes, in the order delta.csv lists them (each group in row order):

    newly_missing    present before, missing now
    recovered        missing before, present now
    call_id_changed  present both times, under a different callId
    status_changed   any other change of status (e.g. error -> missing, present -> invalid)
    new              a key the previous run did not have
    gone             a key of the previous run that this run does not have
"""

from __future__ import annotations

import csv
import os
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconcile.errors import UsageError
from reconcile.model import KEY_FIELDS, Key, Status, key_digest, written_whole

from ._rows import CHECKED
from ._summary import load_summary

CHANGES = ("newly_missing", "recovered", "call_id_changed", "status_changed", "new", "gone")
COLUMNS = (
    "change",
    *KEY_FIELDS,
    "previous_status",
    "status",
    "previous_call_id",
    "call_id",
    "previous_source",
    "previous_row",
    "source",
    "row",
)
BATCH = 10_000
WORK_PREFIX = ".delta-"  # the work file's name starts so, in the report's directory

Entry = tuple[Key, str, str, str, int | None]
"""One report row as the delta sees it: (key, status, call_id, source, row)."""

# The change of a current row matched with its previous row, as its index in CHANGES; NULL when unchanged.
_KIND = f"""CASE
    WHEN p.seq IS NULL THEN 4
    WHEN p.status = '{Status.PRESENT}' AND c.status = '{Status.MISSING}' THEN 0
    WHEN p.status = '{Status.MISSING}' AND c.status = '{Status.PRESENT}' THEN 1
    WHEN p.status = '{Status.PRESENT}' AND c.status = '{Status.PRESENT}' AND p.call_id != c.call_id THEN 2
    WHEN p.status != c.status THEN 3
END"""
_CURRENT_CHANGES = f"""
SELECT kind, company, organisation, folder, filename, previous_status, status, previous_call_id, call_id,
       previous_source, previous_row, source, row FROM (
    SELECT {_KIND} AS kind, c.seq AS seq, c.company, c.organisation, c.folder, c.filename,
           p.status AS previous_status, c.status, p.call_id AS previous_call_id, c.call_id,
           p.source AS previous_source, p.row AS previous_row, c.source, c.row
    FROM cur c LEFT JOIN prev p ON p.digest = c.digest)
WHERE kind IS NOT NULL ORDER BY kind, seq
"""
_GONE = """
SELECT 5, p.company, p.organisation, p.folder, p.filename, p.status, NULL, p.call_id, NULL, p.source, p.row, NULL, NULL
FROM prev p WHERE NOT EXISTS (SELECT 1 FROM cur c WHERE c.digest = p.digest) ORDER BY p.seq
"""
# Rows are loaded without an index (appending is several times faster than keeping one up to date), then
# indexed once; a key's later rows are then dropped, so each key keeps its first row.
_SCHEMA = """
CREATE TABLE {side} (seq INTEGER PRIMARY KEY, digest BLOB NOT NULL, company TEXT, organisation TEXT,
                     folder TEXT, filename TEXT, status TEXT, call_id TEXT, source TEXT, row INTEGER);
"""
_INDEX = """
CREATE INDEX {side}_digest ON {side} (digest, seq);
DELETE FROM {side} WHERE seq IN (
    SELECT seq FROM (SELECT seq, row_number() OVER (PARTITION BY digest ORDER BY seq) AS n FROM {side}) WHERE n > 1);
"""


@dataclass(frozen=True, slots=True)
class PreviousRun:
    """An earlier run's output directory, checked to hold what a comparison needs."""

    directory: Path
    results: Path
    run_id: str | None
    engine_version: str | None


def open_previous(directory: Path) -> PreviousRun:
    """Check ``directory`` holds a report to compare with; a UsageError says what is wrong with it."""
    hint = "HINT: pass the --out directory of an earlier, finished run"
    if not directory.is_dir():
        raise UsageError(f"--compare-to {directory}: no such directory. {hint}")
    results = directory / "results.csv"
    if not results.is_file():
        raise UsageError(
            f"--compare-to {directory}: it holds no results.csv, so it is not a reconcile report "
            f"(or that run never wrote one). {hint}"
        )
    with _open_csv(results) as handle:
        header = next(csv.reader(handle), None)
    if header is None:
        raise UsageError(f"--compare-to {directory}: results.csv is empty. {hint}")
    _positions(results, header)
    try:
        summary = load_summary(directory)
    except UsageError:  # summary.json only adds the run id; comparing needs none of it
        return PreviousRun(directory, results, None, None)
    return PreviousRun(directory, results, summary.run_id, summary.engine_version)


def read_results(path: Path) -> Iterator[Entry]:
    """The entries of a results.csv, streamed."""
    with _open_csv(path) as handle:
        reader = csv.reader(handle)
        header = next(reader, None) or []
        keys, status, call_id, source, row = _positions(path, header)
        width = len(header)
        for values in reader:
            if len(values) < width:
                values = values + [""] * (width - len(values))
            number = values[row] if row is not None else ""
            yield (
                tuple(values[p] for p in keys),
                values[status],
                values[call_id],  # type: ignore[misc]
                values[source] if source is not None else "",
                int(number) if number.isdigit() else None,
            )


class Comparison:
    """The previous run loaded beside the current run's rows, which arrive through :meth:`add`."""

    def __init__(self, previous: PreviousRun, work_dir: Path) -> None:
        self.previous = previous
        handle, name = tempfile.mkstemp(prefix=WORK_PREFIX, suffix=".sqlite", dir=work_dir)
        os.close(handle)
        self._path = Path(name)
        self._db = sqlite3.connect(name)
        self._seq = {"prev": 0, "cur": 0}
        try:
            for pragma in ("journal_mode=OFF", "synchronous=OFF", "cache_size=-8000"):
                self._db.execute(f"PRAGMA {pragma}")
            for side in ("prev", "cur"):
                self._db.executescript(_SCHEMA.format(side=side))
            self._load("prev", read_results(previous.results))
        except BaseException:
            self.close()
            raise

    def add(self, entries: Iterable[Entry]) -> None:
        """Rows of the current run, in report order."""
        self._load("cur", entries)

    def write(self, path: Path) -> dict[str, int]:
        """Write delta.csv to ``path``; return how many rows changed in each way, and how many did not."""
        for side in ("prev", "cur"):
            self._db.executescript(_INDEX.format(side=side))
        counts = dict.fromkeys(CHANGES, 0)
        with written_whole(path) as temporary, open(temporary, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(COLUMNS)
            for query in (_CURRENT_CHANGES, _GONE):
                for kind, *row in self._db.execute(query):
                    change = CHANGES[kind]
                    writer.writerow((change, *row))
                    counts[change] += 1
        (current,) = self._db.execute("SELECT count(*) FROM cur").fetchone()
        counts["unchanged"] = int(current) - sum(counts[c] for c in CHANGES if c != "gone")
        return counts

    def close(self) -> None:
        self._db.close()
        self._path.unlink(missing_ok=True)

    def _load(self, side: str, entries: Iterable[Entry]) -> None:
        insert = f"INSERT INTO {side} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        batch: list[tuple[Any, ...]] = []
        seq = self._seq[side]
        for key, status, call_id, source, row in entries:
            seq += 1
            batch.append((seq, key_digest(key), *key, status, call_id, source, row))
            if len(batch) >= BATCH:
                self._db.executemany(insert, batch)
                batch = []
        self._db.executemany(insert, batch)
        self._db.commit()
        self._seq[side] = seq


def _positions(path: Path, header: list[str]) -> tuple[list[int], int, int, int | None, int | None]:
    """Where the key columns, status, call_id, source and row are; a UsageError names the ones missing.

    Key columns match in any case (they are the manifest's own), and "company (checked)" wins over "company"
    (the report adds it when the value checked came from another column); ours match exactly, so a manifest
    column called "Status" is never taken for the report's ``status``.
    """
    normalised = [name.strip().lower() for name in header]
    found = {name: normalised.index(name) for name in KEY_FIELDS if name in normalised}
    found |= {name: header.index(f"{name}{CHECKED}") for name in KEY_FIELDS if f"{name}{CHECKED}" in header}
    found |= {name: header.index(name) for name in ("status", "call_id", "source", "row") if name in header}
    wanted = [*KEY_FIELDS, "status", "call_id"]
    missing = [name for name in wanted if name not in found]
    if missing:
        raise UsageError(
            f"{path}: cannot compare with this report: it has no column(s) {', '.join(missing)} "
            f"(found: {', '.join(header) or 'none'}). HINT: --compare-to needs a results.csv with the columns "
            f"{', '.join(wanted)}; pass the --out directory of a run written by reconcile"
        )
    keys = [found[name] for name in KEY_FIELDS]
    return keys, found["status"], found["call_id"], found.get("source"), found.get("row")


def _open_csv(path: Path) -> Any:
    try:
        return open(path, encoding="utf-8-sig", newline="")  # the caller closes it
    except OSError as exc:
        raise UsageError(f"--compare-to: cannot read {path}: {exc.strerror}") from None
