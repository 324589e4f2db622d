"""Report writers: results and missing rows in CSV (always), Parquet, Excel and JSON Lines, and report.pdf (its
writer is in :mod:`reconcile.report._pdf`), fed chunk by chunk.

Each writer takes the report's rows as they stream past (:meth:`Writer.add`), so none holds more than a chunk,
and writes under temporary names that :meth:`Writer.finish` renames into place: a crash never leaves a
half-written file with a final name.  Every format carries the columns of results.csv in the same order; Parquet,
Excel and JSON keep ``row`` and ``attempts`` as integers and every other column as text, exactly as written in the
manifest (a filename of ``00123`` stays ``00123``).

JSON is written as JSON Lines (``results.jsonl``, one object per line) rather than one JSON array: it streams on
both ends, a truncated file loses only its last line, and ``pandas.read_json(path, lines=True)`` reads it.
"""

from __future__ import annotations

import array
import contextlib
import csv
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Protocol

import orjson

from reconcile.errors import UsageError
from reconcile.model import Status, partial_path

from ._summary import SUMMARY_NAME, Summary

FORMATS = ("csv", "parquet", "xlsx", "json", "pdf")
EXCEL_MAX_ROWS = 1_048_576  # rows per worksheet, header included (Excel's limit)
EXCEL_MAX_CHARS = 32_767  # characters per cell
# XML 1.0 forbids these characters; openpyxl refuses them, so they become U+FFFD in the workbook only.
_ILLEGAL_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def check_formats(formats: Sequence[str]) -> tuple[str, ...]:
    """The formats asked for, in order and without repeats, csv always first; unknown names are a UsageError."""
    wanted = [f.strip().lower() for f in formats if f.strip()]
    unknown = [f for f in wanted if f not in FORMATS]
    if unknown:
        raise UsageError(
            f"unknown report format(s) {', '.join(repr(f) for f in unknown)}. "
            f"HINT: choose from {', '.join(FORMATS)}, e.g. --format csv,xlsx"
        )
    if "pdf" in wanted:
        from ._pdf import check_available  # WeasyPrint is an optional extra: say so now, not after the run

        check_available()
    return tuple(dict.fromkeys(["csv", *wanted]))


class Writer(Protocol):
    """One report format's files."""

    paths: dict[str, Path]

    def add(self, rows: Sequence[list[Any]], missing: Sequence[list[Any]]) -> None: ...

    def finish(self, summary: Summary) -> None: ...

    def abort(self) -> None: ...


def open_writers(
    out_dir: Path,
    columns: Sequence[str],
    formats: Sequence[str],
    int_columns: Sequence[int],
) -> list[Writer]:
    """A writer for each format; ``int_columns`` are the positions of the integer columns."""
    from ._pdf import PdfWriter  # here: it builds on this module's partial names

    makers: dict[str, Any] = {
        "csv": CsvWriter,
        "parquet": ParquetWriter,
        "xlsx": XlsxWriter,
        "json": JsonWriter,
        "pdf": PdfWriter,
    }
    writers: list[Writer] = []
    try:
        for name in check_formats(formats):
            writers.append(makers[name](out_dir, list(columns), list(int_columns)))
    except BaseException:
        for writer in writers:
            writer.abort()
        raise
    return writers


# Every file a writer here may write: what a superseded report loses, and all a partial name may be made of.
TABLE_NAMES = (
    "results.csv",
    "missing.csv",
    "results.parquet",
    "missing.parquet",
    "results.xlsx",
    "results.jsonl",
    "missing.jsonl",
)
# The rest of a report (report.py, delta.py and pdf.py write them); summary.json first, as it marks a report finished.
REPORT_NAMES = (SUMMARY_NAME, "report.html", "delta.csv", "report.pdf", *TABLE_NAMES)


def discard_partials(out_dir: Path) -> None:
    """Remove the files a killed run left half-written in ``out_dir`` (under :func:`partial` names of a report's
    files only: another program's ``.x.partial`` is not ours to remove)."""
    for name in REPORT_NAMES:
        partial_path(out_dir / name).unlink(missing_ok=True)


def _commit(paths: Mapping[str, Path]) -> None:
    for path in paths.values():
        os.replace(partial_path(path), path)


def _discard(paths: Mapping[str, Path]) -> None:
    for path in paths.values():
        partial_path(path).unlink(missing_ok=True)


class _FileWriter:
    """A writer of plain files: ``paths`` written through ``_handles`` under partial names, renamed on success."""

    paths: dict[str, Path]
    _handles: list[IO[Any]]

    def finish(self, summary: Summary) -> None:
        for handle in self._handles:
            handle.close()
        _commit(self.paths)

    def abort(self) -> None:
        for handle in self._handles:
            handle.close()
        _discard(self.paths)


class CsvWriter(_FileWriter):
    """results.csv and missing.csv: the contract; every other format mirrors them.

    Written with the ``csv`` module, not pandas: importing and framing cost 0.6 s of a 50,000-row run
    (bench/README.md).  pandas reads the report back exactly with :func:`reconcile.report._load.load_report`.
    """

    def __init__(self, out_dir: Path, columns: list[str], int_columns: list[int]) -> None:
        self.paths = {"results": out_dir / "results.csv", "missing": out_dir / "missing.csv"}
        self._handles = [open(partial_path(p), "w", encoding="utf-8", newline="") for p in self.paths.values()]  # noqa: SIM115
        self._results, self._missing = (csv.writer(h, lineterminator="\n") for h in self._handles)
        self._results.writerow(columns)
        self._missing.writerow(columns)

    def add(self, rows: Sequence[list[Any]], missing: Sequence[list[Any]]) -> None:
        self._results.writerows(rows)
        self._missing.writerows(missing)


class JsonWriter(_FileWriter):
    """results.jsonl and missing.jsonl: one JSON object per row, keys in results.csv's column order."""

    def __init__(self, out_dir: Path, columns: list[str], int_columns: list[int]) -> None:
        self.paths = {"results_json": out_dir / "results.jsonl", "missing_json": out_dir / "missing.jsonl"}
        self._columns = columns
        self._handles = [open(partial_path(p), "wb") for p in self.paths.values()]  # noqa: SIM115

    def add(self, rows: Sequence[list[Any]], missing: Sequence[list[Any]]) -> None:
        columns = self._columns
        for handle, chunk in zip(self._handles, (rows, missing), strict=True):
            handle.write(b"".join(orjson.dumps(dict(zip(columns, row, strict=True))) + b"\n" for row in chunk))


class ParquetWriter:
    """results.parquet and missing.parquet, one row group per chunk."""

    def __init__(self, out_dir: Path, columns: list[str], int_columns: list[int]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.paths = {"results_parquet": out_dir / "results.parquet", "missing_parquet": out_dir / "missing.parquet"}
        self._pa = pa
        self._types = [pa.int64() if i in int_columns else pa.string() for i in range(len(columns))]
        self._schema = pa.schema([pa.field(c, t) for c, t in zip(columns, self._types, strict=True)])
        self._writers = [pq.ParquetWriter(partial_path(p), self._schema) for p in self.paths.values()]

    def add(self, rows: Sequence[list[Any]], missing: Sequence[list[Any]]) -> None:
        for writer, chunk in zip(self._writers, (rows, missing), strict=True):
            if chunk:
                writer.write_batch(self._batch(chunk))

    def _batch(self, rows: Sequence[list[Any]]) -> Any:
        pa = self._pa
        arrays = [
            _int_array(pa, values) if kind == pa.int64() else _string_array(pa, values)
            for values, kind in zip(zip(*rows, strict=True), self._types, strict=True)
        ]
        return pa.RecordBatch.from_arrays(arrays, schema=self._schema)

    def finish(self, summary: Summary) -> None:
        for writer in self._writers:
            writer.close()
        _commit(self.paths)

    def abort(self) -> None:
        for writer in self._writers:
            writer.close()
        _discard(self.paths)


def _string_array(pa: Any, values: Sequence[str]) -> Any:
    # Arrow's StringBuilder, not pa.array(): pa.array() imports pandas to ask whether the values are a
    # pandas object, ~50 MB of memory the report otherwise never needs.
    builder_class = getattr(pa.lib, "StringBuilder", None)
    if builder_class is None:
        return pa.array(values, type=pa.string())
    builder = builder_class()
    builder.append_values(values)
    return builder.finish()


def _int_array(pa: Any, values: Sequence[int]) -> Any:
    return pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(array.array("q", values))])


class XlsxWriter:
    """results.xlsx: a Summary sheet, a Missing sheet and an All sheet, each split at Excel's row limit."""

    def __init__(
        self, out_dir: Path, columns: list[str], int_columns: list[int], *, max_rows: int = EXCEL_MAX_ROWS
    ) -> None:
        from openpyxl import Workbook

        self.max_rows = max_rows

        self.paths = {"results_xlsx": out_dir / "results.xlsx"}
        self._columns = columns
        self._book = Workbook(write_only=True)
        self._summary = self._book.create_sheet("Summary")
        self._missing = _SplitSheet(self._book, "Missing", columns, self.max_rows)
        self._all = _SplitSheet(self._book, "All", columns, self.max_rows)

    def add(self, rows: Sequence[list[Any]], missing: Sequence[list[Any]]) -> None:
        if not self._missing.names:  # both sheets, Missing first, sized from the first rows of the report
            widths = _widths(self._columns, rows[:1000])
            self._missing.start(widths)
            self._all.start(widths)
        self._missing.add(missing)
        self._all.add(rows)

    def finish(self, summary: Summary) -> None:
        self.add([], [])  # a report of no rows still gets its sheets and headers
        sheet = self._summary
        for letter, width in zip("ABCDEFGH", (30, 44, 14, 14, 14, 14, 14, 14), strict=True):
            sheet.column_dimensions[letter].width = width
        notes = [
            f"{split.rows:,} rows are split across the sheets {', '.join(split.names)}: Excel holds at most "
            f"{self.max_rows:,} rows per sheet, header included."
            for split in (self._missing, self._all)
            if len(split.names) > 1
        ]
        for row, bold in summary_rows(summary, notes):
            sheet.append([_cell(sheet, v, bold=bold) for v in row])
        self._missing.close()
        self._all.close()
        self._book.save(partial_path(self.paths["results_xlsx"]))
        _commit(self.paths)

    def abort(self) -> None:
        # Saving is openpyxl's one public way to close its sheets' temporary files (in the system's temp
        # directory); the workbook saved is then deleted.
        with contextlib.suppress(Exception):
            self._book.save(partial_path(self.paths["results_xlsx"]))
        _discard(self.paths)


def summary_rows(summary: Summary, notes: Sequence[str]) -> list[tuple[list[Any], bool]]:
    """The Summary sheet as (cells, bold) rows: run metadata, notes, counts, changes, organisations."""
    rows: list[tuple[list[Any], bool]] = [(["Reconciliation report"], True)]
    rows += [
        ([title, value], False)
        for title, value in (
            *summary.run_fields(),
            ("Duration (seconds)", summary.duration_seconds),
            ("Rows per second", summary.rows_per_second),
            ("Records", summary.records),
            ("Duplicates", summary.duplicates),
        )
    ]
    rows += [(["Note", note], False) for note in notes]
    rows += [([], False), (["Manifest", "SHA-256", "Records", "Bytes"], True)]
    rows += [([m.path, m.sha256, m.records, m.bytes], False) for m in summary.manifests]
    rows += [([], False), (["Status", "Rows"], True)]
    rows += [([status, count], False) for status, count in summary.counts.as_dict().items()]
    delta = summary.delta
    if delta:
        rows += [([], False), (["Change since the previous run", "Rows"], True)]
        rows += [([name, count], False) for name, count in delta.counts.items()]
        rows += [(["Compared to", delta.compared_to], False), (["Previous run id", delta.run_id], False)]
    if summary.by_organisation:
        statuses = [s.value for s in Status]
        rows += [([], False), (["Company", "Organisation", *statuses], True)]
        rows += [([o.company, o.organisation, *o.counts.as_dict().values()], False) for o in summary.by_organisation]
    return rows


class _SplitSheet:
    """A write-only sheet that continues in "Name (2)", "Name (3)", ... when it reaches ``max_rows``."""

    def __init__(self, book: Any, name: str, columns: list[str], max_rows: int) -> None:
        self.names: list[str] = []
        self.rows = 0
        self._book, self._name, self._columns, self._max_rows = book, name, columns, max_rows
        self._sheet: Any = None
        self._filled = 0
        self._widths: list[float] = []

    def start(self, widths: list[float]) -> None:
        """Create the first sheet; column widths must be set before its first row is written."""
        self._widths = widths
        self._new_sheet()

    def add(self, rows: Sequence[list[Any]]) -> None:
        for row in rows:
            if self._filled >= self._max_rows - 1:
                self._new_sheet()
            self._sheet.append([_value(self._sheet, v) for v in row])
            self._filled += 1
        self.rows += len(rows)

    def close(self) -> None:
        if self._sheet is not None:
            self._set_filter()

    def _new_sheet(self) -> None:
        from openpyxl.utils import get_column_letter

        if self._sheet is not None:
            self._set_filter()
        name = self._name if not self.names else f"{self._name} ({len(self.names) + 1})"
        index = self._book.sheetnames.index(self.names[-1]) + 1 if self.names else None
        sheet = self._book.create_sheet(name, index)
        for position, width in enumerate(self._widths, start=1):
            sheet.column_dimensions[get_column_letter(position)].width = width
        sheet.freeze_panes = "A2"
        sheet.append([_cell(sheet, c, bold=True) for c in self._columns])
        self.names.append(name)
        self._sheet, self._filled = sheet, 0

    def _set_filter(self) -> None:
        from openpyxl.utils import get_column_letter

        self._sheet.auto_filter.ref = f"A1:{get_column_letter(len(self._columns))}{self._filled + 1}"


def _widths(columns: Sequence[str], sample: Sequence[list[Any]]) -> list[float]:
    """Column widths in characters from the header and a sample of rows: wide enough to read, never huge."""
    widths = []
    for position, name in enumerate(columns):
        longest = max([len(str(row[position])) for row in sample] + [len(name)])
        widths.append(float(min(60, max(8, longest + 2))))
    return widths


def _value(sheet: Any, value: Any) -> Any:
    """A value safe for a cell: text is never taken as a formula, and characters XML forbids are replaced."""
    if not isinstance(value, str):
        return value
    if not value:
        return None  # an empty cell: openpyxl skips it, ~10% faster on sparse columns, and reads back the same
    if _ILLEGAL_XML.search(value):
        value = _ILLEGAL_XML.sub("\ufffd", value)
    if len(value) > EXCEL_MAX_CHARS:
        value = value[: EXCEL_MAX_CHARS - 1] + "…"
    if value[0] == "=":
        return _cell(sheet, value)
    return value


def _cell(sheet: Any, value: Any, *, bold: bool = False) -> Any:
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    cell = WriteOnlyCell(sheet, value)
    if isinstance(value, str) and value.startswith("="):
        cell.data_type = "s"  # a filename like "=cmd|..." must stay text, never a formula Excel runs
    if bold:
        cell.font = Font(bold=True)
    return cell
