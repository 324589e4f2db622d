"""report/_statistics: counts per status, company, organisation, folder and day, in bounded memory."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconcile.model import Status
from reconcile.report._statistics import (
    DayCount,
    FolderCount,
    MissingRow,
    ReportStatistics,
    date_column,
    day_of_folder,
    day_of_value,
    day_reader,
)


def test_counts_breakdowns_days_and_the_first_missing_rows(tmp_path: Path) -> None:
    """Every row counts once per status, company and organisation; days and the first missing rows are kept."""
    statistics = ReportStatistics(tuple(Status), "missing", spill_dir=tmp_path, first_missing=1)
    statistics.add("present", ("acme", "ca", "f1", "a.mp3"), "2026-11-25", "m.csv", 1, False)
    statistics.add("missing", ("acme", "ca", "f1", "b.mp3"), "2026-11-25", "m.csv", 2, False)
    statistics.add("missing", ("globex", "fr", "f2", "c.mp3"), "", "m.csv", 3, True)
    statistics.end_manifest(3)
    assert statistics.records == 3
    assert statistics.per_manifest == [3]
    assert statistics.duplicates == 1
    assert statistics.counts["missing"] == 2
    assert statistics.counts["error"] == 0  # every status is present, counted or not
    breakdowns = statistics.breakdowns()
    assert [c["company"] for c in breakdowns["by_company"]] == ["acme", "globex"]
    assert breakdowns["by_organisation"][0] == {
        "company": "acme",
        "organisation": "ca",
        **{status: {"present": 1, "missing": 1}.get(status, 0) for status in Status},
    }
    assert statistics.day_counts() == [DayCount("2026-11-25", 2, 1)]
    assert statistics.first_missing == [MissingRow("m.csv", 2, "acme", "ca", "f1", "b.mp3", "2026-11-25")]
    top, folders_missing = statistics.top_folders(1)
    assert top == [FolderCount("acme", "ca", "f1", 2, 1)]  # ties by name
    assert folders_missing == 2
    statistics.close()


def test_folder_counts_spill_to_disk_with_the_same_answer(tmp_path: Path) -> None:
    """Statistics forced to spill after 3 folders ranks folders exactly like one that keeps all in memory."""
    tallies = [
        ReportStatistics(tuple(Status), "missing", spill_dir=tmp_path, folders_in_memory=limit) for limit in (3, 10_000)
    ]
    for number in range(400):
        folder = f"f{number % 37}"
        status = "missing" if number % (number % 5 + 2) == 0 else "present"
        for statistics in tallies:
            statistics.add(status, ("c", "o", folder, f"{number}.mp3"), "", "m.csv", number + 1, False)
    spilled, kept = (statistics.top_folders(10) for statistics in tallies)
    assert any(p.name.startswith(".report-folders-") for p in tmp_path.iterdir())
    assert spilled == kept
    assert len(kept[0]) == 10
    for statistics in tallies:
        statistics.close()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        (["company", "call_date", "created"], 1),
        (["DateCreated", "x"], 0),
        (["Start Time", "DATE"], 1),
        (["recording_date_utc"], 0),
        (["validated", "CallDateUTC"], 1),
        (["company", "folder"], None),
    ],
)
def test_date_column_is_found_by_name(columns: list[str], expected: int | None) -> None:
    """call_date, DateCreated, date, ... are recognised in any case and spelling; exact names win."""
    assert date_column(columns) == expected


@pytest.mark.parametrize(
    ("value", "day"),
    [
        ("2026-11-25T08:28:35-05:00", "2026-11-25"),
        ("2026/11/5 10:00", "2026-11-05"),
        ("20261125-082835", "2026-11-25"),
        ("2026-13-01", ""),
        ("1899-01-01", ""),
        ("n/a", ""),
        ("", ""),
        ("2026-11-251", ""),
    ],
)
def test_day_of_value(value: str, day: str) -> None:
    """A date is read from the start of a value, validated; anything else gives no day."""
    assert day_of_value(value) == day


@pytest.mark.parametrize(
    ("folder", "day"),
    [
        ("2026/11/25/inbound", "2026-11-25"),
        ("archive/2026-02-30", ""),
        ("x/2026_01_02", "2026-01-02"),
        ("archive/2025-Q1", ""),
        ("12026/11/25", ""),
    ],
)
def test_day_of_folder(folder: str, day: str) -> None:
    """A date anywhere in a folder path counts when it is a real date not inside a longer number."""
    assert day_of_folder(folder) == day


def test_day_reader_prefers_the_date_column_then_the_folder() -> None:
    """A row's day comes from its date column when that parses, else from its folder."""
    read = day_reader(["company", "call_date"])
    assert read(["acme", "2026-11-24T23:59:00Z"], "2026/11/25") == "2026-11-24"
    assert read(["acme", "unknown"], "2026/11/25") == "2026-11-25"
    assert day_reader(["company"])(["acme"], "no/date") == ""
