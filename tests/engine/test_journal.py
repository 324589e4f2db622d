"""The SQLite journal: creation, resumption, dedup keys, result pages, and refusing files that are not ours."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import reconcile.engine._journal as journal_module
from reconcile.engine._journal import FILENAME, PAGE, Journal, Result, ResultRow
from reconcile.errors import JournalError, JournalMismatch
from reconcile.input._manifest import ManifestInfo
from reconcile.input._table import ReadOptions, options_record

INFO = ManifestInfo("exports/a.csv", "a" * 64, 100, ("company", "organisation", "folder", "filename"))
OTHER = ManifestInfo("exports/b.csv", "b" * 64, 50, ("company", "organisation", "folder", "filename"))
K1 = ("acme", "acme-ca", "2026/11/25", "one.mp3")
K2 = ("acme", "acme-ca", "2026/11/25", "two.mp3")
K3 = ("acme", "acme-ca", "2026/11/25", "three.mp3")


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    opened = Journal.open(tmp_path / "out", [INFO, OTHER])
    try:
        yield opened
    finally:
        opened.close()


def result(
    row: int, status: str, call_id: str = "", detail: str = "", source: int = 0, dup_of: tuple[int, int] | None = None
) -> Result:
    return Result(source, row, status, call_id, detail, 1 if status else 0, f"2026-11-26T10:00:{row:02d}.000Z", dup_of)


async def all_results(journal: Journal, source: int, limit: int = PAGE) -> list[ResultRow]:
    """Every result of ``source``, pages of ``limit`` after one another, as the report reads them."""
    rows: list[ResultRow] = []
    after = 0
    while page := await journal.read_page(source, after, 1 << 62, limit):
        rows += page
        after = page[-1][0]
    return rows


def test_open_creates_the_directory_and_file(tmp_path: Path) -> None:
    """Opening in a new --out creates it and a journal file, with a run id."""
    out = tmp_path / "new" / "out"
    opened = Journal.open(out, [INFO])
    try:
        assert (out / FILENAME).is_file()
        assert opened.run_id
        assert opened.resumed_from == 0
    finally:
        opened.close()


async def test_reopen_keeps_run_id_and_results(tmp_path: Path) -> None:
    """A journal reopened for the same manifests resumes: same run id, resolved rows counted."""
    first = Journal.open(tmp_path, [INFO])
    try:
        first.add(result(1, "present", "id1"))
        first.add(result(2, "missing"))
        first.add(result(3, "error", detail="HTTP 500"))
        await first.flush()
        run_id = first.run_id
    finally:
        first.close()
    again = Journal.open(tmp_path, [INFO])
    try:
        assert again.run_id == run_id
        assert again.resumed_from == 2  # error rows are asked again
    finally:
        again.close()


async def test_resolved_excludes_error_rows(journal: Journal) -> None:
    """resolved() lists rows needing no new request in the range: everything but errors, this source only."""
    for row, status in enumerate(["present", "missing", "error", "invalid", "present"], start=1):
        journal.add(result(row, status))
    journal.add(result(2, "present", source=1))
    await journal.flush()
    assert await journal.resolved(0, 1, 5) == {1, 2, 4, 5}
    assert await journal.resolved(0, 2, 3) == {2}
    assert await journal.resolved(1, 1, 5) == {2}


async def test_first_rows_dedups_across_batches_and_sources(journal: Journal) -> None:
    """The first occurrence of a key is remembered across batches and across manifests."""
    assert await journal.first_rows([K1, K2, K1], 0, [1, 2, 3]) == [(0, 1), (0, 2), (0, 1)]
    assert await journal.first_rows([K2, K3], 0, [4, 5]) == [(0, 2), (0, 5)]
    assert await journal.first_rows([K3, K1, ("x", "y", "z", "w")], 1, [1, 2, 3]) == [(0, 5), (0, 1), (1, 3)]


async def test_dedup_is_exact(journal: Journal) -> None:
    """Keys differing only by case or surrounding spaces are different keys."""
    variants = [K1, ("ACME", *K1[1:]), (" acme", *K1[1:]), (*K1[:3], "one.mp3 ")]
    firsts = await journal.first_rows(variants, 0, [1, 2, 3, 4])
    assert firsts == [(0, 1), (0, 2), (0, 3), (0, 4)]


async def test_dedup_keys_survive_a_reopen(tmp_path: Path) -> None:
    """Keys registered and flushed before a crash still dedup after reopening."""
    first = Journal.open(tmp_path, [INFO])
    try:
        await first.first_rows([K1], 0, [1])
        await first.flush()
    finally:
        first.close()
    again = Journal.open(tmp_path, [INFO])
    try:
        assert await again.first_rows([K1], 0, [7]) == [(0, 1)]
    finally:
        again.close()


async def test_results_are_in_row_order_across_pages(journal: Journal) -> None:
    """Pages give every row of a source in row order, whatever the write order."""
    for row in [7, 2, 9, 1, 4, 3, 8, 5, 6, 10]:
        journal.add(result(row, "missing"))
    journal.add(result(1, "present", "other-source", source=1))
    await journal.flush()
    rows = [r[0] for r in await all_results(journal, 0, limit=3)]
    assert rows == list(range(1, 11))
    assert [r[0] for r in await all_results(journal, 1, limit=3)] == [1]


async def test_a_page_stops_before_its_bound(journal: Journal) -> None:
    """A page holds only rows after ``after`` and before ``before``, at most ``limit`` of them, of its source only."""
    for row in range(1, 11):
        journal.add(result(row, "present", f"id{row}"))
    journal.add(result(4, "missing", source=1))
    await journal.flush()
    assert [r[0] for r in await journal.read_page(0, 0, 3, 3)] == [1, 2]
    assert [r[0] for r in await journal.read_page(0, 2, 100, 3)] == [3, 4, 5]
    assert [r[0] for r in await journal.read_page(0, 8, 11, 3)] == [9, 10]
    assert await journal.read_page(0, 5, 6, 3) == []
    assert [r[:2] for r in await journal.read_page(1, 0, 5, 3)] == [(4, "missing")]


async def test_duplicates_take_their_originals_outcome(journal: Journal) -> None:
    """A duplicate row reads back with its original's status and call id, and says which row it duplicates."""
    journal.add(result(1, "present", "call-1"))
    journal.add(result(2, "error", detail="HTTP 500 (after 5 attempts)"))
    journal.add(result(3, "", detail="duplicate of row 1", dup_of=(0, 1)))
    journal.add(result(4, "", detail="duplicate of row 2", dup_of=(0, 2)))
    journal.add(result(1, "", detail="duplicate of row 1 of exports/a.csv", source=1, dup_of=(0, 1)))
    await journal.flush()
    rows = {r[0]: r for r in await all_results(journal, 0)}
    assert rows[3][1:3] == ("present", "call-1")
    assert rows[3][3] == "duplicate of row 1"
    assert rows[4][1] == "error"
    assert rows[4][3].startswith("duplicate of row 2")
    assert "HTTP 500" in rows[4][3]
    (other,) = await all_results(journal, 1)
    assert other[1:3] == ("present", "call-1")
    assert "duplicate of row 1" in other[3]


async def test_duplicate_of_an_unresolved_row_is_unchecked(journal: Journal) -> None:
    """If the original never got an answer, its duplicate is unchecked, never present or missing."""
    journal.add(result(5, "", detail="duplicate of row 2", dup_of=(0, 2)))
    await journal.flush()
    ((row, status, call_id, _detail, _attempts, _checked),) = await all_results(journal, 0)
    assert (row, status, call_id) == (5, "unchecked", "")


async def test_counts_and_attempts(journal: Journal) -> None:
    """counts() tallies statuses; begin/end_attempt record each attempt of the run."""
    number = await journal.begin_attempt("2026-11-26T10:00:00.000Z")
    journal.add(result(1, "present", "x"))
    journal.add(result(2, "missing"))
    journal.add(result(3, "missing"))
    await journal.flush()
    await journal.end_attempt(number, "2026-11-26T10:01:00.000Z", "complete")
    assert journal.counts() == {"present": 1, "missing": 2}
    assert journal.attempts() == [
        {
            "attempt": number,
            "started_at": "2026-11-26T10:00:00.000Z",
            "finished_at": "2026-11-26T10:01:00.000Z",
            "outcome": "complete",
        }
    ]


def threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("reconcile-journal")}


def test_foreign_sqlite_file_is_a_journal_error(tmp_path: Path) -> None:
    """A SQLite database that is not a reconcile journal is refused with exit 4, and no thread is left behind."""
    with sqlite3.connect(tmp_path / FILENAME) as db:
        db.execute("CREATE TABLE customers (id INTEGER)")
    db.close()
    before = threads()
    with pytest.raises(JournalError, match="not a reconcile journal") as caught:
        Journal.open(tmp_path, [INFO])
    assert caught.value.exit_code == 4
    assert threads() == before


@pytest.mark.parametrize(
    "content", [b"this is not a database at all" * 100, bytes(range(256)) * 64, b"SQLite format 3\x00" + b"\xff" * 4000]
)
def test_garbage_journal_is_a_journal_error(tmp_path: Path, content: bytes) -> None:
    """Garbage bytes (even behind a SQLite magic number) in journal.sqlite are a JournalError with a hint."""
    (tmp_path / FILENAME).write_bytes(content)
    before = threads()
    with pytest.raises(JournalError) as caught:
        Journal.open(tmp_path, [INFO])
    assert "HINT" in str(caught.value)
    assert caught.value.exit_code == 4
    assert threads() == before


async def test_other_manifests_are_a_journal_mismatch(tmp_path: Path) -> None:
    """A journal written for a manifest with another SHA-256 is refused with exit 2 and the --fresh hint."""
    Journal.open(tmp_path, [INFO]).close()
    changed = ManifestInfo(INFO.path, "c" * 64, INFO.size, INFO.columns)
    with pytest.raises(JournalMismatch, match="--fresh") as caught:
        Journal.open(tmp_path, [changed])
    assert caught.value.exit_code == 2
    with pytest.raises(JournalMismatch):
        Journal.open(tmp_path, [INFO, OTHER])


def test_the_same_manifest_by_another_path_resumes(tmp_path: Path) -> None:
    """A manifest is its content: the same SHA-256 reached as ./a.csv, or from another directory, opens the journal."""
    journal = Journal.open(tmp_path, [INFO])
    run_id = journal.run_id
    journal.close()
    elsewhere = ManifestInfo("../somewhere/else/a.csv", INFO.sha256, INFO.size, INFO.columns)
    again = Journal.open(tmp_path, [elsewhere])
    try:
        assert again.run_id == run_id
    finally:
        again.close()


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (
            [ManifestInfo(INFO.path, "c" * 64, 1, INFO.columns)],
            "exports/a.csv changed since the run in the output directory checked it: its content (SHA-256) is now "
            "cccccccccccc…, was aaaaaaaaaaaa…",
        ),
        (
            [OTHER],
            "manifest 1, exports/b.csv (SHA-256 bbbbbbbbbbbb…), is not the file the run in the output directory "
            "checked, exports/a.csv (SHA-256 aaaaaaaaaaaa…): the content differs, not only the path",
        ),
        (
            [INFO, OTHER],
            "the output directory holds a run of 1 manifest(s) (exports/a.csv), not of the 2 given "
            "(exports/a.csv, exports/b.csv)",
        ),
    ],
)
def test_a_refusal_names_the_manifest_that_differs_and_how(
    given: list[ManifestInfo], expected: str, tmp_path: Path
) -> None:
    """Which manifest differs, and whether its content changed or it is another file, or how many there are."""
    Journal.open(tmp_path, [INFO]).close()
    with pytest.raises(JournalMismatch) as caught:
        Journal.open(tmp_path, given)
    assert str(caught.value) == (
        f"{tmp_path / 'journal.sqlite'}: {expected}. HINT: pass --fresh to start over in this directory, or "
        "choose another --out"
    )


def test_manifests_in_another_order_are_named_so(tmp_path: Path) -> None:
    """The same two files in the other order: results belong to positions, so it is refused, saying why."""
    Journal.open(tmp_path, [INFO, OTHER]).close()
    with pytest.raises(JournalMismatch, match="the same manifests given in another order"):
        Journal.open(tmp_path, [OTHER, INFO])


async def test_fresh_starts_over(tmp_path: Path) -> None:
    """fresh=True discards the old journal: new run id, no results, no mismatch."""
    first = Journal.open(tmp_path, [INFO])
    try:
        first.add(result(1, "present", "x"))
        await first.flush()
        old_id = first.run_id
    finally:
        first.close()
    changed = ManifestInfo(INFO.path, "d" * 64, INFO.size, INFO.columns)
    fresh = Journal.open(tmp_path, [changed], fresh=True)
    try:
        assert fresh.run_id != old_id
        assert fresh.resumed_from == 0
        assert await all_results(fresh, 0) == []
    finally:
        fresh.close()


async def test_fresh_repairs_a_garbage_journal(tmp_path: Path) -> None:
    """--fresh is the documented way out of a corrupt journal, so it must work on one."""
    (tmp_path / FILENAME).write_bytes(b"garbage" * 1000)
    opened = Journal.open(tmp_path, [INFO], fresh=True)
    opened.close()
    assert (tmp_path / FILENAME).stat().st_size > 0


async def test_a_flush_cancelled_before_its_write_starts_loses_nothing(journal: Journal) -> None:
    """A flush cancelled while its write still waits for the journal thread keeps the batch for the next flush.

    The engine cancels its quarter-second flusher when the workers are done; if that flush's write had been
    handed to the thread but not yet started, the batch was dropped and its rows ended "unchecked".
    """
    busy, release = threading.Event(), threading.Event()

    def hold_the_thread() -> None:
        busy.set()
        release.wait(5)

    blocker = journal._executor.submit(hold_the_thread)
    assert busy.wait(5)
    journal.add(result(1, "present", "id1"))
    journal.add(result(2, "missing"))
    flushing = asyncio.ensure_future(journal.flush())
    await asyncio.sleep(0.01)  # the write is queued behind the blocker
    flushing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await flushing
    release.set()
    blocker.result(5)
    journal.add(result(3, "present", "id3"))
    await journal.flush()
    rows = [r[:3] for r in await all_results(journal, 0)]
    assert rows == [(1, "present", "id1"), (2, "missing", ""), (3, "present", "id3")]


async def test_a_flush_cancelled_during_its_write_still_writes_it(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelling a flush whose write is already running cannot stop it: the rows are in the journal."""
    started, release = threading.Event(), threading.Event()
    write = journal_module._write_results

    def slow_write(db: sqlite3.Connection, batch: list[Result]) -> None:
        started.set()
        release.wait(5)
        write(db, batch)

    monkeypatch.setattr(journal_module, "_write_results", slow_write)
    journal.add(result(1, "present", "id1"))
    flushing = asyncio.ensure_future(journal.flush())
    assert await asyncio.to_thread(started.wait, 5)
    flushing.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await flushing
    await journal.flush()
    assert [r[:3] for r in await all_results(journal, 0)] == [(1, "present", "id1")]


def test_a_resume_must_read_the_manifests_the_same_way(tmp_path: Path) -> None:
    """Results belong to the values a row was read as: reopening with another --map or template is refused."""
    mapped = options_record(ReadOptions(columns=(("filename", "File"),)))
    Journal.open(tmp_path, [INFO], reading=mapped).close()
    Journal.open(tmp_path, [INFO], reading=mapped).close()  # the same reading resumes
    other = options_record(ReadOptions(columns=(("filename", "Recording"),), filename_template=None))
    with pytest.raises(JournalMismatch, match=r"read with other options \(--map\).*HINT: .*--fresh"):
        Journal.open(tmp_path, [INFO], reading=other)
    templated = options_record(ReadOptions(filename_template="{Sid}.mp3", encoding="latin-1"))
    with pytest.raises(JournalMismatch, match=r"\(--encoding, --map, --filename-template\)"):
        Journal.open(tmp_path, [INFO], reading=templated)
    Journal.open(tmp_path, [INFO], fresh=True, reading=other).close()  # --fresh starts over with the new reading


def test_a_journal_from_before_readings_were_recorded_adopts_the_first(tmp_path: Path) -> None:
    """A journal without a recorded reading resumes, and from then on holds the reading it resumed with."""
    Journal.open(tmp_path, [INFO]).close()
    db = sqlite3.connect(tmp_path / FILENAME)
    db.execute("DELETE FROM meta WHERE name = 'reading'")
    db.commit()
    db.close()
    first = options_record(ReadOptions(constants=(("company", "acme"),)))
    Journal.open(tmp_path, [INFO], reading=first).close()
    with pytest.raises(JournalMismatch, match=r"\(--company/--organisation/--folder\)"):
        Journal.open(tmp_path, [INFO], reading=options_record(ReadOptions()))
