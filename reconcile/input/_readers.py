"""Tabular readers: turn a manifest file into a header and a stream of (line, values).

A reader knows a file format and nothing about recordings; :mod:`reconcile.input._manifest` turns its rows into
records.  Every reader streams: memory does not grow with the file.  Formats come from the file name
(``.csv``, ``.tsv``, ``.xlsx``, ``.parquet``, ``.jsonl``/``.ndjson``, each text format optionally ``.gz``),
else from the file's first bytes, else CSV; ``ReadOptions.input_format`` overrides both.  The text formats
live here; XLSX and Parquet in :mod:`reconcile.input._binary`.

"line" means the physical line a row starts on for text formats, the sheet row for XLSX and the 1-based
row for Parquet; :func:`manifest_error` words messages accordingly ("line 7", "sheet 'Data', row 7", "row 7").
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import itertools
import re
import zlib
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import IO, Any, cast

from reconcile.errors import ManifestError, UsageError

from ._binary import parquet_table, xlsx_table
from ._table import FORMATS, SUFFIXES, TEXT_FORMATS, ReadOptions, Table, json_text

# csv's default of 128 KiB per field is too small for some exports' free-text columns, and
# an unbounded one would let a broken quote swallow a whole file into memory.
csv.field_size_limit(16 * 1024 * 1024)

DELIMITERS = ",;\t|"
SNIFF_CHARS = 16 * 1024
_GZIP, _ZIP, _PARQUET = b"\x1f\x8b", b"PK\x03\x04", b"PAR1"


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
    rows = _CsvRows(path, opener, options, delimiter, len(header), text, reader.line_num)
    return Table(path, tuple(header), iter(rows), rows.close, header_line=reader.line_num)


class FlawedRow(list[str]):
    """A row a stray quote broke: its values as far as they can be told, and ``problem``, why it is not sent."""

    __slots__ = ("problem",)

    def __init__(self, values: list[str], problem: str) -> None:
        super().__init__(values)
        self.problem = problem


_LINE_BREAK = re.compile("\r\n|\r|\n")


class _CsvRows:
    """``(line, values)`` for each data row of a CSV file, with every physical line accounted for.

    Rows are read with ``csv``'s strict parser, which reads RFC 4180 exactly (quoted values may hold
    delimiters, doubled quotes and line breaks) and stops only at a quote that does not close properly.  That
    is where a lenient parser goes wrong: a stray quote (an inch mark, ``"12 inch``) opens a value that runs on
    over the rows after it, merged silently into one record.  So at such a stop the lines of the record are
    read again (from a second handle that only ever walks forward) and judged:

    - a quote that closes on its own line, badly (``"Bob" Smith``), keeps the lenient reading, as before;
    - a quote whose value runs past the end of its line without closing properly makes the row a
      :class:`FlawedRow` (invalid, with the line), and reading goes on at the line after the quote's, so the
      rows it ran over are read as rows.

    A stray quote can also be closed "properly" by a later one (an inch mark at the end of a value, ``6"``),
    which no parser can tell from a quoted value; a record that spans lines is therefore also looked at (only
    then: the hot path stays ``csv``'s), and a value holding a line that reads as a whole row of the header's
    width is taken for rows a quote ran over, with the same outcome.
    """

    def __init__(
        self,
        path: Path,
        opener: Callable[[], IO[bytes]],
        options: ReadOptions,
        delimiter: str,
        width: int,
        text: io.TextIOWrapper,
        header_line: int,
    ) -> None:
        self.path, self.opener, self.options, self.delimiter, self.width = path, opener, options, delimiter, width
        self.text, self.header_line = text, header_line
        self._lag: io.TextIOWrapper | None = None  # the second handle, and the lines it has read
        self._lag_read = 0

    def close(self) -> None:
        self.text.close()
        if self._lag is not None:
            self._lag.close()

    def __iter__(self) -> Iterator[tuple[int, list[str]]]:
        offset = line_num = self.header_line  # offset: the lines read before the current reader's first
        reader = csv.reader(self.text, delimiter=self.delimiter, strict=True)
        try:
            with _errors_named(self.path, lambda: line_num + 1, self.options, self.opener):
                while True:
                    broken: tuple[int, int, int | None] | None = None  # (first line, last line, quote's line)
                    try:
                        for values in reader:
                            start = line_num + 1
                            line_num = reader.line_num + offset
                            if line_num != start and (opened := self._swallowed(values, start)) is not None:
                                broken = (start, line_num, opened)
                                break
                            if not values:  # a blank line is not a record
                                continue
                            yield start, values
                        if broken is None:
                            return
                    except csv.Error:
                        start, line_num = line_num + 1, reader.line_num + offset
                        broken = (start, line_num, None)
                    values, resume = self._judge(*broken)
                    yield broken[0], values
                    if resume is not None:  # read again from the line after the quote's
                        lines, handle = resume
                        self.text.close()
                        self.text, self._lag = handle, None
                        reader = csv.reader(itertools.chain(lines, handle), delimiter=self.delimiter, strict=True)
                        offset = line_num = line_num - len(lines)
        finally:
            self.close()

    def _swallowed(self, values: list[str], start: int) -> int | None:
        """The line a quote opened on, when a value holds a line that reads as a whole row of the header's
        width: evidently rows a stray quote ran over (its closing quote a later inch mark, ``6"``), not text."""
        if self.width < 2:
            return None  # a one-column file cannot tell them apart
        line = start
        for value in values:
            pieces = _LINE_BREAK.split(value)
            for piece in pieces[1:]:
                if len(next(csv.reader([piece], delimiter=self.delimiter), ())) == self.width:
                    return line
            line += len(pieces) - 1
        return None

    def _judge(
        self, start: int, failed: int, opened: int | None
    ) -> tuple[list[str], tuple[list[str], io.TextIOWrapper] | None]:
        """The row of lines ``start``..``failed`` (where the strict parser stopped, or a record that swallowed
        rows ended), and, when a quote ran over lines, the lines to read again after it with their handle."""
        raw = self._lines(start, failed)
        if opened is None:
            values, open_end = self._lenient(raw)
            line = start
            for value in values:
                breaks = len(_LINE_BREAK.findall(value))
                if breaks and line + breaks >= failed:
                    opened = line  # this value ran from its quote's line to where the parser stopped
                    break
                line += breaks
            if not values:
                opened = start
            elif opened is None:
                if not open_end:
                    return values, None  # a quote that closed badly on its own line: read as before
                return FlawedRow(values, _stray_quote_problem(failed, failed, values[-1])), None
        values, _ = self._lenient(raw[: opened - start + 1])
        problem = _stray_quote_problem(opened, failed, values[-1] if values else "")
        assert self._lag is not None  # _lines opened it
        return FlawedRow(values, problem), (raw[opened - start + 1 :], self._lag)

    def _lenient(self, lines: list[str]) -> tuple[list[str], bool]:
        """The first record of ``lines`` as a lenient parser reads it, and whether a quote is still open at
        their end (its value then holds the last line's break, which is dropped)."""
        last = lines[-1]
        body = last.rstrip("\r\n")
        ending = last[len(body) :] or "\n"
        try:
            values = next(csv.reader([*lines[:-1], body + ending], delimiter=self.delimiter, strict=False), [])
        except csv.Error:  # more than the field limit: nothing can be told
            return [], False
        open_end = bool(values) and values[-1].endswith(ending)
        if open_end:
            values[-1] = values[-1].removesuffix(ending)
        return values, open_end

    def _lines(self, first: int, last: int) -> list[str]:
        """Physical lines ``first``..``last`` of the file, read by the second handle."""
        if self._lag is None or self._lag_read >= first:
            if self._lag is not None:
                self._lag.close()
            self._lag = io.TextIOWrapper(self.opener(), encoding=self.options.encoding, newline="", errors="strict")
            self._lag_read = 0
        for _ in itertools.islice(self._lag, first - 1 - self._lag_read):
            pass
        lines = list(itertools.islice(self._lag, last - first + 1))
        self._lag_read = first - 1 + len(lines)
        return lines or [""]


def _stray_quote_problem(quote_line: int, end: int, value: str) -> str:
    example = '"' + ('"' + value).replace('"', '""') + '"' if 0 < len(value) <= 40 else '"""12 inch"'
    if end == quote_line:
        what = f"a quote on line {quote_line} opens a value that never closes"
    else:
        swallowed = (
            f"line {end}, read as a row of its own"
            if end == quote_line + 1
            else f"lines {quote_line + 1}-{end}, read as rows of their own"
        )
        what = f"a quote on line {quote_line} opens a value that runs on over {swallowed}"
    return (
        f"{what}; this row is not sent. HINT: a value that starts with a quote is written quoted, its quote "
        f"doubled ({example}); or remove the stray quote"
    )


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
