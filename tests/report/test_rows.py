"""report/_rows: rows merged up to a bound, step by step exactly as in one go, and never past a missing result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reconcile.engine._journal import Journal, Result
from reconcile.engine._watermark import END, Position
from reconcile.input._manifest import Manifest
from reconcile.model import Key, Status
from reconcile.report._rows import ROW, SOURCE, STATUS, MissingResult, ReportRows, Unchecked
from reconcile.report._statistics import ReportStatistics
from tests.conftest import write_manifest

NOT_CHECKED: Unchecked = (Status.UNCHECKED, "", "not checked", 0, "")


class Sink:
    """What the report's files receive: the chunks, as (source, row, status) per row, and the statistics."""

    def __init__(self, spill_dir: Path) -> None:
        self.statistics = ReportStatistics(tuple(Status), Status.MISSING, spill_dir=spill_dir)
        self.chunks: list[list[tuple[str, int, str]]] = []

    def add(self, rows: list[list[Any]], keys: list[Key]) -> None:
        assert len(rows) == len(keys)
        self.chunks.append([(Path(row[SOURCE]).name, row[ROW], row[STATUS]) for row in rows])

    @property
    def counted(self) -> int:
        return sum(self.statistics.counts.values())


def small_rows(files: list[Manifest], journal: Journal) -> ReportRows:
    """Pages of 3 results, chunks of 4 rows, slices of 2: every boundary is crossed many times."""
    return ReportRows(files, journal, page=3, chunk=4, slice_rows=2)


def manifests(tmp_path: Path) -> list[Manifest]:
    made = []
    for index, (name, count) in enumerate((("a", 10), ("b", 6))):
        rows = [("acme", "acme-ca", "2026/11/25", f"{name}{i}.wav") for i in range(count)]
        made.append(Manifest(write_manifest(tmp_path / f"{name}.csv", rows), index))
    return made


def answer(journal: Journal, source: int, rows: range) -> None:
    for row in rows:
        status = Status.PRESENT if row % 3 else Status.MISSING
        journal.add(Result(source, row, status, f"c{source}-{row}" if status == Status.PRESENT else "", "", 1, "t"))


async def test_advancing_step_by_step_gives_what_one_advance_gives(tmp_path: Path) -> None:
    """Bounds that grow as results are committed give the same chunks, in order, as one advance at the end."""
    files = manifests(tmp_path)
    stepped, whole = Sink(tmp_path), Sink(tmp_path)
    journal = Journal.open(tmp_path / "out", [m.info() for m in files])
    try:
        rows = small_rows(files, journal)
        steps: list[tuple[Position, int, range]] = [
            ((0, 4), 0, range(1, 11)),  # results ahead of the bound are not merged yet
            ((0, 4), 0, range(0)),  # the same bound again: nothing new
            ((0, 11), 0, range(0)),
            ((1, 3), 1, range(1, 3)),  # b's rows 3..6 are never answered
        ]
        for bound, source, answered in steps:
            answer(journal, source, answered)
            await journal.flush()
            await rows.advance(bound, stepped)
            before = bound[1] - 1 if bound[0] == 0 else 10 + bound[1] - 1
            assert stepped.counted == before, f"rows merged up to {bound}"
        await rows.advance(END, stepped, NOT_CHECKED)
        rows.close()
        again = small_rows(files, journal)
        await again.advance(END, whole, NOT_CHECKED)
        again.close()
    finally:
        journal.close()
        stepped.statistics.close()
        whole.statistics.close()
    assert stepped.chunks == whole.chunks
    assert [len(c) for c in whole.chunks] == [4, 4, 2, 4, 2]  # a manifest's last rows are a chunk of their own
    merged = [entry for chunk in whole.chunks for entry in chunk]
    assert merged[:10] == [("a.csv", r, Status.PRESENT if r % 3 else Status.MISSING) for r in range(1, 11)]
    assert merged[10:] == [("b.csv", 1, Status.PRESENT), ("b.csv", 2, Status.PRESENT)] + [
        ("b.csv", r, Status.UNCHECKED) for r in (3, 4, 5, 6)
    ]
    assert stepped.statistics.per_manifest == whole.statistics.per_manifest == [10, 6]


async def test_a_row_without_a_result_before_the_bound_raises(tmp_path: Path) -> None:
    """While the run goes, a row before the bound with no result is an error, never an 'unchecked' row."""
    files = manifests(tmp_path)
    sink = Sink(tmp_path)
    journal = Journal.open(tmp_path / "out", [m.info() for m in files])
    try:
        answer(journal, 0, range(1, 3))
        answer(journal, 0, range(4, 8))
        await journal.flush()
        rows = small_rows(files, journal)
        with pytest.raises(MissingResult, match=r"row 3 of .*a\.csv has no committed result"):
            await rows.advance((0, 8), sink)
        rows.close()
    finally:
        journal.close()
        sink.statistics.close()
    assert sink.counted == 2
