"""Tabular readers: turn a manifest file into a header and a stream of (line, values).

A reader knows a file format and nothing about recordings; :mod:`reconcile.manifest` turns its rows into
records.  Every reader streams: memory does not grow with the file.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import ManifestError

# csv's default of 128 KiB per field is too small for some exports' free-text columns, and
# an unbounded one would let a broken quote swallow a whole file into memory.
csv.field_size_limit(16 * 1024 * 1024)


@dataclass(frozen=True, slots=True)
class ReadOptions:
    """How to read manifest files; the defaults suit UTF-8 CSV exports."""

    encoding: str = "utf-8-sig"
    delimiter: str | None = None  # None: detect (CSV/TSV)
    input_format: str | None = None  # csv, tsv, xlsx, parquet, jsonl; None: from the file name
    sheet: str | None = None  # XLSX sheet name; None: the first sheet
    columns: tuple[tuple[str, str], ...] = ()  # --map FIELD=COLUMN: (field, column in the export)
    constants: tuple[tuple[str, str], ...] = ()  # --company acme: (field, value) for every row
    filename_template: str | None = None  # --filename-template "{RecordingSid}.mp3"


@dataclass(slots=True)
class Table:
    """An open manifest: its header and an iterator of ``(line, values)`` for each data row."""

    path: Path
    columns: tuple[str, ...]
    rows: Iterator[tuple[int, list[str]]]
    close: Callable[[], None]


def open_table(path: Path, options: ReadOptions) -> Table:
    """Open ``path`` and read its header."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 - the generator below owns and closes it
    except OSError as exc:
        raise ManifestError(path, f"cannot open: {exc.strerror}") from None
    text = io.TextIOWrapper(handle, encoding=options.encoding, newline="", errors="strict")
    return _csv_table(path, text, options)


def _csv_table(path: Path, text: io.TextIOWrapper, options: ReadOptions) -> Table:
    delimiter = options.delimiter or ","
    reader = csv.reader(text, delimiter=delimiter, strict=False)
    header = _first_row(path, reader, options, text)
    return Table(path, tuple(header), _csv_rows(path, reader, options, text), text.close)


def _first_row(path: Path, reader: Iterator[list[str]], options: ReadOptions, text: io.TextIOWrapper) -> list[str]:
    with _errors_named(path, lambda: 1, options):
        for row in reader:
            if row and any(cell.strip() for cell in row):
                return row
    text.close()
    raise ManifestError(path, "the file is empty: expected a header row naming company, organisation, folder, filename")


def _csv_rows(
    path: Path, reader: Iterator[list[str]], options: ReadOptions, text: io.TextIOWrapper
) -> Iterator[tuple[int, list[str]]]:
    line_num = reader.line_num  # type: ignore[attr-defined]
    try:
        with _errors_named(path, lambda: line_num + 1, options):
            for values in reader:
                start = line_num + 1
                line_num = reader.line_num  # type: ignore[attr-defined]
                if not values:  # a blank line is not a record
                    continue
                yield start, values
    finally:
        text.close()


class _errors_named:
    """Turn decoding and CSV errors into a ManifestError naming the file and line."""

    def __init__(self, path: Path, line: object, options: ReadOptions) -> None:
        self.path, self.line, self.options = path, line, options

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        line = self.line() if callable(self.line) else None
        if isinstance(exc, UnicodeDecodeError):
            raise ManifestError(
                self.path,
                f"bytes that are not valid {self.options.encoding} ({exc.reason} at byte {exc.start} of a read chunk). "
                "HINT: pass the file's encoding, e.g. --encoding cp1252 or --encoding latin-1",
                line=line,
            ) from None
        if isinstance(exc, csv.Error):
            raise ManifestError(self.path, f"not readable as CSV: {exc}", line=line) from None
        if isinstance(exc, OSError):
            raise ManifestError(self.path, f"read failed: {exc}", line=line) from None
