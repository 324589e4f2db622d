"""input/_binary: XLSX cells and Parquet values become the text a person sees, in batches and chunks."""

from __future__ import annotations

import datetime
import zipfile
from pathlib import Path

import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from reconcile.errors import ManifestError
from reconcile.input._binary import cell_text, number_text, parquet_table
from reconcile.input._manifest import Manifest
from reconcile.input._table import ReadOptions
from tests.input.test_readers import ROWS, _error, write_parquet, write_xlsx


def test_a_truncated_parquet_file_is_an_error(tmp_path: Path) -> None:
    """A Parquet file cut short (no footer) is refused with a message."""
    path = write_parquet(tmp_path)
    path.write_bytes(path.read_bytes()[:-40])
    assert "not a readable Parquet file" in str(_error(path))


def test_xlsx_sheet_option_blank_rows_and_short_rows(tmp_path: Path) -> None:
    """--sheet picks the sheet; blank rows are skipped, line is the sheet row, short rows are padded."""
    path = tmp_path / "book.xlsx"
    book = openpyxl.Workbook()
    book.active.append(["ignored"])
    sheet = book.create_sheet("Calls")
    sheet.append([])
    sheet.append(["company", "organisation", "folder", "filename", None])
    sheet.append(["acme", "o", "f", "a.mp3"])
    sheet.append([])
    sheet.append(["acme", "o", "f"])
    sheet["A7"] = "acme"
    sheet["D7"] = "d.mp3"
    book.save(path)
    manifest = Manifest(path, options=ReadOptions(sheet="Calls"))
    assert manifest.columns == ("company", "organisation", "folder", "filename")
    records = list(manifest.records())
    assert [(r.line, r.filename, r.problem) for r in records] == [
        (3, "a.mp3", None),
        (5, "", "empty filename"),
        (7, "d.mp3", "empty organisation, folder"),
    ]


def test_xlsx_header_error_names_sheet_and_row(tmp_path: Path) -> None:
    """A workbook without the needed columns says which sheet and row held the header."""
    path = tmp_path / "book.xlsx"
    book = openpyxl.Workbook()
    book.active.title = "Export"
    book.active.append([])
    book.active.append(["RecordingSid", "Duration"])
    book.save(path)
    error = _error(path)
    assert "sheet 'Export', row 2: missing required column(s)" in str(error)
    assert error.line == 2


class _Cell:
    def __init__(self, value: object, number_format: str = "General") -> None:
        self.value, self.number_format = value, number_format


@pytest.mark.parametrize(
    ("value", "number_format", "expected"),
    [
        (None, "General", ""),
        ("007", "@", "007"),
        (12, "General", "12"),
        (12.0, "General", "12"),
        (1.5, "General", "1.5"),
        (14165550166.0, "0", "14165550166"),
        (True, "General", "TRUE"),
        (datetime.datetime(2026, 11, 25), "yyyy-mm-dd", "2026-11-25"),
        (datetime.datetime(2026, 11, 25), "yyyy-mm-dd hh:mm", "2026-11-25T00:00:00"),
        (datetime.datetime(2026, 11, 25, 8, 5, 9), "yyyy-mm-dd", "2026-11-25T08:05:09"),
        (datetime.date(2026, 11, 25), "General", "2026-11-25"),
        (datetime.time(8, 5), "h:mm", "08:05:00"),
    ],
)
def test_cell_text(value: object, number_format: str, expected: str) -> None:
    """Excel values become the text a person sees: no '.0' on integers, ISO dates, empty for None."""
    assert cell_text(_Cell(value, number_format)) == expected


def test_number_text() -> None:
    """Integral floats lose their '.0'; others keep full precision."""
    assert [number_text(v) for v in (3.0, -2.0, 0.1, 1e25)] == ["3", "-2", "0.1", "1e+25"]


def test_parquet_types_nulls_and_batches(tmp_path: Path) -> None:
    """Parquet values become text (nulls empty, dictionaries decoded) across batch boundaries."""
    path = tmp_path / "typed.parquet"
    table = pa.table(
        {
            "company": pa.array(["acme", "acme", None]).dictionary_encode(),
            "organisation": pa.array(["o", "o", "o"]),
            "folder": pa.array(["f", "f", "f"]),
            "filename": pa.array(["a", "b", "c"]),
            "n": pa.array([1, None, 3], pa.int32()),
            "x": pa.array([1.0, 2.5, None]),
            "ok": pa.array([True, False, None]),
            "d": pa.array([datetime.date(2026, 11, 25), None, None]),
            "tags": pa.array([["a", "b"], None, []]),
        }
    )
    pq.write_table(table, path)
    table = parquet_table(path, batch=2)
    try:
        rows = [values for _line, values in table.rows]
    finally:
        table.close()
    manifest = Manifest(path)
    assert [values[4:] for values in rows] == [
        ["1", "1", "true", "2026-11-25", '["a","b"]'],
        ["", "2.5", "false", "", ""],
        ["3", "", "", "", "[]"],
    ]
    assert [(r.line, r.problem) for r in manifest.records()] == [(1, None), (2, None), (3, "empty company")]


def test_xlsx_feature_warnings_do_not_escape(tmp_path: Path) -> None:
    """A sheet extension openpyxl warns about while streaming is read without a warning (warnings are errors here)."""
    plain = write_xlsx(tmp_path)
    path = tmp_path / "extended.xlsx"
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(path, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":  # Excel's x14 data validation extension
                data = data.replace(
                    b"</worksheet>", b'<extLst><ext uri="{CCE6A557-97BC-4b89-ADB6-D9C93CAAB3DF}"/></extLst></worksheet>'
                )
            target.writestr(item, data)
    book = openpyxl.load_workbook(path, read_only=True)
    with pytest.warns(UserWarning, match="extension is not supported"):  # warned while streaming, not at load
        list(book.active.iter_rows())
    book.close()
    assert [r.filename for r in Manifest(path).records()] == [row[3] for row in ROWS]


def test_a_damaged_sheet_names_the_sheet_and_row_reached(tmp_path: Path) -> None:
    """A sheet whose XML breaks part-way fails naming the sheet and the row reached, after the rows before it."""
    path = tmp_path / "rows.xlsx"
    book = openpyxl.Workbook()
    book.active.title = "Calls"
    book.active.append(["company", "organisation", "folder", "filename"])
    for i in range(3000):
        book.active.append(["acme", "o", "f", f"{i}.mp3"])
    book.save(path)
    damaged = tmp_path / "damaged.xlsx"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(damaged, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                data = data[: len(data) // 2] + b"<<broken"
            target.writestr(item, data)
    read: list[int] = []
    with pytest.raises(ManifestError) as caught:
        read.extend(r.line for r in Manifest(damaged).records())
    assert str(caught.value).startswith(f"{damaged}: sheet 'Calls', row {caught.value.line}: unreadable")
    assert caught.value.line is not None
    assert 1000 < caught.value.line <= read[-1] + 1 + 500  # within the chunk after the last row delivered
