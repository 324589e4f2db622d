"""exports.py: every --format opens in pandas with the rows of results.csv; the XLSX sheets split at the row limit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openpyxl
import pandas as pd
import pyarrow.parquet as pq
import pytest

from reconcile.api import run
from reconcile.emulator import Emulator
from reconcile.engine._engine import RunOptions
from reconcile.errors import UsageError
from reconcile.report._summary import Counts, Summary
from reconcile.report._writers import EXCEL_MAX_ROWS, CsvWriter, JsonWriter, ParquetWriter, XlsxWriter, check_formats
from tests.conftest import RESULTS_HEADER, SAMPLES, read_results, settings_for, write_manifest

INTS = [4, 9]


def as_text(frame: pd.DataFrame) -> list[dict[str, str]]:
    """A frame's rows as dicts of strings, to compare with csv.DictReader's."""
    return [{str(k): str(v) for k, v in r.items()} for r in frame.to_dict("records")]


@pytest.fixture
async def every_format(emulator: Emulator, tmp_path: Path) -> Path:
    """The sample manifests (three shapes, non-ASCII, duplicates, invalid rows) reported in every format."""
    out = tmp_path / "out"
    options = RunOptions(formats=("json", "xlsx", "parquet"), label="all formats")
    await run(sorted(SAMPLES.glob("*.csv")), out, settings=settings_for(emulator), options=options)
    return out


@pytest.mark.slow
def test_parquet_has_the_rows_and_types_of_results_csv(every_format: Path) -> None:
    """results/missing.parquet: same columns, same rows; row and attempts are integers, the rest text."""
    for name in ("results", "missing"):
        expected = read_results(every_format / f"{name}.csv")
        frame = pd.read_parquet(every_format / f"{name}.parquet")
        assert list(frame.columns) == list(expected[0])
        assert as_text(frame) == expected
    schema = pq.read_schema(every_format / "results.parquet")
    kinds = {field.name: str(field.type) for field in schema}
    assert kinds.pop("row") == kinds.pop("attempts") == "int64"
    assert set(kinds.values()) == {"string"}


@pytest.mark.slow
def test_json_lines_have_the_rows_of_results_csv(every_format: Path) -> None:
    """results/missing.jsonl read with lines=True give results.csv's rows, keys in its column order."""
    for name in ("results", "missing"):
        expected = read_results(every_format / f"{name}.csv")
        frame = pd.read_json(every_format / f"{name}.jsonl", lines=True, dtype=False)
        assert list(frame.columns) == list(expected[0])
        assert as_text(frame) == expected
        assert frame["row"].dtype == "int64"


@pytest.mark.slow
def test_xlsx_sheets_have_the_rows_of_results_csv(every_format: Path) -> None:
    """The All sheet is results.csv, the Missing sheet is missing.csv, after a Summary sheet."""
    sheets = pd.read_excel(every_format / "results.xlsx", sheet_name=None, dtype=str, keep_default_na=False)
    assert list(sheets) == ["Summary", "Missing", "All"]
    assert sheets["All"].to_dict("records") == read_results(every_format / "results.csv")
    assert sheets["Missing"].to_dict("records") == read_results(every_format / "missing.csv")


@pytest.mark.slow
def test_xlsx_summary_sheet_carries_compliance_metadata(every_format: Path) -> None:
    """Run id, label, engine version, endpoint, times, manifests' SHA-256 and counts are on the Summary sheet."""
    import json

    summary = json.loads((every_format / "summary.json").read_text(encoding="utf-8"))
    sheet = pd.read_excel(every_format / "results.xlsx", sheet_name="Summary", header=None, dtype=str)
    cells = {(str(a), str(b)) for a, b in zip(sheet[0], sheet[1], strict=True)}
    for title, name in (
        ("Run id", "run_id"),
        ("Label", "label"),
        ("Engine version", "engine_version"),
        ("Endpoint", "endpoint"),
        ("Started at", "started_at"),
        ("Finished at", "finished_at"),
    ):
        assert (title, str(summary[name])) in cells
    for manifest in summary["manifests"]:
        assert (manifest["path"], manifest["sha256"]) in cells
    for status, count in summary["counts"].items():
        assert (status, str(count)) in cells
    organisations = sheet[sheet[0] == "Company"].index[0]
    assert len(sheet) - organisations - 1 == len(summary["by_organisation"])


@pytest.mark.slow
def test_xlsx_has_frozen_bold_header_and_sized_columns(every_format: Path) -> None:
    """Each data sheet freezes its header row, makes it bold, filters it, and sizes columns to the data."""
    book = openpyxl.load_workbook(every_format / "results.xlsx")
    try:
        for name in ("All", "Missing"):
            sheet = book[name]
            assert sheet.freeze_panes == "A2"
            assert all(cell.font.b for cell in sheet[1])
            assert sheet.auto_filter.ref == f"A1:{sheet.cell(1, sheet.max_column).column_letter}{sheet.max_row}"
            widths = {
                sheet.cell(1, c).value: sheet.column_dimensions[sheet.cell(1, c).column_letter].width
                for c in range(1, sheet.max_column + 1)
            }
            assert widths["filename"] > widths["row"]  # filenames are long, row numbers short
            assert all(8 <= w <= 60 for w in widths.values())
    finally:
        book.close()


async def test_run_writes_only_the_formats_asked(emulator: Emulator, tmp_path: Path) -> None:
    """--format parquet adds the Parquet files to csv (always written) and nothing else."""
    manifest = write_manifest(tmp_path / "m.csv", [("acme", "acme-ca", "2026/11/24", "x.mp3")])
    summary = await run([manifest], tmp_path / "o", settings=settings_for(emulator), formats=("parquet",))
    written = sorted(p.name for p in (tmp_path / "o").iterdir() if not p.name.startswith(("journal", ".reconcile")))
    assert written == [
        "missing.csv",
        "missing.parquet",
        "report.html",
        "results.csv",
        "results.parquet",
        "summary.json",
    ]
    assert {p.name for p in summary.paths.values()} == set(written)


def test_check_formats_refuses_unknown_names() -> None:
    """An unknown format is a UsageError listing the known ones; csv always comes first and once."""
    assert check_formats(["XLSX", " json", "csv", "xlsx"]) == ("csv", "xlsx", "json")
    with pytest.raises(UsageError, match=r"'docx'.*HINT: choose from csv, parquet, xlsx, json"):
        check_formats(["docx"])


async def test_an_unknown_format_fails_before_any_request(emulator: Emulator, tmp_path: Path) -> None:
    """A typo in --format is refused before the run, not after hours of checking."""
    manifest = write_manifest(tmp_path / "m.csv", [("acme", "acme-ca", "2026/11/24", "x.mp3")])
    with pytest.raises(UsageError, match="xslx"):
        await run([manifest], tmp_path / "o", settings=settings_for(emulator), formats=("xslx",))
    assert emulator.stats.api_requests == 0


def rows(count: int, missing_every: int = 3) -> list[list[Any]]:
    return [
        ["c", "o", "f", f"file-{i}.mp3", i, "m.csv", "missing" if i % missing_every == 0 else "present", "", "", 1, "t"]
        for i in range(1, count + 1)
    ]


def test_xlsx_splits_sheets_beyond_the_row_limit(tmp_path: Path) -> None:
    """With a 5-row limit (header + 4), 10 rows become All, All (2), All (3); the Summary sheet says so."""
    data = rows(10)
    writer = XlsxWriter(tmp_path, RESULTS_HEADER, INTS, max_rows=5)
    writer.add(data[:7], [r for r in data[:7] if r[6] == "missing"])
    writer.add(data[7:], [r for r in data[7:] if r[6] == "missing"])
    writer.finish(Summary(counts=Counts(missing=3)))
    sheets = pd.read_excel(tmp_path / "results.xlsx", sheet_name=None, dtype=str, keep_default_na=False)
    assert list(sheets) == ["Summary", "Missing", "All", "All (2)", "All (3)"]
    assert [len(sheets[n]) for n in ("All", "All (2)", "All (3)")] == [4, 4, 2]
    joined = pd.concat([sheets["All"], sheets["All (2)"], sheets["All (3)"]])
    assert joined["filename"].tolist() == [r[3] for r in data]
    notes = sheets["Summary"].iloc[:, 1].tolist()
    assert (
        "10 rows are split across the sheets All, All (2), All (3): Excel holds at most 5 rows per sheet, "
        "header included." in notes
    )


def test_xlsx_missing_sheet_splits_too(tmp_path: Path) -> None:
    """Missing rows beyond the limit continue in "Missing (2)", placed before the All sheet."""
    data = rows(5, missing_every=1)
    writer = XlsxWriter(tmp_path, RESULTS_HEADER, INTS, max_rows=3)
    writer.add(data, data)
    writer.finish(Summary())
    sheets = pd.read_excel(tmp_path / "results.xlsx", sheet_name=None, dtype=str, keep_default_na=False)
    assert list(sheets) == ["Summary", "Missing", "Missing (2)", "Missing (3)", "All", "All (2)", "All (3)"]
    assert sum(len(sheets[n]) for n in ("Missing", "Missing (2)", "Missing (3)")) == 5


def test_excel_limit_is_excels(tmp_path: Path) -> None:
    """The default limit is Excel's own: 1,048,576 rows per sheet."""
    writer = XlsxWriter(tmp_path, RESULTS_HEADER, INTS)
    assert EXCEL_MAX_ROWS == writer.max_rows == 2**20
    writer.abort()


def test_xlsx_keeps_hostile_text_as_text(tmp_path: Path) -> None:
    """A filename like '=HYPERLINK(...)' stays text (never a formula); control characters cannot break the file."""
    data = rows(2)
    data[0][3] = '=HYPERLINK("http://example.invalid","x")'
    data[1][3] = "bell\x07.mp3"
    writer = XlsxWriter(tmp_path, RESULTS_HEADER, INTS)
    writer.add(data, [])
    writer.finish(Summary())
    book = openpyxl.load_workbook(tmp_path / "results.xlsx")
    try:
        sheet = book["All"]
        assert sheet["D2"].data_type == "s"
        assert sheet["D2"].value == data[0][3]
        assert sheet["D3"].value == "bell\ufffd.mp3"
    finally:
        book.close()


@pytest.mark.parametrize("maker", [CsvWriter, JsonWriter, ParquetWriter, XlsxWriter])
def test_a_report_without_rows_still_opens(tmp_path: Path, maker: Any) -> None:
    """Each writer finishing with no rows leaves files pandas opens, with the columns and no rows."""
    writer = maker(tmp_path, RESULTS_HEADER, INTS)
    writer.finish(Summary())
    for path in writer.paths.values():
        if path.suffix == ".csv":
            frame = pd.read_csv(path)
        elif path.suffix == ".parquet":
            frame = pd.read_parquet(path)
        elif path.suffix == ".xlsx":
            frame = pd.read_excel(path, sheet_name="All")
        else:
            assert path.read_bytes() == b""  # JSON Lines of no rows: no lines
            continue
        assert list(frame.columns) == RESULTS_HEADER
        assert len(frame) == 0


@pytest.mark.parametrize("maker", [CsvWriter, JsonWriter, ParquetWriter, XlsxWriter])
def test_abort_leaves_nothing_behind(tmp_path: Path, maker: Any) -> None:
    """A writer aborted half-way removes its temporary files and never creates the final ones."""
    writer = maker(tmp_path, RESULTS_HEADER, INTS)
    writer.add(rows(3), [])
    writer.abort()
    assert list(tmp_path.iterdir()) == []
