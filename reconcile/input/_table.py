"""What every reader shares: the formats, how to read them (:class:`ReadOptions`), an open :class:`Table`, and
errors that name a row the way its format counts it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from reconcile.errors import ManifestError

FORMATS = ("csv", "tsv", "xlsx", "parquet", "jsonl")
SUFFIXES = {
    ".csv": "csv",
    ".txt": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".xlsx": "xlsx",
    ".xlsm": "xlsx",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
TEXT_FORMATS = ("csv", "tsv", "jsonl")


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


# The command-line flag of each ReadOptions field, to name what differs when a resume reads manifests otherwise.
OPTION_FLAGS = {
    "encoding": "--encoding",
    "delimiter": "--delimiter",
    "input_format": "--input-format",
    "sheet": "--sheet",
    "columns": "--map",
    "constants": "--company/--organisation/--folder",
    "filename_template": "--filename-template",
}


def options_record(options: ReadOptions) -> str:
    """``options`` as canonical JSON: the journal keeps it, since a row's result belongs to the values it was
    read as, and a resume that maps, templates or decodes the manifests otherwise would mix two readings."""
    return json.dumps(asdict(options), sort_keys=True)


def changed_options(recorded: str, current: str) -> list[str]:
    """The flags whose values differ between two :func:`options_record` texts."""
    before, after = json.loads(recorded), json.loads(current)
    return [flag for field, flag in OPTION_FLAGS.items() if before.get(field) != after.get(field)]


@dataclass(slots=True)
class Table:
    """An open manifest: its header and an iterator of ``(line, values)`` for each data row."""

    path: Path
    columns: tuple[str, ...]
    rows: Iterator[tuple[int, list[str]]]
    close: Callable[[], None]
    header_line: int = 1
    sheet: str | None = None  # XLSX: the sheet read
    unit: str = "line"  # how a row's position is named in messages: "line" (text) or "row" (XLSX, Parquet)


def manifest_error(
    path: Path, message: str, line: int | None, *, unit: str = "line", sheet: str | None = None
) -> ManifestError:
    """A ManifestError that names the position the way the format counts it (none for a header with no line)."""
    if line is None or line < 1:
        return ManifestError(path, message)
    if unit == "line":
        return ManifestError(path, message, line=line)
    where = (f"sheet {sheet!r}, " if sheet is not None else "") + f"row {line}"
    error = ManifestError(path, f"{where}: {message}")
    error.line = line
    return error


def json_text(value: object) -> str:
    """A JSON value as text: strings verbatim, null empty, literals as JSON writes them."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    import orjson

    return orjson.dumps(value).decode()
