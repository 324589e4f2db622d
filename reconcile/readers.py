"""Tabular readers: turn a manifest file into a header and a stream of (line, values).

A reader knows a file format and nothing about recordings; :mod:`reconcile.manifest` turns its rows into
records.  Every reader streams: memory does not grow with the file.  Formats come from the file name
(``.csv``, ``.tsv``, ``.xlsx``, ``.parquet``, ``.jsonl``/``.ndjson``, each text format optionally ``.gz``),
else from the file's first bytes, else CSV; ``ReadOptions.input_format`` overrides both.  The text formats
live here; XLSX and Parquet in :mod:`reconcile.binary_formats`.

"line" means the physical line a row starts on for text formats, the sheet row for XLSX and the 1-based
row for Parquet; :func:`manifest_error` words messages accordingly ("line 7", "sheet 'Data', row 7", "row 7").
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import zlib
from collections.abc import Callable, Generator, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any, cast

from .errors import ManifestError, UsageError

# csv's default of 128 KiB per field is too small for some exports' free-text columns, and
# an unbounded one would let a broken quote swallow a whole file into memory.
csv.field_size_limit(16 * 1024 * 1024)

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
DELIMITERS = ",;\t|"
SNIFF_CHARS = 16 * 1024
_GZIP, _ZIP, _PARQUET = b"\x1f\x8b", b"PK\x03\x04", b"PAR1"


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


def table_format(path: Path, options: ReadOptions) -> tuple[str, bool]:
    """``(format, gzipped)`` for ``path``: from ``options.input_format``, else the name, else the first bytes."""
    magic = _peek(path)
    named = [s.lower() for s in path.suffixes[-2:]]
    gzipped = magic.startswith(_GZIP)
    if gzipped and named[-1:] == [".gz"]:
        named = named[:-1]
    fmt = options.input_format or (SUFFIXES.get(named[-1]) if named else None)
    if fmt is None:
        fmt = "xlsx" if magic.startswith(_ZIP) else "parquet" if magic.startswith(_PARQUET) else "csv"
    if fmt not in FORMATS:
        raise UsageError(f"unknown input format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return fmt, gzipped and fmt in TEXT_FORMATS


def open_table(path: Path, options: ReadOptions, *, columns: tuple[str, ...] | None = None) -> Table:
    """Open ``path`` and read its header.

    ``columns`` is the header an earlier open of the same file found; JSON Lines then skips the pass over
    the whole file that finds it.  Close the table, or exhaust its rows, to release the file.
    """
    fmt, gzipped = table_format(path, options)
    if fmt in ("xlsx", "parquet"):
        # Imported here: openpyxl and pyarrow cost ~60 MB and a second at start-up, for nothing on CSV.
        from .binary_formats import parquet_table, xlsx_table

        return xlsx_table(path, options) if fmt == "xlsx" else parquet_table(path)
    try:
        codecs.lookup(options.encoding)
    except LookupError:
        raise UsageError(
            f"unknown encoding {options.encoding!r}. HINT: e.g. --encoding utf-8, cp1252, latin-1 or utf-16"
        ) from None
    opener = _opener(path, gzipped)
    _check_text(path, opener, fmt, options)
    if fmt == "jsonl":
        return _jsonl_table(path, opener, options, columns)
    return _csv_table(path, opener, fmt, options)


def _peek(path: Path) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(4)
    except OSError as exc:
        raise ManifestError(path, f"cannot open: {exc.strerror or exc}") from None


def _opener(path: Path, gzipped: bool) -> Callable[[], IO[bytes]]:
    if gzipped:
        return lambda: cast(IO[bytes], gzip.open(path, "rb"))
    return lambda: open(path, "rb")


def _check_text(path: Path, opener: Callable[[], IO[bytes]], fmt: str, options: ReadOptions) -> None:
    """Refuse, with the fix, the binary files and UTF-16 text that would otherwise read as garbage."""
    with _errors_named(path, lambda: 1, options, opener), opener() as handle:
        start = handle.read(4)
    hint = {_ZIP: "an XLSX workbook (zip)", _PARQUET: "a Parquet file"}
    for magic, what in hint.items():
        if start.startswith(magic):
            raise ManifestError(
                path,
                f"looks like {what}, not {fmt.upper()} text. HINT: give it its proper extension or pass --input-format",
                line=1,
            )
    if start[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) and "16" not in options.encoding:
        raise ManifestError(
            path,
            f"starts with a UTF-16 byte-order mark but is read as {options.encoding}. HINT: pass --encoding utf-16",
            line=1,
        )


# --- CSV and TSV ------------------------------------------------------------------------------------------


def _csv_table(path: Path, opener: Callable[[], IO[bytes]], fmt: str, options: ReadOptions) -> Table:
    delimiter = _delimiter(options) or ("\t" if fmt == "tsv" else _sniff(path, opener, options))
    text = io.TextIOWrapper(opener(), encoding=options.encoding, newline="", errors="strict")
    reader = csv.reader(text, delimiter=delimiter, strict=False)
    with _errors_named(path, lambda: reader.line_num + 1, options, opener, cleanup=text.close):
        for header in reader:
            if header and any(cell.strip() for cell in header):
                break
        else:
            text.close()
            raise ManifestError(
                path,
                "the file is empty: expected a header row naming company, organisation, "
                "folder and filename (or the columns given with --map)",
                line=1,
            )
    header[0] = header[0].removeprefix("\ufeff")  # a BOM read with --encoding utf-8
    return Table(
        path, tuple(header), _csv_rows(path, reader, options, text, opener), text.close, header_line=reader.line_num
    )


def _csv_rows(
    path: Path, reader: Any, options: ReadOptions, text: io.TextIOWrapper, opener: Callable[[], IO[bytes]]
) -> Iterator[tuple[int, list[str]]]:
    line_num = reader.line_num
    try:
        with _errors_named(path, lambda: line_num + 1, options, opener):
            for values in reader:
                start = line_num + 1
                line_num = reader.line_num
                if not values:  # a blank line is not a record
                    continue
                yield start, values
    finally:
        text.close()


def _delimiter(options: ReadOptions) -> str | None:
    given = options.delimiter
    if given is None or given == "":
        return None
    given = {"\\t": "\t", "tab": "\t", "TAB": "\t"}.get(given, given)
    if len(given) != 1:
        raise UsageError(f"--delimiter must be one character, not {given!r}. HINT: --delimiter ';' or --delimiter tab")
    return given


def _sniff(path: Path, opener: Callable[[], IO[bytes]], options: ReadOptions) -> str:
    """The delimiter of the first few KB, among ``,;<tab>|``; one the header does not contain is not believed."""
    with (
        _errors_named(path, lambda: 1, options, opener),
        io.TextIOWrapper(opener(), encoding=options.encoding, newline="", errors="replace") as text,
    ):
        sample = text.read(SNIFF_CHARS)
    if len(sample) == SNIFF_CHARS and "\n" in sample:
        sample = sample[: sample.rindex("\n") + 1]  # a cut-off last row would skew the counts
    header = next((line for line in sample.splitlines() if line.strip()), "")
    try:
        found: str | None = csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        found = None
    if found and found in header:
        return found
    counts = {d: header.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=counts.__getitem__)
    return best if counts[best] else ","


class _errors_named:
    """Turn decoding, CSV, gzip and I/O errors into a ManifestError naming the file and line."""

    def __init__(
        self,
        path: Path,
        line: Callable[[], int],
        options: ReadOptions,
        opener: Callable[[], IO[bytes]],
        cleanup: Callable[[], None] | None = None,
    ) -> None:
        self.path, self.line, self.options, self.opener, self.cleanup = path, line, options, opener, cleanup

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if exc is None or not isinstance(exc, UnicodeDecodeError | csv.Error | EOFError | zlib.error | OSError):
            return
        if self.cleanup is not None:
            self.cleanup()
        line = self.line()
        if isinstance(exc, UnicodeDecodeError):
            raise decode_error(self.path, self.opener, self.options.encoding, line) from None
        if isinstance(exc, csv.Error):
            raise ManifestError(self.path, f"not readable as CSV: {exc}", line=line) from None
        if isinstance(exc, EOFError):
            raise ManifestError(
                self.path,
                f"the gzip stream is truncated: it ends part-way, at line {line}. "
                "HINT: copy or download the file again",
                line=line,
            ) from None
        if isinstance(exc, gzip.BadGzipFile | zlib.error):
            raise ManifestError(
                self.path, f"the gzip data is damaged ({exc}). HINT: copy or download the file again", line=line
            ) from None
        raise ManifestError(self.path, f"read failed: {exc}", line=line) from None


def decode_error(path: Path, opener: Callable[[], IO[bytes]], encoding: str, line: int) -> ManifestError:
    """Find the first undecodable byte again, line by line, so the message can say exactly where it is.

    The text layer decodes in chunks ahead of the CSV reader, so the line it failed on is only roughly known.
    """
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    number = 0
    try:
        with opener() as handle:
            for number, raw in enumerate(handle, start=1):
                try:
                    decoder.decode(raw)
                except UnicodeDecodeError as exc:
                    bad = exc.object[exc.start : exc.end]
                    return ManifestError(
                        path,
                        f"byte(s) {bad.hex(' ')} at column {exc.start + 1} are not valid {encoding} "
                        f"({exc.reason}). HINT: pass the file's encoding, e.g. --encoding cp1252 "
                        "or --encoding latin-1",
                        line=number,
                    )
    except (OSError, EOFError, zlib.error):
        pass
    return ManifestError(
        path,
        f"bytes that are not valid {encoding}. HINT: pass the file's encoding, e.g. "
        "--encoding cp1252 or --encoding latin-1",
        line=number or line,
    )


# --- JSON Lines ---------------------------------------------------------------------------------------------


def _jsonl_table(
    path: Path, opener: Callable[[], IO[bytes]], options: ReadOptions, columns: tuple[str, ...] | None
) -> Table:
    """JSON Lines: one object per line; the columns are every key, in the order first seen in the file.

    Objects may omit keys (exports drop null fields), so no prefix of the file can be trusted to name them
    all: a first pass reads the keys of every line, streaming.  Callers that know the header pass it back.
    """
    if columns is None:
        keys: dict[str, None] = {}
        known = keys.keys()
        for _line, obj in _jsonl_objects(path, opener, options):
            if not known >= obj.keys():
                keys.update(dict.fromkeys(obj))
        if not keys:
            raise ManifestError(path, "the file is empty: expected one JSON object per line", line=1)
        columns = tuple(keys)
    rows = _jsonl_rows(path, opener, options, columns)
    return Table(path, columns, rows, rows.close, header_line=0)  # the keys are the header: no line


def _jsonl_rows(
    path: Path, opener: Callable[[], IO[bytes]], options: ReadOptions, columns: tuple[str, ...]
) -> Generator[tuple[int, list[str]]]:
    known = set(columns)
    for line, obj in _jsonl_objects(path, opener, options):
        if not known.issuperset(obj):
            unseen = ", ".join(repr(k) for k in obj if k not in known)
            raise ManifestError(
                path,
                f"key(s) {unseen} not in the columns read before ({', '.join(columns)}): "
                "the file changed while it was read. HINT: run again",
                line=line,
            )
        yield line, [v if v.__class__ is str else json_text(v) for v in map(obj.get, columns)]


def _jsonl_objects(path: Path, opener: Callable[[], IO[bytes]], options: ReadOptions) -> Iterator[tuple[int, Any]]:
    import orjson

    encoding = options.encoding
    utf8 = codecs.lookup(encoding).name in ("utf-8", "utf-8-sig")  # orjson reads UTF-8 bytes itself
    loads, error = orjson.loads, orjson.JSONDecodeError
    number = 0
    with _errors_named(path, lambda: number + 1, options, opener), opener() as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1 and utf8:
                raw = raw.removeprefix(codecs.BOM_UTF8)
            try:
                obj = loads(raw if utf8 else raw.decode(encoding))
            except UnicodeDecodeError:
                raise decode_error(path, opener, encoding, number) from None
            except error as exc:
                if not raw.strip():
                    continue  # a blank line is not a record
                if utf8:
                    try:
                        raw.decode("utf-8")
                    except UnicodeDecodeError:
                        raise decode_error(path, opener, encoding, number) from None
                raise ManifestError(
                    path, f"not valid JSON ({exc}). HINT: each line must hold one JSON object", line=number
                ) from None
            if obj.__class__ is not dict:
                raise ManifestError(
                    path,
                    f"a JSON {type(obj).__name__} where an object was expected. "
                    'HINT: each line must hold one object, e.g. {"company": "acme", ...}',
                    line=number,
                )
            yield number, obj


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
