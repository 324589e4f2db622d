"""The journal: a SQLite file in the output directory that records every resolved row.

It is what makes a run resumable after ``kill -9`` and what the report is built from, so the report never
needs the results in memory.  All SQLite work happens on one dedicated thread (a connection belongs to the
thread that uses it, and the event loop must not block on disk); writes are batched and committed at least
every half second.  A transaction holds both the dedup keys and the results read with them, so a crash
loses at most the last half second, never consistency.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from reconcile._version import __version__
from reconcile.errors import JournalError, JournalMismatch
from reconcile.input import ManifestInfo, changed_options
from reconcile.model import Key, Status, key_digest

T = TypeVar("T")

FILENAME = "journal.sqlite"
FORMAT = "reconcile-journal/1"
FLUSH_EVERY = 0.25  # seconds; the contract is "at least every half second"
PAGE = 5_000  # results read at once for the report

ResultRow = tuple[int, str, str, str, int, str]  # (row, status, call_id, detail, attempts, checked_at)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    source INTEGER NOT NULL, row INTEGER NOT NULL, status TEXT NOT NULL, call_id TEXT NOT NULL,
    detail TEXT NOT NULL, attempts INTEGER NOT NULL, checked_at TEXT NOT NULL,
    dup_source INTEGER, dup_row INTEGER,
    PRIMARY KEY (source, row)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS keys (key BLOB PRIMARY KEY, source INTEGER NOT NULL, row INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS attempts (
    number INTEGER PRIMARY KEY, started_at TEXT NOT NULL, finished_at TEXT, outcome TEXT);
"""


@dataclass(frozen=True, slots=True)
class Result:
    """How one row ended.  ``status`` is empty for a duplicate: it takes its original's at report time."""

    source: int
    row: int
    status: str
    call_id: str
    detail: str
    attempts: int
    checked_at: str
    dup_of: tuple[int, int] | None = None


class Journal:
    """One run's journal.  Open with :meth:`open`; every method that touches SQLite runs on its own thread."""

    def __init__(
        self, path: Path, connection: sqlite3.Connection, executor: ThreadPoolExecutor, meta: dict[str, str]
    ) -> None:
        self.path = path
        self.run_id = meta["run_id"]
        self._db = connection
        self._executor = executor
        self._pending: list[Result] = []
        self._orphan: asyncio.Future[None] | None = None  # a write whose flush was cancelled (see flush)
        self.resumed_from = 0  # rows already resolved when this attempt started

    @classmethod
    def exists(cls, out_dir: Path) -> bool:
        return (out_dir / FILENAME).is_file()

    @classmethod
    def open(
        cls,
        out_dir: Path,
        manifests: Sequence[ManifestInfo],
        *,
        fresh: bool = False,
        shard: str = "",
        reading: str = "",
    ) -> Journal:
        """Open or create the journal in ``out_dir``; refuse one written for other manifests, another shard, or
        manifests read with other options (``reading``: :func:`reconcile.input._readers.options_record`)."""
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / FILENAME
        if fresh:
            for suffix in ("", "-wal", "-shm"):
                Path(str(path) + suffix).unlink(missing_ok=True)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reconcile-journal")
        connection: sqlite3.Connection | None = None
        try:
            connection = executor.submit(_connect, path).result()
            meta = executor.submit(_check_or_init, connection, path, manifests, shard, reading).result()
        except BaseException:
            if connection is not None:
                executor.submit(connection.close).result()
            executor.shutdown(wait=True)
            raise
        journal = cls(path, connection, executor, meta)
        journal.resumed_from = journal._call_sync(_count_resolved, connection)
        return journal

    # -- writes ---------------------------------------------------------------------------------------

    def add(self, result: Result) -> None:
        """Queue a result; :meth:`flush` writes it."""
        self._pending.append(result)

    async def flush(self) -> None:
        """Write and commit what :meth:`add` queued.

        Once a batch leaves the queue it is written even if this flush is cancelled (the engine cancels its
        flusher when the workers are done), so no recorded row ends "unchecked"; the next flush waits for such
        a write, and raises if it failed.
        """
        if self._orphan is not None:
            await asyncio.shield(self._orphan)
            self._orphan = None
        loop = asyncio.get_running_loop()
        if self._pending:
            batch, self._pending = self._pending, []
            write = loop.run_in_executor(self._executor, _write_results, self._db, batch)
        else:
            write = loop.run_in_executor(self._executor, self._db.commit)
        try:
            await asyncio.shield(write)
        except asyncio.CancelledError:
            self._orphan = write
            raise

    async def first_rows(self, keys: Sequence[Key], source: int, rows: Sequence[int]) -> list[tuple[int, int]]:
        """For each key, the (source, row) of its first occurrence in the run, registering new ones."""
        return await self._call(_first_rows, self._db, [key_digest(k) for k in keys], source, rows)

    async def resolved(self, source: int, first: int, last: int) -> set[int]:
        """Rows of ``source`` in [first, last] that need no new request (anything but ``error``)."""
        return await self._call(_resolved, self._db, source, first, last)

    async def begin_attempt(self, started_at: str) -> int:
        return await self._call(_begin_attempt, self._db, started_at)

    async def end_attempt(self, number: int, finished_at: str, outcome: str) -> None:
        await self._call(_end_attempt, self._db, number, finished_at, outcome)

    # -- reads for the report -------------------------------------------------------------------------

    def read_page(self, source: int, after: int, before: int, limit: int = PAGE) -> asyncio.Future[list[ResultRow]]:
        """Up to ``limit`` results ``(row, status, call_id, detail, attempts, checked_at)`` of ``source``,
        for rows after ``after`` and before ``before``, in row order.

        A duplicate takes its original's status and call id, with "duplicate of ..." as its detail.  The read
        runs on the journal thread between writes, so a run may still be writing: every write commits before
        the thread takes its next job, so only committed results are read.
        """
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self._executor, _read_page, self._db, source, after, before, limit)

    def counts(self) -> dict[str, int]:
        return self._call_sync(_counts, self._db)

    def attempts(self) -> list[dict[str, Any]]:
        return self._call_sync(_read_attempts, self._db)

    def close(self) -> None:
        try:
            self._call_sync(self._db.close)
        finally:
            self._executor.shutdown(wait=True)

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _call_sync(self, fn: Callable[..., T], *args: Any) -> T:
        return self._executor.submit(fn, *args).result()


# -- functions below run on the journal thread ---------------------------------------------------------


def _connect(path: Path) -> sqlite3.Connection:
    try:
        db = sqlite3.connect(path, isolation_level="DEFERRED")
        db.execute("PRAGMA cache_size=-4000")  # 4 MB: the OS page cache holds the rest; RSS stays flat
    except sqlite3.DatabaseError as exc:
        raise JournalError(f"{path} is not a reconcile journal ({exc}). HINT: pass --fresh to start over") from None
    return db


def _check_or_init(
    db: sqlite3.Connection, path: Path, manifests: Sequence[ManifestInfo], shard: str, reading: str
) -> dict[str, str]:
    wanted = _manifests_record(manifests)
    try:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if tables and "meta" not in tables:
            raise JournalError(f"{path} is a SQLite file but not a reconcile journal. HINT: use another --out")
        # Only now that the file is ours (or empty): WAL rewrites the header of whatever file it is set on.
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives a process crash; only power loss costs
        db.executescript(_SCHEMA)
        meta = dict(db.execute("SELECT name, value FROM meta"))
    except sqlite3.DatabaseError as exc:
        raise JournalError(
            f"{path} is corrupt or not a reconcile journal ({exc}). HINT: pass --fresh to start over"
        ) from None
    if not meta:
        meta = {
            "format": FORMAT,
            "manifests": wanted,
            "engine_version": __version__,
            "run_id": str(uuid.uuid4()),
            "shard": shard,
            "reading": reading,
        }
        db.executemany("INSERT INTO meta VALUES (?, ?)", list(meta.items()))
        db.commit()
        return meta
    if meta.get("format") != FORMAT:
        raise JournalError(
            f"{path} was written by an incompatible reconcile ({meta.get('format')!r}). "
            "HINT: pass --fresh to start over"
        )
    if meta.get("manifests") != wanted:
        # (path, SHA-256, absolute path): journals from before recorded no absolute path
        checked = [(str(e[0]), str(e[1]), str(e[2 if len(e) > 2 else 0])) for e in json.loads(meta["manifests"])]
        if [sha for _, sha, _ in checked] != [m.sha256 for m in manifests]:
            raise JournalMismatch(
                path,
                f"{_which_differs(checked, manifests)}. HINT: pass --fresh to start over in this directory, or "
                "choose another --out",
            )
        # The same files by content, reached by other paths (another working directory, a symlink): resume, and
        # remember them as given now.
        db.execute("UPDATE meta SET value = ? WHERE name = 'manifests'", (wanted,))
        db.commit()
    recorded = meta.get("reading")
    if recorded is None:  # written before the reading was recorded: keep this one from now on
        db.execute("INSERT INTO meta VALUES ('reading', ?)", (reading,))
        db.commit()
    elif recorded != reading:
        changed = changed_options(recorded, reading) if recorded and reading else []
        raise JournalMismatch(
            path,
            "the output directory holds a run whose manifests were read with other options"
            f"{' (' + ', '.join(changed) + ')' if changed else ''}: its results belong to the values read then. "
            "HINT: re-run with the same options, or pass --fresh to start over",
        )
    if meta.get("shard", "") != shard:
        raise JournalMismatch(
            path,
            f"the output directory holds shard {meta.get('shard') or 'none'!r}, not {shard or 'none'!r}. "
            "HINT: give each shard its own --out",
        )
    return meta


def _manifests_record(manifests: Sequence[ManifestInfo]) -> str:
    """The journal's record of its manifests: each one's path as given, its SHA-256 (what identifies it) and
    its absolute path (to tell a file that changed from another file)."""
    return json.dumps([[m.path, m.sha256, os.path.abspath(m.path)] for m in manifests])


def _which_differs(recorded: Sequence[tuple[str, str, str]], manifests: Sequence[ManifestInfo]) -> str:
    """Which manifest differs from the journal's, and how: its content, another file, the order, the count."""
    if len(recorded) != len(manifests):
        return (
            f"the output directory holds a run of {len(recorded)} manifest(s) "
            f"({', '.join(p for p, _, _ in recorded)}), not of the {len(manifests)} given "
            f"({', '.join(m.path for m in manifests)})"
        )
    if sorted(sha for _, sha, _ in recorded) == sorted(m.sha256 for m in manifests):
        return "the output directory holds a run of the same manifests given in another order"
    for number, ((was_path, was_sha, was_absolute), now) in enumerate(zip(recorded, manifests, strict=True), start=1):
        if was_sha == now.sha256:
            continue
        if was_absolute == os.path.abspath(now.path) or was_path == now.path:
            return (
                f"{now.path} changed since the run in the output directory checked it: its content (SHA-256) is "
                f"now {now.sha256[:12]}…, was {was_sha[:12]}…"
            )
        return (
            f"manifest {number}, {now.path} (SHA-256 {now.sha256[:12]}…), is not the file the run in the output "
            f"directory checked, {was_path} (SHA-256 {was_sha[:12]}…): the content differs, not only the path"
        )
    return "the output directory holds a run of different manifests"


def _write_results(db: sqlite3.Connection, batch: list[Result]) -> None:
    db.executemany(
        "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                r.source,
                r.row,
                r.status,
                r.call_id,
                r.detail,
                r.attempts,
                r.checked_at,
                r.dup_of[0] if r.dup_of else None,
                r.dup_of[1] if r.dup_of else None,
            )
            for r in batch
        ],
    )
    db.commit()


def _first_rows(
    db: sqlite3.Connection, digests: list[bytes], source: int, rows: Sequence[int]
) -> list[tuple[int, int]]:
    known: dict[bytes, tuple[int, int]] = {}
    unique = list(dict.fromkeys(digests))
    for start in range(0, len(unique), 500):  # SQLite's bound-parameter limit
        chunk = unique[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for key, src, row in db.execute(f"SELECT key, source, row FROM keys WHERE key IN ({marks})", chunk):
            known[key] = (src, row)
    new = []
    firsts = []
    for digest, row in zip(digests, rows, strict=True):
        first = known.get(digest)
        if first is None:
            first = known[digest] = (source, row)
            new.append((digest, source, row))
        firsts.append(first)
    db.executemany("INSERT INTO keys VALUES (?, ?, ?)", new)
    return firsts


def _resolved(db: sqlite3.Connection, source: int, first: int, last: int) -> set[int]:
    query = "SELECT row FROM results WHERE source = ? AND row BETWEEN ? AND ? AND status != ?"
    return {row for (row,) in db.execute(query, (source, first, last, Status.ERROR))}


def _count_resolved(db: sqlite3.Connection) -> int:
    (count,) = db.execute("SELECT count(*) FROM results WHERE status != ?", (Status.ERROR,)).fetchone()
    return int(count)


_RESULTS_QUERY = f"""
SELECT r.row,
       CASE WHEN r.dup_row IS NULL THEN r.status ELSE COALESCE(o.status, '{Status.UNCHECKED}') END,
       CASE WHEN r.dup_row IS NULL THEN r.call_id ELSE COALESCE(o.call_id, '') END,
       CASE WHEN r.dup_row IS NULL OR COALESCE(o.detail, '') = '' THEN r.detail
            ELSE r.detail || '; ' || o.detail END,
       CASE WHEN r.dup_row IS NULL THEN r.attempts ELSE 0 END,
       CASE WHEN r.dup_row IS NULL THEN r.checked_at ELSE COALESCE(o.checked_at, '') END
FROM results r LEFT JOIN results o ON o.source = r.dup_source AND o.row = r.dup_row
WHERE r.source = ? AND r.row > ? AND r.row < ? ORDER BY r.row LIMIT ?
"""


def _read_page(db: sqlite3.Connection, source: int, after: int, before: int, limit: int) -> list[ResultRow]:
    return db.execute(_RESULTS_QUERY, (source, after, before, limit)).fetchall()


def _counts(db: sqlite3.Connection) -> dict[str, int]:
    return dict(db.execute("SELECT status, count(*) FROM results GROUP BY status").fetchall())


def _begin_attempt(db: sqlite3.Connection, started_at: str) -> int:
    cursor = db.execute("INSERT INTO attempts (started_at) VALUES (?)", (started_at,))
    db.commit()
    return int(cursor.lastrowid or 0)


def _end_attempt(db: sqlite3.Connection, number: int, finished_at: str, outcome: str) -> None:
    db.execute("UPDATE attempts SET finished_at = ?, outcome = ? WHERE number = ?", (finished_at, outcome, number))
    db.commit()


def _read_attempts(db: sqlite3.Connection) -> list[dict[str, Any]]:
    rows = db.execute("SELECT number, started_at, finished_at, outcome FROM attempts ORDER BY number")
    return [dict(zip(("attempt", "started_at", "finished_at", "outcome"), r, strict=True)) for r in rows]
