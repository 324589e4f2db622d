"""Readers: every format gives the same rows; bad input is a ManifestError naming the file and the line."""

from __future__ import annotations

import codecs
import csv
import datetime
import gzip
import io
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import openpyxl
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from reconcile.errors import ManifestError, UsageError
from reconcile.input._manifest import Manifest
from reconcile.input._readers import open_table, table_format
from reconcile.input._table import ReadOptions

HEADER = ["company", "organisation", "folder", "filename", "Duration", "DateCreated", "notes"]
WHEN = datetime.datetime(2026, 11, 25, 8, 28, 35)
# (company, organisation, folder, filename, duration, notes): unicode, a delimiter and quotes inside values,
# an empty folder (invalid), and a row repeated (a duplicate is still a record).
ROWS = [
    ("acme", "acme-ca", "2026/11/25/inbound", "rec-0001.mp3", 994, "plain"),
    ("acme", "acme-ca", "2026/11/25/outbound", "rückruf, kunde; 0002.wav", 12, 'said "hi"; then | left'),
    ("globex", "globex-fr", "", "rec-0003.mp3", 0, ""),
    ("王伟 corp", "org\tx", "a/b", "  spaced .mp3 ", 1561, "tab\tinside"),
    ("acme", "acme-ca", "2026/11/25/inbound", "rec-0001.mp3", 994, "again"),
]
EXPECTED = [(c, o, f, n, None if f.strip() else "empty folder") for c, o, f, n, _d, _x in ROWS]
EXPECTED_ROWS = [[c, o, f, n, str(d), "2026-11-25T08:28:35", x] for c, o, f, n, d, x in ROWS]


def _text_rows() -> list[list[str]]:
    return [[c, o, f, n, str(d), WHEN.isoformat(), x] for c, o, f, n, d, x in ROWS]


def _delimited(delimiter: str) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(HEADER)
    writer.writerows(_text_rows())
    return out.getvalue().encode("utf-8")


def write_csv(path: Path) -> Path:
    path = path / "export.csv"
    path.write_bytes(codecs.BOM_UTF8 + _delimited(","))
    return path


def write_semicolon(path: Path) -> Path:
    path = path / "export-eu.csv"
    path.write_bytes(_delimited(";"))
    return path


def write_tsv(path: Path) -> Path:
    path = path / "export.tsv"
    path.write_bytes(_delimited("\t"))
    return path


def write_csv_gz(path: Path) -> Path:
    path = path / "export.csv.gz"
    path.write_bytes(gzip.compress(_delimited(",")))
    return path


def write_tsv_gz(path: Path) -> Path:
    path = path / "export.tsv.gz"
    path.write_bytes(gzip.compress(_delimited("\t")))
    return path


def write_xlsx(path: Path) -> Path:
    path = path / "export.xlsx"
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(HEADER)
    for c, o, f, n, d, x in ROWS:
        sheet.append([c, o, f or None, n, d, WHEN, x or None])
    book.save(path)
    return path


def write_parquet(path: Path) -> Path:
    path = path / "export.parquet"
    columns = list(zip(*ROWS, strict=True))
    table = pa.table(
        {
            "company": pa.array(columns[0]),
            "organisation": pa.array(columns[1]),
            "folder": pa.array([f or None for f in columns[2]]),
            "filename": pa.array(columns[3]),
            "Duration": pa.array(columns[4], pa.int64()),
            "DateCreated": pa.array([WHEN] * len(ROWS), pa.timestamp("us")),
            "notes": pa.array([x or None for x in columns[5]]),
        }
    )
    pq.write_table(table, path, row_group_size=2)  # several row groups: batches cross them
    return path


def write_jsonl(path: Path) -> Path:
    path = path / "export.jsonl"
    lines = []
    for c, o, f, n, d, x in ROWS:
        record: dict[str, object] = {
            "company": c,
            "organisation": o,
            "folder": f,
            "filename": n,
            "Duration": d,
            "DateCreated": WHEN.isoformat(),
        }
        if x:  # exports drop empty fields: the key is missing, the value reads as ""
            record["notes"] = x
        lines.append(orjson.dumps(record))
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


WRITERS: dict[str, Callable[[Path], Path]] = {
    "csv": write_csv,
    "csv;": write_semicolon,
    "tsv": write_tsv,
    "csv.gz": write_csv_gz,
    "tsv.gz": write_tsv_gz,
    "xlsx": write_xlsx,
    "parquet": write_parquet,
    "jsonl": write_jsonl,
}


@pytest.mark.parametrize("kind", list(WRITERS))
def test_every_format_gives_the_same_records_and_rows(kind: str, tmp_path: Path) -> None:
    """The same recordings as CSV, TSV, ';'-CSV, gzip, XLSX, Parquet and JSON Lines read identically."""
    manifest = Manifest(WRITERS[kind](tmp_path))
    records = [(r.company, r.organisation, r.folder, r.filename, r.problem) for r in manifest.records()]
    assert records == EXPECTED
    assert manifest.columns == tuple(HEADER)
    assert [values for _row, _line, values in manifest.rows()] == EXPECTED_ROWS


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.csv", ("csv", False)),
        ("a.TSV", ("tsv", False)),
        ("a.xlsx", ("xlsx", False)),
        ("a.parquet", ("parquet", False)),
        ("a.ndjson", ("jsonl", False)),
        ("a.jsonl.gz", ("jsonl", True)),
        ("a.csv.gz", ("csv", True)),
    ],
)
def test_format_comes_from_the_name(name: str, expected: tuple[str, bool], tmp_path: Path) -> None:
    """The extension picks the reader; .gz means gzip of a text format."""
    path = tmp_path / name
    path.write_bytes(gzip.compress(b"x") if expected[1] else b"x")
    assert table_format(path, ReadOptions()) == expected


def test_unknown_extension_is_recognised_by_its_first_bytes(tmp_path: Path) -> None:
    """A Parquet, workbook or gzip file with an unhelpful name is still read right."""
    parquet = write_parquet(tmp_path).rename(tmp_path / "export.dat")
    workbook = write_xlsx(tmp_path).rename(tmp_path / "export.bin")
    zipped = write_csv_gz(tmp_path).rename(tmp_path / "export.gzip")
    assert table_format(parquet, ReadOptions()) == ("parquet", False)
    assert table_format(workbook, ReadOptions()) == ("xlsx", False)
    assert [r.filename for r in Manifest(zipped).records()] == [row[3] for row in ROWS]


def test_input_format_overrides_the_name(tmp_path: Path) -> None:
    """--input-format tsv reads a tab-separated file whatever it is called."""
    path = tmp_path / "export.xlsx"
    path.write_bytes(_delimited("\t"))
    records = list(Manifest(path, options=ReadOptions(input_format="tsv")).records())
    assert [r.filename for r in records] == [row[3] for row in ROWS]


def test_a_plain_file_named_gz_is_read_as_text(tmp_path: Path) -> None:
    """A .csv.gz that is not compressed is read as the CSV it is, rather than refused."""
    path = tmp_path / "export.csv.gz"
    path.write_bytes(_delimited(","))
    assert len(list(Manifest(path).records())) == len(ROWS)


@pytest.mark.parametrize(("given", "expected"), [(";", ";"), ("tab", "\t"), ("\\t", "\t"), ("|", "|")])
def test_delimiter_option(given: str, expected: str, tmp_path: Path) -> None:
    """--delimiter is used as given; 'tab' and '\\t' mean a tab."""
    path = tmp_path / "export.csv"
    path.write_bytes(_delimited(expected))
    records = list(Manifest(path, options=ReadOptions(delimiter=given)).records())
    assert [r.filename for r in records] == [row[3] for row in ROWS]


def test_a_long_delimiter_is_a_usage_error(tmp_path: Path) -> None:
    """--delimiter must be one character, and the message says how to write it."""
    with pytest.raises(UsageError, match="one character") as caught:
        Manifest(write_csv(tmp_path), options=ReadOptions(delimiter=";;"))
    assert "HINT" in str(caught.value)


def test_sniffing_prefers_the_header_delimiter(tmp_path: Path) -> None:
    """Commas inside values do not fool detection of a ';' file whose header has no comma."""
    path = tmp_path / "eu.csv"
    path.write_text("company;organisation;folder;filename\n" + "acme;a,b;c,d,e;f,g.mp3\n" * 20, encoding="utf-8")
    assert [r.filename for r in Manifest(path).records()] == ["f,g.mp3"] * 20


def test_line_numbers_with_bom_crlf_quoted_newlines_and_blank_lines(tmp_path: Path) -> None:
    """A record's line is the physical line it starts on, whatever came before it."""
    path = tmp_path / "lines.csv"
    path.write_bytes(
        codecs.BOM_UTF8 + b"company,organisation,folder,filename\r\nacme,o,f,a.mp3\r\n"
        b'acme,o,"two\r\nlines",b.mp3\r\nacme,o,f,c.mp3\r\n\r\nacme,o,f\r\nacme,o,f,d.mp3\r\n'
    )
    records = list(Manifest(path).records())
    assert [(r.row, r.line) for r in records] == [(1, 2), (2, 3), (3, 5), (4, 7), (5, 8)]
    assert records[1].folder == "two\r\nlines"
    assert records[3].problem == "row has 3 fields but the header has 4 (line 7)"


def test_bom_read_with_plain_utf8_is_dropped_from_the_header(tmp_path: Path) -> None:
    """--encoding utf-8 on a file with a BOM still finds the 'company' column."""
    manifest = Manifest(write_csv(tmp_path), options=ReadOptions(encoding="utf-8"))
    assert manifest.columns[0] == "company"


def test_header_only_files_have_no_records(tmp_path: Path) -> None:
    """A header with no rows is zero records, not an error, in every format."""
    (tmp_path / "h.csv").write_text("company,organisation,folder,filename\r\n", encoding="utf-8")
    (tmp_path / "h.csv.gz").write_bytes(gzip.compress(b"company,organisation,folder,filename\n"))
    book = openpyxl.Workbook()
    book.active.append(["company", "organisation", "folder", "filename"])
    book.save(tmp_path / "h.xlsx")
    schema = pa.schema([(name, pa.string()) for name in ("company", "organisation", "folder", "filename")])
    pq.write_table(schema.empty_table(), tmp_path / "h.parquet")
    for name in ("h.csv", "h.csv.gz", "h.xlsx", "h.parquet"):
        manifest = Manifest(tmp_path / name)
        assert list(manifest.records()) == [], name
        assert manifest.columns == ("company", "organisation", "folder", "filename")


# --- bad input ------------------------------------------------------------------------------------------


def _error(path: Path, options: ReadOptions | None = None) -> ManifestError:
    with pytest.raises(ManifestError) as caught:
        list(Manifest(path, options=options).records())
    assert str(path) in str(caught.value)
    return caught.value


def test_undecodable_bytes_name_the_line_the_byte_and_the_encoding_to_pass(tmp_path: Path) -> None:
    """A cp1252 byte deep in a UTF-8 read is reported at its exact line, with --encoding as the fix."""
    path = tmp_path / "latin.csv"
    rows = b"".join(b"acme,o,f,rec-%05d.mp3\n" % i for i in range(3000))
    path.write_bytes(b"company,organisation,folder,filename\n" + rows + b"acme,o,f,caf\xe9.mp3\n")
    error = _error(path)
    assert error.line == 3002
    assert "byte(s) e9 at column 13" in str(error)
    assert "--encoding cp1252" in str(error)
    records = list(Manifest(path, options=ReadOptions(encoding="cp1252")).records())
    assert records[-1].filename == "café.mp3"


def test_undecodable_bytes_inside_gzip_name_the_line(tmp_path: Path) -> None:
    """Decoding errors are located inside compressed files too."""
    path = tmp_path / "latin.csv.gz"
    path.write_bytes(gzip.compress(b"company,organisation,folder,filename\nacme,o,f,a.mp3\nacme,o,f,\xff.mp3\n"))
    error = _error(path)
    assert error.line == 3
    assert "--encoding" in str(error)


def test_utf16_is_recognised_and_readable_with_the_right_encoding(tmp_path: Path) -> None:
    """Excel's 'Unicode text' (UTF-16 with a BOM) is refused with the fix, then read with it."""
    path = tmp_path / "unicode.txt"
    path.write_bytes("company\torganisation\tfolder\tfilename\r\nacme\to\tf\tü.mp3\r\n".encode("utf-16"))
    error = _error(path)
    assert error.line == 1
    assert "--encoding utf-16" in str(error)
    records = list(Manifest(path, options=ReadOptions(encoding="utf-16")).records())
    assert [(r.company, r.filename) for r in records] == [("acme", "ü.mp3")]


@pytest.mark.parametrize("name", ["empty.csv", "empty.csv.gz", "blank.csv", "empty.jsonl"])
def test_an_empty_file_is_an_error(name: str, tmp_path: Path) -> None:
    """An empty file (or one of blank lines) says it is empty and what a header should name."""
    path = tmp_path / name
    path.write_bytes(gzip.compress(b"") if name.endswith(".gz") else b"\n \n" if "blank" in name else b"")
    error = _error(path)
    assert error.line == 1
    assert "empty" in str(error)


def test_an_empty_sheet_is_an_error(tmp_path: Path) -> None:
    """A workbook whose sheet holds nothing names the sheet."""
    path = tmp_path / "empty.xlsx"
    openpyxl.Workbook().save(path)
    error = _error(path)
    assert "sheet 'Sheet', row 1: the sheet is empty" in str(error)


def test_a_truncated_gzip_names_the_line_reached(tmp_path: Path) -> None:
    """A gzip cut short reads up to where it ends, then fails naming that line; no traceback, no hang."""
    path = tmp_path / "cut.csv.gz"
    body = b"company,organisation,folder,filename\n" + b"".join(b"acme,o,f,%06d.mp3\n" % i for i in range(60_000))
    data = gzip.compress(body)
    path.write_bytes(data[: len(data) // 2])
    read: list[int] = []
    with pytest.raises(ManifestError, match="truncated") as caught:
        read.extend(r.line for r in Manifest(path).records())
    assert caught.value.line == read[-1] + 1
    assert 1000 < caught.value.line < 60_000
    assert f"{path}, line {caught.value.line}" in str(caught.value)


def test_a_corrupt_gzip_is_an_error(tmp_path: Path) -> None:
    """A gzip whose data is damaged fails with a message, not a zlib traceback."""
    path = tmp_path / "bad.csv.gz"
    data = bytearray(gzip.compress(b"company,organisation,folder,filename\n" + b"acme,o,f,x.mp3\n" * 1000))
    data[30:60] = b"\x00" * 30
    path.write_bytes(bytes(data))
    error = _error(path)
    assert error.line == 1
    assert "the gzip data is damaged" in str(error)
    assert "HINT" in str(error)


def test_a_workbook_named_csv_says_what_it_is(tmp_path: Path) -> None:
    """An .xlsx saved as .csv is named for what it is, with the fix."""
    path = write_xlsx(tmp_path).rename(tmp_path / "export.csv")
    error = _error(path)
    assert "looks like an XLSX workbook" in str(error)
    assert "--input-format" in str(error)


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("broken.xlsx", b"PK\x03\x04 not really a zip", "not a readable Excel workbook"),
        ("broken.parquet", b"PAR1 not really parquet", "not a readable Parquet file"),
    ],
)
def test_unreadable_binary_files(name: str, content: bytes, expected: str, tmp_path: Path) -> None:
    """Corrupt workbooks and Parquet files fail with a message naming the file."""
    path = tmp_path / name
    path.write_bytes(content)
    assert expected in str(_error(path))


def test_a_missing_file_is_an_error(tmp_path: Path) -> None:
    """A path that does not exist says so."""
    assert "cannot open" in str(_error(tmp_path / "nope.csv"))


def test_a_missing_sheet_lists_the_sheets(tmp_path: Path) -> None:
    """--sheet naming no sheet lists the sheets there are."""
    error = _error(write_xlsx(tmp_path), ReadOptions(sheet="Calls"))
    assert "no sheet named 'Calls'; the sheets are 'Sheet'" in str(error)


# --- JSON Lines -----------------------------------------------------------------------------------------


def test_jsonl_columns_are_every_key_in_first_seen_order(tmp_path: Path) -> None:
    """A key first seen far into the file is a column; objects without it read it as empty."""
    path = tmp_path / "late.jsonl"
    lines = [
        orjson.dumps({"filename": f"{i}.mp3", "company": "acme", "organisation": "o", "folder": "f"})
        for i in range(1500)
    ]
    lines.insert(1400, b"")
    lines.append(
        orjson.dumps(
            {
                "company": "acme",
                "organisation": "o",
                "folder": "f",
                "filename": "x",
                "extra": {"k": 1},
                "n": 2,
                "flag": False,
                "none": None,
            }
        )
    )
    path.write_bytes(codecs.BOM_UTF8 + b"\n".join(lines) + b"\n")
    manifest = Manifest(path)
    assert manifest.columns == ("filename", "company", "organisation", "folder", "extra", "n", "flag", "none")
    rows = list(manifest.rows())
    assert rows[0][2] == ["0.mp3", "acme", "o", "f", "", "", "", ""]
    assert rows[-1][1:] == (1502, ["x", "acme", "o", "f", '{"k":1}', "2", "false", ""])
    assert rows[1400][1] == 1402  # the blank line counts as a line, not a record


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b'["acme", "o"]', "a JSON list where an object was expected"),
        (b'{"company": "acme",', "not valid JSON"),
        (b'{"company": "caf\xe9"}', "byte(s) e9"),
    ],
)
def test_jsonl_bad_lines_name_the_line(line: bytes, expected: str, tmp_path: Path) -> None:
    """A line that is not one JSON object (or not UTF-8) is an error naming that line."""
    path = tmp_path / "bad.jsonl"
    good = b'{"company": "acme", "organisation": "o", "folder": "f", "filename": "a"}\n'
    path.write_bytes(good * 3 + b"\n" + line + b"\n" + good)
    error = _error(path)
    assert error.line == 5
    assert expected in str(error)


def test_jsonl_in_another_encoding(tmp_path: Path) -> None:
    """--encoding applies to JSON Lines too."""
    path = tmp_path / "latin.jsonl"
    path.write_bytes('{"company":"acme","organisation":"o","folder":"f","filename":"café"}\n'.encode("latin-1"))
    assert "--encoding" in str(_error(path))
    assert next(Manifest(path, options=ReadOptions(encoding="latin-1")).records()).filename == "café"


def test_tables_release_their_files(tmp_path: Path) -> None:
    """Closing a table that was never read, or abandoning its rows part-way, leaves no file open."""
    for writer in WRITERS.values():
        path = writer(tmp_path)
        open_table(path, ReadOptions()).close()
        table = open_table(path, ReadOptions())
        assert next(table.rows)[0] >= 1
        table.close()


def test_formats_without_a_header_line_name_no_line_for_header_errors(tmp_path: Path) -> None:
    """Parquet and JSON Lines have no header line: a missing column names the file, not 'line 0'."""
    pq.write_table(pa.table({"RecordingSid": ["RE1"]}), tmp_path / "p.parquet")
    (tmp_path / "j.jsonl").write_bytes(b'{"RecordingSid": "RE1"}\n')
    for name in ("p.parquet", "j.jsonl"):
        with pytest.raises(ManifestError) as caught:
            Manifest(tmp_path / name)
        assert str(caught.value).startswith(f"{tmp_path / name}: missing required column(s) company")
        assert caught.value.line is None


def test_an_unknown_encoding_is_a_usage_error(tmp_path: Path) -> None:
    """--encoding naming no codec fails with examples instead of a LookupError traceback."""
    with pytest.raises(UsageError, match=r"unknown encoding 'utf-9'\. HINT"):
        Manifest(write_csv(tmp_path), options=ReadOptions(encoding="utf-9"))


# -- stray quotes: every line accounted for ---------------------------------------------------------------------

QUOTE_HEADER = ["company", "organisation", "folder", "filename", "notes"]


def _export(path: Path, notes: dict[int, str], rows: int = 1000) -> Path:
    """A ``rows``-row export whose ``notes`` are written raw (unquoted) where ``notes`` says, csv.writer elsewhere."""
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(QUOTE_HEADER)
        for i in range(1, rows + 1):
            if i in notes:
                handle.write(f"acme,acme-ca,2026/11/25,rec-{i:04d}.mp3,{notes[i]}\n")
            else:
                writer.writerow(["acme", "acme-ca", "2026/11/25", f"rec-{i:04d}.mp3", "n" * 30])
    return path


def test_a_stray_quote_makes_its_row_invalid_and_the_rows_it_ran_over_are_read(tmp_path: Path) -> None:
    """The issue's export: row 11's notes `"12 inch` no longer swallow rows 12-1000; row 11 is invalid, at line 12."""
    path = _export(tmp_path / "export.csv", {11: '"12 inch'})
    records = list(Manifest(path).records())
    assert len(records) == 1000
    assert [r.filename for r in records] == [f"rec-{i:04d}.mp3" for i in range(1, 1001)]
    assert [r.line for r in records] == list(range(2, 1002))
    bad = records[10]
    assert bad.problem is not None
    assert bad.problem.startswith(
        "a quote on line 12 opens a value that runs on over lines 13-1001, read as rows of their own; "
        "this row is not sent. HINT: a value that starts with a quote is written quoted, its quote doubled "
        '("""12 inch")'
    )
    assert all(r.problem is None for r in records if r is not bad)
    rows = list(Manifest(path).rows())
    assert rows[10] == (11, 12, ["acme", "acme-ca", "2026/11/25", "rec-0011.mp3", "12 inch"])
    assert rows[11] == (12, 13, ["acme", "acme-ca", "2026/11/25", "rec-0012.mp3", "n" * 30])


def test_a_stray_quote_closed_by_a_later_inch_mark_is_caught(tmp_path: Path) -> None:
    """`"12 inch` on row 11 closed "properly" by `6"` on row 50 (a valid quoted value to csv) loses no row between."""
    path = _export(tmp_path / "export.csv", {11: '"12 inch', 50: 'screen 6"'}, rows=60)
    records = list(Manifest(path).records())
    assert len(records) == 60
    assert [r.row for r in records if r.problem] == [11]
    assert "a quote on line 12 opens a value that runs on over lines 13-51" in str(records[10].problem)
    assert list(Manifest(path).rows())[49][2][4] == 'screen 6"'


def test_a_stray_quote_closing_badly_on_a_later_line_is_caught(tmp_path: Path) -> None:
    """A stray quote whose value a later quote closes improperly (`5"x`) makes one invalid row; the rest are read."""
    path = _export(tmp_path / "export.csv", {3: '"12 inch', 7: 'a 5"x b'}, rows=10)
    records = list(Manifest(path).records())
    assert [r.filename for r in records] == [f"rec-{i:04d}.mp3" for i in range(1, 11)]
    assert [r.row for r in records if r.problem] == [3]
    assert "a quote on line 4 opens a value that runs on over lines 5-8" in str(records[2].problem)


def test_a_quote_never_closed_on_the_last_line_is_invalid(tmp_path: Path) -> None:
    """An unclosed quote on the last line (no newline) makes that row invalid, naming the line."""
    path = tmp_path / "m.csv"
    path.write_text('company,organisation,folder,filename,notes\na,b,c,d,x\na,b,c,e,"12 inch', encoding="utf-8")
    records = list(Manifest(path).records())
    assert [r.problem is None for r in records] == [True, False]
    assert str(records[1].problem).startswith("a quote on line 3 opens a value that never closes; this row is not sent")


def test_a_quote_closed_badly_on_its_own_line_reads_as_before(tmp_path: Path) -> None:
    """`"Bob" Smith` (a quoted nickname) and a legitimate multi-line value read as they always did."""
    path = tmp_path / "m.csv"
    path.write_text(
        'company,organisation,folder,filename,notes\na,b,c,d,"Bob" Smith\na,b,c,e,"two\nlines, ok"\na,b,c,f,x\n',
        encoding="utf-8",
    )
    assert [values for _, _, values in Manifest(path).rows()] == [
        ["a", "b", "c", "d", "Bob Smith"],
        ["a", "b", "c", "e", "two\nlines, ok"],
        ["a", "b", "c", "f", "x"],
    ]
    assert all(r.problem is None for r in Manifest(path).records())


def test_validate_reports_the_stray_quote(tmp_path: Path) -> None:
    """`reconcile validate` of the issue's export: 1,000 records, row 11 invalid with line 12, exit 3."""
    from click.testing import CliRunner

    from reconcile.cli import cli

    path = _export(tmp_path / "export.csv", {11: '"12 inch'})
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 3, result.output
    assert "1,000 records: 999 to send, 1 invalid, 0 duplicates" in result.output
    assert "row 11 (line 12): a quote on line 12 opens a value that runs on over lines 13-1001" in result.output
    assert "Traceback" not in result.output


# Values with anything a writer must quote: delimiters, quotes, both line breaks, and any other Unicode.
_VALUES = st.text(
    alphabet=st.one_of(st.sampled_from(',;\t|"\r\n '), st.characters(exclude_categories=("Cs",))), max_size=12
)


def _looks_like_rows(value: str, width: int, delimiter: str) -> bool:
    """Whether ``value`` holds a line that reads as a whole row of ``width``: what the reader takes to be
    rows a stray quote swallowed (the one reading of valid CSV that differs, by design)."""
    return width >= 2 and any(
        len(next(csv.reader([piece], delimiter=delimiter), ())) == width for piece in re.split("\r\n|\r|\n", value)[1:]
    )


def _assume_csv_reads_back(path: Path, delimiter: str, rows: list[list[str]]) -> None:
    """Only tables csv itself reads back count: Python 3.11's writer leaves a lone "\r" unquoted, which no
    reader can tell from a line break."""
    with open(path, encoding="utf-8", newline="") as handle:
        assume(list(csv.reader(handle, delimiter=delimiter))[1:] == rows)


@settings(max_examples=150, deadline=None)
@given(
    extra=st.integers(min_value=0, max_value=2),
    table=st.data(),
    delimiter=st.sampled_from([",", ";", "\t", "|"]),
    terminator=st.sampled_from(["\n", "\r\n"]),
)
def test_any_table_csv_writer_writes_reads_back_the_same(
    extra: int, table: st.DataObject, delimiter: str, terminator: str
) -> None:
    """Property: a table csv.writer writes (any Unicode, quotes, delimiters, line breaks) reads back row for row."""
    width = 4 + extra
    rows = table.draw(st.lists(st.lists(_VALUES, min_size=width, max_size=width), max_size=8))
    assume(not any(_looks_like_rows(v, width, delimiter) for row in rows for v in row))
    assume(all(any(v for v in row) for row in rows))  # an all-empty row of one column would be a blank line
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "m.csv"
        with open(path, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, delimiter=delimiter, lineterminator=terminator)
            writer.writerow([*HEADER[:4], *(f"x{i}" for i in range(extra))])
            writer.writerows(rows)
        _assume_csv_reads_back(path, delimiter, rows)
        manifest = Manifest(path, options=ReadOptions(delimiter=delimiter))
        assert [values for _, _, values in manifest.rows()] == rows
        assert len(list(manifest.records())) == len(rows)


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.lists(_VALUES, min_size=5, max_size=5), min_size=1, max_size=6))
def test_any_table_pandas_writes_reads_back_the_same(rows: list[list[str]]) -> None:
    """Property: a table DataFrame.to_csv writes reads back as the same records."""
    import pandas as pd

    assume(not any(_looks_like_rows(v, 5, ",") for row in rows for v in row))
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "m.csv"
        pd.DataFrame(rows, columns=QUOTE_HEADER).to_csv(path, index=False)
        _assume_csv_reads_back(path, ",", rows)
        assert [values for _, _, values in Manifest(path, options=ReadOptions(delimiter=",")).rows()] == rows


_PLAIN_ROWS = st.lists(
    st.lists(st.text(alphabet="abcxyz 0123456789", min_size=1, max_size=6), min_size=5, max_size=5),
    min_size=1,
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(rows=_PLAIN_ROWS, damage=st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from('"",\'')), max_size=4))
def test_stray_quotes_lose_no_record(rows: list[list[str]], damage: list[tuple[int, str]]) -> None:
    """Property: quotes (and delimiters) typed anywhere into an export leave every line they did not touch read
    back as its own record at its line; the touched lines are read or reported invalid, never a traceback."""
    lines = [",".join(QUOTE_HEADER)] + [",".join(row) for row in rows]
    touched: set[int] = set()
    for position, char in damage:
        number = 1 + position % len(rows)  # a data line; the header stays whole
        at = (position // len(rows)) % (len(lines[number]) + 1)
        lines[number] = lines[number][:at] + char + lines[number][at:]
        touched.add(number)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "m.csv"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        manifest = Manifest(path, options=ReadOptions(delimiter=","))
        read = {line: values for _, line, values in manifest.rows()}
        records = list(manifest.records())
    assert len(records) == len(read)
    for number in range(1, len(rows) + 1):
        if number not in touched:
            assert read.get(number + 1) == rows[number - 1], (number, lines)


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(st.lists(_VALUES, min_size=4, max_size=4), max_size=6),
    damage=st.lists(
        st.tuples(st.integers(0, 10_000), st.sampled_from(['"', "\r", "\n", "\x00", ",", "\ufeff"])), max_size=5
    ),
)
def test_random_damage_is_read_or_reported_never_a_traceback(
    rows: list[list[str]], damage: list[tuple[int, str]]
) -> None:
    """Property: characters inserted anywhere after the header of a valid export read, or fail as a ManifestError."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([list(HEADER[:4]), *rows])
    text = out.getvalue()
    body = len(text.partition("\n")[0]) + 1
    for position, char in damage:
        at = body + position % (len(text) - body + 1)
        text = text[:at] + char + text[at:]
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "m.csv"
        path.write_text(text, encoding="utf-8")
        try:
            manifest = Manifest(path, options=ReadOptions(delimiter=","))
            rows_read = list(manifest.rows())
            records = len(list(manifest.records()))
        except ManifestError as exc:
            error: ManifestError | None = exc
        else:
            error = None
            assert records == len(rows_read)
        assert error is None or str(error).startswith(str(path))
