"""frames.py: a finished report opens in pandas exactly as written, split into present and missing rows."""

from __future__ import annotations

from pathlib import Path

import pytest

import reconcile
from reconcile.emulator import Dataset, Emulator, EmulatorConfig
from reconcile.errors import UsageError
from tests.conftest import read_results, settings_for, write_manifest

PRESENT = ("NA", "0042", "2026/11/25", "00123.wav")  # text that pandas' defaults would turn into NaN and numbers
MISSING = ("acme", "acme-ca", "2026/11/25", "gone.wav")
INVALID = ("acme", "", "2026/11/25", "no-org.wav")


async def finished_run(tmp_path: Path) -> Path:
    manifest = write_manifest(tmp_path / "export.csv", [PRESENT, MISSING, INVALID, PRESENT])
    out = tmp_path / "out"
    async with Emulator(EmulatorConfig(), Dataset({PRESENT: "call-7"})) as emulator:
        await reconcile.run([manifest], out, settings=settings_for(emulator), label="audit")
    return out


async def test_every_row_reads_back_as_written(tmp_path: Path) -> None:
    """Each cell of results.csv is the same text in the DataFrame; row and attempts are integers."""
    out = await finished_run(tmp_path)
    report = reconcile.load_report(out)
    expected = read_results(out / "results.csv")
    assert len(report.results) == len(expected) == 4
    assert report.results["row"].tolist() == [1, 2, 3, 4]
    assert str(report.results["row"].dtype) == str(report.results["attempts"].dtype) == "int64"
    for column in expected[0]:
        values = report.results[column].tolist()
        assert [str(v) for v in values] == [row[column] for row in expected], column
    assert report.results.loc[0, "company"] == "NA"
    assert report.results.loc[0, "filename"] == "00123.wav"
    assert report.results.loc[0, "organisation"] == "0042"


async def test_present_and_missing_split_by_status(tmp_path: Path) -> None:
    """present holds the rows found, with their callIds (duplicates included); missing the rows not found."""
    out = await finished_run(tmp_path)
    report = reconcile.load_report(str(out))
    assert report.present["row"].tolist() == [1, 4]
    assert report.present["call_id"].tolist() == ["call-7", "call-7"]
    assert report.missing["filename"].tolist() == ["gone.wav"]
    assert report.missing["call_id"].tolist() == [""]
    assert report.summary is not None
    assert report.summary.counts.as_dict() == {"present": 2, "missing": 1, "invalid": 1, "error": 0, "unchecked": 0}
    assert report.summary.label == "audit"


def test_a_directory_without_a_report_is_a_usage_error(tmp_path: Path) -> None:
    """Pointing at a directory with no results.csv says so, naming the file, with a hint."""
    with pytest.raises(UsageError, match=r"results\.csv: no report there\. HINT: give the --out directory"):
        reconcile.load_report(tmp_path)
