"""Readers of the binary manifest formats: Excel workbooks (streamed in read-only mode) and Parquet (in batches).

Both turn typed cells into the text a person would see, so the same recordings read the same from any format:
integers without ``.0``, dates and timestamps ISO, empty cells and nulls empty.
"""

from __future__ import annotations

import datetime
import warnings
from collections.abc import Generator, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from reconcile.errors import ManifestError

from ._table import ReadOptions, Table, json_text, manifest_error

PARQUET_BATCH = 10_000  # rows per Arrow record batch read
XLSX_CHUNK = 500  # rows converted per trip into openpyxl


def number_text(value: float) -> str:
    """A spreadsheet or Parquet number as a person would type it: integral values without ``.0``."""
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return repr(value)


# --- Parquet ------------------------------------------------------------------------------------------------


def parquet_table(path: Path, *, batch: int = PARQUET_BATCH) -> Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
        columns = tuple(parquet.schema_arrow.names)
    except (pa.ArrowException, OSError) as exc:
        raise ManifestError(
            path,
            f"not a readable Parquet file ({exc}). HINT: check the file, or pass "
            "--input-format if it is another format",
        ) from None
    rows = _parquet_rows(path, parquet, batch)

    def close() -> None:
        rows.close()
        parquet.close()

    return Table(path, columns, rows, close, header_line=0, unit="row")


def _parquet_rows(path: Path, parquet: Any, batch_size: int) -> Generator[tuple[int, list[str]]]:
    import pyarrow as pa

    row = 0
    try:
        for batch in parquet.iter_batches(batch_size=batch_size):
            texts = [_arrow_texts(column) for column in batch.columns]
            for values in zip(*texts, strict=True):
                row += 1
                yield row, list(values)
    except (pa.ArrowException, OSError) as exc:
        raise manifest_error(
            path,
            f"unreadable after this row ({exc}). HINT: the file may be truncated or corrupt; write it again",
            row + 1,
            unit="row",
        ) from None
    finally:
        parquet.close()


def _arrow_texts(column: Any) -> list[str]:
    """An Arrow column as strings: nulls empty, numbers as :func:`number_text`, dates and timestamps ISO.

    Only ``to_pylist``: Arrow's compute kernels (cast, fill_null) pull in pandas, ~40 MB for nothing.
    """
    import pyarrow as pa

    kind = column.type
    if pa.types.is_dictionary(kind):
        return _arrow_texts(column.dictionary_decode())
    values = column.to_pylist()
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return ["" if v is None else v for v in values] if column.null_count else values
    if pa.types.is_floating(kind):
        return ["" if v is None else number_text(v) for v in values]
    if pa.types.is_boolean(kind):
        return ["" if v is None else "true" if v else "false" for v in values]
    if pa.types.is_temporal(kind) and not pa.types.is_duration(kind):
        return ["" if v is None else v.isoformat() for v in values]
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return ["" if v is None else v.decode("utf-8", "backslashreplace") for v in values]
    return [json_text(v) if v is None or isinstance(v, list | dict) else str(v) for v in values]


# --- XLSX ---------------------------------------------------------------------------------------------------


def xlsx_table(path: Path, options: ReadOptions) -> Table:
    import openpyxl

    try:
        # openpyxl warns about workbook features it ignores (styles, data validation): not the user's problem.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # a corrupt workbook fails in many ways
        raise ManifestError(
            path,
            f"not a readable Excel workbook ({type(exc).__name__}: {exc}). HINT: open it "
            "in Excel and save it again as .xlsx, or export CSV",
        ) from None
    names = book.sheetnames
    if options.sheet is not None and options.sheet not in names:
        book.close()
        raise ManifestError(
            path,
            f"no sheet named {options.sheet!r}; the sheets are {', '.join(repr(n) for n in names)}. HINT: --sheet NAME",
        )
    if not names:
        book.close()
        raise ManifestError(path, "the workbook has no sheets")
    sheet = options.sheet if options.sheet is not None else names[0]
    cells = _xlsx_cells(path, book[sheet].iter_rows(), sheet)
    number = 0
    for number, header in cells:  # noqa: B007 - the header's row is kept
        while header and not header[-1].strip():
            header.pop()
        if header:
            break
    else:
        book.close()
        raise manifest_error(
            path,
            "the sheet is empty: expected a header row naming company, organisation, "
            "folder and filename (or the columns given with --map)",
            1,
            unit="row",
            sheet=sheet,
        )
    rows = _xlsx_rows(cells, len(header), book)

    def close() -> None:
        rows.close()
        book.close()

    return Table(path, tuple(header), rows, close, header_line=number, sheet=sheet, unit="row")


def _xlsx_cells(path: Path, rows: Iterator[Any], sheet: str) -> Generator[tuple[int, list[str]]]:
    number = 0
    texts: list[list[str]] = []
    try:
        while True:
            # Read-only mode parses the sheet lazily, here, and openpyxl warns about features it ignores (data
            # validation, conditional formatting): not the user's concern.  Silenced a chunk at a time because
            # catch_warnings costs as much as reading a row.
            texts = []
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for row in islice(rows, XLSX_CHUNK):
                    texts.append([cell_text(cell) for cell in row])
            if not texts:
                return
            for values in texts:
                number += 1
                yield number, values
    except Exception as exc:  # a corrupt sheet fails in many ways; each means "unreadable"
        raise manifest_error(
            path,
            f"unreadable ({type(exc).__name__}: {exc}). HINT: open it in Excel and save it again",
            number + len(texts) + 1,
            unit="row",
            sheet=sheet,
        ) from None


def _xlsx_rows(cells: Generator[tuple[int, list[str]]], width: int, book: Any) -> Generator[tuple[int, list[str]]]:
    try:
        for number, values in cells:
            # Excel has no notion of a short row: pad it; trailing empty cells beyond the header are nothing.
            if len(values) < width:
                values += [""] * (width - len(values))
            elif len(values) > width:
                while len(values) > width and not values[-1]:
                    values.pop()
            if any(values):
                yield number, values
    finally:
        cells.close()
        book.close()


def cell_text(cell: Any) -> str:
    """An Excel cell as the text a person sees: integers without ``.0``, dates ISO, empty cells empty."""
    value = cell.value
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return number_text(value)
    if isinstance(value, datetime.datetime):
        time_shown = any(part in (cell.number_format or "").lower() for part in ("h", "s", "am/pm"))
        if value.time() == datetime.time(0) and not time_shown:
            return value.date().isoformat()
        return value.isoformat()
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    return str(value)
